using System.Runtime.InteropServices;
using static Oml.Engine.Native;

namespace Oml.Engine;

/// <summary>
/// A random number generator of its own for one device, as <c>torch.Generator</c>: the random operations that take it
/// (<see cref="Torch.Rand"/>, <see cref="Torch.Randn"/>, <see cref="Torch.RandInt"/>, <see cref="Torch.Multinomial"/>,
/// <see cref="F.Dropout(Tensor, double, bool, RandomGenerator?)"/>) draw from it instead of libtorch's one global
/// generator of the device, so what they draw depends on the seed and on this generator's own earlier draws only,
/// never on what other threads draw at the same time. A generator created with seed s gives the stream the global
/// generator gives after <see cref="Torch.ManualSeed"/>(s) (tested on the CPU; on CUDA it is a copy of the device's
/// default generator reseeded with s: the same Philox seed and offset 0). Owns native memory: dispose it. One thread
/// at a time should draw from it (libtorch serialises concurrent draws, but their order would then decide the values).
/// </summary>
public sealed class RandomGenerator : IDisposable
{
    internal readonly GeneratorHandle Handle;

    /// <summary>A generator for <paramref name="device"/> (default: the CPU) seeded with <paramref name="seed"/>.</summary>
    public RandomGenerator(ulong seed, Device? device = null)
    {
        Device = device ?? Device.Cpu;
        Handle = oml_generator_new((int)Device.Type, Device.Index, seed);
        if (Handle.IsInvalid)
        {
            Handle.Dispose();
            throw new TorchException(LastError());
        }
    }

    /// <summary>The device whose tensors this generator fills (a random operation on another device is refused).</summary>
    public Device Device { get; }

    /// <summary>The seed this generator was created or last reseeded with.</summary>
    public ulong InitialSeed
    {
        get
        {
            Check(oml_generator_initial_seed(Handle, out ulong seed));
            return seed;
        }
    }

    /// <summary>Reseeds the generator: its stream starts again as a new generator's with <paramref name="seed"/>.</summary>
    public void ManualSeed(ulong seed) => Check(oml_generator_manual_seed(Handle, seed));

    public void Dispose() => Handle.Dispose();

    /// <summary>Refuses a generator of another device than the tensor it would fill (libtorch's own message is less clear).</summary>
    internal static void CheckDevice(RandomGenerator? generator, Device device, string op)
    {
        if (generator is not null && generator.Device != device)
            throw new ArgumentException($"{op}: the random generator is for {generator.Device}, the tensor is on {device}");
    }
}

/// <summary>Owns one native at::Generator. Released exactly once, by Dispose or by the finalizer.</summary>
internal sealed class GeneratorHandle : SafeHandle
{
    public GeneratorHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle()
    {
        oml_generator_free(handle);
        return true;
    }
}

/// <summary>A borrowed raw handle for an optional generator argument (null: the global generator), kept alive until disposed.</summary>
internal readonly ref struct GeneratorLease
{
    private readonly GeneratorHandle? _handle;
    public readonly IntPtr Ptr;

    public GeneratorLease(RandomGenerator? g)
    {
        if (g is null)
        {
            _handle = null;
            Ptr = IntPtr.Zero;
            return;
        }
        bool added = false;
        g.Handle.DangerousAddRef(ref added);   // throws ObjectDisposedException for a disposed generator
        _handle = g.Handle;
        Ptr = g.Handle.DangerousGetHandle();
    }

    public void Dispose() => _handle?.DangerousRelease();
}
