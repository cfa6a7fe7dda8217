namespace Oml.Explorer.State;

// The explorer's view of the protocol: immutable records built by StateMapper (embedded ledger) and, later, by a chain
// backend. Addresses are EIP-55 strings, money in base units, times in Unix seconds of ledger (or block) time. Nothing
// here holds a secret: fingerprint keys, responses, salts, claim salts and evidence never enter these types.

/// <summary>Everything the pages show, as of one ledger height.</summary>
public sealed record ExplorerSnapshot
{
    /// <summary>Where the state comes from, in words (e.g. "ledger /path/ledger.db").</summary>
    public required string Source { get; init; }
    /// <summary>Number of events folded in (the ledger height or the chain's event count).</summary>
    public required long Height { get; init; }
    /// <summary>Hash of the last event folded in (hex), or empty.</summary>
    public required string HeadHash { get; init; }
    public required long ChainId { get; init; }
    public required string VerifyingContract { get; init; }
    public required string Treasury { get; init; }
    public required long TotalSupply { get; init; }
    public required long GenesisTime { get; init; }
    /// <summary>Time of the last event.</summary>
    public required long LastTime { get; init; }
    public required long EpochSeconds { get; init; }
    public required IReadOnlyList<ParameterView> Parameters { get; init; }
    public required IReadOnlyList<ModelView> Models { get; init; }
    /// <summary>One entry per address holding at least one licence, in address order.</summary>
    public required IReadOnlyList<HostView> Hosts { get; init; }
    public required IReadOnlyList<AccountView> Accounts { get; init; }
    public required IReadOnlyList<ClaimView> Claims { get; init; }
    public required IReadOnlyList<ProposalView> Proposals { get; init; }
    public required IReadOnlyList<AccusationView> Accusations { get; init; }
    /// <summary>The most recent events, newest first (at most <see cref="StateMapper.RecentEventCount"/>).</summary>
    public required IReadOnlyList<EventView> RecentEvents { get; init; }
    /// <summary>Protocol parameter windows the pages need for deadlines.</summary>
    public required long RevealWindowSeconds { get; init; }
    public required long RefundDelaySeconds { get; init; }
    /// <summary>Every user's escrow with each host, by user then host.</summary>
    public required IReadOnlyList<EscrowView> Escrows { get; init; }
    /// <summary>Governance: the stake needed to propose, the quorum (basis points of the stake at a proposal's snapshot) and the stake now.</summary>
    public required long ProposalThreshold { get; init; }
    public required int QuorumBps { get; init; }
    public required long TotalStaked { get; init; }

    public long EpochAt(long time) => time < GenesisTime || EpochSeconds <= 0 ? 0 : (time - GenesisTime) / EpochSeconds;
}

public sealed record ParameterView(string Name, string Value);

public sealed record ModelVersionView(int Number, string WeightsDigest, string Notes, long Time);

public sealed record ParentView(string ModelId, int ShareBps);

public sealed record ModelView(
    string Id, string Owner, string? PendingOwner, string Metadata, string LicenceTerms, long PricePerQuery, long MinCollateral,
    long RegisteredAt, IReadOnlyList<ModelVersionView> Versions, IReadOnlyList<ParentView> Parents, IReadOnlyList<LicenceView> Licences,
    int SpentFingerprints);

/// <summary>A host's licence of one model; <see cref="IndicesRoot"/> is the public Merkle commitment of its fingerprint subset.</summary>
public sealed record LicenceView(
    string ModelId, string Host, int Ordinal, string Endpoint, long CollateralPosted, long CollateralLocked, string? IndicesRoot,
    long FingerprintCount, string? CopyDigest, string? Allocation, bool Delivered, bool Acknowledged)
{
    public string StateText => Acknowledged ? "acknowledged" : Delivered ? "delivered" : "applied";
}

/// <summary>Who received how much of one usage commitment's fees (exact, from the ledger's credits).</summary>
public sealed record FeeShare(string Recipient, string Role, long Amount);

/// <summary>A permit of a usage batch that did not settle (not paid): its EIP-712 hash, the protocol's reason code and the detail.</summary>
public sealed record SkippedPermitView(string PermitHash, string Reason, string Detail);

/// <summary>One usage commitment; <see cref="PermitCount"/> permits settled, <see cref="Skipped"/> were skipped.</summary>
public sealed record UsageView(
    string ModelId, string Host, long Epoch, string ReceiptsRoot, long ReceiptCount, long PermitCount, long FeesSettled, long Time,
    IReadOnlyList<FeeShare> Payouts, IReadOnlyList<SkippedPermitView> Skipped);

/// <summary>
/// A user's funds escrowed for one host (only that host's permits are paid from it). Once the user asked for a refund
/// (<see cref="RefundRequestedAt"/>), the host accepts no new permits of the user and the rest can be refunded from
/// <see cref="RefundableAt"/> on.
/// </summary>
public sealed record EscrowView(string User, string Host, long Amount, long? RefundRequestedAt, long? RefundableAt)
{
    public bool RefundPending => RefundRequestedAt is not null;
}

public sealed record HostView(
    string Address, IReadOnlyList<LicenceView> Licences, IReadOnlyList<UsageView> Usage, long CollateralPosted, long CollateralLocked,
    long FeesSettled, long FeesEarned, int ClaimsAgainst, IReadOnlyList<EscrowView> Escrows)
{
    /// <summary>What users hold in escrow for this host (what its permits can still be paid from).</summary>
    public long EscrowedWithHost => Escrows.Sum(e => e.Amount);
    public int PermitsSkipped => Usage.Sum(u => u.Skipped.Count);
}

public sealed record WithdrawalView(long Sequence, long Time, long Amount);

/// <summary>An account: <see cref="Escrowed"/> sums its escrows with hosts (<see cref="Escrows"/>), <see cref="Staked"/> is its governance stake.</summary>
public sealed record AccountView(
    string Address, string Role, long Balance, long Escrowed, long Staked, long Withdrawable, long Locked, long Nonce, IReadOnlyList<WithdrawalView> Withdrawals,
    IReadOnlyList<EscrowView> Escrows);

public sealed record ClaimItemView(string FingerprintId, int LeafIndex, string ReceiptHash, string PermitHash);

public sealed record ClaimView(
    long Id, string Prover, string Status, string Commitment, long Bond, long CommittedAt, long RevealDeadline, string? ModelId, string? Host,
    string? EvidenceHash, long RevealedAt, long RebutDeadline, IReadOnlyList<ClaimItemView> Items, long Slashed, bool SlashCapped, long ProverReward)
{
    /// <summary>The deadline that matters now: reveal for a committed claim, rebut for a revealed one, none once closed.</summary>
    public long? OpenDeadline => Status switch { "Committed" => RevealDeadline, "Revealed" => RebutDeadline, _ => null };
}

/// <summary>A vote and its weight (the voter's stake at the proposal's snapshot).</summary>
public sealed record VoteView(string Voter, bool Support, long Weight);

/// <summary>
/// A proposal; weights are governance stakes snapshot at its creation: <see cref="TotalWeight"/> over
/// <see cref="Stakers"/> accounts, <see cref="Quorum"/> the weight that must vote, and it passes if yes &gt; no.
/// </summary>
public sealed record ProposalView(
    long Id, string Proposer, IReadOnlyList<ParameterView> Changes, string Description, long CreatedAt, long EndsAt, int Stakers,
    long TotalWeight, long Quorum, long Yes, long No, bool Executed, IReadOnlyList<VoteView> Votes);

public sealed record AccusationView(string ModelId, string Host, string Accuser, string EvidenceHash, long Time);

public sealed record EventView(long Sequence, string Type, long Time, string? Actor, string Hash);
