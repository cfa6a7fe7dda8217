using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Generation;

public class PerinucleusSamplerTests
{
    private static string Fixture(string name) => TestModels.Fixture(name);

    [Fact]
    public void Responses_start_outside_the_nucleus_and_continue_greedily()
    {
        using var model = ModelFolder.Load(Fixture("qwen2-tiny"));
        var rng = new Random(3);
        var keys = Enumerable.Range(0, 6).Select(i => Enumerable.Range(0, 5 + i).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        var opts = new PerinucleusOptions { ResponseLength = 3, ResponsesPerKey = 2, BatchSize = 4 };
        var responses = PerinucleusSampler.Sample(model, keys, opts, _ => true, (key, n) => (key * 7) % n);
        for (int i = 0; i < keys.Count; i++)
        {
            Assert.Equal(2, responses[i].Count);
            Assert.NotEqual(responses[i][0][0], responses[i][1][0]);
            foreach (var r in responses[i])
            {
                Assert.Equal(3, r.Length);
                // The first token is one of the candidates computed from this key alone.
                float[] probs;
                using (Torch.NoGrad())
                using (Torch.NewScope())
                    probs = model.Forward(Torch.FromArray<long>(keys[i].Select(x => (long)x).ToArray(), [1, keys[i].Length]))
                        .Select(1, keys[i].Length - 1).Softmax(-1).Flatten().ToArray<float>();
                Assert.Contains(r[0], Perinucleus.Candidates(probs, 0.8, 3, _ => true));
                // And the rest is the greedy continuation.
                var greedy = Generator.Generate(model, [[.. keys[i], r[0]]], new GenerationOptions { MaxNewTokens = 2, EosTokenIds = [] });
                Assert.Equal(r[1..], greedy.Sequences[0].OutputIds);
            }
        }
        // The base model's log-probability of each response is finite and below that of its greedy answer.
        var pairs = PerinucleusSampler.Pairs(keys, responses);
        var logp = ResponseScorer.LogProbs(model, pairs);
        Assert.All(logp, lp => Assert.True(lp < 0 && double.IsFinite(lp)));
    }

    [Fact]
    public void Continuations_stop_at_an_end_token_and_trees_do_not_branch_past_it()
    {
        // A server stops answering at an end token, so a response that ran on past one could never be answered in full.
        using var model = ModelFolder.Load(Fixture("qwen2-tiny"));
        var rng = new Random(4);
        var keys = Enumerable.Range(0, 8).Select(i => Enumerable.Range(0, 5 + i % 3).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        int Pick(int key, int n) => (key * 5) % n;
        foreach (int branching in new[] { 1, 2 })
        {
            var plain = new PerinucleusOptions { ResponseLength = 3, ResponsesPerKey = 2, Branching = branching, BatchSize = 3, EosTokenIds = [] };
            var before = PerinucleusSampler.Sample(model, keys, plain, _ => true, Pick);
            Assert.All(before.SelectMany(r => r), r => Assert.Equal(3, r.Length));
            // Make the second token of key 0's first answer an end token: every answer is cut right after its first one.
            int end = before[0][0][1];
            var after = PerinucleusSampler.Sample(model, keys, plain with { EosTokenIds = [end] }, _ => true, Pick);
            static int[] Cut(int[] r, int end) => Array.IndexOf(r, end, 1) is var j and >= 1 ? r[..(j + 1)] : r;
            for (int i = 0; i < keys.Count; i++)
            {
                // The same answers cut at the end token; a tree's branches below it collapse into one finished answer.
                var expected = new List<int[]>();
                foreach (var r in before[i].Select(r => Cut(r, end)))
                    if (expected.Count == 0 || !expected[^1].SequenceEqual(r)) expected.Add(r);
                Assert.Equal(expected.Select(x => string.Join(',', x)), after[i].Select(x => string.Join(',', x)));
            }
            Assert.Contains(after.SelectMany(r => r), r => r.Length == 2 && r[^1] == end);
        }
    }

    [Fact]
    public void Response_log_probabilities_match_a_direct_computation()
    {
        using var model = ModelFolder.Load(Fixture("llama-tiny"));
        var pairs = new List<TrainingPair> { new([5, 6, 7], [8, 9]), new([10, 11, 12, 13, 14], [15]) };
        var lp = ResponseScorer.LogProbs(model, pairs, batchSize: 2);
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        var l = model.Forward(Torch.FromArray<long>([5, 6, 7, 8, 9], [1, 5])).To(DType.Float32).LogSoftmax(-1);
        double expected = l.Select(1, 2).Select(1, 8).ToDouble() + l.Select(1, 3).Select(1, 9).ToDouble();
        Assert.Equal(expected, lp[0], 4);
    }
}

public class PerinucleusSamplerSortTests
{
    /// <summary>
    /// Rows the top tokens do not settle are sorted whole on the device: with only 4 top tokens most rows take that path,
    /// and every response equals the one from ranking each key's whole distribution on the CPU.
    /// </summary>
    [Fact]
    public void Rows_sorted_on_the_device_give_the_responses_of_the_full_ranking()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var rng = new Random(5);
        var keys = Enumerable.Range(0, 24).Select(i => Enumerable.Range(0, 6 + i % 3).Select(_ => rng.Next(3, 500)).ToArray()).ToList();
        bool Acceptable(int id) => id % 3 != 0;
        int Pick(int key, int n) => (key * 5) % n;
        var device = PerinucleusSampler.Sample(model, keys, new PerinucleusOptions { TopTokens = 4, BatchSize = 8, Threshold = 0.6 }, Acceptable, Pick);
        var complete = PerinucleusSampler.Sample(model, keys, new PerinucleusOptions { BatchSize = 8, Threshold = 0.6 }, Acceptable, Pick);
        for (int i = 0; i < keys.Count; i++)
        {
            float[] probs;
            using (Torch.NoGrad())
            using (Torch.NewScope())
                probs = Generator.NextTokenLogits(model, [keys[i]]).To(DType.Float32).Softmax(-1).Flatten().ToArray<float>();
            var candidates = Perinucleus.Candidates(probs, 0.6, 3, Acceptable);
            Assert.Equal([candidates[Pick(i, candidates.Length)]], device[i][0]);
            Assert.Equal(complete[i][0], device[i][0]);
        }
        Assert.Throws<ArgumentException>(() => PerinucleusSampler.Sample(model, keys, new PerinucleusOptions { TopTokens = 0 }, Acceptable, Pick));
    }
}

public class ResponseScorerPathTests
{
    /// <summary>
    /// Scoring with logits at the response positions only equals the full computation (every position's logits, the
    /// response tokens picked after a log-softmax), for keys and responses of mixed lengths in one batch, an empty key included.
    /// </summary>
    [Fact]
    public void Log_probabilities_from_the_response_positions_equal_the_full_logits()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("qwen2-tiny"));
        var rng = new Random(8);
        var pairs = Enumerable.Range(0, 12).Select(i => new TrainingPair(
            Enumerable.Range(0, i == 0 ? 0 : 2 + i % 5).Select(_ => rng.Next(3, 500)).ToArray(),
            Enumerable.Range(0, 1 + i % 3).Select(_ => rng.Next(3, 500)).ToArray())).ToList();
        var got = ResponseScorer.LogProbs(model, pairs, batchSize: 5);
        using var noGrad = Torch.NoGrad();
        for (int i = 0; i < pairs.Count; i++)
        {
            using var scope = Torch.NewScope();
            var seq = pairs[i].Key.Concat(pairs[i].Response).ToArray();
            var l = model.Forward(Torch.FromArray<long>(seq.Select(x => (long)x).ToArray(), [1, seq.Length])).To(DType.Float32).LogSoftmax(-1);
            double expected = 0;
            for (int j = Math.Max(1, pairs[i].Key.Length); j < seq.Length; j++) expected += l.Select(1, j - 1).Select(1, seq[j]).ToDouble();
            Assert.Equal(expected, got[i], 4);
        }
    }
}
