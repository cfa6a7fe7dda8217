using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace Oml.Fingerprinting;

/// <summary>
/// What the owner publishes before releasing a model: the Merkle root over the (salted) fingerprints, their count,
/// the algorithm, and a digest binding the root to the set's public metadata (base model, tokenizer, strategy,
/// creation time). Reveals nothing about the keys or responses.
/// </summary>
/// <param name="Algorithm">The commitment algorithm (<see cref="MerkleTree.Algorithm"/>).</param>
/// <param name="Root">The Merkle root, lowercase hex.</param>
/// <param name="Count">The number of fingerprints (leaves).</param>
/// <param name="SetDigest">SHA-256 (lowercase hex) of the set's metadata and root; see <see cref="ComputeSetDigest"/>.</param>
/// <param name="BaseModelDigest">The base model's weight digest, as in the set.</param>
/// <param name="TokenizerDigest">The tokenizer digest, as in the set.</param>
/// <param name="Strategy">The generation strategy's name.</param>
/// <param name="CreatedAt">The set's creation time.</param>
public sealed record Commitment(
    string Algorithm,
    string Root,
    int Count,
    string SetDigest,
    string BaseModelDigest,
    string TokenizerDigest,
    string Strategy,
    DateTimeOffset CreatedAt)
{
    public static Commitment For(FingerprintSet set)
    {
        ArgumentNullException.ThrowIfNull(set);
        var tree = set.BuildMerkleTree();
        return new Commitment(MerkleTree.Algorithm, tree.RootHex, set.Count,
            Convert.ToHexStringLower(ComputeSetDigest(set, tree.Root)),
            set.BaseModelDigest, set.Tokenizer.Digest, set.Strategy.Name, set.CreatedAt);
    }

    public byte[] RootBytes() => Convert.FromHexString(Root);

    /// <summary>Whether this commitment was made for <paramref name="set"/> (same root, count and metadata).</summary>
    public bool Matches(FingerprintSet set) => Equals(For(set));

    /// <summary>
    /// <c>SHA-256("oml/fingerprint-set-digest/v1" ‖ format version ‖ created-at (ISO 8601 "o") ‖ base model digest
    /// ‖ tokenizer name ‖ tokenizer digest ‖ strategy name ‖ parameter count ‖ (name ‖ value)* ‖ count ‖ root)</c>,
    /// with the same integer and text encoding as <see cref="FingerprintLeaf"/>. Revelations are not included.
    /// </summary>
    public static byte[] ComputeSetDigest(FingerprintSet set, ReadOnlySpan<byte> root)
    {
        var w = new FingerprintLeaf.ByteWriter();
        w.Raw("oml/fingerprint-set-digest/v1"u8);
        w.U32((uint)set.FormatVersion);
        w.Text(set.CreatedAt.ToString("o", CultureInfo.InvariantCulture));
        w.Text(set.BaseModelDigest);
        w.Text(set.Tokenizer.Name);
        w.Text(set.Tokenizer.Digest);
        w.Text(set.Strategy.Name);
        w.U32((uint)set.Strategy.Parameters.Count);
        foreach (var (k, v) in set.Strategy.Parameters) { w.Text(k); w.Text(v); }
        w.U32((uint)set.Count);
        w.Raw(root);
        return SHA256.HashData(w.ToArray());
    }

    public string ToJson() => JsonSerializer.Serialize(this, FingerprintJsonContext.Default.Commitment);

    public static Commitment FromJson(string json)
    {
        try
        {
            var c = JsonSerializer.Deserialize(json, FingerprintJsonContext.Default.Commitment)
                ?? throw new FormatException("commitment JSON is null");
            if (c.Algorithm is null || c.Root is null || c.SetDigest is null) throw new FormatException("commitment JSON lacks a required field");
            return c;
        }
        catch (JsonException e)
        {
            throw new FormatException($"invalid commitment JSON: {e.Message}", e);
        }
    }
}

/// <summary>
/// A revealed fingerprint: its committed data, salt and Merkle proof. Anyone holding the published
/// <see cref="Commitment"/> can check it without learning anything about the other fingerprints.
/// </summary>
public sealed record RevealedFingerprint(
    int Index,
    string Key,
    EquatableArray<int> KeyTokenIds,
    EquatableArray<RevealedResponse> Responses,
    EquatableArray<byte> Salt,
    MerkleProof Proof)
{
    public static RevealedFingerprint From(Fingerprint f, MerkleProof proof) =>
        new(f.Index, f.Key, f.KeyTokenIds, [.. f.Responses.Select(r => new RevealedResponse(r.Text, r.TokenIds))], f.Salt, proof);

    /// <summary>The canonical leaf data this revelation claims (see <see cref="FingerprintLeaf"/>).</summary>
    public byte[] LeafData() => FingerprintLeaf.Encode(new Fingerprint(Index, Key, KeyTokenIds,
        [.. Responses.Select(r => new FingerprintResponse(r.Text, r.TokenIds))], new StrategyInfo(""), Salt));

    /// <summary>Whether this fingerprint is committed to at its index under <paramref name="root"/>.</summary>
    public bool Verify(ReadOnlySpan<byte> root) =>
        Proof is not null && Proof.LeafIndex == Index && Salt.Count == Fingerprint.SaltLength
        && MerkleTree.Verify(root, LeafData(), Proof);

    /// <summary>Whether this fingerprint is committed to by <paramref name="commitment"/> (root and leaf count).</summary>
    public bool Verify(Commitment commitment)
    {
        ArgumentNullException.ThrowIfNull(commitment);
        if (commitment.Algorithm != MerkleTree.Algorithm || Proof is null || Proof.LeafCount != commitment.Count) return false;
        byte[] root;
        try { root = commitment.RootBytes(); } catch (FormatException) { return false; }
        return Verify(root);
    }

    public string ToJson() => JsonSerializer.Serialize(RevealDto.From(this), FingerprintJsonContext.Default.RevealDto);

    public static RevealedFingerprint FromJson(string json)
    {
        try
        {
            var dto = JsonSerializer.Deserialize(json, FingerprintJsonContext.Default.RevealDto) ?? throw new FormatException("revealed-fingerprint JSON is null");
            return dto.ToModel();
        }
        catch (JsonException e)
        {
            throw new FormatException($"invalid revealed-fingerprint JSON: {e.Message}", e);
        }
    }
}

/// <summary>A revealed response: the committed text and token ids.</summary>
public sealed record RevealedResponse(string Text, EquatableArray<int> TokenIds);
