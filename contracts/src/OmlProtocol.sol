// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IOmlProtocol, IOmlClaimsView, Param} from "./IOmlProtocol.sol";

/// @title OmlProtocol: the storage, distribution and access layers of the OML protocol, and its vault.
/// @notice Models (versions, family tree, two-step ownership), host licences with collateral and the per-copy
///         salted fingerprint root, per-(user, host) escrow, usage roots per epoch settling user-signed EIP-712
///         permits with the fee split along the family tree, and pull-based withdrawals. Every token the protocol
///         holds is held here; the claims contract (OmlClaims) locks bonds and slashes through the onlyClaims hooks,
///         and the governance contract (OmlGovernance) alone sets parameters.
/// @dev The EIP-712 domain is {name "OML", version "1", chainId, this contract}: permits and receipts are signed
///      for this deployment only. A model is keyed by keccak256(bytes(modelId)), which is also how EIP-712 encodes
///      the permit's and receipt's string modelId.
contract OmlProtocol is IOmlProtocol, EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant PERMIT_TYPEHASH = keccak256(
        "Permit(address user,string modelId,address host,bytes32 queryHash,uint256 nonce,uint256 expiry,uint256 fee)");
    bytes32 public constant PARENT_CONSENT_TYPEHASH = keccak256(
        "ParentConsent(string modelId,string parentModelId,uint256 shareBps,address childOwner,uint256 nonce,uint256 deadline)");
    uint256 public constant MAX_MODEL_ID_BYTES = 200;
    uint256 public constant MAX_PARENTS = 8;
    /// @notice The most models a cycle check may visit when a parent is declared (bounds its gas).
    uint256 public constant MAX_ANCESTRY = 64;
    /// @notice The most models one fee split visits. A model's ancestry can grow after its parent was declared (the
    ///         parent's owner may declare parents of its own), so the split bounds itself: once it has visited this many
    ///         models, each parent still due a share gets it whole instead of splitting it further up. Without the bound, a parent's
    ///         owner could grow a chain above it until every usage commit of the child ran out of gas or stack.
    uint256 public constant MAX_SPLIT_VISITS = 64;
    /// @notice The longest window, delay or epoch a parameter may set: one year. An unbounded one let a single proposal
    ///         freeze the protocol (a rebut deadline or voting end past 2^64 wrapped into the past; a refund delay or
    ///         voting window of centuries locked escrows and stakes).
    uint256 public constant MAX_WINDOW_SECONDS = 365 days;
    /// @notice The longest registration delay a deployment may set (see registrationDelay).
    uint256 public constant MAX_REGISTRATION_DELAY = 1 hours;
    /// @notice How long a registration commitment stays usable.
    uint256 public constant REGISTRATION_COMMIT_LIFETIME = 1 days;

    /// @notice Why a permit in a usage batch was skipped instead of settled.
    enum SkipReason { None, BadSignature, Expired, Replayed, FeeTooLow, Unfunded }

    struct Model {
        address owner;
        address pendingOwner;
        uint256 price;
        uint256 minCollateral;
        uint32 versions;
        uint32 licences;
        uint16 parentShareBps;
        bool exists;
    }

    struct ParentEdge {
        bytes32 model;
        uint16 shareBps;
    }

    struct Version {
        bytes32 weightsDigest;
        bytes32 fingerprintRoot;
        uint32 fingerprintCount;
    }

    struct Licence {
        bool exists;
        bool delivered;
        bool acknowledged;
        uint32 ordinal;
        uint32 fingerprintCount;
        uint256 collateralPosted;
        uint256 collateralLocked;
        bytes32 indicesRoot;
        bytes32 copyDigest;
    }

    /// @notice A host's exit from a licence: announced at, the exit epoch (the last one it may commit usage for), when
    ///         its collateral may be released, and whether it was.
    struct Exit {
        uint64 announcedAt;
        uint64 epoch;
        uint64 releasableAt;
        bool released;
    }

    struct Usage {
        bool committed;
        uint64 receiptCount;
        bytes32 receiptsRoot;
    }

    /// @notice One user-signed permit as a host submits it for settlement (host = sender, model = the batch's).
    struct SignedPermit {
        address user;
        bytes32 queryHash;
        uint256 nonce;
        uint256 expiry;
        uint256 fee;
        bytes signature;
    }

    /// @notice When and in which block an owner committed to a registration (commitRegistration).
    struct RegistrationCommit {
        uint64 committedAt;
        uint64 blockNumber;
    }

    IERC20 public immutable token;
    address public immutable treasury;
    uint256 public immutable genesisTime;
    /// @notice Seconds a registration commitment must age before its reveal (registerModel), and the reveal must also
    ///         come in a later block. A model id is first come, first served; without the commitment anyone watching
    ///         the mempool could copy an owner's registerModel (its id, weights digest and fingerprint root) and get
    ///         it mined first, taking the id and the record of those weights. Set once, at deployment.
    uint256 public immutable registrationDelay;
    address private immutable _deployer;
    address public claims;
    address public governance;

    uint256[12] private _params;
    mapping(bytes32 => Model) private _models;
    /// @dev Keyed by (owner, commitment): the same bytes committed by anyone else are not this owner's commitment.
    mapping(address => mapping(bytes32 => RegistrationCommit)) private _registrationCommits;
    mapping(bytes32 => ParentEdge[]) private _parents;
    mapping(bytes32 => mapping(uint256 => Version)) private _versions;
    mapping(bytes32 => mapping(address => Licence)) private _licences;
    mapping(bytes32 => Usage) private _usage;
    mapping(bytes32 => mapping(address => Exit)) private _exits;
    /// @notice escrow[user][host]: what the user deposited for that host's permits.
    mapping(address => mapping(address => uint256)) public escrow;
    /// @notice When the user asked for a refund of its escrow with a host (0: none pending).
    mapping(address => mapping(address => uint256)) public refundRequestedAt;
    /// @notice Pull-based credits: fees, rewards, returned bonds.
    mapping(address => uint256) public credits;
    /// @notice The host that settled a permit (by its EIP-712 hash); zero if never settled.
    mapping(bytes32 => address) public settledBy;
    /// @notice permitNonceUsed[user][host][modelKey][nonce]: the replay guard. A user's nonce is spent per host and
    ///         model, so a permit re-signed with the same nonce (another fee or expiry) settles once with that host. A
    ///         user-wide nonce let a user, or an owner posing as one, burn the nonce of a permit a host had already
    ///         served by settling another permit through a second host first: the served one was then skipped, and its
    ///         receipt, naming an unsettled permit, became evidence against an honest host.
    mapping(address => mapping(address => mapping(bytes32 => mapping(uint256 => bool)))) public permitNonceUsed;
    /// @notice The next nonce of a parent owner's ParentConsent signature.
    mapping(address => uint256) public consentNonce;
    /// @notice Claim bonds held (locked) for the claims contract.
    uint256 public bondsHeld;

    event Initialized(address claims, address governance, uint256[12] parameters);
    event ParameterChanged(uint8 indexed id, uint256 oldValue, uint256 newValue);
    event RegistrationCommitted(address indexed owner, bytes32 commitment);
    event ModelRegistered(bytes32 indexed modelKey, string modelId, address indexed owner, bytes32 weightsDigest,
        bytes32 fingerprintRoot, uint256 fingerprintCount, uint256 pricePerQuery, uint256 minCollateral, string metadata,
        string licenceTerms);
    event VersionAdded(bytes32 indexed modelKey, uint256 version, bytes32 weightsDigest, bytes32 fingerprintRoot,
        uint256 fingerprintCount, string notes);
    event ParentDeclared(bytes32 indexed modelKey, bytes32 indexed parentKey, uint256 shareBps, address parentOwner);
    event OwnershipTransferStarted(bytes32 indexed modelKey, address indexed owner, address indexed newOwner);
    event OwnershipTransferred(bytes32 indexed modelKey, address indexed previousOwner, address indexed newOwner);
    event LicenceApplied(bytes32 indexed modelKey, address indexed host, uint256 ordinal, uint256 collateral, string endpoint);
    event CopyDelivered(bytes32 indexed modelKey, address indexed host, bytes32 indicesRoot, uint256 fingerprintCount,
        bytes32 copyDigest, string allocation);
    event CopyAcknowledged(bytes32 indexed modelKey, address indexed host, bytes32 copyDigest);
    event ExitAnnounced(bytes32 indexed modelKey, address indexed host, uint256 exitEpoch, uint256 releasableAt);
    event CollateralReleased(bytes32 indexed modelKey, address indexed host, uint256 amount);
    event Deposited(address indexed user, address indexed host, uint256 amount, uint256 escrow);
    event RefundRequested(address indexed user, address indexed host, uint256 availableAt);
    event Refunded(address indexed user, address indexed host, uint256 amount);
    event UsageCommitted(bytes32 indexed modelKey, address indexed host, uint256 indexed epoch, bytes32 receiptsRoot,
        uint256 receiptCount, uint256 settled, uint256 skipped, uint256 total);
    event PermitSettled(bytes32 indexed permitHash, address indexed user, address indexed host, uint256 nonce, uint256 fee);
    event PermitSkipped(bytes32 indexed permitHash, address indexed user, address indexed host, uint256 nonce, SkipReason reason);
    event Withdrawn(address indexed account, uint256 amount);
    event BondLocked(address indexed prover, uint256 amount);
    event BondReleased(address indexed to, uint256 amount);
    event Slashed(bytes32 indexed modelKey, address indexed host, address indexed prover, uint256 slashed, bool capped,
        uint256 proverReward, uint256 ownerShare);
    event AccusationFiled(bytes32 indexed modelKey, address indexed host, address indexed owner, bytes32 evidenceHash);

    error AlreadyInitialized();
    error NotDeployer(address caller);
    error NotClaims(address caller);
    error NotGovernance(address caller);
    error InvalidParameter(uint8 id, uint256 value);
    error ParameterFixed(uint8 id);
    error InvalidModelId();
    error ModelExists(bytes32 modelKey);
    error InvalidRegistrationDelay(uint256 delay);
    error RegistrationAlreadyCommitted(address owner, bytes32 commitment);
    error RegistrationNotCommitted(address owner, bytes32 commitment);
    error RegistrationTooEarly(bytes32 commitment, uint256 dueAt);
    error RegistrationCommitExpired(bytes32 commitment, uint256 expiredAt);
    error UnknownModel(bytes32 modelKey);
    error NotModelOwner(bytes32 modelKey, address caller);
    error NotPendingOwner(bytes32 modelKey, address caller);
    error NoPendingTransfer(bytes32 modelKey);
    error InvalidAddress();
    error InvalidShare(uint256 shareBps);
    error SharesExceedWhole(uint256 totalBps);
    error TooManyParents();
    error ParentExists(bytes32 modelKey, bytes32 parentKey);
    error FamilyCycle(bytes32 modelKey, bytes32 parentKey);
    error FamilyTreeTooLarge();
    error ConsentExpired(uint256 deadline);
    error BadConsentSignature(address expected, address recovered);
    error InvalidDigest();
    error LicenceExists(bytes32 modelKey, address host);
    error UnknownLicence(bytes32 modelKey, address host);
    error CollateralTooLow(uint256 collateral, uint256 required);
    error CopyAlreadyDelivered(bytes32 modelKey, address host);
    error CopyNotDelivered(bytes32 modelKey, address host);
    error CopyDigestMismatch(bytes32 expected, bytes32 given);
    error CopyNotAcknowledged(bytes32 modelKey, address host);
    error ExitAlreadyAnnounced(bytes32 modelKey, address host);
    error ExitNotAnnounced(bytes32 modelKey, address host);
    error ReleaseNotDue(uint256 releasableAt);
    error OpenClaims(bytes32 modelKey, address host, uint256 open);
    error AlreadyReleased(bytes32 modelKey, address host);
    error UsageAfterExit(uint256 epoch, uint256 exitEpoch);
    error ZeroAmount();
    error NothingToRefund();
    error NoRefundRequested();
    error RefundAlreadyRequested(address user, address host);
    error RefundNotYetDue(uint256 availableAt);
    error EpochNotStarted(uint256 epoch, uint256 current);
    error UsageAlreadyCommitted(bytes32 modelKey, address host, uint256 epoch);
    error InvalidUsageRoot();
    error TooFewReceipts(uint256 receiptCount, uint256 permits);
    error NothingToWithdraw();

    modifier onlyClaims() {
        if (msg.sender != claims) revert NotClaims(msg.sender);
        _;
    }

    /// @param initialParameters the 12 parameters in Param order (validated).
    constructor(IERC20 token_, address treasury_, uint256[12] memory initialParameters, uint256 registrationDelay_)
        EIP712("OML", "1") {
        if (address(token_) == address(0) || treasury_ == address(0)) revert InvalidAddress();
        for (uint8 i = 0; i < Param.Count; i++) validateParameter(i, initialParameters[i]);
        if (registrationDelay_ > MAX_REGISTRATION_DELAY) revert InvalidRegistrationDelay(registrationDelay_);
        token = token_;
        treasury = treasury_;
        genesisTime = block.timestamp;
        registrationDelay = registrationDelay_;
        _deployer = msg.sender;
        _params = initialParameters;
    }

    /// @notice Binds the claims and governance contracts, once, by the deployer.
    function initialize(address claims_, address governance_) external {
        if (msg.sender != _deployer) revert NotDeployer(msg.sender);
        if (claims != address(0)) revert AlreadyInitialized();
        if (claims_ == address(0) || governance_ == address(0)) revert InvalidAddress();
        claims = claims_;
        governance = governance_;
        emit Initialized(claims_, governance_, _params);
    }

    // ---------------------------------------------------------------- parameters

    function param(uint8 id) public view returns (uint256) {
        return _params[id];
    }

    function parameters() external view returns (uint256[12] memory) {
        return _params;
    }

    /// @notice Reverts with InvalidParameter unless value is allowed for parameter id: basis points in [0, 10000]
    ///         (QuorumBps at least 1), windows, delays and the epoch from one second to MAX_WINDOW_SECONDS.
    function validateParameter(uint8 id, uint256 value) public pure {
        bool ok;
        if (id == Param.HostFeeShareBps || id == Param.SlashFractionBps || id == Param.ProverRewardBps) ok = value <= 10_000;
        else if (id == Param.QuorumBps) ok = value >= 1 && value <= 10_000;
        else if (id == Param.RevealWindowSeconds || id == Param.RebutWindowSeconds || id == Param.EpochSeconds
            || id == Param.VotingWindowSeconds || id == Param.RefundDelaySeconds) ok = value >= 1 && value <= MAX_WINDOW_SECONDS;
        else if (id == Param.MinBond || id == Param.MinCollateral || id == Param.ProposalThreshold) ok = value <= type(uint128).max;
        if (!ok) revert InvalidParameter(id, value);
    }

    /// @notice What governance may set: validateParameter's ranges, and never EpochSeconds. Usage is committed per
    ///         epoch number and epochs are numbered from genesis, so a new epoch length would renumber the past and
    ///         could leave a host unable to commit (its next epoch number already used, or not yet started) until its
    ///         permits expired unsettled.
    function validateChange(uint8 id, uint256 value) public pure {
        if (id == Param.EpochSeconds) revert ParameterFixed(id);
        validateParameter(id, value);
    }

    function setParameter(uint8 id, uint256 value) external {
        if (msg.sender != governance) revert NotGovernance(msg.sender);
        validateChange(id, value);
        emit ParameterChanged(id, _params[id], value);
        _params[id] = value;
    }

    function currentEpoch() public view returns (uint256) {
        return (block.timestamp - genesisTime) / _params[Param.EpochSeconds];
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- storage layer: models

    function modelKeyOf(string calldata modelId) public pure returns (bytes32) {
        return keccak256(bytes(modelId));
    }

    /// @notice What an owner commits to before registering: binds the owner, the model id, the weights digest, the
    ///         fingerprint root and count, and a secret salt (which keeps a guessable id or public weights hidden).
    function registrationCommitment(address owner, string calldata modelId, bytes32 weightsDigest, bytes32 fingerprintRoot,
        uint32 fingerprintCount, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(keccak256("oml/register/v1"), owner, keccak256(bytes(modelId)), weightsDigest,
            fingerprintRoot, fingerprintCount, salt));
    }

    /// @notice When (timestamp, block) `owner` committed `commitment`; zeros if it did not or it was used.
    function registrationCommitOf(address owner, bytes32 commitment) external view returns (uint256 committedAt, uint256 blockNumber) {
        RegistrationCommit memory rc = _registrationCommits[owner][commitment];
        return (rc.committedAt, rc.blockNumber);
    }

    /// @notice The first of a registration's two steps: commit to registrationCommitment(sender, ...), then call
    ///         registerModel with the same values and salt at least registrationDelay seconds later, in a later block,
    ///         and within REGISTRATION_COMMIT_LIFETIME. An expired commitment may be committed again.
    function commitRegistration(bytes32 commitment) external {
        if (commitment == bytes32(0)) revert InvalidDigest();
        RegistrationCommit storage rc = _registrationCommits[msg.sender][commitment];
        if (rc.committedAt != 0 && block.timestamp <= rc.committedAt + REGISTRATION_COMMIT_LIFETIME)
            revert RegistrationAlreadyCommitted(msg.sender, commitment);
        rc.committedAt = uint64(block.timestamp);
        rc.blockNumber = uint64(block.number);
        emit RegistrationCommitted(msg.sender, commitment);
    }

    /// @notice Registers modelId (first come, first served) with its first version, revealing the sender's earlier
    ///         registration commitment (commitRegistration). A copy of this call sent by anyone else finds no
    ///         commitment of its sender and reverts.
    function registerModel(string calldata modelId, bytes32 weightsDigest, bytes32 fingerprintRoot, uint32 fingerprintCount,
        uint256 pricePerQuery, uint256 minCollateral, string calldata metadata, string calldata licenceTerms, bytes32 salt) external {
        uint256 n = bytes(modelId).length;
        if (n == 0 || n > MAX_MODEL_ID_BYTES) revert InvalidModelId();
        if (weightsDigest == bytes32(0) || (fingerprintRoot == bytes32(0)) != (fingerprintCount == 0)) revert InvalidDigest();
        bytes32 commitment = registrationCommitment(msg.sender, modelId, weightsDigest, fingerprintRoot, fingerprintCount, salt);
        RegistrationCommit memory rc = _registrationCommits[msg.sender][commitment];
        if (rc.committedAt == 0) revert RegistrationNotCommitted(msg.sender, commitment);
        if (block.timestamp > rc.committedAt + REGISTRATION_COMMIT_LIFETIME)
            revert RegistrationCommitExpired(commitment, rc.committedAt + REGISTRATION_COMMIT_LIFETIME);
        if (block.number <= rc.blockNumber || block.timestamp < rc.committedAt + registrationDelay)
            revert RegistrationTooEarly(commitment, rc.committedAt + registrationDelay);
        delete _registrationCommits[msg.sender][commitment];
        bytes32 key = keccak256(bytes(modelId));
        Model storage m = _models[key];
        if (m.exists) revert ModelExists(key);
        m.exists = true;
        m.owner = msg.sender;
        m.price = pricePerQuery;
        m.minCollateral = minCollateral;
        m.versions = 1;
        _versions[key][0] = Version(weightsDigest, fingerprintRoot, fingerprintCount);
        emit ModelRegistered(key, modelId, msg.sender, weightsDigest, fingerprintRoot, fingerprintCount, pricePerQuery,
            minCollateral, metadata, licenceTerms);
    }

    function addVersion(bytes32 modelKey, bytes32 weightsDigest, bytes32 fingerprintRoot, uint32 fingerprintCount,
        string calldata notes) external {
        Model storage m = _ownedModel(modelKey);
        if (weightsDigest == bytes32(0) || (fingerprintRoot == bytes32(0)) != (fingerprintCount == 0)) revert InvalidDigest();
        uint256 v = m.versions++;
        _versions[modelKey][v] = Version(weightsDigest, fingerprintRoot, fingerprintCount);
        emit VersionAdded(modelKey, v, weightsDigest, fingerprintRoot, fingerprintCount, notes);
    }

    /// @notice Declares parentId as a parent of modelId with shareBps of its owner revenue. Signed off-chain by the
    ///         parent's owner (EIP-712 ParentConsent with its next consentNonce), unless the sender owns both.
    function declareParent(string calldata modelId, string calldata parentModelId, uint256 shareBps, uint256 deadline,
        bytes calldata parentOwnerSignature) external {
        bytes32 key = keccak256(bytes(modelId));
        bytes32 parentKey = keccak256(bytes(parentModelId));
        Model storage m = _ownedModel(key);
        Model storage p = _models[parentKey];
        if (!p.exists) revert UnknownModel(parentKey);
        if (shareBps == 0 || shareBps > 10_000) revert InvalidShare(shareBps);
        uint256 total = m.parentShareBps + shareBps;
        if (total > 10_000) revert SharesExceedWhole(total);
        ParentEdge[] storage edges = _parents[key];
        if (edges.length >= MAX_PARENTS) revert TooManyParents();
        for (uint256 i = 0; i < edges.length; i++) if (edges[i].model == parentKey) revert ParentExists(key, parentKey);
        if (parentKey == key || _isAncestor(key, parentKey)) revert FamilyCycle(key, parentKey);
        if (p.owner != msg.sender) {
            if (block.timestamp > deadline) revert ConsentExpired(deadline);
            bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(PARENT_CONSENT_TYPEHASH, key, parentKey, shareBps,
                msg.sender, consentNonce[p.owner], deadline)));
            (address signer,,) = ECDSA.tryRecover(digest, parentOwnerSignature);
            if (signer != p.owner) revert BadConsentSignature(p.owner, signer);
            consentNonce[p.owner]++;
        }
        m.parentShareBps = uint16(total);
        edges.push(ParentEdge(parentKey, uint16(shareBps)));
        emit ParentDeclared(key, parentKey, shareBps, p.owner);
    }

    /// @dev Whether `who` is an ancestor of `start` (iterative DFS, bounded by MAX_ANCESTRY visits).
    function _isAncestor(bytes32 who, bytes32 start) private view returns (bool) {
        bytes32[] memory stack = new bytes32[](MAX_ANCESTRY);
        uint256 top = 0;
        uint256 visits = 0;
        stack[top++] = start;
        while (top > 0) {
            bytes32 cur = stack[--top];
            if (++visits > MAX_ANCESTRY) revert FamilyTreeTooLarge();
            ParentEdge[] storage edges = _parents[cur];
            for (uint256 i = 0; i < edges.length; i++) {
                if (edges[i].model == who) return true;
                if (top == MAX_ANCESTRY) revert FamilyTreeTooLarge();
                stack[top++] = edges[i].model;
            }
        }
        return false;
    }

    /// @notice Offers the model to newOwner, who completes the transfer with acceptModel; a later offer replaces a
    ///         pending one, and newOwner = address(0) withdraws it (NoPendingTransfer when there is none).
    function transferModel(bytes32 modelKey, address newOwner) external {
        Model storage m = _ownedModel(modelKey);
        if (newOwner == msg.sender) revert InvalidAddress();
        if (newOwner == address(0) && m.pendingOwner == address(0)) revert NoPendingTransfer(modelKey);
        m.pendingOwner = newOwner;
        emit OwnershipTransferStarted(modelKey, msg.sender, newOwner);
    }

    function acceptModel(bytes32 modelKey) external {
        Model storage m = _models[modelKey];
        if (!m.exists) revert UnknownModel(modelKey);
        if (m.pendingOwner != msg.sender || msg.sender == address(0)) revert NotPendingOwner(modelKey, msg.sender);
        address previous = m.owner;
        m.owner = msg.sender;
        m.pendingOwner = address(0);
        emit OwnershipTransferred(modelKey, previous, msg.sender);
    }

    function _ownedModel(bytes32 key) private view returns (Model storage m) {
        m = _models[key];
        if (!m.exists) revert UnknownModel(key);
        if (m.owner != msg.sender) revert NotModelOwner(key, msg.sender);
    }

    function model(bytes32 modelKey) external view returns (Model memory) {
        return _models[modelKey];
    }

    function modelOwner(bytes32 modelKey) external view returns (address) {
        return _models[modelKey].owner;
    }

    function parentsOf(bytes32 modelKey) external view returns (ParentEdge[] memory) {
        return _parents[modelKey];
    }

    function versionOf(bytes32 modelKey, uint256 version) external view returns (Version memory) {
        return _versions[modelKey][version];
    }

    // ---------------------------------------------------------------- distribution layer: licences and copies

    function applyLicense(bytes32 modelKey, uint256 collateral, string calldata endpoint) external nonReentrant {
        Model storage m = _models[modelKey];
        if (!m.exists) revert UnknownModel(modelKey);
        Licence storage l = _licences[modelKey][msg.sender];
        if (l.exists) revert LicenceExists(modelKey, msg.sender);
        uint256 required = m.minCollateral > _params[Param.MinCollateral] ? m.minCollateral : _params[Param.MinCollateral];
        if (collateral < required || collateral == 0) revert CollateralTooLow(collateral, required);
        uint32 ordinal = m.licences++;
        l.exists = true;
        l.ordinal = ordinal;
        l.collateralPosted = collateral;
        l.collateralLocked = collateral;
        token.safeTransferFrom(msg.sender, address(this), collateral);
        emit LicenceApplied(modelKey, msg.sender, ordinal, collateral, endpoint);
    }

    /// @notice The owner records a host's copy: the salted Merkle root over the host's fingerprint subset, its leaf
    ///         count, the copy's weights digest and the allocation scheme (never the indices or keys).
    function deliverCopy(bytes32 modelKey, address host, bytes32 indicesRoot, uint32 fingerprintCount, bytes32 copyDigest,
        string calldata allocation) external {
        _ownedModel(modelKey);
        Licence storage l = _licences[modelKey][host];
        if (!l.exists) revert UnknownLicence(modelKey, host);
        if (l.delivered) revert CopyAlreadyDelivered(modelKey, host);
        if (indicesRoot == bytes32(0) || fingerprintCount == 0 || copyDigest == bytes32(0)) revert InvalidDigest();
        l.delivered = true;
        l.indicesRoot = indicesRoot;
        l.fingerprintCount = fingerprintCount;
        l.copyDigest = copyDigest;
        emit CopyDelivered(modelKey, host, indicesRoot, fingerprintCount, copyDigest, allocation);
    }

    function acknowledgeCopy(bytes32 modelKey, bytes32 copyDigest) external {
        Licence storage l = _licences[modelKey][msg.sender];
        if (!l.exists) revert UnknownLicence(modelKey, msg.sender);
        if (!l.delivered) revert CopyNotDelivered(modelKey, msg.sender);
        if (l.copyDigest != copyDigest) revert CopyDigestMismatch(l.copyDigest, copyDigest);
        l.acknowledged = true;
        emit CopyAcknowledged(modelKey, msg.sender, copyDigest);
    }

    function licenceOf(bytes32 modelKey, address host) external view returns (Licence memory) {
        return _licences[modelKey][host];
    }

    function copyOf(bytes32 modelKey, address host)
        external view returns (bool licensed, bool delivered, bytes32 indicesRoot, uint256 fingerprintCount) {
        Licence storage l = _licences[modelKey][host];
        return (l.exists, l.delivered, l.indicesRoot, l.fingerprintCount);
    }

    /// @notice The host announces the end of its licence. From now on it takes no new permits and may commit usage for
    ///         the current (exit) epoch and earlier ones only; its collateral stays claimable until `releasableAt` = the
    ///         end of the exit epoch + RevealWindowSeconds + RebutWindowSeconds (a prover who caught it in its last epoch
    ///         can still commit and reveal, and the host still rebut), and after that while a revealed claim is open.
    function announceExit(bytes32 modelKey) external {
        if (!_licences[modelKey][msg.sender].exists) revert UnknownLicence(modelKey, msg.sender);
        Exit storage x = _exits[modelKey][msg.sender];
        if (x.announcedAt != 0) revert ExitAlreadyAnnounced(modelKey, msg.sender);
        uint256 epoch = currentEpoch();
        uint256 due = genesisTime + (epoch + 1) * _params[Param.EpochSeconds] + _params[Param.RevealWindowSeconds]
            + _params[Param.RebutWindowSeconds];
        x.announcedAt = SafeCast.toUint64(block.timestamp);
        x.epoch = SafeCast.toUint64(epoch);
        x.releasableAt = SafeCast.toUint64(due);
        emit ExitAnnounced(modelKey, msg.sender, epoch, due);
    }

    /// @notice After the exit notice, with no revealed claim open against it, the host's remaining collateral (posted
    ///         minus slashes) becomes its credits (withdraw() pays them). Once per licence.
    function releaseCollateral(bytes32 modelKey) external returns (uint256 amount) {
        Licence storage l = _licences[modelKey][msg.sender];
        if (!l.exists) revert UnknownLicence(modelKey, msg.sender);
        Exit storage x = _exits[modelKey][msg.sender];
        if (x.announcedAt == 0) revert ExitNotAnnounced(modelKey, msg.sender);
        if (x.released) revert AlreadyReleased(modelKey, msg.sender);
        if (block.timestamp < x.releasableAt) revert ReleaseNotDue(x.releasableAt);
        uint256 open = IOmlClaimsView(claims).openClaimsAgainst(modelKey, msg.sender);
        if (open != 0) revert OpenClaims(modelKey, msg.sender, open);
        x.released = true;
        amount = l.collateralLocked;
        l.collateralLocked = 0;
        credits[msg.sender] += amount;
        emit CollateralReleased(modelKey, msg.sender, amount);
    }

    function exitOf(bytes32 modelKey, address host)
        external view returns (bool announced, uint256 exitEpoch, uint256 releasableAt, bool released) {
        Exit storage x = _exits[modelKey][host];
        return (x.announcedAt != 0, x.epoch, x.releasableAt, x.released);
    }

    /// @notice The owner of a model records a leak accusation (the tracing report's hash).
    function fileAccusation(bytes32 modelKey, address host, bytes32 evidenceHash) external {
        _ownedModel(modelKey);
        if (!_licences[modelKey][host].exists) revert UnknownLicence(modelKey, host);
        emit AccusationFiled(modelKey, host, msg.sender, evidenceHash);
    }

    // ---------------------------------------------------------------- access layer: escrow, permits, usage

    /// @notice Moves `amount` of the sender's tokens into its escrow for `host` (approve this contract first).
    function deposit(address host, uint256 amount) external nonReentrant {
        if (host == address(0)) revert InvalidAddress();
        if (amount == 0) revert ZeroAmount();
        // a pending refund is taken before depositing again (the host stopped serving at the request)
        if (refundRequestedAt[msg.sender][host] != 0) revert RefundAlreadyRequested(msg.sender, host);
        uint256 e = escrow[msg.sender][host] + amount;
        escrow[msg.sender][host] = e;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(msg.sender, host, amount, e);
    }

    /// @notice Announces a refund; the host stops accepting new permits, and refund() is possible after the delay.
    function requestRefund(address host) external {
        if (escrow[msg.sender][host] == 0) revert NothingToRefund();
        if (refundRequestedAt[msg.sender][host] != 0) revert RefundAlreadyRequested(msg.sender, host);   // no restarting the delay
        uint256 dueAt = block.timestamp + _params[Param.RefundDelaySeconds];
        refundRequestedAt[msg.sender][host] = block.timestamp;
        emit RefundRequested(msg.sender, host, dueAt);
    }

    function refund(address host) external nonReentrant {
        uint256 requested = refundRequestedAt[msg.sender][host];
        if (requested == 0) revert NoRefundRequested();
        uint256 dueAt = requested + _params[Param.RefundDelaySeconds];
        if (block.timestamp < dueAt) revert RefundNotYetDue(dueAt);
        uint256 amount = escrow[msg.sender][host];
        escrow[msg.sender][host] = 0;
        refundRequestedAt[msg.sender][host] = 0;
        if (amount > 0) token.safeTransfer(msg.sender, amount);
        emit Refunded(msg.sender, host, amount);
    }

    function permitHash(address user, bytes32 modelKey, address host, bytes32 queryHash, uint256 nonce, uint256 expiry,
        uint256 fee) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(PERMIT_TYPEHASH, user, modelKey, host, queryHash, nonce, expiry, fee)));
    }

    /// @notice The host commits its usage of one epoch: the receipts' Merkle root (SHA-256 tree over the receipts'
    ///         EIP-712 digests, as src/Oml.Fingerprinting/MerkleTree.cs) and the permits to settle. Valid, funded
    ///         permits settle; each other one is skipped with its reason (PermitSkipped). Once per (model, host, epoch).
    function commitUsage(bytes32 modelKey, uint256 epoch, bytes32 receiptsRoot, uint64 receiptCount,
        SignedPermit[] calldata permits) external nonReentrant {
        Model storage m = _models[modelKey];
        if (!m.exists) revert UnknownModel(modelKey);
        Licence storage l = _licences[modelKey][msg.sender];
        if (!l.exists) revert UnknownLicence(modelKey, msg.sender);
        if (!l.acknowledged) revert CopyNotAcknowledged(modelKey, msg.sender);
        uint256 current = currentEpoch();
        if (epoch > current) revert EpochNotStarted(epoch, current);
        Exit storage x = _exits[modelKey][msg.sender];
        if (x.announcedAt != 0 && epoch > x.epoch) revert UsageAfterExit(epoch, x.epoch);
        bytes32 uk = keccak256(abi.encode(modelKey, msg.sender, epoch));
        Usage storage u = _usage[uk];
        if (u.committed) revert UsageAlreadyCommitted(modelKey, msg.sender, epoch);
        if ((receiptCount == 0) != (receiptsRoot == bytes32(0))) revert InvalidUsageRoot();
        if (receiptCount < permits.length) revert TooFewReceipts(receiptCount, permits.length);
        u.committed = true;
        u.receiptCount = receiptCount;
        u.receiptsRoot = receiptsRoot;

        uint256 price = m.price;
        uint256 hostTotal;
        uint256 total;
        uint256 settled;
        for (uint256 i = 0; i < permits.length; i++) {
            (bool ok, uint256 fee, uint256 hostCut) = _settle(modelKey, price, permits[i]);
            if (!ok) continue;
            settled++;
            total += fee;
            hostTotal += hostCut;
        }
        if (hostTotal > 0) credits[msg.sender] += hostTotal;
        // The owner revenue of the whole batch is split along the family tree once (its gas does not grow with the
        // number of permits times the tree, and floors are taken once per batch, not once per permit).
        _split(modelKey, total - hostTotal, 0);
        emit UsageCommitted(modelKey, msg.sender, epoch, receiptsRoot, receiptCount, settled, permits.length - settled, total);
    }

    /// @dev Settles one permit of the sender's batch, or skips it with its reason. Returns the fee charged (0 if
    ///      skipped) and the host's cut of it; false when skipped. The owner revenue is split by the caller.
    function _settle(bytes32 modelKey, uint256 price, SignedPermit calldata p) private returns (bool, uint256, uint256) {
        bytes32 h = permitHash(p.user, modelKey, msg.sender, p.queryHash, p.nonce, p.expiry, p.fee);
        SkipReason why = _check(modelKey, p, h, price);
        if (why != SkipReason.None) {
            emit PermitSkipped(h, p.user, msg.sender, p.nonce, why);
            return (false, 0, 0);
        }
        escrow[p.user][msg.sender] -= p.fee;
        permitNonceUsed[p.user][msg.sender][modelKey][p.nonce] = true;
        settledBy[h] = msg.sender;
        uint256 hostCut = p.fee * _params[Param.HostFeeShareBps] / 10_000;
        emit PermitSettled(h, p.user, msg.sender, p.nonce, p.fee);
        return (true, p.fee, hostCut);
    }

    function _check(bytes32 modelKey, SignedPermit calldata p, bytes32 h, uint256 price) private view returns (SkipReason) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(h, p.signature);
        if (err != ECDSA.RecoverError.NoError || signer != p.user || signer == address(0)) return SkipReason.BadSignature;
        if (p.expiry < block.timestamp) return SkipReason.Expired;
        if (permitNonceUsed[p.user][msg.sender][modelKey][p.nonce]) return SkipReason.Replayed;
        if (p.fee < price) return SkipReason.FeeTooLow;
        if (escrow[p.user][msg.sender] < p.fee) return SkipReason.Unfunded;
        return SkipReason.None;
    }

    /// @dev Each declared parent gets its share (floor) of `amount`, split again among its own parents; the rest goes
    ///      to the model's current owner. At most MAX_SPLIT_VISITS models are split (a zero part visits nothing): after
    ///      that, a parent not yet visited still gets its share, credited to its owner without being split further up
    ///      (so a chain grown above one parent cannot take a later sibling's consented share).
    ///      Returns the number of models visited so far. Mirrored by Oml.Protocol's FeeSplit.
    function _split(bytes32 key, uint256 amount, uint256 visited) private returns (uint256) {
        if (amount == 0) return visited;
        visited++;
        ParentEdge[] storage edges = _parents[key];
        uint256 rest = amount;
        for (uint256 i = 0; i < edges.length; i++) {
            uint256 part = amount * edges[i].shareBps / 10_000;
            rest -= part;
            if (visited < MAX_SPLIT_VISITS) visited = _split(edges[i].model, part, visited);
            else if (part > 0) credits[_models[edges[i].model].owner] += part;
        }
        credits[_models[key].owner] += rest;
        return visited;
    }

    /// @notice What the split of one fee would credit, for off-chain checks: (accounts, amounts) in crediting order,
    ///         the host's cut first, then one entry per model visited (as _split; a usage batch splits its owner
    ///         revenue once, so a batch's floors may differ from the sum of its fees' previews).
    function previewSplit(bytes32 modelKey, address host, uint256 fee)
        external view returns (address[] memory accounts, uint256[] memory amounts) {
        accounts = new address[](1 + MAX_SPLIT_VISITS * (1 + MAX_PARENTS));
        amounts = new uint256[](1 + MAX_SPLIT_VISITS * (1 + MAX_PARENTS));
        uint256 hostCut = fee * _params[Param.HostFeeShareBps] / 10_000;
        accounts[0] = host;
        amounts[0] = hostCut;
        uint256 n = 1;
        if (fee - hostCut > 0) (, n) = _previewSplit(modelKey, fee - hostCut, accounts, amounts, 0, 1);
        assembly ("memory-safe") {
            mstore(accounts, n)
            mstore(amounts, n)
        }
    }

    function _previewSplit(bytes32 key, uint256 amount, address[] memory accounts, uint256[] memory amounts,
        uint256 visited, uint256 n) private view returns (uint256, uint256) {
        if (amount == 0) return (visited, n);
        visited++;
        ParentEdge[] storage edges = _parents[key];
        uint256 rest = amount;
        for (uint256 i = 0; i < edges.length; i++) {
            uint256 part = amount * edges[i].shareBps / 10_000;
            rest -= part;
            if (visited < MAX_SPLIT_VISITS) (visited, n) = _previewSplit(edges[i].model, part, accounts, amounts, visited, n);
            else if (part > 0) {
                accounts[n] = _models[edges[i].model].owner;
                amounts[n] = part;
                n++;
            }
        }
        accounts[n] = _models[key].owner;
        amounts[n] = rest;
        return (visited, n + 1);
    }

    function usageOf(bytes32 modelKey, address host, uint256 epoch)
        external view returns (bool committed, bytes32 receiptsRoot, uint256 receiptCount) {
        Usage storage u = _usage[keccak256(abi.encode(modelKey, host, epoch))];
        return (u.committed, u.receiptsRoot, u.receiptCount);
    }

    // ---------------------------------------------------------------- withdrawals

    /// @notice Pays out all of the sender's credits (pull-based). A second call without new credits reverts.
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        credits[msg.sender] = 0;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // ---------------------------------------------------------------- hooks for the claims contract

    function lockBond(address prover, uint256 amount) external onlyClaims nonReentrant {
        bondsHeld += amount;
        token.safeTransferFrom(prover, address(this), amount);
        emit BondLocked(prover, amount);
    }

    function releaseBond(address to, uint256 amount) external onlyClaims {
        bondsHeld -= amount;
        credits[to] += amount;
        emit BondReleased(to, amount);
    }

    /// @notice Slashes SlashFractionBps of the host's posted collateral, capped at what is still locked; the prover
    ///         gets ProverRewardBps of it plus its bond back, the model's owner the rest (as credits).
    function slash(bytes32 modelKey, address host, address prover, uint256 bond)
        external onlyClaims returns (uint256 slashed, bool capped) {
        Licence storage l = _licences[modelKey][host];
        if (!l.exists) revert UnknownLicence(modelKey, host);
        slashed = l.collateralPosted * _params[Param.SlashFractionBps] / 10_000;
        if (slashed > l.collateralLocked) {
            slashed = l.collateralLocked;
            capped = true;
        }
        l.collateralLocked -= slashed;
        uint256 reward = slashed * _params[Param.ProverRewardBps] / 10_000;
        bondsHeld -= bond;
        credits[prover] += reward + bond;
        credits[_models[modelKey].owner] += slashed - reward;
        emit Slashed(modelKey, host, prover, slashed, capped, reward, slashed - reward);
    }
}
