using System.Security.Cryptography;
using Oml.Fingerprinting;

namespace Oml.Fingerprinting.Tests;

public sealed class MerkleTests
{
    private static byte[][] Leaves(int n) => [.. Enumerable.Range(0, n).Select(i => new byte[] { (byte)i, (byte)(i >> 8), 0xAB })];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(13)]
    [InlineData(100)]
    public void Every_leaf_proof_verifies_and_no_other_leaf_does(int n)
    {
        var leaves = Leaves(n);
        var tree = new MerkleTree(leaves);
        Assert.Equal(n, tree.LeafCount);
        for (int i = 0; i < n; i++)
        {
            var proof = tree.Proof(i);
            Assert.True(MerkleTree.Verify(tree.Root, leaves[i], proof), $"leaf {i} of {n}");
            Assert.True(proof.Steps.Count <= (int)Math.Ceiling(Math.Log2(Math.Max(n, 1))));
            // The same proof for a neighbour's data fails.
            if (n > 1) Assert.False(MerkleTree.Verify(tree.Root, leaves[(i + 1) % n], proof));
            // Moving the proof to another index fails.
            if (n > 1) Assert.False(MerkleTree.Verify(tree.Root, leaves[i], proof with { LeafIndex = (i + 1) % n }));
        }
    }

    [Fact]
    public void Single_leaf_root_is_the_domain_separated_leaf_hash()
    {
        var tree = new MerkleTree([[1, 2, 3]]);
        Assert.Equal(SHA256.HashData([0x00, 1, 2, 3]), tree.Root);
        var proof = tree.Proof(0);
        Assert.Empty(proof.Steps);
        Assert.True(MerkleTree.Verify(tree.Root, [1, 2, 3], proof));
        Assert.False(MerkleTree.Verify(tree.Root, [1, 2, 4], proof));
    }

    [Fact]
    public void Two_and_three_leaf_roots_match_the_definition()
    {
        byte[] a = [1], b = [2], c = [3];
        byte[] L(byte[] d) => SHA256.HashData([0x00, .. d]);
        byte[] N(byte[] l, byte[] r) => SHA256.HashData([0x01, .. l, .. r]);
        Assert.Equal(N(L(a), L(b)), new MerkleTree([a, b]).Root);
        Assert.Equal(N(N(L(a), L(b)), L(c)), new MerkleTree([a, b, c]).Root);   // the odd node is promoted, not duplicated
        Assert.NotEqual(new MerkleTree([a, b, c]).Root, new MerkleTree([a, b, c, c]).Root);
    }

    [Fact]
    public void An_inner_node_is_not_accepted_as_a_leaf()
    {
        var leaves = Leaves(4);
        var tree = new MerkleTree(leaves);
        byte[] inner = [.. tree.LeafHashAt(0), .. tree.LeafHashAt(1)];   // the data of node (0,1) without its 0x01 prefix
        var upper = new MerkleProof(0, 2, [new MerkleStep(MerkleTree.NodeHash(tree.LeafHashAt(2), tree.LeafHashAt(3)), false)]);
        Assert.False(MerkleTree.Verify(tree.Root, inner, upper));
    }

    [Fact]
    public void Tampered_proofs_fail()
    {
        var leaves = Leaves(6);
        var tree = new MerkleTree(leaves);
        var proof = tree.Proof(4);
        Assert.True(MerkleTree.Verify(tree.Root, leaves[4], proof));
        var flipped = proof with { Steps = [.. proof.Steps.Select((s, k) => k == 0 ? s with { SiblingIsLeft = !s.SiblingIsLeft } : s)] };
        Assert.False(MerkleTree.Verify(tree.Root, leaves[4], flipped));
        var badSibling = proof.Steps[0].Sibling.ToArray();
        badSibling[0] ^= 1;
        Assert.False(MerkleTree.Verify(tree.Root, leaves[4], proof with { Steps = [proof.Steps[0] with { Sibling = badSibling }, .. proof.Steps.Skip(1)] }));
        Assert.False(MerkleTree.Verify(tree.Root, leaves[4], proof with { Steps = [.. proof.Steps.Skip(1)] }));
        Assert.False(MerkleTree.Verify(tree.Root, leaves[4], proof with { LeafCount = 7 }));
        Assert.False(MerkleTree.Verify(tree.Root, leaves[4], proof with { LeafIndex = -1 }));
        Assert.False(MerkleTree.Verify(tree.Root.AsSpan(0, 31), leaves[4], proof));
    }

    [Fact]
    public void Empty_tree_is_refused()
    {
        Assert.Throws<ArgumentException>(() => new MerkleTree([]));
    }

    // ---- fingerprint revelations ----

    [Fact]
    public void A_revealed_fingerprint_verifies_against_the_published_commitment()
    {
        var set = Samples.Set(7);
        var commitment = Commitment.FromJson(set.Commit().ToJson());
        for (int i = 0; i < set.Count; i++)
        {
            var revealed = RevealedFingerprint.FromJson(set.Reveal(i).ToJson());
            Assert.True(revealed.Verify(commitment), $"fingerprint {i}");
            Assert.Equal(set[i].KeyTokenIds, revealed.KeyTokenIds);
            Assert.Equal(set[i].Salt, revealed.Salt);
        }
    }

    [Fact]
    public void Forged_revelations_fail()
    {
        var set = Samples.Set(7);
        var commitment = set.Commit();
        var good = set.Reveal(3);
        Assert.True(good.Verify(commitment));

        // Changed response text or tokens.
        var r0 = good.Responses[0];
        Assert.False((good with { Responses = [r0 with { Text = r0.Text + "!" }, .. good.Responses.Skip(1)] }).Verify(commitment));
        Assert.False((good with { Responses = [r0 with { TokenIds = [.. r0.TokenIds.Select(t => t + 1)] }, .. good.Responses.Skip(1)] }).Verify(commitment));
        // Changed key tokens, dropped response, another salt.
        Assert.False((good with { KeyTokenIds = [.. good.KeyTokenIds.Reverse()] }).Verify(commitment));
        if (good.Responses.Count > 1) Assert.False((good with { Responses = [r0] }).Verify(commitment));
        Assert.False((good with { Salt = Fingerprint.NewRandomSalt() }).Verify(commitment));
        // Claimed at another index (with its proof or that index's proof).
        Assert.False((good with { Index = 4 }).Verify(commitment));
        Assert.False((good with { Index = 4, Proof = set.Reveal(4).Proof }).Verify(commitment));
        // A proof for a different leaf.
        Assert.False((good with { Proof = set.Reveal(2).Proof }).Verify(commitment));
        // Against another set's root (same metadata, other secret).
        var other = Samples.Set(7, secret: "someone else"u8.ToArray());
        Assert.False(good.Verify(other.Commit()));
        Assert.True(other.Reveal(3).Verify(other.Commit()));
        Assert.False(other.Reveal(3).Verify(commitment));
        // A different leaf count in the commitment.
        Assert.False(good.Verify(commitment with { Count = 8 }));
    }

    [Fact]
    public void Log_probabilities_and_revelations_do_not_change_the_commitment()
    {
        var set = Samples.Set(4);
        var measured = set with
        {
            Fingerprints = [.. set.Fingerprints.Select(f => f with { Responses = [.. f.Responses.Select(r => r.WithLogProb(-3.5))] })],
        };
        Assert.Equal(set.Commit(), measured.Commit());
        Assert.Equal(set.Commit(), set.MarkRevealed(1, DateTimeOffset.UnixEpoch, "x", "y").Commit());
        Assert.True(set.Commit().Matches(measured));
    }

    [Fact]
    public void The_commitment_binds_the_metadata_and_reveals_no_secret()
    {
        var set = Samples.Set(4);
        var c = set.Commit();
        Assert.Equal(MerkleTree.Algorithm, c.Algorithm);
        Assert.Equal(4, c.Count);
        Assert.Equal(64, c.Root.Length);
        Assert.Equal(64, c.SetDigest.Length);
        var other = set with { BaseModelDigest = "sha256:" + new string('c', 64) };
        Assert.Equal(c.Root, other.Commit().Root);
        Assert.NotEqual(c.SetDigest, other.Commit().SetDigest);
        Assert.False(c.Matches(other));
        var json = c.ToJson();
        Assert.DoesNotContain("key number", json);
        Assert.Contains("\"root\"", json);
        Assert.Equal(c, Commitment.FromJson(json));
        Assert.Throws<FormatException>(() => Commitment.FromJson("{not json"));
    }

    [Fact]
    public void Salts_hide_equal_fingerprints()
    {
        // Two fingerprints with identical content but different salts have unrelated leaf hashes.
        var f = Samples.Fp(0);
        var g = f with { Salt = Fingerprint.NewRandomSalt() };
        Assert.NotEqual(MerkleTree.LeafHash(FingerprintLeaf.Encode(f)), MerkleTree.LeafHash(FingerprintLeaf.Encode(g)));
    }

    [Fact]
    public void Leaf_encoding_is_stable()
    {
        // Pins the canonical serialization: a change here changes every published root.
        var f = new Fingerprint(1, "k", [1, -2], [new FingerprintResponse("r", [300])], new StrategyInfo("s"), new byte[32]);
        var hex = Convert.ToHexStringLower(FingerprintLeaf.Encode(f));
        Assert.Equal(
            Convert.ToHexStringLower("oml/fingerprint-leaf/v1"u8) + "00000001" + new string('0', 64)
            + "00000001" + "6b" + "00000002" + "00000001" + "fffffffe"
            + "00000001" + "00000001" + "72" + "00000001" + "0000012c",
            hex);
    }

    [Fact]
    public void Malformed_reveal_json_is_a_format_error()
    {
        Assert.Throws<FormatException>(() => RevealedFingerprint.FromJson("{}"));
        Assert.Throws<FormatException>(() => RevealedFingerprint.FromJson("[1,2]"));
    }
}
