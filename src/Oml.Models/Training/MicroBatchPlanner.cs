using Oml.Engine;

namespace Oml.Models.Training;

/// <summary>
/// How one optimizer step's rows are cut into forward/backward passes: at most <see cref="Tokens"/> padded tokens per
/// micro-batch, with or without activation checkpointing, and the estimate it rests on.
/// </summary>
public sealed record MicroBatchPlan(long Tokens, bool Checkpoint, long BytesPerToken, long BudgetBytes)
{
    /// <summary>A size in bytes for messages: MiB below 1 GiB, else GiB (one decimal).</summary>
    public static string Size(long bytes) => bytes < 1L << 30 && bytes > 0
        ? $"{bytes / (double)(1L << 20):F1} MiB"
        : $"{bytes / (double)(1L << 30):F1} GiB";

    public override string ToString() =>
        $"micro-batches of up to {Tokens:N0} tokens{(Checkpoint ? ", activation checkpointing per layer" : "")} (~{BytesPerToken / 1024.0:F0} KiB a token" +
        (BudgetBytes > 0 ? $" of {BudgetBytes / (double)(1L << 30):F1} GiB)" : ", no memory budget: not planned from free memory)");
}

/// <summary>
/// The memory left for a pass's activations cannot hold one row, and rows are never split across micro-batches: a plan
/// made anyway would run every row alone beyond its budget (slowly, and out of memory at the first larger pass). Thrown
/// by <see cref="MicroBatchPlanner.Plan"/> and <see cref="MicroBatchPlanner.ForwardTokens"/> before any training, with
/// what one row needs and what was left.
/// </summary>
public sealed class InsufficientDeviceMemoryException(string message, long rowTokens, long rowBytes, long budgetBytes, bool checkpoint,
    bool checkpointWouldFit, Exception? inner = null) : InvalidOperationException(message, inner)
{
    /// <summary>Tokens of the longest row.</summary>
    public long RowTokens { get; } = rowTokens;
    /// <summary>Bytes that row needs for its activations in the mode planned (<see cref="Checkpoint"/>).</summary>
    public long RowBytes { get; } = rowBytes;
    /// <summary>Bytes left for activations.</summary>
    public long BudgetBytes { get; } = budgetBytes;
    /// <summary>Whether the need was estimated with activation checkpointing.</summary>
    public bool Checkpoint { get; } = checkpoint;
    /// <summary>Checkpointing was forced off, and with it on the row would fit.</summary>
    public bool CheckpointWouldFit { get; } = checkpointWouldFit;
}

/// <summary>
/// Sizes training micro-batches from the device memory that is free, so that the optimizer-step schedule (set by the
/// batch size alone) never depends on what fits: a batch that does not fit runs as several micro-batches whose
/// gradients accumulate into the one step, and when even that would make micro-batches too small to keep the device
/// busy, the layers' activations are recomputed in the backward pass (checkpointing) instead of being kept.
/// The estimate counts, per token, what the backward pass keeps of each decoder layer of a Llama-family block
/// (projections, rotary products, repeated keys and values, attention output, the SwiGLU tensors, float32 norm
/// inputs) and the vocabulary-wide logits of the positions that carry a label; it is deliberately generous.
/// </summary>
public static class MicroBatchPlanner
{
    /// <summary>Below this many tokens a micro-batch leaves matrix units idle; checkpointing is preferred then.</summary>
    public const long EfficientTokens = 4_096;

    /// <summary>Largest micro-batch planned, however much memory is free.</summary>
    public const long MaxTokens = 1L << 20;

    /// <summary>Bytes one token keeps for the backward pass of one decoder layer (no checkpointing).</summary>
    public static long LayerActivationBytes(ModelConfig c, DType dtype)
    {
        long e = dtype.ElementSize();
        long h = c.HiddenSize, q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, m = c.IntermediateSize;
        // residual input, two normed inputs, attention output and its projection input, the residual sum: ~6h;
        // q and k through the rotary products (~3 tensors each) and k, v repeated to every head: ~8q; k and v: 2kv;
        // gate, up, silu(gate), silu(gate)·up: 4m; RMSNorm's float32 copies of its two inputs: 8h bytes.
        return e * (6 * h + 8 * q + 2 * kv + 4 * m) + 8 * h;
    }

    /// <summary>Bytes one labelled position costs in logits: the logits, their float32 copy, log-softmax and gradients.</summary>
    public static long LogitBytes(ModelConfig c, DType dtype) => (long)c.VocabSize * (2 * dtype.ElementSize() + 12);

    /// <summary>
    /// Bytes per token of one forward/backward pass: with <paramref name="checkpoint"/>, each layer's kept input plus
    /// two layers' activations (the one being recomputed and its gradients); without, every layer's activations plus one
    /// layer's worth of gradients in flight. <paramref name="labelledShare"/> is the share of positions that need logits.
    /// </summary>
    public static long BytesPerToken(ModelConfig c, DType dtype, bool checkpoint, double labelledShare)
    {
        if (labelledShare is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(labelledShare), labelledShare, "must be in [0, 1]");
        long layer = LayerActivationBytes(c, dtype);
        long body = checkpoint ? (long)c.NumLayers * c.HiddenSize * dtype.ElementSize() + 2 * layer : (c.NumLayers + 1) * layer;
        return body + (long)Math.Ceiling(labelledShare * LogitBytes(c, dtype));
    }

    /// <summary>
    /// Memory left for activations out of <paramref name="freeBytes"/>: less <paramref name="pendingBytes"/> (gradients and
    /// optimizer state not yet allocated), a reserve for the libraries' workspaces and fragmentation (1 GiB or 5 % of
    /// <paramref name="totalBytes"/>, whichever is larger), and 15 % of the rest as a margin on the estimate.
    /// </summary>
    public static long Budget(long freeBytes, long totalBytes, long pendingBytes)
    {
        long reserve = Math.Max(1L << 30, totalBytes / 20);
        long left = freeBytes - pendingBytes - reserve;
        return left <= 0 ? 0 : (long)(left * 0.85);
    }

    /// <summary>
    /// The plan for a batch of <paramref name="batchTokens"/> padded tokens within <paramref name="budgetBytes"/>, whose
    /// longest row has <paramref name="rowTokens"/> tokens (a row is never split: every micro-batch holds at least one).
    /// <paramref name="checkpoint"/> forces checkpointing on or off; null chooses: off when the batch fits in one plain
    /// pass or plain micro-batches would still hold <see cref="EfficientTokens"/> and one row, on otherwise.
    /// Throws <see cref="InsufficientDeviceMemoryException"/> when the budget cannot hold one row in the mode chosen
    /// (with null: not even with checkpointing).
    /// </summary>
    public static MicroBatchPlan Plan(ModelConfig c, DType dtype, long budgetBytes, long batchTokens, double labelledShare, bool? checkpoint = null,
        long rowTokens = 1)
    {
        if (batchTokens < 1) throw new ArgumentOutOfRangeException(nameof(batchTokens), batchTokens, "must be positive");
        if (rowTokens < 1) throw new ArgumentOutOfRangeException(nameof(rowTokens), rowTokens, "must be positive");
        long plainPer = BytesPerToken(c, dtype, false, labelledShare);
        long ckPer = BytesPerToken(c, dtype, true, labelledShare);
        long plain = Math.Max(0, budgetBytes) / plainPer;
        long ck = Math.Max(0, budgetBytes) / ckPer;
        // Checkpointing needs less per token in every configuration: auto turns it on whenever a plain row does not fit.
        bool useCk = checkpoint ?? (plain < rowTokens || (plain < Math.Min(batchTokens, EfficientTokens) && ck > plain));
        long fit = useCk ? ck : plain, per = useCk ? ckPer : plainPer;
        if (fit < rowTokens)
            throw new InsufficientDeviceMemoryException(
                $"{MicroBatchPlan.Size(Math.Max(0, budgetBytes))} left for activations is less than one row needs (~{MicroBatchPlan.Size(rowTokens * per)} for {rowTokens:N0} tokens" +
                (useCk ? ", with activation checkpointing)" : ")"),
                rowTokens, rowTokens * per, Math.Max(0, budgetBytes), useCk, checkpointWouldFit: !useCk && ck >= rowTokens);
        return new MicroBatchPlan(Math.Min(fit, MaxTokens), useCk, per, budgetBytes);
    }

    /// <summary>
    /// Bytes per token of a forward pass without gradients that computes the logits of every position (a held-out
    /// measurement): a layer's activations in flight and its input and output, and the logits with their float32 copies.
    /// </summary>
    public static long ForwardBytesPerToken(ModelConfig c, DType dtype) => 2 * LayerActivationBytes(c, dtype) + LogitBytes(c, dtype);

    /// <summary>
    /// Most padded tokens of one forward pass without gradients (<see cref="ForwardBytesPerToken"/>) within
    /// <paramref name="budgetBytes"/>, at most <see cref="MaxTokens"/>; throws <see cref="InsufficientDeviceMemoryException"/>
    /// when that is less than one row of <paramref name="rowTokens"/> tokens.
    /// </summary>
    public static long ForwardTokens(ModelConfig c, DType dtype, long budgetBytes, long rowTokens)
    {
        if (rowTokens < 1) throw new ArgumentOutOfRangeException(nameof(rowTokens), rowTokens, "must be positive");
        long per = ForwardBytesPerToken(c, dtype);
        long fit = Math.Max(0, budgetBytes) / per;
        if (fit < rowTokens)
            throw new InsufficientDeviceMemoryException(
                $"{MicroBatchPlan.Size(Math.Max(0, budgetBytes))} left for activations is less than one row's forward pass needs (~{MicroBatchPlan.Size(rowTokens * per)} for {rowTokens:N0} tokens)",
                rowTokens, rowTokens * per, Math.Max(0, budgetBytes), checkpoint: false, checkpointWouldFit: false);
        return Math.Min(fit, MaxTokens);
    }
}
