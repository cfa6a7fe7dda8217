using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Oml.Protocol.Crypto;

/// <summary>
/// An element of GF(p), p = 2^256 - 2^32 - 977 (secp256k1's field), as four little-endian 64-bit limbs, always fully
/// reduced (value &lt; p). Products reduce with 2^256 ≡ 2^32 + 977 (mod p).
/// </summary>
internal readonly struct FieldElement : IEquatable<FieldElement>
{
    public readonly ulong L0, L1, L2, L3;

    /// <summary>2^256 - p = 2^32 + 977.</summary>
    private const ulong C = 0x1000003D1UL;

    public static readonly FieldElement Zero = default;
    public static readonly FieldElement One = new(1, 0, 0, 0);
    public static readonly FieldElement P = new(0xFFFFFFFEFFFFFC2FUL, 0xFFFFFFFFFFFFFFFFUL, 0xFFFFFFFFFFFFFFFFUL, 0xFFFFFFFFFFFFFFFFUL);

    public FieldElement(ulong l0, ulong l1, ulong l2, ulong l3) => (L0, L1, L2, L3) = (l0, l1, l2, l3);

    public bool IsZero => (L0 | L1 | L2 | L3) == 0;
    public bool IsOdd => (L0 & 1) != 0;

    /// <summary>Reads 32 big-endian bytes; false when the value is not below p.</summary>
    public static bool TryFromBytes(ReadOnlySpan<byte> be32, out FieldElement value)
    {
        value = new FieldElement(
            BinaryPrimitives.ReadUInt64BigEndian(be32.Slice(24, 8)), BinaryPrimitives.ReadUInt64BigEndian(be32.Slice(16, 8)),
            BinaryPrimitives.ReadUInt64BigEndian(be32.Slice(8, 8)), BinaryPrimitives.ReadUInt64BigEndian(be32[..8]));
        return LessThan(value, P);
    }

    public void WriteBytes(Span<byte> be32)
    {
        BinaryPrimitives.WriteUInt64BigEndian(be32[..8], L3);
        BinaryPrimitives.WriteUInt64BigEndian(be32.Slice(8, 8), L2);
        BinaryPrimitives.WriteUInt64BigEndian(be32.Slice(16, 8), L1);
        BinaryPrimitives.WriteUInt64BigEndian(be32.Slice(24, 8), L0);
    }

    public static FieldElement FromBigInteger(BigInteger v)
    {
        if (v.Sign < 0 || v >= Secp256k1Curve.PInt) throw new ArgumentOutOfRangeException(nameof(v));
        Span<byte> b = stackalloc byte[32];
        b.Clear();
        v.TryWriteBytes(b, out _, isUnsigned: true, isBigEndian: true);
        // TryWriteBytes writes the minimal big-endian form at the start; shift it to the right end.
        int len = v.GetByteCount(isUnsigned: true);
        Span<byte> full = stackalloc byte[32];
        full.Clear();
        b[..len].CopyTo(full[(32 - len)..]);
        TryFromBytes(full, out var f);
        return f;
    }

    public BigInteger ToBigInteger()
    {
        Span<byte> b = stackalloc byte[32];
        WriteBytes(b);
        return new BigInteger(b, isUnsigned: true, isBigEndian: true);
    }

    private static bool LessThan(in FieldElement a, in FieldElement b)
    {
        if (a.L3 != b.L3) return a.L3 < b.L3;
        if (a.L2 != b.L2) return a.L2 < b.L2;
        if (a.L1 != b.L1) return a.L1 < b.L1;
        return a.L0 < b.L0;
    }

    /// <summary>Adds c * 2^256 back as c * C, for a 256-bit value plus a small carry (&lt; 2^34), then reduces below p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static FieldElement Fold(ulong r0, ulong r1, ulong r2, ulong r3, ulong carry)
    {
        UInt128 t = (UInt128)carry * C + r0;
        r0 = (ulong)t;
        t = (t >> 64) + r1; r1 = (ulong)t;
        t = (t >> 64) + r2; r2 = (ulong)t;
        t = (t >> 64) + r3; r3 = (ulong)t;
        if ((ulong)(t >> 64) != 0)
        {
            // Wrapped past 2^256 once more: the value now is small, so adding C cannot carry out again.
            t = (UInt128)r0 + C; r0 = (ulong)t;
            t = (t >> 64) + r1; r1 = (ulong)t;
            t = (t >> 64) + r2; r2 = (ulong)t;
            r3 += (ulong)(t >> 64);
        }
        return ReduceOnce(r0, r1, r2, r3);
    }

    /// <summary>Subtracts p once when the 256-bit value is at least p (any 256-bit value is below 2p).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static FieldElement ReduceOnce(ulong r0, ulong r1, ulong r2, ulong r3)
    {
        // value >= p  <=>  value + C >= 2^256.
        UInt128 t = (UInt128)r0 + C;
        ulong s0 = (ulong)t;
        t = (t >> 64) + r1; ulong s1 = (ulong)t;
        t = (t >> 64) + r2; ulong s2 = (ulong)t;
        t = (t >> 64) + r3; ulong s3 = (ulong)t;
        return (ulong)(t >> 64) != 0 ? new FieldElement(s0, s1, s2, s3) : new FieldElement(r0, r1, r2, r3);
    }

    public static FieldElement Add(in FieldElement a, in FieldElement b)
    {
        UInt128 t = (UInt128)a.L0 + b.L0; ulong r0 = (ulong)t;
        t = (t >> 64) + a.L1 + b.L1; ulong r1 = (ulong)t;
        t = (t >> 64) + a.L2 + b.L2; ulong r2 = (ulong)t;
        t = (t >> 64) + a.L3 + b.L3; ulong r3 = (ulong)t;
        return Fold(r0, r1, r2, r3, (ulong)(t >> 64));
    }

    public static FieldElement Sub(in FieldElement a, in FieldElement b)
    {
        ulong r0 = a.L0 - b.L0; ulong borrow = a.L0 < b.L0 ? 1UL : 0UL;
        ulong r1 = a.L1 - b.L1 - borrow; borrow = (a.L1 < b.L1 || (a.L1 == b.L1 && borrow != 0)) ? 1UL : 0UL;
        ulong r2 = a.L2 - b.L2 - borrow; borrow = (a.L2 < b.L2 || (a.L2 == b.L2 && borrow != 0)) ? 1UL : 0UL;
        ulong r3 = a.L3 - b.L3 - borrow; borrow = (a.L3 < b.L3 || (a.L3 == b.L3 && borrow != 0)) ? 1UL : 0UL;
        if (borrow != 0)
        {
            // r = a - b + 2^256; the answer a - b + p is r - C, which is not negative since a - b + p >= 0... and r >= C.
            ulong s0 = r0 - C; ulong bw = r0 < C ? 1UL : 0UL;
            ulong s1 = r1 - bw; bw = (r1 < bw) ? 1UL : 0UL;
            ulong s2 = r2 - bw; bw = (r2 < bw) ? 1UL : 0UL;
            ulong s3 = r3 - bw;
            return new FieldElement(s0, s1, s2, s3);
        }
        return new FieldElement(r0, r1, r2, r3);
    }

    public static FieldElement Negate(in FieldElement a) => a.IsZero ? a : Sub(Zero, a);

    public static FieldElement Mul(in FieldElement a, in FieldElement b)
    {
        // Schoolbook 4x4 limbs into 8, then fold the high half: hi * 2^256 ≡ hi * C.
        ulong t0, t1, t2, t3, t4, t5, t6, t7;
        UInt128 acc;
        acc = (UInt128)a.L0 * b.L0; t0 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L0 * b.L1; t1 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L0 * b.L2; t2 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L0 * b.L3; t3 = (ulong)acc; t4 = (ulong)(acc >> 64);

        acc = (UInt128)a.L1 * b.L0 + t1; t1 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L1 * b.L1 + t2; t2 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L1 * b.L2 + t3; t3 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L1 * b.L3 + t4; t4 = (ulong)acc; t5 = (ulong)(acc >> 64);

        acc = (UInt128)a.L2 * b.L0 + t2; t2 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L2 * b.L1 + t3; t3 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L2 * b.L2 + t4; t4 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L2 * b.L3 + t5; t5 = (ulong)acc; t6 = (ulong)(acc >> 64);

        acc = (UInt128)a.L3 * b.L0 + t3; t3 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L3 * b.L1 + t4; t4 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L3 * b.L2 + t5; t5 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L3 * b.L3 + t6; t6 = (ulong)acc; t7 = (ulong)(acc >> 64);

        return Reduce512(t0, t1, t2, t3, t4, t5, t6, t7);
    }

    public static FieldElement Square(in FieldElement a) => Mul(a, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static FieldElement Reduce512(ulong t0, ulong t1, ulong t2, ulong t3, ulong t4, ulong t5, ulong t6, ulong t7)
    {
        UInt128 acc = (UInt128)t4 * C + t0; ulong r0 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)t5 * C + t1; ulong r1 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)t6 * C + t2; ulong r2 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)t7 * C + t3; ulong r3 = (ulong)acc;
        return Fold(r0, r1, r2, r3, (ulong)(acc >> 64));
    }

    /// <summary>a * small for a small constant (2, 3, 4, 8).</summary>
    public static FieldElement MulSmall(in FieldElement a, uint k)
    {
        UInt128 acc = (UInt128)a.L0 * k; ulong r0 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L1 * k; ulong r1 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L2 * k; ulong r2 = (ulong)acc;
        acc = (acc >> 64) + (UInt128)a.L3 * k; ulong r3 = (ulong)acc;
        return Fold(r0, r1, r2, r3, (ulong)(acc >> 64));
    }

    /// <summary>a^e for a 256-bit exponent given as limbs (left-to-right square and multiply).</summary>
    private static FieldElement Pow(in FieldElement a, ulong e0, ulong e1, ulong e2, ulong e3)
    {
        var result = One;
        ReadOnlySpan<ulong> e = [e3, e2, e1, e0];
        foreach (var limb in e)
            for (int bit = 63; bit >= 0; bit--)
            {
                result = Square(result);
                if (((limb >> bit) & 1) != 0) result = Mul(result, a);
            }
        return result;
    }

    /// <summary>1/a by Fermat (a^(p-2)); the inverse of zero is zero.</summary>
    public static FieldElement Invert(in FieldElement a) =>
        Pow(a, 0xFFFFFFFEFFFFFC2DUL, 0xFFFFFFFFFFFFFFFFUL, 0xFFFFFFFFFFFFFFFFUL, 0xFFFFFFFFFFFFFFFFUL);

    /// <summary>A square root (a^((p+1)/4), valid since p ≡ 3 mod 4); false when a is not a square.</summary>
    public static bool TrySqrt(in FieldElement a, out FieldElement root)
    {
        root = Pow(a, 0xFFFFFFFFBFFFFF0CUL, 0xFFFFFFFFFFFFFFFFUL, 0xFFFFFFFFFFFFFFFFUL, 0x3FFFFFFFFFFFFFFFUL);
        return Square(root) == a;
    }

    public bool Equals(FieldElement other) => L0 == other.L0 && L1 == other.L1 && L2 == other.L2 && L3 == other.L3;
    public override bool Equals(object? obj) => obj is FieldElement f && Equals(f);
    public override int GetHashCode() => HashCode.Combine(L0, L1, L2, L3);
    public static bool operator ==(FieldElement a, FieldElement b) => a.Equals(b);
    public static bool operator !=(FieldElement a, FieldElement b) => !a.Equals(b);
    public override string ToString() => Convert.ToHexStringLower(ToBytes());
    public byte[] ToBytes() { var b = new byte[32]; WriteBytes(b); return b; }
}
