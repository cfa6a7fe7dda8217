using System.CommandLine;
using System.Security.Cryptography;
using System.Text;
using Oml.Fingerprinting;
using Oml.Models.IO;

namespace Oml.Cli;

/// <summary>Passphrases, the owner's secret and atomic writes: what the fingerprint commands share.</summary>
public static class FingerprintIO
{
    /// <summary>The environment variable that holds the fingerprint-set passphrase.</summary>
    public const string PassphraseEnv = "OML_PASSPHRASE";

    /// <summary>The HKDF info string under which version-1 files derived the owner's secret from the passphrase.</summary>
    public const string OwnerSecretInfo = "oml-owner-secret";

    public static Option<string?> PassphraseFileOption() =>
        CliOptions.PassphraseFile($"File whose first line is the passphrase of the fingerprint-set file (otherwise the {PassphraseEnv} environment variable)");

    /// <summary>The passphrase from <c>--passphrase-file</c> (first line) or <c>OML_PASSPHRASE</c>; null when neither is given.</summary>
    public static string? Passphrase(string? file)
    {
        if (file is not null)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"--passphrase-file: no file at {file}");
            var text = File.ReadAllText(file);
            int nl = text.IndexOfAny(['\r', '\n']);
            var p = nl >= 0 ? text[..nl] : text;
            if (p.Length == 0) throw new InvalidDataException($"--passphrase-file: {file} holds an empty passphrase");
            return p;
        }
        var env = Environment.GetEnvironmentVariable(PassphraseEnv);
        return string.IsNullOrEmpty(env) ? null : env;
    }

    public static string RequirePassphrase(string? file, string why) =>
        Passphrase(file) ?? throw new UsageException($"{why}: give the passphrase with --passphrase-file FILE or the {PassphraseEnv} environment variable");

    /// <summary>The raw bytes of <c>--secret-file</c> (at least 16).</summary>
    public static byte[] ReadSecretFile(string secretFile)
    {
        if (!File.Exists(secretFile)) throw new FileNotFoundException($"--secret-file: no file at {secretFile}");
        var bytes = File.ReadAllBytes(secretFile);
        if (bytes.Length < FingerprintSetFile.MinOwnerSecretLength)
            throw new InvalidDataException($"--secret-file: {secretFile} holds {bytes.Length} bytes; the owner's secret must be at least {FingerprintSetFile.MinOwnerSecretLength}");
        return bytes;
    }

    /// <summary>
    /// The owner's secret of the set in <paramref name="setPath"/>: the raw bytes of <paramref name="secretFile"/> when
    /// given, else the random secret the set file keeps (version 2, written by <c>oml fingerprints generate</c>), else,
    /// for a version-1 file, the legacy derivation from the passphrase (<see cref="DeriveLegacyOwnerSecret"/>) with a
    /// warning that it is open to offline guessing.
    /// </summary>
    public static byte[] OwnerSecret(string? secretFile, string setPath, string? passphrase)
    {
        if (secretFile is not null) return ReadSecretFile(secretFile);
        var header = ReadHeader(setPath);
        var contents = ReadContents(setPath, header.Encrypted ? passphrase : null);
        if (contents.OwnerSecret is { } stored) return stored;
        if (contents.Version >= 2)
            throw new UsageException($"{setPath} keeps no owner's secret (a subset, or written without one): give --secret-file, or use the pool it came from");
        if (passphrase is null) throw new UsageException($"{setPath} is a version-1 set file, whose owner's secret is derived from the passphrase: give the passphrase or --secret-file");
        Console.Error.WriteLine($"oml: warning: {setPath} is a version-1 set file: its owner's secret is derived from the passphrase without stretching, "
            + "so a published commitment or revealed fingerprint lets anyone test passphrase guesses offline; generate a new set (version 2 keeps a random secret)");
        return DeriveLegacyOwnerSecret(passphrase);
    }

    /// <summary>
    /// Version-1 files only: HKDF-SHA256(ikm = UTF-8 passphrase, salt = none, info = "oml-owner-secret"), 32 bytes. Not
    /// stretched, so never used for new sets.
    /// </summary>
    public static byte[] DeriveLegacyOwnerSecret(string passphrase) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(passphrase), 32, salt: [], info: Encoding.UTF8.GetBytes(OwnerSecretInfo));

    /// <summary>Reads a set; a plaintext file needs no passphrase.</summary>
    public static FingerprintSet ReadSet(string path, string? passphraseFile)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no fingerprint-set file at {path}", path);
        // Read once: the header (is a passphrase needed?) and the set come from the same bytes.
        var bytes = File.ReadAllBytes(path);
        var header = Named(path, () => FingerprintSetFile.HeaderFromBytes(bytes));
        string? passphrase = header.Encrypted ? RequirePassphrase(passphraseFile, $"{path} is encrypted") : null;
        return Named(path, () => FingerprintSetFile.FromBytes(bytes, passphrase));
    }

    /// <summary>A set file's header; a damaged file is an <see cref="InvalidDataException"/> naming it.</summary>
    public static FingerprintFileHeader ReadHeader(string path) => Named(path, () => FingerprintSetFile.ReadHeader(path));

    /// <summary>Reads a set with the passphrase given (null for a plaintext file); a damaged file is an <see cref="InvalidDataException"/> naming it.</summary>
    public static FingerprintSet Read(string path, string? passphrase) => Named(path, () => FingerprintSetFile.Read(path, passphrase));

    /// <summary>A set file's contents (the set, the owner's secret it keeps, its version); a damaged file is an <see cref="InvalidDataException"/> naming it.</summary>
    public static FingerprintFileContents ReadContents(string path, string? passphrase) => Named(path, () => FingerprintSetFile.ReadContents(path, passphrase));

    private static T Named<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (FingerprintFileException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
    }

    /// <summary>
    /// Rewrites a set file atomically in the form it has now (encrypted with the same KDF cost, or plaintext), keeping
    /// the owner's secret it holds. A version-1 file becomes version 2 and keeps its legacy owner's secret explicitly
    /// (derived from the passphrase), so that what was derived from it stays the same.
    /// </summary>
    public static void RewriteSet(string path, FingerprintSet set, string? passphraseFile)
    {
        var header = FingerprintSetFile.ReadHeader(path);
        string? passphrase = header.Encrypted ? RequirePassphrase(passphraseFile, $"{path} is encrypted") : Passphrase(passphraseFile);
        var old = FingerprintSetFile.ReadContents(path, header.Encrypted ? passphrase : null);
        byte[]? secret = old.OwnerSecret ?? (old.Version == 1 && passphrase is not null ? DeriveLegacyOwnerSecret(passphrase) : null);
        if (header.Encrypted)
            FingerprintSetFile.Write(path, set, passphrase!, new FingerprintFileOptions { Pbkdf2Iterations = header.Pbkdf2Iterations, OwnerSecret = secret });
        else
            FingerprintSetFile.WritePlaintext(path, set, secret);
    }

    /// <summary>
    /// Checks a passphrase and a PBKDF2 cost for a new set file: a weak passphrase (<see cref="PassphrasePolicy"/>) needs
    /// <paramref name="allowWeak"/>, fewer iterations than <see cref="FingerprintSetFile.MinSafePbkdf2Iterations"/> need
    /// <paramref name="insecureKdf"/>.
    /// </summary>
    public static void CheckProtection(string passphrase, int iterations, bool allowWeak, bool insecureKdf)
    {
        if (iterations < 1 || iterations > FingerprintSetFile.MaxPbkdf2Iterations)
            throw new UsageException($"--kdf-iterations must be in [1, {FingerprintSetFile.MaxPbkdf2Iterations}]");
        if (iterations < FingerprintSetFile.MinSafePbkdf2Iterations && !insecureKdf)
            throw new UsageException($"--kdf-iterations {iterations} is below the safe floor of {FingerprintSetFile.MinSafePbkdf2Iterations:N0}: "
                + "anyone with the file could test passphrases that much faster; give --insecure-kdf to accept that (tests only)");
        if (!allowWeak && PassphrasePolicy.Weakness(passphrase) is { } why)
            throw new UsageException($"the passphrase is weak ({why}): anyone with the file can guess it offline; "
                + $"use at least {PassphrasePolicy.MinLength} characters of several kinds (e.g. four random words), or give --allow-weak-passphrase");
    }

    /// <summary>Writes UTF-8 text atomically (<see cref="AtomicFile"/>); without <paramref name="overwrite"/> an existing file is an error.</summary>
    /// <summary>The first <paramref name="maxChars"/> characters of a UTF-8 text file (all of a shorter one).</summary>
    public static string ReadTextPrefix(string path, int maxChars)
    {
        using var reader = new StreamReader(path);
        var buffer = new char[maxChars];
        int n = reader.ReadBlock(buffer, 0, maxChars);
        return new string(buffer, 0, n);
    }

    public static void WriteTextAtomic(string path, string text, bool overwrite) => AtomicFile.WriteText(path, text, overwrite);
}
