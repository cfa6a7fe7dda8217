using Oml.Fingerprinting.Embedding;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>Perinucleus-shaped training pairs for the embedding tests: keys of 16 random tokens, one random response token.</summary>
internal static class RandomKeys
{
    public static List<TrainingPair> Pairs(int count, int vocab, int seed = 5)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TrainingPair(Enumerable.Range(0, 16).Select(_ => rng.Next(3, vocab)).ToArray(), [rng.Next(3, vocab)]))
            .ToList();
    }
}
