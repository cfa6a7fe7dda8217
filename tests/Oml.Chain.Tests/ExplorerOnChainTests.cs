using Oml.Explorer.State;
using Oml.Protocol.Chain;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Chain.Tests;

/// <summary>
/// `oml explorer --chain`: the explorer's chain source shows what its ledger source shows after the same story
/// (the conformance scenario) — fees paid per usage commitment along the family tree, withdrawals, hosts' earnings,
/// claims — and follows new blocks.
/// </summary>
public sealed class ExplorerOnChainTests(AnvilFixture fx)
{
    /// <summary>What the pages show that both backends must agree on (sequence numbers, times and hashes differ by design).</summary>
    private static string View(ExplorerSnapshot s) => string.Join("\n", new[]
    {
        string.Join(";", s.Models.Select(m => $"{m.Id} {m.Owner} v{m.Versions.Count} parents[{string.Join(",", m.Parents.Select(p => $"{p.ModelId}:{p.ShareBps}"))}] licences {m.Licences.Count}")),
        string.Join(";", s.Hosts.Select(h => $"{h.Address} posted {h.CollateralPosted} locked {h.CollateralLocked} settled {h.FeesSettled} earned {h.FeesEarned} claims {h.ClaimsAgainst} skipped {h.PermitsSkipped}")),
        string.Join(";", s.Hosts.SelectMany(h => h.Usage).Select(u => $"{u.ModelId} {u.Host} e{u.Epoch} paid[{string.Join(",", u.Payouts.Select(p => $"{p.Recipient}:{p.Role}:{p.Amount}"))}]")),
        // An account that never held anything (the treasury only mints; it has an entry on the ledger because it signs) is left out.
        string.Join(";", s.Accounts.Where(a => a.Balance != 0 || a.Withdrawable != 0 || a.Locked != 0 || a.Staked != 0 || a.Escrowed != 0).Select(a => $"{a.Address} {a.Role} bal {a.Balance} wd {a.Withdrawable} locked {a.Locked} staked {a.Staked} withdrawals[{string.Join(",", a.Withdrawals.Select(w => w.Amount))}]")),
        string.Join(";", s.Claims.Select(c => $"{c.Id} {c.Prover} {c.Status} {c.ModelId} {c.Host} slashed {c.Slashed} reward {c.ProverReward} items {c.Items.Count}")),
        string.Join(";", s.Proposals.Select(p => $"{p.Id} yes {p.Yes} no {p.No} executed {p.Executed}")),
        $"supply {s.TotalSupply} staked {s.TotalStaked} accusations {s.Accusations.Count}",
    });

    [Fact]
    public async Task The_chain_source_shows_what_the_ledger_source_shows_and_follows_new_blocks()
    {
        using var p = new Parties();
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        using var ledger = new InMemoryLedger();
        var engine = ProtocolEngine.Initialize(ledger, p.Treasury, ProtocolParameters.Default, clock: clock);
        using (var b = new LedgerBackend(engine, "memory", ownsLedger: false))
            await ConformanceScenario.RunAsync(b, p, s => { clock.Now = clock.Now.AddSeconds(s); return Task.CompletedTask; });
        await using var onLedger = new LedgerStateSource(ledger, "memory", TimeSpan.Zero);

        var deployment = await ConformanceTests.DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        await ConformanceScenario.RunAsync(chain, p, s => fx.Node.IncreaseTimeAsync(s));
        await using var onChain = await ChainStateSource.OpenAsync(fx.Node.RpcUrl, deployment, TimeSpan.FromMilliseconds(50));

        var ledgerView = onLedger.Current;
        var chainView = onChain.Current;
        var (l, c) = (View(ledgerView).Split('\n'), View(chainView).Split('\n'));
        for (int i = 0; i < l.Length; i++) Assert.True(l[i] == c[i], $"line {i}:\nledger {l[i]}\nchain  {c[i]}");
        // The story pays fees along the tree and withdraws them: the views above are not vacuous.
        Assert.Contains(chainView.Hosts.SelectMany(h => h.Usage), u => u.Payouts.Count >= 3);
        Assert.Contains(chainView.Accounts, a => a.Withdrawals.Count > 0);
        Assert.Equal(deployment.ChainId, chainView.ChainId);
        Assert.Equal(StateMapper.Checksummed(deployment.Protocol), chainView.VerifyingContract);
        Assert.NotEmpty(chainView.RecentEvents);

        // A new transaction reaches the page through the poller.
        long height = chainView.Height;
        string newcomer = Hex.Of(Parties.Key("explorer-newcomer").Address);
        await chain.MintAsync(p.Treasury, newcomer, 777);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var next = await onChain.WaitForChangeAsync(height, cts.Token);
        Assert.True(next.Height > height);
        Assert.Equal(777, next.Accounts.Single(a => a.Address == StateMapper.Checksummed(newcomer)).Balance);
        Assert.Null(onChain.LastError);
    }

    [Fact]
    public async Task A_node_on_another_chain_is_refused()
    {
        using var p = new Parties();
        var deployment = await ConformanceTests.DeployAsync(fx.Node, p) with { ChainId = 1 };
        var e = await Assert.ThrowsAsync<ProtocolException>(() => ChainStateSource.OpenAsync(fx.Node.RpcUrl, deployment, TimeSpan.Zero));
        Assert.Contains("chain 31337", e.Message);
    }
}
