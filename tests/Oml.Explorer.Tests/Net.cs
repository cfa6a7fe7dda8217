using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Explorer.Tests;

/// <summary>A clock the tests move by hand.</summary>
internal sealed class ManualClock(long start) : TimeProvider
{
    public long Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeSeconds(Now);
}

/// <summary>
/// A small network on an in-memory ledger, built with the library: model "base" (owner2) is the parent of "child"
/// (owner, 10 % share); the user escrows 1 000 with host A, which licenses "child", serves three queries paying 100 each
/// and one paying 5 (below the price of 10, skipped at settlement) and commits them; host A withdraws. The prover commits
/// a claim it never reveals (settled as expired, bond refunded); the owner stakes 1 500, proposes and votes yes.
/// </summary>
internal sealed class Net : IDisposable
{
    public const long Start = 1_800_000_000;
    public InMemoryLedger Ledger { get; } = new();
    public ManualClock Clock { get; } = new(Start);
    public ProtocolEngine Engine { get; }
    public PrivateKey Treasury { get; } = PrivateKey.Generate();
    public PrivateKey Owner { get; } = PrivateKey.Generate();
    public PrivateKey Owner2 { get; } = PrivateKey.Generate();
    public PrivateKey HostA { get; } = PrivateKey.Generate();
    public PrivateKey User { get; } = PrivateKey.Generate();
    public PrivateKey Prover { get; } = PrivateKey.Generate();
    public long ExpiredClaim { get; }
    public long Proposal { get; }
    public const string Metadata = """{"name":"<script>alert('x')</script> & <b>bold</b>"}""";
    public const string Root = "0x1111111111111111111111111111111111111111111111111111111111111111";

    public Net()
    {
        Engine = ProtocolEngine.Initialize(Ledger, Treasury, clock: Clock);
        foreach (var k in new[] { Owner, Owner2, HostA, User, Prover }) Engine.Mint(Treasury, A(k), 10_000);
        Engine.RegisterModel(Owner2, "base", "sha256:base", "{}", "OML-1.0", 0, 1_000);
        Engine.RegisterModel(Owner, "child", "sha256:child", Metadata, "OML-1.0", 10, 1_000);
        Engine.DeclareParent(Owner, Owner2, "child", "base", 1_000);
        Engine.AddVersion(Owner, "child", "sha256:child-v2", "second");
        Engine.ApplyLicense(HostA, "child", 2_000, "https://a.example/v1");
        Engine.DeliverCopy(Owner, "child", A(HostA), Root, 6, "sha256:copy-a", "random:6");
        Engine.AcknowledgeCopy(HostA, "child", "sha256:copy-a");
        Engine.Deposit(User, A(HostA), 1_000);
        var book = Book(HostA, User, "child", 0, 3, 100);
        var (cheapReceipt, cheapPermit) = Served(HostA, User, "child", 4, 5);
        book.Add(cheapReceipt, cheapPermit);
        Engine.CommitUsage(HostA, book);
        Engine.Withdraw(HostA);

        ExpiredClaim = Engine.CommitClaim(Prover, new ClaimTicket("child", A(HostA), "{}", Hex.Of(new byte[32])), 100);
        Clock.Now += Engine.State.Parameters.RevealWindowSeconds + 1;
        Engine.Settle(Prover, ExpiredClaim);

        Engine.Stake(Owner, 1_500);
        Proposal = Engine.Propose(Owner, new Dictionary<string, string> { ["MinBond"] = "150" }, "raise the bond");
        Engine.Vote(Owner, Proposal, true);
    }

    public static string A(PrivateKey k) => Hex.Of(k.Address);

    public UsageBook Book(PrivateKey host, PrivateKey user, string model, long epoch, int count, long fee, long firstNonce = 1)
    {
        var d = Engine.Domain;
        var book = new UsageBook(d, model, epoch);
        for (int i = 0; i < count; i++)
        {
            var (receipt, permit) = Served(host, user, model, firstNonce + i, fee);
            book.Add(receipt, permit);
        }
        return book;
    }

    /// <summary>A permit of <paramref name="user"/> paying <paramref name="fee"/> and the host's receipt for it.</summary>
    public (SignedReceipt, SignedPermit) Served(PrivateKey host, PrivateKey user, string model, long nonce, long fee)
    {
        var d = Engine.Domain;
        var permit = Permit.Create(user.Address, model, host.Address, $"q{nonce}", nonce, Engine.Now + 3_600, fee).Sign(d, user);
        var receipt = Receipt.Create(host.Address, model, permit.Permit.Hash(d), $"q{nonce}", "answer", Engine.Now).Sign(d, host);
        return (receipt, permit);
    }

    public void Dispose()
    {
        foreach (var k in new[] { Treasury, Owner, Owner2, HostA, User, Prover }) k.Dispose();
        Ledger.Dispose();
    }
}
