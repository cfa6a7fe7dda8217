namespace Oml.Fingerprinting.Generation;

/// <summary>
/// Perinucleus response selection ("Scalable Fingerprinting of Large Language Models", arXiv 2502.07760): rank the
/// base model's next-token probabilities after the key, take the nucleus — the most likely tokens whose probabilities
/// first reach a total of t — and choose the response's first token among the k acceptable tokens ranked right after
/// it. Such a token is plausible (so the fingerprint costs the model little to learn and hides among ordinary
/// answers) yet unlikely enough (so an unrelated model rarely produces it: its probability is below 1 − t, and at most
/// 1/k of that falls to any one choice). Tokens that are not alphanumeric, or are a single character, are skipped as
/// the reference implementation skips them.
/// </summary>
public static class Perinucleus
{
    /// <summary>
    /// The candidate token ids, in rank order: the first <paramref name="width"/> acceptable tokens after the nucleus of
    /// total probability <paramref name="threshold"/>. Fewer when the vocabulary runs out.
    /// </summary>
    public static int[] Candidates(ReadOnlySpan<float> probabilities, double threshold, int width, Func<int, bool> acceptable)
    {
        if (threshold is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the nucleus threshold t must be in (0, 1)");
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), width, "the width k must be at least 1");
        var order = new int[probabilities.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var probs = probabilities.ToArray();
        // Descending probability; ties by id, so the ranking is deterministic.
        Array.Sort(order, (a, b) => probs[b] != probs[a] ? probs[b].CompareTo(probs[a]) : a.CompareTo(b));
        double total = 0;
        int rank = 0;
        while (rank < order.Length && total < threshold) total += probs[order[rank++]];
        var result = new List<int>(width);
        for (; rank < order.Length && result.Count < width; rank++)
            if (acceptable(order[rank])) result.Add(order[rank]);
        return result.ToArray();
    }

    /// <summary>
    /// <see cref="Candidates"/> from only the most probable tokens: <paramref name="topValues"/> and
    /// <paramref name="topIds"/> are the largest probabilities of the distribution (any order among equals) and their
    /// ids; <paramref name="complete"/> says they are the whole vocabulary. Returns exactly what <see cref="Candidates"/>
    /// returns on the full distribution, or null when these tokens do not settle it: the nucleus or the candidates reach
    /// past them, or a token of the walk ties with the smallest value given (a token left out could rank before it).
    /// </summary>
    public static int[]? CandidatesFromTop(ReadOnlySpan<float> topValues, ReadOnlySpan<long> topIds, bool complete, double threshold, int width,
        Func<int, bool> acceptable)
    {
        if (threshold is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the nucleus threshold t must be in (0, 1)");
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), width, "the width k must be at least 1");
        if (topValues.Length != topIds.Length) throw new ArgumentException("values and ids differ in length");
        int n = topValues.Length;
        var vals = topValues.ToArray();
        var ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = checked((int)topIds[i]);
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        // The same ranking as Candidates: descending probability, ties by id.
        Array.Sort(order, (a, b) => vals[b] != vals[a] ? vals[b].CompareTo(vals[a]) : ids[a].CompareTo(ids[b]));
        float floor = n == 0 ? float.NaN : vals[order[n - 1]];
        bool Settled(int rank) => complete || vals[order[rank]] != floor;
        double total = 0;
        int r = 0;
        while (r < n && total < threshold)
        {
            if (!Settled(r)) return null;
            total += vals[order[r++]];
        }
        if (total < threshold && !complete) return null;
        var result = new List<int>(width);
        for (; r < n && result.Count < width; r++)
        {
            if (!Settled(r)) return null;
            if (acceptable(ids[order[r]])) result.Add(ids[order[r]]);
        }
        if (result.Count < width && !complete) return null;
        return result.ToArray();
    }

    /// <summary>
    /// <see cref="Candidates"/> from a whole distribution already sorted by descending probability (e.g. on the device,
    /// by a sort that need not be stable): <paramref name="sortedValues"/> are the probabilities, non-increasing, and
    /// <paramref name="sortedIds"/> their token ids. Tokens of equal probability are put in id order here, run by run as
    /// the walk reaches them, so the result is exactly <see cref="Candidates"/>'s on the unsorted distribution, in
    /// O(vocabulary) instead of a comparison sort of the whole vocabulary. Returns null when the values are not
    /// non-increasing (a NaN, or not sorted), for the caller to fall back to <see cref="Candidates"/>.
    /// </summary>
    public static int[]? CandidatesFromSorted(ReadOnlySpan<float> sortedValues, ReadOnlySpan<long> sortedIds, double threshold, int width,
        Func<int, bool> acceptable)
    {
        if (threshold is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the nucleus threshold t must be in (0, 1)");
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), width, "the width k must be at least 1");
        if (sortedValues.Length != sortedIds.Length) throw new ArgumentException("values and ids differ in length");
        int n = sortedValues.Length;
        for (int i = 0; i < n; i++)
            if (float.IsNaN(sortedValues[i]) || (i > 0 && sortedValues[i] > sortedValues[i - 1])) return null;
        var ids = new int[n];
        int sortedUpTo = 0; // ids[..sortedUpTo] hold whole runs of equal values, each in id order
        double total = 0;
        int rank = 0;
        while (rank < n && total < threshold) total += sortedValues[rank++];
        var result = new List<int>(width);
        for (; rank < n && result.Count < width; rank++)
        {
            while (sortedUpTo <= rank)
            {
                int end = sortedUpTo + 1;
                while (end < n && sortedValues[end] == sortedValues[sortedUpTo]) end++;
                for (int i = sortedUpTo; i < end; i++) ids[i] = checked((int)sortedIds[i]);
                if (end - sortedUpTo > 1) Array.Sort(ids, sortedUpTo, end - sortedUpTo);
                sortedUpTo = end;
            }
            if (acceptable(ids[rank])) result.Add(ids[rank]);
        }
        return result.ToArray();
    }

    /// <summary>The reference's filter: the token's text, stripped of leading space markers, is alphanumeric and longer than one character.</summary>
    public static bool IsAcceptableText(string? tokenText)
    {
        if (tokenText is null) return false;
        var t = tokenText.TrimStart(' ', '\u0120', '\u2581'); // plain space, byte-level 'Ġ', SentencePiece '▁'
        return t.Length > 1 && t.All(char.IsLetterOrDigit);
    }

    /// <summary>
    /// Whether token <paramref name="id"/> may start a response: <see cref="IsAcceptableText"/> on its vocabulary string
    /// and on the text it decodes to. The string alone is not enough for byte-level vocabularies, which spell every byte
    /// as a printable character: "ĊĊ" (two newlines) or "ĉĉ" (two tabs) are letters there, but decode to whitespace, which
    /// a text verifier cannot match (it trims leading whitespace) and a server may strip.
    /// </summary>
    public static bool IsAcceptable(Oml.Models.Tokenizers.Tokenizer tokenizer, int id)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return IsAcceptableText(tokenizer.IdToToken(id)) && IsAcceptableText(tokenizer.Decode([id], skipSpecialTokens: true));
    }
}
