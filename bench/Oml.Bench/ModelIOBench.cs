using System.Diagnostics;
using System.Globalization;
using Oml.Engine;
using Oml.Models;

/// <summary>
/// Model I/O as <c>oml embed</c> does it before and after training, old path against new in the same run, alternating:
///   Oml.Bench --model-io MODEL_DIR [--device cuda] [--dtype bfloat16] [--rounds 2] [--work DIR] [--markdown FILE]
/// - before training: hash the base, then load it (old) against loading it while another thread hashes it (new);
/// - after training: save, then read the files back to hash them (old) against hashing the bytes as they are written,
///   overlapped with writing them (new). Both digests must be equal, or the benchmark fails.
/// Each side keeps its best round. --work is where the saved copies go (default: the system's temporary folder; use
/// the disk a user would save to).
/// </summary>
internal static class ModelIOBench
{
    public static int Run(string modelDir, Args opts)
    {
        var device = Device.Parse(opts.Get("device", "cpu"));
        DType? dtype = opts.TryGet("dtype", out var d) ? DTypeExtensions.Parse(d) : null;
        int rounds = int.Parse(opts.Get("rounds", "2"), CultureInfo.InvariantCulture);
        var work = Directory.CreateDirectory(Path.Combine(opts.Get("work", Path.GetTempPath()), "oml-model-io-" + Guid.NewGuid().ToString("N")[..8]));
        double gb = ModelFolder.WeightFiles(modelDir).Sum(f => new FileInfo(f).Length) / 1e9;
        var best = new Dictionary<string, double>();
        void Keep(string name, double s) => best[name] = Math.Min(best.GetValueOrDefault(name, double.MaxValue), s);
        try
        {
            for (int round = 1; round <= rounds; round++)
            {
                Console.Error.WriteLine($"round {round} of {rounds} ({gb:F2} GB of weights, {device})");
                // Before training, old: hash, then load.
                var clock = Stopwatch.StartNew();
                var digest = ModelFolder.WeightsDigest(modelDir);
                double hashed = clock.Elapsed.TotalSeconds;
                var model = ModelFolder.Load(modelDir, device, dtype);
                if (device.IsCuda) Torch.Cuda.Synchronize(device.Index);
                Keep("hash base", hashed);
                Keep("load", clock.Elapsed.TotalSeconds - hashed);
                Keep("old: hash base, then load", clock.Elapsed.TotalSeconds);
                model.Dispose();
                // New: load while another thread hashes.
                clock.Restart();
                var hashing = Task.Run(() => ModelFolder.WeightsDigest(modelDir));
                model = ModelFolder.Load(modelDir, device, dtype);
                if (device.IsCuda) Torch.Cuda.Synchronize(device.Index);
                if (hashing.GetAwaiter().GetResult() != digest) throw new InvalidOperationException("the overlapped hash differs");
                Keep("new: load while hashing the base", clock.Elapsed.TotalSeconds);
                using (model)
                {
                    // After training, old: save, then hash the files read back.
                    var oldDir = Path.Combine(work.FullName, "old");
                    clock.Restart();
                    ModelFolder.Save(model, oldDir, modelDir);
                    double saved = clock.Elapsed.TotalSeconds;
                    var oldDigest = ModelFolder.WeightsDigest(oldDir);
                    Keep("save", saved);
                    Keep("hash result", clock.Elapsed.TotalSeconds - saved);
                    Keep("old: save, then hash the files", clock.Elapsed.TotalSeconds);
                    Directory.Delete(oldDir, recursive: true);
                    // New: hash while writing.
                    var newDir = Path.Combine(work.FullName, "new");
                    clock.Restart();
                    var newDigest = ModelFolder.SaveWithDigest(model, newDir, modelDir);
                    Keep("new: save, hashing while writing", clock.Elapsed.TotalSeconds);
                    if (newDigest != oldDigest) throw new InvalidOperationException($"the digests differ: {newDigest} vs {oldDigest}");
                    Directory.Delete(newDir, recursive: true);
                }
            }
        }
        finally
        {
            work.Delete(recursive: true);
        }
        var lines = new List<string> { "| step | best of rounds (s) | GB/s |", "|---|---:|---:|" };
        foreach (var (name, s) in best) lines.Add(string.Create(CultureInfo.InvariantCulture, $"| {name} | {s:F2} | {gb / s:F2} |"));
        double before = best["old: hash base, then load"] / best["new: load while hashing the base"];
        double after = best["old: save, then hash the files"] / best["new: save, hashing while writing"];
        lines.Add("");
        lines.Add(string.Create(CultureInfo.InvariantCulture, $"speed-up before training {before:F2}×, after training {after:F2}× (old time ÷ new time; digests equal)"));
        var text = string.Join("\n", lines) + "\n";
        Console.Write(text);
        if (opts.TryGet("markdown", out var md)) File.WriteAllText(md, text);
        return 0;
    }
}
