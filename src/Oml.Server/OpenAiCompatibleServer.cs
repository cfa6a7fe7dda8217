using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Oml.Fingerprinting.Endpoints;

namespace Oml.Server;

/// <summary>Options of an <see cref="OpenAiCompatibleServer"/>.</summary>
public sealed record OpenAiServerOptions
{
    /// <summary>The served model's name: listed by /v1/models and reported when a request names none; a request naming
    /// another model is answered 404 (model_not_found). Default "oml".</summary>
    public string ModelName { get; init; } = "oml";

    /// <summary>When set, /v1 requests must carry <c>Authorization: Bearer &lt;key&gt;</c>, else 401.</summary>
    public string? ApiKey { get; init; }

    /// <summary>max_tokens when a request gives none, capped by the room left in the context; null (the default): 16 for
    /// a completion (OpenAI's and vLLM's completions default) and, for a chat, all the room left in the context up to
    /// <see cref="MaxTokensLimit"/> (vLLM's chat default) unless it decodes past the end-of-sequence token (ignore_eos,
    /// the protocol host's default), which would then run every such chat to the limit: 16 then too.</summary>
    public int? DefaultMaxTokens { get; init; }

    /// <summary>The completions API's max_tokens default (OpenAI's).</summary>
    public const int CompletionsDefaultMaxTokens = 16;

    /// <summary>The largest max_tokens accepted. Default 4096.</summary>
    public int MaxTokensLimit { get; init; } = 4096;

    /// <summary>The most tokens of prompt and completion together, below the model's own context length (vLLM's
    /// --max-model-len); null: the model's.</summary>
    public int? MaxModelLength { get; init; }

    /// <summary>Whether a completion prompt gets the tokenizer's special tokens (bos) when the request does not say
    /// (<c>add_special_tokens</c>). Default true, as vLLM and transformers do.</summary>
    public bool AddSpecialTokens { get; init; } = true;

    /// <summary>Whether decoding goes past the end-of-sequence token when the request does not say (<c>ignore_eos</c>).
    /// Default false.</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>The most prompt tokens accepted (besides the context length); null: the context length.</summary>
    public int? MaxPromptTokens { get; init; }

    /// <summary>The largest request body, checked before it is read (413 beyond). Default 4 MiB.</summary>
    public long MaxRequestBodyBytes { get; init; } = 4 << 20;

    /// <summary>The most choices in one request (prompts × n). Default 64.</summary>
    public int MaxChoices { get; init; } = 64;

    /// <summary>The most completion requests in progress at once (read and parsed, then waiting for the decoder or
    /// generating); one more is answered 429 with <c>Retry-After: 1</c> once its body is read, before it is tokenized or a
    /// protocol host checks its permit (none is spent), so a flood of requests cannot grow the server's queue and memory
    /// without bound (TGI's <c>--max-concurrent-requests</c>). Default 1024.</summary>
    public int MaxConcurrentRequests { get; init; } = DefaultMaxConcurrentRequests;

    /// <summary>The default of <see cref="MaxConcurrentRequests"/>: four times the largest default decode batch (256 on a GPU).</summary>
    public const int DefaultMaxConcurrentRequests = 1024;
}

/// <summary>A parsed request as a request handler sees it: the query (a completion's prompt, a chat's single user
/// message or the JSON of its messages), the decoding settings, the whole JSON body (for extra fields) and the request
/// headers (names lowercase; repeated values joined by ",").</summary>
public sealed record ServerRequest(string Prompt, CompletionSettings Settings, JsonElement Body, IReadOnlyDictionary<string, string> Headers)
{
    /// <summary>How many completions the request asks for (prompts × n).</summary>
    public int Choices { get; init; } = 1;

    /// <summary>Whether the answer is streamed as server-sent events.</summary>
    public bool Stream { get; init; }

    /// <summary>Whether a prompt was sent as token ids (then <see cref="Prompt"/> is empty: there is no text).</summary>
    public bool TokenIdPrompt { get; init; }

    internal IRequestRun? Run { get; init; }

    private IRequestRun Running => Run ?? throw new InvalidOperationException("this request has no generator");

    /// <summary>Tokenizes the prompts and checks them against the context (a 400 for the client when they do not fit).
    /// <see cref="GenerateAsync"/> does it first when a handler did not; a handler calls it after its own cheap checks
    /// and before it commits to anything (a protocol host: after the permit's signature, before it records the nonce).</summary>
    public void Prepare() => Running.Prepare();

    /// <summary>For a streamed answer, the first choice's text written to the client so far (echo included), also after
    /// <see cref="GenerateAsync"/> failed because the client left mid-answer; null when the answer is not streamed or the
    /// stream has not begun.</summary>
    public string? StreamedText => Run?.StreamedText();

    /// <summary>Whether a write to this request's response failed (the client closed or reset the connection).</summary>
    public bool ClientLeft => Run?.ClientLeft ?? false;

    /// <summary>Whether the request asked for its prompt echoed before the answer.</summary>
    public bool Echo { get; init; }

    /// <summary>Generates the request's answer (streaming it to the client when it asked for a stream) and returns
    /// the first choice's text. Call it at most once.</summary>
    public Task<string> GenerateAsync(CancellationToken ct) =>
        Running.GenerateAsync(ct);
}

/// <summary>What a <see cref="ServerRequest"/> drives: the server's generation of that request.</summary>
internal interface IRequestRun
{
    void Prepare();
    Task<string> GenerateAsync(CancellationToken ct);
    string? StreamedText();
    bool ClientLeft { get; }
}

/// <summary>A handler's answer: the text it vouches for and extra response headers (ASCII values). In a streamed answer
/// each header comes as a string field of the last event, named in lowercase with '-' as '_' (OML-Receipt: oml_receipt).</summary>
public sealed record ServerReply(string Text, IReadOnlyDictionary<string, string>? Headers = null);

/// <summary>Thrown by a handler to refuse a request: the client gets <paramref name="statusCode"/> with an
/// OpenAI-style error body of type <paramref name="errorType"/>.</summary>
public sealed class RequestRefusedException(int statusCode, string message, string errorType = "invalid_request_error") : Exception(message)
{
    public int StatusCode { get; } = statusCode;
    public string ErrorType { get; } = errorType;
}

/// <summary>
/// An OpenAI-compatible server on 127.0.0.1, in the shape OpenAI's clients and vLLM's users expect:
/// <c>POST /v1/completions</c> and <c>/v1/chat/completions</c> (streaming, n, prompt batches, stop, logprobs and vLLM's
/// return_tokens_as_token_ids, echo, usage), <c>GET /v1/models</c>, <c>GET /health</c> and <c>GET /metrics</c> (Prometheus). Errors come as
/// <c>{"error": {"message", "type", "param", "code"}}</c> with a 4xx status for every bad request (400 bad parameters,
/// too long a context, bad UTF-8; 401; 404; 413 too large a body) and 500 only when generation itself fails.
/// </summary>
/// <remarks>
/// Generation goes to an <see cref="ICompletionBackend"/>: a <see cref="ModelBackend"/> (a model with continuous
/// batching) or a <see cref="DelegateBackend"/> over a text generator. A request handler (see
/// <see cref="ServerRequest.GenerateAsync"/>) may stand between the parsed request and its generation, to refuse it or
/// to add headers (the protocol host's permits and receipts).
/// </remarks>
public sealed class OpenAiCompatibleServer : IAsyncDisposable
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly ICompletionBackend _backend;
    private readonly Func<ServerRequest, CancellationToken, Task<ServerReply>>? _handler;
    private readonly OpenAiServerOptions _options;
    private readonly int _requestedPort;
    private int _active;   // completion requests in progress (MaxConcurrentRequests)
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private WebApplication? _app;
    private int _port;

    /// <summary>Creates a server over a text generator that listens on 127.0.0.1:<paramref name="port"/> (0: a free port) once started.</summary>
    public OpenAiCompatibleServer(Func<string, CompletionSettings, CancellationToken, Task<string>> generator, int port = 0, OpenAiServerOptions? options = null)
        : this(new DelegateBackend(generator), port, options) { }

    /// <summary>Creates a server over <paramref name="backend"/>; requests pass through <paramref name="handler"/>
    /// when one is given (it must call <see cref="ServerRequest.GenerateAsync"/> to answer).</summary>
    public OpenAiCompatibleServer(ICompletionBackend backend, int port = 0, OpenAiServerOptions? options = null,
        Func<ServerRequest, CancellationToken, Task<ServerReply>>? handler = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        _backend = backend;
        _handler = handler;
        _options = options ?? new OpenAiServerOptions();
        _requestedPort = port;
        if (backend is ModelBackend model)
        {
            model.Engine.Stepped += Metrics.ObserveBatch;
            Metrics.Waiting = () => model.Engine.Waiting;
            Metrics.Running = () => model.Engine.Running;
            Metrics.Engine = () => model.Engine.Counters;
        }
    }

    /// <summary>Creates and starts a server over a text generator.</summary>
    public static Task<OpenAiCompatibleServer> StartAsync(
        Func<string, CompletionSettings, CancellationToken, Task<string>> generator, int port = 0,
        OpenAiServerOptions? options = null, CancellationToken ct = default) =>
        StartAsync(new DelegateBackend(generator), port, options, null, ct);

    /// <summary>Creates and starts a server over a backend, with an optional request handler.</summary>
    public static async Task<OpenAiCompatibleServer> StartAsync(ICompletionBackend backend, int port = 0, OpenAiServerOptions? options = null,
        Func<ServerRequest, CancellationToken, Task<ServerReply>>? handler = null, CancellationToken ct = default)
    {
        var server = new OpenAiCompatibleServer(backend, port, options, handler);
        try
        {
            await server.StartAsync(ct).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The request metrics (also served at GET /metrics).</summary>
    public ServerMetrics Metrics { get; } = new();

    public OpenAiServerOptions Options => _options;

    /// <summary>The port listened on (valid once started).</summary>
    public int Port => _app is null ? throw new InvalidOperationException("The server is not started.") : _port;

    /// <summary>The server's base URL, <c>http://127.0.0.1:PORT/v1/</c>.</summary>
    public Uri BaseUrl => new($"http://127.0.0.1:{Port}/v1/");

    /// <summary>Starts listening.</summary>
    public async Task StartAsync(CancellationToken ct = default)
    {
        if (_app is not null) throw new InvalidOperationException("The server is already started.");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, _requestedPort);
            k.Limits.MaxRequestBodySize = _options.MaxRequestBodyBytes;
        });
        var app = builder.Build();
        app.MapPost("/v1/completions", ctx => HandleAsync(ctx, CompletionMode.Completions));
        app.MapPost("/v1/chat/completions", ctx => HandleAsync(ctx, CompletionMode.Chat));
        app.MapGet("/v1/models", ListModelsAsync);
        app.MapGet("/v1/models/{id}", ctx => GetModelAsync(ctx, (string)ctx.Request.RouteValues["id"]!));
        app.MapGet("/health", ctx => { ctx.Response.StatusCode = 200; return Task.CompletedTask; });
        app.MapGet("/metrics", async ctx =>
        {
            ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await ctx.Response.WriteAsync(Metrics.Render(), ctx.RequestAborted).ConfigureAwait(false);
        });
        app.MapFallback(ctx => WriteErrorAsync(ctx, StatusCodes.Status404NotFound,
            $"Unknown endpoint {ctx.Request.Method} {ctx.Request.Path}; this server serves POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health and GET /metrics.",
            "invalid_request_error", null, "not_found"));
        _app = app;
        await app.StartAsync(ct).ConfigureAwait(false);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses
            ?? throw new InvalidOperationException("Kestrel reported no listening address.");
        _port = new Uri(addresses.First()).Port;
    }

    /// <summary>Stops the server and releases the port.</summary>
    public async ValueTask DisposeAsync()
    {
        var app = _app;
        _app = null;
        if (app is null) return;
        try
        {
            await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task<bool> AuthorizedAsync(HttpContext ctx)
    {
        if (_options.ApiKey is null) return true;
        if (ctx.Request.Headers.Authorization.ToString() == "Bearer " + _options.ApiKey) return true;
        await WriteErrorAsync(ctx, StatusCodes.Status401Unauthorized, "Missing or incorrect API key.", "invalid_request_error", null, "invalid_api_key").ConfigureAwait(false);
        return false;
    }

    private async Task ListModelsAsync(HttpContext ctx)
    {
        if (!await AuthorizedAsync(ctx).ConfigureAwait(false)) return;
        await WriteJsonAsync(ctx, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            WriteModel(w);
            w.WriteEndArray();
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private async Task GetModelAsync(HttpContext ctx, string id)
    {
        if (!await AuthorizedAsync(ctx).ConfigureAwait(false)) return;
        if (id != _options.ModelName)
        {
            await WriteErrorAsync(ctx, 404, $"The model '{id}' does not exist; this server serves '{_options.ModelName}'.", "invalid_request_error", "model", "model_not_found").ConfigureAwait(false);
            return;
        }
        await WriteJsonAsync(ctx, 200, WriteModel).ConfigureAwait(false);
    }

    private void WriteModel(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("id", _options.ModelName);
        w.WriteString("object", "model");
        w.WriteNumber("created", _created);
        w.WriteString("owned_by", "oml");
        if (Context is { } context) w.WriteNumber("max_model_len", context);
        w.WriteEndObject();
    }

    /// <summary>The context length requests are checked against: the backend's, capped by MaxModelLength.</summary>
    private int? Context => _backend.ContextLength is { } c ? Math.Min(c, _options.MaxModelLength ?? int.MaxValue) : null;

    // ------------------------------------------------------------------ requests

    private sealed class BadRequest(string message, string? param, int status = 400, string? code = null) : Exception(message)
    {
        public string? Param { get; } = param;
        public int Status { get; } = status;
        public string? Code { get; } = code;
    }

    /// <summary>One prompt of a request: text, token ids, or chat messages.</summary>
    private sealed record PromptSpec(string? Text, int[]? Ids, IReadOnlyList<ChatTurn>? Messages);

    private sealed record Parsed(
        CompletionMode Mode, string Model, List<PromptSpec> Prompts, int N, bool Stream, bool IncludeUsage, int? MaxTokens, string MaxTokensName,
        double Temperature, double TopP, long? Seed, List<string> Stop, int? TopLogprobs, bool Echo, bool IgnoreEos, bool AddSpecialTokens,
        bool TokensAsIds);

    private async Task HandleAsync(HttpContext ctx, CompletionMode mode)
    {
        var clock = Stopwatch.StartNew();
        // The route's own name, not the raw path: routing matches paths without regard to case or a trailing slash, and
        // a label per spelling would let any client add series to /metrics without end.
        string endpoint = mode == CompletionMode.Chat ? "/v1/chat/completions" : "/v1/completions";
        Metrics.Started();
        try
        {
            await HandleCoreAsync(ctx, mode, clock).ConfigureAwait(false);
        }
        finally
        {
            Metrics.Finished(endpoint, ctx.Response.StatusCode, clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>The answer past <see cref="OpenAiServerOptions.MaxConcurrentRequests"/>: 429 with Retry-After (OpenAI's
    /// clients and ours wait and retry).</summary>
    private Task OverloadedAsync(HttpContext ctx)
    {
        ctx.Response.Headers.RetryAfter = "1";
        return WriteErrorAsync(ctx, StatusCodes.Status429TooManyRequests,
            $"The server is overloaded: {_options.MaxConcurrentRequests} requests are in progress; retry shortly.", "server_error", null, "server_overloaded");
    }

    private async Task HandleCoreAsync(HttpContext ctx, CompletionMode mode, Stopwatch clock)
    {
        var aborted = ctx.RequestAborted;
        if (!await AuthorizedAsync(ctx).ConfigureAwait(false)) return;

        Parsed req;
        JsonElement body;
        try
        {
            if (ctx.Request.ContentLength is long length && length > _options.MaxRequestBodyBytes)
            {
                await DrainAsync(ctx, length).ConfigureAwait(false);
                throw TooLarge();
            }
            JsonDocument doc;
            try
            {
                doc = await JsonDocument.ParseAsync(ctx.Request.Body, default, aborted).ConfigureAwait(false);
            }
            catch (JsonException e)
            {
                throw new BadRequest("The request body is not valid JSON (or not valid UTF-8): " + e.Message, null);
            }
            catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                throw TooLarge();
            }
            using (doc)
            {
                req = Parse(doc.RootElement, mode);
                body = doc.RootElement.Clone();
            }
        }
        catch (BadRequest e)
        {
            await WriteErrorAsync(ctx, e.Status, e.Message, "invalid_request_error", e.Param, e.Code).ConfigureAwait(false);
            return;
        }

        // A slot among MaxConcurrentRequests once the body is read (a slow sender holds none while it uploads; Kestrel's
        // own limits govern that), before anything is tokenized, admitted or generated.
        if (Interlocked.Increment(ref _active) > _options.MaxConcurrentRequests)
        {
            Interlocked.Decrement(ref _active);
            await OverloadedAsync(ctx).ConfigureAwait(false);
            return;
        }
        try
        {
            await AnswerAsync(ctx, mode, req, body, clock).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _active);
        }
    }

    private async Task AnswerAsync(HttpContext ctx, CompletionMode mode, Parsed req, JsonElement body, Stopwatch clock)
    {
        var aborted = ctx.RequestAborted;
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var h in ctx.Request.Headers) headers[h.Key.ToLowerInvariant()] = h.Value.ToString();
        var settings = new CompletionSettings(req.MaxTokens ?? 1, req.Temperature, req.TopP, req.Seed is { } s ? unchecked((int)s) : null, req.Model, mode);
        // The prompts are tokenized (and checked against the context) when the request is generated, after a handler's
        // checks: a protocol host refuses a request without a valid permit before spending time on a 4 MiB prompt.
        var run = new Run(this, ctx, req, () => Prepare(req), clock);
        var request = new ServerRequest(Query(req), settings, body, headers)
        {
            Choices = req.Prompts.Count * req.N,
            TokenIdPrompt = req.Prompts.Any(p => p.Ids is not null),
            Stream = req.Stream,
            Run = run,
            Echo = req.Echo,
        };

        ServerReply reply;
        try
        {
            reply = _handler is null
                ? new ServerReply(await run.GenerateAsync(aborted).ConfigureAwait(false))
                : await _handler(request, aborted).ConfigureAwait(false);
            if (!run.Generated)
            {
                // A handler may settle a stream its client left part way (the protocol host signs what was sent); the
                // client is gone, so nothing more is written.
                if (run.StreamStarted) return;
                throw new InvalidOperationException("the request handler answered without generating");
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e) when (!run.StreamStarted)
        {
            var (status, type, param, code) = e switch
            {
                RequestRefusedException r => (r.StatusCode, r.ErrorType, (string?)null, (string?)null),
                BadRequest b => (b.Status, "invalid_request_error", b.Param, b.Code),
                _ => (500, "server_error", null, null),
            };
            await WriteErrorAsync(ctx, status, status == 500 ? "The generator failed: " + e.Message : e.Message, type, param, code).ConfigureAwait(false);
            return;
        }
        catch (Exception e)
        {
            // The stream has begun (status 200 sent): the error goes as an event, as OpenAI's streams carry them.
            await run.WriteStreamErrorAsync(e.Message).ConfigureAwait(false);
            return;
        }
        await run.FinishAsync(reply.Headers).ConfigureAwait(false);
    }

    /// <summary>How long the server keeps reading away a too-large body before it answers anyway.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Reads and discards a too-large body (up to 64 MiB, in a small buffer, for at most <see cref="DrainTimeout"/>)
    /// so that the client, still sending, gets the 413 answer rather than a broken connection; larger bodies are cut off.
    /// Kestrel's minimum data rate is off for the drain: a slow upload, or a server too busy to read promptly, would
    /// otherwise get the connection reset mid-body (the client sees "other side closed", not the error); the time limit
    /// bounds what a slow sender can hold instead.</summary>
    private static async Task DrainAsync(HttpContext ctx, long length)
    {
        const long MaxDrain = 64L << 20;
        var limit = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>();
        if (length > MaxDrain || limit is null || limit.IsReadOnly) return;
        limit.MaxRequestBodySize = null;
        if (ctx.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.IHttpMinRequestBodyDataRateFeature>() is { } rate) rate.MinDataRate = null;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        deadline.CancelAfter(DrainTimeout);
        var buffer = new byte[64 << 10];
        try
        {
            while (await ctx.Request.Body.ReadAsync(buffer, deadline.Token).ConfigureAwait(false) > 0) { }
        }
        catch (IOException)
        {
            // The client gave up; the answer goes out anyway.
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            // Too slow: the answer goes out, and Kestrel closes the connection after it (the body was not all read).
        }
    }

    private static BadRequest TooLarge() => new("The request body is too large.", null, StatusCodes.Status413PayloadTooLarge, "request_too_large");

    private static string Query(Parsed req)
    {
        var p = req.Prompts[0];
        return p.Messages is { } m ? ChatQuery.Of(m) : p.Text ?? "";
    }

    private List<PromptInput> Prepare(Parsed req)
    {
        var inputs = new List<PromptInput>(req.Prompts.Count);
        foreach (var p in req.Prompts)
        {
            PromptInput input;
            try
            {
                input = p.Messages is { } m ? _backend.PrepareChat(m) : p.Ids is { } ids ? _backend.PrepareTokens(ids) : _backend.PreparePrompt(p.Text!, req.AddSpecialTokens);
            }
            catch (Exception e) when (e is ArgumentException or NotSupportedException)
            {
                throw new BadRequest(e.Message, req.Mode == CompletionMode.Chat ? "messages" : "prompt");
            }
            if (input.TokenIds is { Length: 0 })
                throw new BadRequest(req.Mode == CompletionMode.Chat ? "The messages encode to no tokens." : "The prompt is empty: it encodes to no tokens.",
                    req.Mode == CompletionMode.Chat ? "messages" : "prompt");
            if (input.TokenIds is { } tokens)
            {
                int context = Context ?? int.MaxValue;
                int promptLimit = Math.Min(_options.MaxPromptTokens ?? context, context);
                string what = req.Mode == CompletionMode.Chat ? "messages" : "prompt";
                if (tokens.Length > promptLimit || tokens.Length >= context)
                    throw new BadRequest($"This model's maximum context length is {context} tokens and this server accepts at most {promptLimit} prompt tokens; "
                        + $"your {what} has {tokens.Length} tokens. Please shorten it.", what, 400, "context_length_exceeded");
                if (req.MaxTokens is { } max && tokens.Length + max > context)
                    throw new BadRequest($"This model's maximum context length is {context} tokens. However, you requested {tokens.Length + max} tokens "
                        + $"({tokens.Length} in the {what}, {max} in the completion). Please reduce the length of the {what} or completion.",
                        req.MaxTokensName, 400, "context_length_exceeded");
            }
            inputs.Add(input);
        }
        return inputs;
    }

    private Parsed Parse(JsonElement root, CompletionMode mode)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new BadRequest("The request body must be a JSON object.", null);
        bool chat = mode == CompletionMode.Chat;

        string model = _options.ModelName;
        if (Present(root, "model", out var m))
        {
            if (m.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(Str(m, "model")))
                throw new BadRequest("'model' must be a non-empty string.", "model");
            model = Str(m, "model");
            // As vLLM and OpenAI answer a model they do not serve: 404, not another model's answer under that name.
            if (model != _options.ModelName)
                throw new BadRequest($"The model '{model}' does not exist; this server serves '{_options.ModelName}'.", "model", 404, "model_not_found");
        }

        var prompts = chat ? [new PromptSpec(null, null, ParseMessages(root))] : ParsePrompts(root);

        string maxName = chat && Present(root, "max_completion_tokens", out _) ? "max_completion_tokens" : "max_tokens";
        int? maxTokens = null;
        if (Present(root, maxName, out var mt))
        {
            if (mt.ValueKind != JsonValueKind.Number || !mt.TryGetInt32(out int v) || v < 1 || v > _options.MaxTokensLimit)
                throw new BadRequest($"'{maxName}' must be an integer from 1 to {_options.MaxTokensLimit}.", maxName);
            maxTokens = v;
        }
        double temperature = Number(root, "temperature", 1.0, t => t >= 0.0 && t <= 2.0, "a number in [0, 2]");
        double topP = Number(root, "top_p", 1.0, p => p > 0.0 && p <= 1.0, "a number in (0, 1]");
        long? seed = null;
        if (Present(root, "seed", out var sd))
        {
            if (sd.ValueKind != JsonValueKind.Number || !sd.TryGetInt64(out long seed64))
                throw new BadRequest("'seed' must be an integer.", "seed");
            seed = seed64;
        }
        int n = 1;
        if (Present(root, "n", out var nEl) && (nEl.ValueKind != JsonValueKind.Number || !nEl.TryGetInt32(out n) || n < 1 || n > _options.MaxChoices))
            throw new BadRequest($"'n' must be an integer from 1 to {_options.MaxChoices}.", "n");
        if (Present(root, "best_of", out var bo) && (bo.ValueKind != JsonValueKind.Number || !bo.TryGetInt32(out int bestOf) || bestOf != n))
            throw new BadRequest("'best_of' is not supported (give it equal to 'n' or leave it out).", "best_of");
        if (prompts.Count * n > _options.MaxChoices)
            throw new BadRequest($"The request asks for {prompts.Count * n} completions (prompts × n); this server answers at most {_options.MaxChoices} per request.", "n");

        bool stream = Bool(root, "stream");
        bool includeUsage = false;
        if (Present(root, "stream_options", out var so))
        {
            if (so.ValueKind != JsonValueKind.Object) throw new BadRequest("'stream_options' must be an object.", "stream_options");
            if (!stream) throw new BadRequest("'stream_options' is only allowed when 'stream' is true.", "stream_options");
            includeUsage = Bool(so, "include_usage", "stream_options");
        }

        var stop = new List<string>();
        if (Present(root, "stop", out var st))
        {
            if (st.ValueKind == JsonValueKind.String) stop.Add(Str(st, "stop"));
            else if (st.ValueKind == JsonValueKind.Array && st.GetArrayLength() <= 4)
            {
                foreach (var x in st.EnumerateArray())
                {
                    if (x.ValueKind != JsonValueKind.String) throw new BadRequest("'stop' must be a string or an array of up to 4 strings.", "stop");
                    stop.Add(Str(x, "stop"));
                }
            }
            else throw new BadRequest("'stop' must be a string or an array of up to 4 strings.", "stop");
            if (stop.Any(s => s.Length == 0 || s.Length > 256)) throw new BadRequest("Each stop string must have 1 to 256 characters.", "stop");
        }

        int? topLogprobs = null;
        if (chat)
        {
            bool logprobs = Bool(root, "logprobs");
            if (Present(root, "top_logprobs", out var tl))
            {
                if (tl.ValueKind != JsonValueKind.Number || !tl.TryGetInt32(out int k) || k < 0 || k > 20)
                    throw new BadRequest("'top_logprobs' must be an integer from 0 to 20.", "top_logprobs");
                if (!logprobs) throw new BadRequest("'top_logprobs' needs 'logprobs': true.", "top_logprobs");
                topLogprobs = k;
            }
            else if (logprobs) topLogprobs = 0;
        }
        else if (Present(root, "logprobs", out var lp))
        {
            if (lp.ValueKind != JsonValueKind.Number || !lp.TryGetInt32(out int k) || k < 0 || k > 20)
                throw new BadRequest("'logprobs' must be an integer from 0 to 20.", "logprobs");
            topLogprobs = k;
        }
        if (topLogprobs is not null && !_backend.CountsTokens)
            throw new BadRequest("This server's generator does not report log-probabilities.", chat ? "logprobs" : "logprobs");
        bool echo = !chat && Bool(root, "echo");
        if (echo && topLogprobs is not null) throw new BadRequest("'echo' with 'logprobs' (prompt log-probabilities) is not supported.", "echo");
        // vLLM's request extension return_tokens_as_token_ids (an optional bool of both its completion and chat request
        // models, vllm/entrypoints/openai/completion/protocol.py and chat_completion/protocol.py; left out or null, its
        // server-wide --return-tokens-as-token-ids decides, off by default). It changes nothing but the log-probabilities:
        // every token named there (completions: "tokens" and the keys of each "top_logprobs" object; chat: each
        // content[].token and content[].top_logprobs[].token) is written as "token_id:" and the token's decimal id instead
        // of its text (vllm/entrypoints/generate/base/serving.py, where it formats a token as its id), so a client learns exactly which tokens were chosen, even
        // one that is not text on its own (a byte of a multi-byte character); the answer's text stays text. Without logprobs
        // it has no effect. Where this server differs: vLLM's request model coerces "true" or 1 to a bool, this one answers
        // 400 for anything but true, false and null (as for its other boolean fields); vLLM advances completions'
        // text_offset by the length of the "token_id:N" string (completion/serving.py), this one keeps it the offset in the answer's text; vLLM's
        // chat "bytes" are the chosen token's text but the "token_id:N" string's for alternatives, here always the token's
        // text. `oml verify --match partial --endpoint` reads the answer's token ids this way.
        bool tokensAsIds = Bool(root, "return_tokens_as_token_ids");

        foreach (var name in new[] { "presence_penalty", "frequency_penalty" })
            if (Present(root, name, out var pen) && (pen.ValueKind != JsonValueKind.Number || !pen.TryGetDouble(out double pv) || pv != 0))
                throw new BadRequest($"'{name}' is not supported (only 0).", name);
        if (Present(root, "logit_bias", out var lb) && (lb.ValueKind != JsonValueKind.Object || lb.EnumerateObject().Any()))
            throw new BadRequest("'logit_bias' is not supported.", "logit_bias");
        if (Present(root, "tools", out var tools) && (tools.ValueKind != JsonValueKind.Array || tools.GetArrayLength() > 0))
            throw new BadRequest("Tool calls are not supported.", "tools");
        if (Present(root, "response_format", out var rf)
            && !(rf.ValueKind == JsonValueKind.Object && rf.TryGetProperty("type", out var rft) && rft.ValueKind == JsonValueKind.String && rft.ValueEquals("text")))
            throw new BadRequest("Only 'response_format' {\"type\": \"text\"} is supported.", "response_format");
        if (Present(root, "suffix", out _)) throw new BadRequest("'suffix' is not supported.", "suffix");
        bool ignoreEos = Bool(root, "ignore_eos", fallback: _options.IgnoreEos);
        bool addSpecial = Bool(root, "add_special_tokens", fallback: _options.AddSpecialTokens);

        return new Parsed(mode, model, prompts, n, stream, includeUsage, maxTokens, maxName, temperature, topP, seed, stop, topLogprobs, echo, ignoreEos, addSpecial,
            tokensAsIds);
    }

    private static List<PromptSpec> ParsePrompts(JsonElement root)
    {
        const string Shape = "'prompt' must be a string, an array of strings, an array of token ids, or an array of arrays of token ids.";
        if (!Present(root, "prompt", out var p)) throw new BadRequest("'prompt' is required.", "prompt");
        if (p.ValueKind == JsonValueKind.String) return [new PromptSpec(Str(p, "prompt"), null, null)];
        if (p.ValueKind != JsonValueKind.Array || p.GetArrayLength() == 0) throw new BadRequest(Shape, "prompt");
        var first = p[0];
        if (first.ValueKind == JsonValueKind.Number) return [new PromptSpec(null, TokenIds(p), null)];
        var list = new List<PromptSpec>();
        foreach (var x in p.EnumerateArray())
        {
            if (x.ValueKind == JsonValueKind.String) list.Add(new PromptSpec(Str(x, "prompt"), null, null));
            else if (x.ValueKind == JsonValueKind.Array && x.GetArrayLength() > 0) list.Add(new PromptSpec(null, TokenIds(x), null));
            else throw new BadRequest(Shape, "prompt");
        }
        return list;

        static int[] TokenIds(JsonElement a)
        {
            var ids = new int[a.GetArrayLength()];
            int i = 0;
            foreach (var x in a.EnumerateArray())
                if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out ids[i++]) || ids[i - 1] < 0)
                    throw new BadRequest(Shape, "prompt");
            return ids;
        }
    }

    private static readonly HashSet<string> Roles = new(StringComparer.Ordinal) { "system", "developer", "user", "assistant", "tool" };

    private static List<ChatTurn> ParseMessages(JsonElement root)
    {
        if (!Present(root, "messages", out var msgs)) throw new BadRequest("'messages' is required.", "messages");
        if (msgs.ValueKind != JsonValueKind.Array || msgs.GetArrayLength() == 0) throw new BadRequest("'messages' must be a non-empty array.", "messages");
        var turns = new List<ChatTurn>();
        int i = 0;
        foreach (var msg in msgs.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (msg.ValueKind != JsonValueKind.Object) throw new BadRequest($"'{at}' must be an object.", "messages");
            if (!msg.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new BadRequest($"'{at}.role' must be a string.", "messages");
            string r = Str(role, "messages");
            if (!Roles.Contains(r)) throw new BadRequest($"'{at}.role' must be one of system, developer, user, assistant, tool; not \"{r}\".", "messages");
            if (r == "developer") r = "system";
            string? name = msg.TryGetProperty("name", out var nm) && nm.ValueKind == JsonValueKind.String ? Str(nm, "messages") : null;
            if (!msg.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            {
                if (r == "assistant") { turns.Add(new ChatTurn(r, "", name)); continue; }
                throw new BadRequest($"'{at}.content' is required.", "messages");
            }
            if (content.ValueKind == JsonValueKind.String) turns.Add(new ChatTurn(r, Str(content, "messages"), name));
            else if (content.ValueKind == JsonValueKind.Array)
            {
                var text = new StringBuilder();
                foreach (var part in content.EnumerateArray())
                {
                    if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
                        || !type.ValueEquals("text") || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                        throw new BadRequest("Only text content parts ({\"type\": \"text\", \"text\": ...}) are supported.", "messages");
                    text.Append(Str(t, "messages"));
                }
                turns.Add(new ChatTurn(r, text.ToString(), name));
            }
            else throw new BadRequest($"'{at}.content' must be a string or an array of text parts.", "messages");
        }
        return turns;
    }

    /// <summary>A JSON string's value; a string that is not valid UTF-16 (a lone surrogate escape such as \ud800) is a 400.</summary>
    private static string Str(JsonElement e, string param)
    {
        try
        {
            return e.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw new BadRequest($"'{param}' holds a string that is not valid Unicode (a lone surrogate such as \\ud800).", param);
        }
    }

    private static bool Bool(JsonElement root, string name, string? param = null, bool fallback = false)
    {
        if (!Present(root, name, out var e)) return fallback;
        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new BadRequest($"'{name}' must be a boolean.", param ?? name),
        };
    }

    private static double Number(JsonElement root, string name, double fallback, Func<double, bool> valid, string what)
    {
        if (!Present(root, name, out var e)) return fallback;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double v) || !valid(v))
            throw new BadRequest($"'{name}' must be {what}.", name);
        return v;
    }

    private static bool Present(JsonElement root, string name, out JsonElement value) =>
        root.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

    // ------------------------------------------------------------------ one request's generation

    /// <summary>Generates every choice of one request and writes the answer: a JSON body, or a stream of events.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "the SemaphoreSlim's wait handle is never created (AvailableWaitHandle is not used), so it owns nothing to dispose")]
    private sealed class Run(OpenAiCompatibleServer server, HttpContext ctx, Parsed req, Func<List<PromptInput>> prepare, Stopwatch clock) : IRequestRun
    {
        private List<PromptInput>? _prompts;
        private List<PromptInput> prompts => _prompts ?? throw new InvalidOperationException("the request's prompts are not prepared");

        /// <summary>Tokenizes the prompts once (BadRequest when they do not fit).</summary>
        public void Prepare() => _prompts ??= prepare();
        private readonly SemaphoreSlim _write = new(1, 1);
        private readonly string _id = (req.Mode == CompletionMode.Chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        private Choice[] _choices = [];
        private int _started;
        private bool _firstToken;

        public bool Generated { get; private set; }
        public bool StreamStarted { get; private set; }
        /// <summary>A write to the response failed: the client closed or reset the connection.</summary>
        public bool ClientLeft { get; private set; }
        private bool Chat => req.Mode == CompletionMode.Chat;

        private sealed class Choice
        {
            public int Index;
            public int Prompt;
            public readonly StringBuilder Text = new();
            public readonly StringBuilder Written = new();
            public int Tokens;
            public readonly List<TokenLogprob> Logprobs = [];
            public string FinishReason = "stop";
            public bool RoleSent;
        }

        public async Task<string> GenerateAsync(CancellationToken ct)
        {
            if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("the request was already generated");
            Prepare();
            int context = server.Context ?? int.MaxValue;
            _choices = new Choice[prompts.Count * req.N];
            using var all = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var decodes = new DecodeRequest[_choices.Length];
            for (int p = 0; p < prompts.Count; p++)
            {
                for (int j = 0; j < req.N; j++)
                {
                    var choice = _choices[p * req.N + j] = new Choice { Index = p * req.N + j, Prompt = p };
                    if (req.Echo) choice.Text.Append(prompts[p].Text);
                    int room = prompts[p].TokenIds is { } ids ? context - ids.Length : int.MaxValue;
                    int max = req.MaxTokens ?? Math.Max(1, Math.Min(server._options.DefaultMaxTokens
                        ?? (Chat && !req.IgnoreEos ? server._options.MaxTokensLimit : OpenAiServerOptions.CompletionsDefaultMaxTokens), room));
                    decodes[choice.Index] = new DecodeRequest(max, req.Temperature, req.TopP, req.Seed is { } s ? s + j : null, req.Stop, req.TopLogprobs, req.IgnoreEos,
                        new CompletionSettings(max, req.Temperature, req.TopP, req.Seed is { } s2 ? unchecked((int)(s2 + j)) : null, req.Model, req.Mode));
                }
            }
            // A stream's status and headers go out (and its echo) before any choice is generated: a backend whose first
            // piece is ready at once (a generator that answers synchronously) writes it as soon as its choice starts, and
            // a piece written first would start the response without them (the headers could no longer be set, and the
            // client saw the connection cut).
            if (req.Stream)
            {
                ctx.Response.StatusCode = 200;
                ctx.Response.ContentType = "text/event-stream; charset=utf-8";
                ctx.Response.Headers.CacheControl = "no-cache";
                ctx.Response.Headers["X-Accel-Buffering"] = "no";
                StreamStarted = true;
                await ctx.Response.StartAsync(ct).ConfigureAwait(false);
                if (req.Echo)
                    foreach (var c in _choices) await WriteChunkAsync(c, prompts[c.Prompt].Text, null, null, ct).ConfigureAwait(false);
            }
            var tasks = _choices.Select(c => GenerateChoiceAsync(c, prompts[c.Prompt], decodes[c.Index], all)).ToList();
            try
            {
                await Task.WhenAll(tasks).ConfigureAwait(false);
            }
            catch when (tasks.Any(t => t.IsFaulted))
            {
                throw tasks.First(t => t.IsFaulted).Exception!.InnerException!;
            }
            Generated = true;
            long promptTokens = prompts.Sum(p => (long)(p.TokenIds?.Length ?? 0));
            server.Metrics.Tokens(promptTokens, _choices.Sum(c => (long)c.Tokens));
            return _choices[0].Text.ToString();
        }

        private async Task GenerateChoiceAsync(Choice choice, PromptInput prompt, DecodeRequest decode, CancellationTokenSource all)
        {
            var ct = all.Token;
            try
            {
                await foreach (var delta in server._backend.GenerateAsync(prompt, decode, ct).ConfigureAwait(false))
                {
                    if (!_firstToken && (delta.Text.Length > 0 || delta.Tokens > 0))
                    {
                        _firstToken = true;
                        server.Metrics.FirstToken(clock.Elapsed.TotalSeconds);
                    }
                    choice.Text.Append(delta.Text);
                    choice.Tokens += delta.Tokens;
                    if (delta.Logprobs is { } lp) choice.Logprobs.AddRange(lp);
                    if (delta.FinishReason is { } f) choice.FinishReason = f;
                    if (req.Stream) await WriteChunkAsync(choice, delta.Text, delta.Logprobs, delta.FinishReason, ct).ConfigureAwait(false);
                }
            }
            catch
            {
                // One choice failing (a client gone mid-stream fails its write with an I/O error, not a cancellation)
                // stops its siblings: nobody will read them.
                await all.CancelAsync().ConfigureAwait(false);
                throw;
            }
        }

        /// <summary>The first choice's text written to the stream so far; null when not streaming.</summary>
        public string? StreamedText()
        {
            if (!StreamStarted || _choices is not { Length: > 0 } choices) return null;
            lock (choices[0].Written) return choices[0].Written.ToString();
        }

        private async Task WriteChunkAsync(Choice choice, string text, IReadOnlyList<TokenLogprob>? logprobs, string? finish, CancellationToken ct)
        {
            // Waiting for the role chunk: send it with the first content. Empty pieces without a finish are skipped.
            if (text.Length == 0 && finish is null && (logprobs is null || logprobs.Count == 0) && (!Chat || choice.RoleSent)) return;
            await _write.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                await WriteEventAsync(w =>
                {
                    Header(w, Chat ? "chat.completion.chunk" : "text_completion");
                    w.WriteStartArray("choices");
                    w.WriteStartObject();
                    w.WriteNumber("index", choice.Index);
                    if (Chat)
                    {
                        w.WriteStartObject("delta");
                        if (!choice.RoleSent) w.WriteString("role", "assistant");
                        if (text.Length > 0 || !choice.RoleSent) w.WriteString("content", text);
                        w.WriteEndObject();
                        choice.RoleSent = true;
                    }
                    else w.WriteString("text", text);
                    WriteLogprobs(w, logprobs, text.Length == 0 ? 0 : choice.Text.Length - text.Length);
                    if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
                    w.WriteEndObject();
                    w.WriteEndArray();
                    if (req.IncludeUsage) w.WriteNull("usage");
                    w.WriteEndObject();
                }, ct).ConfigureAwait(false);
                lock (choice.Written) choice.Written.Append(text);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException && (e is IOException || ctx.RequestAborted.IsCancellationRequested))
            {
                ClientLeft = true;
                throw;
            }
            finally
            {
                _write.Release();
            }
        }

        private void Header(Utf8JsonWriter w, string type)
        {
            w.WriteStartObject();
            w.WriteString("id", _id);
            w.WriteString("object", type);
            w.WriteNumber("created", _created);
            w.WriteString("model", req.Model);
        }

        /// <summary>How a token is named in the log-probabilities: its text, or with <c>return_tokens_as_token_ids</c>
        /// "token_id:ID" as vLLM names it (a backend that reports no id leaves the text, which a client reading ids refuses).</summary>
        private string Named(TokenLogprob t) =>
            req.TokensAsIds && t.TokenId is int id ? "token_id:" + id.ToString(System.Globalization.CultureInfo.InvariantCulture) : t.Token;

        private void WriteLogprobs(Utf8JsonWriter w, IReadOnlyList<TokenLogprob>? logprobs, int textOffset)
        {
            if (req.TopLogprobs is null || logprobs is null) { w.WriteNull("logprobs"); return; }
            w.WriteStartObject("logprobs");
            if (Chat)
            {
                w.WriteStartArray("content");
                foreach (var t in logprobs)
                {
                    ChatLogprob(w, t);
                }
                w.WriteEndArray();
                w.WriteNull("refusal");
            }
            else
            {
                w.WriteStartArray("tokens");
                foreach (var t in logprobs) w.WriteStringValue(Named(t));
                w.WriteEndArray();
                w.WriteStartArray("token_logprobs");
                foreach (var t in logprobs) Float(w, t.Logprob);
                w.WriteEndArray();
                w.WriteStartArray("top_logprobs");
                foreach (var t in logprobs)
                {
                    w.WriteStartObject();
                    foreach (var a in t.Top ?? []) { w.WritePropertyName(Named(a)); Float(w, a.Logprob); }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("text_offset");
                int offset = textOffset;
                foreach (var t in logprobs) { w.WriteNumberValue(offset); offset += t.Token.Length; }
                w.WriteEndArray();
            }
            w.WriteEndObject();

            void ChatLogprob(Utf8JsonWriter w, TokenLogprob t, bool top = false)
            {
                w.WriteStartObject();
                w.WriteString("token", Named(t));
                w.WritePropertyName("logprob");
                Float(w, t.Logprob);
                w.WriteStartArray("bytes");
                foreach (var b in Encoding.UTF8.GetBytes(t.Token)) w.WriteNumberValue(b);
                w.WriteEndArray();
                if (!top)
                {
                    w.WriteStartArray("top_logprobs");
                    foreach (var a in t.Top ?? []) ChatLogprob(w, a, true);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }

            // −∞ has no JSON form; OpenAI reports −9999 for tokens the model rules out.
            static void Float(Utf8JsonWriter w, float v) => w.WriteNumberValue(float.IsFinite(v) ? v : -9999f);
        }

        private void WriteUsage(Utf8JsonWriter w)
        {
            if (!server._backend.CountsTokens) { w.WriteNull("usage"); return; }
            long promptTokens = prompts.Sum(p => (long)(p.TokenIds?.Length ?? 0)), completion = _choices.Sum(c => (long)c.Tokens);
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", promptTokens);
            w.WriteNumber("completion_tokens", completion);
            w.WriteNumber("total_tokens", promptTokens + completion);
            w.WriteEndObject();
        }

        /// <summary>Writes the answer once generation and the handler are done.</summary>
        public async Task FinishAsync(IReadOnlyDictionary<string, string>? headers)
        {
            var ct = ctx.RequestAborted;
            if (!req.Stream)
            {
                if (headers is not null)
                    foreach (var (name, value) in headers) ctx.Response.Headers[name] = value;
                await WriteJsonAsync(ctx, 200, w =>
                {
                    Header(w, Chat ? "chat.completion" : "text_completion");
                    w.WriteStartArray("choices");
                    foreach (var c in _choices)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("index", c.Index);
                        if (Chat)
                        {
                            w.WriteStartObject("message");
                            w.WriteString("role", "assistant");
                            w.WriteString("content", c.Text.ToString());
                            w.WriteNull("refusal");
                            w.WriteEndObject();
                        }
                        else w.WriteString("text", c.Text.ToString());
                        WriteLogprobs(w, c.Logprobs, req.Echo ? prompts[c.Prompt].Text.Length : 0);
                        w.WriteString("finish_reason", c.FinishReason);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    WriteUsage(w);
                    w.WriteEndObject();
                }).ConfigureAwait(false);
                return;
            }
            try
            {
                if (req.IncludeUsage || headers is { Count: > 0 })
                {
                    await WriteEventAsync(w =>
                    {
                        Header(w, Chat ? "chat.completion.chunk" : "text_completion");
                        w.WriteStartArray("choices");
                        w.WriteEndArray();
                        if (req.IncludeUsage) WriteUsage(w);
                        foreach (var (name, value) in headers ?? new Dictionary<string, string>())
                            w.WriteString(name.ToLowerInvariant().Replace('-', '_'), value);
                        w.WriteEndObject();
                    }, ct).ConfigureAwait(false);
                }
                await ctx.Response.WriteAsync("data: [DONE]\n\n", ct).ConfigureAwait(false);
                await ctx.Response.Body.FlushAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // The client left.
            }
        }

        public async Task WriteStreamErrorAsync(string message)
        {
            try
            {
                await WriteEventAsync(w =>
                {
                    w.WriteStartObject();
                    w.WriteStartObject("error");
                    w.WriteString("message", message);
                    w.WriteString("type", "server_error");
                    w.WriteNull("param");
                    w.WriteNull("code");
                    w.WriteEndObject();
                    w.WriteEndObject();
                }, ctx.RequestAborted).ConfigureAwait(false);
                await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }

        private async Task WriteEventAsync(Action<Utf8JsonWriter> write, CancellationToken ct)
        {
            using var buffer = new MemoryStream();
            buffer.Write("data: "u8);
            using (var w = new Utf8JsonWriter(buffer, WriterOptions)) write(w);
            buffer.Write("\n\n"u8);
            await ctx.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), ct).ConfigureAwait(false);
            await ctx.Response.Body.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    // ------------------------------------------------------------------ JSON

    private static Task WriteErrorAsync(HttpContext ctx, int status, string message, string type, string? param, string? code) =>
        WriteJsonAsync(ctx, status, w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", type);
            if (param is null) w.WriteNull("param"); else w.WriteString("param", param);
            if (code is null) w.WriteNull("code"); else w.WriteString("code", code);
            w.WriteEndObject();
            w.WriteEndObject();
        });

    private static async Task WriteJsonAsync(HttpContext ctx, int status, Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, WriterOptions)) write(w);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.Length;
        try
        {
            await ctx.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), ctx.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client left.
        }
    }
}
