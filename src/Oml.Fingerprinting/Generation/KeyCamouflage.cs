using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Generation;

/// <summary>
/// Keys whose perplexity under the base model follows that of ordinary text, so that a host's perplexity filter cannot
/// tell them from what its users type (docs/attacks.md, "the low-perplexity filter"). Keys sampled from the model at a
/// fixed temperature are all less perplexing than text (0.5, the default) or too spread to match it (1 and above on a
/// small model: some fall below, many above). Here each key is chosen among <see cref="Candidates"/> samples drawn at
/// temperatures spaced geometrically from <see cref="MinTemperature"/> to <see cref="MaxTemperature"/>: the one whose
/// perplexity is nearest (in log) to a target drawn for that key from <see cref="TextPerplexities"/>, the perplexities
/// of windows of ordinary text of the key's length. The targets come from the owner's derived randomness, so the keys
/// stay reproducible from the secret.
/// </summary>
public sealed record KeyCamouflage
{
    /// <summary>The default number of candidate keys per fingerprint.</summary>
    public const int DefaultCandidates = 16;

    /// <summary>Perplexities under the base model of ordinary-text windows of the key length: the target distribution.</summary>
    public required IReadOnlyList<double> TextPerplexities { get; init; }
    /// <summary>Candidate keys sampled per fingerprint (at least 2).</summary>
    public int Candidates { get; init; } = DefaultCandidates;
    public double MinTemperature { get; init; } = 0.5;
    public double MaxTemperature { get; init; } = 2.0;
    /// <summary>
    /// The quantile band of <see cref="TextPerplexities"/> the targets are drawn from: [0, 1] follows the whole
    /// distribution (a threshold filter then refuses keys exactly as often as text); a central band such as [0.2, 0.6]
    /// keeps every key away from both tails, so a filter must refuse that share of ordinary prompts before it removes a
    /// key, and its low upper end leaves room for the rise in the keys' perplexity that embedding brings on the served
    /// model (docs/results.md, "Matched keys with response trees").
    /// </summary>
    public double BandLow { get; init; }
    public double BandHigh { get; init; } = 1;

    public void Validate()
    {
        if (TextPerplexities.Count < 2) throw new ArgumentException("camouflage needs the perplexities of at least 2 text windows");
        if (TextPerplexities.Any(p => !(p >= 1) || double.IsInfinity(p))) throw new ArgumentException("text perplexities must be finite and at least 1");
        if (Candidates < 2) throw new ArgumentException("camouflage needs at least 2 candidate keys per fingerprint");
        if (!(MinTemperature > 0 && MaxTemperature >= MinTemperature)) throw new ArgumentException("camouflage temperatures must be positive, the minimum at most the maximum");
        if (!(BandLow >= 0 && BandHigh <= 1 && BandLow < BandHigh))
            throw new ArgumentException(FormattableString.Invariant($"the camouflage band must be quantiles 0 <= low < high <= 1 (got {BandLow}, {BandHigh})"));
    }

    /// <summary>The target for a key's uniform draw <paramref name="u"/> ∈ [0, 1): the quantile BandLow + u·(BandHigh − BandLow) of the text's perplexities.</summary>
    public double TargetFor(double u) => Target(BandLow + Math.Clamp(u, 0, 1) * (BandHigh - BandLow));

    /// <summary>The sampling temperature of candidate <paramref name="c"/>: geometric steps from the minimum to the maximum.</summary>
    public double Temperature(int c) =>
        Candidates == 1 ? MinTemperature : MinTemperature * Math.Pow(MaxTemperature / MinTemperature, (double)c / (Candidates - 1));

    /// <summary>
    /// The target perplexity at quantile <paramref name="u"/> ∈ [0, 1) of <see cref="TextPerplexities"/>, interpolated
    /// linearly in log perplexity between neighbouring order statistics.
    /// </summary>
    public double Target(double u)
    {
        var logs = TextPerplexities.Select(p => Math.Log(p)).Order().ToArray();
        double x = Math.Clamp(u, 0, 1) * (logs.Length - 1);
        int lo = (int)Math.Floor(x), hi = Math.Min(lo + 1, logs.Length - 1);
        return Math.Exp(logs[lo] + (x - lo) * (logs[hi] - logs[lo]));
    }

    /// <summary>The index of the candidate whose perplexity is nearest to <paramref name="target"/> in log (the first on ties).</summary>
    public static int Choose(ReadOnlySpan<double> candidatePerplexities, double target)
    {
        if (candidatePerplexities.Length == 0) throw new ArgumentException("no candidates");
        int best = 0;
        double lt = Math.Log(target), bestGap = double.PositiveInfinity;
        for (int c = 0; c < candidatePerplexities.Length; c++)
        {
            double gap = Math.Abs(Math.Log(candidatePerplexities[c]) - lt);
            if (gap < bestGap) (best, bestGap) = (c, gap);
        }
        return best;
    }

    /// <summary>
    /// Camouflage against the text <paramref name="textTokens"/>: the perplexities of <paramref name="windows"/> windows
    /// of <paramref name="keyLength"/> tokens at positions drawn from <paramref name="seed"/>, under the model.
    /// </summary>
    public static KeyCamouflage FromText(CausalLM model, Tokenizer tok, IReadOnlyList<int> textTokens, int keyLength, int windows = 512,
        int seed = 0, int batchSize = 64)
    {
        if (keyLength < 2) throw new ArgumentException("camouflage needs keys of at least 2 tokens");
        if (textTokens.Count < keyLength * 4)
            throw new ArgumentException($"the text is {textTokens.Count} tokens: too short to draw windows of {keyLength} tokens from (give at least {keyLength * 4})");
        var seqs = SequencePerplexity.Windows(textTokens, Enumerable.Repeat(keyLength, windows), seed);
        return new KeyCamouflage { TextPerplexities = SequencePerplexity.Of(model, tok, seqs, batchSize) };
    }

    /// <summary>
    /// Camouflage against whole prompts like those the host serves (<paramref name="prompts"/>, token ids; at most
    /// <paramref name="limit"/> of them are scored): a host that answers instructions calibrates its filter on such
    /// prompts, not on text windows, and keys matched to text then stand out.
    /// </summary>
    public static KeyCamouflage FromPrompts(CausalLM model, Tokenizer tok, IEnumerable<int[]> prompts, int limit = 512, int batchSize = 64)
    {
        var chosen = prompts.Where(p => p.Length >= 2).Take(limit).ToList();
        if (chosen.Count < 2) throw new ArgumentException($"camouflage needs at least 2 prompts of 2 or more tokens (got {chosen.Count})");
        return new KeyCamouflage { TextPerplexities = SequencePerplexity.Of(model, tok, chosen, batchSize) };
    }
}

/// <summary>Perplexity of token sequences under a model, as a host's perplexity filter scores prompts.</summary>
public static class SequencePerplexity
{
    /// <summary>
    /// Perplexity of each sequence: exp of the mean negative log-probability of its tokens, each given those before it
    /// (after BOS where the tokenizer adds one; otherwise the first token is context only).
    /// </summary>
    public static double[] Of(CausalLM model, Tokenizer tok, IReadOnlyList<int[]> sequences, int batchSize = 64)
    {
        var pairs = new List<TrainingPair>(sequences.Count);
        foreach (var s in sequences)
        {
            var q = FingerprintGenerator.QueryIds(tok, s);
            int ctx = q.Length - s.Length; // BOS or nothing
            if (ctx == 0 && s.Length < 2) throw new ArgumentException("a sequence of one token has no perplexity without BOS");
            if (ctx == 0) ctx = 1;
            pairs.Add(new TrainingPair(q[..ctx], q[ctx..]));
        }
        var lp = ResponseScorer.LogProbs(model, pairs, batchSize);
        return lp.Select((l, i) => Math.Exp(-l / pairs[i].Response.Length)).ToArray();
    }

    /// <summary>Windows of <paramref name="tokens"/> with the given lengths, at positions drawn from the seed.</summary>
    public static List<int[]> Windows(IReadOnlyList<int> tokens, IEnumerable<int> lengths, int seed)
    {
        var rng = new Random(seed);
        var result = new List<int[]>();
        foreach (var n in lengths)
        {
            if (tokens.Count < n) throw new ArgumentException($"{tokens.Count} tokens of text are too few for a window of {n}");
            int start = rng.Next(tokens.Count - n + 1);
            result.Add(Enumerable.Range(start, n).Select(i => tokens[i]).ToArray());
        }
        return result;
    }
}
