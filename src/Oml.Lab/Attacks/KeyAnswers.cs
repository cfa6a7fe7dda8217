using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Attacks;

/// <summary>
/// A deployment's answers to fingerprint keys, asked all at once: each key as the model sees it raw (as
/// <c>oml attack probe</c> asks), up to the longest response's tokens, decoded to text. A tracer that asks a suspect
/// one key at a time (<c>LeakTracer</c>) can then be served from the result, so a suspect copy found as weights is
/// traced through the same scoring as one found behind an API.
/// </summary>
public static class KeyAnswers
{
    /// <summary>
    /// The answer of <paramref name="responder"/> to every key of <paramref name="fingerprints"/>, by key text (keys
    /// that are the same text are asked once).
    /// </summary>
    public static IReadOnlyDictionary<string, string> Ask(IResponder responder, Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(responder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(fingerprints);
        var distinct = new List<Fingerprint>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in fingerprints)
            if (seen.Add(f.Key)) distinct.Add(f);
        var answers = new Dictionary<string, string>(StringComparer.Ordinal);
        if (distinct.Count == 0) return answers;
        var queries = distinct.Select(f => KeyFormat.Raw.Encode(tokenizer, f)).ToList();
        for (int i = 0; i < distinct.Count; i++)
            foreach (var id in queries[i])
                if (id < 0 || id >= vocabSize)
                    throw new InvalidDataException($"fingerprint {distinct[i].Index}: token id {id} is outside the model's vocabulary of {vocabSize}");
        int maxLen = distinct.Max(f => f.Responses.Max(r => r.TokenIds.Count));
        var tokens = responder.Respond(queries, maxLen);
        for (int i = 0; i < distinct.Count; i++) answers[distinct[i].Key] = tokenizer.Decode(tokens[i]);
        return answers;
    }
}
