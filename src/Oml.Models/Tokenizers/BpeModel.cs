using System.Buffers;
using System.Collections.Concurrent;
using System.Text;

namespace Oml.Models.Tokenizers;

/// <summary>
/// The BPE model of tokenizer.json: splits one pre-token into its characters (or byte-fallback tokens) and applies
/// the merges in rank order, lowest rank first and leftmost first among equal ranks, as tokenizers does.
/// Results are cached per pre-token (bounded).
/// </summary>
internal sealed class BpeModel
{
    private const int CacheCapacity = 100_000;
    private const int MaxCachedWordLength = 256;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabLookup;
    private readonly int[] _mergeTriplets; // (left id, right id, merged id) per merge, in rank order
    private PairTable? _merges; // (left id, right id) -> (rank << 32) | merged id; built from _mergeTriplets on first use
    private readonly int[] _charIds; // id of the single-character token for each UTF-16 char, -1 when none
    private readonly int[]? _byteIds; // ids of <0x00>..<0xFF> when byte_fallback is on and all exist
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly string? _prefix;
    private readonly string? _suffix;
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheLookup;
    private int _cacheCount;

    /// <summary>Builds the model from tokenizer.json's vocabulary and merges, checking every merge against the vocabulary.</summary>
    public BpeModel(Dictionary<string, int> vocab, List<(string Left, string Right)> merges, BpeOptions options)
        : this(vocab, IdsToTokens(vocab), MergeTriplets(vocab, merges, options), options)
    {
    }

    /// <summary>
    /// The model from its already-checked parts (the tokenizer cache): every id's token (null for gaps), and the merges
    /// as (left, right, merged) id triplets in rank order. Ids out of range or repeated tokens are an
    /// <see cref="InvalidDataException"/>.
    /// </summary>
    public static BpeModel FromParts(string?[] idToToken, int[] mergeTriplets, BpeOptions options)
    {
        var vocab = new Dictionary<string, int>(idToToken.Length, StringComparer.Ordinal);
        for (var id = 0; id < idToToken.Length; id++)
            if (idToToken[id] is { } token && !vocab.TryAdd(token, id))
                throw new InvalidDataException($"tokenizer cache: token '{token}' has two ids");
        if (mergeTriplets.Length % 3 != 0) throw new InvalidDataException("tokenizer cache: the merges are not id triplets");
        foreach (var id in mergeTriplets)
            if ((uint)id >= (uint)idToToken.Length || idToToken[id] == null) throw new InvalidDataException($"tokenizer cache: merge id {id} names no token");
        return new BpeModel(vocab, idToToken, mergeTriplets, options);
    }

    private BpeModel(Dictionary<string, int> vocab, string?[] idToToken, int[] mergeTriplets, BpeOptions options)
    {
        _vocab = vocab;
        _vocabLookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        Options = options;
        _fuseUnk = options.FuseUnk;
        _ignoreMerges = options.IgnoreMerges;
        _prefix = string.IsNullOrEmpty(options.ContinuingSubwordPrefix) ? null : options.ContinuingSubwordPrefix;
        _suffix = string.IsNullOrEmpty(options.EndOfWordSuffix) ? null : options.EndOfWordSuffix;
        IdToToken = idToToken;
        _mergeTriplets = mergeTriplets;

        if (options.UnkToken is { } unkToken)
        {
            if (!vocab.TryGetValue(unkToken, out var unk)) throw new InvalidDataException($"tokenizer.json: model.unk_token '{unkToken}' is not in the vocabulary");
            _unkId = unk;
        }

        _charIds = new int[char.MaxValue + 1];
        Array.Fill(_charIds, -1);
        for (var id = 0; id < idToToken.Length; id++)
            if (idToToken[id] is { Length: 1 } token) _charIds[token[0]] = id;

        if (options.ByteFallback)
        {
            _byteIds = new int[256];
            for (var b = 0; b < 256; b++)
                _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
            if (Array.IndexOf(_byteIds, -1) >= 0) _byteIds = null; // tokenizers falls back only when all bytes of a char exist; approximated per char below
            ByteFallback = true;
        }
    }

    /// <summary>Every id's token (null for gaps); a token given two ids is an error.</summary>
    private static string?[] IdsToTokens(Dictionary<string, int> vocab)
    {
        var maxId = -1;
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new InvalidDataException($"tokenizer.json: model.vocab: token '{token}' has a negative id {id}");
            maxId = Math.Max(maxId, id);
        }
        var idToToken = new string?[maxId + 1];
        foreach (var (token, id) in vocab)
        {
            if (idToToken[id] != null) throw new InvalidDataException($"tokenizer.json: model.vocab: id {id} is given to both '{idToToken[id]}' and '{token}'");
            idToToken[id] = token;
        }
        return idToToken;
    }

    /// <summary>The merges as (left, right, merged) id triplets in rank order, each checked against the vocabulary.</summary>
    private static int[] MergeTriplets(Dictionary<string, int> vocab, List<(string Left, string Right)> merges, BpeOptions options)
    {
        var lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        var prefix = string.IsNullOrEmpty(options.ContinuingSubwordPrefix) ? null : options.ContinuingSubwordPrefix;
        var triplets = new int[3 * merges.Count];
        var joined = new char[64];   // left + right without a string per merge
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (!vocab.TryGetValue(left, out var l)) throw new InvalidDataException($"tokenizer.json: model.merges[{rank}]: '{left}' is not in the vocabulary");
            if (!vocab.TryGetValue(right, out var r)) throw new InvalidDataException($"tokenizer.json: model.merges[{rank}]: '{right}' is not in the vocabulary");
            var cut = prefix != null && right.StartsWith(prefix, StringComparison.Ordinal) ? prefix.Length : 0;
            int length = left.Length + right.Length - cut;
            if (joined.Length < length) joined = new char[Math.Max(length, 2 * joined.Length)];
            left.AsSpan().CopyTo(joined);
            right.AsSpan(cut).CopyTo(joined.AsSpan(left.Length));
            if (!lookup.TryGetValue(joined.AsSpan(0, length), out var merged))
                throw new InvalidDataException($"tokenizer.json: model.merges[{rank}]: the merge of '{left}' and '{right}' ('{left + right[cut..]}') is not in the vocabulary");
            triplets[3 * rank] = l;
            triplets[3 * rank + 1] = r;
            triplets[3 * rank + 2] = merged;
        }
        return triplets;
    }

    /// <summary>
    /// The merge table, built on first use: commands that only decode, or encode through the vocabulary alone (ids of
    /// the key tokens are stored), never need it. A repeated merge takes its last rank, as in tokenizers.
    /// </summary>
    private PairTable Merges => _merges ?? LazyInitializer.EnsureInitialized(ref _merges, () =>
    {
        var n = _mergeTriplets.Length / 3;
        var table = new PairTable(n);
        for (var rank = 0; rank < n; rank++)
            table.Set(Key(_mergeTriplets[3 * rank], _mergeTriplets[3 * rank + 1]), ((long)rank << 32) | (uint)_mergeTriplets[3 * rank + 2]);
        return table;
    });

    /// <summary>The options this model was built with (kept for the tokenizer cache).</summary>
    public BpeOptions Options { get; }

    /// <summary>The merges as (left, right, merged) id triplets in rank order (kept for the tokenizer cache).</summary>
    public ReadOnlySpan<int> MergeTripletSpan => _mergeTriplets;

    public bool ByteFallback { get; }

    /// <summary>Token of each model id (null for gaps).</summary>
    public string?[] IdToToken { get; }

    public int VocabCount => _vocab.Count;

    public bool TryGetId(ReadOnlySpan<char> token, out int id) => _vocabLookup.TryGetValue(token, out id);

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-token (already byte-mapped for byte-level models).</summary>
    public void Encode(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.IsEmpty) return;
        if (_ignoreMerges && _vocabLookup.TryGetValue(word, out var whole))
        {
            output.Add(whole);
            return;
        }
        if (_cacheLookup.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = Merge(word);
        if (word.Length <= MaxCachedWordLength)
        {
            if (Interlocked.Increment(ref _cacheCount) > CacheCapacity)
            {
                _cache.Clear();
                Interlocked.Exchange(ref _cacheCount, 1);
            }
            _cacheLookup.TryAdd(word, ids);
        }
        output.AddRange(ids);
    }

    private int[] Merge(ReadOnlySpan<char> word)
    {
        // Initial symbols, straight into pooled buffers (at most 4 byte-fallback symbols per UTF-16 char), so that a
        // long word (a whole document for tokenizers without a pre-tokenizer) allocates nothing on the large-object heap.
        int cap = word.Length * 4 + 1;
        var rented = ArrayPool<int>.Shared.Rent(cap * 3);
        var rentedPairs = ArrayPool<long>.Shared.Rent(cap);
        try
        {
            var symbols = new SymbolBuffer(rented.AsSpan(0, cap));
            AddInitialSymbols(word, ref symbols);
            var n = symbols.Count;
            var ids = rented.AsSpan(0, n);
            if (n <= 1) return ids.ToArray();
            _ = Merges; // built on the first word that has pairs; PairValue reads the field from here on
            var prev = rented.AsSpan(cap, n);
            var next = rented.AsSpan(2 * cap, n);
            var pair = rentedPairs.AsSpan(0, n); // (rank << 32 | merged id) of the pair starting at i, long.MaxValue if none
            for (var i = 0; i < n; i++)
            {
                prev[i] = i - 1;
                next[i] = i + 1 < n ? i + 1 : -1;
            }
            for (var i = 0; i < n; i++) pair[i] = next[i] >= 0 ? PairValue(ids[i], ids[next[i]]) : long.MaxValue;

            var count = n <= LinearScanLimit ? MergeByScan(ids, prev, next, pair, n) : MergeByQueue(ids, prev, next, pair, n);

            var result = new int[count];
            var k = 0;
            for (var i = 0; i >= 0; i = next[i]) result[k++] = ids[i];
            return result;
        }
        finally
        {
            ArrayPool<int>.Shared.Return(rented);
            ArrayPool<long>.Shared.Return(rentedPairs);
        }
    }

    private const int LinearScanLimit = 48;

    /// <summary>Short words: find the lowest (rank, position) pair by scanning; returns the number of symbols left.</summary>
    private int MergeByScan(Span<int> ids, Span<int> prev, Span<int> next, Span<long> pair, int n)
    {
        var count = n;
        while (count > 1)
        {
            var best = -1;
            var bestValue = long.MaxValue;
            for (var i = 0; i >= 0; i = next[i])
                if (pair[i] < bestValue) { bestValue = pair[i]; best = i; }
            if (best < 0) break;
            MergeAt(ids, prev, next, pair, best, (int)(bestValue & 0xFFFFFFFF));
            count--;
        }
        return count;
    }

    /// <summary>
    /// Long words: a binary min-heap of (rank, position) keys, stale entries skipped, as tokenizers does. The heap holds
    /// plain longs (rank in the high half, position in the low half) in a pooled array, so a long word allocates nothing.
    /// </summary>
    private int MergeByQueue(Span<int> ids, Span<int> prev, Span<int> next, Span<long> pair, int n)
    {
        // Each merge pushes at most two entries; n initial entries plus 2 per merge bound the heap at 3n.
        var heapArray = ArrayPool<long>.Shared.Rent(3 * n + 1);
        var removedArray = ArrayPool<bool>.Shared.Rent(n);
        try
        {
            var heap = new LongMinHeap(heapArray);
            var removed = removedArray.AsSpan(0, n);
            removed.Clear();
            for (var i = 0; i < n; i++)
                if (pair[i] != long.MaxValue) heap.Push(Priority(pair[i], i));
            var count = n;
            while (heap.Count > 0)
            {
                var priority = heap.Pop();
                var pos = (int)(uint)priority;
                if (removed[pos] || next[pos] < 0) continue;
                var rank = priority >> 32;
                var current = pair[pos];
                if (current == long.MaxValue || current >> 32 != rank) continue; // stale: the pair at pos has changed
                removed[next[pos]] = true;
                MergeAt(ids, prev, next, pair, pos, (int)(current & 0xFFFFFFFF));
                count--;
                if (pair[pos] != long.MaxValue) heap.Push(Priority(pair[pos], pos));
                var before = prev[pos];
                if (before >= 0 && pair[before] != long.MaxValue) heap.Push(Priority(pair[before], before));
            }
            return count;
        }
        finally
        {
            ArrayPool<long>.Shared.Return(heapArray);
            ArrayPool<bool>.Shared.Return(removedArray);
        }
    }

    /// <summary>A binary min-heap of longs over a caller-owned array.</summary>
    private ref struct LongMinHeap(long[] items)
    {
        private readonly long[] _items = items;
        public int Count { get; private set; }

        public void Push(long value)
        {
            var i = Count++;
            while (i > 0)
            {
                var parent = (i - 1) >> 1;
                if (_items[parent] <= value) break;
                _items[i] = _items[parent];
                i = parent;
            }
            _items[i] = value;
        }

        public long Pop()
        {
            var top = _items[0];
            var last = _items[--Count];
            var i = 0;
            while (true)
            {
                var child = 2 * i + 1;
                if (child >= Count) break;
                if (child + 1 < Count && _items[child + 1] < _items[child]) child++;
                if (_items[child] >= last) break;
                _items[i] = _items[child];
                i = child;
            }
            if (Count > 0) _items[i] = last;
            return top;
        }
    }

    private static long Priority(long pairValue, int pos) => (pairValue >> 32 << 32) | (uint)pos;

    /// <summary>Merges the symbol at <paramref name="pos"/> with the next one into <paramref name="merged"/>.</summary>
    private void MergeAt(Span<int> ids, Span<int> prev, Span<int> next, Span<long> pair, int pos, int merged)
    {
        var j = next[pos];
        ids[pos] = merged;
        var after = next[j];
        next[pos] = after;
        if (after >= 0) prev[after] = pos;
        pair[pos] = after >= 0 ? PairValue(ids[pos], ids[after]) : long.MaxValue;
        var before = prev[pos];
        if (before >= 0) pair[before] = PairValue(ids[before], ids[pos]);
    }

    private long PairValue(int left, int right) => _merges!.Get(Key(left, right));

    /// <summary>Appends ids into a fixed span (sized by the caller for the worst case).</summary>
    private ref struct SymbolBuffer(Span<int> items)
    {
        private readonly Span<int> _items = items;
        public int Count { get; private set; }
        public void Add(int id) => _items[Count++] = id;
    }

    private void AddInitialSymbols(ReadOnlySpan<char> word, ref SymbolBuffer symbols)
    {
        int unkId = -1, pendingUnk = 0; // pendingUnk: 1 when an unknown token waits to be added
        Span<char> buffer = stackalloc char[64];
        var i = 0;
        while (i < word.Length)
        {
            var len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var end = i + len;
            var isFirst = i == 0;
            var isLast = end >= word.Length;
            int id;
            bool found;
            if (len == 1 && _prefix == null && _suffix == null)
            {
                id = _charIds[word[i]];
                found = id >= 0;
            }
            else
            {
                var piece = word.Slice(i, len);
                var prefix = !isFirst && _prefix != null ? _prefix : "";
                var suffix = isLast && _suffix != null ? _suffix : "";
                var total = prefix.Length + len + suffix.Length;
                var s = total <= buffer.Length ? buffer[..total] : new char[total];
                prefix.AsSpan().CopyTo(s);
                piece.CopyTo(s[prefix.Length..]);
                suffix.AsSpan().CopyTo(s[(prefix.Length + len)..]);
                found = _vocabLookup.TryGetValue(s, out id);
            }

            if (found)
            {
                if (pendingUnk != 0) { symbols.Add(unkId); pendingUnk = 0; }
                symbols.Add(id);
            }
            else
            {
                if (ByteFallback && TryAddBytes(word.Slice(i, len), ref symbols))
                {
                    i = end;
                    continue;
                }
                if (_unkId is { } unk)
                {
                    if (pendingUnk != 0 && !_fuseUnk) symbols.Add(unkId);
                    unkId = unk;
                    pendingUnk = 1;
                }
            }
            i = end;
        }
        if (pendingUnk != 0) symbols.Add(unkId);
    }

    private bool TryAddBytes(ReadOnlySpan<char> piece, ref SymbolBuffer symbols)
    {
        Span<byte> bytes = stackalloc byte[8];
        var count = Encoding.UTF8.GetBytes(piece, bytes);
        Span<int> ids = stackalloc int[8];
        for (var b = 0; b < count; b++)
        {
            if (_byteIds != null) ids[b] = _byteIds[bytes[b]];
            else ids[b] = _vocab.TryGetValue($"<0x{bytes[b]:X2}>", out var id) ? id : -1;
            if (ids[b] < 0) return false;
        }
        for (var b = 0; b < count; b++) symbols.Add(ids[b]);
        return true;
    }
}

/// <summary>The settings of a BPE model in tokenizer.json besides its vocabulary and merges.</summary>
internal sealed record BpeOptions(string? UnkToken, bool FuseUnk, bool ByteFallback, bool IgnoreMerges, string? ContinuingSubwordPrefix, string? EndOfWordSuffix);
