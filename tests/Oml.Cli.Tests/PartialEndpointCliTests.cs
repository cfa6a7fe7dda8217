using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;
using Oml.Server;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>oml verify --endpoint URL --match partial</c>: the server is asked for its answers' token ids (logprobs with
/// <c>return_tokens_as_token_ids</c>), which are matched as <c>--model</c> matches a local model's answers. On the
/// llama-tiny fixture served by <see cref="OpenAiCompatibleServer"/> (the batch engine), against the same model verified
/// in process.
/// </summary>
[Collection(nameof(CliTests))]
public class PartialEndpointCliTests(FingerprintCliTests.Workspace workspace) : IClassFixture<FingerprintCliTests.Workspace>
{
    private FingerprintCliTests.Workspace W => workspace;

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static Task<(int Code, string Out, string Err)> RunOff(params string[] args) =>
        Task.Run(() => CliRunner.Run(args), TestContext.Current.CancellationToken);   // the command blocks on its HTTP calls

    private static JsonNode Json(string s) => JsonNode.Parse(s)!;

    private const string Template =
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

    /// <summary>
    /// A plaintext set with the workspace set's 8 keys whose 4-token responses are built from <paramref name="model"/>'s
    /// own greedy answer g to each key (as <paramref name="format"/> encodes it): key i answers them with i mod 4 = 0 the
    /// whole response (g); 1 a wrong first token, then the rest (x g1 g2 g3, a partial hit for m = 3: d = e = 1); 2 the
    /// response's tail straight away (x g0 g1 g2: d = 0, e = 1); 3 nothing of it. The exact rule hits the first kind only.
    /// </summary>
    private string MixedSet(string name, string model, Func<Tokenizer, KeyFormat> format)
    {
        string path = Path.Combine(W.Root, name);
        var set = FingerprintIO.ReadSet(W.Set, W.PassFile);
        var tok = Tokenizer.FromFolder(model);
        using var lm = ModelFolder.Load(model);
        var fps = set.Fingerprints.Select((f, i) =>
        {
            var g = Generator.Generate(lm, [format(tok).Encode(tok, f)], new GenerationOptions { MaxNewTokens = 4, EosTokenIds = [] }).Sequences[0].OutputIds;
            int x = (g[0] + 1) % 512;
            int[] response = (i % 4) switch
            {
                0 => g,
                1 => [x, g[1], g[2], g[3]],
                2 => [x, g[0], g[1], g[2]],
                _ => [.. g.Select(t => (t + 1) % 512)],
            };
            return f with { Responses = new[] { new FingerprintResponse(tok.Decode(response), response) } };
        });
        FingerprintSetFile.WritePlaintext(path, set with { Fingerprints = new EquatableArray<Fingerprint>(fps) });
        return path;
    }

    /// <summary>The base model with a chat template (the test tokenizer has no BOS), for chats.</summary>
    private string ChatModel()
    {
        string dir = Path.Combine(W.Root, "served-chat");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(W.Model)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string?> { ["chat_template"] = Template, ["bos_token"] = null }));
        return dir;
    }

    [Fact]
    public async Task Partial_over_an_endpoint_gets_the_hits_and_report_of_the_same_model_verified_locally()
    {
        string set = MixedSet("mixed.omlfp", W.Model, _ => KeyFormat.Raw);
        string[] partial = ["verify", "--fingerprints", set, "--match", "partial", "--min-tokens", "3", "--json"];
        var local = Run([.. partial, "--model", W.Model]);
        Assert.True(local.Code == 0, local.Err);
        var l = Json(local.Out);
        var exactLocal = Json(Run("verify", "--fingerprints", set, "--model", W.Model, "--json").Out);

        using var backend = ModelBackend.Load(W.Model);
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: TestContext.Current.CancellationToken);
        string url = server.BaseUrl.ToString();
        var remote = await RunOff([.. partial, "--endpoint", url]);
        Assert.True(remote.Code == 0, remote.Err);
        Assert.Contains("for their answers' token ids", remote.Err);
        Assert.Contains("5 new tokens each", remote.Err);   // n + D = 4 + 1
        Assert.Contains("warning: with --match partial", remote.Err);   // no calibration: an owned verdict would not be stated
        var e = Json(remote.Out);
        // The same keys hit, the same answers, nulls and verdict: the whole report.
        Assert.Equal(l.ToJsonString(), e.ToJsonString());
        Assert.Equal("partial", e["match"]!.GetValue<string>());
        Assert.Equal(6, e["hits"]!.GetValue<int>());   // the partial hits of kinds 0-2, not kind 3
        // Over the endpoint's text the exact rule hits fewer: the partial rule is what found the others.
        var exactRemote = Json((await RunOff("verify", "--fingerprints", set, "--endpoint", url, "--json")).Out);
        Assert.Equal(exactLocal["hits"]!.GetValue<int>(), exactRemote["hits"]!.GetValue<int>());
        Assert.Equal(2, exactRemote["hits"]!.GetValue<int>());

        // Arrays of prompts: the same report.
        var batched = await RunOff([.. partial, "--endpoint", url, "--prompts-per-request", "3"]);
        Assert.True(batched.Code == 0, batched.Err);
        Assert.Contains("(3 a request)", batched.Err);
        Assert.Equal(l.ToJsonString(), Json(batched.Out).ToJsonString());

        // With --base, the keys the base's own greedy answer hits are left out, as --model leaves them out; here the suspect
        // is the base itself, so every key it hits is left out and nothing is counted as hit.
        var localBase = Run([.. partial, "--model", W.Model, "--base", W.Model]);
        Assert.True(localBase.Code == 0, localBase.Err);
        var remoteBase = await RunOff([.. partial, "--endpoint", url, "--base", W.Model]);
        Assert.True(remoteBase.Code == 0, remoteBase.Err);
        Assert.Contains("6 of 8 keys left out: the base's own greedy answer hits them", remoteBase.Err);
        var rb = Json(remoteBase.Out);
        Assert.Equal(Json(localBase.Out).ToJsonString(), rb.ToJsonString());
        Assert.Equal(6, rb["excluded_keys"]!.GetValue<int>());
        Assert.Equal(0, rb["hits"]!.GetValue<int>());
        Assert.Equal(2, rb["queried"]!.GetValue<int>());
    }

    [Fact]
    public async Task Partial_over_a_chat_endpoint_gets_the_hits_of_the_local_model_under_its_chat_template()
    {
        string model = ChatModel();
        string set = MixedSet("mixed-chat.omlfp", model, _ => KeyFormat.Chat(ChatTemplate.FromTokenizerConfig(model)));
        string[] partial = ["verify", "--fingerprints", set, "--match", "partial", "--min-tokens", "3", "--json"];
        var local = Run([.. partial, "--model", model, "--chat-template"]);
        Assert.True(local.Code == 0, local.Err);
        using var backend = ModelBackend.Load(model);
        await using var server = await OpenAiCompatibleServer.StartAsync(backend, ct: TestContext.Current.CancellationToken);
        var remote = await RunOff([.. partial, "--endpoint", server.BaseUrl.ToString(), "--chat"]);
        Assert.True(remote.Code == 0, remote.Err);
        var l = Json(local.Out);
        Assert.Equal(l.ToJsonString(), Json(remote.Out).ToJsonString());
        Assert.Equal(6, l["hits"]!.GetValue<int>());
    }

    /// <summary>A server without vLLM's extension: its logprobs name tokens by their text whatever the request says.</summary>
    private sealed class WithoutTokenIds(ModelBackend inner) : ICompletionBackend
    {
        public int? ContextLength => inner.ContextLength;
        public bool CountsTokens => inner.CountsTokens;
        public PromptInput PreparePrompt(string prompt, bool addSpecialTokens) => inner.PreparePrompt(prompt, addSpecialTokens);
        public PromptInput PrepareTokens(int[] ids) => inner.PrepareTokens(ids);
        public PromptInput PrepareChat(IReadOnlyList<ChatTurn> messages) => inner.PrepareChat(messages);

        public async IAsyncEnumerable<CompletionDelta> GenerateAsync(PromptInput prompt, DecodeRequest request, [EnumeratorCancellation] CancellationToken ct)
        {
            await foreach (var d in inner.GenerateAsync(prompt, request, ct))
                yield return d with { Logprobs = d.Logprobs?.Select(t => t with { TokenId = null, Top = t.Top?.Select(a => a with { TokenId = null }).ToList() }).ToList() };
        }
    }

    [Fact]
    public async Task A_server_that_does_not_return_token_ids_ends_the_partial_rule_with_one_clear_line()
    {
        string set = MixedSet("mixed-noids.omlfp", W.Model, _ => KeyFormat.Raw);
        using var backend = ModelBackend.Load(W.Model);
        // Logprobs by text (a server that ignores return_tokens_as_token_ids), and no logprobs at all (a text generator).
        await using var textTokens = await OpenAiCompatibleServer.StartAsync(new WithoutTokenIds(backend), ct: TestContext.Current.CancellationToken);
        await using var noLogprobs = await OpenAiCompatibleServer.StartAsync((_, _, _) => Task.FromResult(" apple"), ct: TestContext.Current.CancellationToken);
        foreach (var (server, says) in new[] { (textTokens, "answered without its answer's token ids"), (noLogprobs, "does not report log-probabilities") })
        {
            foreach (var extra in new[] { Array.Empty<string>(), ["--prompts-per-request", "4"] })
            {
                var r = await RunOff(["verify", "--fingerprints", set, "--match", "partial", "--min-tokens", "3", "--endpoint", server.BaseUrl.ToString(), .. extra]);
                Assert.Equal(1, r.Code);
                var errors = r.Err.Split('\n').Where(x => x.StartsWith("oml: error:", StringComparison.Ordinal)).ToList();
                var line = Assert.Single(errors);
                Assert.Contains(says, line);
                Assert.Contains("--match partial over an endpoint compares token ids and needs a server that returns them (vLLM or oml serve", line);
                Assert.EndsWith("--match exact works on text", line.TrimEnd());
                Assert.Equal("", r.Out);
            }
            // The exact rule works on the same server's text.
            var exact = await RunOff("verify", "--fingerprints", set, "--endpoint", server.BaseUrl.ToString(), "--json");
            Assert.True(exact.Code == 0, exact.Err);
        }
    }
}
