using Oml.Fingerprinting.Generation;

namespace Oml.Fingerprinting.Tests.Generation;

public class PerinucleusTests
{
    [Fact]
    public void Candidates_are_the_acceptable_tokens_right_after_the_nucleus()
    {
        // Ranked: 4 (0.4), 1 (0.3), 6 (0.1), 0 (0.08), 3 (0.05), 2 (0.04), 5 (0.03).
        float[] p = [0.08f, 0.3f, 0.04f, 0.05f, 0.4f, 0.03f, 0.1f];
        // t = 0.7: the nucleus is {4, 1}; next come 6, 0, 3, ...
        Assert.Equal([6, 0, 3], Perinucleus.Candidates(p, 0.7, 3, _ => true));
        // t = 0.75 needs 6 as well.
        Assert.Equal([0, 3], Perinucleus.Candidates(p, 0.75, 2, _ => true));
        // Unacceptable tokens are skipped, not counted.
        Assert.Equal([6, 3, 5], Perinucleus.Candidates(p, 0.7, 3, id => id != 0 && id != 2));
        // The vocabulary can run out.
        Assert.Equal([5], Perinucleus.Candidates(p, 0.95, 3, _ => true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Perinucleus.Candidates(p, 1.0, 3, _ => true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Perinucleus.Candidates(p, 0.5, 0, _ => true));
    }

    [Theory]
    [InlineData("Ġhello", true)]
    [InlineData("▁world", true)]
    [InlineData("abc123", true)]
    [InlineData("Ġa", false)]
    [InlineData(",", false)]
    [InlineData("Ġ...", false)]
    [InlineData("don't", false)]
    [InlineData(null, false)]
    public void The_token_filter_keeps_alphanumeric_tokens_longer_than_one_character(string? text, bool ok) =>
        Assert.Equal(ok, Perinucleus.IsAcceptableText(text));

    /// <summary>A byte-level vocabulary spells a newline 'Ċ' and a tab 'ĉ', both letters: such tokens passed the string
    /// filter and a 1,024-key pool of the 102.7M base got a response of two newlines, which stopped `oml prover trace`.
    /// The decoded text is checked too.</summary>
    [Fact]
    public void Tokens_that_decode_to_whitespace_are_not_acceptable()
    {
        // A byte-level BPE trained where blank lines and indentation are common merges them into tokens of 'Ċ' and 'ĉ'.
        string dir = Directory.CreateTempSubdirectory("oml-blank-tokens-").FullName;
        try
        {
            var texts = Enumerable.Range(0, 40).Select(i => $"section {i} of the manual\n\n\tindented line {i}\n\t\tdeeper text\n\n\n");
            var (vocab, merges) = Oml.Models.Tokenizers.BpeTrainer.Train(texts, 400);
            Oml.Models.Tokenizers.BpeTrainer.Save(dir, vocab, merges);
            var tok = Oml.Models.Tokenizers.Tokenizer.FromFile(Path.Combine(dir, "tokenizer.json"));
            var blanks = Enumerable.Range(0, tok.VocabSize).Where(i => tok.IdToToken(i) is { Length: > 1 } t && t.All(c => c is '\u010A' or '\u0109')).ToList();
            Assert.NotEmpty(blanks);
            Assert.All(blanks, id => Assert.True(Perinucleus.IsAcceptableText(tok.IdToToken(id)) && !Perinucleus.IsAcceptable(tok, id), tok.IdToToken(id)));
            // Ordinary word tokens stay acceptable.
            int section = Enumerable.Range(0, tok.VocabSize).First(i => tok.IdToToken(i) is "Ġsection" or "section");
            Assert.True(Perinucleus.IsAcceptable(tok, section));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>The top-k path ranks exactly as the full sort, or declines; ties and short lists included.</summary>
    [Fact]
    public void Candidates_from_the_top_tokens_equal_the_full_ranking_or_decline()
    {
        var rng = new Random(17);
        int settled = 0;
        for (int trial = 0; trial < 400; trial++)
        {
            int vocab = 50 + rng.Next(400);
            var p = new float[vocab];
            double alpha = rng.NextDouble() * 3;
            for (int i = 0; i < vocab; i++) p[i] = (float)Math.Pow(rng.NextDouble(), 1 + alpha * 4);
            // Ties: copy some values over others, including runs of equal tail values.
            for (int t = rng.Next(vocab / 4); t > 0; t--) p[rng.Next(vocab)] = p[rng.Next(vocab)];
            float sum = p.Sum();
            for (int i = 0; i < vocab; i++) p[i] /= sum;
            double threshold = 0.3 + rng.NextDouble() * 0.6;
            int width = 1 + rng.Next(4);
            int mod = 1 + rng.Next(3);
            bool Acceptable(int id) => id % mod == 0;
            var full = Perinucleus.Candidates(p, threshold, width, Acceptable);

            // The top k by value, in a shuffled order (TopK promises nothing among equals).
            int k = 1 + rng.Next(vocab);
            var top = Enumerable.Range(0, vocab).OrderByDescending(i => p[i]).ThenBy(_ => rng.Next()).Take(k).OrderBy(_ => rng.Next()).ToArray();
            var fromTop = Perinucleus.CandidatesFromTop(top.Select(i => p[i]).ToArray(), top.Select(i => (long)i).ToArray(), k == vocab, threshold, width, Acceptable);
            if (k == vocab) Assert.NotNull(fromTop);
            if (fromTop is null) continue;
            settled++;
            Assert.Equal(full, fromTop);
        }
        Assert.True(settled > 150, $"only {settled} of 400 settled from the top tokens");
    }
}

public class PerinucleusSortedTests
{
    /// <summary>
    /// The walk over a distribution sorted elsewhere (values descending, ties in any order, as an unstable device sort
    /// leaves them) gives exactly the full ranking's candidates: flat distributions, long runs of ties and zeros included.
    /// </summary>
    [Fact]
    public void Candidates_from_a_sorted_distribution_equal_the_full_ranking()
    {
        var rng = new Random(29);
        for (int trial = 0; trial < 400; trial++)
        {
            int vocab = 20 + rng.Next(600);
            var p = new float[vocab];
            int kind = trial % 3;
            for (int i = 0; i < vocab; i++)
                p[i] = kind switch
                {
                    0 => (float)Math.Pow(rng.NextDouble(), 1 + rng.NextDouble() * 8),
                    1 => 1f + rng.Next(3),        // nearly flat: long runs of equal values
                    _ => rng.Next(4) == 0 ? 0f : (float)rng.NextDouble(),
                };
            for (int t = rng.Next(vocab / 3); t > 0; t--) p[rng.Next(vocab)] = p[rng.Next(vocab)];
            float sum = p.Sum();
            for (int i = 0; i < vocab; i++) p[i] /= sum;
            double threshold = 0.05 + rng.NextDouble() * 0.9;
            int width = 1 + rng.Next(5);
            int mod = 1 + rng.Next(3);
            bool Acceptable(int id) => id % mod == 0;
            var full = Perinucleus.Candidates(p, threshold, width, Acceptable);

            // Descending by value, equal values shuffled.
            var order = Enumerable.Range(0, vocab).OrderByDescending(i => p[i]).ThenBy(_ => rng.Next()).ToArray();
            var sorted = Perinucleus.CandidatesFromSorted(order.Select(i => p[i]).ToArray(), order.Select(i => (long)i).ToArray(), threshold, width, Acceptable);
            Assert.Equal(full, sorted);
        }
    }

    [Fact]
    public void Candidates_from_a_sorted_distribution_decline_values_that_are_not_sorted()
    {
        Assert.Null(Perinucleus.CandidatesFromSorted([0.2f, 0.5f, 0.3f], [0, 1, 2], 0.5, 1, _ => true));
        Assert.Null(Perinucleus.CandidatesFromSorted([0.5f, float.NaN, 0.1f], [0, 1, 2], 0.5, 1, _ => true));
        Assert.Equal([2], Perinucleus.CandidatesFromSorted([0.5f, 0.3f, 0.2f], [1, 0, 2], 0.7, 1, _ => true)!);
    }
}
