using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using Oml.Fingerprinting;

namespace Oml.Protocol.Tracing;

/// <summary>
/// A binary Tardos code (Tardos 2003) over the fingerprint pool: position <c>i</c> has a bias <c>p_i</c> drawn from the
/// arcsine density <c>f(p) ∝ 1/√(p(1-p))</c> cut off to <c>[t, 1-t]</c>, and host <c>j</c>'s copy holds pool
/// fingerprint <c>i</c> with probability <c>p_i</c>, independently over hosts and positions.
/// </summary>
/// <remarks>
/// Derivation from the secret: <c>p_i = sin²(r_i)</c>, <c>r_i = t' + (π/2 − 2t')·u_i</c>, <c>t' = arcsin √t</c>, with
/// <c>u_i</c> the 53-bit uniforms of <c>DerivedRandom.For(secret, "oml/tracing/tardos/v1/n=N/t=T/biases")</c> (this
/// maps a uniform angle to exactly the cut-off arcsine density). Host <c>j</c>'s bit <c>i</c> is
/// <c>v_ji &lt; round(p_i·2³²)</c> with <c>v_ji</c> the i-th little-endian 32-bit word of the stream
/// <c>".../host/j"</c>. Tardos' cutoff for coalitions of up to <c>c</c> is <c>t = 1/(300c)</c> (<see cref="DefaultCutoff"/>).
/// </remarks>
public sealed class TardosAllocation : IFingerprintAllocation, IPackedAllocation
{
    private readonly byte[] _secret;
    private readonly double[] _biases;
    private readonly ulong[] _bitThresholds;   // bit is set when the 32-bit uniform is below this
    private readonly string _label;

    public TardosAllocation(ReadOnlySpan<byte> secret, int poolSize, double cutoff)
    {
        if (secret.Length < 16) throw new ArgumentException("the allocation secret must be at least 16 bytes", nameof(secret));
        if (poolSize < 1) throw new ArgumentException($"the code length (pool size) must be at least 1 (got {poolSize})", nameof(poolSize));
        if (!(cutoff > 0 && cutoff < 0.5)) throw new ArgumentException($"the Tardos cutoff t must be in (0, 1/2) (got {cutoff})", nameof(cutoff));
        _secret = secret.ToArray();
        PoolSize = poolSize;
        Cutoff = cutoff;
        _label = string.Create(CultureInfo.InvariantCulture, $"oml/tracing/tardos/v1/n={poolSize}/t={cutoff:R}");
        var rng = DerivedRandom.For(_secret, _label + "/biases");
        double t0 = Math.Asin(Math.Sqrt(cutoff)), span = Math.PI / 2 - 2 * t0;
        _biases = new double[poolSize];
        _bitThresholds = new ulong[poolSize];
        for (int i = 0; i < poolSize; i++)
        {
            double s = Math.Sin(t0 + span * rng.NextDouble());
            double p = Math.Clamp(s * s, cutoff, 1 - cutoff);   // clamp only guards rounding at the ends
            _biases[i] = p;
            _bitThresholds[i] = (ulong)Math.Round(p * 4294967296.0);
        }
    }

    /// <summary>Tardos' cutoff for coalitions of at most <paramref name="maxCoalition"/> hosts: <c>1/(300c)</c>.</summary>
    public static double DefaultCutoff(int maxCoalition)
    {
        if (maxCoalition < 1) throw new ArgumentException($"the coalition size must be at least 1 (got {maxCoalition})", nameof(maxCoalition));
        return 1.0 / (300.0 * maxCoalition);
    }

    public string Scheme => "tardos";
    public int PoolSize { get; }
    public double Cutoff { get; }
    /// <summary>The per-position biases <c>p_i</c> (all in <c>[t, 1-t]</c>).</summary>
    public IReadOnlyList<double> Biases => _biases;
    public ReadOnlySpan<double> BiasSpan => _biases;

    public IReadOnlyList<int> IndicesFor(int hostOrdinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(hostOrdinal);
        var row = new ulong[CodeMatrix.WordsFor(PoolSize)];
        FillRow(hostOrdinal, row);
        var list = new List<int>();
        for (int w = 0; w < row.Length; w++)
            for (ulong bits = row[w]; bits != 0; bits &= bits - 1)
                list.Add(w * 64 + BitOperations.TrailingZeroCount(bits));
        return list;
    }

    /// <summary>Host <paramref name="hostOrdinal"/>'s codeword: entry i is true when its copy holds fingerprint i.</summary>
    public bool[] CodewordFor(int hostOrdinal)
    {
        var word = new bool[PoolSize];
        foreach (int i in IndicesFor(hostOrdinal)) word[i] = true;
        return word;
    }

    public void FillRow(int host, Span<ulong> row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(host);
        var rng = DerivedRandom.For(_secret, string.Create(CultureInfo.InvariantCulture, $"{_label}/host/{host}"));
        Span<byte> buf = stackalloc byte[1024];
        for (int start = 0; start < PoolSize; start += 256)
        {
            int n = Math.Min(256, PoolSize - start);
            rng.NextBytes(buf[..(4 * n)]);
            for (int k = 0; k < n; k++)
            {
                int i = start + k;
                if (BinaryPrimitives.ReadUInt32LittleEndian(buf.Slice(4 * k, 4)) < _bitThresholds[i]) row[i >> 6] |= 1UL << (i & 63);
            }
        }
    }
}

/// <summary>Which proven inequality sets the Tardos accusation threshold.</summary>
public enum TardosBound
{
    /// <summary>Chernoff's bound with the exact moment-generating function of each position's innocent score term (the tightest; the default).</summary>
    Chernoff,
    /// <summary>Bernstein's inequality from the per-term variance (1) and upper bound (max √((1-p)/p) over the terms).</summary>
    Bernstein,
}

/// <summary>Which Tardos score <see cref="TardosAccuser"/> accuses with.</summary>
public enum TardosScore
{
    /// <summary>
    /// Škorić, Katzenbeisser and Celik's symmetric score over every queried position: also the positions where the copy
    /// did not answer count, against the hosts that hold them. The strongest when fingerprints are not lost.
    /// </summary>
    Symmetric,
    /// <summary>
    /// Tardos' original score: only the positions where the copy answered count (a host holding one gains, a host not
    /// holding it loses), so a fingerprint the copy lost costs its holders nothing, and an unanswered key a host does not
    /// hold earns it nothing either. Alone it is weaker (it ignores half the evidence); with erased keys it gains for
    /// coalitions that answer by majority or unanimity (docs/protocol.md, "Scores against erased keys"), not for a
    /// single copy, whose two scores move alike.
    /// </summary>
    Asymmetric,
    /// <summary>
    /// Both, each held to half the bound (so a host is accused with probability at most ε1 when innocent, by the union
    /// bound): a host's score is the larger of its two scores each divided by its threshold, and the threshold is 1.
    /// </summary>
    Combined,
}

/// <summary>
/// The symmetric Tardos accuser (Škorić, Katzenbeisser and Celik 2008): host <c>j</c>'s score is
/// <c>S_j = Σ_i U(x_ji, y_i, p_i)</c> over the queried positions, with <c>U = +√((1-p)/p)</c> if x = y = 1,
/// <c>−√(p/(1-p))</c> if x = 0, y = 1, <c>+√(p/(1-p))</c> if x = y = 0 and <c>−√((1-p)/p)</c> if x = 1, y = 0.
/// </summary>
/// <remarks>
/// Why the threshold is sound: for an innocent host, given the biases and the suspect copy, the bits <c>x_ji</c> are
/// still independent Bernoulli(p_i) (the copy was built from other hosts' bits and noise), so <c>S_j</c> is a sum of
/// independent terms, each two-valued with mean 0 and variance 1, each at most <c>√((1-t)/t)</c>. The marking
/// assumption is not needed for this: noise (lost or spurious fingerprints) only lowers the colluders' scores.
/// <see cref="TardosThresholds"/> turns a per-host bound ε1 into a threshold Z with P(S_j ≥ Z) ≤ ε1.
/// </remarks>
public sealed class TardosAccuser(TardosAllocation allocation, TardosBound bound = TardosBound.Chernoff,
    AccusationMode mode = AccusationMode.AllAboveThreshold, TardosScore score = TardosAccuser.DefaultScore) : IAccuser
{
    private readonly Lock _gate = new();
    private CodeMatrix? _code;

    public TardosAllocation Allocation { get; } = allocation ?? throw new ArgumentNullException(nameof(allocation));
    public TardosBound Bound { get; } = bound;
    public AccusationMode Mode { get; } = mode;
    public TardosScore ScoreKind { get; } = score;

    /// <summary>The score <c>oml prover trace</c> and <c>oml trace simulate</c> use unless told otherwise.</summary>
    public const TardosScore DefaultScore = TardosScore.Symmetric;

    public IReadOnlyList<Accusation> Accuse(IReadOnlyList<bool?> observed, int hostCount, double innocentBound)
        => Trace(observed, hostCount, innocentBound).Accusations;

    public TraceResult Trace(IReadOnlyList<bool?> observed, int hostCount, double innocentBound)
    {
        Accusations.CheckArguments(observed, hostCount, innocentBound);
        var obs = Observation.From(observed, Allocation.PoolSize);
        var code = CodeFor(hostCount);
        var scores = new double[hostCount];
        var scratch = new ScoreScratch(hostCount, Allocation.PoolSize);
        var (z, zGauss) = ScoreAndThreshold(ScoreKind, Bound, code, Allocation.BiasSpan, obs, innocentBound, scores, scratch);
        return new TraceResult(Accusations.Decide(scores, z, Mode), z, TardosThresholds.Name(Bound) + ScoreSuffix(ScoreKind), innocentBound, zGauss);
    }

    private static string ScoreSuffix(TardosScore score) => score switch
    {
        TardosScore.Symmetric => "",
        TardosScore.Asymmetric => ", asymmetric score",
        TardosScore.Combined => ", symmetric and asymmetric scores at half the bound each (scores divided by their thresholds)",
        _ => throw new ArgumentOutOfRangeException(nameof(score)),
    };

    /// <summary>The score's name as the CLI takes it.</summary>
    public static string ScoreName(TardosScore score) => score switch
    {
        TardosScore.Symmetric => "symmetric",
        TardosScore.Asymmetric => "asymmetric",
        TardosScore.Combined => "combined",
        _ => throw new ArgumentOutOfRangeException(nameof(score)),
    };

    public static TardosScore ParseScore(string name) => name switch
    {
        "symmetric" => TardosScore.Symmetric,
        "asymmetric" => TardosScore.Asymmetric,
        "combined" => TardosScore.Combined,
        _ => throw new ArgumentException($"unknown Tardos score '{name}' (symmetric, asymmetric, combined)"),
    };

    /// <summary>Buffers for <see cref="ScoreAndThreshold"/>, reusable across calls of one size.</summary>
    public sealed class ScoreScratch(int hosts, int positions)
    {
        internal readonly double[] Table = new double[TableSize(positions)];
        internal readonly double[] Other = new double[hosts];
        internal readonly Observation Answered = new(positions);
    }

    /// <summary>
    /// Writes the hosts' scores of the chosen kind into <paramref name="scores"/> and returns the proven threshold (a
    /// host at or above it is accused with probability at most <paramref name="eps1"/> when innocent) and the normal
    /// approximation's threshold (for information).
    /// </summary>
    public static (double Threshold, double Gaussian) ScoreAndThreshold(TardosScore kind, TardosBound bound, CodeMatrix code,
        ReadOnlySpan<double> biases, Observation obs, double eps1, Span<double> scores, ScoreScratch scratch)
    {
        ArgumentNullException.ThrowIfNull(scratch);
        switch (kind)
        {
            case TardosScore.Symmetric:
                Score(code, biases, obs, scores, scratch.Table);
                return (TardosThresholds.For(bound, biases, obs, eps1), TardosThresholds.Gaussian(obs.QueriedCount, eps1));
            case TardosScore.Asymmetric:
                // The symmetric score over the answered positions alone is Tardos' original score. Which positions were
                // answered depends on the copy only, and an innocent host's bits are independent of the copy, so the
                // threshold over those positions is as sound as over all.
                obs.AnsweredOnly(scratch.Answered);
                Score(code, biases, scratch.Answered, scores, scratch.Table);
                return (TardosThresholds.For(bound, biases, scratch.Answered, eps1), TardosThresholds.Gaussian(scratch.Answered.QueriedCount, eps1));
            case TardosScore.Combined:
            {
                double half = eps1 / 2;
                Score(code, biases, obs, scores, scratch.Table);
                double z1 = TardosThresholds.For(bound, biases, obs, half);
                obs.AnsweredOnly(scratch.Answered);
                var other = scratch.Other.AsSpan(0, scores.Length);
                Score(code, biases, scratch.Answered, other, scratch.Table);
                double z2 = TardosThresholds.For(bound, biases, scratch.Answered, half);
                // Normalised so that the threshold is 1. No single normal-approximation threshold matches two scores
                // on this scale, so none is given (NaN).
                for (int j = 0; j < scores.Length; j++) scores[j] = Math.Max(Ratio(scores[j], z1), Ratio(other[j], z2));
                return (1.0, double.NaN);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    // A threshold that cannot be reached (no positions, or too few for the bound) accuses no one through that score:
    // its ratio is 0, below the threshold of 1. (A proven threshold is positive: the terms have mean 0.)
    private static double Ratio(double score, double threshold)
        => double.IsFinite(threshold) && threshold > 0 ? score / threshold : 0;

    private CodeMatrix CodeFor(int hostCount)
    {
        lock (_gate)
        {
            if (_code is null || _code.Hosts < hostCount) _code = CodeMatrix.Build(Allocation, hostCount);
            return _code;
        }
    }

    public static int TableSize(int positions) => (positions + 7) / 8 * 256;

    /// <summary>
    /// Symmetric Tardos scores of hosts <c>0 .. scores.Length-1</c>. Writing each term as <c>B_i + x·(A_i − B_i)</c>,
    /// a score is <c>Σ B_i</c> plus a sum over the host's set bits; the bits are summed a byte (8 positions) at a time
    /// through per-byte tables of all 256 partial sums, built once per observation.
    /// </summary>
    public static void Score(CodeMatrix code, ReadOnlySpan<double> biases, Observation obs, Span<double> scores, double[] table)
    {
        ArgumentNullException.ThrowIfNull(code);
        ArgumentNullException.ThrowIfNull(obs);
        ArgumentNullException.ThrowIfNull(table);
        if (biases.Length != code.Positions || obs.Positions != code.Positions)
            throw new ArgumentException($"the code has {code.Positions} positions, the biases {biases.Length} and the observation {obs.Positions}");
        if (scores.Length > code.Hosts) throw new ArgumentException($"{scores.Length} scores asked of a code of {code.Hosts} hosts", nameof(scores));
        if (table.Length < TableSize(code.Positions)) throw new ArgumentException($"the table needs {TableSize(code.Positions)} entries", nameof(table));
        int m = biases.Length, groups = (m + 7) / 8;
        double baseScore = 0;
        Span<double> d = stackalloc double[8];
        for (int g = 0; g < groups; g++)
        {
            d.Clear();
            for (int k = 0; k < 8; k++)
            {
                int i = 8 * g + k;
                if (i >= m || !obs.IsQueried(i)) continue;
                double p = biases[i], up = Math.Sqrt((1 - p) / p), down = Math.Sqrt(p / (1 - p));
                // y = 1: x=1 → +up, x=0 → −down.   y = 0: x=1 → −up, x=0 → +down.
                double a = obs.IsPresent(i) ? up : -up, b = obs.IsPresent(i) ? -down : down;
                baseScore += b;
                d[k] = a - b;
            }
            int at = g * 256;
            table[at] = 0;
            for (int v = 1; v < 256; v++)
                table[at + v] = table[at + (v & (v - 1))] + d[BitOperations.TrailingZeroCount(v)];
        }
        for (int j = 0; j < scores.Length; j++)
        {
            var bytes = code.RowBytes(j);
            double s = baseScore;
            for (int g = 0, at = 0; g < groups; g++, at += 256) s += table[at + bytes[g]];
            scores[j] = s;
        }
    }
}

/// <summary>
/// Thresholds Z with P(innocent score ≥ Z) ≤ ε1 for the symmetric Tardos score over the queried positions.
/// </summary>
public static class TardosThresholds
{
    public static string Name(TardosBound bound) => bound switch
    {
        TardosBound.Chernoff => "Chernoff (exact per-position MGF)",
        TardosBound.Bernstein => "Bernstein",
        _ => throw new ArgumentOutOfRangeException(nameof(bound)),
    };

    public static double For(TardosBound bound, ReadOnlySpan<double> biases, Observation obs, double innocentBound) => bound switch
    {
        TardosBound.Chernoff => Chernoff(biases, obs, innocentBound),
        TardosBound.Bernstein => Bernstein(obs.QueriedCount, MaxTerm(biases, obs), innocentBound),
        _ => throw new ArgumentOutOfRangeException(nameof(bound)),
    };

    /// <summary>The largest value an innocent term can take over the queried positions: √((1-q)/q) with q = p if y = 1, else 1-p.</summary>
    public static double MaxTerm(ReadOnlySpan<double> biases, Observation obs)
    {
        double max = 0;
        for (int i = 0; i < biases.Length; i++)
        {
            if (!obs.IsQueried(i)) continue;
            double q = obs.IsPresent(i) ? biases[i] : 1 - biases[i];
            max = Math.Max(max, Math.Sqrt((1 - q) / q));
        }
        return max;
    }

    /// <summary>
    /// Bernstein's inequality for m independent zero-mean terms of variance 1 bounded above by M:
    /// <c>P(S ≥ Z) ≤ exp(−Z² / (2(m + MZ/3)))</c>. Setting the right side to ε1 with L = ln(1/ε1) gives
    /// <c>Z = LM/3 + √((LM/3)² + 2mL)</c>.
    /// </summary>
    public static double Bernstein(int queried, double maxTerm, double innocentBound)
    {
        CheckBound(innocentBound);
        if (queried < 0) throw new ArgumentException("the number of queried positions cannot be negative", nameof(queried));
        double l = -Math.Log(innocentBound), c = l * maxTerm / 3;
        return c + Math.Sqrt(c * c + 2 * queried * l);
    }

    /// <summary>
    /// Chernoff's bound with the exact cumulant generating function: given the biases and the copy, innocent term i is
    /// <c>a_i = √((1-q)/q)</c> with probability q and <c>b_i = −√(q/(1-q))</c> otherwise (q = p_i if y_i = 1, else
    /// 1 − p_i), so with <c>K(α) = Σ ln(q e^{α a} + (1-q) e^{α b})</c>, <c>P(S ≥ Z) ≤ exp(K(α) − αZ)</c> for every α &gt; 0.
    /// Taking <c>Z = K'(α)</c> makes the exponent <c>−h(α)</c>, <c>h(α) = αK'(α) − K(α)</c>, which increases from 0; we
    /// solve <c>h(α) = ln(1/ε1)</c> (safeguarded Newton) and return <c>K'(α)</c>, the smallest Z this family proves.
    /// Infinite when even the all-maximal outcome (probability <c>Π q_i</c>) is likelier than ε1.
    /// </summary>
    public static double Chernoff(ReadOnlySpan<double> biases, Observation obs, double innocentBound)
    {
        CheckBound(innocentBound);
        int m = obs.QueriedCount;
        if (m == 0) return double.PositiveInfinity;
        var q = new double[m];
        for (int i = 0, k = 0; i < biases.Length; i++)
            if (obs.IsQueried(i)) q[k++] = obs.IsPresent(i) ? biases[i] : 1 - biases[i];
        double target = -Math.Log(innocentBound), hInf = 0;
        foreach (var qi in q) hInf -= Math.Log(qi);
        if (target >= hInf) return double.PositiveInfinity;

        double lo = 0, hi = double.PositiveInfinity, alpha = Math.Sqrt(2 * target / m);
        for (int iter = 0; iter < 200; iter++)
        {
            var (h, _, curvature) = Evaluate(q, alpha);
            if (h >= target) hi = alpha;
            else lo = alpha;
            if (Math.Abs(h - target) <= 1e-11 * target) break;
            if (!double.IsPositiveInfinity(hi) && hi - lo <= 1e-14 * hi) break;
            double next = alpha + (target - h) / Math.Max(alpha * curvature, 1e-300);   // Newton: h'(α) = α K''(α)
            if (!(next > lo && next < hi)) next = double.IsPositiveInfinity(hi) ? 2 * alpha : (lo + hi) / 2;
            alpha = next;
        }
        // Return K'(α) at an α with h(α) ≥ ln(1/ε1) (so the bound holds), nudging up from a root approached from below.
        for (int k = 0; k < 64; k++, alpha *= 1 + 1e-9)
        {
            var (h, slope, _) = Evaluate(q, alpha);
            if (h >= target) return slope;
        }
        if (double.IsPositiveInfinity(hi)) return double.PositiveInfinity;
        return Evaluate(q, hi).Slope;
    }

    /// <summary>h(α) = αK' − K, K'(α) and K''(α) for the two-point terms (stable: only e^{−α(a−b)} is formed).</summary>
    private static (double H, double Slope, double Curvature) Evaluate(double[] q, double alpha)
    {
        double k = 0, k1 = 0, k2 = 0;
        foreach (var qi in q)
        {
            double a = Math.Sqrt((1 - qi) / qi), d = 1 / Math.Sqrt(qi * (1 - qi));   // d = a − b
            double e = (1 - qi) * Math.Exp(-alpha * d), z = qi + e;
            double w = qi / z;                                     // tilted probability of a
            k += alpha * a + Math.Log(z);
            k1 += a - (1 - w) * d;
            k2 += w * (1 - w) * d * d;
        }
        return (alpha * k1 - k, k1, k2);
    }

    /// <summary>For information only: the normal approximation <c>Z = √m · Φ⁻¹(1 − ε1)</c> (not a proven bound).</summary>
    public static double Gaussian(int queried, double innocentBound)
    {
        CheckBound(innocentBound);
        return Math.Sqrt(queried) * NormalQuantile(1 - innocentBound);
    }

    /// <summary>
    /// Φ⁻¹(u) by P. J. Acklam's rational approximation (relative error below 1.2e-9), evaluated on the smaller tail
    /// so that u close to 1 keeps its precision.
    /// </summary>
    public static double NormalQuantile(double u)
    {
        if (!(u > 0 && u < 1)) throw new ArgumentOutOfRangeException(nameof(u), "the probability must be in (0, 1)");
        if (u > 0.5) return -LowerQuantile(1 - u);
        return LowerQuantile(u);

        static double LowerQuantile(double p)   // p ≤ 0.5
        {
            const double pLow = 0.02425;
            if (p < pLow)
            {
                double r = Math.Sqrt(-2 * Math.Log(p));
                return (((((-7.784894002430293e-03 * r - 3.223964580411365e-01) * r - 2.400758277161838e+00) * r
                    - 2.549732539343734e+00) * r + 4.374664141464968e+00) * r + 2.938163982698783e+00)
                    / ((((7.784695709041462e-03 * r + 3.224671290700398e-01) * r + 2.445134137142996e+00) * r
                    + 3.754408661907416e+00) * r + 1);
            }
            double s = p - 0.5, t = s * s;
            return (((((-3.969683028665376e+01 * t + 2.209460984245205e+02) * t - 2.759285104469687e+02) * t
                + 1.383577518672690e+02) * t - 3.066479806614716e+01) * t + 2.506628277459239e+00) * s
                / (((((-5.447609879822406e+01 * t + 1.615858368580409e+02) * t - 1.556989798598866e+02) * t
                + 6.680131188771972e+01) * t - 1.328068155288572e+01) * t + 1);
        }
    }

    private static void CheckBound(double innocentBound)
    {
        if (!(innocentBound > 0 && innocentBound < 1)) throw new ArgumentException($"the innocent bound must be in (0, 1) (got {innocentBound})", nameof(innocentBound));
    }
}
