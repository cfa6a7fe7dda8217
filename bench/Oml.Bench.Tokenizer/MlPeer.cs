using System.Text.Json;
using System.Text.RegularExpressions;
using Ml = Microsoft.ML.Tokenizers;

namespace Oml.Bench.Tokenizer;

/// <summary>
/// Builds a Microsoft.ML.Tokenizers <see cref="Ml.BpeTokenizer"/> from a tokenizer.json, with the library's own
/// public pieces: the vocabulary and merges (<see cref="Ml.BpeOptions"/>), the Split regex of the pre-tokenizer as a
/// <see cref="Ml.RegexPreTokenizer"/>, ByteLevel mapping, the added tokens as special tokens, and for
/// SentencePiece-style models (normalizer Prepend ▁ + Replace ' ' → ▁) its <see cref="Ml.SentencePieceNormalizer"/>.
/// Returns null with a reason for a pipeline it has no equivalent for.
/// </summary>
internal static class MlPeer
{
    public static Ml.Tokenizer? Load(string tokenizerJsonPath, out string? why)
    {
        why = null;
        using var doc = JsonDocument.Parse(File.ReadAllText(tokenizerJsonPath));
        var root = doc.RootElement;
        var model = root.GetProperty("model");
        if (model.GetProperty("type").GetString() != "BPE") { why = "not a BPE model"; return null; }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        var merges = new List<string>();
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String) merges.Add(m.GetString()!);
            else
            {
                var pair = m.EnumerateArray().Select(x => x.GetString()!).ToArray();
                if (pair[0].Contains(' ') || pair[1].Contains(' ')) { why = "a merge contains a space"; return null; }
                merges.Add(pair[0] + " " + pair[1]);
            }
        }
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            foreach (var t in added.EnumerateArray()) special[t.GetProperty("content").GetString()!] = t.GetProperty("id").GetInt32();

        var options = new Ml.BpeOptions(vocab) { Merges = merges, SpecialTokens = special };
        if (model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String) options.UnknownToken = unk.GetString();
        if (model.TryGetProperty("fuse_unk", out var fuse) && fuse.ValueKind == JsonValueKind.True) options.FuseUnknownTokens = true;

        var normalizer = root.TryGetProperty("normalizer", out var n) && n.ValueKind == JsonValueKind.Object ? n : (JsonElement?)null;
        var pre = root.TryGetProperty("pre_tokenizer", out var pt) && pt.ValueKind == JsonValueKind.Object ? pt : (JsonElement?)null;
        string Type(JsonElement e) => e.GetProperty("type").GetString()!;

        if (pre is { } p0)
        {
            // Split(Regex, Isolated) followed by ByteLevel(use_regex false): Llama-3, Qwen2/3, GPT-4o style.
            var steps = Type(p0) == "Sequence" ? p0.GetProperty("pretokenizers").EnumerateArray().ToArray() : [p0];
            if (steps.Length != 2 || Type(steps[0]) != "Split" || Type(steps[1]) != "ByteLevel"
                || steps[0].GetProperty("behavior").GetString() != "Isolated" || steps[0].GetProperty("invert").GetBoolean()
                || !steps[0].GetProperty("pattern").TryGetProperty("Regex", out var rx)
                || steps[1].GetProperty("use_regex").GetBoolean() || steps[1].GetProperty("add_prefix_space").GetBoolean())
            { why = "pre-tokenizer is not Split(regex, Isolated) + ByteLevel"; return null; }
            options.PreTokenizer = new Ml.RegexPreTokenizer(new Regex(rx.GetString()!, RegexOptions.Compiled), special);
            options.ByteLevel = true;
            if (normalizer is { } nz)
            {
                if (Type(nz) != "NFC") { why = $"normalizer {Type(nz)} has no equivalent here"; return null; }
                options.Normalizer = new NfcNormalizer();
            }
        }
        else
        {
            // No pre-tokenizer, normalizer Prepend(▁) + Replace(' ', ▁): Llama-2 / Mistral SentencePiece-style.
            if (normalizer is not { } nz || Type(nz) != "Sequence") { why = "no pre-tokenizer and no SentencePiece-style normalizer"; return null; }
            var ns = nz.GetProperty("normalizers").EnumerateArray().Select(Type).ToArray();
            if (!ns.SequenceEqual(["Prepend", "Replace"])) { why = $"normalizer {string.Join("+", ns)} has no equivalent here"; return null; }
            // removeExtraWhiteSpaces false, addDummyPrefix true, escapeWhiteSpaces true, treatWhitespaceAsSuffix false.
            options.Normalizer = new Ml.SentencePieceNormalizer(false, true, true, false, special);
            // BpeTokenizer splits at words and punctuation when given no pre-tokenizer; one match over the whole text
            // keeps the text whole, as tokenizer.json says (SentencePiece-style BPE sees whole texts).
            options.PreTokenizer = new Ml.RegexPreTokenizer(new Regex(@"(?s).+", RegexOptions.Compiled), special);
            options.ByteLevel = false;
        }
        return Ml.BpeTokenizer.Create(options);
    }

    /// <summary>
    /// For a byte-level BPE (Split regex + ByteLevel) whose merge ranks follow token ids, as in tiktoken-born
    /// vocabularies (Llama-3), the same vocabulary as a <see cref="Ml.TiktokenTokenizer"/>: each token's bytes
    /// (the ByteLevel characters mapped back) in base64 with its id as rank, the same regex, the added tokens special.
    /// The bench checks its ids against ours like any other peer's.
    /// </summary>
    public static Ml.Tokenizer? LoadTiktoken(string tokenizerJsonPath, out string? why)
    {
        why = null;
        using var doc = JsonDocument.Parse(File.ReadAllText(tokenizerJsonPath));
        var root = doc.RootElement;
        var pre = root.TryGetProperty("pre_tokenizer", out var pt) && pt.ValueKind == JsonValueKind.Object ? pt : (JsonElement?)null;
        if (pre is not { } p0 || p0.GetProperty("type").GetString() != "Sequence") { why = "not Split + ByteLevel"; return null; }
        var steps = p0.GetProperty("pretokenizers").EnumerateArray().ToArray();
        if (steps.Length != 2 || steps[1].GetProperty("type").GetString() != "ByteLevel"
            || !steps[0].GetProperty("pattern").TryGetProperty("Regex", out var rx)) { why = "not Split + ByteLevel"; return null; }
        Ml.Normalizer? normalizer = null;
        if (root.TryGetProperty("normalizer", out var n) && n.ValueKind != JsonValueKind.Null)
        {
            if (n.GetProperty("type").GetString() != "NFC") { why = "has a normalizer other than NFC"; return null; }
            normalizer = new NfcNormalizer();
        }
        var charToByte = new Dictionary<char, byte>();
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            charToByte[printable ? (char)b : (char)next++] = (byte)b;
        }
        var sb = new System.Text.StringBuilder();
        foreach (var p in root.GetProperty("model").GetProperty("vocab").EnumerateObject())
        {
            var bytes = new byte[p.Name.Length];
            for (var i = 0; i < p.Name.Length; i++)
            {
                if (!charToByte.TryGetValue(p.Name[i], out bytes[i])) { why = $"token '{p.Name}' is not byte-level"; return null; }
            }
            sb.Append(Convert.ToBase64String(bytes)).Append(' ').Append(p.Value.GetInt32()).Append('\n');
        }
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            foreach (var t in added.EnumerateArray()) special[t.GetProperty("content").GetString()!] = t.GetProperty("id").GetInt32();
        using var stream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(sb.ToString()));
        return Ml.TiktokenTokenizer.Create(stream, new Ml.RegexPreTokenizer(new Regex(rx.GetString()!, RegexOptions.Compiled), special), normalizer, special);
    }

    private sealed class NfcNormalizer : Ml.Normalizer
    {
        public override string Normalize(string original) => original.Normalize(System.Text.NormalizationForm.FormC);
        public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(System.Text.NormalizationForm.FormC);
    }
}
