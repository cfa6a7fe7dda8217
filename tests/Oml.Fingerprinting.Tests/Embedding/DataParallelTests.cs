using Oml.Engine;
using Oml.Engine.Distributed;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>
/// Data-parallel embedding over gloo: N ranks (threads of this process, each with its own model and process group,
/// as separate processes would have) train the same global batches as one process and end with its weights.
/// </summary>
public class DataParallelTests
{
    private static List<TrainingPair> Keys(int count, int vocab, int seed = 5)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TrainingPair(Enumerable.Range(0, 8 + rng.Next(9)).Select(_ => rng.Next(3, vocab)).ToArray(), [rng.Next(3, vocab), rng.Next(3, vocab)]))
            .ToList();
    }

    private static int FreePort() => Launcher.FreePort();

    private static (EmbeddingResult Result, Dictionary<string, float[]> Weights) Train(EmbeddingOptions options, ProcessGroup? group)
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        // 16 keys, 4 of them with a second response: rows of one query on different ranks (recall counts queries).
        var keys = Keys(16, model.Config.VocabSize);
        var pairs = keys.Concat(keys.Take(4).Select(p => p with { Response = [p.Response[0] == 3 ? 4 : 3, p.Response[1]] })).ToList();
        var r = Omlization.Train(model, pairs, options with { Group = group });
        return (r, model.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float32).ToArray<float>()));
    }

    [Theory]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    public async Task N_ranks_end_with_the_weights_of_one_process_with_the_same_global_batch(int world, bool shard)
    {
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        // Batches of 8 over 20 pairs (the last has 4: with 3 ranks one rank has 1 row of it), mixing with sampled
        // benign rows, held-out data, then the final merge: every part of the step that the ranks share.
        // The benign and held-out rows are given (random rows: cheaper than self-generated ones, which
        // WeightShardingTests.Self_generated_sequences_of_a_sharded_model_are_the_whole_models covers on ranks).
        var rng = new Random(11);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, probe.Config.VocabSize)).ToArray();
        var options = OmlizationDefaults.For(probe.Config) with
        {
            // The token loss: these tests compare the ranks' summation orders to within one step, and the KL loss's
            // gradient at the base is rounding noise that AdamW scales up to steps of about lr on weights with no other
            // gradient (BenignKLTests runs the KL over ranks and weight shards with those weights held out).
            BenignLoss = BenignLoss.Tokens,
            BatchSize = 8, EarlyStop = false, MaxEpochs = 4, MaxGradNorm = 0.5,
            BenignSequences = Enumerable.Range(0, 24).Select(_ => Seq(20)).ToList(),
            HeldOutSequences = Enumerable.Range(0, 6).Select(_ => Seq(20)).ToList(),
        };
        var single = Train(options, null);

        int port = FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(120));
            return Train(options with { ShardOptimizer = shard }, g);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks);

        var r0 = results[0];
        foreach (var t in results.Skip(1))
            foreach (var (name, w) in r0.Weights)
                Assert.Equal(w, t.Weights[name]);   // the ranks agree exactly: same reduced gradients, same steps
        double worst = 0;
        foreach (var (name, w) in single.Weights)
        {
            var d = r0.Weights[name];
            for (int i = 0; i < w.Length; i++) worst = Math.Max(worst, Math.Abs(w[i] - d[i]));
        }
        // Summation order differs (per-rank sums, then the all-reduce), and Adam divides by √v, so a weight whose
        // gradient is near zero can move by a fraction of one step differently: bounded by one step (lr) on any weight.
        Assert.True(worst < options.LearningRate, $"largest weight difference to one process: {worst:E2} (lr {options.LearningRate:E2})");
        Assert.Equal(single.Result.History.Count, r0.Result.History.Count);
        for (int e = 0; e < single.Result.History.Count; e++)
        {
            Assert.Equal(single.Result.History[e].Accuracy, r0.Result.History[e].Accuracy);
            // Within 1e-3, not "equal to 3 decimal places": rounding both puts 2.1184990 and 2.1185019 (2 ranks here)
            // on either side of a boundary.
            Assert.Equal(single.Result.History[e].Loss, r0.Result.History[e].Loss, 1e-3);
        }
        Assert.Equal(single.Result.MergeLambda, r0.Result.MergeLambda);
    }

    [Fact]
    public async Task The_all_reduce_overlapped_with_backward_gives_the_weights_of_the_all_reduce_after_it_exactly()
    {
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var rng = new Random(17);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, probe.Config.VocabSize)).ToArray();
        // Mixing (the benign part's last micro-batch carries the hooks) and micro-batches of 64 tokens (accumulation).
        var options = OmlizationDefaults.For(probe.Config) with
        {
            // The token loss: these tests compare the ranks' summation orders to within one step, and the KL loss's
            // gradient at the base is rounding noise that AdamW scales up to steps of about lr on weights with no other
            // gradient (BenignKLTests runs the KL over ranks and weight shards with those weights held out).
            BenignLoss = BenignLoss.Tokens,
            BatchSize = 8, EarlyStop = false, MaxEpochs = 2, MaxGradNorm = 0.5, MicroBatchTokens = 64,
            BenignSequences = Enumerable.Range(0, 24).Select(_ => Seq(20)).ToList(),
        };
        // Two ranks sum two values per element: the same sums whatever the buckets, so the same weights to the bit; the
        // same with a sharded optimizer (the reduce to each owner overlapped, or after backward).
        foreach (bool shard in new[] { false, true })
        {
            var overlapped = await Ranks(options with { OverlapAllReduce = true }, 2, shard);
            var after = await Ranks(options with { OverlapAllReduce = false }, 2, shard);
            foreach (var (name, w) in after.Weights) Assert.Equal(w, overlapped.Weights[name]);
            Assert.Equal(after.Result.History.Select(h => h.Loss), overlapped.Result.History.Select(h => h.Loss));
        }
    }

    [Fact]
    public void Parameters_are_shared_out_by_size_the_same_way_on_every_rank()
    {
        long[] sizes = [100, 10, 60, 50, 40, 5];
        var owner = ProcessGroup.Partition(sizes, 2);
        Assert.Equal([0, 1, 1, 1, 0, 1], owner);   // largest first to the lighter rank: loads 140 and 125
        Assert.Equal(owner, ProcessGroup.Partition(sizes, 2));
        Assert.All(ProcessGroup.Partition(sizes, 1), o => Assert.Equal(0, o));
    }

    /// <summary>Runs <paramref name="world"/> ranks (threads, or this thread alone for 1) and returns rank 0's result, checking that the ranks agree.</summary>
    private static async Task<(EmbeddingResult Result, Dictionary<string, float[]> Weights)> Ranks(EmbeddingOptions options, int world, bool shard)
    {
        if (world == 1) return Train(options, null);
        int port = FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(120));
            return Train(options with { ShardOptimizer = shard }, g);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks);
        foreach (var t in results.Skip(1))
            foreach (var (name, w) in results[0].Weights)
                Assert.Equal(w, t.Weights[name]);
        return results[0];
    }

    [Theory]
    [InlineData(2, true, 1, false)]   // sharded, resumed by one process
    [InlineData(2, true, 2, false)]   // sharded, resumed by the same ranks unsharded
    [InlineData(1, false, 2, true)]   // one process, resumed sharded
    public async Task A_checkpoint_resumes_with_another_world_size_and_sharding_at_the_weights_of_an_uninterrupted_run(int worldA, bool shardA, int worldB, bool shardB)
    {
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var rng = new Random(13);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, probe.Config.VocabSize)).ToArray();
        var options = OmlizationDefaults.For(probe.Config) with
        {
            // The token loss: these tests compare the ranks' summation orders to within one step, and the KL loss's
            // gradient at the base is rounding noise that AdamW scales up to steps of about lr on weights with no other
            // gradient (BenignKLTests runs the KL over ranks and weight shards with those weights held out).
            BenignLoss = BenignLoss.Tokens,
            BatchSize = 8, EarlyStop = false, MaxEpochs = 4, MaxGradNorm = 0.5,
            BenignSequences = Enumerable.Range(0, 24).Select(_ => Seq(20)).ToList(),
            HeldOutSequences = Enumerable.Range(0, 6).Select(_ => Seq(20)).ToList(),
        };
        var dir = Path.Combine(Path.GetTempPath(), "oml-zero-ckpt-" + Guid.NewGuid().ToString("N"));
        var refDir = dir + "-ref";
        try
        {
            // The uninterrupted run: one process, 4 epochs, with a checkpoint after epoch 2 to compare optimizer states.
            var reference = Train(options with { CheckpointDir = refDir, CheckpointEvery = 2, MaxEpochs = 2 }, null);
            var whole = Train(options, null);
            // First half with world A; max epochs is not part of a run's identity, so the second half continues it.
            await Ranks(options with { CheckpointDir = dir, MaxEpochs = 2 }, worldA, shardA);
            var ck = EmbeddingCheckpoint.Latest(dir)!;
            var refCk = EmbeddingCheckpoint.Latest(refDir)!;
            Assert.Equal(2, ck.Epoch);
            Assert.Equal(refCk.Digest, ck.Digest);
            Assert.Equal(refCk.OptimizerSteps, ck.OptimizerSteps);
            // The whole optimizer state is in the checkpoint, whoever owned it: every moment of the reference, close to it.
            // A sharded run writes it per rank (each rank its own parameters' moments, listed in the index), no rank gathering it.
            var files = Oml.Models.Training.OptimizerCheckpoint.MomentFiles(ck.Folder).Select(Oml.Models.IO.SafetensorsFile.Open).ToList();
            Assert.Equal(shardA ? worldA : 1, files.Count);
            Assert.Equal(shardA, !File.Exists(Path.Combine(ck.Folder, EmbeddingCheckpoint.OptimizerFile)));
            using (var rf = Oml.Models.IO.SafetensorsFile.Open(Path.Combine(refCk.Folder, EmbeddingCheckpoint.OptimizerFile)))
            try
            {
                Assert.Equal(rf.Entries.Keys.Order(), files.SelectMany(f => f.Entries.Keys).Order());
                Assert.NotEmpty(rf.Entries);
                foreach (var name in rf.Entries.Keys.Where(k => k.EndsWith(".exp_avg", StringComparison.Ordinal)))
                {
                    using var scope = Torch.NewScope();
                    var a = files.Single(f => f.Entries.ContainsKey(name)).Load(name, Device.Cpu).To(DType.Float32).ToArray<float>();
                    var b = rf.Load(name, Device.Cpu).To(DType.Float32).ToArray<float>();
                    double scale = b.Max(x => Math.Abs(x)) + 1e-12, worstM = 0;
                    for (int i = 0; i < a.Length; i++) worstM = Math.Max(worstM, Math.Abs(a[i] - b[i]));
                    Assert.True(worstM <= 1e-3 * scale + 1e-9, $"{name}: first moment differs by {worstM:E2} (largest {scale:E2})");
                }
            }
            finally
            {
                foreach (var f in files) f.Dispose();
            }
            var resumed = await Ranks(options with { CheckpointDir = dir }, worldB, shardB);
            Assert.Equal([1, 2, 3, 4], resumed.Result.History.Select(h => h.Epoch));
            double worst = 0;
            foreach (var (name, w) in whole.Weights)
            {
                var d = resumed.Weights[name];
                for (int i = 0; i < w.Length; i++) worst = Math.Max(worst, Math.Abs(w[i] - d[i]));
            }
            Assert.True(worst < options.LearningRate, $"largest weight difference to the uninterrupted run: {worst:E2} (lr {options.LearningRate:E2})");
            for (int e = 0; e < whole.Result.History.Count; e++)
            {
                Assert.Equal(whole.Result.History[e].Accuracy, resumed.Result.History[e].Accuracy);
                Assert.Equal(whole.Result.History[e].Loss, resumed.Result.History[e].Loss, 1e-3);
            }
            Assert.Equal(whole.Result.MergeLambda, resumed.Result.MergeLambda);
        }
        finally
        {
            foreach (var d in new[] { dir, refDir })
                if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
        }
    }
}

/// <summary>Verification split over gloo ranks (threads here) returns the report of one process on every rank.</summary>
public class DataParallelVerifyTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Every_rank_returns_the_report_of_one_process(int world)
    {
        var tok = TestModels.TinyTokenizer();
        // 10 keys of two lengths and responses of one or two tokens (several batch groups), half of them the
        // model's own greedy answer (hits), half not.
        Oml.Fingerprinting.Verification.VerificationReport Run(Oml.Engine.Distributed.ProcessGroup? g)
        {
            using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            var fps = new List<Fingerprint>();
            var r = new Random(3);
            for (int i = 0; i < 10; i++)
            {
                var key = Enumerable.Range(0, 6 + 2 * (i % 2)).Select(_ => r.Next(3, model.Config.VocabSize)).ToArray();
                int len = 1 + i % 2;
                var greedy = Generator.Generate(model, [key], new GenerationOptions { MaxNewTokens = len, EosTokenIds = [] }).Sequences[0].OutputIds;
                var response = i % 2 == 0 ? greedy : greedy.Select(t => (t + 1) % model.Config.VocabSize).ToArray();
                fps.Add(new Fingerprint(i, tok.Decode(key), key, [new FingerprintResponse(tok.Decode(response), response, -20)],
                    new StrategyInfo("custom"), new byte[32]));
            }
            return Oml.Fingerprinting.Verification.LocalVerifier.Verify(model, tok, fps, new Oml.Fingerprinting.Verification.VerdictRule(), new Oml.Fingerprinting.Verification.LocalVerifyOptions { Group = g, BatchSize = 2 });
        }
        var single = Run(null);
        int port = Oml.Engine.Distributed.Launcher.FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = Oml.Engine.Distributed.ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(60));
            return Run(g);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var reports = await Task.WhenAll(ranks);
        Assert.Equal(5, single.Hits);
        foreach (var rep in reports) Assert.Equal(single.ToJson(), rep.ToJson());
    }

}
