using Oml.Fingerprinting.Verification;
using S = Oml.Fingerprinting.Verification.FingerprintStatistics;

namespace Oml.Fingerprinting.Tests.Verification;

public class FingerprintStatisticsTests
{
    private static double BruteForceUpperTail(double[] p, int h)
    {
        int m = p.Length;
        double total = 0.0;
        for (int mask = 0; mask < 1 << m; mask++)
        {
            double prob = 1.0;
            int hits = 0;
            for (int i = 0; i < m; i++)
            {
                bool hit = (mask >> i & 1) == 1;
                if (hit) hits++;
                prob *= hit ? p[i] : 1.0 - p[i];
            }
            if (hits >= h) total += prob;
        }
        return total;
    }

    private static double[] RandomProbabilities(Random rng, int m)
    {
        var p = new double[m];
        for (int i = 0; i < m; i++)
        {
            p[i] = rng.Next(6) switch { 0 => 0.0, 1 => 1.0, 2 => rng.NextDouble() * 1e-3, _ => rng.NextDouble() };
        }
        return p;
    }

    private static void AssertRelative(double expected, double actual, double tolerance)
    {
        if (expected == 0.0) { Assert.Equal(0.0, actual, 1e-300); return; }
        Assert.True(Math.Abs(actual - expected) <= tolerance * Math.Abs(expected), $"expected {expected:R}, got {actual:R}");
    }

    [Fact]
    public void PoissonBinomial_matches_brute_force_enumeration()
    {
        var rng = new Random(1234);
        for (int trial = 0; trial < 200; trial++)
        {
            int m = rng.Next(0, 11);
            var p = RandomProbabilities(rng, m);
            for (int h = -1; h <= m + 1; h++)
            {
                AssertRelative(Math.Min(1.0, BruteForceUpperTail(p, h)), S.PoissonBinomialUpperTail(p, h), 1e-9);
                // Lower tail: P(X <= h) = 1 - P(X >= h + 1).
                double lower = 1.0 - BruteForceUpperTail(p, h + 1);
                if (lower > 1e-6) AssertRelative(lower, Math.Exp(S.LogPoissonBinomialLowerTail(p, h)), 1e-9);
            }
        }
    }

    [Fact]
    public void Edge_cases_h_zero_is_one_and_h_above_m_is_zero()
    {
        double[] p = [0.3, 0.2, 0.9];
        Assert.Equal(0.0, S.LogPoissonBinomialUpperTail(p, 0));
        Assert.Equal(0.0, S.LogPoissonBinomialUpperTail([], 0));
        Assert.Equal(double.NegativeInfinity, S.LogPoissonBinomialUpperTail(p, 4));
        Assert.Equal(double.NegativeInfinity, S.LogPoissonBinomialUpperTail([], 1));
        Assert.Equal(0.0, S.LogBinomialUpperTail(5, 0.1, 0));
        Assert.Equal(double.NegativeInfinity, S.LogBinomialUpperTail(5, 0.1, 6));
    }

    [Fact]
    public void Probabilities_zero_and_one_are_handled_exactly()
    {
        // Two certain hits, two impossible ones.
        double[] p = [1.0, 0.0, 1.0, 0.0];
        Assert.Equal(1.0, S.PoissonBinomialUpperTail(p, 2));
        Assert.Equal(0.0, S.PoissonBinomialUpperTail(p, 3));
        Assert.Equal(double.NegativeInfinity, S.LogPoissonBinomialLowerTail(p, 1));
        Assert.Equal(0.0, S.LogPoissonBinomialLowerTail(p, 2));
        Assert.Equal(double.NegativeInfinity, S.LogBinomialUpperTail(4, 0.0, 1));
        Assert.Equal(0.0, S.LogBinomialUpperTail(4, 1.0, 4));
        Assert.Equal(double.NegativeInfinity, S.LogBinomialLowerTail(4, 1.0, 3));
    }

    [Fact]
    public void Invalid_probabilities_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => S.LogPoissonBinomialUpperTail([0.5, 1.5], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => S.LogPoissonBinomialUpperTail([double.NaN], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => S.LogBinomialUpperTail(3, -0.1, 1));
    }

    [Fact]
    public void Tail_is_monotone_in_h_and_at_most_one()
    {
        var rng = new Random(99);
        for (int trial = 0; trial < 30; trial++)
        {
            var p = RandomProbabilities(rng, rng.Next(1, 60));
            double previous = double.PositiveInfinity;
            for (int h = 0; h <= p.Length + 1; h++)
            {
                double lp = S.LogPoissonBinomialUpperTail(p, h);
                Assert.True(lp <= 0.0);
                Assert.True(lp <= previous + 1e-12, $"not monotone at h = {h}");
                previous = lp;
            }
        }
    }

    [Fact]
    public void Equal_probabilities_give_the_binomial_tail()
    {
        foreach (int m in new[] { 1, 7, 40, 300 })
        foreach (double q in new[] { 1e-9, 0.01, 1.0 / 3, 0.5, 0.97 })
        {
            var p = Enumerable.Repeat(q, m).ToArray();
            for (int h = 0; h <= m; h += Math.Max(1, m / 13))
            {
                double a = S.LogPoissonBinomialUpperTail(p, h), b = S.LogBinomialUpperTail(m, q, h);
                Assert.True(Math.Abs(a - b) <= 1e-9 * Math.Max(1.0, Math.Abs(b)), $"m={m} p={q} h={h}: {a} vs {b}");
                double al = S.LogPoissonBinomialLowerTail(p, h), bl = S.LogBinomialLowerTail(m, q, h);
                Assert.True(Math.Abs(al - bl) <= 1e-9 * Math.Max(1.0, Math.Abs(bl)), $"lower m={m} p={q} h={h}: {al} vs {bl}");
            }
        }
    }

    [Fact]
    public void Binomial_tail_matches_direct_sum_for_small_n()
    {
        for (int n = 0; n <= 20; n++)
        for (int h = 0; h <= n; h++)
        {
            double q = 0.37, direct = 0.0;
            for (int j = h; j <= n; j++) direct += Choose(n, j) * Math.Pow(q, j) * Math.Pow(1 - q, n - j);
            AssertRelative(Math.Min(1.0, direct), S.BinomialUpperTail(n, q, h), 1e-12);
        }
    }

    private static double Choose(int n, int k)
    {
        double c = 1.0;
        for (int i = 1; i <= k; i++) c = c * (n - k + i) / i;
        return c;
    }

    [Fact]
    public void Tiny_p_values_stay_accurate_in_log_space()
    {
        // All 1000 keys hit, each with null probability 1e-3: p-value = 1e-3000 exactly.
        var p = Enumerable.Repeat(1e-3, 1000).ToArray();
        Assert.Equal(-3000.0, S.ToLog10(S.LogPoissonBinomialUpperTail(p, 1000)), 1e-9);
        Assert.Equal(-3000.0, S.ToLog10(S.LogBinomialUpperTail(1000, 1e-3, 1000)), 1e-9);
        Assert.Equal(0.0, S.PoissonBinomialUpperTail(p, 1000));   // the plain double underflows, the log does not

        // P(X >= 999) = 1e-3000 + 1000 · 1e-2997 · 0.999 ≈ 999.001e-2997 → log10 = -2997 + log10(999.001).
        double expected = -2997 + Math.Log10(999.001);
        Assert.Equal(expected, S.ToLog10(S.LogPoissonBinomialUpperTail(p, 999)), 1e-9);
        Assert.Equal(expected, S.ToLog10(S.LogBinomialUpperTail(1000, 1e-3, 999)), 1e-9);

        // Mixed probabilities with a closed form: p = [1e-200, 1e-200], h = 2 → 1e-400.
        Assert.Equal(-400.0, S.ToLog10(S.LogPoissonBinomialUpperTail([1e-200, 1e-200], 2)), 1e-9);
    }

    [Fact]
    public void Log_gamma_matches_log_factorials()
    {
        double logFact = 0.0;
        for (int n = 1; n <= 3000; n++)
        {
            logFact += Math.Log(n);
            Assert.True(Math.Abs(S.LogGamma(n + 1.0) - logFact) <= 1e-12 * Math.Max(1.0, logFact), $"n = {n}");
            Assert.True(Math.Abs(S.LogFactorial(n) - logFact) <= 1e-12 * Math.Max(1.0, logFact), $"n = {n}");
        }
        Assert.Equal(0.5 * Math.Log(Math.PI), S.LogGamma(0.5), 1e-13);
        Assert.Equal(Math.Log(Math.PI / Math.Sin(Math.PI * 0.25)) - S.LogGamma(0.75), S.LogGamma(0.25), 1e-13);
    }

    [Fact]
    public void Log1p_is_accurate_for_small_arguments()
    {
        Assert.Equal(1e-20, S.Log1p(1e-20));
        Assert.Equal(-1e-10 - 0.5e-20, S.Log1p(-1e-10), 1e-30);
        Assert.Equal(Math.Log(1.5), S.Log1p(0.5), 1e-15);
        Assert.Equal(double.NegativeInfinity, S.Log1p(-1.0));
    }

    [Fact]
    public void Keys_needed_is_the_least_all_hit_count_reaching_alpha()
    {
        Assert.Equal(6, S.KeysNeeded(1e-6, 0.1));
        Assert.Equal(20, S.KeysNeeded(1e-6, 0.5));     // 2^-20 ≈ 9.5e-7, 2^-19 ≈ 1.9e-6
        Assert.Equal(13, S.KeysNeeded(1e-6, 1.0 / 3)); // 3^-13 ≈ 6.3e-7, 3^-12 ≈ 1.9e-6
        Assert.Equal(1, S.KeysNeeded(1e-6, 0.0));
        Assert.Equal(1, S.KeysNeeded(0.5, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => S.KeysNeeded(1e-6, 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => S.KeysNeeded(0.0, 0.5));
        foreach (double p in new[] { 0.01, 0.2, 0.5, 0.9, 0.999 })
        foreach (double alpha in new[] { 1e-3, 1e-6, 1e-12 })
        {
            int n = S.KeysNeeded(alpha, p);
            Assert.True(S.LogBinomialUpperTail(n, p, n) <= Math.Log(alpha) + 1e-12);
            if (n > 1) Assert.True(S.LogBinomialUpperTail(n - 1, p, n - 1) > Math.Log(alpha));
        }
        Assert.Equal(2, S.KeysNeeded(1e-6, [1e-3, 1e-3, 0.5]));
        Assert.Null(S.KeysNeeded(1e-6, [0.5, 0.5]));
    }

    /// <summary>
    /// The log-space dynamic program that computed the tails before the banded mantissa/exponent one (kept here as the
    /// reference): O(M·h) log-sum-exp steps over every count below h.
    /// </summary>
    private static double ReferenceLogUpperTail(IReadOnlyList<double> probabilities, int h, bool complement)
    {
        int m = probabilities.Count;
        if (h <= 0) return 0.0;
        if (h > m) return double.NegativeInfinity;
        var state = new double[h + 1];
        Array.Fill(state, double.NegativeInfinity);
        state[0] = 0.0;
        for (int i = 0; i < m; i++)
        {
            double p = probabilities[i];
            double lp = complement ? S.Log1p(-p) : Math.Log(p);
            double lq = complement ? Math.Log(p) : S.Log1p(-p);
            int top = Math.Min(i + 1, h);
            if (top == h) state[h] = S.LogAddExp(state[h], state[h - 1] + lp);
            for (int j = Math.Min(i + 1, h - 1); j >= 1; j--)
                state[j] = S.LogAddExp(state[j] + lq, state[j - 1] + lp);
            state[0] += lq;
        }
        return Math.Min(0.0, state[h]);
    }

    private static void AssertLogClose(double expected, double actual, string what)
    {
        if (double.IsNegativeInfinity(expected)) { Assert.True(double.IsNegativeInfinity(actual), $"{what}: expected -inf, got {actual:R}"); return; }
        // Both are natural logs of probabilities; 1e-10 relative on the probability is 1e-10 absolute on its log.
        Assert.True(Math.Abs(actual - expected) <= 1e-10 * Math.Max(1.0, Math.Abs(expected)), $"{what}: expected {expected:R}, got {actual:R}");
    }

    [Fact]
    public void Banded_tails_equal_the_log_space_computation_far_below_the_smallest_double()
    {
        var rng = new Random(77);
        for (int trial = 0; trial < 60; trial++)
        {
            int m = rng.Next(1, 260);
            // Mixtures that stress the range: exact 0 and 1, tiny (down to subnormal), near 1, uniform, one common value.
            int kind = trial % 4;
            var p = new double[m];
            double common = rng.NextDouble();
            for (int i = 0; i < m; i++)
                p[i] = kind switch
                {
                    0 => rng.Next(8) switch { 0 => 0.0, 1 => 1.0, 2 => Math.Pow(10, -rng.Next(1, 320)), 3 => 1.0 - rng.NextDouble() * 1e-9, _ => rng.NextDouble() },
                    1 => rng.NextDouble() * 1e-3,
                    2 => common,
                    _ => 1.0 - rng.NextDouble() * 1e-2,
                };
            for (int h = 0; h <= m + 1; h += 1 + m / 40)
            {
                AssertLogClose(ReferenceLogUpperTail(p, h, false), S.LogPoissonBinomialUpperTail(p, h), $"upper m={m} h={h} kind={kind}");
                AssertLogClose(ReferenceLogUpperTail(p, m - h, true), S.LogPoissonBinomialLowerTail(p, h), $"lower m={m} h={h} kind={kind}");
            }
            AssertLogClose(ReferenceLogUpperTail(p, m, false), S.LogPoissonBinomialUpperTail(p, m), $"all hit m={m}");
        }
    }

    [Fact]
    public void Banded_tail_of_thousands_of_keys_matches_the_reference_and_the_binomial()
    {
        // 3,000 keys at p = 0.01 with 2,700 hits: a p-value near 10^-5000, far below any double.
        var p = Enumerable.Repeat(0.01, 3000).ToArray();
        foreach (int h in new[] { 1, 30, 60, 1500, 2700, 2999, 3000 })
        {
            double banded = S.LogPoissonBinomialUpperTail(p, h);
            AssertLogClose(S.LogBinomialUpperTail(3000, 0.01, h), banded, $"binomial h={h}");
            if (h <= 60 || h >= 2700) AssertLogClose(ReferenceLogUpperTail(p, h, false), banded, $"reference h={h}");
        }
        Assert.True(S.ToLog10(S.LogPoissonBinomialUpperTail(p, 2700)) < -4000);
    }
}
