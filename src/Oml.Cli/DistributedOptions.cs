using System.CommandLine;
using Oml.Engine;
using Oml.Engine.Distributed;

namespace Oml.Cli;

/// <summary>
/// The options of a command that can run on several processes (data-parallel): <c>--gpus N</c> (one process per CUDA
/// device, NCCL) or <c>--processes N</c> (CPU processes over gloo), and for several hosts <c>--nodes</c>,
/// <c>--node-rank</c>, <c>--master-addr</c>, <c>--master-port</c>, as torchrun names them. A process started with the
/// launcher's environment (WORLD_SIZE, RANK, ...), by this launcher or another one, joins the group instead.
/// </summary>
public sealed class DistributedOptions
{
    public Option<int?> Gpus { get; } = new("--gpus") { Description = "Run data-parallel on this many GPUs of this host, one process each (NCCL)" };
    public Option<int?> Processes { get; } = new("--processes") { Description = "Run data-parallel in this many CPU processes (gloo); for tests and CPU clusters" };
    public Option<int> Nodes { get; } = new("--nodes") { Description = "With --gpus/--processes: hosts in the job (run the same command on each)", DefaultValueFactory = _ => 1 };
    public Option<int> NodeRank { get; } = new("--node-rank") { Description = "With --nodes: this host's rank, 0 for the host at --master-addr", DefaultValueFactory = _ => 0 };
    public Option<string> MasterAddress { get; } = new("--master-addr") { Description = "With --nodes: the address of node 0", DefaultValueFactory = _ => "127.0.0.1" };
    public Option<int> MasterPort { get; } = new("--master-port") { Description = "Rendezvous port on node 0 (default: a free port, single host only)", DefaultValueFactory = _ => 0 };

    private static readonly string[] Stripped = ["--gpus", "--processes", "--nodes", "--node-rank", "--master-addr", "--master-port", "--device"];

    public void AddTo(Command cmd)
    {
        ArgumentNullException.ThrowIfNull(cmd);
        foreach (var o in new Option[] { Gpus, Processes, Nodes, NodeRank, MasterAddress, MasterPort }) cmd.Add(o);
    }

    /// <summary>The launch this command line asks for, or null to run in this process.</summary>
    public LaunchPlan? Plan(ParseResult r)
    {
        ArgumentNullException.ThrowIfNull(r);
        int? gpus = r.GetValue(Gpus), procs = r.GetValue(Processes);
        if (gpus is not null && procs is not null) throw new UsageException("--gpus and --processes are alternatives: give one");
        int? n = gpus ?? procs;
        if (n is null)
        {
            if (r.GetValue(Nodes) != 1 || r.GetValue(NodeRank) != 0) throw new UsageException("--nodes and --node-rank go with --gpus or --processes");
            return null;
        }
        if (Launched) throw new UsageException("this process was started by a launcher (WORLD_SIZE is set): drop --gpus/--processes");
        if (n < 1) throw new UsageException("--gpus/--processes must be at least 1");
        if (gpus is { } g)
        {
            int have = Torch.Cuda.IsAvailable ? Torch.Cuda.DeviceCount : 0;
            if (g > have) throw new UsageException($"--gpus {g}: this host has {have} CUDA device(s)");
        }
        var plan = new LaunchPlan(n.Value, r.GetValue(Nodes), r.GetValue(NodeRank), r.GetValue(MasterAddress)!, r.GetValue(MasterPort));
        Cli.OptionValue(plan.Validate);
        return plan;
    }

    /// <summary>Starts the ranks of this node with this command line (less the launch options) and waits for them.</summary>
    public int Launch(ParseResult r, LaunchPlan plan)
    {
        ArgumentNullException.ThrowIfNull(r);
        ArgumentNullException.ThrowIfNull(plan);
        bool onGpus = r.GetValue(Gpus) is not null;
        var tokens = r.Tokens.Select(t => t.Value).ToList();
        var kept = new List<string>();
        for (int i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            if (Stripped.Contains(t)) { i++; continue; }
            if (Stripped.Any(s => t.StartsWith(s + "=", StringComparison.Ordinal))) continue;
            kept.Add(t);
        }
        Console.Error.WriteLine($"launching {plan.ProcessesPerNode} {(onGpus ? "GPU" : "CPU")} process(es) on this node, {plan.WorldSize} in all");
        return Launcher.Run(plan, local => [.. kept, "--device", onGpus ? $"cuda:{local}" : "cpu"]);
    }

    /// <summary>Whether this process was started by a launcher (torchrun's WORLD_SIZE is set).</summary>
    public static bool Launched => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("WORLD_SIZE"));

    /// <summary>Fault injection for tests of the launcher: the rank named in this variable exits with code 3 after joining.</summary>
    public const string FaultVariable = "OML_DIST_FAULT_RANK";

    /// <summary>The process group of this rank when a launcher started it (null otherwise).</summary>
    public static ProcessGroup? Join(Device device)
    {
        if (Cli.OptionValue(RankInfo.FromEnvironment) is not { } info) return null;
        var group = ProcessGroup.Create(info, device);
        if (Environment.GetEnvironmentVariable(FaultVariable) is { } f && f == info.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture))
        {
            Console.Error.WriteLine($"rank {info.Rank}: failing on purpose ({FaultVariable})");
            Environment.Exit(3);
        }
        return group;
    }
}
