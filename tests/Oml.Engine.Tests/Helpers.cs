namespace Oml.Engine.Tests;

/// <summary>
/// Where the tests run: OML_TEST_DEVICE=cuda (or cuda:N) runs every test on that GPU; the default is the CPU.
/// </summary>
public static class Env
{
    public static readonly Device Device = Device.Parse(Environment.GetEnvironmentVariable("OML_TEST_DEVICE") ?? "cpu");

    /// <summary>Floating types every value test runs in.</summary>
    public static TheoryData<DType> FloatTypes => new() { DType.Float32, DType.BFloat16 };

    /// <summary>Absolute-plus-relative tolerance appropriate to a dtype.</summary>
    public static double Tol(DType t) => t switch
    {
        DType.BFloat16 => 2e-2,
        DType.Float16 => 2e-3,
        DType.Float64 => 1e-10,
        _ => 1e-5,
    };

    public static Tensor T(double[] data, long[] shape, DType dtype = DType.Float32)
    {
        using var d = Torch.FromArray<double>(data, shape, Env.Device);
        return d.To(dtype);
    }

    public static Tensor T(float[] data, params long[] shape) => Torch.FromArray<float>(data, shape.Length == 0 ? null : shape, Env.Device);

    public static Tensor L(long[] data, params long[] shape) => Torch.FromArray<long>(data, shape.Length == 0 ? null : shape, Env.Device);
}

public static class Check
{
    /// <summary>Asserts shape and values, within |a - e| ≤ tol·(1 + |e|).</summary>
    public static void Close(double[] expected, Tensor actual, long[]? shape = null, double tol = 1e-5)
    {
        if (shape != null) Assert.Equal(shape, actual.Shape);
        var a = actual.ToArray<double>();
        Assert.Equal(expected.Length, a.Length);
        for (int i = 0; i < a.Length; i++)
        {
            if (double.IsNaN(expected[i])) { Assert.True(double.IsNaN(a[i]), $"element {i}: expected NaN, got {a[i]}"); continue; }
            if (double.IsInfinity(expected[i])) { Assert.Equal(expected[i], a[i]); continue; }
            if (!(Math.Abs(a[i] - expected[i]) <= tol * (1 + Math.Abs(expected[i]))))
                Assert.Fail($"element {i}: expected {expected[i]}, got {a[i]} (tolerance {tol}); all: [{string.Join(", ", a.Take(32))}]");
        }
    }

    public static void Equal(long[] expected, Tensor actual, long[]? shape = null)
    {
        if (shape != null) Assert.Equal(shape, actual.Shape);
        Assert.Equal(expected, actual.ToArray<long>());
    }

    /// <summary>
    /// Compares the autograd gradient of sum(f(inputs) · R), for a fixed random R, with central finite differences in float64.
    /// Every input is a float64 leaf; the numeric derivative perturbs one element at a time by ±h.
    /// </summary>
    public static void Gradients(Func<Tensor[], Tensor> f, params Tensor[] inputs)
    {
        using var scope = Torch.NewScope();
        const double h = 1e-6;
        foreach (var x in inputs) Assert.Equal(DType.Float64, x.DType);
        var values = inputs.Select(x => x.ToArray<double>()).ToArray();
        var shapes = inputs.Select(x => x.Shape).ToArray();

        Tensor[] Leaves(double[][] vals, bool grad) =>
            vals.Select((v, i) => Torch.FromArray<double>(v, shapes[i], Env.Device).RequiresGrad_(grad)).ToArray();

        // Fixed weights make every output element matter with a distinct coefficient.
        var probe = f(Leaves(values, false));
        var rng = new Random(1234);
        var weights = Enumerable.Range(0, (int)probe.NumEl).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var w = Torch.FromArray<double>(weights, probe.Shape, Env.Device);

        double Objective(double[][] vals)
        {
            using var s = Torch.NewScope();
            using var ng = Torch.NoGrad();
            return (f(Leaves(vals, false)).To(DType.Float64) * w).Sum().ToDouble();
        }

        var leaves = Leaves(values, true);
        var loss = (f(leaves).To(DType.Float64) * w).Sum();
        loss.Backward();

        for (int k = 0; k < inputs.Length; k++)
        {
            var g = leaves[k].Grad;
            var analytic = g?.ToArray<double>() ?? new double[values[k].Length];
            for (int i = 0; i < values[k].Length; i++)
            {
                var orig = values[k][i];
                values[k][i] = orig + h;
                var up = Objective(values);
                values[k][i] = orig - h;
                var down = Objective(values);
                values[k][i] = orig;
                var numeric = (up - down) / (2 * h);
                if (!(Math.Abs(numeric - analytic[i]) <= 1e-5 * (1 + Math.Abs(numeric))))
                    Assert.Fail($"input {k} element {i}: finite difference {numeric}, autograd {analytic[i]}");
            }
        }
    }
}
