using System.Net;
using System.Text;
using System.Text.Json;
using Oml.Fingerprinting.Endpoints;

namespace Oml.Fingerprinting.Tests.Endpoints;

/// <summary>Client behaviour against scripted HTTP answers (no sockets).</summary>
public class ClientErrorTests
{
    private sealed class ScriptedHandler(Func<HttpRequestMessage, int, CancellationToken, Task<HttpResponseMessage>> answer) : HttpMessageHandler
    {
        public int Calls;
        public List<(Uri Uri, string? Auth, string Body)> Requests { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            int n = Interlocked.Increment(ref Calls);
            string body = request.Content is null ? "" : await request.Content.ReadAsStringAsync(cancellationToken);
            lock (Requests) Requests.Add((request.RequestUri!, request.Headers.Authorization?.ToString(), body));
            return await answer(request, n, cancellationToken);
        }
    }

    private static HttpResponseMessage Json(HttpStatusCode status, string body) =>
        new(status) { Content = new StringContent(body, Encoding.UTF8, "application/json") };

    private const string Ok = "{\"choices\": [{\"index\": 0, \"text\": \"hello\"}]}";
    private static readonly EndpointOptions Fast = new() { InitialBackoff = TimeSpan.FromMilliseconds(1), MaxAttempts = 3, Timeout = TimeSpan.FromSeconds(10) };
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static (OpenAiCompatibleEndpoint, ScriptedHandler) Client(Func<HttpRequestMessage, int, CancellationToken, Task<HttpResponseMessage>> answer,
        EndpointOptions? options = null, string baseUrl = "http://example.test/v1", string? key = null)
    {
        var handler = new ScriptedHandler(answer);
        return (new OpenAiCompatibleEndpoint(new Uri(baseUrl), key, "m", options ?? Fast, new HttpClient(handler)), handler);
    }

    [Fact]
    public async Task A_client_without_a_model_name_names_the_servers_one_model_and_asks_which_when_it_lists_several()
    {
        string models = "{\"object\": \"list\", \"data\": [{\"id\": \"a\"}, {\"id\": \"b\"}]}";
        int listed = 0;
        var handler = new ScriptedHandler((request, _, _) => Task.FromResult(request.Method == HttpMethod.Get
            ? (Interlocked.Increment(ref listed) == 1 ? Json(HttpStatusCode.ServiceUnavailable, "starting") : Json(HttpStatusCode.OK, models))
            : Json(HttpStatusCode.OK, Ok)));
        using var client = new OpenAiCompatibleEndpoint(new Uri("http://example.test/v1"), null, null, Fast, new HttpClient(handler));

        // Two models listed (after one 503, retried): which one is the caller's choice, and no completion is sent.
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Contains("serves 2 models (a, b)", e.Message);
        Assert.Equal(2, listed);
        Assert.DoesNotContain(handler.Requests, r => r.Body.Length > 0);

        // A name in the settings needs no list; a failed ask is asked again; one model listed is the one named.
        Assert.Equal("hello", await client.CompleteAsync("x", CompletionSettings.Greedy with { Model = "b" }, Ct));
        Assert.Contains("\"model\":\"b\"", handler.Requests[^1].Body);
        models = "{\"data\": [{\"id\": \"only\", \"object\": \"model\"}]}";
        Assert.Equal("hello", await client.CompleteAsync("y", CompletionSettings.Greedy, Ct));
        Assert.Contains("\"model\":\"only\"", handler.Requests[^1].Body);
        Assert.Equal("only", client.Model);
        int asked = listed;
        await client.CompleteAsync("z", CompletionSettings.Greedy, Ct);
        Assert.Equal(asked, listed);                                    // asked once

        // An answer that is not a model list is a malformed response.
        using var bad = new OpenAiCompatibleEndpoint(new Uri("http://example.test/v1"), null, null, Fast,
            new HttpClient(new ScriptedHandler((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, "{\"models\": 1}")))));
        var m = await Assert.ThrowsAsync<CompletionEndpointException>(() => bad.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.MalformedResponse, m.Kind);
    }

    [Fact]
    public async Task Warm_up_asks_the_model_list_once_with_the_key_and_never_throws()
    {
        // oml verify --endpoint opens the connection with GET /v1/models while it reads the set; the answer is ignored.
        var (client, handler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, "{\"data\": []}")), baseUrl: "http://example.test:8000/", key: "sk-1");
        Assert.Equal("http://example.test:8000/v1/models", client.ModelsUrl.ToString());
        await client.WarmUpAsync(Ct);
        var (uri, auth, body) = Assert.Single(handler.Requests);
        Assert.Equal("http://example.test:8000/v1/models", uri.ToString());
        Assert.Equal("Bearer sk-1", auth);
        Assert.Equal("", body);
        Assert.Equal("http://example.test/v1/models", Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, "{}"))).Item1.ModelsUrl.ToString());

        // A server that lacks the route, fails, cannot be reached or never answers: nothing is thrown, nothing retried.
        foreach (var answer in new Func<HttpRequestMessage, int, CancellationToken, Task<HttpResponseMessage>>[]
        {
            (_, _, _) => Task.FromResult(Json(HttpStatusCode.NotFound, "{\"error\": \"no such route\"}")),
            (_, _, _) => Task.FromResult(Json(HttpStatusCode.ServiceUnavailable, "busy")),
            (_, _, _) => throw new HttpRequestException("connection refused"),
            async (_, _, ct) => { await Task.Delay(Timeout.Infinite, ct); return Json(HttpStatusCode.OK, "{}"); },
        })
        {
            var (failing, failingHandler) = Client(answer, new EndpointOptions { Timeout = TimeSpan.FromMilliseconds(200), MaxAttempts = 3 });
            await failing.WarmUpAsync(Ct);
            Assert.Equal(1, failingHandler.Calls);
        }

        // After a client that owns its HttpClient is disposed (the command ended first), the warm-up ends quietly too.
        var disposed = new OpenAiCompatibleEndpoint(new Uri("http://127.0.0.1:9/v1"), null, "m");
        disposed.Dispose();
        await disposed.WarmUpAsync(Ct);
    }

    [Fact]
    public async Task Request_url_headers_and_body()
    {
        var (client, handler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, Ok)), baseUrl: "http://example.test:8000/", key: "sk-1");
        Assert.Equal("hello", await client.CompleteAsync("the prompt", new CompletionSettings(MaxTokens: 9, Seed: 3), Ct));
        var (uri, auth, body) = handler.Requests[0];
        Assert.Equal("http://example.test:8000/v1/completions", uri.ToString());
        Assert.Equal("Bearer sk-1", auth);
        using var doc = JsonDocument.Parse(body);
        Assert.Equal("m", doc.RootElement.GetProperty("model").GetString());
        Assert.Equal("the prompt", doc.RootElement.GetProperty("prompt").GetString());
        Assert.Equal(9, doc.RootElement.GetProperty("max_tokens").GetInt32());
        Assert.Equal(0.0, doc.RootElement.GetProperty("temperature").GetDouble());
        Assert.Equal(3, doc.RootElement.GetProperty("seed").GetInt32());
        Assert.False(doc.RootElement.GetProperty("stream").GetBoolean());

        var (chat, chatHandler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, "{\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": \"hi\"}}]}")));
        Assert.Equal("hi", await chat.CompleteAsync("q", new CompletionSettings(Mode: CompletionMode.Chat), Ct));
        Assert.Equal("http://example.test/v1/chat/completions", chatHandler.Requests[0].Uri.ToString());
        Assert.Null(chatHandler.Requests[0].Auth);
        using var chatDoc = JsonDocument.Parse(chatHandler.Requests[0].Body);
        Assert.Equal("user", chatDoc.RootElement.GetProperty("messages")[0].GetProperty("role").GetString());
        Assert.False(chatDoc.RootElement.TryGetProperty("seed", out _));
    }

    [Fact]
    public async Task Status_500_then_200_is_retried()
    {
        var (client, handler) = Client((_, n, _) => Task.FromResult(n == 1 ? Json(HttpStatusCode.InternalServerError, "{}") : Json(HttpStatusCode.OK, Ok)));
        Assert.Equal("hello", await client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(2, handler.Calls);
    }

    [Fact]
    public async Task Status_429_honours_retry_after_and_gives_up_after_max_attempts()
    {
        var (client, handler) = Client((_, _, _) =>
        {
            var r = Json(HttpStatusCode.TooManyRequests, "{\"error\": {\"message\": \"slow down\"}}");
            r.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(TimeSpan.FromMilliseconds(1));
            return Task.FromResult(r);
        });
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(3, handler.Calls);
        Assert.Equal(429, e.StatusCode);
        Assert.Contains("slow down", e.Message);
    }

    [Fact]
    public async Task Client_errors_are_not_retried()
    {
        var (client, handler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.BadRequest, "{\"error\": {\"message\": \"bad prompt\", \"type\": \"invalid_request_error\"}}")));
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(1, handler.Calls);
        Assert.Equal(CompletionErrorKind.HttpStatus, e.Kind);
        Assert.Contains("HTTP 400", e.Message);
        Assert.Contains("bad prompt", e.Message);
    }

    [Theory]
    [InlineData("this is not json", "not valid JSON")]
    [InlineData("", "not valid JSON")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("{\"id\": 1}", "no \"choices\" array")]
    [InlineData("{\"choices\": []}", "\"choices\" is empty")]
    [InlineData("{\"choices\": [{\"index\": 0}]}", "no \"text\"")]
    [InlineData("{\"choices\": [{\"text\": 5}]}", "not a string")]
    public async Task Malformed_answers_give_a_clear_exception(string body, string expected)
    {
        var (client, handler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, body)));
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.MalformedResponse, e.Kind);
        Assert.Contains("malformed", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Equal(1, handler.Calls);
    }

    [Fact]
    public async Task A_batch_of_prompts_is_one_request_and_its_choices_are_matched_by_index()
    {
        // The answer lists the choices out of order (a server may finish them in any order): the index decides.
        var (client, handler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK,
            "{\"choices\": [{\"index\": 2, \"text\": \"c\"}, {\"index\": 0, \"text\": \"a\"}, {\"index\": 1, \"text\": \"b\"}]}")));
        var answers = await client.CompleteBatchAsync(["p0", "p1", "p2"], new CompletionSettings(MaxTokens: 4), Ct);
        Assert.Equal(["a", "b", "c"], answers);
        var (uri, _, body) = Assert.Single(handler.Requests);
        Assert.Equal("http://example.test/v1/completions", uri.ToString());
        using var doc = JsonDocument.Parse(body);
        Assert.Equal(["p0", "p1", "p2"], doc.RootElement.GetProperty("prompt").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(4, doc.RootElement.GetProperty("max_tokens").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("n").GetInt32());

        Assert.Empty(await client.CompleteBatchAsync([], CompletionSettings.Greedy, Ct));
        Assert.Equal(1, handler.Calls);
        await Assert.ThrowsAsync<ArgumentException>(() => client.CompleteBatchAsync(["p"], new CompletionSettings(Mode: CompletionMode.Chat), Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => client.CompleteBatchAsync(["p", null!], CompletionSettings.Greedy, Ct));
    }

    [Theory]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \"a\"}]}", "1 choices for 2 prompts")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \"a\"}, {\"index\": 0, \"text\": \"b\"}]}", "two choices have index 0")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \"a\"}, {\"text\": \"b\"}]}", "choices[1] has no \"index\"")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \"a\"}, {\"index\": 2, \"text\": \"b\"}]}", "no \"index\" between 0 and 1")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \"a\"}, {\"index\": 1}]}", "choices[1] has no \"text\"")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \"a\"}, {\"index\": 1, \"text\": null}]}", "not a string")]
    public async Task A_batch_answer_without_one_choice_a_prompt_is_malformed(string body, string expected)
    {
        var (client, handler) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, body)));
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteBatchAsync(["p0", "p1"], CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.MalformedResponse, e.Kind);
        Assert.Contains("a batch of 2 prompts", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Equal(1, handler.Calls);
    }

    [Fact]
    public async Task Malformed_chat_answer()
    {
        var (client, _) = Client((_, _, _) => Task.FromResult(Json(HttpStatusCode.OK, Ok)));
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", new CompletionSettings(Mode: CompletionMode.Chat), Ct));
        Assert.Contains("no \"message\" object", e.Message);
    }

    [Fact]
    public async Task Slow_server_times_out()
    {
        var (client, _) = Client(async (_, _, ct) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(30), ct);
            return Json(HttpStatusCode.OK, Ok);
        }, Fast with { Timeout = TimeSpan.FromMilliseconds(100) });
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.Timeout, e.Kind);
        Assert.Contains("0.1 s", e.Message);
    }

    [Fact]
    public async Task Caller_cancellation_is_not_a_timeout()
    {
        var (client, _) = Client(async (_, _, ct) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(30), ct);
            return Json(HttpStatusCode.OK, Ok);
        });
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.CompleteAsync("x", CompletionSettings.Greedy, cts.Token));
    }

    [Fact]
    public async Task Arguments_are_validated()
    {
        Assert.Throws<ArgumentException>(() => new OpenAiCompatibleEndpoint(new Uri("ftp://x/"), null, "m"));
        Assert.Throws<ArgumentException>(() => new OpenAiCompatibleEndpoint(new Uri("http://x/"), null, " "));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OpenAiCompatibleEndpoint(new Uri("http://x/"), null, "m", new EndpointOptions { MaxAttempts = 0 }));
        using var client = new OpenAiCompatibleEndpoint(new Uri("http://x/"), null, "m");
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.CompleteAsync("x", new CompletionSettings(MaxTokens: 0), Ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.CompleteAsync("x", new CompletionSettings(TopP: 0), Ct));
    }
}
