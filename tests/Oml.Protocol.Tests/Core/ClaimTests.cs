using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;

namespace Oml.Protocol.Tests.Core;

public class ClaimTests
{
    /// <summary>A fake model: answers every key of <paramref name="pool"/> with its response (plus a tail), anything else with a refusal.</summary>
    internal static Func<string, CancellationToken, Task<string>> Answers(IEnumerable<Fingerprint> fingerprints)
    {
        var map = fingerprints.ToDictionary(f => f.Key, f => f.Response.Text + " and so on");
        return (q, _) => Task.FromResult(map.TryGetValue(q, out var a) ? a : "I cannot help with that.");
    }

    private sealed class Fixture : IDisposable
    {
        public TestNet N { get; }
        public FingerprintSet Pool { get; } = Pools.Make(12);
        public HostCopy A { get; }
        public HostCopy B { get; }
        public HostService HostA { get; }
        public HostService HostB { get; }

        public Fixture(ProtocolParameters? p = null)
        {
            N = new TestNet(p);
            var omlizer = TestNet.NewOmlizer(Pool, perHost: 8);
            A = N.License(N.HostA, omlizer, collateral: 2_000);
            B = N.License(N.HostB, omlizer, collateral: 2_000);
            // Both copies answer their own fingerprints; both serve without permits here.
            HostA = new HostService(N.HostA, N.Engine.Domain, TestNet.Model, 0, Answers(A.Subset.Fingerprints), PermitPolicy.Ignore, N.Clock);
            HostB = new HostService(N.HostB, N.Engine.Domain, TestNet.Model, 0, Answers(B.Subset.Fingerprints), PermitPolicy.Ignore, N.Clock);
        }

        public void Dispose() => N.Dispose();
    }

    private static async Task<ClaimTicket> Audit(TestNet n, HostCopy copy, IHostEndpoint endpoint, int items = 1)
    {
        var report = await Prover.AuditAsync(n.S, TestNet.Model, copy.Host, copy.Subset, endpoint, maxQueries: 4, TestContext.Current.CancellationToken);
        Assert.True(report.Caught);
        return Prover.PrepareClaim(report, copy.Subset, items);
    }

    [Fact]
    public async Task UnpermittedServingIsClaimedAndSlashed()
    {
        using var f = new Fixture();
        var n = f.N;
        var report = await Prover.AuditAsync(n.S, TestNet.Model, f.B.Host, f.B.Subset, f.HostB, maxQueries: 3, TestContext.Current.CancellationToken);
        Assert.Equal(3, report.Queried);
        Assert.Equal(3, report.Hits.Count);
        var ticket = Prover.PrepareClaim(report, f.B.Subset, maxItems: 2);

        n.Rejected(ProtocolErrorCode.BondTooLow, () => n.Engine.CommitClaim(n.Prover, ticket, n.S.Parameters.MinBond - 1));
        long id = n.Engine.CommitClaim(n.Prover, ticket, 200);
        Assert.Equal(99_800, n.Acc(n.Prover).Balance);
        // The commitment hides the host: nothing about B or the evidence is on the ledger yet.
        Assert.Equal(ClaimStatus.Committed, n.S.Claims[(int)id].Status);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.RevealClaim(n.Prover, id, ticket));   // same second
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.RevealClaim(n.Outsider, id, ticket));
        n.Rejected(ProtocolErrorCode.CommitmentMismatch, () => n.Engine.RevealClaim(n.Prover, id, ticket with { Salt = Hex.Of(new byte[32]) }));
        n.Engine.RevealClaim(n.Prover, id, ticket);
        var claim = n.S.Claims[(int)id];
        Assert.Equal(ClaimStatus.Revealed, claim.Status);
        Assert.Equal(2, claim.Items.Count);
        Assert.All(claim.Items, i => Assert.True(n.S.IsSpent(TestNet.Model, i.FingerprintId)));

        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Settle(n.Outsider, id));
        n.Clock.Advance(n.S.Parameters.RebutWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Rebut(n.HostB, id, new Rebuttal([])));
        long ownerBefore = n.Acc(n.Owner).Withdrawable;
        n.Engine.Settle(n.Outsider, id);
        // slash = 50% of 2000 = 1000; prover reward 30% = 300 (+ bond 200); owner 700.
        Assert.Equal(ClaimStatus.Slashed, claim.Status);
        Assert.Equal(1_000, claim.Slashed);
        Assert.False(claim.SlashCapped);
        Assert.Equal(1_000, n.S.LicenceOf(TestNet.Model, f.B.Host)!.CollateralLocked);
        Assert.Equal(1_000, n.Acc(n.HostB).Locked);
        Assert.Equal(500, n.Acc(n.Prover).Withdrawable);
        Assert.Equal(0, n.Acc(n.Prover).Locked);
        Assert.Equal(ownerBefore + 700, n.Acc(n.Owner).Withdrawable);
        n.Rejected(ProtocolErrorCode.ClaimState, () => n.Engine.Settle(n.Outsider, id));
    }

    [Fact]
    public async Task SlashBeyondTheRemainingCollateralIsCapped()
    {
        using var f = new Fixture(ProtocolParameters.Default with { SlashFractionBps = 6_000 });
        var n = f.N;
        var report = await Prover.AuditAsync(n.S, TestNet.Model, f.B.Host, f.B.Subset, f.HostB, maxQueries: 2, TestContext.Current.CancellationToken);
        var first = Prover.PrepareClaim(report with { Hits = [report.Hits[0]] }, f.B.Subset);
        var second = Prover.PrepareClaim(report with { Hits = [report.Hits[1]] }, f.B.Subset);
        long c1 = n.Engine.CommitClaim(n.Prover, first, 100);
        long c2 = n.Engine.CommitClaim(n.Prover, second, 100);
        n.Clock.Advance(1);
        n.Engine.RevealClaim(n.Prover, c1, first);
        n.Engine.RevealClaim(n.Prover, c2, second);
        n.Clock.Advance(n.S.Parameters.RebutWindowSeconds + 1);
        n.Engine.Settle(n.Outsider, c1);
        n.Engine.Settle(n.Outsider, c2);
        var a = n.S.Claims[(int)c1];
        var b = n.S.Claims[(int)c2];
        Assert.Equal(1_200, a.Slashed);
        Assert.False(a.SlashCapped);
        Assert.Equal(800, b.Slashed);      // wanted 1200, only 800 still locked
        Assert.True(b.SlashCapped);
        Assert.Equal(240, b.ProverReward);
        Assert.Equal(0, n.S.LicenceOf(TestNet.Model, f.B.Host)!.CollateralLocked);
        Assert.Equal(0, n.Acc(n.HostB).Locked);
        Assert.Equal(98_000, n.Acc(n.HostB).Balance); // never negative: the rest of its money is untouched
    }

    [Fact]
    public async Task ProofForAnotherHostsSetFails()
    {
        using var f = new Fixture();
        var n = f.N;
        // A fingerprint of A's copy that B's copy does not hold; B's endpoint (a pool-wide cheat) answers it anyway.
        var onlyA = f.A.Subset.Fingerprints.First(x => !f.B.Subset.Fingerprints.Any(y => y.Key == x.Key));
        var cheat = new HostService(n.HostB, n.Engine.Domain, TestNet.Model, 0, Answers(f.Pool.Fingerprints), PermitPolicy.Ignore, n.Clock);
        var ans = await cheat.AskAsync(onlyA.Key, null, TestContext.Current.CancellationToken);
        var evidence = new ClaimEvidence(TestNet.Model, f.B.Host, [new ClaimEvidenceItem(f.A.Subset.Reveal(onlyA.Index), ans.Text, ans.Receipt)]);
        var ticket = ClaimTicket.Create(evidence);
        long id = n.Engine.CommitClaim(n.Prover, ticket, 100);
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.InvalidProof, () => n.Engine.RevealClaim(n.Prover, id, ticket));
    }

    [Fact]
    public async Task AReceiptBacksOneClaimWhileARevealedFingerprintStaysClaimable()
    {
        using var f = new Fixture();
        var n = f.N;
        var shared = f.B.Subset.Fingerprints.First(x => f.A.Subset.Fingerprints.Any(y => y.Key == x.Key));
        var onA = f.A.Subset.Fingerprints.Single(y => y.Key == shared.Key);
        // Claim on B with the shared pool fingerprint.
        var ansB = await f.HostB.AskAsync(shared.Key, null, TestContext.Current.CancellationToken);
        var t1 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.B.Host, [new ClaimEvidenceItem(f.B.Subset.Reveal(shared.Index), ansB.Text, ansB.Receipt)]));
        long c1 = n.Engine.CommitClaim(n.Prover, t1, 100);
        // A answered the same key without a permit too: its own signed receipt is evidence of its own, revealed key or not
        // (a key anyone knows still cannot make an honest host sign a receipt naming no settled permit).
        var ansA = await f.HostA.AskAsync(onA.Key, null, TestContext.Current.CancellationToken);
        var t2 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.A.Host, [new ClaimEvidenceItem(f.A.Subset.Reveal(onA.Index), ansA.Text, ansA.Receipt)]));
        long c2 = n.Engine.CommitClaim(n.Outsider, t2, 100);
        // B's receipt again, committed after c1 by someone who copied it: it backs c1 only.
        var copy = ClaimTicket.Create(ClaimEvidence.FromJson(t1.EvidenceJson));
        long c3 = n.Engine.CommitClaim(n.Outsider, copy, 100);
        n.Clock.Advance(1);
        n.Engine.RevealClaim(n.Prover, c1, t1);
        n.Engine.RevealClaim(n.Outsider, c2, t2);
        Assert.True(n.S.IsSpent(TestNet.Model, n.S.Claims[(int)c1].Items[0].FingerprintId));
        n.Rejected(ProtocolErrorCode.ReceiptClaimed, () => n.Engine.RevealClaim(n.Outsider, c3, copy));
        Assert.Equal(ClaimStatus.Revealed, n.S.Claims[(int)c2].Status);
        // The prover's audit still skips spent fingerprints (a violating host may block keys it has seen revealed).
        var again = await Prover.AuditAsync(n.S, TestNet.Model, f.A.Host, f.A.Subset, f.HostA, ct: TestContext.Current.CancellationToken);
        Assert.Equal(f.A.Subset.Count - 1, again.Queried);
    }

    [Fact]
    public async Task ForgedReceiptsAndWrongAnswersFail()
    {
        using var f = new Fixture();
        var n = f.N;
        var fp = f.B.Subset[0];
        var ans = await f.HostB.AskAsync(fp.Key, null, TestContext.Current.CancellationToken);
        // A receipt in B's name, signed by the outsider.
        var forged = new SignedReceipt(ans.Receipt.Receipt, Eip712.Sign(ans.Receipt.Receipt.TypedData(n.Engine.Domain), n.Outsider));
        var t1 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.B.Host, [new ClaimEvidenceItem(f.B.Subset.Reveal(0), ans.Text, forged)]));
        // An answer that is not the fingerprint's response, with B's genuine receipt for it.
        var wrong = await f.HostB.AskAsync(f.A.Subset.Fingerprints.First(x => !f.B.Subset.Fingerprints.Any(y => y.Key == x.Key)).Key, null, TestContext.Current.CancellationToken);
        var wrongReceipt = Receipt.Create(n.HostB.Address, TestNet.Model, null, fp.Key, wrong.Text, n.Engine.Now).Sign(n.Engine.Domain, n.HostB);
        var t2 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.B.Host, [new ClaimEvidenceItem(f.B.Subset.Reveal(0), wrong.Text, wrongReceipt)]));
        // A receipt for another query.
        var t3 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.B.Host, [new ClaimEvidenceItem(f.B.Subset.Reveal(1), ans.Text, ans.Receipt)]));
        long c1 = n.Engine.CommitClaim(n.Prover, t1, 100), c2 = n.Engine.CommitClaim(n.Prover, t2, 100), c3 = n.Engine.CommitClaim(n.Prover, t3, 100);
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.BadSignature, () => n.Engine.RevealClaim(n.Prover, c1, t1));
        n.Rejected(ProtocolErrorCode.AnswerMismatch, () => n.Engine.RevealClaim(n.Prover, c2, t2));
        n.Rejected(ProtocolErrorCode.InvalidReceipt, () => n.Engine.RevealClaim(n.Prover, c3, t3));
        // Past the reveal window even the good claim is too late; the bond is forfeited at settlement.
        var good = await Audit(n, f.B, f.HostB);
        long c4 = n.Engine.CommitClaim(n.Prover, good, 100);
        n.Clock.Advance(n.S.Parameters.RevealWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.RevealClaim(n.Prover, c4, good));
        n.Engine.Settle(n.Outsider, c4);
        Assert.Equal(ClaimStatus.Expired, n.S.Claims[(int)c4].Status);
    }

    [Fact]
    public async Task PermittedUseIsRebuttedAndTheBondGoesToTheHost()
    {
        using var f = new Fixture();
        var n = f.N;
        var d = n.Engine.Domain;
        var honest = new HostService(n.HostA, d, TestNet.Model, 0, Answers(f.A.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        var fp = f.A.Subset[2];
        await Assert.ThrowsAsync<QueryRefusedException>(() => honest.AskAsync(fp.Key, null, TestContext.Current.CancellationToken));
        // The prover poses as a paying user, then claims anyway.
        n.Engine.Deposit(n.Prover, TestNet.A(n.HostA), 50);
        var permit = Permit.Create(n.Prover.Address, TestNet.Model, n.HostA.Address, fp.Key, 1, n.Engine.Now + 3_600, TestNet.Price).Sign(d, n.Prover);
        var ans = await honest.AskAsync(fp.Key, permit, TestContext.Current.CancellationToken);
        Assert.Equal(permit.Permit.Hash(d), ans.Receipt.Receipt.PermitHash);
        var ticket = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.A.Host, [new ClaimEvidenceItem(f.A.Subset.Reveal(fp.Index), ans.Text, ans.Receipt)]));
        long id = n.Engine.CommitClaim(n.Prover, ticket, 300);
        n.Clock.Advance(1);
        n.Engine.RevealClaim(n.Prover, id, ticket);   // the permit was not settled yet

        var book = honest.StartEpoch(1);
        var rebuttal = new Rebuttal([new RebuttalItem(permit, 0, book.ProofFor(ans.Receipt))]);
        n.Rejected(ProtocolErrorCode.InvalidPermit, () => n.Engine.Rebut(n.HostA, id, rebuttal));  // not settled yet
        n.Engine.CommitUsage(n.HostA, book);
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.Rebut(n.HostB, id, rebuttal));
        n.Engine.Rebut(n.HostA, id, rebuttal);
        Assert.Equal(ClaimStatus.Rebutted, n.S.Claims[(int)id].Status);
        Assert.Equal(300 + 2, n.Acc(n.HostA).Withdrawable);   // the bond, plus its 20% host share of the fee
        Assert.Equal(0, n.Acc(n.Prover).Locked);
        Assert.Equal(2_000, n.S.LicenceOf(TestNet.Model, f.A.Host)!.CollateralLocked);
        n.Clock.Advance(n.S.Parameters.RebutWindowSeconds + 1);
        n.Rejected(ProtocolErrorCode.ClaimState, () => n.Engine.Settle(n.Outsider, id));

        // A receipt naming a settled permit cannot be claimed at all.
        var fp2 = f.A.Subset[3];
        var permit2 = Permit.Create(n.Prover.Address, TestNet.Model, n.HostA.Address, fp2.Key, 2, n.Engine.Now + 3_600, TestNet.Price).Sign(d, n.Prover);
        var ans2 = await honest.AskAsync(fp2.Key, permit2, TestContext.Current.CancellationToken);
        n.Engine.CommitUsage(n.HostA, honest.StartEpoch(2));
        var t2 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.A.Host, [new ClaimEvidenceItem(f.A.Subset.Reveal(fp2.Index), ans2.Text, ans2.Receipt)]));
        long id2 = n.Engine.CommitClaim(n.Prover, t2, 300);
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.UsagePermitted, () => n.Engine.RevealClaim(n.Prover, id2, t2));
    }

    [Fact]
    public async Task A_rebuttal_after_the_window_is_refused_and_the_claim_slashes()
    {
        // Issue 11, "late rebuttal": the rebuttal is valid (a settled permit, the receipt in the committed usage root)
        // but comes after RebutDeadline. Rules.Claims.cs (Rebut: c.Now > claim.RebutDeadline → WindowClosed); the
        // chain's OmlClaims.rebut has the same check (BadCaseTests runs this on both backends).
        using var f = new Fixture();
        var n = f.N;
        var d = n.Engine.Domain;
        var honest = new HostService(n.HostA, d, TestNet.Model, 0, Answers(f.A.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        var fp = f.A.Subset[2];
        n.Engine.Deposit(n.Prover, TestNet.A(n.HostA), 50);
        var permit = Permit.Create(n.Prover.Address, TestNet.Model, n.HostA.Address, fp.Key, 1, n.Engine.Now + 3_600, TestNet.Price).Sign(d, n.Prover);
        var ans = await honest.AskAsync(fp.Key, permit, TestContext.Current.CancellationToken);
        var ticket = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, f.A.Host, [new ClaimEvidenceItem(f.A.Subset.Reveal(fp.Index), ans.Text, ans.Receipt)]));
        long id = n.Engine.CommitClaim(n.Prover, ticket, 300);
        n.Clock.Advance(1);
        n.Engine.RevealClaim(n.Prover, id, ticket);
        var book = honest.StartEpoch(1);
        n.Engine.CommitUsage(n.HostA, book);
        n.Clock.Advance(n.S.Parameters.RebutWindowSeconds + 1);
        var rebuttal = new Rebuttal([new RebuttalItem(permit, 0, book.ProofFor(ans.Receipt))]);
        n.Rejected(ProtocolErrorCode.WindowClosed, () => n.Engine.Rebut(n.HostA, id, rebuttal));
        n.Engine.Settle(n.Outsider, id);
        Assert.Equal(ClaimStatus.Slashed, n.S.Claims[(int)id].Status);
        Assert.Equal(1_000, n.S.LicenceOf(TestNet.Model, f.A.Host)!.CollateralLocked);
    }
}

/// <summary>Issue 11, hole 6: an interrupted claim can be resumed or refunded, and a commitment is accepted once.</summary>
public class ClaimResumeTests
{
    private static (TestNet N, ClaimTicket Ticket) Setup()
    {
        var n = new TestNet();
        var copy = n.License(n.HostB, TestNet.NewOmlizer(Pools.Make(12)));
        var host = new HostService(n.HostB, n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Ignore, n.Clock);
        var report = Prover.AuditAsync(n.S, TestNet.Model, copy.Host, copy.Subset, host, maxQueries: 2, TestContext.Current.CancellationToken).GetAwaiter().GetResult();
        return (n, Prover.PrepareClaim(report, copy.Subset, 1));
    }

    [Fact]
    public void A_commitment_is_accepted_once_ever_per_prover()
    {
        var (n, t) = Setup();
        using var _ = n;
        long id = n.Engine.CommitClaim(n.Prover, t, 100);
        n.Rejected(ProtocolErrorCode.DuplicateCommitment, () => n.Engine.CommitClaim(n.Prover, t, 100));
        // Another prover with the same ticket commits its own commitment (the prover's address is in the preimage).
        long other = n.Engine.CommitClaim(n.Outsider, t, 100);
        Assert.NotEqual(n.S.Claims[(int)id].Commitment, n.S.Claims[(int)other].Commitment);
        Assert.Equal(t.CommitmentFor(TestNet.A(n.Prover)), n.S.Claims[(int)id].Commitment);
        n.Clock.Advance(n.S.Parameters.RevealWindowSeconds + 1);
        n.Engine.Settle(n.Outsider, id);
        n.Rejected(ProtocolErrorCode.DuplicateCommitment, () => n.Engine.CommitClaim(n.Prover, t, 100));
    }

    [Fact]
    public void A_ticket_round_trips_and_an_old_format_ticket_is_refused_with_a_clear_error()
    {
        var (n, t) = Setup();
        using var _ = n;
        var back = ClaimTicket.FromJson(t.ToJson());
        Assert.Equal(t, back);
        Assert.Equal(t.CommitmentFor(TestNet.A(n.Prover)), back.CommitmentFor(TestNet.A(n.Prover)));
        // A format-1 ticket (written before commitments were bound to the prover) stored its unbound commitment.
        var old = new System.Text.Json.Nodes.JsonObject
        {
            ["modelId"] = t.ModelId, ["host"] = t.Host, ["salt"] = t.Salt, ["commitment"] = Hex.Of(new byte[32]), ["evidence"] = t.EvidenceJson,
        }.ToJsonString();
        var e = Assert.Throws<ProtocolException>(() => ClaimTicket.FromJson(old));
        Assert.Equal(ProtocolErrorCode.CommitmentMismatch, e.Code);
        Assert.Contains("run `oml prover audit` again", e.Message);
    }

    [Fact]
    public void A_copied_commitment_neither_blocks_the_prover_nor_can_be_revealed()
    {
        var (n, t) = Setup();
        using var _ = n;
        // The attacker has the prover's commitment (a request seen in transit, a copied ticket) and submits it first.
        string copied = t.CommitmentFor(TestNet.A(n.Prover));
        n.Engine.Submit(Actions.CommitClaim(TestNet.A(n.Outsider), copied, 100, n.Acc(n.Outsider).Nonce).Sign(n.Engine.Domain, n.Outsider));
        long copy = n.S.Claims.Count - 1;
        // The prover's claim still goes through, resumed from its ticket as `oml prover claim` does.
        var p = Prover.AdvanceClaim(n.Engine, n.Prover, t, 100, () => n.Clock.Advance(1));
        Assert.Equal(["commit", "reveal"], p.Steps);
        Assert.Equal(ClaimStatus.Revealed, p.Claim.Status);
        Assert.NotEqual(copy, p.Claim.Id);
        // Even with the whole ticket, the copy can never be revealed; after the window its bond only comes back.
        n.Rejected(ProtocolErrorCode.CommitmentMismatch, () => n.Engine.RevealClaim(n.Outsider, copy, t));
        n.Clock.Advance(n.S.Parameters.RebutWindowSeconds + 1);
        n.Engine.Settle(n.Outsider, p.Claim.Id);
        n.Engine.Settle(n.Outsider, copy);
        Assert.Equal(ClaimStatus.Slashed, n.S.Claims[(int)p.Claim.Id].Status);
        Assert.Equal(ClaimStatus.Expired, n.S.Claims[(int)copy].Status);
        Assert.Equal(100, n.Acc(n.Outsider).Withdrawable);
    }

    [Fact]
    public void A_claim_interrupted_between_commit_and_reveal_is_resumed_from_its_ticket()
    {
        var (n, t) = Setup();
        using var _ = n;
        // The first run commits and dies before revealing; the rerun (same ticket) reveals.
        long id = n.Engine.CommitClaim(n.Prover, t, 100);
        var p = Prover.AdvanceClaim(n.Engine, n.Prover, t, 100, () => n.Clock.Advance(1));
        Assert.Equal(["reveal"], p.Steps);
        Assert.Equal(id, p.Claim.Id);
        Assert.Equal(ClaimStatus.Revealed, p.Claim.Status);
        // Run once more: nothing left to do, nothing submitted twice.
        long height = n.Ledger.Height;
        Assert.Empty(Prover.AdvanceClaim(n.Engine, n.Prover, t, 100, () => n.Clock.Advance(1)).Steps);
        Assert.Equal(height, n.Ledger.Height);
    }

    [Fact]
    public void An_unrevealed_claim_gets_its_bond_back()
    {
        var (n, t) = Setup();
        using var _ = n;
        long before = n.Acc(n.Prover).Balance;
        n.Engine.CommitClaim(n.Prover, t, 300);
        n.Clock.Advance(n.S.Parameters.RevealWindowSeconds + 1);
        var p = Prover.AdvanceClaim(n.Engine, n.Prover, t, 300, () => n.Clock.Advance(1));
        Assert.Equal(["settle"], p.Steps);
        Assert.Equal(ClaimStatus.Expired, p.Claim.Status);
        Assert.Equal(300, n.Acc(n.Prover).Withdrawable);
        Assert.Equal(0, n.Acc(n.Prover).Locked);
        n.Engine.Withdraw(n.Prover);
        Assert.Equal(before, n.Acc(n.Prover).Balance);
    }
}
