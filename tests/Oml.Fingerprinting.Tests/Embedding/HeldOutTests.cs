using System.Security.Cryptography;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>
/// The held-out data of an embedding run: measured only where a decision uses them (early stopping, the kept epoch, the
/// merge's λ), with the same trained model as measuring every epoch; and the KL criterion (<see cref="HeldOutCriterion.KL"/>),
/// KL(base ‖ model) against the base's distribution recorded on the held-out sequences.
/// </summary>
public class HeldOutTests
{
    private static string Digest(CausalLM model)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, t) in model.Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            h.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            t.ForEachByteChunk(h.AppendData);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    [Theory]
    [InlineData(HeldOutCriterion.Tokens, 0.9)]
    [InlineData(HeldOutCriterion.KL, 0.9)]
    [InlineData(HeldOutCriterion.KL, 0.0)]   // no merge: the kept epoch's weights are returned (and measured once if no epoch was)
    public void Measuring_only_where_a_decision_needs_it_trains_the_same_model_with_fewer_passes(HeldOutCriterion criterion, double lambda)
    {
        (EmbeddingResult Result, string Digest) Run(bool everyEpoch)
        {
            using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            var options = OmlizationDefaults.For(model.Config) with
            {
                HeldOutCriterion = criterion, AveragingLambda = lambda, MeasureHeldOutEveryEpoch = everyEpoch, Seed = 4,
            };
            var r = Omlization.Train(model, RandomKeys.Pairs(16, model.Config.VocabSize, seed: 9), options);
            return (r, Digest(model));
        }
        var full = Run(everyEpoch: true);
        var thin = Run(everyEpoch: false);
        Assert.Equal(full.Digest, thin.Digest);
        Assert.Equal(full.Result.KeptEpoch, thin.Result.KeptEpoch);
        Assert.Equal(full.Result.MergeLambda, thin.Result.MergeLambda);
        Assert.Equal(full.Result.History.Select(h => (h.Epoch, h.Loss, h.Accuracy)), thin.Result.History.Select(h => (h.Epoch, h.Loss, h.Accuracy)));
        Assert.Equal(full.Result.Converged, thin.Result.Converged);
        Assert.Equal(full.Result.HeldOutLoss, thin.Result.HeldOutLoss);
        Assert.Equal(full.Result.HeldOutKL, thin.Result.HeldOutKL);
        Assert.Equal(1.0, thin.Result.Accuracy);
        // Every epoch measured in the full run; in the thin one none while the loss is outside the merge's margin, and
        // the values measured are the full run's.
        Assert.All(full.Result.History, h => Assert.NotNull(h.HeldOutLoss));
        var options0 = new EmbeddingOptions();
        for (int i = 0; i < thin.Result.History.Count; i++)
        {
            var h = thin.Result.History[i];
            if (h.Loss > options0.MergeMaxLoss) Assert.True(h.HeldOutSkipped && h.HeldOutLoss is null, $"epoch {h.Epoch} (loss {h.Loss:F3}) was measured");
            if (h.HeldOutLoss is { } v) Assert.Equal(full.Result.History[i].HeldOutLoss, v);
            Assert.Equal(h.HeldOutLoss is null, h.HeldOutSkipped);
            Assert.Equal(criterion == HeldOutCriterion.KL && h.HeldOutLoss is not null, h.HeldOutKL is not null);
        }
        Assert.Contains(thin.Result.History, h => h.HeldOutSkipped);
        Assert.True(thin.Result.HeldOutPasses < full.Result.HeldOutPasses, $"{thin.Result.HeldOutPasses} passes, {full.Result.HeldOutPasses} measuring everything");
        Assert.Equal(criterion == HeldOutCriterion.KL ? "kl:top32" : "tokens", thin.Result.HeldOutCriterion);
    }

    /// <summary>Self-generated held-out sequences of the llama-tiny fixture: a 4-token random prompt (context) and 12 sampled tokens.</summary>
    private static List<int[]> HeldOut(CausalLM model) => FingerprintTrainer.SelfGenerated(model, 6, 12, seed: 21, temperature: 1.0);

    [Fact]
    public void The_KL_is_zero_for_the_base_and_rises_with_drift()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        using var other = Pretraining.CreateRandom(model.Config, 3);
        var seqs = HeldOut(model);
        int context = FingerprintTrainer.SelfPromptLength;
        var (targets, baseLoss) = BenignTargets.Record(model, seqs, context, 16);
        var (loss0, kl0) = FingerprintTrainer.HeldOutKL(model, seqs, targets, context);
        Assert.Equal(0, kl0, 1e-5);
        Assert.Equal(baseLoss, loss0, 1e-4);
        Assert.Equal(FingerprintTrainer.HeldOutLoss(model, seqs, context: context), loss0, 1e-4);
        double last = kl0;
        for (int step = 0; step < 3; step++)
        {
            using (Torch.NoGrad())
                foreach (var (name, p) in model.Parameters) p.LerpInPlace(other.Parameters[name], 0.15);
            var (_, kl) = FingerprintTrainer.HeldOutKL(model, seqs, targets, context);
            Assert.True(kl > last + 1e-3, $"step {step}: KL {kl} after {last}");
            last = kl;
        }
    }

    private static double[] LogSoftmax(float[] row)
    {
        double max = row.Max();
        double lse = Math.Log(row.Sum(x => Math.Exp(x - max))) + max;
        return row.Select(x => x - lse).ToArray();
    }

    [Fact]
    public void The_KL_compares_each_position_that_predicts_a_token_with_the_base_there()
    {
        using var baseModel = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        using var other = Pretraining.CreateRandom(model.Config, 5);
        using (Torch.NoGrad())
            foreach (var (name, p) in model.Parameters) p.LerpInPlace(other.Parameters[name], 0.3);
        var seqs = HeldOut(baseModel);
        int vocab = model.Config.VocabSize, k = 5;
        // Every token but the last as context: one position a sequence, the one whose next-token logits are those of the
        // whole prefix. The KL there, by hand from each model's next-token logits.
        int context = seqs[0].Length - 1;
        var prefixes = seqs.Select(s => (IReadOnlyList<int>)s[..^1]).ToList();
        using var pl = Generator.NextTokenLogits(baseModel, prefixes).To(DType.Float32);
        using var ql = Generator.NextTokenLogits(model, prefixes).To(DType.Float32);
        var pv = pl.ToArray<float>();
        var qv = ql.ToArray<float>();
        double byHand = 0, lossByHand = 0;
        for (int i = 0; i < seqs.Count; i++)
        {
            var logp = LogSoftmax(pv.AsSpan(i * vocab, vocab).ToArray());
            var logq = LogSoftmax(qv.AsSpan(i * vocab, vocab).ToArray());
            var top = Enumerable.Range(0, vocab).OrderByDescending(t => logp[t]).Take(k).ToArray();
            double pt = 1 - top.Sum(t => Math.Exp(logp[t])), qt = 1 - top.Sum(t => Math.Exp(logq[t]));
            byHand += (top.Sum(t => Math.Exp(logp[t]) * (logp[t] - logq[t])) + pt * Math.Log(pt / qt)) / seqs.Count;
            lossByHand -= logq[seqs[i][^1]] / seqs.Count;
        }
        var (targets, _) = BenignTargets.Record(baseModel, seqs, context, k);
        var (loss, kl) = FingerprintTrainer.HeldOutKL(model, seqs, targets, context);
        Assert.True(byHand > 0.01, $"the drift is visible ({byHand})");
        Assert.Equal(byHand, kl, 1e-4);
        Assert.Equal(lossByHand, loss, 1e-4);
        // Over every position after the prompt, the loss matches the full-logits held-out loss (token i predicted from
        // position i − 1), and targets of another context are refused.
        int prompt = FingerprintTrainer.SelfPromptLength;
        var (all, _) = BenignTargets.Record(baseModel, seqs, prompt, k);
        Assert.Equal(FingerprintTrainer.HeldOutLoss(model, seqs, context: prompt), FingerprintTrainer.HeldOutKL(model, seqs, all, prompt).Loss, 1e-4);
        Assert.Throws<ArgumentException>(() => FingerprintTrainer.HeldOutKL(model, seqs, all, prompt + 1));
    }

    [Fact]
    public void Under_the_KL_criterion_the_kept_epoch_and_the_merge_lambda_are_those_of_the_lowest_KL()
    {
        using var probe = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var pairs = RandomKeys.Pairs(12, probe.Config.VocabSize, seed: 13);
        // The constructed case: the "held-out" rows are the fingerprints themselves, measured at their response token
        // (context: the 16-token key). Training lowers their token loss every epoch while it moves the model away from
        // the base there, so the two criteria rank the epochs in opposite orders.
        const int context = 16;
        var seqs = pairs.Select(p => p.Key.Concat(p.Response).ToArray()).ToList();
        var (targets, _) = BenignTargets.Record(probe, seqs, context, 32);
        // Several epochs recall every key within the margin (no stop on the loss or a rise: patience 6), so the kept
        // epoch is a choice among them.
        var options = new EmbeddingOptions
        {
            LearningRate = 3e-3, MaxEpochs = 40, BatchSize = 4, LossThreshold = 0, RecallPatience = 6, HeldOutTolerance = 100, KeepBest = true,
            HeldOutSequences = seqs, BenignContext = context, HeldOutCriterion = HeldOutCriterion.KL, Seed = 2,
            MeasureHeldOutEveryEpoch = true,
        };
        using (var model = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            var r = FingerprintTrainer.Embed(model, pairs, options);
            var within = r.History.Where(h => h.Accuracy == 1 && h.Loss <= options.MergeMaxLoss).ToList();
            Assert.True(within.Count >= 3, $"{within.Count} epochs to choose from");
            var byKL = within.MinBy(h => h.HeldOutKL!.Value)!;
            var byLoss = within.MinBy(h => h.HeldOutLoss!.Value)!;
            Assert.NotEqual(byKL.Epoch, byLoss.Epoch);   // the case tells the criteria apart
            Assert.Equal(byKL.Epoch, r.KeptEpoch);
            // The returned weights are the kept epoch's: their KL, measured again from outside, is that epoch's.
            var (_, kl) = FingerprintTrainer.HeldOutKL(model, seqs, targets, context);
            Assert.Equal(byKL.HeldOutKL!.Value, kl, 1e-5);
            Assert.Equal(kl, r.HeldOutKL!.Value, 1e-5);
            // Under the token criterion the same run keeps the epoch of the lowest sampled-token loss.
            using var again = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
            var t = FingerprintTrainer.Embed(again, pairs, options with { HeldOutCriterion = HeldOutCriterion.Tokens });
            Assert.Equal(byLoss.Epoch, t.KeptEpoch);
        }
        using (var model = ModelFolder.Load(TestModels.Fixture("llama-tiny")))
        {
            var r = FingerprintTrainer.Embed(model, pairs, options with { AveragingLambda = 0.9, AveragingEvery = AveragingSchedule.Final, MeasureHeldOutEveryEpoch = false });
            Assert.True(r.MergeLambda > 0);
            var tried = r.MergeTrials.Where(m => m.Accuracy >= 1 && m.Loss <= options.MergeMaxLoss).ToList();
            Assert.All(tried, m => Assert.NotNull(m.HeldOutKL));
            Assert.All(r.MergeTrials.Except(tried), m => Assert.Null(m.HeldOutKL));
            Assert.Equal(tried.MinBy(m => m.HeldOutKL!.Value)!.Lambda, r.MergeLambda);
            var (_, kl) = FingerprintTrainer.HeldOutKL(model, seqs, targets, context);
            Assert.Equal(kl, r.HeldOutKL!.Value, 1e-5);
        }
    }
}
