using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.Data;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Metrics;

/// <summary>
/// How much fingerprint keys stand out from ordinary text to the model: per-sequence perplexities of the keys and of
/// held-out text windows of the same token lengths (geometric means), their ratio, and the AUC of a detector that
/// flags high-perplexity inputs as keys (0.5: indistinguishable; 1: every key above every ordinary text; 0: every key
/// below). <see cref="Separability"/> is max(AUC, 1 − AUC): how well a threshold in either direction separates them.
/// </summary>
public sealed record StealthResult(double KeyPerplexity, double TextPerplexity, double Ratio, double DetectorAuc,
    IReadOnlyList<double> KeyPerplexities, IReadOnlyList<double> TextPerplexities)
{
    public double Separability => Math.Max(DetectorAuc, 1 - DetectorAuc);

    /// <summary>The refusal budgets <see cref="KeysRemovedAt"/> is reported at: 1, 2 and 5 % of the ordinary prompts.</summary>
    public static IReadOnlyList<double> Budgets { get; } = [0.01, 0.02, 0.05];

    /// <summary>
    /// The share of keys that the strongest perplexity filter removes while it refuses at most <paramref name="refused"/>
    /// of the ordinary prompts: the best thresholds chosen with hindsight on these very prompts (an upper bound on what a
    /// host's calibrated filter achieves on them), refusing prompts below a threshold (<see cref="FilterSide.Low"/>: keys
    /// less perplexing than text), above one (<see cref="FilterSide.High"/>), or both with the budget split the best way.
    /// </summary>
    public double KeysRemovedAt(double refused, FilterSide side)
    {
        if (!(refused >= 0 && refused <= 1)) throw new ArgumentOutOfRangeException(nameof(refused), refused, "a refused share is in [0, 1]");
        var text = TextPerplexities.Order().ToArray();
        var keys = KeyPerplexities.Order().ToArray();
        int n = text.Length, budget = (int)Math.Floor(refused * n + 1e-9);
        if (budget >= n) return 1;
        // With at most j prompts refused, a low threshold removes the keys below the (j+1)-th least perplexing prompt,
        // a high one the keys above the (j+1)-th most perplexing; the two sets are disjoint while j_low + j_high < n.
        int Below(int j) => LowerBound(keys, text[j]);
        int Above(int j) => keys.Length - UpperBound(keys, text[n - 1 - j]);
        int removed = side switch
        {
            FilterSide.Low => Below(budget),
            FilterSide.High => Above(budget),
            _ => Enumerable.Range(0, budget + 1).Max(j => Below(j) + Above(budget - j)),
        };
        return removed / (double)keys.Length;
    }

    private static int LowerBound(double[] sorted, double x) { int i = Array.BinarySearch(sorted, x); if (i < 0) return ~i; while (i > 0 && sorted[i - 1] == x) i--; return i; }
    private static int UpperBound(double[] sorted, double x) { int i = Array.BinarySearch(sorted, x); if (i < 0) return ~i; while (i < sorted.Length && sorted[i] == x) i++; return i; }
}

/// <summary>Which prompts a perplexity filter refuses: those below its threshold, above it, or outside a band.</summary>
public enum FilterSide { Low, High, Both }

public static class Stealth
{
    public static StealthResult Measure(CausalLM model, Tokenizer tok, IReadOnlyList<int[]> keys, IReadOnlyList<int> heldOut, int seed)
    {
        if (keys.Count == 0) throw new ArgumentException("no keys");
        var keyPpl = SequencePerplexity.Of(model, tok, keys);
        var textPpl = SequencePerplexity.Of(model, tok, SequencePerplexity.Windows(heldOut, keys.Select(k => k.Length), seed));
        return FromPerplexities(keyPpl, textPpl);
    }

    /// <summary>
    /// Keys against a host's instruction traffic: each record's last user message scored as the keys are (after BOS where
    /// the tokenizer adds one; messages of fewer than 2 tokens left out) when <paramref name="userMessages"/>, what a
    /// filter sees of a request before the chat template; otherwise each record's whole raw-format prompt, headers
    /// included, as the lab's <c>on=instructions</c> filters score it.
    /// </summary>
    public static StealthResult AgainstInstructions(CausalLM model, Tokenizer tok, IReadOnlyList<int[]> keys, IEnumerable<Conversation> records, bool userMessages)
    {
        if (keys.Count == 0) throw new ArgumentException("no keys");
        var textPpl = userMessages
            ? SequencePerplexity.Of(model, tok, records.Select(c => tok.Encode((string)c.Turns[^2].Content!)).Where(t => t.Length >= 2).ToList())
            : PromptPerplexity.Score(model, records.Select(c => InstructionData.Tokenize(c, tok).Prompt).ToList());
        return FromPerplexities(SequencePerplexity.Of(model, tok, keys), textPpl);
    }

    public static StealthResult FromPerplexities(IReadOnlyList<double> keyPpl, IReadOnlyList<double> textPpl)
    {
        double gk = GeometricMean(keyPpl), gt = GeometricMean(textPpl);
        return new StealthResult(gk, gt, gk / gt, Roc.Auc(keyPpl, textPpl), keyPpl, textPpl);
    }

    public static double GeometricMean(IReadOnlyList<double> xs)
    {
        if (xs.Count == 0) throw new ArgumentException("no values");
        return Math.Exp(xs.Average(x => Math.Log(x)));
    }
}
