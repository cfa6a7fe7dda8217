using Oml.Engine;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Experiments;

/// <summary>What an attack may need besides its own parameters: the tokenizer, data, where to compute, paths.</summary>
public sealed record AttackContext(Tokenizer Tokenizer, Device Device, DType DType, IReadOnlyList<int> TrainTokens, string TrainText,
    Func<string, string> ResolvePath, ulong Seed, string BaseModelDir)
{
    /// <summary>Loads a model folder named in a spec (resolved like config paths); the caller disposes it.</summary>
    public Func<string, CausalLM>? LoadModel { get; init; }
    /// <summary>Ordinary prompts (held-out windows) for calibrating perplexity filters.</summary>
    public IReadOnlyList<int[]> CalibrationPrompts { get; init; } = [];
    /// <summary>Instruction prompts of the host's own traffic (not the ones scored) for filters calibrated on=instructions.</summary>
    public IReadOnlyList<int[]> InstructionPrompts { get; init; } = [];
    /// <summary>The chat template of the tokenizer's folder, when it has one (for 'chat' responders).</summary>
    public Oml.Models.ChatTemplates.ChatTemplate? ChatTemplate { get; init; }
    public int BatchSize { get; init; } = 64;
    /// <summary>Resolves a path named in a responder spec (model:NAME to that source's folder); null: <see cref="ResolvePath"/>.</summary>
    public Func<string, string>? ResolveModelPath { get; init; }
}

/// <summary>
/// Builds weight attacks from their specs by name (<c>name(key=value, ...)</c>); <see cref="Default"/> holds the
/// attack library's and the lab's own. Responders are built from <see cref="ResponderSpec"/> lines.
/// </summary>
public sealed class AttackCatalog
{
    private readonly Dictionary<string, Func<AttackSpec, AttackContext, IWeightAttack>> _weights = new(StringComparer.Ordinal);

    public void AddWeight(string name, Func<AttackSpec, AttackContext, IWeightAttack> factory) => _weights[name] = factory;

    public IEnumerable<string> WeightAttacks => _weights.Keys.Order(StringComparer.Ordinal);

    public IWeightAttack Weight(string spec, AttackContext ctx)
    {
        var s = AttackSpec.Parse(spec);
        if (!_weights.TryGetValue(s.Name, out var f)) throw new FormatException($"unknown weight attack '{s.Name}' (known: {string.Join(", ", WeightAttacks)})");
        return f(s, ctx);
    }

    /// <summary>A responder serving <paramref name="model"/> as the spec says (see <see cref="ResponderSpec"/>); dispose it after use.</summary>
    public static SpecResponder Responder(string spec, AttackContext ctx, CausalLM model) => ResponderSpec.Parse(spec).Build(new ResponderContext
    {
        Model = model,
        Tokenizer = ctx.Tokenizer,
        ChatTemplate = ctx.ChatTemplate,
        LoadModel = ctx.LoadModel,
        CalibrationPrompts = ctx.CalibrationPrompts,
        InstructionPrompts = ctx.InstructionPrompts,
        BatchSize = ctx.BatchSize,
        ResolvePath = ctx.ResolveModelPath ?? ctx.ResolvePath,
    });

    /// <summary>True when the spec is the plain model decoded greedily (measured with the fast teacher-forced path).</summary>
    public static bool IsPlainGreedy(string? spec)
    {
        if (spec is null) return true;
        var s = ResponderSpec.Parse(spec);
        return s.Decoding == new DecodingSpec() && s.SystemPrompt is null && !s.Chat && s.Prefix is null && s.Suffix is null && s.Filter is null && s.Coalition is null
            && s.Rewrite is null && s.Paraphrase is null && s.Block is null;
    }

    public static AttackCatalog Default()
    {
        var c = new AttackCatalog();
        c.AddWeight("noise", (s, _) => { s.Expect("sigma", "seed"); return new GaussianNoiseAttack(s.Number("sigma"), (ulong)s.Integer("seed", 0)); });
        LibraryAttacks.Register(c);
        return c;
    }
}

/// <summary>Adds N(0, (σ·rms(W))²) noise to every weight matrix, relative to each matrix's own scale.</summary>
public sealed class GaussianNoiseAttack : IWeightAttack
{
    private readonly double _sigma;
    private readonly ulong _seed;

    public GaussianNoiseAttack(double sigma, ulong seed = 0)
    {
        if (!(sigma >= 0)) throw new ArgumentOutOfRangeException(nameof(sigma), sigma, "σ must be at least 0");
        (_sigma, _seed) = (sigma, seed);
    }

    public string Name => FormattableString.Invariant($"noise({_sigma})");

    public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
    {
        using var rng = new RandomGenerator(_seed, model.Device);
        var ps = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = Torch.NoGrad();
        foreach (var (name, t) in model.Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            using var scope = Torch.NewScope();
            var copy = t.To(DType.Float32);
            if (t.Dim == 2 && _sigma > 0)
            {
                double rms = Math.Sqrt(copy.Square().Mean().ToDouble());
                copy = copy + Torch.Randn(t.Shape, DType.Float32, model.Device, rng) * (_sigma * rms);
            }
            ps[name] = copy.To(t.DType).DetachFromScope();
        }
        return new CausalLM(model.Config, ps, model.Device, model.RotaryPrecision);
    }
}
