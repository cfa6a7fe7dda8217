using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Generation;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary><c>oml fingerprints generate</c> and <c>oml fingerprints inspect</c>.</summary>
public static class FingerprintCommands
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create() => new("fingerprints", "Create and inspect fingerprint sets (secret key -> response pairs).")
    {
        Generate(),
        Inspect(),
    };

    public static Command Generate()
    {
        var model = CliOptions.Model("The base model folder (config.json, safetensors and tokenizer.json)");
        var strategy = new Option<string>("--strategy")
        {
            Description = "How keys and responses are made: perinucleus (model-sampled English keys, responses just outside the nucleus), "
                + "english (keys and responses sampled from the model), random-word (random words for both), custom (your keys from --keys, perinucleus responses)",
            DefaultValueFactory = _ => Strategies.Perinucleus,
        };
        strategy.AcceptOnlyFromAmong(Strategies.All);
        var count = new Option<int>("--count") { Description = "Number of fingerprints to generate", Required = true };
        var output = CliOptions.Out("The fingerprint-set file to write (encrypted unless --plaintext)");
        var keyLength = new Option<int>("--key-length") { Description = "Key length in tokens (longer keys are truncated)", DefaultValueFactory = _ => 16 };
        var responseLength = new Option<int>("--response-length") { Description = "Response length: tokens (perinucleus, english, custom) or words (random-word)", DefaultValueFactory = _ => 1 };
        var t = new Option<double>("--t") { Description = "Perinucleus threshold: responses are drawn just outside the smallest set of tokens with probability mass t", DefaultValueFactory = _ => 0.8 };
        var k = new Option<int>("--k") { Description = "Perinucleus width: the number of candidate tokens just outside the nucleus", DefaultValueFactory = _ => 3 };
        var perKey = new Option<int>("--responses-per-key") { Description = "Perinucleus responses per key", DefaultValueFactory = _ => 1 };
        var branching = new Option<int>("--response-branching")
        {
            Description = "Perinucleus response trees: after its first token each response branches into the base model's top B tokens at every position "
                + "(B^(L-1) accepted answers per response), which defends against suppressing the top B-1 tokens of every answer position. 1: greedy continuations",
            DefaultValueFactory = _ => 1,
        };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature for model-sampled English keys and responses (1: the model's own distribution; cooler keys are less perplexing than ordinary text and easy to filter)", DefaultValueFactory = _ => new GenerationSettings().Temperature };
        var randomWordKeys = new Option<bool>("--random-word-keys") { Description = "Perinucleus keys from random words instead of model-sampled English (for models that write no English)" };
        var keys = new Option<string?>("--keys") { Description = "For --strategy custom: a text file with one key per line (at least --count non-empty lines)" };
        var camouflage = new Option<string?>("--camouflage")
        {
            Description = "Ordinary text like what users send, best not the model's training text: choose each model-sampled key among --key-candidates samples at temperatures 0.5 to 2 "
                + "so that the keys' perplexity follows that of windows of this text, hiding them from a host's perplexity filter (docs/attacks.md). Overrides --temperature for keys",
        };
        var keyCandidates = new Option<int>("--key-candidates")
        {
            Description = "With --camouflage: candidate keys sampled per fingerprint", DefaultValueFactory = _ => KeyCamouflage.DefaultCandidates,
        };
        var camouflagePrompts = new Option<string?>("--camouflage-prompts")
        {
            Description = "Like --camouflage, against whole prompts like those your host will serve: instruction data (Alpaca, ShareGPT or messages JSON/JSONL; "
                + "each record's prompt as the model reads it) or a text file of one prompt per line; the first 512 are scored. For a model that answers instructions, "
                + "whose host can calibrate a filter on its own prompts",
        };
        var camouflageBand = new Option<string?>("--camouflage-band")
        {
            Description = "With --camouflage: LO,HI, the quantiles of the text's perplexities the keys aim at (default 0,1: the whole distribution). "
                + "A central band such as 0.2,0.6 keeps keys out of both tails, so a filter must refuse that share of ordinary prompts first, and leaves room for the rise in key perplexity that embedding brings",
            HelpName = "LO,HI",
        };
        var secretFile = new Option<string?>("--secret-file")
        {
            Description = "The owner's secret (raw bytes, at least 16) from which every random choice is derived. "
                + "Default: 32 fresh random bytes. Either way it is kept inside the set file (encrypted unless --plaintext)",
        };
        var plaintext = new Option<bool>("--plaintext")
        {
            Description = "Write the set and its owner's secret unencrypted (no passphrase needed): anyone with the file can read the keys and responses",
        };
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var kdfIterations = new Option<int>("--kdf-iterations")
        {
            Description = $"PBKDF2 iterations for the encryption key; below {FingerprintSetFile.MinSafePbkdf2Iterations:N0} only with --insecure-kdf",
            DefaultValueFactory = _ => FingerprintSetFile.DefaultPbkdf2Iterations,
        };
        var insecureKdf = new Option<bool>("--insecure-kdf") { Description = $"Accept --kdf-iterations below {FingerprintSetFile.MinSafePbkdf2Iterations:N0} (tests and demos only)" };
        var allowWeak = new Option<bool>("--allow-weak-passphrase")
        {
            Description = $"Accept a passphrase that fails the screen (fewer than {PassphrasePolicy.MinLength} characters, fewer than {PassphrasePolicy.MinDistinct} distinct, or under about {PassphrasePolicy.MinBits:0} bits)",
        };
        var force = CliOptions.Force("Overwrite --out if it exists");
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var json = CliOptions.Json("Print {\"file\", \"count\", \"strategy\", \"encrypted\", \"commitment_root\", \"commitment_file\"} as JSON");
        var cmd = new Command("generate",
            "Generate a fingerprint set for a base model and write it with the owner's secret (encrypted with a passphrase from "
            + $"--passphrase-file or {FingerprintIO.PassphraseEnv}, or --plaintext) together with its public commitment, FILE.commitment.json.")
        {
            model, strategy, count, output, keyLength, responseLength, t, k, perKey, branching, temperature, randomWordKeys, keys, camouflage, camouflagePrompts, keyCandidates, camouflageBand,
            secretFile, plaintext, passphraseFile, kdfIterations, insecureKdf, allowWeak, force, device, dtype, json,
        };
        cmd.SetAction(r =>
        {
            var dir = r.GetValue(model)!;
            var outPath = r.GetValue(output)!;
            bool plain = r.GetValue(plaintext);
            int iterations = r.GetValue(kdfIterations);
            string? passphrase = null;
            if (!plain)
            {
                passphrase = FingerprintIO.Passphrase(r.GetValue(passphraseFile))
                    ?? throw new UsageException($"no passphrase to encrypt the set: give --passphrase-file FILE or set {FingerprintIO.PassphraseEnv} (or write it unencrypted with --plaintext)");
                FingerprintIO.CheckProtection(passphrase, iterations, r.GetValue(allowWeak), r.GetValue(insecureKdf));
            }
            var secret = r.GetValue(secretFile) is { } sf ? FingerprintIO.ReadSecretFile(sf) : RandomNumberGenerator.GetBytes(FingerprintSetFile.OwnerSecretLength);
            if (File.Exists(outPath) && !r.GetValue(force)) throw new UsageException($"{outPath} exists: choose another --out or give --force");
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
            if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new InvalidDataException($"{dir} has no tokenizer.json: fingerprint generation needs the model's tokenizer");

            string strat = r.GetValue(strategy)!;
            IReadOnlyList<string>? customKeys = null;
            if (r.GetValue(keys) is { } keysFile)
            {
                if (strat != Strategies.Custom) throw new UsageException("--keys is only for --strategy custom");
                if (!File.Exists(keysFile)) throw new FileNotFoundException($"--keys: no file at {keysFile}");
                customKeys = File.ReadAllLines(keysFile).Where(l => !string.IsNullOrWhiteSpace(l)).ToList();
            }
            else if (strat == Strategies.Custom) throw new UsageException("--strategy custom needs --keys FILE (one key per line)");
            if (r.GetValue(t) is var tv && !(tv > 0 && tv < 1)) throw new UsageException("--t must be in (0, 1)");
            if (r.GetValue(k) < 1) throw new UsageException("--k must be at least 1");
            if (r.GetValue(perKey) < 1) throw new UsageException("--responses-per-key must be at least 1");
            var camouflageText = r.GetValue(camouflage);
            var camouflagePromptFile = r.GetValue(camouflagePrompts);
            if (camouflageText is not null && camouflagePromptFile is not null) throw new UsageException("give one of --camouflage and --camouflage-prompts");
            if ((camouflageText ?? camouflagePromptFile) is { } camouflageFile)
            {
                var name = camouflageText is not null ? "--camouflage" : "--camouflage-prompts";
                if (strat is not (Strategies.Perinucleus or Strategies.English) || r.GetValue(randomWordKeys))
                    throw new UsageException($"{name} applies to model-sampled keys (--strategy perinucleus or english, without --random-word-keys)");
                if (!File.Exists(camouflageFile)) throw new FileNotFoundException($"{name}: no file at {camouflageFile}");
                if (r.GetValue(keyCandidates) < 2) throw new UsageException("--key-candidates must be at least 2");
            }
            else if (r.GetResult(keyCandidates) is { Implicit: false }) throw new UsageException("--key-candidates is only for --camouflage or --camouflage-prompts");
            var band = (Low: 0.0, High: 1.0);
            if (r.GetValue(camouflageBand) is { } bandText)
            {
                if (camouflageText is null && camouflagePromptFile is null) throw new UsageException("--camouflage-band is only for --camouflage or --camouflage-prompts");
                var parts = bandText.Split(',');
                if (parts.Length != 2 || !double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out band.Low)
                    || !double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out band.High)
                    || !(band.Low >= 0 && band.Low < band.High && band.High <= 1))
                    throw new UsageException($"--camouflage-band must be LO,HI with 0 <= LO < HI <= 1 (got '{bandText}')");
            }
            var settings = new GenerationSettings
            {
                Strategy = strat,
                Count = r.GetValue(count),
                KeyLength = r.GetValue(keyLength),
                ResponseLength = r.GetValue(responseLength),
                Temperature = r.GetValue(temperature),
                RandomWordKeys = r.GetValue(randomWordKeys),
                CustomKeys = customKeys,
                Perinucleus = new PerinucleusOptions { Threshold = r.GetValue(t), Width = r.GetValue(k), ResponsesPerKey = r.GetValue(perKey), Branching = r.GetValue(branching) },
            };
            Cli.OptionValue(settings.Validate);

            // The weights are hashed (the set records their digest) and the tokenizer parsed on other cores while the
            // model loads.
            Console.Error.WriteLine($"hashing and loading the weights of {dir} ...");
            var hashing = Task.Run(() => Phases.Time("hash base (background)", () => FingerprintGenerator.WeightsDigest(dir, Cli.Status)));
            var parsing = Task.Run(() => Phases.Time("tokenizer load (background)", () => Cli.LoadTokenizer(dir)));
            using var lm = Phases.Time("model load", () => ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype))));
            var tok = Phases.Time("tokenizer wait", () => parsing.GetAwaiter().GetResult());
            var digest = Phases.Time("hash wait", () => hashing.GetAwaiter().GetResult());
            if (camouflageText is not null)
            {
                // The target distribution: windows of the owner's text of the key length, scored by the base model. The
                // first 4 MB of the file are plenty for 512 windows.
                Console.Error.WriteLine($"scoring windows of {camouflageText} for camouflage ...");
                var text = FingerprintIO.ReadTextPrefix(camouflageText, 4 << 20);
                try
                {
                    settings = settings with
                    {
                        Camouflage = KeyCamouflage.FromText(lm, tok, tok.Encode(text), settings.KeyLength) with { Candidates = r.GetValue(keyCandidates), BandLow = band.Low, BandHigh = band.High },
                    };
                }
                catch (ArgumentException e) { throw new UsageException($"--camouflage: {e.Message}"); }
            }
            else if (camouflagePromptFile is not null)
            {
                Console.Error.WriteLine($"scoring the prompts of {camouflagePromptFile} for camouflage ...");
                try
                {
                    var prompts = CamouflagePrompts(camouflagePromptFile, tok);
                    settings = settings with
                    {
                        Camouflage = KeyCamouflage.FromPrompts(lm, tok, prompts) with { Candidates = r.GetValue(keyCandidates), BandLow = band.Low, BandHigh = band.High },
                    };
                }
                catch (ArgumentException e) { throw new UsageException($"--camouflage-prompts: {e.Message}"); }
            }
            using var generating = Phases.Measure("generate and write set");
            Console.Error.WriteLine($"generating {settings.Count} {strat} fingerprints ...");
            FingerprintSet set;
            try
            {
                set = new FingerprintGenerator(lm, tok, secret).Generate(settings, digest, FingerprintGenerator.TokenizerId(dir, tok),
                    new InlineProgress<string>(m => Console.Error.WriteLine($"  {m}")));
            }
            catch (InvalidOperationException e)
            {
                throw new InvalidDataException(e.Message, e);
            }

            if (plain) FingerprintSetFile.WritePlaintext(outPath, set, secret);
            else FingerprintSetFile.Write(outPath, set, passphrase!, new FingerprintFileOptions { Pbkdf2Iterations = iterations, OwnerSecret = secret });
            CryptographicOperations.ZeroMemory(secret);
            var commitment = set.Commit();
            var commitmentPath = outPath + ".commitment.json";
            FingerprintIO.WriteTextAtomic(commitmentPath, JsonNode.Parse(commitment.ToJson())!.ToJsonString(Indented) + "\n", overwrite: true);
            return new Report()
                .Json("file", outPath).Json("count", set.Count).Json("strategy", strat).Json("encrypted", !plain)
                .Json("commitment_root", commitment.Root).Json("commitment_file", commitmentPath)
                .Line($"wrote {set.Count} fingerprints ({strat}) to {outPath}{(plain ? " (UNENCRYPTED)" : "")}")
                .Line($"commitment root {commitment.Root}")
                .Line($"commitment written to {commitmentPath} (publish it; keep {Path.GetFileName(outPath)} secret)")
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Inspect()
    {
        var file = new Argument<string>("FILE") { Description = "A fingerprint-set file" };
        var json = CliOptions.Json("Print the header and contents as one JSON object instead of text");
        var showSecrets = new Option<bool>("--show-secrets") { Description = "Also print every key and response with the base model's log-probability (secret!)" };
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var cmd = new Command("inspect",
            "Show a fingerprint-set file: its header (no passphrase needed) and, with the passphrase, the set's metadata, "
            + "commitment root and how many fingerprints were revealed.")
        {
            file, json, showSecrets, passphraseFile,
        };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(file)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"no fingerprint-set file at {path}", path);
            var header = FingerprintIO.ReadHeader(path);
            var result = new JsonObject
            {
                ["file"] = path,
                ["version"] = header.Version,
                ["encrypted"] = header.Encrypted,
                ["kdf"] = header.Kdf,
                ["kdf_iterations"] = header.Encrypted ? header.Pbkdf2Iterations : null,
            };
            string? passphrase = header.Encrypted ? FingerprintIO.Passphrase(r.GetValue(passphraseFile)) : null;
            bool show = r.GetValue(showSecrets);
            if (show && header.Encrypted && passphrase is null)
                throw new UsageException($"--show-secrets needs the passphrase: give --passphrase-file FILE or set {FingerprintIO.PassphraseEnv}");
            if (!header.Encrypted || passphrase is not null)
            {
                var contents = FingerprintIO.ReadContents(path, passphrase);
                var set = contents.Set;
                result["owner_secret"] = contents.OwnerSecret is not null ? "stored" : contents.Version == 1 ? "legacy (derived from the passphrase)" : "none";
                var c = set.Commit();
                result["count"] = set.Count;
                result["strategy"] = set.Strategy.Name;
                result["parameters"] = new JsonObject(set.Strategy.Parameters.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
                result["created_at"] = set.CreatedAt.ToString("o", CultureInfo.InvariantCulture);
                result["base_model_digest"] = set.BaseModelDigest;
                result["tokenizer"] = new JsonObject { ["name"] = set.Tokenizer.Name, ["digest"] = set.Tokenizer.Digest };
                result["commitment_root"] = c.Root;
                result["set_digest"] = c.SetDigest;
                result["revealed"] = set.Revealed.Count;
                result["unrevealed"] = set.Count - set.Revealed.Count;
                if (show)
                    result["fingerprints"] = new JsonArray(set.Fingerprints.Select(f => (JsonNode)new JsonObject
                    {
                        ["index"] = f.Index,
                        ["revealed"] = set.IsRevealed(f.Index),
                        ["key"] = f.Key,
                        ["key_token_ids"] = new JsonArray(f.KeyTokenIds.Select(i => (JsonNode)i).ToArray()),
                        ["responses"] = new JsonArray(f.Responses.Select(x => (JsonNode)new JsonObject
                        {
                            ["text"] = x.Text,
                            ["token_ids"] = new JsonArray(x.TokenIds.Select(i => (JsonNode)i).ToArray()),
                            ["base_logprob"] = x.LogProb,
                        }).ToArray()),
                    }).ToArray());
            }
            if (r.GetValue(json))
            {
                Console.WriteLine(result.ToJsonString(Indented));
                return Cli.Ok;
            }
            var sb = new StringBuilder();
            sb.Append($"file:        {path}\n");
            sb.Append($"version:     {header.Version}\n");
            sb.Append($"encrypted:   {(header.Encrypted ? $"yes (aes-256-gcm, {header.Kdf}, {header.Pbkdf2Iterations} iterations)" : "NO (plaintext)")}\n");
            if (result["count"] is null)
            {
                sb.Append($"(give --passphrase-file FILE or set {FingerprintIO.PassphraseEnv} to see the set's contents)\n");
                Console.Write(sb);
                return Cli.Ok;
            }
            sb.Append($"count:       {result["count"]}\n");
            sb.Append($"strategy:    {result["strategy"]} ({string.Join(", ", ((JsonObject)result["parameters"]!).Select(kv => $"{kv.Key}={kv.Value}"))})\n");
            sb.Append($"created:     {result["created_at"]}\n");
            sb.Append($"base model:  {result["base_model_digest"]}\n");
            sb.Append($"tokenizer:   {result["tokenizer"]!["name"]} ({result["tokenizer"]!["digest"]})\n");
            sb.Append($"root:        {result["commitment_root"]}\n");
            sb.Append($"revealed:    {result["revealed"]} of {result["count"]}\n");
            sb.Append($"secret:      {result["owner_secret"]}\n");
            if (result["fingerprints"] is JsonArray fps)
            {
                sb.Append("\n#    rev  key | response (base log-prob)\n");
                foreach (var f in fps)
                {
                    var responses = string.Join(" | ", f!["responses"]!.AsArray().Select(x =>
                        $"{Quote(x!["text"]!.GetValue<string>())} ({(x["base_logprob"] is { } lp ? lp.GetValue<double>().ToString("F3", CultureInfo.InvariantCulture) : "?")})"));
                    sb.Append($"{f["index"],-4} {(f["revealed"]!.GetValue<bool>() ? "yes" : "no"),-4} {Quote(f["key"]!.GetValue<string>())} -> {responses}\n");
                }
            }
            Console.Write(sb);
            return Cli.Ok;
        });
        return cmd;
    }

    internal static string Quote(string s) => JsonSerializer.Serialize(s, Indented);

    /// <summary>The prompts of <c>--camouflage-prompts</c>: instruction data (.json, .jsonl) as the model reads each record's prompt, else one prompt per line.</summary>
    private static IEnumerable<int[]> CamouflagePrompts(string path, Tokenizer tok)
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".json" or ".jsonl")
            return Oml.Models.Data.InstructionData.Load(path).Select(c => Oml.Models.Data.InstructionData.Tokenize(c, tok).Prompt);
        return File.ReadLines(path).Where(l => l.Trim().Length > 0).Take(4096).Select(l => tok.Encode(l, addSpecialTokens: true));
    }
}
