// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title OmlToken: the protocol's currency on a local or test deployment.
/// @notice A plain ERC-20 whose treasury (set at deployment) alone can mint; on a public chain any ERC-20 can be
///         used in its place.
contract OmlToken is ERC20 {
    address public immutable treasury;

    /// @notice The protocol's amounts are signed 64-bit integers off chain (the embedded ledger, the projections of
    ///         this chain's events), so the supply never exceeds 2^63 - 1: no balance, escrow or stake can then be one
    ///         that the tools cannot represent.
    uint256 public constant MAX_SUPPLY = uint256(uint64(type(int64).max));

    error NotTreasury(address caller);
    error SupplyCapExceeded(uint256 supply, uint256 amount, uint256 cap);

    constructor(address treasury_) ERC20("OML Token", "OML") {
        treasury = treasury_;
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != treasury) revert NotTreasury(msg.sender);
        if (amount > MAX_SUPPLY - totalSupply()) revert SupplyCapExceeded(totalSupply(), amount, MAX_SUPPLY);
        _mint(to, amount);
    }
}
