using System.Text;
using Oml.Protocol.Ledger;

namespace Oml.Protocol.Tests.Ledger;

/// <summary>The behaviour every <see cref="ILedger"/> engine must have; one subclass per engine.</summary>
public abstract class LedgerContractTests
{
    protected abstract ILedger CreateLedger();

    internal static readonly DateTimeOffset T0 = new(2026, 11, 21, 8, 0, 0, 123, TimeSpan.Zero);

    internal static NewEvent Ev(string type, string json) => new(type, Encoding.UTF8.GetBytes(json));

    [Fact]
    public void EmptyLedgerHasGenesisHead()
    {
        using var l = CreateLedger();
        Assert.Equal(0, l.Height);
        Assert.Equal(new byte[32], l.HeadHash);
        Assert.Empty(l.Read());
        Assert.Equal(new LedgerVerification(true, 0, null, null), l.Verify());
    }

    [Fact]
    public void AppendChainsHashes()
    {
        using var l = CreateLedger();
        var first = l.Append(0, [Ev("a", "{\"n\":0}"), Ev("b", "{\"n\":1}")], T0);
        var second = l.Append(2, [Ev("c", "{}")], T0.AddSeconds(1));
        Assert.Equal([0L, 1L], first.Select(e => e.Sequence));
        Assert.Equal(2, second[0].Sequence);
        Assert.Equal(new byte[32], first[0].PreviousHash);
        Assert.Equal(first[0].Hash, first[1].PreviousHash);
        Assert.Equal(first[1].Hash, second[0].PreviousHash);
        foreach (var e in first.Concat(second)) Assert.Equal(LedgerHashing.ComputeHash(e), e.Hash);
        Assert.Equal(3, l.Height);
        Assert.Equal(second[0].Hash, l.HeadHash);
        var read = l.Read().ToList();
        Assert.Equal(3, read.Count);
        for (int i = 0; i < 3; i++)
        {
            var expected = first.Concat(second).ElementAt(i);
            Assert.Equal(expected.Sequence, read[i].Sequence);
            Assert.Equal(expected.Type, read[i].Type);
            Assert.Equal(expected.Payload, read[i].Payload);
            Assert.Equal(expected.Timestamp, read[i].Timestamp);
            Assert.Equal(expected.PreviousHash, read[i].PreviousHash);
            Assert.Equal(expected.Hash, read[i].Hash);
        }
        Assert.Equal([1L, 2L], l.Read(1).Select(e => e.Sequence));
        Assert.Empty(l.Read(3));
        Assert.Equal(new LedgerVerification(true, 3, null, null), l.Verify());
    }

    [Fact]
    public void TimestampsAreTruncatedToMillisecondsUtc()
    {
        using var l = CreateLedger();
        var local = new DateTimeOffset(2026, 11, 21, 10, 0, 0, 5, TimeSpan.FromHours(2)).AddTicks(4321);
        var e = l.Append(0, [Ev("a", "{}")], local)[0];
        Assert.Equal(TimeSpan.Zero, e.Timestamp.Offset);
        Assert.Equal(local.ToUnixTimeMilliseconds(), e.Timestamp.ToUnixTimeMilliseconds());
        Assert.Equal(0, e.Timestamp.Ticks % TimeSpan.TicksPerMillisecond);
        Assert.Equal(e.Timestamp, l.Read().Single().Timestamp);
    }

    [Fact]
    public void StaleHeightConflictsAndChangesNothing()
    {
        using var l = CreateLedger();
        l.Append(0, [Ev("a", "{}")], T0);
        var head = l.HeadHash;
        Assert.Throws<LedgerConflictException>(() => l.Append(0, [Ev("b", "{}")], T0));
        Assert.Throws<LedgerConflictException>(() => l.Append(2, [Ev("b", "{}")], T0));
        Assert.Equal(1, l.Height);
        Assert.Equal(head, l.HeadHash);
    }

    [Fact]
    public void BadInputIsRejectedAndChangesNothing()
    {
        using var l = CreateLedger();
        l.Append(0, [Ev("a", "{}")], T0);
        Assert.Throws<ArgumentException>(() => l.Append(1, [], T0));
        Assert.Throws<ArgumentException>(() => l.Append(1, [Ev("", "{}")], T0));
        Assert.Throws<ArgumentException>(() => l.Append(1, [Ev("  ", "{}")], T0));
        Assert.Throws<ArgumentException>(() => l.Append(1, [Ev("a\nb", "{}")], T0));
        Assert.ThrowsAny<ArgumentException>(() => l.Append(1, [new NewEvent("a", null!)], T0));
        Assert.ThrowsAny<ArgumentException>(() => l.Append(1, null!, T0));
        Assert.ThrowsAny<ArgumentException>(() => l.Append(-1, [Ev("a", "{}")], T0));
        // A valid event followed by a bad one: nothing is appended.
        Assert.ThrowsAny<ArgumentException>(() => l.Append(1, [Ev("ok", "{}"), new NewEvent("", [])], T0));
        var back = Assert.Throws<ArgumentException>(() => l.Append(1, [Ev("b", "{}")], T0.AddMilliseconds(-1)));
        Assert.Contains("backwards", back.Message);
        Assert.Equal(1, l.Height);
        // The same millisecond as the head is fine, and an empty payload is allowed.
        l.Append(1, [new NewEvent("b", [])], T0);
        Assert.Equal(2, l.Height);
        Assert.True(l.Verify().Intact);
    }

    [Fact]
    public void ReturnedEventsCannotAlterTheLedger()
    {
        using var l = CreateLedger();
        var payload = Encoding.UTF8.GetBytes("{\"x\":1}");
        var e = l.Append(0, [new NewEvent("a", payload)], T0)[0];
        payload[0] = (byte)'X';
        e.Payload[1] = (byte)'Y';
        l.Read().Single().Payload[2] = (byte)'Z';
        Assert.Equal("{\"x\":1}", Encoding.UTF8.GetString(l.Read().Single().Payload));
        Assert.True(l.Verify().Intact);
    }

    [Fact]
    public void VerifyAgainstAnExpectedHead()
    {
        using var l = CreateLedger();
        l.Append(0, [Ev("a", "{}"), Ev("b", "{}")], T0);
        var anchor = l.HeadHash;
        l.Append(2, [Ev("c", "{}")], T0);
        var v = Verify(l, anchor);
        Assert.True(v.Intact, v.Problem);
        Assert.True(Verify(l, new byte[32]).Intact);
        var unknown = Verify(l, LedgerHashing.ComputeHash(9, new byte[32], "x", 0, []));
        Assert.False(unknown.Intact);
        Assert.Null(unknown.FirstBadSequence);
        Assert.Contains("not the hash of any", unknown.Problem);
    }

    /// <summary>The engine's Verify(expectedHead).</summary>
    protected abstract LedgerVerification Verify(ILedger ledger, byte[] expectedHead);
}

public class InMemoryLedgerTests : LedgerContractTests
{
    protected override ILedger CreateLedger() => new InMemoryLedger();
    protected override LedgerVerification Verify(ILedger ledger, byte[] expectedHead) => ((InMemoryLedger)ledger).Verify(expectedHead);

    [Fact]
    public void DisposedLedgerThrows()
    {
        var l = new InMemoryLedger();
        l.Dispose();
        Assert.Throws<ObjectDisposedException>(() => l.Height);
    }
}
