using System.Text;
using System.Text.RegularExpressions;
using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Tokenizers;

public class BpeTrainerTests
{
    /// <summary>The textbook algorithm: recount every pair after each merge, take the most frequent (ties: smallest strings).</summary>
    private static List<(string, string)> NaiveMerges(IEnumerable<string> texts, int vocabSize, long minFrequency)
    {
        var split = new Regex(BpeTrainer.SplitPattern);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var t in texts)
            foreach (Match m in split.Matches(t))
            {
                var mapped = new string(Encoding.UTF8.GetBytes(m.Value).Select(b => ByteLevel.ByteToChar[b]).ToArray());
                counts[mapped] = counts.GetValueOrDefault(mapped) + 1;
            }
        var words = counts.Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value)).ToList();
        var vocab = new HashSet<string>(Enumerable.Range(0, 256).Select(b => ByteLevel.ByteToChar[b].ToString()));
        var merges = new List<(string, string)>();
        while (vocab.Count < vocabSize)
        {
            var pairs = new Dictionary<(string, string), long>();
            foreach (var (s, c) in words)
                for (int i = 0; i + 1 < s.Count; i++) pairs[(s[i], s[i + 1])] = pairs.GetValueOrDefault((s[i], s[i + 1])) + c;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal)
                .ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < minFrequency) break;
            merges.Add(best.Key);
            vocab.Add(best.Key.Item1 + best.Key.Item2);
            foreach (var (s, _) in words)
                for (int i = 0; i + 1 < s.Count; i++)
                    if (s[i] == best.Key.Item1 && s[i + 1] == best.Key.Item2) { s[i] += s[i + 1]; s.RemoveAt(i + 1); }
        }
        return merges;
    }

    private static readonly string[] Texts =
    [
        "the cat sat on the mat; the cat ate the rat. aaaa aaa aa a bbbbbb",
        "Hello hello HELLO, 1234567 12 123 — naïve café ☕ 日本語 日本",
        "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))  # 3",
        "banana bandana ananas nana anna ana",
    ];

    [Theory]
    [InlineData(400, 1)]
    [InlineData(330, 2)]
    [InlineData(1000, 3)]
    public void Incremental_trainer_learns_the_same_merges_as_the_naive_algorithm(int vocabSize, long minFrequency)
    {
        var (vocab, merges) = BpeTrainer.Train(Texts, vocabSize, minFrequency);
        var expected = NaiveMerges(Texts, vocabSize, minFrequency);
        Assert.Equal(expected, merges);
        Assert.Equal(vocab.Count, vocab.Distinct().Count());
        Assert.True(vocab.Count <= vocabSize);
    }

    [Fact]
    public void Min_frequency_stops_training()
    {
        // Pre-tokens "ab", " ab", " ab", " cd": (a,b) occurs 3 times, then (Ġ,ab) twice, every other pair once.
        Assert.Equal([("a", "b"), ("Ġ", "ab")], BpeTrainer.Train(["ab ab ab cd"], 1000, minFrequency: 2).Merges);
        Assert.Equal([("a", "b")], BpeTrainer.Train(["ab ab ab cd"], 1000, minFrequency: 3).Merges);
        Assert.Throws<ArgumentOutOfRangeException>(() => BpeTrainer.Train(["x"], 1000, minFrequency: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => BpeTrainer.Train(["x"], 256));
    }
}
