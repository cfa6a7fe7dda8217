using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Hosting;
using Oml.Protocol.Tests.Core;

namespace Oml.Protocol.Tests.Hosting;

/// <summary>The host's durable receipt store: pending books, commits (once, rolled back on rejection), rebuttals.</summary>
public sealed class UsageStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-usage-store-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static SignedPermit PermitFor(TestNet n, Oml.Protocol.Crypto.PrivateKey user, string query, long nonce) =>
        Permit.Create(user.Address, TestNet.Model, n.HostA.Address, query, nonce, n.Engine.Now + 86_400, TestNet.Price).Sign(n.Engine.Domain, user);

    internal static UsageCommit Commit(TestNet n, UsageStore store, long epoch) =>
        store.CommitEpoch(epoch, x => n.S.Usage.GetValueOrDefault(ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), x)), b => n.Engine.CommitUsage(n.HostA, b));

    [Fact]
    public async Task Served_queries_are_committed_once_and_a_rejected_commit_leaves_them_pending()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new TestNet();
        var pool = Pools.Make(16);
        var copy = n.License(n.HostA, TestNet.NewOmlizer(pool));
        var host = new HostService(n.HostA, n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        var store = new UsageStore(_dir, n.Engine.Domain, TestNet.Model);
        n.Engine.Deposit(n.User, TestNet.A(n.HostA), 100);
        foreach (var (q, nonce) in new[] { ("one", 1L), ("two", 2L) })
        {
            var permit = PermitFor(n, n.User, q, nonce);
            store.Record((await host.AskAsync(q, permit, ct)).Receipt, permit);
        }
        Assert.Equal(2, store.ReadServed().Count);

        // An epoch that has not started is rejected by the engine: the stored book is removed, the receipts stay pending.
        var e = Assert.Throws<ProtocolException>(() => Commit(n, store, 5));
        Assert.Equal(ProtocolErrorCode.EpochInvalid, e.Code);
        Assert.Empty(store.CommittedBooks());
        Assert.Empty(Directory.GetFiles(_dir, "pending-*"));

        Commit(n, store, 0);
        Assert.Equal(ProtocolErrorCode.UsageAlreadyCommitted, Assert.Throws<ProtocolException>(() => Commit(n, store, 0)).Code);
        var usage = n.S.Usage[ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), 0)];
        Assert.Equal(2, usage.ReceiptCount);
        Assert.Equal(20, usage.FeesSettled);
        Assert.Equal(80, n.Acc(n.User).Escrowed);
        Assert.Equal(usage.ReceiptsRoot, Hex.Of(store.CommittedBooks()[0].Root()));
        Assert.Equal(ProtocolErrorCode.UsageAlreadyCommitted, Assert.Throws<ProtocolException>(() => store.PendingBook(0)).Code);

        // A later query is pending for the next epoch only; a torn last line (a crash mid-write) is skipped.
        var third = PermitFor(n, n.User, "three", 3);
        store.Record((await host.AskAsync("three", third, ct)).Receipt, third);
        File.AppendAllText(Path.Combine(_dir, "served.jsonl"), "{\"receipt\":{\"host\":");
        var pending = store.PendingBook(1);
        Assert.Single(pending.Receipts);
        Assert.Equal(Hex.KeccakText("three"), pending.Receipts[0].Receipt.QueryHash);
    }

    [Fact]
    public async Task A_claim_on_a_permitted_answer_is_rebutted_from_the_stored_book_and_one_without_permit_is_not()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new TestNet();
        var pool = Pools.Make(16);
        var copy = n.License(n.HostA, TestNet.NewOmlizer(pool));
        var host = new HostService(n.HostA, n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        var store = new UsageStore(_dir, n.Engine.Domain, TestNet.Model);
        var tree = copy.Subset.BuildMerkleTree();

        // The prover pays for a fingerprint query with its own permit, then claims before the host settles it.
        n.Engine.Deposit(n.Prover, TestNet.A(n.HostA), 100);
        var f = copy.Subset.Fingerprints[0];
        var permit = Permit.Create(n.Prover.Address, TestNet.Model, n.HostA.Address, f.Key, 9, n.Engine.Now + 86_400, TestNet.Price).Sign(n.Engine.Domain, n.Prover);
        var answer = await host.AskAsync(f.Key, permit, ct);
        store.Record(answer.Receipt, permit);
        var ticket = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, TestNet.A(n.HostA),
            [new ClaimEvidenceItem(RevealedFingerprint.From(f, tree.Proof(f.Index)), answer.Text, answer.Receipt)]));
        long id = n.Engine.CommitClaim(n.Prover, ticket, 200);
        n.Clock.Advance(2);
        n.Engine.RevealClaim(n.Prover, id, ticket);

        // Before the usage is committed the store has no proof to offer.
        Assert.Equal(ProtocolErrorCode.InvalidProof, Assert.Throws<ProtocolException>(() => store.BuildRebuttal(n.S.Claims[(int)id])).Code);
        Commit(n, store, 0);
        n.Engine.Rebut(n.HostA, id, store.BuildRebuttal(n.S.Claims[(int)id]));
        Assert.Equal(ClaimStatus.Rebutted, n.S.Claims[(int)id].Status);
        Assert.Equal(200 + 2, n.Acc(n.HostA).Withdrawable); // the bond, and the host's 20% of the fee

        // A receipt that names no permit cannot be rebutted.
        var rogue = new HostService(n.HostA, n.Engine.Domain, TestNet.Model, 1, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Ignore, n.Clock);
        var g = copy.Subset.Fingerprints[1];
        var free = await rogue.AskAsync(g.Key, null, ct);
        store.Record(free.Receipt, null);
        n.Clock.Advance(86_400);
        Commit(n, store, 1);
        var t2 = ClaimTicket.Create(new ClaimEvidence(TestNet.Model, TestNet.A(n.HostA),
            [new ClaimEvidenceItem(RevealedFingerprint.From(g, tree.Proof(g.Index)), free.Text, free.Receipt)]));
        long id2 = n.Engine.CommitClaim(n.Prover, t2, 200);
        n.Clock.Advance(2);
        n.Engine.RevealClaim(n.Prover, id2, t2);
        Assert.Equal(ProtocolErrorCode.InvalidPermit, Assert.Throws<ProtocolException>(() => store.BuildRebuttal(n.S.Claims[(int)id2])).Code);
    }

    /// <summary>Issue 16: a damaged middle line in served.jsonl made every later commit-usage crash; it is now skipped and reported.</summary>
    [Fact]
    public async Task A_damaged_receipt_line_is_skipped_and_reported()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new TestNet();
        var copy = n.License(n.HostA, TestNet.NewOmlizer(Pools.Make(16)));
        var host = new HostService(n.HostA, n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        var store = new UsageStore(_dir, n.Engine.Domain, TestNet.Model);
        n.Engine.Deposit(n.User, TestNet.A(n.HostA), 100);
        var p1 = PermitFor(n, n.User, "one", 1);
        store.Record((await host.AskAsync("one", p1, ct)).Receipt, p1);
        File.AppendAllText(Path.Combine(_dir, "served.jsonl"), "{\"receipt\": garbage\n");
        var p2 = PermitFor(n, n.User, "two", 2);
        store.Record((await host.AskAsync("two", p2, ct)).Receipt, p2);
        Assert.Throws<InvalidDataException>(() => store.ReadServed());
        var result = Commit(n, store, 0);
        Assert.Equal(2, result.Book.Receipts.Count);
        var damaged = Assert.Single(result.DamagedLines);
        Assert.Contains("line 2", damaged);
        Assert.Equal(20, n.S.Usage[ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), 0)].FeesSettled);
    }

    [Fact]
    public void Receipt_headers_round_trip_and_garbage_is_an_invalid_receipt()
    {
        using var n = new TestNet();
        var r = Receipt.Create(n.HostA.Address, "m", null, "q", "a", 5).Sign(n.Engine.Domain, n.HostA);
        var back = HostHttp.DecodeReceipt(HostHttp.EncodeReceipt(r));
        Assert.Equal(r.Receipt, back.Receipt);
        Assert.True(back.Verify(n.Engine.Domain));
        Assert.Equal(ProtocolErrorCode.InvalidReceipt, Assert.Throws<ProtocolException>(() => HostHttp.DecodeReceipt("not base64!")).Code);
        Assert.Equal(ProtocolErrorCode.InvalidReceipt, Assert.Throws<ProtocolException>(() => HostHttp.DecodeReceipt(Convert.ToBase64String("{}"u8))).Code);
    }
}
