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
        var force = CliOptions.Force("Overwrite --keystore if it exists");
        var json = CliOptions.Json("Print {\"address\", \"keystore\"} as JSON");
        var cmd = new Command("new", $"Generate a new account and write it to an encrypted keystore (passphrase from --passphrase-file or {FingerprintIO.PassphraseEnv}); prints its address.")
        {
            keystore, passphraseFile, iterations, force, json,
        };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(keystore)!;
            if (File.Exists(path) && !r.GetValue(force)) throw new UsageException($"{path} exists: choose another --keystore or give --force");
            int n = r.GetValue(iterations);
            if (n < 1 || n > Keystore.MaxIterations) throw new UsageException($"--kdf-iterations must be in [1, {Keystore.MaxIterations}]");
            var passphrase = FingerprintIO.RequirePassphrase(r.GetValue(passphraseFile), "a new keystore needs a passphrase");
            using var key = PrivateKey.Generate();
            Keystore.Save(path, key, passphrase, n);
            return new Report().Json("address", key.Address.ToString()).Json("keystore", path).Line(key.Address.ToString()).Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Show()
    {
        var keystore = KeystoreOption();
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var json = CliOptions.Json("Print {\"address\": ..., \"verified\": true|false} as JSON");
        var cmd = new Command("show", "Print the address of a keystore. With the passphrase the key is decrypted and the file's address checked "
            + "against it (verified); without it the file's 'address' field is printed as it stands, marked unverified.")
        {
            keystore, passphraseFile, json,
        };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(keystore)!;
            Address address;
            bool verified;
            if (FingerprintIO.Passphrase(r.GetValue(passphraseFile)) is { } passphrase)
            {
                // Decrypting checks the MAC and that the file's address field (if any) is the key's address.
                using var key = Keystore.Load(path, passphrase);
                (address, verified) = (key.Address, true);
            }
            else
            {
                try { (address, verified) = (Keystore.ReadAddress(path), false); }
                catch (KeystoreException e) when (e.Message.Contains("no 'address' field", StringComparison.Ordinal))
                {
                    throw new UsageException($"{e.Message}: give --passphrase-file FILE or set {FingerprintIO.PassphraseEnv}");
                }
            }
            if (r.GetValue(json)) Console.WriteLine(new System.Text.Json.Nodes.JsonObject { ["address"] = address.ToString(), ["verified"] = verified }.ToJsonString());
            else
            {
                Console.WriteLine(address);
                if (!verified) Console.Error.WriteLine($"oml: note: unverified: this is the file's 'address' field; give the passphrase to check it against the key");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    public static Command SignTypedData()
    {
        var keystore = KeystoreOption();
        var data = DataOption();
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var json = CliOptions.Json("Print {\"signature\", \"signer\"} as JSON");
        var cmd = new Command("sign-typed-data", "Sign EIP-712 typed data with the keystore's key; prints the 65-byte signature r ‖ s ‖ v as 0x-hex.")
        {
            keystore, data, passphraseFile, json,
        };
        cmd.SetAction(r =>
        {
            var typed = ReadTypedData(r.GetValue(data)!);
            var passphrase = FingerprintIO.RequirePassphrase(r.GetValue(passphraseFile), "signing needs the keystore's passphrase");
            using var key = Keystore.Load(r.GetValue(keystore)!, passphrase);
            var sig = Eip712.Sign(typed, key).ToHex();
            return new Report().Json("signature", sig).Json("signer", key.Address.ToString()).Line(sig).Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Recover()
    {
        var data = DataOption();
        var signature = new Option<string>("--signature") { Description = "The signature: 65 bytes r ‖ s ‖ v as hex (0x optional)", Required = true };
        var json = CliOptions.Json("Print {\"address\"} as JSON");
        var cmd = new Command("recover", "Print the address that signed EIP-712 typed data.")
        {
            data, signature, json,
        };
        cmd.SetAction(r =>
        {
            var typed = ReadTypedData(r.GetValue(data)!);
            Signature sig;
            try { sig = Signature.Parse(r.GetValue(signature)!); }
            catch (Exception e) when (e is ArgumentException or FormatException) { throw new UsageException($"--signature: {e.Message}"); }
            var signer = Eip712.RecoverSigner(typed, sig).ToString();
            return new Report().Json("address", signer).Line(signer).Print(r.GetValue(json));
        });
        return cmd;
    }

    private static Eip712TypedData ReadTypedData(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no typed-data file at {path}", path);
        var text = Oml.Models.IO.InputFile.ReadText(path, 1 << 20, "typed-data file");
        try { return Eip712TypedData.FromJson(text); }
        catch (Exception e) when (e is ArgumentException or FormatException) { throw new InvalidDataException($"{path}: {e.Message}", e); }
    }
}
