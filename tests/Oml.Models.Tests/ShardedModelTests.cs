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

        Assert.Equal(expectedLoss, results[0].loss!.Value, 5);
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
}
