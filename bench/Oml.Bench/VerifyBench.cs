using System.Diagnostics;
using System.Globalization;
using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Verification;
using Oml.Models;
using Oml.Models.Tokenizers;

/// <summary>
/// One local verification as <c>oml verify --model</c> runs it (<see cref="LocalVerifier.Verify(CausalLM, Tokenizer, IReadOnlyList{Fingerprint}, VerdictRule, LocalVerifyOptions)"/>),
/// timed in the process, without the command's start-up:
///   Oml.Bench --verify MODEL_DIR --set FILE [--passphrase-file FILE] [--count N] [--match exact|partial]
///             [--min-tokens M] [--base DIR] [--batch 0] [--rounds 1] [--device cpu]
/// Prints the seconds of each round (the best too), the hits, and the sum of the per-key nulls and a digest of the
/// answers and nulls, so that two builds (before and after a change) can be compared on the same set.
/// </summary>
internal static class VerifyBench
{
    public static int Run(string modelDir, Args opts)
    {
        var device = Device.Parse(opts.Get("device", "cpu"));
        int Int(string name, int fallback) => int.Parse(opts.Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        string setPath = opts.Get("set", "");
        if (setPath.Length == 0) throw new ArgumentException("--verify needs --set FILE");
        string? passphrase = opts.TryGet("passphrase-file", out var pf) ? File.ReadAllText(pf).TrimEnd('\r', '\n') : null;
        var set = FingerprintSetFile.Read(setPath, passphrase);
        var chosen = set.Unrevealed().Take(Int("count", int.MaxValue)).ToList();
        var match = opts.Get("match", "exact") == "partial" ? ResponseMatch.Partial(Int("min-tokens", 1)) : ResponseMatch.Exact;
        using var model = ModelFolder.Load(modelDir, device);
        using var baseModel = opts.TryGet("base", out var b) ? ModelFolder.Load(b, device) : null;
        var tokenizer = Tokenizer.FromFolder(modelDir);
        var options = new LocalVerifyOptions { Match = match, NullModel = baseModel, BatchSize = Int("batch", LocalVerifier.AutoBatchSize) };
        var rule = new VerdictRule();
        int rounds = Int("rounds", 1);
        var times = new List<double>();
        VerificationReport? report = null;
        for (int round = 0; round < rounds; round++)
        {
            var clock = Stopwatch.StartNew();
            report = LocalVerifier.Verify(model, tokenizer, chosen, rule, options);
            if (device.IsCuda) Torch.Cuda.Synchronize(device.Index);
            times.Add(clock.Elapsed.TotalSeconds);
        }
        var digest = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join("\n",
            report!.Keys.Select(k => string.Create(CultureInfo.InvariantCulture, $"{k.Index} {k.Hit} {k.Excluded} {k.NullProbability:R} {k.Answer}")))));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"verify: {chosen.Count} keys, {match.Name} (min {match.MinTokens}), base {(baseModel is null ? "none" : "yes")}, {device}: "
            + $"{string.Join(" ", times.Select(t => t.ToString("F2", CultureInfo.InvariantCulture)))} s (best {times.Min():F2}), "
            + $"{report.Hits}/{report.Queried} hits, {report.Keys.Count(k => k.Excluded == true)} excluded, "
            + $"sum of nulls {report.Keys.Sum(k => k.NullProbability ?? 0):R} ({report.Keys.Where(k => k.Excluded != true).Sum(k => k.NullProbability ?? 0):G4} "
            + $"over the counted keys, largest {report.Keys.Where(k => k.Excluded != true).Max(k => k.NullProbability ?? 0):G3}), p {report.PValue:G3}, "
            + $"digest {Convert.ToHexString(digest)[..16]}"));
        if (Phases.Requested) Console.WriteLine(Phases.ToJson());
        return 0;
    }
}
