using System.Diagnostics;
using System.Globalization;

namespace Oml.Engine;

/// <summary>
/// A profile of a window of a training loop's optimizer steps, asked for through the environment so that any command
/// that trains (<c>oml embed</c>, <c>oml train</c>, the lab) can be profiled on a GPU machine without new flags:
/// <c>OML_PROFILE=DIR</c> records steps <c>OML_PROFILE_STEPS</c> (<c>N</c> or <c>N-M</c>, 1-based; default 2, the first
/// step after the warm-up one) with <see cref="Profiler"/> and writes to DIR the Chrome trace
/// (<c>LABEL-steps-N-M.trace.json</c>; a name already there gets <c>-2</c>, <c>-3</c>, ...) and its
/// <see cref="ProfileSummary"/> (<c>.md</c> and <c>.json</c>). The device is
/// synchronised at both ends of the window, so its wall time is the steps' own. A window the loop never reaches
/// records nothing; one the loop leaves early (it stopped) is written when disposed. A profiler that cannot start
/// (a libtorch without Kineto) is reported once and training goes on unprofiled.
/// </summary>
public sealed class StepProfile : IDisposable
{
    /// <summary>The folder to write the profile to; unset: no profile.</summary>
    public const string EnvironmentVariable = "OML_PROFILE";
    /// <summary>The steps to profile: N or N-M (1-based, inclusive).</summary>
    public const string StepsVariable = "OML_PROFILE_STEPS";

    private readonly string _folder, _label;
    private readonly bool _cuda;
    private readonly int _device;
    private readonly Action<string>? _log;
    private long _started;
    private bool _recording, _done;

    /// <summary>First and last step of the window (1-based, inclusive).</summary>
    public int First { get; }
    public int Last { get; }

    /// <summary>The summary, once the window has been written.</summary>
    public ProfileSummary? Summary { get; private set; }

    /// <summary>The Markdown summary's path, once written.</summary>
    public string? SummaryPath { get; private set; }

    public StepProfile(string folder, int first, int last, Device device, string label, Action<string>? log = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentException.ThrowIfNullOrEmpty(label);
        if (first < 1 || last < first) throw new ArgumentOutOfRangeException(nameof(first), $"steps {first}-{last}: need 1 <= first <= last");
        (_folder, First, Last, _cuda, _device, _label, _log) = (folder, first, last, device.IsCuda, device.Index, label, log);
    }

    /// <summary>The profile the environment asks for (null when <see cref="EnvironmentVariable"/> is unset or empty).</summary>
    public static StepProfile? FromEnvironment(Device device, string label, Action<string>? log = null)
    {
        string? folder = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(folder)) return null;
        var (first, last) = ParseSteps(Environment.GetEnvironmentVariable(StepsVariable));
        return new StepProfile(folder, first, last, device, label, log ?? (s => Console.Error.WriteLine(s)));
    }

    /// <summary>Parses N or N-M (1-based, N ≤ M); null or empty gives step 2.</summary>
    public static (int First, int Last) ParseSteps(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return (2, 2);
        var parts = text.Split('-', StringSplitOptions.TrimEntries);
        if (parts.Length is 1 or 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int a)
            && (parts.Length == 1 ? a : int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int b) ? b : -1) is int last
            && a >= 1 && last >= a)
            return (a, last);
        throw new ArgumentException($"{StepsVariable}={text}: expected N or N-M with 1 <= N <= M");
    }

    /// <summary>Call before optimizer step <paramref name="step"/> (1-based) does any work.</summary>
    public void BeginStep(int step)
    {
        if (step != First || _recording || _done) return;
        try
        {
            if (_cuda) Torch.Cuda.Synchronize(_device);
            Profiler.Start(_cuda);
            _recording = true;
            _started = Stopwatch.GetTimestamp();
        }
        catch (Exception e) when (e is TorchException or InvalidOperationException)
        {
            _done = true;
            _log?.Invoke($"profile: the profiler did not start ({e.Message}); training goes on unprofiled");
        }
    }

    /// <summary>Call after optimizer step <paramref name="step"/> (1-based) has done all its work.</summary>
    public void EndStep(int step)
    {
        if (_recording && step >= Last) Finish(step);
    }

    /// <summary>Writes the window if it is still being recorded (the loop ended inside it).</summary>
    public void Dispose()
    {
        if (!_recording) return;
        // Also reached while an exception (out of memory, cancellation) unwinds the loop: never throw over it.
        try { Finish(null); }
        catch (Exception e)
        {
            _recording = false;
            _log?.Invoke($"profile: the window was not written ({e.Message})");
        }
    }

    private void Finish(int? lastStep)
    {
        _recording = false;
        _done = true;
        try
        {
            if (_cuda) Torch.Cuda.Synchronize(_device);
        }
        catch (TorchException)
        {
            // The profiler is stopped whatever happens, or every later op would be recorded into it.
            if (Profiler.Active)
                try { Profiler.Stop(null); } catch (TorchException) { }
            throw;
        }
        double wall = Stopwatch.GetElapsedTime(_started).TotalSeconds;
        // A second window of the same name in the folder (another run of a lab, another command) gets a suffix, -2, -3, ...
        string name = Path.Combine(_folder, $"{_label}-steps-{First}-{lastStep ?? Last}"), stem = name;
        for (int k = 2; File.Exists(stem + ".md") || File.Exists(stem + ".trace.json"); k++) stem = $"{name}-{k}";
        string trace = stem + ".trace.json";
        string last = lastStep?.ToString(CultureInfo.InvariantCulture) ?? "end";
        string title = $"{_label}: optimizer steps {First}-{lastStep?.ToString(CultureInfo.InvariantCulture) ?? "(the loop ended inside the window)"}";
        ProfileSummary summary;
        try
        {
            Profiler.Stop(trace);
            summary = ProfileSummary.FromFile(trace, wall);
            AtomicWrite(stem + ".md", summary.ToMarkdown(title));
            AtomicWrite(stem + ".json", summary.ToJson());
        }
        catch (Exception e) when (e is TorchException or IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException)
        {
            // A profile is a measurement of the run, never a reason to fail it.
            _log?.Invoke($"profile: steps {First}-{last} took {wall:F3} s; the trace was not written ({e.Message})");
            return;
        }
        Summary = summary;
        SummaryPath = stem + ".md";
        string top = string.Join(", ", summary.Classes.Take(4).Select(c => $"{c.Name} {c.Seconds / Math.Max(1e-12, wall):P0}"));
        _log?.Invoke(summary.KernelCount > 0
            ? $"profile: steps {First}-{last} took {wall:F3} s, device busy {summary.DeviceBusySeconds / Math.Max(1e-12, wall):P1} ({top}); {SummaryPath}"
            : $"profile: steps {First}-{last} took {wall:F3} s, no device activity recorded; {SummaryPath}");
    }

    private static void AtomicWrite(string path, string text)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
