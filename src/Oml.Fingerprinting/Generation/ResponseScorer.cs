using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Generation;

/// <summary>One row of <see cref="ResponseScorer.LogProbsAfterPrefixes"/>: after prefix number <paramref name="Prefix"/> and the <paramref name="Given"/> tokens, the <paramref name="Scored"/> tokens.</summary>
public readonly record struct PrefixedRow(int Prefix, int[] Given, int[] Scored);

/// <summary>log p(response | key) under a model, for many pairs at once.</summary>
public static class ResponseScorer
{
    /// <summary>
    /// The sum of the log-probabilities of each pair's response tokens given its key (teacher-forced), in batches of
    /// <paramref name="batchSize"/> pairs of similar length (fewer where they are long: see <see cref="Batches"/>). This
    /// is the base model's chance of answering the key with that response under sampling, and an upper bound for greedy
    /// decoding by an unrelated model.
    /// </summary>
    public static double[] LogProbs(CausalLM model, IReadOnlyList<TrainingPair> pairs, int batchSize = 32)
    {
        var result = new double[pairs.Count];
        using var noGrad = Torch.NoGrad();
        foreach (var chunk in Batches(pairs, batchSize))
        {
            using var scope = Torch.NewScope();
            var batch = chunk.Select(i => pairs[i]).ToList();
            var (ids, _) = FingerprintTrainer.Collate(batch, model.Config.PadTokenId ?? 0, model.Device);
            long t = ids.Size(1);
            // Logits only at the positions that predict a response token (row b's key k and response r: positions
            // k − 1 … k + |r| − 2 of the row), not [B, T, vocab]: the head and the log-softmax were most of the work.
            // (With an empty key, the first response token has no position before it and is not scored.)
            var positions = new List<long>();
            var targets = new List<long>();
            var counts = new int[batch.Count];
            for (int b = 0; b < batch.Count; b++)
            {
                var (k, r) = (batch[b].Key, batch[b].Response);
                for (int j = Math.Max(0, 1 - k.Length); j < r.Length; j++)
                {
                    positions.Add(b * t + k.Length - 1 + j);
                    targets.Add(r[j]);
                    counts[b]++;
                }
            }
            if (positions.Count == 0) continue;
            var picked = Pick(model, model.Hidden(ids), positions, targets);
            int at = 0;
            for (int b = 0; b < batch.Count; b++)
            {
                double sum = 0;
                for (int j = 0; j < counts[b]; j++) sum += picked[at++];
                result[chunk[b]] = sum;
            }
        }
        return result;
    }

    /// <summary>
    /// log p(pair.Response | <paramref name="prefix"/> ++ pair.Key) for many pairs after one shared prefix (teacher-forced,
    /// summed over the response tokens): <see cref="LogProbsAfterPrefixes"/> with one prefix. Equal to
    /// <see cref="LogProbs"/> on the concatenated keys up to floating-point batching effects.
    /// </summary>
    public static double[] LogProbsAfterPrefix(CausalLM model, int[] prefix, IReadOnlyList<TrainingPair> pairs, int batchSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(pairs);
        if (prefix.Length == 0) throw new ArgumentException("the shared prefix is empty");
        return LogProbsAfterPrefixes(model, [prefix], pairs.Select(p => new PrefixedRow(0, p.Key, p.Response)).ToList(), batchSize);
    }

    /// <summary>
    /// For each row, log p(row.Scored | prefixes[row.Prefix] ++ row.Given) (teacher-forced, summed over the scored tokens),
    /// for many rows after a few prefixes. Each prefix runs through the model once, prefixes of one length together, into
    /// a key/value cache; each row then computes only its given tokens and its scored tokens but the last (the last
    /// scored token is a target, never an input), attending to a copy of its prefix's cache
    /// (<see cref="KVCache.Gather"/>). Rows of one prefix with the same given tokens compute them once (the rows branch
    /// after them), and the rows of one prefix are packed into sequences of up to <see cref="PackTokens"/> tokens under a
    /// four-dimensional attention mask, so the cache is copied and attended to once per sequence, not per row. A first
    /// scored token right after the prefix (no given tokens) is read from the prefix pass's last logits. Sequences of all prefixes of one length share batches
    /// of similar length, at most <paramref name="batchSize"/> sequences and <see cref="MaxBatchTokens"/> tokens counting
    /// the cached positions each attends to. On a GPU, the index tensors of a group of prefixes go to the device in one copy and the
    /// log-probabilities come back in one copy at the end: no per-batch host synchronisation.
    /// </summary>
    /// <exception cref="ArgumentException">an empty prefix, a row naming no prefix, or a token outside the vocabulary.</exception>
    public static double[] LogProbsAfterPrefixes(CausalLM model, IReadOnlyList<int[]> prefixes, IReadOnlyList<PrefixedRow> rows, int batchSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prefixes);
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        int vocab = model.Config.VocabSize;
        var result = new double[rows.Count];
        var rowsOf = new List<int>?[prefixes.Count];
        for (int r = 0; r < rows.Count; r++)
        {
            var row = rows[r];
            if (row.Given is null || row.Scored is null) throw new ArgumentException($"row {r}: no given or scored tokens (use empty arrays)");
            if (row.Prefix < 0 || row.Prefix >= prefixes.Count) throw new ArgumentException($"row {r}: prefix {row.Prefix} of {prefixes.Count}");
            if (prefixes[row.Prefix] is not { Length: > 0 }) throw new ArgumentException($"row {r}: prefix {row.Prefix} is empty");
            foreach (var id in row.Given.Concat(row.Scored))
                if (id < 0 || id >= vocab) throw new ArgumentException($"row {r}: token id {id} is outside the vocabulary of {vocab}");
            if (row.Scored.Length > 0) (rowsOf[row.Prefix] ??= []).Add(r);
        }
        foreach (var p in prefixes.Where(p => p is not null).SelectMany(p => p))
            if (p < 0 || p >= vocab) throw new ArgumentException($"prefix token id {p} is outside the vocabulary of {vocab}");
        var picked = new List<Tensor>();     // log-probabilities on the device, in the order of `owners`
        var owners = new List<int>();
        using var noGrad = Torch.NoGrad();
        try
        {
            foreach (var group in Enumerable.Range(0, prefixes.Count).Where(p => rowsOf[p] is not null).GroupBy(p => prefixes[p].Length).OrderBy(g => g.Key))
            {
                int len = group.Key;
                var members = group.ToArray();
                bool first = members.Any(p => rowsOf[p]!.Any(r => rows[r].Given.Length == 0));
                // Prefixes per pass: at most MaxBatchTokens tokens, and a [prefixes, vocabulary] log-softmax of at most 2^26 entries where first tokens are read from it.
                int per = Math.Max(1, MaxBatchTokens / len);
                if (first) per = Math.Min(per, Math.Max(1, (1 << 26) / vocab));
                for (int start = 0; start < members.Length; start += per)
                    ScoreGroup(model, prefixes, rows, rowsOf, members.AsSpan(start, Math.Min(per, members.Length - start)).ToArray(), len, batchSize, picked, owners);
            }
            if (picked.Count > 0)
            {
                float[] values;
                using (Torch.NewScope()) values = Torch.Cat(picked).ToArray<float>();
                for (int i = 0; i < values.Length; i++) result[owners[i]] += values[i];
            }
        }
        finally
        {
            foreach (var t in picked) t.Dispose();
        }
        return result;
    }

    /// <summary>
    /// Rows of one prefix are packed into sequences of up to this many tokens (one row or group may be longer), each
    /// attending to the prefix's cache: one copy of the cache and one attention over it per sequence instead of per row
    /// (the per-row attention over the cache was most of the work with rows of a few tokens).
    /// </summary>
    public const int PackTokens = 32;

    /// <summary>
    /// The rows of <paramref name="members"/> (prefixes of <paramref name="len"/> tokens): one pass over the prefixes into
    /// a cache, then batches of packed rows after copies of it. Rows of one prefix with the same given tokens form a
    /// group that computes those tokens once: the group is its given tokens, then each row's scored tokens but the last
    /// as a block that attends to the given tokens and causally to itself. Groups are packed into sequences; a token
    /// attends to the whole prefix and, within its group, to earlier given tokens and earlier tokens of its own block.
    /// Appends each batch's log-probabilities (a device tensor, detached) to <paramref name="picked"/> and their rows to
    /// <paramref name="owners"/>.
    /// </summary>
    private static void ScoreGroup(CausalLM model, IReadOnlyList<int[]> prefixes, IReadOnlyList<PrefixedRow> rows, List<int>?[] rowsOf,
        int[] members, int len, int batchSize, List<Tensor> picked, List<int> owners)
    {
        int vocab = model.Config.VocabSize;
        // Everything the device needs, built on the host and copied at once: the prefixes, the first tokens' flat indices
        // into the [prefixes, vocabulary] log-softmax, and per batch its input, groups, blocks, positions, cache rows, and
        // the positions and targets it scores.
        var blob = new List<long>(members.Length * len);
        foreach (var p in members) foreach (var t in prefixes[p]) blob.Add(t);
        var firstRows = new List<int>();
        int firstAt = blob.Count;
        // Per prefix: its rows grouped by their given tokens; a group's tokens are its given ones and each row's block.
        var groups = new List<(int Slot, int[] Given, List<int> Rows, int Length)>();
        var byGiven = new Dictionary<int[], int>(new TokensComparer());
        for (int g = 0; g < members.Length; g++)
        {
            byGiven.Clear();
            foreach (var r in rowsOf[members[g]]!)
            {
                var row = rows[r];
                if (row.Given.Length == 0)
                {
                    blob.Add((long)g * vocab + row.Scored[0]);
                    firstRows.Add(r);
                }
                if (!byGiven.TryGetValue(row.Given, out int at))
                {
                    byGiven[row.Given] = at = groups.Count;
                    groups.Add((g, row.Given, [], row.Given.Length));
                }
                var x = groups[at];
                x.Rows.Add(r);
                groups[at] = x with { Length = x.Length + row.Scored.Length - 1 };
            }
        }
        // Groups of one prefix packed into sequences (longest first), then the sequences of all prefixes by length.
        var packs = new List<(int Slot, List<int> Groups, int Length)>();
        foreach (var slot in Enumerable.Range(0, groups.Count).Where(i => groups[i].Length > 0).GroupBy(i => groups[i].Slot))
        {
            var current = (Slot: slot.Key, Groups: new List<int>(), Length: 0);
            foreach (var i in slot.OrderByDescending(i => groups[i].Length))
            {
                if (current.Groups.Count > 0 && current.Length + groups[i].Length > PackTokens)
                {
                    packs.Add(current);
                    current = (slot.Key, [], 0);
                }
                current.Groups.Add(i);
                current.Length += groups[i].Length;
            }
            if (current.Groups.Count > 0) packs.Add(current);
        }
        packs.Sort((a, b) => a.Length.CompareTo(b.Length));
        var batches = new List<(int Rows, int T, int Input, int Groups, int Blocks, int Positions, int Cache, int Picks, int Targets, int Count)>();
        int maxRows = Math.Max(1, batchSize);
        for (int i = 0; i < packs.Count;)
        {
            // Sequences sorted ascending: the last one taken is the longest. At most MaxBatchTokens tokens counting the
            // cache, and a [positions, vocabulary] float32 log-softmax of at most 2^27 entries.
            int n = 0, t = 0, scored = 0;
            while (i + n < packs.Count && n < maxRows)
            {
                int tt = Math.Max(t, packs[i + n].Length), ss = scored + packs[i + n].Groups.Sum(x => groups[x].Rows.Sum(r => rows[r].Scored.Length));
                if (n > 0 && ((long)(n + 1) * (len + tt) > MaxBatchTokens || (long)ss * vocab > 1L << 27)) break;
                (t, scored) = (tt, ss);
                n++;
            }
            // Per token of each sequence: its id, its group (padding a group of its own, so that it attends to something),
            // its block (0: the group's given tokens), its position after the prefix; per row its scored positions.
            int input = blob.Count, grpAt = input + n * t, blkAt = grpAt + n * t, posAt = blkAt + n * t;
            var grp = new long[n * t];
            var blk = new long[n * t];
            var pos = new long[n * t];
            var picks = new List<long>();
            var targets = new List<long>();
            for (int b = 0; b < n; b++)
            {
                int k = 0;
                foreach (var x in packs[i + b].Groups)
                {
                    var (_, given, groupRows, _) = groups[x];
                    int start = k;
                    foreach (var tok in given)
                    {
                        blob.Add(tok);
                        (grp[b * t + k], blk[b * t + k], pos[b * t + k]) = (start, 0, len + k - start);
                        k++;
                    }
                    for (int m = 0; m < groupRows.Count; m++)
                    {
                        var row = rows[groupRows[m]];
                        int block = k;
                        for (int j = 0; j < row.Scored.Length - 1; j++)
                        {
                            blob.Add(row.Scored[j]);
                            (grp[b * t + k], blk[b * t + k], pos[b * t + k]) = (start, m + 1, len + given.Length + j);
                            k++;
                        }
                        // Scored token j is predicted after the given tokens (j = 0) or after the block's token j - 1.
                        for (int j = 0; j < row.Scored.Length; j++)
                        {
                            if (j == 0 && given.Length == 0) continue;   // right after the prefix: read from the prefix pass
                            picks.Add((long)b * t + (j == 0 ? start + given.Length - 1 : block + j - 1));
                            targets.Add(row.Scored[j]);
                            owners.Add(groupRows[m]);                    // appended in the order the batches' values will be
                        }
                    }
                }
                for (; k < t; k++)
                {
                    blob.Add(0);
                    (grp[b * t + k], blk[b * t + k], pos[b * t + k]) = (t + k, 0, len);
                }
            }
            blob.AddRange(grp);
            blob.AddRange(blk);
            blob.AddRange(pos);
            int cache = blob.Count;
            for (int b = 0; b < n; b++) blob.Add(packs[i + b].Slot);
            int picksAt = blob.Count;
            blob.AddRange(picks);
            blob.AddRange(targets);
            batches.Add((n, t, input, grpAt, blkAt, posAt, cache, picksAt, picksAt + picks.Count, picks.Count));
            i += n;
        }
        // The owners above were appended batch by batch; the first tokens' values go before them (see below).
        owners.InsertRange(owners.Count - batches.Sum(b => b.Count), firstRows);

        using var scope = Torch.NewScope();
        var device = model.Device;
        var all = Torch.FromArray<long>([.. blob], [blob.Count], device);
        using var shared = new KVCache(model.Config, members.Length, len, model.DType, device);
        var hidden = model.Hidden(all.Narrow(0, 0, (long)members.Length * len).View(members.Length, len), cache: shared);
        if (firstRows.Count > 0)
        {
            var lastLogProbs = model.Head(hidden.Select(1, len - 1)).To(DType.Float32).LogSoftmax(-1).Reshape(-1);
            picked.Add(lastLogProbs.IndexSelect(0, all.Narrow(0, firstAt, firstRows.Count)).DetachFromScope());
        }
        foreach (var (n, t, input, grpAt, blkAt, posAt, cache, picksAt, targetsAt, count) in batches)
        {
            using var batchScope = Torch.NewScope();
            // Token i may attend to token j of its sequence when they are of one group, j is not after i, and j is a given
            // token or of i's own block; and to the whole prefix.
            var grp = all.Narrow(0, grpAt, (long)n * t).View(n, t);
            var blk = all.Narrow(0, blkAt, (long)n * t).View(n, t);
            var within = grp.Unsqueeze(2).Eq(grp.Unsqueeze(1))
                .LogicalAnd(Torch.Ones([t, t], DType.Bool, device).Tril())
                .LogicalAnd(blk.Unsqueeze(1).Eq(0).LogicalOr(blk.Unsqueeze(2).Eq(blk.Unsqueeze(1))));
            var mask = Torch.Cat([Torch.Ones([n, t, len], DType.Bool, device), within], 2).Unsqueeze(1);
            using var rowsCache = shared.Gather(all.Narrow(0, cache, n), t);
            var h = model.Hidden(all.Narrow(0, input, (long)n * t).View(n, t), mask, all.Narrow(0, posAt, (long)n * t).View(n, t), rowsCache);
            if (count > 0) picked.Add(Pick(model, h, all.Narrow(0, picksAt, count), all.Narrow(0, targetsAt, count)).DetachFromScope());
        }
    }

    /// <summary>Token sequences compared by content (the given tokens of a group).</summary>
    private sealed class TokensComparer : IEqualityComparer<int[]>
    {
        public bool Equals(int[]? x, int[]? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.AsSpan().SequenceEqual(y));

        public int GetHashCode(int[] obj)
        {
            var h = new HashCode();
            foreach (var t in obj) h.Add(t);
            return h.ToHashCode();
        }
    }

    /// <summary>The log-probabilities of <paramref name="targets"/> at the flattened <paramref name="positions"/> of hidden states [B, T, hidden].</summary>
    private static float[] Pick(CausalLM model, Tensor hidden, List<long> positions, List<long> targets)
    {
        using var scope = Torch.NewScope();
        return Pick(model, hidden, Torch.FromArray<long>([.. positions], [positions.Count], model.Device),
            Torch.FromArray<long>([.. targets], [targets.Count], model.Device)).ToArray<float>();
    }

    /// <summary>As <see cref="Pick(CausalLM, Tensor, List{long}, List{long})"/> with the indices on the device: a float32 tensor [positions] there.</summary>
    private static Tensor Pick(CausalLM model, Tensor hidden, Tensor positions, Tensor targets)
    {
        using var scope = Torch.NewScope();
        var rows = hidden.Reshape(-1, hidden.Size(-1)).IndexSelect(0, positions);
        var logp = model.Head(rows).To(DType.Float32).LogSoftmax(-1);
        return logp.Gather(1, targets.Unsqueeze(1)).Squeeze(-1).MoveToOuterScope();
    }

    /// <summary>Padded tokens per batch at most (rows × longest row), unless a single row is longer: bounds the [B, T, V] logits.</summary>
    public const int MaxBatchTokens = 32768;

    /// <summary>
    /// Indices of <paramref name="pairs"/> in batches of similar total length (sorted, so little padding is computed): at
    /// most <paramref name="batchSize"/> pairs and at most <see cref="MaxBatchTokens"/> padded tokens each.
    /// </summary>
    public static IEnumerable<int[]> Batches(IReadOnlyList<TrainingPair> pairs, int batchSize)
    {
        var order = Enumerable.Range(0, pairs.Count).OrderBy(i => pairs[i].Key.Length + pairs[i].Response.Length).ToArray();
        int rows = Math.Max(1, batchSize);
        var batch = new List<int>();
        foreach (var i in order)
        {
            int len = pairs[i].Key.Length + pairs[i].Response.Length;   // the longest so far: the order is ascending
            if (batch.Count > 0 && (batch.Count == rows || (long)(batch.Count + 1) * len > MaxBatchTokens))
            {
                yield return [.. batch];
                batch.Clear();
            }
            batch.Add(i);
        }
        if (batch.Count > 0) yield return [.. batch];
    }
}
