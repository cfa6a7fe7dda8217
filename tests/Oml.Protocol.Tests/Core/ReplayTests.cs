using System.Text;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tests.Ledger;

namespace Oml.Protocol.Tests.Core;

public class ReplayTests
{
    /// <summary>Drives a bit of every layer so the log has every kind of event worth replaying.</summary>
    private static void Exercise(TestNet n)
    {
        n.Engine.AddVersion(n.Owner, TestNet.Model, "sha256:v2", "v2");
        n.Engine.RegisterModel(n.Owner2, "child", "sha256:c", "{}", "", 20, 0);
        n.Engine.DeclareParent(n.Owner2, n.Owner, "child", TestNet.Model, 2_500);
        var copy = n.License(n.HostA, TestNet.NewOmlizer(Pools.Make(12)));
        n.Engine.Deposit(n.User, TestNet.A(n.HostA), 500);
        var book = new UsageBook(n.Engine.Domain, TestNet.Model, 0);
        var p = Permit.Create(n.User.Address, TestNet.Model, n.HostA.Address, "q", 1, n.Engine.Now + 60, 10).Sign(n.Engine.Domain, n.User);
        book.Add(Receipt.Create(n.HostA.Address, TestNet.Model, p.Permit.Hash(n.Engine.Domain), "q", "a", n.Engine.Now).Sign(n.Engine.Domain, n.HostA), p);
        n.Engine.CommitUsage(n.HostA, book);
        n.Clock.Advance(5);
        n.Engine.Stake(n.Owner, 2_000);
        n.Engine.Stake(n.Owner2, 1_000);
        long prop = n.Engine.Propose(n.Owner, new Dictionary<string, string> { ["ProverRewardBps"] = "4000" }, "more for provers");
        n.Engine.Vote(n.Owner, prop, true);
        n.Engine.Vote(n.Owner2, prop, true);
        n.Clock.Advance(n.S.Parameters.VotingWindowSeconds + 1);
        n.Engine.Execute(n.Outsider, prop);
        n.Engine.Withdraw(n.HostA);
        n.Engine.TransferModel(n.Owner2, "child", Oml.Protocol.Core.Hex.Of(n.Outsider.Address));
        n.Engine.FileAccusation(n.Owner, TestNet.Model, copy.Host, """{"note":"test"}""");
    }

    [Fact]
    public void ReplayReproducesTheStateExactly()
    {
        using var n = new TestNet();
        Exercise(n);
        string live = n.S.Digest();
        var replayed = ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read());
        Assert.Equal(live, replayed.Digest());
        Assert.Equal(live, ProtocolEngine.Open(n.Ledger).State.Digest());
        Assert.Equal(4_000, replayed.Parameters.ProverRewardBps);
        var v = n.Engine.VerifySignatures();
        Assert.True(v.Valid, v.Problem);
        Assert.Equal(n.Ledger.Height, v.EventsChecked);
        // The digest is sensitive: one more event changes it.
        n.Engine.Deposit(n.User2, TestNet.A(n.HostA), 1);
        Assert.NotEqual(live, n.S.Digest());
    }

    [Fact]
    public void VerifySignaturesFindsAForgedEventThatPlainReplayAccepts()
    {
        using var n = new TestNet(registerModel: false);
        // Someone with write access to the storage appends a transfer out of User's account, signed by the outsider.
        var forged = Actions.Transfer(TestNet.A(n.User), TestNet.A(n.Outsider), 90_000, n.Acc(n.User).Nonce).Sign(n.Engine.Domain, n.Outsider);
        n.Ledger.Append(n.Ledger.Height, [new NewEvent(forged.Type, forged.ToPayload(n.Engine.Domain))], n.Clock.GetUtcNow());
        var opened = ProtocolEngine.Open(n.Ledger, n.Clock);
        Assert.Equal(10_000, opened.State.AccountOf(TestNet.A(n.User)).Balance);
        var v = opened.VerifySignatures();
        Assert.False(v.Valid);
        Assert.Equal(n.Ledger.Height - 1, v.FirstBadSequence);
    }

    [Fact]
    public void AnInvalidEventInTheLogStopsReplay()
    {
        using var n = new TestNet(registerModel: false);
        var overdraw = Actions.Transfer(TestNet.A(n.User), TestNet.A(n.Outsider), 1_000_000, n.Acc(n.User).Nonce).Sign(n.Engine.Domain, n.User);
        n.Ledger.Append(n.Ledger.Height, [new NewEvent(overdraw.Type, overdraw.ToPayload(n.Engine.Domain))], n.Clock.GetUtcNow());
        Assert.Equal(ProtocolErrorCode.ReplayFailed, Assert.Throws<ProtocolException>(() => ProtocolEngine.Open(n.Ledger)).Code);
        n.Ledger.Append(n.Ledger.Height, [new NewEvent("Transfer", Encoding.UTF8.GetBytes("not json"))], n.Clock.GetUtcNow());
        Assert.Equal(ProtocolErrorCode.ReplayFailed, Assert.Throws<ProtocolException>(() => ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read())).Code);
    }

    [Fact]
    public void RunsOnTheSqliteLedgerAndReopensToTheSameState()
    {
        using var dir = new TempDir();
        string path = dir.File("oml.ledger");
        string digest;
        long height;
        using (var n = new TestNet(ledger: SqliteLedger.Open(path, create: true)))
        {
            Exercise(n);
            digest = n.S.Digest();
            height = n.Ledger.Height;
            // A rejected action appends nothing to the file either.
            n.Rejected(ProtocolErrorCode.NothingToWithdraw, () => n.Engine.Withdraw(n.HostA));
        }
        using var reopened = SqliteLedger.Open(path);
        Assert.Equal(height, reopened.Height);
        Assert.True(reopened.Verify().Intact);
        var engine = ProtocolEngine.Open(reopened);
        Assert.Equal(digest, engine.State.Digest());
        Assert.True(engine.VerifySignatures().Valid);
    }

    /// <summary>A ledger that lets another writer append first, once, just before the engine's append.</summary>
    private sealed class RacingLedger(ILedger inner, Action race) : ILedger
    {
        private bool _raced;
        public string LedgerId => inner.LedgerId;
        public long Height => inner.Height;
        public byte[] HeadHash => inner.HeadHash;
        public IReadOnlyList<LedgerEvent> Append(long expectedHeight, IReadOnlyList<NewEvent> events, DateTimeOffset timestamp)
        {
            if (!_raced) { _raced = true; race(); }
            return inner.Append(expectedHeight, events, timestamp);
        }
        public IEnumerable<LedgerEvent> Read(long fromSequence = 0) => inner.Read(fromSequence);
        public LedgerVerification Verify() => inner.Verify();
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void AConcurrentWriterIsFoldedInAndTheAppendRetried()
    {
        using var n = new TestNet(registerModel: false);
        var other = ProtocolEngine.Open(n.Ledger, n.Clock);
        var racing = new RacingLedger(n.Ledger, () => other.Transfer(n.User2, TestNet.A(n.User), 7));
        var engine = ProtocolEngine.Open(racing, n.Clock);
        engine.Transfer(n.User, TestNet.A(n.Outsider), 100);
        Assert.Equal(100_000 + 7 - 100, engine.State.AccountOf(TestNet.A(n.User)).Balance);
        Assert.Equal(ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read()).Digest(), engine.State.Digest());
        // The other engine catches up on refresh.
        other.Refresh();
        Assert.Equal(engine.State.Digest(), other.State.Digest());
    }
}
