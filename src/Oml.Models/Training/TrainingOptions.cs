namespace Oml.Models.Training;

/// <summary>LoRA adapters (Hu et al.) to train instead of the weights: rank r, scale α/r, on the weights <see cref="Targets"/> selects.</summary>
public sealed record LoraOptions(int Rank, double Alpha, Func<string, bool>? Targets = null)
{
    /// <summary>Every attention and MLP projection (the default target).</summary>
    public static bool AttentionAndMlp(string name) =>
        name.Contains(".self_attn.", StringComparison.Ordinal) || name.Contains(".mlp.", StringComparison.Ordinal);
}

/// <summary>Settings of a <see cref="Trainer"/> run. Defaults are common choices for small Llama-style models.</summary>
public sealed record TrainingOptions
{
    /// <summary>Optimizer steps (after accumulation). 0: derive from <see cref="Epochs"/>.</summary>
    public long Steps { get; init; }
    /// <summary>Passes over the data, when <see cref="Steps"/> is 0.</summary>
    public double Epochs { get; init; }
    /// <summary>Rows per micro-batch.</summary>
    public int Batch { get; init; } = 16;
    /// <summary>Micro-batches per optimizer step (gradient accumulation): a step trains Batch × GradAccum rows.</summary>
    public int GradAccum { get; init; } = 1;
    public double LearningRate { get; init; } = 3e-4;
    /// <summary>The learning rate the cosine decays to (null: a tenth of <see cref="LearningRate"/>).</summary>
    public double? MinLearningRate { get; init; }
    /// <summary>Linear warm-up steps (null: 5% of the steps, at least 1).</summary>
    public long? Warmup { get; init; }
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>Whether embeddings (and a tied LM head) are decayed; norms and biases never are.</summary>
    public bool DecayEmbeddings { get; init; }
    /// <summary>Decay every trained parameter, norms included (the behaviour of the original pretraining loop).</summary>
    public bool DecayAll { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Gradient clipping by global norm (0 disables it).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Which parameters are trained (by Hugging Face name); null trains all (or only the adapters with LoRA).</summary>
    public Func<string, bool>? Trainable { get; init; }
    /// <summary>Train LoRA adapters instead of the weights (added to the model by the trainer, merged on save).</summary>
    public LoraOptions? Lora { get; init; }
    /// <summary>
    /// float32 matrix-product precision on CUDA: "high" (TF32, the default) or "highest". Restored after the run.
    /// </summary>
    public string MatmulPrecision { get; init; } = "high";
    /// <summary>Steps between progress reports (and reads of the loss from the device).</summary>
    public int LogEvery { get; init; } = 10;
    /// <summary>Steps between held-out evaluations (0: only at the end, when evaluation data is given).</summary>
    public int EvalEvery { get; init; }
    /// <summary>Most held-out rows per evaluation.</summary>
    public int EvalRows { get; init; } = 256;
    /// <summary>Folder for checkpoints (null: none). A checkpoint of the same run there is resumed from.</summary>
    public string? CheckpointDir { get; init; }
    /// <summary>Steps between checkpoints (0: only at the end, when <see cref="CheckpointDir"/> is set).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Seed of LoRA initialisation (the data's order has its own seed).</summary>
    public ulong Seed { get; init; }
    /// <summary>
    /// Data parallelism (null: this process alone): every rank runs the same steps on its share of each micro-batch's
    /// rows, the gradients are summed over the ranks before clipping and the step, and rank 0 alone checkpoints. Not
    /// part of a checkpoint's identity: a run resumes with any number of ranks.
    /// </summary>
    public Oml.Engine.Distributed.ProcessGroup? Group { get; init; }
    /// <summary>
    /// With a <see cref="Group"/> of several ranks, shard the optimizer (ZeRO-2 at the granularity of parameters, as
    /// <c>oml embed --shard-optimizer</c>): each optimized parameter (the float32 master in mixed precision) is owned by
    /// one rank, balanced by size; its gradient is reduced to the owner only, clipping uses the global norm, the owner
    /// steps it and broadcasts the new values. AdamW's moments fall to about 1/N per rank. Checkpoints are written per
    /// rank with an index and resume with any number of ranks, sharded or not. Not part of a run's identity.
    /// </summary>
    public bool ShardOptimizer { get; init; }
    /// <summary>
    /// With a <see cref="Group"/>, shard the weights too (ZeRO-3, FSDP-style; <see cref="ShardedModel"/>): each rank keeps
    /// 1/N of every unit's weights (the embeddings, each decoder layer, the head), of their gradients and of AdamW's state
    /// (and of the float32 masters in mixed precision), gathers a unit's weights while it runs and frees them after;
    /// activation checkpointing is always on, and each unit's gradients are reduce-scattered in its backward pass. Every
    /// rank writes its own segments to checkpoints, which any world size and mode resumes. Implies a sharded optimizer.
    /// Not part of a run's identity.
    /// </summary>
    public bool ShardWeights { get; init; }
    /// <summary>
    /// With a <see cref="Group"/>: start each gradient bucket's all-reduce (with <see cref="ShardOptimizer"/>, its reduce
    /// to the owner) during the last micro-batch's backward pass (<see cref="Oml.Engine.Distributed.GradReducer"/>) rather
    /// than after it (false: <see cref="Oml.Engine.Distributed.ProcessGroup.AllReduceGradients"/>, or the reduce to the
    /// owners after backward). The sums are the same.
    /// </summary>
    public bool OverlapAllReduce { get; init; } = true;
    /// <summary>
    /// A graceful stop (a time limit, SIGTERM): once signalled, the trainer ends after the current step (with a
    /// <see cref="Group"/>: at the next report step, which every rank agrees on), writes a checkpoint of it when
    /// <see cref="CheckpointDir"/> is set, and returns with <see cref="TrainingResult.StoppedAtStep"/>; the same run started
    /// again resumes there and ends bit-identical to one never stopped. Not part of a run's identity. (The method's own
    /// cancellation token aborts instead, keeping only earlier checkpoints.)
    /// </summary>
    public CancellationToken Stop { get; init; }

    public void Validate()
    {
        if (Steps < 0) throw new ArgumentException($"steps must be 0 or more, not {Steps}");
        if (Steps == 0 && !(Epochs > 0)) throw new ArgumentException("give a positive number of steps or epochs");
        if (Batch < 1) throw new ArgumentException($"the batch must be at least 1 row, not {Batch}");
        if (GradAccum < 1) throw new ArgumentException($"gradient accumulation must be at least 1, not {GradAccum}");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentException($"the learning rate must be positive, not {LearningRate}");
        if (MinLearningRate is { } min && (min < 0 || min > LearningRate))
            throw new ArgumentException($"the minimum learning rate must be in [0, lr = {LearningRate}], not {min}");
        if (Warmup is < 0) throw new ArgumentException($"warm-up must be 0 or more steps, not {Warmup}");
        if (WeightDecay < 0) throw new ArgumentException($"weight decay must be non-negative, not {WeightDecay}");
        if (Beta1 is < 0 or >= 1 || Beta2 is < 0 or >= 1) throw new ArgumentException("betas must be in [0, 1)");
        if (MaxGradNorm < 0) throw new ArgumentException($"the gradient-clipping norm must be non-negative, not {MaxGradNorm}");
        if (Lora is { } l && (l.Rank < 1 || !(l.Alpha > 0))) throw new ArgumentException($"LoRA needs a rank ≥ 1 and α > 0 (rank {l.Rank}, α {l.Alpha})");
        if (MatmulPrecision is not ("high" or "highest" or "medium")) throw new ArgumentException($"matmul precision must be highest, high or medium, not '{MatmulPrecision}'");
        if (LogEvery < 1) throw new ArgumentException($"the log interval must be at least 1 step, not {LogEvery}");
        if (EvalEvery < 0) throw new ArgumentException($"the evaluation interval must be 0 or more steps, not {EvalEvery}");
        if (EvalRows < 1) throw new ArgumentException($"evaluation needs at least 1 row, not {EvalRows}");
        if (ShardWeights && Group is null) throw new ArgumentException("weight sharding needs a process group (several ranks to shard over)");
        if (CheckpointEvery < 0) throw new ArgumentException($"the checkpoint interval must be 0 or more steps, not {CheckpointEvery}");
    }
}

/// <summary>
/// One progress report: the step, the mean training loss over the steps since the previous report, the learning rate
/// of the step, the mean gradient norm before clipping, input tokens so far and their rate, and — on evaluation steps —
/// the held-out loss (its perplexity is exp of it).
/// </summary>
public sealed record TrainingProgress(long Step, long Steps, double Loss, double LearningRate, double GradNorm, long Tokens,
    double TokensPerSecond, double Seconds, double? EvalLoss = null)
{
    public double? EvalPerplexity => EvalLoss is { } l ? Math.Exp(l) : null;
}

/// <summary>What a run did: its reports, the trained parameter count and whether it resumed from a checkpoint.</summary>
public sealed record TrainingResult(IReadOnlyList<TrainingProgress> History, long Steps, long TrainedParameters, long? ResumedFromStep,
    long? StoppedAtStep = null)
{
    /// <summary>Whether the run ended early on <see cref="TrainingOptions.Stop"/> (its model is not fully trained).</summary>
    public bool Stopped => StoppedAtStep is not null;
    public TrainingProgress Final => History[^1];
    /// <summary>The last held-out loss, if evaluated.</summary>
    public double? EvalLoss => History.LastOrDefault(h => h.EvalLoss is not null)?.EvalLoss;
}
