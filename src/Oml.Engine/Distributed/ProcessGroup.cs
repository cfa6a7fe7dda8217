using System.Globalization;
using static Oml.Engine.Native;

namespace Oml.Engine.Distributed;

/// <summary>How <see cref="ProcessGroup.AllReduce"/> combines the ranks' values.</summary>
public enum ReduceOp { Sum = 0, Max = 1, Min = 2, Product = 3 }

/// <summary>Where a rank sits in a job: its rank, the world size, its rank on this host and the rendezvous address.</summary>
public sealed record RankInfo(int Rank, int WorldSize, int LocalRank, string MasterAddress, int MasterPort)
{
    /// <summary>
    /// The rank as the usual launcher environment gives it (torchrun's variables: RANK, WORLD_SIZE, LOCAL_RANK,
    /// MASTER_ADDR, MASTER_PORT); null when WORLD_SIZE is not set (a single-process run).
    /// </summary>
    /// <exception cref="ArgumentException">a variable is set but malformed or inconsistent.</exception>
    public static RankInfo? FromEnvironment()
    {
        var world = Environment.GetEnvironmentVariable("WORLD_SIZE");
        if (string.IsNullOrEmpty(world)) return null;
        int Int(string name, string? fallback = null)
        {
            var v = Environment.GetEnvironmentVariable(name) ?? fallback
                ?? throw new ArgumentException($"{name} is not set (WORLD_SIZE is: a distributed run needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)");
            return int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int x) ? x : throw new ArgumentException($"{name}={v} is not a non-negative integer");
        }
        int size = Int("WORLD_SIZE"), rank = Int("RANK"), local = Int("LOCAL_RANK", rank.ToString(CultureInfo.InvariantCulture));
        int port = Int("MASTER_PORT");
        var addr = Environment.GetEnvironmentVariable("MASTER_ADDR") is { Length: > 0 } a ? a : throw new ArgumentException("MASTER_ADDR is not set");
        if (size < 1 || rank >= size) throw new ArgumentException($"RANK={rank} must be below WORLD_SIZE={size}");
        if (port is < 1 or > 65535) throw new ArgumentException($"MASTER_PORT={port} must be in [1, 65535]");
        return new RankInfo(rank, size, local, addr, port);
    }
}

/// <summary>
/// A group of processes that run collectives together: libtorch's c10d process groups, gloo for CPU tensors and NCCL
/// for CUDA tensors, with a TCP store for the rendezvous (rank 0 hosts it). Every collective blocks until it is done
/// on this rank; a rank that died makes the others fail within <see cref="Timeout"/> with a <see cref="TorchException"/>
/// whose message names the rank, rather than hang.
/// </summary>
public sealed class ProcessGroup : IDisposable
{
    private IntPtr _handle;

    private ProcessGroup(IntPtr handle, string backend, int rank, int worldSize, TimeSpan timeout)
    {
        _handle = handle;
        Backend = backend;
        Rank = rank;
        WorldSize = worldSize;
        Timeout = timeout;
    }

    public string Backend { get; }
    public int Rank { get; }
    public int WorldSize { get; }
    public TimeSpan Timeout { get; }

    /// <summary>Whether this build of the native library has the backend ("gloo" or "nccl").</summary>
    public static bool IsAvailable(string backend) => (oml_dist_backends() & (backend switch { "gloo" => 1, "nccl" => 2, _ => 0 })) != 0;

    /// <summary>The backend for tensors on <paramref name="device"/>: NCCL on CUDA, gloo on the CPU.</summary>
    public static string BackendFor(Device device) => device.IsCuda ? "nccl" : "gloo";

    /// <summary>Joins the group at <paramref name="host"/>:<paramref name="port"/> (rank 0 hosts the rendezvous); blocks until all ranks joined or the timeout passed.</summary>
    public static ProcessGroup Create(string backend, string host, int port, int rank, int worldSize, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(host);
        var t = timeout ?? TimeSpan.FromMinutes(5);
        var h = oml_pg_new(backend, host, port, rank, worldSize, (long)t.TotalMilliseconds);
        if (h == IntPtr.Zero) throw new TorchException(LastError());
        return new ProcessGroup(h, backend, rank, worldSize, t);
    }

    /// <summary>Joins the group described by <paramref name="info"/> with the backend for <paramref name="device"/>.</summary>
    public static ProcessGroup Create(RankInfo info, Device device, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(info);
        return Create(BackendFor(device), info.MasterAddress, info.MasterPort, info.Rank, info.WorldSize, timeout);
    }

    internal IntPtr Live => _handle != IntPtr.Zero ? _handle : throw new ObjectDisposedException(nameof(ProcessGroup));

    /// <summary>Reduces each tensor in place over all ranks (every rank ends with the result).</summary>
    public unsafe void AllReduce(IReadOnlyList<Tensor> tensors, ReduceOp op = ReduceOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0) return;
        using var hl = new HandleList(tensors);
        fixed (IntPtr* p = hl.Ptrs) Check(oml_pg_all_reduce(Live, p, hl.Ptrs.Length, (int)op));
    }

    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => AllReduce([tensor], op);

    /// <summary>
    /// Starts an in-place all-reduce of each tensor and returns at once; the tensors hold the result only after
    /// <see cref="CollectiveWork.Wait"/>. Every rank must start the same collectives in the same order.
    /// </summary>
    public unsafe CollectiveWork AllReduceAsync(IReadOnlyList<Tensor> tensors, ReduceOp op = ReduceOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var hl = new HandleList(tensors);
        IntPtr work;
        fixed (IntPtr* p = hl.Ptrs) Check(oml_pg_all_reduce_async(Live, p, hl.Ptrs.Length, (int)op, out work));
        return new CollectiveWork(this, work);
    }

    /// <summary>Overwrites each tensor with <paramref name="root"/>'s.</summary>
    public unsafe void Broadcast(IReadOnlyList<Tensor> tensors, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0) return;
        using var hl = new HandleList(tensors);
        fixed (IntPtr* p = hl.Ptrs) Check(oml_pg_broadcast(Live, p, hl.Ptrs.Length, root));
    }

    /// <summary>Reduces each tensor into <paramref name="root"/>'s copy (the other ranks' copies are then unspecified).</summary>
    public unsafe void Reduce(IReadOnlyList<Tensor> tensors, int root, ReduceOp op = ReduceOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0) return;
        using var hl = new HandleList(tensors);
        fixed (IntPtr* p = hl.Ptrs) Check(oml_pg_reduce(Live, p, hl.Ptrs.Length, root, (int)op));
    }

    /// <summary>
    /// Assigns each of <paramref name="sizes"/> (parameters, by element count) to one rank, balancing the totals: the
    /// largest first, each to the rank with the least so far (ties to the lower rank). The same on every rank.
    /// </summary>
    public static int[] Partition(IReadOnlyList<long> sizes, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        var owner = new int[sizes.Count];
        var load = new long[worldSize];
        foreach (int i in Enumerable.Range(0, sizes.Count).OrderByDescending(i => sizes[i]).ThenBy(i => i))
        {
            int best = 0;
            for (int r = 1; r < worldSize; r++) if (load[r] < load[best]) best = r;
            owner[i] = best;
            load[best] += sizes[i];
        }
        return owner;
    }

    /// <summary>Fills <paramref name="output"/> (WorldSize × the input's elements, contiguous) with every rank's <paramref name="input"/> in rank order.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        Check(oml_pg_all_gather(Live, input.Handle, output.Handle));
    }

    /// <summary>
    /// Starts <see cref="AllGather"/> and returns at once: <paramref name="output"/> (contiguous) holds every rank's input
    /// only after <see cref="CollectiveWork.Wait"/> (on CUDA, the wait orders the current stream after the collective).
    /// The work keeps both tensors alive. Every rank must start the same collectives in the same order.
    /// </summary>
    public CollectiveWork AllGatherAsync(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        Check(oml_pg_all_gather_async(Live, input.Handle, output.Handle, out var work));
        return new CollectiveWork(this, work);
    }

    /// <summary>
    /// Fills <paramref name="output"/> with the reduction over ranks of slice number <see cref="Rank"/> of
    /// <paramref name="input"/> (WorldSize slices): NCCL's own reduce-scatter on an NCCL group, an all-reduce and a slice
    /// on gloo (which lacks reduce-scatter in some libtorch versions; twice the bytes).
    /// </summary>
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        Check(oml_pg_reduce_scatter(Live, input.Handle, output.Handle, (int)op));
    }

    /// <summary>Elements per bucket of <see cref="AllReduceGradients"/> unless told otherwise (64 Mi).</summary>
    public const long DefaultBucketElements = 64L << 20;

    /// <summary>
    /// Sums the gradients of <paramref name="parameters"/> over the ranks, in buckets of at most
    /// <paramref name="bucketElements"/> elements of one dtype (a rank that had no rows in a batch contributes zeros).
    /// The all-reduces are asynchronous and pipelined: a bucket's all-reduce runs while the next bucket is flattened
    /// and the previous one's result is copied back, with at most two buckets in flight (so at most two buckets'
    /// flat copies exist at once); every one has finished when this returns.
    /// </summary>
    public void AllReduceGradients(IReadOnlyList<Tensor> parameters, long bucketElements = DefaultBucketElements)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketElements, 1);
        const int maxInFlight = 2;
        var grads = new List<Tensor>(parameters.Count);
        var inFlight = new Queue<(Tensor Flat, int Start, int End, CollectiveWork Work)>();
        void Finish((Tensor Flat, int Start, int End, CollectiveWork Work) b)
        {
            try
            {
                b.Work.Wait();
                using var scope = Torch.NewScope();
                using var noGrad = Torch.NoGrad();
                long offset = 0;
                for (int i = b.Start; i < b.End; i++)
                {
                    long k = grads[i].NumEl;
                    grads[i].CopyFrom(b.Flat.Narrow(0, offset, k).Reshape(grads[i].Shape));
                    offset += k;
                }
            }
            finally
            {
                b.Work.Dispose();
                b.Flat.Dispose();
            }
        }
        try
        {
            foreach (var p in parameters)
            {
                var g = p.Grad;
                if (g is null)
                {
                    using (Torch.NoGrad())
                    using (var zeros = Torch.ZerosLike(p))
                        p.Grad = zeros;
                    g = p.Grad!;
                }
                grads.Add(g);
            }
            int start = 0;
            while (start < grads.Count)
            {
                int end = start + 1;
                long n = grads[start].NumEl;
                while (end < grads.Count && grads[end].DType == grads[start].DType && n + grads[end].NumEl <= bucketElements) n += grads[end++].NumEl;
                Tensor flat;
                using (var scope = Torch.NewScope())
                using (Torch.NoGrad())
                    flat = Torch.Cat(grads.GetRange(start, end - start).Select(g => g.Reshape(-1)).ToList()).DetachFromScope();
                CollectiveWork work;
                try { work = AllReduceAsync([flat]); }
                catch { flat.Dispose(); throw; }
                inFlight.Enqueue((flat, start, end, work));
                if (inFlight.Count >= maxInFlight) Finish(inFlight.Dequeue());
                start = end;
            }
            while (inFlight.Count > 0) Finish(inFlight.Dequeue());
        }
        finally
        {
            // After an error: the collectives still running keep their own references to the flat copies.
            foreach (var b in inFlight) { b.Work.Dispose(); b.Flat.Dispose(); }
            foreach (var g in grads) g.Dispose();
        }
    }

    /// <summary>Returns once every rank has called it.</summary>
    public void Barrier() => Check(oml_pg_barrier(Live));

    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, IntPtr.Zero);
        if (h != IntPtr.Zero) oml_pg_free(h);
    }
}

/// <summary>
/// A collective started by <see cref="ProcessGroup.AllReduceAsync"/> or <see cref="ProcessGroup.AllGatherAsync"/> (libtorch's c10d work handles): its tensors hold
/// the result only after <see cref="Wait"/>, which fails with an error naming the rank (or the group's timeout).
/// Disposing without waiting leaves the collective to finish in the background.
/// </summary>
public sealed class CollectiveWork : IDisposable
{
    private IntPtr _handle;
    private readonly ProcessGroup _group;   // the group must outlive its work

    internal CollectiveWork(ProcessGroup group, IntPtr handle)
    {
        _group = group;
        _handle = handle;
    }

    /// <summary>Blocks until every collective of this work has finished on this rank.</summary>
    public void Wait()
    {
        var h = _handle != IntPtr.Zero ? _handle : throw new ObjectDisposedException(nameof(CollectiveWork));
        Check(oml_work_wait(h));
        GC.KeepAlive(_group);
    }

    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, IntPtr.Zero);
        if (h != IntPtr.Zero) oml_work_free(h);
    }
}
