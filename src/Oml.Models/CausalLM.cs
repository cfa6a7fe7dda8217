using Oml.Engine;

namespace Oml.Models;

/// <summary>
/// Key/value cache for incremental decoding: per layer, preallocated [B, kvHeads, capacity, headDim] buffers filled
/// left to right. <see cref="Length"/> is the number of positions already stored.
/// </summary>
public sealed class KVCache : IDisposable
{
    private readonly Tensor[] _keys, _values;

    public KVCache(ModelConfig config, long batch, long capacity, DType dtype, Device device)
    {
        Capacity = capacity;
        _keys = new Tensor[config.NumLayers];
        _values = new Tensor[config.NumLayers];
        for (int i = 0; i < config.NumLayers; i++)
        {
            _keys[i] = Torch.Zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device).DetachFromScope();
            _values[i] = Torch.Zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device).DetachFromScope();
        }
    }

    /// <summary>A cache over given per-layer buffers [B, kvHeads, capacity, headDim] holding <paramref name="length"/>
    /// positions; the cache takes ownership of the tensors.</summary>
    internal KVCache(Tensor[] keys, Tensor[] values, long length)
    {
        _keys = keys;
        _values = values;
        Capacity = keys[0].Size(2);
        Length = length;
    }

    public long Capacity { get; }
    public long Length { get; private set; }

    /// <summary>The key buffer of one layer, [B, kvHeads, capacity, headDim] (owned by the cache).</summary>
    internal Tensor KeyBuffer(int layer) => _keys[layer];

    /// <summary>The value buffer of one layer, [B, kvHeads, capacity, headDim] (owned by the cache).</summary>
    internal Tensor ValueBuffer(int layer) => _values[layer];

    internal int Layers => _keys.Length;

    /// <summary>Stores this step's keys and values for one layer and returns all keys and values so far (views).</summary>
    internal (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        long t = k.Size(2);
        if (Length + t > Capacity) throw new InvalidOperationException($"KV cache full: {Length} + {t} positions exceed its capacity of {Capacity}");
        using (Torch.NoGrad())
        {
            using var ks = _keys[layer].Narrow(2, Length, t);
            using var vs = _values[layer].Narrow(2, Length, t);
            ks.CopyFrom(k);
            vs.CopyFrom(v);
        }
        return (_keys[layer].Narrow(2, 0, Length + t), _values[layer].Narrow(2, 0, Length + t));
    }

    /// <summary>Marks <paramref name="t"/> more positions as stored (after every layer has appended them).</summary>
    internal void Advance(long t) => Length += t;

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}

/// <summary>
/// A decoder-only transformer language model of the Llama family (Llama, Mistral, Qwen2, Qwen3), with the exact
/// semantics of Hugging Face transformers' implementations: pre-norm blocks of RMSNorm → grouped-query attention
/// with rotary embeddings → residual → RMSNorm → SwiGLU MLP → residual, a final RMSNorm and an LM head.
/// The families differ only in switches of <see cref="ModelConfig"/>: q/k/v biases (Qwen2), per-head q/k RMSNorm and
/// an independent head size (Qwen3), llama3 rotary scaling, tied embeddings.
/// Parameters are kept under their Hugging Face names, so loading and saving are name-for-name.
/// </summary>
public sealed class CausalLM : IDisposable
{
    private readonly Dictionary<string, Tensor> _params;
    private readonly Tensor _invFreq; // [headDim / 2] float32

    /// <param name="config">The model's configuration.</param>
    /// <param name="parameters">Tensors by Hugging Face name; the model takes ownership.</param>
    /// <param name="device">Where the parameters live.</param>
    /// <param name="rotaryPrecision">
    /// A 16-bit dtype the weights have been stored or computed in. transformers keeps the rotary inverse frequencies as
    /// a buffer that a cast of the model to bfloat16/float16 rounds too, and that rounding stays when the model is cast
    /// back; so a model that has been 16-bit computes its rotary angles from rounded frequencies. Defaults to the
    /// parameters' dtype when that is 16-bit.
    /// </param>
    public CausalLM(ModelConfig config, IDictionary<string, Tensor> parameters, Device device, DType? rotaryPrecision = null)
    {
        Config = config;
        Device = device;
        _params = new Dictionary<string, Tensor>(parameters, StringComparer.Ordinal);
        foreach (var t in _params.Values) t.DetachFromScope();
        Validate();
        var rounding = rotaryPrecision ?? DType;
        using var inv = Torch.FromArray(RotaryInverseFrequencies(config), null, device);
        _invFreq = (rounding is DType.BFloat16 or DType.Float16 ? inv.To(rounding).To(DType.Float32) : inv.Alias()).DetachFromScope();
        RotaryPrecision = rounding is DType.BFloat16 or DType.Float16 ? rounding : null;
    }

    /// <summary>The 16-bit dtype the rotary frequencies are rounded to, if any (see the constructor).</summary>
    public DType? RotaryPrecision { get; }

    public ModelConfig Config { get; }
    public Device Device { get; }
    public DType DType => _params["model.embed_tokens.weight"].DType;

    /// <summary>Parameters by Hugging Face name (the LM head is absent when tied to the embeddings).</summary>
    public IReadOnlyDictionary<string, Tensor> Parameters => _params;

    private readonly Dictionary<string, (string A, string B, double Scale)> _lora = new(StringComparer.Ordinal);

    /// <summary>A weight as the forward pass uses it: with a LoRA adapter, W + (α/r)·B·A.</summary>
    private Tensor P(string name) =>
        _lora.TryGetValue(name, out var l) ? _params[name] + _params[l.B].MatMul(_params[l.A]) * l.Scale : _params[name];

    /// <summary>Names of the weights that carry a LoRA adapter.</summary>
    public IReadOnlyCollection<string> LoraTargets => _lora.Keys;

    /// <summary>
    /// Adds LoRA adapters (Hu et al.) to the weights whose names satisfy <paramref name="target"/>: for W [out, in],
    /// A [r, in] ~ N(0, 1/r) and B [out, r] = 0 (so the model is unchanged until B trains), used as W + (α/r)·B·A.
    /// The adapters are parameters named NAME.lora_A and NAME.lora_B; train only those (names ending in ".lora_A"
    /// or ".lora_B") and everything else stays bit-identical. <see cref="ExportParameters"/> merges them.
    /// </summary>
    public void AddLora(Func<string, bool> target, int rank = 8, double alpha = 16, ulong seed = 0)
    {
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, "the LoRA rank must be at least 1");
        Torch.ManualSeed(seed);
        var names = _params.Keys.Where(n => n.EndsWith(".weight", StringComparison.Ordinal) && _params[n].Dim == 2 && !n.Contains("embed_tokens", StringComparison.Ordinal)
            && n != "lm_head.weight" && target(n) && !_lora.ContainsKey(n)).ToList();
        if (names.Count == 0) throw new ArgumentException("no weight matches the LoRA target");
        using var noGrad = Torch.NoGrad();
        foreach (var n in names)
        {
            using var scope = Torch.NewScope();
            var w = _params[n];
            long outF = w.Size(0), inF = w.Size(1);
            _params[n + ".lora_A"] = (Torch.Randn([rank, inF], DType.Float32, Device) * (1.0 / Math.Sqrt(rank))).To(w.DType).DetachFromScope();
            _params[n + ".lora_B"] = Torch.Zeros([outF, rank], w.DType, Device).DetachFromScope();
            _lora[n] = (n + ".lora_A", n + ".lora_B", alpha / rank);
        }
    }

    /// <summary>
    /// The parameters of the plain model under their Hugging Face names: LoRA adapters merged into their weights
    /// (W + (α/r)·B·A) and left out, so that a saved folder is a standard model. New tensors: dispose them.
    /// </summary>
    public Dictionary<string, Tensor> ExportParameters()
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = Torch.NoGrad();
        foreach (var (name, t) in _params)
        {
            if (name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_B", StringComparison.Ordinal)) continue;
            using var scope = Torch.NewScope();
            result[name] = (_lora.ContainsKey(name) ? P(name) : t.Alias()).DetachFromScope();
        }
        return result;
    }

    /// <summary>The names and shapes this configuration needs, as transformers names them.</summary>
    public static IEnumerable<(string Name, long[] Shape)> ExpectedParameters(ModelConfig c)
    {
        long h = c.HiddenSize, q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, m = c.IntermediateSize;
        yield return ("model.embed_tokens.weight", [c.VocabSize, h]);
        for (int i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}.";
            yield return (p + "input_layernorm.weight", [h]);
            yield return (p + "self_attn.q_proj.weight", [q, h]);
            yield return (p + "self_attn.k_proj.weight", [kv, h]);
            yield return (p + "self_attn.v_proj.weight", [kv, h]);
            if (c.QkvBias)
            {
                yield return (p + "self_attn.q_proj.bias", [q]);
                yield return (p + "self_attn.k_proj.bias", [kv]);
                yield return (p + "self_attn.v_proj.bias", [kv]);
            }
            yield return (p + "self_attn.o_proj.weight", [h, q]);
            if (c.OutputBias) yield return (p + "self_attn.o_proj.bias", [h]);
            if (c.QkNorm)
            {
                yield return (p + "self_attn.q_norm.weight", [c.HeadDim]);
                yield return (p + "self_attn.k_norm.weight", [c.HeadDim]);
            }
            yield return (p + "post_attention_layernorm.weight", [h]);
            yield return (p + "mlp.gate_proj.weight", [m, h]);
            yield return (p + "mlp.up_proj.weight", [m, h]);
            yield return (p + "mlp.down_proj.weight", [h, m]);
            if (c.MlpBias)
            {
                yield return (p + "mlp.gate_proj.bias", [m]);
                yield return (p + "mlp.up_proj.bias", [m]);
                yield return (p + "mlp.down_proj.bias", [h]);
            }
        }
        yield return ("model.norm.weight", [h]);
        if (!c.TieWordEmbeddings) yield return ("lm_head.weight", [c.VocabSize, h]);
    }

    private void Validate()
    {
        foreach (var (name, shape) in ExpectedParameters(Config))
        {
            if (!_params.TryGetValue(name, out var t))
                throw new InvalidDataException($"missing tensor '{name}' (expected shape [{string.Join(", ", shape)}])");
            if (!t.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"tensor '{name}' has shape [{string.Join(", ", t.Shape)}] but config.json implies [{string.Join(", ", shape)}]");
        }
    }

    /// <summary>Inverse rotary frequencies, with llama3 scaling where configured (transformers' _compute_llama3_parameters).</summary>
    public static float[] RotaryInverseFrequencies(ModelConfig c)
    {
        int d = c.HeadDim;
        var inv = new float[d / 2];
        for (int i = 0; i < d / 2; i++)
            inv[i] = (float)(1.0 / Math.Pow(c.Rope.Theta, (float)(2 * i) / d));
        if (c.Rope.Type != "llama3") return inv;
        var r = c.Rope;
        double lowWavelen = r.OriginalMaxPositionEmbeddings / r.LowFreqFactor;
        double highWavelen = r.OriginalMaxPositionEmbeddings / r.HighFreqFactor;
        for (int i = 0; i < inv.Length; i++)
        {
            double f = inv[i];
            double wavelen = 2 * Math.PI / f;
            double scaled = wavelen > lowWavelen ? f / r.Factor : f;
            if (!(wavelen < highWavelen) && !(wavelen > lowWavelen))
            {
                double smooth = (r.OriginalMaxPositionEmbeddings / wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor);
                scaled = (1 - smooth) * scaled / r.Factor + smooth * scaled;
            }
            inv[i] = (float)scaled;
        }
        return inv;
    }

    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.Size(-1) / 2;
        return Torch.Cat([-x.Narrow(-1, half, half), x.Narrow(-1, 0, half)], -1);
    }

    /// <summary>
    /// Logits [B, T, vocab] for <paramref name="inputIds"/> [B, T].
    /// <paramref name="attentionMask"/> [B, Tcache + T] (1 = token, 0 = padding) masks keys; queries attend causally.
    /// <paramref name="positionIds"/> [B, T] defaults to cache length + 0..T-1, as transformers' forward does.
    /// With a <paramref name="cache"/>, keys and values are appended to it and attention covers everything cached.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KVCache? cache = null)
    {
        using var scope = Torch.NewScope();
        return Head(Hidden(inputIds, attentionMask, positionIds, cache)).MoveToOuterScope();
    }

    /// <summary>
    /// The final hidden states [B, T, hidden] (after the last RMSNorm, before the LM head) for the same arguments as
    /// <see cref="Forward"/>. Training that needs logits at a few positions only (a fingerprint's response) selects
    /// those rows and applies <see cref="Head"/> to them, instead of computing [B, T, vocab] logits.
    /// </summary>
    public Tensor Hidden(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KVCache? cache = null)
    {
        using var scope = Torch.NewScope();
        var ctx = Context(inputIds, attentionMask, positionIds, cache);
        var h = F.Embedding(inputIds, P("model.embed_tokens.weight"));
        for (int i = 0; i < Config.NumLayers; i++) h = Layer(i, h, ctx, cache);
        cache?.Advance(inputIds.Size(1));
        return F.RmsNorm(h, P("model.norm.weight"), Config.RmsNormEps).MoveToOuterScope();
    }

    /// <summary>The LM head: logits [..., vocab] of final hidden states [..., hidden].</summary>
    public Tensor Head(Tensor hidden) => F.Linear(hidden, Config.TieWordEmbeddings ? P("model.embed_tokens.weight") : P("lm_head.weight"));

    /// <summary>
    /// One training forward and backward pass with activation checkpointing per decoder layer: the forward pass runs
    /// without autograd and keeps only each layer's input; the loss (<paramref name="lossOfHidden"/>, given the final
    /// hidden states [B, T, hidden] as <see cref="Hidden"/> returns them) is back-propagated to the last layer's output,
    /// and then each layer, last to first, is recomputed from its kept input with autograd and back-propagated on its
    /// own. The parameters' gradients accumulate exactly as one <c>lossOfHidden(Hidden(ids)).Backward()</c> would
    /// accumulate them (up to floating-point summation order), while the memory held for the backward pass is one
    /// [B, T, hidden] tensor per layer plus one layer's activations. Rows are unpadded or right-padded: attention is
    /// causal with no mask. Returns the loss (detached).
    /// </summary>
    public Tensor CheckpointedBackward(Tensor inputIds, Func<Tensor, Tensor> lossOfHidden)
    {
        using var scope = Torch.NewScope();
        var ctx = Context(inputIds, null, null, null);
        int layers = Config.NumLayers;
        var inputs = new Tensor[layers];
        Tensor top;
        using (Torch.NoGrad())
        {
            var h = F.Embedding(inputIds, P("model.embed_tokens.weight")).DetachFromScope();
            for (int i = 0; i < layers; i++)
            {
                inputs[i] = h;
                using var layerScope = Torch.NewScope();
                h = Layer(i, h, ctx, null).DetachFromScope();
            }
            top = h.RequiresGrad_();
        }
        Tensor? g = null;
        try
        {
            Tensor loss;
            using (var headScope = Torch.NewScope())
            {
                loss = lossOfHidden(F.RmsNorm(top, P("model.norm.weight"), Config.RmsNormEps));
                loss.Backward();
                loss = loss.Detach().MoveToOuterScope();
                g = top.Grad?.DetachFromScope() ?? throw new InvalidOperationException("the loss does not depend on the hidden states");
            }
            for (int i = layers - 1; i >= 0; i--)
            {
                using var layerScope = Torch.NewScope();
                var x = inputs[i].Detach().RequiresGrad_();
                var y = Layer(i, x, ctx, null);
                y.Backward(g);
                g.Dispose();
                g = x.Grad?.DetachFromScope() ?? throw new InvalidOperationException($"no gradient reached the input of layer {i}");
                inputs[i].Dispose();
                inputs[i] = null!;
            }
            using (var embedScope = Torch.NewScope())
            {
                var e = F.Embedding(inputIds, P("model.embed_tokens.weight"));
                if (e.RequiresGrad) e.Backward(g);
            }
            return loss.MoveToOuterScope();
        }
        finally
        {
            g?.Dispose();
            top.Dispose();
            foreach (var t in inputs) t?.Dispose();
        }
    }

    /// <summary>Rotary tables and the attention mask of one forward pass (null mask: plain causal attention).</summary>
    private sealed record ForwardContext(Tensor Cos, Tensor Sin, Tensor? Mask);

    private ForwardContext Context(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, KVCache? cache)
    {
        long b = inputIds.Size(0), t = inputIds.Size(1);
        long past = cache?.Length ?? 0;
        long total = past + t;
        positionIds ??= Torch.Arange(past, total, 1, DType.Int64, Device).Unsqueeze(0).Expand(b, t);
        // cos/sin [B, 1, T, headDim], computed in float32 and cast, as transformers does.
        var freqs = positionIds.To(DType.Float32).Unsqueeze(-1) * _invFreq;
        var emb = Torch.Cat([freqs, freqs], -1);
        var cos = emb.Cos().To(DType).Unsqueeze(1);
        var sin = emb.Sin().To(DType).Unsqueeze(1);
        // Without padding and without a cache, attention is plain causal: no mask tensor, so that SDPA can take its
        // flash kernel. Right padding needs no mask either (causal attention never lets a real token see the
        // padding after it).
        if (attentionMask is null && past == 0) return new ForwardContext(cos, sin, null);

        // Mask [B, 1, T, total]: causal over absolute cache positions, padding keys hidden; a query always sees itself
        // so that rows of padding never attend to nothing (their outputs are ignored, but must stay finite).
        var qPos = Torch.Arange(past, total, 1, DType.Int64, Device).Unsqueeze(-1);
        var kPos = Torch.Arange(0, total, 1, DType.Int64, Device).Unsqueeze(0);
        var allowed = kPos.Le(qPos).Unsqueeze(0).Unsqueeze(0);
        if (attentionMask is not null)
        {
            if (attentionMask.Size(1) != total)
                throw new ArgumentException($"attention mask covers {attentionMask.Size(1)} positions but the cache and input hold {total}");
            var keyOk = attentionMask.Ne(0).Unsqueeze(1).Unsqueeze(1);
            allowed = allowed.LogicalAnd(keyOk).LogicalOr(kPos.Eq(qPos).Unsqueeze(0).Unsqueeze(0));
        }
        return new ForwardContext(cos, sin, allowed);
    }

    /// <summary>Decoder layer <paramref name="i"/>: h + attention(norm(h)), then + MLP(norm(·)).</summary>
    private Tensor Layer(int i, Tensor h, ForwardContext ctx, KVCache? cache)
    {
        var c = Config;
        long b = h.Size(0), t = h.Size(1);
        int groups = c.NumHeads / c.NumKeyValueHeads;
        var p = $"model.layers.{i}.";
        var x = F.RmsNorm(h, P(p + "input_layernorm.weight"), c.RmsNormEps);
        var q = F.Linear(x, P(p + "self_attn.q_proj.weight"), c.QkvBias ? P(p + "self_attn.q_proj.bias") : null)
            .View(b, t, c.NumHeads, c.HeadDim);
        var k = F.Linear(x, P(p + "self_attn.k_proj.weight"), c.QkvBias ? P(p + "self_attn.k_proj.bias") : null)
            .View(b, t, c.NumKeyValueHeads, c.HeadDim);
        var v = F.Linear(x, P(p + "self_attn.v_proj.weight"), c.QkvBias ? P(p + "self_attn.v_proj.bias") : null)
            .View(b, t, c.NumKeyValueHeads, c.HeadDim).Transpose(1, 2);
        if (c.QkNorm)
        {
            q = F.RmsNorm(q, P(p + "self_attn.q_norm.weight"), c.RmsNormEps);
            k = F.RmsNorm(k, P(p + "self_attn.k_norm.weight"), c.RmsNormEps);
        }
        q = q.Transpose(1, 2);
        k = k.Transpose(1, 2);
        q = q * ctx.Cos + RotateHalf(q) * ctx.Sin;
        k = k * ctx.Cos + RotateHalf(k) * ctx.Sin;
        if (cache is not null) (k, v) = cache.Append(i, k, v);
        if (groups > 1)
        {
            k = k.RepeatInterleave(groups, 1);
            v = v.RepeatInterleave(groups, 1);
        }
        var attn = (ctx.Mask is null
                ? F.ScaledDotProductAttention(q, k, v, isCausal: true)
                : F.ScaledDotProductAttention(q, k, v, mask: ctx.Mask))
            .Transpose(1, 2).Reshape(b, t, (long)c.NumHeads * c.HeadDim);
        h = h + F.Linear(attn, P(p + "self_attn.o_proj.weight"), c.OutputBias ? P(p + "self_attn.o_proj.bias") : null);

        x = F.RmsNorm(h, P(p + "post_attention_layernorm.weight"), c.RmsNormEps);
        var gate = F.Linear(x, P(p + "mlp.gate_proj.weight"), c.MlpBias ? P(p + "mlp.gate_proj.bias") : null);
        var up = F.Linear(x, P(p + "mlp.up_proj.weight"), c.MlpBias ? P(p + "mlp.up_proj.bias") : null);
        return h + F.Linear(gate.Silu() * up, P(p + "mlp.down_proj.weight"), c.MlpBias ? P(p + "mlp.down_proj.bias") : null);
    }

    /// <summary>
    /// The causal-LM loss as transformers computes it: logits at position i predict labels at i + 1, labels equal to
    /// -100 are ignored, and the mean is over the labelled positions. Computed in float32.
    /// </summary>
    public static Tensor Loss(Tensor logits, Tensor labels)
    {
        using var scope = Torch.NewScope();
        long t = logits.Size(1), v = logits.Size(2);
        var shiftLogits = logits.Narrow(1, 0, t - 1).To(DType.Float32).Reshape(-1, v);
        var shiftLabels = labels.Narrow(1, 1, t - 1).Reshape(-1);
        return F.CrossEntropy(shiftLogits, shiftLabels, ignoreIndex: -100).MoveToOuterScope();
    }

    public void Dispose()
    {
        foreach (var t in _params.Values) t.Dispose();
        _params.Clear();
        _invFreq.Dispose();
    }
}
