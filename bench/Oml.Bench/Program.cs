using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Oml.Engine;

// Engine benchmark: float matmul throughput and one training step of a 4-layer MLP (forward, cross-entropy,
// backward, AdamW), for this binding and for PyTorch (bench/torch_peer.py) on the same machine in the same run.
//
//   dotnet run -c Release --project bench/Oml.Bench -- [--device cpu|cuda] [--dtype float32|bfloat16]
//       [--sizes 512,1024,2048] [--mlp 256x64,1024x256] [--seconds 1] [--python PATH] [--no-peer]
//       [--fused-adamw-peer] [--rounds 2] [--markdown FILE]
//
// Each side runs --rounds times, alternating (oml, PyTorch, oml, PyTorch, ...), and keeps its best result, so that
// clock boost and other drift over the run do not favour whichever side runs last.

var opts = Args.Parse(args);
if (opts.TryGet("generate", out var generateModel)) return GenerationBench.Run(generateModel, opts);
if (opts.Has("fingerprints")) return FingerprintBench.Run(opts);
if (opts.Has("serve")) return Oml.Bench.ServeBench.Run(opts);
if (opts.TryGet("model-io", out var ioModel)) return ModelIOBench.Run(ioModel, opts);
if (opts.TryGet("partial-null", out var nullModel)) return PartialNullBench.Run(nullModel, opts);
if (opts.TryGet("verify", out var verifyModel)) return VerifyBench.Run(verifyModel, opts);
if (opts.TryGet("forward-profile", out var profileModel)) return ForwardProfileBench.Run(profileModel, opts);
if (opts.Has("verdict-tails")) return VerdictTailsBench.Run(opts);
if (opts.TryGet("fake-endpoint", out var fakeSet)) return Oml.Bench.FakeEndpointBench.Run(fakeSet, opts);
var device = Device.Parse(opts.Get("device", "cpu"));
var dtype = DTypeExtensions.Parse(opts.Get("dtype", "float32"));
var sizes = opts.Get("sizes", "512,1024,2048").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
var mlps = opts.Get("mlp", "256x64,1024x256").Split(',', StringSplitOptions.RemoveEmptyEntries)
    .Select(c => c.Split('x')).Select(p => (Width: int.Parse(p[0]), Batch: int.Parse(p[1]))).ToArray();
double seconds = double.Parse(opts.Get("seconds", "1"), CultureInfo.InvariantCulture);
int rounds = int.Parse(opts.Get("rounds", "2"), CultureInfo.InvariantCulture);

Action sync = device.IsCuda ? () => Torch.Cuda.Synchronize() : () => { };
Console.Error.WriteLine($"oml: libtorch {Torch.LibTorchVersion}, {device}, {dtype.Name()}, {Torch.Threads} threads");
var ours = new List<Result>();
string? peerVersion = null;
var peer = new List<Result>();
for (int round = 1; round <= rounds; round++)
{
    Console.Error.WriteLine($"round {round} of {rounds}");
    Keep(ours, RunOurs());
    if (!opts.Has("no-peer")) Keep(peer, RunPeer());
}

// Keeps the best result of each benchmark across rounds, in first-seen order.
static void Keep(List<Result> best, List<Result> fresh)
{
    foreach (var r in fresh)
    {
        int i = best.FindIndex(x => x.Name == r.Name);
        if (i < 0) best.Add(r);
        else if (r.IsBetterThan(best[i])) best[i] = r;
    }
}

List<Result> RunOurs()
{
    var ours = new List<Result>();

    foreach (var n in sizes)
    {
        using var scope = Torch.NewScope();
        Torch.ManualSeed(0);
        var a = Torch.Randn([n, n], dtype, device);
        var b = Torch.Randn([n, n], dtype, device);
        double sec = Timing.Measure(() => { using var c = a.MatMul(b); }, sync, seconds);
        ours.Add(new($"matmul {n}", 2.0 * n * n * n / sec / 1e9, "GFLOP/s"));
        Console.Error.WriteLine($"  {ours[^1]}");
    }

    foreach (var (width, batch) in mlps)
    {
        using var scope = Torch.NewScope();
        Torch.ManualSeed(0);
        var parameters = new List<Tensor>();
        for (int i = 0; i < 4; i++)
        {
            parameters.Add((Torch.Randn([width, width], dtype, device) * (1.0 / Math.Sqrt(width))).Detach().RequiresGrad_());
            parameters.Add(Torch.Zeros([width], dtype, device).RequiresGrad_());
        }
        using var opt = new AdamW(parameters, lr: 1e-3);
        var input = Torch.Randn([batch, width], dtype, device);
        var target = Torch.RandInt(0, width, [batch], device: device);

        void Step()
        {
            using var s = Torch.NewScope();
            opt.ZeroGrad();
            var h = input;
            for (int i = 0; i < 4; i++)
            {
                h = F.Linear(h, parameters[2 * i], parameters[2 * i + 1]);
                if (i < 3) h = h.Relu();
            }
            F.CrossEntropy(h, target).Backward();
            opt.Step();
        }

        double sec = Timing.Measure(Step, sync, seconds);
        ours.Add(new($"mlp step {width}x{batch}", sec * 1e3, "ms"));
        Console.Error.WriteLine($"  {ours[^1]}");
    }
    return ours;
}

// The peer: the same work in PyTorch.
List<Result> RunPeer()
{
    var python = opts.Get("python", File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
    var script = Path.Combine(AppContext.BaseDirectory, "torch_peer.py");
    var psi = new ProcessStartInfo(python)
    {
        RedirectStandardOutput = true,
        UseShellExecute = false,
    };
    foreach (var a in new[]
             {
                 script, "--device", device.ToString(), "--dtype", dtype.Name(), "--sizes", string.Join(",", sizes),
                 "--mlp", string.Join(",", mlps.Select(m => $"{m.Width}x{m.Batch}")),
                 "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--threads", Torch.Threads.ToString(CultureInfo.InvariantCulture),
             })
        psi.ArgumentList.Add(a);
    if (opts.Has("fused-adamw-peer")) psi.ArgumentList.Add("--fused-adamw");
    Console.Error.WriteLine($"peer: {python} {Path.GetFileName(script)}");
    using var proc = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {python}");
    var output = proc.StandardOutput.ReadToEnd();
    proc.WaitForExit();
    if (proc.ExitCode != 0) throw new InvalidOperationException($"the PyTorch peer failed (exit {proc.ExitCode})");
    using var doc = JsonDocument.Parse(output);
    peerVersion = doc.RootElement.GetProperty("torch").GetString();
    var results = new List<Result>();
    foreach (var r in doc.RootElement.GetProperty("results").EnumerateArray())
    {
        results.Add(new Result(r.GetProperty("name").GetString()!, r.GetProperty("value").GetDouble(), r.GetProperty("unit").GetString()!));
        Console.Error.WriteLine($"  peer {results[^1]}");
    }
    return results;
}

// The table. ratio = binding performance / PyTorch performance (> 1: the binding is faster).
var md = new StringBuilder();
md.AppendLine($"| benchmark ({device}, {dtype.Name()}) | oml (libtorch {Torch.LibTorchVersion}) | PyTorch {peerVersion ?? "-"} | ratio |");
md.AppendLine("|---|---:|---:|---:|");
foreach (var r in ours)
{
    string p = "-", ratio = "-";
    if (peer.Find(x => x.Name == r.Name) is { } pr)
    {
        p = pr.Format();
        ratio = (r.Unit == "ms" ? pr.Value / r.Value : r.Value / pr.Value).ToString("F2", CultureInfo.InvariantCulture);
    }
    md.AppendLine($"| {r.Name} | {r.Format()} | {p} | {ratio} |");
}
foreach (var pr in peer)
    if (ours.All(o => o.Name != pr.Name)) md.AppendLine($"| {pr.Name} (PyTorch only) | - | {pr.Format()} | - |");
Console.WriteLine(md.ToString());
if (opts.TryGet("markdown", out var mdPath)) File.AppendAllText(mdPath, md + "\n");
return 0;

internal sealed record Result(string Name, double Value, string Unit)
{
    /// <summary>Higher throughput or lower time.</summary>
    public bool IsBetterThan(Result other) => Unit == "ms" ? Value < other.Value : Value > other.Value;

    public string Format() => Unit == "ms"
        ? $"{Value.ToString("F3", CultureInfo.InvariantCulture)} ms"
        : $"{Value.ToString("F1", CultureInfo.InvariantCulture)} {Unit}";

    public override string ToString() => $"{Name}: {Format()}";
}

internal static class Timing
{
    /// <summary>Seconds per call, measured as bench/torch_peer.py does: 3 warm-up calls, then batches of calls
    /// (doubling while a batch takes under 50 ms) until <paramref name="minSeconds"/> have passed; the best batch average.</summary>
    public static double Measure(Action f, Action sync, double minSeconds)
    {
        for (int i = 0; i < 3; i++) f();
        sync();
        int n = 1;
        double best = double.PositiveInfinity, spent = 0;
        while (spent < minSeconds)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < n; i++) f();
            sync();
            double dt = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            spent += dt;
            best = Math.Min(best, dt / n);
            if (dt < 0.05) n *= 2;
        }
        return best;
    }
}

internal sealed class Args
{
    private readonly Dictionary<string, string> _values = new();

    public static Args Parse(string[] argv)
    {
        var a = new Args();
        for (int i = 0; i < argv.Length; i++)
        {
            if (!argv[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{argv[i]}'");
            var key = argv[i][2..];
            a._values[key] = i + 1 < argv.Length && !argv[i + 1].StartsWith("--", StringComparison.Ordinal) ? argv[++i] : "true";
        }
        return a;
    }

    public string Get(string key, string fallback) => _values.TryGetValue(key, out var v) ? v : fallback;
    public bool Has(string key) => _values.ContainsKey(key);
    public bool TryGet(string key, out string value) => _values.TryGetValue(key, out value!);
}
