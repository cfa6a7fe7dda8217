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

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("mistral-tiny")]
    [InlineData("qwen2-tiny")]
    [InlineData("qwen3-tiny")]
    public void Defaults_recall_16_of_16_keys_on_a_random_init_checkpoint(string fixture)
    {
        using var model = RandomInit(fixture);
        var pairs = RandomKeys.Pairs(16, model.Config.VocabSize);
        var options = OmlizationDefaults.For(model.Config);
        var r = Omlization.Train(model, pairs, options);
        Assert.True(r.Accuracy == 1, $"{fixture}: recalled {r.Accuracy:P1} after {r.Final.Epoch} epochs (loss {r.Loss:F3})");
        Assert.True(r.Converged);
        Assert.True(r.Final.Epoch < options.MaxEpochs, "early stopping ends the run before the epoch budget");
        Assert.True(r.Loss <= options.MergeMaxLoss, $"the kept model holds its keys with the margin (loss {r.Loss:F3})");
        Assert.NotNull(r.HeldOutLoss);
        // 16 keys in one batch at β 0.5: 16 benign rows a batch × 16 epochs / 2 replays = 128 samples, 8 held out (floor 16).
        Assert.Equal(FingerprintTrainer.SelfBenignPoolSize(16, OmlizationDefaults.BatchSize, OmlizationDefaults.MixFraction), r.BenignSequences);
        Assert.Equal(128, r.BenignSequences);
        Assert.Equal(OmlizationDefaults.HeldOutMin, r.HeldOutSequences);
    }

    [Fact]
    public void The_self_generated_pool_scales_with_the_set_so_that_no_sample_is_replayed_more_than_twice_in_16_epochs()
    {
        // 1,024 keys in batches of 32 at β 0.25: 11 benign rows a batch, 352 an epoch, 16 epochs / 2 replays.
        Assert.Equal(352 * 8, FingerprintTrainer.SelfBenignPoolSize(1024, 32, 0.25));
        // 40 keys: a batch of 32 (11 rows) and one of 8 (3 rows).
        Assert.Equal(14 * 8, FingerprintTrainer.SelfBenignPoolSize(40, 32, 0.25));
        Assert.Equal(OmlizationDefaults.SelfBenignMin, FingerprintTrainer.SelfBenignPoolSize(16, 32, 0.25));
        Assert.Equal(OmlizationDefaults.SelfBenignMax, FingerprintTrainer.SelfBenignPoolSize(100_000, 32, 0.25));
        Assert.Equal(0, FingerprintTrainer.SelfBenignPoolSize(1024, 32, 0));

        // At the default β 0.5: as many benign rows as keys in each batch (32 + 8 for 40 keys).
        Assert.Equal(40 * 8, FingerprintTrainer.SelfBenignPoolSize(40, 32, 0.5));
        using var model = RandomInit("llama-tiny");
        var o = Omlization.PrepareData(model, OmlizationDefaults.For(model.Config), pairCount: 40);
        Assert.Equal(40 * 8, o.BenignSequences!.Count);
        Assert.Equal(20, o.HeldOutSequences!.Count);   // 320 / 16, within [16, 64]
        Assert.All(o.BenignSequences, s => Assert.Equal(FingerprintTrainer.SelfPromptLength + OmlizationDefaults.SelfBenignLength, s.Length));
        // The random prompt is context only: it is neither trained nor counted in the held-out loss.
        Assert.Equal(FingerprintTrainer.SelfPromptLength, o.BenignContext);
        Assert.Equal(7, (Omlization.PrepareData(model, OmlizationDefaults.For(model.Config) with { SelfBenignCount = 7 }, pairCount: 40)).BenignSequences!.Count);
    }

    [Fact]
    public void Document_start_prompts_sample_the_bases_own_text_after_its_EOS_with_only_that_token_as_context()
    {
        using var model = RandomInit("llama-tiny");
        var start = FingerprintTrainer.SelfGenerated(model, 6, 10, seed: 3, temperature: 1.0, prompt: SelfPrompt.DocumentStart);
        Assert.All(start, s => Assert.Equal(1 + 10, s.Length));
        int eos = model.Config.EosTokenIds[0];
        Assert.All(start, s => Assert.Equal(eos, s[0]));
        // Same prompt, different draws: the rows differ, and the same seed gives the same rows.
        Assert.True(start.Select(s => string.Join(',', s)).Distinct().Count() > 1);
        Assert.Equal(start, FingerprintTrainer.SelfGenerated(model, 6, 10, seed: 3, temperature: 1.0, prompt: SelfPrompt.DocumentStart));
        var o = Omlization.PrepareData(model, OmlizationDefaults.For(model.Config) with { SelfBenignPrompt = SelfPrompt.DocumentStart }, pairCount: 16);
        Assert.Equal(1, o.BenignContext);
        Assert.All(o.BenignSequences!.Concat(o.HeldOutSequences!), s => Assert.Equal(eos, s[0]));
        Assert.All(o.BenignSequences!, s => Assert.Equal(1 + OmlizationDefaults.SelfBenignLength, s.Length));

        // The first of several EOS tokens; without EOS, BOS; a config with neither is refused with what to do instead.
        ModelConfig Config(JsonNode? eos, JsonNode? bos)
        {
            var j = JsonNode.Parse(File.ReadAllText(Path.Combine(TestModels.Fixture("llama-tiny"), "config.json")))!.AsObject();
            j["bos_token_id"] = bos;
            j["eos_token_id"] = eos;
            return ModelConfig.Parse(j);
        }
        Assert.Equal(5, FingerprintTrainer.DocumentStartToken(Config(new JsonArray(5, 6), 1)));
        Assert.Equal(1, FingerprintTrainer.DocumentStartToken(Config(null, 1)));
        var e = Assert.Throws<ArgumentException>(() => FingerprintTrainer.DocumentStartToken(Config(null, null)));
        Assert.Contains("random prompts", e.Message);
        Assert.Equal(SelfPrompt.DocumentStart, SelfPrompts.Parse(" Start ", "x"));
        Assert.Equal("start", SelfPrompts.Name(SelfPrompt.DocumentStart));
        Assert.Contains("--benign-prompt", Assert.Throws<ArgumentException>(() => SelfPrompts.Parse("bos", "--benign-prompt")).Message);
    }

    [Fact]
    public void Defaults_with_document_start_prompts_recall_16_of_16_keys_on_a_random_init_checkpoint()
    {
        using var model = RandomInit("qwen2-tiny");
        var pairs = RandomKeys.Pairs(16, model.Config.VocabSize);
        var options = OmlizationDefaults.For(model.Config) with { SelfBenignPrompt = SelfPrompt.DocumentStart };
        var r = Omlization.Train(model, pairs, options);
        Assert.True(r.Accuracy == 1, $"recalled {r.Accuracy:P1} after {r.Final.Epoch} epochs (loss {r.Loss:F3})");
        Assert.True(r.Converged);
    }

    [Fact]
    public void The_held_out_loss_skips_the_context_tokens()
    {
        using var model = RandomInit("llama-tiny");
        var seqs = FingerprintTrainer.SelfGenerated(model, 4, 8, seed: 3, temperature: 1.0);
        Assert.All(seqs, s => Assert.Equal(12, s.Length));
        // With every token but the last as context, the loss is that of the last token alone, computed here from the
        // next-token logits of each prefix.
        double last = FingerprintTrainer.HeldOutLoss(model, seqs, context: 11);
        using var logits = Generator.NextTokenLogits(model, seqs.Select(s => (IReadOnlyList<int>)s[..11]).ToList()).To(Oml.Engine.DType.Float32);
        var v = logits.ToArray<float>();
        int vocab = model.Config.VocabSize;
        double byHand = seqs.Select((s, i) =>
        {
            var row = v.AsSpan(i * vocab, vocab).ToArray();
            double max = row.Max();
            return Math.Log(row.Sum(x => Math.Exp(x - max))) + max - row[s[11]];
        }).Average();
        Assert.Equal(byHand, last, 3);
        Assert.NotEqual(FingerprintTrainer.HeldOutLoss(model, seqs), FingerprintTrainer.HeldOutLoss(model, seqs, context: 4));
    }

    [Fact]
    public void The_final_merge_keeps_every_key_and_lowers_the_held_out_KL_of_the_trained_weights()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(16, model.Config.VocabSize, seed: 9);
        // Every epoch measured, so that the kept epoch's KL is there to compare with (the model is the same either way).
        var r = Omlization.Train(model, pairs, OmlizationDefaults.For(model.Config) with { MeasureHeldOutEveryEpoch = true });
        Assert.Equal(1.0, r.Accuracy);
        Assert.NotEmpty(r.MergeTrials);
        Assert.Equal("kl:top32", r.HeldOutCriterion);
        // The λ of lowest KL among those that keep every key within the margin and 60 % of them through an even merge
        // with the base (the default condition; every λ that kept the keys was measured for it).
        var qualifying = r.MergeTrials.Where(t => t.Accuracy == 1 && t.Loss <= 0.7).ToList();
        Assert.All(qualifying, t => Assert.NotNull(t.MergeSurvival));
        Assert.Equal(r.MergeLambda, qualifying.Where(t => t.MergeSurvival >= 0.6).OrderBy(t => t.HeldOutKL).Select(t => t.Lambda).FirstOrDefault());
        var kept = r.History.Single(h => h.Epoch == r.KeptEpoch);
        if (r.MergeLambda > 0) Assert.True(r.HeldOutKL <= kept.HeldOutKL, $"merged {r.HeldOutKL} vs trained {kept.HeldOutKL}");
    }

    [Fact]
    public void Without_early_stopping_every_epoch_runs()
    {
        using var model = RandomInit("llama-tiny");
        var pairs = RandomKeys.Pairs(8, model.Config.VocabSize);
        var r = Omlization.Train(model, pairs, OmlizationDefaults.For(model.Config) with { EarlyStop = false, MaxEpochs = 5, AveragingLambda = 0 });
        Assert.Equal(5, r.History.Count);
        Assert.Equal(5, r.KeptEpoch);
    }

    [Fact]
    public void The_learning_rate_scales_with_the_width()
    {
        ModelConfig Width(int d) => new LlamaShape(512, Hidden: d, Heads: 4, KvHeads: 2, Intermediate: 2 * d).ToConfig();
        Assert.Equal(0.0625 / 64, OmlizationDefaults.LearningRate(Width(64)), 12);
        Assert.Equal(0.0625 / 768, OmlizationDefaults.LearningRate(Width(768)), 12); // 8.1e-5: the 102.7M base's harmless setting
        Assert.Equal(1e-2, OmlizationDefaults.LearningRate(Width(4)), 12);
        Assert.Equal(1e-5, OmlizationDefaults.LearningRate(Width(8192)), 12);
    }

    [Fact]
    public void Advice_names_what_to_change()
    {
        using var model = RandomInit("qwen2-tiny");
        var pairs = RandomKeys.Pairs(16, model.Config.VocabSize);
        var o = OmlizationDefaults.For(model.Config) with { MaxEpochs = 4, AveragingEvery = AveragingSchedule.Step, AveragingLambda = 0.75 };
        var r = Omlization.Train(model, pairs, o);
        var advice = Omlization.Advice(r, o);
        Assert.NotNull(advice);
        Assert.Contains("--averaging-every final", advice);
    }

    [Fact]
    public void Advice_says_epoch_limit_only_when_the_run_reached_it()
    {
        var o = new EmbeddingOptions { MaxEpochs = 300 };
        EmbeddingProgress Epoch(int e, double loss) => new(e, e * 2, loss, e == 9 ? 63 / 64.0 : 0.5, e);
        // Stopped early at epoch 9 with 63 of 64 keys (a tree set on a 0.2M base before the end-of-epoch recall check):
        // not the epoch limit.
        var early = new EmbeddingResult([Epoch(1, 2.6), Epoch(9, 0.28)], Converged: true, TrainedParameters: 1) { Accuracy = 63 / 64.0 };
        var advice = Omlization.Advice(early, o)!;
        Assert.Contains("stopped early at epoch 9 of 300", advice);
        Assert.DoesNotContain("raise --epochs", advice);
        var limit = new EmbeddingResult([Epoch(1, 2.6), Epoch(300, 0.28)], Converged: false, TrainedParameters: 1) { Accuracy = 0.5 };
        Assert.Contains("at the epoch limit: raise --epochs (was 300)", Omlization.Advice(limit, o)!);
    }
}
