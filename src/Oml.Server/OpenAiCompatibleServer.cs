using System.Net;
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
    /// <summary>The model name reported when a request names none. Default "oml".</summary>
    public string ModelName { get; init; } = "oml";

    /// <summary>When set, requests must carry <c>Authorization: Bearer &lt;key&gt;</c>, else 401.</summary>
    public string? ApiKey { get; init; }

    /// <summary>max_tokens when a request gives none. Default 16 (OpenAI's completions default).</summary>
    public int DefaultMaxTokens { get; init; } = 16;

    /// <summary>The largest max_tokens accepted. Default 4096.</summary>
    public int MaxTokensLimit { get; init; } = 4096;
}

/// <summary>A parsed request as a <see cref="OpenAiCompatibleServer"/> handler sees it: the prompt, the decoding settings,
/// the whole JSON body (for extra fields) and the request headers (names lowercase; repeated values joined by ",").</summary>
public sealed record ServerRequest(string Prompt, CompletionSettings Settings, JsonElement Body, IReadOnlyDictionary<string, string> Headers);

/// <summary>A handler's answer: the completion text and extra response headers (ASCII values).</summary>
public sealed record ServerReply(string Text, IReadOnlyDictionary<string, string>? Headers = null);

/// <summary>Thrown by a handler to refuse a request: the client gets <paramref name="statusCode"/> with an
/// OpenAI-style error body of type <paramref name="errorType"/>.</summary>
public sealed class RequestRefusedException(int statusCode, string message, string errorType = "invalid_request_error") : Exception(message)
{
    public int StatusCode { get; } = statusCode;
    public string ErrorType { get; } = errorType;
}

/// <summary>
/// A minimal OpenAI-compatible server on 127.0.0.1: POST <c>/v1/completions</c> and <c>/v1/chat/completions</c>,
/// answered by a generator delegate (prompt, settings, cancellation) → completion text. Invalid requests get 400 with
/// an OpenAI-style body <c>{"error": {"message", "type": "invalid_request_error", "param", "code"}}</c>; a generator
/// that throws gets 500 with <c>"type": "server_error"</c>.
/// </summary>
/// <remarks>
/// Supported request fields: model, prompt (a string, or an array of exactly one string), messages (exactly one
/// message, role "user", content a string or an array of text parts), max_tokens (or max_completion_tokens),
/// temperature [0, 2] (default 1), top_p (0, 1] (default 1), seed, n (must be 1), stream (must be false). Other fields
/// are ignored. For chat requests the generator receives the message content as the prompt and
/// <see cref="CompletionMode.Chat"/>; applying a chat template is the generator's business.
/// </remarks>
public sealed class OpenAiCompatibleServer : IAsyncDisposable
{
    private readonly Func<ServerRequest, CancellationToken, Task<ServerReply>> _handler;
    private readonly OpenAiServerOptions _options;
    private readonly int _requestedPort;
    private WebApplication? _app;
    private int _port;

    /// <summary>Creates a server that listens on 127.0.0.1:<paramref name="port"/> (0: a free port) once started.</summary>
    public OpenAiCompatibleServer(Func<string, CompletionSettings, CancellationToken, Task<string>> generator, int port = 0, OpenAiServerOptions? options = null)
        : this(Wrap(generator), port, options) { }

    /// <summary>
    /// Creates a server whose requests go to <paramref name="handler"/>, which also sees the JSON body and headers, can
    /// add response headers, and can refuse a request with <see cref="RequestRefusedException"/>.
    /// </summary>
    public OpenAiCompatibleServer(Func<ServerRequest, CancellationToken, Task<ServerReply>> handler, int port = 0, OpenAiServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        _handler = handler;
        _options = options ?? new OpenAiServerOptions();
        _requestedPort = port;
    }

    private static Func<ServerRequest, CancellationToken, Task<ServerReply>> Wrap(Func<string, CompletionSettings, CancellationToken, Task<string>> generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        return async (r, ct) => new ServerReply(await generator(r.Prompt, r.Settings, ct).ConfigureAwait(false));
    }

    /// <summary>Creates and starts a server.</summary>
    public static Task<OpenAiCompatibleServer> StartAsync(
        Func<string, CompletionSettings, CancellationToken, Task<string>> generator, int port = 0,
        OpenAiServerOptions? options = null, CancellationToken ct = default) =>
        StartAsync(Wrap(generator), port, options, ct);

    /// <summary>Creates and starts a server with a request handler.</summary>
    public static async Task<OpenAiCompatibleServer> StartAsync(
        Func<ServerRequest, CancellationToken, Task<ServerReply>> handler, int port = 0,
        OpenAiServerOptions? options = null, CancellationToken ct = default)
    {
        var server = new OpenAiCompatibleServer(handler, port, options);
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
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, _requestedPort));
        var app = builder.Build();
        app.MapPost("/v1/completions", ctx => HandleAsync(ctx, CompletionMode.Completions));
        app.MapPost("/v1/chat/completions", ctx => HandleAsync(ctx, CompletionMode.Chat));
        app.MapFallback(ctx => WriteErrorAsync(ctx, StatusCodes.Status404NotFound,
            $"Unknown endpoint {ctx.Request.Method} {ctx.Request.Path}; this server serves POST /v1/completions and POST /v1/chat/completions.",
            "invalid_request_error", null));
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

    private sealed class BadRequest(string message, string? param) : Exception(message)
    {
        public string? Param { get; } = param;
    }

    private async Task HandleAsync(HttpContext ctx, CompletionMode mode)
    {
        var aborted = ctx.RequestAborted;
        if (_options.ApiKey is not null)
        {
            string auth = ctx.Request.Headers.Authorization.ToString();
            if (auth != "Bearer " + _options.ApiKey)
            {
                await WriteErrorAsync(ctx, StatusCodes.Status401Unauthorized, "Missing or incorrect API key.", "invalid_request_error", null).ConfigureAwait(false);
                return;
            }
        }

        string prompt, model;
        CompletionSettings settings;
        JsonElement body;
        try
        {
            JsonDocument doc;
            try
            {
                doc = await JsonDocument.ParseAsync(ctx.Request.Body, default, aborted).ConfigureAwait(false);
            }
            catch (JsonException e)
            {
                throw new BadRequest("The request body is not valid JSON: " + e.Message, null);
            }
            using (doc)
            {
                (prompt, model, settings) = ParseRequest(doc.RootElement, mode);
                body = doc.RootElement.Clone();
            }
        }
        catch (BadRequest e)
        {
            await WriteErrorAsync(ctx, StatusCodes.Status400BadRequest, e.Message, "invalid_request_error", e.Param).ConfigureAwait(false);
            return;
        }

        string text;
        ServerReply reply;
        try
        {
            var headers = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var h in ctx.Request.Headers) headers[h.Key.ToLowerInvariant()] = h.Value.ToString();
            reply = await _handler(new ServerRequest(prompt, settings, body, headers), aborted).ConfigureAwait(false);
            text = reply.Text;
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return;
        }
        catch (RequestRefusedException e)
        {
            await WriteErrorAsync(ctx, e.StatusCode, e.Message, e.ErrorType, null).ConfigureAwait(false);
            return;
        }
        catch (Exception e)
        {
            await WriteErrorAsync(ctx, StatusCodes.Status500InternalServerError, "The generator failed: " + e.Message, "server_error", null).ConfigureAwait(false);
            return;
        }

        if (reply.Headers is not null)
            foreach (var (name, value) in reply.Headers) ctx.Response.Headers[name] = value;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string id = (mode == CompletionMode.Chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        await WriteJsonAsync(ctx, StatusCodes.Status200OK, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", mode == CompletionMode.Chat ? "chat.completion" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (mode == CompletionMode.Chat)
            {
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                w.WriteString("content", text ?? "");
                w.WriteEndObject();
            }
            else
            {
                w.WriteString("text", text ?? "");
                w.WriteNull("logprobs");
            }
            w.WriteString("finish_reason", "stop");
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private (string Prompt, string Model, CompletionSettings Settings) ParseRequest(JsonElement root, CompletionMode mode)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new BadRequest("The request body must be a JSON object.", null);

        string model = _options.ModelName;
        if (Present(root, "model", out var m))
        {
            if (m.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(m.GetString()))
                throw new BadRequest("'model' must be a non-empty string.", "model");
            model = m.GetString()!;
        }

        string prompt = mode == CompletionMode.Chat ? ParseMessages(root) : ParsePrompt(root);

        int maxTokens = _options.DefaultMaxTokens;
        string maxName = mode == CompletionMode.Chat && Present(root, "max_completion_tokens", out _) ? "max_completion_tokens" : "max_tokens";
        if (Present(root, maxName, out var mt))
        {
            if (mt.ValueKind != JsonValueKind.Number || !mt.TryGetInt32(out maxTokens) || maxTokens < 1 || maxTokens > _options.MaxTokensLimit)
                throw new BadRequest($"'{maxName}' must be an integer from 1 to {_options.MaxTokensLimit}.", maxName);
        }
        double temperature = Number(root, "temperature", 1.0, t => t >= 0.0 && t <= 2.0, "a number in [0, 2]");
        double topP = Number(root, "top_p", 1.0, p => p > 0.0 && p <= 1.0, "a number in (0, 1]");
        int? seed = null;
        if (Present(root, "seed", out var sd))
        {
            if (sd.ValueKind != JsonValueKind.Number || !sd.TryGetInt64(out long seed64))
                throw new BadRequest("'seed' must be an integer.", "seed");
            seed = unchecked((int)seed64);
        }
        if (Present(root, "n", out var n) && (n.ValueKind != JsonValueKind.Number || !n.TryGetInt32(out int nv) || nv != 1))
            throw new BadRequest("Only 'n' = 1 is supported.", "n");
        if (Present(root, "stream", out var st))
        {
            if (st.ValueKind == JsonValueKind.True) throw new BadRequest("Streaming is not supported; send 'stream': false.", "stream");
            if (st.ValueKind != JsonValueKind.False) throw new BadRequest("'stream' must be a boolean.", "stream");
        }
        return (prompt, model, new CompletionSettings(maxTokens, temperature, topP, seed, model, mode));
    }

    private static string ParsePrompt(JsonElement root)
    {
        if (!Present(root, "prompt", out var p)) throw new BadRequest("'prompt' is required.", "prompt");
        if (p.ValueKind == JsonValueKind.String) return p.GetString()!;
        if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String) return p[0].GetString()!;
        throw new BadRequest("'prompt' must be a string (or an array of exactly one string); token-id prompts and batches are not supported.", "prompt");
    }

    private static string ParseMessages(JsonElement root)
    {
        if (!Present(root, "messages", out var msgs)) throw new BadRequest("'messages' is required.", "messages");
        if (msgs.ValueKind != JsonValueKind.Array || msgs.GetArrayLength() == 0) throw new BadRequest("'messages' must be a non-empty array.", "messages");
        if (msgs.GetArrayLength() != 1) throw new BadRequest("Only a single user message is supported.", "messages");
        var msg = msgs[0];
        if (msg.ValueKind != JsonValueKind.Object) throw new BadRequest("'messages[0]' must be an object.", "messages");
        if (!msg.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
            throw new BadRequest("'messages[0].role' must be a string.", "messages");
        if (role.GetString() != "user") throw new BadRequest($"'messages[0].role' must be \"user\", not \"{role.GetString()}\".", "messages");
        if (!msg.TryGetProperty("content", out var content)) throw new BadRequest("'messages[0].content' is required.", "messages");
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind == JsonValueKind.Array)
        {
            var text = new System.Text.StringBuilder();
            foreach (var part in content.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
                    || type.GetString() != "text" || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                    throw new BadRequest("Only text content parts ({\"type\": \"text\", \"text\": ...}) are supported.", "messages");
                text.Append(t.GetString());
            }
            return text.ToString();
        }
        throw new BadRequest("'messages[0].content' must be a string or an array of text parts.", "messages");
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

    private static Task WriteErrorAsync(HttpContext ctx, int status, string message, string type, string? param) =>
        WriteJsonAsync(ctx, status, w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", type);
            if (param is null) w.WriteNull("param"); else w.WriteString("param", param);
            w.WriteNull("code");
            w.WriteEndObject();
            w.WriteEndObject();
        });

    private static async Task WriteJsonAsync(HttpContext ctx, int status, Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer)) write(w);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.Length;
        await ctx.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), ctx.RequestAborted).ConfigureAwait(false);
    }
}
