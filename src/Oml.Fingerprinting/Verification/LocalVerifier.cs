using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Verification;

/// <summary>How <see cref="LocalVerifier"/> queries a local model.</summary>
public sealed record LocalVerifyOptions
{
    /// <summary>How a key becomes the model's input (raw token ids by default, or the chat template).</summary>
    public KeyFormat Format { get; init; } = KeyFormat.Raw;

    /// <summary>A system prompt put before each key (chat format), or null.</summary>
    public string? SystemPrompt { get; init; }

    /// <summary>Sample at this temperature instead of decoding greedily.</summary>
    public double? Temperature { get; init; }

    /// <summary>Answers per key R; with R &gt; 1 (sampling only) a key is hit when more than <see cref="Fraction"/> of them match.</summary>
    public int Samples { get; init; } = 1;

    /// <summary>The share of the R samples that must be exceeded for a hit (0.5: a strict majority).</summary>
    public double Fraction { get; init; } = 0.5;

    /// <summary>
    /// Keys per forward batch (keys of one length and response length only, so that no row is padded);
    /// <see cref="LocalVerifier.AutoBatchSize"/> sizes the batches from the device's free memory
    /// (<see cref="LocalVerifier.PlanBatchSize"/>; 256 on the CPU).
    /// </summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>
    /// Data parallelism (null: this process alone): key i is answered by rank i mod world size, and the answers are
    /// exchanged (one all-reduce) so that every rank returns the same report as one process would.
    /// </summary>
    public Oml.Engine.Distributed.ProcessGroup? Group { get; init; }

    /// <summary>Which answers count as hits: <see cref="ResponseMatch.Exact"/> (the default) or <see cref="ResponseMatch.Partial"/>.</summary>
    public ResponseMatch Match { get; init; } = ResponseMatch.Exact;

    /// <summary>
    /// The base model, for the partial rule's per-key null (<see cref="PartialMatchNull.Compute"/>); without it the partial
    /// null is <see cref="PartialMatchNull.Bound"/> (the common bound for every alignment whose probability is unknown).
    /// Not used by the exact rule, whose null is the set's recorded base probabilities.
    /// </summary>
    public CausalLM? NullModel { get; init; }

    /// <summary>Prefixes enumerated per key and depth for the partial null (<see cref="PartialMatchNull.DefaultPrefixBudget"/>).</summary>
    public int PrefixBudget { get; init; } = PartialMatchNull.DefaultPrefixBudget;

    /// <summary>Hears the number of keys answered so far after every batch (this rank's share under a process group).</summary>
    public IProgress<int>? Progress { get; init; }
}

/// <summary>Verifies a local model: answers to the keys, matched token for token against the responses.</summary>
public static class LocalVerifier
{
    /// <summary>
    /// Queries <paramref name="model"/> greedily with each fingerprint's key (as <paramref name="format"/> builds it, raw by
    /// default, after <paramref name="systemPrompt"/> if one is given). See <see cref="Verify(CausalLM, Tokenizer, IReadOnlyList{Fingerprint}, VerdictRule, LocalVerifyOptions)"/>.
    /// </summary>
    public static VerificationReport Verify(CausalLM model, Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints, VerdictRule rule,
        int batchSize = 32, KeyFormat? format = null, string? systemPrompt = null) =>
        Verify(model, tokenizer, fingerprints, rule, new LocalVerifyOptions { BatchSize = batchSize, Format = format ?? KeyFormat.Raw, SystemPrompt = systemPrompt });

    /// <summary>
    /// Queries <paramref name="model"/> with each fingerprint's key, decodes for the answer length the match rule needs
    /// (the longest response's, plus its deviation D under the partial rule; no end of sequence), and counts a hit when
    /// the answer matches any of the responses under the options' <see cref="LocalVerifyOptions.Match"/> (under sampling:
    /// when more than the options' fraction of R answers do). Keys of the same input length and response length share a batch, so no
    /// row is padded and each answer is exactly that of the key alone. Sampled runs are seeded per key and sample, so
    /// they repeat. The null hit probability of each key is from <see cref="NullProbabilities"/>.
    /// </summary>
    /// <exception cref="ArgumentException">no fingerprints, or a key token outside the model's vocabulary.</exception>
    public static VerificationReport Verify(CausalLM model, Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints, VerdictRule rule,
        LocalVerifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(rule);
        var (queries, matchCounts, firstAnswers) = Answer(model, tokenizer, fingerprints, options);
        using var _ = Phases.Measure("report");
        return Report(tokenizer, fingerprints, queries, matchCounts, firstAnswers, rule, options);
    }

    /// <summary>
    /// The keys a verification with <paramref name="options"/> leaves out of its verdict: for the partial rule with a base
    /// model (<see cref="LocalVerifyOptions.NullModel"/>), those the base's own greedy answer hits
    /// (<see cref="BaseGreedyHits"/>, <see cref="KeyResult.Excluded"/>); null otherwise (no key is left out). They depend
    /// on the base and the queries the keys are encoded into (<paramref name="tokenizer"/> and the options' key format:
    /// a verdict uses the suspect's), never on the suspect's weights, so one computation serves every suspect whose
    /// queries are the same (<see cref="CountHits"/>).
    /// </summary>
    public static bool[]? ExcludedKeys(Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints, LocalVerifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Match.IsPartial || options.NullModel is not { } baseModel) return null;
        var queries = fingerprints.Select(f => options.Format.Encode(tokenizer, f, options.SystemPrompt)).ToArray();
        return BaseGreedyHits(baseModel, queries, fingerprints, options);
    }

    /// <summary>
    /// A negative model's hits, counted as <see cref="Verify(CausalLM, Tokenizer, IReadOnlyList{Fingerprint}, VerdictRule, LocalVerifyOptions)"/>
    /// counts them for its verdict (the same answers, match rule and majority vote), with the keys in
    /// <paramref name="excluded"/> (<see cref="ExcludedKeys"/> for the same options) neither hit nor queried. No null
    /// probabilities are computed: this is what a calibration of the null (<see cref="NullCalibration"/>) needs of each
    /// negative.
    /// </summary>
    /// <exception cref="ArgumentException">as for Verify, or an exclusion list of another length.</exception>
    public static (int Hits, int Queried) CountHits(CausalLM model, Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints,
        LocalVerifyOptions options, bool[]? excluded)
    {
        ArgumentNullException.ThrowIfNull(fingerprints);
        if (excluded is not null && excluded.Length != fingerprints.Count)
            throw new ArgumentException($"{excluded.Length} exclusions for {fingerprints.Count} fingerprints", nameof(excluded));
        var (_, matchCounts, _) = Answer(model, tokenizer, fingerprints, options);
        int required = ResponseMatcher.RequiredMatches(options.Samples, options.Fraction);
        int hits = 0, queried = 0;
        for (int i = 0; i < fingerprints.Count; i++)
        {
            if (excluded?[i] == true) continue;
            queried++;
            if (matchCounts[i] >= required) hits++;
        }
        return (hits, queried);
    }

    /// <summary>The model's answers to the keys: each key's encoded query, how many of its answers match, and its first answer.</summary>
    private static (int[][] Queries, int[] MatchCounts, int[][] FirstAnswers) Answer(CausalLM model, Tokenizer tokenizer,
        IReadOnlyList<Fingerprint> fingerprints, LocalVerifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(options);
        if (fingerprints.Count == 0) throw new ArgumentException("no fingerprints to query");
        if (options.Samples < 1) throw new ArgumentException("the number of samples must be at least 1");
        if (options.Samples > 1 && options.Temperature is null) throw new ArgumentException("more than one sample needs a temperature (greedy answers are all the same)");

        var prepare = Phases.Measure("prepare keys");
        var queries = fingerprints.Select(f => options.Format.Encode(tokenizer, f, options.SystemPrompt)).ToArray();
        var expected = fingerprints.Select(f => f.Responses.Select(x => x.TokenIds.ToArray()).ToList()).ToArray();
        for (int i = 0; i < fingerprints.Count; i++)
            foreach (var id in queries[i])
                if (id < 0 || id >= model.Config.VocabSize)
                    throw new ArgumentException($"fingerprint {fingerprints[i].Index}: token id {id} is outside the model's vocabulary of {model.Config.VocabSize}");
        prepare.Dispose();

        var lengths = expected.Select(e => e.Max(x => options.Match.AnswerLength(x.Length))).ToArray();
        var answers = new List<int[]>[fingerprints.Count];
        var dist = options.Group;
        var mine = Enumerable.Range(0, fingerprints.Count).Where(i => dist is null || i % dist.WorldSize == dist.Rank);
        var groups = mine.GroupBy(i => (queries[i].Length, lengths[i]))
            .SelectMany(g => g.Chunk(BatchSizeFor(model, options, g.Key.Length, g.Key.Item2)).Select(c => (Key: g.Key, Items: c)));
        var pass = Phases.Measure("greedy pass");
        int answered = 0;
        foreach (var (key, items) in groups)
        {
            foreach (var i in items) answers[i] = [];
            for (int s = 0; s < options.Samples; s++)
            {
                var generation = new GenerationOptions
                {
                    MaxNewTokens = key.Item2,
                    Temperature = options.Temperature,
                    Seed = options.Temperature is null ? null : (ulong)(fingerprints[items[0]].Index * 1_000_003L + s),
                    EosTokenIds = [],
                };
                var result = Generator.Generate(model, items.Select(i => queries[i]).ToList(), generation);
                for (int j = 0; j < items.Length; j++) answers[items[j]].Add(result.Sequences[j].OutputIds);
            }
            answered += items.Length;
            options.Progress?.Report(answered);
        }
        var matchCounts = new int[fingerprints.Count];
        var firstAnswers = new int[fingerprints.Count][];
        for (int i = 0; i < fingerprints.Count; i++)
            if (answers[i] is { } a)
            {
                matchCounts[i] = a.Count(x => options.Match.IsMatchAny(expected[i], x));
                firstAnswers[i] = a[0];
            }
        pass.Dispose();
        if (dist is not null) Exchange(dist, model.Device, lengths, matchCounts, firstAnswers);
        return (queries, matchCounts, firstAnswers);
    }

    /// <summary>A <see cref="LocalVerifyOptions.BatchSize"/> that asks for batches sized from free device memory.</summary>
    public const int AutoBatchSize = 0;

    /// <summary>
    /// The batch size for one group of keys: the options' own, or with <see cref="AutoBatchSize"/> the plan from free
    /// memory for greedy answers on a GPU, else 256. Sampled answers keep a fixed batch size: a batch's seed is its first
    /// key's, so the batches must not depend on the machine's free memory for a seeded run to repeat elsewhere.
    /// </summary>
    private static int BatchSizeFor(CausalLM model, LocalVerifyOptions options, int keyTokens, int answerTokens)
    {
        if (options.BatchSize > 0) return options.BatchSize;
        if (!model.Device.IsCuda || options.Temperature is not null) return 256;
        var (free, _) = Oml.Engine.Torch.Cuda.MemoryInfo(model.Device.Index);
        return PlanBatchSize(model.Config, model.DType, keyTokens, answerTokens, free);
    }

    /// <summary>Keys per batch are capped at this many input tokens: matrix products are saturated long before it.</summary>
    public const long MaxBatchTokens = 65_536;

    /// <summary>
    /// Keys per forward batch for keys of <paramref name="keyTokens"/> input tokens answered with
    /// <paramref name="answerTokens"/> new tokens, sized so that the batch's transient memory (one decoder layer's
    /// activations per token, the key/value cache, the last position's logits) stays within half of
    /// <paramref name="freeBytes"/>, and at most <see cref="MaxBatchTokens"/> tokens; at least 1.
    /// </summary>
    public static int PlanBatchSize(ModelConfig config, Oml.Engine.DType dtype, int keyTokens, int answerTokens, long freeBytes)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(keyTokens, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(answerTokens);
        long e = dtype.ElementSize(), tokens = keyTokens + answerTokens;
        long cache = answerTokens > 1 ? 2L * config.NumLayers * config.NumKeyValueHeads * config.HeadDim * tokens * e : 0;
        long perRow = tokens * Oml.Models.Training.MicroBatchPlanner.LayerActivationBytes(config, dtype) + cache + (long)config.VocabSize * (e + 4 + 8);
        long rows = Math.Max(1, freeBytes / 2) / perRow;
        rows = Math.Min(rows, Math.Max(1, MaxBatchTokens / tokens));
        return (int)Math.Clamp(rows, 1, int.MaxValue);
    }

    /// <summary>
    /// Verifies answers that a deployment gave (e.g. a lab responder: a model behind suppression, a filter or a
    /// wrapper): <paramref name="respond"/> answers the keys' token ids (built as the options' format builds them) with up
    /// to the given number of new tokens, one answer per key. Hits and nulls as in <see cref="Verify(CausalLM, Tokenizer, IReadOnlyList{Fingerprint}, VerdictRule, LocalVerifyOptions)"/>;
    /// one answer per key (the options' samples and temperature are not used).
    /// </summary>
    public static VerificationReport Verify(Func<IReadOnlyList<int[]>, int, IReadOnlyList<int[]>> respond, Tokenizer tokenizer,
        IReadOnlyList<Fingerprint> fingerprints, VerdictRule rule, LocalVerifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(respond);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(options);
        if (fingerprints.Count == 0) throw new ArgumentException("no fingerprints to query");
        if (options.Samples != 1) throw new ArgumentException("a responder gives one answer per key: samples must be 1");
        var queries = fingerprints.Select(f => options.Format.Encode(tokenizer, f, options.SystemPrompt)).ToArray();
        var expected = fingerprints.Select(f => f.Responses.Select(x => x.TokenIds.ToArray()).ToList()).ToArray();
        int length = expected.Max(e => e.Max(x => options.Match.AnswerLength(x.Length)));
        var answers = respond(queries, length);
        if (answers.Count != queries.Length) throw new InvalidOperationException($"the responder gave {answers.Count} answers to {queries.Length} keys");
        var matchCounts = new int[fingerprints.Count];
        var firstAnswers = new int[fingerprints.Count][];
        for (int i = 0; i < fingerprints.Count; i++)
        {
            firstAnswers[i] = answers[i];
            matchCounts[i] = options.Match.IsMatchAny(expected[i], answers[i]) ? 1 : 0;
        }
        return Report(tokenizer, fingerprints, queries, matchCounts, firstAnswers, rule, options);
    }

    private static VerificationReport Report(Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints, int[][] queries, int[] matchCounts,
        int[][] firstAnswers, VerdictRule rule, LocalVerifyOptions options)
    {
        int required = ResponseMatcher.RequiredMatches(options.Samples, options.Fraction);
        var (nulls, excluded) = NullsAndExclusions(fingerprints, queries, rule, options);
        var rows = new List<KeyResult>(fingerprints.Count);
        for (int i = 0; i < fingerprints.Count; i++)
        {
            var f = fingerprints[i];
            int matches = matchCounts[i];
            rows.Add(new KeyResult(f.Index, f.Key, f.Responses.Select(x => x.Text).ToList(), tokenizer.Decode(firstAnswers[i]),
                matches >= required, nulls[i], options.Samples > 1 ? matches : null, options.Samples > 1 ? options.Samples : null)
            { Excluded = excluded?[i] == true ? true : null });
        }
        return VerificationReport.Create(rule, rows) with { Match = options.Match.Name, MinTokens = options.Match.MinTokens };
    }

    /// <summary>
    /// The per-key null hit probabilities of a verification with <paramref name="options"/>: for the exact rule
    /// <see cref="NullProbability"/>; for the partial rule <see cref="PartialMatchNull.Compute"/> on the options' base model
    /// (never below the exact rule's null), or <see cref="PartialMatchNull.Bound"/> without one; with R samples the
    /// probability that enough of them hit.
    /// </summary>
    public static double[] NullProbabilities(IReadOnlyList<Fingerprint> fingerprints, IReadOnlyList<int[]> queries, VerdictRule rule, LocalVerifyOptions options) =>
        NullsAndExclusions(fingerprints, queries, rule, options).Nulls;

    /// <summary>
    /// <see cref="NullProbabilities"/>, and for the partial rule with a base model the keys the base's own greedy answer
    /// hits (null elsewhere): their null is 1, and a report leaves them out of the verdict (<see cref="KeyResult.Excluded"/>).
    /// <paramref name="queries"/> are the keys as the suspect sees them (used with a base model only); a verifier of
    /// answers that come from elsewhere (an endpoint: <see cref="TextVerifier.VerifyTokensAsync"/>) gets the same nulls and
    /// exclusions as a local verdict on the same queries.
    /// </summary>
    public static (double[] Nulls, bool[]? Excluded) NullsAndExclusions(IReadOnlyList<Fingerprint> fingerprints, IReadOnlyList<int[]> queries, VerdictRule rule, LocalVerifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(options);
        int required = ResponseMatcher.RequiredMatches(options.Samples, options.Fraction);
        double[] single;
        bool[]? baseHits = null;
        if (!options.Match.IsPartial) single = fingerprints.Select(f => NullProbability(f, rule)).ToArray();
        else if (options.NullModel is { } baseModel)
        {
            var computed = PartialMatchNull.Compute(baseModel, queries, fingerprints.Select(f => (IReadOnlyList<int[]>)f.Responses.Select(x => x.TokenIds.ToArray()).ToList()).ToList(),
                options.Match, options.PrefixBudget);
            // The partial hit contains the exact one: its recorded base probability is a lower bound (float noise aside).
            single = fingerprints.Select((f, i) => f.Responses.All(x => x.LogProb is not null) ? Math.Max(computed[i], NullProbability(f, rule)) : computed[i]).ToArray();
            // The computed null is the base's probability when sampling, but suspects answer greedily, and the tokens a
            // partial match counts after a deviation are, for Perinucleus and English responses, the base's own greedy
            // continuation: the base (or a copy of it) can hit such a key every time while its sampling probability is
            // small. Measured: the base itself was owned (16 hits of 256, p = 9.4e-11) before this. A key the base's own
            // greedy answer hits proves nothing: its null is 1, and a report leaves it out of the verdict.
            baseHits = BaseGreedyHits(baseModel, queries, fingerprints, options);
            for (int i = 0; i < single.Length; i++) if (baseHits[i]) single[i] = 1.0;
        }
        else single = fingerprints.Select(f => PartialMatchNull.Bound(f, rule, options.Match)).ToArray();
        var nulls = single.Select(p =>
        {
            if (options.Samples > 1) p = Math.Exp(FingerprintStatistics.LogBinomialUpperTail(options.Samples, Math.Min(p, 1.0), required));
            return Math.Min(p, 1.0 - 1e-12);
        }).ToArray();
        return (nulls, baseHits);
    }

    /// <summary>
    /// Whether the base model's own greedy answer to each key is a hit under the options' match rule (decoded as
    /// <see cref="Verify(CausalLM, Tokenizer, IReadOnlyList{Fingerprint}, VerdictRule, LocalVerifyOptions)"/> decodes: the
    /// answer length the rule needs, no end of sequence, keys of equal lengths batched without padding).
    /// </summary>
    public static bool[] BaseGreedyHits(CausalLM baseModel, IReadOnlyList<int[]> queries, IReadOnlyList<Fingerprint> fingerprints, LocalVerifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(options);
        if (queries.Count != fingerprints.Count) throw new ArgumentException($"{queries.Count} queries for {fingerprints.Count} fingerprints");
        using var _ = Phases.Measure("base greedy answers");
        var expected = fingerprints.Select(f => f.Responses.Select(x => x.TokenIds.ToArray()).ToList()).ToArray();
        var lengths = expected.Select(e => e.Max(x => options.Match.AnswerLength(x.Length))).ToArray();
        var hits = new bool[fingerprints.Count];
        var greedy = options with { Temperature = null, Samples = 1 };
        foreach (var g in Enumerable.Range(0, fingerprints.Count).GroupBy(i => (queries[i].Length, lengths[i])))
            foreach (var items in g.Chunk(BatchSizeFor(baseModel, greedy, g.Key.Length, g.Key.Item2)))
            {
                var result = Generator.Generate(baseModel, items.Select(i => queries[i]).ToList(),
                    new GenerationOptions { MaxNewTokens = g.Key.Item2, EosTokenIds = [] });
                for (int j = 0; j < items.Length; j++) hits[items[j]] = options.Match.IsMatchAny(expected[items[j]], result.Sequences[j].OutputIds);
            }
        return hits;
    }

    /// <summary>
    /// Gives every rank every key's match count and first answer: each key has a slot of 1 + (its decoded length) integers
    /// (the answer's length is that, since decoding ignores end of sequence), filled by the rank that
    /// answered it and zero elsewhere, and the slots are summed over the ranks (token ids and counts are far below 2^53,
    /// so the sum is exact).
    /// </summary>
    private static void Exchange(Oml.Engine.Distributed.ProcessGroup group, Oml.Engine.Device device, int[] lengths, int[] matchCounts, int[][] firstAnswers)
    {
        var offsets = new long[lengths.Length + 1];
        for (int i = 0; i < lengths.Length; i++) offsets[i + 1] = offsets[i] + 1 + lengths[i];
        var flat = new long[offsets[^1]];
        for (int i = 0; i < lengths.Length; i++)
        {
            if (firstAnswers[i] is not { } a) continue;
            flat[offsets[i]] = matchCounts[i];
            for (int j = 0; j < a.Length && j < offsets[i + 1] - offsets[i] - 1; j++) flat[offsets[i] + 1 + j] = a[j];
        }
        // On the model's device: NCCL reduces CUDA tensors only.
        using (var t = Oml.Engine.Torch.FromArray<long>(flat, [flat.Length], device))
        {
            group.AllReduce(t);
            flat = t.ToArray<long>();
        }
        for (int i = 0; i < lengths.Length; i++)
        {
            matchCounts[i] = (int)flat[offsets[i]];
            firstAnswers[i] = flat[(int)(offsets[i] + 1)..(int)offsets[i + 1]].Select(x => (int)x).ToArray();
        }
    }

    /// <summary>
    /// The probability that an unrelated model hits the key: the base model's probability of any response (Σ exp(log p),
    /// a union bound), or the rule's common bound where a response has none recorded; with R samples, the probability
    /// that at least <paramref name="required"/> of them match. (The rule raises it to its floor when it evaluates.)
    /// </summary>
    public static double NullProbability(Fingerprint f, VerdictRule rule, int samples = 1, int required = 1)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(rule);
        double p = f.Responses.Any(x => x.LogProb is null) ? rule.NullHitProbability : Math.Min(f.Responses.Sum(x => Math.Exp(x.LogProb!.Value)), 1.0);
        if (samples > 1) p = Math.Exp(FingerprintStatistics.LogBinomialUpperTail(samples, p, required));
        return Math.Min(p, 1.0 - 1e-12);
    }
}
