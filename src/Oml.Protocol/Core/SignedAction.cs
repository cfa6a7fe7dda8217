using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Core;

/// <summary>Typed read access to a validated request message (see <see cref="Schemas.ValidateMessage"/>).</summary>
public sealed class Message(JsonObject fields)
{
    public JsonObject Fields { get; } = fields;

    public string Str(string name) => Fields[name]!.GetValue<string>();
    public string Address(string name) => Str(name);
    public string Bytes32(string name) => Str(name);
    public bool Bool(string name) => Fields[name]!.GetValue<bool>();
    public long UInt(string name) =>
        TryParseUInt(Str(name), out long v) ? v : throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"field '{name}' is not an integer");

    /// <summary>A canonical non-negative decimal integer up to 2^63-1 (no sign, no leading zeros).</summary>
    public static bool TryParseUInt(string? text, out long value)
    {
        value = 0;
        if (string.IsNullOrEmpty(text) || text.Length > 19 || (text.Length > 1 && text[0] == '0')) return false;
        foreach (char c in text) if (!char.IsAsciiDigit(c)) return false;
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}

/// <summary>A request before signing: its struct type and message.</summary>
public sealed record UnsignedAction(string Type, JsonObject Message)
{
    public Eip712TypedData TypedData(ProtocolDomain domain) => Schemas.TypedData(Type, domain, Message);

    /// <summary>The EIP-712 digest the signers sign.</summary>
    public byte[] Digest(ProtocolDomain domain) => Eip712.Digest(TypedData(domain));

    /// <summary>Signs with the actor's key (and any co-signers' keys, in order).</summary>
    public SignedAction Sign(ProtocolDomain domain, PrivateKey actor, params PrivateKey[] coSigners) =>
        Sign(domain, [actor, .. coSigners], new Dictionary<string, string>());

    public SignedAction Sign(ProtocolDomain domain, IReadOnlyList<PrivateKey> signers, IReadOnlyDictionary<string, string> attachments)
    {
        var td = TypedData(domain);
        return new SignedAction(Type, Message, [.. signers.Select(k => Eip712.Sign(td, k))], attachments);
    }
}

/// <summary>
/// A signed ledger request: struct type, message, the signatures over its EIP-712 digest (the actor's first, then
/// co-signers'), and attachments (exact texts whose Keccak-256 the message signs).
/// </summary>
public sealed record SignedAction(string Type, JsonObject Message, IReadOnlyList<Signature> Signatures, IReadOnlyDictionary<string, string> Attachments)
{
    public string Actor => Message["actor"]?.GetValue<string>() ?? throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"{Type}: no actor");

    public Eip712TypedData TypedData(ProtocolDomain domain) => Schemas.TypedData(Type, domain, Message);

    /// <summary>
    /// The canonical ledger payload: UTF-8 JSON, no whitespace, keys in a fixed order —
    /// <c>{"type","domain":{name,version,chainId,verifyingContract},"message":{fields in schema order},"signatures":[hex],"attachments":{sorted}}</c>.
    /// </summary>
    public byte[] ToPayload(ProtocolDomain domain)
    {
        var fields = Schemas.All[Type];
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("type", Type);
            w.WriteStartObject("domain");
            w.WriteString("name", ProtocolDomain.Name);
            w.WriteString("version", ProtocolDomain.Version);
            w.WriteString("chainId", Hex.Dec(domain.ChainId));
            w.WriteString("verifyingContract", domain.VerifyingContract);
            w.WriteEndObject();
            w.WriteStartObject("message");
            foreach (var f in fields)
            {
                w.WritePropertyName(f.Name);
                Message[f.Name]!.WriteTo(w);
            }
            w.WriteEndObject();
            w.WriteStartArray("signatures");
            foreach (var s in Signatures) w.WriteStringValue(s.ToHex());
            w.WriteEndArray();
            w.WriteStartObject("attachments");
            foreach (var k in Attachments.Keys.OrderBy(k => k, StringComparer.Ordinal)) w.WriteString(k, Attachments[k]);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    /// <summary>The request as JSON text (the ledger payload's form), for handing a signed request between processes.</summary>
    public string ToJson(ProtocolDomain domain) => Encoding.UTF8.GetString(ToPayload(domain));

    /// <summary>Parses <see cref="ToJson"/>'s text; throws <see cref="ProtocolException"/> (InvalidRequest) when malformed.</summary>
    public static (SignedAction Action, ProtocolDomain Domain) FromJson(string json)
    {
        try { return FromPayload(Encoding.UTF8.GetBytes(json)); }
        catch (ProtocolException e) { throw new ProtocolException(ProtocolErrorCode.InvalidRequest, e.Message, e); }
    }

    /// <summary>Parses a payload written by <see cref="ToPayload"/>; returns the action and the domain it was signed under.</summary>
    public static (SignedAction Action, ProtocolDomain Domain) FromPayload(byte[] payload)
    {
        try
        {
            var root = JsonNode.Parse(Encoding.UTF8.GetString(payload)) as JsonObject ?? throw new FormatException("payload is not a JSON object");
            string type = root["type"]!.GetValue<string>();
            var d = (JsonObject)root["domain"]!;
            if (d["name"]!.GetValue<string>() != ProtocolDomain.Name || d["version"]!.GetValue<string>() != ProtocolDomain.Version)
                throw new FormatException("payload domain is not OML v1");
            var domain = new ProtocolDomain(long.Parse(d["chainId"]!.GetValue<string>(), CultureInfo.InvariantCulture), d["verifyingContract"]!.GetValue<string>());
            var message = (JsonObject)root["message"]!.DeepClone();
            Schemas.ValidateMessage(type, message);
            var sigs = ((JsonArray)root["signatures"]!).Select(n => Signature.Parse(n!.GetValue<string>())).ToList();
            var att = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (k, v) in (JsonObject)root["attachments"]!) att[k] = v!.GetValue<string>();
            return (new SignedAction(type, message, sigs, att), domain);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or NullReferenceException or InvalidCastException or ArgumentException)
        {
            throw new ProtocolException(ProtocolErrorCode.ReplayFailed, $"ledger payload does not parse: {e.Message}", e);
        }
    }
}

/// <summary>Builds request messages with canonical field encodings.</summary>
public sealed class MessageBuilder
{
    private readonly JsonObject _o = new();
    public MessageBuilder Address(string name, string address) { _o[name] = Hex.Address(address); return this; }
    public MessageBuilder Address(string name, Address address) { _o[name] = Hex.Of(address); return this; }
    public MessageBuilder Str(string name, string value) { _o[name] = value ?? throw new ArgumentNullException(name); return this; }
    public MessageBuilder UInt(string name, long value)
    {
        // a refusal like any other (the chain backend refuses the same before it signs): not a crash
        if (value < 0) throw ProtocolException.Of(ProtocolErrorCode.InvalidAmount, $"{name} must not be negative, got {value}");
        _o[name] = Hex.Dec(value);
        return this;
    }
    public MessageBuilder Bytes32(string name, ReadOnlySpan<byte> value)
    {
        if (value.Length != 32) throw new ArgumentException($"{name} must be 32 bytes");
        _o[name] = Hex.Of(value);
        return this;
    }
    public MessageBuilder Bytes32(string name, string hex) => Bytes32(name, Hex.Decode(hex));
    public MessageBuilder Bool(string name, bool value) { _o[name] = value; return this; }
    public JsonObject Build() => _o;
}
