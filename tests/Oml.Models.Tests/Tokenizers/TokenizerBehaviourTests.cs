using System.Text.Json;
using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Tokenizers;

/// <summary>Behaviour on small hand-written tokenizer.json files and properties of the real tokenizers.</summary>
public class TokenizerBehaviourTests
{
    // A tiny byte-level BPE: vocab of the byte characters needed plus a few merges.
    private static string ByteLevelJson(string merges, string addedTokens = "[]", string extra = "", string normalizer = "null") => $$"""
    {
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": {{addedTokens}},
      "normalizer": {{normalizer}},
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": " ?\\p{L}+|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
      "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
      "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": false {{extra}},
        "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "abc": 5, "Ġa": 6, "bc": 7, "<x>": 8},
        "merges": {{merges}}}
    }
    """;

    [Fact]
    public void MergesAsStringsAndAsPairsAgree()
    {
        var a = Tokenizer.FromJson(ByteLevelJson("""["a b", "ab c", "Ġ a", "b c"]"""));
        var b = Tokenizer.FromJson(ByteLevelJson("""[["a", "b"], ["ab", "c"], ["Ġ", "a"], ["b", "c"]]"""));
        // " abc": Ġ a b c -> Ġ ab c ("a b" ranks first) -> Ġ abc; "Ġ a" never gets a chance.
        Assert.Equal([5, 3, 5], a.Encode("abc abc"));
        Assert.Equal(a.Encode("abc abc"), b.Encode("abc abc"));
        Assert.Equal("abc abc", a.Decode([5, 3, 5]));
        Assert.Equal(" abc", a.Decode([6, 7]));
    }

    [Fact]
    public void LowerRankMergeWins()
    {
        // "b c" ranks before "a b": abc -> a + bc, and no merge makes "abc" from those.
        var t = Tokenizer.FromJson(ByteLevelJson("""["b c", "a b", "ab c"]"""));
        Assert.Equal([0, 7], t.Encode("abc"));
    }

    [Fact]
    public void IgnoreMergesEmitsWholeWordsThatAreInTheVocabulary()
    {
        // Without merges "abc" stays three bytes; with ignore_merges the whole word is one token.
        Assert.Equal([0, 1, 2], Tokenizer.FromJson(ByteLevelJson("[]")).Encode("abc"));
        Assert.Equal([5], Tokenizer.FromJson(ByteLevelJson("[]", extra: ", \"ignore_merges\": true")).Encode("abc"));
    }

    [Fact]
    public void AddedTokensHonourLstripRstripAndSingleWord()
    {
        var strip = Tokenizer.FromJson(ByteLevelJson("""["a b"]""",
            """[{"id": 8, "content": "<x>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": true}]"""));
        Assert.Equal([4, 8, 4], strip.Encode("ab  <x>  ab"));
        Assert.Equal("ab<x>ab", strip.Decode([4, 8, 4]));
        Assert.Equal("abab", strip.Decode([4, 8, 4], skipSpecialTokens: true));

        var single = Tokenizer.FromJson(ByteLevelJson("""["a b"]""",
            """[{"id": 8, "content": "<x>", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false}]"""));
        Assert.DoesNotContain(8, single.Encode("ab<x>")); // glued to a word: not the added token
        Assert.Contains(8, single.Encode("<x>"));
    }

    [Fact]
    public void NormalizedAddedTokensMatchTheNormalizedText()
    {
        var t = Tokenizer.FromJson(ByteLevelJson("""["a b"]""",
            """[{"id": 8, "content": "<X>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}]""",
            normalizer: """{"type": "Lowercase"}"""));
        Assert.Equal([4, 8, 4], t.Encode("AB<X>ab"));
        Assert.Equal([4, 8, 4], t.Encode("ab<x>ab"));
    }

    [Fact]
    public void NfcNormalizerComposes()
    {
        var qwen = ReferenceCaseTests.Load("qwen3");
        Assert.Equal(qwen.Encode("caf\u00e9"), qwen.Encode("cafe\u0301"));
        Assert.Equal(qwen.Encode("\uD55C\uAE00"), qwen.Encode("\u1112\u1161\u11AB\u1100\u1173\u11AF")); // Hangul jamo compose
    }

    [Theory]
    [InlineData("cafe\u0301", "caf\u00e9")]
    [InlineData("A\u030A", "\u00C5")]
    [InlineData("\u212B", "\u00C5")] // Angstrom sign: singleton decomposition
    [InlineData("a\u0323\u0302", "\u1EAD")] // reordered marks compose
    [InlineData("a\u0302\u0323", "\u1EAD")]
    [InlineData("\u1112\u1161\u11AB", "\uD55C")]
    [InlineData("q\u0307\u0323", "q\u0323\u0307")] // no composite: canonical order only
    [InlineData("\u0958", "\u0915\u093C")] // composition exclusion
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("\uD83D\uDE00 \uD800x", "\uD83D\uDE00 \uD800x")] // emoji and a lone surrogate pass through
    public void Nfc(string input, string expected) => Assert.Equal(expected, UnicodeNormalization.Normalize(input, compose: true));

    [Theory]
    [InlineData("\u00C5", "A\u030A")]
    [InlineData("\uD55C", "\u1112\u1161\u11AB")]
    [InlineData("\u1EAD", "a\u0323\u0302")]
    public void Nfd(string input, string expected) => Assert.Equal(expected, UnicodeNormalization.Normalize(input, compose: false));

    [Fact]
    public void RealTokenizerProperties()
    {
        var llama2 = ReferenceCaseTests.Load("llama2");
        Assert.Equal(32000, llama2.VocabSize);
        Assert.Equal(1, llama2.BosTokenId);
        Assert.Equal(2, llama2.EosTokenId);
        Assert.Null(llama2.PadTokenId);
        Assert.Equal(true, llama2.AddBosToken);
        Assert.Equal("<0x0A>", llama2.IdToToken(13));

        var llama3 = ReferenceCaseTests.Load("llama3");
        Assert.Equal(128256, llama3.VocabSize);
        Assert.Equal(128000, llama3.BosTokenId);
        Assert.Equal(128001, llama3.EosTokenId);
        Assert.Equal(128000, llama3.TokenToId("<|begin_of_text|>"));
        Assert.Null(llama3.TokenToId("no such token"));
        Assert.Null(llama3.IdToToken(-1));
        Assert.Null(llama3.IdToToken(1 << 20));

        var qwen = ReferenceCaseTests.Load("qwen3");
        Assert.Equal(151669, qwen.VocabSize);
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(151645, qwen.EosTokenId);
        Assert.Equal(151643, qwen.PadTokenId);
        Assert.False(qwen.IsSpecialToken(151668)); // </think> is added but not special
        Assert.Equal([151644], qwen.Encode("<|im_start|>"));
    }

    [Fact]
    public void PlainTokenizerJsonUsesItsOwnNormalizerForLlama2()
    {
        // Without tokenizer_config.json the tokenizer.json pipeline (Prepend + Replace normalizers) is used as tokenizers does:
        // a leading space gives "▁▁".
        var t = Tokenizer.FromFile(Path.Combine(Fixtures.Tokenizer("llama2"), "tokenizer.json"));
        var ids = t.Encode(" Hello");
        Assert.Equal("\u2581", t.IdToToken(ids[0]));
        Assert.Equal(t.Encode("Hello"), ids[1..]);
        Assert.Equal([1, .. t.Encode("Hello")], t.Encode("Hello", addSpecialTokens: true));
    }

    [Fact]
    public void ByteFallbackAndUnknownCharacters()
    {
        var llama2 = ReferenceCaseTests.Load("llama2");
        // U+10FFFD (private use) is not in the vocabulary: four byte tokens, decoded back to the character.
        var ids = llama2.Encode("\U0010FFFD");
        Assert.Equal(["\u2581", "<0xF4>", "<0x8F>", "<0xBF>", "<0xBD>"], ids.Select(i => llama2.IdToToken(i)!).ToArray());
        Assert.Equal("\U0010FFFD", llama2.Decode(ids));
        // A lone continuation byte is invalid UTF-8: one U+FFFD per byte.
        Assert.Equal("\uFFFD", llama2.Decode([llama2.TokenToId("<0x8F>")!.Value]));
    }
}

/// <summary>NFC/NFD against Python's unicodedata on random strings of Latin, combining marks, Hangul, Indic and Tibetan
/// (fixtures/tokenizers/nfc-cases.json, made with unicodedata.normalize).</summary>
public class UnicodeNormalizationTests
{
    [Fact]
    public void MatchesPythonUnicodedata()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir, "tokenizers", "nfc-cases.json")));
        var failures = new List<string>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            var text = c.GetProperty("text").GetString()!;
            var nfc = UnicodeNormalization.Normalize(text, compose: true);
            var nfd = UnicodeNormalization.Normalize(text, compose: false);
            if (nfc != c.GetProperty("nfc").GetString()) failures.Add($"NFC {JsonSerializer.Serialize(text)} -> {JsonSerializer.Serialize(nfc)}");
            if (nfd != c.GetProperty("nfd").GetString()) failures.Add($"NFD {JsonSerializer.Serialize(text)} -> {JsonSerializer.Serialize(nfd)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
