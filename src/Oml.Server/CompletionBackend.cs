using System.Runtime.CompilerServices;
using System.Text;
using Oml.Engine;
using Oml.Fingerprinting.Endpoints;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Serving;
using Oml.Models.Tokenizers;

namespace Oml.Server;

/// <summary>One chat message of a request (text content only).</summary>
public sealed record ChatTurn(string Role, string Content, string? Name = null);

/// <summary>A prompt ready to generate from: its text and, when the backend tokenizes, its token ids.</summary>
public sealed record PromptInput(string Text, int[]? TokenIds = null);

/// <summary>How to decode one choice of a request.</summary>
/// <param name="MaxTokens">The most new tokens.</param>
/// <param name="Temperature">0 for greedy decoding.</param>
/// <param name="TopP">Nucleus mass in (0, 1].</param>
/// <param name="Seed">Seeds the choice's random stream (choice k of a request uses seed + k).</param>
/// <param name="Stop">Strings that end the text (not included in it); at most 4.</param>
/// <param name="TopLogprobs">Alternatives to report per token; null reports no log-probabilities.</param>
/// <param name="IgnoreEos">Decode past the end-of-sequence token (vLLM's ignore_eos).</param>
/// <param name="Settings">The request as <see cref="CompletionSettings"/> (for text-only generators).</param>
public sealed record DecodeRequest(int MaxTokens, double Temperature, double TopP, long? Seed, IReadOnlyList<string> Stop, int? TopLogprobs,
    bool IgnoreEos, CompletionSettings Settings);

/// <summary>A token's log-probability as reported to clients: its text (whose UTF-8 bytes are reported too), its
/// log-probability, the most likely alternatives at its position, and its id in the vocabulary when the backend knows
/// it (what a request with <c>return_tokens_as_token_ids</c> is answered with instead of the text).</summary>
public readonly record struct TokenLogprob(string Token, float Logprob, IReadOnlyList<TokenLogprob>? Top = null, int? TokenId = null);

/// <summary>A piece of a choice's output: new text, how many tokens it took, their log-probabilities (when asked), and
/// the finish reason on the last piece ("stop" or "length").</summary>
public sealed record CompletionDelta(string Text, int Tokens, IReadOnlyList<TokenLogprob>? Logprobs, string? FinishReason);

/// <summary>What an <see cref="OpenAiCompatibleServer"/> generates with.</summary>
public interface ICompletionBackend
{
    /// <summary>The most tokens of prompt and completion together; null when the backend does not count tokens.</summary>
    int? ContextLength { get; }

    /// <summary>Whether <see cref="GenerateAsync"/> reports token log-probabilities and counts tokens.</summary>
    bool CountsTokens { get; }

    /// <summary>A text prompt, tokenized when the backend counts tokens (with the tokenizer's special tokens, such as
    /// bos, when <paramref name="addSpecialTokens"/>).</summary>
    PromptInput PreparePrompt(string prompt, bool addSpecialTokens);

    /// <summary>A prompt given as token ids; throws <see cref="NotSupportedException"/> when the backend has no tokenizer.</summary>
    PromptInput PrepareTokens(int[] ids);

    /// <summary>A chat rendered through the model's chat template; throws <see cref="ArgumentException"/> when the
    /// messages do not fit the template.</summary>
    PromptInput PrepareChat(IReadOnlyList<ChatTurn> messages);

    /// <summary>Generates one choice, piece by piece; the last piece carries the finish reason.</summary>
    IAsyncEnumerable<CompletionDelta> GenerateAsync(PromptInput prompt, DecodeRequest request, CancellationToken ct);
}

/// <summary>A backend over a text generator delegate (for tests and stand-ins): no tokenizer, no log-probabilities; a
/// chat of one user message is generated from its content, a longer chat from the JSON of its messages.</summary>
public sealed class DelegateBackend(Func<string, CompletionSettings, CancellationToken, Task<string>> generator) : ICompletionBackend
{
    private readonly Func<string, CompletionSettings, CancellationToken, Task<string>> _generator = generator ?? throw new ArgumentNullException(nameof(generator));

    public int? ContextLength => null;
    public bool CountsTokens => false;
    public PromptInput PreparePrompt(string prompt, bool addSpecialTokens) => new(prompt);
    public PromptInput PrepareTokens(int[] ids) => throw new NotSupportedException("this server has no tokenizer: send the prompt as text");
    public PromptInput PrepareChat(IReadOnlyList<ChatTurn> messages) => new(ChatQuery.Of(messages));

    public async IAsyncEnumerable<CompletionDelta> GenerateAsync(PromptInput prompt, DecodeRequest request, [EnumeratorCancellation] CancellationToken ct)
    {
        string text = await _generator(prompt.Text, request.Settings, ct).ConfigureAwait(false) ?? "";
        int cut = StopStrings.Find(text, request.Stop, 0);
        yield return new CompletionDelta(cut >= 0 ? text[..cut] : text, 0, null, "stop");
    }
}

/// <summary>The text a chat stands for where one string is needed (the query a permit signs): a single user message's
/// content, else the compact JSON array of the messages' role and content.</summary>
public static class ChatQuery
{
    public static string Of(IReadOnlyList<ChatTurn> messages)
    {
        if (messages.Count == 1 && messages[0].Role == "user") return messages[0].Content;
        var node = new System.Text.Json.Nodes.JsonArray();
        foreach (var m in messages) node.Add(new System.Text.Json.Nodes.JsonObject { ["role"] = m.Role, ["content"] = m.Content });
        return node.ToJsonString();
    }
}

internal static class StopStrings
{
    /// <summary>The index where the first stop string starts in <paramref name="text"/> (searching from
    /// <paramref name="from"/>), or −1.</summary>
    public static int Find(string text, IReadOnlyList<string> stop, int from)
    {
        int best = -1;
        foreach (var s in stop)
        {
            int i = text.IndexOf(s, Math.Max(0, Math.Min(from, text.Length)), StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /// <summary>How much of <paramref name="text"/> can be sent now: not a trailing incomplete character (U+FFFD from
    /// a partial UTF-8 sequence) nor a tail that may be the start of a stop string.</summary>
    public static int SafeLength(string text, IReadOnlyList<string> stop)
    {
        int end = text.Length;
        while (end > 0 && text[end - 1] == '\uFFFD') end--;
        int hold = 0;
        foreach (var s in stop)
            for (int k = Math.Min(s.Length - 1, end); k > hold; k--)
                if (string.CompareOrdinal(text, end - k, s, 0, k) == 0) { hold = k; break; }
        return end - hold;
    }
}

/// <summary>
/// A model served with continuous batching: prompts tokenized with the model's tokenizer, chats rendered through its
/// chat template, and every request's sequences decoded together by one <see cref="BatchEngine"/>.
/// </summary>
public sealed class ModelBackend : ICompletionBackend, IDisposable
{
    private readonly Tokenizer _tokenizer;
    private readonly ChatTemplate? _template;
    private readonly int[] _eos;
    private readonly bool _ownsModel;

    /// <param name="model">The model (owned by the backend when <paramref name="ownsModel"/>).</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="chatTemplate">Its chat template; without one, chats are refused.</param>
    /// <param name="engine">Batching options (MaxBatchSize 1 decodes each request alone).</param>
    /// <param name="ownsModel">Dispose the model with the backend.</param>
    public ModelBackend(CausalLM model, Tokenizer tokenizer, ChatTemplate? chatTemplate, BatchEngineOptions? engine = null, bool ownsModel = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _template = chatTemplate;
        _ownsModel = ownsModel;
        _eos = model.Config.EosTokenIds.Count > 0 ? [.. model.Config.EosTokenIds] : tokenizer.EosTokenId is { } e ? [e] : [];
        Engine = new BatchEngine(model, engine);
    }

    /// <summary>Loads a model folder (config, weights, tokenizer.json, and tokenizer_config.json's chat template when
    /// it has one) onto <paramref name="device"/> (default: the CPU) in <paramref name="dtype"/> (default: as stored); the
    /// tokenizer through <paramref name="tokenizerCache"/> when one is given. With <paramref name="gpuMemoryUtilization"/>
    /// and a CUDA device, the engine's KV cache budget is set from the memory left once the model is loaded
    /// (<see cref="KvCacheBudget.ForDevice"/>).</summary>
    public static ModelBackend Load(string modelDir, BatchEngineOptions? engine = null, Device? device = null, DType? dtype = null,
        TokenizerCache? tokenizerCache = null, double? gpuMemoryUtilization = null)
    {
        var tokenizer = Tokenizer.FromFolder(modelDir, tokenizerCache);
        ChatTemplate? template = null;
        try
        {
            if (File.Exists(Path.Combine(modelDir, "tokenizer_config.json")) || File.Exists(Path.Combine(modelDir, "chat_template.jinja")))
                template = ChatTemplate.FromTokenizerConfig(modelDir);
        }
        catch (InvalidDataException)
        {
            // No chat template: chats are refused with a clear error.
        }
        var model = ModelFolder.Load(modelDir, device, dtype);
        try
        {
            if (gpuMemoryUtilization is { } utilization) engine = KvCacheBudget.ForDevice(model, engine ?? new BatchEngineOptions(), utilization);
            return new ModelBackend(model, tokenizer, template, engine, ownsModel: true);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public BatchEngine Engine { get; }
    public int? ContextLength => Engine.Model.Config.MaxPositionEmbeddings;
    public bool CountsTokens => true;

    public PromptInput PreparePrompt(string prompt, bool addSpecialTokens) => new(prompt, _tokenizer.Encode(prompt, addSpecialTokens));

    public PromptInput PrepareTokens(int[] ids)
    {
        int vocab = Engine.Model.Config.VocabSize;
        foreach (var id in ids)
            if ((uint)id >= (uint)vocab) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {vocab})");
        return new PromptInput(_tokenizer.Decode(ids), ids);
    }

    public PromptInput PrepareChat(IReadOnlyList<ChatTurn> messages)
    {
        if (_template is null)
            throw new ArgumentException("this model has no chat template (tokenizer_config.json chat_template); use /v1/completions");
        string text;
        try
        {
            text = _template.Render(messages.Select(m => new ChatMessage(m.Role, m.Content)
            {
                Extra = m.Name is null ? null : new Dictionary<string, object?> { ["name"] = m.Name },
            }).ToList(), addGenerationPrompt: true);
        }
        catch (ChatTemplateException e)
        {
            throw new ArgumentException("the chat template refused the messages: " + e.Message, e);
        }
        // The template writes the special tokens (bos) itself.
        return new PromptInput(text, _tokenizer.Encode(text, addSpecialTokens: false));
    }

    public async IAsyncEnumerable<CompletionDelta> GenerateAsync(PromptInput prompt, DecodeRequest request, [EnumeratorCancellation] CancellationToken ct)
    {
        var ids = prompt.TokenIds ?? _tokenizer.Encode(prompt.Text, addSpecialTokens: true);
        if (ids.Length == 0) ids = _tokenizer.BosTokenId is { } bos ? [bos] : throw new ArgumentException("the prompt is empty");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var sampling = new SamplingParams
        {
            MaxTokens = request.MaxTokens,
            Temperature = request.Temperature,
            TopP = request.TopP,
            Seed = request.Seed,
            TopLogprobs = request.TopLogprobs,
            StopTokenIds = request.IgnoreEos ? [] : _eos,
        };
        var reader = Engine.Submit(ids, sampling, stop.Token);
        try
        {
            var output = new List<int>();
            var logprobs = request.TopLogprobs is null ? null : new List<TokenLogprob>();
            int sent = 0, tokens = 0, maxStop = request.Stop.Count == 0 ? 0 : request.Stop.Max(s => s.Length);
            string sentText = "";
            while (await reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (reader.TryRead(out var t))
                {
                    tokens++;
                    if (!t.IsStopToken) output.Add(t.TokenId);
                    logprobs?.Add(new TokenLogprob(TokenText(t.TokenId), t.Logprob,
                        t.Top?.Select(x => new TokenLogprob(TokenText(x.TokenId), x.Logprob, TokenId: x.TokenId)).ToList(), t.TokenId));
                    string text = _tokenizer.Decode(output.ToArray());
                    string? finish = t.FinishReason;
                    int cut = request.Stop.Count == 0 ? -1 : StopStrings.Find(text, request.Stop, sentText.Length - maxStop);
                    if (cut >= 0)
                    {
                        text = text[..cut];
                        finish = "stop";
                    }
                    int safe = finish is not null ? text.Length : StopStrings.SafeLength(text, request.Stop);
                    if (safe < sentText.Length || string.CompareOrdinal(text, 0, sentText, 0, sentText.Length) != 0)
                        safe = sentText.Length; // never take back what was sent
                    if (safe > sentText.Length || finish is not null)
                    {
                        string piece = safe > sentText.Length ? text[sentText.Length..safe] : "";
                        sentText = text[..Math.Max(safe, sentText.Length)];
                        yield return new CompletionDelta(piece, tokens - sent, logprobs?.ToList(), finish);
                        logprobs?.Clear();
                        sent = tokens;
                    }
                    if (finish is not null)
                    {
                        stop.Cancel(); // a stop string: the engine drops the sequence at its next step
                        yield break;
                    }
                }
            }
            // The reader completed without a finish reason only when cancelled.
            ct.ThrowIfCancellationRequested();
            throw new InvalidOperationException("the decoder ended the sequence without a finish reason");
        }
        finally
        {
            // However the caller stops reading (a finish, an error, or its stream broken by a client that reset the
            // connection: then this iterator is disposed early with no cancellation), the engine drops the sequence
            // at its next step instead of decoding to max_tokens for nobody.
            stop.Cancel();
        }
    }

    private string TokenText(int id) => _tokenizer.Decode([id]);

    public void Dispose()
    {
        Engine.Dispose();
        if (_ownsModel) Engine.Model.Dispose();
    }
}
