using System.Text;

namespace Oml.Models.IO;

/// <summary>Reads small input files (configs, keystores, JSON documents) with a size limit checked before reading.</summary>
public static class InputFile
{
    /// <summary>
    /// The whole file as UTF-8 text. Throws <see cref="FileNotFoundException"/> when it is missing and
    /// <see cref="InvalidDataException"/> when it is larger than <paramref name="maxBytes"/> (naming <paramref name="what"/>).
    /// </summary>
    public static string ReadText(string path, long maxBytes, string what)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"no {what} at {path}", path);
        if (info.Length > maxBytes)
            throw new InvalidDataException($"{path}: {info.Length:N0} bytes is too large for a {what} (limit {maxBytes:N0})");
        return File.ReadAllText(path, Encoding.UTF8);
    }
}
