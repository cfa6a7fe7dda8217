using System.Text;
using Oml.Protocol.Ledger;

namespace Oml.Protocol.Tests.Ledger;

public class LedgerHashingTests
{
    // Vectors computed independently with Python's hashlib over the documented encoding:
    // sha256(len32(tag) tag ‖ len32(8) seq64 ‖ len32(32) prev ‖ len32(type) type ‖ len32(8) ms64 ‖ len32(payload) payload).
    private const string Vector0 = "9589ccd59b34b69ba9c787296cf46dcdcf4f23acdfd69447f49c2dde5bf4cbcd";
    private const string Vector1 = "2f0a8f3421b65882f1108ad65d126f87caf326dd76843e270a44b36e574c0d50";

    [Fact]
    public void MatchesIndependentVectors()
    {
        var h0 = LedgerHashing.ComputeHash(0, new byte[32], "grant", DateTimeOffset.FromUnixTimeMilliseconds(1700000000123), Encoding.UTF8.GetBytes("{\"a\":1}"));
        Assert.Equal(Vector0, Convert.ToHexStringLower(h0));
        var h1 = LedgerHashing.ComputeHash(1, h0, "revoke/é", -5, ReadOnlySpan<byte>.Empty);
        Assert.Equal(Vector1, Convert.ToHexStringLower(h1));
    }

    [Fact]
    public void EveryFieldChangesTheHash()
    {
        byte[] prev = new byte[32];
        var ts = DateTimeOffset.FromUnixTimeMilliseconds(1000);
        var baseHash = LedgerHashing.ComputeHash(3, prev, "ab", ts, [1, 2]);
        var prev2 = new byte[32]; prev2[31] = 1;
        Assert.NotEqual(baseHash, LedgerHashing.ComputeHash(4, prev, "ab", ts, [1, 2]));
        Assert.NotEqual(baseHash, LedgerHashing.ComputeHash(3, prev2, "ab", ts, [1, 2]));
        Assert.NotEqual(baseHash, LedgerHashing.ComputeHash(3, prev, "ac", ts, [1, 2]));
        Assert.NotEqual(baseHash, LedgerHashing.ComputeHash(3, prev, "ab", ts.AddMilliseconds(1), [1, 2]));
        Assert.NotEqual(baseHash, LedgerHashing.ComputeHash(3, prev, "ab", ts, [1, 3]));
        // Moving a byte between type and payload must not collide (length prefixes).
        Assert.NotEqual(LedgerHashing.ComputeHash(0, prev, "ab", ts, "c"u8), LedgerHashing.ComputeHash(0, prev, "a", ts, "bc"u8));
        // Sub-millisecond precision is not hashed.
        Assert.Equal(baseHash, LedgerHashing.ComputeHash(3, prev, "ab", ts.AddTicks(9999), [1, 2]));
    }

    [Fact]
    public void RejectsBadPreviousHashAndParsesHex()
    {
        Assert.Throws<ArgumentException>(() => LedgerHashing.ComputeHash(0, new byte[31], "a", 0, []));
        Assert.Equal(Convert.FromHexString(Vector0), LedgerHashing.ParseHex("0x" + Vector0.ToUpperInvariant()));
        Assert.Throws<ArgumentException>(() => LedgerHashing.ParseHex(Vector0[..62]));
        Assert.Throws<ArgumentException>(() => LedgerHashing.ParseHex(Vector0[..63] + "g"));
    }
}
