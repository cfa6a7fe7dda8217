using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Distribution;
using Oml.Protocol.Tracing;

namespace Oml.Protocol.Tests.Core;

/// <summary>
/// The whole protocol in one process, with fake models: the owner licenses three hosts; A serves paying users and
/// settles, B serves without permits and is claimed and slashed, C's copy leaks and is traced back to C.
/// </summary>
public class EndToEndTests
{
    [Fact]
    public async Task OwnerHostsUsersProverAndTracer()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new TestNet(registerModel: false);
        var e = n.Engine;
        var d = e.Domain;

        // Storage: a base model by Owner2, and Owner's fine-tune of it that shares 10% of its revenue upstream.
        e.RegisterModel(n.Owner2, "llama-base", "sha256:base", """{"arch":"llama"}""", "open", 0, 0);
        e.RegisterModel(n.Owner, "chat", "sha256:chat-v1", """{"arch":"llama","finetune":"chat"}""", "OML-1.0", 100, 1_500);
        e.DeclareParent(n.Owner, n.Owner2, "chat", "llama-base", 1_000);

        // Distribution: the owner's pool of 64 fingerprints, 16 per copy, three hosts in licence order A, B, C.
        var pool = Pools.Make(64, "chat");
        var allocation = new RandomAllocation("owner-allocation-secret-0001"u8, pool.Count, 16);
        var omlizer = new Omlizer(pool, allocation);
        var copies = new Dictionary<string, HostCopy>();
        foreach (var host in new[] { n.HostA, n.HostB, n.HostC })
        {
            e.ApplyLicense(host, "chat", 2_000, "http://localhost/" + TestNet.A(host));
            var copy = await omlizer.BuildCopyAsync(e.State, "chat", TestNet.A(host),
                (subset, _) => Task.FromResult($"sha256:chat-copy-{subset.Commit().Root[..16]}"), ct);
            e.DeliverCopy(n.Owner, copy);
            e.AcknowledgeCopy(host, "chat", copy.CopyDigest);
            copies[copy.Host] = copy;
        }
        var a = copies[TestNet.A(n.HostA)];
        var b = copies[TestNet.A(n.HostB)];
        var c = copies[TestNet.A(n.HostC)];
        Assert.Equal([0, 1, 2], new[] { a.HostOrdinal, b.HostOrdinal, c.HostOrdinal });

        // Access: host A serves two users with permits for a day, then commits the epoch.
        var hostA = new HostService(n.HostA, d, "chat", 0, ClaimTests.Answers(a.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        e.Deposit(n.User, TestNet.A(n.HostA), 1_000);
        e.Deposit(n.User2, TestNet.A(n.HostA), 500);
        long nonce = 0;
        foreach (var (user, query) in new[] { (n.User, "hi"), (n.User, "what is OML?"), (n.User2, "tell me a joke") })
        {
            var permit = Permit.Create(user.Address, "chat", n.HostA.Address, query, nonce++, e.Now + 2 * 86_400, 100).Sign(d, user);
            var answer = await hostA.AskAsync(query, permit, ct);
            Assert.True(answer.Receipt.Verify(d));
        }
        n.Clock.Advance(86_400);
        var ownerBefore = n.Acc(n.Owner).Withdrawable;
        e.CommitUsage(n.HostA, hostA.StartEpoch(1));
        // 3 × 100: host 20 each; the owner's 80 each shares 8 with the parent's owner.
        Assert.Equal(800, n.Acc(n.User).Escrowed);
        Assert.Equal(400, n.Acc(n.User2).Escrowed);
        Assert.Equal(60, n.Acc(n.HostA).Withdrawable);
        Assert.Equal(24, n.Acc(n.Owner2).Withdrawable);
        Assert.Equal(ownerBefore + 216, n.Acc(n.Owner).Withdrawable);

        // Claims: host B answers without permits. The owner hands the prover B's subset (rebuildable from the allocation).
        var hostB = new HostService(n.HostB, d, "chat", 1, ClaimTests.Answers(b.Subset.Fingerprints), PermitPolicy.Ignore, n.Clock);
        var subsetB = omlizer.SubsetFor(1);
        Assert.Equal(b.Commitment, subsetB.Commit());
        var audit = await Prover.AuditAsync(e.State, "chat", b.Host, subsetB, hostB, maxQueries: 5, ct);
        Assert.Equal(5, audit.Hits.Count);
        var ticket = Prover.PrepareClaim(audit, subsetB);
        long claim = e.CommitClaim(n.Prover, ticket, 250);
        n.Clock.Advance(30);
        e.RevealClaim(n.Prover, claim, ticket);
        n.Clock.Advance(e.Parameters.RebutWindowSeconds + 1);
        e.Settle(n.Prover, claim);
        Assert.Equal(1_000, e.State.Claims[(int)claim].Slashed);
        Assert.Equal(250 + 300, n.Acc(n.Prover).Withdrawable);
        Assert.Equal(ownerBefore + 216 + 700, n.Acc(n.Owner).Withdrawable);
        e.Withdraw(n.Prover);
        Assert.Equal(100_000 + 300, n.Acc(n.Prover).Balance);

        // Tracing: an endpoint of unknown origin serves C's leaked copy (no receipts, no permits).
        Func<string, CancellationToken, Task<string>> leaked = ClaimTests.Answers(c.Subset.Fingerprints);
        var accuser = new OverlapAccuser(allocation);
        var trace = await LeakTracer.TraceAsync(e.State, "chat", pool, accuser, leaked, innocentBound: 1e-3, ct: ct);
        Assert.Equal(16, trace.Observed.Count(o => o == true));
        Assert.Equal([c.Host], trace.Accused.Select(h => h.Host));
        Assert.Equal(16, trace.Hosts.Single(h => h.Host == c.Host).Score);
        e.FileAccusation(n.Owner, "chat", c.Host, trace.ToJson());
        Assert.Equal(c.Host, e.State.Accusations.Single().Host);

        // The whole history replays to the same state, and every signature in it checks.
        Assert.Equal(e.State.Digest(), ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read()).Digest());
        var v = e.VerifySignatures();
        Assert.True(v.Valid, v.Problem);
        // Money is conserved: every unit minted is somewhere.
        long total = e.State.Accounts.Values.Sum(x => x.Balance + x.Escrowed + x.Withdrawable + x.Locked + x.Staked);
        Assert.Equal(e.State.TotalSupply, total);
    }
}
