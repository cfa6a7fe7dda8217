using System.Text;
using Oml.Fingerprinting;

namespace Oml.Fingerprinting.Tests;

public sealed class FileFormatTests : IDisposable
{
    private readonly string _dir = Samples.TempDir();
    private const string Pass = "correct horse battery staple";

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static FingerprintSet SampleWithRevelation() =>
        Samples.Set(5).MarkRevealed(2, DateTimeOffset.Parse("2026-12-01T10:00:00Z"), "court of somewhere", "ownership dispute #1");

    // One encrypted file shared by the tamper tests (the KDF runs once per read).
    private static readonly Lazy<byte[]> Encrypted = new(() => FingerprintSetFile.ToEncryptedBytes(SampleWithRevelation(), Pass, Samples.FastKdf));

    /// <summary>A version-1 encrypted file built by hand from the documented layout (docs/fingerprint-sets.md).</summary>
    private static byte[] VersionOneFile(FingerprintSet set, string passphrase)
    {
        // The payload JSON is unchanged from version 1 when no secret is stored: take it from a plaintext file.
        var plain = FingerprintSetFile.ToPlaintextBytes(set);
        int plainHeader = (plain[10] << 24) | (plain[11] << 16) | (plain[12] << 8) | plain[13];
        var payload = plain[(14 + plainHeader + 32)..];
        var salt = new byte[16];
        var nonce = new byte[12];
        System.Security.Cryptography.RandomNumberGenerator.Fill(salt);
        System.Security.Cryptography.RandomNumberGenerator.Fill(nonce);
        var master = System.Security.Cryptography.Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(passphrase), salt, 1000,
            System.Security.Cryptography.HashAlgorithmName.SHA256, 32);
        var sha = System.Security.Cryptography.HashAlgorithmName.SHA256;
        var encKey = System.Security.Cryptography.HKDF.Expand(sha, master, 32, "oml/fingerprint-set/v1/aes-256-gcm-key"u8.ToArray());
        var checkKey = System.Security.Cryptography.HKDF.Expand(sha, master, 32, "oml/fingerprint-set/v1/key-check-key"u8.ToArray());
        var keyCheck = System.Security.Cryptography.HMACSHA256.HashData(checkKey, "oml/fingerprint-set/v1/key-check"u8.ToArray())[..16];
        var json = Encoding.UTF8.GetBytes(
            $$"""{"format":"oml-fingerprint-set","version":1,"encryption":"aes-256-gcm","kdf":{"name":"pbkdf2-hmac-sha256","iterations":1000,"salt":"{{Convert.ToBase64String(salt)}}","keyLength":32},"nonce":"{{Convert.ToBase64String(nonce)}}","keyCheck":"{{Convert.ToBase64String(keyCheck)}}","tagLength":16,"payloadLength":{{payload.Length}}}""");
        var head = new List<byte>("OMLFPSET"u8.ToArray()) { 0, 1, (byte)(json.Length >> 24), (byte)(json.Length >> 16), (byte)(json.Length >> 8), (byte)json.Length };
        head.AddRange(json);
        head.AddRange(System.Security.Cryptography.SHA256.HashData(head.ToArray()));
        var h = head.ToArray();
        var file = new byte[h.Length + payload.Length + 16];
        h.CopyTo(file, 0);
        using (var gcm = new System.Security.Cryptography.AesGcm(encKey, 16))
            gcm.Encrypt(nonce, payload, file.AsSpan(h.Length, payload.Length), file.AsSpan(h.Length + payload.Length), h);
        return file;
    }

    [Fact]
    public void Version_1_files_stay_readable_and_version_2_keeps_the_owner_secret()
    {
        var set = SampleWithRevelation();
        var v1 = VersionOneFile(set, Pass);
        var old = FingerprintSetFile.ContentsFromBytes(v1, Pass);
        Assert.Equal(1, old.Version);
        Assert.Null(old.OwnerSecret);
        Assert.Equal(set, old.Set);
        Assert.Throws<WrongPassphraseException>(() => FingerprintSetFile.FromBytes(v1, "not " + Pass));

        var secret = Enumerable.Range(0, 32).Select(i => (byte)(7 * i)).ToArray();
        var v2 = FingerprintSetFile.ToEncryptedBytes(set, Pass, Samples.FastKdf with { OwnerSecret = secret });
        Assert.Equal(2, v2[9]);
        var now = FingerprintSetFile.ContentsFromBytes(v2, Pass);
        Assert.Equal(2, now.Version);
        Assert.Equal(secret, now.OwnerSecret);
        Assert.Equal(set, now.Set);
        var plain = FingerprintSetFile.ContentsFromBytes(FingerprintSetFile.ToPlaintextBytes(set, secret), null);
        Assert.Equal(secret, plain.OwnerSecret);
        Assert.Null(FingerprintSetFile.ContentsFromBytes(FingerprintSetFile.ToEncryptedBytes(set, Pass, Samples.FastKdf), Pass).OwnerSecret);
        Assert.Throws<ArgumentException>(() => FingerprintSetFile.ToEncryptedBytes(set, Pass, Samples.FastKdf with { OwnerSecret = new byte[8] }));

        // Relabelling a version-2 file as version 1 (to make readers fall back to the passphrase) breaks the checksum,
        // and with a recomputed checksum the authentication (the version is associated data).
        var relabelled = (byte[])v2.Clone();
        relabelled[9] = 1;
        Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(relabelled, Pass));
        int len = (v2[10] << 24) | (v2[11] << 16) | (v2[12] << 8) | v2[13];
        var json = Encoding.UTF8.GetString(relabelled, 14, len).Replace("\"version\":2", "\"version\":1");
        Assert.Equal(len, Encoding.UTF8.GetByteCount(json));
        Encoding.UTF8.GetBytes(json).CopyTo(relabelled, 14);
        System.Security.Cryptography.SHA256.HashData(relabelled.AsSpan(0, 14 + len)).CopyTo(relabelled, 14 + len);
        Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(relabelled, Pass));
        // A future version is refused, not misread.
        var future = (byte[])v2.Clone();
        future[9] = 3;
        future = [.. future[..(14 + len)], .. System.Security.Cryptography.SHA256.HashData(future.AsSpan(0, 14 + len)), .. future[(14 + len + 32)..]];
        Assert.Throws<UnsupportedFingerprintFileVersionException>(() => FingerprintSetFile.FromBytes(future, Pass));
    }

    [Fact]
    public void Encrypted_round_trip_keeps_every_field()
    {
        var set = SampleWithRevelation();
        var path = Path.Combine(_dir, "set.omlfp");
        FingerprintSetFile.Write(path, set, Pass, Samples.FastKdf);
        var back = FingerprintSetFile.Read(path, Pass);
        Assert.Equal(set, back);
        Assert.Equal(set.CreatedAt, back.CreatedAt);
        Assert.Equal(set.CreatedAt.Offset, back.CreatedAt.Offset);
        Assert.Equal(-1.25, back[1].Responses[1].LogProb);
        Assert.Null(back[1].Responses[0].LogProb);
        Assert.True(back.IsRevealed(2));
        Assert.Equal(4, back.Unrevealed().Count);
        Assert.Equal(set.Commit(), back.Commit());
    }

    [Fact]
    public void Encrypted_file_hides_the_content_and_records_the_kdf()
    {
        var bytes = Encrypted.Value;
        var text = Encoding.UTF8.GetString(bytes);
        Assert.StartsWith("OMLFPSET", text);
        Assert.DoesNotContain("key number", text);
        Assert.DoesNotContain("response 0", text);
        Assert.Contains("pbkdf2-hmac-sha256", text);
        Assert.Contains("aes-256-gcm", text);
        var path = Path.Combine(_dir, "h.omlfp");
        File.WriteAllBytes(path, bytes);
        var h = FingerprintSetFile.ReadHeader(path);
        Assert.True(h.Encrypted);
        Assert.Equal(1000, h.Pbkdf2Iterations);
        Assert.Equal("pbkdf2-hmac-sha256", h.Kdf);
    }

    [Fact]
    public void The_header_of_the_bytes_is_the_header_of_the_file_and_a_damaged_one_is_refused()
    {
        // oml verify reads a set file once and takes the header from the same bytes.
        foreach (var bytes in new[] { Encrypted.Value, FingerprintSetFile.ToPlaintextBytes(Samples.Set(3)) })
        {
            var path = Path.Combine(_dir, "same.omlfp");
            File.WriteAllBytes(path, bytes);
            var fromFile = FingerprintSetFile.ReadHeader(path);
            Assert.Equal(fromFile, FingerprintSetFile.HeaderFromBytes(bytes));
            Assert.Equal(bytes == Encrypted.Value, fromFile.Encrypted);
            var damaged = (byte[])bytes.Clone();
            damaged[20] ^= 1;   // inside the header JSON, which its checksum covers
            Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.HeaderFromBytes(damaged));
            Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.HeaderFromBytes(bytes.AsSpan(0, 12)));
        }
    }

    [Fact]
    public void Default_iteration_count_is_at_least_600000()
    {
        Assert.True(new FingerprintFileOptions().Pbkdf2Iterations >= 600_000);
        Assert.True(FingerprintSetFile.DefaultPbkdf2Iterations >= 600_000);
    }

    [Fact]
    public void Default_options_round_trip_and_record_600000_iterations()
    {
        var path = Path.Combine(_dir, "default.omlfp");
        FingerprintSetFile.Write(path, Samples.Set(1), Pass);
        Assert.Equal(600_000, FingerprintSetFile.ReadHeader(path).Pbkdf2Iterations);
        Assert.Equal(Samples.Set(1), FingerprintSetFile.Read(path, Pass));
    }

    [Fact]
    public void Two_writes_use_fresh_salt_and_nonce()
    {
        var a = FingerprintSetFile.ToEncryptedBytes(Samples.Set(2), Pass, Samples.FastKdf);
        var b = FingerprintSetFile.ToEncryptedBytes(Samples.Set(2), Pass, Samples.FastKdf);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Wrong_passphrase_is_reported_as_such()
    {
        var e = Assert.Throws<WrongPassphraseException>(() => FingerprintSetFile.FromBytes(Encrypted.Value, "Correct horse battery staple"));
        Assert.Contains("passphrase", e.Message);
    }

    [Fact]
    public void Missing_passphrase_is_reported_as_such()
    {
        Assert.Throws<PassphraseRequiredException>(() => FingerprintSetFile.FromBytes(Encrypted.Value, null));
        Assert.Throws<PassphraseRequiredException>(() => FingerprintSetFile.FromBytes(Encrypted.Value, ""));
    }

    public static TheoryData<string> Regions => new() { "magic", "version", "header-length", "header", "checksum", "ciphertext", "tag" };

    [Theory]
    [MemberData(nameof(Regions))]
    public void A_flipped_byte_is_reported_as_tampering(string region)
    {
        var bytes = (byte[])Encrypted.Value.Clone();
        int headerLength = (bytes[10] << 24) | (bytes[11] << 16) | (bytes[12] << 8) | bytes[13];
        int bodyStart = 14 + headerLength + 32;
        int at = region switch
        {
            "magic" => 3,
            "version" => 9,
            "header-length" => 13,
            "header" => 14 + headerLength / 2,
            "checksum" => 14 + headerLength + 5,
            "ciphertext" => bodyStart + 7,
            "tag" => bytes.Length - 3,
            _ => throw new ArgumentException(region),
        };
        bytes[at] ^= 0x01;
        var e = Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(bytes, Pass));
        Assert.StartsWith("corrupt fingerprint-set file", e.Message);
    }

    [Fact]
    public void Every_single_byte_flip_is_detected_and_never_read_as_a_wrong_passphrase()
    {
        // Exhaustive over the head (cheap failures), sampled over the body (each costs one KDF).
        var original = Encrypted.Value;
        int headerLength = (original[10] << 24) | (original[11] << 16) | (original[12] << 8) | original[13];
        int bodyStart = 14 + headerLength + 32;
        var positions = Enumerable.Range(0, bodyStart).Concat(Enumerable.Range(bodyStart, original.Length - bodyStart).Where(i => i % 97 == 0 || i >= original.Length - 16));
        foreach (var i in positions)
        {
            var bytes = (byte[])original.Clone();
            bytes[i] ^= 0x80;
            var e = Record.Exception(() => FingerprintSetFile.FromBytes(bytes, Pass));
            Assert.True(e is CorruptFingerprintFileException, $"byte {i}: {e?.GetType().Name ?? "no exception"}");
        }
    }

    [Fact]
    public void Truncated_files_give_clear_errors()
    {
        var bytes = Encrypted.Value;
        foreach (var n in new[] { 0, 1, 7, 8, 13, 14, 40, bytes.Length / 2, bytes.Length - 17, bytes.Length - 16, bytes.Length - 1 })
        {
            var e = Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(bytes.AsSpan(0, n), Pass));
            Assert.True(e.Message.Contains("truncated") || e.Message.Contains("not an OML fingerprint-set file"), $"{n}: {e.Message}");
        }
    }

    [Fact]
    public void Appended_bytes_are_reported()
    {
        byte[] bytes = [.. Encrypted.Value, 0];
        Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(bytes, Pass));
    }

    [Fact]
    public void Garbage_is_not_a_fingerprint_file()
    {
        var r = new Random(1);
        for (int n = 0; n < 200; n += 7)
        {
            var g = new byte[n];
            r.NextBytes(g);
            Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(g, Pass));
        }
        Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes("{\"format\":\"oml-fingerprint-set\"}"u8, Pass));
        // Right magic, then garbage.
        byte[] magicThenGarbage = [.. "OMLFPSET"u8, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
        Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(magicThenGarbage, Pass));
    }

    [Fact]
    public void Plaintext_round_trip_is_marked_in_the_header()
    {
        var set = SampleWithRevelation();
        var path = Path.Combine(_dir, "plain.omlfp");
        FingerprintSetFile.WritePlaintext(path, set);
        Assert.Equal(set, FingerprintSetFile.Read(path, null));
        Assert.Equal(set, FingerprintSetFile.Read(path, "ignored"));
        var h = FingerprintSetFile.ReadHeader(path);
        Assert.False(h.Encrypted);
        Assert.Contains("\"encryption\": \"none\"", File.ReadAllText(path));
    }

    [Fact]
    public void Plaintext_tampering_is_detected()
    {
        var bytes = FingerprintSetFile.ToPlaintextBytes(Samples.Set(3));
        var text = Encoding.UTF8.GetString(bytes);
        int at = text.IndexOf("response 1", StringComparison.Ordinal);
        Assert.True(at > 0);
        bytes[at + 9] ^= 0x01;   // "response 0" / "response 1" swap
        Assert.Throws<CorruptFingerprintFileException>(() => FingerprintSetFile.FromBytes(bytes, null));
    }

    [Fact]
    public void An_empty_passphrase_cannot_encrypt()
    {
        Assert.Throws<ArgumentException>(() => FingerprintSetFile.ToEncryptedBytes(Samples.Set(1), "", Samples.FastKdf));
    }

    [Fact]
    public void Atomic_write_replaces_the_file_and_leaves_no_temp_file()
    {
        var path = Path.Combine(_dir, "atomic.omlfp");
        File.WriteAllText(path, "old content");
        FingerprintSetFile.Write(path, Samples.Set(2), Pass, Samples.FastKdf);
        FingerprintSetFile.WritePlaintext(path, Samples.Set(3));
        Assert.Equal(["atomic.omlfp"], Directory.GetFiles(_dir).Select(Path.GetFileName));
        Assert.Equal(3, FingerprintSetFile.Read(path, null).Count);
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Failed_write_leaves_no_temp_file_and_keeps_the_old_file()
    {
        var path = Path.Combine(_dir, "keep.omlfp");
        File.WriteAllText(path, "old content");
        var bad = Samples.Set(2) with { FormatVersion = 99 };
        Assert.Throws<ArgumentException>(() => FingerprintSetFile.Write(path, bad, Pass, Samples.FastKdf));
        Assert.Equal("old content", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void Write_into_a_missing_folder_fails_without_leaving_anything()
    {
        var path = Path.Combine(_dir, "missing", "x.omlfp");
        Assert.ThrowsAny<IOException>(() => FingerprintSetFile.WritePlaintext(path, Samples.Set(1)));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }
}
