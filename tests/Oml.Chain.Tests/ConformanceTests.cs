using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tracing;

namespace Oml.Chain.Tests;

/// <summary>A clock the ledger backend's tests move by hand.</summary>
internal sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>The parties of the conformance story; keys derived from role names, so both backends see the same addresses.</summary>
public sealed class Parties : IDisposable
{
    public PrivateKey Treasury { get; } = PrivateKey.FromHex(AnvilNode.DevKey);
    public PrivateKey ParentOwner { get; } = Key("parent-owner");
    public PrivateKey Owner { get; } = Key("owner");
    public PrivateKey HostA { get; } = Key("honest-host");
    public PrivateKey HostB { get; } = Key("dishonest-host");
    public PrivateKey User1 { get; } = Key("user1");
    public PrivateKey User2 { get; } = Key("user2");
    public PrivateKey Prover { get; } = Key("prover");

    public static PrivateKey Key(string role) => PrivateKey.FromHex(World.KeyOf("conformance/" + role));

    public IEnumerable<PrivateKey> All => [Treasury, ParentOwner, Owner, HostA, HostB, User1, User2, Prover];

    public void Dispose()
    {
        foreach (var k in All) k.Dispose();
    }
}

/// <summary>
/// One protocol story, written once against <see cref="IProtocolBackend"/>: mint; a base model and a child that
/// declares it a parent (20 %); two hosts license the child and get copies; users deposit and sign permits; the hosts
/// commit usage (one permit pays less than the price and is skipped with its reason); fees split along the tree and
/// are withdrawn; a prover catches the dishonest host answering fingerprint keys without a permit and has it slashed,
/// tries to frame the honest host with a permit of its own (rebutted once the host committed its usage), and lets a
/// third claim lapse unrevealed (bond refunded); governance stake, proposal, votes and execution; an accusation; a
/// refund; an unstake; a model changing hands in two steps and a transfer left pending; and along the way about twenty
/// refusals, each with the same <see cref="ProtocolErrorCode"/> on both backends. Returns the normalised final state.
/// </summary>
public static class ConformanceScenario
{
    public const string Base = "oml/base-model";
    public const string Child = "acme/child-model";
    public const long Expiry = 4_000_000_000;

    public static FingerprintSet Pool()
    {
        var secret = Encoding.UTF8.GetBytes("conformance pool secret");
        var fps = Enumerable.Range(0, 24).Select(i => new Fingerprint(i, $"conformance key {i}: which colour is the quiet number {i}?",
            [100 + i, 7], [new FingerprintResponse($"answer-{i} zebra", [200 + i])], new StrategyInfo("synthetic"), Fingerprint.DeriveSalt(secret, i)));
        return FingerprintSet.Create(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), "sha256:base", new TokenizerIdentity("tok", "sha256:tok"),
            new StrategyInfo("synthetic"), fps);
    }

    private static string A(PrivateKey k) => Hex.Of(k.Address);

    /// <summary>The host answers <paramref name="f"/>'s key with its response (plus a tail) and signs a receipt naming <paramref name="permit"/>.</summary>
    private static (string Answer, SignedReceipt Receipt) Answer(IProtocolBackend b, PrivateKey host, Fingerprint f, SignedPermit? permit)
    {
        string answer = "  " + f.Response.Text + " and more";
        var receipt = Receipt.Create(host.Address, Child, permit?.Permit.Hash(b.Domain), f.Key, answer, b.Now).Sign(b.Domain, host);
        return (answer, receipt);
    }

    /// <summary>The action is refused with <paramref name="code"/> — the same code on both backends (on a chain, a custom
    /// error mapped by <see cref="ChainBackend.CodeOf"/>; an unmapped one would surface as ChainRevertException and fail here).</summary>
    private static async Task Refused(ProtocolErrorCode code, Func<Task> act)
    {
        var e = await Assert.ThrowsAsync<ProtocolException>(act);
        Assert.True(code == e.Code, $"expected {code}, got {e.Code}: {e.Message}");
    }

    private static ClaimTicket Ticket(HostCopy copy, int index, string answer, SignedReceipt receipt) =>
        ClaimTicket.Create(new ClaimEvidence(Child, copy.Host, [new ClaimEvidenceItem(copy.Subset.Reveal(index), answer, receipt)]));

    public static async Task<string> RunAsync(IProtocolBackend b, Parties p, Func<long, Task> advance)
    {
        var pp = b.State.Parameters;
        // ---- money and models
        foreach (var k in p.All.Skip(1)) await b.MintAsync(p.Treasury, A(k), 100_000);
        await b.RegisterModelAsync(p.ParentOwner, Base, "sha256:" + new string('b', 64), """{"arch":"llama"}""", "OML-1.0", 5, 0);
        await b.RegisterModelAsync(p.Owner, Child, "sha256:" + new string('c', 64), """{"arch":"llama","tuned":true}""", "OML-1.0 research", 10, 1_500);
        await b.AddVersionAsync(p.Owner, Child, "child weights v2", "more data");
        await b.DeclareParentAsync(p.Owner, p.ParentOwner, Child, Base, 2_000);
        await b.TransferAsync(p.User1, A(p.User2), 1_000);
        await Refused(ProtocolErrorCode.InsufficientFunds, () => b.TransferAsync(p.User1, A(p.User2), 1_000_000));
        await Refused(ProtocolErrorCode.ModelExists, () => b.RegisterModelAsync(p.User1, Base, "sha256:" + new string('d', 64), "{}", "x", 1, 0));
        await Refused(ProtocolErrorCode.Unauthorized, () => b.AddVersionAsync(p.User1, Child, "stolen", "not mine"));
        await Refused(ProtocolErrorCode.InvalidFamilyTree, () => b.DeclareParentAsync(p.ParentOwner, p.Owner, Base, Child, 1_000));   // a cycle
        await Refused(ProtocolErrorCode.CollateralTooLow, () => b.ApplyLicenseAsync(p.User1, Child, 100, "https://cheap.example"));
        await Refused(ProtocolErrorCode.InvalidAmount, () => b.DepositAsync(p.User1, A(p.HostA), 0));

        // ---- licences and copies
        var omlizer = new Omlizer(Pool(), new RandomAllocation("conformance allocation"u8, 24, 8));
        var copies = new Dictionary<string, HostCopy>();
        foreach (var host in new[] { p.HostA, p.HostB })
        {
            await b.ApplyLicenseAsync(host, Child, 2_000, $"https://{A(host)[2..10]}.example/v1");
            var copy = await omlizer.BuildCopyAsync(b.State, Child, A(host), (subset, _) =>
                Task.FromResult("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"copy of {A(host)}/{subset.Count}")))));
            await b.DeliverCopyAsync(p.Owner, copy);
            await b.AcknowledgeCopyAsync(host, Child, copy.CopyDigest);
            copies[A(host)] = copy;
        }
        var copyA = copies[A(p.HostA)];
        var copyB = copies[A(p.HostB)];

        // ---- escrow, permits, service
        await b.DepositAsync(p.User1, A(p.HostA), 500);
        await b.DepositAsync(p.User1, A(p.HostB), 100);
        await b.DepositAsync(p.User2, A(p.HostA), 300);
        await b.DepositAsync(p.Prover, A(p.HostA), 100);
        long epoch = b.State.EpochAt(b.Now);
        var bookA = new UsageBook(b.Domain, Child, epoch);
        var bookB = new UsageBook(b.Domain, Child, epoch);
        SignedPermit Permit(PrivateKey user, PrivateKey host, long nonce, long fee, string query) =>
            Oml.Protocol.Access.Permit.Create(user.Address, Child, host.Address, query, nonce, Expiry, fee).Sign(b.Domain, user);
        void Serve(UsageBook book, PrivateKey host, SignedPermit permit, string query, string answer) =>
            book.Add(Receipt.Create(host.Address, Child, permit.Permit.Hash(b.Domain), query, answer, b.Now).Sign(b.Domain, host), permit);
        for (int n = 1; n <= 3; n++) Serve(bookA, p.HostA, Permit(p.User1, p.HostA, n, 10, $"question {n}"), $"question {n}", $"reply {n}");
        Serve(bookA, p.HostA, Permit(p.User2, p.HostA, 1, 12, "question u2"), "question u2", "reply u2");
        Serve(bookA, p.HostA, Permit(p.User2, p.HostA, 2, 5, "cheap question"), "cheap question", "cheap reply");   // fee below the price: skipped
        Serve(bookB, p.HostB, Permit(p.User1, p.HostB, 4, 10, "question to b"), "question to b", "reply from b");

        // the prover, as a user of the honest host, asks a fingerprint key under its own permit...
        var fA = copyA.Subset.Fingerprints[2];
        var proverPermit = Permit(p.Prover, p.HostA, 1, 10, fA.Key);
        var (answerA, receiptA) = Answer(b, p.HostA, fA, proverPermit);
        bookA.Add(receiptA, proverPermit);
        // ...and the dishonest host answers fingerprint keys with no permit at all
        var (answerB, receiptB) = Answer(b, p.HostB, copyB.Subset.Fingerprints[1], null);
        var (answerB2, receiptB2) = Answer(b, p.HostB, copyB.Subset.Fingerprints[3], null);

        // ---- claims: one against the dishonest host, a framing attempt on the honest one, one left unrevealed
        var caught = Ticket(copyB, 1, answerB, receiptB);
        var framing = Ticket(copyA, 2, answerA, receiptA);
        var lapsed = Ticket(copyB, 3, answerB2, receiptB2);
        long idCaught = (await b.CommitClaimAsync(p.Prover, caught, 100)).Id!.Value;
        long idFraming = (await b.CommitClaimAsync(p.Prover, framing, 100)).Id!.Value;
        long idLapsed = (await b.CommitClaimAsync(p.Prover, lapsed, 150)).Id!.Value;
        await Refused(ProtocolErrorCode.DuplicateCommitment, () => b.CommitClaimAsync(p.Prover, caught, 100));
        await Refused(ProtocolErrorCode.BondTooLow, () => b.CommitClaimAsync(p.Prover, Ticket(copyB, 4, answerB2, receiptB2), 50));
        Assert.Equal(new long[] { 0, 1, 2 }, new[] { idCaught, idFraming, idLapsed });
        Assert.Equal(idCaught, b.State.ClaimByCommitment(Hex.Of(p.Prover.Address), await b.ClaimCommitmentAsync(caught, Hex.Of(p.Prover.Address)))!.Id);
        await advance(2);
        await b.RevealClaimAsync(p.Prover, idCaught, caught);
        await b.RevealClaimAsync(p.Prover, idFraming, framing);

        // ---- usage: the hosts commit the epoch; the honest host's commit settles the prover's permit, then it rebuts
        await Refused(ProtocolErrorCode.UnknownLicence, () => b.CommitUsageAsync(p.User1, new UsageBook(b.Domain, Child, epoch)));
        await b.CommitUsageAsync(p.HostA, bookA);
        await b.CommitUsageAsync(p.HostB, bookB);
        var rejected = await Assert.ThrowsAsync<ProtocolException>(() => b.CommitUsageAsync(p.HostB, bookB));
        Assert.Equal(ProtocolErrorCode.UsageAlreadyCommitted, rejected.Code);
        var rebuttal = new Rebuttal([new RebuttalItem(proverPermit, epoch, bookA.ProofFor(receiptA))]);
        await Refused(ProtocolErrorCode.Unauthorized, () => b.RebutAsync(p.User1, idFraming, rebuttal));
        await b.RebutAsync(p.HostA, idFraming, rebuttal);
        await Refused(ProtocolErrorCode.ClaimState, () => b.RebutAsync(p.HostA, idFraming, rebuttal));

        // ---- settlement after the windows: the dishonest host is slashed, the lapsed claim's bond comes back
        Assert.Equal(ProtocolErrorCode.WindowClosed, (await Assert.ThrowsAsync<ProtocolException>(() => b.SettleAsync(p.User1, idCaught))).Code);
        await advance(pp.RebutWindowSeconds + 1);
        await b.SettleAsync(p.User1, idCaught);
        await b.SettleAsync(p.Prover, idLapsed);
        foreach (var k in new[] { p.HostA, p.Owner, p.ParentOwner, p.Prover }) await b.WithdrawAsync(k);
        Assert.Equal(ProtocolErrorCode.NothingToWithdraw, (await Assert.ThrowsAsync<ProtocolException>(() => b.WithdrawAsync(p.Prover))).Code);

        // ---- leak: the owner accuses the dishonest host
        await b.FileAccusationAsync(p.Owner, Child, A(p.HostB), """{"report":"trace","copies":[1]}""");

        // ---- governance: stake, propose, vote, execute
        await b.StakeAsync(p.Owner, 5_000);
        await b.StakeAsync(p.ParentOwner, 2_000);
        await Refused(ProtocolErrorCode.StakeLocked, () => b.UnstakeAsync(p.Owner, 1));
        await Refused(ProtocolErrorCode.InsufficientFunds, () => b.StakeAsync(p.User1, 10_000_000));
        await advance(1);
        await Refused(ProtocolErrorCode.Unauthorized, () => b.ProposeAsync(p.User1, new Dictionary<string, string> { ["MinBond"] = "1" }, "no stake"));
        await Refused(ProtocolErrorCode.InvalidParameters, () => b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["NoSuchThing"] = "1" }, "typo"));
        long proposal = (await b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["SlashFractionBps"] = "6000", ["MinBond"] = "150" }, "harsher slashing")).Id!.Value;
        await b.VoteAsync(p.Owner, proposal, true);
        await b.VoteAsync(p.ParentOwner, proposal, false);
        await Refused(ProtocolErrorCode.AlreadyVoted, () => b.VoteAsync(p.ParentOwner, proposal, true));
        await Refused(ProtocolErrorCode.WindowClosed, () => b.ExecuteAsync(p.User2, proposal));
        Assert.Equal(ProtocolErrorCode.NotEligibleToVote, (await Assert.ThrowsAsync<ProtocolException>(() => b.VoteAsync(p.User1, proposal, true))).Code);
        await b.RequestRefundAsync(p.User2, A(p.HostA));
        await Refused(ProtocolErrorCode.RefundPending, () => b.RefundAsync(p.User2, A(p.HostA)));
        await advance(pp.VotingWindowSeconds + 1);
        await b.ExecuteAsync(p.User2, proposal);
        await b.RefundAsync(p.User2, A(p.HostA));
        await b.UnstakeAsync(p.ParentOwner, 500);

        // ---- ownership: the base model changes hands in two steps; the child's transfer is left pending
        await b.TransferModelAsync(p.ParentOwner, Base, A(p.Owner));
        Assert.Equal(ProtocolErrorCode.NoPendingTransfer, (await Assert.ThrowsAsync<ProtocolException>(() => b.AcceptModelAsync(p.User1, Base))).Code);
        await b.AcceptModelAsync(p.Owner, Base);
        await b.TransferModelAsync(p.Owner, Child, A(p.User1));
        await b.RefreshAsync();
        return Normalise(b.State, p);
    }

    /// <summary>
    /// The state both backends must agree on. Left out by design: times (the ledger's clock and the chain's blocks
    /// differ); the ledger's request nonces (a chain account's nonce counts its transactions, approvals included);
    /// permit, receipt and usage-root hashes and claim commitments (EIP-712 digests of different domains — the
    /// embedded ledger's derived verifying contract vs. OmlProtocol's address — and the evidence hash is over the
    /// evidence JSON on the ledger, over the ABI-encoded items on chain: each is compared only as a count or a
    /// zero/non-zero flag); skip details (text) — their reason codes are compared. Digests go through
    /// <see cref="ChainBackend.Digest32"/>, the bytes32 the chain records.
    /// </summary>
    public static string Normalise(ProtocolState s, Parties p)
    {
        var o = new JsonObject
        {
            ["totalSupply"] = s.TotalSupply,
            ["parameters"] = JsonNode.Parse(s.Parameters.ToJson()),
        };
        var accounts = new JsonObject();
        foreach (var k in p.All)
        {
            var a = s.AccountOf(Hex.Of(k.Address));
            accounts[Hex.Of(k.Address)] = new JsonArray(a.Balance, a.Withdrawable, a.Locked, a.Escrowed, a.Staked);
        }
        o["accounts [balance, withdrawable, locked, escrowed, staked]"] = accounts;
        var escrows = new JsonObject();
        foreach (var (key, e) in s.Escrows) escrows[key.Replace('\n', '/')] = new JsonArray(e.Amount, e.RefundRequestedAt is not null);
        o["escrows"] = escrows;
        var models = new JsonObject();
        foreach (var (id, m) in s.Models)
            models[id] = new JsonObject
            {
                ["owner"] = m.Owner, ["pending"] = m.PendingOwner, ["price"] = m.PricePerQuery, ["minCollateral"] = m.MinCollateral,
                ["metadata"] = m.Metadata, ["terms"] = m.LicenceTerms,
                ["versions"] = new JsonArray([.. m.Versions.Select(v => (JsonNode)$"{ChainBackend.Digest32(v.WeightsDigest)} {v.Notes}")]),
                ["parents"] = new JsonArray([.. m.Parents.Select(x => (JsonNode)$"{x.ParentModelId} {x.ShareBps}")]),
                ["hosts"] = new JsonArray([.. m.Hosts.Select(h => (JsonNode)h)]),
            };
        o["models"] = models;
        var licences = new JsonObject();
        foreach (var (key, l) in s.Licences)
            licences[key.Replace('\n', '/')] = new JsonArray(l.Ordinal, l.Endpoint, l.CollateralPosted, l.CollateralLocked, l.IndicesRoot, l.FingerprintCount,
                l.CopyDigest is null ? null : ChainBackend.Digest32(l.CopyDigest), l.Allocation, l.Acknowledged);
        o["licences"] = licences;
        var usage = new JsonObject();
        foreach (var (key, u) in s.Usage)
            usage[key.Replace('\n', '/')] = new JsonObject
            {
                ["receipts"] = u.ReceiptCount, ["settled"] = u.PermitCount, ["fees"] = u.FeesSettled,
                ["skipped"] = new JsonArray([.. u.Skipped.Select(x => (JsonNode)x.Reason.ToString())]),
            };
        o["usage"] = usage;
        o["settledPermits"] = s.SettledPermits.Count;
        o["claims"] = new JsonArray([.. s.Claims.Select(c => (JsonNode)new JsonObject
        {
            ["id"] = c.Id, ["prover"] = c.Prover, ["bond"] = c.Bond, ["status"] = c.Status.ToString(), ["model"] = c.ModelId, ["host"] = c.Host,
            ["slashed"] = c.Slashed, ["capped"] = c.SlashCapped, ["reward"] = c.ProverReward,
            ["items"] = new JsonArray([.. c.Items.Select(i => (JsonNode)$"{i.FingerprintId} {i.LeafIndex} {(i.PermitHash == Hex.Zero32 ? "no permit" : "permit")}")]),
        })]);
        o["spent"] = new JsonArray([.. s.Claims.Where(c => c.ModelId is not null).SelectMany(c => c.Items.Select(i => (JsonNode)$"{i.FingerprintId} {s.IsSpent(c.ModelId!, i.FingerprintId)}"))]);
        o["proposals"] = new JsonArray([.. s.Proposals.Select(x => (JsonNode)new JsonObject
        {
            ["proposer"] = x.Proposer, ["changes"] = ProtocolParameters.ChangesToJson(x.Changes), ["description"] = x.Description,
            ["weights"] = new JsonArray([.. x.Weights.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w => (JsonNode)$"{w.Key} {w.Value}")]),
            ["yes"] = x.Yes, ["no"] = x.No, ["executed"] = x.Executed,
        })]);
        o["accusations"] = new JsonArray([.. s.Accusations.Select(a => (JsonNode)$"{a.ModelId} {a.Host} {a.Accuser} {a.EvidenceHash}")]);
        return o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }
}

public sealed class ConformanceTests(AnvilFixture fx)
{
    private static async Task<(string Normalised, ProtocolState State)> OnLedgerAsync(Parties p)
    {
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        var engine = ProtocolEngine.Initialize(new InMemoryLedger(), p.Treasury, ProtocolParameters.Default, clock: clock);
        using var b = new LedgerBackend(engine, "memory");
        var n = await ConformanceScenario.RunAsync(b, p, s => { clock.Now = clock.Now.AddSeconds(s); return Task.CompletedTask; });
        return (n, b.State);
    }

    /// <summary>A fresh deployment on the shared node with the ledger's default parameters, its parties funded with ether for gas.</summary>
    /// <summary>The deployment's whole log, its last block, and the check of a projection fed that log without the
    /// events named <paramref name="missing"/>.</summary>
    internal static async Task<(IReadOnlyList<ChainEvent> Events, long Latest, ChainVerification Check)> VerifyProjectionWithoutAsync(
        OmlChainClient reader, OmlDeployment deployment, string missing)
    {
        var events = await reader.EventsAsync(deployment.DeployedAtBlock);
        long latest = events.Max(e => e.BlockNumber);
        var projector = await ChainProjector.CreateAsync(reader);
        await projector.ApplyAsync(reader, events.Where(e => e.Name != missing).ToList(), latest);
        return (events, latest, await ChainVerifier.VerifyAsync(projector.State, reader, latest));
    }

    internal static async Task<OmlDeployment> DeployAsync(AnvilNode node, Parties p)
    {
        var d = ProtocolParameters.Default;
        BigInteger[] parameters = [.. ProtocolParameters.Names.Select(n => BigInteger.Parse(d.Get(n)))];
        var deployment = await OmlChainClient.DeployAsync(node.RpcUrl, node.ChainId, AnvilNode.DevKey, Hex.Of(p.Treasury.Address), parameters,
            registrationDelaySeconds: 0);
        foreach (var k in p.All) await node.FundAsync(Hex.Of(k.Address), BigInteger.Pow(10, 21));
        return deployment;
    }

    [Fact]
    public async Task One_story_ends_in_the_same_state_on_the_ledger_and_on_the_chain()
    {
        using var p = new Parties();
        var (onLedger, ledgerState) = await OnLedgerAsync(p);

        var deployment = await DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        var onChain = await ConformanceScenario.RunAsync(chain, p, s => fx.Node.IncreaseTimeAsync(s));

        Assert.Equal(onLedger, onChain);
        var check = await chain.VerifyAsync();
        Assert.True(check.Consistent, check.FirstDifference);
        Assert.True(check.Checks > 100, $"only {check.Checks} checks");

        // The story did what it says (same on both, so checked once): the dishonest host lost half its collateral,
        // the prover got 30 % of it and its bonds back, the framing bond went to the honest host, the lapsed bond
        // came back, the skipped permit is FeeTooLow, the proposal passed.
        string A(PrivateKey k) => Hex.Of(k.Address);
        var s = ledgerState;
        Assert.Equal(new[] { ClaimStatus.Slashed, ClaimStatus.Rebutted, ClaimStatus.Expired }, s.Claims.Select(c => c.Status).ToArray());
        Assert.Equal(1_000, s.Claims[0].Slashed);
        Assert.Equal(1_000, s.LicenceOf(ConformanceScenario.Child, A(p.HostB))!.CollateralLocked);
        Assert.Equal(1_000, s.AccountOf(A(p.HostB)).Locked);
        Assert.Equal(100_000 - 100 - 100 - 100 - 150 + 300 + 100 + 150, s.AccountOf(A(p.Prover)).Balance);
        Assert.Equal(ProtocolErrorCode.FeeTooLow, s.Usage.Values.Single(u => u.Host == A(p.HostA)).Skipped.Single().Reason);
        Assert.Equal(4 * 10 + 12, s.Usage.Values.Single(u => u.Host == A(p.HostA)).FeesSettled);
        Assert.Equal(6_000, s.Parameters.SlashFractionBps);
        Assert.True(s.Proposals.Single().Executed);
        Assert.Single(s.Accusations);
        // fees: host 20 %, the rest 80 % to the child's owner less 20 % of that to the base's owner (floors per permit)
        long hostCut = 4 * 2 + 2;   // 10 → 2 (x4 permits of 10), 12 → 2
        Assert.Equal(100_000 - 2_000 + hostCut + 100, s.AccountOf(A(p.HostA)).Balance);
    }

    [Fact]
    public async Task The_check_catches_a_projection_that_missed_events()
    {
        using var p = new Parties();
        var deployment = await DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        await chain.MintAsync(p.Treasury, Hex.Of(p.User1.Address), 1_000);
        await chain.DepositAsync(p.User1, Hex.Of(p.HostA.Address), 400);
        await chain.StakeAsync(p.User1, 100);
        var ok = await chain.VerifyAsync();
        Assert.True(ok.Consistent, ok.FirstDifference);

        var reader = chain.ClientFor(p.User2);
        var (events, latest, bad) = await VerifyProjectionWithoutAsync(reader, deployment, "Deposited");   // a projector that missed the deposit
        Assert.False(bad.Consistent);
        Assert.Contains("escrow", bad.FirstDifference);
        // and one fed the whole log agrees with the chain
        var full = await ChainProjector.CreateAsync(reader);
        await full.ApplyAsync(reader, events, latest);
        Assert.True((await ChainVerifier.VerifyAsync(full.State, reader, latest)).Consistent);
        Assert.Equal(chain.State.Digest(), full.State.Digest());
        // the views are read at the block the projection reached: a later action is not a difference there, but is at the head
        await chain.DepositAsync(p.User1, Hex.Of(p.HostA.Address), 5);
        Assert.True((await ChainVerifier.VerifyAsync(full.State, reader, latest)).Consistent);
        Assert.False((await ChainVerifier.VerifyAsync(full.State, reader)).Consistent);
        Assert.True((await chain.VerifyAsync()).Consistent);
        // reading the log in slices of three blocks folds the same state as the backend's incremental refreshes
        var sliced = await ChainProjector.CreateAsync(reader);
        sliced.BlocksPerRead = 3;
        await sliced.RefreshAsync(reader);
        Assert.Equal(chain.Projector.LastBlock, sliced.LastBlock);
        Assert.Equal(chain.State.Digest(), sliced.State.Digest());
    }

    [Fact]
    public async Task A_revert_is_a_protocol_rejection_with_the_custom_error_named()
    {
        using var p = new Parties();
        var deployment = await DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        var e = await Assert.ThrowsAsync<ProtocolException>(() => chain.WithdrawAsync(p.User1));
        Assert.Equal(ProtocolErrorCode.NothingToWithdraw, e.Code);
        Assert.Contains("NothingToWithdraw", e.Message);
        Assert.Equal("NothingToWithdraw", Assert.IsType<ChainRevertException>(e.InnerException).ErrorName);
        var funds = await Assert.ThrowsAsync<ProtocolException>(() => chain.DepositAsync(p.User1, Hex.Of(p.HostA.Address), 10));
        Assert.Equal(ProtocolErrorCode.InsufficientFunds, funds.Code);
        Assert.Contains("ERC20InsufficientBalance", funds.Message);
        var unknown = await Assert.ThrowsAsync<ProtocolException>(() => chain.ApplyLicenseAsync(p.HostA, "no/such-model", 0, "x"));
        Assert.Equal(ProtocolErrorCode.UnknownModel, unknown.Code);
    }

    [Fact]
    public async Task A_backend_picks_up_a_restarted_node_and_a_resent_action_is_applied_once()
    {
        using var p = new Parties();
        var dir = Directory.CreateTempSubdirectory("oml-backend-");
        try
        {
            await using var node = await AnvilNode.StartAsync(chainId: 5151);
            var deployment = await DeployAsync(node, p);
            string user = Hex.Of(p.User1.Address), host = Hex.Of(p.HostA.Address);
            using (var chain = await ChainBackend.OpenAsync(node.RpcUrl, deployment))
            {
                await chain.MintAsync(p.Treasury, user, 1_000);
                var r = await chain.DepositAsync(p.User1, host, 100);
                Assert.NotNull(r.GasUsed);
                Assert.StartsWith("0x", r.Reference);
                Assert.Equal(r.Position, chain.Projector.LastBlock);
            }

            // a deposit signed and sent, whose receipt was lost with the node: the same signed transaction is re-sent
            var client = new OmlChainClient(node.RpcUrl, deployment, World.KeyOf("conformance/user1"));
            await client.ApproveAsync(50);
            var lost = await client.Sender.PrepareAsync(deployment.Protocol, client.Protocol.GetFunction("deposit").GetData(host, new BigInteger(50)), "deposit");
            var state = Path.Combine(dir.FullName, "state.json");
            await node.DumpStateAsync(state);
            node.Stop();
            await using var restarted = await AnvilNode.StartAsync(chainId: 5151, loadState: state);
            using var again = await ChainBackend.OpenAsync(restarted.RpcUrl, deployment);
            Assert.Equal(100, again.State.EscrowOf(user, host).Amount);
            var resent = new OmlChainClient(restarted.RpcUrl, deployment, World.KeyOf("conformance/user1"));
            var first = await resent.Sender.SubmitAsync(lost);
            var second = await resent.Sender.SubmitAsync(lost);
            Assert.Equal(first.TransactionHash, second.TransactionHash);
            await again.RefreshAsync();
            Assert.Equal(150, again.State.EscrowOf(user, host).Amount);
            // the backend goes on with the next nonce and its projection still agrees with the chain
            await again.DepositAsync(p.User1, host, 1);
            Assert.Equal(151, again.State.EscrowOf(user, host).Amount);
            Assert.Equal(1_000 - 151, again.State.AccountOf(user).Balance);
            var check = await again.VerifyAsync();
            Assert.True(check.Consistent, check.FirstDifference);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task An_action_retried_after_its_receipt_was_lost_is_applied_once()
    {
        using var p = new Parties();
        await using var node = await AnvilNode.StartAsync(chainId: 5252);
        var deployment = await DeployAsync(node, p);
        string user = Hex.Of(p.User1.Address), host = Hex.Of(p.HostA.Address);
        using var chain = await ChainBackend.OpenAsync(node.RpcUrl, deployment);
        chain.ReceiptTimeout = TimeSpan.FromSeconds(1);
        await chain.MintAsync(p.Treasury, user, 1_000);
        await chain.ClientFor(p.User1).ApproveAsync(1_000);
        await node.RpcAsync("evm_setAutomine", "[false]");
        await Assert.ThrowsAsync<TimeoutException>(() => chain.DepositAsync(p.User1, host, 50));   // sent, never confirmed
        await node.RpcAsync("evm_mine", "[]");                                                      // ...but it was mined
        await node.RpcAsync("evm_setAutomine", "[true]");
        var retry = await chain.DepositAsync(p.User1, host, 50);                                     // the caller tries again
        Assert.Equal(50, chain.State.EscrowOf(user, host).Amount);
        Assert.Equal(950, chain.State.AccountOf(user).Balance);
        var again = await chain.DepositAsync(p.User1, host, 50);                                     // a new deposit is a new one
        Assert.NotEqual(retry.Reference, again.Reference);
        Assert.Equal(100, chain.State.EscrowOf(user, host).Amount);
        Assert.True((await chain.VerifyAsync()).Consistent);
    }

    [Fact]
    public async Task A_journal_resumes_a_lost_transaction_in_another_process_and_across_a_node_restart()
    {
        using var p = new Parties();
        var dir = Directory.CreateTempSubdirectory("oml-journal-");
        try
        {
            var journal = Path.Combine(dir.FullName, "journal");
            await using var node = await AnvilNode.StartAsync(chainId: 5353);
            var deployment = await DeployAsync(node, p);
            string user = Hex.Of(p.User1.Address), host = Hex.Of(p.HostA.Address);
            string? firstHash;
            using (var first = await ChainBackend.OpenAsync(node.RpcUrl, deployment, journal))
            {
                first.ReceiptTimeout = TimeSpan.FromSeconds(1);
                await first.MintAsync(p.Treasury, user, 1_000);
                await first.ClientFor(p.User1).ApproveAsync(1_000);
                await node.RpcAsync("evm_setAutomine", "[false]");
                await Assert.ThrowsAsync<TimeoutException>(() => first.DepositAsync(p.User1, host, 50));
                firstHash = first.ClientFor(p.User1).Sender.Unconfirmed.Single().Hash;
                await node.RpcAsync("evm_mine", "[]");   // applied, but that process never learnt it (it "crashed")
                await node.RpcAsync("evm_setAutomine", "[true]");
            }
            Assert.Single(Directory.GetFiles(journal, "*.json", SearchOption.AllDirectories));
            using (var second = await ChainBackend.OpenAsync(node.RpcUrl, deployment, journal))
            {
                var r = await second.DepositAsync(p.User1, host, 50);   // the rerun: answered from the journal, not paid twice
                Assert.Equal(firstHash, r.Reference);
                Assert.Equal(50, second.State.EscrowOf(user, host).Amount);
            }
            Assert.Empty(Directory.GetFiles(journal, "*.json", SearchOption.AllDirectories));

            // a transaction lost with the node: the node restarts from a dump taken before it, and the rerun re-sends it once
            var dump = Path.Combine(dir.FullName, "state.json");
            await node.DumpStateAsync(dump);
            using (var third = await ChainBackend.OpenAsync(node.RpcUrl, deployment, journal))
            {
                third.ReceiptTimeout = TimeSpan.FromSeconds(1);
                await node.RpcAsync("evm_setAutomine", "[false]");
                await Assert.ThrowsAsync<TimeoutException>(() => third.DepositAsync(p.User1, host, 70));
            }
            node.Stop();
            await using var restarted = await AnvilNode.StartAsync(chainId: 5353, loadState: dump);
            using var fourth = await ChainBackend.OpenAsync(restarted.RpcUrl, deployment, journal);
            Assert.Equal(50, fourth.State.EscrowOf(user, host).Amount);
            await fourth.DepositAsync(p.User1, host, 70);
            Assert.Equal(120, fourth.State.EscrowOf(user, host).Amount);
            Assert.Equal(880, fourth.State.AccountOf(user).Balance);
            Assert.Empty(Directory.GetFiles(journal, "*.json", SearchOption.AllDirectories));
            var check = await fourth.VerifyAsync();
            Assert.True(check.Consistent, check.FirstDifference);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_prover_resumes_its_claim_on_the_chain_from_the_ticket()
    {
        using var p = new Parties();
        var deployment = await DeployAsync(fx.Node, p);
        using var chain = await ChainBackend.OpenAsync(fx.Node.RpcUrl, deployment);
        string host = Hex.Of(p.HostB.Address);
        foreach (var k in new[] { p.Owner, p.HostB, p.Prover }) await chain.MintAsync(p.Treasury, Hex.Of(k.Address), 10_000);
        await chain.RegisterModelAsync(p.Owner, ConformanceScenario.Child, "sha256:" + new string('c', 64), "{}", "OML-1.0", 10, 0);
        await chain.ApplyLicenseAsync(p.HostB, ConformanceScenario.Child, 2_000, "https://b.example");
        var omlizer = new Omlizer(ConformanceScenario.Pool(), new RandomAllocation("conformance allocation"u8, 24, 8));
        var copy = await omlizer.BuildCopyAsync(chain.State, ConformanceScenario.Child, host, (_, _) => Task.FromResult("copy digest"));
        await chain.DeliverCopyAsync(p.Owner, copy);
        await chain.AcknowledgeCopyAsync(p.HostB, ConformanceScenario.Child, copy.CopyDigest);
        var f = copy.Subset.Fingerprints[0];
        string answer = f.Response.Text;
        var receipt = Receipt.Create(p.HostB.Address, ConformanceScenario.Child, null, f.Key, answer, chain.Now).Sign(chain.Domain, p.HostB);
        var ticket = ClaimTicket.Create(new ClaimEvidence(ConformanceScenario.Child, host, [new ClaimEvidenceItem(copy.Subset.Reveal(0), answer, receipt)]));
        string prover = Hex.Of(p.Prover.Address);
        Assert.NotEqual(ticket.CommitmentFor(prover), await chain.ClaimCommitmentAsync(ticket, prover));   // the evidence hash differs by design

        var first = await Prover.AdvanceClaimAsync(chain, p.Prover, ticket, 100, ct => fx.Node.IncreaseTimeAsync(1, ct));
        Assert.Equal(new[] { "commit", "reveal" }, first.Steps);
        Assert.Equal(ClaimStatus.Revealed, first.Claim.Status);
        var rerun = await Prover.AdvanceClaimAsync(chain, p.Prover, ticket, 100, ct => fx.Node.IncreaseTimeAsync(1, ct));
        Assert.Empty(rerun.Steps);   // found by its commitment: not committed twice
        Assert.Single(chain.State.Claims);
        Assert.True((await chain.VerifyAsync()).Consistent);
    }
}
