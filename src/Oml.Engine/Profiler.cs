using static Oml.Engine.Native;

namespace Oml.Engine;

/// <summary>
/// libtorch's profiler (Kineto) over the shim: the operators run on the host and, on a GPU, every kernel, copy and
/// fill the device ran, written as a Chrome trace (the format of torch.profiler's <c>export_chrome_trace</c>; open it in
/// Perfetto or chrome://tracing, or summarise it with <see cref="ProfileSummary"/>). Named <see cref="Range"/>s mark
/// the phases of a step on the host timeline, as <c>torch.profiler.record_function</c> does; the kernels a range
/// launched are counted to it. One profile at a time per process.
/// </summary>
public static class Profiler
{
    private static volatile bool _active;

    /// <summary>Whether a profile is being recorded.</summary>
    public static bool Active => _active;

    /// <summary>Starts recording host operators and, with <paramref name="cuda"/>, the devices' activity.</summary>
    public static void Start(bool cuda, bool recordShapes = false)
    {
        if (_active) throw new InvalidOperationException("a profile is already being recorded");
        Check(oml_profiler_start(cuda ? 1 : 0, recordShapes ? 1 : 0));
        _active = true;
    }

    /// <summary>Stops recording and writes the Chrome trace to <paramref name="tracePath"/> (null: discards it).</summary>
    public static void Stop(string? tracePath)
    {
        if (!_active) throw new InvalidOperationException("no profile is being recorded");
        _active = false;
        try
        {
            if (tracePath is not null) Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(tracePath))!);
        }
        catch
        {
            Check(oml_profiler_stop(null)); // stopped all the same: nothing may go on recording
            throw;
        }
        Check(oml_profiler_stop(tracePath));
    }

    /// <summary>
    /// A named range on the host timeline until disposed; nothing (not even a native call) while no profile is being
    /// recorded. Ranges nest; dispose them in reverse order on the thread that opened them.
    /// </summary>
    public static RangeScope Range(string name) => _active ? new RangeScope(oml_record_begin(name)) : default;

    /// <summary>The range "<paramref name="part"/>: <paramref name="phase"/>", the name built only while recording.</summary>
    public static RangeScope Range(string part, string phase) => _active ? new RangeScope(oml_record_begin($"{part}: {phase}")) : default;

    /// <summary>An open <see cref="Range"/>.</summary>
    public readonly struct RangeScope : IDisposable
    {
        private readonly IntPtr _handle;
        internal RangeScope(IntPtr handle) => _handle = handle;
        public void Dispose()
        {
            if (_handle != IntPtr.Zero) oml_record_end(_handle);
        }
    }
}
