using System.Runtime.InteropServices;
using static Oml.Engine.Native;

namespace Oml.Engine;

/// <summary>Tensor creation and library-wide settings, as the <c>torch</c> module.</summary>
public static class Torch
{
    static Torch()
    {
        // libtorch defaults to the number of physical cores; use every core the process may run on, or the share a
        // launcher gave this process (OMP_NUM_THREADS, as torchrun sets it for several processes on one host).
        int threads = int.TryParse(Environment.GetEnvironmentVariable("OMP_NUM_THREADS"), out int n) && n > 0 ? n : Environment.ProcessorCount;
        Check(oml_set_num_threads(threads));
    }

    /// <summary>Version of the libtorch the shim was compiled against, e.g. "1.13.0" or "2.11.0".</summary>
    public static string LibTorchVersion => Marshal.PtrToStringUTF8(oml_torch_version()) ?? "?";

    /// <summary>Whether scaled_dot_product_attention runs libtorch's fused kernel (libtorch 2.1+).</summary>
    public static bool HasFusedAttention => (oml_features() & 1) != 0;

    /// <summary>Whether AdamW on CUDA runs libtorch's fused kernel (libtorch 2.1+).</summary>
    public static bool HasFusedAdamW => (oml_features() & 2) != 0;

    /// <summary>Intra-op thread count of the CPU backend. Defaults to all cores.</summary>
    public static int Threads
    {
        get => oml_get_num_threads();
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value), value, "thread count must be at least 1");
            Check(oml_set_num_threads(value));
        }
    }

    /// <summary>
    /// Precision of float32 matrix products, as torch.set_float32_matmul_precision: "highest" (true float32, the
    /// default), "high" (TF32 tensor cores on Ampere and newer GPUs: a 10-bit mantissa in the products, float32
    /// accumulation) or "medium". Affects CUDA only; CPU products stay float32.
    /// </summary>
    public static string Float32MatmulPrecision
    {
        get => oml_get_float32_matmul_precision() switch
        {
            0 => "highest",
            1 => "high",
            2 => "medium",
            _ => throw new TorchException(LastError()),
        };
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value is not ("highest" or "high" or "medium"))
                throw new ArgumentException($"float32 matmul precision must be highest, high or medium, not '{value}'", nameof(value));
            Check(oml_set_float32_matmul_precision(value));
        }
    }

    /// <summary>
    /// Whether RMSNorm, rotary embeddings and SwiGLU run as fused CUDA kernels on CUDA tensors (native/oml_kernels.cu:
    /// built in where native/build.sh found nvcc, off with the environment variable OML_FUSED_KERNELS=0 set before the
    /// process starts); otherwise they are the composite libtorch ops, which define their semantics. Their backward
    /// passes are not themselves differentiable: on CUDA, second-order gradients through these three ops are not
    /// computed.
    /// </summary>
    public static bool FusedKernels => oml_fused_kernels() != 0;

    /// <summary>Sets <see cref="Float32MatmulPrecision"/>.</summary>
    public static void SetFloat32MatmulPrecision(string precision) => Float32MatmulPrecision = precision;

    /// <summary>Native tensor handles alive now (created and not yet disposed or finalized), for leak checks.</summary>
    public static long LiveTensors => oml_live_tensors();

    /// <summary>
    /// Seeds libtorch's global generators (CPU and every CUDA device), as torch.manual_seed. They are shared by every
    /// thread of the process: for draws that must repeat whatever else runs, give the random operations a
    /// <see cref="RandomGenerator"/> of their own (a new one seeded with s draws what the global CPU generator draws after
    /// ManualSeed(s)).
    /// </summary>
    public static void ManualSeed(ulong seed) => Check(oml_manual_seed(seed));

    /// <summary>Whether operations record autograd history on this thread.</summary>
    public static bool IsGradEnabled => oml_grad_enabled() != 0;

    /// <summary>Disables gradient recording until disposed: <c>using (Torch.NoGrad()) { ... }</c>.</summary>
    public static GradMode NoGrad() => new(false);

    /// <summary>Enables gradient recording until disposed (inside a <see cref="NoGrad"/> block).</summary>
    public static GradMode EnableGrad() => new(true);

    /// <summary>Opens a scope that disposes the tensors created inside it. See <see cref="DisposeScope"/>.</summary>
    public static DisposeScope NewScope() => new();

    // ------------------------------------------------------------------ creation

    public static unsafe Tensor Zeros(long[] shape, DType dtype = DType.Float32, Device? device = null)
    {
        var d = device ?? Device.Cpu;
        fixed (long* p = shape) return new(oml_zeros(p, shape.Length, (int)dtype, (int)d.Type, d.Index));
    }

    public static unsafe Tensor Ones(long[] shape, DType dtype = DType.Float32, Device? device = null)
    {
        var d = device ?? Device.Cpu;
        fixed (long* p = shape) return new(oml_ones(p, shape.Length, (int)dtype, (int)d.Type, d.Index));
    }

    public static unsafe Tensor Empty(long[] shape, DType dtype = DType.Float32, Device? device = null)
    {
        var d = device ?? Device.Cpu;
        fixed (long* p = shape) return new(oml_empty(p, shape.Length, (int)dtype, (int)d.Type, d.Index));
    }

    public static unsafe Tensor Full(long[] shape, double value, DType dtype = DType.Float32, Device? device = null)
    {
        var d = device ?? Device.Cpu;
        fixed (long* p = shape) return new(oml_full(p, shape.Length, value, (int)dtype, (int)d.Type, d.Index));
    }

    /// <summary>Uniform samples in [0, 1), drawn from <paramref name="generator"/> (null: the device's global generator).</summary>
    public static unsafe Tensor Rand(long[] shape, DType dtype = DType.Float32, Device? device = null, RandomGenerator? generator = null)
    {
        var d = device ?? Device.Cpu;
        RandomGenerator.CheckDevice(generator, d, "rand");
        using var g = new GeneratorLease(generator);
        fixed (long* p = shape) return new(oml_rand(p, shape.Length, (int)dtype, (int)d.Type, d.Index, g.Ptr));
    }

    /// <summary>Standard normal samples, drawn from <paramref name="generator"/> (null: the device's global generator).</summary>
    public static unsafe Tensor Randn(long[] shape, DType dtype = DType.Float32, Device? device = null, RandomGenerator? generator = null)
    {
        var d = device ?? Device.Cpu;
        RandomGenerator.CheckDevice(generator, d, "randn");
        using var g = new GeneratorLease(generator);
        fixed (long* p = shape) return new(oml_randn(p, shape.Length, (int)dtype, (int)d.Type, d.Index, g.Ptr));
    }

    /// <summary>Uniform integers in [low, high), drawn from <paramref name="generator"/> (null: the device's global generator).</summary>
    public static unsafe Tensor RandInt(long low, long high, long[] shape, DType dtype = DType.Int64, Device? device = null, RandomGenerator? generator = null)
    {
        var d = device ?? Device.Cpu;
        RandomGenerator.CheckDevice(generator, d, "randint");
        using var g = new GeneratorLease(generator);
        fixed (long* p = shape) return new(oml_randint(low, high, p, shape.Length, (int)dtype, (int)d.Type, d.Index, g.Ptr));
    }

    /// <summary>Values start, start+step, ... below end.</summary>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.Int64, Device? device = null)
    {
        var d = device ?? Device.Cpu;
        return new(oml_arange(start, end, step, (int)dtype, (int)d.Type, d.Index));
    }

    public static Tensor Arange(long end, DType dtype = DType.Int64, Device? device = null) => Arange(0, end, 1, dtype, device);

    public static Tensor Eye(long n, DType dtype = DType.Float32, Device? device = null)
    {
        var d = device ?? Device.Cpu;
        return new(oml_eye(n, (int)dtype, (int)d.Type, d.Index));
    }

    public static Tensor ZerosLike(Tensor t) => new(oml_zeros_like(t.Handle));

    /// <summary>A tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-d).</summary>
    public static unsafe Tensor FromArray<T>(ReadOnlySpan<T> data, long[]? shape = null, Device? device = null) where T : unmanaged
    {
        shape ??= [data.Length];
        long n = 1;
        foreach (var s in shape)
        {
            if (s < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]", nameof(shape));
            n *= s;
        }
        if (n != data.Length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] holds {n} elements but {data.Length} were given", nameof(shape));
        var d = device ?? Device.Cpu;
        fixed (T* p = data)
        fixed (long* sp = shape)
            return new(oml_from_data(p, sp, shape.Length, (int)DTypeExtensions.Of<T>(), (int)d.Type, d.Index));
    }

    public static Tensor FromArray<T>(T[] data, params long[] shape) where T : unmanaged =>
        FromArray<T>(data.AsSpan(), shape.Length == 0 ? null : shape);

    /// <summary>A tensor of <paramref name="dtype"/> whose elements are the little-endian bytes given (bfloat16 weights, say).</summary>
    public static unsafe Tensor FromBytes(ReadOnlySpan<byte> bytes, long[] shape, DType dtype, Device? device = null)
    {
        fixed (byte* p = bytes) return FromBytes(p, bytes.Length, shape, dtype, device);
    }

    /// <summary>
    /// As <see cref="FromBytes(ReadOnlySpan{byte}, long[], DType, Device?)"/> over <paramref name="length"/> bytes at
    /// <paramref name="data"/> (memory the caller keeps valid for the call): for tensors of 2 GiB and more, which no span holds.
    /// </summary>
    public static unsafe Tensor FromBytes(byte* data, long length, long[] shape, DType dtype, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long n = 1;
        foreach (var s in shape) n = checked(n * s);
        if (checked(n * dtype.ElementSize()) != length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] of {dtype.Name()} needs {n * dtype.ElementSize()} bytes but {length} were given", nameof(length));
        var d = device ?? Device.Cpu;
        fixed (long* sp = shape)
            return new(oml_from_data(data, sp, shape.Length, (int)dtype, (int)d.Type, d.Index));
    }

    /// <summary>A 0-d tensor.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full([], value, dtype, device);

    // ------------------------------------------------------------------ combining

    public static unsafe Tensor Cat(IReadOnlyList<Tensor> tensors, long dim = 0)
    {
        using var hl = new HandleList(tensors);
        fixed (IntPtr* p = hl.Ptrs) return new(oml_cat(p, hl.Ptrs.Length, dim));
    }

    public static unsafe Tensor Stack(IReadOnlyList<Tensor> tensors, long dim = 0)
    {
        using var hl = new HandleList(tensors);
        fixed (IntPtr* p = hl.Ptrs) return new(oml_stack(p, hl.Ptrs.Length, dim));
    }

    /// <summary>Elementwise choice: a where condition is true, else b.</summary>
    public static Tensor Where(Tensor condition, Tensor a, Tensor b) => new(oml_where(condition.Handle, a.Handle, b.Handle));

    /// <summary>
    /// Samples <paramref name="numSamples"/> indices per row from the (unnormalised) probabilities, drawn from
    /// <paramref name="generator"/> (null: the global generator of the tensor's device).
    /// </summary>
    public static Tensor Multinomial(Tensor probs, long numSamples, bool replacement = false, RandomGenerator? generator = null)
    {
        if (generator is not null) RandomGenerator.CheckDevice(generator, probs.Device, "multinomial");
        using var g = new GeneratorLease(generator);
        return new(oml_multinomial(probs.Handle, numSamples, replacement ? 1 : 0, g.Ptr));
    }

    /// <summary>Gradients of outputs with respect to inputs, as torch.autograd.grad (null where unused).</summary>
    public static unsafe Tensor?[] Gradients(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor> inputs,
        IReadOnlyList<Tensor>? gradOutputs = null, bool createGraph = false)
    {
        using var o = new HandleList(outputs);
        using var i = new HandleList(inputs);
        using var g = gradOutputs is null ? null : new HandleList(gradOutputs);
        var result = new IntPtr[inputs.Count];
        fixed (IntPtr* po = o.Ptrs)
        fixed (IntPtr* pi = i.Ptrs)
        fixed (IntPtr* pg = g?.Ptrs)
        fixed (IntPtr* pr = result)
            Check(oml_autograd_grad(po, g is null ? null : pg, o.Ptrs.Length, pi, i.Ptrs.Length, createGraph ? 1 : 0, pr));
        return result.Select(Tensor.FromRawOrNull).ToArray();
    }

    /// <summary>Scales the gradients of <paramref name="parameters"/> in place so that their global L2 norm is at most
    /// <paramref name="maxNorm"/>, as torch.nn.utils.clip_grad_norm_. Returns the norm before clipping.</summary>
    public static unsafe double ClipGradNorm(IReadOnlyList<Tensor> parameters, double maxNorm)
    {
        using var hl = new HandleList(parameters);
        fixed (IntPtr* p = hl.Ptrs)
        {
            Check(oml_clip_grad_norm(p, hl.Ptrs.Length, maxNorm, out var total));
            return total;
        }
    }

    /// <summary>
    /// As <see cref="ClipGradNorm"/>, but the norm before clipping comes back as a 0-d float32 tensor on the gradients'
    /// device instead of a number, so that a training step on CUDA does not wait for the device.
    /// </summary>
    public static unsafe Tensor ClipGradNormTensor(IReadOnlyList<Tensor> parameters, double maxNorm)
    {
        using var hl = new HandleList(parameters);
        fixed (IntPtr* p = hl.Ptrs) return new(oml_clip_grad_norm_tensor(p, hl.Ptrs.Length, maxNorm));
    }

    /// <summary>
    /// Accumulates weight gradients over micro-batches in place until disposed: a linear layer without bias whose 2-d
    /// weight is a leaf, built on this thread while the scope is open, computes its weight's gradient straight into an
    /// existing <see cref="Tensor.Grad"/> (one matrix product with β = 1) instead of computing a new gradient and then
    /// adding it (a second pass over every weight gradient per micro-batch). The first backward pass of a step (no
    /// gradient yet), passes that build a graph and <see cref="Gradients"/> take the usual path; results agree with it up
    /// to the rounding of the sum. The setting is per thread (other threads' trainings are unaffected) and scopes nest;
    /// open and dispose it on the same thread. For a single process only: a bucketed all-reduce's hooks expect the usual path.
    /// </summary>
    public static IDisposable AccumulateWeightGradientsInPlace() => new WeightGradScope(oml_weight_grad_in_place(1) != 0);

    /// <summary>Weight gradients added in place (<see cref="AccumulateWeightGradientsInPlace"/>) so far in this process.</summary>
    public static long WeightGradientsAddedInPlace => oml_weight_grad_in_place_hits();

    sealed class WeightGradScope(bool previous) : IDisposable
    {
        bool _disposed;
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _ = oml_weight_grad_in_place(previous ? 1 : 0);
        }
    }

    /// <summary>CUDA queries.</summary>
    public static class Cuda
    {
        public static bool IsAvailable => oml_cuda_is_available() != 0;
        public static int DeviceCount => oml_cuda_device_count();
        public static void Synchronize(int device = -1) => Check(oml_cuda_synchronize(device));

        /// <summary>Caching-allocator statistics of one device, in bytes.</summary>
        public static unsafe CudaMemoryStats MemoryStats(int device = 0)
        {
            long* s = stackalloc long[4];
            Check(oml_cuda_memory_stats(device, s));
            return new CudaMemoryStats(s[0], s[1], s[2], s[3]);
        }

        /// <summary>
        /// Bytes a new allocation on <paramref name="device"/> can still get: the driver's free memory plus what this
        /// process's caching allocator holds reserved but unused; and the device's total memory.
        /// </summary>
        public static unsafe (long FreeBytes, long TotalBytes) MemoryInfo(int device = 0)
        {
            long* s = stackalloc long[3];
            Check(oml_cuda_mem_get_info(device, s));
            return (s[0] + s[2], s[1]);
        }

        public static void EmptyCache() => Check(oml_cuda_empty_cache());
        public static void ResetPeakStats(int device = 0) => Check(oml_cuda_reset_peak(device));
    }
}

public readonly record struct CudaMemoryStats(long AllocatedBytes, long PeakAllocatedBytes, long ReservedBytes, long PeakReservedBytes);

/// <summary>Restores the previous gradient mode when disposed.</summary>
public readonly struct GradMode : IDisposable
{
    private readonly bool _previous;

    internal GradMode(bool enabled)
    {
        _previous = oml_grad_enabled() != 0;
        oml_set_grad_enabled(enabled ? 1 : 0);
    }

    public void Dispose() => oml_set_grad_enabled(_previous ? 1 : 0);
}
