using System.Security.Cryptography;
using System.Text;
using Oml.Protocol.Chain;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tracing;

namespace Oml.Chain.Tests;

/// <summary>The end of a licence (announce exit, notice, release) through <see cref="IProtocolBackend"/>: the same
/// refusals and the same final state on the ledger and on the chain (the projector folds ExitAnnounced and
/// CollateralReleased as the ledger's rules do).</summary>
public sealed class ExitConformanceTests(AnvilFixture fx)
{
    private const string Model = "acme/exit-model";

    private static async Task<string> StoryAsync(IProtocolBackend b, Parties p, Func<long, Task> advance)
    {
        string A(PrivateKey k) => Hex.Of(k.Address);
        await b.MintAsync(p.Treasury, A(p.Owner), 10_000);
        await b.MintAsync(p.Treasury, A(p.HostA), 10_000);
        await b.RegisterModelAsync(p.Owner, Model, "sha256:" + new string('e', 64), "{}", "OML-1.0", 10, 1_000);
        await b.ApplyLicenseAsync(p.HostA, Model, 1_500, "https://exit.example/v1");
        var omlizer = new Omlizer(ConformanceScenario.Pool(), new RandomAllocation("exit-story allocation secret"u8, 24, 8));
        var copy = await omlizer.BuildCopyAsync(b.State, Model, A(p.HostA), (subset, _) =>
            Task.FromResult("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"exit copy {subset.Count}")))));
        await b.DeliverCopyAsync(p.Owner, copy);
        await b.AcknowledgeCopyAsync(p.HostA, Model, copy.CopyDigest);

        var refusals = new List<ProtocolErrorCode>();
        async Task Refused(Func<Task> act) => refusals.Add((await Assert.ThrowsAsync<ProtocolException>(act)).Code);
        await Refused(() => b.ReleaseCollateralAsync(p.HostA, Model));                 // no exit announced
        await Refused(() => b.AnnounceExitAsync(p.HostB, Model));                      // no licence
        await b.AnnounceExitAsync(p.HostA, Model);
        await Refused(() => b.AnnounceExitAsync(p.HostA, Model));                      // twice
        await Refused(() => b.ReleaseCollateralAsync(p.HostA, Model));                 // notice not over
        var licence = b.State.LicenceOf(Model, A(p.HostA))!;
        await advance(licence.ReleasableAt - b.Now + 1);
        await b.ReleaseCollateralAsync(p.HostA, Model);
        await Refused(() => b.ReleaseCollateralAsync(p.HostA, Model));                 // twice
        await b.WithdrawAsync(p.HostA);

        await b.RefreshAsync();
        var l = b.State.LicenceOf(Model, A(p.HostA))!;
        var host = b.State.AccountOf(A(p.HostA));
        long exitEpochFromStart = l.ExitEpoch - b.State.EpochAt(l.ExitAnnouncedAt!.Value);
        return $"refusals {string.Join(",", refusals)}; exiting {l.Exiting} epoch+{exitEpochFromStart} released {l.CollateralReleased} {l.ReleasedAmount} "
            + $"locked {l.CollateralLocked}/{host.Locked}; host balance {host.Balance} withdrawable {host.Withdrawable}";
    }

    [Fact]
    public async Task Exit_and_release_end_the_same_on_the_ledger_and_on_the_chain()
    {
        using var p = new Parties();
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        var engine = ProtocolEngine.Initialize(new InMemoryLedger(), p.Treasury, ProtocolParameters.Default, clock: clock);
        using var ledger = new LedgerBackend(engine, "memory");
        var onLedger = await StoryAsync(ledger, p, s => { clock.Now = clock.Now.AddSeconds(s); return Task.CompletedTask; });

        var deployment = await ConformanceTests.DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        var onChain = await StoryAsync(chain, p, s => fx.Node.IncreaseTimeAsync(s));

        Assert.Equal(onLedger, onChain);
        Assert.Equal("refusals ExitNotAnnounced,UnknownLicence,ExitAlreadyAnnounced,ReleaseNotDue,AlreadyReleased; exiting True epoch+0 released True 1500 "
            + "locked 0/0; host balance 10000 withdrawable 0", onLedger);
        var check = await chain.VerifyAsync();
        Assert.True(check.Consistent, check.FirstDifference);
    }

    [Fact]
    public async Task The_check_catches_a_projection_that_missed_an_exit()
    {
        using var p = new Parties();
        string A(PrivateKey k) => Hex.Of(k.Address);
        var deployment = await ConformanceTests.DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        await chain.MintAsync(p.Treasury, A(p.HostA), 10_000);
        await chain.RegisterModelAsync(p.Owner, Model, "sha256:" + new string('e', 64), "{}", "OML-1.0", 10, 1_000);
        await chain.ApplyLicenseAsync(p.HostA, Model, 1_500, "https://exit.example/v1");
        await chain.AnnounceExitAsync(p.HostA, Model);
        var ok = await chain.VerifyAsync();
        Assert.True(ok.Consistent, ok.FirstDifference);

        // A projector fed the log without the announcement has the same balances and claims: only the exit differs.
        var (_, _, bad) = await ConformanceTests.VerifyProjectionWithoutAsync(chain.ClientFor(p.User2), deployment, "ExitAnnounced");
        Assert.False(bad.Consistent);
        Assert.Contains("exit announced", bad.FirstDifference);
    }
}
