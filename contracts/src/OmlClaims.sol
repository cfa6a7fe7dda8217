// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IOmlProtocol, IOmlClaimsView, Param} from "./IOmlProtocol.sol";
import {OmlMerkle} from "./OmlMerkle.sol";

/// @title OmlClaims: the incentive layer. Provers audit hosts and claim, with commit–reveal, that a host answered
///        fingerprint keys without a settled permit; hosts rebut; claims settle by slashing or by returning bonds.
/// @notice Bonds and every payout live in OmlProtocol (lockBond / releaseBond / slash); this contract keeps the
///         claims. Receipts are EIP-712 messages of OmlProtocol's domain (the one deployment-bound domain).
contract OmlClaims is IOmlClaimsView {
    bytes32 public constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(address host,string modelId,bytes32 permitHash,bytes32 queryHash,bytes32 responseHash,uint256 time)");

    /// @dev Voided: revealed, then displaced by a claim committed earlier that holds one of its receipts (bond returned).
    enum Status { None, Committed, Revealed, Rebutted, Slashed, Refunded, Voided }

    struct Claim {
        address prover;
        uint64 committedAt;
        Status status;
        address host;
        uint64 revealedAt;
        uint64 rebutDeadline;
        bytes32 commitment;
        bytes32 modelKey;
        bytes32 evidenceHash;
        uint256 bond;
    }

    /// @notice What a revealed item keeps for a rebuttal.
    struct Item {
        bytes32 receiptHash;
        bytes32 queryHash;
        bytes32 permitHash;
    }

    /// @notice One piece of evidence: a fingerprint of the host's subset with its Merkle proof, the host's answer to
    ///         its key, and the host's signed receipt for that answer (its query and response hashes are computed here
    ///         from the key and answer, so a receipt for another query or answer fails its signature).
    struct EvidenceItem {
        bytes leaf;
        uint256 leafIndex;
        bytes32[] proof;
        bytes answer;
        bytes32 permitHash;
        uint256 receiptTime;
        bytes receiptSignature;
    }

    /// @notice The rebuttal of one item: the permit its receipt names and the receipt's place in a usage root.
    struct RebuttalItem {
        address user;
        uint256 nonce;
        uint256 expiry;
        uint256 fee;
        uint256 epoch;
        uint256 receiptIndex;
        bytes32[] proof;
    }

    IOmlProtocol public immutable protocol;
    Claim[] private _claims;
    mapping(uint256 => Item[]) private _items;
    /// @dev _claimByCommitment[prover][commitment] = claimId + 1 (0: that prover never committed it). Keyed by the
    ///      prover as well, so that a copy of a commitment sent by someone else blocks nothing.
    mapping(address => mapping(bytes32 => uint256)) private _claimByCommitment;
    /// @notice spent[modelKey][keccak256(salt ‖ key)]: fingerprints revealed in a claim, public from then on (for
    ///         every copy holding them). A record, not a bar: what a claim proves is the host's signed receipt, and a
    ///         receipt backs one claim (below). Barring a revealed fingerprint let whoever revealed first take it: a
    ///         violating host that saw an honest reveal pending could reveal a claim of its own puppet on the same
    ///         fingerprint with a decoy receipt, rebut that, and leave the honest claim unrevealable.
    mapping(bytes32 => mapping(bytes32 => bool)) public spent;
    /// @dev _receiptClaim[receiptHash] = claimId + 1 of the claim that holds that receipt (0: none). The claim committed
    ///      first (commit time, then claim id) holds it: a later-committed claim that revealed it first is voided when
    ///      the earlier one reveals, so evidence copied from a pending reveal can never be taken from its prover.
    mapping(bytes32 => uint256) private _receiptClaim;
    /// @notice Revealed claims against (model, host) not yet rebutted or settled: while any is open, the host's
    ///         collateral cannot be released.
    mapping(bytes32 => mapping(address => uint256)) public openClaimsAgainst;

    event ClaimCommitted(uint256 indexed claimId, address indexed prover, bytes32 commitment, uint256 bond);
    event ClaimRevealed(uint256 indexed claimId, bytes32 indexed modelKey, address indexed host, bytes32 evidenceHash,
        uint256 items, uint256 rebutDeadline);
    event FingerprintSpent(bytes32 indexed modelKey, bytes32 indexed fingerprintId);
    event ClaimRebutted(uint256 indexed claimId, address indexed host);
    event ClaimSlashed(uint256 indexed claimId, uint256 slashed, bool capped);
    event ClaimRefunded(uint256 indexed claimId, address indexed prover, uint256 bond);
    event ClaimVoided(uint256 indexed claimId, uint256 indexed byClaimId, bytes32 receiptHash);

    error BondTooLow(uint256 bond, uint256 minBond);
    error DuplicateCommitment(address prover, bytes32 commitment);
    error UnknownClaim(uint256 claimId);
    error NotProver(uint256 claimId, address caller);
    error NotClaimedHost(uint256 claimId, address caller);
    error WrongClaimStatus(uint256 claimId, Status status);
    error RevealTooEarly(uint256 claimId, uint256 from);
    error RevealWindowClosed(uint256 claimId, uint256 closedAt);
    error CommitmentMismatch(uint256 claimId);
    error UnknownLicence(bytes32 modelKey, address host);
    error CopyNotDelivered(bytes32 modelKey, address host);
    error LicenceReleased(bytes32 modelKey, address host);
    error NoEvidence();
    error InvalidProof(uint256 item);
    error MalformedLeaf(uint256 item);
    error ReceiptAlreadyClaimed(uint256 item, bytes32 receiptHash, uint256 claimId);
    error BadReceiptSignature(uint256 item, address recovered);
    error AnswerMismatch(uint256 item);
    error UsagePermitted(uint256 item, bytes32 permitHash);
    error RebutWindowClosed(uint256 claimId, uint256 closedAt);
    error RebuttalLength(uint256 expected, uint256 given);
    error NoPermitNamed(uint256 item);
    error PermitMismatch(uint256 item);
    error PermitNotSettled(uint256 item, bytes32 permitHash);
    error UsageNotCommitted(uint256 item, uint256 epoch);
    error ReceiptNotInUsage(uint256 item);
    error NotYetSettleable(uint256 claimId, uint256 from);

    constructor(IOmlProtocol protocol_) {
        protocol = protocol_;
    }

    /// @notice The commitment a prover publishes: keccak256("oml/claim/v2" ‖ prover ‖ modelId ‖ 0x00 ‖ host ‖ evidenceHash
    ///         ‖ salt), byte for byte as src/Oml.Protocol/Claims/ClaimEvidence.cs; evidenceHash = keccak256(abi.encode(items)).
    ///         The prover's address is in the preimage: a copy committed by another sender can never be revealed.
    function commitmentOf(address prover, string calldata modelId, address host, bytes32 evidenceHash, bytes32 salt)
        public pure returns (bytes32) {
        return keccak256(abi.encodePacked("oml/claim/v2", prover, modelId, bytes1(0), host, evidenceHash, salt));
    }

    /// @notice The claim `prover` committed under `commitment`, if any (lets a prover resume from its ticket).
    function claimIdOf(address prover, bytes32 commitment) external view returns (bool found, uint256 claimId) {
        uint256 v = _claimByCommitment[prover][commitment];
        return v == 0 ? (false, 0) : (true, v - 1);
    }

    function evidenceHashOf(EvidenceItem[] calldata items) public pure returns (bytes32) {
        return keccak256(abi.encode(items));
    }

    function claimCount() external view returns (uint256) {
        return _claims.length;
    }

    function claim(uint256 claimId) external view returns (Claim memory) {
        if (claimId >= _claims.length) revert UnknownClaim(claimId);
        return _claims[claimId];
    }

    function itemsOf(uint256 claimId) external view returns (Item[] memory) {
        return _items[claimId];
    }

    /// @notice The claim that holds a receipt as evidence, if any (a voided claim holds nothing).
    function receiptClaimOf(bytes32 receiptHash) external view returns (bool found, uint256 claimId) {
        uint256 v = _receiptClaim[receiptHash];
        if (v == 0 || _claims[v - 1].status == Status.Voided) return (false, 0);
        return (true, v - 1);
    }

    /// @notice Locks `bond` (approve OmlProtocol first) behind a hidden claim. A prover commits a commitment once, ever;
    ///         the same bytes from another sender are that sender's own (unrevealable) claim.
    function commitClaim(bytes32 commitment, uint256 bond) external returns (uint256 claimId) {
        uint256 minBond = protocol.param(Param.MinBond);
        if (bond < minBond || bond == 0) revert BondTooLow(bond, minBond);
        if (_claimByCommitment[msg.sender][commitment] != 0) revert DuplicateCommitment(msg.sender, commitment);
        claimId = _claims.length;
        _claimByCommitment[msg.sender][commitment] = claimId + 1;
        _claims.push(Claim({prover: msg.sender, committedAt: uint64(block.timestamp), status: Status.Committed,
            host: address(0), revealedAt: 0, rebutDeadline: 0, commitment: commitment, modelKey: bytes32(0),
            evidenceHash: bytes32(0), bond: bond}));
        emit ClaimCommitted(claimId, msg.sender, commitment, bond);
        protocol.lockBond(msg.sender, bond);
    }

    /// @notice Reveals a committed claim, at least one second after the commitment and within RevealWindowSeconds.
    ///         Every item must prove a fingerprint of this host's delivered subset, answered as its response, under a
    ///         receipt signed by the host that names no settled permit and that no claim committed earlier holds (a
    ///         later-committed claim that holds it, still open, is voided and its bond returned).
    function revealClaim(uint256 claimId, string calldata modelId, address host, bytes32 salt, EvidenceItem[] calldata items)
        external {
        Claim storage c = _claimOf(claimId);
        if (c.prover != msg.sender) revert NotProver(claimId, msg.sender);
        if (c.status != Status.Committed) revert WrongClaimStatus(claimId, c.status);
        if (block.timestamp < c.committedAt + 1) revert RevealTooEarly(claimId, c.committedAt + 1);
        uint256 closes = c.committedAt + protocol.param(Param.RevealWindowSeconds);
        if (block.timestamp > closes) revert RevealWindowClosed(claimId, closes);
        bytes32 evidenceHash = keccak256(abi.encode(items));
        if (commitmentOf(msg.sender, modelId, host, evidenceHash, salt) != c.commitment) revert CommitmentMismatch(claimId);
        bytes32 modelKey = keccak256(bytes(modelId));
        (bool licensed, bool delivered, bytes32 root, uint256 count) = protocol.copyOf(modelKey, host);
        if (!licensed) revert UnknownLicence(modelKey, host);
        if (!delivered) revert CopyNotDelivered(modelKey, host);
        (,,, bool released) = protocol.exitOf(modelKey, host);
        if (released) revert LicenceReleased(modelKey, host);
        if (items.length == 0) revert NoEvidence();

        bytes32 domain = protocol.domainSeparator();
        Item[] storage kept = _items[claimId];
        for (uint256 i = 0; i < items.length; i++) {
            EvidenceItem calldata e = items[i];
            if (!OmlMerkle.verify(root, count, e.leafIndex, OmlMerkle.leafHash(e.leaf), e.proof)) revert InvalidProof(i);
            (bool ok, bytes32 fingerprintId, bytes32 queryHash, bool matched) = OmlMerkle.parseLeaf(e.leaf, e.leafIndex, e.answer);
            if (!ok) revert MalformedLeaf(i);
            spent[modelKey][fingerprintId] = true;
            emit FingerprintSpent(modelKey, fingerprintId);
            bytes32 receiptHash = MessageHashUtils.toTypedDataHash(domain, keccak256(abi.encode(RECEIPT_TYPEHASH, host,
                modelKey, e.permitHash, queryHash, keccak256(e.answer), e.receiptTime)));
            (address signer,,) = ECDSA.tryRecover(receiptHash, e.receiptSignature);
            if (signer != host) revert BadReceiptSignature(i, signer);
            if (!matched) revert AnswerMismatch(i);
            if (e.permitHash != bytes32(0) && protocol.settledBy(e.permitHash) != address(0))
                revert UsagePermitted(i, e.permitHash);
            _takeReceipt(claimId, c, i, receiptHash);
            kept.push(Item(receiptHash, queryHash, e.permitHash));
        }
        c.status = Status.Revealed;
        c.host = host;
        c.modelKey = modelKey;
        c.evidenceHash = evidenceHash;
        c.revealedAt = uint64(block.timestamp);
        uint256 deadline = block.timestamp + protocol.param(Param.RebutWindowSeconds);
        c.rebutDeadline = SafeCast.toUint64(deadline);
        openClaimsAgainst[modelKey][host] += 1;
        emit ClaimRevealed(claimId, modelKey, host, evidenceHash, items.length, deadline);
    }

    /// @notice The host answers every item, in order, with the permit its receipt names (settled by this host) and
    ///         the receipt's Merkle proof in one of its committed usage roots. The bond then goes to the host.
    function rebut(uint256 claimId, RebuttalItem[] calldata items) external {
        Claim storage c = _claimOf(claimId);
        if (c.status != Status.Revealed) revert WrongClaimStatus(claimId, c.status);
        if (c.host != msg.sender) revert NotClaimedHost(claimId, msg.sender);
        if (block.timestamp > c.rebutDeadline) revert RebutWindowClosed(claimId, c.rebutDeadline);
        Item[] storage kept = _items[claimId];
        if (items.length != kept.length) revert RebuttalLength(kept.length, items.length);
        for (uint256 i = 0; i < items.length; i++) {
            Item storage k = kept[i];
            RebuttalItem calldata r = items[i];
            if (k.permitHash == bytes32(0)) revert NoPermitNamed(i);
            bytes32 ph = protocol.permitHash(r.user, c.modelKey, msg.sender, k.queryHash, r.nonce, r.expiry, r.fee);
            if (ph != k.permitHash) revert PermitMismatch(i);
            if (protocol.settledBy(ph) != msg.sender) revert PermitNotSettled(i, ph);
            (bool committed, bytes32 root, uint256 count) = protocol.usageOf(c.modelKey, msg.sender, r.epoch);
            if (!committed) revert UsageNotCommitted(i, r.epoch);
            if (!OmlMerkle.verify(root, count, r.receiptIndex, OmlMerkle.leafHash(abi.encodePacked(k.receiptHash)), r.proof))
                revert ReceiptNotInUsage(i);
        }
        c.status = Status.Rebutted;
        openClaimsAgainst[c.modelKey][msg.sender] -= 1;
        emit ClaimRebutted(claimId, msg.sender);
        protocol.releaseBond(msg.sender, c.bond);
    }

    /// @notice Anyone settles: a revealed, unrebutted claim after the rebut window slashes the host; a claim never
    ///         revealed within the reveal window returns its bond to the prover.
    function settle(uint256 claimId) external {
        Claim storage c = _claimOf(claimId);
        if (c.status == Status.Committed) {
            uint256 closes = c.committedAt + protocol.param(Param.RevealWindowSeconds);
            if (block.timestamp <= closes) revert NotYetSettleable(claimId, closes + 1);
            c.status = Status.Refunded;
            emit ClaimRefunded(claimId, c.prover, c.bond);
            protocol.releaseBond(c.prover, c.bond);
        } else if (c.status == Status.Revealed) {
            if (block.timestamp <= c.rebutDeadline) revert NotYetSettleable(claimId, uint256(c.rebutDeadline) + 1);
            c.status = Status.Slashed;
            openClaimsAgainst[c.modelKey][c.host] -= 1;
            (uint256 slashed, bool capped) = protocol.slash(c.modelKey, c.host, c.prover, c.bond);
            emit ClaimSlashed(claimId, slashed, capped);
        } else {
            revert WrongClaimStatus(claimId, c.status);
        }
    }

    /// @dev Gives `receiptHash` to claim `claimId` (being revealed), or reverts when a claim committed before it holds
    ///      it (or one already settled: the host answered for that receipt once). A later-committed holder still open
    ///      is voided: it leaves the host's open claims and its bond goes back to its prover. A voided holder's receipt
    ///      goes only to its own prover or to a claim committed before it.
    function _takeReceipt(uint256 claimId, Claim storage c, uint256 item, bytes32 receiptHash) private {
        uint256 held = _receiptClaim[receiptHash];
        if (held != 0) {
            uint256 otherId = held - 1;
            Claim storage o = _claims[otherId];
            bool first = c.committedAt < o.committedAt || (c.committedAt == o.committedAt && claimId < otherId);
            if (o.status == Status.Voided) {
                // A voided claim's receipts stay its prover's (they were public from its reveal): only that prover, in a
                // new claim, or a claim committed before it may take them, never a copier.
                if (!first && o.prover != c.prover) revert ReceiptAlreadyClaimed(item, receiptHash, otherId);
            } else {
                if (otherId == claimId || !first || o.status != Status.Revealed) revert ReceiptAlreadyClaimed(item, receiptHash, otherId);
                o.status = Status.Voided;
                openClaimsAgainst[o.modelKey][o.host] -= 1;
                emit ClaimVoided(otherId, claimId, receiptHash);
                protocol.releaseBond(o.prover, o.bond);
            }
        }
        _receiptClaim[receiptHash] = claimId + 1;
    }

    function _claimOf(uint256 claimId) private view returns (Claim storage) {
        if (claimId >= _claims.length) revert UnknownClaim(claimId);
        return _claims[claimId];
    }
}
