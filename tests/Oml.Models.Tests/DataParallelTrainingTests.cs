using Oml.Engine;
using Oml.Engine.Distributed;
using Oml.Models.Training;

namespace Oml.Models.Tests;

/// <summary>Data-parallel pretraining over gloo: N ranks (threads, each with its own model and group) against one process.</summary>
public sealed class DataParallelTrainingTests
{
    private static ModelConfig Tiny() =>
        ModelConfig.Parse(System.Text.Json.Nodes.JsonNode.Parse("""
            {"model_type": "llama", "vocab_size": 32, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
            """)!.AsObject());

    private static int[] Periodic(int n = 1500) => Enumerable.Range(0, n).Select(i => 3 + (i * 5 % 7) * 3).ToArray();

    private static int FreePort() => Launcher.FreePort();

    // The initial weights, made once: the ranks here are threads of one process, which share libtorch's global
    // generator, so each creating its own random model would race on it (separate processes would not).
    private static readonly Dictionary<string, float[]> Initial = MakeInitial();

    private static Dictionary<string, float[]> MakeInitial()
    {
        using var m = Pretraining.CreateRandom(Tiny(), 1);
        return m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
    }

    private static (TrainingResult Result, Dictionary<string, float[]> Weights) Train(TrainingOptions o, ProcessGroup? group)
    {
        using var model = Pretraining.CreateRandom(Tiny(), 1);
        using (Torch.NoGrad())
            foreach (var (name, p) in model.Parameters)
                using (var t = Torch.FromArray(Initial[name], p.Shape))
                    p.CopyFrom(t);
        var r = Trainer.Train(model, new PackedTokens(Periodic(), 16, seed: 3), o with { Group = group });
        return (r, model.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>()));
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    public async Task N_ranks_train_as_one_process_with_the_same_global_batch(int world, int accumulation)
    {
        // 7 rows per micro-batch: the ranks get unequal shares (4 + 3, or 3 + 2 + 2).
        var o = new TrainingOptions { Steps = 12, Batch = 7, GradAccum = accumulation, LearningRate = 1e-2, LogEvery = 4, MaxGradNorm = 1.0 };
        var single = Train(o, null);
        int port = FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(120));
            return Train(o, g);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks);
        foreach (var r in results.Skip(1))
            foreach (var (name, w) in results[0].Weights) Assert.Equal(w, r.Weights[name]);
        double worst = single.Weights.Max(kv => kv.Value.Zip(results[0].Weights[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
        Assert.True(worst < o.LearningRate, $"largest weight difference to one process: {worst:E2}");
        Assert.Equal(single.Result.History.Count, results[0].Result.History.Count);
        for (int i = 0; i < single.Result.History.Count; i++)
        {
            Assert.Equal(single.Result.History[i].Loss, results[0].Result.History[i].Loss, 3);
            Assert.Equal(single.Result.History[i].Tokens, results[0].Result.History[i].Tokens);
        }
    }

    [Fact]
    public void A_micro_batch_is_shared_out_by_contiguous_rows()
    {
        var b = new TrainingBatch(Enumerable.Range(0, 14).Select(i => (long)i).ToArray(), new long[14], null, 7, 2);
        var shares = Enumerable.Range(0, 3).Select(r => b.Share(r, 3)!).ToList();
        Assert.Equal([3, 2, 2], shares.Select(s => s.Rows));
        Assert.Equal(Enumerable.Range(0, 14).Select(i => (long)i), shares.SelectMany(s => s.Inputs));
        Assert.Null(new TrainingBatch([1, 2], [1, 2], null, 1, 2).Share(1, 2));
        Assert.Same(b, b.Share(0, 1));
    }
}
