using System.Text.Json;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Lab.Experiments;
using Oml.Models;
using Oml.Models.Data;

namespace Oml.Lab.Tests;

/// <summary>build_base: a small Llama trained in-run, instruction-tuned when build_base.instruct asks.</summary>
public class BuildBaseTests
{
    private const string Yaml = """
        version: 1
        name: build-base-test
        kind: capacity
        base_model: $out/base
        build_base: { vocab: 300, hidden: 16, layers: 1, heads: 2, kv_heads: 1, intermediate: 32, steps: 5, batch: 4, context: 16, lr: 0.01 INSTRUCT }
        corpus: [/usr/share/common-licenses/Apache-2.0]
        max_corpus_chars: 20000
        device: cpu
        dtype: float32
        seeds: [1]
        utility: { cloze_items: 0, perplexity_tokens: 512, perplexity_window: 16 }
        capacity: { strategies: [random-word], counts: [2], variants: [{ name: plain }] }
        """;

    private static string Instructions(string dir)
    {
        var items = Enumerable.Range(0, 24).Select(i => new { instruction = "What does this word mean?", input = $"word{i % 6}", output = $"A thing of kind {i % 6}." });
        var path = Path.Combine(dir, "instructions.json");
        File.WriteAllText(path, JsonSerializer.Serialize(items));
        return path;
    }

    /// <summary>Mean negative log-likelihood per response token of the instruction data under a model folder.</summary>
    private static double ResponseLoss(string modelDir, string instructions)
    {
        using var model = ModelFolder.Load(modelDir, Device.Cpu, DType.Float32);
        var tok = Oml.Models.Tokenizers.Tokenizer.FromFolder(modelDir);
        var pairs = InstructionData.Load(instructions).Select(c => InstructionData.Tokenize(c, tok)).Select(t => new TrainingPair(t.Prompt, t.Response)).ToList();
        return -ResponseScorer.LogProbs(model, pairs).Sum() / pairs.Sum(p => p.Response.Length);
    }

    [Fact]
    public void Instruct_tunes_the_built_base_on_the_instruction_data()
    {
        var dir = Directory.CreateTempSubdirectory("oml-lab-build-").FullName;
        var data = Instructions(dir);
        var plain = new LabEnvironment(LabConfig.Parse(Yaml.Replace(" INSTRUCT", "")), Path.Combine(dir, "plain"));
        plain.Prepare();
        var log = new StringWriter();
        var tunedConfig = LabConfig.Parse(Yaml.Replace(" INSTRUCT", $", instruct: {{ data: {data}, epochs: 3, lr: 0.01, batch: 4, samples: 20 }}"));
        Assert.Equal((3.0, 20), (tunedConfig.BuildBase!.Instruct!.Epochs, tunedConfig.BuildBase.Instruct.Samples));
        var tuned = new LabEnvironment(tunedConfig, Path.Combine(dir, "tuned"), log: log);
        tuned.Prepare();
        Assert.Contains("instruction-tuned on 20 examples", log.ToString());
        // The same pretraining, then the fine-tune: the answers of the instruction data become far more likely.
        Assert.True(ResponseLoss(tuned.BaseDir, data) < ResponseLoss(plain.BaseDir, data) - 0.5);
        Assert.Equal(File.ReadAllText(Path.Combine(plain.BaseDir, "tokenizer.json")), File.ReadAllText(Path.Combine(tuned.BaseDir, "tokenizer.json")));
    }

    [Theory]
    [InlineData("instruct: { epochs: 1 }", "build_base.instruct.data must name instruction data")]
    [InlineData("instruct: { data: x.json, epochs: 0 }", "build_base.instruct.epochs must be positive")]
    [InlineData("instruct: { data: x.json, batch: 0 }", "build_base.instruct.batch must be at least 1")]
    public void Instruct_settings_are_checked(string instruct, string error)
    {
        var e = Assert.Throws<LabConfigException>(() => LabConfig.Parse(Yaml.Replace(" INSTRUCT", ", " + instruct)));
        Assert.Contains(error, e.Message);
    }

    [Fact]
    public void A_missing_instruction_file_is_named()
    {
        var dir = Directory.CreateTempSubdirectory("oml-lab-build-").FullName;
        var env = new LabEnvironment(LabConfig.Parse(Yaml.Replace(" INSTRUCT", ", instruct: { data: /nonexistent/i.json }")), dir);
        var e = Assert.Throws<FileNotFoundException>(env.Prepare);
        Assert.Contains("instruction file /nonexistent/i.json not found", e.Message);
        Assert.False(Directory.Exists(Path.Combine(dir, "base")));
    }
}
