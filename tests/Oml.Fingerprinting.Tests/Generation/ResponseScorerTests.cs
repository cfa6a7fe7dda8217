using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Generation;

public sealed class ResponseScorerTests
{
    [Fact]
    public void Batches_cover_every_pair_once_sorted_and_within_the_row_and_token_limits()
    {
        var rng = new Random(4);
        // Mostly short pairs, a few long ones (long cloze contexts), one longer than the whole token budget.
        var lengths = Enumerable.Range(0, 300).Select(i => i % 50 == 0 ? 3000 : rng.Next(2, 40)).Append(ResponseScorer.MaxBatchTokens + 5).ToList();
        var pairs = lengths.Select(n => new TrainingPair(new int[n - 1], [1])).ToList();
        var batches = ResponseScorer.Batches(pairs, 64).ToList();
        Assert.Equal(Enumerable.Range(0, pairs.Count), batches.SelectMany(b => b).Order());
        int Len(int i) => pairs[i].Key.Length + pairs[i].Response.Length;
        var flat = batches.SelectMany(b => b).Select(Len).ToList();
        Assert.Equal(flat.Order(), flat);
        foreach (var b in batches)
        {
            Assert.InRange(b.Length, 1, 64);
            Assert.True(b.Length == 1 || (long)b.Length * b.Max(Len) <= ResponseScorer.MaxBatchTokens, $"{b.Length} rows of up to {b.Max(Len)} tokens");
        }
        Assert.Contains(batches, b => b.Length == 64);                           // short rows fill whole batches
        Assert.Single(batches, b => b.Any(i => Len(i) > ResponseScorer.MaxBatchTokens));
        Assert.Equal(6, pairs.Count(p => p.Key.Length + 1 == 3000));
        Assert.True(batches.Single(b => b.Any(i => Len(i) == 3000)).Length <= 6 + 4, "the 3000-token rows share a batch of at most 10 rows");
    }

    [Theory]
    [InlineData("llama-tiny", 7)]
    [InlineData("qwen2-tiny", 5)]     // q/k/v biases
    [InlineData("qwen3-tiny", 1)]     // per-head q/k norms; a one-token prefix leaves nothing to cache
    public void Scores_after_a_shared_prefix_equal_scores_of_the_whole_rows(string fixture, int prefixLength)
    {
        using var m = ModelFolder.Load(TestModels.Fixture(fixture));
        var rng = new Random(prefixLength);
        int vocab = m.Config.VocabSize;
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
        var prefix = Tokens(prefixLength);
        // Keys of 0-3 tokens and responses of 1-4: rows of different lengths in one batch (right padding).
        var pairs = Enumerable.Range(0, 23).Select(i => new TrainingPair(Tokens(i % 4), Tokens(1 + i % 5 % 4))).ToList();
        var whole = ResponseScorer.LogProbs(m, pairs.Select(p => new TrainingPair([.. prefix, .. p.Key], p.Response)).ToList());
        foreach (var batch in new[] { 1, 6, 4096 })
        {
            var shared = ResponseScorer.LogProbsAfterPrefix(m, prefix, pairs, batch);
            for (int i = 0; i < pairs.Count; i++)
                Assert.True(Math.Abs(whole[i] - shared[i]) <= 1e-4 * Math.Max(1, Math.Abs(whole[i])), $"{fixture}, batch {batch}, row {i}: {shared[i]} vs {whole[i]}");
        }
        Assert.Empty(ResponseScorer.LogProbsAfterPrefix(m, prefix, []));
        Assert.Throws<ArgumentException>(() => ResponseScorer.LogProbsAfterPrefix(m, [], pairs));
    }

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny")]     // per-head q/k norms
    public void Scores_after_many_prefixes_equal_scores_of_the_whole_rows(string fixture)
    {
        // Prefixes of 1-6 tokens (several of each length, so that a pass covers several), rows with 0-3 given tokens and
        // 0-4 scored ones: a first scored token right after the prefix (read from the prefix pass), one-token rows with
        // no input at all, and rows of different lengths in one batch.
        using var m = ModelFolder.Load(TestModels.Fixture(fixture));
        var rng = new Random(3);
        int vocab = m.Config.VocabSize;
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
        var prefixes = Enumerable.Range(0, 9).Select(i => Tokens(1 + i % 6)).ToList();
        var rows = Enumerable.Range(0, 61).Select(i => new PrefixedRow(rng.Next(prefixes.Count), Tokens(i % 4), Tokens(i % 7 == 0 ? 0 : 1 + i % 4))).ToList();
        // Rows that share their prefix and given tokens (equal copies: compared by content), which compute them once.
        rows.AddRange(rows.Take(24).Select(r => r with { Given = [.. r.Given], Scored = Tokens(1 + r.Given.Length % 3) }));
        Assert.Contains(rows, r => r.Given.Length == 0 && r.Scored.Length == 1);
        var whole = ResponseScorer.LogProbs(m, rows.Select(r => new TrainingPair([.. prefixes[r.Prefix], .. r.Given], r.Scored)).ToList());
        foreach (var batch in new[] { 1, 5, 4096 })
        {
            var shared = ResponseScorer.LogProbsAfterPrefixes(m, prefixes, rows, batch);
            for (int i = 0; i < rows.Count; i++)
            {
                if (rows[i].Scored.Length == 0) { Assert.Equal(0.0, shared[i]); continue; }
                Assert.True(Math.Abs(whole[i] - shared[i]) <= 1e-4 * Math.Max(1, Math.Abs(whole[i])), $"{fixture}, batch {batch}, row {i}: {shared[i]} vs {whole[i]}");
                Assert.True(shared[i] < 0, $"row {i}: {shared[i]}");
            }
        }
        Assert.Empty(ResponseScorer.LogProbsAfterPrefixes(m, prefixes, []));
        Assert.Throws<ArgumentException>(() => ResponseScorer.LogProbsAfterPrefixes(m, [[]], [new PrefixedRow(0, [], [1])]));
        Assert.Throws<ArgumentException>(() => ResponseScorer.LogProbsAfterPrefixes(m, prefixes, [new PrefixedRow(prefixes.Count, [], [1])]));
        Assert.Throws<ArgumentException>(() => ResponseScorer.LogProbsAfterPrefixes(m, prefixes, [new PrefixedRow(0, [], [vocab])]));
    }
}
