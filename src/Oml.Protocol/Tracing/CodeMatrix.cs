using System.Numerics;
using System.Runtime.InteropServices;

namespace Oml.Protocol.Tracing;

/// <summary>
/// The allocation of hosts <c>0 .. Hosts-1</c> as a bit-packed matrix: bit <c>i</c> of row <c>j</c> is set when host
/// <c>j</c>'s copy holds pool fingerprint <c>i</c>. Bit <c>i</c> lives in word <c>i / 64</c> at bit <c>i % 64</c>, so on a
/// little-endian machine byte <c>g</c> of a row holds positions <c>8g .. 8g+7</c> (the accusers read rows bytewise).
/// Bits past <see cref="Positions"/> are zero. Immutable once built.
/// </summary>
public sealed class CodeMatrix
{
    private readonly ulong[] _bits;

    public int Hosts { get; }
    public int Positions { get; }
    public int WordsPerRow { get; }

    private CodeMatrix(int hosts, int positions)
    {
        Hosts = hosts;
        Positions = positions;
        WordsPerRow = WordsFor(positions);
        _bits = new ulong[(long)hosts * WordsPerRow];
    }

    internal static int WordsFor(int positions) => (positions + 63) / 64;

    /// <summary>Builds the matrix for hosts <c>0 .. hosts-1</c> of <paramref name="allocation"/> (rows in parallel).</summary>
    public static CodeMatrix Build(IFingerprintAllocation allocation, int hosts)
    {
        ArgumentNullException.ThrowIfNull(allocation);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hosts);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("the packed code matrix assumes a little-endian machine");
        var m = new CodeMatrix(hosts, allocation.PoolSize);
        Parallel.For(0, hosts, j =>
        {
            var row = m._bits.AsSpan(j * m.WordsPerRow, m.WordsPerRow);
            if (allocation is IPackedAllocation packed) packed.FillRow(j, row);
            else
                foreach (int i in allocation.IndicesFor(j))
                {
                    if ((uint)i >= (uint)m.Positions) throw new InvalidOperationException($"allocation gave host {j} index {i}, outside the pool of {m.Positions}");
                    row[i >> 6] |= 1UL << (i & 63);
                }
        });
        return m;
    }

    public ReadOnlySpan<ulong> Row(int host) => _bits.AsSpan(host * WordsPerRow, WordsPerRow);

    internal ReadOnlySpan<byte> RowBytes(int host) => MemoryMarshal.AsBytes(Row(host));

    public bool Holds(int host, int position)
    {
        if ((uint)host >= (uint)Hosts) throw new ArgumentOutOfRangeException(nameof(host));
        if ((uint)position >= (uint)Positions) throw new ArgumentOutOfRangeException(nameof(position));
        return (_bits[host * WordsPerRow + (position >> 6)] >> (position & 63) & 1) != 0;
    }

    /// <summary>How many pool fingerprints host <paramref name="host"/> holds.</summary>
    public int Weight(int host)
    {
        int n = 0;
        foreach (var w in Row(host)) n += BitOperations.PopCount(w);
        return n;
    }
}

/// <summary>An allocation that can write a host's row of the <see cref="CodeMatrix"/> directly.</summary>
internal interface IPackedAllocation
{
    /// <summary>Sets the bits of host <paramref name="host"/>'s row (which arrives zeroed).</summary>
    void FillRow(int host, Span<ulong> row);
}

/// <summary>
/// A suspect copy as the owner saw it: which pool fingerprints were queried and which of those answered with their
/// response. Bit-packed like a <see cref="CodeMatrix"/> row.
/// </summary>
public sealed class Observation
{
    internal ulong[] Present { get; }
    internal ulong[] Queried { get; }
    public int Positions { get; }

    internal Observation(int positions)
    {
        Positions = positions;
        Present = new ulong[CodeMatrix.WordsFor(positions)];
        Queried = new ulong[CodeMatrix.WordsFor(positions)];
    }

    /// <summary>From the <see cref="IAccuser"/> form: true = answered, false = did not, null = not queried.</summary>
    public static Observation From(IReadOnlyList<bool?> observed, int poolSize)
    {
        ArgumentNullException.ThrowIfNull(observed);
        if (observed.Count != poolSize)
            throw new ArgumentException($"the observation has {observed.Count} entries but the pool has {poolSize} fingerprints", nameof(observed));
        var o = new Observation(poolSize);
        for (int i = 0; i < poolSize; i++)
        {
            if (observed[i] is not { } v) continue;
            o.Queried[i >> 6] |= 1UL << (i & 63);
            if (v) o.Present[i >> 6] |= 1UL << (i & 63);
        }
        return o;
    }

    /// <summary>Writes into <paramref name="into"/> this observation restricted to the positions that answered.</summary>
    public void AnsweredOnly(Observation into)
    {
        ArgumentNullException.ThrowIfNull(into);
        if (into.Positions != Positions) throw new ArgumentException($"the target has {into.Positions} positions, this observation {Positions}", nameof(into));
        Present.CopyTo(into.Present, 0);
        Present.CopyTo(into.Queried, 0);
    }

    public bool IsQueried(int i) => (Queried[i >> 6] >> (i & 63) & 1) != 0;
    public bool IsPresent(int i) => (Present[i >> 6] >> (i & 63) & 1) != 0;

    public int QueriedCount => Count(Queried);
    public int PresentCount => Count(Present);

    private static int Count(ulong[] words)
    {
        int n = 0;
        foreach (var w in words) n += BitOperations.PopCount(w);
        return n;
    }

    internal void Clear()
    {
        Array.Clear(Present);
        Array.Clear(Queried);
    }
}

/// <summary>
/// The outcome of tracing one suspect copy: every host's score and verdict, and the thresholds used.
/// </summary>
/// <param name="Threshold">The proven threshold: an innocent host reaches it with probability at most <paramref name="InnocentBound"/>.</param>
/// <param name="Bound">The name of the inequality behind <paramref name="Threshold"/>.</param>
/// <param name="GaussianThreshold">For information only (never used to accuse): the threshold a normal approximation of
/// the innocent score would give; NaN where the scheme has none.</param>
public sealed record TraceResult(
    IReadOnlyList<Accusation> Accusations, double Threshold, string Bound, double InnocentBound, double GaussianThreshold)
{
    public IEnumerable<Accusation> Accused => Accusations.Where(a => a.Accused);
}

/// <summary>Whom an accuser names.</summary>
public enum AccusationMode
{
    /// <summary>Every host whose score reaches the threshold.</summary>
    AllAboveThreshold,
    /// <summary>Only the top-scoring host (lowest ordinal on ties), and only if it reaches the threshold ("catch one").</summary>
    TopOnly,
}

internal static class Accusations
{
    /// <summary>Verdicts from scores: all hosts at or above the threshold, or only the top one.</summary>
    public static Accusation[] Decide(ReadOnlySpan<double> scores, double threshold, AccusationMode mode)
    {
        var result = new Accusation[scores.Length];
        int top = ArgMax(scores);
        for (int j = 0; j < scores.Length; j++)
        {
            bool above = scores[j] >= threshold;
            bool accused = mode == AccusationMode.AllAboveThreshold ? above : above && j == top;
            result[j] = new Accusation(j, scores[j], accused);
        }
        return result;
    }

    public static int ArgMax(ReadOnlySpan<double> scores)
    {
        int top = 0;
        for (int j = 1; j < scores.Length; j++) if (scores[j] > scores[top]) top = j;
        return top;
    }

    public static void CheckArguments(IReadOnlyList<bool?> observed, int hostCount, double innocentBound)
    {
        ArgumentNullException.ThrowIfNull(observed);
        if (hostCount < 1) throw new ArgumentException($"the host count must be at least 1 (got {hostCount})", nameof(hostCount));
        if (!(innocentBound > 0 && innocentBound < 1)) throw new ArgumentException($"the innocent bound must be in (0, 1) (got {innocentBound})", nameof(innocentBound));
    }
}
