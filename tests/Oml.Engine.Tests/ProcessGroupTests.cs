using Oml.Engine.Distributed;

namespace Oml.Engine.Tests;

/// <summary>
/// libtorch's process groups through the shim: each test runs the ranks as threads of this process (one group per
/// thread, as separate processes would have), over gloo on the CPU.
/// </summary>
public sealed class ProcessGroupTests
{
    private static int FreePort() => Launcher.FreePort();

    /// <summary>
    /// Gloo must be there on the CPU machine (Debian's libgloo-dev); a CUDA test run against a PyTorch wheel, which ships
    /// no gloo headers, builds the shim with NCCL only, so the gloo tests are skipped there.
    /// </summary>
    private static void RequireGloo() =>
        Assert.SkipUnless(ProcessGroup.IsAvailable("gloo") || !Env.Device.IsCuda, "this CUDA build of the shim has NCCL but no gloo (the PyTorch wheel ships no gloo headers)");

    /// <summary>Runs <paramref name="body"/> once per rank, each on its own thread with its own group; returns each rank's result.</summary>
    private static T[] OnRanks<T>(int world, Func<ProcessGroup, T> body, TimeSpan? timeout = null)
    {
        int port = FreePort();
        var tasks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, timeout ?? TimeSpan.FromSeconds(60));
            return body(g);
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(tasks);
        return tasks.Select(t => t.Result).ToArray();
    }

    [Fact]
    public void Gloo_is_compiled_in()
    {
        RequireGloo();
        Assert.True(ProcessGroup.IsAvailable("gloo"), "the native library was built without gloo: install libgloo-dev and rebuild (scripts/setup.sh)");
    }

    [Fact]
    public void All_reduce_sums_max_and_broadcast_reach_every_rank()
    {
        RequireGloo();
        var results = OnRanks(3, g =>
        {
            using var a = Torch.FromArray(new float[] { g.Rank, 10 * g.Rank + 1 }, 2);
            using var b = Torch.FromArray(new long[] { g.Rank }, 1);
            g.AllReduce([a]);
            g.AllReduce(b, ReduceOp.Max);
            using var c = Torch.FromArray(new float[] { 100 + g.Rank }, 1);
            g.Broadcast([c], root: 2);
            g.Barrier();
            return (a.ToArray<float>(), b.ToArray<long>()[0], c.ToArray<float>()[0], g.Rank, g.WorldSize);
        });
        foreach (var r in results)
        {
            Assert.Equal(new float[] { 0 + 1 + 2, 1 + 11 + 21 }, r.Item1);
            Assert.Equal(2, r.Item2);
            Assert.Equal(102f, r.Item3);
            Assert.Equal(3, r.WorldSize);
        }
        Assert.Equal([0, 1, 2], results.Select(r => r.Rank));
    }

    [Fact]
    public void All_gather_and_reduce_scatter_place_slices_by_rank()
    {
        RequireGloo();
        var results = OnRanks(2, g =>
        {
            using var mine = Torch.FromArray(new float[] { g.Rank + 1, g.Rank + 1, g.Rank + 1 }, 3);
            using var all = Torch.Zeros([6]);
            g.AllGather(mine, all);
            // Each rank contributes [r, r, 10r, 10r]: slice 0 reduces to [0+1, 0+1], slice 1 to [0+10, 0+10].
            using var input = Torch.FromArray(new float[] { g.Rank, g.Rank, 10 * g.Rank, 10 * g.Rank }, 4);
            using var slice = Torch.Zeros([2]);
            g.ReduceScatter(input, slice);
            return (all.ToArray<float>(), slice.ToArray<float>());
        });
        foreach (var r in results) Assert.Equal(new float[] { 1, 1, 1, 2, 2, 2 }, r.Item1);
        Assert.Equal(new float[] { 1, 1 }, results[0].Item2);
        Assert.Equal(new float[] { 10, 10 }, results[1].Item2);
    }

    [Fact]
    public void Asynchronous_all_gathers_overlap_a_blocking_collective_and_hold_every_rank_once_waited_for()
    {
        RequireGloo();
        var results = OnRanks(3, g =>
        {
            // Two gathers in flight while a blocking reduce-scatter runs (as a prefetch during a layer's backward pass);
            // the input handles are dropped before the wait (the work keeps the buffers alive).
            var outs = new[] { Torch.Zeros([3 * 4]), Torch.Zeros([3 * 4]) };
            var works = new List<CollectiveWork>();
            for (int k = 0; k < 2; k++)
                using (var mine = Torch.FromArray(Enumerable.Range(0, 4).Select(i => (float)(100 * k + 10 * g.Rank + i)).ToArray(), 4))
                    works.Add(g.AllGatherAsync(mine, outs[k]));
            using var input = Torch.FromArray(Enumerable.Range(0, 6).Select(i => (float)(g.Rank * 6 + i)).ToArray(), 6);
            using var slice = Torch.Zeros([2]);
            g.ReduceScatter(input, slice);
            for (int k = 1; k >= 0; k--) { works[k].Wait(); works[k].Dispose(); }
            var r = (outs.Select(o => o.ToArray<float>()).ToList(), slice.ToArray<float>());
            foreach (var o in outs) o.Dispose();
            return r;
        });
        foreach (var (gathered, _) in results)
            for (int k = 0; k < 2; k++)
                Assert.Equal(Enumerable.Range(0, 3).SelectMany(r => Enumerable.Range(0, 4).Select(i => (float)(100 * k + 10 * r + i))), gathered[k]);
        // Slice r of the sum over ranks of [6q, ..., 6q + 5]: elements 2r and 2r + 1 of [0 + 6 + 12 + 3i].
        for (int r = 0; r < 3; r++) Assert.Equal(new float[] { 18 + 3 * 2 * r, 18 + 3 * (2 * r + 1) }, results[r].Item2);
    }

    [Fact]
    public void Asynchronous_all_reduces_run_together_and_hold_the_sums_once_waited_for()
    {
        RequireGloo();
        var results = OnRanks(2, g =>
        {
            // Three collectives in flight at once, waited for in reverse order; the blocking all-reduce after them
            // sees the same sums.
            var ts = Enumerable.Range(0, 3).Select(k => Torch.FromArray(Enumerable.Range(0, 1000).Select(i => (float)(i * (k + 1) + g.Rank)).ToArray(), 1000)).ToList();
            var works = ts.Select(t => g.AllReduceAsync([t])).ToList();
            for (int k = works.Count - 1; k >= 0; k--) { works[k].Wait(); works[k].Dispose(); }
            using var max = Torch.FromArray(new long[] { 5 * g.Rank }, 1);
            using (var w = g.AllReduceAsync([max], ReduceOp.Max)) w.Wait();
            var r = (ts.Select(t => t.ToArray<float>()).ToList(), max.ToArray<long>()[0]);
            foreach (var t in ts) t.Dispose();
            return r;
        });
        foreach (var (sums, max) in results)
        {
            for (int k = 0; k < 3; k++)
                Assert.Equal(Enumerable.Range(0, 1000).Select(i => (float)(2 * i * (k + 1) + 0 + 1)), sums[k]);
            Assert.Equal(5, max);
        }
    }

    [Fact]
    public void Pipelined_gradient_buckets_sum_every_gradient_over_the_ranks()
    {
        RequireGloo();
        // Seven parameters of two dtypes in buckets of at most 6 elements (so more buckets than may be in flight, and a
        // bucket cut at each dtype change); rank 1 has no gradient for one of them (it contributes zeros).
        long[][] shapes = [[2, 3], [4], [3], [2, 2], [5], [1], [3, 2]];
        DType[] dtypes = [DType.Float32, DType.Float32, DType.Float64, DType.Float64, DType.Float32, DType.Float32, DType.Float64];
        float Value(int rank, int p, int i) => 100 * rank + 10 * p + i;
        var results = OnRanks(2, g =>
        {
            var ps = new List<Tensor>();
            for (int p = 0; p < shapes.Length; p++)
            {
                int n = (int)shapes[p].Aggregate(1L, (a, b) => a * b);
                var t = Torch.Zeros(shapes[p], dtypes[p]);
                t.RequiresGrad = true;
                if (!(g.Rank == 1 && p == 3))
                    using (var grad = Torch.FromArray(Enumerable.Range(0, n).Select(i => Value(g.Rank, p, i)).ToArray(), shapes[p]).To(dtypes[p]))
                        t.Grad = grad;
                ps.Add(t);
            }
            g.AllReduceGradients(ps, bucketElements: 6);
            var grads = ps.Select(t => { using var gr = t.Grad!; return gr.To(DType.Float32).ToArray<float>(); }).ToList();
            foreach (var t in ps) t.Dispose();
            return grads;
        });
        foreach (var grads in results)
            for (int p = 0; p < shapes.Length; p++)
                for (int i = 0; i < grads[p].Length; i++)
                    Assert.Equal(Value(0, p, i) + (p == 3 ? 0 : Value(1, p, i)), grads[p][i]);
        OnRanks(1, g => Assert.Throws<ArgumentOutOfRangeException>(() => g.AllReduceGradients([], bucketElements: 0)));
    }

    [Fact]
    public void A_rank_that_never_arrives_fails_the_others_with_an_error_naming_the_rank()
    {
        RequireGloo();
        int port = FreePort();
        var e = Assert.Throws<TorchException>(() =>
        {
            // Rank 1 of 2 joins; rank 0 (the store's host) never does.
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, 1, 2, TimeSpan.FromSeconds(3));
        });
        Assert.Contains("gloo rank 1 of 2", e.Message, StringComparison.Ordinal);

        // Rank 1 leaves only once rank 0's group is up (leaving during the rendezvous fails rank 0's init instead).
        using var rank0Up = new ManualResetEventSlim();
        var results = OnRanks(2, g =>
        {
            if (g.Rank == 1) return rank0Up.Wait(TimeSpan.FromSeconds(30)) ? "left" : "rank 0 never came up";
            rank0Up.Set();
            using var t = Torch.Ones([1]);
            try { g.AllReduce(t); return "no error"; }
            catch (TorchException x) { return x.Message; }
        }, TimeSpan.FromSeconds(3));
        Assert.Contains("gloo rank 0 of 2: all_reduce", results[0], StringComparison.Ordinal);

        // The same with an asynchronous all-reduce: starting it succeeds, waiting for it fails and names the rank.
        using var rank0UpAgain = new ManualResetEventSlim();
        var waited = OnRanks(2, g =>
        {
            if (g.Rank == 1) return rank0UpAgain.Wait(TimeSpan.FromSeconds(30)) ? "left" : "rank 0 never came up";
            rank0UpAgain.Set();
            using var t = Torch.Ones([1]);
            using var w = g.AllReduceAsync([t]);
            try { w.Wait(); return "no error"; }
            catch (TorchException x) { return x.Message; }
        }, TimeSpan.FromSeconds(3));
        Assert.Contains("gloo rank 0 of 2: all_reduce (wait)", waited[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_arguments_are_refused_before_any_rendezvous()
    {
        Assert.Contains("rank must be in", Assert.Throws<TorchException>(() => ProcessGroup.Create("gloo", "127.0.0.1", 29500, 2, 2)).Message, StringComparison.Ordinal);
        Assert.Contains("unknown backend", Assert.Throws<TorchException>(() => ProcessGroup.Create("mpi", "127.0.0.1", FreePort(), 0, 1)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_launcher_environment_is_read_and_checked()
    {
        Assert.Null(WithEnv(new() { ["WORLD_SIZE"] = null }, RankInfo.FromEnvironment));
        var r = WithEnv(new() { ["WORLD_SIZE"] = "4", ["RANK"] = "3", ["LOCAL_RANK"] = "1", ["MASTER_ADDR"] = "10.0.0.1", ["MASTER_PORT"] = "29400" }, RankInfo.FromEnvironment);
        Assert.Equal(new RankInfo(3, 4, 1, "10.0.0.1", 29400), r);
        Assert.Throws<ArgumentException>(() => WithEnv(new() { ["WORLD_SIZE"] = "2", ["RANK"] = "2", ["MASTER_ADDR"] = "h", ["MASTER_PORT"] = "1" }, RankInfo.FromEnvironment));
        Assert.Throws<ArgumentException>(() => WithEnv(new() { ["WORLD_SIZE"] = "2", ["RANK"] = "x", ["MASTER_ADDR"] = "h", ["MASTER_PORT"] = "1" }, RankInfo.FromEnvironment));
    }

    private static readonly object EnvLock = new();

    private static T WithEnv<T>(Dictionary<string, string?> vars, Func<T> f)
    {
        lock (EnvLock)
        {
            var keys = new[] { "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT" };
            var old = keys.ToDictionary(k => k, Environment.GetEnvironmentVariable);
            try
            {
                foreach (var k in keys) Environment.SetEnvironmentVariable(k, vars.TryGetValue(k, out var v) ? v : null);
                return f();
            }
            finally
            {
                foreach (var (k, v) in old) Environment.SetEnvironmentVariable(k, v);
            }
        }
    }
}
