using System.CommandLine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Endpoints;
using Oml.Fingerprinting.Generation;
using Oml.Fingerprinting.Verification;
using Oml.Engine;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary><c>oml verify</c>: query a suspect model with unrevealed keys and decide whether it carries the fingerprints.</summary>
public static class VerifyCommand
{
    public static Command Create()
    {
        var model = CliOptions.OptionalModel("A local suspect model folder (answers are matched token by token)");
        var endpoint = new Option<string?>("--endpoint")
        {
            Description = "The base URL of an OpenAI-compatible server, e.g. http://host:8000/v1 (answers are matched as text; with --match partial, "
                + "as the token ids the server returns, which needs vLLM or oml serve: logprobs with return_tokens_as_token_ids)",
        };
        var apiModel = new Option<string?>("--api-model") { Description = "Model name sent to the endpoint; default: the one model the server lists at GET /v1/models" };
        var apiKeyEnv = new Option<string?>("--api-key-env") { Description = "Name of the environment variable holding the endpoint's API key" };
        var chat = new Option<bool>("--chat") { Description = "Query the endpoint through /v1/chat/completions instead of /v1/completions" };
        var fingerprints = new Option<string>("--fingerprints") { Description = "The fingerprint-set file", Required = true };
        var json = CliOptions.Json("Print the report as JSON ({\"verdict\", \"hits\", \"queried\", \"p_value\", ...})");
        var count = new Option<int?>("--count") { Description = "Query this many unrevealed fingerprints (the first M by index); default: all unrevealed" };
        var alpha = new Option<double>("--alpha") { Description = "False-positive rate: 'owned' only when an unrelated model would hit this many keys with probability <= alpha", DefaultValueFactory = _ => VerdictRule.DefaultAlpha };
        var recall = new Option<double>("--expected-recall") { Description = "Share of keys a fingerprinted model is expected to hit (decides when 'not-owned' can be declared)", DefaultValueFactory = _ => VerdictRule.DefaultExpectedRecall };
        var samples = new Option<int>("--samples") { Description = "Ask each key R times with sampling (needs --temperature); a key is hit when more than half of the answers match", DefaultValueFactory = _ => 1 };
        var temperature = new Option<double?>("--temperature") { Description = "Sample at this temperature instead of greedy decoding" };
        var maxTokens = new Option<int?>("--max-new-tokens")
        {
            Description = "Endpoint only: new tokens to ask for per key (default: greedy, the key's longest response in tokens n, + " + $"{ChatMargin} with --chat "
                + "for what a chat template's answer may start with, and an answer cut off while it still agrees with a response, e.g. after a leading newline, "
                + "is asked again with 2n + 8; sampled, 2n + 8 at once, never asked again). Answers are matched as text prefixes, so tokens past the response "
                + "decide nothing and each one costs a decoding step",
        };
        var concurrency = new Option<int>("--concurrency")
        {
            Description = "Endpoint only: keys in flight at once (a serving engine batches them, so more keys in flight fill its passes: 1,024 keys took "
                + "0.7-0.9 s at 64 and 0.4-0.8 s at 256 through oml serve on one H100; answers 429 and 5xx are retried with backoff)",
            DefaultValueFactory = _ => DefaultConcurrency,
        };
        var promptsPerRequest = new Option<int>("--prompts-per-request")
        {
            Description = "Endpoint only, not with --chat: keys sent together in one request as the completions API's array of prompts (each still "
                + "answered alone): fewer requests, for a distant server or a limit on requests a minute; a request waits for its slowest key. A server "
                + "that refuses an array gets one key a request",
            DefaultValueFactory = _ => DefaultPromptsPerRequest,
        };
        var record = new Option<bool>("--record") { Description = "Mark the queried fingerprints as revealed (spent) in the set file" };
        var chatTemplate = new Option<bool>("--chat-template") { Description = "Local models: wrap each key in the model's chat template, as 'oml embed --chat-template' trained it" };
        var instructionLayout = CliOptions.InstructionLayout("Local models: send each key as the instruction of the raw '### Instruction: / ### Response:' layout, as 'oml embed --instruction-layout' trained it");
        var systemPrompt = new Option<string?>("--system-prompt") { Description = "Local models: put this system prompt before each key (tests prompt augmentation)" };
        var nullFloor = CliOptions.NullFloor();
        var calibration = CliOptions.NullCalibration();
        var calibrate = CliOptions.Calibrate("Calibrate the null instead of verifying: query each of these local models that never saw the set's keys "
            + "(DIR or KIND=DIR, repeatable) and report their hit rates with Clopper-Pearson bounds and the floor from the worst one");
        var calibrationOut = CliOptions.CalibrationOut();
        var force = CliOptions.Force("Replace the --calibration-out file if it exists");
        var confidence = CliOptions.Confidence();
        var match = CliOptions.Match("Which answers count as hits: exact (the answer starts with the whole response) or partial (at least --min-tokens of "
            + "each response after a deviation at the start of the answer; docs/verification.md). Partial compares token ids: over --endpoint it asks "
            + "the server for its answer's token ids (logprobs with vLLM's return_tokens_as_token_ids, which vLLM and oml serve answer), and the "
            + "server must use the set's tokenizer");
        var minTokens = CliOptions.MinTokens();
        var baseDir = CliOptions.Base("With --match partial: the base model, whose probabilities give each key's partial null and whose own greedy "
            + "answers decide which keys are left out (without it every alignment other than the exact one is bounded by the common null bound); "
            + "over --endpoint, not with --chat (the server's chat template is not known here)");
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var dist = new DistributedOptions();
        var cmd = new Command("verify",
            "Query a suspect model (--model DIR or --endpoint URL) with unrevealed fingerprint keys and report a verdict: "
            + "owned, not-owned or inconclusive (exit code 0 for all three). With --calibrate DIR..., measure the null on negative models instead.")
        {
            model, endpoint, apiModel, apiKeyEnv, chat, fingerprints, json, count, alpha, recall, samples, temperature, maxTokens, concurrency, promptsPerRequest, record,
            chatTemplate, instructionLayout, systemPrompt, nullFloor, calibration, calibrate, calibrationOut, force, confidence, match, minTokens, baseDir,
            passphraseFile, device, dtype,
        };
        dist.AddTo(cmd);
        cmd.SetAction(r =>
        {
            if (dist.Plan(r) is { } plan)
            {
                if (r.GetValue(model) is null && (r.GetValue(calibrate) ?? []).Length == 0) throw new UsageException("--gpus/--processes answer keys with local models: give --model or --calibrate");
                return dist.Launch(r, plan);
            }
            string? dir = r.GetValue(model), url = r.GetValue(endpoint);
            var negatives = r.GetValue(calibrate) ?? [];
            if (negatives.Length > 0 && (dir is not null || url is not null || r.GetValue(record) || r.GetValue(calibration) is not null))
                throw new UsageException("--calibrate measures negative models: it takes no --model, --endpoint, --record or --calibration");
            if (negatives.Length == 0 && (r.GetValue(calibrationOut) is not null))
                throw new UsageException("--calibration-out needs --calibrate DIR...");
            if (negatives.Length == 0 && (dir is null) == (url is null)) throw new UsageException("give exactly one of --model DIR and --endpoint URL (or --calibrate DIR...)");
            if (url is null && (r.GetValue(chat) || r.GetValue(apiKeyEnv) is not null || r.GetValue(maxTokens) is not null || r.GetResult(concurrency) is { Implicit: false }
                || r.GetResult(promptsPerRequest) is { Implicit: false }))
                throw new UsageException("--chat, --api-key-env, --max-new-tokens, --concurrency and --prompts-per-request are for --endpoint");
            if (url is not null && (r.GetValue(chatTemplate) || r.GetValue(instructionLayout) || r.GetValue(systemPrompt) is not null))
                throw new UsageException("--chat-template, --instruction-layout and --system-prompt are for --model (an endpoint applies its own template: use --chat)");
            CliOptions.CheckKeyFormat(r.GetValue(chatTemplate), r.GetValue(instructionLayout));
            var matchRule = CliOptions.ResponseMatchFrom(r.GetValue(match), r.GetValue(minTokens));
            string? basePath = r.GetValue(baseDir);
            if (url is not null && matchRule.IsPartial)
            {
                // The partial rule compares token ids, which the endpoint is asked for (logprobs with return_tokens_as_token_ids).
                // Its null from the base, and the keys the base's own greedy answer hits, need the queries as the suspect sees
                // them: through /v1/completions that is the key's text tokenized as the base's tokenizer does; through a chat,
                // the server's chat template, which this command cannot see.
                if (basePath is not null && r.GetValue(chat))
                    throw new UsageException("--base with --chat: the base's partial null and the keys its own greedy answer hits are computed on the queries "
                        + "the suspect sees, and a chat endpoint wraps each key in a template not known here; use --base over /v1/completions (no --chat), "
                        + "or verify a local copy with --model --chat-template");
                if (r.GetValue(maxTokens) is not null)
                    throw new UsageException("--max-new-tokens is for text matching: --match partial asks each key for the tokens its rule needs (n + D for a response of n tokens)");
            }
            if (basePath is not null && !matchRule.IsPartial) throw new UsageException("--base gives the partial rule's null: use it with --match partial");
            if (basePath is not null && !Directory.Exists(basePath)) throw new DirectoryNotFoundException($"--base: model folder not found: {basePath}");
            // Measured (docs/verification.md, "Calibration"): models near the base (fine-tunes, siblings, merges) hit partial
            // matches of Perinucleus responses above the default floor and far above the base's per-key nulls.
            if (matchRule.IsPartial && negatives.Length == 0 && r.GetValue(calibration) is null)
                Console.Error.WriteLine("oml: warning: with --match partial, models near the base hit more often than the base's null and the default floor say, "
                    + "so an owned verdict is stated as inconclusive without --calibration from 'oml verify --calibrate' with the same --match, --min-tokens and --base (docs/verification.md)");
            int r_ = r.GetValue(samples);
            double? temp = r.GetValue(temperature);
            if (r_ < 1) throw new UsageException("--samples must be at least 1");
            if (r_ > 1 && temp is null) throw new UsageException("--samples > 1 needs --temperature (greedy answers are all the same)");
            if (temp is { } tv && !(tv > 0 && tv <= 2)) throw new UsageException("--temperature must be in (0, 2]");
            double? floor = CliOptions.NullFloorValue(r.GetValue(nullFloor));
            var rule = new VerdictRule
            {
                Alpha = CheckOpen(r.GetValue(alpha), "--alpha"),
                ExpectedRecall = r.GetValue(recall) is var rc && rc > 0 && rc <= 1 ? rc : throw new UsageException("--expected-recall must be in (0, 1]"),
            };
            var calibrationFile = r.GetValue(calibration) is { } calPath ? CliOptions.LoadCalibration(calPath, matchRule, basePath is not null) : null;
            // Loading libtorch and creating the GPU's context (a second or more) overlaps reading the set and the
            // tokenizer: started here, waited for where the model is loaded. Errors (no such device) surface there.
            string deviceName = r.GetValue(device)!;
            var deviceReady = dir is not null ? Cli.StartBackground(() =>
            {
                using var _ = Phases.Measure("libtorch and device init (background)");
                var d = Cli.ParseDevice(deviceName);
                InitDevice(d);
                return d;
            }) : null;
            // The model's tokenizer (9 MB of JSON for Llama 3), parsed and hashed on another core meanwhile.
            var tokenizerReady = dir is not null && File.Exists(Path.Combine(dir, "tokenizer.json")) ? Cli.StartBackground(() => LoadTokenizer(dir)) : null;
            Oml.Engine.Device Dev()
            {
                if (deviceReady is null) return Cli.ParseDevice(deviceName);
                using var _ = Phases.Measure("device wait");
                return deviceReady.GetAwaiter().GetResult();
            }
            // An endpoint's connection is opened, and the runtime's HTTP stack loaded, while the set is read (and its
            // passphrase stretched): the keys go out as soon as they are known.
            using var endpointClient = url is null ? null : EndpointClient(url, r.GetValue(apiKeyEnv), r.GetValue(apiModel));
            // Not waited for: it never throws, and disposing the client at the end cancels it if the server never answered.
            if (endpointClient is not null) _ = Task.Run(() => endpointClient.WarmUpAsync());
            var setPath = r.GetValue(fingerprints)!;
            FingerprintSet set;
            using (Phases.Measure("read set")) set = FingerprintIO.ReadSet(setPath, r.GetValue(passphraseFile));
            var unrevealed = set.Unrevealed();
            if (unrevealed.Count == 0) throw new InvalidDataException($"every fingerprint of {setPath} has been revealed: there are no secret keys left to query");
            // The set decides the default floor (its responses' kind); a calibration can only raise it.
            rule = rule with { NullFloor = floor ?? VerdictRule.DefaultNullFloorFor(set.Fingerprints) };
            if (calibrationFile is not null) rule = calibrationFile.Apply(rule);
            int m = r.GetValue(count) ?? unrevealed.Count;
            if (m < 1) throw new UsageException("--count must be at least 1");
            if (m > unrevealed.Count) throw new UsageException($"--count {m}: only {unrevealed.Count} fingerprints are unrevealed");
            var chosen = unrevealed.Take(m).ToList();
            int required = ResponseMatcher.RequiredMatches(r_);
            // Started by the launcher: this rank answers its share of the keys; rank 0 alone reports and records.
            using var group = url is null ? DistributedOptions.Join(Dev()) : null;
            bool lead = group is null || group.Rank == 0;
            var realOut = Console.Out;
            if (!lead) Console.SetOut(TextWriter.Null);
            try
            {
                using var nullModel = basePath is null ? null : ModelFolder.Load(basePath, Dev(), Cli.ParseDType(r.GetValue(dtype)));
                LocalVerifyOptions LocalOptions(string d) => new()
                {
                    Match = matchRule,
                    NullModel = nullModel,
                    Group = group,
                    Format = CliOptions.KeyFormatFrom(r.GetValue(chatTemplate), r.GetValue(instructionLayout), d),
                    SystemPrompt = r.GetValue(systemPrompt),
                    Temperature = temp,
                    Samples = r_,
                    BatchSize = LocalVerifier.AutoBatchSize,
                    Progress = group is null && negatives.Length == 0 ? KeyProgress(chosen.Count) : null,
                };

                if (negatives.Length > 0)
                {
                    double conf = r.GetValue(confidence);
                    if (!(conf > 0 && conf < 1)) throw new UsageException("--confidence must be in (0, 1)");
                    var specs = CliOptions.Negatives(negatives);
                    // The keys a verdict leaves out (the partial rule with --base: those the base's own greedy answer hits)
                    // depend on the base and the queries the keys are encoded into: a verdict encodes them with the
                    // suspect's tokenizer and key format (--chat-template takes the suspect's template), so each negative's
                    // exclusions are those of its own queries, computed once per distinct encoding (with the set's raw
                    // token ids, once). Every negative's hits are counted without them, as its verdict would count them.
                    // No null probabilities are needed to count hits.
                    var exclusions = new Dictionary<string, bool[]>();
                    bool[]? Excluded(Tokenizer tok, LocalVerifyOptions o)
                    {
                        if (nullModel is null) return null;
                        string encoded = string.Join(";", chosen.Select(f => string.Join(",", o.Format.Encode(tok, f, o.SystemPrompt))));
                        if (exclusions.TryGetValue(encoded, out var known)) return known;
                        var found = LocalVerifier.ExcludedKeys(tok, chosen, o)!;
                        exclusions[encoded] = found;
                        Console.Error.WriteLine($"{found.Count(x => x)} of {chosen.Count} keys left out: the base's own greedy answer hits them under the partial rule (m = {matchRule.MinTokens})");
                        return found;
                    }
                    var results = new List<NegativeResult>();
                    foreach (var (negDir, kind) in specs)
                    {
                        var (hits, queried) = OnLocalModel(negDir, set, Dev(), Cli.ParseDType(r.GetValue(dtype)), null, (lm, tok) =>
                        {
                            var options = LocalOptions(negDir);
                            return LocalVerifier.CountHits(lm, tok, chosen, options, Excluded(tok, options));
                        });
                        Console.Error.WriteLine($"{negDir}: {hits}/{queried} keys hit");
                        results.Add(new NegativeResult(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(negDir))), kind, hits, queried));
                    }
                    var cal = NullCalibration.Calibrate(results, conf, rule.NullFloor, rule.Alpha, rule.ExpectedRecall, match: matchRule, excludesBaseHits: nullModel is not null);
                    if (lead && r.GetValue(calibrationOut) is { } outPath) FingerprintIO.WriteTextAtomic(outPath, cal.ToJson() + "\n", overwrite: r.GetValue(force));
                    Console.Write(r.GetValue(json) ? cal.ToJson() + "\n" : cal.ToTable());
                    return Cli.Ok;
                }

                VerificationReport report;
                if (dir is not null)
                {
                    var suspectOptions = LocalOptions(dir);
                    if (lead) CliOptions.WarnIfManifestKeyFormatDiffers(dir, suspectOptions.Format);
                    report = VerifyLocal(dir, set, chosen, rule, suspectOptions, Dev(), dtype: Cli.ParseDType(r.GetValue(dtype)), tokenizerReady: tokenizerReady).StatedUnder(rule);
                }
                else if (matchRule.IsPartial)
                {
                    report = VerifyEndpointTokens(endpointClient!, chosen, set, rule, matchRule, nullModel, basePath, r.GetValue(chat), temp, r_,
                        r.GetValue(concurrency), r.GetValue(promptsPerRequest)).StatedUnder(rule);
                }
                else
                {
                    var client = endpointClient!;
                    var uri = client.BaseUrl;
                    int? fixedMax = r.GetValue(maxTokens);
                    if (fixedMax < 1) throw new UsageException("--max-new-tokens must be at least 1");
                    bool chatMode = r.GetValue(chat);
                    var queries = chosen.Select(f => new FingerprintQuery(f.Index, f.Key, f.Responses.Select(x => x.Text).ToList(),
                        NullProbability(f, rule, r_, required)) { MaxTokens = fixedMax is null ? DefaultMaxTokens(f, chatMode, sampled: temp is not null) : null }).ToList();
                    // --max-new-tokens: the settings' one limit for every key, asked once (no second request for a cut-off answer).
                    var settings = new CompletionSettings(MaxTokens: fixedMax ?? queries.Max(q => q.MaxTokens!.Value), Temperature: temp ?? 0.0,
                        Mode: chatMode ? CompletionMode.Chat : CompletionMode.Completions);
                    int inFlight = r.GetValue(concurrency);
                    if (inFlight < 1) throw new UsageException($"--concurrency must be at least 1, not {inFlight}");
                    int perRequest = r.GetValue(promptsPerRequest);
                    if (perRequest < 1) throw new UsageException($"--prompts-per-request must be at least 1, not {perRequest}");
                    if (chatMode && perRequest > 1)   // the chat API takes one conversation a request
                        throw new UsageException("--prompts-per-request is for /v1/completions: the chat API takes one conversation a request (drop --chat or the option)");
                    var (batch, requests) = perRequest > 1 ? TextVerifier.BatchShape(inFlight, perRequest) : (1, inFlight);
                    batch = Math.Min(batch, queries.Count);
                    int fewest = fixedMax ?? queries.Min(q => q.MaxTokens!.Value);
                    string tokens = fewest == settings.MaxTokens ? $"{fewest}" : $"{fewest} to {settings.MaxTokens}";
                    Console.Error.WriteLine($"querying {uri} with {queries.Count} keys, up to {Math.Min(batch * requests, queries.Count)} at once"
                        + (batch > 1 ? $" ({batch} a request)" : "") + $", {tokens} new {(settings.MaxTokens == 1 ? "token" : "tokens")} each ...");
                    using (Phases.Measure("endpoint queries"))
                        report = TextVerifier.VerifyAsync(client, queries, settings, rule, r_, concurrency: inFlight, promptsPerRequest: perRequest,
                            onBatchRefused: why => Console.Error.WriteLine("oml: warning: " + why)).GetAwaiter().GetResult();
                }

                if (set.Strategy.Parameters.TryGetValue("k", out var kText) && int.TryParse(kText, System.Globalization.CultureInfo.InvariantCulture, out var k) && k > 0
                    && set.Strategy.Name is Strategies.Perinucleus or Strategies.Custom)
                {
                    int perKey = set.Strategy.Parameters.TryGetValue("responses_per_key", out var nText) && int.TryParse(nText, System.Globalization.CultureInfo.InvariantCulture, out var nr) ? nr : 1;
                    double bound = Math.Min(1.0, (double)perKey / k);
                    report = report with { K = k, PValueOneOverK = Math.Exp(FingerprintStatistics.LogBinomialUpperTail(report.Queried, bound, report.Hits)) };
                }
                using var printing = Phases.Measure("print report");
                if (report.ThinClaimWarning(rule.CalibratedFloor) is { } thin) Console.Error.WriteLine("oml: warning: " + thin);
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
                    if (lead)
                    {
                        FingerprintIO.RewriteSet(setPath, set, r.GetValue(passphraseFile));
                        Console.Error.WriteLine($"recorded {chosen.Count} fingerprints as revealed in {setPath} ({set.Count - set.Revealed.Count} left unrevealed)");
                    }
                }
                return Cli.Ok;
            }
            finally
            {
                if (!lead) Console.SetOut(realOut);
            }
        });
        return cmd;
    }

    /// <summary>Keys in flight by default. A serving engine answers the keys in flight together, and on a GPU a pass over a few
    /// dozen rows costs about what one over a hundred does (host-bound), so more keys in flight answer faster: through
    /// <c>oml serve</c> on one H100, 1,024 keys took 0.7–0.9 s at 64 and 0.4–0.8 s at 256 (docs/benchmarks.md, "cuDNN's
    /// attention plans"); 16 (the default before) left the server's passes a quarter as full. 64 is a burst a shared or
    /// rate-limited endpoint takes (429s are retried with backoff); ask more of a server of your own.</summary>
    public const int DefaultConcurrency = 64;

    /// <summary>Keys a request by default: one. An array of prompts saves requests (a distant server, a limit on requests a
    /// minute), but every key of a request waits for its slowest one (an answer asked again decodes 2n + 8 tokens), and
    /// against <c>oml serve</c> on one H100 it was no faster at 256 in flight (16 a request 0.46 s, 64 a request 0.8 s, one
    /// 0.43–0.78 s for 1,024 keys) and slower at 16 (one request in flight at a time).</summary>
    public const int DefaultPromptsPerRequest = 1;

    /// <summary>Tokens asked for beyond a key's longest response through /v1/chat/completions: a chat template's answer may
    /// start with tokens of its own (an empty think block, a role header), as many as the former default's 8.</summary>
    public const int ChatMargin = 8;

    /// <summary>max_tokens for a key over an endpoint. Greedy: its longest response in tokens n (+ <see cref="ChatMargin"/>
    /// with <paramref name="chat"/>): an answer that limit cut off while it still agrees with a response (a leading
    /// newline, another split of the text, a character cut between its byte tokens) is asked again with
    /// <see cref="TextVerifier.RetryTokens"/>, and a greedy answer asked again is the same answer, longer; so a one-token
    /// response costs the server a prefill row (on the CPU, a pass of its own: <c>BatchEngineOptions.OneTokenPass</c>). Sampled: 2n + 8 at once
    /// (<see cref="TextVerifier.RetryTokens"/>, at least the chat margin), since a sampled answer is never asked again
    /// (another draw would change the odds the null assumes). The answer is matched as a text prefix, so nothing past
    /// the response and its leading whitespace can change the match; a longer answer only costs decoding steps.</summary>
    public static int DefaultMaxTokens(Fingerprint f, bool chat, bool sampled = false)
    {
        ArgumentNullException.ThrowIfNull(f);
        int n = f.Responses.Max(x => x.TokenIds.Count);
        return sampled ? Math.Max(TextVerifier.RetryTokens(n), n + ChatMargin) : n + (chat ? ChatMargin : 0);
    }

    /// <summary>
    /// <c>oml verify --endpoint URL --match partial</c>: the keys asked as text, as the exact rule asks them, each for the
    /// answer length the rule needs (n + D tokens for its longest response), with the server asked for its answer's token
    /// ids, which are matched as <see cref="LocalVerifier"/> matches a local model's answer. The per-key nulls and the keys
    /// left out are <see cref="LocalVerifier.NullsAndExclusions"/>' on the queries the base's tokenizer makes of the keys
    /// (<see cref="KeyFormat.Raw"/>: what a completions server given the key's text feeds its model, when it uses the
    /// set's tokenizer); without a base, the partial rule's common bound and no key left out.
    /// </summary>
    private static VerificationReport VerifyEndpointTokens(OpenAiCompatibleEndpoint client, IReadOnlyList<Fingerprint> chosen, FingerprintSet set,
        VerdictRule rule, ResponseMatch matchRule, CausalLM? nullModel, string? basePath, bool chatMode, double? temp, int samples, int inFlight, int perRequest)
    {
        if (inFlight < 1) throw new UsageException($"--concurrency must be at least 1, not {inFlight}");
        if (perRequest < 1) throw new UsageException($"--prompts-per-request must be at least 1, not {perRequest}");
        if (chatMode && perRequest > 1)
            throw new UsageException("--prompts-per-request is for /v1/completions: the chat API takes one conversation a request (drop --chat or the option)");
        var options = new LocalVerifyOptions { Match = matchRule, NullModel = nullModel, Temperature = temp, Samples = samples };
        int[][] queries;
        if (nullModel is not null)
        {
            var (tok, id) = LoadTokenizer(basePath!);
            if (id.Digest != set.Tokenizer.Digest)
                Console.Error.WriteLine($"oml: warning: the tokenizer of {basePath} differs from the set's ({set.Tokenizer.Name}); the base's null is computed on its own tokens");
            queries = chosen.Select(f => KeyFormat.Raw.Encode(tok, f)).ToArray();
        }
        else queries = chosen.Select(f => f.KeyTokenIds.ToArray()).ToArray();   // not used without a base (the common bound needs no query)
        double[] nulls;
        bool[]? excluded;
        using (Phases.Measure("partial null"))
            (nulls, excluded) = LocalVerifier.NullsAndExclusions(chosen, queries, rule, options);
        if (excluded is not null)
            Console.Error.WriteLine($"{excluded.Count(x => x)} of {chosen.Count} keys left out: the base's own greedy answer hits them under the partial rule (m = {matchRule.MinTokens})");
        var fingerprints = chosen.Select((f, i) => new FingerprintQuery(f.Index, f.Key, f.Responses.Select(x => x.Text).ToList(), nulls[i])
        {
            MaxTokens = f.Responses.Max(x => matchRule.AnswerLength(x.TokenIds.Count)),
            ResponseTokenIds = f.Responses.Select(x => x.TokenIds.ToArray()).ToList(),
            Excluded = excluded?[i] == true,
        }).ToList();
        var settings = new CompletionSettings(MaxTokens: fingerprints.Max(q => q.MaxTokens!.Value), Temperature: temp ?? 0.0,
            Mode: chatMode ? CompletionMode.Chat : CompletionMode.Completions);
        var (batch, requests) = perRequest > 1 ? TextVerifier.BatchShape(inFlight, perRequest) : (1, inFlight);
        batch = Math.Min(batch, fingerprints.Count);
        int fewest = fingerprints.Min(q => q.MaxTokens!.Value);
        string tokens = fewest == settings.MaxTokens ? $"{fewest}" : $"{fewest} to {settings.MaxTokens}";
        Console.Error.WriteLine($"querying {client.BaseUrl} with {fingerprints.Count} keys for their answers' token ids, up to {Math.Min(batch * requests, fingerprints.Count)} at once"
            + (batch > 1 ? $" ({batch} a request)" : "") + $", {tokens} new {(settings.MaxTokens == 1 ? "token" : "tokens")} each ...");
        try
        {
            using (Phases.Measure("endpoint queries"))
                return TextVerifier.VerifyTokensAsync(client, fingerprints, settings, matchRule, rule, samples, concurrency: inFlight, promptsPerRequest: perRequest,
                    onBatchRefused: why => Console.Error.WriteLine("oml: warning: " + why)).GetAwaiter().GetResult();
        }
        catch (CompletionEndpointException e) when (e.Kind == CompletionErrorKind.NoTokenIds
            || (e.Kind == CompletionErrorKind.HttpStatus && e.StatusCode is 400 or 422))
        {
            throw new CompletionEndpointException(e.Kind, e.Message + ". --match partial over an endpoint compares token ids and needs a server that returns them "
                + "(vLLM or oml serve: logprobs with return_tokens_as_token_ids); --match exact works on text", e.StatusCode, e.Attempts, e);
        }
    }

    /// <summary>The client of <c>--endpoint URL</c>, with the API key from <c>--api-key-env</c> when given.</summary>
    private static OpenAiCompatibleEndpoint EndpointClient(string url, string? apiKeyEnv, string? apiModel)
    {
        if (apiModel is not null && string.IsNullOrWhiteSpace(apiModel)) throw new UsageException("--api-model must not be empty");
        string? apiKey = null;
        if (apiKeyEnv is { } env)
        {
            apiKey = Environment.GetEnvironmentVariable(env);
            if (string.IsNullOrEmpty(apiKey)) throw new UsageException($"--api-key-env: the environment variable {env} is not set");
        }
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri)) throw new UsageException($"--endpoint: '{url}' is not an absolute URL");
        if (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) throw new UsageException($"--endpoint: '{url}' is not an http or https URL");
        return new OpenAiCompatibleEndpoint(uri, apiKey, apiModel);
    }

    private static double CheckOpen(double x, string name) => x > 0 && x < 1 ? x : throw new UsageException($"{name} must be in (0, 1)");

    /// <summary>The null hit probability of a key (kept for other commands): <see cref="LocalVerifier.NullProbability"/>.</summary>
    public static double NullProbability(Fingerprint f, VerdictRule rule, int samples, int required) =>
        LocalVerifier.NullProbability(f, rule, samples, required);

    private static VerificationReport VerifyLocal(string dir, FingerprintSet set, IReadOnlyList<Fingerprint> chosen, VerdictRule rule,
        LocalVerifyOptions options, Oml.Engine.Device device, Oml.Engine.DType? dtype = null, Task<(Tokenizer Tokenizer, TokenizerIdentity Id)>? tokenizerReady = null)
    {
        Console.Error.WriteLine($"querying {dir} with {chosen.Count} keys ...");
        return OnLocalModel(dir, set, device, dtype, tokenizerReady, (lm, tok) => LocalVerifier.Verify(lm, tok, chosen, rule, options));
    }

    /// <summary>Loads the model of <paramref name="dir"/> and its tokenizer (checked against the set's) and runs <paramref name="use"/> on them.</summary>
    private static T OnLocalModel<T>(string dir, FingerprintSet set, Oml.Engine.Device device,
        Oml.Engine.DType? dtype, Task<(Tokenizer Tokenizer, TokenizerIdentity Id)>? tokenizerReady, Func<CausalLM, Tokenizer, T> use)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
        if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new InvalidDataException($"{dir} has no tokenizer.json: local verification needs the model's tokenizer");
        // The tokenizer (9 MB of JSON for Llama 3) is parsed and hashed on another core while the weights load (or
        // since the command started, when the caller started it).
        var tokenizer = tokenizerReady ?? Task.Run(() => LoadTokenizer(dir));
        using (Phases.Measure("libtorch and device init")) InitDevice(device);   // already done when started early
        CausalLM lm;
        using (Phases.Measure("model load")) lm = ModelFolder.Load(dir, device, dtype);
        using var _lm = lm;
        Tokenizer tok;
        using (Phases.Measure("tokenizer wait"))
        {
            var (t, id) = tokenizer.GetAwaiter().GetResult();
            tok = t;
            if (id.Digest != set.Tokenizer.Digest)
                Console.Error.WriteLine($"oml: warning: the tokenizer of {dir} differs from the set's ({set.Tokenizer.Name}); the key token ids are sent as they are");
        }
        return use(lm, tok);
    }

    private static (Tokenizer Tokenizer, TokenizerIdentity Id) LoadTokenizer(string dir)
    {
        using var _ = Phases.Measure("tokenizer load and hash (background)");
        var tokenizer = Cli.LoadTokenizer(dir);
        return (tokenizer, FingerprintGenerator.TokenizerId(dir, tokenizer));
    }

    /// <summary>"answered N/M keys" on stderr about once a second, once the answers take longer than a second.</summary>
    private static InlineProgress<int> KeyProgress(int total)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double next = 1;
        return new InlineProgress<int>(n =>
        {
            if (clock.Elapsed.TotalSeconds < next) return;
            next = clock.Elapsed.TotalSeconds + 1;
            Console.Error.WriteLine($"answered {n}/{total} keys");
        });
    }

    /// <summary>Loads libtorch and, on a GPU, creates its context, so that the phases show what that costs.</summary>
    private static void InitDevice(Oml.Engine.Device device)
    {
        using var t = Oml.Engine.Torch.Zeros([1], Oml.Engine.DType.Float32, device);
    }
}
