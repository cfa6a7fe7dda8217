using Oml.Engine;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Experiments;

/// <summary>What an attack may need besides its own parameters: the tokenizer, data, where to compute, paths.</summary>
public sealed record AttackContext(Tokenizer Tokenizer, Device Device, DType DType, IReadOnlyList<int> TrainTokens, string TrainText,
    Func<string, string> ResolvePath, ulong Seed, string BaseModelDir);

/// <summary>
/// Builds attacks and responders from their specs by name. <see cref="Default"/> holds the lab's own (greedy, noise)
/// and the attack library's.
/// </summary>
public sealed class AttackCatalog
{
    private readonly Dictionary<string, Func<AttackSpec, AttackContext, IWeightAttack>> _weights = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<AttackSpec, AttackContext, CausalLM, IResponder>> _responders = new(StringComparer.Ordinal);

    public void AddWeight(string name, Func<AttackSpec, AttackContext, IWeightAttack> factory) => _weights[name] = factory;
    public void AddResponder(string name, Func<AttackSpec, AttackContext, CausalLM, IResponder> factory) => _responders[name] = factory;

    public IEnumerable<string> WeightAttacks => _weights.Keys.Order(StringComparer.Ordinal);
    public IEnumerable<string> Responders => _responders.Keys.Order(StringComparer.Ordinal);

    public IWeightAttack Weight(string spec, AttackContext ctx)
    {
        var s = AttackSpec.Parse(spec);
        if (!_weights.TryGetValue(s.Name, out var f)) throw new FormatException($"unknown weight attack '{s.Name}' (known: {string.Join(", ", WeightAttacks)})");
        return f(s, ctx);
    }

    public IResponder Responder(string spec, AttackContext ctx, CausalLM model)
    {
        var s = AttackSpec.Parse(spec);
        if (!_responders.TryGetValue(s.Name, out var f)) throw new FormatException($"unknown responder '{s.Name}' (known: {string.Join(", ", Responders)})");
        return f(s, ctx, model);
    }

    /// <summary>True when the spec is the plain greedy model (measured with the fast teacher-forced path).</summary>
    public static bool IsPlainGreedy(string? spec) => spec is null || AttackSpec.Parse(spec) is { Name: "greedy", Arguments.Count: 0 };

    public static AttackCatalog Default()
    {
        var c = new AttackCatalog();
        c.AddResponder("greedy", (s, _, m) => { s.Expect("batch"); return new GreedyResponder(m, s.Integer("batch", 64)); });
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
        Torch.ManualSeed(_seed);
        var ps = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = Torch.NoGrad();
        foreach (var (name, t) in model.Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            using var scope = Torch.NewScope();
            var copy = t.To(DType.Float32);
            if (t.Dim == 2 && _sigma > 0)
            {
                double rms = Math.Sqrt(copy.Square().Mean().ToDouble());
                copy = copy + Torch.Randn(t.Shape, DType.Float32, model.Device) * (_sigma * rms);
            }
            ps[name] = copy.To(t.DType).DetachFromScope();
        }
        return new CausalLM(model.Config, ps, model.Device, model.RotaryPrecision);
    }
}
