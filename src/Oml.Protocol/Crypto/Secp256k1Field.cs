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

    /// <summary>a * b + c + carry as a 128-bit value: returns the low word, leaves the high word in carry (no overflow: the sum is at most 2^128 - 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong MulAdd(ulong a, ulong b, ulong c, ref ulong carry)
    {
        ulong hi = Math.BigMul(a, b, out ulong lo);
        lo += c;
        hi += lo < c ? 1UL : 0UL;
        lo += carry;
        hi += lo < carry ? 1UL : 0UL;
        carry = hi;
        return lo;
    }

    /// <summary>a + b + carry: returns the sum word, leaves the carry (0 or 1) in carry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong AddCarry(ulong a, ulong b, ref ulong carry)
    {
        ulong s = a + b;
        ulong c1 = s < a ? 1UL : 0UL;
        ulong r = s + carry;
        carry = c1 | (r < s ? 1UL : 0UL);
        return r;
    }

    /// <summary>a - b - borrow: returns the difference word, leaves the borrow (0 or 1) in borrow.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SubBorrow(ulong a, ulong b, ref ulong borrow)
    {
        ulong d = a - b;
        ulong b1 = a < b ? 1UL : 0UL;
        ulong r = d - borrow;
        borrow = b1 | (d < borrow ? 1UL : 0UL);
        return r;
    }

    /// <summary>Adds carry * 2^256 back as carry * C, for a 256-bit value plus a small carry (&lt; 2^35), then reduces below p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static FieldElement Fold(ulong r0, ulong r1, ulong r2, ulong r3, ulong carry)
    {
        ulong hi = Math.BigMul(carry, C, out ulong lo);
        ulong c = 0;
        r0 = AddCarry(r0, lo, ref c);
        r1 = AddCarry(r1, hi, ref c);
        r2 = AddCarry(r2, 0, ref c);
        r3 = AddCarry(r3, 0, ref c);
        if (c != 0)
        {
            // Wrapped past 2^256 once more: the value now is small, so adding C cannot carry out again.
            c = 0;
            r0 = AddCarry(r0, C, ref c);
            r1 = AddCarry(r1, 0, ref c);
            r2 = AddCarry(r2, 0, ref c);
            r3 += c;
        }
        return ReduceOnce(r0, r1, r2, r3);
    }

    /// <summary>Subtracts p once when the 256-bit value is at least p (any 256-bit value is below 2p).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static FieldElement ReduceOnce(ulong r0, ulong r1, ulong r2, ulong r3)
    {
        // value >= p  <=>  value + C >= 2^256; then value - p = value + C - 2^256.
        ulong c = 0;
        ulong s0 = AddCarry(r0, C, ref c);
        ulong s1 = AddCarry(r1, 0, ref c);
        ulong s2 = AddCarry(r2, 0, ref c);
        ulong s3 = AddCarry(r3, 0, ref c);
        return c != 0 ? new FieldElement(s0, s1, s2, s3) : new FieldElement(r0, r1, r2, r3);
    }

    public static FieldElement Add(in FieldElement a, in FieldElement b)
    {
        ulong c = 0;
        ulong r0 = AddCarry(a.L0, b.L0, ref c);
        ulong r1 = AddCarry(a.L1, b.L1, ref c);
        ulong r2 = AddCarry(a.L2, b.L2, ref c);
        ulong r3 = AddCarry(a.L3, b.L3, ref c);
        return Fold(r0, r1, r2, r3, c);
    }

    public static FieldElement Sub(in FieldElement a, in FieldElement b)
    {
        ulong borrow = 0;
        ulong r0 = SubBorrow(a.L0, b.L0, ref borrow);
        ulong r1 = SubBorrow(a.L1, b.L1, ref borrow);
        ulong r2 = SubBorrow(a.L2, b.L2, ref borrow);
        ulong r3 = SubBorrow(a.L3, b.L3, ref borrow);
        if (borrow != 0)
        {
            // r = a - b + 2^256 lies in (C, 2^256); the answer a - b + p is r - C, which is positive and below p.
            ulong bw = 0;
            r0 = SubBorrow(r0, C, ref bw);
            r1 = SubBorrow(r1, 0, ref bw);
            r2 = SubBorrow(r2, 0, ref bw);
            r3 -= bw;
        }
        return new FieldElement(r0, r1, r2, r3);
    }

    public static FieldElement Negate(in FieldElement a) => a.IsZero ? a : Sub(Zero, a);

    public static FieldElement Mul(in FieldElement a, in FieldElement b)
    {
        // Schoolbook 4x4 limbs into 8, then fold the high half: hi * 2^256 ≡ hi * C.
        ulong c = 0;
        ulong t0 = MulAdd(a.L0, b.L0, 0, ref c);
        ulong t1 = MulAdd(a.L0, b.L1, 0, ref c);
        ulong t2 = MulAdd(a.L0, b.L2, 0, ref c);
        ulong t3 = MulAdd(a.L0, b.L3, 0, ref c);
        ulong t4 = c;

        c = 0;
        t1 = MulAdd(a.L1, b.L0, t1, ref c);
        t2 = MulAdd(a.L1, b.L1, t2, ref c);
        t3 = MulAdd(a.L1, b.L2, t3, ref c);
        t4 = MulAdd(a.L1, b.L3, t4, ref c);
        ulong t5 = c;

        c = 0;
        t2 = MulAdd(a.L2, b.L0, t2, ref c);
        t3 = MulAdd(a.L2, b.L1, t3, ref c);
        t4 = MulAdd(a.L2, b.L2, t4, ref c);
        t5 = MulAdd(a.L2, b.L3, t5, ref c);
        ulong t6 = c;

        c = 0;
        t3 = MulAdd(a.L3, b.L0, t3, ref c);
        t4 = MulAdd(a.L3, b.L1, t4, ref c);
        t5 = MulAdd(a.L3, b.L2, t5, ref c);
        t6 = MulAdd(a.L3, b.L3, t6, ref c);
        ulong t7 = c;
        return Reduce512(t0, t1, t2, t3, t4, t5, t6, t7);
    }

    /// <summary>a^2 with each cross product computed once and doubled: 10 limb products instead of 16.</summary>
    public static FieldElement Square(in FieldElement a)
    {
        ulong c = 0;
        ulong t1 = MulAdd(a.L0, a.L1, 0, ref c);
        ulong t2 = MulAdd(a.L0, a.L2, 0, ref c);
        ulong t3 = MulAdd(a.L0, a.L3, 0, ref c);
        ulong t4 = c;
        c = 0;
        t3 = MulAdd(a.L1, a.L2, t3, ref c);
        t4 = MulAdd(a.L1, a.L3, t4, ref c);
        ulong t5 = c;
        c = 0;
        t5 = MulAdd(a.L2, a.L3, t5, ref c);
        ulong t6 = c;

        // Double the cross products (a 448-bit value, so the shift fits in 8 limbs).
        ulong t7 = t6 >> 63;
        t6 = (t6 << 1) | (t5 >> 63);
        t5 = (t5 << 1) | (t4 >> 63);
        t4 = (t4 << 1) | (t3 >> 63);
        t3 = (t3 << 1) | (t2 >> 63);
        t2 = (t2 << 1) | (t1 >> 63);
        t1 <<= 1;

        // Add the squares of the limbs on the diagonal; a^2 < 2^512, so nothing carries out.
        ulong h0 = Math.BigMul(a.L0, a.L0, out ulong t0);
        ulong h1 = Math.BigMul(a.L1, a.L1, out ulong l1);
        ulong h2 = Math.BigMul(a.L2, a.L2, out ulong l2);
        ulong h3 = Math.BigMul(a.L3, a.L3, out ulong l3);
        c = 0;
        t1 = AddCarry(t1, h0, ref c);
        t2 = AddCarry(t2, l1, ref c);
        t3 = AddCarry(t3, h1, ref c);
        t4 = AddCarry(t4, l2, ref c);
        t5 = AddCarry(t5, h2, ref c);
        t6 = AddCarry(t6, l3, ref c);
        t7 = AddCarry(t7, h3, ref c);
        return Reduce512(t0, t1, t2, t3, t4, t5, t6, t7);
    }

    /// <summary>A 512-bit product t reduced mod p: t0..t3 + (t4..t7) * C, then the small carry folded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static FieldElement Reduce512(ulong t0, ulong t1, ulong t2, ulong t3, ulong t4, ulong t5, ulong t6, ulong t7)
    {
        ulong c = 0;
        ulong r0 = MulAdd(t4, C, t0, ref c);
        ulong r1 = MulAdd(t5, C, t1, ref c);
        ulong r2 = MulAdd(t6, C, t2, ref c);
        ulong r3 = MulAdd(t7, C, t3, ref c);
        return Fold(r0, r1, r2, r3, c);
    }

    /// <summary>a * small for a small constant (2, 3, 4, 8).</summary>
    public static FieldElement MulSmall(in FieldElement a, uint k)
    {
        ulong c = 0;
        ulong r0 = MulAdd(a.L0, k, 0, ref c);
        ulong r1 = MulAdd(a.L1, k, 0, ref c);
        ulong r2 = MulAdd(a.L2, k, 0, ref c);
        ulong r3 = MulAdd(a.L3, k, 0, ref c);
        return Fold(r0, r1, r2, r3, c);
    }

    /// <summary>a^(2^n): n squarings.</summary>
    private static FieldElement SquareTimes(FieldElement a, int n)
    {
        for (int i = 0; i < n; i++) a = Square(a);
        return a;
    }

    /// <summary>
    /// The runs of ones both exponents begin with: x^(2^223 - 1) · 2^23 + (2^22 - 1), i.e. binary [223 ones] 0 [22 ones],
    /// built from x^(2^k - 1) for k = 2, 3, 6, 9, 11, 22, 44, 88, 176, 220, 223 (about 245 squarings, 13 multiplications).
    /// </summary>
    private static (FieldElement Head, FieldElement X2) CommonChain(in FieldElement a)
    {
        var x2 = Mul(Square(a), a);
        var x3 = Mul(Square(x2), a);
        var x6 = Mul(SquareTimes(x3, 3), x3);
        var x9 = Mul(SquareTimes(x6, 3), x3);
        var x11 = Mul(SquareTimes(x9, 2), x2);
        var x22 = Mul(SquareTimes(x11, 11), x11);
        var x44 = Mul(SquareTimes(x22, 22), x22);
        var x88 = Mul(SquareTimes(x44, 44), x44);
        var x176 = Mul(SquareTimes(x88, 88), x88);
        var x220 = Mul(SquareTimes(x176, 44), x44);
        var x223 = Mul(SquareTimes(x220, 3), x3);
        return (Mul(SquareTimes(x223, 23), x22), x2);
    }

    /// <summary>1/a by Fermat: a^(p-2), p - 2 = [223 ones] 0 [22 ones] 0000101101 in binary; the inverse of zero is zero.</summary>
    public static FieldElement Invert(in FieldElement a)
    {
        var (t, x2) = CommonChain(a);
        t = Mul(SquareTimes(t, 5), a);   // 00001
        t = Mul(SquareTimes(t, 3), x2);  // 011
        return Mul(SquareTimes(t, 2), a); // 01
    }

    /// <summary>A square root: a^((p+1)/4) (valid since p ≡ 3 mod 4), (p+1)/4 = [223 ones] 0 [22 ones] 00001100; false when a is not a square.</summary>
    public static bool TrySqrt(in FieldElement a, out FieldElement root)
    {
        var (t, x2) = CommonChain(a);
        t = Mul(SquareTimes(t, 6), x2);  // 000011
        root = SquareTimes(t, 2);        // 00
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
