using System.Numerics;
using Oml.Protocol.Chain;

namespace Oml.Chain.Tests;

public sealed class GovernanceTests(AnvilFixture fx)
{
    private const long Window = 259_200;

    [Fact]
    public async Task Stake_weighted_proposal_passes_executes_and_stake_stays_locked_while_voting_is_open()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.Owner.ApproveAsync(1000, w.Deployment.Governance);
        await w.Owner.StakeAsync(600);
        await w.Host.ApproveAsync(1000, w.Deployment.Governance);
        await w.Host.StakeAsync(400);
        var p = await w.Owner.ProposeAsync([(ChainParam.HostFeeShareBps, 2500)], "host share 25%");
        long id = (long)p.Single("Proposed").Int("proposalId");
        Assert.Equal(1000, p.Single("Proposed").Int("totalStake"));
        await w.Owner.VoteAsync(id, true);
        await w.Host.VoteAsync(id, false);
        Assert.Equal("AlreadyVoted", (await Assert.ThrowsAsync<ChainRevertException>(() => w.Host.VoteAsync(id, false))).ErrorName);
        Assert.Equal("StakeLocked", (await Assert.ThrowsAsync<ChainRevertException>(() => w.Owner.UnstakeAsync(600))).ErrorName);
        Assert.Equal("VotingOpen", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.ExecuteAsync(id))).ErrorName);
        await fx.Node.IncreaseTimeAsync(Window + 1);
        var x = await w.User.ExecuteAsync(id);
        Assert.Equal(2500, x.Single("ParameterChanged").Int("newValue"));
        Assert.Equal(2500, await w.User.ParamAsync(ChainParam.HostFeeShareBps));
        Assert.Equal("AlreadyExecuted", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.ExecuteAsync(id))).ErrorName);
        await w.Owner.UnstakeAsync(600);
        Assert.Equal("InsufficientStake", (await Assert.ThrowsAsync<ChainRevertException>(() => w.Owner.UnstakeAsync(1))).ErrorName);
    }

    [Fact]
    public async Task Non_owners_unstaked_accounts_and_direct_calls_cannot_govern()
    {
        var w = await World.CreateAsync(fx.Node);
        Assert.Equal("BelowProposalThreshold", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.User.ProposeAsync([(ChainParam.SlashFractionBps, 0)], "no slashing"))).ErrorName);
        Assert.Equal("NotGovernance", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.Sender.SendAsync(w.Deployment.Protocol, w.Owner.Protocol.GetFunction("setParameter").GetData((byte)1, BigInteger.Zero), "set"))).ErrorName);
        await w.Owner.ApproveAsync(1000, w.Deployment.Governance);
        await w.Owner.StakeAsync(1000);
        Assert.Equal("InvalidParameter", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.ProposeAsync([(ChainParam.QuorumBps, 0)], "bad"))).ErrorName);
        var p = await w.Owner.ProposeAsync([(ChainParam.MinBond, 500)], "bond");
        long id = (long)p.Single("Proposed").Int("proposalId");
        Assert.Equal("NoVotingPower", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.VoteAsync(id, false))).ErrorName);
    }

    [Fact]
    public async Task Fresh_accounts_cannot_capture_governance()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.Owner.ApproveAsync(1000, w.Deployment.Governance);
        await w.Owner.StakeAsync(1000);
        // The attack of issue 11: zero-balance accounts register dummy models and vote slashing to 0.
        var sybils = new List<OmlChainClient>();
        for (int i = 0; i < 3; i++)
        {
            var s = await w.NewAccountAsync($"sybil-{i}");
            await s.RegisterModelAsync($"dummy-{i}", World.Digest($"dummy-{i}"), null, 0, 1, 0);
            sybils.Add(s);
        }
        foreach (var s in sybils)
            Assert.Equal("BelowProposalThreshold", (await Assert.ThrowsAsync<ChainRevertException>(
                () => s.ProposeAsync([(ChainParam.SlashFractionBps, 0)], "no slashing"))).ErrorName);
        var honest = await w.Owner.ProposeAsync([(ChainParam.SlashFractionBps, 6000)], "raise slashing");
        long id = (long)honest.Single("Proposed").Int("proposalId");
        foreach (var s in sybils)
            Assert.Equal("NoVotingPower", (await Assert.ThrowsAsync<ChainRevertException>(() => s.VoteAsync(id, false))).ErrorName);
        // Stake bought after the proposal was created does not count for it.
        await w.Treasury.MintAsync(sybils[0].Address, 5000);
        await sybils[0].ApproveAsync(5000, w.Deployment.Governance);
        await sybils[0].StakeAsync(5000);
        Assert.Equal("NoVotingPower", (await Assert.ThrowsAsync<ChainRevertException>(() => sybils[0].VoteAsync(id, false))).ErrorName);
        await w.Owner.VoteAsync(id, true);
        await fx.Node.IncreaseTimeAsync(Window + 1);
        await w.User.ExecuteAsync(id);
        Assert.Equal(6000, await w.User.ParamAsync(ChainParam.SlashFractionBps));
    }

    [Fact]
    public async Task A_proposal_without_quorum_or_majority_fails()
    {
        var w = await World.CreateAsync(fx.Node);
        foreach (var (c, amount) in new[] { (w.Owner, 300), (w.Host, 700) })
        {
            await c.ApproveAsync(amount, w.Deployment.Governance);
            await c.StakeAsync(amount);
        }
        long a = (long)(await w.Owner.ProposeAsync([(ChainParam.MinBond, 1)], "a")).Single("Proposed").Int("proposalId");
        long b = (long)(await w.Owner.ProposeAsync([(ChainParam.MinBond, 2)], "b")).Single("Proposed").Int("proposalId");
        await w.Owner.VoteAsync(a, true);      // 300 of 1000 < 50% quorum
        await w.Owner.VoteAsync(b, true);
        await w.Host.VoteAsync(b, false);      // 300 yes < 700 no
        await fx.Node.IncreaseTimeAsync(Window + 1);
        Assert.Equal("NotPassed", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.ExecuteAsync(a))).ErrorName);
        Assert.Equal("NotPassed", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.ExecuteAsync(b))).ErrorName);
        Assert.Equal(100, await w.User.ParamAsync(ChainParam.MinBond));
    }
}
