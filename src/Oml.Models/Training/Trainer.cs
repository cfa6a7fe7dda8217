using System.Diagnostics;
using System.Globalization;
using Oml.Engine;

namespace Oml.Models.Training;

/// <summary>
/// One training loop for pretraining from scratch and for fine-tuning (full, a subset of the weights, or LoRA):
/// AdamW with decoupled weight decay (not on norms, biases and — unless asked — embeddings), linear warm-up then cosine
/// decay to a minimum learning rate, gradient clipping by global norm, gradient accumulation, held-out evaluation,
/// and checkpoints that a restarted run resumes from bit for bit.
/// <para>
/// The loss of a step is the sum of the token cross-entropies over all its micro-batches divided by the step's count
/// of trained tokens (known on the host), so accumulating k micro-batches of b rows gives the gradient of one batch of
/// k·b rows. A model whose weights are bfloat16 trains with float32 master weights: gradients are converted, AdamW
/// updates the masters, and the bfloat16 weights are copied from them after every step.
/// </para>
/// <para>
/// On CUDA, float32 matrix products use TF32 (<see cref="TrainingOptions.MatmulPrecision"/>), AdamW runs libtorch's
/// fused kernel where it has one, batches are built on the host and copied once, and the loss and gradient norm stay
/// on the device until a report reads them: a step does not wait for the device.
/// </para>
/// </summary>
public static class Trainer
{
    /// <summary>Whether a parameter name is a LoRA adapter's.</summary>
    public static bool IsAdapter(string name) =>
        name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_B", StringComparison.Ordinal);

    /// <summary>Whether weight decay applies to a parameter under these options.</summary>
    public static bool Decays(string name, TrainingOptions o)
    {
        if (o.DecayAll) return true;
        if (name.EndsWith(".bias", StringComparison.Ordinal) || name.EndsWith("norm.weight", StringComparison.Ordinal)) return false;
        return o.DecayEmbeddings || !name.Contains("embed_tokens", StringComparison.Ordinal);
    }

    /// <summary>The learning rate of step <paramref name="step"/> (1-based) of <paramref name="steps"/>.</summary>
    public static double LearningRateAt(long step, long steps, double lr, double minLr, long warmup)
    {
        if (step <= warmup) return lr * step / Math.Max(1, warmup);
        double progress = (double)(step - warmup) / Math.Max(1, steps - warmup);
        return minLr + (lr - minLr) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)));
    }

    /// <summary>Optimizer steps a run of these options takes on <paramref name="data"/>.</summary>
    public static long TotalSteps(TrainingData data, TrainingOptions o) =>
        o.Steps > 0 ? o.Steps : Math.Max(1, (long)Math.Ceiling(o.Epochs * data.StepsPerEpoch(o.Batch * o.GradAccum) - 1e-9));

    /// <summary>
    /// Trains <paramref name="model"/> in place. With <see cref="TrainingOptions.Lora"/>, adapters are added to the model
    /// first (save it with <see cref="ModelFolder.Save"/>, which merges them). <paramref name="evalData"/>, if given, is
    /// evaluated every <see cref="TrainingOptions.EvalEvery"/> steps and at the end. With
    /// <see cref="TrainingOptions.ShardWeights"/> the model is sharded over the group for the run (every rank holds it whole
    /// first) and gathered whole again on every rank at the end; to train a model no rank holds whole, load it with
    /// <see cref="ShardedModel.Load"/> and use <see cref="Train(ShardedModel, TrainingData, TrainingOptions, TrainingData?, IProgress{TrainingProgress}?, CancellationToken)"/>.
    /// </summary>
    public static TrainingResult Train(CausalLM model, TrainingData data, TrainingOptions options, TrainingData? evalData = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        options.Validate();
        AddLora(model, options);
        // Data-parallel: every rank starts from rank 0's weights (random or LoRA initialisation included).
        options.Group?.Broadcast(model.Parameters.Values.ToList(), root: 0);
        if (!options.ShardWeights) return Train(model, null, data, options, evalData, progress, cancel);
        using var sharded = new ShardedModel(model, options.Group!, Selector(options));
        var result = Train(model, sharded, data, options, evalData, progress, cancel);
        sharded.Materialize();
        return result;
    }

    /// <summary>
    /// Trains a model that is weight-sharded from the start (<see cref="ShardedModel.Load"/>: no rank ever holds it whole;
    /// give <see cref="AddLora"/> as its <c>prepare</c> step when training LoRA adapters) with
    /// <see cref="TrainingOptions.ShardWeights"/> over the model's own group, on every rank of it. The model stays sharded:
    /// save it with <see cref="ShardedModel.SaveWithDigest"/> (one unit at a time).
    /// </summary>
    public static TrainingResult Train(ShardedModel sharded, TrainingData data, TrainingOptions options, TrainingData? evalData = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        ArgumentNullException.ThrowIfNull(data);
        options.Validate();
        if (!options.ShardWeights || !ReferenceEquals(options.Group, sharded.Group))
            throw new ArgumentException("a sharded model trains with weight sharding (ShardWeights) over its own process group");
        if (options.Lora is not null && sharded.Model.LoraTargets.Count == 0)
            throw new ArgumentException("LoRA training of a sharded model needs the adapters added before sharding (Trainer.AddLora as ShardedModel.Load's prepare step)");
        return Train(sharded.Model, sharded, data, options, evalData, progress, cancel);
    }

    /// <summary>
    /// Adds the LoRA adapters <see cref="TrainingOptions.Lora"/> asks for to <paramref name="model"/> (nothing without it);
    /// with a <see cref="TrainingOptions.Group"/>, every rank takes rank 0's adapters (broadcast: the random initialisation
    /// cannot differ between ranks), so it can be the <c>prepare</c> step of <see cref="ShardedModel.Load"/> on every rank.
    /// </summary>
    public static void AddLora(CausalLM model, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Lora is not { } lora) return;
        model.AddLora(lora.Targets ?? LoraOptions.AttentionAndMlp, lora.Rank, lora.Alpha, options.Seed);
        options.Group?.Broadcast(model.Parameters.Where(kv => IsAdapter(kv.Key)).OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value).ToList(), root: 0);
    }

    /// <summary>Which parameters a run of these options trains (by name).</summary>
    public static Func<string, bool> Selector(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Trainable ?? (options.Lora is not null ? IsAdapter : _ => true);
    }

    private static TrainingResult Train(CausalLM model, ShardedModel? sharded, TrainingData data, TrainingOptions options, TrainingData? evalData,
        IProgress<TrainingProgress>? progress, CancellationToken cancel)
    {
        long steps = TotalSteps(data, options);
        long warmup = Math.Min(options.Warmup ?? Math.Max(1, steps / 20), steps);
        double minLr = options.MinLearningRate ?? options.LearningRate * 0.1;
        var device = model.Device;
        var group = options.Group;

        var select = Selector(options);
        var trainedNames = model.Parameters.Keys.Where(select).Order(StringComparer.Ordinal).ToList();
        if (trainedNames.Count == 0) throw new ArgumentException("no parameter matches the trainable subset");
        if (trainedNames.Any(n => model.Parameters[n].DType == DType.Float16))
            throw new ArgumentException("float16 weights need loss scaling, which this trainer does not do: train in bfloat16 or float32");
        bool mixed = trainedNames.Any(n => model.Parameters[n].DType == DType.BFloat16);
        if (sharded is not null)
        {
            var names = trainedNames.ToHashSet(StringComparer.Ordinal);
            if (sharded.Segments.FirstOrDefault(sg => sg.Trainable != names.Contains(sg.Name)) is { } odd)
                throw new ArgumentException($"'{odd.Name}' is {(odd.Trainable ? "" : "not ")}trainable in the sharded model but {(odd.Trainable ? "not " : "")}in the options' trainable subset");
        }

        // The digest is over the initial weights: of a sharded model, gathered one unit at a time (the same bytes), and only
        // when a checkpoint needs it (the gathers are a pass over the whole model).
        string digest = sharded is null ? RunDigest(model.Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal), data, options, steps, trainedNames)
            : options.CheckpointDir is null ? ""
            : RunDigest(sharded.Whole(model.Parameters.Keys.Order(StringComparer.Ordinal)), data, options, steps, trainedNames);
        // What the optimizer trains: the whole parameters, or with weight sharding this rank's segments of them (every
        // elementwise step, AdamW and clipping by the global norm, runs on the segments).
        var segments = sharded?.TrainableSegments;
        var named = segments is null
            ? trainedNames.Select(n => new KeyValuePair<string, Tensor>(n, model.Parameters[n])).ToList()
            : segments.Select(sg => new KeyValuePair<string, Tensor>(sg.Name, sg.Shard)).ToList();
        var masters = new List<KeyValuePair<string, Tensor>>();
        string? previousPrecision = null;
        var history = new List<TrainingProgress>();
        long? resumedFrom = null, stoppedAt = null;
        try
        {
            using (Torch.NoGrad())
            {
                // The model's own parameters get gradients in both cases (a sharded one's while its unit is gathered).
                foreach (var n in trainedNames) model.Parameters[n].RequiresGrad = true;
                foreach (var (name, p) in named)
                {
                    p.RequiresGrad = true;
                    masters.Add(mixed ? new(name, p.To(DType.Float32, p.Device, copy: true).DetachFromScope().RequiresGrad_()) : new(name, p));
                }
            }
            // Optimizer sharding: each optimized parameter's owner; this rank's optimizer holds only its own.
            int[]? owner = sharded is null && options.ShardOptimizer && group is { WorldSize: > 1 }
                ? Oml.Engine.Distributed.ProcessGroup.Partition(masters.Select(kv => kv.Value.NumEl).ToList(), group.WorldSize) : null;
            bool Mine(int i) => owner is null || owner[i] == group!.Rank;
            var decayed = masters.Where((kv, i) => Decays(kv.Key, options) && Mine(i)).Select(kv => kv.Value).ToList();
            var plain = masters.Where((kv, i) => !Decays(kv.Key, options) && Mine(i)).Select(kv => kv.Value).ToList();
            var groups = new List<ParamGroup>();
            if (decayed.Count > 0) groups.Add(new ParamGroup(decayed));
            if (plain.Count > 0) groups.Add(new ParamGroup(plain, weightDecay: 0));
            var optimized = masters.Select(kv => kv.Value).ToList();
            using var opt = new AdamW(groups, options.LearningRate, options.Beta1, options.Beta2, options.Eps, options.WeightDecay);
            // Data parallelism: the all-reduce (with a sharded optimizer, the reduce to each owner) overlapped with the last
            // micro-batch's backward pass, over the parameters in the model's order (the reducer reverses it), summed in
            // float32 into the masters' gradients. Weight sharding reduce-scatters each unit's gradients in its backward pass.
            Oml.Engine.Distributed.GradReducer? reducer = null;
            List<Tensor>? reducerTargets = null;
            if (group is not null && sharded is null && options.OverlapAllReduce)
            {
                var position = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
                foreach (var t in model.Parameters.Values) position.TryAdd(t, position.Count);
                var byModel = Enumerable.Range(0, named.Count).OrderBy(i => position[named[i].Value]).ToList();
                reducer = new Oml.Engine.Distributed.GradReducer(group, byModel.Select(i => named[i].Value).ToList(),
                    reduceDType: mixed ? DType.Float32 : null, owners: owner is null ? null : byModel.Select(i => owner[i]).ToList());
                if (mixed) reducerTargets = byModel.Select(i => masters[i].Value).ToList();
            }
            using var reducerScope = reducer;

            if (device.IsCuda)
            {
                previousPrecision = Torch.Float32MatmulPrecision;
                Torch.Float32MatmulPrecision = options.MatmulPrecision;
            }

            using var lossSum = Torch.Zeros([], DType.Float32, device).DetachFromScope();
            using var normSum = Torch.Zeros([], DType.Float32, device).DetachFromScope();
            long first = 1, tokens = 0;
            int intervalSteps = 0;
            double secondsBefore = 0;

            if (options.CheckpointDir is { } ckDir && TrainingCheckpoint.Latest(ckDir) is { } ck)
            {
                if (ck.Digest != digest)
                    throw new InvalidDataException(
                        $"the checkpoint {ck.Folder} belongs to another run (different data, settings or initial weights); use another checkpoint folder or delete it");
                if (sharded is not null)
                {
                    // Each rank reads its own segments (and their moments) from a checkpoint of any world size and mode.
                    var masterOf = new Dictionary<ShardedModel.Segment, Tensor>(ReferenceEqualityComparer.Instance);
                    for (int i = 0; i < segments!.Count; i++) masterOf[segments[i]] = masters[i].Value;
                    OptimizerCheckpoint.Restore(ck.Folder, ck.OptimizerSteps, sharded, opt, sg => masterOf[sg]);
                }
                // A sharded optimizer takes the moments of the parameters this rank owns now, whatever the world size that wrote them.
                else TrainingCheckpoint.Restore(ck, masters, opt, owner is null ? null : p => Mine(masters.FindIndex(kv => ReferenceEquals(kv.Value, p))));
                if (mixed) CopyToModel(named, masters);
                // The checkpoint holds the loss summed over the ranks: one rank carries it on.
                lossSum.Fill(group is null || group.Rank == 0 ? ck.IntervalLoss : 0);
                normSum.Fill(ck.IntervalGradNorm);
                intervalSteps = ck.IntervalSteps;
                tokens = ck.Tokens;
                secondsBefore = ck.Seconds;
                history.AddRange(ck.History);
                first = ck.Step + 1;
                resumedFrom = ck.Step;
            }

            // OML_PROFILE=DIR records a window of optimizer steps (docs/benchmarks.md, "Profiling a training step").
            using var profile = StepProfile.FromEnvironment(device, "train");
            var sw = Stopwatch.StartNew();
            double lastReportSeconds = secondsBefore;
            long lastReportTokens = tokens;
            for (long step = first; step <= steps; step++)
            {
                cancel.ThrowIfCancellationRequested();
                profile?.BeginStep(checked((int)step));
                double lr = LearningRateAt(step, steps, options.LearningRate, minLr, warmup);
                opt.LearningRate = lr;
                var micro = data.Step(step - 1, options.Batch, options.GradAccum);
                long labels = micro.Sum(m => m.LabelCount);
                if (labels == 0) throw new InvalidDataException($"step {step} has no token to train on");
                opt.ZeroGrad();
                if (mixed) foreach (var (_, p) in named) p.Grad = null;
                // Data-parallel: this rank's rows, with the loss still divided by the whole step's label count.
                var shares = micro.Select(whole => group is null ? whole : whole.Share(group.Rank, group.WorldSize)).ToList();
                int lastShare = shares.FindLastIndex(m => m is not null);
                // One process: each micro-batch adds its weight gradients straight into .grad (Torch.AccumulateWeightGradientsInPlace).
                using (group is null && sharded is null ? Torch.AccumulateWeightGradientsInPlace() : null)
                for (int k = 0; k < micro.Length; k++)
                {
                    tokens += (long)micro[k].Rows * micro[k].Length;
                    if (sharded is not null)
                    {
                        // Every rank runs every micro-batch's gathers and reduce-scatters; one without rows only takes part.
                        using var shardScope = Torch.NewScope();
                        Tensor? ids = null, targets = null, padding = null;
                        if (shares[k] is { } mine) (ids, targets, padding) = mine.ToDevice(device);
                        var shardLoss = sharded.CheckpointedBackward(ids, ids is null ? null : h => TokenLoss(model.Head(h), targets!, labels), padding);
                        if (shardLoss is not null)
                            using (Torch.NoGrad()) lossSum.AddInPlace(shardLoss);
                        continue;
                    }
                    if (shares[k] is not { } m) continue;
                    if (k == lastShare) reducer?.Enable();
                    using var scope = Torch.NewScope();
                    var (x, y, mask) = m.ToDevice(device);
                    Tensor loss;
                    using (Profiler.Range("forward")) loss = TokenLoss(model.Forward(x, mask), y, labels);
                    using (Profiler.Range("backward")) loss.Backward();
                    using (Torch.NoGrad()) lossSum.AddInPlace(loss.Detach());
                }
                using (var scope = Torch.NewScope())
                {
                    if (reducer is not null)
                    {
                        // The sums (float32 in mixed precision) go straight into the optimized tensors' gradients.
                        reducer.Finish(reducerTargets);
                        if (mixed) foreach (var (_, p) in named) p.Grad = null;
                    }
                    else
                    {
                        if (mixed)
                            for (int i = 0; i < named.Count; i++)
                            {
                                var g = named[i].Value.Grad;
                                masters[i].Value.Grad = g?.To(DType.Float32);
                                named[i].Value.Grad = null;
                            }
                        // Data-parallel: the gradients (float32 masters in mixed precision) summed over the ranks, or
                        // with a sharded optimizer into each one's owner; weight-sharded, the segments hold the sums already.
                        if (owner is not null) OptimizerSharding.ReduceToOwners(group!, optimized, owner);
                        else if (sharded is null) group?.AllReduceGradients(optimized);
                    }
                    if (options.MaxGradNorm > 0)
                    {
                        var norm = owner is not null || sharded is not null
                            ? OptimizerSharding.ClipByGlobalNorm(group!, device, optimized.Where((_, i) => Mine(i)).ToList(), options.MaxGradNorm)
                            : Torch.ClipGradNormTensor(optimized, options.MaxGradNorm);
                        using (Torch.NoGrad()) normSum.AddInPlace(norm);
                    }
                    using (Profiler.Range("optimizer")) opt.Step();
                    if (owner is not null) OptimizerSharding.BroadcastFromOwners(group!, optimized, owner);
                    if (mixed) CopyToModel(named, masters);
                }
                profile?.EndStep(checked((int)step));
                intervalSteps++;

                bool evaluate = evalData is not null && ((options.EvalEvery > 0 && step % options.EvalEvery == 0) || step == steps);
                if (step % options.LogEvery == 0 || step == steps || evaluate)
                {
                    double? evalLoss = !evaluate ? null
                        : sharded is null ? Evaluate(model, evalData!, options.Batch, options.EvalRows)
                        : Evaluate(sharded, evalData!, options.Batch, options.EvalRows);
                    group?.AllReduce(lossSum);
                    double seconds = secondsBefore + sw.Elapsed.TotalSeconds;
                    var report = new TrainingProgress(step, steps, lossSum.ToDouble() / intervalSteps, lr, normSum.ToDouble() / intervalSteps, tokens,
                        (tokens - lastReportTokens) / Math.Max(1e-9, seconds - lastReportSeconds), seconds, evalLoss);
                    lossSum.Zero();
                    normSum.Zero();
                    intervalSteps = 0;
                    lastReportSeconds = seconds;
                    lastReportTokens = tokens;
                    history.Add(report);
                    if (group is null || group.Rank == 0) progress?.Report(report);
                }
                bool checkpoint = options.CheckpointDir is not null && ((options.CheckpointEvery > 0 && step % options.CheckpointEvery == 0) || step == steps);
                if (checkpoint) SaveCheckpoint(step);
                // A graceful stop: after this step, with a checkpoint of it, so that the same run resumes exactly here. One
                // process checks after every step (no device sync); ranks agree at report steps (one all-reduce of a flag,
                // on every rank whether or not its own token can stop it, so that the collective always matches).
                if (step < steps && (group is not null || options.Stop.CanBeCanceled) && StopAgreed(step))
                {
                    if (!checkpoint && options.CheckpointDir is not null) SaveCheckpoint(step);
                    stoppedAt = step;
                    break;
                }
            }
            if (history.Count == 0 && stoppedAt is null) throw new InvalidOperationException($"nothing to train: the checkpoint is already at step {first - 1} of {steps}");

            bool StopAgreed(long step)
            {
                if (group is null) return options.Stop.IsCancellationRequested;
                if (step % options.LogEvery != 0) return false;
                using var flag = Torch.Scalar(options.Stop.IsCancellationRequested ? 1 : 0, DType.Float32, device);
                group.AllReduce(flag);
                return flag.ToDouble() > 0;
            }

            void SaveCheckpoint(long step)
            {
                string dir = options.CheckpointDir!;
                double intervalLoss = lossSum.ToDouble();
                if (group is not null)
                {
                    using var all = lossSum.Clone();
                    group.AllReduce(all);
                    intervalLoss = all.ToDouble();
                }
                var ckState = new TrainingCheckpoint.State(digest, step, new Dictionary<string, long>(), intervalLoss, normSum.ToDouble(),
                    intervalSteps, tokens, secondsBefore + sw.Elapsed.TotalSeconds, history, dir);
                // Weight sharding: every rank writes the values (masters in mixed precision) and moments of its own
                // segments; a sharded optimizer: every rank its own moments (no rank gathers the whole state).
                if (sharded is not null)
                    TrainingCheckpoint.SaveSegments(group!, device, dir, ckState, trainedNames,
                        masters.Select((kv, i) => (kv.Key, segments![i].Start, kv.Value, opt.StepOf(kv.Value),
                            opt.MomentsOf(kv.Value) is { } mo ? ((Tensor, Tensor)?)(mo.ExpAvg, mo.ExpAvgSq) : null)).ToList());
                else if (owner is not null) TrainingCheckpoint.SaveSharded(group!, device, dir, ckState, masters, owner, opt);
                else if (group is null) TrainingCheckpoint.Save(dir, ckState, masters, opt);
                else
                {
                    // Rank 0 writes; every rank learns whether it could before going on (or ending, on a stop: a rank that
                    // left first would have its launcher stop rank 0 in the middle of the write).
                    string? error = null;
                    if (group.Rank == 0)
                        try { TrainingCheckpoint.Save(dir, ckState, masters, opt); }
                        catch (Exception e) when (e is not OperationCanceledException) { error = e.Message; }
                    OptimizerCheckpoint.Agree(group, device, error, "write the checkpoint", group.Rank);
                }
            }
        }
        finally
        {
            foreach (var n in trainedNames)
            {
                var p = model.Parameters[n];
                p.Grad = null;
                p.RequiresGrad = false;
            }
            foreach (var (_, p) in named) p.Grad = null;
            if (mixed) foreach (var (_, m) in masters) m.Dispose();
            if (previousPrecision is not null) Torch.Float32MatmulPrecision = previousPrecision;
        }
        return new TrainingResult(history, steps, trainedNames.Sum(n => sharded?.NumElOf(n) ?? model.Parameters[n].NumEl), resumedFrom, stoppedAt);
    }

    /// <summary>The step's loss of one micro-batch: its summed token cross-entropy over the whole step's label count.</summary>
    private static Tensor TokenLoss(Tensor logits, Tensor targets, long labels) =>
        F.CrossEntropy(logits.To(DType.Float32).Reshape(-1, logits.Size(-1)), targets.Reshape(-1), -100, Reduction.Sum) * (1.0 / labels);

    private static void CopyToModel(List<KeyValuePair<string, Tensor>> named, List<KeyValuePair<string, Tensor>> masters)
    {
        using var noGrad = Torch.NoGrad();
        for (int i = 0; i < named.Count; i++) named[i].Value.CopyFrom(masters[i].Value);
    }

    /// <summary>Mean cross-entropy per trained token over <paramref name="data"/>'s evaluation batches (perplexity = exp of it).</summary>
    public static double Evaluate(CausalLM model, TrainingData data, int batch = 16, int maxRows = 256)
    {
        using var noGrad = Torch.NoGrad();
        using var sum = Torch.Zeros([], DType.Float32, model.Device).DetachFromScope();
        long count = 0;
        foreach (var b in data.EvaluationBatches(batch, maxRows))
        {
            using var scope = Torch.NewScope();
            var (x, y, mask) = b.ToDevice(model.Device);
            var logits = model.Forward(x, mask);
            sum.AddInPlace(F.CrossEntropy(logits.To(DType.Float32).Reshape(-1, logits.Size(-1)), y.Reshape(-1), -100, Reduction.Sum));
            count += b.LabelCount;
        }
        if (count == 0) throw new ArgumentException("the evaluation data has no token to score");
        return sum.ToDouble() / count;
    }

    /// <summary>
    /// <see cref="Evaluate(CausalLM, TrainingData, int, int)"/> of a weight-sharded model, on every rank of its group: each
    /// batch's rows are shared out over the ranks (contiguous shares, as in training), run through the sharded forward pass
    /// (a rank without rows only takes part in the gathers), and the summed losses all-reduced.
    /// </summary>
    public static double Evaluate(ShardedModel sharded, TrainingData data, int batch = 16, int maxRows = 256)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        ArgumentNullException.ThrowIfNull(data);
        var model = sharded.Model;
        var group = sharded.Group;
        using var noGrad = Torch.NoGrad();
        using var sum = Torch.Zeros([], DType.Float32, model.Device).DetachFromScope();
        long count = 0;
        foreach (var b in data.EvaluationBatches(batch, maxRows))
        {
            using var scope = Torch.NewScope();
            Tensor? ids = null, targets = null, padding = null;
            if (b.Share(group.Rank, group.WorldSize) is { } mine) (ids, targets, padding) = mine.ToDevice(model.Device);
            var part = sharded.Run(ids, ids is null ? null : h =>
            {
                var logits = model.Head(h);
                return F.CrossEntropy(logits.To(DType.Float32).Reshape(-1, logits.Size(-1)), targets!.Reshape(-1), -100, Reduction.Sum);
            }, padding);
            if (part is not null) sum.AddInPlace(part);
            count += b.LabelCount;
        }
        if (count == 0) throw new ArgumentException("the evaluation data has no token to score");
        if (group.WorldSize > 1) group.AllReduce(sum);
        return sum.ToDouble() / count;
    }

    /// <summary>
    /// Digest of what decides a run's trajectory: the data, the settings that change the updates (the step count
    /// included: it shapes the schedule), the trained parameters' names, and every initial weight of the model.
    /// </summary>
    private static string RunDigest(IEnumerable<KeyValuePair<string, Tensor>> weights, TrainingData data, TrainingOptions o, long steps, IEnumerable<string> trained) =>
        TrainingData.Hash(h =>
        {
            void Text(string s) { var b = System.Text.Encoding.UTF8.GetBytes(s); h.AppendData(BitConverter.GetBytes(b.Length)); h.AppendData(b); }
            Text(string.Create(CultureInfo.InvariantCulture,
                $"steps={steps};batch={o.Batch};accum={o.GradAccum};lr={o.LearningRate:R};min={o.MinLearningRate:R};warmup={o.Warmup};wd={o.WeightDecay:R};" +
                $"decayEmb={o.DecayEmbeddings};decayAll={o.DecayAll};b1={o.Beta1:R};b2={o.Beta2:R};eps={o.Eps:R};clip={o.MaxGradNorm:R};" +
                $"lora={o.Lora?.Rank}/{o.Lora?.Alpha:R};seed={o.Seed}"));
            Text(data.Digest);
            foreach (var n in trained) Text(n);
            foreach (var (name, t) in weights)
            {
                Text(name);
                Text(string.Join(",", t.Shape) + ":" + t.DType);
                t.ForEachByteChunk(h.AppendData);
            }
        });
}
