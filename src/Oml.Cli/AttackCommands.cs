using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary>
/// <c>oml attack merge|quantize|prune|sft|distill</c> write an attacked model folder; <c>oml attack probe</c> verifies a
/// model served through a decoding-time attack (a responder spec) and prints hits/queried and the verdict.
/// </summary>
public static class AttackCommands
{
    public static Command Create() => new("attack", "Attack a fingerprinted model (the evaluation lab's attacks; see docs/attacks.md).")
    {
        Merge(), Quantize(), Prune(), Probe(),
    };

    private static Option<string> ModelOption(string description = "The fingerprinted model folder") => new("--model") { Description = description, Required = true };

    private static Option<string> OutOption() => new("--out") { Description = "Folder to write the attacked model to (created if needed)", Required = true };

    private static IProgress<string> Progress() => new InlineProgress<string>(s => Console.Error.WriteLine(s));

    /// <summary>Refuses to write over an input folder (the attacked model would replace the evidence).</summary>
    private static void CheckOut(string outDir, params string?[] inputs)
    {
        var full = Path.GetFullPath(outDir).TrimEnd(Path.DirectorySeparatorChar);
        foreach (var i in inputs)
            if (i is not null && string.Equals(Path.GetFullPath(i).TrimEnd(Path.DirectorySeparatorChar), full, StringComparison.Ordinal))
                throw new ArgumentException($"--out {outDir} is an input folder; write the attacked model somewhere else");
    }

    private static void Save(CausalLM attacked, string outDir, string sourceDir)
    {
        ModelFolder.Save(attacked, outDir, sourceDir);
        Console.Error.WriteLine($"wrote {outDir}");
    }

    private static Command Merge()
    {
        var model = ModelOption("The fingerprinted model folder (θ_A, or one of the task-vector models)");
        var with = new Option<string[]>("--with") { Description = "Sibling model folder(s) of the same shape (repeat the option for several)", Required = true, AllowMultipleArgumentsPerToken = true };
        var method = new Option<string>("--method") { Description = "linear, slerp, task-arithmetic or ties", DefaultValueFactory = _ => "linear" };
        var baseModel = new Option<string?>("--base") { Description = "The common base model (task-arithmetic and ties)" };
        var weight = new Option<double>("--weight") { Description = "linear/slerp: the sibling's share a in [0, 1]", DefaultValueFactory = _ => 0.5 };
        var weights = new Option<string?>("--weights") { Description = "task-arithmetic/ties: comma-separated w_k for the model then each sibling (default all 1)" };
        var density = new Option<double>("--density") { Description = "ties: fraction of each task vector kept", DefaultValueFactory = _ => 0.5 };
        var lambda = new Option<double>("--lambda") { Description = "task-arithmetic/ties: scale of the merged task vector", DefaultValueFactory = _ => 1.0 };
        var output = OutOption();
        var device = Cli.DeviceOption();
        var cmd = new Command("merge", "Merge the model with sibling models of the same shape (linear, SLERP, task arithmetic, TIES).")
        {
            model, with, method, baseModel, weight, weights, density, lambda, output, device,
        };
        cmd.SetAction(r =>
        {
            var m = r.GetValue(method)!.ToLowerInvariant() switch
            {
                "linear" => MergeMethod.Linear,
                "slerp" => MergeMethod.Slerp,
                "task-arithmetic" or "task_arithmetic" => MergeMethod.TaskArithmetic,
                "ties" => MergeMethod.Ties,
                var other => throw new ArgumentException($"--method: unknown merge method '{other}' (linear, slerp, task-arithmetic, ties)"),
            };
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            var others = r.GetValue(with) ?? [];
            string? baseDir = r.GetValue(baseModel);
            CheckOut(outDir, [dir, baseDir, .. others]);
            if (m is MergeMethod.Linear or MergeMethod.Slerp && baseDir is not null) throw new ArgumentException($"--base is for task-arithmetic and ties, not {r.GetValue(method)}");
            double[]? w = r.GetValue(weights) is { } ws ? ParseList(ws, "--weights") : null;
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            var loaded = new List<CausalLM>();
            try
            {
                var lm = Load(dir, dev, loaded);
                var siblings = others.Select(o => Load(o, dev, loaded)).ToList();
                var b = baseDir is null ? null : Load(baseDir, dev, loaded);
                var attack = new MergeAttack(m, siblings, b, r.GetValue(weight), w, r.GetValue(density), r.GetValue(lambda));
                using var merged = attack.Apply(lm, Progress());
                Save(merged, outDir, dir);
            }
            finally
            {
                foreach (var l in loaded) l.Dispose();
            }
            return Cli.Ok;
        });
        return cmd;
    }

    private static CausalLM Load(string dir, Device dev, List<CausalLM> loaded)
    {
        var m = ModelFolder.Load(dir, dev);
        loaded.Add(m);
        return m;
    }

    private static double[] ParseList(string s, string option) => s.Split(',').Select(x =>
        double.TryParse(x.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
            : throw new ArgumentException($"{option}: '{x}' is not a number")).ToArray();

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
        var device = Cli.DeviceOption();
        var cmd = new Command("quantize", "Quantize the weights group-wise to int8/int4 and back (the values a weight-only quantized deployment computes with).")
        {
            model, bits, symmetric, group, embeddings, norms, output, device,
        };
        cmd.SetAction(r =>
        {
            var scheme = (r.GetValue(bits), r.GetValue(symmetric)) switch
            {
                (8, _) => QuantizationScheme.Int8Symmetric,
                (4, false) => QuantizationScheme.Int4Asymmetric,
                (4, true) => QuantizationScheme.Int4Symmetric,
                var (b, _) => throw new ArgumentException($"--bits must be 8 or 4, not {b}"),
            };
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            CheckOut(outDir, dir);
            var attack = new QuantizeAttack(scheme, r.GetValue(group), Kinds(r.GetValue(embeddings), r.GetValue(norms)));
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!));
            using var q = attack.Apply(lm, Progress());
            Save(q, outDir, dir);
            var worst = attack.Errors.MaxBy(e => e.MeanSquaredError);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{attack.Name}: {attack.Errors.Count} tensors, mean MSE {attack.Errors.Average(e => e.MeanSquaredError):E3}, worst {worst?.Name} ({worst?.MeanSquaredError:E3})"));
            return Cli.Ok;
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
        var device = Cli.DeviceOption();
        var cmd = new Command("prune", "Unstructured magnitude pruning of the linear weights.") { model, fraction, global, embeddings, output, device };
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(model)!, outDir = r.GetValue(output)!;
            CheckOut(outDir, dir);
            var attack = new PruneAttack(r.GetValue(fraction), r.GetValue(global), Kinds(r.GetValue(embeddings), false));
            using var lm = ModelFolder.Load(dir, Cli.ParseDevice(r.GetValue(device)!));
            using var p = attack.Apply(lm, Progress());
            Save(p, outDir, dir);
            Console.WriteLine($"{attack.Name}: done");
            return Cli.Ok;
        });
        return cmd;
    }

    private static Command Probe()
    {
        var model = ModelOption("The (attacked) model folder the host serves; its tokenizer.json builds the queries");
        var fingerprints = new Option<string>("--fingerprints") { Description = "The fingerprint-set file", Required = true };
        var responder = new Option<string>("--responder") { Description = "How the host answers: a responder spec (greedy, sample:t=0.7,top_p=0.9, suppress:k=1,m=3,threshold=0.5, filter:ppl=..., system:\"...\", chat, coalition:majority:M1,M2,M3; join parts with '+')", DefaultValueFactory = _ => "greedy" };
        var count = new Option<int?>("--count") { Description = "Query the first M unrevealed fingerprints (default: all unrevealed)" };
        var alpha = new Option<double>("--alpha") { Description = "False-positive rate of the verdict", DefaultValueFactory = _ => VerdictRule.DefaultAlpha };
        var calibration = new Option<string?>("--calibration") { Description = "Ordinary text, one prompt per line, for filter:q=QUANTILE" };
        var json = new Option<bool>("--json") { Description = "Print the verification report as JSON, with \"responder\"" };
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var device = Cli.DeviceOption();
        var cmd = new Command("probe", "Verify a model as a host serving it through a decoding-time attack would answer: prints hits/queried and the verdict.")
        {
            model, fingerprints, responder, count, alpha, calibration, json, passphraseFile, device,
        };
        cmd.SetAction(r =>
        {
            var spec = ResponderSpec.Parse(r.GetValue(responder)!);
            string dir = r.GetValue(model)!;
            if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new ArgumentException($"{dir} has no tokenizer.json: probing needs the model's tokenizer");
            double a = r.GetValue(alpha);
            if (!(a > 0 && a < 1)) throw new ArgumentException("--alpha must be in (0, 1)");
            var rule = new VerdictRule { Alpha = a };
            var set = FingerprintIO.ReadSet(r.GetValue(fingerprints)!, r.GetValue(passphraseFile));
            var unrevealed = set.Unrevealed();
            if (unrevealed.Count == 0) throw new ArgumentException("every fingerprint of the set has been revealed: there are no secret keys left to query");
            int m = r.GetValue(count) ?? unrevealed.Count;
            if (m < 1 || m > unrevealed.Count) throw new ArgumentException($"--count must be in [1, {unrevealed.Count}]");
            var chosen = unrevealed.Take(m).ToList();
            var tok = Tokenizer.FromFolder(dir);
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            IReadOnlyList<int[]>? calib = null;
            if (r.GetValue(calibration) is { } cf)
            {
                if (!File.Exists(cf)) throw new ArgumentException($"--calibration: no file at {cf}");
                calib = File.ReadAllLines(cf).Where(l => l.Trim().Length > 0).Select(l => tok.Encode(l, addSpecialTokens: true)).Where(x => x.Length > 1).ToList();
                if (calib.Count == 0) throw new ArgumentException($"--calibration: {cf} holds no usable lines");
            }
            using var lm = ModelFolder.Load(dir, dev);
            ChatTemplate? template = null;
            if (spec.Chat)
            {
                try { template = ChatTemplate.FromTokenizerConfig(dir); }
                catch (Exception e) when (e is IOException or ChatTemplateException or System.Text.Json.JsonException or InvalidDataException)
                {
                    throw new ArgumentException($"--responder uses 'chat' but {dir} has no usable chat template ({e.Message})");
                }
            }
            var context = new ResponderContext
            {
                Model = lm,
                Tokenizer = tok,
                ChatTemplate = template,
                LoadModel = d => ModelFolder.Load(d, dev),
                CalibrationPrompts = calib,
            };
            using var host = spec.Build(context);
            var queries = chosen.Select(f => KeyFormat.Raw.Encode(tok, f)).ToList();
            for (int i = 0; i < chosen.Count; i++)
                foreach (var id in queries[i])
                    if (id >= lm.Config.VocabSize) throw new ArgumentException($"fingerprint {chosen[i].Index}: token id {id} is outside the model's vocabulary of {lm.Config.VocabSize}");
            int maxLen = chosen.Max(f => f.Responses.Max(x => x.TokenIds.Count));
            Console.Error.WriteLine($"probing {dir} through {host.Name} with {chosen.Count} keys ...");
            var answers = host.Respond(queries, maxLen);
            var rows = chosen.Select((f, i) => new KeyResult(f.Index, f.Key, f.Responses.Select(x => x.Text).ToList(), tok.Decode(answers[i]),
                answers[i].Length > 0 && ResponseMatcher.IsTokenMatchAny(f.Responses.Select(x => x.TokenIds.ToArray()), answers[i]),
                VerifyCommand.NullProbability(f, rule, 1, 1))).ToList();
            var report = VerificationReport.Create(rule, rows);
            if (FindFilter(host.Inner) is { } filter) Console.Error.WriteLine($"the perplexity filter refused {filter.Refused} of {chosen.Count} keys");
            if (r.GetValue(json))
            {
                var node = JsonNode.Parse(report.ToJson())!.AsObject();
                node["responder"] = host.Name;
                Console.WriteLine(node.ToJsonString());
            }
            else
            {
                Console.WriteLine($"responder: {host.Name}");
                Console.WriteLine($"hits: {report.Hits}/{report.Queried}");
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"verdict: {Verdict(report.Verdict)} (p = {report.PValue:E2}; {report.Reason})"));
            }
            return Cli.Ok;
        });
        return cmd;
    }

    private static PerplexityFilterResponder? FindFilter(IResponder r) => r as PerplexityFilterResponder;

    private static string Verdict(Verdict v) => v switch
    {
        Oml.Fingerprinting.Verification.Verdict.Owned => "owned",
        Oml.Fingerprinting.Verification.Verdict.NotOwned => "not-owned",
        _ => "inconclusive",
    };
}
