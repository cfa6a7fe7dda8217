using System.Text;
using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Claims;

/// <summary>One piece of evidence: a fingerprint of the host's copy (with its Merkle proof against the host's
/// delivered root), the host's answer to its key, and the receipt the host signed for that answer.</summary>
public sealed record ClaimEvidenceItem(RevealedFingerprint Fingerprint, string Answer, SignedReceipt Receipt);

/// <summary>
/// What a prover reveals: that <see cref="Host"/> answered fingerprint keys of its copy of <see cref="ModelId"/>
/// with the fingerprint responses, without a settled permit. Serialised as the RevealClaim "evidence" attachment.
/// </summary>
public sealed record ClaimEvidence(string ModelId, string Host, IReadOnlyList<ClaimEvidenceItem> Items)
{
    public string ToJson()
    {
        var items = new JsonArray();
        foreach (var i in Items)
            items.Add(new JsonObject
            {
                ["fingerprint"] = i.Fingerprint.ToJson(),
                ["answer"] = i.Answer,
                ["receipt"] = i.Receipt.ToJsonNode(),
            });
        return new JsonObject { ["modelId"] = ModelId, ["host"] = Host, ["items"] = items }.ToJsonString();
    }

    public static ClaimEvidence FromJson(string json)
    {
        var root = Json.Parse(json, ProtocolErrorCode.InvalidRequest);
        string model = Json.Text(root, "modelId", ProtocolErrorCode.InvalidRequest);
        string host = Json.Text(root, "host", ProtocolErrorCode.InvalidRequest);
        if (root["items"] is not JsonArray arr) throw Rules.Fail(ProtocolErrorCode.InvalidRequest, "evidence has no 'items' array");
        var items = new List<ClaimEvidenceItem>();
        foreach (var n in arr)
        {
            RevealedFingerprint f;
            try { f = RevealedFingerprint.FromJson(Json.Text(n, "fingerprint", ProtocolErrorCode.InvalidRequest)); }
            catch (FormatException e) { throw new ProtocolException(ProtocolErrorCode.InvalidProof, $"malformed revealed fingerprint: {e.Message}", e); }
            items.Add(new ClaimEvidenceItem(f, Json.Text(n, "answer", ProtocolErrorCode.InvalidRequest), SignedReceipt.FromJsonNode(n?["receipt"])));
        }
        return new ClaimEvidence(model, host, items);
    }

    /// <summary>Keccak-256 of the UTF-8 JSON: the signed evidenceHash.</summary>
    public static string Hash(string json) => Hex.Of(Keccak256.Hash(Encoding.UTF8.GetBytes(json)));

    /// <summary>The tag that starts every claim commitment's preimage (v2: bound to the prover).</summary>
    public const string CommitmentTag = "oml/claim/v2";

    /// <summary>
    /// The claim commitment published by CommitClaim: <c>keccak256("oml/claim/v2" ‖ prover (20 bytes) ‖ modelId ‖ 0x00
    /// ‖ host (20 bytes) ‖ evidenceHash (32) ‖ salt (32))</c>; it hides which host and fingerprints are claimed until the
    /// reveal, and it is bound to the prover: the same bytes committed by anyone else can never be revealed. OmlClaims'
    /// <c>commitmentOf</c> computes the same bytes (with its own evidence hash).
    /// </summary>
    public static string Commitment(string prover, string modelId, string host, string evidenceHash, string salt)
    {
        var b = new List<byte>();
        b.AddRange(Encoding.UTF8.GetBytes(CommitmentTag));
        b.AddRange(Hex.Decode(Hex.Address(prover)));
        b.AddRange(Encoding.UTF8.GetBytes(modelId));
        b.Add(0);
        b.AddRange(Hex.Decode(Hex.Address(host)));
        b.AddRange(Hex.Decode(evidenceHash));
        b.AddRange(Hex.Decode(salt));
        return Hex.Of(Keccak256.Hash(b.ToArray()));
    }

    /// <summary>
    /// The id under which a revealed fingerprint is marked spent: <c>keccak256(salt ‖ key)</c>. Subsets re-index the
    /// pool's fingerprints, but keep their salts, so the id is the same in every copy that holds the fingerprint.
    /// </summary>
    public static string FingerprintId(RevealedFingerprint f) => FingerprintId(f.Salt.AsSpan(), f.Key);

    public static string FingerprintId(Fingerprint f) => FingerprintId(f.Salt.AsSpan(), f.Key);

    public static string FingerprintId(ReadOnlySpan<byte> salt, string key)
    {
        var k = Encoding.UTF8.GetBytes(key);
        var b = new byte[salt.Length + k.Length];
        salt.CopyTo(b);
        k.CopyTo(b, salt.Length);
        return Hex.Of(Keccak256.Hash(b));
    }
}

/// <summary>One rebutted item: the permit the receipt names, and the proof that the receipt is in the host's
/// committed usage root of epoch <see cref="Epoch"/>.</summary>
public sealed record RebuttalItem(SignedPermit Permit, long Epoch, MerkleProof ReceiptProof);

/// <summary>A host's answer to a claim: one item per claim item, in the claim's order. The Rebut "rebuttal" attachment.</summary>
public sealed record Rebuttal(IReadOnlyList<RebuttalItem> Items)
{
    public string ToJson()
    {
        var items = new JsonArray();
        foreach (var i in Items)
        {
            var steps = new JsonArray();
            foreach (var s in i.ReceiptProof.Steps) steps.Add(new JsonObject { ["sibling"] = Hex.Of(s.Sibling.AsSpan()), ["left"] = s.SiblingIsLeft });
            items.Add(new JsonObject
            {
                ["permit"] = i.Permit.ToJsonNode(),
                ["epoch"] = Hex.Dec(i.Epoch),
                ["proof"] = new JsonObject { ["leafIndex"] = i.ReceiptProof.LeafIndex, ["leafCount"] = i.ReceiptProof.LeafCount, ["steps"] = steps },
            });
        }
        return new JsonObject { ["items"] = items }.ToJsonString();
    }

    public static Rebuttal FromJson(string json)
    {
        var root = Json.Parse(json, ProtocolErrorCode.InvalidRequest);
        if (root["items"] is not JsonArray arr) throw Rules.Fail(ProtocolErrorCode.InvalidRequest, "rebuttal has no 'items' array");
        var items = new List<RebuttalItem>();
        try
        {
            foreach (var n in arr)
            {
                var permit = SignedPermit.FromJsonNode(n?["permit"]);
                if (!Message.TryParseUInt(Json.Text(n, "epoch", ProtocolErrorCode.InvalidRequest), out long epoch))
                    throw Rules.Fail(ProtocolErrorCode.InvalidRequest, "rebuttal epoch is not an integer");
                var p = n!["proof"]!;
                var steps = ((JsonArray)p["steps"]!).Select(st =>
                {
                    var sib = Hex.TryDecode(st!["sibling"]!.GetValue<string>(), out var b) ? b : throw Rules.Fail(ProtocolErrorCode.InvalidProof, "proof sibling is not hex");
                    return new MerkleStep(sib, st["left"]!.GetValue<bool>());
                });
                items.Add(new RebuttalItem(permit, epoch, new MerkleProof(p["leafIndex"]!.GetValue<int>(), p["leafCount"]!.GetValue<int>(), [.. steps])));
            }
        }
        catch (Exception e) when (e is InvalidOperationException or NullReferenceException or InvalidCastException or FormatException)
        {
            throw new ProtocolException(ProtocolErrorCode.InvalidRequest, $"malformed rebuttal: {e.Message}", e);
        }
        return new Rebuttal(items);
    }
}
