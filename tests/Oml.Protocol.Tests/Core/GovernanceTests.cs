using Oml.Protocol.Core;

namespace Oml.Protocol.Tests.Core;

public class GovernanceTests
{
    [Fact]
    public void OwnersProposeVoteAndExecute()
    {
        using var n = new TestNet();
        n.Engine.RegisterModel(n.Owner2, "second", "sha256:s", "{}", "", 1, 0);
        var change = new Dictionary<string, string> { ["HostFeeShareBps"] = "2500", ["MinBond"] = "500" };
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.Propose(n.User, change, "users cannot propose"));
        n.Rejected(ProtocolErrorCode.InvalidParameters, () => n.Engine.Propose(n.Owner, new Dictionary<string, string> { ["SlashFractionBps"] = "10001" }, "out of range"));
        n.Rejected(ProtocolErrorCode.InvalidParameters, () => n.Engine.Propose(n.Owner, new Dictionary<string, string> { ["Nope"] = "1" }, "unknown"));
        long id = n.Engine.Propose(n.Owner, change, "raise the host share");
        var p = n.S.Proposals[(int)id];
        Assert.Equal(2, p.Eligible.Count);
        // Became an owner after the proposal: not eligible.
        n.Engine.RegisterModel(n.Outsider, "late", "sha256:l", "{}", "", 1, 0);
        n.Rejected(ProtocolErrorCode.NotEligibleToVote, () => n.Engine.Vote(n.Outsider, id, true));
        n.Rejected(ProtocolErrorCode.NotEligibleToVote, () => n.Engine.Vote(n.User, id, true));
        n.Engine.Vote(n.Owner, id, true);
        n.Rejected(ProtocolErrorCode.AlreadyVoted, () => n.Engine.Vote(n.Owner, id, false));
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Execute(n.User, id));
        n.Clock.Advance(n.S.Parameters.VotingWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Vote(n.Owner2, id, false));
        n.Engine.Execute(n.User, id);   // 1 yes of 2 eligible meets the 50% quorum
        Assert.Equal(2_500, n.S.Parameters.HostFeeShareBps);
        Assert.Equal(500, n.S.Parameters.MinBond);
        Assert.Equal(ProtocolParameters.Default.SlashFractionBps, n.S.Parameters.SlashFractionBps);
        n.Rejected(ProtocolErrorCode.AlreadyExecuted, () => n.Engine.Execute(n.User, id));
    }

    [Fact]
    public void RejectedOrUnderQuorumProposalsDoNotExecute()
    {
        using var n = new TestNet();
        n.Engine.RegisterModel(n.Owner2, "second", "sha256:s", "{}", "", 1, 0);
        n.Engine.RegisterModel(n.Outsider, "third", "sha256:t", "{}", "", 1, 0);
        var change = new Dictionary<string, string> { ["EpochSeconds"] = "3600" };
        long tie = n.Engine.Propose(n.Owner, change, "tie");
        long thin = n.Engine.Propose(n.Owner, change, "thin");
        n.Engine.Vote(n.Owner, tie, true);
        n.Engine.Vote(n.Owner2, tie, false);
        n.Engine.Vote(n.Owner, thin, true);   // 1 of 3 voted: below the 50% quorum
        n.Clock.Advance(n.S.Parameters.VotingWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.ProposalFailed, () => n.Engine.Execute(n.Owner, tie));
        n.Rejected(ProtocolErrorCode.ProposalFailed, () => n.Engine.Execute(n.Owner, thin));
        n.Rejected(ProtocolErrorCode.UnknownProposal, () => n.Engine.Vote(n.Owner, 99, true));
        Assert.Equal(ProtocolParameters.Default, n.S.Parameters);
    }
}
