using System.Text.Json.Nodes;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Access;

/// <summary>
/// A user's signed permission to run one query on a host's copy of a model, and promise to pay <see cref="Fee"/>
/// from the user's prepaid deposit. Valid when the signature is the user's, it has not expired, its nonce is unused
/// for that user, the fee is at least the model's price, and the deposit covers it at settlement.
/// </summary>
/// <param name="User">The paying user (lowercase address).</param>
/// <param name="QueryHash">Keccak-256 of the UTF-8 query text.</param>
/// <param name="Nonce">Any number, used at most once per user.</param>
/// <param name="Expiry">Last ledger second (Unix time) at which it can be settled.</param>
public sealed record Permit(string User, string ModelId, string Host, string QueryHash, long Nonce, long Expiry, long Fee)
{
    public static Permit Create(Address user, string modelId, Address host, string queryText, long nonce, long expiry, long fee) =>
        new(Hex.Of(user), modelId, Hex.Of(host), Hex.KeccakText(queryText), nonce, expiry, fee);

    public JsonObject ToMessage() => new MessageBuilder()
        .Address("user", User).Str("modelId", ModelId).Address("host", Host).Bytes32("queryHash", QueryHash)
        .UInt("nonce", Nonce).UInt("expiry", Expiry).UInt("fee", Fee).Build();

    public static Permit FromMessage(JsonObject m)
    {
        Schemas.ValidateMessage(Schemas.Permit, m);
        var x = new Message(m);
        return new Permit(x.Address("user"), x.Str("modelId"), x.Address("host"), x.Bytes32("queryHash"), x.UInt("nonce"), x.UInt("expiry"), x.UInt("fee"));
    }

    public Eip712TypedData TypedData(ProtocolDomain domain) => Schemas.TypedData(Schemas.Permit, domain, ToMessage());

    /// <summary>The permit hash (its EIP-712 digest), which receipts name.</summary>
    public string Hash(ProtocolDomain domain) => Hex.Of(Eip712.Digest(TypedData(domain)));

    public SignedPermit Sign(ProtocolDomain domain, PrivateKey user)
    {
        if (Hex.Of(user.Address) != User) throw new ArgumentException($"the key's address {Hex.Of(user.Address)} is not the permit's user {User}");
        return new SignedPermit(this, Eip712.Sign(TypedData(domain), user));
    }
}

/// <summary>A permit with its user's signature.</summary>
public sealed record SignedPermit(Permit Permit, Signature Signature)
{
    public bool Verify(ProtocolDomain domain) =>
        Secp256k1.TryRecover(Eip712.Digest(Permit.TypedData(domain)), Signature, out var a) && Hex.Of(a) == Permit.User;

    public JsonObject ToJsonNode()
    {
        var o = Permit.ToMessage();
        o["signature"] = Signature.ToHex();
        return o;
    }

    public string ToJson() => ToJsonNode().ToJsonString();

    public static SignedPermit FromJsonNode(JsonNode? node)
    {
        // Everything a client sends is read inside the try: a JsonObject parsed with a repeated key throws only when
        // first read (ArgumentException), which must be a refused permit, not a server error.
        try
        {
            if (node is not JsonObject o || o["signature"] is not JsonValue sv || !sv.TryGetValue(out string? sig))
                throw ProtocolException.Of(ProtocolErrorCode.InvalidPermit, "a signed permit must be a JSON object with a 'signature'");
            var m = (JsonObject)o.DeepClone();
            m.Remove("signature");
            var permit = Permit.FromMessage(m);
            try { return new SignedPermit(permit, Signature.Parse(sig)); }
            catch (Exception e) when (e is FormatException or ArgumentException) { throw new ProtocolException(ProtocolErrorCode.InvalidPermit, $"malformed permit signature: {e.Message}", e); }
        }
        catch (ProtocolException e) when (e.Code == ProtocolErrorCode.InvalidPermit) { throw; }
        catch (ProtocolException e) { throw new ProtocolException(ProtocolErrorCode.InvalidPermit, $"malformed permit: {e.Message}", e); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or System.Text.Json.JsonException)
        {
            throw new ProtocolException(ProtocolErrorCode.InvalidPermit, $"malformed permit: {e.Message}", e);
        }
    }

    public static SignedPermit FromJson(string json) => FromJsonNode(Json.Parse(json, ProtocolErrorCode.InvalidPermit));
}

/// <summary>
/// A host's signed record of one answered query: which permit it served (or 32 zero bytes for none), the query and
/// answer hashes (Keccak-256 of the UTF-8 texts) and when (Unix seconds, host's clock).
/// </summary>
public sealed record Receipt(string Host, string ModelId, string PermitHash, string QueryHash, string ResponseHash, long Time)
{
    public static Receipt Create(Address host, string modelId, string? permitHash, string queryText, string responseText, long time) =>
        new(Hex.Of(host), modelId, permitHash ?? Hex.Zero32, Hex.KeccakText(queryText), Hex.KeccakText(responseText), time);

    public bool HasPermit => PermitHash != Hex.Zero32;

    public JsonObject ToMessage() => new MessageBuilder()
        .Address("host", Host).Str("modelId", ModelId).Bytes32("permitHash", PermitHash).Bytes32("queryHash", QueryHash)
        .Bytes32("responseHash", ResponseHash).UInt("time", Time).Build();

    public static Receipt FromMessage(JsonObject m)
    {
        Schemas.ValidateMessage(Schemas.Receipt, m);
        var x = new Message(m);
        return new Receipt(x.Address("host"), x.Str("modelId"), x.Bytes32("permitHash"), x.Bytes32("queryHash"), x.Bytes32("responseHash"), x.UInt("time"));
    }

    public Eip712TypedData TypedData(ProtocolDomain domain) => Schemas.TypedData(Schemas.Receipt, domain, ToMessage());

    /// <summary>The receipt's EIP-712 digest: the leaf data of the usage Merkle tree.</summary>
    public byte[] Digest(ProtocolDomain domain) => Eip712.Digest(TypedData(domain));

    public SignedReceipt Sign(ProtocolDomain domain, PrivateKey host)
    {
        if (Hex.Of(host.Address) != Host) throw new ArgumentException($"the key's address {Hex.Of(host.Address)} is not the receipt's host {Host}");
        return new SignedReceipt(this, Eip712.Sign(TypedData(domain), host));
    }
}

/// <summary>A receipt with its host's signature.</summary>
public sealed record SignedReceipt(Receipt Receipt, Signature Signature)
{
    public bool Verify(ProtocolDomain domain) =>
        Secp256k1.TryRecover(Receipt.Digest(domain), Signature, out var a) && Hex.Of(a) == Receipt.Host;

    public JsonObject ToJsonNode()
    {
        var o = Receipt.ToMessage();
        o["signature"] = Signature.ToHex();
        return o;
    }

    public string ToJson() => ToJsonNode().ToJsonString();

    public static SignedReceipt FromJsonNode(JsonNode? node)
    {
        if (node is not JsonObject o || o["signature"] is not JsonValue sv || !sv.TryGetValue(out string? sig))
            throw ProtocolException.Of(ProtocolErrorCode.InvalidReceipt, "a signed receipt must be a JSON object with a 'signature'");
        var m = (JsonObject)o.DeepClone();
        m.Remove("signature");
        try { return new SignedReceipt(Receipt.FromMessage(m), Signature.Parse(sig)); }
        catch (ProtocolException e) { throw new ProtocolException(ProtocolErrorCode.InvalidReceipt, $"malformed receipt: {e.Message}", e); }
        catch (Exception e) when (e is FormatException or ArgumentException) { throw new ProtocolException(ProtocolErrorCode.InvalidReceipt, $"malformed receipt signature: {e.Message}", e); }
    }

    public static SignedReceipt FromJson(string json) => FromJsonNode(Json.Parse(json, ProtocolErrorCode.InvalidReceipt));
}
