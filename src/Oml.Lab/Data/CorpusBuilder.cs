using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Models.IO;

namespace Oml.Lab.Data;

/// <summary>Where a corpus build stands: the source being read and how many of its documents are done.</summary>
public readonly record struct CorpusProgress(string Source, int Documents, string Stage);

/// <summary>What <see cref="CorpusBuilder.Build"/> made.</summary>
public sealed record CorpusSummary(int TrainDocuments, int HeldOutDocuments, long TrainBytes, long HeldOutBytes, int Duplicates, JsonObject Manifest);

/// <summary>
/// Builds the lab's English corpus from installed Debian packages (see <see cref="CorpusSource.All"/>): reads and
/// cleans every source, drops exact duplicates (same text after lower-casing and collapsing whitespace), orders the
/// documents by a hash of that normalised text (a deterministic shuffle, so a <c>--max-mb</c> cut samples every
/// source alike), puts about 2% in a held-out split chosen by another part of the same hash, and writes
/// <c>train.txt</c> and <c>heldout.txt</c> (UTF-8, documents separated by one blank line, no blank line inside a
/// document), <c>lexicon.jsonl</c> and <c>quotations.jsonl</c> (the structured records instruction data is made
/// from) and <c>manifest.json</c>. Every file is written atomically; the same inputs give byte-identical outputs.
/// </summary>
public sealed class CorpusBuilder
{
    public const string TrainFile = "train.txt";
    public const string HeldOutFile = "heldout.txt";
    public const string LexiconFile = "lexicon.jsonl";
    public const string QuotationsFile = "quotations.jsonl";
    public const string ManifestFile = "manifest.json";
    public const int FormatVersion = 1;

    /// <summary>Documents shorter than this (after cleaning) are dropped.</summary>
    public const int MinDocumentChars = 16;

    /// <summary>The file-system root the package files are read under ("/" normally; a fake tree in tests).</summary>
    public string Root { get; init; } = "/";

    /// <summary>Held-out share in parts per ten thousand (200 = 2%).</summary>
    public int HeldOutPer10000 { get; init; } = 200;

    /// <summary>Stop adding documents once train + held-out text reaches this many MiB; null for everything.</summary>
    public double? MaxMegabytes { get; init; }

    public IReadOnlyList<CorpusSource> Sources { get; init; } = CorpusSource.All;

    private sealed record Doc(ulong Order, bool HeldOut, int Source, SourceDocument Document, int Bytes);

    private static readonly JsonSerializerOptions JsonLine = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly UTF8Encoding Utf8 = new(false);

    /// <summary>The text duplicates are detected on: lower-cased, whitespace runs collapsed to one space, trimmed.</summary>
    public static string NormaliseForDedup(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool space = false;
        foreach (var c in text)
        {
            if (char.IsWhiteSpace(c)) { space = sb.Length > 0; continue; }
            if (space) { sb.Append(' '); space = false; }
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    /// <summary>Whether a document with this text goes to the held-out split (used for instruction data as well).</summary>
    public static bool IsHeldOut(string text, int heldOutPer10000) => HeldOut(Hash(text), heldOutPer10000);

    private static byte[] Hash(string text) => SHA256.HashData(Encoding.UTF8.GetBytes(NormaliseForDedup(text)));

    private static bool HeldOut(byte[] hash, int per10000) => BinaryPrimitives.ReadUInt64BigEndian(hash.AsSpan(8)) % 10000 < (ulong)per10000;

    public CorpusSummary Build(string outDir, IProgress<CorpusProgress>? progress = null)
    {
        if (HeldOutPer10000 is < 0 or > 10000) throw new ArgumentOutOfRangeException(null, HeldOutPer10000, $"{nameof(HeldOutPer10000)} must be within 0..10000");
        if (MaxMegabytes is <= 0) throw new ArgumentOutOfRangeException(null, MaxMegabytes, $"{nameof(MaxMegabytes)} must be positive");
        var missing = Sources.Where(s => s.Files(Root).Count == 0).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException(
                $"corpus sources not installed under {Root}: {string.Join(", ", missing.Select(s => $"{s.Name} (Debian package {string.Join(" or ", s.Packages)})"))}; " +
                $"run scripts/lab/build-corpus.sh or apt-get install {string.Join(" ", missing.SelectMany(s => s.Packages).Distinct())}");

        var seen = new HashSet<UInt128>();
        var docs = new List<Doc>();
        var read = new int[Sources.Count];
        var dups = new int[Sources.Count];
        var tooShort = new int[Sources.Count];
        for (int si = 0; si < Sources.Count; si++)
        {
            var source = Sources[si];
            progress?.Report(new CorpusProgress(source.Name, 0, "reading"));
            foreach (var doc in source.Read(Root))
            {
                read[si]++;
                if (read[si] % 5000 == 0) progress?.Report(new CorpusProgress(source.Name, read[si], "reading"));
                if (doc.Text.Length < MinDocumentChars) { tooShort[si]++; continue; }
                var hash = Hash(doc.Text);
                if (!seen.Add(BinaryPrimitives.ReadUInt128BigEndian(hash))) { dups[si]++; continue; }
                docs.Add(new Doc(BinaryPrimitives.ReadUInt64BigEndian(hash), HeldOut(hash, HeldOutPer10000), si, doc, Utf8.GetByteCount(doc.Text)));
            }
            progress?.Report(new CorpusProgress(source.Name, read[si], "read"));
        }
        // Ties in the 64-bit order are (astronomically) unlikely; the text breaks them so the order is total.
        docs.Sort((a, b) => a.Order != b.Order ? a.Order.CompareTo(b.Order) : string.CompareOrdinal(a.Document.Text, b.Document.Text));
        if (MaxMegabytes is { } mb)
        {
            long limit = (long)(mb * 1024 * 1024), total = 0;
            int keep = 0;
            while (keep < docs.Count && total + docs[keep].Bytes + 2 <= limit) total += docs[keep++].Bytes + 2;
            docs.RemoveRange(keep, docs.Count - keep);
        }

        progress?.Report(new CorpusProgress("", docs.Count, "writing"));
        Directory.CreateDirectory(outDir);
        var outputs = new JsonObject();
        outputs[TrainFile] = WriteDocuments(Path.Combine(outDir, TrainFile), docs.Where(d => !d.HeldOut));
        outputs[HeldOutFile] = WriteDocuments(Path.Combine(outDir, HeldOutFile), docs.Where(d => d.HeldOut));
        outputs[LexiconFile] = WriteLines(Path.Combine(outDir, LexiconFile), docs.SelectMany(d => d.Document.Lexicon.Select(e => new JsonObject
        {
            ["source"] = e.Source, ["word"] = e.Word, ["pos"] = e.PartOfSpeech, ["definition"] = e.Definition,
            ["synonyms"] = new JsonArray(e.Synonyms.Select(s => (JsonNode?)s).ToArray()),
            ["antonyms"] = new JsonArray(e.Antonyms.Select(s => (JsonNode?)s).ToArray()),
            ["split"] = d.HeldOut ? "heldout" : "train",
        })));
        outputs[QuotationsFile] = WriteLines(Path.Combine(outDir, QuotationsFile), docs.Where(d => d.Document.IsQuotation).Select(d => new JsonObject
        {
            ["source"] = Sources[d.Source].Name, ["text"] = d.Document.Text, ["split"] = d.HeldOut ? "heldout" : "train",
        }));

        var versions = DebianPackages.InstalledVersions(Root);
        var sources = new JsonArray();
        for (int si = 0; si < Sources.Count; si++)
        {
            var s = Sources[si];
            var mine = docs.Where(d => d.Source == si).ToList();
            sources.Add((JsonNode)new JsonObject
            {
                ["name"] = s.Name,
                ["description"] = s.Description,
                ["licence"] = s.Licence,
                ["packages"] = new JsonArray(s.Packages.Select(p => (JsonNode)new JsonObject { ["name"] = p, ["version"] = versions.GetValueOrDefault(p) }).ToArray()),
                ["files_read"] = s.Files(Root).Count,
                ["documents_read"] = read[si],
                ["too_short"] = tooShort[si],
                ["duplicates"] = dups[si],
                ["train_documents"] = mine.Count(d => !d.HeldOut),
                ["heldout_documents"] = mine.Count(d => d.HeldOut),
                ["train_bytes"] = mine.Where(d => !d.HeldOut).Sum(d => (long)d.Bytes),
                ["heldout_bytes"] = mine.Where(d => d.HeldOut).Sum(d => (long)d.Bytes),
            });
        }
        var manifest = new JsonObject
        {
            ["format"] = "oml-corpus",
            ["format_version"] = FormatVersion,
            ["layout"] = "train.txt and heldout.txt: UTF-8 documents separated by one blank line; no blank line inside a document. " +
                         "lexicon.jsonl and quotations.jsonl: one JSON object per line, with the split of the document it came from.",
            ["heldout_per_10000"] = HeldOutPer10000,
            ["max_mb"] = MaxMegabytes,
            ["dedup"] = "exact, on sha256 of the lower-cased text with whitespace runs collapsed",
            ["sources"] = sources,
            ["outputs"] = outputs,
        };
        AtomicFile.WriteText(Path.Combine(outDir, ManifestFile), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return new CorpusSummary(docs.Count(d => !d.HeldOut), docs.Count(d => d.HeldOut),
            docs.Where(d => !d.HeldOut).Sum(d => (long)d.Bytes), docs.Where(d => d.HeldOut).Sum(d => (long)d.Bytes), dups.Sum(), manifest);
    }

    private static JsonObject WriteDocuments(string path, IEnumerable<Doc> docs) =>
        WriteCounted(path, docs.Select(d => d.Document.Text), "\n\n");

    private static JsonObject WriteLines(string path, IEnumerable<JsonObject> lines) =>
        WriteCounted(path, lines.Select(l => l.ToJsonString(JsonLine)), "\n");

    private static JsonObject WriteCounted(string path, IEnumerable<string> items, string separator)
    {
        int count = 0;
        long bytes = 0;
        byte[] sha = [];
        AtomicFile.Write(path, stream =>
        {
            using var hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var sep = Utf8.GetBytes(separator);
            foreach (var item in items)
            {
                var b = Utf8.GetBytes(item);
                stream.Write(b);
                stream.Write(sep);
                hasher.AppendData(b);
                hasher.AppendData(sep);
                bytes += b.Length + sep.Length;
                count++;
            }
            sha = hasher.GetHashAndReset();
        });
        return new JsonObject { ["items"] = count, ["bytes"] = bytes, ["sha256"] = Convert.ToHexStringLower(sha) };
    }
}

/// <summary>Reads installed package versions from dpkg's status file.</summary>
public static class DebianPackages
{
    /// <summary>Package → version for every package dpkg lists as installed under <paramref name="root"/>; empty when there is no dpkg.</summary>
    public static Dictionary<string, string> InstalledVersions(string root)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var path = Path.Combine(root, "var/lib/dpkg/status");
        if (!File.Exists(path)) return result;
        string? package = null, version = null;
        bool installed = false;
        void Flush()
        {
            if (package is not null && version is not null && installed) result[package] = version;
            package = version = null;
            installed = false;
        }
        foreach (var line in File.ReadLines(path))
        {
            if (line.Length == 0) { Flush(); continue; }
            if (line.StartsWith("Package: ", StringComparison.Ordinal)) package = line[9..].Trim();
            else if (line.StartsWith("Version: ", StringComparison.Ordinal)) version = line[9..].Trim();
            else if (line.StartsWith("Status: ", StringComparison.Ordinal)) installed = line.EndsWith(" installed", StringComparison.Ordinal);
        }
        Flush();
        return result;
    }
}
