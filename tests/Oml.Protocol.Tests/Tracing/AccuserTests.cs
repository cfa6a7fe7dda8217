using Oml.Protocol.Tracing;

namespace Oml.Protocol.Tests.Tracing;

public class AccuserTests
{
    private static readonly byte[] Secret = AllocationTests.Secret;

    [Fact]
    public void HypergeometricTailMatchesHandValues()
    {
        // N = 10 items, K = 4 marked, n = 3 drawn: C(10,3) = 120; P(X=0) = C(6,3)/120 = 20/120,
        // P(X=2) = C(4,2)·C(6,1)/120 = 36/120, P(X=3) = C(4,3)/120 = 4/120.
        var tail = OverlapAccuser.HypergeometricUpperTails(10, 4, 3);
        Assert.Equal(1.0, tail[0], 12);
        Assert.Equal(100.0 / 120, tail[1], 12);
        Assert.Equal(40.0 / 120, tail[2], 12);
        Assert.Equal(4.0 / 120, tail[3], 12);
        Assert.Equal(3, OverlapAccuser.Threshold(10, 3, 4, 0.05));
        Assert.Equal(2, OverlapAccuser.Threshold(10, 3, 4, 0.34));
        Assert.Equal(4, OverlapAccuser.Threshold(10, 3, 4, 0.01));   // nobody can reach it
        // Forced overlap: N = 5, K = 4, n = 3 → X ≥ 2 always.
        var forced = OverlapAccuser.HypergeometricUpperTails(5, 4, 3);
        Assert.Equal(1.0, forced[2], 12);
        Assert.Equal(C(4, 3) / C(5, 3), forced[3], 12);
    }

    private static double C(int n, int k) => k == 0 ? 1 : C(n - 1, k - 1) * n / k;

    [Fact]
    public void NormalQuantileMatchesTables()
    {
        Assert.Equal(1.959963985, TardosThresholds.NormalQuantile(0.975), 6);
        Assert.Equal(3.090232306, TardosThresholds.NormalQuantile(1 - 1e-3), 6);
        Assert.Equal(4.753424309, TardosThresholds.NormalQuantile(1 - 1e-6), 5);
        Assert.Equal(-2.326347874, TardosThresholds.NormalQuantile(0.01), 6);
        Assert.Equal(0.0, TardosThresholds.NormalQuantile(0.5), 9);
    }

    [Fact]
    public void BernsteinThresholdMatchesTheFormula()
    {
        // L = 3, M = 3: Z = LM/3 + sqrt((LM/3)² + 2mL) = 3 + sqrt(9 + 600).
        Assert.Equal(3 + Math.Sqrt(609), TardosThresholds.Bernstein(100, 3, Math.Exp(-3)), 10);
    }

    /// <summary>
    /// The Chernoff threshold is checked against the exact tail of a small innocent score, by enumerating all 2^14
    /// codewords of an innocent host with their probabilities.
    /// </summary>
    [Theory]
    [InlineData(0.05)]
    [InlineData(0.01)]
    [InlineData(0.001)]
    public void ChernoffThresholdBoundsTheExactInnocentTail(double eps)
    {
        const int m = 14;
        var alloc = new TardosAllocation(Secret, m, 0.02);
        var p = alloc.Biases.ToArray();
        var observed = new bool?[m];
        for (int i = 0; i < m; i++) observed[i] = i % 3 != 0;   // some present, some absent
        var obs = Observation.From(observed, m);
        double z = TardosThresholds.Chernoff(p, obs, eps);
        double exact = 0;
        for (int x = 0; x < 1 << m; x++)
        {
            double prob = 1, score = 0;
            for (int i = 0; i < m; i++)
            {
                bool bit = (x >> i & 1) != 0, y = observed[i]!.Value;
                prob *= bit ? p[i] : 1 - p[i];
                double up = Math.Sqrt((1 - p[i]) / p[i]), down = Math.Sqrt(p[i] / (1 - p[i]));
                score += y ? (bit ? up : -down) : (bit ? -up : down);
            }
            if (score >= z) exact += prob;
        }
        Assert.True(exact <= eps, $"P(S ≥ {z:F3}) = {exact:G4} > {eps}");
        // And not absurdly loose: Bernstein (the weaker bound) lies above, the Gaussian guess below.
        Assert.True(z <= TardosThresholds.Bernstein(m, TardosThresholds.MaxTerm(p, obs), eps) + 1e-9);
    }

    [Fact]
    public void ChernoffLiesBetweenTheGaussianGuessAndBernsteinOnLongCodes()
    {
        var alloc = new TardosAllocation(Secret, 1024, 1.0 / 900);
        var rng = new SimulationRandom(5);
        var observed = Enumerable.Range(0, 1024).Select(_ => (bool?)rng.NextBit()).ToArray();
        var obs = Observation.From(observed, 1024);
        double eps = 1e-6;
        double chernoff = TardosThresholds.Chernoff(alloc.BiasSpan, obs, eps);
        double bernstein = TardosThresholds.Bernstein(1024, TardosThresholds.MaxTerm(alloc.BiasSpan, obs), eps);
        double gauss = TardosThresholds.Gaussian(1024, eps);
        Assert.InRange(chernoff, gauss * 0.95, bernstein);
        Assert.True(bernstein > 1.5 * chernoff, $"Bernstein {bernstein:F1} should be much looser than Chernoff {chernoff:F1} at t = 1/900");
        Assert.Equal(Math.Sqrt(1024) * 4.753424309, gauss, 3);
    }

    [Fact]
    public void InnocentScoresHaveMeanZeroAndVarianceM()
    {
        const int m = 512, hosts = 2000;
        var alloc = new TardosAllocation(Secret, m, 1.0 / 900);
        var code = CodeMatrix.Build(alloc, hosts);
        int[] coalition = [3, 17, 1500];
        var obs = Pirates.Forge(code, coalition, PirateStrategy.Majority, NoiseModel.None, new SimulationRandom(11));
        var scores = new double[hosts];
        TardosAccuser.Score(code, alloc.BiasSpan, obs, scores, new double[TardosAccuser.TableSize(m)]);
        var innocent = Enumerable.Range(0, hosts).Where(j => !coalition.Contains(j)).Select(j => scores[j]).ToArray();
        double mean = innocent.Average();
        double variance = innocent.Select(s => (s - mean) * (s - mean)).Sum() / (innocent.Length - 1);
        // Mean: se = sqrt(m / n) ≈ 0.51, allow 4 se. Variance: se ≈ m·sqrt(2/n) ≈ 0.032 m, allow ~5 se.
        Assert.InRange(mean, -2.1, 2.1);
        Assert.InRange(variance / m, 0.85, 1.15);
        // The colluders score far above (their expected share is ≈ 2m/(πc) under majority).
        Assert.All(coalition, j => Assert.True(scores[j] > 4 * Math.Sqrt(m), $"colluder {j} scored {scores[j]:F1}"));
    }

    [Fact]
    public void FastScoresAgreeWithTheDefinition()
    {
        const int m = 77;   // not a multiple of 8 or 64
        var alloc = new TardosAllocation(Secret, m, 0.01);
        var rng = new SimulationRandom(3);
        var observed = Enumerable.Range(0, m).Select(i => i % 5 == 0 ? (bool?)null : rng.NextBit()).ToArray();
        var result = new TardosAccuser(alloc).Trace(observed, 6, 1e-3);
        for (int j = 0; j < 6; j++)
        {
            var x = alloc.CodewordFor(j);
            double s = 0;
            for (int i = 0; i < m; i++)
            {
                if (observed[i] is not { } y) continue;
                double p = alloc.Biases[i], up = Math.Sqrt((1 - p) / p), down = Math.Sqrt(p / (1 - p));
                s += y ? (x[i] ? up : -down) : (x[i] ? -up : down);
            }
            Assert.Equal(s, result.Accusations[j].Score, 9);
        }
    }

    [Fact]
    public void ASinglePirateIsCaughtThroughTheAccuserInterface()
    {
        const int m = 256, hosts = 200;
        var alloc = new TardosAllocation(Secret, m, 1.0 / 300);
        var copy = alloc.CodewordFor(42);
        // The owner queried only three quarters of the keys.
        var observed = copy.Select((b, i) => i % 4 == 3 ? (bool?)null : b).ToArray();
        IAccuser accuser = new TardosAccuser(alloc);
        var accusations = accuser.Accuse(observed, hosts, 1e-3 / hosts);
        Assert.Equal([42], accusations.Where(a => a.Accused).Select(a => a.HostOrdinal));
        Assert.Equal(hosts, accusations.Count);
        var top = new TardosAccuser(alloc, TardosBound.Bernstein, AccusationMode.TopOnly).Trace(observed, hosts, 1e-3 / hosts);
        Assert.Equal([42], top.Accused.Select(a => a.HostOrdinal));
        Assert.Equal("Bernstein", top.Bound);
        Assert.True(top.GaussianThreshold < top.Threshold);

        var random = RandomAllocation.WithFraction(Secret, m, 0.5);
        var held = random.IndicesFor(9).ToHashSet();
        var rObserved = Enumerable.Range(0, m).Select(i => (bool?)held.Contains(i)).ToArray();
        var r = new OverlapAccuser(random).Trace(rObserved, hosts, 1e-3 / hosts);
        Assert.Equal([9], r.Accused.Select(a => a.HostOrdinal));
        Assert.Equal(m / 2, r.Accusations[9].Score);
    }

    [Fact]
    public void AccusersRejectBadArguments()
    {
        var alloc = new TardosAllocation(Secret, 16, 0.01);
        var accuser = new TardosAccuser(alloc);
        var good = new bool?[16];
        Assert.Throws<ArgumentException>(() => accuser.Accuse(new bool?[15], 10, 1e-3));
        Assert.Throws<ArgumentException>(() => accuser.Accuse(good, 0, 1e-3));
        Assert.Throws<ArgumentException>(() => accuser.Accuse(good, 10, 0));
        Assert.Throws<ArgumentException>(() => accuser.Accuse(good, 10, 1));
        var overlap = new OverlapAccuser(new RandomAllocation(Secret, 16, 4));
        Assert.Throws<ArgumentException>(() => overlap.Accuse(new bool?[17], 10, 1e-3));
        Assert.Throws<ArgumentException>(() => overlap.Accuse(good, 10, double.NaN));
        Assert.Throws<ArgumentNullException>(() => new TardosAccuser(null!));
    }

    [Fact]
    public void NothingQueriedAccusesNobody()
    {
        var alloc = new TardosAllocation(Secret, 32, 0.01);
        var result = new TardosAccuser(alloc).Trace(new bool?[32], 5, 1e-3);
        Assert.True(double.IsPositiveInfinity(result.Threshold));
        Assert.Empty(result.Accused);
    }

    [Fact]
    public void TheAsymmetricScoreCountsOnlyAnsweredKeysAndCombinedDividesByTheThresholds()
    {
        const int m = 512, hosts = 40;
        var alloc = new TardosAllocation(Secret, m, 0.01);
        // A copy of host 3 that lost every other key it holds (an erasing attack), and answers nothing else.
        var held = alloc.IndicesFor(3);
        var observed = new bool?[m];
        for (int i = 0; i < m; i++) observed[i] = false;
        for (int k = 0; k < held.Count; k += 2) observed[held[k]] = true;
        double eps1 = 1e-3 / hosts;
        var sym = new TardosAccuser(alloc, score: TardosScore.Symmetric).Trace(observed, hosts, eps1);
        var asym = new TardosAccuser(alloc, score: TardosScore.Asymmetric).Trace(observed, hosts, eps1);
        var both = new TardosAccuser(alloc, score: TardosScore.Combined).Trace(observed, hosts, eps1);

        // Asymmetric = the symmetric score over the answered keys alone, with that observation's threshold.
        var answeredOnly = observed.Select(o => o == true ? (bool?)true : null).ToArray();
        var reference = new TardosAccuser(alloc).Trace(answeredOnly, hosts, eps1);
        for (int j = 0; j < hosts; j++) Assert.Equal(reference.Accusations[j].Score, asym.Accusations[j].Score, 9);
        Assert.Equal(reference.Threshold, asym.Threshold, 9);
        Assert.Contains("asymmetric", asym.Bound);

        // A single copy with half its keys erased is still caught by each score, and only its host is.
        Assert.Equal([3], sym.Accused.Select(a => a.HostOrdinal));
        Assert.Equal([3], asym.Accused.Select(a => a.HostOrdinal));

        // Combined: each score against its threshold at half the bound; the threshold is 1.
        var symHalf = new TardosAccuser(alloc).Trace(observed, hosts, eps1 / 2);
        var asymHalf = new TardosAccuser(alloc, score: TardosScore.Asymmetric).Trace(observed, hosts, eps1 / 2);
        Assert.Equal(1.0, both.Threshold);
        Assert.True(double.IsNaN(both.GaussianThreshold));
        for (int j = 0; j < hosts; j++)
        {
            double expect = Math.Max(symHalf.Accusations[j].Score / symHalf.Threshold, asymHalf.Accusations[j].Score / asymHalf.Threshold);
            Assert.Equal(expect, both.Accusations[j].Score, 9);
            Assert.Equal(expect >= 1, both.Accusations[j].Accused);
        }
        Assert.Equal([3], both.Accused.Select(a => a.HostOrdinal));

        // A copy that answered nothing: no asymmetric threshold can be met, nobody is accused through it.
        var silent = Enumerable.Repeat((bool?)false, m).ToArray();
        Assert.Empty(new TardosAccuser(alloc, score: TardosScore.Asymmetric).Trace(silent, hosts, eps1).Accused);
        Assert.Empty(new TardosAccuser(alloc, score: TardosScore.Combined).Trace(silent, hosts, eps1).Accused);

        Assert.Equal(TardosScore.Combined, TardosAccuser.ParseScore(TardosAccuser.ScoreName(TardosScore.Combined)));
        Assert.Throws<ArgumentException>(() => TardosAccuser.ParseScore("max"));
    }
}
