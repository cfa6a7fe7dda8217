using Oml.Engine;

namespace Oml.Models;

/// <summary>
/// Key/value cache for incremental decoding: per layer, preallocated [B, kvHeads, capacity, headDim] buffers filled
/// left to right. <see cref="Length"/> is the number of positions already stored.
/// </summary>
public sealed class KVCache : IDisposable
{
    private readonly Tensor[] _keys, _values;

    public KVCache(ModelConfig config, long batch, long capacity, DType dtype, Device device)
    {
        Capacity = capacity;
        _keys = new Tensor[config.NumLayers];
        _values = new Tensor[config.NumLayers];
        for (int i = 0; i < config.NumLayers; i++)
        {
            _keys[i] = Torch.Zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device).DetachFromScope();
            _values[i] = Torch.Zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device).DetachFromScope();
        }
    }

    /// <summary>A cache over given per-layer buffers [B, kvHeads, capacity, headDim] holding <paramref name="length"/>
    /// positions; the cache takes ownership of the tensors.</summary>
    internal KVCache(Tensor[] keys, Tensor[] values, long length)
    {
        _keys = keys;
        _values = values;
        Capacity = keys[0].Size(2);
        Length = length;
    }

    public long Capacity { get; }
    public long Length { get; private set; }

    /// <summary>The key buffer of one layer, [B, kvHeads, capacity, headDim] (owned by the cache).</summary>
    internal Tensor KeyBuffer(int layer) => _keys[layer];

    /// <summary>The value buffer of one layer, [B, kvHeads, capacity, headDim] (owned by the cache).</summary>
    internal Tensor ValueBuffer(int layer) => _values[layer];

    internal int Layers => _keys.Length;

    /// <summary>Frees one layer's buffers early (a cache being copied into another, layer by layer); the cache must not be
    /// used afterwards but to be disposed.</summary>
    internal void ReleaseLayer(int layer)
    {
        _keys[layer].Dispose();
        _values[layer].Dispose();
    }

    /// <summary>Stores this step's keys and values for one layer and returns all keys and values so far (views).</summary>
    internal (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        long t = k.Size(2);
        if (Length + t > Capacity) throw new InvalidOperationException($"KV cache full: {Length} + {t} positions exceed its capacity of {Capacity}");
        using (Torch.NoGrad())
        {
            using var ks = _keys[layer].Narrow(2, Length, t);
            using var vs = _values[layer].Narrow(2, Length, t);
            ks.CopyFrom(k);
            vs.CopyFrom(v);
        }
        return (_keys[layer].Narrow(2, 0, Length + t), _values[layer].Narrow(2, 0, Length + t));
    }

    /// <summary>
    /// A new cache whose row b holds a copy of this cache's row <paramref name="rows"/>[b] (its stored positions), with
    /// room for <paramref name="extra"/> more: many continuations of a few shared prefixes, each prefix computed once.
    /// <paramref name="rows"/> is an int64 tensor [B] on the cache's device.
    /// </summary>
    public KVCache Gather(Tensor rows, long extra)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(extra);
        if (rows.Dim != 1 || rows.Size(0) < 1) throw new ArgumentException("the row index must be a non-empty vector", nameof(rows));
        long batch = rows.Size(0);
        var keys = new Tensor[_keys.Length];
        var values = new Tensor[_values.Length];
        using (Torch.NoGrad())
            for (int i = 0; i < _keys.Length; i++)
                (keys[i], values[i]) = (Copy(_keys[i]), Copy(_values[i]));
        return new KVCache(keys, values, Length);

        Tensor Copy(Tensor source)
        {
            using var scope = Torch.NewScope();
            long heads = source.Size(1), dim = source.Size(3);
            var target = Torch.Empty([batch, heads, Length + extra, dim], source.DType, source.Device);
            if (Length > 0) target.Narrow(2, 0, Length).CopyFrom(source.Narrow(2, 0, Length).IndexSelect(0, rows));
            return target.DetachFromScope();
        }
    }

    /// <summary>Rows of the buffers (the batch size they were made for).</summary>
    internal long Batch => _keys[0].Size(0);

    /// <summary>A cache over rows [<paramref name="start"/>, start + <paramref name="count"/>) of this one's buffers
    /// (views: what it appends is stored here), holding <paramref name="length"/> positions. Disposing it frees only the
    /// views; this cache's <see cref="Length"/> does not follow its appends.</summary>
    internal KVCache Rows(long start, long count, long length)
    {
        var keys = new Tensor[_keys.Length];
        var values = new Tensor[_values.Length];
        for (int i = 0; i < _keys.Length; i++)
        {
            keys[i] = _keys[i].Narrow(0, start, count).DetachFromScope();
            values[i] = _values[i].Narrow(0, start, count).DetachFromScope();
        }
        return new KVCache(keys, values, length);
    }

    /// <summary>Marks <paramref name="t"/> more positions as stored (after every layer has appended them).</summary>
    internal void Advance(long t) => Length += t;

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
