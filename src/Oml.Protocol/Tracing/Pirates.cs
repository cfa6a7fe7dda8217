using System.Numerics;

namespace Oml.Protocol.Tracing;

/// <summary>How a coalition of hosts builds its pirate copy from their copies, position by position.</summary>
/// <remarks>
/// With n of the c colluders holding fingerprint i: where all agree (n = 0 or n = c) every strategy but the noise keeps
/// the common value (the marking assumption); where they differ each strategy decides as documented per member.
/// </remarks>
public enum PirateStrategy
{
    /// <summary>Present when more than half hold it (2n &gt; c; a tie is absent).</summary>
    Majority,
    /// <summary>Where they differ, the rarer value (present when 2n &lt; c, a fair coin on a tie).</summary>
    Minority,
    /// <summary>"AND": present only when all hold it (merging averages away what is not shared).</summary>
    Unanimity,
    /// <summary>"OR": present when any holds it.</summary>
    Any,
    /// <summary>Each query answered by a uniformly random colluder's copy (present with probability n/c).</summary>
    Interleaving,
    /// <summary>A fair coin wherever they differ.</summary>
    RandomWhereDiffer,
}

/// <summary>The channel between the pirate copy and the owner's queries.</summary>
/// <param name="Loss">δ: each fingerprint the copy should hold is lost (e.g. erased by fine-tuning) with this probability.</param>
/// <param name="FalseHit">ε: each fingerprint the copy should not hold answers anyway with this probability.</param>
public readonly record struct NoiseModel(double Loss, double FalseHit)
{
    public static NoiseModel None => default;

    public void Validate()
    {
        if (!(Loss >= 0 && Loss < 1)) throw new ArgumentException($"the loss probability must be in [0, 1) (got {Loss})");
        if (!(FalseHit >= 0 && FalseHit < 1)) throw new ArgumentException($"the false-hit probability must be in [0, 1) (got {FalseHit})");
    }
}

public static class Pirates
{
    public static IReadOnlyList<PirateStrategy> All { get; } = Enum.GetValues<PirateStrategy>();

    public static string Name(PirateStrategy s) => s switch
    {
        PirateStrategy.Majority => "majority",
        PirateStrategy.Minority => "minority",
        PirateStrategy.Unanimity => "unanimity",
        PirateStrategy.Any => "any",
        PirateStrategy.Interleaving => "interleaving",
        PirateStrategy.RandomWhereDiffer => "random",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    /// <summary>Parses a strategy name (also "and" for unanimity, "or" for any, "random-where-differ" for random).</summary>
    public static PirateStrategy Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "majority" => PirateStrategy.Majority,
        "minority" => PirateStrategy.Minority,
        "unanimity" or "and" => PirateStrategy.Unanimity,
        "any" or "or" => PirateStrategy.Any,
        "interleaving" => PirateStrategy.Interleaving,
        "random" or "random-where-differ" => PirateStrategy.RandomWhereDiffer,
        _ => throw new ArgumentException($"unknown pirate strategy '{name}' (majority, minority, unanimity, any, interleaving, random)"),
    };

    /// <summary>Whether the pirate copy holds a fingerprint that <paramref name="holders"/> of <paramref name="coalition"/> colluders hold (before noise).</summary>
    public static bool Decide(PirateStrategy strategy, int holders, int coalition, SimulationRandom rng)
    {
        if (holders == 0) return false;
        if (holders == coalition) return true;
        return strategy switch
        {
            PirateStrategy.Majority => 2 * holders > coalition,
            PirateStrategy.Minority => 2 * holders == coalition ? rng.NextBit() : 2 * holders < coalition,
            PirateStrategy.Unanimity => false,
            PirateStrategy.Any => true,
            PirateStrategy.Interleaving => rng.Next(coalition) < holders,
            PirateStrategy.RandomWhereDiffer => rng.NextBit(),
            _ => throw new ArgumentOutOfRangeException(nameof(strategy)),
        };
    }

    /// <summary>
    /// Builds the owner's view of the pirate copy of <paramref name="colluders"/> (rows of <paramref name="code"/>) under
    /// <paramref name="strategy"/> and <paramref name="noise"/>, with every pool fingerprint queried.
    /// </summary>
    public static Observation Forge(CodeMatrix code, ReadOnlySpan<int> colluders, PirateStrategy strategy, NoiseModel noise, SimulationRandom rng)
    {
        var obs = new Observation(code.Positions);
        ForgeInto(code, colluders, strategy, noise, rng, obs);
        return obs;
    }

    internal static void ForgeInto(CodeMatrix code, ReadOnlySpan<int> colluders, PirateStrategy strategy, NoiseModel noise, SimulationRandom rng, Observation obs)
    {
        ArgumentNullException.ThrowIfNull(code);
        if (colluders.IsEmpty) throw new ArgumentException("a coalition needs at least one colluder", nameof(colluders));
        foreach (int j in colluders)
            if ((uint)j >= (uint)code.Hosts) throw new ArgumentException($"colluder {j} is not one of the {code.Hosts} hosts", nameof(colluders));
        noise.Validate();
        obs.Clear();
        int c = colluders.Length, m = code.Positions;
        for (int w = 0; w < code.WordsPerRow; w++)
        {
            int bitsHere = Math.Min(64, m - 64 * w);
            ulong all = bitsHere == 64 ? ulong.MaxValue : (1UL << bitsHere) - 1, present = 0;
            for (int b = 0; b < bitsHere; b++)
            {
                int n = 0;
                foreach (int j in colluders) n += (int)(code.Row(j)[w] >> b & 1);
                bool y = Decide(strategy, n, c, rng);
                if (y ? noise.Loss > 0 && rng.NextDouble() < noise.Loss : noise.FalseHit > 0 && rng.NextDouble() < noise.FalseHit) y = !y;
                if (y) present |= 1UL << b;
            }
            obs.Present[w] = present;
            obs.Queried[w] = all;
        }
    }
}

/// <summary>
/// The simulation's fast generator (xoshiro256**, seeded through SplitMix64): reproducible from a 64-bit seed on any
/// machine. Not for secrets — allocations use HMAC-derived streams.
/// </summary>
public sealed class SimulationRandom
{
    private ulong _s0, _s1, _s2, _s3;

    public SimulationRandom(ulong seed)
    {
        _s0 = SplitMix(ref seed); _s1 = SplitMix(ref seed); _s2 = SplitMix(ref seed); _s3 = SplitMix(ref seed);
    }

    /// <summary>A seed mixed from several values (order matters).</summary>
    public static ulong Mix(ulong seed, params ReadOnlySpan<long> values)
    {
        ulong h = seed;
        foreach (var v in values)
        {
            h ^= (ulong)v;
            h = SplitMix(ref h);
        }
        return h;
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = BitOperations.RotateLeft(_s1 * 5, 7) * 9, t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    public bool NextBit() => (NextUInt64() >> 63) != 0;

    /// <summary>Uniform in [0, n) (Lemire's multiply-shift with rejection, no bias).</summary>
    public int Next(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        ulong range = (ulong)n;
        while (true)
        {
            UInt128 product = (UInt128)NextUInt64() * range;
            ulong low = (ulong)product;
            if (low >= range || low >= (0UL - range) % range) return (int)(product >> 64);
        }
    }

    /// <summary><paramref name="count"/> distinct values from [0, n), in the order drawn.</summary>
    public int[] Distinct(int count, int n)
    {
        if (count < 0 || count > n) throw new ArgumentException($"cannot draw {count} distinct values from {n}");
        var chosen = new int[count];
        for (int k = 0; k < count; k++)
        {
            int v;
            do v = Next(n); while (Array.IndexOf(chosen, v, 0, k) >= 0);
            chosen[k] = v;
        }
        return chosen;
    }
}
