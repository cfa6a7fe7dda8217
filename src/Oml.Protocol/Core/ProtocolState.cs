using System.Security.Cryptography;
using System.Text.Json;

namespace Oml.Protocol.Core;

/// <summary>An account's money (base units) and request counter.</summary>
public sealed class Account
{
    /// <summary>Free funds: can be transferred, deposited, posted as collateral or bond.</summary>
    public long Balance { get; internal set; }
    /// <summary>A user's escrowed funds, summed over hosts (<see cref="ProtocolState.EscrowOf"/>); charged when a host settles the user's permits to it.</summary>
    public long Escrowed { get; internal set; }
    /// <summary>Governance stake (voting weight, snapshot at each proposal's creation).</summary>
    public long Staked { get; internal set; }
    /// <summary>Ledger time of the account's last Stake (its stake is locked for VotingWindowSeconds after).</summary>
    public long LastStakeTime { get; internal set; }
    /// <summary>Credits (fees, rewards, returned bonds) waiting to be pulled into the balance by Withdraw.</summary>
    public long Withdrawable { get; internal set; }
    /// <summary>Collateral and bonds currently locked.</summary>
    public long Locked { get; internal set; }
    /// <summary>The nonce the account's next request must carry.</summary>
    public long Nonce { get; internal set; }
}

public sealed record ModelVersion(string WeightsDigest, string Notes, long Time);

public sealed record ParentLink(string ParentModelId, int ShareBps);

public sealed class ModelRecord
{
    public required string Id { get; init; }
    public string Owner { get; internal set; } = "";
    public string? PendingOwner { get; internal set; }
    public required string Metadata { get; init; }
    public required string LicenceTerms { get; init; }
    public required long PricePerQuery { get; init; }
    public required long MinCollateral { get; init; }
    public required long RegisteredAt { get; init; }
    internal List<ModelVersion> VersionList { get; } = [];
    internal List<ParentLink> ParentList { get; } = [];
    internal List<string> HostList { get; } = [];
    public IReadOnlyList<ModelVersion> Versions => VersionList;
    public IReadOnlyList<ParentLink> Parents => ParentList;
    /// <summary>Licensed hosts in licence order: index = host ordinal for the fingerprint allocation.</summary>
    public IReadOnlyList<string> Hosts => HostList;
    public string CurrentDigest => VersionList[^1].WeightsDigest;
}

public sealed class Licence
{
    public required string ModelId { get; init; }
    public required string Host { get; init; }
    public required int Ordinal { get; init; }
    public required string Endpoint { get; init; }
    public required long CollateralPosted { get; init; }
    public long CollateralLocked { get; internal set; }
    public string? IndicesRoot { get; internal set; }
    public long FingerprintCount { get; internal set; }
    public string? CopyDigest { get; internal set; }
    public string? Allocation { get; internal set; }
    public bool Acknowledged { get; internal set; }
    public bool Delivered => IndicesRoot is not null;
    /// <summary>When the host announced its exit (null: it did not); it then takes no new permits.</summary>
    public long? ExitAnnouncedAt { get; internal set; }
    /// <summary>The last epoch the host may commit usage for (the epoch of its exit announcement).</summary>
    public long ExitEpoch { get; internal set; }
    /// <summary>From when the collateral can be released: the end of the exit epoch + RevealWindowSeconds + RebutWindowSeconds.</summary>
    public long ReleasableAt { get; internal set; }
    /// <summary>Whether the remaining collateral was released to the host's credits (and how much).</summary>
    public bool CollateralReleased { get; internal set; }
    public long ReleasedAmount { get; internal set; }
    public bool Exiting => ExitAnnouncedAt is not null;
}

/// <summary>A user's funds escrowed for one host; <see cref="RefundRequestedAt"/> is set once the user asked for them back.</summary>
public sealed class Escrow
{
    public long Amount { get; internal set; }
    public long? RefundRequestedAt { get; internal set; }
}

/// <summary>A permit of a usage batch that did not settle: its EIP-712 hash (or "#index" when unparsable) and why.</summary>
public sealed record SkippedPermit(string PermitHash, ProtocolErrorCode Reason, string Detail);

public sealed record UsageRecord(string Host, string ModelId, long Epoch, string ReceiptsRoot, long ReceiptCount, long PermitCount, long FeesSettled, long Time)
{
    /// <summary>The permits of the batch that were skipped (not paid), each with its reason.</summary>
    public IReadOnlyList<SkippedPermit> Skipped { get; init; } = [];
}

/// <summary>A claim's state; <see cref="Expired"/>: never revealed, the bond went back to the prover.</summary>
/// <summary>Where a claim stands. <see cref="Voided"/>: revealed, then displaced by a claim committed earlier that holds one
/// of its receipts (its bond went back to its prover).</summary>
public enum ClaimStatus { Committed, Revealed, Rebutted, Slashed, Expired, Voided }

/// <summary>One claimed item: the fingerprint spent, the receipt the host signed, and the permit it names (zero for none).</summary>
public sealed record ClaimItem(string FingerprintId, int LeafIndex, string ReceiptHash, string QueryHash, string PermitHash);

public sealed class Claim
{
    public required long Id { get; init; }
    public required string Prover { get; init; }
    public required string Commitment { get; init; }
    public required long Bond { get; init; }
    public required long CommittedAt { get; init; }
    public ClaimStatus Status { get; internal set; }
    public string? ModelId { get; internal set; }
    public string? Host { get; internal set; }
    public string? EvidenceHash { get; internal set; }
    public long RevealedAt { get; internal set; }
    public long RebutDeadline { get; internal set; }
    public IReadOnlyList<ClaimItem> Items { get; internal set; } = [];
    public long Slashed { get; internal set; }
    public bool SlashCapped { get; internal set; }
    public long ProverReward { get; internal set; }
}

public sealed class Proposal
{
    public required long Id { get; init; }
    public required string Proposer { get; init; }
    public required IReadOnlyDictionary<string, string> Changes { get; init; }
    public required string Description { get; init; }
    public required long CreatedAt { get; init; }
    public required long EndsAt { get; init; }
    /// <summary>Every account's governance stake when the proposal was made (the voting weights; zero stakes left out).</summary>
    public required IReadOnlyDictionary<string, long> Weights { get; init; }
    /// <summary>The total stake at the snapshot (the quorum's base).</summary>
    public long TotalWeight => Weights.Values.Sum();
    internal SortedDictionary<string, bool> VoteMap { get; } = new(StringComparer.Ordinal);
    public IReadOnlyDictionary<string, bool> Votes => VoteMap;
    internal SortedDictionary<string, long> VoteWeightMap { get; } = new(StringComparer.Ordinal);
    /// <summary>What each vote weighed: the voter's stake at the snapshot, or its stake when it voted if that was less.</summary>
    public IReadOnlyDictionary<string, long> VoteWeights => VoteWeightMap;
    /// <summary>Stake-weighted yes votes.</summary>
    public long Yes => VoteMap.Where(v => v.Value).Sum(v => VoteWeightMap[v.Key]);
    public long No => VoteMap.Where(v => !v.Value).Sum(v => VoteWeightMap[v.Key]);
    public bool Executed { get; internal set; }
}

public sealed record AccusationRecord(string ModelId, string Host, string Accuser, string EvidenceHash, long Time);

/// <summary>
/// Everything the ledger's events imply, rebuilt by folding them in order (<see cref="ProtocolEngine"/>). Addresses
/// are lowercase "0x" hex; money in base units; times in Unix seconds of ledger time.
/// </summary>
public sealed class ProtocolState
{
    internal SortedDictionary<string, Account> AccountMap { get; } = new(StringComparer.Ordinal);
    internal SortedDictionary<string, ModelRecord> ModelMap { get; } = new(StringComparer.Ordinal);
    internal SortedDictionary<string, Licence> LicenceMap { get; } = new(StringComparer.Ordinal);
    internal SortedDictionary<string, UsageRecord> UsageMap { get; } = new(StringComparer.Ordinal);
    internal List<Claim> ClaimList { get; } = [];
    internal List<Proposal> ProposalList { get; } = [];
    internal List<AccusationRecord> AccusationList { get; } = [];
    /// <summary>Fingerprint ids revealed per model (spent for every copy).</summary>
    internal SortedDictionary<string, SortedSet<string>> SpentMap { get; } = new(StringComparer.Ordinal);
    /// <summary>"user\nhost\nmodel" (<see cref="PermitNonceKey"/>) → the user's nonces settled with that host for that model.</summary>
    internal SortedDictionary<string, SortedSet<long>> PermitNonceMap { get; } = new(StringComparer.Ordinal);
    /// <summary>Receipt hash → the claim whose evidence it is (OmlClaims._receiptClaim; a voided claim keeps its receipts for its prover).</summary>
    internal SortedDictionary<string, long> ReceiptClaimMap { get; } = new(StringComparer.Ordinal);
    /// <summary>Settled permit hash → the host that settled it.</summary>
    internal SortedDictionary<string, string> SettledPermitMap { get; } = new(StringComparer.Ordinal);
    /// <summary>"user\nhost" → escrow.</summary>
    internal SortedDictionary<string, Escrow> EscrowMap { get; } = new(StringComparer.Ordinal);
    /// <summary>Every claim commitment ever committed → its claim id.</summary>
    internal SortedDictionary<string, long> CommitmentMap { get; } = new(StringComparer.Ordinal);

    public bool Initialized { get; internal set; }
    public string Treasury { get; internal set; } = "";
    public ProtocolDomain Domain { get; internal set; } = ProtocolDomain.Default;
    public long GenesisTime { get; internal set; }
    public ProtocolParameters Parameters { get; internal set; } = ProtocolParameters.Default;
    public long TotalSupply { get; internal set; }
    /// <summary>The hash of the last event folded in (32 zero bytes before genesis).</summary>
    public byte[] HeadHash { get; internal set; } = new byte[32];
    /// <summary>Number of events folded in.</summary>
    public long Height { get; internal set; }
    /// <summary>Ledger time of the last event (Unix seconds).</summary>
    public long LastTime { get; internal set; }

    public IReadOnlyDictionary<string, Account> Accounts => AccountMap;
    public IReadOnlyDictionary<string, ModelRecord> Models => ModelMap;
    /// <summary>Licences keyed by <see cref="LicenceKey"/>.</summary>
    public IReadOnlyDictionary<string, Licence> Licences => LicenceMap;
    public IReadOnlyDictionary<string, UsageRecord> Usage => UsageMap;
    public IReadOnlyList<Claim> Claims => ClaimList;
    public IReadOnlyList<Proposal> Proposals => ProposalList;
    public IReadOnlyList<AccusationRecord> Accusations => AccusationList;
    public IReadOnlyDictionary<string, string> SettledPermits => SettledPermitMap;

    public static string LicenceKey(string modelId, string host) => $"{modelId}\n{host}";
    public static string UsageKey(string modelId, string host, long epoch) => $"{modelId}\n{host}\n{epoch}";
    public static string EscrowKey(string user, string host) => $"{user}\n{host}";
    /// <summary>Every escrow, keyed by <see cref="EscrowKey"/> (user, then host); a refunded escrow is gone.</summary>
    public IReadOnlyDictionary<string, Escrow> Escrows => EscrowMap;

    /// <summary>The user's escrow with the host (an empty one if there is none).</summary>
    public Escrow EscrowOf(string user, string host) => EscrowMap.TryGetValue(EscrowKey(user, host), out var e) ? e : new Escrow();

    /// <summary>The claim <paramref name="prover"/> committed under <paramref name="commitment"/>, if any.</summary>
    public Claim? ClaimByCommitment(string prover, string commitment) =>
        CommitmentMap.TryGetValue(CommitmentKey(prover, commitment), out var id) ? ClaimList[(int)id] : null;

    /// <summary>Commitments are keyed by (prover, commitment): a copy sent by someone else blocks nothing.</summary>
    internal static string CommitmentKey(string prover, string commitment) => prover + "/" + commitment;

    /// <summary>The end (exclusive, ledger seconds) of the epoch that <paramref name="time"/> falls in.</summary>
    public long EpochEnd(long time) => GenesisTime + (EpochAt(time) + 1) * Parameters.EpochSeconds;

    /// <summary>The account (an empty one if the address never appeared).</summary>
    public Account AccountOf(string address) => AccountMap.TryGetValue(address, out var a) ? a : new Account();

    public Licence? LicenceOf(string modelId, string host) => LicenceMap.GetValueOrDefault(LicenceKey(modelId, host));

    /// <summary>Whether <paramref name="user"/>'s <paramref name="nonce"/> was settled with <paramref name="host"/> for <paramref name="modelId"/> (the replay guard: nonces are spent per host and model).</summary>
    public bool IsPermitNonceUsed(string user, string host, string modelId, long nonce) =>
        PermitNonceMap.TryGetValue(PermitNonceKey(user, host, modelId), out var s) && s.Contains(nonce);

    /// <summary>Records <paramref name="user"/>'s <paramref name="nonce"/> as settled with <paramref name="host"/> for <paramref name="modelId"/>.</summary>
    internal void MarkPermitNonceUsed(string user, string host, string modelId, long nonce)
    {
        string key = PermitNonceKey(user, host, modelId);
        if (!PermitNonceMap.TryGetValue(key, out var set)) PermitNonceMap[key] = set = [];
        set.Add(nonce);
    }

    private static string PermitNonceKey(string user, string host, string modelId) => $"{user}\n{host}\n{modelId}";

    public bool IsSpent(string modelId, string fingerprintId) => SpentMap.TryGetValue(modelId, out var s) && s.Contains(fingerprintId);

    /// <summary>Whether <paramref name="address"/> owns at least one model.</summary>
    public bool OwnsAModel(string address) => ModelMap.Values.Any(m => m.Owner == address);

    /// <summary>The usage epoch that ledger time <paramref name="time"/> falls in.</summary>
    public long EpochAt(long time) => time < GenesisTime ? 0 : (time - GenesisTime) / Parameters.EpochSeconds;

    internal Escrow Esc(string user, string host)
    {
        string k = EscrowKey(user, host);
        if (!EscrowMap.TryGetValue(k, out var e)) EscrowMap[k] = e = new Escrow();
        return e;
    }

    internal Account Acc(string address)
    {
        if (!AccountMap.TryGetValue(address, out var a)) AccountMap[address] = a = new Account();
        return a;
    }

    /// <summary>
    /// SHA-256 of a canonical JSON rendering of the whole state (every collection in a fixed order). Two states are
    /// equal exactly when their digests are.
    /// </summary>
    public string Digest()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteBoolean("initialized", Initialized);
            w.WriteString("treasury", Treasury);
            w.WriteNumber("chainId", Domain.ChainId);
            w.WriteString("verifyingContract", Domain.VerifyingContract);
            w.WriteNumber("genesisTime", GenesisTime);
            w.WriteString("parameters", Parameters.ToJson());
            w.WriteNumber("totalSupply", TotalSupply);
            w.WriteNumber("height", Height);
            w.WriteNumber("lastTime", LastTime);
            w.WriteStartObject("accounts");
            foreach (var (k, a) in AccountMap)
            {
                w.WriteStartArray(k);
                foreach (var v in new[] { a.Balance, a.Escrowed, a.Withdrawable, a.Locked, a.Staked, a.LastStakeTime, a.Nonce }) w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartObject("models");
            foreach (var (k, m) in ModelMap)
            {
                w.WriteStartObject(k);
                w.WriteString("owner", m.Owner);
                w.WriteString("pending", m.PendingOwner);
                w.WriteString("metadata", m.Metadata);
                w.WriteString("terms", m.LicenceTerms);
                w.WriteNumber("price", m.PricePerQuery);
                w.WriteNumber("minCollateral", m.MinCollateral);
                w.WriteNumber("registeredAt", m.RegisteredAt);
                w.WriteStartArray("versions");
                foreach (var v in m.VersionList) { w.WriteStringValue(v.WeightsDigest); w.WriteStringValue(v.Notes); w.WriteNumberValue(v.Time); }
                w.WriteEndArray();
                w.WriteStartArray("parents");
                foreach (var p in m.ParentList) { w.WriteStringValue(p.ParentModelId); w.WriteNumberValue(p.ShareBps); }
                w.WriteEndArray();
                w.WriteStartArray("hosts");
                foreach (var h in m.HostList) w.WriteStringValue(h);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteStartObject("licences");
            foreach (var (k, l) in LicenceMap)
            {
                w.WriteStartArray(k);
                w.WriteStringValue(l.ModelId); w.WriteStringValue(l.Host); w.WriteNumberValue(l.Ordinal); w.WriteStringValue(l.Endpoint);
                w.WriteNumberValue(l.CollateralPosted); w.WriteNumberValue(l.CollateralLocked); w.WriteStringValue(l.IndicesRoot);
                w.WriteNumberValue(l.FingerprintCount); w.WriteStringValue(l.CopyDigest); w.WriteStringValue(l.Allocation); w.WriteBooleanValue(l.Acknowledged);
                if (l.ExitAnnouncedAt is { } exitAt)
                {
                    w.WriteNumberValue(exitAt); w.WriteNumberValue(l.ExitEpoch); w.WriteNumberValue(l.ReleasableAt);
                    w.WriteBooleanValue(l.CollateralReleased); w.WriteNumberValue(l.ReleasedAmount);
                }
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartObject("usage");
            foreach (var (k, u) in UsageMap)
            {
                w.WriteStartArray(k);
                w.WriteStringValue(u.ReceiptsRoot); w.WriteNumberValue(u.ReceiptCount); w.WriteNumberValue(u.PermitCount);
                w.WriteNumberValue(u.FeesSettled); w.WriteNumberValue(u.Time);
                foreach (var sk in u.Skipped) { w.WriteStringValue(sk.PermitHash); w.WriteStringValue(sk.Reason.ToString()); w.WriteStringValue(sk.Detail); }
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartArray("claims");
            foreach (var c in ClaimList)
            {
                w.WriteStartArray();
                w.WriteNumberValue(c.Id); w.WriteStringValue(c.Prover); w.WriteStringValue(c.Commitment); w.WriteNumberValue(c.Bond);
                w.WriteNumberValue(c.CommittedAt); w.WriteStringValue(c.Status.ToString()); w.WriteStringValue(c.ModelId); w.WriteStringValue(c.Host);
                w.WriteStringValue(c.EvidenceHash); w.WriteNumberValue(c.RevealedAt); w.WriteNumberValue(c.RebutDeadline);
                foreach (var i in c.Items) { w.WriteStringValue(i.FingerprintId); w.WriteNumberValue(i.LeafIndex); w.WriteStringValue(i.ReceiptHash); w.WriteStringValue(i.QueryHash); w.WriteStringValue(i.PermitHash); }
                w.WriteNumberValue(c.Slashed); w.WriteBooleanValue(c.SlashCapped); w.WriteNumberValue(c.ProverReward);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteStartArray("proposals");
            foreach (var p in ProposalList)
            {
                w.WriteStartArray();
                w.WriteNumberValue(p.Id); w.WriteStringValue(p.Proposer); w.WriteStringValue(ProtocolParameters.ChangesToJson(p.Changes));
                w.WriteStringValue(p.Description); w.WriteNumberValue(p.CreatedAt); w.WriteNumberValue(p.EndsAt);
                foreach (var (e, weight) in p.Weights.OrderBy(e => e.Key, StringComparer.Ordinal)) { w.WriteStringValue(e); w.WriteNumberValue(weight); }
                foreach (var (voter, yes) in p.VoteMap) { w.WriteStringValue(voter); w.WriteBooleanValue(yes); w.WriteNumberValue(p.VoteWeightMap[voter]); }
                w.WriteBooleanValue(p.Executed);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteStartArray("accusations");
            foreach (var a in AccusationList)
            {
                w.WriteStringValue(a.ModelId); w.WriteStringValue(a.Host); w.WriteStringValue(a.Accuser); w.WriteStringValue(a.EvidenceHash); w.WriteNumberValue(a.Time);
            }
            w.WriteEndArray();
            w.WriteStartObject("spent");
            foreach (var (k, s) in SpentMap) { w.WriteStartArray(k); foreach (var id in s) w.WriteStringValue(id); w.WriteEndArray(); }
            w.WriteEndObject();
            w.WriteStartObject("settledPermits");
            foreach (var (k, h) in SettledPermitMap) w.WriteString(k, h);
            w.WriteEndObject();
            w.WriteStartObject("escrows");
            foreach (var (k, e) in EscrowMap) { w.WriteStartArray(k); w.WriteNumberValue(e.Amount); if (e.RefundRequestedAt is { } t) w.WriteNumberValue(t); else w.WriteNullValue(); w.WriteEndArray(); }
            w.WriteEndObject();
            w.WriteStartObject("commitments");
            foreach (var (k, id) in CommitmentMap) w.WriteNumber(k, id);
            w.WriteEndObject();
            w.WriteString("headHash", Convert.ToHexStringLower(HeadHash));
            w.WriteStartObject("permitNonces");
            foreach (var (k, s) in PermitNonceMap) { w.WriteStartArray(k); foreach (var n in s) w.WriteNumberValue(n); w.WriteEndArray(); }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Convert.ToHexStringLower(SHA256.HashData(ms.ToArray()));
    }
}
