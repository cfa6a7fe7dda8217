namespace Oml.Protocol.Crypto;

/// <summary>Keccak-256 as Ethereum uses it (original Keccak padding 0x01, not SHA3-256's 0x06).</summary>
public static class Keccak256
{
    public const int HashLength = 32;

    public static byte[] Hash(ReadOnlySpan<byte> data) => throw new NotImplementedException();

    public static void Hash(ReadOnlySpan<byte> data, Span<byte> destination) => throw new NotImplementedException();
}
