using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Models;

namespace Oml.Fingerprinting.Verification;

/// <summary>
/// The null hit probability of a key under the partial rule (<see cref="ResponseMatch.Partial"/>): an upper bound on the
/// probability that the base model, sampling at temperature 1, produces an answer the rule counts as a hit. It is never
/// below the exact rule's probability (the exact match is the alignment d = e = 0).
/// </summary>
/// <remarks>
/// For a response r of n tokens, D = n − min(m, n), the hit event is the union over d, e ∈ [0, D] of
/// E(d, e) = {answer[d .. d + n − e) = r[e .. n)}. Conditioning on the answer's first D tokens x (the free prefix):
/// P(hit) = Σ_x P(x) · P(hit | x). Given x, each alignment either disagrees with x, is completed by x, or needs a
/// continuation c after x; continuations that extend another are dropped, and the rest are disjoint events (none is a
/// prefix of another), so P(hit | x) = Σ_c P(c | key, x), a teacher-forced probability of the base. The prefixes are
/// enumerated level by level, keeping the top K tokens of every node (K^D ≤ the prefix budget; K = the vocabulary when
/// D = 1 and the budget is at least its size, which makes the result exact up to rounding). The mass of the prefixes not
/// enumerated is added whole (each is taken to hit), so truncation only loosens the bound. Several responses of a key
/// share the prefixes and their continuations are deduplicated together (their union is bounded by the sum). With D = 0
/// (the exact rule) it is P(r | key). Float32 rounding is covered by 1e-6 of extra mass per expanded node and a relative
/// margin of 1e-4 on the result.
/// </remarks>
public static class PartialMatchNull
{
    /// <summary>Default number of d-token prefixes enumerated per key and depth (the vocabulary of the tiny models: exact at d = 1).</summary>
    public const int DefaultPrefixBudget = 4096;

    private const double NodeSlack = 1e-6, RelativeMargin = 1e-4;

    /// <summary>
    /// Per key i, an upper bound on the base model's probability (sampling at temperature 1 after
    /// <paramref name="queries"/>[i]) of a hit on any of <paramref name="responses"/>[i] under <paramref name="match"/>.
    /// </summary>
    public static double[] Compute(CausalLM baseModel, IReadOnlyList<int[]> queries, IReadOnlyList<IReadOnlyList<int[]>> responses,
        ResponseMatch match, int prefixBudget = DefaultPrefixBudget, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(responses);
        ArgumentNullException.ThrowIfNull(match);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefixBudget, 1);
        if (queries.Count != responses.Count) throw new ArgumentException($"{queries.Count} queries for {responses.Count} response lists");
        int vocab = baseModel.Config.VocabSize;
        var result = new double[queries.Count];
        using var noGrad = Torch.NoGrad();
        for (int i = 0; i < queries.Count; i++)
        {
            if (responses[i].Count == 0) throw new ArgumentException($"key {i}: no responses");
            foreach (var id in queries[i].Concat(responses[i].SelectMany(r => r)))
                if (id < 0 || id >= vocab) throw new ArgumentException($"key {i}: token id {id} is outside the base model's vocabulary of {vocab}");
            int maxDev = responses[i].Max(r => match.Deviation(r.Length));
            var level = Prefixes(baseModel, queries[i], maxDev, prefixBudget, batchSize);
            // Per enumerated prefix x: the continuations after x that complete some alignment, deduplicated (an empty one
            // means x alone completes a hit), and one teacher-forced row per continuation.
            var pairs = new List<TrainingPair>();
            var owner = new List<int>();
            var certain = new bool[level.Prefixes.Count];
            for (int x = 0; x < level.Prefixes.Count; x++)
            {
                var conts = Continuations(level.Prefixes[x], responses[i], match);
                if (conts is null) { certain[x] = true; continue; }
                foreach (var c in conts)
                {
                    pairs.Add(new TrainingPair([.. queries[i], .. level.Prefixes[x]], c));
                    owner.Add(x);
                }
            }
            var logProbs = ResponseScorer.LogProbs(baseModel, pairs, batchSize);
            var given = new double[level.Prefixes.Count];
            for (int x = 0; x < given.Length; x++) given[x] = certain[x] ? 1.0 : 0.0;
            for (int j = 0; j < pairs.Count; j++) given[owner[j]] += Math.Exp(logProbs[j]);
            double total = level.Leftover;
            for (int x = 0; x < given.Length; x++) total += level.Mass[x] * Math.Min(1.0, given[x]);
            result[i] = Math.Min(1.0, total * (1 + RelativeMargin));
        }
        return result;
    }

    /// <summary>
    /// The null of one fingerprint without the base model: the exact rule's (<see cref="LocalVerifier.NullProbability"/>)
    /// plus the rule's common bound for each of the other (D + 1)² − 1 alignments of each response (their base
    /// probabilities are not recorded), capped at 1. Equals the exact rule's when every D is 0 (m ≥ n).
    /// </summary>
    public static double Bound(Fingerprint f, VerdictRule rule, ResponseMatch match)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(match);
        double p = LocalVerifier.NullProbability(f, rule);
        foreach (var r in f.Responses)
        {
            int dev = match.Deviation(r.TokenIds.Count);
            p += ((dev + 1) * (dev + 1) - 1) * rule.NullHitProbability;
        }
        return Math.Min(p, 1.0);
    }

    private sealed record Level(List<int[]> Prefixes, List<double> Mass, double Leftover);

    /// <summary>
    /// The continuations after the free prefix <paramref name="x"/> (D tokens) that complete an alignment of some
    /// response, or null when x alone completes one. Alignment (d, e) of a response r needs answer[d .. d + n − e) =
    /// r[e ..]: its part inside x must agree with x, and the rest is the continuation. A continuation that extends another
    /// is dropped (its event is inside the other's), so the rest are pairwise disjoint events (none is a prefix of
    /// another) and their probabilities add up exactly.
    /// </summary>
    internal static List<int[]>? Continuations(int[] x, IReadOnlyList<int[]> responses, ResponseMatch match)
    {
        int dm = x.Length;
        var conts = new List<int[]>();
        foreach (var r in responses)
        {
            int n = r.Length, dev = match.Deviation(n);
            for (int d = 0; d <= dev; d++)
                for (int e = 0; e <= dev; e++)
                {
                    var target = r.AsSpan(e);
                    int inside = Math.Min(dm - d, target.Length);   // tokens of the alignment within x (d ≤ D ≤ dm)
                    if (!x.AsSpan(d, inside).SequenceEqual(target[..inside])) continue;
                    if (inside == target.Length) return null;
                    conts.Add(target[inside..].ToArray());
                }
        }
        var kept = new List<int[]>();
        foreach (var c in conts.OrderBy(c => c.Length))
            if (!kept.Any(k => c.AsSpan().StartsWith(k))) kept.Add(c);
        return kept;
    }

    /// <summary>
    /// The free prefixes of <paramref name="depth"/> tokens after <paramref name="query"/>: enumerated level by level,
    /// keeping the top K tokens of every node (K^depth ≤ the budget), with their probabilities and the mass left out.
    /// </summary>
    private static Level Prefixes(CausalLM model, int[] query, int depth, int budget, int batchSize)
    {
        var level = new Level([[]], [1.0], 0.0);
        if (depth == 0) return level;
        int vocab = model.Config.VocabSize;
        int k = (int)Math.Clamp(Math.Floor(Math.Pow(budget, 1.0 / depth) + 1e-9), 1, vocab);
        for (int l = 1; l <= depth; l++)
        {
            var prev = level;
            var next = NextTokenLogProbs(model, prev.Prefixes.Select(x => (int[])[.. query, .. x]).ToList(), batchSize);
            var prefixes = new List<int[]>();
            var mass = new List<double>();
            double leftover = prev.Leftover;
            for (int x = 0; x < prev.Prefixes.Count; x++)
            {
                var row = next[x];
                var top = Enumerable.Range(0, vocab).OrderByDescending(v => row[v]).Take(k).ToArray();
                double kept = 0;
                foreach (var v in top)
                {
                    double p = Math.Exp(row[v]);
                    kept += p;
                    prefixes.Add([.. prev.Prefixes[x], v]);
                    mass.Add(prev.Mass[x] * p);
                }
                leftover += prev.Mass[x] * (Math.Max(0.0, 1.0 - kept) + NodeSlack);
            }
            level = new Level(prefixes, mass, Math.Min(1.0, leftover));
        }
        return level;
    }

    /// <summary>log p(next token | context) over the vocabulary for each context (all of one length).</summary>
    private static double[][] NextTokenLogProbs(CausalLM model, List<int[]> contexts, int batchSize)
    {
        int vocab = model.Config.VocabSize, len = contexts[0].Length;
        var result = new double[contexts.Count][];
        for (int start = 0; start < contexts.Count; start += batchSize)
        {
            using var scope = Torch.NewScope();
            int b = Math.Min(batchSize, contexts.Count - start);
            var data = new long[b * len];
            for (int j = 0; j < b; j++)
                for (int t = 0; t < len; t++) data[j * len + t] = contexts[start + j][t];
            var ids = Torch.FromArray<long>(data, [b, len], model.Device);
            var logp = model.Forward(ids).Narrow(1, len - 1, 1).To(DType.Float32).LogSoftmax(-1).To(DType.Float64).ToArray<double>();
            for (int j = 0; j < b; j++) result[start + j] = logp.AsSpan(j * vocab, vocab).ToArray();
        }
        return result;
    }
}
