using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Protocol.Tracing;

/// <summary>What the <c>innocent bound</c> ε of a simulation bounds.</summary>
public enum BoundScope
{
    /// <summary>ε bounds the chance that any one given innocent host is accused (ε1 = ε).</summary>
    PerHost,
    /// <summary>ε bounds the chance that any innocent host at all is accused: ε1 = ε / hosts, by the union bound.</summary>
    Union,
}

/// <summary>The experiment grid of <see cref="CoalitionSimulation"/>.</summary>
public sealed record SimulationSettings
{
    public const string Tardos = "tardos", Random = "random";

    public int Hosts { get; init; } = 1000;
    public IReadOnlyList<int> Coalitions { get; init; } = [2, 3, 4];
    public IReadOnlyList<PirateStrategy> Strategies { get; init; } = Pirates.All;
    public IReadOnlyList<int> Lengths { get; init; } = [64, 128, 256, 512, 1024, 2048];
    public IReadOnlyList<NoiseModel> Noises { get; init; } = [NoiseModel.None];
    public int Trials { get; init; } = 200;
    public double InnocentBound { get; init; } = 1e-3;
    public BoundScope Scope { get; init; } = BoundScope.Union;
    public IReadOnlyList<string> Schemes { get; init; } = [Tardos, Random];
    /// <summary>The owner's secret for the simulated allocations is derived from this.</summary>
    public string Seed { get; init; } = "oml";
    /// <summary>The Tardos cutoff t; null for Tardos' 1/(300c) with c the largest coalition simulated.</summary>
    public double? Cutoff { get; init; }
    public TardosBound Bound { get; init; } = TardosBound.Chernoff;
    /// <summary>The score the Tardos accuser uses (<see cref="TardosScore"/>).</summary>
    public TardosScore Score { get; init; } = TardosAccuser.DefaultScore;
    /// <summary>The random baseline gives each host round(fraction × length) fingerprints.</summary>
    public double RandomFraction { get; init; } = 0.5;
    /// <summary>Independent allocations drawn per (scheme, length); trial k uses allocation k mod Codes.</summary>
    public int Codes { get; init; } = 1;

    /// <summary>ε1, the bound on accusing one given innocent host.</summary>
    public double PerHostBound => Scope == BoundScope.Union ? InnocentBound / Hosts : InnocentBound;
    public double EffectiveCutoff => Cutoff ?? TardosAllocation.DefaultCutoff(Coalitions.Max());

    public void Validate()
    {
        if (Hosts < 1) throw new ArgumentException($"the number of hosts must be at least 1 (got {Hosts})");
        if (Coalitions.Count == 0 || Strategies.Count == 0 || Lengths.Count == 0 || Noises.Count == 0 || Schemes.Count == 0)
            throw new ArgumentException("coalitions, strategies, lengths, noise settings and schemes must each have at least one entry");
        foreach (var c in Coalitions)
        {
            if (c < 1) throw new ArgumentException($"a coalition has at least 1 member (got {c})");
            if (c > Hosts) throw new ArgumentException($"a coalition of {c} is bigger than the {Hosts} hosts");
        }
        foreach (var l in Lengths) if (l < 1) throw new ArgumentException($"a code length must be at least 1 (got {l})");
        foreach (var n in Noises) n.Validate();
        foreach (var s in Schemes)
            if (s is not (Tardos or Random)) throw new ArgumentException($"unknown scheme '{s}' (tardos, random)");
        if (Trials < 1) throw new ArgumentException($"the number of trials must be at least 1 (got {Trials})");
        if (!(InnocentBound > 0 && InnocentBound < 1)) throw new ArgumentException($"the innocent bound must be in (0, 1) (got {InnocentBound})");
        if (Cutoff is { } t && !(t > 0 && t < 0.5)) throw new ArgumentException($"the Tardos cutoff must be in (0, 1/2) (got {t})");
        if (!(RandomFraction > 0 && RandomFraction <= 1)) throw new ArgumentException($"the random subset fraction must be in (0, 1] (got {RandomFraction})");
        if (Codes < 1) throw new ArgumentException($"the number of codes must be at least 1 (got {Codes})");
        if (string.IsNullOrEmpty(Seed)) throw new ArgumentException("the seed must not be empty");
    }
}

/// <summary>Measured rates for one (scheme, length, coalition size, strategy, noise) cell.</summary>
/// <param name="CatchRate">Fraction of trials in which at least one colluder was accused (all hosts above threshold).</param>
/// <param name="MeanCaught">Mean number of colluders accused per trial.</param>
/// <param name="InnocentRate">Fraction of trials in which at least one innocent host was accused.</param>
/// <param name="TopCatchRate">"Catch one": fraction of trials in which the top-scoring host was a colluder at or above threshold.</param>
/// <param name="TopInnocentRate">"Catch one": fraction of trials in which the top-scoring host was innocent and at or above threshold.</param>
/// <param name="PerHostBound">ε1: the proven bound on accusing one given innocent host.</param>
/// <param name="AnyInnocentBound">(hosts − c)·ε1: the proven bound on accusing at least one innocent (union bound).</param>
/// <param name="MeanThreshold">Mean proven threshold.</param>
/// <param name="MeanColluderScore">Mean score of a colluder.</param>
/// <param name="MeanGaussianThreshold">Tardos only (NaN for random): mean normal-approximation threshold, for information.</param>
/// <param name="GaussianCatchRate">Tardos only: the catch rate had the Gaussian threshold been used (it carries no proof).</param>
/// <param name="GaussianInnocentRate">Tardos only: the innocent rate had the Gaussian threshold been used.</param>
public sealed record SimulationResult(
    string Scheme, int Length, int Coalition, string Strategy, double Loss, double FalseHit, int Trials,
    double CatchRate, double MeanCaught, double InnocentRate, double TopCatchRate, double TopInnocentRate,
    double PerHostBound, double AnyInnocentBound, double MeanThreshold, double MeanColluderScore,
    double MeanGaussianThreshold, double GaussianCatchRate, double GaussianInnocentRate);

/// <summary>Progress of a simulation: trials done out of the whole grid, and the cell being run.</summary>
public readonly record struct SimulationProgress(long Done, long Total, string Cell);

/// <summary>
/// Monte-Carlo estimate of how well an allocation traces coalitions: for each cell of the grid, every trial draws a
/// coalition uniformly among the hosts, forges its pirate copy under the strategy and noise, queries every pool
/// fingerprint and runs the scheme's accuser over all hosts. Trials run in parallel; each has its own generator seeded
/// from (seed, cell, trial), so results do not depend on scheduling.
/// </summary>
public static class CoalitionSimulation
{
    public static IReadOnlyList<SimulationResult> Run(SimulationSettings settings, IProgress<SimulationProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        ulong seedHash = BinaryPrimitives.ReadUInt64LittleEndian(SHA256.HashData(Encoding.UTF8.GetBytes("oml trace simulate/" + settings.Seed)));
        long total = (long)settings.Schemes.Count * settings.Lengths.Count * settings.Noises.Count * settings.Coalitions.Count
            * settings.Strategies.Count * settings.Trials, done = 0;
        long reportEvery = Math.Max(1, total / 400);
        var progressGate = new Lock();
        long reported = 0; // under progressGate: reports never go backwards, and the last one is the total
        var results = new List<SimulationResult>();

        for (int si = 0; si < settings.Schemes.Count; si++)
        {
            string scheme = settings.Schemes[si];
            foreach (int length in settings.Lengths)
            {
                var codes = new CodeMatrix[settings.Codes];
                double[]? [] biases = new double[]?[settings.Codes];
                RandomAllocation? randomAlloc = null;
                for (int k = 0; k < settings.Codes; k++)
                {
                    byte[] secret = SHA256.HashData(Encoding.UTF8.GetBytes($"oml trace simulate/{settings.Seed}/code/{k}"));
                    IFingerprintAllocation alloc;
                    if (scheme == SimulationSettings.Tardos)
                    {
                        var t = new TardosAllocation(secret, length, settings.EffectiveCutoff);
                        biases[k] = t.BiasSpan.ToArray();
                        alloc = t;
                    }
                    else alloc = randomAlloc = RandomAllocation.WithFraction(secret, length, settings.RandomFraction);
                    cancellation.ThrowIfCancellationRequested();
                    codes[k] = CodeMatrix.Build(alloc, settings.Hosts);
                }
                int perHost = randomAlloc?.PerHost ?? 0;

                for (int ni = 0; ni < settings.Noises.Count; ni++)
                    foreach (int c in settings.Coalitions)
                        foreach (var strategy in settings.Strategies)
                        {
                            string cell = $"{scheme} m={length} c={c} {Pirates.Name(strategy)} δ={settings.Noises[ni].Loss} ε={settings.Noises[ni].FalseHit}";
                            var cellSeed = SimulationRandom.Mix(seedHash, si, length, ni, c, (long)strategy);
                            var acc = RunCell(settings, scheme, codes, biases, perHost, c, strategy, settings.Noises[ni], cellSeed, cancellation, () =>
                            {
                                long d = Interlocked.Increment(ref done);
                                if (progress is not null && (d % reportEvery == 0 || d == total))
                                    lock (progressGate)
                                    {
                                        // Two workers may reach the lock out of order (19 after 20): report the later count only.
                                        if (d <= reported) return;
                                        reported = d;
                                        progress.Report(new SimulationProgress(d, total, cell));
                                    }
                            });
                            double n = settings.Trials;
                            bool tardos = scheme == SimulationSettings.Tardos, gaussian = tardos && settings.Score != TardosScore.Combined;
                            results.Add(new SimulationResult(scheme, length, c, Pirates.Name(strategy), settings.Noises[ni].Loss, settings.Noises[ni].FalseHit,
                                settings.Trials, acc.Caught / n, acc.CaughtCount / n, acc.Innocent / n, acc.TopCaught / n, acc.TopInnocent / n,
                                settings.PerHostBound, Math.Min(1, (settings.Hosts - c) * settings.PerHostBound), acc.Threshold / n,
                                acc.ColluderScore / (n * c),
                                gaussian ? acc.GaussianThreshold / n : double.NaN, gaussian ? acc.GaussianCaught / n : double.NaN,
                                gaussian ? acc.GaussianInnocent / n : double.NaN));
                        }
            }
        }
        return results;
    }

    private sealed class Tally
    {
        public long Caught, CaughtCount, Innocent, TopCaught, TopInnocent, GaussianCaught, GaussianInnocent;
        public double Threshold, ColluderScore, GaussianThreshold;

        public void Add(Tally o)
        {
            Caught += o.Caught; CaughtCount += o.CaughtCount; Innocent += o.Innocent; TopCaught += o.TopCaught; TopInnocent += o.TopInnocent;
            GaussianCaught += o.GaussianCaught; GaussianInnocent += o.GaussianInnocent;
            Threshold += o.Threshold; ColluderScore += o.ColluderScore; GaussianThreshold += o.GaussianThreshold;
        }
    }

    private sealed class Worker(int hosts, int positions)
    {
        public readonly Tally Tally = new();
        public readonly double[] Scores = new double[hosts];
        public readonly TardosAccuser.ScoreScratch Scratch = new(hosts, positions);
        public readonly Observation Observation = new(positions);
    }

    private static Tally RunCell(SimulationSettings s, string scheme, CodeMatrix[] codes, double[]?[] biases, int perHost, int c,
        PirateStrategy strategy, NoiseModel noise, ulong cellSeed, CancellationToken cancellation, Action trialDone)
    {
        var total = new Tally();
        var gate = new Lock();
        bool tardos = scheme == SimulationSettings.Tardos;
        double eps1 = s.PerHostBound;
        var options = new ParallelOptions { CancellationToken = cancellation };
        // Real-valued sums are kept per trial and added in trial order afterwards, so that results do not depend on
        // how the threads happened to split the trials (floating-point addition is not associative).
        var thresholds = new double[s.Trials];
        var colluderScores = new double[s.Trials];
        var gaussianThresholds = new double[s.Trials];
        Parallel.For(0, s.Trials, options, () => new Worker(s.Hosts, codes[0].Positions), (trial, _, w) =>
        {
            var rng = new SimulationRandom(SimulationRandom.Mix(cellSeed, trial));
            int k = trial % codes.Length;
            var code = codes[k];
            int[] coalition = rng.Distinct(c, s.Hosts);
            Pirates.ForgeInto(code, coalition, strategy, noise, rng, w.Observation);
            double z, zGauss = double.NaN;
            if (tardos)
            {
                (z, zGauss) = TardosAccuser.ScoreAndThreshold(s.Score, s.Bound, code, biases[k], w.Observation, eps1, w.Scores, w.Scratch);
            }
            else
            {
                OverlapAccuser.Score(code, w.Observation, w.Scores);
                z = OverlapAccuser.Threshold(code.Positions, perHost, w.Observation.PresentCount, eps1);
            }
            var t = w.Tally;
            int caught = 0, innocent = 0, gCaught = 0, gInnocent = 0;
            double colluderScore = 0;
            for (int j = 0; j < s.Hosts; j++)
            {
                bool colluder = Array.IndexOf(coalition, j) >= 0;
                double score = w.Scores[j];
                if (colluder) colluderScore += score;
                if (score >= z) { if (colluder) caught++; else innocent++; }
                if (tardos && score >= zGauss) { if (colluder) gCaught++; else gInnocent++; }   // never for NaN
            }
            int top = Accusations.ArgMax(w.Scores);
            if (w.Scores[top] >= z)
            {
                if (Array.IndexOf(coalition, top) >= 0) t.TopCaught++;
                else t.TopInnocent++;
            }
            if (caught > 0) t.Caught++;
            t.CaughtCount += caught;
            if (innocent > 0) t.Innocent++;
            if (gCaught > 0) t.GaussianCaught++;
            if (gInnocent > 0) t.GaussianInnocent++;
            thresholds[trial] = z;
            colluderScores[trial] = colluderScore;
            if (tardos) gaussianThresholds[trial] = zGauss;
            trialDone();
            return w;
        }, w => { lock (gate) total.Add(w.Tally); });
        for (int trial = 0; trial < s.Trials; trial++)
        {
            total.Threshold += thresholds[trial];
            total.ColluderScore += colluderScores[trial];
            total.GaussianThreshold += gaussianThresholds[trial];
        }
        return total;
    }
}
