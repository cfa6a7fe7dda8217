using System.Diagnostics;
using Oml.Engine;

namespace Oml.Models;

/// <summary>How to decode. Greedy unless <see cref="Temperature"/> is set; the sampling filters apply in the order
/// transformers applies them: temperature, top-k, top-p, min-p.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 32;
    /// <summary>Sampling temperature; null means greedy decoding.</summary>
    public double? Temperature { get; init; }
    public int? TopK { get; init; }
    public double? TopP { get; init; }
    public double? MinP { get; init; }
    /// <summary>
    /// Seeds a random generator of the call's own (<see cref="RandomGenerator"/>, on the model's device) that every
    /// sampled token is drawn from, so that a seeded run repeats exactly whatever other threads draw meanwhile. Without a
    /// seed, sampling draws from libtorch's global generator.
    /// </summary>
    public ulong? Seed { get; init; }
    /// <summary>Token ids that end a sequence (included in its output). Defaults to the model's eos ids.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }
    /// <summary>Strings that end a sequence once its decoded output contains one (needs a decoder).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Id used to pad prompts on the left and finished sequences on the right. Defaults to the model's pad id, else 0.</summary>
    public int? PadTokenId { get; init; }
    /// <summary>
    /// Changes the next-token logits before a token is chosen: called at every step with float32 logits [batch, vocab]
    /// (the last position of each row) and the step index (0 for the first new token); returns the logits to choose from
    /// (e.g. with forbidden tokens set to −∞). Tensors it creates are disposed after the step.
    /// </summary>
    public Func<Tensor, int, Tensor>? LogitsProcessor { get; init; }

    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentException("max new tokens must be at least 0");
        if (Temperature is <= 0) throw new ArgumentException("temperature must be positive (omit it for greedy decoding)");
        if (TopK is < 1) throw new ArgumentException("top-k must be at least 1");
        if (TopP is <= 0 or > 1) throw new ArgumentException("top-p must be in (0, 1]");
        if (MinP is < 0 or > 1) throw new ArgumentException("min-p must be in [0, 1]");
    }
}

/// <summary>One prompt's result: the new tokens only (up to and including a stop token) and their text.</summary>
public sealed record GeneratedSequence(int[] OutputIds, string? Text, string FinishReason);

public sealed record GenerationResult(IReadOnlyList<GeneratedSequence> Sequences, int GeneratedTokens, double Seconds)
{
    /// <summary>New tokens per second over the whole batch (prompt processing included in the time).</summary>
    public double TokensPerSecond => Seconds > 0 ? GeneratedTokens / Seconds : 0;
}

/// <summary>Batched generation with left padding and a key/value cache.</summary>
public static class Generator
{
    /// <summary>
    /// The logits of the token after each prompt, [B, V] in the model's dtype: one forward pass over the prompts
    /// left-padded to a common length, with an attention mask and positions that count real tokens only, so each row's
    /// logits are those of the prompt run alone (up to floating-point batching effects). No KV cache is kept.
    /// </summary>
    public static Tensor NextTokenLogits(CausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        if (prompts.Count == 0) throw new ArgumentException("no prompts");
        if (prompts.Any(p => p.Count == 0)) throw new ArgumentException("a prompt is empty");
        int n = prompts.Count, width = prompts.Max(p => p.Count), pad = model.Config.PadTokenId ?? 0;
        var ids = new long[n * width];
        var mask = new long[n * width];
        Array.Fill(ids, pad);
        for (int r = 0; r < n; r++)
        {
            int off = width - prompts[r].Count;
            for (int j = 0; j < prompts[r].Count; j++) { ids[r * width + off + j] = prompts[r][j]; mask[r * width + off + j] = 1; }
        }
        using var scope = Torch.NewScope();
        var input = Torch.FromArray<long>(ids, [n, width], model.Device);
        // The head runs on the last position only ([n, hidden] × [hidden, vocab], not [n, width, vocab]); prompts of one
        // length need no mask (plain causal attention, SDPA's flash kernel) and take the default positions 0..width-1.
        if (prompts.All(p => p.Count == width))
            return LastLogits(model, model.Hidden(input)).MoveToOuterScope();
        var m = Torch.FromArray<long>(mask, [n, width], model.Device);
        var positions = (m.CumSum(1) - 1).MaskedFill(m.Eq(0), 1);
        return LastLogits(model, model.Hidden(input, m, positions)).MoveToOuterScope();
    }

    /// <summary>The logits at the last position of final hidden states [B, T, hidden]: [B, vocab].</summary>
    public static Tensor LastLogits(CausalLM model, Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(hidden);
        return model.Head(hidden.Select(1, hidden.Size(1) - 1));
    }

    public static GenerationResult Generate(CausalLM model, IReadOnlyList<int[]> prompts, GenerationOptions options,
        Func<int[], string>? decode = null) => Generate(model, prompts, options, decode, null);

    /// <summary>
    /// The logits at the last position of a forward pass ([B, vocab]): given the input ids [B, T], the attention mask and
    /// positions (null for plain causal attention from position 0) and the key/value cache the pass appends to and advances.
    /// </summary>
    public delegate Tensor LastLogitsPass(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, KVCache? cache);

    /// <summary>
    /// <see cref="Generate(CausalLM, IReadOnlyList{int[]}, GenerationOptions, Func{int[], string}?)"/> with the forward
    /// passes run by <paramref name="pass"/> (null: the model's own): a weight-sharded model gathers its units inside it.
    /// The model gives the configuration, device and dtype. Without stop tokens (empty
    /// <see cref="GenerationOptions.EosTokenIds"/>) and stop strings exactly <see cref="GenerationOptions.MaxNewTokens"/>
    /// passes run, whatever the prompts.
    /// </summary>
    public static GenerationResult Generate(CausalLM model, IReadOnlyList<int[]> prompts, GenerationOptions options,
        Func<int[], string>? decode, LastLogitsPass? pass)
    {
        pass ??= (ids, m, pos, c) => LastLogits(model, model.Hidden(ids, m, pos, c));
        options.Validate();
        if (prompts.Count == 0) throw new ArgumentException("no prompts");
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("a prompt is empty");
        if (options.StopStrings.Count > 0 && decode is null) throw new ArgumentException("stop strings need a tokenizer to decode with");
        int vocab = model.Config.VocabSize;
        foreach (var p in prompts)
            foreach (var id in p)
                if (id < 0 || id >= vocab) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {vocab})");

        var sw = Stopwatch.StartNew();
        var eos = (options.EosTokenIds ?? model.Config.EosTokenIds).ToHashSet();
        int pad = options.PadTokenId ?? model.Config.PadTokenId ?? 0;
        int b = prompts.Count, len = prompts.Max(p => p.Length);
        using var rng = options.Seed is { } seed && options.Temperature is not null ? new RandomGenerator(seed, model.Device) : null;

        var ids = new long[b * len];
        var mask = new long[b * len];
        for (int i = 0; i < b; i++)
        {
            int off = len - prompts[i].Length;
            for (int j = 0; j < len; j++)
            {
                ids[i * len + j] = j < off ? pad : prompts[i][j - off];
                mask[i * len + j] = j < off ? 0 : 1;
            }
        }

        var outputs = Enumerable.Range(0, b).Select(_ => new List<int>()).ToArray();
        var finish = new string?[b];
        var dev = model.Device;
        // One new token needs no cache: nothing is decoded after the prompt's pass.
        using var cache = options.MaxNewTokens > 1 ? new KVCache(model.Config, b, len + options.MaxNewTokens, model.DType, dev) : null;
        // Prompts of one length (no padding) take plain causal attention in the prompt's pass: no mask tensor, so that
        // SDPA can take its flash kernel; the decoding steps after it attend through the mask as before.
        bool unpadded = prompts.All(p => p.Length == len);
        using var noGrad = Torch.NoGrad();
        Tensor maskT = Torch.FromArray<long>(mask, [b, len], dev).DetachFromScope();
        Tensor? input = Torch.FromArray<long>(ids, [b, len], dev).DetachFromScope();
        Tensor? positions;
        // Positions count real tokens only, as transformers' generate derives them from the attention mask.
        using (Torch.NewScope())
            positions = (maskT.CumSum(1) - 1).MaskedFill(maskT.Eq(0), 1).DetachFromScope();
        try
        {
            var nextPos = prompts.Select(p => (long)p.Length).ToArray();
            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                int[] next;
                using (Torch.NewScope())
                {
                    // Logits at the last position only: the head never computes [B, T, vocab].
                    var last = (step == 0 && unpadded ? pass(input!, null, null, cache) : pass(input!, maskT, positions, cache)).To(DType.Float32);
                    if (options.LogitsProcessor is { } processor) last = processor(last, step);
                    next = Choose(last, options, rng).ToArray<long>().Select(x => (int)x).ToArray();
                }
                input!.Dispose();
                positions!.Dispose();
                input = positions = null;

                var stepIds = new long[b];
                for (int i = 0; i < b; i++)
                {
                    if (finish[i] != null) { stepIds[i] = pad; continue; }
                    outputs[i].Add(next[i]);
                    stepIds[i] = next[i];
                    if (eos.Contains(next[i])) finish[i] = "eos";
                    else if (options.StopStrings.Count > 0)
                    {
                        var text = decode!(outputs[i].ToArray());
                        if (options.StopStrings.Any(s => text.Contains(s, StringComparison.Ordinal))) finish[i] = "stop_string";
                    }
                }
                if (finish.All(f => f != null) || step == options.MaxNewTokens - 1) break;

                input = Torch.FromArray<long>(stepIds, [b, 1], dev).DetachFromScope();
                positions = Torch.FromArray<long>(nextPos, [b, 1], dev).DetachFromScope();
                for (int i = 0; i < b; i++) nextPos[i]++;
                using (Torch.NewScope())
                {
                    var grown = Torch.Cat([maskT, Torch.Ones([b, 1], DType.Int64, dev)], 1).DetachFromScope();
                    maskT.Dispose();
                    maskT = grown;
                }
            }
        }
        finally
        {
            maskT.Dispose();
            input?.Dispose();
            positions?.Dispose();
        }

        if (dev.IsCuda) Torch.Cuda.Synchronize(dev.Index);
        sw.Stop();
        var seqs = outputs.Select((o, i) => new GeneratedSequence(o.ToArray(), decode?.Invoke(o.ToArray()), finish[i] ?? "length")).ToList();
        return new GenerationResult(seqs, outputs.Sum(o => o.Count), sw.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Next token per row from float32 logits [B, V]: argmax, or a sample after temperature/top-k/top-p/min-p drawn from
    /// <paramref name="generator"/> (null: libtorch's global generator; <see cref="GenerationOptions.Seed"/> is not read
    /// here, <see cref="Generate(CausalLM, IReadOnlyList{int[]}, GenerationOptions, Func{int[], string}?)"/> makes the
    /// generator from it).
    /// </summary>
    public static Tensor Choose(Tensor logits, GenerationOptions o, RandomGenerator? generator = null)
    {
        if (o.Temperature is null) return logits.ArgMax(-1);
        using var scope = Torch.NewScope();
        var x = logits / o.Temperature.Value;
        if (o.TopK is { } k && k < x.Size(-1))
        {
            var kth = x.TopK(k, -1).Values.Narrow(-1, k - 1, 1);
            x = x.MaskedFill(x.Lt(kth), double.NegativeInfinity);
        }
        if (o.TopP is { } p && p < 1)
        {
            // As transformers' TopPLogitsWarper: in ascending order, drop the tokens whose cumulative probability is at
            // most 1 - p, always keeping the most probable one.
            var (sorted, idx) = x.Sort(-1, descending: false);
            var remove = sorted.Softmax(-1).CumSum(-1).Le(1 - p);
            using (var mostProbable = remove.Narrow(-1, remove.Size(-1) - 1, 1)) mostProbable.Fill(0);
            x = x.MaskedFill(Torch.ZerosLike(remove).Scatter(-1, idx, remove), double.NegativeInfinity);
        }
        if (o.MinP is { } mp && mp > 0)
        {
            var probs = x.Softmax(-1);
            var top = probs.Amax(-1, keepDim: true);
            x = x.MaskedFill(probs.Lt(top * mp), double.NegativeInfinity);
        }
        return Torch.Multinomial(x.Softmax(-1), 1, generator: generator).Squeeze(-1).MoveToOuterScope();
    }
}
