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
        var pairs = Keys(20, model.Config.VocabSize);
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
        // The benign and held-out rows are given: the ranks here are threads of one process, which share libtorch's
        // global generator, so sampled ones would differ between runs (separate processes would each draw the same).
        var rng = new Random(11);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, probe.Config.VocabSize)).ToArray();
        var options = OmlizationDefaults.For(probe.Config) with
        {
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
            Assert.Equal(single.Result.History[e].Loss, r0.Result.History[e].Loss, 3);
        }
        Assert.Equal(single.Result.MergeLambda, r0.Result.MergeLambda);
    }

    [Fact]
    public void Parameters_are_shared_out_by_size_the_same_way_on_every_rank()
    {
        long[] sizes = [100, 10, 60, 50, 40, 5];
        var owner = ProcessGroup.Partition(sizes, 2);
        Assert.Equal([0, 1, 1, 1, 0, 1], owner);   // largest first to the lighter rank: loads 140 and 125
        Assert.Equal(owner, ProcessGroup.Partition(sizes, 2));
        Assert.All(ProcessGroup.Partition(sizes, 1), o => Assert.Equal(0, o));
        Assert.Throws<ArgumentException>(() => new EmbeddingOptions { ShardOptimizer = true, CheckpointDir = "x" }.Validate());
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
