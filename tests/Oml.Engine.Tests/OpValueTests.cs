using static Oml.Engine.Tests.Env;

namespace Oml.Engine.Tests;

/// <summary>Each operation's values against results computed by hand.</summary>
public class OpValueTests
{
    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Elementwise_arithmetic_broadcasts(DType dt)
    {
        using var s = Torch.NewScope();
        var a = T([1, 2, 3, 4, 5, 6], [2, 3], dt);
        var b = T([10, 20, 30], [3], dt);
        Check.Close([11, 22, 33, 14, 25, 36], a + b, [2, 3], Tol(dt));
        Check.Close([-9, -18, -27, -6, -15, -24], a - b, [2, 3], Tol(dt));
        Check.Close([10, 40, 90, 40, 100, 180], a * b, [2, 3], Tol(dt));
        Check.Close([0.1, 0.1, 0.1, 0.4, 0.25, 0.2], a / b, [2, 3], Tol(dt));
        Check.Close([-1, 0, 1, 2, 3, 4], a - 2, null, Tol(dt));
        Check.Close([1, 0, -1, -2, -3, -4], 2 - a, null, Tol(dt));
        Check.Close([2, 1, 2.0 / 3, 0.5, 0.4, 2.0 / 6], 2 / a, null, Tol(dt));
        Check.Close([0.5, 1, 1.5, 2, 2.5, 3], a * 0.5, null, Tol(dt));
        Check.Close([-1, -2, -3, -4, -5, -6], -a, null, Tol(dt));
        Check.Close([21, 42, 63, 24, 45, 66], a.Add(b, alpha: 2), null, Tol(dt));
        Check.Close([1, 0, 1, 0, 1, 0], a.Remainder(2), null, Tol(dt));
        Check.Close([0, 1, 1, 2, 2, 3], a.FloorDivide(2), null, Tol(dt));
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Pointwise_functions(DType dt)
    {
        using var s = Torch.NewScope();
        var x = T([0.25, 1, 4], [3], dt);
        Check.Close([0.0625, 1, 16], x.Pow(2), null, Tol(dt));
        Check.Close([0.0625, 1, 16], x.Square(), null, Tol(dt));
        Check.Close([0.5, 1, 2], x.Sqrt(), null, Tol(dt));
        Check.Close([2, 1, 0.5], x.Rsqrt(), null, Tol(dt));
        Check.Close([4, 1, 0.25], x.Reciprocal(), null, Tol(dt));
        Check.Close([Math.Exp(0.25), Math.E, Math.Exp(4)], x.Exp(), null, Tol(dt));
        Check.Close([Math.Log(0.25), 0, Math.Log(4)], x.Log(), null, Tol(dt));
        Check.Close([Math.Log(1.25), Math.Log(2), Math.Log(5)], x.Log1p(), null, Tol(dt));
        Check.Close([0.5, 1, 2], x.Pow(T([0.5, 3, 0.5], [3], dt)), null, Tol(dt));

        var y = T([-2, -0.5, 0, 0.5, 2], [5], dt);
        static double Sig(double v) => 1 / (1 + Math.Exp(-v));
        static double Erf(double v) // Abramowitz–Stegun 7.1.26 is too coarse; use a series good to 1e-12 for |v| < 3.
        {
            double sum = 0, term = v;
            for (int n = 0; n < 60; n++) { sum += term / (2 * n + 1); term *= -v * v / (n + 1); }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        double[] ys = [-2, -0.5, 0, 0.5, 2];
        Check.Close(ys.Select(Math.Abs).ToArray(), y.Abs(), null, Tol(dt));
        Check.Close(ys.Select(Math.Tanh).ToArray(), y.Tanh(), null, Tol(dt));
        Check.Close(ys.Select(Sig).ToArray(), y.Sigmoid(), null, Tol(dt));
        Check.Close(ys.Select(v => Math.Max(v, 0)).ToArray(), y.Relu(), null, Tol(dt));
        Check.Close(ys.Select(v => v * Sig(v)).ToArray(), y.Silu(), null, Tol(dt));
        Check.Close(ys.Select(v => 0.5 * v * (1 + Erf(v / Math.Sqrt(2)))).ToArray(), y.Gelu(), null, Tol(dt));
        Check.Close(ys.Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray(),
            y.Gelu(tanhApproximation: true), null, Tol(dt));
        Check.Close(ys.Select(Math.Sin).ToArray(), y.Sin(), null, Tol(dt));
        Check.Close(ys.Select(Math.Cos).ToArray(), y.Cos(), null, Tol(dt));
        Check.Close([-1, -1, 0, 1, 1], y.Sign(), null, Tol(dt));
        Check.Close([-2, -1, 0, 0, 2], y.Floor(), null, Tol(dt));
        Check.Close([-2, -0, 0, 1, 2], y.Ceil(), null, Tol(dt));
        Check.Close([-1, -0.5, 0, 0.5, 1], y.Clamp(-1, 1), null, Tol(dt));
        Check.Close([0, 0, 0, 0.5, 2], y.Clamp(min: 0), null, Tol(dt));
        Check.Close([-2, -0.5, 0, 0, 0], y.Clamp(max: 0), null, Tol(dt));
        var z = T([1, -1, 1, -1, 1], [5], dt);
        Check.Close([1, -0.5, 1, 0.5, 2], y.Maximum(z), null, Tol(dt));
        Check.Close([-2, -1, 0, -1, 1], y.Minimum(z), null, Tol(dt));
    }

    [Fact]
    public void Comparisons_and_logic()
    {
        using var s = Torch.NewScope();
        var a = T([1f, 2, 3, 4]);
        var b = T([4f, 2, 1, 4]);
        Assert.Equal(DType.Bool, a.Eq(b).DType);
        Assert.Equal([false, true, false, true], a.Eq(b).ToArray<bool>());
        Assert.Equal([true, false, true, false], a.Ne(b).ToArray<bool>());
        Assert.Equal([true, false, false, false], a.Lt(b).ToArray<bool>());
        Assert.Equal([true, true, false, true], a.Le(b).ToArray<bool>());
        Assert.Equal([false, false, true, false], a.Gt(b).ToArray<bool>());
        Assert.Equal([false, true, true, true], a.Ge(b).ToArray<bool>());
        Assert.Equal([false, false, true, true], a.Gt(2.5).ToArray<bool>());
        Assert.Equal([false, true, false, false], a.Eq(2).ToArray<bool>());
        var p = a.Gt(1);
        var q = b.Gt(1);
        Assert.Equal([false, true, false, true], p.LogicalAnd(q).ToArray<bool>());
        Assert.Equal([true, true, true, true], p.LogicalOr(q).ToArray<bool>());
        Assert.Equal([true, false, false, false], p.LogicalNot().ToArray<bool>());
        Assert.True(p.Any().ToBoolean());
        Assert.False(p.All().ToBoolean());
        var nan = T([1f, float.NaN, float.PositiveInfinity]);
        Assert.Equal([true, false, false], nan.IsFinite().ToArray<bool>());
        Assert.Equal([false, true, false], nan.IsNan().ToArray<bool>());
        var i = L([0b1100, 0b1010]);
        Assert.Equal([0b1000L, 0b1010], i.BitwiseAnd(L([0b1010, 0b1111])).ToArray<long>());
        Assert.Equal([0b1110L, 0b1111], i.BitwiseOr(L([0b1010, 0b0101])).ToArray<long>());
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Matmul_linear_and_batched(DType dt)
    {
        using var s = Torch.NewScope();
        var a = T([1, 2, 3, 4, 5, 6], [2, 3], dt);
        var b = T([1, 0, 0, 1, 1, 1], [3, 2], dt);
        Check.Close([4, 5, 10, 11], a.MatMul(b), [2, 2], Tol(dt));
        // Batched: [2, 2, 3] x [3, 2] broadcasts over the batch.
        var ab = T([1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6], [2, 2, 3], dt);
        Check.Close([4, 5, 10, 11, -4, -5, -10, -11], ab.MatMul(b), [2, 2, 2], Tol(dt));
        // Batched with batched: [2, 2, 3] x [2, 3, 1].
        var bb = T([1, 1, 1, 1, 0, 0], [2, 3, 1], dt);
        Check.Close([6, 15, -1, -4], ab.MatMul(bb), [2, 2, 1], Tol(dt));
        // Linear: x [2,3], W [2,3] (out,in), bias [2] -> x Wᵀ + b.
        var w = T([1, 0, 1, 0, 1, 0], [2, 3], dt);
        var bias = T([0.5, -0.5], [2], dt);
        Check.Close([4.5, 1.5, 10.5, 4.5], F.Linear(a, w, bias), [2, 2], Tol(dt));
        Check.Close([4, 2, 10, 5], F.Linear(a, w), [2, 2], Tol(dt));
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Softmax_and_log_softmax(DType dt)
    {
        using var s = Torch.NewScope();
        var x = T([1, 2, 3, 0, 0, 0], [2, 3], dt);
        double z = Math.Exp(1) + Math.Exp(2) + Math.Exp(3);
        double[] row0 = [Math.Exp(1) / z, Math.Exp(2) / z, Math.Exp(3) / z];
        Check.Close([.. row0, 1.0 / 3, 1.0 / 3, 1.0 / 3], x.Softmax(-1), [2, 3], Tol(dt));
        Check.Close([.. row0.Select(v => Math.Log(v)), -Math.Log(3), -Math.Log(3), -Math.Log(3)], x.LogSoftmax(1), [2, 3], Tol(dt));
        // Along dim 0.
        double e = Math.Exp(1);
        Check.Close([e / (e + 1), Math.Exp(2) / (Math.Exp(2) + 1), Math.Exp(3) / (Math.Exp(3) + 1),
            1 / (e + 1), 1 / (Math.Exp(2) + 1), 1 / (Math.Exp(3) + 1)], x.Softmax(0), null, Tol(dt));
        Check.Close([Math.Log(z), Math.Log(3)], x.LogSumExp(1), [2], Tol(dt));
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Embedding_index_select_gather_scatter(DType dt)
    {
        using var s = Torch.NewScope();
        var w = T([0, 1, 10, 11, 20, 21, 30, 31], [4, 2], dt);
        var ids = L([3, 0, 3, 1, 2, 2], 2, 3);
        Check.Close([30, 31, 0, 1, 30, 31, 10, 11, 20, 21, 20, 21], F.Embedding(ids, w), [2, 3, 2], Tol(dt));
        Check.Close([20, 21, 0, 1], w.IndexSelect(0, L([2, 0])), [2, 2], Tol(dt));
        Check.Close([1, 10, 21, 30], w.Gather(1, L([1, 0, 1, 0], 4, 1)).Flatten(), [4], Tol(dt));
        var zeros = Torch.Zeros([2, 3], dt, Env.Device);
        var src = T([1, 2, 3, 4, 5, 6], [2, 3], dt);
        // out[i][index[i][j]] = src[i][j] along dim 1.
        Check.Close([3, 1, 2, 5, 6, 4], zeros.Scatter(1, L([1, 2, 0, 2, 0, 1], 2, 3), src), [2, 3], Tol(dt));
        Check.Close([1, 0, 2, 0, 0, 15], zeros.ScatterAdd(1, L([0, 2, 2, 2, 2, 2], 2, 3), T([1, 1, 1, 4, 5, 6], [2, 3], dt)), [2, 3], Tol(dt));
        Check.Close([0, 9, 0, 0, 9, 0], zeros.Scatter(1, L([1, 1], 2, 1), 9.0), [2, 3], Tol(dt));
        Check.Close([0, 1, 20, 21], w.Index(L([0, 2])), [2, 2], Tol(dt));
        Check.Close([10, 11, 30, 31], w.Index(Torch.FromArray<bool>([false, true, false, true], null, Env.Device)), [2, 2], Tol(dt));
        Check.Close([11, 20, 21, 30, 31], w.MaskedSelect(w.Gt(10)), [5], Tol(dt));
    }

    [Fact]
    public void Shape_operations()
    {
        using var s = Torch.NewScope();
        var x = T([0f, 1, 2, 3, 4, 5], 2, 3);
        Check.Close([0, 1, 2, 3, 4, 5], x.View(3, 2), [3, 2]);
        Check.Close([0, 1, 2, 3, 4, 5], x.Reshape(6), [6]);
        Check.Close([0, 1, 2, 3, 4, 5], x.View(-1, 2), [3, 2]);
        Check.Close([0, 3, 1, 4, 2, 5], x.Transpose(0, 1).Contiguous(), [3, 2]);
        Assert.False(x.Transpose(0, 1).IsContiguous);
        Check.Close([0, 3, 1, 4, 2, 5], x.Transpose(0, 1).Reshape(6), [6]);
        var y = T([0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 2, 3, 2);
        Check.Close([0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11], y.Permute(0, 2, 1).Contiguous(), [2, 2, 3]);
        Check.Close([1, 2, 4, 5], x.Narrow(1, 1, 2), [2, 2]);
        Check.Close([0, 2, 3, 5], x.Slice(1, 0, long.MaxValue, 2), [2, 2]);
        Check.Close([3, 4, 5], x.Select(0, 1), [3]);
        Check.Close([2, 5], x.Select(1, -1), [2]);
        Check.Close([0, 1, 2, 3, 4, 5], x.Unsqueeze(0), [1, 2, 3]);
        Check.Close([0, 1, 2, 3, 4, 5], x.Unsqueeze(0).Squeeze(0), [2, 3]);
        Check.Close([0, 1, 2, 0, 1, 2], x.Narrow(0, 0, 1).Expand(2, 3), [2, 3]);
        Check.Close([0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5], x.Repeat(1, 2), [2, 6]);
        Check.Close([0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5], x.RepeatInterleave(2, 0), [4, 3]);
        Check.Close([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], y.Flatten(1), [2, 6]);
        Check.Close([5, 4, 3, 2, 1, 0], x.Flip(0, 1), [2, 3]);
        Check.Close([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5], Torch.Cat([x, x], 0), [4, 3]);
        Check.Close([0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5], Torch.Cat([x, x], 1), [2, 6]);
        Check.Close([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5], Torch.Stack([x, x], 0), [2, 2, 3]);
        Check.Close([0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5], Torch.Stack([x, x], 1), [2, 2, 3]);
        Assert.Equal(3, x.Size(-1));
        Assert.Equal(2, x.Dim);
        Assert.Equal(6, x.NumEl);
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Where_masked_fill_triu_tril(DType dt)
    {
        using var s = Torch.NewScope();
        var x = T([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3], dt);
        var mask = x.Gt(4);
        Check.Close([1, 2, 3, 4, 0, 0, 0, 0, 0], x.MaskedFill(mask, 0), [3, 3], Tol(dt));
        Check.Close([-1, -1, -1, -1, 5, 6, 7, 8, 9], Torch.Where(mask, x, Torch.Full([1], -1, dt, Env.Device)), [3, 3], Tol(dt));
        Check.Close([1, 2, 3, 0, 5, 6, 0, 0, 9], x.Triu(), null, Tol(dt));
        Check.Close([0, 2, 3, 0, 0, 6, 0, 0, 0], x.Triu(1), null, Tol(dt));
        Check.Close([1, 0, 0, 4, 5, 0, 7, 8, 9], x.Tril(), null, Tol(dt));
        Check.Close([0, 0, 0, 4, 0, 0, 7, 8, 0], x.Tril(-1), null, Tol(dt));
        Check.Close([double.NegativeInfinity, 2, 3, 4, 5, 6, 7, 8, 9], x.MaskedFill(x.Eq(1), double.NegativeInfinity), null, Tol(dt));
    }

    [Fact]
    public void Creation()
    {
        using var s = Torch.NewScope();
        Check.Equal([0, 1, 2, 3, 4], Torch.Arange(5, device: Env.Device), [5]);
        Check.Close([1, 1.5, 2, 2.5], Torch.Arange(1, 3, 0.5, DType.Float32, Env.Device), [4]);
        Check.Close([7, 7, 7, 7, 7, 7], Torch.Full([2, 3], 7, device: Env.Device), [2, 3]);
        Check.Close([0, 0], Torch.Zeros([2], device: Env.Device), [2]);
        Check.Close([1, 1], Torch.Ones([2], device: Env.Device), [2]);
        Check.Close([1, 0, 0, 1], Torch.Eye(2, device: Env.Device), [2, 2]);
        Assert.Equal(DType.BFloat16, Torch.Zeros([3], DType.BFloat16, Env.Device).DType);
        Assert.Equal(Env.Device, Torch.Zeros([3], device: Env.Device).Device);
        Assert.Equal(3.5, Torch.Scalar(3.5, DType.Float64).ToDouble());
        Assert.Empty(Torch.Scalar(1).Shape);
        var r = Torch.Rand([1000], device: Env.Device);
        Assert.True(r.Min().ToDouble() >= 0 && r.Max().ToDouble() < 1);
        var n = Torch.Randn([10000], device: Env.Device);
        Assert.InRange(n.Mean().ToDouble(), -0.05, 0.05);
        Assert.InRange(n.Var(0).ToDouble(), 0.9, 1.1);
        var ri = Torch.RandInt(3, 7, [1000], device: Env.Device);
        Assert.Equal(3, ri.Min().ToInt64());
        Assert.Equal(6, ri.Max().ToInt64());
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float16)]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float64)]
    [InlineData(DType.Int64)]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int16)]
    [InlineData(DType.Int8)]
    [InlineData(DType.UInt8)]
    [InlineData(DType.Bool)]
    public void Casts_and_device_moves_round_trip(DType dt)
    {
        using var s = Torch.NewScope();
        var x = T([0f, 1, 2, 3, 1, 0], 2, 3);
        var y = x.To(dt);
        Assert.Equal(dt, y.DType);
        Assert.Equal(dt.ElementSize() * 6, y.ToBytes().Length);
        var expect = dt == DType.Bool ? new double[] { 0, 1, 1, 1, 1, 0 } : [0, 1, 2, 3, 1, 0];
        Check.Close(expect, y.To(DType.Float64, Device.Cpu), [2, 3], 0);
        Check.Close(expect, Torch.FromBytes(y.ToBytes(), [2, 3], dt, Env.Device), [2, 3], 0);
        Assert.Equal(Device.Cpu, y.Cpu().Device);
        Assert.Equal(Env.Device, y.Cpu().To(Env.Device).Device);
    }

    [Fact]
    public void Managed_arrays_in_and_out()
    {
        using var s = Torch.NewScope();
        var f = Torch.FromArray(new[] { 1.5f, -2f, 3f, 4f }, 2, 2);
        Assert.Equal([2L, 2], f.Shape);
        Assert.Equal(DType.Float32, f.DType);
        Assert.Equal([1.5f, -2f, 3f, 4f], f.ToArray<float>());
        Assert.Equal([1.5, -2, 3, 4], f.ToArray<double>());
        Assert.Equal([1L, -2, 3, 4], f.ToArray<long>());
        var span = new float[4];
        f.CopyTo<float>(span);
        Assert.Equal(4f, span[3]);
        Assert.Throws<ArgumentException>(() => f.CopyTo<float>(new float[3]));
        Assert.Throws<ArgumentException>(() => Torch.FromArray(new[] { 1f, 2f, 3f }, 2, 2));
        Assert.Throws<ArgumentException>(() => Torch.FromBytes(new byte[5], [2], DType.Float32));
        var h = Torch.FromArray(new[] { (Half)0.5, (Half)2 });
        Assert.Equal(DType.Float16, h.DType);
        Assert.Equal([0.5f, 2f], h.ToArray<float>());
        // bfloat16 keeps 8 bits of mantissa: 1 + 2^-9 rounds to 1.
        var bf = Torch.FromArray(new[] { 1f + 1f / 512, 3f }).To(DType.BFloat16);
        Assert.Equal([1f, 3f], bf.ToArray<float>());
        Assert.Equal(7L, Torch.FromArray(new[] { 7L }).ToInt64());
        Assert.Contains("1.5", f.Format());
        Assert.Equal("Tensor[2, 2] float32 cpu", f.ToString());
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Reductions(DType dt)
    {
        using var s = Torch.NewScope();
        var x = T([1, 5, 3, 4, 2, 6], [2, 3], dt);
        Check.Close([21], x.Sum().Reshape(1), null, Tol(dt));
        Check.Close([9, 12], x.Sum(1), [2], Tol(dt));
        Check.Close([5, 7, 9], x.Sum(0), [3], Tol(dt));
        Check.Close([9, 12], x.Sum(1, keepDim: true), [2, 1], Tol(dt));
        Check.Close([21], x.Sum([0, 1]).Reshape(1), null, Tol(dt));
        Check.Close([3.5], x.Mean().Reshape(1), null, Tol(dt));
        Check.Close([3, 4], x.Mean(1), [2], Tol(dt));
        Check.Close([6], x.Max().Reshape(1), null, Tol(dt));
        Check.Close([1], x.Min().Reshape(1), null, Tol(dt));
        Check.Close([5, 6], x.Amax(1), [2], Tol(dt));
        Check.Close([1, 2], x.Amin(1), [2], Tol(dt));
        Check.Close([15, 48], x.To(DType.Float32).Prod(1), [2], Tol(dt)); // libtorch 1.13 has no bfloat16 prod on CPU
        Check.Close([Math.Sqrt(35), Math.Sqrt(56)], x.Norm(1), [2], Tol(dt));
        Check.Close([Math.Sqrt(91)], x.Norm().Reshape(1), null, Tol(dt));
        Check.Close([4, 4], x.Var(1), [2], Tol(dt));
        var (v, i) = x.Max(1);
        Check.Close([5, 6], v, [2], Tol(dt));
        Check.Equal([1, 2], i, [2]);
        var (mv, mi) = x.Min(0);
        Check.Close([1, 2, 3], mv, [3], Tol(dt));
        Check.Equal([0, 1, 0], mi);
        Check.Equal([1, 2], x.ArgMax(1));
        Check.Equal([5], x.ArgMax().Reshape(1));
        var (tv, ti) = x.TopK(2, 1);
        Check.Close([5, 3, 6, 4], tv, [2, 2], Tol(dt));
        Check.Equal([1, 2, 2, 0], ti);
        var (sv, si) = x.Sort(1, descending: false);
        Check.Close([1, 3, 5, 2, 4, 6], sv, [2, 3], Tol(dt));
        Check.Equal([0, 2, 1, 1, 0, 2], si);
        var (dv, _) = x.Sort(0, descending: true);
        Check.Close([4, 5, 6, 1, 2, 3], dv, null, Tol(dt));
        Check.Close([1, 6, 9, 4, 6, 12], x.CumSum(1), [2, 3], Tol(dt));
        Check.Close([1, 5, 3, 5, 7, 9], x.CumSum(0), [2, 3], Tol(dt));
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Cross_entropy_ignores_the_ignore_index(DType dt)
    {
        using var s = Torch.NewScope();
        var logits = T([2, 1, 0, 0, 0, 0, 1, 3, 0], [3, 3], dt);
        double Nll(double[] row, int k) => Math.Log(row.Sum(Math.Exp)) - row[k];
        double l0 = Nll([2, 1, 0], 0), l1 = Nll([0, 0, 0], 2), l2 = Nll([1, 3, 0], 1);
        var tol = Tol(dt) * 2;
        Check.Close([(l0 + l1 + l2) / 3], F.CrossEntropy(logits, L([0, 2, 1])).Reshape(1), null, tol);
        Check.Close([(l0 + l2) / 2], F.CrossEntropy(logits, L([0, -100, 1])).Reshape(1), null, tol);
        Check.Close([l0 + l2], F.CrossEntropy(logits, L([0, -100, 1]), reduction: Reduction.Sum).Reshape(1), null, tol);
        Check.Close([l0, 0, l2], F.CrossEntropy(logits, L([0, 7, 1]), ignoreIndex: 7, reduction: Reduction.None), [3], tol);
        Check.Close([2.25], F.MseLoss(T([1, 2], [2]), T([2.5, 0.5], [2])).Reshape(1), null, tol);
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Rms_norm_and_layer_norm(DType dt)
    {
        using var s = Torch.NewScope();
        var x = T([1, 2, 3, 4, -2, 2, -2, 2], [2, 4], dt);
        var w = T([1, 2, 1, 2], [4], dt);
        double r0 = Math.Sqrt(30.0 / 4 + 1e-6), r1 = Math.Sqrt(4 + 1e-6);
        Check.Close([1 / r0, 4 / r0, 3 / r0, 8 / r0, -2 / r1, 4 / r1, -2 / r1, 4 / r1], F.RmsNorm(x, w, 1e-6), [2, 4], Tol(dt));
        double sd = Math.Sqrt(1.25 + 1e-5);
        Check.Close([-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd, -1, 1, -1, 1], F.LayerNorm(x, [4]), [2, 4], Tol(dt) * 2);
    }

    [Theory, MemberData(nameof(Env.FloatTypes), MemberType = typeof(Env))]
    public void Attention_matches_the_definition(DType dt)
    {
        using var s = Torch.NewScope();
        // One batch, one head, two positions, head dim 2.
        var q = T([1, 0, 0, 1], [1, 1, 2, 2], dt);
        var k = T([1, 0, 0, 2], [1, 1, 2, 2], dt);
        var v = T([1, 2, 3, 4], [1, 1, 2, 2], dt);
        double sc = 1 / Math.Sqrt(2);
        // Row 0 scores: [1, 0]·sc; row 1: [0, 2]·sc.
        double a0 = Math.Exp(sc) / (Math.Exp(sc) + 1), a1 = 1 / (1 + Math.Exp(2 * sc));
        double[] full = [a0 * 1 + (1 - a0) * 3, a0 * 2 + (1 - a0) * 4, a1 * 1 + (1 - a1) * 3, a1 * 2 + (1 - a1) * 4];
        Check.Close(full, F.ScaledDotProductAttention(q, k, v), [1, 1, 2, 2], Tol(dt));
        // Causal: position 0 sees only itself.
        double[] causal = [1, 2, full[2], full[3]];
        Check.Close(causal, F.ScaledDotProductAttention(q, k, v, isCausal: true), null, Tol(dt));
        var boolMask = Torch.FromArray<bool>([true, false, true, true], [1, 1, 2, 2], Env.Device);
        Check.Close(causal, F.ScaledDotProductAttention(q, k, v, mask: boolMask), null, Tol(dt));
        // Explicit scale 1.
        double b0 = Math.E / (Math.E + 1);
        Check.Close([b0 * 1 + (1 - b0) * 3, b0 * 2 + (1 - b0) * 4], F.ScaledDotProductAttention(q, k, v, scale: 1).Narrow(2, 0, 1).Flatten(), null, Tol(dt));
    }

    [Fact]
    public void Integer_arithmetic_stays_integral()
    {
        using var s = Torch.NewScope();
        var ids = L([1, 2, 3]);
        Assert.Equal(DType.Int64, (ids + 1).DType);
        Assert.Equal([2L, 3, 4], (ids + 1).ToArray<long>());
        Assert.Equal([3L, 6, 9], (ids * 3).ToArray<long>());
        Assert.Equal([2L, 1, 0], (3 - ids).ToArray<long>());
        Assert.Equal([3L, 6, 9], ids.Add(ids, alpha: 2).ToArray<long>());
        Assert.Equal(DType.Float32, (ids + 0.5).DType); // a fractional scalar promotes, as in PyTorch
        Assert.Equal(DType.Int64, ids.Clamp(min: 2).DType);
        Assert.Equal([2L, 2, 3], ids.Clamp(min: 2).ToArray<long>());
        ids.AddInPlace(10);
        Assert.Equal([11L, 12, 13], ids.ToArray<long>());
    }

    [Fact]
    public void In_place_operations()
    {
        using var s = Torch.NewScope();
        var x = T([1f, 2, 3]);
        x.AddInPlace(T([1f, 1, 1]), alpha: 2).MulInPlace(2);
        Check.Close([6, 8, 10], x);
        x.SubInPlace(T([1f, 1, 1])).DivInPlace(T([5f, 7, 9]));
        Check.Close([1, 1, 1], x);
        x.LerpInPlace(T([3f, 5, 1]), 0.5);
        Check.Close([2, 3, 1], x);
        x.AddInPlace(1).MulInPlace(0.5).DivInPlace(0.5);
        Check.Close([3, 4, 2], x);
        x.MaskedFillInPlace(x.Gt(2.5), 0);
        Check.Close([0, 0, 2], x);
        x.CopyFrom(T([9f, 8, 7]));
        Check.Close([9, 8, 7], x);
        x.Fill(4);
        Check.Close([4, 4, 4], x);
        x.Zero();
        Check.Close([0, 0, 0], x);
    }
}
