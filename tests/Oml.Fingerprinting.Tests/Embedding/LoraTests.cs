using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

public sealed class LoraTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-lora-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool IsAdapter(string name) => name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_B", StringComparison.Ordinal);

    [Fact]
    public void Lora_adapters_learn_the_fingerprints_and_are_merged_into_a_standard_folder_on_save()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var before = model.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToBytes());
        model.AddLora(n => n.Contains("self_attn", StringComparison.Ordinal) || n.Contains(".mlp.", StringComparison.Ordinal), rank: 8, alpha: 16, seed: 1);
        Assert.Equal(2 * 7, model.LoraTargets.Count); // q, k, v, o, gate, up, down in each of 2 layers

        var ids = Torch.FromArray(new long[] { 1, 5, 9, 200, 31, 7 }, 1, 6);
        using (Torch.NoGrad())
        using (Torch.NewScope())
        {
            // B starts at zero: the adapted model computes what the original did.
            using var plain = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            Assert.True((plain.Forward(ids) - model.Forward(ids)).Abs().Max().ToDouble() < 1e-6);
        }

        var rng = new Random(8);
        var pairs = Enumerable.Range(0, 8).Select(_ => new TrainingPair(
            Enumerable.Range(0, 10).Select(_ => rng.Next(3, 512)).ToArray(), [rng.Next(3, 512)])).ToList();
        var result = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 1e-2, MaxEpochs = 400, RecallPatience = 3, Trainable = IsAdapter });
        Assert.True(result.Converged, $"{result.Final}");
        foreach (var (name, bytes) in before) Assert.Equal(bytes, model.Parameters[name].ToBytes()); // base weights untouched

        ModelFolder.Save(model, _dir, TestModels.Fixture("llama-tiny"));
        using var saved = ModelFolder.Load(_dir); // a standard folder: no adapter tensors (the loader refuses unknown names)
        Assert.DoesNotContain(saved.Parameters.Keys, IsAdapter);
        using (Torch.NoGrad())
        using (Torch.NewScope())
            Assert.True((saved.Forward(ids) - model.Forward(ids)).Abs().Max().ToDouble() < 1e-4);
        var answers = Generator.Generate(saved, pairs.Select(p => p.Key).ToList(), new GenerationOptions { MaxNewTokens = 1, EosTokenIds = [] });
        Assert.Equal(8, pairs.Where((p, i) => answers.Sequences[i].OutputIds.SequenceEqual(p.Response)).Count());
        ids.Dispose();
    }
}
