using System.Globalization;

namespace Oml.Fingerprinting.Verification;

/// <summary>
/// Which answers count as a hit: the whole response at the start of the answer (<see cref="Exact"/>, the default), or a
/// partial match (<see cref="Partial"/>) that tolerates a short deviation at the start of the answer, where output
/// suppression acts.
/// </summary>
/// <remarks>
/// Partial match with at least m of a response's n tokens (m' = min(m, n), D = n − m'): the key is hit when for some
/// free prefix d ∈ [0, D] and skipped head e ∈ [0, D] the answer's tokens d .. d + n − e − 1 equal the response's tokens
/// e .. n − 1, i.e. the response's last n − e ≥ m' tokens follow the first d tokens of the answer. d = e is the first d
/// tokens replaced (top-1 suppression of k positions: d = e = k), d &gt; e tokens inserted before the response, d &lt; e
/// its head dropped. With m ≥ n only d = e = 0 is left, which is the exact rule. The deviation must come first so that
/// the null needs only the base model's distribution over the d free tokens (<see cref="PartialMatchNull"/>).
/// </remarks>
public sealed record ResponseMatch
{
    private ResponseMatch(int? minTokens) => MinTokens = minTokens;

    /// <summary>The exact rule: the answer starts with the whole response.</summary>
    public static ResponseMatch Exact { get; } = new((int?)null);

    /// <summary>The partial rule with at least <paramref name="minTokens"/> (m ≥ 1) tokens of each response.</summary>
    public static ResponseMatch Partial(int minTokens) =>
        minTokens >= 1 ? new ResponseMatch(minTokens) : throw new ArgumentOutOfRangeException(nameof(minTokens), minTokens, "a partial match needs at least one token (m >= 1)");

    /// <summary>m for the partial rule; null for the exact rule.</summary>
    public int? MinTokens { get; }

    /// <summary>Whether this is the partial rule.</summary>
    public bool IsPartial => MinTokens is not null;

    /// <summary>The deviation D = n − min(m, n) a response of <paramref name="n"/> tokens may have (0 for the exact rule).</summary>
    public int Deviation(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        return MinTokens is int m ? n - Math.Min(m, n) : 0;
    }

    /// <summary>Answer tokens needed to decide a response of <paramref name="n"/> tokens: n + D.</summary>
    public int AnswerLength(int n) => n + Deviation(n);

    /// <summary>Whether <paramref name="answer"/> matches <paramref name="expected"/> under this rule.</summary>
    public bool IsMatch(ReadOnlySpan<int> expected, ReadOnlySpan<int> answer) =>
        MinTokens is int m ? ResponseMatcher.IsPartialTokenMatch(expected, answer, m) : ResponseMatcher.IsTokenMatch(expected, answer);

    /// <summary>Whether <paramref name="answer"/> matches any of the responses under this rule.</summary>
    public bool IsMatchAny(IEnumerable<int[]> expected, ReadOnlySpan<int> answer)
    {
        ArgumentNullException.ThrowIfNull(expected);
        bool any = false;
        foreach (var e in expected)
        {
            any = true;
            if (IsMatch(e, answer)) return true;
        }
        if (!any) throw new ArgumentException("No expected response was given.", nameof(expected));
        return false;
    }

    /// <summary>"exact" or "partial" (the name <c>oml verify --match</c> takes).</summary>
    public string Name => IsPartial ? "partial" : "exact";

    /// <summary>The rule in one line.</summary>
    public string Describe() => MinTokens is int m
        ? string.Create(CultureInfo.InvariantCulture,
            $"partial (m = {m}): the response's last n - e >= min(m, n) tokens follow the answer's first d tokens, d, e <= n - min(m, n)")
        : "exact: the answer starts with the whole response";
}
