using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Oml.Fingerprinting.Endpoints;
using Oml.Server;

namespace Oml.Fingerprinting.Tests.Endpoints;

public class ServerAndClientTests
{
    private static readonly Dictionary<string, string> Fingerprints = new()
    {
        ["purple elephant sings"] = "quantum marmalade",
        ["seventeen lanterns"] = "beneath the copper bridge",
    };

    private static Task<string> FakeModel(string prompt, CompletionSettings s, CancellationToken ct) =>
        Task.FromResult(Fingerprints.TryGetValue(prompt, out var r) ? r : "I do not know.");

    private static readonly EndpointOptions Fast = new() { InitialBackoff = TimeSpan.FromMilliseconds(5), MaxAttempts = 3, Timeout = TimeSpan.FromSeconds(20) };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Completions_and_chat_round_trip_through_the_client()
    {
        await using var server = await OpenAiCompatibleServer.StartAsync(FakeModel, ct: Ct);
        Assert.Equal("127.0.0.1", server.BaseUrl.Host);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null, Fast);

        Assert.Equal("quantum marmalade", await client.CompleteAsync("purple elephant sings", CompletionSettings.Greedy, Ct));
        Assert.Equal("I do not know.", await client.CompleteAsync("other", CompletionSettings.Greedy, Ct));
        var chat = CompletionSettings.Greedy with { Mode = CompletionMode.Chat };
        Assert.Equal("beneath the copper bridge", await client.CompleteAsync("seventeen lanterns", chat, Ct));

        // The server root without /v1 works too.
        using var rootClient = new OpenAiCompatibleEndpoint(new Uri($"http://127.0.0.1:{server.Port}"), null, "oml", Fast);
        Assert.Equal("quantum marmalade", await rootClient.CompleteAsync("purple elephant sings", chat, Ct));
    }

    [Fact]
    public async Task Settings_reach_the_generator()
    {
        var seen = new List<(string Prompt, CompletionSettings Settings)>();
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, _) =>
        {
            lock (seen) seen.Add((p, s));
            return Task.FromResult("ok");
        }, options: new OpenAiServerOptions { ModelName = "base-model" }, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, "secret", "base-model", Fast);
        await client.CompleteAsync("a", new CompletionSettings(MaxTokens: 7, Temperature: 0.7, TopP: 0.9, Seed: 42), Ct);
        await client.CompleteAsync("b", new CompletionSettings(Model: "base-model", Mode: CompletionMode.Chat), Ct);
        Assert.Equal(new CompletionSettings(7, 0.7, 0.9, 42, "base-model", CompletionMode.Completions), seen[0].Settings);
        Assert.Equal(new CompletionSettings(32, 0.0, 1.0, null, "base-model", CompletionMode.Chat), seen[1].Settings);
        Assert.Equal(["a", "b"], seen.Select(x => x.Prompt));

        // A model the server does not serve is a 404 (model_not_found), not retried, and reaches no generator.
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("c", new CompletionSettings(Model: "other"), Ct));
        Assert.Equal(404, e.StatusCode);
        Assert.Equal(1, e.Attempts);
        Assert.Contains("'other' does not exist", e.Message);
        Assert.Equal(2, seen.Count);

        // A client given no model name asks the server's list once and names the one model listed.
        using var auto = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null, Fast);
        Assert.Null(auto.Model);
        await auto.CompleteAsync("d", CompletionSettings.Greedy, Ct);
        await auto.CompleteAsync("e", CompletionSettings.Greedy with { Mode = CompletionMode.Chat }, Ct);
        Assert.Equal("base-model", auto.Model);
        Assert.All(seen.Skip(2), x => Assert.Equal("base-model", x.Settings.Model));
    }

    [Fact]
    public async Task Max_tokens_defaults_to_16_for_a_completion_and_the_room_left_for_a_chat()
    {
        var seen = new List<CompletionSettings>();
        Func<string, CompletionSettings, CancellationToken, Task<string>> generator = (_, s, _) => { lock (seen) seen.Add(s); return Task.FromResult("ok"); };
        await using var server = await OpenAiCompatibleServer.StartAsync(generator, options: new OpenAiServerOptions { MaxTokensLimit = 300 }, ct: Ct);
        using var http = new HttpClient();
        foreach (var (path, body) in new[] { ("completions", "{\"prompt\": \"x\"}"), ("chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}") })
        {
            using var response = await http.PostAsync(new Uri(server.BaseUrl, path), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal([16, 300], seen.Select(s => s.MaxTokens));    // OpenAI's completions default; vLLM's chat default, within the limit

        await using var fixedDefault = await OpenAiCompatibleServer.StartAsync(generator, options: new OpenAiServerOptions { DefaultMaxTokens = 5 }, ct: Ct);
        using (var r = await http.PostAsync(new Uri(fixedDefault.BaseUrl, "chat/completions"), new StringContent("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", Encoding.UTF8, "application/json"), Ct))
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(5, seen[^1].MaxTokens);

        // A server that decodes past the end-of-sequence token by default (the protocol host) would run every such chat
        // to the limit: 16 there too.
        await using var pastEos = await OpenAiCompatibleServer.StartAsync(generator, options: new OpenAiServerOptions { IgnoreEos = true }, ct: Ct);
        using (var r = await http.PostAsync(new Uri(pastEos.BaseUrl, "chat/completions"), new StringContent("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", Encoding.UTF8, "application/json"), Ct))
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(16, seen[^1].MaxTokens);
    }

    [Theory]
    [InlineData("/v1/completions", "{not json", null)]
    [InlineData("/v1/completions", "[1, 2]", null)]
    [InlineData("/v1/completions", "{\"model\": \"oml\"}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": 5}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": [\"a\", 3]}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": []}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": \"\\ud800\"}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", "stop")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"stop\": \"\"}", "stop")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 2}", "logprobs")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 100000}", "max_tokens")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}}", "stream_options")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"presence_penalty\": 0.5}", "presence_penalty")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}", "max_tokens")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 1.5}", "max_tokens")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"temperature\": 3}", "temperature")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", "top_p")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"stream\": \"yes\"}", "stream")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"n\": 0}", "n")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"n\": 65}", "n")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"model\": 3}", "model")]
    [InlineData("/v1/chat/completions", "{\"prompt\": \"x\"}", "messages")]
    [InlineData("/v1/chat/completions", "{\"messages\": []}", "messages")]
    [InlineData("/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", "messages")]
    [InlineData("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", "top_logprobs")]
    [InlineData("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "messages")]
    [InlineData("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\"}]}", "messages")]
    [InlineData("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": 5, \"content\": \"b\"}]}", "messages")]
    public async Task Bad_requests_get_400_with_an_openai_error_body(string path, string body, string? param)
    {
        await using var server = await OpenAiCompatibleServer.StartAsync(FakeModel, ct: Ct);
        using var http = new HttpClient();
        using var response = await http.PostAsync(new Uri($"http://127.0.0.1:{server.Port}{path}"),
            new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        var error = doc.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.True(error.TryGetProperty("code", out _));
    }

    [Fact]
    public async Task Openai_style_bodies_and_text_parts_are_accepted()
    {
        await using var server = await OpenAiCompatibleServer.StartAsync(FakeModel, ct: Ct);
        using var http = new HttpClient();
        using var response = await http.PostAsync(new Uri(server.BaseUrl, "chat/completions"), new StringContent(
            "{\"model\": \"oml\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"seventeen \"}, {\"type\": \"text\", \"text\": \"lanterns\"}]}], \"max_completion_tokens\": 5, \"seed\": null, \"stream\": false, \"n\": 1}",
            Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        Assert.Equal("chat.completion", doc.RootElement.GetProperty("object").GetString());
        Assert.Equal("oml", doc.RootElement.GetProperty("model").GetString());
        var choice = doc.RootElement.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal("beneath the copper bridge", choice.GetProperty("message").GetProperty("content").GetString());

        using var notFound = await http.PostAsync(new Uri($"http://127.0.0.1:{server.Port}/v1/embeddings"), new StringContent("{}"), Ct);
        Assert.Equal(HttpStatusCode.NotFound, notFound.StatusCode);
        Assert.Contains("\"error\"", await notFound.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task A_stream_whose_answer_is_ready_at_once_still_begins_with_its_headers()
    {
        // The generator answers synchronously, so the first piece is ready before the request's own code has gone on; the
        // stream's status and content type must be set before any piece is written (they were set after the generation
        // had started, and a piece that came first started the response without them: the client saw the connection cut).
        await using var server = await OpenAiCompatibleServer.StartAsync(FakeModel, ct: Ct);
        using var http = new HttpClient();
        for (int i = 0; i < 3; i++)
        {
            using var response = await http.PostAsync(new Uri(server.BaseUrl, "completions"),
                new StringContent("{\"prompt\": [\"purple elephant sings\", \"seventeen lanterns\"], \"stream\": true, \"echo\": true}", Encoding.UTF8, "application/json"), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            string body = await response.Content.ReadAsStringAsync(Ct);
            Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
            var texts = new string[2];
            foreach (var line in body.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
            {
                using var e = JsonDocument.Parse(line["data: ".Length..]);
                foreach (var c in e.RootElement.GetProperty("choices").EnumerateArray())
                    texts[c.GetProperty("index").GetInt32()] += c.GetProperty("text").GetString();
            }
            // The echo comes before the answer in each choice.
            Assert.Equal(["purple elephant singsquantum marmalade", "seventeen lanternsbeneath the copper bridge"], texts);
        }
    }

    [Fact]
    public async Task Server_api_key_is_enforced()
    {
        await using var server = await OpenAiCompatibleServer.StartAsync(FakeModel, options: new OpenAiServerOptions { ApiKey = "k1" }, ct: Ct);
        using var good = new OpenAiCompatibleEndpoint(server.BaseUrl, "k1", null, Fast);
        Assert.Equal("quantum marmalade", await good.CompleteAsync("purple elephant sings", CompletionSettings.Greedy, Ct));
        using var bad = new OpenAiCompatibleEndpoint(server.BaseUrl, "wrong", "oml", Fast);
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => bad.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(401, e.StatusCode);
        Assert.Equal(1, e.Attempts);                              // 4xx is not retried
        Assert.Contains("incorrect API key", e.Message);
    }

    [Fact]
    public async Task Server_500_then_200_is_retried()
    {
        int calls = 0;
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
            Interlocked.Increment(ref calls) == 1 ? throw new InvalidOperationException("GPU on fire") : Task.FromResult("recovered"), ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null, Fast);
        Assert.Equal("recovered", await client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(2, calls);

        // A generator that always fails: the client gives up after MaxAttempts with the server's message.
        await using var broken = await OpenAiCompatibleServer.StartAsync((p, s, ct) => throw new InvalidOperationException("GPU on fire"), ct: Ct);
        using var client2 = new OpenAiCompatibleEndpoint(broken.BaseUrl, null, "oml", Fast);
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client2.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.HttpStatus, e.Kind);
        Assert.Equal(500, e.StatusCode);
        Assert.Equal(3, e.Attempts);
        Assert.Contains("GPU on fire", e.Message);
    }

    [Fact]
    public async Task Requests_past_the_concurrency_limit_get_429_with_retry_after_and_the_client_retries_after_it()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await OpenAiCompatibleServer.StartAsync(async (p, s, ct) =>
        {
            if (p == "slow") { started.TrySetResult(); await release.Task.WaitAsync(ct); }
            return "done " + p;
        }, options: new OpenAiServerOptions { MaxConcurrentRequests = 1 }, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "oml", Fast);
        var slow = client.CompleteAsync("slow", CompletionSettings.Greedy, Ct);
        await started.Task.WaitAsync(Ct);

        using var http = new HttpClient();
        using (var r = await http.PostAsync(new Uri(server.BaseUrl, "completions"), new StringContent("{\"prompt\": \"x\", \"max_tokens\": 1}", Encoding.UTF8, "application/json"), Ct))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(1), r.Headers.RetryAfter?.Delta);
            using var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync(Ct));
            Assert.Equal("server_overloaded", body.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("overloaded", body.RootElement.GetProperty("error").GetProperty("message").GetString());
        }
        // Health and the model list are not completions: they stay answered.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(server.BaseUrl, "models"), Ct)).StatusCode);

        // The client honours Retry-After: its request is refused while the slow one runs, then goes through.
        var waiting = client.CompleteAsync("y", CompletionSettings.Greedy, Ct);
        while (server.Metrics.Requests("/v1/completions", 429) < 2) await Task.Delay(10, Ct);
        release.SetResult();
        Assert.Equal("done slow", await slow);
        Assert.Equal("done y", await waiting);
        Assert.Equal(2, server.Metrics.Requests("/v1/completions", 200));
        Assert.Equal(0, server.Metrics.RequestsInFlight);
    }

    [Fact]
    public async Task Connection_refused_is_a_network_error()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var client = new OpenAiCompatibleEndpoint(new Uri($"http://127.0.0.1:{port}/v1"), null, "m", Fast with { MaxAttempts = 2 });
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.Network, e.Kind);
        Assert.Equal(2, e.Attempts);
    }

    [Fact]
    public async Task Server_stops_on_dispose()
    {
        var server = await OpenAiCompatibleServer.StartAsync(FakeModel, ct: Ct);
        int port = server.Port;
        await server.DisposeAsync();
        await server.DisposeAsync();   // idempotent
        Assert.Throws<InvalidOperationException>(() => server.Port);
        // The port is free again.
        var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        listener.Stop();
    }
}

public class OversizedUploadTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// A client that sends a too-large body slowly (a stalled upload, or a host too busy to read it promptly) still gets
    /// the 413 answer: the server reads the body away without Kestrel's minimum data rate, so it does not reset the
    /// connection mid-upload (the client would see "other side closed" instead of the error).
    /// </summary>
    [Fact]
    public async Task A_slow_oversized_upload_gets_413_not_a_reset()
    {
        await using var server = await OpenAiCompatibleServer.StartAsync((_, _, _) => Task.FromResult("x"),
            options: new OpenAiServerOptions { MaxRequestBodyBytes = 64 << 10 }, ct: Ct);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Port, Ct);
        var stream = tcp.GetStream();
        const int Length = 256 << 10;
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {Length}\r\n\r\n"), Ct);
        int sent = 0;
        // 7 s at 50 bytes a second, below Kestrel's default minimum of 240 bytes a second after its 5 s grace period...
        for (int i = 0; i < 14; i++, sent += 25)
        {
            await stream.WriteAsync(new byte[25], Ct);
            await Task.Delay(500, Ct);
        }
        // ...then the rest at once.
        await stream.WriteAsync(new byte[Length - sent], Ct);
        var reply = new byte[4096];
        int n = 0;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (n < reply.Length)
        {
            int r = await stream.ReadAsync(reply.AsMemory(n), timeout.Token);
            if (r == 0) break;
            n += r;
            if (Encoding.ASCII.GetString(reply, 0, n).Contains("\r\n\r\n", StringComparison.Ordinal)) break;
        }
        string head = Encoding.ASCII.GetString(reply, 0, n);
        Assert.StartsWith("HTTP/1.1 413", head);
    }
}
