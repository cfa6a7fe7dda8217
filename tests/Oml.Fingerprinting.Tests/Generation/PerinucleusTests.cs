using Oml.Fingerprinting.Generation;

namespace Oml.Fingerprinting.Tests.Generation;

public class PerinucleusTests
{
    [Fact]
    public void Candidates_are_the_acceptable_tokens_right_after_the_nucleus()
    {
        // Ranked: 4 (0.4), 1 (0.3), 6 (0.1), 0 (0.08), 3 (0.05), 2 (0.04), 5 (0.03).
        float[] p = [0.08f, 0.3f, 0.04f, 0.05f, 0.4f, 0.03f, 0.1f];
        // t = 0.7: the nucleus is {4, 1}; next come 6, 0, 3, ...
        Assert.Equal([6, 0, 3], Perinucleus.Candidates(p, 0.7, 3, _ => true));
        // t = 0.75 needs 6 as well.
        Assert.Equal([0, 3], Perinucleus.Candidates(p, 0.75, 2, _ => true));
        // Unacceptable tokens are skipped, not counted.
        Assert.Equal([6, 3, 5], Perinucleus.Candidates(p, 0.7, 3, id => id != 0 && id != 2));
        // The vocabulary can run out.
        Assert.Equal([5], Perinucleus.Candidates(p, 0.95, 3, _ => true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Perinucleus.Candidates(p, 1.0, 3, _ => true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Perinucleus.Candidates(p, 0.5, 0, _ => true));
    }

    [Theory]
    [InlineData("Ġhello", true)]
    [InlineData("▁world", true)]
    [InlineData("abc123", true)]
    [InlineData("Ġa", false)]
    [InlineData(",", false)]
    [InlineData("Ġ...", false)]
    [InlineData("don't", false)]
    [InlineData(null, false)]
    public void The_token_filter_keeps_alphanumeric_tokens_longer_than_one_character(string? text, bool ok) =>
        Assert.Equal(ok, Perinucleus.IsAcceptableText(text));
}
