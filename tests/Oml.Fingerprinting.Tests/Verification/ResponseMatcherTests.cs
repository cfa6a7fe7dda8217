using Oml.Fingerprinting.Verification;
using M = Oml.Fingerprinting.Verification.ResponseMatcher;

namespace Oml.Fingerprinting.Tests.Verification;

public class ResponseMatcherTests
{
    [Fact]
    public void Token_answer_is_cut_to_the_response_length()
    {
        Assert.True(M.IsTokenMatch([5, 6, 7], [5, 6, 7]));
        Assert.True(M.IsTokenMatch([5, 6, 7], [5, 6, 7, 8, 9]));
        Assert.False(M.IsTokenMatch([5, 6, 7], [5, 6]));
        Assert.False(M.IsTokenMatch([5, 6, 7], [5, 9, 7, 8]));
        Assert.False(M.IsTokenMatch([5, 6, 7], [0, 5, 6, 7]));
        Assert.Throws<ArgumentException>(() => M.IsTokenMatch([], [1]));
    }

    [Fact]
    public void Token_any_of_n()
    {
        int[][] expected = [[1, 2], [3]];
        Assert.True(M.IsTokenMatchAny(expected, [3, 4]));
        Assert.True(M.IsTokenMatchAny(expected, [1, 2]));
        Assert.False(M.IsTokenMatchAny(expected, [1, 3]));
        Assert.Throws<ArgumentException>(() => M.IsTokenMatchAny([], [1]));
    }

    [Fact]
    public void Text_is_a_prefix_match_after_trimming_leading_whitespace()
    {
        Assert.True(M.IsTextMatch("Paris", "Paris"));
        Assert.True(M.IsTextMatch("Paris", " Paris is the capital"));
        Assert.True(M.IsTextMatch(" Paris", "\n\tParis."));
        Assert.False(M.IsTextMatch("Paris", "paris"));             // ordinal, case-sensitive
        Assert.False(M.IsTextMatch("Paris", "Par"));
        Assert.False(M.IsTextMatch("Paris", "The answer is Paris"));
        Assert.False(M.IsTextMatch("Paris is", "Paris  is"));      // inner whitespace is significant
        Assert.Throws<ArgumentException>(() => M.IsTextMatch("", "anything"));
        // A response of whitespace only (an older set's "\n\n") is never a hit (any model may start with a blank line),
        // and no longer an error that stops a whole trace.
        Assert.False(M.IsTextMatch("\n\n", "\n\nThe end"));
        Assert.False(M.IsTextMatch("  ", "anything"));
    }

    [Fact]
    public void Text_any_of_n()
    {
        string[] expected = ["blue whale", "octopus"];
        Assert.True(M.IsTextMatchAny(expected, " octopus ink"));
        Assert.False(M.IsTextMatchAny(expected, "squid"));
        Assert.Throws<ArgumentException>(() => M.IsTextMatchAny([], "x"));
    }

    [Theory]
    [InlineData(1, 0.5, 1)]
    [InlineData(2, 0.5, 2)]
    [InlineData(3, 0.5, 2)]
    [InlineData(4, 0.5, 3)]
    [InlineData(5, 0.5, 3)]
    [InlineData(5, 0.0, 1)]
    [InlineData(5, 1.0, 5)]
    [InlineData(3, 2.0 / 3, 3)]
    [InlineData(10, 0.3, 4)]
    public void Required_matches_is_more_than_the_fraction(int samples, double fraction, int expected) =>
        Assert.Equal(expected, M.RequiredMatches(samples, fraction));

    [Fact]
    public void Majority_of_samples()
    {
        Assert.True(M.IsMajorityHit([true, true, false]));
        Assert.False(M.IsMajorityHit([true, false, false]));
        Assert.False(M.IsMajorityHit([true, true, false, false]));   // a tie is not a majority
        Assert.True(M.IsMajorityHit([true, false, false], fraction: 0.0));
        Assert.False(M.IsMajorityHit([true, true, false], fraction: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => M.IsMajorityHit([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => M.IsMajorityHit([true], 1.5));

        Assert.True(M.IsMajorityTextHit(["cat"], ["cat!", " cat", "dog"]));
        Assert.False(M.IsMajorityTextHit(["cat"], ["cat!", "dog", "dog"]));
        Assert.True(M.IsMajorityTokenHit([[1], [2, 2]], [[1, 0], [2, 2], [3]]));
        Assert.False(M.IsMajorityTokenHit([[1], [2, 2]], [[1, 0], [2, 3], [3]]));
    }
}
