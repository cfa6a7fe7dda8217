using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Oml.Protocol.Crypto;

/// <summary>One member of an EIP-712 struct type.</summary>
public sealed record Eip712Field(string Name, string Type);

/// <summary>
/// EIP-712 typed structured data: the types, the primary type, the domain and the message, as in
/// <c>eth_signTypedData_v4</c>'s JSON. Values are JSON: numbers as JSON numbers or decimal/hex strings,
/// bytes and addresses as 0x-hex strings.
/// </summary>
public sealed record Eip712TypedData(
    IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> Types,
    string PrimaryType,
    JsonObject Domain,
    JsonObject Message)
{
    /// <summary>Reads the <c>eth_signTypedData_v4</c> JSON object: types, primaryType, domain, message.</summary>
    public static Eip712TypedData FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new ArgumentException($"typed data is not valid JSON: {e.Message}", nameof(json), e); }
        if (root is not JsonObject obj) throw new ArgumentException("typed data must be a JSON object with types, primaryType, domain and message", nameof(json));

        if (obj["types"] is not JsonObject typesObj) throw new ArgumentException("typed data: 'types' must be an object of struct types");
        var types = new Dictionary<string, IReadOnlyList<Eip712Field>>(StringComparer.Ordinal);
        foreach (var (typeName, members) in typesObj)
        {
            if (members is not JsonArray arr) throw new ArgumentException($"typed data: type '{typeName}' must be an array of {{name, type}} members");
            var fields = new List<Eip712Field>();
            foreach (var m in arr)
            {
                if (m is not JsonObject mo || mo["name"] is not JsonValue n || n.GetValueKind() != JsonValueKind.String
                    || mo["type"] is not JsonValue t || t.GetValueKind() != JsonValueKind.String)
                    throw new ArgumentException($"typed data: each member of type '{typeName}' needs string 'name' and 'type'");
                fields.Add(new Eip712Field(n.GetValue<string>(), t.GetValue<string>()));
            }
            types[typeName] = fields;
        }
        if (obj["primaryType"] is not JsonValue pt || pt.GetValueKind() != JsonValueKind.String)
            throw new ArgumentException("typed data: 'primaryType' must be a string");
        if (obj["domain"] is not JsonObject domain) throw new ArgumentException("typed data: 'domain' must be an object");
        var message = obj["message"] switch
        {
            JsonObject m => (JsonObject)m.DeepClone(),
            null when pt.GetValue<string>() == Eip712.DomainTypeName => new JsonObject(),
            _ => throw new ArgumentException("typed data: 'message' must be an object"),
        };
        var data = new Eip712TypedData(types, pt.GetValue<string>(), (JsonObject)domain.DeepClone(), message);
        Eip712.Validate(data);
        return data;
    }

    /// <summary>The <c>eth_signTypedData_v4</c> JSON form (indented).</summary>
    public string ToJson()
    {
        var types = new JsonObject();
        foreach (var (name, fields) in Types)
            types[name] = new JsonArray(fields.Select(f => (JsonNode)new JsonObject { ["name"] = f.Name, ["type"] = f.Type }).ToArray());
        var root = new JsonObject
        {
            ["types"] = types,
            ["primaryType"] = PrimaryType,
            ["domain"] = Domain.DeepClone(),
            ["message"] = Message.DeepClone(),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}

/// <summary>
/// EIP-712 hashing and signing (eips.ethereum.org/EIPS/eip-712): encodeType, typeHash, encodeData, hashStruct, the
/// domain separator, and the digest keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message)). Malformed data
/// (unknown types, missing or extra fields, out-of-range integers, wrong byte lengths) throws <see cref="ArgumentException"/>.
/// </summary>
public static class Eip712
{
    public const string DomainTypeName = "EIP712Domain";

    /// <summary>The EIP712Domain fields in the EIP's order, used when the types do not declare EIP712Domain.</summary>
    private static readonly Eip712Field[] StandardDomainFields =
    [
        new("name", "string"), new("version", "string"), new("chainId", "uint256"),
        new("verifyingContract", "address"), new("salt", "bytes32"),
    ];

    /// <summary>keccak256("\x19\x01" ‖ domainSeparator ‖ hashStruct(message)).</summary>
    public static byte[] Digest(Eip712TypedData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var buf = new byte[2 + 32 + 32];
        buf[0] = 0x19;
        buf[1] = 0x01;
        DomainSeparator(data).CopyTo(buf, 2);
        // Signing the domain itself (primaryType EIP712Domain) has no message part, as eth_signTypedData_v4 does.
        if (data.PrimaryType == DomainTypeName) return Keccak256.Hash(buf.AsSpan(0, 34));
        HashStruct(data, data.PrimaryType, data.Message).CopyTo(buf, 34);
        return Keccak256.Hash(buf);
    }

    public static byte[] DomainSeparator(Eip712TypedData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return HashStruct(data, DomainTypeName, data.Domain);
    }

    public static byte[] HashStruct(Eip712TypedData data, string type, JsonObject value)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(value);
        var types = EffectiveTypes(data);
        return HashStruct(types, type, value, type);
    }

    public static string EncodeType(IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> types, string primaryType)
    {
        ArgumentNullException.ThrowIfNull(types);
        if (!types.TryGetValue(primaryType, out var primaryFields)) throw new ArgumentException($"EIP-712: unknown struct type '{primaryType}'");
        var deps = new SortedSet<string>(StringComparer.Ordinal);
        CollectDependencies(types, primaryType, deps);
        deps.Remove(primaryType);
        var sb = new StringBuilder();
        AppendType(sb, primaryType, primaryFields);
        foreach (var d in deps) AppendType(sb, d, types[d]);
        return sb.ToString();
    }

    public static byte[] TypeHash(IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> types, string type) =>
        Keccak256.Hash(Encoding.UTF8.GetBytes(EncodeType(types, type)));

    public static Signature Sign(Eip712TypedData data, PrivateKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key.SignDigest(Digest(data));
    }

    public static Address RecoverSigner(Eip712TypedData data, Signature signature) => Secp256k1.Recover(Digest(data), signature);

    /// <summary>Checks that the data hashes (all types known, all values well-formed) by computing its digest.</summary>
    internal static void Validate(Eip712TypedData data) => Digest(data);

    // ---- types ----

    /// <summary>The declared types, plus EIP712Domain built from the domain's own fields when it is not declared.</summary>
    private static IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> EffectiveTypes(Eip712TypedData data)
    {
        if (data.Types.ContainsKey(DomainTypeName)) return data.Types;
        var unknown = data.Domain.Select(p => p.Key).Where(k => StandardDomainFields.All(f => f.Name != k)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"EIP-712: the domain has field(s) {string.Join(", ", unknown)} outside EIP712Domain's standard ones; declare EIP712Domain in types");
        var types = new Dictionary<string, IReadOnlyList<Eip712Field>>(data.Types.Count + 1, StringComparer.Ordinal);
        foreach (var (k, v) in data.Types) types[k] = v;
        types[DomainTypeName] = StandardDomainFields.Where(f => data.Domain.ContainsKey(f.Name)).ToArray();
        return types;
    }

    private static void AppendType(StringBuilder sb, string name, IReadOnlyList<Eip712Field> fields)
    {
        sb.Append(name).Append('(');
        for (int i = 0; i < fields.Count; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append(fields[i].Type).Append(' ').Append(fields[i].Name);
        }
        sb.Append(')');
    }

    private static void CollectDependencies(IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> types, string type, SortedSet<string> found)
    {
        if (!found.Add(type)) return;
        foreach (var f in types[type])
        {
            var baseType = BaseType(f.Type);
            if (types.ContainsKey(baseType)) CollectDependencies(types, baseType, found);
            else if (!IsAtomic(baseType)) throw new ArgumentException($"EIP-712: type '{type}' has member '{f.Name}' of unknown type '{f.Type}'");
        }
    }

    /// <summary>The element type with all array suffixes removed: "Person[][3]" → "Person".</summary>
    private static string BaseType(string type)
    {
        int i = type.IndexOf('[');
        return i < 0 ? type : type[..i];
    }

    private static bool IsAtomic(string type) =>
        type is "bool" or "address" or "string" or "bytes" || IntBits(type, out _, out _) || FixedBytesLength(type, out _);

    private static bool IntBits(string type, out int bits, out bool signed)
    {
        bits = 0;
        signed = type.StartsWith("int", StringComparison.Ordinal);
        var digits = signed ? type[3..] : type.StartsWith("uint", StringComparison.Ordinal) ? type[4..] : null;
        if (digits is null) return false;
        if (digits.Length == 0) { bits = 256; return true; } // "uint"/"int" alias uint256/int256 in Solidity
        if (digits[0] == '0' || !int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out bits)) return false;
        return bits is >= 8 and <= 256 && bits % 8 == 0;
    }

    private static bool FixedBytesLength(string type, out int length)
    {
        length = 0;
        if (!type.StartsWith("bytes", StringComparison.Ordinal) || type.Length == 5) return false;
        var digits = type[5..];
        return digits[0] != '0' && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out length) && length is >= 1 and <= 32;
    }

    // ---- data ----

    private static byte[] HashStruct(IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> types, string type, JsonObject value, string path)
    {
        if (!types.TryGetValue(type, out var fields)) throw new ArgumentException($"EIP-712: unknown struct type '{type}'");
        var buf = new byte[32 * (1 + fields.Count)];
        TypeHash(types, type).CopyTo(buf, 0);
        var known = new HashSet<string>(fields.Select(f => f.Name), StringComparer.Ordinal);
        foreach (var (name, _) in value)
            if (!known.Contains(name)) throw new ArgumentException($"EIP-712: {path} has a field '{name}' that type {type} does not declare");
        for (int i = 0; i < fields.Count; i++)
        {
            var f = fields[i];
            if (!value.TryGetPropertyValue(f.Name, out var v) || v is null)
                throw new ArgumentException($"EIP-712: {path} is missing field '{f.Name}' ({f.Type})");
            EncodeValue(types, f.Type, v, $"{path}.{f.Name}", buf.AsSpan(32 * (i + 1), 32));
        }
        return Keccak256.Hash(buf);
    }

    /// <summary>enc(value) for one member: 32 bytes.</summary>
    private static void EncodeValue(IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> types, string type, JsonNode value, string path, Span<byte> dest)
    {
        if (type.EndsWith(']'))
        {
            int open = type.LastIndexOf('[');
            if (open <= 0) throw new ArgumentException($"EIP-712: {path}: malformed array type '{type}'");
            var element = type[..open];
            var lengthText = type[(open + 1)..^1];
            if (value is not JsonArray arr) throw new ArgumentException($"EIP-712: {path} must be an array ({type})");
            if (lengthText.Length > 0)
            {
                if (!int.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out int k))
                    throw new ArgumentException($"EIP-712: {path}: malformed array length in '{type}'");
                if (arr.Count != k) throw new ArgumentException($"EIP-712: {path} has {arr.Count} elements; {type} needs exactly {k}");
            }
            // An array is keccak256 of its elements' encodings, concatenated.
            var buf = new byte[32 * arr.Count];
            for (int i = 0; i < arr.Count; i++)
            {
                var item = arr[i] ?? throw new ArgumentException($"EIP-712: {path}[{i}] is null");
                EncodeValue(types, element, item, $"{path}[{i}]", buf.AsSpan(32 * i, 32));
            }
            Keccak256.Hash(buf, dest);
            return;
        }
        if (types.ContainsKey(type))
        {
            if (value is not JsonObject o) throw new ArgumentException($"EIP-712: {path} must be an object (struct {type})");
            HashStruct(types, type, o, path).CopyTo(dest);
            return;
        }
        dest.Clear();
        switch (type)
        {
            case "string":
                Keccak256.Hash(Encoding.UTF8.GetBytes(AsString(value, path, type)), dest);
                return;
            case "bytes":
                Keccak256.Hash(HexBytes(value, path, type), dest);
                return;
            case "bool":
                dest[31] = AsBool(value, path) ? (byte)1 : (byte)0;
                return;
            case "address":
            {
                Address a;
                try { a = Address.Parse(AsString(value, path, type)); }
                catch (FormatException e) { throw new ArgumentException($"EIP-712: {path}: {e.Message}", e); }
                a.Bytes.CopyTo(dest[12..]);
                return;
            }
        }
        if (IntBits(type, out int bits, out bool signed))
        {
            var v = AsInteger(value, path, type);
            var min = signed ? -(BigInteger.One << (bits - 1)) : BigInteger.Zero;
            var max = signed ? (BigInteger.One << (bits - 1)) - 1 : (BigInteger.One << bits) - 1;
            if (v < min || v > max) throw new ArgumentException($"EIP-712: {path} = {v} is out of range for {type} [{min}, {max}]");
            // Two's complement over 256 bits: a negative value is sign-extended with 0xFF bytes.
            if (v.Sign < 0) { dest.Fill(0xFF); v += BigInteger.One << 256; }
            int len = v.GetByteCount(isUnsigned: true);
            v.TryWriteBytes(dest[(32 - len)..], out _, isUnsigned: true, isBigEndian: true);
            return;
        }
        if (FixedBytesLength(type, out int n))
        {
            var b = HexBytes(value, path, type);
            if (b.Length != n) throw new ArgumentException($"EIP-712: {path} has {b.Length} bytes; {type} needs exactly {n}");
            b.CopyTo(dest); // right-padded with zeros
            return;
        }
        throw new ArgumentException($"EIP-712: {path} has unknown type '{type}'");
    }

    private static string AsString(JsonNode value, string path, string type) =>
        value is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw new ArgumentException($"EIP-712: {path} must be a string ({type})");

    private static bool AsBool(JsonNode value, string path)
    {
        if (value is JsonValue v)
        {
            switch (v.GetValueKind())
            {
                case JsonValueKind.True: return true;
                case JsonValueKind.False: return false;
                case JsonValueKind.String when v.GetValue<string>() is "true" or "false": return v.GetValue<string>() == "true";
            }
        }
        throw new ArgumentException($"EIP-712: {path} must be true or false (bool)");
    }

    private static byte[] HexBytes(JsonNode value, string path, string type)
    {
        var s = AsString(value, path, type);
        if (!s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) throw new ArgumentException($"EIP-712: {path} must be 0x-prefixed hex ({type})");
        var hex = s.AsSpan(2);
        if (hex.Length % 2 != 0) throw new ArgumentException($"EIP-712: {path} has an odd number of hex digits ({type})");
        foreach (var c in hex) if (!char.IsAsciiHexDigit(c)) throw new ArgumentException($"EIP-712: {path} is not hex ({type})");
        return Convert.FromHexString(hex);
    }

    /// <summary>An integer from a JSON number, a decimal string, or a 0x-hex string (either may carry a leading '-').</summary>
    private static BigInteger AsInteger(JsonNode value, string path, string type)
    {
        if (value is JsonValue v)
        {
            string text;
            switch (v.GetValueKind())
            {
                case JsonValueKind.Number: text = v.ToJsonString(); break;
                case JsonValueKind.String: text = v.GetValue<string>().Trim(); break;
                default: throw new ArgumentException($"EIP-712: {path} must be a number or a numeric string ({type})");
            }
            bool negative = text.StartsWith('-');
            var digits = negative ? text[1..] : text;
            BigInteger magnitude = BigInteger.Zero;
            bool ok = digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? digits.Length > 2 && digits[2..].All(char.IsAsciiHexDigit) && BigInteger.TryParse("0" + digits[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out magnitude)
                : digits.Length > 0 && digits.All(char.IsAsciiDigit) && BigInteger.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out magnitude);
            if (!ok) throw new ArgumentException($"EIP-712: {path} = '{text}' is not an integer ({type})");
            return negative ? -magnitude : magnitude;
        }
        throw new ArgumentException($"EIP-712: {path} must be a number or a numeric string ({type})");
    }
}
