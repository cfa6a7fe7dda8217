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
    public static Eip712TypedData FromJson(string json) => throw new NotImplementedException();
    public string ToJson() => throw new NotImplementedException();
}

public static class Eip712
{
    /// <summary>keccak256("\x19\x01" ‖ domainSeparator ‖ hashStruct(message)).</summary>
    public static byte[] Digest(Eip712TypedData data) => throw new NotImplementedException();
    public static byte[] DomainSeparator(Eip712TypedData data) => throw new NotImplementedException();
    public static byte[] HashStruct(Eip712TypedData data, string type, JsonObject value) => throw new NotImplementedException();
    public static string EncodeType(IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> types, string primaryType) => throw new NotImplementedException();
    public static Signature Sign(Eip712TypedData data, PrivateKey key) => throw new NotImplementedException();
    public static Address RecoverSigner(Eip712TypedData data, Signature signature) => throw new NotImplementedException();
}
