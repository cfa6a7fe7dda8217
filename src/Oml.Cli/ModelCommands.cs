using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models;
using Oml.Models.IO;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary><c>oml tokenize</c>, <c>oml generate</c> and <c>oml score</c>: the model folder and tokenizer tools.</summary>
public static class ModelCommands
{
    // Non-ASCII text stays readable in the output (still valid JSON).
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Tokenize()
    {
        var tokenizer = new Option<string>("--tokenizer") { Description = "A model folder or a tokenizer.json file", Required = true };
        var text = new Option<string?>("--text") { Description = "Text to encode; prints {\"ids\": [...]}" };
        var input = new Option<string?>("--input") { Description = "A JSON file holding an array of strings; prints [{\"ids\", \"decoded\"}, ...]" };
        var special = new Option<bool>("--add-special-tokens") { Description = "Add the tokenizer's special tokens (BOS) as its post-processor says" };
        var cmd = new Command("tokenize", "Encode text with a Hugging Face tokenizer.json and print the ids as JSON.") { tokenizer, text, input, special };
        cmd.SetAction(r =>
        {
            var tok = LoadTokenizer(r.GetValue(tokenizer)!);
            bool add = r.GetValue(special);
            string? t = r.GetValue(text), file = r.GetValue(input);
            if ((t is null) == (file is null)) throw new UsageException("give exactly one of --text and --input");
            if (t is not null)
            {
                Console.WriteLine(new JsonObject { ["ids"] = Ids(tok.Encode(t, add)) }.ToJsonString(Compact));
                return Cli.Ok;
            }
            var texts = ReadStringArray(file!);
            var result = new JsonArray();
            foreach (var s in texts)
            {
                var ids = tok.Encode(s, add);
                result.Add(new JsonObject { ["ids"] = Ids(ids), ["decoded"] = tok.Decode(ids) });
            }
            Console.WriteLine(result.ToJsonString(Compact));
            return Cli.Ok;
        });
        return cmd;
    }

    public static Command Generate()
    {
        var model = ModelOption();
        var prompt = new Option<string?>("--prompt") { Description = "Prompt text (needs the folder's tokenizer.json)" };
        var ids = new Option<string?>("--ids") { Description = "Prompt token ids, comma-separated: 1,2,3" };
        var maxNew = CliOptions.MaxNewTokens("Tokens to generate at most", 32);
        var temperature = new Option<double?>("--temperature") { Description = "Sampling temperature; greedy decoding when absent" };
        var topK = new Option<int?>("--top-k") { Description = "Sample among the K most likely tokens" };
        var topP = new Option<double?>("--top-p") { Description = "Sample among the most likely tokens whose probabilities sum to P" };
        var minP = new Option<double?>("--min-p") { Description = "Drop tokens less likely than M times the most likely one" };
        var seed = new Option<ulong?>("--seed") { Description = "Random seed for sampling" };
        var json = CliOptions.Json("Print {\"output_ids\": [...], \"text\": \"...\"}");
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("generate", "Continue a prompt with a model folder (greedy unless --temperature is given).")
        {
            model, prompt, ids, maxNew, temperature, topK, topP, minP, seed, json, device, dtype,
        };
        cmd.SetAction(r =>
        {
            var dir = r.GetValue(model)!;
            var tok = TryLoadTokenizer(dir);
            var promptIds = PromptIds(r.GetValue(prompt), r.GetValue(ids), tok, dir, addSpecial: true);
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            var eos = lm.Config.EosTokenIds.Count > 0 ? lm.Config.EosTokenIds : tok?.EosTokenId is { } e ? [e] : [];
            var options = new GenerationOptions
            {
                MaxNewTokens = r.GetValue(maxNew),
                Temperature = r.GetValue(temperature),
                TopK = r.GetValue(topK),
                TopP = r.GetValue(topP),
                MinP = r.GetValue(minP),
                Seed = r.GetValue(seed),
                EosTokenIds = eos,
                PadTokenId = lm.Config.PadTokenId ?? tok?.PadTokenId,
            };
            Cli.OptionValue(options.Validate);
            var result = Generator.Generate(lm, [promptIds], options, tok is null ? null : x => tok.Decode(x, skipSpecialTokens: true));
            var seq = result.Sequences[0];
            if (r.GetValue(json))
                Console.WriteLine(new JsonObject { ["output_ids"] = Ids(seq.OutputIds), ["text"] = seq.Text }.ToJsonString(Compact));
            else
            {
                Console.WriteLine(seq.Text ?? string.Join(",", seq.OutputIds));
                Console.Error.WriteLine($"{result.GeneratedTokens} tokens in {result.Seconds:F2} s ({result.TokensPerSecond:F1} tokens/s), finished by {seq.FinishReason}");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    public static Command Score()
    {
        var model = ModelOption();
        var text = new Option<string?>("--text") { Description = "Text to score (needs the folder's tokenizer.json; BOS is added as the tokenizer says)" };
        var ids = new Option<string?>("--ids") { Description = "Token ids to score, comma-separated" };
        var json = CliOptions.Json("Print {\"token_logprobs\": [...], \"loss\": L}");
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("score", "Log-probability of each token given the ones before it, and the mean loss.") { model, text, ids, json, device, dtype };
        cmd.SetAction(r =>
        {
            var dir = r.GetValue(model)!;
            var tok = TryLoadTokenizer(dir);
            var tokens = PromptIds(r.GetValue(text), r.GetValue(ids), tok, dir, addSpecial: true);
            if (tokens.Length < 2) throw new UsageException("scoring needs at least two tokens");
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            CheckIds(tokens, lm.Config.VocabSize);
            double[] logprobs;
            using (Torch.NoGrad())
            using (Torch.NewScope())
            {
                var input = Torch.FromArray<long>(tokens.Select(i => (long)i).ToArray(), [1, tokens.Length], lm.Device);
                var lp = lm.Forward(input).To(DType.Float32).LogSoftmax(-1).Narrow(1, 0, tokens.Length - 1);
                var next = input.Narrow(1, 1, tokens.Length - 1).Unsqueeze(-1);
                logprobs = lp.Gather(2, next).Flatten().ToArray<double>();
            }
            double loss = -logprobs.Average();
            if (r.GetValue(json))
                Console.WriteLine(new JsonObject
                {
                    ["token_logprobs"] = new JsonArray(logprobs.Select(x => (JsonNode)x).ToArray()),
                    ["loss"] = loss,
                }.ToJsonString(Compact));
            else
            {
                for (int i = 1; i < tokens.Length; i++)
                    Console.WriteLine($"{i,5} {tokens[i],8} {(tok?.IdToToken(tokens[i]) ?? ""),-20} {logprobs[i - 1].ToString("F4", CultureInfo.InvariantCulture),10}");
                Console.WriteLine($"loss {loss.ToString("F4", CultureInfo.InvariantCulture)}  perplexity {Math.Exp(loss).ToString("F2", CultureInfo.InvariantCulture)}");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    public static Command Convert()
    {
        var model = ModelOption();
        var output = CliOptions.Out("Folder to write (published whole when complete; an existing one needs --force and is replaced entirely)");
        var dtype = new Option<string?>("--dtype") { Description = "Convert the weights: float32, bfloat16 or float16" };
        var shard = new Option<long>("--max-shard-mb") { Description = "Largest weight file in MiB before sharding", DefaultValueFactory = _ => 4096 };
        var force = CliOptions.Force();
        var json = CliOptions.Json("Print {\"out\", \"architecture\", \"dtype\", \"parameters\", \"weight_files\"} as JSON");
        var cmd = new Command("convert", "Re-save a model folder (optionally in another dtype) as a standard Hugging Face folder.") { model, output, dtype, shard, force, json };
        cmd.SetAction(r =>
        {
            var dir = r.GetValue(model)!;
            DType? dt = r.GetValue(dtype) is { } s ? DTypeExtensions.Parse(s) : null;
            if (dt is { } d && !d.IsFloatingPoint()) throw new UsageException($"--dtype must be a floating type, not {d.Name()}");
            long maxShard = r.GetValue(shard);
            if (maxShard < 1) throw new UsageException("--max-shard-mb must be at least 1");
            AtomicFolder.CheckWritable(r.GetValue(output)!, r.GetValue(force));
            using var lm = ModelFolder.Load(dir, Device.Cpu, dt);
            ModelFolder.Publish(lm, r.GetValue(output)!, dir, maxShard << 20, overwrite: r.GetValue(force));
            long parameters = lm.Parameters.Values.Sum(p => p.NumEl);
            return new Report()
                .Json("out", r.GetValue(output)).Json("architecture", lm.Config.ArchitectureName).Json("dtype", lm.DType.Name()).Json("parameters", parameters)
                .Json("weight_files", Report.Strings(ModelFolder.WeightFiles(r.GetValue(output)!).Select(f => Path.GetFileName(f))))
                .Line($"wrote {r.GetValue(output)} ({lm.Config.ArchitectureName}, {lm.DType.Name()}, {parameters:N0} parameters)")
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Perplexity()
    {
        var model = ModelOption();
        var baseModel = CliOptions.Base("A second model folder to compare with (e.g. the base of a fingerprinted model)");
        var text = new Option<string>("--text-file") { Description = "Held-out text to measure on (UTF-8)", Required = true };
        var window = new Option<int>("--window") { Description = "Tokens predicted per window", DefaultValueFactory = _ => 256 };
        var json = CliOptions.Json("Print {\"perplexity\", \"tokens\"} (and \"base_perplexity\", \"change\" with --base) as JSON");
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("perplexity", "Held-out perplexity of a model, and of its base for comparison (a utility check after fingerprinting).")
        {
            model, baseModel, text, window, json, device, dtype,
        };
        cmd.SetAction(r =>
        {
            var dir = r.GetValue(model)!;
            var tok = TryLoadTokenizer(dir) ?? throw new InvalidDataException($"{dir} has no tokenizer.json");
            var path = r.GetValue(text)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"text file not found: {path}", path);
            var ids = tok.Encode(File.ReadAllText(path));
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            double Measure(string d)
            {
                using var lm = ModelFolder.Load(d, dev, Cli.ParseDType(r.GetValue(dtype)));
                return Evaluation.Perplexity(lm, ids, r.GetValue(window));
            }
            double ppl = Measure(dir);
            if (r.GetValue(json))
            {
                var o = new JsonObject { ["model"] = dir, ["perplexity"] = ppl, ["tokens"] = ids.Length };
                if (r.GetValue(baseModel) is { } bj)
                {
                    double pbj = Measure(bj);
                    o["base"] = bj;
                    o["base_perplexity"] = pbj;
                    o["change"] = ppl / pbj - 1;
                }
                Console.WriteLine(o.ToJsonString(Compact));
                return Cli.Ok;
            }
            Console.WriteLine($"{dir}: perplexity {ppl.ToString("F3", CultureInfo.InvariantCulture)} over {ids.Length:N0} tokens");
            if (r.GetValue(baseModel) is { } b)
            {
                double pb = Measure(b);
                Console.WriteLine($"{b}: perplexity {pb.ToString("F3", CultureInfo.InvariantCulture)}");
                Console.WriteLine($"change: {((ppl / pb - 1) * 100).ToString("+0.00;-0.00", CultureInfo.InvariantCulture)} %");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    private static Option<string> ModelOption() => CliOptions.Model();

    private static JsonArray Ids(IEnumerable<int> ids) => new(ids.Select(i => (JsonNode)i).ToArray());

    private static Tokenizer LoadTokenizer(string path) =>
        Directory.Exists(path) ? Cli.LoadTokenizer(path)
        : File.Exists(path) ? Tokenizer.FromFile(path, cache: Cli.TokenizerCache)
        : throw new FileNotFoundException($"no tokenizer at {path} (give a model folder or a tokenizer.json)");

    private static Tokenizer? TryLoadTokenizer(string dir) =>
        File.Exists(Path.Combine(dir, "tokenizer.json")) ? Cli.LoadTokenizer(dir) : null;

    private static int[] PromptIds(string? text, string? ids, Tokenizer? tok, string dir, bool addSpecial = false)
    {
        if ((text is null) == (ids is null)) throw new UsageException("give exactly one of the text option and --ids");
        if (ids is not null)
        {
            var parts = ids.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var result = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
                if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]) || result[i] < 0)
                    throw new UsageException($"--ids: '{parts[i]}' is not a token id");
            if (result.Length == 0) throw new UsageException("--ids is empty");
            return result;
        }
        if (tok is null) throw new UsageException($"{dir} has no tokenizer.json: give token ids with --ids");
        var encoded = tok.Encode(text!, addSpecial);
        if (encoded.Length == 0) throw new UsageException("the text encodes to no tokens");
        return encoded;
    }

    private static void CheckIds(int[] ids, int vocab)
    {
        foreach (var id in ids)
            if (id >= vocab) throw new UsageException($"token id {id} is outside the model's vocabulary of {vocab}");
    }

    private static List<string> ReadStringArray(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"input file not found: {path}", path);
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(path)) as JsonArray
                       ?? throw new InvalidDataException($"{path}: expected a JSON array of strings");
            return node.Select((n, i) => n is JsonValue v && v.TryGetValue<string>(out var s) ? s
                : throw new InvalidDataException($"{path}: element {i} is not a string")).ToList();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})");
        }
    }
}
