using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Protocol.Core;

// One-call actions: build the request with the signer's next nonce, sign it and submit it.
public sealed partial class ProtocolEngine
{
    private LedgerEvent Send(PrivateKey signer, Func<string, long, UnsignedAction> build, IReadOnlyDictionary<string, string>? attachments = null,
        PrivateKey? coSigner = null)
    {
        ArgumentNullException.ThrowIfNull(signer);
        Refresh();
        string actor = Hex.Of(signer.Address);
        var unsigned = build(actor, _state.AccountOf(actor).Nonce);
        PrivateKey[] signers = coSigner is null ? [signer] : [signer, coSigner];
        return Submit(unsigned.Sign(_state.Domain, signers, attachments ?? new Dictionary<string, string>()));
    }

    /// <summary>The treasury creates <paramref name="amount"/> base units in <paramref name="to"/>'s balance.</summary>
    public LedgerEvent Mint(PrivateKey treasury, string to, long amount) => Send(treasury, (a, n) => Actions.Mint(a, to, amount, n));

    public LedgerEvent Transfer(PrivateKey from, string to, long amount) => Send(from, (a, n) => Actions.Transfer(a, to, amount, n));

    /// <summary>Moves balance into the user's escrow with <paramref name="host"/>, which that host's settled permits are charged to.</summary>
    public LedgerEvent Deposit(PrivateKey user, string host, long amount) => Send(user, (a, n) => Actions.Deposit(a, host, amount, n));

    /// <summary>Starts the refund delay of the user's escrow with <paramref name="host"/>; the host stops accepting the user's new permits.</summary>
    public LedgerEvent RequestRefund(PrivateKey user, string host) => Send(user, (a, n) => Actions.RequestRefund(a, host, n));

    /// <summary>Returns what is left of the user's escrow with <paramref name="host"/> once the refund delay has passed.</summary>
    public LedgerEvent Refund(PrivateKey user, string host) => Send(user, (a, n) => Actions.Refund(a, host, n));

    /// <summary>Locks <paramref name="amount"/> of the balance as governance stake.</summary>
    public LedgerEvent Stake(PrivateKey account, long amount) => Send(account, (a, n) => Actions.Stake(a, amount, n));

    /// <summary>Returns governance stake to the balance (not while a vote of the account is open, nor within VotingWindowSeconds of its last stake).</summary>
    public LedgerEvent Unstake(PrivateKey account, long amount) => Send(account, (a, n) => Actions.Unstake(a, amount, n));

    /// <summary>Pulls all withdrawable credits into the balance (fails when there are none).</summary>
    public LedgerEvent Withdraw(PrivateKey account) => Send(account, (a, n) => Actions.Withdraw(a, n));

    public LedgerEvent RegisterModel(PrivateKey owner, string modelId, string weightsDigest, string metadataJson, string licenceTerms,
        long pricePerQuery, long minCollateral) =>
        Send(owner, (a, n) => Actions.RegisterModel(a, modelId, weightsDigest, metadataJson, licenceTerms, pricePerQuery, minCollateral, n));

    public LedgerEvent AddVersion(PrivateKey owner, string modelId, string weightsDigest, string notes) =>
        Send(owner, (a, n) => Actions.AddVersion(a, modelId, weightsDigest, notes, n));

    /// <summary>Declares <paramref name="parentModelId"/> a parent of <paramref name="modelId"/> with a revenue share; the parent's owner co-signs.</summary>
    public LedgerEvent DeclareParent(PrivateKey owner, PrivateKey parentOwner, string modelId, string parentModelId, int shareBps) =>
        Send(owner, (a, n) => Actions.DeclareParent(a, modelId, parentModelId, shareBps, n),
            // as OmlProtocol.declareParent: no consent when the actor already owns the parent (a co-signature then is refused)
            coSigner: Hex.Of(parentOwner.Address) == Hex.Of(owner.Address)
                || (State.Models.TryGetValue(parentModelId, out var parent) && parent.Owner == Hex.Of(owner.Address)) ? null : parentOwner);

    public LedgerEvent TransferModel(PrivateKey owner, string modelId, string newOwner) => Send(owner, (a, n) => Actions.TransferModel(a, modelId, newOwner, n));

    public LedgerEvent AcceptModel(PrivateKey newOwner, string modelId) => Send(newOwner, (a, n) => Actions.AcceptModel(a, modelId, n));

    public LedgerEvent ApplyLicense(PrivateKey host, string modelId, long collateral, string endpoint) =>
        Send(host, (a, n) => Actions.ApplyLicense(a, modelId, collateral, endpoint, n));

    public LedgerEvent DeliverCopy(PrivateKey owner, string modelId, string host, string indicesRoot, int fingerprintCount, string copyDigest, string allocation) =>
        Send(owner, (a, n) => Actions.DeliverCopy(a, modelId, host, indicesRoot, fingerprintCount, copyDigest, allocation, n));

    /// <summary>Records a copy built by <see cref="Distribution.Omlizer"/>: its commitment root, size and weights digest.</summary>
    public LedgerEvent DeliverCopy(PrivateKey owner, Distribution.HostCopy copy) =>
        DeliverCopy(owner, copy.ModelId, copy.Host, "0x" + copy.Commitment.Root, copy.Commitment.Count, copy.CopyDigest, copy.AllocationScheme);

    public LedgerEvent AcknowledgeCopy(PrivateKey host, string modelId, string copyDigest) =>
        Send(host, (a, n) => Actions.AcknowledgeCopy(a, modelId, copyDigest, n));

    /// <summary>Announces the end of <paramref name="host"/>'s licence of <paramref name="modelId"/>: it takes no new
    /// permits, may commit usage up to the current epoch, and can release its collateral after the notice.</summary>
    public LedgerEvent AnnounceExit(PrivateKey host, string modelId) => Send(host, (a, n) => Actions.AnnounceExit(a, modelId, n));

    /// <summary>Moves what is left of the host's collateral (posted minus slashes) to its withdrawable credits, once the
    /// exit notice has passed and no revealed claim against the licence is open.</summary>
    public LedgerEvent ReleaseCollateral(PrivateKey host, string modelId) => Send(host, (a, n) => Actions.ReleaseCollateral(a, modelId, n));

    /// <summary>Commits a usage book: its receipts root and count, and settles its permits.</summary>
    public LedgerEvent CommitUsage(PrivateKey host, UsageBook book)
    {
        ArgumentNullException.ThrowIfNull(book);
        string permits = book.PermitsAttachment();
        return Send(host, (a, n) => Actions.CommitUsage(a, book.ModelId, book.Epoch, Hex.Of(book.Root()), book.Receipts.Count, permits, n),
            new Dictionary<string, string> { ["permits"] = permits });
    }

    /// <summary>Locks <paramref name="bond"/> behind the ticket's hiding commitment (bound to the prover); returns the claim id.</summary>
    public long CommitClaim(PrivateKey prover, ClaimTicket ticket, long bond) => CommitClaimEvent(prover, ticket, bond).ClaimId;

    /// <summary><see cref="CommitClaim"/>, also returning the event it appended.</summary>
    internal (LedgerEvent Event, long ClaimId) CommitClaimEvent(PrivateKey prover, ClaimTicket ticket, long bond)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        lock (_gate)
        {
            var ev = Send(prover, (a, n) => Actions.CommitClaim(a, ticket.CommitmentFor(a), bond, n));
            return (ev, _state.ClaimList.Count - 1);
        }
    }

    public LedgerEvent RevealClaim(PrivateKey prover, long claimId, ClaimTicket ticket)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        return Send(prover, (a, n) => Actions.RevealClaim(a, claimId, ticket.ModelId, ticket.Host, ticket.EvidenceJson, ticket.Salt, n),
            new Dictionary<string, string> { ["evidence"] = ticket.EvidenceJson });
    }

    public LedgerEvent Rebut(PrivateKey host, long claimId, Rebuttal rebuttal)
    {
        ArgumentNullException.ThrowIfNull(rebuttal);
        string json = rebuttal.ToJson();
        return Send(host, (a, n) => Actions.Rebut(a, claimId, json, n), new Dictionary<string, string> { ["rebuttal"] = json });
    }

    /// <summary>Closes a claim: slashes the host after an unrebutted reveal, or refunds an unrevealed bond to its prover.</summary>
    public LedgerEvent Settle(PrivateKey actor, long claimId) => Send(actor, (a, n) => Actions.Settle(a, claimId, n));

    public LedgerEvent FileAccusation(PrivateKey owner, string modelId, string host, string evidenceJson) =>
        Send(owner, (a, n) => Actions.FileAccusation(a, modelId, host, evidenceJson, n), new Dictionary<string, string> { ["evidence"] = evidenceJson });

    /// <summary>Proposes parameter changes (name → decimal value); returns the proposal id.</summary>
    public long Propose(PrivateKey owner, IReadOnlyDictionary<string, string> changes, string description) =>
        ProposeEvent(owner, changes, description).ProposalId;

    /// <summary><see cref="Propose"/>, also returning the event it appended.</summary>
    internal (LedgerEvent Event, long ProposalId) ProposeEvent(PrivateKey owner, IReadOnlyDictionary<string, string> changes, string description)
    {
        lock (_gate)
        {
            var ev = Send(owner, (a, n) => Actions.Propose(a, changes, description, n));
            return (ev, _state.ProposalList.Count - 1);
        }
    }

    public LedgerEvent Vote(PrivateKey owner, long proposalId, bool support) => Send(owner, (a, n) => Actions.Vote(a, proposalId, support, n));

    public LedgerEvent Execute(PrivateKey actor, long proposalId) => Send(actor, (a, n) => Actions.Execute(a, proposalId, n));
}
