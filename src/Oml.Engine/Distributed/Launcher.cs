using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Oml.Engine.Distributed;

/// <summary>What <see cref="Launcher.Run"/> starts: processes per node, nodes, this node's rank and the rendezvous.</summary>
public sealed record LaunchPlan(int ProcessesPerNode, int Nodes = 1, int NodeRank = 0, string MasterAddress = "127.0.0.1", int MasterPort = 0)
{
    public int WorldSize => ProcessesPerNode * Nodes;

    /// <exception cref="ArgumentException">a count or rank out of range, or several nodes without a master port.</exception>
    public void Validate()
    {
        if (ProcessesPerNode < 1) throw new ArgumentException("processes per node must be at least 1");
        if (Nodes < 1) throw new ArgumentException("--nodes must be at least 1");
        if (NodeRank < 0 || NodeRank >= Nodes) throw new ArgumentException($"--node-rank must be in [0, {Nodes})");
        if (Nodes > 1 && MasterPort == 0) throw new ArgumentException("several nodes need --master-port (and --master-addr: node 0's address)");
        if (MasterPort is < 0 or > 65535) throw new ArgumentException("--master-port must be in [1, 65535]");
    }
}

/// <summary>
/// Starts one process per rank on this node, the way torchrun does: the same program and arguments (with a per-rank
/// argument list from the caller), and the environment RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
/// MASTER_PORT. Rank 0's output passes through; other ranks' lines are prefixed with "[rank R]". When a rank exits with
/// an error the others are killed and the job fails naming that rank, so a dead rank never leaves the others hanging.
/// </summary>
public static partial class Launcher
{
    /// <summary>The command that runs this program again: the apphost, or <c>dotnet</c> with the entry assembly.</summary>
    public static (string File, IReadOnlyList<string> Prefix) Self()
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is unknown");
        var name = Path.GetFileNameWithoutExtension(path);
        if (name.Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            return (path, [Environment.GetCommandLineArgs()[0]]);
        return (path, []);
    }

    /// <summary>A free TCP port on the loopback interface (for a single-node job's rendezvous).</summary>
    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        try { return ((IPEndPoint)l.LocalEndpoint).Port; }
        finally { l.Stop(); }
    }

    /// <summary>The exit code of a rank that stopped early on request with its work saved (oml's <c>Cli.Stopped</c>).</summary>
    public const int StoppedExitCode = 75;

    /// <summary>
    /// Runs the ranks of this node to completion. <paramref name="argsFor"/> gives each local rank's arguments.
    /// Returns 0 when every rank succeeded, <see cref="StoppedExitCode"/> when every rank ended with 0 or that code and at
    /// least one with that code (a graceful stop: the others are waited for, not killed). SIGTERM and SIGINT sent to
    /// the launcher are passed on to its ranks (which stop gracefully where they can) and it goes on waiting for them.
    /// </summary>
    /// <exception cref="InvalidOperationException">a rank failed (the message names it and its exit code).</exception>
    public static int Run(LaunchPlan plan, Func<int, IReadOnlyList<string>> argsFor, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(argsFor);
        plan.Validate();
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        int port = plan.MasterPort > 0 ? plan.MasterPort : FreePort();
        var (file, prefix) = Self();
        var procs = new Process[plan.ProcessesPerNode];
        var gate = new object();
        try
        {
            for (int local = 0; local < plan.ProcessesPerNode; local++)
            {
                int rank = plan.NodeRank * plan.ProcessesPerNode + local;
                var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in prefix) psi.ArgumentList.Add(a);
                foreach (var a in argsFor(local)) psi.ArgumentList.Add(a);
                var env = psi.Environment;
                env["RANK"] = rank.ToString(CultureInfo.InvariantCulture);
                env["WORLD_SIZE"] = plan.WorldSize.ToString(CultureInfo.InvariantCulture);
                env["LOCAL_RANK"] = local.ToString(CultureInfo.InvariantCulture);
                env["LOCAL_WORLD_SIZE"] = plan.ProcessesPerNode.ToString(CultureInfo.InvariantCulture);
                env["MASTER_ADDR"] = plan.MasterAddress;
                env["MASTER_PORT"] = port.ToString(CultureInfo.InvariantCulture);
                // The host's cores shared out among its ranks (unless the caller chose), so CPU ranks do not oversubscribe.
                if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMP_NUM_THREADS")))
                    env["OMP_NUM_THREADS"] = Math.Max(1, Environment.ProcessorCount / plan.ProcessesPerNode).ToString(CultureInfo.InvariantCulture);
                var p = new Process { StartInfo = psi };
                string tag = rank == 0 ? "" : $"[rank {rank}] ";
                p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (gate) stdout.WriteLine(tag + e.Data); };
                p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (gate) stderr.WriteLine(tag + e.Data); };
                p.Start();
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
                procs[local] = p;
            }
            // A scheduler's SIGTERM (or Ctrl-C) reaches the launcher alone: pass it on, so that every rank stops the same way.
            void Forward(PosixSignalContext c)
            {
                c.Cancel = true;
                foreach (var p in procs)
                    if (p is not null && !p.HasExited) Signal(p.Id, c.Signal);
            }
            using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Forward);
            using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Forward);
            var pending = Enumerable.Range(0, procs.Length).ToList();
            bool stopped = false;
            while (pending.Count > 0)
            {
                var tasks = pending.Select(i => procs[i].WaitForExitAsync()).ToArray();
                int done = pending[Task.WaitAny(tasks)];
                procs[done].WaitForExit();   // drains the output events
                pending.Remove(done);
                if (procs[done].ExitCode == StoppedExitCode) { stopped = true; continue; }
                if (procs[done].ExitCode != 0)
                {
                    int rank = plan.NodeRank * plan.ProcessesPerNode + done;
                    foreach (var i in pending) Kill(procs[i]);
                    throw new InvalidOperationException(
                        $"rank {rank} of {plan.WorldSize} exited with code {procs[done].ExitCode}; the other ranks on this node were stopped");
                }
            }
            return stopped ? StoppedExitCode : 0;
        }
        finally
        {
            foreach (var p in procs)
            {
                if (p is null) continue;
                Kill(p);
                p.Dispose();
            }
        }
    }

    private static void Signal(int pid, PosixSignal signal)
    {
        if (!OperatingSystem.IsWindows()) _ = kill(pid, signal == PosixSignal.SIGINT ? 2 : 15);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    private static void Kill(Process p)
    {
        try { if (!p.HasExited) { p.Kill(entireProcessTree: true); p.WaitForExit(5000); } }
        catch (InvalidOperationException) { }
        catch (System.ComponentModel.Win32Exception) { }
    }
}
