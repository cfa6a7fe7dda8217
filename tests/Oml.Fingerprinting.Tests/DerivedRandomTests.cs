using Oml.Fingerprinting;

namespace Oml.Fingerprinting.Tests;

public sealed class DerivedRandomTests
{
    private static ulong[] Take(DerivedRandom r, int n) => [.. Enumerable.Range(0, n).Select(_ => r.NextUInt64())];

    [Fact]
    public void Same_secret_and_label_give_the_same_stream()
    {
        var a = Take(DerivedRandom.For(Samples.Secret, "fingerprint/17/response"), 100);
        var b = Take(DerivedRandom.For(Samples.Secret, "fingerprint/17/response"), 100);
        Assert.Equal(a, b);
        Assert.Equal(Take(DerivedRandom.For("pass phrase", "x"), 10), Take(DerivedRandom.For("pass phrase"u8, "x"), 10));
    }

    [Fact]
    public void Stream_does_not_depend_on_how_it_is_read()
    {
        var bytes = new byte[40];
        DerivedRandom.For(Samples.Secret, "l").NextBytes(bytes);
        var r = DerivedRandom.For(Samples.Secret, "l");
        var pieces = new byte[40];
        r.NextBytes(pieces.AsSpan(0, 3));
        r.NextBytes(pieces.AsSpan(3, 33));
        r.NextBytes(pieces.AsSpan(36));
        Assert.Equal(bytes, pieces);
    }

    [Fact]
    public void Known_answer()
    {
        // Pins the construction (HKDF-SHA256 then HMAC-SHA256 counter mode): sets must stay reproducible across versions.
        var key = new byte[32];
        System.Security.Cryptography.HKDF.DeriveKey(System.Security.Cryptography.HashAlgorithmName.SHA256, "s"u8, key,
            "oml/derived-random/v1"u8, "l"u8);
        var block0 = System.Security.Cryptography.HMACSHA256.HashData(key, new byte[8]);
        var expected = BitConverter.ToUInt64(block0, 0);
        Assert.Equal(expected, DerivedRandom.For("s"u8, "l").NextUInt64());
    }

    [Fact]
    public void Different_labels_or_secrets_give_independent_streams()
    {
        var a = Take(DerivedRandom.For(Samples.Secret, "fingerprint/1/response"), 64);
        var b = Take(DerivedRandom.For(Samples.Secret, "fingerprint/2/response"), 64);
        var c = Take(DerivedRandom.For("another secret"u8, "fingerprint/1/response"), 64);
        var d = Take(DerivedRandom.For(Samples.Secret, "fingerprint/1/response").Derive("x"), 64);
        foreach (var (x, y) in new[] { (a, b), (a, c), (b, c), (a, d) })
        {
            Assert.Empty(x.Intersect(y));
            // Independent 64-bit words agree on about half their bits.
            int agree = x.Zip(y, (p, q) => 64 - System.Numerics.BitOperations.PopCount(p ^ q)).Sum();
            Assert.InRange(agree / (64.0 * 64), 0.45, 0.55);
        }
    }

    [Fact]
    public void Next_is_uniform_chi_square()
    {
        const int bins = 10, n = 20_000;
        var r = DerivedRandom.For(Samples.Secret, "chi-square");
        var counts = new int[bins];
        for (int i = 0; i < n; i++) counts[r.Next(bins)]++;
        double expected = n / (double)bins;
        double chi2 = counts.Sum(c => (c - expected) * (c - expected) / expected);
        Assert.True(chi2 < 40, $"chi-square {chi2} (9 d.o.f.; 27.9 is p = 0.001)");
    }

    [Fact]
    public void NextDouble_is_uniform_and_in_range()
    {
        const int bins = 16, n = 20_000;
        var r = DerivedRandom.For(Samples.Secret, "doubles");
        var counts = new int[bins];
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            var u = r.NextDouble();
            Assert.InRange(u, 0.0, 0.9999999999999999);
            sum += u;
            counts[(int)(u * bins)]++;
        }
        double expected = n / (double)bins;
        double chi2 = counts.Sum(c => (c - expected) * (c - expected) / expected);
        Assert.True(chi2 < 50, $"chi-square {chi2} (15 d.o.f.; 37.7 is p = 0.001)");
        Assert.InRange(sum / n, 0.48, 0.52);
    }

    [Fact]
    public void Ranges_and_arguments()
    {
        var r = DerivedRandom.For(Samples.Secret, "ranges");
        for (int i = 0; i < 1000; i++)
        {
            Assert.InRange(r.Next(-5, 5), -5, 4);
            Assert.Equal(0, r.Next(1));
            Assert.InRange(r.Next(int.MinValue, int.MaxValue), int.MinValue, int.MaxValue - 1);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => r.Next(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.Next(3, 3));
        Assert.Throws<ArgumentException>(() => DerivedRandom.For(ReadOnlySpan<byte>.Empty, "x"));
    }

    [Fact]
    public void Shuffle_is_a_deterministic_permutation_and_roughly_uniform()
    {
        int[] a = [.. Enumerable.Range(0, 50)], b = [.. a];
        DerivedRandom.For(Samples.Secret, "shuffle").Shuffle(a.AsSpan());
        DerivedRandom.For(Samples.Secret, "shuffle").Shuffle((IList<int>)b);
        Assert.Equal(a, b);
        Assert.Equal(Enumerable.Range(0, 50), a.Order());
        Assert.NotEqual(Enumerable.Range(0, 50), a);

        // All 6 orders of 3 items appear about equally often.
        var r = DerivedRandom.For(Samples.Secret, "shuffle3");
        var counts = new Dictionary<string, int>();
        for (int i = 0; i < 6000; i++)
        {
            char[] x = ['a', 'b', 'c'];
            r.Shuffle(x.AsSpan());
            var k = new string(x);
            counts[k] = counts.GetValueOrDefault(k) + 1;
        }
        Assert.Equal(6, counts.Count);
        double chi2 = counts.Values.Sum(c => (c - 1000.0) * (c - 1000.0) / 1000.0);
        Assert.True(chi2 < 25, $"chi-square {chi2} (5 d.o.f.)");
    }

    [Fact]
    public void NextWeighted_follows_the_weights()
    {
        var r = DerivedRandom.For(Samples.Secret, "weighted");
        double[] w = [1, 0, 3];
        var counts = new int[3];
        for (int i = 0; i < 8000; i++) counts[r.NextWeighted(w)]++;
        Assert.Equal(0, counts[1]);
        Assert.InRange(counts[2] / (double)counts[0], 2.6, 3.4);
        Assert.Throws<ArgumentException>(() => r.NextWeighted([0.0, 0.0]));
        Assert.Throws<ArgumentException>(() => r.NextWeighted([1.0, double.NaN]));
    }

    [Fact]
    public void Derived_salts_are_reproducible_and_distinct()
    {
        Assert.Equal(Fingerprint.DeriveSalt(Samples.Secret, 3), Fingerprint.DeriveSalt(Samples.Secret, 3));
        Assert.NotEqual(Fingerprint.DeriveSalt(Samples.Secret, 3), Fingerprint.DeriveSalt(Samples.Secret, 4));
        Assert.Equal(32, Fingerprint.DeriveSalt(Samples.Secret, 3).Count);
    }
}
