using Oml.Protocol.Crypto;

namespace Oml.Protocol.Core;

/// <summary>
/// Builders for every ledger request, from plain parameters (addresses as "0x" hex, hashes as "0x" hex, amounts in
/// base units). Sign the result with <see cref="UnsignedAction.Sign(ProtocolDomain, PrivateKey, PrivateKey[])"/> and
/// submit it with <see cref="ProtocolEngine.Submit"/>; or use the engine's one-call methods, which fill in the nonce.
/// </summary>
public static class Actions
{
    private static MessageBuilder B(string actor) => new MessageBuilder().Address("actor", actor);
    private static UnsignedAction U(string type, MessageBuilder b, long nonce) => new(type, b.UInt("nonce", nonce).Build());

    public static UnsignedAction Genesis(string treasury, long chainId, ProtocolParameters parameters) =>
        U(Schemas.Genesis, B(treasury).UInt("chainId", chainId).Str("parameters", parameters.ToJson()), 0);

    public static UnsignedAction Mint(string treasury, string to, long amount, long nonce) =>
        U(Schemas.Mint, B(treasury).Address("to", to).UInt("amount", amount), nonce);

    public static UnsignedAction Transfer(string from, string to, long amount, long nonce) =>
        U(Schemas.Transfer, B(from).Address("to", to).UInt("amount", amount), nonce);

    /// <summary>Moves <paramref name="amount"/> of the user's balance into its escrow with <paramref name="host"/>.</summary>
    public static UnsignedAction Deposit(string user, string host, long amount, long nonce) =>
        U(Schemas.Deposit, B(user).Address("host", host).UInt("amount", amount), nonce);

    /// <summary>Announces that the user will take back its escrow with <paramref name="host"/> (after RefundDelaySeconds).</summary>
    public static UnsignedAction RequestRefund(string user, string host, long nonce) => U(Schemas.RequestRefund, B(user).Address("host", host), nonce);

    /// <summary>Returns what is left of the user's escrow with <paramref name="host"/> to its balance, once the refund delay has passed.</summary>
    public static UnsignedAction Refund(string user, string host, long nonce) => U(Schemas.Refund, B(user).Address("host", host), nonce);

    /// <summary>Locks balance as governance stake.</summary>
    public static UnsignedAction Stake(string account, long amount, long nonce) => U(Schemas.Stake, B(account).UInt("amount", amount), nonce);

    public static UnsignedAction Unstake(string account, long amount, long nonce) => U(Schemas.Unstake, B(account).UInt("amount", amount), nonce);

    public static UnsignedAction Withdraw(string account, long nonce) => U(Schemas.Withdraw, B(account), nonce);

    public static UnsignedAction RegisterModel(string owner, string modelId, string weightsDigest, string metadataJson,
        string licenceTerms, long pricePerQuery, long minCollateral, long nonce) =>
        U(Schemas.RegisterModel, B(owner).Str("modelId", modelId).Str("weightsDigest", weightsDigest).Str("metadata", metadataJson)
            .Str("licenceTerms", licenceTerms).UInt("pricePerQuery", pricePerQuery).UInt("minCollateral", minCollateral), nonce);

    public static UnsignedAction AddVersion(string owner, string modelId, string weightsDigest, string notes, long nonce) =>
        U(Schemas.AddVersion, B(owner).Str("modelId", modelId).Str("weightsDigest", weightsDigest).Str("notes", notes), nonce);

    /// <summary>Signed by the child model's owner and co-signed by the parent model's owner.</summary>
    public static UnsignedAction DeclareParent(string owner, string modelId, string parentModelId, int shareBps, long nonce) =>
        U(Schemas.DeclareParent, B(owner).Str("modelId", modelId).Str("parentModelId", parentModelId).UInt("shareBps", shareBps), nonce);

    public static UnsignedAction TransferModel(string owner, string modelId, string newOwner, long nonce) =>
        U(Schemas.TransferModel, B(owner).Str("modelId", modelId).Address("newOwner", newOwner), nonce);

    public static UnsignedAction AcceptModel(string newOwner, string modelId, long nonce) =>
        U(Schemas.AcceptModel, B(newOwner).Str("modelId", modelId), nonce);

    public static UnsignedAction ApplyLicense(string host, string modelId, long collateral, string endpoint, long nonce) =>
        U(Schemas.ApplyLicense, B(host).Str("modelId", modelId).UInt("collateral", collateral).Str("endpoint", endpoint), nonce);

    public static UnsignedAction DeliverCopy(string owner, string modelId, string host, string indicesRoot, int fingerprintCount,
        string copyDigest, string allocation, long nonce) =>
        U(Schemas.DeliverCopy, B(owner).Str("modelId", modelId).Address("host", host).Bytes32("indicesRoot", indicesRoot)
            .UInt("fingerprintCount", fingerprintCount).Str("copyDigest", copyDigest).Str("allocation", allocation), nonce);

    public static UnsignedAction AcknowledgeCopy(string host, string modelId, string copyDigest, long nonce) =>
        U(Schemas.AcknowledgeCopy, B(host).Str("modelId", modelId).Str("copyDigest", copyDigest), nonce);

    /// <summary>The host announces the end of its licence (no new permits; usage up to this epoch; collateral released after the notice).</summary>
    public static UnsignedAction AnnounceExit(string host, string modelId, long nonce) => U(Schemas.AnnounceExit, B(host).Str("modelId", modelId), nonce);

    /// <summary>After the exit notice, with no open claim, the host's remaining collateral becomes withdrawable.</summary>
    public static UnsignedAction ReleaseCollateral(string host, string modelId, long nonce) => U(Schemas.ReleaseCollateral, B(host).Str("modelId", modelId), nonce);

    /// <summary>Attach the permits JSON (<see cref="Access.UsageBook.PermitsAttachment"/>) as "permits".</summary>
    public static UnsignedAction CommitUsage(string host, string modelId, long epoch, string receiptsRoot, long receiptCount,
        string permitsAttachment, long nonce) =>
        U(Schemas.CommitUsage, B(host).Str("modelId", modelId).UInt("epoch", epoch).Bytes32("receiptsRoot", receiptsRoot)
            .UInt("receiptCount", receiptCount).Bytes32("permitsHash", Access.UsageBook.AttachmentHash(permitsAttachment)), nonce);

    public static UnsignedAction CommitClaim(string prover, string commitment, long bond, long nonce) =>
        U(Schemas.CommitClaim, B(prover).Bytes32("commitment", commitment).UInt("bond", bond), nonce);

    /// <summary>Attach the evidence JSON as "evidence".</summary>
    public static UnsignedAction RevealClaim(string prover, long claimId, string modelId, string host, string evidenceJson, string salt, long nonce) =>
        U(Schemas.RevealClaim, B(prover).UInt("claimId", claimId).Str("modelId", modelId).Address("host", host)
            .Bytes32("evidenceHash", Claims.ClaimEvidence.Hash(evidenceJson)).Bytes32("salt", salt), nonce);

    /// <summary>Attach the rebuttal JSON as "rebuttal".</summary>
    public static UnsignedAction Rebut(string host, long claimId, string rebuttalJson, long nonce) =>
        U(Schemas.Rebut, B(host).UInt("claimId", claimId).Bytes32("evidenceHash", Claims.ClaimEvidence.Hash(rebuttalJson)), nonce);

    public static UnsignedAction Settle(string actor, long claimId, long nonce) => U(Schemas.Settle, B(actor).UInt("claimId", claimId), nonce);

    /// <summary>Attach the trace report JSON as "evidence".</summary>
    public static UnsignedAction FileAccusation(string owner, string modelId, string host, string evidenceJson, long nonce) =>
        U(Schemas.FileAccusation, B(owner).Str("modelId", modelId).Address("host", host).Bytes32("evidenceHash", Claims.ClaimEvidence.Hash(evidenceJson)), nonce);

    public static UnsignedAction Propose(string owner, IReadOnlyDictionary<string, string> changes, string description, long nonce) =>
        U(Schemas.Propose, B(owner).Str("changes", ProtocolParameters.ChangesToJson(changes)).Str("description", description), nonce);

    public static UnsignedAction Vote(string owner, long proposalId, bool support, long nonce) =>
        U(Schemas.Vote, B(owner).UInt("proposalId", proposalId).Bool("support", support), nonce);

    public static UnsignedAction Execute(string actor, long proposalId, long nonce) => U(Schemas.Execute, B(actor).UInt("proposalId", proposalId), nonce);
}
