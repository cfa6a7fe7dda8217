namespace Oml.Fingerprinting.Embedding;

/// <summary>What the base model's self-generated benign and held-out sequences start from (<see cref="EmbeddingOptions.SelfBenignPrompt"/>).</summary>
public enum SelfPrompt
{
    /// <summary>
    /// <see cref="FingerprintTrainer.SelfPromptLength"/> tokens drawn uniformly from the vocabulary (seeded): varied
    /// starts, but the first sampled tokens continue noise.
    /// </summary>
    Random,
    /// <summary>
    /// The token a document follows (<see cref="FingerprintTrainer.DocumentStartToken"/>: EOS, else BOS): every sample
    /// is text the base writes from a document's start, the distribution of ordinary text it learned.
    /// </summary>
    DocumentStart,
}

/// <summary>The names of <see cref="SelfPrompt"/> values on the command line, in lab configs and in manifests: "random" and "start".</summary>
public static class SelfPrompts
{
    public static string Name(SelfPrompt p) => p switch
    {
        SelfPrompt.Random => "random",
        SelfPrompt.DocumentStart => "start",
        _ => throw new ArgumentOutOfRangeException(nameof(p), p, "unknown self-generated prompt"),
    };

    /// <summary>Parses "random" or "start" (any case); anything else is an <see cref="ArgumentException"/> naming <paramref name="what"/>.</summary>
    public static SelfPrompt Parse(string? text, string what) => text?.Trim().ToLowerInvariant() switch
    {
        "random" => SelfPrompt.Random,
        "start" => SelfPrompt.DocumentStart,
        _ => throw new ArgumentException($"{what} must be random or start (got '{text}')"),
    };
}
