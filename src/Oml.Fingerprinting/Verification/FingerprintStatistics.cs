namespace Oml.Fingerprinting.Verification;

/// <summary>
/// Tail probabilities for the number of fingerprint hits under a null hypothesis. Everything is computed in natural-log
/// space so that p-values far below the smallest double (1e-308) are still returned accurately as logarithms.
/// </summary>
public static class FingerprintStatistics
{
    private static readonly double Ln10 = Math.Log(10.0);

    /// <summary>ln P(X ≥ h) for X = Σ Bernoulli(p_i), independent (Poisson-binomial upper tail).</summary>
    /// <remarks>
    /// O(M·min(h, M)) dynamic program over the count of hits so far, with counts ≥ h merged into one absorbing state.
    /// Only sums of non-negative terms are ever formed (log-sum-exp), so the result keeps full relative precision
    /// however small it is; there is no "1 − CDF" cancellation.
    /// </remarks>
    public static double LogPoissonBinomialUpperTail(IReadOnlyList<double> probabilities, int h)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        ValidateProbabilities(probabilities);
        return LogUpperTail(probabilities, h, complement: false);
    }

    /// <summary>ln P(X ≤ h) for X = Σ Bernoulli(p_i), independent (Poisson-binomial lower tail).</summary>
    public static double LogPoissonBinomialLowerTail(IReadOnlyList<double> probabilities, int h)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        ValidateProbabilities(probabilities);
        // X ≤ h  ⇔  (M − X) ≥ M − h, and M − X is Poisson-binomial with probabilities 1 − p_i.
        return LogUpperTail(probabilities, probabilities.Count - h, complement: true);
    }

    /// <summary>P(X ≥ h) for the Poisson-binomial distribution (may underflow to 0; use the Log variant).</summary>
    public static double PoissonBinomialUpperTail(IReadOnlyList<double> probabilities, int h) =>
        Math.Exp(LogPoissonBinomialUpperTail(probabilities, h));

    /// <summary>ln P(X ≥ h) for X ~ Binomial(n, p), summed exactly from log-gamma binomial coefficients.</summary>
    public static double LogBinomialUpperTail(int n, double p, int h)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ValidateProbability(p, nameof(p));
        if (h <= 0) return 0.0;
        if (h > n) return double.NegativeInfinity;
        if (p == 0.0) return double.NegativeInfinity;
        if (p == 1.0) return 0.0;
        double lp = Math.Log(p), lq = Log1p(-p);
        // Σ_{j=h..n} C(n,j) p^j q^(n−j), accumulated as log-sum-exp over the terms.
        var terms = new double[n - h + 1];
        double max = double.NegativeInfinity;
        for (int j = h; j <= n; j++)
        {
            double t = LogBinomialCoefficient(n, j) + j * lp + (n - j) * lq;
            terms[j - h] = t;
            if (t > max) max = t;
        }
        double sum = 0.0;
        foreach (double t in terms) sum += Math.Exp(t - max);
        return Math.Min(0.0, max + Math.Log(sum));
    }

    /// <summary>ln P(X ≤ h) for X ~ Binomial(n, p).</summary>
    public static double LogBinomialLowerTail(int n, double p, int h)
    {
        ValidateProbability(p, nameof(p));
        // X ≤ h ⇔ n − X ≥ n − h with n − X ~ Binomial(n, 1 − p).
        return LogBinomialUpperTail(n, 1.0 - p, n - h);
    }

    /// <summary>P(X ≥ h) for X ~ Binomial(n, p) (may underflow to 0; use the Log variant).</summary>
    public static double BinomialUpperTail(int n, double p, int h) => Math.Exp(LogBinomialUpperTail(n, p, h));

    /// <summary>
    /// The smallest number of queried keys that, all hit, gives a p-value ≤ α when each is hit by chance with
    /// probability p: the least n with pⁿ ≤ α. Requires 0 &lt; α &lt; 1 and 0 ≤ p &lt; 1.
    /// </summary>
    public static int KeysNeeded(double alpha, double p)
    {
        if (!(alpha > 0.0 && alpha < 1.0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in (0, 1).");
        if (!(p >= 0.0 && p < 1.0)) throw new ArgumentOutOfRangeException(nameof(p), p, "p must be in [0, 1): with p = 1 no number of hits is evidence.");
        if (p == 0.0) return 1;
        double la = Math.Log(alpha), lp = Math.Log(p);
        double estimate = Math.Ceiling(la / lp);
        if (estimate > int.MaxValue - 2) throw new OverflowException($"More than {int.MaxValue} keys would be needed.");
        int n = Math.Max(1, (int)estimate);
        while (n * lp > la) n++;
        while (n > 1 && (n - 1) * lp <= la) n--;
        return n;
    }

    /// <summary>
    /// The smallest n such that the first n keys of <paramref name="probabilities"/>, all hit, give a p-value ≤ α
    /// (Π_{i&lt;n} p_i ≤ α), or null when even all of them do not.
    /// </summary>
    public static int? KeysNeeded(double alpha, IReadOnlyList<double> probabilities)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        if (!(alpha > 0.0 && alpha < 1.0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in (0, 1).");
        ValidateProbabilities(probabilities);
        double la = Math.Log(alpha), sum = 0.0;
        for (int i = 0; i < probabilities.Count; i++)
        {
            sum += Math.Log(probabilities[i]);
            if (sum <= la) return i + 1;
        }
        return null;
    }

    /// <summary>
    /// The Clopper–Pearson ("exact") two-sided confidence interval for a binomial proportion after
    /// <paramref name="successes"/> of <paramref name="trials"/>: the lower bound solves P(Bin(n, p) ≥ x) = (1 − c)/2
    /// (0 when x = 0), the upper bound P(Bin(n, p) ≤ x) = (1 − c)/2 (1 when x = n). Found by bisection on the exact
    /// log tails (to about 1e-15 absolute), so no Beta quantile function is needed.
    /// </summary>
    public static (double Lower, double Upper) ClopperPearson(int successes, int trials, double confidence = 0.95)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(trials, 1);
        if (successes < 0 || successes > trials) throw new ArgumentOutOfRangeException(nameof(successes), successes, $"Successes must be in [0, {trials}].");
        if (!(confidence > 0.0 && confidence < 1.0)) throw new ArgumentOutOfRangeException(nameof(confidence), confidence, "The confidence must be in (0, 1).");
        double logTail = Math.Log((1.0 - confidence) / 2.0);
        double lower = successes == 0 ? 0.0
            // P(Bin(n, p) ≥ x) grows with p: the smallest p where it reaches the tail.
            : Bisect(p => LogBinomialUpperTail(trials, p, successes) >= logTail);
        double upper = successes == trials ? 1.0
            // P(Bin(n, p) ≤ x) falls with p: the largest p where it is still at least the tail.
            : Bisect(p => LogBinomialLowerTail(trials, p, successes) < logTail);
        return (lower, upper);
    }

    /// <summary>The least p in (0, 1) where the monotone predicate turns true (to about 1e-15).</summary>
    private static double Bisect(Func<double, bool> isAbove)
    {
        double lo = 0.0, hi = 1.0;
        for (int i = 0; i < 200 && hi - lo > 1e-15; i++)
        {
            double mid = 0.5 * (lo + hi);
            if (isAbove(mid)) hi = mid; else lo = mid;
        }
        return 0.5 * (lo + hi);
    }

    /// <summary>
    /// The hits an ownership claim needs among <paramref name="keys"/> queried keys when each is hit by chance with
    /// probability <paramref name="p"/>: the least h with P(Bin(keys, p) ≥ h) ≤ α, or null when even all keys do not
    /// reach α.
    /// </summary>
    public static int? HitsNeeded(int keys, double alpha, double p)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keys, 1);
        if (!(alpha > 0.0 && alpha < 1.0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in (0, 1).");
        ValidateProbability(p, nameof(p));
        double la = Math.Log(alpha);
        if (LogBinomialUpperTail(keys, p, keys) > la) return null;
        int lo = 0, hi = keys; // the tail falls with h: find the least h with tail ≤ α
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (LogBinomialUpperTail(keys, p, mid) <= la) hi = mid; else lo = mid + 1;
        }
        return lo;
    }

    /// <summary>
    /// The fewest keys to query so that a fingerprinted model whose keys are each hit with probability
    /// <paramref name="recall"/> is called owned with probability at least <paramref name="power"/>, when an unrelated
    /// model hits each key with probability <paramref name="p"/> and the false-positive rate is α; null when no number
    /// up to <paramref name="maxKeys"/> does.
    /// </summary>
    public static int? KeysNeededForPower(double alpha, double p, double recall, double power = 0.95, int maxKeys = 100_000)
    {
        if (!(alpha > 0.0 && alpha < 1.0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in (0, 1).");
        ValidateProbability(p, nameof(p));
        if (!(recall > p && recall <= 1.0)) throw new ArgumentOutOfRangeException(nameof(recall), recall, "The recall must be in (p, 1].");
        if (!(power > 0.0 && power < 1.0)) throw new ArgumentOutOfRangeException(nameof(power), power, "The power must be in (0, 1).");
        double logPower = Math.Log(power);
        for (int m = KeysNeeded(alpha, Math.Min(p, 1.0 - 1e-12)); m <= maxKeys; m++)
            if (HitsNeeded(m, alpha, p) is int h && LogBinomialUpperTail(m, recall, h) >= logPower)
                return m;
        return null;
    }

    /// <summary>Converts a natural logarithm to a base-10 logarithm.</summary>
    public static double ToLog10(double naturalLog) => naturalLog / Ln10;

    /// <summary>ln C(n, k), exact table for n ≤ 1024 and log-gamma above.</summary>
    public static double LogBinomialCoefficient(int n, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (k < 0 || k > n) return double.NegativeInfinity;
        return LogFactorial(n) - LogFactorial(k) - LogFactorial(n - k);
    }

    /// <summary>ln n!.</summary>
    public static double LogFactorial(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        return n < LogFactorialTable.Length ? LogFactorialTable[n] : LogGamma(n + 1.0);
    }

    private static readonly double[] LogFactorialTable = BuildLogFactorialTable(1025);

    private static double[] BuildLogFactorialTable(int size)
    {
        var t = new double[size];
        for (int i = 1; i < size; i++) t[i] = t[i - 1] + Math.Log(i);
        return t;
    }

    // Lanczos approximation, g = 7, 9 terms (relative error about 1e-15 for x ≥ 0.5).
    private static readonly double[] Lanczos =
    [
        0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
        12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
    ];

    /// <summary>ln Γ(x) for x &gt; 0.</summary>
    public static double LogGamma(double x)
    {
        if (!(x > 0.0)) throw new ArgumentOutOfRangeException(nameof(x), x, "LogGamma is defined here for x > 0.");
        if (x < 0.5) return Math.Log(Math.PI / Math.Sin(Math.PI * x)) - LogGamma(1.0 - x); // reflection
        x -= 1.0;
        double a = Lanczos[0];
        double t = x + 7.5;
        for (int i = 1; i < Lanczos.Length; i++) a += Lanczos[i] / (x + i);
        return 0.5 * Math.Log(2.0 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(a);
    }

    /// <summary>ln(1 + x), accurate for small |x|.</summary>
    public static double Log1p(double x)
    {
        if (x < -1.0 || double.IsNaN(x)) return double.NaN;
        if (Math.Abs(x) < 1e-4)
        {
            double x2 = x * x;
            return x - x2 / 2 + x2 * x / 3 - x2 * x2 / 4;
        }
        double u = 1.0 + x;
        if (u == 1.0) return x;
        return Math.Log(u) * x / (u - 1.0);
    }

    /// <summary>ln(e^a + e^b) without overflow or underflow.</summary>
    public static double LogAddExp(double a, double b)
    {
        if (double.IsNegativeInfinity(a)) return b;
        if (double.IsNegativeInfinity(b)) return a;
        return a > b ? a + Log1p(Math.Exp(b - a)) : b + Log1p(Math.Exp(a - b));
    }

    private static double LogUpperTail(IReadOnlyList<double> probabilities, int h, bool complement)
    {
        int m = probabilities.Count;
        if (h <= 0) return 0.0;
        if (h > m) return double.NegativeInfinity;
        // state[j], j < h: P(exactly j hits so far); state[h]: P(at least h hits so far) (absorbing). Each value is held
        // as mant · 2^exp with mant in [1, 2) (0 for zero), so no probability underflows however small it gets, and the
        // arithmetic is products and sums of positive terms (no logarithms, no cancellation: full relative precision).
        // After i keys only counts j in [h − (m − i), min(i, h − 1)] can still reach h; the others are never computed,
        // so the work is about h · (m − h + 1) steps rather than m · h (all hit: m steps).
        var mant = new double[h + 1];
        var exp = new int[h + 1];
        Array.Fill(exp, ZeroExp);
        mant[0] = 1.0;
        exp[0] = 0;
        for (int i = 0; i < m; i++)
        {
            double p = probabilities[i];
            var (am, ae) = Split(complement ? 1.0 - p : p);   // P(this one counts)
            var (bm, be) = Split(complement ? p : 1.0 - p);   // P(this one does not)
            int lo = Math.Max(0, h - (m - i));                // valid counts before this key
            int hi = Math.Min(i, h - 1);
            int lo2 = Math.Max(0, h - (m - i - 1));           // counts that still matter after it
            int hi2 = Math.Min(i + 1, h - 1);
            if (hi == h - 1 && mant[h - 1] != 0.0 && am != 0.0)
                Add(ref mant[h], ref exp[h], mant[h], exp[h], mant[h - 1] * am, exp[h - 1] + ae);
            for (int j = hi2; j >= lo2; j--)
            {
                double xm = 0.0, ym = 0.0;
                int xe = ZeroExp, ye = ZeroExp;
                if (j <= hi && mant[j] != 0.0 && bm != 0.0) { xm = mant[j] * bm; xe = exp[j] + be; }
                if (j - 1 >= lo && mant[j - 1] != 0.0 && am != 0.0) { ym = mant[j - 1] * am; ye = exp[j - 1] + ae; }
                Add(ref mant[j], ref exp[j], xm, xe, ym, ye);
            }
        }
        if (mant[h] == 0.0) return double.NegativeInfinity;
        return Math.Min(0.0, Math.Log(mant[h]) + exp[h] * Ln2);
    }

    private static readonly double Ln2 = Math.Log(2.0);

    /// <summary>The exponent of a zero in the mant · 2^exp form: far below any product of probabilities (≥ 2^-1074 each).</summary>
    private const int ZeroExp = int.MinValue / 4;

    /// <summary>Exact powers 2^-d for d = 0..63.</summary>
    private static readonly double[] NegPow2 = Enumerable.Range(0, 64).Select(d => Math.ScaleB(1.0, -d)).ToArray();

    /// <summary>x as mant · 2^exp with mant in [1, 2), or (0, <see cref="ZeroExp"/>) for 0.</summary>
    private static (double Mant, int Exp) Split(double x)
    {
        if (x == 0.0) return (0.0, ZeroExp);
        int e = Math.ILogB(x);
        return (Math.ScaleB(x, -e), e);
    }

    /// <summary>
    /// (m, e) = x + y for x = xm · 2^xe and y = ym · 2^ye, each mantissa 0 or in [1, 4) (a product of two in [1, 2)); the
    /// result normalised to [1, 2), or (0, <see cref="ZeroExp"/>) when both are 0.
    /// </summary>
    private static void Add(ref double m, ref int e, double xm, int xe, double ym, int ye)
    {
        if (ym == 0.0)
        {
            if (xm == 0.0) { m = 0.0; e = ZeroExp; return; }
        }
        else if (xm == 0.0 || ye > xe)
        {
            (xm, ym) = (ym, xm);
            (xe, ye) = (ye, xe);
        }
        // Now xm ≠ 0 and, when ym ≠ 0, xe ≥ ye. A term over 2^64 times smaller than the other (mantissas within a
        // factor 4) changes no bit of the 53-bit sum.
        double s = xm;
        if (ym != 0.0)
        {
            long d = (long)xe - ye;
            if (d < 64) s += ym * NegPow2[d];
        }
        while (s >= 2.0) { s *= 0.5; xe++; }
        m = s;
        e = xe;
    }

    private static void ValidateProbabilities(IReadOnlyList<double> probabilities)
    {
        for (int i = 0; i < probabilities.Count; i++) ValidateProbability(probabilities[i], $"probabilities[{i}]");
    }

    private static void ValidateProbability(double p, string name)
    {
        if (!(p >= 0.0 && p <= 1.0)) throw new ArgumentOutOfRangeException(name, p, "A probability must be in [0, 1].");
    }
}
