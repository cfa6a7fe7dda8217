using System.CommandLine;
using System.Text.Json.Nodes;
using Oml.Engine;

namespace Oml.Cli;

/// <summary><c>oml info</c>: what the tensor engine sees on this machine.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var json = CliOptions.Json("Print {\"libtorch\", \"cpu_threads\", \"blas\", \"fused_attention\", \"cuda_devices\"} as JSON");
        var cmd = new Command("info", "Show the libtorch version, CPU threads and CUDA devices the engine uses.") { json };
        cmd.SetAction(r =>
        {
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["libtorch"] = Torch.LibTorchVersion,
                    ["cpu_threads"] = Torch.Threads,
                    ["blas"] = LoadedBlas(),
                    ["fused_attention"] = Torch.HasFusedAttention,
                    ["fused_kernels"] = Torch.FusedKernels,
                    ["cuda_devices"] = Torch.Cuda.IsAvailable ? Torch.Cuda.DeviceCount : 0,
                }.ToJsonString());
                return Cli.Ok;
            }
            Console.WriteLine($"libtorch         {Torch.LibTorchVersion}");
            Console.WriteLine($"cpu threads      {Torch.Threads}");
            Console.WriteLine($"blas             {LoadedBlas()}");
            Console.WriteLine($"fused attention  {(Torch.HasFusedAttention ? "yes" : "no (reference implementation)")}");
            Console.WriteLine($"fused kernels    {(Torch.FusedKernels ? "yes (RMSNorm, rotary embeddings, SwiGLU on CUDA)" : "no (composite libtorch ops)")}");
            Console.WriteLine($"cuda             {(Torch.Cuda.IsAvailable ? $"{Torch.Cuda.DeviceCount} device(s)" : "not available")}");
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>The BLAS library mapped into this process (OpenBLAS is ~25x faster than the reference BLAS).</summary>
    private static string LoadedBlas()
    {
        using var _ = Torch.Zeros([1]); // make sure libtorch and its BLAS are loaded
        try
        {
            var libs = File.ReadLines("/proc/self/maps")
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "")
                .Where(p => p.Contains("blas", StringComparison.OrdinalIgnoreCase))
                .Select(Path.GetFullPath).Distinct().ToList();
            return libs.Count == 0 ? "none mapped" : string.Join(", ", libs);
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
