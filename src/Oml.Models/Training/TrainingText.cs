using System.Text.Json;
using Oml.Models.ChatTemplates;
using Oml.Models.Data;
using Oml.Models.Tokenizers;

namespace Oml.Models.Training;

/// <summary>
/// Reading training text: documents for pretraining (<see cref="TextData"/>), and prompt/response examples or
/// instruction data (<see cref="InstructionData"/>) for supervised fine-tuning. Tokenization runs on every core.
/// </summary>
public static class TrainingText
{
    private static bool IsPromptResponseLines(string path)
    {
        if (!(path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".ndjson", StringComparison.OrdinalIgnoreCase))) return false;
        var first = File.ReadLines(path).FirstOrDefault(l => !string.IsNullOrWhiteSpace(l));
        if (first is null) return false;
        try
        {
            using var doc = JsonDocument.Parse(first);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("prompt", out _) && doc.RootElement.TryGetProperty("response", out _);
        }
        catch (JsonException) { return false; }
    }

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
    /// One token stream from the files' documents (<see cref="TextData.Load"/>: documents separated by blank lines in
    /// text files, one per record in JSON lines), each followed by <paramref name="separatorId"/> (the end-of-text
    /// token, if any). Documents are tokenized in parallel (long ones in pieces cut at blank lines) and joined in order.
    /// </summary>
    public static int[] TokenStream(IEnumerable<string> paths, Tokenizer tokenizer, int? separatorId)
    {
        var pieces = new List<(string Text, bool EndsDocument)>();
        foreach (var path in paths)
            foreach (var doc in TextData.Load(path))
            {
                var parts = Split(doc, 1 << 16);
                for (int i = 0; i < parts.Count; i++) pieces.Add((parts[i], i == parts.Count - 1));
            }
        if (pieces.Count == 0) throw new InvalidDataException($"no text in {string.Join(", ", paths)}");
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
    /// Supervised examples from a file: JSON lines of {"prompt": ..., "response": ...} records (tokenized as the
    /// prompt, then the response + end-of-text when the tokenizer has one), or instruction data in the Alpaca, ShareGPT
    /// or OpenAI-messages layouts (<see cref="InstructionData"/>), trained on the last reply, rendered with
    /// <paramref name="template"/> when given and in the raw "### Instruction / ### Response" layout otherwise.
    /// </summary>
    public static List<SupervisedExample> SupervisedExamples(string path, Tokenizer tokenizer, ChatTemplate? template = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file not found: {path}", path);
        if (!IsPromptResponseLines(path))
        {
            var conversations = InstructionData.Load(path);
            var tokenized = new SupervisedExample[conversations.Count];
            Parallel.For(0, conversations.Count, i =>
            {
                var t = InstructionData.Tokenize(conversations[i], tokenizer, template);
                tokenized[i] = new SupervisedExample(t.Prompt, t.Response);
            });
            return tokenized.ToList();
        }
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
