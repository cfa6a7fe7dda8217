using System.Numerics;
using Nethereum.ABI.FunctionEncoding.Attributes;
using Nethereum.Contracts;
using Nethereum.Hex.HexTypes;
using Oml.Protocol.Core;

namespace Oml.Protocol.Chain;

/// <summary>OmlClaims.Item as <c>itemsOf(claimId)</c> returns it.</summary>
public sealed class ClaimItemTuple
{
    [Parameter("bytes32", "receiptHash", 1)] public byte[] ReceiptHash { get; set; } = new byte[32];
    [Parameter("bytes32", "queryHash", 2)] public byte[] QueryHash { get; set; } = new byte[32];
    [Parameter("bytes32", "permitHash", 3)] public byte[] PermitHash { get; set; } = new byte[32];
}

[FunctionOutput]
public sealed class ClaimItemsOutput : IFunctionOutputDTO
{
    [Parameter("tuple[]", "", 1)] public List<ClaimItemTuple> Items { get; set; } = [];
}

/// <summary>The calldata of <c>OmlClaims.revealClaim</c>, decoded to take each item's leaf index.</summary>
[Function("revealClaim")]
public sealed class RevealClaimFunction : FunctionMessage
{
    [Parameter("uint256", "claimId", 1)] public BigInteger ClaimId { get; set; }
    [Parameter("string", "modelId", 2)] public string ModelId { get; set; } = "";
    [Parameter("address", "host", 3)] public string Host { get; set; } = "";
    [Parameter("bytes32", "salt", 4)] public byte[] Salt { get; set; } = new byte[32];
    [Parameter("tuple[]", "items", 5)] public List<EvidenceTuple> Items { get; set; } = [];
}

/// <summary>
/// Rebuilds the protocol's <see cref="ProtocolState"/> from the contracts' events, in block and log order, the way
/// <see cref="ProtocolEngine"/> folds ledger events: balances from the token's Transfer events (total supply from mints),
/// credits (withdrawable) from the settlement, bond and slash events — the fee split of each settled permit is
/// recomputed from the family tree, owners and HostFeeShareBps as they stood at that event, exactly as OmlProtocol and
/// <c>Rules.Access.cs</c> compute it — locked collateral and bonds, escrows, stakes (with their per-block history for
/// proposal snapshots), models, licences, usage records with settled and skipped permits, claims, proposals, votes,
/// accusations and parameters. Incremental: <see cref="RefreshAsync"/> reads from the block after the last one read.
/// Two things come from outside the event log, both written once and never changed: each revealed claim's items'
/// receipt and query hashes (<c>itemsOf</c>) and their leaf indices (the reveal's calldata); block timestamps come from
/// the blocks. Addresses are lowercase hex; digests are 0x hex of the contract's bytes32 (see <see cref="ChainBackend.Digest32"/>).
/// The account request nonce of the ledger has no counterpart (it stays 0); <see cref="ProtocolState.Height"/> counts
/// the events folded and <see cref="ProtocolState.HeadHash"/> is the hash of the last block read.
/// </summary>
public sealed class ChainProjector
{
    private readonly OmlDeployment _deployment;
    private readonly HashSet<string> _contracts;
    private readonly Dictionary<string, string> _modelIds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(long Block, long Stake)>> _stakeHistory = new(StringComparer.Ordinal);
    private readonly List<(string User, string Host, long Fee)> _pendingSettled = [];
    private readonly List<(string User, long Nonce)> _pendingNonces = [];
    private readonly List<SkippedPermit> _pendingSkipped = [];
    private readonly List<string> _pendingSpent = [];
    private string? _pendingTx;
    private long _lastSlashReward;

    public ChainProjector(OmlDeployment deployment, string treasury, long genesisTime)
    {
        _deployment = deployment ?? throw new ArgumentNullException(nameof(deployment));
        _contracts = new HashSet<string>(new[] { deployment.Token, deployment.Protocol, deployment.Claims, deployment.Governance }
            .Select(a => a.ToLowerInvariant()), StringComparer.Ordinal);
        State = new ProtocolState { Treasury = treasury.ToLowerInvariant(), Domain = deployment.Domain, GenesisTime = genesisTime };
        LastBlock = deployment.DeployedAtBlock - 1;
    }

    /// <summary>A projector for <paramref name="reader"/>'s deployment, nothing read yet (the treasury and genesis
    /// time are the protocol contract's immutables).</summary>
    public static async Task<ChainProjector> CreateAsync(OmlChainClient reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var treasury = await reader.Protocol.GetFunction("treasury").CallAsync<string>().ConfigureAwait(false);
        var genesis = await reader.Protocol.GetFunction("genesisTime").CallAsync<BigInteger>().ConfigureAwait(false);
        return new ChainProjector(reader.Deployment, treasury, (long)genesis);
    }

    public ProtocolState State { get; }

    /// <summary>The last block folded in.</summary>
    public long LastBlock { get; private set; }

    /// <summary>Reads and folds in the events of every block after <see cref="LastBlock"/> up to the latest.</summary>
    public async Task RefreshAsync(OmlChainClient reader, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        long latest = (long)(await reader.Sender.Web3.Eth.Blocks.GetBlockNumber.SendRequestAsync().ConfigureAwait(false)).Value;
        while (LastBlock < latest)
        {
            // nodes cap eth_getLogs ranges: read in slices
            long to = Math.Min(latest, LastBlock + BlocksPerRead);
            var events = await reader.EventsAsync(LastBlock + 1, to).ConfigureAwait(false);
            await ApplyAsync(reader, events, to, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The most blocks one <c>eth_getLogs</c> call covers.</summary>
    public long BlocksPerRead { get; set; } = 5_000;

    /// <summary>Folds in <paramref name="events"/> (all of blocks LastBlock+1 .. <paramref name="throughBlock"/>, in
    /// order), reading block times and revealed claims' items through <paramref name="reader"/>.</summary>
    public async Task ApplyAsync(OmlChainClient reader, IReadOnlyList<ChainEvent> events, long throughBlock, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(events);
        var ordered = events.OrderBy(e => e.BlockNumber).ThenBy(e => e.LogIndex).ToList();
        var times = new Dictionary<long, long>();
        string headHash = "";
        foreach (var b in ordered.Select(e => e.BlockNumber).Append(throughBlock).Distinct())
        {
            ct.ThrowIfCancellationRequested();
            var block = await reader.Sender.Web3.Eth.Blocks.GetBlockWithTransactionsHashesByNumber.SendRequestAsync(new HexBigInteger(b)).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"the node has no block {b}");
            times[b] = (long)block.Timestamp.Value;
            if (b == throughBlock) headHash = block.BlockHash;
        }
        var reveals = new Dictionary<long, (List<ClaimItemTuple> Items, List<long> LeafIndices)>();
        foreach (var e in ordered.Where(e => e.Name == "ClaimRevealed"))
        {
            long id = L(e.Int("claimId"));
            var items = await reader.Claims.GetFunction("itemsOf").CallDeserializingToObjectAsync<ClaimItemsOutput>(new BigInteger(id)).ConfigureAwait(false);
            reveals[id] = (items.Items, await LeafIndicesAsync(reader, e.TransactionHash, items.Items.Count).ConfigureAwait(false));
        }
        foreach (var e in ordered) Apply(e, times[e.BlockNumber], reveals);
        LastBlock = throughBlock;
        State.LastTime = Math.Max(State.LastTime, times[throughBlock]);
        State.HeadHash = Convert.FromHexString(headHash.StartsWith("0x", StringComparison.Ordinal) ? headHash[2..] : headHash);
    }

    private static async Task<List<long>> LeafIndicesAsync(OmlChainClient reader, string txHash, int count)
    {
        try
        {
            var tx = await reader.Sender.Web3.Eth.Transactions.GetTransactionByHash.SendRequestAsync(txHash).ConfigureAwait(false);
            var call = new RevealClaimFunction().DecodeInput(tx.Input);
            if (call.Items.Count == count) return call.Items.Select(i => (long)i.LeafIndex).ToList();
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException or IndexOutOfRangeException or NullReferenceException)
        {
            // revealed through another contract: the calldata is not revealClaim's; the indices stay unknown (-1)
        }
        return Enumerable.Repeat(-1L, count).ToList();
    }

    private static long L(BigInteger v) =>
        v >= long.MinValue && v <= long.MaxValue ? (long)v : throw new OverflowException($"the chain holds {v}, outside the protocol state's 64-bit range");

    private static string H(byte[] b) => Hex.Of(b);

    private static List<BigInteger> Ints(object? array) => array is System.Collections.IEnumerable items
        ? items.Cast<object>().Select(o => o switch
        {
            BigInteger b => b,
            byte b => new BigInteger(b),
            int i => new BigInteger(i),
            long l => new BigInteger(l),
            uint u => new BigInteger(u),
            ulong u => new BigInteger(u),
            _ => throw new InvalidCastException($"not an integer: {o?.GetType().Name}"),
        }).ToList()
        : throw new InvalidCastException("not an array");

    private bool IsContract(string address) => _contracts.Contains(address);

    private string ModelId(ChainEvent e, string arg = "modelKey") =>
        _modelIds.TryGetValue(e.Hex32(arg), out var id) ? id : throw new InvalidOperationException($"{e.Name} names model {e.Hex32(arg)}, never registered");

    private Licence LicenceOf(string modelId, string host) =>
        State.LicenceOf(modelId, host) ?? throw new InvalidOperationException($"no licence of {host} for '{modelId}'");

    private void Credit(string account, long amount)
    {
        if (amount == 0) return;
        var a = State.Acc(account);
        a.Withdrawable = checked(a.Withdrawable + amount);
    }

    private static ProtocolErrorCode SkipCode(BigInteger reason) => (int)reason switch
    {
        1 => ProtocolErrorCode.BadSignature,
        2 => ProtocolErrorCode.PermitExpired,
        3 => ProtocolErrorCode.PermitReplayed,
        4 => ProtocolErrorCode.FeeTooLow,
        5 => ProtocolErrorCode.InsufficientFunds,
        _ => ProtocolErrorCode.InvalidPermit,
    };

    /// <summary>Parameters from OmlProtocol's array (Param order = <see cref="ProtocolParameters.Names"/> order).</summary>
    public static ProtocolParameters ParametersOf(IReadOnlyList<BigInteger> v)
    {
        if (v.Count != 12) throw new ArgumentException("there are 12 parameters");
        return new ProtocolParameters((int)L(v[0]), (int)L(v[1]), (int)L(v[2]), L(v[3]), L(v[4]), L(v[5]), L(v[6]), L(v[7]), L(v[8]),
            (int)L(v[9]), L(v[10]), L(v[11]));
    }

    private static ProtocolParameters SetParameter(ProtocolParameters p, int id, long value)
    {
        var values = ProtocolParameters.Names.Select(n => BigInteger.Parse(p.Get(n), System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        values[id] = value;
        return ParametersOf(values);
    }

    private void Apply(ChainEvent e, long time, IReadOnlyDictionary<long, (List<ClaimItemTuple> Items, List<long> LeafIndices)> reveals)
    {
        if (_pendingTx != e.TransactionHash)
        {
            _pendingTx = e.TransactionHash;
            _pendingSettled.Clear();
            _pendingNonces.Clear();
            _pendingSkipped.Clear();
            _pendingSpent.Clear();
            _lastSlashReward = 0;
        }
        var s = State;
        s.Height++;
        switch (e.Name)
        {
            // ---- token
            case "Transfer" when e.Contract == "OmlToken":
            {
                string from = e.Addr("from"), to = e.Addr("to");
                long value = L(e.Int("value"));
                if (from == Hex.ZeroAddress) s.TotalSupply = checked(s.TotalSupply + value);
                else if (!IsContract(from)) s.Acc(from).Balance -= value;
                if (to == Hex.ZeroAddress) s.TotalSupply -= value;
                else if (!IsContract(to)) s.Acc(to).Balance = checked(s.Acc(to).Balance + value);
                break;
            }
            case "Approval":
                s.Height--;   // allowances are not protocol state
                break;

            // ---- parameters
            case "Initialized":
                s.Initialized = true;
                s.Parameters = ParametersOf(Ints(e.Args["parameters"]));
                break;
            case "ParameterChanged":
                s.Parameters = SetParameter(s.Parameters, (int)e.Int("id"), L(e.Int("newValue")));
                break;

            // ---- storage
            case "ModelRegistered":
            {
                string id = (string)e.Args["modelId"]!;
                _modelIds[e.Hex32("modelKey")] = id;
                var m = new ModelRecord
                {
                    Id = id, Owner = e.Addr("owner"), Metadata = (string)e.Args["metadata"]!, LicenceTerms = (string)e.Args["licenceTerms"]!,
                    PricePerQuery = L(e.Int("pricePerQuery")), MinCollateral = L(e.Int("minCollateral")), RegisteredAt = time,
                };
                m.VersionList.Add(new ModelVersion(e.Hex32("weightsDigest"), "initial", time));
                s.ModelMap[id] = m;
                break;
            }
            case "VersionAdded":
                s.ModelMap[ModelId(e)].VersionList.Add(new ModelVersion(e.Hex32("weightsDigest"), (string)e.Args["notes"]!, time));
                break;
            case "ParentDeclared":
                s.ModelMap[ModelId(e)].ParentList.Add(new ParentLink(ModelId(e, "parentKey"), (int)e.Int("shareBps")));
                break;
            case "OwnershipTransferStarted":
                s.ModelMap[ModelId(e)].PendingOwner = e.Addr("newOwner") is var offered && offered == Hex.ZeroAddress ? null : offered;   // zero: offer withdrawn
                break;
            case "OwnershipTransferred":
            {
                var m = s.ModelMap[ModelId(e)];
                m.Owner = e.Addr("newOwner");
                m.PendingOwner = null;
                break;
            }

            // ---- distribution
            case "LicenceApplied":
            {
                string model = ModelId(e), host = e.Addr("host");
                long collateral = L(e.Int("collateral"));
                s.LicenceMap[ProtocolState.LicenceKey(model, host)] = new Licence
                {
                    ModelId = model, Host = host, Ordinal = (int)e.Int("ordinal"), Endpoint = (string)e.Args["endpoint"]!,
                    CollateralPosted = collateral, CollateralLocked = collateral,
                };
                s.ModelMap[model].HostList.Add(host);
                s.Acc(host).Locked = checked(s.Acc(host).Locked + collateral);
                break;
            }
            case "CopyDelivered":
            {
                var l = LicenceOf(ModelId(e), e.Addr("host"));
                l.IndicesRoot = e.Hex32("indicesRoot");
                l.FingerprintCount = L(e.Int("fingerprintCount"));
                l.CopyDigest = e.Hex32("copyDigest");
                l.Allocation = (string)e.Args["allocation"]!;
                break;
            }
            case "CopyAcknowledged":
                LicenceOf(ModelId(e), e.Addr("host")).Acknowledged = true;
                break;
            case "AccusationFiled":
                s.AccusationList.Add(new AccusationRecord(ModelId(e), e.Addr("host"), e.Addr("owner"), e.Hex32("evidenceHash"), time));
                break;

            // ---- access
            case "Deposited":
            {
                string user = e.Addr("user"), host = e.Addr("host");
                long amount = L(e.Int("amount"));
                s.Acc(user).Escrowed = checked(s.Acc(user).Escrowed + amount);
                s.Esc(user, host).Amount = checked(s.Esc(user, host).Amount + amount);
                break;
            }
            case "RefundRequested":
                s.Esc(e.Addr("user"), e.Addr("host")).RefundRequestedAt = time;
                break;
            case "Refunded":
            {
                string user = e.Addr("user"), host = e.Addr("host");
                s.Acc(user).Escrowed -= L(e.Int("amount"));
                s.EscrowMap.Remove(ProtocolState.EscrowKey(user, host));
                break;
            }
            case "PermitSkipped":
                _pendingSkipped.Add(new SkippedPermit(e.Hex32("permitHash"), SkipCode(e.Int("reason")), $"skipped on chain (reason {e.Int("reason")})"));
                break;
            case "PermitSettled":
            {
                string user = e.Addr("user"), host = e.Addr("host");
                long fee = L(e.Int("fee"));
                s.Acc(user).Escrowed -= fee;
                s.Esc(user, host).Amount -= fee;
                s.SettledPermitMap[e.Hex32("permitHash")] = host;
                _pendingSettled.Add((user, host, fee));
                _pendingNonces.Add((user, L(e.Int("nonce"))));
                break;
            }
            case "UsageCommitted":
            {
                string model = ModelId(e), host = e.Addr("host");
                long ownerRevenue = 0;
                foreach (var (_, _, fee) in _pendingSettled)
                {
                    long hostCut = (long)((Int128)fee * s.Parameters.HostFeeShareBps / 10_000);
                    Credit(host, hostCut);
                    ownerRevenue += fee - hostCut;
                }
                FeeSplit.Split(s, model, ownerRevenue, Credit);   // once per batch, as OmlProtocol.commitUsage
                foreach (var (user, nonce) in _pendingNonces) s.MarkPermitNonceUsed(user, host, model, nonce);
                _pendingNonces.Clear();
                long epoch = L(e.Int("epoch"));
                s.UsageMap[ProtocolState.UsageKey(model, host, epoch)] = new UsageRecord(host, model, epoch, e.Hex32("receiptsRoot"),
                    L(e.Int("receiptCount")), L(e.Int("settled")), L(e.Int("total")), time) { Skipped = [.. _pendingSkipped] };
                _pendingSettled.Clear();
                _pendingSkipped.Clear();
                break;
            }
            case "Withdrawn":
                s.Acc(e.Addr("account")).Withdrawable -= L(e.Int("amount"));
                break;

            // ---- bonds, claims, slashing
            case "BondLocked":
                s.Acc(e.Addr("prover")).Locked = checked(s.Acc(e.Addr("prover")).Locked + L(e.Int("amount")));
                break;
            case "BondReleased":
                Credit(e.Addr("to"), L(e.Int("amount")));
                break;
            case "ExitAnnounced":
            {
                var licence = LicenceOf(ModelId(e), e.Addr("host"));
                licence.ExitAnnouncedAt = time;
                licence.ExitEpoch = L(e.Int("exitEpoch"));
                licence.ReleasableAt = L(e.Int("releasableAt"));
                break;
            }
            case "CollateralReleased":
            {
                string host = e.Addr("host");
                var licence = LicenceOf(ModelId(e), host);
                long amount = L(e.Int("amount"));
                licence.CollateralLocked -= amount;
                licence.CollateralReleased = true;
                licence.ReleasedAmount = amount;
                s.Acc(host).Locked -= amount;
                Credit(host, amount);
                break;
            }
            case "Slashed":
            {
                string model = ModelId(e), host = e.Addr("host");
                long slashed = L(e.Int("slashed")), reward = L(e.Int("proverReward"));
                LicenceOf(model, host).CollateralLocked -= slashed;
                s.Acc(host).Locked -= slashed;
                Credit(e.Addr("prover"), reward);
                Credit(s.ModelMap[model].Owner, L(e.Int("ownerShare")));
                _lastSlashReward = reward;
                break;
            }
            case "ClaimCommitted":
            {
                long id = L(e.Int("claimId"));
                if (id != s.ClaimList.Count) throw new InvalidOperationException($"claim {id} follows claim {s.ClaimList.Count - 1}: events are missing");
                var c = new Claim { Id = id, Prover = e.Addr("prover"), Commitment = e.Hex32("commitment"), Bond = L(e.Int("bond")), CommittedAt = time };
                s.ClaimList.Add(c);
                s.CommitmentMap[ProtocolState.CommitmentKey(c.Prover, c.Commitment)] = id;
                break;
            }
            case "FingerprintSpent":
            {
                string model = ModelId(e), fid = e.Hex32("fingerprintId");
                if (!s.SpentMap.TryGetValue(model, out var spent)) s.SpentMap[model] = spent = new(StringComparer.Ordinal);
                spent.Add(fid);
                _pendingSpent.Add(fid);
                break;
            }
            case "ClaimRevealed":
            {
                var c = ClaimAt(e);
                c.Status = ClaimStatus.Revealed;
                c.ModelId = ModelId(e);
                c.Host = e.Addr("host");
                c.EvidenceHash = e.Hex32("evidenceHash");
                c.RevealedAt = time;
                c.RebutDeadline = L(e.Int("rebutDeadline"));
                var items = new List<ClaimItem>();
                if (reveals.TryGetValue(c.Id, out var r))
                    for (int i = 0; i < r.Items.Count; i++)
                        items.Add(new ClaimItem(i < _pendingSpent.Count ? _pendingSpent[i] : "", (int)r.LeafIndices[i],
                            H(r.Items[i].ReceiptHash), H(r.Items[i].QueryHash), H(r.Items[i].PermitHash)));
                c.Items = items;
                foreach (var item in items) s.ReceiptClaimMap[item.ReceiptHash] = c.Id;
                _pendingSpent.Clear();
                break;
            }
            case "ClaimVoided":
            {
                // the bond comes back through the protocol's BondReleased (credits)
                var c = ClaimAt(e);
                c.Status = ClaimStatus.Voided;
                s.Acc(c.Prover).Locked -= c.Bond;
                break;
            }
            case "ClaimRebutted":
            {
                var c = ClaimAt(e);
                c.Status = ClaimStatus.Rebutted;
                s.Acc(c.Prover).Locked -= c.Bond;
                break;
            }
            case "ClaimRefunded":
            {
                var c = ClaimAt(e);
                c.Status = ClaimStatus.Expired;
                s.Acc(c.Prover).Locked -= c.Bond;
                break;
            }
            case "ClaimSlashed":
            {
                var c = ClaimAt(e);
                c.Status = ClaimStatus.Slashed;
                c.Slashed = L(e.Int("slashed"));
                c.SlashCapped = (bool)e.Args["capped"]!;
                c.ProverReward = _lastSlashReward;
                s.Acc(c.Prover).Locked -= c.Bond;
                Credit(c.Prover, c.Bond);
                break;
            }

            // ---- governance
            case "Staked":
            case "Unstaked":
            {
                string account = e.Addr("account");
                long stake = L(e.Int("stake"));
                var a = s.Acc(account);
                a.Staked = stake;
                if (e.Name == "Staked") a.LastStakeTime = time;
                if (!_stakeHistory.TryGetValue(account, out var h)) _stakeHistory[account] = h = [];
                h.Add((e.BlockNumber, stake));
                break;
            }
            case "Proposed":
            {
                long id = L(e.Int("proposalId")), snapshot = L(e.Int("snapshotBlock"));
                if (id != s.ProposalList.Count) throw new InvalidOperationException($"proposal {id} follows proposal {s.ProposalList.Count - 1}: events are missing");
                var ids = Ints(e.Args["ids"]).Select(i => (int)i).ToList();
                var values = Ints(e.Args["values"]);
                var changes = new SortedDictionary<string, string>(StringComparer.Ordinal);
                for (int i = 0; i < ids.Count; i++)
                    changes[ProtocolParameters.Names[ids[i]]] = values[i].ToString(System.Globalization.CultureInfo.InvariantCulture);
                var weights = new SortedDictionary<string, long>(StringComparer.Ordinal);
                foreach (var (account, history) in _stakeHistory)
                {
                    long w = history.LastOrDefault(x => x.Block <= snapshot).Stake;
                    if (w > 0) weights[account] = w;
                }
                s.ProposalList.Add(new Proposal
                {
                    Id = id, Proposer = e.Addr("proposer"), Changes = changes, Description = (string)e.Args["description"]!,
                    CreatedAt = time, EndsAt = L(e.Int("votingEnds")), Weights = weights,
                });
                break;
            }
            case "Voted":
                ProposalAt(e).VoteMap[e.Addr("voter")] = (bool)e.Args["support"]!;
                ProposalAt(e).VoteWeightMap[e.Addr("voter")] = L(e.Int("weight"));
                break;
            case "Executed":
                ProposalAt(e).Executed = true;
                break;
            default:
                s.Height--;
                break;
        }
    }

    private Claim ClaimAt(ChainEvent e)
    {
        long id = L(e.Int("claimId"));
        return id < State.ClaimList.Count ? State.ClaimList[(int)id] : throw new InvalidOperationException($"{e.Name} names claim {id}, never committed");
    }

    private Proposal ProposalAt(ChainEvent e)
    {
        long id = L(e.Int("proposalId"));
        return id < State.ProposalList.Count ? State.ProposalList[(int)id] : throw new InvalidOperationException($"{e.Name} names proposal {id}, never made");
    }
}
