using Oml.Fingerprinting;

namespace Oml.Fingerprinting.Tests;

public sealed class ModelTests
{
    [Fact]
    public void Records_compare_by_value()
    {
        Assert.Equal(Samples.Set(4), Samples.Set(4));
        Assert.NotEqual(Samples.Set(4), Samples.Set(5));
        var s = Samples.Set(2);
        Assert.NotEqual(s, s with { Fingerprints = [s[0], s[1] with { Key = "other" }] });
        Assert.Equal(ParameterMap.Of(("a", "1"), ("b", "2")), ParameterMap.Of(("b", "2"), ("a", "1")));
        Assert.Equal(Samples.Set(3).GetHashCode(), Samples.Set(3).GetHashCode());
    }

    [Fact]
    public void Revelations_and_filters()
    {
        var at = DateTimeOffset.Parse("2026-12-01T10:00:00Z");
        var s = Samples.Set(5).MarkRevealed(1, at, "arbiter", "dispute").MarkRevealed(3, at, "arbiter", "dispute");
        Assert.Equal([0, 2, 4], s.Unrevealed().Select(f => f.Index));
        Assert.Equal([1, 3], s.RevealedFingerprints().Select(f => f.Index));
        Assert.Equal([0, 3], s.Where(f => f.Index % 3 == 0).Select(f => f.Index));
        Assert.True(s.IsRevealed(3));
        Assert.False(s.IsRevealed(0));
        Assert.Throws<InvalidOperationException>(() => s.MarkRevealed(1, at, "again", "again"));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.MarkRevealed(5, at, "x", "y"));
        Assert.Equal(5, Samples.Set(5).Unrevealed().Count);   // the original is unchanged
    }

    [Fact]
    public void Validation_rejects_malformed_sets()
    {
        var s = Samples.Set(3);
        Assert.Throws<ArgumentException>(() => (s with { Fingerprints = [s[0], s[2], s[1]] }).Validate());
        Assert.Throws<ArgumentException>(() => (s with { Fingerprints = [s[0] with { Salt = new byte[5] }] }).Validate());
        Assert.Throws<ArgumentException>(() => (s with { Fingerprints = [s[0] with { Responses = [] }] }).Validate());
        Assert.Throws<ArgumentException>(() => (s with { Fingerprints = [s[0] with { KeyTokenIds = [] }] }).Validate());
        Assert.Throws<ArgumentException>(() => (s with { Fingerprints = [s[0] with { Responses = [new FingerprintResponse("r", [1], 0.5)] }] }).Validate());
        Assert.Throws<ArgumentException>(() => (s with { Revealed = [new Revelation(9, DateTimeOffset.UnixEpoch, "x", "y")] }).Validate());
        Assert.Throws<ArgumentException>(() => ParameterMap.Of(("a", "1"), ("a", "2")));
    }

    [Fact]
    public void A_set_is_reproducible_from_the_secret()
    {
        Assert.Equal(Samples.Set(6).Commit(), Samples.Set(6).Commit());
        Assert.NotEqual(Samples.Set(6).Commit().Root, Samples.Set(6, "other secret"u8.ToArray()).Commit().Root);
    }
}
