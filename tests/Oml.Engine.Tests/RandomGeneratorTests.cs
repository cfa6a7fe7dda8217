namespace Oml.Engine.Tests;

/// <summary>
/// Tests that seed or draw from libtorch's global generators (<see cref="Torch.ManualSeed"/>), which every thread of
/// the process shares: they run alone, so that no other test's draws land between their seeding and their draws.
/// Everything else draws from a <see cref="RandomGenerator"/> of its own and runs in parallel.
/// </summary>
[CollectionDefinition(nameof(GlobalGeneratorTests), DisableParallelization = true)]
public sealed class GlobalGeneratorCollection;

[Collection(nameof(GlobalGeneratorTests))]
public class GlobalGeneratorTests
{
    private static Tensor Probs() => Torch.FromArray(new[] { 0.1f, 0.2f, 0.3f, 0.4f, 0.7f, 0.2f, 0.05f, 0.05f }, 2, 4).To(Env.Device);

    /// <summary>Each random operation once, from <paramref name="g"/> (null: the global generator).</summary>
    private static double[] Draws(RandomGenerator? g)
    {
        using var s = Torch.NewScope();
        var d = Env.Device;
        return
        [
            .. Torch.Rand([40], device: d, generator: g).ToArray<double>(),
            .. Torch.Randn([40], device: d, generator: g).ToArray<double>(),   // ≥ 16 elements: libtorch's vectorised fill
            .. Torch.Randn([5], device: d, generator: g).ToArray<double>(),    // < 16: one sample at a time
            .. Torch.RandInt(0, 1000, [40], device: d, generator: g).ToArray<double>(),
            .. Torch.Multinomial(Probs(), 1, generator: g).ToArray<double>(),
            .. Torch.Multinomial(Probs(), 3, generator: g).ToArray<double>(),
            .. Torch.Multinomial(Probs(), 50, replacement: true, generator: g).ToArray<double>(),
            .. F.Dropout(Torch.Ones([40], device: d), 0.3, training: true, g).ToArray<double>(),
            .. Torch.Randn([40], DType.BFloat16, d, g).ToArray<double>(),
        ];
    }

    [Fact]
    public void Seeding_makes_global_draws_repeatable()
    {
        using var s = Torch.NewScope();
        Torch.ManualSeed(123);
        var a = Torch.Randn([16], device: Env.Device).ToArray<float>();
        Torch.ManualSeed(123);
        var b = Torch.Randn([16], device: Env.Device).ToArray<float>();
        Torch.ManualSeed(124);
        var c = Torch.Randn([16], device: Env.Device).ToArray<float>();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(7UL)]
    [InlineData(0x9E3779B97F4A7C15UL)]
    public void A_new_generator_draws_what_the_global_one_draws_after_ManualSeed(ulong seed)
    {
        // So a seeded run that moved from Torch.ManualSeed to a generator of its own draws the same values as before.
        Torch.ManualSeed(seed);
        var global = Draws(null);
        using var g = new RandomGenerator(seed, Env.Device);
        Assert.Equal(global, Draws(g));
        // And it left the global generator where it was: the global stream goes on as if g had never drawn.
        Torch.ManualSeed(seed);
        _ = Draws(null);
        var globalNext = Draws(null);
        Torch.ManualSeed(seed);
        _ = Draws(null);
        using (var other = new RandomGenerator(seed + 1, Env.Device)) _ = Draws(other);
        Assert.Equal(globalNext, Draws(null));
    }

    [Fact]
    public async Task Threads_that_seed_the_global_generator_disturb_each_other_and_generators_of_their_own_do_not()
    {
        // Two threads draw in lock step (a barrier between draws), as two thread-ranks or two requests would. With the
        // shared global generator each thread's draws depend on the other's; with generators of their own they do not.
        const int steps = 8;
        float[][] Alone(ulong seed, bool global)
        {
            using var g = global ? null : new RandomGenerator(seed, Env.Device);
            if (global) Torch.ManualSeed(seed);
            return Enumerable.Range(0, steps).Select(_ => { using var t = Torch.Randn([32], device: Env.Device, generator: g); return t.ToArray<float>(); }).ToArray();
        }
        async Task<(float[][] A, float[][] B)> Together(bool global)
        {
            using var barrier = new Barrier(2);
            float[][] Run(ulong seed)
            {
                using var g = global ? null : new RandomGenerator(seed, Env.Device);
                if (global) Torch.ManualSeed(seed);
                var r = new float[steps][];
                for (int i = 0; i < steps; i++)
                {
                    Assert.True(barrier.SignalAndWait(TimeSpan.FromSeconds(60)));
                    using var t = Torch.Randn([32], device: Env.Device, generator: g);
                    r[i] = t.ToArray<float>();
                }
                return r;
            }
            var a = Task.Factory.StartNew(() => Run(1), TaskCreationOptions.LongRunning);
            var b = Task.Factory.StartNew(() => Run(2), TaskCreationOptions.LongRunning);
            return (await a, await b);
        }

        var (ga, gb) = await Together(global: true);
        Assert.False(ga.SequenceEqual(Alone(1, true), ArrayComparer) && gb.SequenceEqual(Alone(2, true), ArrayComparer),
            "with the global generator both threads drew what they draw alone: the lock step did not interleave them");
        var (oa, ob) = await Together(global: false);
        Assert.Equal(Alone(1, false), oa);
        Assert.Equal(Alone(2, false), ob);
    }

    private static readonly IEqualityComparer<float[]> ArrayComparer =
        EqualityComparer<float[]>.Create((x, y) => x!.SequenceEqual(y!), x => x.Length);
}

/// <summary>Generators of their own: no global state, so these run in parallel with everything else.</summary>
public class RandomGeneratorTests
{
    [Fact]
    public void A_generator_repeats_from_its_seed_and_goes_on_between_draws()
    {
        using var s = Torch.NewScope();
        using var g = new RandomGenerator(42, Env.Device);
        Assert.Equal(42UL, g.InitialSeed);
        Assert.Equal(Env.Device, g.Device);
        var first = Torch.Randn([16], device: Env.Device, generator: g).ToArray<float>();
        var second = Torch.Randn([16], device: Env.Device, generator: g).ToArray<float>();
        Assert.NotEqual(first, second);
        g.ManualSeed(42);
        Assert.Equal(first, Torch.Randn([16], device: Env.Device, generator: g).ToArray<float>());
        using var same = new RandomGenerator(42, Env.Device);
        Assert.Equal(first, Torch.Randn([16], device: Env.Device, generator: same).ToArray<float>());
        g.ManualSeed(43);
        Assert.Equal(43UL, g.InitialSeed);
        Assert.NotEqual(first, Torch.Randn([16], device: Env.Device, generator: g).ToArray<float>());
    }

    [Fact]
    public void Multinomial_from_a_generator_is_seeded_and_follows_probabilities()
    {
        using var s = Torch.NewScope();
        var p = Torch.FromArray(new[] { 0f, 0.25f, 0.75f, 0f, 1f, 0f }, 2, 3).To(Env.Device);
        long[] Draw(ulong seed)
        {
            using var g = new RandomGenerator(seed, Env.Device);
            return Torch.Multinomial(p, 1000, replacement: true, generator: g).ToArray<long>();
        }
        var a = Draw(42);
        Assert.Equal(a, Draw(42));
        Assert.NotEqual(a, Draw(43));
        var row0 = a.Take(1000).ToArray();
        Assert.DoesNotContain(0L, row0);
        Assert.InRange(row0.Count(i => i == 2) / 1000.0, 0.70, 0.80);
        Assert.All(a.Skip(1000), i => Assert.Equal(1L, i));
    }

    [Fact]
    public void Dropout_from_a_generator_zeroes_rescales_and_repeats()
    {
        using var s = Torch.NewScope();
        using var g = new RandomGenerator(7, Env.Device);
        var x = Torch.Ones([100000], device: Env.Device);
        var y = F.Dropout(x, 0.25, training: true, g);
        var kept = y.Ne(0).To(DType.Float32).Mean().ToDouble();
        Assert.InRange(kept, 0.74, 0.76);
        Check.Close([4.0 / 3], y.Sum().Reshape(1) / (kept * 100000), null, 1e-4);
        g.ManualSeed(7);
        Assert.Equal(y.ToArray<float>(), F.Dropout(x, 0.25, training: true, g).ToArray<float>());
        Check.Close(x.ToArray<double>(), F.Dropout(x, 0.25, training: false, g));
        Check.Close(new double[100000], F.Dropout(x, 1, training: true, g));
        // Gradients flow through the mask: d(sum(dropout(w)))/dw is the scaled mask.
        var w = Torch.Ones([1000], device: Env.Device).RequiresGrad_();
        var out_ = F.Dropout(w, 0.5, training: true, g);
        out_.Sum().Backward();
        Check.Close(out_.Detach().ToArray<double>(), w.Grad!);
        Assert.Throws<ArgumentOutOfRangeException>(() => F.Dropout(x, 1.5, true, g));
    }

    [Fact]
    public void A_generator_of_another_device_or_a_disposed_one_is_refused()
    {
        using var s = Torch.NewScope();
        // A generator of the tests' device, a tensor of the other one (on a CPU run, a CUDA tensor never made).
        var other = Env.Device.IsCuda ? Device.Cpu : Device.Cuda(0);
        using var mine = new RandomGenerator(1, Env.Device);
        var e = Assert.Throws<ArgumentException>(() => Torch.Randn([4], device: other, generator: mine));
        Assert.Equal($"randn: the random generator is for {Env.Device}, the tensor is on {other}", e.Message);
        var probs = Torch.Ones([2, 3], device: Env.Device);
        using var wrong = Env.Device.IsCuda ? new RandomGenerator(1, Device.Cpu) : null;
        if (wrong is not null) Assert.Throws<ArgumentException>(() => Torch.Multinomial(probs, 1, generator: wrong));
        if (!Torch.Cuda.IsAvailable)
            Assert.Contains("CUDA", Assert.Throws<TorchException>(() => new RandomGenerator(1, Device.Cuda(0))).Message, StringComparison.Ordinal);
        var gone = new RandomGenerator(1, Env.Device);
        gone.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Torch.Rand([4], device: Env.Device, generator: gone));
        Assert.Throws<ObjectDisposedException>(() => gone.ManualSeed(2));
    }
}
