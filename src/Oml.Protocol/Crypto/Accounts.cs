namespace Oml.Protocol.Crypto;

/// <summary>A 20-byte Ethereum-style account address: the last 20 bytes of Keccak-256 of the uncompressed public key.</summary>
public readonly record struct Address
{
    public Address(ReadOnlySpan<byte> bytes) => throw new NotImplementedException();
    public ReadOnlySpan<byte> Bytes => throw new NotImplementedException();
    /// <summary>Parses "0x" + 40 hex digits; mixed case must match the EIP-55 checksum.</summary>
    public static Address Parse(string text) => throw new NotImplementedException();
    public static bool TryParse(string? text, out Address address) => throw new NotImplementedException();
    public static Address FromPublicKey(ReadOnlySpan<byte> uncompressedPublicKey64) => throw new NotImplementedException();
    /// <summary>EIP-55 checksummed "0x..." form.</summary>
    public override string ToString() => throw new NotImplementedException();
}

/// <summary>A recoverable secp256k1 signature: r, s (low-s normalised) and v in {27, 28}; 65 bytes r ‖ s ‖ v.</summary>
public sealed record Signature
{
    public static Signature FromBytes(ReadOnlySpan<byte> rsv65) => throw new NotImplementedException();
    public static Signature Parse(string hex) => throw new NotImplementedException();
    public byte[] ToBytes() => throw new NotImplementedException();
    public string ToHex() => throw new NotImplementedException();
}

/// <summary>A secp256k1 private key. Zeroes its bytes on dispose.</summary>
public sealed class PrivateKey : IDisposable
{
    public static PrivateKey Generate() => throw new NotImplementedException();
    public static PrivateKey FromBytes(ReadOnlySpan<byte> key32) => throw new NotImplementedException();
    /// <summary>The uncompressed public key without the 0x04 prefix (64 bytes).</summary>
    public byte[] PublicKey => throw new NotImplementedException();
    public Address Address => throw new NotImplementedException();
    /// <summary>Signs a 32-byte digest (RFC 6979 deterministic nonce, low-s).</summary>
    public Signature SignDigest(ReadOnlySpan<byte> digest32) => throw new NotImplementedException();
    public byte[] ExportBytes() => throw new NotImplementedException();
    public void Dispose() => throw new NotImplementedException();
}

public static class Secp256k1
{
    /// <summary>The signer's address recovered from a digest and signature; throws <see cref="ArgumentException"/> for an invalid signature.</summary>
    public static Address Recover(ReadOnlySpan<byte> digest32, Signature signature) => throw new NotImplementedException();
    public static bool TryRecover(ReadOnlySpan<byte> digest32, Signature signature, out Address signer) => throw new NotImplementedException();
}
