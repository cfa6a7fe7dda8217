using Oml.Fingerprinting.Verification;

namespace Oml.Lab.Metrics;

/// <summary>False-positive measures of the hit-count test: how often unrelated models answer keys by chance.</summary>
public static class FalsePositives
{
    /// <summary>Hit rate of unrelated models: total hits over total queried keys.</summary>
    public static double HitRate(IEnumerable<(int Hits, int Queried)> counts)
    {
        long h = 0, q = 0;
        foreach (var (hits, queried) in counts)
        {
            if (hits < 0 || queried < 0 || hits > queried) throw new ArgumentException($"invalid count {hits}/{queried}");
            h += hits;
            q += queried;
        }
        if (q == 0) throw new ArgumentException("no queried keys");
        return (double)h / q;
    }

    /// <summary>
    /// One-sided upper confidence bound (Clopper–Pearson) on a hit probability after <paramref name="hits"/> of
    /// <paramref name="n"/>: the p at which P(X ≤ hits) = 1 − confidence, by bisection on the exact binomial tail.
    /// With 0 hits this is 1 − (1 − confidence)^(1/n) (the "rule of three" ≈ 3/n at 95 %).
    /// </summary>
    public static double UpperBound(int hits, int n, double confidence = 0.95)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "at least one trial is needed");
        if (hits < 0 || hits > n) throw new ArgumentOutOfRangeException(nameof(hits), hits, $"hits must be in [0, {n}]");
        if (!(confidence > 0 && confidence < 1)) throw new ArgumentOutOfRangeException(nameof(confidence), confidence, "confidence must be in (0, 1)");
        if (hits == n) return 1.0;
        double target = Math.Log(1 - confidence), lo = (double)hits / n, hi = 1.0;
        for (int i = 0; i < 200 && hi - lo > 1e-15; i++)
        {
            double mid = (lo + hi) / 2;
            // P(X ≤ hits) falls as p grows.
            if (FingerprintStatistics.LogBinomialLowerTail(n, mid, hits) > target) lo = mid; else hi = mid;
        }
        return hi;
    }

    /// <summary>
    /// Keys needed (all hit) for a stated false-positive rate α, given the measured per-key hit rate of unrelated
    /// models: <see cref="FingerprintStatistics.KeysNeeded(double, double)"/>. Null when the rate is 1 (no number of keys helps).
    /// </summary>
    public static int? KeysNeeded(double alpha, double unrelatedHitRate) =>
        unrelatedHitRate >= 1 ? null : FingerprintStatistics.KeysNeeded(alpha, unrelatedHitRate);
}

/// <summary>The hit-count test as a verifier runs it: query a random subset of the keys and count the hits.</summary>
public static class HitCountTest
{
    /// <summary>
    /// Hit counts of <paramref name="draws"/> random subsets of <paramref name="keys"/> keys (without replacement) of one
    /// model's per-key outcomes, from the seed. With keys ≥ the number of outcomes, every draw is the whole set.
    /// </summary>
    public static List<double> SubsetHitCounts(IReadOnlyList<bool> perKey, int keys, int draws, int seed)
    {
        if (perKey.Count == 0) throw new ArgumentException("no keys", nameof(perKey));
        if (keys < 1 || draws < 1) throw new ArgumentOutOfRangeException(nameof(keys), "keys and draws must be at least 1");
        int k = Math.Min(keys, perKey.Count);
        var rng = new Random(seed);
        var idx = Enumerable.Range(0, perKey.Count).ToArray();
        var counts = new List<double>(draws);
        for (int d = 0; d < draws; d++)
        {
            // Partial Fisher–Yates: the first k entries are a uniform random subset.
            for (int i = 0; i < k; i++)
            {
                int j = i + rng.Next(perKey.Count - i);
                (idx[i], idx[j]) = (idx[j], idx[i]);
            }
            int hits = 0;
            for (int i = 0; i < k; i++) if (perKey[idx[i]]) hits++;
            counts.Add(hits);
        }
        return counts;
    }
}
