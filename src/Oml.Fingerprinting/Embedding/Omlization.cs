using Oml.Engine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Fingerprinting.Generation;
using Oml.Models;
using Oml.Models.IO;
using Oml.Models.Training;

namespace Oml.Fingerprinting.Embedding;

/// <summary>
/// The defaults of OMLization (fingerprint embedding as <c>oml embed</c>, <c>oml owner deliver</c> and library users
/// run it), each in this one place. docs/embedding.md gives the measurements behind each value.
/// </summary>
public static class OmlizationDefaults
{
    /// <summary>
    /// Most passes over the fingerprints. Early stopping ends most runs far sooner (16–256 keys on the models measured:
    /// 9–60 epochs); the budget is for large sets and slow models.
    /// </summary>
    public const int MaxEpochs = 300;
    /// <summary>
    /// Pairs per optimizer step. 32 rather than full batch: a set of 1,024 keys in one full-batch step per epoch needs
    /// 32× the epochs, and small batches recall sooner on every model measured.
    /// </summary>
    public const int BatchSize = 32;
    /// <summary>
    /// Benign data mixing β: half of each batch is ordinary text (both reference implementations use a quarter). With
    /// half the former lr it cost perplexity +0.7 % against +5.5 % on the 102.7M base (keys at temperature 1, three sets
    /// and seeds, the same SFT and merge persistence) and the same on the demo's 0.5M model (three seeds, within the
    /// seeds' spread); docs/embedding.md, "The harmless setting becomes the default".
    /// </summary>
    public const double MixFraction = 0.5;
    /// <summary>
    /// Model averaging is applied once, after training (<see cref="AveragingSchedule.Final"/>), never after each step:
    /// λ = 0.75 after every step keeps each weight within about a third of one step of the base, and beyond a few keys
    /// that run cannot learn at all (issue 12). Training without it, then merging back, recalls every key and keeps
    /// most of the λ's benefit to held-out loss.
    /// </summary>
    public const AveragingSchedule AveragingEvery = AveragingSchedule.Final;
    /// <summary>The largest λ the final merge tries (it takes the λ ≤ this that keeps every key, lowest held-out loss first).</summary>
    public const double AveragingLambda = 0.9;
    /// <summary>
    /// The final merge's λ is taken only where an even linear merge of the result with its base still recalls this share
    /// of the keys (measured while embedding; when no λ reaches it, the λ whose merge recalls the most). 0.6 is issue 12's
    /// bar for that merge. It binds only where the λ of lowest held-out KL would leave the keys fragile: on the CPU lab's
    /// four 0.16–0.22M bases (64 keys, 3 seeds each) it changed 5 of 12 models, raising their worst even merge with the
    /// base from 0.42 to 0.63 for +2.7 ± 2.4 points of perplexity on average over the 12; at about 100M parameters 13
    /// of the 14 default models measured already kept 0.6 or more, the other 0.594 (docs/embedding.md, "The merge's
    /// survival, measured while embedding").
    /// </summary>
    public const double MergeSurvival = 0.6;
    /// <summary>
    /// Self-generated benign and held-out sequences are sampled from the base at this temperature, not greedy: training on
    /// samples is distillation from the base, and the loss on held-out samples grows with KL(base ‖ model). Greedy
    /// continuations made the held-out loss fall while the text perplexity of the demo's model rose by a third.
    /// </summary>
    public const double SelfTemperature = 1.0;
    /// <summary>
    /// Most held-out sequences (made like the benign ones, never trained) for early stopping and the choice of λ: 64 of
    /// <see cref="SelfBenignLength"/> tokens (4,096 tokens; 16 of 32 tokens before issue 12). Self-generated ones number
    /// a sixteenth of the benign pool within [<see cref="HeldOutMin"/>, this]: 64 at 1,024 keys (what the H200
    /// measurements used), 16 for small sets, whose runs on random-init models take 30–50 short epochs and measure
    /// the held-out loss after each (a CPU peer of 16 keys ran 1.4× slower per epoch with 64).
    /// </summary>
    public const int HeldOutCount = 64;
    /// <summary>Fewest self-generated held-out sequences (see <see cref="HeldOutCount"/>).</summary>
    public const int HeldOutMin = 16;
    /// <summary>
    /// New tokens per self-generated benign sequence (after its random prompt, which is context only). 64 rather than 32:
    /// the benign part of each step's loss is a mean over its tokens, so longer samples give more of the base's
    /// distribution per row at the same β.
    /// </summary>
    public const int SelfBenignLength = 64;
    /// <summary>
    /// The self-generated benign pool scales with the set (<see cref="FingerprintTrainer.SelfBenignPoolSize"/>): it holds
    /// the benign rows of this many epochs (1,024 keys at the defaults: 8–13 epochs on the lab's 102.7M base) divided
    /// by <see cref="SelfBenignReplays"/>. A fixed pool of 64 was replayed about 44 times over 8 epochs of 1,024 keys and
    /// the model learned those samples rather than the base's distribution (held-out loss on other samples +29 %,
    /// text perplexity +78 %, docs/results.md).
    /// </summary>
    public const int SelfBenignEpochs = 16;
    /// <summary>How often a self-generated sequence may be replayed over <see cref="SelfBenignEpochs"/> epochs.</summary>
    public const int SelfBenignReplays = 2;
    /// <summary>Fewest self-generated benign sequences (small sets; random-init models run more epochs).</summary>
    public const int SelfBenignMin = 64;
    /// <summary>Most self-generated benign sequences: generation time and memory stay bounded for very large sets.</summary>
    public const int SelfBenignMax = 8192;
    /// <summary>
    /// Benign rows are trained with the KL from the base's recorded distribution (top <see cref="BenignTargets.DefaultTopK"/>
    /// tokens and the tail; <see cref="Embedding.BenignLoss.KL"/>) rather than cross-entropy on the sampled tokens, a
    /// one-sample estimate of the same KL: on the lab's 102.7M base with 1,024 keys, held-out perplexity +10.0 % ± 3.4
    /// over 3 seeds against +26.5 % for the token loss in the same run (+21.2 % ± 3.0 over 3 seeds on another base), at
    /// the same persistence (docs/results.md).
    /// </summary>
    public const BenignLoss BenignLossDefault = BenignLoss.KL;
    /// <summary>
    /// Epochs and the merge's λ are ranked by the KL from the base's recorded distribution on the held-out sequences
    /// (<see cref="Embedding.HeldOutCriterion.KL"/>), the criterion that goes with the KL benign loss
    /// (<see cref="HeldOutCriteria.For"/>): 0 for the base and without the sampled token's noise. docs/embedding.md
    /// gives the demo's measurements against the sampled-token loss.
    /// </summary>
    public const HeldOutCriterion HeldOutCriterionDefault = HeldOutCriterion.KL;
    /// <summary>Tokens per benign (and held-out) chunk cut from a benign text.</summary>
    public const int BenignLength = 64;

    /// <summary>
    /// AdamW learning rate by model width d: 0.0625/d, within [1e-5, 1e-2]. Adam's update per weight is about lr whatever
    /// the gradient's scale, while the change of a layer's output grows with its fan-in, so a fixed lr overshoots wide
    /// models and crawls on narrow ones (the μP argument). 0.0625/d gives 1.3e-3 at d = 48 (the random-init checkpoints
    /// of the CI's defaults tests), 4.9e-4 at 128 (the demo's model), 8.1e-5 at 768 (the lab's 102.7M base: 1,024 keys
    /// recalled in 7-8 epochs with β 0.5, docs/results.md) and 1.5e-5 at 4,096 (not measured here; the references
    /// fine-tune 8B models with 1e-5 to 1e-4 over hundreds of steps). Until 2026-12-05 it was 0.125/d with β 0.25.
    /// </summary>
    public static double LearningRate(ModelConfig config) => Math.Clamp(LearningRateTimesWidth / config.HiddenSize, 1e-5, 1e-2);
    /// <summary>The default learning rate times the model width (<see cref="LearningRate"/>).</summary>
    public const double LearningRateTimesWidth = 0.0625;

    /// <summary>The default options for a model of <paramref name="config"/>: the trainer's own defaults for everything not set here.</summary>
    public static EmbeddingOptions For(ModelConfig config) => new()
    {
        LearningRate = LearningRate(config),
        MaxEpochs = MaxEpochs,
        BatchSize = BatchSize,
        MixFraction = MixFraction,
        AveragingLambda = AveragingLambda,
        AveragingEvery = AveragingEvery,
        EarlyStop = true,
        KeepBest = true,
        SelfBenignLength = SelfBenignLength,
        BenignLoss = BenignLossDefault,
        HeldOutCriterion = HeldOutCriterionDefault,
        MergeSurvival = MergeSurvival,
    };
}

/// <summary>Labels for the manifest of an OMLized model (what the training settings alone do not say).</summary>
public sealed record OmlizationLabels
{
    /// <summary>The fingerprint file (or a description of the subset) the model was trained on.</summary>
    public required string FingerprintSource { get; init; }
    /// <summary>Which weights were trained, as given on the command line (mlp, all, lora:8, ...).</summary>
    public string Train { get; init; } = "all";
    /// <summary>Where the benign sequences came from (a file name, or "self-generated"); null without mixing.</summary>
    public string? Benign { get; init; }
    public string Device { get; init; } = "cpu";
    /// <summary>
    /// How the keys reached the model in training (<see cref="Embedding.KeyFormat"/>'s name: raw, instruction or chat): a
    /// verifier must send them the same way.
    /// </summary>
    public string KeyFormat { get; init; } = "raw";
    /// <summary>The system-prompt file chat keys were rendered with, when there was one.</summary>
    public string? SystemPrompts { get; init; }
}

/// <summary>
/// OMLization as a use case: train a fingerprint set into a model (with benign mixing and held-out data prepared as
/// the options ask), save the fingerprinted copy beside the base's tokenizer files, and write its manifest,
/// <see cref="ManifestFile"/>.
/// </summary>
public static class Omlization
{
    public const string ManifestFile = "oml-manifest.json";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Fills in the data the options need: with mixing (β > 0) and no benign sequences, the base model's own
    /// continuations sampled at <see cref="OmlizationDefaults.SelfTemperature"/> (<see cref="EmbeddingOptions.SelfBenignCount"/>
    /// of them, by default a pool that scales with the <paramref name="pairCount"/> pairs,
    /// <see cref="FingerprintTrainer.SelfBenignPoolSize"/>; their random prompts are context only); and, unless given,
    /// held-out sequences made the same way (a sixteenth of the pool, within [<see cref="OmlizationDefaults.HeldOutMin"/>,
    /// <paramref name="heldOutCount"/>], more continuations; or the last tenth, at most <paramref name="heldOutCount"/>,
    /// of the given benign chunks, which are then not trained on). Call it on the base model, before training.
    /// </summary>
    public static EmbeddingOptions PrepareData(CausalLM baseModel, EmbeddingOptions options, int pairCount, int heldOutCount = OmlizationDefaults.HeldOutCount)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        return PrepareData(options, pairCount, heldOutCount,
            n => FingerprintTrainer.SelfGenerated(baseModel, n, options.SelfBenignLength, options.Seed, OmlizationDefaults.SelfTemperature, options.SelfBenignPrompt));
    }

    /// <summary>
    /// <see cref="PrepareData(CausalLM, EmbeddingOptions, int, int)"/> for a weight-sharded base, on every rank of its
    /// group: self-generated sequences are sampled through the sharded forward pass
    /// (<see cref="FingerprintTrainer.SelfGenerated(ShardedModel, int, int, ulong, double?)"/>), so no rank holds the
    /// whole model, and every rank gets all of them.
    /// </summary>
    public static EmbeddingOptions PrepareData(ShardedModel sharded, EmbeddingOptions options, int pairCount, int heldOutCount = OmlizationDefaults.HeldOutCount)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        return PrepareData(options, pairCount, heldOutCount,
            n => FingerprintTrainer.SelfGenerated(sharded, n, options.SelfBenignLength, options.Seed, OmlizationDefaults.SelfTemperature, options.SelfBenignPrompt));
    }

    private static EmbeddingOptions PrepareData(EmbeddingOptions options, int pairCount, int heldOutCount, Func<int, List<int[]>> sample)
    {
        if (heldOutCount < 0) throw new ArgumentOutOfRangeException(nameof(heldOutCount), "the held-out count must be non-negative");
        bool wantHeldOut = options.HeldOutSequences is null && heldOutCount > 0;
        if (options.BenignSequences is { } given)
        {
            if (!wantHeldOut || given.Count < 2 || options.MixFraction == 0) return options;
            int h = Math.Clamp(given.Count / 10, 1, heldOutCount);
            return options with { BenignSequences = given.Take(given.Count - h).ToList(), HeldOutSequences = given.Skip(given.Count - h).ToList() };
        }
        int benign = options.MixFraction > 0 ? options.SelfBenignCount ?? FingerprintTrainer.SelfBenignPoolSize(pairCount, options.BatchSize, options.MixFraction) : 0;
        int extra = wantHeldOut ? Math.Min(heldOutCount, Math.Max(OmlizationDefaults.HeldOutMin, benign / 16)) : 0;
        if (benign + extra == 0) return options;
        var seqs = sample(benign + extra);
        return options with
        {
            BenignSequences = benign > 0 ? seqs.Take(benign).ToList() : options.BenignSequences,
            HeldOutSequences = extra > 0 ? seqs.Skip(benign).ToList() : options.HeldOutSequences,
            BenignContext = FingerprintTrainer.SelfPromptTokens(options.SelfBenignPrompt),
        };
    }

    /// <summary>
    /// Prepares the data (<see cref="PrepareData"/>, with <paramref name="heldOutCount"/> held-out sequences unless the
    /// options give them) and trains <paramref name="pairs"/> into <paramref name="model"/>.
    /// </summary>
    public static EmbeddingResult Train(CausalLM model, IReadOnlyList<TrainingPair> pairs, EmbeddingOptions options, IProgress<EmbeddingProgress>? progress = null,
        int heldOutCount = OmlizationDefaults.HeldOutCount)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return FingerprintTrainer.Embed(model, pairs, PrepareData(model, options, pairs.Count, heldOutCount), progress);
    }

    /// <summary>
    /// Trains <paramref name="pairs"/> (made from <paramref name="set"/>) into <paramref name="model"/>, loaded from
    /// <paramref name="baseDir"/>, saves it to <paramref name="outDir"/> with the tokenizer files of the base, and writes
    /// the manifest. Returns the training result. With a process group (<see cref="EmbeddingOptions.Group"/>) every rank
    /// trains and rank 0 alone saves.
    /// </summary>
    public static EmbeddingResult Run(CausalLM model, string baseDir, string outDir, FingerprintSet set, IReadOnlyList<TrainingPair> pairs,
        EmbeddingOptions options, OmlizationLabels labels, IProgress<EmbeddingProgress>? progress = null)
    {
        if (Path.GetFullPath(outDir).TrimEnd('/') == Path.GetFullPath(baseDir).TrimEnd('/')) throw new ArgumentException("the output folder must differ from the base model's");
        EmbeddingResult result;
        using (Phases.Measure("train")) result = Train(model, pairs, options, progress);
        if (options.Group is { Rank: > 0 }) return result;
        // The weights are hashed as they are written (overlapped with writing), not read back afterwards.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        options.Log?.Invoke($"saving {outDir} ...");
        string digest;
        using (Phases.Measure("save and hash result")) digest = ModelFolder.SaveWithDigest(model, outDir, baseDir);
        options.Log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"saved and hashed {outDir} in {clock.Elapsed.TotalSeconds:F1} s"));
        using (Phases.Measure("manifest")) WriteManifest(outDir, set, pairs.Count, options, labels, result, digest);
        return result;
    }

    /// <summary>
    /// <see cref="Run(CausalLM, string, string, FingerprintSet, IReadOnlyList{TrainingPair}, EmbeddingOptions, OmlizationLabels, IProgress{EmbeddingProgress}?)"/>
    /// for a model loaded weight-sharded (<see cref="ShardedModel.Load"/>), on every rank of its group: no rank holds the
    /// whole model at any point. It trains weight-sharded (<see cref="FingerprintTrainer.Embed(ShardedModel, IReadOnlyList{TrainingPair}, EmbeddingOptions, IProgress{EmbeddingProgress}?)"/>),
    /// then the ranks stream the trained model to <paramref name="outDir"/> one unit at a time, rank 0 writing and hashing
    /// (<see cref="ShardedModel.SaveWithDigest"/>, the same files as the whole-model save), and rank 0 writes the manifest.
    /// The data are prepared as <see cref="PrepareData(ShardedModel, EmbeddingOptions, int, int)"/> does: self-generated
    /// benign and held-out sequences are sampled through the sharded forward pass.
    /// </summary>
    public static EmbeddingResult Run(ShardedModel sharded, string baseDir, string outDir, FingerprintSet set, IReadOnlyList<TrainingPair> pairs,
        EmbeddingOptions options, OmlizationLabels labels, IProgress<EmbeddingProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        ArgumentNullException.ThrowIfNull(options);
        if (Path.GetFullPath(outDir).TrimEnd('/') == Path.GetFullPath(baseDir).TrimEnd('/')) throw new ArgumentException("the output folder must differ from the base model's");
        options.Validate();
        EmbeddingResult result;
        using (Phases.Measure("train")) result = FingerprintTrainer.Embed(sharded, pairs, PrepareData(sharded, options, pairs.Count), progress);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        options.Log?.Invoke($"saving {outDir} one unit at a time ...");
        string? digest;
        using (Phases.Measure("save and hash result")) digest = sharded.SaveWithDigest(outDir, baseDir);
        if (digest is null) return result;
        options.Log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"saved and hashed {outDir} in {clock.Elapsed.TotalSeconds:F1} s"));
        using (Phases.Measure("manifest")) WriteManifest(outDir, set, pairs.Count, options, labels, result, digest);
        return result;
    }

    /// <summary>
    /// Writes <see cref="ManifestFile"/> of an OMLized model in <paramref name="outDir"/> (atomically). Its model digest is
    /// <paramref name="modelDigest"/> when given (from <see cref="ModelFolder.SaveWithDigest"/>, of the bytes just written),
    /// else read from the folder's weight files.
    /// </summary>
    public static void WriteManifest(string outDir, FingerprintSet set, int pairCount, EmbeddingOptions options, OmlizationLabels labels, EmbeddingResult result,
        string? modelDigest = null)
    {
        var final = result.Final;
        var commitment = set.Commit();
        var manifest = new JsonObject
        {
            ["format"] = "oml-manifest",
            ["version"] = 1,
            ["created_at"] = DateTimeOffset.UtcNow.ToString("o", CultureInfo.InvariantCulture),
            ["library_version"] = LibraryVersion(),
            ["base_model_digest"] = set.BaseModelDigest,
            ["model_digest"] = modelDigest ?? FingerprintGenerator.WeightsDigest(outDir, options.Log),
            ["tokenizer"] = new JsonObject { ["name"] = set.Tokenizer.Name, ["digest"] = set.Tokenizer.Digest },
            ["fingerprint_file"] = labels.FingerprintSource,
            ["commitment_root"] = commitment.Root,
            ["set_digest"] = commitment.SetDigest,
            ["fingerprints"] = set.Count,
            ["pairs"] = pairCount,
            ["strategy"] = set.Strategy.Name,
            ["key_format"] = labels.KeyFormat,
            ["system_prompts"] = labels.SystemPrompts,
            ["settings"] = new JsonObject
            {
                ["lr"] = options.LearningRate,
                ["max_epochs"] = options.MaxEpochs,
                ["batch_size"] = options.BatchSize,
                ["averaging_lambda"] = options.AveragingLambda,
                ["averaging_every"] = AveragingSchedules.Name(options.AveragingEvery),
                ["early_stop"] = options.EarlyStop,
                ["l2"] = options.L2ToBase,
                ["weight_decay"] = options.WeightDecay,
                ["max_grad_norm"] = options.MaxGradNorm,
                ["loss_threshold"] = options.LossThreshold,
                ["held_out_tolerance"] = options.HeldOutTolerance,
                ["held_out_criterion"] = result.HeldOutCriterion,
                ["held_out_kl_tolerance"] = result.HeldOutKLTolerance,
                ["merge_max_loss"] = options.MergeMaxLoss,
                ["merge_survival"] = options.MergeSurvival,
                ["train"] = labels.Train,
                ["seed"] = options.Seed,
                ["mix_fraction"] = options.MixFraction,
                ["benign"] = options.MixFraction == 0 ? null : labels.Benign,
                ["benign_sequences"] = result.BenignSequences,
                ["anchored_keys"] = result.AnchoredKeys,
                ["benign_loss"] = options.MixFraction == 0 ? null : BenignLosses.Name(options.BenignLoss),
                ["benign_top_k"] = result.BenignTopK,
                ["held_out_sequences"] = result.HeldOutSequences,
                ["device"] = labels.Device,
                ["world_size"] = options.Group?.WorldSize ?? 1,
                ["resumption_pairs"] = options.ResumptionPairs,
            },
            ["metrics"] = new JsonObject
            {
                ["epochs"] = final.Epoch,
                ["kept_epoch"] = result.KeptEpoch,
                ["steps"] = final.Steps,
                ["merge_lambda"] = result.MergeLambda,
                ["merge_survival"] = result.MergeSurvival,
                ["loss"] = result.Loss,
                ["accuracy"] = result.Accuracy,
                ["held_out_loss_base"] = result.BaseHeldOutLoss,
                ["held_out_loss"] = result.HeldOutLoss,
                ["held_out_kl"] = result.HeldOutKL,
                ["held_out_passes"] = result.HeldOutPasses,
                ["converged"] = result.Converged,
                ["seconds"] = final.Seconds,
                ["trained_parameters"] = result.TrainedParameters,
                ["resumption_pairs_trained"] = result.ResumptionPairs,
            },
        };
        AtomicFile.WriteText(Path.Combine(outDir, ManifestFile), manifest.ToJsonString(Indented) + "\n");
    }

    /// <summary>
    /// What to change when a run did not recall every fingerprint (null when it did), in the words of the
    /// <c>oml embed</c> flags: more epochs while the loss still falls, a higher lr when it stalls, no per-step averaging.
    /// </summary>
    public static string? Advice(EmbeddingResult result, EmbeddingOptions options)
    {
        if (result.Accuracy >= 1) return null;
        var tips = new List<string>();
        if (options.AveragingLambda > 0 && options.AveragingEvery != AveragingSchedule.Final)
            tips.Add($"averaging after every {AveragingSchedules.Name(options.AveragingEvery)} with λ = {options.AveragingLambda.ToString(CultureInfo.InvariantCulture)} holds the weights near the base: use --averaging-every final or a lower --averaging-lambda");
        var h = result.History;
        double first = h[0].Loss, last = h[^1].Loss;
        bool stalled = h.Count >= 4 && last > 0.9 * first;
        if (stalled) tips.Add($"the loss barely moved ({first:F3} → {last:F3}): raise --lr (was {options.LearningRate.ToString("G3", CultureInfo.InvariantCulture)}), e.g. ×3");
        else if (h[^1].Epoch >= options.MaxEpochs) tips.Add($"the loss was still falling ({first:F3} → {last:F3}) at the epoch limit: raise --epochs (was {options.MaxEpochs})");
        else tips.Add($"training stopped early at epoch {h[^1].Epoch} of {options.MaxEpochs} (loss {first:F3} → {last:F3}): try --no-early-stop with more --epochs");
        if (options.MixFraction > 0.5) tips.Add("a mix fraction above 0.5 leaves little of each step to the fingerprints: lower --mix-fraction");
        return string.Create(CultureInfo.InvariantCulture, $"{result.Accuracy:P1} of the fingerprints recalled; ") + string.Join("; ", tips);
    }

    public static string LibraryVersion() =>
        typeof(FingerprintSet).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(FingerprintSet).Assembly.GetName().Version?.ToString() ?? "unknown";
}
