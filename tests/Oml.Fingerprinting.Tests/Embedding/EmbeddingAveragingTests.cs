using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>Model averaging with the base once per epoch (<see cref="AveragingSchedule.Epoch"/>) next to the per-step default.</summary>
public class EmbeddingAveragingTests
{
    private static CausalLM Tiny() => ModelFolder.Load(TestModels.Fixture("llama-tiny"));

    private static List<TrainingPair> RandomPairs(int count, int vocab, int seed = 11)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TrainingPair(
                Enumerable.Range(0, 10).Select(_ => rng.Next(3, vocab)).ToArray(),
                Enumerable.Range(0, 3).Select(_ => rng.Next(3, vocab)).ToArray()))
            .ToList();
    }

    private static Dictionary<string, float[]> Snapshot(CausalLM m)
    {
        using var scope = Torch.NewScope();
        return m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float32).ToArray<float>());
    }

    private static bool SameBits(CausalLM a, CausalLM b) =>
        a.Parameters.All(kv => kv.Value.ToBytes().AsSpan().SequenceEqual(b.Parameters[kv.Key].ToBytes()));

    // Several steps per epoch (batches of 3 of 8 pairs), so per-step and per-epoch averaging differ.
    private static readonly EmbeddingOptions Base = new() { LearningRate = 5e-3, BatchSize = 3, LossThreshold = 0, Seed = 3 };

    [Fact]
    public void After_one_epoch_the_weights_are_the_lerp_of_the_unaveraged_epoch_and_the_base()
    {
        const double lambda = 0.4;
        using var baseModel = Tiny();
        var pairs = RandomPairs(8, baseModel.Config.VocabSize);
        var theta0 = Snapshot(baseModel);

        using var plain = Tiny();
        FingerprintTrainer.Embed(plain, pairs, Base with { MaxEpochs = 1 });
        var theta1 = Snapshot(plain);

        using var averaged = Tiny();
        var r = FingerprintTrainer.Embed(averaged, pairs, Base with { MaxEpochs = 1, AveragingLambda = lambda, AveragingEvery = AveragingSchedule.Epoch });
        Assert.Equal(3, r.Final.Steps);
        var got = Snapshot(averaged);
        int moved = 0;
        foreach (var (name, t1) in theta1)
        {
            var (t0, g) = (theta0[name], got[name]);
            for (int i = 0; i < t1.Length; i++)
            {
                double expected = (1 - lambda) * t1[i] + lambda * t0[i];
                Assert.True(Math.Abs(g[i] - expected) <= 1e-6 + 1e-6 * Math.Abs(expected), $"{name}[{i}]: {g[i]} vs {expected}");
                if (t1[i] != t0[i]) moved++;
            }
        }
        Assert.True(moved > 1000, "the unaveraged epoch barely moved the weights");

        // The reported loss and recall are those of the averaged model (one full batch over the pairs).
        using (Torch.NewScope())
        using (Torch.NoGrad())
        {
            var (ids, labels) = FingerprintTrainer.Collate(pairs, averaged.Config.PadTokenId ?? 0, averaged.Device);
            double loss = CausalLM.Loss(averaged.Forward(ids), labels).ToDouble();
            Assert.Equal(loss, r.Final.Loss, 1e-4);
        }
    }

    [Fact]
    public void The_default_schedule_is_per_step_and_differs_from_per_epoch()
    {
        Assert.Equal(AveragingSchedule.Step, new EmbeddingOptions().AveragingEvery);
        var o = Base with { MaxEpochs = 2, AveragingLambda = 0.5 };
        using var byDefault = Tiny();
        using var perStep = Tiny();
        using var perEpoch = Tiny();
        var pairs = RandomPairs(8, byDefault.Config.VocabSize);
        var rd = FingerprintTrainer.Embed(byDefault, pairs, o);
        var rs = FingerprintTrainer.Embed(perStep, pairs, o with { AveragingEvery = AveragingSchedule.Step });
        FingerprintTrainer.Embed(perEpoch, pairs, o with { AveragingEvery = AveragingSchedule.Epoch });
        Assert.True(SameBits(byDefault, perStep));
        Assert.Equal(rd.History.Select(h => h.Loss), rs.History.Select(h => h.Loss));
        Assert.False(SameBits(byDefault, perEpoch));
    }

    [Fact]
    public void With_one_step_per_epoch_both_schedules_end_at_the_same_weights()
    {
        var o = Base with { MaxEpochs = 3, BatchSize = 0, AveragingLambda = 0.6 };
        using var perStep = Tiny();
        using var perEpoch = Tiny();
        var pairs = RandomPairs(6, perStep.Config.VocabSize);
        FingerprintTrainer.Embed(perStep, pairs, o);
        var r = FingerprintTrainer.Embed(perEpoch, pairs, o with { AveragingEvery = AveragingSchedule.Epoch });
        Assert.Equal(3, r.Final.Steps);
        Assert.True(SameBits(perStep, perEpoch));
    }

    [Fact]
    public void An_unknown_schedule_is_refused()
    {
        using var m = Tiny();
        var pairs = RandomPairs(2, m.Config.VocabSize);
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(m, pairs, Base with { AveragingLambda = 0.5, AveragingEvery = (AveragingSchedule)7 }));
    }

    private sealed class Killed : Exception;

    [Fact]
    public void A_per_epoch_run_killed_and_resumed_ends_bit_exact_and_refuses_a_per_step_checkpoint()
    {
        var dir = Path.Combine(Path.GetTempPath(), "oml-avg-" + Guid.NewGuid().ToString("N"));
        try
        {
            var options = Base with { MaxEpochs = 4, AveragingLambda = 0.5, AveragingEvery = AveragingSchedule.Epoch, L2ToBase = 0.1 };
            using var reference = Tiny();
            var pairs = RandomPairs(8, reference.Config.VocabSize);
            var full = FingerprintTrainer.Embed(reference, pairs, options);

            var ck = options with { CheckpointDir = dir };
            using (var first = Tiny())
                Assert.Throws<Killed>(() => FingerprintTrainer.Embed(first, pairs, ck, new InlineProgress<EmbeddingProgress>(p =>
                {
                    if (p.Epoch == 2) throw new Killed(); // after epoch 2's checkpoint
                })));
            using var resumed = Tiny();
            var r = FingerprintTrainer.Embed(resumed, pairs, ck);
            Assert.Equal(full.History.Select(h => (h.Epoch, h.Steps, h.Loss, h.Accuracy)), r.History.Select(h => (h.Epoch, h.Steps, h.Loss, h.Accuracy)));
            Assert.True(SameBits(reference, resumed));

            // The schedule is part of the run: a per-step run does not resume from the per-epoch checkpoint.
            using var other = Tiny();
            var e = Assert.Throws<InvalidDataException>(() => FingerprintTrainer.Embed(other, pairs, ck with { AveragingEvery = AveragingSchedule.Step }));
            Assert.Contains("another run", e.Message);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
