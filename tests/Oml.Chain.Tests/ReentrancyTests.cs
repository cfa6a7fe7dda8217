using System.Numerics;
using Nethereum.Contracts;
using Oml.Protocol.Chain;

namespace Oml.Chain.Tests;

/// <summary>
/// Re-entering the other two token payouts (withdraw is in <see cref="ClientTests"/>): a deployment over
/// contracts/test/HookToken.sol, whose transfers call the receiving contract back, and a Reenterer account that calls
/// the paying function again from that callback. Each payout is guarded by OpenZeppelin's ReentrancyGuard; the
/// tests read the re-entry's revert reason, so they fail if the guard is removed (the re-entry would then revert
/// with another error, or pay).
/// </summary>
public sealed class ReentrancyTests(AnvilFixture fx)
{
    private sealed record Rig(ChainSender Deployer, OmlDeployment D, string Attacker, Contract Token, Contract Evil, Contract Protocol,
        Contract Governance)
    {
        public async Task Forward(Contract target, string fn, params object[] args) =>
            await Deployer.SendAsync(Attacker, Evil.GetFunction("forward").GetData(target.Address, Convert.FromHexString(target.GetFunction(fn).GetData(args)[2..])), fn);

        public async Task Arm(Contract target, string fn, params object[] args) =>
            await Deployer.SendAsync(Attacker, Evil.GetFunction("arm").GetData(target.Address, Convert.FromHexString(target.GetFunction(fn).GetData(args)[2..])), "arm");

        public async Task<BigInteger> TokensAsync(string who) => await Token.GetFunction("balanceOf").CallAsync<BigInteger>(who);

        /// <summary>The re-entry happened once, failed, and failed on the guard.</summary>
        public async Task AssertGuardRefusedAsync()
        {
            Assert.Equal(1, await Evil.GetFunction("reentryAttempts").CallAsync<BigInteger>());
            Assert.False(await Evil.GetFunction("lastReentrySucceeded").CallAsync<bool>());
            var error = await Evil.GetFunction("lastReentryError").CallAsync<byte[]>();
            Assert.Equal("ReentrancyGuardReentrantCall", ChainErrors.Decode("0x" + Convert.ToHexStringLower(error), "reentry").ErrorName);
        }
    }

    private async Task<Rig> RigAsync()
    {
        var hook = ContractArtifact.Load("HookToken");
        var reenterer = ContractArtifact.Load("Reenterer");
        var deployer = new ChainSender(fx.Node.RpcUrl, AnvilNode.DevKey, fx.Node.ChainId);
        var tokenAddress = (await deployer.SendAsync(null, hook.Bytecode, "deploy HookToken")).ContractAddress;
        var d = await OmlChainClient.DeployAsync(fx.Node.RpcUrl, fx.Node.ChainId, AnvilNode.DevKey, deployer.AddressHex, existingToken: tokenAddress,
            registrationDelaySeconds: 0);
        var attacker = (await deployer.SendAsync(null, reenterer.Bytecode, "deploy Reenterer")).ContractAddress;
        var rig = new Rig(deployer, d, attacker, deployer.Web3.Eth.GetContract(hook.Abi, tokenAddress), deployer.Web3.Eth.GetContract(reenterer.Abi, attacker),
            deployer.Web3.Eth.GetContract(ContractArtifact.OmlProtocol.Abi, d.Protocol), deployer.Web3.Eth.GetContract(ContractArtifact.OmlGovernance.Abi, d.Governance));
        await deployer.SendAsync(tokenAddress, rig.Token.GetFunction("mint").GetData(attacker, new BigInteger(1000)), "mint");
        return rig;
    }

    [Fact]
    public async Task Reentering_refund_from_a_token_callback_is_refused_and_the_escrow_is_paid_once()
    {
        var r = await RigAsync();
        string host = r.Deployer.AddressHex;
        await r.Forward(r.Token, "approve", r.D.Protocol, new BigInteger(300));
        await r.Forward(r.Protocol, "deposit", host, new BigInteger(300));
        await r.Forward(r.Protocol, "requestRefund", host);
        await fx.Node.IncreaseTimeAsync(30 * 86_400);
        await r.Arm(r.Protocol, "refund", host);
        // OmlProtocol.sol:500 (refund ... nonReentrant): the callback from the payout at :508 re-enters refund(host).
        await r.Forward(r.Protocol, "refund", host);

        await r.AssertGuardRefusedAsync();
        Assert.Equal(1000, await r.TokensAsync(r.Attacker));
        Assert.Equal(0, await r.TokensAsync(r.D.Protocol));
        Assert.Equal(0, await r.Protocol.GetFunction("escrow").CallAsync<BigInteger>(r.Attacker, host));
    }

    [Fact]
    public async Task Reentering_unstake_from_a_token_callback_is_refused_and_pays_once()
    {
        var r = await RigAsync();
        await r.Forward(r.Token, "approve", r.D.Governance, new BigInteger(400));
        await r.Forward(r.Governance, "stake", new BigInteger(400));
        await fx.Node.IncreaseTimeAsync(30 * 86_400);   // past the stake's voting-window lock
        await r.Arm(r.Governance, "unstake", new BigInteger(100));
        // OmlGovernance.sol:100 (unstake ... nonReentrant): the callback from the payout at :110 re-enters unstake(100).
        await r.Forward(r.Governance, "unstake", new BigInteger(100));

        await r.AssertGuardRefusedAsync();
        Assert.Equal(600 + 100, await r.TokensAsync(r.Attacker));
        Assert.Equal(300, await r.Governance.GetFunction("stakeOf").CallAsync<BigInteger>(r.Attacker));
        Assert.Equal(300, await r.TokensAsync(r.D.Governance));
    }
}
