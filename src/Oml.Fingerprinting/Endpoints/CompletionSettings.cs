namespace Oml.Fingerprinting.Endpoints;

/// <summary>Which OpenAI-compatible API a request goes through.</summary>
public enum CompletionMode
{
    /// <summary>POST /v1/completions with a raw prompt.</summary>
    Completions,
    /// <summary>POST /v1/chat/completions with the prompt as a single user message.</summary>
    Chat,
}

/// <summary>Decoding settings for one completion request.</summary>
/// <param name="MaxTokens">The most tokens to generate (≥ 1).</param>
/// <param name="Temperature">Sampling temperature; 0 is greedy decoding.</param>
/// <param name="TopP">Nucleus sampling mass, in (0, 1].</param>
/// <param name="Seed">Sampling seed, when the server supports one.</param>
/// <param name="Model">Model name; null uses the endpoint's model.</param>
/// <param name="Mode">Completions or chat completions.</param>
public sealed record CompletionSettings(
    int MaxTokens = 32,
    double Temperature = 0.0,
    double TopP = 1.0,
    int? Seed = null,
    string? Model = null,
    CompletionMode Mode = CompletionMode.Completions)
{
    /// <summary>Greedy decoding through /v1/completions, 32 tokens.</summary>
    public static CompletionSettings Greedy { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> when a setting is out of range.</summary>
    public void Validate()
    {
        if (MaxTokens < 1) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "max tokens must be at least 1.");
        if (!(Temperature >= 0.0 && Temperature <= 2.0)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be in [0, 2].");
        if (!(TopP > 0.0 && TopP <= 1.0)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top_p must be in (0, 1].");
        if (!Enum.IsDefined(Mode)) throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "unknown completion mode.");
    }
}

/// <summary>A text completion service: the model under test.</summary>
public interface ICompletionEndpoint
{
    /// <summary>Completes <paramref name="prompt"/> and returns the generated text only.</summary>
    Task<string> CompleteAsync(string prompt, CompletionSettings s, CancellationToken ct);
}

/// <summary>
/// A completion service that also answers several prompts in one request (the OpenAI completions API's array of
/// prompts, which vLLM, TGI and <c>Oml.Server</c> accept): one request and one round trip for many keys.
/// </summary>
public interface IBatchCompletionEndpoint : ICompletionEndpoint
{
    /// <summary>
    /// Completes every prompt with the same settings (completions mode only) and returns the generated texts in the
    /// order of <paramref name="prompts"/>. A server that refuses an array of prompts, or answers it with other than
    /// one choice a prompt, raises <see cref="CompletionEndpointException"/> (HTTP status or malformed answer).
    /// </summary>
    Task<IReadOnlyList<string>> CompleteBatchAsync(IReadOnlyList<string> prompts, CompletionSettings s, CancellationToken ct);
}

/// <summary>An answer with the ids of the tokens it was generated as, in order.</summary>
/// <param name="Text">The generated text.</param>
/// <param name="TokenIds">The generated tokens' ids (the server's vocabulary).</param>
public sealed record TokenAnswer(string Text, IReadOnlyList<int> TokenIds);

/// <summary>
/// A completion service that also tells which tokens it generated (vLLM's <c>return_tokens_as_token_ids</c> with
/// logprobs, which <c>Oml.Server</c> answers too), so that answers can be matched token by token as a local model's are.
/// </summary>
public interface ITokenCompletionEndpoint : IBatchCompletionEndpoint
{
    /// <summary>Completes <paramref name="prompt"/> and returns the generated text and token ids. A server that does not
    /// return the ids raises <see cref="CompletionEndpointException"/> of kind <see cref="CompletionErrorKind.NoTokenIds"/>.</summary>
    Task<TokenAnswer> CompleteTokensAsync(string prompt, CompletionSettings s, CancellationToken ct);

    /// <summary>Completes every prompt in one request (completions mode only), as <see cref="IBatchCompletionEndpoint.CompleteBatchAsync"/>
    /// does, with each answer's token ids.</summary>
    Task<IReadOnlyList<TokenAnswer>> CompleteTokensBatchAsync(IReadOnlyList<string> prompts, CompletionSettings s, CancellationToken ct);
}

/// <summary>What went wrong in a <see cref="CompletionEndpointException"/>.</summary>
public enum CompletionErrorKind
{
    /// <summary>The server answered with a non-success HTTP status.</summary>
    HttpStatus,
    /// <summary>No answer within the configured timeout.</summary>
    Timeout,
    /// <summary>The answer was not the JSON expected of an OpenAI-compatible server.</summary>
    MalformedResponse,
    /// <summary>The connection failed (refused, reset, DNS).</summary>
    Network,
    /// <summary>Token ids were asked for, and the answer did not carry them (a server without vLLM's
    /// <c>return_tokens_as_token_ids</c>, or without logprobs).</summary>
    NoTokenIds,
}

/// <summary>A failed completion request, with the cause spelled out.</summary>
public sealed class CompletionEndpointException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CompletionEndpointException(CompletionErrorKind kind, string message, int? statusCode = null, int attempts = 1, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        StatusCode = statusCode;
        Attempts = attempts;
    }

    /// <summary>What went wrong.</summary>
    public CompletionErrorKind Kind { get; }

    /// <summary>The HTTP status of the last answer, if one came.</summary>
    public int? StatusCode { get; }

    /// <summary>How many attempts were made.</summary>
    public int Attempts { get; }
}
