namespace Oml.Protocol.Ledger;

/// <summary>
/// A ledger held in memory, with the same rules and hashes as the SQLite engine but nothing durable: for tests
/// and simulations. Thread-safe; events are copied in and out, so callers cannot change what it holds.
/// </summary>
public sealed class InMemoryLedger : ILedger
{
    private readonly List<LedgerEvent> _events = [];
    private readonly Lock _lock = new();
    private bool _disposed;

    /// <summary>16 random bytes as hex, chosen when the ledger is made.</summary>
    public string LedgerId { get; } = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));

    public long Height
    {
        get { lock (_lock) { ThrowIfDisposed(); return _events.Count; } }
    }

    public byte[] HeadHash
    {
        get { lock (_lock) { ThrowIfDisposed(); return _events.Count == 0 ? LedgerHashing.GenesisHash : _events[^1].Hash.ToArray(); } }
    }

    /// <summary>Height, head hash and head time read together.</summary>
    public LedgerHead GetHead()
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            return _events.Count == 0
                ? new LedgerHead(0, LedgerHashing.GenesisHash, null)
                : new LedgerHead(_events.Count, _events[^1].Hash.ToArray(), _events[^1].Timestamp);
        }
    }

    public IReadOnlyList<LedgerEvent> Append(long expectedHeight, IReadOnlyList<NewEvent> events, DateTimeOffset timestamp)
    {
        LedgerRules.ValidateAppend(expectedHeight, events);
        var ts = LedgerHashing.Normalize(timestamp);
        lock (_lock)
        {
            ThrowIfDisposed();
            if (_events.Count != expectedHeight) throw LedgerRules.Conflict(expectedHeight, _events.Count);
            if (_events.Count > 0) LedgerRules.CheckTimestamp(ts, _events[^1].Timestamp);
            var prev = _events.Count == 0 ? LedgerHashing.GenesisHash : _events[^1].Hash;
            var added = new List<LedgerEvent>(events.Count);
            long seq = _events.Count;
            foreach (var ne in events)
            {
                var payload = ne.Payload.ToArray();
                var hash = LedgerHashing.ComputeHash(seq, prev, ne.Type, ts, payload);
                added.Add(new LedgerEvent(seq, ne.Type, payload, ts, prev, hash));
                prev = hash;
                seq++;
            }
            _events.AddRange(added);
            return added.Select(Copy).ToList();
        }
    }

    public IEnumerable<LedgerEvent> Read(long fromSequence = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fromSequence);
        return Iterate(fromSequence);
    }

    private IEnumerable<LedgerEvent> Iterate(long fromSequence)
    {
        for (long i = fromSequence; ; i++)
        {
            LedgerEvent e;
            lock (_lock)
            {
                ThrowIfDisposed();
                if (i >= _events.Count) yield break;
                e = Copy(_events[(int)i]);
            }
            yield return e;
        }
    }

    public LedgerVerification Verify() => LedgerVerifier.Verify(Read());

    /// <summary>Verifies the chain and that <paramref name="expectedHead"/> (a head recorded earlier) is part of it.</summary>
    public LedgerVerification Verify(byte[] expectedHead)
    {
        ArgumentNullException.ThrowIfNull(expectedHead);
        return LedgerVerifier.Verify(Read(), expectedHead);
    }

    public void Dispose()
    {
        lock (_lock) _disposed = true;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private static LedgerEvent Copy(LedgerEvent e) => e with { Payload = e.Payload.ToArray(), PreviousHash = e.PreviousHash.ToArray(), Hash = e.Hash.ToArray() };
}

/// <summary>The input rules every engine applies before appending.</summary>
internal static class LedgerRules
{
    /// <summary>Longest event type, in UTF-8 bytes.</summary>
    public const int MaxTypeBytes = 256;
    /// <summary>Largest payload of one event: events are records, not files.</summary>
    public const int MaxPayloadBytes = 16 << 20;

    public static void ValidateAppend(long expectedHeight, IReadOnlyList<NewEvent> events)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(expectedHeight);
        ArgumentNullException.ThrowIfNull(events);
        if (events.Count == 0) throw new ArgumentException("nothing to append: the event list is empty", nameof(events));
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i] ?? throw new ArgumentException($"event {i} is null", nameof(events));
            ValidateType(e.Type, i);
            if (e.Payload is null) throw new ArgumentException($"event {i} ('{e.Type}') has a null payload", nameof(events));
            if (e.Payload.Length > MaxPayloadBytes)
                throw new ArgumentException($"event {i} ('{e.Type}') has a {e.Payload.Length}-byte payload; the limit is {MaxPayloadBytes} bytes", nameof(events));
        }
    }

    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(false, true);

    private static void ValidateType(string? type, int index)
    {
        if (string.IsNullOrWhiteSpace(type)) throw new ArgumentException($"event {index} has an empty type", "events");
        int bytes;
        try { bytes = StrictUtf8.GetByteCount(type); }
        catch (System.Text.EncoderFallbackException) { throw new ArgumentException($"event {index}'s type is not valid Unicode (lone surrogate)", "events"); }
        if (bytes > MaxTypeBytes) throw new ArgumentException($"event {index}'s type is longer than {MaxTypeBytes} UTF-8 bytes", "events");
        if (type.Any(char.IsControl)) throw new ArgumentException($"event {index}'s type contains a control character", "events");
    }

    public static LedgerConflictException Conflict(long expected, long actual)
        => new($"the ledger's height is {actual}, not the expected {expected}: another writer appended first; re-read the head and retry");

    public static void CheckTimestamp(DateTimeOffset ts, DateTimeOffset head)
    {
        if (ts < head)
            throw new ArgumentException($"timestamp {ts:O} is earlier than the head event's {head:O}: ledger timestamps must not go backwards", "timestamp");
    }
}
