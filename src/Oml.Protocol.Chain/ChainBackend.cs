using System.Numerics;
using System.Text;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;

namespace Oml.Protocol.Chain;

/// <summary>
/// <see cref="IProtocolBackend"/> over the OML contracts of one deployment on an EVM chain: each action is one
/// transaction (plus the ERC-20 approval it needs, when the allowance is short) sent by the signing key's own
/// <see cref="OmlChainClient"/> (cached by address, so each account's nonces are managed in one place), simulated
/// first so that a refusal costs nothing. A refusal whose custom error has a clear counterpart among the ledger's
/// rules is thrown as a <see cref="ProtocolException"/> with that code (the message keeps the error's name and
/// arguments, the <see cref="ChainRevertException"/> is its inner exception); any other is the
/// <see cref="ChainRevertException"/> itself. <see cref="State"/> is rebuilt from the contracts' events by a
/// <see cref="ChainProjector"/>; <see cref="VerifyAsync"/> checks it against the contracts' views. Protocol time is the
/// latest block's timestamp.
/// </summary>
public sealed class ChainBackend : IProtocolBackend
{
    private readonly Dictionary<string, OmlChainClient> _clients = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly OmlChainClient _reader;
    private ChainProjector? _projector;

    /// <summary>A backend on <paramref name="rpcUrl"/>; call <see cref="RefreshAsync"/> (or use <see cref="OpenAsync"/>) before reading <see cref="State"/>.</summary>
    public ChainBackend(string rpcUrl, OmlDeployment deployment)
    {
        RpcUrl = rpcUrl ?? throw new ArgumentNullException(nameof(rpcUrl));
        Deployment = deployment ?? throw new ArgumentNullException(nameof(deployment));
        _reader = OmlChainClient.ReadOnly(rpcUrl, deployment);
    }

    /// <summary>Opens the deployment at <paramref name="rpcUrl"/>, checks the node serves its chain id, and reads its events.</summary>
    /// <param name="journalDirectory">See <see cref="JournalDirectory"/>.</param>
    public static async Task<ChainBackend> OpenAsync(string rpcUrl, OmlDeployment deployment, string? journalDirectory = null,
        CancellationToken cancellationToken = default)
    {
        var backend = new ChainBackend(rpcUrl, deployment) { JournalDirectory = journalDirectory };
        try
        {
            await backend._reader.RequireDeploymentChainAsync().ConfigureAwait(false);
            await backend.RefreshAsync(cancellationToken).ConfigureAwait(false);
            return backend;
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    public string RpcUrl { get; }
    public OmlDeployment Deployment { get; }
    public string Kind => "chain";
    public string Description => $"chain {Deployment.ChainId} at {RpcUrl} (OmlProtocol {Deployment.Protocol}, OmlClaims {Deployment.Claims}, OmlGovernance {Deployment.Governance}, token {Deployment.Token})";
    public ProtocolDomain Domain => Deployment.Domain;

    /// <summary>The projector that rebuilds <see cref="State"/> from the contracts' events.</summary>
    public ChainProjector Projector => _projector ?? throw new InvalidOperationException("the chain backend has not read the chain yet: call RefreshAsync first");

    public ProtocolState State => Projector.State;

    /// <summary>The latest block's timestamp as of the last refresh.</summary>
    public long Now => Projector.State.LastTime;

    /// <summary>How long each action waits for its transaction's receipt before it throws <see cref="TimeoutException"/>
    /// (the transaction stays on record: the account's next action re-submits it, and the same action again is
    /// answered with its receipt instead of being sent twice).</summary>
    public TimeSpan ReceiptTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Hears of the steps of multi-step actions that wait on the chain (a registration's commitment and its
    /// delay); null: silent.</summary>
    public Action<string>? Progress { get; set; }

    /// <summary>Where signed transactions are recorded until their receipt (see <see cref="ChainSender.JournalDirectory"/>),
    /// so that a retry from another process is not applied twice; null: in memory only.</summary>
    public string? JournalDirectory { get; init; }

    /// <summary>The client that signs with <paramref name="key"/> (one per address, kept for its nonces).</summary>
    public OmlChainClient ClientFor(PrivateKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        string address = Hex.Of(key.Address);
        lock (_clients)
        {
            if (!_clients.TryGetValue(address, out var c))
            {
                _clients[address] = c = new OmlChainClient(RpcUrl, Deployment, "0x" + Convert.ToHexStringLower(key.ExportBytes()));
                c.Sender.JournalDirectory = JournalDirectory;
            }
            c.Sender.ReceiptTimeout = ReceiptTimeout;
            return c;
        }
    }

    public async Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _projector ??= await ChainProjector.CreateAsync(_reader).ConfigureAwait(false);
            await _projector.RefreshAsync(_reader, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Recomputes the check of the projection: refreshes, then compares <see cref="State"/> with what the contracts'
    /// views say at the block the projection reached (see <see cref="ChainVerifier"/>) and returns the first difference.
    /// </summary>
    public async Task<ChainVerification> VerifyAsync(CancellationToken cancellationToken = default)
    {
        await RefreshAsync(cancellationToken).ConfigureAwait(false);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await ChainVerifier.VerifyAsync(Projector.State, _reader, Projector.LastBlock, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    // ------------------------------------------------------------------ digests

    /// <summary>
    /// The bytes32 a ledger digest string is recorded as on chain: "0x" + 64 hex digits as they are, "sha256:" + 64 hex
    /// digits as those 32 bytes (the form of <c>FingerprintGenerator.WeightsDigest</c>), anything else as the Keccak-256
    /// of its UTF-8 bytes. The projection holds the 0x hex; compare a ledger digest through this function.
    /// </summary>
    public static string Digest32(string digest)
    {
        ArgumentNullException.ThrowIfNull(digest);
        static bool Hex64(string s) => s.Length == 64 && s.All(Uri.IsHexDigit);
        if (digest.StartsWith("0x", StringComparison.Ordinal) && Hex64(digest[2..])) return digest.ToLowerInvariant();
        if (digest.StartsWith("sha256:", StringComparison.Ordinal) && Hex64(digest[7..])) return "0x" + digest[7..].ToLowerInvariant();
        return Hex.Of(Keccak256.Hash(Encoding.UTF8.GetBytes(digest)));
    }

    // ------------------------------------------------------------------ errors

    /// <summary>The ledger rule a contract's custom error corresponds to, where one clearly does.</summary>
    public static ProtocolErrorCode? CodeOf(string errorName) => errorName switch
    {
        "NothingToWithdraw" => ProtocolErrorCode.NothingToWithdraw,
        "ZeroAmount" => ProtocolErrorCode.InvalidAmount,
        "SupplyCapExceeded" => ProtocolErrorCode.ArithmeticOverflow,
        "InvalidModelId" or "InvalidDigest" or "InvalidUsageRoot" or "TooFewReceipts" or "NoEvidence" or "RebuttalLength" or "InvalidAddress"
            => ProtocolErrorCode.InvalidRequest,
        "ModelExists" => ProtocolErrorCode.ModelExists,
        "UnknownModel" => ProtocolErrorCode.UnknownModel,
        "NotModelOwner" or "NotTreasury" or "NotProver" or "NotClaimedHost" or "BelowProposalThreshold" or "NotDeployer" or "NotClaims"
            or "NotGovernance" => ProtocolErrorCode.Unauthorized,
        "NotPendingOwner" or "NoPendingTransfer" => ProtocolErrorCode.NoPendingTransfer,
        "InvalidShare" or "SharesExceedWhole" or "TooManyParents" or "ParentExists" or "FamilyCycle" or "FamilyTreeTooLarge"
            => ProtocolErrorCode.InvalidFamilyTree,
        "ConsentExpired" or "BadConsentSignature" or "BadReceiptSignature" => ProtocolErrorCode.BadSignature,
        "LicenceExists" => ProtocolErrorCode.LicenceExists,
        "UnknownLicence" => ProtocolErrorCode.UnknownLicence,
        "CollateralTooLow" => ProtocolErrorCode.CollateralTooLow,
        "CopyAlreadyDelivered" => ProtocolErrorCode.CopyAlreadyDelivered,
        "CopyNotDelivered" => ProtocolErrorCode.CopyNotDelivered,
        "CopyDigestMismatch" => ProtocolErrorCode.DigestMismatch,
        "CopyNotAcknowledged" => ProtocolErrorCode.CopyNotAcknowledged,
        "NothingToRefund" or "InsufficientStake" or "ERC20InsufficientBalance" or "ERC20InsufficientAllowance" => ProtocolErrorCode.InsufficientFunds,
        "NoRefundRequested" or "RefundNotYetDue" or "RefundAlreadyRequested" => ProtocolErrorCode.RefundPending,
        "EpochNotStarted" => ProtocolErrorCode.EpochInvalid,
        "UsageAlreadyCommitted" => ProtocolErrorCode.UsageAlreadyCommitted,
        "InvalidParameter" or "InvalidChanges" or "ParameterFixed" => ProtocolErrorCode.InvalidParameters,
        "BondTooLow" => ProtocolErrorCode.BondTooLow,
        "DuplicateCommitment" or "RegistrationAlreadyCommitted" => ProtocolErrorCode.DuplicateCommitment,
        "RegistrationNotCommitted" => ProtocolErrorCode.CommitmentMismatch,
        "RegistrationTooEarly" or "RegistrationCommitExpired" => ProtocolErrorCode.WindowClosed,
        "UnknownClaim" => ProtocolErrorCode.UnknownClaim,
        "WrongClaimStatus" => ProtocolErrorCode.ClaimState,
        "RevealTooEarly" or "RevealWindowClosed" or "RebutWindowClosed" or "NotYetSettleable" or "VotingClosed" or "VotingOpen"
            => ProtocolErrorCode.WindowClosed,
        "CommitmentMismatch" => ProtocolErrorCode.CommitmentMismatch,
        "ExitAlreadyAnnounced" => ProtocolErrorCode.ExitAlreadyAnnounced,
        "ExitNotAnnounced" => ProtocolErrorCode.ExitNotAnnounced,
        "ReleaseNotDue" => ProtocolErrorCode.ReleaseNotDue,
        "OpenClaims" => ProtocolErrorCode.OpenClaims,
        "AlreadyReleased" => ProtocolErrorCode.AlreadyReleased,
        "UsageAfterExit" => ProtocolErrorCode.UsageAfterExit,
        "LicenceReleased" => ProtocolErrorCode.LicenceReleased,
        "InvalidProof" or "MalformedLeaf" or "UsageNotCommitted" or "ReceiptNotInUsage" => ProtocolErrorCode.InvalidProof,
        "ReceiptAlreadyClaimed" => ProtocolErrorCode.ReceiptClaimed,
        "AnswerMismatch" => ProtocolErrorCode.AnswerMismatch,
        "UsagePermitted" => ProtocolErrorCode.UsagePermitted,
        "NoPermitNamed" or "PermitMismatch" or "PermitNotSettled" => ProtocolErrorCode.InvalidPermit,
        "StakeLocked" => ProtocolErrorCode.StakeLocked,
        "UnknownProposal" => ProtocolErrorCode.UnknownProposal,
        "AlreadyVoted" => ProtocolErrorCode.AlreadyVoted,
        "NoVotingPower" => ProtocolErrorCode.NotEligibleToVote,
        "AlreadyExecuted" => ProtocolErrorCode.AlreadyExecuted,
        "NotPassed" => ProtocolErrorCode.ProposalFailed,
        _ => null,
    };

    private static Exception Map(ChainRevertException e) =>
        CodeOf(e.ErrorName) is { } code ? new ProtocolException(code, e.Message, e) : e;

    private async Task<ActionReceipt> Act(string action, Func<Task<ChainResult>> send, CancellationToken ct, Func<ChainResult, long>? id = null)
    {
        ct.ThrowIfCancellationRequested();
        ChainResult r;
        try
        {
            r = await send().ConfigureAwait(false);
        }
        catch (ChainRevertException e)
        {
            throw Map(e);
        }
        await RefreshAsync(ct).ConfigureAwait(false);
        return new ActionReceipt(action, r.TransactionHash, r.BlockNumber, id?.Invoke(r), (long)r.GasUsed);
    }

    private static BigInteger Amount(long amount, string what) =>
        amount >= 0 ? new BigInteger(amount) : throw new ProtocolException(ProtocolErrorCode.InvalidAmount, $"{what} must not be negative, got {amount}");

    private static async Task EnsureAllowanceAsync(OmlChainClient c, string spender, BigInteger amount, CancellationToken ct)
    {
        if (amount <= 0) return;
        var allowance = await c.Token.GetFunction("allowance").CallAsync<BigInteger>(c.Address, spender).ConfigureAwait(false);
        if (allowance < amount) await c.ApproveAsync(amount, spender, ct).ConfigureAwait(false);
    }


    // ------------------------------------------------------------------ money

    public Task<ActionReceipt> MintAsync(PrivateKey treasury, string to, long amount, CancellationToken cancellationToken = default) =>
        Act(Schemas.Mint, () => ClientFor(treasury).MintAsync(to, Amount(amount, "amount"), cancellationToken), cancellationToken);

    public Task<ActionReceipt> TransferAsync(PrivateKey from, string to, long amount, CancellationToken cancellationToken = default) =>
        Act(Schemas.Transfer, () => ClientFor(from).TransferAsync(to, Amount(amount, "amount"), cancellationToken), cancellationToken);

    public Task<ActionReceipt> WithdrawAsync(PrivateKey account, CancellationToken cancellationToken = default) =>
        Act(Schemas.Withdraw, () => ClientFor(account).WithdrawAsync(cancellationToken), cancellationToken);

    // ------------------------------------------------------------------ storage

    public Task<ActionReceipt> RegisterModelAsync(PrivateKey owner, string modelId, string weightsDigest, string metadataJson, string licenceTerms,
        long pricePerQuery, long minCollateral, CancellationToken cancellationToken = default) =>
        Act(Schemas.RegisterModel, () => ClientFor(owner).RegisterModelAsync(modelId, Digest32(weightsDigest), null, 0,
            Amount(pricePerQuery, "price"), Amount(minCollateral, "minimum collateral"), metadataJson, licenceTerms, cancellationToken, Progress), cancellationToken);

    public Task<ActionReceipt> AddVersionAsync(PrivateKey owner, string modelId, string weightsDigest, string notes, CancellationToken cancellationToken = default) =>
        Act(Schemas.AddVersion, () => ClientFor(owner).AddVersionAsync(modelId, Digest32(weightsDigest), null, 0, notes, cancellationToken), cancellationToken);

    public Task<ActionReceipt> DeclareParentAsync(PrivateKey owner, PrivateKey parentOwner, string modelId, string parentModelId, int shareBps,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(parentOwner);
        var client = ClientFor(owner);
        return Act(Schemas.DeclareParent, async () =>
        {
            string parentAddress = Hex.Of(parentOwner.Address);
            // the consent is checked against the parent model's current owner; one signature suffices when it is the sender
            long deadline = await _reader.LatestBlockTimeAsync().ConfigureAwait(false) + 3_600;
            Signature? consent = null;
            if (parentAddress != client.Address)
            {
                long nonce = (long)await client.ConsentNonceAsync(parentAddress).ConfigureAwait(false);
                consent = OmlChainClient.SignParentConsent(Domain, parentOwner, modelId, parentModelId, shareBps, client.Address, nonce, deadline);
            }
            return await client.DeclareParentAsync(modelId, parentModelId, shareBps, deadline, consent, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);
    }

    public Task<ActionReceipt> TransferModelAsync(PrivateKey owner, string modelId, string newOwner, CancellationToken cancellationToken = default) =>
        Act(Schemas.TransferModel, () => ClientFor(owner).TransferModelAsync(modelId, newOwner, cancellationToken), cancellationToken);

    public Task<ActionReceipt> AcceptModelAsync(PrivateKey newOwner, string modelId, CancellationToken cancellationToken = default) =>
        Act(Schemas.AcceptModel, () => ClientFor(newOwner).AcceptModelAsync(modelId, cancellationToken), cancellationToken);

    // ------------------------------------------------------------------ distribution

    public Task<ActionReceipt> ApplyLicenseAsync(PrivateKey host, string modelId, long collateral, string endpoint, CancellationToken cancellationToken = default)
    {
        var client = ClientFor(host);
        return Act(Schemas.ApplyLicense, async () =>
        {
            var amount = Amount(collateral, "collateral");
            await EnsureAllowanceAsync(client, Deployment.Protocol, amount, cancellationToken).ConfigureAwait(false);
            return await client.ApplyLicenseAsync(modelId, amount, endpoint, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);
    }

    public Task<ActionReceipt> DeliverCopyAsync(PrivateKey owner, HostCopy copy, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(copy);
        return Act(Schemas.DeliverCopy, () => ClientFor(owner).DeliverCopyAsync(copy.ModelId, copy.Host, "0x" + copy.Commitment.Root,
            copy.Commitment.Count, Digest32(copy.CopyDigest), copy.AllocationScheme, cancellationToken), cancellationToken);
    }

    public Task<ActionReceipt> AcknowledgeCopyAsync(PrivateKey host, string modelId, string copyDigest, CancellationToken cancellationToken = default) =>
        Act(Schemas.AcknowledgeCopy, () => ClientFor(host).AcknowledgeCopyAsync(modelId, Digest32(copyDigest), cancellationToken), cancellationToken);

    public Task<ActionReceipt> AnnounceExitAsync(PrivateKey host, string modelId, CancellationToken cancellationToken = default) =>
        Act(Schemas.AnnounceExit, () => ClientFor(host).AnnounceExitAsync(modelId, cancellationToken), cancellationToken);

    public Task<ActionReceipt> ReleaseCollateralAsync(PrivateKey host, string modelId, CancellationToken cancellationToken = default) =>
        Act(Schemas.ReleaseCollateral, () => ClientFor(host).ReleaseCollateralAsync(modelId, cancellationToken), cancellationToken);

    public Task<ActionReceipt> FileAccusationAsync(PrivateKey owner, string modelId, string host, string evidenceJson, CancellationToken cancellationToken = default) =>
        Act(Schemas.FileAccusation, () => ClientFor(owner).FileAccusationAsync(modelId, host, ClaimEvidence.Hash(evidenceJson), cancellationToken), cancellationToken);

    // ------------------------------------------------------------------ access

    public Task<ActionReceipt> DepositAsync(PrivateKey user, string host, long amount, CancellationToken cancellationToken = default)
    {
        var client = ClientFor(user);
        return Act(Schemas.Deposit, async () =>
        {
            var a = Amount(amount, "amount");
            await EnsureAllowanceAsync(client, Deployment.Protocol, a, cancellationToken).ConfigureAwait(false);
            return await client.DepositAsync(host, a, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);
    }

    public Task<ActionReceipt> RequestRefundAsync(PrivateKey user, string host, CancellationToken cancellationToken = default) =>
        Act(Schemas.RequestRefund, () => ClientFor(user).RequestRefundAsync(host, cancellationToken), cancellationToken);

    public Task<ActionReceipt> RefundAsync(PrivateKey user, string host, CancellationToken cancellationToken = default) =>
        Act(Schemas.Refund, () => ClientFor(user).RefundAsync(host, cancellationToken), cancellationToken);

    public Task<ActionReceipt> CommitUsageAsync(PrivateKey host, UsageBook book, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(book);
        if (book.Domain != Domain)
            return Task.FromException<ActionReceipt>(new ProtocolException(ProtocolErrorCode.WrongDomain, $"the usage book's receipts are signed for chain {book.Domain.ChainId} / {book.Domain.VerifyingContract}, not this deployment's {Domain.ChainId} / {Domain.VerifyingContract}"));
        return Act(Schemas.CommitUsage, () => ClientFor(host).CommitUsageAsync(book, cancellationToken), cancellationToken);
    }

    // ------------------------------------------------------------------ claims

    /// <summary>The ticket's evidence as OmlClaims' items.</summary>
    public static IReadOnlyList<EvidenceTuple> EvidenceItems(ClaimTicket ticket)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        return ClaimEvidence.FromJson(ticket.EvidenceJson).Items.Select(i => OmlChainClient.Evidence(i.Fingerprint, i.Answer, i.Receipt)).ToList();
    }

    /// <summary>The commitment OmlClaims expects for <paramref name="ticket"/> (its evidence hash is over the ABI-encoded items).</summary>
    public async Task<string> ClaimCommitmentAsync(ClaimTicket ticket, string prover, CancellationToken cancellationToken = default)
    {
        var items = EvidenceItems(ticket);
        var evidenceHash = await _reader.EvidenceHashAsync(items).ConfigureAwait(false);
        return Hex.Of(await _reader.CommitmentAsync(ticket.ModelId, ticket.Host, evidenceHash, Hex.Decode(ticket.Salt), Hex.Address(prover)).ConfigureAwait(false));
    }

    public Task<ActionReceipt> CommitClaimAsync(PrivateKey prover, ClaimTicket ticket, long bond, CancellationToken cancellationToken = default)
    {
        var client = ClientFor(prover);
        return Act(Schemas.CommitClaim, async () =>
        {
            string commitment = await ClaimCommitmentAsync(ticket, client.Address, cancellationToken).ConfigureAwait(false);
            var b = Amount(bond, "bond");
            await EnsureAllowanceAsync(client, Deployment.Protocol, b, cancellationToken).ConfigureAwait(false);
            return await client.CommitClaimAsync(commitment, b, cancellationToken).ConfigureAwait(false);
        }, cancellationToken, r => (long)r.Single("ClaimCommitted").Int("claimId"));
    }

    public Task<ActionReceipt> RevealClaimAsync(PrivateKey prover, long claimId, ClaimTicket ticket, CancellationToken cancellationToken = default) =>
        Act(Schemas.RevealClaim, () => ClientFor(prover).RevealClaimAsync(claimId, ticket.ModelId, ticket.Host, Hex.Decode(ticket.Salt),
            EvidenceItems(ticket), cancellationToken), cancellationToken);

    /// <summary>The rebuttal as OmlClaims' items (the permit's fields and the receipt's place in the usage root).</summary>
    public static IReadOnlyList<RebuttalTuple> RebuttalItems(Rebuttal rebuttal)
    {
        ArgumentNullException.ThrowIfNull(rebuttal);
        return rebuttal.Items.Select(i => new RebuttalTuple
        {
            User = i.Permit.Permit.User, Nonce = i.Permit.Permit.Nonce, Expiry = i.Permit.Permit.Expiry, Fee = i.Permit.Permit.Fee,
            Epoch = i.Epoch, ReceiptIndex = i.ReceiptProof.LeafIndex,
            Proof = [.. i.ReceiptProof.Steps.Select(s => s.Sibling.AsSpan().ToArray())],
        }).ToList();
    }

    public Task<ActionReceipt> RebutAsync(PrivateKey host, long claimId, Rebuttal rebuttal, CancellationToken cancellationToken = default) =>
        Act(Schemas.Rebut, () => ClientFor(host).RebutAsync(claimId, RebuttalItems(rebuttal), cancellationToken), cancellationToken);

    public Task<ActionReceipt> SettleAsync(PrivateKey actor, long claimId, CancellationToken cancellationToken = default) =>
        Act(Schemas.Settle, () => ClientFor(actor).SettleAsync(claimId, cancellationToken), cancellationToken);

    // ------------------------------------------------------------------ governance

    public Task<ActionReceipt> StakeAsync(PrivateKey account, long amount, CancellationToken cancellationToken = default)
    {
        var client = ClientFor(account);
        return Act(Schemas.Stake, async () =>
        {
            var a = Amount(amount, "amount");
            await EnsureAllowanceAsync(client, Deployment.Governance, a, cancellationToken).ConfigureAwait(false);
            return await client.StakeAsync(a, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);
    }

    public Task<ActionReceipt> UnstakeAsync(PrivateKey account, long amount, CancellationToken cancellationToken = default) =>
        Act(Schemas.Unstake, () => ClientFor(account).UnstakeAsync(Amount(amount, "amount"), cancellationToken), cancellationToken);

    /// <summary>Parameter changes by name as OmlProtocol's (id, value) pairs.</summary>
    public static IReadOnlyList<(ChainParam Id, BigInteger Value)> ChangesOf(IReadOnlyDictionary<string, string> changes)
    {
        ArgumentNullException.ThrowIfNull(changes);
        var list = new List<(ChainParam, BigInteger)>();
        foreach (var (name, text) in changes.OrderBy(c => ProtocolParameters.Names.ToList().IndexOf(c.Key)))
        {
            int id = ProtocolParameters.Names.ToList().IndexOf(name);
            if (id < 0) throw new ProtocolException(ProtocolErrorCode.InvalidParameters, $"unknown parameter '{name}' (known: {string.Join(", ", ProtocolParameters.Names)})");
            if (!BigInteger.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v))
                throw new ProtocolException(ProtocolErrorCode.InvalidParameters, $"parameter {name}: '{text}' is not a non-negative integer");
            list.Add(((ChainParam)id, v));
        }
        return list;
    }

    public Task<ActionReceipt> ProposeAsync(PrivateKey proposer, IReadOnlyDictionary<string, string> changes, string description,
        CancellationToken cancellationToken = default) =>
        Act(Schemas.Propose, () => ClientFor(proposer).ProposeAsync(ChangesOf(changes), description, cancellationToken), cancellationToken,
            r => (long)r.Single("Proposed").Int("proposalId"));

    public Task<ActionReceipt> VoteAsync(PrivateKey voter, long proposalId, bool support, CancellationToken cancellationToken = default) =>
        Act(Schemas.Vote, () => ClientFor(voter).VoteAsync(proposalId, support, cancellationToken), cancellationToken);

    public Task<ActionReceipt> ExecuteAsync(PrivateKey actor, long proposalId, CancellationToken cancellationToken = default) =>
        Act(Schemas.Execute, () => ClientFor(actor).ExecuteAsync(proposalId, cancellationToken), cancellationToken);

    public void Dispose() => _gate.Dispose();
}
