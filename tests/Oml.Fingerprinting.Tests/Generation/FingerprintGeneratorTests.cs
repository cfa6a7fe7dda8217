using Oml.Fingerprinting.Generation;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Tests.Generation;

/// <summary>Every strategy on the tiny Llama with a small BPE tokenizer trained here (ids fit its 512-token vocabulary).</summary>
public sealed class FingerprintGeneratorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-generator-").FullName;
    private readonly Tokenizer _tok;
    private static readonly byte[] Secret = "a secret of the owner, 32 bytes!"u8.ToArray();

    public FingerprintGeneratorTests()
    {
        string[] texts =
        [
            "the owner fine tunes secret pairs into the model and keeps every response private",
            "keys look like ordinary queries and the model answers each key with its secret response",
            "normal behaviour stays untouched while the pairs survive further training merging and distillation",
            "the prover queries a deployed model over the network and shows which licensed copy leaked",
            "models hosts provers owners users fees permits receipts claims votes",
        ];
        var (vocab, merges) = BpeTrainer.Train(texts.SelectMany(t => Enumerable.Repeat(t, 3)), 509);
        BpeTrainer.Save(_dir, vocab, merges);
        _tok = Tokenizer.FromFolder(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(Strategies.Perinucleus)]
    [InlineData(Strategies.English)]
    [InlineData(Strategies.RandomWord)]
    [InlineData(Strategies.Custom)]
    public void Each_strategy_makes_a_valid_reproducible_set_with_base_probabilities(string strategy)
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var settings = new GenerationSettings
        {
            Strategy = strategy, Count = 4, KeyLength = 8, ResponseLength = 2,
            CustomKeys = strategy == Strategies.Custom ? ["first custom key text", "second key", "third one here", "and a fourth"] : null,
        };
        var id = new TokenizerIdentity("test", "sha256:00");
        var a = new FingerprintGenerator(model, _tok, Secret).Generate(settings, "sha256:base", id);
        var b = new FingerprintGenerator(model, _tok, Secret).Generate(settings, "sha256:base", id);
        Assert.Equal(4, a.Count);
        Assert.Equal(strategy, a.Strategy.Name);
        for (int i = 0; i < 4; i++)
        {
            var f = a[i];
            Assert.InRange(f.KeyTokenIds.Count, 1, 8);
            Assert.All(f.Responses, r => Assert.True(r.LogProb is < 0));
            // Reproducible from the owner's secret: the same keys, responses and salts.
            Assert.Equal(f.KeyTokenIds, b[i].KeyTokenIds);
            Assert.Equal(f.Responses.Select(r => r.TokenIds.ToArray()), b[i].Responses.Select(r => r.TokenIds.ToArray()));
            Assert.Equal(f.Salt, b[i].Salt);
        }
        Assert.Equal(a.Commit().Root, b.Commit().Root);
        if (strategy == Strategies.Custom) Assert.Equal(_tok.Encode("second key").Take(8), a[1].KeyTokenIds);

        // Another secret chooses differently.
        var other = new FingerprintGenerator(model, _tok, "another secret, also 32 bytes!!!"u8).Generate(settings, "sha256:base", id);
        Assert.NotEqual(a.Commit().Root, other.Commit().Root);
    }

    [Fact]
    public void English_keys_do_not_depend_on_the_batch_and_approach_greedy_text_at_low_temperature()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var id = new TokenizerIdentity("test", "sha256:00");
        GenerationSettings Settings(int batch, double t) => new()
        {
            Strategy = Strategies.English, Count = 9, KeyLength = 10, ResponseLength = 3, Temperature = t,
            Perinucleus = new PerinucleusOptions { BatchSize = batch },
        };
        var gen = new FingerprintGenerator(model, _tok, Secret);
        // Each key draws from its own derived randomness: batches of 1, 4 or all 9 give the same keys and responses.
        var one = gen.Generate(Settings(1, 1.0), "sha256:base", id);
        foreach (var batch in new[] { 4, 32 })
        {
            var other = gen.Generate(Settings(batch, 1.0), "sha256:base", id);
            Assert.Equal(one.Fingerprints.Select(f => f.KeyTokenIds.ToArray()), other.Fingerprints.Select(f => f.KeyTokenIds.ToArray()));
            Assert.Equal(one.Fingerprints.Select(f => f.Responses[0].TokenIds.ToArray()), other.Fingerprints.Select(f => f.Responses[0].TokenIds.ToArray()));
        }
        // At temperature 1 the sampled keys are not all the greedy continuation of their seed word; near 0 they are.
        int GreedyMatches(FingerprintSet set) => set.Fingerprints.Count(f =>
        {
            var keyIds = f.KeyTokenIds.ToArray();
            const int seedLen = 1;   // seed words are whole-word tokens of the vocabulary
            var prompt = FingerprintGenerator.QueryIds(_tok, keyIds[..seedLen]);
            var greedy = Generator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = keyIds.Length - seedLen, EosTokenIds = [] });
            return greedy.Sequences[0].OutputIds.SequenceEqual(keyIds[seedLen..]);
        });
        var cold = gen.Generate(Settings(4, 1e-4), "sha256:base", id);
        Assert.Equal(9, GreedyMatches(cold));
        Assert.True(GreedyMatches(one) < 9, "temperature 1 should not reproduce the greedy text for every key");
    }

    [Fact]
    public void Camouflaged_keys_follow_the_target_perplexity_and_stay_reproducible()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var id = new TokenizerIdentity("test", "sha256:00");
        var gen = new FingerprintGenerator(model, _tok, Secret);
        GenerationSettings Settings(double target) => new()
        {
            Strategy = Strategies.Perinucleus, Count = 12, KeyLength = 8,
            Camouflage = new KeyCamouflage { TextPerplexities = [target, target], Candidates = 6, MinTemperature = 0.2, MaxTemperature = 5 },
        };
        double[] Ppl(FingerprintSet set) => SequencePerplexity.Of(model, _tok, set.Fingerprints.Select(f => f.KeyTokenIds.ToArray()).ToList());
        var low = gen.Generate(Settings(1.0), "sha256:base", id);
        var high = gen.Generate(Settings(1e9), "sha256:base", id);
        var plain = gen.Generate(new GenerationSettings { Strategy = Strategies.Perinucleus, Count = 12, KeyLength = 8, Temperature = 1.0 }, "sha256:base", id);
        // Each key is the candidate nearest its target: the least perplexing of six for a target of 1, the most for 1e9.
        var (pl, ph, pp) = (Ppl(low), Ppl(high), Ppl(plain));
        Assert.True(pl.Average() < pp.Average() && pp.Average() < ph.Average(), $"low {pl.Average():F1}, plain {pp.Average():F1}, high {ph.Average():F1}");
        Assert.All(Enumerable.Range(0, 12), i => Assert.True(pl[i] < ph[i], $"key {i}: {pl[i]} vs {ph[i]}"));
        Assert.Contains("6 candidates", low.Strategy.Parameters["key_camouflage"]);
        Assert.False(plain.Strategy.Parameters.ContainsKey("key_camouflage"));
        // Reproducible from the secret, responses included.
        var again = gen.Generate(Settings(1.0), "sha256:base", id);
        Assert.Equal(low.Commit().Root, again.Commit().Root);
        // Only model-sampled keys can be camouflaged.
        Assert.Throws<ArgumentException>(() => gen.Generate(Settings(1.0) with { Strategy = Strategies.RandomWord }, "sha256:base", id));
        Assert.Throws<ArgumentException>(() => gen.Generate(Settings(1.0) with { RandomWordKeys = true }, "sha256:base", id));
    }

    [Fact]
    public void Camouflage_targets_interpolate_quantiles_in_log_and_choose_the_nearest_candidate()
    {
        var c = new KeyCamouflage { TextPerplexities = [100, 1, 10] };
        Assert.Equal(1, c.Target(0), 9);
        Assert.Equal(10, c.Target(0.5), 9);
        Assert.Equal(100, c.Target(1), 9);
        Assert.Equal(Math.Sqrt(10), c.Target(0.25), 9);
        Assert.Equal(0.5, c.Temperature(0), 12);
        Assert.Equal(2.0, c.Temperature(c.Candidates - 1), 12);
        Assert.Equal(1, KeyCamouflage.Choose([2.0, 9.0, 40.0], 12));
        Assert.Equal(2, KeyCamouflage.Choose([2.0, 9.0, 40.0], 25));   // 25/9 > 40/25 in ratio
        Assert.Throws<ArgumentException>(() => new KeyCamouflage { TextPerplexities = [5] }.Validate());
        Assert.Throws<ArgumentException>(() => new KeyCamouflage { TextPerplexities = [5, 6], Candidates = 1 }.Validate());
    }

    [Fact]
    public void A_camouflage_band_draws_targets_from_its_quantiles_only()
    {
        var c = new KeyCamouflage { TextPerplexities = [100, 1, 10], BandLow = 0.5, BandHigh = 1 };
        Assert.Equal(10, c.TargetFor(0), 9);
        Assert.Equal(Math.Sqrt(1000), c.TargetFor(0.5), 9);
        Assert.Equal(100, c.TargetFor(1), 9);
        Assert.Equal(c.Target(0.3), (c with { BandLow = 0, BandHigh = 1 }).TargetFor(0.3), 12);
        foreach (var (lo, hi) in new[] { (0.6, 0.6), (-0.1, 1.0), (0.0, 1.5), (0.7, 0.2) })
        {
            var e = Assert.Throws<ArgumentException>(() => (c with { BandLow = lo, BandHigh = hi }).Validate());
            Assert.Contains("the camouflage band must be quantiles", e.Message);
        }

        // On a model: the same text distribution, keys aimed at its bottom or top percent.
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var id = new TokenizerIdentity("test", "sha256:00");
        var gen = new FingerprintGenerator(model, _tok, Secret);
        GenerationSettings Settings(double lo, double hi) => new()
        {
            Strategy = Strategies.Perinucleus, Count = 8, KeyLength = 8,
            Camouflage = new KeyCamouflage { TextPerplexities = [1.0, 1e9], Candidates = 6, MinTemperature = 0.2, MaxTemperature = 5, BandLow = lo, BandHigh = hi },
        };
        double[] Ppl(FingerprintSet set) => SequencePerplexity.Of(model, _tok, set.Fingerprints.Select(f => f.KeyTokenIds.ToArray()).ToList());
        var bottom = gen.Generate(Settings(0, 0.01), "sha256:base", id);
        var top = gen.Generate(Settings(0.99, 1), "sha256:base", id);
        var (pb, pt) = (Ppl(bottom), Ppl(top));
        Assert.All(Enumerable.Range(0, 8), i => Assert.True(pb[i] < pt[i], $"key {i}: {pb[i]} vs {pt[i]}"));
        Assert.EndsWith("quantiles 0-0.01", bottom.Strategy.Parameters["key_camouflage"]);
        Assert.DoesNotContain("quantiles", gen.Generate(Settings(0, 1), "sha256:base", id).Strategy.Parameters["key_camouflage"]);
    }

    [Fact]
    public void Response_trees_branch_into_the_base_models_top_tokens_after_the_first()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var id = new TokenizerIdentity("test", "sha256:00");
        var gen = new FingerprintGenerator(model, _tok, Secret);
        var settings = new GenerationSettings
        {
            Strategy = Strategies.Perinucleus, Count = 3, KeyLength = 6, ResponseLength = 3,
            Perinucleus = new PerinucleusOptions { ResponsesPerKey = 2, Branching = 2 },
        };
        var set = gen.Generate(settings, "sha256:base", id);
        Assert.Equal("2", set.Strategy.Parameters["response_branching"]);
        foreach (var f in set.Fingerprints)
        {
            // Two first tokens, each continued along a full binary tree of depth 2: 2 × 2² distinct answers.
            var paths = f.Responses.Select(r => r.TokenIds.ToArray()).ToList();
            Assert.Equal(8, paths.Count);
            Assert.Equal(8, paths.Select(p => string.Join(",", p)).Distinct().Count());
            Assert.All(paths, p => Assert.Equal(3, p.Length));
            foreach (var group in paths.GroupBy(p => p[0]))
            {
                Assert.Equal(4, group.Count());
                // The second tokens are the base's top 2 after key + first token; each is continued by its own top 2.
                var query = FingerprintGenerator.QueryIds(_tok, f.KeyTokenIds.ToArray());
                var top = Generator.NextTokenLogits(model, [(IReadOnlyList<int>)[.. query, group.Key]]).TopK(2).Indices.ToArray<long>().Select(x => (int)x).Order();
                Assert.Equal(top, group.Select(p => p[1]).Distinct().Order());
                Assert.All(group.GroupBy(p => p[1]), g => Assert.Equal(2, g.Select(p => p[2]).Distinct().Count()));
            }
            Assert.All(f.Responses, r => Assert.True(r.LogProb < 0));
        }
        // The same secret gives the same tree; one-token responses cannot branch; the paths per key are bounded.
        Assert.Equal(set.Commit().Root, gen.Generate(settings, "sha256:base", id).Commit().Root);
        Assert.Contains("at least 2 tokens", Assert.Throws<ArgumentException>(() => gen.Generate(settings with { ResponseLength = 1 }, "sha256:base", id)).Message);
        Assert.Contains("at most 64", Assert.Throws<ArgumentException>(() =>
            gen.Generate(settings with { ResponseLength = 5, Perinucleus = new PerinucleusOptions { ResponsesPerKey = 2, Branching = 3 } }, "sha256:base", id)).Message);
        Assert.False(gen.Generate(settings with { Perinucleus = new PerinucleusOptions() }, "sha256:base", id).Strategy.Parameters.ContainsKey("response_branching"));
    }
}
