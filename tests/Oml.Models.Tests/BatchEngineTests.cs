using System.Threading.Channels;
using Oml.Models.Serving;

namespace Oml.Models.Tests;

public class BatchEngineTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<List<GeneratedToken>> Drain(ChannelReader<GeneratedToken> reader)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var t in reader.ReadAllAsync(Ct)) tokens.Add(t);
        return tokens;
    }

    private static readonly int[][] Prompts =
    [
        [5, 17, 99, 3, 250, 7],
        [400, 12],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
        [300],
        [42, 43, 44, 45],
        [77, 78, 79, 80, 81, 82, 83, 84, 85],
    ];

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny")]
    public async Task Sequences_that_join_and_leave_a_running_batch_decode_as_if_alone(string fixture)
    {
        using var model = ModelFolder.Load(Fixtures.Model(fixture));
        var lengths = new[] { 12, 3, 9, 20, 1, 7 };
        var expected = Prompts.Select((p, i) =>
            Generator.Generate(model, [p], new GenerationOptions { MaxNewTokens = lengths[i], EosTokenIds = [] }).Sequences[0].OutputIds).ToList();

        using var engine = new BatchEngine(model, new BatchEngineOptions { MaxBatchSize = 4 });
        int maxBatch = 0;
        engine.Stepped += b => maxBatch = Math.Max(maxBatch, b);
        // Staggered arrivals: some join while others are mid-way; the batch limit makes the last ones wait for a slot.
        var runs = new List<Task<List<GeneratedToken>>>();
        for (int i = 0; i < Prompts.Length; i++)
        {
            runs.Add(Drain(engine.Submit(Prompts[i], new SamplingParams { MaxTokens = lengths[i] }, Ct)));
            if (i % 2 == 1) await Task.Delay(5, Ct);
        }
        var results = await Task.WhenAll(runs);
        for (int i = 0; i < Prompts.Length; i++)
        {
            Assert.Equal(expected[i], results[i].Select(t => t.TokenId));
            Assert.Equal("length", results[i][^1].FinishReason);
            Assert.All(results[i].SkipLast(1), t => Assert.Null(t.FinishReason));
        }
        Assert.InRange(maxBatch, 2, 4);
    }

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny")]
    public async Task Greedy_rows_decode_as_alone_in_a_batch_with_sampled_and_logprob_rows(string fixture)
    {
        // Greedy rows without log-probabilities take their token from the device's argmax; the others (sampled, or
        // reporting log-probabilities) from host copies of their own logits rows only. Mixed in one batch, each kind
        // must still decode as it would alone.
        using var model = ModelFolder.Load(Fixtures.Model(fixture));
        var kinds = new[]
        {
            new SamplingParams { MaxTokens = 10 },                                              // greedy, argmax on the device
            new SamplingParams { MaxTokens = 7, TopLogprobs = 2 },                              // greedy with log-probabilities
            new SamplingParams { MaxTokens = 12, Temperature = 1.0, Seed = 7 },                 // sampled
            new SamplingParams { MaxTokens = 5 },                                               // greedy
            new SamplingParams { MaxTokens = 9, Temperature = 0.7, TopP = 0.8, Seed = 3, TopLogprobs = 0 }, // sampled with log-probabilities
            new SamplingParams { MaxTokens = 8, TopLogprobs = 0 },                              // greedy with log-probabilities
        };
        var alone = new List<List<GeneratedToken>>();
        using (var single = new BatchEngine(model, new BatchEngineOptions { MaxBatchSize = 1 }))
            for (int i = 0; i < kinds.Length; i++) alone.Add(await Drain(single.Submit(Prompts[i], kinds[i], Ct)));

        using var engine = new BatchEngine(model);
        int maxBatch = 0;
        engine.Stepped += b => maxBatch = Math.Max(maxBatch, b);
        var results = await Task.WhenAll(kinds.Select((k, i) => Drain(engine.Submit(Prompts[i], k, Ct))));
        Assert.True(maxBatch >= 3, $"the rows were never batched together (at most {maxBatch} in a step)");
        for (int i = 0; i < kinds.Length; i++)
        {
            Assert.Equal(alone[i].Select(t => t.TokenId), results[i].Select(t => t.TokenId));
            Assert.Equal(kinds[i].MaxTokens, results[i].Count);
            if (kinds[i].TopLogprobs is null) Assert.All(results[i], t => Assert.True(float.IsNaN(t.Logprob) && t.Top is null));
            else
                for (int j = 0; j < results[i].Count; j++)
                {
                    Assert.Equal(alone[i][j].Logprob, results[i][j].Logprob, 1e-4);
                    Assert.Equal(kinds[i].TopLogprobs, results[i][j].Top!.Length);
                }
            if (kinds[i].Temperature == 0)
            {
                var expected = Generator.Generate(model, [Prompts[i]], new GenerationOptions { MaxNewTokens = kinds[i].MaxTokens, EosTokenIds = [] }).Sequences[0].OutputIds;
                Assert.Equal(expected, results[i].Select(t => t.TokenId));
            }
        }
    }

    [Theory]
    [InlineData(Oml.Engine.DType.Float32)]
    [InlineData(Oml.Engine.DType.BFloat16)]
    public void The_device_argmax_takes_the_first_of_equal_maxima_as_the_host_loop_does(Oml.Engine.DType dtype)
    {
        // BatchEngine relies on this for greedy rows: torch.argmax along the vocabulary picks the lowest index among ties.
        float[] rows = [0.5f, 3f, -1f, 3f, 3f, 2f, 7f, 7f, 1f, 7f, -2f, 0f];
        using var logits = Oml.Engine.Torch.FromArray(rows, 2, 6).To(dtype);
        Assert.Equal([1L, 0L], logits.ArgMax(-1).ToArray<long>());
    }

    [Fact]
    public async Task A_seeded_sequence_repeats_whatever_else_is_in_the_batch()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        using var engine = new BatchEngine(model);
        var sampled = new SamplingParams { MaxTokens = 16, Temperature = 1.2, TopP = 0.9, Seed = 1234 };
        var alone = await Drain(engine.Submit(Prompts[0], sampled, Ct));
        var crowd = Prompts.Skip(1).Select(p => Drain(engine.Submit(p, sampled with { Seed = null, MaxTokens = 24 }, Ct))).ToList();
        var again = await Drain(engine.Submit(Prompts[0], sampled, Ct));
        await Task.WhenAll(crowd);
        Assert.Equal(alone.Select(t => t.TokenId), again.Select(t => t.TokenId));
        var other = await Drain(engine.Submit(Prompts[0], sampled with { Seed = 99 }, Ct));
        Assert.NotEqual(alone.Select(t => t.TokenId), other.Select(t => t.TokenId));
    }

    [Fact]
    public async Task Log_probabilities_are_those_of_the_model_and_stop_tokens_end_a_sequence()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        using var engine = new BatchEngine(model);
        var greedy = await Drain(engine.Submit(Prompts[1], new SamplingParams { MaxTokens = 6, TopLogprobs = 3 }, Ct));
        foreach (var t in greedy)
        {
            Assert.Equal(3, t.Top!.Length);
            Assert.Equal(t.Top[0].TokenId, t.TokenId); // greedy picks the most probable token
            Assert.Equal(t.Top[0].Logprob, t.Logprob);
            Assert.True(t.Top[0].Logprob >= t.Top[1].Logprob && t.Top[1].Logprob >= t.Top[2].Logprob);
            Assert.True(t.Logprob < 0);
        }
        // The first token's log-probability matches a plain forward pass.
        using (Oml.Engine.Torch.NoGrad())
        using (var logits = Generator.NextTokenLogits(model, [Prompts[1]]))
        using (var lsm = logits.To(Oml.Engine.DType.Float32).LogSoftmax(-1))
        {
            var row = lsm.ToArray<float>();
            Assert.Equal(row[greedy[0].TokenId], greedy[0].Logprob, 1e-4);
        }

        // The third greedy token as a stop token: the sequence ends there with "stop".
        var stopped = await Drain(engine.Submit(Prompts[1], new SamplingParams { MaxTokens = 6, StopTokenIds = [greedy[2].TokenId] }, Ct));
        int at = greedy.FindIndex(t => t.TokenId == greedy[2].TokenId);
        Assert.Equal(at + 1, stopped.Count);
        Assert.Equal("stop", stopped[^1].FinishReason);
        Assert.True(stopped[^1].IsStopToken);
    }

    [Fact]
    public async Task A_cancelled_sequence_leaves_the_batch_and_the_others_go_on()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        using var engine = new BatchEngine(model);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var longOne = engine.Submit(Prompts[0], new SamplingParams { MaxTokens = 400 }, cancel.Token);
        var other = Drain(engine.Submit(Prompts[1], new SamplingParams { MaxTokens = 30 }, Ct));
        await longOne.ReadAsync(Ct);
        cancel.Cancel();
        int rest = 0;
        await foreach (var _ in longOne.ReadAllAsync(Ct)) rest++;
        Assert.True(rest < 398, $"the cancelled sequence went on for {rest} tokens");
        Assert.Equal(30, (await other).Count);
        var expected = Generator.Generate(model, [Prompts[1]], new GenerationOptions { MaxNewTokens = 30, EosTokenIds = [] }).Sequences[0].OutputIds;
        Assert.Equal(expected, (await other).Select(t => t.TokenId));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_failed_prefill_fails_the_rows_it_admitted_and_the_running_rows_decode_on(bool keepEnded)
    {
        // A request whose prefill fails (here a stand-in for out of memory or a kernel error) must not take down the
        // requests already decoding, whether it would have joined the batch cache's spare rows or a cache of its own.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        int[] poison = [9, 9, 9];
        using var engine = new BatchEngine(model, new BatchEngineOptions
        {
            KeepEndedRows = keepEnded,
            BeforePrefill = contexts => { if (contexts.Any(c => c.SequenceEqual(poison))) throw new InvalidOperationException("prefill failed"); },
        });
        var running = engine.Submit(Prompts[0], new SamplingParams { MaxTokens = 300 }, Ct);
        var first = await running.ReadAsync(Ct);
        var failed = new List<Task<List<GeneratedToken>>>();
        for (int i = 0; i < 3; i++)
        {
            failed.Add(Drain(engine.Submit(poison, new SamplingParams { MaxTokens = 5 }, Ct)));
            await Task.Delay(5, Ct);
        }
        foreach (var f in failed)
            Assert.Equal("prefill failed", (await Assert.ThrowsAsync<InvalidOperationException>(() => f)).Message);
        var rest = await Drain(running);
        var expected = Generator.Generate(model, [Prompts[0]], new GenerationOptions { MaxNewTokens = 300, EosTokenIds = [] }).Sequences[0].OutputIds;
        Assert.Equal(expected, new[] { first }.Concat(rest).Select(t => t.TokenId));

        // And the engine serves the next request as if nothing happened.
        var next = await Drain(engine.Submit(Prompts[1], new SamplingParams { MaxTokens = 8 }, Ct));
        Assert.Equal(Generator.Generate(model, [Prompts[1]], new GenerationOptions { MaxNewTokens = 8, EosTokenIds = [] }).Sequences[0].OutputIds, next.Select(t => t.TokenId));
    }

    [Fact]
    public async Task Under_a_tiny_cache_budget_the_engine_runs_smaller_batches_with_the_same_tokens()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var shape = KvCacheShape.Of(model);
        // Eight prompts of 16 tokens, 8 new tokens each: a batch of n rows admitted together needs sources of 16n slots
        // (the prefill's cache) and a cache of n × Capacity(16, 7) = 23n slots. The budget fits two such rows (with room
        // for the second to join a few steps after the first) but never three.
        var prompts = Enumerable.Range(0, 8).Select(i => Enumerable.Range(10 + 20 * i, 16).ToArray()).ToArray();
        var sampling = new SamplingParams { MaxTokens = 8 };
        long two = shape.RebuildPeakBytes(2 * 16, 2 * 23), three = shape.RebuildPeakBytes(3 * 16, 3 * 23);
        long budget = two + shape.BytesPerToken * 12;
        Assert.True(budget < three);

        List<GeneratedToken>[] unbounded;
        using (var free = new BatchEngine(model, new BatchEngineOptions { MaxBatchSize = 8 }))
            unbounded = await Task.WhenAll(prompts.Select(p => Drain(free.Submit(p, sampling, Ct))));

        using var engine = new BatchEngine(model, new BatchEngineOptions { MaxBatchSize = 8, KvCacheBudgetBytes = budget });
        var sizes = new System.Collections.Concurrent.ConcurrentBag<int>();
        engine.Stepped += sizes.Add;
        var results = await Task.WhenAll(prompts.Select(p => Drain(engine.Submit(p, sampling, Ct))));
        Assert.True(sizes.Max() == 2, $"batch sizes under the budget: {string.Join(",", sizes.Order())}");
        Assert.Equal(0, engine.Preemptions);
        for (int i = 0; i < prompts.Length; i++)
        {
            var expected = Generator.Generate(model, [prompts[i]], new GenerationOptions { MaxNewTokens = 8, EosTokenIds = [] }).Sequences[0].OutputIds;
            Assert.Equal(expected, results[i].Select(t => t.TokenId));
            Assert.Equal(unbounded[i].Select(t => t.TokenId), results[i].Select(t => t.TokenId));
        }

        // A request that could not fit even alone is refused, not queued for ever.
        var ex = Assert.Throws<ArgumentException>(() => engine.Submit(prompts[0], new SamplingParams { MaxTokens = 400 }, Ct));
        Assert.Contains("budget", ex.Message);
        Assert.Throws<ArgumentException>(() => new BatchEngine(model, new BatchEngineOptions { KvCacheBudgetBytes = 0 }));
    }

    [Fact]
    public async Task Rows_that_outgrow_the_budget_are_set_aside_and_resume_where_they_stopped()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var shape = KvCacheShape.Of(model);
        // Three prompts of 8 tokens, 300 new tokens each: admitted together into a cache of 3 × Capacity(8, 299) = 3 × 264
        // slots; after 256 steps it is full and grows to 3 × Capacity(264, 43) = 3 × 307. The budget holds two rows of
        // that but not three: the latest to arrive is set aside, and comes back (prefilling its prompt and the 256 tokens
        // it had) once the others are done.
        var prompts = new[] { new[] { 5, 17, 99, 3, 250, 7, 8, 9 }, new[] { 400, 12, 13, 14, 15, 16, 17, 18 }, new[] { 42, 43, 44, 45, 46, 47, 48, 49 } };
        var sampling = new SamplingParams { MaxTokens = 300 };
        long keepTwo = shape.RebuildPeakBytes(3 * 264, 2 * 307), keepThree = shape.RebuildPeakBytes(3 * 264, 3 * 307);
        long budget = (keepTwo + keepThree) / 2;
        Assert.True(shape.RebuildPeakBytes(3 * 8, 3 * 264) <= budget && shape.SequenceBytes(8 + 300) <= budget);

        using var engine = new BatchEngine(model, new BatchEngineOptions { KvCacheBudgetBytes = budget });
        int maxBatch = 0;
        engine.Stepped += b => maxBatch = Math.Max(maxBatch, b);
        var results = await Task.WhenAll(prompts.Select(p => Drain(engine.Submit(p, sampling, Ct))));
        Assert.True(engine.Preemptions >= 1, "no row was set aside");
        Assert.InRange(maxBatch, 2, 3);
        for (int i = 0; i < prompts.Length; i++)
        {
            var expected = Generator.Generate(model, [prompts[i]], new GenerationOptions { MaxNewTokens = 300, EosTokenIds = [] }).Sequences[0].OutputIds;
            Assert.Equal(expected, results[i].Select(t => t.TokenId));
            Assert.Equal("length", results[i][^1].FinishReason);
        }
        Assert.Equal(0, engine.Waiting);
    }

    /// <summary>The tokens <paramref name="prompt"/> gets alone from <see cref="Generator"/>, greedy, no stop token.</summary>
    private static int[] Alone(CausalLM model, int[] prompt, int tokens) =>
        Generator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = tokens, EosTokenIds = [] }).Sequences[0].OutputIds;

    /// <summary>A long greedy request decoding; the decoder waits after its first step until <paramref name="requests"/>
    /// are queued (so that they arrive while it runs). Returns the long request's tokens, each request's tokens and the
    /// live rows of each decode step.</summary>
    private static async Task<(int[] Long, List<GeneratedToken>[] Results, List<int> Steps)> BesideALongRow(BatchEngine engine, int longTokens,
        List<(IReadOnlyList<int>, SamplingParams)> requests)
    {
        using var queued = new ManualResetEventSlim();
        var steps = new List<int>();
        engine.Stepped += n =>
        {
            steps.Add(n);
            if (steps.Count == 1) queued.Wait(Ct);
        };
        var longOne = engine.Submit(Prompts[2], new SamplingParams { MaxTokens = longTokens }, Ct);
        var firstOfLong = await longOne.ReadAsync(Ct);
        var readers = engine.SubmitAll(requests, Ct);
        queued.Set();
        var results = await Task.WhenAll(readers.Select(Drain));
        var restOfLong = await Drain(longOne);
        return ([.. restOfLong.Prepend(firstOfLong).Select(t => t.TokenId)], results, steps);
    }

    /// <summary>Prompts of 1 to 16 tokens, all different, for tests that queue many at once.</summary>
    /// <summary>Asks one token for every prompt, all queued together, and checks each answer is its expected token,
    /// ended by the length limit.</summary>
    private static async Task AssertOneTokenEach(BatchEngine engine, int[][] prompts, IReadOnlyList<int> expected)
    {
        var results = await Task.WhenAll(engine.SubmitAll([.. prompts.Select(p => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 1 }))], Ct).Select(Drain));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal([(expected[i], "length")], results[i].Select(t => (t.TokenId, t.FinishReason)));
    }

    private static int[][] ManyPrompts(int count) =>
        [.. Enumerable.Range(0, count).Select(i => Enumerable.Range(0, 1 + i % 16).Select(j => (i * 37 + j * 11 + 3) % 500).ToArray())];

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny")]
    public async Task Requests_queued_together_are_prefilled_together_and_decode_as_if_alone(string fixture)
    {
        // The served verification's shape: many short prompts at once, each asking for 3 tokens. Queued together they
        // cost one prefill, one cache rebuild (the rows joining) and two decode steps in all, and each row still gets
        // the tokens it gets alone. The prefill's tokens stay on the device for the first decode step and come to the
        // host with its tokens: two waits for the device in all, one a step.
        using var model = ModelFolder.Load(Fixtures.Model(fixture));
        var prompts = ManyPrompts(40);
        var expected = prompts.Select(p =>
            Generator.Generate(model, [p], new GenerationOptions { MaxNewTokens = 3, EosTokenIds = [] }).Sequences[0].OutputIds).ToList();
        using var engine = new BatchEngine(model);
        var readers = engine.SubmitAll([.. prompts.Select(p => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 3 }))], Ct);
        var results = await Task.WhenAll(readers.Select(Drain));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(expected[i], results[i].Select(t => t.TokenId));
        var c = engine.Counters;
        Assert.Equal((1, 40, 2, 80, 1, 2), (c.Prefills, c.PrefilledRows, c.DecodeSteps, c.DecodedRows, c.Rebuilds, c.HostSyncs));
    }

    [Theory]
    [InlineData(true, 4)]
    [InlineData(false, 15)]
    public async Task Rows_that_end_at_different_steps_leave_without_a_rebuild_each(bool keepEnded, int rebuilds)
    {
        // 16 rows asking for 1 to 16 tokens end one a step. With KeepEndedRows (the default on a GPU), a row that ends
        // stays in the cache as a dead row until a rebuild is due anyway (here: when the dead outnumber the live), so the
        // cache is rebuilt a few times, not once a step; either way every row decodes as it would alone.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompts = ManyPrompts(16);
        var expected = prompts.Select((p, i) =>
            Generator.Generate(model, [p], new GenerationOptions { MaxNewTokens = i + 1, EosTokenIds = [] }).Sequences[0].OutputIds).ToList();
        using var engine = new BatchEngine(model, new BatchEngineOptions { KeepEndedRows = keepEnded });
        var steps = new List<int>();
        engine.Stepped += steps.Add;
        var readers = engine.SubmitAll([.. prompts.Select((p, i) => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = i + 1 }))], Ct);
        var results = await Task.WhenAll(readers.Select(Drain));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(expected[i], results[i].Select(t => t.TokenId));
            Assert.Equal("length", results[i][^1].FinishReason);
        }
        var c = engine.Counters;
        // The row asking for one token is answered by a pass of its own (one prefill and one wait more), the other 15 are
        // prefilled together and decoded.
        Assert.Equal((2, 15, 16), (c.Prefills, c.DecodeSteps, c.HostSyncs));
        // The live rows of each step, dead rows not counted.
        Assert.Equal([.. Enumerable.Range(1, 15).Reverse()], steps);
        // Dead rows kept: the join, then whenever the dead outnumber the live, at 7, 3 and 1 live rows. Else the join and
        // one a step while rows end.
        Assert.Equal(rebuilds, c.Rebuilds);
    }

    [Fact]
    public async Task A_first_token_kept_on_the_device_still_ends_its_row_when_it_is_a_stop_token()
    {
        // Greedy rows admitted together are decoded once before their first token reaches the host; a row whose first
        // token is a stop token ends with it, and the token decoded after it is dropped.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var alone = Generator.Generate(model, [Prompts[1]], new GenerationOptions { MaxNewTokens = 4, EosTokenIds = [] }).Sequences[0].OutputIds;
        using var engine = new BatchEngine(model);
        var readers = engine.SubmitAll([(Prompts[1], new SamplingParams { MaxTokens = 4, StopTokenIds = [alone[0]] }), (Prompts[1], new SamplingParams { MaxTokens = 4 }),
            (Prompts[0], new SamplingParams { MaxTokens = 1 })], Ct);
        var stopped = await Drain(readers[0]);
        Assert.Equal([(alone[0], "stop")], stopped.Select(t => (t.TokenId, t.FinishReason)));
        Assert.Equal(alone, (await Drain(readers[1])).Select(t => t.TokenId));
        Assert.Equal("length", Assert.Single(await Drain(readers[2])).FinishReason);
        // The two longer requests are prefilled together; the one-token request in a pass of its own.
        Assert.Equal(2, engine.Counters.Prefills);
    }

    [Theory]
    [InlineData("llama-tiny", false)]
    [InlineData("llama-tiny", true)]
    [InlineData("qwen3-tiny", false)]
    [InlineData("qwen3-tiny", true)]
    public async Task Requests_for_one_token_cost_one_pass_and_never_join_the_decode(string fixture, bool oneLength)
    {
        // Verification's answers: many keys, one token each. The prefill's token is each one's last, so queued together
        // they cost one forward pass and one wait for the device, no cache rebuild and no decode step, and each gets the
        // token it gets alone. Prompts of one length take plain causal attention (no mask), others a padding mask.
        using var model = ModelFolder.Load(Fixtures.Model(fixture));
        var prompts = oneLength
            ? [.. Enumerable.Range(0, 24).Select(i => Enumerable.Range(0, 9).Select(j => (i * 31 + j * 7 + 5) % 500).ToArray())]
            : ManyPrompts(24);
        var expected = prompts.Select(p => Alone(model, p, 1)[0]).ToList();
        using var engine = new BatchEngine(model);
        await AssertOneTokenEach(engine, prompts, expected);
        var c = engine.Counters;
        Assert.Equal((1, 24, 0, 0, 0, 1), (c.Prefills, c.PrefilledRows, c.DecodeSteps, c.DecodedRows, c.Rebuilds, c.HostSyncs));
        // Running is updated by the decoder after the step that answered the last reader: wait for it.
        Assert.True(SpinWait.SpinUntil(() => engine.Running == 0, TimeSpan.FromSeconds(10)), $"{engine.Running} still running");
    }

    [Fact]
    public async Task Without_the_one_token_pass_one_token_requests_join_the_batch_and_give_the_same_tokens()
    {
        // OneTokenPass = false (the default on a CUDA device): one-token requests are prefilled into the batch like any
        // other; the same tokens, and a cache budget again.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompts = ManyPrompts(12);
        var expected = prompts.Select(p => Alone(model, p, 1)[0]).ToList();
        using var engine = new BatchEngine(model, new BatchEngineOptions { OneTokenPass = false });
        await AssertOneTokenEach(engine, prompts, expected);
        var c = engine.Counters;
        // Prefilled together, as any requests; with nothing else running, their tokens come to the host at once: no
        // batch cache is built for them and no decode step runs (it would compute tokens nobody asked for).
        Assert.Equal((1, 12, 0, 0, 0, 1), (c.Prefills, c.PrefilledRows, c.DecodeSteps, c.DecodedRows, c.Rebuilds, c.HostSyncs));
        using var budgeted = new BatchEngine(model, new BatchEngineOptions { OneTokenPass = false, KvCacheBudgetBytes = KvCacheShape.Of(model).SequenceBytes(8) });
        Assert.Throws<ArgumentException>(() => budgeted.Submit(Enumerable.Range(0, 40).ToArray(), new SamplingParams { MaxTokens = 1 }, Ct));
    }

    [Fact]
    public async Task Joined_one_token_requests_skip_the_decode_only_when_nothing_else_runs()
    {
        // Without the one-token pass, one-token requests prefilled beside a longer one come back with its decode step's
        // tokens; prefilled alone, their tokens come to the host at once with no decode step. Either way each gets the
        // token it gets alone, and a request after them decodes as it does alone.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompts = ManyPrompts(6);
        var one = prompts.Select(p => Alone(model, p, 1)[0]).ToList();
        using var engine = new BatchEngine(model, new BatchEngineOptions { OneTokenPass = false });
        var readers = engine.SubmitAll([(prompts[0], new SamplingParams { MaxTokens = 5 }),
            .. prompts.Select(p => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 1 }))], Ct);
        var results = await Task.WhenAll(readers.Select(Drain));
        Assert.Equal(Alone(model, prompts[0], 5), results[0].Select(t => t.TokenId));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal([(one[i], "length")], results[i + 1].Select(t => (t.TokenId, t.FinishReason)));
        var c = engine.Counters;
        Assert.Equal((1, 7, 4), (c.Prefills, c.PrefilledRows, c.DecodeSteps));   // the long request's 4 tokens after its first

        await AssertOneTokenEach(engine, prompts, one);
        var after = engine.Counters;
        Assert.Equal((2, 4, c.Rebuilds, c.HostSyncs + 1), (after.Prefills, after.DecodeSteps, after.Rebuilds, after.HostSyncs));

        var last = await Drain(engine.Submit(prompts[3], new SamplingParams { MaxTokens = 3 }, Ct));
        Assert.Equal(Alone(model, prompts[3], 3), last.Select(t => t.TokenId));
        // Running is updated by the decoder after the step that answered the last reader: wait for it.
        Assert.True(SpinWait.SpinUntil(() => engine.Running == 0, TimeSpan.FromSeconds(10)), $"{engine.Running} still running");
    }

    [Fact]
    public async Task A_first_token_that_is_a_stop_token_ends_its_row_when_no_decode_step_runs()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompts = ManyPrompts(4);
        var one = prompts.Select(p => Alone(model, p, 1)[0]).ToList();
        using var engine = new BatchEngine(model, new BatchEngineOptions { OneTokenPass = false });
        var readers = engine.SubmitAll([.. prompts.Select((p, i) =>
            ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 1, StopTokenIds = i % 2 == 0 ? [one[i]] : [] }))], Ct);
        var results = await Task.WhenAll(readers.Select(Drain));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal([(one[i], i % 2 == 0 ? "stop" : "length")], results[i].Select(t => (t.TokenId, t.FinishReason)));
        Assert.Equal(0, engine.Counters.DecodeSteps);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task One_token_batches_and_longer_requests_in_turn_give_the_tokens_each_gets_alone(bool keepEnded)
    {
        // A batch with a row that reports log-probabilities brings its tokens to the host in the prefill (none stay on
        // the device); then batches of one-token rows, which skip the decode, alternate with longer requests, with ended
        // rows dropped at once or kept as dead rows.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompts = ManyPrompts(6);
        var one = prompts.Select(p => Alone(model, p, 1)[0]).ToList();
        using var engine = new BatchEngine(model, new BatchEngineOptions { OneTokenPass = false, KeepEndedRows = keepEnded });
        var r = await Task.WhenAll(engine.SubmitAll([.. prompts.Select((p, i) =>
            ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 1, TopLogprobs = i == 2 ? 1 : null }))], Ct).Select(Drain));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal([(one[i], "length")], r[i].Select(t => (t.TokenId, t.FinishReason)));
        for (int k = 0; k < 4; k++)
        {
            await AssertOneTokenEach(engine, prompts, one);
            var longer = await Drain(engine.Submit(prompts[k], new SamplingParams { MaxTokens = 4 }, Ct));
            Assert.Equal(Alone(model, prompts[k], 4), longer.Select(t => t.TokenId));
        }
    }

    [Theory]
    [InlineData(false)]   // the batch is full (one row)
    [InlineData(true)]    // the running row fills the cache budget
    public async Task A_full_batch_or_cache_does_not_hold_back_one_token_requests(bool byCache)
    {
        // A one-token request needs no row of the batch and no cache: it is answered at the next step, not after the long
        // generation that fills the batch or its cache budget.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        int[] longPrompt = [5, 17, 99, 3, 250, 7, 8, 9], shortPrompt = [400, 12, 13];
        var options = byCache
            ? new BatchEngineOptions { KvCacheBudgetBytes = KvCacheShape.Of(model).SequenceBytes(longPrompt.Length + 300) * 5 / 4 }
            : new BatchEngineOptions { MaxBatchSize = 1 };
        using var engine = new BatchEngine(model, options);
        // The decoder waits after its first step until the request is queued, and after its second until the test has its
        // answer: answered later than the second step, it would never come (the test fails on the time-out).
        using var queued = new ManualResetEventSlim();
        using var answered = new ManualResetEventSlim();
        int steps = 0;
        engine.Stepped += _ =>
        {
            int n = Interlocked.Increment(ref steps);
            if (n == 1) queued.Wait(Ct);
            if (n == 2) answered.Wait(Ct);
        };
        var longOne = engine.Submit(longPrompt, new SamplingParams { MaxTokens = 300 }, Ct);
        await longOne.ReadAsync(Ct);
        var one = engine.Submit(shortPrompt, new SamplingParams { MaxTokens = 1 }, Ct);
        queued.Set();
        GeneratedToken answer;
        try { answer = Assert.Single(await Drain(one).WaitAsync(TimeSpan.FromSeconds(60), Ct)); }
        finally { answered.Set(); }
        Assert.Equal(Alone(model, shortPrompt, 1)[0], answer.TokenId);
        Assert.Equal(299, (await Drain(longOne)).Count);
    }

    [Theory]
    [InlineData(true)]    // the one-token requests queued first
    [InlineData(false)]   // the longer one first
    public async Task One_token_requests_queued_with_a_longer_one_still_skip_the_decode(bool oneTokenFirst)
    {
        // Admissions of one step are of one kind: the one-token requests take their own pass and the longer request alone
        // joins the batch, so the decode steps decode its row only.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        int[] longPrompt = [5, 17, 99, 3, 250, 7, 8, 9];
        var shorts = Enumerable.Range(0, 8).Select(i => new[] { 10 + i, 20 + i, 30 }).ToList();
        var requests = shorts.Select(p => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 1 })).ToList();
        var longRequest = ((IReadOnlyList<int>)longPrompt, new SamplingParams { MaxTokens = 3 });
        if (oneTokenFirst) requests.Add(longRequest); else requests.Insert(0, longRequest);
        using var engine = new BatchEngine(model);
        var results = await Task.WhenAll(engine.SubmitAll(requests, Ct).Select(Drain));
        int first = oneTokenFirst ? 0 : 1;
        for (int i = 0; i < 8; i++)
            Assert.Equal(Alone(model, shorts[i], 1)[0], Assert.Single(results[first + i]).TokenId);
        Assert.Equal(Alone(model, longPrompt, 3), results[oneTokenFirst ? 8 : 0].Select(t => t.TokenId));
        var c = engine.Counters;
        Assert.Equal((2, 9, 2, 2), (c.Prefills, c.PrefilledRows, c.DecodeSteps, c.DecodedRows));
    }

    [Fact]
    public async Task A_one_token_request_needs_no_room_in_the_cache_budget()
    {
        // Refused before: its prompt's cache would not fit the budget. It keeps no cache, so only the context bounds it.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompt = Enumerable.Range(0, 40).ToArray();
        using var engine = new BatchEngine(model, new BatchEngineOptions { KvCacheBudgetBytes = KvCacheShape.Of(model).SequenceBytes(8) });
        Assert.Throws<ArgumentException>(() => engine.Submit(prompt, new SamplingParams { MaxTokens = 2 }, Ct));
        var reader = engine.Submit(prompt, new SamplingParams { MaxTokens = 1 }, Ct);
        Assert.Single(await Drain(reader));
    }

    [Fact]
    public async Task A_one_token_request_gives_the_token_and_log_probabilities_of_a_longer_ones_first()
    {
        // The one-pass path samples as the batch's path does: greedy with log-probabilities and seeded sampling give the
        // first token (and its log-probability and alternatives) of the same request asking for more.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var kinds = new[]
        {
            new SamplingParams { TopLogprobs = 3 },
            new SamplingParams { Temperature = 1.0, Seed = 11, TopLogprobs = 0 },
            new SamplingParams { StopTokenIds = [7] },
        };
        for (int i = 0; i < kinds.Length; i++)
        {
            using var a = new BatchEngine(model);
            var one = Assert.Single(await Drain(a.Submit(Prompts[i], kinds[i] with { MaxTokens = 1 }, Ct)));
            Assert.Equal(0, a.Counters.DecodeSteps);
            using var b = new BatchEngine(model);
            var first = (await Drain(b.Submit(Prompts[i], kinds[i] with { MaxTokens = 4 }, Ct)))[0];
            Assert.Equal(first.TokenId, one.TokenId);
            Assert.Equal(first.Logprob, one.Logprob);
            Assert.Equal(first.Top, one.Top);
            Assert.Equal(kinds[i].StopTokenIds.Contains(one.TokenId) ? "stop" : "length", one.FinishReason);
        }
    }

    [Fact]
    public async Task One_token_requests_that_arrive_while_a_batch_runs_leave_its_rows_and_tokens_alone()
    {
        // A long request decoding; one-token requests queued meanwhile are answered by a pass of their own and never join
        // its batch: the long row decodes alone every step (one row a step) and its tokens are those it gets alone.
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var prompts = ManyPrompts(12);
        using var engine = new BatchEngine(model);
        var (longTokens, results, steps) = await BesideALongRow(engine, 60, [.. prompts.Select(p => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 1 }))]);
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(Alone(model, prompts[i], 1)[0], Assert.Single(results[i]).TokenId);
        Assert.Equal(Alone(model, Prompts[2], 60), longTokens);
        var c = engine.Counters;
        Assert.Equal((2, 13, 59, 59), (c.Prefills, c.PrefilledRows, c.DecodeSteps, c.DecodedRows));
        Assert.All(steps, n => Assert.Equal(1, n));
    }

    [Theory]
    [InlineData("llama-tiny", false)]
    [InlineData("llama-tiny", true)]
    [InlineData("qwen3-tiny", false)]
    public async Task Requests_that_join_a_running_batch_are_prefilled_into_its_spare_rows_without_a_rebuild(string fixture, bool keepEnded)
    {
        // A rebuild leaves spare rows and columns in the batch cache; prompts that arrive while a batch runs are
        // prefilled straight into them, right-aligned with the running rows, and decode as they would alone.
        using var model = ModelFolder.Load(Fixtures.Model(fixture));
        var prompts = ManyPrompts(8);
        using var engine = new BatchEngine(model, new BatchEngineOptions { KeepEndedRows = keepEnded });
        // The decoder waits after its first step until the 8 are queued, so that they join the running row at the second.
        var (longTokens, results, steps) = await BesideALongRow(engine, 200, [.. prompts.Select(p => ((IReadOnlyList<int>)p, new SamplingParams { MaxTokens = 5 }))]);
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(Alone(model, prompts[i], 5), results[i].Select(t => t.TokenId));
        Assert.Equal(Alone(model, Prompts[2], 200), longTokens);
        var c = engine.Counters;
        // Two prefills; two rebuilds: the long row's start, and once the 8 rows have ended (dropping them; kept as dead
        // rows, they outnumber the live one).
        Assert.Equal((2, 199, 2), (c.Prefills, c.DecodeSteps, c.Rebuilds));
        Assert.Equal([1, 9, 9, 9, 9], steps.Take(5));
    }

    [Fact]
    public void A_batch_submission_with_one_bad_request_queues_none()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        using var engine = new BatchEngine(model);
        Assert.Throws<ArgumentException>(() => engine.SubmitAll([([1, 2], new SamplingParams()), ([100000], new SamplingParams())], Ct));
        Assert.Equal(0, engine.Waiting);
        Assert.Empty(engine.SubmitAll([], Ct));
    }

    [Fact]
    public void Bad_submissions_are_refused_before_queueing()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        using var engine = new BatchEngine(model);
        Assert.Throws<ArgumentException>(() => engine.Submit([], new SamplingParams(), Ct));
        Assert.Throws<ArgumentException>(() => engine.Submit([100000], new SamplingParams(), Ct));
        Assert.Throws<ArgumentException>(() => engine.Submit([1], new SamplingParams { MaxTokens = 0 }, Ct));
        Assert.Throws<ArgumentException>(() => engine.Submit([1, 2], new SamplingParams { MaxTokens = model.Config.MaxPositionEmbeddings }, Ct));
        Assert.Throws<ArgumentException>(() => engine.Submit([1], new SamplingParams { TopP = 0 }, Ct));
    }
}
