using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Generation;

/// <summary>Perinucleus settings; defaults are the paper's (t = 0.8, k = 3) with one-token responses.</summary>
public sealed record PerinucleusOptions
{
    public double Threshold { get; init; } = 0.8;
    public int Width { get; init; } = 3;
    /// <summary>Response length in tokens: the perinucleus token, then greedy continuation (L − 1 tokens).</summary>
    public int ResponseLength { get; init; } = 1;
    /// <summary>Distinct responses per key (each starts with a different perinucleus token); at most <see cref="Width"/>.</summary>
    public int ResponsesPerKey { get; init; } = 1;
    /// <summary>
    /// Response trees: after the perinucleus token each response branches, at every later position, into the base
    /// model's top B tokens instead of its greedy one, so a first token carries B^(L−1) accepted answers. Embedded
    /// together they leave the model with B near-equal choices at every position, so that an attacker who suppresses
    /// the top B − 1 tokens of every answer position still answers along the tree. 1: a single greedy continuation.
    /// </summary>
    public int Branching { get; init; } = 1;
    /// <summary>The most accepted answers (paths) one key may have: <see cref="ResponsesPerKey"/> × B^(L−1).</summary>
    public const int MaxPathsPerKey = 64;
    public int BatchSize { get; init; } = 32;
    /// <summary>
    /// How many of the most probable tokens per key are ranked on the device and copied to the host first; rows they do
    /// not settle are sorted whole on the device. The responses do not depend on it (only the work does).
    /// </summary>
    public int TopTokens { get; init; } = PerinucleusSampler.TopTokens;
    /// <summary>
    /// Tokens that end an answer (null: the model's eos ids). A response's continuation stops at the first of them,
    /// which it keeps: a server stops there too, so tokens after it could never be answered (a response that ran on past
    /// it was embedded but never hit through a deployment). A tree's path that ends there is not branched further.
    /// </summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }
}

/// <summary>Chooses Perinucleus responses for keys with a base model.</summary>
public static class PerinucleusSampler
{
    /// <summary>How many of the most probable tokens per key are ranked on the device and copied to the host.</summary>
    public const int TopTokens = 2048;

    /// <summary>
    /// For each key, <see cref="PerinucleusOptions.ResponsesPerKey"/> responses: first tokens drawn without replacement
    /// from the perinucleus candidates by <paramref name="pick"/> (which must return an index in [0, n) for its argument
    /// n: pass the owner's derived randomness so the choice is reproducible and provably the owner's), each continued
    /// greedily to the response length. Keys whose candidates are too few get fewer responses.
    /// </summary>
    public static List<int[]>[] Sample(CausalLM model, IReadOnlyList<int[]> keys, PerinucleusOptions options,
        Func<int, bool> acceptable, Func<int, int, int> pick, IProgress<int>? progress = null)
    {
        if (options.ResponseLength < 1) throw new ArgumentException("response length must be at least 1");
        if (options.ResponsesPerKey < 1 || options.ResponsesPerKey > options.Width)
            throw new ArgumentException("responses per key must be between 1 and the width k");
        if (options.TopTokens < 1) throw new ArgumentException("the top tokens ranked first must be at least 1");
        ValidateBranching(options);
        var result = new List<int[]>[keys.Count];
        var eos = (options.EosTokenIds ?? model.Config.EosTokenIds).ToHashSet();
        int done = 0;
        foreach (var chunk in Enumerable.Range(0, keys.Count).Chunk(Math.Max(1, options.BatchSize)))
        {
            // Next-token distribution after each key: the last position of a left-padded batch. Only its most probable
            // tokens come to the host, ranked on the device (a whole vocabulary per key sorted on the CPU was the
            // bottleneck); a row they do not settle (Perinucleus.CandidatesFromTop) is copied whole and ranked here.
            var candidateLists = new int[chunk.Length][];
            using (Torch.NoGrad())
            using (Torch.NewScope())
            {
                var p = Generator.NextTokenLogits(model, chunk.Select(i => (IReadOnlyList<int>)keys[i]).ToList()).To(DType.Float32).Softmax(-1);
                long vocab = p.Size(-1);
                int top = (int)Math.Min(vocab, options.TopTokens);
                var (values, ids) = p.TopK(top);
                var v = values.Cpu().ToArray<float>();
                var ix = ids.Cpu().ToArray<long>();
                var unsettled = new List<int>();
                for (int r = 0; r < chunk.Length; r++)
                {
                    candidateLists[r] = Perinucleus.CandidatesFromTop(v.AsSpan(r * top, top), ix.AsSpan(r * top, top), top == vocab,
                        options.Threshold, options.Width, acceptable)!;
                    if (candidateLists[r] is null) unsettled.Add(r);
                }
                // Rows the top tokens do not settle (a flat distribution: a random-word key, a randomly initialised
                // model) are sorted whole on the device, all at once, and walked here in one pass each; a comparison sort
                // of the whole vocabulary per row on the CPU bound generation before.
                if (unsettled.Count > 0)
                {
                    var rows = Torch.FromArray<long>(unsettled.Select(r => (long)r).ToArray(), [unsettled.Count], p.Device);
                    var (sv, si) = p.IndexSelect(0, rows).Sort(-1, descending: true);
                    var sortedValues = sv.Cpu().ToArray<float>();
                    var sortedIds = si.Cpu().ToArray<long>();
                    for (int u = 0; u < unsettled.Count; u++)
                    {
                        int r = unsettled[u];
                        candidateLists[r] = Perinucleus.CandidatesFromSorted(sortedValues.AsSpan(u * (int)vocab, (int)vocab), sortedIds.AsSpan(u * (int)vocab, (int)vocab),
                            options.Threshold, options.Width, acceptable)
                            ?? Perinucleus.Candidates(p.Select(0, r).Cpu().ToArray<float>(), options.Threshold, options.Width, acceptable);
                    }
                }
            }

            var prompts = new List<int[]>();
            var owners = new List<int>();
            for (int r = 0; r < chunk.Length; r++)
            {
                int keyIndex = chunk[r];
                var candidates = candidateLists[r].ToList();
                result[keyIndex] = [];
                for (int n = 0; n < options.ResponsesPerKey && candidates.Count > 0; n++)
                {
                    int c = pick(keyIndex, candidates.Count);
                    if (c < 0 || c >= candidates.Count) throw new InvalidOperationException($"pick returned {c} for {candidates.Count} candidates");
                    prompts.Add([.. keys[keyIndex], candidates[c]]);
                    owners.Add(keyIndex);
                    candidates.RemoveAt(c);
                }
            }
            if (options.ResponseLength == 1 || prompts.Count == 0)
            {
                for (int i = 0; i < prompts.Count; i++) result[owners[i]].Add([prompts[i][^1]]);
            }
            else if (options.Branching > 1)
            {
                foreach (var (owner, response) in Branch(model, prompts, owners, options.ResponseLength - 1, options.Branching, options.BatchSize, eos))
                    result[owner].Add(response);
            }
            else
            {
                var cont = Generator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = options.ResponseLength - 1, EosTokenIds = [.. eos] });
                for (int i = 0; i < prompts.Count; i++) result[owners[i]].Add([prompts[i][^1], .. cont.Sequences[i].OutputIds]);
            }
            done += chunk.Length;
            progress?.Report(done);
        }
        return result;
    }

    /// <summary>Fails unless the branching is at least 1, needs no one-token responses, and keeps each key's paths within <see cref="PerinucleusOptions.MaxPathsPerKey"/>.</summary>
    public static void ValidateBranching(PerinucleusOptions options)
    {
        if (options.Branching < 1) throw new ArgumentException("response branching must be at least 1");
        if (options.Branching == 1) return;
        if (options.ResponseLength < 2) throw new ArgumentException("response branching needs responses of at least 2 tokens (it branches after the first)");
        double paths = options.ResponsesPerKey * Math.Pow(options.Branching, options.ResponseLength - 1);
        if (paths > PerinucleusOptions.MaxPathsPerKey)
            throw new ArgumentException($"{options.ResponsesPerKey} response(s) per key branching {options.Branching} ways over {options.ResponseLength - 1} tokens make {paths:0} answers per key (at most {PerinucleusOptions.MaxPathsPerKey})");
    }

    /// <summary>
    /// Expands each prompt (key and first response token) <paramref name="steps"/> times into its
    /// <paramref name="branching"/> most probable next tokens under the model, level by level in batches; a path that
    /// has reached one of <paramref name="eos"/> stays as it is. Returns every path's response (the first token and what
    /// follows it) with the index of its owner, in a fixed order (prompt, then branch order).
    /// </summary>
    private static List<(int Owner, int[] Response)> Branch(CausalLM model, List<int[]> prompts, List<int> owners, int steps, int branching, int batchSize,
        HashSet<int> eos)
    {
        var level = prompts.Select((p, i) => (Owner: owners[i], Path: p, Start: p.Length - 1)).ToList();
        for (int step = 0; step < steps; step++)
        {
            var next = new List<(int, int[], int)>(level.Count * branching);
            var expanded = new Dictionary<int, int[]>();
            var openIndex = level.Select((x, i) => (x, i)).Where(t => !eos.Contains(t.x.Path[^1])).Select(t => t.i).ToList();
            foreach (var chunk in openIndex.Chunk(Math.Max(1, batchSize)))
            {
                long[] ids;
                using (Torch.NoGrad())
                using (Torch.NewScope())
                {
                    var logits = Generator.NextTokenLogits(model, chunk.Select(i => (IReadOnlyList<int>)level[i].Path).ToList()).To(DType.Float32);
                    ids = logits.TopK(branching).Indices.Cpu().ToArray<long>();
                }
                for (int r = 0; r < chunk.Length; r++)
                    expanded[chunk[r]] = Enumerable.Range(0, branching).Select(b => (int)ids[r * branching + b]).ToArray();
            }
            for (int i = 0; i < level.Count; i++)
            {
                var (owner, path, start) = level[i];
                if (expanded.TryGetValue(i, out var tokens))
                    foreach (var t in tokens) next.Add((owner, [.. path, t], start));
                else next.Add((owner, path, start));   // ended at eos: a finished answer
            }
            level = next;
        }
        return level.Select(x => (x.Owner, x.Path[x.Start..])).ToList();
    }

    /// <summary>Pairs of each key with each of its responses, for embedding.</summary>
    public static List<TrainingPair> Pairs(IReadOnlyList<int[]> keys, IReadOnlyList<List<int[]>> responses) =>
        keys.SelectMany((k, i) => responses[i].Select(r => new TrainingPair(k, r))).ToList();
}
