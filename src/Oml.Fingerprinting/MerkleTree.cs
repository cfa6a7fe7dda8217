using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Fingerprinting;

/// <summary>
/// The canonical byte serialization of one fingerprint, the data of its Merkle leaf.
/// </summary>
/// <remarks>
/// Layout (integers are unsigned 32-bit big-endian, texts are UTF-8 prefixed by their byte length):
/// <c>"oml/fingerprint-leaf/v1" ‖ index ‖ salt (32 bytes) ‖ key text ‖ key token count ‖ key token ids
/// ‖ response count ‖ for each response: text ‖ token count ‖ token ids</c>.
/// Token ids are written as 32-bit two's complement. The log-probabilities and strategy are not committed.
/// </remarks>
public static class FingerprintLeaf
{
    public static ReadOnlySpan<byte> Domain => "oml/fingerprint-leaf/v1"u8;

    public static byte[] Encode(Fingerprint fingerprint)
    {
        ArgumentNullException.ThrowIfNull(fingerprint);
        if (fingerprint.Salt.Count != Fingerprint.SaltLength)
            throw new ArgumentException($"fingerprint {fingerprint.Index}: salt must be {Fingerprint.SaltLength} bytes");
        var w = new ByteWriter();
        w.Raw(Domain);
        w.U32((uint)fingerprint.Index);
        w.Raw(fingerprint.Salt.AsSpan());
        w.Text(fingerprint.Key);
        w.Ints(fingerprint.KeyTokenIds);
        w.U32((uint)fingerprint.Responses.Count);
        foreach (var r in fingerprint.Responses)
        {
            w.Text(r.Text);
            w.Ints(r.TokenIds);
        }
        return w.ToArray();
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "a MemoryStream holds no unmanaged resource; disposing it frees nothing")]
    internal sealed class ByteWriter
    {
        private readonly MemoryStream _s = new();
        public void Raw(ReadOnlySpan<byte> b) => _s.Write(b);
        public void U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, v); _s.Write(b); }
        public void Text(string s) { var b = Encoding.UTF8.GetBytes(s); U32((uint)b.Length); _s.Write(b); }
        public void Ints(EquatableArray<int> ids) { U32((uint)ids.Count); foreach (var id in ids) U32(unchecked((uint)id)); }
        public byte[] ToArray() => _s.ToArray();
    }
}

/// <summary>One step of a Merkle proof: the sibling hash and whether it is the left child.</summary>
public sealed record MerkleStep(EquatableArray<byte> Sibling, bool SiblingIsLeft);

/// <summary>
/// The proof that a leaf is at <paramref name="LeafIndex"/> in a tree of <paramref name="LeafCount"/> leaves:
/// the sibling hashes from the leaf up to the root.
/// </summary>
public sealed record MerkleProof(int LeafIndex, int LeafCount, EquatableArray<MerkleStep> Steps);

/// <summary>
/// A binary SHA-256 Merkle tree with domain-separated hashing: <c>leaf = SHA-256(0x00 ‖ data)</c>,
/// <c>node = SHA-256(0x01 ‖ left ‖ right)</c>. On a level with an odd number of nodes, the last node is promoted
/// unchanged to the next level (it is never paired with a copy of itself). A single-leaf tree's root is the leaf hash.
/// </summary>
public sealed class MerkleTree
{
    public const string Algorithm = "sha256-merkle-v1";
    public const int HashLength = 32;

    private readonly List<byte[][]> _levels;   // _levels[0] = leaf hashes, last = [root]

    public MerkleTree(IEnumerable<byte[]> leafData)
    {
        ArgumentNullException.ThrowIfNull(leafData);
        var leaves = leafData.Select(d => LeafHash(d ?? throw new ArgumentException("null leaf"))).ToArray();
        if (leaves.Length == 0) throw new ArgumentException("a Merkle tree needs at least one leaf", nameof(leafData));
        _levels = [leaves];
        while (_levels[^1].Length > 1)
        {
            var cur = _levels[^1];
            var next = new byte[(cur.Length + 1) / 2][];
            for (int i = 0; i < cur.Length / 2; i++) next[i] = NodeHash(cur[2 * i], cur[2 * i + 1]);
            if (cur.Length % 2 == 1) next[^1] = cur[^1];
            _levels.Add(next);
        }
    }

    public int LeafCount => _levels[0].Length;

    public byte[] Root => (byte[])_levels[^1][0].Clone();

    public string RootHex => Convert.ToHexStringLower(_levels[^1][0]);

    public byte[] LeafHashAt(int index) => (byte[])_levels[0][index].Clone();

    /// <summary>The proof for leaf <paramref name="index"/>.</summary>
    public MerkleProof Proof(int index)
    {
        if ((uint)index >= (uint)LeafCount) throw new ArgumentOutOfRangeException(nameof(index));
        var steps = new List<MerkleStep>();
        int i = index;
        for (int level = 0; level < _levels.Count - 1; level++)
        {
            var nodes = _levels[level];
            int sibling = i ^ 1;
            if (sibling < nodes.Length) steps.Add(new MerkleStep((byte[])nodes[sibling].Clone(), SiblingIsLeft: sibling < i));
            i /= 2;
        }
        return new MerkleProof(index, LeafCount, [.. steps]);
    }

    /// <summary>
    /// Whether <paramref name="leafData"/> is leaf <see cref="MerkleProof.LeafIndex"/> of the tree with root
    /// <paramref name="root"/>. The shape of the proof (number of steps and left/right flags) must be exactly the
    /// one implied by its leaf index and leaf count, so a proof cannot be moved to another position.
    /// </summary>
    public static bool Verify(ReadOnlySpan<byte> root, ReadOnlySpan<byte> leafData, MerkleProof proof)
    {
        ArgumentNullException.ThrowIfNull(proof);
        if (root.Length != HashLength) return false;
        if (proof.LeafCount <= 0 || (uint)proof.LeafIndex >= (uint)proof.LeafCount) return false;
        var expected = ExpectedShape(proof.LeafIndex, proof.LeafCount);
        if (expected.Count != proof.Steps.Count) return false;
        byte[] h = LeafHash(leafData);
        for (int s = 0; s < proof.Steps.Count; s++)
        {
            var step = proof.Steps[s];
            if (step is null || step.SiblingIsLeft != expected[s] || step.Sibling.Count != HashLength) return false;
            h = step.SiblingIsLeft ? NodeHash(step.Sibling.AsSpan(), h) : NodeHash(h, step.Sibling.AsSpan());
        }
        return CryptographicOperations.FixedTimeEquals(h, root);
    }

    /// <summary>The left/right flags (sibling is left) a proof for leaf <paramref name="index"/> of <paramref name="count"/> must have.</summary>
    private static List<bool> ExpectedShape(int index, int count)
    {
        var flags = new List<bool>();
        int i = index, n = count;
        while (n > 1)
        {
            int sibling = i ^ 1;
            if (sibling < n) flags.Add(sibling < i);
            i /= 2;
            n = (n + 1) / 2;
        }
        return flags;
    }

    public static byte[] LeafHash(ReadOnlySpan<byte> data)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData([0x00]);
        h.AppendData(data);
        return h.GetHashAndReset();
    }

    public static byte[] NodeHash(ReadOnlySpan<byte> left, ReadOnlySpan<byte> right)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData([0x01]);
        h.AppendData(left);
        h.AppendData(right);
        return h.GetHashAndReset();
    }
}
