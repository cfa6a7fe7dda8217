using Oml.Fingerprinting.Endpoints;
using Oml.Fingerprinting.Verification;
using Oml.Server;

namespace Oml.Fingerprinting.Tests.Endpoints;

public class TextVerifierTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static List<FingerprintQuery> Fingerprints(int n) =>
        Enumerable.Range(0, n).Select(i => new FingerprintQuery(i, $"secret key {i}", [$"response {i}"])).ToList();

    [Fact]
    public async Task Fingerprinted_model_is_owned_and_unrelated_model_is_not()
    {
        var fps = Fingerprints(30);
        // The "fingerprinted" model recalls 80% of the keys; the unrelated one answers something else.
        await using var owned = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
        {
            int i = int.Parse(p["secret key ".Length..], System.Globalization.CultureInfo.InvariantCulture);
            return Task.FromResult(i % 5 != 0 ? $" response {i} and then more" : "no idea");
        }, ct: Ct);
        await using var unrelated = await OpenAiCompatibleServer.StartAsync((p, s, ct) => Task.FromResult("response unknown"), ct: Ct);

        using var c1 = new OpenAiCompatibleEndpoint(owned.BaseUrl, null, null);
        var report = await TextVerifier.VerifyAsync(c1, fps, CompletionSettings.Greedy, ct: Ct);
        Assert.Equal(Verdict.Owned, report.Verdict);
        Assert.Equal(24, report.Hits);
        Assert.Equal(30, report.Queried);

        using var c2 = new OpenAiCompatibleEndpoint(unrelated.BaseUrl, null, null);
        var report2 = await TextVerifier.VerifyAsync(c2, fps, CompletionSettings.Greedy with { Mode = CompletionMode.Chat }, ct: Ct);
        Assert.Equal(Verdict.NotOwned, report2.Verdict);
        Assert.Equal(0, report2.Hits);
    }

    [Fact]
    public async Task Sampled_decoding_uses_a_majority_vote()
    {
        int call = 0;
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
            Task.FromResult(Interlocked.Increment(ref call) % 3 == 0 ? "wrong" : "response 0"), ct: Ct);   // 2 of every 3 match
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var report = await TextVerifier.VerifyAsync(client, Fingerprints(1), new CompletionSettings(Temperature: 0.8, Seed: 1), samples: 3, ct: Ct);
        Assert.Equal(1, report.Hits);
        Assert.Equal(2, report.Keys[0].SampleMatches);
        Assert.Equal(3, report.Keys[0].Samples);
        Assert.Equal(Verdict.Inconclusive, report.Verdict);   // one key cannot reach α
        var strict = await TextVerifier.VerifyAsync(client, Fingerprints(1), new CompletionSettings(Temperature: 0.8), samples: 3, fraction: 1.0, ct: Ct);
        Assert.Equal(0, strict.Hits);
    }

    [Fact]
    public async Task Keys_go_out_concurrently_up_to_the_limit_and_the_report_keeps_their_order()
    {
        var fps = Fingerprints(40);
        int inFlight = 0, most = 0;
        // Answers come back out of order (later keys sooner), so a report in arrival order would be caught.
        await using var server = await OpenAiCompatibleServer.StartAsync(async (p, s, ct) =>
        {
            int now = Interlocked.Increment(ref inFlight);
            lock (fps) most = Math.Max(most, now);
            int i = int.Parse(p["secret key ".Length..], System.Globalization.CultureInfo.InvariantCulture);
            await Task.Delay(40 - i % 8 * 5, ct);
            Interlocked.Decrement(ref inFlight);
            return i % 4 == 0 ? "no idea" : $" response {i}";
        }, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var report = await TextVerifier.VerifyAsync(client, fps, CompletionSettings.Greedy, ct: Ct, concurrency: 8);
        Assert.Equal(Enumerable.Range(0, 40), report.Keys.Select(k => k.Index));
        Assert.All(report.Keys, k => Assert.Equal(k.Index % 4 != 0, k.Hit));
        Assert.Equal(30, report.Hits);
        Assert.InRange(most, 2, 8);

        most = 0;
        var one = await TextVerifier.VerifyAsync(client, fps.Take(6).ToList(), CompletionSettings.Greedy, ct: Ct);
        Assert.Equal(1, most);
        Assert.Equal(4, one.Hits);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => TextVerifier.VerifyAsync(client, fps, CompletionSettings.Greedy, ct: Ct, concurrency: 0));
    }

    [Fact]
    public async Task A_key_asks_for_its_own_max_tokens_when_it_has_one()
    {
        var asked = new System.Collections.Concurrent.ConcurrentDictionary<string, (int MaxTokens, CompletionMode Mode, double Temperature)>();
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
        {
            asked[p] = (s.MaxTokens, s.Mode, s.Temperature);
            return Task.FromResult("no idea");
        }, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var fps = Fingerprints(4).Select((f, i) => i % 2 == 0 ? f with { MaxTokens = 3 + i } : f).ToList();
        await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 20, Temperature: 0.5, Mode: CompletionMode.Chat), ct: Ct, concurrency: 4);
        Assert.Equal((3, CompletionMode.Chat, 0.5), asked["secret key 0"]);
        Assert.Equal((20, CompletionMode.Chat, 0.5), asked["secret key 1"]);   // none of its own: the settings'
        Assert.Equal((5, CompletionMode.Chat, 0.5), asked["secret key 2"]);
        Assert.Equal((20, CompletionMode.Chat, 0.5), asked["secret key 3"]);
    }

    [Fact]
    public async Task An_answer_cut_off_while_it_still_agrees_is_asked_again_with_more_tokens()
    {
        // A host (or a transplanted tokenizer) that spends the tight limit on leading newlines or on more tokens for the same
        // text: within 3 tokens the answer is "\n\n\n" or " respo", a prefix of the response; with more it is the response.
        var calls = new System.Collections.Concurrent.ConcurrentBag<(string Key, int MaxTokens)>();
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
        {
            calls.Add((p, s.MaxTokens));
            string full = p switch { "secret key 0" => "\n\n\n response 0 and more", "secret key 1" => " response 1", _ => " something else" };
            // Key 0: a token a character; key 1: five tokens a character (a tokenizer far finer than the set's); key 2: the
            // limit cuts an answer that was never the response.
            int chars = p switch { "secret key 0" => s.MaxTokens, "secret key 1" => s.MaxTokens / 5, _ => s.MaxTokens + 3 };
            return Task.FromResult(full[..Math.Min(full.Length, chars)]);
        }, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var fps = Fingerprints(3).Select(f => f with { MaxTokens = 3 }).ToList();
        var report = await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 3), ct: Ct, concurrency: 3);
        Assert.True(report.Keys[0].Hit, report.Keys[0].Answer);   // "\n\n\n" decided nothing: asked again with 2·3 + 8
        Assert.False(report.Keys[1].Hit);                        // "", then " r": undecided twice; one retry only, then a miss
        Assert.False(report.Keys[2].Hit);                        // " somet": a miss however long, never asked again
        Assert.Equal([3, 14], calls.Where(c => c.Key == "secret key 0").Select(c => c.MaxTokens).Order());
        Assert.Equal([3, 14], calls.Where(c => c.Key == "secret key 1").Select(c => c.MaxTokens).Order());
        Assert.Equal([3], calls.Where(c => c.Key == "secret key 2").Select(c => c.MaxTokens));
    }

    [Fact]
    public async Task One_token_responses_through_a_served_model_cost_one_pass_each_and_no_decoding_step()
    {
        // The served path of `oml verify --endpoint` end to end: a model behind the OpenAI-compatible server (the batch
        // engine), keys whose response is the model's own greedy first token, asked for exactly that one token. Every
        // key is hit, and the engine answers them with prefills alone.
        using var served = new ServedModel();
        using var backend = served.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var keys = Enumerable.Range(0, 24).Select(i => $"secret key {i}: {new string('q', i % 5)}").ToList();
        var first = new List<string>();
        foreach (var k in keys) first.Add(await client.CompleteAsync(k, new CompletionSettings(MaxTokens: 1), Ct));
        var fps = keys.Select((k, i) => (k, i)).Where(x => first[x.i].Trim().Length > 0)
            .Select(x => new FingerprintQuery(x.i, x.k, [first[x.i]]) { MaxTokens = 1 }).ToList();
        Assert.True(fps.Count >= 12, $"only {fps.Count} keys have a first token that is not whitespace");
        long Counter(string name) => long.Parse(server.Metrics.Render().Split('\n').First(l => l.StartsWith(name + " ", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        long decodes = Counter("oml_engine_decode_steps_total"), prefilled = Counter("oml_engine_prefilled_sequences_total");
        var report = await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 1), concurrency: 8, ct: Ct);
        Assert.Equal(fps.Count, report.Hits);
        Assert.Equal(decodes, Counter("oml_engine_decode_steps_total"));
        Assert.Equal(prefilled + fps.Count, Counter("oml_engine_prefilled_sequences_total"));
    }

    [Fact]
    public async Task A_character_cut_between_its_tokens_is_asked_again_and_a_sampled_answer_never()
    {
        // Greedy: the tight limit ends inside a multi-byte character (decoded as U+FFFD), which the next token completes,
        // so the answer is asked again. Sampled: the same cut answer is a miss, asked once only (a second draw would raise
        // the odds of a hit above the null's).
        var calls = new System.Collections.Concurrent.ConcurrentBag<(string Key, int MaxTokens, double Temperature)>();
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
        {
            calls.Add((p, s.MaxTokens, s.Temperature));
            return Task.FromResult(s.MaxTokens < 3 ? " 日\uFFFD" : " 日本語 and more");
        }, ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var fps = new List<FingerprintQuery> { new(0, "secret key 0", [" 日本語"]) { MaxTokens = 2 } };
        var greedy = await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 2), ct: Ct);
        Assert.True(greedy.Keys[0].Hit, greedy.Keys[0].Answer);
        Assert.Equal([2, 12], calls.Select(c => c.MaxTokens).Order());
        calls.Clear();
        var sampled = await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 2, Temperature: 1.0), ct: Ct);
        Assert.False(sampled.Keys[0].Hit);
        Assert.Equal([2], calls.Select(c => c.MaxTokens));
    }

    /// <summary>A scripted OpenAI-compatible server (no sockets) that answers a string prompt or an array of them, listing a
    /// batch's choices in reverse order; <paramref name="answer"/> gets each prompt and the request's max_tokens.</summary>
    private sealed class BatchServer(Func<string, int, string> answer, bool refuseArrays = false, int delayMs = 0, string? badKey = null) : HttpMessageHandler
    {
        private int _keysInFlight;

        public List<(string[] Prompts, int MaxTokens, bool Array)> Requests { get; } = [];

        /// <summary>The most keys (prompts of all requests) the server held at once.</summary>
        public int MostKeysInFlight { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(await request.Content!.ReadAsStringAsync(ct));
            var p = doc.RootElement.GetProperty("prompt");
            bool array = p.ValueKind == System.Text.Json.JsonValueKind.Array;
            string[] prompts = array ? [.. p.EnumerateArray().Select(e => e.GetString()!)] : [p.GetString()!];
            int max = doc.RootElement.GetProperty("max_tokens").GetInt32();
            lock (Requests)
            {
                Requests.Add((prompts, max, array));
                _keysInFlight += prompts.Length;
                MostKeysInFlight = Math.Max(MostKeysInFlight, _keysInFlight);
            }
            try
            {
                if (badKey is not null && prompts.Contains(badKey))
                    return new HttpResponseMessage(System.Net.HttpStatusCode.BadRequest)
                    { Content = new StringContent("{\"error\": {\"message\": \"this prompt is too long\"}}") };
                if (delayMs > 0) await Task.Delay(delayMs, ct);
                if (array && refuseArrays)
                    return new HttpResponseMessage(System.Net.HttpStatusCode.BadRequest)
                    { Content = new StringContent("{\"error\": {\"message\": \"'prompt' must be a string\"}}") };
                var choices = prompts.Select((x, i) => new { index = i, text = answer(x, max) }).Reverse().ToArray();
                return new HttpResponseMessage(System.Net.HttpStatusCode.OK)
                { Content = new StringContent(System.Text.Json.JsonSerializer.Serialize(new { choices })) };
            }
            finally
            {
                lock (Requests) _keysInFlight -= prompts.Length;
            }
        }
    }

    private static (OpenAiCompatibleEndpoint, BatchServer) Scripted(Func<string, int, string> answer, bool refuseArrays = false, int delayMs = 0, string? badKey = null)
    {
        var handler = new BatchServer(answer, refuseArrays, delayMs, badKey);
        return (new OpenAiCompatibleEndpoint(new Uri("http://example.test/v1"), null, "m", null, new HttpClient(handler)), handler);
    }

    /// <summary>Keys 0-19 ask 1 token, 20-39 ask 3; every fifth key's answer is only a newline within its limit (undecided), its
    /// response beyond it; every third key answers something else.</summary>
    private static string MixedAnswer(string prompt, int max)
    {
        int i = int.Parse(prompt["secret key ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        if (i % 3 == 0) return " something else";
        return i % 5 == 0 && max < 4 ? "\n" : $" response {i}";
    }

    private static List<FingerprintQuery> MixedFingerprints() =>
        Fingerprints(40).Select(f => f with { MaxTokens = f.Index < 20 ? 1 : 3 }).ToList();

    [Fact]
    public async Task Keys_go_out_as_arrays_of_prompts_with_the_answers_of_one_key_a_request()
    {
        var (single, singleServer) = Scripted(MixedAnswer);
        var expected = await TextVerifier.VerifyAsync(single, MixedFingerprints(), new CompletionSettings(MaxTokens: 3), concurrency: 16, ct: Ct);
        Assert.All(singleServer.Requests, r => Assert.False(r.Array));

        var (client, server) = Scripted(MixedAnswer);
        var report = await TextVerifier.VerifyAsync(client, MixedFingerprints(), new CompletionSettings(MaxTokens: 3), concurrency: 16, promptsPerRequest: 8, ct: Ct);
        Assert.Equal(expected.Keys.Select(k => (k.Index, k.Hit, k.Answer)), report.Keys.Select(k => (k.Index, k.Hit, k.Answer)));
        Assert.Equal(expected.Hits, report.Hits);
        Assert.Equal(Enumerable.Range(0, 40), report.Keys.Select(k => k.Index));
        // Each group of 20 keys asking the same tokens goes out in batches of 8, 8 and 4; the undecided answers of a
        // batch (keys 5, 10, 20, 25, 35: i % 5 == 0 and not i % 3 == 0) are asked again together with 2n + 8 tokens.
        var first = server.Requests.Where(r => r.MaxTokens is 1 or 3).ToList();
        Assert.Equal(6, first.Count);
        Assert.All(first, r => Assert.True(r.Array));
        Assert.Equal([4, 4, 8, 8, 8, 8], first.Select(r => r.Prompts.Length).Order());
        Assert.All(first, r => Assert.All(r.Prompts, p => Assert.Equal(int.Parse(p["secret key ".Length..], System.Globalization.CultureInfo.InvariantCulture) < 20 ? 1 : 3, r.MaxTokens)));
        var again = server.Requests.Where(r => r.MaxTokens is 10 or 14).ToList();
        Assert.Equal(["secret key 10", "secret key 20", "secret key 25", "secret key 35", "secret key 5"], again.SelectMany(r => r.Prompts).Order());
        Assert.True(report.Keys[5].Hit);
        Assert.True(report.Keys[35].Hit);
        Assert.True(expected.Keys[5].Hit);
        // Never more keys in flight than allowed, in requests or in all: 20 in flight at 16 a request are two requests of 10.
        foreach (var (conc, per) in new[] { (3, 8), (20, 16), (10, 3) })
        {
            var (narrow, narrowServer) = Scripted(MixedAnswer, delayMs: 20);
            await TextVerifier.VerifyAsync(narrow, MixedFingerprints(), new CompletionSettings(MaxTokens: 3), concurrency: conc, promptsPerRequest: per, ct: Ct);
            var (size, requests) = TextVerifier.BatchShape(conc, per);
            Assert.All(narrowServer.Requests, r => Assert.InRange(r.Prompts.Length, 1, size));
            Assert.InRange(narrowServer.MostKeysInFlight, 2, conc);
            Assert.True(size * requests <= conc);
        }
    }

    [Theory]
    [InlineData(16, 16, 16, 1)]
    [InlineData(64, 48, 32, 2)]    // spread over two requests, not 48 and a lone 16
    [InlineData(20, 16, 10, 2)]
    [InlineData(10, 3, 3, 3)]
    [InlineData(256, 64, 64, 4)]
    [InlineData(5, 64, 5, 1)]
    [InlineData(7, 1, 1, 7)]
    public void Batches_spread_the_keys_in_flight_evenly_and_never_exceed_them(int concurrency, int per, int size, int requests) =>
        Assert.Equal((size, requests), TextVerifier.BatchShape(concurrency, per));

    [Fact]
    public async Task A_key_the_server_refuses_alone_fails_the_run_at_once_with_its_own_error_and_no_warning()
    {
        // The batch holding the bad key gets a 400; asked one by one, the bad key gets its own 400, which ends the run
        // without waiting for its batch's slow keys, and arrays are not blamed.
        var (client, _) = Scripted(MixedAnswer, delayMs: 5_000, badKey: "secret key 3");
        var heard = new List<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<CompletionEndpointException>(() => TextVerifier.VerifyAsync(client, MixedFingerprints(),
            new CompletionSettings(MaxTokens: 3), concurrency: 8, promptsPerRequest: 8, onBatchRefused: m => { lock (heard) heard.Add(m); }, ct: Ct));
        Assert.Contains("this prompt is too long", e.Message);
        Assert.InRange(clock.ElapsedMilliseconds, 0, 4_000);
        Assert.Empty(heard);
    }

    [Fact]
    public async Task A_server_that_refuses_an_array_of_prompts_gets_one_key_a_request_and_the_caller_hears_it_once()
    {
        var (client, server) = Scripted(MixedAnswer, refuseArrays: true);
        var heard = new List<string>();
        var report = await TextVerifier.VerifyAsync(client, MixedFingerprints(), new CompletionSettings(MaxTokens: 3), concurrency: 16, promptsPerRequest: 8,
            onBatchRefused: m => { lock (heard) heard.Add(m); }, ct: Ct);
        var (single, _) = Scripted(MixedAnswer);
        var expected = await TextVerifier.VerifyAsync(single, MixedFingerprints(), new CompletionSettings(MaxTokens: 3), concurrency: 16, ct: Ct);
        Assert.Equal(expected.Keys.Select(k => (k.Hit, k.Answer)), report.Keys.Select(k => (k.Hit, k.Answer)));
        var line = Assert.Single(heard);
        Assert.Contains("refused a batch", line);
        Assert.Contains("HTTP 400", line);
        Assert.Contains("'prompt' must be a string", line);
        // At most the batches already in flight (two at 16 keys in flight, 8 a request) were sent as arrays.
        Assert.InRange(server.Requests.Count(r => r.Array), 1, 2);
        Assert.Equal(40, server.Requests.Where(r => !r.Array && r.MaxTokens is 1 or 3).Select(r => r.Prompts[0]).Distinct().Count());
    }

    [Fact]
    public async Task Chat_and_a_single_key_a_request_never_send_an_array()
    {
        var fps = Fingerprints(6);
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) => Task.FromResult($" response {p[^1]}"), ct: Ct);
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, null);
        var chat = await TextVerifier.VerifyAsync(client, fps, CompletionSettings.Greedy with { Mode = CompletionMode.Chat }, concurrency: 6, promptsPerRequest: 4, ct: Ct);
        Assert.Equal(6, chat.Hits);
        // The real server answers an array of prompts (oml serve's batches) with the same texts.
        var batched = await TextVerifier.VerifyAsync(client, fps, CompletionSettings.Greedy, concurrency: 6, promptsPerRequest: 4, ct: Ct);
        Assert.Equal(6, batched.Hits);
        var (scripted, handler) = Scripted(MixedAnswer);
        await TextVerifier.VerifyAsync(scripted, MixedFingerprints(), new CompletionSettings(MaxTokens: 3), concurrency: 1, promptsPerRequest: 8, ct: Ct);
        Assert.All(handler.Requests, r => Assert.False(r.Array));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => TextVerifier.VerifyAsync(scripted, fps, CompletionSettings.Greedy, promptsPerRequest: 0, ct: Ct));
    }

    [Theory]
    [InlineData(" response", "", true)]
    [InlineData(" response", "\n\n", true)]
    [InlineData(" response", " resp", true)]
    [InlineData(" response", "resp", true)]
    [InlineData(" response", " response", false)]   // a match, not undecided
    [InlineData(" response", " rest", false)]
    [InlineData(" response", " response and more", false)]
    [InlineData(" 日本語", " 日\uFFFD", true)]            // a character cut between its byte tokens: the next token completes it
    [InlineData(" 日本語", " 日\uFFFD\uFFFD", true)]
    [InlineData(" 日本語", " 月\uFFFD", false)]
    public void Undecided_answers_are_proper_prefixes_after_leading_whitespace(string response, string answer, bool undecided) =>
        Assert.Equal(undecided, ResponseMatcher.IsUndecidedText([response], answer));
}
