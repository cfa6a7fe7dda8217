using System.Text.Json;

namespace Oml.Engine.Tests;

// The profiler is one per process: the tests that record run one at a time in this collection.
[CollectionDefinition("profiler", DisableParallelization = true)]
public sealed class ProfilerCollection;

[Collection("profiler")]
public class ProfilerTests
{
    // A trace as Kineto writes it on a GPU: host ranges, launches (cuda_runtime) and the kernels they launched,
    // matched by correlation id; times in microseconds.
    private const string GpuTrace = """
    {"schemaVersion": 1, "traceEvents": [
      {"ph": "X", "cat": "user_annotation", "name": "forward", "pid": 1, "tid": 1, "ts": 0, "dur": 100},
      {"ph": "X", "cat": "user_annotation", "name": "head", "pid": 1, "tid": 1, "ts": 60, "dur": 30},
      {"ph": "X", "cat": "user_annotation", "name": "optimizer", "pid": 1, "tid": 1, "ts": 200, "dur": 50},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1, "ts": 10, "dur": 2, "args": {"correlation": 1}},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1, "ts": 70, "dur": 2, "args": {"correlation": 2}},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1, "ts": 95, "dur": 2, "args": {"correlation": 3}},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 9, "ts": 210, "dur": 2, "args": {"correlation": 4}},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaMemcpyAsync", "pid": 1, "tid": 1, "ts": 300, "dur": 2, "args": {"correlation": 5}},
      {"ph": "X", "cat": "kernel", "name": "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", "pid": 0, "tid": 7, "ts": 20, "dur": 400, "args": {"correlation": 1}},
      {"ph": "X", "cat": "kernel", "name": "void at::native::vectorized_elementwise_kernel<4, at::native::AUnaryFunctor<float>>(int, float*)", "pid": 0, "tid": 7, "ts": 420, "dur": 100, "args": {"correlation": 2}},
      {"ph": "X", "cat": "kernel", "name": "void (anonymous namespace)::rms_norm_fwd<__nv_bfloat16>(...)", "pid": 0, "tid": 7, "ts": 520, "dur": 50, "args": {"correlation": 3}},
      {"ph": "X", "cat": "kernel", "name": "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdam>(...)", "pid": 0, "tid": 8, "ts": 500, "dur": 200, "args": {"correlation": 4}},
      {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pinned)", "pid": 0, "tid": 7, "ts": 900, "dur": 100, "args": {"correlation": 5}},
      {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": 10, "dur": 5},
      {"ph": "i", "cat": "instant", "name": "marker", "pid": 1, "tid": 1, "ts": 5}
    ]}
    """;

    [Fact]
    public void A_gpu_trace_is_summarised_by_class_by_range_through_the_launches_and_by_kernel()
    {
        var s = ProfileSummary.From(JsonDocument.Parse(GpuTrace).RootElement, wallSeconds: 0.002);
        Assert.Equal(4, s.KernelCount);
        Assert.Equal(750e-6, s.KernelSeconds, 9);
        Assert.Equal(100e-6, s.CopySeconds, 9);
        // Busy: [20, 700) is covered (kernels overlap at 500-570), then [900, 1000): 780 µs, overlaps counted once.
        Assert.Equal(780e-6, s.DeviceBusySeconds, 9);
        double Class(string name) => s.Classes.Single(c => c.Name == name).Seconds;
        Assert.Equal(400e-6, Class("matrix products"), 9);
        Assert.Equal(100e-6, Class("elementwise"), 9);
        Assert.Equal(50e-6, Class("fused (oml kernels)"), 9);
        Assert.Equal(200e-6, Class("optimizer"), 9);
        Assert.Equal(100e-6, Class("copies (memcpy)"), 9);
        Assert.Equal("matrix products", s.Classes[0].Name);
        // The launch at 70 µs falls in "head", nested in "forward": the innermost range gets the kernel; the launch at
        // 210 µs on another host thread falls in "optimizer" by time; the copy's launch at 300 µs is outside every range.
        double Range(string name) => s.Ranges.Single(r => r.Name == name).Seconds;
        Assert.Equal(450e-6, Range("forward"), 9);
        Assert.Equal(100e-6, Range("head"), 9);
        Assert.Equal(200e-6, Range("optimizer"), 9);
        Assert.Equal(100e-6, Range(ProfileSummary.OutsideRanges), 9);
        Assert.Equal(3, s.HostRanges.Count);
        Assert.Equal(100e-6, s.HostRanges.Single(r => r.Name == "forward").Seconds, 9);
        Assert.Equal("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", s.TopKernels[0].Name);
        Assert.Empty(s.TopHostOps); // host operators are listed only when no device ran
        string md = s.ToMarkdown("t");
        Assert.Contains("device busy", md);
        Assert.Contains("| head | 1 | 0.0001 | 5.0 % |", md);
        var json = JsonDocument.Parse(s.ToJson()).RootElement;
        Assert.Equal(4, json.GetProperty("kernels").GetInt32());
        Assert.Equal("matrix products", json.GetProperty("classes")[0].GetProperty("name").GetString());
    }

    [Theory]
    [InlineData("void flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64>>(Flash_fwd_params)", "attention")]
    [InlineData("fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel)", "attention")]
    [InlineData("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matrix products")]
    [InlineData("void (anonymous namespace)::swiglu_bwd<__nv_bfloat16>(...)", "fused (oml kernels)")]
    [InlineData("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>(...)", "reductions")]
    [InlineData("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>(...)", "softmax and loss")]
    [InlineData("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>(...)", "copies, indexing")]
    [InlineData("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>(...)", "fills")]
    [InlineData("something_else", "other")]
    public void Kernels_are_classified_by_name(string kernel, string expected) => Assert.Equal(expected, ProfileSummary.Classify(kernel));

    [Theory]
    [InlineData(null, 2, 2)]
    [InlineData("", 2, 2)]
    [InlineData("5", 5, 5)]
    [InlineData("3-7", 3, 7)]
    [InlineData(" 3 - 3 ", 3, 3)]
    public void Profile_steps_parse(string? text, int first, int last) => Assert.Equal((first, last), StepProfile.ParseSteps(text));

    [Theory]
    [InlineData("0")]
    [InlineData("4-2")]
    [InlineData("x")]
    [InlineData("1-2-3")]
    [InlineData("-3")]
    public void Bad_profile_steps_are_refused_with_the_variable_named(string text) =>
        Assert.Contains(StepProfile.StepsVariable, Assert.Throws<ArgumentException>(() => StepProfile.ParseSteps(text)).Message);

    [Fact]
    public void The_profiler_records_host_operators_and_ranges_to_a_chrome_trace()
    {
        string dir = Path.Combine(Path.GetTempPath(), "oml-profiler-" + Guid.NewGuid().ToString("N"));
        try
        {
            string trace = Path.Combine(dir, "t.trace.json");
            Assert.False(Profiler.Active);
            Assert.True(Profiler.Range("not recorded") is var none && none.Equals(default(Profiler.RangeScope)));
            Profiler.Start(cuda: false);
            Assert.True(Profiler.Active);
            Assert.Throws<InvalidOperationException>(() => Profiler.Start(cuda: false));
            using (Profiler.Range("outer range"))
            {
                using var scope = Torch.NewScope();
                using (Profiler.Range("inner", "range"))
                {
                    var a = Torch.Randn([64, 64], generator: new RandomGenerator(1));
                    _ = a.MatMul(a).Sum().ToDouble();
                }
            }
            Profiler.Stop(trace);
            Assert.False(Profiler.Active);
            Assert.Throws<InvalidOperationException>(() => Profiler.Stop(trace));
            var s = ProfileSummary.FromFile(trace, 1.0);
            Assert.Equal(["inner: range", "outer range"], s.HostRanges.Select(r => r.Name).Order());
            Assert.True(s.HostRanges.Single(r => r.Name == "outer range").Seconds >= s.HostRanges.Single(r => r.Name == "inner: range").Seconds);
            Assert.Contains(s.TopHostOps, o => o.Name == "aten::mm");
        }
        finally
        {
            if (Profiler.Active) Profiler.Stop(null);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_step_window_is_written_once_at_its_end_and_a_window_left_early_when_disposed()
    {
        string dir = Path.Combine(Path.GetTempPath(), "oml-profiler-" + Guid.NewGuid().ToString("N"));
        var log = new List<string>();
        try
        {
            void Work()
            {
                using var scope = Torch.NewScope();
                using (Profiler.Range("work")) _ = Torch.Ones([32, 32]).MatMul(Torch.Ones([32, 32])).Sum().ToDouble();
            }
            using (var p = new StepProfile(dir, 2, 3, Device.Cpu, "loop", log.Add))
                for (int step = 1; step <= 5; step++)
                {
                    p.BeginStep(step);
                    Work();
                    p.EndStep(step);
                    Assert.Equal(step < 3 ? null : Path.Combine(dir, "loop-steps-2-3.md"), p.SummaryPath);
                }
            Assert.Equal(["loop-steps-2-3.json", "loop-steps-2-3.md", "loop-steps-2-3.trace.json"], Directory.GetFiles(dir).Select(Path.GetFileName).Order());
            // Steps 2 and 3 only: two "work" ranges.
            Assert.Equal(2, ProfileSummary.FromFile(Path.Combine(dir, "loop-steps-2-3.trace.json"), 1).HostRanges.Single(r => r.Name == "work").Count);
            Assert.Contains("steps 2-3", Assert.Single(log));

            // The loop stops after step 2 of a 2-4 window: disposing writes what was recorded, named by the window.
            using (var p = new StepProfile(dir, 2, 4, Device.Cpu, "early", log.Add))
                for (int step = 1; step <= 2; step++)
                {
                    p.BeginStep(step);
                    Work();
                    p.EndStep(step);
                }
            Assert.True(File.Exists(Path.Combine(dir, "early-steps-2-4.md")));
            Assert.Contains("loop ended inside the window", File.ReadAllText(Path.Combine(dir, "early-steps-2-4.md")));

            // A folder that cannot be written: the window is reported, the loop goes on, the profiler is stopped.
            string blocked = Path.Combine(dir, "blocked");
            File.WriteAllText(blocked, "a file where the folder would be");
            using (var p = new StepProfile(blocked, 1, 1, Device.Cpu, "blocked", log.Add))
                for (int step = 1; step <= 2; step++) { p.BeginStep(step); Work(); p.EndStep(step); }
            Assert.Contains("the trace was not written", log[^1]);
            Assert.False(Profiler.Active);

            // The same window again in the same folder: a suffix, nothing overwritten.
            using (var p = new StepProfile(dir, 2, 3, Device.Cpu, "loop", log.Add))
                for (int step = 1; step <= 3; step++) { p.BeginStep(step); Work(); p.EndStep(step); }
            Assert.True(File.Exists(Path.Combine(dir, "loop-steps-2-3-2.md")));
            Assert.Contains("steps 2-3", File.ReadAllText(Path.Combine(dir, "loop-steps-2-3.md")));

            // A window the loop never reaches writes nothing.
            using (var p = new StepProfile(dir, 9, 9, Device.Cpu, "never", log.Add))
                for (int step = 1; step <= 3; step++) { p.BeginStep(step); p.EndStep(step); }
            Assert.Empty(Directory.GetFiles(dir, "never-*"));
            Assert.False(Profiler.Active);
        }
        finally
        {
            if (Profiler.Active) Profiler.Stop(null);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
