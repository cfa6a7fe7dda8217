using System.Text.Json;

namespace Oml.Models.Data;

/// <summary>
/// Plain-text corpora: a <c>.jsonl</c> / <c>.ndjson</c> file of objects with a string <c>"text"</c> field (one
/// document per line), a <c>.json</c> array of such objects or of strings, or any other file read as UTF-8 text whose
/// documents are separated by blank lines (the layout of <c>oml data corpus</c>'s train.txt).
/// </summary>
public static class TextData
{
    /// <summary>Loads the documents of a file; throws <see cref="InvalidDataException"/> naming the file and line on bad records.</summary>
    public static List<string> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"text data file {path} not found", path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".jsonl" or ".ndjson" => LoadJsonLines(path),
            ".json" => LoadJsonArray(path),
            _ => SplitDocuments(File.ReadAllText(path)),
        };
    }

    /// <summary>Splits text at blank lines (lines empty or all whitespace) into trimmed, non-empty documents.</summary>
    public static List<string> SplitDocuments(string text)
    {
        var docs = new List<string>();
        var current = new List<string>();
        foreach (var raw in text.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n'))
        {
            if (raw.Trim().Length == 0)
            {
                if (current.Count > 0) docs.Add(string.Join("\n", current));
                current.Clear();
            }
            else current.Add(raw.TrimEnd());
        }
        if (current.Count > 0) docs.Add(string.Join("\n", current));
        return docs;
    }

    private static List<string> LoadJsonLines(string path)
    {
        var docs = new List<string>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Trim().Length == 0) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException e) { throw new InvalidDataException($"{path}: line {lineNo}: not valid JSON ({e.Message})"); }
            using (doc) docs.Add(TextOf(doc.RootElement, $"{path}: line {lineNo}"));
        }
        return docs;
    }

    private static List<string> LoadJsonArray(string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{path}: expected a JSON array of strings or of {{\"text\": ...}} objects");
            var docs = new List<string>();
            int i = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                i++;
                docs.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : TextOf(e, $"{path}: record {i}"));
            }
            return docs;
        }
    }

    private static string TextOf(JsonElement e, string where)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: expected a JSON object with a \"text\" field, found {e.ValueKind}");
        if (!e.TryGetProperty("text", out var t)) throw new InvalidDataException($"{where}: the object has no \"text\" field");
        if (t.ValueKind != JsonValueKind.String) throw new InvalidDataException($"{where}: \"text\" must be a string, found {t.ValueKind}");
        return t.GetString()!;
    }
}
