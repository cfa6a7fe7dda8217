using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;

namespace Oml.Protocol.Core;

/// <summary>
/// Where one action landed: <paramref name="Reference"/> is the ledger event's hash or the transaction's hash (0x hex),
/// <paramref name="Position"/> the event's sequence number or the transaction's block; <paramref name="Id"/> is set by
/// actions that create a numbered record (a claim, a proposal); <paramref name="GasUsed"/> only on a chain.
/// </summary>
public sealed record ActionReceipt(string Action, string Reference, long Position, long? Id = null, long? GasUsed = null);

/// <summary>
/// The OML protocol as its parties use it, wherever its rules run: the embedded ledger (<see cref="LedgerBackend"/>,
/// the default, for one owner and for tests) or the contracts on an EVM chain (<c>Oml.Protocol.Chain.ChainBackend</c>).
/// Every action is signed by the key given and either lands whole or throws (a <see cref="ProtocolException"/> naming
/// the rule on the ledger; the contract's custom error on a chain) and changes nothing. <see cref="State"/> is the
/// protocol's state as of the last <see cref="RefreshAsync"/> (an action refreshes before and after it): replayed from
/// the ledger's events, or rebuilt from the contracts' events. Amounts are base units; times are Unix seconds of
/// protocol time (ledger time, or the latest block's timestamp).
/// </summary>
public interface IProtocolBackend : IDisposable
{
    /// <summary>"ledger" or "chain".</summary>
    string Kind { get; }

    /// <summary>Where the rules run, for people: the ledger file and id, or the chain id, RPC URL and contract address.</summary>
    string Description { get; }

    /// <summary>The EIP-712 domain every signed request of this deployment is bound to (permits, receipts, consents).</summary>
    ProtocolDomain Domain { get; }

    /// <summary>The state as of the last refresh.</summary>
    ProtocolState State { get; }

    /// <summary>Protocol time now: the time the next action would be stamped with.</summary>
    long Now { get; }

    /// <summary>Catches up with actions other parties took since the last refresh.</summary>
    Task RefreshAsync(CancellationToken cancellationToken = default);

    // ---------------------------------------------------------------- money

    /// <summary>The treasury creates <paramref name="amount"/> in <paramref name="to"/>'s balance.</summary>
    Task<ActionReceipt> MintAsync(PrivateKey treasury, string to, long amount, CancellationToken cancellationToken = default);

    Task<ActionReceipt> TransferAsync(PrivateKey from, string to, long amount, CancellationToken cancellationToken = default);

    /// <summary>Pulls all withdrawable credits (fees, rewards, returned bonds) into the balance.</summary>
    Task<ActionReceipt> WithdrawAsync(PrivateKey account, CancellationToken cancellationToken = default);

    // ---------------------------------------------------------------- storage layer: models

    Task<ActionReceipt> RegisterModelAsync(PrivateKey owner, string modelId, string weightsDigest, string metadataJson, string licenceTerms,
        long pricePerQuery, long minCollateral, CancellationToken cancellationToken = default);

    Task<ActionReceipt> AddVersionAsync(PrivateKey owner, string modelId, string weightsDigest, string notes, CancellationToken cancellationToken = default);

    /// <summary>Declares a parent with a revenue share; <paramref name="parentOwner"/> consents (co-signs) unless it is the owner.</summary>
    Task<ActionReceipt> DeclareParentAsync(PrivateKey owner, PrivateKey parentOwner, string modelId, string parentModelId, int shareBps,
        CancellationToken cancellationToken = default);

    /// <summary>Starts a two-step transfer of the model; <paramref name="newOwner"/> accepts it with <see cref="AcceptModelAsync"/>.
    /// A new offer replaces a pending one; the zero address (<see cref="Hex.ZeroAddress"/>) withdraws it.</summary>
    Task<ActionReceipt> TransferModelAsync(PrivateKey owner, string modelId, string newOwner, CancellationToken cancellationToken = default);

    Task<ActionReceipt> AcceptModelAsync(PrivateKey newOwner, string modelId, CancellationToken cancellationToken = default);

    // ---------------------------------------------------------------- distribution layer: licences and copies

    /// <summary>The host applies for a licence of the model, locking <paramref name="collateral"/>.</summary>
    Task<ActionReceipt> ApplyLicenseAsync(PrivateKey host, string modelId, long collateral, string endpoint, CancellationToken cancellationToken = default);

    /// <summary>The owner records the copy it delivered to a host: the commitment root of its fingerprints, their count, its weights digest.</summary>
    Task<ActionReceipt> DeliverCopyAsync(PrivateKey owner, HostCopy copy, CancellationToken cancellationToken = default);

    Task<ActionReceipt> AcknowledgeCopyAsync(PrivateKey host, string modelId, string copyDigest, CancellationToken cancellationToken = default);

    /// <summary>The host announces the end of its licence: no new permits; usage up to the current epoch may still be committed.</summary>
    Task<ActionReceipt> AnnounceExitAsync(PrivateKey host, string modelId, CancellationToken cancellationToken = default);

    /// <summary>After the exit notice, with no revealed claim open, what is left of the collateral goes to the host's withdrawable credits.</summary>
    Task<ActionReceipt> ReleaseCollateralAsync(PrivateKey host, string modelId, CancellationToken cancellationToken = default);

    /// <summary>The owner accuses a host of serving a leaked or unlicensed copy (evidence kept off the rules).</summary>
    Task<ActionReceipt> FileAccusationAsync(PrivateKey owner, string modelId, string host, string evidenceJson, CancellationToken cancellationToken = default);

    // ---------------------------------------------------------------- access layer: escrow and usage

    /// <summary>Moves balance into the user's escrow with <paramref name="host"/>, which that host's settled permits are charged to.</summary>
    Task<ActionReceipt> DepositAsync(PrivateKey user, string host, long amount, CancellationToken cancellationToken = default);

    /// <summary>Starts the refund delay of the user's escrow with <paramref name="host"/>.</summary>
    Task<ActionReceipt> RequestRefundAsync(PrivateKey user, string host, CancellationToken cancellationToken = default);

    /// <summary>Returns what is left of the escrow once the refund delay has passed.</summary>
    Task<ActionReceipt> RefundAsync(PrivateKey user, string host, CancellationToken cancellationToken = default);

    /// <summary>Commits a usage book (receipts root and count) and settles its permits; bad permits are skipped with their reason.</summary>
    Task<ActionReceipt> CommitUsageAsync(PrivateKey host, UsageBook book, CancellationToken cancellationToken = default);

    // ---------------------------------------------------------------- claims

    /// <summary>The commitment <see cref="CommitClaimAsync"/> publishes for <paramref name="ticket"/> when
    /// <paramref name="prover"/> commits it (the prover is part of the preimage; the ledger's evidence hash is over the
    /// evidence JSON, the contracts' over the ABI-encoded items), to find the claim again with
    /// <see cref="ProtocolState.ClaimByCommitment"/>.</summary>
    Task<string> ClaimCommitmentAsync(ClaimTicket ticket, string prover, CancellationToken cancellationToken = default);

    /// <summary>Locks <paramref name="bond"/> behind the ticket's hiding commitment; the receipt's <see cref="ActionReceipt.Id"/> is the claim id.</summary>
    Task<ActionReceipt> CommitClaimAsync(PrivateKey prover, ClaimTicket ticket, long bond, CancellationToken cancellationToken = default);

    Task<ActionReceipt> RevealClaimAsync(PrivateKey prover, long claimId, ClaimTicket ticket, CancellationToken cancellationToken = default);

    Task<ActionReceipt> RebutAsync(PrivateKey host, long claimId, Rebuttal rebuttal, CancellationToken cancellationToken = default);

    /// <summary>Closes a claim: slashes the host after an unrebutted reveal, or returns an unrevealed claim's bond.</summary>
    Task<ActionReceipt> SettleAsync(PrivateKey actor, long claimId, CancellationToken cancellationToken = default);

    // ---------------------------------------------------------------- governance

    /// <summary>Locks balance as governance stake (the voting weight).</summary>
    Task<ActionReceipt> StakeAsync(PrivateKey account, long amount, CancellationToken cancellationToken = default);

    Task<ActionReceipt> UnstakeAsync(PrivateKey account, long amount, CancellationToken cancellationToken = default);

    /// <summary>Proposes parameter changes (name → decimal value); the receipt's <see cref="ActionReceipt.Id"/> is the proposal id.</summary>
    Task<ActionReceipt> ProposeAsync(PrivateKey proposer, IReadOnlyDictionary<string, string> changes, string description,
        CancellationToken cancellationToken = default);

    Task<ActionReceipt> VoteAsync(PrivateKey voter, long proposalId, bool support, CancellationToken cancellationToken = default);

    Task<ActionReceipt> ExecuteAsync(PrivateKey actor, long proposalId, CancellationToken cancellationToken = default);
}
