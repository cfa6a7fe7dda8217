using System.Globalization;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Tests.Crypto;

public class Secp256k1Tests
{
    private static readonly BigInteger P = BigInteger.Parse("0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F", NumberStyles.HexNumber);
    private static readonly BigInteger N = BigInteger.Parse("0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", NumberStyles.HexNumber);
    private static readonly BigInteger Gx = BigInteger.Parse("079BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", NumberStyles.HexNumber);
    private static readonly BigInteger Gy = BigInteger.Parse("0483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", NumberStyles.HexNumber);

    private static byte[] H(string hex) => Convert.FromHexString(hex.StartsWith("0x") ? hex[2..] : hex);
    private static BigInteger Big(string hex) => BigInteger.Parse("0" + hex, NumberStyles.HexNumber);
    private static BigInteger Mod(BigInteger a, BigInteger m) => ((a % m) + m) % m;

    // ---- A plain affine BigInteger reference for the curve (test-side only) ----

    private static (BigInteger X, BigInteger Y)? RefAdd((BigInteger X, BigInteger Y)? p, (BigInteger X, BigInteger Y)? q)
    {
        if (p is null) return q;
        if (q is null) return p;
        var (x1, y1) = p.Value;
        var (x2, y2) = q.Value;
        BigInteger l;
        if (x1 == x2)
        {
            if (Mod(y1 + y2, P).IsZero) return null;
            l = Mod(3 * x1 * x1 * RefInverse(2 * y1), P);
        }
        else l = Mod((y2 - y1) * RefInverse(x2 - x1), P);
        var x3 = Mod(l * l - x1 - x2, P);
        return (x3, Mod(l * (x1 - x3) - y1, P));
    }

    /// <summary>1/a mod p by the textbook extended Euclid (BigInteger.ModPow is ~1 ms at this size; this is ~10 µs).</summary>
    private static BigInteger RefInverse(BigInteger a)
    {
        BigInteger t = 0, newT = 1, r = P, newR = Mod(a, P);
        while (!newR.IsZero)
        {
            var q = r / newR;
            (t, newT) = (newT, t - q * newT);
            (r, newR) = (newR, r - q * newR);
        }
        Assert.Equal(BigInteger.One, r);
        return Mod(t, P);
    }

    private static (BigInteger X, BigInteger Y)? RefMul(BigInteger k, (BigInteger X, BigInteger Y) point)
    {
        (BigInteger X, BigInteger Y)? acc = null, addend = point;
        for (; k > 0; k >>= 1)
        {
            if (!k.IsEven) acc = RefAdd(acc, addend);
            addend = RefAdd(addend, addend);
        }
        return acc;
    }

    // ---- Keys and addresses ----

    [Theory]
    // Known key/address pairs: the web3.js docs' example account, and keccak256("cow") (the EIP-712 example's signer).
    [InlineData("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318", "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")]
    [InlineData("c85ef7d79691fe79573b1a7064c19c1a9819ebdbd1faaab1a8ec92344438aaf4", "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826")]
    // The Web3 Secret Storage test vector's key and address.
    [InlineData("7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d", "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b")]
    public void Known_keys_have_known_addresses(string key, string address)
    {
        using var k = PrivateKey.FromBytes(H(key));
        Assert.Equal(address, k.Address.ToString());
        Assert.Equal(Address.Parse(address), k.Address);
    }

    [Fact]
    public void Public_key_of_one_is_the_generator()
    {
        var one = new byte[32];
        one[31] = 1;
        using var k = PrivateKey.FromBytes(one);
        Assert.Equal("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8",
            Convert.ToHexStringLower(k.PublicKey));
    }

    [Fact]
    public void Private_keys_out_of_range_are_rejected_and_disposed_keys_refuse_work()
    {
        Assert.Throws<ArgumentException>(() => PrivateKey.FromBytes(new byte[32]));
        Assert.Throws<ArgumentException>(() => PrivateKey.FromBytes(N.ToByteArray(isUnsigned: true, isBigEndian: true)));
        Assert.Throws<ArgumentException>(() => PrivateKey.FromBytes(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Throws<ArgumentException>(() => PrivateKey.FromBytes(new byte[31]));
        using var max = PrivateKey.FromBytes((N - 1).ToByteArray(isUnsigned: true, isBigEndian: true));
        var k = PrivateKey.Generate();
        var bytes = k.ExportBytes();
        Assert.Equal(32, bytes.Length);
        using (var again = PrivateKey.FromBytes(bytes)) Assert.Equal(k.Address, again.Address);
        k.Dispose();
        Assert.Throws<ObjectDisposedException>(() => k.ExportBytes());
        Assert.Throws<ObjectDisposedException>(() => k.SignDigest(new byte[32]));
    }

    [Fact]
    public void Generated_keys_differ()
    {
        using var a = PrivateKey.Generate();
        using var b = PrivateKey.Generate();
        Assert.NotEqual(a.Address, b.Address);
    }

    [Theory]
    // EIP-55's own examples (eips.ethereum.org/EIPS/eip-55, "Test Cases").
    [InlineData("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")]
    [InlineData("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359")]
    [InlineData("0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB")]
    [InlineData("0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb")]
    [InlineData("0x52908400098527886E0F7030069857D2E4169EE7")]
    [InlineData("0x8617E340B3D01FA5F11F306F4090FD50E238070D")]
    [InlineData("0xde709f2102306220921060314715629080e2fb77")]
    [InlineData("0x27b1fdb04752bbc536007a920d24acb045561c26")]
    public void Eip55_checksums(string text)
    {
        var a = Address.Parse(text);
        Assert.Equal(text.ToLowerInvariant(), a.ToString().ToLowerInvariant());
        bool mixed = text[2..].Any(char.IsAsciiLetterLower) && text[2..].Any(char.IsAsciiLetterUpper);
        if (mixed) Assert.Equal(text, a.ToString());
        // Both single-case spellings parse to the same address.
        Assert.Equal(a, Address.Parse("0x" + text[2..].ToLowerInvariant()));
        Assert.Equal(a, Address.Parse("0x" + text[2..].ToUpperInvariant()));
        Assert.Equal(a.GetHashCode(), Address.Parse("0x" + text[2..].ToLowerInvariant()).GetHashCode());
    }

    [Fact]
    public void Address_parsing_rejects_bad_input()
    {
        // One letter's case flipped: the checksum no longer matches.
        Assert.Throws<FormatException>(() => Address.Parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"));
        Assert.False(Address.TryParse("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", out _));
        Assert.False(Address.TryParse("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", out _));
        Assert.False(Address.TryParse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA", out _));
        Assert.False(Address.TryParse("0xgaaeb6053f3e94c9b9a09f33669435e7ef1beaed", out _));
        Assert.False(Address.TryParse(null, out _));
        Assert.Throws<ArgumentException>(() => new Address(new byte[19]));
        Assert.Throws<ArgumentException>(() => Address.FromPublicKey(new byte[65]));
        Assert.True(Address.TryParse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", out var ok));
        Assert.Equal("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", Convert.ToHexStringLower(ok.Bytes));
    }

    // ---- RFC 6979 and ECDSA ----

    /// <summary>
    /// secp256k1 / SHA-256 RFC 6979 vectors first published at bitcointalk.org topic 285142 and carried in the test
    /// suites of python-ecdsa, trezor-crypto and btclib (tests/ecc/rfc6979_test.py): private key, message (signed as
    /// SHA-256(message)), expected nonce k, and the low-s signature r, s.
    /// </summary>
    public static TheoryData<string, string, string, string, string> Rfc6979Vectors => new()
    {
        { "0000000000000000000000000000000000000000000000000000000000000001", "Satoshi Nakamoto",
          "8F8A276C19F4149656B280621E358CCE24F5F52542772691EE69063B74F15D15",
          "934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8", "2442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5" },
        { "0000000000000000000000000000000000000000000000000000000000000001", "All those moments will be lost in time, like tears in rain. Time to die...",
          "38AA22D72376B4DBC472E06C3BA403EE0A394DA63FC58D88686C611ABA98D6B3",
          "8600dbd41e348fe5c9465ab92d23e3db8b98b873beecd930736488696438cb6b", "547fe64427496db33bf66019dacbf0039c04199abb0122918601db38a72cfc21" },
        { "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140", "Satoshi Nakamoto",
          "33A19B60E25FB6F4435AF53A3D42D493644827367E6453928554F43E49AA6F90",
          "fd567d121db66e382991534ada77a6bd3106f0a1098c231e47993447cd6af2d0", "6b39cd0eb1bc8603e159ef5c20a5c8ad685a45b06ce9bebed3f153d10d93bed5" },
        { "F8B8AF8CE3C7CCA5E300D33939540C10D45CE001B8F252BFBC57BA0342904181", "Alan Turing",
          "525A82B70E67874398067543FD84C83D30C175FDC45FDEEE082FE13B1D7CFDF1",
          "7063ae83e7f62bbb171798131b4a0564b956930092b33b07b395615d9ec7e15c", "58dfcc1e00a35e1572f366ffe34ba0fc47db1e7189759b9fb233c5b05ab388ea" },
        { "E91671C46231F833A6406CCBEA0E3E392C76C167BAC1CB013F6F1013980455C2",
          "There is a computer disease that anybody who works with computers knows about. It's a very serious disease and it interferes completely with the work. The trouble with computers is that you 'play' with them!",
          "1F4B84C23A86A221D233F2521BE018D9318639D5B8BBD6374A8A59232D16AD3D",
          "b552edd27580141f3b2a5463048cb7cd3e047b97c9f98076c32dbdf85a68718b", "279fa72dd19bfae05577e06c7c0c1900c371fcd5893f7e1d56a37d30174671f6" },
    };

    [Theory]
    [MemberData(nameof(Rfc6979Vectors))]
    public void Rfc6979_signatures_match_published_vectors(string key, string message, string k, string r, string s)
    {
        // r is the x coordinate of k·G: matching r (and s) shows the signer used the published RFC 6979 nonce k.
        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(message));
        Assert.Equal(Big(r), RefMul(Big(k), (Gx, Gy))!.Value.X % N);

        using var pk = PrivateKey.FromBytes(H(key));
        var sig = pk.SignDigest(digest);
        Assert.Equal(Big(r), sig.R);
        Assert.Equal(Big(s), sig.S);
        Assert.True(sig.IsLowS);
        Assert.Equal(pk.Address, Secp256k1.Recover(digest, sig));
        Assert.Equal(Convert.ToHexStringLower(pk.PublicKey), Convert.ToHexStringLower(Secp256k1.RecoverPublicKey(digest, sig)));
    }

    [Fact]
    public void Sign_and_recover_round_trip_over_random_keys_and_digests()
    {
        var rng = new Random(3);
        int odd = 0;
        for (int i = 0; i < 40; i++)
        {
            using var key = PrivateKey.Generate();
            var digest = new byte[32];
            rng.NextBytes(digest);
            if (i == 0) Array.Fill(digest, (byte)0xFF); // a digest above n: reduced mod n
            if (i == 1) Array.Clear(digest);            // the zero digest
            var sig = key.SignDigest(digest);
            Assert.True(sig.IsLowS);
            Assert.Contains(sig.V, new byte[] { 27, 28 });
            if (sig.V == 28) odd++;
            Assert.Equal(sig, key.SignDigest(digest)); // deterministic (RFC 6979)
            var otherDigest = (byte[])digest.Clone();
            otherDigest[0] ^= 1;
            Assert.NotEqual(sig.R, key.SignDigest(otherDigest).R); // the nonce depends on the digest
            Assert.Equal(key.Address, Secp256k1.Recover(digest, sig));
            Assert.True(Secp256k1.TryRecover(digest, sig, out var signer));
            Assert.Equal(key.Address, signer);
            if (i < 3)
            {
                // The signature also verifies by the textbook equation, checked here with BigInteger arithmetic.
                var z = new BigInteger(digest, isUnsigned: true, isBigEndian: true) % N;
                var w = BigInteger.ModPow(sig.S, N - 2, N);
                var pub = key.PublicKey;
                var q = (new BigInteger(pub.AsSpan(0, 32), true, true), new BigInteger(pub.AsSpan(32), true, true));
                var point = RefAdd(RefMul(z * w % N, (Gx, Gy)), RefMul(sig.R * w % N, q))!.Value;
                Assert.Equal(sig.R, point.X % N);
            }
        }
        Assert.InRange(odd, 5, 35);
    }

    [Fact]
    public void Tampering_changes_the_signer_or_fails()
    {
        using var key = PrivateKey.FromBytes(H("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"));
        var digest = Keccak256.Hash("tamper"u8);
        var sig = key.SignDigest(digest);

        var other = (byte[])digest.Clone();
        other[5] ^= 0x10;
        Assert.NotEqual(key.Address, Secp256k1.Recover(other, sig));

        var flippedV = Signature.FromBytes([.. sig.ToBytes()[..64], (byte)(sig.V == 27 ? 28 : 27)]);
        Assert.False(Secp256k1.TryRecover(digest, flippedV, out var a) && a == key.Address);

        var bytes = sig.ToBytes();
        bytes[10] ^= 0x01; // r changed: either not an x coordinate, or a different key
        var badR = Signature.FromBytes(bytes);
        Assert.False(Secp256k1.TryRecover(digest, badR, out var b) && b == key.Address);

        bytes = sig.ToBytes();
        bytes[40] ^= 0x01;
        Assert.NotEqual(key.Address, Secp256k1.Recover(digest, Signature.FromBytes(bytes)));
    }

    [Fact]
    public void High_s_and_out_of_range_signatures_are_rejected()
    {
        using var key = PrivateKey.Generate();
        var digest = Keccak256.Hash("high s"u8);
        var sig = key.SignDigest(digest);
        // (r, n - s) with the other parity is the same signature in high-s form: mathematically valid, refused here.
        var high = new Signature(sig.R, N - sig.S, (byte)(sig.V == 27 ? 28 : 27));
        Assert.False(high.IsLowS);
        Assert.False(Secp256k1.TryRecover(digest, high, out _));
        var e = Assert.Throws<ArgumentException>(() => Secp256k1.Recover(digest, high));
        Assert.Contains("high", e.Message);

        var raw = sig.ToBytes();
        var zeroR = (byte[])raw.Clone(); Array.Clear(zeroR, 0, 32);
        Assert.Throws<ArgumentException>(() => Signature.FromBytes(zeroR));
        var zeroS = (byte[])raw.Clone(); Array.Clear(zeroS, 32, 32);
        Assert.Throws<ArgumentException>(() => Signature.FromBytes(zeroS));
        var bigR = (byte[])raw.Clone(); N.ToByteArray(true, true).CopyTo(bigR, 0);
        Assert.Throws<ArgumentException>(() => Signature.FromBytes(bigR));
        var badV = (byte[])raw.Clone(); badV[64] = 29;
        Assert.Throws<ArgumentException>(() => Signature.FromBytes(badV));
        Assert.Throws<ArgumentException>(() => Signature.FromBytes(raw[..64]));
        Assert.Throws<ArgumentException>(() => Secp256k1.Recover(new byte[31], sig));
        // An r whose x^3 + 7 is not a square: x = 5 has none (5^3 + 7 = 132 is a non-residue mod p: Euler's criterion).
        Assert.Equal(P - 1, BigInteger.ModPow(132, (P - 1) / 2, P));
        Assert.False(Secp256k1.TryRecover(digest, new Signature(5, sig.S, 27), out _));
    }

    [Fact]
    public void Signature_hex_round_trip_and_value_equality()
    {
        using var key = PrivateKey.Generate();
        var sig = key.SignDigest(Keccak256.Hash("x"u8));
        var hex = sig.ToHex();
        Assert.Equal(132, hex.Length);
        Assert.StartsWith("0x", hex);
        var parsed = Signature.Parse(hex);
        Assert.Equal(sig, parsed);
        Assert.Equal(sig.GetHashCode(), parsed.GetHashCode());
        Assert.Equal(sig, Signature.Parse(hex[2..].ToUpperInvariant()));
        // v given as 0/1 normalises to 27/28.
        var zeroBased = sig.ToBytes();
        zeroBased[64] -= 27;
        Assert.Equal(sig, Signature.FromBytes(zeroBased));
        Assert.NotEqual(sig, key.SignDigest(Keccak256.Hash("y"u8)));
        Assert.Throws<ArgumentException>(() => Signature.Parse("0x1234"));
        Assert.Throws<ArgumentException>(() => Signature.Parse("0x" + new string('z', 130)));
    }
}
