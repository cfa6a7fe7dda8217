// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

interface ITokenReceiver {
    function onTokenReceived(address from, uint256 amount) external;
}

/// @notice TEST ONLY. An ERC-20 that calls the receiver back on every transfer to a contract (as ERC-777 and
///         ERC-1363 tokens do), so that tests can try to re-enter the protocol during a payout. Anyone can mint.
contract HookToken is ERC20 {
    constructor() ERC20("Hook Token", "HOOK") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && to.code.length > 0) {
            try ITokenReceiver(to).onTokenReceived(from, value) {} catch {}  // receivers without the hook are fine
        }
    }
}

/// @notice TEST ONLY. A contract account that forwards calls from its deployer and, when it receives tokens,
///         calls `reenterTarget` again with `reenterData` (e.g. withdraw()), recording what happened.
contract Reenterer is ITokenReceiver {
    address public immutable controller;
    address public reenterTarget;
    bytes public reenterData;
    uint256 public reentryAttempts;
    bool public lastReentrySucceeded;
    bytes public lastReentryError;

    constructor() {
        controller = msg.sender;
    }

    function arm(address target, bytes calldata data) external {
        require(msg.sender == controller, "controller only");
        reenterTarget = target;
        reenterData = data;
    }

    function forward(address target, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == controller, "controller only");
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function onTokenReceived(address, uint256) external {
        if (reenterTarget == address(0) || reentryAttempts > 0) return;
        reentryAttempts++;
        (bool ok, bytes memory ret) = reenterTarget.call(reenterData);
        lastReentrySucceeded = ok;
        lastReentryError = ret;
    }
}
