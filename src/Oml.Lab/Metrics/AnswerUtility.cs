using Oml.Lab.Attacks;
using Oml.Models.Data;

namespace Oml.Lab.Metrics;

/// <summary>Task accuracy of whole answers: token F1 and exact match against reference answers.</summary>
/// <param name="Items">Instructions answered.</param>
/// <param name="TokenF1">Mean over items of the token-multiset F1 between the answer and the reference (EOS dropped from both).</param>
/// <param name="ExactMatch">Fraction of answers equal to the reference, token for token.</param>
/// <param name="MeanLength">Mean answer length in tokens.</param>
public sealed record AnswerScore(int Items, double TokenF1, double ExactMatch, double MeanLength);

/// <summary>
/// The utility a deployment's honest users get on full multi-token answers: every instruction prompt is answered through
/// the responder (the model plus whatever the host puts around it) with up to <c>maxNewTokens</c> tokens, and each answer
/// is scored against the instruction data's reference answer. A decoding-time attack that only perturbs the first token
/// still shows here when it derails the rest of the answer.
/// </summary>
public static class AnswerUtility
{
    public static AnswerScore Score(IResponder responder, IReadOnlyList<TokenizedExample> items, int maxNewTokens, int? eosId)
    {
        ArgumentNullException.ThrowIfNull(responder);
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0) throw new ArgumentException("no instruction items to score", nameof(items));
        ArgumentOutOfRangeException.ThrowIfLessThan(maxNewTokens, 1);
        var answers = responder.Respond(items.Select(i => i.Prompt).ToList(), maxNewTokens);
        double f1 = 0, exact = 0, length = 0;
        for (int i = 0; i < items.Count; i++)
        {
            var a = Strip(answers[i], eosId);
            var r = Strip(items[i].Response, eosId);
            if (r.Length > maxNewTokens) r = r[..maxNewTokens];
            f1 += F1(a, r);
            if (a.AsSpan().SequenceEqual(r)) exact++;
            length += a.Length;
        }
        return new AnswerScore(items.Count, f1 / items.Count, exact / items.Count, length / items.Count);
    }

    /// <summary>Token-multiset F1 (1 when both are empty).</summary>
    public static double F1(IReadOnlyList<int> answer, IReadOnlyList<int> reference)
    {
        if (answer.Count == 0 && reference.Count == 0) return 1;
        if (answer.Count == 0 || reference.Count == 0) return 0;
        var counts = new Dictionary<int, int>();
        foreach (var t in reference) counts[t] = counts.GetValueOrDefault(t) + 1;
        int common = 0;
        foreach (var t in answer)
            if (counts.TryGetValue(t, out var c) && c > 0) { common++; counts[t] = c - 1; }
        if (common == 0) return 0;
        double p = (double)common / answer.Count, rc = (double)common / reference.Count;
        return 2 * p * rc / (p + rc);
    }

    private static int[] Strip(int[] tokens, int? eos)
    {
        if (eos is not int e) return tokens;
        int i = Array.IndexOf(tokens, e);
        return i < 0 ? tokens : tokens[..i];
    }
}
