using System.Text;
using Oml.Protocol.Tracing;

namespace Oml.Protocol.Tests.Tracing;

public class AllocationTests
{
    internal static readonly byte[] Secret = Encoding.UTF8.GetBytes("tracing test secret, 32 bytes...");
    internal static readonly byte[] OtherSecret = Encoding.UTF8.GetBytes("another tracing secret of length");

    [Fact]
    public void TardosIsDeterministicFromTheSecret()
    {
        var a = new TardosAllocation(Secret, 300, 0.01);
        var b = new TardosAllocation(Secret, 300, 0.01);
        var other = new TardosAllocation(OtherSecret, 300, 0.01);
        Assert.Equal(a.Biases, b.Biases);
        Assert.NotEqual(a.Biases, other.Biases);
        for (int j = 0; j < 5; j++) Assert.Equal(a.IndicesFor(j), b.IndicesFor(j));
        Assert.NotEqual(a.IndicesFor(0), a.IndicesFor(1));
        Assert.NotEqual(a.IndicesFor(3), other.IndicesFor(3));
        // The packed matrix (built in parallel) agrees with IndicesFor and CodewordFor.
        var m = CodeMatrix.Build(a, 5);
        for (int j = 0; j < 5; j++)
        {
            var word = a.CodewordFor(j);
            for (int i = 0; i < 300; i++) Assert.Equal(word[i], m.Holds(j, i));
            Assert.Equal(a.IndicesFor(j).Count, m.Weight(j));
        }
    }

    [Fact]
    public void RandomAllocationIsDeterministicSortedAndOfFixedSize()
    {
        var a = new RandomAllocation(Secret, 200, 37);
        var b = new RandomAllocation(Secret, 200, 37);
        for (int j = 0; j < 10; j++)
        {
            var s = a.IndicesFor(j);
            Assert.Equal(s, b.IndicesFor(j));
            Assert.Equal(37, s.Count);
            Assert.Equal(37, s.Distinct().Count());
            Assert.Equal(s.Order(), s);
            Assert.All(s, i => Assert.InRange(i, 0, 199));
        }
        Assert.NotEqual(a.IndicesFor(0), new RandomAllocation(OtherSecret, 200, 37).IndicesFor(0));
        Assert.Equal(100, RandomAllocation.WithFraction(Secret, 200, 0.5).PerHost);
    }

    [Fact]
    public void RandomSubsetsAreUniform()
    {
        // Each index should be chosen with probability k/N = 1/4: over 400 hosts, count ≈ 100 ± 8.7 (sd).
        var a = new RandomAllocation(Secret, 40, 10);
        var counts = new int[40];
        for (int j = 0; j < 400; j++) foreach (var i in a.IndicesFor(j)) counts[i]++;
        Assert.All(counts, n => Assert.InRange(n, 60, 140));
    }

    [Fact]
    public void BiasesStayWithinTheCutoff()
    {
        foreach (var t in new[] { 1.0 / 300, 1.0 / 1200, 0.05, 0.3 })
        {
            var a = new TardosAllocation(Secret, 4000, t);
            Assert.All(a.Biases, p => Assert.InRange(p, t, 1 - t));
            Assert.True(a.Biases.Min() < t + 0.01, "the smallest bias should come near the cutoff");
        }
    }

    [Fact]
    public void BiasesFollowTheArcsineDensity()
    {
        // Arcsine law cut off to [t, 1-t]: F(p) = (arcsin √p − t') / (π/2 − 2t'), t' = arcsin √t, mean 1/2.
        const double t = 1.0 / 1200;
        var a = new TardosAllocation(Secret, 40000, t);
        var p = a.Biases;
        Assert.InRange(p.Average(), 0.49, 0.51);                         // sd 0.354 → se 0.0018
        double t0 = Math.Asin(Math.Sqrt(t));
        double F(double x) => Math.Clamp((Math.Asin(Math.Sqrt(x)) - t0) / (Math.PI / 2 - 2 * t0), 0, 1);
        double Frac(double lo, double hi) => p.Count(x => x >= lo && x < hi) / (double)p.Count;
        Assert.InRange(Frac(0, 0.1), F(0.1) - 0.01, F(0.1) + 0.01);      // 0.194 (a uniform law would give 0.10)
        Assert.InRange(Frac(0.45, 0.55), F(0.55) - F(0.45) - 0.01, F(0.55) - F(0.45) + 0.01);   // 0.066 (uniform: 0.10)
        Assert.InRange(Frac(0.9, 1), F(1) - F(0.9) - 0.01, F(1) - F(0.9) + 0.01);
        // Symmetric about 1/2, U-shaped: the ends hold more than the middle.
        Assert.True(Frac(0, 0.05) > 2 * Frac(0.475, 0.525));
    }

    [Fact]
    public void HostBitsFollowTheirBiases()
    {
        // Over 2000 hosts, position i is held by ≈ 2000·p_i hosts.
        var a = new TardosAllocation(Secret, 64, 0.01);
        var m = CodeMatrix.Build(a, 2000);
        for (int i = 0; i < 64; i++)
        {
            int n = Enumerable.Range(0, 2000).Count(j => m.Holds(j, i));
            double mean = 2000 * a.Biases[i], sd = Math.Sqrt(2000 * a.Biases[i] * (1 - a.Biases[i]));
            Assert.InRange(n, mean - 5 * sd - 1, mean + 5 * sd + 1);
        }
    }

    [Fact]
    public void BadArgumentsThrow()
    {
        Assert.Throws<ArgumentException>(() => new TardosAllocation(Secret, 0, 0.01));
        Assert.Throws<ArgumentException>(() => new TardosAllocation(Secret, 100, 0));
        Assert.Throws<ArgumentException>(() => new TardosAllocation(Secret, 100, 0.5));
        Assert.Throws<ArgumentException>(() => new TardosAllocation(Secret, 100, -0.1));
        Assert.Throws<ArgumentException>(() => new TardosAllocation(Secret, 100, double.NaN));
        Assert.Throws<ArgumentException>(() => new TardosAllocation(new byte[8], 100, 0.01));
        Assert.Throws<ArgumentException>(() => TardosAllocation.DefaultCutoff(0));
        Assert.Throws<ArgumentException>(() => new RandomAllocation(Secret, 0, 1));
        Assert.Throws<ArgumentException>(() => new RandomAllocation(Secret, 10, 11));
        Assert.Throws<ArgumentException>(() => new RandomAllocation(Secret, 10, 0));
        Assert.Throws<ArgumentException>(() => RandomAllocation.WithFraction(Secret, 10, 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TardosAllocation(Secret, 10, 0.01).IndicesFor(-1));
    }

    [Fact]
    public void DefaultCutoffIsTardos()
    {
        Assert.Equal(1.0 / 900, TardosAllocation.DefaultCutoff(3), 15);
    }
}
