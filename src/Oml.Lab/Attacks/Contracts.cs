using Oml.Models;

namespace Oml.Lab.Attacks;

/// <summary>
/// An attack that changes a model's weights (fine-tuning, merging, quantization, pruning, distillation).
/// <see cref="Apply"/> returns the attacked model; the input model is left unchanged and still owned by the caller.
/// The returned model is a new object owned by the caller (dispose it).
/// </summary>
public interface IWeightAttack
{
    /// <summary>Short name with its parameters for reports, e.g. "prune(0.3)".</summary>
    string Name { get; }

    CausalLM Apply(CausalLM model, IProgress<string>? progress = null);
}

/// <summary>
/// How a (possibly attacked) deployment answers prompts: the model plus whatever the host puts around it
/// (decoding settings, system prompts and templates, output suppression, input filtering, a coalition of copies).
/// Prompts and answers are token ids of the model's tokenizer.
/// </summary>
public interface IResponder
{
    string Name { get; }

    /// <summary>Answers each prompt with at most <paramref name="maxNewTokens"/> new tokens.</summary>
    IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens);
}
