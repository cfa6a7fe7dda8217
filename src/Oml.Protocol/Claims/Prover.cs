using System.Security.Cryptography;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Verification;
using Oml.Protocol.Access;
using Oml.Protocol.Core;

namespace Oml.Protocol.Claims;

/// <summary>
/// A claim ready to commit and reveal: the evidence JSON (the RevealClaim attachment) and a secret 32-byte salt.
/// <see cref="Commitment"/> (published first with the bond) hides the host and evidence until the reveal.
/// </summary>
public sealed record ClaimTicket(string ModelId, string Host, string EvidenceJson, string Salt)
{
    public string EvidenceHash => ClaimEvidence.Hash(EvidenceJson);
    public string Commitment => ClaimEvidence.Commitment(ModelId, Host, EvidenceHash, Salt);

    /// <summary>The ticket as JSON. It holds the secret salt: keep it private until the reveal.</summary>
    public string ToJson() => new System.Text.Json.Nodes.JsonObject
    {
        ["modelId"] = ModelId, ["host"] = Host, ["salt"] = Salt, ["commitment"] = Commitment, ["evidence"] = EvidenceJson,
    }.ToJsonString();

    public static ClaimTicket FromJson(string json)
    {
        var root = Json.Parse(json, ProtocolErrorCode.InvalidRequest);
        const ProtocolErrorCode c = ProtocolErrorCode.InvalidRequest;
        string salt = Json.Text(root, "salt", c);
        if (!Hex.TryDecode(salt, out var s) || s.Length != 32) throw new ProtocolException(c, "the ticket's salt must be 32 bytes of 0x hex");
        if (!Hex.TryAddress(Json.Text(root, "host", c), out var host)) throw new ProtocolException(c, "the ticket's host is not an address");
        var ticket = new ClaimTicket(Json.Text(root, "modelId", c), host, Json.Text(root, "evidence", c), Hex.Of(s));
        if (root["commitment"] is not null && Json.Text(root, "commitment", c) != ticket.Commitment)
            throw new ProtocolException(ProtocolErrorCode.CommitmentMismatch, "the ticket's stored commitment does not match its contents");
        return ticket;
    }

    public static ClaimTicket Create(ClaimEvidence evidence, byte[]? salt = null)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        salt ??= RandomNumberGenerator.GetBytes(32);
        if (salt.Length != 32) throw new ArgumentException("the salt must be 32 bytes", nameof(salt));
        return new ClaimTicket(evidence.ModelId, Hex.Address(evidence.Host), evidence.ToJson(), Hex.Of(salt));
    }
}

/// <summary>What <see cref="Prover.AdvanceClaim"/> did: the claim as it now stands and the steps taken ("commit", "reveal", "settle").</summary>
public sealed record ClaimProgress(Claim Claim, IReadOnlyList<string> Steps);

/// <summary>A fingerprint the host answered with its response, without a settled permit.</summary>
public sealed record AuditHit(Fingerprint Fingerprint, string Answer, SignedReceipt Receipt);

/// <summary>What an audit found: the keys asked, the hits (claimable) and the indices that did not answer as embedded.</summary>
public sealed record AuditReport(string ModelId, string Host, int Queried, IReadOnlyList<AuditHit> Hits, IReadOnlyList<int> Misses)
{
    public bool Caught => Hits.Count > 0;
}

/// <summary>
/// The prover's role: audit a host by asking the unrevealed keys of its copy's fingerprint subset (from the owner,
/// or rebuilt with <see cref="Distribution.Omlizer.SubsetFor"/>) without a permit, keep the answers that match and
/// come with a valid receipt, and turn them into a claim.
/// </summary>
public static class Prover
{
    public static async Task<AuditReport> AuditAsync(ProtocolState state, string modelId, string host, FingerprintSet hostSubset,
        IHostEndpoint endpoint, int maxQueries = int.MaxValue, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hostSubset);
        ArgumentNullException.ThrowIfNull(endpoint);
        host = Hex.Address(host);
        var hits = new List<AuditHit>();
        var misses = new List<int>();
        int queried = 0;
        foreach (var f in hostSubset.Fingerprints)
        {
            if (queried >= maxQueries) break;
            if (state.IsSpent(modelId, ClaimEvidence.FingerprintId(f))) continue;
            ct.ThrowIfCancellationRequested();
            queried++;
            HostAnswer answer;
            try { answer = await endpoint.AskAsync(f.Key, null, ct).ConfigureAwait(false); }
            catch (QueryRefusedException) { misses.Add(f.Index); continue; }
            var r = answer.Receipt.Receipt;
            bool receiptOk = answer.Receipt.Verify(state.Domain) && r.Host == host && r.ModelId == modelId
                && r.QueryHash == Hex.KeccakText(f.Key) && r.ResponseHash == Hex.KeccakText(answer.Text)
                && !(r.HasPermit && state.SettledPermits.ContainsKey(r.PermitHash));
            if (receiptOk && ResponseMatcher.IsTextMatchAny(f.Responses.Select(x => x.Text), answer.Text))
                hits.Add(new AuditHit(f, answer.Text, answer.Receipt));
            else misses.Add(f.Index);
        }
        return new AuditReport(modelId, host, queried, hits, misses);
    }

    /// <summary>Builds the claim from up to <paramref name="maxItems"/> hits (each reveals, and spends, one fingerprint).</summary>
    public static ClaimTicket PrepareClaim(AuditReport report, FingerprintSet hostSubset, int maxItems = 1, byte[]? salt = null)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(hostSubset);
        if (!report.Caught) throw new InvalidOperationException("the audit found nothing to claim");
        ArgumentOutOfRangeException.ThrowIfLessThan(maxItems, 1);
        var tree = hostSubset.BuildMerkleTree();
        var items = report.Hits.Take(maxItems)
            .Select(h => new ClaimEvidenceItem(RevealedFingerprint.From(h.Fingerprint, tree.Proof(h.Fingerprint.Index)), h.Answer, h.Receipt))
            .ToList();
        return ClaimTicket.Create(new ClaimEvidence(report.ModelId, report.Host, items), salt);
    }

    /// <summary>
    /// Takes the claim of <paramref name="ticket"/> as far as it can go, from wherever an earlier run stopped (the
    /// ticket, written before anything was submitted, is the only thing the prover needs to keep): commits it when its
    /// commitment is not on the ledger; reveals it when it is committed and the reveal window is open (calling
    /// <paramref name="wait"/> until the ledger is one second past the commitment); settles it when the window has
    /// closed unrevealed (the bond comes back to the prover). A claim already revealed or closed is left as it is.
    /// </summary>
    public static ClaimProgress AdvanceClaim(ProtocolEngine engine, Crypto.PrivateKey prover, ClaimTicket ticket, long bond, Action wait)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(wait);
        using var backend = new LedgerBackend(engine, "ledger", ownsLedger: false);
        return AdvanceClaimAsync(backend, prover, ticket, bond, _ => { wait(); return Task.CompletedTask; }).GetAwaiter().GetResult();
    }

    /// <summary>
    /// <see cref="AdvanceClaim(ProtocolEngine, Crypto.PrivateKey, ClaimTicket, long, Action)"/> on any backend:
    /// <paramref name="wait"/> is awaited while protocol time has not yet passed the commitment (on a chain, the next
    /// block must be later than the commit's).
    /// </summary>
    public static async Task<ClaimProgress> AdvanceClaimAsync(IProtocolBackend backend, Crypto.PrivateKey prover, ClaimTicket ticket, long bond,
        Func<CancellationToken, Task> wait, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(prover);
        ArgumentNullException.ThrowIfNull(ticket);
        ArgumentNullException.ThrowIfNull(wait);
        var steps = new List<string>();
        await backend.RefreshAsync(cancellationToken).ConfigureAwait(false);
        string me = Hex.Of(prover.Address);
        var claim = backend.State.ClaimByCommitment(await backend.ClaimCommitmentAsync(ticket, cancellationToken).ConfigureAwait(false));
        if (claim is null)
        {
            var committed = await backend.CommitClaimAsync(prover, ticket, bond, cancellationToken).ConfigureAwait(false);
            claim = backend.State.Claims[(int)committed.Id!.Value];
            steps.Add("commit");
        }
        if (claim.Prover != me)
            throw new ProtocolException(ProtocolErrorCode.DuplicateCommitment, $"the ticket's commitment was committed by {claim.Prover} (claim {claim.Id}), not by {me}");
        if (claim.Status == ClaimStatus.Committed)
        {
            long closes = claim.CommittedAt + backend.State.Parameters.RevealWindowSeconds;
            if (backend.Now <= closes)
            {
                while (backend.Now < claim.CommittedAt + 1)
                {
                    await wait(cancellationToken).ConfigureAwait(false);
                    await backend.RefreshAsync(cancellationToken).ConfigureAwait(false);
                }
                await backend.RevealClaimAsync(prover, claim.Id, ticket, cancellationToken).ConfigureAwait(false);
                steps.Add("reveal");
            }
            else
            {
                await backend.SettleAsync(prover, claim.Id, cancellationToken).ConfigureAwait(false);
                steps.Add("settle");
            }
        }
        await backend.RefreshAsync(cancellationToken).ConfigureAwait(false);
        return new ClaimProgress(backend.State.Claims[(int)claim.Id], steps);
    }
}
