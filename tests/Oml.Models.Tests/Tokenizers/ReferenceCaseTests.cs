using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Tokenizers;

/// <summary>Compares encode/decode with the reference outputs of Hugging Face tokenizers 0.23.2 for every case.</summary>
public class ReferenceCaseTests
{
    private static readonly ConcurrentDictionary<string, Tokenizer> Loaded = new();

    internal static Tokenizer Load(string name) => Loaded.GetOrAdd(name, n => Tokenizer.FromFolder(Fixtures.Tokenizer(n)));

    private sealed record Case(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded, string DecodedSkipSpecial);

    private static List<Case> Cases(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.TokenizerCases(name)));
        var cases = new List<Case>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            cases.Add(new Case(c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("ids_with_special").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("decoded").GetString()!,
                c.GetProperty("decoded_skip_special").GetString()!));
        return cases;
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void AllCasesMatchReference(string name)
    {
        var tok = Load(name);
        var cases = Cases(name);
        Assert.NotEmpty(cases);
        var failures = new StringBuilder();
        var failed = 0;
        foreach (var c in cases)
        {
            var problems = new List<string>();
            var ids = tok.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids)) problems.Add($"ids: got [{string.Join(",", ids)}] expected [{string.Join(",", c.Ids)}]");
            var withSpecial = tok.Encode(c.Text, addSpecialTokens: true);
            if (!withSpecial.SequenceEqual(c.IdsWithSpecial)) problems.Add($"ids_with_special: got [{string.Join(",", withSpecial)}] expected [{string.Join(",", c.IdsWithSpecial)}]");
            var decoded = tok.Decode(c.Ids);
            if (decoded != c.Decoded) problems.Add($"decoded: got {JsonSerializer.Serialize(decoded)} expected {JsonSerializer.Serialize(c.Decoded)}");
            var skip = tok.Decode(c.Ids, skipSpecialTokens: true);
            if (skip != c.DecodedSkipSpecial) problems.Add($"decoded_skip_special: got {JsonSerializer.Serialize(skip)} expected {JsonSerializer.Serialize(c.DecodedSkipSpecial)}");
            if (problems.Count == 0) continue;
            failed++;
            failures.AppendLine($"text {JsonSerializer.Serialize(c.Text)}:");
            foreach (var p in problems) failures.AppendLine("  " + p);
        }
        Assert.True(failed == 0, $"{name}: {failed} of {cases.Count} cases differ\n{failures}");
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void BatchEncodeMatchesSingleEncode(string name)
    {
        var tok = Load(name);
        var texts = Cases(name).Select(c => c.Text).ToArray();
        var batch = tok.EncodeBatch(texts, addSpecialTokens: true);
        for (var i = 0; i < texts.Length; i++) Assert.Equal(tok.Encode(texts[i], true), batch[i]);
    }
}
