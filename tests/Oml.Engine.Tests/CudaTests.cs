namespace Oml.Engine.Tests;

/// <summary>CUDA-specific behaviour; runs only when the tests run on a GPU (OML_TEST_DEVICE=cuda).</summary>
public class CudaTests
{
    private static void RequireCuda() =>
        Assert.SkipUnless(Env.Device.IsCuda, "runs with OML_TEST_DEVICE=cuda on a machine with a GPU");

    [Fact]
    public void Cuda_is_available_and_reports_devices()
    {
        RequireCuda();
        Assert.True(Torch.Cuda.IsAvailable);
        Assert.True(Torch.Cuda.DeviceCount >= 1);
        Torch.Cuda.Synchronize();
    }

    [Fact]
    public void Memory_statistics_follow_allocations()
    {
        RequireCuda();
        Torch.Cuda.Synchronize();
        var before = Torch.Cuda.MemoryStats(Env.Device.Index);
        var t = Torch.Zeros([64 << 20], DType.Float32, Env.Device); // 256 MiB
        var during = Torch.Cuda.MemoryStats(Env.Device.Index);
        Assert.True(during.AllocatedBytes - before.AllocatedBytes >= 256L << 20, $"{before} -> {during}");
        Assert.True(during.PeakAllocatedBytes >= during.AllocatedBytes);
        Assert.True(during.ReservedBytes >= during.AllocatedBytes);
        t.Dispose();
        var after = Torch.Cuda.MemoryStats(Env.Device.Index);
        Assert.True(after.AllocatedBytes <= before.AllocatedBytes + (1 << 20), $"{before} -> {after}");
        Torch.Cuda.EmptyCache();
        Torch.Cuda.ResetPeakStats(Env.Device.Index);
    }

    [Fact]
    public void Tensors_move_between_host_and_device()
    {
        RequireCuda();
        using var s = Torch.NewScope();
        var host = Torch.FromArray(new[] { 1f, 2f, 3f });
        var dev = host.To(Env.Device);
        Assert.True(dev.Device.IsCuda);
        Assert.Equal([2f, 4f, 6f], (dev * 2).ToArray<float>());
        Assert.Equal(Device.Cpu, (dev * 2).Cpu().Device);
        var bf = host.To(DType.BFloat16, Env.Device);
        Assert.Equal(DType.BFloat16, bf.DType);
        Assert.True(bf.Device.IsCuda);
        // Mixing devices is an error with both devices named, not a crash.
        var e = Assert.Throws<TorchException>(() => host + dev);
        Assert.Contains("cuda", e.Message);
    }

    [Fact]
    public void Fused_kernels_are_used_with_libtorch_2()
    {
        RequireCuda();
        Assert.Equal(Torch.LibTorchVersion.StartsWith('2'), Torch.HasFusedAttention);
        Assert.Equal(Torch.LibTorchVersion.StartsWith('2'), Torch.HasFusedAdamW);
    }

    [Fact]
    public void Nccl_all_reduce_runs_on_a_one_rank_group()
    {
        RequireCuda();
        Assert.True(Distributed.ProcessGroup.IsAvailable("nccl"), "the native library was built without NCCL");
        using var g = Distributed.ProcessGroup.Create("nccl", "127.0.0.1", Distributed.Launcher.FreePort(), 0, 1, TimeSpan.FromSeconds(60));
        using var t = Torch.Full([4], 2.5, DType.Float32, Env.Device);
        g.AllReduce(t);
        g.Barrier();
        Assert.Equal(new float[] { 2.5f, 2.5f, 2.5f, 2.5f }, t.ToArray<float>());
    }
}
