using Oml.Engine;
using Oml.Engine.Distributed;
using Oml.Models.Training;

namespace Oml.Models.Tests;

/// <summary>
/// Weight sharding (<see cref="ShardedModel"/>) over gloo with 2 ranks (threads, each with its own model and group): the
/// sharded forward equals the model's, the reduce-scattered segment gradients are the slices of the whole model's
/// gradients summed over both ranks' inputs, a rank without input takes part without contributing, and at rest each rank
/// holds half of the weights and the model's own tensors none.
/// </summary>
[Collection(nameof(CheckpointWriteHookTests))]
public sealed class ShardedModelTests
{
    private static Tensor Ids(int seed, int vocab)
    {
        var rng = new Random(seed);
        return Torch.FromArray(Enumerable.Range(0, 2 * 9).Select(_ => (long)rng.Next(3, vocab)).ToArray(), 2, 9);
    }

    private static Tensor LossOf(CausalLM model, Tensor hidden, Tensor ids) => CausalLM.Loss(model.Head(hidden), ids);

    [Theory]
    [InlineData("llama-tiny", false)]
    [InlineData("qwen2-tiny", false)]   // tied embeddings: the head gathers the embedding unit
    [InlineData("llama-tiny", true)]    // rank 1 has no input: it only takes part
    public async Task Segment_gradients_are_slices_of_the_whole_models_gradients_summed_over_the_ranks(string fixture, bool idleRank)
    {
        // The reference: one model, both ranks' inputs back-propagated in turn (the gradients add up).
        Dictionary<string, float[]> reference;
        float expectedLoss;
        long wholeBytes;
        using (var model = ModelFolder.Load(Fixtures.Model(fixture)))
        {
            wholeBytes = ShardedModel.ParameterBytes(model);
            foreach (var p in model.Parameters.Values) p.RequiresGrad = true;
            using var a = Ids(1, model.Config.VocabSize);
            using var b = Ids(2, model.Config.VocabSize);
            using (Torch.NoGrad()) expectedLoss = LossOf(model, model.Hidden(a), a).ToSingle();
            model.CheckpointedBackward(a, h => LossOf(model, h, a));
            if (!idleRank) model.CheckpointedBackward(b, h => LossOf(model, h, b));
            reference = model.Parameters.Where(kv => kv.Value.Grad is not null)
                .ToDictionary(kv => kv.Key, kv => { using var g = kv.Value.Grad!; return g.ToArray<float>(); });
        }
        Assert.NotEmpty(reference);

        int port = Launcher.FreePort();
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(60));
            using var model = ModelFolder.Load(Fixtures.Model(fixture));
            var original = model.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
            foreach (var p in model.Parameters.Values) p.RequiresGrad = true;
            using var sharded = new ShardedModel(model, g, _ => true);
            long atRest = ShardedModel.ParameterBytes(model), shardBytes = sharded.ShardBytes;
            using var ids = rank == 0 ? Ids(1, model.Config.VocabSize) : idleRank ? null : Ids(2, model.Config.VocabSize);
            float? loss;
            using (var l = sharded.Run(ids, h => LossOf(model, h, ids!))) loss = l?.ToSingle();
            sharded.CheckpointedBackward(ids, ids is null ? null : h => LossOf(model, h, ids));
            var grads = sharded.TrainableSegments.Select(s => { using var gr = s.Shard.Grad; return (s.Name, s.Start, Grad: gr?.ToArray<float>()); }).ToList();
            long afterStep = ShardedModel.ParameterBytes(model);
            sharded.Materialize();
            var restored = model.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
            return (atRest, shardBytes, afterStep, loss, grads, original, restored);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks);

        Assert.Equal(expectedLoss, results[0].loss!.Value, 1e-5);
        if (idleRank) Assert.Null(results[1].loss);
        var covered = new Dictionary<string, long>();
        foreach (var r in results)
        {
            Assert.Equal(0, r.atRest);      // the model's own tensors are empty at rest
            Assert.Equal(0, r.afterStep);   // and again after a forward and backward pass
            Assert.InRange(r.shardBytes, wholeBytes / 2, wholeBytes / 2 + 4 * 2 * 8);   // half of each flat group, padding < 2 elements
            foreach (var (name, w) in r.original) Assert.Equal(w, r.restored[name]);   // gathered back exactly
            foreach (var (name, start, grad) in r.grads)
            {
                covered[name] = covered.GetValueOrDefault(name) + (grad?.Length ?? 0);
                if (!reference.TryGetValue(name, out var whole)) { Assert.True(grad is null || grad.All(x => x == 0), name); continue; }
                Assert.NotNull(grad);
                double scale = whole.Max(x => Math.Abs(x)) + 1e-12;
                for (int i = 0; i < grad!.Length; i++)
                    Assert.True(Math.Abs(grad[i] - whole[start + i]) <= 1e-5 * scale + 1e-7, $"{name}[{start + i}]: {grad[i]} vs {whole[start + i]}");
            }
        }
        // The two ranks' segments cover every element of every parameter that has a gradient, once.
        foreach (var (name, whole) in reference) Assert.Equal(whole.Length, covered[name]);
    }

    [Fact]
    public async Task A_segment_checkpoint_is_all_or_nothing_and_reads_back_whole_with_any_world_size()
    {
        const string fixture = "llama-tiny";
        var dir = Path.Combine(Path.GetTempPath(), "oml-segments-" + Guid.NewGuid().ToString("N"));
        int writes = 0;
        static System.Text.Json.Nodes.JsonObject State(System.Text.Json.Nodes.JsonObject steps) =>
            new() { ["format"] = "test-segments", ["version"] = 1, ["optimizer_steps"] = steps };
        try
        {
            // Rank 1 fails while writing its file at the second checkpoint (after rank 0 wrote its own).
            OptimizerCheckpoint.BeforeShardWrite = r =>
            {
                if (r == 1 && Interlocked.Increment(ref writes) == 2) throw new IOException("disk full (simulated)");
            };
            int port = Launcher.FreePort();
            var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
            {
                using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(60));
                using var sharded = ShardedModel.Load(Fixtures.Model(fixture), g, n => n.Contains(".mlp.", StringComparison.Ordinal));
                using var model = sharded.Model;
                // Every rank lists every trainable parameter (a rank may hold no segment of a small one).
                var names = model.Parameters.Keys.Where(n => n.Contains(".mlp.", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
                var segments = sharded.TrainableSegments.Select(sg => (sg.Name, sg.Start, sg.Shard, 1L, ((Tensor, Tensor)?)(sg.Shard * 2, sg.Shard * 3))).ToList();
                OptimizerCheckpoint.SaveSegments(g, Device.Cpu, dir, "n-", 3, 1, names, segments, State);
                var e = Assert.Throws<IOException>(() => OptimizerCheckpoint.SaveSegments(g, Device.Cpu, dir, "n-", 3, 2, names, segments, State));
                Assert.StartsWith($"rank {rank} of 2", e.Message, StringComparison.Ordinal);
                Assert.Contains(rank == 1 ? "disk full" : "other rank", e.Message, StringComparison.Ordinal);
            }, TaskCreationOptions.LongRunning)).ToArray();
            await Task.WhenAll(ranks);
            OptimizerCheckpoint.BeforeShardWrite = null;
            var (folder, state) = OptimizerCheckpoint.Latest(dir, "n-", "test-segments", 1, "a test checkpoint")!.Value;
            Assert.Equal("n-001", Path.GetFileName(folder));
            Assert.Equal(["n-001"], Directory.EnumerateDirectories(dir).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')));
            Assert.Equal(2, OptimizerCheckpoint.SegmentIndex(folder).Count);
            Assert.All(OptimizerCheckpoint.OptimizerSteps(state).Values, st => Assert.Equal(1, st));

            // One process reads every trainable parameter whole, values and moments, as the base model holds them.
            using (var model = ModelFolder.Load(Fixtures.Model(fixture)))
            {
                var trainable = model.Parameters.Where(kv => kv.Key.Contains(".mlp.", StringComparison.Ordinal)).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
                var expected = trainable.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
                foreach (var (_, p) in trainable) { p.Zero(); p.RequiresGrad = true; }
                using var opt = new AdamW([new ParamGroup(trainable.Select(kv => kv.Value))]);
                OptimizerCheckpoint.Restore(folder, OptimizerCheckpoint.OptimizerSteps(state), trainable, opt);
                foreach (var (name, p) in trainable)
                {
                    Assert.Equal(expected[name], p.ToArray<float>());
                    var m = opt.MomentsOf(p)!.Value;
                    Assert.Equal(expected[name].Select(x => x * 2).ToArray(), m.ExpAvg.ToArray<float>());
                    Assert.Equal(expected[name].Select(x => x * 3).ToArray(), m.ExpAvgSq.ToArray<float>());
                }
            }

            // A folder whose segment file is missing or shorter than the index says is not a checkpoint.
            var later = Path.Combine(dir, "n-003");
            Directory.CreateDirectory(later);
            foreach (var f in Directory.EnumerateFiles(folder)) File.Copy(f, Path.Combine(later, Path.GetFileName(f)));
            var file = Path.Combine(later, OptimizerCheckpoint.SegmentFile(1, 2));
            using (var st = File.OpenWrite(file)) st.SetLength(st.Length - 1);
            Assert.Equal(folder, OptimizerCheckpoint.Latest(dir, "n-", "test-segments", 1, "a test checkpoint")!.Value.Folder);
            File.Delete(file);
            Assert.Equal(folder, OptimizerCheckpoint.Latest(dir, "n-", "test-segments", 1, "a test checkpoint")!.Value.Folder);
            File.Copy(Path.Combine(folder, OptimizerCheckpoint.SegmentFile(1, 2)), file);
            Assert.Equal(later, OptimizerCheckpoint.Latest(dir, "n-", "test-segments", 1, "a test checkpoint")!.Value.Folder);
        }
        finally
        {
            OptimizerCheckpoint.BeforeShardWrite = null;
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("llama-tiny", 2)]
    [InlineData("qwen2-tiny", 3)]   // tied embeddings: the head's units include the embeddings
    public async Task Prefetching_the_next_units_gather_gives_the_same_bits(string fixture, int world)
    {
        int port = Launcher.FreePort();
        var ranks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, TimeSpan.FromSeconds(60));
            using var sharded = ShardedModel.Load(Fixtures.Model(fixture), g, _ => true);
            using var model = sharded.Model;
            foreach (var p in model.Parameters.Values) p.RequiresGrad = true;
            // Rank 1 has no input: it only takes part, with prefetches of its own that must match the others'.
            using var ids = rank == 1 ? null : Ids(1 + rank, model.Config.VocabSize);
            (float? Loss, float? Trained, List<float[]?> Grads) Pass(bool prefetch)
            {
                sharded.Prefetch = prefetch;
                long started = sharded.PrefetchesStarted;
                foreach (var sg in sharded.TrainableSegments) sg.Shard.Grad = null;
                float? loss;
                using (var l = sharded.Run(ids, ids is null ? null : h => LossOf(model, h, ids))) loss = l?.ToSingle();
                float? trained;
                using (var l = sharded.CheckpointedBackward(ids, ids is null ? null : h => LossOf(model, h, ids))) trained = l?.ToSingle();
                var grads = sharded.TrainableSegments.Select(sg => { using var gr = sg.Shard.Grad; return gr?.ToArray<float>(); }).ToList();
                Assert.Equal(0, ShardedModel.ParameterBytes(model));   // nothing left gathered or in flight
                // Every unit a pass gathers after its first was prefetched: the L layers and the head(s) of each forward
                // pass, then the L layers and the embeddings of the backward pass (each unit here is one flat group).
                long groups = sharded.PrefetchesStarted - started;
                if (prefetch) Assert.True(groups >= 3 * model.Config.NumLayers + 3, $"{groups} gathers prefetched");
                else Assert.Equal(0, groups);
                return (loss, trained, grads);
            }
            var without = Pass(false);
            var with = Pass(true);
            var again = Pass(false);
            return (without, with, again);
        }, TaskCreationOptions.LongRunning)).ToArray();
        foreach (var (without, with, again) in await Task.WhenAll(ranks))
        {
            Assert.Equal(without.Loss, with.Loss);
            Assert.Equal(without.Trained, with.Trained);
            Assert.Equal(without.Grads, with.Grads);
            Assert.Equal(without.Grads, again.Grads);
            Assert.Contains(with.Grads, gr => gr is not null && gr.Any(x => x != 0));
        }
    }

    [Fact]
    public void A_load_that_fails_while_sharding_frees_the_shards_it_had_allocated()
    {
        // The trainable choice throws at the second layer: the embeddings' and the first layer's shards exist by then.
        int port = Launcher.FreePort();
        using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, 0, 1, TimeSpan.FromSeconds(60));
        var allocated = new List<Tensor>();
        ShardedModel.TrackBuffers = allocated;
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() => ShardedModel.Load(Fixtures.Model("llama-tiny"), g,
                n => n.StartsWith("model.layers.1.", StringComparison.Ordinal) ? throw new InvalidOperationException("no choice for layer 1") : true));
            Assert.Equal("no choice for layer 1", e.Message);
        }
        finally
        {
            ShardedModel.TrackBuffers = null;
        }
        Assert.True(allocated.Count >= 4, $"{allocated.Count} tensors allocated before the failure");
        Assert.All(allocated, t => Assert.True(t.IsDisposed));
    }

    [Fact]
    public async Task Loading_sharded_checks_the_folder_as_loading_whole_does_and_reads_an_indexed_folder()
    {
        var bad = Path.Combine(Path.GetTempPath(), "oml-sharded-load-" + Guid.NewGuid().ToString("N"));
        try
        {
            // A folder that lacks a tensor fails the same way before any rank reads a slice.
            Directory.CreateDirectory(bad);
            File.Copy(Path.Combine(Fixtures.Model("llama-tiny"), "config.json"), Path.Combine(bad, "config.json"));
            using (var whole = ModelFolder.Load(Fixtures.Model("llama-tiny")))
                Oml.Models.IO.Safetensors.Save(Path.Combine(bad, "model.safetensors"), whole.Parameters.Where(kv => kv.Key != "model.norm.weight"));
            var expected = Assert.Throws<InvalidDataException>(() => ModelFolder.Load(bad)).Message;
            int port = Launcher.FreePort();
            var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
            {
                using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(60));
                Assert.Equal(expected, Assert.Throws<InvalidDataException>(() => ShardedModel.Load(bad, g, _ => true)).Message);
                // An indexed (two-file) folder: the shards hold the values of the whole model's, bit for bit.
                using var sharded = ShardedModel.Load(Fixtures.Model("llama-tiny-sharded"), g, _ => true, maxPieceBytes: 64);
                using var model = sharded.Model;
                using var whole = ModelFolder.Load(Fixtures.Model("llama-tiny-sharded"));
                foreach (var sg in sharded.Segments)
                    Assert.Equal(whole.Parameters[sg.Name].Reshape(-1).Narrow(0, sg.Start, sg.Length).ToArray<float>(), sg.Shard.ToArray<float>());
                Assert.Equal(0, ShardedModel.ParameterBytes(model));
                long total = whole.Parameters.Sum(kv => kv.Value.NumEl);
                Assert.InRange(sharded.Segments.Sum(sg => sg.Length) * 2, total - 64, total + 64);
            }, TaskCreationOptions.LongRunning)).ToArray();
            await Task.WhenAll(ranks);
        }
        finally
        {
            if (Directory.Exists(bad)) Directory.Delete(bad, recursive: true);
        }
    }

    [Theory]
    [InlineData("qwen2-tiny", 4L << 30)]
    [InlineData("llama-tiny", 100_000L)]   // sharded output with an index
    public async Task A_sharded_model_streams_the_files_of_the_whole_save_and_a_failed_write_fails_every_rank(string fixture, long maxShardBytes)
    {
        var root = Path.Combine(Path.GetTempPath(), "oml-sharded-save-" + Guid.NewGuid().ToString("N"));
        string expected = Path.Combine(root, "whole"), actual = Path.Combine(root, "sharded"), blocked = Path.Combine(root, "a-file");
        try
        {
            Directory.CreateDirectory(root);
            File.WriteAllText(blocked, "not a folder");
            string digest;
            using (var whole = ModelFolder.Load(Fixtures.Model(fixture)))
                digest = ModelFolder.SaveWithDigest(whole, expected, Fixtures.Model(fixture), maxShardBytes);
            int port = Launcher.FreePort();
            var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
            {
                using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, 2, TimeSpan.FromSeconds(60));
                using var sharded = ShardedModel.Load(Fixtures.Model(fixture), g, _ => true);
                using var model = sharded.Model;
                var saved = sharded.SaveWithDigest(actual, Fixtures.Model(fixture), maxShardBytes);
                Assert.Equal(rank == 0 ? digest : null, saved);
                Assert.Equal(0, ShardedModel.ParameterBytes(model));
                // Rank 0 cannot write (the folder is a file): it still takes part in every gather, and every rank fails.
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var e = Assert.Throws<IOException>(() => sharded.SaveWithDigest(blocked, null, maxShardBytes));
                Assert.StartsWith($"rank {rank} of 2", e.Message, StringComparison.Ordinal);
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the failure took {clock.Elapsed}");
            }, TaskCreationOptions.LongRunning)).ToArray();
            await Task.WhenAll(ranks);
            var names = Directory.GetFiles(expected).Select(Path.GetFileName).Order().ToList();
            Assert.Equal(names, Directory.GetFiles(actual).Select(Path.GetFileName).Order().ToList());
            Assert.Equal(maxShardBytes < 4L << 30, names.Contains(ModelFolder.IndexFile));
            foreach (var f in names) Assert.Equal(File.ReadAllBytes(Path.Combine(expected, f!)), File.ReadAllBytes(Path.Combine(actual, f!)));
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }
}
