using Oml.Fingerprinting.Verification;

namespace Oml.Lab.Metrics;

/// <summary>One claim of a <see cref="KeyLeakBudget"/> schedule.</summary>
/// <param name="Claim">1-based claim number.</param>
/// <param name="RevealedBefore">Keys revealed by the earlier claims (all blocked by the host).</param>
/// <param name="SurvivalPerKey">Probability that an unrevealed key escapes the near-duplicate blocking: (1 − q)^R.</param>
/// <param name="Queried">Fresh keys this claim queries (and then reveals).</param>
/// <param name="HitsNeeded">Hits needed for p ≤ α under the null.</param>
/// <param name="Power">P(owned) against the blocking host at this claim.</param>
public sealed record LeakClaim(int Claim, int RevealedBefore, double SurvivalPerKey, int Queried, int HitsNeeded, double Power);

/// <summary>
/// How many ownership claims a fingerprint set supports against a host that blocks every key revealed by earlier
/// claims and each near-duplicate of one. Each claim queries only keys not yet revealed (the verifier knows which it
/// published) and reveals them. A fresh key is blocked as a near-duplicate of one of the R revealed keys with
/// probability 1 − (1 − q)^R, independently per revealed key (q measured on real keys with
/// <c>RevealedKeyBlocker.NearDuplicateRate</c>); a blocked key is a miss, an unblocked key a hit with the model's
/// recall r. The verdict is <see cref="VerdictRule"/>'s owned test: at least h hits of M queried keys with
/// P(Binomial(M, p₀) ≥ h) ≤ α. A claim is supported while some M ≤ the unrevealed keys gives
/// P(Binomial(M, r·(1 − q)^R) ≥ h(M)) ≥ the target power; each claim uses the smallest such M.
/// </summary>
public static class KeyLeakBudget
{
    public static IReadOnlyList<LeakClaim> Schedule(int setSize, double recall, double nearDuplicateRate = 0,
        double alpha = VerdictRule.DefaultAlpha, double nullHitProbability = VerdictRule.DefaultNullHitProbability,
        double power = 0.95, int maxClaims = 100_000)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(setSize, 1);
        if (!(recall > 0 && recall <= 1)) throw new ArgumentOutOfRangeException(nameof(recall), recall, "the recall must be in (0, 1]");
        if (!(nearDuplicateRate >= 0 && nearDuplicateRate < 1)) throw new ArgumentOutOfRangeException(nameof(nearDuplicateRate), nearDuplicateRate, "the near-duplicate rate must be in [0, 1)");
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in (0, 1)");
        if (!(nullHitProbability >= 0 && nullHitProbability < 1)) throw new ArgumentOutOfRangeException(nameof(nullHitProbability), nullHitProbability, "the null hit probability must be in [0, 1)");
        if (!(power > 0 && power < 1)) throw new ArgumentOutOfRangeException(nameof(power), power, "the power must be in (0, 1)");
        var claims = new List<LeakClaim>();
        int revealed = 0;
        double logPower = Math.Log(power);
        int minKeys = FingerprintStatistics.KeysNeeded(alpha, nullHitProbability);
        while (claims.Count < maxClaims)
        {
            double survival = Math.Pow(1 - nearDuplicateRate, revealed);
            double effective = recall * survival;
            int left = setSize - revealed;
            LeakClaim? found = null;
            if (effective > nullHitProbability)
                for (int m = Math.Max(1, minKeys); m <= left; m++)
                {
                    if (FingerprintStatistics.HitsNeeded(m, alpha, nullHitProbability) is not int h) continue;
                    double lp = FingerprintStatistics.LogBinomialUpperTail(m, effective, h);
                    if (lp >= logPower) { found = new LeakClaim(claims.Count + 1, revealed, survival, m, h, Math.Exp(lp)); break; }
                }
            if (found is null) break;
            claims.Add(found);
            revealed += found.Queried;
        }
        return claims;
    }

    /// <summary>The number of claims the set supports (the length of <see cref="Schedule"/>).</summary>
    public static int Claims(int setSize, double recall, double nearDuplicateRate = 0, double alpha = VerdictRule.DefaultAlpha,
        double nullHitProbability = VerdictRule.DefaultNullHitProbability, double power = 0.95) =>
        Schedule(setSize, recall, nearDuplicateRate, alpha, nullHitProbability, power).Count;
}
