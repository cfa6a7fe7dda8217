using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Generation;

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
    /// summed over the response tokens): the prefix but its last token runs through the model once into a key/value
    /// cache, which every batch repeats, so each row computes only its own 1 + |key| + |response| tokens. Equal to
    /// <see cref="LogProbs"/> on the concatenated keys up to floating-point batching effects.
    /// </summary>
    public static double[] LogProbsAfterPrefix(CausalLM model, int[] prefix, IReadOnlyList<TrainingPair> pairs, int batchSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(pairs);
        if (prefix.Length == 0) throw new ArgumentException("the shared prefix is empty");
        var result = new double[pairs.Count];
        if (pairs.Count == 0) return result;
        using var noGrad = Torch.NoGrad();
        int cached = prefix.Length - 1, pad = model.Config.PadTokenId ?? 0;
        // Each row's tail: the prefix's last token, its key, its response; right padding (causal attention never lets a
        // real token see the padding after it) and positions that continue the cache's.
        var tails = pairs.Select(p => new TrainingPair([prefix[^1], .. p.Key], p.Response)).ToList();
        using var shared = new KVCache(model.Config, 1, Math.Max(cached, 1), model.DType, model.Device);
        if (cached > 0)
            using (Torch.NewScope())
                model.Hidden(Torch.FromArray<long>([.. prefix[..cached].Select(t => (long)t)], [1, cached], model.Device), cache: shared);
        // Batches: rows of similar length, at most MaxBatchTokens tokens counting the cached positions each row attends to.
        int rows = Math.Max(1, batchSize);
        foreach (var chunk in Batches(tails, rows, cached))
        {
            using var scope = Torch.NewScope();
            var batch = chunk.Select(i => tails[i]).ToList();
            int t = batch.Max(p => p.Key.Length + p.Response.Length);
            var data = new long[batch.Count * t];
            Array.Fill(data, pad);
            var positions = new List<long>();
            var targets = new List<long>();
            var counts = new int[batch.Count];
            for (int b = 0; b < batch.Count; b++)
            {
                var (k, r) = (batch[b].Key, batch[b].Response);
                for (int j = 0; j < k.Length; j++) data[b * t + j] = k[j];
                for (int j = 0; j < r.Length; j++) data[b * t + k.Length + j] = r[j];
                for (int j = 0; j < r.Length; j++)
                {
                    positions.Add(b * t + k.Length - 1 + j);
                    targets.Add(r[j]);
                    counts[b]++;
                }
            }
            if (positions.Count == 0) continue;
            using var cache = shared.Repeat(batch.Count, t);
            var hidden = model.Hidden(Torch.FromArray<long>(data, [batch.Count, t], model.Device), cache: cache);
            var picked = Pick(model, hidden, positions, targets);
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

    /// <summary>The log-probabilities of <paramref name="targets"/> at the flattened <paramref name="positions"/> of hidden states [B, T, hidden].</summary>
    private static float[] Pick(CausalLM model, Tensor hidden, List<long> positions, List<long> targets)
    {
        var rows = hidden.Reshape(-1, hidden.Size(-1)).IndexSelect(0, Torch.FromArray<long>([.. positions], [positions.Count], model.Device));
        var logp = model.Head(rows).To(DType.Float32).LogSoftmax(-1);
        return logp.Gather(1, Torch.FromArray<long>([.. targets], [targets.Count, 1], model.Device)).Squeeze(-1).ToArray<float>();
    }

    /// <summary>Padded tokens per batch at most (rows × longest row), unless a single row is longer: bounds the [B, T, V] logits.</summary>
    public const int MaxBatchTokens = 32768;

    /// <summary>
    /// Indices of <paramref name="pairs"/> in batches of similar total length (sorted, so little padding is computed): at
    /// most <paramref name="batchSize"/> pairs and at most <see cref="MaxBatchTokens"/> padded tokens each.
    /// </summary>
    public static IEnumerable<int[]> Batches(IReadOnlyList<TrainingPair> pairs, int batchSize) => Batches(pairs, batchSize, 0);

    /// <summary><see cref="Batches(IReadOnlyList{TrainingPair}, int)"/> for rows that each also attend to <paramref name="cached"/> positions.</summary>
    private static IEnumerable<int[]> Batches(IReadOnlyList<TrainingPair> pairs, int batchSize, int cached)
    {
        var order = Enumerable.Range(0, pairs.Count).OrderBy(i => pairs[i].Key.Length + pairs[i].Response.Length).ToArray();
        int rows = Math.Max(1, batchSize);
        var batch = new List<int>();
        foreach (var i in order)
        {
            int len = cached + pairs[i].Key.Length + pairs[i].Response.Length;   // the longest so far: the order is ascending
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
