using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Verification;

/// <summary>Verifies a local model: greedy answers to the keys, matched token for token against the responses.</summary>
public static class LocalVerifier
{
    /// <summary>
    /// Queries <paramref name="model"/> with each fingerprint's key (as <paramref name="format"/> builds it, raw by default,
    /// after <paramref name="systemPrompt"/> if one is given), decodes greedily for the longest response's length, and counts a hit when the answer starts with any of the
    /// responses. The null hit probability of a key is the base model's recorded probability of producing any of its
    /// responses (the sum over responses, at most 1), or the rule's default bound where none was recorded.
    /// </summary>
    public static VerificationReport Verify(CausalLM model, Tokenizer tokenizer, IReadOnlyList<Fingerprint> fingerprints, VerdictRule rule,
        int batchSize = 32, KeyFormat? format = null, string? systemPrompt = null)
    {
        format ??= KeyFormat.Raw;
        if (fingerprints.Count == 0) throw new ArgumentException("no fingerprints to query");
        var rows = new List<KeyResult>();
        foreach (var chunk in fingerprints.Chunk(Math.Max(1, batchSize)))
        {
            int maxLen = chunk.Max(f => f.Responses.Max(r => r.TokenIds.Count));
            var prompts = chunk.Select(f => format.Encode(tokenizer, f, systemPrompt)).ToList();
            var result = Generator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = maxLen, EosTokenIds = [] });
            for (int i = 0; i < chunk.Length; i++)
            {
                var f = chunk[i];
                var answer = result.Sequences[i].OutputIds;
                bool hit = ResponseMatcher.IsTokenMatchAny(f.Responses.Select(r => r.TokenIds.ToArray()), answer);
                double? nullP = f.Responses.All(r => r.LogProb is not null)
                    ? Math.Min(1.0, f.Responses.Sum(r => Math.Exp(r.LogProb!.Value)))
                    : null;
                rows.Add(new KeyResult(f.Index, f.Key, f.Responses.Select(r => r.Text).ToList(), tokenizer.Decode(answer), hit, nullP));
            }
        }
        return VerificationReport.Create(rule, rows);
    }
}
