using System.Text.Json;
using Oml.Protocol.Core;
using Oml.Protocol.Ledger;

namespace Oml.Explorer.State;

/// <summary>
/// <see cref="IProtocolStateSource"/> over the embedded ledger: replays it with <see cref="ProtocolEngine"/> (one event
/// at a time, so that each usage commitment's payouts and each withdrawal can be read off the state before and after
/// it), then polls the ledger height and folds in what other processes append. Only reads the ledger.
/// </summary>
public sealed class LedgerStateSource : PollingStateSource
{
    private readonly ILedger _ledger;
    private readonly bool _ownsLedger;
    private readonly string _name;
    private readonly SteppingLedger _view;
    private readonly ProtocolEngine _engine;
    private readonly EventHistory _history = new();
    private readonly Lock _fold = new();

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
        Start(StateMapper.Map(_engine.State, _history, name), pollInterval);
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

    /// <summary>Folds in new events now (the poller calls this); returns whether the height moved.</summary>
    public bool Refresh()
    {
        var snapshot = Fold();
        if (snapshot is null) return false;
        Publish(snapshot);
        return true;
    }

    protected override Task<ExplorerSnapshot?> CatchUpAsync(CancellationToken cancellationToken) => Task.FromResult(Fold());

    protected override bool IsReadFailure(Exception e) => e is ProtocolException or IOException or LedgerCorruptException or InvalidDataException;

    private ExplorerSnapshot? Fold()
    {
        lock (_fold)
        {
            long before = _engine.State.Height;
            CatchUp();
            return _engine.State.Height == before ? null : StateMapper.Map(_engine.State, _history, _name);
        }
    }

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
            parties = StateMapper.UsageParties(s, actor, modelId);
            before = StateMapper.Withdrawables(parties, s);
        }
        long withdrawable = ev.Type == "Withdraw" && actor is not null ? s.AccountOf(actor).Withdrawable : 0;

        _view.Show(ev);
        _engine.Refresh();
        if (_engine.State.Height != ev.Sequence + 1)
            throw new ProtocolException(ProtocolErrorCode.ReplayFailed, $"event {ev.Sequence} was not folded in");

        if (before is not null && parties is not null && epoch is long e)
        {
            _history.Payouts[ProtocolState.UsageKey(modelId!, actor!, e)] = StateMapper.Payouts(parties, before, _engine.State);
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

    protected override ValueTask DisposeCoreAsync()
    {
        if (_ownsLedger) _ledger.Dispose();
        return ValueTask.CompletedTask;
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
