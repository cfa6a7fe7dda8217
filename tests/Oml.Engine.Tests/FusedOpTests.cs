namespace Oml.Engine.Tests;

/// <summary>
/// F.Rope, F.SwiGlu and F.RmsNorm against the composite ops that define them, values and gradients. On the CPU the
/// shim computes the composite itself; with OML_TEST_DEVICE=cuda and the fused kernels built in (native/oml_kernels.cu)
/// these tests hold the kernels to the composite: RoPE and SwiGLU forward bit for bit, the rest within a rounding.
/// </summary>
public class FusedOpTests
{
    private static Tensor Random(long[] shape, int seed, DType dtype, double scale = 1.0)
    {
        var rng = new Random(seed);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var data = Enumerable.Range(0, (int)n).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray();
        using var d = Torch.FromArray<double>(data, shape, Env.Device);
        return d.To(dtype);
    }

    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.Size(-1) / 2;
        return Torch.Cat([-x.Narrow(-1, half, half), x.Narrow(-1, 0, half)], -1);
    }

    private static Tensor CompositeRmsNorm(Tensor x, Tensor w, double eps)
    {
        var h = x.To(DType.Float32);
        h = h * (h.Pow(2).Mean(-1, keepDim: true) + eps).Rsqrt();
        return w * h.To(x.DType);
    }

    /// <summary>(output, gradient of x, gradient of the second input) of f at x and y with upstream gradient r.</summary>
    private static (double[] Y, double[] Dx, double[]? Dy) Run(Func<Tensor, Tensor, Tensor> f, Tensor x, Tensor y, Tensor r, bool gradY)
    {
        using var s = Torch.NewScope();
        var xv = x.Detach().RequiresGrad_();
        var yv = gradY ? y.Detach().RequiresGrad_() : y.Detach();
        var o = f(xv, yv);
        (o * r).Sum().Backward();
        return (o.To(DType.Float64).ToArray<double>(), xv.Grad!.To(DType.Float64).ToArray<double>(),
            gradY ? yv.Grad!.To(DType.Float64).ToArray<double>() : null);
    }

    private static void Near(double[] expected, double[] actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])),
                $"{what}[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Rope_equals_the_composite_on_the_attention_layout(DType dtype)
    {
        using var s = Torch.NewScope();
        long b = 2, t = 5, h = 3, d = 8;
        // As in Attention: [B, T, H, D] projections viewed as [B, H, T, D]; tables [1, 1, T, D] shared by the batch.
        var x = Random([b, t, h, d], 1, dtype).Transpose(1, 2);
        var angles = Random([1, 1, t, d / 2], 2, DType.Float32, 3.0);
        var emb = Torch.Cat([angles, angles], -1);
        var cos = emb.Cos().To(dtype);
        var sin = emb.Sin().To(dtype);
        var r = Random([b, h, t, d], 3, dtype);
        var fused = Run((a, _) => F.Rope(a, cos, sin), x, cos, r, gradY: false);
        var composite = Run((a, _) => a * cos + RotateHalf(a) * sin, x, cos, r, gradY: false);
        Assert.Equal(composite.Y, fused.Y);
        Near(composite.Dx, fused.Dx, dtype == DType.BFloat16 ? 1e-2 : 1e-6, "dx");
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Rope_takes_per_row_tables(DType dtype)
    {
        using var s = Torch.NewScope();
        var x = Random([2, 2, 3, 4], 4, dtype);
        var cos = Random([2, 1, 3, 4], 5, dtype);
        var sin = Random([2, 1, 3, 4], 6, dtype);
        var r = Random([2, 2, 3, 4], 13, dtype);
        var fused = Run((a, _) => F.Rope(a, cos, sin), x, cos, r, gradY: false);
        var composite = Run((a, _) => a * cos + RotateHalf(a) * sin, x, cos, r, gradY: false);
        Assert.Equal(composite.Y, fused.Y);
        Near(composite.Dx, fused.Dx, dtype == DType.BFloat16 ? 1e-2 : 1e-6, "dx");
    }

    [Fact]
    public void Rope_tables_that_need_a_gradient_get_one()
    {
        // The fused kernel differentiates x only; tables that require a gradient take the composite ops.
        using var s = Torch.NewScope();
        var x = Random([1, 2, 3, 4], 14, DType.Float32);
        var cos = Random([1, 1, 3, 4], 15, DType.Float32).RequiresGrad_();
        var sin = Random([1, 1, 3, 4], 16, DType.Float32);
        F.Rope(x, cos, sin).Sum().Backward();
        Assert.NotNull(cos.Grad);
        Check.Close(x.Sum([0, 1], keepDim: true).To(DType.Float64).ToArray<double>(), cos.Grad!, [1, 1, 3, 4]);
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void SwiGlu_equals_silu_times_up(DType dtype)
    {
        using var s = Torch.NewScope();
        var gate = Random([4, 6, 40], 7, dtype, 4.0);
        var up = Random([4, 6, 40], 8, dtype);
        var r = Random([4, 6, 40], 9, dtype);
        var fused = Run(F.SwiGlu, gate, up, r, gradY: true);
        var composite = Run((g, u) => g.Silu() * u, gate, up, r, gradY: true);
        Assert.Equal(composite.Y, fused.Y);
        double tol = dtype == DType.BFloat16 ? 1e-2 : 1e-6;
        Near(composite.Dx, fused.Dx, tol, "dgate");
        Near(composite.Dy!, fused.Dy!, tol, "dup");
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void RmsNorm_equals_the_composite_with_gradients(DType dtype)
    {
        using var s = Torch.NewScope();
        // 300 columns: not a multiple of the kernel's block; 4,400 rows: more than the kernel's grid (16 blocks per
        // multiprocessor), so blocks loop over several rows and the weight gradient sums many blocks' partial sums.
        var x = Random([2, 2200, 300], 10, dtype, 2.0);
        var w = Random([300], 11, dtype);
        var r = Random([2, 2200, 300], 12, dtype);
        var fused = Run((a, b) => F.RmsNorm(a, b, 1e-6), x, w, r, gradY: true);
        var composite = Run((a, b) => CompositeRmsNorm(a, b, 1e-6), x, w, r, gradY: true);
        double tol = dtype == DType.BFloat16 ? 2e-2 : 1e-5;
        Near(composite.Y, fused.Y, tol, "y");
        Near(composite.Dx, fused.Dx, tol, "dx");
        // The weight's gradient sums 4,400 rows of r·x̂ with much cancellation, so its rounding scales with the terms, not
        // with the result: both are held to a float64 reference within 8 standard deviations of independent roundings of
        // every term, √(Σ term²)·u, plus the final rounding u·|dw| (u: 2⁻⁸ in bfloat16, where the composite rounds every
        // product; the kernel sums in float32). A block of rows lost or counted twice is off by hundreds of terms.
        var (dw, norm) = RmsNormWeightGradient(x, r, 1e-6);
        double u = dtype == DType.BFloat16 ? 1.0 / 256 : 1e-6;
        foreach (var (name, got) in new[] { ("composite dw", composite.Dy!), ("fused dw", fused.Dy!) })
            for (int j = 0; j < dw.Length; j++)
                Assert.True(Math.Abs(got[j] - dw[j]) <= u * (8 * norm[j] + Math.Abs(dw[j])), $"{name}[{j}]: reference {dw[j]} (√Σ term² {norm[j]:G4}), got {got[j]}");
    }

    /// <summary>x's values in a tensor that starts one element past the start of its storage (so off any 16-byte boundary).</summary>
    private static Tensor Offset(Tensor x)
    {
        long n = x.NumEl;
        var flat = Torch.Zeros([n + 1], x.DType, Env.Device);
        var view = flat.Narrow(0, 1, n).View(x.Shape);
        using (Torch.NoGrad()) view.CopyFrom(x);
        return view;
    }

    /// <summary>
    /// Shapes that take the kernels' 16-byte vector paths on CUDA (head dimension 64, widths that are multiples of eight
    /// values), and the same values starting one element off a 16-byte boundary, which must take the scalar paths: both
    /// held to the composite ops as above.
    /// </summary>
    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Vector_and_unaligned_shapes_equal_the_composite(DType dtype)
    {
        using var s = Torch.NewScope();
        double tol = dtype == DType.BFloat16 ? 2e-2 : 1e-5;
        foreach (bool offset in new[] { false, true })
        {
            string where = offset ? "unaligned" : "aligned";
            long b = 3, t = 7, h = 4, d = 64;
            var raw = Random([b, t, h, d], 21, dtype);
            var x = (offset ? Offset(raw) : raw).Transpose(1, 2);
            var angles = Random([1, 1, t, d / 2], 22, DType.Float32, 3.0);
            var emb = Torch.Cat([angles, angles], -1);
            var cos = emb.Cos().To(dtype);
            var sin = emb.Sin().To(dtype);
            var r = Random([b, h, t, d], 23, dtype);
            var fused = Run((a, _) => F.Rope(a, cos, sin), x, cos, r, gradY: false);
            var composite = Run((a, _) => a * cos + RotateHalf(a) * sin, x, cos, r, gradY: false);
            Assert.True(composite.Y.SequenceEqual(fused.Y), $"rope y ({where}) is not the composite's bit for bit");
            Near(composite.Dx, fused.Dx, dtype == DType.BFloat16 ? 1e-2 : 1e-6, $"rope dx ({where})");

            var gate = Random([5, 9, 64], 24, dtype, 4.0);
            var up = Random([5, 9, 64], 25, dtype);
            if (offset) gate = Offset(gate);
            var rr = Random([5, 9, 64], 26, dtype);
            var fs = Run(F.SwiGlu, gate, up, rr, gradY: true);
            var cs = Run((g, u) => g.Silu() * u, gate, up, rr, gradY: true);
            Assert.True(cs.Y.SequenceEqual(fs.Y), $"swiglu y ({where}) is not the composite's bit for bit");
            Near(cs.Dx, fs.Dx, dtype == DType.BFloat16 ? 1e-2 : 1e-6, $"swiglu dgate ({where})");
            Near(cs.Dy!, fs.Dy!, dtype == DType.BFloat16 ? 1e-2 : 1e-6, $"swiglu dup ({where})");

            var xn = Random([3, 700, 512], 27, dtype, 2.0);
            if (offset) xn = Offset(xn);
            var w = Random([512], 28, dtype);
            var rn = Random([3, 700, 512], 29, dtype);
            var fr = Run((a, c) => F.RmsNorm(a, c, 1e-6), xn, w, rn, gradY: true);
            var cr = Run((a, c) => CompositeRmsNorm(a, c, 1e-6), xn, w, rn, gradY: true);
            Near(cr.Y, fr.Y, tol, $"rms y ({where})");
            Near(cr.Dx, fr.Dx, tol, $"rms dx ({where})");
            var (dw, norm) = RmsNormWeightGradient(xn, rn, 1e-6);
            double u = dtype == DType.BFloat16 ? 1.0 / 256 : 1e-6;
            for (int j = 0; j < dw.Length; j++)
                Assert.True(Math.Abs(fr.Dy![j] - dw[j]) <= u * (8 * norm[j] + Math.Abs(dw[j])), $"rms dw[{j}] ({where}): reference {dw[j]}, got {fr.Dy[j]}");
        }
    }

    /// <summary>In float64: Σ over rows of r·x/rms(x) per column, and √(Σ term²).</summary>
    private static (double[] Dw, double[] Norm) RmsNormWeightGradient(Tensor x, Tensor r, double eps)
    {
        long cols = x.Size(-1);
        var xs = x.To(DType.Float64).ToArray<double>();
        var rs = r.To(DType.Float64).ToArray<double>();
        var dw = new double[cols];
        var mag = new double[cols];
        for (long row = 0; row < xs.Length / cols; row++)
        {
            long o = row * cols;
            double ms = 0;
            for (long j = 0; j < cols; j++) ms += xs[o + j] * xs[o + j];
            double inv = 1 / Math.Sqrt(ms / cols + eps);
            for (long j = 0; j < cols; j++)
            {
                double term = rs[o + j] * xs[o + j] * inv;
                dw[j] += term;
                mag[j] += term * term;
            }
        }
        return (dw, mag.Select(Math.Sqrt).ToArray());
    }

    [Fact]
    public void Fused_kernels_are_reported_only_where_built()
    {
        // Reported only where they run: built in (native/build.sh found nvcc), not switched off, and a CUDA device.
        if (!Torch.Cuda.IsAvailable) Assert.False(Torch.FusedKernels);
    }
}
