namespace Oml.Explorer.State;

/// <summary>
/// Where the explorer reads the protocol's state: a current immutable snapshot and a way to wait for the next one.
/// <see cref="LedgerStateSource"/> implements it over the embedded ledger (replay, then polling the head); a chain
/// backend (contract reads plus event logs) implements the same two members. Read-only: nothing here can append.
/// </summary>
public interface IProtocolStateSource : IAsyncDisposable
{
    /// <summary>The latest snapshot (never null once the source is started).</summary>
    ExplorerSnapshot Current { get; }

    /// <summary>
    /// Completes with the current snapshot as soon as its height differs from <paramref name="knownHeight"/> (at once
    /// if it already does); cancelled through <paramref name="cancellationToken"/>.
    /// </summary>
    Task<ExplorerSnapshot> WaitForChangeAsync(long knownHeight, CancellationToken cancellationToken);

    /// <summary>The last error met while refreshing (the snapshot then stays at the last good state), or null.</summary>
    string? LastError { get; }
}
