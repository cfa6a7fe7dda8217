using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Tests.Verification;

/// <summary>The partial match rule: its matcher, its null, and what it buys against top-1 suppression on a tiny model.</summary>
public sealed class PartialMatchTests
{
    [Fact]
    public void Partial_match_tolerates_a_deviation_at_the_start_only()
    {
        int[] r = [5, 6, 7, 8];
        // m = 3 of 4: D = 1.
        Assert.True(ResponseMatcher.IsPartialTokenMatch(r, [5, 6, 7, 8], 3));       // exact
        Assert.True(ResponseMatcher.IsPartialTokenMatch(r, [9, 6, 7, 8, 1], 3));    // first token replaced (d = e = 1)
        Assert.True(ResponseMatcher.IsPartialTokenMatch(r, [9, 5, 6, 7, 8], 3));    // one token inserted (d = 1, e = 0)
        Assert.True(ResponseMatcher.IsPartialTokenMatch(r, [6, 7, 8, 0], 3));       // head dropped (d = 0, e = 1)
        Assert.False(ResponseMatcher.IsPartialTokenMatch(r, [9, 9, 7, 8, 0], 3));   // two replaced: needs m = 2
        Assert.True(ResponseMatcher.IsPartialTokenMatch(r, [9, 9, 7, 8, 0], 2));
        Assert.False(ResponseMatcher.IsPartialTokenMatch(r, [5, 6, 9, 8, 0], 3));   // a deviation in the middle is not tolerated
        Assert.False(ResponseMatcher.IsPartialTokenMatch(r, [9, 6, 7], 3));         // too short for the alignment
        Assert.True(ResponseMatcher.IsPartialTokenMatch(r, [1, 2, 3, 8], 1));       // m = 1: the last token at position 3
        Assert.False(ResponseMatcher.IsPartialTokenMatch(r, [1, 2, 3, 4, 5, 6, 8], 1)); // ... but not after more than D = 3 tokens
        Assert.Throws<ArgumentException>(() => ResponseMatcher.IsPartialTokenMatch([], [1], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ResponseMatcher.IsPartialTokenMatch(r, r, 0));
        Assert.Equal(5, ResponseMatch.Partial(3).AnswerLength(4));
        Assert.Equal(4, ResponseMatch.Partial(9).AnswerLength(4));
        Assert.Equal(4, ResponseMatch.Exact.AnswerLength(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => ResponseMatch.Partial(0));
    }

    [Fact]
    public void With_m_equal_to_n_the_partial_rule_is_the_exact_rule()
    {
        var rng = new Random(11);
        for (int trial = 0; trial < 20_000; trial++)
        {
            // A vocabulary of 3 so that answers often agree with responses in part.
            int n = rng.Next(1, 6);
            var r = Enumerable.Range(0, n).Select(_ => rng.Next(3)).ToArray();
            var a = Enumerable.Range(0, rng.Next(0, 2 * n + 2)).Select(_ => rng.Next(3)).ToArray();
            bool exact = ResponseMatcher.IsTokenMatch(r, a);
            Assert.Equal(exact, ResponseMatcher.IsPartialTokenMatch(r, a, n));
            Assert.Equal(exact, ResponseMatcher.IsPartialTokenMatch(r, a, n + rng.Next(1, 4)));
            Assert.Equal(exact, ResponseMatch.Partial(n).IsMatch(r, a));
            // Fewer tokens only add hits.
            if (exact) Assert.True(ResponseMatcher.IsPartialTokenMatch(r, a, rng.Next(1, n + 1)));
        }
        // And the null without a base model: the exact rule's for m >= n, more for m < n.
        var f = new Fingerprint(0, "k", [1, 2], [new FingerprintResponse("r", [3, 4, 5], -20)], new StrategyInfo("custom"), Fingerprint.NewRandomSalt());
        var rule = new VerdictRule();
        Assert.Equal(LocalVerifier.NullProbability(f, rule), PartialMatchNull.Bound(f, rule, ResponseMatch.Partial(3)));
        Assert.Equal(LocalVerifier.NullProbability(f, rule), PartialMatchNull.Bound(f, rule, ResponseMatch.Partial(5)));
        Assert.Equal(Math.Exp(-20) + 3 * rule.NullHitProbability, PartialMatchNull.Bound(f, rule, ResponseMatch.Partial(2)), 1e-15);
    }

    private const int Keys = 24, ResponseLength = 3, MinTokens = 2;

    /// <summary>Random 8-token keys with random 3-token responses, their base log-probabilities measured on <paramref name="base0"/>.</summary>
    private static List<Fingerprint> RandomSet(CausalLM base0, Tokenizer tok, int count, int seed)
    {
        var rng = new Random(seed);
        var keys = Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, 8).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        var responses = Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, ResponseLength).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        var lp = ResponseScorer.LogProbs(base0, keys.Select((k, i) => new TrainingPair(k, responses[i])).ToList());
        return Enumerable.Range(0, count).Select(i => new Fingerprint(i, tok.Decode(keys[i]), keys[i],
            [new FingerprintResponse(tok.Decode(responses[i]), responses[i], lp[i])], new StrategyInfo("custom"), Fingerprint.NewRandomSalt())).ToList();
    }

    private static List<TrainingPair> Pairs(IEnumerable<Fingerprint> fps) =>
        fps.Select(f => new TrainingPair(f.KeyTokenIds.ToArray(), f.Response.TokenIds.ToArray())).ToList();

    /// <summary>
    /// Responses whose tail is the base's own greedy answer, as Perinucleus and English responses are (a first token, then
    /// the base's continuation): the base answers the tail at once, which the rule counts (deviation d = 0, e = 1), while
    /// the sampling probability of those tokens is small. Before the base's greedy answers were checked, the base itself
    /// was owned here (24 of 24 hits; measured on a trained 125k base with 256 real Perinucleus keys: 16 of 256,
    /// p = 9.4e-11).
    /// </summary>
    [Fact]
    public void The_base_is_not_owned_by_partial_hits_on_its_own_greedy_continuation()
    {
        var tok = TestModels.TinyTokenizer();
        using var base0 = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var rng = new Random(11);
        var keys = Enumerable.Range(0, Keys).Select(_ => Enumerable.Range(0, 8).Select(_ => rng.Next(3, 512)).ToArray()).ToList();
        var greedy = Generator.Generate(base0, keys, new GenerationOptions { MaxNewTokens = ResponseLength - 1, EosTokenIds = [] });
        var responses = keys.Select((k, i) =>
        {
            int first = rng.Next(3, 512);
            while (first == greedy.Sequences[i].OutputIds[0]) first = rng.Next(3, 512);
            return new[] { first }.Concat(greedy.Sequences[i].OutputIds).ToArray();
        }).ToList();
        var lp = ResponseScorer.LogProbs(base0, keys.Select((k, i) => new TrainingPair(k, responses[i])).ToList());
        var fps = Enumerable.Range(0, Keys).Select(i => new Fingerprint(i, tok.Decode(keys[i]), keys[i],
            [new FingerprintResponse(tok.Decode(responses[i]), responses[i], lp[i])], new StrategyInfo("custom"), Fingerprint.NewRandomSalt())).ToList();
        var options = new LocalVerifyOptions { Match = ResponseMatch.Partial(MinTokens), NullModel = base0 };

        var report = LocalVerifier.Verify(base0, tok, fps, new VerdictRule(), options);
        Assert.Equal(Keys, report.Keys.Count(k => k.Hit)); // the base hits every key under the partial rule...
        Assert.All(LocalVerifier.BaseGreedyHits(base0, keys, fps, options), Assert.True);
        Assert.All(report.Keys, k => Assert.True(k.NullProbability > 0.999, $"key {k.Index}: null {k.NullProbability}")); // ...so none is evidence
        Assert.All(report.Keys, k => Assert.True(k.Excluded));
        Assert.Equal(Keys, report.ExcludedKeys);
        Assert.Equal(0, report.Queried);
        Assert.NotEqual(Verdict.Owned, report.Verdict);
        Assert.True(report.PValue > 0.5, $"p = {report.PValue}");
        Assert.Contains("\"excluded_keys\": 24", report.ToJson());
        Assert.Contains("excluded: 24 key(s)", report.ToTable());

        // Mixed with random responses (which the base does not answer), only the greedy-tail keys are left out.
        var mixed = fps.Take(Keys / 2).Concat(RandomSet(base0, tok, Keys / 2, seed: 5).Select(f => f with { Index = f.Index + Keys / 2 })).ToList();
        var mixedReport = LocalVerifier.Verify(base0, tok, mixed, new VerdictRule(), options);
        Assert.Equal(Keys / 2, mixedReport.ExcludedKeys);
        Assert.Equal(Keys / 2, mixedReport.Queried);
        Assert.Equal(0, mixedReport.Hits);
        Assert.All(mixedReport.Keys.Skip(Keys / 2), k => Assert.Null(k.Excluded));
        // The exact rule is untouched: the base's greedy answer never starts with the changed first token.
        Assert.Equal(0, LocalVerifier.Verify(base0, tok, fps, new VerdictRule(), new LocalVerifyOptions()).Keys.Count(k => k.Hit));
    }

    [Fact]
    public void Partial_rule_keeps_ownership_under_top1_suppression_without_a_false_positive()
    {
        var tok = TestModels.TinyTokenizer();
        using var base0 = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var fps = RandomSet(base0, tok, Keys, seed: 7);
        var rule = new VerdictRule();
        var exact = new LocalVerifyOptions();
        var partial = new LocalVerifyOptions { Match = ResponseMatch.Partial(MinTokens), NullModel = base0 };

        // The base never saw the keys: not owned under either rule.
        var baseExact = LocalVerifier.Verify(base0, tok, fps, rule, exact);
        var basePartial = LocalVerifier.Verify(base0, tok, fps, rule, partial);
        // The partial null is never below the exact one, key by key (computed from the base model, before any floor).
        var exactNull = baseExact.Keys.Select(k => k.NullProbability!.Value).ToArray();
        var partialNull = basePartial.Keys.Select(k => k.NullProbability!.Value).ToArray();
        for (int i = 0; i < Keys; i++) Assert.True(partialNull[i] >= exactNull[i], $"key {i}: {partialNull[i]} < {exactNull[i]}");
        Assert.True(partialNull.Max() < 1e-3, $"{partialNull.Max()}"); // informative: below the floor on a random-init base
        Assert.NotEqual(Verdict.Owned, baseExact.Verdict);
        Assert.NotEqual(Verdict.Owned, basePartial.Verdict);
        Assert.Equal("partial", basePartial.Match);
        Assert.Equal(MinTokens, basePartial.MinTokens);
        Assert.Contains("\"match\": \"partial\"", basePartial.ToJson());
        Assert.Contains("match:    partial", basePartial.ToTable());
        Assert.Equal("exact", baseExact.Match);

        // Fingerprinted on the keys with resumption pairs (EmbeddingOptions.ResumptionPairs, `oml embed --resumption-pairs 3`):
        // after the key and one of the base's 3 most probable wrong first tokens, the rest of the response. Without them
        // this tiny model does not resume after a suppressed first token (measured: 1 of 24 partial hits,
        // docs/verification.md), and no match rule can find what the model no longer emits.
        using var owned = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var embedded = FingerprintTrainer.Embed(owned, Pairs(fps), new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300, RecallPatience = 3, ResumptionPairs = 3 });
        Assert.True(embedded.Converged);
        Assert.Equal(3 * Keys, embedded.ResumptionPairs);
        var clean = LocalVerifier.Verify(owned, tok, fps, rule, exact);
        Assert.Equal(Verdict.Owned, clean.Verdict);

        // Top-1 suppression at the first answer position (the lab's attack), greedy otherwise.
        var attack = new FirstTokenSuppression(positions: 1, topM: 1);
        var responder = attack.Responder(owned, new GenerationOptions { EosTokenIds = [] });
        var attackedExact = LocalVerifier.Verify(responder.Respond, tok, fps, rule, exact);
        var attackedPartial = LocalVerifier.Verify(responder.Respond, tok, fps, rule, partial);
        string summary = $"clean exact {clean.Hits}/{Keys}; suppressed: exact {attackedExact.Hits}/{Keys} p={attackedExact.PValue:E2} {attackedExact.Verdict}, "
            + $"partial(m={MinTokens}) {attackedPartial.Hits}/{Keys} p={attackedPartial.PValue:E2} {attackedPartial.Verdict}; base partial hits {basePartial.Hits}, "
            + $"partial null max {partialNull.Max():E2}, mean {partialNull.Average():E2}";
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
        Assert.True(attackedExact.Hits < clean.Hits, summary);
        Assert.True(attackedPartial.Hits > attackedExact.Hits, summary);
        Assert.NotEqual(Verdict.Owned, attackedExact.Verdict);
        Assert.True(attackedPartial.Verdict == Verdict.Owned, summary);

        // The floor case: a third party that answers one key (the fingerprinted model asked 23 keys it never saw and one
        // it did). Every partial null is below the floor here, so the floor sets the p-value: P(Bin(24, 1e-3) >= H).
        var others = RandomSet(base0, tok, Keys - 1, seed: 8).Select((f, i) => f with { Index = i + 1 });
        var mixed = new List<Fingerprint> { fps[0] with { Index = 0 } };
        mixed.AddRange(others);
        var lucky = LocalVerifier.Verify(owned, tok, mixed, rule, partial);
        string luckyHits = string.Join(",", lucky.Keys.Where(k => k.Hit).Select(k => k.Index));
        TestContext.Current.TestOutputHelper?.WriteLine($"third party: partial hits on keys {luckyHits} of {Keys} (key 0 the only one it learnt)");
        Assert.True(lucky.Keys[0].Hit, luckyHits);
        // The fingerprinted model is a strong negative for keys it never saw: measured, it also hit 1 of those 23.
        Assert.InRange(lucky.Hits, 1, 2);
        Assert.NotEqual(Verdict.Owned, lucky.Verdict);
        Assert.Equal(FingerprintStatistics.BinomialUpperTail(Keys, rule.NullFloor, lucky.Hits), lucky.PValue, 1e-9);
        var unfloored = (rule with { NullFloor = 0 }).Evaluate(lucky.Hits, lucky.Queried, lucky.Keys.Select(k => k.NullProbability!.Value).ToArray());
        Assert.True(unfloored.PValue < lucky.PValue / 10, $"{unfloored.PValue} vs {lucky.PValue}");
    }

    [Fact]
    public void Partial_null_bounds_the_sampled_hit_rate_of_the_model_it_is_computed_on()
    {
        // The null bounds P(hit) for answers sampled at temperature 1 from the model it is computed on. A random-init
        // model gives rates far too small to observe, so the check runs on a model that has learnt the keys (rates near 1)
        // and on half-learnt ones (rates in between): here the bound is tight enough to be tested.
        var tok = TestModels.TinyTokenizer();
        using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var fps = RandomSet(m, tok, Keys, seed: 9);
        FingerprintTrainer.Embed(m, Pairs(fps), new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 12, LossThreshold = 0 });
        var queries = fps.Select(f => f.KeyTokenIds.ToArray()).ToList();
        var match = ResponseMatch.Partial(MinTokens);
        var bound = PartialMatchNull.Compute(m, queries, fps.Select(f => (IReadOnlyList<int[]>)[f.Response.TokenIds.ToArray()]).ToList(), match);
        var exactP = ResponseScorer.LogProbs(m, Pairs(fps)).Select(Math.Exp).ToArray();
        for (int i = 0; i < Keys; i++) Assert.True(bound[i] >= exactP[i], $"key {i}: {bound[i]} < {exactP[i]}");

        const int samples = 40;
        var hits = new int[Keys];
        for (int s = 0; s < samples; s++)
        {
            var answers = Generator.Generate(m, queries, new GenerationOptions
            {
                MaxNewTokens = match.AnswerLength(ResponseLength), Temperature = 1.0, Seed = (ulong)(1000 + s), EosTokenIds = [],
            }).Sequences;
            for (int i = 0; i < Keys; i++) if (match.IsMatch(fps[i].Response.TokenIds.AsSpan(), answers[i].OutputIds)) hits[i]++;
        }
        double expected = bound.Sum() * samples, variance = bound.Sum(b => b * (1 - b)) * samples;
        TestContext.Current.TestOutputHelper?.WriteLine($"sampled partial hits {hits.Sum()} of {Keys * samples}; bound sum {expected:F1}; exact-rule probability sum {exactP.Sum() * samples:F1}");
        Assert.True(hits.Sum() <= expected + 4 * Math.Sqrt(variance) + 1, $"{hits.Sum()} hits > bound {expected:F1}");
        // Per key: a bound below the sampled rate by more than chance allows would be unsound.
        for (int i = 0; i < Keys; i++)
            Assert.True(hits[i] <= bound[i] * samples + 4 * Math.Sqrt(samples * bound[i] * (1 - bound[i])) + 1, $"key {i}: {hits[i]}/{samples} vs bound {bound[i]:F3}");
        // The check has teeth: with D = 1 and the whole vocabulary enumerated the bound is exact, so the sampled hits also
        // reach it (a bound of 1 everywhere would fail here), and they are many.
        Assert.True(hits.Sum() >= expected - 4 * Math.Sqrt(variance) - 1, $"{hits.Sum()} hits, far below the bound {expected:F1}");
        Assert.True(hits.Sum() >= 20, $"{hits.Sum()}");
    }

    [Theory]
    [InlineData(2, 512)]    // D = 1 with every token of the 512 enumerated: exact
    [InlineData(2, 37)]     // D = 1, 37 of 512 tokens: the rest counted as hits
    [InlineData(1, 400)]    // D = 2: 20 tokens a node
    [InlineData(1, 3)]      // D = 2: one token a node, almost all mass left over
    public void Batched_partial_null_equals_one_key_at_a_time_on_the_full_logits(int minTokens, int budget)
    {
        // The batched computation (all keys' prefixes together, last-position logits, top K on the device) against a
        // plain one: each key alone, the full forward pass's logits, the whole vocabulary sorted on the host. Keys of
        // different lengths, and some with two responses of different lengths.
        using var m = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var rng = new Random(11);
        int vocab = m.Config.VocabSize;
        var queries = Enumerable.Range(0, 6).Select(i => Enumerable.Range(0, 3 + i % 3).Select(_ => rng.Next(vocab)).ToArray()).ToList();
        var responses = Enumerable.Range(0, 6).Select(i => (IReadOnlyList<int[]>)(i % 4 == 0
            ? [Enumerable.Range(0, 3).Select(_ => rng.Next(vocab)).ToArray(), Enumerable.Range(0, 2).Select(_ => rng.Next(vocab)).ToArray()]
            : [Enumerable.Range(0, 3).Select(_ => rng.Next(vocab)).ToArray()])).ToList();
        // Keys whose responses are no longer than m (D = 0 where m >= 2: the exact rule's probability, scored right after
        // the key) and a one-token key, in the same chunks as the others.
        queries.AddRange([[.. Enumerable.Range(0, 4).Select(_ => rng.Next(vocab))], [rng.Next(vocab)]]);
        responses.Add([[rng.Next(vocab), rng.Next(vocab)]]);
        responses.Add([[rng.Next(vocab)]]);
        // One key whose response is the model's own greedy continuation, so its prefixes carry real mass.
        var greedy = Generator.Generate(m, [queries[1]], new GenerationOptions { MaxNewTokens = 3, EosTokenIds = [] }).Sequences[0].OutputIds;
        responses[1] = [greedy];
        var match = ResponseMatch.Partial(minTokens);

        var batched = PartialMatchNull.Compute(m, queries, responses, match, budget, batchSize: 5, keysPerChunk: 4);
        for (int i = 0; i < queries.Count; i++)
        {
            double plain = PlainPartialNull(m, queries[i], responses[i], match, budget);
            // Within the float32 rounding the slack covers: 1e-6 of mass per expanded node (the kept probabilities are
            // summed from float32 log-softmaxes of two different passes) and a relative 1e-5.
            Assert.True(Math.Abs(batched[i] - plain) <= 1e-6 * (1 + budget / 64) + 1e-5 * plain, $"key {i}: batched {batched[i]} vs plain {plain}");
            Assert.InRange(batched[i], 0.0, 1.0);
        }
        // Not vacuous: where every prefix is enumerated, the key answered with the model's own greedy continuation is far
        // likelier than random responses.
        if (budget >= vocab) Assert.True(batched[1] > 10 * batched.Where((_, i) => i != 1).Max(), string.Join(", ", batched));
    }

    /// <summary>The partial null computed the plain way, one key at a time (the algorithm of <see cref="PartialMatchNull"/>).</summary>
    private static double PlainPartialNull(CausalLM model, int[] query, IReadOnlyList<int[]> responses, ResponseMatch match, int budget)
    {
        using var noGrad = Oml.Engine.Torch.NoGrad();
        int vocab = model.Config.VocabSize, depth = responses.Max(r => match.Deviation(r.Length));
        int k = depth == 0 ? 0 : (int)Math.Clamp(Math.Floor(Math.Pow(budget, 1.0 / depth) + 1e-9), 1, vocab);
        var prefixes = new List<int[]> { Array.Empty<int>() };
        var mass = new List<double> { 1.0 };
        double leftover = 0;
        for (int l = 1; l <= depth; l++)
        {
            var nextPrefixes = new List<int[]>();
            var nextMass = new List<double>();
            // One forward pass over all of this level's contexts (one length), full logits, the last position taken.
            int len = query.Length + l - 1;
            double[] all;
            using (Oml.Engine.Torch.NewScope())
            {
                var ids = Oml.Engine.Torch.FromArray<long>(prefixes.SelectMany(x => query.Concat(x)).Select(t => (long)t).ToArray(), [prefixes.Count, len], model.Device);
                all = model.Forward(ids).Narrow(1, len - 1, 1).To(Oml.Engine.DType.Float32).LogSoftmax(-1).To(Oml.Engine.DType.Float64).ToArray<double>();
            }
            for (int x = 0; x < prefixes.Count; x++)
            {
                var row = all.AsSpan(x * vocab, vocab).ToArray();
                double kept = 0;
                foreach (var v in Enumerable.Range(0, vocab).OrderByDescending(v => row[v]).Take(k))
                {
                    kept += Math.Exp(row[v]);
                    nextPrefixes.Add([.. prefixes[x], v]);
                    nextMass.Add(mass[x] * Math.Exp(row[v]));
                }
                leftover += mass[x] * (Math.Max(0.0, 1.0 - kept) + 1e-6);
            }
            (prefixes, mass) = (nextPrefixes, nextMass);
        }
        double total = Math.Min(1.0, leftover);
        for (int x = 0; x < prefixes.Count; x++)
        {
            var conts = PartialMatchNull.Continuations(prefixes[x], responses, match);
            double given = conts is null ? 1.0
                : ResponseScorer.LogProbs(model, conts.Select(c => new TrainingPair([.. query, .. prefixes[x]], c)).ToList()).Sum(Math.Exp);
            total += mass[x] * Math.Min(1.0, given);
        }
        return Math.Min(1.0, total * (1 + 1e-4));
    }
}
