using Oml.Models.Tokenizers;

namespace Oml.Lab.Attacks;

/// <summary>
/// A host that rewrites every user prompt before its model answers it (input paraphrasing, one of the adaptive attacks
/// of arXiv 2509.26598 against memorised fingerprints: a key that reaches the model in other words no longer triggers
/// its response). The rewrite is a batch function from prompts to prompts (token ids); the rewritten prompts go to the
/// inner responder. <see cref="Rewritten"/> counts prompts whose tokens changed.
/// </summary>
public sealed class PromptRewriteResponder : IResponder
{
    private readonly Func<IReadOnlyList<int[]>, IReadOnlyList<int[]>> _rewrite;
    private int _rewritten;

    public PromptRewriteResponder(IResponder inner, Func<IReadOnlyList<int[]>, IReadOnlyList<int[]>> rewrite, string name)
    {
        Inner = inner ?? throw new ArgumentNullException(nameof(inner));
        _rewrite = rewrite ?? throw new ArgumentNullException(nameof(rewrite));
        Name = $"{name}>{inner.Name}";
    }

    public IResponder Inner { get; }
    public string Name { get; }

    /// <summary>Prompts whose rewrite differed from the prompt, so far.</summary>
    public int Rewritten => Volatile.Read(ref _rewritten);

    /// <summary>The prompts as the model receives them.</summary>
    public IReadOnlyList<int[]> Rewrite(IReadOnlyList<int[]> prompts)
    {
        ModelResponder.Check(prompts, 0);
        var r = _rewrite(prompts);
        if (r.Count != prompts.Count) throw new InvalidOperationException($"the rewrite gave {r.Count} prompts for {prompts.Count}");
        for (int i = 0; i < r.Count; i++)
            if (r[i] is null || r[i].Length == 0) throw new InvalidOperationException($"the rewrite of prompt {i} is empty");
        return r;
    }

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        ModelResponder.Check(prompts, maxNewTokens);
        var rewritten = Rewrite(prompts);
        Interlocked.Add(ref _rewritten, prompts.Where((p, i) => !p.AsSpan().SequenceEqual(rewritten[i])).Count());
        return Inner.Respond(rewritten, maxNewTokens);
    }
}

/// <summary>
/// Settings of the cheap, deterministic rewrite (<see cref="QueryRewrite.Perturb"/>): per word, drop it with probability
/// <see cref="Drop"/>, swap it with the next word with probability <see cref="Swap"/>, flip the case of its first letter
/// with probability <see cref="Case"/>, remove its punctuation with probability <see cref="Punctuation"/>.
/// </summary>
public sealed record RewriteSettings(double Drop = 0, double Swap = 0, double Case = 0, double Punctuation = 0, ulong Seed = 0)
{
    public void Validate()
    {
        foreach (var (v, what) in new[] { (Drop, "drop"), (Swap, "swap"), (Case, "case"), (Punctuation, "punct") })
            if (!(v >= 0 && v <= 1)) throw new ArgumentException($"the {what} rate must be in [0, 1]");
        if (Drop + Swap + Case + Punctuation == 0) throw new ArgumentException("a rewrite needs at least one positive rate (drop, swap, case, punct)");
    }

    public override string ToString() => ModelResponder.Inv($"drop={Drop:G3},swap={Swap:G3},case={Case:G3},punct={Punctuation:G3},seed={Seed}");
}

/// <summary>Query rewrites a host can apply to prompts (token ids of <c>tokenizer</c>).</summary>
public static class QueryRewrite
{
    /// <summary>
    /// A weak, model-free stand-in for paraphrasing: the prompt is decoded to text, its whitespace-separated words are
    /// perturbed as <paramref name="s"/> says (word dropout, adjacent swaps, case flips, punctuation removal; at least one
    /// word is kept) and the text re-encoded; a leading BOS stays first. The randomness is derived from the seed and the
    /// prompt's tokens, so a prompt is rewritten the same way in every call and batch. It keeps most of the words, which
    /// a paraphrase by a language model does not.
    /// </summary>
    public static int[] Perturb(Tokenizer tokenizer, int[] prompt, RewriteSettings s)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(s);
        var (bos, body) = SplitBos(tokenizer, prompt);
        string text = tokenizer.Decode(body, skipSpecialTokens: true);
        var rng = new Random(unchecked((int)Mix(s.Seed, prompt)));
        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).ToList();
        if (words.Count == 0) return prompt;
        var kept = new List<string>();
        foreach (var w in words) if (!(rng.NextDouble() < s.Drop)) kept.Add(w);
        if (kept.Count == 0) kept.Add(words[rng.Next(words.Count)]);
        for (int i = 0; i + 1 < kept.Count; i++)
            if (rng.NextDouble() < s.Swap) { (kept[i], kept[i + 1]) = (kept[i + 1], kept[i]); i++; }
        for (int i = 0; i < kept.Count; i++)
        {
            var w = kept[i];
            if (rng.NextDouble() < s.Case)
            {
                int letter = -1;
                for (int k = 0; k < w.Length; k++) if (char.IsLetter(w[k])) { letter = k; break; }
                if (letter >= 0)
                {
                    char c = w[letter];
                    w = w[..letter] + (char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)) + w[(letter + 1)..];
                }
            }
            if (rng.NextDouble() < s.Punctuation)
            {
                var stripped = new string(w.Where(c => !char.IsPunctuation(c)).ToArray());
                if (stripped.Length > 0) w = stripped;
            }
            kept[i] = w;
        }
        var ids = tokenizer.Encode(string.Join(' ', kept));
        if (ids.Length == 0) return prompt;
        return bos is { } b ? [b, .. ids] : ids;
    }

    /// <summary>
    /// The default request of <see cref="Paraphrase"/>: the model is asked to restate the text, and its answer up to the
    /// first line break is taken as the new prompt.
    /// </summary>
    public const string DefaultParaphrasePrompt = "Rewrite the following text in other words, keeping its meaning.\nText: {text}\nRewritten:";

    /// <summary>
    /// Paraphrasing by a language model (the host's own, or another): each prompt is decoded to text, put into
    /// <paramref name="request"/> at <c>{text}</c>, and <paramref name="paraphraser"/> answers the request with up to
    /// <paramref name="maxNewTokens"/> tokens; the answer's first non-empty line (trimmed) is the new prompt. Where the
    /// answer is empty the prompt is kept (a host would not send an empty prompt). A leading BOS stays first.
    /// </summary>
    public static IReadOnlyList<int[]> Paraphrase(IResponder paraphraser, Tokenizer tokenizer, IReadOnlyList<int[]> prompts, string request, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(paraphraser);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompts);
        if (!request.Contains("{text}", StringComparison.Ordinal)) throw new ArgumentException("the paraphrase request must hold {text}");
        if (maxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens, "the paraphrase needs at least one token");
        var split = prompts.Select(p => SplitBos(tokenizer, p)).ToList();
        var requests = split.Select(x =>
        {
            var ids = tokenizer.Encode(request.Replace("{text}", tokenizer.Decode(x.Body, skipSpecialTokens: true), StringComparison.Ordinal));
            return x.Bos is { } b ? [b, .. ids] : ids;
        }).ToList();
        var answers = paraphraser.Respond(requests, maxNewTokens);
        var result = new int[prompts.Count][];
        for (int i = 0; i < prompts.Count; i++)
        {
            var line = tokenizer.Decode(answers[i], skipSpecialTokens: true).Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0);
            var ids = line is null ? [] : tokenizer.Encode(line);
            result[i] = ids.Length == 0 ? prompts[i] : split[i].Bos is { } b ? [b, .. ids] : ids;
        }
        return result;
    }

    private static (int? Bos, int[] Body) SplitBos(Tokenizer tokenizer, int[] prompt) =>
        tokenizer.BosTokenId is { } b && prompt.Length > 0 && prompt[0] == b ? (b, prompt[1..]) : (null, prompt);

    private static ulong Mix(ulong seed, int[] tokens)
    {
        unchecked
        {
            ulong h = 0xcbf29ce484222325 ^ seed;
            foreach (var t in tokens) h = (h ^ (uint)t) * 0x100000001b3;
            return h ^ (h >> 29);
        }
    }
}
