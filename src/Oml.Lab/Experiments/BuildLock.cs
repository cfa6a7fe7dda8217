using System.Security.Cryptography;
using System.Text;

namespace Oml.Lab.Experiments;

/// <summary>
/// An exclusive cross-process lock on something built into the output folder (a model folder, a fingerprint set), so
/// that shards of one run sharing an output folder never build the same thing at once: the first takes the lock and
/// builds, the others wait, then find it built. The lock is an open file under OUT/locks held with
/// <see cref="FileShare.None"/> (an advisory <c>flock</c> on Unix, released by the kernel when the process dies, so a
/// killed shard leaves no stale lock; the empty lock files stay).
/// </summary>
public sealed class BuildLock : IDisposable
{
    private readonly FileStream _file;

    private BuildLock(FileStream file, string path) => (_file, Path) = (file, path);

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>The lock file for <paramref name="target"/> under <paramref name="outDir"/>/locks.</summary>
    public static string PathFor(string outDir, string target)
    {
        var full = System.IO.Path.GetFullPath(target).TrimEnd('/', '\\');
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..12];
        return System.IO.Path.Combine(outDir, "locks", $"{ExperimentRunner.SafeId(System.IO.Path.GetFileName(full))}-{hash}.lock");
    }

    /// <summary>Takes the lock of <paramref name="target"/> if it is free, else null.</summary>
    public static BuildLock? TryAcquire(string outDir, string target)
    {
        var path = PathFor(outDir, target);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        try { return new BuildLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None), path); }
        catch (IOException e) when (e is not (FileNotFoundException or DirectoryNotFoundException or PathTooLongException)) { return null; }
    }

    /// <summary>Takes the lock of <paramref name="target"/>, waiting (and saying so on <paramref name="log"/>) while another process holds it.</summary>
    public static BuildLock Acquire(string outDir, string target, TextWriter? log = null, CancellationToken cancel = default)
    {
        bool told = false;
        while (true)
        {
            if (TryAcquire(outDir, target) is { } l) return l;
            if (!told) log?.WriteLine($"waiting for another process to finish building {target}");
            told = true;
            cancel.WaitHandle.WaitOne(250);
            cancel.ThrowIfCancellationRequested();
        }
    }

    public void Dispose() => _file.Dispose();
}
