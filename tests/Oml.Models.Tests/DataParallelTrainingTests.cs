using Oml.Engine;
using Oml.Engine.Distributed;
using Oml.Models.Training;

namespace Oml.Models.Tests;

/// <summary>
/// Tests that set <see cref="OptimizerCheckpoint.BeforeShardWrite"/> (a static hook every sharded checkpoint write calls)
/// run one class at a time: a sharded write of a test in another class at the same moment would call the hook too.
/// </summary>
[CollectionDefinition(nameof(CheckpointWriteHookTests))]
public sealed class CheckpointWriteHookTests;

/// <summary>Data-parallel pretraining over gloo: N ranks (threads, each with its own model and group) against one process.</summary>
[Collection(nameof(CheckpointWriteHookTests))]
public sealed class DataParallelTrainingTests
{
    private static ModelConfig Tiny() =>
        ModelConfig.Parse(System.Text.Json.Nodes.JsonNode.Parse("""
            {"model_type": "llama", "vocab_size": 32, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
            """)!.AsObject());

    private static int[] Periodic(int n = 1500) => Enumerable.Range(0, n).Select(i => 3 + (i * 5 % 7) * 3).ToArray();

    private static int FreePort() => Launcher.FreePort();

    // The initial weights, which every rank draws for itself (Pretraining.CreateRandom draws from a generator of its own
    // seeded with the seed, so the ranks, threads of one process here, draw the same whatever the others draw meanwhile).
    private static readonly Dictionary<string, float[]> Initial = MakeInitial();

    private static Dictionary<string, float[]> MakeInitial()
    {
        using var m = Pretraining.CreateRandom(Tiny(), 1);
        return m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
    }

    private static (TrainingResult Result, Dictionary<string, float[]> Weights) Train(TrainingOptions o, ProcessGroup? group,
        IProgress<TrainingProgress>? progress = null, CancellationTokenSource? stop = null, Func<TrainingData>? data = null,
        Func<TrainingData>? eval = null, DType dtype = DType.Float32)
    {
        using var model = Pretraining.CreateRandom(Tiny(), 1, dtype: dtype);
        var r = Trainer.Train(model, data?.Invoke() ?? new PackedTokens(Periodic(), 16, seed: 3), o with { Group = group }, eval?.Invoke(), progress: progress,
            cancel: stop?.Token ?? TestContext.Current.CancellationToken);
        return (r, model.Parameters.ToDictionary(kv => kv.Key, kv => { using var f = kv.Value.To(DType.Float32); return f.ToArray<float>(); }));
    }

    [Theory]
    [InlineData(2, 1, true, false)]    // gradient all-reduce overlapped with the backward pass (the default)
    [InlineData(3, 2, true, false)]
    [InlineData(2, 2, false, false)]   // the all-reduce after the backward pass
    [InlineData(2, 2, true, true)]     // sharded optimizer, the reduce to the owners overlapped with backward
    [InlineData(3, 1, true, true)]
    [InlineData(2, 1, false, true)]    // sharded optimizer, the reduce to the owners after backward
    public async Task N_ranks_train_as_one_process_with_the_same_global_batch(int world, int accumulation, bool overlap, bool shard)
    {
        // 7 rows per micro-batch: the ranks get unequal shares (4 + 3, or 3 + 2 + 2).
        var o = new TrainingOptions { Steps = 12, Batch = 7, GradAccum = accumulation, LearningRate = 1e-2, LogEvery = 4, MaxGradNorm = 1.0 };
        var single = Train(o, null);
        var results = await Ranks(world, o with { OverlapAllReduce = overlap, ShardOptimizer = shard });
        foreach (var r in results.Skip(1))
            foreach (var (name, w) in results[0].Weights) Assert.Equal(w, r.Weights[name]);
        double worst = single.Weights.Max(kv => kv.Value.Zip(results[0].Weights[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
        Assert.True(worst < o.LearningRate, $"largest weight difference to one process: {worst:E2}");
        Assert.Equal(single.Result.History.Count, results[0].Result.History.Count);
        for (int i = 0; i < single.Result.History.Count; i++)
        {
            Assert.Equal(single.Result.History[i].Loss, results[0].Result.History[i].Loss, 1e-3);
            Assert.Equal(single.Result.History[i].Tokens, results[0].Result.History[i].Tokens);
        }
    }

    private static async Task<(TrainingResult Result, Dictionary<string, float[]> Weights)[]> Ranks(int world, TrainingOptions o,
        Func<int, IProgress<TrainingProgress>?>? progress = null, CancellationTokenSource? stop = null, Func<TrainingData>? data = null,
        Func<TrainingData>? eval = null, DType dtype = DType.Float32, Func<int, TrainingOptions, TrainingOptions>? perRank = null)
    {
        // One process trains unsharded (weight and optimizer sharding need several ranks).
        if (world == 1) return [Train(o with { ShardWeights = false, ShardOptimizer = false }, null, progress?.Invoke(0), stop, data, eval, dtype)];
        int port = FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(120));
            return Train(perRank?.Invoke(rank, o) ?? o, g, progress?.Invoke(rank), stop, data, eval, dtype);
        }, TaskCreationOptions.LongRunning)).ToArray();
        return await Task.WhenAll(ranks);
    }

    /// <summary>Prompt/response rows of 2-5 + 1-6 tokens: batches are right-padded (an attention mask) and only responses train.</summary>
    private static SupervisedData Supervised(int seed, int count = 40)
    {
        var rng = new Random(seed);
        var rows = Enumerable.Range(0, count).Select(_ => new SupervisedExample(
            Enumerable.Range(0, rng.Next(2, 6)).Select(_ => rng.Next(3, 32)).ToArray(),
            Enumerable.Range(0, rng.Next(1, 7)).Select(_ => rng.Next(3, 32)).ToArray())).ToList();
        return new SupervisedData(rows, padId: 0, maxLength: 16, seed: (ulong)seed);
    }

    [Theory]
    [InlineData(2, 1, false, false)]
    [InlineData(3, 2, false, false)]   // 7 rows over 3 ranks, gradients accumulated over 2 micro-batches
    [InlineData(2, 2, true, false)]    // prompt/response rows: padding (an attention mask) and held-out evaluation, sharded too
    public async Task Weight_sharded_ranks_train_as_one_process_with_the_same_global_batch(int world, int accumulation, bool supervised, bool bf16)
    {
        var o = new TrainingOptions { Steps = 12, Batch = 7, GradAccum = accumulation, LearningRate = 1e-2, LogEvery = 4, MaxGradNorm = 1.0, EvalEvery = 6 };
        Func<TrainingData>? data = supervised ? () => Supervised(1) : null;
        Func<TrainingData>? eval = supervised ? () => Supervised(2, 13) : null;
        var dtype = bf16 ? DType.BFloat16 : DType.Float32;
        var single = Train(o, null, data: data, eval: eval, dtype: dtype);
        var results = await Ranks(world, o with { ShardWeights = true }, data: data, eval: eval, dtype: dtype);
        // Every rank ends with the same whole model (gathered at the end), that of one process up to summation order.
        foreach (var r in results.Skip(1))
            foreach (var (name, w) in results[0].Weights) Assert.Equal(w, r.Weights[name]);
        double worst = single.Weights.Max(kv => kv.Value.Zip(results[0].Weights[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
        double moved = single.Weights.Max(kv => kv.Value.Zip(Initial[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
        Assert.True(moved > 3 * o.LearningRate, $"the weights moved by at most {moved:E2}");
        Assert.True(worst < o.LearningRate, $"largest weight difference to one process: {worst:E2} (moved up to {moved:E2})");
        TestContext.Current.SendDiagnosticMessage($"world {world}: largest difference {worst:E2}, largest move {moved:E2}");
        Assert.Equal(single.Result.History.Count, results[0].Result.History.Count);
        Assert.Equal(single.Result.TrainedParameters, results[0].Result.TrainedParameters);
        for (int i = 0; i < single.Result.History.Count; i++)
        {
            Assert.Equal(single.Result.History[i].Loss, results[0].Result.History[i].Loss, bf16 ? 2 : 3);
            Assert.Equal(single.Result.History[i].GradNorm, results[0].Result.History[i].GradNorm, bf16 ? 1 : 3);
            Assert.Equal(single.Result.History[i].Tokens, results[0].Result.History[i].Tokens);
            Assert.Equal(single.Result.History[i].EvalLoss is null, results[0].Result.History[i].EvalLoss is null);
            if (single.Result.History[i].EvalLoss is { } ev) Assert.Equal(ev, results[0].Result.History[i].EvalLoss!.Value, 1e-3);
        }
        if (supervised) Assert.Equal(2, single.Result.History.Count(h => h.EvalLoss is not null));
    }

    [Theory]
    [InlineData(2, "weights", 1, "none")]       // weight-sharded by 2, resumed by one process
    [InlineData(2, "weights", 3, "weights")]    // by 2, resumed weight-sharded by 3
    [InlineData(1, "none", 2, "weights")]       // one process, resumed weight-sharded by 2
    [InlineData(2, "optimizer", 2, "weights")]  // optimizer-sharded, resumed weight-sharded
    [InlineData(2, "weights", 2, "optimizer")]  // weight-sharded, resumed optimizer-sharded
    public async Task A_weight_sharded_checkpoint_resumes_with_another_world_size_and_mode(int worldA, string modeA, int worldB, string modeB)
    {
        var o = new TrainingOptions { Steps = 12, Batch = 7, LearningRate = 1e-2, LogEvery = 3, MaxGradNorm = 1.0, CheckpointEvery = 6 };
        TrainingOptions Mode(string m) => o with { ShardWeights = m == "weights", ShardOptimizer = m == "optimizer" };
        var dir = Path.Combine(Path.GetTempPath(), "oml-train-zero3-" + Guid.NewGuid().ToString("N"));
        try
        {
            var whole = Train(o with { CheckpointEvery = 0 }, null);
            await FirstHalf(worldA, Mode(modeA) with { CheckpointDir = dir });
            var ck = TrainingCheckpoint.Latest(dir)!;
            Assert.Equal(6, ck.Step);
            Assert.All(ck.OptimizerSteps.Values, s => Assert.Equal(6, s));
            if (modeA == "weights")
            {
                // One segment file per rank, no whole tensor; across the files every element of every parameter once.
                var index = OptimizerCheckpoint.SegmentIndex(ck.Folder);
                Assert.Equal(worldA, index.Count);
                Assert.False(File.Exists(Path.Combine(ck.Folder, TrainingCheckpoint.ParamsFile)));
                foreach (var (name, w) in Initial)
                    Assert.Equal(w.Length, index.SelectMany(f => f.Segments).Where(sg => sg.Name == name).Sum(sg => sg.Length));
                Assert.All(index.SelectMany(f => f.Segments), sg => Assert.True(sg.Moments));
            }

            var resumed = await Ranks(worldB, Mode(modeB) with { CheckpointDir = dir });
            Assert.Equal(6, resumed[0].Result.ResumedFromStep);
            foreach (var r in resumed.Skip(1))
                foreach (var (name, w) in resumed[0].Weights) Assert.Equal(w, r.Weights[name]);
            double worst = whole.Weights.Max(kv => kv.Value.Zip(resumed[0].Weights[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
            Assert.True(worst < o.LearningRate, $"largest weight difference to the uninterrupted run: {worst:E2}");
            Assert.Equal(whole.Result.History.Select(h => h.Step), resumed[0].Result.History.Select(h => h.Step));
            for (int i = 0; i < whole.Result.History.Count; i++)
                Assert.Equal(whole.Result.History[i].Loss, resumed[0].Result.History[i].Loss, 1e-3);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task The_overlapped_all_reduce_gives_the_weights_of_the_all_reduce_after_backward_exactly()
    {
        // Two ranks sum two values per element: the same sums whatever the buckets, so the same weights to the bit.
        var o = new TrainingOptions { Steps = 6, Batch = 7, GradAccum = 2, LearningRate = 1e-2, LogEvery = 3, MaxGradNorm = 1.0 };
        var overlapped = await Ranks(2, o with { OverlapAllReduce = true });
        var after = await Ranks(2, o with { OverlapAllReduce = false });
        foreach (var (name, w) in after[0].Weights) Assert.Equal(w, overlapped[0].Weights[name]);
        Assert.Equal(after[0].Result.History.Select(h => h.Loss), overlapped[0].Result.History.Select(h => h.Loss));
    }

    private sealed class Synchronous<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("weights")]
    public async Task A_stop_seen_by_one_rank_stops_every_rank_at_the_same_report_step_with_a_checkpoint(string mode)
    {
        var o = new TrainingOptions { Steps = 12, Batch = 7, LearningRate = 1e-2, LogEvery = 3, MaxGradNorm = 1.0, ShardWeights = mode == "weights" };
        var dir = Path.Combine(Path.GetTempPath(), "oml-train-stop-" + Guid.NewGuid().ToString("N"));
        try
        {
            var whole = Train(o with { ShardWeights = false }, null);
            // Only rank 1 is told to stop, during step 4 (rank 0 has no stop token at all): the ranks agree at the next report
            // step (6), which is checkpointed.
            using var stop = new CancellationTokenSource();
            var part = await Ranks(2, o with { CheckpointDir = dir }, perRank: (rank, x) => rank == 1 ? x with { Stop = stop.Token } : x,
                data: () => new StopAtStep(new PackedTokens(Periodic(), 16, seed: 3), 4, stop));
            Assert.All(part, r => Assert.Equal(6, r.Result.StoppedAtStep));
            Assert.Equal(6, TrainingCheckpoint.Latest(dir)!.Step);

            var resumed = await Ranks(1, o with { CheckpointDir = dir });
            Assert.False(resumed[0].Result.Stopped);
            Assert.Equal(6, resumed[0].Result.ResumedFromStep);
            double worst = whole.Weights.Max(kv => kv.Value.Zip(resumed[0].Weights[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
            Assert.True(worst < o.LearningRate, $"largest weight difference to the uninterrupted run: {worst:E2}");
            Assert.Equal(whole.Result.History.Select(h => h.Step), resumed[0].Result.History.Select(h => h.Step));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Trains to step 6 of 12 with <paramref name="world"/> ranks and a checkpoint there, then stops (cancelled).</summary>
    private static async Task FirstHalf(int world, TrainingOptions o)
    {
        using var stop = new CancellationTokenSource();
        var progress = new Synchronous<TrainingProgress>(p => { if (p.Step == 6) stop.Cancel(); });
        // Rank 0 reports step 6 before any rank can pass the checkpoint's collectives, so every rank stops at step 7.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Ranks(world, o, r => r == 0 ? progress : null, stop));
    }

    [Theory]
    [InlineData(2, true, 1, false)]   // sharded by 2, resumed by one process
    [InlineData(2, true, 3, true)]    // sharded by 2, resumed sharded by 3
    [InlineData(1, false, 2, true)]   // one process, resumed sharded by 2
    public async Task A_checkpoint_resumes_with_another_world_size_and_sharding(int worldA, bool shardA, int worldB, bool shardB)
    {
        var o = new TrainingOptions { Steps = 12, Batch = 7, LearningRate = 1e-2, LogEvery = 3, MaxGradNorm = 1.0, CheckpointEvery = 6 };
        var dir = Path.Combine(Path.GetTempPath(), "oml-train-shard-" + Guid.NewGuid().ToString("N"));
        try
        {
            var whole = Train(o with { CheckpointEvery = 0 }, null);
            await FirstHalf(worldA, o with { CheckpointDir = dir, ShardOptimizer = shardA });
            var ck = TrainingCheckpoint.Latest(dir)!;
            Assert.Equal(6, ck.Step);
            var index = OptimizerCheckpoint.ShardIndex(ck.Folder);
            Assert.Equal(shardA ? worldA : 0, index.Count);
            Assert.Equal(shardA, !File.Exists(Path.Combine(ck.Folder, TrainingCheckpoint.OptimizerFile)));
            // Every parameter's moments are in exactly one file, each rank's file holding only its own.
            var names = new List<string>();
            foreach (var file in OptimizerCheckpoint.MomentFiles(ck.Folder))
            {
                using var f = Oml.Models.IO.SafetensorsFile.Open(file);
                names.AddRange(f.Entries.Keys);
            }
            Assert.Equal(Initial.Keys.SelectMany(n => new[] { n + ".exp_avg", n + ".exp_avg_sq" }).Order(), names.Order());
            Assert.All(ck.OptimizerSteps.Values, s => Assert.Equal(6, s));

            var resumed = await Ranks(worldB, o with { CheckpointDir = dir, ShardOptimizer = shardB });
            Assert.Equal(6, resumed[0].Result.ResumedFromStep);
            foreach (var r in resumed.Skip(1))
                foreach (var (name, w) in resumed[0].Weights) Assert.Equal(w, r.Weights[name]);
            double worst = whole.Weights.Max(kv => kv.Value.Zip(resumed[0].Weights[kv.Key], (a, b) => (double)Math.Abs(a - b)).Max());
            Assert.True(worst < o.LearningRate, $"largest weight difference to the uninterrupted run: {worst:E2}");
            Assert.Equal(whole.Result.History.Select(h => h.Step), resumed[0].Result.History.Select(h => h.Step));
            for (int i = 0; i < whole.Result.History.Count; i++)
                Assert.Equal(whole.Result.History[i].Loss, resumed[0].Result.History[i].Loss, 1e-3);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_rank_failing_to_write_its_part_leaves_the_previous_checkpoint_the_latest_and_a_partial_one_never_loads()
    {
        var o = new TrainingOptions { Steps = 9, Batch = 7, LearningRate = 1e-2, LogEvery = 3, MaxGradNorm = 1.0, CheckpointEvery = 3, ShardOptimizer = true };
        var dir = Path.Combine(Path.GetTempPath(), "oml-train-shard-fail-" + Guid.NewGuid().ToString("N"));
        int writes = 0;
        try
        {
            // Rank 1 fails at its second checkpoint (step 6), after rank 0 wrote the parameters and its own moments.
            OptimizerCheckpoint.BeforeShardWrite = r =>
            {
                if (r == 1 && Interlocked.Increment(ref writes) == 2) throw new IOException("disk full (simulated)");
            };
            var e = await Assert.ThrowsAsync<IOException>(() => Ranks(2, o with { CheckpointDir = dir }));
            Assert.Contains("rank", e.Message, StringComparison.Ordinal);
            OptimizerCheckpoint.BeforeShardWrite = null;
            var ck = TrainingCheckpoint.Latest(dir)!;
            Assert.Equal(3, ck.Step);
            Assert.Equal(["step-000000003"], Directory.EnumerateDirectories(dir).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')));

            // A folder whose shard is missing or shorter than the index says (a copy cut short) is not a checkpoint.
            var later = Path.Combine(dir, "step-000000009");
            Directory.CreateDirectory(later);
            foreach (var f in Directory.EnumerateFiles(ck.Folder)) File.Copy(f, Path.Combine(later, Path.GetFileName(f)));
            var shard = Path.Combine(later, OptimizerCheckpoint.ShardFile(1, 2));
            using (var s = File.OpenWrite(shard)) s.SetLength(s.Length - 1);
            Assert.Equal(ck.Folder, TrainingCheckpoint.Latest(dir)!.Folder);
            File.Delete(shard);
            Assert.Equal(ck.Folder, TrainingCheckpoint.Latest(dir)!.Folder);
            File.Copy(Path.Combine(ck.Folder, OptimizerCheckpoint.ShardFile(1, 2)), shard);
            Assert.Equal(later, TrainingCheckpoint.Latest(dir)!.Folder);   // the same folder, complete again, is one
        }
        finally
        {
            OptimizerCheckpoint.BeforeShardWrite = null;
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("llama-tiny", true)]    // LoRA adapters added before sharding (Trainer.AddLora as the prepare step), merged on save
    [InlineData("qwen2-tiny", false)]   // tied embeddings, full fine-tuning, saved in bfloat16
    public async Task A_model_loaded_sharded_trains_and_saves_as_the_same_model_loaded_whole_and_sharded_for_the_run(string fixture, bool lora)
    {
        var o = new TrainingOptions
        {
            Steps = 6, Batch = 5, LearningRate = 1e-2, LogEvery = 3, MaxGradNorm = 1.0, ShardWeights = true, Seed = 4,
            Lora = lora ? new LoraOptions(4, 8) : null,
        };
        var save = lora ? (DType?)null : DType.BFloat16;
        var root = Path.Combine(Path.GetTempPath(), "oml-train-loaded-sharded-" + Guid.NewGuid().ToString("N"));
        string viaWhole = Path.Combine(root, "whole"), viaShards = Path.Combine(root, "sharded"), blocked = Path.Combine(root, "a-file");
        var src = Fixtures.Model(fixture);
        try
        {
            Directory.CreateDirectory(root);
            File.WriteAllText(blocked, "not a folder");
            int port = Launcher.FreePort();
            var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
            {
                using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(120));
                var opts = o with { Group = g };
                // The reference: loaded whole on every rank, sharded for the run, gathered whole at the end, saved by rank 0.
                TrainingResult a;
                string? digestA = null;
                using (var whole = ModelFolder.Load(src))
                {
                    a = Trainer.Train(whole, new PackedTokens(Periodic(), 16, seed: 3), opts, cancel: TestContext.Current.CancellationToken);
                    if (rank == 0)
                    {
                        if (save is { } d)
                        {
                            var converted = whole.ExportParameters().ToDictionary(kv => kv.Key, kv => { using var w = kv.Value; return w.To(d).DetachFromScope(); });
                            using var saved = new CausalLM(whole.Config, converted, whole.Device, whole.RotaryPrecision);
                            digestA = ModelFolder.SaveWithDigest(saved, viaWhole, src);
                        }
                        else digestA = ModelFolder.SaveWithDigest(whole, viaWhole, src);
                    }
                }
                // Loaded sharded (no rank holds the whole model), trained, streamed to disk one unit at a time.
                using var sharded = ShardedModel.Load(src, g, Trainer.Selector(opts), prepare: m => Trainer.AddLora(m, opts));
                using var model = sharded.Model;
                var b = Trainer.Train(sharded, new PackedTokens(Periodic(), 16, seed: 3), opts, cancel: TestContext.Current.CancellationToken);
                Assert.Equal(0, ShardedModel.ParameterBytes(model));   // still sharded after training
                var digestB = sharded.SaveWithDigest(viaShards, src, dtype: save);
                Assert.Equal(digestA, digestB);
                Assert.Equal(a.History.Select(h => h.Loss), b.History.Select(h => h.Loss));
                Assert.Equal(a.TrainedParameters, b.TrainedParameters);
                // A rank 0 that cannot even start its save (AbandonSave) still gathers with the others, and both fail at once.
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var e = Assert.Throws<IOException>(() =>
                {
                    if (rank == 0) sharded.AbandonSave($"{blocked} is a file", dtype: save);
                    else sharded.SaveWithDigest(blocked, null, dtype: save);
                });
                Assert.StartsWith($"rank {rank} of 2", e.Message, StringComparison.Ordinal);
                Assert.Contains(rank == 0 ? "is a file" : "another rank", e.Message, StringComparison.Ordinal);
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the failure took {clock.Elapsed}");
                Assert.Throws<ArgumentException>(() => Trainer.Train(sharded, new PackedTokens(Periodic(), 16, seed: 3), opts with { ShardWeights = false }, cancel: TestContext.Current.CancellationToken));
            }, TaskCreationOptions.LongRunning)).ToArray();
            await Task.WhenAll(ranks);
            var names = Directory.GetFiles(viaWhole).Select(Path.GetFileName).Order().ToList();
            Assert.Equal(names, Directory.GetFiles(viaShards).Select(Path.GetFileName).Order().ToList());
            foreach (var f in names) Assert.Equal(File.ReadAllBytes(Path.Combine(viaWhole, f!)), File.ReadAllBytes(Path.Combine(viaShards, f!)));
            // The training moved the saved weights away from the base's.
            using var trained = ModelFolder.Load(viaShards, dtype: DType.Float32);
            using var before = ModelFolder.Load(src);
            Assert.Contains(before.Parameters, kv => !kv.Value.ToArray<float>().SequenceEqual(trained.Parameters[kv.Key].ToArray<float>()));
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
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
