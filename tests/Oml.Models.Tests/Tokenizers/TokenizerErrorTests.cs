using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Tokenizers;

/// <summary>Malformed or unsupported tokenizer.json files fail with an InvalidDataException that says what is wrong.</summary>
public class TokenizerErrorTests
{
    private const string Model = """{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}""";

    private static string Json(string model = Model, string normalizer = "null", string preTokenizer = "null", string decoder = "null", string postProcessor = "null") =>
        $$"""{"version": "1.0", "added_tokens": [], "normalizer": {{normalizer}}, "pre_tokenizer": {{preTokenizer}}, "post_processor": {{postProcessor}}, "decoder": {{decoder}}, "model": {{model}}}""";

    private static void AssertFails(string json, params string[] fragments)
    {
        var ex = Assert.Throws<InvalidDataException>(() => Tokenizer.FromJson(json));
        foreach (var f in fragments) Assert.Contains(f, ex.Message);
    }

    [Fact]
    public void MinimalTokenizerWorks()
    {
        var t = Tokenizer.FromJson(Json());
        Assert.Equal([2, 0], t.Encode("aba"));
        Assert.Equal("ab a", t.Decode([2, 0])); // no decoder: tokens joined by spaces
    }

    [Fact]
    public void MalformedJson() => AssertFails("{\"model\": {", "malformed JSON");

    [Fact]
    public void MalformedJsonFile()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "{ not json");
            var ex = Assert.Throws<InvalidDataException>(() => Tokenizer.FromFile(path));
            Assert.Contains("malformed JSON", ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void MissingModel() => AssertFails("""{"normalizer": null}""", "model");

    [Fact]
    public void UnknownModelType() => AssertFails(Json(model: """{"type": "WordPiece", "vocab": {}}"""), "model type 'WordPiece'");

    [Fact]
    public void UnknownPreTokenizerType() => AssertFails(Json(preTokenizer: """{"type": "BertPreTokenizer"}"""), "pre_tokenizer", "BertPreTokenizer");

    [Fact]
    public void UnknownPreTokenizerInsideSequence() =>
        AssertFails(Json(preTokenizer: """{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Punctuation"}]}"""), "pre_tokenizer.pretokenizers[1]", "Punctuation");

    [Fact]
    public void UnknownNormalizerType() => AssertFails(Json(normalizer: """{"type": "Precompiled", "precompiled_charsmap": ""}"""), "normalizer", "Precompiled");

    [Fact]
    public void UnknownDecoderType() => AssertFails(Json(decoder: """{"type": "WordPiece", "prefix": "##"}"""), "decoder", "WordPiece");

    [Fact]
    public void UnknownPostProcessorType() => AssertFails(Json(postProcessor: """{"type": "Mystery"}"""), "post_processor", "Mystery");

    [Fact]
    public void UnknownSplitBehavior() =>
        AssertFails(Json(preTokenizer: """{"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways", "invert": false}"""), "Sideways");

    [Fact]
    public void MergeOfUnknownToken() =>
        AssertFails(Json(model: """{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a c"]}"""), "merges[0]", "'c'");

    [Fact]
    public void MergeResultMissing() =>
        AssertFails(Json(model: """{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}"""), "merges[0]", "'ab'");

    [Fact]
    public void MalformedMerge() =>
        AssertFails(Json(model: """{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["ab"]}"""), "merges[0]");

    [Fact]
    public void NonIntegerVocabId() =>
        AssertFails(Json(model: """{"type": "BPE", "vocab": {"a": "zero"}, "merges": []}"""), "vocab", "'a'");

    [Fact]
    public void UnkTokenNotInVocabulary() =>
        AssertFails(Json(model: """{"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}"""), "unk_token", "<unk>");

    [Fact]
    public void MissingTypeField() => AssertFails(Json(normalizer: """{"prepend": "x"}"""), "normalizer", "type");

    [Fact]
    public void TruncationIsRejected() =>
        AssertFails("""{"truncation": {"max_length": 8}, "model": {"type": "BPE", "vocab": {}, "merges": []}}""", "truncation");

    [Fact]
    public void MissingFolder() => Assert.Throws<FileNotFoundException>(() => Tokenizer.FromFolder(Path.Combine(Path.GetTempPath(), "no-such-tokenizer-dir")));
}
