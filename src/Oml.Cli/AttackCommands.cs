using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Data;
using Oml.Models.Tokenizers;
using Oml.Models.Training;

namespace Oml.Cli;

/// <summary>
/// <c>oml attack merge|quantize|prune|sft|distill</c> write an attacked model folder; <c>oml attack probe</c> verifies a
/// model served through a decoding-time attack (a responder spec) and prints hits/queried and the verdict.
/// </summary>
public static class AttackCommands
{
    public static Command Create() => new("attack", "Attack a fingerprinted model (the evaluation lab's attacks; see docs/attacks.md).")
    {
        Merge(), Quantize(), Prune(), Sft(), Distill(), Probe(), Detect(),
    };

    /// <summary>The host's key detector: how well prompt perplexity separates a set's keys from ordinary text (AUC).</summary>
    public static Command Detect()
    {
        var model = ModelOption("The served model folder (its perplexity scores the prompts)");
        var fingerprints = new Option<string>("--fingerprints") { Description = "The fingerprint set whose keys are scored", Required = true };
        var heldout = new Option<string>("--heldout") { Description = "Ordinary text; windows of the keys' token lengths are scored against them" };
        var instructions = new Option<string>("--instructions") { Description = "Instead of --heldout: instruction records (JSON, as oml attack sft reads them), the host's ordinary traffic" };
        var instructionText = new Option<string>("--instruction-text")
        {
            Description = "With --instructions, what is scored of each record: user (its last user message, as a filter sees a request before the chat template, scored like the keys) or prompt (the whole raw-format prompt the lab's filters score, headers included)",
            DefaultValueFactory = _ => "user",
        };
        instructionText.AcceptOnlyFromAmong("user", "prompt");
        var seed = new Option<int>("--seed") { Description = "Seed of the text windows", DefaultValueFactory = _ => 1 };
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var json = CliOptions.Json("Print {\"keys\", \"ordinary\", \"key_perplexity\", \"text_perplexity\", \"ratio\", \"detector_auc\", \"separability\", \"filter_budget\": [{\"refused\", \"keys_removed_low\", \"keys_removed_high\", \"keys_removed_both\"}]} as JSON");
        var cmd = new Command("detect", "Score a set's keys with the perplexity detector a host can run (docs/attacks.md): key and text perplexity, the detector's AUC, and the keys the strongest threshold filter removes while refusing 1, 2 or 5 % of ordinary prompts.")
        {
            model, fingerprints, heldout, instructions, instructionText, seed, passphraseFile, device, dtype, json,
        };
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(model)!;
            var set = FingerprintIO.ReadSet(r.GetValue(fingerprints)!, r.GetValue(passphraseFile));
            string? text = r.GetValue(heldout), records = r.GetValue(instructions);
            if ((text is null) == (records is null)) throw new UsageException("give exactly one of --heldout TEXT and --instructions RECORDS (the ordinary prompts)");
            if (!File.Exists(text ?? records)) throw new FileNotFoundException($"{(text is null ? "--instructions" : "--heldout")}: no file at {text ?? records}");
            var tok = Cli.LoadTokenizer(dir);
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            var keys = set.Fingerprints.Select(f => f.KeyTokenIds.ToArray()).ToList();
            var s = text is not null
                ? Stealth.Measure(lm, tok, keys, tok.Encode(File.ReadAllText(text)), r.GetValue(seed))
                : Stealth.AgainstInstructions(lm, tok, keys, InstructionData.Load(records!), userMessages: r.GetValue(instructionText) == "user");
            var budget = new JsonArray();
            var lines = new List<string>();
            foreach (var b in StealthResult.Budgets)
            {
                double lo = s.KeysRemovedAt(b, FilterSide.Low), hi = s.KeysRemovedAt(b, FilterSide.High), both = s.KeysRemovedAt(b, FilterSide.Both);
                budget.Add(new JsonObject { ["refused"] = b, ["keys_removed_low"] = lo, ["keys_removed_high"] = hi, ["keys_removed_both"] = both });
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"{b:P0} refused: {lo:P0} below, {hi:P0} above, {both:P0} both"));
            }
            return new Report()
                .Json("keys", keys.Count).Json("ordinary", s.TextPerplexities.Count)
                .Json("key_perplexity", Report.Number(s.KeyPerplexity)).Json("text_perplexity", Report.Number(s.TextPerplexity))
                .Json("ratio", Report.Number(s.Ratio)).Json("detector_auc", Report.Number(s.DetectorAuc)).Json("separability", Report.Number(s.Separability))
                .Json("filter_budget", budget)
                .Line(string.Create(CultureInfo.InvariantCulture,
                    $"keys: {keys.Count}  ordinary prompts: {s.TextPerplexities.Count}  key perplexity: {s.KeyPerplexity:G4}  text perplexity: {s.TextPerplexity:G4}  ratio: {s.Ratio:G3}  detector AUC: {s.DetectorAuc:F3}  separability: {s.Separability:F3}"))
                .Line("keys the best threshold filter removes: " + string.Join("; ", lines))
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    private static Option<string> ModelOption(string description = "The fingerprinted model folder") => CliOptions.Model(description);

    private static Option<string> OutOption() => CliOptions.Out("Folder to write the attacked model to (created if needed)");

    private static Option<bool> JsonOption(string fields) => CliOptions.Json($"Print {{\"attack\", \"out\"{fields}}} as JSON");

    /// <summary>The result of an attack that wrote a model folder: its name and folder, then its own fields.</summary>
    private static Report Written(string attack, string outDir) => new Report().Json("attack", attack).Json("out", outDir);

    private static IProgress<string> Progress() => new InlineProgress<string>(s => Console.Error.WriteLine(s));

    /// <summary>Refuses to write over an input folder (the attacked model would replace the evidence).</summary>
    private static void CheckOut(string outDir, bool force, params string?[] inputs)
    {
        var full = Path.GetFullPath(outDir).TrimEnd(Path.DirectorySeparatorChar);
        foreach (var i in inputs)
            if (i is not null && string.Equals(Path.GetFullPath(i).TrimEnd(Path.DirectorySeparatorChar), full, StringComparison.Ordinal))
                throw new UsageException($"--out {outDir} is an input folder; write the attacked model somewhere else");
        Oml.Models.IO.AtomicFolder.CheckWritable(outDir, force);
    }

    private static void Save(CausalLM attacked, string outDir, string sourceDir, bool force)
    {
        ModelFolder.Publish(attacked, outDir, sourceDir, overwrite: force);
        Console.Error.WriteLine($"wrote {outDir}");
    }

    private static Command Merge()
    {
        var model = ModelOption("The fingerprinted model folder (θ_A, or one of the task-vector models)");
        var with = new Option<string[]>("--with") { Description = "Sibling model folder(s) of the same shape (repeat the option for several)", Required = true, AllowMultipleArgumentsPerToken = true };
        var method = new Option<string>("--method") { Description = "linear, slerp, task-arithmetic or ties", DefaultValueFactory = _ => "linear" };
        var baseModel = CliOptions.Base("The common base model (task-arithmetic and ties)");
        var weight = new Option<double>("--weight") { Description = "linear/slerp: the sibling's share a in [0, 1]", DefaultValueFactory = _ => 0.5 };
        var weights = new Option<string?>("--weights") { Description = "task-arithmetic/ties: comma-separated w_k for the model then each sibling (default all 1)" };
        var density = new Option<double>("--density") { Description = "ties: fraction of each task vector kept", DefaultValueFactory = _ => 0.5 };
        var lambda = new Option<double>("--lambda") { Description = "task-arithmetic/ties: scale of the merged task vector", DefaultValueFactory = _ => 1.0 };
        var output = OutOption();
        var force = CliOptions.Force();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var json = JsonOption("");
        var cmd = new Command("merge", "Merge the model with sibling models of the same shape (linear, SLERP, task arithmetic, TIES).")
        {
            model, with, method, baseModel, weight, weights, density, lambda, output, force, device, dtype, json,
        };
        cmd.SetAction(r =>
        {
            var m = r.GetValue(method)!.ToLowerInvariant() switch
            {
                "linear" => MergeMethod.Linear,
                "slerp" => MergeMethod.Slerp,
                "task-arithmetic" or "task_arithmetic" => MergeMethod.TaskArithmetic,
                "ties" => MergeMethod.Ties,
                var other => throw new UsageException($"--method: unknown merge method '{other}' (linear, slerp, task-arithmetic, ties)"),
            };
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            var others = r.GetValue(with) ?? [];
            string? baseDir = r.GetValue(baseModel);
            CheckOut(outDir, r.GetValue(force), [dir, baseDir, .. others]);
            if (m is MergeMethod.Linear or MergeMethod.Slerp && baseDir is not null) throw new UsageException($"--base is for task-arithmetic and ties, not {r.GetValue(method)}");
            double[]? w = r.GetValue(weights) is { } ws ? ParseList(ws, "--weights") : null;
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            var dt = Cli.ParseDType(r.GetValue(dtype));
            var loaded = new List<CausalLM>();
            try
            {
                var lm = Load(dir, dev, dt, loaded);
                var siblings = others.Select(o => Load(o, dev, dt, loaded)).ToList();
                var b = baseDir is null ? null : Load(baseDir, dev, dt, loaded);
                var attack = Cli.OptionValue(() => new MergeAttack(m, siblings, b, r.GetValue(weight), w, r.GetValue(density), r.GetValue(lambda)));
                using var merged = attack.Apply(lm, Progress());
                Save(merged, outDir, dir, r.GetValue(force));
                return Written(attack.Name, outDir).Line($"{attack.Name}: done").Print(r.GetValue(json));
            }
            finally
            {
                foreach (var l in loaded) l.Dispose();
            }
        });
        return cmd;
    }

    private static CausalLM Load(string dir, Device dev, DType? dt, List<CausalLM> loaded)
    {
        var m = ModelFolder.Load(dir, dev, dt);
        loaded.Add(m);
        return m;
    }

    private static double[] ParseList(string s, string option) => s.Split(',').Select(x =>
        double.TryParse(x.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
            : throw new UsageException($"{option}: '{x}' is not a number")).ToArray();

    private static TensorKinds Kinds(bool embeddings, bool norms) =>
        TensorKinds.Linear | (embeddings ? TensorKinds.Embeddings : 0) | (norms ? TensorKinds.Other : 0);

    private static Command Quantize()
    {
        var model = ModelOption();
        var bits = new Option<int>("--bits") { Description = "8 (symmetric absmax) or 4 (asymmetric min/max with a zero point)", DefaultValueFactory = _ => 8 };
        var symmetric = new Option<bool>("--symmetric") { Description = "4 bits: symmetric absmax instead of asymmetric" };
        var group = new Option<int>("--group-size") { Description = "Elements per quantization group along the input dimension", DefaultValueFactory = _ => 64 };
        var embeddings = new Option<bool>("--include-embeddings") { Description = "Also quantize the token embeddings (and an untied LM head)" };
        var norms = new Option<bool>("--include-norms") { Description = "Also quantize norm weights and biases" };
        var output = OutOption();
        var force = CliOptions.Force();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var json = JsonOption(", \"tensors\", \"mean_mse\", \"worst_tensor\", \"worst_mse\"");
        var cmd = new Command("quantize", "Quantize the weights group-wise to int8/int4 and back (the values a weight-only quantized deployment computes with).")
        {
            model, bits, symmetric, group, embeddings, norms, output, force, device, dtype, json,
        };
        cmd.SetAction(r =>
        {
            var scheme = (r.GetValue(bits), r.GetValue(symmetric)) switch
            {
                (8, _) => QuantizationScheme.Int8Symmetric,
                (4, false) => QuantizationScheme.Int4Asymmetric,
                (4, true) => QuantizationScheme.Int4Symmetric,
                var (b, _) => throw new UsageException($"--bits must be 8 or 4, not {b}"),
            };
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            CheckOut(outDir, r.GetValue(force), dir);
            var attack = Cli.OptionValue(() => new QuantizeAttack(scheme, r.GetValue(group), Kinds(r.GetValue(embeddings), r.GetValue(norms))));
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            using var q = attack.Apply(lm, Progress());
            Save(q, outDir, dir, r.GetValue(force));
            var worst = attack.Errors.MaxBy(e => e.MeanSquaredError);
            double mean = attack.Errors.Count == 0 ? double.NaN : attack.Errors.Average(e => e.MeanSquaredError);
            return Written(attack.Name, outDir)
                .Json("tensors", attack.Errors.Count).Json("mean_mse", Report.Number(mean))
                .Json("worst_tensor", worst?.Name).Json("worst_mse", worst is null ? null : Report.Number(worst.MeanSquaredError))
                .Line(string.Create(CultureInfo.InvariantCulture,
                    $"{attack.Name}: {attack.Errors.Count} tensors, mean MSE {mean:E3}, worst {worst?.Name} ({worst?.MeanSquaredError:E3})"))
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    private static Command Prune()
    {
        var model = ModelOption();
        var fraction = new Option<double>("--fraction") { Description = $"Fraction of the weights to zero, in [0, {PruneAttack.MaxFraction}]", Required = true };
        var global = new Option<bool>("--global") { Description = "One magnitude threshold over all pruned tensors (default: per matrix)" };
        var embeddings = new Option<bool>("--include-embeddings") { Description = "Also prune the token embeddings (and an untied LM head)" };
        var output = OutOption();
        var force = CliOptions.Force();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var json = JsonOption(", \"fraction\"");
        var cmd = new Command("prune", "Unstructured magnitude pruning of the linear weights.") { model, fraction, global, embeddings, output, force, device, dtype, json };
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            CheckOut(outDir, r.GetValue(force), dir);
            var attack = Cli.OptionValue(() => new PruneAttack(r.GetValue(fraction), r.GetValue(global), Kinds(r.GetValue(embeddings), false)));
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            using var p = attack.Apply(lm, Progress());
            Save(p, outDir, dir, r.GetValue(force));
            return Written(attack.Name, outDir).Json("fraction", r.GetValue(fraction)).Line($"{attack.Name}: done").Print(r.GetValue(json));
        });
        return cmd;
    }

    /// <summary>The training options sft and distill share.</summary>
    private sealed class TrainingOptionSet
    {
        public readonly Option<double> Epochs = new("--epochs") { Description = "Passes over the data", DefaultValueFactory = _ => 1.0 };
        public readonly Option<double> Lr = new("--lr") { Description = "Peak learning rate (AdamW, warm-up and cosine decay)", DefaultValueFactory = _ => 1e-4 };
        public readonly Option<int?> Samples = new("--samples") { Description = "Use only the first N examples (default: all)" };
        public readonly Option<int?> LoraRank = new("--lora-rank") { Description = "Train LoRA adapters of this rank (merged on save) instead of all weights" };
        public readonly Option<double?> LoraAlpha = new("--lora-alpha") { Description = "LoRA α (default 2 × rank)" };
        public readonly Option<int> Batch = CliOptions.BatchSize("Rows per step", 8);
        public readonly Option<int> MaxLength = new("--max-length") { Description = "Most tokens of prompt + response per row", DefaultValueFactory = _ => 256 };
        public readonly Option<bool> ChatTemplate = new("--chat-template") { Description = "Render the examples in the model's chat template (default: the raw ### Instruction/### Response form)" };
        public readonly Option<ulong> Seed = new("--seed") { Description = "Seed of the data order, LoRA and a fresh student", DefaultValueFactory = _ => 0UL };

        public void AddTo(Command c)
        {
            foreach (var o in new Option[] { Epochs, Lr, Samples, LoraRank, LoraAlpha, Batch, MaxLength, ChatTemplate, Seed }) c.Options.Add(o);
        }

        public AttackTraining Read(ParseResult r) => new()
        {
            Epochs = r.GetValue(Epochs),
            LearningRate = r.GetValue(Lr),
            Samples = r.GetValue(Samples),
            LoraRank = r.GetValue(LoraRank),
            LoraAlpha = r.GetValue(LoraAlpha),
            Batch = r.GetValue(Batch),
            MaxLength = r.GetValue(MaxLength),
            Seed = r.GetValue(Seed),
        };

        /// <summary>The model folder's tokenizer, and its chat template when --chat-template is given.</summary>
        public (Tokenizer Tok, ChatTemplate? Template) Tokenizer(ParseResult r, string dir)
        {
            if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new InvalidDataException($"{dir} has no tokenizer.json: the instruction data must be tokenized with the model's tokenizer");
            var tok = Cli.LoadTokenizer(dir);
            return (tok, r.GetValue(ChatTemplate) ? LoadTemplate(dir) : null);
        }
    }

    private static ChatTemplate LoadTemplate(string dir)
    {
        try { return Oml.Models.ChatTemplates.ChatTemplate.FromTokenizerConfig(dir); }
        catch (Exception e) when (e is IOException or ChatTemplateException or System.Text.Json.JsonException or InvalidDataException)
        {
            throw new InvalidDataException($"{dir} has no usable chat template ({e.Message})");
        }
    }

    private static Command Sft()
    {
        var model = ModelOption();
        var data = new Option<string>("--data") { Description = "Instruction data: JSON or JSONL in Alpaca, ShareGPT or messages form", Required = true };
        var output = OutOption();
        var force = CliOptions.Force();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var t = new TrainingOptionSet();
        var json = JsonOption(", \"final_loss\"");
        var cmd = new Command("sft", "Fine-tune the model on instruction data (full or LoRA; loss on the responses only).") { model, data, output, force, device, dtype, json };
        t.AddTo(cmd);
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            CheckOut(outDir, r.GetValue(force), dir);
            var training = t.Read(r);
            var (tok, template) = t.Tokenizer(r, dir);
            var conversations = InstructionData.Load(r.GetValue(data)!);
            var attack = Cli.OptionValue(() => new SftAttack(SftAttack.ExamplesFrom(training.Samples is { } n ? conversations.Take(n) : conversations, tok, template), training));
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            using var tuned = attack.Apply(lm, Progress());
            Save(tuned, outDir, dir, r.GetValue(force));
            return Written(attack.Name, outDir).Json("final_loss", Report.Number(attack.LastLoss))
                .Line(string.Create(CultureInfo.InvariantCulture, $"{attack.Name}: final loss {attack.LastLoss:F4}")).Print(r.GetValue(json));
        });
        return cmd;
    }

    private static Command Distill()
    {
        var model = ModelOption("The teacher: the fingerprinted model folder (its tokenizer is the student's)");
        var prompts = new Option<string>("--prompts") { Description = "Instruction data whose prompts the teacher answers (their responses are not used)", Required = true };
        var student = new Option<string?>("--student") { Description = "Start the student from this model folder (e.g. the base model)" };
        var freshHidden = new Option<int?>("--fresh-hidden") { Description = "Start from a fresh random Llama student of this hidden size instead" };
        var freshLayers = new Option<int>("--fresh-layers") { Description = "Layers of a fresh student", DefaultValueFactory = _ => 4 };
        var freshHeads = new Option<int>("--fresh-heads") { Description = "Attention heads of a fresh student", DefaultValueFactory = _ => 4 };
        var maxNew = CliOptions.MaxNewTokens("Length of the teacher's answers", 64);
        var temperature = new Option<double?>("--temperature") { Description = "Sample the teacher's answers at this temperature (default greedy)" };
        var output = OutOption();
        var force = CliOptions.Force();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var t = new TrainingOptionSet();
        var json = JsonOption(", \"teacher_answers\", \"final_loss\"");
        var cmd = new Command("distill", "Sequence-level distillation: train a student on the model's answers to ordinary prompts.")
        {
            model, prompts, student, freshHidden, freshLayers, freshHeads, maxNew, temperature, output, force, device, dtype, json,
        };
        t.AddTo(cmd);
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            string? studentDir = r.GetValue(student);
            int? hidden = r.GetValue(freshHidden);
            if ((studentDir is null) == (hidden is null)) throw new UsageException("give exactly one of --student DIR and --fresh-hidden H");
            CheckOut(outDir, r.GetValue(force), dir, studentDir);
            var training = t.Read(r);
            var (tok, template) = t.Tokenizer(r, dir);
            var conversations = InstructionData.Load(r.GetValue(prompts)!);
            var promptIds = conversations.Select(c => InstructionData.Tokenize(c, tok, template).Prompt).ToList();
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            var dt = Cli.ParseDType(r.GetValue(dtype));
            using var teacher = ModelFolder.Load(dir, dev, dt);
            ModelConfig? fresh = null;
            if (hidden is { } h)
            {
                int heads = r.GetValue(freshHeads), layers = r.GetValue(freshLayers);
                if (h < 8 || heads < 1 || h % heads != 0 || (h / heads) % 2 != 0) throw new UsageException($"--fresh-hidden {h} must be a multiple of --fresh-heads {heads} with an even head size");
                if (layers < 1) throw new UsageException("--fresh-layers must be at least 1");
                int intermediate = (h * 8 / 3 + 63) / 64 * 64;
                var c = teacher.Config;
                fresh = new LlamaShape(c.VocabSize, h, layers, heads, heads, intermediate, Math.Min(c.MaxPositionEmbeddings, 4096), TieEmbeddings: true)
                    .ToConfig(c.BosTokenId, c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null, c.PadTokenId);
            }
            using var studentModel = studentDir is null ? null : ModelFolder.Load(studentDir, dev, dt);
            var decoding = new GenerationOptions { Temperature = r.GetValue(temperature), Seed = r.GetValue(temperature) is null ? null : r.GetValue(t.Seed) };
            var attack = Cli.OptionValue(() => new DistillationAttack(promptIds, studentModel, fresh, r.GetValue(maxNew), decoding, training));
            using var trained = attack.Apply(teacher, Progress());
            Save(trained, outDir, dir, r.GetValue(force));
            return Written(attack.Name, outDir).Json("teacher_answers", attack.Transcript.Count).Json("final_loss", Report.Number(attack.LastLoss))
                .Line(string.Create(CultureInfo.InvariantCulture, $"{attack.Name}: {attack.Transcript.Count} teacher answers, final loss {attack.LastLoss:F4}"))
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    private static Command Probe()
    {
        var model = CliOptions.OptionalModel("The (attacked) model folder the host serves; its tokenizer.json builds the queries");
        var fingerprints = new Option<string>("--fingerprints") { Description = "The fingerprint-set file", Required = true };
        var responder = new Option<string>("--responder") { Description = "How the host answers: a responder spec (greedy, sample:t=0.7,top_p=0.9, suppress:k=1,m=3,threshold=0.5, filter:ppl=..., system:\"...\", chat, coalition:majority:M1,M2,M3, rewrite:drop=0.2, paraphrase, block:revealed=FILE; join parts with '+'; docs/attacks.md)", DefaultValueFactory = _ => "greedy" };
        var count = new Option<int?>("--count") { Description = "Query the first M unrevealed fingerprints (default: all unrevealed)" };
        var alpha = new Option<double>("--alpha") { Description = "False-positive rate of the verdict", DefaultValueFactory = _ => VerdictRule.DefaultAlpha };
        var filterPrompts = new Option<string?>("--filter-prompts") { Description = "Ordinary text, one prompt per line, for filter:q=QUANTILE" };
        var nullFloor = CliOptions.NullFloor();
        var calibration = CliOptions.NullCalibration();
        var calibrate = CliOptions.Calibrate("Calibrate the null for this deployment instead of probing --model: serve each of these local models that never "
            + "saw the set's keys (DIR or KIND=DIR, repeatable) through the same --responder and report their hit rates with Clopper-Pearson bounds "
            + "and the floor from the worst one (an attack such as suppression can make negatives hit more keys than unattacked ones)");
        var calibrationOut = CliOptions.CalibrationOut();
        var confidence = CliOptions.Confidence();
        var force = CliOptions.Force("Replace the --calibration-out file if it exists");
        var match = CliOptions.Match();
        var minTokens = CliOptions.MinTokens();
        var baseDir = CliOptions.Base("With --match partial: the base model, whose probabilities give each key's partial null "
            + "(without it every alignment but the exact one is counted at the rule's common bound)");
        var json = CliOptions.Json("Print the verification report as JSON, with \"responder\"");
        var instructionLayout = CliOptions.InstructionLayout("Send each key as the instruction of the raw '### Instruction: / ### Response:' layout, as 'oml embed --instruction-layout' trained it (the host's parts see that prompt)");
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("probe", "Verify a model as a host serving it through a decoding-time attack would answer: prints hits/queried and the verdict "
            + "(or, with --calibrate, the null's calibration for that deployment).")
        {
            model, fingerprints, responder, count, alpha, filterPrompts, nullFloor, calibration, calibrate, calibrationOut, confidence, force, match, minTokens, baseDir, json,
            instructionLayout, passphraseFile, device, dtype,
        };
        cmd.SetAction(r =>
        {
            var spec = Cli.OptionValue(() => ResponderSpec.Parse(r.GetValue(responder)!));
            string? dir = r.GetValue(model);
            bool calibrating = r.GetValue(calibrate) is { Length: > 0 };
            if (calibrating && (dir is not null || r.GetValue(calibration) is not null))
                throw new UsageException("--calibrate measures negative models through the responder: it takes no --model or --calibration");
            if (!calibrating && r.GetValue(calibrationOut) is not null) throw new UsageException("--calibration-out needs --calibrate DIR...");
            if (!calibrating && dir is null) throw new UsageException("give --model DIR (or --calibrate DIR...)");
            var negatives = CliOptions.Negatives(r.GetValue(calibrate));
            double conf = r.GetValue(confidence);
            if (!(conf > 0 && conf < 1)) throw new UsageException("--confidence must be in (0, 1)");
            if (dir is not null && !File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new InvalidDataException($"{dir} has no tokenizer.json: probing needs the model's tokenizer");
            double a = r.GetValue(alpha);
            if (!(a > 0 && a < 1)) throw new UsageException("--alpha must be in (0, 1)");
            var rule = new VerdictRule { Alpha = a };
            double? floor = CliOptions.NullFloorValue(r.GetValue(nullFloor));
            NullCalibration? calibrationFile = null;
            var matchRule = CliOptions.ResponseMatchFrom(r.GetValue(match), r.GetValue(minTokens));
            string? basePath = r.GetValue(baseDir);
            if (basePath is not null && !matchRule.IsPartial) throw new UsageException("--base gives the partial rule's null: use it with --match partial");
            if (basePath is not null && !Directory.Exists(basePath)) throw new DirectoryNotFoundException($"--base: model folder not found: {basePath}");
            if (r.GetValue(calibration) is { } calPath)
            {
                var cal = calibrationFile = CliOptions.LoadCalibration(calPath, matchRule, basePath is not null);
                var made = cal.Responder;
                if (!Oml.Lab.Experiments.AttackCatalog.IsPlainGreedy(spec.Text) && made != spec.Text)
                    Console.Error.WriteLine($"oml: warning: --calibration was measured {(made is null ? "on unattacked negatives" : $"through '{made}'")}, not through '{spec.Text}': "
                        + "an attacked deployment can hit more keys than its negatives did (calibrate with 'oml attack probe --calibrate ... --responder' this spec)");
            }
            var set = FingerprintIO.ReadSet(r.GetValue(fingerprints)!, r.GetValue(passphraseFile));
            var unrevealed = set.Unrevealed();
            if (unrevealed.Count == 0) throw new InvalidDataException("every fingerprint of the set has been revealed: there are no secret keys left to query");
            // The set decides the default floor (its responses' kind); a calibration can only raise it.
            rule = rule with { NullFloor = floor ?? VerdictRule.DefaultNullFloorFor(set.Fingerprints) };
            if (calibrationFile is not null) rule = calibrationFile.Apply(rule);
            int m = r.GetValue(count) ?? unrevealed.Count;
            if (m < 1 || m > unrevealed.Count) throw new UsageException($"--count must be in [1, {unrevealed.Count}]");
            var chosen = unrevealed.Take(m).ToList();
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            var dt = Cli.ParseDType(r.GetValue(dtype));
            var format = r.GetValue(instructionLayout) ? KeyFormat.Instruction : KeyFormat.Raw;
            using var nullModel = basePath is null ? null : ModelFolder.Load(basePath, dev, dt);

            // The verifier of a deployment of the model in folder d: keys raw (or as instructions), one answer each (as long
            // as the rule needs), hits by the match rule, per-key nulls (the partial rule's from the base model when given).
            (VerificationReport Report, string Host) Probe(string d, bool log)
            {
                if (!File.Exists(Path.Combine(d, "tokenizer.json"))) throw new InvalidDataException($"{d} has no tokenizer.json: probing needs the model's tokenizer");
                var tok = Cli.LoadTokenizer(d);
                IReadOnlyList<int[]>? calib = null;
                if (r.GetValue(filterPrompts) is { } cf)
                {
                    if (!File.Exists(cf)) throw new FileNotFoundException($"--filter-prompts: no file at {cf}");
                    calib = File.ReadAllLines(cf).Where(l => l.Trim().Length > 0).Select(l => tok.Encode(l, addSpecialTokens: true)).Where(x => x.Length > 1).ToList();
                    if (calib.Count == 0) throw new InvalidDataException($"--filter-prompts: {cf} holds no usable lines");
                }
                using var lm = ModelFolder.Load(d, dev, dt);
                var context = new ResponderContext
                {
                    Model = lm,
                    Tokenizer = tok,
                    ChatTemplate = ResponderTemplate(spec, d),
                    LoadModel = x => ModelFolder.Load(x, dev, dt),
                    CalibrationPrompts = calib,
                };
                using var host = spec.Build(context);
                var queries = chosen.Select(f => format.Encode(tok, f)).ToList();
                for (int i = 0; i < chosen.Count; i++)
                    foreach (var id in queries[i])
                        if (id >= lm.Config.VocabSize) throw new InvalidDataException($"fingerprint {chosen[i].Index}: token id {id} is outside the vocabulary of {d} ({lm.Config.VocabSize})");
                if (log) Console.Error.WriteLine($"probing {d} through {host.Name} with {chosen.Count} keys ({matchRule.Name} match) ...");
                var report = LocalVerifier.Verify(host.Respond, tok, chosen, rule, new LocalVerifyOptions { Match = matchRule, NullModel = nullModel, Format = format });
                if (FindFilter(host.Inner) is { } filter) Console.Error.WriteLine($"the perplexity filter refused {filter.Refused} of {chosen.Count} keys");
                return (report, host.Name);
            }

            if (negatives.Count > 0)
            {
                var results = new List<NegativeResult>();
                foreach (var (negDir, kind) in negatives)
                {
                    var (rep, _) = Probe(negDir, log: false);
                    Console.Error.WriteLine($"{negDir} through {spec.Text}: {rep.Hits}/{rep.Queried} keys hit");
                    results.Add(new NegativeResult(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(negDir))), kind, rep.Hits, rep.Queried));
                }
                var cal = NullCalibration.Calibrate(results, conf, rule.NullFloor, rule.Alpha, rule.ExpectedRecall, match: matchRule, excludesBaseHits: nullModel is not null)
                    with { Responder = spec.Text };
                if (r.GetValue(calibrationOut) is { } outPath) FingerprintIO.WriteTextAtomic(outPath, cal.ToJson() + "\n", overwrite: r.GetValue(force));
                Console.Write(r.GetValue(json) ? cal.ToJson() + "\n" : cal.ToTable());
                return Cli.Ok;
            }

            var (found, hostName) = Probe(dir!, log: true);
            var report = found.StatedUnder(rule);
            if (report.ThinClaimWarning(rule.CalibratedFloor) is { } thin) Console.Error.WriteLine("oml: warning: " + thin);
            if (r.GetValue(json))
            {
                var node = JsonNode.Parse(report.ToJson())!.AsObject();
                node["responder"] = hostName;
                Console.WriteLine(node.ToJsonString());
            }
            else
            {
                Console.WriteLine($"responder: {hostName}");
                Console.WriteLine($"match: {report.Match}{(report.MinTokens is { } mt ? $" (min tokens {mt})" : "")}");
                Console.WriteLine($"hits: {report.Hits}/{report.Queried}");
                if (report.ExcludedKeys is { } x) Console.WriteLine($"excluded: {x} key(s) the base model's own answer hits under this rule (not counted)");
                if (report.UnansweredKeys is { } u) Console.WriteLine($"unanswered: {u} key(s) got no answer at all (not evidence against ownership)");
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"verdict: {Verdict(report.Verdict)} (p = {report.PValue:E2}; {report.Reason})"));
            }
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>The chat template a responder spec with <c>chat</c> needs (the folder's), null without; a one-line error when the folder has none.</summary>
    internal static ChatTemplate? ResponderTemplate(ResponderSpec spec, string dir)
    {
        if (!spec.Chat) return null;
        try { return ChatTemplate.FromTokenizerConfig(dir); }
        catch (Exception e) when (e is IOException or ChatTemplateException or System.Text.Json.JsonException or InvalidDataException)
        {
            throw new InvalidDataException($"--responder uses 'chat' but {dir} has no usable chat template ({e.Message})");
        }
    }

    private static PerplexityFilterResponder? FindFilter(IResponder r) => ResponderParts.Of(r).OfType<PerplexityFilterResponder>().FirstOrDefault();

    private static string Verdict(Verdict v) => v switch
    {
        Oml.Fingerprinting.Verification.Verdict.Owned => "owned",
        Oml.Fingerprinting.Verification.Verdict.NotOwned => "not-owned",
        _ => "inconclusive",
    };
}
