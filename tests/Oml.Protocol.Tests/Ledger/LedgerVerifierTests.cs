using Oml.Protocol.Ledger;

namespace Oml.Protocol.Tests.Ledger;

/// <summary>The chain checker on hand-built chains (the SQLite tests tamper with real files).</summary>
public class LedgerVerifierTests
{
    private static List<LedgerEvent> Chain(int n)
    {
        using var l = new InMemoryLedger();
        for (int i = 0; i < n; i++) l.Append(i, [LedgerContractTests.Ev("t", $"{{\"i\":{i}}}")], LedgerContractTests.T0.AddSeconds(i));
        return l.Read().ToList();
    }

    [Fact]
    public void IntactChainPasses() => Assert.Equal(new LedgerVerification(true, 5, null, null), LedgerVerifier.Verify(Chain(5)));

    [Fact]
    public void EditedPayloadIsFound()
    {
        var c = Chain(5);
        c[2] = c[2] with { Payload = [1, 2, 3] };
        var v = LedgerVerifier.Verify(c);
        Assert.Equal((false, 2L, 2L), (v.Intact, v.EventsChecked, v.FirstBadSequence));
        Assert.Contains("contents of event 2", v.Problem);
    }

    [Fact]
    public void OverwrittenHashIsNamed()
    {
        var c = Chain(5);
        c[3] = c[3] with { Hash = new byte[32] };
        var v = LedgerVerifier.Verify(c);
        Assert.Equal(3, v.FirstBadSequence);
        Assert.Contains("stored hash of event 3 was overwritten", v.Problem);
    }

    [Fact]
    public void MissingEventsAndBrokenLinksAndBackwardTimeAreFound()
    {
        var c = Chain(5);
        var gap = c.Where(e => e.Sequence != 1).ToList();
        Assert.Equal(1, LedgerVerifier.Verify(gap).FirstBadSequence);
        Assert.Contains("event 1 is missing", LedgerVerifier.Verify(gap).Problem);
        Assert.Contains("event 0 is missing", LedgerVerifier.Verify(c.Skip(1)).Problem);

        var link = Chain(5);
        link[4] = link[4] with { PreviousHash = link[2].Hash };
        link[4] = link[4] with { Hash = LedgerHashing.ComputeHash(link[4]) };
        Assert.Equal(4, LedgerVerifier.Verify(link).FirstBadSequence);
        Assert.Contains("previous hash", LedgerVerifier.Verify(link).Problem);

        var time = Chain(3);
        time[2] = time[2] with { Timestamp = time[1].Timestamp.AddMilliseconds(-1) };
        time[2] = time[2] with { Hash = LedgerHashing.ComputeHash(time[2]) };
        var v = LedgerVerifier.Verify(time);
        Assert.Equal(2, v.FirstBadSequence);
        Assert.Contains("earlier than event 1", v.Problem);
    }

    [Fact]
    public void ConsistentRewriteNeedsTheAnchor()
    {
        var c = Chain(4);
        var anchor = c[^1].Hash;
        // Rewrite event 1 and recompute every later hash: self-consistent, so only the anchor reveals it.
        var forged = c.Take(1).ToList();
        for (int i = 1; i < 4; i++)
        {
            var e = c[i] with { PreviousHash = forged[^1].Hash, Payload = i == 1 ? [9] : c[i].Payload };
            forged.Add(e with { Hash = LedgerHashing.ComputeHash(e) });
        }
        Assert.True(LedgerVerifier.Verify(forged).Intact);
        var v = LedgerVerifier.Verify(forged, anchor);
        Assert.False(v.Intact);
        Assert.Contains("rewritten", v.Problem);
        // Truncation too.
        Assert.True(LedgerVerifier.Verify(c.Take(3)).Intact);
        Assert.False(LedgerVerifier.Verify(c.Take(3), anchor).Intact);
        Assert.True(LedgerVerifier.Verify(c, c[1].Hash).Intact);
    }
}
