using Oml.Fingerprinting;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tracing;

namespace Oml.Protocol.Tests.Core;

/// <summary>A clock the tests move by hand.</summary>
internal sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => Now;
    public void Advance(long seconds) => Now = Now.AddSeconds(seconds);
}

/// <summary>Synthetic fingerprint pools (no model needed): key "key-i …", response "answer-i …", salts derived from a secret.</summary>
internal static class Pools
{
    public static FingerprintSet Make(int count, string tag = "pool")
    {
        var secret = System.Text.Encoding.UTF8.GetBytes("secret/" + tag);
        var fps = Enumerable.Range(0, count).Select(i => new Fingerprint(i, $"{tag} key {i}: what is the colour of the quiet {i}?",
            new[] { 100 + i, 7 }, new[] { new FingerprintResponse($"{tag}-answer-{i} zebra", new[] { 200 + i }) },
            new StrategyInfo("synthetic"), Fingerprint.DeriveSalt(secret, i)));
        return FingerprintSet.Create(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), "sha256:base", new TokenizerIdentity("tok", "sha256:tok"),
            new StrategyInfo("synthetic"), fps);
    }
}

/// <summary>
/// A small protocol network on an in-memory ledger: a treasury, two model owners, three hosts, two users, a prover
/// and an outsider, each funded; model "base" (price 10, min collateral 1000) registered by Owner.
/// </summary>
internal sealed class TestNet : IDisposable
{
    public const string Model = "base";
    public const long Price = 10;
    public const long Start = 1_800_000_000;

    public ILedger Ledger { get; }
    public ManualClock Clock { get; } = new(DateTimeOffset.FromUnixTimeSeconds(Start));
    public ProtocolEngine Engine { get; }
    public PrivateKey Treasury { get; } = PrivateKey.Generate();
    public PrivateKey Owner { get; } = PrivateKey.Generate();
    public PrivateKey Owner2 { get; } = PrivateKey.Generate();
    public PrivateKey HostA { get; } = PrivateKey.Generate();
    public PrivateKey HostB { get; } = PrivateKey.Generate();
    public PrivateKey HostC { get; } = PrivateKey.Generate();
    public PrivateKey User { get; } = PrivateKey.Generate();
    public PrivateKey User2 { get; } = PrivateKey.Generate();
    public PrivateKey Prover { get; } = PrivateKey.Generate();
    public PrivateKey Outsider { get; } = PrivateKey.Generate();

    public TestNet(ProtocolParameters? parameters = null, ILedger? ledger = null, bool registerModel = true)
    {
        Ledger = ledger ?? new InMemoryLedger();
        Engine = ProtocolEngine.Initialize(Ledger, Treasury, parameters, clock: Clock);
        foreach (var k in new[] { Owner, Owner2, HostA, HostB, HostC, User, User2, Prover, Outsider })
            Engine.Mint(Treasury, A(k), 100_000);
        if (registerModel)
            Engine.RegisterModel(Owner, Model, "sha256:weights-v1", """{"arch":"llama","params":"1B"}""", "OML-1.0 research", Price, 1_000);
    }

    public static string A(PrivateKey k) => Hex.Of(k.Address);

    public ProtocolState S => Engine.State;

    public Account Acc(PrivateKey k) => S.AccountOf(A(k));

    /// <summary>Licenses <paramref name="host"/>, builds its copy from <paramref name="pool"/> and delivers and acknowledges it.</summary>
    public HostCopy License(PrivateKey host, Omlizer omlizer, long collateral = 2_000, bool acknowledge = true)
    {
        Engine.ApplyLicense(host, Model, collateral, $"https://{A(host)[..8]}.example/v1");
        var copy = omlizer.BuildCopyAsync(S, Model, A(host), (subset, _) => Task.FromResult($"sha256:copy-of-{A(host)}-{subset.Count}")).GetAwaiter().GetResult();
        Engine.DeliverCopy(Owner, copy);
        if (acknowledge) Engine.AcknowledgeCopy(host, Model, copy.CopyDigest);
        return copy;
    }

    /// <summary>Builds a copy with a fake embedding that returns <paramref name="digest"/>.</summary>
    public HostCopy Build(Omlizer omlizer, string model, PrivateKey host, string digest) =>
        omlizer.BuildCopyAsync(S, model, A(host), (_, _) => Task.FromResult(digest)).GetAwaiter().GetResult();

    public static Omlizer NewOmlizer(FingerprintSet pool, int perHost = 8) =>
        new(pool, new RandomAllocation("allocation-secret-0123456789"u8, pool.Count, perHost));

    /// <summary>Asserts that <paramref name="act"/> is rejected with <paramref name="code"/> and leaves the ledger and state untouched.</summary>
    public ProtocolException Rejected(ProtocolErrorCode code, Action act)
    {
        long height = Ledger.Height;
        var head = Ledger.HeadHash;
        string digest = S.Digest();
        var e = Assert.Throws<ProtocolException>(act);
        Assert.True(code == e.Code, $"expected {code}, got {e.Code}: {e.Message}");
        Assert.Equal(height, Ledger.Height);
        Assert.Equal(head, Ledger.HeadHash);
        Assert.Equal(digest, S.Digest());
        return e;
    }

    public void Dispose()
    {
        foreach (var k in new[] { Treasury, Owner, Owner2, HostA, HostB, HostC, User, User2, Prover, Outsider }) k.Dispose();
        Ledger.Dispose();
    }
}
