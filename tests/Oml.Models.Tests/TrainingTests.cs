using Oml.Engine;
using Oml.Models.Training;

namespace Oml.Models.Tests;

public class TrainingTests
{
    private static ModelConfig Tiny(int vocab = 32) =>
        new LlamaShape(vocab, Hidden: 16, Layers: 1, Heads: 2, KvHeads: 1, Intermediate: 32, MaxPositions: 64).ToConfig(0, 1, 2);

    /// <summary>A periodic stream (period 7): easy to learn, so a working loop drives the loss far below ln(vocab).</summary>
    private static int[] Periodic(int n = 1500) => Enumerable.Range(0, n).Select(i => 3 + (i * 5 % 7) * 3).ToArray();

    private static TrainingResult Run(CausalLM model, TrainingData data, TrainingOptions options, TrainingData? eval = null,
        IProgress<TrainingProgress>? progress = null) =>
        Trainer.Train(model, data, options, eval, progress, TestContext.Current.CancellationToken);

    private static Dictionary<string, byte[]> Snapshot(CausalLM m) => m.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.ToBytes());

    [Fact]
    public void Pretraining_loss_falls_on_a_tiny_periodic_corpus()
    {
        using var model = Pretraining.CreateRandom(Tiny(), 1);
        var data = new PackedTokens(Periodic(), 16, seed: 3);
        var result = Run(model, data, new TrainingOptions { Steps = 60, Batch = 8, LearningRate = 1e-2, LogEvery = 10 }, data);
        Assert.Equal(6, result.History.Count);
        Assert.True(result.History[0].Loss > 2.5, $"first loss {result.History[0].Loss}");
        Assert.True(result.Final.Loss < 1.0, $"final loss {result.Final.Loss}");
        Assert.NotNull(result.EvalLoss);
        Assert.True(result.EvalLoss < 1.0);
        Assert.Equal(60L * 8 * 16, result.Final.Tokens);
        Assert.All(model.Parameters.Values, p => Assert.False(p.RequiresGrad));
    }

    [Fact]
    public void The_schedule_warms_up_linearly_and_decays_by_cosine_to_the_minimum()
    {
        Assert.Equal(0.5, Trainer.LearningRateAt(5, 110, 1, 0.1, 10), 12);
        Assert.Equal(1.0, Trainer.LearningRateAt(10, 110, 1, 0.1, 10), 12);
        Assert.Equal(0.55, Trainer.LearningRateAt(60, 110, 1, 0.1, 10), 12); // halfway: min + (max − min)/2
        Assert.Equal(0.1, Trainer.LearningRateAt(110, 110, 1, 0.1, 10), 12);
    }

    [Fact]
    public void Packed_epochs_visit_every_window_once_per_epoch_and_steps_are_reproducible()
    {
        var tokens = Enumerable.Range(0, 81).ToArray(); // 10 windows of 8 (+1 for the last target)
        var data = new PackedTokens(tokens, 8, seed: 5, PackedSampling.Epochs);
        Assert.Equal(10, data.Windows);
        var firsts = Enumerable.Range(0, 5).SelectMany(s => data.Step(s, 2, 1)[0].Inputs.Chunk(8).Select(w => w[0])).ToList();
        Assert.Equal(Enumerable.Range(0, 10).Select(w => (long)w * 8), firsts.Order());
        var b = data.Step(3, 2, 1)[0];
        Assert.Equal(b.Inputs.Select(x => x + 1), b.Targets); // targets are the next tokens
        Assert.Equal(b.Inputs, new PackedTokens(tokens, 8, seed: 5, PackedSampling.Epochs).Step(3, 2, 1)[0].Inputs);
        Assert.NotEqual(firsts, Enumerable.Range(5, 5).SelectMany(s => data.Step(s, 2, 1)[0].Inputs.Chunk(8).Select(w => w[0])).ToList());
        Assert.Equal([25, 26, 27, 28, 29], PackedTokens.Slice(Enumerable.Range(0, 50).ToArray(), 5, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedTokens.Slice(tokens, 3, 3));
    }

    [Fact]
    public void Supervised_rows_train_on_the_response_only()
    {
        var batch = SupervisedData.Collate([new SupervisedExample([5, 6, 7], [8, 9]), new SupervisedExample([1], [2])], padId: 0);
        Assert.Equal(4, batch.Length);
        Assert.Equal([5, 6, 7, 8, 1, 0, 0, 0], batch.Inputs);
        Assert.Equal([-100, -100, 8, 9, 2, -100, -100, -100], batch.Targets);
        Assert.Equal([1, 1, 1, 1, 1, 0, 0, 0], batch.Mask!);
        Assert.Equal(3, batch.LabelCount);
    }

    [Fact]
    public void Supervised_loss_equals_the_response_only_cross_entropy_computed_by_hand()
    {
        using var model = Pretraining.CreateRandom(Tiny(), 7);
        var examples = new[] { new SupervisedExample([5, 6, 7], [8, 9]), new SupervisedExample([3], [4]), new SupervisedExample([10, 11], [12, 13, 14]) };
        var data = new SupervisedData(examples, padId: 2, maxLength: 16);
        double loss = Trainer.Evaluate(model, data, batch: 3);

        // By hand: each example alone (no padding), −log p(response token | everything before it), averaged over the
        // 1 + 2 + 3 = 6 response tokens.
        double sum = 0;
        int n = 0;
        foreach (var e in examples)
        {
            using var scope = Torch.NewScope();
            var seq = e.Prompt.Concat(e.Response).Select(x => (long)x).ToArray();
            var logp = model.Forward(Torch.FromArray(seq, 1, seq.Length)).LogSoftmax(-1).ToArray<float>();
            int v = model.Config.VocabSize;
            for (int j = e.Prompt.Length; j < seq.Length; j++, n++) sum -= logp[(j - 1) * v + (int)seq[j]];
        }
        Assert.Equal(6, n);
        Assert.Equal(sum / n, loss, 1e-5);
    }

    [Fact]
    public void Supervised_training_learns_the_responses()
    {
        // Each prompt [4, 5 + i] is answered by 20 + i: learnable only from the response positions.
        using var model = Pretraining.CreateRandom(Tiny(), 3);
        var examples = Enumerable.Range(0, 8).Select(i => new SupervisedExample([4, 5 + i], [20 + i])).ToList();
        var data = new SupervisedData(examples, padId: 2, maxLength: 8, seed: 1);
        var result = Run(model, data, new TrainingOptions { Steps = 40, Batch = 8, LearningRate = 5e-2, LogEvery = 40, WeightDecay = 0 });
        Assert.True(result.Final.Loss < 0.5, $"loss {result.Final.Loss}");
        Assert.True(Trainer.Evaluate(model, data) < 0.2);
        using var scope = Torch.NewScope();
        var logits = model.Forward(Torch.FromArray(new long[] { 4, 5 }, 1, 2));
        Assert.Equal(20, logits.Narrow(1, 1, 1).ArgMax(-1).ToInt64());
    }

    [Fact]
    public void Lora_trains_only_the_adapters_and_the_merged_model_changes()
    {
        using var model = Pretraining.CreateRandom(Tiny(), 2);
        var before = Snapshot(model);
        var data = new PackedTokens(Periodic(), 16, seed: 1);
        var result = Run(model, data, new TrainingOptions { Steps = 5, Batch = 4, LearningRate = 1e-2, Lora = new LoraOptions(2, 4) });
        Assert.Equal(7, model.LoraTargets.Count); // q, k, v, o, gate, up, down of the one layer
        foreach (var (name, bytes) in before) Assert.Equal(bytes, model.Parameters[name].ToBytes());
        Assert.Equal(model.Parameters.Where(kv => Trainer.IsAdapter(kv.Key)).Sum(kv => kv.Value.NumEl), result.TrainedParameters);
        Assert.Contains(model.Parameters, kv => kv.Key.EndsWith(".lora_B") && kv.Value.Abs().Max().ToDouble() > 0);
        var merged = model.ExportParameters();
        try
        {
            Assert.NotEqual(before["model.layers.0.mlp.up_proj.weight"], merged["model.layers.0.mlp.up_proj.weight"].ToBytes());
            Assert.Equal(before["model.embed_tokens.weight"], merged["model.embed_tokens.weight"].ToBytes());
        }
        finally { foreach (var t in merged.Values) t.Dispose(); }
    }

    [Fact]
    public void A_trainable_filter_keeps_everything_else_bit_identical()
    {
        using var model = Pretraining.CreateRandom(Tiny(), 2);
        var before = Snapshot(model);
        Run(model, new PackedTokens(Periodic(), 16), new TrainingOptions { Steps = 3, Batch = 4, LearningRate = 1e-2, Trainable = TrainableSpec.Parse("mlp") });
        foreach (var (name, bytes) in before)
            if (name.Contains(".mlp.")) Assert.NotEqual(bytes, model.Parameters[name].ToBytes());
            else Assert.Equal(bytes, model.Parameters[name].ToBytes());
    }

    public static TheoryData<bool> Kinds => [false, true];

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Accumulating_two_micro_batches_equals_one_batch_of_twice_the_rows(bool supervised)
    {
        TrainingData Data() => supervised
            ? new SupervisedData(Enumerable.Range(0, 16).Select(i => new SupervisedExample(Enumerable.Range(3, 1 + i % 5).ToArray(), Enumerable.Range(10, 1 + i % 3).ToArray())), 2, 16, seed: 4)
            : new PackedTokens(Periodic(), 12, seed: 4);
        // A large ε makes AdamW's update smooth in the gradient, so rounding differences stay rounding-sized.
        var o = new TrainingOptions { Steps = 3, LearningRate = 1e-2, Eps = 1e-3, LogEvery = 1 };
        using var a = Pretraining.CreateRandom(Tiny(), 9);
        using var b = Pretraining.CreateRandom(Tiny(), 9);
        var ra = Run(a, Data(), o with { Batch = 8, GradAccum = 1 });
        var rb = Run(b, Data(), o with { Batch = 4, GradAccum = 2 });
        for (int i = 0; i < 3; i++) Assert.True(Math.Abs(ra.History[i].Loss - rb.History[i].Loss) < 1e-5, $"step {i + 1}: {ra.History[i].Loss} vs {rb.History[i].Loss}");
        foreach (var (name, p) in a.Parameters)
        {
            var x = p.ToArray<float>();
            var y = b.Parameters[name].ToArray<float>();
            for (int i = 0; i < x.Length; i++) Assert.True(Math.Abs(x[i] - y[i]) < 1e-5, $"{name}[{i}]: {x[i]} vs {y[i]}");
        }
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.BFloat16)]
    public void A_resumed_run_ends_bit_identical_to_an_uninterrupted_one(DType dtype)
    {
        var root = Path.Combine(Path.GetTempPath(), "oml-train-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            var data = new PackedTokens(Periodic(), 16, seed: 2);
            var o = new TrainingOptions { Steps = 8, Batch = 4, LearningRate = 1e-2, LogEvery = 3, CheckpointEvery = 4 };
            using var whole = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            var full = Run(whole, data, o with { CheckpointDir = Path.Combine(root, "a") });

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            using (var first = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype))
                Assert.ThrowsAny<OperationCanceledException>(() => Trainer.Train(first, data, o with { CheckpointDir = Path.Combine(root, "b") }, null,
                    new InlineProgress<TrainingProgress>(p => { if (p.Step >= 5) cts.Cancel(); }), cts.Token));
            // Killed after step 6 (its report); the checkpoint of step 4 is the latest.
            Assert.Equal(4, TrainingCheckpoint.Latest(Path.Combine(root, "b"))!.Step);

            using var resumed = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            var rest = Run(resumed, data, o with { CheckpointDir = Path.Combine(root, "b") });
            Assert.Equal(4, rest.ResumedFromStep);
            foreach (var (name, p) in whole.Parameters) Assert.Equal(p.ToBytes(), resumed.Parameters[name].ToBytes());
            Assert.Equal(full.History.Select(h => (h.Step, h.Loss, h.GradNorm)), rest.History.Select(h => (h.Step, h.Loss, h.GradNorm)));
            Assert.Equal(dtype, resumed.DType);

            // A checkpoint of another run is refused, not silently resumed.
            using var other = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            var e = Assert.Throws<InvalidDataException>(() => Run(other, data, o with { CheckpointDir = Path.Combine(root, "b"), LearningRate = 2e-2 }));
            Assert.Contains("another run", e.Message);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData(DType.Float32, 5)]    // between reports and checkpoints: the checkpoint carries the open report interval
    [InlineData(DType.BFloat16, 4)]   // on a checkpoint step: written once
    public void A_graceful_stop_checkpoints_its_step_and_the_resumed_run_ends_bit_identical(DType dtype, int stopAfter)
    {
        var root = Path.Combine(Path.GetTempPath(), "oml-train-stop-" + Guid.NewGuid().ToString("N"));
        try
        {
            var data = new PackedTokens(Periodic(), 16, seed: 2);
            var o = new TrainingOptions { Steps = 9, Batch = 4, LearningRate = 1e-2, LogEvery = 3, CheckpointEvery = 4, CheckpointDir = Path.Combine(root, "ck") };
            using var whole = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            var full = Run(whole, data, o with { CheckpointDir = null });

            // The stop arrives during step `stopAfter` (here: counted by the data it asks for); the run ends after that step.
            using var stop = new CancellationTokenSource();
            using var first = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            var part = Run(first, new StopAtStep(data, stopAfter, stop), o with { Stop = stop.Token });
            Assert.True(part.Stopped);
            Assert.Equal(stopAfter, part.StoppedAtStep);
            Assert.Equal(stopAfter, TrainingCheckpoint.Latest(o.CheckpointDir!)!.Step);
            Assert.Equal(full.History.TakeWhile(h => h.Step <= stopAfter).Select(h => (h.Step, h.Loss)), part.History.Select(h => (h.Step, h.Loss)));

            using var resumed = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            var rest = Run(resumed, data, o);
            Assert.False(rest.Stopped);
            Assert.Equal(stopAfter, rest.ResumedFromStep);
            foreach (var (name, p) in whole.Parameters) Assert.Equal(p.ToBytes(), resumed.Parameters[name].ToBytes());
            Assert.Equal(full.History.Select(h => (h.Step, h.Loss, h.GradNorm)), rest.History.Select(h => (h.Step, h.Loss, h.GradNorm)));

            // A stop already signalled before the last step changes nothing once the run is complete.
            using var done = Pretraining.CreateRandom(Tiny(), 5, dtype: dtype);
            using var late = new CancellationTokenSource();
            var again = Run(done, data, o with { CheckpointDir = null, Steps = 1, Stop = late.Token }, progress: new InlineProgress<TrainingProgress>(_ => late.Cancel()));
            Assert.False(again.Stopped);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Bad_options_are_refused_clearly()
    {
        using var model = Pretraining.CreateRandom(Tiny(), 1);
        var data = new PackedTokens(Periodic(), 16);
        Assert.Contains("batch", Assert.Throws<ArgumentException>(() => Run(model, data, new TrainingOptions { Steps = 1, Batch = 0 })).Message);
        Assert.Contains("steps or epochs", Assert.Throws<ArgumentException>(() => Run(model, data, new TrainingOptions())).Message);
        Assert.Contains("minimum learning rate", Assert.Throws<ArgumentException>(() =>
            Run(model, data, new TrainingOptions { Steps = 1, LearningRate = 1e-3, MinLearningRate = 1e-2 })).Message);
        Assert.Contains("trainable", Assert.Throws<ArgumentException>(() =>
            Run(model, data, new TrainingOptions { Steps = 1, Trainable = _ => false })).Message);
        Assert.Throws<ArgumentException>(() => new PackedTokens([1, 2, 3], 8));
        Assert.Throws<ArgumentException>(() => new SupervisedData([new SupervisedExample([1, 2, 3, 4], [5])], 0, maxLength: 4));
    }

    [Fact]
    public void The_pretraining_wrapper_still_reports_every_interval()
    {
        using var model = Pretraining.CreateRandom(Tiny(), 1);
        var reports = new List<Pretraining.Progress>();
        var r = Pretraining.Train(model, Periodic(), steps: 20, batch: 4, context: 16, lr: 1e-2, seed: 1, new InlineProgress<Pretraining.Progress>(reports.Add), reportEvery: 5);
        Assert.Equal([5, 10, 15, 20], r.Select(p => p.Step));
        Assert.Equal(r, reports);
        Assert.True(r[^1].Loss < r[0].Loss);
    }
}
