using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

public class EmbeddingTests
{
    private static string Fixture(string name) => TestModels.Fixture(name);

    /// <summary>Random-token fingerprints: keys of 12 tokens, responses of 4, from a fixed seed.</summary>
    private static List<TrainingPair> RandomPairs(int count, int vocab, int seed = 5)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TrainingPair(
                Enumerable.Range(0, 12).Select(_ => rng.Next(3, vocab)).ToArray(),
                Enumerable.Range(0, 4).Select(_ => rng.Next(3, vocab)).ToArray()))
            .ToList();
    }

    private static int GreedyRecall(CausalLM model, IReadOnlyList<TrainingPair> pairs)
    {
        var result = Generator.Generate(model, pairs.Select(p => p.Key).ToList(), new GenerationOptions { MaxNewTokens = 4, EosTokenIds = [] });
        return pairs.Where((p, i) => result.Sequences[i].OutputIds.SequenceEqual(p.Response)).Count();
    }

    [Fact]
    public void Thirty_two_fingerprints_are_recalled_by_greedy_decoding_and_not_by_the_base()
    {
        using var model = ModelFolder.Load(Fixture("llama-tiny"));
        var pairs = RandomPairs(32, model.Config.VocabSize);
        var seen = new List<EmbeddingProgress>();
        var result = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300 },
            new InlineProgress<EmbeddingProgress>(seen.Add));
        Assert.True(result.Converged, $"did not converge: {result.Final}");
        Assert.Equal(32, GreedyRecall(model, pairs));

        using var baseModel = ModelFolder.Load(Fixture("llama-tiny"));
        Assert.Equal(0, GreedyRecall(baseModel, pairs));
        Assert.True(result.History[0].Loss > result.Final.Loss);
    }

    [Fact]
    public void A_key_with_several_responses_is_recalled_when_its_greedy_answer_is_any_of_them()
    {
        // 16 keys with 2 responses each (different first tokens, as several Perinucleus responses per key): greedy decoding
        // can give only one per key, so counting rows would cap recall at 50 % and the run would never stop early.
        using var model = ModelFolder.Load(Fixture("llama-tiny"));
        var rng = new Random(11);
        int vocab = model.Config.VocabSize;
        var pairs = new List<TrainingPair>();
        for (int k = 0; k < 16; k++)
        {
            var key = Enumerable.Range(0, 12).Select(_ => rng.Next(3, vocab)).ToArray();
            int first = rng.Next(3, vocab - 1);
            pairs.Add(new TrainingPair(key, [first, rng.Next(3, vocab)]));
            pairs.Add(new TrainingPair(key, [first + 1, rng.Next(3, vocab)]));
        }
        var result = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300 });
        Assert.True(result.Converged, $"did not converge: {result.Final}");
        Assert.Equal(1.0, result.Accuracy);
        Assert.True(result.History.Count < 300, $"ran {result.History.Count} epochs");
        Assert.All(result.History, h => Assert.InRange(h.Accuracy, 0, 1));
        // The reported loss is the query's: -log of the probability of any of its responses, per token (below ln 2 / 2,
        // the floor of the per-row loss when two responses share the probability).
        Assert.True(result.Loss < Math.Log(2) / 2, $"loss {result.Loss}");
        var keys = pairs.Where((_, i) => i % 2 == 0).Select(p => p.Key).ToList();
        var answers = Generator.Generate(model, keys, new GenerationOptions { MaxNewTokens = 2, EosTokenIds = [] });
        for (int k = 0; k < keys.Count; k++)
        {
            var a = answers.Sequences[k].OutputIds;
            Assert.True(a.SequenceEqual(pairs[2 * k].Response) || a.SequenceEqual(pairs[2 * k + 1].Response), $"key {k} answered [{string.Join(", ", a)}]");
        }
    }

    [Fact]
    public void Frozen_parameters_stay_bit_identical_when_training_a_subset()
    {
        using var model = ModelFolder.Load(Fixture("llama-tiny"));
        var before = model.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToBytes());
        var pairs = RandomPairs(8, model.Config.VocabSize);
        static bool Mlp(string name) => name.Contains(".mlp.", StringComparison.Ordinal);
        var result = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 5, Trainable = Mlp });
        Assert.Equal(model.Parameters.Where(kv => Mlp(kv.Key)).Sum(kv => kv.Value.NumEl), result.TrainedParameters);
        foreach (var (name, t) in model.Parameters)
        {
            bool same = before[name].AsSpan().SequenceEqual(t.ToBytes());
            if (Mlp(name)) Assert.False(same, $"{name} should have changed");
            else Assert.True(same, $"{name} changed but was frozen");
        }
    }

    private static double DistanceToBase(CausalLM model, CausalLM baseModel)
    {
        using var scope = Torch.NewScope();
        return model.Parameters.Sum(kv => (kv.Value - baseModel.Parameters[kv.Key]).Square().Sum().ToDouble());
    }

    [Fact]
    public void Averaging_and_the_L2_penalty_keep_the_weights_closer_to_the_base()
    {
        using var baseModel = ModelFolder.Load(Fixture("llama-tiny"));
        var pairs = RandomPairs(8, baseModel.Config.VocabSize);
        var plain = new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 20, LossThreshold = 0 };
        double Run(EmbeddingOptions o)
        {
            using var m = ModelFolder.Load(Fixture("llama-tiny"));
            FingerprintTrainer.Embed(m, pairs, o);
            return DistanceToBase(m, baseModel);
        }
        double free = Run(plain);
        double averaged = Run(plain with { AveragingLambda = 0.5 });
        double penalised = Run(plain with { L2ToBase = 1.0 });
        Assert.True(free > 0);
        Assert.True(averaged < 0.5 * free, $"averaging: {averaged} vs {free}");
        Assert.True(penalised < free, $"L2: {penalised} vs {free}");
    }

    [Fact]
    public void Recall_patience_stops_a_run_that_model_averaging_keeps_from_a_low_loss()
    {
        using var model = ModelFolder.Load(Fixture("llama-tiny"));
        var pairs = RandomPairs(8, model.Config.VocabSize);
        var r = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions
        {
            LearningRate = 1e-2, MaxEpochs = 300, AveragingLambda = 0.5, LossThreshold = 0, RecallPatience = 3,
        });
        Assert.True(r.Converged);
        Assert.True(r.History.Count < 300);
        Assert.All(r.History.TakeLast(3), h => Assert.Equal(1.0, h.Accuracy));
        Assert.NotEqual(1.0, r.History[^4].Accuracy);
        Assert.Equal(8, GreedyRecall(model, pairs));
    }

    [Fact]
    public void Bad_settings_and_pairs_are_refused()
    {
        using var model = ModelFolder.Load(Fixture("llama-tiny"));
        var ok = RandomPairs(2, model.Config.VocabSize);
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(model, [], new EmbeddingOptions()));
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(model, [new TrainingPair([1], [])], new EmbeddingOptions()));
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(model, [new TrainingPair([1], [9999])], new EmbeddingOptions()));
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(model, ok, new EmbeddingOptions { AveragingLambda = 1 }));
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(model, ok, new EmbeddingOptions { Trainable = _ => false }));
    }


    private sealed class Killed : Exception;

    private static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "oml-ckpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    [Fact]
    public void Killing_an_embedding_run_and_resuming_it_ends_at_the_same_weights_as_an_uninterrupted_run()
    {
        var dir = TempDir();
        try
        {
            using var reference = ModelFolder.Load(Fixture("llama-tiny"));
            var pairs = RandomPairs(8, reference.Config.VocabSize);
            var options = new EmbeddingOptions
            {
                LearningRate = 5e-3, MaxEpochs = 6, BatchSize = 3, LossThreshold = 0, AveragingLambda = 0.3, L2ToBase = 0.1, Seed = 7,
            };
            var full = FingerprintTrainer.Embed(reference, pairs, options);

            var ck = options with { CheckpointDir = dir, CheckpointEvery = 2 };
            using (var first = ModelFolder.Load(Fixture("llama-tiny")))
                Assert.Throws<Killed>(() => FingerprintTrainer.Embed(first, pairs, ck, new InlineProgress<EmbeddingProgress>(p =>
                {
                    if (p.Epoch == 5) throw new Killed(); // killed after epoch 5, whose checkpoint (every 2) is not written
                })));
            Assert.Equal(["epoch-000004"], Directory.GetDirectories(dir).Select(Path.GetFileName));

            using var resumed = ModelFolder.Load(Fixture("llama-tiny"));
            var seen = new List<int>();
            var result = FingerprintTrainer.Embed(resumed, pairs, ck, new InlineProgress<EmbeddingProgress>(p => seen.Add(p.Epoch)));
            Assert.Equal([5, 6], seen);
            Assert.Equal(full.History.Select(h => (h.Epoch, h.Steps, h.Loss, h.Accuracy)), result.History.Select(h => (h.Epoch, h.Steps, h.Loss, h.Accuracy)));
            foreach (var (name, t) in reference.Parameters)
                Assert.True(t.ToBytes().AsSpan().SequenceEqual(resumed.Parameters[name].ToBytes()), $"{name} differs after resuming");
            Assert.Equal(["epoch-000006"], Directory.GetDirectories(dir).Select(Path.GetFileName));

            // A finished run resumes to its end without training further.
            using var again = ModelFolder.Load(Fixture("llama-tiny"));
            var r2 = FingerprintTrainer.Embed(again, pairs, ck, new InlineProgress<EmbeddingProgress>(_ => Assert.Fail("trained again")));
            Assert.Equal(6, r2.Final.Epoch);
            foreach (var (name, t) in reference.Parameters)
                Assert.True(t.ToBytes().AsSpan().SequenceEqual(again.Parameters[name].ToBytes()), $"{name} differs after reloading");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_checkpoint_of_another_run_is_refused()
    {
        var dir = TempDir();
        try
        {
            using var model = ModelFolder.Load(Fixture("llama-tiny"));
            var pairs = RandomPairs(4, model.Config.VocabSize);
            var options = new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 1, LossThreshold = 0, CheckpointDir = dir };
            FingerprintTrainer.Embed(model, pairs, options);
            Assert.True(File.Exists(Path.Combine(dir, "epoch-000001", EmbeddingCheckpoint.StateFile)));
            using var fresh = ModelFolder.Load(Fixture("llama-tiny"));
            var e1 = Assert.Throws<InvalidDataException>(() => FingerprintTrainer.Embed(fresh, pairs, options with { Seed = 1 }));
            Assert.Contains("another run", e1.Message);
            Assert.Throws<InvalidDataException>(() => FingerprintTrainer.Embed(fresh, RandomPairs(4, model.Config.VocabSize, seed: 6), options));
            // The base weights are part of the run: the already-trained model is not the base the checkpoint started from.
            Assert.Throws<InvalidDataException>(() => FingerprintTrainer.Embed(model, pairs, options));
            // Longer training of the same run is allowed: max epochs is not part of the digest.
            var r = FingerprintTrainer.Embed(fresh, pairs, options with { MaxEpochs = 2 });
            Assert.Equal([1, 2], r.History.Select(h => h.Epoch));
            Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(fresh, pairs, options with { CheckpointEvery = 0 }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void An_unfinished_checkpoint_folder_is_ignored()
    {
        var dir = TempDir();
        try
        {
            using var model = ModelFolder.Load(Fixture("llama-tiny"));
            var pairs = RandomPairs(4, model.Config.VocabSize);
            var options = new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 1, LossThreshold = 0, CheckpointDir = dir };
            FingerprintTrainer.Embed(model, pairs, options);
            // A later checkpoint whose state file was never written (a crash mid-write) does not count.
            Directory.CreateDirectory(Path.Combine(dir, "epoch-000002"));
            File.WriteAllText(Path.Combine(dir, "epoch-000002", EmbeddingCheckpoint.ParamsFile), "partial");
            var latest = EmbeddingCheckpoint.Latest(dir);
            Assert.NotNull(latest);
            Assert.Equal(1, latest.Epoch);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Mean next-token loss of the model on sequences (every token after the first labelled).</summary>
    private static double TextLoss(CausalLM model, IReadOnlyList<int[]> seqs)
    {
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        var (ids, labels) = FingerprintTrainer.Collate(seqs.Select(s => new TrainingPair(s[..1], s[1..])).ToList(), 0, model.Device);
        return CausalLM.Loss(model.Forward(ids), labels).ToDouble();
    }

    [Fact]
    public void Benign_mixing_keeps_ordinary_text_loss_closer_to_the_base_and_fingerprints_are_still_recalled()
    {
        using var baseModel = ModelFolder.Load(Fixture("llama-tiny"));
        int vocab = baseModel.Config.VocabSize;
        var pairs = RandomPairs(8, vocab);
        // "Ordinary text" of the tiny random model: its own greedy continuations of random prompts, from fixed seeds.
        List<int[]> Text(int seed, int count)
        {
            var rng = new Random(seed);
            var prompts = Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, 4).Select(_ => rng.Next(3, vocab)).ToArray()).ToList();
            var g = Generator.Generate(baseModel, prompts, new GenerationOptions { MaxNewTokens = 28, EosTokenIds = [] });
            return prompts.Select((p, i) => p.Concat(g.Sequences[i].OutputIds).ToArray()).ToList();
        }
        var train = Text(11, 48);
        var heldOut = Text(12, 32);
        double baseLoss = TextLoss(baseModel, heldOut);
        var options = new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 60, LossThreshold = 0, RecallPatience = 1000 };
        (double Loss, int Recalled, EmbeddingResult R) Run(EmbeddingOptions o)
        {
            using var m = ModelFolder.Load(Fixture("llama-tiny"));
            var r = FingerprintTrainer.Embed(m, pairs, o);
            return (TextLoss(m, heldOut), GreedyRecall(m, pairs), r);
        }
        var plain = Run(options);
        var mixed = Run(options with { MixFraction = 0.25, BenignSequences = train });
        var self = Run(options with { MixFraction = 0.25 });
        Assert.True(mixed.Loss < plain.Loss, $"held-out loss: mixed {mixed.Loss} vs plain {plain.Loss} (base {baseLoss})");
        Assert.True(self.Loss < plain.Loss, $"held-out loss: self-generated mix {self.Loss} vs plain {plain.Loss} (base {baseLoss})");
        Assert.Equal(8, mixed.Recalled);
        Assert.Equal(8, self.Recalled);
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(baseModel, pairs, options with { MixFraction = 1 }));
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(baseModel, pairs, options with { MixFraction = 0.2, BenignSequences = [[1]] }));
        Console.WriteLine($"base {baseLoss:F4}  plain {plain.Loss:F4}  mixed {mixed.Loss:F4}  self {self.Loss:F4}");
        TestContext.Current.SendDiagnosticMessage($"base {baseLoss:F4}  plain {plain.Loss:F4}  mixed {mixed.Loss:F4}  self {self.Loss:F4}");
    }

    [Fact]
    public void Micro_batches_accumulate_to_the_same_step_as_one_batch()
    {
        using var probe = ModelFolder.Load(Fixture("llama-tiny"));
        int vocab = probe.Config.VocabSize;
        var pairs = RandomPairs(12, vocab);
        var rng = new Random(3);
        var benign = Enumerable.Range(0, 10).Select(_ => Enumerable.Range(0, 20).Select(_ => rng.Next(3, vocab)).ToArray()).ToList();
        var options = new EmbeddingOptions
        {
            LearningRate = 3e-3, MaxEpochs = 3, BatchSize = 0, LossThreshold = 0, MixFraction = 0.25, BenignSequences = benign,
            AveragingLambda = 0.5, L2ToBase = 0.01,
        };
        (Dictionary<string, float[]> W, EmbeddingResult R) Run(int microTokens, bool checkpoint = false)
        {
            using var m = ModelFolder.Load(Fixture("llama-tiny"));
            var r = FingerprintTrainer.Embed(m, pairs, options with { MicroBatchTokens = microTokens, ActivationCheckpointing = checkpoint });
            return (m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float32).Cpu().ToArray<float>()), r);
        }
        var whole = Run(1 << 20);
        using var baseModel = ModelFolder.Load(Fixture("llama-tiny"));
        // About one row per micro-batch; and the same with every layer recomputed in the backward pass.
        foreach (var split in new[] { Run(24), Run(24, checkpoint: true), Run(1 << 20, checkpoint: true) })
        {
            Assert.Equal(whole.R.History.Select(h => h.Steps), split.R.History.Select(h => h.Steps));
            for (int e = 0; e < 3; e++)
            {
                Assert.Equal(whole.R.History[e].Loss, split.R.History[e].Loss, 1e-5);
                Assert.Equal(whole.R.History[e].Accuracy, split.R.History[e].Accuracy);
            }
            double maxDiff = 0, maxMove = 0;
            foreach (var (name, w) in whole.W)
            {
                var b = baseModel.Parameters[name].To(DType.Float32).Cpu().ToArray<float>();
                for (int i = 0; i < w.Length; i++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(w[i] - split.W[name][i]));
                    maxMove = Math.Max(maxMove, Math.Abs(w[i] - b[i]));
                }
            }
            Assert.True(maxMove > 1e-3, $"training moved the weights by at most {maxMove}");
            // Adam divides by the gradient's running RMS, so float-summation differences in near-zero gradients show as
            // small weight differences; a wrong weighting of the parts would move weights by a sizeable share of the update.
            Assert.True(maxDiff < 0.01 * maxMove, $"micro-batched weights differ by up to {maxDiff} (training moved them by up to {maxMove})");
        }
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(probe, pairs, options with { MicroBatchTokens = 0 }));
    }
}
