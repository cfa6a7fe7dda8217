using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Hosting;
using Oml.Server;

namespace Oml.Fingerprinting.Tests.Endpoints;

/// <summary>
/// Both servers (<see cref="OpenAiCompatibleServer"/> over a model, and the protocol host's
/// <see cref="ProtocolHostServer"/>) driven by clients no one here wrote: the official OpenAI .NET SDK, and the
/// official <c>openai</c> npm package when Node is present (tests/tools/openai_client.mjs).
/// </summary>
public sealed class OpenAiClientTests : IDisposable
{
    private readonly ServedModel _model = new();

    public void Dispose() => _model.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static OpenAIClient Client(Uri baseUrl, string key = "none") =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = baseUrl, NetworkTimeout = TimeSpan.FromSeconds(60) });

    private static readonly ChatMessage[] Conversation =
    [
        new SystemChatMessage("You are terse."),
        new UserChatMessage("hello there"),
        new AssistantChatMessage("hi"),
        new UserChatMessage("tell me more"),
    ];

    [Fact]
    public async Task The_dotnet_sdk_chats_streams_and_lists_models()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, options: new OpenAiServerOptions { ModelName = "tiny", ApiKey = "sk-test" }, ct: Ct);
        var client = Client(server.BaseUrl, "sk-test");
        var chat = client.GetChatClient("tiny");

        // A multi-turn chat with a system message, through the chat template; usage and log-probabilities.
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0, IncludeLogProbabilities = true, TopLogProbabilityCount = 2 };
        ChatCompletion done = (await chat.CompleteChatAsync(Conversation, options, Ct)).Value;
        string rendered = "<|system|>You are terse.\n<|user|>hello there\n<|assistant|>hi\n<|user|>tell me more\n<|assistant|>";
        var tokenizer = Oml.Models.Tokenizers.Tokenizer.FromFolder(_model.Dir);
        Assert.Equal(tokenizer.Encode(rendered).Length, done.Usage.InputTokenCount);
        Assert.Equal(8, done.Usage.OutputTokenCount);
        Assert.Equal(done.Usage.InputTokenCount + 8, done.Usage.TotalTokenCount);
        Assert.Equal(ChatFinishReason.Length, done.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, done.Role);
        Assert.Equal(8, done.ContentTokenLogProbabilities.Count);
        Assert.All(done.ContentTokenLogProbabilities, t =>
        {
            Assert.Equal(2, t.TopLogProbabilities.Count);
            Assert.Equal(t.TopLogProbabilities[0].LogProbability, t.LogProbability, 5); // greedy: the top token
        });
        string text = done.Content[0].Text;
        Assert.Equal(tokenizer.Decode(tokenizer.Encode(text)), text);

        // The same chat streamed: the pieces add up to the same text; the last update carries the usage.
        var streamed = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var u in chat.CompleteChatStreamingAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 }, Ct))
        {
            updates++;
            foreach (var part in u.ContentUpdate) streamed.Append(part.Text);
            usage ??= u.Usage;
            finish ??= u.FinishReason;
        }
        Assert.Equal(text, streamed.ToString());
        Assert.True(updates >= 2, $"{updates} updates");
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(8, usage.OutputTokenCount);

        // A stop sequence cuts the text before it, with finish reason "stop".
        string stopAt = text.Trim().Length >= 3 ? text.Trim()[1..3] : text;
        var stopped = (await chat.CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0, StopSequences = { stopAt } }, Ct)).Value;
        Assert.Equal(text[..text.IndexOf(stopAt, StringComparison.Ordinal)], stopped.Content.Count == 0 ? "" : stopped.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);

        // Seeded sampling repeats; another seed differs.
#pragma warning disable OPENAI001 // Seed is marked experimental in the SDK
        var seeded = new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 1.0f, Seed = 42 };
        string a = (await chat.CompleteChatAsync(Conversation, seeded, Ct)).Value.Content[0].Text;
        string b = (await chat.CompleteChatAsync(Conversation, seeded, Ct)).Value.Content[0].Text;
        seeded.Seed = 43;
        string c = (await chat.CompleteChatAsync(Conversation, seeded, Ct)).Value.Content[0].Text;
#pragma warning restore OPENAI001
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);

        // Models.
        var models = client.GetOpenAIModelClient();
        var list = (await models.GetModelsAsync(Ct)).Value;
        Assert.Equal("tiny", Assert.Single(list).Id);
        Assert.Equal("tiny", (await models.GetModelAsync("tiny", Ct)).Value.Id);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => models.GetModelAsync("gpt-4", Ct));
        Assert.Equal(404, missing.Status);

        // Errors arrive as the SDK's exceptions with OpenAI's status codes.
        var tooLong = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 600 }, Ct));
        Assert.Equal(400, tooLong.Status);
        Assert.Contains("maximum context length is 512", tooLong.Message);
        var badKey = await Assert.ThrowsAsync<ClientResultException>(() => Client(server.BaseUrl, "wrong").GetChatClient("tiny").CompleteChatAsync(Conversation, options, Ct));
        Assert.Equal(401, badKey.Status);
    }

    [Fact]
    public async Task Concurrent_clients_are_decoded_in_one_batch_and_get_what_they_would_alone()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, options: new OpenAiServerOptions { ModelName = "tiny" }, ct: Ct);
        var chat = Client(server.BaseUrl).GetChatClient("tiny");
        var prompts = Enumerable.Range(0, 8).Select(i => new ChatMessage[] { new UserChatMessage($"question number {i} {new string('x', i * 3)}") }).ToList();
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 24, Temperature = 0 };
        var alone = new List<string>();
        foreach (var p in prompts) alone.Add((await chat.CompleteChatAsync(p, options, Ct)).Value.Content[0].Text);
        string before = server.Metrics.Render();
        var together = await Task.WhenAll(prompts.Select(p => chat.CompleteChatAsync(p, options, Ct)));
        Assert.Equal(alone, together.Select(r => r.Value.Content[0].Text));

        // The metrics saw decode steps with more than one sequence.
        string metrics = server.Metrics.Render();
        long Steps(string m, string bucket) => long.Parse(m.Split('\n').First(l => l.StartsWith($"oml_batch_size_bucket{{le=\"{bucket}\"}}", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        long single = Steps(metrics, "1") - Steps(before, "1"), all = Steps(metrics, "+Inf") - Steps(before, "+Inf");
        Assert.True(all > single, $"all {all} decode steps ran one sequence");
        // The engine's work counters are served too: a prefill for each of the 8 requests sent alone, 1 to 8 for the
        // 8 sent together; 23 decode steps for each one alone, 23 or more for those together.
        long Counter(string m, string name) => long.Parse(m.Split('\n').First(l => l.StartsWith(name + " ", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(Counter(metrics, "oml_engine_prefills_total"), 9, 16);
        Assert.Equal(16, Counter(metrics, "oml_engine_prefilled_sequences_total"));
        Assert.True(Counter(metrics, "oml_engine_decode_steps_total") >= 9 * 23);
        Assert.True(Counter(metrics, "oml_engine_host_syncs_total") > 0);
        Assert.Contains("oml_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 16", metrics);
        Assert.Contains("oml_generation_tokens_total 384", metrics);
    }

    [Fact]
    public async Task Completions_batches_n_echo_logprobs_and_errors_over_http()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, options: new OpenAiServerOptions { ModelName = "tiny" }, ct: Ct);
        using var http = new HttpClient();
        async Task<(HttpStatusCode, JsonElement)> Post(string body)
        {
            using var r = await http.PostAsync(new Uri(server.BaseUrl, "completions"), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
            using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(Ct));
            return (r.StatusCode, doc.RootElement.Clone());
        }

        var (status, one) = await Post("{\"prompt\": \"the cat\", \"max_tokens\": 6, \"temperature\": 0, \"logprobs\": 3}");
        Assert.Equal(HttpStatusCode.OK, status);
        string greedy = one.GetProperty("choices")[0].GetProperty("text").GetString()!;
        var lp = one.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(6, lp.GetProperty("tokens").GetArrayLength());
        Assert.Equal(greedy, string.Concat(lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString())));
        Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), t => Assert.Equal(3, t.EnumerateObject().Count()));
        Assert.Equal("length", one.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        // A batch of prompts × n: choices indexed prompt-major; greedy choices of one prompt agree; echo prepends.
        var (s2, batch) = await Post("{\"prompt\": [\"the cat\", \"a dog\"], \"n\": 2, \"max_tokens\": 6, \"temperature\": 0, \"echo\": true}");
        Assert.Equal(HttpStatusCode.OK, s2);
        var choices = batch.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal("the cat" + greedy, choices[0].GetProperty("text").GetString());
        Assert.Equal(choices[0].GetProperty("text").GetString(), choices[1].GetProperty("text").GetString());
        Assert.StartsWith("a dog", choices[2].GetProperty("text").GetString(), StringComparison.Ordinal);
        var usage = batch.GetProperty("usage");
        Assert.Equal(24, usage.GetProperty("completion_tokens").GetInt32());

        // Token-id prompts are accepted.
        var ids = backend.PreparePrompt("the cat", true).TokenIds!;
        var (s3, byIds) = await Post($"{{\"prompt\": [{string.Join(",", ids)}], \"max_tokens\": 6, \"temperature\": 0}}");
        Assert.Equal(HttpStatusCode.OK, s3);
        Assert.Equal(greedy, byIds.GetProperty("choices")[0].GetProperty("text").GetString());

        // Bad input: 4xx with OpenAI's error shape, never 500, and fast.
        var sw = Stopwatch.StartNew();
        foreach (var (body, expect, param) in new[]
        {
            ("{\"prompt\": \"\\ud800 lone\", \"max_tokens\": 2}", 400, "prompt"),
            ("{\"prompt\": [600, 1], \"max_tokens\": 2}", 400, "prompt"),
            ("{\"prompt\": \"x\", \"max_tokens\": 512}", 400, "max_tokens"),
            ("{\"prompt\": \"" + new string('a', 3000) + "\", \"max_tokens\": 2}", 400, "prompt"),
            ("{\"prompt\": \"\", \"max_tokens\": 2}", 400, "prompt"),          // no tokens (this tokenizer has no BOS)
            ("{\"prompt\": [\"a\", \"\"], \"max_tokens\": 2}", 400, "prompt"),
        })
        {
            var (s, e) = await Post(body);
            Assert.Equal((HttpStatusCode)expect, s);
            Assert.Equal(param, e.GetProperty("error").GetProperty("param").GetString());
            Assert.Equal("invalid_request_error", e.GetProperty("error").GetProperty("type").GetString());
        }
        using (var bad = new ByteArrayContent([.. "{\"prompt\": \""u8, 0xC3, 0x28, .. "\"}"u8]))
        {
            bad.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using var r = await http.PostAsync(new Uri(server.BaseUrl, "completions"), bad, Ct);
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        }
        using (var huge = new StringContent("{\"prompt\": \"" + new string('a', 10 << 20) + "\"}", Encoding.UTF8, "application/json"))
        {
            using var r = await http.PostAsync(new Uri(server.BaseUrl, "completions"), huge, Ct);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
            Assert.Contains("\"error\"", await r.Content.ReadAsStringAsync(Ct));
        }
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"bad requests took {sw.Elapsed}");
    }

    [Fact]
    public async Task The_protocol_host_serves_the_sdk_and_signs_receipts_for_streams_too()
    {
        using var backend = _model.Load();
        using var hostKey = PrivateKey.Generate();
        using var userKey = PrivateKey.Generate();
        var domain = new ProtocolDomain(31337, "0x" + new string('1', 40));
        await using var host = await ProtocolHostServer.StartAsync(hostKey, domain, "tiny-model", backend, null, PermitPolicy.Require,
            options: new OpenAiServerOptions { ModelName = "tiny-model" }, ct: Ct);

        // Without a permit: refused with 402, before any generation.
        var chat = Client(host.BaseUrl).GetChatClient("tiny-model");
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions(), Ct));
        Assert.Equal(HostHttp.RefusedStatus, refused.Status);
        Assert.Equal(0, host.Metrics.GenerationTokens);
        var models = (await Client(host.BaseUrl).GetOpenAIModelClient().GetModelsAsync(Ct)).Value;
        Assert.Equal("tiny-model", Assert.Single(models).Id);

        // With a permit for a multi-turn chat, streamed: the receipt comes in the last event and names the streamed text.
        var messages = new[] { new ChatTurn("system", "be brief"), new ChatTurn("user", "hello") };
        string query = ChatQuery.Of(messages);
        var permit = Permit.Create(userKey.Address, "tiny-model", hostKey.Address, query, 1, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
        var body = new System.Text.Json.Nodes.JsonObject
        {
            ["model"] = "tiny-model",
            ["messages"] = new System.Text.Json.Nodes.JsonArray(messages.Select(m => (System.Text.Json.Nodes.JsonNode)new System.Text.Json.Nodes.JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray()),
            ["max_tokens"] = 10,
            ["stream"] = true,
            ["stream_options"] = new System.Text.Json.Nodes.JsonObject { ["include_usage"] = true },
            [HostHttp.PermitField] = permit.ToJsonNode(),
        };
        using var http = new HttpClient();
        using var response = await http.PostAsync(new Uri(host.BaseUrl, "chat/completions"), new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = (await response.Content.ReadAsStringAsync(Ct)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).ToList();
        Assert.Equal("[DONE]", events[^1]);
        var text = new StringBuilder();
        string? receipt = null;
        foreach (var e in events.SkipLast(1))
        {
            using var doc = JsonDocument.Parse(e);
            foreach (var ch in doc.RootElement.GetProperty("choices").EnumerateArray())
                if (ch.GetProperty("delta").TryGetProperty("content", out var piece)) text.Append(piece.GetString());
            if (doc.RootElement.TryGetProperty("oml_receipt", out var r)) receipt = r.GetString();
        }
        Assert.NotNull(receipt);
        var signed = HostHttp.DecodeReceipt(receipt);
        Assert.True(signed.Verify(domain));
        Assert.Equal(Receipt.Create(hostKey.Address, "tiny-model", permit.Permit.Hash(domain), query, text.ToString(), signed.Receipt.Time), signed.Receipt);

        // The host refuses n > 1 (a permit covers one answer).
        body["stream"] = false;
        body.Remove("stream_options");
        body["n"] = 2;
        using var many = await http.PostAsync(new Uri(host.BaseUrl, "chat/completions"), new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, many.StatusCode);

        // A prompt of token ids has no text for a permit to name: a permit for the empty query must not cover it.
        var empty = Permit.Create(userKey.Address, "tiny-model", hostKey.Address, "", 2, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
        var byIds = new System.Text.Json.Nodes.JsonObject
        {
            ["model"] = "tiny-model", ["prompt"] = new System.Text.Json.Nodes.JsonArray(5, 6, 7, 8), ["max_tokens"] = 2, [HostHttp.PermitField] = empty.ToJsonNode(),
        };
        using var ids = await http.PostAsync(new Uri(host.BaseUrl, "completions"), new StringContent(byIds.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, ids.StatusCode);
        Assert.Contains("token ids", await ids.Content.ReadAsStringAsync(Ct));

        // A malformed permit (a repeated key) is refused like any bad permit, not a server error.
        const string repeated = "{\"model\": \"tiny-model\", \"prompt\": \"hi\", \"max_tokens\": 2, \"oml_permit\": {\"nonce\": 1, \"nonce\": 2, \"signature\": \"0x00\"}}";
        using var malformed = await http.PostAsync(new Uri(host.BaseUrl, "completions"), new StringContent(repeated, Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HostHttp.RefusedStatus, (int)malformed.StatusCode);
        Assert.Contains("malformed permit", await malformed.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task A_busy_protocol_host_answers_429_before_the_permit_and_the_user_client_waits_and_sends_it_again()
    {
        using var hostKey = PrivateKey.Generate();
        using var userKey = PrivateKey.Generate();
        var domain = new ProtocolDomain(31337, "0x" + new string('1', 40));
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var host = await ProtocolHostServer.StartAsync(hostKey, domain, "tiny-model", async (q, s, ct) =>
        {
            if (q == "slow") { started.TrySetResult(); await release.Task.WaitAsync(ct); }
            return "answer to " + q;
        }, null, PermitPolicy.Require, options: new OpenAiServerOptions { MaxConcurrentRequests = 1 }, ct: Ct);
        SignedPermit For(string q, long nonce) =>
            Permit.Create(userKey.Address, "tiny-model", hostKey.Address, q, nonce, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
        using var user = new HttpHostEndpoint(host.BaseUrl);
        var slow = user.AskAsync("slow", For("slow", 1), Ct);
        await started.Task.WaitAsync(Ct);
        var fastPermit = For("fast", 2);
        var busy = user.AskAsync("fast", fastPermit, Ct);
        while (host.Metrics.Requests("/v1/completions", 429) < 1) await Task.Delay(10, Ct);
        release.SetResult();
        Assert.Equal("answer to slow", (await slow).Text);
        var fast = await busy;
        Assert.Equal("answer to fast", fast.Text);
        Assert.True(fast.Receipt.Verify(domain));
        Assert.Equal(fastPermit.Permit.Hash(domain), fast.Receipt.Receipt.PermitHash);
    }

    [Fact]
    public async Task A_user_who_leaves_a_streamed_answer_part_way_is_charged_for_the_text_it_was_sent()
    {
        // A user could read a paid answer to its second-last token and close the connection before the last event (which
        // carries the receipt): the host must still settle the permit, with a receipt for the text it wrote.
        var backend = new TrickleBackend();
        using var hostKey = PrivateKey.Generate();
        using var userKey = PrivateKey.Generate();
        var domain = new ProtocolDomain(31337, "0x" + new string('3', 40));
        string dir = Path.Combine(Path.GetTempPath(), "oml-cut-" + Guid.NewGuid().ToString("N"));
        try
        {
            var store = new UsageStore(dir, domain, "tiny-model");
            await using var host = await ProtocolHostServer.StartAsync(hostKey, domain, "tiny-model", backend, store, PermitPolicy.Require,
                options: new OpenAiServerOptions { ModelName = "tiny-model", IgnoreEos = true }, ct: Ct);
            // A request without a valid permit is refused before its prompt is tokenized (a 4 MiB prompt costs the host
            // nothing without one).
            using (var noPermit = new HttpClient())
            {
                var unsigned = Permit.Create(userKey.Address, "tiny-model", hostKey.Address, "other query", 6, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
                foreach (var extra in new[] { "", ", \"oml_permit\": " + unsigned.ToJsonNode().ToJsonString() })
                {
                    using var r = await noPermit.PostAsync(new Uri(host.BaseUrl, "completions"),
                        new StringContent("{\"prompt\": \"" + new string('x', 1 << 20) + "\", \"max_tokens\": 2" + extra + "}", Encoding.UTF8, "application/json"), Ct);
                    Assert.Equal(HostHttp.RefusedStatus, (int)r.StatusCode);
                }
                Assert.Equal(0, backend.Prepared);
            }
            const string query = "the cat sat on";
            var permit = Permit.Create(userKey.Address, "tiny-model", hostKey.Address, query, 7, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
            var body = new System.Text.Json.Nodes.JsonObject
            {
                ["model"] = "tiny-model", ["prompt"] = query, ["max_tokens"] = 400, ["stream"] = true, [HostHttp.PermitField] = permit.ToJsonNode(),
            };
            var received = new StringBuilder();
            using (var http = new HttpClient())
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(host.BaseUrl, "completions")) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
                int events = 0;
                while (events < 3 && await reader.ReadLineAsync(Ct) is { } line)
                {
                    if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                    using var doc = JsonDocument.Parse(line["data: ".Length..]);
                    received.Append(doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
                    events++;
                }
            } // the connection closes with the answer unread

            // A failure of the host's own mid-stream (its backend), with the client still reading, is not the user's to
            // pay for: no receipt. And an echoed prompt is not an answer: a protocol host refuses echo.
            using (var stays = new HttpClient())
            {
                const string failing = "the backend fails";
                var fp = Permit.Create(userKey.Address, "tiny-model", hostKey.Address, failing, 8, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
                var fb = new System.Text.Json.Nodes.JsonObject { ["model"] = "tiny-model", ["prompt"] = failing, ["max_tokens"] = 20, ["stream"] = true, [HostHttp.PermitField] = fp.ToJsonNode() };
                using var r = await stays.PostAsync(new Uri(host.BaseUrl, "completions"), new StringContent(fb.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
                Assert.Contains("went away", await r.Content.ReadAsStringAsync(Ct));
                var ep = Permit.Create(userKey.Address, "tiny-model", hostKey.Address, "echo me", 9, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), 1).Sign(domain, userKey);
                var eb = new System.Text.Json.Nodes.JsonObject { ["model"] = "tiny-model", ["prompt"] = "echo me", ["echo"] = true, ["stream"] = true, [HostHttp.PermitField] = ep.ToJsonNode() };
                using var er = await stays.PostAsync(new Uri(host.BaseUrl, "completions"), new StringContent(eb.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
                Assert.Equal(HttpStatusCode.BadRequest, er.StatusCode);
            }

            var sw = Stopwatch.StartNew();
            IReadOnlyList<ServedQuery> served = [];
            while (served.Count == 0 && sw.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(20, Ct);
                served = store.ReadServed();
            }
            var settled = Assert.Single(served);
            Assert.NotNull(settled.Permit);
            Assert.Equal(permit.Permit.Hash(domain), settled.Receipt.Receipt.PermitHash);
            Assert.True(settled.Receipt.Verify(domain));
            Assert.Equal(Hex.KeccakText(query), settled.Receipt.Receipt.QueryHash);
            // The receipt names the answer's first k pieces for some k from the 3 the user read up to fewer than all 400.
            int k = Enumerable.Range(3, 397).FirstOrDefault(n => Hex.KeccakText(TrickleBackend.Text(n)) == settled.Receipt.Receipt.ResponseHash);
            Assert.True(k >= 3, "the receipt names no prefix of the answer that the user was sent");
            Assert.StartsWith(received.ToString(), TrickleBackend.Text(k));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A backend that answers one piece ("w0 ", "w1 ", ...) every 10 ms up to max_tokens.</summary>
    private sealed class TrickleBackend : ICompletionBackend
    {
        public static string Text(int pieces) => string.Concat(Enumerable.Range(0, pieces).Select(i => $"w{i} "));
        public int Prepared;
        public int? ContextLength => null;
        public bool CountsTokens => false;
        public PromptInput PreparePrompt(string prompt, bool addSpecialTokens) { Interlocked.Increment(ref Prepared); return new(prompt); }
        public PromptInput PrepareTokens(int[] ids) => throw new NotSupportedException();
        public PromptInput PrepareChat(IReadOnlyList<ChatTurn> messages) => new(ChatQuery.Of(messages));

        public async IAsyncEnumerable<CompletionDelta> GenerateAsync(PromptInput prompt, DecodeRequest request,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
        {
            for (int i = 0; i < request.MaxTokens; i++)
            {
                await Task.Delay(10, ct);
                if (prompt.Text == "the backend fails" && i == 3) throw new IOException("the backend's device went away");
                yield return new CompletionDelta($"w{i} ", 1, null, i == request.MaxTokens - 1 ? "length" : null);
            }
        }
    }

    [Fact]
    public async Task A_reader_that_stops_early_drops_its_row_and_metrics_keep_one_label_per_route()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, options: new OpenAiServerOptions { ModelName = "tiny" }, ct: Ct);
        // A streamed choice whose client reset the connection ends with a failed write (an I/O error, not a
        // cancellation): the server stops reading the backend's iterator and disposes it. Its row must not decode on
        // to max_tokens for nobody.
        const int maxTokens = 400;
        var decode = new DecodeRequest(maxTokens, 0, 1, null, [], null, IgnoreEos: true, new Oml.Fingerprinting.Endpoints.CompletionSettings(maxTokens, 0, 1, null, "tiny", Oml.Fingerprinting.Endpoints.CompletionMode.Completions));
        await using (var reader = backend.GenerateAsync(backend.PreparePrompt("the cat", true), decode, CancellationToken.None).GetAsyncEnumerator(Ct))
        {
            Assert.True(await reader.MoveNextAsync());
            Assert.True(await reader.MoveNextAsync());
        }
        var sw = Stopwatch.StartNew();
        while (backend.Engine.Running > 0 && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(5, Ct);
        Assert.Equal(0, backend.Engine.Running);
        long decoded = backend.Engine.Counters.DecodedRows;
        Assert.True(decoded < maxTokens / 4, $"{decoded} tokens decoded for a reader that took two ({maxTokens} if the row ran on)");

        // Routing ignores case and a trailing slash; the metrics label is the route's own name.
        using var http = new HttpClient();
        foreach (var path in new[] { "/V1/COMPLETIONS", "/v1/Completions/" })
        {
            using var r = await http.PostAsync(new Uri(server.BaseUrl, path), new StringContent("{\"prompt\": \"a\", \"max_tokens\": 1}", Encoding.UTF8, "application/json"), Ct);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        string metrics = await http.GetStringAsync(new Uri(server.BaseUrl, "/metrics"), Ct);
        Assert.DoesNotContain("COMPLETIONS", metrics);
        Assert.DoesNotContain("Completions", metrics);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(metrics, "oml_requests_total\\{endpoint=\"[^\"]*ompletions[^\"]*\""));
    }

    [Fact]
    public async Task The_openai_npm_package_drives_both_servers()
    {
        var root = Path.GetFullPath(Path.Combine(TestModels.Fixture("llama-tiny"), "..", "..", "..", "..", ".."));
        string script = Path.Combine(root, "tests", "tools", "openai_client.mjs");
        string package = Path.Combine(root, "artifacts", "node", "node_modules", "openai", "package.json");
        if (!NodeAvailable()) Assert.Skip("Node.js is not installed");
        Assert.True(File.Exists(package), "the openai npm package is missing: run scripts/fetch-tokenizers.sh (it installs it into artifacts/node)");

        using var backend = _model.Load();
        await using var plain = await OpenAiCompatibleServer.StartAsync(backend, options: new OpenAiServerOptions { ModelName = "tiny" }, ct: Ct);
        await RunNode(script, plain.BaseUrl, "plain");

        using var backend2 = _model.Load();
        using var hostKey = PrivateKey.Generate();
        await using var host = await ProtocolHostServer.StartAsync(hostKey, new ProtocolDomain(1, "0x" + new string('2', 40)), "tiny", backend2, null, PermitPolicy.Ignore,
            options: new OpenAiServerOptions { ModelName = "tiny" }, ct: Ct);
        await RunNode(script, host.BaseUrl, "host");
        Assert.True(host.Metrics.Requests("/v1/chat/completions", 200) > 0);
    }

    private static bool NodeAvailable()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("node", "--version") { RedirectStandardOutput = true, UseShellExecute = false });
            p!.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    private static async Task RunNode(string script, Uri baseUrl, string mode)
    {
        var psi = new ProcessStartInfo("node", [script, baseUrl.ToString(), mode])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(script)!,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(Ct);
        var stderr = p.StandardError.ReadToEndAsync(Ct);
        await p.WaitForExitAsync(Ct).WaitAsync(TimeSpan.FromSeconds(120), Ct);
        Assert.True(p.ExitCode == 0, $"openai_client.mjs ({mode}) failed:\n{await stdout}\n{await stderr}");
        Assert.Contains("ok", await stdout);
    }
}
