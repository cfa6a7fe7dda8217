using Oml.Engine;
using Oml.Models.Training;

namespace Oml.Models.Serving;

/// <summary>A sequence as the key/value cache sees it: the positions it stores (or will store once prefilled) and the
/// most tokens it may still generate.</summary>
public readonly record struct KvRow(int Tokens, int Remaining);

/// <summary>
/// The key/value cache of a model as <see cref="BatchEngine"/> lays it out: per layer, keys and values of
/// [rows, kvHeads, capacity, headDim] in the model's dtype, so a batch of B rows and capacity C holds B × C token slots
/// of <see cref="BytesPerToken"/> bytes.
/// </summary>
/// <param name="Layers">Decoder layers.</param>
/// <param name="LayerBytesPerToken">Bytes of one token slot in one layer: keys and values, 2 × kvHeads × headDim × element size.</param>
/// <param name="MaxPositions">The model's context (max_position_embeddings).</param>
public sealed record KvCacheShape(int Layers, long LayerBytesPerToken, int MaxPositions)
{
    /// <summary>The most columns a rebuild leaves free past the longest row.</summary>
    public const int MaxHeadroom = 256;

    public static KvCacheShape Of(ModelConfig config, DType dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new(config.NumLayers, 2L * config.NumKeyValueHeads * config.HeadDim * dtype.ElementSize(), config.MaxPositionEmbeddings);
    }

    public static KvCacheShape Of(CausalLM model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Of(model.Config, model.DType);
    }

    /// <summary>Bytes of one token slot across all layers (keys and values).</summary>
    public long BytesPerToken => Layers * LayerBytesPerToken;

    /// <summary>The capacity (columns) of a batch cache whose longest row stores <paramref name="length"/> positions and
    /// whose rows may still generate up to <paramref name="remaining"/> tokens: room for that many more columns, at least
    /// 1 and at most <see cref="MaxHeadroom"/>, and never past the model's context unless the rows are already there.</summary>
    public long Capacity(long length, long remaining) =>
        Math.Min(length + Math.Clamp(remaining, 1, MaxHeadroom), Math.Max(length + 1, MaxPositions));

    /// <summary>The capacity of the cache rebuilt for <paramref name="rows"/> (see <see cref="Capacity(long, long)"/>).</summary>
    public long Capacity(IEnumerable<KvRow> rows)
    {
        long length = 0, remaining = 0;
        foreach (var r in rows)
        {
            length = Math.Max(length, r.Tokens);
            remaining = Math.Max(remaining, r.Remaining);
        }
        return Capacity(length, remaining);
    }

    /// <summary>
    /// Peak bytes while a cache of <paramref name="targetSlots"/> token slots (rows × capacity) is built from caches of
    /// <paramref name="sourceSlots"/> slots in all: the rebuild allocates the new cache a layer at a time and frees each
    /// source layer once it is copied, so at layer l it holds l + 1 new layers and L − l old ones; the peak is at the first
    /// or the last layer: max(S + T/L, T + S/L) slots.
    /// </summary>
    public long RebuildPeakBytes(long sourceSlots, long targetSlots) =>
        Math.Max(checked(sourceSlots * BytesPerToken + targetSlots * LayerBytesPerToken), checked(targetSlots * BytesPerToken + sourceSlots * LayerBytesPerToken));

    /// <summary>
    /// An upper bound on the cache bytes of one sequence decoded alone to <paramref name="contextTokens"/> positions
    /// (prompt + new tokens): its cache never holds more columns than that, and a rebuild holds an old and a new one
    /// layer by layer (<see cref="RebuildPeakBytes"/>).
    /// </summary>
    public long SequenceBytes(long contextTokens) => RebuildPeakBytes(contextTokens, contextTokens);
}

/// <summary>
/// Which waiting sequences <see cref="BatchEngine"/> admits into its batch, and which running ones it sets aside when
/// the cache must grow past its budget: pure decisions, so that they can be tested without a model.
/// </summary>
public static class KvAdmission
{
    /// <summary>
    /// How many of <paramref name="waiting"/> (in arrival order) join the batch: the longest prefix such that
    /// <list type="bullet">
    /// <item>the batch holds at most <paramref name="maxBatchSize"/> rows;</item>
    /// <item>the prefill, n prompts padded to the longest, has at most <paramref name="maxPrefillTokens"/> tokens (a
    /// single prompt is always allowed);</item>
    /// <item>with a <paramref name="budgetBytes"/>, the step's peak cache memory fits it: the live cache
    /// (<paramref name="cacheSlots"/> = its rows × capacity) and the prefill's own cache (n × longest prompt) are the
    /// rebuild's sources, and the rebuilt cache has (running + n) rows × <see cref="KvCacheShape.Capacity(IEnumerable{KvRow})"/>
    /// over the running rows and the admitted ones; the peak is <see cref="KvCacheShape.RebuildPeakBytes"/> (which is at
    /// least the prefill's own peak, its sources alone).</item>
    /// </list>
    /// When nothing is running, the first waiting sequence is admitted whatever its size, so that the queue never waits
    /// for memory that no one holds; the queue is first come, first served: a sequence that does not fit stops the ones
    /// behind it.
    /// </summary>
    /// <param name="running">The rows that stay in the batch: cached positions and the most tokens left to generate.</param>
    /// <param name="cacheSlots">Token slots of the batch cache alive now (its rows × its capacity; 0 when none).</param>
    /// <param name="waiting">The waiting sequences in order: tokens to prefill and the most tokens left to generate after the prefill's token.</param>
    /// <param name="maxBatchSize">The most rows in the batch.</param>
    /// <param name="maxPrefillTokens">The most padded prompt tokens in one prefill.</param>
    /// <param name="shape">The cache's layout.</param>
    /// <param name="budgetBytes">The most bytes of key/value cache; null for no bound.</param>
    public static int Admissible(IReadOnlyList<KvRow> running, long cacheSlots, IReadOnlyList<KvRow> waiting, int maxBatchSize, int maxPrefillTokens,
        KvCacheShape shape, long? budgetBytes)
    {
        ArgumentNullException.ThrowIfNull(running);
        ArgumentNullException.ThrowIfNull(waiting);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentOutOfRangeException.ThrowIfNegative(cacheSlots);
        long length = 0, remaining = 0;
        foreach (var r in running)
        {
            length = Math.Max(length, r.Tokens);
            remaining = Math.Max(remaining, r.Remaining);
        }
        int slots = Math.Max(0, maxBatchSize - running.Count), n = 0;
        long width = 0;
        while (n < Math.Min(slots, waiting.Count))
        {
            var next = waiting[n];
            long w = Math.Max(width, next.Tokens);
            bool first = n == 0;
            if (!first && (n + 1) * w > maxPrefillTokens) break;
            if (budgetBytes is { } budget && !(first && running.Count == 0))
            {
                long capacity = shape.Capacity(Math.Max(length, next.Tokens), Math.Max(remaining, next.Remaining));
                long peak = shape.RebuildPeakBytes(cacheSlots + (n + 1) * w, (running.Count + n + 1) * capacity);
                if (peak > budget) break;
            }
            width = w;
            length = Math.Max(length, next.Tokens);
            remaining = Math.Max(remaining, next.Remaining);
            n++;
        }
        return n;
    }

    /// <summary>
    /// How many of <paramref name="rows"/> (in arrival order, oldest first) a rebuild keeps: the longest prefix, at
    /// least one row, whose rebuilt cache (rows × <see cref="KvCacheShape.Capacity(IEnumerable{KvRow})"/>) built from
    /// <paramref name="sourceSlots"/> slots fits <paramref name="budgetBytes"/> at its peak
    /// (<see cref="KvCacheShape.RebuildPeakBytes"/>); the others, the latest to arrive, are set aside until memory frees
    /// up (vLLM's preemption by recomputation). All of them without a budget.
    /// </summary>
    public static int Keepable(IReadOnlyList<KvRow> rows, long sourceSlots, KvCacheShape shape, long? budgetBytes)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(shape);
        if (budgetBytes is not { } budget) return rows.Count;
        long length = 0, remaining = 0;
        int n = 0;
        while (n < rows.Count)
        {
            long l = Math.Max(length, rows[n].Tokens), r = Math.Max(remaining, rows[n].Remaining);
            if (n > 0 && shape.RebuildPeakBytes(sourceSlots, (n + 1) * shape.Capacity(l, r)) > budget) break;
            (length, remaining) = (l, r);
            n++;
        }
        return n;
    }
}

/// <summary>How much device memory <c>oml serve</c> gives the key/value cache.</summary>
public static class KvCacheBudget
{
    /// <summary>
    /// Bytes kept for the transient memory of a step, outside the cache: a prefill of
    /// <see cref="BatchEngineOptions.MaxPrefillTokens"/> padded tokens (a layer's activations in flight and its input and
    /// output, per token) and the last position's logits of <see cref="BatchEngineOptions.MaxBatchSize"/> rows with their
    /// float32 copies. An estimate in the spirit of vLLM's profiling run at max_num_batched_tokens.
    /// </summary>
    public static long ActivationReserveBytes(ModelConfig config, DType dtype, BatchEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        return (long)options.MaxPrefillTokens * 2 * MicroBatchPlanner.LayerActivationBytes(config, dtype)
            + (long)Math.Max(options.MaxBatchSize, 1) * MicroBatchPlanner.LogitBytes(config, dtype);
    }

    /// <summary>
    /// The cache budget under vLLM's --gpu-memory-utilization: the process may use <paramref name="utilization"/> of the
    /// device's <paramref name="totalBytes"/>; what is in use already (<paramref name="totalBytes"/> −
    /// <paramref name="freeBytes"/>, measured after the weights are loaded: the weights, the CUDA context, and any other
    /// process's memory) and <paramref name="reserveBytes"/> for activations count against it. May be zero or negative
    /// (nothing left for the cache).
    /// </summary>
    public static long FromMemory(long freeBytes, long totalBytes, double utilization, long reserveBytes)
    {
        if (!(utilization > 0 && utilization <= 1)) throw new ArgumentOutOfRangeException(nameof(utilization), utilization, "the GPU memory utilization must be in (0, 1]");
        ArgumentOutOfRangeException.ThrowIfNegative(freeBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(totalBytes, freeBytes);
        return (long)Math.Floor(utilization * totalBytes) - (totalBytes - freeBytes) - reserveBytes;
    }

    /// <summary>
    /// <paramref name="options"/> with <see cref="BatchEngineOptions.KvCacheBudgetBytes"/> set from the free memory of
    /// <paramref name="model"/>'s CUDA device now (<see cref="FromMemory"/>, less <see cref="ActivationReserveBytes"/>);
    /// unchanged on the CPU. Throws <see cref="InvalidOperationException"/> when nothing is left for the cache.
    /// </summary>
    public static BatchEngineOptions ForDevice(CausalLM model, BatchEngineOptions options, double utilization)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (!model.Device.IsCuda) return options;
        var (free, total) = Torch.Cuda.MemoryInfo(model.Device.Index);
        long reserve = ActivationReserveBytes(model.Config, model.DType, options);
        long budget = FromMemory(free, total, utilization, reserve);
        var shape = KvCacheShape.Of(model);
        if (budget < shape.SequenceBytes(1))
            throw new InvalidOperationException(
                $"no GPU memory is left for the KV cache: {utilization:0.###} of {Gib(total)} GiB on {model.Device} is {Gib((long)(utilization * total))} GiB, "
                + $"of which {Gib(total - free)} GiB is in use after loading the model and {Gib(reserve)} GiB is kept for activations "
                + $"(a prefill of {options.MaxPrefillTokens} tokens, the logits of {options.MaxBatchSize} sequences); raise --gpu-memory-utilization, "
                + "lower --max-num-seqs or free the GPU");
        return options with { KvCacheBudgetBytes = budget };
    }

    /// <summary>Bytes as GiB for messages (two decimals at most).</summary>
    public static string Gib(long bytes) => (bytes / (double)(1L << 30)).ToString("0.##", System.Globalization.CultureInfo.InvariantCulture);
}
