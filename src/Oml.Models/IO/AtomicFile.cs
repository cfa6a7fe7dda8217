using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Models.IO;

/// <summary>
/// The one way this project writes an output file: a temporary sibling in the same folder, written and flushed to
/// disk (fsync), renamed over (or, without <c>overwrite</c>, beside) the target, and then the folder itself flushed, so
/// that after a crash the target holds either its old content or the complete new one, never a torn mix.
/// </summary>
public static partial class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/>. Without <paramref name="overwrite"/> an existing
    /// file is left untouched and <see cref="OutputExistsException"/> is thrown (checked again at the rename, so a file
    /// that appears meanwhile is not replaced either). <paramref name="ownerOnly"/> creates the file 0600 on Unix.
    /// </summary>
    public static void Write(string path, Action<Stream> write, bool overwrite = true, bool ownerOnly = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        var full = Path.GetFullPath(path);
        if (!overwrite && Exists(full)) throw new OutputExistsException(full);
        var dir = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' names no file in a folder", nameof(path));
        Directory.CreateDirectory(dir);
        var tmp = TempSibling(full);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 1 << 20 };
        if (ownerOnly && !OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            using (var fs = new FileStream(tmp, options))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            try
            {
                File.Move(tmp, full, overwrite);
            }
            catch (IOException) when (!overwrite && Exists(full))
            {
                throw new OutputExistsException(full);
            }
            SyncDirectory(dir);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    public static void WriteBytes(string path, ReadOnlySpan<byte> bytes, bool overwrite = true, bool ownerOnly = false)
    {
        var copy = bytes.ToArray();
        try { Write(path, s => s.Write(copy), overwrite, ownerOnly); }
        finally { CryptographicOperations.ZeroMemory(copy); }
    }

    /// <summary>Writes UTF-8 text (no byte-order mark).</summary>
    public static void WriteText(string path, string text, bool overwrite = true) =>
        Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)), overwrite);

    /// <summary>Copies a file atomically.</summary>
    public static void Copy(string from, string to, bool overwrite = true) => Write(to, s =>
    {
        using var src = File.OpenRead(from);
        src.CopyTo(s);
    }, overwrite);

    /// <summary>Throws <see cref="OutputExistsException"/> when <paramref name="path"/> exists and <paramref name="force"/> is not set (a check before long work; the write checks again).</summary>
    public static void CheckWritable(string path, bool force)
    {
        if (!force && Exists(Path.GetFullPath(path))) throw new OutputExistsException(Path.GetFullPath(path));
    }

    internal static bool Exists(string full) => File.Exists(full) || Directory.Exists(full);

    internal static string TempSibling(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.tmp");

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Flushes a folder's entries (the renames into it) to disk; a no-op where folders cannot be opened (Windows).</summary>
    public static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) return;
        int fd = Posix.Open(dir, Posix.ORdOnly | Posix.ODirectory);
        if (fd < 0) return; // e.g. no read permission on the folder: the rename still happened
        try { Posix.Fsync(fd); }
        finally { _ = Posix.Close(fd); } // a failed close of a read-only descriptor after fsync loses nothing
    }

    internal static partial class Posix
    {
        public const int ORdOnly = 0;
        public static readonly int ODirectory = OperatingSystem.IsMacOS() ? 0x100000 : 0x10000;

        [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        public static partial int Open(string path, int flags);

        [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
        public static partial int Fsync(int fd);

        [LibraryImport("libc", EntryPoint = "close")]
        public static partial int Close(int fd);

        /// <summary>Linux renameat2: with RENAME_EXCHANGE (2) swaps two paths atomically.</summary>
        [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        public static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

        public const int AtFdCwd = -100;
        public const uint RenameExchange = 2;
    }
}

/// <summary>
/// Publishes a whole folder at once: it is filled under a temporary name beside the target and then renamed into
/// place, so that readers see the old folder or the complete new one. Replacing an existing folder swaps the two
/// atomically where the system can (Linux renameat2 RENAME_EXCHANGE) and otherwise moves the old one aside first.
/// Nothing of the old folder survives in the new one (no stale manifest beside new weights).
/// </summary>
public static class AtomicFolder
{
    /// <summary>
    /// Fills a fresh temporary folder through <paramref name="fill"/> (given its path), flushes it, and publishes it as
    /// <paramref name="target"/>. Without <paramref name="overwrite"/> an existing target is left untouched and
    /// <see cref="OutputExistsException"/> is thrown. When <paramref name="fill"/> fails the target is unchanged.
    /// </summary>
    public static void Publish(string target, Action<string> fill, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(target);
        ArgumentNullException.ThrowIfNull(fill);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
        if (File.Exists(full)) throw new IOException($"{full} is a file, not a folder");
        CheckWritable(full, overwrite);
        var parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{target}' has no parent folder", nameof(target));
        Directory.CreateDirectory(parent);
        var tmp = AtomicFile.TempSibling(full);
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            foreach (var f in Directory.EnumerateFiles(tmp, "*", SearchOption.AllDirectories)) SyncFile(f);
            AtomicFile.SyncDirectory(tmp);
            if (!Directory.Exists(full))
            {
                try { Directory.Move(tmp, full); }
                catch (IOException) when (Directory.Exists(full) && !overwrite) { throw new OutputExistsException(full); }
            }
            else if (!Exchange(tmp, full))
            {
                // No atomic swap here: move the old folder aside, move the new one in, then drop the old one.
                var old = AtomicFile.TempSibling(full) + ".old";
                Directory.Move(full, old);
                try { Directory.Move(tmp, full); }
                catch
                {
                    Directory.Move(old, full);
                    throw;
                }
                tmp = old;
            }
            AtomicFile.SyncDirectory(parent);
        }
        finally
        {
            // After a swap tmp holds the old folder; after a failure, the partial new one.
            if (Directory.Exists(tmp))
            {
                try { Directory.Delete(tmp, recursive: true); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }
    }

    /// <summary>
    /// Throws <see cref="OutputExistsException"/> when <paramref name="dir"/> exists with something in it and
    /// <paramref name="force"/> is not set (an empty folder counts as free). A check before long work; publishing checks again.
    /// </summary>
    public static void CheckWritable(string dir, bool force)
    {
        var full = Path.GetFullPath(dir);
        if (File.Exists(full)) throw new IOException($"{full} is a file, not a folder");
        if (!force && Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any()) throw new OutputExistsException(full);
    }

    private static bool Exchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return AtomicFile.Posix.RenameAt2(AtomicFile.Posix.AtFdCwd, a, AtomicFile.Posix.AtFdCwd, b, AtomicFile.Posix.RenameExchange) == 0; }
        catch (EntryPointNotFoundException) { return false; } // a C library without renameat2
    }

    private static void SyncFile(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        fs.Flush(flushToDisk: true);
    }
}

/// <summary>An output exists and the caller did not allow replacing it (the CLI's <c>--force</c>).</summary>
public sealed class OutputExistsException(string path)
    : IOException($"{path} exists; choose another output or give --force to replace it")
{
    public string Path { get; } = path;
}
