using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Oml.Protocol.Ledger;

namespace Oml.Protocol.Tests.Ledger;

/// <summary>The process the crash test kills: appends to a ledger forever, printing each sequence once committed.</summary>
internal static class CrashChild
{
    public const string Flag = "--oml-ledger-crash-child";

    public static byte[] PayloadFor(long seq) => Encoding.UTF8.GetBytes($"{{\"seq\":{seq},\"pad\":\"{new string('x', 280)}\"}}");

    public static int Run(string[] args)
    {
        using var ledger = SqliteLedger.Open(args[0], create: true);
        var rng = new Random();
        var stdout = Console.Out; // autoflushed: each line reaches the pipe before the next append starts
        while (true)
        {
            var head = ledger.GetHead();
            int n = rng.Next(1, 4);
            var batch = Enumerable.Range(0, n).Select(i => new NewEvent("crash/test", PayloadFor(head.Height + i))).ToList();
            var now = DateTimeOffset.UtcNow;
            var added = ledger.Append(head.Height, batch, head.Timestamp is { } t && t > now ? t : now);
            foreach (var e in added) stdout.WriteLine($"committed {e.Sequence};");
        }
    }
}

public class CrashTests
{
    private static ProcessStartInfo ChildStart(string ledgerPath)
    {
        var dir = AppContext.BaseDirectory;
        var apphost = Path.Combine(dir, OperatingSystem.IsWindows() ? "Oml.Protocol.Tests.exe" : "Oml.Protocol.Tests");
        var psi = File.Exists(apphost)
            ? new ProcessStartInfo(apphost)
            : new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { ArgumentList = { "exec", Path.Combine(dir, "Oml.Protocol.Tests.dll") } };
        psi.ArgumentList.Add(CrashChild.Flag);
        psi.ArgumentList.Add(ledgerPath);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        return psi;
    }

    [Fact]
    public void KilledWriterLosesNoCommittedEventAndLeavesTheChainIntact()
    {
        using var tmp = new TempDir();
        var path = tmp.File("crash.oml-ledger");
        var rng = new Random(1234);
        var everPrinted = new HashSet<long>();
        for (int round = 0; round < 4; round++)
        {
            var printed = new ConcurrentQueue<long>();
            var errors = new StringBuilder();
            using var child = new Process { StartInfo = ChildStart(path) };
            child.OutputDataReceived += (_, e) =>
            {
                if (e.Data is { } line && line.StartsWith("committed ", StringComparison.Ordinal) && line.EndsWith(';'))
                    printed.Enqueue(long.Parse(line["committed ".Length..^1]));
            };
            child.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (errors) errors.AppendLine(e.Data); };
            Assert.True(child.Start());
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            int target = rng.Next(3, 40);
            var sw = Stopwatch.StartNew();
            while (printed.Count < target && !child.HasExited && sw.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(1);
            Thread.Sleep(rng.Next(0, 25)); // land somewhere inside a later append
            Assert.False(child.HasExited, $"the child exited by itself: {errors}");
            child.Kill(); // SIGKILL on Unix: no finally blocks, no flush, no SQLite close
            child.WaitForExit();
            Assert.NotEqual(0, child.ExitCode);
            foreach (var s in printed) everPrinted.Add(s);
            Assert.True(printed.Count >= target, $"round {round}: the child printed {printed.Count} commits, expected {target}; stderr: {errors}");

            using var ledger = SqliteLedger.Open(path);
            var v = ledger.Verify();
            Assert.True(v.Intact, $"round {round}: {v.Problem}");
            var events = ledger.Read().ToDictionary(e => e.Sequence);
            foreach (var s in everPrinted)
            {
                Assert.True(events.TryGetValue(s, out var e), $"round {round}: committed event {s} is missing after the kill");
                Assert.Equal(CrashChild.PayloadFor(s), e.Payload);
            }
            Assert.Equal(events.Count, ledger.Height);
        }
    }
}
