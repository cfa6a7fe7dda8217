using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Oml.Fingerprinting;

/// <summary>Options for writing an encrypted fingerprint-set file.</summary>
public sealed record FingerprintFileOptions
{
    /// <summary>PBKDF2-HMAC-SHA256 iterations; the default is <see cref="FingerprintSetFile.DefaultPbkdf2Iterations"/>.
    /// Lower it only for tests.</summary>
    public int Pbkdf2Iterations { get; init; } = FingerprintSetFile.DefaultPbkdf2Iterations;

    /// <summary>
    /// The owner's secret to keep in the file beside the set (inside the encryption), or null for none (e.g. a subset
    /// handed to an auditor). At least <see cref="FingerprintSetFile.MinOwnerSecretLength"/> bytes.
    /// </summary>
    public byte[]? OwnerSecret { get; init; }
}

/// <summary>What a file's header says, readable without the passphrase.</summary>
public sealed record FingerprintFileHeader(int Version, bool Encrypted, string? Kdf, int Pbkdf2Iterations, long PayloadLength);

/// <summary>What a file holds: the set, and the owner's secret where the file keeps one (version 2 and later).</summary>
/// <param name="Set">The fingerprint set.</param>
/// <param name="OwnerSecret">The owner's secret stored in the file, or null (a version-1 file, or one written without).</param>
/// <param name="Version">The file's container version (1 or 2).</param>
public sealed record FingerprintFileContents(FingerprintSet Set, byte[]? OwnerSecret, int Version);

/// <summary>
/// Reads and writes fingerprint-set files: a JSON payload in an AES-256-GCM envelope keyed from a passphrase
/// (PBKDF2-HMAC-SHA256), or, only when asked for explicitly, in plaintext. See docs/fingerprint-sets.md.
/// </summary>
/// <remarks>
/// Layout: <c>magic "OMLFPSET" (8) ‖ container version (uint16 BE) ‖ header length H (uint32 BE) ‖ header JSON (H)
/// ‖ SHA-256 of everything before (32) ‖ body</c>. The body is the AES-GCM ciphertext followed by its 16-byte tag,
/// or the plaintext payload. Everything before the body is the AES-GCM associated data.
/// </remarks>
public static class FingerprintSetFile
{
    public const int DefaultPbkdf2Iterations = 600_000;
    public const int MaxPbkdf2Iterations = 20_000_000; // about 33 times the default: a hostile header cannot stall a reader for minutes

    /// <summary>
    /// The fewest PBKDF2 iterations the command line accepts without an explicit "insecure" flag: a sixth of the
    /// default, which follows OWASP's 2023 recommendation of 600,000 for PBKDF2-HMAC-SHA256.
    /// </summary>
    public const int MinSafePbkdf2Iterations = 100_000;

    /// <summary>The container version written: 2 (an owner's secret may ride in the payload). Version 1 is still read.</summary>
    public const int ContainerVersion = 2;

    /// <summary>The oldest container version read: 1 (no stored owner's secret).</summary>
    public const int MinContainerVersion = 1;

    /// <summary>The length of a newly made owner's secret, and the least a stored one may have (16).</summary>
    public const int OwnerSecretLength = 32, MinOwnerSecretLength = 16;
    public const string FormatName = "oml-fingerprint-set";
    public const string EncryptionAesGcm = "aes-256-gcm";
    public const string EncryptionNone = "none";
    public const string KdfPbkdf2 = "pbkdf2-hmac-sha256";

    public static ReadOnlySpan<byte> Magic => "OMLFPSET"u8;

    private const int PrefixLength = 8 + 2 + 4;
    private const int ChecksumLength = 32;
    private const int MaxHeaderLength = 64 * 1024;
    private const int SaltLength = 16, NonceLength = 12, TagLength = 16, KeyLength = 32, KeyCheckLength = 16;

    private static readonly byte[] EncKeyInfo = "oml/fingerprint-set/v1/aes-256-gcm-key"u8.ToArray();
    private static readonly byte[] CheckKeyInfo = "oml/fingerprint-set/v1/key-check-key"u8.ToArray();
    private static readonly byte[] KeyCheckMessage = "oml/fingerprint-set/v1/key-check"u8.ToArray();

    // ---- writing ----

    /// <summary>Writes <paramref name="set"/> encrypted under <paramref name="passphrase"/>, atomically.</summary>
    public static void Write(string path, FingerprintSet set, string passphrase, FingerprintFileOptions? options = null) =>
        WriteAtomic(path, ToEncryptedBytes(set, passphrase, options));

    /// <summary>Writes <paramref name="set"/> unencrypted (the header says so), atomically. The keys and responses are
    /// then readable by anyone with the file: use only when asked for explicitly (<c>--plaintext</c>).</summary>
    public static void WritePlaintext(string path, FingerprintSet set, byte[]? ownerSecret = null) => WriteAtomic(path, ToPlaintextBytes(set, ownerSecret));

    public static byte[] ToEncryptedBytes(FingerprintSet set, string passphrase, FingerprintFileOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(passphrase);
        options ??= new FingerprintFileOptions();
        if (options.Pbkdf2Iterations < 1 || options.Pbkdf2Iterations > MaxPbkdf2Iterations)
            throw new ArgumentOutOfRangeException(nameof(options), $"PBKDF2 iterations must be in [1, {MaxPbkdf2Iterations}]");
        var payload = SerializePayload(set, options.OwnerSecret);
        var salt = RandomNumberGenerator.GetBytes(SaltLength);
        var nonce = RandomNumberGenerator.GetBytes(NonceLength);
        var (encKey, keyCheck) = DeriveKeys(passphrase, salt, options.Pbkdf2Iterations);
        try
        {
            var header = new HeaderDto
            {
                Format = FormatName,
                Version = ContainerVersion,
                Encryption = EncryptionAesGcm,
                Kdf = new KdfDto { Name = KdfPbkdf2, Iterations = options.Pbkdf2Iterations, Salt = Convert.ToBase64String(salt), KeyLength = KeyLength },
                Nonce = Convert.ToBase64String(nonce),
                KeyCheck = Convert.ToBase64String(keyCheck),
                TagLength = TagLength,
                PayloadLength = payload.Length,
            };
            var head = EncodeHead(header);
            var file = new byte[head.Length + payload.Length + TagLength];
            head.CopyTo(file, 0);
            using (var gcm = new AesGcm(encKey, TagLength))
                gcm.Encrypt(nonce, payload, file.AsSpan(head.Length, payload.Length), file.AsSpan(head.Length + payload.Length), head);
            return file;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(encKey);
            CryptographicOperations.ZeroMemory(payload);
        }
    }

    public static byte[] ToPlaintextBytes(FingerprintSet set, byte[]? ownerSecret = null)
    {
        var payload = SerializePayload(set, ownerSecret);
        var header = new HeaderDto
        {
            Format = FormatName,
            Version = ContainerVersion,
            Encryption = EncryptionNone,
            PayloadLength = payload.Length,
            PayloadSha256 = Convert.ToHexStringLower(SHA256.HashData(payload)),
        };
        var head = EncodeHead(header);
        return [.. head, .. payload];
    }

    private static byte[] SerializePayload(FingerprintSet set, byte[]? ownerSecret)
    {
        ArgumentNullException.ThrowIfNull(set);
        set.Validate();
        if (ownerSecret is not null && ownerSecret.Length < MinOwnerSecretLength)
            throw new ArgumentException($"the owner's secret must be at least {MinOwnerSecretLength} bytes, got {ownerSecret.Length}", nameof(ownerSecret));
        var dto = SetDto.From(set);
        dto.OwnerSecret = ownerSecret is null ? null : Convert.ToBase64String(ownerSecret);
        return JsonSerializer.SerializeToUtf8Bytes(dto, FingerprintJsonContext.Default.SetDto);
    }

    /// <summary>magic ‖ version ‖ header length ‖ header JSON ‖ SHA-256 of the preceding bytes.</summary>
    private static byte[] EncodeHead(HeaderDto header)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(header, FingerprintJsonContext.Default.HeaderDto);
        var head = new byte[PrefixLength + json.Length + ChecksumLength];
        Magic.CopyTo(head);
        BinaryPrimitives.WriteUInt16BigEndian(head.AsSpan(8), ContainerVersion);
        BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(10), (uint)json.Length);
        json.CopyTo(head, PrefixLength);
        SHA256.HashData(head.AsSpan(0, PrefixLength + json.Length), head.AsSpan(PrefixLength + json.Length));
        return head;
    }

    private static (byte[] EncKey, byte[] KeyCheck) DeriveKeys(string passphrase, byte[] salt, int iterations)
    {
        var master = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(passphrase), salt, iterations, HashAlgorithmName.SHA256, KeyLength);
        try
        {
            var encKey = HKDF.Expand(HashAlgorithmName.SHA256, master, KeyLength, EncKeyInfo);
            var checkKey = HKDF.Expand(HashAlgorithmName.SHA256, master, KeyLength, CheckKeyInfo);
            var keyCheck = HMACSHA256.HashData(checkKey, KeyCheckMessage)[..KeyCheckLength];
            CryptographicOperations.ZeroMemory(checkKey);
            return (encKey, keyCheck);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(master);
        }
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> to <paramref name="path"/> atomically: a temporary file in the same folder
    /// (owner read/write only on Unix), flushed to disk, then renamed over the destination.
    /// </summary>
    public static void WriteAtomic(string path, ReadOnlySpan<byte> bytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir)) throw new DirectoryNotFoundException($"no folder {dir} to write {Path.GetFileName(path)} into");
        Oml.Models.IO.AtomicFile.WriteBytes(path, bytes, overwrite: true, ownerOnly: true);
    }

    // ---- reading ----

    /// <summary>
    /// Reads a fingerprint-set file. <paramref name="passphrase"/> may be null for a plaintext file.
    /// </summary>
    /// <exception cref="CorruptFingerprintFileException">not a fingerprint-set file, truncated, damaged or modified.</exception>
    /// <exception cref="WrongPassphraseException">the passphrase is not the one the file was written with.</exception>
    /// <exception cref="PassphraseRequiredException">the file is encrypted and no passphrase was given.</exception>
    /// <exception cref="UnsupportedFingerprintFileVersionException">the file's format version is not supported.</exception>
    public static FingerprintSet Read(string path, string? passphrase) => FromBytes(File.ReadAllBytes(path), passphrase);

    /// <summary>Reads a file with the owner's secret it keeps (null for a version-1 file or one written without).</summary>
    /// <inheritdoc cref="Read(string, string?)" path="/exception"/>
    public static FingerprintFileContents ReadContents(string path, string? passphrase) => ContentsFromBytes(File.ReadAllBytes(path), passphrase);

    /// <summary>The header of a file, without decrypting it (no passphrase needed).</summary>
    public static FingerprintFileHeader ReadHeader(string path) => HeaderFromBytes(File.ReadAllBytes(path));

    /// <summary>The header of a file's bytes, without decrypting them (no passphrase needed).</summary>
    /// <exception cref="CorruptFingerprintFileException">not a fingerprint-set file, truncated, or its header damaged.</exception>
    public static FingerprintFileHeader HeaderFromBytes(ReadOnlySpan<byte> bytes)
    {
        var (h, _) = ParseHead(bytes);
        return new FingerprintFileHeader(h.Version, h.Encryption == EncryptionAesGcm, h.Kdf?.Name, h.Kdf?.Iterations ?? 0, h.PayloadLength);
    }

    public static FingerprintSet FromBytes(ReadOnlySpan<byte> bytes, string? passphrase) => ContentsFromBytes(bytes, passphrase).Set;

    public static FingerprintFileContents ContentsFromBytes(ReadOnlySpan<byte> bytes, string? passphrase)
    {
        var (header, headLength) = ParseHead(bytes);
        var head = bytes[..headLength];
        var body = bytes[headLength..];
        byte[] payload;
        if (header.Encryption == EncryptionNone)
        {
            CheckBodyLength(body.Length, header.PayloadLength);
            if (header.PayloadSha256 is null) throw Corrupt("plaintext header lacks payloadSha256");
            if (!Convert.ToHexStringLower(SHA256.HashData(body)).Equals(header.PayloadSha256, StringComparison.Ordinal))
                throw Corrupt("payload checksum mismatch: the file was modified or damaged");
            payload = body.ToArray();
        }
        else if (header.Encryption == EncryptionAesGcm)
        {
            if (header.TagLength != TagLength) throw Corrupt($"unsupported tag length {header.TagLength}");
            CheckBodyLength(body.Length, header.PayloadLength + TagLength);
            var kdf = header.Kdf ?? throw Corrupt("encrypted header lacks kdf");
            if (kdf.Name != KdfPbkdf2) throw Corrupt($"unknown key-derivation function '{kdf.Name}'");
            if (kdf.Iterations < 1 || kdf.Iterations > MaxPbkdf2Iterations) throw Corrupt($"PBKDF2 iteration count {kdf.Iterations} out of range");
            if (kdf.KeyLength != KeyLength) throw Corrupt($"unsupported key length {kdf.KeyLength}");
            var salt = Base64(kdf.Salt, "kdf.salt", minLength: SaltLength);
            var nonce = Base64(header.Nonce, "nonce", exactLength: NonceLength);
            var keyCheck = Base64(header.KeyCheck, "keyCheck", exactLength: KeyCheckLength);
            if (string.IsNullOrEmpty(passphrase)) throw new PassphraseRequiredException("the fingerprint-set file is encrypted: a passphrase is required");

            var (encKey, expectedCheck) = DeriveKeys(passphrase, salt, kdf.Iterations);
            try
            {
                if (!CryptographicOperations.FixedTimeEquals(keyCheck, expectedCheck))
                    throw new WrongPassphraseException("wrong passphrase for this fingerprint-set file");
                payload = new byte[header.PayloadLength];
                using var gcm = new AesGcm(encKey, TagLength);
                try
                {
                    gcm.Decrypt(nonce, body[..(int)header.PayloadLength], body[(int)header.PayloadLength..], payload, head);
                }
                catch (CryptographicException e)
                {
                    throw Corrupt("authentication failed although the passphrase is right: the file was modified or damaged", e);
                }
            }
            finally
            {
                CryptographicOperations.ZeroMemory(encKey);
            }
        }
        else
        {
            throw Corrupt($"unknown encryption '{header.Encryption}'");
        }

        try
        {
            var (set, secret) = ParsePayload(payload);
            if (secret is not null && header.Version < 2) throw Corrupt("a version-1 file cannot hold an owner's secret");
            return new FingerprintFileContents(set, secret, header.Version);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(payload);
        }
    }

    private static (FingerprintSet Set, byte[]? OwnerSecret) ParsePayload(byte[] payload)
    {
        SetDto dto;
        try
        {
            dto = JsonSerializer.Deserialize(payload, FingerprintJsonContext.Default.SetDto) ?? throw Corrupt("payload is null");
        }
        catch (JsonException e)
        {
            throw Corrupt($"payload is not valid JSON: {e.Message}", e);
        }
        if (dto.FormatVersion != FingerprintSet.CurrentFormatVersion)
            throw new UnsupportedFingerprintFileVersionException($"fingerprint-set payload format version {dto.FormatVersion} is not supported (this build reads {FingerprintSet.CurrentFormatVersion})");
        try
        {
            var set = dto.ToModel();
            set.Validate();
            byte[]? secret = dto.OwnerSecret is null ? null : Convert.FromBase64String(dto.OwnerSecret);
            if (secret is not null && secret.Length < MinOwnerSecretLength) throw Corrupt($"the stored owner's secret has {secret.Length} bytes, fewer than {MinOwnerSecretLength}");
            return (set, secret);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw Corrupt($"payload is not a valid fingerprint set: {e.Message}", e);
        }
    }

    /// <summary>Checks magic, lengths and the header checksum, then parses the header JSON.</summary>
    private static (HeaderDto Header, int HeadLength) ParseHead(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < PrefixLength || !bytes[..Magic.Length].SequenceEqual(Magic))
        {
            if (bytes.Length < Magic.Length || !bytes[..Magic.Length].SequenceEqual(Magic))
                throw Corrupt($"not an OML fingerprint-set file ({(bytes.Length < Magic.Length ? $"only {bytes.Length} bytes" : "bad magic")})");
            throw Corrupt($"truncated file: {bytes.Length} bytes");
        }
        uint headerLength = BinaryPrimitives.ReadUInt32BigEndian(bytes[10..]);
        if (headerLength > MaxHeaderLength) throw Corrupt($"header length {headerLength} is implausible: the file was modified or damaged");
        int headLength = PrefixLength + (int)headerLength + ChecksumLength;
        if (bytes.Length < headLength) throw Corrupt($"truncated file: {bytes.Length} bytes, the header alone needs {headLength}");
        var checksum = SHA256.HashData(bytes[..(PrefixLength + (int)headerLength)]);
        if (!CryptographicOperations.FixedTimeEquals(checksum, bytes.Slice(PrefixLength + (int)headerLength, ChecksumLength)))
            throw Corrupt("header checksum mismatch: the header was modified or damaged");
        int version = BinaryPrimitives.ReadUInt16BigEndian(bytes[8..]);
        if (version < MinContainerVersion || version > ContainerVersion)
            throw new UnsupportedFingerprintFileVersionException($"fingerprint-set file version {version} is not supported (this build reads {MinContainerVersion} to {ContainerVersion})");
        HeaderDto header;
        try
        {
            header = JsonSerializer.Deserialize(bytes.Slice(PrefixLength, (int)headerLength), FingerprintJsonContext.Default.HeaderDto)
                ?? throw Corrupt("header is null");
        }
        catch (JsonException e)
        {
            throw Corrupt($"header is not valid JSON: {e.Message}", e);
        }
        if (header.Format != FormatName) throw Corrupt($"header format is '{header.Format}', expected '{FormatName}'");
        if (header.Version != version) throw Corrupt($"header version {header.Version} differs from the container version {version}");
        if (header.PayloadLength < 0 || header.PayloadLength > int.MaxValue - TagLength) throw Corrupt($"payload length {header.PayloadLength} out of range");
        return (header, headLength);
    }

    private static void CheckBodyLength(int actual, long expected)
    {
        if (actual < expected) throw Corrupt($"truncated file: the body has {actual} bytes, the header says {expected}");
        if (actual > expected) throw Corrupt($"{actual - expected} unexpected bytes after the payload: the file was modified or damaged");
    }

    private static byte[] Base64(string? s, string field, int minLength = 0, int exactLength = -1)
    {
        if (s is null) throw Corrupt($"header lacks {field}");
        byte[] b;
        try { b = Convert.FromBase64String(s); }
        catch (FormatException e) { throw Corrupt($"header {field} is not base64", e); }
        if (exactLength >= 0 && b.Length != exactLength) throw Corrupt($"header {field} must be {exactLength} bytes, got {b.Length}");
        if (b.Length < minLength) throw Corrupt($"header {field} must be at least {minLength} bytes, got {b.Length}");
        return b;
    }

    private static CorruptFingerprintFileException Corrupt(string message, Exception? inner = null) =>
        new($"corrupt fingerprint-set file: {message}", inner);
}
