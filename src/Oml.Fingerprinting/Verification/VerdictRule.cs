using System.Globalization;
using System.Text.Json.Serialization;

namespace Oml.Fingerprinting.Verification;

/// <summary>The outcome of an ownership test.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<Verdict>))]
public enum Verdict
{
    /// <summary>The hits are too many for an unrelated model: p-value ≤ α.</summary>
    [JsonStringEnumMemberName("owned")] Owned,
    /// <summary>The hits are consistent with an unrelated model, and too few for a fingerprinted one.</summary>
    [JsonStringEnumMemberName("not-owned")] NotOwned,
    /// <summary>Neither: typically too few keys were queried.</summary>
    [JsonStringEnumMemberName("inconclusive")] Inconclusive,
}

/// <summary>The result of <see cref="VerdictRule.Evaluate(int, int, IReadOnlyList{double}?, int)"/>.</summary>
/// <param name="Verdict">owned, not-owned or inconclusive.</param>
/// <param name="Hits">H, the number of keys hit.</param>
/// <param name="Queried">M, the number of keys queried.</param>
/// <param name="LogPValue">ln P(X ≥ H) under the null (unrelated model).</param>
/// <param name="LogPowerTail">ln P(Y ≤ H) where each key is hit with the expected recall r (fingerprinted model).</param>
/// <param name="Reason">One sentence saying why this verdict was reached.</param>
public sealed record VerdictResult(Verdict Verdict, int Hits, int Queried, double LogPValue, double LogPowerTail, string Reason)
{
    /// <summary>The p-value P(X ≥ H | null); underflows to 0 below about 1e-308 (see <see cref="Log10PValue"/>).</summary>
    public double PValue => Math.Exp(LogPValue);

    /// <summary>log10 of the p-value, finite however small the p-value (−∞ only when it is exactly 0).</summary>
    public double Log10PValue => FingerprintStatistics.ToLog10(LogPValue);

    /// <summary>P(Y ≤ H) for a fingerprinted model with the expected recall.</summary>
    public double PowerTail => Math.Exp(LogPowerTail);
}

/// <summary>
/// The ownership decision rule. With X the hit count of an unrelated model (key i hit with probability p_i) and Y the
/// hit count of a fingerprinted model (each key hit with probability r, the expected recall):
/// <list type="bullet">
/// <item><c>owned</c> when P(X ≥ H) ≤ α;</item>
/// <item><c>not-owned</c> when P(X ≥ H) &gt; α and P(Y ≤ H) &lt; α (the hits are also too few for a fingerprinted
/// model, so the test had the power to see one);</item>
/// <item><c>inconclusive</c> otherwise, e.g. when so few keys were queried that even all hits could not reach α.</item>
/// </list>
/// </summary>
/// <remarks>
/// Defaults: α = 1e-6 (a one-in-a-million chance of wrongly accusing an unrelated model per test; a host testing
/// many suspects should divide α by their number), r = 0.5 (fine-tuned fingerprints are typically recalled far more
/// often; a low r makes not-owned harder to declare, never easier), and a null hit probability bound of 0.1 per key
/// when no per-fingerprint probabilities are given. 0.1 is deliberately conservative: Perinucleus-style responses
/// are hit by an unrelated greedy model with probability about 1/k for k candidate tokens, and the base model's
/// measured probability of a whole response is usually much smaller. With the defaults, 6 all-hit keys reach α.
/// </remarks>
public sealed record VerdictRule
{
    /// <summary>Default false-positive rate α.</summary>
    public const double DefaultAlpha = 1e-6;

    /// <summary>Default expected recall r of a fingerprinted model.</summary>
    public const double DefaultExpectedRecall = 0.5;

    /// <summary>Default per-key probability bound that an unrelated model hits a key.</summary>
    public const double DefaultNullHitProbability = 0.1;

    /// <summary>
    /// Default floor on every per-key null hit probability: a key is never taken to be hit by an unrelated model with
    /// probability below 1e-3, however unlikely the base model finds its response (see docs/verification.md).
    /// </summary>
    public const double DefaultNullFloor = 1e-3;

    /// <summary>
    /// Default floor per distinct first response token for keys whose responses were drawn just outside the base's
    /// nucleus (<see cref="Generation.Strategies.Perinucleus"/> and <see cref="Generation.Strategies.Custom"/> sets). A host
    /// that suppresses its top m tokens makes the (m+1)-th its answer, and that is where those responses lie, so models
    /// that never saw the keys hit far more of them than the base's probabilities say. Measured (docs/verification.md,
    /// "The floor"): through top-m first-token suppression (m = 1-5) the 102.7M Llama base, its fine-tune, two siblings
    /// fingerprinted with other keys and a Mistral base hit 1.8-4.6 % of 8,192 keys (worst 95 % upper bound 5.1 %), where
    /// the default 1e-3 called every one of them owned (p 1e-42 to 1e-240); 0.2M bases hit up to 1.8 %.
    /// </summary>
    public const double SuppressionNullFloor = 0.06;

    /// <summary>
    /// The floor a verdict on these fingerprints starts from when none is given (a calibration raises it further):
    /// <see cref="SuppressionNullFloor"/> times the most distinct first response tokens any key has (a suppressing host
    /// hits a key when any of them is its (m+1)-th token), at most 0.5, when any key's responses are Perinucleus ones;
    /// <see cref="DefaultNullFloor"/> otherwise (random words and sampled English responses are not where a suppressing
    /// host's answer falls, and their per-key probabilities are measured on the base).
    /// </summary>
    public static double DefaultNullFloorFor(IEnumerable<Fingerprint> fingerprints)
    {
        ArgumentNullException.ThrowIfNull(fingerprints);
        int firsts = 0;
        foreach (var f in fingerprints)
        {
            if (f.Strategy.Name is not (Generation.Strategies.Perinucleus or Generation.Strategies.Custom)) continue;
            var seen = new HashSet<int>();
            foreach (var r in f.Responses) if (r.TokenIds.Count > 0) seen.Add(r.TokenIds[0]);
            firsts = Math.Max(firsts, Math.Max(1, seen.Count));
        }
        return firsts == 0 ? DefaultNullFloor : Math.Min(0.5, SuppressionNullFloor * firsts);
    }

    /// <summary>
    /// True when <see cref="NullFloor"/> comes from a calibration on negative models (<see cref="NullCalibration.Apply"/>).
    /// The partial rule states ownership only then (<see cref="VerificationReport.StatedUnder"/>).
    /// </summary>
    public bool CalibratedFloor { get; init; }

    private readonly double _alpha = DefaultAlpha;
    private readonly double _expectedRecall = DefaultExpectedRecall;
    private readonly double _nullHitProbability = DefaultNullHitProbability;
    private readonly double _nullFloor = DefaultNullFloor;

    /// <summary>The false-positive rate α, in (0, 1).</summary>
    public double Alpha
    {
        get => _alpha;
        init => _alpha = value > 0.0 && value < 1.0 ? value : throw new ArgumentOutOfRangeException(nameof(Alpha), value, "α must be in (0, 1).");
    }

    /// <summary>The expected recall r of a fingerprinted model, in (0, 1].</summary>
    public double ExpectedRecall
    {
        get => _expectedRecall;
        init => _expectedRecall = value > 0.0 && value <= 1.0 ? value : throw new ArgumentOutOfRangeException(nameof(ExpectedRecall), value, "r must be in (0, 1].");
    }

    /// <summary>The per-key null hit probability used when no per-fingerprint probabilities are given, in [0, 1).</summary>
    public double NullHitProbability
    {
        get => _nullHitProbability;
        init => _nullHitProbability = value >= 0.0 && value < 1.0 ? value : throw new ArgumentOutOfRangeException(nameof(NullHitProbability), value, "The null hit probability must be in [0, 1).");
    }

    /// <summary>
    /// The floor on every per-key null hit probability, in [0, 1): each p_i (and the common bound) is raised to at
    /// least this before the p-value is computed. The base model's probability of a response says how often the base
    /// produces it, not how often a fine-tune of it, a sibling or another model does; without a floor one hit on a key
    /// the base finds impossible (p_i ≈ 0) would prove ownership by itself. Set it from a calibration against strong
    /// negatives (<see cref="NullCalibration"/>); 0 turns the floor off.
    /// </summary>
    public double NullFloor
    {
        get => _nullFloor;
        init => _nullFloor = value >= 0.0 && value < 1.0 ? value : throw new ArgumentOutOfRangeException(nameof(NullFloor), value, "The null floor must be in [0, 1).");
    }

    /// <summary>A per-key null hit probability after the floor: max(p, <see cref="NullFloor"/>).</summary>
    public double Floored(double p) => Math.Max(p, NullFloor);

    /// <summary>The common bound after the floor: max(<see cref="NullHitProbability"/>, <see cref="NullFloor"/>).</summary>
    public double EffectiveNullHitProbability => Floored(NullHitProbability);

    /// <summary>The rule with its parameters, as one line of text.</summary>
    public string Describe(bool perKeyNull = false)
    {
        string a = Format(Alpha), r = Format(ExpectedRecall);
        string nul = perKeyNull
            ? $"X ~ PoissonBinomial(max(p_i, {Format(NullFloor)})), p_i the per-key null hit probabilities"
            : $"X ~ Binomial(M, {Format(EffectiveNullHitProbability)})";
        return $"owned if P(X >= H) <= α; not-owned if P(X >= H) > α and P(Y <= H) < α; inconclusive otherwise; "
             + $"{nul}; Y ~ Binomial(M, r); α = {a}, r = {r}";
    }

    /// <summary>The smallest number of all-hit keys that reaches α at this rule's null hit probability.</summary>
    public int KeysNeeded() => FingerprintStatistics.KeysNeeded(Alpha, EffectiveNullHitProbability);

    /// <summary>
    /// Applies the rule to H hits out of M queried keys. <paramref name="nullProbabilities"/>, when given, holds one
    /// null hit probability per queried key (length M); otherwise <see cref="NullHitProbability"/> is used for all. Either
    /// is raised to <see cref="NullFloor"/> first. <paramref name="unanswered"/> of the missed keys got no answer at all
    /// (an empty answer: what a host that filters keys returns): they count as misses for the p-value, which only makes
    /// owned harder, but not as evidence against ownership, so not-owned needs P(Y ≤ H) &lt; α over the M − U answered keys.
    /// </summary>
    public VerdictResult Evaluate(int hits, int queried, IReadOnlyList<double>? nullProbabilities = null, int unanswered = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queried);
        if (hits < 0 || hits > queried) throw new ArgumentOutOfRangeException(nameof(hits), hits, $"Hits must be in [0, {queried}].");
        if (unanswered < 0 || unanswered > queried - hits)
            throw new ArgumentOutOfRangeException(nameof(unanswered), unanswered, $"Unanswered keys must be in [0, {queried - hits}] (missed keys).");
        if (nullProbabilities is not null && nullProbabilities.Count != queried)
            throw new ArgumentException($"{nullProbabilities.Count} null probabilities were given for {queried} queried keys.", nameof(nullProbabilities));
        if (nullProbabilities is not null && NullFloor > 0.0)
        {
            var floored = new double[nullProbabilities.Count];
            for (int i = 0; i < floored.Length; i++) floored[i] = Floored(nullProbabilities[i]);
            nullProbabilities = floored;
        }
        double common = EffectiveNullHitProbability;

        double logP = nullProbabilities is null
            ? FingerprintStatistics.LogBinomialUpperTail(queried, common, hits)
            : FingerprintStatistics.LogPoissonBinomialUpperTail(nullProbabilities, hits);
        int answered = queried - unanswered;
        double logPower = FingerprintStatistics.LogBinomialLowerTail(answered, ExpectedRecall, hits);
        double logAlpha = Math.Log(Alpha);

        Verdict verdict;
        string reason;
        string pText = FormatLog10(FingerprintStatistics.ToLog10(logP));
        if (logP <= logAlpha)
        {
            verdict = Verdict.Owned;
            reason = $"{hits} of {queried} keys hit; an unrelated model does this with probability {pText} <= α = {Format(Alpha)}.";
        }
        else if (logPower < logAlpha)
        {
            verdict = Verdict.NotOwned;
            string over = unanswered > 0 ? $" of the {answered} keys it answered ({unanswered} got no answer)" : "";
            reason = $"{hits} of {queried} keys hit: consistent with an unrelated model (p = {pText} > α), and a fingerprinted model "
                   + $"with recall {Format(ExpectedRecall)} hits this few{over} with probability {FormatLog10(FingerprintStatistics.ToLog10(logPower))} < α.";
        }
        else if (unanswered > 0 && FingerprintStatistics.LogBinomialLowerTail(queried, ExpectedRecall, hits) < logAlpha)
        {
            // Counting the unanswered keys as misses would have declared not-owned: a host that refuses keys must not
            // turn the owner's test into evidence against the owner.
            verdict = Verdict.Inconclusive;
            reason = $"{hits} of {queried} keys hit (p = {pText} > α), but {unanswered} of the keys got no answer at all, as a host that "
                   + $"filters keys answers; over the {answered} answered keys a fingerprinted model with recall {Format(ExpectedRecall)} "
                   + $"could also hit this few (probability {FormatLog10(FingerprintStatistics.ToLog10(logPower))} >= α), so not-owned is not stated.";
        }
        else
        {
            verdict = Verdict.Inconclusive;
            double logBest = nullProbabilities is null
                ? FingerprintStatistics.LogBinomialUpperTail(queried, common, queried)
                : FingerprintStatistics.LogPoissonBinomialUpperTail(nullProbabilities, queried);
            reason = logBest > logAlpha
                ? $"{queried} keys cannot reach α = {Format(Alpha)} even if all are hit (best p = {FormatLog10(FingerprintStatistics.ToLog10(logBest))}); query more keys."
                : $"{hits} of {queried} keys hit: p = {pText} > α, but a fingerprinted model with recall {Format(ExpectedRecall)} could also hit this few "
                  + $"(probability {FormatLog10(FingerprintStatistics.ToLog10(logPower))} >= α); query more keys.";
        }
        return new VerdictResult(verdict, hits, queried, logP, logPower, reason);
    }

    internal static string Format(double x) => x.ToString("G4", CultureInfo.InvariantCulture).Replace('E', 'e');

    /// <summary>Formats a probability given by its log10, e.g. "3.2e-412", without underflow.</summary>
    public static string FormatLog10(double log10)
    {
        if (double.IsNegativeInfinity(log10)) return "0";
        if (log10 >= -300) return Math.Pow(10, log10).ToString("G3", CultureInfo.InvariantCulture).Replace('E', 'e');
        double exponent = Math.Floor(log10);
        double mantissa = Math.Pow(10, log10 - exponent);
        if (mantissa >= 9.995) { mantissa = 1.0; exponent += 1; }
        return mantissa.ToString("0.00", CultureInfo.InvariantCulture) + "e" + exponent.ToString("0", CultureInfo.InvariantCulture);
    }
}
