using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Fingerprinting.Verification;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Tests.Verification;

/// <summary>The floor on per-key null probabilities, Clopper–Pearson bounds, and a calibrated verdict on real (tiny) models.</summary>
public sealed class NullFloorTests
{
    [Fact]
    public void One_hit_on_a_key_the_base_finds_impossible_is_not_ownership()
    {
        // 32 keys whose responses the base model gives probability e^-1000 ≈ 0; the suspect hits one of them.
        var p = Enumerable.Repeat(Math.Exp(-1000), 32).ToArray();
        var unfloored = new VerdictRule { NullFloor = 0 }.Evaluate(1, 32, p);
        Assert.Equal(Verdict.Owned, unfloored.Verdict); // what the null said before the floor: one lucky hit "proves" it

        var rule = new VerdictRule();
        Assert.Equal(VerdictRule.DefaultNullFloor, rule.NullFloor);
        var r = rule.Evaluate(1, 32, p);
        Assert.NotEqual(Verdict.Owned, r.Verdict);
        // P(X ≥ 1) with 32 keys at 1e-3 each = 1 − 0.999^32.
        Assert.Equal(1 - Math.Pow(0.999, 32), r.PValue, 1e-12);
        // Two hits are not enough at α = 1e-6 either (C(32,2)·1e-6 ≈ 5e-4); six are.
        Assert.NotEqual(Verdict.Owned, rule.Evaluate(2, 32, p).Verdict);
        Assert.Equal(Verdict.Owned, rule.Evaluate(6, 32, p).Verdict);
        // The floor never lowers a larger probability, and it applies to the common bound too.
        Assert.Equal(0.1, rule.Floored(0.1));
        Assert.Equal(0.2, new VerdictRule { NullHitProbability = 0.01, NullFloor = 0.2 }.EffectiveNullHitProbability);
        Assert.Contains("max(p_i, 0.001)", rule.Describe(perKeyNull: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VerdictRule { NullFloor = 1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new VerdictRule { NullFloor = -0.1 });
    }

    [Fact]
    public void Perinucleus_keys_get_a_floor_a_suppressing_host_cannot_cross()
    {
        static Fingerprint Fp(int i, string strategy, params int[] firsts) => new(i, $"key {i}", [1, 2, 3],
            [.. firsts.Select(t => new FingerprintResponse($"r{t}", [t, 7], -12))], new StrategyInfo(strategy), Fingerprint.NewRandomSalt());

        // Responses drawn just outside the nucleus: 0.06 per distinct first token of the key that has the most.
        Assert.Equal(VerdictRule.SuppressionNullFloor, VerdictRule.DefaultNullFloorFor([Fp(0, Strategies.Perinucleus, 9), Fp(1, Strategies.Perinucleus, 9)]));
        Assert.Equal(2 * VerdictRule.SuppressionNullFloor, VerdictRule.DefaultNullFloorFor([Fp(0, Strategies.Custom, 9, 9, 11), Fp(1, Strategies.Custom, 9)]), 12);
        Assert.Equal(0.5, VerdictRule.DefaultNullFloorFor([Fp(0, Strategies.Perinucleus, [.. Enumerable.Range(10, 20)])]));
        // Random words and sampled English keep the unmeasured-rate floor.
        Assert.Equal(VerdictRule.DefaultNullFloor, VerdictRule.DefaultNullFloorFor([Fp(0, Strategies.RandomWord, 9), Fp(1, Strategies.English, 9)]));
        Assert.Equal(VerdictRule.DefaultNullFloor, VerdictRule.DefaultNullFloorFor([]));

        // Measured at 100M (docs/results/issue12-null): the 102.7M base, served through top-3 first-token suppression, hit
        // 334 of 8,192 Perinucleus keys; a sibling fingerprinted with other keys 379 (4.6 %). The keys' recorded base
        // probabilities sum to 37.4 (mean 0.0046, median 0.0013): under the 1e-3 floor both were "owned" beyond 1e-190.
        var nulls = Enumerable.Range(0, 8192).Select(i => i % 2 == 0 ? 0.0008 : 0.0083).ToArray();
        var old = new VerdictRule();
        Assert.Equal(Verdict.Owned, old.Evaluate(379, 8192, nulls).Verdict);
        var floored = new VerdictRule { NullFloor = VerdictRule.SuppressionNullFloor };
        Assert.NotEqual(Verdict.Owned, floored.Evaluate(379, 8192, nulls).Verdict);
        Assert.NotEqual(Verdict.Owned, floored.Evaluate(48, 1024, nulls[..1024]).Verdict);   // the same rate at 1,024 keys
        // What the owner keeps: 5 keys all hit are enough, and a model that kept 10 % of 1,024 keys is still owned.
        Assert.Equal(5, FingerprintStatistics.KeysNeeded(floored.Alpha, floored.NullFloor));
        Assert.Equal(Verdict.Owned, floored.Evaluate(5, 5, nulls[..5]).Verdict);
        Assert.Equal(Verdict.Owned, floored.Evaluate(103, 1024, nulls[..1024]).Verdict);
    }

    [Fact]
    public void The_partial_rule_states_ownership_only_with_a_calibrated_floor()
    {
        // 24 keys, all hit, each with a base null of 1e-5: owned by the p-value under either rule.
        var keys = Enumerable.Range(0, 24).Select(i => new KeyResult(i, $"key {i}", ["r"], "r", Hit: true, NullProbability: 1e-5)).ToList();
        var rule = new VerdictRule();
        Assert.False(rule.CalibratedFloor);
        var exact = VerificationReport.Create(rule, keys);
        Assert.Equal(Verdict.Owned, exact.StatedUnder(rule).Verdict);   // the exact rule: as computed
        var partial = exact with { Match = ResponseMatch.Partial(2).Name, MinTokens = 2 };
        var stated = partial.StatedUnder(rule);
        Assert.Equal(Verdict.Inconclusive, stated.Verdict);
        Assert.Equal(partial.PValue, stated.PValue);
        Assert.Equal(partial.Hits, stated.Hits);
        Assert.Contains("calibrated on models near the base", stated.Reason, StringComparison.Ordinal);

        // A calibration (one near-base negative, 1 hit of 4,065 keys) marks the floor as calibrated: then owned is stated.
        var cal = NullCalibration.Calibrate([new NegativeResult("sibling-merge", "sibling", 1, 4065)], match: ResponseMatch.Partial(2), excludesBaseHits: true);
        var calibrated = cal.Apply(rule);
        Assert.True(calibrated.CalibratedFloor);
        var underCal = VerificationReport.Create(calibrated, keys) with { Match = "partial", MinTokens = 2 };
        Assert.Equal(Verdict.Owned, underCal.Verdict);
        Assert.Equal(Verdict.Owned, underCal.StatedUnder(calibrated).Verdict);
        // Verdicts other than owned are stated as computed.
        var few = VerificationReport.Create(rule, keys.Select((k, i) => k with { Hit = i == 0 }).ToList()) with { Match = "partial", MinTokens = 2 };
        Assert.NotEqual(Verdict.Owned, few.Verdict);
        Assert.Equal(few.Verdict, few.StatedUnder(rule).Verdict);
    }

    [Theory]
    // Reference values computed independently (Python, exact integer binomial coefficients, 200 bisection steps); 3 of 10
    // is the textbook [0.0667, 0.6525].
    [InlineData(0, 10, 0.0, 0.30849711)]
    [InlineData(3, 10, 0.06673951, 0.65245285)]
    [InlineData(10, 10, 0.69150289, 1.0)]
    [InlineData(0, 1024, 0.0, 0.00359594)]
    [InlineData(5, 1000, 0.00162542, 0.01162947)]
    public void Clopper_Pearson_matches_the_beta_quantiles(int x, int n, double lower, double upper)
    {
        var (lo, hi) = FingerprintStatistics.ClopperPearson(x, n);
        Assert.Equal(lower, lo, 1e-7);
        Assert.Equal(upper, hi, 1e-7);
        // x = 0: the upper bound is 1 − (α/2)^(1/n) in closed form.
        if (x == 0) Assert.Equal(1 - Math.Pow(0.025, 1.0 / n), hi, 1e-12);
        Assert.Throws<ArgumentOutOfRangeException>(() => FingerprintStatistics.ClopperPearson(n + 1, n));
    }

    [Fact]
    public void Calibration_takes_the_worst_negative_not_the_pooled_rate()
    {
        var cal = NullCalibration.Calibrate(
        [
            new NegativeResult("quiet-1", "fine-tune", 0, 1000),
            new NegativeResult("quiet-2", "fine-tune", 0, 1000),
            new NegativeResult("noisy", "sibling", 20, 1000),
        ]);
        Assert.Equal("noisy", cal.Worst);
        Assert.Equal(FingerprintStatistics.ClopperPearson(20, 1000).Upper, cal.Floor, 1e-12);
        Assert.True(cal.Floor > 0.02 && cal.PooledRate < 0.007, $"{cal.Floor} {cal.PooledRate}");
        Assert.Equal(FingerprintStatistics.KeysNeeded(1e-6, cal.Floor), cal.KeysNeededAllHit);
        Assert.Equal(4, cal.KeysNeededAllHit); // 0.0307^4 ≈ 9e-7
        Assert.NotNull(cal.KeysNeededForPower);
        // Power: with that many keys a recall-0.5 model is owned with probability ≥ 0.95; with one fewer it is not.
        int m = cal.KeysNeededForPower!.Value, h = FingerprintStatistics.HitsNeeded(m, 1e-6, cal.Floor)!.Value;
        Assert.True(FingerprintStatistics.BinomialUpperTail(m, 0.5, h) >= 0.95);
        int h1 = FingerprintStatistics.HitsNeeded(m - 1, 1e-6, cal.Floor) ?? m;
        Assert.True(FingerprintStatistics.BinomialUpperTail(m - 1, 0.5, h1) < 0.95);

        // Quiet negatives alone still leave the documented minimum floor, and a round trip keeps everything.
        var quiet = NullCalibration.Calibrate([new NegativeResult("q", "fine-tune", 0, 100_000)]);
        Assert.Equal(VerdictRule.DefaultNullFloor, quiet.Floor);
        var back = NullCalibration.FromJson(cal.ToJson());
        Assert.Equal(cal.Floor, back.Floor);
        Assert.Equal(3, back.Negatives.Count);
        Assert.Equal(cal.Floor, cal.Apply(new VerdictRule()).NullFloor);
        Assert.Equal(0.5, cal.Apply(new VerdictRule { NullFloor = 0.5 }).NullFloor);
        Assert.Contains("noisy", cal.ToTable());
        Assert.Throws<ArgumentException>(() => NullCalibration.Calibrate([]));
    }


    private static readonly string[] Benign =
    [
        "the owner fine-tunes secret pairs into the model and keeps the responses private",
        "a host serves the model behind an endpoint and answers paying users with receipts",
        "normal behaviour is untouched and the pairs survive fine-tuning merging and distillation",
        "the prover queries a deployed model and shows which licensed copy leaked",
        "weights are averaged with the base after every step to keep the model useful",
        "keys look like ordinary queries and the model answers each key with its secret response",
    ];

    /// <summary>A fine-tune on ordinary text: every prefix of each sentence paired with its next token.</summary>
    private static List<TrainingPair> BenignPairs(Tokenizer tok, int skip) =>
        Benign.Skip(skip).Take(3).SelectMany(t =>
        {
            var ids = tok.Encode(t);
            return Enumerable.Range(4, ids.Length - 4).Select(i => new TrainingPair(ids[..i], [ids[i]]));
        }).ToList();

    [Fact]
    public void A_calibrated_verdict_owns_the_fingerprinted_model_and_not_a_fine_tune_that_never_saw_the_keys()
    {
        var tok = TestModels.TinyTokenizer();
        const int n = 24;
        var rng = new Random(7);
        var keys = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, 8).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        List<Fingerprint> fps;
        using (var base0 = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            // Perinucleus-like: the response is never the base model's greedy answer, and the base gives it ≈ 0.
            var greedy = Generator.Generate(base0, keys, new GenerationOptions { MaxNewTokens = 1, EosTokenIds = [] }).Sequences;
            fps = Enumerable.Range(0, n).Select(i =>
            {
                int t;
                do t = rng.Next(3, 512); while (t == greedy[i].OutputIds[0]);
                return new Fingerprint(i, tok.Decode(keys[i]), keys[i], [new FingerprintResponse(tok.Decode([t]), [t], -1000)],
                    new StrategyInfo("custom"), Fingerprint.NewRandomSalt());
            }).ToList();
        }
        var ours = fps.Select(f => new TrainingPair(f.KeyTokenIds.ToArray(), f.Responses[0].TokenIds.ToArray())).ToList();
        var options = new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300, RecallPatience = 3 };
        var ftOptions = new EmbeddingOptions { LearningRate = 3e-3, MaxEpochs = 40, LossThreshold = 0 };
        var rule = new VerdictRule();

        NegativeResult Negative(string name, Action<CausalLM>? train)
        {
            using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            train?.Invoke(m);
            var rep = LocalVerifier.Verify(m, tok, fps, rule);
            return new NegativeResult(name, "negative", rep.Hits, rep.Queried);
        }
        // Calibrate on the base and one fine-tune of it on ordinary text; neither saw the keys.
        var cal = NullCalibration.Calibrate(
        [
            Negative("base", null),
            Negative("fine-tune-1", m => FingerprintTrainer.Embed(m, BenignPairs(tok, 0), ftOptions)),
        ]);
        Assert.True(cal.Floor > rule.NullFloor, $"{cal.Floor}"); // 24 keys bound the rate only to ~0.14
        Assert.Equal("exact", cal.Match);                        // made for the exact rule, and only usable for it
        cal.EnsureMadeFor(ResponseMatch.Exact, excludesBaseHits: false);
        Assert.Throws<InvalidDataException>(() => cal.EnsureMadeFor(ResponseMatch.Partial(1), excludesBaseHits: false));
        // The fingerprinted model recalls nearly every key, so a recall of 0.9 is the alternative to rule out.
        var calibrated = cal.Apply(rule with { ExpectedRecall = 0.9 });

        using (var owned = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            Assert.True(FingerprintTrainer.Embed(owned, ours, options).Converged);
            var report = LocalVerifier.Verify(owned, tok, fps, calibrated);
            Assert.Equal(Verdict.Owned, report.Verdict);
            Assert.True(report.Hits >= 22, $"{report.Hits}");
        }
        using (var other = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            // Another fine-tune on other text, never shown the keys: not owned.
            FingerprintTrainer.Embed(other, BenignPairs(tok, 3), ftOptions with { Seed = 5 });
            var report = LocalVerifier.Verify(other, tok, fps, calibrated);
            Assert.Equal(Verdict.NotOwned, report.Verdict);
            Assert.True(report.Hits <= 3, $"{report.Hits}");
        }
        using (var lucky = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            // A third party that happens to answer one key with its response: without the floor the base probability
            // e^-1000 makes that one hit proof; with the calibrated floor it is nothing.
            FingerprintTrainer.Embed(lucky, [.. BenignPairs(tok, 3), ours[0]], ftOptions with { Seed = 6, MaxEpochs = 80 });
            var unfloored = LocalVerifier.Verify(lucky, tok, fps, rule with { NullFloor = 0 });
            Assert.True(unfloored.Keys[0].Hit);
            Assert.InRange(unfloored.Hits, 1, 3);
            Assert.Equal(Verdict.Owned, unfloored.Verdict);
            Assert.NotEqual(Verdict.Owned, LocalVerifier.Verify(lucky, tok, fps, calibrated).Verdict);
        }
    }

    [Fact]
    public void A_calibration_is_refused_for_another_match_rule()
    {
        NegativeResult[] negatives = [new("base", "base", 0, 4000), new("ft", "fine-tune", 9, 4000)];
        var exact = NullCalibration.Calibrate(negatives);
        var partial = NullCalibration.Calibrate(negatives, match: ResponseMatch.Partial(2), excludesBaseHits: true);
        var partialNoBase = NullCalibration.Calibrate(negatives, match: ResponseMatch.Partial(2));
        Assert.Equal(("exact", (int?)null, false), (exact.Match, exact.MinTokens, exact.ExcludesBaseHits));
        Assert.Equal(("partial", (int?)2, true), (partial.Match, partial.MinTokens, partial.ExcludesBaseHits));

        exact.EnsureMadeFor(ResponseMatch.Exact, excludesBaseHits: false);
        exact.EnsureMadeFor(ResponseMatch.Exact, excludesBaseHits: true);      // the exact rule leaves no key out either way
        partial.EnsureMadeFor(ResponseMatch.Partial(2), excludesBaseHits: true);
        partialNoBase.EnsureMadeFor(ResponseMatch.Partial(2), excludesBaseHits: false);
        // Another rule, another m, or the base's hits counted by one and left out by the other: refused, in one line.
        var e = Assert.Throws<InvalidDataException>(() => exact.EnsureMadeFor(ResponseMatch.Partial(2), excludesBaseHits: true));
        Assert.Contains("made for the rule 'exact', not 'partial, m = 2, keys the base hits left out'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<InvalidDataException>(() => partial.EnsureMadeFor(ResponseMatch.Exact, excludesBaseHits: false));
        Assert.Throws<InvalidDataException>(() => partial.EnsureMadeFor(ResponseMatch.Partial(1), excludesBaseHits: true));
        Assert.Throws<InvalidDataException>(() => partial.EnsureMadeFor(ResponseMatch.Partial(2), excludesBaseHits: false));
        Assert.Throws<InvalidDataException>(() => partialNoBase.EnsureMadeFor(ResponseMatch.Partial(2), excludesBaseHits: true));
        Assert.Throws<ArgumentException>(() => NullCalibration.Calibrate(negatives, excludesBaseHits: true));

        // The rule survives a round trip; a file without one (written before calibrations recorded it) is refused for every rule.
        var back = NullCalibration.FromJson(partial.ToJson());
        Assert.Equal(("partial", (int?)2, true), (back.Match, back.MinTokens, back.ExcludesBaseHits));
        Assert.Contains("\"match\": \"partial\"", partial.ToJson());
        Assert.Contains("match rule:      partial, m = 2, keys the base hits left out", partial.ToTable());
        var legacy = System.Text.Json.Nodes.JsonNode.Parse(exact.ToJson())!.AsObject();
        legacy.Remove("match");
        legacy.Remove("min_tokens");
        legacy.Remove("excludes_base_hits");
        var old = NullCalibration.FromJson(legacy.ToJsonString());
        Assert.Contains("records no match rule", Assert.Throws<InvalidDataException>(() => old.EnsureMadeFor(ResponseMatch.Exact, false)).Message);
        var bad = System.Text.Json.Nodes.JsonNode.Parse(exact.ToJson())!.AsObject();
        bad["match"] = "partial";   // but no min_tokens
        Assert.Throws<System.Text.Json.JsonException>(() => NullCalibration.FromJson(bad.ToJsonString()));
    }

    [Fact]
    public void A_calibrated_partial_verdict_owns_the_fingerprinted_model_and_not_a_fine_tune_that_never_saw_the_keys()
    {
        // Perinucleus-like 3-token responses: a first token that is not the base's greedy answer, then the base's own
        // greedy continuation after it, the tail a partial match (m = 2 of 3) counts. Half of the keys instead end with the
        // base's greedy answer to the key itself, which the base hits under the partial rule: a verdict leaves those
        // out (LocalVerifier.ExcludedKeys), and so must the calibration, or near-base negatives would count hits there
        // that no verdict counts.
        var tok = TestModels.TinyTokenizer();
        const int n = 24;
        var rng = new Random(13);
        var keys = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, 8).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        var match = ResponseMatch.Partial(2);
        var rule = new VerdictRule();
        List<Fingerprint> fps;
        using var base0 = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        {
            var greedy = Generator.Generate(base0, keys, new GenerationOptions { MaxNewTokens = 2, EosTokenIds = [] }).Sequences;
            var firsts = keys.Select((k, i) =>
            {
                int t;
                do t = rng.Next(3, 512); while (t == greedy[i].OutputIds[0]);
                return t;
            }).ToArray();
            var tails = Generator.Generate(base0, keys.Select((k, i) => (int[])[.. k, firsts[i]]).ToList(), new GenerationOptions { MaxNewTokens = 2, EosTokenIds = [] }).Sequences;
            var responses = keys.Select((k, i) => (int[])[firsts[i], .. (i % 2 == 0 ? tails[i].OutputIds : greedy[i].OutputIds)]).ToList();
            var lp = ResponseScorer.LogProbs(base0, keys.Select((k, i) => new TrainingPair(k, responses[i])).ToList());
            fps = Enumerable.Range(0, n).Select(i => new Fingerprint(i, tok.Decode(keys[i]), keys[i],
                [new FingerprintResponse(tok.Decode(responses[i]), responses[i], lp[i])], new StrategyInfo("custom"), Fingerprint.NewRandomSalt())).ToList();
        }
        var options = new LocalVerifyOptions { Match = match, NullModel = base0 };
        var excluded = LocalVerifier.ExcludedKeys(tok, fps, options)!;
        Assert.Equal(n / 2, excluded.Count(x => x));                    // the keys whose tail is the base's answer to the key
        Assert.All(Enumerable.Range(0, n), i => Assert.Equal(i % 2 == 1, excluded[i]));
        Assert.Null(LocalVerifier.ExcludedKeys(tok, fps, new LocalVerifyOptions { Match = match }));
        Assert.Null(LocalVerifier.ExcludedKeys(tok, fps, options with { Match = ResponseMatch.Exact }));

        // Light fine-tunes, so that they stay near the base (strong negatives: they still give many of the base's answers).
        var ftOptions = new EmbeddingOptions { LearningRate = 1e-3, MaxEpochs = 3, LossThreshold = 0 };
        NegativeResult Negative(string name, Action<CausalLM>? train)
        {
            using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            train?.Invoke(m);
            var (hits, queried) = LocalVerifier.CountHits(m, tok, fps, options, excluded);
            // Counted as the verdict counts them: the same hits on the same keys.
            var report = LocalVerifier.Verify(m, tok, fps, rule, options);
            Assert.Equal((report.Hits, report.Queried), (hits, queried));
            Assert.Equal(n / 2, report.ExcludedKeys);
            // Without the exclusions a near-base negative also counts the base's own answers.
            int all = LocalVerifier.CountHits(m, tok, fps, options, null).Hits;
            TestContext.Current.TestOutputHelper?.WriteLine($"{name}: {hits}/{queried} partial hits without the excluded keys, {all}/{n} with them");
            Assert.True(all > hits, $"{name}: {all} hits with the excluded keys, {hits} without");
            if (train is null) Assert.Equal(hits + n / 2, all);
            return new NegativeResult(name, "negative", hits, queried);
        }
        var cal = NullCalibration.Calibrate(
        [
            Negative("base", null),
            Negative("fine-tune-1", m => FingerprintTrainer.Embed(m, BenignPairs(tok, 0), ftOptions)),
        ], match: match, excludesBaseHits: true);
        Assert.Equal(("partial", (int?)2, true), (cal.Match, cal.MinTokens, cal.ExcludesBaseHits));
        Assert.All(cal.Negatives, x => Assert.Equal(n / 2, x.Queried));
        var calibrated = cal.Apply(rule with { ExpectedRecall = 0.9 });

        using (var owned = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            var ours = fps.Select(f => new TrainingPair(f.KeyTokenIds.ToArray(), f.Responses[0].TokenIds.ToArray())).ToList();
            Assert.True(FingerprintTrainer.Embed(owned, ours, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300, RecallPatience = 3 }).Converged);
            var report = LocalVerifier.Verify(owned, tok, fps, calibrated, options);
            Assert.Equal(Verdict.Owned, report.Verdict);
            Assert.Equal(n / 2, report.Hits);
        }
        using (var other = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            // Another fine-tune on other text, never shown the keys: not owned under the partial rule either.
            FingerprintTrainer.Embed(other, BenignPairs(tok, 3), ftOptions with { Seed = 5 });
            var report = LocalVerifier.Verify(other, tok, fps, calibrated, options);
            TestContext.Current.TestOutputHelper?.WriteLine($"fine-tune-2: {report.Hits}/{report.Queried} partial hits, {report.Verdict}");
            Assert.Equal(Verdict.NotOwned, report.Verdict);
            Assert.Equal(n / 2, report.Queried);
            Assert.True(report.Hits <= 2, $"{report.Hits}");
        }
    }
}
