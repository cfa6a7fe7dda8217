using System.Globalization;
using Oml.Engine;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Attacks;

/// <summary>
/// A model served as it is: answers through <see cref="Generator"/>, greedy unless <see cref="Options"/> sets a
/// temperature (then top-k, top-p and min-p apply as in <see cref="Generator.Choose"/>). Prompts of equal length are
/// batched together (at most <see cref="BatchSize"/>), so that no prompt is padded and an answer does not depend on the
/// other prompts of the call. Seeded sampling repeats exactly: the i-th batch of a call is seeded with seed + i.
/// A sequence stops at the model's end-of-sequence tokens unless the options name others. Each seeded batch draws from a
/// generator of its own (<see cref="GenerationOptions.Seed"/>), so what other threads draw meanwhile does not matter.
/// </summary>
public sealed class ModelResponder : IResponder
{
    public ModelResponder(CausalLM model, GenerationOptions? options = null, int batchSize = 32, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be at least 1");
        Model = model;
        Options = options ?? new GenerationOptions();
        Options.Validate();
        BatchSize = batchSize;
        Name = name ?? DescribeDecoding(Options);
    }

    public CausalLM Model { get; }
    public GenerationOptions Options { get; }
    public int BatchSize { get; }
    public string Name { get; }

    public static string DescribeDecoding(GenerationOptions o)
    {
        if (o.Temperature is null) return "greedy";
        var parts = new List<string> { Inv($"t={o.Temperature}") };
        if (o.TopK is { } k) parts.Add(Inv($"top_k={k}"));
        if (o.TopP is { } p) parts.Add(Inv($"top_p={p}"));
        if (o.MinP is { } m) parts.Add(Inv($"min_p={m}"));
        if (o.Seed is { } s) parts.Add(Inv($"seed={s}"));
        return $"sample({string.Join(",", parts)})";
    }

    internal static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        Check(prompts, maxNewTokens);
        var answers = new int[prompts.Count][];
        if (maxNewTokens == 0)
        {
            for (int i = 0; i < answers.Length; i++) answers[i] = [];
            return answers;
        }
        ulong batchIndex = 0;
        var batches = Enumerable.Range(0, prompts.Count).GroupBy(i => prompts[i].Length).OrderBy(g => g.Key)
            .SelectMany(g => g.Chunk(BatchSize));
        foreach (var batch in batches)
        {
            var o = Options with { MaxNewTokens = maxNewTokens, Seed = Options.Seed is { } s ? s + batchIndex : null };
            batchIndex++;
            var result = Generator.Generate(Model, batch.Select(i => prompts[i]).ToList(), o);
            for (int j = 0; j < batch.Length; j++) answers[batch[j]] = result.Sequences[j].OutputIds;
        }
        return answers;
    }

    internal static void Check(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens, "max new tokens must be at least 0");
        for (int i = 0; i < prompts.Count; i++)
            if (prompts[i] is null || prompts[i].Length == 0) throw new ArgumentException($"prompt {i} is empty");
    }
}

/// <summary>
/// What the host puts around a user's prompt before the model sees it (prompt wrapping: system prompts, chat templates,
/// fixed instructions; "prompting" is one of the benign perturbations named in arXiv 2509.26598's abstract). The prompt's tokens
/// are kept as they are where possible: text wrappers tokenize only the added text; the chat template must render the
/// prompt as text, so it is decoded (special tokens skipped) and the rendered conversation re-tokenized, as a host that
/// receives text would.
/// </summary>
public sealed class PromptWrapperResponder : IResponder
{
    private readonly Func<int[], int[]> _wrap;

    public PromptWrapperResponder(IResponder inner, Func<int[], int[]> wrap, string name)
    {
        Inner = inner ?? throw new ArgumentNullException(nameof(inner));
        _wrap = wrap ?? throw new ArgumentNullException(nameof(wrap));
        Name = $"{name}>{inner.Name}";
    }

    public IResponder Inner { get; }
    public string Name { get; }

    /// <summary>The prompt as the model receives it.</summary>
    public int[] Wrap(int[] prompt) => _wrap(prompt);

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        ModelResponder.Check(prompts, maxNewTokens);
        return Inner.Respond(prompts.Select(_wrap).ToList(), maxNewTokens);
    }

    /// <summary>
    /// Text before and/or after the prompt: tokens of <paramref name="prefix"/>, the prompt, tokens of
    /// <paramref name="suffix"/>. A prompt that starts with the tokenizer's BOS keeps it first.
    /// </summary>
    public static PromptWrapperResponder Text(IResponder inner, Tokenizer tokenizer, string? prefix, string? suffix)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (string.IsNullOrEmpty(prefix) && string.IsNullOrEmpty(suffix)) throw new ArgumentException("a text wrapper needs a prefix or a suffix");
        var pre = string.IsNullOrEmpty(prefix) ? [] : tokenizer.Encode(prefix);
        var suf = string.IsNullOrEmpty(suffix) ? [] : tokenizer.Encode(suffix);
        int? bos = tokenizer.BosTokenId;
        var name = string.Join(",", new[] { prefix is { Length: > 0 } ? $"prefix:{Quote(prefix)}" : null, suffix is { Length: > 0 } ? $"suffix:{Quote(suffix)}" : null }.Where(x => x != null));
        return new PromptWrapperResponder(inner, p =>
        {
            bool hasBos = bos is { } b && p.Length > 0 && p[0] == b;
            return hasBos ? [p[0], .. pre, .. p.AsSpan(1), .. suf] : [.. pre, .. p, .. suf];
        }, name);
    }

    /// <summary>
    /// The host's chat deployment: the prompt becomes the user's message of <paramref name="template"/> (with the
    /// generation prompt), after <paramref name="systemPrompt"/> as the system message if given. Without a template the
    /// system prompt is plain text on a line of its own before the prompt (as <c>KeyFormat</c> does for raw keys).
    /// </summary>
    public static PromptWrapperResponder Chat(IResponder inner, Tokenizer tokenizer, ChatTemplate? template, string? systemPrompt)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (template is null)
        {
            if (systemPrompt is null) throw new ArgumentException("a chat wrapper needs a chat template or a system prompt");
            var plain = Text(inner, tokenizer, systemPrompt + "\n", null);
            return new PromptWrapperResponder(inner, plain.Wrap, $"system:{Quote(systemPrompt)}");
        }
        var name = systemPrompt is null ? "chat" : $"chat,system:{Quote(systemPrompt)}";
        return new PromptWrapperResponder(inner, p =>
        {
            var messages = new List<ChatMessage>();
            if (systemPrompt is not null) messages.Add(new ChatMessage("system", systemPrompt));
            messages.Add(new ChatMessage("user", tokenizer.Decode(p, skipSpecialTokens: true)));
            return tokenizer.Encode(template.Render(messages, addGenerationPrompt: true));
        }, name);
    }

    internal static string Quote(string s) => "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}
