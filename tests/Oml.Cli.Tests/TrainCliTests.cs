using System.Text.Json.Nodes;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Cli.Tests;

/// <summary><c>oml train</c> end to end on a tiny text file.</summary>
[Collection(nameof(CliTests))]
public sealed class TrainCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-train-cli-" + Guid.NewGuid().ToString("N"));

    private static readonly string[] Sentences =
    [
        "The quick brown fox jumps over the lazy dog.", "A licence grants the right to copy and modify the program.",
        "Every copy must carry this notice.", "The software is provided as is, without warranty of any kind.",
    ];

    public TrainCliTests()
    {
        Directory.CreateDirectory(_dir);
        var text = string.Join("\n\n", Enumerable.Range(0, 40).Select(i => Sentences[i % Sentences.Length]));
        File.WriteAllText(Path.Combine(_dir, "train.txt"), text);
        File.WriteAllText(Path.Combine(_dir, "heldout.txt"), string.Join("\n\n", Sentences));
        var (vocab, merges) = BpeTrainer.Train(text.Split("\n\n"), 300);
        BpeTrainer.Save(Path.Combine(_dir, "tok"), vocab, merges);
    }

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void Train_from_a_recipe_with_flag_overrides_saves_a_sharded_loadable_model_and_a_log()
    {
        var recipe = Path.Combine(_dir, "r.yaml");
        File.WriteAllText(recipe, $"""
            data: {Path.Combine(_dir, "train.txt")}
            eval-data: {Path.Combine(_dir, "heldout.txt")}
            tokenizer: {Path.Combine(_dir, "tok")}
            hidden: 32
            layers: 1
            heads: 2
            kv-heads: 1
            context: 16
            steps: 100
            batch: 4
            lr: 1e-2
            log-every: 2
            """);
        var outDir = Path.Combine(_dir, "model");
        var log = Path.Combine(_dir, "logs", "run.jsonl");
        var (code, stdout, stderr) = CliRunner.Run("train", "--config", recipe, "--steps", "6", "--out", outDir, "--log", log, "--max-shard-mb", "0.02",
            "--save-dtype", "bfloat16");
        Assert.True(code == 0, stderr);
        Assert.Contains("saved", stdout);
        Assert.Contains("held-out loss", stdout);
        Assert.True(File.Exists(Path.Combine(outDir, ModelFolder.IndexFile)), "sharded with an index");
        Assert.True(ModelFolder.WeightFiles(outDir).Count >= 2);
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        using (var model = ModelFolder.Load(outDir))
        {
            Assert.Equal(32, model.Config.HiddenSize);
            Assert.Equal(Oml.Engine.DType.BFloat16, model.DType);
            Assert.Equal(Tokenizer.FromFolder(Path.Combine(_dir, "tok")).VocabSize, model.Config.VocabSize);
        }
        var lines = File.ReadAllLines(log).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal([2L, 4L, 6L], lines.Select(l => l["step"]!.GetValue<long>()));
        Assert.All(lines, l => Assert.Equal(6, l["steps"]!.GetValue<long>())); // --steps overrode the recipe's 100
        Assert.NotNull(lines[^1]["eval_loss"]);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "oml-training.json")))!;
        Assert.Equal(6, manifest["steps"]!.GetValue<long>());
        Assert.Equal(0.01, manifest["recipe"]!["lr"]!.GetValue<double>());
        Assert.Equal(6, manifest["recipe"]!["steps"]!.GetValue<long>());
    }

    [Fact]
    public void Fine_tuning_with_lora_on_alpaca_data_trains_the_responses_and_saves_a_merged_model()
    {
        var baseDir = Path.Combine(_dir, "base");
        var (code, stdout0, err) = CliRunner.Run("train", "--data", Path.Combine(_dir, "train.txt"), "--tokenizer", Path.Combine(_dir, "tok"), "--hidden", "32",
            "--layers", "1", "--heads", "2", "--context", "32", "--steps", "2", "--batch", "2", "--out", baseDir, "--json");
        Assert.True(code == 0, err);
        // --json: stdout is the training summary (oml-training.json) with the folder and its weight files.
        var summary = Assert.IsType<JsonObject>(JsonNode.Parse(stdout0));
        Assert.Equal(baseDir, summary["out"]!.GetValue<string>());
        Assert.Equal(2, summary["steps"]!.GetValue<long>());
        Assert.Equal(["model.safetensors"], summary["weight_files"]!.AsArray().Select(n => n!.GetValue<string>()));
        var written = JsonNode.Parse(File.ReadAllText(Path.Combine(baseDir, "oml-training.json")))!;
        Assert.Equal(written["loss"]!.GetValue<double>(), summary["loss"]!.GetValue<double>());
        Assert.Equal(written["parameters"]!.GetValue<long>(), summary["parameters"]!.GetValue<long>());
        var alpaca = Path.Combine(_dir, "sft.json");
        File.WriteAllText(alpaca, "[" + string.Join(",", Sentences.Select((s, i) =>
            $$"""{"instruction": "Say sentence {{i}}.", "output": "{{s}}"}""")) + "]");
        var tuned = Path.Combine(_dir, "tuned");
        (code, var stdout, err) = CliRunner.Run("train", "--init", baseDir, "--mode", "sft", "--data", alpaca, "--lora", "2", "--steps", "4", "--batch-size", "2",
            "--lr", "1e-2", "--context", "64", "--out", tuned);
        Assert.True(code == 0, err);
        Assert.Contains("4 examples", err);
        Assert.Contains("LoRA rank 2", err);
        using var a = ModelFolder.Load(baseDir);
        using var b = ModelFolder.Load(tuned);
        Assert.Equal(a.Parameters.Keys.Order(), b.Parameters.Keys.Order()); // adapters merged away
        Assert.Equal(a.Parameters["model.embed_tokens.weight"].ToBytes(), b.Parameters["model.embed_tokens.weight"].ToBytes());
        Assert.NotEqual(a.Parameters["model.layers.0.mlp.up_proj.weight"].ToBytes(), b.Parameters["model.layers.0.mlp.up_proj.weight"].ToBytes());
    }

    private string[] Tiny(string outDir, string ck, int steps) =>
    [
        "train", "--data", Path.Combine(_dir, "train.txt"), "--tokenizer", Path.Combine(_dir, "tok"), "--hidden", "32", "--layers", "1", "--heads", "2",
        "--context", "16", "--batch-size", "4", "--lr", "1e-2", "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "--log-every", "2", "--checkpoint-dir", ck, "--out", outDir,
    ];

    [Fact]
    public void A_time_limit_stops_with_a_checkpoint_and_the_same_command_resumes_from_it()
    {
        // A run far longer than its limit: it stops after some step N with a checkpoint of N; the same command goes on from
        // N and stops again later. (That a resumed run ends bit-identical to an uninterrupted one: TrainingTests.)
        var outDir = Path.Combine(_dir, "stopped");
        var ck = Path.Combine(_dir, "ck");
        long After(string err)
        {
            var m = System.Text.RegularExpressions.Regex.Match(err, @"stopped at the time limit \(2 s\) after step ([\d,]+) of 1,000,000; its checkpoint is in .*: the same command resumes there");
            Assert.True(m.Success, err);
            return long.Parse(m.Groups[1].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
        }
        var (code, _, err) = CliRunner.Run([.. Tiny(outDir, ck, 1_000_000), "--time-limit", "2"]);
        Assert.Equal(Cli.Stopped, code);
        long first = After(err);
        Assert.True(first >= 1);
        Assert.False(Directory.Exists(outDir), "a stopped run saves no model");
        Assert.Equal(first, Oml.Models.Training.TrainingCheckpoint.Latest(ck)!.Step);

        (code, _, err) = CliRunner.Run([.. Tiny(outDir, ck, 1_000_000), "--time-limit", "2"]);
        Assert.Equal(Cli.Stopped, code);
        Assert.Contains($"resuming from the checkpoint at step {first}", err);
        long second = After(err);
        Assert.True(second > first, $"{second} after {first}");
        Assert.Equal(second, Oml.Models.Training.TrainingCheckpoint.Latest(ck)!.Step);

        // A limit that passes while the data is read ends before the first step: nothing to resume, said so.
        (code, _, err) = CliRunner.Run([.. Tiny(Path.Combine(_dir, "early"), Path.Combine(_dir, "ck-early"), 12), "--time-limit", "0.001"]);
        Assert.Equal(Cli.Stopped, code);
        Assert.Contains("stopped at the time limit (0.001 s) before training began", err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "early")));

        // Without a checkpoint folder there is nothing to resume from: refused before any work.
        (code, _, err) = CliRunner.Run("train", "--data", Path.Combine(_dir, "train.txt"), "--tokenizer", Path.Combine(_dir, "tok"), "--hidden", "32",
            "--layers", "1", "--heads", "2", "--steps", "2", "--out", Path.Combine(_dir, "y"), "--time-limit", "60");
        Assert.Equal(Cli.Usage, code);
        Assert.Contains("--time-limit needs --checkpoint-dir", err);
        foreach (var bad in new[] { "-1", "5e6", "1e300" })
        {
            (code, _, err) = CliRunner.Run([.. Tiny(Path.Combine(_dir, "y"), ck, 2), "--time-limit", bad]);
            Assert.Equal(Cli.Usage, code);
            Assert.Contains("--time-limit must be a positive number of seconds up to 4,000,000", err);
        }
    }

    [Theory]
    [InlineData(1)]   // one process
    [InlineData(2)]   // a launcher and two ranks: the launcher passes the signal on and waits for rank 0's checkpoint
    public async Task Sigterm_stops_at_the_end_of_a_step_with_a_checkpoint_of_that_step(int processes)
    {
        var ck = Path.Combine(_dir, $"ck-term-{processes}");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "oml.dll"));
        foreach (var a in Tiny(Path.Combine(_dir, "term"), ck, 1_000_000)) psi.ArgumentList.Add(a);
        if (processes > 1) foreach (var a in new[] { "--processes", processes.ToString(System.Globalization.CultureInfo.InvariantCulture) }) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        try
        {
            var stdout = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var err = new System.Text.StringBuilder();
            using var patience = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            patience.CancelAfter(TimeSpan.FromMinutes(3));
            // Signal once it trains (its progress lines), then read the rest.
            while (await p.StandardError.ReadLineAsync(patience.Token) is { } line)
            {
                err.AppendLine(line);
                if (line.Contains("step      4/", StringComparison.Ordinal)) break;
            }
            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
                await kill.WaitForExitAsync(patience.Token);
            err.Append(await p.StandardError.ReadToEndAsync(patience.Token));
            await p.WaitForExitAsync(patience.Token);
            string text = err.ToString();
            Assert.True(p.ExitCode == Cli.Stopped, text);
            Assert.Contains("SIGTERM: stopping at the end of this step", text);
            Assert.DoesNotContain("oml: error", text);
            var m = System.Text.RegularExpressions.Regex.Match(text, @"stopped on request after step ([\d,]+) of 1,000,000");
            Assert.True(m.Success, text);
            long step = long.Parse(m.Groups[1].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(step >= 4, text);
            Assert.Equal(step, Oml.Models.Training.TrainingCheckpoint.Latest(ck)!.Step);
            Assert.False(Directory.Exists(Path.Combine(_dir, "term")));
            await stdout;
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public void Bad_recipes_and_flags_fail_with_a_clear_message()
    {
        var recipe = Path.Combine(_dir, "bad.yaml");
        File.WriteAllText(recipe, "steps: 10\nbatch: zero\n");
        var (code, _, err) = CliRunner.Run("train", "--config", recipe, "--out", Path.Combine(_dir, "x"));
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("line 2: 'batch' must be an integer, not 'zero'", err);

        (code, _, err) = CliRunner.Run("train", "--data", Path.Combine(_dir, "train.txt"), "--out", Path.Combine(_dir, "x"), "--steps", "1");
        Assert.Equal(Cli.Usage, code);
        Assert.Contains("needs --tokenizer", err);

        (code, _, err) = CliRunner.Run("train", "--data", Path.Combine(_dir, "train.txt"), "--tokenizer", Path.Combine(_dir, "tok"), "--out",
            Path.Combine(_dir, "x"), "--steps", "1", "--hidden", "30", "--heads", "4");
        Assert.Equal(Cli.Usage, code);
        Assert.Contains("multiple of --heads", err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "x")));
    }
}
