using System.Numerics;
using Nethereum.ABI.FunctionEncoding.Attributes;
using Oml.Protocol.Core;

namespace Oml.Protocol.Chain;

/// <summary>The result of <see cref="ChainVerifier.VerifyAsync"/>: <see cref="FirstDifference"/> is null when the
/// projection agrees with every view checked.</summary>
public sealed record ChainVerification(bool Consistent, string? FirstDifference, int Checks, long Block);

/// <summary>OmlProtocol.Licence as returned by <c>licenceOf(bytes32, address)</c>.</summary>
[FunctionOutput]
public sealed class LicenceView : IFunctionOutputDTO
{
    [Parameter("bool", "exists", 1)] public bool Exists { get; set; }
    [Parameter("bool", "delivered", 2)] public bool Delivered { get; set; }
    [Parameter("bool", "acknowledged", 3)] public bool Acknowledged { get; set; }
    [Parameter("uint32", "ordinal", 4)] public uint Ordinal { get; set; }
    [Parameter("uint32", "fingerprintCount", 5)] public uint FingerprintCount { get; set; }
    [Parameter("uint256", "collateralPosted", 6)] public BigInteger CollateralPosted { get; set; }
    [Parameter("uint256", "collateralLocked", 7)] public BigInteger CollateralLocked { get; set; }
    [Parameter("bytes32", "indicesRoot", 8)] public byte[] IndicesRoot { get; set; } = new byte[32];
    [Parameter("bytes32", "copyDigest", 9)] public byte[] CopyDigest { get; set; } = new byte[32];
}

/// <summary>OmlClaims.Claim as returned by <c>claim(uint256)</c>.</summary>
[FunctionOutput]
public sealed class ClaimView : IFunctionOutputDTO
{
    [Parameter("address", "prover", 1)] public string Prover { get; set; } = "";
    [Parameter("uint64", "committedAt", 2)] public ulong CommittedAt { get; set; }
    [Parameter("uint8", "status", 3)] public byte Status { get; set; }
    [Parameter("address", "host", 4)] public string Host { get; set; } = "";
    [Parameter("uint64", "revealedAt", 5)] public ulong RevealedAt { get; set; }
    [Parameter("uint64", "rebutDeadline", 6)] public ulong RebutDeadline { get; set; }
    [Parameter("bytes32", "commitment", 7)] public byte[] Commitment { get; set; } = new byte[32];
    [Parameter("bytes32", "modelKey", 8)] public byte[] ModelKey { get; set; } = new byte[32];
    [Parameter("bytes32", "evidenceHash", 9)] public byte[] EvidenceHash { get; set; } = new byte[32];
    [Parameter("uint256", "bond", 10)] public BigInteger Bond { get; set; }
}

/// <summary>OmlGovernance.Proposal as returned by <c>proposal(uint256)</c> (a dynamic tuple, so wrapped).</summary>
[FunctionOutput]
public sealed class ProposalOutput : IFunctionOutputDTO
{
    [Parameter("tuple", "", 1)] public ProposalView Proposal { get; set; } = new();
}

/// <summary>OmlGovernance.Proposal.</summary>
public sealed class ProposalView
{
    [Parameter("address", "proposer", 1)] public string Proposer { get; set; } = "";
    [Parameter("uint48", "snapshotBlock", 2)] public ulong SnapshotBlock { get; set; }
    [Parameter("uint64", "votingEnds", 3)] public ulong VotingEnds { get; set; }
    [Parameter("bool", "executed", 4)] public bool Executed { get; set; }
    [Parameter("uint256", "totalStake", 5)] public BigInteger TotalStake { get; set; }
    [Parameter("uint256", "yes", 6)] public BigInteger Yes { get; set; }
    [Parameter("uint256", "no", 7)] public BigInteger No { get; set; }
    [Parameter("uint8[]", "ids", 8)] public List<byte> Ids { get; set; } = [];
    [Parameter("uint256[]", "values", 9)] public List<BigInteger> Values { get; set; } = [];
}

/// <summary>
/// The check of a <see cref="ChainProjector"/>'s projection: recomputes every amount and record it can from the
/// contracts' views, read at the block the projection reached — each account's token balance, credits and stake; every escrow and refund request; every
/// licence (ordinal, collateral posted and locked, delivered root, count and digest, acknowledgement, its exit and
/// release, and the open claims against it that OmlProtocol's release waits for); every model
/// (owner, pending owner, price, minimum collateral, versions, licences, parent shares); every claim (prover, status,
/// host, bond, commitment, evidence hash, deadlines) and which claim holds each receipt claimed as evidence (the
/// priority rule's record); every proposal (votes, execution); the parameters, the total
/// supply and bonds held — plus the conservation of the vault (OmlProtocol holds exactly the escrows, locked
/// collateral and bonds and credits; OmlGovernance exactly the stakes) and the counts of claims and proposals, which
/// catch what the projection never saw. Reports the first difference.
/// </summary>
public static class ChainVerifier
{
    private sealed class Diff(string message) : Exception(message);

    /// <param name="atBlock">The block whose state the views are read at: the block the projection was read up to
    /// (default: the latest), so that actions landing meanwhile do not show up as differences.</param>
    public static async Task<ChainVerification> VerifyAsync(ProtocolState s, OmlChainClient reader, long? atBlock = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(reader);
        long block = atBlock ?? (long)(await reader.Sender.Web3.Eth.Blocks.GetBlockNumber.SendRequestAsync().ConfigureAwait(false)).Value;
        var at = new Nethereum.RPC.Eth.DTOs.BlockParameter((ulong)block);
        int checks = 0;
        void Same<T>(string what, T projected, T chain)
        {
            checks++;
            if (!EqualityComparer<T>.Default.Equals(projected, chain)) throw new Diff($"{what}: the projection has {projected}, the chain {chain}");
        }
        async Task<T> Call<T>(Nethereum.Contracts.Contract c, string fn, params object[] args)
        {
            var f = c.GetFunction(fn);
            return f.DecodeTypeOutput<T>(await f.CallAsync(new Nethereum.RPC.Eth.DTOs.CallInput(f.GetData(args), c.Address), at).ConfigureAwait(false));
        }
        async Task<T> Obj<T>(Nethereum.Contracts.Contract c, string fn, params object[] args) where T : IFunctionOutputDTO, new()
        {
            var f = c.GetFunction(fn);
            return f.DecodeDTOTypeOutput<T>(await f.CallAsync(new Nethereum.RPC.Eth.DTOs.CallInput(f.GetData(args), c.Address), at).ConfigureAwait(false));
        }
        static BigInteger B(long v) => new(v);
        static string A(string a) => a.ToLowerInvariant();
        try
        {
            var p = await Call<List<BigInteger>>(reader.Protocol, "parameters").ConfigureAwait(false);
            Same("parameters", s.Parameters, ChainProjector.ParametersOf(p));
            Same("total supply", B(s.TotalSupply), await Call<BigInteger>(reader.Token, "totalSupply").ConfigureAwait(false));

            BigInteger credits = 0, locked = 0, escrowed = 0, staked = 0;
            foreach (var (address, acc) in s.Accounts)
            {
                ct.ThrowIfCancellationRequested();
                Same($"balance of {address}", B(acc.Balance), await Call<BigInteger>(reader.Token, "balanceOf", address).ConfigureAwait(false));
                Same($"credits (withdrawable) of {address}", B(acc.Withdrawable), await Call<BigInteger>(reader.Protocol, "credits", address).ConfigureAwait(false));
                Same($"stake of {address}", B(acc.Staked), await Call<BigInteger>(reader.Governance, "stakeOf", address).ConfigureAwait(false));
                Same($"escrow total of {address}", acc.Escrowed,
                    s.Escrows.Where(e => e.Key.StartsWith(address + "\n", StringComparison.Ordinal)).Sum(e => e.Value.Amount));
                credits += acc.Withdrawable;
                locked += acc.Locked;
                escrowed += acc.Escrowed;
                staked += acc.Staked;
            }
            foreach (var (key, e) in s.Escrows)
            {
                var parts = key.Split('\n');
                Same($"escrow of {parts[0]} with {parts[1]}", B(e.Amount), await Call<BigInteger>(reader.Protocol, "escrow", parts[0], parts[1]).ConfigureAwait(false));
                Same($"refund request of {parts[0]} with {parts[1]}", e.RefundRequestedAt ?? 0,
                    (long)await Call<BigInteger>(reader.Protocol, "refundRequestedAt", parts[0], parts[1]).ConfigureAwait(false));
            }
            foreach (var (id, m) in s.Models)
            {
                var v = await Obj<ModelView>(reader.Protocol, "model", OmlChainClient.ModelKey(id)).ConfigureAwait(false);
                Same($"model '{id}' exists", true, v.Exists);
                Same($"owner of '{id}'", m.Owner, A(v.Owner));
                Same($"pending owner of '{id}'", m.PendingOwner ?? Hex.ZeroAddress, A(v.PendingOwner));
                Same($"price of '{id}'", B(m.PricePerQuery), v.Price);
                Same($"minimum collateral of '{id}'", B(m.MinCollateral), v.MinCollateral);
                Same($"versions of '{id}'", (long)m.Versions.Count, (long)v.Versions);
                Same($"licences of '{id}'", (long)m.Hosts.Count, (long)v.Licences);
                Same($"parent shares of '{id}'", m.Parents.Sum(x => x.ShareBps), (int)v.ParentShareBps);
            }
            long collateral = 0;
            foreach (var l in s.Licences.Values)
            {
                var v = await Obj<LicenceView>(reader.Protocol, "licenceOf", OmlChainClient.ModelKey(l.ModelId), l.Host).ConfigureAwait(false);
                string who = $"licence of {l.Host} for '{l.ModelId}'";
                Same($"{who}: exists", true, v.Exists);
                Same($"{who}: ordinal", (long)l.Ordinal, (long)v.Ordinal);
                Same($"{who}: collateral posted", B(l.CollateralPosted), v.CollateralPosted);
                Same($"{who}: collateral locked", B(l.CollateralLocked), v.CollateralLocked);
                Same($"{who}: delivered", l.Delivered, v.Delivered);
                Same($"{who}: acknowledged", l.Acknowledged, v.Acknowledged);
                Same($"{who}: indices root", l.IndicesRoot ?? Hex.Zero32, Hex.Of(v.IndicesRoot));
                Same($"{who}: fingerprint count", l.FingerprintCount, (long)v.FingerprintCount);
                Same($"{who}: copy digest", l.CopyDigest ?? Hex.Zero32, Hex.Of(v.CopyDigest));
                var x = await Obj<ExitView>(reader.Protocol, "exitOf", OmlChainClient.ModelKey(l.ModelId), l.Host).ConfigureAwait(false);
                Same($"{who}: exit announced", l.Exiting, x.Announced);
                Same($"{who}: exit epoch", l.Exiting ? l.ExitEpoch : 0, (long)x.ExitEpoch);
                Same($"{who}: releasable at", l.Exiting ? l.ReleasableAt : 0, (long)x.ReleasableAt);
                Same($"{who}: collateral released", l.CollateralReleased, x.Released);
                Same($"{who}: open claims (revealed, not yet rebutted or settled)",
                    (long)s.Claims.Count(c => c.Status == ClaimStatus.Revealed && c.ModelId == l.ModelId && c.Host == l.Host),
                    (long)await Call<BigInteger>(reader.Claims, "openClaimsAgainst", OmlChainClient.ModelKey(l.ModelId), l.Host).ConfigureAwait(false));
                collateral += l.CollateralLocked;
            }
            Same("claims", (long)s.Claims.Count, (long)await Call<BigInteger>(reader.Claims, "claimCount").ConfigureAwait(false));
            long bonds = 0;
            foreach (var c in s.Claims)
            {
                var v = await Obj<ClaimView>(reader.Claims, "claim", new BigInteger(c.Id)).ConfigureAwait(false);
                string who = $"claim {c.Id}";
                Same($"{who}: prover", c.Prover, A(v.Prover));
                Same($"{who}: status", c.Status, v.Status switch
                {
                    1 => ClaimStatus.Committed, 2 => ClaimStatus.Revealed, 3 => ClaimStatus.Rebutted, 4 => ClaimStatus.Slashed, 5 => ClaimStatus.Expired, 6 => ClaimStatus.Voided,
                    _ => throw new Diff($"{who}: the chain has status {v.Status}"),
                });
                Same($"{who}: bond", B(c.Bond), v.Bond);
                Same($"{who}: commitment", c.Commitment, Hex.Of(v.Commitment));
                Same($"{who}: committed at", c.CommittedAt, (long)v.CommittedAt);
                Same($"{who}: host", c.Host ?? Hex.ZeroAddress, A(v.Host));
                Same($"{who}: evidence hash", c.EvidenceHash ?? Hex.Zero32, Hex.Of(v.EvidenceHash));
                Same($"{who}: rebut deadline", c.RebutDeadline, (long)v.RebutDeadline);
                if (c.Status is ClaimStatus.Committed or ClaimStatus.Revealed) bonds += c.Bond;
            }
            foreach (var (receipt, holder) in s.ReceiptClaimMap)
            {
                // A voided claim holds nothing on chain (its prover may claim the receipt again).
                var h = await Obj<ClaimIdView>(reader.Claims, "receiptClaimOf", Convert.FromHexString(receipt[2..])).ConfigureAwait(false);
                Same($"claim holding receipt {receipt}", s.Claims[(int)holder].Status == ClaimStatus.Voided ? -1 : holder,
                    h.Found ? (long)h.ClaimId : -1);
            }
            Same("bonds held", B(bonds), await Call<BigInteger>(reader.Protocol, "bondsHeld").ConfigureAwait(false));
            Same("locked collateral and bonds", locked, B(collateral + bonds));
            Same("OmlProtocol's token balance (escrows + locked collateral + bonds + credits)", escrowed + collateral + bonds + credits,
                await Call<BigInteger>(reader.Token, "balanceOf", reader.Deployment.Protocol).ConfigureAwait(false));
            Same("OmlGovernance's token balance (stakes)", staked, await Call<BigInteger>(reader.Token, "balanceOf", reader.Deployment.Governance).ConfigureAwait(false));
            Same("proposals", (long)s.Proposals.Count, (long)await Call<BigInteger>(reader.Governance, "proposalCount").ConfigureAwait(false));
            foreach (var pr in s.Proposals)
            {
                var v = (await Obj<ProposalOutput>(reader.Governance, "proposal", new BigInteger(pr.Id)).ConfigureAwait(false)).Proposal;
                string who = $"proposal {pr.Id}";
                Same($"{who}: proposer", pr.Proposer, A(v.Proposer));
                Same($"{who}: voting ends", pr.EndsAt, (long)v.VotingEnds);
                Same($"{who}: total stake", B(pr.TotalWeight), v.TotalStake);
                Same($"{who}: yes", B(pr.Yes), v.Yes);
                Same($"{who}: no", B(pr.No), v.No);
                Same($"{who}: executed", pr.Executed, v.Executed);
            }
        }
        catch (Diff d)
        {
            return new ChainVerification(false, d.Message, checks, block);
        }
        return new ChainVerification(true, null, checks, block);
    }
}
