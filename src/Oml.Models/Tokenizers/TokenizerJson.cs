using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Oml.Models.Tokenizers;

/// <summary>Reads the components of tokenizer.json; anything it does not know is an <see cref="InvalidDataException"/>.</summary>
internal static class TokenizerJson
{
    public static InvalidDataException Error(string path, string message) => new($"tokenizer.json: {path}: {message}");

    public static string TypeOf(JsonElement e, string path)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Error(path, $"expected an object, found {e.ValueKind}");
        if (!e.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String) throw Error(path, "missing string field 'type'");
        return t.GetString()!;
    }

    public static JsonElement Required(JsonElement e, string name, string path)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v)) throw Error(path, $"missing field '{name}'");
        return v;
    }

    public static bool IsNull(JsonElement e) => e.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined;

    public static string? OptString(JsonElement e, string name, string path)
    {
        if (!e.TryGetProperty(name, out var v) || IsNull(v)) return null;
        if (v.ValueKind != JsonValueKind.String) throw Error(path, $"field '{name}' must be a string, found {v.ValueKind}");
        return v.GetString();
    }

    public static string ReqString(JsonElement e, string name, string path) =>
        OptString(e, name, path) ?? throw Error(path, $"missing string field '{name}'");

    public static bool OptBool(JsonElement e, string name, string path, bool dflt)
    {
        if (!e.TryGetProperty(name, out var v) || IsNull(v)) return dflt;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(path, $"field '{name}' must be a boolean, found {v.ValueKind}"),
        };
    }

    public static int OptInt(JsonElement e, string name, string path, int dflt)
    {
        if (!e.TryGetProperty(name, out var v) || IsNull(v)) return dflt;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i)) throw Error(path, $"field '{name}' must be an integer");
        return i;
    }

    public static JsonElement.ArrayEnumerator Array(JsonElement e, string name, string path)
    {
        var v = Required(e, name, path);
        if (v.ValueKind != JsonValueKind.Array) throw Error(path, $"field '{name}' must be an array, found {v.ValueKind}");
        return v.EnumerateArray();
    }

    /// <summary>A pattern object {"String": "..."} or {"Regex": "..."}: returns the literal or the compiled regex.</summary>
    public static (string? Literal, Regex? Regex) Pattern(JsonElement e, string path)
    {
        var p = Required(e, "pattern", path);
        if (p.ValueKind == JsonValueKind.Object)
        {
            if (p.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String) return (s.GetString()!, null);
            if (p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String) return (null, CompileRegex(r.GetString()!, path));
        }
        throw Error(path, "field 'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
    }

    public static Regex CompileRegex(string pattern, string path)
    {
        try
        {
            return new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }
        catch (ArgumentException ex)
        {
            throw Error(path, $"regex '{pattern}' is not supported: {ex.Message}");
        }
    }

    public static Normalizer? Normalizer(JsonElement e, string path)
    {
        if (IsNull(e)) return null;
        var type = TypeOf(e, path);
        switch (type)
        {
            case "Sequence":
                var list = new List<Normalizer>();
                var i = 0;
                foreach (var n in Array(e, "normalizers", path))
                {
                    var sub = Normalizer(n, $"{path}.normalizers[{i++}]");
                    if (sub != null) list.Add(sub);
                }
                return new SequenceNormalizer(list.ToArray());
            case "NFC": return new UnicodeNormalizer(compose: true);
            case "NFD": return new UnicodeNormalizer(compose: false);
            case "Prepend": return new PrependNormalizer(ReqString(e, "prepend", path));
            case "Replace":
            {
                var (literal, regex) = Pattern(e, path);
                return new ReplaceNormalizer(literal, regex, ReqString(e, "content", path));
            }
            case "Lowercase": return new LowercaseNormalizer();
            case "Strip": return new StripNormalizer(OptBool(e, "strip_left", path, false), OptBool(e, "strip_right", path, false));
            default: throw Error(path, $"unsupported normalizer type '{type}'");
        }
    }

    public static PreTokenizer? PreTokenizer(JsonElement e, string path)
    {
        if (IsNull(e)) return null;
        var type = TypeOf(e, path);
        switch (type)
        {
            case "Sequence":
                var list = new List<PreTokenizer>();
                var i = 0;
                foreach (var n in Array(e, "pretokenizers", path))
                {
                    var sub = PreTokenizer(n, $"{path}.pretokenizers[{i++}]");
                    if (sub != null) list.Add(sub);
                }
                return new SequencePreTokenizer(list.ToArray());
            case "Split":
            {
                var (literal, regex) = Pattern(e, path);
                regex ??= new Regex(Regex.Escape(literal!), RegexOptions.CultureInvariant);
                var behaviorName = ReqString(e, "behavior", path);
                if (!Enum.TryParse<SplitBehavior>(behaviorName, out var behavior) || !Enum.IsDefined(behavior))
                    throw Error(path, $"unsupported Split behavior '{behaviorName}'");
                return new SplitPreTokenizer(regex, behavior, OptBool(e, "invert", path, false));
            }
            case "ByteLevel":
                return new ByteLevelPreTokenizer(OptBool(e, "add_prefix_space", path, true), OptBool(e, "use_regex", path, true));
            case "Metaspace":
                return new MetaspacePreTokenizer(Replacement(e, path), Scheme(e, path), OptBool(e, "split", path, true));
            case "Digits":
                return new RegexPreTokenizer(OptBool(e, "individual_digits", path, false) ? @"\p{N}" : @"\p{N}+", SplitBehavior.Isolated);
            case "Whitespace":
                return new RegexPreTokenizer(@"\w+|[^\w\s]+", SplitBehavior.Removed, invert: true);
            case "WhitespaceSplit":
                return new RegexPreTokenizer(@"\s+", SplitBehavior.Removed);
            default: throw Error(path, $"unsupported pre_tokenizer type '{type}'");
        }
    }

    private static char Replacement(JsonElement e, string path)
    {
        var r = OptString(e, "replacement", path) ?? "\u2581";
        if (r.Length != 1) throw Error(path, $"Metaspace replacement '{r}' must be one character");
        return r[0];
    }

    private static PrependScheme Scheme(JsonElement e, string path)
    {
        var s = OptString(e, "prepend_scheme", path);
        if (s == null) return OptBool(e, "add_prefix_space", path, true) ? PrependScheme.Always : PrependScheme.Never;
        return s switch
        {
            "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            _ => throw Error(path, $"unsupported Metaspace prepend_scheme '{s}'"),
        };
    }

    public static Decoder? Decoder(JsonElement e, string path)
    {
        if (IsNull(e)) return null;
        var type = TypeOf(e, path);
        switch (type)
        {
            case "Sequence":
                var list = new List<Decoder>();
                var i = 0;
                foreach (var n in Array(e, "decoders", path))
                {
                    var sub = Decoder(n, $"{path}.decoders[{i++}]");
                    if (sub != null) list.Add(sub);
                }
                return new SequenceDecoder(list.ToArray());
            case "ByteLevel": return new ByteLevelDecoder();
            case "Replace":
            {
                var (literal, regex) = Pattern(e, path);
                return new ReplaceDecoder(literal, regex, ReqString(e, "content", path));
            }
            case "ByteFallback": return new ByteFallbackDecoder();
            case "Fuse": return new FuseDecoder();
            case "Strip": return new StripDecoder(ReqString(e, "content", path), OptInt(e, "start", path, 0), OptInt(e, "stop", path, 0));
            case "Metaspace": return new MetaspaceDecoder(Replacement(e, path), Scheme(e, path));
            default: throw Error(path, $"unsupported decoder type '{type}'");
        }
    }

    public static PostProcessor? PostProcessor(JsonElement e, string path, Func<string, int?> tokenToId)
    {
        if (IsNull(e)) return null;
        var type = TypeOf(e, path);
        switch (type)
        {
            case "ByteLevel": return new IdentityPostProcessor();
            case "Sequence":
            {
                var list = new List<PostProcessor>();
                var i = 0;
                foreach (var n in Array(e, "processors", path))
                {
                    var sub = PostProcessor(n, $"{path}.processors[{i++}]", tokenToId);
                    if (sub != null) list.Add(sub);
                }
                return new SequencePostProcessor(list.ToArray());
            }
            case "TemplateProcessing": return Template(e, path);
            case "BertProcessing":
            case "RobertaProcessing":
            {
                var cls = TokenPair(Required(e, "cls", path), path + ".cls");
                var sep = TokenPair(Required(e, "sep", path), path + ".sep");
                return new TemplatePostProcessor([cls], [sep]);
            }
            default: throw Error(path, $"unsupported post_processor type '{type}'");
        }
    }

    private static int TokenPair(JsonElement e, string path)
    {
        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != 2 || !e[1].TryGetInt32(out var id))
            throw Error(path, "expected [token, id]");
        return id;
    }

    private static TemplatePostProcessor Template(JsonElement e, string path)
    {
        var specials = new Dictionary<string, int[]>();
        var st = Required(e, "special_tokens", path);
        if (st.ValueKind != JsonValueKind.Object) throw Error(path, "field 'special_tokens' must be an object");
        foreach (var p in st.EnumerateObject())
        {
            var ids = new List<int>();
            foreach (var id in Array(p.Value, "ids", $"{path}.special_tokens.{p.Name}"))
                ids.Add(id.TryGetInt32(out var v) ? v : throw Error($"{path}.special_tokens.{p.Name}", "ids must be integers"));
            specials[p.Name] = ids.ToArray();
        }
        var before = new List<int>();
        var after = new List<int>();
        var seenSequence = false;
        var i = 0;
        foreach (var item in Array(e, "single", path))
        {
            var itemPath = $"{path}.single[{i++}]";
            if (item.TryGetProperty("SpecialToken", out var sp))
            {
                var name = ReqString(sp, "id", itemPath);
                if (!specials.TryGetValue(name, out var ids)) throw Error(itemPath, $"special token '{name}' is not in special_tokens");
                (seenSequence ? after : before).AddRange(ids);
            }
            else if (item.TryGetProperty("Sequence", out var sq))
            {
                var id = ReqString(sq, "id", itemPath);
                if (id != "A") throw Error(itemPath, $"the single template may only use sequence A, found '{id}'");
                if (seenSequence) throw Error(itemPath, "sequence A appears twice in the single template");
                seenSequence = true;
            }
            else throw Error(itemPath, "expected SpecialToken or Sequence");
        }
        if (!seenSequence) throw Error(path, "the single template has no Sequence A");
        return new TemplatePostProcessor(before.ToArray(), after.ToArray());
    }

    /// <summary>The model's settings besides its vocabulary and merges (which the tokenizer cache stores apart).</summary>
    public static BpeOptions ModelOptions(JsonElement e, string path)
    {
        var type = e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type == null) throw Error(path, "missing string field 'type'");
        if (type != "BPE") throw Error(path, $"unsupported model type '{type}' (only BPE is implemented)");
        if (e.TryGetProperty("dropout", out var dropout) && !IsNull(dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() > 0)
            throw Error(path, "BPE dropout is not supported");
        return new BpeOptions(OptString(e, "unk_token", path), OptBool(e, "fuse_unk", path, false), OptBool(e, "byte_fallback", path, false),
            OptBool(e, "ignore_merges", path, false), OptString(e, "continuing_subword_prefix", path), OptString(e, "end_of_word_suffix", path));
    }

    public static BpeModel Model(JsonElement e, string path)
    {
        var options = ModelOptions(e, path);
        var vocabElement = Required(e, "vocab", path);
        if (vocabElement.ValueKind != JsonValueKind.Object) throw Error(path, "field 'vocab' must be an object of token -> id");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabElement.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out var id)) throw Error(path + ".vocab", $"id of '{p.Name}' is not an integer");
            vocab[p.Name] = id;
        }

        var merges = new List<(string, string)>();
        var i = 0;
        foreach (var m in Array(e, "merges", path))
        {
            // The path is formatted only for an error (280,147 merges in Llama 3's tokenizer).
            var index = i++;
            string mpath() => $"{path}.merges[{index}]";
            if (m.ValueKind == JsonValueKind.String)
            {
                var s = m.GetString()!;
                var space = s.IndexOf(' ');
                if (space < 0 || s.IndexOf(' ', space + 1) >= 0) throw Error(mpath(), $"merge '{s}' must be two tokens separated by one space");
                merges.Add((s[..space], s[(space + 1)..]));
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                merges.Add((m[0].GetString()!, m[1].GetString()!));
            else throw Error(mpath(), "a merge must be \"a b\" or [\"a\", \"b\"]");
        }

        return new BpeModel(vocab, merges, options);
    }
}
