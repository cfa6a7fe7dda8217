using System.CommandLine;
using System.Security.Cryptography;
using System.Text;
using Oml.Fingerprinting;

namespace Oml.Cli;

/// <summary>Passphrases, the owner's secret and atomic writes: what the fingerprint commands share.</summary>
public static class FingerprintIO
{
    /// <summary>The environment variable that holds the fingerprint-set passphrase.</summary>
    public const string PassphraseEnv = "OML_PASSPHRASE";

    /// <summary>The HKDF info string under which the owner's secret is derived from the passphrase.</summary>
    public const string OwnerSecretInfo = "oml-owner-secret";

    public static Option<string?> PassphraseFileOption() => new("--passphrase-file")
    {
        Description = $"File whose first line is the passphrase of the fingerprint-set file (otherwise the {PassphraseEnv} environment variable)",
    };

    /// <summary>The passphrase from <c>--passphrase-file</c> (first line) or <c>OML_PASSPHRASE</c>; null when neither is given.</summary>
    public static string? Passphrase(string? file)
    {
        if (file is not null)
        {
            if (!File.Exists(file)) throw new ArgumentException($"--passphrase-file: no file at {file}");
            var text = File.ReadAllText(file);
            int nl = text.IndexOfAny(['\r', '\n']);
            var p = nl >= 0 ? text[..nl] : text;
            if (p.Length == 0) throw new ArgumentException($"--passphrase-file: {file} holds an empty passphrase");
            return p;
        }
        var env = Environment.GetEnvironmentVariable(PassphraseEnv);
        return string.IsNullOrEmpty(env) ? null : env;
    }

    public static string RequirePassphrase(string? file, string why) =>
        Passphrase(file) ?? throw new ArgumentException($"{why}: give the passphrase with --passphrase-file FILE or the {PassphraseEnv} environment variable");

    /// <summary>
    /// The owner's secret: the raw bytes of <paramref name="secretFile"/> (at least 16), or else
    /// HKDF-SHA256(ikm = UTF-8 passphrase, salt = none, info = "oml-owner-secret"), 32 bytes.
    /// </summary>
    public static byte[] OwnerSecret(string? secretFile, string? passphrase)
    {
        if (secretFile is not null)
        {
            if (!File.Exists(secretFile)) throw new ArgumentException($"--secret-file: no file at {secretFile}");
            var bytes = File.ReadAllBytes(secretFile);
            if (bytes.Length < 16) throw new ArgumentException($"--secret-file: {secretFile} holds {bytes.Length} bytes; the owner's secret must be at least 16");
            return bytes;
        }
        if (passphrase is null) throw new ArgumentException("no owner's secret: give --secret-file, or a passphrase to derive it from");
        return DeriveOwnerSecret(passphrase);
    }

    public static byte[] DeriveOwnerSecret(string passphrase) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(passphrase), 32, salt: [], info: Encoding.UTF8.GetBytes(OwnerSecretInfo));

    /// <summary>Reads a set; a plaintext file needs no passphrase.</summary>
    public static FingerprintSet ReadSet(string path, string? passphraseFile)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no fingerprint-set file at {path}", path);
        var header = FingerprintSetFile.ReadHeader(path);
        string? passphrase = header.Encrypted ? RequirePassphrase(passphraseFile, $"{path} is encrypted") : null;
        return FingerprintSetFile.Read(path, passphrase);
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

    /// <summary>Writes text to a temporary file beside <paramref name="path"/> and renames it into place.</summary>
    public static void WriteTextAtomic(string path, string text)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(tmp, text, new UTF8Encoding(false));
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
