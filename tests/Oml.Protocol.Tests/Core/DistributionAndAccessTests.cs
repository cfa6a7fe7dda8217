using System.Text;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Distribution;

namespace Oml.Protocol.Tests.Core;

public class DistributionTests
{
    [Fact]
    public void LicenceLocksCollateralAndCopyCommitsTheHostsSubset()
    {
        using var n = new TestNet();
        var pool = Pools.Make(32);
        var omlizer = TestNet.NewOmlizer(pool);
        n.Rejected(ProtocolErrorCode.CollateralTooLow, () => n.Engine.ApplyLicense(n.HostA, TestNet.Model, 999, "e"));
        n.Rejected(ProtocolErrorCode.InsufficientFunds, () => n.Engine.ApplyLicense(n.HostA, TestNet.Model, 100_001, "e"));
        n.Rejected(ProtocolErrorCode.UnknownModel, () => n.Engine.ApplyLicense(n.HostA, "nope", 5_000, "e"));
        var copyA = n.License(n.HostA, omlizer, collateral: 3_000);
        var copyB = n.License(n.HostB, omlizer);
        Assert.Equal(97_000, n.Acc(n.HostA).Balance);
        Assert.Equal(3_000, n.Acc(n.HostA).Locked);
        Assert.Equal([TestNet.A(n.HostA), TestNet.A(n.HostB)], n.S.Models[TestNet.Model].Hosts);
        Assert.Equal(0, copyA.HostOrdinal);
        Assert.Equal(1, copyB.HostOrdinal);

        // The subset is the allocation's pool fingerprints, re-indexed, salts kept; its root is what the ledger holds.
        Assert.Equal(omlizer.Allocation.IndicesFor(0), copyA.PoolIndices);
        Assert.Equal(8, copyA.Subset.Count);
        for (int k = 0; k < copyA.Subset.Count; k++)
        {
            Assert.Equal(k, copyA.Subset[k].Index);
            Assert.Equal(pool[copyA.PoolIndices[k]].Key, copyA.Subset[k].Key);
            Assert.Equal(pool[copyA.PoolIndices[k]].Salt, copyA.Subset[k].Salt);
        }
        var licence = n.S.LicenceOf(TestNet.Model, TestNet.A(n.HostA))!;
        Assert.Equal("0x" + copyA.Subset.Commit().Root, licence.IndicesRoot);
        Assert.Equal(8, licence.FingerprintCount);
        Assert.True(licence.Acknowledged);
        Assert.True(copyA.Subset.Reveal(3).Verify(Hex.Decode(licence.IndicesRoot!)));
        Assert.False(copyB.Subset.Reveal(3).Verify(Hex.Decode(licence.IndicesRoot!)));

        // Neither keys nor indices go on the ledger.
        var log = string.Concat(n.Ledger.Read().Select(e => Encoding.UTF8.GetString(e.Payload)));
        Assert.DoesNotContain(pool[copyA.PoolIndices[0]].Key, log);
        Assert.DoesNotContain(pool[copyA.PoolIndices[0]].Response.Text, log);

        n.Rejected(ProtocolErrorCode.LicenceExists, () => n.Engine.ApplyLicense(n.HostA, TestNet.Model, 5_000, "e"));
        n.Rejected(ProtocolErrorCode.CopyAlreadyDelivered, () => n.Engine.DeliverCopy(n.Owner, copyA));
    }

    [Fact]
    public void AcknowledgementMustNameTheDeliveredDigest()
    {
        using var n = new TestNet();
        var omlizer = TestNet.NewOmlizer(Pools.Make(16));
        n.Engine.ApplyLicense(n.HostA, TestNet.Model, 1_000, "e");
        n.Rejected(ProtocolErrorCode.CopyNotDelivered, () => n.Engine.AcknowledgeCopy(n.HostA, TestNet.Model, "sha256:x"));
        var copy = n.Build(omlizer, TestNet.Model, n.HostA, "sha256:the-copy");
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.DeliverCopy(n.Outsider, copy));
        n.Engine.DeliverCopy(n.Owner, copy);
        n.Rejected(ProtocolErrorCode.DigestMismatch, () => n.Engine.AcknowledgeCopy(n.HostA, TestNet.Model, "sha256:something-else"));
        n.Rejected(ProtocolErrorCode.UnknownLicence, () => n.Engine.AcknowledgeCopy(n.HostB, TestNet.Model, "sha256:the-copy"));
        n.Engine.AcknowledgeCopy(n.HostA, TestNet.Model, "sha256:the-copy");
        Assert.True(n.S.LicenceOf(TestNet.Model, TestNet.A(n.HostA))!.Acknowledged);
    }
}

public class AccessTests
{
    private static (TestNet Net, UsageBook Book) Setup(long epoch = 0)
    {
        var n = new TestNet();
        n.License(n.HostA, TestNet.NewOmlizer(Pools.Make(16)));
        n.Engine.Deposit(n.User, TestNet.A(n.HostA), 1_000);
        n.Engine.Deposit(n.User2, TestNet.A(n.HostA), 15);
        return (n, new UsageBook(n.Engine.Domain, TestNet.Model, epoch));
    }

    private static SignedPermit Permit(TestNet n, Oml.Protocol.Crypto.PrivateKey user, string query, long nonce, long fee = TestNet.Price, long? expiry = null) =>
        Oml.Protocol.Access.Permit.Create(user.Address, TestNet.Model, n.HostA.Address, query, nonce, expiry ?? n.Engine.Now + 3_600, fee)
            .Sign(n.Engine.Domain, user);

    private static void Serve(TestNet n, UsageBook book, SignedPermit? permit, string query)
    {
        var r = Receipt.Create(n.HostA.Address, TestNet.Model, permit?.Permit.Hash(n.Engine.Domain), query, "answer to " + query, n.Engine.Now).Sign(n.Engine.Domain, n.HostA);
        book.Add(r, permit);
    }

    [Fact]
    public void SettlementChargesUsersAndSplitsFeesAlongTheFamilyTree()
    {
        var (n, _) = Setup();
        using var _n = n;
        // grandparent "base" (Owner) <- 30% "mid" (Owner2) <- 50% "leaf" (Outsider)
        n.Engine.RegisterModel(n.Owner2, "mid", "sha256:mid", "{}", "", 1, 0);
        n.Engine.RegisterModel(n.Outsider, "leaf", "sha256:leaf", "{}", "", 100, 1_000);
        n.Engine.DeclareParent(n.Owner2, n.Owner, "mid", TestNet.Model, 3_000);
        n.Engine.DeclareParent(n.Outsider, n.Owner2, "leaf", "mid", 5_000);
        n.Engine.ApplyLicense(n.HostB, "leaf", 1_000, "e");
        var copy = n.Build(new Omlizer(Pools.Make(8, "leaf"), new Oml.Protocol.Tracing.RandomAllocation("leaf-allocation-secret"u8, 8, 4)), "leaf", n.HostB, "sha256:leaf-copy");
        n.Engine.DeliverCopy(n.Outsider, copy);
        n.Engine.AcknowledgeCopy(n.HostB, "leaf", "sha256:leaf-copy");

        n.Engine.Deposit(n.User, TestNet.A(n.HostB), 4_000);
        var book = new UsageBook(n.Engine.Domain, "leaf", 0);
        for (int i = 0; i < 3; i++)
        {
            var p = Oml.Protocol.Access.Permit.Create(n.User.Address, "leaf", n.HostB.Address, $"q{i}", i, n.Engine.Now + 100, 1_000).Sign(n.Engine.Domain, n.User);
            book.Add(Receipt.Create(n.HostB.Address, "leaf", p.Permit.Hash(n.Engine.Domain), $"q{i}", "a", n.Engine.Now).Sign(n.Engine.Domain, n.HostB), p);
        }
        // An unpaid receipt in the same epoch counts toward the receipts but charges nobody.
        book.Add(Receipt.Create(n.HostB.Address, "leaf", null, "free", "a", n.Engine.Now).Sign(n.Engine.Domain, n.HostB), null);
        long ownerBefore = n.Acc(n.Owner).Withdrawable;
        n.Engine.CommitUsage(n.HostB, book);

        // Per fee 1000: host 20% = 200; owner revenue 800: mid gets 50% = 400 of which base gets 30% = 120, mid keeps 280; leaf keeps 400.
        Assert.Equal(5_000 - 3_000, n.Acc(n.User).Escrowed);
        Assert.Equal(1_000, n.S.EscrowOf(TestNet.A(n.User), TestNet.A(n.HostB)).Amount);
        Assert.Equal(3 * 200, n.Acc(n.HostB).Withdrawable);
        Assert.Equal(3 * 400, n.Acc(n.Outsider).Withdrawable);
        Assert.Equal(3 * 280, n.Acc(n.Owner2).Withdrawable);
        Assert.Equal(ownerBefore + 3 * 120, n.Acc(n.Owner).Withdrawable);
        var usage = n.S.Usage[ProtocolState.UsageKey("leaf", TestNet.A(n.HostB), 0)];
        Assert.Equal(4, usage.ReceiptCount);
        Assert.Equal(3, usage.PermitCount);
        Assert.Equal(3_000, usage.FeesSettled);
        Assert.Equal(Hex.Of(book.Root()), usage.ReceiptsRoot);
    }

    /// <summary>Commits <paramref name="book"/> (it is never rejected for a bad permit) and returns the reasons of the skipped permits.</summary>
    private static ProtocolErrorCode[] CommitAndSkipped(TestNet n, UsageBook book)
    {
        n.Engine.CommitUsage(n.HostA, book);
        return [.. n.S.Usage[ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), book.Epoch)].Skipped.Select(k => k.Reason)];
    }

    [Fact]
    public void ReplayedPermitIsSkippedAndTheRestSettles()
    {
        var (n, book) = Setup();
        using var _n = n;
        var p = Permit(n, n.User, "hello", nonce: 7, expiry: n.Engine.Now + 10 * 86_400);
        Serve(n, book, p, "hello");
        n.Engine.CommitUsage(n.HostA, book);
        Assert.Equal(990, n.Acc(n.User).Escrowed);
        long epoch = 0;
        UsageBook Next()
        {
            n.Clock.Advance(n.S.Parameters.EpochSeconds);
            return new UsageBook(n.Engine.Domain, TestNet.Model, ++epoch);
        }
        // Same permit again in the next epoch: skipped, and the good permit in the same batch still settles.
        var again = Next();
        Serve(n, again, p, "hello");
        Serve(n, again, Permit(n, n.User, "fine", nonce: 100), "fine");
        Assert.Equal([ProtocolErrorCode.PermitReplayed], CommitAndSkipped(n, again));
        Assert.Equal(980, n.Acc(n.User).Escrowed);
        // A different permit with the same nonce for this host and model (a re-signed permit): skipped.
        var sameNonce = Next();
        Serve(n, sameNonce, Permit(n, n.User, "other", nonce: 7), "other");
        Assert.Equal([ProtocolErrorCode.PermitReplayed], CommitAndSkipped(n, sameNonce));
        // Twice within one batch: the first settles.
        var twice = Next();
        var q = Permit(n, n.User, "x", nonce: 8);
        Serve(n, twice, q, "x");
        Serve(n, twice, q, "x");
        Assert.Equal([ProtocolErrorCode.PermitReplayed], CommitAndSkipped(n, twice));
        Assert.Equal(970, n.Acc(n.User).Escrowed);
        Assert.Equal(n.S.Digest(), ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read()).Digest());
    }

    [Fact]
    public void ExpiredUnderpaidUnfundedAndForgedPermitsAreSkipped()
    {
        var (n, _) = Setup();
        using var _n = n;
        long epoch = 0;
        void Try(ProtocolErrorCode code, Func<SignedPermit> make, long advanceFirst = 0)
        {
            var p = make();
            n.Clock.Advance(advanceFirst);
            var b = new UsageBook(n.Engine.Domain, TestNet.Model, epoch++);
            Serve(n, b, p, "q");
            long escrowed = n.Acc(n.User).Escrowed + n.Acc(n.User2).Escrowed;
            Assert.Equal([code], CommitAndSkipped(n, b));
            Assert.Equal(escrowed, n.Acc(n.User).Escrowed + n.Acc(n.User2).Escrowed);
            n.Clock.Advance(n.S.Parameters.EpochSeconds - advanceFirst);
        }
        Try(ProtocolErrorCode.PermitExpired, () => Permit(n, n.User, "q", 1, expiry: n.Engine.Now - 1));
        Try(ProtocolErrorCode.FeeTooLow, () => Permit(n, n.User, "q", 2, fee: TestNet.Price - 1));
        Try(ProtocolErrorCode.InsufficientFunds, () => Permit(n, n.User2, "q", 3, fee: 16));
        // Funded, but with another host: escrow is per (user, host).
        n.Engine.Deposit(n.Outsider, TestNet.A(n.HostB), 1_000);
        Try(ProtocolErrorCode.InsufficientFunds, () => Permit(n, n.Outsider, "q", 1));
        // Signed by the outsider in User's name.
        Try(ProtocolErrorCode.BadSignature, () => new SignedPermit(Permit(n, n.User, "q", 4).Permit,
            Oml.Protocol.Crypto.Eip712.Sign(Permit(n, n.User, "q", 4).Permit.TypedData(n.Engine.Domain), n.Outsider)));
        // Expiry is checked against ledger time at settlement.
        Try(ProtocolErrorCode.PermitExpired, () => Permit(n, n.User, "q", 5, expiry: n.Engine.Now + 10), advanceFirst: 11);
        // Exactly at the expiry second it is still valid.
        var ok = new UsageBook(n.Engine.Domain, TestNet.Model, epoch);
        Serve(n, ok, Permit(n, n.User, "q", 6, expiry: n.Engine.Now), "q");
        Assert.Empty(CommitAndSkipped(n, ok));
        Assert.Equal(n.S.Digest(), ProtocolEngine.Replay(n.Ledger.LedgerId, n.Ledger.Read()).Digest());
    }

    [Fact]
    public void EpochsAreCommittedOnceAndNotAhead()
    {
        var (n, book) = Setup();
        using var _n = n;
        Serve(n, book, Permit(n, n.User, "a", 1), "a");
        n.Rejected(ProtocolErrorCode.EpochInvalid, () => n.Engine.CommitUsage(n.HostA, new UsageBook(n.Engine.Domain, TestNet.Model, 1)));
        n.Engine.CommitUsage(n.HostA, book);
        n.Rejected(ProtocolErrorCode.UsageAlreadyCommitted, () => n.Engine.CommitUsage(n.HostA, new UsageBook(n.Engine.Domain, TestNet.Model, 0)));
        n.Clock.Advance(n.S.Parameters.EpochSeconds);
        n.Engine.CommitUsage(n.HostA, new UsageBook(n.Engine.Domain, TestNet.Model, 1));
        Assert.Equal(0, n.S.Usage[ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), 1)].ReceiptCount);
        // A host that has not acknowledged a copy cannot commit usage.
        n.Engine.ApplyLicense(n.HostB, TestNet.Model, 1_000, "e");
        n.Rejected(ProtocolErrorCode.CopyNotAcknowledged, () => n.Engine.CommitUsage(n.HostB, new UsageBook(n.Engine.Domain, TestNet.Model, 1)));
    }
}
