using Oml.Engine.Distributed;

namespace Oml.Engine.Tests;

/// <summary>
/// The gradient reducer (all-reduce overlapped with the backward pass through autograd hooks in the shim), against the
/// all-reduce after the backward pass (<see cref="ProcessGroup.AllReduceGradients"/>): ranks as threads over gloo.
/// </summary>
public sealed class GradReducerTests
{
    private static void RequireGloo() =>
        Assert.SkipUnless(ProcessGroup.IsAvailable("gloo") || !Env.Device.IsCuda, "this CUDA build of the shim has NCCL but no gloo");

    private static T[] OnRanks<T>(int world, Func<ProcessGroup, T> body, TimeSpan? timeout = null)
    {
        int port = Launcher.FreePort();
        var tasks = Enumerable.Range(0, world).Select(rank => Task.Factory.StartNew(() =>
        {
            using var g = ProcessGroup.Create("gloo", "127.0.0.1", port, rank, world, timeout ?? TimeSpan.FromSeconds(60));
            return body(g);
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(tasks);
        return tasks.Select(t => t.Result).ToArray();
    }

    // A small network, in forward order: U [7], which no forward pass uses, then W1 [4, 6], b1 [6], W2 [6, 5], W3 [5, 3].
    // (An unused parameter holds back the buckets after it until finish: here it comes first, so its bucket is the last.)
    private static readonly long[][] Shapes = [[7], [4, 6], [6], [6, 5], [5, 3]];

    private static List<Tensor> Parameters(DType dtype)
    {
        var ps = new List<Tensor>();
        for (int p = 0; p < Shapes.Length; p++)
        {
            int n = (int)Shapes[p].Aggregate(1L, (a, b) => a * b);
            using var v = Torch.FromArray(Enumerable.Range(0, n).Select(i => (float)Math.Sin(1.7 * i + p) * 0.5f).ToArray(), Shapes[p]);
            ps.Add(v.To(dtype).DetachFromScope().RequiresGrad_());
        }
        return ps;
    }

    /// <summary>Backward of micro-batch <paramref name="mb"/> of rank <paramref name="rank"/>'s share (its own rows).</summary>
    private static void Backward(List<Tensor> ps, int rank, int step, int mb)
    {
        using var scope = Torch.NewScope();
        int rows = 2 + (rank + mb) % 2;
        var x = Torch.FromArray(Enumerable.Range(0, rows * 4).Select(i => (float)Math.Cos(0.3 * i + 5 * rank + 2 * mb + 11 * step)).ToArray(), [rows, 4]).To(ps[0].DType);
        var h = (x.MatMul(ps[1]) + ps[2]).Tanh();
        var y = h.MatMul(ps[3]).Tanh().MatMul(ps[4]);
        (y.To(DType.Float32).Square().Sum() * 0.25).Backward();
    }

    private static List<float[]> Grads(IEnumerable<Tensor> ps) =>
        ps.Select(p => { using var g = p.Grad; return g is null ? [] : g.To(DType.Float32).ToArray<float>(); }).ToList();

    [Fact]
    public void Overlapped_buckets_give_the_same_sums_as_the_all_reduce_after_backward_with_accumulation_and_an_unused_parameter()
    {
        RequireGloo();
        const int micro = 3, steps = 2;
        var results = OnRanks(2, g =>
        {
            var overlapped = Parameters(DType.Float32);
            var after = Parameters(DType.Float32);
            var outO = new List<List<float[]>>();
            var outA = new List<List<float[]>>();
            // Buckets of at most 12 elements, in reverse order: W3 (15), W2 (30), b1 (6), W1 (24), U (7): five buckets.
            using var reducer = new GradReducer(g, overlapped, bucketElements: 12);
            for (int step = 0; step < steps; step++)
            {
                foreach (var p in overlapped.Concat(after)) p.Grad = null;
                for (int mb = 0; mb < micro; mb++)
                {
                    if (mb == micro - 1) reducer.Enable();
                    Backward(overlapped, g.Rank, step, mb);
                    Backward(after, g.Rank, step, mb);
                }
                reducer.Finish();
                g.AllReduceGradients(after, bucketElements: 12);
                outO.Add(Grads(overlapped));
                outA.Add(Grads(after));
            }
            var r = (outO, outA, reducer.Buckets, reducer.StartedDuringBackward);
            foreach (var p in overlapped.Concat(after)) p.Dispose();
            return r;
        });
        foreach (var (outO, outA, buckets, early) in results)
        {
            Assert.Equal(5, buckets);
            // Every bucket but the one holding the unused U started from a hook, in each step.
            Assert.Equal(steps * 4, early);
            for (int s = 0; s < steps; s++)
                for (int p = 0; p < Shapes.Length; p++)
                {
                    Assert.Equal(outA[s][p], outO[s][p]);
                    Assert.Contains(outO[s][p], v => v != 0 || p == 0);
                }
        }
        Assert.Equal(results[0].outO[1][1], results[1].outO[1][1]);
    }

    [Fact]
    public void Bfloat16_gradients_are_summed_in_float32_into_master_copies()
    {
        RequireGloo();
        var results = OnRanks(2, g =>
        {
            var ps = Parameters(DType.BFloat16);
            var mastersO = ps.Select(p => p.To(DType.Float32, p.Device, copy: true).DetachFromScope()).ToList();
            var mastersA = ps.Select(p => p.To(DType.Float32, p.Device, copy: true).DetachFromScope().RequiresGrad_()).ToList();
            using var reducer = new GradReducer(g, ps, bucketElements: 40, reduceDType: DType.Float32);
            Backward(ps, g.Rank, 0, 0);
            reducer.Enable();
            Backward(ps, g.Rank, 0, 1);
            // The all-reduce after backward, as the trainer does it: the bfloat16 gradients converted, then summed.
            for (int i = 0; i < ps.Count; i++)
                using (var gr = ps[i].Grad)
                    mastersA[i].Grad = gr?.To(DType.Float32);
            g.AllReduceGradients(mastersA);
            reducer.Finish(mastersO);
            var r = (Grads(mastersO), Grads(mastersA), mastersO.Select(m => { using var gr = m.Grad; return gr!.DType; }).ToList());
            foreach (var t in ps.Concat(mastersO).Concat(mastersA)) t.Dispose();
            return r;
        });
        foreach (var (o, a, dtypes) in results)
        {
            Assert.All(dtypes, d => Assert.Equal(DType.Float32, d));
            for (int p = 0; p < Shapes.Length; p++) Assert.Equal(a[p], o[p]);
        }
    }

    [Fact]
    public void With_owners_each_gradient_is_reduced_into_its_owner_only()
    {
        RequireGloo();
        // A sharded optimizer's owners (U, b1 and W3 on rank 0; W1 and W2 on rank 1): buckets never mix owners.
        int[] owners = [0, 1, 0, 1, 0];
        var results = OnRanks(2, g =>
        {
            var overlapped = Parameters(DType.Float32);
            var after = Parameters(DType.Float32);
            using var reducer = new GradReducer(g, overlapped, bucketElements: 1000, owners: owners);
            Backward(overlapped, g.Rank, 0, 0);
            Backward(after, g.Rank, 0, 0);
            reducer.Enable();
            Backward(overlapped, g.Rank, 0, 1);
            Backward(after, g.Rank, 0, 1);
            reducer.Finish();
            g.AllReduceGradients(after);
            var r = (Grads(overlapped), Grads(after), reducer.Buckets, reducer.StartedDuringBackward);
            foreach (var p in overlapped.Concat(after)) p.Dispose();
            return r;
        });
        for (int rank = 0; rank < 2; rank++)
        {
            var (o, a, buckets, early) = results[rank];
            Assert.Equal(5, buckets);   // reverse order W3 (0), W2 (1), b1 (0), W1 (1), U (0): the owner changes each time
            Assert.Equal(4, early);
            for (int p = 0; p < Shapes.Length; p++)
                if (owners[p] == rank) Assert.Equal(a[p], o[p]);
                else Assert.Empty(o[p]);   // another rank's parameter: its gradient is freed
        }
        OnRanks(1, g =>
        {
            var ps = Parameters(DType.Float32);
            Assert.Throws<ArgumentException>(() => new GradReducer(g, ps, owners: [0]));
            Assert.Contains("is not a rank", Assert.Throws<TorchException>(() => new GradReducer(g, ps, owners: [0, 0, 1, 0, 0])).Message, StringComparison.Ordinal);
            foreach (var p in ps) p.Dispose();
            return 0;
        });
    }

    [Fact]
    public void A_second_backward_pass_after_a_bucket_started_fails_finish_and_the_next_step_works()
    {
        RequireGloo();
        var results = OnRanks(1, g =>
        {
            var ps = Parameters(DType.Float32);
            using var reducer = new GradReducer(g, ps, bucketElements: 12);
            reducer.Enable();
            Backward(ps, 0, 0, 0);
            Backward(ps, 0, 0, 1);
            string message = Assert.Throws<TorchException>(() => reducer.Finish()).Message;
            foreach (var p in ps) p.Grad = null;
            reducer.Enable();
            Backward(ps, 0, 0, 0);
            reducer.Finish();
            var grads = Grads(ps);
            foreach (var p in ps) p.Dispose();
            return (message, grads);
        });
        Assert.Contains("gloo rank 0 of 1: grad_reducer", results[0].message, StringComparison.Ordinal);
        Assert.Contains("accumulated again", results[0].message, StringComparison.Ordinal);
        Assert.Contains(results[0].grads[1], v => v != 0);
        Assert.All(results[0].grads[0], v => Assert.Equal(0f, v));
    }

    [Fact]
    public void A_rank_that_dies_before_its_backward_fails_the_others_finish_with_an_error_naming_the_rank()
    {
        RequireGloo();
        // Rank 1 leaves only once rank 0's group is up: leaving during the rendezvous failed rank 0's init instead (a
        // "Connection closed by peer" before any backward), which is not what this test is about.
        using var rank0Up = new ManualResetEventSlim();
        var results = OnRanks(2, g =>
        {
            if (g.Rank == 1)
            {
                Assert.True(rank0Up.Wait(TimeSpan.FromSeconds(30)), "rank 0's group never came up");
                return "left";
            }
            rank0Up.Set();
            var ps = Parameters(DType.Float32);
            try
            {
                using var reducer = new GradReducer(g, ps, bucketElements: 12);
                reducer.Enable();
                Backward(ps, 0, 0, 0);
                reducer.Finish();
                return "no error";
            }
            catch (TorchException x) { return x.Message; }
            finally { foreach (var p in ps) p.Dispose(); }
        }, TimeSpan.FromSeconds(3));
        Assert.Contains("gloo rank 0 of 2: grad_reducer", results[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        RequireGloo();
        OnRanks(1, g =>
        {
            using var plain = Torch.Zeros([3]);
            Assert.Contains("not a leaf that requires grad", Assert.Throws<TorchException>(() => new GradReducer(g, [plain])).Message, StringComparison.Ordinal);
            Assert.Throws<ArgumentException>(() => new GradReducer(g, []));
            var ps = Parameters(DType.Float32);
            using var reducer = new GradReducer(g, ps);
            Assert.Throws<ArgumentException>(() => reducer.Finish([ps[0]]));
            foreach (var p in ps) p.Dispose();
            return 0;
        });
    }
}
