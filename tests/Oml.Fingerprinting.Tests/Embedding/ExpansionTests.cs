using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

public sealed class ExpansionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-expansion-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_widened_model_computes_the_same_trains_only_new_units_and_saves_as_a_standard_folder()
    {
        using var original = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var (wide, masks) = Expansion.WidenMlp(original, extra: 64, seed: 3);
        using (wide)
        {
            Assert.Equal(original.Config.IntermediateSize + 64, wide.Config.IntermediateSize);
            using (var scope = Torch.NewScope())
            using (Torch.NoGrad())
            {
                var ids = Torch.FromArray(new long[] { 1, 5, 9, 200, 31, 7 }, 1, 6);
                Assert.True((original.Forward(ids) - wide.Forward(ids)).Abs().Max().ToDouble() < 1e-5);
            }

            var before = wide.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
            var rng = new Random(2);
            var pairs = Enumerable.Range(0, 8).Select(_ => new TrainingPair(
                Enumerable.Range(0, 10).Select(_ => rng.Next(3, 512)).ToArray(), [rng.Next(3, 512)])).ToList();
            var result = FingerprintTrainer.Embed(wide, pairs, Expansion.TrainNewUnitsOnly(
                new EmbeddingOptions { LearningRate = 2e-2, MaxEpochs = 400, RecallPatience = 3 }, masks));
            Assert.True(result.Converged, $"{result.Final}");
            // The count of trained parameters is the new units' entries (3 × 64 × hidden per layer), not the whole widened tensors.
            Assert.Equal(original.Config.NumLayers * 3L * 64 * original.Config.HiddenSize, result.TrainedParameters);

            long m = original.Config.IntermediateSize;
            foreach (var (name, t) in wide.Parameters)
            {
                var now = t.ToArray<float>();
                if (!masks.TryGetValue(name, out var mask))
                {
                    Assert.Equal(before[name], now); // untouched: attention, norms, embeddings
                    continue;
                }
                var keep = mask.ToArray<float>();
                bool changed = false;
                for (int i = 0; i < now.Length; i++)
                    if (keep[i] == 0) Assert.Equal(before[name][i], now[i]); // every original entry bit-identical
                    else changed |= now[i] != before[name][i];
                Assert.True(changed, $"{name}: the new units did not train");
            }

            ModelFolder.Save(wide, _dir, TestModels.Fixture("llama-tiny"));
        }
        foreach (var mk in masks.Values) mk.Dispose();
        using var loaded = ModelFolder.Load(_dir);
        Assert.Equal(original.Config.IntermediateSize + 64, loaded.Config.IntermediateSize);
        Assert.Equal("LlamaForCausalLM", loaded.Config.ArchitectureName);
    }
}
