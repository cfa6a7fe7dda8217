namespace Oml.Protocol.Crypto;

public class KeystoreException(string message, Exception? inner = null) : Exception(message, inner);
public sealed class WrongKeystorePassphraseException(string message) : KeystoreException(message);

/// <summary>
/// Keys at rest: the Web3 Secret Storage (v3) JSON format that Ethereum wallets read (PBKDF2-HMAC-SHA256,
/// AES-128-CTR, Keccak-256 MAC), written atomically.
/// </summary>
public static class Keystore
{
    public const int DefaultIterations = 262_144;
    public static string Encrypt(PrivateKey key, string passphrase, int iterations = DefaultIterations) => throw new NotImplementedException();
    public static PrivateKey Decrypt(string json, string passphrase) => throw new NotImplementedException();
    public static void Save(string path, PrivateKey key, string passphrase, int iterations = DefaultIterations) => throw new NotImplementedException();
    public static PrivateKey Load(string path, string passphrase) => throw new NotImplementedException();
    /// <summary>The address stored in the file, without decrypting.</summary>
    public static Address ReadAddress(string path) => throw new NotImplementedException();
}
