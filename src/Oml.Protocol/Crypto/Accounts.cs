using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Protocol.Crypto;

/// <summary>A 20-byte Ethereum-style account address: the last 20 bytes of Keccak-256 of the uncompressed public key.</summary>
public readonly record struct Address
{
    public const int Length = 20;

    // The 20 bytes, big-endian, as 8 + 8 + 4: plain fields give the record its value equality and a stable hash code.
    private readonly ulong _hi;
    private readonly ulong _mid;
    private readonly uint _lo;

    public Address(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Length) throw new ArgumentException($"an address is {Length} bytes, not {bytes.Length}", nameof(bytes));
        _hi = BinaryPrimitives.ReadUInt64BigEndian(bytes[..8]);
        _mid = BinaryPrimitives.ReadUInt64BigEndian(bytes.Slice(8, 8));
        _lo = BinaryPrimitives.ReadUInt32BigEndian(bytes.Slice(16, 4));
    }

    public ReadOnlySpan<byte> Bytes => ToArray();

    public byte[] ToArray()
    {
        var b = new byte[Length];
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(0, 8), _hi);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8, 8), _mid);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16, 4), _lo);
        return b;
    }

    /// <summary>Parses "0x" + 40 hex digits; mixed case must match the EIP-55 checksum.</summary>
    public static Address Parse(string text)
    {
        var error = TryParseCore(text, out var address);
        return error is null ? address : throw new FormatException(error);
    }

    public static bool TryParse(string? text, out Address address) => TryParseCore(text, out address) is null;

    private static string? TryParseCore(string? text, out Address address)
    {
        address = default;
        if (text is null) return "no address given";
        if (!text.StartsWith("0x", StringComparison.Ordinal) && !text.StartsWith("0X", StringComparison.Ordinal))
            return $"address '{text}' must start with 0x";
        var hex = text.AsSpan(2);
        if (hex.Length != 2 * Length) return $"address '{text}' must have {2 * Length} hex digits, not {hex.Length}";
        foreach (var c in hex)
            if (!char.IsAsciiHexDigit(c)) return $"address '{text}' holds a non-hex character '{c}'";
        address = new Address(Convert.FromHexString(hex));
        bool hasLower = hex.ContainsAny("abcdef"), hasUpper = hex.ContainsAny("ABCDEF");
        if (hasLower && hasUpper && !hex.SequenceEqual(address.ToString().AsSpan(2)))
        {
            address = default;
            return $"address '{text}' has mixed case that does not match its EIP-55 checksum (expected {new Address(Convert.FromHexString(hex))})";
        }
        return null;
    }

    public static Address FromPublicKey(ReadOnlySpan<byte> uncompressedPublicKey64)
    {
        if (uncompressedPublicKey64.Length != 64)
            throw new ArgumentException($"an uncompressed public key without its 0x04 prefix is 64 bytes, not {uncompressedPublicKey64.Length}", nameof(uncompressedPublicKey64));
        Span<byte> hash = stackalloc byte[Keccak256.HashLength];
        Keccak256.Hash(uncompressedPublicKey64, hash);
        return new Address(hash[12..]);
    }

    /// <summary>EIP-55 checksummed "0x..." form.</summary>
    public override string ToString()
    {
        // EIP-55: hex digit i is upper-cased when nibble i of keccak256(lower-case hex as ASCII) is >= 8.
        var lower = Convert.ToHexStringLower(ToArray());
        var hash = Keccak256.Hash(Encoding.ASCII.GetBytes(lower));
        var sb = new StringBuilder("0x", 2 + 2 * Length);
        for (int i = 0; i < lower.Length; i++)
        {
            int nibble = (i & 1) == 0 ? hash[i >> 1] >> 4 : hash[i >> 1] & 0xF;
            sb.Append(nibble >= 8 ? char.ToUpperInvariant(lower[i]) : lower[i]);
        }
        return sb.ToString();
    }
}

/// <summary>A recoverable secp256k1 signature: r, s (low-s normalised) and v in {27, 28}; 65 bytes r ‖ s ‖ v.</summary>
public sealed record Signature
{
    public Signature(BigInteger r, BigInteger s, byte v)
    {
        if (r.Sign <= 0 || r >= Secp256k1Order.N) throw new ArgumentException("signature r is not in [1, n-1]", nameof(r));
        if (s.Sign <= 0 || s >= Secp256k1Order.N) throw new ArgumentException("signature s is not in [1, n-1]", nameof(s));
        if (v is 0 or 1) v += 27;
        if (v is not (27 or 28)) throw new ArgumentException($"signature v must be 27 or 28 (or 0 or 1), not {v}", nameof(v));
        (R, S, V) = (r, s, v);
    }

    public BigInteger R { get; }
    /// <summary>s; a signature parsed from elsewhere may carry a high s, which <see cref="Secp256k1.Recover"/> rejects.</summary>
    public BigInteger S { get; }
    public byte V { get; }
    /// <summary>The recovery id: the parity of the y coordinate of the nonce point (V - 27).</summary>
    public int RecoveryId => V - 27;
    /// <summary>s ≤ n/2, the canonical form this library signs in and accepts.</summary>
    public bool IsLowS => S <= Secp256k1Order.HalfN;

    /// <summary>Reads r ‖ s ‖ v (65 bytes); v may be 27/28 or 0/1. Throws <see cref="ArgumentException"/> when r or s is out of range.</summary>
    public static Signature FromBytes(ReadOnlySpan<byte> rsv65)
    {
        if (rsv65.Length != 65) throw new ArgumentException($"a signature is 65 bytes (r ‖ s ‖ v), not {rsv65.Length}", nameof(rsv65));
        return new Signature(Secp256k1Order.ScalarFromBytes(rsv65[..32]), Secp256k1Order.ScalarFromBytes(rsv65[32..64]), rsv65[64]);
    }

    /// <summary>Parses 130 hex digits, with or without a 0x prefix.</summary>
    public static Signature Parse(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        var h = hex.Trim();
        if (h.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) h = h[2..];
        if (h.Length != 130) throw new ArgumentException($"a signature is 130 hex digits (65 bytes), not {h.Length}", nameof(hex));
        byte[] bytes;
        try { bytes = Convert.FromHexString(h); }
        catch (FormatException) { throw new ArgumentException("the signature is not hex", nameof(hex)); }
        return FromBytes(bytes);
    }

    public byte[] ToBytes()
    {
        var b = new byte[65];
        Secp256k1Order.ScalarToBytes(R, b.AsSpan(0, 32));
        Secp256k1Order.ScalarToBytes(S, b.AsSpan(32, 32));
        b[64] = V;
        return b;
    }

    public string ToHex() => "0x" + Convert.ToHexStringLower(ToBytes());

    public override string ToString() => ToHex();
}

/// <summary>
/// A secp256k1 private key. Zeroes its bytes on dispose. The curve arithmetic is NBitcoin.Secp256k1 (a C# port of
/// libsecp256k1: constant-time signing, side-channel hardened); this type keeps the protocol's typed API.
/// </summary>
public sealed class PrivateKey : IDisposable
{
    private readonly byte[] _key = new byte[32];
    private byte[]? _publicKey;
    private bool _disposed;

    private PrivateKey(ReadOnlySpan<byte> key32) => key32.CopyTo(_key);

    public static PrivateKey Generate()
    {
        Span<byte> buf = stackalloc byte[32];
        try
        {
            while (true)
            {
                RandomNumberGenerator.Fill(buf);
                if (IsValid(buf)) return new PrivateKey(buf);
            }
        }
        finally { CryptographicOperations.ZeroMemory(buf); }
    }

    public static PrivateKey FromBytes(ReadOnlySpan<byte> key32)
    {
        if (key32.Length != 32) throw new ArgumentException($"a private key is 32 bytes, not {key32.Length}", nameof(key32));
        if (!IsValid(key32)) throw new ArgumentException("a private key must be in [1, n-1] (n: the secp256k1 group order)", nameof(key32));
        return new PrivateKey(key32);
    }

    /// <summary>Parses 64 hex digits, with or without 0x.</summary>
    public static PrivateKey FromHex(string hex)
    {
        var h = hex.Trim();
        if (h.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) h = h[2..];
        if (h.Length != 64 || !h.All(char.IsAsciiHexDigit)) throw new ArgumentException("a private key is 64 hex digits");
        var b = Convert.FromHexString(h);
        try { return FromBytes(b); }
        finally { CryptographicOperations.ZeroMemory(b); }
    }

    private static bool IsValid(ReadOnlySpan<byte> key32)
    {
        if (!NBitcoin.Secp256k1.ECPrivKey.TryCreate(key32, out var k)) return false;
        k!.Dispose();
        return true;
    }

    private NBitcoin.Secp256k1.ECPrivKey Native()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return NBitcoin.Secp256k1.ECPrivKey.Create(_key);
    }

    /// <summary>The uncompressed public key without the 0x04 prefix (64 bytes).</summary>
    public byte[] PublicKey
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_publicKey is null)
            {
                using var k = Native();
                Span<byte> full = stackalloc byte[65];
                k.CreatePubKey().WriteToSpan(compressed: false, full, out int length);
                if (length != 65) throw new CryptographicException("the public key did not serialise to 65 bytes");
                _publicKey = full[1..].ToArray();
            }
            return (byte[])_publicKey.Clone();
        }
    }

    public Address Address => Address.FromPublicKey(PublicKey);

    /// <summary>Signs a 32-byte digest (RFC 6979 deterministic nonce with HMAC-SHA256, low-s), in constant time.</summary>
    public Signature SignDigest(ReadOnlySpan<byte> digest32)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (digest32.Length != 32) throw new ArgumentException($"a digest is 32 bytes, not {digest32.Length}", nameof(digest32));
        using var k = Native();
        if (!k.TrySignRecoverable(digest32, out var sig) || sig is null) throw new CryptographicException("secp256k1 signing failed");
        Span<byte> rs = stackalloc byte[64];
        sig.WriteToSpanCompact(rs, out int recid);
        // A recovery id of 2 or 3 (the nonce point's x at or above n, probability ~2^-128) cannot be carried by v = 27/28.
        if (recid is not (0 or 1)) throw new CryptographicException("the signature needs a recovery id that v cannot carry (x >= n); sign another digest");
        var r = Secp256k1Order.ScalarFromBytes(rs[..32]);
        var s = Secp256k1Order.ScalarFromBytes(rs[32..]);
        // libsecp256k1 always signs in low-s form; normalise anyway so the invariant does not rest on that.
        if (s > Secp256k1Order.HalfN) { s = Secp256k1Order.N - s; recid ^= 1; }
        return new Signature(r, s, (byte)(27 + recid));
    }

    public byte[] ExportBytes()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return (byte[])_key.Clone();
    }

    public void Dispose()
    {
        if (_disposed) return;
        CryptographicOperations.ZeroMemory(_key);
        _disposed = true;
    }
}

/// <summary>The secp256k1 group order and scalar encodings (big-endian, 32 bytes).</summary>
internal static class Secp256k1Order
{
    public static readonly BigInteger N = BigInteger.Parse("0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", System.Globalization.NumberStyles.HexNumber);
    public static readonly BigInteger HalfN = N >> 1;

    public static BigInteger ScalarFromBytes(ReadOnlySpan<byte> be32) => new(be32, isUnsigned: true, isBigEndian: true);

    public static void ScalarToBytes(BigInteger v, Span<byte> be32)
    {
        be32.Clear();
        if (!v.TryWriteBytes(be32[(32 - v.GetByteCount(isUnsigned: true))..], out _, isUnsigned: true, isBigEndian: true))
            throw new ArgumentOutOfRangeException(nameof(v), "a scalar is at most 32 bytes");
    }
}

public static class Secp256k1
{
    /// <summary>The signer's address recovered from a digest and signature; throws <see cref="ArgumentException"/> for an invalid signature.</summary>
    public static Address Recover(ReadOnlySpan<byte> digest32, Signature signature)
    {
        var error = TryRecoverCore(digest32, signature, out var signer);
        return error is null ? signer : throw new ArgumentException($"invalid signature: {error}");
    }

    public static bool TryRecover(ReadOnlySpan<byte> digest32, Signature signature, out Address signer) =>
        TryRecoverCore(digest32, signature, out signer) is null;

    /// <summary>The uncompressed public key (64 bytes) that made the signature; throws <see cref="ArgumentException"/> for an invalid one.</summary>
    public static byte[] RecoverPublicKey(ReadOnlySpan<byte> digest32, Signature signature)
    {
        var pub = new byte[64];
        var error = TryRecoverPoint(digest32, signature, pub);
        return error is null ? pub : throw new ArgumentException($"invalid signature: {error}");
    }

    private static string? TryRecoverCore(ReadOnlySpan<byte> digest32, Signature signature, out Address signer)
    {
        signer = default;
        Span<byte> pub = stackalloc byte[64];
        var error = TryRecoverPoint(digest32, signature, pub);
        if (error is not null) return error;
        signer = Address.FromPublicKey(pub);
        return null;
    }

    private static string? TryRecoverPoint(ReadOnlySpan<byte> digest32, Signature signature, Span<byte> pub64)
    {
        ArgumentNullException.ThrowIfNull(signature);
        if (digest32.Length != 32) return $"the digest is {digest32.Length} bytes, not 32";
        var n = Secp256k1Order.N;
        if (signature.R.Sign <= 0 || signature.R >= n) return "r is not in [1, n-1]";
        if (signature.S.Sign <= 0 || signature.S >= n) return "s is not in [1, n-1]";
        if (signature.S > Secp256k1Order.HalfN) return "s is high (above n/2); only low-s signatures are accepted";
        if (signature.V is not (27 or 28)) return "v is not 27 or 28";
        Span<byte> rs = stackalloc byte[64];
        Secp256k1Order.ScalarToBytes(signature.R, rs[..32]);
        Secp256k1Order.ScalarToBytes(signature.S, rs[32..]);
        if (!NBitcoin.Secp256k1.SecpRecoverableECDSASignature.TryCreateFromCompact(rs, signature.V - 27, out var sig) || sig is null)
            return "r or s is not a valid scalar";
        if (!NBitcoin.Secp256k1.ECPubKey.TryRecover(NBitcoin.Secp256k1.Context.Instance, sig, digest32, out var key) || key is null)
            return "no public key recovers from it (r is not the x coordinate of a curve point, or the result is the point at infinity)";
        Span<byte> full = stackalloc byte[65];
        key.WriteToSpan(compressed: false, full, out int length);
        if (length != 65) return "the recovered public key did not serialise to 65 bytes";
        full[1..].CopyTo(pub64);
        return null;
    }
}
