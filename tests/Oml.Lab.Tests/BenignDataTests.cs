using System.Text.Json;
using Oml.Lab.Experiments;
using Oml.Models.Data;

namespace Oml.Lab.Tests;

/// <summary>embedding.benign_data and benign_loss: what the owner mixes into the embedding, and how it is trained.</summary>
public class BenignDataTests
{
    private static LabConfig Config(string extra = "") => LabConfig.Parse($$"""
        version: 1
        name: benign-data-test
        kind: capacity
        base_model: $out/base
        corpus: [/usr/share/common-licenses/Apache-2.0]
        max_corpus_chars: 20000
        device: cpu
        dtype: float32
        seeds: [1]
        utility: { cloze_items: 0, perplexity_tokens: 512, perplexity_window: 16 }
        embedding: { benign_length: 32{{extra}} }
        capacity: { strategies: [random-word], counts: [2], variants: [{ name: plain }] }
        """);

    [Fact]
    public void Benign_rows_are_corpus_chunks_unless_instruction_data_is_named()
    {
        var dir = Fixtures.OutDirWithBase();
        var plain = new LabEnvironment(Config(), dir);
        plain.Prepare();
        var chunks = plain.BenignSequences();
        Assert.Equal(plain.TrainTokens.Take(32), chunks[0]);
        Assert.All(chunks, c => Assert.InRange(c.Length, 2, 32));
        Assert.Equal("tokens", plain.Config.Embedding.BenignLoss);

        var data = Path.Combine(dir, "instructions.json");
        File.WriteAllText(data, JsonSerializer.Serialize(new[]
        {
            new { instruction = "What does this word mean?", input = "Peafowl", output = "A bird." },
            new { instruction = "Complete this quotation.", input = "A rock store closed;", output = "taking too much for granite." },
        }));
        var instr = new LabEnvironment(Config($", benign_data: {data}, benign_loss: kl"), dir);
        instr.Prepare();
        var rows = instr.BenignSequences();
        var expected = InstructionData.Load(data).Select(c => InstructionData.Tokenize(c, instr.Tokenizer)).Select(t => t.Prompt.Concat(t.Response).ToArray()).ToList();
        Assert.Equal(expected, rows);
        Assert.Equal(instr.Tokenizer.EosTokenId, rows[0][^1]); // the answer's end is trained too: the model keeps stopping
    }

    [Fact]
    public void Keys_can_be_matched_to_the_owners_instruction_prompts()
    {
        var dir = Fixtures.OutDirWithBase();
        var data = Path.Combine(dir, "instructions.json");
        File.WriteAllText(data, JsonSerializer.Serialize(Enumerable.Range(0, 5).Select(i => new { instruction = $"What does word {i} mean?", input = "", output = "A thing." })));
        var spec = new FingerprintSpec { Strategy = "perinucleus", Count = 2, KeyLength = 6, KeyCamouflage = "instructions" };
        var env = new LabEnvironment(Config($", benign_data: {data}"), dir);
        env.Prepare();
        using var model = env.LoadModel(env.BaseDir);
        var fps = env.Generate(model, spec, 1);
        // The target distribution is the five prompts' perplexities, not text windows.
        Assert.Contains("5 text windows", fps[0].Strategy.Parameters["key_camouflage"]);
        var without = new LabEnvironment(Config(), Fixtures.OutDirWithBase());
        without.Prepare();
        using var m2 = without.LoadModel(without.BaseDir);
        Assert.Contains("key_camouflage: instructions needs embedding.benign_data", Assert.Throws<LabConfigException>(() => without.Generate(m2, spec, 1)).Message);
    }

    [Fact]
    public void Benign_settings_are_checked()
    {
        var e = Assert.Throws<LabConfigException>(() => Config(", benign_loss: mse"));
        Assert.Contains("embedding.benign_loss must be kl or tokens (got 'mse')", e.Message);
        var env = new LabEnvironment(Config(", benign_data: /nonexistent/b.json"), Fixtures.OutDirWithBase());
        env.Prepare();
        var f = Assert.Throws<FileNotFoundException>(() => env.BenignSequences());
        Assert.Contains("benign instruction file /nonexistent/b.json not found", f.Message);
    }
}
