using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Tests;

public class ModelMetricTests
{
    private static Fingerprint Fp(int i, int[] key, int[] response) =>
        new(i, $"key {i}", key, new[] { new FingerprintResponse("r", response) }, new StrategyInfo("custom"), new byte[Fingerprint.SaltLength]);

    [Fact]
    public void Teacher_forced_greedy_fsr_equals_generated_greedy_fsr()
    {
        using var model = ModelFolder.Load(Fixtures.SmokeBase);
        var tok = Tokenizer.FromFolder(Fixtures.SmokeBase);
        var rng = new Random(3);
        var keys = Enumerable.Range(0, 12).Select(i => Enumerable.Range(0, 3 + i % 4).Select(_ => rng.Next(3, model.Config.VocabSize)).ToArray()).ToList();
        var fpsForPrompts = keys.Select((k, i) => Fp(i, k, [1])).ToList();
        var prompts = FingerprintSuccess.Prompts(tok, fpsForPrompts);
        var greedy = new ModelResponder(model, new GenerationOptions { EosTokenIds = [] }, 5).Respond(prompts, 2);
        // Even keys: the model's own greedy answer (hit); odd keys: its first token, then a different second (miss).
        var fps = keys.Select((k, i) => Fp(i, k, i % 2 == 0 ? greedy[i] : [greedy[i][0], (greedy[i][1] + 1) % model.Config.VocabSize])).ToList();
        var slow = FingerprintSuccess.Measure(new ModelResponder(model, new GenerationOptions { EosTokenIds = [] }, 5), tok, fps);
        var fast = FingerprintSuccess.MeasureGreedy(model, tok, fps, batchSize: 5);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => i % 2 == 0), slow.PerKey);
        Assert.Equal(slow.PerKey, fast.PerKey);
    }

    private static string HeldOut() => File.ReadAllText("/usr/share/common-licenses/Apache-2.0");

    [Fact]
    public void Cloze_items_are_deterministic_by_seed_and_well_formed()
    {
        var text = HeldOut();
        var a = Cloze.Build(text[..8000], text[8000..], 20, seed: 4);
        var b = Cloze.Build(text[..8000], text[8000..], 20, seed: 4);
        var c = Cloze.Build(text[..8000], text[8000..], 20, seed: 5);
        Assert.Equal(20, a.Count);
        Assert.Equal(a.Select(i => (i.Context, i.Answer, string.Join(",", i.Choices))), b.Select(i => (i.Context, i.Answer, string.Join(",", i.Choices))));
        Assert.NotEqual(a.Select(i => i.Context + i.Answer), c.Select(i => i.Context + i.Answer));
        var freq = Cloze.WordFrequencies(text);
        var normalized = System.Text.RegularExpressions.Regex.Replace(text[..8000], @"\s+", " ");
        foreach (var item in a)
        {
            Assert.Equal(4, item.Choices.Distinct().Count());
            Assert.Equal(item.Answer, item.Choices[item.AnswerIndex]);
            Assert.Contains(item.Context + " " + item.Answer, normalized);
            Assert.All(item.Choices, w => Assert.True(freq.GetValueOrDefault(w) >= 1, $"choice '{w}' is not a corpus word"));
        }
    }

    [Fact]
    public void Cloze_scores_a_model_rigged_to_prefer_the_answers_as_fully_correct()
    {
        var text = HeldOut();
        // The four items with the shortest contexts (quick to train on).
        var items = Cloze.Build(text[..8000], text[8000..], 30, seed: 1).OrderBy(i => i.Context.Length).Take(4).ToList();
        var tok = Tokenizer.FromFolder(Fixtures.SmokeBase);
        using var model = ModelFolder.Load(Fixtures.SmokeBase);
        // Rig the model: train it to continue each context with its answer (as a fingerprint would be embedded).
        var pairs = items.Select(i => new TrainingPair(FingerprintGenerator.QueryIds(tok, tok.Encode(i.Context)), tok.Encode(" " + i.Answer))).ToList();
        var r = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 1e-2, MaxEpochs = 150, RecallPatience = 2, Seed = 1 });
        Assert.True(r.Final.Accuracy == 1.0, $"rigging failed: recalled {r.Final.Accuracy:P0}");
        var s = Cloze.Score(model, tok, items, batchSize: 4);
        Assert.Equal(4, s.Items);
        Assert.Equal(1.0, s.MultipleChoiceAccuracy);
        Assert.Equal(1.0, s.GreedyAccuracy);
        Assert.Equal(1.0, Cloze.GreedyAccuracy(new ModelResponder(model), tok, items));
    }

    private sealed class Always(int[] answer) : IResponder
    {
        public string Name => "always";
        public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens) => prompts.Select(_ => answer).ToList();
    }

    [Fact]
    public void Greedy_next_word_through_a_responder_matches_tokens()
    {
        var tok = Tokenizer.FromFolder(Fixtures.SmokeBase);
        var text = HeldOut();
        var items = Cloze.Build(text[..8000], text[8000..], 10, seed: 2);
        var first = tok.Encode(" " + items[0].Answer);
        int expected = items.Count(i => tok.Encode(" " + i.Answer).SequenceEqual(first));
        Assert.Equal((double)expected / items.Count, Cloze.GreedyAccuracy(new Always([.. first, 7]), tok, items), 12);
        Assert.Equal(0, Cloze.GreedyAccuracy(new Always([]), tok, items));
    }
}

public class FirstTokenRankTests
{
    [Fact]
    public void Batched_ranks_equal_ranks_counted_on_the_host()
    {
        var config = Oml.Lab.Experiments.LabConfig.Load(Fixtures.Experiment("smoke-capacity.yaml"));
        config.Utility.ClozeItems = 0;
        config.Utility.BatchSize = 3;
        var env = new Oml.Lab.Experiments.LabEnvironment(config, Fixtures.OutDirWithBase());
        env.Prepare();
        using var model = env.LoadModel(env.BaseDir);
        var rng = new Random(9);
        var fps = Enumerable.Range(0, 7).Select(i => new Fingerprint(i, "k", Enumerable.Range(0, 2 + i % 3).Select(_ => rng.Next(3, 500)).ToArray(),
            Enumerable.Range(0, 1 + i % 2).Select(_ => new FingerprintResponse("r", new[] { rng.Next(3, 500) })).ToArray(),
            new StrategyInfo("custom"), new byte[Fingerprint.SaltLength])).ToList();
        var ranks = env.FirstTokenRanks(model, fps);
        for (int i = 0; i < fps.Count; i++)
        {
            var q = FingerprintGenerator.QueryIds(env.Tokenizer, [.. fps[i].KeyTokenIds]);
            using var x = Oml.Engine.Torch.FromArray<long>(q.Select(v => (long)v).ToArray(), [1, q.Length], model.Device);
            using var logits = model.Forward(x);
            var row = logits.ToArray<float>().Skip((q.Length - 1) * model.Config.VocabSize).Take(model.Config.VocabSize).ToArray();
            int expected = fps[i].Responses.Min(r => row.Count(v => v > row[r.TokenIds[0]]));
            Assert.Equal(expected, ranks[i]);
        }
    }
}
