namespace Oml.Models.IO;

/// <summary>
/// A counting semaphore over bytes: <see cref="Take"/> waits until the bytes held by the other takers and the new ones
/// fit the capacity, except that a taker alone is always admitted (an item larger than the capacity then runs by itself
/// rather than never).
/// </summary>
public sealed class ByteBudget
{
    private readonly object _gate = new();
    private long _held;

    public ByteBudget(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
    }

    public long Capacity { get; }

    /// <summary>Bytes taken and not yet given back.</summary>
    public long Held { get { lock (_gate) return _held; } }

    public void Take(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        lock (_gate)
        {
            while (_held > 0 && _held + bytes > Capacity) Monitor.Wait(_gate);
            _held += bytes;
        }
    }

    public void Give(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        lock (_gate)
        {
            if (bytes > _held) throw new InvalidOperationException($"gave back {bytes} bytes while {_held} are held");
            _held -= bytes;
            Monitor.PulseAll(_gate);
        }
    }
}
