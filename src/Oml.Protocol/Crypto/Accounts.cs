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
        if (r.Sign <= 0 || r >= Secp256k1Curve.N) throw new ArgumentException("signature r is not in [1, n-1]", nameof(r));
        if (s.Sign <= 0 || s >= Secp256k1Curve.N) throw new ArgumentException("signature s is not in [1, n-1]", nameof(s));
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
    public bool IsLowS => S <= Secp256k1Curve.HalfN;

    /// <summary>Reads r ‖ s ‖ v (65 bytes); v may be 27/28 or 0/1. Throws <see cref="ArgumentException"/> when r or s is out of range.</summary>
    public static Signature FromBytes(ReadOnlySpan<byte> rsv65)
    {
        if (rsv65.Length != 65) throw new ArgumentException($"a signature is 65 bytes (r ‖ s ‖ v), not {rsv65.Length}", nameof(rsv65));
        return new Signature(Secp256k1Curve.ScalarFromBytes(rsv65[..32]), Secp256k1Curve.ScalarFromBytes(rsv65[32..64]), rsv65[64]);
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
        Secp256k1Curve.ScalarToBytes(R, b.AsSpan(0, 32));
        Secp256k1Curve.ScalarToBytes(S, b.AsSpan(32, 32));
        b[64] = V;
        return b;
    }

    public string ToHex() => "0x" + Convert.ToHexStringLower(ToBytes());

    public override string ToString() => ToHex();
}

/// <summary>A secp256k1 private key. Zeroes its bytes on dispose.</summary>
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
        var d = Secp256k1Curve.ScalarFromBytes(key32);
        return d.Sign > 0 && d < Secp256k1Curve.N;
    }

    /// <summary>The uncompressed public key without the 0x04 prefix (64 bytes).</summary>
    public byte[] PublicKey
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_publicKey is null)
            {
                var q = Secp256k1Curve.ToAffine(Secp256k1Curve.MulG(_key));
                var pub = new byte[64];
                q.X.WriteBytes(pub.AsSpan(0, 32));
                q.Y.WriteBytes(pub.AsSpan(32, 32));
                _publicKey = pub;
            }
            return (byte[])_publicKey.Clone();
        }
    }

    public Address Address => Address.FromPublicKey(PublicKey);

    /// <summary>Signs a 32-byte digest (RFC 6979 deterministic nonce, low-s).</summary>
    /// <remarks>
    /// Not constant-time: the nonce multiplication skips zero nibbles and BigInteger arithmetic is variable-time, so an
    /// observer able to time many signatures precisely could learn about the nonces. Sign where such timing is not observable.
    /// </remarks>
    public Signature SignDigest(ReadOnlySpan<byte> digest32)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (digest32.Length != 32) throw new ArgumentException($"a digest is 32 bytes, not {digest32.Length}", nameof(digest32));
        var n = Secp256k1Curve.N;
        var d = Secp256k1Curve.ScalarFromBytes(_key);
        // The digest as an integer: 256 bits = qlen, so bits2int is the identity; reduce mod n for the arithmetic.
        var z = Secp256k1Curve.ScalarFromBytes(digest32) % n;
        var nonces = new Rfc6979(_key, digest32);
        Span<byte> k32 = stackalloc byte[32];
        while (true)
        {
            nonces.Next(k32);
            var k = Secp256k1Curve.ScalarFromBytes(k32);
            var point = Secp256k1Curve.ToAffine(Secp256k1Curve.MulG(k32));
            var x = point.X.ToBigInteger();
            // x >= n would need a recovery id that v = 27/28 cannot carry (probability ~2^-128): take the next nonce.
            if (x >= n) continue;
            var r = x;
            if (r.IsZero) continue;
            var s = Secp256k1Curve.InvertModN(k) * (z + r * d) % n;
            if (s.IsZero) continue;
            int recid = point.Y.IsOdd ? 1 : 0;
            if (s > Secp256k1Curve.HalfN) { s = n - s; recid ^= 1; }
            CryptographicOperations.ZeroMemory(k32);
            return new Signature(r, s, (byte)(27 + recid));
        }
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

/// <summary>
/// RFC 6979 section 3.2 deterministic nonces with HMAC-SHA256 for secp256k1 (qlen = hlen = 256, so bits2int is the
/// identity and bits2octets(h) = (h mod n) as 32 bytes). Successive calls to <see cref="Next"/> give the candidates of
/// step h in order.
/// </summary>
internal sealed class Rfc6979
{
    private readonly byte[] _k = new byte[32];
    private readonly byte[] _v = new byte[32];
    private bool _first = true;

    public Rfc6979(ReadOnlySpan<byte> privateKey32, ReadOnlySpan<byte> digest32)
    {
        var h = Secp256k1Curve.ScalarFromBytes(digest32) % Secp256k1Curve.N;
        Span<byte> h1 = stackalloc byte[32];
        Secp256k1Curve.ScalarToBytes(h, h1);
        Array.Fill(_v, (byte)0x01);                      // step b
        Array.Clear(_k);                                 // step c
        var buf = new byte[32 + 1 + 32 + 32];
        try
        {
            foreach (byte sep in new byte[] { 0x00, 0x01 })  // steps d-e and f-g
            {
                _v.CopyTo(buf, 0);
                buf[32] = sep;
                privateKey32.CopyTo(buf.AsSpan(33));
                h1.CopyTo(buf.AsSpan(65));
                HMACSHA256.HashData(_k, buf, _k);
                HMACSHA256.HashData(_k, _v, _v);
            }
        }
        finally { CryptographicOperations.ZeroMemory(buf); }
    }

    /// <summary>The next candidate k (step h); values outside [1, n-1] are skipped here.</summary>
    public void Next(Span<byte> k32)
    {
        Span<byte> buf = stackalloc byte[33];
        while (true)
        {
            if (!_first)
            {
                _v.CopyTo(buf);
                buf[32] = 0x00;
                HMACSHA256.HashData(_k, buf, _k);
                HMACSHA256.HashData(_k, _v, _v);
            }
            _first = false;
            HMACSHA256.HashData(_k, _v, _v);
            var k = Secp256k1Curve.ScalarFromBytes(_v);
            if (k.Sign > 0 && k < Secp256k1Curve.N) { _v.CopyTo(k32); return; }
        }
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
        var error = TryRecoverPoint(digest32, signature, out var q);
        if (error is not null) throw new ArgumentException($"invalid signature: {error}");
        var pub = new byte[64];
        q.X.WriteBytes(pub.AsSpan(0, 32));
        q.Y.WriteBytes(pub.AsSpan(32, 32));
        return pub;
    }

    private static string? TryRecoverCore(ReadOnlySpan<byte> digest32, Signature signature, out Address signer)
    {
        signer = default;
        var error = TryRecoverPoint(digest32, signature, out var q);
        if (error is not null) return error;
        Span<byte> pub = stackalloc byte[64];
        q.X.WriteBytes(pub[..32]);
        q.Y.WriteBytes(pub[32..]);
        signer = Address.FromPublicKey(pub);
        return null;
    }

    private static string? TryRecoverPoint(ReadOnlySpan<byte> digest32, Signature signature, out AffinePoint q)
    {
        q = default;
        ArgumentNullException.ThrowIfNull(signature);
        if (digest32.Length != 32) return $"the digest is {digest32.Length} bytes, not 32";
        var n = Secp256k1Curve.N;
        BigInteger r = signature.R, s = signature.S;
        if (r.Sign <= 0 || r >= n) return "r is not in [1, n-1]";
        if (s.Sign <= 0 || s >= n) return "s is not in [1, n-1]";
        if (s > Secp256k1Curve.HalfN) return "s is high (above n/2); only low-s signatures are accepted";
        if (signature.V is not (27 or 28)) return "v is not 27 or 28";
        // R = (r, y) with y's parity from v; r < n < p, so r is a valid x coordinate if x^3 + 7 is a square.
        if (!Secp256k1Curve.TryLift(FieldElement.FromBigInteger(r), signature.V == 28, out var rPoint)) return "r is not the x coordinate of a curve point";
        // Q = r^-1 (s R - z G) = u1 G + u2 R with u1 = -z / r, u2 = s / r (mod n).
        var z = Secp256k1Curve.ScalarFromBytes(digest32) % n;
        var rInv = Secp256k1Curve.InvertModN(r);
        var u1 = Secp256k1Curve.Mod(-z * rInv, n);
        var u2 = s * rInv % n;
        var sum = Secp256k1Curve.Add(Secp256k1Curve.MulG(Secp256k1Curve.ScalarToBytes(u1)), Secp256k1Curve.Mul(rPoint, Secp256k1Curve.ScalarToBytes(u2)));
        if (sum.IsInfinity) return "the recovered public key is the point at infinity";
        q = Secp256k1Curve.ToAffine(sum);
        if (!Secp256k1Curve.IsOnCurve(q)) return "the recovered public key is not on the curve";
        return null;
    }
}
