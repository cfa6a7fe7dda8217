using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Protocol.Core;

/// <summary>The result of <see cref="ProtocolEngine.VerifySignatures"/>.</summary>
public sealed record SignatureVerification(bool Valid, long EventsChecked, long? FirstBadSequence, string? Problem);

/// <summary>
/// The OML protocol over an <see cref="ILedger"/>. Opening replays every event into a <see cref="ProtocolState"/> (a
/// pure fold; signatures are not re-checked on replay, they were checked at append). <see cref="Submit"/> checks a
/// signed request (signature → actor, nonce, every rule of its layer) and appends exactly one event, or throws
/// <see cref="ProtocolException"/> and appends nothing. Time is ledger time in whole Unix seconds, from the
/// injectable clock, never earlier than the last event's. Submissions and refreshes are serialised by an internal
/// lock; <see cref="State"/> is a live view, so read it from the thread that submits. Several engines (processes) may
/// share one ledger: appends use optimistic concurrency on the ledger height.
/// </summary>
public sealed partial class ProtocolEngine
{
    private readonly ILedger _ledger;
    private readonly TimeProvider _clock;
    private readonly Lock _gate = new();
    private ProtocolState _state;

    private ProtocolEngine(ILedger ledger, TimeProvider clock, ProtocolState state)
    {
        _ledger = ledger;
        _clock = clock;
        _state = state;
    }

    /// <summary>
    /// Opens an initialised ledger: verifies its hash chain (<see cref="ILedger.Verify"/>), then replays it. Throws
    /// <see cref="LedgerCorruptException"/> naming the first bad event when the chain does not verify, and
    /// <see cref="ProtocolException"/> (NotInitialized) on an empty ledger.
    /// </summary>
    public static ProtocolEngine Open(ILedger ledger, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        var check = ledger.Verify();
        if (!check.Intact) throw new LedgerCorruptException($"the ledger does not verify: {check.Problem}");
        var state = Replay(ledger.LedgerId, ledger.Read(0), verifySignatures: false);
        if (!state.Initialized) throw new ProtocolException(ProtocolErrorCode.NotInitialized, "the ledger has no genesis event; initialise it first");
        return new ProtocolEngine(ledger, clock ?? TimeProvider.System, state);
    }

    /// <summary>
    /// Writes the genesis event to an empty ledger: <paramref name="treasury"/> becomes the only account that can mint
    /// the embedded ledger's currency (an EVM deployment would use a token contract instead). The genesis event is
    /// signed under chain <paramref name="chainId"/> and the zero address; every later request is signed under
    /// <see cref="ProtocolDomain.ForEmbeddedLedger"/> of this ledger's id and genesis event.
    /// </summary>
    public static ProtocolEngine Initialize(ILedger ledger, PrivateKey treasury, ProtocolParameters? parameters = null,
        long chainId = ProtocolDomain.DefaultChainId, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        ArgumentNullException.ThrowIfNull(treasury);
        parameters ??= ProtocolParameters.Default;
        parameters.Validate();
        if (chainId <= 0) throw new ArgumentOutOfRangeException(nameof(chainId), "the chain id must be positive");
        var domain = new ProtocolDomain(chainId, Hex.ZeroAddress);
        var engine = new ProtocolEngine(ledger, clock ?? TimeProvider.System, Replay(ledger.LedgerId, ledger.Read(0), false));
        if (engine._state.Initialized) throw new ProtocolException(ProtocolErrorCode.AlreadyInitialized, "the ledger already has a genesis event");
        var genesis = Actions.Genesis(Hex.Of(treasury.Address), domain.ChainId, parameters).Sign(domain, treasury);
        engine.SubmitCore(genesis, domain);
        return engine;
    }

    /// <summary>The state after the last event this engine has seen (call <see cref="Refresh"/> to catch up with other writers).</summary>
    public ProtocolState State => _state;

    public ProtocolDomain Domain => _state.Domain;

    /// <summary>The ledger this engine reads and appends to.</summary>
    public ILedger Ledger => _ledger;

    public ProtocolParameters Parameters => _state.Parameters;

    /// <summary>The ledger time the next event would get: the clock in whole seconds, never before the last event.</summary>
    public long Now => Math.Max(_clock.GetUtcNow().ToUnixTimeSeconds(), _state.LastTime);

    /// <summary>Folds in events other writers appended since this engine last read the ledger.</summary>
    public void Refresh()
    {
        lock (_gate)
        {
            if (_ledger.Height == _state.Height) return;
            foreach (var ev in _ledger.Read(_state.Height)) Fold(_state, _ledger.LedgerId, ev, verifySignatures: false);
        }
    }

    /// <summary>
    /// Checks <paramref name="action"/> and appends it as one event. Throws <see cref="ProtocolException"/> when it
    /// is rejected (nothing appended). On a concurrent append by another writer it re-reads and retries once.
    /// </summary>
    public LedgerEvent Submit(SignedAction action)
    {
        ArgumentNullException.ThrowIfNull(action);
        if (action.Type == Schemas.Genesis) throw new ProtocolException(ProtocolErrorCode.AlreadyInitialized, "use ProtocolEngine.Initialize for the genesis event");
        return SubmitCore(action, _state.Domain);
    }

    private LedgerEvent SubmitCore(SignedAction action, ProtocolDomain domain)
    {
        lock (_gate)
        {
            Refresh();
            for (int attempt = 0; ; attempt++)
            {
                long now = Now, height = _state.Height;
                var commit = Rules.Check(_state, action, new RuleContext(now, height, VerifySignatures: true, domain));
                var payload = action.ToPayload(domain);
                IReadOnlyList<LedgerEvent> events;
                try
                {
                    events = _ledger.Append(height, [new NewEvent(action.Type, payload)], DateTimeOffset.FromUnixTimeSeconds(now));
                }
                catch (LedgerConflictException) when (attempt == 0)
                {
                    Refresh();
                    continue;
                }
                var ev = events[0];
                if (ev.Timestamp.ToUnixTimeSeconds() != now || ev.Sequence != height)
                {
                    // The ledger stored something else than what was checked: rebuild from the log to stay exact.
                    _state = Replay(_ledger.LedgerId, _ledger.Read(0), false);
                    return ev;
                }
                try
                {
                    commit();
                    Advance(_state, _ledger.LedgerId, ev, now);
                }
                catch
                {
                    _state = Replay(_ledger.LedgerId, _ledger.Read(0), false);
                    throw;
                }
                return ev;
            }
        }
    }

    /// <summary>
    /// Rebuilds the state from the events of ledger <paramref name="ledgerId"/> (a pure fold; the id and the genesis
    /// event fix the signing domain). Each event must link to the one before and hash to its stored hash
    /// (<see cref="LedgerCorruptException"/> otherwise). With <paramref name="verifySignatures"/> every signature is
    /// re-checked too.
    /// </summary>
    public static ProtocolState Replay(string ledgerId, IEnumerable<LedgerEvent> events, bool verifySignatures = false)
    {
        var state = new ProtocolState();
        foreach (var ev in events) Fold(state, ledgerId, ev, verifySignatures);
        return state;
    }

    /// <summary>Records that <paramref name="ev"/> was applied; after the genesis event, fixes the ledger's signing domain.</summary>
    private static void Advance(ProtocolState state, string ledgerId, LedgerEvent ev, long time)
    {
        if (ev.Sequence == 0) state.Domain = ProtocolDomain.ForEmbeddedLedger(state.Domain.ChainId, ledgerId, ev.Hash);
        state.Height = ev.Sequence + 1;
        state.LastTime = time;
        state.HeadHash = ev.Hash;
    }

    private static void Fold(ProtocolState state, string ledgerId, LedgerEvent ev, bool verifySignatures)
    {
        if (ev.Sequence != state.Height) throw new ProtocolException(ProtocolErrorCode.ReplayFailed, $"event {ev.Sequence} out of order (expected {state.Height})");
        if (!ev.PreviousHash.AsSpan().SequenceEqual(state.HeadHash))
            throw new LedgerCorruptException($"event {ev.Sequence}'s previous hash does not match the hash of event {ev.Sequence - 1}");
        if (!LedgerHashing.ComputeHash(ev).AsSpan().SequenceEqual(ev.Hash))
            throw new LedgerCorruptException($"the contents of event {ev.Sequence} (type, timestamp or payload) were edited, or its hash overwritten");
        var (action, domain) = SignedAction.FromPayload(ev.Payload);
        if (action.Type != ev.Type) throw new ProtocolException(ProtocolErrorCode.ReplayFailed, $"event {ev.Sequence}: type {ev.Type} but payload {action.Type}");
        long time = ev.Timestamp.ToUnixTimeSeconds();
        if (time < state.LastTime) throw new ProtocolException(ProtocolErrorCode.ReplayFailed, $"event {ev.Sequence}: time goes backwards");
        Action commit;
        try { commit = Rules.Check(state, action, new RuleContext(time, ev.Sequence, verifySignatures, domain)); }
        catch (ProtocolException e)
        {
            throw new ProtocolException(verifySignatures && e.Code == ProtocolErrorCode.BadSignature ? ProtocolErrorCode.BadSignature : ProtocolErrorCode.ReplayFailed,
                $"event {ev.Sequence} ({ev.Type}) does not apply: {e.Code}: {e.Message}", e);
        }
        commit();
        Advance(state, ledgerId, ev, time);
    }

    /// <summary>Re-checks every signature in the log (actors, co-signers, permits and receipts in attachments) by a full replay.</summary>
    public SignatureVerification VerifySignatures()
    {
        var state = new ProtocolState();
        long n = 0;
        foreach (var ev in _ledger.Read(0))
        {
            try { Fold(state, _ledger.LedgerId, ev, verifySignatures: true); }
            catch (Exception e) when (e is ProtocolException or LedgerCorruptException) { return new SignatureVerification(false, n, ev.Sequence, e.Message); }
            n++;
        }
        return new SignatureVerification(true, n, null, null);
    }
}
