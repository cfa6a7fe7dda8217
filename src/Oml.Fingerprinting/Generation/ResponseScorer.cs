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
            var (ids, labels) = FingerprintTrainer.Collate(batch, model.Config.PadTokenId ?? 0, model.Device);
            long t = ids.Size(1);
            var logp = model.Forward(ids).Narrow(1, 0, t - 1).To(DType.Float32).LogSoftmax(-1);
            var target = labels.Narrow(1, 1, t - 1);
            var mask = target.Ne(-100);
            var picked = logp.Gather(2, target.Clamp(min: 0).Unsqueeze(-1)).Squeeze(-1) * mask.To(DType.Float32);
            var sums = picked.Sum(1).ToArray<double>();
            for (int j = 0; j < chunk.Length; j++) result[chunk[j]] = sums[j];
        }
        return result;
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
