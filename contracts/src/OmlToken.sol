// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title OmlToken: the protocol's currency on a local or test deployment.
/// @notice A plain ERC-20 whose treasury (set at deployment) alone can mint; on a public chain any ERC-20 can be
///         used in its place.
contract OmlToken is ERC20 {
    address public immutable treasury;

    error NotTreasury(address caller);

    constructor(address treasury_) ERC20("OML Token", "OML") {
        treasury = treasury_;
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != treasury) revert NotTreasury(msg.sender);
        _mint(to, amount);
    }
}
