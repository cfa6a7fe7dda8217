using System.Diagnostics;

namespace Oml.Lab.Experiments;

/// <summary>A one-line progress bar over cells with the estimated time left (from the computed cells' mean time).</summary>
public sealed class ProgressBar(int total, TextWriter? writer)
{
    private readonly Stopwatch _sw = Stopwatch.StartNew();
    private int _done, _computed;
    private double _computeSeconds;

    public int Total => total;

    /// <summary>The line for the current state (also what is drawn).</summary>
    public string Line(string current)
    {
        const int width = 24;
        int filled = total == 0 ? width : (int)Math.Round(width * (double)_done / total);
        string eta = _computed == 0 ? "--" : Format(_computeSeconds / _computed * (total - _done));
        return $"[{new string('#', filled)}{new string('.', width - filled)}] {_done}/{total} cells  {Format(_sw.Elapsed.TotalSeconds)} elapsed, ETA {eta}  {current}";
    }

    public void Starting(string id) => Draw(id);

    public void Finished(string id, bool computed, double seconds)
    {
        _done++;
        if (computed) { _computed++; _computeSeconds += seconds; }
        Draw(computed ? $"{id} ({seconds:F1} s)" : $"{id} (saved)");
        if (_done == total) writer?.WriteLine();
    }

    private void Draw(string current)
    {
        if (writer is null) return;
        var line = Line(current);
        if (line.Length > 160) line = line[..157] + "...";
        writer.Write("\r" + line.PadRight(160));
        writer.Flush();
    }

    public static string Format(double seconds) =>
        seconds < 60 ? $"{seconds:F0}s" : seconds < 3600 ? $"{(int)seconds / 60}m{(int)seconds % 60:D2}s" : $"{(int)seconds / 3600}h{(int)seconds % 3600 / 60:D2}m";
}
