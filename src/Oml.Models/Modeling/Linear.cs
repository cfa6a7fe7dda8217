using Oml.Engine;

namespace Oml.Models.Modeling;

/// <summary>A LoRA adapter (Hu et al.) on a <see cref="Linear"/>: the layer uses W + Scale·B·A.</summary>
/// <param name="A">[rank, in], initialised N(0, 1/rank).</param>
/// <param name="B">[out, rank], initialised to zeros.</param>
/// <param name="Scale">α / rank.</param>
public sealed record LoraAdapter(Tensor A, Tensor B, double Scale);

/// <summary>A linear map y = x·Wᵀ + b (transformers' nn.Linear), with an optional LoRA adapter.</summary>
public sealed class Linear
{
    internal Linear(Tensor weight, Tensor? bias)
    {
        Weight = weight;
        Bias = bias;
    }

    /// <summary>[out, in].</summary>
    public Tensor Weight { get; }

    /// <summary>[out], or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The adapter added by <see cref="CausalLM.AddLora"/>, if any.</summary>
    public LoraAdapter? Lora { get; internal set; }

    /// <summary>The weight as the forward pass uses it: W, or with an adapter W + (α/r)·B·A (a new tensor).</summary>
    public Tensor EffectiveWeight() => Lora is null ? Weight : Weight + Lora.B.MatMul(Lora.A) * Lora.Scale;

    public Tensor Forward(Tensor x) => F.Linear(x, EffectiveWeight(), Bias);
}

/// <summary>Root-mean-square layer normalisation with a learned per-channel weight (transformers' LlamaRMSNorm).</summary>
public sealed class RmsNorm
{
    internal RmsNorm(Tensor weight, double eps)
    {
        Weight = weight;
        Eps = eps;
    }

    /// <summary>[channels].</summary>
    public Tensor Weight { get; }
    public double Eps { get; }

    public Tensor Forward(Tensor x) => F.RmsNorm(x, Weight, Eps);
}

/// <summary>The token embedding table (transformers' nn.Embedding), also the LM head's weight when they are tied.</summary>
public sealed class TokenEmbedding
{
    internal TokenEmbedding(Tensor weight) => Weight = weight;

    /// <summary>[vocab, hidden].</summary>
    public Tensor Weight { get; }

    /// <summary>Rows of <see cref="Weight"/> for token ids [...]: [..., hidden].</summary>
    public Tensor Forward(Tensor inputIds) => F.Embedding(inputIds, Weight);
}

/// <summary>
/// The model's tensors by their Hugging Face names, read once while the typed pieces are built: each piece takes its
/// tensors here under its own names, and every <see cref="Linear"/> made is indexed by its weight's name (for LoRA).
/// </summary>
internal sealed class ParameterTable(IReadOnlyDictionary<string, Tensor> tensors)
{
    private readonly Dictionary<string, Linear> _linears = new(StringComparer.Ordinal);

    public Tensor this[string name] => tensors[name];

    /// <summary>Every projection made through <see cref="Linear(string, bool)"/>, by its weight's name.</summary>
    public IReadOnlyDictionary<string, Linear> Linears => _linears;

    public Linear Linear(string prefix, bool bias)
    {
        var l = new Linear(tensors[prefix + ".weight"], bias ? tensors[prefix + ".bias"] : null);
        _linears.Add(prefix + ".weight", l);
        return l;
    }

    public RmsNorm RmsNorm(string prefix, double eps) => new(tensors[prefix + ".weight"], eps);
}
