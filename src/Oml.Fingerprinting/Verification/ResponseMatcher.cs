namespace Oml.Fingerprinting.Verification;

/// <summary>
/// Decides whether a model's answer to a fingerprint key is a hit. All methods are pure functions.
/// </summary>
/// <remarks>
/// A fingerprinted model is trained to emit the response and then continue freely, so only the first
/// |response| tokens of the answer are compared (token matching), or, for text, the response must be a prefix of the
/// answer once leading whitespace is trimmed from both (detokenizers and chat templates differ on a leading space).
/// </remarks>
public static class ResponseMatcher
{
    /// <summary>
    /// Token match: the answer, cut to the response length, equals the response. An answer shorter than the
    /// response is a miss. An empty response is rejected (it would match everything).
    /// </summary>
    public static bool IsTokenMatch(ReadOnlySpan<int> expected, ReadOnlySpan<int> answer)
    {
        if (expected.IsEmpty) throw new ArgumentException("The expected response has no tokens.", nameof(expected));
        return answer.Length >= expected.Length && answer[..expected.Length].SequenceEqual(expected);
    }

    /// <summary>
    /// Partial token match with at least <paramref name="minTokens"/> (m) of the response's n tokens: with m' = min(m, n)
    /// and D = n − m', some d, e ∈ [0, D] have answer[d .. d + n − e) = expected[e .. n) (the response's last n − e ≥ m'
    /// tokens follow a free prefix of d answer tokens). An answer too short for an alignment does not match it. With
    /// m ≥ n this is <see cref="IsTokenMatch"/>. See <see cref="ResponseMatch"/>.
    /// </summary>
    public static bool IsPartialTokenMatch(ReadOnlySpan<int> expected, ReadOnlySpan<int> answer, int minTokens)
    {
        if (expected.IsEmpty) throw new ArgumentException("The expected response has no tokens.", nameof(expected));
        ArgumentOutOfRangeException.ThrowIfLessThan(minTokens, 1);
        int n = expected.Length, dev = n - Math.Min(minTokens, n);
        for (int d = 0; d <= dev; d++)
            for (int e = 0; e <= dev; e++)
            {
                int len = n - e;
                if (answer.Length >= d + len && answer.Slice(d, len).SequenceEqual(expected[e..])) return true;
            }
        return false;
    }

    /// <summary>Token match against any of several accepted responses.</summary>
    public static bool IsTokenMatchAny(IEnumerable<int[]> expected, ReadOnlySpan<int> answer)
    {
        ArgumentNullException.ThrowIfNull(expected);
        bool any = false;
        foreach (var e in expected)
        {
            any = true;
            if (IsTokenMatch(e, answer)) return true;
        }
        if (!any) throw new ArgumentException("No expected response was given.", nameof(expected));
        return false;
    }

    /// <summary>
    /// Text match: after trimming leading whitespace from both, the answer starts with the response (ordinal
    /// comparison). A response of whitespace only (sets generated before <see cref="Generation.Perinucleus.IsAcceptable"/>
    /// looked at decoded text could hold one, e.g. two newlines) never matches: any model may begin an answer with a blank
    /// line, so such a hit would prove nothing, and the chain's claim check (OmlMerkle.sol) refuses it too. An empty
    /// response is rejected (it would match everything).
    /// </summary>
    public static bool IsTextMatch(string expected, string answer)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(answer);
        if (expected.Length == 0) throw new ArgumentException("The expected response is empty.", nameof(expected));
        var e = expected.AsSpan().TrimStart();
        return !e.IsEmpty && answer.AsSpan().TrimStart().StartsWith(e, StringComparison.Ordinal);
    }

    /// <summary>Text match against any of several accepted responses.</summary>
    public static bool IsTextMatchAny(IEnumerable<string> expected, string answer)
    {
        ArgumentNullException.ThrowIfNull(expected);
        bool any = false;
        foreach (var e in expected)
        {
            any = true;
            if (IsTextMatch(e, answer)) return true;
        }
        if (!any) throw new ArgumentException("No expected response was given.", nameof(expected));
        return false;
    }

    /// <summary>
    /// Whether a text answer cut off by its token limit could still become a match with more tokens: after trimming leading
    /// whitespace from both, it is a proper prefix of some accepted response (an answer of whitespace only is a prefix of
    /// every response). Such an answer decides nothing; any other non-matching answer is a miss however long it grows.
    /// Replacement characters (U+FFFD) at the end are left out first: they are what a character cut between its tokens
    /// decodes to (a byte-level tokenizer splits a multi-byte character, and the limit fell inside it), which the next
    /// token completes.
    /// </summary>
    public static bool IsUndecidedText(IEnumerable<string> expected, string answer)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(answer);
        var a = answer.AsSpan().TrimStart().TrimEnd('\uFFFD');
        foreach (var e in expected)
        {
            var t = e.AsSpan().TrimStart();
            if (a.Length < t.Length && t.StartsWith(a, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    /// <summary>
    /// Number of matching samples needed among <paramref name="samples"/> repeats: more than
    /// <paramref name="fraction"/> of them, at least one and at most all. fraction = 0.5 is a strict majority
    /// (2 of 3, 3 of 4); fraction = 0 is "any sample"; fraction = 1 is "every sample".
    /// </summary>
    public static int RequiredMatches(int samples, double fraction = 0.5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 1);
        if (!(fraction >= 0.0 && fraction <= 1.0)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The fraction must be in [0, 1].");
        int needed = (int)Math.Floor(fraction * samples + 1e-9) + 1;
        return Math.Clamp(needed, 1, samples);
    }

    /// <summary>Sampled decoding: a key is hit when more than <paramref name="fraction"/> of its R samples match.</summary>
    public static bool IsMajorityHit(IReadOnlyList<bool> sampleMatches, double fraction = 0.5)
    {
        ArgumentNullException.ThrowIfNull(sampleMatches);
        int matches = 0;
        foreach (bool m in sampleMatches) if (m) matches++;
        return matches >= RequiredMatches(sampleMatches.Count, fraction);
    }

    /// <summary>Sampled decoding over text answers: each sample is matched against any of the responses.</summary>
    public static bool IsMajorityTextHit(IReadOnlyList<string> expected, IReadOnlyList<string> samples, double fraction = 0.5)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var matches = new bool[samples.Count];
        for (int i = 0; i < samples.Count; i++) matches[i] = IsTextMatchAny(expected, samples[i]);
        return IsMajorityHit(matches, fraction);
    }

    /// <summary>Sampled decoding over token answers: each sample is matched against any of the responses.</summary>
    public static bool IsMajorityTokenHit(IReadOnlyList<int[]> expected, IReadOnlyList<int[]> samples, double fraction = 0.5)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var matches = new bool[samples.Count];
        for (int i = 0; i < samples.Count; i++) matches[i] = IsTokenMatchAny(expected, samples[i]);
        return IsMajorityHit(matches, fraction);
    }
}
