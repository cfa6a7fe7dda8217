using System.Collections;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;

namespace Oml.Fingerprinting;

/// <summary>
/// An immutable array with value equality, so records holding token ids, responses or fingerprints compare by
/// content. <c>default</c> behaves as the empty array.
/// </summary>
[CollectionBuilder(typeof(EquatableArray), nameof(EquatableArray.Create))]
public readonly struct EquatableArray<T> : IEquatable<EquatableArray<T>>, IReadOnlyList<T>
{
    private readonly ImmutableArray<T> _items;

    public EquatableArray(ImmutableArray<T> items) => _items = items.IsDefault ? ImmutableArray<T>.Empty : items;

    public EquatableArray(IEnumerable<T> items) => _items = [.. items];

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1000", Justification = "the empty value of the type, as ImmutableArray<T>.Empty")]
    public static EquatableArray<T> Empty => new(ImmutableArray<T>.Empty);

    public ImmutableArray<T> AsImmutableArray() => _items.IsDefault ? ImmutableArray<T>.Empty : _items;

    public ReadOnlySpan<T> AsSpan() => AsImmutableArray().AsSpan();

    public int Count => _items.IsDefault ? 0 : _items.Length;

    public T this[int index] => AsImmutableArray()[index];

    public bool Equals(EquatableArray<T> other) => AsSpanEquals(AsImmutableArray(), other.AsImmutableArray());

    private static bool AsSpanEquals(ImmutableArray<T> a, ImmutableArray<T> b)
    {
        if (a.Length != b.Length) return false;
        var cmp = EqualityComparer<T>.Default;
        for (int i = 0; i < a.Length; i++)
            if (!cmp.Equals(a[i], b[i])) return false;
        return true;
    }

    public override bool Equals(object? obj) => obj is EquatableArray<T> other && Equals(other);

    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var item in AsImmutableArray()) h.Add(item);
        return h.ToHashCode();
    }

    public static bool operator ==(EquatableArray<T> left, EquatableArray<T> right) => left.Equals(right);
    public static bool operator !=(EquatableArray<T> left, EquatableArray<T> right) => !left.Equals(right);

    public static implicit operator EquatableArray<T>(ImmutableArray<T> items) => new(items);
    public static implicit operator EquatableArray<T>(T[] items) => new(ImmutableArray.Create(items));

    public ImmutableArray<T>.Enumerator GetEnumerator() => AsImmutableArray().GetEnumerator();
    IEnumerator<T> IEnumerable<T>.GetEnumerator() => ((IEnumerable<T>)AsImmutableArray()).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => ((IEnumerable)AsImmutableArray()).GetEnumerator();

    public override string ToString() => $"[{string.Join(", ", AsImmutableArray())}]";
}

public static class EquatableArray
{
    public static EquatableArray<T> Create<T>(ReadOnlySpan<T> items) => new(ImmutableArray.Create(items));
}

/// <summary>
/// Strategy parameters: an immutable string → string map, ordered by key (ordinal) and compared by value.
/// Numbers are stored in their invariant-culture text form.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1710", Justification = "a strategy's parameters; the name is part of the fingerprint-set API")]
public sealed class ParameterMap : IReadOnlyDictionary<string, string>, IEquatable<ParameterMap>
{
    private readonly ImmutableSortedDictionary<string, string> _map;

    public static ParameterMap Empty { get; } = new([]);

    public ParameterMap(IEnumerable<KeyValuePair<string, string>> items)
    {
        var b = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in items)
        {
            ArgumentNullException.ThrowIfNull(k);
            ArgumentNullException.ThrowIfNull(v);
            if (!b.TryAdd(k, v)) throw new ArgumentException($"duplicate parameter '{k}'", nameof(items));
        }
        _map = b.ToImmutable();
    }

    public static ParameterMap Of(params (string Key, string Value)[] items) =>
        new(items.Select(p => new KeyValuePair<string, string>(p.Key, p.Value)));

    public string this[string key] => _map[key];
    public IEnumerable<string> Keys => _map.Keys;
    public IEnumerable<string> Values => _map.Values;
    public int Count => _map.Count;
    public bool ContainsKey(string key) => _map.ContainsKey(key);
    public bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out string value) => _map.TryGetValue(key, out value);
    public IEnumerator<KeyValuePair<string, string>> GetEnumerator() => _map.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public bool Equals(ParameterMap? other) =>
        other is not null && other.Count == Count && _map.All(kv => other._map.TryGetValue(kv.Key, out var v) && v == kv.Value);

    public override bool Equals(object? obj) => Equals(obj as ParameterMap);

    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var (k, v) in _map) { h.Add(k); h.Add(v); }
        return h.ToHashCode();
    }

    public override string ToString() => "{" + string.Join(", ", _map.Select(kv => $"{kv.Key}={kv.Value}")) + "}";
}
