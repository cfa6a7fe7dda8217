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
    public static (List<string> Vocab, List<(string, string)> Merges) Train(IEnumerable<string> texts, int vocabSize, IProgress<int>? progress = null) =>
        Train(texts, vocabSize, minFrequency: 1, progress);

    /// <summary>
    /// Learns merges until the vocabulary (256 bytes + merges, specials excluded) reaches <paramref name="vocabSize"/>
    /// or no pair occurs at least <paramref name="minFrequency"/> times. Pre-tokens are counted in parallel; merges
    /// are found with a priority queue of pair counts that each merge updates only for the words containing the pair
    /// (so a merge costs time in proportion to those words, not to the whole corpus).
    /// </summary>
    public static (List<string> Vocab, List<(string, string)> Merges) Train(IEnumerable<string> texts, int vocabSize, long minFrequency, IProgress<int>? progress = null)
    {
        if (vocabSize < 257) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "the vocabulary must exceed the 256 byte tokens");
        if (minFrequency < 1) throw new ArgumentOutOfRangeException(nameof(minFrequency), minFrequency, "must be at least 1");
        var counts = CountPreTokens(texts);

        var vocab = Enumerable.Range(0, 256).Select(b => ByteLevel.ByteToChar[b].ToString()).ToList();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < vocab.Count; i++) ids[vocab[i]] = i;
        // Words as symbol ids, in a fixed (ordinal) order so that training is deterministic.
        var keys = counts.Keys.Order(StringComparer.Ordinal).ToArray();
        var words = new int[keys.Length][];
        var wordLen = new int[keys.Length];
        var wordCount = new long[keys.Length];
        for (int w = 0; w < keys.Length; w++)
        {
            var bytes = Encoding.UTF8.GetBytes(keys[w]);
            words[w] = bytes.Select(b => (int)b).ToArray();
            wordLen[w] = bytes.Length;
            wordCount[w] = counts[keys[w]];
        }
        counts.Clear();

        var pairCount = new Dictionary<long, long>();
        var pairWords = new Dictionary<long, List<int>>();
        for (int w = 0; w < words.Length; w++)
            for (int i = 0; i + 1 < wordLen[w]; i++)
            {
                long p = Key(words[w][i], words[w][i + 1]);
                pairCount[p] = pairCount.GetValueOrDefault(p) + wordCount[w];
                AddWord(pairWords, p, w);
            }
        // Highest count first; ties to the lexically smallest (left, right) token strings.
        var queue = new PriorityQueue<long, (long Count, long Pair)>(Comparer<(long Count, long Pair)>.Create((a, b) =>
        {
            if (a.Count != b.Count) return b.Count.CompareTo(a.Count);
            int c = string.CompareOrdinal(vocab[(int)(a.Pair >> 32)], vocab[(int)(b.Pair >> 32)]);
            return c != 0 ? c : string.CompareOrdinal(vocab[(int)(a.Pair & 0xFFFFFFFF)], vocab[(int)(b.Pair & 0xFFFFFFFF)]);
        }));
        foreach (var (p, c) in pairCount) queue.Enqueue(p, (c, p));

        var merges = new List<(string, string)>();
        var changed = new HashSet<long>();
        while (vocab.Count < vocabSize && queue.TryDequeue(out long best, out var prio))
        {
            // Entries go stale as counts change; the current count was queued again when it changed.
            if (pairCount.GetValueOrDefault(best) != prio.Count || prio.Count == 0) continue;
            if (prio.Count < minFrequency) break;
            int a = (int)(best >> 32), b = (int)(best & 0xFFFFFFFF);
            var merged = vocab[a] + vocab[b];
            if (!ids.TryGetValue(merged, out int m))
            {
                m = vocab.Count;
                vocab.Add(merged);
                ids[merged] = m;
            }
            merges.Add((vocab[a], vocab[b]));
            changed.Clear();
            foreach (int w in pairWords[best])
            {
                var sym = words[w];
                int len = wordLen[w];
                long c = wordCount[w];
                bool has = false;
                for (int i = 0; i + 1 < len; i++) if (sym[i] == a && sym[i + 1] == b) { has = true; break; }
                if (!has) continue; // a stale index entry
                for (int i = 0; i + 1 < len; i++) Bump(pairCount, changed, Key(sym[i], sym[i + 1]), -c);
                int o = 0;
                for (int i = 0; i < len; i++)
                {
                    if (i + 1 < len && sym[i] == a && sym[i + 1] == b) { sym[o++] = m; i++; }
                    else sym[o++] = sym[i];
                }
                wordLen[w] = len = o;
                for (int i = 0; i + 1 < len; i++)
                {
                    long p = Key(sym[i], sym[i + 1]);
                    Bump(pairCount, changed, p, c);
                    if (sym[i] == m || sym[i + 1] == m) AddWord(pairWords, p, w);
                }
            }
            pairWords.Remove(best);
            foreach (var p in changed)
            {
                long c = pairCount.GetValueOrDefault(p);
                if (c > 0) queue.Enqueue(p, (c, p));
                else { pairCount.Remove(p); }
            }
            progress?.Report(vocab.Count);
        }
        return (vocab, merges);
    }

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    private static void Bump(Dictionary<long, long> counts, HashSet<long> changed, long pair, long delta)
    {
        counts[pair] = counts.GetValueOrDefault(pair) + delta;
        changed.Add(pair);
    }

    private static void AddWord(Dictionary<long, List<int>> index, long pair, int word)
    {
        if (!index.TryGetValue(pair, out var list)) index[pair] = list = [];
        if (list.Count == 0 || list[^1] != word) list.Add(word);
    }

    /// <summary>Counts the pre-tokens (as UTF-8 text) of all texts, splitting the work over the CPU cores.</summary>
    private static Dictionary<string, long> CountPreTokens(IEnumerable<string> texts)
    {
        var total = new Dictionary<string, long>(StringComparer.Ordinal);
        var gate = new object();
        var options = new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount };
        Parallel.ForEach(Batches(texts, 1 << 20), options,
            () => new Dictionary<string, long>(StringComparer.Ordinal),
            (batch, _, local) =>
            {
                var lookup = local.GetAlternateLookup<ReadOnlySpan<char>>();
                foreach (var text in batch)
                    foreach (var m in Split.EnumerateMatches(text))
                    {
                        var span = text.AsSpan(m.Index, m.Length);
                        if (lookup.TryGetValue(span, out long c)) lookup[span] = c + 1;
                        else lookup[span] = 1;
                    }
                return local;
            },
            local =>
            {
                lock (gate)
                    foreach (var (k, v) in local) total[k] = total.GetValueOrDefault(k) + v;
            });
        return total;
    }

    private static readonly Regex Split = new(SplitPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    /// <summary>Groups texts into batches of about <paramref name="chars"/> characters.</summary>
    private static IEnumerable<List<string>> Batches(IEnumerable<string> texts, int chars)
    {
        var batch = new List<string>();
        long size = 0;
        foreach (var t in texts)
        {
            batch.Add(t);
            size += t.Length;
            if (size >= chars)
            {
                yield return batch;
                batch = [];
                size = 0;
            }
        }
        if (batch.Count > 0) yield return batch;
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
