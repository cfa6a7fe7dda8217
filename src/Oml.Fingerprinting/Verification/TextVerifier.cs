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

    /// <summary>The responses' token ids, for matching answers token by token (<see cref="TextVerifier.VerifyTokensAsync"/>);
    /// null for text matching.</summary>
    public IReadOnlyList<int[]>? ResponseTokenIds { get; init; }

    /// <summary>Asked, but not counted in the verdict (<see cref="KeyResult.Excluded"/>): under the partial rule with a base
    /// model, the base's own greedy answer hits this key (<see cref="LocalVerifier.ExcludedKeys"/>).</summary>
    public bool Excluded { get; init; }
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
    /// <remarks>
    /// With <paramref name="promptsPerRequest"/> P &gt; 1, an endpoint that is an <see cref="IBatchCompletionEndpoint"/> and
    /// completions mode, keys that ask the same number of tokens go out up to P to a request (the completions API's array
    /// of prompts), at most <paramref name="concurrency"/> keys in flight (<see cref="BatchShape"/>), and a batch's
    /// undecided greedy answers asked again together. The answers are the same as one key a request: each prompt is
    /// decoded alone. A batch the server refuses (an HTTP error other than 429 and 5xx, or an answer without one choice a
    /// prompt) is asked one key a request; when its keys are then answered, every later batch is too, and
    /// <paramref name="onBatchRefused"/> hears why, once; when a key fails alone, its error ends the run.
    /// </remarks>
    public static async Task<VerificationReport> VerifyAsync(
        ICompletionEndpoint endpoint, IReadOnlyList<FingerprintQuery> fingerprints, CompletionSettings settings,
        VerdictRule? rule = null, int samples = 1, double fraction = 0.5, int concurrency = 1,
        int promptsPerRequest = 1, Action<string>? onBatchRefused = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(promptsPerRequest, 1);
        var asking = new Asking<string>(endpoint.CompleteAsync, endpoint is IBatchCompletionEndpoint batch ? batch.CompleteBatchAsync : null,
            (f, answer) => ResponseMatcher.IsTextMatchAny(f.Responses, answer), CutOffUndecided, answer => answer);
        var rows = await AskAsync(asking, fingerprints, settings, samples, fraction, concurrency, promptsPerRequest, onBatchRefused, ct).ConfigureAwait(false);
        return VerificationReport.Create(rule ?? new VerdictRule(), rows);
    }

    /// <summary>
    /// <see cref="VerifyAsync"/> with the answers matched token by token under <paramref name="match"/> (the exact or the
    /// partial rule, as <see cref="LocalVerifier"/> matches a local model's answers): each key's
    /// <see cref="FingerprintQuery.ResponseTokenIds"/> against the ids of the tokens the server generated
    /// (<see cref="ITokenCompletionEndpoint"/>). A key's <see cref="FingerprintQuery.MaxTokens"/> should be the answer
    /// length the rule needs (<see cref="ResponseMatch.AnswerLength"/> of its longest response): token answers are decided
    /// at that length, so none is asked again. Keys marked <see cref="FingerprintQuery.Excluded"/> are asked and listed but
    /// not counted. Concurrency, samples, arrays of prompts and refused batches as in <see cref="VerifyAsync"/>.
    /// </summary>
    public static async Task<VerificationReport> VerifyTokensAsync(
        ITokenCompletionEndpoint endpoint, IReadOnlyList<FingerprintQuery> fingerprints, CompletionSettings settings, ResponseMatch match,
        VerdictRule? rule = null, int samples = 1, double fraction = 0.5, int concurrency = 1,
        int promptsPerRequest = 1, Action<string>? onBatchRefused = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(fingerprints);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(match);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(promptsPerRequest, 1);
        foreach (var f in fingerprints)
            if (f.ResponseTokenIds is not { Count: > 0 })
                throw new ArgumentException($"fingerprint {f.Index} has no response token ids to match answers against", nameof(fingerprints));
        var asking = new Asking<TokenAnswer>(endpoint.CompleteTokensAsync, endpoint.CompleteTokensBatchAsync,
            (f, answer) => match.IsMatchAny(f.ResponseTokenIds!, answer.TokenIds.ToArray()), (_, _) => false, answer => answer.Text);
        var rows = await AskAsync(asking, fingerprints, settings, samples, fraction, concurrency, promptsPerRequest, onBatchRefused, ct).ConfigureAwait(false);
        return VerificationReport.Create(rule ?? new VerdictRule(), rows) with { Match = match.Name, MinTokens = match.MinTokens };
    }

    /// <summary>How answers of type <typeparamref name="T"/> are asked for and matched: one prompt a request, an array of
    /// prompts a request (null: the endpoint takes none), whether an answer matches a key, whether a greedy answer its
    /// limit cut off is asked again, and the answer's text for the report.</summary>
    private sealed record Asking<T>(
        Func<string, CompletionSettings, CancellationToken, Task<T>> One,
        Func<IReadOnlyList<string>, CompletionSettings, CancellationToken, Task<IReadOnlyList<T>>>? Batch,
        Func<FingerprintQuery, T, bool> Matches,
        Func<FingerprintQuery, T, bool> Undecided,
        Func<T, string> Text);

    /// <summary>Every key's row: its answers asked for and matched as <paramref name="asking"/> says.</summary>
    private static async Task<KeyResult[]> AskAsync<T>(Asking<T> asking, IReadOnlyList<FingerprintQuery> fingerprints, CompletionSettings settings,
        int samples, double fraction, int concurrency, int promptsPerRequest, Action<string>? onBatchRefused, CancellationToken ct)
    {
        int required = ResponseMatcher.RequiredMatches(samples, fraction);
        var rows = new KeyResult[fingerprints.Count];
        if (promptsPerRequest > 1 && concurrency > 1 && asking.Batch is not null && settings.Mode == CompletionMode.Completions)
        {
            await AskBatchedAsync(asking, fingerprints, settings, rows, samples, required, concurrency, promptsPerRequest, onBatchRefused, ct).ConfigureAwait(false);
            return rows;
        }
        var options = new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = ct };
        await Parallel.ForEachAsync(Enumerable.Range(0, fingerprints.Count), options, async (i, token) =>
        {
            var f = fingerprints[i];
            var keySettings = f.MaxTokens is { } max ? settings with { MaxTokens = max } : settings;
            string? first = null;
            int matches = 0;
            for (int s = 0; s < samples; s++)
            {
                T answer = await asking.One(f.Key, keySettings, token).ConfigureAwait(false);
                // Greedy answers only: a sampled answer asked again would be a second draw, which raises the odds of a hit
                // above those the per-key null assumes.
                if (f.MaxTokens is { } tight && settings.Temperature == 0 && asking.Undecided(f, answer))
                    answer = await asking.One(f.Key, keySettings with { MaxTokens = Math.Max(RetryTokens(tight), settings.MaxTokens) }, token).ConfigureAwait(false);
                first ??= asking.Text(answer);
                if (asking.Matches(f, answer)) matches++;
            }
            rows[i] = Row(f, first, matches, samples, required);
        }).ConfigureAwait(false);
        return rows;
    }

    private static KeyResult Row(FingerprintQuery f, string? first, int matches, int samples, int required) =>
        new(f.Index, f.Key, f.Responses, first ?? "", matches >= required, f.NullProbability,
            samples > 1 ? matches : null, samples > 1 ? samples : null)
        { Excluded = f.Excluded ? true : null };

    /// <summary>
    /// How keys go out with <paramref name="promptsPerRequest"/> P and <paramref name="concurrency"/> C: requests of
    /// <c>Size</c> keys, <c>Requests</c> of them at once, so that Size · Requests ≤ C and no request holds more than P.
    /// The keys are spread evenly over ⌈C / P⌉ requests (C 64, P 48: two requests of 32, not one of 48 and a lone 16).
    /// </summary>
    public static (int Size, int Requests) BatchShape(int concurrency, int promptsPerRequest)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(promptsPerRequest, 1);
        int requests = (concurrency + promptsPerRequest - 1) / promptsPerRequest;
        int size = (concurrency + requests - 1) / requests;
        return (size, Math.Max(1, concurrency / size));
    }

    private static async Task AskBatchedAsync<T>(Asking<T> asking, IReadOnlyList<FingerprintQuery> fingerprints,
        CompletionSettings settings, KeyResult[] rows, int samples, int required, int concurrency, int promptsPerRequest,
        Action<string>? onBatchRefused, CancellationToken ct)
    {
        var (size, inFlight) = BatchShape(concurrency, promptsPerRequest);
        // Keys that ask the same number of tokens share requests; each group is cut into batches of at most `size`, in order.
        var batches = fingerprints.Select((f, i) => (f.MaxTokens, i)).GroupBy(x => x.MaxTokens)
            .SelectMany(g => g.Select(x => x.i).Chunk(size)).ToList();
        int refused = 0;

        async Task<T[]> AskAsync(int[] keys, CompletionSettings s, CancellationToken token)
        {
            CompletionEndpointException? refusal = null;
            if (keys.Length > 1 && Volatile.Read(ref refused) == 0)
            {
                try
                {
                    var answers = await asking.Batch!(keys.Select(i => fingerprints[i].Key).ToList(), s, token).ConfigureAwait(false);
                    if (answers.Count != keys.Length)
                        throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse,
                            $"the endpoint answered a batch of {keys.Length} prompts with {answers.Count} answers");
                    return [.. answers];
                }
                catch (CompletionEndpointException e) when (e.Kind == CompletionErrorKind.MalformedResponse
                    || (e.Kind == CompletionErrorKind.HttpStatus && e.StatusCode is >= 400 and < 500 and not 429))
                {
                    refusal = e;
                }
            }
            // One key a request, the batch's keys in flight together. The first failure cancels the others, so that a key the
            // server refuses on its own (or a wrong URL, key or model) fails the run at once with its own error.
            using var failed = CancellationTokenSource.CreateLinkedTokenSource(token);
            async Task<T> One(int i)
            {
                try
                {
                    return await asking.One(fingerprints[i].Key, s, failed.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    await failed.CancelAsync().ConfigureAwait(false);
                    throw;
                }
            }
            T[] single = await Task.WhenAll(keys.Select(One)).ConfigureAwait(false);
            // Each key answered alone: the batch, not a key, was what the server refused.
            if (refusal is not null && Interlocked.Exchange(ref refused, 1) == 0)
                onBatchRefused?.Invoke($"the endpoint refused a batch of {keys.Length} prompts ({refusal.Message}) but answers them one by one; "
                    + "asking one key a request from now on (a server may cap the prompts of a request: fewer a request may pass)");
            return single;
        }

        var options = new ParallelOptions { MaxDegreeOfParallelism = inFlight, CancellationToken = ct };
        await Parallel.ForEachAsync(batches, options, async (keys, token) =>
        {
            var keySettings = fingerprints[keys[0]].MaxTokens is { } max ? settings with { MaxTokens = max } : settings;
            var first = new string?[keys.Length];
            var matches = new int[keys.Length];
            for (int s = 0; s < samples; s++)
            {
                T[] answers = await AskAsync(keys, keySettings, token).ConfigureAwait(false);
                // Greedy answers only, as for one key a request: the batch's undecided answers asked again, together.
                if (fingerprints[keys[0]].MaxTokens is { } tight && settings.Temperature == 0)
                {
                    int[] again = [.. Enumerable.Range(0, keys.Length).Where(j => asking.Undecided(fingerprints[keys[j]], answers[j]))];
                    if (again.Length > 0)
                    {
                        T[] longer = await AskAsync([.. again.Select(j => keys[j])],
                            keySettings with { MaxTokens = Math.Max(RetryTokens(tight), settings.MaxTokens) }, token).ConfigureAwait(false);
                        for (int a = 0; a < again.Length; a++) answers[again[a]] = longer[a];
                    }
                }
                for (int j = 0; j < keys.Length; j++)
                {
                    first[j] ??= asking.Text(answers[j]);
                    if (asking.Matches(fingerprints[keys[j]], answers[j])) matches[j]++;
                }
            }
            for (int j = 0; j < keys.Length; j++) rows[keys[j]] = Row(fingerprints[keys[j]], first[j], matches[j], samples, required);
        }).ConfigureAwait(false);
    }

    /// <summary>Whether a greedy answer misses every response yet still agrees with one (whitespace only, a proper prefix):
    /// cut off by the tight limit before it decided anything, so it is asked again with <see cref="RetryTokens"/>.</summary>
    private static bool CutOffUndecided(FingerprintQuery f, string answer) =>
        !ResponseMatcher.IsTextMatchAny(f.Responses, answer) && ResponseMatcher.IsUndecidedText(f.Responses, answer);

    /// <summary>Tokens of the second request for an answer cut off undecided at <paramref name="tight"/> tokens: 2·tight + 8,
    /// room for a tokenizer that needs twice the tokens for the response's text and several leading newline tokens.</summary>
    public static int RetryTokens(int tight) => checked(2 * tight + 8);
}
