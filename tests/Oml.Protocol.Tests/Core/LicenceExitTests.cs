using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Hosting;

namespace Oml.Protocol.Tests.Core;

/// <summary>
/// The end of a licence: a host announces its exit (no new permits, usage up to its exit epoch), and after a notice
/// that covers its last epoch plus the reveal and rebut windows, with no revealed claim open, it takes back what is left
/// of its collateral as withdrawable credits.
/// </summary>
public sealed class LicenceExitTests : IDisposable
{
    private readonly TestNet _n = new();
    private readonly HostCopy _copy;

    public LicenceExitTests() => _copy = _n.License(_n.HostB, TestNet.NewOmlizer(Pools.Make(12)), collateral: 2_000);

    public void Dispose() => _n.Dispose();

    private Licence Licence => _n.S.LicenceOf(TestNet.Model, TestNet.A(_n.HostB))!;

    private void AssertMoneyConserved() =>
        Assert.Equal(_n.S.TotalSupply, _n.S.Accounts.Values.Sum(x => x.Balance + x.Escrowed + x.Withdrawable + x.Locked + x.Staked));

    /// <summary>Host B answers every key of its subset without a permit; the prover audits it and makes a ticket.</summary>
    private ClaimTicket CaughtTicket(int skip = 0)
    {
        var host = new HostService(_n.HostB, _n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(_copy.Subset.Fingerprints), PermitPolicy.Ignore, _n.Clock);
        var report = Prover.AuditAsync(_n.S, TestNet.Model, _copy.Host, _copy.Subset, host, maxQueries: 1 + skip, TestContext.Current.CancellationToken).GetAwaiter().GetResult();
        return Prover.PrepareClaim(report with { Hits = [report.Hits[^1]] }, _copy.Subset);
    }

    [Fact]
    public void Collateral_comes_back_after_the_notice_once_and_never_earlier()
    {
        var n = _n;
        long before = n.Acc(n.HostB).Balance;
        n.Rejected(ProtocolErrorCode.ExitNotAnnounced, () => n.Engine.ReleaseCollateral(n.HostB, TestNet.Model));
        n.Rejected(ProtocolErrorCode.UnknownLicence, () => n.Engine.AnnounceExit(n.Outsider, TestNet.Model));
        n.Rejected(ProtocolErrorCode.UnknownLicence, () => n.Engine.ReleaseCollateral(n.Outsider, TestNet.Model));
        n.Clock.Advance(100);
        n.Engine.AnnounceExit(n.HostB, TestNet.Model);
        n.Rejected(ProtocolErrorCode.ExitAlreadyAnnounced, () => n.Engine.AnnounceExit(n.HostB, TestNet.Model));
        var p = n.S.Parameters;
        Assert.Equal(0, Licence.ExitEpoch);
        Assert.Equal(n.S.GenesisTime + p.EpochSeconds + p.RevealWindowSeconds + p.RebutWindowSeconds, Licence.ReleasableAt);

        n.Clock.Now = DateTimeOffset.FromUnixTimeSeconds(Licence.ReleasableAt - 1);
        n.Rejected(ProtocolErrorCode.ReleaseNotDue, () => n.Engine.ReleaseCollateral(n.HostB, TestNet.Model));
        n.Clock.Advance(1);
        n.Engine.ReleaseCollateral(n.HostB, TestNet.Model);
        Assert.True(Licence.CollateralReleased);
        Assert.Equal(2_000, Licence.ReleasedAmount);
        Assert.Equal(0, Licence.CollateralLocked);
        Assert.Equal(0, n.Acc(n.HostB).Locked);
        Assert.Equal(2_000, n.Acc(n.HostB).Withdrawable);
        n.Rejected(ProtocolErrorCode.AlreadyReleased, () => n.Engine.ReleaseCollateral(n.HostB, TestNet.Model));
        n.Engine.Withdraw(n.HostB);
        Assert.Equal(before + 2_000, n.Acc(n.HostB).Balance);
        AssertMoneyConserved();
        // The whole history replays to the same state.
        Assert.Equal(n.S.Digest(), ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read()).Digest());
    }

    [Fact]
    public void A_claim_revealed_during_the_notice_still_slashes_and_only_the_rest_is_released()
    {
        var n = _n;
        n.Engine.AnnounceExit(n.HostB, TestNet.Model);
        long releasable = Licence.ReleasableAt;
        // The prover caught the host in its last epoch; it commits and reveals late in the notice.
        var ticket = CaughtTicket();
        n.Clock.Now = DateTimeOffset.FromUnixTimeSeconds(releasable - 10);
        var p = Prover.AdvanceClaim(n.Engine, n.Prover, ticket, 100, () => n.Clock.Advance(1));
        Assert.Equal(["commit", "reveal"], p.Steps);
        // The notice is over, but the revealed claim is open: nothing is released until it is settled.
        n.Clock.Now = DateTimeOffset.FromUnixTimeSeconds(releasable);
        n.Rejected(ProtocolErrorCode.OpenClaims, () => n.Engine.ReleaseCollateral(n.HostB, TestNet.Model));
        n.Clock.Advance(n.S.Parameters.RebutWindowSeconds);
        n.Rejected(ProtocolErrorCode.OpenClaims, () => n.Engine.ReleaseCollateral(n.HostB, TestNet.Model));
        n.Engine.Settle(n.Outsider, p.Claim.Id);
        Assert.Equal(1_000, n.S.Claims[(int)p.Claim.Id].Slashed);
        n.Engine.ReleaseCollateral(n.HostB, TestNet.Model);
        // Released = posted − slashed: no value created.
        Assert.Equal(2_000 - 1_000, Licence.ReleasedAmount);
        Assert.Equal(1_000, n.Acc(n.HostB).Withdrawable);
        Assert.Equal(0, n.Acc(n.HostB).Locked);
        AssertMoneyConserved();

        // After the release there is nothing left to claim against: a reveal is refused (the bond comes back later).
        var late = CaughtTicket(skip: 1);
        long id = n.Engine.CommitClaim(n.Prover, late, 100);
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.LicenceReleased, () => n.Engine.RevealClaim(n.Prover, id, late));
    }

    [Fact]
    public async Task An_exiting_host_takes_no_new_permits_and_commits_usage_up_to_its_exit_epoch_only()
    {
        var n = _n;
        var ct = TestContext.Current.CancellationToken;
        using var dir = new Ledger.TempDir();
        var host = new HostService(n.HostB, n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(_copy.Subset.Fingerprints),
            PermitPolicy.Require, n.Clock, new PermitGate(PermitGate.ForEngine(n.Engine), TestNet.A(n.HostB), TestNet.Model, new SeenPermitStore(dir.Path)));
        n.Engine.Deposit(n.User, TestNet.A(n.HostB), 100);
        SignedPermit Permit(string q, long nonce) =>
            Oml.Protocol.Access.Permit.Create(n.User.Address, TestNet.Model, n.HostB.Address, q, nonce, n.Engine.Now + 3 * 86_400, TestNet.Price).Sign(n.Engine.Domain, n.User);
        await host.AskAsync("before", Permit("before", 1), ct);
        n.Engine.AnnounceExit(n.HostB, TestNet.Model);
        var refused = await Assert.ThrowsAsync<QueryRefusedException>(() => host.AskAsync("after", Permit("after", 2), ct));
        Assert.Contains("announced its exit", refused.Message);
        // The permit served before the exit settles with the exit epoch's usage; a later epoch is refused.
        n.Clock.Advance(n.S.Parameters.EpochSeconds);
        n.Rejected(ProtocolErrorCode.UsageAfterExit, () => n.Engine.CommitUsage(n.HostB, new UsageBook(n.Engine.Domain, TestNet.Model, 1)));
        n.Engine.CommitUsage(n.HostB, host.StartEpoch(1));
        Assert.Equal(90, n.Acc(n.User).Escrowed);
    }
}
