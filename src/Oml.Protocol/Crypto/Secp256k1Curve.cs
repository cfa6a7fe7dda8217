using System.Numerics;

namespace Oml.Protocol.Crypto;

/// <summary>An affine point of secp256k1 (never the point at infinity).</summary>
internal readonly record struct AffinePoint(FieldElement X, FieldElement Y);

/// <summary>A point in Jacobian coordinates: (X / Z^2, Y / Z^3); Z = 0 is the point at infinity.</summary>
internal readonly record struct JacobianPoint(FieldElement X, FieldElement Y, FieldElement Z)
{
    public static readonly JacobianPoint Infinity = new(FieldElement.One, FieldElement.One, FieldElement.Zero);
    public bool IsInfinity => Z.IsZero;
    public static JacobianPoint From(in AffinePoint p) => new(p.X, p.Y, FieldElement.One);
}

/// <summary>
/// The curve y^2 = x^3 + 7 over GF(p) (SEC 2, section 2.4.1): point arithmetic in Jacobian coordinates and scalar
/// multiplication (a precomputed 4-bit fixed-window table for the generator, a 4-bit window for other points).
/// Not constant-time: the time of a multiplication depends on the scalar's nibbles.
/// </summary>
internal static class Secp256k1Curve
{
    public static readonly BigInteger PInt = BigInteger.Parse("0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F", System.Globalization.NumberStyles.HexNumber);
    public static readonly BigInteger N = BigInteger.Parse("0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", System.Globalization.NumberStyles.HexNumber);
    public static readonly BigInteger HalfN = N >> 1;

    public static readonly AffinePoint G = new(
        FieldElement.FromBigInteger(BigInteger.Parse("079BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", System.Globalization.NumberStyles.HexNumber)),
        FieldElement.FromBigInteger(BigInteger.Parse("0483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", System.Globalization.NumberStyles.HexNumber)));

    private static readonly FieldElement Seven = new(7, 0, 0, 0);

    public static bool IsOnCurve(in AffinePoint p) =>
        FieldElement.Square(p.Y) == FieldElement.Add(FieldElement.Mul(FieldElement.Square(p.X), p.X), Seven);

    /// <summary>The point with this x and the y of the given parity; false when x^3 + 7 has no square root.</summary>
    public static bool TryLift(in FieldElement x, bool oddY, out AffinePoint point)
    {
        var rhs = FieldElement.Add(FieldElement.Mul(FieldElement.Square(x), x), Seven);
        if (!FieldElement.TrySqrt(rhs, out var y)) { point = default; return false; }
        if (y.IsOdd != oddY) y = FieldElement.Negate(y);
        point = new AffinePoint(x, y);
        return true;
    }

    // dbl-2009-l (a = 0), from the Explicit-Formulas Database (hyperelliptic.org/EFD/g1p/auto-shortw-jacobian-0.html).
    public static JacobianPoint Double(in JacobianPoint p)
    {
        if (p.IsInfinity || p.Y.IsZero) return JacobianPoint.Infinity;
        var a = FieldElement.Square(p.X);
        var b = FieldElement.Square(p.Y);
        var c = FieldElement.Square(b);
        var xb = FieldElement.Add(p.X, b);
        var d = FieldElement.MulSmall(FieldElement.Sub(FieldElement.Sub(FieldElement.Square(xb), a), c), 2);
        var e = FieldElement.MulSmall(a, 3);
        var f = FieldElement.Square(e);
        var x3 = FieldElement.Sub(f, FieldElement.MulSmall(d, 2));
        var y3 = FieldElement.Sub(FieldElement.Mul(e, FieldElement.Sub(d, x3)), FieldElement.MulSmall(c, 8));
        var z3 = FieldElement.MulSmall(FieldElement.Mul(p.Y, p.Z), 2);
        return new JacobianPoint(x3, y3, z3);
    }

    // add-2007-bl (EFD), with the equal-point and opposite-point cases handled.
    public static JacobianPoint Add(in JacobianPoint p, in JacobianPoint q)
    {
        if (p.IsInfinity) return q;
        if (q.IsInfinity) return p;
        var z1z1 = FieldElement.Square(p.Z);
        var z2z2 = FieldElement.Square(q.Z);
        var u1 = FieldElement.Mul(p.X, z2z2);
        var u2 = FieldElement.Mul(q.X, z1z1);
        var s1 = FieldElement.Mul(FieldElement.Mul(p.Y, q.Z), z2z2);
        var s2 = FieldElement.Mul(FieldElement.Mul(q.Y, p.Z), z1z1);
        var h = FieldElement.Sub(u2, u1);
        var rr = FieldElement.Sub(s2, s1);
        if (h.IsZero) return rr.IsZero ? Double(p) : JacobianPoint.Infinity;
        var i = FieldElement.Square(FieldElement.MulSmall(h, 2));
        var j = FieldElement.Mul(h, i);
        var r = FieldElement.MulSmall(rr, 2);
        var v = FieldElement.Mul(u1, i);
        var x3 = FieldElement.Sub(FieldElement.Sub(FieldElement.Square(r), j), FieldElement.MulSmall(v, 2));
        var y3 = FieldElement.Sub(FieldElement.Mul(r, FieldElement.Sub(v, x3)), FieldElement.MulSmall(FieldElement.Mul(s1, j), 2));
        var zs = FieldElement.Add(p.Z, q.Z);
        var z3 = FieldElement.Mul(FieldElement.Sub(FieldElement.Sub(FieldElement.Square(zs), z1z1), z2z2), h);
        return new JacobianPoint(x3, y3, z3);
    }

    // madd-2007-bl (EFD): q affine (Z2 = 1).
    public static JacobianPoint AddMixed(in JacobianPoint p, in AffinePoint q)
    {
        if (p.IsInfinity) return JacobianPoint.From(q);
        var z1z1 = FieldElement.Square(p.Z);
        var u2 = FieldElement.Mul(q.X, z1z1);
        var s2 = FieldElement.Mul(FieldElement.Mul(q.Y, p.Z), z1z1);
        var h = FieldElement.Sub(u2, p.X);
        var rr = FieldElement.Sub(s2, p.Y);
        if (h.IsZero) return rr.IsZero ? Double(p) : JacobianPoint.Infinity;
        var hh = FieldElement.Square(h);
        var i = FieldElement.MulSmall(hh, 4);
        var j = FieldElement.Mul(h, i);
        var r = FieldElement.MulSmall(rr, 2);
        var v = FieldElement.Mul(p.X, i);
        var x3 = FieldElement.Sub(FieldElement.Sub(FieldElement.Square(r), j), FieldElement.MulSmall(v, 2));
        var y3 = FieldElement.Sub(FieldElement.Mul(r, FieldElement.Sub(v, x3)), FieldElement.MulSmall(FieldElement.Mul(p.Y, j), 2));
        var zh = FieldElement.Add(p.Z, h);
        var z3 = FieldElement.Sub(FieldElement.Sub(FieldElement.Square(zh), z1z1), hh);
        return new JacobianPoint(x3, y3, z3);
    }

    public static AffinePoint ToAffine(in JacobianPoint p)
    {
        if (p.IsInfinity) throw new InvalidOperationException("the point at infinity has no affine form");
        var zi = FieldElement.Invert(p.Z);
        var zi2 = FieldElement.Square(zi);
        return new AffinePoint(FieldElement.Mul(p.X, zi2), FieldElement.Mul(p.Y, FieldElement.Mul(zi2, zi)));
    }

    /// <summary>Converts many points with one field inversion (Montgomery's trick); none may be infinity.</summary>
    public static AffinePoint[] ToAffine(ReadOnlySpan<JacobianPoint> points)
    {
        var prefix = new FieldElement[points.Length];
        var acc = FieldElement.One;
        for (int i = 0; i < points.Length; i++)
        {
            if (points[i].IsInfinity) throw new InvalidOperationException("the point at infinity has no affine form");
            prefix[i] = acc;
            acc = FieldElement.Mul(acc, points[i].Z);
        }
        var inv = FieldElement.Invert(acc);
        var result = new AffinePoint[points.Length];
        for (int i = points.Length - 1; i >= 0; i--)
        {
            var zi = FieldElement.Mul(inv, prefix[i]);
            inv = FieldElement.Mul(inv, points[i].Z);
            var zi2 = FieldElement.Square(zi);
            result[i] = new AffinePoint(FieldElement.Mul(points[i].X, zi2), FieldElement.Mul(points[i].Y, FieldElement.Mul(zi2, zi)));
        }
        return result;
    }

    /// <summary>GTable[16 * i + j] = j * 16^i * G for the 64 nibble positions i and digits j = 1..15 (j = 0 unused).</summary>
    private static readonly Lazy<AffinePoint[]> GTable = new(BuildGeneratorTable);

    private static AffinePoint[] BuildGeneratorTable()
    {
        var jac = new JacobianPoint[64 * 16];
        var b = JacobianPoint.From(G);
        for (int i = 0; i < 64; i++)
        {
            jac[16 * i] = JacobianPoint.From(G); // filler for the unused digit 0 (keeps the batch free of infinity)
            jac[16 * i + 1] = b;
            for (int j = 2; j < 16; j++) jac[16 * i + j] = Add(jac[16 * i + j - 1], b);
            b = Add(jac[16 * i + 15], b); // 16 * b
        }
        return ToAffine(jac);
    }

    /// <summary>Nibble i (0 = least significant) of a 32-byte big-endian scalar.</summary>
    private static int Nibble(ReadOnlySpan<byte> be32, int i)
    {
        byte b = be32[31 - (i >> 1)];
        return (i & 1) == 0 ? b & 0xF : b >> 4;
    }

    /// <summary>k * G for a scalar given as 32 big-endian bytes: 64 mixed additions from the table, no doublings.</summary>
    public static JacobianPoint MulG(ReadOnlySpan<byte> k32)
    {
        var table = GTable.Value;
        var acc = JacobianPoint.Infinity;
        for (int i = 0; i < 64; i++)
        {
            int d = Nibble(k32, i);
            if (d != 0) acc = AddMixed(acc, table[16 * i + d]);
        }
        return acc;
    }

    /// <summary>k * P for any point, with a 4-bit window (15 precomputed multiples, 252 doublings, ≤ 64 additions).</summary>
    public static JacobianPoint Mul(in AffinePoint p, ReadOnlySpan<byte> k32)
    {
        Span<JacobianPoint> multiples = stackalloc JacobianPoint[16];
        multiples[0] = JacobianPoint.Infinity;
        multiples[1] = JacobianPoint.From(p);
        for (int j = 2; j < 16; j++) multiples[j] = (j & 1) == 0 ? Double(multiples[j / 2]) : AddMixed(multiples[j - 1], p);
        var acc = JacobianPoint.Infinity;
        for (int i = 63; i >= 0; i--)
        {
            if (!acc.IsInfinity) { acc = Double(acc); acc = Double(acc); acc = Double(acc); acc = Double(acc); }
            int d = Nibble(k32, i);
            if (d != 0) acc = Add(acc, multiples[d]);
        }
        return acc;
    }

    public static BigInteger ScalarFromBytes(ReadOnlySpan<byte> be32) => new(be32, isUnsigned: true, isBigEndian: true);

    /// <summary>A non-negative integer below 2^256 as 32 big-endian bytes.</summary>
    public static void ScalarToBytes(BigInteger v, Span<byte> be32)
    {
        be32.Clear();
        int len = v.GetByteCount(isUnsigned: true);
        if (v.Sign < 0 || len > 32) throw new ArgumentOutOfRangeException(nameof(v));
        v.TryWriteBytes(be32[(32 - len)..], out _, isUnsigned: true, isBigEndian: true);
    }

    public static byte[] ScalarToBytes(BigInteger v)
    {
        var b = new byte[32];
        ScalarToBytes(v, b);
        return b;
    }

    public static BigInteger Mod(BigInteger v, BigInteger m) { var r = v % m; return r.Sign < 0 ? r + m : r; }

    /// <summary>1/a mod n by the extended Euclidean algorithm (a not a multiple of n).</summary>
    public static BigInteger InvertModN(BigInteger a)
    {
        BigInteger t = BigInteger.Zero, newT = BigInteger.One, r = N, newR = Mod(a, N);
        if (newR.IsZero) throw new ArgumentException("zero has no inverse mod n", nameof(a));
        while (!newR.IsZero)
        {
            var q = BigInteger.DivRem(r, newR, out var rem);
            (t, newT) = (newT, t - q * newT);
            (r, newR) = (newR, rem);
        }
        return t.Sign < 0 ? t + N : t;
    }
}
