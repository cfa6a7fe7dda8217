using System.Text.Json.Nodes;

namespace Oml.Cli.Tests;

/// <summary><c>oml profile summarize</c> on a trace in torch.profiler's format (the PyTorch peer's), in-process.</summary>
[Collection(nameof(CliTests))]
public class ProfileCliTests
{
    // A peer's step: two ranges, a launch in each, a kernel per launch (correlation ids), a copy launched outside.
    private const string Trace = """
    {"traceEvents": [
      {"ph": "X", "cat": "user_annotation", "name": "fingerprint rows: forward", "ts": 1000.5, "dur": 100, "pid": 1, "tid": 1},
      {"ph": "X", "cat": "user_annotation", "name": "optimizer", "ts": 1200, "dur": 100, "pid": 1, "tid": 1},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 1010, "dur": 3, "pid": 1, "tid": 1, "args": {"correlation": 11}},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 1210, "dur": 3, "pid": 1, "tid": 1, "args": {"correlation": 12}},
      {"ph": "X", "cat": "kernel", "name": "sm90_xmma_gemm_bf16bf16_bf16f32", "ts": 1020, "dur": 300, "pid": 0, "tid": 7, "args": {"correlation": 11}},
      {"ph": "X", "cat": "kernel", "name": "void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor>", "ts": 1320, "dur": 100, "pid": 0, "tid": 7, "args": {"correlation": 12}},
      {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH", "ts": 1500.5, "dur": 100, "pid": 0, "tid": 7, "args": {"correlation": 13}}
    ]}
    """;

    [Fact]
    public void Summarize_prints_the_device_time_by_class_and_range_and_json_on_request()
    {
        string path = Path.Combine(Path.GetTempPath(), $"oml-profile-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, Trace);
        try
        {
            var (code, output, err) = CliRunner.Run("profile", "summarize", path, "--wall-seconds", "0.001");
            Assert.True(code == 0, err);
            Assert.Contains("device busy (kernels, copies, fills, overlaps counted once): 0.0005 s (50.0 %)", output);
            Assert.Contains("| matrix products | 1 | 0.0003 | 30.0 % |", output);
            Assert.Contains("| fingerprint rows: forward | 1 | 0.0003 | 30.0 % |", output);
            Assert.Contains("| optimizer | 1 | 0.0001 | 10.0 % |", output);
            Assert.Contains($"| {Oml.Engine.ProfileSummary.OutsideRanges} | 1 | 0.0001 | 10.0 % |", output);

            (code, output, err) = CliRunner.Run("profile", "summarize", path, "--json");
            Assert.True(code == 0, err);
            var j = JsonNode.Parse(output)!;
            Assert.Equal(600e-6, j["wall_seconds"]!.GetValue<double>(), 9); // the span of the events: 1000.5 to 1600.5 µs
            Assert.Equal(2, j["kernels"]!.GetValue<int>());
            Assert.Equal("fingerprint rows: forward", j["ranges"]![0]!["name"]!.GetValue<string>());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Bad_input_gets_one_line()
    {
        string path = Path.Combine(Path.GetTempPath(), $"oml-profile-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, "{\"traceEvents\": [");
        try
        {
            var (code, _, err) = CliRunner.Run("profile", "summarize", path + ".missing");
            Assert.Equal(2, code);
            Assert.Contains("no such trace file", err);
            (code, _, err) = CliRunner.Run("profile", "summarize", path);
            Assert.Equal(1, code);
            Assert.Contains("not a JSON trace", err);
            Assert.Single(err.Trim().Split('\n'));
            File.WriteAllText(path, "{\"events\": []}");
            (code, _, err) = CliRunner.Run("profile", "summarize", path);
            Assert.Equal(1, code);
            Assert.Contains("no traceEvents", err);
            (code, _, err) = CliRunner.Run("profile", "summarize", path, "--wall-seconds", "0");
            Assert.Equal(2, code);
            Assert.Contains("--wall-seconds must be positive", err);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
