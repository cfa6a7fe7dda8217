using System.Buffers.Binary;
using System.Numerics;

namespace Oml.Protocol.Crypto;

/// <summary>Keccak-256 as Ethereum uses it (original Keccak padding 0x01, not SHA3-256's 0x06).</summary>
public static class Keccak256
{
    public const int HashLength = 32;

    /// <summary>Bytes absorbed per permutation: 1600 - 2 * 256 bits.</summary>
    internal const int Rate = 136;

    public static byte[] Hash(ReadOnlySpan<byte> data)
    {
        var result = new byte[HashLength];
        Hash(data, result);
        return result;
    }

    public static void Hash(ReadOnlySpan<byte> data, Span<byte> destination)
    {
        if (destination.Length < HashLength)
            throw new ArgumentException($"destination holds {destination.Length} bytes; a Keccak-256 hash needs {HashLength}", nameof(destination));
        HashWithPadding(data, destination, 0x01);
    }

    /// <summary>
    /// The sponge with a chosen domain-padding byte: 0x01 is Keccak (Ethereum), 0x06 is FIPS 202 SHA3-256.
    /// Internal so that tests can cross-check the permutation against the platform's SHA3-256.
    /// </summary>
    internal static void HashWithPadding(ReadOnlySpan<byte> data, Span<byte> destination, byte padding)
    {
        Span<ulong> state = stackalloc ulong[25];
        state.Clear();
        while (data.Length >= Rate)
        {
            for (int i = 0; i < Rate / 8; i++) state[i] ^= BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(i * 8, 8));
            Permute(state);
            data = data[Rate..];
        }
        Span<byte> last = stackalloc byte[Rate];
        last.Clear();
        data.CopyTo(last);
        last[data.Length] ^= padding;
        last[Rate - 1] ^= 0x80;
        for (int i = 0; i < Rate / 8; i++) state[i] ^= BinaryPrimitives.ReadUInt64LittleEndian(last.Slice(i * 8, 8));
        Permute(state);
        for (int i = 0; i < HashLength / 8; i++) BinaryPrimitives.WriteUInt64LittleEndian(destination.Slice(i * 8, 8), state[i]);
    }

    // Round constants of Keccak-f[1600] (FIPS 202, section 3.2.5: the iota step).
    private static readonly ulong[] RoundConstants =
    [
        0x0000000000000001UL, 0x0000000000008082UL, 0x800000000000808AUL, 0x8000000080008000UL,
        0x000000000000808BUL, 0x0000000080000001UL, 0x8000000080008081UL, 0x8000000000008009UL,
        0x000000000000008AUL, 0x0000000000000088UL, 0x0000000080008009UL, 0x000000008000000AUL,
        0x000000008000808BUL, 0x800000000000008BUL, 0x8000000000008089UL, 0x8000000000008003UL,
        0x8000000000008002UL, 0x8000000000000080UL, 0x000000000000800AUL, 0x800000008000000AUL,
        0x8000000080008081UL, 0x8000000000008080UL, 0x0000000080000001UL, 0x8000000080008008UL,
    ];

    // Rotation offsets (rho) and lane order (pi), walking the lanes from (1,0) along the pi cycle.
    private static readonly int[] Rho = [1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44];
    private static readonly int[] Pi = [10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1];

    /// <summary>Keccak-f[1600] on 25 lanes, lane (x, y) at index x + 5y.</summary>
    internal static void Permute(Span<ulong> a)
    {
        Span<ulong> c = stackalloc ulong[5];
        for (int round = 0; round < 24; round++)
        {
            // theta
            for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
            for (int x = 0; x < 5; x++)
            {
                ulong d = c[(x + 4) % 5] ^ BitOperations.RotateLeft(c[(x + 1) % 5], 1);
                for (int y = 0; y < 25; y += 5) a[x + y] ^= d;
            }
            // rho and pi
            ulong current = a[1];
            for (int i = 0; i < 24; i++)
            {
                int j = Pi[i];
                ulong next = a[j];
                a[j] = BitOperations.RotateLeft(current, Rho[i]);
                current = next;
            }
            // chi
            for (int y = 0; y < 25; y += 5)
            {
                ulong a0 = a[y], a1 = a[y + 1], a2 = a[y + 2], a3 = a[y + 3], a4 = a[y + 4];
                a[y] = a0 ^ (~a1 & a2);
                a[y + 1] = a1 ^ (~a2 & a3);
                a[y + 2] = a2 ^ (~a3 & a4);
                a[y + 3] = a3 ^ (~a4 & a0);
                a[y + 4] = a4 ^ (~a0 & a1);
            }
            // iota
            a[0] ^= RoundConstants[round];
        }
    }
}
