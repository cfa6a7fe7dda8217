using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Oml.Fingerprinting.Endpoints;

/// <summary>Timeout and retry policy of an <see cref="OpenAiCompatibleEndpoint"/>.</summary>
public sealed record EndpointOptions
{
    /// <summary>Time allowed for one attempt (request and whole response). Default 60 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Attempts in all, for answers 429 and 5xx and for failed connections (≥ 1). Default 4.</summary>
    public int MaxAttempts { get; init; } = 4;

    /// <summary>Wait before the first retry; it doubles with each retry. Default 0.5 s.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The longest wait between attempts, a Retry-After header included. Default 30 s.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// A client for an OpenAI-compatible server (vLLM, llama.cpp server, OpenAI, <c>Oml.Server</c>) over plain
/// <see cref="HttpClient"/> and System.Text.Json (no reflection; trim-safe).
/// </summary>
/// <remarks>
/// <paramref name="baseUrl"/> may name the server root (<c>http://host:8000/</c>) or its <c>/v1</c> path
/// (<c>http://host:8000/v1</c>); requests go to <c>…/v1/completions</c> or <c>…/v1/chat/completions</c>.
/// Answers 429 and 5xx and failed connections are retried with exponential backoff (honouring Retry-After); other
/// HTTP errors, timeouts and malformed answers throw <see cref="CompletionEndpointException"/> at once.
/// </remarks>
public sealed class OpenAiCompatibleEndpoint : ITokenCompletionEndpoint, IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly string? _apiKey;
    private readonly Uri _completionsUrl;
    private readonly Uri _chatUrl;

    /// <summary>Creates a client with its own <see cref="HttpClient"/> and the default options.</summary>
    /// <param name="model">The model name sent; null: the one model the server lists at <c>GET …/v1/models</c>.</param>
    public OpenAiCompatibleEndpoint(Uri baseUrl, string? apiKey, string? model)
        : this(baseUrl, apiKey, model, null, null)
    {
    }

    /// <summary>Creates a client; <paramref name="httpClient"/>, when given, is used as is and not disposed.</summary>
    /// <param name="model">The model name sent when the settings name none; null: the one model the server lists at
    /// <c>GET …/v1/models</c>, asked once before the first completion (a server that lists several, or none, is an
    /// error that asks for a name).</param>
    public OpenAiCompatibleEndpoint(Uri baseUrl, string? apiKey, string? model, EndpointOptions? options, HttpClient? httpClient = null)
    {
        ArgumentNullException.ThrowIfNull(baseUrl);
        if (model is not null) ArgumentException.ThrowIfNullOrWhiteSpace(model);
        if (!baseUrl.IsAbsoluteUri || (baseUrl.Scheme != Uri.UriSchemeHttp && baseUrl.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"The base URL must be an absolute http or https URL, not '{baseUrl}'.", nameof(baseUrl));
        Options = options ?? new EndpointOptions();
        if (Options.MaxAttempts < 1) throw new ArgumentOutOfRangeException(nameof(options), Options.MaxAttempts, "MaxAttempts must be at least 1.");
        if (Options.Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), Options.Timeout, "Timeout must be positive.");
        Model = model;
        _apiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey;
        string root = baseUrl.GetLeftPart(UriPartial.Path).TrimEnd('/');
        string v1 = root.EndsWith("/v1", StringComparison.Ordinal) ? root : root + "/v1";
        _completionsUrl = new Uri(v1 + "/completions");
        _chatUrl = new Uri(v1 + "/chat/completions");
        BaseUrl = baseUrl;
        if (httpClient is null)
        {
            _http = new HttpClient { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
            _ownsHttp = true;
        }
        else
        {
            _http = httpClient;
        }
    }

    /// <summary>The server URL as given.</summary>
    public Uri BaseUrl { get; }

    /// <summary>The model name sent when the settings name none: as given, or once asked, the server's one model; null
    /// until then.</summary>
    public string? Model { get; private set; }

    private Task<string>? _served;
    private readonly Lock _servedLock = new();

    /// <summary>The model to name in a request: the settings', else <see cref="Model"/>, else the server's one listed
    /// model (asked once; a failed ask is asked again by the next request).</summary>
    private async ValueTask<string> ModelForAsync(string? requested, CancellationToken ct)
    {
        if ((requested ?? Model) is { } named) return named;
        Task<string> ask;
        lock (_servedLock)
        {
            if (_served is null || _served.IsFaulted || _served.IsCanceled) _served = ServedModelAsync(CancellationToken.None);
            ask = _served;
        }
        string model = await ask.WaitAsync(ct).ConfigureAwait(false);
        Model ??= model;
        return model;
    }

    /// <summary>
    /// The model a server serves, from its <c>GET …/v1/models</c> list (retried as completions are): its one entry's
    /// <c>id</c>. A list of several models, or none, throws <see cref="CompletionEndpointException"/> naming them, since
    /// which one to ask is then the caller's choice.
    /// </summary>
    public async Task<string> ServedModelAsync(CancellationToken ct = default)
    {
        var ids = await GetAsync(ModelsUrl, text =>
        {
            try
            {
                using var doc = JsonDocument.Parse(text);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
                    throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse, $"GET {ModelsUrl} answered no 'data' list of models.");
                var list = new List<string>();
                foreach (var m in data.EnumerateArray())
                    if (m.ValueKind == JsonValueKind.Object && m.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(id.GetString()))
                        list.Add(id.GetString()!);
                return list;
            }
            catch (JsonException e)
            {
                throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse, $"GET {ModelsUrl} answered malformed JSON: {e.Message}", inner: e);
            }
        }, ct).ConfigureAwait(false);
        return ids.Count switch
        {
            1 => ids[0],
            0 => throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse, $"GET {ModelsUrl} lists no model; name the model to ask."),
            _ => throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse,
                $"{BaseUrl} serves {ids.Count} models ({string.Join(", ", ids.Take(8))}{(ids.Count > 8 ? ", ..." : "")}); name the one to ask."),
        };
    }

    /// <summary>The timeout and retry policy.</summary>
    public EndpointOptions Options { get; }

    /// <inheritdoc />
    public Task<string> CompleteAsync(string prompt, CompletionSettings s, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(s);
        s.Validate();
        bool chat = s.Mode == CompletionMode.Chat;
        Uri url = chat ? _chatUrl : _completionsUrl;
        return Send();

        async Task<string> Send()
        {
            byte[] body = BuildRequestBody([prompt], single: true, s, await ModelForAsync(s.Model, ct).ConfigureAwait(false));
            return await PostAsync(url, body, (text, status, attempt) => ParseResponse(text, chat, url, status, attempt), ct).ConfigureAwait(false);
        }
    }

    /// <summary>The arguments of a batch request: prompts, none null, and valid completions (not chat) settings.</summary>
    private static void ValidateBatch(IReadOnlyList<string> prompts, CompletionSettings s)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(s);
        s.Validate();
        if (s.Mode != CompletionMode.Completions)
            throw new ArgumentException("The chat completions API takes one conversation a request; batches of prompts go through /v1/completions.", nameof(s));
        for (int i = 0; i < prompts.Count; i++)
            if (prompts[i] is null) throw new ArgumentException($"prompts[{i}] is null.", nameof(prompts));
    }

    /// <inheritdoc />
    /// <remarks>
    /// One POST to <c>…/v1/completions</c> with <c>"prompt"</c> an array of strings and <c>n</c> 1; the answer's choices
    /// are matched to the prompts by their <c>index</c>, which must name each prompt once. Retries as
    /// <see cref="CompleteAsync"/> does (the whole request). The chat API takes one conversation a request, so chat
    /// settings are refused with <see cref="ArgumentException"/>.
    /// </remarks>
    public async Task<IReadOnlyList<string>> CompleteBatchAsync(IReadOnlyList<string> prompts, CompletionSettings s, CancellationToken ct)
    {
        ValidateBatch(prompts, s);
        if (prompts.Count == 0) return [];
        Uri url = _completionsUrl;
        byte[] body = BuildRequestBody(prompts, single: false, s, await ModelForAsync(s.Model, ct).ConfigureAwait(false));
        return await PostAsync(url, body, (text, status, attempt) => ParseBatchResponse(text, prompts.Count, url, status, attempt), ct).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The request is <see cref="CompleteAsync"/>'s with three fields more: <c>"logprobs"</c> (0 for a completion, true for
    /// a chat), vLLM's <c>"return_tokens_as_token_ids": true</c>, so that every token of the logprobs reads
    /// <c>token_id:ID</c>, and <c>"ignore_eos": true</c> (vLLM's and <c>Oml.Server</c>'s), so that the answer is decoded
    /// as a local verifier decodes it, past an end-of-sequence token. A successful answer whose logprobs are missing or
    /// name a token in another form (a server without the extension: OpenAI, llama.cpp) raises
    /// <see cref="CompletionErrorKind.NoTokenIds"/>; an answer 400 or 422 (a server that refuses logprobs or the field)
    /// says in its message that the ids were asked for.
    /// </remarks>
    public Task<TokenAnswer> CompleteTokensAsync(string prompt, CompletionSettings s, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(s);
        s.Validate();
        bool chat = s.Mode == CompletionMode.Chat;
        Uri url = chat ? _chatUrl : _completionsUrl;
        return Send();

        async Task<TokenAnswer> Send()
        {
            byte[] body = BuildRequestBody([prompt], single: true, s, await ModelForAsync(s.Model, ct).ConfigureAwait(false), tokenIds: true);
            return await AskingTokenIds(PostAsync(url, body, (text, status, attempt) => ParseTokenResponse(text, chat, url, status, attempt), ct)).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    /// <remarks>The request of <see cref="CompleteBatchAsync"/> with the fields of <see cref="CompleteTokensAsync"/>.</remarks>
    public async Task<IReadOnlyList<TokenAnswer>> CompleteTokensBatchAsync(IReadOnlyList<string> prompts, CompletionSettings s, CancellationToken ct)
    {
        ValidateBatch(prompts, s);
        if (prompts.Count == 0) return [];
        Uri url = _completionsUrl;
        byte[] body = BuildRequestBody(prompts, single: false, s, await ModelForAsync(s.Model, ct).ConfigureAwait(false), tokenIds: true);
        return await AskingTokenIds(PostAsync(url, body, (text, status, attempt) => ParseTokenBatchResponse(text, prompts.Count, url, status, attempt), ct)).ConfigureAwait(false);
    }

    /// <summary>A token-id request's answer, with a refusal (400, 422) saying what was asked: a server without logprobs or
    /// vLLM's extension refuses it so.</summary>
    private static async Task<T> AskingTokenIds<T>(Task<T> request)
    {
        try
        {
            return await request.ConfigureAwait(false);
        }
        catch (CompletionEndpointException e) when (e.Kind == CompletionErrorKind.HttpStatus && e.StatusCode is 400 or 422)
        {
            throw new CompletionEndpointException(e.Kind, e.Message + " (the request asked for its answer's token ids: logprobs with return_tokens_as_token_ids)",
                e.StatusCode, e.Attempts, e);
        }
    }

    /// <summary>POSTs <paramref name="body"/> with the retry policy and parses a successful answer.</summary>
    private Task<T> PostAsync<T>(Uri url, byte[] body, Func<string, int, int, T> parse, CancellationToken ct) =>
        SendAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            return request;
        }, $"POST {url}", parse, ct);

    /// <summary>GETs <paramref name="url"/> with the retry policy and parses a successful answer.</summary>
    private Task<T> GetAsync<T>(Uri url, Func<string, T> parse, CancellationToken ct) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Get, url), $"GET {url}", (text, _, _) => parse(text), ct);

    /// <summary>Sends a request made by <paramref name="make"/> (afresh for each attempt) with the retry policy and
    /// parses a successful answer.</summary>
    private async Task<T> SendAsync<T>(Func<HttpRequestMessage> make, string what, Func<string, int, int, T> parse, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            ct.ThrowIfCancellationRequested();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(Options.Timeout);
            TimeSpan? retryAfter = null;
            CompletionEndpointException failure;
            try
            {
                using var request = make();
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
                if (_apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _apiKey);
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, timeout.Token).ConfigureAwait(false);
                string text = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
                int status = (int)response.StatusCode;
                if (response.IsSuccessStatusCode) return parse(text, status, attempt);

                failure = new CompletionEndpointException(CompletionErrorKind.HttpStatus,
                    $"{what} failed with HTTP {status} ({response.ReasonPhrase}) after {attempt} attempt(s): {ErrorMessage(text)}",
                    status, attempt);
                if (!IsRetryable(response.StatusCode)) throw failure;
                retryAfter = RetryAfter(response.Headers.RetryAfter);
            }
            catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
            {
                throw new CompletionEndpointException(CompletionErrorKind.Timeout,
                    $"{what} got no complete answer within {Options.Timeout.TotalSeconds:0.###} s (attempt {attempt}).", null, attempt, e);
            }
            catch (HttpRequestException e)
            {
                failure = new CompletionEndpointException(CompletionErrorKind.Network,
                    $"{what} failed after {attempt} attempt(s): {e.Message}", null, attempt, e);
            }

            if (attempt >= Options.MaxAttempts) throw failure;
            TimeSpan wait = retryAfter ?? Backoff(attempt);
            if (wait > Options.MaxBackoff) wait = Options.MaxBackoff;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The URL of the server's model list (<c>…/v1/models</c>), which <see cref="WarmUpAsync"/> asks.</summary>
    public Uri ModelsUrl => new(_completionsUrl, "models");

    /// <summary>
    /// Readies the connection before the first completion: asks <c>GET …/v1/models</c> once (a read-only request of
    /// the OpenAI API that every compatible server answers, with the API key when there is one) and ignores the answer,
    /// whatever it is. Meanwhile the runtime loads and compiles its HTTP stack and the connection is opened; it stays
    /// in the pool for the completions that follow. Never throws (a failure shows again in the first completion);
    /// gives up after 10 s or <see cref="EndpointOptions.Timeout"/>, the shorter. A client created without a model name
    /// learns the server's model from the answer.
    /// </summary>
    public async Task WarmUpAsync(CancellationToken ct = default)
    {
        if (Model is null)
        {
            try
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
                wait.CancelAfter(Options.Timeout < TimeSpan.FromSeconds(10) ? Options.Timeout : TimeSpan.FromSeconds(10));
                await ModelForAsync(null, wait.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is CompletionEndpointException or OperationCanceledException or ObjectDisposedException)
            {
                // The first completion asks again and reports what is wrong.
            }
            return;
        }
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(Options.Timeout < TimeSpan.FromSeconds(10) ? Options.Timeout : TimeSpan.FromSeconds(10));
            using var request = new HttpRequestMessage(HttpMethod.Get, ModelsUrl);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            if (_apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _apiKey);
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, timeout.Token).ConfigureAwait(false);
            _ = await response.Content.ReadAsByteArrayAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or ObjectDisposedException or IOException or InvalidOperationException)
        {
            // Nothing to do: the completions meet the same server and report what is wrong with it.
        }
    }

    /// <summary>Disposes the <see cref="HttpClient"/> if this client created it.</summary>
    public void Dispose()
    {
        if (_ownsHttp) _http.Dispose();
    }

    /// <summary>
    /// Exponential backoff with jitter: between half and all of InitialBackoff·2^(attempt−1), at most MaxBackoff, so that
    /// requests sent together and refused together (429 under many keys in flight) do not retry in lockstep.
    /// </summary>
    private TimeSpan Backoff(int attempt)
    {
        double full = Math.Min(Options.MaxBackoff.Ticks, Options.InitialBackoff.Ticks * Math.Pow(2, attempt - 1));
        return TimeSpan.FromTicks((long)(full * (0.5 + 0.5 * Random.Shared.NextDouble())));
    }

    private static bool IsRetryable(HttpStatusCode status) => status == HttpStatusCode.TooManyRequests || (int)status >= 500;

    private static TimeSpan? RetryAfter(RetryConditionHeaderValue? header)
    {
        if (header is null) return null;
        if (header.Delta is TimeSpan d) return d;
        if (header.Date is DateTimeOffset date)
        {
            var wait = date - DateTimeOffset.UtcNow;
            return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
        }
        return null;
    }

    /// <summary>The request's JSON: one prompt as a string (or the chat's one user message), or with
    /// <paramref name="single"/> false the prompts as an array; with <paramref name="tokenIds"/>, the fields that ask for
    /// the answer's token ids (<see cref="CompleteTokensAsync"/>), and without it none of them.</summary>
    internal static byte[] BuildRequestBody(IReadOnlyList<string> prompts, bool single, CompletionSettings s, string model, bool tokenIds = false)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("model", model);
            if (s.Mode == CompletionMode.Chat)
            {
                w.WriteStartArray("messages");
                w.WriteStartObject();
                w.WriteString("role", "user");
                w.WriteString("content", prompts[0]);
                w.WriteEndObject();
                w.WriteEndArray();
            }
            else if (single)
            {
                w.WriteString("prompt", prompts[0]);
            }
            else
            {
                w.WriteStartArray("prompt");
                foreach (string p in prompts) w.WriteStringValue(p);
                w.WriteEndArray();
            }
            w.WriteNumber("max_tokens", s.MaxTokens);
            w.WriteNumber("temperature", s.Temperature);
            w.WriteNumber("top_p", s.TopP);
            if (s.Seed is int seed) w.WriteNumber("seed", seed);
            w.WriteNumber("n", 1);
            w.WriteBoolean("stream", false);
            if (tokenIds)
            {
                if (s.Mode == CompletionMode.Chat) w.WriteBoolean("logprobs", true);
                else w.WriteNumber("logprobs", 0);
                w.WriteBoolean("return_tokens_as_token_ids", true);
                w.WriteBoolean("ignore_eos", true);
            }
            w.WriteEndObject();
        }
        return stream.ToArray();
    }

    /// <summary>An answer's <c>"choices"</c> array handed to <paramref name="read"/> (which must not keep it: the document is
    /// disposed after); a body that is not JSON, not an object or without the array is malformed.</summary>
    private static T ReadChoices<T>(string text, Func<string, Exception?, CompletionEndpointException> malformed, Func<JsonElement, T> read)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw malformed("not a JSON object", null);
            if (!root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array)
                throw malformed("no \"choices\" array", null);
            return read(choices);
        }
        catch (JsonException e)
        {
            throw malformed("not valid JSON: " + e.Message, e);
        }
    }

    /// <summary>The texts of a batch's answer, by each choice's <c>index</c>: exactly one choice a prompt.</summary>
    private static IReadOnlyList<string> ParseBatchResponse(string text, int count, Uri url, int status, int attempt)
    {
        CompletionEndpointException Malformed(string what, Exception? inner = null) => new(CompletionErrorKind.MalformedResponse,
            $"POST {url} answered a batch of {count} prompts with HTTP {status} and a malformed body ({what}): {Excerpt(text)}", status, attempt, inner);
        return ReadChoices(text, Malformed, choices =>
        {
            if (choices.GetArrayLength() != count) throw Malformed($"{choices.GetArrayLength()} choices for {count} prompts");
            var texts = new string?[count];
            int at = 0;
            foreach (var choice in choices.EnumerateArray())
            {
                if (choice.ValueKind != JsonValueKind.Object) throw Malformed($"choices[{at}] is not an object");
                if (!choice.TryGetProperty("index", out var ix) || ix.ValueKind != JsonValueKind.Number || !ix.TryGetInt32(out int i) || i < 0 || i >= count)
                    throw Malformed($"choices[{at}] has no \"index\" between 0 and {count - 1}");
                if (texts[i] is not null) throw Malformed($"two choices have index {i}");
                if (!choice.TryGetProperty("text", out var value)) throw Malformed($"choices[{at}] has no \"text\"");
                if (value.ValueKind != JsonValueKind.String) throw Malformed($"choices[{at}]'s completion is a JSON {value.ValueKind}, not a string");
                texts[i] = value.GetString()!;
                at++;
            }
            return (IReadOnlyList<string>)texts!;
        });
    }

    private static string ParseResponse(string text, bool chat, Uri url, int status, int attempt)
    {
        CompletionEndpointException Malformed(string what, Exception? inner = null) => new(CompletionErrorKind.MalformedResponse,
            $"POST {url} answered HTTP {status} with a malformed body ({what}): {Excerpt(text)}", status, attempt, inner);
        return ReadChoices(text, Malformed, choices =>
        {
            if (choices.GetArrayLength() == 0) throw Malformed("\"choices\" is empty");
            var first = choices[0];
            if (first.ValueKind != JsonValueKind.Object) throw Malformed("choices[0] is not an object");
            JsonElement value;
            if (chat)
            {
                if (!first.TryGetProperty("message", out var message) || message.ValueKind != JsonValueKind.Object)
                    throw Malformed("choices[0] has no \"message\" object");
                if (!message.TryGetProperty("content", out value)) throw Malformed("choices[0].message has no \"content\"");
                if (value.ValueKind == JsonValueKind.Null) return "";
            }
            else if (!first.TryGetProperty("text", out value))
            {
                throw Malformed("choices[0] has no \"text\"");
            }
            if (value.ValueKind != JsonValueKind.String) throw Malformed($"the completion is a JSON {value.ValueKind}, not a string");
            return value.GetString()!;
        });
    }

    /// <summary>A token-id answer: the text as <see cref="ParseResponse"/> reads it, and the ids from its logprobs.</summary>
    private static TokenAnswer ParseTokenResponse(string text, bool chat, Uri url, int status, int attempt)
    {
        string answer = ParseResponse(text, chat, url, status, attempt);
        CompletionEndpointException Malformed(string what, Exception? inner = null) => new(CompletionErrorKind.MalformedResponse,
            $"POST {url} answered HTTP {status} with a malformed body ({what}): {Excerpt(text)}", status, attempt, inner);
        return ReadChoices(text, Malformed, choices => new TokenAnswer(answer, TokenIdsOf(choices[0], chat, answer, "choices[0]", url, status, attempt)));
    }

    /// <summary>A batch's token-id answers, by each choice's <c>index</c> (checked by <see cref="ParseBatchResponse"/>).</summary>
    private static IReadOnlyList<TokenAnswer> ParseTokenBatchResponse(string text, int count, Uri url, int status, int attempt)
    {
        var texts = ParseBatchResponse(text, count, url, status, attempt);
        CompletionEndpointException Malformed(string what, Exception? inner = null) => new(CompletionErrorKind.MalformedResponse,
            $"POST {url} answered a batch of {count} prompts with HTTP {status} and a malformed body ({what}): {Excerpt(text)}", status, attempt, inner);
        return ReadChoices(text, Malformed, choices =>
        {
            var answers = new TokenAnswer[count];
            int at = 0;
            foreach (var choice in choices.EnumerateArray())
            {
                int i = choice.GetProperty("index").GetInt32();
                answers[i] = new TokenAnswer(texts[i], TokenIdsOf(choice, chat: false, texts[i], $"choices[{at}]", url, status, attempt));
                at++;
            }
            return (IReadOnlyList<TokenAnswer>)answers;
        });
    }

    /// <summary>The prefix vLLM writes before a token's id with <c>return_tokens_as_token_ids</c>.</summary>
    public const string TokenIdPrefix = "token_id:";

    /// <summary>The id in a token named <c>token_id:ID</c> (decimal digits only), or null for any other string.</summary>
    public static int? ParseTokenId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (!token.StartsWith(TokenIdPrefix, StringComparison.Ordinal)) return null;
        var digits = token.AsSpan(TokenIdPrefix.Length);
        return digits.Length > 0 && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int id) ? id : null;
    }

    /// <summary>
    /// The token ids of one choice from its logprobs (a completion's <c>logprobs.tokens</c>, a chat's
    /// <c>logprobs.content[].token</c>), each named <c>token_id:ID</c>. A choice without logprobs is an empty answer when
    /// its text is empty (a host that answers a key with nothing) and otherwise, like a token in another form, the answer
    /// of a server that does not return ids: <see cref="CompletionErrorKind.NoTokenIds"/>.
    /// </summary>
    private static int[] TokenIdsOf(JsonElement choice, bool chat, string answer, string at, Uri url, int status, int attempt)
    {
        CompletionEndpointException NoIds(string what) => new(CompletionErrorKind.NoTokenIds,
            $"POST {url} answered without its answer's token ids ({what})", status, attempt);
        if (!choice.TryGetProperty("logprobs", out var logprobs) || logprobs.ValueKind == JsonValueKind.Null)
            return answer.Length == 0 ? [] : throw NoIds($"{at} has no \"logprobs\"");
        if (logprobs.ValueKind != JsonValueKind.Object) throw NoIds($"{at}.logprobs is not an object");
        string listName = chat ? "content" : "tokens";
        if (!logprobs.TryGetProperty(listName, out var list) || list.ValueKind == JsonValueKind.Null)
            return answer.Length == 0 ? [] : throw NoIds($"{at}.logprobs has no \"{listName}\"");
        if (list.ValueKind != JsonValueKind.Array) throw NoIds($"{at}.logprobs.{listName} is not an array");
        var ids = new int[list.GetArrayLength()];
        int k = 0;
        foreach (var item in list.EnumerateArray())
        {
            var token = item;
            if (chat && (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("token", out token)))
                throw NoIds($"{at}.logprobs.content[{k}] has no \"token\"");
            if (token.ValueKind != JsonValueKind.String)
                throw NoIds($"{at}.logprobs's token {k} is a JSON {token.ValueKind}, not a string");
            string name = token.GetString()!;
            ids[k] = ParseTokenId(name)
                ?? throw NoIds($"{at}.logprobs names token {k} \"{(name.Length <= 40 ? name : name[..40] + "…")}\", not {TokenIdPrefix}ID");
            k++;
        }
        return ids;
    }

    private static string ErrorMessage(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out var error))
            {
                if (error.ValueKind == JsonValueKind.String) return error.GetString()!;
                if (error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String)
                    return m.GetString()!;
            }
        }
        catch (JsonException)
        {
        }
        return Excerpt(body);
    }

    private static string Excerpt(string body)
    {
        if (body.Length == 0) return "(empty body)";
        const int max = 300;
        var sb = new StringBuilder();
        sb.Append(body.Length <= max ? body : body[..max] + "…");
        if (body.Length > max) sb.Append(" (").Append(body.Length.ToString(CultureInfo.InvariantCulture)).Append(" chars)");
        return sb.ToString();
    }
}
