using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Models;
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
}

public static class Stealth
{
    public static StealthResult Measure(CausalLM model, Tokenizer tok, IReadOnlyList<int[]> keys, IReadOnlyList<int> heldOut, int seed)
    {
        if (keys.Count == 0) throw new ArgumentException("no keys");
        var keyPpl = SequencePerplexity.Of(model, tok, keys);
        var textPpl = SequencePerplexity.Of(model, tok, SequencePerplexity.Windows(heldOut, keys.Select(k => k.Length), seed));
        return FromPerplexities(keyPpl, textPpl);
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
