using System.Text.Json.Nodes;

namespace Oml.Cli.Tests;

/// <summary><c>oml trace simulate</c>, run in-process (in the CLI tests' non-parallel collection, which swaps Console).</summary>
[Collection(nameof(CliTests))]
public class TraceCliTests
{
    [Fact]
    public void Simulate_prints_a_row_per_cell_and_writes_json()
    {
        var json = Path.Combine(Path.GetTempPath(), $"oml-trace-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output, err) = CliRunner.Run("trace", "simulate", "--hosts", "100", "--coalition", "1,2", "--strategies", "majority,or",
                "--lengths", "128", "--trials", "20", "--noise-loss", "0,0.2", "--noise-false-hit", "0.01", "--json-out", json);
            Assert.True(code == 0, err);
            var rows = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(1 + 2 * 2 * 2 * 2, rows.Length);   // header + schemes × coalitions × strategies × noises
            Assert.Contains("P(catch)", rows[0]);
            var doc = JsonNode.Parse(File.ReadAllText(json))!;
            Assert.Equal(1e-3 / 100, doc["per_host_bound"]!.GetValue<double>(), 15);
            var results = doc["results"]!.AsArray();
            Assert.Equal(16, results.Count);
            var single = results.Where(r => r!["coalition"]!.GetValue<int>() == 1 && r["noise_loss"]!.GetValue<double>() == 0).ToList();
            Assert.All(single, r => Assert.Equal(1.0, r!["p_catch"]!.GetValue<double>()));
            Assert.Contains(results, r => r!["strategy"]!.GetValue<string>() == "any");
        }
        finally
        {
            File.Delete(json);
        }
    }

    [Fact]
    public void Leak_budget_prints_the_claims_a_set_supports()
    {
        var (code, output, err) = CliRunner.Run("trace", "leak-budget", "--set-size", "1024", "--recall", "0.87", "--near-dup-rate", "0,0.001");
        Assert.True(code == 0, err);
        var rows = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, rows.Length);
        Assert.Equal("78", rows[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]);   // 1024 / 13 keys per claim
        Assert.Equal("32", rows[2].Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]);
        var bad = CliRunner.Run("trace", "leak-budget", "--near-dup-rate", "1.5");
        Assert.Equal(2, bad.Code);
        Assert.Contains("near-duplicate rate", bad.Err);
    }

    [Fact]
    public void Simulate_rejects_bad_arguments_with_usage_errors()
    {
        var r = CliRunner.Run("trace", "simulate", "--hosts", "3", "--coalition", "4");
        Assert.Equal(2, r.Code);
        Assert.Contains("bigger than the 3 hosts", r.Err);
        r = CliRunner.Run("trace", "simulate", "--lengths", "0");
        Assert.Equal(2, r.Code);
        r = CliRunner.Run("trace", "simulate", "--strategies", "average");
        Assert.Equal(2, r.Code);
        Assert.Contains("unknown pirate strategy", r.Err);
        r = CliRunner.Run("trace", "simulate", "--cutoff", "0.7");
        Assert.Equal(2, r.Code);
        r = CliRunner.Run("trace", "simulate", "--noise-loss", "0,0.1,0.2", "--noise-false-hit", "0,0.1");
        Assert.Equal(2, r.Code);
        r = CliRunner.Run("trace", "simulate", "--scheme", "boneh-shaw");
        Assert.Equal(2, r.Code);
    }
}
