using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Fingerprinting;

/// <summary>
/// A deterministic random generator derived from the owner's secret and a context label, so that a fingerprint set
/// is reproducible from the secret and every random choice in it is provably the owner's.
/// </summary>
/// <remarks>
/// Construction: <c>K = HKDF-SHA256(ikm = secret, salt = "oml/derived-random/v1", info = UTF-8(label), L = 32)</c>;
/// block <c>i</c> of the output stream is <c>HMAC-SHA256(K, uint64-big-endian(i))</c>, i = 0, 1, 2, … (an HMAC
/// counter-mode DRBG). Values are taken from the stream little-endian, 8 bytes at a time. Each label gives an
/// independent stream, e.g. <c>DerivedRandom.For(secret, "fingerprint/17/response")</c>. Not thread-safe.
/// </remarks>
public sealed class DerivedRandom
{
    private static readonly byte[] HkdfSalt = "oml/derived-random/v1"u8.ToArray();

    private readonly byte[] _key;
    private readonly byte[] _block = new byte[32];
    private int _used = 32;      // bytes of _block already consumed
    private ulong _counter;

    private DerivedRandom(byte[] key) => _key = key;

    /// <summary>The generator for <paramref name="label"/> under <paramref name="secret"/>.</summary>
    public static DerivedRandom For(ReadOnlySpan<byte> secret, string label)
    {
        if (secret.IsEmpty) throw new ArgumentException("the secret must not be empty", nameof(secret));
        ArgumentNullException.ThrowIfNull(label);
        var key = new byte[32];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, secret, key, HkdfSalt, Encoding.UTF8.GetBytes(label));
        return new DerivedRandom(key);
    }

    /// <summary>The generator for <paramref name="label"/> under a passphrase (its UTF-8 bytes are the secret).</summary>
    public static DerivedRandom For(string passphrase, string label)
    {
        ArgumentException.ThrowIfNullOrEmpty(passphrase);
        return For(Encoding.UTF8.GetBytes(passphrase), label);
    }

    /// <summary>An independent generator for a sub-label (<c>label + "/" + sublabel</c> under the same secret).</summary>
    public DerivedRandom Derive(string sublabel)
    {
        ArgumentNullException.ThrowIfNull(sublabel);
        var key = new byte[32];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, _key, key, HkdfSalt, Encoding.UTF8.GetBytes("sub/" + sublabel));
        return new DerivedRandom(key);
    }

    /// <summary>Fills <paramref name="destination"/> with the next bytes of the stream.</summary>
    public void NextBytes(Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            if (_used == _block.Length) Refill();
            int n = Math.Min(destination.Length, _block.Length - _used);
            _block.AsSpan(_used, n).CopyTo(destination);
            _used += n;
            destination = destination[n..];
        }
    }

    private void Refill()
    {
        Span<byte> counter = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(counter, _counter++);
        HMACSHA256.HashData(_key, counter, _block);
        _used = 0;
    }

    /// <summary>A uniform 64-bit value.</summary>
    public ulong NextUInt64()
    {
        Span<byte> b = stackalloc byte[8];
        NextBytes(b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>A uniform double in [0, 1), with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform integer in [0, <paramref name="maxExclusive"/>), without modulo bias.</summary>
    public int Next(int maxExclusive)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxExclusive);
        return (int)NextUInt64(0, (ulong)maxExclusive);
    }

    /// <summary>A uniform integer in [<paramref name="minInclusive"/>, <paramref name="maxExclusive"/>).</summary>
    public int Next(int minInclusive, int maxExclusive)
    {
        if (maxExclusive <= minInclusive) throw new ArgumentOutOfRangeException(nameof(maxExclusive), "the range is empty");
        return (int)(minInclusive + (long)NextUInt64(0, (ulong)((long)maxExclusive - minInclusive)));
    }

    private ulong NextUInt64(ulong min, ulong range)
    {
        // Rejection sampling: draw from the largest multiple of range that fits in 2^64.
        ulong limit = ulong.MaxValue - (ulong.MaxValue % range + 1) % range;   // values ≤ limit are unbiased
        ulong v;
        do v = NextUInt64(); while (v > limit);
        return min + v % range;
    }

    /// <summary>Shuffles <paramref name="items"/> in place (Fisher–Yates).</summary>
    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>Shuffles <paramref name="items"/> in place (Fisher–Yates).</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>An index drawn with probability proportional to <paramref name="weights"/> (non-negative, not all zero).</summary>
    public int NextWeighted(ReadOnlySpan<double> weights)
    {
        double total = 0;
        foreach (var w in weights)
        {
            if (!(w >= 0) || double.IsInfinity(w)) throw new ArgumentException("weights must be finite and non-negative", nameof(weights));
            total += w;
        }
        if (!(total > 0)) throw new ArgumentException("weights must not all be zero", nameof(weights));
        double u = NextDouble() * total, acc = 0;
        int last = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] == 0) continue;
            acc += weights[i];
            last = i;
            if (u < acc) return i;
        }
        return last;   // rounding: u landed at the very end
    }
}
