using Oml.Protocol.Crypto;

namespace Oml.Cli.Tests;

/// <summary><c>oml account</c>: new → show → sign-typed-data → recover, and the failures scripts must be able to tell apart.</summary>
[Collection(nameof(CliTests))]
public sealed class AccountCliTests : IDisposable
{
    private const string Kdf = "1000"; // PBKDF2 iterations: small, for test speed only.
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-cli-account-").FullName;

    private string PassFile => Path.Combine(_dir, "pass.txt");
    private string MailFile => Path.Combine(_dir, "mail.json");

    public AccountCliTests()
    {
        File.WriteAllText(PassFile, "correct horse battery staple\n");
        // The EIP-712 specification's Mail example.
        File.WriteAllText(MailFile, """
            {"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
             "Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],
             "Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},
             "primaryType":"Mail",
             "domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
             "message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void New_show_sign_and_recover_agree()
    {
        var ks = Path.Combine(_dir, "me.json");
        var (code, output, err) = Run("account", "new", "--keystore", ks, "--passphrase-file", PassFile, "--kdf-iterations", Kdf);
        Assert.True(code == 0, err);
        var address = Address.Parse(output.Trim());
        Assert.Equal(address.ToString(), output.Trim()); // printed in EIP-55 form

        (code, output, _) = Run("account", "show", "--keystore", ks);
        Assert.Equal(0, code);
        Assert.Equal(address.ToString(), output.Trim());

        (code, output, err) = Run("account", "sign-typed-data", "--keystore", ks, "--data", MailFile, "--passphrase-file", PassFile);
        Assert.True(code == 0, err);
        var sig = output.Trim();
        Assert.Equal(132, sig.Length);

        (code, output, _) = Run("account", "recover", "--data", MailFile, "--signature", sig);
        Assert.Equal(0, code);
        Assert.Equal(address.ToString(), output.Trim());

        // An existing keystore is not overwritten without --force.
        (code, _, err) = Run("account", "new", "--keystore", ks, "--passphrase-file", PassFile, "--kdf-iterations", Kdf);
        Assert.Equal(2, code);
        Assert.Contains("exists", err);
    }

    [Fact]
    public void Signing_with_the_EIP_example_key_reproduces_the_EIP_signature()
    {
        var ks = Path.Combine(_dir, "cow.json");
        using (var cow = PrivateKey.FromBytes(Keccak256.Hash("cow"u8)))
            Keystore.Save(ks, cow, "correct horse battery staple", 1000);
        var (code, output, err) = Run("account", "sign-typed-data", "--keystore", ks, "--data", MailFile, "--passphrase-file", PassFile);
        Assert.True(code == 0, err);
        Assert.Equal("0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b915621c", output.Trim());
        (code, output, _) = Run("account", "recover", "--data", MailFile, "--signature", output.Trim());
        Assert.Equal(0, code);
        Assert.Equal("0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826", output.Trim());
    }

    [Fact]
    public void Failures_have_clear_messages_and_exit_codes()
    {
        var ks = Path.Combine(_dir, "k.json");
        Assert.Equal(0, Run("account", "new", "--keystore", ks, "--passphrase-file", PassFile, "--kdf-iterations", Kdf).Code);

        var wrongPass = Path.Combine(_dir, "wrong.txt");
        File.WriteAllText(wrongPass, "not it\n");
        var (code, _, err) = Run("account", "sign-typed-data", "--keystore", ks, "--data", MailFile, "--passphrase-file", wrongPass);
        Assert.Equal(1, code);
        Assert.Contains("wrong passphrase", err);

        File.WriteAllText(Path.Combine(_dir, "broken.json"), "{ not json");
        (code, _, err) = Run("account", "show", "--keystore", Path.Combine(_dir, "broken.json"));
        Assert.Equal(1, code);
        Assert.Contains("keystore", err);

        (code, _, err) = Run("account", "recover", "--data", MailFile, "--signature", "0x1234");
        Assert.Equal(2, code);
        Assert.Contains("130 hex digits", err);

        var bad = Path.Combine(_dir, "bad.json");
        File.WriteAllText(bad, File.ReadAllText(MailFile).Replace("\"uint256\"", "\"uint7\""));
        (code, _, err) = Run("account", "recover", "--data", bad, "--signature", "0x" + new string('1', 128) + "1b");
        Assert.Equal(1, code); // a damaged data file is a failure, not a usage error
        Assert.Contains("uint7", err);

        (code, _, _) = Run("account", "show", "--keystore", Path.Combine(_dir, "missing.json"));
        Assert.Equal(1, code);
    }
}
