using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;

namespace Oml.Protocol.Core;

/// <summary>
/// <see cref="IProtocolBackend"/> over the embedded ledger: each action is one signed request checked by
/// <see cref="ProtocolEngine"/> and appended as one event. The ledger is local, so the tasks complete synchronously.
/// </summary>
public sealed class LedgerBackend : IProtocolBackend
{
    private readonly bool _ownsLedger;
    private readonly string _where;

    /// <param name="engine">The engine of an initialised ledger (<see cref="ProtocolEngine.Open"/>).</param>
    /// <param name="where">How to name the ledger to people (e.g. its file path).</param>
    /// <param name="ownsLedger">Whether disposing the backend disposes the engine's ledger.</param>
    public LedgerBackend(ProtocolEngine engine, string where, bool ownsLedger = true)
    {
        Engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _where = where ?? throw new ArgumentNullException(nameof(where));
        _ownsLedger = ownsLedger;
    }

    /// <summary>Opens an initialised ledger (verifying its hash chain, <see cref="ProtocolEngine.Open"/>).</summary>
    public static LedgerBackend Open(ILedger ledger, string where, bool ownsLedger = true, TimeProvider? clock = null) =>
        new(ProtocolEngine.Open(ledger, clock), where, ownsLedger);

    public ProtocolEngine Engine { get; }

    public ILedger Ledger => Engine.Ledger;

    public string Kind => "ledger";

    public string Description => $"ledger {_where} (id {Engine.Ledger.LedgerId})";

    public ProtocolDomain Domain => Engine.Domain;

    public ProtocolState State => Engine.State;

    public long Now => Engine.Now;

    public Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Engine.Refresh();
        return Task.CompletedTask;
    }

    private static Task<ActionReceipt> Done(string action, LedgerEvent ev, long? id = null) =>
        Task.FromResult(new ActionReceipt(action, Hex.Of(ev.Hash), ev.Sequence, id));

    private static Task<ActionReceipt> Run(string action, Func<LedgerEvent> submit, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        return Done(action, submit());
    }

    public Task<ActionReceipt> MintAsync(PrivateKey treasury, string to, long amount, CancellationToken cancellationToken = default) =>
        Run(Schemas.Mint, () => Engine.Mint(treasury, to, amount), cancellationToken);

    public Task<ActionReceipt> TransferAsync(PrivateKey from, string to, long amount, CancellationToken cancellationToken = default) =>
        Run(Schemas.Transfer, () => Engine.Transfer(from, to, amount), cancellationToken);

    public Task<ActionReceipt> WithdrawAsync(PrivateKey account, CancellationToken cancellationToken = default) =>
        Run(Schemas.Withdraw, () => Engine.Withdraw(account), cancellationToken);

    public Task<ActionReceipt> RegisterModelAsync(PrivateKey owner, string modelId, string weightsDigest, string metadataJson, string licenceTerms,
        long pricePerQuery, long minCollateral, CancellationToken cancellationToken = default) =>
        Run(Schemas.RegisterModel, () => Engine.RegisterModel(owner, modelId, weightsDigest, metadataJson, licenceTerms, pricePerQuery, minCollateral), cancellationToken);

    public Task<ActionReceipt> AddVersionAsync(PrivateKey owner, string modelId, string weightsDigest, string notes, CancellationToken cancellationToken = default) =>
        Run(Schemas.AddVersion, () => Engine.AddVersion(owner, modelId, weightsDigest, notes), cancellationToken);

    public Task<ActionReceipt> DeclareParentAsync(PrivateKey owner, PrivateKey parentOwner, string modelId, string parentModelId, int shareBps,
        CancellationToken cancellationToken = default) =>
        Run(Schemas.DeclareParent, () => Engine.DeclareParent(owner, parentOwner, modelId, parentModelId, shareBps), cancellationToken);

    public Task<ActionReceipt> TransferModelAsync(PrivateKey owner, string modelId, string newOwner, CancellationToken cancellationToken = default) =>
        Run(Schemas.TransferModel, () => Engine.TransferModel(owner, modelId, newOwner), cancellationToken);

    public Task<ActionReceipt> AcceptModelAsync(PrivateKey newOwner, string modelId, CancellationToken cancellationToken = default) =>
        Run(Schemas.AcceptModel, () => Engine.AcceptModel(newOwner, modelId), cancellationToken);

    public Task<ActionReceipt> ApplyLicenseAsync(PrivateKey host, string modelId, long collateral, string endpoint, CancellationToken cancellationToken = default) =>
        Run(Schemas.ApplyLicense, () => Engine.ApplyLicense(host, modelId, collateral, endpoint), cancellationToken);

    public Task<ActionReceipt> DeliverCopyAsync(PrivateKey owner, HostCopy copy, CancellationToken cancellationToken = default) =>
        Run(Schemas.DeliverCopy, () => Engine.DeliverCopy(owner, copy), cancellationToken);

    public Task<ActionReceipt> AcknowledgeCopyAsync(PrivateKey host, string modelId, string copyDigest, CancellationToken cancellationToken = default) =>
        Run(Schemas.AcknowledgeCopy, () => Engine.AcknowledgeCopy(host, modelId, copyDigest), cancellationToken);

    public Task<ActionReceipt> FileAccusationAsync(PrivateKey owner, string modelId, string host, string evidenceJson, CancellationToken cancellationToken = default) =>
        Run(Schemas.FileAccusation, () => Engine.FileAccusation(owner, modelId, host, evidenceJson), cancellationToken);

    public Task<ActionReceipt> DepositAsync(PrivateKey user, string host, long amount, CancellationToken cancellationToken = default) =>
        Run(Schemas.Deposit, () => Engine.Deposit(user, host, amount), cancellationToken);

    public Task<ActionReceipt> RequestRefundAsync(PrivateKey user, string host, CancellationToken cancellationToken = default) =>
        Run(Schemas.RequestRefund, () => Engine.RequestRefund(user, host), cancellationToken);

    public Task<ActionReceipt> RefundAsync(PrivateKey user, string host, CancellationToken cancellationToken = default) =>
        Run(Schemas.Refund, () => Engine.Refund(user, host), cancellationToken);

    public Task<ActionReceipt> CommitUsageAsync(PrivateKey host, UsageBook book, CancellationToken cancellationToken = default) =>
        Run(Schemas.CommitUsage, () => Engine.CommitUsage(host, book), cancellationToken);

    public Task<string> ClaimCommitmentAsync(ClaimTicket ticket, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        return Task.FromResult(ticket.Commitment);
    }

    public Task<ActionReceipt> CommitClaimAsync(PrivateKey prover, ClaimTicket ticket, long bond, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var (ev, id) = Engine.CommitClaimEvent(prover, ticket, bond);
        return Done(Schemas.CommitClaim, ev, id);
    }

    public Task<ActionReceipt> RevealClaimAsync(PrivateKey prover, long claimId, ClaimTicket ticket, CancellationToken cancellationToken = default) =>
        Run(Schemas.RevealClaim, () => Engine.RevealClaim(prover, claimId, ticket), cancellationToken);

    public Task<ActionReceipt> RebutAsync(PrivateKey host, long claimId, Rebuttal rebuttal, CancellationToken cancellationToken = default) =>
        Run(Schemas.Rebut, () => Engine.Rebut(host, claimId, rebuttal), cancellationToken);

    public Task<ActionReceipt> SettleAsync(PrivateKey actor, long claimId, CancellationToken cancellationToken = default) =>
        Run(Schemas.Settle, () => Engine.Settle(actor, claimId), cancellationToken);

    public Task<ActionReceipt> StakeAsync(PrivateKey account, long amount, CancellationToken cancellationToken = default) =>
        Run(Schemas.Stake, () => Engine.Stake(account, amount), cancellationToken);

    public Task<ActionReceipt> UnstakeAsync(PrivateKey account, long amount, CancellationToken cancellationToken = default) =>
        Run(Schemas.Unstake, () => Engine.Unstake(account, amount), cancellationToken);

    public Task<ActionReceipt> ProposeAsync(PrivateKey proposer, IReadOnlyDictionary<string, string> changes, string description,
        CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var (ev, id) = Engine.ProposeEvent(proposer, changes, description);
        return Done(Schemas.Propose, ev, id);
    }

    public Task<ActionReceipt> VoteAsync(PrivateKey voter, long proposalId, bool support, CancellationToken cancellationToken = default) =>
        Run(Schemas.Vote, () => Engine.Vote(voter, proposalId, support), cancellationToken);

    public Task<ActionReceipt> ExecuteAsync(PrivateKey actor, long proposalId, CancellationToken cancellationToken = default) =>
        Run(Schemas.Execute, () => Engine.Execute(actor, proposalId), cancellationToken);

    public void Dispose()
    {
        if (_ownsLedger) Engine.Ledger.Dispose();
    }
}
