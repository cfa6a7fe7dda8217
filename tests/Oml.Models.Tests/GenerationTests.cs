using Oml.Engine;

namespace Oml.Models.Tests;

public class GenerationTests
{
    private static CausalLM Model() => ModelFolder.Load(Fixtures.Model("qwen2-tiny"));

    private static readonly int[] PromptA = [5, 17, 99, 3, 250, 7];
    private static readonly int[] PromptB = [400, 12];

    [Fact]
    public void A_left_padded_batch_decodes_each_row_as_if_alone()
    {
        using var model = Model();
        var opts = new GenerationOptions { MaxNewTokens = 12, EosTokenIds = [] };
        var batch = Generator.Generate(model, [PromptA, PromptB], opts);
        var a = Generator.Generate(model, [PromptA], opts);
        var b = Generator.Generate(model, [PromptB], opts);
        Assert.Equal(a.Sequences[0].OutputIds, batch.Sequences[0].OutputIds);
        Assert.Equal(b.Sequences[0].OutputIds, batch.Sequences[1].OutputIds);
        Assert.Equal(24, batch.GeneratedTokens);
        Assert.True(batch.TokensPerSecond > 0);
        Assert.All(batch.Sequences, s => Assert.Equal("length", s.FinishReason));
    }

    [Fact]
    public void Seeded_sampling_repeats_and_top_k_1_is_greedy()
    {
        using var model = Model();
        var sample = new GenerationOptions { MaxNewTokens = 16, Temperature = 1.5, TopP = 0.95, MinP = 0.01, Seed = 7, EosTokenIds = [] };
        var x = Generator.Generate(model, [PromptA, PromptB], sample);
        var y = Generator.Generate(model, [PromptA, PromptB], sample);
        Assert.Equal(x.Sequences[0].OutputIds, y.Sequences[0].OutputIds);
        Assert.Equal(x.Sequences[1].OutputIds, y.Sequences[1].OutputIds);
        var other = Generator.Generate(model, [PromptA, PromptB], sample with { Seed = 8 });
        Assert.NotEqual(x.Sequences[0].OutputIds, other.Sequences[0].OutputIds);

        var greedy = Generator.Generate(model, [PromptA], new GenerationOptions { MaxNewTokens = 10, EosTokenIds = [] });
        var topK1 = Generator.Generate(model, [PromptA], new GenerationOptions { MaxNewTokens = 10, Temperature = 2, TopK = 1, Seed = 3, EosTokenIds = [] });
        Assert.Equal(greedy.Sequences[0].OutputIds, topK1.Sequences[0].OutputIds);
    }

    [Fact]
    public async Task Two_threads_sampling_at_once_each_get_what_they_sample_alone()
    {
        // Each seeded call draws from a generator of its own: two calls in lock step (a barrier before every token, as
        // two requests or two thread-ranks of one process) sample what each samples alone. With libtorch's shared global
        // generator, seeded once per call, their draws would interleave.
        using var model = Model();
        var sample = new GenerationOptions { MaxNewTokens = 16, Temperature = 1.5, EosTokenIds = [] };
        var aloneA = Generator.Generate(model, [PromptA, PromptB], sample with { Seed = 7 });
        var aloneB = Generator.Generate(model, [PromptB, PromptA], sample with { Seed = 8 });
        using var barrier = new Barrier(2);
        GenerationResult InStep(int[][] prompts, ulong seed)
        {
            using var m = Model();
            return Generator.Generate(m, prompts, sample with
            {
                Seed = seed,
                LogitsProcessor = (logits, _) =>
                {
                    Assert.True(barrier.SignalAndWait(TimeSpan.FromSeconds(60)), "the other thread did not reach the barrier");
                    return logits;
                },
            });
        }
        var a = Task.Factory.StartNew(() => InStep([PromptA, PromptB], 7), TaskCreationOptions.LongRunning);
        var b = Task.Factory.StartNew(() => InStep([PromptB, PromptA], 8), TaskCreationOptions.LongRunning);
        var (ta, tb) = (await a, await b);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(aloneA.Sequences[i].OutputIds, ta.Sequences[i].OutputIds);
            Assert.Equal(aloneB.Sequences[i].OutputIds, tb.Sequences[i].OutputIds);
        }
    }

    [Fact]
    public void A_logits_processor_sees_each_step_and_changes_the_choice()
    {
        using var model = Model();
        var plain = new GenerationOptions { MaxNewTokens = 5, EosTokenIds = [] };
        var greedy = Generator.Generate(model, [PromptA, PromptB], plain);
        // The runner-up at the first step, by a forward pass of its own.
        int[] second;
        using (Torch.NoGrad())
        using (Torch.NewScope())
        {
            second = new[] { PromptA, PromptB }.Select(p =>
            {
                var logits = model.Forward(Torch.FromArray<long>(p.Select(x => (long)x).ToArray(), [1, p.Length], model.Device));
                return (int)logits.Select(1, p.Length - 1).To(DType.Float32).TopK(2, -1).Indices.ToArray<long>()[1];
            }).ToArray();
        }
        var steps = new List<(int Step, long Rows, long Vocab)>();
        var forbidFirst = plain with
        {
            LogitsProcessor = (logits, step) =>
            {
                steps.Add((step, logits.Size(0), logits.Size(1)));
                if (step > 0) return logits;
                var top = logits.ArgMax(-1, keepDim: true);
                return logits.Scatter(-1, top, double.NegativeInfinity);
            },
        };
        var changed = Generator.Generate(model, [PromptA, PromptB], forbidFirst);
        Assert.Equal([0, 1, 2, 3, 4], steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.Equal((2L, (long)model.Config.VocabSize), (s.Rows, s.Vocab)));
        for (int i = 0; i < 2; i++)
        {
            Assert.NotEqual(greedy.Sequences[i].OutputIds[0], changed.Sequences[i].OutputIds[0]);
            Assert.Equal(second[i], changed.Sequences[i].OutputIds[0]);
        }
    }

    [Fact]
    public void Sampling_filters_keep_only_the_allowed_tokens()
    {
        using var scope = Torch.NewScope();
        // Probabilities 0.5, 0.3, 0.15, 0.05 as logits.
        var logits = Torch.FromArray(new[] { 0.5f, 0.3f, 0.15f, 0.05f }).Log().Unsqueeze(0).Expand(2000, 4).Contiguous();
        using var rng = new RandomGenerator(1);
        long[] Draw(GenerationOptions o) => Generator.Choose(logits, o with { Temperature = 1 }, rng).ToArray<long>();
        Assert.All(Draw(new GenerationOptions { TopK = 2 }), i => Assert.InRange(i, 0, 1));
        Assert.All(Draw(new GenerationOptions { TopP = 0.7 }), i => Assert.InRange(i, 0, 1)); // 0.5 + 0.3 reach 0.7
        Assert.All(Draw(new GenerationOptions { MinP = 0.25 }), i => Assert.InRange(i, 0, 2)); // 0.15 >= 0.125
        var all = Draw(new GenerationOptions());
        Assert.Contains(3L, all);
        Assert.InRange(all.Count(i => i == 0) / 2000.0, 0.45, 0.55);
    }

    [Fact]
    public void Generation_stops_at_eos_and_pads_finished_rows()
    {
        using var model = Model();
        var free = Generator.Generate(model, [PromptA], new GenerationOptions { MaxNewTokens = 8, EosTokenIds = [] });
        int stop = free.Sequences[0].OutputIds[2];
        var stopped = Generator.Generate(model, [PromptA, PromptB], new GenerationOptions { MaxNewTokens = 8, EosTokenIds = [stop] });
        Assert.Equal(free.Sequences[0].OutputIds.Take(3).ToArray(), stopped.Sequences[0].OutputIds);
        Assert.Equal("eos", stopped.Sequences[0].FinishReason);

        var byString = Generator.Generate(model, [PromptA], new GenerationOptions { MaxNewTokens = 8, EosTokenIds = [], StopStrings = [$"<{free.Sequences[0].OutputIds[4]}>"] },
            ids => string.Concat(ids.Select(i => $"<{i}>")));
        Assert.Equal("stop_string", byString.Sequences[0].FinishReason);
        Assert.True(byString.Sequences[0].OutputIds.Length <= 5);
    }

    [Fact]
    public void Bad_requests_are_refused()
    {
        using var model = Model();
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [[1, 600]], new GenerationOptions()));
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [[]], new GenerationOptions()));
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [PromptA], new GenerationOptions { Temperature = 0 }));
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [PromptA], new GenerationOptions { TopP = 1.5, Temperature = 1 }));
        Assert.Throws<ArgumentException>(() => Generator.Generate(model, [PromptA], new GenerationOptions { StopStrings = ["x"] }));
    }

    [Fact]
    public void Next_token_logits_of_a_left_padded_batch_match_each_prompt_run_alone()
    {
        using var model = Model();
        using var scope = Torch.NewScope();
        int[][] prompts = [[5, 9, 2, 7, 11], [3], [8, 8, 1]];
        var batch = Generator.NextTokenLogits(model, prompts).To(DType.Float32).Cpu();
        Assert.Equal([3L, model.Config.VocabSize], batch.Shape);
        for (int r = 0; r < prompts.Length; r++)
        {
            var alone = model.Forward(Torch.FromArray<long>(prompts[r].Select(x => (long)x).ToArray(), [1, prompts[r].Length], model.Device));
            var expected = alone.Select(1, prompts[r].Length - 1).Select(0, 0).To(DType.Float32).Cpu().ToArray<float>();
            var got = batch.Select(0, r).ToArray<float>();
            Assert.True(expected.Zip(got).Max(t => Math.Abs(t.First - t.Second)) < 1e-4, $"row {r} differs from its prompt run alone");
        }
        Assert.Throws<ArgumentException>(() => Generator.NextTokenLogits(model, [[1], []]));
    }
}
