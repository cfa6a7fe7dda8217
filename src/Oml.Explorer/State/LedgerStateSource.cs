using System.Text.Json;
using Oml.Protocol.Core;
using Oml.Protocol.Ledger;

namespace Oml.Explorer.State;

/// <summary>
/// <see cref="IProtocolStateSource"/> over the embedded ledger: replays it with <see cref="ProtocolEngine"/> (one event
/// at a time, so that each usage commitment's payouts and each withdrawal can be read off the state before and after
/// it), then polls the ledger height and folds in what other processes append. Only reads the ledger.
/// </summary>
public sealed class LedgerStateSource : IProtocolStateSource
{
    private readonly ILedger _ledger;
    private readonly bool _ownsLedger;
    private readonly string _name;
    private readonly SteppingLedger _view;
    private readonly ProtocolEngine _engine;
    private readonly EventHistory _history = new();
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task? _poller;
    private ExplorerSnapshot _current;
    private TaskCompletionSource<ExplorerSnapshot> _next = NewSignal();
    private string? _lastError;

    /// <summary>
    /// Replays <paramref name="ledger"/> and, when <paramref name="pollInterval"/> is positive, starts polling it.
    /// Throws <see cref="ProtocolException"/> (NotInitialized) for a ledger without a genesis event.
    /// </summary>
    public LedgerStateSource(ILedger ledger, string name, TimeSpan pollInterval, bool ownsLedger = false)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        _ledger = ledger;
        _ownsLedger = ownsLedger;
        _name = name;
        _view = new SteppingLedger(ledger);
        var genesis = ledger.Read(0).FirstOrDefault()
            ?? throw new ProtocolException(ProtocolErrorCode.NotInitialized, $"{name} has no genesis event; initialise it with `oml protocol init`");
        _view.Show(genesis);
        _engine = ProtocolEngine.Open(_view);
        RecordPlain(genesis);
        CatchUp();
        _current = StateMapper.Map(_engine.State, _history, name);
        if (pollInterval > TimeSpan.Zero) _poller = Task.Run(() => PollAsync(pollInterval, _stop.Token));
    }

    /// <summary>Opens the SQLite ledger at <paramref name="path"/> (never creates one) and polls it.</summary>
    public static LedgerStateSource OpenFile(string path, TimeSpan pollInterval)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no ledger at {path}", path);
        var ledger = SqliteLedger.Open(path);
        try
        {
            return new LedgerStateSource(ledger, $"ledger {Path.GetFullPath(path)}", pollInterval, ownsLedger: true);
        }
        catch
        {
            ledger.Dispose();
            throw;
        }
    }

    public ExplorerSnapshot Current => Volatile.Read(ref _current);

    public string? LastError => Volatile.Read(ref _lastError);

    public Task<ExplorerSnapshot> WaitForChangeAsync(long knownHeight, CancellationToken cancellationToken)
    {
        Task<ExplorerSnapshot> next;
        lock (_gate)
        {
            if (_current.Height != knownHeight) return Task.FromResult(_current);
            next = _next.Task;
        }
        return next.WaitAsync(cancellationToken);
    }

    /// <summary>Folds in new events now (the poller calls this); returns whether the height moved.</summary>
    public bool Refresh()
    {
        lock (_gate)
        {
            long before = _engine.State.Height;
            CatchUp();
            if (_engine.State.Height == before) return false;
            _current = StateMapper.Map(_engine.State, _history, _name);
            var done = _next;
            _next = NewSignal();
            done.TrySetResult(_current);
            return true;
        }
    }

    private async Task PollAsync(TimeSpan interval, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                try
                {
                    Refresh();
                    Volatile.Write(ref _lastError, null);
                }
                catch (Exception e) when (e is ProtocolException or IOException or LedgerCorruptException or InvalidDataException)
                {
                    // Keep serving the last good snapshot; the page header shows the problem.
                    Volatile.Write(ref _lastError, e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    private static TaskCompletionSource<ExplorerSnapshot> NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void CatchUp()
    {
        foreach (var ev in _ledger.Read(_engine.State.Height).ToList()) Step(ev);
    }

    /// <summary>Folds one event, recording payouts (CommitUsage) and withdrawals (Withdraw) from the state around it.</summary>
    private void Step(LedgerEvent ev)
    {
        var s = _engine.State;
        var (actor, modelId, epoch) = Peek(ev.Payload);
        Dictionary<string, long>? before = null;
        List<(string Address, string Role)>? parties = null;
        if (ev.Type == "CommitUsage" && actor is not null && modelId is not null && s.Models.ContainsKey(modelId))
        {
            parties = Parties(s, actor, modelId);
            before = parties.Select(p => p.Address).Distinct(StringComparer.Ordinal).ToDictionary(a => a, a => s.AccountOf(a).Withdrawable, StringComparer.Ordinal);
        }
        long withdrawable = ev.Type == "Withdraw" && actor is not null ? s.AccountOf(actor).Withdrawable : 0;

        _view.Show(ev);
        _engine.Refresh();
        if (_engine.State.Height != ev.Sequence + 1)
            throw new ProtocolException(ProtocolErrorCode.ReplayFailed, $"event {ev.Sequence} was not folded in");

        if (before is not null && parties is not null && epoch is long e)
        {
            var shares = new List<FeeShare>();
            var after = _engine.State;
            foreach (var group in parties.GroupBy(p => p.Address, StringComparer.Ordinal))
            {
                long gained = after.AccountOf(group.Key).Withdrawable - before[group.Key];
                if (gained > 0) shares.Add(new FeeShare(StateMapper.Checksummed(group.Key), string.Join("; ", group.Select(g => g.Role)), gained));
            }
            _history.Payouts[ProtocolState.UsageKey(modelId!, actor!, e)] = shares;
        }
        if (ev.Type == "Withdraw" && actor is not null && withdrawable > 0)
        {
            if (!_history.Withdrawals.TryGetValue(actor, out var list)) _history.Withdrawals[actor] = list = [];
            list.Add(new WithdrawalView(ev.Sequence, ev.Timestamp.ToUnixTimeSeconds(), withdrawable));
        }
        RecordPlain(ev, actor);
    }

    private void RecordPlain(LedgerEvent ev, string? actor = null)
    {
        actor ??= Peek(ev.Payload).Actor;
        _history.AddRecent(new EventView(ev.Sequence, ev.Type, ev.Timestamp.ToUnixTimeSeconds(), actor, Convert.ToHexStringLower(ev.Hash)));
        _history.HeadHash = Convert.ToHexStringLower(ev.Hash);
    }

    /// <summary>Who a usage commitment can credit: the host, and the owners of the model and of all its ancestors.</summary>
    private static List<(string Address, string Role)> Parties(ProtocolState s, string host, string modelId)
    {
        var list = new List<(string, string)> { (host, "host") };
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>([modelId]);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            if (!seen.Add(id) || !s.Models.TryGetValue(id, out var m)) continue;
            list.Add((m.Owner, id == modelId ? $"owner of {id}" : $"ancestor {id}"));
            foreach (var p in m.Parents) queue.Enqueue(p.ParentModelId);
        }
        return list;
    }

    /// <summary>The actor, modelId and epoch of an event's message, read without trusting anything else in it.</summary>
    private static (string? Actor, string? ModelId, long? Epoch) Peek(byte[] payload)
    {
        try
        {
            using var doc = JsonDocument.Parse(payload);
            if (!doc.RootElement.TryGetProperty("message", out var m) || m.ValueKind != JsonValueKind.Object) return (null, null, null);
            string? S(string name) => m.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            long? epoch = long.TryParse(S("epoch"), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : null;
            return (S("actor"), S("modelId"), epoch);
        }
        catch (JsonException)
        {
            return (null, null, null);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_poller is not null) await _poller.ConfigureAwait(false);
        _stop.Dispose();
        _next.TrySetCanceled();
        if (_ownsLedger) _ledger.Dispose();
    }

    /// <summary>A read-only window on a ledger that exposes events up to the one last shown, so the engine folds them one by one.</summary>
    private sealed class SteppingLedger(ILedger inner) : ILedger
    {
        private LedgerEvent? _last;

        public void Show(LedgerEvent ev) => _last = ev;

        public string LedgerId => inner.LedgerId;

        public long Height => _last is null ? 0 : _last.Sequence + 1;

        public byte[] HeadHash => _last?.Hash ?? new byte[32];

        public IReadOnlyList<LedgerEvent> Append(long expectedHeight, IReadOnlyList<NewEvent> events, DateTimeOffset timestamp) =>
            throw new NotSupportedException("the explorer never appends");

        public IEnumerable<LedgerEvent> Read(long fromSequence = 0)
        {
            if (_last is null || fromSequence > _last.Sequence) yield break;
            if (fromSequence == _last.Sequence)
            {
                yield return _last;
                yield break;
            }
            foreach (var ev in inner.Read(fromSequence))
            {
                if (ev.Sequence > _last.Sequence) yield break;
                yield return ev;
            }
        }

        public LedgerVerification Verify() => inner.Verify();

        public void Dispose() { }
    }
}
