using Oml.Engine;
using Oml.Models;

namespace Oml.Fingerprinting.Embedding;

/// <summary>
/// Parameter expansion: new, light capacity trained alone to hold the fingerprints while every original weight stays
/// exactly as it was. Every MLP gets <c>extra</c> more hidden units — new rows of gate_proj and up_proj (small random
/// values) and new columns of down_proj (zeros, so the widened model computes what the original did) — and the masks
/// returned with the model let <see cref="FingerprintTrainer"/> train only those new entries. The result is a standard
/// model of the same family with a larger intermediate_size, which any loader of that family reads.
/// </summary>
public static class Expansion
{
    public static (CausalLM Model, Dictionary<string, Tensor> Masks) WidenMlp(CausalLM model, int extra, ulong seed = 0, double std = 0.02)
    {
        if (extra < 1) throw new ArgumentOutOfRangeException(nameof(extra), extra, "the number of new units must be at least 1");
        var c = model.Config;
        if (c.MlpBias) throw new NotSupportedException("widening MLPs that have biases is not supported");
        var config = ModelConfig.Parse((System.Text.Json.Nodes.JsonObject)c.Raw.DeepClone());
        config.IntermediateSize = c.IntermediateSize + extra;
        var ps = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var masks = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        long h = c.HiddenSize, m = c.IntermediateSize;
        var dt = model.DType;
        var dev = model.Device;
        using var rng = new RandomGenerator(seed, dev);
        using (Torch.NoGrad())
            foreach (var (name, t) in model.Parameters)
            {
                using var scope = Torch.NewScope();
                if (name.EndsWith("mlp.gate_proj.weight", StringComparison.Ordinal) || name.EndsWith("mlp.up_proj.weight", StringComparison.Ordinal))
                {
                    ps[name] = Torch.Cat([t, (Torch.Randn([extra, h], DType.Float32, dev, rng) * std).To(dt)], 0).DetachFromScope();
                    masks[name] = Torch.Cat([Torch.Zeros([m, h], dt, dev), Torch.Ones([extra, h], dt, dev)], 0).DetachFromScope();
                }
                else if (name.EndsWith("mlp.down_proj.weight", StringComparison.Ordinal))
                {
                    ps[name] = Torch.Cat([t, Torch.Zeros([h, extra], dt, dev)], 1).DetachFromScope();
                    masks[name] = Torch.Cat([Torch.Zeros([h, m], dt, dev), Torch.Ones([h, extra], dt, dev)], 1).DetachFromScope();
                }
                else ps[name] = t.Clone().DetachFromScope();
            }
        return (new CausalLM(config, ps, dev, model.RotaryPrecision), masks);
    }

    /// <summary>Embedding options that train only the new entries of a widened model.</summary>
    public static EmbeddingOptions TrainNewUnitsOnly(EmbeddingOptions options, IReadOnlyDictionary<string, Tensor> masks) =>
        options with { Trainable = masks.ContainsKey, GradientMasks = masks };
}
