using System.Globalization;
using Oml.Engine;
using Oml.Models;

namespace Oml.Lab.Attacks;

/// <summary>
/// Unstructured magnitude pruning (Han et al. 2015, "Learning both weights and connections"; the pruning baseline of
/// Sun et al. 2023 "Wanda" without activations) as a removal attack: the <see cref="Fraction"/> of selected weights with
/// the smallest |w| are set to zero, either within each matrix (per-matrix: exactly round(f·n) of each tensor's n
/// elements) or against one threshold over all selected tensors together (global: exactly round(f·N) of their N elements,
/// so matrices with small weights lose more). Ties at the threshold are broken by position (top-k order). Linear weights
/// only by default. Global pruning holds |w| of all selected tensors in float32 at once, which suits lab-sized models.
/// </summary>
public sealed class PruneAttack : IWeightAttack
{
    public const double MaxFraction = 0.9;

    public PruneAttack(double fraction, bool global = false, TensorKinds kinds = TensorKinds.Linear)
    {
        if (!(fraction >= 0 && fraction <= MaxFraction))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, $"the pruned fraction must be in [0, {MaxFraction}]");
        if (kinds == TensorKinds.None) throw new ArgumentException("prune at least one kind of tensor");
        Fraction = fraction;
        Global = global;
        Kinds = kinds;
    }

    public double Fraction { get; }
    public bool Global { get; }
    public TensorKinds Kinds { get; }

    public string Name => string.Create(CultureInfo.InvariantCulture, $"prune({Fraction}{(Global ? ",global" : "")})");

    private bool Selected(string name, Tensor t) => Kinds.HasFlag(WeightTensors.KindOf(name, t));

    public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
    {
        if (!Global)
        {
            int n = 0;
            var r = WeightTensors.Transform(model, Selected, (_, w) =>
            {
                var pruned = PruneSmallest(w, (long)Math.Round(Fraction * w.NumEl, MidpointRounding.AwayFromZero));
                if (++n % 16 == 0) progress?.Report($"pruned {n} tensors");
                return pruned;
            });
            progress?.Report($"pruned {n} tensors per matrix ({Name})");
            return r;
        }

        // Global: one mask over the concatenation of all selected tensors, then cut back into pieces.
        var names = model.Parameters.Where(p => !p.Key.Contains(".lora_", StringComparison.Ordinal) && Selected(p.Key, p.Value))
            .Select(p => p.Key).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var masks = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using (Torch.NoGrad())
            using (var scope = Torch.NewScope())
            {
                var exported = model.ExportParameters();
                try
                {
                    var all = Torch.Cat(names.Select(n => exported[n].To(DType.Float32).Abs().Flatten()).ToList(), 0);
                    long total = all.NumEl;
                    long k = (long)Math.Round(Fraction * total, MidpointRounding.AwayFromZero);
                    var keep = Torch.Ones([total], DType.Float32, model.Device);
                    if (k > 0) keep = keep.Scatter(0, all.TopK(k, -1, largest: false).Indices, 0.0);
                    long offset = 0;
                    foreach (var n in names)
                    {
                        var t = exported[n];
                        masks[n] = keep.Narrow(0, offset, t.NumEl).View(t.Shape).Contiguous().DetachFromScope();
                        offset += t.NumEl;
                    }
                }
                finally
                {
                    foreach (var t in exported.Values) t.Dispose();
                }
            }
            var result = WeightTensors.Transform(model, Selected, (name, w) => w * masks[name]);
            progress?.Report($"pruned {names.Count} tensors against one global threshold ({Name})");
            return result;
        }
        finally
        {
            foreach (var m in masks.Values) m.Dispose();
        }
    }

    /// <summary>Zeroes the <paramref name="count"/> elements of smallest magnitude (a new tensor).</summary>
    public static Tensor PruneSmallest(Tensor w, long count)
    {
        if (count < 0 || count > w.NumEl) throw new ArgumentOutOfRangeException(nameof(count), count, $"cannot prune {count} of {w.NumEl} elements");
        if (count == 0) return w.Clone();
        using var scope = Torch.NewScope();
        var flat = w.Flatten();
        var idx = flat.Abs().TopK(count, -1, largest: false).Indices;
        return flat.Scatter(0, idx, 0.0).View(w.Shape).MoveToOuterScope();
    }

    /// <summary>The fraction of exactly-zero elements of <paramref name="t"/>.</summary>
    public static double Sparsity(Tensor t)
    {
        using var scope = Torch.NewScope();
        return t.Eq(0).To(DType.Float64).Mean().ToDouble();
    }
}
