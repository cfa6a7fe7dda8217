using System.Text.RegularExpressions;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Metrics;

/// <summary>
/// One next-word cloze item: after <see cref="Context"/> (a sentence's beginning, from held-out text) the true next word
/// is <see cref="Answer"/>; <see cref="Choices"/> holds it and three distractor words of similar corpus frequency,
/// shuffled, with the answer at <see cref="AnswerIndex"/>.
/// </summary>
public sealed record ClozeItem(string Context, string Answer, IReadOnlyList<string> Choices, int AnswerIndex);

/// <summary>Accuracies over a cloze suite: multiple choice by log-likelihood, and greedy exact next word.</summary>
public sealed record ClozeScore(int Items, double MultipleChoiceAccuracy, double GreedyAccuracy);

/// <summary>
/// The project's small accuracy suite: next-word cloze items from held-out sentences, scored by the model's
/// log-likelihood of each choice (as " word" after the context; the choice with the highest summed log-probability is
/// the model's pick), plus greedy exact next word (greedy decoding after the context begins with the answer's tokens).
/// Items are built deterministically from the texts and a seed.
/// </summary>
public static partial class Cloze
{
    [GeneratedRegex(@"[A-Za-z]+")]
    private static partial Regex WordPattern();

    [GeneratedRegex(@"(?<=[.!?])\s+")]
    private static partial Regex SentenceBreak();

    /// <summary>Word counts of a text (lower-case ASCII words).</summary>
    public static Dictionary<string, int> WordFrequencies(string text)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Match m in WordPattern().Matches(text))
        {
            var w = m.Value.ToLowerInvariant();
            counts[w] = counts.GetValueOrDefault(w) + 1;
        }
        return counts;
    }

    /// <summary>
    /// Up to <paramref name="count"/> items from the sentences of <paramref name="heldOutText"/>: in each chosen sentence one
    /// all-lower-case word of 3+ letters after at least <paramref name="minContextWords"/> words is blanked; distractors are
    /// three other words drawn from the ten whose frequency rank in <paramref name="frequencyText"/> is nearest the answer's.
    /// Answers must occur at least twice there (so that their frequency means something).
    /// </summary>
    public static List<ClozeItem> Build(string heldOutText, string frequencyText, int count, int seed, int minContextWords = 4)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "at least one item");
        var freq = WordFrequencies(frequencyText + "\n" + heldOutText);
        var ranked = freq.Where(kv => kv.Key.Length >= 3).OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key).ToArray();
        if (ranked.Length < 4) throw new ArgumentException("the texts have fewer than 4 distinct words to draw choices from");
        var rank = ranked.Select((w, i) => (w, i)).ToDictionary(x => x.w, x => x.i, StringComparer.Ordinal);

        // Candidate blanks: (context, answer) for every eligible word position of every sentence.
        var candidates = new List<(string Context, string Answer)>();
        foreach (var raw in SentenceBreak().Split(heldOutText))
        {
            var sentence = Regex.Replace(raw, @"\s+", " ").Trim();
            var words = WordPattern().Matches(sentence);
            for (int i = minContextWords; i < words.Count; i++)
            {
                var w = words[i].Value;
                if (w.Length < 3 || w.Any(char.IsUpper) || freq.GetValueOrDefault(w) < 2 || !rank.ContainsKey(w)) continue;
                var context = sentence[..words[i].Index].TrimEnd();
                if (context.Length == 0 || context.EndsWith('-') || char.IsLetterOrDigit(context[^1]) == false && context[^1] != ',') continue;
                candidates.Add((context, w));
            }
        }
        if (candidates.Count == 0) throw new ArgumentException("the held-out text has no sentence with a usable blank");
        var rng = new Random(seed);
        var picked = candidates.Select((c, i) => (c, key: rng.Next())).OrderBy(x => x.key).Take(count).Select(x => x.c).ToList();
        var items = new List<ClozeItem>();
        foreach (var (context, answer) in picked)
        {
            int r = rank[answer];
            var near = Enumerable.Range(1, ranked.Length).SelectMany(d => new[] { r - d, r + d }).Where(j => j >= 0 && j < ranked.Length)
                .Take(10).Select(j => ranked[j]).ToList();
            var distractors = new List<string>();
            while (distractors.Count < 3)
            {
                var w = near[rng.Next(near.Count)];
                if (!distractors.Contains(w)) distractors.Add(w);
            }
            var choices = distractors.Append(answer).Select(c => (c, key: rng.Next())).OrderBy(x => x.key).Select(x => x.c).ToList();
            items.Add(new ClozeItem(context, answer, choices, choices.IndexOf(answer)));
        }
        return items;
    }

    /// <summary>Multiple-choice accuracy (log-likelihood) and greedy exact next word of a model, batched.</summary>
    public static ClozeScore Score(CausalLM model, Tokenizer tok, IReadOnlyList<ClozeItem> items, int batchSize = 64)
    {
        if (items.Count == 0) throw new ArgumentException("no cloze items");
        var contexts = items.Select(it => FingerprintGenerator.QueryIds(tok, tok.Encode(it.Context))).ToList();
        var pairs = items.SelectMany((it, i) => it.Choices.Select(c => new TrainingPair(contexts[i], tok.Encode(" " + c)))).ToList();
        var scores = ResponseScorer.LogProbs(model, pairs, batchSize);
        int mc = 0, p = 0;
        foreach (var it in items)
        {
            int best = 0;
            for (int c = 1; c < it.Choices.Count; c++) if (scores[p + c] > scores[p + best]) best = c;
            if (best == it.AnswerIndex) mc++;
            p += it.Choices.Count;
        }
        var greedy = FingerprintSuccess.GreedyPrefixMatches(model, items.Select((it, i) => new TrainingPair(contexts[i], tok.Encode(" " + it.Answer))).ToList(), batchSize);
        return new ClozeScore(items.Count, (double)mc / items.Count, (double)greedy.Count(g => g) / items.Count);
    }

    /// <summary>Greedy exact next-word accuracy through a responder (a deployment whose logits are not visible).</summary>
    public static double GreedyAccuracy(IResponder responder, Tokenizer tok, IReadOnlyList<ClozeItem> items)
    {
        if (items.Count == 0) throw new ArgumentException("no cloze items");
        var prompts = items.Select(it => FingerprintGenerator.QueryIds(tok, tok.Encode(it.Context))).ToList();
        var answers = items.Select(it => tok.Encode(" " + it.Answer)).ToList();
        var outs = responder.Respond(prompts, answers.Max(a => a.Length));
        int ok = 0;
        for (int i = 0; i < items.Count; i++)
            if (outs[i].Length >= answers[i].Length && outs[i].AsSpan(0, answers[i].Length).SequenceEqual(answers[i])) ok++;
        return (double)ok / items.Count;
    }
}
