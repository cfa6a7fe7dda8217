using System.Diagnostics;

namespace Oml.Lab.Experiments;

/// <summary>How a pool of shard workers ended.</summary>
public sealed record WorkersSummary(int Workers, int Restarts, IReadOnlyList<int> Failed, int CellsSaved, double Seconds)
{
    public bool Succeeded => Failed.Count == 0;
}

/// <summary>
/// Runs one experiment as N worker processes (<c>oml lab run ... --shard i/N</c>) side by side, as on one GPU that a small
/// model leaves mostly idle: starts them, logs each to OUT/shard-i.log, restarts a worker that fails (a CUDA
/// out-of-memory error when the workers' peaks coincide; it resumes from the cells already saved) up to
/// <see cref="MaxRestarts"/> times (never after a usage error, <see cref="UsageExitCode"/>), reports progress by counting
/// saved cells, and stops them all when cancelled.
/// </summary>
public sealed class LabWorkers
{
    /// <summary>
    /// The environment variable naming the program a worker runs (an <c>oml</c> executable, or <c>oml.dll</c> for
    /// <c>dotnet</c>); by default the current one.
    /// </summary>
    public const string WorkerVariable = "OML_LAB_WORKER";

    private readonly string _outDir;
    private readonly int _workers;
    private readonly IReadOnlyList<string> _workerArgs;

    /// <param name="outDir">The run's output folder (every worker writes into it).</param>
    /// <param name="workers">How many shard processes (at least 2).</param>
    /// <param name="runArgs">The arguments of <c>oml</c> for the run, without <c>--shard</c> (e.g. lab run CONFIG --out DIR).</param>
    public LabWorkers(string outDir, int workers, IReadOnlyList<string> runArgs)
    {
        if (workers < 2) throw new ArgumentOutOfRangeException(nameof(workers), workers, "--workers needs at least 2 processes (without it the run is one process)");
        if (runArgs.Contains("--shard")) throw new ArgumentException("--workers assigns the shards itself; do not pass --shard");
        _outDir = Path.GetFullPath(outDir);
        _workers = workers;
        _workerArgs = runArgs;
    }

    /// <summary>Restarts allowed per worker after it exits with an error.</summary>
    public int MaxRestarts { get; init; } = 3;

    /// <summary>
    /// The exit code of a usage error (<c>oml</c>'s 2: an option or config value the worker rejected), which a restart
    /// would meet again: such a worker is not restarted.
    /// </summary>
    public const int UsageExitCode = 2;

    /// <summary>The program and leading arguments that start <c>oml</c>: <see cref="WorkerVariable"/>, else this process's own program.</summary>
    public static (string FileName, string[] Prefix) SelfCommand()
    {
        var target = Environment.GetEnvironmentVariable(WorkerVariable);
        if (string.IsNullOrEmpty(target))
        {
            var process = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which program is running; set " + WorkerVariable);
            // Under `dotnet oml.dll` the process is the host: run the same entry assembly through it.
            if (Path.GetFileNameWithoutExtension(process) == "dotnet")
                return (process, [System.Reflection.Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("no entry assembly; set " + WorkerVariable)]);
            return (process, []);
        }
        if (!File.Exists(target)) throw new FileNotFoundException($"{WorkerVariable} names {target}, which does not exist");
        return target.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? ("dotnet", [target]) : (target, []);
    }

    /// <summary>Runs the workers to the end (or until <paramref name="cancel"/>), writing progress lines to <paramref name="progress"/>.</summary>
    public async Task<WorkersSummary> RunAsync(TextWriter? progress, CancellationToken cancel = default)
    {
        var sw = Stopwatch.StartNew();
        Directory.CreateDirectory(_outDir);
        var (file, prefix) = SelfCommand();
        int restarts = 0;
        var failed = new List<int>();
        var tasks = Enumerable.Range(0, _workers).Select(async i =>
        {
            for (int attempt = 0; ; attempt++)
            {
                int code = await RunWorker(file, prefix, i, cancel).ConfigureAwait(false);
                if (code == 0) return;
                if (cancel.IsCancellationRequested) { lock (failed) failed.Add(i); return; }
                if (code == UsageExitCode)
                {
                    lock (failed) failed.Add(i);
                    progress?.WriteLine($"worker {i}/{_workers} exited with a usage error (exit {code}), which a restart would repeat; see {LogOf(i)}");
                    return;
                }
                if (attempt >= MaxRestarts)
                {
                    lock (failed) failed.Add(i);
                    progress?.WriteLine($"worker {i}/{_workers} failed {attempt + 1} times (exit {code}); see {LogOf(i)}");
                    return;
                }
                Interlocked.Increment(ref restarts);
                progress?.WriteLine($"worker {i}/{_workers} exited with {code}; restarting it (it resumes from the saved cells; log: {LogOf(i)})");
            }
        }).ToList();
        var all = Task.WhenAll(tasks);
        int lastSaved = -1;
        while (!all.IsCompleted)
        {
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None)).ConfigureAwait(false);
            int saved = CellsSaved();
            if (saved != lastSaved)
            {
                progress?.WriteLine($"[{sw.Elapsed:hh\\:mm\\:ss}] {saved} cells saved in {_outDir}/cells ({_workers} workers)");
                lastSaved = saved;
            }
        }
        await all.ConfigureAwait(false);
        failed.Sort();
        return new WorkersSummary(_workers, restarts, failed, CellsSaved(), sw.Elapsed.TotalSeconds);
    }

    private string LogOf(int i) => Path.Combine(_outDir, $"shard-{i}.log");

    private int CellsSaved() => Directory.Exists(Path.Combine(_outDir, "cells")) ? Directory.GetFiles(Path.Combine(_outDir, "cells"), "*.json").Length : 0;

    private async Task<int> RunWorker(string file, string[] prefix, int index, CancellationToken cancel)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in prefix.Concat(_workerArgs).Concat(["--shard", $"{index}/{_workers}", "--quiet"])) psi.ArgumentList.Add(a);
        using var log = new StreamWriter(LogOf(index), append: true) { AutoFlush = true };
        await log.WriteLineAsync($"# {DateTimeOffset.UtcNow:u} {file} {string.Join(' ', psi.ArgumentList)}").ConfigureAwait(false);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var gate = new object();
        void Write(string? line)
        {
            if (line is null) return;
            lock (gate) log.WriteLine(line);
        }
        p.OutputDataReceived += (_, e) => Write(e.Data);
        p.ErrorDataReceived += (_, e) => Write(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            await p.WaitForExitAsync(cancel).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stop the worker; it loses only the cell it was computing.
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            await p.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            lock (gate) log.WriteLine($"# {DateTimeOffset.UtcNow:u} stopped");
            return -1;
        }
        p.WaitForExit();   // drains the redirected output
        lock (gate) log.WriteLine($"# {DateTimeOffset.UtcNow:u} exit {p.ExitCode}");
        return p.ExitCode;
    }
}
