using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Oml.Engine;

/// <summary>
/// Wall-clock time per named phase of one command (loading, hashing, the greedy pass, ...), for the benchmarks that
/// break a whole command's time down (docs/benchmarks.md). Phases are recorded always (a stopwatch read per phase);
/// the <c>oml</c> program prints them to stderr at exit when <see cref="EnvironmentVariable"/> is 1. A phase measured
/// more than once accumulates; phases run on other threads overlap the ones of the main thread, so their sum can
/// exceed the command's wall time (the printout says which ran in the background).
/// </summary>
public static class Phases
{
    /// <summary>Set to 1 to have <c>oml</c> print its phases to stderr when it exits.</summary>
    public const string EnvironmentVariable = "OML_TIMINGS";

    private static readonly Lock Gate = new();
    private static readonly List<(string Name, double Seconds)> Recorded = [];

    /// <summary>Whether the environment asks for the phases to be printed.</summary>
    public static bool Requested => Environment.GetEnvironmentVariable(EnvironmentVariable) is "1" or "true";

    /// <summary>Starts timing <paramref name="name"/>; the phase ends when the returned scope is disposed.</summary>
    public static Scope Measure(string name) => new(name, Stopwatch.GetTimestamp());

    /// <summary>Adds <paramref name="seconds"/> to the phase <paramref name="name"/> (created on first use, in that order).</summary>
    public static void Add(string name, double seconds)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (Gate)
        {
            int i = Recorded.FindIndex(p => p.Name == name);
            if (i < 0) Recorded.Add((name, seconds));
            else Recorded[i] = (name, Recorded[i].Seconds + seconds);
        }
    }

    /// <summary>Runs <paramref name="f"/> as the phase <paramref name="name"/>.</summary>
    public static T Time<T>(string name, Func<T> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        using var _ = Measure(name);
        return f();
    }

    /// <summary>The phases so far, in the order they were first recorded.</summary>
    public static IReadOnlyList<(string Name, double Seconds)> Snapshot()
    {
        lock (Gate) return [.. Recorded];
    }

    /// <summary>Forgets every phase (for a second command in the same process, e.g. in tests).</summary>
    public static void Reset()
    {
        lock (Gate) Recorded.Clear();
    }

    /// <summary>The phases as one JSON object {"name": seconds, ...} (seconds to the millisecond).</summary>
    public static string ToJson()
    {
        var sb = new StringBuilder("{");
        foreach (var (name, s) in Snapshot())
        {
            if (sb.Length > 1) sb.Append(", ");
            sb.Append('"').Append(name.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)).Append("\": ");
            sb.Append(s.ToString("F3", CultureInfo.InvariantCulture));
        }
        return sb.Append('}').ToString();
    }

    /// <summary>An open phase: disposing it adds its elapsed time.</summary>
    public readonly struct Scope(string name, long start) : IDisposable
    {
        public void Dispose() => Add(name, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }
}
