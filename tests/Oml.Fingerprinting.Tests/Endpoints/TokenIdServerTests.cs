using System.Net;
using System.Text;
using System.Text.Json;
using Oml.Models.Tokenizers;
using Oml.Server;

namespace Oml.Fingerprinting.Tests.Endpoints;

/// <summary>
/// vLLM's request extension <c>return_tokens_as_token_ids</c> on <see cref="OpenAiCompatibleServer"/> over the llama-tiny
/// model: with logprobs, every token the logprobs name reads <c>token_id:ID</c>; the text and everything else is what the
/// same request without it answers.
/// </summary>
public sealed class TokenIdServerTests : IDisposable
{
    private readonly ServedModel _model = new();

    public void Dispose() => _model.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<(HttpStatusCode Status, JsonElement Body)> Post(HttpClient http, Uri url, string body)
    {
        using var r = await http.PostAsync(url, new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(Ct));
        return (r.StatusCode, doc.RootElement.Clone());
    }

    private static int Id(string name)
    {
        Assert.Matches(@"^token_id:[0-9]+$", name);
        return int.Parse(name["token_id:".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Completions_name_tokens_by_id_when_asked_and_by_text_when_not()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: Ct);
        var tok = Tokenizer.FromFolder(_model.Dir);
        using var http = new HttpClient();
        var url = new Uri(server.BaseUrl, "completions");
        const string Request = "\"prompt\": \"the cat sat\", \"max_tokens\": 8, \"temperature\": 0, \"logprobs\": 2";
        var (s0, plain) = await Post(http, url, "{" + Request + "}");
        var (s1, off) = await Post(http, url, "{" + Request + ", \"return_tokens_as_token_ids\": false}");
        var (s2, byId) = await Post(http, url, "{" + Request + ", \"return_tokens_as_token_ids\": true}");
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK], new[] { s0, s1, s2 });

        var text = plain.GetProperty("choices")[0];
        var ids = byId.GetProperty("choices")[0];
        Assert.Equal(text.GetProperty("logprobs").GetRawText(), off.GetProperty("choices")[0].GetProperty("logprobs").GetRawText());
        // The answer's text stays text; only the tokens the logprobs name change.
        Assert.Equal(text.GetProperty("text").GetString(), ids.GetProperty("text").GetString());
        string[] names = [.. text.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!)];
        int[] tokenIds = [.. ids.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => Id(t.GetString()!))];
        Assert.Equal(8, tokenIds.Length);
        Assert.DoesNotContain(names, n => n.StartsWith("token_id:", StringComparison.Ordinal));
        Assert.Equal(names, tokenIds.Select(id => tok.Decode([id])));
        Assert.Equal(text.GetProperty("text").GetString(), tok.Decode(tokenIds));
        // The alternatives: the same tokens in the same order with the same log-probabilities, named by id.
        var tops = text.GetProperty("logprobs").GetProperty("top_logprobs").EnumerateArray().ToList();
        var idTops = ids.GetProperty("logprobs").GetProperty("top_logprobs").EnumerateArray().ToList();
        Assert.Equal(tokenIds.Length, idTops.Count);
        for (int i = 0; i < tops.Count; i++)
        {
            var a = tops[i].EnumerateObject().ToList();
            var b = idTops[i].EnumerateObject().ToList();
            Assert.Equal(2, b.Count);
            Assert.Equal(a.Select(p => p.Name), b.Select(p => tok.Decode([Id(p.Name)])));
            Assert.Equal(a.Select(p => p.Value.GetSingle()), b.Select(p => p.Value.GetSingle()));
            Assert.Contains(tokenIds[i], b.Select(p => Id(p.Name)));   // greedy: the chosen token is the most likely one
        }
        // The chosen tokens' log-probabilities and text offsets (into the answer's text) are unchanged.
        Assert.Equal(text.GetProperty("logprobs").GetProperty("token_logprobs").GetRawText(), ids.GetProperty("logprobs").GetProperty("token_logprobs").GetRawText());
        Assert.Equal(text.GetProperty("logprobs").GetProperty("text_offset").GetRawText(), ids.GetProperty("logprobs").GetProperty("text_offset").GetRawText());

        // Without logprobs the field changes nothing (vLLM: it applies to logprobs only).
        var (s3, noLogprobs) = await Post(http, url, "{\"prompt\": \"the cat sat\", \"max_tokens\": 8, \"temperature\": 0, \"return_tokens_as_token_ids\": true}");
        Assert.Equal(HttpStatusCode.OK, s3);
        Assert.Equal(JsonValueKind.Null, noLogprobs.GetProperty("choices")[0].GetProperty("logprobs").ValueKind);
        Assert.Equal(text.GetProperty("text").GetString(), noLogprobs.GetProperty("choices")[0].GetProperty("text").GetString());

        // An array of prompts: every choice's tokens by id.
        var (s4, batch) = await Post(http, url, "{\"prompt\": [\"the cat sat\", \"a dog\"], \"max_tokens\": 3, \"temperature\": 0, \"logprobs\": 0, \"return_tokens_as_token_ids\": true}");
        Assert.Equal(HttpStatusCode.OK, s4);
        foreach (var c in batch.GetProperty("choices").EnumerateArray())
            Assert.Equal(c.GetProperty("text").GetString(), tok.Decode([.. c.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => Id(t.GetString()!))]));
        Assert.Equal(tokenIds[..3], batch.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => Id(t.GetString()!)));

        // Streamed: each event's tokens by id, together the answer's.
        using var streamed = await http.PostAsync(url, new StringContent("{" + Request + ", \"stream\": true, \"return_tokens_as_token_ids\": true}",
            Encoding.UTF8, "application/json"), Ct);
        var events = (await streamed.Content.ReadAsStringAsync(Ct)).Split('\n')
            .Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l["data: ".Length..]).RootElement).ToList();
        var streamedIds = events.SelectMany(e => e.GetProperty("choices").EnumerateArray())
            .Where(c => c.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => Id(t.GetString()!))).ToArray();
        Assert.Equal(tokenIds, streamedIds);
    }

    [Fact]
    public async Task Chats_name_tokens_and_alternatives_by_id_when_asked_and_keep_their_bytes()
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: Ct);
        var tok = Tokenizer.FromFolder(_model.Dir);
        using var http = new HttpClient();
        var url = new Uri(server.BaseUrl, "chat/completions");
        const string Request = "\"messages\": [{\"role\": \"user\", \"content\": \"the cat sat\"}], \"max_tokens\": 6, \"temperature\": 0, \"logprobs\": true, \"top_logprobs\": 2";
        var (s0, plain) = await Post(http, url, "{" + Request + "}");
        var (s1, byId) = await Post(http, url, "{" + Request + ", \"return_tokens_as_token_ids\": true}");
        Assert.Equal(HttpStatusCode.OK, s0);
        Assert.Equal(HttpStatusCode.OK, s1);
        var text = plain.GetProperty("choices")[0];
        var ids = byId.GetProperty("choices")[0];
        Assert.Equal(text.GetProperty("message").GetProperty("content").GetString(), ids.GetProperty("message").GetProperty("content").GetString());
        var a = text.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        var b = ids.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(6, b.Count);
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.DoesNotContain("token_id:", a[i].GetProperty("token").GetString(), StringComparison.Ordinal);
            Assert.Equal(a[i].GetProperty("token").GetString(), tok.Decode([Id(b[i].GetProperty("token").GetString()!)]));
            // "bytes" stay the token's own UTF-8 bytes (vLLM's do for the chosen token).
            Assert.Equal(a[i].GetProperty("bytes").GetRawText(), b[i].GetProperty("bytes").GetRawText());
            Assert.Equal(a[i].GetProperty("logprob").GetSingle(), b[i].GetProperty("logprob").GetSingle());
            var at = a[i].GetProperty("top_logprobs").EnumerateArray().ToList();
            var bt = b[i].GetProperty("top_logprobs").EnumerateArray().ToList();
            Assert.Equal(2, bt.Count);
            Assert.Equal(at.Select(x => x.GetProperty("token").GetString()), bt.Select(x => tok.Decode([Id(x.GetProperty("token").GetString()!)])));
        }
        Assert.Equal(text.GetProperty("message").GetProperty("content").GetString(),
            tok.Decode([.. b.Select(x => Id(x.GetProperty("token").GetString()!))]));
    }

    [Theory]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 0, \"return_tokens_as_token_ids\": \"true\"}")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"return_tokens_as_token_ids\": 1}")]
    [InlineData("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true, \"return_tokens_as_token_ids\": [true]}")]
    public async Task A_return_tokens_as_token_ids_that_is_not_a_boolean_is_a_400(string path, string body)
    {
        using var backend = _model.Load();
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: Ct);
        using var http = new HttpClient();
        var (status, e) = await Post(http, new Uri($"http://127.0.0.1:{server.Port}{path}"), body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("return_tokens_as_token_ids", e.GetProperty("error").GetProperty("param").GetString());
        Assert.Equal("'return_tokens_as_token_ids' must be a boolean.", e.GetProperty("error").GetProperty("message").GetString());
        // null is the field left out.
        var (ok, _) = await Post(http, new Uri($"http://127.0.0.1:{server.Port}{path}"), body[..body.IndexOf("\"return_tokens", StringComparison.Ordinal)] + "\"return_tokens_as_token_ids\": null}");
        Assert.Equal(HttpStatusCode.OK, ok);
    }
}
