using Oml.Fingerprinting;
using Oml.Protocol.Core;
using Oml.Protocol.Tracing;

namespace Oml.Protocol.Distribution;

/// <summary>
/// One host's copy as the owner built it: the pool indices embedded, the host's subset fingerprint set (pool
/// fingerprints re-indexed 0..k-1 in pool order, salts kept), its salted Merkle commitment, and the copy's weights
/// digest. Only <see cref="Commitment"/>'s root and count and <see cref="CopyDigest"/> go on the ledger; the indices
/// and keys stay with the owner.
/// </summary>
public sealed record HostCopy(string ModelId, string Host, int HostOrdinal, IReadOnlyList<int> PoolIndices, FingerprintSet Subset,
    Commitment Commitment, string CopyDigest, string AllocationScheme);

/// <summary>
/// The owner's tool for licensing copies: shares the model's fingerprint pool out between hosts with an
/// <see cref="IFingerprintAllocation"/> (host ordinal = order of licences for the model), builds each host's subset
/// and commitment, and calls back into the embedding (fine-tuning) that produces the copy. The library does not
/// train; the callback does.
/// </summary>
public sealed class Omlizer
{
    public Omlizer(FingerprintSet pool, IFingerprintAllocation allocation)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(allocation);
        if (allocation.PoolSize != pool.Count)
            throw new ArgumentException($"the allocation is for a pool of {allocation.PoolSize}, the set has {pool.Count} fingerprints");
        Pool = pool;
        Allocation = allocation;
    }

    public FingerprintSet Pool { get; }
    public IFingerprintAllocation Allocation { get; }

    /// <summary>The subset of <paramref name="pool"/> at <paramref name="indices"/> (sorted, distinct), re-indexed from 0, salts kept.</summary>
    public static FingerprintSet Subset(FingerprintSet pool, IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.Count == 0) throw new ArgumentException("a copy needs at least one fingerprint", nameof(indices));
        for (int i = 0; i < indices.Count; i++)
        {
            if ((uint)indices[i] >= (uint)pool.Count) throw new ArgumentOutOfRangeException(nameof(indices), $"pool index {indices[i]} is outside the pool of {pool.Count}");
            if (i > 0 && indices[i] <= indices[i - 1]) throw new ArgumentException("indices must be sorted and distinct", nameof(indices));
        }
        var fingerprints = indices.Select((poolIndex, k) => pool[poolIndex] with { Index = k });
        return FingerprintSet.Create(pool.CreatedAt, pool.BaseModelDigest, pool.Tokenizer, pool.Strategy, fingerprints);
    }

    /// <summary>The subset for host ordinal <paramref name="hostOrdinal"/> (deterministic: provers and tracers rebuild it).</summary>
    public FingerprintSet SubsetFor(int hostOrdinal) => Subset(Pool, Allocation.IndicesFor(hostOrdinal));

    /// <summary>
    /// Builds host <paramref name="host"/>'s copy of <paramref name="modelId"/>: its ordinal is its licence's
    /// position in <paramref name="state"/>; <paramref name="embed"/> fine-tunes the subset into the weights and
    /// returns the copy's weights digest.
    /// </summary>
    public async Task<HostCopy> BuildCopyAsync(ProtocolState state, string modelId, string host,
        Func<FingerprintSet, CancellationToken, Task<string>> embed, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(embed);
        host = Hex.Address(host);
        var licence = state.LicenceOf(modelId, host) ?? throw new ProtocolException(ProtocolErrorCode.UnknownLicence, $"{host} holds no licence for '{modelId}'");
        var indices = Allocation.IndicesFor(licence.Ordinal);
        var subset = Subset(Pool, indices);
        string digest = await embed(subset, ct).ConfigureAwait(false);
        if (string.IsNullOrWhiteSpace(digest)) throw new InvalidOperationException("the embedding callback returned no weights digest");
        return new HostCopy(modelId, host, licence.Ordinal, [.. indices], subset, subset.Commit(), digest, Allocation.Scheme);
    }
}
