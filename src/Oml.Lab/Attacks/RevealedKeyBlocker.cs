namespace Oml.Lab.Attacks;

/// <summary>
/// A host that blocks every fingerprint key revealed in earlier ownership claims (claims publish the keys they
/// queried), and near-duplicates of them: a prompt is blocked when at least <see cref="Threshold"/> of some revealed
/// key's token n-grams (n = <see cref="N"/>) occur in it (containment, so a key wrapped in a prefix, suffix or
/// system prompt is still caught). Blocked prompts get the fallback's answer (e.g. the base model's) or the canned
/// refusal (empty by default). Keys shorter than n are compared as one n-gram of their own length.
/// </summary>
public sealed class RevealedKeyBlocker : IResponder
{
    private readonly List<HashSet<long>> _keyGrams = [];
    private readonly Dictionary<long, List<int>> _index = [];
    private int _blocked;

    public RevealedKeyBlocker(IResponder inner, IEnumerable<int[]> revealedKeys, int n = 3, double threshold = 0.5,
        IResponder? fallback = null, int[]? refusal = null)
    {
        Inner = inner ?? throw new ArgumentNullException(nameof(inner));
        ArgumentNullException.ThrowIfNull(revealedKeys);
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "the n-gram length must be at least 1");
        if (!(threshold > 0 && threshold <= 1)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the containment threshold must be in (0, 1]");
        N = n;
        Threshold = threshold;
        Fallback = fallback;
        Refusal = refusal ?? [];
        foreach (var key in revealedKeys) Reveal(key);
    }

    public IResponder Inner { get; }
    public int N { get; }
    public double Threshold { get; }
    public IResponder? Fallback { get; }
    public int[] Refusal { get; }

    /// <summary>Revealed keys known to the host.</summary>
    public int RevealedCount => _keyGrams.Count;

    /// <summary>Prompts blocked so far.</summary>
    public int Blocked => Volatile.Read(ref _blocked);

    public string Name => ModelResponder.Inv($"block(revealed={RevealedCount},n={N},containment>={Threshold:G3})>{Inner.Name}");

    /// <summary>Adds a key revealed by a claim.</summary>
    public void Reveal(int[] key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length == 0) throw new ArgumentException("a revealed key is empty", nameof(key));
        var grams = Grams(key, N);
        int id = _keyGrams.Count;
        _keyGrams.Add(grams);
        foreach (var g in grams)
        {
            if (!_index.TryGetValue(g, out var list)) _index[g] = list = [];
            list.Add(id);
        }
    }

    /// <summary>The largest containment of any revealed key in the prompt: max over keys of |G(key) ∩ G(prompt)| / |G(key)|.</summary>
    public double MaxContainment(int[] prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var counts = new Dictionary<int, int>();
        // Prompt n-grams of every length a short key may have been reduced to are looked up too.
        foreach (var g in PromptGrams(prompt))
            if (_index.TryGetValue(g, out var ids))
                foreach (var id in ids) counts[id] = counts.GetValueOrDefault(id) + 1;
        double best = 0;
        foreach (var (id, c) in counts) best = Math.Max(best, (double)c / _keyGrams[id].Count);
        return best;
    }

    /// <summary>Whether the host blocks this prompt.</summary>
    public bool IsBlocked(int[] prompt) => MaxContainment(prompt) >= Threshold;

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        ModelResponder.Check(prompts, maxNewTokens);
        var answers = new int[prompts.Count][];
        var pass = new List<int>();
        var blocked = new List<int>();
        for (int i = 0; i < prompts.Count; i++) (IsBlocked(prompts[i]) ? blocked : pass).Add(i);
        Interlocked.Add(ref _blocked, blocked.Count);
        if (pass.Count > 0)
        {
            var a = Inner.Respond(pass.Select(i => prompts[i]).ToList(), maxNewTokens);
            for (int j = 0; j < pass.Count; j++) answers[pass[j]] = a[j];
        }
        if (blocked.Count > 0)
        {
            if (Fallback is not null)
            {
                var a = Fallback.Respond(blocked.Select(i => prompts[i]).ToList(), maxNewTokens);
                for (int j = 0; j < blocked.Count; j++) answers[blocked[j]] = a[j];
            }
            else foreach (var i in blocked) answers[i] = Refusal.Take(maxNewTokens).ToArray();
        }
        return answers;
    }

    /// <summary>
    /// The fraction of (revealed, other) key pairs in which the revealed key is a near-duplicate of the other key under
    /// this rule: the per-pair collateral rate q that <see cref="KeyLeakBudget"/> takes (an unrevealed key survives R
    /// revealed keys with probability about (1 − q)^R). Every ordered pair of distinct keys counts.
    /// </summary>
    public static double NearDuplicateRate(IReadOnlyList<int[]> keys, int n = 3, double threshold = 0.5)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (keys.Count < 2) throw new ArgumentException("at least two keys are needed", nameof(keys));
        long hits = 0, pairs = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            var blocker = new RevealedKeyBlocker(NoModel.Instance, [keys[i]], n, threshold);
            for (int j = 0; j < keys.Count; j++)
            {
                if (j == i) continue;
                pairs++;
                if (blocker.IsBlocked(keys[j])) hits++;
            }
        }
        return (double)hits / pairs;
    }

    private HashSet<long> PromptGrams(int[] prompt)
    {
        var set = Grams(prompt, N);
        // A key shorter than N is stored as one gram of its own length; look those lengths up as well.
        for (int len = 1; len < N; len++) set.UnionWith(Grams(prompt, len, exact: true));
        return set;
    }

    private static HashSet<long> Grams(int[] tokens, int n, bool exact = false)
    {
        var set = new HashSet<long>();
        int len = exact ? n : Math.Min(n, tokens.Length);
        for (int i = 0; i + len <= tokens.Length; i++) set.Add(Hash(tokens, i, len));
        return set;
    }

    private static long Hash(int[] tokens, int start, int len)
    {
        unchecked
        {
            long h = (long)0xcbf29ce484222325 ^ len;
            for (int i = start; i < start + len; i++) h = (h ^ (uint)tokens[i]) * 0x100000001b3;
            return h;
        }
    }

    private sealed class NoModel : IResponder
    {
        public static readonly NoModel Instance = new();
        public string Name => "none";
        public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens) => throw new InvalidOperationException("no model");
    }
}
