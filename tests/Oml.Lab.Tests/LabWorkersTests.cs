using Oml.Lab.Experiments;

namespace Oml.Lab.Tests;

/// <summary>
/// <see cref="LabWorkers"/> restarts a worker that failed (a CUDA out-of-memory error when the workers' peaks coincide)
/// but not one that exited with a usage error, which every restart would meet again. The workers here are a shell script
/// that records each start and exits with a given code.
/// </summary>
public sealed class LabWorkersTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-workers-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (WorkersSummary Summary, int Starts, string Progress) Run(int exitCode)
    {
        var script = Path.Combine(_dir, $"worker-{exitCode}.sh");
        var starts = Path.Combine(_dir, $"starts-{exitCode}.txt");
        File.WriteAllText(script, $"#!/bin/sh\necho start >> '{starts}'\nexit {exitCode}\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var previous = Environment.GetEnvironmentVariable(LabWorkers.WorkerVariable);
        Environment.SetEnvironmentVariable(LabWorkers.WorkerVariable, script);
        try
        {
            var progress = new StringWriter();
            var summary = new LabWorkers(Path.Combine(_dir, $"out-{exitCode}"), 2, ["lab", "run", "c.yaml"]) { MaxRestarts = 2 }
                .RunAsync(TextWriter.Synchronized(progress)).GetAwaiter().GetResult();
            return (summary, File.ReadAllLines(starts).Length, progress.ToString());
        }
        finally
        {
            Environment.SetEnvironmentVariable(LabWorkers.WorkerVariable, previous);
        }
    }

    [Fact]
    public void A_failing_worker_is_restarted_up_to_the_limit()
    {
        var (summary, starts, progress) = Run(1);
        Assert.Equal(6, starts); // 2 workers × (1 start + 2 restarts)
        Assert.Equal(4, summary.Restarts);
        Assert.Equal([0, 1], summary.Failed);
        Assert.Contains("failed 3 times (exit 1)", progress);
    }

    [Fact]
    public void A_usage_error_is_not_restarted()
    {
        var (summary, starts, progress) = Run(LabWorkers.UsageExitCode);
        Assert.Equal(2, starts); // once each
        Assert.Equal(0, summary.Restarts);
        Assert.Equal([0, 1], summary.Failed);
        Assert.Contains("usage error (exit 2), which a restart would repeat", progress);
    }
}
