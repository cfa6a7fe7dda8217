namespace Oml.Explorer.State;

/// <summary>
/// What the explorer's state sources share: the current snapshot, a signal for the next one, and a poller that calls
/// <see cref="CatchUpAsync"/> every interval and keeps serving the last good snapshot (with <see cref="LastError"/>
/// set) when reading fails.
/// </summary>
public abstract class PollingStateSource : IProtocolStateSource
{
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private Task? _poller;
    private ExplorerSnapshot? _current;
    private TaskCompletionSource<ExplorerSnapshot> _next = NewSignal();
    private string? _lastError;

    public ExplorerSnapshot Current => Volatile.Read(ref _current) ?? throw new InvalidOperationException("the state source has not been started");

    public string? LastError => Volatile.Read(ref _lastError);

    public Task<ExplorerSnapshot> WaitForChangeAsync(long knownHeight, CancellationToken cancellationToken)
    {
        Task<ExplorerSnapshot> next;
        lock (_gate)
        {
            if (Current.Height != knownHeight) return Task.FromResult(Current);
            next = _next.Task;
        }
        return next.WaitAsync(cancellationToken);
    }

    /// <summary>Sets the first snapshot and, when <paramref name="pollInterval"/> is positive, starts polling.</summary>
    protected void Start(ExplorerSnapshot first, TimeSpan pollInterval)
    {
        ArgumentNullException.ThrowIfNull(first);
        Volatile.Write(ref _current, first);
        if (pollInterval > TimeSpan.Zero) _poller = Task.Run(() => PollAsync(pollInterval, _stop.Token));
    }

    /// <summary>Reads what is new; returns the new snapshot, or null when nothing changed.</summary>
    protected abstract Task<ExplorerSnapshot?> CatchUpAsync(CancellationToken cancellationToken);

    /// <summary>Whether a failed read is worth retrying at the next poll (the page then shows the error).</summary>
    protected abstract bool IsReadFailure(Exception e);

    /// <summary>Makes <paramref name="snapshot"/> current and wakes the waiters.</summary>
    protected void Publish(ExplorerSnapshot snapshot)
    {
        lock (_gate)
        {
            Volatile.Write(ref _current, snapshot);
            var done = _next;
            _next = NewSignal();
            done.TrySetResult(snapshot);
        }
    }

    /// <summary>Catches up now (the poller calls this); returns whether the state moved.</summary>
    public async Task<bool> RefreshAsync(CancellationToken cancellationToken = default)
    {
        var snapshot = await CatchUpAsync(cancellationToken).ConfigureAwait(false);
        if (snapshot is null) return false;
        Publish(snapshot);
        return true;
    }

    private async Task PollAsync(TimeSpan interval, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                try
                {
                    await RefreshAsync(ct).ConfigureAwait(false);
                    Volatile.Write(ref _lastError, null);
                }
                catch (Exception e) when (IsReadFailure(e))
                {
                    // Keep serving the last good snapshot; the page header shows the problem.
                    Volatile.Write(ref _lastError, e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    private static TaskCompletionSource<ExplorerSnapshot> NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Releases what the source holds (after polling has stopped).</summary>
    protected abstract ValueTask DisposeCoreAsync();

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_poller is not null) await _poller.ConfigureAwait(false);
        _stop.Dispose();
        _next.TrySetCanceled();
        await DisposeCoreAsync().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }
}
