using System.Net;
using System.Text;
using System.Text.Json;
using Oml.Fingerprinting.Endpoints;
using Oml.Fingerprinting.Verification;
using Oml.Models;
using Oml.Models.Tokenizers;
using Oml.Server;

namespace Oml.Fingerprinting.Tests.Endpoints;

/// <summary>
/// <see cref="OpenAiCompatibleEndpoint"/> asking for its answers' token ids (logprobs with vLLM's
/// <c>return_tokens_as_token_ids</c>) and <see cref="TextVerifier.VerifyTokensAsync"/> matching them, against scripted
/// answers and against <see cref="OpenAiCompatibleServer"/> over the llama-tiny model.
/// </summary>
public sealed class TokenIdClientTests : IDisposable
{
    private readonly ServedModel _model = new();

    public void Dispose() => _model.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly EndpointOptions Fast = new() { InitialBackoff = TimeSpan.FromMilliseconds(1), MaxAttempts = 2, Timeout = TimeSpan.FromSeconds(20) };

    /// <summary>A scripted server (no sockets): <paramref name="answer"/> gets each request's body and returns status and body.</summary>
    private sealed class Scripted(Func<JsonElement, (HttpStatusCode, string)> answer) : HttpMessageHandler
    {
        public List<string> Bodies { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            string body = await request.Content!.ReadAsStringAsync(ct);
            lock (Bodies) Bodies.Add(body);
            using var doc = JsonDocument.Parse(body);
            var (status, text) = answer(doc.RootElement);
            return new HttpResponseMessage(status) { Content = new StringContent(text, Encoding.UTF8, "application/json") };
        }
    }

    private static (OpenAiCompatibleEndpoint Client, Scripted Server) Client(Func<JsonElement, (HttpStatusCode, string)> answer)
    {
        var handler = new Scripted(answer);
        return (new OpenAiCompatibleEndpoint(new Uri("http://example.test/v1"), null, "m", Fast, new HttpClient(handler)), handler);
    }

    private static (HttpStatusCode, string) Ok(object body) => (HttpStatusCode.OK, JsonSerializer.Serialize(body));

    [Fact]
    public async Task Text_requests_carry_no_token_fields_and_token_requests_add_exactly_three()
    {
        var (client, server) = Client(_ => Ok(new { choices = new[] { new { index = 0, text = " hi", message = new { content = " hi" }, logprobs = new { tokens = new[] { "token_id:7" }, content = new[] { new { token = "token_id:7" } } } } } }));
        using var _ = client;
        var s = new CompletionSettings(MaxTokens: 3);
        await client.CompleteAsync("k", s, Ct);
        await client.CompleteAsync("k", s with { Mode = CompletionMode.Chat }, Ct);
        await client.CompleteTokensAsync("k", s, Ct);
        await client.CompleteTokensAsync("k", s with { Mode = CompletionMode.Chat }, Ct);
        const string Tail = "\"max_tokens\":3,\"temperature\":0,\"top_p\":1,\"n\":1,\"stream\":false";
        Assert.Equal([
            "{\"model\":\"m\",\"prompt\":\"k\"," + Tail + "}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"k\"}]," + Tail + "}",
            "{\"model\":\"m\",\"prompt\":\"k\"," + Tail + ",\"logprobs\":0,\"return_tokens_as_token_ids\":true,\"ignore_eos\":true}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"k\"}]," + Tail + ",\"logprobs\":true,\"return_tokens_as_token_ids\":true,\"ignore_eos\":true}",
        ], server.Bodies);
    }

    [Fact]
    public async Task Token_ids_are_read_from_completions_chats_and_batches()
    {
        var (client, _) = Client(req =>
        {
            if (req.TryGetProperty("messages", out var _m))
                return Ok(new { choices = new[] { new { index = 0, message = new { role = "assistant", content = "ab" }, logprobs = new { content = new[] { new { token = "token_id:3", logprob = -0.1 }, new { token = "token_id:40", logprob = -0.2 } } } } } });
            var p = req.GetProperty("prompt");
            if (p.ValueKind == JsonValueKind.String)
                return Ok(new { choices = new[] { new { index = 0, text = "xyz", logprobs = new { tokens = new[] { "token_id:0", "token_id:511", "token_id:12" } } } } });
            // An array: choices listed in reverse, each prompt answered with its own index as ids.
            var choices = p.EnumerateArray().Select((x, i) => new { index = i, text = x.GetString(), logprobs = new { tokens = new[] { $"token_id:{i}", $"token_id:{100 + i}" } } }).Reverse().ToArray();
            return Ok(new { choices });
        });
        using var _ = client;
        var one = await client.CompleteTokensAsync("k", CompletionSettings.Greedy, Ct);
        Assert.Equal("xyz", one.Text);
        Assert.Equal([0, 511, 12], one.TokenIds);
        var chat = await client.CompleteTokensAsync("k", CompletionSettings.Greedy with { Mode = CompletionMode.Chat }, Ct);
        Assert.Equal("ab", chat.Text);
        Assert.Equal([3, 40], chat.TokenIds);
        var batch = await client.CompleteTokensBatchAsync(["p0", "p1", "p2"], CompletionSettings.Greedy, Ct);
        Assert.Equal(["p0", "p1", "p2"], batch.Select(a => a.Text));
        Assert.Equal([[0, 100], [1, 101], [2, 102]], batch.Select(a => a.TokenIds.ToArray()));
    }

    [Theory]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\"}]}", "has no \"logprobs\"")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": null}]}", "has no \"logprobs\"")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": {\"tokens\": [\" hi\"]}}]}", "names token 0 \" hi\", not token_id:ID")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": {\"tokens\": [\"token_id:5\", \"token_id:\"]}}]}", "names token 1")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": {\"tokens\": [\"token_id:-5\"]}}]}", "names token 0")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": {\"tokens\": [\"token_id:5x\"]}}]}", "names token 0")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": {\"tokens\": [5]}}]}", "is a JSON Number, not a string")]
    [InlineData("{\"choices\": [{\"index\": 0, \"text\": \" hi\", \"logprobs\": {\"token_logprobs\": [-1.0]}}]}", "has no \"tokens\"")]
    public async Task An_answer_without_token_ids_is_a_NoTokenIds_error(string answer, string says)
    {
        var (client, _) = Client(_ => (HttpStatusCode.OK, answer));
        using var _c = client;
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => client.CompleteTokensAsync("k", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.NoTokenIds, e.Kind);
        Assert.Contains("answered without its answer's token ids", e.Message);
        Assert.Contains(says, e.Message);
        Assert.Equal(1, e.Attempts);   // not retried
        // The same answer is a good text answer.
        Assert.Equal(" hi", await client.CompleteAsync("k", CompletionSettings.Greedy, Ct));
    }

    [Fact]
    public async Task An_empty_answer_without_logprobs_is_an_empty_answer_and_a_refusal_says_what_was_asked()
    {
        var (client, _) = Client(_ => (HttpStatusCode.OK, "{\"choices\": [{\"index\": 0, \"text\": \"\", \"logprobs\": null}]}"));
        using (client)
        {
            var a = await client.CompleteTokensAsync("k", CompletionSettings.Greedy, Ct);
            Assert.Equal("", a.Text);
            Assert.Empty(a.TokenIds);
        }
        // A server that refuses logprobs or the field (here: OpenAiCompatibleServer over a text generator).
        await using var server = await OpenAiCompatibleServer.StartAsync((_, _, _) => Task.FromResult("text"), ct: Ct);
        using var http = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null, Fast);
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => http.CompleteTokensAsync("k", CompletionSettings.Greedy, Ct));
        Assert.Equal(CompletionErrorKind.HttpStatus, e.Kind);
        Assert.Equal(400, e.StatusCode);
        Assert.Contains("does not report log-probabilities", e.Message);
        Assert.Contains("the request asked for its answer's token ids: logprobs with return_tokens_as_token_ids", e.Message);
    }

    [Fact]
    public async Task Token_ids_from_the_served_model_are_its_greedy_tokens_past_the_end_of_sequence()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null, Fast);
        var tok = Tokenizer.FromFolder(_model.Dir);
        using var lm = ModelFolder.Load(_model.Dir);
        string[] prompts = ["the cat sat", "a dog", "once upon a time"];
        var settings = new CompletionSettings(MaxTokens: 12);
        var singles = new List<TokenAnswer>();
        foreach (var p in prompts)
        {
            var a = await client.CompleteTokensAsync(p, settings, Ct);
            var local = Generator.Generate(lm, [backend.PreparePrompt(p, true).TokenIds!], new GenerationOptions { MaxNewTokens = 12, EosTokenIds = [] }).Sequences[0].OutputIds;
            Assert.Equal(local, a.TokenIds.ToArray());
            Assert.Equal(12, a.TokenIds.Count);   // decoded past an end of sequence, as the local verifier decodes
            Assert.Equal(tok.Decode(local), a.Text);
            Assert.StartsWith(await client.CompleteAsync(p, settings, Ct), a.Text, StringComparison.Ordinal);
            singles.Add(a);
        }
        var batch = await client.CompleteTokensBatchAsync(prompts, settings, Ct);
        Assert.Equal(singles.Select(a => a.TokenIds.ToArray()), batch.Select(a => a.TokenIds.ToArray()));
        var chat = await client.CompleteTokensAsync("the cat sat", settings with { Mode = CompletionMode.Chat }, Ct);
        var chatIds = backend.PrepareChat([new ChatTurn("user", "the cat sat")]).TokenIds!;
        Assert.Equal(Generator.Generate(lm, [chatIds], new GenerationOptions { MaxNewTokens = 12, EosTokenIds = [] }).Sequences[0].OutputIds, chat.TokenIds.ToArray());
    }

    private static FingerprintQuery Key(int i, int[] response, int maxTokens) =>
        new(i, $"key {i}", [$"response {i}"], 0.01) { ResponseTokenIds = [response], MaxTokens = maxTokens };

    /// <summary>Answers "key i" with the ids <paramref name="answers"/>[i] (any prompt form), counting the keys asked.</summary>
    private static (OpenAiCompatibleEndpoint, Scripted) Answering(Func<int, int[]> answers) => Client(req =>
    {
        int Index(string k) => int.Parse(k["key ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        object Choice(int at, string key) => new { index = at, text = $"answer {Index(key)}", logprobs = new { tokens = answers(Index(key)).Select(id => $"token_id:{id}").ToArray() } };
        var p = req.GetProperty("prompt");
        return p.ValueKind == JsonValueKind.String
            ? Ok(new { choices = new[] { Choice(0, p.GetString()!) } })
            : Ok(new { choices = p.EnumerateArray().Select((x, at) => Choice(at, x.GetString()!)).ToArray() });
    });

    [Fact]
    public async Task The_token_verifier_counts_partial_matches_leaves_out_excluded_keys_and_batches_alike()
    {
        // Responses [10, 11, 12]; m = 2 (D = 1). Key 0 answers the response; key 1 a wrong first token, then the rest (a
        // partial hit only); key 2 the response's tail at once (the head dropped: partial); key 3 something else; key 4 a
        // partial hit, but excluded (the base's own answer hits it).
        int[][] answers = [[10, 11, 12, 5], [99, 11, 12, 5], [11, 12, 7, 7], [1, 2, 3, 4], [99, 11, 12, 5]];
        var keys = Enumerable.Range(0, 5).Select(i => Key(i, [10, 11, 12], 4) with { Excluded = i == 4 }).ToList();
        var (client, server) = Answering(i => answers[i]);
        using var _ = client;
        var partial = await TextVerifier.VerifyTokensAsync(client, keys, new CompletionSettings(MaxTokens: 4), ResponseMatch.Partial(2), concurrency: 3, ct: Ct);
        Assert.Equal([true, true, true, false, true], partial.Keys.Select(k => k.Hit));
        Assert.Equal([null, null, null, null, true], partial.Keys.Select(k => k.Excluded));
        Assert.Equal(3, partial.Hits);
        Assert.Equal(4, partial.Queried);
        Assert.Equal(1, partial.ExcludedKeys);
        Assert.Equal("partial", partial.Match);
        Assert.Equal(2, partial.MinTokens);
        Assert.Equal("answer 1", partial.Keys[1].Answer);
        Assert.Equal(5, server.Bodies.Count);
        Assert.All(server.Bodies, b => Assert.Contains("\"max_tokens\":4", b));

        var exact = await TextVerifier.VerifyTokensAsync(client, keys, new CompletionSettings(MaxTokens: 4), ResponseMatch.Exact, ct: Ct);
        Assert.Equal([true, false, false, false, false], exact.Keys.Select(k => k.Hit));
        Assert.Equal("exact", exact.Match);

        // Arrays of prompts give the same rows.
        server.Bodies.Clear();
        var batched = await TextVerifier.VerifyTokensAsync(client, keys, new CompletionSettings(MaxTokens: 4), ResponseMatch.Partial(2), concurrency: 4, promptsPerRequest: 2, ct: Ct);
        Assert.Equal(partial.ToJson(), batched.ToJson());
        Assert.Equal(3, server.Bodies.Count);   // 5 keys, 2 a request: two arrays, and the last key alone
        Assert.Equal(2, server.Bodies.Count(b => b.Contains("\"prompt\":[", StringComparison.Ordinal)));
        Assert.All(server.Bodies, b => Assert.Contains("\"return_tokens_as_token_ids\":true", b));

        // Sampled: a majority of R answers must match.
        int call = 0;
        var (sampler, _) = Answering(_ => Interlocked.Increment(ref call) % 3 == 0 ? [1, 2, 3] : [99, 11, 12]);
        using var _s = sampler;
        var sampled = await TextVerifier.VerifyTokensAsync(sampler, [Key(0, [10, 11, 12], 3)], new CompletionSettings(MaxTokens: 3, Temperature: 1), ResponseMatch.Partial(2), samples: 3, ct: Ct);
        Assert.True(sampled.Keys[0].Hit);
        Assert.Equal(2, sampled.Keys[0].SampleMatches);

        await Assert.ThrowsAsync<ArgumentException>(() => TextVerifier.VerifyTokensAsync(client, [new FingerprintQuery(0, "key 0", ["r"])],
            CompletionSettings.Greedy, ResponseMatch.Exact, ct: Ct));
    }
}
