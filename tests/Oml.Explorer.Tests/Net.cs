using Oml.Protocol.Access;
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
/// (owner, 10 % share); host A licenses "child", serves three queries paying 100 each and commits them; host A withdraws.
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
    public const string Metadata = """{"name":"<script>alert('x')</script> & <b>bold</b>"}""";
    public const string Root = "0x1111111111111111111111111111111111111111111111111111111111111111";

    public Net()
    {
        Engine = ProtocolEngine.Initialize(Ledger, Treasury, clock: Clock);
        foreach (var k in new[] { Owner, Owner2, HostA, User }) Engine.Mint(Treasury, A(k), 10_000);
        Engine.RegisterModel(Owner2, "base", "sha256:base", "{}", "OML-1.0", 0, 1_000);
        Engine.RegisterModel(Owner, "child", "sha256:child", Metadata, "OML-1.0", 10, 1_000);
        Engine.DeclareParent(Owner, Owner2, "child", "base", 1_000);
        Engine.AddVersion(Owner, "child", "sha256:child-v2", "second");
        Engine.ApplyLicense(HostA, "child", 2_000, "https://a.example/v1");
        Engine.DeliverCopy(Owner, "child", A(HostA), Root, 6, "sha256:copy-a", "random:6");
        Engine.AcknowledgeCopy(HostA, "child", "sha256:copy-a");
        Engine.Deposit(User, 1_000);
        Engine.CommitUsage(HostA, Book(HostA, User, "child", 0, 3, 100));
        Engine.Withdraw(HostA);
    }

    public static string A(PrivateKey k) => Hex.Of(k.Address);

    public UsageBook Book(PrivateKey host, PrivateKey user, string model, long epoch, int count, long fee, long firstNonce = 1)
    {
        var d = Engine.Domain;
        var book = new UsageBook(d, model, epoch);
        for (int i = 0; i < count; i++)
        {
            var permit = Permit.Create(user.Address, model, host.Address, $"q{firstNonce + i}", firstNonce + i, Engine.Now + 3_600, fee).Sign(d, user);
            var receipt = Receipt.Create(host.Address, model, permit.Permit.Hash(d), $"q{firstNonce + i}", "answer", Engine.Now).Sign(d, host);
            book.Add(receipt, permit);
        }
        return book;
    }

    public void Dispose()
    {
        foreach (var k in new[] { Treasury, Owner, Owner2, HostA, User }) k.Dispose();
        Ledger.Dispose();
    }
}
