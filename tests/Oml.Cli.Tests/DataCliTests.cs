using System.Text.Json.Nodes;
using Oml.Models.Tokenizers;

namespace Oml.Cli.Tests;

/// <summary><c>oml tokenizer train</c> and <c>oml data</c>: exit codes, outputs and error messages.</summary>
[Collection(nameof(CliTests))]
public class DataCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-datacli-" + Guid.NewGuid().ToString("N"));

    public DataCliTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void Tokenizer_train_writes_a_loadable_tokenizer()
    {
        var txt = Path.Combine(_dir, "a.txt");
        File.WriteAllText(txt, "the cat sat on the mat\n\nthe dog sat on the log\n");
        var jsonl = Path.Combine(_dir, "b.jsonl");
        File.WriteAllText(jsonl, "{\"text\": \"the cat and the dog\"}\n");
        var outDir = Path.Combine(_dir, "tok");
        var (code, stdout, err) = Run("tokenizer", "train", "--input", txt, jsonl, "--vocab-size", "270", "--min-frequency", "1", "--out", outDir);
        Assert.True(code == 0, err);
        Assert.Contains("merges", stdout);
        var tok = Tokenizer.FromFolder(outDir);
        Assert.Equal(273, tok.VocabSize);
        Assert.Equal("the cat sat", tok.Decode(tok.Encode("the cat sat")));
        Assert.True(tok.Encode(" the").Length == 1, "' the' (the most frequent pre-token) should be one token");
    }

    [Fact]
    public void Tokenizer_train_rejects_bad_arguments()
    {
        var txt = Path.Combine(_dir, "a.txt");
        File.WriteAllText(txt, "x");
        Assert.Equal(Cli.Usage, Run("tokenizer", "train", "--input", txt, "--vocab-size", "100", "--out", _dir).Code);
        var (code, _, err) = Run("tokenizer", "train", "--input", Path.Combine(_dir, "missing.txt"), "--vocab-size", "300", "--out", _dir);
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("missing.txt", err);
        var bad = Path.Combine(_dir, "bad.jsonl");
        File.WriteAllText(bad, "{\"txt\": 1}\n");
        (code, _, err) = Run("tokenizer", "train", "--input", bad, "--vocab-size", "300", "--out", _dir);
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("line 1", err);
    }

    [Fact]
    public void Corpus_without_the_packages_names_them()
    {
        var (code, _, err) = Run("data", "corpus", "--out", Path.Combine(_dir, "c"), "--root", _dir);
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("dict-gcide", err);
        Assert.Contains("python3.11-doc", err);
        Assert.False(File.Exists(Path.Combine(_dir, "c", "manifest.json")));
    }

    [Fact]
    public void Instructions_need_a_corpus()
    {
        var (code, _, err) = Run("data", "instructions", "--corpus", _dir, "--out", Path.Combine(_dir, "i"));
        Assert.Equal(Cli.Failure, code);
        Assert.Contains("lexicon.jsonl", err);
        Assert.Equal(Cli.Usage, Run("data", "instructions", "--corpus", _dir, "--out", _dir, "--count", "0").Code);
    }
}
