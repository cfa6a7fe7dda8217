using System.Globalization;
using Oml.Engine;
using Oml.Models;

namespace Oml.Lab.Attacks;

public enum QuantizationScheme
{
    /// <summary>8 bits, symmetric absmax: scale = max|w| / 127, codes in [−127, 127].</summary>
    Int8Symmetric,
    /// <summary>4 bits, asymmetric min/max with a zero point: scale = (max − min) / 15, codes in [0, 15].</summary>
    Int4Asymmetric,
    /// <summary>4 bits, symmetric absmax: scale = max|w| / 7, codes in [−7, 7].</summary>
    Int4Symmetric,
}

/// <summary>The round-trip error of one tensor.</summary>
public sealed record QuantizationError(string Name, long Elements, double MeanSquaredError, double MaxAbsError);

/// <summary>
/// Quantization round trip as a (benign) removal attack: weights are quantized group-wise and dequantized again, so the
/// model computes with exactly the values a weight-only int8/int4 deployment would (hosts commonly serve quantized
/// weights; this is our definition of the perturbation, not one taken from the fingerprinting papers). Groups are
/// <see cref="GroupSize"/> consecutive elements along the input dimension (the last dimension of a [out, in] weight, the
/// only one of a 1-D tensor), each with its own scale (and zero point for the asymmetric scheme), as GPTQ/AWQ-style
/// group-wise formats do. A last group that is short is padded with zeros (which can only widen its range).
/// Rounding is to nearest with halves rounded up (code = ⌊w/scale + ½⌋), so the per-element error is at most
/// half a quantization step (scale/2) before the cast back to the model's dtype (bf16 weights add their own rounding).
/// Linear weights only by default; embeddings (and the LM head) and the 1-D norm weights / biases are optional.
/// </summary>
public sealed class QuantizeAttack : IWeightAttack
{
    public QuantizeAttack(QuantizationScheme scheme, int groupSize = 64, TensorKinds kinds = TensorKinds.Linear)
    {
        if (groupSize < 2) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "the group size must be at least 2");
        if (kinds == TensorKinds.None) throw new ArgumentException("quantize at least one kind of tensor");
        Scheme = scheme;
        GroupSize = groupSize;
        Kinds = kinds;
    }

    public QuantizationScheme Scheme { get; }
    public int GroupSize { get; }
    public TensorKinds Kinds { get; }

    /// <summary>Per-tensor errors of the last <see cref="Apply"/>, measured against the input in float32.</summary>
    public IReadOnlyList<QuantizationError> Errors { get; private set; } = [];

    public string Name => string.Create(CultureInfo.InvariantCulture, $"quantize({SchemeName(Scheme)},g={GroupSize})");

    public static string SchemeName(QuantizationScheme s) => s switch
    {
        QuantizationScheme.Int8Symmetric => "int8",
        QuantizationScheme.Int4Asymmetric => "int4",
        _ => "int4-sym",
    };

    public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
    {
        var errors = new List<QuantizationError>();
        var result = WeightTensors.Transform(model, (name, t) => Kinds.HasFlag(WeightTensors.KindOf(name, t)), (name, w) =>
        {
            var q = RoundTrip(w, Scheme, GroupSize);
            // The error of what the attacked model holds: after the cast back to the model's dtype.
            using var stored = q.To(model.DType).To(DType.Float32);
            using var diff = stored - w;
            using var sq = diff.Square().Mean();
            using var mx = diff.Abs().Max();
            errors.Add(new QuantizationError(name, w.NumEl, sq.ToDouble(), mx.ToDouble()));
            if (errors.Count % 16 == 0) progress?.Report($"quantized {errors.Count} tensors");
            return q;
        });
        Errors = errors;
        progress?.Report(string.Create(CultureInfo.InvariantCulture,
            $"quantized {errors.Count} tensors ({Name}); mean MSE {(errors.Count > 0 ? errors.Average(e => e.MeanSquaredError) : 0):E3}"));
        return result;
    }

    /// <summary>Quantizes and dequantizes <paramref name="w"/> (any float dtype; the result is float32, same shape).</summary>
    public static Tensor RoundTrip(Tensor w, QuantizationScheme scheme, int groupSize)
    {
        using var scope = Torch.NewScope();
        var (groups, pad) = Groups(w, groupSize);
        Tensor deq;
        if (scheme == QuantizationScheme.Int4Asymmetric)
        {
            var lo = groups.Amin(-1, keepDim: true);
            var scale = Step(groups, scheme, groupSize);
            var zero = Round(-lo / scale);
            var codes = (Round(groups / scale) + zero).Clamp(0, 15);
            deq = (codes - zero) * scale;
        }
        else
        {
            double qmax = scheme == QuantizationScheme.Int8Symmetric ? 127 : 7;
            var scale = Step(groups, scheme, groupSize);
            var codes = Round(groups / scale).Clamp(-qmax, qmax);
            deq = codes * scale;
        }
        return Ungroup(deq, w.Shape, pad).MoveToOuterScope();
    }

    /// <summary>
    /// The quantization step (scale) of every group, [..., groups, 1] as float32: the largest per-element round-trip
    /// error is half of it. All-zero groups get step 1 (their codes are 0).
    /// </summary>
    public static Tensor Steps(Tensor w, QuantizationScheme scheme, int groupSize)
    {
        using var scope = Torch.NewScope();
        var (groups, _) = Groups(w, groupSize);
        return Step(groups, scheme, groupSize).MoveToOuterScope();
    }

    private static Tensor Step(Tensor groups, QuantizationScheme scheme, int groupSize)
    {
        Tensor range = scheme switch
        {
            QuantizationScheme.Int8Symmetric => groups.Abs().Amax(-1, keepDim: true) / 127.0,
            QuantizationScheme.Int4Symmetric => groups.Abs().Amax(-1, keepDim: true) / 7.0,
            _ => (groups.Amax(-1, keepDim: true) - groups.Amin(-1, keepDim: true)) / 15.0,
        };
        return range.MaskedFill(range.Eq(0), 1.0);
    }

    /// <summary>⌊x + ½⌋: round to nearest (libtorch's round is not bound here).</summary>
    private static Tensor Round(Tensor x) => (x + 0.5).Floor();

    /// <summary>float32 [..., nGroups, groupSize] view of <paramref name="w"/> along its last dimension, zero-padded.</summary>
    private static (Tensor Groups, long Pad) Groups(Tensor w, int groupSize)
    {
        if (w.Dim < 1) throw new ArgumentException("cannot quantize a scalar tensor");
        var f = w.To(DType.Float32);
        long last = f.Size(-1);
        long pad = (groupSize - last % groupSize) % groupSize;
        var lead = f.Shape[..^1];
        if (pad > 0) f = Torch.Cat([f, Torch.Zeros([.. lead, pad], DType.Float32, f.Device)], -1);
        return (f.Reshape([.. lead, (last + pad) / groupSize, groupSize]), pad);
    }

    private static Tensor Ungroup(Tensor groups, long[] shape, long pad)
    {
        var lead = shape[..^1];
        var flat = groups.Reshape([.. lead, shape[^1] + pad]);
        return pad > 0 ? flat.Narrow(-1, 0, shape[^1]).Contiguous() : flat;
    }
}
