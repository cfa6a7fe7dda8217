using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Fingerprinting;

namespace Oml.Protocol.Crypto;

public class KeystoreException(string message, Exception? inner = null) : Exception(message, inner);
public sealed class WrongKeystorePassphraseException(string message) : KeystoreException(message);

/// <summary>
/// Keys at rest: the Web3 Secret Storage (v3) JSON format that Ethereum wallets read (PBKDF2-HMAC-SHA256,
/// AES-128-CTR, Keccak-256 MAC), written atomically.
/// </summary>
/// <remarks>
/// Format (ethereum.org, "Web3 secret storage definition"): derivedKey = KDF(passphrase, salt), 32 bytes;
/// ciphertext = AES-128-CTR(key = derivedKey[0..16], iv, privateKey); mac = keccak256(derivedKey[16..32] ‖ ciphertext).
/// Files written here use PBKDF2; files using scrypt are read too (see <see cref="Scrypt"/>).
/// </remarks>
public static class Keystore
{
    public const int DefaultIterations = 262_144;

    /// <summary>
    /// The largest PBKDF2 iteration count a file may ask for: 10,000,000, about 40 times the default (a few seconds),
    /// so that a hostile file cannot make decryption run for minutes.
    /// </summary>
    public const int MaxIterations = 10_000_000;

    /// <summary>
    /// Scrypt parameters a file may ask for, as wallets bound them: N a power of two up to 2^20 (geth's "standard"
    /// is 2^18, r = 8, p = 1), r ≤ 32, p ≤ 16, and N·r·p ≤ 2^24 in all (the work: 8 times the standard setting), with
    /// ROMix's 128·r·N bytes of memory at most <see cref="Scrypt.MaxMemoryBytes"/>. The derived key is 32 bytes (dklen).
    /// </summary>
    public const int MaxScryptN = 1 << 20, MaxScryptR = 32, MaxScryptP = 16;

    /// <summary>The most scrypt work (N·r·p) a file may ask for.</summary>
    public const long MaxScryptWork = 1L << 24;

    /// <summary>The largest keystore file read (real ones are under 1 KiB).</summary>
    public const long MaxFileBytes = 64 << 10;

    public static string Encrypt(PrivateKey key, string passphrase, int iterations = DefaultIterations)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(passphrase);
        if (iterations < 1 || iterations > MaxIterations) throw new ArgumentOutOfRangeException(nameof(iterations), $"PBKDF2 iterations must be in [1, {MaxIterations}]");
        var salt = RandomNumberGenerator.GetBytes(32);
        var iv = RandomNumberGenerator.GetBytes(16);
        var secret = key.ExportBytes();
        var derived = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(passphrase), salt, iterations, HashAlgorithmName.SHA256, 32);
        try
        {
            var ciphertext = AesCtr(derived.AsSpan(0, 16), iv, secret);
            var mac = Mac(derived, ciphertext);
            var root = new JsonObject
            {
                ["address"] = Convert.ToHexStringLower(key.Address.ToArray()),
                ["crypto"] = new JsonObject
                {
                    ["cipher"] = "aes-128-ctr",
                    ["cipherparams"] = new JsonObject { ["iv"] = Convert.ToHexStringLower(iv) },
                    ["ciphertext"] = Convert.ToHexStringLower(ciphertext),
                    ["kdf"] = "pbkdf2",
                    ["kdfparams"] = new JsonObject
                    {
                        ["c"] = iterations,
                        ["dklen"] = 32,
                        ["prf"] = "hmac-sha256",
                        ["salt"] = Convert.ToHexStringLower(salt),
                    },
                    ["mac"] = Convert.ToHexStringLower(mac),
                },
                ["id"] = Guid.NewGuid().ToString(), // version 4 (random) UUID
                ["version"] = 3,
            };
            return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
            CryptographicOperations.ZeroMemory(derived);
        }
    }

    /// <summary>Decrypts a v3 keystore.</summary>
    /// <exception cref="WrongKeystorePassphraseException">the MAC does not match: the passphrase is wrong (or the ciphertext was altered).</exception>
    /// <exception cref="KeystoreException">the JSON is malformed, or uses an unsupported cipher or KDF.</exception>
    public static PrivateKey Decrypt(string json, string passphrase)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(passphrase);
        var root = ParseRoot(json);
        var version = root["version"];
        if (version is not JsonValue vv || vv.GetValueKind() != JsonValueKind.Number || vv.ToJsonString() != "3")
            throw new KeystoreException($"keystore: unsupported version {version?.ToJsonString() ?? "(none)"}; only version 3 is read");
        var crypto = (root["crypto"] ?? root["Crypto"]) as JsonObject ?? throw new KeystoreException("keystore: no 'crypto' object");
        var cipher = Str(crypto, "cipher");
        if (cipher != "aes-128-ctr") throw new KeystoreException($"keystore: unsupported cipher '{cipher}' (only aes-128-ctr)");
        var iv = HexField(crypto["cipherparams"] as JsonObject ?? throw new KeystoreException("keystore: no 'cipherparams' object"), "iv");
        if (iv.Length != 16) throw new KeystoreException($"keystore: the iv is {iv.Length} bytes, not 16");
        var ciphertext = HexField(crypto, "ciphertext");
        if (ciphertext.Length != 32) throw new KeystoreException($"keystore: the ciphertext is {ciphertext.Length} bytes; a secp256k1 key is 32");
        var mac = HexField(crypto, "mac");
        if (mac.Length != 32) throw new KeystoreException($"keystore: the mac is {mac.Length} bytes, not 32");
        var kdfParams = crypto["kdfparams"] as JsonObject ?? throw new KeystoreException("keystore: no 'kdfparams' object");

        var derived = DeriveKey(Str(crypto, "kdf"), kdfParams, passphrase);
        byte[]? secret = null;
        try
        {
            if (!CryptographicOperations.FixedTimeEquals(Mac(derived, ciphertext), mac))
                throw new WrongKeystorePassphraseException("keystore: wrong passphrase (the MAC does not match)");
            secret = AesCtr(derived.AsSpan(0, 16), iv, ciphertext);
            PrivateKey key;
            try { key = PrivateKey.FromBytes(secret); }
            catch (ArgumentException e) { throw new KeystoreException("keystore: the decrypted secret is not a valid secp256k1 private key", e); }
            if (root["address"] is JsonValue addr && addr.GetValueKind() == JsonValueKind.String)
            {
                var stored = ParseStoredAddress(addr.GetValue<string>());
                if (stored != key.Address)
                {
                    key.Dispose();
                    throw new KeystoreException($"keystore: the file's address {stored} is not the address of its key");
                }
            }
            return key;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(derived);
            if (secret is not null) CryptographicOperations.ZeroMemory(secret);
        }
    }

    /// <summary>Encrypts the key and writes the file atomically (temporary file, then rename), owner-only (0600) on Unix.</summary>
    public static void Save(string path, PrivateKey key, string passphrase, int iterations = DefaultIterations)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var json = Encrypt(key, passphrase, iterations);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        FingerprintSetFile.WriteAtomic(path, Encoding.UTF8.GetBytes(json));
    }

    public static PrivateKey Load(string path, string passphrase)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"no keystore file at {path}", path);
        return Decrypt(ReadFile(path), passphrase);
    }

    /// <summary>The address stored in the file, without decrypting.</summary>
    public static Address ReadAddress(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"no keystore file at {path}", path);
        var root = ParseRoot(ReadFile(path));
        if (root["address"] is not JsonValue a || a.GetValueKind() != JsonValueKind.String)
            throw new KeystoreException($"keystore {path} has no 'address' field; decrypt it to learn the address");
        return ParseStoredAddress(a.GetValue<string>());
    }

    // ---- pieces ----

    private static string ReadFile(string path)
    {
        try { return Oml.Models.IO.InputFile.ReadText(path, MaxFileBytes, "keystore"); }
        catch (InvalidDataException e) { throw new KeystoreException(e.Message, e); }
    }

    private static JsonObject ParseRoot(string json)
    {
        try
        {
            return JsonNode.Parse(json) as JsonObject ?? throw new KeystoreException("keystore: the file is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new KeystoreException($"keystore: not valid JSON ({e.Message})", e);
        }
    }

    private static Address ParseStoredAddress(string text)
    {
        var t = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text : "0x" + text;
        try { return Address.Parse(t); }
        catch (FormatException e) { throw new KeystoreException($"keystore: bad 'address' field: {e.Message}", e); }
    }

    private static byte[] DeriveKey(string kdf, JsonObject p, string passphrase)
    {
        var password = Encoding.UTF8.GetBytes(passphrase);
        try
        {
            int dkLen = Int(p, "dklen");
            if (dkLen != 32) throw new KeystoreException($"keystore: dklen {dkLen} is not 32 (Web3 Secret Storage derives 32 bytes)");
            var salt = HexField(p, "salt");
            if (salt.Length is 0 or > 1024) throw new KeystoreException($"keystore: the salt is {salt.Length} bytes; expected 1 to 1024");
            switch (kdf)
            {
                case "pbkdf2":
                {
                    var prf = Str(p, "prf");
                    if (prf != "hmac-sha256") throw new KeystoreException($"keystore: unsupported PBKDF2 prf '{prf}' (only hmac-sha256)");
                    int c = Int(p, "c");
                    if (c < 1 || c > MaxIterations) throw new KeystoreException($"keystore: PBKDF2 iteration count {c} is not in [1, {MaxIterations}]");
                    return Rfc2898DeriveBytes.Pbkdf2(password, salt, c, HashAlgorithmName.SHA256, dkLen);
                }
                case "scrypt":
                {
                    int n = Int(p, "n"), r = Int(p, "r"), par = Int(p, "p");
                    if (n < 2 || n > MaxScryptN || (n & (n - 1)) != 0)
                        throw new KeystoreException($"keystore: scrypt N = {n} must be a power of two in [2, {MaxScryptN}]");
                    if (r < 1 || r > MaxScryptR) throw new KeystoreException($"keystore: scrypt r = {r} is not in [1, {MaxScryptR}]");
                    if (par < 1 || par > MaxScryptP) throw new KeystoreException($"keystore: scrypt p = {par} is not in [1, {MaxScryptP}]");
                    if ((long)n * r * par > MaxScryptWork)
                        throw new KeystoreException($"keystore: scrypt N·r·p = {(long)n * r * par:N0} exceeds the limit of {MaxScryptWork:N0} (N = {n}, r = {r}, p = {par})");
                    try { return Scrypt.DeriveKey(password, salt, n, r, par, dkLen); }
                    catch (ArgumentException e) { throw new KeystoreException($"keystore: bad scrypt parameters: {e.Message}", e); }
                }
                default:
                    throw new KeystoreException($"keystore: unsupported kdf '{kdf}' (pbkdf2 or scrypt)");
            }
        }
        finally { CryptographicOperations.ZeroMemory(password); }
    }

    private static byte[] Mac(ReadOnlySpan<byte> derived, ReadOnlySpan<byte> ciphertext)
    {
        var body = new byte[16 + ciphertext.Length];
        derived.Slice(16, 16).CopyTo(body);
        ciphertext.CopyTo(body.AsSpan(16));
        return Keccak256.Hash(body);
    }

    /// <summary>AES-128 in counter mode (NIST SP 800-38A): the iv is a 128-bit big-endian counter, incremented per block.</summary>
    internal static byte[] AesCtr(ReadOnlySpan<byte> key16, ReadOnlySpan<byte> iv16, ReadOnlySpan<byte> input)
    {
        using var aes = Aes.Create();
        aes.Key = key16.ToArray();
        var counter = iv16.ToArray();
        var stream = new byte[16];
        var output = new byte[input.Length];
        for (int off = 0; off < input.Length; off += 16)
        {
            aes.EncryptEcb(counter, stream, PaddingMode.None);
            int n = Math.Min(16, input.Length - off);
            for (int i = 0; i < n; i++) output[off + i] = (byte)(input[off + i] ^ stream[i]);
            for (int i = 15; i >= 0 && ++counter[i] == 0; i--) { }
        }
        CryptographicOperations.ZeroMemory(stream);
        return output;
    }

    private static string Str(JsonObject o, string name) =>
        o[name] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw new KeystoreException($"keystore: '{name}' must be a string");

    private static int Int(JsonObject o, string name)
    {
        if (o[name] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i)) return i;
        if (o[name] is JsonValue d && d.GetValueKind() == JsonValueKind.Number && d.TryGetValue<double>(out var x) && x == Math.Floor(x) && x is >= int.MinValue and <= int.MaxValue) return (int)x;
        throw new KeystoreException($"keystore: '{name}' must be an integer");
    }

    private static byte[] HexField(JsonObject o, string name)
    {
        var s = Str(o, name);
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        if (s.Length % 2 != 0 || !s.All(char.IsAsciiHexDigit)) throw new KeystoreException($"keystore: '{name}' is not hex");
        return Convert.FromHexString(s);
    }
}
