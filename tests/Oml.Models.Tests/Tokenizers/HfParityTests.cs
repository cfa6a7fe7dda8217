using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Tokenizers;

/// <summary>
/// Encodes and decodes the same few hundred varied texts with our tokenizer and with Hugging Face's (npm
/// tokenizers@0.23.2 through tests/tools/hf_encode.js): a BPE tokenizer trained here by <see cref="BpeTrainer"/>,
/// and the real llama3 and qwen3 tokenizer.json files. Needs node and the package (scripts/fetch-tokenizers.sh).
/// </summary>
public class HfParityTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-hfparity-" + Guid.NewGuid().ToString("N"));

    public HfParityTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Hand-picked edge cases: whitespace runs, digits, contractions, scripts, emoji, code, special tokens.</summary>
    private static readonly string[] EdgeCases =
    [
        "", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "a", "Hello, world!", "  leading spaces", "trailing spaces   ",
        "two  spaces   three    four", "line one\nline two\r\nline three\rfour", "ends with newline\n", "tab\tseparated\tvalues",
        "0", "12", "123", "1234", "1234567890", "3.14159", "1,000,000", "-42", "v2.0.1", "2026-11-21T07:33:07Z", "0x1F600",
        "I'm", "you're", "it's", "we'll", "they'd", "I've", "CAN'T", "DON'T", "O'Neil's", "rock 'n' roll", "'quoted'",
        "café naïve résumé", "e\u0301", "Straße", "ﬁ ligature", "Ⅻ ½ ² ³", "日本語のテキスト", "中文分词测试", "한국어 텍스트",
        "Русский текст", "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย", "\u00A0non-breaking\u00A0space", "zero\u200Bwidth",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "emoji 😀 in 🚀 text", "✓ ✗ → ← ∀ ∃ ∑",
        "def f(x):\n    return x ** 2\n", "if (a && b) { c++; }", "for i in range(10):\n\tprint(i)", "<div class=\"x\">&amp;</div>",
        "SELECT * FROM t WHERE id = 1;", "{\"key\": [1, 2, 3]}", "https://example.com/path?q=1&r=2#frag", "user@example.com",
        "$ ls -la | grep '.cs'", "a+b=c; x->y; p::q", "...", "!!!???", "—–-", "«guillemets» „quotes“",
        "<|bos|>hello<|eos|>", "text <|pad|> more", "<|bos|", "|eos|>",
    ];

    /// <summary>A deterministic mix of edge cases, English, documentation lines and random Unicode strings.</summary>
    internal static List<string> Texts()
    {
        var texts = new List<string>(EdgeCases);
        foreach (var line in DocLines().Take(200)) texts.Add(line);
        var rng = new Random(1234);
        string[] pools =
        [
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r", ".,;:!?'\"()[]{}<>-_/\\@#$%^&*+=|~`",
            "éèêëàâäôöûüçñßøåæœ", "日本語中文한국어", "🙂🚀🎉👍🏽❤️", "αβγδεζηθ", "абвгдежз",
        ];
        for (int i = 0; i < 120; i++)
        {
            var sb = new StringBuilder();
            int len = rng.Next(1, 60);
            for (int j = 0; j < len; j++)
            {
                var pool = pools[rng.Next(pools.Length)];
                // Take whole text elements so no lone surrogate is produced.
                var elements = System.Globalization.StringInfo.GetTextElementEnumerator(pool);
                var list = new List<string>();
                while (elements.MoveNext()) list.Add((string)elements.Current);
                sb.Append(list[rng.Next(list.Count)]);
            }
            texts.Add(sb.ToString());
        }
        return texts;
    }

    private static IEnumerable<string> DocLines() =>
        Directory.EnumerateFiles(Path.Combine(Fixtures.RepoRoot, "docs"), "*.md").Order(StringComparer.Ordinal)
            .Append(Path.Combine(Fixtures.RepoRoot, "README.md"))
            .SelectMany(File.ReadLines).Where(l => l.Trim().Length > 0);

    /// <summary>Training text for the small tokenizer: the repository's documentation plus the edge cases.</summary>
    private static IEnumerable<string> TrainingTexts() =>
        Directory.EnumerateFiles(Path.Combine(Fixtures.RepoRoot, "docs"), "*.md").Order(StringComparer.Ordinal)
            .Append(Path.Combine(Fixtures.RepoRoot, "README.md")).Select(File.ReadAllText).Concat(EdgeCases);

    private sealed record HfResult(int[][] Ids, string[] Decoded);

    /// <summary>Runs tests/tools/hf_encode.js; fails with install instructions when node or the package is missing.</summary>
    private HfResult RunHf(string tokenizerJson, IReadOnlyList<string> texts, IReadOnlyList<int[]> decode, bool addSpecial)
    {
        var request = new JsonObject
        {
            ["tokenizer"] = tokenizerJson,
            ["texts"] = new JsonArray(texts.Select(t => (JsonNode?)t).ToArray()),
            ["add_special_tokens"] = addSpecial,
            ["decode"] = new JsonArray(decode.Select(d => (JsonNode?)new JsonArray(d.Select(i => (JsonNode?)i).ToArray())).ToArray()),
        };
        var reqPath = Path.Combine(_dir, "request.json");
        File.WriteAllText(reqPath, request.ToJsonString());
        var script = Path.Combine(Fixtures.RepoRoot, "tests", "tools", "hf_encode.js");
        var psi = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(reqPath);
        Process proc;
        try { proc = Process.Start(psi) ?? throw new InvalidOperationException("node did not start"); }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"node is needed for the Hugging Face parity tests but could not be run ({e.Message}): " +
                        "install Node.js (apt-get install nodejs npm) and run scripts/fetch-tokenizers.sh");
            throw;
        }
        using (proc)
        {
            var stdout = proc.StandardOutput.ReadToEndAsync();
            var stderr = proc.StandardError.ReadToEndAsync();
            proc.WaitForExit();
            if (proc.ExitCode != 0)
                Assert.Fail($"tests/tools/hf_encode.js failed (exit {proc.ExitCode}): {stderr.Result.Trim()}" +
                            (proc.ExitCode == 3 ? "" : "\n(if tokenizers@0.23.2 is missing: run scripts/fetch-tokenizers.sh)"));
            using var doc = JsonDocument.Parse(stdout.Result);
            return new HfResult(
                doc.RootElement.GetProperty("ids").EnumerateArray().Select(a => a.EnumerateArray().Select(e => e.GetInt32()).ToArray()).ToArray(),
                doc.RootElement.GetProperty("decoded").EnumerateArray().Select(e => e.GetString()!).ToArray());
        }
    }

    private void AssertParity(string folder, IReadOnlyList<string> texts, bool addSpecial, bool decodesToText, bool nfc = false)
    {
        var tok = Tokenizer.FromFolder(folder);
        var ours = texts.Select(t => tok.Encode(t, addSpecial)).ToArray();
        var hf = RunHf(Path.Combine(folder, "tokenizer.json"), texts, ours, addSpecial);
        Assert.Equal(texts.Count, hf.Ids.Length);
        var mismatches = new List<string>();
        for (int i = 0; i < texts.Count; i++)
        {
            if (!ours[i].SequenceEqual(hf.Ids[i]))
                mismatches.Add($"encode {JsonSerializer.Serialize(texts[i])}: ours [{string.Join(",", ours[i])}] hf [{string.Join(",", hf.Ids[i])}]");
            var ourDecode = tok.Decode(ours[i]);
            if (hf.Decoded[i] != ourDecode)
                mismatches.Add($"decode {JsonSerializer.Serialize(texts[i])}: ours {JsonSerializer.Serialize(ourDecode)} hf {JsonSerializer.Serialize(hf.Decoded[i])}");
            if (decodesToText && hf.Decoded[i] != (nfc ? UnicodeNormalization.Normalize(texts[i], compose: true) : texts[i]))
                mismatches.Add($"round trip {JsonSerializer.Serialize(texts[i])}: hf decoded {JsonSerializer.Serialize(hf.Decoded[i])}");
        }
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} mismatches of {texts.Count} texts:\n" + string.Join("\n", mismatches.Take(20)));
    }

    [Fact]
    public void Trained_tokenizer_encodes_and_decodes_like_hugging_face()
    {
        var (vocab, merges) = BpeTrainer.Train(TrainingTexts(), 1200, minFrequency: 2);
        Assert.True(merges.Count > 500, $"only {merges.Count} merges learned");
        BpeTrainer.Save(_dir, vocab, merges);
        var texts = Texts();
        Assert.True(texts.Count >= 300, $"only {texts.Count} texts");
        AssertParity(_dir, texts, addSpecial: false, decodesToText: true);
    }

    [Theory]
    [InlineData("llama3", false, false)]
    [InlineData("llama3", true, false)]
    [InlineData("qwen3", false, true)]
    [InlineData("qwen3", true, true)]
    public void Pretrained_tokenizers_match_hugging_face_on_the_same_texts(string name, bool addSpecial, bool nfcNormalizer) =>
        // Byte-level BPE decodes back to the input (NFC-normalised for qwen3, whose normalizer is NFC), so the round
        // trip is checked too (not with BOS added: the decoded text then starts with it).
        AssertParity(Fixtures.Tokenizer(name), Texts(), addSpecial, decodesToText: !addSpecial, nfc: nfcNormalizer);
}
