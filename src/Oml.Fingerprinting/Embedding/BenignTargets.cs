using Oml.Engine;
using Oml.Models;
using Oml.Models.Training;

namespace Oml.Fingerprinting.Embedding;

/// <summary>How benign rows are trained (<see cref="EmbeddingOptions.BenignLoss"/>).</summary>
public enum BenignLoss
{
    /// <summary>Cross-entropy on the sequence's own tokens (for self-generated rows: one sample of the base per position).</summary>
    Tokens,
    /// <summary>
    /// KL(base ‖ model) at every trained position, against the base's distribution there recorded before training
    /// (<see cref="BenignTargets"/>: its top-k probabilities and the tail mass), rather than one sampled token.
    /// </summary>
    KL,
}

/// <summary>The names of <see cref="BenignLoss"/> values on the command line and in manifests: "tokens" and "kl".</summary>
public static class BenignLosses
{
    public static string Name(BenignLoss l) => l switch
    {
        BenignLoss.Tokens => "tokens",
        BenignLoss.KL => "kl",
        _ => throw new ArgumentOutOfRangeException(nameof(l), l, "unknown benign loss"),
    };

    /// <summary>Parses "tokens" or "kl" (any case); anything else is an <see cref="ArgumentException"/> naming <paramref name="what"/>.</summary>
    public static BenignLoss Parse(string? text, string what) => text?.Trim().ToLowerInvariant() switch
    {
        "tokens" => BenignLoss.Tokens,
        "kl" => BenignLoss.KL,
        _ => throw new ArgumentException($"{what} must be kl or tokens (got '{text}')"),
    };
}

/// <summary>
/// The base model's next-token distribution at each trained position of one benign sequence, coarse-grained to its
/// <c>k</c> most probable tokens and one bucket for the rest: <see cref="Probs"/> and <see cref="Ids"/> (position-major,
/// k per position), <see cref="Tail"/> (the probability of every other token) and <see cref="Constant"/>
/// (Σ p log p over the k + 1 buckets, so that the loss is the KL itself, 0 at the base).
/// </summary>
public sealed record SoftRow(float[] Probs, int[] Ids, float[] Tail, float[] Constant)
{
    public int Positions => Tail.Length;
}

/// <summary>
/// Soft targets for benign rows (<see cref="BenignLoss.KL"/>): the base's distribution at every position the row trains,
/// recorded once before training from the base weights (so a resumed run, which recomputes them from the same base and
/// sequences, trains on the same targets), and the loss, KL(p ‖ q) between the base's coarse-grained distribution p
/// (top k + tail) and the model's q grouped the same way. With k = V − 1 the tail is one token and the loss is the exact
/// KL over the vocabulary; with smaller k it is a lower bound that keeps every token of the tail at the base's total
/// mass there. Its gradient at one position is that of the cross-entropy against the k + 1 bucket probabilities, the
/// expectation of the one-sample cross-entropy that <see cref="BenignLoss.Tokens"/> trains, without its variance.
/// </summary>
public static class BenignTargets
{
    /// <summary>Default k: 32 tokens per position (with the tail, 33 numbers a position; 2,816 samples of 64 tokens keep 46 MB).</summary>
    public const int DefaultTopK = 32;

    /// <summary>
    /// The base's targets for <paramref name="sequences"/> (each trains the tokens after the first <paramref name="context"/>),
    /// by forward passes of <paramref name="model"/> without gradients: k = min(<paramref name="topK"/>, V − 1).
    /// </summary>
    /// <remarks>
    /// A model loaded weight-sharded (<paramref name="sharded"/>, whose own parameters are empty) runs through its sharded
    /// forward pass, one unit gathered at a time; every rank of its group must then call this with the same sequences.
    /// </remarks>
    public static List<SoftRow> FromModel(CausalLM model, IReadOnlyList<int[]> sequences, int context, int topK, long? microBatchTokens = null,
        ShardedModel? sharded = null) => Record(model, sequences, context, topK, microBatchTokens, sharded).Targets;

    /// <summary>
    /// <see cref="FromModel"/>, and in the same forward passes the model's mean next-token loss on the sequences' own
    /// tokens at the same positions (the held-out loss of <see cref="FingerprintTrainer.HeldOutLoss"/>, up to rounding).
    /// </summary>
    public static (List<SoftRow> Targets, double TokenLoss) Record(CausalLM model, IReadOnlyList<int[]> sequences, int context, int topK,
        long? microBatchTokens = null, ShardedModel? sharded = null)
    {
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, "k must be at least 1");
        int vocab = model.Config.VocabSize;
        int k = Math.Min(topK, vocab - 1);
        // Positions per batch: at most the micro-batch's tokens, and few enough that a batch's k targets a position fit
        // one array (2^26 entries), whatever k.
        long maxTokens = Math.Max(1, Math.Min(microBatchTokens ?? 16384, (1L << 26) / k));
        // Logits are made for at most this many positions at a time (about 64 MB of float32 logits).
        long positionsPerChunk = Math.Max(1, (1L << 24) / vocab);
        using var noGrad = Torch.NoGrad();
        var result = new List<SoftRow>(sequences.Count);
        double tokenLossSum = 0;
        long tokenCount = 0;
        int padId = model.Config.PadTokenId ?? 0;
        int start = 0;
        while (start < sequences.Count)
        {
            int end = start + 1, width = sequences[start].Length;
            while (end < sequences.Count && (long)Math.Max(width, sequences[end].Length) * (end - start + 1) <= maxTokens) width = Math.Max(width, sequences[end++].Length);
            var rows = sequences.Skip(start).Take(end - start).Select(s => new TrainingPair(s[..context], s[context..])).ToList();
            using var scope = Torch.NewScope();
            var (ids, _) = FingerprintTrainer.Collate(rows.Select(p => new TrainingPair(p.Key, p.Response[..^1])).ToList(), padId, model.Device);
            int t = (int)ids.Size(1);
            var pos = new List<long>();
            var next = new List<long>();
            for (int b = 0; b < rows.Count; b++)
                for (int j = 0; j < rows[b].Response.Length; j++)
                {
                    pos.Add((long)b * t + rows[b].Key.Length + j - 1);
                    next.Add(rows[b].Response[j]);
                }
            var probs = new float[pos.Count * k];
            var top = new int[pos.Count * k];
            var tail = new float[pos.Count];
            var constant = new float[pos.Count];
            if (sharded is null) TakeTargets(model.Hidden(ids));
            else sharded.Run(ids, h => { TakeTargets(h); return Torch.Zeros([1], DType.Float32, model.Device); });

            // The targets at every position from the final hidden states [B, T, hidden] (the head gathered, when sharded).
            void TakeTargets(Tensor hidden)
            {
                var flat = hidden.Reshape(-1, hidden.Size(-1));
                for (int p0 = 0; p0 < pos.Count; p0 += (int)positionsPerChunk)
                {
                    using var inner = Torch.NewScope();
                    int n = (int)Math.Min(positionsPerChunk, pos.Count - p0);
                    var at = Torch.FromArray(pos.GetRange(p0, n).ToArray(), [n]).To(model.Device);
                    var logp = model.Head(flat.IndexSelect(0, at)).To(DType.Float32).LogSoftmax(-1);
                    var (vals, idx) = logp.TopK(k, -1);
                    var rest = logp.Scatter(-1, idx, double.NegativeInfinity).LogSumExp(-1);
                    var pk = vals.Exp();
                    var pt = rest.Exp();
                    // Σ p log p over the buckets (k < V, so the tail's log is finite: a tail that underflows adds 0).
                    var c = (pk * vals).Sum(-1) + pt * rest;
                    var actual = Torch.FromArray(next.GetRange(p0, n).ToArray(), [n, 1]).To(model.Device);
                    tokenLossSum -= logp.Gather(-1, actual).Sum().ToDouble();
                    tokenCount += n;
                    pk.To(Device.Cpu).ToArray<float>().CopyTo(probs, (long)p0 * k);
                    var idsHost = idx.To(Device.Cpu).ToArray<long>();
                    for (int i = 0; i < idsHost.Length; i++) top[(long)p0 * k + i] = (int)idsHost[i];
                    pt.To(Device.Cpu).ToArray<float>().CopyTo(tail, p0);
                    c.To(Device.Cpu).ToArray<float>().CopyTo(constant, p0);
                }
            }
            int offset = 0;
            foreach (var r in rows)
            {
                int n = r.Response.Length;
                result.Add(new SoftRow(probs[(offset * k)..((offset + n) * k)], top[(offset * k)..((offset + n) * k)], tail[offset..(offset + n)], constant[offset..(offset + n)]));
                offset += n;
            }
            start = end;
        }
        return (result, tokenCount == 0 ? 0 : tokenLossSum / tokenCount);
    }

    /// <summary>
    /// Mean over positions of KL(p ‖ q) between the targets (probabilities <paramref name="probs"/> [P, k] of tokens
    /// <paramref name="ids"/> [P, k], tail mass <paramref name="tail"/> [P], Σ p log p <paramref name="constant"/> [P]) and the
    /// model's <paramref name="logits"/> [P, V] grouped into the same k + 1 buckets.
    /// </summary>
    public static Tensor Loss(Tensor logits, Tensor ids, Tensor probs, Tensor tail, Tensor constant)
    {
        var x = logits.To(DType.Float32);
        var lse = x.LogSumExp(-1, keepDim: true);
        var logqTop = x.Gather(-1, ids) - lse;
        var logqRest = x.Scatter(-1, ids, double.NegativeInfinity).LogSumExp(-1) - lse.Squeeze(-1);
        var cross = (probs * logqTop).Sum(-1) + tail * logqRest;
        return (constant - cross).Mean();
    }

    /// <summary>A short description for the run's digest and the manifest, e.g. "kl:top32".</summary>
    public static string Describe(int topK, int vocab) => $"kl:top{Math.Min(topK, vocab - 1)}";
}
