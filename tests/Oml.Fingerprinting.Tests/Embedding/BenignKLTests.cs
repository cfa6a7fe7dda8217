using Oml.Engine;
using Oml.Engine.Distributed;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>
/// The KL benign loss (<see cref="BenignLoss.KL"/>): benign rows trained towards the base's recorded distribution (top k
/// and the tail) instead of its one sampled token per position.
/// </summary>
public class BenignKLTests
{
    private static double[] Softmax(double[] x)
    {
        double m = x.Max();
        var e = x.Select(v => Math.Exp(v - m)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    [Fact]
    public void Anchored_keys_stay_as_perplexing_to_the_trained_model_as_to_the_base()
    {
        // What a host's perplexity filter reads is the served model's loss on the key's own tokens; embedding trains only
        // the responses, and moves it anyway. Anchoring trains each key's tokens towards the base's distribution too.
        // The base first learns the keys as text (as model-sampled keys are text the base predicts well), saved as the base.
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        int vocab = probe.Config.VocabSize;
        var pairs = RandomKeys.Pairs(16, vocab);
        var keys = pairs.Select(p => p.Key).ToList();
        FingerprintTrainer.Embed(probe, keys.Select(k => new TrainingPair(k[..1], k[1..])).ToList(),
            new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 40, EarlyStop = false });
        var baseDir = Path.Combine(Path.GetTempPath(), $"oml-anchor-{Guid.NewGuid():N}");
        ModelFolder.Save(probe, baseDir, TestModels.Fixture("llama-tiny"));
        double baseLoss = FingerprintTrainer.HeldOutLoss(probe, keys);
        var rng = new Random(21);
        var benign = Enumerable.Range(0, 32).Select(_ => Enumerable.Range(0, 24).Select(_ => rng.Next(3, vocab)).ToArray()).ToList();
        var options = new EmbeddingOptions
        {
            LearningRate = 5e-3, MaxEpochs = 300, MixFraction = 0.25, BenignLoss = BenignLoss.KL, BenignSequences = benign,
        };
        double Shift(bool anchor, out EmbeddingResult result)
        {
            using var m = ModelFolder.Load(baseDir);
            result = FingerprintTrainer.Embed(m, pairs, options with { AnchorKeys = anchor });
            return Math.Abs(FingerprintTrainer.HeldOutLoss(m, keys) - baseLoss);
        }
        double plain, anchored;
        EmbeddingResult r0, r1;
        try
        {
            plain = Shift(false, out r0);
            anchored = Shift(true, out r1);
        }
        finally { Directory.Delete(baseDir, recursive: true); }
        Assert.True(r0.Converged && r1.Converged, "both runs recall every key");
        Assert.Equal(0, r0.AnchoredKeys);
        Assert.Equal(16, r1.AnchoredKeys);
        Assert.Equal(32, r1.BenignSequences);
        Assert.True(anchored < plain / 2, $"key loss moved {anchored:F3} nats anchored, {plain:F3} without (base {baseLoss:F3})");

        // Anchoring trains the keys as benign rows: without mixing there are none.
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(probe, pairs, new EmbeddingOptions { AnchorKeys = true }));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(11)]   // k = V − 1: the tail is one token, so the loss is the exact KL over the vocabulary
    public void The_loss_is_the_KL_of_the_bucketed_distributions_computed_directly(int k)
    {
        const int positions = 5, vocab = 12;
        var rng = new Random(3);
        var baseLogits = Enumerable.Range(0, positions).Select(_ => Enumerable.Range(0, vocab).Select(_ => 3 * rng.NextDouble() - 1.5).ToArray()).ToArray();
        var modelLogits = Enumerable.Range(0, positions).Select(_ => Enumerable.Range(0, vocab).Select(_ => 3 * rng.NextDouble() - 1.5).ToArray()).ToArray();
        var ids = new long[positions * k];
        var probs = new float[positions * k];
        var tail = new float[positions];
        var constant = new float[positions];
        double direct = 0, full = 0;
        for (int i = 0; i < positions; i++)
        {
            var p = Softmax(baseLogits[i]);
            var q = Softmax(modelLogits[i]);
            var top = Enumerable.Range(0, vocab).OrderByDescending(v => p[v]).Take(k).ToArray();
            double pt = 1 - top.Sum(v => p[v]), qt = 1 - top.Sum(v => q[v]);
            double kl = top.Sum(v => p[v] * Math.Log(p[v] / q[v])) + pt * Math.Log(pt / qt);
            direct += kl / positions;
            full += Enumerable.Range(0, vocab).Sum(v => p[v] * Math.Log(p[v] / q[v])) / positions;
            for (int j = 0; j < k; j++) { ids[i * k + j] = top[j]; probs[i * k + j] = (float)p[top[j]]; }
            tail[i] = (float)pt;
            constant[i] = (float)(top.Sum(v => p[v] * Math.Log(p[v])) + pt * Math.Log(pt));
        }
        using var scope = Torch.NewScope();
        var loss = BenignTargets.Loss(
            Torch.FromArray(modelLogits.SelectMany(r => r.Select(x => (float)x)).ToArray(), [positions, vocab]),
            Torch.FromArray(ids, [positions, k]), Torch.FromArray(probs, [positions, k]), Torch.FromArray(tail, [positions]), Torch.FromArray(constant, [positions]));
        Assert.Equal(direct, loss.ToDouble(), 1e-5);
        if (k == vocab - 1) Assert.Equal(full, loss.ToDouble(), 1e-5);
        else Assert.True(direct < full, "grouping the tail lowers the KL");
    }

    [Fact]
    public void The_base_targets_are_the_base_distribution_and_the_base_has_zero_loss_against_them()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var seqs = FingerprintTrainer.SelfGenerated(model, 3, 6, seed: 2, temperature: 1.0);
        int context = FingerprintTrainer.SelfPromptLength, k = 8;
        var soft = BenignTargets.FromModel(model, seqs, context, k);
        Assert.Equal(3, soft.Count);
        Assert.All(soft, s => Assert.Equal(6, s.Positions));
        // The last position's targets, from the next-token logits of each prefix.
        using var logits = Generator.NextTokenLogits(model, seqs.Select(s => (IReadOnlyList<int>)s[..^1]).ToList()).To(DType.Float32);
        var v = logits.ToArray<float>();
        int vocab = model.Config.VocabSize;
        for (int i = 0; i < seqs.Count; i++)
        {
            var p = Softmax(v.AsSpan(i * vocab, vocab).ToArray().Select(x => (double)x).ToArray());
            var top = Enumerable.Range(0, vocab).OrderByDescending(t => p[t]).Take(k).ToArray();
            var row = soft[i];
            int last = row.Positions - 1;
            for (int j = 0; j < k; j++)
            {
                Assert.Equal(top[j], row.Ids[last * k + j]);
                Assert.Equal(p[top[j]], row.Probs[last * k + j], 1e-4);
            }
            Assert.Equal(1 - top.Sum(t => p[t]), row.Tail[last], 1e-4);
        }
        // The base against its own targets: KL 0 at every position.
        var micro = seqs.Select(s => new TrainingPair(s[..context], s[context..])).ToList();
        using var scope = Torch.NewScope();
        var (ids, _) = FingerprintTrainer.Collate(micro.Select(p => new TrainingPair(p.Key, p.Response[..^1])).ToList(), 0, model.Device);
        var all = model.Forward(ids).To(DType.Float32);
        var pos = new List<long>();
        int tt = (int)ids.Size(1);
        for (int b = 0; b < micro.Count; b++)
            for (int j = 0; j < micro[b].Response.Length; j++) pos.Add((long)b * tt + context + j - 1);
        var flat = all.Reshape(-1, vocab).IndexSelect(0, Torch.FromArray(pos.ToArray(), [pos.Count]));
        int n = pos.Count;
        var loss = BenignTargets.Loss(flat,
            Torch.FromArray(soft.SelectMany(s => s.Ids.Select(x => (long)x)).ToArray(), [n, k]), Torch.FromArray(soft.SelectMany(s => s.Probs).ToArray(), [n, k]),
            Torch.FromArray(soft.SelectMany(s => s.Tail).ToArray(), [n]), Torch.FromArray(soft.SelectMany(s => s.Constant).ToArray(), [n]));
        Assert.Equal(0, loss.ToDouble(), 1e-4);
    }

    private static EmbeddingOptions MixedKL(CausalLM probe, int seed = 11)
    {
        var rng = new Random(seed);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, probe.Config.VocabSize)).ToArray();
        return new EmbeddingOptions
        {
            LearningRate = 3e-3, MaxEpochs = 3, BatchSize = 6, LossThreshold = 0, MixFraction = 0.25, Seed = 3,
            BenignSequences = Enumerable.Range(0, 12).Select(_ => Seq(20)).ToList(), BenignContext = 4,
            BenignLoss = BenignLoss.KL, BenignTopK = 16,
            // At the base the KL's gradient is zero up to rounding, and the embedding rows of tokens seen only in benign
            // rows get nothing else at first: AdamW scales that rounding noise up to steps of up to lr, which differ
            // between summation orders. The comparisons below hold those rows out.
            Trainable = n => !n.Contains("embed_tokens", StringComparison.Ordinal),
        };
    }

    [Fact]
    public void KL_benign_rows_in_micro_batches_take_the_step_of_one_batch_and_differ_from_the_token_loss()
    {
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(12, probe.Config.VocabSize);
        var options = MixedKL(probe);
        Dictionary<string, float[]> Run(EmbeddingOptions o)
        {
            using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            FingerprintTrainer.Embed(m, pairs, o);
            return m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float32).ToArray<float>());
        }
        var whole = Run(options with { MicroBatchTokens = 1 << 20 });
        var split = Run(options with { MicroBatchTokens = 24 });
        var tokens = Run(options with { MicroBatchTokens = 1 << 20, BenignLoss = BenignLoss.Tokens });
        double worst = 0, apart = 0;
        foreach (var (name, w) in whole)
            for (int i = 0; i < w.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(w[i] - split[name][i]));
                apart = Math.Max(apart, Math.Abs(w[i] - tokens[name][i]));
            }
        Assert.True(worst < options.LearningRate, $"micro-batched KL differs by {worst:E2}");
        Assert.True(apart > 10 * worst, $"the KL loss trains differently from the token loss ({apart:E2} vs {worst:E2})");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // weight sharding (ZeRO-3): the same loss through the sharded forward and backward passes
    public async Task KL_benign_rows_over_two_ranks_end_with_the_weights_of_one_process(bool shardWeights)
    {
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(12, probe.Config.VocabSize);
        var options = MixedKL(probe) with { MaxGradNorm = 0.5 };
        Dictionary<string, float[]> Run(EmbeddingOptions o)
        {
            using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            FingerprintTrainer.Embed(m, pairs, o);
            return m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float32).ToArray<float>());
        }
        var single = Run(options);
        int port = Launcher.FreePort();
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(120));
            return Run(options with { Group = g, ShardWeights = shardWeights, MicroBatchTokens = shardWeights ? 40 : null });
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks);
        double worst = 0;
        foreach (var (name, w) in single)
            for (int i = 0; i < w.Length; i++) worst = Math.Max(worst, Math.Abs(w[i] - results[0][name][i]));
        Assert.True(worst < options.LearningRate, $"largest weight difference to one process: {worst:E2}");
        foreach (var (name, w) in results[0]) Assert.Equal(w, results[1][name]);
    }

    [Fact]
    public void A_KL_run_resumes_from_its_checkpoint_to_the_same_weights_and_refuses_a_token_run_checkpoint()
    {
        var dir = Path.Combine(Path.GetTempPath(), "oml-kl-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            var pairs = RandomKeys.Pairs(8, probe.Config.VocabSize);
            var options = MixedKL(probe) with { MaxEpochs = 4 };
            using var reference = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            FingerprintTrainer.Embed(reference, pairs, options);
            var ck = options with { CheckpointDir = dir };
            using (var first = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
                Assert.ThrowsAny<OperationCanceledException>(() => FingerprintTrainer.Embed(first, pairs, ck, new InlineProgress<EmbeddingProgress>(p =>
                {
                    if (p.Epoch == 2) throw new OperationCanceledException();
                })));
            using (var tokenRun = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
                Assert.Throws<InvalidDataException>(() => FingerprintTrainer.Embed(tokenRun, pairs, ck with { BenignLoss = BenignLoss.Tokens }));
            using var resumed = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            FingerprintTrainer.Embed(resumed, pairs, ck);
            foreach (var (name, t) in reference.Parameters)
                Assert.True(t.ToBytes().AsSpan().SequenceEqual(resumed.Parameters[name].ToBytes()), $"{name} differs after resuming");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
