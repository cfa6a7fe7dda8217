using Oml.Lab.Experiments;

namespace Oml.Cli.Tests;

/// <summary><c>oml lab run</c> and <c>oml lab report</c>: exit codes and messages, and re-rendering from saved cells.</summary>
[Collection(nameof(CliTests))]
public sealed class LabCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-lab-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_bad_config_is_a_failure_naming_the_field()
    {
        var cfg = Path.Combine(_dir, "bad.yaml");
        File.WriteAllText(cfg, "name: x\nkind: capacityy\nbase_model: b\ncorpus: [a.txt]\n");
        var (code, _, err) = CliRunner.Run("lab", "run", cfg, "--out", Path.Combine(_dir, "out"));
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("'kind' must be one of capacity, persistence, false-positives, adaptive", err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out")));

        (code, _, err) = CliRunner.Run("lab", "run", Path.Combine(_dir, "missing.yaml"));
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("no such config file", err);
    }

    [Theory]
    [InlineData("3/2", "the shard index must be below 2")]
    [InlineData("-1/2", "expected I/N")]
    [InlineData("x", "expected I/N")]
    [InlineData("0/0", "the shard count N must be at least 1")]
    public void A_bad_shard_is_a_usage_error(string shard, string message)
    {
        var cfg = Path.Combine(_dir, "c.yaml");
        File.WriteAllText(cfg, "name: c\nkind: capacity\nbase_model: nowhere\ncorpus: [a.txt]\ncapacity: { strategies: [perinucleus], counts: [4], variants: [{ name: plain }] }\n");
        var (code, _, err) = CliRunner.Run("lab", "run", cfg, "--out", Path.Combine(_dir, "out"), $"--shard={shard}");
        Assert.Equal(Cli.Usage, code);
        Assert.Contains(message, err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out")));
        (code, _, err) = CliRunner.Run("lab", "run", cfg, "--out", Path.Combine(_dir, "out"), "--only", "(unclosed");
        Assert.Equal(Cli.Usage, code);
        Assert.Contains("--only '(unclosed' is not a regular expression", err);
    }

    [Fact]
    public void A_missing_base_model_fails_with_how_to_make_it()
    {
        var cfg = Path.Combine(_dir, "c.yaml");
        File.WriteAllText(Path.Combine(_dir, "a.txt"), "Some text. More text here for the corpus.\n");
        File.WriteAllText(cfg, "name: c\nkind: capacity\nbase_model: nowhere\ncorpus: [a.txt]\ncapacity: { strategies: [perinucleus], counts: [4], variants: [{ name: plain }] }\n");
        var (code, _, err) = CliRunner.Run("lab", "run", cfg, "--out", Path.Combine(_dir, "out"), "--quiet");
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("oml train --config lab/recipes/base.yaml", err);
    }

    [Fact]
    public void Report_re_renders_from_saved_cells()
    {
        var (code, _, err) = CliRunner.Run("lab", "report", Path.Combine(_dir, "none"));
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("is not the output folder of a lab run", err);

        var yaml = "name: fp\nkind: false-positives\nbase_model: b\ncorpus: [a.txt]\nfalse_positives:\n  sets: [{ name: s, path: p }]\n  unrelated: [{ name: u, path: q }]\n  query_keys: 2\n  draws: 20\n";
        CellStore.SaveRunInfo(_dir, new RunInfo { Name = "fp", Kind = "false-positives", ConfigText = yaml, CellsTotal = 2, GitCommit = "abc" });
        var store = new CellStore(_dir);
        store.Save(new CellResult
        {
            Id = "s-fp", Order = 0, Labels = { ["set"] = "s", ["model"] = "s", ["role"] = "fingerprinted", ["decoder"] = "greedy", ["seed"] = "1" },
            Metrics = { ["hits"] = 3, ["queried"] = 4, ["hit_rate"] = 0.75 }, Series = { ["per_key"] = [1, 1, 0, 1] },
        });
        store.Save(new CellResult
        {
            Id = "s-u", Order = 1, Labels = { ["set"] = "s", ["model"] = "u", ["role"] = "unrelated", ["decoder"] = "greedy", ["seed"] = "1" },
            Metrics = { ["hits"] = 0, ["queried"] = 4, ["hit_rate"] = 0 }, Series = { ["per_key"] = [0, 0, 0, 0] },
        });
        (code, var output, err) = CliRunner.Run("lab", "report", _dir);
        Assert.True(code == Cli.Ok, err);
        Assert.Contains("report.md", output);
        var md = File.ReadAllText(Path.Combine(_dir, "report.md"));
        // 0 of 4 unrelated hits: rate 0, so one key suffices at the point estimate; the 95 % bound 1 − 0.05^(1/4) ≈ 52.7 %.
        Assert.Contains("| s | greedy | 0/4 = 0.0 % | 52.7 % |", md);
        Assert.True(File.Exists(Path.Combine(_dir, "roc-s.svg")));
        Assert.True(File.Exists(Path.Combine(_dir, "hit-rates.svg")));
        (code, var json, err) = CliRunner.Run("lab", "report", _dir, "--json");
        Assert.True(code == Cli.Ok, err);
        Assert.Equal(output.Trim(), System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject()["report"]!.GetValue<string>());
    }

    [Fact]
    public void Bad_worker_options_are_usage_errors()
    {
        var cfg = Path.Combine(_dir, "c.yaml");
        File.WriteAllText(cfg, "name: c\nkind: capacity\nbase_model: nowhere\ncorpus: [a.txt]\ncapacity: { strategies: [perinucleus], counts: [4], variants: [{ name: plain }] }\n");
        var outDir = Path.Combine(_dir, "out");
        foreach (var (args, message) in new (string[], string)[]
        {
            (["--workers", "1"], "--workers must be at least 2"),
            (["--workers", "2", "--shard", "0/2"], "give --workers or --shard, not both"),
            (["--time-limit", "5"], "--time-limit needs --workers"),
            (["--workers", "2", "--time-limit", "0"], "--time-limit must be positive"),
            (["--workers", "2", "--only", "(unclosed"], "is not a regular expression"),
        })
        {
            var (code, _, err) = CliRunner.Run(["lab", "run", cfg, "--out", outDir, .. args]);
            Assert.Equal(Cli.Usage, code);
            Assert.Contains(message, err);
        }
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void Workers_split_a_run_into_shard_processes_that_together_compute_every_cell()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Oml.sln"))) root = Path.GetDirectoryName(root.TrimEnd('/'))!;
        // The workers are real processes: `dotnet oml.dll` from this test's output folder.
        var previous = Environment.GetEnvironmentVariable(Oml.Lab.Experiments.LabWorkers.WorkerVariable);
        Environment.SetEnvironmentVariable(Oml.Lab.Experiments.LabWorkers.WorkerVariable, Path.Combine(AppContext.BaseDirectory, "oml.dll"));
        try
        {
            var outDir = Path.Combine(_dir, "workers");
            var (code, output, err) = CliRunner.Run("lab", "run", Path.Combine(root, "lab", "experiments", "smoke-capacity.yaml"), "--out", outDir, "--workers", "2", "--only", "-n4-");
            Assert.True(code == Cli.Ok, err + File.ReadAllText(Path.Combine(outDir, "shard-0.log")));
            // smoke-capacity: 2 strategies × 2 variants at 4 fingerprints, plus the base cell that the first shard owns.
            var cells = Directory.GetFiles(Path.Combine(outDir, "cells"), "*.json").Select(Path.GetFileNameWithoutExtension).Order().ToList();
            Assert.Equal(["perinucleus-n4-both-s1", "perinucleus-n4-plain-s1", "random-word-n4-both-s1", "random-word-n4-plain-s1"], cells);
            Assert.Contains("2 workers, 0 restarts, 4 cells saved", output);
            for (int i = 0; i < 2; i++)
            {
                var log = File.ReadAllText(Path.Combine(outDir, $"shard-{i}.log"));
                Assert.Contains($"--shard {i}/2", log);
                Assert.Contains("exit 0", log);
                Assert.True(File.Exists(Path.Combine(outDir, $"run-shard-{i}-of-2.json")));
            }
            Assert.Contains("perinucleus", File.ReadAllText(Path.Combine(outDir, "report.md")));
        }
        finally
        {
            Environment.SetEnvironmentVariable(Oml.Lab.Experiments.LabWorkers.WorkerVariable, previous);
        }
    }
}
