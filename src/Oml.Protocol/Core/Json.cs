using System.Text.Json;
using System.Text.Json.Nodes;

namespace Oml.Protocol.Core;

internal static class Json
{
    public static JsonNode Parse(string text, ProtocolErrorCode code)
    {
        try { return JsonNode.Parse(text) ?? throw new JsonException("null"); }
        catch (JsonException e) { throw new ProtocolException(code, $"not valid JSON: {e.Message}", e); }
    }

    public static string Text(JsonNode? node, string name, ProtocolErrorCode code) =>
        node?[name] is JsonValue v && v.TryGetValue(out string? s) ? s : throw ProtocolException.Of(code, $"'{name}' is missing or not a string");
}
