using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Hosting;
using Oml.Protocol.Tests.Core;

namespace Oml.Protocol.Tests.Hosting;

/// <summary>
/// Issue 11, hole 1: an honest host used to serve permits from unfunded wallets, with fee 0, or replayed (200 with a
/// receipt); its usage commit was then rejected, its rebuttal failed, and a prover's claim slashed its collateral. A
/// host with a <see cref="PermitGate"/> refuses every such permit before serving (so there is no receipt to claim on),
/// per-(user, host) escrow stops a double spend across hosts, and settlement skips a bad permit instead of rejecting
/// the batch.
/// </summary>
public sealed class HonestHostTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-honest-host-").FullName;
    private readonly TestNet _n = new();
    private readonly HostCopy _copy;

    public HonestHostTests() => _copy = _n.License(_n.HostA, TestNet.NewOmlizer(Pools.Make(16)));

    public void Dispose()
    {
        _n.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private HostService Host(PrivateKey key, string dir) => new(key, _n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(_copy.Subset.Fingerprints),
        PermitPolicy.Require, _n.Clock, new PermitGate(PermitGate.ForEngine(_n.Engine), TestNet.A(key), TestNet.Model, new SeenPermitStore(dir)));

    private SignedPermit Permit(PrivateKey user, PrivateKey host, string query, long nonce, long fee = TestNet.Price, long? expiry = null) =>
        Oml.Protocol.Access.Permit.Create(user.Address, TestNet.Model, host.Address, query, nonce, expiry ?? _n.Engine.Now + 3 * 86_400, fee).Sign(_n.Engine.Domain, user);

    private static async Task<string> Refused(HostService host, string query, SignedPermit permit) =>
        (await Assert.ThrowsAsync<QueryRefusedException>(() => host.AskAsync(query, permit, TestContext.Current.CancellationToken))).Message;

    [Fact]
    public async Task Unfunded_underpaid_replayed_and_short_lived_permits_are_refused_before_serving()
    {
        var ct = TestContext.Current.CancellationToken;
        var host = Host(_n.HostA, _dir);
        var key = _copy.Subset[0].Key;
        // A prover posing as a user with an unfunded wallet (it has a balance, but nothing escrowed with this host).
        Assert.Contains("does not cover", await Refused(host, key, Permit(_n.Prover, _n.HostA, key, 1)));
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 25);
        Assert.Contains("the price is", await Refused(host, key, Permit(_n.User, _n.HostA, key, 1, fee: 0)));
        Assert.Contains("before this epoch's usage can be settled", await Refused(host, key, Permit(_n.User, _n.HostA, key, 2, expiry: _n.Engine.Now + 60)));
        var good = Permit(_n.User, _n.HostA, key, 3);
        var answer = await host.AskAsync(key, good, ct);
        Assert.True(answer.Receipt.Verify(_n.Engine.Domain));
        // Replays: the same permit, and the same nonce in another permit, even after the host restarts.
        Assert.Contains("already used", await Refused(host, key, good));
        var restarted = Host(_n.HostA, _dir);
        Assert.Contains("already used", await Refused(restarted, "other", Permit(_n.User, _n.HostA, "other", 3)));
        // The outstanding unsettled permit counts against the escrow: 25 covers two more queries at 10, not three.
        await restarted.AskAsync("a", Permit(_n.User, _n.HostA, "a", 4), ct);
        Assert.Contains("unsettled permits (20)", await Refused(restarted, "b", Permit(_n.User, _n.HostA, "b", 5)));
        // Settling frees the escrow that is left, and the settled nonces stay refused.
        var before = host.StartEpoch(0);
        var after = restarted.StartEpoch(0);
        _n.Engine.CommitUsage(_n.HostA, Merge(before, after));
        Assert.Equal(5, _n.Acc(_n.User).Escrowed);
        Assert.Contains("already used", await Refused(Host(_n.HostA, _dir), "a", Permit(_n.User, _n.HostA, "a", 4)));
        // A refund request stops new permits at once.
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 100);
        _n.Engine.RequestRefund(_n.User, TestNet.A(_n.HostA));
        Assert.Contains("escrow with this host back", await Refused(restarted, "c", Permit(_n.User, _n.HostA, "c", 6)));
    }

    [Fact]
    public async Task A_permit_the_host_failed_to_answer_stops_counting_against_the_escrow_and_its_nonce_stays_used()
    {
        // The host admitted a permit, then its backend failed: the user got an error and no answer. The permit used to
        // count against the user's escrow until it expired (days), so a funded user was refused by a host that owed it
        // the answer. Now it is released at once, durably; a client that leaves keeps its permit counted (it bounds what
        // a user who keeps leaving can make the host compute for nothing).
        var ct = TestContext.Current.CancellationToken;
        var answers = ClaimTests.Answers(_copy.Subset.Fingerprints);
        Exception? failure = new InvalidOperationException("the model's backend failed");
        HostService Make() => new(_n.HostA, _n.Engine.Domain, TestNet.Model, 0, (q, c) => failure is { } e ? Task.FromException<string>(e) : answers(q, c),
            PermitPolicy.Require, _n.Clock, new PermitGate(PermitGate.ForEngine(_n.Engine), TestNet.A(_n.HostA), TestNet.Model, new SeenPermitStore(_dir)));
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 15);   // one query at 10
        var host = Make();
        await Assert.ThrowsAsync<InvalidOperationException>(() => host.AskAsync("q", Permit(_n.User, _n.HostA, "q", 1), ct));
        failure = null;
        var restarted = Make();
        Assert.Contains("already used", await Refused(restarted, "q", Permit(_n.User, _n.HostA, "q", 1)));
        var served = await restarted.AskAsync("q", Permit(_n.User, _n.HostA, "q", 2), ct);
        Assert.True(served.Receipt.Verify(_n.Engine.Domain));
        Assert.Contains("unsettled permits (10)", await Refused(restarted, "r", Permit(_n.User, _n.HostA, "r", 3)));
        Assert.False(await restarted.Gate!.ReleaseAsync(Permit(_n.User, _n.HostA, "q", 1), ct));   // released once only

        // The client left (the request was cancelled, or its connection broke), or the backend failed after part of a
        // streamed answer was sent: counted until expiry.
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 30);   // 45: 10 outstanding, room for three more
        failure = new OperationCanceledException();
        await Assert.ThrowsAsync<OperationCanceledException>(() => restarted.AskAsync("s", Permit(_n.User, _n.HostA, "s", 4), ct));
        failure = new IOException("the connection was reset");
        await Assert.ThrowsAsync<IOException>(() => restarted.AskAsync("t", Permit(_n.User, _n.HostA, "t", 5), ct));
        failure = new PartlyAnsweredException(new InvalidOperationException("the backend failed mid-stream"));
        Assert.Equal("the backend failed mid-stream",
            (await Assert.ThrowsAsync<PartlyAnsweredException>(() => restarted.AskAsync("v", Permit(_n.User, _n.HostA, "v", 7), ct))).Message);
        failure = null;
        Assert.Contains("unsettled permits (40)", await Refused(Make(), "u", Permit(_n.User, _n.HostA, "u", 6)));
        // Only the served permit is in the usage book: the failed one has no receipt to settle.
        Assert.Single(restarted.StartEpoch(0).Receipts);
    }

    [Fact]
    public async Task Servers_of_two_models_sharing_one_seen_permits_file_never_promise_one_escrow_twice()
    {
        // A user's escrow with a host pays for every model it serves. Two server processes (two stores on one file here),
        // one per model, each used to count only its own permits: 25 escrowed, two permits of 10 at each model were
        // accepted, and at the usage commit the fourth skipped as Unfunded: served for nothing.
        var ct = TestContext.Current.CancellationToken;
        _n.Engine.RegisterModel(_n.Owner2, "other", "sha256:other", "{}", "", TestNet.Price, 1_000);
        string file = Path.Combine(_dir, "shared", SeenPermitStore.FileName);
        HostService Serving(string model) => new(_n.HostA, _n.Engine.Domain, model, 0, ClaimTests.Answers(_copy.Subset.Fingerprints), PermitPolicy.Require, _n.Clock,
            new PermitGate(PermitGate.ForEngine(_n.Engine), TestNet.A(_n.HostA), model, SeenPermitStore.OpenFile(file)));
        SignedPermit For(string model, string query, long nonce) => Oml.Protocol.Access.Permit.Create(_n.User.Address, model, _n.HostA.Address, query, nonce,
            _n.Engine.Now + 3 * 86_400, TestNet.Price).Sign(_n.Engine.Domain, _n.User);
        var a = Serving(TestNet.Model);
        var b = Serving("other");
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 25);

        await a.AskAsync("q1", For(TestNet.Model, "q1", 1), ct);
        // The same nonce for another model is another permit (the ledger spends nonces per user, host and model).
        await b.AskAsync("q1", For("other", "q1", 1), ct);
        Assert.Contains("unsettled permits (20)", await Refused(b, "q2", For("other", "q2", 2)));
        Assert.Contains("unsettled permits (20)", await Refused(a, "q2", For(TestNet.Model, "q2", 2)));
        // Replays stay refused per model, and a restarted server reads what both accepted.
        Assert.Contains("already used", await Refused(Serving(TestNet.Model), "q1", For(TestNet.Model, "q1", 1)));
        Assert.Contains("unsettled permits (20)", await Refused(Serving("other"), "q3", For("other", "q3", 3)));
    }

    [Fact]
    public async Task An_admission_waiting_for_another_process_lock_holds_no_thread_and_ends_when_the_client_leaves()
    {
        // Another host process holds the shared file's lock (hung, say). Admissions wait for it without blocking a
        // thread (a server's thread pool would starve) and give up when their request is cancelled; once the lock is
        // free the next admission goes through.
        var ct = TestContext.Current.CancellationToken;
        string file = Path.Combine(_dir, "held", SeenPermitStore.FileName);
        var gate = new PermitGate(PermitGate.ForEngine(_n.Engine), TestNet.A(_n.HostA), TestNet.Model, SeenPermitStore.OpenFile(file));
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 100);
        using (new FileStream(file + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            using var leaves = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var waiting = Enumerable.Range(1, 3).Select(i => gate.AdmitAsync(Permit(_n.User, _n.HostA, $"w{i}", i), $"w{i}", leaves.Token)).ToList();
            await Task.Delay(300, ct);
            // Awaiting, not blocking: every admission is still pending and the test's own thread was never taken.
            Assert.All(waiting, t => Assert.False(t.IsCompleted));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await leaves.CancelAsync();
            foreach (var t in waiting) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => t);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the waits ended {clock.Elapsed.TotalSeconds:F1} s after the client left");
        }
        await gate.AdmitAsync(Permit(_n.User, _n.HostA, "after", 4), "after", ct);
        Assert.True(gate.Seen.Contains(TestNet.A(_n.User), TestNet.Model, 4));
        Assert.False(gate.Seen.Contains(TestNet.A(_n.User), TestNet.Model, 1));
    }

    [Fact]
    public void A_torn_last_line_of_the_seen_permits_file_is_cut_off_and_what_follows_reads_back()
    {
        string file = Path.Combine(_dir, "torn", SeenPermitStore.FileName);
        var first = SeenPermitStore.OpenFile(file);
        Assert.True(first.TryAdd(new SeenPermit("0xuser", 1, 10, 100, "0xh1", "m")));
        File.AppendAllText(file, "{\"user\": \"0xuser\", \"nonce\": 2, \"fe");   // a crash mid-write
        var second = SeenPermitStore.OpenFile(file);
        Assert.Equal(1, second.Count);
        Assert.True(second.TryAdd(new SeenPermit("0xuser", 3, 10, 100, "0xh3", "m")));
        Assert.False(first.TryAdd(new SeenPermit("0xuser", 3, 10, 100, "0xh3", "m")));   // it reads what the other added
        var third = SeenPermitStore.OpenFile(file);
        Assert.Equal(2, third.Count);
        Assert.True(third.Contains("0xuser", "m", 3));
        Assert.False(third.Contains("0xuser", "m", 2));
        Assert.False(third.Contains("0xuser", "other", 1));
    }

    private UsageBook Merge(params UsageBook[] books)
    {
        var all = new UsageBook(_n.Engine.Domain, TestNet.Model, 0);
        foreach (var b in books)
            foreach (var r in b.Receipts) all.Add(r, r.Receipt.HasPermit ? b.Permits.First(p => p.Permit.Hash(_n.Engine.Domain) == r.Receipt.PermitHash) : null);
        return all;
    }

    [Fact]
    public async Task A_user_cannot_spend_the_same_funds_at_two_hosts()
    {
        var ct = TestContext.Current.CancellationToken;
        var copyB = _n.License(_n.HostB, TestNet.NewOmlizer(Pools.Make(16)));
        var hostA = Host(_n.HostA, Path.Combine(_dir, "a"));
        var hostB = Host(_n.HostB, Path.Combine(_dir, "b"));
        // The user escrows 10 with host A only, then signs permits worth 10 to each host.
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostA), 10);
        await hostA.AskAsync("q", Permit(_n.User, _n.HostA, "q", 1), ct);
        Assert.Contains("does not cover", await Refused(hostB, "q", Permit(_n.User, _n.HostB, "q", 2)));
        // Host A's permit settles whatever the user does elsewhere; its commit is never rejected.
        _n.Engine.Deposit(_n.User, TestNet.A(_n.HostB), 10);
        await hostB.AskAsync("q", Permit(_n.User, _n.HostB, "q", 2), ct);
        _n.Engine.CommitUsage(_n.HostB, hostB.StartEpoch(0));
        _n.Engine.CommitUsage(_n.HostA, hostA.StartEpoch(0));
        var usage = _n.S.Usage[ProtocolState.UsageKey(TestNet.Model, TestNet.A(_n.HostA), 0)];
        Assert.Equal(1, usage.PermitCount);
        Assert.Empty(usage.Skipped);
        Assert.Equal(0, _n.Acc(_n.User).Escrowed);
        _ = copyB;
    }

    [Fact]
    public async Task An_honest_host_is_not_slashed_by_a_prover_posing_as_an_unfunded_user()
    {
        var host = Host(_n.HostA, _dir);
        var fp = _copy.Subset[1];
        // The attack of the issue: a permit from an unfunded wallet (and one with fee 0), then a claim on the receipts.
        Assert.Contains("does not cover", await Refused(host, fp.Key, Permit(_n.Prover, _n.HostA, fp.Key, 1)));
        _n.Engine.Deposit(_n.Prover, TestNet.A(_n.HostA), 5);
        Assert.Contains("the price is", await Refused(host, fp.Key, Permit(_n.Prover, _n.HostA, fp.Key, 2, fee: 0)));
        Assert.Empty(host.Book.Receipts); // no receipt: nothing to claim on
        var report = await Prover.AuditAsync(_n.S, TestNet.Model, TestNet.A(_n.HostA), _copy.Subset, host, maxQueries: 4, TestContext.Current.CancellationToken);
        Assert.False(report.Caught);
        Assert.Equal(2_000, _n.S.LicenceOf(TestNet.Model, TestNet.A(_n.HostA))!.CollateralLocked);
    }
}
