using System.Runtime.InteropServices;
using static Oml.Engine.Native;

namespace Oml.Engine;

/// <summary>
/// A libtorch tensor. Owns native memory: dispose it, or create it inside a <see cref="DisposeScope"/>
/// (<see cref="Torch.NewScope"/>) that disposes every tensor made within it.
/// Operations never modify their inputs unless their name ends in <c>InPlace</c> or says so.
/// </summary>
public sealed class Tensor : IDisposable
{
    internal readonly TensorHandle Handle;
    internal DisposeScope? OwnerScope;

    internal Tensor(TensorHandle handle)
    {
        if (handle.IsInvalid)
        {
            handle.Dispose();
            throw new TorchException(LastError());
        }
        Handle = handle;
        DisposeScope.Current?.Register(this);
    }

    /// <summary>Wraps a raw handle returned through an out parameter; null means failure.</summary>
    internal static Tensor FromRaw(IntPtr raw) =>
        raw == IntPtr.Zero ? throw new TorchException(LastError()) : new Tensor(new TensorHandle(raw));

    internal static Tensor? FromRawOrNull(IntPtr raw) => raw == IntPtr.Zero ? null : new Tensor(new TensorHandle(raw));

    public void Dispose() => Handle.Dispose();

    public bool IsDisposed => Handle.IsClosed;

    // ------------------------------------------------------------------ metadata

    public int Dim => oml_tensor_dim(Handle);

    public unsafe long[] Shape
    {
        get
        {
            var shape = new long[oml_tensor_dim(Handle)];
            fixed (long* p = shape) Check(oml_tensor_shape(Handle, p, shape.Length));
            return shape;
        }
    }

    /// <summary>Size of one dimension; negative indices count from the end.</summary>
    public long Size(int dim)
    {
        var s = Shape;
        var d = dim < 0 ? dim + s.Length : dim;
        if (d < 0 || d >= s.Length) throw new ArgumentOutOfRangeException(nameof(dim), $"dimension {dim} out of range for a {s.Length}-d tensor");
        return s[d];
    }

    public long NumEl => oml_tensor_numel(Handle);
    public DType DType => (DType)oml_tensor_dtype(Handle);
    public Device Device => new((DeviceType)oml_tensor_device_type(Handle), oml_tensor_device_index(Handle));
    public bool IsContiguous => oml_tensor_is_contiguous(Handle) != 0;
    public bool IsLeaf => oml_tensor_is_leaf(Handle) != 0;

    public bool RequiresGrad
    {
        get => oml_tensor_requires_grad(Handle) != 0;
        set => Check(oml_tensor_set_requires_grad(Handle, value ? 1 : 0));
    }

    /// <summary>Sets <see cref="RequiresGrad"/> and returns this tensor, for fluent parameter creation.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1707", Justification = "libtorch's name for the in-place setter (requires_grad_), which users of the engine know")]
    public Tensor RequiresGrad_(bool on = true)
    {
        RequiresGrad = on;
        return this;
    }

    /// <summary>The accumulated gradient, or null when none has been computed. A new handle each call: dispose it.</summary>
    public Tensor? Grad
    {
        get
        {
            Check(oml_grad(Handle, out var g));
            return FromRawOrNull(g);
        }
        set
        {
            using var lease = new Lease(value);
            Check(oml_set_grad(Handle, lease.Ptr));
        }
    }

    public override string ToString() =>
        IsDisposed ? "Tensor(disposed)" : $"Tensor[{string.Join(", ", Shape)}] {DType.Name()} {Device}";

    /// <summary>The values as libtorch prints them.</summary>
    public string Format()
    {
        var s = oml_tensor_to_string(Handle);
        if (s == IntPtr.Zero) throw new TorchException(LastError());
        try { return Marshal.PtrToStringUTF8(s) ?? ""; }
        finally { oml_string_free(s); }
    }

    // ------------------------------------------------------------------ data

    /// <summary>Copies the elements, converted to <typeparamref name="T"/>, into a new array (row-major).</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var result = new T[checked((int)NumEl)];
        CopyTo<T>(result);
        return result;
    }

    /// <summary>Copies the elements, converted to <typeparamref name="T"/>, into <paramref name="destination"/>, which must hold exactly NumEl elements.</summary>
    public unsafe void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        var dt = DTypeExtensions.Of<T>();
        if (destination.Length != NumEl)
            throw new ArgumentException($"destination holds {destination.Length} elements, tensor {this} has {NumEl}", nameof(destination));
        fixed (T* p = destination) Check(oml_copy_to(Handle, p, (long)destination.Length * sizeof(T), (int)dt));
    }

    /// <summary>Copies the raw bytes of the tensor in its own dtype (row-major).</summary>
    public unsafe byte[] ToBytes()
    {
        var bytes = new byte[checked(NumEl * DType.ElementSize())];
        fixed (byte* p = bytes) Check(oml_copy_to(Handle, p, bytes.Length, (int)DType));
        return bytes;
    }

    /// <summary>
    /// Hands the raw bytes of the tensor in its own dtype (row-major) to <paramref name="consume"/> in order, in pieces of
    /// at most <paramref name="chunkBytes"/> (the span is valid only during the call), so that tensors of 2 GiB and more,
    /// which no array holds, can be written or hashed.
    /// </summary>
    public void ForEachByteChunk(Action<ReadOnlySpan<byte>> consume, long chunkBytes = 256L << 20)
    {
        ArgumentNullException.ThrowIfNull(consume);
        int size = DType.ElementSize();
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, size);
        long total = NumEl * size;
        if (total <= chunkBytes)
        {
            consume(ToBytes());
            return;
        }
        long perChunk = Math.Min(chunkBytes, int.MaxValue) / size;
        using var flat = Reshape(-1);
        var buffer = new byte[perChunk * size];
        for (long start = 0; start < NumEl; start += perChunk)
        {
            long len = Math.Min(perChunk, NumEl - start);
            using var piece = flat.Narrow(0, start, len);
            int bytes = (int)(len * size);
            unsafe
            {
                fixed (byte* p = buffer) Check(oml_copy_to(piece.Handle, p, bytes, (int)DType));
            }
            consume(buffer.AsSpan(0, bytes));
        }
    }

    /// <summary>
    /// Copies the raw bytes of the tensor in its own dtype (row-major) to <paramref name="length"/> bytes at
    /// <paramref name="destination"/> (host memory the caller owns, e.g. from <see cref="System.Runtime.InteropServices.NativeMemory"/>),
    /// in one copy from wherever the tensor lives: no intermediate host tensor and no managed array, whatever the size.
    /// </summary>
    public unsafe void CopyBytesTo(byte* destination, long length)
    {
        if (destination == null && length > 0) throw new ArgumentNullException(nameof(destination));
        Check(oml_copy_to(Handle, destination, length, (int)DType));
    }

    /// <summary>Writes the raw bytes of the tensor (see <see cref="ForEachByteChunk"/>) to <paramref name="stream"/>.</summary>
    public void WriteBytes(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ForEachByteChunk(stream.Write);
    }

    /// <summary>The value of a one-element tensor.</summary>
    public double ToDouble()
    {
        Check(oml_tensor_item(Handle, out var v));
        return v;
    }

    public float ToSingle() => (float)ToDouble();

    public long ToInt64()
    {
        Check(oml_tensor_item_int64(Handle, out var v));
        return v;
    }

    public bool ToBoolean() => ToInt64() != 0;

    // ------------------------------------------------------------------ conversion, copies, autograd

    public Tensor To(DType dtype) => new(oml_to_dtype(Handle, (int)dtype));
    public Tensor To(Device device) => new(oml_to(Handle, (int)DType, (int)device.Type, device.Index, 0));
    public Tensor To(DType dtype, Device device, bool copy = false) =>
        new(oml_to(Handle, (int)dtype, (int)device.Type, device.Index, copy ? 1 : 0));
    public Tensor Cpu() => To(Device.Cpu);
    public Tensor Float() => To(DType.Float32);
    public Tensor Long() => To(DType.Int64);
    public Tensor Clone() => new(oml_clone(Handle));
    /// <summary>A tensor sharing storage with this one, cut from the autograd graph.</summary>
    public Tensor Detach() => new(oml_detach(Handle));
    public Tensor Contiguous() => new(oml_contiguous(Handle));
    /// <summary>A second handle to the same tensor (same storage and autograd identity), with its own lifetime.</summary>
    public Tensor Alias() => new(oml_alias(Handle));

    public void CopyFrom(Tensor src) => Check(oml_copy_(Handle, src.Handle));
    /// <summary>
    /// Points this tensor at <paramref name="src"/>'s data (shape, dtype, device and storage, shared), as Python's
    /// <c>param.data = src</c>: the tensor keeps its autograd identity (a parameter stays the same leaf, with its
    /// <see cref="RequiresGrad"/>), and its old storage is freed once nothing else holds it. Weight sharding empties
    /// parameters at rest this way and points them at gathered weights while a layer runs.
    /// </summary>
    public void SetData(Tensor src)
    {
        ArgumentNullException.ThrowIfNull(src);
        Check(oml_tensor_set_data(Handle, src.Handle));
    }
    public void Fill(double value) => Check(oml_fill_(Handle, value));
    public void Zero() => Check(oml_zero_(Handle));

    /// <summary>Backpropagates from this tensor (a scalar unless <paramref name="gradient"/> is given).</summary>
    public void Backward(Tensor? gradient = null, bool retainGraph = false)
    {
        using var lease = new Lease(gradient);
        Check(oml_backward(Handle, lease.Ptr, retainGraph ? 1 : 0));
    }

    // ------------------------------------------------------------------ elementwise

    private Tensor Un(Unary op) => new(oml_unary((int)op, Handle));
    private Tensor Bin(Binary op, Tensor other, double alpha = 1) => new(oml_binary((int)op, Handle, other.Handle, alpha));
    private Tensor Bin(Binary op, double s) => new(oml_binary_scalar((int)op, Handle, s));

    public Tensor Neg() => Un(Unary.Neg);
    public Tensor Exp() => Un(Unary.Exp);
    public Tensor Log() => Un(Unary.Log);
    public Tensor Log1p() => Un(Unary.Log1p);
    public Tensor Sqrt() => Un(Unary.Sqrt);
    public Tensor Rsqrt() => Un(Unary.Rsqrt);
    public Tensor Abs() => Un(Unary.Abs);
    public Tensor Tanh() => Un(Unary.Tanh);
    public Tensor Sigmoid() => Un(Unary.Sigmoid);
    public Tensor Relu() => Un(Unary.Relu);
    public Tensor Silu() => Un(Unary.Silu);
    /// <summary>GELU; <paramref name="tanhApproximation"/> selects PyTorch's approximate="tanh".</summary>
    public Tensor Gelu(bool tanhApproximation = false) => Un(tanhApproximation ? Unary.GeluTanh : Unary.Gelu);
    public Tensor Sin() => Un(Unary.Sin);
    public Tensor Cos() => Un(Unary.Cos);
    public Tensor Square() => Un(Unary.Square);
    public Tensor Reciprocal() => Un(Unary.Reciprocal);
    public Tensor Floor() => Un(Unary.Floor);
    public Tensor Ceil() => Un(Unary.Ceil);
    public Tensor Sign() => Un(Unary.Sign);
    public Tensor IsFinite() => Un(Unary.IsFinite);
    public Tensor IsNan() => Un(Unary.IsNan);
    public Tensor LogicalNot() => Un(Unary.LogicalNot);

    public Tensor Add(Tensor other, double alpha = 1) => Bin(Binary.Add, other, alpha);
    public Tensor Sub(Tensor other, double alpha = 1) => Bin(Binary.Sub, other, alpha);
    public Tensor Mul(Tensor other) => Bin(Binary.Mul, other);
    public Tensor Div(Tensor other) => Bin(Binary.Div, other);
    public Tensor Pow(Tensor exponent) => Bin(Binary.Pow, exponent);
    public Tensor Pow(double exponent) => Bin(Binary.Pow, exponent);
    public Tensor Maximum(Tensor other) => Bin(Binary.Maximum, other);
    public Tensor Minimum(Tensor other) => Bin(Binary.Minimum, other);
    public Tensor Remainder(Tensor other) => Bin(Binary.Remainder, other);
    public Tensor Remainder(double s) => Bin(Binary.Remainder, s);
    public Tensor FloorDivide(Tensor other) => Bin(Binary.FloorDivide, other);
    public Tensor FloorDivide(double s) => Bin(Binary.FloorDivide, s);
    public Tensor LogicalAnd(Tensor other) => Bin(Binary.LogicalAnd, other);
    public Tensor LogicalOr(Tensor other) => Bin(Binary.LogicalOr, other);
    public Tensor BitwiseAnd(Tensor other) => Bin(Binary.BitwiseAnd, other);
    public Tensor BitwiseOr(Tensor other) => Bin(Binary.BitwiseOr, other);

    public Tensor Eq(Tensor other) => Bin(Binary.Eq, other);
    public Tensor Eq(double s) => Bin(Binary.Eq, s);
    public Tensor Ne(Tensor other) => Bin(Binary.Ne, other);
    public Tensor Ne(double s) => Bin(Binary.Ne, s);
    public Tensor Lt(Tensor other) => Bin(Binary.Lt, other);
    public Tensor Lt(double s) => Bin(Binary.Lt, s);
    public Tensor Le(Tensor other) => Bin(Binary.Le, other);
    public Tensor Le(double s) => Bin(Binary.Le, s);
    public Tensor Gt(Tensor other) => Bin(Binary.Gt, other);
    public Tensor Gt(double s) => Bin(Binary.Gt, s);
    public Tensor Ge(Tensor other) => Bin(Binary.Ge, other);
    public Tensor Ge(double s) => Bin(Binary.Ge, s);

    public Tensor Clamp(double? min = null, double? max = null) =>
        new(oml_clamp(Handle, min ?? 0, max ?? 0, min.HasValue ? 1 : 0, max.HasValue ? 1 : 0));

    public Tensor MaskedFill(Tensor mask, double value) => new(oml_masked_fill(Handle, mask.Handle, value));
    public Tensor Triu(long diagonal = 0) => new(oml_triu(Handle, diagonal));
    public Tensor Tril(long diagonal = 0) => new(oml_tril(Handle, diagonal));

    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    public static Tensor operator +(Tensor a, double s) => a.Bin(Binary.Add, s);
    public static Tensor operator -(Tensor a, double s) => a.Bin(Binary.Sub, s);
    public static Tensor operator *(Tensor a, double s) => a.Bin(Binary.Mul, s);
    public static Tensor operator /(Tensor a, double s) => a.Bin(Binary.Div, s);
    public static Tensor operator +(double s, Tensor a) => a.Bin(Binary.Add, s);
    public static Tensor operator *(double s, Tensor a) => a.Bin(Binary.Mul, s);
    public static Tensor operator -(double s, Tensor a) => new(oml_scalar_binary((int)Binary.Sub, s, a.Handle));
    public static Tensor operator /(double s, Tensor a) => new(oml_scalar_binary((int)Binary.Div, s, a.Handle));
    public static Tensor operator -(Tensor a) => a.Neg();

    // ------------------------------------------------------------------ in place (no autograd on leaves that require grad)

    public Tensor AddInPlace(Tensor other, double alpha = 1) { Check(oml_binary_((int)Binary.Add, Handle, other.Handle, alpha)); return this; }
    public Tensor SubInPlace(Tensor other, double alpha = 1) { Check(oml_binary_((int)Binary.Sub, Handle, other.Handle, alpha)); return this; }
    public Tensor MulInPlace(Tensor other) { Check(oml_binary_((int)Binary.Mul, Handle, other.Handle, 1)); return this; }
    public Tensor DivInPlace(Tensor other) { Check(oml_binary_((int)Binary.Div, Handle, other.Handle, 1)); return this; }
    public Tensor AddInPlace(double s) { Check(oml_binary_scalar_((int)Binary.Add, Handle, s)); return this; }
    public Tensor MulInPlace(double s) { Check(oml_binary_scalar_((int)Binary.Mul, Handle, s)); return this; }
    public Tensor DivInPlace(double s) { Check(oml_binary_scalar_((int)Binary.Div, Handle, s)); return this; }
    /// <summary>this += weight * (end - this).</summary>
    public Tensor LerpInPlace(Tensor end, double weight) { Check(oml_lerp_(Handle, end.Handle, weight)); return this; }
    public Tensor MaskedFillInPlace(Tensor mask, double value) { Check(oml_masked_fill_(Handle, mask.Handle, value)); return this; }

    // ------------------------------------------------------------------ linear algebra, activations

    /// <summary>Matrix product with batching and broadcasting, as torch.matmul.</summary>
    public Tensor MatMul(Tensor other) => new(oml_matmul(Handle, other.Handle));
    public Tensor Softmax(long dim) => new(oml_softmax(Handle, dim));
    public Tensor LogSoftmax(long dim) => new(oml_log_softmax(Handle, dim));

    // ------------------------------------------------------------------ shape and indexing

    public unsafe Tensor View(params long[] shape) { fixed (long* p = shape) return new(oml_view(Handle, p, shape.Length)); }
    public unsafe Tensor Reshape(params long[] shape) { fixed (long* p = shape) return new(oml_reshape(Handle, p, shape.Length)); }
    public unsafe Tensor Expand(params long[] shape) { fixed (long* p = shape) return new(oml_expand(Handle, p, shape.Length)); }
    public unsafe Tensor Repeat(params long[] repeats) { fixed (long* p = repeats) return new(oml_repeat(Handle, p, repeats.Length)); }
    public unsafe Tensor Permute(params long[] order) { fixed (long* p = order) return new(oml_permute(Handle, p, order.Length)); }
    public unsafe Tensor Flip(params long[] dims) { fixed (long* p = dims) return new(oml_flip(Handle, p, dims.Length)); }
    public Tensor RepeatInterleave(long repeats, long dim) => new(oml_repeat_interleave(Handle, repeats, dim));
    public Tensor Transpose(long dim0, long dim1) => new(oml_transpose(Handle, dim0, dim1));
    public Tensor Squeeze(long dim) => new(oml_squeeze(Handle, dim));
    public Tensor Unsqueeze(long dim) => new(oml_unsqueeze(Handle, dim));
    public Tensor Flatten(long startDim = 0, long endDim = -1) => new(oml_flatten(Handle, startDim, endDim));
    public Tensor Narrow(long dim, long start, long length) => new(oml_narrow(Handle, dim, start, length));
    /// <summary>Elements start..end (exclusive) along dim with a step, as x[start:end:step]; end may be long.MaxValue.</summary>
    public Tensor Slice(long dim, long start, long end, long step = 1) => new(oml_slice(Handle, dim, start, end, step));
    /// <summary>Removes dimension <paramref name="dim"/> by taking entry <paramref name="index"/>, as x.select(dim, index).</summary>
    public Tensor Select(long dim, long index) => new(oml_select(Handle, dim, index));
    public Tensor IndexSelect(long dim, Tensor index) => new(oml_index_select(Handle, dim, index.Handle));
    public Tensor Gather(long dim, Tensor index) => new(oml_gather(Handle, dim, index.Handle));
    public Tensor Scatter(long dim, Tensor index, Tensor src) => new(oml_scatter(Handle, dim, index.Handle, src.Handle));
    public Tensor Scatter(long dim, Tensor index, double value) => new(oml_scatter_value(Handle, dim, index.Handle, value));
    public Tensor ScatterAdd(long dim, Tensor index, Tensor src) => new(oml_scatter_add(Handle, dim, index.Handle, src.Handle));
    /// <summary>Advanced indexing along the first dimension with an integer or boolean tensor, as x[index].</summary>
    public Tensor Index(Tensor index) => new(oml_index_tensor(Handle, index.Handle));
    public Tensor MaskedSelect(Tensor mask) => new(oml_masked_select(Handle, mask.Handle));

    // ------------------------------------------------------------------ reductions

    private unsafe Tensor Red(Reduce op, long[]? dims, bool keepDim)
    {
        dims ??= [];
        fixed (long* p = dims) return new(oml_reduce((int)op, Handle, p, dims.Length, keepDim ? 1 : 0));
    }

    public Tensor Sum() => Red(Reduce.Sum, null, false);
    public Tensor Sum(long dim, bool keepDim = false) => Red(Reduce.Sum, [dim], keepDim);
    public Tensor Sum(long[] dims, bool keepDim = false) => Red(Reduce.Sum, dims, keepDim);
    public Tensor Mean() => Red(Reduce.Mean, null, false);
    public Tensor Mean(long dim, bool keepDim = false) => Red(Reduce.Mean, [dim], keepDim);
    public Tensor Mean(long[] dims, bool keepDim = false) => Red(Reduce.Mean, dims, keepDim);
    public Tensor Max() => Red(Reduce.Amax, null, false);
    public Tensor Min() => Red(Reduce.Amin, null, false);
    public Tensor Amax(long dim, bool keepDim = false) => Red(Reduce.Amax, [dim], keepDim);
    public Tensor Amin(long dim, bool keepDim = false) => Red(Reduce.Amin, [dim], keepDim);
    public Tensor Prod() => Red(Reduce.Prod, null, false);
    public Tensor Prod(long dim, bool keepDim = false) => Red(Reduce.Prod, [dim], keepDim);
    /// <summary>L2 norm over all elements, or over the given dimension.</summary>
    public Tensor Norm() => Red(Reduce.Norm, null, false);
    public Tensor Norm(long dim, bool keepDim = false) => Red(Reduce.Norm, [dim], keepDim);
    public Tensor All() => Red(Reduce.All, null, false);
    public Tensor All(long dim, bool keepDim = false) => Red(Reduce.All, [dim], keepDim);
    public Tensor Any() => Red(Reduce.Any, null, false);
    public Tensor Any(long dim, bool keepDim = false) => Red(Reduce.Any, [dim], keepDim);
    public Tensor LogSumExp(long dim, bool keepDim = false) => Red(Reduce.LogSumExp, [dim], keepDim);
    /// <summary>Unbiased variance along a dimension.</summary>
    public Tensor Var(long dim, bool keepDim = false) => Red(Reduce.Var, [dim], keepDim);

    /// <summary>Maximum along a dimension with its indices, as torch.max(x, dim).</summary>
    public (Tensor Values, Tensor Indices) Max(long dim, bool keepDim = false)
    {
        Check(oml_max_dim(Handle, dim, keepDim ? 1 : 0, out var v, out var i));
        return (FromRaw(v), FromRaw(i));
    }

    public (Tensor Values, Tensor Indices) Min(long dim, bool keepDim = false)
    {
        Check(oml_min_dim(Handle, dim, keepDim ? 1 : 0, out var v, out var i));
        return (FromRaw(v), FromRaw(i));
    }

    public Tensor ArgMax() => new(oml_argmax(Handle, 0, 0, 0));
    public Tensor ArgMax(long dim, bool keepDim = false) => new(oml_argmax(Handle, dim, 1, keepDim ? 1 : 0));

    public (Tensor Values, Tensor Indices) TopK(long k, long dim = -1, bool largest = true, bool sorted = true)
    {
        Check(oml_topk(Handle, k, dim, largest ? 1 : 0, sorted ? 1 : 0, out var v, out var i));
        return (FromRaw(v), FromRaw(i));
    }

    public (Tensor Values, Tensor Indices) Sort(long dim = -1, bool descending = false)
    {
        Check(oml_sort(Handle, dim, descending ? 1 : 0, out var v, out var i));
        return (FromRaw(v), FromRaw(i));
    }

    public Tensor CumSum(long dim) => new(oml_cumsum(Handle, dim));

    // ------------------------------------------------------------------ scopes

    /// <summary>Hands this tensor to the scope enclosing the one that owns it (or to no scope), so it outlives the inner scope.</summary>
    public Tensor MoveToOuterScope()
    {
        OwnerScope?.MoveOut(this);
        return this;
    }

    /// <summary>Removes this tensor from every scope: the caller now owns it.</summary>
    public Tensor DetachFromScope()
    {
        OwnerScope?.Forget(this);
        return this;
    }
}

/// <summary>A borrowed raw handle for an optional tensor argument, kept alive until disposed.</summary>
internal readonly ref struct Lease
{
    private readonly TensorHandle? _handle;
    public readonly IntPtr Ptr;

    public Lease(Tensor? t)
    {
        if (t is null)
        {
            _handle = null;
            Ptr = IntPtr.Zero;
            return;
        }
        bool added = false;
        t.Handle.DangerousAddRef(ref added);
        _handle = t.Handle;
        Ptr = t.Handle.DangerousGetHandle();
    }

    public void Dispose() => _handle?.DangerousRelease();
}

/// <summary>Borrowed raw handles for a list of tensors, kept alive until disposed.</summary>
internal sealed class HandleList : IDisposable
{
    private readonly TensorHandle[] _handles;
    public readonly IntPtr[] Ptrs;

    public HandleList(IReadOnlyList<Tensor> tensors)
    {
        _handles = new TensorHandle[tensors.Count];
        Ptrs = new IntPtr[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var h = tensors[i].Handle;
            bool added = false;
            h.DangerousAddRef(ref added);
            _handles[i] = h;
            Ptrs[i] = h.DangerousGetHandle();
        }
    }

    public void Dispose()
    {
        foreach (var h in _handles) h?.DangerousRelease();
    }
}
