using System.Security.Cryptography;
using Oml.Engine;

namespace Oml.Models.Training;

/// <summary>One supervised example as token ids: the model learns to continue <see cref="Prompt"/> with <see cref="Response"/>.</summary>
public sealed record SupervisedExample(int[] Prompt, int[] Response);

/// <summary>
/// One micro-batch, built on the host: <see cref="Inputs"/> and <see cref="Targets"/> are row-major [Rows, Length];
/// a target of −100 is not trained on. <see cref="Mask"/> (1 = token, 0 = padding) is null when no row is padded.
/// </summary>
public sealed record TrainingBatch(long[] Inputs, long[] Targets, long[]? Mask, int Rows, int Length)
{
    /// <summary>Positions with a target (the loss is a sum over these).</summary>
    public long LabelCount { get; } = Targets.LongCount(t => t != -100);

    /// <summary>
    /// The rows of this micro-batch that rank <paramref name="rank"/> of <paramref name="world"/> trains in data-parallel
    /// runs: a contiguous share (the first Rows mod world ranks get one more row); null when that share is empty.
    /// </summary>
    public TrainingBatch? Share(int rank, int world)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(world, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, world);
        if (world == 1) return this;
        int start = rank * (Rows / world) + Math.Min(rank, Rows % world);
        int count = Rows / world + (rank < Rows % world ? 1 : 0);
        if (count == 0) return null;
        long[] Cut(long[] a) => a.AsSpan(start * Length, count * Length).ToArray();
        return new TrainingBatch(Cut(Inputs), Cut(Targets), Mask is null ? null : Cut(Mask), count, Length);
    }

    /// <summary>Copies the batch to <paramref name="device"/>: one host-to-device copy per tensor.</summary>
    public (Tensor Inputs, Tensor Targets, Tensor? Mask) ToDevice(Device device) => (
        Torch.FromArray<long>(Inputs, [Rows, Length], device),
        Torch.FromArray<long>(Targets, [Rows, Length], device),
        Mask is null ? null : Torch.FromArray<long>(Mask, [Rows, Length], device));
}

/// <summary>
/// A training set that hands out the rows of any optimizer step on demand. The rows of a step depend only on the
/// seed and the step number (counter-based randomness: SplitMix64 of seed, epoch and row), so a resumed run needs no
/// generator state, and splitting a step into more micro-batches (gradient accumulation) trains the same rows.
/// </summary>
public abstract class TrainingData
{
    /// <summary>The micro-batches of optimizer step <paramref name="step"/> (0-based): batch × accumulation rows in all.</summary>
    public abstract TrainingBatch[] Step(long step, int batch, int accumulation);

    /// <summary>Optimizer steps in one pass over the data with this many rows per step.</summary>
    public abstract long StepsPerEpoch(int rowsPerStep);

    /// <summary>Fixed batches for held-out evaluation: at most <paramref name="maxRows"/> rows, in order.</summary>
    public abstract IEnumerable<TrainingBatch> EvaluationBatches(int batch, int maxRows);

    /// <summary>A digest of the data and its settings, for checkpoints (a resumed run must see the same data).</summary>
    public abstract string Digest { get; }

    /// <summary>SplitMix64 of (a, b, c): a well-mixed 64-bit value.</summary>
    internal static ulong Mix(ulong a, ulong b, ulong c = 0)
    {
        ulong z = a ^ (0x9E3779B97F4A7C15UL * (b + 1)) ^ (0xD1B54A32D192ED03UL * (c + 1));
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A permutation of 0..n−1 for one epoch (Fisher–Yates driven by <see cref="Mix"/>).</summary>
    internal static int[] Permutation(int n, ulong seed, long epoch)
    {
        var a = new int[n];
        for (int i = 0; i < n; i++) a[i] = i;
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)(Mix(seed, (ulong)epoch, (ulong)i) % (ulong)(i + 1));
            (a[i], a[j]) = (a[j], a[i]);
        }
        return a;
    }

    internal static string Hash(Action<IncrementalHash> fill)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        fill(h);
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}

/// <summary>How <see cref="PackedTokens"/> cuts windows out of its stream.</summary>
public enum PackedSampling
{
    /// <summary>Each row is a window at a uniformly random offset (overlapping windows, no notion of epoch).</summary>
    Random,
    /// <summary>The stream is cut into non-overlapping windows, visited in a new random order every epoch.</summary>
    Epochs,
}

/// <summary>
/// Next-token pretraining data: one long token stream (documents joined by an end-of-text token) from which rows of
/// <see cref="Context"/> inputs are cut; the targets are the inputs shifted by one, every position is trained.
/// </summary>
public sealed class PackedTokens : TrainingData
{
    private readonly int[] _tokens;
    private readonly ulong _seed;
    private (long Epoch, int[] Order)? _order;

    public PackedTokens(int[] tokens, int context, ulong seed = 0, PackedSampling sampling = PackedSampling.Random)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (context < 1) throw new ArgumentOutOfRangeException(nameof(context), context, "the context must be at least 1 token");
        if (tokens.Length < context + 1)
            throw new ArgumentException($"{tokens.Length} tokens are too few for windows of {context} (need at least {context + 1})", nameof(tokens));
        _tokens = tokens;
        Context = context;
        _seed = seed;
        Sampling = sampling;
    }

    public int Context { get; }
    public PackedSampling Sampling { get; }
    public int TokenCount => _tokens.Length;

    /// <summary>Non-overlapping windows of context + 1 tokens (inputs and the next token after the last).</summary>
    public int Windows => (_tokens.Length - 1) / Context;

    public override long StepsPerEpoch(int rowsPerStep) => Math.Max(1, (Windows + rowsPerStep - 1) / rowsPerStep);

    private int Start(long row)
    {
        if (Sampling == PackedSampling.Random)
            return (int)(Mix(_seed, (ulong)row, 0x52414E44) % (ulong)(_tokens.Length - Context));
        long epoch = row / Windows;
        if (_order is not { } o || o.Epoch != epoch) _order = o = (epoch, Permutation(Windows, _seed, epoch));
        return o.Order[row % Windows] * Context;
    }

    public override TrainingBatch[] Step(long step, int batch, int accumulation)
    {
        var result = new TrainingBatch[accumulation];
        long first = step * batch * accumulation;
        for (int m = 0; m < accumulation; m++)
        {
            var starts = new int[batch];
            for (int r = 0; r < batch; r++) starts[r] = Start(first + (long)m * batch + r);
            result[m] = Windowed(starts);
        }
        return result;
    }

    private TrainingBatch Windowed(int[] starts)
    {
        int t = Context;
        var inputs = new long[starts.Length * t];
        var targets = new long[starts.Length * t];
        for (int r = 0; r < starts.Length; r++)
            for (int j = 0; j < t; j++)
            {
                inputs[r * t + j] = _tokens[starts[r] + j];
                targets[r * t + j] = _tokens[starts[r] + j + 1];
            }
        return new TrainingBatch(inputs, targets, null, starts.Length, t);
    }

    public override IEnumerable<TrainingBatch> EvaluationBatches(int batch, int maxRows)
    {
        int rows = Math.Min(Windows, maxRows);
        for (int first = 0; first < rows; first += batch)
            yield return Windowed(Enumerable.Range(first, Math.Min(batch, rows - first)).Select(w => w * Context).ToArray());
    }

    public override string Digest => Hash(h =>
    {
        h.AppendData(System.Text.Encoding.UTF8.GetBytes($"packed;context={Context};seed={_seed};sampling={Sampling};n={_tokens.Length};"));
        h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_tokens.AsSpan()));
    });

    /// <summary>
    /// The <paramref name="index"/>-th of <paramref name="count"/> contiguous, equal slices of a token stream (0-based),
    /// for training models on disjoint parts of one corpus.
    /// </summary>
    public static int[] Slice(int[] tokens, int index, int count)
    {
        if (count < 1 || index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(index), $"data slice {index}/{count}: need 0 ≤ i < n");
        long from = tokens.LongLength * index / count, to = tokens.LongLength * (index + 1) / count;
        return tokens[(int)from..(int)to];
    }
}

/// <summary>
/// Supervised fine-tuning data: prompt and response, trained on the response tokens only. Examples are sorted by
/// length and cut into groups of one optimizer step each (so that little compute goes to padding); the group order
/// is shuffled every epoch. Rows are right-padded with an attention mask.
/// </summary>
public sealed class SupervisedData : TrainingData
{
    private readonly List<SupervisedExample> _examples;
    private readonly ulong _seed;
    private readonly int _padId;
    private (int Rows, int[][] Groups)? _groups;
    private (long Epoch, int[] Order)? _order;

    /// <param name="examples">The examples; prompt + response longer than <paramref name="maxLength"/> are cut at the end.</param>
    /// <param name="padId">Token id written into padding (never trained on, hidden by the mask).</param>
    /// <param name="maxLength">Most tokens of prompt + response per row.</param>
    /// <param name="seed">Seed of the group order.</param>
    public SupervisedData(IEnumerable<SupervisedExample> examples, int padId, int maxLength, ulong seed = 0)
    {
        if (maxLength < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "the maximum length must be at least 2");
        _examples = [];
        int dropped = 0;
        foreach (var e in examples)
        {
            if (e.Prompt.Length == 0 || e.Response.Length == 0) throw new ArgumentException("an example has an empty prompt or response");
            if (e.Prompt.Length >= maxLength) { dropped++; continue; }
            _examples.Add(e.Prompt.Length + e.Response.Length <= maxLength ? e : e with { Response = e.Response[..(maxLength - e.Prompt.Length)] });
        }
        if (_examples.Count == 0)
            throw new ArgumentException(dropped > 0 ? $"every prompt is at least {maxLength} tokens long: no response token fits" : "no examples");
        Dropped = dropped;
        _padId = padId;
        MaxLength = maxLength;
        _seed = seed;
    }

    public int Count => _examples.Count;
    public int MaxLength { get; }
    /// <summary>Examples left out because their prompt alone fills <see cref="MaxLength"/>.</summary>
    public int Dropped { get; }

    private int[][] Groups(int rows)
    {
        if (_groups is { } g && g.Rows == rows) return g.Groups;
        var order = Enumerable.Range(0, _examples.Count).OrderBy(i => _examples[i].Prompt.Length + _examples[i].Response.Length).ThenBy(i => i).ToArray();
        var groups = order.Chunk(rows).ToArray();
        _groups = (rows, groups);
        _order = null;
        return groups;
    }

    public override long StepsPerEpoch(int rowsPerStep) => Groups(rowsPerStep).Length;

    public override TrainingBatch[] Step(long step, int batch, int accumulation)
    {
        var groups = Groups(batch * accumulation);
        long epoch = step / groups.Length;
        if (_order is not { } o || o.Epoch != epoch) _order = o = (epoch, Permutation(groups.Length, _seed, epoch));
        var group = groups[o.Order[step % groups.Length]];
        // Split into micro-batches of `batch` rows (the last group of an epoch may be smaller).
        return group.Chunk(batch).Select(c => Collate(c.Select(i => _examples[i]).ToList(), _padId)).ToArray();
    }

    public override IEnumerable<TrainingBatch> EvaluationBatches(int batch, int maxRows)
    {
        var order = Enumerable.Range(0, Math.Min(maxRows, _examples.Count))
            .OrderBy(i => _examples[i].Prompt.Length + _examples[i].Response.Length).ThenBy(i => i).ToArray();
        foreach (var c in order.Chunk(batch)) yield return Collate(c.Select(i => _examples[i]).ToList(), _padId);
    }

    /// <summary>
    /// Right-padded rows of prompt + response: inputs are the sequence without its last token, targets the sequence
    /// shifted by one with −100 wherever the next token belongs to the prompt or is padding.
    /// </summary>
    public static TrainingBatch Collate(IReadOnlyList<SupervisedExample> rows, int padId)
    {
        int t = rows.Max(e => e.Prompt.Length + e.Response.Length) - 1;
        var inputs = new long[rows.Count * t];
        var targets = new long[rows.Count * t];
        var mask = new long[rows.Count * t];
        Array.Fill(inputs, padId);
        Array.Fill(targets, -100L);
        bool padded = false;
        for (int r = 0; r < rows.Count; r++)
        {
            var seq = rows[r].Prompt.Concat(rows[r].Response).ToArray();
            int p = rows[r].Prompt.Length;
            for (int j = 0; j < seq.Length - 1; j++)
            {
                inputs[r * t + j] = seq[j];
                mask[r * t + j] = 1;
                if (j + 1 >= p) targets[r * t + j] = seq[j + 1];
            }
            padded |= seq.Length - 1 < t;
        }
        return new TrainingBatch(inputs, targets, padded ? mask : null, rows.Count, t);
    }

    public override string Digest => Hash(h =>
    {
        h.AppendData(System.Text.Encoding.UTF8.GetBytes($"supervised;max={MaxLength};seed={_seed};pad={_padId};n={_examples.Count};"));
        foreach (var e in _examples)
        {
            h.AppendData(BitConverter.GetBytes(e.Prompt.Length));
            h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(e.Prompt.AsSpan()));
            h.AppendData(BitConverter.GetBytes(e.Response.Length));
            h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(e.Response.AsSpan()));
        }
    });
}
