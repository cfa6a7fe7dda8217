namespace Oml.Engine.Tests;

public class OptimTests
{
    /// <summary>The AdamW update written out in doubles, as in torch.optim.AdamW's documentation.</summary>
    private sealed class ReferenceAdamW(int n, double lr, double b1, double b2, double eps, double wd)
    {
        private readonly double[] _m = new double[n], _v = new double[n];
        private int _t;

        public void Step(double[] p, double[] g)
        {
            _t++;
            for (int i = 0; i < p.Length; i++)
            {
                p[i] -= lr * wd * p[i];
                _m[i] = b1 * _m[i] + (1 - b1) * g[i];
                _v[i] = b2 * _v[i] + (1 - b2) * g[i] * g[i];
                double mHat = _m[i] / (1 - Math.Pow(b1, _t));
                double vHat = _v[i] / (1 - Math.Pow(b2, _t));
                p[i] -= lr * mHat / (Math.Sqrt(vHat) + eps);
            }
        }
    }

    [Theory]
    [InlineData(DType.Float64, 1e-12)]
    [InlineData(DType.Float32, 1e-5)]
    public void AdamW_follows_its_formula_on_a_quadratic(DType dt, double tol)
    {
        // Minimise sum((p - target)^2 * scale) from a fixed start; compare every step with the formula.
        using var s = Torch.NewScope();
        double[] start = [3, -2, 0.5, 4];
        double[] target = [1, 1, -1, 2];
        double[] scale = [1, 10, 0.1, 2];
        var p = Torch.FromArray<double>(start, null, Env.Device).To(dt).RequiresGrad_();
        var tgt = Torch.FromArray<double>(target, null, Env.Device).To(dt);
        var sc = Torch.FromArray<double>(scale, null, Env.Device).To(dt);
        const double lr = 0.05, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
        using var opt = new AdamW([p], lr, b1, b2, eps, wd);
        var reference = new ReferenceAdamW(4, lr, b1, b2, eps, wd);
        var rp = (double[])start.Clone();

        for (int step = 1; step <= 50; step++)
        {
            using (Torch.NewScope())
            {
                opt.ZeroGrad();
                var loss = ((p - tgt).Square() * sc).Sum();
                loss.Backward();
                opt.Step();
            }
            var g = rp.Select((v, i) => 2 * (v - target[i]) * scale[i]).ToArray();
            reference.Step(rp, g);
            Check.Close(rp, p, null, tol);
            Assert.Equal(step, opt.StepOf(p));
        }
        // And it actually optimises.
        double Loss(double[] v) => v.Select((x, i) => (x - target[i]) * (x - target[i]) * scale[i]).Sum();
        Assert.True(Loss(p.ToArray<double>()) < 0.5 * Loss(start), $"loss {Loss(start)} -> {Loss(p.ToArray<double>())}");
    }

    [Fact]
    public void AdamW_parameter_groups_have_their_own_settings_and_skip_missing_gradients()
    {
        using var s = Torch.NewScope();
        var a = Torch.FromArray(new[] { 1.0 }).To(Env.Device).RequiresGrad_();
        var b = Torch.FromArray(new[] { 1.0 }).To(Env.Device).RequiresGrad_();
        var c = Torch.FromArray(new[] { 1.0 }).To(Env.Device).RequiresGrad_();
        using var opt = new AdamW([new ParamGroup([a], lr: 0.1, weightDecay: 0), new ParamGroup([b, c], lr: 0.01, weightDecay: 0.5)],
            lr: 999, weightDecay: 999);
        (a + b).Sum().Backward(); // c gets no gradient
        opt.Step();
        // First Adam step moves by lr·sign(g) (m̂/√v̂ = 1) after decoupled decay p·(1 − lr·wd).
        Check.Close([1 - 0.1], a, null, 1e-7);
        Check.Close([1 * (1 - 0.01 * 0.5) - 0.01], b, null, 1e-7);
        Check.Close([1], c, null, 0);
        Assert.Equal(0, opt.StepOf(c));
        Assert.Equal(1, opt.StepOf(a));
        Assert.NotNull(opt.MomentsOf(a));
        Assert.Null(opt.MomentsOf(c));
        Assert.Throws<ArgumentException>(() => new AdamW([Torch.Zeros([1])]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW([a], beta1: 1.0));
    }

    [Fact]
    public void Clip_grad_norm_scales_to_the_global_norm()
    {
        using var s = Torch.NewScope();
        var a = Torch.FromArray(new[] { 1.0, 2.0 }).To(Env.Device).RequiresGrad_();
        var b = Torch.FromArray(new[] { 3.0 }).To(Env.Device).RequiresGrad_();
        var none = Torch.FromArray(new[] { 3.0 }).To(Env.Device).RequiresGrad_();
        // Gradients (3, 4) and (12): global norm 13.
        (a * Torch.FromArray(new[] { 3.0, 4.0 }).To(Env.Device)).Sum().Backward();
        (b * 12).Sum().Backward();
        var norm = Torch.ClipGradNorm([a, b, none], 6.5);
        Assert.Equal(13, norm, 6);
        Check.Close([1.5, 2], a.Grad!, null, 1e-6);
        Check.Close([6], b.Grad!, null, 1e-6);
        // Below the limit nothing changes.
        var again = Torch.ClipGradNorm([a, b], 100);
        Assert.Equal(6.5, again, 1e-4);
        Check.Close([1.5, 2], a.Grad!, null, 1e-6);
    }

    [Fact]
    public void Clip_grad_norm_of_bfloat16_and_float32_gradients_is_reduced_in_float32_and_scales_both()
    {
        using var s = Torch.NewScope();
        // 4,096 bfloat16 gradients of 1 (norm 64: a bfloat16 running sum would stop at 256 before reaching 4,096) beside a
        // float32 gradient (3, 4): global norm sqrt(4,096 + 25).
        var a = Torch.Ones([4096]).To(DType.BFloat16, Env.Device).RequiresGrad_();
        var b = Torch.FromArray(new[] { 1.0f, 1.0f }).To(Env.Device).RequiresGrad_();
        a.Sum().Backward();
        (b * Torch.FromArray(new[] { 3.0f, 4.0f }).To(Env.Device)).Sum().Backward();
        var expected = Math.Sqrt(4096 + 25);
        using var norm = Torch.ClipGradNormTensor([a, b], 32);
        Assert.Equal(DType.Float32, norm.DType);
        Assert.Equal(expected, norm.ToDouble(), 3);
        var scale = 32 / (expected + 1e-6);
        Assert.Equal(DType.BFloat16, a.Grad!.DType);
        Check.Close(Enumerable.Repeat(scale, 4096).ToArray(), a.Grad!.To(DType.Float32), null, 4e-3);
        Check.Close([3 * scale, 4 * scale], b.Grad!, null, 1e-5);
        // No gradient at all: a norm of 0 and nothing to scale.
        var c = Torch.Ones([2]).RequiresGrad_();
        Assert.Equal(0, Torch.ClipGradNorm([c], 1.0));
        using var zero = Torch.ClipGradNormTensor([c], 1.0);
        Assert.Equal(0, zero.ToDouble());
    }

    [Fact]
    public void Thread_count_defaults_to_all_cores_and_can_be_set()
    {
        Assert.Equal(Environment.ProcessorCount, Torch.Threads);
        try
        {
            Torch.Threads = 1;
            Assert.Equal(1, Torch.Threads);
        }
        finally
        {
            Torch.Threads = Environment.ProcessorCount;
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Torch.Threads = 0);
    }
}
