using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models;

namespace Oml.Cli.Tests;

/// <summary>The command-line forms that scripts rely on, run in-process with captured output.</summary>
[Collection(nameof(CliTests))]
[CollectionDefinition(nameof(CliTests), DisableParallelization = true)]
public class CliTests
{
    private static readonly string Root = RepoRoot.Path;
    private static string Fixture(string model) => Path.Combine(Root, "tests", "Oml.Models.Tests", "fixtures", "models", model);
    private static string Tokenizer(string name) => Path.Combine(Root, "artifacts", "tokenizers", name);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void Tokenize_prints_ids_for_text_and_ids_with_decodings_for_an_input_file()
    {
        var (code, output, _) = Run("tokenize", "--tokenizer", Tokenizer("llama3"), "--text", "Hello world");
        Assert.Equal(0, code);
        var ids = JsonNode.Parse(output)!["ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        Assert.Equal([9906, 1917], ids);

        var input = Path.GetTempFileName();
        File.WriteAllText(input, "[\"a b\", \"你好\"]");
        (code, output, _) = Run("tokenize", "--tokenizer", Path.Combine(Tokenizer("qwen3"), "tokenizer.json"), "--input", input);
        Assert.Equal(0, code);
        var arr = JsonNode.Parse(output)!.AsArray();
        Assert.Equal(2, arr.Count);
        Assert.Equal("你好", arr[1]!["decoded"]!.GetValue<string>());
        File.Delete(input);
    }

    [Fact]
    public void Generate_json_matches_the_library_and_sampling_is_seeded()
    {
        var dir = Fixture("llama-tiny");
        var (code, output, _) = Run("generate", "--model", dir, "--ids", "1,5,9,42", "--max-new-tokens", "6", "--json");
        Assert.Equal(0, code);
        var got = JsonNode.Parse(output)!["output_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        using var model = ModelFolder.Load(dir);
        var expected = Generator.Generate(model, [[1, 5, 9, 42]], new GenerationOptions { MaxNewTokens = 6 }).Sequences[0].OutputIds;
        Assert.Equal(expected, got);

        string[] sample = ["generate", "--model", dir, "--ids", "1,5,9,42", "--max-new-tokens", "6", "--temperature", "1.2", "--top-k", "50", "--seed", "9", "--json"];
        Assert.Equal(Run(sample).Out, Run(sample).Out);
    }

    [Fact]
    public void Score_json_reports_token_logprobs_and_their_mean_loss()
    {
        var (code, output, _) = Run("score", "--model", Fixture("qwen3-tiny"), "--ids", "3,17,255,9,100", "--json");
        Assert.Equal(0, code);
        var doc = JsonNode.Parse(output)!;
        var lp = doc["token_logprobs"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        Assert.Equal(4, lp.Length);
        Assert.All(lp, x => Assert.True(x < 0));
        Assert.Equal(-lp.Average(), doc["loss"]!.GetValue<double>(), 10);

        // The same as the model's causal-LM loss over those tokens.
        using var model = ModelFolder.Load(Fixture("qwen3-tiny"));
        using var scope = Torch.NewScope();
        var ids = Torch.FromArray(new long[] { 3, 17, 255, 9, 100 }, 1, 5);
        using (Torch.NoGrad())
            Assert.Equal(CausalLM.Loss(model.Forward(ids), ids).ToDouble(), doc["loss"]!.GetValue<double>(), 5);
    }

    [Fact]
    public void Bad_arguments_and_bad_files_give_clear_errors_and_exit_codes()
    {
        var dir = Fixture("llama-tiny");
        var r = Run("tokenize", "--tokenizer", Tokenizer("llama3"));
        Assert.Equal(2, r.Code);
        Assert.Contains("exactly one of --text and --input", r.Err);

        r = Run("generate", "--model", dir, "--ids", "1,x");
        Assert.Equal(2, r.Code);
        Assert.Contains("'x' is not a token id", r.Err);

        r = Run("score", "--model", dir, "--ids", "1,99999");
        Assert.Equal(2, r.Code);
        Assert.Contains("outside the model's vocabulary", r.Err);

        r = Run("generate", "--model", Path.Combine(Root, "no-such-model"), "--ids", "1");
        Assert.Equal(1, r.Code);
        Assert.Contains("model folder not found", r.Err);

        r = Run("generate", "--model", dir, "--ids", "1", "--temperature", "0");
        Assert.Equal(2, r.Code);
        Assert.Contains("temperature must be positive", r.Err);

        r = Run("generate", "--bogus");
        Assert.Equal(2, r.Code);
    }
}
