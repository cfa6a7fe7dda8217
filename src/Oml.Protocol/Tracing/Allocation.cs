namespace Oml.Protocol.Tracing;

/// <summary>
/// How a model's pool of fingerprints is shared out between licensed copies. Copy <c>j</c> holds the pool
/// fingerprints <see cref="IndicesFor"/>(j); a leaked copy is traced by which pool keys it still answers.
/// Implementations are deterministic functions of their parameters and a secret seed, so the owner can rebuild them.
/// </summary>
public interface IFingerprintAllocation
{
    string Scheme { get; }
    int PoolSize { get; }
    /// <summary>The sorted pool indices embedded in the copy of host number <paramref name="hostOrdinal"/> (0, 1, ...).</summary>
    IReadOnlyList<int> IndicesFor(int hostOrdinal);
}

/// <summary>One host's accusation score against an observed copy.</summary>
public sealed record Accusation(int HostOrdinal, double Score, bool Accused);

/// <summary>Scores every host against the fingerprints observed in a suspect copy.</summary>
public interface IAccuser
{
    /// <summary>
    /// <paramref name="observed"/>[i] is true when pool fingerprint i answered with its response, false when it did
    /// not, and null when it was not queried. The threshold keeps the chance of accusing any one innocent host at most
    /// <paramref name="innocentBound"/>.
    /// </summary>
    IReadOnlyList<Accusation> Accuse(IReadOnlyList<bool?> observed, int hostCount, double innocentBound);
}
