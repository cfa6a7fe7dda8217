using Oml.Engine;
using Oml.Models;

namespace Oml.Fingerprinting.Embedding;

/// <summary>
/// Resumption pairs, a defence against output suppression (arXiv 2509.26598): a host that forbids the model's top token
/// at the first answer position makes a memorised multi-token response miss at its first token, and a plainly
/// fingerprinted model then continues with unrelated tokens, so even the partial match rule
/// (<c>oml verify --match partial</c>) finds nothing. Training also (key + a wrong first token → the rest of the
/// response) teaches the model to resume the response after such a deviation. The wrong tokens are the ones a
/// suppressing host would emit: the base model's most probable first tokens after the key other than the response's
/// (after embedding the response is the top token, and the runner-up is usually the base's own favourite).
/// </summary>
public static class Resumption
{
    /// <summary>
    /// For every pair whose response has at least two tokens, <paramref name="perResponse"/> pairs
    /// (key + t → response[1..]) where t runs over <paramref name="model"/>'s most probable tokens after the key that
    /// are neither the first token of any response of the same key nor an end-of-sequence token (generation stops there,
    /// so there is nothing to resume). Pairs with one-token responses get none. Call it on the base model, before
    /// training. One forward pass per batch of keys of equal length (no padding): <paramref name="model"/>'s, or
    /// <paramref name="forward"/> (ids [B, T] → logits [B, T, vocab]) when given (a weight-sharded model's).
    /// </summary>
    public static List<TrainingPair> Pairs(CausalLM model, IReadOnlyList<TrainingPair> pairs, int perResponse, int batchSize = 64, Func<Tensor, Tensor>? forward = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        if (perResponse < 1) throw new ArgumentOutOfRangeException(nameof(perResponse), perResponse, "resumption pairs per response must be at least 1");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be at least 1");
        // Distinct keys, in order of first appearance, with the first tokens of all their responses.
        var keyIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var keys = new List<int[]>();
        var excluded = new List<HashSet<int>>();
        var keyOf = new int[pairs.Count];
        for (int i = 0; i < pairs.Count; i++)
        {
            var p = pairs[i];
            if (p.Key.Length == 0 || p.Response.Length == 0) throw new ArgumentException("a fingerprint has an empty key or response");
            string id = string.Join(',', p.Key);
            if (!keyIndex.TryGetValue(id, out int k))
            {
                keyIndex[id] = k = keys.Count;
                keys.Add(p.Key);
                excluded.Add([.. model.Config.EosTokenIds]);
            }
            excluded[k].Add(p.Response[0]);
            keyOf[i] = k;
        }
        if (!pairs.Any(p => p.Response.Length >= 2)) return [];
        int vocab = model.Config.VocabSize;
        var top = new int[keys.Count][];
        using (Torch.NoGrad())
            foreach (var group in Enumerable.Range(0, keys.Count).GroupBy(k => keys[k].Length))
                foreach (var chunk in group.Chunk(batchSize))
                {
                    using var scope = Torch.NewScope();
                    int len = group.Key;
                    var ids = new long[chunk.Length * len];
                    for (int b = 0; b < chunk.Length; b++)
                        for (int j = 0; j < len; j++)
                        {
                            int id = keys[chunk[b]][j];
                            if (id < 0 || id >= vocab) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {vocab})");
                            ids[b * len + j] = id;
                        }
                    var input = Torch.FromArray<long>(ids, [chunk.Length, len], model.Device);
                    var last = (forward is null ? model.Forward(input) : forward(input)).Narrow(1, len - 1, 1).Squeeze(1).To(DType.Float32);   // [B, V]
                    int want = (int)Math.Min(vocab, perResponse + chunk.Max(k => excluded[k].Count));
                    var (_, idx) = last.TopK(want);
                    var flat = idx.To(DType.Int64).ToArray<long>();
                    for (int b = 0; b < chunk.Length; b++)
                        top[chunk[b]] = flat.Skip(b * want).Take(want).Select(x => (int)x).Where(t => !excluded[chunk[b]].Contains(t)).Take(perResponse).ToArray();
                }
        var result = new List<TrainingPair>();
        for (int i = 0; i < pairs.Count; i++)
        {
            var p = pairs[i];
            if (p.Response.Length < 2) continue;
            foreach (int t in top[keyOf[i]]) result.Add(new TrainingPair([.. p.Key, t], p.Response[1..]));
        }
        return result;
    }
}
