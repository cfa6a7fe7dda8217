using System.Text;
using System.Text.Json.Nodes;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Tests.Crypto;

public class Eip712Tests
{
    private static string Hex(byte[] b) => Convert.ToHexStringLower(b);
    private static byte[] H(string hex) => Convert.FromHexString(hex.StartsWith("0x") ? hex[2..] : hex);

    private const string Domain = """
        "EIP712Domain": [
          {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
          {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}
        ]
        """;

    private const string DomainValue = """
        "domain": {"name": "Ether Mail", "version": "1", "chainId": 1, "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"}
        """;

    /// <summary>The EIP's own example (eips.ethereum.org/EIPS/eip-712, assets/eip-712/Example.js and Example.sol).</summary>
    public const string MailJson = "{\"types\": {" + Domain + """
        ,
            "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
            "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person"}, {"name": "contents", "type": "string"}]
          },
          "primaryType": "Mail",
        """ + DomainValue + """
        ,
          "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!"
          }
        }
        """;

    /// <summary>
    /// The arrays variant of the Mail example used by MetaMask's eth-sig-util for signTypedData_v4 and repeated in other
    /// libraries' suites (e.g. eth-account's, Trust Wallet core's): Person.wallets is address[], Mail.to is Person[].
    /// </summary>
    public const string MailArraysJson = "{\"types\": {" + Domain + """
        ,
            "Person": [{"name": "name", "type": "string"}, {"name": "wallets", "type": "address[]"}],
            "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person[]"}, {"name": "contents", "type": "string"}],
            "Group": [{"name": "name", "type": "string"}, {"name": "members", "type": "Person[]"}]
          },
          "primaryType": "Mail",
        """ + DomainValue + """
        ,
          "message": {
            "from": {"name": "Cow", "wallets": ["0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826", "0xDeaDbeefdEAdbeefdEadbEEFdeadbeEFdEaDbeeF"]},
            "to": [{"name": "Bob", "wallets": ["0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB", "0xB0BdaBea57B0BDABeA57b0bdABEA57b0BDabEa57", "0xB0B0b0b0b0b0B000000000000000000000000000"]}],
            "contents": "Hello, Bob!"
          }
        }
        """;

    [Fact]
    public void Mail_example_matches_the_EIP()
    {
        var data = Eip712TypedData.FromJson(MailJson);
        Assert.Equal("Mail(Person from,Person to,string contents)Person(string name,address wallet)", Eip712.EncodeType(data.Types, "Mail"));
        // Example.js / Example.sol: typeHash, domain separator, hashStruct(mail), and the digest.
        Assert.Equal("a0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2", Hex(Eip712.TypeHash(data.Types, "Mail")));
        Assert.Equal("f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f", Hex(Eip712.DomainSeparator(data)));
        Assert.Equal("c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e", Hex(Eip712.HashStruct(data, "Mail", data.Message)));
        Assert.Equal("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2", Hex(Eip712.Digest(data)));
    }

    [Fact]
    public void Mail_example_signed_by_cow_gives_the_EIP_signature()
    {
        var data = Eip712TypedData.FromJson(MailJson);
        using var cow = PrivateKey.FromBytes(Keccak256.Hash("cow"u8));
        var sig = Eip712.Sign(data, cow);
        Assert.Equal(28, sig.V);
        Assert.Equal("0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d"
            + "07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562" + "1c", sig.ToHex());
        Assert.Equal(Address.Parse("0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"), Eip712.RecoverSigner(data, sig));

        // Any change to the message changes the recovered signer.
        var changed = data with { Message = (JsonObject)data.Message.DeepClone() };
        changed.Message["contents"] = "Hello, Bob?";
        Assert.NotEqual(cow.Address, Eip712.RecoverSigner(changed, sig));
    }

    [Fact]
    public void Arrays_example_matches_published_intermediates()
    {
        var data = Eip712TypedData.FromJson(MailArraysJson);
        // Values from the eth-sig-util / eth-account suites for this example.
        Assert.Equal("Mail(Person from,Person[] to,string contents)Person(string name,address[] wallets)", Eip712.EncodeType(data.Types, "Mail"));
        Assert.Equal("Group(string name,Person[] members)Person(string name,address[] wallets)", Eip712.EncodeType(data.Types, "Group"));
        Assert.Equal("1d953c52160a9018dbb518700e05da47418ac2b6044f0c044f84c15a80103107", Hex(Eip712.TypeHash(data.Types, "Group")));
        Assert.Equal("fabfe1ed996349fc6027709802be19d047da1aa5d6894ff5f6486d92db2e6860", Hex(Eip712.TypeHash(data.Types, "Person")));
        Assert.Equal("4bd8a9a2b93427bb184aca81e24beb30ffa3c747e2a33d4225ec08bf12e2e753", Hex(Eip712.TypeHash(data.Types, "Mail")));
        Assert.Equal("9b4846dd48b866f0ac54d61b9b21a9e746f921cefa4ee94c4c0a1c49c774f67f", Hex(Eip712.HashStruct(data, "Person", data.Message["from"]!.AsObject())));
        Assert.Equal("efa62530c7ae3a290f8a13a5fc20450bdb3a6af19d9d9d2542b5a94e631a9168", Hex(Eip712.HashStruct(data, "Person", data.Message["to"]![0]!.AsObject())));
        Assert.Equal("eb4221181ff3f1a83ea7313993ca9218496e424604ba9492bb4052c03d5c3df8", Hex(Eip712.HashStruct(data, "Mail", data.Message)));
        Assert.Equal("a85c2e2b118698e88db68a8105b794a8cc7cec074e89ef991cb4f5f533819cc2", Hex(Eip712.Digest(data)));
    }

    [Fact]
    public void BytesN_example_matches_published_digest()
    {
        // eth-account's "encoding 4": bytes8 given as hex.
        var json = "{\"types\": {" + Domain + """
            , "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}, {"name": "count", "type": "bytes8"}]},
              "primaryType": "Person",
            """ + DomainValue + """
            , "message": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB", "count": "0x1122334455667788"}}
            """;
        Assert.Equal("2a3e64893ed4ba30ea34dbff3b0aa08c7677876cfdf7112362eccf3111f58d1d", Hex(Eip712.Digest(Eip712TypedData.FromJson(json))));
    }

    [Fact]
    public void Mixed_example_without_a_declared_domain_type_matches_a_third_party_expected_digest()
    {
        // uint256[] from number/hex/decimal, a negative int8, bytes, bytes4, bool and a fixed array of structs; the domain
        // type is built from the domain's own fields (name, chainId). Expected value from another EIP-712 implementation's
        // suite, where it is stated to agree with ethers.js's TypedDataEncoder.
        const string json = """
            {"types":{
               "Order":[{"name":"amounts","type":"uint256[]"},{"name":"delta","type":"int8"},{"name":"blob","type":"bytes"},
                        {"name":"tag","type":"bytes4"},{"name":"ok","type":"bool"},{"name":"people","type":"Person[2]"}],
               "Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}]},
             "primaryType":"Order",
             "domain":{"name":"X","chainId":100},
             "message":{"amounts":[1,"0x10","1000000000000000000000"],"delta":-5,"blob":"0x0102","tag":"0xdeadbeef","ok":true,
                        "people":[{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
                                  {"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"}]}}
            """;
        var data = Eip712TypedData.FromJson(json);
        Assert.Equal("0d0fbf54d68fa1d57a36eee9b90183dd985584f16ea5498512e00f6471b53c0b", Hex(Eip712.Digest(data)));
    }

    [Fact]
    public void Hand_derived_encoding_of_negative_ints_fixed_arrays_bytesN_and_bool()
    {
        const string json = """
            {"types":{"EIP712Domain":[{"name":"name","type":"string"}],
                      "Foo":[{"name":"a","type":"int16"},{"name":"b","type":"uint8[2]"},{"name":"c","type":"bytes3"},{"name":"d","type":"bool"},{"name":"e","type":"bytes"}]},
             "primaryType":"Foo","domain":{"name":"T"},
             "message":{"a":"-2","b":[1,"0xff"],"c":"0x010203","d":true,"e":"0x"}}
            """;
        var data = Eip712TypedData.FromJson(json);
        // By the EIP's rules, written out byte by byte.
        static byte[] Word(Action<byte[]> fill) { var w = new byte[32]; fill(w); return w; }
        var typeHash = Keccak256.Hash(Encoding.ASCII.GetBytes("Foo(int16 a,uint8[2] b,bytes3 c,bool d,bytes e)"));
        var a = Word(w => { Array.Fill(w, (byte)0xFF); w[31] = 0xFE; });           // -2, two's complement over 256 bits
        var b = Keccak256.Hash([.. Word(w => w[31] = 1), .. Word(w => w[31] = 0xFF)]);  // keccak of the elements' words
        var c = Word(w => { w[0] = 1; w[1] = 2; w[2] = 3; });                      // right-padded
        var d = Word(w => w[31] = 1);
        var e = Keccak256.Hash([]);
        var expected = Keccak256.Hash([.. typeHash, .. a, .. b, .. c, .. d, .. e]);
        Assert.Equal(Hex(expected), Hex(Eip712.HashStruct(data, "Foo", data.Message)));
        var domainSep = Keccak256.Hash([.. Keccak256.Hash("EIP712Domain(string name)"u8), .. Keccak256.Hash("T"u8)]);
        Assert.Equal(Hex(domainSep), Hex(Eip712.DomainSeparator(data)));
        Assert.Equal(Hex(Keccak256.Hash([0x19, 0x01, .. domainSep, .. expected])), Hex(Eip712.Digest(data)));
    }

    [Fact]
    public void EncodeType_sorts_referenced_types_and_follows_nesting_and_arrays()
    {
        var types = new Dictionary<string, IReadOnlyList<Eip712Field>>
        {
            ["Zed"] = [new("a", "Beta[][2]"), new("b", "Alpha")],
            ["Alpha"] = [new("x", "uint256")],
            ["Beta"] = [new("g", "Gamma"), new("self", "Beta[]")],
            ["Gamma"] = [new("s", "string")],
            ["Unused"] = [new("u", "bool")],
        };
        Assert.Equal("Zed(Beta[][2] a,Alpha b)Alpha(uint256 x)Beta(Gamma g,Beta[] self)Gamma(string s)", Eip712.EncodeType(types, "Zed"));
        Assert.Equal("Beta(Gamma g,Beta[] self)Gamma(string s)", Eip712.EncodeType(types, "Beta"));
        Assert.Throws<ArgumentException>(() => Eip712.EncodeType(types, "Nope"));
        types["Bad"] = [new("q", "Missing")];
        Assert.Contains("Missing", Assert.Throws<ArgumentException>(() => Eip712.EncodeType(types, "Bad")).Message);
    }

    [Theory]
    [InlineData("""{"a":"0x12"}""", "address", "hex digits")]
    [InlineData("""{"a":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}""", "address", "checksum")]
    [InlineData("""{"a":256}""", "uint8", "out of range")]
    [InlineData("""{"a":-1}""", "uint256", "out of range")]
    [InlineData("""{"a":-129}""", "int8", "out of range")]
    [InlineData("""{"a":128}""", "int8", "out of range")]
    [InlineData("""{"a":1.5}""", "uint256", "not an integer")]
    [InlineData("""{"a":"12abc"}""", "uint256", "not an integer")]
    [InlineData("""{}""", "uint256", "missing")]
    [InlineData("""{"a":1,"b":2}""", "uint256", "does not declare")]
    [InlineData("""{"a":"0x010203"}""", "bytes2", "exactly 2")]
    [InlineData("""{"a":"0x01"}""", "bytes2", "exactly 2")]
    [InlineData("""{"a":"0x123"}""", "bytes", "odd")]
    [InlineData("""{"a":"1234"}""", "bytes", "0x")]
    [InlineData("""{"a":[1]}""", "uint256[2]", "exactly 2")]
    [InlineData("""{"a":1}""", "uint256[]", "array")]
    [InlineData("""{"a":1}""", "Nope", "unknown")]
    [InlineData("""{"a":1}""", "uint7", "unknown")]
    [InlineData("""{"a":"0x00"}""", "bytes33", "unknown")]
    [InlineData("""{"a":"yes"}""", "bool", "bool")]
    [InlineData("""{"a":5}""", "string", "string")]
    [InlineData("""{"a":null}""", "string", "missing")]
    public void Bad_values_and_types_give_clear_argument_errors(string message, string type, string expected)
    {
        var json = $$"""{"types":{"M":[{"name":"a","type":"{{type}}"}]},"primaryType":"M","domain":{"name":"d"},"message":{{message}}}""";
        var e = Assert.Throws<ArgumentException>(() => Eip712TypedData.FromJson(json));
        Assert.Contains(expected, e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{"types":{},"primaryType":"Mail","domain":{},"message":{}}""")]
    [InlineData("""{"types":{"M":[]},"domain":{},"message":{}}""")]
    [InlineData("""{"types":{"M":[{"name":"a"}]},"primaryType":"M","domain":{},"message":{"a":1}}""")]
    [InlineData("""{"types":{"M":[]},"primaryType":"M","domain":{"foo":1},"message":{}}""")]
    [InlineData("""{"types":{"M":[]},"primaryType":"M","message":{}}""")]
    public void Malformed_documents_are_rejected(string json) =>
        Assert.Throws<ArgumentException>(() => Eip712TypedData.FromJson(json));

    [Fact]
    public void Integers_accept_numbers_decimal_and_hex_strings_alike()
    {
        string Doc(string v) => $$$"""{"types":{"M":[{"name":"a","type":"int256"}]},"primaryType":"M","domain":{"chainId":1},"message":{"a":{{{v}}}}}""";
        var expected = Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("255"))));
        Assert.Equal(expected, Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("\"255\"")))));
        Assert.Equal(expected, Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("\"0xff\"")))));
        Assert.Equal(expected, Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("\"0xFF\"")))));
        Assert.NotEqual(expected, Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("-255")))));
        Assert.Equal(Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("-255")))), Hex(Eip712.Digest(Eip712TypedData.FromJson(Doc("\"-0xff\"")))));
    }

    [Fact]
    public void Json_round_trip_keeps_the_digest()
    {
        foreach (var json in new[] { MailJson, MailArraysJson })
        {
            var data = Eip712TypedData.FromJson(json);
            var again = Eip712TypedData.FromJson(data.ToJson());
            Assert.Equal(Hex(Eip712.Digest(data)), Hex(Eip712.Digest(again)));
            Assert.Equal(data.PrimaryType, again.PrimaryType);
            Assert.Equal(data.Types.Keys, again.Types.Keys);
        }
    }

    [Fact]
    public void Sign_and_recover_round_trip_with_random_keys()
    {
        var data = Eip712TypedData.FromJson(MailArraysJson);
        for (int i = 0; i < 5; i++)
        {
            using var key = PrivateKey.Generate();
            var sig = Eip712.Sign(data, key);
            Assert.Equal(key.Address, Eip712.RecoverSigner(data, sig));
            Assert.Equal(key.Address, Secp256k1.Recover(Eip712.Digest(data), sig));
        }
    }
}
