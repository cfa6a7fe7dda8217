namespace Oml.Protocol.Core;

/// <summary>Why an action was rejected (machine-readable; the message says it in words).</summary>
public enum ProtocolErrorCode
{
    /// <summary>The request is malformed: unknown type, missing or ill-typed field, bad attachment.</summary>
    InvalidRequest,
    /// <summary>The signature does not recover to the actor (or to the required co-signer).</summary>
    BadSignature,
    /// <summary>The request was signed for another chain id or verifying contract.</summary>
    WrongDomain,
    /// <summary>The actor's request nonce is not the next one expected.</summary>
    BadNonce,
    /// <summary>The ledger is not initialised, or is initialised twice.</summary>
    NotInitialized,
    AlreadyInitialized,
    /// <summary>The actor may not do this (not the owner, not the treasury, not the host of the licence, ...).</summary>
    Unauthorized,
    InsufficientFunds,
    NothingToWithdraw,
    InvalidAmount,
    ArithmeticOverflow,
    ModelExists,
    UnknownModel,
    /// <summary>A family-tree edge would create a cycle, repeat an edge or push the shares over 100%.</summary>
    InvalidFamilyTree,
    NoPendingTransfer,
    LicenceExists,
    UnknownLicence,
    CollateralTooLow,
    CopyAlreadyDelivered,
    CopyNotDelivered,
    CopyNotAcknowledged,
    DigestMismatch,
    InvalidPermit,
    PermitExpired,
    PermitReplayed,
    FeeTooLow,
    EpochInvalid,
    UsageAlreadyCommitted,
    BondTooLow,
    UnknownClaim,
    ClaimState,
    /// <summary>The reveal, rebut or voting window is not open (too early or too late).</summary>
    WindowClosed,
    CommitmentMismatch,
    /// <summary>A Merkle proof does not verify against the committed root.</summary>
    InvalidProof,
    /// <summary>No longer raised (a revealed fingerprint is recorded, not barred: a receipt backs one claim instead,
    /// see <see cref="ReceiptClaimed"/>); kept so that the codes' names and order stay stable.</summary>
    FingerprintSpent,
    InvalidReceipt,
    /// <summary>The host's answer does not match the fingerprint's response.</summary>
    AnswerMismatch,
    /// <summary>The receipt names a permit that was settled: the use was paid for.</summary>
    UsagePermitted,
    InvalidParameters,
    UnknownProposal,
    NotEligibleToVote,
    AlreadyVoted,
    ProposalFailed,
    AlreadyExecuted,
    /// <summary>An event in the stored log does not apply to the state rebuilt before it.</summary>
    ReplayFailed,
    /// <summary>This claim commitment was already committed (a commitment can be committed once, ever).</summary>
    DuplicateCommitment,
    /// <summary>The user asked for a refund of its escrow with this host (no new permits), or a refund is not due yet.</summary>
    RefundPending,
    /// <summary>Governance stake is locked (an open vote, or within the voting window after the last stake).</summary>
    StakeLocked,
    /// <summary>The host already announced its exit from this licence.</summary>
    ExitAlreadyAnnounced,
    /// <summary>The host has not announced its exit from this licence (AnnounceExit first).</summary>
    ExitNotAnnounced,
    /// <summary>The exit notice has not passed yet: the collateral can be released from its releasable time.</summary>
    ReleaseNotDue,
    /// <summary>A revealed claim against the licence is still open (rebut or settle it first).</summary>
    OpenClaims,
    /// <summary>The licence's collateral was already released.</summary>
    AlreadyReleased,
    /// <summary>Usage for an epoch after the host's exit epoch.</summary>
    UsageAfterExit,
    /// <summary>The licence ended and its collateral was released: there is nothing to claim against.</summary>
    LicenceReleased,
    /// <summary>The receipt is the evidence of a claim committed earlier (or of one already settled): one receipt backs one claim.</summary>
    ReceiptClaimed,
}

/// <summary>A rejected protocol action. Nothing was appended to the ledger.</summary>
public sealed class ProtocolException(ProtocolErrorCode code, string message, Exception? inner = null) : Exception(message, inner)
{
    public ProtocolErrorCode Code { get; } = code;

    public override string ToString() => $"{Code}: {Message}";

    internal static ProtocolException Of(ProtocolErrorCode code, string message) => new(code, message);
}
