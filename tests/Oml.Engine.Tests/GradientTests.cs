namespace Oml.Engine.Tests;

/// <summary>Every differentiable operation's autograd gradient against central finite differences in float64.</summary>
public class GradientTests
{
    private static Tensor D(params long[] shape)
    {
        // Values in [0.5, 1.5) keep log/sqrt/div well away from their singularities; a fixed seed keeps the test repeatable.
        var rng = new Random((int)shape.Aggregate(17L, (a, b) => a * 31 + b));
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var data = Enumerable.Range(0, (int)n).Select(_ => 0.5 + rng.NextDouble()).ToArray();
        return Torch.FromArray<double>(data, shape, Env.Device);
    }

    /// <summary>Values in (-1.5, 1.5) with no element near 0, for functions with kinks at 0.</summary>
    private static Tensor S(params long[] shape)
    {
        using var d = D(shape);
        using var sign = Torch.FromArray<double>(Enumerable.Range(0, (int)d.NumEl).Select(i => i % 2 == 0 ? 1.0 : -1.0).ToArray(), shape, Env.Device);
        return d * sign;
    }

    private static Tensor Ids(long[] values, params long[] shape) => Torch.FromArray<long>(values, shape, Env.Device);

    public static TheoryData<string> UnaryOps => new()
    {
        "neg", "exp", "log", "log1p", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "silu", "gelu", "gelu_tanh",
        "sin", "cos", "square", "reciprocal", "pow_scalar", "softmax", "log_softmax", "clamp", "scalar_ops",
    };

    [Theory, MemberData(nameof(UnaryOps))]
    public void Unary(string op)
    {
        using var s = Torch.NewScope();
        Func<Tensor, Tensor> f = op switch
        {
            "neg" => x => x.Neg(),
            "exp" => x => x.Exp(),
            "log" => x => x.Log(),
            "log1p" => x => x.Log1p(),
            "sqrt" => x => x.Sqrt(),
            "rsqrt" => x => x.Rsqrt(),
            "abs" => x => x.Abs(),
            "tanh" => x => x.Tanh(),
            "sigmoid" => x => x.Sigmoid(),
            "relu" => x => x.Relu(),
            "silu" => x => x.Silu(),
            "gelu" => x => x.Gelu(),
            "gelu_tanh" => x => x.Gelu(true),
            "sin" => x => x.Sin(),
            "cos" => x => x.Cos(),
            "square" => x => x.Square(),
            "reciprocal" => x => x.Reciprocal(),
            "pow_scalar" => x => x.Pow(2.5),
            "softmax" => x => x.Softmax(-1),
            "log_softmax" => x => x.LogSoftmax(0),
            "clamp" => x => x.Clamp(-1.1, 1.2),
            "scalar_ops" => x => (2 - x) * 3 / (x + 4) - 1 / x,
            _ => throw new ArgumentException(op),
        };
        var input = op is "log" or "log1p" or "sqrt" or "rsqrt" or "pow_scalar" or "reciprocal" ? D(2, 3) : S(2, 3);
        Check.Gradients(xs => f(xs[0]), input);
    }

    public static TheoryData<string> BinaryOps => new() { "add", "sub", "mul", "div", "pow", "maximum", "minimum", "add_alpha" };

    [Theory, MemberData(nameof(BinaryOps))]
    public void Binary_with_broadcasting(string op)
    {
        using var s = Torch.NewScope();
        Func<Tensor, Tensor, Tensor> f = op switch
        {
            "add" => (a, b) => a + b,
            "sub" => (a, b) => a - b,
            "mul" => (a, b) => a * b,
            "div" => (a, b) => a / b,
            "pow" => (a, b) => a.Pow(b),
            "maximum" => (a, b) => a.Maximum(b),
            "minimum" => (a, b) => a.Minimum(b),
            "add_alpha" => (a, b) => a.Sub(b, alpha: 0.5),
            _ => throw new ArgumentException(op),
        };
        // b broadcasts along the first dimension; maximum/minimum get inputs with no ties.
        var a = D(2, 3);
        var b = op is "maximum" or "minimum" ? D(3) + 0.013 : D(3);
        Check.Gradients(xs => f(xs[0], xs[1]), a, b);
    }

    [Fact]
    public void Matmul_batched_and_linear()
    {
        using var s = Torch.NewScope();
        Check.Gradients(xs => xs[0].MatMul(xs[1]), D(2, 3), D(3, 2));
        Check.Gradients(xs => xs[0].MatMul(xs[1]), D(2, 2, 3), D(2, 3, 2));
        Check.Gradients(xs => xs[0].MatMul(xs[1]), D(2, 2, 3), D(3, 1));
        Check.Gradients(xs => F.Linear(xs[0], xs[1], xs[2]), D(2, 3), D(4, 3), D(4));
        Check.Gradients(xs => F.Linear(xs[0], xs[1]), D(2, 2, 3), D(4, 3));
    }

    [Fact]
    public void Indexing_ops()
    {
        using var s = Torch.NewScope();
        Check.Gradients(xs => F.Embedding(Ids([2, 0, 2, 1], 2, 2), xs[0]), D(3, 2));
        Check.Gradients(xs => xs[0].IndexSelect(1, Ids([2, 0, 2], 3)), D(2, 3));
        Check.Gradients(xs => xs[0].Gather(1, Ids([1, 0, 2, 2], 2, 2)), D(2, 3));
        Check.Gradients(xs => xs[0].Scatter(1, Ids([2, 0, 1, 2], 2, 2), xs[1]), D(2, 3), D(2, 2));
        Check.Gradients(xs => xs[0].ScatterAdd(1, Ids([2, 2, 1, 0], 2, 2), xs[1]), D(2, 3), D(2, 2));
        Check.Gradients(xs => xs[0].Index(Ids([1, 1, 0], 3)), D(2, 3));
        Check.Gradients(xs => xs[0].MaskedSelect(xs[0].Gt(1.0).Detach()), D(2, 3));
    }

    [Fact]
    public void Shape_ops()
    {
        using var s = Torch.NewScope();
        Check.Gradients(xs => Torch.Cat([xs[0], xs[1]], 1), D(2, 3), D(2, 1));
        Check.Gradients(xs => Torch.Stack([xs[0], xs[1]], 0), D(2, 3), D(2, 3));
        Check.Gradients(xs => xs[0].Narrow(1, 1, 2), D(2, 3));
        Check.Gradients(xs => xs[0].Slice(1, 0, 3, 2), D(2, 3));
        Check.Gradients(xs => xs[0].Select(0, 1), D(2, 3));
        Check.Gradients(xs => xs[0].View(3, 2), D(2, 3));
        Check.Gradients(xs => xs[0].Transpose(0, 1).Reshape(6), D(2, 3));
        Check.Gradients(xs => xs[0].Permute(2, 0, 1), D(2, 3, 2));
        Check.Gradients(xs => xs[0].Expand(3, 2, 3), D(1, 2, 3));
        Check.Gradients(xs => xs[0].Repeat(2, 1), D(2, 3));
        Check.Gradients(xs => xs[0].RepeatInterleave(2, 1), D(2, 3));
        Check.Gradients(xs => xs[0].Unsqueeze(1).Squeeze(1), D(2, 3));
        Check.Gradients(xs => xs[0].Flatten(), D(2, 3));
        Check.Gradients(xs => xs[0].Flip(1), D(2, 3));
        Check.Gradients(xs => xs[0].Contiguous(), D(2, 3));
    }

    [Fact]
    public void Masking_ops()
    {
        using var s = Torch.NewScope();
        var mask = Torch.FromArray<bool>([true, false, true, false, false, true], [2, 3], Env.Device);
        Check.Gradients(xs => Torch.Where(mask, xs[0], xs[1]), D(2, 3), D(2, 3));
        Check.Gradients(xs => xs[0].MaskedFill(mask, -3), D(2, 3));
        Check.Gradients(xs => xs[0].Triu(), D(3, 3));
        Check.Gradients(xs => xs[0].Tril(-1), D(3, 3));
    }

    public static TheoryData<string> Reductions => new()
    {
        "sum", "sum_dim", "mean", "mean_dim", "amax", "amin", "prod", "norm", "norm_dim", "logsumexp", "var", "max_values",
        "min_values", "topk", "sort", "cumsum",
    };

    [Theory, MemberData(nameof(Reductions))]
    public void Reduce(string op)
    {
        using var s = Torch.NewScope();
        Func<Tensor, Tensor> f = op switch
        {
            "sum" => x => x.Sum(),
            "sum_dim" => x => x.Sum(0, keepDim: true),
            "mean" => x => x.Mean(),
            "mean_dim" => x => x.Mean([0, 1]),
            "amax" => x => x.Amax(1),
            "amin" => x => x.Amin(0),
            "prod" => x => x.Prod(1),
            "norm" => x => x.Norm(),
            "norm_dim" => x => x.Norm(1),
            "logsumexp" => x => x.LogSumExp(1),
            "var" => x => x.Var(1),
            "max_values" => x => x.Max(1).Values,
            "min_values" => x => x.Min(0).Values,
            "topk" => x => x.TopK(2, 1).Values,
            "sort" => x => x.Sort(1, descending: true).Values,
            "cumsum" => x => x.CumSum(1),
            _ => throw new ArgumentException(op),
        };
        Check.Gradients(xs => f(xs[0]), D(2, 3));
    }

    [Fact]
    public void Losses_and_norms()
    {
        using var s = Torch.NewScope();
        Check.Gradients(xs => F.CrossEntropy(xs[0], Ids([2, -100, 0, 1], 4)), S(4, 3));
        Check.Gradients(xs => F.CrossEntropy(xs[0], Ids([2, 1, 0, 1], 4), reduction: Oml.Engine.Reduction.Sum), S(4, 3));
        Check.Gradients(xs => F.CrossEntropy(xs[0], Ids([2, 1, 0, 1], 4), labelSmoothing: 0.1), S(4, 3));
        Check.Gradients(xs => F.MseLoss(xs[0], xs[1]), D(2, 3), D(2, 3));
        Check.Gradients(xs => F.RmsNorm(xs[0], xs[1], 1e-6), S(2, 4), D(4));
        Check.Gradients(xs => F.LayerNorm(xs[0], [4], xs[1], xs[2]), S(2, 4), D(4), D(4));
    }

    [Fact]
    public void Attention()
    {
        using var s = Torch.NewScope();
        Check.Gradients(xs => F.ScaledDotProductAttention(xs[0], xs[1], xs[2]), S(1, 2, 3, 2), S(1, 2, 3, 2), S(1, 2, 3, 2));
        Check.Gradients(xs => F.ScaledDotProductAttention(xs[0], xs[1], xs[2], isCausal: true), S(1, 2, 3, 2), S(1, 2, 3, 2), S(1, 2, 3, 2));
        var mask = Torch.FromArray<bool>([true, false, true, true, true, false, true, true, true], [1, 1, 3, 3], Env.Device);
        Check.Gradients(xs => F.ScaledDotProductAttention(xs[0], xs[1], xs[2], mask: mask, scale: 0.7), S(1, 2, 3, 2), S(1, 2, 3, 2), S(1, 2, 3, 2));
    }

    [Fact]
    public void Casts_pass_gradients_through()
    {
        // A float32 round trip is too coarse for finite differences; the gradient of a cast is the identity, cast back.
        using var s = Torch.NewScope();
        var x = D(2, 2).RequiresGrad_();
        var w = Torch.FromArray(new[] { 1.0, -2.0, 0.5, 3.0 }, 2, 2).To(Env.Device);
        (x.To(DType.Float32).To(DType.BFloat16).To(DType.Float64) * w).Sum().Backward();
        Assert.Equal(DType.Float64, x.Grad!.DType);
        Check.Close([1, -2, 0.5, 3], x.Grad!, [2, 2], 0);
    }

    [Fact]
    public void Autograd_api_no_grad_detach_and_accumulation()
    {
        using var s = Torch.NewScope();
        var x = Torch.FromArray(new[] { 1.0, 2.0, 3.0 }).To(Env.Device).RequiresGrad_();
        Assert.True(x.RequiresGrad);
        Assert.True(x.IsLeaf);
        Assert.Null(x.Grad);
        (x * x).Sum().Backward();
        Check.Close([2, 4, 6], x.Grad!);
        // Gradients accumulate until cleared.
        (x * 3).Sum().Backward();
        Check.Close([5, 7, 9], x.Grad!);
        x.Grad = null;
        Assert.Null(x.Grad);

        using (Torch.NoGrad())
        {
            Assert.False(Torch.IsGradEnabled);
            var y = x * 2;
            Assert.False(y.RequiresGrad);
            using (Torch.EnableGrad()) Assert.True((x * 2).RequiresGrad);
        }
        Assert.True(Torch.IsGradEnabled);

        var d = x.Detach();
        Assert.False(d.RequiresGrad);
        Assert.False((d * 2).RequiresGrad);

        // Non-scalar backward with an explicit gradient, and retain_graph for a second pass.
        var z = x * x;
        z.Backward(Torch.FromArray(new[] { 1.0, 0.0, 2.0 }).To(Env.Device), retainGraph: true);
        Check.Close([2, 0, 12], x.Grad!);
        z.Backward(Torch.FromArray(new[] { 1.0, 0.0, 2.0 }).To(Env.Device));
        Check.Close([4, 0, 24], x.Grad!);

        // torch.autograd.grad, including an unused input.
        var w = Torch.FromArray(new[] { 5.0 }).To(Env.Device).RequiresGrad_();
        var unused = Torch.FromArray(new[] { 1.0 }).To(Env.Device).RequiresGrad_();
        var g = Torch.Gradients([(w * w * w).Sum()], [w, unused]);
        Check.Close([75], g[0]!);
        Assert.Null(g[1]);
    }
}
