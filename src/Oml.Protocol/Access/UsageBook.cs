using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Access;

/// <summary>
/// A host's record of one epoch's answered queries for one model: the signed receipts in order and the permits
/// they served. The usage root committed on the ledger is the SHA-256 Merkle tree of Oml.Fingerprinting
/// (<see cref="MerkleTree"/>, domain-separated leaves) whose leaf data are the receipts' 32-byte EIP-712 digests;
/// an epoch without receipts commits 32 zero bytes. The host keeps the book to rebut claims later.
/// </summary>
public sealed class UsageBook(ProtocolDomain domain, string modelId, long epoch)
{
    private readonly List<SignedReceipt> _receipts = [];
    private readonly List<SignedPermit> _permits = [];

    public ProtocolDomain Domain { get; } = domain;
    public string ModelId { get; } = modelId;
    public long Epoch { get; } = epoch;
    public IReadOnlyList<SignedReceipt> Receipts => _receipts;
    public IReadOnlyList<SignedPermit> Permits => _permits;

    /// <summary>Records an answered query; <paramref name="permit"/> must be the one the receipt names (or null for none).</summary>
    public void Add(SignedReceipt receipt, SignedPermit? permit)
    {
        ArgumentNullException.ThrowIfNull(receipt);
        if (receipt.Receipt.ModelId != ModelId) throw new ArgumentException($"receipt is for model {receipt.Receipt.ModelId}, not {ModelId}");
        if (permit is null ? receipt.Receipt.HasPermit : permit.Permit.Hash(Domain) != receipt.Receipt.PermitHash)
            throw new ArgumentException("the permit does not match the receipt's permit hash");
        _receipts.Add(receipt);
        if (permit is not null) _permits.Add(permit);
    }

    /// <summary>The Merkle root over the receipts (32 zero bytes when there are none).</summary>
    public byte[] Root() => _receipts.Count == 0 ? new byte[32] : Tree().Root;

    private MerkleTree Tree() => new(_receipts.Select(r => r.Receipt.Digest(Domain)));

    /// <summary>The proof that <paramref name="receipt"/> is in this book's root.</summary>
    public MerkleProof ProofFor(SignedReceipt receipt)
    {
        var digest = receipt.Receipt.Digest(Domain);
        int i = _receipts.FindIndex(r => r.Receipt.Digest(Domain).AsSpan().SequenceEqual(digest));
        if (i < 0) throw new ArgumentException("the receipt is not in this usage book");
        return Tree().Proof(i);
    }

    /// <summary>The CommitUsage attachment: a JSON array of the signed permits.</summary>
    public string PermitsAttachment() => PermitsJson(_permits);

    public static string PermitsJson(IEnumerable<SignedPermit> permits) =>
        new JsonArray([.. permits.Select(p => (JsonNode)p.ToJsonNode())]).ToJsonString();

    /// <summary>
    /// The book as JSON, to keep it between processes until the epoch is committed and for rebuttals afterwards:
    /// <c>{"chainId","verifyingContract","modelId","epoch","entries":[{"receipt":{…},"permit":{…}|null}]}</c>.
    /// </summary>
    public string ToJson()
    {
        var entries = new JsonArray();
        int p = 0;
        foreach (var r in _receipts)
        {
            SignedPermit? permit = r.Receipt.HasPermit ? _permits[p++] : null;
            entries.Add(new JsonObject { ["receipt"] = r.ToJsonNode(), ["permit"] = permit?.ToJsonNode() });
        }
        return new JsonObject
        {
            ["chainId"] = Hex.Dec(Domain.ChainId), ["verifyingContract"] = Domain.VerifyingContract,
            ["modelId"] = ModelId, ["epoch"] = Hex.Dec(Epoch), ["entries"] = entries,
        }.ToJsonString();
    }

    /// <summary>Reads <see cref="ToJson"/>'s text, re-checking that every permit matches its receipt.</summary>
    public static UsageBook FromJson(string json)
    {
        var root = Json.Parse(json, ProtocolErrorCode.InvalidRequest);
        try
        {
            var domain = new ProtocolDomain(long.Parse(Json.Text(root, "chainId", ProtocolErrorCode.InvalidRequest), System.Globalization.CultureInfo.InvariantCulture),
                Hex.Address(Json.Text(root, "verifyingContract", ProtocolErrorCode.InvalidRequest)));
            var book = new UsageBook(domain, Json.Text(root, "modelId", ProtocolErrorCode.InvalidRequest),
                long.Parse(Json.Text(root, "epoch", ProtocolErrorCode.InvalidRequest), System.Globalization.CultureInfo.InvariantCulture));
            foreach (var e in (JsonArray)root["entries"]!)
            {
                var permitNode = e!["permit"];
                book.Add(SignedReceipt.FromJsonNode(e["receipt"]), permitNode is null ? null : SignedPermit.FromJsonNode(permitNode));
            }
            return book;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidCastException or NullReferenceException or OverflowException)
        {
            throw new ProtocolException(ProtocolErrorCode.InvalidRequest, $"malformed usage book: {e.Message}", e);
        }
    }

    public static string AttachmentHash(string attachment) => Hex.Of(Keccak256.Hash(System.Text.Encoding.UTF8.GetBytes(attachment)));
}
