namespace Oml.Protocol.Ledger;

/// <summary>
/// One committed event. <see cref="Hash"/> = SHA-256("oml/ledger-event/v1" ‖ sequence ‖ previous hash ‖ type ‖
/// timestamp ‖ payload) chains every event to the one before; the first event's previous hash is 32 zero bytes.
/// </summary>
public sealed record LedgerEvent(long Sequence, string Type, byte[] Payload, DateTimeOffset Timestamp, byte[] PreviousHash, byte[] Hash);

/// <summary>An event to append: a type name and its payload (canonical UTF-8 JSON by convention).</summary>
public sealed record NewEvent(string Type, byte[] Payload);

/// <summary>The result of replaying and checking the whole chain.</summary>
public sealed record LedgerVerification(bool Intact, long EventsChecked, long? FirstBadSequence, string? Problem);

/// <summary>The head moved since the caller read it: another writer appended first.</summary>
public sealed class LedgerConflictException(string message) : Exception(message);

/// <summary>The stored chain does not verify.</summary>
public sealed class LedgerCorruptException(string message) : Exception(message);

/// <summary>
/// An append-only, hash-chained event log. The embedded engine stores it in SQLite; a blockchain engine can implement
/// the same interface. Appends are atomic and durable: when Append returns, the events survive a crash; a crash
/// during Append leaves none of them.
/// </summary>
public interface ILedger : IDisposable
{
    /// <summary>Number of committed events (the next event's sequence number).</summary>
    /// <summary>The ledger's id: 32 lowercase hex digits (16 random bytes chosen at creation). It names the ledger
    /// (pinned heads are kept per id) and binds the protocol's signing domain to this ledger.</summary>
    string LedgerId { get; }

    long Height { get; }

    /// <summary>Hash of the last event, or 32 zero bytes for an empty ledger.</summary>
    byte[] HeadHash { get; }

    /// <summary>
    /// Appends the events in one atomic commit, provided the ledger's height is still <paramref name="expectedHeight"/>
    /// (optimistic concurrency between processes); otherwise throws <see cref="LedgerConflictException"/>.
    /// </summary>
    IReadOnlyList<LedgerEvent> Append(long expectedHeight, IReadOnlyList<NewEvent> events, DateTimeOffset timestamp);

    /// <summary>Committed events from <paramref name="fromSequence"/> on, in order.</summary>
    IEnumerable<LedgerEvent> Read(long fromSequence = 0);

    /// <summary>Replays the chain from the start and reports the first event that does not verify.</summary>
    LedgerVerification Verify();
}
