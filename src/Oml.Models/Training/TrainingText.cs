using System.Text.Json;
using Oml.Models.Tokenizers;

namespace Oml.Models.Training;

/// <summary>
/// Reading training text: plain .txt files (one document each) and JSON-lines files whose records carry a "text"
/// field (one document per record) for pretraining; JSON-lines files of {"prompt", "response"} records for supervised
/// fine-tuning. Tokenization runs on every core.
/// </summary>
public static class TrainingText
{
    /// <summary>The documents of one file: a .jsonl/.ndjson file's "text" fields, or the whole text of any other file.</summary>
    public static IEnumerable<string> Documents(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file not found: {path}", path);
        if (!IsJsonLines(path))
        {
            yield return File.ReadAllText(path);
            yield break;
        }
        int line = 0;
        foreach (var l in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            yield return Field(l, "text", path, line);
        }
    }

    private static bool IsJsonLines(string path) =>
        path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".ndjson", StringComparison.OrdinalIgnoreCase);

    private static string Field(string json, string name, string path, int line)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String)
                return v.GetString()!;
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: line {line}: not valid JSON ({e.Message})"); }
        throw new InvalidDataException($"{path}: line {line}: no string field \"{name}\"");
    }

    /// <summary>
    /// One token stream from the files: each document's tokens followed by <paramref name="separatorId"/> (the
    /// end-of-text token, if any) when the file holds several documents (JSON lines). Long texts are cut at blank lines
    /// into pieces that are tokenized in parallel and joined in order.
    /// </summary>
    public static int[] TokenStream(IEnumerable<string> paths, Tokenizer tokenizer, int? separatorId)
    {
        var pieces = new List<(string Text, bool EndsDocument)>();
        foreach (var path in paths)
        {
            bool several = IsJsonLines(path);
            foreach (var doc in Documents(path))
            {
                var parts = Split(doc, 1 << 16);
                for (int i = 0; i < parts.Count; i++) pieces.Add((parts[i], several && i == parts.Count - 1));
            }
        }
        var encoded = new int[pieces.Count][];
        Parallel.For(0, pieces.Count, i => encoded[i] = tokenizer.Encode(pieces[i].Text));
        var result = new List<int>(encoded.Sum(e => e.Length) + pieces.Count);
        for (int i = 0; i < pieces.Count; i++)
        {
            result.AddRange(encoded[i]);
            if (pieces[i].EndsDocument && separatorId is { } sep) result.Add(sep);
        }
        return result.ToArray();
    }

    /// <summary>Cuts text after blank lines into pieces of about <paramref name="target"/> characters (never inside a paragraph).</summary>
    internal static List<string> Split(string text, int target)
    {
        var parts = new List<string>();
        int start = 0;
        while (text.Length - start > target)
        {
            int cut = text.IndexOf("\n\n", start + target, StringComparison.Ordinal);
            if (cut < 0) break;
            cut += 2;
            while (cut < text.Length && text[cut] == '\n') cut++;
            parts.Add(text[start..cut]);
            start = cut;
        }
        if (start < text.Length) parts.Add(text[start..]);
        return parts;
    }

    /// <summary>
    /// Supervised examples from a JSON-lines file of {"prompt": ..., "response": ...} records, tokenized as
    /// prompt then response + end-of-text (when the tokenizer has one). Instruction formats (Alpaca, ShareGPT) with chat
    /// templates come through the instruction-data loader and arrive here as the same <see cref="SupervisedExample"/>s.
    /// </summary>
    public static List<SupervisedExample> SupervisedExamples(string path, Tokenizer tokenizer)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file not found: {path}", path);
        var records = new List<(string Prompt, string Response)>();
        int line = 0;
        foreach (var l in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            records.Add((Field(l, "prompt", path, line), Field(l, "response", path, line)));
        }
        if (records.Count == 0) throw new InvalidDataException($"{path}: no examples");
        var result = new SupervisedExample[records.Count];
        var eos = tokenizer.EosTokenId;
        Parallel.For(0, records.Count, i =>
        {
            var prompt = tokenizer.Encode(records[i].Prompt, addSpecialTokens: true);
            var response = tokenizer.Encode(records[i].Response);
            if (eos is { } e) response = [.. response, e];
            result[i] = new SupervisedExample(prompt, response);
        });
        return result.ToList();
    }
}
