using Oml.Protocol.Chain;
using Oml.Protocol.Core;

namespace Oml.Explorer.State;

/// <summary>
/// <see cref="IProtocolStateSource"/> over the OML contracts of one deployment: its own <see cref="ChainProjector"/>
/// rebuilds the protocol state from the contracts' events (the same projection `oml --chain` commands use), fed one
/// transaction at a time so that each usage commitment's payouts (the growth of its parties' credits) and each
/// withdrawal can be read off the state around it, as <see cref="LedgerStateSource"/> does on the ledger. Polls the
/// node for new blocks. Only reads: its client's key is thrown away and never signs.
/// </summary>
public sealed class ChainStateSource : PollingStateSource
{
    // The first address argument of an event names who acted (the events carry no sender).
    private static readonly string[] ActorArgs = ["account", "owner", "host", "user", "prover", "proposer", "voter", "from", "to"];

    private readonly OmlChainClient _reader;
    private readonly ChainProjector _projector;
    private readonly EventHistory _history = new();
    private readonly string _name;
    private readonly SemaphoreSlim _fold = new(1, 1);
    private long _sequence;

    private ChainStateSource(OmlChainClient reader, ChainProjector projector, string name)
    {
        _reader = reader;
        _projector = projector;
        _name = name;
    }

    /// <summary>Reads the deployment at <paramref name="rpcUrl"/> (the node must serve the deployment's chain id) and, when <paramref name="pollInterval"/> is positive, polls it.</summary>
    public static async Task<ChainStateSource> OpenAsync(string rpcUrl, OmlDeployment deployment, TimeSpan pollInterval, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(rpcUrl);
        ArgumentNullException.ThrowIfNull(deployment);
        var reader = OmlChainClient.ReadOnly(rpcUrl, deployment);
        await reader.RequireDeploymentChainAsync().ConfigureAwait(false);
        var projector = await ChainProjector.CreateAsync(reader).ConfigureAwait(false);
        var source = new ChainStateSource(reader, projector, $"chain {deployment.ChainId} at {rpcUrl} (OmlProtocol {StateMapper.Checksummed(deployment.Protocol)})");
        var first = await source.FoldAsync(cancellationToken).ConfigureAwait(false) ?? StateMapper.Map(projector.State, source._history, source._name);
        source.Start(first, pollInterval);
        return source;
    }

    protected override Task<ExplorerSnapshot?> CatchUpAsync(CancellationToken cancellationToken) => FoldAsync(cancellationToken);

    protected override bool IsReadFailure(Exception e) =>
        e is HttpRequestException or IOException or TimeoutException or InvalidOperationException or Nethereum.JsonRpc.Client.RpcClientUnknownException
            or Nethereum.JsonRpc.Client.RpcResponseException;

    /// <summary>Folds in every transaction of the blocks after the last one read; null when no event was new.</summary>
    private async Task<ExplorerSnapshot?> FoldAsync(CancellationToken ct)
    {
        await _fold.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            long latest = (long)(await _reader.Sender.Web3.Eth.Blocks.GetBlockNumber.SendRequestAsync().ConfigureAwait(false)).Value;
            if (latest <= _projector.LastBlock) return null;
            var events = await _reader.EventsAsync(_projector.LastBlock + 1, latest).ConfigureAwait(false);
            var transactions = events.OrderBy(e => e.BlockNumber).ThenBy(e => e.LogIndex).GroupBy(e => e.TransactionHash).Select(g => g.ToList()).ToList();
            foreach (var tx in transactions) await StepAsync(tx, ct).ConfigureAwait(false);
            await _projector.ApplyAsync(_reader, [], latest, ct).ConfigureAwait(false);
            _history.HeadHash = Convert.ToHexStringLower(_projector.State.HeadHash);
            return events.Count == 0 ? null : StateMapper.Map(_projector.State, _history, _name);
        }
        finally
        {
            _fold.Release();
        }
    }

    /// <summary>Folds one transaction's events, recording a usage commitment's payouts and withdrawals.</summary>
    private async Task StepAsync(List<ChainEvent> tx, CancellationToken ct)
    {
        var s = _projector.State;
        var usage = tx.FirstOrDefault(e => e.Name == "UsageCommitted");
        List<(string Address, string Role)>? parties = null;
        Dictionary<string, long>? before = null;
        string? modelId = null;
        if (usage is not null)
        {
            string key = usage.Hex32("modelKey");
            modelId = s.Models.Keys.FirstOrDefault(id => Hex.Of(OmlChainClient.ModelKey(id)) == key);
            if (modelId is not null)
            {
                parties = StateMapper.UsageParties(s, usage.Addr("host"), modelId);
                before = StateMapper.Withdrawables(parties, s);
            }
        }
        await _projector.ApplyAsync(_reader, tx, tx[0].BlockNumber, ct).ConfigureAwait(false);
        long time = _projector.State.LastTime;
        if (usage is not null && parties is not null && before is not null)
            _history.Payouts[ProtocolState.UsageKey(modelId!, usage.Addr("host"), (long)usage.Int("epoch"))] = StateMapper.Payouts(parties, before, _projector.State);
        foreach (var e in tx)
        {
            long sequence = _sequence++;
            if (e.Name == "Withdrawn")
            {
                string account = e.Addr("account");
                if (!_history.Withdrawals.TryGetValue(account, out var list)) _history.Withdrawals[account] = list = [];
                list.Add(new WithdrawalView(sequence, time, (long)e.Int("amount")));
            }
            string? actor = ActorArgs.FirstOrDefault(e.Args.ContainsKey) is { } a && e.Args[a] is string addr ? addr.ToLowerInvariant() : null;
            _history.AddRecent(new EventView(sequence, e.Name, time, actor, e.TransactionHash.StartsWith("0x", StringComparison.Ordinal) ? e.TransactionHash[2..] : e.TransactionHash));
        }
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _fold.Dispose();
        return ValueTask.CompletedTask;
    }
}
