using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Oml.Engine;
using Oml.Models;

/// <summary>
/// Batched greedy generation tokens/s for a model folder, against transformers' generate (bench/generate_peer.py) on
/// the same prompts, batch and lengths:
///   Oml.Bench --generate MODEL_DIR [--device cuda] [--dtype bfloat16] [--batch 8] [--prompt-len 64] [--new-tokens 128]
///             [--reps 3] [--python python3] [--no-peer] [--markdown FILE]
/// </summary>
internal static class GenerationBench
{
    public static int Run(string modelDir, Args opts)
    {
        var device = Device.Parse(opts.Get("device", "cpu"));
        var dtype = DTypeExtensions.Parse(opts.Get("dtype", "float32"));
        int batch = int.Parse(opts.Get("batch", "8"), CultureInfo.InvariantCulture);
        int promptLen = int.Parse(opts.Get("prompt-len", "64"), CultureInfo.InvariantCulture);
        int newTokens = int.Parse(opts.Get("new-tokens", "128"), CultureInfo.InvariantCulture);
        int reps = int.Parse(opts.Get("reps", "3"), CultureInfo.InvariantCulture);

        using var model = ModelFolder.Load(modelDir, device, dtype);
        var prompts = Prompts(batch, promptLen, model.Config.VocabSize);
        var options = new GenerationOptions { MaxNewTokens = newTokens, EosTokenIds = [], PadTokenId = 0 };
        double best = 0;
        int[] firstRow = [];
        for (int rep = 0; rep <= reps; rep++)
        {
            var r = Generator.Generate(model, prompts, options);
            if (rep > 0) best = Math.Max(best, r.TokensPerSecond); // the first run warms up
            firstRow = r.Sequences[0].OutputIds.Take(16).ToArray();
        }
        Console.Error.WriteLine($"oml: {best:F1} tokens/s; first row starts {string.Join(",", firstRow)}");

        double? peer = null;
        string? peerVersion = null;
        if (!opts.Has("no-peer"))
        {
            var psi = new ProcessStartInfo(opts.Get("python", "python3")) { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[]
                     {
                         Path.Combine(AppContext.BaseDirectory, "generate_peer.py"), "--model", modelDir, "--device", device.Type == DeviceType.Cuda ? "cuda" : "cpu",
                         "--dtype", dtype.Name(), "--batch", batch.ToString(CultureInfo.InvariantCulture), "--prompt-len", promptLen.ToString(CultureInfo.InvariantCulture),
                         "--new-tokens", newTokens.ToString(CultureInfo.InvariantCulture), "--reps", reps.ToString(CultureInfo.InvariantCulture),
                     })
                psi.ArgumentList.Add(a);
            using var proc = Process.Start(psi)!;
            var output = proc.StandardOutput.ReadToEnd();
            proc.WaitForExit();
            if (proc.ExitCode != 0) throw new InvalidOperationException($"the transformers peer failed (exit {proc.ExitCode})");
            using var doc = JsonDocument.Parse(output);
            peer = doc.RootElement.GetProperty("tokens_per_s").GetDouble();
            peerVersion = doc.RootElement.GetProperty("transformers").GetString();
            var peerRow = doc.RootElement.GetProperty("first_row").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Console.Error.WriteLine($"transformers: {peer:F1} tokens/s; first row starts {string.Join(",", peerRow)}" +
                                    (peerRow.SequenceEqual(firstRow) ? " (same tokens)" : " (different tokens)"));
        }

        var c = model.Config;
        var md = $"| greedy generation ({device}, {dtype.Name()}; {c.ArchitectureName} {c.NumLayers}x{c.HiddenSize}, batch {batch}, prompts up to {promptLen}, {newTokens} new tokens) | oml | transformers {peerVersion ?? "-"} | ratio |\n" +
                 "|---|---:|---:|---:|\n" +
                 $"| tokens/s | {best:F1} | {(peer is { } p ? p.ToString("F1", CultureInfo.InvariantCulture) : "-")} | {(peer is { } q ? (best / q).ToString("F2", CultureInfo.InvariantCulture) : "-")} |\n";
        Console.WriteLine(md);
        if (opts.TryGet("markdown", out var path)) File.AppendAllText(path, md + "\n");
        return 0;
    }

    /// <summary>The same prompts as bench/generate_peer.py: row i has max(4, len - 3i) ids from a fixed formula.</summary>
    private static List<int[]> Prompts(int batch, int length, int vocab) =>
        Enumerable.Range(0, batch)
            .Select(i => Enumerable.Range(0, Math.Max(4, length - 3 * i)).Select(j => (int)(((long)i * 7919 + (long)j * 104729 + 11) % vocab)).ToArray())
            .ToList();
}
