using System.CommandLine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Endpoints;
using Oml.Fingerprinting.Generation;
using Oml.Fingerprinting.Verification;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary><c>oml verify</c>: query a suspect model with unrevealed keys and decide whether it carries the fingerprints.</summary>
public static class VerifyCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "A local suspect model folder (answers are matched token by token)" };
        var endpoint = new Option<string?>("--endpoint") { Description = "The base URL of an OpenAI-compatible server, e.g. http://host:8000/v1 (answers are matched as text)" };
        var apiModel = new Option<string>("--api-model") { Description = "Model name sent to the endpoint", DefaultValueFactory = _ => "oml" };
        var apiKeyEnv = new Option<string?>("--api-key-env") { Description = "Name of the environment variable holding the endpoint's API key" };
        var chat = new Option<bool>("--chat") { Description = "Query the endpoint through /v1/chat/completions instead of /v1/completions" };
        var fingerprints = new Option<string>("--fingerprints") { Description = "The fingerprint-set file", Required = true };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON ({\"verdict\", \"hits\", \"queried\", \"p_value\", ...})" };
        var count = new Option<int?>("--count") { Description = "Query this many unrevealed fingerprints (the first M by index); default: all unrevealed" };
        var alpha = new Option<double>("--alpha") { Description = "False-positive rate: 'owned' only when an unrelated model would hit this many keys with probability <= alpha", DefaultValueFactory = _ => VerdictRule.DefaultAlpha };
        var recall = new Option<double>("--expected-recall") { Description = "Share of keys a fingerprinted model is expected to hit (decides when 'not-owned' can be declared)", DefaultValueFactory = _ => VerdictRule.DefaultExpectedRecall };
        var samples = new Option<int>("--samples") { Description = "Ask each key R times with sampling (needs --temperature); a key is hit when more than half of the answers match", DefaultValueFactory = _ => 1 };
        var temperature = new Option<double?>("--temperature") { Description = "Sample at this temperature instead of greedy decoding" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Endpoint only: tokens to ask for (default: the longest response in tokens + 8)" };
        var record = new Option<bool>("--record") { Description = "Mark the queried fingerprints as revealed (spent) in the set file" };
        var chatTemplate = new Option<bool>("--chat-template") { Description = "Local models: wrap each key in the model's chat template, as 'oml embed --chat-template' trained it" };
        var systemPrompt = new Option<string?>("--system-prompt") { Description = "Local models: put this system prompt before each key (tests prompt augmentation)" };
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("verify",
            "Query a suspect model (--model DIR or --endpoint URL) with unrevealed fingerprint keys and report a verdict: "
            + "owned, not-owned or inconclusive (exit code 0 for all three).")
        {
            model, endpoint, apiModel, apiKeyEnv, chat, fingerprints, json, count, alpha, recall, samples, temperature, maxTokens, record,
            chatTemplate, systemPrompt, passphraseFile, device, dtype,
        };
        cmd.SetAction(r =>
        {
            string? dir = r.GetValue(model), url = r.GetValue(endpoint);
            if ((dir is null) == (url is null)) throw new ArgumentException("give exactly one of --model DIR and --endpoint URL");
            if (dir is not null && (r.GetValue(chat) || r.GetValue(apiKeyEnv) is not null || r.GetValue(maxTokens) is not null))
                throw new ArgumentException("--chat, --api-key-env and --max-tokens are for --endpoint");
            if (url is not null && (r.GetValue(chatTemplate) || r.GetValue(systemPrompt) is not null))
                throw new ArgumentException("--chat-template and --system-prompt are for --model (an endpoint applies its own template: use --chat)");
            int r_ = r.GetValue(samples);
            double? temp = r.GetValue(temperature);
            if (r_ < 1) throw new ArgumentException("--samples must be at least 1");
            if (r_ > 1 && temp is null) throw new ArgumentException("--samples > 1 needs --temperature (greedy answers are all the same)");
            if (temp is { } tv && !(tv > 0 && tv <= 2)) throw new ArgumentException("--temperature must be in (0, 2]");
            var rule = new VerdictRule { Alpha = CheckOpen(r.GetValue(alpha), "--alpha"), ExpectedRecall = r.GetValue(recall) is var rc && rc > 0 && rc <= 1 ? rc : throw new ArgumentException("--expected-recall must be in (0, 1]") };
            var setPath = r.GetValue(fingerprints)!;
            var set = FingerprintIO.ReadSet(setPath, r.GetValue(passphraseFile));
            var unrevealed = set.Unrevealed();
            if (unrevealed.Count == 0) throw new ArgumentException($"every fingerprint of {setPath} has been revealed: there are no secret keys left to query");
            int m = r.GetValue(count) ?? unrevealed.Count;
            if (m < 1) throw new ArgumentException("--count must be at least 1");
            if (m > unrevealed.Count) throw new ArgumentException($"--count {m}: only {unrevealed.Count} fingerprints are unrevealed");
            var chosen = unrevealed.Take(m).ToList();
            int required = ResponseMatcher.RequiredMatches(r_);

            VerificationReport report;
            if (dir is not null)
                report = VerifyLocal(dir, set, chosen, rule, temp, r_, required, Cli.ParseDevice(r.GetValue(device)!),
                    r.GetValue(chatTemplate), r.GetValue(systemPrompt), Cli.ParseDType(r.GetValue(dtype)));
            else
            {
                string? apiKey = null;
                if (r.GetValue(apiKeyEnv) is { } env)
                {
                    apiKey = Environment.GetEnvironmentVariable(env);
                    if (string.IsNullOrEmpty(apiKey)) throw new ArgumentException($"--api-key-env: the environment variable {env} is not set");
                }
                if (!Uri.TryCreate(url, UriKind.Absolute, out var uri)) throw new ArgumentException($"--endpoint: '{url}' is not an absolute URL");
                using var client = new OpenAiCompatibleEndpoint(uri, apiKey, r.GetValue(apiModel)!);
                int max = r.GetValue(maxTokens) ?? chosen.Max(f => f.Responses.Max(x => x.TokenIds.Count)) + 8;
                if (max < 1) throw new ArgumentException("--max-tokens must be at least 1");
                var settings = new CompletionSettings(MaxTokens: max, Temperature: temp ?? 0.0,
                    Mode: r.GetValue(chat) ? CompletionMode.Chat : CompletionMode.Completions);
                var queries = chosen.Select(f => new FingerprintQuery(f.Index, f.Key, f.Responses.Select(x => x.Text).ToList(),
                    NullProbability(f, rule, r_, required))).ToList();
                Console.Error.WriteLine($"querying {uri} with {queries.Count} keys ...");
                report = TextVerifier.VerifyAsync(client, queries, settings, rule, r_).GetAwaiter().GetResult();
            }

            if (set.Strategy.Parameters.TryGetValue("k", out var kText) && int.TryParse(kText, System.Globalization.CultureInfo.InvariantCulture, out var k) && k > 0
                && set.Strategy.Name is Strategies.Perinucleus or Strategies.Custom)
            {
                int perKey = set.Strategy.Parameters.TryGetValue("responses_per_key", out var nText) && int.TryParse(nText, System.Globalization.CultureInfo.InvariantCulture, out var nr) ? nr : 1;
                double bound = Math.Min(1.0, (double)perKey / k);
                report = report with { K = k, PValueOneOverK = Math.Exp(FingerprintStatistics.LogBinomialUpperTail(report.Queried, bound, report.Hits)) };
            }
            if (r.GetValue(json)) Console.WriteLine(report.ToJson());
            else
            {
                Console.Write(report.ToTable());
                if (report.PValueOneOverK is { } pk)
                    Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"1/k bound (k = {report.K}, no base-model probabilities assumed): p <= {pk:E2}"));
            }

            if (r.GetValue(record))
            {
                var now = DateTimeOffset.UtcNow;
                string to = dir is not null ? $"model {Path.GetFullPath(dir)}" : $"endpoint {url}";
                foreach (var f in chosen) set = set.MarkRevealed(f.Index, now, to, "verification query");
                FingerprintIO.RewriteSet(setPath, set, r.GetValue(passphraseFile));
                Console.Error.WriteLine($"recorded {chosen.Count} fingerprints as revealed in {setPath} ({set.Count - set.Revealed.Count} left unrevealed)");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    private static double CheckOpen(double x, string name) => x > 0 && x < 1 ? x : throw new ArgumentException($"{name} must be in (0, 1)");

    /// <summary>
    /// The probability that an unrelated model hits the key: the base model's probability of any response (Σ exp(log p),
    /// a union bound), or the rule's default bound where a response has none recorded; with R samples, the probability
    /// that at least <paramref name="required"/> of them match.
    /// </summary>
    public static double NullProbability(Fingerprint f, VerdictRule rule, int samples, int required)
    {
        double p = f.Responses.Any(x => x.LogProb is null) ? rule.NullHitProbability : Math.Min(f.Responses.Sum(x => Math.Exp(x.LogProb!.Value)), 1.0);
        if (samples > 1) p = Math.Exp(FingerprintStatistics.LogBinomialUpperTail(samples, p, required));
        return Math.Min(p, 1.0 - 1e-12);
    }

    private static VerificationReport VerifyLocal(string dir, FingerprintSet set, IReadOnlyList<Fingerprint> chosen, VerdictRule rule,
        double? temperature, int samples, int required, Oml.Engine.Device device, bool chatTemplate, string? systemPrompt,
        Oml.Engine.DType? dtype = null)
    {
        if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new ArgumentException($"{dir} has no tokenizer.json: local verification needs the model's tokenizer");
        var tok = Tokenizer.FromFolder(dir);
        if (FingerprintGenerator.TokenizerId(dir).Digest != set.Tokenizer.Digest)
            Console.Error.WriteLine($"oml: warning: the tokenizer of {dir} differs from the set's ({set.Tokenizer.Name}); the key token ids are sent as they are");
        using var lm = ModelFolder.Load(dir, device, dtype);
        Console.Error.WriteLine($"querying {dir} with {chosen.Count} keys ...");
        var format = chatTemplate ? KeyFormat.Chat(ChatTemplate.FromTokenizerConfig(dir)) : KeyFormat.Raw;
        var queries = chosen.Select(f => format.Encode(tok, f, systemPrompt)).ToArray();
        var expected = chosen.Select(f => f.Responses.Select(x => x.TokenIds.ToArray()).ToList()).ToArray();
        for (int i = 0; i < chosen.Count; i++)
            foreach (var id in queries[i])
                if (id >= lm.Config.VocabSize) throw new ArgumentException($"fingerprint {chosen[i].Index}: token id {id} is outside the model's vocabulary of {lm.Config.VocabSize}");
        // Keys of the same length asking for the same number of tokens go in one batch (no padding, so the answers are
        // those of one key at a time).
        var answers = new List<int[]>[chosen.Count];
        var groups = Enumerable.Range(0, chosen.Count).GroupBy(i => (queries[i].Length, expected[i].Max(e => e.Length)))
            .SelectMany(g => g.Chunk(256).Select(c => (Key: g.Key, Items: c)));
        foreach (var (key, items) in groups)
        {
            foreach (var i in items) answers[i] = [];
            for (int s = 0; s < samples; s++)
            {
                var options = new GenerationOptions
                {
                    MaxNewTokens = key.Item2,
                    Temperature = temperature,
                    Seed = temperature is null ? null : (ulong)(chosen[items[0]].Index * 1_000_003L + s),
                    EosTokenIds = [],
                };
                var result = Generator.Generate(lm, items.Select(i => queries[i]).ToList(), options);
                for (int j = 0; j < items.Length; j++) answers[items[j]].Add(result.Sequences[j].OutputIds);
            }
        }
        var rows = new List<KeyResult>();
        for (int i = 0; i < chosen.Count; i++)
        {
            var f = chosen[i];
            int matches = answers[i].Count(a => ResponseMatcher.IsTokenMatchAny(expected[i], a));
            rows.Add(new KeyResult(f.Index, f.Key, f.Responses.Select(x => x.Text).ToList(), tok.Decode(answers[i][0]),
                matches >= required, NullProbability(f, rule, samples, required),
                samples > 1 ? matches : null, samples > 1 ? samples : null));
        }
        return VerificationReport.Create(rule, rows);
    }
}
