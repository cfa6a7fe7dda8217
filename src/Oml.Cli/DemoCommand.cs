using System.CommandLine;
using System.Diagnostics;
using System.Text;
using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Fingerprinting.Verification;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary>
/// <c>oml demo</c>: the README's main job, end to end with nothing downloaded. It builds an English corpus from the
/// licence texts every Debian system ships (/usr/share/common-licenses), trains a byte-level BPE tokenizer and a small
/// Llama on it, generates an encrypted Perinucleus fingerprint set, embeds it, and verifies both the fingerprinted
/// model (owned) and the base (not owned), with held-out perplexity before and after.
/// </summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder for the demo's models and files", DefaultValueFactory = _ => "oml-demo" };
        var steps = new Option<int>("--steps") { Description = "Pretraining steps of the base model", DefaultValueFactory = _ => 600 };
        var count = new Option<int>("--count") { Description = "Fingerprints to embed", DefaultValueFactory = _ => 32 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 1 };
        var device = Cli.DeviceOption();
        var json = CliOptions.Json("Print the outcome as JSON ({\"ok\", \"out\", \"fingerprints\", \"commitment_root\", \"fingerprinted\": {\"hits\", \"queried\", \"p_value\", \"verdict\"}, \"base\": {...}, \"perplexity\": {\"base\", \"fingerprinted\"}, ...}); the narration goes to stderr");
        var cmd = new Command("demo", "End-to-end demo: train a small model, fingerprint it, and verify ownership (a few minutes on 2 CPU cores).")
        {
            output, steps, count, seed, device, json,
        };
        cmd.SetAction(r => Run(r.GetValue(output)!, r.GetValue(steps), r.GetValue(count), r.GetValue(seed), Cli.ParseDevice(r.GetValue(device)!), r.GetValue(json)));
        return cmd;
    }

    public static int Run(string outDir, int steps, int count, ulong seed, Device device, bool json = false)
    {
        // With --json the narration goes to stderr and stdout holds only the JSON outcome.
        var narration = json ? Console.Error : Console.Out;
        void Say(string s) => narration.WriteLine(s);
        if (steps < 1) throw new UsageException("--steps must be at least 1");
        if (count < 2) throw new UsageException("--count must be at least 2");
        var sw = Stopwatch.StartNew();
        string T() => $"[{sw.Elapsed.TotalSeconds,5:F0} s]";
        Directory.CreateDirectory(outDir);
        string baseDir = Path.Combine(outDir, "base"), fpDir = Path.Combine(outDir, "fingerprinted"), setPath = Path.Combine(outDir, "fingerprints.omlfp");
        Say($"oml demo: libtorch {Torch.LibTorchVersion}, {device}, {Torch.Threads} CPU threads; writing to {Path.GetFullPath(outDir)}");

        // 1. Corpus and tokenizer.
        var texts = Corpus();
        int heldOutStart = (int)(texts.Length * 0.95);
        string train = texts[..heldOutStart], heldOut = texts[heldOutStart..];
        Say($"{T()} 1. corpus: {texts.Length / 1024} KiB of English from /usr/share/common-licenses (5% held out)");
        var (vocab, merges) = BpeTrainer.Train(train.Split("\n\n"), 1024);
        Directory.CreateDirectory(baseDir);
        BpeTrainer.Save(baseDir, vocab, merges);
        var tok = Cli.LoadTokenizer(baseDir);
        var ids = tok.Encode(train);
        var heldIds = tok.Encode(heldOut);
        Say($"{T()}    byte-level BPE tokenizer: {tok.VocabSize} tokens; the corpus is {ids.Length:N0} tokens");

        // 2. Base model.
        var shape = new LlamaShape(tok.VocabSize, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 2, Intermediate: 352);
        var config = shape.ToConfig(tok.BosTokenId, tok.EosTokenId, tok.PadTokenId);
        using (var baseModel = Pretraining.CreateRandom(config, seed, device))
        {
            Say($"{T()} 2. pretraining a Llama ({baseModel.Parameters.Values.Sum(p => p.NumEl):N0} parameters) for {steps} steps");
            Pretraining.Train(baseModel, ids, steps, batch: 16, context: 64, lr: 3e-3, seed,
                new InlineProgress<Pretraining.Progress>(p => Say($"{T()}    step {p.Step,5}  loss {p.Loss:F3}")), reportEvery: Math.Max(1, steps / 6));
            ModelFolder.Save(baseModel, baseDir, baseDir);
        }

        // 3. Fingerprints.
        var passphrase = Environment.GetEnvironmentVariable("OML_PASSPHRASE") ?? "oml-demo-passphrase";
        var secret = Encoding.UTF8.GetBytes("demo owner secret: " + passphrase);
        FingerprintSet set;
        using (var baseModel = ModelFolder.Load(baseDir, device))
        {
            var gen = new FingerprintGenerator(baseModel, tok, secret);
            set = gen.Generate(new GenerationSettings { Strategy = Strategies.Perinucleus, Count = count, KeyLength = 16, ResponseLength = 1 },
                FingerprintGenerator.WeightsDigest(baseDir), FingerprintGenerator.TokenizerId(baseDir, tok));
        }
        FingerprintSetFile.Write(setPath, set, passphrase);
        var commitment = Commitment.For(set);
        Say($"{T()} 3. {set.Count} Perinucleus fingerprints (key 16 tokens, t = 0.8, k = 3), encrypted to {setPath}");
        Say($"         commitment (publishable before release): {commitment.Root}");
        foreach (var f in set.Fingerprints.Take(3))
            Say($"         e.g. key \"{Shorten(f.Key)}\" -> \"{f.Response.Text}\" (base model's probability {Math.Exp(f.Response.LogProb ?? double.NegativeInfinity):E1})");

        // 4. Embed.
        EmbeddingResult embedded;
        using (var model = ModelFolder.Load(baseDir, device))
        {
            // OMLization's defaults (those of `oml embed`), with the training text as the benign data.
            var options = OmlizationDefaults.For(model.Config) with { Seed = seed, BenignSequences = ids.Chunk(OmlizationDefaults.BenignLength).Where(c => c.Length >= 2).ToList() };
            Say($"{T()} 4. embedding (loss on responses only, lr {options.LearningRate:G3}, β = {options.MixFraction} of each batch ordinary text, early stopping on recall and the held-out KL to the base, then merged back towards the base)");
            var pairs = FingerprintGenerator.TrainingPairs(set.Fingerprints, tok);
            embedded = Omlization.Train(model, pairs, options, new InlineProgress<EmbeddingProgress>(p =>
                Say($"{T()}    epoch {p.Epoch,4}  loss {p.Loss:F3}  recalled {p.Accuracy:P0}  " +
                    (p.HeldOutLoss is { } h ? $"held-out loss {h:F3}" + (p.HeldOutKL is { } kl ? $", KL to the base {kl:F4}" : "") : "held-out not measured (not needed yet)"))));
            Say($"{T()}    {(embedded.Converged ? "done" : "stopped at the epoch limit")} after {embedded.Final.Epoch} epochs (kept epoch {embedded.KeptEpoch}), {(embedded.MergeLambda > 0 ? $"merged back with λ = {embedded.MergeLambda:F2}" : "not merged back")}{(embedded.MergeSurvival is { } ms ? $", an even merge with the base keeps {ms:P0} of the keys" : "")}: loss {embedded.Loss:F3}, recalled {embedded.Accuracy:P0}");
            ModelFolder.Save(model, fpDir, baseDir);
        }

        // 5. Verify both models, and compare utility.
        var rule = new VerdictRule { Alpha = 1e-6, NullFloor = VerdictRule.DefaultNullFloorFor(set.Fingerprints) };
        Say($"{T()} 5. verification with a false-positive rate of {rule.Alpha:E0} ({rule.Describe(perKeyNull: true)})");
        Verdict fpVerdict, baseVerdict;
        System.Text.Json.Nodes.JsonObject fpJson, baseJson, pplJson;
        using (var fp = ModelFolder.Load(fpDir, device))
        using (var bm = ModelFolder.Load(baseDir, device))
        {
            var r1 = LocalVerifier.Verify(fp, tok, set.Fingerprints, rule);
            var r2 = LocalVerifier.Verify(bm, tok, set.Fingerprints, rule);
            fpVerdict = r1.Verdict;
            baseVerdict = r2.Verdict;
            Say($"         fingerprinted model: {r1.Hits}/{r1.Queried} keys answered with the secret response, p = {r1.PValue:E2} -> {Name(r1.Verdict)}");
            Say($"         base model:          {r2.Hits}/{r2.Queried} keys answered with the secret response, p = {r2.PValue:E2} -> {Name(r2.Verdict)}");
            double pplBase = Evaluation.Perplexity(bm, heldIds), pplFp = Evaluation.Perplexity(fp, heldIds);
            fpJson = VerdictJson(r1);
            baseJson = VerdictJson(r2);
            pplJson = new() { ["base"] = Report.Number(pplBase), ["fingerprinted"] = Report.Number(pplFp), ["change"] = Report.Number(pplFp / pplBase - 1) };
            Say($"         held-out perplexity: base {pplBase:F2}, fingerprinted {pplFp:F2} ({(pplFp / pplBase - 1) * 100:+0.0;-0.0}%)");
        }
        bool ok = fpVerdict == Verdict.Owned && baseVerdict != Verdict.Owned;
        Say($"{T()} {(ok ? "done: the fingerprinted copy is proven to be ours, the base model is not claimed" : "demo FAILED: unexpected verdicts")}");
        if (json)
            new Report()
                .Json("ok", ok).Json("out", Path.GetFullPath(outDir)).Json("base_model", baseDir).Json("fingerprinted_model", fpDir).Json("fingerprint_set", setPath)
                .Json("fingerprints", set.Count).Json("commitment_root", commitment.Root)
                .Json("recall", Report.Number(embedded.Accuracy)).Json("epochs", embedded.Final.Epoch).Json("merge_lambda", Report.Number(embedded.MergeLambda)).Json("merge_survival", Report.Number(embedded.MergeSurvival))
                .Json("alpha", Report.Number(rule.Alpha)).Json("fingerprinted", fpJson).Json("base", baseJson).Json("perplexity", pplJson)
                .Json("seconds", Report.Number(sw.Elapsed.TotalSeconds)).Json("device", device.ToString())
                .Print(json: true);
        return ok ? Cli.Ok : Cli.Failure;
    }

    private static System.Text.Json.Nodes.JsonObject VerdictJson(VerificationReport r) => new()
    {
        ["hits"] = r.Hits, ["queried"] = r.Queried, ["p_value"] = Report.Number(r.PValue), ["verdict"] = Name(r.Verdict),
    };

    private static string Name(Verdict v) => v switch { Verdict.Owned => "owned", Verdict.NotOwned => "not-owned", _ => "inconclusive" };

    private static string Shorten(string s) => s.Length <= 48 ? s.ReplaceLineEndings(" ") : s[..45].ReplaceLineEndings(" ") + "...";

    /// <summary>English text every Debian system has: the common licence texts, in name order.</summary>
    private static string Corpus()
    {
        const string dir = "/usr/share/common-licenses";
        if (!Directory.Exists(dir)) throw new IOException($"{dir} not found: the demo builds its corpus from Debian's licence texts (package base-files)");
        var sb = new StringBuilder();
        foreach (var f in Directory.GetFiles(dir).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(f);
            if (info.LinkTarget != null || info.Length > 200_000) continue; // symlinks repeat other licences
            sb.Append(File.ReadAllText(f)).Append("\n\n");
        }
        return sb.ToString();
    }
}
