using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;

namespace Oml.Lab.Tests;

public class KeyLeakTests
{
    private static readonly int[] Key = [11, 12, 13, 14, 15, 16, 17, 18];

    [Fact]
    public void Blocker_blocks_revealed_keys_and_wrapped_or_edited_copies_but_not_other_prompts()
    {
        var model = new FakeResponder("model", p => [1, 2, 3]);
        var fallback = new FakeResponder("base", p => [7]);
        var blocker = new RevealedKeyBlocker(model, [Key], n: 3, threshold: 0.5, fallback: fallback);
        int[] wrapped = [40, 41, 42, .. Key, 43];
        int[] edited = [11, 12, 13, 14, 99, 16, 17, 18];            // one token changed: 3 of 6 trigrams left
        int[] other = [20, 21, 22, 23, 24, 25, 26, 27];
        int[] sharesOneTrigram = [11, 12, 13, 30, 31, 32, 33, 34]; // 1 of 6 trigrams
        var answers = blocker.Respond([Key, wrapped, edited, other, sharesOneTrigram], 4);
        Assert.Equal([7], answers[0]);
        Assert.Equal([7], answers[1]);
        Assert.Equal([7], answers[2]);
        Assert.Equal([1, 2, 3], answers[3]);
        Assert.Equal([1, 2, 3], answers[4]);
        Assert.Equal(3, blocker.Blocked);
        Assert.Equal(2, model.Asked.Count);
        Assert.Equal(1.0, blocker.MaxContainment(wrapped));
        Assert.Equal(3.0 / 6, blocker.MaxContainment(edited), 12);
        // Without a fallback, blocked prompts get the (truncated) refusal.
        var refuse = new RevealedKeyBlocker(model, [Key], refusal: [5, 6, 7]);
        Assert.Equal([5, 6], refuse.Respond([Key], 2)[0]);
    }

    [Fact]
    public void Blocker_learns_keys_revealed_later_and_handles_keys_shorter_than_n()
    {
        var model = new FakeResponder("model", p => [1]);
        var blocker = new RevealedKeyBlocker(model, [], n: 3, threshold: 1.0, refusal: [0]);
        Assert.Equal([1], blocker.Respond([Key], 1)[0]);
        blocker.Reveal(Key);
        Assert.Equal([0], blocker.Respond([Key], 1)[0]);
        blocker.Reveal([50, 51]);
        Assert.True(blocker.IsBlocked([9, 50, 51, 9]));
        Assert.False(blocker.IsBlocked([9, 50, 9, 51]));
    }

    [Fact]
    public void Near_duplicate_rate_counts_ordered_pairs()
    {
        int[] a = [1, 2, 3, 4, 5];
        int[] b = [1, 2, 3, 4, 9];       // 2 of a's 3 trigrams are in b, and 2 of b's 3 in a
        int[] c = [20, 21, 22, 23, 24];
        Assert.Equal(2.0 / 6, RevealedKeyBlocker.NearDuplicateRate([a, b, c], n: 3, threshold: 0.5), 12);
        Assert.Equal(0.0, RevealedKeyBlocker.NearDuplicateRate([a, b, c], n: 3, threshold: 0.9));
    }

    [Fact]
    public void Leak_budget_without_collateral_uses_fresh_keys_until_the_set_runs_out()
    {
        var rule = new VerdictRule();
        var schedule = KeyLeakBudget.Schedule(1024, recall: 0.87);
        int m = FingerprintStatistics.KeysNeededForPower(rule.Alpha, rule.NullHitProbability, 0.87)!.Value;
        Assert.Equal(1024 / m, schedule.Count);
        Assert.All(schedule, c => Assert.Equal(m, c.Queried));
        Assert.All(schedule, c => Assert.True(c.Power >= 0.95));
        Assert.Equal(schedule.Count * m, schedule[^1].RevealedBefore + m);
        // Each claim's verdict really is owned at its hit count and not one hit fewer.
        var c1 = schedule[0];
        Assert.True(FingerprintStatistics.BinomialUpperTail(c1.Queried, rule.NullHitProbability, c1.HitsNeeded) <= rule.Alpha);
        Assert.True(FingerprintStatistics.BinomialUpperTail(c1.Queried, rule.NullHitProbability, c1.HitsNeeded - 1) > rule.Alpha);
    }

    [Fact]
    public void Near_duplicate_blocking_shortens_the_budget_and_grows_each_claim()
    {
        int clean = KeyLeakBudget.Claims(4096, recall: 0.87);
        var schedule = KeyLeakBudget.Schedule(4096, recall: 0.87, nearDuplicateRate: 1e-3);
        Assert.True(schedule.Count < clean, $"{schedule.Count} vs {clean}");
        Assert.True(schedule[^1].Queried > schedule[0].Queried);
        Assert.True(schedule[^1].SurvivalPerKey < schedule[0].SurvivalPerKey);
        // A recall at or below the null rate supports no claim.
        Assert.Empty(KeyLeakBudget.Schedule(1024, recall: 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => KeyLeakBudget.Schedule(1024, recall: 0.87, nearDuplicateRate: 1.0));
    }
}
