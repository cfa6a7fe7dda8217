using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>oml attack ...</c> on the llama-tiny fixture with the small BPE tokenizer of <see cref="FingerprintCliTests"/>.
/// The probe uses a set whose responses are the model's own greedy answers (so a faithful host hits every key).
/// </summary>
[Collection(nameof(CliTests))]
public class AttackCliTests(AttackCliTests.Workspace workspace) : IClassFixture<AttackCliTests.Workspace>
{
    private Workspace W => workspace;

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    public sealed class Workspace : IDisposable
    {
        public readonly string Root = Directory.CreateTempSubdirectory("oml-cli-attack-").FullName;
        public string Model => Path.Combine(Root, "base");
        public string PassFile => Path.Combine(Root, "pass.txt");
        public string Set => Path.Combine(Root, "set.omlfp");
        public string Memorised => Path.Combine(Root, "memorised.omlfp");
        /// <summary>Responses that a host suppressing the first token still ends with: (the greedy first token, then the suppressed answer's tail).</summary>
        public string Resumed => Path.Combine(Root, "resumed.omlfp");

        public Workspace()
        {
            string root = Root;
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) { root = d.FullName; break; }
            var fixture = Path.Combine(root, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
            Directory.CreateDirectory(Model);
            foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
                File.Copy(Path.Combine(fixture, f), Path.Combine(Model, f));
            File.WriteAllText(Path.Combine(Model, "tokenizer.json"), FingerprintCliTests.TinyTokenizerJson());
            File.WriteAllText(PassFile, "correct horse battery staple\n");
            // A fixed owner's secret: the same keys on every run, so what the tests read off this random-init model (its
            // answers, the base's null of a key) does not change from one run to the next.
            string secret = Path.Combine(Root, "secret.bin");
            File.WriteAllBytes(secret, Enumerable.Range(1, FingerprintSetFile.OwnerSecretLength).Select(i => (byte)(7 * i)).ToArray());
            var r = Run("fingerprints", "generate", "--model", Model, "--strategy", "random-word", "--random-word-keys", "--count", "6",
                "--out", Set, "--passphrase-file", PassFile, "--kdf-iterations", "1000", "--insecure-kdf", "--secret-file", secret);
            if (r.Code != 0) throw new InvalidOperationException($"generate failed: {r.Err}");

            // Responses = the base model's greedy answers: a memorised set for this model.
            var set = FingerprintSetFile.Read(Set, "correct horse battery staple");
            var tok = Tokenizer.FromFolder(Model);
            using var lm = ModelFolder.Load(Model);
            var fps = set.Fingerprints.Select(f =>
            {
                var answer = Generator.Generate(lm, [KeyFormat.Raw.Encode(tok, f)], new GenerationOptions { MaxNewTokens = 4 }).Sequences[0].OutputIds;
                return f with { Responses = new[] { new FingerprintResponse(tok.Decode(answer), answer) } };
            });
            FingerprintSetFile.WritePlaintext(Memorised, set with { Fingerprints = new EquatableArray<Fingerprint>(fps) });

            // The model answers each key with g0 g1 g2 g3 greedily and, with its top first token forbidden, s0 s1 s2 s3
            // (s0 != g0). A response g0 s1 s2 s3 is then missed by the exact rule under suppression, while its last three
            // tokens follow a one-token deviation: the partial rule with m = 3 counts it.
            var suppress = new Oml.Lab.Attacks.FirstTokenSuppression(1, 1).Responder(lm, new GenerationOptions());
            var resumed = set.Fingerprints.Select(f =>
            {
                var q = KeyFormat.Raw.Encode(tok, f);
                var g = Generator.Generate(lm, [q], new GenerationOptions { MaxNewTokens = 4 }).Sequences[0].OutputIds;
                var sup = suppress.Respond([q], 4)[0];
                int[] response = sup.Length == 4 && g.Length > 0 ? [g[0], .. sup[1..]] : g;
                return f with { Responses = new[] { new FingerprintResponse(tok.Decode(response), response, -30) } };
            });
            FingerprintSetFile.WritePlaintext(Resumed, set with { Fingerprints = new EquatableArray<Fingerprint>(resumed) });
        }

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static float[] Values(CausalLM m, string name)
    {
        using var t = m.Parameters[name].To(DType.Float32);
        return t.ToArray<float>();
    }

    [Fact]
    public void Prune_writes_a_model_with_the_asked_sparsity()
    {
        var outDir = Path.Combine(W.Root, "pruned");
        var r = Run("attack", "prune", "--model", W.Model, "--out", outDir, "--fraction", "0.5");
        Assert.True(r.Code == 0, r.Err);
        using var p = ModelFolder.Load(outDir);
        var v = Values(p, "model.layers.1.mlp.down_proj.weight");
        Assert.Equal(v.Length / 2, v.Count(x => x == 0));
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        Assert.Equal(2, Run("attack", "prune", "--model", W.Model, "--out", W.Model, "--fraction", "0.5").Code);
        Assert.Equal(2, Run("attack", "prune", "--model", W.Model, "--out", outDir, "--fraction", "0.95", "--force").Code);
    }

    [Fact]
    public void Attacks_load_the_model_in_the_asked_dtype()
    {
        var outDir = Path.Combine(W.Root, "pruned-bf16");
        var r = Run("attack", "prune", "--model", W.Model, "--out", outDir, "--fraction", "0.5", "--dtype", "bfloat16", "--device", "cpu");
        Assert.True(r.Code == 0, r.Err);
        using (var p = ModelFolder.Load(outDir)) Assert.Equal(DType.BFloat16, p.DType);
        var bad = Run("attack", "quantize", "--model", W.Model, "--out", Path.Combine(W.Root, "q-int"), "--dtype", "int64");
        Assert.Equal(2, bad.Code);
        Assert.Contains("--dtype", bad.Err);
    }

    [Fact]
    public void Quantize_writes_a_round_tripped_model_and_reports_the_error()
    {
        var outDir = Path.Combine(W.Root, "int4");
        var r = Run("attack", "quantize", "--model", W.Model, "--out", outDir, "--bits", "4", "--group-size", "32");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("quantize(int4,g=32): 14 tensors", r.Out);
        using var q = ModelFolder.Load(outDir);
        var v = Values(q, "model.layers.0.self_attn.q_proj.weight");
        Assert.True(v.Take(32).Distinct().Count() <= 16);
        var bad = Run("attack", "quantize", "--model", W.Model, "--out", outDir, "--bits", "3", "--force");
        Assert.Equal(2, bad.Code);
        Assert.Contains("--bits must be 8 or 4", bad.Err);
    }

    [Fact]
    public void Merge_at_weight_1_gives_the_sibling_and_refuses_a_missing_base()
    {
        var sibling = Path.Combine(W.Root, "sibling");
        Assert.Equal(0, Run("attack", "prune", "--model", W.Model, "--out", sibling, "--fraction", "0.2").Code);
        var outDir = Path.Combine(W.Root, "merged");
        var r = Run("attack", "merge", "--model", W.Model, "--with", sibling, "--weight", "1", "--out", outDir);
        Assert.True(r.Code == 0, r.Err);
        using (var m = ModelFolder.Load(outDir))
        using (var s = ModelFolder.Load(sibling))
            Assert.Equal(Values(s, "model.layers.0.mlp.up_proj.weight"), Values(m, "model.layers.0.mlp.up_proj.weight"));
        r = Run("attack", "merge", "--model", W.Model, "--with", sibling, "--method", "ties", "--out", outDir, "--force");
        Assert.Equal(2, r.Code);
        Assert.Contains("needs the base model", r.Err);
        r = Run("attack", "merge", "--model", W.Model, "--with", sibling, "--method", "ties", "--base", W.Model, "--density", "0.3", "--out", outDir, "--force", "--json");
        Assert.True(r.Code == 0, r.Err);
        var json = Assert.IsType<JsonObject>(JsonNode.Parse(r.Out));
        Assert.StartsWith("merge", json["attack"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(outDir, json["out"]!.GetValue<string>());
    }

    [Fact]
    public void Detect_json_matches_its_text()
    {
        var heldout = Path.Combine(W.Root, "heldout.txt");
        File.WriteAllText(heldout, string.Join(" ", Enumerable.Repeat("the river and the stone and the apple in the garden by the ocean", 40)));
        string[] args = ["attack", "detect", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--heldout", heldout];
        var text = Run(args);
        Assert.True(text.Code == 0, text.Err);
        var r = Run([.. args, "--json"]);
        Assert.True(r.Code == 0, r.Err);
        var json = Assert.IsType<JsonObject>(JsonNode.Parse(r.Out));
        Assert.Contains($"keys: {json["keys"]!.GetValue<int>()} ", text.Out, StringComparison.Ordinal);
        Assert.Contains(FormattableString.Invariant($"detector AUC: {json["detector_auc"]!.GetValue<double>():F3}"), text.Out, StringComparison.Ordinal);
        Assert.Contains(FormattableString.Invariant($"key perplexity: {json["key_perplexity"]!.GetValue<double>():G4}"), text.Out, StringComparison.Ordinal);
        // The filter budget: for each refused share, removing more from both sides than from either alone, never less.
        var budget = Assert.IsType<JsonArray>(json["filter_budget"]);
        Assert.Equal([0.01, 0.02, 0.05], budget.Select(b => b!["refused"]!.GetValue<double>()));
        foreach (var b in budget)
        {
            double lo = b!["keys_removed_low"]!.GetValue<double>(), hi = b["keys_removed_high"]!.GetValue<double>(), both = b["keys_removed_both"]!.GetValue<double>();
            Assert.InRange(both, Math.Max(lo, hi), Math.Min(1, lo + hi));
        }
        Assert.Contains("keys the best threshold filter removes: 1 % refused:", text.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Detect_scores_keys_against_instruction_prompts_and_needs_one_source()
    {
        string[] args = ["attack", "detect", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile];
        var r = Run([.. args, "--instructions", InstructionFile(), "--json"]);
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out)!;
        Assert.Equal(6, (int)json["ordinary"]!); // one user message per record
        Assert.InRange((double)json["detector_auc"]!, 0, 1);
        // The whole raw-format prompt (headers included) is scored otherwise: another perplexity of the same six records.
        var prompt = JsonNode.Parse(Run([.. args, "--instructions", InstructionFile(), "--instruction-text", "prompt", "--json"]).Out)!;
        Assert.Equal(6, (int)prompt["ordinary"]!);
        Assert.NotEqual((double)json["text_perplexity"]!, (double)prompt["text_perplexity"]!);
        Assert.Equal(2, Run([.. args, "--instructions", InstructionFile(), "--instruction-text", "system"]).Code);
        var none = Run(args);
        Assert.Equal(2, none.Code);
        Assert.Contains("give exactly one of --heldout TEXT and --instructions RECORDS", none.Err);
        var missing = Run([.. args, "--instructions", Path.Combine(W.Root, "no-such.json")]);
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("--instructions: no file at", missing.Err);
    }

    [Fact]
    public void Probe_counts_hits_through_a_responder_and_suppression_removes_them()
    {
        var r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--responder", "greedy", "--alpha", "1e-3");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("hits: 6/6", r.Out);
        Assert.Contains("verdict: owned", r.Out);
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--responder", "suppress:k=1,m=1", "--json");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out)!;
        Assert.Equal(0, (int)json["hits"]!);
        Assert.Equal(6, (int)json["queried"]!);
        Assert.StartsWith("suppress(k=1,m=1,always)", (string)json["responder"]!);
        // A low-perplexity filter that refuses every prompt: no key is answered, and the report says so.
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--responder", "filter:ppl=1e9,side=low");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("hits: 0/6", r.Out);
        Assert.Contains("unanswered: 6 key(s)", r.Out);
        Assert.Contains("the perplexity filter refused 6 of 6 keys", r.Err);
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--responder", "sample:t=0.7,seed=1", "--count", "3");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("/3", r.Out);
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--responder", "sample:top_p=0.9");
        Assert.Equal(2, r.Code);
        Assert.Contains("sampling needs t=TEMPERATURE", r.Err);
    }

    [Fact]
    public void Probe_calibrates_the_null_on_negatives_served_through_the_same_responder()
    {
        // The base answers every memorised key greedily, none once its top token is suppressed: a calibration says which
        // deployment its negatives answered through, and a verdict through another one is warned about.
        string cal = Path.Combine(W.Root, "cal-suppress.json");
        var r = Run("attack", "probe", "--fingerprints", W.Memorised, "--responder", "suppress:k=1,m=1", "--calibrate", $"base={W.Model}",
            "--calibration-out", cal, "--force", "--json");
        Assert.True(r.Code == 0, r.Err);
        var j = JsonNode.Parse(r.Out)!;
        Assert.Equal("suppress:k=1,m=1", (string)j["responder"]!);
        Assert.Equal((0, 6), ((int)j["negatives"]![0]!["hits"]!, (int)j["negatives"]![0]!["queried"]!));
        Assert.True((double)j["floor"]! > 0.3, $"{j["floor"]}");   // 0 of 6: the Clopper-Pearson upper bound is wide
        Assert.Equal(File.ReadAllText(cal).Trim(), r.Out.Trim());
        r = Run("attack", "probe", "--fingerprints", W.Memorised, "--responder", "suppress:k=1,m=1", "--calibrate", $"base={W.Model}");
        Assert.Contains("served through:  suppress:k=1,m=1", r.Out);
        // Greedy, the same negative hits all 6: no number of keys would be evidence, a clear error and no file.
        string none = Path.Combine(W.Root, "cal-greedy.json");
        r = Run("attack", "probe", "--fingerprints", W.Memorised, "--calibrate", $"base={W.Model}", "--calibration-out", none);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("oml: error:", r.Err);
        Assert.False(File.Exists(none));
        // Used with the deployment it was made for: no warning; with another (or one made on unattacked negatives): a warning.
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--responder", "suppress:k=1,m=1", "--calibration", cal);
        Assert.True(r.Code == 0, r.Err);
        Assert.DoesNotContain("warning", r.Err);
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--responder", "suppress:k=2,m=1", "--calibration", cal);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("--calibration was measured through 'suppress:k=1,m=1', not through 'suppress:k=2,m=1'", r.Err);
        string plain = Path.Combine(W.Root, "cal-verify.json");
        Assert.Equal(0, Run("verify", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--calibrate", $"base={W.Model}", "--calibration-out", plain, "--force").Code);
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--responder", "suppress:k=1,m=1", "--calibration", plain);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("--calibration was measured on unattacked negatives", r.Err);
        // Usage errors: --calibrate takes no suspect; --calibration-out needs --calibrate; one of them is needed.
        Assert.Equal(2, Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--calibrate", W.Model).Code);
        Assert.Equal(2, Run("attack", "probe", "--model", W.Model, "--fingerprints", W.Memorised, "--calibration-out", none).Code);
        r = Run("attack", "probe", "--fingerprints", W.Memorised);
        Assert.Equal(2, r.Code);
        Assert.Contains("give --model DIR (or --calibrate DIR...)", r.Err);
    }

    [Fact]
    public void Probe_counts_partial_matches_after_a_suppressed_first_token_with_the_bases_null()
    {
        string[] common = ["attack", "probe", "--model", W.Model, "--fingerprints", W.Resumed, "--responder", "suppress:k=1,m=1"];
        var exact = Run([.. common, "--json"]);
        Assert.True(exact.Code == 0, exact.Err);
        var j = JsonNode.Parse(exact.Out)!;
        Assert.Equal(0, (int)j["hits"]!);
        Assert.Equal("exact", (string)j["match"]!);
        // The partial rule with the base's null: every counted key hit. A key whose response the base's own greedy answer
        // already matches (its continuation after g0 is the same as after s0) is left out of the verdict: it proves nothing.
        var partial = Run([.. common, "--match", "partial", "--min-tokens", "3", "--base", W.Model, "--json"]);
        Assert.True(partial.Code == 0, partial.Err);
        j = JsonNode.Parse(partial.Out)!;
        int excluded = (int?)j["excluded_keys"] ?? 0;
        Assert.True(excluded < 6, $"{excluded} of 6 keys excluded");
        Assert.Equal(excluded, j["keys"]!.AsArray().Count(k => (bool?)k!["excluded"] == true));
        Assert.Equal(6 - excluded, (int)j["hits"]!);
        Assert.Equal(6 - excluded, (int)j["queried"]!);
        Assert.Equal("partial", (string)j["match"]!);
        Assert.Equal(3, (int)j["min_tokens"]!);
        // The p-value says owned, but without a floor calibrated on models near the base the partial rule does not claim it
        // (near-base models hit partial matches far above the base's null: docs/verification.md, "Calibration").
        Assert.True((double)j["p_value"]! <= (double)j["alpha"]!, $"p = {j["p_value"]}");
        Assert.Equal("inconclusive", (string)j["verdict"]!);
        Assert.Contains("calibrated on models near the base", (string)j["reason"]!, StringComparison.Ordinal);
        double uncalibratedP = (double)j["p_value"]!;
        // With a calibration made for this rule (`oml verify --calibrate`, the shared --calibration option) the verdict is
        // stated as computed under its floor: here one negative (the base, no hits on the counted keys) bounds the rate
        // only loosely, so p rises and the verdict is no longer owned on its own terms.
        string cal = Path.Combine(W.Root, "cal-partial-m3.json");
        var made = Run("verify", "--fingerprints", W.Resumed, "--calibrate", $"base={W.Model}", "--match", "partial", "--min-tokens", "3",
            "--base", W.Model, "--calibration-out", cal, "--force");
        Assert.True(made.Code == 0, made.Err);
        var calibrated = Run([.. common, "--match", "partial", "--min-tokens", "3", "--base", W.Model, "--calibration", cal, "--json"]);
        Assert.True(calibrated.Code == 0, calibrated.Err);
        var cj = JsonNode.Parse(calibrated.Out)!;
        Assert.Equal((int)j["hits"]!, (int)cj["hits"]!);
        Assert.True((double)cj["p_value"]! > uncalibratedP, $"{cj["p_value"]} <= {uncalibratedP}");
        Assert.DoesNotContain("calibrated on models near the base", (string)cj["reason"]!, StringComparison.Ordinal);
        // Made for m = 3: refused for m = 2, in one line.
        var refused = Run([.. common, "--match", "partial", "--min-tokens", "2", "--base", W.Model, "--calibration", cal]);
        Assert.Equal(1, refused.Code);
        Assert.StartsWith("oml: error: --calibration:", refused.Err.Trim(), StringComparison.Ordinal);
        Assert.Single(refused.Err.Trim().Split('\n'));
        // Without the base every alignment but the exact one counts at the common bound (0.1): the same hits prove nothing.
        var bound = Run([.. common, "--match", "partial", "--min-tokens", "3"]);
        Assert.True(bound.Code == 0, bound.Err);
        Assert.Contains("match: partial (min tokens 3)", bound.Out);
        // The same answers under the same rule: the keys hit are those the run with the base found hit, excluded or not.
        int answeredHits = j["keys"]!.AsArray().Count(k => (bool)k!["hit"]!);
        Assert.Contains($"hits: {answeredHits}/6", bound.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("verdict: owned", bound.Out);
        var boundJson = Run([.. common, "--match", "partial", "--min-tokens", "3", "--json"]);
        Assert.True(boundJson.Code == 0, boundJson.Err);
        var boundNull = JsonNode.Parse(boundJson.Out)!["keys"]!.AsArray().ToDictionary(k => (int)k!["index"]!, k => (double)k!["null_probability"]!);
        // With the base each counted key's null is the base's own probability of a hit, not the common bound's 0.3 + exact
        // (an excluded key, one the base's greedy answer hits, carries a null of almost 1 and is not counted).
        Assert.All(j["keys"]!.AsArray().Where(k => (bool?)k!["excluded"] != true), k =>
        {
            double p = (double)k!["null_probability"]!, b = boundNull[(int)k["index"]!];
            Assert.True(b >= 0.3, $"bound {b}");
            Assert.True(p > 0 && p < b, $"key {k["index"]}: null {p} with the base, {b} without");
        });
        // Usage errors.
        Assert.Equal(2, Run([.. common, "--base", W.Model]).Code);
        Assert.Equal(2, Run([.. common, "--min-tokens", "2"]).Code);
        Assert.Equal(2, Run([.. common, "--match", "partial"]).Code);
    }

    private string InstructionFile()
    {
        var path = Path.Combine(W.Root, "instructions.jsonl");
        string[] words = ["apple", "bread", "cloud", "dance", "eagle", "flame"];
        File.WriteAllLines(path, words.Select(w => $"{{\"instruction\": \"Name a word like {w}\", \"output\": \"{w} river stone\"}}"));
        return path;
    }

    [Fact]
    public void Sft_fine_tunes_with_lora_and_writes_a_plain_model()
    {
        var outDir = Path.Combine(W.Root, "sft");
        var r = Run("attack", "sft", "--model", W.Model, "--data", InstructionFile(), "--out", outDir, "--epochs", "2", "--lr", "1e-2",
            "--lora-rank", "2", "--batch", "2", "--samples", "4");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("sft(lora2,epochs=2,lr=0.01,n=4): final loss", r.Out);
        using var tuned = ModelFolder.Load(outDir);
        using var orig = ModelFolder.Load(W.Model);
        Assert.Equal(orig.Parameters.Count, tuned.Parameters.Count);
        Assert.NotEqual(Values(orig, "model.layers.0.self_attn.q_proj.weight"), Values(tuned, "model.layers.0.self_attn.q_proj.weight"));
        Assert.Equal(Values(orig, "model.embed_tokens.weight"), Values(tuned, "model.embed_tokens.weight"));
        var j = Run("attack", "sft", "--model", W.Model, "--data", InstructionFile(), "--out", Path.Combine(W.Root, "sft-json"), "--epochs", "1", "--lr", "1e-2",
            "--lora-rank", "2", "--batch-size", "2", "--samples", "2", "--json");
        Assert.True(j.Code == 0, j.Err);
        var json = Assert.IsType<JsonObject>(JsonNode.Parse(j.Out));
        Assert.Equal("sft(lora2,epochs=1,lr=0.01,n=2)", json["attack"]!.GetValue<string>());
        Assert.True(json["final_loss"]!.GetValue<double>() > 0);
        var bad = Run("attack", "sft", "--model", W.Model, "--data", Path.Combine(W.Root, "missing.jsonl"), "--out", outDir, "--force");
        Assert.Equal(1, bad.Code);
        Assert.Contains("not found", bad.Err);
    }

    [Fact]
    public void Distill_trains_a_fresh_student_on_the_teachers_answers()
    {
        var outDir = Path.Combine(W.Root, "student");
        var r = Run("attack", "distill", "--model", W.Model, "--prompts", InstructionFile(), "--out", outDir, "--fresh-hidden", "32",
            "--fresh-layers", "1", "--fresh-heads", "2", "--max-new-tokens", "4", "--epochs", "1", "--lr", "1e-3", "--batch-size", "3");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("6 teacher answers", r.Out);
        using var s = ModelFolder.Load(outDir);
        Assert.Equal(32, s.Config.HiddenSize);
        Assert.Equal(512, s.Config.VocabSize);
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        var bad = Run("attack", "distill", "--model", W.Model, "--prompts", InstructionFile(), "--out", outDir, "--force");
        Assert.Equal(2, bad.Code);
        Assert.Contains("exactly one of --student DIR and --fresh-hidden H", bad.Err);
    }
}
