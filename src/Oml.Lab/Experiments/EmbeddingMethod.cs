using System.Globalization;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Training;

namespace Oml.Lab.Experiments;

/// <summary>
/// The embedding method of a lab model (<see cref="FingerprintSpec.Train"/>), with the names <c>oml embed</c> writes in
/// its manifest: "all" or another trainable subset (<see cref="TrainableSpec"/>), "lora:R" (as <c>oml embed --lora R</c>)
/// or "expand:N" (as <c>oml embed --expand N</c>).
/// </summary>
public sealed record EmbeddingMethod(string Subset, int LoraRank, int Expand)
{
    public static EmbeddingMethod Parse(string? text)
    {
        var s = (text ?? "all").Trim();
        if (s.StartsWith("lora:", StringComparison.Ordinal)) return new("all", Count(s["lora:".Length..], "lora:R", "rank"), 0);
        if (s.StartsWith("expand:", StringComparison.Ordinal)) return new("all", 0, Count(s["expand:".Length..], "expand:N", "number of new units"));
        TrainableSpec.Parse(s, "train");
        return new(s, 0, 0);
    }

    private static int Count(string n, string form, string what) =>
        int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= 1
            ? v : throw new ArgumentException($"{form} needs a {what} of at least 1, not '{n}'");

    public override string ToString() => LoraRank > 0 ? $"lora:{LoraRank}" : Expand > 0 ? $"expand:{Expand}" : Subset;

    /// <summary>
    /// Readies <paramref name="model"/> for embedding with this method and returns the model to train (for expansion a
    /// new, widened one: the input is disposed), the options that train the right weights, and the gradient masks the
    /// caller disposes after training (expansion only). LoRA adapters stay on the model; saving merges them.
    /// </summary>
    public (CausalLM Model, EmbeddingOptions Options, Dictionary<string, Tensor>? Masks) Prepare(CausalLM model, EmbeddingOptions options, ulong seed)
    {
        if (Expand > 0)
        {
            var (wide, masks) = Expansion.WidenMlp(model, Expand, seed);
            model.Dispose();
            return (wide, Expansion.TrainNewUnitsOnly(options, masks), masks);
        }
        if (LoraRank > 0)
        {
            model.AddLora(n => n.Contains(".self_attn.", StringComparison.Ordinal) || n.Contains(".mlp.", StringComparison.Ordinal), LoraRank, 2.0 * LoraRank, seed);
            return (model, options with { Trainable = CausalLM.IsAdapter }, null);
        }
        return (model, options with { Trainable = TrainableSpec.Parse(Subset, "train") }, null);
    }
}
