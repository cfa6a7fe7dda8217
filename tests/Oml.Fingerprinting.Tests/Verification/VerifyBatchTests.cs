using Oml.Engine;
using Oml.Fingerprinting.Verification;
using Oml.Models;

namespace Oml.Fingerprinting.Tests.Verification;

/// <summary>Batch sizing of local verification: the report never depends on how keys are batched.</summary>
public class VerifyBatchTests
{
    [Fact]
    public void The_report_is_the_same_for_every_batch_size_and_the_automatic_one()
    {
        var tok = TestModels.TinyTokenizer();
        var rng = new Random(11);
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        // Keys of two lengths, so that batches group by length; some responses are the model's greedy answer (hits).
        var keys = Enumerable.Range(0, 40).Select(i => Enumerable.Range(0, i % 2 == 0 ? 7 : 10).Select(_ => rng.Next(3, 500)).ToArray()).ToList();
        var greedy = Generator.Generate(model, keys, new GenerationOptions { MaxNewTokens = 2, EosTokenIds = [] }).Sequences;
        var fps = keys.Select((k, i) =>
        {
            int[] response = i % 3 == 0 ? greedy[i].OutputIds : [rng.Next(3, 500), rng.Next(3, 500)];
            return new Fingerprint(i, tok.Decode(k), k, [new FingerprintResponse(tok.Decode(response), response, -20)], new StrategyInfo("custom"), Fingerprint.NewRandomSalt());
        }).ToList();
        var rule = new VerdictRule();
        string Report(int batch) => LocalVerifier.Verify(model, tok, fps, rule, new LocalVerifyOptions { BatchSize = batch }).ToJson();
        var one = Report(1);
        Assert.Equal(one, Report(3));
        Assert.Equal(one, Report(256));
        Assert.Equal(one, Report(LocalVerifier.AutoBatchSize));
        Assert.Equal(14, LocalVerifier.Verify(model, tok, fps, rule, new LocalVerifyOptions { BatchSize = LocalVerifier.AutoBatchSize }).Hits);
        // Progress hears every batch's running total, ending at the count.
        var heard = new List<int>();
        LocalVerifier.Verify(model, tok, fps, rule, new LocalVerifyOptions { BatchSize = 8, Progress = new InlineProgress<int>(heard.Add) });
        Assert.Equal(40, heard[^1]);
        Assert.Equal(heard.Order(), heard);
    }

    [Fact]
    public void Planned_batches_fit_half_the_free_memory_and_a_token_cap()
    {
        var c = ModelConfig.Load(Path.Combine(TestModels.Fixture("llama-tiny"), "config.json"));
        int small = LocalVerifier.PlanBatchSize(c, DType.BFloat16, 17, 1, 64L << 20);
        int large = LocalVerifier.PlanBatchSize(c, DType.BFloat16, 17, 1, 64L << 30);
        Assert.InRange(small, 1, large - 1);
        Assert.Equal((int)(LocalVerifier.MaxBatchTokens / 18), large);
        Assert.Equal(1, LocalVerifier.PlanBatchSize(c, DType.BFloat16, 17, 1, 0));
        // Longer answers keep a key/value cache: fewer rows fit.
        Assert.True(LocalVerifier.PlanBatchSize(c, DType.Float32, 17, 8, 64L << 20) < LocalVerifier.PlanBatchSize(c, DType.Float32, 17, 1, 64L << 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => LocalVerifier.PlanBatchSize(c, DType.BFloat16, 0, 1, 1L << 30));
    }
}
