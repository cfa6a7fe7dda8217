using Oml.Lab.Experiments;

namespace Oml.Lab.Tests;

public class ConfigTests
{
    private const string Good = """
        version: 1
        name: t
        kind: capacity
        base_model: ../models/base
        corpus: [a.txt]
        capacity:
          strategies: [perinucleus]
          counts: [4, 16]
          variants: [{ name: plain }, { name: both, lambda: 0.75, beta: 0.25 }]
        """;

    /// <summary>Every config committed under lab/experiments (the list grows by itself).</summary>
    public static TheoryData<string> CommittedConfigs()
    {
        var files = Directory.GetFiles(Path.GetDirectoryName(Fixtures.Experiment("capacity.yaml"))!, "*.yaml").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.True(files.Count >= 13, $"only {files.Count} configs found");
        return new TheoryData<string>(files!);
    }

    [Fact]
    public void Adaptive_defences_carry_the_key_temperature()
    {
        var c = LabConfig.Load(Fixtures.Experiment("adaptive.yaml"));
        var sources = c.Adaptive!.ModelSources();
        Assert.Equal(0.5, sources.Single(s => s.Name == "none").Build!.KeyTemperature);
        Assert.Equal(0.8, sources.Single(s => s.Name == "camouflage").Build!.KeyTemperature);
        Assert.Equal(2, sources.Single(s => s.Name == "camouflage-two-responses").Build!.ResponsesPerKey);
        Assert.EndsWith("instructions-heldout.json", c.Utility.Instructions);
    }

    [Fact]
    public void Perplexity_matched_keys_are_read_named_in_the_set_cache_and_checked()
    {
        var c = LabConfig.Load(Fixtures.Experiment("cpu-camouflage.yaml"));
        var sources = c.Adaptive!.ModelSources();
        Assert.Equal("", sources.Single(s => s.Name == "none").Build!.KeyCamouflage);
        var heldout = sources.Single(s => s.Name == "matched-heldout").Build!;
        Assert.Equal("heldout", heldout.KeyCamouflage);
        Assert.Equal("train", sources.Single(s => s.Name == "matched-train").Build!.KeyCamouflage);
        // Matched and plain keys never share a cached set.
        Assert.Contains("-camoheldout-", LabEnvironment.SetKey(heldout, 1));
        Assert.DoesNotContain("camo", LabEnvironment.SetKey(sources.Single(s => s.Name == "none").Build!, 1));
        var yaml = File.ReadAllText(Fixtures.Experiment("cpu-camouflage.yaml"));
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("key_camouflage: train", "key_camouflage: users", StringComparison.Ordinal)));
        Assert.Contains("key_camouflage must be heldout, train or instructions (got 'users')", e.Message);
        // A quantile band is named in the set cache and checked.
        var banded = LabConfig.Parse(yaml.Replace("key_camouflage: train", "key_camouflage: train, key_camouflage_band: [0.2, 0.6]", StringComparison.Ordinal));
        var b = banded.Adaptive!.ModelSources().Single(s => s.Name == "matched-train").Build!;
        Assert.Equal([0.2, 0.6], b.KeyCamouflageBand);
        Assert.Contains("-camotrain-q0.2-0.6-", LabEnvironment.SetKey(b, 1));
        Assert.DoesNotContain("-q", LabEnvironment.SetKey(heldout, 1));
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("key_camouflage: train", "key_camouflage: train, key_camouflage_band: [0.6, 0.2]", StringComparison.Ordinal)));
        Assert.Contains("key_camouflage_band must be [low, high] with 0 <= low < high <= 1", e.Message);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("key_camouflage: train", "key_camouflage_band: [0.2, 0.6]", StringComparison.Ordinal)));
        Assert.Contains("key_camouflage_band needs key_camouflage", e.Message);
    }

    [Fact]
    public void Response_trees_are_read_named_in_the_set_cache_and_checked()
    {
        var c = LabConfig.Load(Fixtures.Experiment("cpu-response-trees.yaml"));
        var tree = c.Adaptive!.ModelSources().Single(s => s.Name == "tree-2x2").Build!;
        Assert.Equal((2, 2), (tree.ResponsesPerKey, tree.ResponseBranching));
        Assert.Contains("-r2-b2-", LabEnvironment.SetKey(tree, 1));
        Assert.DoesNotContain("-b", LabEnvironment.SetKey(c.Adaptive.ModelSources().Single(s => s.Name == "none").Build!, 1));
        var yaml = File.ReadAllText(Fixtures.Experiment("cpu-response-trees.yaml"));
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("response_branching: 2", "response_branching: 9", StringComparison.Ordinal)));
        Assert.Contains("response_branching: 2 response(s) per key branching 9 ways over 2 tokens make 162 answers per key (at most 64)", e.Message);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("response_length: 3", "response_length: 1", StringComparison.Ordinal)));
        Assert.Contains("needs responses of at least 2 tokens", e.Message);
    }

    [Fact]
    public void The_embedding_method_is_read_and_checked()
    {
        var yaml = File.ReadAllText(Fixtures.Experiment("smoke-persistence.yaml"));
        const string build = "build: { strategy: perinucleus,";
        Assert.Equal("all", LabConfig.Parse(yaml).Persistence!.Models[0].Build!.Train);
        foreach (var (train, parsed) in new[] { ("lora:4", new EmbeddingMethod("all", 4, 0)), ("expand:16", new EmbeddingMethod("all", 0, 16)), ("mlp", new EmbeddingMethod("mlp", 0, 0)) })
        {
            var c = LabConfig.Parse(yaml.Replace(build, $"build: {{ train: \"{train}\", strategy: perinucleus,", StringComparison.Ordinal));
            Assert.Equal(parsed, EmbeddingMethod.Parse(c.Persistence!.Models[0].Build!.Train));
        }
        foreach (var (bad, message) in new[] { ("lora:0", "lora:R needs a rank of at least 1"), ("expand:x", "expand:N needs a number of new units"), ("everything", "train must be all, mlp") })
        {
            var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace(build, $"build: {{ train: \"{bad}\", strategy: perinucleus,", StringComparison.Ordinal)));
            Assert.Contains(message, e.Message);
        }
    }

    [Fact]
    public void Issue_13_defences_and_the_partial_rule_are_read_and_checked()
    {
        var c = LabConfig.Load(Fixtures.Experiment("adaptive.yaml"));
        Assert.Equal(2, c.Verification.PartialMinTokens);
        Assert.Equal("partial", c.Verification.Partial!.Name);
        var sources = c.Adaptive!.ModelSources();
        var resumed = sources.Single(s => s.Name == "three-tokens-resumption").Build!;
        Assert.Equal((3, 3), (resumed.ResponseLength, resumed.ResumptionPairs));
        Assert.Equal(0, sources.Single(s => s.Name == "none").Build!.ResumptionPairs);
        var other = sources.Single(s => s.Name == "other-keys");
        Assert.Equal("other", other.Build!.Set);
        Assert.False(other.Attacked);
        Assert.True(sources.Single(s => s.Name == "none").Attacked);
        Assert.Null(LabConfig.Load(Fixtures.Experiment("capacity.yaml")).Verification.Partial);
        // A variant may change the Perinucleus t and k (the question of the paper's Fig. 2), checked as the model's are.
        var tk = LabConfig.Load(Fixtures.Experiment("cpu-perinucleus-tk-trained.yaml")).Adaptive!.ModelSources();
        Assert.Equal((0.5, 3), (tk.Single(s => s.Name == "t0.5-k3").Build!.T, tk.Single(s => s.Name == "t0.5-k3").Build!.K));
        Assert.Equal((0.8, 10), (tk.Single(s => s.Name == "t0.8-k10").Build!.T, tk.Single(s => s.Name == "t0.8-k10").Build!.K));
        Assert.Equal(1.0, tk.Single(s => s.Name == "t0.8-k3-keyT1").Build!.KeyTemperature);

        var yaml = File.ReadAllText(Fixtures.Experiment("smoke-adaptive.yaml"));
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("- { name: none }", "- { name: none, resumption_pairs: 2 }", StringComparison.Ordinal)));
        Assert.Contains("resumption_pairs needs response_length of at least 2", e.Message);
        // Anchored keys are trained in the benign part of the loss: a model without mixing (beta 0) has none.
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("- { name: none }", "- { name: none, anchor_keys: true }", StringComparison.Ordinal)));
        Assert.Contains("anchor_keys trains the keys as benign rows: it needs beta > 0", e.Message);
        var anchored = LabConfig.Parse(yaml.Replace("lambda: 0.25 }", "lambda: 0.25, beta: 0.25 }", StringComparison.Ordinal)
            .Replace("- { name: none }", "- { name: none, anchor_keys: true }", StringComparison.Ordinal)).Adaptive!.ModelSources().First(s => s.Name == "none").Build!;
        Assert.True(anchored.AnchorKeys);
        // Keys in the instruction layout (or the chat template) for a host that serves instructions; raw by default.
        Assert.Equal("raw", anchored.KeyFormat);
        var inst = LabConfig.Parse(yaml.Replace("- { name: none }", "- { name: none, key_format: instruction }", StringComparison.Ordinal)).Adaptive!.ModelSources().First(s => s.Name == "none").Build!;
        Assert.Equal("instruction", inst.KeyFormat);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("- { name: none }", "- { name: none, key_format: alpaca }", StringComparison.Ordinal)));
        Assert.Contains("key_format must be raw, instruction or chat (got 'alpaca')", e.Message);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("- { name: none }", "- { name: none, t: 1.5 }", StringComparison.Ordinal)));
        Assert.Contains("t must be in (0, 1)", e.Message);
        // Several responses are drawn from the k tokens after the nucleus: more than k cannot be generated, and must fail
        // when the config is read, not in a lab worker after the base is built.
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml.Replace("- { name: none }", "- { name: none, responses_per_key: 4, k: 3 }", StringComparison.Ordinal)));
        Assert.Contains("responses_per_key (4) must be at most the Perinucleus width k (3)", e.Message);
        var four = LabConfig.Load(Fixtures.Experiment("cpu-defence-responses.yaml")).Adaptive!.ModelSources().Single(s => s.Name == "four-responses").Build!;
        Assert.Equal((4, 4), (four.ResponsesPerKey, four.K));
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml + "verification: { partial_min_tokens: 0 }\n"));
        Assert.Contains("verification.partial_min_tokens must be at least 1", e.Message);
    }

    [Theory]
    [MemberData(nameof(CommittedConfigs))]
    public void Committed_configs_parse(string file)
    {
        var c = LabConfig.Load(Fixtures.Experiment(file));
        Assert.Contains(c.Kind, ExperimentKinds.All);
        Assert.False(string.IsNullOrEmpty(c.Text));
    }

    [Fact]
    public void A_good_config_reads_every_field()
    {
        var c = LabConfig.Parse(Good);
        Assert.Equal("capacity", c.Kind);
        Assert.Equal([4, 16], c.Capacity!.Counts);
        Assert.Equal(0.75, c.Capacity.Variants[1].Lambda);
        Assert.Equal(0.25, c.Capacity.Variants[1].Beta);
        Assert.Equal("cpu", c.Device);
        Assert.Equal([1UL], c.Seeds);
        c.Directory = "/x/y";
        Assert.Equal("/x/models/base", c.Resolve(c.BaseModel));
    }

    [Theory]
    [InlineData("name: t", "name: ''", "'name' is required")]
    [InlineData("kind: capacity", "kind: capacityy", "'kind' must be one of")]
    [InlineData("corpus: [a.txt]", "corpus: []", "'corpus' needs")]
    [InlineData("counts: [4, 16]", "counts: [0]", "capacity.counts")]
    [InlineData("strategies: [perinucleus]", "strategies: [perinucleos]", "unknown strategy 'perinucleos'")]
    [InlineData("{ name: plain }", "{ name: plain, lambda: 1.5 }", "lambda and beta must be in [0, 1)")]
    [InlineData("version: 1", "version: 2", "version 2 is not supported")]
    [InlineData("corpus: [a.txt]", "corpus: [a.txt]\nutility: { answer_tokens: 0 }", "utility.answer_tokens must be at least 1")]
    [InlineData("kind: capacity", "kind: persistence", "kind 'persistence' needs a 'persistence' section")]
    public void Bad_values_give_clear_errors(string find, string replace, string message)
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Good.Replace(find, replace), "bad.yaml"));
        Assert.Contains(message, e.Message);
        Assert.StartsWith("bad.yaml: ", e.Message);
    }

    [Fact]
    public void Averaging_every_defaults_to_step_and_reads_epoch_in_variants_and_builds()
    {
        var c = LabConfig.Parse(Good.Replace("{ name: plain }", "{ name: plain, lambda: 0.5, averaging_every: epoch }"));
        Assert.Equal("epoch", c.Capacity!.Variants[0].AveragingEvery);
        Assert.Equal("step", c.Capacity.Variants[1].AveragingEvery);
        Assert.Equal("step", c.Fingerprints.AveragingEvery);
        var p = LabConfig.Parse(Persistence.Replace("path: somewhere", "build: { count: 4, lambda: 0.75, averaging_every: Epoch }")
            .Replace("ATTACKS", "{ responder: greedy }").Replace("SWEEPS", ""));
        Assert.Equal(Oml.Fingerprinting.Embedding.AveragingSchedule.Epoch,
            Oml.Fingerprinting.Embedding.AveragingSchedules.Parse(p.Persistence!.Models[0].Build!.AveragingEvery, "x"));
    }

    [Fact]
    public void Variants_and_builds_may_override_the_embedding_settings()
    {
        var c = LabConfig.Parse(Good.Replace("{ name: plain }", "{ name: plain, lambda: 0.75, embedding: { batch_size: 0, max_epochs: 150, lr: 0.0005 } }"));
        var o = c.Capacity!.Variants[0].Embedding!;
        Assert.Equal((0, 150, 0.0005), (o.BatchSize, o.MaxEpochs, o.Lr));
        Assert.Null(c.Capacity.Variants[1].Embedding);
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Good.Replace("{ name: plain }", "{ name: plain, embedding: { batch_size: -1 } }"), "bad.yaml"));
        Assert.Contains("capacity.variants 'plain'.embedding.batch_size must be at least 0", e.Message);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Persistence.Replace("path: somewhere", "build: { count: 4, embedding: { lr: 0 } }")
            .Replace("ATTACKS", "{ responder: greedy }").Replace("SWEEPS", ""), "bad.yaml"));
        Assert.Contains("'fp'.build.embedding.lr must be positive", e.Message);
    }

    [Fact]
    public void A_bad_averaging_every_is_refused_with_where_it_is()
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Good.Replace("{ name: plain }", "{ name: plain, averaging_every: batch }"), "bad.yaml"));
        Assert.Equal("bad.yaml: capacity.variants 'plain'.averaging_every must be step, epoch or final (got 'batch')", e.Message);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Good.Replace("{ name: plain }", "{ name: plain, averaging_every: '' }"), "bad.yaml"));
        Assert.Contains("averaging_every must be step, epoch or final (got '')", e.Message);
        e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Persistence.Replace("path: somewhere", "build: { count: 4, averaging_every: epochs }")
            .Replace("ATTACKS", "{ responder: greedy }").Replace("SWEEPS", ""), "bad.yaml"));
        Assert.Contains("'fp'.build.averaging_every must be step, epoch or final (got 'epochs')", e.Message);
    }

    [Fact]
    public void The_capacity_experiment_has_the_step_epoch_and_full_batch_averaging_variants()
    {
        var c = LabConfig.Load(Fixtures.Experiment("capacity.yaml"));
        var v = c.Capacity!.Variants;
        // Cell ids are built from variant names, so the first four (and their saved cells) are unchanged.
        Assert.Equal(["plain", "averaging", "mixing", "both", "averaging-epoch", "both-epoch", "reference"], v.Select(x => x.Name));
        Assert.All(v.Take(4), x => Assert.Equal("step", x.AveragingEvery));
        Assert.Equal((0.75, 0.0, "epoch"), (v[4].Lambda, v[4].Beta, v[4].AveragingEvery));
        Assert.Equal((0.75, 0.25, "epoch"), (v[5].Lambda, v[5].Beta, v[5].AveragingEvery));
        // The reference code's schedule: one full-batch step per epoch, averaged after it.
        Assert.Equal((0.75, 0.25, "step", 0), (v[6].Lambda, v[6].Beta, v[6].AveragingEvery, v[6].Embedding!.BatchSize));
        Assert.Contains(4096, c.Capacity.Counts);
    }

    [Fact]
    public void Unknown_fields_are_named_with_their_line()
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Good.Replace("corpus: [a.txt]", "corpus: [a.txt]\nseeed: 3"), "bad.yaml"));
        Assert.Contains("line 6", e.Message);
        Assert.Contains("seeed", e.Message);
    }

    [Fact]
    public void Broken_yaml_is_reported_with_its_position()
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse("name: [unclosed\nkind: capacity\n", "broken.yaml"));
        Assert.Contains("broken.yaml: line", e.Message);
        Assert.Throws<LabConfigException>(() => LabConfig.Parse("", "empty.yaml"));
    }

    [Fact]
    public void A_section_of_another_kind_is_refused()
    {
        var yaml = Good + "\npersistence:\n  models: [{ name: a, path: x }]\n  attacks: [{ weight: noise(sigma=1) }]\n";
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(yaml));
        Assert.Contains("a 'persistence' section does not belong in a 'capacity' experiment", e.Message);
    }

    private const string Persistence = """
        name: p
        kind: persistence
        base_model: b
        corpus: [a.txt]
        persistence:
          models: [{ name: fp, path: somewhere }]
          attacks: [ATTACKS]
          sweeps: [SWEEPS]
        """;

    [Theory]
    [InlineData("{ weight: \"prune(fraction=0.3\" }", "", "missing ')'")]
    [InlineData("{ }", "", "an attack needs 'weight', 'responder' or 'system_prompt'")]
    [InlineData("{ responder: \"sample:top_p=0.9\" }", "", "sampling needs t=TEMPERATURE")]
    [InlineData("", "{ name: s, weight: \"prune(fraction=0.3)\", values: [0.1] }", "must hold {x}")]
    [InlineData("", "{ name: s, weight: \"prune(fraction={x})\", values: [] }", "no values")]
    [InlineData("", "{ name: s, responder: \"sample:t={x}\", values: [0.5, 0] }", "'s' at 0: 'sample:t=0': t must be positive")]
    public void Bad_attacks_and_sweeps_are_refused(string attacks, string sweeps, string message)
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Persistence.Replace("ATTACKS", attacks).Replace("SWEEPS", sweeps)));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_model_needs_exactly_one_source()
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Persistence.Replace("path: somewhere", "path: somewhere, build: { count: 4 }").Replace("ATTACKS", "{ responder: greedy }").Replace("SWEEPS", "")));
        Assert.Contains("give exactly one of 'path'", e.Message);
    }

    [Fact]
    public void Sweeps_expand_their_values()
    {
        var c = LabConfig.Parse(Persistence.Replace("ATTACKS", "").Replace("SWEEPS", "{ name: prune, weight: \"prune(fraction={x})\", values: [0.1, 0.5] }"));
        var e = c.Persistence!.Sweeps[0].Expand().ToList();
        Assert.Equal([0.1, 0.5], e.Select(x => x.X));
        Assert.Equal(["prune(fraction=0.1)", "prune(fraction=0.5)"], e.Select(x => x.Entry.Weight));
    }
}

public class AttackSpecTests
{
    [Fact]
    public void Parses_names_and_arguments()
    {
        var s = AttackSpec.Parse(" merge(ratio=0.5, with=\"../a, b\", note=f(x)) ");
        Assert.Equal("merge", s.Name);
        Assert.Equal(0.5, s.Number("ratio"));
        Assert.Equal("../a, b", s.Text("with"));
        Assert.Equal("f(x)", s.Text("note"));
        Assert.Equal(3, s.Number("missing", 3));
        Assert.Empty(AttackSpec.Parse("greedy").Arguments);
        Assert.Equal("merge(ratio=0.5, with=\"../a, b\", note=\"f(x)\")", s.ToString());
    }

    [Theory]
    [InlineData("", "an attack name")]
    [InlineData("prune(fraction)", "is not key=value")]
    [InlineData("prune(a=1, a=2)", "given twice")]
    [InlineData("prune(a=\"1)", "unterminated quote")]
    [InlineData("bad name", "an attack name")]
    public void Refuses_malformed_specs(string spec, string message)
    {
        var e = Assert.Throws<FormatException>(() => AttackSpec.Parse(spec));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Typed_arguments_and_unknown_parameters()
    {
        var s = AttackSpec.Parse("noise(sigma=abc, seed=1.5)");
        Assert.Contains("must be a number", Assert.Throws<FormatException>(() => s.Number("sigma")).Message);
        Assert.Contains("whole number", Assert.Throws<FormatException>(() => s.Integer("seed")).Message);
        Assert.Contains("unknown parameter 'seed'", Assert.Throws<FormatException>(() => s.Expect("sigma")).Message);
        Assert.Contains("needs 'rate'", Assert.Throws<FormatException>(() => s.Number("rate")).Message);
    }

    [Fact]
    public void The_catalog_names_unknown_attacks()
    {
        var c = Oml.Lab.Experiments.AttackCatalog.Default();
        var ctx = new AttackContext(null!, Oml.Engine.Device.Cpu, Oml.Engine.DType.Float32, [], "", p => p, 0, "");
        var e = Assert.Throws<FormatException>(() => c.Weight("prnue(fraction=0.1)", ctx));
        Assert.Contains("unknown weight attack 'prnue'", e.Message);
        Assert.Contains("noise", e.Message);
        Assert.True(AttackCatalog.IsPlainGreedy(null));
        Assert.True(AttackCatalog.IsPlainGreedy("greedy"));
        Assert.False(AttackCatalog.IsPlainGreedy("sample:t=0.7,seed=1"));
        Assert.False(AttackCatalog.IsPlainGreedy("greedy+system:\"Be brief.\""));
        Assert.False(AttackCatalog.IsPlainGreedy("suppress:k=1,m=1"));
    }
}
