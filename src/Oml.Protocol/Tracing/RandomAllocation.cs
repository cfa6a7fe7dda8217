using System.Globalization;
using System.Numerics;
using Oml.Fingerprinting;

namespace Oml.Protocol.Tracing;

/// <summary>
/// The baseline allocation (the proposal of the OML 1.0 and Scalable Fingerprinting papers): every host's copy holds a
/// uniformly random subset of <see cref="PerHost"/> fingerprints out of the pool of <see cref="PoolSize"/>, drawn
/// independently per host.
/// </summary>
/// <remarks>
/// Host <c>j</c>'s subset is the first <see cref="PerHost"/> entries of a Fisher–Yates shuffle of <c>0 .. N-1</c> driven by
/// <c>DerivedRandom.For(secret, "oml/tracing/random/v1/n=N/k=K/host/j")</c> (HKDF-SHA256 then HMAC-SHA256 counter
/// mode), so the owner rebuilds any host's subset from the secret alone and the subsets of different hosts are
/// independent.
/// </remarks>
public sealed class RandomAllocation : IFingerprintAllocation
{
    private readonly byte[] _secret;

    public RandomAllocation(ReadOnlySpan<byte> secret, int poolSize, int perHost)
    {
        if (secret.Length < 16) throw new ArgumentException("the allocation secret must be at least 16 bytes", nameof(secret));
        if (poolSize < 1) throw new ArgumentException($"the pool size must be at least 1 (got {poolSize})", nameof(poolSize));
        if (perHost < 1 || perHost > poolSize) throw new ArgumentException($"each host's subset size must be in [1, {poolSize}] (got {perHost})", nameof(perHost));
        _secret = secret.ToArray();
        PoolSize = poolSize;
        PerHost = perHost;
    }

    /// <summary>The allocation with subsets of <c>round(fraction × poolSize)</c> fingerprints (at least 1).</summary>
    public static RandomAllocation WithFraction(ReadOnlySpan<byte> secret, int poolSize, double fraction)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentException($"the subset fraction must be in (0, 1] (got {fraction})", nameof(fraction));
        if (poolSize < 1) throw new ArgumentException($"the pool size must be at least 1 (got {poolSize})", nameof(poolSize));
        return new RandomAllocation(secret, poolSize, Math.Max(1, (int)Math.Round(fraction * poolSize)));
    }

    public string Scheme => "random";
    public int PoolSize { get; }
    public int PerHost { get; }

    public IReadOnlyList<int> IndicesFor(int hostOrdinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(hostOrdinal);
        var rng = DerivedRandom.For(_secret, string.Create(CultureInfo.InvariantCulture, $"oml/tracing/random/v1/n={PoolSize}/k={PerHost}/host/{hostOrdinal}"));
        var pool = new int[PoolSize];
        for (int i = 0; i < pool.Length; i++) pool[i] = i;
        for (int i = 0; i < PerHost; i++)   // partial Fisher–Yates: pool[0..i] is a uniform i+1-subset, in random order
        {
            int r = rng.Next(i, PoolSize);
            (pool[i], pool[r]) = (pool[r], pool[i]);
        }
        var chosen = pool[..PerHost];
        Array.Sort(chosen);
        return chosen;
    }
}

/// <summary>
/// The accuser for <see cref="RandomAllocation"/>: a host's score is the number of its fingerprints that answered in
/// the suspect copy (queried and present), and it is accused when that overlap reaches a threshold <c>T</c>.
/// </summary>
/// <remarks>
/// The bound is exact. Under the null hypothesis an innocent host's subset is a uniform <c>k</c>-subset of the
/// <c>N</c> pool indices independent of the suspect copy (it was drawn from its own HMAC stream, and the copy was
/// made without it), so given the set <c>Y</c> of fingerprints that were queried and answered, its overlap is
/// hypergeometric: <c>X ~ Hyp(N, |Y|, k)</c>. <c>T</c> is the smallest integer with <c>P(X ≥ T) ≤ ε1</c>, computed
/// exactly, so P(an innocent host is accused) ≤ ε1 whatever the coalition and the noise did.
/// </remarks>
public sealed class OverlapAccuser(RandomAllocation allocation, AccusationMode mode = AccusationMode.AllAboveThreshold) : IAccuser
{
    public const string BoundName = "exact hypergeometric tail";

    private readonly Lock _gate = new();
    private CodeMatrix? _code;

    public RandomAllocation Allocation { get; } = allocation ?? throw new ArgumentNullException(nameof(allocation));
    public AccusationMode Mode { get; } = mode;

    public IReadOnlyList<Accusation> Accuse(IReadOnlyList<bool?> observed, int hostCount, double innocentBound)
        => Trace(observed, hostCount, innocentBound).Accusations;

    public TraceResult Trace(IReadOnlyList<bool?> observed, int hostCount, double innocentBound)
    {
        Accusations.CheckArguments(observed, hostCount, innocentBound);
        var obs = Observation.From(observed, Allocation.PoolSize);
        var code = CodeFor(hostCount);
        var scores = new double[hostCount];
        Score(code, obs, scores);
        int t = Threshold(Allocation.PoolSize, Allocation.PerHost, obs.PresentCount, innocentBound);
        return new TraceResult(Accusations.Decide(scores, t, Mode), t, BoundName, innocentBound, double.NaN);
    }

    private CodeMatrix CodeFor(int hostCount)
    {
        lock (_gate)
        {
            if (_code is null || _code.Hosts < hostCount) _code = CodeMatrix.Build(Allocation, hostCount);
            return _code;
        }
    }

    /// <summary>Overlap of each host's row with the queried-and-present set (hosts 0 .. scores.Length-1).</summary>
    internal static void Score(CodeMatrix code, Observation obs, Span<double> scores)
    {
        var y = obs.Present;
        for (int j = 0; j < scores.Length; j++)
        {
            var row = code.Row(j);
            int n = 0;
            for (int w = 0; w < row.Length; w++) n += BitOperations.PopCount(row[w] & y[w]);
            scores[j] = n;
        }
    }

    /// <summary>
    /// The smallest <c>T</c> with <c>P(X ≥ T) ≤ innocentBound</c> for <c>X ~ Hyp(N = poolSize, K = present, n = perHost)</c>;
    /// <c>perHost + 1</c> (nobody can reach it) when even <c>P(X = max)</c> exceeds the bound.
    /// </summary>
    public static int Threshold(int poolSize, int perHost, int present, double innocentBound)
    {
        var tail = HypergeometricUpperTails(poolSize, present, perHost);
        for (int t = 0; t < tail.Length; t++)
            if (tail[t] <= innocentBound) return t;
        return tail.Length;
    }

    /// <summary>
    /// <c>P(X ≥ x)</c> for <c>x = 0 .. n</c> where <c>X ~ Hyp(N, K, n)</c> (draw n of N items without replacement, K of them marked).
    /// </summary>
    public static double[] HypergeometricUpperTails(int total, int marked, int draws)
    {
        if (total < 1 || marked < 0 || marked > total || draws < 0 || draws > total)
            throw new ArgumentException($"bad hypergeometric parameters N={total}, K={marked}, n={draws}");
        int lo = Math.Max(0, draws + marked - total), hi = Math.Min(draws, marked);
        // log pmf at lo from log-binomials, then the ratio pmf(x+1)/pmf(x) = (K-x)(n-x) / ((x+1)(N-K-n+x+1)).
        var logPmf = new double[hi - lo + 1];
        logPmf[0] = LogChoose(marked, lo) + LogChoose(total - marked, draws - lo) - LogChoose(total, draws);
        for (int x = lo; x < hi; x++)
            logPmf[x - lo + 1] = logPmf[x - lo] + Math.Log((double)(marked - x) * (draws - x)) - Math.Log((double)(x + 1) * (total - marked - draws + x + 1));
        var tail = new double[draws + 1];
        double acc = 0;
        for (int x = draws; x >= 0; x--)
        {
            if (x >= lo && x <= hi) acc += Math.Exp(logPmf[x - lo]);
            tail[x] = Math.Min(1.0, acc);
        }
        for (int x = 0; x <= lo && x <= draws; x++) tail[x] = 1.0;   // X ≥ lo always
        return tail;
    }

    private static double LogChoose(int n, int k)
    {
        if (k < 0 || k > n) return double.NegativeInfinity;
        k = Math.Min(k, n - k);
        double s = 0;
        for (int i = 1; i <= k; i++) s += Math.Log((double)(n - k + i) / i);
        return s;
    }
}
