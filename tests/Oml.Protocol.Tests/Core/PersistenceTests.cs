using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;

namespace Oml.Protocol.Tests.Core;

/// <summary>What the roles keep between processes: the host's usage book and the prover's claim ticket.</summary>
public class PersistenceTests
{
    [Fact]
    public async Task UsageBooksAndClaimTicketsRoundTripAndStillWork()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new TestNet();
        var copy = n.License(n.HostA, TestNet.NewOmlizer(Pools.Make(12)));
        var d = n.Engine.Domain;
        n.Engine.Deposit(n.User, TestNet.A(n.HostA), 100);
        var host = new HostService(n.HostA, d, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Ignore, n.Clock);
        var permit = Permit.Create(n.User.Address, TestNet.Model, n.HostA.Address, "paid", 1, n.Engine.Now + 60, 10).Sign(d, n.User);
        await host.AskAsync("paid", permit, ct);   // an Ignore host signs "no permit" even when given one
        var hp = new HostService(n.HostA, d, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        await hp.AskAsync("paid", permit, ct);
        var book = hp.Book;
        book.Add(host.Book.Receipts[0], null);

        var restored = UsageBook.FromJson(book.ToJson());
        Assert.Equal(book.Root(), restored.Root());
        Assert.Equal(2, restored.Receipts.Count);
        Assert.Single(restored.Permits);
        Assert.Equal(book.ProofFor(book.Receipts[1]), restored.ProofFor(restored.Receipts[1]));
        n.Engine.CommitUsage(n.HostA, restored);
        Assert.Equal(90, n.Acc(n.User).Escrowed);
        // A book whose permit does not match its receipt is refused.
        string tampered = book.ToJson().Replace("\"nonce\":\"1\"", "\"nonce\":\"2\"");
        Assert.Equal(ProtocolErrorCode.InvalidRequest, Assert.Throws<ProtocolException>(() => UsageBook.FromJson(tampered)).Code);

        // The prover saves the ticket between commit and reveal.
        var audit = await Prover.AuditAsync(n.S, TestNet.Model, copy.Host, copy.Subset, host, maxQueries: 1, ct);
        var ticket = Prover.PrepareClaim(audit, copy.Subset);
        long id = n.Engine.CommitClaim(n.Prover, ticket, 100);
        var saved = ticket.ToJson();
        var loaded = ClaimTicket.FromJson(saved);
        Assert.Equal(ticket, loaded);
        Assert.Equal(ProtocolErrorCode.CommitmentMismatch,
            Assert.Throws<ProtocolException>(() => ClaimTicket.FromJson(saved.Replace(ticket.Salt, Hex.Of(new byte[32])))).Code);
        n.Clock.Advance(2);
        n.Engine.RevealClaim(n.Prover, id, loaded);
        Assert.Equal(ClaimStatus.Revealed, n.S.Claims[(int)id].Status);
    }
}
