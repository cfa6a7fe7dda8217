using System.Collections;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Oml.Models.ChatTemplates;

/// <summary>
/// A Hugging Face chat template (the Jinja2 <c>chat_template</c> of tokenizer_config.json), parsed once and rendered
/// with the semantics of <c>transformers.apply_chat_template</c>: trim_blocks and lstrip_blocks on, Jinja2's default
/// Undefined, <c>raise_exception</c>, <c>strftime_now</c>, the tokenizer's special tokens, <c>messages</c>,
/// <c>tools</c>, <c>documents</c>, <c>add_generation_prompt</c> and any extra keyword arguments.
/// </summary>
public sealed class ChatTemplate
{
    private readonly List<Stmt> _body;

    private ChatTemplate(string source, List<Stmt> body, IReadOnlyDictionary<string, object?> specialTokens)
    {
        Source = source;
        _body = body;
        SpecialTokens = specialTokens;
    }

    public string Source { get; }

    /// <summary>bos_token, eos_token, ... as passed to the template (tokens that are null in the config are left out).</summary>
    public IReadOnlyDictionary<string, object?> SpecialTokens { get; }

    /// <summary>The clock <c>strftime_now</c> reads (local time by default); set it for reproducible output.</summary>
    public Func<DateTime> Clock { get; set; } = () => DateTime.Now;

    /// <summary>Parses a template; throws <see cref="ChatTemplateSyntaxException"/> (with line and column) on errors or unsupported constructs.</summary>
    public static ChatTemplate Parse(string source, IReadOnlyDictionary<string, object?>? specialTokens = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, Parser.Parse(source), specialTokens ?? new Dictionary<string, object?>());
    }

    private static readonly string[] SpecialTokenKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// <summary>
    /// Reads the chat template and special tokens from a tokenizer_config.json (or a folder holding one). The template is
    /// <c>chat_template</c> (a string, or a list of {name, template} from which <paramref name="templateName"/> is taken),
    /// else a chat_template.jinja file next to the config.
    /// </summary>
    public static ChatTemplate FromTokenizerConfig(string path, string templateName = "default")
    {
        var file = Directory.Exists(path) ? Path.Combine(path, "tokenizer_config.json") : path;
        using var doc = JsonDocument.Parse(File.ReadAllText(file));
        var root = doc.RootElement;
        string? source = null;
        if (root.TryGetProperty("chat_template", out var ct))
        {
            if (ct.ValueKind == JsonValueKind.String) source = ct.GetString();
            else if (ct.ValueKind == JsonValueKind.Array)
            {
                var names = new List<string>();
                foreach (var t in ct.EnumerateArray())
                {
                    var name = t.TryGetProperty("name", out var n) ? n.GetString() : null;
                    if (name != null) names.Add(name);
                    if (name == templateName && t.TryGetProperty("template", out var tpl)) source = tpl.GetString();
                }
                if (source == null)
                    throw new InvalidDataException($"{file}: no chat template named '{templateName}' (available: {string.Join(", ", names)})");
            }
        }
        if (source == null)
        {
            var jinja = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, "chat_template.jinja");
            if (File.Exists(jinja)) source = File.ReadAllText(jinja);
        }
        if (source == null) throw new InvalidDataException($"{file} has no chat_template (and there is no chat_template.jinja next to it)");

        static string? TokenText(JsonElement e) => e.ValueKind switch
        {
            JsonValueKind.String => e.GetString(),
            JsonValueKind.Object when e.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => null,
        };
        var tokens = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var key in SpecialTokenKeys)
            if (root.TryGetProperty(key, out var e) && TokenText(e) is { } text) tokens[key] = text;
        if (root.TryGetProperty("additional_special_tokens", out var extra) && extra.ValueKind == JsonValueKind.Array)
        {
            var list = extra.EnumerateArray().Select(TokenText).Where(t => t != null).Cast<object?>().ToList();
            if (list.Count > 0) tokens["additional_special_tokens"] = list;
        }
        return Parse(source, tokens);
    }

    /// <summary>Renders like <c>tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=..., **extra)</c>.
    /// <c>tools</c> and <c>documents</c> are None unless <paramref name="extra"/> sets them.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var ctx = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in SpecialTokens) ctx[k] = v;
        ctx["messages"] = messages;
        ctx["tools"] = null;
        ctx["documents"] = null;
        ctx["add_generation_prompt"] = addGenerationPrompt;
        if (extra != null) foreach (var (k, v) in extra) ctx[k] = v;
        return Render(ctx);
    }

    /// <summary>Renders with exactly the given variables (plus the built-in functions). Values may be null, bool, integers,
    /// floating-point numbers, strings, dictionaries, lists/enumerables, <see cref="ChatMessage"/>, <see cref="JsonElement"/>
    /// and <see cref="JsonNode"/>.</summary>
    public string Render(IEnumerable<KeyValuePair<string, object?>> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var interp = new Interpreter(Clock);
        var globals = new Scope(null);
        Builtins.AddGlobals(globals, Clock);
        var vars = new Scope(globals);
        foreach (var (k, v) in context) vars.Vars[k] = ToValue(v, 0);
        return interp.Render(_body, vars);
    }

    // ---- .NET values -> template values ----

    private static object? ToValue(object? o, int depth)
    {
        if (depth > 100) throw new ArgumentException("template context nested too deeply (circular reference?)");
        switch (o)
        {
            case null: return null;
            case string or bool or long or double: return o;
            case char c: return c.ToString();
            case int or short or sbyte or byte or ushort or uint: return Convert.ToInt64(o, System.Globalization.CultureInfo.InvariantCulture);
            case ulong ul: return ul <= long.MaxValue ? (long)ul : (double)ul;
            case float f: return (double)f;
            case decimal m: return (double)m;
            case ChatMessage m:
            {
                var d = new PyDict { ["role"] = m.Role, ["content"] = ToValue(m.Content, depth + 1) };
                if (m.Extra != null) foreach (var (k, v) in m.Extra) d[k] = ToValue(v, depth + 1);
                return d;
            }
            case JsonElement e: return FromJson(e);
            case JsonNode n: return FromJsonNode(n, depth);
            case IDictionary dict:
            {
                var d = new PyDict();
                foreach (DictionaryEntry kv in dict) d[Builtins.HashableKey(ToValue(kv.Key, depth + 1))] = ToValue(kv.Value, depth + 1);
                return d;
            }
            case IEnumerable<KeyValuePair<string, object?>> kvs:
            {
                var d = new PyDict();
                foreach (var (k, v) in kvs) d[k] = ToValue(v, depth + 1);
                return d;
            }
            case IEnumerable seq:
            {
                var list = new List<object?>();
                foreach (var x in seq) list.Add(ToValue(x, depth + 1));
                return list;
            }
            default:
                throw new ArgumentException($"unsupported value of type {o.GetType()} in the template context");
        }
    }

    private static object? FromJson(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Null or JsonValueKind.Undefined: return null;
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.Number:
            {
                var raw = e.GetRawText();
                if (raw.IndexOfAny(['.', 'e', 'E']) < 0 && e.TryGetInt64(out var l)) return l;
                return e.GetDouble();
            }
            case JsonValueKind.Array: return e.EnumerateArray().Select(FromJson).ToList();
            default:
            {
                var d = new PyDict();
                foreach (var p in e.EnumerateObject()) d[p.Name] = FromJson(p.Value);
                return d;
            }
        }
    }

    private static object? FromJsonNode(JsonNode n, int depth)
    {
        switch (n)
        {
            case JsonObject obj:
            {
                var d = new PyDict();
                foreach (var (k, v) in obj) d[k] = v == null ? null : FromJsonNode(v, depth + 1);
                return d;
            }
            case JsonArray arr:
                return arr.Select(x => x == null ? null : FromJsonNode(x, depth + 1)).ToList();
            case JsonValue v:
                if (v.TryGetValue<JsonElement>(out var je)) return FromJson(je);
                if (v.TryGetValue<string>(out var s)) return s;
                if (v.TryGetValue<bool>(out var b)) return b;
                if (v.TryGetValue<long>(out var l)) return l;
                if (v.TryGetValue<double>(out var dbl)) return dbl;
                throw new ArgumentException($"unsupported JSON value {v.ToJsonString()} in the template context");
            default:
                return null;
        }
    }
}
