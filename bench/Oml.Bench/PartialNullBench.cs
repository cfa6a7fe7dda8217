using System.Diagnostics;
using System.Globalization;
using Oml.Engine;
using Oml.Fingerprinting.Verification;
using Oml.Models;

/// <summary>
/// The partial rule's per-key null (<see cref="PartialMatchNull.Compute"/>) on random keys:
///   Oml.Bench --partial-null MODEL_DIR [--keys 64] [--key-length 16] [--response-length 3] [--min-tokens 2]
///             [--budget 4096] [--device cpu] [--dtype float32] [--seed 0]
/// Prints keys/s and the nulls' sum, so two builds (before and after a change) can be compared on the same keys.
/// </summary>
internal static class PartialNullBench
{
    public static int Run(string modelDir, Args opts)
    {
        var device = Device.Parse(opts.Get("device", "cpu"));
        DType? dtype = opts.TryGet("dtype", out var d) ? DTypeExtensions.Parse(d) : null;
        int Int(string name, int fallback) => int.Parse(opts.Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        int keys = Int("keys", 64), keyLength = Int("key-length", 16), responseLength = Int("response-length", 3);
        int minTokens = Int("min-tokens", 2), budget = Int("budget", PartialMatchNull.DefaultPrefixBudget), seed = Int("seed", 0);
        using var model = ModelFolder.Load(modelDir, device, dtype);
        var rng = new Random(seed);
        int vocab = model.Config.VocabSize;
        var queries = Enumerable.Range(0, keys).Select(_ => Enumerable.Range(0, keyLength).Select(_ => rng.Next(vocab)).ToArray()).ToList();
        var responses = Enumerable.Range(0, keys)
            .Select(_ => (IReadOnlyList<int[]>)[Enumerable.Range(0, responseLength).Select(_ => rng.Next(vocab)).ToArray()]).ToList();
        var match = ResponseMatch.Partial(minTokens);
        var clock = Stopwatch.StartNew();
        var nulls = PartialMatchNull.Compute(model, queries, responses, match, budget);
        if (device.IsCuda) Torch.Cuda.Synchronize(device.Index);
        double s = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"partial null: {keys} keys, key {keyLength} + response {responseLength} tokens, min {minTokens} (D = {match.Deviation(responseLength)}), budget {budget}, vocab {vocab}, {device}: {s:F2} s, {keys / s:F2} keys/s, sum of nulls {nulls.Sum():G6}"));
        if (Phases.Requested) Console.WriteLine(Phases.ToJson());
        return 0;
    }
}
