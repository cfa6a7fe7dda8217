using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Oml.Protocol.Tracing;

namespace Oml.Cli.Protocol;

/// <summary>
/// The fingerprint allocation of a model's pool between its hosts, as the CLI names it: <c>random:K</c> (K pool
/// fingerprints per copy, <see cref="RandomAllocation"/>) or <c>tardos:CUTOFF</c> (<see cref="TardosAllocation"/>).
/// The spec is recorded on the ledger with each delivery; the secret seed is derived from the owner's secret and the
/// model id, so the owner (or a prover the owner trusts with the pool) can rebuild it to audit and trace.
/// </summary>
internal static class Allocations
{
    public static byte[] Secret(byte[] ownerSecret, string modelId) =>
        SHA256.HashData([.. Encoding.UTF8.GetBytes("oml-allocation/v1"), 0, .. ownerSecret, 0, .. Encoding.UTF8.GetBytes(modelId)]);

    public static IFingerprintAllocation Parse(string spec, ReadOnlySpan<byte> secret, int poolSize)
    {
        var parts = spec.Split(':', 2);
        if (parts.Length == 2 && parts[0] == "random" && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int k))
        {
            if (k < 1 || k > poolSize) throw new UsageException($"--allocation {spec}: K must be in [1, {poolSize}] (the pool size)");
            return new RandomAllocation(secret, poolSize, k);
        }
        if (parts.Length == 2 && parts[0] == "tardos" && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double cutoff))
        {
            if (!(cutoff > 0 && cutoff < 0.5)) throw new UsageException($"--allocation {spec}: the cutoff must be in (0, 0.5)");
            return new TardosAllocation(secret, poolSize, cutoff);
        }
        throw new UsageException($"allocation '{spec}' is neither random:K nor tardos:CUTOFF");
    }

    public static IAccuser Accuser(IFingerprintAllocation allocation) => allocation switch
    {
        RandomAllocation r => new OverlapAccuser(r),
        TardosAllocation t => new TardosAccuser(t),
        _ => throw new InvalidDataException($"no accuser for allocation scheme {allocation.Scheme}"),
    };
}
