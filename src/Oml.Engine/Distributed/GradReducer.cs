using static Oml.Engine.Native;

namespace Oml.Engine.Distributed;

/// <summary>
/// Sums gradients over the ranks of a <see cref="ProcessGroup"/> while the backward pass still runs, as PyTorch's DDP
/// reducer does: the parameters are cut into buckets in reverse order (the order backward produces their gradients),
/// and a hook on each parameter's gradient accumulator (in the native shim, so no managed code runs on autograd's
/// threads) starts a bucket's asynchronous all-reduce as soon as every gradient in it is accumulated. Buckets start
/// in index order on every rank, so the ranks issue the same collectives in the same order.
/// <para>
/// Use per optimizer step: accumulate the micro-batches but the last with the hooks off (gradients stay local, like
/// DDP's <c>no_sync</c>), call <see cref="Enable"/> before the last micro-batch's single backward pass, then
/// <see cref="Finish"/>, which starts what the hooks did not (parameters without a gradient contribute zeros), waits
/// and writes the sums back. A rank that never enables (or runs no backward) still takes part through
/// <see cref="Finish"/>. The result equals <see cref="ProcessGroup.AllReduceGradients"/>'s.
/// </para>
/// </summary>
public sealed class GradReducer : IDisposable
{
    private IntPtr _handle;
    private readonly ProcessGroup _group;
    private readonly Tensor[] _parameters;

    /// <param name="group">the ranks that sum their gradients.</param>
    /// <param name="parameters">leaves that require grad, in forward order (the model's), all on one device.</param>
    /// <param name="bucketElements">elements per bucket at most (a larger parameter is a bucket of its own).</param>
    /// <param name="reduceDType">the dtype the sums are computed in (null: each parameter's own), e.g. float32 for
    /// bfloat16 weights whose float32 master copies receive the sums (<see cref="Finish"/>'s targets).</param>
    /// <param name="owners">null: every bucket is all-reduced. Otherwise each parameter's rank under a sharded optimizer:
    /// a bucket holds parameters of one owner and is reduced into that rank only (c10d reduce), and
    /// <see cref="Finish"/> leaves this rank's gradients of other ranks' parameters null.</param>
    public unsafe GradReducer(ProcessGroup group, IReadOnlyList<Tensor> parameters, long bucketElements = ProcessGroup.DefaultBucketElements, DType? reduceDType = null,
        IReadOnlyList<int>? owners = null)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketElements, 1);
        if (parameters.Count == 0) throw new ArgumentException("no parameters to reduce", nameof(parameters));
        if (owners is not null && owners.Count != parameters.Count) throw new ArgumentException($"one owner per parameter ({parameters.Count}), not {owners.Count}", nameof(owners));
        var own = owners?.ToArray();
        _group = group;
        _parameters = [.. parameters];
        using var hl = new HandleList(parameters);
        fixed (IntPtr* p = hl.Ptrs)
        fixed (int* o = own)
            _handle = oml_grad_reducer_new(group.Live, p, hl.Ptrs.Length, bucketElements, reduceDType is { } d ? (int)d : -1, o);
        if (_handle == IntPtr.Zero) throw new TorchException(LastError());
    }

    private IntPtr Live => _handle != IntPtr.Zero ? _handle : throw new ObjectDisposedException(nameof(GradReducer));

    /// <summary>How many buckets the parameters were cut into.</summary>
    public int Buckets => oml_grad_reducer_buckets(Live);

    /// <summary>Buckets whose all-reduce a hook started during a backward pass (not left to <see cref="Finish"/>), over this reducer's life.</summary>
    public long StartedDuringBackward => oml_grad_reducer_early(Live);

    /// <summary>
    /// Turns the hooks on for the next backward pass (call it before the last micro-batch's backward; with them off,
    /// gradients accumulate locally). Only one backward pass may run while they are on: a gradient accumulated again
    /// after its bucket started makes <see cref="Finish"/> fail.
    /// </summary>
    public void Enable() => Check(oml_grad_reducer_enable(Live, 1));

    /// <summary>
    /// Starts the buckets the hooks did not, waits for every one and writes the sums into the gradients of
    /// <paramref name="targets"/> (one per parameter, same shapes, e.g. float32 master copies; null: the parameters
    /// themselves); a target without a gradient gets one. Turns the hooks off again. Every rank must call it once per
    /// step. An error (a rank that died, a collective that timed out) names the rank.
    /// </summary>
    public unsafe void Finish(IReadOnlyList<Tensor>? targets = null)
    {
        if (targets is not null && targets.Count != _parameters.Length)
            throw new ArgumentException($"finish needs one target per parameter ({_parameters.Length}), not {targets.Count}", nameof(targets));
        using var hl = new HandleList(targets ?? []);
        fixed (IntPtr* p = hl.Ptrs) Check(oml_grad_reducer_finish(Live, p, hl.Ptrs.Length));
        GC.KeepAlive(_group);
        GC.KeepAlive(_parameters);
    }

    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, IntPtr.Zero);
        if (h != IntPtr.Zero) oml_grad_reducer_free(h);
    }
}
