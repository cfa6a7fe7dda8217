using System.Numerics;

namespace Oml.Models.Tokenizers;

/// <summary>
/// The merge table of a BPE model: (left id, right id) → (rank &lt;&lt; 32 | merged id), as an open-addressing hash table
/// with linear probing over one array of keys and one of values. Lookups are the inner loop of BPE, and this is
/// about twice as fast as a general-purpose dictionary for them.
/// </summary>
internal sealed class PairTable
{
    private const long Empty = -1; // no valid key is negative: ids are non-negative
    private readonly long[] _keys;
    private readonly long[] _values;
    private readonly int _mask;

    public PairTable(int count)
    {
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, count * 2));
        _keys = new long[capacity];
        _values = new long[capacity];
        Array.Fill(_keys, Empty);
        _mask = capacity - 1;
    }

    public int Count { get; private set; }

    private static int Hash(long key) => (int)((ulong)(key * unchecked((long)0x9E3779B97F4A7C15)) >> 32);

    /// <summary>Adds or replaces the value of a key.</summary>
    public void Set(long key, long value)
    {
        int i = Hash(key) & _mask;
        while (_keys[i] != Empty && _keys[i] != key) i = (i + 1) & _mask;
        if (_keys[i] == Empty)
        {
            if (Count + 1 > _keys.Length / 2) throw new InvalidOperationException("pair table full");
            _keys[i] = key;
            Count++;
        }
        _values[i] = value;
    }

    /// <summary>The value of a key, or long.MaxValue when absent.</summary>
    public long Get(long key)
    {
        int i = Hash(key) & _mask;
        while (true)
        {
            long k = _keys[i];
            if (k == key) return _values[i];
            if (k == Empty) return long.MaxValue;
            i = (i + 1) & _mask;
        }
    }
}
