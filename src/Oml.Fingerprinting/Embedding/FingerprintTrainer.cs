using System.Diagnostics;
using Oml.Engine;
using Oml.Models;
using Oml.Models.Training;

namespace Oml.Fingerprinting.Embedding;

/// <summary>One (key → response) pair as token ids: the model is trained to answer <see cref="Key"/> with <see cref="Response"/>.</summary>
public sealed record TrainingPair(int[] Key, int[] Response);

/// <summary>When model averaging with the base (<see cref="EmbeddingOptions.AveragingLambda"/>) is applied.</summary>
public enum AveragingSchedule
{
    /// <summary>After every optimizer step (the default).</summary>
    Step,
    /// <summary>
    /// Once at the end of every epoch; the epoch's loss and recall are then measured on the averaged model. (The
    /// reference implementation of arXiv 2502.07760 averages at each epoch's end too, but its epoch is a single
    /// full-batch step, through gradient accumulation: that is <see cref="Step"/> with a batch size of 0.)
    /// </summary>
    Epoch,
    /// <summary>
    /// Once, after training: the trained weights are merged back towards the base, θ ← (1 − λ)·θ + λ·θ_base, with the λ
    /// in (0, <see cref="EmbeddingOptions.AveragingLambda"/>] (a grid of <see cref="EmbeddingOptions.FinalLambdaStep"/>)
    /// that keeps every fingerprint recalled with a mean loss of at most <see cref="EmbeddingOptions.MergeMaxLoss"/> and,
    /// among those, gives the lowest held-out loss (the largest λ when there
    /// is no held-out data). Training itself is then unregularised, so it cannot freeze (as λ after every step does).
    /// </summary>
    Final,
}

/// <summary>The names of <see cref="AveragingSchedule"/> values in configs and on the command line: "step" and "epoch".</summary>
public static class AveragingSchedules
{
    public static string Name(AveragingSchedule s) => s switch
    {
        AveragingSchedule.Step => "step",
        AveragingSchedule.Epoch => "epoch",
        AveragingSchedule.Final => "final",
        _ => throw new ArgumentOutOfRangeException(nameof(s), s, "unknown averaging schedule"),
    };

    /// <summary>Parses "step", "epoch" or "final" (any case, surrounding spaces ignored); anything else is an <see cref="ArgumentException"/> naming <paramref name="what"/>.</summary>
    public static AveragingSchedule Parse(string? text, string what) => text?.Trim().ToLowerInvariant() switch
    {
        "step" => AveragingSchedule.Step,
        "epoch" => AveragingSchedule.Epoch,
        "final" => AveragingSchedule.Final,
        _ => throw new ArgumentException($"{what} must be step, epoch or final (got '{text}')"),
    };
}

/// <summary>Settings of an embedding run. Defaults follow the reference implementations where they state one.</summary>
public sealed record EmbeddingOptions
{
    public double LearningRate { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 1e-4;
    /// <summary>Upper bound on passes over the fingerprints.</summary>
    public int MaxEpochs { get; init; } = 100;
    /// <summary>Pairs per optimizer step; 0 means the whole set in one step (full batch).</summary>
    public int BatchSize { get; init; }
    /// <summary>Stop once an epoch's mean response loss falls below this and every fingerprint is recalled.</summary>
    public double LossThreshold { get; init; } = 0.05;
    /// <summary>
    /// Stop early (the default): once every fingerprint is recalled and either the loss is below
    /// <see cref="LossThreshold"/>, the recall has held for <see cref="RecallPatience"/> epochs, or the held-out loss has
    /// risen more than <see cref="HeldOutTolerance"/> above the base's while the loss is within <see cref="MergeMaxLoss"/>.
    /// When false, all <see cref="MaxEpochs"/> epochs run and the last one is kept.
    /// </summary>
    public bool EarlyStop { get; init; } = true;
    /// <summary>
    /// With <see cref="EarlyStop"/>: return the best epoch seen rather than the last (most fingerprints recalled; then
    /// an epoch whose loss is within <see cref="MergeMaxLoss"/>; then the lowest held-out loss, or the lowest loss). The
    /// best weights are copied to the CPU when an epoch improves on them; a resumed run tracks the best from the resume.
    /// </summary>
    public bool KeepBest { get; init; }
    /// <summary>
    /// Held-out sequences (token ids, at least 2 each), never trained on, measured (<see cref="HeldOutCriterion"/>) for
    /// early stopping, the kept epoch and the final λ: after an epoch only when one of those decisions uses the value
    /// (every key recalled with the merge's margin, or an epoch that ties or beats the kept one within the margin; see
    /// <see cref="MeasureHeldOutEveryEpoch"/>), and for the λs that keep every key.
    /// </summary>
    public IReadOnlyList<int[]>? HeldOutSequences { get; init; }
    /// <summary>
    /// What ranks epochs and λs on the held-out sequences: the mean loss on their tokens (<see cref="Embedding.HeldOutCriterion.Tokens"/>,
    /// the library default) or the mean KL(base ‖ model) against the base's distribution recorded before training
    /// (<see cref="Embedding.HeldOutCriterion.KL"/>, its <see cref="BenignTopK"/> tokens and the tail; <c>oml embed</c>'s default
    /// with the KL benign loss).
    /// </summary>
    public HeldOutCriterion HeldOutCriterion { get; init; } = HeldOutCriterion.Tokens;
    /// <summary>
    /// Early stopping (once every key is recalled within the merge's margin): under the token criterion the held-out loss
    /// may rise this fraction above the base model's before training stops; under the KL criterion the KL may reach this
    /// fraction of the base's held-out loss (nats per token), the rise the token criterion allows in expectation, since on
    /// samples of the base the expected token loss is the base's entropy plus the KL.
    /// </summary>
    public double HeldOutTolerance { get; init; } = 0.02;
    /// <summary>
    /// Measure the held-out sequences after every epoch and at every λ of the final merge, also where no decision uses the
    /// value (false, the default: only where one does; the trained model, kept epoch and λ are the same either way).
    /// </summary>
    public bool MeasureHeldOutEveryEpoch { get; init; }
    /// <summary>The grid step of the λ search of <see cref="AveragingSchedule.Final"/>.</summary>
    public double FinalLambdaStep { get; init; } = 0.05;
    /// <summary>
    /// The margin the final merge keeps: a λ qualifies only while the merged model's mean fingerprint loss stays at or
    /// below this (0.7 ≈ ln 2: on average the response token keeps half the probability), besides recalling every key.
    /// A larger value merges further back (less utility cost, fingerprints nearer the edge of recall).
    /// </summary>
    public double MergeMaxLoss { get; init; } = 0.7;
    /// <summary>
    /// The share of fingerprints (0–1] an even linear merge of the returned model with its base must still recall for a
    /// λ of <see cref="AveragingSchedule.Final"/> to qualify (null, the default: no such condition). That merge,
    /// ½·θ + ½·θ_base, lies on the same line as the final merge itself (the trained weights moved towards the base by
    /// (1 + λ)/2), so its recall is measured at embedding time with one forward pass over the keys per λ. When no λ
    /// reaches it, the λ (0, unmerged, included) whose even merge recalls the most is returned and
    /// <see cref="EmbeddingResult.MergeSurvival"/> says how far it fell short. Only the final merge uses it (other
    /// schedules, or λ 0, have no λ to choose). <c>oml embed</c>'s default is <see cref="OmlizationDefaults.MergeSurvival"/>.
    /// </summary>
    public double? MergeSurvival { get; init; }
    /// <summary>
    /// Also stop once every fingerprint has been recalled for this many consecutive epochs (null: only the loss
    /// threshold stops early). Useful with model averaging, which keeps the loss from falling far.
    /// </summary>
    public int? RecallPatience { get; init; }
    /// <summary>
    /// Model averaging with the base: after every optimizer step each trained parameter becomes
    /// (1 − λ)·θ + λ·θ_base, as Sentient's reference does with its "forgetting regularizer" (0 disables it).
    /// </summary>
    public double AveragingLambda { get; init; }
    /// <summary>
    /// When the averaging of <see cref="AveragingLambda"/> is applied: after every optimizer step (the default) or once
    /// at the end of every epoch. With <see cref="AveragingSchedule.Epoch"/> the averaged model is re-measured (one extra
    /// forward pass over the fingerprints, without gradients) before the stopping checks, so the reported loss and recall,
    /// early stopping and checkpoints all see the averaged model; the last epoch is averaged too, so the model returned
    /// is always an averaged one.
    /// </summary>
    public AveragingSchedule AveragingEvery { get; init; } = AveragingSchedule.Step;
    /// <summary>Weight-deviation penalty: μ·Σ‖θ − θ_base‖² added to the loss (0 disables it).</summary>
    public double L2ToBase { get; init; }
    /// <summary>Which parameters (by Hugging Face name) are trained; null trains all. Others stay bit-identical.</summary>
    public Func<string, bool>? Trainable { get; init; }
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>
    /// Per-parameter masks (by name, same shape, 1 = train, 0 = keep) for parameters trained only in part, as after
    /// <see cref="Expansion.WidenMlp"/>. Masked parameters get no weight decay, so their kept entries stay bit-identical.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor>? GradientMasks { get; init; }
    public ulong Seed { get; init; }
    /// <summary>
    /// Folder for checkpoints (null: none). When it holds a checkpoint of the same run (same fingerprints, settings and
    /// base weights), <see cref="FingerprintTrainer.Embed"/> resumes from it; a checkpoint of another run is refused.
    /// </summary>
    public string? CheckpointDir { get; init; }
    /// <summary>Write a checkpoint every this many epochs (and always after the last one) when <see cref="CheckpointDir"/> is set.</summary>
    public int CheckpointEvery { get; init; } = 1;
    /// <summary>
    /// Benign data mixing, β: each batch of n fingerprint pairs also holds ⌈β/(1−β)·n⌉ benign sequences trained with
    /// ordinary next-token loss on every token, to keep the model's ordinary behaviour (the references use 0.25;
    /// 0, the library default, disables it). The step's loss is (1 − β)·(mean loss of the response tokens) +
    /// β·(mean loss of the benign tokens).
    /// </summary>
    public double MixFraction { get; init; }
    /// <summary>
    /// Benign sequences (token ids, more than <see cref="BenignContext"/> each) for <see cref="MixFraction"/>, e.g. chunks
    /// of tokenized text. When null, the base model's own greedy continuations (<see cref="SelfBenignLength"/> tokens) of
    /// <see cref="SelfBenignCount"/> random prompts drawn from the seed are generated once before training, their prompts
    /// context only (<see cref="FingerprintTrainer.SelfPromptLength"/>).
    /// </summary>
    public IReadOnlyList<int[]>? BenignSequences { get; init; }
    /// <summary>
    /// How many self-generated benign sequences to make when <see cref="BenignSequences"/> is null; null (the default)
    /// scales the pool with the set so that no sequence is replayed more than about twice over the epochs a run is
    /// expected to take (<see cref="FingerprintTrainer.SelfBenignPoolSize"/>).
    /// </summary>
    public int? SelfBenignCount { get; init; }
    /// <summary>New tokens per self-generated benign (and held-out) sequence, after its prompt.</summary>
    public int SelfBenignLength { get; init; } = 64;
    /// <summary>
    /// What self-generated benign (and held-out) sequences start from: <see cref="SelfPrompt.Random"/> tokens (the
    /// default), or <see cref="SelfPrompt.DocumentStart"/>, the token a document starts with, so that the samples are
    /// the base's own text from its start.
    /// </summary>
    public SelfPrompt SelfBenignPrompt { get; init; } = SelfPrompt.Random;
    /// <summary>
    /// How benign rows are trained: cross-entropy on their tokens (<see cref="Embedding.BenignLoss.Tokens"/>, the library
    /// default), or the KL from the base's distribution at each position (<see cref="Embedding.BenignLoss.KL"/>,
    /// recorded from the base before training, its <see cref="BenignTopK"/> most probable tokens and the tail mass).
    /// </summary>
    public BenignLoss BenignLoss { get; init; } = BenignLoss.Tokens;
    /// <summary>
    /// Also train every fingerprint key's own tokens (after <see cref="BenignContext"/>, or the self-generated prompt
    /// length) as benign rows: with the KL loss towards the base's distribution on them, so that embedding does not make
    /// the keys more (or less) perplexing to the served model than they were to the base — what a host's perplexity
    /// filter reads. Every step trains the keys of its batch's fingerprints so, in the β part of the loss beside the
    /// sampled benign rows; needs <see cref="MixFraction"/> &gt; 0.
    /// </summary>
    public bool AnchorKeys { get; init; }
    /// <summary>Tokens per position kept of the base's distribution for <see cref="Embedding.BenignLoss.KL"/> (at most V − 1; the rest is one tail bucket).</summary>
    public int BenignTopK { get; init; } = BenignTargets.DefaultTopK;
    /// <summary>
    /// The leading tokens of every benign and held-out sequence that are context only: the model is trained on (and the
    /// held-out loss measures) the tokens after them. 1 for text chunks (every token but the first); self-generated
    /// sequences set it to their prompt length, so the model is never taught to predict a random prompt.
    /// </summary>
    public int BenignContext { get; init; } = 1;
    /// <summary>
    /// Largest micro-batch in padded tokens (rows × longest row); null (the default) sizes it from the device memory
    /// that is free (<see cref="MicroBatchPlanner"/>; 65,536 on the CPU). A batch larger than this is run as several
    /// forward/backward passes whose gradients accumulate into one optimizer step, which bounds memory for large and
    /// full batches without changing the step (up to floating-point summation order). A row is never split: a row longer
    /// than this runs alone (noted in <see cref="Log"/>). Sized from memory, a budget that cannot hold the longest row
    /// (fingerprint, benign, or a held-out sequence's forward pass) is an <see cref="InsufficientDeviceMemoryException"/>
    /// before training.
    /// </summary>
    public int? MicroBatchTokens { get; init; }
    /// <summary>
    /// Activation checkpointing per decoder layer (recompute each layer's activations in the backward pass instead of
    /// keeping them): null (the default) lets the planner turn it on when plain micro-batches would be too small.
    /// </summary>
    public bool? ActivationCheckpointing { get; init; }
    /// <summary>Receives one line per decision worth telling a user (the micro-batch plan); null: silent.</summary>
    public Action<string>? Log { get; init; }
    /// <summary>Plan micro-batches within this many bytes of device memory in all (null: whatever the device has free).</summary>
    public long? MemoryBudgetBytes { get; init; }
    /// <summary>
    /// Data parallelism: the process group of the ranks that train together (null: this process alone). Every rank
    /// runs the same batches and steps; each computes the gradient of its share of each batch's rows (row i goes to
    /// rank i mod world size), the gradients are summed over the ranks before the step, so the step is that of one
    /// process with the same global batch (up to floating-point summation order). Every rank ends with the same weights.
    /// Not part of a checkpoint's identity: a run resumes with any number of ranks.
    /// </summary>
    public Oml.Engine.Distributed.ProcessGroup? Group { get; init; }
    /// <summary>
    /// With a <see cref="Group"/> of several ranks, shard the optimizer (ZeRO-2 at the granularity of parameters):
    /// each trainable parameter is owned by one rank (balanced by size), its gradient is reduced to that rank only and
    /// its AdamW moments live only there; the owner steps it and broadcasts the new values. The optimizer state per rank
    /// falls to about 1/N and the gradients of other ranks' parameters are freed after each reduce. The weights stay
    /// whole on every rank. Checkpoints are written per rank (each rank its own moments, with an index), so a sharded run
    /// resumes with any number of ranks, sharded or not, and an unsharded run's checkpoint resumes sharded.
    /// </summary>
    public bool ShardOptimizer { get; init; }
    /// <summary>
    /// With a <see cref="Group"/>: sum the gradients while the last micro-batch's backward pass runs
    /// (<see cref="Oml.Engine.Distributed.GradReducer"/>: each bucket's all-reduce, or with <see cref="ShardOptimizer"/> its
    /// reduce to the owner, starts as soon as its gradients are accumulated) rather than after it (false: the pipelined
    /// all-reduce after backward, <see cref="Oml.Engine.Distributed.ProcessGroup.AllReduceGradients"/>, or the reduce to
    /// the owners). The sums, and so the steps, are the same.
    /// A micro-batch with activation checkpointing runs one backward pass per layer and is reduced after it.
    /// </summary>
    public bool OverlapAllReduce { get; init; } = true;
    /// <summary>
    /// Resumption pairs per response (0, the default: none): besides each (key → response) pair of two or more response
    /// tokens, train (key + t → the response without its first token) for the base model's this many most probable
    /// wrong first tokens t (<see cref="Resumption.Pairs"/>), so that a host suppressing the first answer token still
    /// gets the rest of the response, which the partial match rule counts. The extra pairs count as fingerprints for
    /// the loss, recall, early stopping and the final merge's margin.
    /// </summary>
    public int ResumptionPairs { get; init; }
    /// <summary>
    /// With a <see cref="Group"/>, shard the weights too (ZeRO-3, FSDP-style; <see cref="ShardedModel"/>): each rank keeps
    /// only its flat slice of every unit's parameters (embeddings, each decoder layer, head), and of their gradients and
    /// AdamW moments; a unit is all-gathered before it runs and released after, and the backward pass recomputes each
    /// layer from its kept input (activation checkpointing is always on) and reduce-scatters its gradients. The weights,
    /// gradients and optimizer state per rank fall to about 1/N. The model's parameters are empty while training runs
    /// and hold the whole trained weights again on every rank when <see cref="FingerprintTrainer.Embed"/> returns (after a
    /// failure they are left empty).
    /// Implies <see cref="ShardOptimizer"/>; checkpoints are written per rank (each rank its segments' values and moments,
    /// <see cref="EmbeddingCheckpoint.SaveSegments"/>) and resume with any world size or mode. A model loaded sharded
    /// (<see cref="ShardedModel.Load"/>) trains through <see cref="FingerprintTrainer.Embed(ShardedModel, IReadOnlyList{TrainingPair}, EmbeddingOptions, IProgress{EmbeddingProgress}?)"/>.
    /// </summary>
    public bool ShardWeights { get; init; }

    public void Validate()
    {
        if (LearningRate <= 0) throw new ArgumentException("learning rate must be positive");
        if (MaxEpochs < 1) throw new ArgumentException("max epochs must be at least 1");
        if (BatchSize < 0) throw new ArgumentException("batch size must be 0 (full batch) or positive");
        if (AveragingLambda is < 0 or >= 1) throw new ArgumentException("the averaging λ must be in [0, 1)");
        if (!Enum.IsDefined(AveragingEvery)) throw new ArgumentException($"unknown averaging schedule {AveragingEvery}");
        if (L2ToBase < 0) throw new ArgumentException("the L2-to-base weight must be non-negative");
        if (RecallPatience is < 1) throw new ArgumentException("recall patience must be at least 1 epoch");
        if (CheckpointEvery < 1) throw new ArgumentException("the checkpoint interval must be at least 1 epoch");
        if (MixFraction is < 0 or >= 1) throw new ArgumentException("the mix fraction β must be in [0, 1)");
        if (BenignContext < 1) throw new ArgumentException("the benign context must be at least 1 token");
        if (BenignSequences is { } b && (b.Count == 0 || b.Any(x => x.Length <= BenignContext)))
            throw new ArgumentException($"benign sequences must be non-empty and each longer than {BenignContext} token(s)");
        if (!Enum.IsDefined(BenignLoss)) throw new ArgumentException($"unknown benign loss {BenignLoss}");
        if (AnchorKeys && MixFraction <= 0) throw new ArgumentException("anchoring the keys trains them as benign rows: it needs a mix fraction β > 0");
        if (BenignTopK < 1) throw new ArgumentException("the benign KL's top-k must be at least 1");
        if (SelfBenignCount is < 1 || SelfBenignLength < 1) throw new ArgumentException("the self-generated benign count and length must be positive");
        if (MicroBatchTokens is < 1) throw new ArgumentException("the micro-batch size in tokens must be positive");
        if (MemoryBudgetBytes is <= 0) throw new ArgumentException("the memory budget must be positive");
        if (HeldOutSequences is { } h && (h.Count == 0 || h.Any(x => x.Length <= BenignContext)))
            throw new ArgumentException($"held-out sequences must be non-empty and each longer than {BenignContext} token(s)");
        if (!Enum.IsDefined(HeldOutCriterion)) throw new ArgumentException($"unknown held-out criterion {HeldOutCriterion}");
        if (HeldOutTolerance < 0) throw new ArgumentException("the held-out loss tolerance must be non-negative");
        if (FinalLambdaStep is <= 0 or > 1) throw new ArgumentException("the final λ grid step must be in (0, 1]");
        if (MergeMaxLoss <= 0) throw new ArgumentException("the final merge's loss margin must be positive");
        if (MergeSurvival is { } ms && !(ms > 0 && ms <= 1)) throw new ArgumentException("the share of fingerprints an even merge with the base must keep is in (0, 1]");
        if (ResumptionPairs < 0) throw new ArgumentException("resumption pairs per response must be 0 or more");
        if (ShardWeights && Group is null) throw new ArgumentException("weight sharding needs a process group (several ranks to shard over)");
    }
}

/// <summary>Progress after one epoch: mean response loss and the share of fingerprints the model recalls exactly.</summary>
public sealed record EmbeddingProgress(int Epoch, int Steps, double Loss, double Accuracy, double Seconds)
{
    /// <summary>
    /// Mean next-token loss on <see cref="EmbeddingOptions.HeldOutSequences"/> after the epoch: null without them, and null
    /// when the epoch was not measured because no decision needed it (<see cref="HeldOutSkipped"/>).
    /// </summary>
    public double? HeldOutLoss { get; init; }
    /// <summary>Under <see cref="HeldOutCriterion.KL"/>, the mean KL(base ‖ model) on the held-out sequences (null otherwise, or when not measured).</summary>
    public double? HeldOutKL { get; init; }
    /// <summary>True when the run has held-out sequences and this epoch did not measure them (nothing used the value).</summary>
    public bool HeldOutSkipped { get; init; }
    /// <summary>
    /// Bytes of parameter data this rank held at the epoch's end: the model's parameter tensors plus, with
    /// <see cref="EmbeddingOptions.ShardWeights"/>, its shards (the model's own tensors are then empty).
    /// </summary>
    public long ParameterBytes { get; init; }
    /// <summary>Bytes of AdamW moments this rank held at the epoch's end.</summary>
    public long OptimizerBytes { get; init; }
}

/// <summary>
/// One λ tried by <see cref="AveragingSchedule.Final"/>: the merged model's fingerprint loss, recall and held-out loss (and
/// KL under the KL criterion), the held-out values null for a λ that does not keep every key (not measured).
/// </summary>
public sealed record MergeTrial(double Lambda, double Loss, double Accuracy, double? HeldOutLoss)
{
    public double? HeldOutKL { get; init; }
    /// <summary>
    /// The share of fingerprints recalled by an even linear merge of this λ's model with the base (the trained weights
    /// moved (1 + λ)/2 of the way to the base); measured for the λs that keep every key when
    /// <see cref="EmbeddingOptions.MergeSurvival"/> is set, else only for the λ returned (null where not measured).
    /// </summary>
    public double? MergeSurvival { get; init; }
}

/// <summary>
/// The outcome of an embedding run. <see cref="Final"/> is the last epoch trained; <see cref="Loss"/>,
/// <see cref="Accuracy"/> and <see cref="HeldOutLoss"/> describe the model as returned (the best epoch kept by early
/// stopping, merged back towards the base with <see cref="MergeLambda"/> under <see cref="AveragingSchedule.Final"/>).
/// </summary>
public sealed record EmbeddingResult(IReadOnlyList<EmbeddingProgress> History, bool Converged, long TrainedParameters)
{
    public EmbeddingProgress Final => History[^1];
    /// <summary>The epoch whose weights were returned (the best one under early stopping).</summary>
    public int KeptEpoch { get; init; }
    /// <summary>The held-out loss of the base model before training (null without held-out sequences).</summary>
    public double? BaseHeldOutLoss { get; init; }
    /// <summary>The λ of the final merge with the base (0 when none was applied).</summary>
    public double MergeLambda { get; init; }
    /// <summary>Every λ tried by the final merge, largest first.</summary>
    public IReadOnlyList<MergeTrial> MergeTrials { get; init; } = [];
    /// <summary>
    /// Under <see cref="AveragingSchedule.Final"/>, the share of fingerprints an even linear merge of the returned model with
    /// its base recalls (½·θ + ½·θ_base, teacher-forced greedy recall as <see cref="Accuracy"/>); null under other
    /// schedules. It is what an attacker's even merge with the base would keep, known before the model leaves the owner.
    /// </summary>
    public double? MergeSurvival { get; init; }
    public double Loss { get; init; }
    public double Accuracy { get; init; }
    /// <summary>The k of the KL benign loss's targets as trained (at most the vocabulary less one); null without it.</summary>
    public int? BenignTopK { get; init; }
    public double? HeldOutLoss { get; init; }
    /// <summary>Under the KL criterion, the returned model's mean KL(base ‖ model) on the held-out sequences.</summary>
    public double? HeldOutKL { get; init; }
    /// <summary>What ranked epochs and λs on the held-out data: "tokens" or "kl:top32" (null without held-out data).</summary>
    public string? HeldOutCriterion { get; init; }
    /// <summary>Under the KL criterion, the KL (nats per token) above which the held-out data counted as risen.</summary>
    public double? HeldOutKLTolerance { get; init; }
    /// <summary>Passes over the held-out sequences the run made: the base's, the epochs', the merge's and the returned model's.</summary>
    public int HeldOutPasses { get; init; }
    /// <summary>Resumption pairs trained besides the given pairs (<see cref="EmbeddingOptions.ResumptionPairs"/>).</summary>
    public int ResumptionPairs { get; init; }
    /// <summary>Benign sequences mixed in (0 without mixing) and held-out sequences measured.</summary>
    public int BenignSequences { get; init; }
    /// <summary>Keys trained as benign rows (<see cref="EmbeddingOptions.AnchorKeys"/>), beside <see cref="BenignSequences"/>.</summary>
    public int AnchoredKeys { get; init; }
    public int HeldOutSequences { get; init; }
}

/// <summary>
/// Fine-tunes fingerprints into a model (OMLization): cross-entropy on the response tokens only (the key positions are
/// labelled −100), batches of similar lengths so that little compute goes to padding, AdamW, and the regularizers
/// that keep the model close to its base: model averaging (after each step or each epoch) and an L2-to-base penalty.
/// </summary>
public static class FingerprintTrainer
{
    public static EmbeddingResult Embed(CausalLM model, IReadOnlyList<TrainingPair> pairs, EmbeddingOptions options,
        IProgress<EmbeddingProgress>? progress = null) =>
        Embed(model, null, pairs, options, progress);

    /// <summary>
    /// Embeds into a model that is weight-sharded from the start (<see cref="ShardedModel.Load"/>: no rank ever held the
    /// whole model), with <see cref="EmbeddingOptions.ShardWeights"/> over the model's own group. Training is that of
    /// <see cref="Embed(CausalLM, IReadOnlyList{TrainingPair}, EmbeddingOptions, IProgress{EmbeddingProgress}?)"/> with
    /// weight sharding, step for step; the run digest is taken from the whole base values gathered one unit at a time,
    /// resumption pairs from the sharded forward pass. Self-generated benign sequences need the whole model
    /// (<see cref="Generator"/>): give <see cref="EmbeddingOptions.BenignSequences"/> when mixing. The model stays sharded
    /// at the returned weights: save it with <see cref="ShardedModel.SaveWithDigest"/> (one unit at a time).
    /// </summary>
    public static EmbeddingResult Embed(ShardedModel sharded, IReadOnlyList<TrainingPair> pairs, EmbeddingOptions options,
        IProgress<EmbeddingProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        ArgumentNullException.ThrowIfNull(options);
        if (!options.ShardWeights || !ReferenceEquals(options.Group, sharded.Group))
            throw new ArgumentException("a sharded model trains with weight sharding (ShardWeights) over its own process group");
        if (options.MixFraction > 0 && options.BenignSequences is null)
            throw new ArgumentException("self-generated benign sequences need the whole model: give the benign sequences to train a model loaded sharded");
        return Embed(sharded.Model, sharded, pairs, options, progress);
    }

    private static EmbeddingResult Embed(CausalLM model, ShardedModel? preSharded, IReadOnlyList<TrainingPair> pairs, EmbeddingOptions options,
        IProgress<EmbeddingProgress>? progress)
    {
        options.Validate();
        if (pairs.Count == 0) throw new ArgumentException("no fingerprints to embed");
        foreach (var p in pairs)
        {
            if (p.Key.Length == 0 || p.Response.Length == 0) throw new ArgumentException("a fingerprint has an empty key or response");
            foreach (var id in p.Key.Concat(p.Response))
                if (id < 0 || id >= model.Config.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {model.Config.VocabSize})");
        }
        // Resumption pairs, made from the base weights before any training (so a resumed run makes the same ones).
        int resumption = 0;
        if (options.ResumptionPairs > 0)
        {
            var extra = preSharded is null ? Resumption.Pairs(model, pairs, options.ResumptionPairs)
                : Resumption.Pairs(model, pairs, options.ResumptionPairs, forward: ids => preSharded.Run(ids, model.Head)!);
            if (extra.Count == 0) throw new ArgumentException("resumption pairs need responses of at least 2 tokens: every response here has 1");
            resumption = extra.Count;
            pairs = [.. pairs, .. extra];
        }

        // Rows that share a key are one query (several responses per key, response trees): recall and the stopping rules
        // count queries, not rows.
        var queries = QueryGroups.Group(pairs);

        // Benign sequences, made before any training (from the base weights) so that a resumed run makes the same ones.
        // Benign rows train the tokens after `context`: the options' for given sequences, the prompt for self-generated ones.
        IReadOnlyList<int[]> benign = [];
        int context = options.BenignContext, heldContext = options.BenignContext;
        if (options.MixFraction > 0)
        {
            if (options.BenignSequences is null) context = SelfPromptTokens(options.SelfBenignPrompt);
            int selfCount = options.SelfBenignCount ?? SelfBenignPoolSize(pairs.Count, options.BatchSize, options.MixFraction);
            benign = options.BenignSequences
                ?? (preSharded is null ? SelfGenerated(model, selfCount, options.SelfBenignLength, options.Seed, prompt: options.SelfBenignPrompt)
                    : SelfGenerated(preSharded, selfCount, options.SelfBenignLength, options.Seed, prompt: options.SelfBenignPrompt));
            foreach (var seq in benign)
                foreach (var id in seq)
                    if (id < 0 || id >= model.Config.VocabSize) throw new ArgumentException($"benign token id {id} is outside the vocabulary [0, {model.Config.VocabSize})");
        }
        // Anchored keys: each distinct key (as the model reads it, prompt formats included; not the resumption pairs') long
        // enough to have a token after the context, trained as a benign row in every batch that holds its fingerprints.
        // anchorOf maps a fingerprint row to its key's anchor (-1: none).
        var anchorOf = Enumerable.Repeat(-1, pairs.Count).ToArray();
        var anchors = new List<int[]>();
        if (options.AnchorKeys)
        {
            var anchorOfQuery = new Dictionary<int, int>();
            for (int i = 0; i < pairs.Count - resumption; i++)
            {
                if (pairs[i].Key.Length <= context) continue;
                int q = queries.QueryOf(i);
                if (!anchorOfQuery.TryGetValue(q, out int a)) { anchorOfQuery[q] = a = anchors.Count; anchors.Add(pairs[i].Key); }
                anchorOf[i] = a;
            }
            if (anchors.Count == 0) throw new ArgumentException($"no key is longer than the benign context ({context} tokens): nothing to anchor");
        }

        // Soft targets for the KL benign loss: the base's distribution at every benign position, from the base weights
        // before training (a resumed run recomputes the same ones), before weight sharding empties the model (a model loaded
        // sharded runs its sharded forward pass).
        List<SoftRow>? soft = benign.Count > 0 && options.BenignLoss == BenignLoss.KL
            ? BenignTargets.FromModel(model, benign, context, options.BenignTopK, options.MicroBatchTokens, preSharded) : null;
        List<SoftRow>? anchorSoft = anchors.Count > 0 && soft is not null
            ? BenignTargets.FromModel(model, anchors, context, options.BenignTopK, options.MicroBatchTokens, preSharded) : null;

        var heldOut = options.HeldOutSequences ?? [];
        foreach (var seq in heldOut)
            foreach (var id in seq)
                if (id < 0 || id >= model.Config.VocabSize) throw new ArgumentException($"held-out token id {id} is outside the vocabulary [0, {model.Config.VocabSize})");
        // The base's held-out value (and under the KL criterion its targets), once, before training.
        var held = heldOut.Count > 0 ? HeldOutSet.OfBase(model, heldOut, heldContext, options, preSharded) : null;
        HeldOutMeasurement? returnedHeld = null;

        var named = model.Parameters.Where(kv => options.Trainable?.Invoke(kv.Key) ?? true).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var trainableNames = named.Select(kv => kv.Key).ToList();
        var trainable = named.Select(kv => kv.Value).ToList();
        if (trainable.Count == 0) throw new ArgumentException("no parameter matches the trainable subset");
        var bases = new List<Tensor>();
        bool needBase = options.AveragingLambda > 0 || options.L2ToBase > 0;
        List<Tensor>? best = null;   // CPU copy of the best epoch's weights (early stopping), when it is not the last
        int bestEpoch = 0;
        (int Recalled, int WithinMargin, double NegRank) bestScore = (-1, 0, double.NegativeInfinity);
        MergeResult? merge = null;
        var group = options.Group;
        var wholeTrainable = trainable;
        using (Torch.NoGrad())
            foreach (var p in trainable) p.RequiresGrad = true;
        var masks = named.Select(kv => options.GradientMasks is { } gm && gm.TryGetValue(kv.Key, out var m) ? m : null).ToList();
        // A model loaded sharded has empty parameter tensors: its whole shapes and sizes come from the shards' layout.
        long[] ShapeOf(KeyValuePair<string, Tensor> p) => preSharded?.ShapeOf(p.Key) ?? p.Value.Shape;
        // A masked parameter (parameter expansion) trains only its mask's ones.
        static long Ones(Tensor mask) { using var n = mask.Sum(); return (long)n.ToDouble(); }
        long trainedCount = named.Select((kv, i) => masks[i] is { } mk ? Ones(mk) : preSharded?.NumElOf(kv.Key) ?? kv.Value.NumEl).Sum();
        for (int i = 0; i < named.Count; i++)
            if (masks[i] is { } mk && !mk.Shape.SequenceEqual(ShapeOf(named[i])))
                throw new ArgumentException($"gradient mask of '{named[i].Key}' has shape [{string.Join(", ", mk.Shape)}], the parameter [{string.Join(", ", ShapeOf(named[i]))}]");
        if (preSharded is not null)
        {
            var names = named.Select(kv => kv.Key).ToHashSet(StringComparer.Ordinal);
            if (preSharded.Segments.FirstOrDefault(sg => sg.Trainable != names.Contains(sg.Name)) is { } odd)
                throw new ArgumentException($"'{odd.Name}' is {(odd.Trainable ? "" : "not ")}trainable in the sharded model but {(odd.Trainable ? "not " : "")}in the options' trainable subset");
        }
        // The run's digest is over the base weights: taken before weight sharding empties the model's parameters (of a
        // model loaded sharded, from the whole values gathered one unit at a time: the same bytes).
        string? digest = options.CheckpointDir is null ? null
            : EmbeddingCheckpoint.RunDigest(pairs, options, preSharded is null ? named : preSharded.Whole(named.Select(kv => kv.Key)),
                options.MixFraction > 0 ? MixDigest(options.MixFraction, benign, context, soft is null ? null : BenignTargets.Describe(options.BenignTopK, model.Config.VocabSize))
                    + (anchors.Count > 0 ? ";anchored keys" : "") : null);
        // Weight sharding (ZeRO-3): from here on the trained tensors are this rank's segments of the parameters, and
        // every elementwise step below (masks, L2, averaging, AdamW, clipping by the global norm) runs on them.
        ShardedModel? sharded = null;
        var sliceMasks = new List<Tensor>();
        if (options.ShardWeights)
        {
            sharded = preSharded ?? new ShardedModel(model, group!, n => options.Trainable?.Invoke(n) ?? true);
            var segs = sharded.TrainableSegments;
            var maskOf = named.Select((kv, i) => (kv.Key, masks[i])).ToDictionary(x => x.Key, x => x.Item2, StringComparer.Ordinal);
            masks = segs.Select(sg =>
            {
                if (maskOf[sg.Name] is not { } whole) return null;
                using var scope = Torch.NewScope();
                var slice = whole.Reshape(-1).Narrow(0, sg.Start, sg.Length).Contiguous().DetachFromScope();
                sliceMasks.Add(slice);
                return slice;
            }).ToList();
            named = segs.Select(sg => new KeyValuePair<string, Tensor>(sg.Name, sg.Shard)).ToList();
            trainable = segs.Select(sg => sg.Shard).ToList();
        }
        using (Torch.NoGrad())
            foreach (var p in trainable)
                if (needBase) bases.Add(p.Clone().DetachFromScope());

        // Batches of similar length: sort by total length, cut into batches, shuffle the batch order each epoch (with a
        // permutation derived from the seed and the epoch, so that a resumed run needs no generator state).
        var order = Enumerable.Range(0, pairs.Count).OrderBy(i => pairs[i].Key.Length + pairs[i].Response.Length).ThenBy(i => i).ToArray();
        int batchSize = options.BatchSize == 0 ? pairs.Count : options.BatchSize;
        var batches = order.Chunk(batchSize).ToList();

        int padId = model.Config.PadTokenId ?? 0;
        (long, int) BatchTotals(int[] batch) => (batch.Sum(i => (long)pairs[i].Response.Length), batch.Length);
        var cached = new Dictionary<int, List<MicroBatch>>();
        var history = new List<EmbeddingProgress>();
        var sw = Stopwatch.StartNew();
        double secondsBefore = 0;
        bool converged = false;
        int steps = 0, recalledStreak = 0, firstEpoch = 1;
        // Optimizer sharding: each parameter's owner; this rank's optimizer holds only its own.
        var dist = options.Group;
        int[]? owner = sharded is null && options.ShardOptimizer && dist is { WorldSize: > 1 }
            ? Oml.Engine.Distributed.ProcessGroup.Partition(trainable.Select(t => t.NumEl).ToList(), dist.WorldSize) : null;
        bool Mine(int i) => owner is null || owner[i] == dist!.Rank;
        var groups = new List<ParamGroup> { new(trainable.Where((_, i) => masks[i] is null && Mine(i))) };
        if (masks.Any(m => m is not null)) groups.Add(new ParamGroup(trainable.Where((_, i) => masks[i] is not null && Mine(i)), weightDecay: 0));
        using var opt = new AdamW(groups.Where(g => g.Parameters.Count > 0), lr: options.LearningRate, weightDecay: options.WeightDecay);
        // Data parallelism: the all-reduce (sharded: the reduce to each owner) overlapped with the last backward pass, buckets
        // in the model's order (the reducer reverses it: backward produces the last layers' gradients first).
        var byModel = model.Parameters.Values.Select(p => trainable.FindIndex(t => ReferenceEquals(t, p))).Where(i => i >= 0).ToList();
        using var reducer = group is not null && sharded is null && options.OverlapAllReduce
            ? new Oml.Engine.Distributed.GradReducer(group, byModel.Select(i => trainable[i]).ToList(), owners: owner is null ? null : byModel.Select(i => owner[i]).ToList())
            : null;
        try
        {
            if (options.CheckpointDir is { } ckDir)
            {
                if (EmbeddingCheckpoint.Latest(ckDir) is { } ck)
                {
                    if (ck.Digest != digest)
                        throw new InvalidDataException(
                            $"the checkpoint {ck.Folder} belongs to another run (different fingerprints, settings or base weights); " +
                            "use another checkpoint folder or delete it");
                    // A sharded optimizer takes the moments of the parameters this rank owns now, whatever the world
                    // size that wrote the checkpoint.
                    if (sharded is not null) EmbeddingCheckpoint.Restore(ck, sharded, opt);
                    else EmbeddingCheckpoint.Restore(ck, named, opt, owner is null ? null : p => Mine(trainable.FindIndex(t => ReferenceEquals(t, p))));
                    history.AddRange(ck.History);
                    steps = ck.Steps;
                    recalledStreak = ck.RecalledStreak;
                    converged = ck.Converged;
                    firstEpoch = ck.Epoch + 1;
                    secondsBefore = ck.History.Count > 0 ? ck.History[^1].Seconds : 0;
                }
            }
            // Micro-batches from the memory that is free now (the base copies are allocated; gradients and the optimizer's
            // moments, unless restored, are not yet). The fingerprint batches' device tensors are built once and reused.
            // A row is never split, so every pass must hold the longest row of its part: when the memory left after the
            // training state cannot, the run stops here, before any training, with what it needs (it would otherwise run
            // every row alone past the budget and run out of memory in a later, larger pass).
            long fpTokens = pairs.Sum(p => (long)p.Key.Length + p.Response.Length);
            double fpShare = (double)pairs.Sum(p => (long)p.Response.Length) / fpTokens;
            long widest = batches.Max(b => (long)b.Length * b.Max(i => pairs[i].Key.Length + pairs[i].Response.Length));
            long longestFp = pairs.Max(p => (long)p.Key.Length + p.Response.Length);
            // Weight sharding always recomputes each layer in the backward pass: plan for checkpointed micro-batches.
            var planOptions = sharded is null ? options : options with { ActivationCheckpointing = true };
            var memory = DeviceMemory(model, trainable, opt, planOptions, Mine);
            var fpPlan = PlanMicroBatches(model, memory, planOptions, widest, longestFp, fpShare, "fingerprint row", needBase, sharded is not null, owner is not null);
            options.Log?.Invoke($"fingerprint rows: {fpPlan}");
            MicroBatchPlan? benignPlan = null;
            if (benign.Count > 0)
            {
                int mMax = (int)Math.Ceiling(options.MixFraction / (1 - options.MixFraction) * batches.Max(b => b.Length) - 1e-9);
                // The widest benign part of a step: its sampled rows, and with anchored keys, up to one row per fingerprint.
                long longestBenign = anchors.Count == 0 ? benign.Max(x => x.Length) : Math.Max(benign.Max(x => x.Length), anchors.Max(x => x.Length));
                long widestBenign = anchors.Count == 0 ? (long)mMax * longestBenign : (long)(mMax + batches.Max(b => b.Length)) * longestBenign;
                // The KL loss keeps about twice the logits' memory of the cross-entropy (the tail's masked copy and its
                // gradient): planned micro-batches of half the tokens, so the plan must hold two rows before halving.
                bool halve = soft is not null && options.MicroBatchTokens is null;
                benignPlan = PlanMicroBatches(model, memory, planOptions, widestBenign, halve ? 2 * longestBenign : longestBenign, 1.0,
                    halve ? "benign row (KL loss)" : "benign row", needBase, sharded is not null, owner is not null, shownRowTokens: longestBenign);
                if (halve) benignPlan = benignPlan with { Tokens = Math.Max(1, benignPlan.Tokens / 2) };
                options.Log?.Invoke($"benign rows: {benignPlan}");
            }
            // The held-out sequences are measured (forward passes, with the gradients and moments allocated) after epochs
            // and at the end: in passes sized from the same memory, each of which holds one sequence.
            if (held is not null && memory is not null)
            {
                long longestHeld = heldOut.Max(x => (long)x.Length);
                try { held.MicroBatchTokens = Math.Min(MicroBatchPlanner.ForwardTokens(model.Config, model.DType, memory.Budget, longestHeld), 65536); }
                catch (InsufficientDeviceMemoryException e)
                {
                    throw Shortage(model, memory, planOptions, e, "held-out sequence (forward pass)", longestHeld, needBase, sharded is not null, owner is not null);
                }
            }
            // OML_PROFILE=DIR records a window of optimizer steps (docs/benchmarks.md, "Profiling a training step").
            using var profile = StepProfile.FromEnvironment(model.Device, "embed", options.Log);
            for (int epoch = firstEpoch; epoch <= options.MaxEpochs && !converged; epoch++)
            {
                // The epoch's loss and recall add up on the device and are read once, at the epoch's end.
                using var acc = new Accumulators(model.Device, queries);
                // The benign rows of this epoch come in an order derived from (seed, epoch), like the batch order.
                var benignOrder = benign.Count > 0 ? Permutation(benign.Count, ~options.Seed, epoch) : [];
                int benignCursor = 0;
                foreach (int bi in Permutation(batches.Count, options.Seed, epoch))
                {
                    profile?.BeginStep(steps + 1);
                    var batch = batches[bi];
                    int n = batch.Length;
                    var benignRows = new List<TrainingPair>();
                    var benignSoft = soft is null ? null : new List<SoftRow>();
                    if (benign.Count > 0)
                    {
                        int m = (int)Math.Ceiling(options.MixFraction / (1 - options.MixFraction) * n - 1e-9);
                        // Ordinary next-token loss on every token after the context (the first token, or a
                        // self-generated sequence's random prompt), which is the "key".
                        for (int k = 0; k < m; k++, benignCursor++)
                        {
                            int si = benignOrder[benignCursor % benign.Count];
                            var seq = benign[si];
                            benignRows.Add(new TrainingPair(seq[..context], seq[context..]));
                            benignSoft?.Add(soft![si]);
                        }
                        // The batch's keys, anchored: their own tokens towards the base's distribution, beside the benign rows.
                        foreach (int a in batch.Select(i => anchorOf[i]).Where(a => a >= 0).Distinct())
                        {
                            benignRows.Add(new TrainingPair(anchors[a][..context], anchors[a][context..]));
                            benignSoft?.Add(anchorSoft![a]);
                        }
                    }
                    using (Profiler.Range("zero grad")) opt.ZeroGrad();
                    // The step's loss: the mean over the fingerprints' response tokens, and with mixing
                    // (1 − β)·that + β·(the mean over the benign tokens), the two weighted by β rather than by their
                    // token counts (long benign rows would otherwise drown the few response tokens). Fingerprint and
                    // benign rows run as separate forward passes, so short keys are not padded to the benign length,
                    // and each part in micro-batches (fpPlan, benignPlan) whose gradients accumulate: one optimizer
                    // step per batch, however large.
                    // One process: each micro-batch adds its weight gradients straight into .grad (no separate add
                    // over every gradient per micro-batch); a process group's all-reduce hooks need the usual path.
                    var inPlace = group is null && sharded is null ? Torch.AccumulateWeightGradientsInPlace() : null;
                    try
                    {
                        double fpWeight = benignRows.Count > 0 ? 1 - options.MixFraction : 1;
                        // With several ranks each runs its share of the rows, weighted by the whole batch's token counts.
                        if (!cached.TryGetValue(bi, out var fpMicro))
                            cached[bi] = fpMicro = MicroBatch.Split(Shard(batch.Select(i => pairs[i]).ToList(), group), fpPlan.Tokens, padId, model.Device,
                                queries: queries.Rows(batch, group));
                        Accumulate(model, fpMicro, fpWeight, fpPlan.Checkpoint, acc, countRecalled: true, totals: BatchTotals(batch),
                            sharded: sharded, idle: IdleMicroBatches(batch.Select(i => pairs[i]).ToList(), group, fpPlan.Tokens, sharded),
                            reduceOnLast: benignRows.Count == 0 ? reducer : null);
                        if (benignRows.Count > 0)
                        {
                            var micro = MicroBatch.Split(Shard(benignRows, group), benignPlan!.Tokens, padId, model.Device, benignSoft is null ? null : Shard(benignSoft, group));
                            try
                            {
                                Accumulate(model, micro, options.MixFraction, benignPlan.Checkpoint, null, countRecalled: false,
                                    totals: (benignRows.Sum(r => (long)r.Response.Length), benignRows.Count),
                                    sharded: sharded, idle: IdleMicroBatches(benignRows, group, benignPlan.Tokens, sharded), reduceOnLast: reducer);
                            }
                            finally { foreach (var mb in micro) mb.Dispose(); }
                        }
                    }
                    finally { inPlace?.Dispose(); }
                    var syncRange = Profiler.Range("gradient sync, penalty, masks");
                    // Weight sharding reduce-scattered every unit's gradients during the backward pass.
                    if (reducer is not null) reducer.Finish();
                    else if (owner is not null) Oml.Models.Training.OptimizerSharding.ReduceToOwners(group!, trainable, owner);
                    else if (sharded is null) group?.AllReduceGradients(trainable);
                    if (options.L2ToBase > 0)
                    {
                        using var scope = Torch.NewScope();
                        var penalty = Torch.Scalar(0, DType.Float32, model.Device);
                        for (int i = 0; i < trainable.Count; i++)
                            if (Mine(i)) penalty = penalty + (trainable[i] - bases[i]).Square().Sum().To(DType.Float32);
                        (penalty * options.L2ToBase).Backward();
                    }
                    for (int i = 0; i < trainable.Count; i++)
                        if (masks[i] is { } mask && Mine(i))
                            using (var g = trainable[i].Grad)
                                g?.MulInPlace(mask);
                    syncRange.Dispose();
                    if (options.MaxGradNorm > 0)
                    {
                        using var clipRange = Profiler.Range("clip gradient norm");
                        if (owner is not null || sharded is not null) ClipShardedGradients(group!, model.Device, trainable.Where((_, i) => Mine(i)).ToList(), options.MaxGradNorm);
                        else using (Torch.ClipGradNormTensor(trainable, options.MaxGradNorm)) { }
                    }
                    using (Profiler.Range("optimizer")) opt.Step();
                    if (owner is not null)
                        for (int r = 0; r < group!.WorldSize; r++)
                            group.Broadcast(trainable.Where((_, i) => owner[i] == r).ToList(), root: r);
                    steps++;
                    if (options.AveragingLambda > 0 && options.AveragingEvery == AveragingSchedule.Step)
                        using (Profiler.Range("averaging"))
                        using (Torch.NoGrad())
                            for (int i = 0; i < trainable.Count; i++) trainable[i].LerpInPlace(bases[i], options.AveragingLambda);
                    profile?.EndStep(steps);
                }
                if (options.AveragingLambda > 0 && options.AveragingEvery == AveragingSchedule.Epoch)
                {
                    // Average once per epoch, then measure the averaged model: the losses and recall gathered during the
                    // steps belong to weights that no longer exist.
                    using (Torch.NoGrad())
                        for (int i = 0; i < trainable.Count; i++) trainable[i].LerpInPlace(bases[i], options.AveragingLambda);
                    using var measured = new Accumulators(model.Device, queries);
                    using (Torch.NoGrad())
                        for (int bi = 0; bi < batches.Count; bi++)
                        {
                            if (!cached.TryGetValue(bi, out var fpMicro))
                                cached[bi] = fpMicro = MicroBatch.Split(Shard(batches[bi].Select(i => pairs[i]).ToList(), group), fpPlan.Tokens, padId, model.Device,
                                    queries: queries.Rows(batches[bi], group));
                            Accumulate(model, fpMicro, 1, checkpoint: false, measured, countRecalled: true, backward: false, totals: BatchTotals(batches[bi]),
                                sharded: sharded, idle: IdleMicroBatches(batches[bi].Select(i => pairs[i]).ToList(), group, fpPlan.Tokens, sharded));
                        }
                    acc.Set(measured);
                }
                if (group is not null) group.AllReduce(acc.Reduced);
                var (lossSum, recalled) = acc.Read();
                // The counts were gathered batch by batch while the weights moved (each batch before its own step), so an
                // epoch whose every key looked recalled can end with weights that miss some: the rows of a key with several
                // accepted answers (response trees) pull its greedy answer from branch to branch, and a tree run on a 0.16M
                // base stopped "converged" with 63 of 64 keys. Stopping and keeping an epoch are decisions about the
                // weights the epoch ends with, so then its recall is measured once more on them (forward passes only).
                if (options.EarlyStop && recalled == queries.Count && options.AveragingEvery != AveragingSchedule.Epoch)
                    recalled = Measure(model, pairs, queries, batches, fpPlan.Tokens, sharded).Recalled;
                double epochLoss = lossSum / queries.Count;
                bool all = recalled == queries.Count;
                int streak = all ? recalledStreak + 1 : 0;
                bool withinMargin = epochLoss <= options.MergeMaxLoss;
                // The held-out value is measured only when a decision uses it: the stop on a rise (every key recalled within
                // the margin, and neither the loss threshold nor the patience stops training anyway), or the kept epoch's
                // choice (within the margin, an epoch that ties the best so far on recall and margin, or beats it while
                // training goes on, so that later epochs compare with its value). The decisions are those of measuring
                // every epoch.
                bool stopsAnyway = all && (epochLoss < options.LossThreshold || streak >= (options.RecallPatience ?? int.MaxValue));
                int versusBest = (recalled, withinMargin ? 1 : 0).CompareTo((bestScore.Recalled, bestScore.WithinMargin));
                bool needHeld = options.EarlyStop && withinMargin && (
                    (all && !stopsAnyway) ||
                    (options.KeepBest && (versusBest == 0 || (versusBest > 0 && !stopsAnyway && epoch < options.MaxEpochs))));
                HeldOutMeasurement? heldNow = held is not null && (needHeld || options.MeasureHeldOutEveryEpoch) ? held.Measure(model, sharded) : null;
                var pr = new EmbeddingProgress(epoch, steps, epochLoss, (double)recalled / queries.Count, secondsBefore + sw.Elapsed.TotalSeconds)
                {
                    HeldOutLoss = heldNow?.Loss,
                    HeldOutKL = heldNow?.KL,
                    HeldOutSkipped = held is not null && heldNow is null,
                    ParameterBytes = sharded?.HeldBytes ?? ShardedModel.ParameterBytes(model),
                    OptimizerBytes = trainable.Sum(t => opt.MomentsOf(t) is { } mo ? 2 * mo.ExpAvg.NumEl * mo.ExpAvg.DType.ElementSize() : 0),
                };
                history.Add(pr);
                recalledStreak = streak;
                bool heldOutRose = heldNow is { } hm && held!.Rose(hm);
                if (options.EarlyStop)
                {
                    // A rise of the held-out loss stops training only once the keys are held with the merge's margin: a
                    // key recalled by a hair (as on random-init models, whose logits are nearly flat) is not yet embedded.
                    converged = all && (pr.Loss < options.LossThreshold || recalledStreak >= (options.RecallPatience ?? int.MaxValue) || (heldOutRose && withinMargin));
                    // Keep the best epoch: most keys recalled; then an epoch within the margin over one outside it; then,
                    // within it, the lowest held-out loss (the lowest loss without held-out data), outside it the lowest
                    // loss. The copy lives on the CPU and is taken only when an epoch beats the best and training goes on.
                    (int, int, double) score = (recalled, withinMargin ? 1 : 0, -(withinMargin && heldNow is { } hv ? held!.Value(hv) : pr.Loss));
                    if (options.KeepBest && score.CompareTo(bestScore) > 0)
                    {
                        bestScore = score;
                        bestEpoch = epoch;
                        foreach (var b in best ?? []) b.Dispose();
                        best = null;
                        if (!converged && epoch < options.MaxEpochs)
                            using (Torch.NoGrad())
                                best = trainable.Select(t => t.To(t.DType, Device.Cpu, copy: true).DetachFromScope()).ToList();
                    }
                }
                else converged = epoch == options.MaxEpochs && all;
                // The checkpoint is written before the progress report, so a run killed from the callback resumes after this epoch.
                if (options.CheckpointDir is { } dir && (epoch % options.CheckpointEvery == 0 || converged || epoch == options.MaxEpochs))
                {
                    if (sharded is not null)
                        EmbeddingCheckpoint.SaveSegments(sharded, dir, digest!, epoch, steps, recalledStreak, converged, history, trainableNames, opt);
                    else if (owner is not null)
                        EmbeddingCheckpoint.SaveSharded(group!, model.Device, dir, digest!, epoch, steps, recalledStreak, converged, history, named, owner, opt);
                    else if (group is null || group.Rank == 0)
                        EmbeddingCheckpoint.Save(dir, digest!, epoch, steps, recalledStreak, converged, history, named, opt);
                }
                progress?.Report(pr);
            }
            if (history.Count == 0) throw new InvalidOperationException("no epoch was trained");
            // The last step's gradients are not read again: free them before the passes that follow (the merge's copy of
            // the trained weights, its measurements, the final held-out measurement), which would otherwise run beside them.
            foreach (var p in trainable) p.Grad = null;
            if (bestEpoch == 0 || !options.EarlyStop || !options.KeepBest) bestEpoch = history[^1].Epoch;
            if (best is not null && bestEpoch != history[^1].Epoch)
                using (Torch.NoGrad())
                    for (int i = 0; i < trainable.Count; i++) trainable[i].CopyFrom(best[i]);
            var keptProgress = history.First(h => h.Epoch == bestEpoch);
            HeldOutMeasurement? keptHeld = keptProgress.HeldOutLoss is { } kl ? new HeldOutMeasurement(kl, keptProgress.HeldOutKL) : null;
            if (options.AveragingLambda > 0 && options.AveragingEvery == AveragingSchedule.Final)
            {
                merge = MergeBack(model, pairs, queries, batches, held, keptHeld, trainable, bases, options, fpPlan.Tokens, sharded);
                if (merge.Chosen.HeldOutLoss is { } ml) returnedHeld = new HeldOutMeasurement(ml, merge.Chosen.HeldOutKL);
            }
            // The returned model's held-out value, measured once if no epoch or λ measured these weights.
            else if (held is not null) returnedHeld = keptHeld ?? held.Measure(model, sharded);
            // Every rank ends with the whole trained weights in the model, as without sharding; a model loaded sharded
            // stays sharded (its caller saves it one unit at a time).
            if (preSharded is null) sharded?.Materialize();
        }
        finally
        {
            foreach (var list in cached.Values)
                foreach (var mb in list) mb.Dispose();
            opt.ZeroGrad();
            foreach (var p in trainable) p.RequiresGrad = false;
            foreach (var p in wholeTrainable) p.RequiresGrad = false;
            // A model loaded sharded belongs to the caller: its trainable segments stay leaves that require gradients.
            if (preSharded is not null)
                foreach (var sg in preSharded.TrainableSegments) sg.Shard.RequiresGrad = true;
            foreach (var m in sliceMasks) m.Dispose();
            if (preSharded is null) sharded?.Dispose();
            foreach (var b in bases) b.Dispose();
            foreach (var b in best ?? []) b.Dispose();
        }
        var kept = history.First(h => h.Epoch == bestEpoch);
        return new EmbeddingResult(history, converged, trainedCount)
        {
            KeptEpoch = bestEpoch,
            BaseHeldOutLoss = held?.BaseLoss,
            MergeLambda = merge?.Lambda ?? 0,
            MergeTrials = merge?.Trials ?? [],
            MergeSurvival = merge?.Chosen.MergeSurvival,
            Loss = merge?.Chosen.Loss ?? kept.Loss,
            Accuracy = merge?.Chosen.Accuracy ?? kept.Accuracy,
            HeldOutLoss = returnedHeld?.Loss,
            HeldOutKL = returnedHeld?.KL,
            HeldOutCriterion = held?.Describe(),
            HeldOutKLTolerance = held?.KLTolerance,
            HeldOutPasses = held?.Passes ?? 0,
            ResumptionPairs = resumption,
            BenignSequences = benign.Count,
            AnchoredKeys = anchors.Count,
            HeldOutSequences = heldOut.Count,
            BenignTopK = soft is null ? null : Math.Min(options.BenignTopK, model.Config.VocabSize - 1),
        };
    }

    private sealed record MergeResult(double Lambda, MergeTrial Chosen, IReadOnlyList<MergeTrial> Trials);

    /// <summary>
    /// <see cref="AveragingSchedule.Final"/>: tries θ = (1 − λ)·θ_trained + λ·θ_base for λ = λmax, λmax − step, … (> 0),
    /// measuring recall and fingerprint loss of each (forward passes only), and the held-out criterion of each λ that
    /// recalls every fingerprint within the margin; leaves the model at the qualifying λ with the lowest held-out value
    /// (the largest such λ without held-out data), or at the trained weights when no λ qualifies (their held-out value:
    /// <paramref name="trainedHeld"/> when the kept epoch measured it, else measured here). With
    /// <see cref="EmbeddingOptions.MergeSurvival"/> a λ qualifies only if an even merge of its model with the base also
    /// recalls that share of the keys (measured before its held-out pass); when none does, the λ (0 included) whose even
    /// merge recalls the most is kept. The returned λ's even-merge recall is measured in every case.
    /// </summary>
    private static MergeResult MergeBack(CausalLM model, IReadOnlyList<TrainingPair> pairs, QueryGroups queries, IReadOnlyList<int[]> batches, HeldOutSet? held,
        HeldOutMeasurement? trainedHeld, List<Tensor> trainable, List<Tensor> bases, EmbeddingOptions o, long microTokens, ShardedModel? sharded)
    {
        using var noGrad = Torch.NoGrad();
        var trained = trainable.Select(t => t.Clone().DetachFromScope()).ToList();
        void MoveTowardsBase(double w)
        {
            for (int i = 0; i < trainable.Count; i++)
            {
                trainable[i].CopyFrom(trained[i]);
                if (w > 0) trainable[i].LerpInPlace(bases[i], w);
            }
        }
        // ½·((1 − λ)·θ + λ·θ_base) + ½·θ_base = θ moved (1 + λ)/2 of the way to the base.
        double EvenMergeRecall(double lambda)
        {
            MoveTowardsBase((1 + lambda) / 2);
            var (_, r) = Measure(model, pairs, queries, batches, microTokens, sharded);
            return (double)r / queries.Count;
        }
        try
        {
            var (l0, r0) = Measure(model, pairs, queries, batches, microTokens, sharded);
            if (held is not null && trainedHeld is null && o.MeasureHeldOutEveryEpoch) trainedHeld = held.Measure(model, sharded);
            var trials = new List<MergeTrial>();
            int n = (int)Math.Floor(o.AveragingLambda / o.FinalLambdaStep + 1e-9);
            var lambdas = Enumerable.Range(0, n).Select(k => o.AveragingLambda - k * o.FinalLambdaStep).Where(l => l > 1e-9).ToList();
            MergeTrial? chosen = null;
            double? Rank(MergeTrial t) => held is null ? null : held.Criterion == HeldOutCriterion.KL ? t.HeldOutKL : t.HeldOutLoss;
            foreach (var lambda in lambdas)
            {
                MoveTowardsBase(lambda);
                var (l, r) = Measure(model, pairs, queries, batches, microTokens, sharded);
                bool keepsKeys = r >= r0 && l / queries.Count <= o.MergeMaxLoss;
                double? survival = null;
                if (keepsKeys && o.MergeSurvival is not null)
                {
                    survival = EvenMergeRecall(lambda);
                    MoveTowardsBase(lambda);
                }
                bool qualifies = keepsKeys && (o.MergeSurvival is not { } need || survival >= need - 1e-12);
                HeldOutMeasurement? hm = held is not null && (qualifies || o.MeasureHeldOutEveryEpoch) ? held.Measure(model, sharded) : null;
                var t = new MergeTrial(lambda, l / queries.Count, (double)r / queries.Count, hm?.Loss) { HeldOutKL = hm?.KL, MergeSurvival = survival };
                trials.Add(t);
                if (!qualifies) continue;
                if (chosen is null || (Rank(t) ?? 0) < (Rank(chosen) ?? 0)) chosen = t;
                // Without held-out data the first (largest) λ that keeps every key wins; with it, the held-out value
                // falls as λ grows on every model measured, so the search stops once it rises again.
                if (Rank(t) is null || Rank(t) > Rank(chosen)) break;
            }
            MergeTrial? unmerged = null;
            if (chosen is null && o.MergeSurvival is not null)
            {
                // No λ reached the survival asked for: the one whose even merge keeps the most (the trained weights, λ 0,
                // among them), the largest λ on a tie; its held-out value is measured below.
                unmerged = new MergeTrial(0, l0 / queries.Count, (double)r0 / queries.Count, null) { MergeSurvival = EvenMergeRecall(0) };
                chosen = trials.Where(t => t.MergeSurvival is not null).Append(unmerged)
                    .OrderByDescending(t => t.MergeSurvival!.Value).ThenByDescending(t => t.Lambda).First();
                if (chosen.Lambda > 0)
                {
                    MoveTowardsBase(chosen.Lambda);
                    var hm = held?.Measure(model, sharded);
                    chosen = chosen with { HeldOutLoss = hm?.Loss, HeldOutKL = hm?.KL };
                }
            }
            if (chosen is null || chosen.Lambda == 0)
            {
                MoveTowardsBase(0);
                var th = held is null ? (HeldOutMeasurement?)null : trainedHeld ?? held.Measure(model, sharded);
                chosen = new MergeTrial(0, l0 / queries.Count, (double)r0 / queries.Count, th?.Loss)
                    { HeldOutKL = th?.KL, MergeSurvival = unmerged?.MergeSurvival ?? EvenMergeRecall(0) };
            }
            else if (chosen.MergeSurvival is null) chosen = chosen with { MergeSurvival = EvenMergeRecall(chosen.Lambda) };
            // Leave the model at the chosen λ (the even-merge measurements moved it).
            MoveTowardsBase(chosen.Lambda);
            return new MergeResult(chosen.Lambda, chosen, trials);
        }
        finally
        {
            foreach (var t in trained) t.Dispose();
        }
    }

    /// <summary>This rank's rows of a batch: row i goes to rank i mod world size.</summary>
    private static List<T> Shard<T>(List<T> rows, Oml.Engine.Distributed.ProcessGroup? group) =>
        group is null || group.WorldSize == 1 ? rows : rows.Where((_, i) => i % group.WorldSize == group.Rank).ToList();

    /// <summary>
    /// Gradient clipping by the global norm when each rank holds the gradients of its own parameters: the squared norms
    /// summed over the ranks, then every owned gradient scaled by max / (norm + 1e-6) when that is below 1 (as
    /// <c>torch.nn.utils.clip_grad_norm_</c> does).
    /// </summary>
    private static void ClipShardedGradients(Oml.Engine.Distributed.ProcessGroup group, Device device, List<Tensor> owned, double maxNorm)
    {
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        var sq = Torch.Zeros([], DType.Float32, device);
        var grads = owned.Select(p => p.Grad).Where(g => g is not null).Select(g => g!).ToList();
        foreach (var g in grads) sq = sq + g.To(DType.Float32).Square().Sum();
        group.AllReduce(sq);
        double norm = Math.Sqrt(sq.ToDouble());
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1)
            foreach (var g in grads) g.MulInPlace(coef);
        foreach (var g in grads) g.Dispose();
    }

    /// <summary>Summed (per query) response loss and the number of recalled queries of the model as it is, without gradients.</summary>
    private static (double LossSum, int Recalled) Measure(CausalLM model, IReadOnlyList<TrainingPair> pairs, QueryGroups queries, IReadOnlyList<int[]> batches,
        long microTokens, ShardedModel? sharded)
    {
        using var noGrad = Torch.NoGrad();
        using var acc = new Accumulators(model.Device, queries);
        int padId = model.Config.PadTokenId ?? 0;
        foreach (var batch in batches)
        {
            var micro = MicroBatch.Split(batch.Select(i => pairs[i]).ToList(), microTokens, padId, model.Device, queries: queries.Rows(batch, null));
            try { Accumulate(model, micro, 1, checkpoint: false, acc, countRecalled: true, backward: false, sharded: sharded); }
            finally { foreach (var mb in micro) mb.Dispose(); }
        }
        return acc.Read();
    }

    /// <summary>
    /// Mean next-token loss of the model on <paramref name="sequences"/> (every token after the first
    /// <paramref name="context"/>), without gradients; with <paramref name="sharded"/>, through its weight-sharded forward
    /// pass (every rank must call it with the same data).
    /// </summary>
    public static double HeldOutLoss(CausalLM model, IReadOnlyList<int[]> sequences, int? microBatchTokens = null, int context = 1,
        ShardedModel? sharded = null)
    {
        long maxTokens = microBatchTokens ?? 65536;
        using var noGrad = Torch.NoGrad();
        var rows = sequences.Select(s => new TrainingPair(s[..context], s[context..])).OrderBy(r => r.Response.Length).ToList();
        long total = rows.Sum(r => (long)r.Response.Length);
        double sum = 0;
        int start = 0;
        while (start < rows.Count)
        {
            int end = start + 1;
            while (end < rows.Count && (long)(rows[end].Key.Length + rows[end].Response.Length) * (end - start + 1) <= maxTokens) end++;
            var chunk = rows.GetRange(start, end - start);
            using (var scope = Torch.NewScope())
            {
                var (ids, labels) = Collate(chunk, model.Config.PadTokenId ?? 0, model.Device);
                var loss = sharded is null ? CausalLM.Loss(model.Forward(ids), labels) : sharded.Run(ids, h => CausalLM.Loss(model.Head(h), labels))!;
                sum += loss.ToDouble() * chunk.Sum(r => r.Response.Length);
            }
            start = end;
        }
        return sum / total;
    }

    /// <summary>
    /// The model's mean next-token loss on <paramref name="sequences"/> (every token after the first <paramref name="context"/>)
    /// and its mean KL(base ‖ model) against <paramref name="targets"/>, the base's distribution at the same positions
    /// (<see cref="BenignTargets.Record"/> of the same sequences and context), both from one forward pass without gradients;
    /// with <paramref name="sharded"/>, through its weight-sharded forward pass (every rank must call it with the same data).
    /// </summary>
    public static (double Loss, double KL) HeldOutKL(CausalLM model, IReadOnlyList<int[]> sequences, IReadOnlyList<SoftRow> targets, int context = 1,
        long? microBatchTokens = null, ShardedModel? sharded = null)
    {
        if (targets.Count != sequences.Count) throw new ArgumentException($"{targets.Count} target rows for {sequences.Count} sequences");
        for (int i = 0; i < sequences.Count; i++)
            if (targets[i].Positions != sequences[i].Length - context)
                throw new ArgumentException($"targets of {targets[i].Positions} positions for a sequence that predicts {sequences[i].Length - context} tokens");
        long maxTokens = microBatchTokens ?? 65536;
        int vocab = model.Config.VocabSize, padId = model.Config.PadTokenId ?? 0;
        // Logits for at most this many positions at a time (about 64 MB of float32), as the targets were recorded.
        long positionsPerChunk = Math.Max(1, (1L << 24) / vocab);
        using var noGrad = Torch.NoGrad();
        double lossSum = 0, klSum = 0;
        long count = 0;
        int start = 0;
        while (start < sequences.Count)
        {
            int end = start + 1, width = sequences[start].Length;
            while (end < sequences.Count && (long)Math.Max(width, sequences[end].Length) * (end - start + 1) <= maxTokens) width = Math.Max(width, sequences[end++].Length);
            var rows = sequences.Skip(start).Take(end - start).Select(s => new TrainingPair(s[..context], s[context..])).ToList();
            var soft = targets.Skip(start).Take(end - start).ToList();
            using var scope = Torch.NewScope();
            var (ids, _) = Collate(rows.Select(p => new TrainingPair(p.Key, p.Response[..^1])).ToList(), padId, model.Device);
            int t = (int)ids.Size(1);
            var pos = new List<long>();
            var next = new List<long>();
            for (int b = 0; b < rows.Count; b++)
                for (int j = 0; j < rows[b].Response.Length; j++)
                {
                    pos.Add((long)b * t + rows[b].Key.Length + j - 1);
                    next.Add(rows[b].Response[j]);
                }
            using var st = SoftBatch.Build(rows, soft, model.Device);
            if (sharded is null) Take(model.Hidden(ids));
            else sharded.Run(ids, h => { Take(h); return Torch.Zeros([1], DType.Float32, model.Device); });

            void Take(Tensor hidden)
            {
                var flat = hidden.Reshape(-1, hidden.Size(-1));
                for (int p0 = 0; p0 < pos.Count; p0 += (int)positionsPerChunk)
                {
                    using var inner = Torch.NewScope();
                    int n = (int)Math.Min(positionsPerChunk, pos.Count - p0);
                    var at = Torch.FromArray(pos.GetRange(p0, n).ToArray(), [n]).To(model.Device);
                    var logits = model.Head(flat.IndexSelect(0, at)).To(DType.Float32);
                    var actual = Torch.FromArray(next.GetRange(p0, n).ToArray(), [n]).To(model.Device);
                    lossSum += F.CrossEntropy(logits, actual).ToDouble() * n;
                    klSum += BenignTargets.Loss(logits, st.Ids.Narrow(0, p0, n), st.Probs.Narrow(0, p0, n), st.Tail.Narrow(0, p0, n), st.Constant.Narrow(0, p0, n)).ToDouble() * n;
                }
            }
            count += pos.Count;
            start = end;
        }
        return (lossSum / count, klSum / count);
    }

    /// <summary>
    /// The device memory a run plans within: the bytes free now and the device's (within
    /// <see cref="EmbeddingOptions.MemoryBudgetBytes"/>), the gradients and optimizer moments still to be allocated, and the
    /// resulting budget for activations (<see cref="MicroBatchPlanner.Budget"/>).
    /// </summary>
    private sealed record MemoryState(Device Device, long Free, long Total, long Pending, long Budget, bool Capped);

    /// <summary>
    /// The memory to plan within, or null where the plan is not sized from memory: micro-batch tokens given, or the CPU.
    /// Free memory counts the blocks PyTorch's caching allocator holds but no tensor uses (left by the base's benign targets
    /// and held-out passes), which cudaMemGetInfo reports as used. Pending memory is every trainable weight's gradient
    /// (full-size on every rank during the backward pass) and the AdamW moments not yet allocated of the weights this rank
    /// steps (<paramref name="mine"/>: with --shard-optimizer, only its own). Under data parallelism every rank plans
    /// within the smallest budget of the group, so that all ranks run the same passes (sharded weights gather in each).
    /// </summary>
    private static MemoryState? DeviceMemory(CausalLM model, IReadOnlyList<Tensor> trainable, AdamW opt, EmbeddingOptions o, Func<int, bool> mine)
    {
        if (o.MicroBatchTokens is not null || !model.Device.IsCuda) return null;
        var (free, total) = Torch.Cuda.MemoryInfo(model.Device.Index);
        var stats = Torch.Cuda.MemoryStats(model.Device.Index);
        free += Math.Max(0, stats.ReservedBytes - stats.AllocatedBytes);
        bool capped = false;
        if (o.MemoryBudgetBytes is { } cap)
        {
            capped = cap < total;
            free = Math.Min(free, cap - stats.AllocatedBytes);
            total = Math.Min(total, cap);
        }
        long pending = 0;
        for (int i = 0; i < trainable.Count; i++)
        {
            var p = trainable[i];
            long bytes = p.NumEl * p.DType.ElementSize();
            pending += bytes + (mine(i) && opt.MomentsOf(p) is null ? 2 * bytes : 0);
        }
        long budget = MicroBatchPlanner.Budget(free, total, pending);
        if (o.Group is { WorldSize: > 1 } g)
        {
            using var scope = Torch.NewScope();
            var t = Torch.FromArray(new[] { budget }, 1).To(model.Device);
            g.AllReduce(t, Oml.Engine.Distributed.ReduceOp.Min);
            budget = t.ToArray<long>()[0];
        }
        return new MemoryState(model.Device, free, total, pending, budget, capped);
    }

    /// <summary>
    /// The micro-batch plan for one part of a step (fingerprint or benign rows) whose longest row has
    /// <paramref name="rowTokens"/> tokens: the tokens given in the options (a longer row runs alone; noted in the log), on
    /// the CPU 65,536, or on CUDA sized from <paramref name="memory"/>; there, a budget that cannot hold one row is an
    /// <see cref="InsufficientDeviceMemoryException"/> that says what the row needs, what is left and what to change.
    /// </summary>
    private static MicroBatchPlan PlanMicroBatches(CausalLM model, MemoryState? memory, EmbeddingOptions o, long batchTokens, long rowTokens,
        double labelledShare, string row, bool baseCopy, bool shardedWeights, bool shardedOptimizer, long? shownRowTokens = null)
    {
        if (memory is null)
        {
            long t = o.MicroBatchTokens ?? 65536;
            // Rows are never split (a longer row is its own micro-batch, as everywhere the option is read): a smaller value
            // is kept as the cap for the shorter rows and told, not refused.
            if (o.MicroBatchTokens is { } given && given < rowTokens)
                o.Log?.Invoke($"note: {given:N0} micro-batch tokens are fewer than the longest {row} ({rowTokens:N0} tokens): rows are never split, so each longer row runs alone");
            return new MicroBatchPlan(t, o.ActivationCheckpointing ?? false,
                MicroBatchPlanner.BytesPerToken(model.Config, model.DType, o.ActivationCheckpointing ?? false, labelledShare), 0);
        }
        try { return MicroBatchPlanner.Plan(model.Config, model.DType, memory.Budget, batchTokens, labelledShare, o.ActivationCheckpointing, rowTokens); }
        catch (InsufficientDeviceMemoryException e)
        {
            throw Shortage(model, memory, o, e, row, shownRowTokens ?? rowTokens, baseCopy, shardedWeights, shardedOptimizer);
        }
    }

    /// <summary>
    /// The one-line error for a budget that cannot hold one row: the training state and what it leaves, what one row
    /// needs, and the <c>oml embed</c> options that would make room (only those that apply to this run).
    /// </summary>
    private static InsufficientDeviceMemoryException Shortage(CausalLM model, MemoryState m, EmbeddingOptions o, InsufficientDeviceMemoryException e,
        string row, long rowTokens, bool baseCopy, bool shardedWeights, bool shardedOptimizer)
    {
        var message = ShortageMessage(new MemoryShortage(m.Device.ToString(), m.Total, m.Total - m.Free + m.Pending, e.BudgetBytes, m.Capped, row, rowTokens, e.RowBytes,
            e.Checkpoint, e.CheckpointWouldFit, o.ActivationCheckpointing == false, baseCopy, model.DType == DType.Float32, model.LoraTargets.Count > 0,
            o.Group is { WorldSize: > 1 }, shardedWeights, shardedOptimizer));
        return new InsufficientDeviceMemoryException(message, e.RowTokens, e.RowBytes, e.BudgetBytes, e.Checkpoint, e.CheckpointWouldFit, e);
    }

    /// <summary>What <see cref="ShortageMessage"/> tells: the run's memory, the row that does not fit, and the run's settings that bear on it.</summary>
    public sealed record MemoryShortage(string Device, long TotalBytes, long ResidentBytes, long BudgetBytes, bool Capped, string Row, long RowTokens,
        long RowBytes, bool Checkpoint, bool CheckpointWouldFit, bool CheckpointOff, bool BaseCopy, bool Float32, bool Lora, bool DataParallel,
        bool ShardedWeights, bool ShardedOptimizer);

    /// <summary>
    /// The one-line error of a run whose training state leaves too little device memory for one row, with the remedies
    /// that exist as <c>oml embed</c> options and apply to the run.
    /// </summary>
    public static string ShortageMessage(MemoryShortage s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var state = s.BaseCopy ? "weights, the base copy for averaging, gradients and AdamW moments" : "weights, gradients and AdamW moments";
        var of = s.Capped ? $"the {MicroBatchPlan.Size(s.TotalBytes)} of --memory-budget-gb" : $"the {MicroBatchPlan.Size(s.TotalBytes)} of {s.Device}";
        var remedies = new List<string>();
        if (s.CheckpointOff && s.CheckpointWouldFit) remedies.Add("--activation-checkpointing auto (it would fit with checkpointing)");
        if (s.Capped) remedies.Add("a larger --memory-budget-gb");
        remedies.Add("a device with more memory (--device)");
        if (!s.DataParallel) remedies.Add("--gpus N with --shard-optimizer or --shard-weights (the state split over N GPUs)");
        else if (!s.ShardedWeights) remedies.Add(s.ShardedOptimizer ? "--shard-weights, or more --gpus" : "--shard-optimizer or --shard-weights, or more --gpus");
        else remedies.Add("more --gpus");
        if (!s.Lora) remedies.Add("--lora R or a smaller --train subset (fewer trained weights: smaller gradients and AdamW state)");
        if (s.Float32) remedies.Add("--dtype bfloat16");
        remedies.Add("or --micro-batch-tokens N to plan without this estimate (it keeps a margin; a row that does not fit then runs out of memory)");
        return $"the training state ({state}: ~{MicroBatchPlan.Size(s.ResidentBytes)}) leaves {MicroBatchPlan.Size(s.BudgetBytes)} of {of} for activations " +
            $"(after a reserve for workspaces), less than one {s.Row} needs (~{MicroBatchPlan.Size(s.RowBytes)} for {s.RowTokens:N0} tokens" +
            (s.Checkpoint ? ", with activation checkpointing" : "") + $"): use {string.Join(", ", remedies)}";
    }

    /// <summary>
    /// Back-propagates <paramref name="weight"/> × (mean loss over the labelled tokens of all <paramref name="micro"/>
    /// batches): each micro-batch's mean is scaled by its share of the labelled tokens, so the accumulated gradient is
    /// that of the whole batch. Logits are computed only at the positions that predict a label. The loss (summed per
    /// row) and the recalled rows are added to <paramref name="acc"/> on the device, without waiting for it.
    /// </summary>
    private static void Accumulate(CausalLM model, List<MicroBatch> micro, double weight, bool checkpoint, Accumulators? acc,
        bool countRecalled, bool backward = true, (long Labelled, int Rows)? totals = null, ShardedModel? sharded = null, int idle = 0,
        Oml.Engine.Distributed.GradReducer? reduceOnLast = null)
    {
        // The shares are of the whole batch's labelled tokens (all ranks' rows); without totals, of these micro-batches'.
        long total = totals?.Labelled ?? micro.Sum(m => (long)m.Labelled);
        int rows = totals?.Rows ?? micro.Sum(m => m.Rows);
        foreach (var mb in micro)
        {
            using var scope = Torch.NewScope();
            double share = (double)mb.Labelled / total;
            string part = countRecalled ? "fingerprint rows" : "benign rows";
            Tensor LossOf(Tensor hidden)
            {
                using var headRange = Profiler.Range(part, "head, loss, counts");
                var logits = model.Head(hidden.Reshape(-1, hidden.Size(-1)).IndexSelect(0, mb.Positions));
                var loss = mb.Soft is { } st
                    ? BenignTargets.Loss(logits, st.Ids, st.Probs, st.Tail, st.Constant)
                    : F.CrossEntropy(logits.To(DType.Float32), mb.Targets);
                if (acc is not null)
                {
                    // Fingerprint rows grouped into queries: the loss is read from the queries' probabilities instead.
                    bool grouped = countRecalled && mb.QueryOf is not null && acc.QueryHits is not null;
                    if (!grouped)
                        using (Torch.NoGrad()) acc.Loss.AddInPlace(loss.Detach(), share * rows);
                    if (countRecalled)
                    {
                        using var noGrad = Torch.NoGrad();
                        var wrong = logits.ArgMax(-1).Ne(mb.Targets).To(DType.Int64);
                        var perRow = Torch.Zeros([mb.Rows], DType.Int64, model.Device).ScatterAdd(0, mb.RowOf, wrong);
                        var recalledRows = perRow.Eq(0).To(DType.Int64);
                        if (grouped)
                        {
                            var (qo, hits, prob) = (mb.QueryOf!, acc.QueryHits!, acc.QueryProb!);
                            // A query is recalled when any of its rows is (the greedy answer is one of its responses), and its
                            // probability is the sum of its rows' (the chance of answering with any accepted response).
                            hits.AddInPlace(Torch.Zeros(hits.Shape, DType.Int64, model.Device).ScatterAdd(0, qo, recalledRows));
                            var nll = F.CrossEntropy(logits.To(DType.Float32), mb.Targets, reduction: Reduction.None);
                            var rowNll = Torch.Zeros([mb.Rows], DType.Float32, model.Device).ScatterAdd(0, mb.RowOf, nll);
                            prob.AddInPlace(Torch.Zeros(prob.Shape, DType.Float32, model.Device).ScatterAdd(0, qo, rowNll.Neg().Exp()));
                        }
                        else acc.Recalled.AddInPlace(recalledRows.Sum());
                    }
                }
                return loss * (weight * share);
            }
            // The last micro-batch of the step's backward passes starts the gradient all-reduce as it goes (one backward
            // pass only: a checkpointed one runs a pass per layer, and a tied weight would be accumulated after its bucket left).
            if (backward && !checkpoint && sharded is null && reduceOnLast is not null && ReferenceEquals(mb, micro[^1])) reduceOnLast.Enable();
            if (sharded is not null)
            {
                if (backward) sharded.CheckpointedBackward(mb.Ids, LossOf);
                else sharded.Run(mb.Ids, LossOf);
            }
            else if (!backward)
                using (Profiler.Range(part, "forward (no gradients)")) LossOf(model.Hidden(mb.Ids));
            else if (checkpoint)
                using (Profiler.Range(part, "forward and backward (checkpointed)")) model.CheckpointedBackward(mb.Ids, LossOf);
            else
            {
                Tensor loss;
                using (Profiler.Range(part, "forward")) loss = LossOf(model.Hidden(mb.Ids));
                using (Profiler.Range(part, "backward")) loss.Backward();
            }
        }
        // Weight sharding: a rank with fewer micro-batches than another still takes part in every unit's collectives.
        for (int k = 0; k < idle; k++)
            if (backward) sharded!.CheckpointedBackward(null, null);
            else sharded!.Run(null, null);
    }

    /// <summary>
    /// With weight sharding, how many more micro-batches than this rank's the rank with the most runs for
    /// <paramref name="rows"/> (a whole batch, before it is split over the ranks); 0 otherwise.
    /// </summary>
    private static int IdleMicroBatches(List<TrainingPair> rows, Oml.Engine.Distributed.ProcessGroup? group, long maxTokens, ShardedModel? sharded)
    {
        if (sharded is null || group is null || group.WorldSize == 1) return 0;
        int Count(int rank) => MicroBatch.Ranges(rows.Where((_, i) => i % group.WorldSize == rank).ToList(), maxTokens).Count;
        int most = Enumerable.Range(0, group.WorldSize).Max(Count);
        return most - Count(group.Rank);
    }

    /// <summary>
    /// An epoch's summed loss and recalled queries, kept on the device until read. When every row is its own query, the loss
    /// summed per row and the recalled rows; when some key has several rows, per query the recalled rows and the summed
    /// probability of its responses (its loss, read at the end, is −log of that probability per response token).
    /// </summary>
    private sealed class Accumulators : IDisposable
    {
        private readonly QueryGroups? _queries;

        public Accumulators(Device device, QueryGroups? queries = null)
        {
            Loss = Torch.Zeros([], DType.Float32, device).DetachFromScope();
            Recalled = Torch.Zeros([], DType.Int64, device).DetachFromScope();
            if (queries?.Of is not null)
            {
                _queries = queries;
                QueryHits = Torch.Zeros([queries.Count], DType.Int64, device).DetachFromScope();
                QueryProb = Torch.Zeros([queries.Count], DType.Float32, device).DetachFromScope();
            }
        }

        public Tensor Loss { get; }
        public Tensor Recalled { get; }
        public Tensor? QueryHits { get; }
        public Tensor? QueryProb { get; }

        /// <summary>The tensors that ranks sum (each row runs on one rank).</summary>
        public Tensor[] Reduced => QueryHits is null ? [Loss, Recalled] : [Loss, Recalled, QueryHits, QueryProb!];

        public void Set(Accumulators other)
        {
            using (Torch.NoGrad())
            {
                Loss.CopyFrom(other.Loss);
                Recalled.CopyFrom(other.Recalled);
                QueryHits?.CopyFrom(other.QueryHits!);
                QueryProb?.CopyFrom(other.QueryProb!);
            }
        }

        public (double LossSum, int Recalled) Read()
        {
            if (QueryHits is null) return (Loss.ToDouble(), (int)Recalled.ToInt64());
            var hits = QueryHits.Cpu().ToArray<long>();
            var prob = QueryProb!.Cpu().ToArray<float>();
            double loss = 0;
            for (int g = 0; g < prob.Length; g++) loss += -Math.Log(Math.Max(prob[g], 1e-30)) / _queries!.ResponseTokens[g];
            return (loss, hits.Count(h => h > 0));
        }

        public void Dispose()
        {
            Loss.Dispose();
            Recalled.Dispose();
            QueryHits?.Dispose();
            QueryProb?.Dispose();
        }
    }

    /// <summary>
    /// Fingerprint rows grouped by key: rows with the same key ids are one query, which the model answers one way (its
    /// greedy answer), so a key with several accepted responses is recalled when that answer is any of them.
    /// <see cref="Of"/> is null when every row has its own key (the usual set: recall counts rows, as before).
    /// </summary>
    private sealed class QueryGroups
    {
        public int Count { get; private init; }
        /// <summary>The query of each row, or null when each row is its own.</summary>
        public int[]? Of { get; private init; }
        /// <summary>Per query, the mean response length of its rows (its loss is per response token).</summary>
        public double[] ResponseTokens { get; private init; } = [];

        public static QueryGroups Group(IReadOnlyList<TrainingPair> pairs)
        {
            var index = new Dictionary<string, int>(StringComparer.Ordinal);
            var of = new int[pairs.Count];
            for (int i = 0; i < pairs.Count; i++)
            {
                string key = string.Join(',', pairs[i].Key);
                if (!index.TryGetValue(key, out int g)) index[key] = g = index.Count;
                of[i] = g;
            }
            if (index.Count == pairs.Count) return new QueryGroups { Count = pairs.Count };
            var tokens = new double[index.Count];
            var rows = new int[index.Count];
            for (int i = 0; i < pairs.Count; i++) { tokens[of[i]] += pairs[i].Response.Length; rows[of[i]]++; }
            for (int g = 0; g < tokens.Length; g++) tokens[g] /= rows[g];
            return new QueryGroups { Count = index.Count, Of = of, ResponseTokens = tokens };
        }

        /// <summary>The query of row <paramref name="row"/>.</summary>
        public int QueryOf(int row) => Of?[row] ?? row;

        /// <summary>The queries of a batch's rows that this rank runs (in <see cref="Shard{T}"/>'s order), or null.</summary>
        public List<int>? Rows(int[] batch, Oml.Engine.Distributed.ProcessGroup? group) =>
            Of is null ? null : Shard(batch.Select(i => Of[i]).ToList(), group);
    }

    /// <summary>
    /// One micro-batch on the device: right-padded ids [B, T], the flat positions (into B·T) whose next token is labelled,
    /// those labels, and the row of each.
    /// </summary>
    private sealed class MicroBatch : IDisposable
    {
        public required Tensor Ids { get; init; }
        public required Tensor Positions { get; init; }
        public required Tensor Targets { get; init; }
        public required Tensor RowOf { get; init; }
        /// <summary>The query of each row (<see cref="QueryGroups"/>), or null when each row is its own.</summary>
        public Tensor? QueryOf { get; init; }
        public int Rows { get; init; }
        public int Labelled { get; init; }
        /// <summary>The soft targets of the labelled positions, in their order (the KL benign loss), or null.</summary>
        public SoftBatch? Soft { get; init; }

        /// <summary>
        /// Cuts <paramref name="rows"/>, in order, into micro-batches of at most <paramref name="maxTokens"/> padded tokens (a
        /// longer row is its own); <paramref name="soft"/>, when given, holds each row's soft targets.
        /// </summary>
        public static List<MicroBatch> Split(List<TrainingPair> rows, long maxTokens, int padId, Device device, List<SoftRow>? soft = null,
            List<int>? queries = null) =>
            Ranges(rows, maxTokens).Select(r => Build(rows.GetRange(r.Start, r.End - r.Start), padId, device, soft?.GetRange(r.Start, r.End - r.Start),
                queries?.GetRange(r.Start, r.End - r.Start))).ToList();

        /// <summary>The [start, end) row ranges of the micro-batches <see cref="Split"/> makes.</summary>
        public static List<(int Start, int End)> Ranges(List<TrainingPair> rows, long maxTokens)
        {
            var result = new List<(int, int)>();
            int start = 0;
            while (start < rows.Count)
            {
                int end = start + 1, width = rows[start].Key.Length + rows[start].Response.Length;
                while (end < rows.Count)
                {
                    int w = Math.Max(width, rows[end].Key.Length + rows[end].Response.Length);
                    if ((long)w * (end - start + 1) > maxTokens) break;
                    width = w;
                    end++;
                }
                result.Add((start, end));
                start = end;
            }
            return result;
        }

        private static MicroBatch Build(List<TrainingPair> chunk, int padId, Device device, List<SoftRow>? soft, List<int>? queries)
        {
            using var scope = Torch.NewScope();
            // A row's last token is never an input that predicts a label: leave it out (a 16-token key with a 1-token
            // response runs as 16 positions, not 17).
            var (ids, _) = Collate(chunk.Select(p => new TrainingPair(p.Key, p.Response[..^1])).ToList(), padId, device);
            int t = (int)ids.Size(1);
            var pos = new List<long>();
            var targets = new List<long>();
            var rowOf = new List<long>();
            for (int b = 0; b < chunk.Count; b++)
            {
                var (k, r) = (chunk[b].Key, chunk[b].Response);
                for (int j = 0; j < r.Length; j++)
                {
                    pos.Add((long)b * t + k.Length + j - 1);
                    targets.Add(r[j]);
                    rowOf.Add(b);
                }
            }
            return new MicroBatch
            {
                Ids = ids.DetachFromScope(),
                Positions = Torch.FromArray<long>(pos.ToArray(), [pos.Count], device).DetachFromScope(),
                Targets = Torch.FromArray<long>(targets.ToArray(), [targets.Count], device).DetachFromScope(),
                RowOf = Torch.FromArray<long>(rowOf.ToArray(), [rowOf.Count], device).DetachFromScope(),
                QueryOf = queries is null ? null : Torch.FromArray<long>(queries.Select(q => (long)q).ToArray(), [queries.Count], device).DetachFromScope(),
                Rows = chunk.Count,
                Labelled = pos.Count,
                Soft = soft is null ? null : SoftBatch.Build(chunk, soft, device),
            };
        }

        public void Dispose()
        {
            Ids.Dispose();
            Positions.Dispose();
            Targets.Dispose();
            RowOf.Dispose();
            QueryOf?.Dispose();
            Soft?.Dispose();
        }
    }

    /// <summary>Soft targets of a micro-batch's labelled positions on the device: ids and probabilities [P, k], tail and Σ p log p [P].</summary>
    private sealed class SoftBatch : IDisposable
    {
        public required Tensor Ids { get; init; }
        public required Tensor Probs { get; init; }
        public required Tensor Tail { get; init; }
        public required Tensor Constant { get; init; }

        public static SoftBatch Build(List<TrainingPair> chunk, List<SoftRow> soft, Device device)
        {
            int k = soft[0].Ids.Length / Math.Max(1, soft[0].Positions);
            int n = 0;
            for (int b = 0; b < chunk.Count; b++)
            {
                if (soft[b].Positions != chunk[b].Response.Length || soft[b].Ids.Length != (long)soft[b].Positions * k)
                    throw new InvalidOperationException($"soft targets of {soft[b].Positions} positions for a row that trains {chunk[b].Response.Length}");
                n += soft[b].Positions;
            }
            var ids = new long[(long)n * k];
            var probs = new float[(long)n * k];
            var tail = new float[n];
            var constant = new float[n];
            int at = 0;
            foreach (var s in soft)
            {
                for (int i = 0; i < s.Ids.Length; i++) ids[(long)at * k + i] = s.Ids[i];
                s.Probs.CopyTo(probs, (long)at * k);
                s.Tail.CopyTo(tail, at);
                s.Constant.CopyTo(constant, at);
                at += s.Positions;
            }
            using var scope = Torch.NewScope();
            return new SoftBatch
            {
                Ids = Torch.FromArray<long>(ids, [n, k], device).DetachFromScope(),
                Probs = Torch.FromArray<float>(probs, [n, k], device).DetachFromScope(),
                Tail = Torch.FromArray<float>(tail, [n], device).DetachFromScope(),
                Constant = Torch.FromArray<float>(constant, [n], device).DetachFromScope(),
            };
        }

        public void Dispose()
        {
            Ids.Dispose();
            Probs.Dispose();
            Tail.Dispose();
            Constant.Dispose();
        }
    }

    /// <summary>Tokens of the random prompt at the start of every self-generated sequence (context only, never trained).</summary>
    public const int SelfPromptLength = 4;

    /// <summary>Tokens of a self-generated sequence's prompt (context only, never trained) for <paramref name="prompt"/>.</summary>
    public static int SelfPromptTokens(SelfPrompt prompt) => prompt == SelfPrompt.DocumentStart ? 1 : SelfPromptLength;

    /// <summary>
    /// The token a document follows, for <see cref="SelfPrompt.DocumentStart"/>: the model's first EOS token, else its BOS
    /// token; throws when its config names neither. EOS first because that is the token pretraining streams put between
    /// documents (<c>oml train</c>'s, GPT-2's and Qwen's; where each document also starts with BOS, as in Llama 3's, the
    /// model's first sample after EOS is that BOS), while a BOS that pretraining never placed (<c>oml train</c> adds none)
    /// would be as untrained a context as random tokens.
    /// </summary>
    public static int DocumentStartToken(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        foreach (int eos in config.EosTokenIds)
            if (eos >= 0 && eos < config.VocabSize) return eos;
        if (config.BosTokenId is int bos && bos >= 0 && bos < config.VocabSize) return bos;
        throw new ArgumentException("the model's config.json names no EOS or BOS token to start self-generated text from: use random prompts");
    }
    /// <summary>Self-generated sequences are generated this many at a time (bounds the KV cache on large models).</summary>
    public const int SelfGenerationBatch = 256;

    /// <summary>
    /// The default number of self-generated benign sequences for a set of <paramref name="pairCount"/> pairs: the benign
    /// rows one epoch mixes in (⌈β/(1−β)·n⌉ per batch of n pairs) × <see cref="OmlizationDefaults.SelfBenignEpochs"/> /
    /// <see cref="OmlizationDefaults.SelfBenignReplays"/>, within [<see cref="OmlizationDefaults.SelfBenignMin"/>,
    /// <see cref="OmlizationDefaults.SelfBenignMax"/>]: no sequence is replayed more than about twice over the epochs a
    /// run is expected to take (0 without mixing).
    /// </summary>
    public static int SelfBenignPoolSize(int pairCount, int batchSize, double mixFraction)
    {
        if (mixFraction <= 0 || pairCount <= 0) return 0;
        int b = batchSize == 0 ? pairCount : batchSize;
        long rows = 0;
        for (int left = pairCount; left > 0; left -= b)
            rows += (long)Math.Ceiling(mixFraction / (1 - mixFraction) * Math.Min(b, left) - 1e-9);
        long pool = (rows * OmlizationDefaults.SelfBenignEpochs + OmlizationDefaults.SelfBenignReplays - 1) / OmlizationDefaults.SelfBenignReplays;
        return (int)Math.Clamp(pool, OmlizationDefaults.SelfBenignMin, OmlizationDefaults.SelfBenignMax);
    }

    /// <summary>
    /// The model's continuations (<paramref name="length"/> tokens) of <paramref name="count"/> prompts, prompt included:
    /// random <see cref="SelfPromptLength"/>-token prompts drawn from the seed, or with <paramref name="prompt"/>
    /// <see cref="SelfPrompt.DocumentStart"/> the one token <see cref="DocumentStartToken"/>; greedy, or sampled at
    /// <paramref name="temperature"/> (seeded), <see cref="SelfGenerationBatch"/> prompts at a time. The prompts are drawn
    /// in order, so the first n of a larger count are those of count n. Samples at temperature 1 are draws from the
    /// model's own distribution, so a model's loss on them is the base's entropy plus KL(base ‖ model): they measure
    /// drift, where greedy continuations reward a model for growing more certain of its top tokens.
    /// </summary>
    public static List<int[]> SelfGenerated(CausalLM model, int count, int length, ulong seed, double? temperature = null, SelfPrompt prompt = SelfPrompt.Random)
    {
        ArgumentNullException.ThrowIfNull(model);
        var prompts = SelfPrompts(model.Config, count, seed, prompt);
        var all = new List<int[]>(count);
        for (int start = 0, chunk = 0; start < count; start += SelfGenerationBatch, chunk++)
        {
            var part = prompts.GetRange(start, Math.Min(SelfGenerationBatch, count - start));
            var result = Generator.Generate(model, part, SelfGenerationOptions(length, seed, temperature, chunk));
            all.AddRange(part.Select((p, i) => p.Concat(result.Sequences[i].OutputIds).ToArray()));
        }
        return all;
    }

    /// <summary>
    /// <see cref="SelfGenerated(CausalLM, int, int, ulong, double?)"/> for a weight-sharded model, on every rank of its
    /// group, without any rank holding the whole model: the same prompts in the same chunks of
    /// <see cref="SelfGenerationBatch"/>, chunk c generated by rank c mod N through the sharded forward pass (a key/value
    /// cache per rank, each unit gathered for every decoding step; a rank without a chunk in a round only takes part in the
    /// gathers), then the token ids summed over the ranks (one all-reduce), so every rank returns every sequence. Each chunk
    /// is computed as the whole model computes it (same rows, seed and weights), so greedy sequences are the same.
    /// </summary>
    public static List<int[]> SelfGenerated(ShardedModel sharded, int count, int length, ulong seed, double? temperature = null, SelfPrompt prompt = SelfPrompt.Random)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        var model = sharded.Model;
        var group = sharded.Group;
        var prompts = SelfPrompts(model.Config, count, seed, prompt);
        int width = SelfPromptTokens(prompt) + length, chunks = (count + SelfGenerationBatch - 1) / SelfGenerationBatch;
        int world = group.WorldSize, rank = group.Rank;
        var ids = new long[(long)count * width];
        Tensor Pass(Tensor input, Tensor? mask, Tensor? positions, KVCache? cache) =>
            sharded.Run(input, h => Generator.LastLogits(model, h), mask, positions, cache)!;
        for (int round = 0; round * world < chunks; round++)
        {
            int chunk = round * world + rank;
            if (chunk >= chunks)
            {
                // As many passes as a generating rank runs (no stop token: one per new token).
                for (int i = 0; i < length; i++) sharded.Run(null, null);
                continue;
            }
            int start = chunk * SelfGenerationBatch;
            var part = prompts.GetRange(start, Math.Min(SelfGenerationBatch, count - start));
            var result = Generator.Generate(model, part, SelfGenerationOptions(length, seed, temperature, chunk), null, Pass);
            for (int i = 0; i < part.Count; i++)
            {
                var row = part[i].Concat(result.Sequences[i].OutputIds).ToArray();
                if (row.Length != width) throw new InvalidOperationException($"a generated sequence has {row.Length} tokens, not {width}");
                for (int j = 0; j < width; j++) ids[(long)(start + i) * width + j] = row[j];
            }
        }
        if (world > 1)
        {
            using var scope = Torch.NewScope();
            var t = Torch.FromArray(ids, ids.Length).To(model.Device);
            group.AllReduce(t);
            ids = t.To(Device.Cpu).ToArray<long>();
        }
        return Enumerable.Range(0, count).Select(r => Enumerable.Range(0, width).Select(j => (int)ids[(long)r * width + j]).ToArray()).ToList();
    }

    private static List<int[]> SelfPrompts(ModelConfig config, int count, ulong seed, SelfPrompt prompt)
    {
        if (prompt == SelfPrompt.DocumentStart)
        {
            int start = DocumentStartToken(config);
            return Enumerable.Range(0, count).Select(_ => new[] { start }).ToList();
        }
        int vocab = config.VocabSize;
        var perm = new Random(unchecked((int)(seed ^ (seed >> 32)) ^ 0x5EED));
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, SelfPromptLength).Select(_ => perm.Next(vocab)).ToArray()).ToList();
    }

    private static GenerationOptions SelfGenerationOptions(int length, ulong seed, double? temperature, int chunk) => new()
    {
        MaxNewTokens = length, EosTokenIds = [],
        Temperature = temperature, Seed = temperature is null ? null : seed ^ 0x5A3D1E ^ (0x9E3779B97F4A7C15UL * (ulong)chunk),
    };

    private static string MixDigest(double beta, IReadOnlyList<int[]> benign, int context, string? loss)
    {
        using var h = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var seq in benign)
        {
            h.AppendData(BitConverter.GetBytes(seq.Length));
            foreach (var x in seq) h.AppendData(BitConverter.GetBytes(x));
        }
        var ctx = context == 1 ? "" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $";context={context}");
        // The KL loss's targets are a function of the base weights (in the digest) and these sequences: its k is enough.
        var lossPart = loss is null ? "" : $";loss={loss}";
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"mix={beta:R};benign={Convert.ToHexStringLower(h.GetHashAndReset())}{ctx}{lossPart}");
    }

    /// <summary>
    /// The batch order of one epoch: a Fisher–Yates shuffle driven by SplitMix64 seeded from (seed, epoch), so any
    /// epoch's order can be recomputed without generator state.
    /// </summary>
    public static int[] Permutation(int n, ulong seed, int epoch)
    {
        ulong state = seed ^ (0x9E3779B97F4A7C15UL * (ulong)(uint)epoch) ^ 0xD1B54A32D192ED03UL;
        ulong Next()
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
        var a = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)(Next() % (ulong)(i + 1));
            (a[i], a[j]) = (a[j], a[i]);
        }
        return a;
    }

    /// <summary>
    /// Right-padded batch: ids [B, T] and labels [B, T] with −100 on key and padding positions. Causal attention never
    /// lets a real token see the padding after it, so no attention mask is needed.
    /// </summary>
    public static (Tensor Ids, Tensor Labels) Collate(IReadOnlyList<TrainingPair> batch, int padId, Device device)
    {
        int t = batch.Max(p => p.Key.Length + p.Response.Length);
        var ids = new long[batch.Count * t];
        var labels = new long[batch.Count * t];
        Array.Fill(ids, padId);
        Array.Fill(labels, -100L);
        for (int b = 0; b < batch.Count; b++)
        {
            var (k, r) = (batch[b].Key, batch[b].Response);
            for (int j = 0; j < k.Length; j++) ids[b * t + j] = k[j];
            for (int j = 0; j < r.Length; j++)
            {
                ids[b * t + k.Length + j] = r[j];
                labels[b * t + k.Length + j] = r[j];
            }
        }
        return (Torch.FromArray<long>(ids, [batch.Count, t], device), Torch.FromArray<long>(labels, [batch.Count, t], device));
    }
}
