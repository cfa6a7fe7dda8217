using System.Diagnostics;
using System.Globalization;
using Oml.Fingerprinting.Verification;

/// <summary>
/// Time of a verdict's Poisson-binomial tail at a real key count:
///   Oml.Bench --verdict-tails [--keys 24576] [--old]
/// One per-key null probability per key (log-uniform in [1e-4, 1e-1], seed 0), and hit counts from an unrelated model's
/// (a few) to an owned model's (95 % and all). With --old it also times the log-space dynamic program that computed the
/// tails before (O(keys × hits) log-sum-exp steps) and checks that both agree.
/// </summary>
internal static class VerdictTailsBench
{
    public static int Run(Args opts)
    {
        int m = int.Parse(opts.Get("keys", "24576"), CultureInfo.InvariantCulture);
        bool old = opts.Has("old");
        var rng = new Random(0);
        var p = Enumerable.Range(0, m).Select(_ => Math.Pow(10, -1 - 3 * rng.NextDouble())).ToArray();
        Console.WriteLine($"| hits of {m:N0} keys | log10 p-value | banded (s) |{(old ? " log-space DP before (s) | ratio |" : "")}");
        Console.WriteLine($"|---:|---:|---:|{(old ? "---:|---:|" : "")}");
        foreach (int h in new[] { 5, m / 100, m / 2, m * 95 / 100, m })
        {
            var sw = Stopwatch.StartNew();
            double lp = FingerprintStatistics.LogPoissonBinomialUpperTail(p, h);
            double t = sw.Elapsed.TotalSeconds;
            string row = $"| {h:N0} | {FingerprintStatistics.ToLog10(lp):F1} | {t:F3} |";
            if (old)
            {
                sw.Restart();
                double lo = OldLogUpperTail(p, h);
                double to = sw.Elapsed.TotalSeconds;
                if (Math.Abs(lo - lp) > 1e-9 * Math.Max(1.0, Math.Abs(lo))) throw new InvalidOperationException($"h={h}: {lp} vs {lo}");
                row += $" {to:F3} | {to / t:F0}× |";
            }
            Console.WriteLine(row);
        }
        return 0;
    }

    private static double OldLogUpperTail(IReadOnlyList<double> probabilities, int h)
    {
        int m = probabilities.Count;
        if (h <= 0) return 0.0;
        if (h > m) return double.NegativeInfinity;
        var state = new double[h + 1];
        Array.Fill(state, double.NegativeInfinity);
        state[0] = 0.0;
        for (int i = 0; i < m; i++)
        {
            double lp = Math.Log(probabilities[i]), lq = FingerprintStatistics.Log1p(-probabilities[i]);
            if (Math.Min(i + 1, h) == h) state[h] = FingerprintStatistics.LogAddExp(state[h], state[h - 1] + lp);
            for (int j = Math.Min(i + 1, h - 1); j >= 1; j--)
                state[j] = FingerprintStatistics.LogAddExp(state[j] + lq, state[j - 1] + lp);
            state[0] += lq;
        }
        return Math.Min(0.0, state[h]);
    }
}
