using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tracing;

namespace Oml.Chain.Tests;

/// <summary>
/// The bad cases of issue 11, each written once against <see cref="IProtocolBackend"/> and run on both backends: the
/// embedded ledger (in memory, a hand-moved clock) and the contracts on the test run's anvil through
/// <see cref="ChainBackend"/>. Each names the contract line and the ledger rule it exercises; removing either makes
/// the test fail on that backend (the attack would then succeed or the refusal would carry another code).
/// </summary>
public sealed class BadCaseTests(AnvilFixture fx)
{
    private const string Model = ConformanceScenario.Child;

    /// <summary>One backend with a model, two licensed hosts with their copies, and a user's escrow of 500 with host A.</summary>
    private sealed class Net(IProtocolBackend b, Func<long, Task> advance, Parties p) : IDisposable
    {
        public IProtocolBackend B { get; } = b;
        public Parties P { get; } = p;
        public Dictionary<string, HostCopy> Copies { get; } = new(StringComparer.Ordinal);
        public HostCopy CopyA => Copies[A(P.HostA)];
        public HostCopy CopyB => Copies[A(P.HostB)];

        public async Task AdvanceAsync(long seconds)
        {
            await advance(seconds);
            await B.RefreshAsync();
        }

        public void Dispose() => B.Dispose();
    }

    private static string A(PrivateKey k) => Hex.Of(k.Address);

    private async Task<Net> OpenAsync(string backend, Parties p, ProtocolParameters? parameters = null)
    {
        parameters ??= ProtocolParameters.Default;
        IProtocolBackend b;
        Func<long, Task> advance;
        if (backend == "ledger")
        {
            var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
            b = new LedgerBackend(ProtocolEngine.Initialize(new InMemoryLedger(), p.Treasury, parameters, clock: clock), "memory");
            advance = s => { clock.Now = clock.Now.AddSeconds(s); return Task.CompletedTask; };
        }
        else
        {
            b = await ChainBackend.OpenAsync(fx.Node.RpcUrl, await DeployAsync(p, parameters));
            advance = s => fx.Node.IncreaseTimeAsync(s);
        }
        var n = new Net(b, advance, p);
        foreach (var k in p.All.Skip(1)) await b.MintAsync(p.Treasury, A(k), 100_000);
        await b.RegisterModelAsync(p.Owner, Model, "sha256:" + new string('c', 64), """{"arch":"llama"}""", "OML-1.0", 10, 1_500);
        var omlizer = new Omlizer(ConformanceScenario.Pool(), new RandomAllocation("bad cases allocation"u8, 24, 8));
        foreach (var host in new[] { p.HostA, p.HostB })
        {
            await b.ApplyLicenseAsync(host, Model, 2_000, "https://host.example/v1");
            var copy = await omlizer.BuildCopyAsync(b.State, Model, A(host), (subset, _) =>
                Task.FromResult("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"copy of {A(host)}")))));
            await b.DeliverCopyAsync(p.Owner, copy);
            await b.AcknowledgeCopyAsync(host, Model, copy.CopyDigest);
            n.Copies[A(host)] = copy;
        }
        await b.DepositAsync(p.User1, A(p.HostA), 500);
        return n;
    }

    private async Task<OmlDeployment> DeployAsync(Parties p, ProtocolParameters parameters)
    {
        BigInteger[] values = [.. ProtocolParameters.Names.Select(name => BigInteger.Parse(parameters.Get(name)))];
        var d = await OmlChainClient.DeployAsync(fx.Node.RpcUrl, fx.Node.ChainId, AnvilNode.DevKey, A(p.Treasury), values, registrationDelaySeconds: 0);
        foreach (var k in p.All) await fx.Node.FundAsync(A(k), BigInteger.Pow(10, 21));
        return d;
    }

    /// <summary>Another deployment's domain: a second contract deployment on the same node, or a second ledger.</summary>
    private async Task<ProtocolDomain> OtherDeploymentAsync(string backend, Parties p) => backend == "ledger"
        ? ProtocolEngine.Initialize(new InMemoryLedger(), p.Treasury, ProtocolParameters.Default).Domain
        : (await DeployAsync(p, ProtocolParameters.Default)).Domain;

    /// <summary>Host <paramref name="host"/> answers fingerprint <paramref name="index"/> of <paramref name="copy"/> with no permit; the ticket claims it against <paramref name="claimed"/>.</summary>
    private static ClaimTicket Unpermitted(IProtocolBackend b, PrivateKey host, HostCopy copy, int index, string? claimed = null)
    {
        var f = copy.Subset.Fingerprints[index];
        var receipt = Receipt.Create(host.Address, Model, null, f.Key, f.Response.Text, b.Now).Sign(b.Domain, host);
        return ClaimTicket.Create(new ClaimEvidence(Model, claimed ?? A(host), [new ClaimEvidenceItem(copy.Subset.Reveal(index), f.Response.Text, receipt)]));
    }

    private static async Task<ProtocolErrorCode> Refused(Func<Task> action) => (await Assert.ThrowsAsync<ProtocolException>(action)).Code;

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_withdrawn_transfer_offer_cannot_be_accepted(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // Nothing pending: nothing to withdraw.
        Assert.Equal(ProtocolErrorCode.NoPendingTransfer, await Refused(() => b.TransferModelAsync(p.Owner, Model, Hex.ZeroAddress)));
        await b.TransferModelAsync(p.Owner, Model, A(p.User1));
        Assert.Equal(A(p.User1), b.State.Models[Model].PendingOwner);
        // Withdrawn (the zero address; chain: OmlProtocol.transferModel, ledger: Rules.Storage.cs TransferModel): the
        // offered account can no longer take the model. Without it the offer stood until redirected elsewhere.
        await b.TransferModelAsync(p.Owner, Model, Hex.ZeroAddress);
        Assert.Null(b.State.Models[Model].PendingOwner);
        Assert.Equal(ProtocolErrorCode.NoPendingTransfer, await Refused(() => b.AcceptModelAsync(p.User1, Model)));
        Assert.Equal(ProtocolErrorCode.NoPendingTransfer, await Refused(() => b.TransferModelAsync(p.Owner, Model, Hex.ZeroAddress)));
        Assert.Equal(A(p.Owner), b.State.Models[Model].Owner);
        // Only the owner withdraws; a new offer still completes.
        await b.TransferModelAsync(p.Owner, Model, A(p.User2));
        Assert.Equal(ProtocolErrorCode.Unauthorized, await Refused(() => b.TransferModelAsync(p.User1, Model, Hex.ZeroAddress)));
        await b.AcceptModelAsync(p.User2, Model);
        Assert.Equal(A(p.User2), b.State.Models[Model].Owner);
        if (b is ChainBackend chain) Assert.True((await chain.VerifyAsync()).Consistent);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Replayed_forged_wrong_chain_and_other_deployment_permits_are_skipped_and_pay_nothing(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        var other = await OtherDeploymentAsync(backend, p);
        Assert.NotEqual(b.Domain.VerifyingContract, other.VerifyingContract);
        using var mallory = PrivateKey.Generate();
        var book = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        // Each permit is the same message for this deployment; only who signed it, or for which domain, differs.
        SignedPermit Add(UsageBook into, long nonce, PrivateKey signer, ProtocolDomain domain)
        {
            var message = Permit.Create(p.User1.Address, Model, p.HostA.Address, $"q{nonce}", nonce, ConformanceScenario.Expiry, 10);
            var permit = new SignedPermit(message, Eip712.Sign(message.TypedData(domain), signer));
            into.Add(Receipt.Create(p.HostA.Address, Model, permit.Permit.Hash(b.Domain), $"q{nonce}", "a", b.Now).Sign(b.Domain, p.HostA), permit);
            return permit;
        }
        var good = Add(book, 1, p.User1, b.Domain);
        Add(book, 2, mallory, b.Domain);                                    // forged: not the user's signature
        Add(book, 3, p.User1, b.Domain with { ChainId = b.Domain.ChainId + 1 });   // wrong chain id
        Add(book, 4, p.User1, other);                                       // signed for another deployment's domain
        // Chain: OmlProtocol.sol:575 (_check: ECDSA.tryRecover over this deployment's EIP-712 digest, signer == p.user);
        // ledger: Rules.Access.cs:46 (sp.Verify(c.Domain)). Without them the three would settle and pay 30 more.
        await b.CommitUsageAsync(p.HostA, book);
        var first = b.State.Usage.Values.Single(u => u.Host == A(p.HostA));
        Assert.Equal(1, first.PermitCount);
        Assert.Equal(10, first.FeesSettled);
        Assert.Equal([ProtocolErrorCode.BadSignature, ProtocolErrorCode.BadSignature, ProtocolErrorCode.BadSignature],
            first.Skipped.Select(s => s.Reason).ToArray());

        // the good permit again, in the next epoch's book. Chain: OmlProtocol.sol _check (permitNonceUsed); ledger:
        // Rules.Access.cs (IsPermitNonceUsed). Without them the user would pay twice for one question.
        await n.AdvanceAsync(b.State.Parameters.EpochSeconds);
        var next = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        next.Add(Receipt.Create(p.HostA.Address, Model, good.Permit.Hash(b.Domain), "q1", "a", b.Now).Sign(b.Domain, p.HostA), good);
        await b.CommitUsageAsync(p.HostA, next);
        var second = b.State.Usage.Values.Single(u => u.Host == A(p.HostA) && u.Epoch == next.Epoch);
        Assert.Equal(0, second.PermitCount);
        Assert.Equal(ProtocolErrorCode.PermitReplayed, second.Skipped.Single().Reason);
        Assert.Equal(490, b.State.EscrowOf(A(p.User1), A(p.HostA)).Amount);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_user_who_reuses_a_served_permits_nonce_elsewhere_cannot_make_it_unsettleable(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        await b.DepositAsync(p.User1, A(p.HostB), 500);
        SignedPermit Signed(PrivateKey host, string query, long nonce)
        {
            var message = Permit.Create(p.User1.Address, Model, host.Address, query, nonce, ConformanceScenario.Expiry, 10);
            return new SignedPermit(message, Eip712.Sign(message.TypedData(b.Domain), p.User1));
        }
        // Host A serves a permit with nonce 7; before A commits, the user (or an owner posing as one) settles another
        // permit with the same nonce through host B.
        var served = Signed(p.HostA, "the question A answered", 7);
        var other = Signed(p.HostB, "another question", 7);
        var bookB = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        bookB.Add(Receipt.Create(p.HostB.Address, Model, other.Permit.Hash(b.Domain), "another question", "a", b.Now).Sign(b.Domain, p.HostB), other);
        await b.CommitUsageAsync(p.HostB, bookB);
        var bookA = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        bookA.Add(Receipt.Create(p.HostA.Address, Model, served.Permit.Hash(b.Domain), "the question A answered", "a", b.Now).Sign(b.Domain, p.HostA), served);
        await b.CommitUsageAsync(p.HostA, bookA);
        // A's permit still settles, so its receipt can rebut any claim. Chain: OmlProtocol.sol _check (permitNonceUsed,
        // per user, host and model); ledger: Rules.Access.cs (IsPermitNonceUsed). With a user-wide nonce it was skipped
        // as Replayed and A's receipt, naming an unsettled permit, became evidence against an honest host.
        var usageA = b.State.Usage.Values.Single(u => u.Host == A(p.HostA));
        Assert.Equal((1, 10L), (usageA.PermitCount, usageA.FeesSettled));
        Assert.Empty(usageA.Skipped);
        Assert.Equal(A(p.HostA), b.State.SettledPermits[served.Permit.Hash(b.Domain)]);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_parent_that_grows_a_long_chain_above_itself_cannot_block_the_childs_usage(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // The child's owner accepts the parent owner's model a-0 as a parent (1 %) and then User1's model "sibling"
        // (30 %). The parent's owner then declares a-0 -> a-1 -> ... -> a-169, each taking all of its child's revenue;
        // a-62 (the 64th model a split visits, counting the child) belongs to User2. A chain this long ran the
        // contract's recursive split out of stack, so no host of the child could commit usage again (and its unsettled
        // permits became slashable); a split that merely stopped after 64 visits would have taken the sibling's share.
        const int levels = 170, cut = FeeSplit.MaxVisits - 2;
        string Id(int i) => $"ancestor/a-{i}";
        for (int i = 0; i < levels; i++)
            await b.RegisterModelAsync(i == cut ? p.User2 : p.ParentOwner, Id(i), "sha256:" + new string('d', 64), "{}", "OML-1.0", 0, 0);
        await b.RegisterModelAsync(p.User1, "sibling", "sha256:" + new string('e', 64), "{}", "OML-1.0", 0, 0);
        await b.DeclareParentAsync(p.Owner, p.ParentOwner, Model, Id(0), 100);
        await b.DeclareParentAsync(p.Owner, p.User1, Model, "sibling", 3_000);
        for (int i = 0; i + 1 < levels; i++)
            await b.DeclareParentAsync(i == cut ? p.User2 : p.ParentOwner, i + 1 == cut ? p.User2 : p.ParentOwner, Id(i), Id(i + 1), 10_000);
        var who = new[] { p.Owner, p.User1, p.User2, p.ParentOwner };
        var before = who.Select(k => b.State.AccountOf(A(k)).Withdrawable).ToArray();
        var message = Permit.Create(p.User1.Address, Model, p.HostA.Address, "q", 1, ConformanceScenario.Expiry, 500);
        var permit = new SignedPermit(message, Eip712.Sign(message.TypedData(b.Domain), p.User1));
        var book = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        book.Add(Receipt.Create(p.HostA.Address, Model, permit.Permit.Hash(b.Domain), "q", "a", b.Now).Sign(b.Domain, p.HostA), permit);
        await b.CommitUsageAsync(p.HostA, book);
        // The fee of 500 pays host A 100; of the owner revenue of 400, a-0's 1 % (4) goes up the chain and the split
        // stops at the 64th model visited (a-62), which passes it whole to its parent's owner instead of splitting on;
        // the sibling still gets its 30 % (120); the child's owner keeps 276. Chain: OmlProtocol.sol _split
        // (MAX_SPLIT_VISITS); ledger: FeeSplit.cs.
        Assert.Equal(1, b.State.Usage.Values.Single(u => u.Host == A(p.HostA)).PermitCount);
        Assert.Equal([276L, 120L, 0L, 4L], who.Select((k, i) => b.State.AccountOf(A(k)).Withdrawable - before[i]).ToArray());
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Evidence_seen_in_a_pending_reveal_cannot_take_the_claim_from_the_prover_who_committed_first(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // Host B answered fingerprint 0 without a permit; the prover commits its claim.
        var honest = Unpermitted(b, p.HostB, n.CopyB, 0);
        long cHonest = (await b.CommitClaimAsync(p.Prover, honest, 100)).Id!.Value;
        await n.AdvanceAsync(1);
        // While the prover's reveal waits to be mined, its evidence is public. A thief commits the same evidence as its
        // own claim; host B has a puppet commit a claim on the same fingerprint with a decoy receipt naming a permit of
        // the puppet's (which B would settle, then rebut). Both reveal before the prover.
        var copied = ClaimTicket.Create(ClaimEvidence.FromJson(honest.EvidenceJson));
        long cThief = (await b.CommitClaimAsync(p.User2, copied, 100)).Id!.Value;
        var f = n.CopyB.Subset.Fingerprints[0];
        var decoyPermit = Permit.Create(p.User1.Address, Model, p.HostB.Address, f.Key, 99, ConformanceScenario.Expiry, 10);
        var signedDecoy = new SignedPermit(decoyPermit, Eip712.Sign(decoyPermit.TypedData(b.Domain), p.User1));
        var decoy = Receipt.Create(p.HostB.Address, Model, signedDecoy.Permit.Hash(b.Domain), f.Key, f.Response.Text, b.Now).Sign(b.Domain, p.HostB);
        var puppet = ClaimTicket.Create(new ClaimEvidence(Model, A(p.HostB), [new ClaimEvidenceItem(n.CopyB.Subset.Reveal(0), f.Response.Text, decoy)]));
        long cPuppet = (await b.CommitClaimAsync(p.User1, puppet, 100)).Id!.Value;
        await n.AdvanceAsync(1);
        long thiefLocked = b.State.AccountOf(A(p.User2)).Locked, thiefFree = b.State.AccountOf(A(p.User2)).Withdrawable;
        await b.RevealClaimAsync(p.User2, cThief, copied);
        await b.RevealClaimAsync(p.User1, cPuppet, puppet);
        // The prover's reveal still lands: the fingerprint was revealed already, but a revealed fingerprint is a record,
        // not a bar (the puppet's decoy receipt is another receipt), and the receipt it copies belongs to the claim
        // committed first. Chain: OmlClaims.sol _takeReceipt; ledger: Rules.Claims.cs RevealClaim.
        await b.RevealClaimAsync(p.Prover, cHonest, honest);
        var claims = b.State.Claims;
        Assert.Equal(ClaimStatus.Revealed, claims[(int)cHonest].Status);
        Assert.Equal(ClaimStatus.Voided, claims[(int)cThief].Status);
        Assert.Equal(ClaimStatus.Revealed, claims[(int)cPuppet].Status);
        Assert.Equal((thiefLocked - 100, thiefFree + 100),
            (b.State.AccountOf(A(p.User2)).Locked, b.State.AccountOf(A(p.User2)).Withdrawable));   // the voided claim's bond is back
        Assert.Equal(ProtocolErrorCode.ClaimState, await Refused(() => b.SettleAsync(p.User1, cThief)));
        // B cannot rebut the prover's claim (its receipt names no permit), so it is slashed.
        await n.AdvanceAsync(b.State.Parameters.RebutWindowSeconds + 1);
        await b.SettleAsync(p.User1, cHonest);
        Assert.Equal(ClaimStatus.Slashed, b.State.Claims[(int)cHonest].Status);
        Assert.Equal(1_000, b.State.Claims[(int)cHonest].Slashed);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_voided_claims_other_receipts_go_back_to_its_prover_not_to_a_copier(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // Host B answered fingerprints 0 and 1 without a permit. The prover commits a claim on 1 first (P), then one on
        // 0 and 1 (H), and reveals H; its receipts are now public and a copier commits a claim on H's receipt for 0.
        var only1 = Unpermitted(b, p.HostB, n.CopyB, 1);
        var ev1 = ClaimEvidence.FromJson(only1.EvidenceJson).Items[0];
        var ev0 = ClaimEvidence.FromJson(Unpermitted(b, p.HostB, n.CopyB, 0).EvidenceJson).Items[0];
        var both = ClaimTicket.Create(new ClaimEvidence(Model, A(p.HostB), [ev0, ev1]));
        long cP = (await b.CommitClaimAsync(p.Prover, only1, 100)).Id!.Value;
        await n.AdvanceAsync(1);
        long cH = (await b.CommitClaimAsync(p.Prover, both, 100)).Id!.Value;
        await n.AdvanceAsync(1);
        await b.RevealClaimAsync(p.Prover, cH, both);
        var copied = ClaimTicket.Create(new ClaimEvidence(Model, A(p.HostB), [ev0]));
        long cCopy = (await b.CommitClaimAsync(p.User2, copied, 100)).Id!.Value;
        await n.AdvanceAsync(1);
        // P, committed first, takes receipt 1 and voids H. H's receipt for 0 stays its prover's: the copier, committed
        // after H, cannot take it; the prover's new claim can. Chain: OmlClaims.sol _takeReceipt; ledger: Rules.Claims.cs.
        await b.RevealClaimAsync(p.Prover, cP, only1);
        Assert.Equal(ClaimStatus.Voided, b.State.Claims[(int)cH].Status);
        Assert.Equal(ProtocolErrorCode.ReceiptClaimed, await Refused(() => b.RevealClaimAsync(p.User2, cCopy, copied)));
        var again = ClaimTicket.Create(new ClaimEvidence(Model, A(p.HostB), [ev0]));
        long cAgain = (await b.CommitClaimAsync(p.Prover, again, 100)).Id!.Value;
        await n.AdvanceAsync(1);
        await b.RevealClaimAsync(p.Prover, cAgain, again);
        Assert.Equal(ClaimStatus.Revealed, b.State.Claims[(int)cAgain].Status);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Governance_cannot_change_the_epoch_length_nor_set_windows_past_a_year(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        await b.StakeAsync(p.Owner, 5_000);
        await n.AdvanceAsync(1);
        // Chain: OmlProtocol.sol validateChange / validateParameter (MAX_WINDOW_SECONDS); ledger: ProtocolParameters.
        Assert.Equal(ProtocolErrorCode.InvalidParameters, await Refused(() => b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["EpochSeconds"] = "2592000" }, "30-day epochs")));
        foreach (var name in new[] { "RebutWindowSeconds", "VotingWindowSeconds", "RefundDelaySeconds", "RevealWindowSeconds" })
            Assert.Equal(ProtocolErrorCode.InvalidParameters, await Refused(() => b.ProposeAsync(p.Owner, new Dictionary<string, string> { [name] = (ProtocolParameters.MaxWindowSeconds + 1).ToString() }, "forever")));
        long id = (await b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["RefundDelaySeconds"] = ProtocolParameters.MaxWindowSeconds.ToString() }, "a year")).Id!.Value;
        await b.VoteAsync(p.Owner, id, true);
        await n.AdvanceAsync(b.State.Parameters.VotingWindowSeconds + 1);
        await b.ExecuteAsync(p.User1, id);
        Assert.Equal(ProtocolParameters.MaxWindowSeconds, b.State.Parameters.RefundDelaySeconds);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_slash_is_capped_at_the_collateral_and_a_second_withdrawal_pays_nothing(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p, ProtocolParameters.Default with { SlashFractionBps = 7_000 });
        var b = n.B;
        var t0 = Unpermitted(b, p.HostB, n.CopyB, 0);
        var t1 = Unpermitted(b, p.HostB, n.CopyB, 1);
        long c0 = (await b.CommitClaimAsync(p.Prover, t0, 100)).Id!.Value;
        long c1 = (await b.CommitClaimAsync(p.Prover, t1, 100)).Id!.Value;
        await n.AdvanceAsync(2);
        await b.RevealClaimAsync(p.Prover, c0, t0);
        await b.RevealClaimAsync(p.Prover, c1, t1);
        await n.AdvanceAsync(b.State.Parameters.RebutWindowSeconds + 1);
        await b.SettleAsync(p.User1, c0);
        await b.SettleAsync(p.User1, c1);
        // 70 % of the 2,000 posted twice would be 2,800; the second slash takes only the 600 still locked.
        // Chain: OmlProtocol.sol:666-669 (slashed capped at collateralLocked); ledger: Rules.Claims.cs:154.
        var claims = b.State.Claims;
        Assert.Equal((1_400, false), (claims[(int)c0].Slashed, claims[(int)c0].SlashCapped));
        Assert.Equal((600, true), (claims[(int)c1].Slashed, claims[(int)c1].SlashCapped));
        Assert.Equal(0, b.State.LicenceOf(Model, A(p.HostB))!.CollateralLocked);

        // the prover's reward and bonds are credits; they are paid once. Chain: OmlProtocol.sol:639-640 (zero
        // credits, then transfer; NothingToWithdraw); ledger: Rules.cs:239.
        long credits = b.State.AccountOf(A(p.Prover)).Withdrawable;
        Assert.True(credits > 200, $"credits {credits}");
        long balance = b.State.AccountOf(A(p.Prover)).Balance;
        await b.WithdrawAsync(p.Prover);
        Assert.Equal(balance + credits, b.State.AccountOf(A(p.Prover)).Balance);
        Assert.Equal(ProtocolErrorCode.NothingToWithdraw, await Refused(() => b.WithdrawAsync(p.Prover)));
        Assert.Equal(balance + credits, b.State.AccountOf(A(p.Prover)).Balance);
        Assert.Equal(0, b.State.AccountOf(A(p.Prover)).Withdrawable);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_reveal_with_another_copys_proof_and_a_claim_on_an_unlicensed_host_are_refused(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // A fingerprint of A's copy that B's copy does not hold, with A's proof, claimed against B (B answered it).
        // Chain: OmlClaims.sol:186 (OmlMerkle.verify against B's committed root); ledger: Rules.Claims.cs:64.
        int onlyA = n.CopyA.Subset.Fingerprints.Select((f, i) => (f, i)).First(x => n.CopyB.Subset.Fingerprints.All(y => y.Key != x.f.Key)).i;
        var badProof = Unpermitted(b, p.HostB, n.CopyA, onlyA);
        // User2 holds no licence: it answers a fingerprint of A's copy and is claimed against.
        // Chain: OmlClaims.sol:176 (UnknownLicence); ledger: Rules.Claims.cs:48.
        var unlicensed = Unpermitted(b, p.User2, n.CopyA, 0);
        long c0 = (await b.CommitClaimAsync(p.Prover, badProof, 100)).Id!.Value;
        long c1 = (await b.CommitClaimAsync(p.Prover, unlicensed, 100)).Id!.Value;
        await n.AdvanceAsync(2);
        Assert.Equal(ProtocolErrorCode.InvalidProof, await Refused(() => b.RevealClaimAsync(p.Prover, c0, badProof)));
        Assert.Equal(ProtocolErrorCode.UnknownLicence, await Refused(() => b.RevealClaimAsync(p.Prover, c1, unlicensed)));
        Assert.All(b.State.Claims, c => Assert.Equal(ClaimStatus.Committed, c.Status));
        Assert.Equal(2_000, b.State.LicenceOf(Model, A(p.HostB))!.CollateralLocked);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_rebuttal_after_the_window_is_refused_and_the_claim_slashes(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // Host A answers a fingerprint key under a funded permit and settles it, but rebuts only after the window.
        var f = n.CopyA.Subset.Fingerprints[2];
        var permit = Permit.Create(p.User1.Address, Model, p.HostA.Address, f.Key, 7, ConformanceScenario.Expiry, 10).Sign(b.Domain, p.User1);
        var receipt = Receipt.Create(p.HostA.Address, Model, permit.Permit.Hash(b.Domain), f.Key, f.Response.Text, b.Now).Sign(b.Domain, p.HostA);
        var book = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        book.Add(receipt, permit);
        var ticket = ClaimTicket.Create(new ClaimEvidence(Model, A(p.HostA), [new ClaimEvidenceItem(n.CopyA.Subset.Reveal(2), f.Response.Text, receipt)]));
        long id = (await b.CommitClaimAsync(p.Prover, ticket, 100)).Id!.Value;
        await n.AdvanceAsync(2);
        await b.RevealClaimAsync(p.Prover, id, ticket);
        await b.CommitUsageAsync(p.HostA, book);
        await n.AdvanceAsync(b.State.Parameters.RebutWindowSeconds + 1);
        // Chain: OmlClaims.sol:218 (RebutWindowClosed); ledger: Rules.Claims.cs:102.
        var rebuttal = new Rebuttal([new RebuttalItem(permit, book.Epoch, book.ProofFor(receipt))]);
        Assert.Equal(ProtocolErrorCode.WindowClosed, await Refused(() => b.RebutAsync(p.HostA, id, rebuttal)));
        await b.SettleAsync(p.User1, id);
        Assert.Equal(ClaimStatus.Slashed, b.State.Claims[(int)id].Status);
        Assert.Equal(1_000, b.State.LicenceOf(Model, A(p.HostA))!.CollateralLocked);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Accounts_without_stake_can_neither_propose_nor_vote(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        var capture = new Dictionary<string, string> { ["SlashFractionBps"] = "0" };
        // User1 owns no stake (it has balance and escrow, and could register models). Chain: OmlGovernance.sol:119
        // (BelowProposalThreshold); ledger: Rules.Claims.cs:190.
        Assert.Equal(ProtocolErrorCode.Unauthorized, await Refused(() => b.ProposeAsync(p.User1, capture, "no more slashing")));
        await b.StakeAsync(p.Owner, 5_000);
        await n.AdvanceAsync(1);
        long id = (await b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["MinBond"] = "150" }, "bond")).Id!.Value;
        // Stake bought after the proposal does not count. Chain: OmlGovernance.sol:144 (NoVotingPower: weight at the
        // proposal's snapshot); ledger: Rules.Claims.cs:212.
        await b.StakeAsync(p.User1, 50_000);
        Assert.Equal(ProtocolErrorCode.NotEligibleToVote, await Refused(() => b.VoteAsync(p.User1, id, false)));
        await b.VoteAsync(p.Owner, id, true);
        Assert.Equal(5_000, b.State.Proposals.Single().Yes);
        Assert.Equal(0, b.State.Proposals.Single().No);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Stake_withdrawn_after_a_proposal_votes_no_more(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        await b.StakeAsync(p.Owner, 5_000);
        await b.StakeAsync(p.User1, 3_000);
        await b.StakeAsync(p.User2, 1_000);
        // Past the stake's own lock (a voting window after staking), so the stakes may leave.
        await n.AdvanceAsync(b.State.Parameters.VotingWindowSeconds + 1);
        long id = (await b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["MinBond"] = "150" }, "bond")).Id!.Value;
        Assert.Equal(9_000, b.State.Proposals.Single().TotalWeight);
        // User1 takes 2,000 of its 3,000 out before voting, User2 all of it: the tokens are theirs again (to sell, or
        // to stake elsewhere), so the snapshot's weight must not vote for them. Chain: OmlGovernance.vote (the lesser
        // of the snapshot and the current stake); ledger: Rules.Claims.cs Vote. Without it User1 would vote 3,000.
        await b.UnstakeAsync(p.User1, 2_000);
        await b.UnstakeAsync(p.User2, 1_000);
        await b.VoteAsync(p.User1, id, false);
        Assert.Equal(ProtocolErrorCode.NotEligibleToVote, await Refused(() => b.VoteAsync(p.User2, id, false)));
        await b.VoteAsync(p.Owner, id, true);
        var proposal = b.State.Proposals.Single();
        Assert.Equal(5_000, proposal.Yes);
        Assert.Equal(1_000, proposal.No);
        Assert.Equal(1_000, proposal.VoteWeights[A(p.User1)]);
        if (b is ChainBackend chain) Assert.True((await chain.VerifyAsync()).Consistent);
    }
}
