using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Protocol.Tracing;

/// <summary>
/// The fingerprint allocation of a model's pool between its hosts, named by a spec: <c>random:K</c> (K pool
/// fingerprints per copy, <see cref="RandomAllocation"/>) or <c>tardos:CUTOFF</c> (<see cref="TardosAllocation"/>).
/// The spec is recorded on the ledger with each delivery; the secret seed is derived from the owner's secret and the
/// model id (<see cref="Secret"/>), so the owner (or a prover the owner trusts with the pool) can rebuild any host's
/// subset to audit and trace.
/// </summary>
public static class AllocationSpec
{
    /// <summary>The allocation seed of <paramref name="modelId"/>: SHA-256("oml-allocation/v1" ‖ 0 ‖ owner secret ‖ 0 ‖ model id).</summary>
    public static byte[] Secret(ReadOnlySpan<byte> ownerSecret, string modelId)
    {
        ArgumentNullException.ThrowIfNull(modelId);
        return SHA256.HashData([.. Encoding.UTF8.GetBytes("oml-allocation/v1"), 0, .. ownerSecret, 0, .. Encoding.UTF8.GetBytes(modelId)]);
    }

    /// <summary>The allocation named by <paramref name="spec"/> over a pool of <paramref name="poolSize"/>; an <see cref="ArgumentException"/> when malformed.</summary>
    public static IFingerprintAllocation Parse(string spec, ReadOnlySpan<byte> secret, int poolSize)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parts = spec.Split(':', 2);
        if (parts.Length == 2 && parts[0] == "random" && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int k))
        {
            if (k < 1 || k > poolSize) throw new ArgumentException($"allocation {spec}: K must be in [1, {poolSize}] (the pool size)");
            return new RandomAllocation(secret, poolSize, k);
        }
        if (parts.Length == 2 && parts[0] == "tardos" && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double cutoff))
        {
            if (!(cutoff > 0 && cutoff < 0.5)) throw new ArgumentException($"allocation {spec}: the cutoff must be in (0, 0.5)");
            return new TardosAllocation(secret, poolSize, cutoff);
        }
        throw new ArgumentException($"allocation '{spec}' is neither random:K nor tardos:CUTOFF");
    }

    /// <summary>The accuser that matches <paramref name="allocation"/>'s scheme.</summary>
    public static IAccuser Accuser(IFingerprintAllocation allocation, TardosScore score = TardosAccuser.DefaultScore) => allocation switch
    {
        RandomAllocation r => new OverlapAccuser(r),
        TardosAllocation t => new TardosAccuser(t, score: score),
        _ => throw new InvalidDataException($"no accuser for allocation scheme {allocation.Scheme}"),
    };
}
