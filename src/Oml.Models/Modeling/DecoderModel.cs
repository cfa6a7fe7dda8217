using Oml.Engine;

namespace Oml.Models.Modeling;

/// <summary>
/// The transformer body (transformers' LlamaModel): token embeddings, the decoder layers, the final RMSNorm and the
/// rotary embedding they share. Its tensors live under "model." in a checkpoint.
/// </summary>
public sealed class DecoderModel : IDisposable
{
    internal const string Prefix = "model.";

    internal DecoderModel(ModelConfig c, ParameterTable p, Device device, DType? rotaryPrecision)
    {
        Config = c;
        Device = device;
        EmbedTokens = new TokenEmbedding(p[Prefix + "embed_tokens.weight"]);
        var layers = new DecoderLayer[c.NumLayers];
        for (int i = 0; i < layers.Length; i++) layers[i] = new DecoderLayer(c, i, p, $"{Prefix}layers.{i}.");
        Layers = layers;
        Norm = p.RmsNorm(Prefix + "norm", c.RmsNormEps);
        RotaryEmbedding = new RotaryEmbedding(c, device, rotaryPrecision);
    }

    /// <summary>The tensors the body needs, in transformers' order.</summary>
    internal static IEnumerable<(string Name, long[] Shape)> Expected(ModelConfig c)
    {
        yield return (Prefix + "embed_tokens.weight", [c.VocabSize, c.HiddenSize]);
        for (int i = 0; i < c.NumLayers; i++)
            foreach (var e in DecoderLayer.Expected(c, $"{Prefix}layers.{i}.")) yield return e;
        yield return (Prefix + "norm.weight", [c.HiddenSize]);
    }

    public ModelConfig Config { get; }
    public Device Device { get; }
    public TokenEmbedding EmbedTokens { get; }
    public IReadOnlyList<DecoderLayer> Layers { get; }
    public RmsNorm Norm { get; }
    public RotaryEmbedding RotaryEmbedding { get; }

    /// <summary>The dtype the model computes in (its embeddings').</summary>
    public DType DType => EmbedTokens.Weight.DType;

    /// <summary>The final hidden states [B, T, hidden]; see <see cref="CausalLM.Hidden"/>.</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KVCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        using var scope = Torch.NewScope();
        var ctx = Context(inputIds, attentionMask, positionIds, cache);
        var h = EmbedTokens.Forward(inputIds);
        foreach (var layer in Layers) h = layer.Forward(h, ctx, cache);
        cache?.Advance(inputIds.Size(1));
        return Norm.Forward(h).MoveToOuterScope();
    }

    /// <summary>A training step's forward and backward pass with activation checkpointing per layer; see <see cref="CausalLM.CheckpointedBackward"/>.</summary>
    public Tensor CheckpointedBackward(Tensor inputIds, Func<Tensor, Tensor> lossOfHidden)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(lossOfHidden);
        using var scope = Torch.NewScope();
        var ctx = Context(inputIds, null, null, null);
        int layers = Layers.Count;
        var inputs = new Tensor[layers];
        Tensor top;
        using (Torch.NoGrad())
        {
            var h = EmbedTokens.Forward(inputIds).DetachFromScope();
            for (int i = 0; i < layers; i++)
            {
                inputs[i] = h;
                using var layerScope = Torch.NewScope();
                h = Layers[i].Forward(h, ctx, null).DetachFromScope();
            }
            top = h.RequiresGrad_();
        }
        Tensor? g = null;
        try
        {
            Tensor loss;
            using (var headScope = Torch.NewScope())
            {
                loss = lossOfHidden(Norm.Forward(top));
                loss.Backward();
                loss = loss.Detach().MoveToOuterScope();
                g = top.Grad?.DetachFromScope() ?? throw new InvalidOperationException("the loss does not depend on the hidden states");
            }
            for (int i = layers - 1; i >= 0; i--)
            {
                using var layerScope = Torch.NewScope();
                var x = inputs[i].Detach().RequiresGrad_();
                var y = Layers[i].Forward(x, ctx, null);
                y.Backward(g);
                g.Dispose();
                g = x.Grad?.DetachFromScope() ?? throw new InvalidOperationException($"no gradient reached the input of layer {i}");
                inputs[i].Dispose();
                inputs[i] = null!;
            }
            using (var embedScope = Torch.NewScope())
            {
                var e = EmbedTokens.Forward(inputIds);
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

    /// <summary>The rotary tables and the attention mask of one forward pass (null mask: plain causal attention).</summary>
    public AttentionContext Context(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, KVCache? cache)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        long b = inputIds.Size(0), t = inputIds.Size(1);
        long past = cache?.Length ?? 0;
        long total = past + t;
        positionIds ??= Torch.Arange(past, total, 1, DType.Int64, Device).Unsqueeze(0).Expand(b, t);
        var (cos, sin) = RotaryEmbedding.Forward(positionIds, DType);
        // A full mask [B, 1, T, total] (true = may attend) is the caller's: e.g. several short sequences packed into one
        // row after a shared cache, each attending to the cache and causally to itself only.
        if (attentionMask is not null && attentionMask.Dim == 4)
        {
            if (attentionMask.Size(0) != b || attentionMask.Size(1) != 1 || attentionMask.Size(2) != t || attentionMask.Size(3) != total)
                throw new ArgumentException($"a full attention mask must be [{b}, 1, {t}, {total}], not [{string.Join(", ", Enumerable.Range(0, 4).Select(i => attentionMask.Size(i)))}]");
            return new AttentionContext(cos, sin, attentionMask.DType == DType.Bool ? attentionMask : attentionMask.Ne(0));
        }
        // Without padding and without a cache, attention is plain causal: no mask tensor, so that SDPA can take its
        // flash kernel. Right padding needs no mask either (causal attention never lets a real token see the
        // padding after it).
        if (attentionMask is null && past == 0) return new AttentionContext(cos, sin, null);

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
        return new AttentionContext(cos, sin, allowed);
    }

    public void Dispose() => RotaryEmbedding.Dispose();
}
