namespace Oml.Lab.Metrics;

/// <summary>One point of a ROC curve: classifying "positive" every item whose score is at least <see cref="Threshold"/>.</summary>
public sealed record RocPoint(double Threshold, double FalsePositiveRate, double TruePositiveRate);

/// <summary>Receiver operating characteristics of a score that should be higher for positives than for negatives.</summary>
public static class Roc
{
    /// <summary>
    /// Area under the ROC curve: the probability that a random positive scores above a random negative, ties counting
    /// one half (the Mann–Whitney U statistic divided by |P|·|N|). O((P + N) log(P + N)).
    /// </summary>
    public static double Auc(IReadOnlyList<double> positives, IReadOnlyList<double> negatives)
    {
        Check(positives, negatives);
        var all = positives.Select(s => (Score: s, Pos: true)).Concat(negatives.Select(s => (Score: s, Pos: false)))
            .OrderBy(x => x.Score).ToArray();
        // Mid-ranks over tied groups, then U = (sum of positive ranks) − P(P+1)/2.
        double rankSumPos = 0;
        for (int i = 0; i < all.Length;)
        {
            int j = i;
            while (j < all.Length && all[j].Score == all[i].Score) j++;
            double midRank = (i + 1 + j) / 2.0; // ranks i+1..j
            for (int k = i; k < j; k++) if (all[k].Pos) rankSumPos += midRank;
            i = j;
        }
        double p = positives.Count, n = negatives.Count;
        return (rankSumPos - p * (p + 1) / 2) / (p * n);
    }

    /// <summary>
    /// The ROC curve from (0, 0) to (1, 1): one point per distinct score, thresholds in decreasing order, plus the
    /// starting point with threshold +∞.
    /// </summary>
    public static IReadOnlyList<RocPoint> Curve(IReadOnlyList<double> positives, IReadOnlyList<double> negatives)
    {
        Check(positives, negatives);
        var thresholds = positives.Concat(negatives).Distinct().OrderDescending().ToList();
        var points = new List<RocPoint> { new(double.PositiveInfinity, 0, 0) };
        foreach (var t in thresholds)
            points.Add(new RocPoint(t, negatives.Count(s => s >= t) / (double)negatives.Count, positives.Count(s => s >= t) / (double)positives.Count));
        return points;
    }

    /// <summary>The highest true-positive rate among thresholds whose false-positive rate is at most <paramref name="fpr"/>.</summary>
    public static double TprAtFpr(IReadOnlyList<double> positives, IReadOnlyList<double> negatives, double fpr)
    {
        if (!(fpr >= 0 && fpr <= 1)) throw new ArgumentOutOfRangeException(nameof(fpr), fpr, "a false-positive rate is in [0, 1]");
        return Curve(positives, negatives).Where(p => p.FalsePositiveRate <= fpr).Max(p => p.TruePositiveRate);
    }

    private static void Check(IReadOnlyList<double> positives, IReadOnlyList<double> negatives)
    {
        ArgumentNullException.ThrowIfNull(positives);
        ArgumentNullException.ThrowIfNull(negatives);
        if (positives.Count == 0) throw new ArgumentException("no positive scores", nameof(positives));
        if (negatives.Count == 0) throw new ArgumentException("no negative scores", nameof(negatives));
        if (positives.Concat(negatives).Any(double.IsNaN)) throw new ArgumentException("a score is NaN");
    }
}
