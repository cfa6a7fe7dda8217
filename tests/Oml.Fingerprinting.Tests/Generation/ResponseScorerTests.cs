using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;

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
}
