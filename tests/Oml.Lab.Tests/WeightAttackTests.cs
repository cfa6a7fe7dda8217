using Oml.Engine;
using Oml.Lab.Attacks;
using Oml.Models;

namespace Oml.Lab.Tests;

public class MergeTests
{
    [Fact]
    public void Linear_merge_at_0_and_1_gives_the_inputs_exactly_and_leaves_them_unchanged()
    {
        using var a = TinyModels.Random(1);
        using var b = TinyModels.Random(2);
        using var a0 = TinyModels.Random(1);
        using var m0 = new MergeAttack(MergeMethod.Linear, [b], weight: 0).Apply(a);
        using var m1 = new MergeAttack(MergeMethod.Linear, [b], weight: 1).Apply(a);
        Assert.True(TinyModels.SameParameters(m0, a));
        Assert.True(TinyModels.SameParameters(m1, b));
        Assert.True(TinyModels.SameParameters(a, a0));
        using var half = new MergeAttack(MergeMethod.Linear, [b], weight: 0.25).Apply(a);
        var name = "model.layers.0.mlp.up_proj.weight";
        var (x, y, z) = (TinyModels.Values(a.Parameters[name]), TinyModels.Values(b.Parameters[name]), TinyModels.Values(half.Parameters[name]));
        for (int i = 0; i < x.Length; i++) Assert.Equal(0.75 * x[i] + 0.25 * y[i], z[i], 1e-6);
    }

    [Fact]
    public void Slerp_endpoints_are_exact_and_the_midpoint_of_orthogonal_vectors_is_on_the_circle()
    {
        using var a = TinyModels.Random(1);
        using var b = TinyModels.Random(2);
        using var s0 = new MergeAttack(MergeMethod.Slerp, [b], weight: 0).Apply(a);
        using var s1 = new MergeAttack(MergeMethod.Slerp, [b], weight: 1).Apply(a);
        Assert.True(TinyModels.SameParameters(s0, a));
        Assert.True(TinyModels.SameParameters(s1, b));

        using var scope = Torch.NewScope();
        var x = Torch.FromArray(new[] { 1f, 0f });
        var y = Torch.FromArray(new[] { 0f, 2f });
        // Ω = 90°: sin(45°)/sin(90°) of each: [√½, 2√½].
        var mid = TinyModels.Values(MergeAttack.Slerp(x, y, 0.5));
        Assert.Equal(Math.Sqrt(0.5), mid[0], 1e-6);
        Assert.Equal(2 * Math.Sqrt(0.5), mid[1], 1e-6);
        // Colinear tensors fall back to linear interpolation.
        var lin = TinyModels.Values(MergeAttack.Slerp(Torch.FromArray(new[] { 1f, 2f }), Torch.FromArray(new[] { 2f, 4f }), 0.5));
        Assert.Equal([1.5f, 3f], lin);
    }

    [Fact]
    public void Ties_trims_elects_signs_and_takes_the_disjoint_mean()
    {
        using var scope = Torch.NewScope();
        var baseT = Torch.FromArray(new[] { 0f, 0f, 0f, 0f, 0f });
        // Task vectors (base is zero): density 0.6 keeps the 3 largest magnitudes of each.
        var t1 = Torch.FromArray(new[] { 3f, -2f, 0.1f, 1f, 0.2f }); // keeps 3, -2, 1
        var t2 = Torch.FromArray(new[] { -1f, -4f, 0.3f, 2f, -0.1f }); // keeps -1, -4, 2
        var t3 = Torch.FromArray(new[] { 1f, 1f, -5f, 0.5f, 0.05f }); // keeps 1, 1, -5
        Assert.Equal([3f, -2f, 0f, 1f, 0f], TinyModels.Values(MergeAttack.TrimToDensity(t1, 0.6)));
        var merged = TinyModels.Values(MergeAttack.Ties(baseT, [t1, t2, t3], [1, 1, 1], 0.6, 1));
        // Element 0: 3 − 1 + 1 = 3 > 0 → mean(3, 1) = 2. Element 1: −2 − 4 + 1 < 0 → mean(−2, −4) = −3.
        // Element 2: only −5 survives → −5. Element 3: 1 + 2 → mean(1, 2) = 1.5. Element 4: nothing survives → 0.
        Assert.Equal([2f, -3f, -5f, 1.5f, 0f], merged);
        var scaled = TinyModels.Values(MergeAttack.Ties(baseT + 1, [t1 + 1, t2 + 1, t3 + 1], [1, 1, 1], 0.6, 0.5));
        Assert.Equal([2f, -0.5f, -1.5f, 1.75f, 1f], scaled);
        var ta = TinyModels.Values(MergeAttack.TaskArithmetic(baseT + 1, [t1 + 1, t2 + 1], [0.5, 2], 1));
        Assert.Equal(1 + 0.5 * 3 + 2 * -1, ta[0], 1e-6);
    }

    [Fact]
    public void Task_arithmetic_with_one_model_and_unit_weight_is_that_model()
    {
        using var baseM = TinyModels.Random(3);
        using var a = TinyModels.Random(1);
        using var b = TinyModels.Random(2);
        using var m = new MergeAttack(MergeMethod.TaskArithmetic, [b], baseM, weights: [1, 0]).Apply(a);
        var name = "model.layers.0.self_attn.q_proj.weight";
        var (x, z) = (TinyModels.Values(a.Parameters[name]), TinyModels.Values(m.Parameters[name]));
        for (int i = 0; i < x.Length; i++) Assert.Equal(x[i], z[i], 1e-6);
        using var ties = new MergeAttack(MergeMethod.Ties, [b], baseM, density: 0.3).Apply(a);
        Assert.Equal(a.Parameters.Count, ties.Parameters.Count);
    }

    [Fact]
    public void Mismatched_models_and_bad_parameters_are_refused()
    {
        using var a = TinyModels.Random(1);
        using var other = Pretraining.CreateRandom((TinyModels.Shape with { Intermediate = 96 }).ToConfig(), 2);
        var e = Assert.Throws<ArgumentException>(() => new MergeAttack(MergeMethod.Linear, [other]).Apply(a));
        Assert.Contains("mlp 96", e.Message);
        Assert.Throws<ArgumentException>(() => new MergeAttack(MergeMethod.Ties, [a]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MergeAttack(MergeMethod.Linear, [a], weight: 1.5));
        Assert.Throws<ArgumentException>(() => new MergeAttack(MergeMethod.Slerp, [a, a]));
        Assert.Throws<ArgumentException>(() => new MergeAttack(MergeMethod.TaskArithmetic, [a], a, weights: [1]));
    }
}

public class QuantizationTests
{
    [Theory]
    [InlineData(QuantizationScheme.Int8Symmetric, 32)]
    [InlineData(QuantizationScheme.Int4Asymmetric, 64)]
    [InlineData(QuantizationScheme.Int4Symmetric, 24)] // 24 does not divide 32 or 64: padded last group
    public void Round_trip_error_is_at_most_half_a_step_and_a_second_round_trip_changes_nothing(QuantizationScheme scheme, int group)
    {
        using var scope = Torch.NewScope();
        using var rng = new RandomGenerator(5);
        var w = Torch.Randn([16, 64], generator: rng) * 0.05;
        var q = QuantizeAttack.RoundTrip(w, scheme, group);
        Assert.Equal(w.Shape, q.Shape);
        var steps = QuantizeAttack.Steps(w, scheme, group); // [16, groups, 1]
        var wv = TinyModels.Values(w);
        var qv = TinyModels.Values(q);
        var sv = TinyModels.Values(steps);
        int groups = (64 + group - 1) / group;
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 64; c++)
            {
                double step = sv[r * groups + c / group];
                Assert.True(Math.Abs(wv[r * 64 + c] - qv[r * 64 + c]) <= step / 2 * (1 + 1e-5), $"({r},{c}): error {Math.Abs(wv[r * 64 + c] - qv[r * 64 + c])} > half step {step / 2}");
            }
        // Few distinct values per group: at most 2^bits.
        int levels = scheme == QuantizationScheme.Int8Symmetric ? 255 : scheme == QuantizationScheme.Int4Asymmetric ? 16 : 15;
        Assert.True(qv.Take(group).Distinct().Count() <= levels);
        var again = TinyModels.Values(QuantizeAttack.RoundTrip(q, scheme, group));
        for (int i = 0; i < qv.Length; i++) Assert.Equal(qv[i], again[i], 1e-6 * Math.Max(1, Math.Abs(qv[i])) + 1e-7);
    }

    [Fact]
    public void Int8_codes_on_a_hand_made_group()
    {
        using var scope = Torch.NewScope();
        // absmax 1.27 → step 0.01: -0.0149 → code -1, 0.0051 → code 1.
        var w = Torch.FromArray(new[] { 1.27f, -0.0149f, 0.0051f, 0f });
        var q = TinyModels.Values(QuantizeAttack.RoundTrip(w, QuantizationScheme.Int8Symmetric, 4));
        Assert.Equal(1.27, q[0], 1e-6);
        Assert.Equal(-0.01, q[1], 1e-6);
        Assert.Equal(0.01, q[2], 1e-6);
        Assert.Equal(0, q[3]);
        // int4 asymmetric on [0, 1.5]: step 0.1, zero point 0.
        var a = TinyModels.Values(QuantizeAttack.RoundTrip(Torch.FromArray(new[] { 0f, 1.5f, 0.74f, 0.76f }), QuantizationScheme.Int4Asymmetric, 4));
        Assert.Equal([0, 1.5, 0.7, 0.8], a.Select(x => Math.Round(x, 5)));
    }

    [Fact]
    public void The_attack_touches_linear_weights_only_by_default_reports_errors_and_keeps_bf16()
    {
        using var m = TinyModels.Random(1, DType.BFloat16);
        var attack = new QuantizeAttack(QuantizationScheme.Int4Asymmetric, 32);
        using var q = attack.Apply(m);
        Assert.Equal(DType.BFloat16, q.DType);
        Assert.Equal(7, attack.Errors.Count); // q, k, v, o, gate, up, down of the one layer
        Assert.All(attack.Errors, e => Assert.True(e.MeanSquaredError > 0 && e.MeanSquaredError < 1e-4, $"{e.Name}: {e.MeanSquaredError}"));
        Assert.True(TinyModels.Values(q.Parameters["model.embed_tokens.weight"]).SequenceEqual(TinyModels.Values(m.Parameters["model.embed_tokens.weight"])));
        Assert.False(TinyModels.Values(q.Parameters["model.layers.0.mlp.up_proj.weight"]).SequenceEqual(TinyModels.Values(m.Parameters["model.layers.0.mlp.up_proj.weight"])));
        var all = new QuantizeAttack(QuantizationScheme.Int8Symmetric, 32, TensorKinds.All);
        using var q2 = all.Apply(m);
        Assert.Equal(m.Parameters.Count, all.Errors.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => new QuantizeAttack(QuantizationScheme.Int8Symmetric, 1));
    }
}

public class PruningTests
{
    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    [InlineData(0.9)]
    public void Per_matrix_pruning_zeroes_exactly_the_fraction_of_smallest_weights(double fraction)
    {
        using var m = TinyModels.Random(4);
        using var p = new PruneAttack(fraction).Apply(m);
        foreach (var (name, t) in p.Parameters)
        {
            var v = TinyModels.Values(t);
            var orig = TinyModels.Values(m.Parameters[name]);
            if (WeightTensors.KindOf(name, t) != TensorKinds.Linear)
            {
                Assert.Equal(orig, v);
                continue;
            }
            long expected = (long)Math.Round(fraction * v.Length, MidpointRounding.AwayFromZero);
            Assert.Equal(expected, v.Count(x => x == 0));
            // Every kept weight is at least as large as every pruned one, and kept weights are unchanged.
            double maxPruned = orig.Where((x, i) => v[i] == 0).Select(Math.Abs).DefaultIfEmpty(0).Max();
            double minKept = orig.Where((x, i) => v[i] != 0).Select(Math.Abs).Min();
            Assert.True(maxPruned <= minKept);
            Assert.All(Enumerable.Range(0, v.Length).Where(i => v[i] != 0), i => Assert.Equal(orig[i], v[i]));
        }
    }

    [Fact]
    public void Global_pruning_hits_the_fraction_over_all_linear_weights_with_one_threshold()
    {
        using var m = TinyModels.Random(4);
        // Scale one matrix down so that global pruning takes more of it.
        var scaled = m.ExportParameters();
        using (Torch.NoGrad()) scaled["model.layers.0.mlp.down_proj.weight"].MulInPlace(0.1);
        using var m2 = new CausalLM(m.Config, scaled, m.Device);
        using var p = new PruneAttack(0.5, global: true).Apply(m2);
        var linear = p.Parameters.Where(kv => WeightTensors.KindOf(kv.Key, kv.Value) == TensorKinds.Linear).ToList();
        long total = linear.Sum(kv => kv.Value.NumEl);
        long zeros = linear.Sum(kv => (long)TinyModels.Values(kv.Value).Count(x => x == 0));
        Assert.Equal((long)Math.Round(0.5 * total, MidpointRounding.AwayFromZero), zeros);
        Assert.True(PruneAttack.Sparsity(p.Parameters["model.layers.0.mlp.down_proj.weight"]) > 0.95);
        Assert.True(PruneAttack.Sparsity(p.Parameters["model.layers.0.self_attn.q_proj.weight"]) < 0.5);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PruneAttack(0.95));
    }
}
