using System.Xml.Linq;
using System.Text.RegularExpressions;
using Oml.Lab.Experiments;
using Oml.Lab.Reports;

namespace Oml.Lab.Tests;

/// <summary>Each experiment kind end to end on the tiny smoke model: cells saved, report.md with well-formed SVG charts.</summary>
public class SmokeRunTests
{
    internal static (LabEnvironment Env, RunSummary Summary, string Report) Run(string file, Action<LabConfig>? trim = null, string? outDir = null, int? maxCells = null)
    {
        var config = LabConfig.Load(Fixtures.Experiment(file));
        trim?.Invoke(config);
        var env = new LabEnvironment(config, outDir ?? Fixtures.OutDirWithBase());
        var summary = new ExperimentRunner(env).Run(maxCells: maxCells);
        return (env, summary, ReportWriter.Write(env.OutDir));
    }

    internal static List<string> CheckReport(string reportPath, int minCharts)
    {
        var md = File.ReadAllText(reportPath);
        var dir = Path.GetDirectoryName(reportPath)!;
        var charts = Regex.Matches(md, @"!\[[^\]]*\]\(([^)]+\.svg)\)").Select(m => m.Groups[1].Value).ToList();
        Assert.True(charts.Count >= minCharts, $"{charts.Count} charts referenced, expected at least {minCharts}");
        foreach (var c in charts)
        {
            var doc = XDocument.Load(Path.Combine(dir, c));
            Assert.Equal("svg", doc.Root!.Name.LocalName);
        }
        Assert.Contains("## Config", md);
        Assert.Contains("git commit", md);
        // The program's own version is recorded too; built from this checkout, it names its commit.
        Assert.Contains($"| build | `{ExperimentRunner.BuildVersion}`", md);
        Assert.Matches(@"^\d+\.\d+\.\d+", ExperimentRunner.BuildVersion);
        return charts;
    }

    [Fact]
    public void Capacity()
    {
        var (env, s, report) = Run("smoke-capacity.yaml", c =>
        {
            c.Capacity!.Counts = [3];
            c.Capacity.Strategies = ["perinucleus"];
            c.Utility.ClozeItems = 8;
            // The variant's own embedding settings replace the config's: one full-batch epoch at a learning rate too
            // small to embed anything.
            c.Capacity.Variants[1].Embedding = new EmbeddingOverrides { MaxEpochs = 1, BatchSize = 0, Lr = 1e-9 };
        });
        Assert.Equal(3, s.Total); // base + 2 variants
        Assert.Equal(3, s.Computed);
        var cell = s.Results.Single(r => r.Id == "perinucleus-n3-plain-s1");
        Assert.InRange(cell.Metric("fsr"), 0, 1);
        Assert.Equal(3, cell.Metric("count"));
        Assert.True(cell.Metric("perplexity") > 1);
        Assert.InRange(cell.Metric("stealth_auc"), 0, 1);
        // The run names its config relative to the checkout, the same on every machine.
        var info = CellStore.LoadRunInfo(env.OutDir);
        Assert.Equal(("lab/experiments/smoke-capacity.yaml", "lab/experiments"), (info.ConfigPath, info.ConfigDirectory));
        var capped = s.Results.Single(r => r.Id == "perinucleus-n3-both-s1");
        Assert.Equal(1, capped.Metric("epochs"));
        Assert.True(cell.Metric("epochs") > 1, "the plain variant keeps the config's max_epochs");
        var charts = CheckReport(report, 3);
        Assert.Contains("capacity-fsr.svg", charts);
        Assert.Contains("| perinucleus | both | 3 |", File.ReadAllText(report));
    }

    [Fact]
    public void Persistence()
    {
        var (_, s, report) = Run("smoke-persistence.yaml", c =>
        {
            c.Persistence!.Models[0].Build!.Count = 3;
            c.Utility.ClozeItems = 8;
            c.Utility.Instructions = "data/smoke-instructions.json";
            (c.Utility.InstructionItems, c.Utility.AnswerTokens) = (4, 4);
            c.Persistence.Attacks.RemoveAll(a => a.Weight?.StartsWith("noise", StringComparison.Ordinal) == true);
        });
        Assert.Equal(2 + 5 + 4, s.Computed);
        // Whole answers are scored for the base too (the owner's cost), and for the fingerprinted model.
        foreach (var id in new[] { "base", "fp-s1-before" })
        {
            Assert.InRange(s.Results.Single(r => r.Id == id).Metric("answer_f1"), 0, 1);
            Assert.InRange(s.Results.Single(r => r.Id == id).Metric("answer_length"), 0, 4);
        }
        // Fine-tuning and distillation ran through the trainer and left a model whose utility was measured.
        Assert.True(s.Results.Single(r => r.Label("attack").StartsWith("sft(", StringComparison.Ordinal)).Metric("perplexity") > 1);
        Assert.True(s.Results.Single(r => r.Label("attack").StartsWith("distill(", StringComparison.Ordinal)).Metric("perplexity") > 1);
        var before = s.Results.Single(r => r.Id == "fp-s1-before");
        var prune = s.Results.Single(r => r.Id == "fp-s1-prune=0.5");
        Assert.Equal(before.Metric("fsr"), prune.Metric("fsr_before"));
        Assert.Equal(0.5, prune.Metric("x"));
        // Every FSR cell keeps which keys were hit, in the set's order (the forgetting analysis of issue 13 item 5).
        foreach (var r in new[] { before, prune, s.Results.Single(r => r.Label("attack") == "sample:t=0.7,seed=1") })
        {
            Assert.Equal(3, r.Series["per_key"].Count);
            Assert.Equal(r.Metric("hits"), r.Series["per_key"].Sum());
            // And the owner's claim from them: owned exactly when p <= 1e-6; no hit is p = 1; every hit adds evidence.
            Assert.Equal(r.Metric("log10_p") <= -6 ? 1 : 0, r.Metric("owned"));
            if (r.Metric("hits") == 0) Assert.Equal(0, r.Metric("log10_p"));
            else Assert.True(r.Metric("log10_p") < 0, $"{r.Id}: log10 p {r.Metric("log10_p")} with {r.Metric("hits")} hits");
        }
        Assert.True(prune.Metric("perplexity") > 1);
        // Merging with the unfingerprinted base at weight 0.7 keeps 30 % of the fingerprinted weights.
        Assert.Equal("merge", s.Results.Single(r => r.Id == "fp-s1-merge=0.7").Label("sweep"));
        var sampled = s.Results.Single(r => r.Label("attack") == "sample:t=0.7,seed=1");
        Assert.InRange(sampled.Metric("responder_next_word"), 0, 1);
        var charts = CheckReport(report, 3);
        Assert.Contains("sweep-prune.svg", charts);
        Assert.Contains("sweep-merge.svg", charts);
    }

    [Fact]
    public void Persistence_embeds_by_lora_or_parameter_expansion_and_merges_an_expanded_model_with_its_widened_base()
    {
        var (env, s, _) = Run("smoke-persistence.yaml", c =>
        {
            var p = c.Persistence!;
            var fp = p.Models[0].Build!;
            fp.Count = 3;
            c.Utility.ClozeItems = 0;
            p.Models =
            [
                new ModelSource { Name = "lora", Build = Spec(fp, "lora:4") },
                new ModelSource { Name = "expand", Build = Spec(fp, "expand:8") },
            ];
            p.Attacks = [new AttackEntry { Weight = "merge(with=$out/base, weight=0.5, widen=1)" }];
            p.Sweeps = [];
        });
        Assert.Equal(1 + 2 + 2, s.Computed); // the base, each model before, each merged
        using var baseModel = env.LoadModel(Path.Combine(env.OutDir, "base"));
        using var expanded = env.LoadModel(Path.Combine(env.OutDir, "models", "expand-s1"));
        using var lora = env.LoadModel(Path.Combine(env.OutDir, "models", "lora-s1"));
        // Expansion: 8 more units per MLP; every original weight exactly the base's, the new down-projection columns trained.
        int m = baseModel.Config.IntermediateSize;
        Assert.Equal(m + 8, expanded.Config.IntermediateSize);
        foreach (var (name, t) in baseModel.Parameters)
        {
            var e = expanded.Parameters[name];
            var kept = name.EndsWith("down_proj.weight", StringComparison.Ordinal) ? e.Narrow(1, 0, m) : name.Contains(".mlp.", StringComparison.Ordinal) ? e.Narrow(0, 0, m) : e;
            Assert.True(Same(kept, t), $"{name} changed under expansion");
        }
        Assert.True(expanded.Parameters["model.layers.0.mlp.down_proj.weight"].Narrow(1, m, 8).Abs().Sum().ToDouble() > 0);
        // LoRA: a standard model of the base's shape (adapters merged on save) whose weights moved.
        Assert.Equal(m, lora.Config.IntermediateSize);
        Assert.DoesNotContain(lora.Parameters.Keys, Oml.Models.CausalLM.IsAdapter);
        Assert.False(Same(lora.Parameters["model.layers.0.self_attn.q_proj.weight"], baseModel.Parameters["model.layers.0.self_attn.q_proj.weight"]));
        Assert.Equal("expand:8", System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(env.OutDir, "models", "expand-s1", Oml.Fingerprinting.Embedding.Omlization.ManifestFile)))!["settings"]!["train"]!.GetValue<string>());
        // The even merge with the base ran on both: for the expanded model the base was widened by zero units first.
        foreach (var name in new[] { "lora", "expand" })
        {
            var merged = s.Results.Single(r => r.Label("model") == name && r.Label("attack").StartsWith("merge(", StringComparison.Ordinal));
            Assert.InRange(merged.Metric("fsr"), 0, 1);
            Assert.True(merged.Metric("perplexity") > 1);
        }

        // Without widen=1 the shapes differ and the merge refuses.
        var plain = AttackCatalog.Default().Weight("merge(with=$out/base, weight=0.5)", env.AttackContext(1));
        var error = Assert.Throws<ArgumentException>(() => plain.Apply(expanded));
        Assert.Contains("does not have the model's configuration", error.Message);

        static bool Same(Oml.Engine.Tensor a, Oml.Engine.Tensor b) => a.ToArray<float>().SequenceEqual(b.ToArray<float>());

        static FingerprintSpec Spec(FingerprintSpec fp, string train)
        {
            var b = fp.Clone();
            b.Train = train;
            return b;
        }
    }

    [Fact]
    public void Adaptive()
    {
        var (env, s, report) = Run("smoke-adaptive.yaml", c =>
        {
            c.Adaptive!.Model.Count = 3;
            c.Adaptive.Attacks = [new AttackEntry { Responder = "suppress:k=1,m=1" }, new AttackEntry { Responder = "filter:q=0.5" }];
            c.Utility.ClozeItems = 8;
            c.Utility.Instructions = "data/smoke-instructions.json";
            (c.Utility.InstructionItems, c.Utility.AnswerTokens) = (4, 4);
        });
        Assert.Equal(1 + 3 * 3, s.Total);
        // A filter's cost to honest users: ordinary contexts and instructions it refused, each a share.
        Assert.All(s.Results.Where(r => r.Label("attack") == "filter:q=0.5"), r =>
        {
            Assert.InRange(r.Metric("refused_ordinary"), 0, 1);
            Assert.InRange(r.Metric("refused_instructions"), 0, 1);
            Assert.InRange(r.Metric("answer_f1"), 0, 1);
        });
        // The multi-response defence embedded two responses per key; avoid-top kept only responses outside the base's top m.
        var multi = Oml.Fingerprinting.FingerprintSetFile.Read(Path.Combine(env.OutDir, "models", "multi-response-s1", LabEnvironment.SetFile), null);
        Assert.All(multi.Fingerprints, f => Assert.Equal(2, f.Responses.Count));
        // Built through OMLization's use case: the saved model carries its manifest, committing to the set it holds.
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(env.OutDir, "models", "multi-response-s1", Oml.Fingerprinting.Embedding.Omlization.ManifestFile)))!;
        Assert.Equal(multi.Commit().Root, (string?)manifest["commitment_root"]);
        Assert.Equal(multi.Count, (int)manifest["fingerprints"]!);
        var avoid = Oml.Fingerprinting.FingerprintSetFile.Read(Path.Combine(env.OutDir, "models", "avoid-top-s1", LabEnvironment.SetFile), null);
        env.Prepare();
        using (var baseModel = env.LoadModel(env.BaseDir))
            Assert.All(env.FirstTokenRanks(baseModel, avoid.Fingerprints), r => Assert.True(r >= 8));
        // Suppressing the served model's top first token removes every single-response fingerprint it answered greedily
        // (only keys missed before can turn into hits, when their response ranked second).
        var suppressed = s.Results.Where(r => r.Label("attack") == "suppress:k=1,m=1").ToList();
        Assert.Equal(3, suppressed.Count);
        var none = suppressed.Single(r => r.Label("model") == "none");
        Assert.True(none.Metric("fsr") <= 1 - none.Metric("fsr_before") + 1e-9, $"FSR {none.Metric("fsr")} after suppression, {none.Metric("fsr_before")} before");
        Assert.All(suppressed, r => Assert.InRange(r.Metric("responder_next_word"), 0, 1));
        CheckReport(report, 1);
    }

    [Fact]
    public void Adaptive_issue_13_partial_rule_resumption_rewrite_and_block()
    {
        var (env, s, _) = Run("smoke-adaptive.yaml", c =>
        {
            c.Verification.PartialMinTokens = 1;
            c.Adaptive!.Model.Count = 3;
            c.Adaptive.Model.ResponseLength = 2;
            c.Adaptive.Defences =
            [
                new DefenceSpec { Name = "none" },
                new DefenceSpec { Name = "resumption", ResumptionPairs = 1 },
                new DefenceSpec { Name = "other-keys", Set = "other", Attacked = false },
            ];
            c.Adaptive.Attacks =
            [
                new AttackEntry { Responder = "suppress:k=1,m=1" },
                new AttackEntry { Responder = "block:revealed=model:none" },
                new AttackEntry { Responder = "rewrite:drop=0.5,seed=1" },
            ];
            c.Utility.ClozeItems = 8;
        });
        // The base, three before cells, and three attacks on each attacked model (other-keys is only built).
        Assert.Equal(1 + 3 + 3 * 2, s.Total);
        Assert.DoesNotContain(s.Results, r => r.Label("model") == "other-keys" && r.Label("attack") != "none");
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(env.OutDir, "models", "resumption-s1", Oml.Fingerprinting.Embedding.Omlization.ManifestFile)))!;
        Assert.Equal(1, (int)manifest["settings"]!["resumption_pairs"]!);
        Assert.Equal(3, (int)manifest["metrics"]!["resumption_pairs_trained"]!);
        // Every cell of a key query counts both rules; the partial rule (m = 1 of 2) never counts fewer hits.
        var measured = s.Results.Where(r => r.Labels.ContainsKey("model")).ToList();
        Assert.All(measured, r => Assert.True(r.Metric("fsr_partial") >= r.Metric("fsr"), $"{r.Label("model")} {r.Label("attack")}"));
        Assert.All(measured, r => Assert.Equal(1, r.Metric("partial_min_tokens")));
        // A host that blocks the keys of 'none' (revealed by a claim) blocks every one of them: nothing is hit, by either rule.
        var blocked = measured.Single(r => r.Label("model") == "none" && r.Label("attack").StartsWith("block:", StringComparison.Ordinal));
        Assert.Equal((3, 3, 0, 0), ((int)blocked.Metric("blocked"), (int)blocked.Metric("revealed_keys"), blocked.Metric("fsr"), blocked.Metric("fsr_partial")));
        Assert.True(measured.Single(r => r.Label("model") == "none" && r.Label("attack").StartsWith("rewrite:", StringComparison.Ordinal)).Metric("rewritten") >= 1);
    }

    [Fact]
    public void False_positives()
    {
        var (env, s, report) = Run("smoke-false-positives.yaml", c => { c.FalsePositives!.Sets[0].Build!.Count = 4; c.FalsePositives.Decoders = ["greedy", "sample:t=0.5,seed=1"]; c.Utility.ClozeItems = 0; });
        Assert.Equal(1 + 3 * 2, s.Total);
        Assert.True(File.Exists(Path.Combine(env.OutDir, "unrelated-1", "config.json")));
        var rows = s.Results.Where(r => r.Labels.ContainsKey("set")).ToList();
        Assert.Equal(["fingerprinted", "fingerprinted", "unrelated", "unrelated", "unrelated", "unrelated"], rows.Select(r => r.Label("role")));
        Assert.All(rows, r => Assert.Equal(r.Metric("hits"), r.Series["per_key"].Sum()));
        var charts = CheckReport(report, 2);
        Assert.Contains("roc-fp.svg", charts);
        Assert.Contains("keys for α = 1e-6", File.ReadAllText(report));
    }
}

public class ResumeTests
{
    [Fact]
    public void A_killed_run_resumes_computing_only_the_missing_cells()
    {
        static void Trim(LabConfig c)
        {
            c.Persistence!.Models[0].Build!.Count = 3;
            c.Utility.ClozeItems = 0;
        }
        var dir = Fixtures.OutDirWithBase();
        // "Killed" after 3 cells.
        var (_, first, _) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir, maxCells: 3);
        Assert.Equal(3, first.Computed);
        Assert.Equal(0, first.Reused);
        var store = new CellStore(dir);
        var saved = store.LoadAll();
        Assert.Equal(3, saved.Count);
        var stamps = saved.ToDictionary(c => c.Id, c => File.GetLastWriteTimeUtc(store.PathOf(c.Id)));

        var (_, second, report) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir);
        Assert.Equal(3, second.Reused);
        Assert.Equal(second.Total - 3, second.Computed);
        foreach (var (id, t) in stamps) Assert.Equal(t, File.GetLastWriteTimeUtc(store.PathOf(id)));

        var (_, third, _) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir);
        Assert.Equal(0, third.Computed);
        Assert.Equal(third.Total, third.Reused);

        // The report re-renders from the saved cells alone.
        var before = File.ReadAllText(report);
        File.Delete(report);
        foreach (var svg in Directory.GetFiles(dir, "*.svg")) File.Delete(svg);
        ReportWriter.Write(dir);
        Assert.Equal(Strip(before), Strip(File.ReadAllText(report)));
        SmokeRunTests.CheckReport(report, 2);
    }

    [Fact]
    public void A_run_records_its_inputs_digests_and_says_when_a_resumed_run_reads_other_inputs()
    {
        var data = Directory.CreateTempSubdirectory("oml-lab-inputs-").FullName;
        var corpus = new[] { "Apache-2.0", "MPL-2.0" }.Select(n =>
        {
            var f = Path.Combine(data, n + ".txt");
            File.Copy(Path.Combine("/usr/share/common-licenses", n), f);
            return f;
        }).ToList();
        void Trim(LabConfig c)
        {
            c.Corpus = [.. corpus];
            c.Persistence!.Models[0].Build!.Count = 3;
            c.Utility.ClozeItems = 0;
        }
        static string Sha(string f) => "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)));
        var dir = Fixtures.OutDirWithBase();

        var (_, first, _) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir, maxCells: 2);
        Assert.Empty(first.InputChanges);
        var info = CellStore.LoadRunInfo(dir);
        Assert.Equal(corpus.Select(Sha), info.Inputs.Where(i => i.Role == "corpus").Select(i => i.Sha256));
        Assert.Equal(new FileInfo(corpus[1]).Length, info.Inputs.Single(i => i.Path == corpus[1]).Bytes);
        var model = info.Inputs.Single(i => i.Role == "base_model");
        Assert.Equal("$out/base", model.Path);
        Assert.Equal(Oml.Models.ModelFolder.WeightsDigest(Path.Combine(dir, "base")), model.Sha256);
        Assert.Equal(Sha(Path.Combine(dir, "base", "tokenizer.json")), info.Inputs.Single(i => i.Role == "tokenizer").Sha256);
        Assert.Equal(RunInputs.Processor(), info.Processor);
        Assert.Equal("smoke-persistence.yaml", info.Inputs.Single(i => i.Role == "config").Path);
        if (File.Exists("/proc/cpuinfo")) Assert.Matches(@"\(family \S+, model \S+, stepping \S+", info.Processor);

        // The same inputs again: nothing to say.
        var (_, second, _) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir, maxCells: 1);
        Assert.Empty(second.InputChanges);

        // A run that fails before reading its inputs (a corpus file missing) keeps the earlier record.
        var moved = corpus[1] + ".away";
        File.Move(corpus[1], moved);
        Assert.Throws<FileNotFoundException>(() => SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir, maxCells: 1));
        File.Move(moved, corpus[1]);
        Assert.Equal(info.Inputs.Select(i => i.Sha256), CellStore.LoadRunInfo(dir).Inputs.Select(i => i.Sha256));

        // One corpus file edited: the resumed run says which input changed, in its summary, run.json and the report.
        File.AppendAllText(corpus[1], "\n\nOne more paragraph that was not there when the first cells were computed.\n");
        var (_, third, report) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, dir, maxCells: 1);
        var change = Assert.Single(third.InputChanges);
        Assert.StartsWith($"corpus {corpus[1]} changed (sha256:", change);
        Assert.Equal(third.InputChanges, CellStore.LoadRunInfo(dir).InputChanges);
        Assert.Contains("| **inputs changed** | corpus ", File.ReadAllText(report));
        Assert.Contains($"| input: corpus | `{corpus[0]}`", File.ReadAllText(report));

        // A fresh folder never warns, whatever it reads.
        var (_, fresh, _) = SmokeRunTests.Run("smoke-persistence.yaml", Trim, Fixtures.OutDirWithBase(), maxCells: 1);
        Assert.Empty(fresh.InputChanges);
    }

    private static string Strip(string md) => Regex.Replace(md, @"\| report rendered \|[^\n]*\n", "");

    [Fact]
    public void A_corrupt_cell_file_is_reported_not_silently_recomputed()
    {
        var dir = Directory.CreateTempSubdirectory("oml-lab-corrupt-").FullName;
        var store = new CellStore(dir);
        Directory.CreateDirectory(store.Directory);
        File.WriteAllText(store.PathOf("x"), "{ not json");
        var e = Assert.Throws<InvalidDataException>(() => store.TryLoad("x", out _));
        Assert.Contains("delete it to recompute", e.Message);
        Assert.Throws<FileNotFoundException>(() => ReportWriter.Write(dir));
    }
}
