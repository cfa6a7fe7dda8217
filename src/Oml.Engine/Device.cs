namespace Oml.Engine;

public enum DeviceType { Cpu = 0, Cuda = 1 }

/// <summary>Where a tensor lives: "cpu" or "cuda:N".</summary>
public readonly record struct Device(DeviceType Type, int Index = 0)
{
    public static readonly Device Cpu = new(DeviceType.Cpu);
    public static Device Cuda(int index = 0) => new(DeviceType.Cuda, index);

    public bool IsCuda => Type == DeviceType.Cuda;

    /// <summary>The first CUDA device when libtorch sees one, else the CPU.</summary>
    public static Device Auto => Torch.Cuda.IsAvailable && Torch.Cuda.DeviceCount > 0 ? Cuda(0) : Cpu;

    /// <summary>Parses "cpu", "cuda", "cuda:1", or "auto" (<see cref="Auto"/>).</summary>
    public static Device Parse(string s)
    {
        var t = s.Trim().ToLowerInvariant();
        if (t == "auto") return Auto;
        if (t == "cpu") return Cpu;
        if (t == "cuda") return Cuda();
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(5), out var i) && i >= 0) return Cuda(i);
        throw new ArgumentException($"unknown device '{s}' (expected auto, cpu, cuda or cuda:N)", nameof(s));
    }

    public override string ToString() => Type == DeviceType.Cpu ? "cpu" : $"cuda:{Index}";
}
