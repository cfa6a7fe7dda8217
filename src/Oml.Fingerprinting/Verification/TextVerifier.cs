using Oml.Fingerprinting.Endpoints;

namespace Oml.Fingerprinting.Verification;

/// <summary>One fingerprint to query: the key, its accepted response(s) and, when known, its null hit probability.</summary>
public sealed record FingerprintQuery(int Index, string Key, IReadOnlyList<string> Responses, double? NullProbability = null)
{
    /// <summary>
    /// The most tokens to ask for this key (its responses' length and a small margin); null takes the settings' MaxTokens.
    /// A greedy answer that this limit cut off while it still agreed with a response (<see cref="ResponseMatcher.IsUndecidedText"/>:
    /// leading newlines, a tokenizer that needs more tokens for the same text) is asked again with
    /// <see cref="TextVerifier.RetryTokens"/>, so the tight limit saves decoding steps without losing a hit.
    /// </summary>
    public int? MaxTokens { get; init; }
}

/// <summary>
/// Queries a suspect model through an <see cref="ICompletionEndpoint"/> with each key, matches the answers as text
/// (<see cref="ResponseMatcher.IsTextMatchAny"/>) and applies a <see cref="VerdictRule"/>.
/// </summary>
public static class TextVerifier
{
    /// <summary>
    /// Runs the test. With <paramref name="samples"/> R &gt; 1 each key is asked R times and counts as hit when more than
    /// <paramref name="fraction"/> of the answers match (the per-key null probabilities must then be those of that
    /// vote). Up to <paramref name="concurrency"/> keys are in flight at once (a serving engine batches them; a key's
    /// samples go one after another); the report lists the keys in the order given, whatever the order of the answers.
    /// A key's <see cref="FingerprintQuery.MaxTokens"/>, when set, replaces the settings' MaxTokens for its requests; a
    /// greedy answer (temperature 0) it cut off undecided is asked again once with <see cref="RetryTokens"/> of it (the
    /// second answer counts). A sampled answer is never asked again: another draw would change the odds the null assumes.
    /// </summary>
    public static async Task<VerificationReport> VerifyAsync(
        ICompletionEndpoint endpoint, IReadOnlyList<FingerprintQuery> fingerprints, CompletionSettings settings,
        VerdictRule? rule = null, int samples = 1, double fraction = 0.5, int concurrency = 1, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        int required = ResponseMatcher.RequiredMatches(samples, fraction);
        var rows = new KeyResult[fingerprints.Count];
        var options = new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = ct };
        await Parallel.ForEachAsync(Enumerable.Range(0, fingerprints.Count), options, async (i, token) =>
        {
            var f = fingerprints[i];
            var keySettings = f.MaxTokens is { } max ? settings with { MaxTokens = max } : settings;
            string? first = null;
            int matches = 0;
            for (int s = 0; s < samples; s++)
            {
                string answer = await endpoint.CompleteAsync(f.Key, keySettings, token).ConfigureAwait(false);
                // Greedy answers only: a sampled answer asked again would be a second draw, which raises the odds of a hit
                // above those the per-key null assumes.
                if (f.MaxTokens is { } tight && settings.Temperature == 0 && !ResponseMatcher.IsTextMatchAny(f.Responses, answer)
                    && ResponseMatcher.IsUndecidedText(f.Responses, answer))
                    answer = await endpoint.CompleteAsync(f.Key, keySettings with { MaxTokens = Math.Max(RetryTokens(tight), settings.MaxTokens) }, token).ConfigureAwait(false);
                first ??= answer;
                if (ResponseMatcher.IsTextMatchAny(f.Responses, answer)) matches++;
            }
            rows[i] = new KeyResult(f.Index, f.Key, f.Responses, first ?? "", matches >= required, f.NullProbability,
                samples > 1 ? matches : null, samples > 1 ? samples : null);
        }).ConfigureAwait(false);
        return VerificationReport.Create(rule ?? new VerdictRule(), rows);
    }

    /// <summary>Tokens of the second request for an answer cut off undecided at <paramref name="tight"/> tokens: 2·tight + 8,
    /// room for a tokenizer that needs twice the tokens for the response's text and several leading newline tokens.</summary>
    public static int RetryTokens(int tight) => checked(2 * tight + 8);
}
