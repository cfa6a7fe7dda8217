using Oml.Engine;
using Oml.Models;
using Oml.Models.Training;

namespace Oml.Fingerprinting.Embedding;

/// <summary>
/// What the held-out sequences measure to rank epochs (early stopping, the kept epoch) and the final merge's λ
/// (<see cref="EmbeddingOptions.HeldOutCriterion"/>).
/// </summary>
public enum HeldOutCriterion
{
    /// <summary>
    /// The mean next-token loss on the sequences' own tokens (for self-generated sequences: one sample of the base per
    /// position, so its expectation is the base's entropy plus KL(base ‖ model), with the sampling noise of one token).
    /// </summary>
    Tokens,
    /// <summary>
    /// The mean KL(base ‖ model) at every held-out position, against the base's distribution there recorded once before
    /// training (its top-k tokens and the tail, as <see cref="BenignTargets"/> records the benign rows'): 0 for the base,
    /// without the sampled token's noise.
    /// </summary>
    KL,
}

/// <summary>The names of <see cref="HeldOutCriterion"/> values on the command line and in manifests: "tokens" and "kl".</summary>
public static class HeldOutCriteria
{
    public static string Name(HeldOutCriterion c) => c switch
    {
        HeldOutCriterion.Tokens => "tokens",
        HeldOutCriterion.KL => "kl",
        _ => throw new ArgumentOutOfRangeException(nameof(c), c, "unknown held-out criterion"),
    };

    /// <summary>Parses "tokens" or "kl" (any case); anything else is an <see cref="ArgumentException"/> naming <paramref name="what"/>.</summary>
    public static HeldOutCriterion Parse(string? text, string what) => text?.Trim().ToLowerInvariant() switch
    {
        "tokens" => HeldOutCriterion.Tokens,
        "kl" => HeldOutCriterion.KL,
        _ => throw new ArgumentException($"{what} must be kl or tokens (got '{text}')"),
    };

    /// <summary>The criterion that goes with a benign loss: the KL with the KL benign loss, the token loss with the token one.</summary>
    public static HeldOutCriterion For(BenignLoss benignLoss) => benignLoss == BenignLoss.KL ? HeldOutCriterion.KL : HeldOutCriterion.Tokens;
}

/// <summary>One measurement of the held-out sequences: the mean next-token loss and, under the KL criterion, the mean KL(base ‖ model).</summary>
public readonly record struct HeldOutMeasurement(double Loss, double? KL);

/// <summary>
/// The held-out sequences of a run, measured on demand: the base once (under <see cref="HeldOutCriterion.KL"/>, in the
/// pass that records its targets), then the model whenever a decision needs it. <see cref="Passes"/> counts the passes
/// over the sequences, the base's included.
/// </summary>
internal sealed class HeldOutSet
{
    private readonly IReadOnlyList<int[]> _sequences;
    private readonly int _context;
    private readonly List<SoftRow>? _targets;
    private readonly double _tolerance;

    public HeldOutCriterion Criterion { get; }
    /// <summary>The base model's mean next-token loss on the sequences.</summary>
    public double BaseLoss { get; }
    /// <summary>The base's value of the criterion: its loss, or 0 for the KL (to itself).</summary>
    public double BaseValue => Criterion == HeldOutCriterion.KL ? 0 : BaseLoss;
    /// <summary>The KL (nats per position) above which the held-out data count as risen: the tolerance × the base's loss (null under the token criterion).</summary>
    public double? KLTolerance => Criterion == HeldOutCriterion.KL ? _tolerance * BaseLoss : null;
    /// <summary>The k of the KL criterion's targets (null under the token criterion).</summary>
    public int? TopK { get; }
    public int Count => _sequences.Count;
    public int Passes { get; private set; }
    /// <summary>
    /// Largest pass in padded tokens of the measurements after the base's (a longer sequence runs alone): the options'
    /// micro-batch tokens, or set by the trainer from the memory left once training state is allocated; null: 65,536.
    /// </summary>
    public long? MicroBatchTokens { get; set; }

    private HeldOutSet(IReadOnlyList<int[]> sequences, int context, int? microBatchTokens, HeldOutCriterion criterion, double tolerance,
        List<SoftRow>? targets, double baseLoss, int? topK)
    {
        _sequences = sequences;
        _context = context;
        MicroBatchTokens = microBatchTokens;
        Criterion = criterion;
        _tolerance = tolerance;
        _targets = targets;
        BaseLoss = baseLoss;
        TopK = topK;
        Passes = 1;
    }

    /// <summary>Measures the base (<paramref name="model"/> before training) once: its loss, and under the KL criterion its targets.</summary>
    public static HeldOutSet OfBase(CausalLM model, IReadOnlyList<int[]> sequences, int context, EmbeddingOptions o, ShardedModel? sharded)
    {
        if (o.HeldOutCriterion == HeldOutCriterion.KL)
        {
            var (targets, loss) = BenignTargets.Record(model, sequences, context, o.BenignTopK, o.MicroBatchTokens, sharded);
            return new HeldOutSet(sequences, context, o.MicroBatchTokens, HeldOutCriterion.KL, o.HeldOutTolerance, targets, loss,
                Math.Min(o.BenignTopK, model.Config.VocabSize - 1));
        }
        double baseLoss = FingerprintTrainer.HeldOutLoss(model, sequences, o.MicroBatchTokens, context, sharded);
        return new HeldOutSet(sequences, context, o.MicroBatchTokens, HeldOutCriterion.Tokens, o.HeldOutTolerance, null, baseLoss, null);
    }

    /// <summary>One pass over the sequences with the model as it is now (every rank of a sharded model must call it).</summary>
    public HeldOutMeasurement Measure(CausalLM model, ShardedModel? sharded)
    {
        Passes++;
        if (_targets is null) return new HeldOutMeasurement(FingerprintTrainer.HeldOutLoss(model, _sequences, MicroBatchTokens is { } t ? (int)Math.Min(t, int.MaxValue) : null, _context, sharded), null);
        var (loss, kl) = FingerprintTrainer.HeldOutKL(model, _sequences, _targets, _context, MicroBatchTokens, sharded);
        return new HeldOutMeasurement(loss, kl);
    }

    /// <summary>The criterion's value of a measurement (lower is better).</summary>
    public double Value(HeldOutMeasurement m) => Criterion == HeldOutCriterion.KL ? m.KL!.Value : m.Loss;

    /// <summary>
    /// Whether the held-out data have risen past the tolerance: the loss more than the tolerance fraction above the
    /// base's, or the KL above the tolerance × the base's loss (<see cref="KLTolerance"/>).
    /// </summary>
    public bool Rose(HeldOutMeasurement m) => Criterion == HeldOutCriterion.KL ? m.KL!.Value > KLTolerance!.Value : m.Loss > BaseLoss * (1 + _tolerance);

    /// <summary>A description for the manifest: "tokens" or "kl:top32".</summary>
    public string Describe() => Criterion == HeldOutCriterion.KL ? $"kl:top{TopK}" : "tokens";
}
