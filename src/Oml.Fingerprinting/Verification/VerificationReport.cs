using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Oml.Fingerprinting.Verification;

/// <summary>One queried key in a <see cref="VerificationReport"/>.</summary>
/// <param name="Index">The key's index in the fingerprint set.</param>
/// <param name="Key">The key (prompt) sent to the model.</param>
/// <param name="ExpectedResponses">The accepted secret response(s).</param>
/// <param name="Answer">The model's answer (the first sample under sampled decoding).</param>
/// <param name="Hit">Whether the key counts as hit.</param>
/// <param name="NullProbability">The null hit probability used for this key, when per-key probabilities were used.</param>
/// <param name="SampleMatches">Under sampled decoding, how many of <paramref name="Samples"/> samples matched.</param>
/// <param name="Samples">Under sampled decoding, the number of samples R.</param>
public sealed record KeyResult(
    int Index,
    string Key,
    IReadOnlyList<string> ExpectedResponses,
    string Answer,
    bool Hit,
    double? NullProbability = null,
    int? SampleMatches = null,
    int? Samples = null)
{
    /// <summary>
    /// True: not counted in the verdict (neither its hit nor its null), because the base model's own greedy answer hits
    /// this key under the match rule, so a hit on it proves nothing (<see cref="LocalVerifier.BaseGreedyHits"/>). Which keys
    /// are excluded depends on the base and the keys only, never on the suspect, so the test stays valid.
    /// </summary>
    public bool? Excluded { get; init; }
}

/// <summary>
/// The outcome of verifying a suspect model. Serialises (see <see cref="ToJson"/>) to snake_case JSON with at least
/// <c>{"verdict": "owned"|"not-owned"|"inconclusive", "hits": H, "queried": M, "p_value": P}</c>.
/// </summary>
public sealed record VerificationReport(
    Verdict Verdict,
    int Hits,
    int Queried,
    double PValue,
    double Log10PValue,
    double Alpha,
    double ExpectedRecall,
    string Rule,
    string Reason,
    IReadOnlyList<KeyResult> Keys)
{
    /// <summary>
    /// The p-value under the distribution-free bound of Perinucleus sets: an unrelated model's answer can match at most
    /// n of the k candidate first tokens of a key, so it hits with probability at most n/k (n responses per key);
    /// P(Binomial(M, n/k) ≥ H). Null when the set is not a Perinucleus set.
    /// </summary>
    public double? PValueOneOverK { get; init; }

    /// <summary>The k (and responses per key n) that <see cref="PValueOneOverK"/> assumed.</summary>
    public int? K { get; init; }

    /// <summary>Keys answered but not counted (<see cref="KeyResult.Excluded"/>): <see cref="Hits"/> and <see cref="Queried"/> are of the others.</summary>
    public int? ExcludedKeys { get; init; }

    /// <summary>
    /// Counted keys missed with no answer at all (empty or blank: a host that filters keys refuses this way). They count
    /// as misses for the p-value but not against ownership (<see cref="VerdictRule.Evaluate"/>); null when there are none.
    /// </summary>
    public int? UnansweredKeys { get; init; }

    /// <summary>The match rule that decided the hits: "exact" (the answer starts with the response) or "partial" (<see cref="ResponseMatch"/>).</summary>
    public string Match { get; init; } = "exact";

    /// <summary>m of the partial rule (at least m tokens of each response); null for the exact rule.</summary>
    public int? MinTokens { get; init; }

    /// <summary>
    /// Builds the report from per-key results: H is the number of rows with <see cref="KeyResult.Hit"/>, M the number of
    /// rows. When every row carries a <see cref="KeyResult.NullProbability"/> they are used (Poisson-binomial);
    /// otherwise the rule's <see cref="VerdictRule.NullHitProbability"/> is used for all (binomial).
    /// </summary>
    public static VerificationReport Create(VerdictRule rule, IReadOnlyList<KeyResult> keys)
    {
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(keys);
        var counted = keys.Where(k => k.Excluded != true).ToList();
        int hits = counted.Count(k => k.Hit);
        bool perKey = counted.Count > 0 && counted.All(k => k.NullProbability is not null);
        int unanswered = counted.Count(k => !k.Hit && string.IsNullOrWhiteSpace(k.Answer));
        var result = rule.Evaluate(hits, counted.Count, perKey ? counted.Select(k => k.NullProbability!.Value).ToArray() : null, unanswered);
        int excluded = keys.Count - counted.Count;
        return From(rule, result, keys, perKey) with { ExcludedKeys = excluded > 0 ? excluded : null, UnansweredKeys = unanswered > 0 ? unanswered : null };
    }

    /// <summary>
    /// The report as a verifier states it under <paramref name="rule"/>: with the partial rule and no calibrated floor
    /// (<see cref="VerdictRule.CalibratedFloor"/>) an owned verdict is stated as inconclusive, its hits and p-value kept.
    /// Models near the base (its fine-tunes, siblings fingerprinted with other keys, their merges) produce a response's
    /// tail without its head far more often than the base's null and the default floor allow: measured, an even merge of
    /// such a sibling with a fine-tune, which never saw the keys, came out owned (p = 2.6e-7, docs/verification.md,
    /// "Calibration"). An honest host must not be claimed on that; a floor calibrated on near-base negatives covers it.
    /// </summary>
    public VerificationReport StatedUnder(VerdictRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        if (Match != ResponseMatch.Exact.Name && !rule.CalibratedFloor && Verdict == Verdict.Owned)
            return this with
            {
                Verdict = Verdict.Inconclusive,
                Reason = Reason + " Not stated as owned: the partial rule claims ownership only with a floor calibrated on models near the base (--calibration from 'oml verify --calibrate').",
            };
        return this;
    }

    /// <summary>Builds the report from an already evaluated verdict.</summary>
    public static VerificationReport From(VerdictRule rule, VerdictResult result, IReadOnlyList<KeyResult> keys, bool perKeyNull)
    {
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(result);
        return new VerificationReport(result.Verdict, result.Hits, result.Queried, result.PValue, result.Log10PValue,
            rule.Alpha, rule.ExpectedRecall, rule.Describe(perKeyNull), result.Reason, keys);
    }

    /// <summary>
    /// Below this share of keys hit, an "owned" verdict under the default (uncalibrated) null is a thin claim: a model
    /// that never saw the keys, served through suppression of its top first tokens, hit up to 1.3 % of Perinucleus keys on
    /// the CPU bases of docs/results.md ("The null under suppression"), and was judged owned at 8,192 keys.
    /// </summary>
    public const double ThinClaimHitRate = 0.05;

    /// <summary>
    /// A one-line caution when the verdict is owned on fewer than <see cref="ThinClaimHitRate"/> of the queried keys and
    /// the null's floor was not calibrated on negatives (<paramref name="calibratedFloor"/>); null otherwise. Real copies
    /// hit far more (recall after SFT and merges 0.6-0.99 in the lab), so a claim this thin is the one a host's decoding
    /// attack on an unrelated model could produce.
    /// </summary>
    public string? ThinClaimWarning(bool calibratedFloor)
    {
        if (Verdict != Verdict.Owned || calibratedFloor || Queried == 0) return null;
        double rate = (double)Hits / Queried;
        if (rate >= ThinClaimHitRate) return null;
        return string.Create(CultureInfo.InvariantCulture, $"owned on {Hits} of {Queried} keys ({100 * rate:F1} %), under an uncalibrated null: ")
            + "an unrelated model served through suppression of its top tokens hits about 1 % of Perinucleus keys, enough for this verdict at thousands of keys (docs/verification.md); calibrate the null on negatives "
            + "served the same way ('oml attack probe --calibrate ... --responder SPEC', then --calibration) before relying on it";
    }

    /// <summary>The report as indented JSON (snake_case names, verdict as "owned" / "not-owned" / "inconclusive").</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonContext.VerificationReport);

    /// <summary>Reads a report written by <see cref="ToJson"/>.</summary>
    public static VerificationReport FromJson(string json) =>
        JsonSerializer.Deserialize(json, JsonContext.VerificationReport)
        ?? throw new JsonException("The JSON holds null, not a verification report.");

    // Relaxed escaping keeps "α", "<" and ">" readable: reports are files and console output, never HTML.
    private static readonly VerificationJsonContext JsonContext = new(new JsonSerializerOptions
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>A plain-text rendering: a summary, then one aligned row per key (long cells are shortened).</summary>
    public string ToTable(int maxCellWidth = 40)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxCellWidth, 4);
        var sb = new StringBuilder();
        string verdict = Verdict switch { Verdict.Owned => "owned", Verdict.NotOwned => "not-owned", _ => "inconclusive" };
        sb.Append("verdict:  ").Append(verdict).Append('\n');
        sb.Append("hits:     ").Append(Hits.ToString(CultureInfo.InvariantCulture)).Append(" / ")
          .Append(Queried.ToString(CultureInfo.InvariantCulture)).Append('\n');
        sb.Append("p-value:  ").Append(VerdictRule.FormatLog10(Log10PValue)).Append(" (log10 ")
          .Append(double.IsNegativeInfinity(Log10PValue) ? "-inf" : Log10PValue.ToString("F2", CultureInfo.InvariantCulture)).Append(")\n");
        sb.Append("alpha:    ").Append(VerdictRule.Format(Alpha)).Append('\n');
        sb.Append("match:    ").Append(Match).Append(MinTokens is int m ? $" (at least {m.ToString(CultureInfo.InvariantCulture)} tokens of each response, after a deviation of at most n - m)" : "").Append('\n');
        sb.Append("rule:     ").Append(Rule).Append('\n');
        sb.Append("reason:   ").Append(Reason).Append('\n');
        if (ExcludedKeys is int x)
            sb.Append("excluded: ").Append(x.ToString(CultureInfo.InvariantCulture))
              .Append(" key(s) the base model's own answer hits under this rule (not counted)\n");
        if (UnansweredKeys is int u)
            sb.Append("unanswered: ").Append(u.ToString(CultureInfo.InvariantCulture))
              .Append(" key(s) got no answer at all (counted as misses, not as evidence against ownership)\n");
        if (Keys.Count == 0) return sb.ToString();

        string[] header = ["#", "hit", "key", "expected", "answer"];
        var rows = new List<string[]> { header };
        foreach (var k in Keys)
        {
            string hit = k.Samples is int r ? $"{(k.Hit ? "yes" : "no")} {k.SampleMatches}/{r}" : k.Hit ? "yes" : "no";
            rows.Add([k.Index.ToString(CultureInfo.InvariantCulture), hit, Cell(k.Key, maxCellWidth),
                Cell(string.Join(" | ", k.ExpectedResponses), maxCellWidth), Cell(k.Answer, maxCellWidth)]);
        }
        var widths = new int[header.Length];
        foreach (var row in rows)
            for (int c = 0; c < row.Length; c++) widths[c] = Math.Max(widths[c], row[c].Length);
        sb.Append('\n');
        for (int i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            var line = new StringBuilder();
            for (int c = 0; c < row.Length; c++)
            {
                if (c > 0) line.Append("  ");
                // Numbers right-aligned, text left-aligned.
                line.Append(c == 0 ? row[c].PadLeft(widths[c]) : row[c].PadRight(widths[c]));
            }
            sb.Append(line.ToString().TrimEnd()).Append('\n');
            if (i == 0) sb.Append(string.Join("  ", widths.Select(w => new string('-', w)))).Append('\n');
        }
        return sb.ToString();
    }

    private static string Cell(string text, int max)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char ch in text)
        {
            switch (ch)
            {
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default: sb.Append(char.IsControl(ch) ? ' ' : ch); break;
            }
        }
        string s = sb.ToString();
        if (s.Length <= max) return s;
        int cut = max - 3;
        if (char.IsHighSurrogate(s[cut - 1])) cut--;
        return s[..cut] + "...";
    }
}

/// <summary>Source-generated (trim-safe) JSON metadata for verification reports.</summary>
[JsonSerializable(typeof(VerificationReport))]
internal sealed partial class VerificationJsonContext : JsonSerializerContext;
