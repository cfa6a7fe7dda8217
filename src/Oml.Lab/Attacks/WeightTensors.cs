using Oml.Engine;
using Oml.Models;

namespace Oml.Lab.Attacks;

/// <summary>Which parameters a weight attack touches.</summary>
[Flags]
public enum TensorKinds
{
    None = 0,
    /// <summary>The 2-D projection weights inside the blocks (q/k/v/o, gate/up/down).</summary>
    Linear = 1,
    /// <summary>The token embeddings and the untied LM head.</summary>
    Embeddings = 2,
    /// <summary>Everything else: norm weights and biases (1-D tensors).</summary>
    Other = 4,
    All = Linear | Embeddings | Other,
}

/// <summary>Helpers the weight attacks share: classifying parameters, checking siblings, building the attacked copy.</summary>
public static class WeightTensors
{
    public static TensorKinds KindOf(string name, Tensor t)
    {
        if (name is "model.embed_tokens.weight" or "lm_head.weight") return TensorKinds.Embeddings;
        return t.Dim == 2 && name.EndsWith(".weight", StringComparison.Ordinal) ? TensorKinds.Linear : TensorKinds.Other;
    }

    /// <summary>
    /// A new model with <paramref name="model"/>'s configuration and device whose parameters are
    /// <paramref name="transform"/>(name, float32 copy) cast back to the model's dtype, for the parameters that
    /// <paramref name="select"/> accepts, and plain copies of the others. LoRA adapters are merged first. The input
    /// model is not modified. <paramref name="transform"/> may return its argument.
    /// </summary>
    public static CausalLM Transform(CausalLM model, Func<string, Tensor, bool> select, Func<string, Tensor, Tensor> transform)
    {
        var exported = model.ExportParameters();
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using var noGrad = Torch.NoGrad();
            foreach (var (name, t) in exported.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                using var scope = Torch.NewScope();
                Tensor outT;
                if (select(name, t))
                {
                    var f = t.To(DType.Float32, t.Device, copy: true);
                    outT = transform(name, f).To(t.DType).Contiguous();
                }
                else outT = t.Clone();
                result[name] = outT.DetachFromScope();
            }
            return new CausalLM(model.Config, result, model.Device, model.RotaryPrecision);
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var t in exported.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless <paramref name="other"/> has the same architecture as
    /// <paramref name="model"/> and the same parameter names and shapes (what merging needs).
    /// </summary>
    public static void CheckSameShape(CausalLM model, CausalLM other, string otherName)
    {
        var a = model.Config;
        var b = other.Config;
        var fa = (a.Architecture, a.VocabSize, a.HiddenSize, a.IntermediateSize, a.NumLayers, a.NumHeads, a.NumKeyValueHeads, a.HeadDim,
            a.TieWordEmbeddings, a.QkvBias, a.OutputBias, a.MlpBias, a.QkNorm, a.Rope);
        var fb = (b.Architecture, b.VocabSize, b.HiddenSize, b.IntermediateSize, b.NumLayers, b.NumHeads, b.NumKeyValueHeads, b.HeadDim,
            b.TieWordEmbeddings, b.QkvBias, b.OutputBias, b.MlpBias, b.QkNorm, b.Rope);
        if (fa != fb)
            throw new ArgumentException($"{otherName} does not have the model's configuration: {Describe(a)} vs {Describe(b)}");
        var pa = ExportedShapes(model);
        var pb = ExportedShapes(other);
        foreach (var (name, shape) in pa)
        {
            if (!pb.TryGetValue(name, out var s)) throw new ArgumentException($"{otherName} has no tensor '{name}'");
            if (!s.SequenceEqual(shape))
                throw new ArgumentException($"{otherName}: tensor '{name}' has shape [{string.Join(", ", s)}], the model's is [{string.Join(", ", shape)}]");
        }
        foreach (var name in pb.Keys)
            if (!pa.ContainsKey(name)) throw new ArgumentException($"{otherName} has a tensor '{name}' the model lacks");
    }

    private static Dictionary<string, long[]> ExportedShapes(CausalLM m) => m.Parameters
        .Where(p => !p.Key.EndsWith(".lora_A", StringComparison.Ordinal) && !p.Key.EndsWith(".lora_B", StringComparison.Ordinal))
        .ToDictionary(p => p.Key, p => p.Value.Shape, StringComparer.Ordinal);

    private static string Describe(ModelConfig c) =>
        $"{c.ArchitectureName} (vocab {c.VocabSize}, hidden {c.HiddenSize}, layers {c.NumLayers}, heads {c.NumHeads}/{c.NumKeyValueHeads}, mlp {c.IntermediateSize})";

    /// <summary>A parameter of <paramref name="m"/> (LoRA merged) as float32 on <paramref name="device"/>: a new tensor.</summary>
    internal static Tensor Float32(CausalLM m, string name, Device device, Dictionary<string, Tensor>? exported = null)
    {
        var t = exported is not null ? exported[name] : m.Parameters[name];
        return t.To(DType.Float32, device, copy: true);
    }
}
