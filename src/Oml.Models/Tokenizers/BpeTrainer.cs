using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Oml.Models.IO;

namespace Oml.Models.Tokenizers;

/// <summary>
/// Trains a byte-level BPE tokenizer (the GPT-2 / Llama-3 kind) on text and writes it as a standard
/// <c>tokenizer.json</c>: Llama-3's split regex, the byte-to-unicode map, merges learned greedily by pair frequency
/// over the distinct pre-tokens, and special tokens <c>&lt;|bos|&gt;</c>, <c>&lt;|eos|&gt;</c> and <c>&lt;|pad|&gt;</c> after
/// the learned vocabulary. Deterministic: ties between equally frequent pairs go to the lexically smallest.
/// </summary>
public static class BpeTrainer
{
    /// <summary>Llama-3's pre-tokenization pattern.</summary>
    public const string SplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static readonly string[] SpecialTokens = ["<|bos|>", "<|eos|>", "<|pad|>"];

    /// <summary>Learns merges until the vocabulary (256 bytes + merges, specials excluded) reaches <paramref name="vocabSize"/>.</summary>
    public static (List<string> Vocab, List<(string, string)> Merges) Train(IEnumerable<string> texts, int vocabSize, IProgress<int>? progress = null)
    {
        if (vocabSize < 257) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "the vocabulary must exceed the 256 byte tokens");
        var split = new Regex(SplitPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (Match m in split.Matches(text))
            {
                var bytes = Encoding.UTF8.GetBytes(m.Value);
                var mapped = new string(bytes.Select(b => ByteLevel.ByteToChar[b]).ToArray());
                counts[mapped] = counts.GetValueOrDefault(mapped) + 1;
            }

        var vocab = Enumerable.Range(0, 256).Select(b => ByteLevel.ByteToChar[b].ToString()).ToList();
        var words = counts.Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value)).ToList();
        var merges = new List<(string, string)>();
        while (vocab.Count < vocabSize)
        {
            var pairs = new Dictionary<(string, string), long>();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    var p = (symbols[i], symbols[i + 1]);
                    pairs[p] = pairs.GetValueOrDefault(p) + count;
                }
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First().Key;
            var merged = best.Item1 + best.Item2;
            merges.Add(best);
            vocab.Add(merged);
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == best.Item1 && symbols[i + 1] == best.Item2)
                    {
                        symbols[i] = merged;
                        symbols.RemoveAt(i + 1);
                    }
            progress?.Report(vocab.Count);
        }
        return (vocab, merges);
    }

    /// <summary>Writes tokenizer.json and tokenizer_config.json for a trained vocabulary into <paramref name="dir"/>.</summary>
    public static void Save(string dir, List<string> vocab, List<(string, string)> merges)
    {
        var vocabJson = new JsonObject();
        for (int i = 0; i < vocab.Count; i++) vocabJson[vocab[i]] = i;
        var added = new JsonArray();
        for (int i = 0; i < SpecialTokens.Length; i++)
            added.Add((JsonNode)new JsonObject
            {
                ["id"] = vocab.Count + i, ["content"] = SpecialTokens[i], ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = SplitPattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocabJson,
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m.Item1, m.Item2)).ToArray()),
            },
        };
        var config = new JsonObject
        {
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["bos_token"] = SpecialTokens[0],
            ["eos_token"] = SpecialTokens[1],
            ["pad_token"] = SpecialTokens[2],
            ["add_bos_token"] = false,
            ["model_max_length"] = 2048,
        };
        var opts = new JsonSerializerOptions { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        AtomicFile.WriteText(Path.Combine(dir, "tokenizer.json"), tokenizer.ToJsonString(opts));
        AtomicFile.WriteText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
