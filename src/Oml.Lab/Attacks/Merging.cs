using System.Globalization;
using Oml.Engine;
using Oml.Models;

namespace Oml.Lab.Attacks;

public enum MergeMethod
{
    /// <summary>θ = (1 − a)·θ_A + a·θ_B.</summary>
    Linear,
    /// <summary>Spherical interpolation per tensor between θ_A and θ_B.</summary>
    Slerp,
    /// <summary>θ = θ_base + λ·Σ_k w_k (θ_k − θ_base).</summary>
    TaskArithmetic,
    /// <summary>TIES-merging: trim, elect sign, disjoint mean of the task vectors.</summary>
    Ties,
}

/// <summary>
/// Model merging as a removal attack: the fingerprinted model is combined with sibling models of the same shape (other
/// fine-tunes of the same base), diluting the memorised key→response map. Merging is one of the benign perturbations that
/// fingerprint robustness evaluations use (named in the abstract of Nasery et al., arXiv 2509.26598); the four methods
/// follow their original papers, with mergekit's conventions where those leave details open:
/// <list type="bullet">
/// <item>Linear (weight averaging, Wortsman et al. 2022 "Model soups"): θ = (1 − a)·θ_A + a·θ_B, θ_A the input model.</item>
/// <item>SLERP (Shoemake 1985, as mergekit applies it per tensor): the flattened tensors are interpolated along the great
/// circle, θ = sin((1−a)Ω)/sin Ω·θ_A + sin(aΩ)/sin Ω·θ_B, Ω the angle between the normalised tensors; when they are nearly
/// colinear (|cos Ω| &gt; <see cref="ColinearThreshold"/>) or one is zero it falls back to linear interpolation.</item>
/// <item>Task arithmetic (Ilharco et al. 2023, "Editing models with task arithmetic"): θ = θ_base + λ·Σ_k w_k(θ_k − θ_base)
/// over the input model (k = 0) and the siblings.</item>
/// <item>TIES (Yadav et al. 2023, "TIES-Merging"): each weighted task vector τ_k = w_k(θ_k − θ_base) is trimmed to its
/// <see cref="Density"/> fraction of largest magnitudes (per tensor), the sign of each element is elected as the sign of
/// Σ_k τ̂_k (the sign with the larger total magnitude), and the merged task vector is the mean of the τ̂_k that are non-zero
/// and agree with the elected sign (disjoint mean); θ = θ_base + λ·τ_m.</item>
/// </list>
/// Computed in float32 on the input model's device and cast back to its dtype. Siblings and base may live on any device
/// and dtype; they stay owned by the caller.
/// </summary>
public sealed class MergeAttack : IWeightAttack
{
    /// <summary>|cos Ω| above which SLERP interpolates linearly (mergekit uses 0.9995).</summary>
    public const double ColinearThreshold = 0.9995;

    public MergeAttack(MergeMethod method, IReadOnlyList<CausalLM> siblings, CausalLM? baseModel = null, double weight = 0.5,
        IReadOnlyList<double>? weights = null, double density = 0.5, double lambda = 1.0)
    {
        ArgumentNullException.ThrowIfNull(siblings);
        if (siblings.Count == 0) throw new ArgumentException("merging needs at least one sibling model");
        Method = method;
        Siblings = siblings;
        Base = baseModel;
        Weight = weight;
        Density = density;
        Lambda = lambda;
        if (method is MergeMethod.Linear or MergeMethod.Slerp)
        {
            if (siblings.Count != 1) throw new ArgumentException($"{method} merging takes exactly one sibling model ({siblings.Count} given)");
            if (!(weight >= 0 && weight <= 1)) throw new ArgumentOutOfRangeException(nameof(weight), weight, "the interpolation weight a must be in [0, 1]");
        }
        else
        {
            if (baseModel is null) throw new ArgumentException($"{method} merging needs the base model the task vectors are taken from");
            Weights = weights ?? Enumerable.Repeat(1.0, siblings.Count + 1).ToArray();
            if (Weights.Count != siblings.Count + 1)
                throw new ArgumentException($"{method}: {Weights.Count} weights for {siblings.Count + 1} models (the input model and {siblings.Count} siblings)");
            if (Weights.Any(w => !double.IsFinite(w))) throw new ArgumentException("merge weights must be finite");
            if (!(density > 0 && density <= 1)) throw new ArgumentOutOfRangeException(nameof(density), density, "the TIES density must be in (0, 1]");
            if (!double.IsFinite(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "λ must be finite");
        }
    }

    public MergeMethod Method { get; }
    public IReadOnlyList<CausalLM> Siblings { get; }
    public CausalLM? Base { get; }
    /// <summary>Linear and SLERP: the sibling's share a.</summary>
    public double Weight { get; }
    /// <summary>Task arithmetic and TIES: w_k for the input model, then each sibling.</summary>
    public IReadOnlyList<double> Weights { get; } = [];
    public double Density { get; }
    public double Lambda { get; }

    public string Name => Method switch
    {
        MergeMethod.Linear => Invariant($"merge-linear({Weight})"),
        MergeMethod.Slerp => Invariant($"merge-slerp({Weight})"),
        MergeMethod.TaskArithmetic => Invariant($"merge-task-arithmetic(w=[{string.Join(",", Weights)}],lambda={Lambda})"),
        _ => Invariant($"merge-ties(w=[{string.Join(",", Weights)}],density={Density},lambda={Lambda})"),
    };

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
    {
        for (int i = 0; i < Siblings.Count; i++) WeightTensors.CheckSameShape(model, Siblings[i], $"sibling model {i + 1}");
        if (Base is not null) WeightTensors.CheckSameShape(model, Base, "the base model");
        var siblings = Siblings.Select(s => s.ExportParameters()).ToList();
        var baseP = Base?.ExportParameters();
        var dev = model.Device;
        int done = 0, total = model.Parameters.Count;
        try
        {
            return WeightTensors.Transform(model, (_, _) => true, (name, a) =>
            {
                var others = siblings.Select(s => s[name].To(DType.Float32, dev, copy: true)).ToList();
                var r = Method switch
                {
                    MergeMethod.Linear => Lerp(a, others[0], Weight),
                    MergeMethod.Slerp => Slerp(a, others[0], Weight),
                    MergeMethod.TaskArithmetic => TaskArithmetic(baseP![name].To(DType.Float32, dev, copy: true), [a, .. others], Weights, Lambda),
                    _ => Ties(baseP![name].To(DType.Float32, dev, copy: true), [a, .. others], Weights, Density, Lambda),
                };
                if (++done % 16 == 0) progress?.Report($"merged {done} tensors");
                return r;
            });
        }
        finally
        {
            foreach (var s in siblings) foreach (var t in s.Values) t.Dispose();
            if (baseP is not null) foreach (var t in baseP.Values) t.Dispose();
            progress?.Report($"merged {total} tensors ({Name})");
        }
    }

    /// <summary>(1 − a)·x + a·y. a = 0 and a = 1 return exact copies of x and y.</summary>
    public static Tensor Lerp(Tensor x, Tensor y, double a)
    {
        if (a == 0) return x.Clone();
        if (a == 1) return y.Clone();
        return x * (1 - a) + y * a;
    }

    /// <summary>Spherical interpolation of the flattened tensors (see the class remarks); falls back to <see cref="Lerp"/>.</summary>
    public static Tensor Slerp(Tensor x, Tensor y, double a)
    {
        if (a == 0) return x.Clone();
        if (a == 1) return y.Clone();
        using var scope = Torch.NewScope();
        var xf = x.To(DType.Float64).Flatten();
        var yf = y.To(DType.Float64).Flatten();
        double nx = xf.Norm().ToDouble(), ny = yf.Norm().ToDouble();
        if (nx == 0 || ny == 0) return Lerp(x, y, a).MoveToOuterScope();
        double cos = Math.Clamp((xf * yf).Sum().ToDouble() / (nx * ny), -1, 1);
        if (Math.Abs(cos) > ColinearThreshold) return Lerp(x, y, a).MoveToOuterScope();
        double omega = Math.Acos(cos), sin = Math.Sin(omega);
        double s0 = Math.Sin((1 - a) * omega) / sin, s1 = Math.Sin(a * omega) / sin;
        return (x * s0 + y * s1).MoveToOuterScope();
    }

    /// <summary>θ_base + λ·Σ_k w_k(θ_k − θ_base).</summary>
    public static Tensor TaskArithmetic(Tensor baseT, IReadOnlyList<Tensor> models, IReadOnlyList<double> weights, double lambda)
    {
        if (models.Count != weights.Count) throw new ArgumentException($"{weights.Count} weights for {models.Count} models");
        using var scope = Torch.NewScope();
        var sum = Torch.ZerosLike(baseT);
        for (int k = 0; k < models.Count; k++) sum = sum + (models[k] - baseT) * weights[k];
        return (baseT + sum * lambda).MoveToOuterScope();
    }

    /// <summary>
    /// Keeps exactly round(density·n) (at least 1) largest-magnitude elements of <paramref name="t"/>
    /// and zeroes the rest (ties at the threshold are broken by position, as top-k breaks them).
    /// </summary>
    public static Tensor TrimToDensity(Tensor t, double density)
    {
        if (!(density > 0 && density <= 1)) throw new ArgumentOutOfRangeException(nameof(density), density, "the density must be in (0, 1]");
        if (density == 1) return t.Clone();
        using var scope = Torch.NewScope();
        var flat = t.Flatten();
        long n = flat.NumEl;
        long keep = Math.Max(1, (long)Math.Round(density * n, MidpointRounding.AwayFromZero));
        var idx = flat.Abs().TopK(keep, -1).Indices;
        var mask = Torch.ZerosLike(flat).Scatter(0, idx, 1.0);
        return (flat * mask).View(t.Shape).MoveToOuterScope();
    }

    /// <summary>TIES-merging of one tensor (see the class remarks).</summary>
    public static Tensor Ties(Tensor baseT, IReadOnlyList<Tensor> models, IReadOnlyList<double> weights, double density, double lambda)
    {
        if (models.Count != weights.Count) throw new ArgumentException($"{weights.Count} weights for {models.Count} models");
        using var scope = Torch.NewScope();
        var trimmed = models.Select((m, k) => TrimToDensity((m - baseT) * weights[k], density)).ToList();
        var total = trimmed.Aggregate((x, y) => x + y);
        var sign = total.Sign();
        var sum = Torch.ZerosLike(baseT);
        var count = Torch.ZerosLike(baseT);
        foreach (var tau in trimmed)
        {
            // Agrees: non-zero and of the elected sign (sign(τ)·γ = 1).
            var agree = (tau.Sign() * sign).Gt(0).To(tau.DType);
            sum = sum + tau * agree;
            count = count + agree;
        }
        var merged = sum / count.Clamp(min: 1);
        return (baseT + merged * lambda).MoveToOuterScope();
    }
}
