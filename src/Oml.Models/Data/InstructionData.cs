using System.Text;
using System.Text.Json;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Models.Data;

/// <summary>The layouts <see cref="InstructionData.Load"/> recognises.</summary>
public enum InstructionFormat
{
    /// <summary><c>{"instruction", "input"?, "output", "system"?}</c>.</summary>
    Alpaca,
    /// <summary><c>{"conversations": [{"from": "system"|"human"|"user"|"gpt"|"assistant", "value"}]}</c>.</summary>
    ShareGpt,
    /// <summary>OpenAI chat form: <c>{"messages": [{"role": "system"|"user"|"assistant", "content"}]}</c>.</summary>
    Messages,
}

/// <summary>
/// One training conversation: an optional system prompt, then turns alternating user / assistant, starting with
/// the user and ending with the assistant (whose last reply is what a model is trained to produce).
/// </summary>
public sealed record Conversation(string? System, IReadOnlyList<ChatMessage> Turns)
{
    /// <summary>All messages, the system prompt first when there is one.</summary>
    public IReadOnlyList<ChatMessage> Messages => System is null ? Turns : [new ChatMessage("system", System), .. Turns];

    /// <summary>The text of the last assistant turn.</summary>
    public string Response => (string)Turns[^1].Content!;
}

/// <summary>A prompt and its response as token ids, for supervised fine-tuning (loss on the response only).</summary>
public sealed record TokenizedExample(int[] Prompt, int[] Response);

/// <summary>Thrown for instruction files that cannot be read; the message names the file, record and problem.</summary>
public sealed class InstructionDataException(string message) : IOException(message);

/// <summary>
/// Loads supervised fine-tuning data in the common layouts — Alpaca, ShareGPT and OpenAI "messages" — either as a
/// JSON array or as JSON Lines (one record per line), detecting the layout from the first record (all records of a
/// file must share it), and turns conversations into prompt/response token ids.
/// </summary>
public static class InstructionData
{
    /// <summary>The raw (template-less) prompt layout: <c>### Instruction:</c> ... <c>### Response:</c>.</summary>
    public const string InstructionHeader = "### Instruction:\n";
    public const string ResponseHeader = "### Response:\n";

    public static List<Conversation> Load(string path) => Load(path, out _);

    /// <summary>Loads a file, reporting the layout found.</summary>
    public static List<Conversation> Load(string path, out InstructionFormat format)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"instruction data file {path} not found", path);
        return Parse(File.ReadAllText(path), path, out format);
    }

    /// <summary>Parses file content; <paramref name="name"/> is used in error messages.</summary>
    public static List<Conversation> Parse(string content, string name, out InstructionFormat format)
    {
        var records = new List<(JsonElement Record, string Where)>();
        var docs = new List<JsonDocument>();
        try
        {
            var trimmed = content.TrimStart('\uFEFF', ' ', '\t', '\r', '\n');
            if (trimmed.Length == 0) throw new InstructionDataException($"{name}: the file is empty");
            if (trimmed[0] == '[')
            {
                JsonDocument doc;
                try { doc = JsonDocument.Parse(trimmed); }
                catch (JsonException e) { throw new InstructionDataException($"{name}: not valid JSON ({e.Message})"); }
                docs.Add(doc);
                int i = 0;
                foreach (var r in doc.RootElement.EnumerateArray()) records.Add((r, $"{name}: record {++i}"));
            }
            else
            {
                int lineNo = 0;
                foreach (var line in content.Split('\n'))
                {
                    lineNo++;
                    var l = line.Trim().TrimStart('\uFEFF');
                    if (l.Length == 0) continue;
                    JsonDocument doc;
                    try { doc = JsonDocument.Parse(l); }
                    catch (JsonException e) { throw new InstructionDataException($"{name}: line {lineNo}: not valid JSON ({e.Message}); expected a JSON array or one JSON object per line"); }
                    docs.Add(doc);
                    records.Add((doc.RootElement, $"{name}: line {lineNo}"));
                }
            }
            if (records.Count == 0) throw new InstructionDataException($"{name}: no records");
            format = Detect(records[0].Record, records[0].Where);
            var result = new List<Conversation>(records.Count);
            foreach (var (r, where) in records)
            {
                if (r.ValueKind != JsonValueKind.Object) throw new InstructionDataException($"{where}: expected a JSON object, found {r.ValueKind}");
                var f = Detect(r, where);
                if (f != format) throw new InstructionDataException($"{where}: a {f} record in a {format} file (the first record decides the layout)");
                result.Add(f switch
                {
                    InstructionFormat.Alpaca => FromAlpaca(r, where),
                    InstructionFormat.ShareGpt => FromTurns(r.GetProperty("conversations"), "from", "value", where),
                    _ => FromTurns(r.GetProperty("messages"), "role", "content", where),
                });
            }
            return result;
        }
        finally
        {
            foreach (var d in docs) d.Dispose();
        }
    }

    private static InstructionFormat Detect(JsonElement r, string where)
    {
        if (r.ValueKind != JsonValueKind.Object) throw new InstructionDataException($"{where}: expected a JSON object, found {r.ValueKind}");
        if (r.TryGetProperty("conversations", out _)) return InstructionFormat.ShareGpt;
        if (r.TryGetProperty("messages", out _)) return InstructionFormat.Messages;
        if (r.TryGetProperty("instruction", out _)) return InstructionFormat.Alpaca;
        throw new InstructionDataException(
            $"{where}: not a recognised record: expected \"instruction\"/\"output\" (Alpaca), \"conversations\" (ShareGPT) or \"messages\" (OpenAI chat)");
    }

    private static string RequiredString(JsonElement r, string key, string where)
    {
        if (!r.TryGetProperty(key, out var v)) throw new InstructionDataException($"{where}: missing \"{key}\"");
        if (v.ValueKind != JsonValueKind.String) throw new InstructionDataException($"{where}: \"{key}\" must be a string, found {v.ValueKind}");
        return v.GetString()!;
    }

    private static string? OptionalString(JsonElement r, string key, string where)
    {
        if (!r.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw new InstructionDataException($"{where}: \"{key}\" must be a string, found {v.ValueKind}");
        return v.GetString();
    }

    private static Conversation FromAlpaca(JsonElement r, string where)
    {
        var instruction = RequiredString(r, "instruction", where);
        var output = RequiredString(r, "output", where);
        var input = OptionalString(r, "input", where) ?? "";
        var system = OptionalString(r, "system", where);
        if (instruction.Trim().Length == 0) throw new InstructionDataException($"{where}: \"instruction\" is empty");
        var user = input.Trim().Length == 0 ? instruction : instruction + "\n\n" + input;
        return new Conversation(string.IsNullOrEmpty(system) ? null : system, [new ChatMessage("user", user), new ChatMessage("assistant", output)]);
    }

    private static Conversation FromTurns(JsonElement list, string roleKey, string contentKey, string where)
    {
        if (list.ValueKind != JsonValueKind.Array) throw new InstructionDataException($"{where}: expected an array of turns, found {list.ValueKind}");
        string? system = null;
        var turns = new List<ChatMessage>();
        int i = 0;
        foreach (var t in list.EnumerateArray())
        {
            i++;
            var at = $"{where}: turn {i}";
            if (t.ValueKind != JsonValueKind.Object) throw new InstructionDataException($"{at}: expected an object, found {t.ValueKind}");
            var role = NormaliseRole(RequiredString(t, roleKey, at), at);
            var content = ContentText(t, contentKey, at);
            if (role == "system")
            {
                if (i != 1) throw new InstructionDataException($"{at}: a system message may only come first");
                system = content;
                continue;
            }
            var expected = turns.Count % 2 == 0 ? "user" : "assistant";
            if (role != expected) throw new InstructionDataException($"{at}: expected a {expected} turn, found {role} (turns must alternate user, assistant, ...)");
            turns.Add(new ChatMessage(role, content));
        }
        if (turns.Count == 0) throw new InstructionDataException($"{where}: no user or assistant turns");
        if (turns[^1].Role != "assistant") throw new InstructionDataException($"{where}: the last turn must be the assistant's reply");
        return new Conversation(system, turns);
    }

    private static string NormaliseRole(string role, string where) => role.ToLowerInvariant() switch
    {
        "system" or "developer" => "system",
        "human" or "user" => "user",
        "gpt" or "assistant" or "model" or "bot" => "assistant",
        _ => throw new InstructionDataException($"{where}: unsupported role \"{role}\" (expected system, user/human or assistant/gpt)"),
    };

    private static string ContentText(JsonElement t, string key, string where)
    {
        if (!t.TryGetProperty(key, out var c)) throw new InstructionDataException($"{where}: missing \"{key}\"");
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind == JsonValueKind.Array)
        {
            // OpenAI content parts: only text parts are supported.
            var sb = new StringBuilder();
            foreach (var part in c.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || OptionalString(part, "type", where) != "text")
                    throw new InstructionDataException($"{where}: only text content parts are supported");
                sb.Append(RequiredString(part, "text", where));
            }
            return sb.ToString();
        }
        throw new InstructionDataException($"{where}: \"{key}\" must be a string or a list of text parts, found {c.ValueKind}");
    }

    /// <summary>
    /// The raw prompt for a conversation without a chat template: the system prompt (if any) as a paragraph, then
    /// for each exchange <c>### Instruction:\n{user}\n\n### Response:\n{assistant}\n\n</c>, ending with the
    /// response header of the last exchange.
    /// </summary>
    public static string RawPrompt(Conversation c)
    {
        var sb = new StringBuilder();
        if (c.System is not null) sb.Append(c.System).Append("\n\n");
        for (int i = 0; i < c.Turns.Count; i += 2)
        {
            sb.Append(InstructionHeader).Append((string)c.Turns[i].Content!).Append("\n\n").Append(ResponseHeader);
            if (i + 2 < c.Turns.Count) sb.Append((string)c.Turns[i + 1].Content!).Append("\n\n");
        }
        return sb.ToString();
    }

    /// <summary>
    /// Tokenizes a conversation for training on its last reply. Without a template: BOS (when the tokenizer adds
    /// one) + <see cref="RawPrompt"/>, and the reply followed by EOS (when the tokenizer has one). With a template:
    /// the prompt is the template rendered over all but the last reply with the generation prompt, the response is
    /// what rendering the whole conversation adds after it (so the template's own end-of-turn tokens are included).
    /// </summary>
    public static TokenizedExample Tokenize(Conversation c, Tokenizer tokenizer, ChatTemplate? template = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (template is null)
        {
            var prompt = new List<int>();
            if (tokenizer.AddBosToken == true && tokenizer.BosTokenId is { } bos) prompt.Add(bos);
            prompt.AddRange(tokenizer.Encode(RawPrompt(c)));
            var response = new List<int>(tokenizer.Encode(c.Response));
            if (tokenizer.EosTokenId is { } eos) response.Add(eos);
            return new TokenizedExample(prompt.ToArray(), response.ToArray());
        }
        var messages = c.Messages;
        var promptText = template.Render(messages.Take(messages.Count - 1).ToList(), addGenerationPrompt: true);
        var fullText = template.Render(messages, addGenerationPrompt: false);
        if (!fullText.StartsWith(promptText, StringComparison.Ordinal))
            throw new InvalidOperationException("the chat template does not render the conversation as its prompt followed by the reply " +
                                                "(it rewrites earlier turns), so the prompt and response cannot be separated");
        return new TokenizedExample(tokenizer.Encode(promptText), tokenizer.Encode(fullText[promptText.Length..]));
    }
}
