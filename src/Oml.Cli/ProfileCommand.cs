using System.CommandLine;
using System.Globalization;
using Oml.Engine;

namespace Oml.Cli;

/// <summary>
/// <c>oml profile summarize TRACE</c>: where a profiled window's time went, from a Chrome trace of <c>OML_PROFILE</c>
/// (oml's training loops) or of torch.profiler (the PyTorch peer of the benchmarks), in the same classes and ranges, so
/// the two can be compared line by line (docs/benchmarks.md, "Profiling a training step").
/// </summary>
public static class ProfileCommand
{
    public static Command Create()
    {
        var summarize = new Command("summarize", "Summarise a Chrome trace (OML_PROFILE's or torch.profiler's): device busy time, kernels by class, by the range that launched them, and the costliest ones");
        var trace = new Argument<string>("trace") { Description = "The trace file (JSON)" };
        var wall = new Option<double?>("--wall-seconds") { Description = "Wall time of the profiled window, for the shares (default: the span of the trace's events)" };
        var top = new Option<int>("--top") { Description = "Costliest kernels (or host operators) listed", DefaultValueFactory = _ => 25 };
        var json = CliOptions.Json("Print the summary as JSON");
        summarize.Add(trace);
        summarize.Add(wall);
        summarize.Add(top);
        summarize.Add(json);
        summarize.SetAction(r =>
        {
            string path = r.GetValue(trace)!;
            if (!File.Exists(path)) throw new UsageException($"{path}: no such trace file");
            if (r.GetValue(top) < 1) throw new UsageException("--top must be at least 1");
            double? seconds = r.GetValue(wall);
            if (seconds is <= 0) throw new UsageException("--wall-seconds must be positive");
            ProfileSummary summary;
            try
            {
                summary = ProfileSummary.FromFile(path, seconds ?? 0, r.GetValue(top));
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new InvalidDataException($"{path}: not a JSON trace ({e.Message})");
            }
            Console.Write(r.GetValue(json) ? summary.ToJson() + Environment.NewLine
                : summary.ToMarkdown(Path.GetFileName(path) + (seconds is null ? " (shares of the trace's span)" : "")));
            return Cli.Ok;
        });
        return new Command("profile", "Read profiles of training steps (written with OML_PROFILE=DIR)") { summarize };
    }
}
