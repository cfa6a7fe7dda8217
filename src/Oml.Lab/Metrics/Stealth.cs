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
    /// <summary>Perplexity of each sequence under the model (<see cref="SequencePerplexity.Of"/>).</summary>
    public static double[] SequencePerplexities(CausalLM model, Tokenizer tok, IReadOnlyList<int[]> sequences, int batchSize = 64) =>
        SequencePerplexity.Of(model, tok, sequences, batchSize);

    /// <summary>Windows of held-out tokens with the same lengths as <paramref name="keys"/>, at positions drawn from the seed.</summary>
    public static List<int[]> MatchedWindows(IReadOnlyList<int> heldOut, IEnumerable<int> lengths, int seed)
    {
        var rng = new Random(seed);
        var result = new List<int[]>();
        foreach (var n in lengths)
        {
            if (heldOut.Count < n) throw new ArgumentException($"{heldOut.Count} held-out tokens are too few for a window of {n}");
            int start = rng.Next(heldOut.Count - n + 1);
            result.Add(Enumerable.Range(start, n).Select(i => heldOut[i]).ToArray());
        }
        return result;
    }

    public static StealthResult Measure(CausalLM model, Tokenizer tok, IReadOnlyList<int[]> keys, IReadOnlyList<int> heldOut, int seed)
    {
        if (keys.Count == 0) throw new ArgumentException("no keys");
        var keyPpl = SequencePerplexities(model, tok, keys);
        var textPpl = SequencePerplexities(model, tok, MatchedWindows(heldOut, keys.Select(k => k.Length), seed));
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
