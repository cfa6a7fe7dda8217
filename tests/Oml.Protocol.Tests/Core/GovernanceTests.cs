using Oml.Protocol.Core;

namespace Oml.Protocol.Tests.Core;

public class GovernanceTests
{
    [Fact]
    public void StakersProposeVoteAndExecute()
    {
        using var n = new TestNet();
        var change = new Dictionary<string, string> { ["HostFeeShareBps"] = "2500", ["MinBond"] = "500" };
        n.Engine.Stake(n.Owner, 3_000);
        n.Engine.Stake(n.Owner2, 2_000);
        n.Engine.Stake(n.User, 999);
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.Propose(n.User, change, "below ProposalThreshold"));
        n.Rejected(ProtocolErrorCode.InvalidParameters, () => n.Engine.Propose(n.Owner, new Dictionary<string, string> { ["SlashFractionBps"] = "10001" }, "out of range"));
        n.Rejected(ProtocolErrorCode.InvalidParameters, () => n.Engine.Propose(n.Owner, new Dictionary<string, string> { ["Nope"] = "1" }, "unknown"));
        long id = n.Engine.Propose(n.Owner, change, "raise the host share");
        var p = n.S.Proposals[(int)id];
        Assert.Equal(6_000 - 1, p.TotalWeight);
        // Stake added after the proposal does not count for it.
        n.Engine.Stake(n.Outsider, 50_000);
        n.Rejected(ProtocolErrorCode.NotEligibleToVote, () => n.Engine.Vote(n.Outsider, id, false));
        n.Rejected(ProtocolErrorCode.NotEligibleToVote, () => n.Engine.Vote(n.HostA, id, false));
        n.Engine.Vote(n.Owner, id, true);
        n.Rejected(ProtocolErrorCode.AlreadyVoted, () => n.Engine.Vote(n.Owner, id, false));
        // A voter's stake stays locked while the vote is open.
        n.Clock.Advance(n.S.Parameters.VotingWindowSeconds - 10);
        n.Rejected(ProtocolErrorCode.StakeLocked, () => n.Engine.Unstake(n.Owner2, 1)); // within VotingWindowSeconds of its stake
        n.Clock.Advance(10); // the last second of the vote
        n.Rejected(ProtocolErrorCode.StakeLocked, () => n.Engine.Unstake(n.Owner, 1));
        n.Engine.Unstake(n.Owner2, 2_000); // no vote: free once VotingWindowSeconds have passed since its stake
        n.Engine.Vote(n.User, id, false);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Execute(n.User, id));
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Vote(n.Owner2, id, false));
        n.Engine.Execute(n.User, id);   // 3000 yes vs 999 no, 3999 of 5999 staked voted: quorum met
        Assert.Equal(2_500, n.S.Parameters.HostFeeShareBps);
        Assert.Equal(500, n.S.Parameters.MinBond);
        Assert.Equal(ProtocolParameters.Default.SlashFractionBps, n.S.Parameters.SlashFractionBps);
        n.Rejected(ProtocolErrorCode.AlreadyExecuted, () => n.Engine.Execute(n.User, id));
        n.Engine.Unstake(n.Owner, 3_000);
        Assert.Equal(100_000, n.Acc(n.Owner).Balance);
    }

    [Fact]
    public void RejectedOrUnderQuorumProposalsDoNotExecute()
    {
        using var n = new TestNet();
        n.Engine.Stake(n.Owner, 2_000);
        n.Engine.Stake(n.Owner2, 2_000);
        n.Engine.Stake(n.Outsider, 5_000);
        var change = new Dictionary<string, string> { ["RevealWindowSeconds"] = "7200" };
        long tie = n.Engine.Propose(n.Owner, change, "tie");
        long thin = n.Engine.Propose(n.Owner, change, "thin");
        n.Engine.Vote(n.Owner, tie, true);
        n.Engine.Vote(n.Owner2, tie, false);
        n.Engine.Vote(n.Owner, thin, true);   // 2000 of 9000 staked voted: below the 50% quorum
        n.Clock.Advance(n.S.Parameters.VotingWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.ProposalFailed, () => n.Engine.Execute(n.Owner, tie));
        n.Rejected(ProtocolErrorCode.ProposalFailed, () => n.Engine.Execute(n.Owner, thin));
        n.Rejected(ProtocolErrorCode.UnknownProposal, () => n.Engine.Vote(n.Owner, 99, true));
        Assert.Equal(ProtocolParameters.Default, n.S.Parameters);
    }

    /// <summary>
    /// Issue 11, hole 4: three fresh accounts that registered dummy models used to outvote the real owner and set
    /// SlashFractionBps to 0. Voting power is now stake, which costs capital that free accounts do not have.
    /// </summary>
    [Fact]
    public void FreshAccountsWithDummyModelsCannotCaptureGovernance()
    {
        using var n = new TestNet();
        n.Engine.Stake(n.Owner, 5_000);
        using var s1 = Oml.Protocol.Crypto.PrivateKey.Generate();
        using var s2 = Oml.Protocol.Crypto.PrivateKey.Generate();
        using var s3 = Oml.Protocol.Crypto.PrivateKey.Generate();
        var sybils = new[] { s1, s2, s3 };
        foreach (var (k, i) in sybils.Select((k, i) => (k, i))) n.Engine.RegisterModel(k, $"dummy-{i}", "sha256:x", "{}", "", 1, 0);
        var capture = new Dictionary<string, string> { ["SlashFractionBps"] = "0" };
        foreach (var k in sybils)
        {
            n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.Propose(k, capture, "no more slashing"));
            n.Rejected(ProtocolErrorCode.InsufficientFunds, () => n.Engine.Stake(k, 1));
        }
        // Even on the owner's own proposal they have no vote, and the owner's stake decides.
        long id = n.Engine.Propose(n.Owner, capture, "a test the sybils want to pass");
        foreach (var k in sybils) n.Rejected(ProtocolErrorCode.NotEligibleToVote, () => n.Engine.Vote(k, id, true));
        n.Engine.Vote(n.Owner, id, false);
        n.Clock.Advance(n.S.Parameters.VotingWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.ProposalFailed, () => n.Engine.Execute(n.Outsider, id));
        Assert.Equal(ProtocolParameters.Default.SlashFractionBps, n.S.Parameters.SlashFractionBps);
    }
}
