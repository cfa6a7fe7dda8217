// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IOmlProtocol, Param} from "./IOmlProtocol.sol";

/// @title OmlGovernance: parameter changes decided by tokens staked for governance.
/// @notice Voting weight is the stake an account had at the block before the proposal was created (a snapshot:
///         stake added later does not count for it), or its stake when it votes if that is less. Proposing needs a stake of at least ProposalThreshold. A
///         proposal passes when yes > no and yes + no reaches QuorumBps of the total stake at the snapshot; anyone
///         then executes it after the voting window. Stake can be withdrawn only after every window the staker voted
///         in has closed and at least VotingWindowSeconds after its last stake. Weight thus costs locked capital;
///         fresh accounts have none, and registering models buys no votes.
contract OmlGovernance is ReentrancyGuard {
    using SafeERC20 for IERC20;
    using Checkpoints for Checkpoints.Trace208;

    struct Proposal {
        address proposer;
        uint48 snapshotBlock;
        uint64 votingEnds;
        bool executed;
        uint256 totalStake;
        uint256 yes;
        uint256 no;
        uint8[] ids;
        uint256[] values;
    }

    uint256 public constant MAX_CHANGES = 12;

    IOmlProtocol public immutable protocol;
    IERC20 public immutable token;
    mapping(address => Checkpoints.Trace208) private _stakes;
    Checkpoints.Trace208 private _total;
    mapping(address => uint256) public lastStakeAt;
    mapping(address => uint256) public votesLockedUntil;
    Proposal[] private _proposals;
    mapping(uint256 => mapping(address => bool)) public hasVoted;

    event Staked(address indexed account, uint256 amount, uint256 stake);
    event Unstaked(address indexed account, uint256 amount, uint256 stake);
    event Proposed(uint256 indexed proposalId, address indexed proposer, uint8[] ids, uint256[] values, uint256 snapshotBlock,
        uint256 votingEnds, uint256 totalStake, string description);
    event Voted(uint256 indexed proposalId, address indexed voter, bool support, uint256 weight);
    event Executed(uint256 indexed proposalId);

    error ZeroAmount();
    error InsufficientStake(uint256 stake, uint256 amount);
    error StakeLocked(uint256 until);
    error BelowProposalThreshold(uint256 stake, uint256 threshold);
    error InvalidChanges();
    error UnknownProposal(uint256 proposalId);
    error VotingClosed(uint256 proposalId, uint256 endedAt);
    error VotingOpen(uint256 proposalId, uint256 endsAt);
    error AlreadyVoted(uint256 proposalId, address voter);
    error NoVotingPower(uint256 proposalId, address voter);
    error AlreadyExecuted(uint256 proposalId);
    error NotPassed(uint256 proposalId, uint256 yes, uint256 no, uint256 quorum);

    constructor(IOmlProtocol protocol_, IERC20 token_) {
        protocol = protocol_;
        token = token_;
    }

    function stakeOf(address account) public view returns (uint256) {
        return _stakes[account].latest();
    }

    function totalStake() external view returns (uint256) {
        return _total.latest();
    }

    function stakeAt(address account, uint256 blockNumber) external view returns (uint256) {
        return _stakes[account].upperLookupRecent(uint48(blockNumber));
    }

    function proposalCount() external view returns (uint256) {
        return _proposals.length;
    }

    function proposal(uint256 proposalId) external view returns (Proposal memory) {
        return _proposalOf(proposalId);
    }

    /// @notice Locks `amount` tokens as governance stake (approve this contract first).
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 s = stakeOf(msg.sender) + amount;
        _stakes[msg.sender].push(uint48(block.number), uint208(s));
        _total.push(uint48(block.number), uint208(_total.latest() + amount));
        lastStakeAt[msg.sender] = block.timestamp;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Staked(msg.sender, amount, s);
    }

    function unstake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 s = stakeOf(msg.sender);
        if (amount > s) revert InsufficientStake(s, amount);
        uint256 until = votesLockedUntil[msg.sender];
        uint256 stakeUnlock = lastStakeAt[msg.sender] + protocol.param(Param.VotingWindowSeconds);
        if (stakeUnlock > until) until = stakeUnlock;
        if (block.timestamp < until) revert StakeLocked(until);
        _stakes[msg.sender].push(uint48(block.number), uint208(s - amount));
        _total.push(uint48(block.number), uint208(_total.latest() - amount));
        token.safeTransfer(msg.sender, amount);
        emit Unstaked(msg.sender, amount, s - amount);
    }

    /// @notice Proposes setting parameters `ids` to `values` (each validated now: OmlProtocol.validateChange).
    function propose(uint8[] calldata ids, uint256[] calldata values, string calldata description)
        external returns (uint256 proposalId) {
        uint256 s = stakeOf(msg.sender);
        uint256 threshold = protocol.param(Param.ProposalThreshold);
        if (s == 0 || s < threshold) revert BelowProposalThreshold(s, threshold);
        if (ids.length == 0 || ids.length != values.length || ids.length > MAX_CHANGES) revert InvalidChanges();
        for (uint256 i = 0; i < ids.length; i++) {
            if (ids[i] >= Param.Count) revert InvalidChanges();
            protocol.validateChange(ids[i], values[i]);
        }
        uint48 snapshot = uint48(block.number - 1);
        uint256 ends = block.timestamp + protocol.param(Param.VotingWindowSeconds);
        uint256 total = _total.upperLookupRecent(snapshot);
        proposalId = _proposals.length;
        Proposal storage p = _proposals.push();
        p.proposer = msg.sender;
        p.snapshotBlock = snapshot;
        p.votingEnds = SafeCast.toUint64(ends);
        p.totalStake = total;
        p.ids = ids;
        p.values = values;
        emit Proposed(proposalId, msg.sender, ids, values, snapshot, ends, total, description);
    }

    function vote(uint256 proposalId, bool support) external {
        Proposal storage p = _proposalOf(proposalId);
        if (block.timestamp > p.votingEnds) revert VotingClosed(proposalId, p.votingEnds);
        if (hasVoted[proposalId][msg.sender]) revert AlreadyVoted(proposalId, msg.sender);
        // The stake at the snapshot, but no more than the voter still has staked: stake withdrawn after the snapshot
        // (allowed while the account had voted in no open window) would otherwise vote with capital it no longer locks.
        uint256 weight = _stakes[msg.sender].upperLookupRecent(p.snapshotBlock);
        uint256 current = stakeOf(msg.sender);
        if (current < weight) weight = current;
        if (weight == 0) revert NoVotingPower(proposalId, msg.sender);
        hasVoted[proposalId][msg.sender] = true;
        if (support) p.yes += weight;
        else p.no += weight;
        if (votesLockedUntil[msg.sender] < p.votingEnds + 1) votesLockedUntil[msg.sender] = p.votingEnds + 1;
        emit Voted(proposalId, msg.sender, support, weight);
    }

    function execute(uint256 proposalId) external {
        Proposal storage p = _proposalOf(proposalId);
        if (block.timestamp <= p.votingEnds) revert VotingOpen(proposalId, p.votingEnds);
        if (p.executed) revert AlreadyExecuted(proposalId);
        uint256 quorum = p.totalStake * protocol.param(Param.QuorumBps);
        if (p.yes <= p.no || (p.yes + p.no) * 10_000 < quorum) revert NotPassed(proposalId, p.yes, p.no, quorum);
        p.executed = true;
        emit Executed(proposalId);
        for (uint256 i = 0; i < p.ids.length; i++) protocol.setParameter(p.ids[i], p.values[i]);
    }

    function _proposalOf(uint256 proposalId) private view returns (Proposal storage) {
        if (proposalId >= _proposals.length) revert UnknownProposal(proposalId);
        return _proposals[proposalId];
    }
}
