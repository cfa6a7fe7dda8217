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

        using var c1 = new OpenAiCompatibleEndpoint(owned.BaseUrl, null, "m");
        var report = await TextVerifier.VerifyAsync(c1, fps, CompletionSettings.Greedy, ct: Ct);
        Assert.Equal(Verdict.Owned, report.Verdict);
        Assert.Equal(24, report.Hits);
        Assert.Equal(30, report.Queried);

        using var c2 = new OpenAiCompatibleEndpoint(unrelated.BaseUrl, null, "m");
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
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "m");
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
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "m");
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
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "m");
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
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "m");
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
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "m");
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
        using var client = new OpenAiCompatibleEndpoint(server.BaseUrl, null, "m");
        var fps = new List<FingerprintQuery> { new(0, "secret key 0", [" 日本語"]) { MaxTokens = 2 } };
        var greedy = await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 2), ct: Ct);
        Assert.True(greedy.Keys[0].Hit, greedy.Keys[0].Answer);
        Assert.Equal([2, 12], calls.Select(c => c.MaxTokens).Order());
        calls.Clear();
        var sampled = await TextVerifier.VerifyAsync(client, fps, new CompletionSettings(MaxTokens: 2, Temperature: 1.0), ct: Ct);
        Assert.False(sampled.Keys[0].Hit);
        Assert.Equal([2], calls.Select(c => c.MaxTokens));
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
