namespace Oml.Engine;

/// <summary>
/// Disposes, when itself disposed, every tensor created on this thread while it was the innermost scope,
/// except those moved out (<see cref="Tensor.MoveToOuterScope"/>) or detached (<see cref="Tensor.DetachFromScope"/>).
/// Wrap each step of a loop in one so that temporaries are freed deterministically:
/// <code>
/// using (Torch.NewScope()) { var loss = Forward(x); loss.Backward(); optimizer.Step(); }
/// </code>
/// </summary>
public sealed class DisposeScope : IDisposable
{
    [ThreadStatic] private static DisposeScope? _current;

    private readonly DisposeScope? _outer;
    private readonly List<Tensor> _tensors = new();
    private bool _disposed;
    private int _compactAt = 1024;

    internal DisposeScope()
    {
        _outer = _current;
        _current = this;
    }

    /// <summary>The innermost open scope of this thread, or null.</summary>
    public static DisposeScope? Current => _current;

    /// <summary>Number of tensors this scope would dispose now.</summary>
    public int Count
    {
        get
        {
            int n = 0;
            foreach (var t in _tensors) if (ReferenceEquals(t.OwnerScope, this) && !t.IsDisposed) n++;
            return n;
        }
    }

    internal void Register(Tensor t)
    {
        t.OwnerScope = this;
        _tensors.Add(t);
        // Tensors disposed early or moved out stay listed until the scope ends; drop them now and then so that a
        // long loop inside one scope, disposing as it goes, holds no growing list.
        if (_tensors.Count >= _compactAt)
        {
            _tensors.RemoveAll(x => !ReferenceEquals(x.OwnerScope, this) || x.IsDisposed);
            _compactAt = Math.Max(1024, 2 * _tensors.Count);
        }
    }

    internal void MoveOut(Tensor t)
    {
        if (!ReferenceEquals(t.OwnerScope, this)) return;
        if (_outer is { _disposed: false }) _outer.Register(t);
        else t.OwnerScope = null;
    }

    internal void Forget(Tensor t)
    {
        if (ReferenceEquals(t.OwnerScope, this)) t.OwnerScope = null;
    }


    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _tensors)
            if (ReferenceEquals(t.OwnerScope, this))
            {
                t.OwnerScope = null;
                t.Dispose();
            }
        _tensors.Clear();
        if (ReferenceEquals(_current, this)) _current = _outer;
    }
}
