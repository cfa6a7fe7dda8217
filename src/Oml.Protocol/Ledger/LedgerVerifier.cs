namespace Oml.Protocol.Ledger;

/// <summary>The head of a ledger read in one go: its height, the hash of its last event, and that event's time.</summary>
public sealed record LedgerHead(long Height, byte[] Hash, DateTimeOffset? Timestamp)
{
    /// <summary>"HEIGHT HASHHEX", the form <c>oml ledger head</c> prints.</summary>
    public override string ToString() => $"{Height} {LedgerHashing.ToHex(Hash)}";
}

/// <summary>
/// Replays a chain of events and checks it: sequence numbers contiguous from 0, every previous hash equal to the hash
/// of the event before, every hash recomputed from the event's contents, timestamps never going backwards, and
/// optionally that a head published earlier (an external anchor) is part of the chain.
/// </summary>
/// <remarks>
/// Without an anchor, a replay only proves the chain is self-consistent: someone able to write the file can rewrite
/// an event and recompute every later hash, or drop the last events, and the replay still passes. The anchor, a head
/// hash recorded somewhere the writer cannot change, is what detects such a rewrite or truncation.
/// </remarks>
public static class LedgerVerifier
{
    /// <summary>Checks <paramref name="events"/> (in stored order) and, when given, that <paramref name="expectedHead"/>
    /// is the hash of one of them (or of the empty chain).</summary>
    public static LedgerVerification Verify(IEnumerable<LedgerEvent> events, byte[]? expectedHead = null)
    {
        ArgumentNullException.ThrowIfNull(events);
        return Verify(events.Select(e => new StoredRow(e.Sequence, e, null)), expectedHead);
    }

    /// <summary>One stored row: a well-formed event, or the reason it could not be read as one.</summary>
    internal readonly record struct StoredRow(long Sequence, LedgerEvent? Event, string? Malformed);

    internal static LedgerVerification Verify(IEnumerable<StoredRow> rows, byte[]? expectedHead)
    {
        if (expectedHead is not null && expectedHead.Length != LedgerHashing.HashSize)
            throw new ArgumentException($"an expected head is {LedgerHashing.HashSize} bytes, got {expectedHead.Length}", nameof(expectedHead));
        long expectedSeq = 0;
        byte[] prevHash = LedgerHashing.GenesisHash;
        long prevTs = long.MinValue;
        bool anchorFound = expectedHead is not null && expectedHead.AsSpan().SequenceEqual(prevHash);

        using var it = rows.GetEnumerator();
        bool has = it.MoveNext();
        while (has)
        {
            var row = it.Current;
            has = it.MoveNext();
            StoredRow? next = has ? it.Current : null;
            long seq = row.Sequence;
            LedgerVerification Bad(long at, string problem) => new(false, expectedSeq, at, problem);

            if (seq != expectedSeq)
            {
                return seq > expectedSeq
                    ? Bad(expectedSeq, seq == expectedSeq + 1
                        ? $"event {expectedSeq} is missing (row deleted?): the event after {(expectedSeq == 0 ? "the start" : $"event {expectedSeq - 1}")} is {seq}"
                        : $"events {expectedSeq}..{seq - 1} are missing (rows deleted?): the event after {(expectedSeq == 0 ? "the start" : $"event {expectedSeq - 1}")} is {seq}")
                    : Bad(seq, $"event {seq} is out of order (expected sequence {expectedSeq})");
            }
            if (row.Event is not { } e) return Bad(seq, $"event {seq} is malformed: {row.Malformed}");
            if (!e.PreviousHash.AsSpan().SequenceEqual(prevHash))
                return Bad(seq, seq == 0
                    ? "event 0's previous hash is not the genesis hash (32 zero bytes): the link was rewritten"
                    : $"event {seq}'s previous hash does not match the hash of event {seq - 1}: the link was rewritten");
            byte[] recomputed = LedgerHashing.ComputeHash(e);
            if (!recomputed.AsSpan().SequenceEqual(e.Hash))
            {
                string problem;
                if (next is { Event: { } n } && n.PreviousHash.AsSpan().SequenceEqual(recomputed))
                    problem = $"the stored hash of event {seq} was overwritten: it does not match the event's contents, which still match event {seq + 1}'s link";
                else
                    problem = $"the contents of event {seq} (type, timestamp or payload) were edited, or its hash overwritten: the stored hash does not match the contents";
                return Bad(seq, problem);
            }
            long ts = e.Timestamp.ToUnixTimeMilliseconds();
            if (ts < prevTs)
                return Bad(seq, $"event {seq}'s timestamp {e.Timestamp:O} is earlier than event {seq - 1}'s {DateTimeOffset.FromUnixTimeMilliseconds(prevTs):O}");

            prevTs = ts;
            prevHash = e.Hash;
            expectedSeq++;
            if (!anchorFound && expectedHead is not null && expectedHead.AsSpan().SequenceEqual(e.Hash)) anchorFound = true;
        }
        if (expectedHead is not null && !anchorFound)
            return new(false, expectedSeq, null,
                $"the expected head {LedgerHashing.ToHex(expectedHead)} is not the hash of any of the {expectedSeq} events: " +
                "the chain was rewritten consistently from some event on, or truncated, since that head was recorded");
        return new(true, expectedSeq, null, null);
    }
}
