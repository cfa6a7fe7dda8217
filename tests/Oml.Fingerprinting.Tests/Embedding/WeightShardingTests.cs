using Oml.Engine;
using Oml.Engine.Distributed;
using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Training;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>
/// Weight sharding (ZeRO-3, <see cref="EmbeddingOptions.ShardWeights"/>) over gloo: 2 ranks (threads of this process,
/// each with its own model and process group, as separate processes would have) train the same global batches as one
/// process, as plain data parallelism and as optimizer sharding (ZeRO-2), and end with their weights; checkpoints move
/// between sharded and unsharded runs of other world sizes; each rank holds about half of the weights and moments.
/// </summary>
public class WeightShardingTests
{
    public enum Mode { Plain, ShardOptimizer, ShardWeights }

    private sealed record Run(EmbeddingResult Result, Dictionary<string, float[]> Weights, List<long> ModelBytesAtRest);

    private static List<TrainingPair> Keys(int count, int vocab, int seed = 5)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TrainingPair(Enumerable.Range(0, 8 + rng.Next(9)).Select(_ => rng.Next(3, vocab)).ToArray(), [rng.Next(3, vocab), rng.Next(3, vocab)]))
            .ToList();
    }

    private static Run Train(string fixture, EmbeddingOptions options, ProcessGroup? group, Mode mode, Action<CausalLM>? prepare = null)
    {
        using var model = ModelFolder.Load(TestModels.Fixture(fixture));
        prepare?.Invoke(model);
        var pairs = Keys(20, model.Config.VocabSize);
        var atRest = new List<long>();
        // Progress is reported between epochs, when the sharded model is at rest: what the model's own tensors hold then.
        var progress = new Oml.Models.InlineProgress<EmbeddingProgress>(_ => atRest.Add(ShardedModel.ParameterBytes(model)));
        var r = Omlization.Train(model, pairs, options with
        {
            Group = group, ShardOptimizer = mode == Mode.ShardOptimizer, ShardWeights = mode == Mode.ShardWeights,
        }, progress);
        return new Run(r, model.ExportParameters().ToDictionary(kv => kv.Key, kv => { using var t = kv.Value; return t.To(DType.Float32).ToArray<float>(); }), atRest);
    }

    /// <summary>Runs <paramref name="world"/> ranks (threads, or this thread alone for 1) and returns rank 0's run, checking that the ranks agree exactly.</summary>
    private static async Task<Run> Ranks(string fixture, EmbeddingOptions options, int world, Mode mode, Action<CausalLM>? prepare = null)
    {
        if (world == 1) return Train(fixture, options, null, Mode.Plain, prepare);
        int port = Launcher.FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(120));
            return Train(fixture, options, g, mode, prepare);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks);
        foreach (var t in results.Skip(1))
            foreach (var (name, w) in results[0].Weights)
                Assert.Equal(w, t.Weights[name]);   // the ranks agree exactly: every rank gathers the same shards at the end
        return results[0];
    }

    private static EmbeddingOptions Options(CausalLM probe, int seed)
    {
        // Batches of 8 over 20 pairs (the last has 4), mixing with benign rows, held-out data, the final merge, clipping:
        // every part of a step. The benign and held-out rows are given (random rows: cheaper than self-generated ones, which
        // Self_generated_sequences_of_a_sharded_model_are_the_whole_models covers on ranks).
        var rng = new Random(seed);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, probe.Config.VocabSize)).ToArray();
        return OmlizationDefaults.For(probe.Config) with
        {
            BatchSize = 8, EarlyStop = false, MaxEpochs = 4, MaxGradNorm = 0.5,
            BenignSequences = Enumerable.Range(0, 24).Select(_ => Seq(20)).ToList(),
            HeldOutSequences = Enumerable.Range(0, 6).Select(_ => Seq(20)).ToList(),
            // The token loss: these tests compare the ranks' summation orders to within one step, and the KL loss's
            // gradient at the base is rounding noise that AdamW scales up to steps of about lr on weights with no other
            // gradient (BenignKLTests runs the KL over ranks and weight shards with those weights held out).
            BenignLoss = BenignLoss.Tokens,
            // Several micro-batches per step, and a different number on the two ranks for some batches.
            MicroBatchTokens = 40,
        };
    }

    private static double WorstDifference(Run a, Run b)
    {
        double worst = 0;
        foreach (var (name, w) in a.Weights)
        {
            var d = b.Weights[name];
            Assert.Equal(w.Length, d.Length);
            for (int i = 0; i < w.Length; i++) worst = Math.Max(worst, Math.Abs(w[i] - d[i]));
        }
        return worst;
    }

    private static void SameTrajectory(Run expected, Run actual)
    {
        Assert.Equal(expected.Result.History.Count, actual.Result.History.Count);
        for (int e = 0; e < expected.Result.History.Count; e++)
        {
            Assert.Equal(expected.Result.History[e].Accuracy, actual.Result.History[e].Accuracy);
            Assert.Equal(expected.Result.History[e].Loss, actual.Result.History[e].Loss, 1e-4);
            // (A checkpoint's history does not keep the held-out loss: a resumed run's first epochs have none.)
            if (expected.Result.History[e].HeldOutLoss is { } h && actual.Result.History[e].HeldOutLoss is { } g) Assert.Equal(h, g, 1e-4);
        }
        Assert.Equal(expected.Result.MergeLambda, actual.Result.MergeLambda);
    }

    [Theory]
    [InlineData("llama-tiny", 2, null)]   // greedy; 3 chunks of 256 prompts: rank 1 only takes part in the third round's gathers
    [InlineData("qwen2-tiny", 3, 1.0)]    // sampled; tied embeddings: the head gathers the embedding unit
    public async Task Self_generated_sequences_of_a_sharded_model_are_the_whole_models(string fixture, int world, double? temperature)
    {
        // Sampled, each chunk draws from a generator of its own seeded from the seed and the chunk, so the ranks (threads
        // of one process here, drawing at the same time) sample what one process samples.
        const int count = 600, length = 5;
        List<int[]> expected;
        using (var whole = ModelFolder.Load(TestModels.Fixture(fixture)))
            expected = FingerprintTrainer.SelfGenerated(whole, count, length, seed: 7, temperature);
        Assert.Equal(count, expected.Count);
        int port = Launcher.FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(120));
            using var sharded = ShardedModel.Load(TestModels.Fixture(fixture), g, _ => true);
            using var model = sharded.Model;
            var got = FingerprintTrainer.SelfGenerated(sharded, count, length, seed: 7, temperature);
            Assert.Equal(0, ShardedModel.ParameterBytes(model));   // no rank held the whole model
            return got;
        }, TaskCreationOptions.LongRunning)).ToArray();
        foreach (var got in await Task.WhenAll(ranks)) Assert.Equal(expected, got);
    }

    [Theory]
    [InlineData("llama-tiny")]   // untied LM head
    [InlineData("qwen2-tiny")]   // tied embeddings (the head gathers the embedding table), q/k/v biases
    public async Task Two_weight_sharded_ranks_end_with_the_weights_of_one_process_and_of_optimizer_sharding(string fixture)
    {
        using var probe = ModelFolder.Load(TestModels.Fixture(fixture));
        var options = Options(probe, 11);
        var single = await Ranks(fixture, options, 1, Mode.Plain);
        var zero2 = await Ranks(fixture, options, 2, Mode.ShardOptimizer);
        var zero3 = await Ranks(fixture, options, 2, Mode.ShardWeights);

        // Summation order differs (per-rank sums, then the reduction), and Adam divides by √v, so a weight whose gradient
        // is near zero can move by a fraction of one step differently: bounded by one step (lr) on any weight.
        double toSingle = WorstDifference(single, zero3), toZero2 = WorstDifference(zero2, zero3);
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{fixture}: largest weight difference of ZeRO-3 to one process {toSingle:E2}, to ZeRO-2 {toZero2:E2}, ZeRO-2 to one process {WorstDifference(single, zero2):E2}");
        Assert.True(toSingle < options.LearningRate, $"largest weight difference to one process: {toSingle:E2} (lr {options.LearningRate:E2})");
        Assert.True(toZero2 < options.LearningRate, $"largest weight difference to optimizer sharding: {toZero2:E2} (lr {options.LearningRate:E2})");
        SameTrajectory(single, zero3);
        SameTrajectory(zero2, zero3);
    }

    [Fact]
    public async Task Weight_sharding_trains_lora_adapters_as_one_process_does()
    {
        const string fixture = "llama-tiny";
        using var probe = ModelFolder.Load(TestModels.Fixture(fixture));
        var options = Options(probe, 17) with
        {
            Trainable = n => n.EndsWith(".lora_A", StringComparison.Ordinal) || n.EndsWith(".lora_B", StringComparison.Ordinal),
            LearningRate = 1e-2,
        };
        // Every rank (a thread here) draws the same adapters: AddLora draws from a generator of its own seeded with 3.
        static void Lora(CausalLM m) =>
            m.AddLora(n => n.Contains(".self_attn.", StringComparison.Ordinal) || n.Contains(".mlp.", StringComparison.Ordinal), 4, 8, 3);
        var single = await Ranks(fixture, options, 1, Mode.Plain, Lora);
        var zero3 = await Ranks(fixture, options, 2, Mode.ShardWeights, Lora);
        double worst = WorstDifference(single, zero3);
        Assert.True(worst < options.LearningRate, $"largest merged-weight difference to one process: {worst:E2}");
        TestContext.Current.TestOutputHelper?.WriteLine($"LoRA: largest merged-weight difference of ZeRO-3 to one process {worst:E2}");
        SameTrajectory(single, zero3);
        // The adapters moved the merged weights (the comparison is not of two untrained models).
        using var baseModel = ModelFolder.Load(TestModels.Fixture(fixture));
        var q = baseModel.Parameters["model.layers.0.self_attn.q_proj.weight"].ToArray<float>();
        Assert.NotEqual(q, single.Weights["model.layers.0.self_attn.q_proj.weight"]);
    }

    [Fact]
    public async Task Each_rank_holds_about_half_of_the_weights_and_moments_and_the_model_is_empty_at_rest()
    {
        const string fixture = "llama-tiny";
        using var probe = ModelFolder.Load(TestModels.Fixture(fixture));
        var options = Options(probe, 11) with { MaxEpochs = 2 };
        long whole = ShardedModel.ParameterBytes(probe);
        var single = await Ranks(fixture, options, 1, Mode.Plain);
        var zero2 = await Ranks(fixture, options, 2, Mode.ShardOptimizer);
        var zero3 = await Ranks(fixture, options, 2, Mode.ShardWeights);
        var one = single.Result.History[^1];
        var opt2 = zero2.Result.History[^1];
        var rank0 = zero3.Result.History[^1];
        // One process holds the model and moments for every parameter (2 × 4 bytes per float32 weight).
        Assert.Equal(whole, one.ParameterBytes);
        Assert.Equal(2 * whole, one.OptimizerBytes);
        Assert.Equal(whole, opt2.ParameterBytes);   // optimizer sharding keeps the whole weights on every rank
        // Weight sharding: half of every flat group, padded by less than one element per rank and group.
        Assert.InRange(rank0.ParameterBytes, whole / 2, whole / 2 + 4 * 8 * 2);
        Assert.InRange(rank0.OptimizerBytes, whole - 4 * 8 * 2, whole + 4 * 8 * 2);
        // Between epochs the model's own parameter tensors hold nothing: only the shards are there.
        Assert.Equal([0L, 0L], zero3.ModelBytesAtRest);
        Assert.Equal([whole, whole], single.ModelBytesAtRest);
    }

    [Theory]
    [InlineData(2, Mode.ShardWeights, 1, Mode.Plain)]            // weight-sharded, resumed by one process
    [InlineData(1, Mode.Plain, 2, Mode.ShardWeights)]            // one process, resumed weight-sharded
    [InlineData(2, Mode.ShardWeights, 2, Mode.ShardOptimizer)]   // weight-sharded, resumed by the same ranks with ZeRO-2
    [InlineData(2, Mode.ShardOptimizer, 2, Mode.ShardWeights)]   // and the other way round
    [InlineData(2, Mode.ShardWeights, 3, Mode.ShardWeights)]     // weight-sharded, resumed weight-sharded by 3 ranks
    public async Task A_weight_sharded_checkpoint_resumes_with_another_world_size_and_mode_at_the_weights_of_an_uninterrupted_run(
        int worldA, Mode modeA, int worldB, Mode modeB)
    {
        const string fixture = "llama-tiny";
        using var probe = ModelFolder.Load(TestModels.Fixture(fixture));
        var options = Options(probe, 13);
        var dir = Path.Combine(Path.GetTempPath(), "oml-zero3-ckpt-" + Guid.NewGuid().ToString("N"));
        var refDir = dir + "-ref";
        try
        {
            // The uninterrupted run: one process, 4 epochs; and one with a checkpoint after epoch 2 to compare states with.
            var whole = await Ranks(fixture, options, 1, Mode.Plain);
            await Ranks(fixture, options with { CheckpointDir = refDir, MaxEpochs = 2 }, 1, Mode.Plain);
            await Ranks(fixture, options with { CheckpointDir = dir, MaxEpochs = 2 }, worldA, modeA);
            var ck = EmbeddingCheckpoint.Latest(dir)!;
            var refCk = EmbeddingCheckpoint.Latest(refDir)!;
            Assert.Equal(2, ck.Epoch);
            Assert.Equal(refCk.Digest, ck.Digest);
            Assert.Equal(refCk.OptimizerSteps, ck.OptimizerSteps);
            // A weight-sharded run writes each rank's segments (values and moments) to its own file, nothing whole.
            var segmentFiles = OptimizerCheckpoint.SegmentIndex(ck.Folder);
            Assert.Equal(modeA == Mode.ShardWeights ? worldA : 0, segmentFiles.Count);
            Assert.Equal(modeA != Mode.ShardWeights, File.Exists(Path.Combine(ck.Folder, EmbeddingCheckpoint.ParamsFile)));
            using var segments = new OptimizerCheckpoint.SegmentReader(ck.Folder);
            // The same tensors as one process writes: every parameter and moment, by name, close to the reference's
            // (a --shard-optimizer run keeps its moments in per-rank files with an index; a weight-sharded run every
            // parameter's and moment's segments in per-rank files; one process both whole, in one file each).
            foreach (var kind in new[] { "params", "moments" })
            {
                var files = segmentFiles.Count > 0 ? [] : kind == "params" ? [Path.Combine(ck.Folder, EmbeddingCheckpoint.ParamsFile)]
                    : OptimizerCheckpoint.MomentFiles(ck.Folder);
                var opened = files.Select(Oml.Models.IO.SafetensorsFile.Open).ToList();
                try
                {
                    string file = kind == "params" ? EmbeddingCheckpoint.ParamsFile : EmbeddingCheckpoint.OptimizerFile;
                    using var rf = Oml.Models.IO.SafetensorsFile.Open(Path.Combine(refCk.Folder, file));
                    if (segmentFiles.Count == 0) Assert.Equal(rf.Entries.Keys.Order(), opened.SelectMany(f => f.Entries.Keys).Order());
                    else
                    {
                        // Every element of every parameter in exactly one segment, across the ranks' files.
                        var covered = segmentFiles.SelectMany(f => f.Segments).GroupBy(sg => sg.Name).ToDictionary(g => g.Key, g => g.Sum(sg => sg.Length));
                        Assert.Equal(refCk.OptimizerSteps.Keys.Order(), covered.Keys.Order());
                        foreach (var (pname, count) in covered) Assert.Equal(count, rf.Entries.ContainsKey(pname) ? rf.Entries[pname].NumEl : count);
                    }
                    Assert.NotEmpty(rf.Entries);
                    foreach (var name in rf.Entries.Keys.Where(k => !k.EndsWith(".exp_avg_sq", StringComparison.Ordinal)))
                    {
                        using var scope = Torch.NewScope();
                        string param = kind == "params" ? name : name[..^".exp_avg".Length], suffix = kind == "params" ? "" : ".exp_avg";
                        var a = (segmentFiles.Count > 0 ? segments.Read(param, suffix, 0, rf.Entries[name].NumEl)
                            : opened.Single(f => f.Entries.ContainsKey(name)).Load(name, Device.Cpu)).To(DType.Float32).ToArray<float>();
                        var b = rf.Load(name, Device.Cpu).To(DType.Float32).ToArray<float>();
                        double scale = b.Max(x => Math.Abs(x)) + 1e-12, worst = 0;
                        for (int i = 0; i < a.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
                        double bound = name.EndsWith(".exp_avg", StringComparison.Ordinal) ? 1e-3 * scale + 1e-9 : options.LearningRate;
                        Assert.True(worst <= bound, $"{file} {name}: differs by {worst:E2} (largest {scale:E2})");
                    }
                }
                finally
                {
                    foreach (var f in opened) f.Dispose();
                }
            }
            var resumed = await Ranks(fixture, options with { CheckpointDir = dir }, worldB, modeB);
            Assert.Equal([1, 2, 3, 4], resumed.Result.History.Select(h => h.Epoch));
            double worstW = WorstDifference(whole, resumed);
            Assert.True(worstW < options.LearningRate, $"largest weight difference to the uninterrupted run: {worstW:E2} (lr {options.LearningRate:E2})");
            SameTrajectory(whole, resumed);
        }
        finally
        {
            foreach (var d in new[] { dir, refDir })
                if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
        }
    }

    private sealed record Saved(EmbeddingResult Result, string? Digest, string? RunDigest, long LoadPeakBytes, long ShardBytes, long Adapters);

    /// <summary>
    /// 2 weight-sharded ranks (threads) train and save <paramref name="fixture"/>: loaded sharded (each rank reads only its
    /// slices; the model stays sharded and is streamed to disk one unit at a time), or loaded whole and sharded (the
    /// model gathered on every rank at the end and saved whole by rank 0). Returns rank 0's outcome.
    /// </summary>
    private static async Task<Saved> SaveRanks(string fixture, EmbeddingOptions options, bool loadSharded, string outDir, long maxShardBytes,
        Action<CausalLM>? prepare)
    {
        int port = Launcher.FreePort();
        string dir = TestModels.Fixture(fixture);
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(120));
            var o = options with { Group = g, ShardWeights = true };
            Func<string, bool> trainable = n => options.Trainable?.Invoke(n) ?? true;
            if (!loadSharded)
            {
                using var model = ModelFolder.Load(dir);
                prepare?.Invoke(model);
                // Sharding a model loaded whole holds the whole model first.
                using (var probe = ModelFolder.Load(dir))
                {
                    long before = ShardedModel.ParameterBytes(probe);
                    using var shardedWhole = new ShardedModel(probe, g, _ => true);
                    Assert.Equal(before + shardedWhole.ShardBytes, shardedWhole.LoadPeakBytes);
                }
                var r = FingerprintTrainer.Embed(model, Keys(20, model.Config.VocabSize), o);
                string? digest = g.Rank == 0 ? ModelFolder.SaveWithDigest(model, outDir, dir, maxShardBytes) : null;
                return new Saved(r, digest, o.CheckpointDir is { } c ? EmbeddingCheckpoint.Latest(c)?.Digest : null, 0, 0, 0);
            }
            var sharded = ShardedModel.Load(dir, g, trainable, prepare: prepare, maxPieceBytes: 4096);
            using var lm = sharded.Model;
            using var shards = sharded;
            long adapters = lm.Parameters.Where(kv => CausalLM.IsAdapter(kv.Key)).Sum(kv => sharded.NumElOf(kv.Key) * kv.Value.DType.ElementSize());
            var result = FingerprintTrainer.Embed(sharded, Keys(20, lm.Config.VocabSize), o);
            // Trained and saved without gathering the model: its own tensors are still empty.
            Assert.Equal(0, ShardedModel.ParameterBytes(lm));
            string? saved = sharded.SaveWithDigest(outDir, dir, maxShardBytes);
            Assert.Equal(0, ShardedModel.ParameterBytes(lm));
            Assert.Equal(g.Rank == 0, saved is not null);
            return new Saved(result, saved, o.CheckpointDir is { } cd ? EmbeddingCheckpoint.Latest(cd)?.Digest : null, sharded.LoadPeakBytes, sharded.ShardBytes, adapters);
        }, TaskCreationOptions.LongRunning)).ToArray();
        return (await Task.WhenAll(ranks))[0];
    }

    [Theory]
    [InlineData("llama-tiny-sharded", false, 4L << 30, false)]   // weights in two files with an index; saved as one file
    [InlineData("qwen2-tiny", false, 200_000L, false)]          // tied embeddings; saved in shards with an index
    [InlineData("llama-tiny", true, 4L << 30, false)]           // LoRA adapters, merged on save
    [InlineData("qwen2-tiny", false, 200_000L, true)]           // the KL benign loss (oml embed's default): targets from the sharded forward pass
    public async Task A_model_loaded_sharded_holds_half_of_it_and_saves_the_bytes_of_the_load_then_shard_path(string fixture, bool lora, long maxShardBytes, bool kl)
    {
        using var probe = ModelFolder.Load(TestModels.Fixture(fixture));
        long whole = ShardedModel.ParameterBytes(probe);
        var options = Options(probe, 19) with { MaxEpochs = 2, ResumptionPairs = 1, BenignLoss = kl ? BenignLoss.KL : BenignLoss.Tokens };
        Action<CausalLM>? prepare = null;
        if (lora)
        {
            options = options with
            {
                Trainable = n => n.EndsWith(".lora_A", StringComparison.Ordinal) || n.EndsWith(".lora_B", StringComparison.Ordinal),
                LearningRate = 1e-2,
            };
            prepare = m => m.AddLora(n => n.Contains(".self_attn.", StringComparison.Ordinal) || n.Contains(".mlp.", StringComparison.Ordinal), 4, 8, 3);
        }
        var root = Path.Combine(Path.GetTempPath(), "oml-zero3-load-" + Guid.NewGuid().ToString("N"));
        string expectedDir = Path.Combine(root, "whole"), actualDir = Path.Combine(root, "sharded");
        try
        {
            var expected = await SaveRanks(fixture, options with { CheckpointDir = Path.Combine(root, "ck-whole") }, loadSharded: false, expectedDir, maxShardBytes, prepare);
            var actual = await SaveRanks(fixture, options with { CheckpointDir = Path.Combine(root, "ck-sharded") }, loadSharded: true, actualDir, maxShardBytes, prepare);

            // The same run: the same digest over the base weights (gathered a unit at a time), losses, recall, merge λ.
            Assert.NotNull(actual.RunDigest);
            Assert.Equal(expected.RunDigest, actual.RunDigest);
            Assert.Equal(expected.Result.History.Select(h => (h.Loss, h.Accuracy, h.HeldOutLoss)), actual.Result.History.Select(h => (h.Loss, h.Accuracy, h.HeldOutLoss)));
            Assert.Equal(expected.Result.MergeLambda, actual.Result.MergeLambda);
            Assert.Equal(expected.Result.ResumptionPairs, actual.Result.ResumptionPairs);
            Assert.True(actual.Result.ResumptionPairs > 0);
            Assert.Equal(expected.Result.TrainedParameters, actual.Result.TrainedParameters);
            // The same files, byte for byte, and the digest hashed while writing is the folder's.
            Assert.Equal(expected.Digest, actual.Digest);
            Assert.Equal(ModelFolder.WeightsDigest(actualDir), actual.Digest);
            var files = Directory.GetFiles(expectedDir).Select(Path.GetFileName).Order().ToList();
            Assert.Equal(files, Directory.GetFiles(actualDir).Select(Path.GetFileName).Order().ToList());
            Assert.Equal(maxShardBytes < whole, files.Contains(ModelFolder.IndexFile));
            foreach (var f in files) Assert.Equal(File.ReadAllBytes(Path.Combine(expectedDir, f!)), File.ReadAllBytes(Path.Combine(actualDir, f!)));
            // The model moved (the comparison is not of two copies of the base).
            Assert.NotEqual(ModelFolder.WeightsDigest(TestModels.Fixture(fixture)), actual.Digest);

            // Loading sharded, a rank held its half of each flat group (padded by less than an element per group) and
            // one piece of at most 4096 bytes in flight, besides the one-element stand-ins and any LoRA adapters
            // (made whole on every rank before sharding): about half of the model.
            int groups = 2 * (probe.Config.NumLayers + 2);
            Assert.InRange(actual.ShardBytes, (whole + actual.Adapters) / 2, (whole + actual.Adapters) / 2 + 4 * groups);
            Assert.InRange(actual.LoadPeakBytes, actual.ShardBytes, actual.ShardBytes + actual.Adapters + 4096 + 4 * probe.Parameters.Count);
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"{fixture}: peak parameter bytes while loading {actual.LoadPeakBytes} of {whole} ({(double)actual.LoadPeakBytes / whole:P1})");
            if (!lora) Assert.True(actual.LoadPeakBytes < 0.52 * whole, $"load peak {actual.LoadPeakBytes} of {whole}");
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Weight_sharding_needs_a_process_group()
    {
        var e = Assert.Throws<ArgumentException>(() => new EmbeddingOptions { ShardWeights = true }.Validate());
        Assert.Contains("process group", e.Message);
    }
}
