using System.IO.Compression;
using System.Text;

namespace Oml.Lab.Data;

/// <summary>
/// Reads a dictd database: a <c>NAME.index</c> of <c>headword TAB offset TAB length</c> lines (offset and length in
/// dictd's base64 digits, most significant first) and the <c>NAME.dict.dz</c> body (dictzip, which is gzip with an
/// extra header field, so <see cref="GZipStream"/> reads it whole). Headwords that share one body (the same offset
/// and length) yield it once, under the first of them.
/// </summary>
public sealed class DictdFile
{
    private const string Digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    public required string IndexPath { get; init; }
    public required string DictPath { get; init; }

    /// <summary>The database at <c>BASE.index</c> and <c>BASE.dict.dz</c> (or an uncompressed <c>BASE.dict</c>).</summary>
    public static DictdFile Open(string basePath)
    {
        var index = basePath + ".index";
        var dict = File.Exists(basePath + ".dict.dz") ? basePath + ".dict.dz" : basePath + ".dict";
        if (!File.Exists(index)) throw new FileNotFoundException($"dictd index {index} not found", index);
        if (!File.Exists(dict)) throw new FileNotFoundException($"dictd body {basePath}.dict.dz not found", dict);
        return new DictdFile { IndexPath = index, DictPath = dict };
    }

    /// <summary>Decodes one dictd base64 number ("BdqM" → 94860).</summary>
    public static long DecodeNumber(string digits)
    {
        if (digits.Length == 0) throw new FormatException("empty dictd number");
        long n = 0;
        foreach (var c in digits)
        {
            int d = Digits.IndexOf(c);
            if (d < 0) throw new FormatException($"'{c}' is not a dictd base64 digit in \"{digits}\"");
            n = checked(n * 64 + d);
        }
        return n;
    }

    /// <summary>The entries in index order, database meta entries (headwords starting "00") left out.</summary>
    public IEnumerable<(string Headword, string Body)> Entries()
    {
        byte[] body;
        using (var fs = File.OpenRead(DictPath))
        using (var ms = new MemoryStream())
        {
            if (DictPath.EndsWith(".dz", StringComparison.Ordinal))
                using (var gz = new GZipStream(fs, CompressionMode.Decompress)) gz.CopyTo(ms);
            else fs.CopyTo(ms);
            body = ms.ToArray();
        }
        var seen = new HashSet<(long, long)>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(IndexPath, Encoding.UTF8))
        {
            lineNo++;
            if (line.Length == 0) continue;
            var parts = line.Split('\t');
            if (parts.Length < 3) throw new InvalidDataException($"{IndexPath}:{lineNo}: expected 'headword<TAB>offset<TAB>length'");
            if (parts[0].StartsWith("00", StringComparison.Ordinal)) continue;
            long offset, length;
            try
            {
                offset = DecodeNumber(parts[1]);
                length = DecodeNumber(parts[2]);
            }
            catch (FormatException e) { throw new InvalidDataException($"{IndexPath}:{lineNo}: {e.Message}"); }
            if (offset + length > body.Length)
                throw new InvalidDataException($"{IndexPath}:{lineNo}: entry '{parts[0]}' runs past the end of {DictPath} ({offset}+{length} > {body.Length})");
            if (!seen.Add((offset, length))) continue;
            yield return (parts[0], Encoding.UTF8.GetString(body, (int)offset, (int)length));
        }
    }
}
