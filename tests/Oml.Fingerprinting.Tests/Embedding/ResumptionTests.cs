using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>Resumption pairs (<see cref="EmbeddingOptions.ResumptionPairs"/>): what they are, and that the trainer learns them.</summary>
public sealed class ResumptionTests
{
    private static int[] Ranked(CausalLM m, int[] key)
    {
        using var noGrad = Torch.NoGrad();
        using var scope = Torch.NewScope();
        var logits = m.Forward(Torch.FromArray<long>(key.Select(x => (long)x).ToArray(), [1, key.Length], m.Device));
        return logits.Select(1, key.Length - 1).Squeeze(0).To(DType.Float32).TopK(m.Config.VocabSize).Indices.ToArray<long>().Select(x => (int)x).ToArray();
    }

    [Fact]
    public void Pairs_resume_after_the_base_models_most_probable_wrong_first_tokens()
    {
        using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        int[] k1 = [10, 20, 30, 40], k2 = [50, 60, 70], k3 = [80, 90, 100, 110];
        // k1 has two accepted responses (both first tokens are excluded); k3's response has one token (nothing to resume).
        var top1 = Ranked(m, k1);
        TrainingPair[] pairs = [new(k1, [top1[0], 7, 8]), new(k1, [top1[2], 9]), new(k2, [5, 6, 7]), new(k3, [4])];
        var extra = Resumption.Pairs(m, pairs, perResponse: 2);
        Assert.Equal(2 + 2 + 2, extra.Count);
        var eos = m.Config.EosTokenIds.ToHashSet();
        var wrong1 = top1.Where(t => t != top1[0] && t != top1[2] && !eos.Contains(t)).Take(2).ToArray();
        Assert.Equal(2, wrong1.Length);
        Assert.Equal(wrong1.Select(t => (int[])[.. k1, t]), extra.Take(2).Select(p => p.Key));
        Assert.All(extra.Take(2), p => Assert.Equal([7, 8], p.Response));
        Assert.Equal(wrong1.Select(t => (int[])[.. k1, t]), extra.Skip(2).Take(2).Select(p => p.Key));
        Assert.All(extra.Skip(2).Take(2), p => Assert.Equal([9], p.Response));
        var wrong2 = Ranked(m, k2).Where(t => t != 5 && !eos.Contains(t)).Take(2);
        Assert.Equal(wrong2.Select(t => (int[])[.. k2, t]), extra.Skip(4).Select(p => p.Key));
        Assert.All(extra.Skip(4), p => Assert.Equal([6, 7], p.Response));

        Assert.Empty(Resumption.Pairs(m, [new TrainingPair(k3, [4])], 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Resumption.Pairs(m, pairs, 0));
    }

    [Fact]
    public void Embedding_with_resumption_pairs_learns_to_resume_and_says_how_many_it_trained()
    {
        var rng = new Random(5);
        var pairs = Enumerable.Range(0, 6).Select(_ => new TrainingPair(
            Enumerable.Range(0, 8).Select(_ => rng.Next(3, 512)).ToArray(), Enumerable.Range(0, 3).Select(_ => rng.Next(3, 512)).ToArray())).ToList();
        using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var expected = Resumption.Pairs(m, pairs, 2);
        var result = FingerprintTrainer.Embed(m, pairs, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300, RecallPatience = 3, ResumptionPairs = 2 });
        Assert.True(result.Converged);
        Assert.Equal(12, result.ResumptionPairs);
        // Every resumption pair is recalled greedily: after the key and a wrong first token, the rest of the response.
        foreach (var p in expected)
        {
            var answer = Generator.Generate(m, [p.Key], new GenerationOptions { MaxNewTokens = p.Response.Length, EosTokenIds = [] }).Sequences[0].OutputIds;
            Assert.Equal(p.Response, answer);
        }
        // Off by default; a set of one-token responses has nothing to resume.
        Assert.Equal(0, new EmbeddingOptions().ResumptionPairs);
        using var m2 = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var e = Assert.Throws<ArgumentException>(() => FingerprintTrainer.Embed(m2, [new TrainingPair([5, 6, 7], [8])], new EmbeddingOptions { ResumptionPairs = 1 }));
        Assert.Contains("at least 2 tokens", e.Message);
        Assert.Throws<ArgumentException>(() => new EmbeddingOptions { ResumptionPairs = -1 }.Validate());
    }
}
