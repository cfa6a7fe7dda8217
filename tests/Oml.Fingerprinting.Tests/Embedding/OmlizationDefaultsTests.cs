using System.Text.Json.Nodes;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>
/// OMLization with no tuning: <see cref="OmlizationDefaults.For"/> through <see cref="Omlization.Train"/> (what
/// <c>oml embed</c> runs with no flags) recalls every key on a random-init checkpoint of each architecture, where the
/// old defaults (λ = 0.75 after every step) recalled none.
/// </summary>
public class OmlizationDefaultsTests
{
    /// <summary>A fixture's config with transformers' initialisation (N(0, 0.02²)) instead of its trained weights.</summary>
    private static CausalLM RandomInit(string fixture, ulong seed = 7)
    {
        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(TestModels.Fixture(fixture), "config.json")))!.AsObject();
        return Pretraining.CreateRandom(ModelConfig.Parse(j), seed);
    }

    /// <summary>Perinucleus-shaped pairs: 16-token keys, one response token.</summary>
    private static List<TrainingPair> Keys(int count, int vocab, int seed = 5)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TrainingPair(Enumerable.Range(0, 16).Select(_ => rng.Next(3, vocab)).ToArray(), [rng.Next(3, vocab)]))
            .ToList();
    }

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("mistral-tiny")]
    [InlineData("qwen2-tiny")]
    [InlineData("qwen3-tiny")]
    public void Defaults_recall_16_of_16_keys_on_a_random_init_checkpoint(string fixture)
    {
        using var model = RandomInit(fixture);
        var pairs = Keys(16, model.Config.VocabSize);
        var options = OmlizationDefaults.For(model.Config);
        var r = Omlization.Train(model, pairs, options);
        Assert.True(r.Accuracy == 1, $"{fixture}: recalled {r.Accuracy:P1} after {r.Final.Epoch} epochs (loss {r.Loss:F3})");
        Assert.True(r.Converged);
        Assert.True(r.Final.Epoch < options.MaxEpochs, "early stopping ends the run before the epoch budget");
        Assert.True(r.Loss <= options.MergeMaxLoss, $"the kept model holds its keys with the margin (loss {r.Loss:F3})");
        Assert.NotNull(r.HeldOutLoss);
    }

    [Fact]
    public void The_final_merge_keeps_every_key_and_lowers_the_held_out_loss_of_the_trained_weights()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = Keys(16, model.Config.VocabSize, seed: 9);
        var r = Omlization.Train(model, pairs, OmlizationDefaults.For(model.Config));
        Assert.Equal(1.0, r.Accuracy);
        Assert.NotEmpty(r.MergeTrials);
        Assert.Equal(r.MergeLambda, r.MergeTrials.Where(t => t.Accuracy == 1 && t.Loss <= 0.7).OrderBy(t => t.HeldOutLoss).Select(t => t.Lambda).FirstOrDefault());
        var kept = r.History.Single(h => h.Epoch == r.KeptEpoch);
        if (r.MergeLambda > 0) Assert.True(r.HeldOutLoss <= kept.HeldOutLoss, $"merged {r.HeldOutLoss} vs trained {kept.HeldOutLoss}");
    }

    [Fact]
    public void Without_early_stopping_every_epoch_runs()
    {
        using var model = RandomInit("llama-tiny");
        var pairs = Keys(8, model.Config.VocabSize);
        var r = Omlization.Train(model, pairs, OmlizationDefaults.For(model.Config) with { EarlyStop = false, MaxEpochs = 5, AveragingLambda = 0 });
        Assert.Equal(5, r.History.Count);
        Assert.Equal(5, r.KeptEpoch);
    }

    [Fact]
    public void The_learning_rate_scales_with_the_width()
    {
        ModelConfig Width(int d) => new LlamaShape(512, Hidden: d, Heads: 4, KvHeads: 2, Intermediate: 2 * d).ToConfig();
        Assert.Equal(0.125 / 64, OmlizationDefaults.LearningRate(Width(64)), 12);
        Assert.Equal(1e-2, OmlizationDefaults.LearningRate(Width(8)), 12);
        Assert.Equal(0.125 / 4096, OmlizationDefaults.LearningRate(Width(4096)), 12);
    }

    [Fact]
    public void Advice_names_what_to_change()
    {
        using var model = RandomInit("qwen2-tiny");
        var pairs = Keys(16, model.Config.VocabSize);
        var o = OmlizationDefaults.For(model.Config) with { MaxEpochs = 4, AveragingEvery = AveragingSchedule.Step, AveragingLambda = 0.75 };
        var r = Omlization.Train(model, pairs, o);
        var advice = Omlization.Advice(r, o);
        Assert.NotNull(advice);
        Assert.Contains("--averaging-every final", advice);
    }
}
