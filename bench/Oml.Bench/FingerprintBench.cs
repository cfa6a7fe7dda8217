using System.Diagnostics;
using System.Globalization;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;

/// <summary>
/// Fingerprints embedded per second and keys verified per second for a stated model size:
///   Oml.Bench --fingerprints [--hidden 256] [--layers 4] [--vocab 4096] [--count 128] [--epochs 5] [--device cpu]
/// Embedding: full-batch epochs over random 16-token keys with 1-token responses (one optimizer step per epoch,
/// plus model averaging). Verification: greedy decoding of the response length for every key, batched by 32.
/// </summary>
internal static class FingerprintBench
{
    public static int Run(Args opts)
    {
        int I(string k, int d) => int.Parse(opts.Get(k, d.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        var device = Device.Parse(opts.Get("device", "cpu"));
        int hidden = I("hidden", 256), layers = I("layers", 4), vocab = I("vocab", 4096), count = I("count", 128), epochs = I("epochs", 5);
        var shape = new LlamaShape(vocab, Hidden: hidden, Layers: layers, Heads: Math.Max(1, hidden / 64), KvHeads: Math.Max(1, hidden / 128), Intermediate: hidden * 11 / 4);
        using var model = Pretraining.CreateRandom(shape.ToConfig(), 1, device);
        long parameters = model.Parameters.Values.Sum(p => p.NumEl);
        var rng = new Random(7);
        var pairs = Enumerable.Range(0, count).Select(_ => new TrainingPair(
            Enumerable.Range(0, 16).Select(_ => rng.Next(vocab)).ToArray(), [rng.Next(vocab)])).ToList();

        var sw = Stopwatch.StartNew();
        var r = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { MaxEpochs = epochs, LossThreshold = 0, AveragingLambda = 0.75 });
        double embedSec = sw.Elapsed.TotalSeconds;

        // The same with benign data mixing as the lab runs it: β = 0.25, ordinary text in rows of 128 tokens (here random
        // tokens; the cost is the same), so each step also trains ⌈n/3⌉ long rows beside the n short fingerprint rows.
        var benign = Enumerable.Range(0, 256).Select(_ => Enumerable.Range(0, 128).Select(_ => rng.Next(vocab)).ToArray()).ToList();
        sw.Restart();
        var mixed = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { MaxEpochs = epochs, LossThreshold = 0, AveragingLambda = 0.75, MixFraction = 0.25, BenignSequences = benign });
        double mixedSec = sw.Elapsed.TotalSeconds;

        // OMLization's defaults (self-generated benign and held-out data, the KL criterion, merge-back), on fresh copies of
        // the same random-init model: the held-out data measured after every epoch (as before issue 14) against only where
        // early stopping, the kept epoch or the λ uses them. The trained models are the same; the epochs' time differs.
        (EmbeddingResult R, double Seconds) Defaults(bool everyEpoch)
        {
            using var fresh = Pretraining.CreateRandom(shape.ToConfig(), 1, device);
            var clock = Stopwatch.StartNew();
            var res = Omlization.Train(fresh, pairs, OmlizationDefaults.For(fresh.Config) with { MaxEpochs = epochs, MeasureHeldOutEveryEpoch = everyEpoch });
            return (res, clock.Elapsed.TotalSeconds);
        }
        var every = Defaults(everyEpoch: true);
        var thin = Defaults(everyEpoch: false);
        double Rate(EmbeddingResult res) => count * (double)res.History.Count / res.Final.Seconds;

        sw.Restart();
        int hits = 0;
        foreach (var chunk in pairs.Chunk(32))
        {
            var g = Generator.Generate(model, chunk.Select(p => p.Key).ToList(), new GenerationOptions { MaxNewTokens = 1, EosTokenIds = [] });
            hits += chunk.Where((p, i) => g.Sequences[i].OutputIds.SequenceEqual(p.Response)).Count();
        }
        double verifySec = sw.Elapsed.TotalSeconds;

        var md = $"| fingerprint throughput ({device}, float32; Llama {layers}x{hidden}, vocab {vocab}, {parameters / 1e6:F1} M parameters; {Torch.Threads} threads) | value |\n" +
                 "|---|---:|\n" +
                 $"| fingerprints embedded per second (16-token keys, 1-token responses, full-batch epochs, averaging on) | {count * (double)r.History.Count / embedSec:F1} |\n" +
                 $"| the same with benign mixing (β = 0.25, 128-token benign rows) | {count * (double)mixed.History.Count / mixedSec:F1} |\n" +
                 $"| OMLization defaults, held-out data every epoch: fingerprints per second in the epochs ({every.R.HeldOutPasses} held-out passes, {every.Seconds:F1} s in all) | {Rate(every.R):F1} |\n" +
                 $"| the same measuring held-out data only where a decision uses them ({thin.R.HeldOutPasses} passes, {thin.Seconds:F1} s in all; same model: {(every.R.KeptEpoch == thin.R.KeptEpoch && every.R.MergeLambda == thin.R.MergeLambda ? "yes" : "NO")}) | {Rate(thin.R):F1} ({Rate(thin.R) / Rate(every.R):F2}×) |\n" +
                 $"| keys verified per second (greedy, batches of 32) | {count / verifySec:F1} |\n";
        Console.WriteLine(md);
        if (opts.TryGet("markdown", out var path)) File.AppendAllText(path, md + "\n");
        return 0;
    }
}
