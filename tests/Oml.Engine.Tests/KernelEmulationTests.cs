using System.Diagnostics;

namespace Oml.Engine.Tests;

/// <summary>
/// The fused CUDA kernels (native/oml_kernels.cu) checked where no GPU is: the file compiled for the CPU with g++ under
/// the emulation in KernelEmulation/ (each block's threads as OS threads, barriers for __syncthreads), and
/// KernelEmulation/checks.cpp run on it: every launcher against float64 references of the composite ops, in float32,
/// float16 and bfloat16, aligned and one element off a 16-byte boundary, and each 16-byte vector path against its
/// scalar path (bit for bit for rotary embeddings and SwiGLU). It checks indexing and arithmetic, not speed or the
/// resources a GPU grants (FusedOpTests with OML_TEST_DEVICE=cuda and bench/gpu/kernel_bench.py do that on a GPU).
/// </summary>
public class KernelEmulationTests
{
    private static string? SourceRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "native", "oml_kernels.cu"))
                && File.Exists(Path.Combine(d.FullName, "tests", "Oml.Engine.Tests", "KernelEmulation", "checks.cpp")))
                return d.FullName;
        return null;
    }

    private static (int Code, string Output) Run(string file, IEnumerable<string> args, TimeSpan limit)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} ran longer than {limit.TotalSeconds:F0} s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [Fact]
    public void Kernels_equal_the_composite_ops_and_their_vector_paths_the_scalar_ones()
    {
        // The published test folder a GPU run uses has no sources: there the kernels run for real (FusedOpTests).
        string? root = SourceRoot();
        if (root is null) Assert.Skip("native/oml_kernels.cu is not beside this test build (a published test folder)");
        string emulation = Path.Combine(root, "tests", "Oml.Engine.Tests", "KernelEmulation");
        string dir = Directory.CreateTempSubdirectory("oml-kernel-emulation-").FullName;
        try
        {
            string exe = Path.Combine(dir, "checks");
            string cxx = Environment.GetEnvironmentVariable("CXX") is { Length: > 0 } c ? c : "g++";
            var (buildCode, buildOutput) = Run(cxx,
                ["-std=c++20", "-O1", "-ffp-contract=off", "-w", "-I", emulation, "-x", "c++", Path.Combine(root, "native", "oml_kernels.cu"),
                 "-x", "c++", Path.Combine(emulation, "checks.cpp"), "-o", exe, "-lpthread"], TimeSpan.FromMinutes(3));
            Assert.True(buildCode == 0, $"{cxx} could not build the kernel emulation:\n{buildOutput}");
            var (code, output) = Run(exe, [], TimeSpan.FromMinutes(5));
            Assert.True(code == 0, "kernel checks failed:\n" + output);
            Assert.Contains(", 0 failed", output);
            // The checks ran (456 when this was written): a harness that checked nothing would also print "0 failed".
            var summary = output.Split('\n').Single(l => l.StartsWith("kernel checks:", StringComparison.Ordinal));
            int passed = int.Parse(summary.Split(' ')[2], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(passed >= 400, summary);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
