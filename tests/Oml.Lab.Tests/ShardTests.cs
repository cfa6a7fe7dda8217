using System.Text.RegularExpressions;
using Oml.Fingerprinting;
using Oml.Lab.Attacks;
using Oml.Lab.Experiments;
using Oml.Lab.Metrics;
using Oml.Lab.Reports;

namespace Oml.Lab.Tests;

/// <summary>Shard specs, the assignment of cell groups to shards, build locks, model references and set names.</summary>
public class ShardUnitTests
{
    [Theory]
    [InlineData("0/1", 0, 1)]
    [InlineData("1/2", 1, 2)]
    [InlineData(" 3 / 8 ", 3, 8)]
    public void Good_shard_specs_parse(string text, int index, int count)
    {
        var s = ShardSpec.Parse(text);
        Assert.Equal(new ShardSpec(index, count), s);
        Assert.Equal($"run-shard-{index}-of-{count}.json", s.RunInfoFile);
    }

    [Theory]
    [InlineData("3/2", "must be below 2")]
    [InlineData("2/2", "must be below 2")]
    [InlineData("-1/2", "expected I/N")]
    [InlineData("x", "expected I/N")]
    [InlineData("1", "expected I/N")]
    [InlineData("1/2/3", "expected I/N")]
    [InlineData("0/0", "at least 1")]
    [InlineData("", "expected I/N")]
    public void Bad_shard_specs_say_what_is_wrong(string text, string message)
    {
        var e = Assert.Throws<FormatException>(() => ShardSpec.Parse(text));
        Assert.Contains(message, e.Message);
    }

    private static Cell C(string id, string group, double cost = 1) => new(id, () => new CellResult(), group, cost);

    [Fact]
    public void Groups_go_to_the_least_loaded_shard_largest_first_and_setup_to_shard_0()
    {
        // Group costs: g1 = 16, g2 = 64 + 64 = 128, g3 = 16, g4 = 256; setup ("") = 1.
        var cells = new List<Cell> { C("base", ""), C("a", "g1", 16), C("b", "g2", 64), C("c", "g2", 64), C("d", "g3", 16), C("e", "g4", 256) };
        var two = ExperimentRunner.AssignShards(cells, 2);
        // g4 (256) → shard 1 (load 0 < 1); g2 (128) → shard 0 (1 < 256); g1 (16, first in config order) → shard 0 (129 < 256); g3 → shard 0 (145).
        Assert.Equal(0, two[""]);
        Assert.Equal(1, two["g4"]);
        Assert.Equal(0, two["g2"]);
        Assert.Equal(0, two["g1"]);
        Assert.Equal(0, two["g3"]);
        var three = ExperimentRunner.AssignShards(cells, 3);
        // g4 → 1, g2 → 2, g1 → 0 (load 1), g3 → 0 (17 < 128).
        Assert.Equal([0, 1, 2, 0, 0], new[] { "", "g4", "g2", "g1", "g3" }.Select(g => three[g]));
        // Deterministic, and one shard owns everything.
        Assert.Equal(three, ExperimentRunner.AssignShards(cells, 3));
        Assert.All(ExperimentRunner.AssignShards(cells, 1).Values, s => Assert.Equal(0, s));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExperimentRunner.AssignShards(cells, 0));
    }

    [Fact]
    public void Capacity_cells_are_each_a_group_with_a_cost_from_count_and_variant()
    {
        var config = LabConfig.Load(Fixtures.Experiment("smoke-capacity.yaml"));
        config.Capacity!.Counts = [4, 8];
        config.Capacity.Strategies = ["perinucleus", "english"];
        config.Capacity.Variants =
        [
            new VariantSpec { Name = "plain" },
            new VariantSpec { Name = "mixing", Beta = 0.25 },
            new VariantSpec { Name = "full", Lambda = 0.75, Beta = 0.25, Embedding = new EmbeddingOverrides { BatchSize = 0 } },
        ];
        config.Seeds = [1, 2];
        var cells = new ExperimentRunner(new LabEnvironment(config, Directory.CreateTempSubdirectory("oml-lab-groups-").FullName)).Cells();
        Assert.Equal("", cells.Single(c => c.Id == "base").Group);
        var capacity = cells.Where(c => c.Group.Length > 0).ToList();
        Assert.Equal(2 * 2 * 2 * 3, capacity.Count);
        // Variants of one set may run in different shards (the set is built once, under a lock): one cell per group.
        Assert.All(capacity, c => Assert.Equal(c.Id, c.Group));
        Assert.Equal(8, capacity.Single(c => c.Id == "english-n8-plain-s2").Cost);
        Assert.Equal(24, capacity.Single(c => c.Id == "english-n8-mixing-s2").Cost);
        Assert.Equal(56, capacity.Single(c => c.Id == "english-n8-full-s2").Cost);
        // The costliest cells are spread first: with 3 shards, the four 'full' cells of count 8 and 4 land on all three.
        var owner = ExperimentRunner.AssignShards(cells, 3);
        Assert.Equal(3, capacity.Where(c => c.Id.Contains("-full-", StringComparison.Ordinal)).Select(c => owner[c.Group]).Distinct().Count());
    }

    [Fact]
    public void Sources_that_refer_to_each_other_or_share_a_set_are_one_group()
    {
        var config = LabConfig.Parse("""
            name: g
            kind: persistence
            base_model: b
            corpus: [a.txt]
            seeds: [1, 2]
            persistence:
              models:
                - { name: A, build: { count: 4, set: a } }
                - { name: B, build: { count: 4, set: b } }
                - { name: C, build: { count: 4, set: c } }
                - { name: D, build: { count: 4, set: a, lambda: 0.5 } }
                - { name: E, build: { count: 4, set: e } }
              attacks:
                - { responder: "coalition:majority:model:A,model:B", targets: [C] }
                - { weight: "noise(sigma=0.1)" }
            """);
        var cells = new ExperimentRunner(new LabEnvironment(config, Directory.CreateTempSubdirectory("oml-lab-groups-").FullName)).Cells();
        string G(string id) => cells.Single(c => c.Id == id).Group;
        // C's coalition attack loads A and B: A, B, C in one group; D shares A's generated set (same settings, set a).
        foreach (var s in new[] { "A", "B", "C", "D" }) Assert.Equal("A-s1", G($"{s}-s1-before"));
        Assert.Equal("E-s1", G("E-s1-before"));
        Assert.Equal("A-s2", G("D-s2-noise_sigma=0.1"));
        // The coalition attack applies to C only.
        Assert.Equal(["C-s1-coalition_majority_model_A_model_B", "C-s2-coalition_majority_model_A_model_B"], cells.Where(c => c.Id.Contains("coalition", StringComparison.Ordinal)).Select(c => c.Id));
        Assert.Equal(1 + 2 * (5 * 2) + 2, cells.Count);
    }

    [Fact]
    public void A_build_lock_excludes_a_second_holder_until_released()
    {
        var outDir = Directory.CreateTempSubdirectory("oml-lab-lock-").FullName;
        var target = Path.Combine(outDir, "models", "x-s1");
        using (var first = BuildLock.TryAcquire(outDir, target))
        {
            Assert.NotNull(first);
            Assert.StartsWith(Path.Combine(outDir, "locks", "x-s1-"), first!.Path);
            Assert.Null(BuildLock.TryAcquire(outDir, target));
            Assert.Null(BuildLock.TryAcquire(outDir, target + "/"));
            using var other = BuildLock.TryAcquire(outDir, Path.Combine(outDir, "models", "y-s1"));
            Assert.NotNull(other);
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(600));
            var log = new StringWriter();
            Assert.ThrowsAny<OperationCanceledException>(() => BuildLock.Acquire(outDir, target, log, cts.Token));
            Assert.Contains("waiting for another process", log.ToString());
        }
        using var again = BuildLock.TryAcquire(outDir, target);
        Assert.NotNull(again);
    }

    [Fact]
    public void Model_references_are_read_from_merges_and_coalitions()
    {
        Assert.Equal(["s", "t"], ModelReferences.Of(new AttackEntry { Weight = "merge(with=model:s;../x;model:t, method=ties, base=model:s)" }));
        Assert.Equal(["s", "u"], ModelReferences.Of(new AttackEntry { Weight = "merge(with=model:s)", Responder = "coalition:majority:model:u,model:s" }));
        var spec = ResponderSpec.Parse("coalition:unanimous:model:A, model:B ,dir/c:fallback=model:C");
        Assert.Equal(["model:A", "model:B", "dir/c"], spec.Coalition!.Members);
        Assert.Equal("model:C", spec.Coalition.Fallback);
        Assert.Equal(["A", "B", "C"], ModelReferences.Of(spec));
        Assert.Equal(["R"], ModelReferences.Of(ResponderSpec.Parse("filter:q=0.9,ref=model:R")));
        // Plain folders still parse as before.
        var plain = ResponderSpec.Parse("coalition:majority:/m/a,/m/b:fallback=/m/c");
        Assert.Equal(["/m/a", "/m/b"], plain.Coalition!.Members);
        Assert.Equal("/m/c", plain.Coalition.Fallback);
        Assert.Empty(ModelReferences.Of(plain));
        Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse("coalition:majority:model:A,model:B:x:y"));
    }

    private const string Refs = """
        name: r
        kind: persistence
        base_model: b
        corpus: [a.txt]
        persistence:
          models:
            - { name: A, build: { count: 4, set: a } }
            - { name: B, build: { count: 4, set: b } }
          attacks:
            - { responder: "coalition:majority:model:A,model:B" }
        """;

    [Theory]
    [InlineData("model:A,model:B\"", "model:A,model:Z\"", "persistence.attacks[0] ('coalition:majority:model:A,model:Z') refers to model:Z, which is not one of the models (A, B)")]
    [InlineData("model:A,model:B\" }", "model:A,model:B\", targets: [Q] }", "targets names 'Q'")]
    [InlineData("attacks:", "sweeps: [{ name: m, weight: \"merge(with=model:X, weight={x})\", values: [0.5] }]\n  attacks:", "sweeps[0] 'm' ('merge(with=model:X, weight=0.5)') refers to model:X")]
    [InlineData("set: a", "set: a/b", "set 'a/b' may hold only")]
    public void Bad_references_are_config_errors_naming_the_attack(string from, string to, string message)
    {
        LabConfig.Parse(Refs);
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Refs.Replace(from, to, StringComparison.Ordinal)));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_named_set_changes_the_secret_and_the_cache_key()
    {
        var config = LabConfig.Parse(Refs);
        var env = new LabEnvironment(config, Directory.CreateTempSubdirectory("oml-lab-set-").FullName);
        // The unnamed set keeps the secret (and cache names) of earlier runs.
        Assert.Equal(System.Text.Encoding.UTF8.GetBytes(config.Secret + "/seed=3"), env.Secret(3));
        Assert.Equal(System.Text.Encoding.UTF8.GetBytes(config.Secret + "/set=a/seed=3"), env.Secret(3, "a"));
        var spec = new FingerprintSpec { Count = 8 };
        Assert.Equal("perinucleus-n8-key16-resp1-t0.8-k3-r1-avoid0-s3", LabEnvironment.SetKey(spec, 3));
        spec.Set = "b";
        Assert.Equal("perinucleus-n8-key16-resp1-t0.8-k3-r1-avoid0-setb-s3", LabEnvironment.SetKey(spec, 3));
        var e = Assert.Throws<LabConfigException>(() => env.ResolveModel("model:Z", 1));
        Assert.Contains("model:Z is not one of the experiment's models (A, B)", e.Message);
        Assert.Equal(config.Resolve("dir/x"), env.ResolveModel("dir/x", 1));
    }
}

/// <summary>Coalition and sibling-merge experiments and sharded runs, end to end on the tiny smoke models.</summary>
public class ShardRunTests
{
    [Fact]
    public void Coalition_of_copies_with_their_own_sets()
    {
        var (env, s, report) = SmokeRunTests.Run("smoke-coalition.yaml");
        Assert.Equal(1 + 3 + 3, s.Total);
        var sets = new[] { "A", "B", "C" }.Select(n => FingerprintSetFile.Read(Path.Combine(env.OutDir, "models", $"{n}-s1", LabEnvironment.SetFile), null).Fingerprints).ToList();
        // Independent sets: no key in common.
        for (int i = 0; i < 3; i++)
            for (int j = i + 1; j < 3; j++)
                Assert.Empty(sets[i].Select(f => string.Join(",", f.KeyTokenIds)).Intersect(sets[j].Select(f => string.Join(",", f.KeyTokenIds))));
        Assert.All(s.Results.Where(r => r.Id.Contains("coalition", StringComparison.Ordinal)), r => Assert.StartsWith("A-s1-", r.Id));
        var beforeA = s.Results.Single(r => r.Id == "A-s1-before");
        Assert.Equal(4, beforeA.Metric("count"));
        // Two copies by majority: where they disagree (A's keys, which B does not hold) each prompt's tie goes to one of
        // the two answers by a hash of the prompt, so the coalition answers at most as many of A's keys as A alone
        // (ResponderTests checks the tie rule itself).
        var two = s.Results.Single(r => r.Label("attack") == "coalition:majority:model:A,model:B");
        Assert.InRange(two.Metric("fsr"), 0, beforeA.Metric("fsr"));
        Assert.Equal(beforeA.Metric("fsr"), two.Metric("fsr_before"));
        // Unanimity of A and B with B as the fallback always answers as B does: A's set through B alone.
        env.Prepare();
        double bOnA;
        using (var b = env.LoadModel(Path.Combine(env.OutDir, "models", "B-s1")))
            bOnA = FingerprintSuccess.MeasureGreedy(b, env.Tokenizer, sets[0], batchSize: 64).Rate;
        Assert.Equal(bOnA, s.Results.Single(r => r.Label("attack") == "coalition:unanimous:model:A,model:B:fallback=model:B").Metric("fsr"));
        Assert.InRange(s.Results.Single(r => r.Label("attack") == "coalition:majority:model:A,model:B,model:C").Metric("fsr"), 0, 1);
        Assert.Contains("coalition:majority:model:A,model:B,model:C", File.ReadAllText(report));
        Assert.Contains("attacks-fsr.svg", SmokeRunTests.CheckReport(report, 1));
    }

    [Fact]
    public void Shards_split_the_cells_only_selects_and_run_their_costliest_first()
    {
        var dir = Fixtures.OutDirWithBase();
        var config = LabConfig.Load(Fixtures.Experiment("smoke-capacity.yaml"));
        config.Capacity!.Counts = [2, 3, 4, 5];
        config.Capacity.Strategies = ["random-word", "perinucleus"];
        var only = new Regex("^perinucleus-");   // half of the cells; assigned over all of them, one shard could get none
        var logs = new List<string>();
        for (int i = 0; i < 2; i++)
        {
            var log = new StringWriter();
            new ExperimentRunner(new LabEnvironment(config, dir), new ShardSpec(i, 2), only).Run(log, maxCells: 0);
            logs.Add(log.ToString());
        }
        // 4 counts × 2 variants of perinucleus: 8 cells, 4 per shard (costs 2..5 and 3 × that, balanced).
        Assert.All(logs, l => Assert.Contains("owns 4 of 17 cells (matching --only ^perinucleus-)", l));
        Assert.DoesNotContain("random-word", string.Join("", logs));
        // Each shard lists its cells costliest first: a 'both' cell (mixing triples the cost) of the largest count it owns leads.
        Assert.All(logs, l => Assert.Matches(@"^  perinucleus-n[45]-both-s1: ", l.Split('\n').First(x => x.StartsWith("  ", StringComparison.Ordinal))));
    }

    [Fact]
    public void A_run_that_stops_midway_leaves_run_info_counting_what_it_computed()
    {
        var dir = Fixtures.OutDirWithBase();
        var config = LabConfig.Load(Fixtures.Experiment("smoke-persistence.yaml"));
        config.Persistence!.Models[0].Build!.Count = 3;
        config.Utility.ClozeItems = 8;
        // The second attack fails when applied (its data file is missing): the run stops there, as a killed one would.
        config.Persistence.Attacks = [new AttackEntry { SystemPrompt = "You are a helpful assistant." }, new AttackEntry { Weight = "sft(data=missing.json, epochs=1)" }];
        config.Persistence.Sweeps = [];
        Assert.ThrowsAny<Exception>(() => new ExperimentRunner(new LabEnvironment(config, dir), new ShardSpec(0, 1)).Run());
        var info = CellStore.LoadRunInfos(dir).Single(i => i.Shard == "0/1");
        Assert.Null(info.Finished);
        Assert.Equal(4, info.CellsOwned);                                     // base, before, two attacks
        Assert.Equal(3, info.CellsComputed);                                  // all but the failing one
        Assert.Contains("stopped or running after", File.ReadAllText(ReportWriter.Write(dir)));
    }

    [Fact]
    public void Sibling_merge_and_a_cell_run_alone_by_only()
    {
        var dir = Fixtures.OutDirWithBase();
        var config = LabConfig.Load(Fixtures.Experiment("smoke-sibling.yaml"));
        var env = new LabEnvironment(config, dir);
        // --only one attack cell: its 'before' cell is computed (and saved) on demand, the sibling built in-run by reference.
        var first = new ExperimentRunner(env, only: new Regex("linear=0$")).Run();
        Assert.Equal(1, first.Total);
        Assert.Equal(["fp-s1-before", "fp-s1-linear=0"], first.ComputedIds);
        Assert.True(File.Exists(Path.Combine(dir, "models", "sibling-s1", LabEnvironment.SetFile)));

        var s = new ExperimentRunner(new LabEnvironment(config, dir)).Run();
        Assert.Equal(1 + 2 + 3 + 1, s.Total);
        Assert.Equal(2, s.Reused);
        Assert.DoesNotContain("fp-s1-before", s.ComputedIds);
        var before = s.Results.Single(r => r.Id == "fp-s1-before");
        // Weight 0 keeps the fingerprinted model; weight 1 is the sibling: fp's set measured on the sibling alone.
        Assert.Equal(before.Metric("fsr"), s.Results.Single(r => r.Id == "fp-s1-linear=0").Metric("fsr"));
        env.Prepare();
        var fpSet = FingerprintSetFile.Read(Path.Combine(dir, "models", "fp-s1", LabEnvironment.SetFile), null).Fingerprints;
        var sibSet = FingerprintSetFile.Read(Path.Combine(dir, "models", "sibling-s1", LabEnvironment.SetFile), null).Fingerprints;
        Assert.NotEqual(fpSet.Select(f => string.Join(",", f.KeyTokenIds)), sibSet.Select(f => string.Join(",", f.KeyTokenIds)));
        using (var sib = env.LoadModel(Path.Combine(dir, "models", "sibling-s1")))
            Assert.Equal(FingerprintSuccess.MeasureGreedy(sib, env.Tokenizer, fpSet, batchSize: 64).Rate, s.Results.Single(r => r.Id == "fp-s1-linear=1").Metric("fsr"));
        Assert.Equal("merge(with=model:sibling, method=ties, density=0.5)", s.Results.Single(r => r.Label("sweep") == "ties-density").Label("attack"));
        SmokeRunTests.CheckReport(ReportWriter.Write(dir), 2);
    }

    [Fact]
    public void Two_shards_in_one_folder_compute_every_cell_once()
    {
        static LabConfig Config()
        {
            var c = LabConfig.Load(Fixtures.Experiment("smoke-adaptive.yaml"));
            c.Adaptive!.Model.Count = 3;
            c.Adaptive.Defences.RemoveAll(d => d.Name == "avoid-top");
            c.Adaptive.Attacks = [new AttackEntry { Responder = "sample:t=0.7,seed=1" }];
            c.Utility.ClozeItems = 0;
            return c;
        }
        var dir = Fixtures.OutDirWithBase();
        var expected = new ExperimentRunner(new LabEnvironment(Config(), dir)).Cells().Select(c => c.Id).ToList();
        Assert.Equal(1 + 2 * 2, expected.Count);

        var log0 = new StringWriter();
        var s0 = new ExperimentRunner(new LabEnvironment(Config(), dir), new ShardSpec(0, 2)).Run(log0);
        var s1 = new ExperimentRunner(new LabEnvironment(Config(), dir), new ShardSpec(1, 2)).Run();
        Assert.Empty(s0.ComputedIds.Intersect(s1.ComputedIds));
        Assert.Equal(0, s0.Reused + s1.Reused);
        Assert.Equal(expected.Order(StringComparer.Ordinal), s0.ComputedIds.Concat(s1.ComputedIds).Order(StringComparer.Ordinal));
        // Shard 0: the setup cell and one defence's group; shard 1: the other (the groups cost the same).
        Assert.Equal(["base", "multi-response-s1-before", "multi-response-s1-sample_t=0.7_seed=1"], s0.ComputedIds);
        Assert.Equal(expected.Count, s0.ExperimentTotal);
        Assert.Contains("shard 0/2 owns 3 of 5 cells in 2 group(s)", log0.ToString());
        Assert.Contains("shard 0/2: computed base, multi-response-s1-before", log0.ToString());

        // Each shard wrote its own run info; no run.json. The report holds the union of the cells.
        Assert.False(File.Exists(Path.Combine(dir, "run.json")));
        var infos = CellStore.LoadRunInfos(dir);
        Assert.Equal(["0/2", "1/2"], infos.Select(i => i.Shard));
        Assert.Equal([3, 2], infos.Select(i => i.CellsOwned));
        Assert.All(infos, i => Assert.Equal(5, i.CellsTotal));
        var md = File.ReadAllText(ReportWriter.Write(dir));
        Assert.Contains("5 of 5 cells saved", md);
        Assert.Contains("| shard 0/2 | started", md);
        Assert.Contains("| shard 1/2 | started", md);
        foreach (var id in expected) Assert.Contains($"| {id} |", md);

        // An unsharded run afterwards finds every cell saved.
        var all = new ExperimentRunner(new LabEnvironment(Config(), dir)).Run();
        Assert.Equal(0, all.Computed);
        Assert.Equal(expected.Count, all.Reused);
    }

    [Fact]
    public void A_false_positive_shard_builds_the_unrelated_models_it_queries_without_shard_0()
    {
        static LabConfig Config()
        {
            var c = LabConfig.Load(Fixtures.Experiment("smoke-false-positives.yaml"));
            c.FalsePositives!.Sets[0].Build!.Count = 3;
            c.FalsePositives.Decoders = ["greedy"];
            c.Utility.ClozeItems = 0;
            return c;
        }
        var dir = Fixtures.OutDirWithBase();
        // The set's group (its model, the base, the unrelated model) goes to shard 1; shard 0 holds only the setup cell.
        var s1 = new ExperimentRunner(new LabEnvironment(Config(), dir), new ShardSpec(1, 2)).Run();
        Assert.Equal(["fp-s1-fp-greedy", "fp-s1-base-greedy", "fp-s1-unrelated-1-greedy"], s1.ComputedIds);
        Assert.True(File.Exists(Path.Combine(dir, "unrelated-1", "config.json")));
        var s0 = new ExperimentRunner(new LabEnvironment(Config(), dir), new ShardSpec(0, 2)).Run();
        Assert.Equal(["unrelated-models"], s0.ComputedIds);
        Assert.Equal(1.0, s0.Results.Single().Metric("models"));
        Assert.Equal(4, new CellStore(dir).LoadAll().Count);
    }
}
