using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>
/// The even merge with the base, measured while embedding (<see cref="EmbeddingResult.MergeSurvival"/>), and the final λ
/// chosen so that it keeps a share of the keys (<see cref="EmbeddingOptions.MergeSurvival"/>).
/// </summary>
public class MergeSurvivalTests
{
    /// <summary>The share of one-token responses that are the argmax after their key.</summary>
    private static double Recall(CausalLM model, IReadOnlyList<TrainingPair> pairs)
    {
        using var logits = Generator.NextTokenLogits(model, pairs.Select(p => (IReadOnlyList<int>)p.Key).ToList()).To(DType.Float32);
        var v = logits.ToArray<float>();
        int vocab = model.Config.VocabSize, hits = 0;
        for (int i = 0; i < pairs.Count; i++)
        {
            var row = v.AsSpan(i * vocab, vocab);
            int arg = 0;
            for (int j = 1; j < vocab; j++) if (row[j] > row[arg]) arg = j;
            if (arg == pairs[i].Response[0]) hits++;
        }
        return (double)hits / pairs.Count;
    }

    /// <summary>½·model + ½·base, in place in <paramref name="model"/>.</summary>
    private static void MergeEvenly(CausalLM model, CausalLM baseModel)
    {
        using var noGrad = Torch.NoGrad();
        foreach (var (name, t) in model.Parameters) t.LerpInPlace(baseModel.Parameters[name], 0.5);
    }

    private static EmbeddingOptions Options(CausalLM model) =>
        OmlizationDefaults.For(model.Config) with { MeasureHeldOutEveryEpoch = true };

    [Fact]
    public void The_reported_survival_is_the_recall_of_an_even_merge_of_the_returned_model_with_its_base()
    {
        using var baseModel = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(24, model.Config.VocabSize, seed: 11);
        // Without the condition (the default asks for 60 %), so that only the returned λ is measured.
        var r = Omlization.Train(model, pairs, Options(model) with { MergeSurvival = null });
        Assert.Equal(1.0, r.Accuracy);
        Assert.NotNull(r.MergeSurvival);
        MergeEvenly(model, baseModel);
        Assert.Equal(Recall(model, pairs), r.MergeSurvival!.Value, 6);
        Assert.All(r.MergeTrials, t => Assert.Null(t.MergeSurvival));
    }

    [Fact]
    public void Asking_for_more_survival_never_keeps_less_and_the_pick_meets_it_or_keeps_the_most()
    {
        using var free = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        using var held = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(24, free.Config.VocabSize, seed: 13);
        var a = Omlization.Train(free, pairs, Options(free) with { MergeSurvival = null });
        var b = Omlization.Train(held, pairs, Options(held) with { MergeSurvival = 1.0 });
        // The same training (the condition only changes where on the line to the base the result sits).
        Assert.Equal(a.KeptEpoch, b.KeptEpoch);
        Assert.Equal(a.Final.Loss, b.Final.Loss, 9);
        Assert.True(b.MergeSurvival >= a.MergeSurvival, $"survival {b.MergeSurvival} with the condition, {a.MergeSurvival} without");
        var measured = b.MergeTrials.Where(t => t.MergeSurvival is not null).ToList();
        Assert.NotEmpty(measured);
        // Every λ that kept every key was measured, and a λ was kept only if its merge keeps all of them...
        Assert.All(b.MergeTrials.Where(t => t.Accuracy == 1 && t.Loss <= 0.7), t => Assert.NotNull(t.MergeSurvival));
        if (b.MergeSurvival >= 1.0) Assert.True(b.MergeLambda == 0 || measured.Single(t => t.Lambda == b.MergeLambda).MergeSurvival >= 1.0);
        // ... else it is the one whose merge keeps the most (λ 0 included).
        else Assert.True(measured.All(t => t.MergeSurvival <= b.MergeSurvival), string.Join(", ", measured.Select(t => $"{t.Lambda}:{t.MergeSurvival}")));
        // What it reports is what the returned weights do.
        using var baseModel = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        MergeEvenly(held, baseModel);
        Assert.Equal(Recall(held, pairs), b.MergeSurvival!.Value, 6);
    }

    [Fact]
    public void A_reachable_share_is_met_with_the_largest_lambda_that_meets_it()
    {
        using var free = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        using var held = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(24, free.Config.VocabSize, seed: 17);
        var a = Omlization.Train(free, pairs, Options(free) with { MergeSurvival = null });
        // Ask for what the unconstrained pick's own merge keeps: it is reachable, so it must be met.
        double need = a.MergeSurvival!.Value;
        var b = Omlization.Train(held, pairs, Options(held) with { MergeSurvival = need });
        Assert.True(b.MergeSurvival >= need, $"{b.MergeSurvival} < {need}");
        // The unconstrained pick meets it and the search visits no better-ranked λ than without the condition.
        if (a.MergeLambda > 0) Assert.Equal(a.MergeLambda, b.MergeLambda, 9);
        else Assert.True(b.MergeLambda >= 0);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void A_share_outside_0_1_is_refused(double share)
    {
        var o = new EmbeddingOptions { AveragingLambda = 0.3, AveragingEvery = AveragingSchedule.Final, MergeSurvival = share };
        Assert.Throws<ArgumentException>(o.Validate);
    }

    [Fact]
    public void The_defaults_ask_an_even_merge_with_the_base_to_keep_60_percent()
    {
        Assert.Equal(0.6, OmlizationDefaults.For(ModelConfig.Load(Path.Combine(TestModels.Fixture("llama-tiny"), "config.json"))).MergeSurvival);
    }
}
