using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Oml.Engine;

/// <summary>P/Invoke declarations for liboml_torch (native/oml_torch.cpp). Internal: use <see cref="Tensor"/> and <see cref="Torch"/>.</summary>
internal static partial class Native
{
    private const string Lib = "oml_torch";

    // Operation codes, in the order of the switch statements in native/oml_torch.cpp.
    internal enum Unary
    {
        Neg, Exp, Log, Sqrt, Rsqrt, Abs, Tanh, Sigmoid, Relu, Silu, Gelu, GeluTanh, Sin, Cos, LogicalNot,
        Floor, Ceil, IsFinite, Sign, Square, Log1p, Reciprocal, IsNan,
    }

    internal enum Binary
    {
        Add, Sub, Mul, Div, Pow, Eq, Ne, Lt, Le, Gt, Ge, Maximum, Minimum, LogicalAnd, LogicalOr, Remainder,
        FloorDivide, BitwiseAnd, BitwiseOr,
    }

    internal enum Reduce { Sum, Mean, Amax, Amin, Prod, Norm, All, Any, LogSumExp, Var }

    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "The native resolver must be in place before the first P/Invoke.")]
    internal static void Init() => NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, Resolve);

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Lib) return IntPtr.Zero;
        var explicitPath = Environment.GetEnvironmentVariable("OML_NATIVE_LIB");
        if (!string.IsNullOrEmpty(explicitPath))
            return NativeLibrary.Load(explicitPath);
        foreach (var dir in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(assembly.Location) })
        {
            if (string.IsNullOrEmpty(dir)) continue;
            var candidate = Path.Combine(dir, "liboml_torch.so");
            if (File.Exists(candidate)) return NativeLibrary.Load(candidate);
        }
        return IntPtr.Zero;
    }

    [LibraryImport(Lib)] internal static partial IntPtr oml_last_error();
    [LibraryImport(Lib)] internal static partial IntPtr oml_torch_version();
    [LibraryImport(Lib)] internal static partial int oml_features();
    [LibraryImport(Lib)] internal static partial int oml_set_num_threads(int n);
    [LibraryImport(Lib)] internal static partial int oml_get_num_threads();
    [LibraryImport(Lib)] internal static partial int oml_manual_seed(ulong seed);
    [LibraryImport(Lib)] internal static partial GeneratorHandle oml_generator_new(int dt, int di, ulong seed);
    [LibraryImport(Lib)] internal static partial void oml_generator_free(IntPtr g);
    [LibraryImport(Lib)] internal static partial int oml_generator_manual_seed(GeneratorHandle g, ulong seed);
    [LibraryImport(Lib)] internal static partial int oml_generator_initial_seed(GeneratorHandle g, out ulong seed);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int oml_set_float32_matmul_precision(string precision);
    [LibraryImport(Lib)] internal static partial int oml_get_float32_matmul_precision();
    [LibraryImport(Lib)] internal static partial int oml_grad_enabled();
    [LibraryImport(Lib)] internal static partial void oml_set_grad_enabled(int enabled);
    [LibraryImport(Lib)] internal static partial int oml_cuda_is_available();
    [LibraryImport(Lib)] internal static partial int oml_cuda_device_count();
    [LibraryImport(Lib)] internal static partial int oml_cuda_synchronize(int device);
    [LibraryImport(Lib)] internal static partial int oml_profiler_start(int cuda, int recordShapes);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int oml_profiler_stop(string? tracePath);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial IntPtr oml_record_begin(string name);
    [LibraryImport(Lib)] internal static partial void oml_record_end(IntPtr handle);
    [LibraryImport(Lib)] internal static unsafe partial int oml_cuda_memory_stats(int device, long* out4);
    [LibraryImport(Lib)] internal static unsafe partial int oml_cuda_mem_get_info(int device, long* out3);
    [LibraryImport(Lib)] internal static partial int oml_cuda_empty_cache();
    [LibraryImport(Lib)] internal static partial int oml_cuda_reset_peak(int device);

    [LibraryImport(Lib)] internal static partial void oml_tensor_free(IntPtr t);
    [LibraryImport(Lib)] internal static partial long oml_live_tensors();
    [LibraryImport(Lib)] internal static partial int oml_tensor_dim(TensorHandle t);
    [LibraryImport(Lib)] internal static unsafe partial int oml_tensor_shape(TensorHandle t, long* out_, int cap);
    [LibraryImport(Lib)] internal static partial long oml_tensor_numel(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_dtype(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_device_type(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_device_index(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_requires_grad(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_is_contiguous(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_is_leaf(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_tensor_set_requires_grad(TensorHandle t, int on);
    [LibraryImport(Lib)] internal static partial int oml_tensor_item(TensorHandle t, out double value);
    [LibraryImport(Lib)] internal static partial int oml_tensor_item_int64(TensorHandle t, out long value);
    [LibraryImport(Lib)] internal static partial IntPtr oml_tensor_to_string(TensorHandle t);
    [LibraryImport(Lib)] internal static partial void oml_string_free(IntPtr s);

    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_from_data(void* data, long* shape, int ndim, int dtype, int devType, int devIndex);
    [LibraryImport(Lib)] internal static unsafe partial int oml_copy_to(TensorHandle t, void* dst, long nbytes, int dtype);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_empty(long* shape, int ndim, int dtype, int dt, int di);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_zeros(long* shape, int ndim, int dtype, int dt, int di);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_ones(long* shape, int ndim, int dtype, int dt, int di);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_full(long* shape, int ndim, double value, int dtype, int dt, int di);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_arange(double start, double end, double step, int dtype, int dt, int di);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_eye(long n, int dtype, int dt, int di);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_rand(long* shape, int ndim, int dtype, int dt, int di, IntPtr gen);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_randn(long* shape, int ndim, int dtype, int dt, int di, IntPtr gen);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_randint(long low, long high, long* shape, int ndim, int dtype, int dt, int di, IntPtr gen);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_zeros_like(TensorHandle t);

    [LibraryImport(Lib)] internal static partial TensorHandle oml_to(TensorHandle t, int dtype, int dt, int di, int copy);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_to_dtype(TensorHandle t, int dtype);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_clone(TensorHandle t);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_detach(TensorHandle t);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_contiguous(TensorHandle t);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_alias(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_copy_(TensorHandle dst, TensorHandle src);
    [LibraryImport(Lib)] internal static partial int oml_fill_(TensorHandle t, double v);
    [LibraryImport(Lib)] internal static partial int oml_zero_(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int oml_backward(TensorHandle t, IntPtr grad, int retainGraph);
    [LibraryImport(Lib)] internal static partial int oml_grad(TensorHandle t, out IntPtr grad);
    [LibraryImport(Lib)] internal static partial int oml_set_grad(TensorHandle t, IntPtr grad);
    [LibraryImport(Lib)] internal static partial int oml_tensor_set_data(TensorHandle t, TensorHandle src);
    [LibraryImport(Lib)] internal static unsafe partial int oml_autograd_grad(IntPtr* outputs, IntPtr* gradOutputs, int nOut, IntPtr* inputs, int nIn, int createGraph, IntPtr* result);

    [LibraryImport(Lib)] internal static partial TensorHandle oml_unary(int op, TensorHandle x);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_binary(int op, TensorHandle a, TensorHandle b, double alpha);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_binary_scalar(int op, TensorHandle a, double s);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_scalar_binary(int op, double s, TensorHandle b);
    [LibraryImport(Lib)] internal static partial int oml_binary_(int op, TensorHandle a, TensorHandle b, double alpha);
    [LibraryImport(Lib)] internal static partial int oml_binary_scalar_(int op, TensorHandle a, double s);
    [LibraryImport(Lib)] internal static partial int oml_lerp_(TensorHandle a, TensorHandle end, double weight);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_clamp(TensorHandle x, double lo, double hi, int hasLo, int hasHi);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_where(TensorHandle cond, TensorHandle a, TensorHandle b);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_masked_fill(TensorHandle x, TensorHandle mask, double v);
    [LibraryImport(Lib)] internal static partial int oml_masked_fill_(TensorHandle x, TensorHandle mask, double v);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_triu(TensorHandle x, long diagonal);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_tril(TensorHandle x, long diagonal);

    [LibraryImport(Lib)] internal static partial TensorHandle oml_matmul(TensorHandle a, TensorHandle b);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_linear(TensorHandle x, TensorHandle w, IntPtr b);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_softmax(TensorHandle x, long dim);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_log_softmax(TensorHandle x, long dim);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_embedding(TensorHandle weight, TensorHandle ids);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_dropout(TensorHandle x, double p, int train, IntPtr gen);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_cross_entropy(TensorHandle logits, TensorHandle target, long ignoreIndex, int reduction, double labelSmoothing);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_mse_loss(TensorHandle a, TensorHandle b, int reduction);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_rms_norm(TensorHandle x, IntPtr weight, double eps);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_rope(TensorHandle x, TensorHandle cos, TensorHandle sin);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_swiglu(TensorHandle gate, TensorHandle up);
    [LibraryImport(Lib)] internal static partial int oml_fused_kernels();
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_layer_norm(TensorHandle x, long* shape, int ndim, IntPtr w, IntPtr b, double eps);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_sdpa(TensorHandle q, TensorHandle k, TensorHandle v, IntPtr mask, double dropoutP, int isCausal, double scale, int hasScale);

    [LibraryImport(Lib)] internal static partial TensorHandle oml_index_select(TensorHandle x, long dim, TensorHandle idx);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_gather(TensorHandle x, long dim, TensorHandle idx);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_scatter(TensorHandle x, long dim, TensorHandle idx, TensorHandle src);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_scatter_add(TensorHandle x, long dim, TensorHandle idx, TensorHandle src);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_scatter_value(TensorHandle x, long dim, TensorHandle idx, double v);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_index_tensor(TensorHandle x, TensorHandle idx);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_masked_select(TensorHandle x, TensorHandle mask);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_cat(IntPtr* ts, int n, long dim);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_stack(IntPtr* ts, int n, long dim);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_narrow(TensorHandle x, long dim, long start, long length);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_slice(TensorHandle x, long dim, long start, long end, long step);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_select(TensorHandle x, long dim, long index);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_view(TensorHandle x, long* shape, int n);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_reshape(TensorHandle x, long* shape, int n);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_expand(TensorHandle x, long* shape, int n);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_repeat(TensorHandle x, long* reps, int n);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_repeat_interleave(TensorHandle x, long repeats, long dim);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_permute(TensorHandle x, long* order, int n);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_transpose(TensorHandle x, long d0, long d1);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_squeeze(TensorHandle x, long dim);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_unsqueeze(TensorHandle x, long dim);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_flatten(TensorHandle x, long start, long end);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_flip(TensorHandle x, long* dims, int n);

    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_reduce(int op, TensorHandle x, long* dims, int ndims, int keepdim);
    [LibraryImport(Lib)] internal static partial int oml_max_dim(TensorHandle x, long dim, int keepdim, out IntPtr values, out IntPtr indices);
    [LibraryImport(Lib)] internal static partial int oml_min_dim(TensorHandle x, long dim, int keepdim, out IntPtr values, out IntPtr indices);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_argmax(TensorHandle x, long dim, int hasDim, int keepdim);
    [LibraryImport(Lib)] internal static partial int oml_topk(TensorHandle x, long k, long dim, int largest, int sorted, out IntPtr values, out IntPtr indices);
    [LibraryImport(Lib)] internal static partial int oml_sort(TensorHandle x, long dim, int descending, out IntPtr values, out IntPtr indices);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_cumsum(TensorHandle x, long dim);
    [LibraryImport(Lib)] internal static partial TensorHandle oml_multinomial(TensorHandle probs, long n, int replacement, IntPtr gen);

    [LibraryImport(Lib)] internal static unsafe partial int oml_adamw_step(IntPtr* parameters, IntPtr* expAvg, IntPtr* expAvgSq, long* steps, int n, double lr, double beta1, double beta2, double eps, double weightDecay);
    [LibraryImport(Lib)] internal static unsafe partial TensorHandle oml_clip_grad_norm_tensor(IntPtr* parameters, int n, double maxNorm);
    [LibraryImport(Lib)] internal static partial int oml_weight_grad_in_place(int on);
    [LibraryImport(Lib)] internal static partial long oml_weight_grad_in_place_hits();
    [LibraryImport(Lib)] internal static unsafe partial int oml_clip_grad_norm(IntPtr* parameters, int n, double maxNorm, out double totalNorm);

    /// <summary>The shim's message for the last failure on this thread.</summary>
    // Process groups (native/oml_dist.inc).
    [LibraryImport(Lib)] internal static partial int oml_dist_backends();
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial IntPtr oml_pg_new(string backend, string host, int port, int rank, int size, long timeoutMs);
    [LibraryImport(Lib)] internal static partial void oml_pg_free(IntPtr g);
    [LibraryImport(Lib)] internal static unsafe partial int oml_pg_all_reduce(IntPtr g, IntPtr* ts, int n, int op);
    [LibraryImport(Lib)] internal static unsafe partial int oml_pg_broadcast(IntPtr g, IntPtr* ts, int n, int root);
    [LibraryImport(Lib)] internal static unsafe partial int oml_pg_reduce(IntPtr g, IntPtr* ts, int n, int root, int op);
    [LibraryImport(Lib)] internal static partial int oml_pg_all_gather(IntPtr g, TensorHandle input, TensorHandle output);
    [LibraryImport(Lib)] internal static partial int oml_pg_reduce_scatter(IntPtr g, TensorHandle input, TensorHandle output, int op);
    [LibraryImport(Lib)] internal static partial int oml_pg_barrier(IntPtr g);
    [LibraryImport(Lib)] internal static unsafe partial int oml_pg_all_reduce_async(IntPtr g, IntPtr* ts, int n, int op, out IntPtr work);
    [LibraryImport(Lib)] internal static partial int oml_pg_all_gather_async(IntPtr g, TensorHandle input, TensorHandle output, out IntPtr work);
    [LibraryImport(Lib)] internal static partial int oml_work_wait(IntPtr work);
    [LibraryImport(Lib)] internal static partial void oml_work_free(IntPtr work);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr oml_grad_reducer_new(IntPtr g, IntPtr* ps, int n, long bucketElements, int reduceDType, int* owners);
    [LibraryImport(Lib)] internal static partial void oml_grad_reducer_free(IntPtr r);
    [LibraryImport(Lib)] internal static partial int oml_grad_reducer_buckets(IntPtr r);
    [LibraryImport(Lib)] internal static partial long oml_grad_reducer_early(IntPtr r);
    [LibraryImport(Lib)] internal static partial int oml_grad_reducer_enable(IntPtr r, int on);
    [LibraryImport(Lib)] internal static unsafe partial int oml_grad_reducer_finish(IntPtr r, IntPtr* targets, int n);

    internal static string LastError() => Marshal.PtrToStringUTF8(oml_last_error()) ?? "unknown libtorch error";

    /// <summary>Throws a <see cref="TorchException"/> when a status-returning call failed.</summary>
    internal static void Check(int status)
    {
        if (status != 0) throw new TorchException(LastError());
    }
}

/// <summary>Owns one native at::Tensor. Released exactly once, by Dispose or by the finalizer.</summary>
internal sealed class TensorHandle : SafeHandle
{
    public TensorHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    internal TensorHandle(IntPtr h) : base(IntPtr.Zero, ownsHandle: true) => SetHandle(h);
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle()
    {
        Native.oml_tensor_free(handle);
        return true;
    }
}

/// <summary>An error reported by libtorch (wrong shapes, dtypes, devices, out-of-memory and the like).</summary>
public sealed class TorchException : Exception
{
    public TorchException(string message) : base(message) { }
}
