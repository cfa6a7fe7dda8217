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
    /// <remarks>
    /// All keys advance together, <paramref name="keysPerChunk"/> keys at a time: each level's prefixes of every key go
    /// through the model in batches of up to <see cref="ResponseScorer.MaxBatchTokens"/> tokens (logits at the last
    /// position only, the top K chosen on the device), and the teacher-forced rows of all the chunk's keys are scored in
    /// shared batches after the keys' key/value caches, each key computed once (<see cref="ResponseScorer.LogProbsAfterPrefixes"/>):
    /// a row computes its prefix and its continuation but the last token, not the key again. <paramref name="batchSize"/>
    /// caps the rows of a batch.
    /// </remarks>
    public static double[] Compute(CausalLM baseModel, IReadOnlyList<int[]> queries, IReadOnlyList<IReadOnlyList<int[]>> responses,
        ResponseMatch match, int prefixBudget = DefaultPrefixBudget, int batchSize = 4096, int keysPerChunk = 64)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(responses);
        ArgumentNullException.ThrowIfNull(match);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefixBudget, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(keysPerChunk, 1);
        if (queries.Count != responses.Count) throw new ArgumentException($"{queries.Count} queries for {responses.Count} response lists");
        int vocab = baseModel.Config.VocabSize;
        for (int i = 0; i < queries.Count; i++)
        {
            if (responses[i].Count == 0) throw new ArgumentException($"key {i}: no responses");
            if (queries[i].Length == 0) throw new ArgumentException($"key {i}: the query is empty");
            foreach (var id in queries[i].Concat(responses[i].SelectMany(r => r)))
                if (id < 0 || id >= vocab) throw new ArgumentException($"key {i}: token id {id} is outside the base model's vocabulary of {vocab}");
        }
        var result = new double[queries.Count];
        using var noGrad = Torch.NoGrad();
        for (int from = 0; from < queries.Count; from += keysPerChunk)
        {
            var keys = Enumerable.Range(from, Math.Min(keysPerChunk, queries.Count - from)).ToArray();
            var depths = keys.Select(i => responses[i].Max(r => match.Deviation(r.Length))).ToArray();
            var levels = Prefixes(baseModel, keys.Select(i => queries[i]).ToArray(), depths, prefixBudget, batchSize);
            // Per key and enumerated prefix x: the continuations after x that complete some alignment, deduplicated (an
            // empty list means x alone completes a hit), and one teacher-forced row (x, continuation) after the key; the
            // rows of all keys of the chunk are scored together, each key run through the model once.
            var given = new double[keys.Length][];
            var rows = new List<PrefixedRow>();
            var owner = new List<(int Key, int Prefix)>();
            for (int j = 0; j < keys.Length; j++)
            {
                var level = levels[j];
                given[j] = new double[level.Prefixes.Count];
                for (int x = 0; x < level.Prefixes.Count; x++)
                {
                    var conts = Continuations(level.Prefixes[x], responses[keys[j]], match);
                    if (conts is null) { given[j][x] = 1.0; continue; }
                    foreach (var c in conts)
                    {
                        rows.Add(new PrefixedRow(j, level.Prefixes[x], c));
                        owner.Add((j, x));
                    }
                }
            }
            var logProbs = ResponseScorer.LogProbsAfterPrefixes(baseModel, keys.Select(i => queries[i]).ToList(), rows, batchSize);
            for (int r = 0; r < rows.Count; r++) given[owner[r].Key][owner[r].Prefix] += Math.Exp(logProbs[r]);
            for (int j = 0; j < keys.Length; j++)
            {
                var level = levels[j];
                double total = level.Leftover;
                for (int x = 0; x < given[j].Length; x++) total += level.Mass[x] * Math.Min(1.0, given[j][x]);
                result[keys[j]] = Math.Min(1.0, total * (1 + RelativeMargin));
            }
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
    public static List<int[]>? Continuations(int[] x, IReadOnlyList<int[]> responses, ResponseMatch match)
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
    /// The free prefixes of <paramref name="depths"/>[j] tokens after <paramref name="queries"/>[j], for every j at once:
    /// enumerated level by level, keeping the top K_j tokens of every node (K_j^depth ≤ the budget), with their
    /// probabilities and the mass left out.
    /// </summary>
    private static Level[] Prefixes(CausalLM model, int[][] queries, int[] depths, int budget, int batchSize)
    {
        int vocab = model.Config.VocabSize;
        var levels = queries.Select(_ => new Level([[]], [1.0], 0.0)).ToArray();
        var k = depths.Select(d => d == 0 ? 0 : (int)Math.Clamp(Math.Floor(Math.Pow(budget, 1.0 / d) + 1e-9), 1, vocab)).ToArray();
        for (int l = 1; l <= depths.DefaultIfEmpty(0).Max(); l++)
        {
            // Every node of every key still growing: (key, prefix index), its context, the K to keep.
            var nodes = new List<(int Key, int Prefix)>();
            for (int j = 0; j < queries.Length; j++)
                if (depths[j] >= l)
                    for (int x = 0; x < levels[j].Prefixes.Count; x++) nodes.Add((j, x));
            var (topIds, topLogProbs) = TopNextTokens(model, nodes.Select(n => (int[])[.. queries[n.Key], .. levels[n.Key].Prefixes[n.Prefix]]).ToList(),
                nodes.Select(n => k[n.Key]).ToList(), batchSize);
            var next = new Level?[queries.Length];
            for (int i = 0; i < nodes.Count; i++)
            {
                var (j, x) = nodes[i];
                var prev = levels[j];
                var grown = next[j] ??= new Level([], [], prev.Leftover);
                double kept = 0;
                for (int t = 0; t < topIds[i].Length; t++)
                {
                    double p = Math.Exp(topLogProbs[i][t]);
                    kept += p;
                    grown.Prefixes.Add([.. prev.Prefixes[x], topIds[i][t]]);
                    grown.Mass.Add(prev.Mass[x] * p);
                }
                next[j] = grown with { Leftover = grown.Leftover + prev.Mass[x] * (Math.Max(0.0, 1.0 - kept) + NodeSlack) };
            }
            for (int j = 0; j < queries.Length; j++)
                if (next[j] is { } grown) levels[j] = grown with { Leftover = Math.Min(1.0, grown.Leftover) };
        }
        return levels;
    }

    /// <summary>
    /// For each context, the <paramref name="keep"/>[i] most likely next tokens and their log-probabilities (descending),
    /// in batches of contexts of one length (no padding) of up to <see cref="ResponseScorer.MaxBatchTokens"/> tokens.
    /// The vocabulary-wide log-softmax and the selection run on the device; only the kept entries come to the host.
    /// </summary>
    private static (int[][] Ids, double[][] LogProbs) TopNextTokens(CausalLM model, List<int[]> contexts, List<int> keep, int batchSize)
    {
        var ids = new int[contexts.Count][];
        var logProbs = new double[contexts.Count][];
        foreach (var group in Enumerable.Range(0, contexts.Count).GroupBy(i => contexts[i].Length))
        {
            var members = group.ToArray();
            // Rows per batch: at most MaxBatchTokens tokens in, and a [rows, vocabulary] float32 log-softmax of at most 2^26 entries.
            int len = group.Key, vocab = model.Config.VocabSize;
            int rows = Math.Clamp(Math.Min(ResponseScorer.MaxBatchTokens / len, (1 << 26) / vocab), 1, batchSize);
            for (int start = 0; start < members.Length; start += rows)
            {
                using var scope = Torch.NewScope();
                var batch = members.AsSpan(start, Math.Min(rows, members.Length - start)).ToArray();
                int k = batch.Max(i => keep[i]);
                var logits = Generator.NextTokenLogits(model, batch.Select(i => (IReadOnlyList<int>)contexts[i]).ToList());
                var (values, indices) = logits.To(DType.Float32).LogSoftmax(-1).TopK(k);
                var v = values.To(DType.Float64).ToArray<double>();
                var ix = indices.ToArray<long>();
                for (int b = 0; b < batch.Length; b++)
                {
                    int n = keep[batch[b]];
                    ids[batch[b]] = new int[n];
                    logProbs[batch[b]] = new double[n];
                    for (int t = 0; t < n; t++) { ids[batch[b]][t] = (int)ix[b * k + t]; logProbs[batch[b]][t] = v[b * k + t]; }
                }
            }
        }
        return (ids, logProbs);
    }
}
