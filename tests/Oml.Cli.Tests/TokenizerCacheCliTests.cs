using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Models.Tokenizers;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>oml</c> as a separate process, as a user runs it: commands read large tokenizers through the tokenizer cache
/// (OML_TOKENIZER_CACHE), and the process ends without the runtime's teardown (FastExit) only after everything it
/// printed is out: a large JSON on a pipe arrives whole, and exit codes are kept.
/// </summary>
public sealed class TokenizerCacheCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-tokcache-cli-" + Guid.NewGuid().ToString("N"));

    public TokenizerCacheCliTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Spawn(IDictionary<string, string> env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "oml.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(entireProcessTree: true); throw new TimeoutException("oml did not finish in 5 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static string Llama3()
    {
        var root = Environment.GetEnvironmentVariable("OML_TOKENIZERS_DIR") ?? Path.Combine(RepoRoot.Path, "artifacts", "tokenizers");
        var dir = Path.Combine(root, "llama3");
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw new FileNotFoundException($"the llama3 tokenizer is not in {root}: run scripts/fetch-tokenizers.sh (scripts/test.sh does)");
        return dir;
    }

    [Fact]
    public void Tokenize_goes_through_the_cache_and_prints_everything_before_it_exits()
    {
        var tokenizer = Llama3();
        var cacheDir = Path.Combine(_dir, "cache");
        var env = new Dictionary<string, string> { [TokenizerCache.EnvironmentVariable] = cacheDir };
        // Every paragraph of the docs: hundreds of KB of ids and text, far more than a pipe holds.
        var texts = Directory.EnumerateFiles(Path.Combine(RepoRoot.Path, "docs"), "*.md").Order(StringComparer.Ordinal)
            .SelectMany(f => File.ReadAllText(f).Split("\n\n")).Where(t => t.Length > 0).ToList();
        var input = Path.Combine(_dir, "texts.json");
        File.WriteAllText(input, JsonSerializer.Serialize(texts));
        var expected = Tokenizer.FromFolder(tokenizer);

        for (var run = 0; run < 2; run++)   // the first builds the cache file, the second reads it
        {
            var (code, stdout, stderr) = Spawn(env, "tokenize", "--tokenizer", tokenizer, "--input", input);
            Assert.True(code == 0, $"run {run}: exit {code}: {stderr}");
            Assert.True(stdout.Length > 1 << 20, $"run {run}: only {stdout.Length} characters printed");
            var results = JsonNode.Parse(stdout)!.AsArray();
            Assert.Equal(texts.Count, results.Count);
            for (var i = 0; i < texts.Count; i++)
                Assert.Equal(expected.Encode(texts[i]), results[i]!["ids"]!.AsArray().Select(n => (int)n!).ToArray());
            var files = Directory.GetFiles(cacheDir);
            Assert.Equal([new TokenizerCache(cacheDir).PathFor(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(tokenizer, "tokenizer.json"))))], files);
        }

        // Off: nothing is written.
        var off = Path.Combine(_dir, "off");
        var (offCode, offOut, _) = Spawn(new Dictionary<string, string> { [TokenizerCache.EnvironmentVariable] = "off", ["XDG_CACHE_HOME"] = off },
            "tokenize", "--tokenizer", tokenizer, "--text", "Hello, world");
        Assert.Equal(0, offCode);
        Assert.Equal(JsonSerializer.Serialize(new { ids = expected.Encode("Hello, world") }), offOut.Trim());
        Assert.False(Directory.Exists(off));
    }

    [Fact]
    public void Exit_codes_and_error_lines_survive_the_fast_exit()
    {
        var env = new Dictionary<string, string> { [TokenizerCache.EnvironmentVariable] = "off" };
        var (code, _, stderr) = Spawn(env, "tokenize", "--tokenizer", Llama3());   // neither --text nor --input
        Assert.Equal(2, code);
        Assert.Contains("give exactly one of --text and --input", stderr);
        (code, _, stderr) = Spawn(env, "tokenize", "--tokenizer", Path.Combine(_dir, "missing"), "--text", "x");
        Assert.Equal(1, code);
        Assert.StartsWith("oml: error:", stderr.Trim());
    }
}
