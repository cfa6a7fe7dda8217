using System.Numerics;
using System.Text;
using System.Text.Json;
using Nethereum.ABI.Model;
using Nethereum.Contracts;
using Nethereum.RPC.Eth.DTOs;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Chain;

/// <summary>Where the protocol's contracts live on one chain (written by <see cref="OmlChainClient.DeployAsync"/>).</summary>
public sealed record OmlDeployment(long ChainId, string Token, string Protocol, string Claims, string Governance, long DeployedAtBlock)
{
    /// <summary>The EIP-712 domain every permit, receipt and consent of this deployment is signed for.</summary>
    public ProtocolDomain Domain => new(ChainId, Protocol.ToLowerInvariant());

    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true });

    public static OmlDeployment FromJson(string json) =>
        JsonSerializer.Deserialize<OmlDeployment>(json) ?? throw new FormatException("deployment JSON is null");

    /// <summary>Writes the deployment file atomically (temp file, fsync, rename).</summary>
    public void Save(string path)
    {
        var full = Path.GetFullPath(path);
        var tmp = full + ".tmp-" + Environment.ProcessId;
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            fs.Write(Encoding.UTF8.GetBytes(ToJson()));
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, full, overwrite: true);
    }

    public static OmlDeployment Load(string path) => FromJson(File.ReadAllText(path));
}

/// <summary>The protocol's parameters in OmlProtocol's order (Param in IOmlProtocol.sol).</summary>
public enum ChainParam : byte
{
    HostFeeShareBps, SlashFractionBps, ProverRewardBps, MinBond, RevealWindowSeconds, RebutWindowSeconds, EpochSeconds,
    MinCollateral, VotingWindowSeconds, QuorumBps, RefundDelaySeconds, ProposalThreshold,
}

/// <summary>
/// A typed client of the OML contracts for one signing account: every protocol action as an async method that
/// simulates, signs, sends and waits (see <see cref="ChainSender"/>), returning the decoded events; views; and the
/// EIP-712 helpers, which use <c>Oml.Protocol.Crypto</c> so that permits and receipts signed for the embedded
/// ledger's types are accepted by the contracts when signed for <see cref="OmlDeployment.Domain"/>.
/// </summary>
public sealed class OmlChainClient
{
    private readonly Dictionary<string, (string Name, ContractABI Abi)> _contracts = new(StringComparer.OrdinalIgnoreCase);

    public OmlChainClient(string rpcUrl, OmlDeployment deployment, string privateKeyHex)
    {
        Deployment = deployment;
        RpcUrl = rpcUrl;
        Sender = new ChainSender(rpcUrl, privateKeyHex, deployment.ChainId);
        Token = Sender.Web3.Eth.GetContract(ContractArtifact.OmlToken.Abi, deployment.Token);
        Protocol = Sender.Web3.Eth.GetContract(ContractArtifact.OmlProtocol.Abi, deployment.Protocol);
        Claims = Sender.Web3.Eth.GetContract(ContractArtifact.OmlClaims.Abi, deployment.Claims);
        Governance = Sender.Web3.Eth.GetContract(ContractArtifact.OmlGovernance.Abi, deployment.Governance);
        foreach (var (name, c) in new[] { ("OmlToken", Token), ("OmlProtocol", Protocol), ("OmlClaims", Claims), ("OmlGovernance", Governance) })
            _contracts[c.Address] = (name, c.ContractBuilder.ContractABI);
    }

    /// <summary>A client that only calls views and reads logs: its key is random, thrown away and never signs.</summary>
    public static OmlChainClient ReadOnly(string rpcUrl, OmlDeployment deployment)
    {
        using var key = PrivateKey.Generate();
        return new OmlChainClient(rpcUrl, deployment, "0x" + Convert.ToHexStringLower(key.ExportBytes()));
    }

    /// <summary>Throws <see cref="ProtocolException"/> (WrongDomain) unless the node serves the deployment's chain id.</summary>
    public async Task RequireDeploymentChainAsync()
    {
        long chainId = (long)(await Sender.Web3.Eth.ChainId.SendRequestAsync().ConfigureAwait(false)).Value;
        if (chainId != Deployment.ChainId)
            throw new ProtocolException(ProtocolErrorCode.WrongDomain, $"the node at {RpcUrl} serves chain {chainId}, the deployment is on chain {Deployment.ChainId}");
    }

    public OmlDeployment Deployment { get; }

    /// <summary>The JSON-RPC endpoint this client talks to.</summary>
    public string RpcUrl { get; }
    public ChainSender Sender { get; }
    public Contract Token { get; }
    public Contract Protocol { get; }
    public Contract Claims { get; }
    public Contract Governance { get; }
    public string Address => Sender.AddressHex.ToLowerInvariant();
    public ProtocolDomain Domain => Deployment.Domain;

    /// <summary>Also decode events of another contract (e.g. a test helper) in results.</summary>
    public void Track(string name, string address, string abi) =>
        _contracts[address] = (name, new ContractBuilder(abi, address).ContractABI);

    /// <summary>The default parameters (ProtocolParameters' defaults plus RefundDelaySeconds = 2 epochs and
    /// ProposalThreshold = 1).</summary>
    public static BigInteger[] DefaultParameters()
    {
        var p = new ProtocolParameters();
        return [p.HostFeeShareBps, p.SlashFractionBps, p.ProverRewardBps, p.MinBond, p.RevealWindowSeconds, p.RebutWindowSeconds,
            p.EpochSeconds, p.MinCollateral, p.VotingWindowSeconds, p.QuorumBps, 2 * p.EpochSeconds, 1];
    }

    /// <summary>The registration delay of a deployment unless one is given: a minute, as ENS's commit-reveal waits. A
    /// front-runner must keep the owner's reveal out of the chain that long to take the id.</summary>
    public const long DefaultRegistrationDelaySeconds = 60;

    /// <summary>Deploys OmlToken (minted by <paramref name="treasury"/>; or uses <paramref name="existingToken"/>),
    /// OmlProtocol, OmlClaims and OmlGovernance, and binds them (OmlProtocol.initialize).</summary>
    public static async Task<OmlDeployment> DeployAsync(string rpcUrl, long chainId, string deployerKeyHex, string treasury,
        BigInteger[]? parameters = null, string? existingToken = null, CancellationToken ct = default,
        long registrationDelaySeconds = DefaultRegistrationDelaySeconds)
    {
        parameters ??= DefaultParameters();
        if (registrationDelaySeconds < 0 || registrationDelaySeconds > 3600)
            throw new ArgumentOutOfRangeException(nameof(registrationDelaySeconds), "the registration delay must be in [0, 3600] seconds");
        if (parameters.Length != 12) throw new ArgumentException("there are 12 parameters", nameof(parameters));
        var sender = new ChainSender(rpcUrl, deployerKeyHex, chainId);
        async Task<(string Address, long Block)> Deploy(ContractArtifact a, params object[] args)
        {
            var data = new Nethereum.ABI.FunctionEncoding.ConstructorCallEncoder().EncodeRequest(a.Bytecode,
                new ContractBuilder(a.Abi, null).ContractABI.Constructor?.InputParameters ?? [], args);
            var r = await sender.SendAsync(null, data, $"deploy {a.Name}", ct).ConfigureAwait(false);
            return (r.ContractAddress, (long)r.BlockNumber.Value);
        }
        var (token, first) = existingToken is null ? await Deploy(ContractArtifact.OmlToken, treasury).ConfigureAwait(false) : (existingToken, 0L);
        var (protocol, b1) = await Deploy(ContractArtifact.OmlProtocol, token, treasury, parameters,
            new BigInteger(registrationDelaySeconds)).ConfigureAwait(false);
        var (claims, _) = await Deploy(ContractArtifact.OmlClaims, protocol).ConfigureAwait(false);
        var (governance, _) = await Deploy(ContractArtifact.OmlGovernance, protocol, token).ConfigureAwait(false);
        var init = sender.Web3.Eth.GetContract(ContractArtifact.OmlProtocol.Abi, protocol).GetFunction("initialize").GetData(claims, governance);
        await sender.SendAsync(protocol, init, "initialize", ct).ConfigureAwait(false);
        return new OmlDeployment(chainId, token.ToLowerInvariant(), protocol.ToLowerInvariant(), claims.ToLowerInvariant(),
            governance.ToLowerInvariant(), existingToken is null ? first : b1);
    }

    // ------------------------------------------------------------------ plumbing

    private async Task<ChainResult> Send(Contract c, string function, string description, CancellationToken ct, params object[] args)
    {
        var data = c.GetFunction(function).GetData(args);
        var receipt = await Sender.SendAsync(c.Address, data, description, ct).ConfigureAwait(false);
        return ToResult(receipt);
    }

    /// <summary>Decodes a receipt's logs into events of the known contracts.</summary>
    public ChainResult ToResult(TransactionReceipt receipt) =>
        new(receipt.TransactionHash, (long)receipt.BlockNumber.Value, receipt.GasUsed.Value, DecodeLogs(receipt.Logs ?? []));

    public IReadOnlyList<ChainEvent> DecodeLogs(IEnumerable<FilterLog> logs)
    {
        var list = new List<ChainEvent>();
        foreach (var log in logs)
        {
            if (!_contracts.TryGetValue(log.Address, out var c) || log.Topics is null || log.Topics.Length == 0) continue;
            var topic = log.Topics[0]?.ToString();
            var ev = c.Abi.Events.FirstOrDefault(e => string.Equals("0x" + e.Sha3Signature, topic, StringComparison.OrdinalIgnoreCase));
            if (ev is null) continue;
            var decoded = ev.DecodeEventDefaultTopics(log);
            var args = decoded.Event.ToDictionary(p => p.Parameter.Name, p => Normalize(p.Result));
            list.Add(new ChainEvent(ev.Name, c.Name, args, (long)log.BlockNumber.Value, log.TransactionHash, (long)log.LogIndex.Value));
        }
        return list;
    }

    private static object? Normalize(object? v) => v is string s && s.StartsWith("0x", StringComparison.Ordinal) ? s.ToLowerInvariant() : v;

    /// <summary>Every event of the four contracts in a block range (for rebuilding a local view).</summary>
    public async Task<IReadOnlyList<ChainEvent>> EventsAsync(long fromBlock, long? toBlock = null)
    {
        var filter = new NewFilterInput
        {
            FromBlock = new BlockParameter((ulong)fromBlock),
            ToBlock = toBlock is long t ? new BlockParameter((ulong)t) : BlockParameter.CreateLatest(),
            Address = [Deployment.Token, Deployment.Protocol, Deployment.Claims, Deployment.Governance],
        };
        var logs = await Sender.Web3.Eth.Filters.GetLogs.SendRequestAsync(filter).ConfigureAwait(false);
        return DecodeLogs(logs);
    }

    private Task<T> Call<T>(Contract c, string function, params object[] args) => c.GetFunction(function).CallAsync<T>(args);

    public static byte[] ModelKey(string modelId) => Keccak256.Hash(Encoding.UTF8.GetBytes(modelId));

    private static byte[] B32(string hex)
    {
        var b = Convert.FromHexString(hex.StartsWith("0x", StringComparison.Ordinal) ? hex[2..] : hex);
        if (b.Length != 32) throw new ArgumentException($"expected 32 bytes of hex, got {b.Length}");
        return b;
    }

    // ------------------------------------------------------------------ token

    public Task<ChainResult> MintAsync(string to, BigInteger amount, CancellationToken ct = default) =>
        Send(Token, "mint", $"mint {amount} to {to}", ct, to, amount);

    public Task<ChainResult> TransferAsync(string to, BigInteger amount, CancellationToken ct = default) =>
        Send(Token, "transfer", $"transfer {amount} to {to}", ct, to, amount);

    /// <summary>Allows <paramref name="spender"/> (default: OmlProtocol, which pulls collateral, deposits and bonds)
    /// to take <paramref name="amount"/> of this account's tokens.</summary>
    public Task<ChainResult> ApproveAsync(BigInteger amount, string? spender = null, CancellationToken ct = default) =>
        Send(Token, "approve", $"approve {amount}", ct, spender ?? Deployment.Protocol, amount);

    public Task<BigInteger> BalanceOfAsync(string account) => Call<BigInteger>(Token, "balanceOf", account);

    // ------------------------------------------------------------------ storage layer

    /// <summary>
    /// Registers <paramref name="modelId"/> in OmlProtocol's two steps, so that nobody watching the mempool can take the
    /// id (or the record of these weights) by copying the call: commits to the registration (a commitment bound to this
    /// account, with a salt derived from its key), waits the deployment's <c>registrationDelay</c> and a later block,
    /// then reveals it with <c>registerModel</c>. Resumable: the salt is deterministic, so a rerun after a crash between
    /// the two steps finds its live commitment and only reveals. Returns the reveal's result; <paramref name="progress"/>
    /// hears of the commitment and the wait.
    /// </summary>
    public async Task<ChainResult> RegisterModelAsync(string modelId, string weightsDigest, string? fingerprintRoot, int fingerprintCount,
        BigInteger pricePerQuery, BigInteger minCollateral, string metadata = "", string licenceTerms = "", CancellationToken ct = default,
        Action<string>? progress = null)
    {
        var digest = B32(weightsDigest);
        var root = fingerprintRoot is null ? new byte[32] : B32(fingerprintRoot);
        // Registered already? By this account with these weights: an earlier run's reveal landed (its receipt lost to a
        // time-out or a crash), so answer with that registration. By anyone else, or other weights: refuse now, before
        // a commitment costs gas and the delay.
        string owner = (await Call<string>(Protocol, "modelOwner", ModelKey(modelId)).ConfigureAwait(false)).ToLowerInvariant();
        if (owner != Hex.ZeroAddress)
        {
            if (owner == Address && await RegistrationOfAsync(modelId).ConfigureAwait(false) is { } earlier
                && earlier.Events.FirstOrDefault(e => e.Name == "ModelRegistered") is { } ev
                && ev.Hex32("weightsDigest") == "0x" + Convert.ToHexStringLower(digest) && ev.Hex32("fingerprintRoot") == "0x" + Convert.ToHexStringLower(root))
            {
                progress?.Invoke($"'{modelId}' is already registered by this account with these weights (tx {earlier.TransactionHash})");
                return earlier;
            }
            throw new ChainRevertException("ModelExists", [ModelKey(modelId)], null, $"register model '{modelId}': ModelExists (owner {owner})");
        }
        var salt = RegistrationSalt(modelId, digest, root, fingerprintCount);
        var commitment = await RegistrationCommitmentAsync(Address, modelId, digest, root, fingerprintCount, salt).ConfigureAwait(false);
        var (committedAt, _) = await RegistrationCommitOfAsync(Address, commitment).ConfigureAwait(false);
        _registrationLifetime ??= (long)await Call<BigInteger>(Protocol, "REGISTRATION_COMMIT_LIFETIME").ConfigureAwait(false);
        long lifetime = _registrationLifetime.Value;
        long delay = await RegistrationDelayAsync().ConfigureAwait(false);
        long chainNow = await LatestBlockTimeAsync().ConfigureAwait(false);
        long margin = 2 * (long)Sender.ReceiptTimeout.TotalSeconds;
        if (committedAt != 0 && chainNow <= committedAt + lifetime && chainNow > committedAt + lifetime - margin)
        {
            // A live commitment close to its expiry (within two receipt time-outs): a reveal might land after it, and a new
            // commitment of the same bytes is refused while it lives. Let it expire, then commit again.
            await Task.Delay(TimeSpan.FromSeconds(committedAt + lifetime - chainNow + 2), ct).ConfigureAwait(false);
            chainNow = await LatestBlockTimeAsync().ConfigureAwait(false);
            committedAt = 0;
        }
        if (committedAt == 0 || chainNow > committedAt + lifetime)
        {
            // None yet, or expired: commit (again).
            var committed = await CommitRegistrationAsync(commitment, ct).ConfigureAwait(false);
            committedAt = (await RegistrationCommitOfAsync(Address, commitment).ConfigureAwait(false)).CommittedAt;
            progress?.Invoke($"committed to registering '{modelId}' (tx {committed.TransactionHash}); revealing after {delay} s");
        }
        else progress?.Invoke($"found this account's commitment to registering '{modelId}' (at {committedAt}); revealing it");
        // Wait on the wall clock for what the chain's clock still lacks, then reveal; a chain whose next block comes
        // earlier than expected answers RegistrationTooEarly, which is waited out a second at a time (bounded).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(delay + 120);
        long lag = committedAt + delay - await LatestBlockTimeAsync().ConfigureAwait(false);
        if (lag > 0) await Task.Delay(TimeSpan.FromSeconds(lag), ct).ConfigureAwait(false);
        while (true)
        {
            try
            {
                return await RevealRegistrationAsync(modelId, weightsDigest, fingerprintRoot, fingerprintCount, pricePerQuery, minCollateral, salt,
                    metadata, licenceTerms, ct).ConfigureAwait(false);
            }
            catch (ChainRevertException e) when (e.ErrorName == "RegistrationTooEarly" && DateTime.UtcNow < deadline)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The first step of a registration (see <see cref="RegisterModelAsync"/>): commits to
    /// <c>registrationCommitment(this account, ...)</c>.</summary>
    public Task<ChainResult> CommitRegistrationAsync(byte[] commitment, CancellationToken ct = default) =>
        Send(Protocol, "commitRegistration", "commit to a model registration", ct, commitment);

    /// <summary>The second step alone: <c>registerModel</c> with the given salt (no commitment made, no waiting).</summary>
    public Task<ChainResult> RevealRegistrationAsync(string modelId, string weightsDigest, string? fingerprintRoot, int fingerprintCount,
        BigInteger pricePerQuery, BigInteger minCollateral, byte[] salt, string metadata = "", string licenceTerms = "", CancellationToken ct = default) =>
        Send(Protocol, "registerModel", $"register model '{modelId}'", ct, modelId, B32(weightsDigest),
            fingerprintRoot is null ? new byte[32] : B32(fingerprintRoot), (uint)fingerprintCount, pricePerQuery, minCollateral, metadata, licenceTerms, salt);

    /// <summary>OmlProtocol's <c>registrationCommitment</c> (a view: the contract's own encoding).</summary>
    public Task<byte[]> RegistrationCommitmentAsync(string owner, string modelId, byte[] weightsDigest, byte[] fingerprintRoot,
        int fingerprintCount, byte[] salt) =>
        Call<byte[]>(Protocol, "registrationCommitment", owner, modelId, weightsDigest, fingerprintRoot, (uint)fingerprintCount, salt);

    /// <summary>When (chain timestamp, block) <paramref name="owner"/> committed <paramref name="commitment"/>; zeros if
    /// it did not, or the commitment was used.</summary>
    public async Task<(long CommittedAt, long BlockNumber)> RegistrationCommitOfAsync(string owner, byte[] commitment)
    {
        var r = await Protocol.GetFunction("registrationCommitOf").CallDecodingToDefaultAsync(owner, commitment).ConfigureAwait(false);
        return ((long)(BigInteger)r[0].Result, (long)(BigInteger)r[1].Result);
    }

    /// <summary>The deployment's registration delay in seconds (fixed at deployment: read once).</summary>
    public async Task<long> RegistrationDelayAsync() =>
        _registrationDelay ??= (long)await Call<BigInteger>(Protocol, "registrationDelay").ConfigureAwait(false);

    private long? _registrationDelay, _registrationLifetime;

    /// <summary>The salt of this account's registration of these values: secret (derived from the account's key) and
    /// deterministic (a rerun finds the same commitment).</summary>
    public byte[] RegistrationSalt(string modelId, byte[] weightsDigest, byte[] fingerprintRoot, int fingerprintCount)
    {
        var key = Convert.FromHexString(Sender.Account.PrivateKey.StartsWith("0x", StringComparison.Ordinal) ? Sender.Account.PrivateKey[2..] : Sender.Account.PrivateKey);
        try
        {
            var tag = Encoding.UTF8.GetBytes("oml/registration-salt/v1");
            var count = new byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(count, fingerprintCount);
            return Keccak256.Hash([.. tag, .. key, .. ModelKey(modelId), .. weightsDigest, .. fingerprintRoot, .. count]);
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>The transaction that registered <paramref name="modelId"/> (its ModelRegistered log, looked up by the
    /// indexed model key from the deployment's first block), decoded; null if none is found.</summary>
    private async Task<ChainResult?> RegistrationOfAsync(string modelId)
    {
        var ev = Protocol.GetEvent("ModelRegistered");
        var filter = new NewFilterInput
        {
            FromBlock = new BlockParameter((ulong)Deployment.DeployedAtBlock),
            ToBlock = BlockParameter.CreateLatest(),
            Address = [Deployment.Protocol],
            Topics = ["0x" + ev.EventABI.Sha3Signature, "0x" + Convert.ToHexStringLower(ModelKey(modelId))],
        };
        var logs = await Sender.Web3.Eth.Filters.GetLogs.SendRequestAsync(filter).ConfigureAwait(false);
        if (logs is null || logs.Length == 0) return null;
        var receipt = await Sender.Web3.Eth.Transactions.GetTransactionReceipt.SendRequestAsync(logs[0].TransactionHash).ConfigureAwait(false);
        return receipt is null ? null : ToResult(receipt);
    }

    /// <summary>The timestamp of the node's latest block (the chain's clock as far as it has moved).</summary>
    public async Task<long> LatestBlockTimeAsync()
    {
        var block = await Sender.Web3.Eth.Blocks.GetBlockWithTransactionsHashesByNumber
            .SendRequestAsync(BlockParameter.CreateLatest()).ConfigureAwait(false);
        return (long)block.Timestamp.Value;
    }

    public Task<ChainResult> AddVersionAsync(string modelId, string weightsDigest, string? fingerprintRoot, int fingerprintCount,
        string notes = "", CancellationToken ct = default) =>
        Send(Protocol, "addVersion", $"add a version of '{modelId}'", ct, ModelKey(modelId), B32(weightsDigest),
            fingerprintRoot is null ? new byte[32] : B32(fingerprintRoot), (uint)fingerprintCount, notes);

    /// <summary>The parent owner's EIP-712 consent to being declared a parent of <paramref name="modelId"/>.</summary>
    public static Signature SignParentConsent(ProtocolDomain domain, PrivateKey parentOwner, string modelId, string parentModelId,
        long shareBps, string childOwner, long nonce, long deadline)
    {
        var typed = new Eip712TypedData(
            new Dictionary<string, IReadOnlyList<Eip712Field>>
            {
                ["EIP712Domain"] = Schemas.DomainFields,
                ["ParentConsent"] = [new("modelId", "string"), new("parentModelId", "string"), new("shareBps", "uint256"),
                    new("childOwner", "address"), new("nonce", "uint256"), new("deadline", "uint256")],
            },
            "ParentConsent", domain.ToJson(),
            new System.Text.Json.Nodes.JsonObject
            {
                ["modelId"] = modelId, ["parentModelId"] = parentModelId, ["shareBps"] = shareBps.ToString(),
                ["childOwner"] = childOwner.ToLowerInvariant(), ["nonce"] = nonce.ToString(), ["deadline"] = deadline.ToString(),
            });
        return Eip712.Sign(typed, parentOwner);
    }

    public Task<ChainResult> DeclareParentAsync(string modelId, string parentModelId, long shareBps, long deadline, Signature? consent,
        CancellationToken ct = default) =>
        Send(Protocol, "declareParent", $"declare '{parentModelId}' a parent of '{modelId}'", ct, modelId, parentModelId,
            new BigInteger(shareBps), new BigInteger(deadline), consent?.ToBytes() ?? []);

    public Task<BigInteger> ConsentNonceAsync(string parentOwner) => Call<BigInteger>(Protocol, "consentNonce", parentOwner);

    public Task<ChainResult> TransferModelAsync(string modelId, string newOwner, CancellationToken ct = default) =>
        Send(Protocol, "transferModel", $"transfer '{modelId}' to {newOwner}", ct, ModelKey(modelId), newOwner);

    public Task<ChainResult> AcceptModelAsync(string modelId, CancellationToken ct = default) =>
        Send(Protocol, "acceptModel", $"accept '{modelId}'", ct, ModelKey(modelId));

    public async Task<string> ModelOwnerAsync(string modelId) =>
        (await Call<string>(Protocol, "modelOwner", ModelKey(modelId)).ConfigureAwait(false)).ToLowerInvariant();

    // ------------------------------------------------------------------ distribution layer

    public Task<ChainResult> ApplyLicenseAsync(string modelId, BigInteger collateral, string endpoint, CancellationToken ct = default) =>
        Send(Protocol, "applyLicense", $"apply for a licence of '{modelId}'", ct, ModelKey(modelId), collateral, endpoint);

    public Task<ChainResult> DeliverCopyAsync(string modelId, string host, string indicesRoot, int fingerprintCount, string copyDigest,
        string allocation, CancellationToken ct = default) =>
        Send(Protocol, "deliverCopy", $"deliver a copy of '{modelId}' to {host}", ct, ModelKey(modelId), host, B32(indicesRoot),
            (uint)fingerprintCount, B32(copyDigest), allocation);

    public Task<ChainResult> AcknowledgeCopyAsync(string modelId, string copyDigest, CancellationToken ct = default) =>
        Send(Protocol, "acknowledgeCopy", $"acknowledge the copy of '{modelId}'", ct, ModelKey(modelId), B32(copyDigest));

    public Task<ChainResult> FileAccusationAsync(string modelId, string host, string evidenceHash, CancellationToken ct = default) =>
        Send(Protocol, "fileAccusation", $"accuse {host}", ct, ModelKey(modelId), host, B32(evidenceHash));

    // ------------------------------------------------------------------ access layer

    public Task<ChainResult> DepositAsync(string host, BigInteger amount, CancellationToken ct = default) =>
        Send(Protocol, "deposit", $"deposit {amount} for {host}", ct, host, amount);

    public Task<ChainResult> RequestRefundAsync(string host, CancellationToken ct = default) =>
        Send(Protocol, "requestRefund", $"request a refund from {host}", ct, host);

    public Task<ChainResult> RefundAsync(string host, CancellationToken ct = default) =>
        Send(Protocol, "refund", $"refund from {host}", ct, host);

    public Task<BigInteger> EscrowAsync(string user, string host) => Call<BigInteger>(Protocol, "escrow", user, host);

    public static PermitTuple ToTuple(SignedPermit p) => new()
    {
        User = p.Permit.User, QueryHash = B32(p.Permit.QueryHash), Nonce = p.Permit.Nonce, Expiry = p.Permit.Expiry,
        Fee = p.Permit.Fee, Signature = p.Signature.ToBytes(),
    };

    /// <summary>Commits a usage epoch: the receipts root and count, and the permits to settle (as signed by users
    /// with <c>Permit.Sign(Domain, key)</c>). Skipped permits come back as PermitSkipped events with their reasons.</summary>
    public Task<ChainResult> CommitUsageAsync(string modelId, long epoch, string receiptsRoot, long receiptCount,
        IEnumerable<SignedPermit> permits, CancellationToken ct = default) =>
        Send(Protocol, "commitUsage", $"commit usage of '{modelId}' for epoch {epoch}", ct, ModelKey(modelId), new BigInteger(epoch),
            B32(receiptsRoot), (ulong)receiptCount, permits.Select(ToTuple).ToList());

    /// <summary>Commits a host's <see cref="UsageBook"/> (its root, count and permits).</summary>
    public Task<ChainResult> CommitUsageAsync(UsageBook book, CancellationToken ct = default) =>
        CommitUsageAsync(book.ModelId, book.Epoch, "0x" + Convert.ToHexStringLower(book.Root()), book.Receipts.Count, book.Permits, ct);

    public Task<BigInteger> CurrentEpochAsync() => Call<BigInteger>(Protocol, "currentEpoch");

    public async Task<string> PermitHashOnChainAsync(Permit p) =>
        "0x" + Convert.ToHexStringLower(await Call<byte[]>(Protocol, "permitHash", p.User, ModelKey(p.ModelId), p.Host,
            B32(p.QueryHash), new BigInteger(p.Nonce), new BigInteger(p.Expiry), new BigInteger(p.Fee)).ConfigureAwait(false));

    public async Task<string> SettledByAsync(string permitHash) =>
        (await Call<string>(Protocol, "settledBy", B32(permitHash)).ConfigureAwait(false)).ToLowerInvariant();

    public Task<BigInteger> CreditsAsync(string account) => Call<BigInteger>(Protocol, "credits", account);

    public Task<ChainResult> WithdrawAsync(CancellationToken ct = default) => Send(Protocol, "withdraw", "withdraw", ct);

    public Task<BigInteger> ParamAsync(ChainParam id) => Call<BigInteger>(Protocol, "param", (byte)id);

    public Task<BigInteger> BondsHeldAsync() => Call<BigInteger>(Protocol, "bondsHeld");

    // ------------------------------------------------------------------ claims

    public Task<ChainResult> CommitClaimAsync(string commitment, BigInteger bond, CancellationToken ct = default) =>
        Send(Claims, "commitClaim", "commit a claim", ct, B32(commitment), bond);

    /// <summary>The evidence hash a claim commits to: keccak256(abi.encode(items)), as OmlClaims computes it.</summary>
    public Task<byte[]> EvidenceHashAsync(IReadOnlyList<EvidenceTuple> items) => Call<byte[]>(Claims, "evidenceHashOf", items.ToList());

    /// <summary>The commitment <paramref name="prover"/> (default: this account) publishes for a claim; bound to the prover.</summary>
    public Task<byte[]> CommitmentAsync(string modelId, string host, byte[] evidenceHash, byte[] salt, string? prover = null) =>
        Call<byte[]>(Claims, "commitmentOf", prover ?? Address, modelId, host, evidenceHash, salt);

    public Task<ChainResult> RevealClaimAsync(long claimId, string modelId, string host, byte[] salt, IReadOnlyList<EvidenceTuple> items,
        CancellationToken ct = default) =>
        Send(Claims, "revealClaim", $"reveal claim {claimId}", ct, new BigInteger(claimId), modelId, host, salt, items.ToList());

    public Task<ChainResult> RebutAsync(long claimId, IReadOnlyList<RebuttalTuple> items, CancellationToken ct = default) =>
        Send(Claims, "rebut", $"rebut claim {claimId}", ct, new BigInteger(claimId), items.ToList());

    public Task<ChainResult> SettleAsync(long claimId, CancellationToken ct = default) =>
        Send(Claims, "settle", $"settle claim {claimId}", ct, new BigInteger(claimId));

    /// <summary>One evidence item from a revealed fingerprint, the host's answer and its signed receipt.</summary>
    public static EvidenceTuple Evidence(RevealedFingerprint fingerprint, string answer, SignedReceipt receipt)
    {
        var proof = fingerprint.Proof ?? throw new ArgumentException("the fingerprint has no Merkle proof");
        return new EvidenceTuple
        {
            Leaf = fingerprint.LeafData(),
            LeafIndex = proof.LeafIndex,
            Proof = [.. proof.Steps.Select(s => s.Sibling.AsSpan().ToArray())],
            Answer = Encoding.UTF8.GetBytes(answer),
            PermitHash = B32(receipt.Receipt.PermitHash),
            ReceiptTime = receipt.Receipt.Time,
            ReceiptSignature = receipt.Signature.ToBytes(),
        };
    }

    // ------------------------------------------------------------------ claims by commitment, licence exit and collateral release

    /// <summary>The claim <paramref name="prover"/> (default: this account) committed under <paramref name="commitment"/>,
    /// or null (a prover resumes from its ticket with it).</summary>
    public async Task<long?> ClaimIdOfAsync(string commitment, string? prover = null)
    {
        var r = await Claims.GetFunction("claimIdOf").CallDeserializingToObjectAsync<ClaimIdView>(prover ?? Address, B32(commitment)).ConfigureAwait(false);
        return r.Found ? (long)r.ClaimId : null;
    }

    /// <summary>Revealed claims against (model, host) not yet rebutted or settled (they block the collateral's release).</summary>
    public Task<BigInteger> OpenClaimsAgainstAsync(string modelId, string host) =>
        Call<BigInteger>(Claims, "openClaimsAgainst", ModelKey(modelId), host);

    /// <summary>This host announces the end of its licence of <paramref name="modelId"/> (ExitAnnounced: exit epoch, releasable at).</summary>
    public Task<ChainResult> AnnounceExitAsync(string modelId, CancellationToken ct = default) =>
        Send(Protocol, "announceExit", $"announce the exit from '{modelId}'", ct, ModelKey(modelId));

    /// <summary>After the exit notice, with no open claim, credits this host with what is left of its collateral
    /// (CollateralReleased); <see cref="WithdrawAsync"/> pays it out.</summary>
    public Task<ChainResult> ReleaseCollateralAsync(string modelId, CancellationToken ct = default) =>
        Send(Protocol, "releaseCollateral", $"release the collateral of '{modelId}'", ct, ModelKey(modelId));

    public async Task<ExitView> ExitOfAsync(string modelId, string host) =>
        await Protocol.GetFunction("exitOf").CallDeserializingToObjectAsync<ExitView>(ModelKey(modelId), host).ConfigureAwait(false);

    // ------------------------------------------------------------------ governance

    public Task<ChainResult> StakeAsync(BigInteger amount, CancellationToken ct = default) =>
        Send(Governance, "stake", $"stake {amount}", ct, amount);

    public Task<ChainResult> UnstakeAsync(BigInteger amount, CancellationToken ct = default) =>
        Send(Governance, "unstake", $"unstake {amount}", ct, amount);

    public Task<ChainResult> ProposeAsync(IReadOnlyList<(ChainParam Id, BigInteger Value)> changes, string description,
        CancellationToken ct = default) =>
        Send(Governance, "propose", "propose", ct, changes.Select(c => (byte)c.Id).ToList(), changes.Select(c => c.Value).ToList(), description);

    public Task<ChainResult> VoteAsync(long proposalId, bool support, CancellationToken ct = default) =>
        Send(Governance, "vote", $"vote on proposal {proposalId}", ct, new BigInteger(proposalId), support);

    public Task<ChainResult> ExecuteAsync(long proposalId, CancellationToken ct = default) =>
        Send(Governance, "execute", $"execute proposal {proposalId}", ct, new BigInteger(proposalId));
}

/// <summary>OmlClaims.claimIdOf(prover, commitment).</summary>
[Nethereum.ABI.FunctionEncoding.Attributes.FunctionOutput]
public sealed class ClaimIdView : Nethereum.ABI.FunctionEncoding.Attributes.IFunctionOutputDTO
{
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bool", "found", 1)] public bool Found { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint256", "claimId", 2)] public BigInteger ClaimId { get; set; }
}

/// <summary>OmlProtocol.exitOf(modelKey, host): whether the host announced its exit, its exit epoch, from when its
/// collateral can be released, and whether it was.</summary>
[Nethereum.ABI.FunctionEncoding.Attributes.FunctionOutput]
public sealed class ExitView : Nethereum.ABI.FunctionEncoding.Attributes.IFunctionOutputDTO
{
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bool", "announced", 1)] public bool Announced { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint256", "exitEpoch", 2)] public BigInteger ExitEpoch { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint256", "releasableAt", 3)] public BigInteger ReleasableAt { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bool", "released", 4)] public bool Released { get; set; }
}
