using Oml.Fingerprinting.Generation;
using Oml.Models.ChatTemplates;
using Oml.Models.Data;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Embedding;

/// <summary>
/// How a key reaches the model. Raw: the tokenizer's BOS (if it adds one) and the key tokens, as for a base model.
/// Chat: the key as the user's message in the model's chat template, with the generation prompt, so that an
/// instruction-tuned model answers it as a chat turn; optionally after a system prompt. Prompt augmentation trains each
/// fingerprint under several system prompts (the train templates) so that it survives the system prompts a host adds,
/// and a separate list (the test templates) measures that it did. Instruction: the key as the instruction of the raw
/// "### Instruction / ### Response" layout (<see cref="InstructionData.RawPrompt"/>), for a model instruction-tuned
/// without a chat template (as <c>oml train sft</c> tunes one by default), so that the key reaches it as its host's
/// honest requests do.
/// </summary>
public sealed class KeyFormat
{
    private readonly ChatTemplate? _template;
    private readonly bool _instruction;

    private KeyFormat(ChatTemplate? template, bool instruction = false) => (_template, _instruction) = (template, instruction);

    /// <summary>Keys as bare token ids (behind BOS where the tokenizer adds one).</summary>
    public static KeyFormat Raw { get; } = new(null);

    /// <summary>Keys as the instruction of the raw instruction layout, followed by its response header.</summary>
    public static KeyFormat Instruction { get; } = new(null, instruction: true);

    /// <summary>Keys wrapped in <paramref name="template"/> as the user's turn, with the generation prompt.</summary>
    public static KeyFormat Chat(ChatTemplate template) => new(template ?? throw new ArgumentNullException(nameof(template)));

    public bool IsChat => _template is not null;

    public bool IsInstruction => _instruction;

    /// <summary>raw, instruction or chat.</summary>
    public override string ToString() => IsChat ? "chat" : _instruction ? "instruction" : "raw";

    /// <summary>
    /// The ids the model sees for one key. Raw keys use the stored (effective) key tokens; chat keys render the key text
    /// (and the system prompt, if any) and tokenize the result without adding special tokens, since the template
    /// writes them itself.
    /// </summary>
    public int[] Encode(Tokenizer tok, Fingerprint fingerprint, string? systemPrompt = null)
    {
        if (_instruction)
        {
            // The layout's own text, tokenized as an instruction-tuned host tokenizes its honest prompts (InstructionData.Tokenize).
            var prompt = InstructionData.RawPrompt(new Conversation(systemPrompt, [new ChatMessage("user", fingerprint.Key), new ChatMessage("assistant", "")]));
            var ids = new List<int>();
            if (tok.AddBosToken == true && tok.BosTokenId is { } bos) ids.Add(bos);
            ids.AddRange(tok.Encode(prompt));
            return [.. ids];
        }
        if (_template is null)
        {
            if (systemPrompt is not null)
            {
                // Without a chat template, a system prompt is plain text in front of the key.
                var prefix = tok.Encode(systemPrompt + "\n");
                return FingerprintGenerator.QueryIds(tok, [.. prefix, .. fingerprint.KeyTokenIds]);
            }
            return FingerprintGenerator.QueryIds(tok, [.. fingerprint.KeyTokenIds]);
        }
        var messages = new List<ChatMessage>();
        if (systemPrompt is not null) messages.Add(new ChatMessage("system", systemPrompt));
        messages.Add(new ChatMessage("user", fingerprint.Key));
        return tok.Encode(_template.Render(messages, addGenerationPrompt: true));
    }

    /// <summary>
    /// Training pairs for every response of every fingerprint, once with no system prompt and once under each of
    /// <paramref name="systemPrompts"/> (prompt augmentation).
    /// </summary>
    public List<TrainingPair> TrainingPairs(IEnumerable<Fingerprint> fingerprints, Tokenizer tok, IReadOnlyList<string>? systemPrompts = null)
    {
        var prompts = new List<string?> { null };
        if (systemPrompts is not null) prompts.AddRange(systemPrompts);
        return fingerprints
            .SelectMany(f => prompts.SelectMany(p => f.Responses.Select(r => new TrainingPair(Encode(tok, f, p), [.. r.TokenIds]))))
            .ToList();
    }
}
