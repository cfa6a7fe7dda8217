namespace Oml.Engine.Tests;

/// <summary>
/// <see cref="Torch.AccumulateWeightGradientsInPlace"/>: micro-batches whose linear layers add their weight gradients
/// straight into .grad give the gradients of the usual path, and nothing that returns gradients to its caller
/// (autograd.grad, a backward pass that builds a graph) is changed by it.
/// </summary>
public class WeightGradInPlaceTests
{
    private static Tensor D(int seed, params long[] shape)
    {
        var rng = new Random(seed);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        return Torch.FromArray<double>(Enumerable.Range(0, (int)n).Select(_ => rng.NextDouble() - 0.5).ToArray(), shape, Env.Device);
    }

    private static (Tensor W1, Tensor W2, Tensor B1) Weights() =>
        (D(1, 8, 4).RequiresGrad_(), D(2, 3, 8).RequiresGrad_(), D(3, 8).RequiresGrad_());

    // Two layers without bias (the in-place path) and one with (the usual one), over 3-d inputs.
    private static Tensor Loss(Tensor x, (Tensor W1, Tensor W2, Tensor B1) w) =>
        (F.Linear(F.Linear(x, w.W1).Tanh(), w.W2).Square().Sum() + F.Linear(x, w.W1, w.B1).Sigmoid().Sum());

    [Fact]
    public void Micro_batches_accumulated_in_place_give_the_gradients_of_the_usual_path()
    {
        using var s = Torch.NewScope();
        var x1 = D(4, 2, 5, 4);
        var x2 = D(5, 3, 5, 4);
        var x3 = D(6, 1, 7, 4);
        var usual = Weights();
        foreach (var x in new[] { x1, x2, x3 }) Loss(x, usual).Backward();
        var inPlace = Weights();
        long hits = Torch.WeightGradientsAddedInPlace;
        using (Torch.AccumulateWeightGradientsInPlace())
            foreach (var x in new[] { x1, x2, x3 }) Loss(x, inPlace).Backward();
        // Micro-batches 2 and 3 added W1 and W2 in place (other tests may add more meanwhile, never fewer).
        Assert.True(Torch.WeightGradientsAddedInPlace - hits >= 4, $"{Torch.WeightGradientsAddedInPlace - hits} in-place additions");
        Check.Close(usual.W1.Grad!.ToArray<double>(), inPlace.W1.Grad!, [8, 4], 1e-12);
        Check.Close(usual.W2.Grad!.ToArray<double>(), inPlace.W2.Grad!, [3, 8], 1e-12);
        Check.Close(usual.B1.Grad!.ToArray<double>(), inPlace.B1.Grad!, [8], 1e-12);
        // The one-batch gradient is the sum of the three.
        var whole = Weights();
        (Loss(x1, whole) + Loss(x2, whole) + Loss(x3, whole)).Backward();
        Check.Close(whole.W1.Grad!.ToArray<double>(), inPlace.W1.Grad!, [8, 4], 1e-12);
    }

    [Fact]
    public void Autograd_grad_and_graph_building_passes_inside_the_scope_return_their_gradients()
    {
        using var s = Torch.NewScope();
        var x = D(7, 2, 5, 4);
        var reference = Weights();
        var expected = Torch.Gradients([Loss(x, reference)], [reference.W1, reference.W2]);
        var w = Weights();
        using (Torch.AccumulateWeightGradientsInPlace())
        {
            Loss(x, w).Backward();   // .grad exists from here on
            var before = w.W1.Grad!.ToArray<double>();
            var got = Torch.Gradients([Loss(x, w)], [w.W1, w.W2]);
            Check.Close(expected[0]!.ToArray<double>(), got[0]!, [8, 4], 1e-12);
            Check.Close(expected[1]!.ToArray<double>(), got[1]!, [3, 8], 1e-12);
            Check.Close(before, w.W1.Grad!, [8, 4], 0);
            // create_graph: the gradient comes back differentiable, and .grad is untouched.
            var g = Torch.Gradients([Loss(x, w)], [w.W1], createGraph: true);
            Assert.True(g[0]!.RequiresGrad);
            Check.Close(expected[0]!.ToArray<double>(), g[0]!, [8, 4], 1e-12);
            Check.Close(before, w.W1.Grad!, [8, 4], 0);
        }
    }

    [Fact]
    public void The_setting_belongs_to_the_thread_that_opened_it()
    {
        // This thread opens a scope, another opens its own, then this one closes: the other's stays on (a process-wide
        // setting restored by this thread would switch it off under the other's training).
        var opened = new ManualResetEventSlim();
        var closed = new ManualResetEventSlim();
        long added = -1;
        Exception? failure = null;
        var mine = Torch.AccumulateWeightGradientsInPlace();
        var other = new Thread(() =>
        {
            try
            {
                using var t = Torch.NewScope();
                using var theirs = Torch.AccumulateWeightGradientsInPlace();
                opened.Set();
                closed.Wait(TestContext.Current.CancellationToken);
                var x = D(9, 2, 5, 4);
                var w = Weights();
                long hits = Torch.WeightGradientsAddedInPlace;
                Loss(x, w).Backward();
                Loss(x, w).Backward();
                added = Torch.WeightGradientsAddedInPlace - hits;
            }
            catch (Exception e) { failure = e; }
        });
        other.Start();
        opened.Wait(TestContext.Current.CancellationToken);
        mine.Dispose();
        closed.Set();
        other.Join();
        Assert.Null(failure);
        Assert.True(added >= 2, $"{added} in-place additions on the thread whose scope stayed open");
    }

    [Fact]
    public void Scopes_nest_and_restore_the_setting()
    {
        using var s = Torch.NewScope();
        var x = D(8, 2, 5, 4);
        var w = Weights();
        Loss(x, w).Backward();
        var outer = Torch.AccumulateWeightGradientsInPlace();
        using (Torch.AccumulateWeightGradientsInPlace()) { }
        outer.Dispose();
        outer.Dispose();   // a second dispose changes nothing
        // Off again: the usual path, whose result is the same sum.
        Loss(x, w).Backward();
        var twice = Weights();
        (Loss(x, twice) * 2).Backward();
        Check.Close(twice.W1.Grad!.ToArray<double>(), w.W1.Grad!, [8, 4], 1e-12);
    }
}
