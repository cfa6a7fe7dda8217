using Oml.Engine;

namespace Oml.Models.Modeling;

/// <summary>
/// What every attention layer of one forward pass shares: the rotary tables cos/sin [B, 1, T, headDim] and the
/// attention mask [B, 1, T, Tcache + T] (true = may attend), or null for plain causal attention.
/// </summary>
public sealed record AttentionContext(Tensor Cos, Tensor Sin, Tensor? Mask);

/// <summary>
/// Grouped-query self-attention (transformers' LlamaAttention, with Qwen2's q/k/v biases and Qwen3's per-head q/k
/// RMSNorm as options): q/k/v projections, rotary embeddings, scaled dot-product attention, output projection.
/// </summary>
public sealed class Attention
{
    private readonly int _heads, _kvHeads, _headDim;

    internal Attention(ModelConfig c, int layerIndex, ParameterTable p, string prefix)
    {
        LayerIndex = layerIndex;
        (_heads, _kvHeads, _headDim) = (c.NumHeads, c.NumKeyValueHeads, c.HeadDim);
        QProj = p.Linear(prefix + "q_proj", c.QkvBias);
        KProj = p.Linear(prefix + "k_proj", c.QkvBias);
        VProj = p.Linear(prefix + "v_proj", c.QkvBias);
        OProj = p.Linear(prefix + "o_proj", c.OutputBias);
        if (c.QkNorm)
        {
            QNorm = p.RmsNorm(prefix + "q_norm", c.RmsNormEps);
            KNorm = p.RmsNorm(prefix + "k_norm", c.RmsNormEps);
        }
    }

    /// <summary>The tensors this attention needs, under <paramref name="prefix"/> ("model.layers.N.self_attn."), in transformers' order.</summary>
    internal static IEnumerable<(string Name, long[] Shape)> Expected(ModelConfig c, string prefix)
    {
        long h = c.HiddenSize, q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        yield return (prefix + "q_proj.weight", [q, h]);
        yield return (prefix + "k_proj.weight", [kv, h]);
        yield return (prefix + "v_proj.weight", [kv, h]);
        if (c.QkvBias)
        {
            yield return (prefix + "q_proj.bias", [q]);
            yield return (prefix + "k_proj.bias", [kv]);
            yield return (prefix + "v_proj.bias", [kv]);
        }
        yield return (prefix + "o_proj.weight", [h, q]);
        if (c.OutputBias) yield return (prefix + "o_proj.bias", [h]);
        if (c.QkNorm)
        {
            yield return (prefix + "q_norm.weight", [c.HeadDim]);
            yield return (prefix + "k_norm.weight", [c.HeadDim]);
        }
    }

    /// <summary>The index of the decoder layer this attention belongs to (its slot in a <see cref="KVCache"/>).</summary>
    public int LayerIndex { get; }

    public Linear QProj { get; }
    public Linear KProj { get; }
    public Linear VProj { get; }
    public Linear OProj { get; }

    /// <summary>Per-head RMSNorm of queries (Qwen3), or null.</summary>
    public RmsNorm? QNorm { get; }

    /// <summary>Per-head RMSNorm of keys (Qwen3), or null.</summary>
    public RmsNorm? KNorm { get; }

    /// <summary>
    /// Attention output [B, T, hidden] (after the output projection) for normalised hidden states [B, T, hidden].
    /// With a <paramref name="cache"/>, this step's keys and values are appended to it and attention covers all of it.
    /// </summary>
    public Tensor Forward(Tensor x, AttentionContext context, KVCache? cache)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(context);
        long b = x.Size(0), t = x.Size(1);
        int groups = _heads / _kvHeads;
        var q = QProj.Forward(x).View(b, t, _heads, _headDim);
        var k = KProj.Forward(x).View(b, t, _kvHeads, _headDim);
        var v = VProj.Forward(x).View(b, t, _kvHeads, _headDim).Transpose(1, 2);
        if (QNorm is not null) q = QNorm.Forward(q);
        if (KNorm is not null) k = KNorm.Forward(k);
        q = q.Transpose(1, 2);
        k = k.Transpose(1, 2);
        q = RotaryEmbedding.Apply(q, context.Cos, context.Sin);
        k = RotaryEmbedding.Apply(k, context.Cos, context.Sin);
        if (cache is not null) (k, v) = cache.Append(LayerIndex, k, v);
        if (groups > 1)
        {
            k = k.RepeatInterleave(groups, 1);
            v = v.RepeatInterleave(groups, 1);
        }
        var attn = (context.Mask is null
                ? F.ScaledDotProductAttention(q, k, v, isCausal: true)
                : F.ScaledDotProductAttention(q, k, v, mask: context.Mask))
            .Transpose(1, 2).Reshape(b, t, (long)_heads * _headDim);
        return OProj.Forward(attn);
    }
}

/// <summary>The SwiGLU feed-forward block (transformers' LlamaMLP): down(silu(gate(x)) · up(x)).</summary>
public sealed class Mlp
{
    internal Mlp(ModelConfig c, ParameterTable p, string prefix)
    {
        GateProj = p.Linear(prefix + "gate_proj", c.MlpBias);
        UpProj = p.Linear(prefix + "up_proj", c.MlpBias);
        DownProj = p.Linear(prefix + "down_proj", c.MlpBias);
    }

    /// <summary>The tensors this MLP needs, under <paramref name="prefix"/> ("model.layers.N.mlp."), in transformers' order.</summary>
    internal static IEnumerable<(string Name, long[] Shape)> Expected(ModelConfig c, string prefix)
    {
        long h = c.HiddenSize, m = c.IntermediateSize;
        yield return (prefix + "gate_proj.weight", [m, h]);
        yield return (prefix + "up_proj.weight", [m, h]);
        yield return (prefix + "down_proj.weight", [h, m]);
        if (c.MlpBias)
        {
            yield return (prefix + "gate_proj.bias", [m]);
            yield return (prefix + "up_proj.bias", [m]);
            yield return (prefix + "down_proj.bias", [h]);
        }
    }

    public Linear GateProj { get; }
    public Linear UpProj { get; }
    public Linear DownProj { get; }

    public Tensor Forward(Tensor x)
    {
        var gate = GateProj.Forward(x);
        var up = UpProj.Forward(x);
        return DownProj.Forward(F.SwiGlu(gate, up));
    }
}

/// <summary>One pre-norm transformer block (transformers' LlamaDecoderLayer): h + attention(norm(h)), then + MLP(norm(·)).</summary>
public sealed class DecoderLayer
{
    internal DecoderLayer(ModelConfig c, int index, ParameterTable p, string prefix)
    {
        InputLayerNorm = p.RmsNorm(prefix + "input_layernorm", c.RmsNormEps);
        SelfAttention = new Attention(c, index, p, prefix + "self_attn.");
        PostAttentionLayerNorm = p.RmsNorm(prefix + "post_attention_layernorm", c.RmsNormEps);
        Mlp = new Mlp(c, p, prefix + "mlp.");
    }

    /// <summary>The tensors this layer needs, under <paramref name="prefix"/> ("model.layers.N."), in transformers' order.</summary>
    internal static IEnumerable<(string Name, long[] Shape)> Expected(ModelConfig c, string prefix)
    {
        yield return (prefix + "input_layernorm.weight", [c.HiddenSize]);
        foreach (var e in Attention.Expected(c, prefix + "self_attn.")) yield return e;
        yield return (prefix + "post_attention_layernorm.weight", [c.HiddenSize]);
        foreach (var e in Mlp.Expected(c, prefix + "mlp.")) yield return e;
    }

    public RmsNorm InputLayerNorm { get; }
    public Attention SelfAttention { get; }
    public RmsNorm PostAttentionLayerNorm { get; }
    public Mlp Mlp { get; }

    /// <summary>The layer's output [B, T, hidden] for its input <paramref name="h"/> [B, T, hidden].</summary>
    public Tensor Forward(Tensor h, AttentionContext context, KVCache? cache)
    {
        h = h + SelfAttention.Forward(InputLayerNorm.Forward(h), context, cache);
        return h + Mlp.Forward(PostAttentionLayerNorm.Forward(h));
    }
}
