using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace Oml.Protocol.Crypto;

/// <summary>
/// The scrypt key-derivation function (RFC 7914): PBKDF2-HMAC-SHA256 around ROMix, whose BlockMix uses the
/// Salsa20/8 core. Used to read keystores that other wallets wrote with <c>"kdf": "scrypt"</c>.
/// </summary>
public static class Scrypt
{
    /// <summary>The most memory one derivation may take (128 · r · N bytes for ROMix's table): 1 GiB.</summary>
    public const long MaxMemoryBytes = 1L << 30;

    public static byte[] DeriveKey(ReadOnlySpan<byte> password, ReadOnlySpan<byte> salt, int n, int r, int p, int dkLen)
    {
        if (n < 2 || !BitOperations.IsPow2(n)) throw new ArgumentException($"N = {n} must be a power of two greater than 1");
        if (r < 1 || p < 1 || (long)r * p >= 1 << 30) throw new ArgumentException($"r = {r} and p = {p} must be positive with r·p < 2^30");
        if (128L * r * n > MaxMemoryBytes) throw new ArgumentException($"N = {n}, r = {r} would need {128L * r * n >> 20} MiB (limit {MaxMemoryBytes >> 20} MiB)");
        if (dkLen < 1) throw new ArgumentException("dkLen must be positive");

        int blockBytes = 128 * r;
        var b = Rfc2898DeriveBytes.Pbkdf2(password, salt, 1, HashAlgorithmName.SHA256, p * blockBytes);
        var x = new uint[32 * r];
        var v = new uint[32 * r * n];
        var t = new uint[32 * r];
        try
        {
            for (int i = 0; i < p; i++)
            {
                var chunk = b.AsSpan(i * blockBytes, blockBytes);
                for (int w = 0; w < x.Length; w++) x[w] = BinaryPrimitives.ReadUInt32LittleEndian(chunk.Slice(4 * w, 4));
                RoMix(x, v, t, n, r);
                for (int w = 0; w < x.Length; w++) BinaryPrimitives.WriteUInt32LittleEndian(chunk.Slice(4 * w, 4), x[w]);
            }
            return Rfc2898DeriveBytes.Pbkdf2(password, b, 1, HashAlgorithmName.SHA256, dkLen);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(b);
            Array.Clear(v);
            Array.Clear(x);
            Array.Clear(t);
        }
    }

    /// <summary>scryptROMix (RFC 7914 section 5) on x in place.</summary>
    private static void RoMix(uint[] x, uint[] v, uint[] t, int n, int r)
    {
        int words = 32 * r;
        for (int i = 0; i < n; i++)
        {
            Array.Copy(x, 0, v, i * words, words);
            BlockMix(x, t, r);
        }
        for (int i = 0; i < n; i++)
        {
            // Integerify: the first word of the last 64-byte block, mod N (N a power of two; the high word is not needed).
            int j = (int)(x[words - 16] & (uint)(n - 1));
            var vj = v.AsSpan(j * words, words);
            for (int w = 0; w < words; w++) x[w] ^= vj[w];
            BlockMix(x, t, r);
        }
    }

    /// <summary>scryptBlockMix (RFC 7914 section 4) on b (2r blocks of 16 words) in place; t is scratch of the same size.</summary>
    private static void BlockMix(uint[] b, uint[] t, int r)
    {
        Span<uint> x = stackalloc uint[16];
        b.AsSpan(32 * r - 16, 16).CopyTo(x);
        for (int i = 0; i < 2 * r; i++)
        {
            var bi = b.AsSpan(16 * i, 16);
            for (int w = 0; w < 16; w++) x[w] ^= bi[w];
            Salsa20_8(x);
            // Even blocks go to the first half of the output, odd blocks to the second.
            int dest = (i & 1) == 0 ? (i / 2) : (r + i / 2);
            x.CopyTo(t.AsSpan(16 * dest, 16));
        }
        Array.Copy(t, b, 32 * r);
    }

    /// <summary>The Salsa20/8 core (RFC 7914 section 3): 4 double rounds, then the input added back.</summary>
    internal static void Salsa20_8(Span<uint> b)
    {
        uint x0 = b[0], x1 = b[1], x2 = b[2], x3 = b[3], x4 = b[4], x5 = b[5], x6 = b[6], x7 = b[7],
             x8 = b[8], x9 = b[9], x10 = b[10], x11 = b[11], x12 = b[12], x13 = b[13], x14 = b[14], x15 = b[15];
        for (int i = 0; i < 8; i += 2)
        {
            // Column round.
            x4 ^= BitOperations.RotateLeft(x0 + x12, 7); x8 ^= BitOperations.RotateLeft(x4 + x0, 9);
            x12 ^= BitOperations.RotateLeft(x8 + x4, 13); x0 ^= BitOperations.RotateLeft(x12 + x8, 18);
            x9 ^= BitOperations.RotateLeft(x5 + x1, 7); x13 ^= BitOperations.RotateLeft(x9 + x5, 9);
            x1 ^= BitOperations.RotateLeft(x13 + x9, 13); x5 ^= BitOperations.RotateLeft(x1 + x13, 18);
            x14 ^= BitOperations.RotateLeft(x10 + x6, 7); x2 ^= BitOperations.RotateLeft(x14 + x10, 9);
            x6 ^= BitOperations.RotateLeft(x2 + x14, 13); x10 ^= BitOperations.RotateLeft(x6 + x2, 18);
            x3 ^= BitOperations.RotateLeft(x15 + x11, 7); x7 ^= BitOperations.RotateLeft(x3 + x15, 9);
            x11 ^= BitOperations.RotateLeft(x7 + x3, 13); x15 ^= BitOperations.RotateLeft(x11 + x7, 18);
            // Row round.
            x1 ^= BitOperations.RotateLeft(x0 + x3, 7); x2 ^= BitOperations.RotateLeft(x1 + x0, 9);
            x3 ^= BitOperations.RotateLeft(x2 + x1, 13); x0 ^= BitOperations.RotateLeft(x3 + x2, 18);
            x6 ^= BitOperations.RotateLeft(x5 + x4, 7); x7 ^= BitOperations.RotateLeft(x6 + x5, 9);
            x4 ^= BitOperations.RotateLeft(x7 + x6, 13); x5 ^= BitOperations.RotateLeft(x4 + x7, 18);
            x11 ^= BitOperations.RotateLeft(x10 + x9, 7); x8 ^= BitOperations.RotateLeft(x11 + x10, 9);
            x9 ^= BitOperations.RotateLeft(x8 + x11, 13); x10 ^= BitOperations.RotateLeft(x9 + x8, 18);
            x12 ^= BitOperations.RotateLeft(x15 + x14, 7); x13 ^= BitOperations.RotateLeft(x12 + x15, 9);
            x14 ^= BitOperations.RotateLeft(x13 + x12, 13); x15 ^= BitOperations.RotateLeft(x14 + x13, 18);
        }
        b[0] += x0; b[1] += x1; b[2] += x2; b[3] += x3; b[4] += x4; b[5] += x5; b[6] += x6; b[7] += x7;
        b[8] += x8; b[9] += x9; b[10] += x10; b[11] += x11; b[12] += x12; b[13] += x13; b[14] += x14; b[15] += x15;
    }
}
