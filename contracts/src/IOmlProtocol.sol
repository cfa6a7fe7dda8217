// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @notice Governable parameters of the protocol, by index (see OmlProtocol.param).
library Param {
    uint8 internal constant HostFeeShareBps = 0;
    uint8 internal constant SlashFractionBps = 1;
    uint8 internal constant ProverRewardBps = 2;
    uint8 internal constant MinBond = 3;
    uint8 internal constant RevealWindowSeconds = 4;
    uint8 internal constant RebutWindowSeconds = 5;
    uint8 internal constant EpochSeconds = 6;
    uint8 internal constant MinCollateral = 7;
    uint8 internal constant VotingWindowSeconds = 8;
    uint8 internal constant QuorumBps = 9;
    uint8 internal constant RefundDelaySeconds = 10;
    uint8 internal constant ProposalThreshold = 11;
    uint8 internal constant Count = 12;
}

/// @notice What the claims and governance contracts use of the core protocol contract.
interface IOmlProtocol {
    function param(uint8 id) external view returns (uint256);
    function validateParameter(uint8 id, uint256 value) external pure;
    function validateChange(uint8 id, uint256 value) external pure;
    function setParameter(uint8 id, uint256 value) external;
    function domainSeparator() external view returns (bytes32);
    function permitHash(address user, bytes32 modelKey, address host, bytes32 queryHash, uint256 nonce, uint256 expiry, uint256 fee)
        external view returns (bytes32);
    function modelOwner(bytes32 modelKey) external view returns (address);
    function copyOf(bytes32 modelKey, address host)
        external view returns (bool licensed, bool delivered, bytes32 indicesRoot, uint256 fingerprintCount);
    function usageOf(bytes32 modelKey, address host, uint256 epoch)
        external view returns (bool committed, bytes32 receiptsRoot, uint256 receiptCount);
    function settledBy(bytes32 permitHash) external view returns (address);
    function exitOf(bytes32 modelKey, address host)
        external view returns (bool announced, uint256 exitEpoch, uint256 releasableAt, bool released);
    function lockBond(address prover, uint256 amount) external;
    function releaseBond(address to, uint256 amount) external;
    function slash(bytes32 modelKey, address host, address prover, uint256 bond) external returns (uint256 slashed, bool capped);
}

/// @notice What the core protocol contract reads of the claims contract.
interface IOmlClaimsView {
    /// @notice Revealed claims against (model, host) not yet rebutted or settled.
    function openClaimsAgainst(bytes32 modelKey, address host) external view returns (uint256);
}
