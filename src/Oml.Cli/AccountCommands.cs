using System.CommandLine;
using Oml.Protocol.Crypto;

namespace Oml.Cli;

/// <summary>
/// <c>oml account new|show|sign-typed-data|recover</c>: secp256k1 accounts kept in Web3 Secret Storage (v3) keystore
/// files, and EIP-712 typed-data signatures made and checked with them.
/// </summary>
public static class AccountCommands
{
    public static Command Create() => new("account", "Protocol accounts: create a keystore, show its address, sign and verify EIP-712 typed data.")
    {
        New(),
        Show(),
        SignTypedData(),
        Recover(),
    };

    private static Option<string> KeystoreOption() => new("--keystore") { Description = "The keystore file (Web3 Secret Storage v3 JSON)", Required = true };

    private static Option<string> DataOption() => new("--data") { Description = "The typed data: eth_signTypedData_v4 JSON (types, primaryType, domain, message)", Required = true };

    public static Command New()
    {
        var keystore = KeystoreOption();
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var iterations = new Option<int>("--kdf-iterations")
        {
            Description = "PBKDF2-HMAC-SHA256 iterations protecting the key (lower it only for tests)",
            DefaultValueFactory = _ => Keystore.DefaultIterations,
        };
        var force = new Option<bool>("--force") { Description = "Overwrite --keystore if it exists" };
        var cmd = new Command("new", $"Generate a new account and write it to an encrypted keystore (passphrase from --passphrase-file or {FingerprintIO.PassphraseEnv}); prints its address.")
        {
            keystore, passphraseFile, iterations, force,
        };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(keystore)!;
            if (File.Exists(path) && !r.GetValue(force)) throw new ArgumentException($"{path} exists: choose another --keystore or give --force");
            int n = r.GetValue(iterations);
            if (n < 1 || n > Keystore.MaxIterations) throw new ArgumentException($"--kdf-iterations must be in [1, {Keystore.MaxIterations}]");
            var passphrase = FingerprintIO.RequirePassphrase(r.GetValue(passphraseFile), "a new keystore needs a passphrase");
            using var key = PrivateKey.Generate();
            Keystore.Save(path, key, passphrase, n);
            Console.WriteLine(key.Address);
            return Cli.Ok;
        });
        return cmd;
    }

    public static Command Show()
    {
        var keystore = KeystoreOption();
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var cmd = new Command("show", "Print the address of a keystore (read from the file; a file without an address field is decrypted, which needs the passphrase).")
        {
            keystore, passphraseFile,
        };
        cmd.SetAction(r => Guard(() =>
        {
            var path = r.GetValue(keystore)!;
            Address address;
            try
            {
                address = Keystore.ReadAddress(path);
            }
            catch (KeystoreException) when (FingerprintIO.Passphrase(r.GetValue(passphraseFile)) is { } passphrase)
            {
                using var key = Keystore.Load(path, passphrase);
                address = key.Address;
            }
            Console.WriteLine(address);
        }));
        return cmd;
    }

    public static Command SignTypedData()
    {
        var keystore = KeystoreOption();
        var data = DataOption();
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var cmd = new Command("sign-typed-data", "Sign EIP-712 typed data with the keystore's key; prints the 65-byte signature r ‖ s ‖ v as 0x-hex.")
        {
            keystore, data, passphraseFile,
        };
        cmd.SetAction(r => Guard(() =>
        {
            var typed = ReadTypedData(r.GetValue(data)!);
            var passphrase = FingerprintIO.RequirePassphrase(r.GetValue(passphraseFile), "signing needs the keystore's passphrase");
            using var key = Keystore.Load(r.GetValue(keystore)!, passphrase);
            Console.WriteLine(Eip712.Sign(typed, key).ToHex());
        }));
        return cmd;
    }

    public static Command Recover()
    {
        var data = DataOption();
        var signature = new Option<string>("--signature") { Description = "The signature: 65 bytes r ‖ s ‖ v as hex (0x optional)", Required = true };
        var cmd = new Command("recover", "Print the address that signed EIP-712 typed data.")
        {
            data, signature,
        };
        cmd.SetAction(r => Guard(() =>
        {
            var typed = ReadTypedData(r.GetValue(data)!);
            var sig = Signature.Parse(r.GetValue(signature)!);
            Console.WriteLine(Eip712.RecoverSigner(typed, sig));
        }));
        return cmd;
    }

    private static Eip712TypedData ReadTypedData(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no typed-data file at {path}", path);
        return Eip712TypedData.FromJson(File.ReadAllText(path));
    }

    /// <summary>Runs an action; keystore failures (wrong passphrase, damaged file) become work failures (exit 1) with their message.</summary>
    private static int Guard(Action action)
    {
        try
        {
            action();
            return Cli.Ok;
        }
        catch (KeystoreException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
    }
}
