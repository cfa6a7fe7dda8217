using System.Text.Json.Nodes;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Tests.Crypto;

public sealed class KeystoreTests : IDisposable
{
    private const int FastIterations = 1000; // PBKDF2 cost for test speed only
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-keystore-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static byte[] H(string hex) => Convert.FromHexString(hex);

    /// <summary>The Web3 Secret Storage Definition's test vectors (ethereum.org, "Web3 secret storage definition", Test vectors).</summary>
    private const string SpecPbkdf2 = """
        {
          "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
            "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
            "kdf": "pbkdf2",
            "kdfparams": {"c": 262144, "dklen": 32, "prf": "hmac-sha256", "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
            "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"
          },
          "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
          "version": 3
        }
        """;

    private const string SpecScrypt = """
        {
          "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": "83dbcc02d8ccb40e466191a123791e0e"},
            "ciphertext": "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
            "kdf": "scrypt",
            "kdfparams": {"dklen": 32, "n": 262144, "p": 8, "r": 1, "salt": "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19"},
            "mac": "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"
          },
          "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
          "version": 3
        }
        """;

    private const string SpecSecret = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";

    [Fact]
    public void Decrypts_the_spec_PBKDF2_vector()
    {
        using var key = Keystore.Decrypt(SpecPbkdf2, "testpassword");
        Assert.Equal(SpecSecret, Convert.ToHexStringLower(key.ExportBytes()));
        Assert.Equal(Address.Parse("0x008aeeda4d805471df9b2a5b0f38a0c3bcba786b"), key.Address);
        Assert.Throws<WrongKeystorePassphraseException>(() => Keystore.Decrypt(SpecPbkdf2, "testpassword!"));
    }

    [Fact]
    public void Decrypts_the_spec_scrypt_vector()
    {
        using var key = Keystore.Decrypt(SpecScrypt, "testpassword");
        Assert.Equal(SpecSecret, Convert.ToHexStringLower(key.ExportBytes()));
    }

    [Fact]
    public void Spec_intermediates_AES_CTR()
    {
        // Cipher key = derivedKey[0..16] from the spec's "Intermediates" for the PBKDF2 vector.
        var plain = Keystore.AesCtr(H("f06d69cdc7da0faffb1008270bca38f5"), H("6087dab2f9fdbbfaddc31a909735c1e6"),
            H("5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46"));
        Assert.Equal(SpecSecret, Convert.ToHexStringLower(plain));
        // NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt), first two blocks: exercises the counter increment.
        var ct = Keystore.AesCtr(H("2b7e151628aed2a6abf7158809cf4f3c"), H("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"),
            H("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"));
        Assert.Equal("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff", Convert.ToHexStringLower(ct));
        // The counter carries across bytes: iv ...ff ff → ...00 00 with the next byte incremented.
        var a = Keystore.AesCtr(new byte[16], H("000000000000000000000000000000ff"), new byte[32]);
        var b = Keystore.AesCtr(new byte[16], H("00000000000000000000000000000100"), new byte[16]);
        Assert.Equal(Convert.ToHexStringLower(b), Convert.ToHexStringLower(a[16..]));
    }

    [Fact]
    public void Scrypt_matches_RFC_7914_vectors()
    {
        // RFC 7914 section 12, first two vectors.
        Assert.Equal("77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906",
            Convert.ToHexStringLower(Scrypt.DeriveKey([], [], 16, 1, 1, 64)));
        Assert.Equal("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
            Convert.ToHexStringLower(Scrypt.DeriveKey("password"u8, "NaCl"u8, 1024, 8, 16, 64)));
        Assert.Throws<ArgumentException>(() => Scrypt.DeriveKey([], [], 1000, 1, 1, 32));
        Assert.Throws<ArgumentException>(() => Scrypt.DeriveKey([], [], 1 << 24, 8, 1, 32));
    }

    [Fact]
    public void Round_trip_through_a_file_with_owner_only_mode()
    {
        var path = Path.Combine(_dir, "sub", "key.json");
        using var key = PrivateKey.Generate();
        Keystore.Save(path, key, "correct horse", FastIterations);
        Assert.Equal(key.Address, Keystore.ReadAddress(path));
        using (var back = Keystore.Load(path, "correct horse"))
            Assert.Equal(key.ExportBytes(), back.ExportBytes());
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.tmp"));

        var json = JsonNode.Parse(File.ReadAllText(path))!;
        Assert.Equal(3, json["version"]!.GetValue<int>());
        Assert.Equal("pbkdf2", json["crypto"]!["kdf"]!.GetValue<string>());
        Assert.Equal(FastIterations, json["crypto"]!["kdfparams"]!["c"]!.GetValue<int>());
        Assert.True(Guid.TryParse(json["id"]!.GetValue<string>(), out _));
        Assert.Equal(Convert.ToHexStringLower(key.Address.ToArray()), json["address"]!.GetValue<string>());

        // Saving again over the file replaces it.
        using var other = PrivateKey.Generate();
        Keystore.Save(path, other, "pw2", FastIterations);
        Assert.Equal(other.Address, Keystore.ReadAddress(path));
    }

    [Fact]
    public void Wrong_passphrase_is_its_own_error()
    {
        using var key = PrivateKey.Generate();
        var json = Keystore.Encrypt(key, "right", FastIterations);
        var e = Assert.Throws<WrongKeystorePassphraseException>(() => Keystore.Decrypt(json, "wrong"));
        Assert.Contains("passphrase", e.Message);
        Assert.Throws<WrongKeystorePassphraseException>(() => Keystore.Decrypt(json, ""));
        // Same key, different salt and iv each time.
        Assert.NotEqual(json, Keystore.Encrypt(key, "right", FastIterations));
    }

    [Fact]
    public void Corrupted_files_are_rejected()
    {
        using var key = PrivateKey.Generate();
        var json = Keystore.Encrypt(key, "pw", FastIterations);

        string Edit(Action<JsonObject> edit)
        {
            var o = JsonNode.Parse(json)!.AsObject();
            edit(o);
            return o.ToJsonString();
        }

        // A flipped ciphertext byte fails the MAC (reported as a wrong passphrase: the two cannot be told apart).
        var ct = JsonNode.Parse(json)!["crypto"]!["ciphertext"]!.GetValue<string>();
        var flipped = (ct[0] == '0' ? '1' : '0') + ct[1..];
        Assert.Throws<WrongKeystorePassphraseException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["ciphertext"] = flipped), "pw"));

        Assert.Throws<KeystoreException>(() => Keystore.Decrypt("{ not json", "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt("[]", "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["version"] = 2), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o.Remove("crypto")), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["cipher"] = "aes-128-cbc"), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["kdf"] = "argon2"), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["kdfparams"]!["prf"] = "hmac-sha1"), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["kdfparams"]!["c"] = "many"), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["kdfparams"]!["dklen"] = 16), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["mac"] = "zz"), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["cipherparams"]!["iv"] = "00"), "pw"));
        Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["crypto"]!["ciphertext"] = ct[..62]), "pw"));
        // A valid file whose address field names another account.
        var e = Assert.Throws<KeystoreException>(() => Keystore.Decrypt(Edit(o => o["address"] = "008aeeda4d805471df9b2a5b0f38a0c3bcba786b"), "pw"));
        Assert.Contains("address", e.Message);

        var path = Path.Combine(_dir, "broken.json");
        File.WriteAllText(path, "{\"version\":3}");
        Assert.Throws<KeystoreException>(() => Keystore.ReadAddress(path));
        Assert.Throws<KeystoreException>(() => Keystore.Load(path, "pw"));
        Assert.Throws<FileNotFoundException>(() => Keystore.Load(Path.Combine(_dir, "missing.json"), "pw"));
    }

    [Fact]
    public void Accepts_capitalised_Crypto_and_0x_prefixed_fields()
    {
        // Some older wallets write "Crypto"; keythereum writes the address without 0x.
        var o = JsonNode.Parse(SpecPbkdf2)!.AsObject();
        var crypto = o["crypto"]!;
        o.Remove("crypto");
        o["Crypto"] = crypto;
        o["address"] = "0x008aeeda4d805471df9b2a5b0f38a0c3bcba786b";
        using var key = Keystore.Decrypt(o.ToJsonString(), "testpassword");
        Assert.Equal(SpecSecret, Convert.ToHexStringLower(key.ExportBytes()));
    }
}
