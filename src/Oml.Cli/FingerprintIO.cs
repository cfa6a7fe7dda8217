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

    /// <summary>The HKDF info string under which the owner's secret is derived from the passphrase.</summary>
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

    /// <summary>
    /// The owner's secret: the raw bytes of <paramref name="secretFile"/> (at least 16), or else
    /// HKDF-SHA256(ikm = UTF-8 passphrase, salt = none, info = "oml-owner-secret"), 32 bytes.
    /// </summary>
    public static byte[] OwnerSecret(string? secretFile, string? passphrase)
    {
        if (secretFile is not null)
        {
            if (!File.Exists(secretFile)) throw new FileNotFoundException($"--secret-file: no file at {secretFile}");
            var bytes = File.ReadAllBytes(secretFile);
            if (bytes.Length < 16) throw new InvalidDataException($"--secret-file: {secretFile} holds {bytes.Length} bytes; the owner's secret must be at least 16");
            return bytes;
        }
        if (passphrase is null) throw new UsageException("no owner's secret: give --secret-file, or a passphrase to derive it from");
        return DeriveOwnerSecret(passphrase);
    }

    public static byte[] DeriveOwnerSecret(string passphrase) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(passphrase), 32, salt: [], info: Encoding.UTF8.GetBytes(OwnerSecretInfo));

    /// <summary>Reads a set; a plaintext file needs no passphrase.</summary>
    public static FingerprintSet ReadSet(string path, string? passphraseFile)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no fingerprint-set file at {path}", path);
        var header = ReadHeader(path);
        string? passphrase = header.Encrypted ? RequirePassphrase(passphraseFile, $"{path} is encrypted") : null;
        return Read(path, passphrase);
    }

    /// <summary>A set file's header; a damaged file is an <see cref="InvalidDataException"/> naming it.</summary>
    public static FingerprintFileHeader ReadHeader(string path) => Named(path, () => FingerprintSetFile.ReadHeader(path));

    /// <summary>Reads a set with the passphrase given (null for a plaintext file); a damaged file is an <see cref="InvalidDataException"/> naming it.</summary>
    public static FingerprintSet Read(string path, string? passphrase) => Named(path, () => FingerprintSetFile.Read(path, passphrase));

    private static T Named<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (FingerprintFileException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
    }

    /// <summary>Rewrites a set file atomically in the form it has now (encrypted with the same KDF cost, or plaintext).</summary>
    public static void RewriteSet(string path, FingerprintSet set, string? passphraseFile)
    {
        var header = FingerprintSetFile.ReadHeader(path);
        if (header.Encrypted)
            FingerprintSetFile.Write(path, set, RequirePassphrase(passphraseFile, $"{path} is encrypted"),
                new FingerprintFileOptions { Pbkdf2Iterations = header.Pbkdf2Iterations });
        else
            FingerprintSetFile.WritePlaintext(path, set);
    }

    /// <summary>Writes UTF-8 text atomically (<see cref="AtomicFile"/>); without <paramref name="overwrite"/> an existing file is an error.</summary>
    public static void WriteTextAtomic(string path, string text, bool overwrite) => AtomicFile.WriteText(path, text, overwrite);
}
