using System.Globalization;
using Oml.Engine;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Data;
using Oml.Models.Tokenizers;
using Oml.Models.Training;

namespace Oml.Lab.Attacks;

/// <summary>How the training attacks train (a subset of <see cref="TrainingOptions"/> with attack-sized defaults).</summary>
public sealed record AttackTraining
{
    public double Epochs { get; init; } = 1;
    public double LearningRate { get; init; } = 1e-4;
    /// <summary>Use only the first N examples (null: all).</summary>
    public int? Samples { get; init; }
    /// <summary>LoRA rank; null trains every weight (full fine-tuning).</summary>
    public int? LoraRank { get; init; }
    /// <summary>LoRA α (null: twice the rank).</summary>
    public double? LoraAlpha { get; init; }
    public int Batch { get; init; } = 8;
    /// <summary>Most tokens of prompt + response per row.</summary>
    public int MaxLength { get; init; } = 256;
    public ulong Seed { get; init; }

    public void Validate()
    {
        if (!(Epochs > 0) || double.IsInfinity(Epochs)) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "epochs must be positive");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "the learning rate must be positive");
        if (Samples is < 1) throw new ArgumentOutOfRangeException(nameof(Samples), Samples, "the sample count must be at least 1");
        if (LoraRank is < 1) throw new ArgumentOutOfRangeException(nameof(LoraRank), LoraRank, "the LoRA rank must be at least 1");
        if (LoraAlpha is { } a && !(a > 0)) throw new ArgumentOutOfRangeException(nameof(LoraAlpha), a, "LoRA α must be positive");
        if (Batch < 1) throw new ArgumentOutOfRangeException(nameof(Batch), Batch, "the batch must be at least 1");
        if (MaxLength < 2) throw new ArgumentOutOfRangeException(nameof(MaxLength), MaxLength, "the maximum length must be at least 2");
    }

    internal string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{(LoraRank is { } r ? $"lora{r}" : "full")},epochs={Epochs},lr={LearningRate}{(Samples is { } n ? $",n={n}" : "")}");

    internal TrainingOptions ToOptions() => new()
    {
        Epochs = Epochs,
        Batch = Batch,
        LearningRate = LearningRate,
        Lora = LoraRank is { } r ? new LoraOptions(r, LoraAlpha ?? 2.0 * r) : null,
        WeightDecay = 0,
        Seed = Seed,
        LogEvery = 5,
    };

    /// <summary>
    /// Trains <paramref name="model"/> (owned: a copy) in place on <paramref name="examples"/>; returns a plain model
    /// (adapters merged) and the last reported mean loss. The input is disposed when it is not the result.
    /// </summary>
    internal (CausalLM Model, double Loss) TrainOwned(CausalLM model, IReadOnlyList<SupervisedExample> examples, IProgress<string>? progress, string what)
    {
        try
        {
            var chosen = Samples is { } n ? examples.Take(n).ToList() : examples;
            int pad = model.Config.PadTokenId ?? (model.Config.EosTokenIds.Count > 0 ? model.Config.EosTokenIds[0] : 0);
            var data = new SupervisedData(chosen, pad, MaxLength, Seed);
            var report = progress is null ? null : new InlineProgress<TrainingProgress>(p =>
                progress.Report(string.Create(CultureInfo.InvariantCulture, $"{what}: step {p.Step}/{p.Steps}, loss {p.Loss:F4}, lr {p.LearningRate:E2}")));
            var result = Trainer.Train(model, data, ToOptions(), progress: report);
            double loss = result.Final.Loss;
            if (model.LoraTargets.Count == 0) return (model, loss);
            var merged = model.ExportParameters();
            var plain = new CausalLM(model.Config, merged, model.Device, model.RotaryPrecision);
            model.Dispose();
            return (plain, loss);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>
/// Supervised fine-tuning on instruction data as a removal attack: the host continues training the fingerprinted model
/// on ordinary (prompt, response) pairs — full fine-tuning or LoRA — and the loss on the response tokens only, which
/// overwrites weakly memorised fingerprints. This is the persistence test of arXiv 2502.07760 (Nasery et al.: fingerprints
/// should persist after supervised fine-tuning on standard post-training data), run here through <see cref="Trainer"/>
/// (AdamW, warm-up and cosine decay, no weight decay). The input model is copied, not changed.
/// </summary>
public sealed class SftAttack : IWeightAttack
{
    public SftAttack(IReadOnlyList<SupervisedExample> examples, AttackTraining? training = null)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("fine-tuning needs at least one example");
        Examples = examples;
        Training = training ?? new AttackTraining();
        Training.Validate();
    }

    public IReadOnlyList<SupervisedExample> Examples { get; }
    public AttackTraining Training { get; }
    public string Name => $"sft({Training.Describe()})";

    /// <summary>Examples from conversations (see <see cref="InstructionData.Tokenize"/>), raw or in a chat template.</summary>
    public static List<SupervisedExample> ExamplesFrom(IEnumerable<Conversation> conversations, Tokenizer tokenizer, ChatTemplate? template = null) =>
        conversations.Select(c => InstructionData.Tokenize(c, tokenizer, template)).Select(t => new SupervisedExample(t.Prompt, t.Response)).ToList();

    public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
    {
        int vocab = model.Config.VocabSize;
        foreach (var e in Examples)
            if (e.Prompt.Concat(e.Response).Any(id => id < 0 || id >= vocab))
                throw new ArgumentException($"an example has a token id outside the model's vocabulary [0, {vocab})");
        var copy = WeightTensors.Transform(model, (_, _) => false, (_, t) => t);
        (var trained, LastLoss) = Training.TrainOwned(copy, Examples, progress, Name);
        return trained;
    }

    /// <summary>The mean training loss of the last progress interval of the last <see cref="Apply"/>.</summary>
    public double? LastLoss { get; private set; }
}

/// <summary>
/// Distillation as a removal attack (sequence-level knowledge distillation, Kim &amp; Rush 2016, "Sequence-Level
/// Knowledge Distillation"): the fingerprinted model (the teacher, the attack's input) answers a set of ordinary prompts,
/// and a student — a copy of a given model (e.g. the base) or a fresh randomly initialised model of the teacher's
/// vocabulary — is fine-tuned on the (prompt, teacher answer) pairs. The student learns the teacher's behaviour on
/// ordinary inputs but never sees the fingerprint keys, so memorised key→response pairs are not transferred unless the
/// prompts happen to contain them. The teacher decodes greedily unless <see cref="Decoding"/> says otherwise; answers stop at its end-of-sequence
/// tokens (kept, so the student learns to stop).
/// </summary>
public sealed class DistillationAttack : IWeightAttack
{
    /// <param name="prompts">Token ids of the prompts the teacher answers.</param>
    /// <param name="student">A model to copy as the student (not owned, not changed); null with <paramref name="freshStudent"/>.</param>
    /// <param name="freshStudent">The configuration of a fresh random student (its vocabulary must be the teacher's).</param>
    public DistillationAttack(IReadOnlyList<int[]> prompts, CausalLM? student = null, ModelConfig? freshStudent = null,
        int maxNewTokens = 64, GenerationOptions? decoding = null, AttackTraining? training = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("distillation needs prompts for the teacher");
        if ((student is null) == (freshStudent is null)) throw new ArgumentException("give exactly one of a student model to copy and a fresh student's configuration");
        if (maxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens, "the teacher must answer with at least 1 token");
        Prompts = prompts;
        Student = student;
        FreshStudent = freshStudent;
        MaxNewTokens = maxNewTokens;
        Decoding = decoding ?? new GenerationOptions();
        Training = training ?? new AttackTraining();
        Training.Validate();
    }

    public IReadOnlyList<int[]> Prompts { get; }
    public CausalLM? Student { get; }
    public ModelConfig? FreshStudent { get; }
    public int MaxNewTokens { get; }
    public GenerationOptions Decoding { get; }
    public AttackTraining Training { get; }

    /// <summary>The (prompt, teacher answer) pairs of the last <see cref="Apply"/>.</summary>
    public IReadOnlyList<SupervisedExample> Transcript { get; private set; } = [];

    public string Name => $"distill({(Student is null ? "fresh" : "copy")},{Training.Describe()},{ModelResponder.DescribeDecoding(Decoding)})";

    public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
    {
        var studentConfig = Student?.Config ?? FreshStudent!;
        if (studentConfig.VocabSize != model.Config.VocabSize)
            throw new ArgumentException($"the student's vocabulary ({studentConfig.VocabSize}) is not the teacher's ({model.Config.VocabSize}); distillation on token ids needs the same tokenizer");
        var prompts = Training.Samples is { } n ? Prompts.Take(n).ToList() : Prompts;
        progress?.Report($"teacher answering {prompts.Count} prompts ...");
        var answers = new ModelResponder(model, Decoding).Respond(prompts, MaxNewTokens);
        var examples = prompts.Select((p, i) => new SupervisedExample(p, answers[i])).Where(e => e.Response.Length > 0).ToList();
        if (examples.Count == 0) throw new InvalidOperationException("the teacher gave no answer to train on");
        Transcript = examples;
        if (Student is not null && Student.Device != model.Device)
            throw new ArgumentException($"the student is on {Student.Device}, the teacher on {model.Device}");
        var student = Student is not null
            ? WeightTensors.Transform(Student, (_, _) => false, (_, t) => t)
            : Pretraining.CreateRandom(FreshStudent!, Training.Seed, model.Device, model.DType);
        (var trained, LastLoss) = (Training with { Samples = null }).TrainOwned(student, examples, progress, Name);
        return trained;
    }

    /// <summary>The mean training loss of the last progress interval of the last <see cref="Apply"/>.</summary>
    public double? LastLoss { get; private set; }
}
