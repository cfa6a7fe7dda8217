using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Oml.Models.Tokenizers;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> tokenizer (BPE models: byte-level as in Llama-3 and Qwen, SentencePiece-style
/// with byte fallback as in Llama-2 and Mistral), giving the same ids and text as the <c>tokenizers</c> library.
/// Thread-safe: one instance may encode from many threads.
/// </summary>
/// <remarks>
/// When a tokenizer_config.json names <c>LlamaTokenizer</c>/<c>LlamaTokenizerFast</c>, the pipeline is the one
/// transformers (5.x) builds for that class instead of the one in tokenizer.json: no normalizer, a Metaspace
/// pre-tokenizer (prepend scheme from <c>legacy</c>/<c>add_prefix_space</c>) and BOS/EOS from
/// <c>add_bos_token</c>/<c>add_eos_token</c>. This only changes texts that start with a space.
/// </remarks>
public sealed class Tokenizer
{
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly bool _mapBytes; // the last pre-tokenizer is ByteLevel: map each piece's bytes before the model
    private readonly BpeModel _model;
    private readonly PostProcessor? _postProcessor;
    private readonly Decoder? _decoder;
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;
    private readonly string?[] _idToToken;
    private readonly bool[] _isSpecial;
    private readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);

    private Tokenizer(JsonElement root, JsonElement? config)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException("tokenizer.json: the top level must be an object");
        foreach (var name in new[] { "truncation", "padding" })
            if (root.TryGetProperty(name, out var v) && !TokenizerJson.IsNull(v))
                throw TokenizerJson.Error(name, $"{name} is not supported (it must be null)");

        _model = TokenizerJson.Model(TokenizerJson.Required(root, "model", "(root)"), "model");
        _normalizer = root.TryGetProperty("normalizer", out var n) ? TokenizerJson.Normalizer(n, "normalizer") : null;
        _preTokenizer = root.TryGetProperty("pre_tokenizer", out var pt) ? TokenizerJson.PreTokenizer(pt, "pre_tokenizer") : null;
        _decoder = root.TryGetProperty("decoder", out var d) ? TokenizerJson.Decoder(d, "decoder") : null;

        // Added tokens.
        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out var at) && !TokenizerJson.IsNull(at))
        {
            var i = 0;
            foreach (var t in TokenizerJson.Array(root, "added_tokens", "(root)"))
            {
                var path = $"added_tokens[{i++}]";
                var id = TokenizerJson.Required(t, "id", path);
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out var idValue) || idValue < 0) throw TokenizerJson.Error(path, "id must be a non-negative integer");
                var content = TokenizerJson.ReqString(t, "content", path);
                if (content.Length == 0) throw TokenizerJson.Error(path, "content is empty");
                added.Add(new AddedToken(idValue, content, TokenizerJson.OptBool(t, "single_word", path, false), TokenizerJson.OptBool(t, "lstrip", path, false),
                    TokenizerJson.OptBool(t, "rstrip", path, false), TokenizerJson.OptBool(t, "normalized", path, false), TokenizerJson.OptBool(t, "special", path, false)));
            }
        }
        AddedTokens = added;
        var maxId = _model.IdToToken.Length - 1;
        foreach (var t in added) maxId = Math.Max(maxId, t.Id);
        _idToToken = new string?[maxId + 1];
        _model.IdToToken.CopyTo(_idToToken, 0);
        _isSpecial = new bool[maxId + 1];
        foreach (var t in added)
        {
            _idToToken[t.Id] = t.Content;
            _addedByContent[t.Content] = t.Id;
            if (t.Special) _isSpecial[t.Id] = true;
        }
        VocabSize = _idToToken.Count(t => t != null);

        _postProcessor = root.TryGetProperty("post_processor", out var pp) ? TokenizerJson.PostProcessor(pp, "post_processor", TokenToId) : null;

        if (config is { } cfg)
        {
            if (cfg.ValueKind != JsonValueKind.Object) throw new InvalidDataException("tokenizer_config.json: the top level must be an object");
            BosToken = ConfigToken(cfg, "bos_token");
            EosToken = ConfigToken(cfg, "eos_token");
            PadToken = ConfigToken(cfg, "pad_token");
            UnkToken = ConfigToken(cfg, "unk_token");
            AddBosToken = ConfigBool(cfg, "add_bos_token");
            AddEosToken = ConfigBool(cfg, "add_eos_token");
            var cls = cfg.TryGetProperty("tokenizer_class", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            if (cls is "LlamaTokenizer" or "LlamaTokenizerFast")
            {
                // transformers 5 builds this pipeline for the Llama tokenizer class, whatever tokenizer.json says.
                var addPrefixSpace = ConfigBool(cfg, "add_prefix_space") ?? true;
                var legacy = ConfigBool(cfg, "legacy") ?? false;
                _normalizer = null;
                _preTokenizer = new MetaspacePreTokenizer('\u2581', !addPrefixSpace ? PrependScheme.Never : legacy ? PrependScheme.Always : PrependScheme.First, split: false);
                var decoders = new List<Decoder> { new ReplaceDecoder("\u2581", null, " "), new ByteFallbackDecoder(), new FuseDecoder() };
                if (addPrefixSpace) decoders.Add(new StripDecoder(" ", 1, 0));
                _decoder = new SequenceDecoder(decoders.ToArray());
                var before = AddBosToken ?? true ? Ids(BosToken, "bos_token") : [];
                var after = AddEosToken ?? false ? Ids(EosToken, "eos_token") : [];
                _postProcessor = new TemplatePostProcessor(before, after);
            }
        }

        // Added tokens are found in the raw text, or (normalized: true) in the normalized text, their content normalized too.
        _rawMatcher = new AddedTokenMatcher(added.Where(t => !t.Normalized));
        var normalizer = _normalizer;
        _normalizedMatcher = new AddedTokenMatcher(added.Where(t => t.Normalized).Select(t => normalizer == null ? t : t with { Content = normalizer.Normalize(t.Content) }));

        // A trailing ByteLevel pre-tokenizer maps bytes lazily, into a stack buffer (see EncodeSegment).
        switch (_preTokenizer)
        {
            case ByteLevelPreTokenizer bl:
                bl.MapBytes = false;
                _mapBytes = true;
                break;
            case SequencePreTokenizer { Steps.Length: > 0 } seq when seq.Steps[^1] is ByteLevelPreTokenizer last:
                last.MapBytes = false;
                _mapBytes = true;
                break;
        }
    }

    private int[] Ids(string? token, string field)
    {
        if (token == null) return [];
        return TokenToId(token) is { } id ? [id] : throw new InvalidDataException($"tokenizer_config.json: {field} '{token}' is not in the vocabulary");
    }

    private static string? ConfigToken(JsonElement cfg, string name)
    {
        if (!cfg.TryGetProperty(name, out var v) || TokenizerJson.IsNull(v)) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) return c.GetString();
        throw new InvalidDataException($"tokenizer_config.json: {name} must be a string or an object with 'content'");
    }

    private static bool? ConfigBool(JsonElement cfg, string name)
    {
        if (!cfg.TryGetProperty(name, out var v) || TokenizerJson.IsNull(v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"tokenizer_config.json: {name} must be a boolean"),
        };
    }

    /// <summary>Reads a tokenizer.json file, and optionally its tokenizer_config.json.</summary>
    public static Tokenizer FromFile(string tokenizerJsonPath, string? tokenizerConfigPath = null)
    {
        using var doc = Parse(tokenizerJsonPath, "tokenizer.json");
        using var cfg = tokenizerConfigPath == null ? null : Parse(tokenizerConfigPath, "tokenizer_config.json");
        return new Tokenizer(doc.RootElement, cfg?.RootElement);
    }

    /// <summary>Reads tokenizer.json from a model folder, with tokenizer_config.json when the folder has one.</summary>
    public static Tokenizer FromFolder(string directory)
    {
        var json = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(json)) throw new FileNotFoundException($"no tokenizer.json in {directory}", json);
        var config = Path.Combine(directory, "tokenizer_config.json");
        return FromFile(json, File.Exists(config) ? config : null);
    }

    /// <summary>Builds a tokenizer from the text of a tokenizer.json (and optionally of a tokenizer_config.json).</summary>
    public static Tokenizer FromJson(string tokenizerJson, string? tokenizerConfigJson = null)
    {
        using var doc = ParseText(tokenizerJson, "tokenizer.json");
        using var cfg = tokenizerConfigJson == null ? null : ParseText(tokenizerConfigJson, "tokenizer_config.json");
        return new Tokenizer(doc.RootElement, cfg?.RootElement);
    }

    private static JsonDocument Parse(string path, string what)
    {
        using var stream = File.OpenRead(path);
        try
        {
            return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{what}: malformed JSON in {path}: {ex.Message}", ex);
        }
    }

    private static JsonDocument ParseText(string text, string what)
    {
        try
        {
            return JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{what}: malformed JSON: {ex.Message}", ex);
        }
    }

    /// <summary>Number of distinct ids: the model's vocabulary and the added tokens.</summary>
    public int VocabSize { get; }

    public IReadOnlyList<AddedToken> AddedTokens { get; }

    public string? BosToken { get; }
    public string? EosToken { get; }
    public string? PadToken { get; }
    public string? UnkToken { get; }
    public bool? AddBosToken { get; }
    public bool? AddEosToken { get; }

    public int? BosTokenId => BosToken == null ? null : TokenToId(BosToken);
    public int? EosTokenId => EosToken == null ? null : TokenToId(EosToken);
    public int? PadTokenId => PadToken == null ? null : TokenToId(PadToken);

    public int? TokenToId(string token)
    {
        if (_addedByContent.TryGetValue(token, out var id)) return id;
        return _model.TryGetId(token, out id) ? id : null;
    }

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    public bool IsSpecialToken(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    /// <summary>Encodes text; with <paramref name="addSpecialTokens"/> the post-processor adds its tokens (e.g. BOS).</summary>
    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        var segments = new List<(int Start, int Length, int Id)>();
        var pieces = new List<Piece>();
        if (_rawMatcher.IsEmpty) segments.Add((0, text.Length, -1));
        else _rawMatcher.Split(text, 0, text.Length, segments);
        foreach (var (start, length, id) in segments)
        {
            if (id >= 0) { ids.Add(id); continue; }
            if (length == 0) continue;
            var segment = start == 0 && length == text.Length ? text : text.Substring(start, length);
            var normalized = _normalizer?.Normalize(segment) ?? segment;
            if (_normalizedMatcher.IsEmpty)
                EncodeSegment(new Piece(normalized, 0, normalized.Length, start == 0), ids, pieces);
            else
            {
                var inner = new List<(int Start, int Length, int Id)>();
                _normalizedMatcher.Split(normalized, 0, normalized.Length, inner);
                foreach (var (s, l, innerId) in inner)
                {
                    if (innerId >= 0) ids.Add(innerId);
                    else EncodeSegment(new Piece(normalized, s, l, start == 0 && s == 0), ids, pieces);
                }
            }
        }
        _postProcessor?.Process(ids, addSpecialTokens);
        return ids.ToArray();
    }

    /// <summary>Encodes many texts in parallel.</summary>
    public int[][] EncodeBatch(IReadOnlyList<string> texts, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var result = new int[texts.Count][];
        Parallel.For(0, texts.Count, i => result[i] = Encode(texts[i], addSpecialTokens));
        return result;
    }

    private void EncodeSegment(Piece segment, List<int> ids, List<Piece> pieces)
    {
        if (segment.Length == 0) return;
        pieces.Clear();
        if (_preTokenizer == null) pieces.Add(segment);
        else _preTokenizer.Split(segment, pieces);
        Span<byte> stackBytes = stackalloc byte[512];
        Span<char> stackChars = stackalloc char[512];
        foreach (var piece in pieces)
        {
            if (!_mapBytes)
            {
                _model.Encode(piece.Span, ids);
                continue;
            }
            var span = piece.Span;
            var maxBytes = span.Length * 3;
            byte[]? rentedBytes = null;
            char[]? rentedChars = null;
            var bytes = maxBytes <= stackBytes.Length ? stackBytes : (rentedBytes = ArrayPool<byte>.Shared.Rent(maxBytes));
            var chars = maxBytes <= stackChars.Length ? stackChars : (rentedChars = ArrayPool<char>.Shared.Rent(maxBytes));
            var count = Encoding.UTF8.GetBytes(span, bytes);
            var table = ByteLevel.ByteToChar;
            for (var i = 0; i < count; i++) chars[i] = table[bytes[i]];
            _model.Encode(chars[..count], ids);
            if (rentedBytes != null) ArrayPool<byte>.Shared.Return(rentedBytes);
            if (rentedChars != null) ArrayPool<char>.Shared.Return(rentedChars);
        }
    }

    /// <summary>Decodes ids to text; ids that name no token are skipped, as tokenizers does.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (var id in ids)
        {
            var token = IdToToken(id);
            if (token == null) continue;
            if (skipSpecialTokens && _isSpecial[id]) continue;
            tokens.Add(token);
        }
        if (_decoder == null) return string.Join(' ', tokens);
        return string.Concat(_decoder.DecodeChain(tokens));
    }
}
