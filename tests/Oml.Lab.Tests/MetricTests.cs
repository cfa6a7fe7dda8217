using Oml.Fingerprinting;
using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;

namespace Oml.Lab.Tests;

public class RocTests
{
    [Fact]
    public void Auc_counts_pairs_ordered_correctly()
    {
        // Pairs (pos, neg): 0.9 beats both, 0.8 beats both, 0.4 beats 0.3 only: 5 of 6.
        Assert.Equal(5.0 / 6, Roc.Auc([0.9, 0.8, 0.4], [0.5, 0.3]), 12);
    }

    [Fact]
    public void Auc_counts_ties_as_half()
    {
        // (1,2): 0, (1,0): 1, (2,2): 0.5, (2,0): 1 -> 2.5 / 4.
        Assert.Equal(0.625, Roc.Auc([1, 2], [2, 0]), 12);
        Assert.Equal(0.5, Roc.Auc([3, 3], [3]), 12);
        Assert.Equal(0.0, Roc.Auc([0], [1, 2]), 12);
    }

    [Fact]
    public void Curve_has_a_point_per_distinct_score()
    {
        var c = Roc.Curve([3, 1], [2, 0]);
        Assert.Equal([(0.0, 0.0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1)], c.Select(p => (p.FalsePositiveRate, p.TruePositiveRate)));
        Assert.Equal(double.PositiveInfinity, c[0].Threshold);
        Assert.Equal([3.0, 2, 1, 0], c.Skip(1).Select(p => p.Threshold));
        Assert.Equal(0.5, Roc.TprAtFpr([3, 1], [2, 0], 0));
        Assert.Equal(1.0, Roc.TprAtFpr([3, 1], [2, 0], 0.5));
    }

    [Fact]
    public void Empty_or_nan_scores_are_refused()
    {
        Assert.Throws<ArgumentException>(() => Roc.Auc([], [1]));
        Assert.Throws<ArgumentException>(() => Roc.Auc([1], []));
        Assert.Throws<ArgumentException>(() => Roc.Curve([double.NaN], [1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Roc.TprAtFpr([1], [0], 1.5));
    }
}

public class FalsePositiveTests
{
    [Theory]
    [InlineData(1e-6, 0.1)]
    [InlineData(1e-9, 0.01)]
    [InlineData(0.05, 0.5)]
    [InlineData(1e-3, 0.0)]
    public void Keys_needed_is_the_statistics_library_value(double alpha, double p)
    {
        Assert.Equal(FingerprintStatistics.KeysNeeded(alpha, p), FalsePositives.KeysNeeded(alpha, p));
    }

    [Fact]
    public void Keys_needed_by_hand()
    {
        Assert.Equal(6, FalsePositives.KeysNeeded(1e-6, 0.1));   // 0.1^6 = 1e-6
        Assert.Equal(10, FalsePositives.KeysNeeded(1e-3, 0.5));  // 0.5^10 ≈ 9.8e-4 ≤ 1e-3 < 0.5^9
        Assert.Null(FalsePositives.KeysNeeded(1e-6, 1.0));
    }

    [Fact]
    public void Upper_bound_matches_the_binomial_tail()
    {
        // Zero hits: 1 − 0.05^(1/n).
        Assert.Equal(1 - Math.Pow(0.05, 1.0 / 100), FalsePositives.UpperBound(0, 100), 9);
        // 3 of 10: the one-sided 95 % Clopper–Pearson bound is ≈ 0.6066, where P(X ≤ 3) = 0.05.
        double u = FalsePositives.UpperBound(3, 10);
        Assert.Equal(0.6066, u, 3);
        Assert.Equal(Math.Log(0.05), FingerprintStatistics.LogBinomialLowerTail(10, u, 3), 6);
        Assert.Equal(1.0, FalsePositives.UpperBound(5, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => FalsePositives.UpperBound(6, 5));
    }

    [Fact]
    public void Hit_rate_pools_counts()
    {
        Assert.Equal(0.05, FalsePositives.HitRate([(1, 10), (0, 10)]), 12);
        Assert.Throws<ArgumentException>(() => FalsePositives.HitRate([(3, 2)]));
        Assert.Throws<ArgumentException>(() => FalsePositives.HitRate([]));
    }

    [Fact]
    public void Subset_hit_counts_are_deterministic_and_bounded()
    {
        bool[] perKey = [true, false, true, true, false, false, true, false];
        var a = HitCountTest.SubsetHitCounts(perKey, 3, 100, seed: 5);
        Assert.Equal(a, HitCountTest.SubsetHitCounts(perKey, 3, 100, seed: 5));
        Assert.NotEqual(a, HitCountTest.SubsetHitCounts(perKey, 3, 100, seed: 6));
        Assert.All(a, h => Assert.InRange(h, 0, 3));
        Assert.InRange(a.Average(), 1.2, 1.8); // E = 3 · 4/8 = 1.5
        Assert.All(HitCountTest.SubsetHitCounts(perKey, 20, 5, 1), h => Assert.Equal(4, h)); // the whole set
    }
}

public class FsrTests
{
    private static Fingerprint Fp(int i, int[] key, params int[][] responses) =>
        new(i, $"key {i}", key, responses.Select(r => new FingerprintResponse("r", r)).ToArray(), new StrategyInfo("custom"), new byte[Fingerprint.SaltLength]);

    private sealed class Canned(params int[][] answers) : IResponder
    {
        public string Name => "canned";
        public List<int> MaxNewTokens { get; } = [];
        public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
        {
            MaxNewTokens.Add(maxNewTokens);
            return prompts.Select((_, i) => answers[i]).ToList();
        }
    }

    [Fact]
    public void Fsr_counts_token_prefix_matches_of_any_response()
    {
        var tok = Oml.Models.Tokenizers.Tokenizer.FromFolder(Fixtures.SmokeBase);
        var fps = new[]
        {
            Fp(0, [5, 6], [10, 11]),          // answered 10 11 12: hit (prefix)
            Fp(1, [7], [20], [21, 22]),       // answered 21 22: hit on the second response
            Fp(2, [8], [30, 31]),             // answered 30: too short, miss
            Fp(3, [9], [40]),                 // answered 41: miss
        };
        var responder = new Canned([10, 11, 12], [21, 22], [30], [41]);
        var r = FingerprintSuccess.Measure(responder, tok, fps);
        Assert.Equal([true, true, false, false], r.PerKey);
        Assert.Equal(2, r.Hits);
        Assert.Equal(0.5, r.Rate);
        Assert.Equal([2], responder.MaxNewTokens); // the longest response
    }

    [Fact]
    public void Persistence_is_the_ratio_of_fsrs()
    {
        Assert.Equal(0.5, FingerprintSuccess.Persistence(0.8, 0.4), 12);
        Assert.Equal(0, FingerprintSuccess.Persistence(0, 0.4));
        Assert.Throws<ArgumentOutOfRangeException>(() => FingerprintSuccess.Persistence(1.2, 0.4));
    }

    [Fact]
    public void Stealth_from_perplexities_by_hand()
    {
        var s = Stealth.FromPerplexities([10, 1000], [100, 100]);
        Assert.Equal(100, s.KeyPerplexity, 9);
        Assert.Equal(100, s.TextPerplexity, 9);
        Assert.Equal(1, s.Ratio, 9);
        Assert.Equal(0.5, s.DetectorAuc, 12);
        var t = Stealth.FromPerplexities([400, 900], [100, 200]);
        Assert.Equal(600, t.KeyPerplexity, 9); // sqrt(400·900)
        Assert.Equal(1.0, t.DetectorAuc);
        Assert.Equal(1.0, Stealth.FromPerplexities([1, 2], [3, 4]).Separability);
    }

    [Fact]
    public void Keys_removed_within_a_refusal_budget_by_hand()
    {
        // 100 ordinary prompts at perplexity 11..110; keys at 5, 10.5, 12.5, 50 and 500.
        var text = Enumerable.Range(11, 100).Select(x => (double)x).ToArray();
        var s = Stealth.FromPerplexities([5, 10.5, 12.5, 50, 500], text);
        // Low side: refusing nothing still catches the two keys below every prompt; refusing 2 (11, 12) adds 12.5.
        Assert.Equal(0.4, s.KeysRemovedAt(0, FilterSide.Low), 12);
        Assert.Equal(0.4, s.KeysRemovedAt(0.01, FilterSide.Low), 12);
        Assert.Equal(0.6, s.KeysRemovedAt(0.02, FilterSide.Low), 12);
        Assert.Equal(0.8, s.KeysRemovedAt(0.6, FilterSide.Low), 12);  // the threshold at 50 refuses 40 prompts
        // High side: only the key at 500 is above every prompt.
        Assert.Equal(0.2, s.KeysRemovedAt(0.05, FilterSide.High), 12);
        Assert.Equal(1.0, s.KeysRemovedAt(1, FilterSide.High), 12);
        // Both: 2 refused below (12.5 goes) and none above (500 goes anyway) beat any other split.
        Assert.Equal(0.8, s.KeysRemovedAt(0.02, FilterSide.Both), 12);
        Assert.Equal(0.6, s.KeysRemovedAt(0, FilterSide.Both), 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.KeysRemovedAt(1.5, FilterSide.Low));
    }
}
