using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Metrics;

/// <summary>Which keys were answered with one of their responses.</summary>
public sealed record FsrResult(IReadOnlyList<bool> PerKey)
{
    public int Hits => PerKey.Count(h => h);
    public int Queried => PerKey.Count;
    /// <summary>Fingerprint success rate: the fraction of keys answered with a response.</summary>
    public double Rate => Queried == 0 ? 0 : (double)Hits / Queried;
}

/// <summary>Fingerprint success rate (FSR) and persistence.</summary>
public static class FingerprintSuccess
{
    /// <summary>The prompt each fingerprint is queried with.</summary>
    public static List<int[]> Prompts(Tokenizer tok, IReadOnlyList<Fingerprint> fingerprints, KeyFormat? format = null, string? systemPrompt = null) =>
        fingerprints.Select(f => (format ?? KeyFormat.Raw).Encode(tok, f, systemPrompt)).ToList();

    /// <summary>
    /// FSR through any responder: each key is asked once, for as many tokens as its longest response, and hit when
    /// the answer starts with one of its responses token for token (<see cref="ResponseMatcher.IsTokenMatchAny"/>).
    /// </summary>
    public static FsrResult Measure(IResponder responder, Tokenizer tok, IReadOnlyList<Fingerprint> fingerprints, KeyFormat? format = null, string? systemPrompt = null)
    {
        if (fingerprints.Count == 0) throw new ArgumentException("no fingerprints to query");
        int maxLen = fingerprints.Max(f => f.Responses.Max(r => r.TokenIds.Count));
        var prompts = Prompts(tok, fingerprints, format, systemPrompt);
        var answers = responder.Respond(prompts, maxLen);
        if (answers.Count != prompts.Count) throw new InvalidOperationException($"responder '{responder.Name}' answered {answers.Count} of {prompts.Count} prompts");
        return new FsrResult(fingerprints.Select((f, i) => ResponseMatcher.IsTokenMatchAny(f.Responses.Select(r => r.TokenIds.ToArray()), answers[i])).ToArray());
    }

    /// <summary>
    /// FSR under the exact rule and under <paramref name="match"/> (e.g. the partial rule) from the same answers: each key
    /// is asked once, for as many tokens as <paramref name="match"/> needs for its longest response
    /// (<see cref="ResponseMatch.AnswerLength"/>); the exact rule looks at the answer's head only, so it counts as
    /// <see cref="Measure"/> does.
    /// </summary>
    public static (FsrResult Exact, FsrResult Other) MeasureWith(IResponder responder, Tokenizer tok, IReadOnlyList<Fingerprint> fingerprints, ResponseMatch match,
        KeyFormat? format = null, string? systemPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(match);
        if (fingerprints.Count == 0) throw new ArgumentException("no fingerprints to query");
        int maxLen = fingerprints.Max(f => f.Responses.Max(r => match.AnswerLength(r.TokenIds.Count)));
        var prompts = Prompts(tok, fingerprints, format, systemPrompt);
        var answers = responder.Respond(prompts, maxLen);
        if (answers.Count != prompts.Count) throw new InvalidOperationException($"responder '{responder.Name}' answered {answers.Count} of {prompts.Count} prompts");
        var expected = fingerprints.Select(f => f.Responses.Select(r => r.TokenIds.ToArray()).ToList()).ToList();
        return (new FsrResult(expected.Select((e, i) => ResponseMatcher.IsTokenMatchAny(e, answers[i])).ToArray()),
            new FsrResult(expected.Select((e, i) => match.IsMatchAny(e, answers[i])).ToArray()));
    }

    /// <summary>
    /// FSR of greedy decoding computed in one teacher-forced forward pass per batch: greedy decoding starts with a
    /// response exactly when, fed the prompt and the response, the model's argmax at every response position is the
    /// response's next token. Equal to <see cref="Measure"/> with a greedy <see cref="ModelResponder"/> (barring exact ties
    /// in the logits), without a host synchronisation per generated token.
    /// </summary>
    public static FsrResult MeasureGreedy(CausalLM model, Tokenizer tok, IReadOnlyList<Fingerprint> fingerprints, KeyFormat? format = null,
        string? systemPrompt = null, int batchSize = 64)
    {
        if (fingerprints.Count == 0) throw new ArgumentException("no fingerprints to query");
        var prompts = Prompts(tok, fingerprints, format, systemPrompt);
        var pairs = new List<TrainingPair>();
        var owner = new List<int>();
        for (int i = 0; i < fingerprints.Count; i++)
            foreach (var r in fingerprints[i].Responses)
            {
                pairs.Add(new TrainingPair(prompts[i], [.. r.TokenIds]));
                owner.Add(i);
            }
        var ok = GreedyPrefixMatches(model, pairs, batchSize);
        var hits = new bool[fingerprints.Count];
        for (int j = 0; j < pairs.Count; j++) hits[owner[j]] |= ok[j];
        return new FsrResult(hits);
    }

    /// <summary>For each (prompt, continuation): would greedy decoding after the prompt begin with the continuation?</summary>
    public static bool[] GreedyPrefixMatches(CausalLM model, IReadOnlyList<TrainingPair> pairs, int batchSize = 64)
    {
        var result = new bool[pairs.Count];
        int vocab = model.Config.VocabSize;
        foreach (var p in pairs)
        {
            if (p.Key.Length == 0 || p.Response.Length == 0) throw new ArgumentException("a prompt or continuation is empty");
            if (p.Key.Concat(p.Response).Any(id => id < 0 || id >= vocab)) throw new ArgumentException($"a token id is outside the vocabulary [0, {vocab})");
        }
        // Similar lengths together, so that little padding is computed; long rows in smaller batches.
        using var noGrad = Torch.NoGrad();
        foreach (var chunk in Oml.Fingerprinting.Generation.ResponseScorer.Batches(pairs, batchSize))
        {
            using var scope = Torch.NewScope();
            var batch = chunk.Select(i => pairs[i]).ToList();
            var (ids, labels) = FingerprintTrainer.Collate(batch, model.Config.PadTokenId ?? 0, model.Device);
            long t = ids.Size(1);
            var pred = model.Forward(ids).Narrow(1, 0, t - 1).ArgMax(-1);
            var target = labels.Narrow(1, 1, t - 1);
            var rowOk = pred.Eq(target).LogicalOr(target.Eq(-100)).All(1).To(DType.Int64).ToArray<long>();
            for (int j = 0; j < chunk.Length; j++) result[chunk[j]] = rowOk[j] != 0;
        }
        return result;
    }

    /// <summary>Persistence: FSR after an attack over FSR before it (0 when nothing was recalled before).</summary>
    public static double Persistence(double fsrBefore, double fsrAfter)
    {
        if (fsrBefore is < 0 or > 1 || fsrAfter is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(fsrBefore), "an FSR is in [0, 1]");
        return fsrBefore == 0 ? 0 : fsrAfter / fsrBefore;
    }
}
