using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Oml.Fingerprinting.Verification;

/// <summary>How often one negative model (one that never saw the keys) hit them.</summary>
/// <param name="Name">The model, e.g. its folder name.</param>
/// <param name="Kind">What kind of negative it is, e.g. "fine-tune of the base", "sibling", "other architecture".</param>
/// <param name="Hits">Keys it answered with the secret response.</param>
/// <param name="Queried">Keys it was asked.</param>
public sealed record NegativeResult(string Name, string Kind, int Hits, int Queried);

/// <summary>One negative's hit rate with its Clopper–Pearson interval.</summary>
public sealed record NegativeBound(string Name, string Kind, int Hits, int Queried, double Rate, double Lower, double Upper);

/// <summary>
/// A calibration of the verification null against strong negatives: each negative's false-positive (hit) rate with a
/// Clopper–Pearson interval, and the per-key floor taken from the worst negative's upper bound (never below
/// <see cref="MinimumFloor"/>), with the keys a claim then needs. A calibration holds for the match rule its hits were
/// counted under (<see cref="Match"/>, <see cref="MinTokens"/>, <see cref="ExcludesBaseHits"/>) and no other: partial hits
/// are more frequent than exact ones. Serialises to snake_case JSON; <c>oml verify --calibration FILE</c> applies its
/// <see cref="Floor"/> after <see cref="EnsureMadeFor"/>.
/// </summary>
public sealed record NullCalibration(
    double Confidence,
    double MinimumFloor,
    IReadOnlyList<NegativeBound> Negatives,
    string Worst,
    double WorstUpper,
    double Floor,
    double PooledRate,
    double Alpha,
    double ExpectedRecall,
    int KeysNeededAllHit,
    int? KeysNeededForPower,
    double Power)
{
    /// <summary>The match rule the negatives' hits were counted under: "exact" or "partial" (<see cref="ResponseMatch.Name"/>); null in files written before it was recorded.</summary>
    public string? Match { get; init; }

    /// <summary>The partial rule's m (<see cref="ResponseMatch.MinTokens"/>); null for the exact rule.</summary>
    public int? MinTokens { get; init; }

    /// <summary>
    /// Whether the keys the base model's own greedy answer hits were left out of every negative's count, as a verdict
    /// with the partial rule and a base model leaves them out (<see cref="LocalVerifier.ExcludedKeys"/>).
    /// </summary>
    public bool ExcludesBaseHits { get; init; }

    /// <summary>
    /// The deployment the negatives answered through, as a responder spec (<c>oml attack probe --calibrate --responder</c>:
    /// an attack such as suppression can make a negative hit more keys than its own greedy answers do); null: each
    /// negative's own greedy (or sampled) answers, as <c>oml verify --calibrate</c> measures them.
    /// </summary>
    public string? Responder { get; init; }

    /// <summary>The rule in words: "exact", "partial, m = 2, keys the base hits left out".</summary>
    public static string DescribeRule(string? match, int? minTokens, bool excludesBaseHits) => match switch
    {
        null => "not recorded",
        "exact" => "exact",
        "partial" => string.Create(CultureInfo.InvariantCulture, $"partial, m = {minTokens}") + (excludesBaseHits ? ", keys the base hits left out" : ", no base (no keys left out)"),
        _ => match,
    };

    /// <summary>
    /// Throws unless this calibration was made for <paramref name="match"/> with (or without) the base's greedy hits left
    /// out: a floor measured under one rule says nothing about another (partial hits are more frequent than exact ones).
    /// </summary>
    /// <exception cref="InvalidDataException">the calibration was made for another rule, or records none.</exception>
    public void EnsureMadeFor(ResponseMatch match, bool excludesBaseHits)
    {
        ArgumentNullException.ThrowIfNull(match);
        const string again = "calibrate again with the verdict's --match, --min-tokens and --base";
        if (Match is null)
            throw new InvalidDataException($"the calibration records no match rule (it was written before calibrations recorded theirs): {again}");
        bool same = Match == match.Name && MinTokens == match.MinTokens && (!match.IsPartial || ExcludesBaseHits == excludesBaseHits);
        if (!same)
            throw new InvalidDataException($"the calibration was made for the rule '{DescribeRule(Match, MinTokens, ExcludesBaseHits)}', "
                + $"not '{DescribeRule(match.Name, match.MinTokens, match.IsPartial && excludesBaseHits)}': {again}");
    }

    /// <summary>
    /// Calibrates from the hit counts of negative models: per negative the Clopper–Pearson interval at
    /// <paramref name="confidence"/>; the floor is max(<paramref name="minimumFloor"/>, the largest upper bound), i.e.
    /// the worst negative, not the pooled rate (which averages a dangerous negative away among harmless ones). The keys
    /// needed are computed at that floor: all hit, and for a model of recall <paramref name="expectedRecall"/> to be
    /// called owned with probability <paramref name="power"/> at false-positive rate <paramref name="alpha"/>.
    /// <paramref name="match"/> (exact by default) and <paramref name="excludesBaseHits"/> record the rule the hits were
    /// counted under (<see cref="LocalVerifier.CountHits"/>).
    /// </summary>
    public static NullCalibration Calibrate(IReadOnlyList<NegativeResult> negatives, double confidence = 0.95,
        double minimumFloor = VerdictRule.DefaultNullFloor, double alpha = VerdictRule.DefaultAlpha,
        double expectedRecall = VerdictRule.DefaultExpectedRecall, double power = 0.95, ResponseMatch? match = null, bool excludesBaseHits = false)
    {
        match ??= ResponseMatch.Exact;
        if (excludesBaseHits && !match.IsPartial) throw new ArgumentException("only the partial rule leaves out keys the base hits", nameof(excludesBaseHits));
        ArgumentNullException.ThrowIfNull(negatives);
        if (negatives.Count == 0) throw new ArgumentException("calibration needs at least one negative model", nameof(negatives));
        if (!(minimumFloor >= 0.0 && minimumFloor < 1.0)) throw new ArgumentOutOfRangeException(nameof(minimumFloor), minimumFloor, "The minimum floor must be in [0, 1).");
        var bounds = negatives.Select(n =>
        {
            if (n.Queried < 1) throw new ArgumentException($"negative {n.Name}: no keys were queried", nameof(negatives));
            var (lo, hi) = FingerprintStatistics.ClopperPearson(n.Hits, n.Queried, confidence);
            return new NegativeBound(n.Name, n.Kind, n.Hits, n.Queried, (double)n.Hits / n.Queried, lo, hi);
        }).ToList();
        var worst = bounds.MaxBy(b => b.Upper)!;
        double floor = Math.Max(minimumFloor, worst.Upper);
        if (floor >= 1.0) throw new ArgumentException($"negative {worst.Name} hits so often that no number of keys is evidence", nameof(negatives));
        double pooled = (double)bounds.Sum(b => b.Hits) / bounds.Sum(b => b.Queried);
        int? forPower = expectedRecall > floor ? FingerprintStatistics.KeysNeededForPower(alpha, floor, expectedRecall, power) : null;
        return new NullCalibration(confidence, minimumFloor, bounds, worst.Name, worst.Upper, floor, pooled, alpha, expectedRecall,
            FingerprintStatistics.KeysNeeded(alpha, floor), forPower, power)
        { Match = match.Name, MinTokens = match.MinTokens, ExcludesBaseHits = excludesBaseHits };
    }

    /// <summary><paramref name="rule"/> with this calibration's floor (never lowering a higher floor it already has).</summary>
    public VerdictRule Apply(VerdictRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        return rule with { NullFloor = Math.Max(rule.NullFloor, Floor), CalibratedFloor = true };
    }

    /// <summary>Indented snake_case JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonContext.NullCalibration);

    /// <summary>Reads a calibration written by <see cref="ToJson"/>, checking that its floor is a probability and its match rule one this verifier knows.</summary>
    public static NullCalibration FromJson(string json)
    {
        var c = JsonSerializer.Deserialize(json, JsonContext.NullCalibration) ?? throw new JsonException("The JSON holds null, not a null calibration.");
        if (!(c.Floor >= 0.0 && c.Floor < 1.0)) throw new JsonException($"calibration floor {c.Floor} is not in [0, 1)");
        if (c.Match is not (null or "exact" or "partial")) throw new JsonException($"unknown match rule '{c.Match}'");
        if ((c.Match == "partial") != (c.MinTokens is not null) || c.MinTokens < 1) throw new JsonException("min_tokens must be given, and at least 1, exactly for the partial rule");
        if (c.ExcludesBaseHits && c.Match != "partial") throw new JsonException("only the partial rule leaves out keys the base hits");
        if (c.Negatives is null || c.Negatives.Count == 0) throw new JsonException("the calibration lists no negatives");
        return c;
    }

    /// <summary>A plain-text table: one row per negative, then the worst bound, the floor and the keys needed.</summary>
    public string ToTable()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        int nameW = Math.Max(8, Negatives.Max(n => n.Name.Length)), kindW = Math.Max(4, Negatives.Max(n => n.Kind.Length));
        sb.Append(inv, $"{"negative".PadRight(nameW)}  {"kind".PadRight(kindW)}  {"hits",9}  {"rate",8}  {$"{Confidence:P0} CP interval",-23}\n");
        foreach (var n in Negatives)
            sb.Append(inv, $"{n.Name.PadRight(nameW)}  {n.Kind.PadRight(kindW)}  {$"{n.Hits}/{n.Queried}",9}  {n.Rate,8:0.0000}  [{n.Lower:0.00000}, {n.Upper:0.00000}]\n");
        sb.Append(inv, $"\nmatch rule:      {DescribeRule(Match, MinTokens, ExcludesBaseHits)}\n");
        if (Responder is not null) sb.Append(inv, $"served through:  {Responder}\n");
        sb.Append(inv, $"worst negative:  {Worst} (upper bound {WorstUpper:0.00000}); pooled rate {PooledRate:0.00000} (not used)\n");
        sb.Append(inv, $"per-key floor:   {Floor:0.00000} = max({MinimumFloor:G3}, worst upper bound)\n");
        sb.Append(inv, $"keys needed:     {KeysNeededAllHit} all hit for α = {Alpha:G3}");
        sb.Append(KeysNeededForPower is int k
            ? string.Create(inv, $"; {k} for a model of recall {ExpectedRecall:G3} to be called owned with probability {Power:G3}\n")
            : string.Create(inv, $"; no number of keys reaches power {Power:G3} at recall {ExpectedRecall:G3}\n"));
        return sb.ToString();
    }

    private static readonly NullCalibrationJsonContext JsonContext = new(new JsonSerializerOptions
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}

/// <summary>Source-generated JSON metadata for <see cref="NullCalibration"/>.</summary>
[JsonSerializable(typeof(NullCalibration))]
internal sealed partial class NullCalibrationJsonContext : JsonSerializerContext;
