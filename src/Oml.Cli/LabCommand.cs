using System.CommandLine;
using System.Text.Json.Nodes;
using Oml.Lab.Experiments;
using Oml.Lab.Reports;

namespace Oml.Cli;

/// <summary><c>oml lab run CONFIG --out DIR</c> and <c>oml lab report DIR</c>: the evaluation lab's experiments and reports.</summary>
public static class LabCommand
{
    public static Command Create()
    {
        var config = new Argument<string>("config") { Description = "Experiment config (YAML; see lab/experiments and docs/lab.md)" };
        var output = CliOptions.OptionalOut("Output folder for cell results, models, report.md and charts (default: the config's 'output')");
        var device = new Option<string?>("--device") { Description = "Override the config's device (auto, cpu, cuda, cuda:N)" };
        var quiet = new Option<bool>("--quiet") { Description = "No progress bar" };
        var shard = new Option<string?>("--shard") { Description = "Compute only shard I of N (I/N, 0 ≤ I < N): start N processes with the same config and --out; each takes a disjoint, balanced part of the cells" };
        var only = new Option<string?>("--only") { Description = "Compute only the cells whose id matches this regular expression" };
        var workers = new Option<int?>("--workers") { Description = "Run as N worker processes side by side (shards 0..N-1, each restarted if it fails), e.g. to fill one GPU with a small model" };
        var timeLimit = new Option<double?>("--time-limit") { Description = "With --workers: stop the workers after this many seconds (a rerun resumes)" };
        var json = CliOptions.Json("Print {\"out\", \"report\", \"computed\", \"reused\", \"cells\", \"experiment_cells\", \"seconds\", \"computed_ids\"} "
            + "(with --workers: {\"out\", \"report\", \"workers\", \"restarts\", \"cells_saved\", \"seconds\", \"failed\", \"stopped\"}) as JSON");
        var run = new Command("run", "Run an experiment (skipping cells already saved in the output folder) and write its report.") { config, output, device, quiet, shard, only, workers, timeLimit, json };
        run.SetAction(r => r.GetValue(workers) is { } n
            ? RunWorkers(r.GetValue(config)!, r.GetValue(output), r.GetValue(device), r.GetValue(quiet), r.GetValue(shard), r.GetValue(only), n, r.GetValue(timeLimit), r.GetValue(json))
            : r.GetValue(timeLimit) is not null ? throw new UsageException("--time-limit needs --workers")
            : Run(r.GetValue(config)!, r.GetValue(output), r.GetValue(device), r.GetValue(quiet), r.GetValue(shard), r.GetValue(only), r.GetValue(json)));

        var dir = new Argument<string>("dir") { Description = "Output folder of an earlier 'oml lab run'" };
        var reportJson = CliOptions.Json("Print {\"report\"} (the report file's path) as JSON");
        var report = new Command("report", "Re-render report.md and its charts from saved cell results, without rerunning anything.") { dir, reportJson };
        report.SetAction(r => Report(r.GetValue(dir)!, r.GetValue(reportJson)));

        return new Command("lab", "The evaluation lab: config-driven experiments on fingerprint capacity, persistence, false positives and adaptive attacks.") { run, report };
    }

    public static int Run(string configPath, string? outDir, string? device, bool quiet, string? shard = null, string? only = null, bool json = false)
    {
        var shardSpec = ParseShard(shard);
        var onlyRegex = OnlyRegex(only);
        var config = LabConfig.Load(configPath);
        if (device is not null)
        {
            Cli.ParseDevice(device);
            config.Device = device;
        }
        else Cli.ParseDevice(config.Device);
        var dir = outDir ?? (config.Output is { } o ? config.Resolve(o) : throw new UsageException("no output folder: give --out or set 'output' in the config"));
        var env = new LabEnvironment(config, dir, log: quiet ? null : Console.Error);
        var summary = new ExperimentRunner(env, shardSpec, onlyRegex).Run(quiet ? null : Console.Error);
        var path = ReportWriter.Write(env.OutDir);
        var part = shardSpec is null && onlyRegex is null ? "" : $"{(shardSpec is null ? "" : $"shard {shardSpec}: ")}{summary.Total} of {summary.ExperimentTotal} cells owned; ";
        var report = new Oml.Cli.Report()
            .Json("out", env.OutDir).Json("report", path).Json("computed", summary.Computed).Json("reused", summary.Reused)
            .Json("cells", summary.Total).Json("experiment_cells", summary.ExperimentTotal).Json("seconds", Oml.Cli.Report.Number(summary.Seconds))
            .Json("shard", shardSpec?.ToString()).Json("computed_ids", Oml.Cli.Report.Strings(summary.ComputedIds))
            .Line($"{part}{summary.Computed} cells computed, {summary.Reused} loaded from an earlier run, in {summary.Seconds:F1} s; report: {path}");
        if (quiet)
            foreach (var change in summary.InputChanges)
                Console.Error.WriteLine($"warning: {change} since the run whose cells {env.OutDir} holds; those cells are loaded as they are (delete them to recompute)");
        report.Json("input_changes", Oml.Cli.Report.Strings(summary.InputChanges));
        if (shardSpec is not null && summary.ComputedIds.Count > 0) report.Line($"computed: {string.Join(", ", summary.ComputedIds)}");
        if (shardSpec is not null) report.Line($"the report holds the cells saved so far; once every shard is done, `oml lab report {env.OutDir}` renders them all");
        return report.Print(json);
    }

    private static ShardSpec? ParseShard(string? shard)
    {
        try { return shard is null ? null : ShardSpec.Parse(shard); }
        catch (FormatException e) { throw new UsageException(e.Message); }
    }

    /// <summary>The --only pattern (null when not given); a bad pattern is a usage error.</summary>
    private static System.Text.RegularExpressions.Regex? OnlyRegex(string? only)
    {
        try { return only is null ? null : new System.Text.RegularExpressions.Regex(only, System.Text.RegularExpressions.RegexOptions.CultureInvariant); }
        catch (ArgumentException e) { throw new UsageException($"--only '{only}' is not a regular expression: {e.Message}"); }
    }

    /// <summary><c>oml lab run CONFIG --workers N</c>: N shard processes of one run, then the report over all their cells.</summary>
    public static int RunWorkers(string configPath, string? outDir, string? device, bool quiet, string? shard, string? only, int workers, double? timeLimit, bool json = false)
    {
        if (shard is not null) throw new UsageException("--workers assigns the shards itself; give --workers or --shard, not both");
        if (workers < 2) throw new UsageException($"--workers must be at least 2 (got {workers}); without it the run is one process");
        if (timeLimit is <= 0) throw new UsageException("--time-limit must be positive");
        OnlyRegex(only);
        var config = LabConfig.Load(configPath);
        if (device is not null) Cli.ParseDevice(device);
        string dir = Path.GetFullPath(outDir ?? (config.Output is { } o ? config.Resolve(o) : throw new UsageException("no output folder: give --out or set 'output' in the config")));
        var args = new List<string> { "lab", "run", Path.GetFullPath(configPath), "--out", dir };
        if (device is not null) args.AddRange(["--device", device]);
        if (only is not null) args.AddRange(["--only", only]);
        using var cancel = timeLimit is { } t ? new CancellationTokenSource(TimeSpan.FromSeconds(t)) : new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            var summary = new LabWorkers(dir, workers, args).RunAsync(quiet ? null : Console.Error, cancel.Token).GetAwaiter().GetResult();
            string report = ReportWriter.Write(dir);
            new Oml.Cli.Report()
                .Json("out", dir).Json("report", report).Json("workers", summary.Workers).Json("restarts", summary.Restarts)
                .Json("cells_saved", summary.CellsSaved).Json("seconds", Oml.Cli.Report.Number(summary.Seconds))
                .Json("failed", new JsonArray([.. summary.Failed.Select(i => JsonValue.Create(i))])).Json("stopped", cancel.IsCancellationRequested)
                .Line($"{summary.Workers} workers, {summary.Restarts} restarts, {summary.CellsSaved} cells saved, in {summary.Seconds:F1} s; report: {report}")
                .Print(json);
            if (cancel.IsCancellationRequested)
            {
                Console.Error.WriteLine($"oml: stopped {(timeLimit is null ? "on request" : $"at the time limit ({timeLimit} s)")}; the same command resumes from the saved cells");
                return Cli.Stopped;
            }
            if (!summary.Succeeded)
            {
                Console.Error.WriteLine($"oml: error: worker(s) {string.Join(", ", summary.Failed)} failed; their logs: {string.Join(", ", summary.Failed.Select(i => Path.Combine(dir, $"shard-{i}.log")))}");
                return Cli.Failure;
            }
            return Cli.Ok;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    public static int Report(string dir, bool json = false)
    {
        var path = ReportWriter.Write(dir);
        return new Oml.Cli.Report().Json("report", path).Line(path).Print(json);
    }
}
