using System.Numerics;
using System.Text;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

[assembly: CollectionBehavior(DisableTestParallelization = true)]
[assembly: AssemblyFixture(typeof(Oml.Chain.Tests.AnvilFixture))]

namespace Oml.Chain.Tests;

/// <summary>One anvil node for the whole test run, started on a free loopback port and stopped by its pid.</summary>
public sealed class AnvilFixture : IAsyncLifetime
{
    public const long ChainId = 31337;
    public AnvilNode Node { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Node = await AnvilNode.StartAsync(ChainId);

    public ValueTask DisposeAsync()
    {
        Node?.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A fresh deployment with funded parties: treasury (deployer), owner, host, host2, user, prover, parent
/// owner. Each test gets its own contracts, so tests never share protocol state (they share the node's clock).</summary>
public sealed class World
{
    public const long ModelPrice = 10;
    public const string ModelId = "acme/llama-7b";

    public AnvilNode Node { get; }
    public OmlDeployment Deployment { get; }
    public OmlChainClient Treasury { get; }
    public OmlChainClient Owner { get; }
    public OmlChainClient Host { get; }
    public OmlChainClient Host2 { get; }
    public OmlChainClient User { get; }
    public OmlChainClient Prover { get; }
    public OmlChainClient ParentOwner { get; }
    public PrivateKey UserKey { get; }
    public PrivateKey HostKey { get; }
    public PrivateKey ParentOwnerKey { get; }

    /// <summary>Test keys by role (SHA-256 of the role name), funded with ether for gas by <see cref="CreateAsync"/>.</summary>
    public static string KeyOf(string role) => "0x" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes("oml-chain-test/" + role)));

    public static readonly string[] Roles = ["owner", "host", "host2", "user", "prover", "parent-owner"];

    private World(AnvilNode node, OmlDeployment d)
    {
        Node = node;
        Deployment = d;
        OmlChainClient C(string role) => new(node.RpcUrl, d, KeyOf(role));
        Treasury = new OmlChainClient(node.RpcUrl, d, AnvilNode.DevKey);
        Owner = C("owner"); Host = C("host"); Host2 = C("host2"); User = C("user"); Prover = C("prover"); ParentOwner = C("parent-owner");
        UserKey = PrivateKey.FromHex(KeyOf("user"));
        HostKey = PrivateKey.FromHex(KeyOf("host"));
        ParentOwnerKey = PrivateKey.FromHex(KeyOf("parent-owner"));
    }

    /// <summary>A client for a new account with ether for gas and nothing else.</summary>
    public async Task<OmlChainClient> NewAccountAsync(string role)
    {
        var c = new OmlChainClient(Node.RpcUrl, Deployment, KeyOf(role));
        await Node.FundAsync(c.Address, BigInteger.Pow(10, 20));
        return c;
    }

    public ProtocolDomain Domain => Deployment.Domain;

    /// <summary>A fresh deployment; <paramref name="registrationDelay"/> is 0 (a reveal needs only a later block) unless
    /// a test is about the delay.</summary>
    public static async Task<World> CreateAsync(AnvilNode node, BigInteger[]? parameters = null, BigInteger? mint = null, long registrationDelay = 0)
    {
        string treasury;
        using (var k = PrivateKey.FromHex(AnvilNode.DevKey)) treasury = k.Address.ToString();
        var d = await OmlChainClient.DeployAsync(node.RpcUrl, node.ChainId, AnvilNode.DevKey, treasury, parameters,
            registrationDelaySeconds: registrationDelay);
        var w = new World(node, d);
        var amount = mint ?? 1_000_000;
        foreach (var c in new[] { w.Owner, w.Host, w.Host2, w.User, w.Prover, w.ParentOwner })
        {
            await node.FundAsync(c.Address, BigInteger.Pow(10, 21));
            await w.Treasury.MintAsync(c.Address, amount);
            await c.ApproveAsync(amount);
        }
        return w;
    }

    /// <summary>Registers the model and licenses, delivers and acknowledges a copy for <paramref name="host"/>, with
    /// a subset of <paramref name="fingerprints"/> fingerprints; returns the subset with its tree.</summary>
    public async Task<Subset> LicensedCopyAsync(OmlChainClient host, int fingerprints = 5, bool register = true, string modelId = ModelId)
    {
        if (register)
            await Owner.RegisterModelAsync(modelId, Digest("weights"), Digest("pool-root"), 64, ModelPrice, 0, "{}", "terms");
        await host.ApplyLicenseAsync(modelId, 1000, "http://127.0.0.1:1");
        var subset = Subset.Make(fingerprints, host.Address);
        await Owner.DeliverCopyAsync(modelId, host.Address, subset.RootHex, subset.Count, Digest("copy-" + host.Address), "random:3");
        await host.AcknowledgeCopyAsync(modelId, Digest("copy-" + host.Address));
        return subset;
    }

    public static string Digest(string s) => "0x" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(s)));

    public SignedPermit Permit(PrivateKey user, string host, long nonce, long fee, long expiry = long.MaxValue / 2, string query = "q",
        ProtocolDomain? domain = null, string modelId = ModelId) =>
        Oml.Protocol.Access.Permit.Create(user.Address, modelId, Address.Parse(host), query + nonce, nonce, expiry, fee)
            .Sign(domain ?? Domain, user);

    public async Task<long> EpochAsync() => (long)await Owner.CurrentEpochAsync();

    /// <summary>The host answers fingerprint <paramref name="i"/> of its subset (with the secret response) and signs
    /// a receipt naming <paramref name="permitHash"/> (null: none); the prover turns it into an evidence item.</summary>
    public EvidenceTuple Evidence(Subset subset, int i, string? permitHash = null, string? answer = null, PrivateKey? signer = null)
    {
        var f = subset.Fingerprints[i];
        answer ??= "  " + f.Response.Text + " and more";
        var unsigned = Receipt.Create(HostKey.Address, ModelId, permitHash, f.Key, answer, 1_700_000_000);
        var receipt = new SignedReceipt(unsigned, Eip712.Sign(unsigned.TypedData(Domain), signer ?? HostKey));
        return OmlChainClient.Evidence(subset.Reveal(i), answer, receipt);
    }

    /// <summary>Commits a claim over <paramref name="items"/> against <paramref name="host"/>, waits a second and
    /// reveals it; returns the claim id.</summary>
    public async Task<long> ClaimAsync(string host, IReadOnlyList<EvidenceTuple> items, long bond = 100, bool reveal = true, string modelId = ModelId)
    {
        var salt = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var evidenceHash = await Prover.EvidenceHashAsync(items);
        var commitment = "0x" + Convert.ToHexStringLower(await Prover.CommitmentAsync(modelId, host, evidenceHash, salt));
        var committed = await Prover.CommitClaimAsync(commitment, bond);
        long id = (long)committed.Single("ClaimCommitted").Int("claimId");
        if (reveal)
        {
            await Node.IncreaseTimeAsync(2);
            await Prover.RevealClaimAsync(id, modelId, host, salt, items);
        }
        return id;
    }
}

/// <summary>A host's fingerprint subset: fingerprints with salts, their SHA-256 Merkle tree (Oml.Fingerprinting).</summary>
public sealed record Subset(IReadOnlyList<Fingerprint> Fingerprints, MerkleTree Tree)
{
    public int Count => Fingerprints.Count;
    public string RootHex => "0x" + Tree.RootHex;

    public static Subset Make(int n, string seed)
    {
        var fps = Enumerable.Range(0, n).Select(i => new Fingerprint(i, $"key {i} of {seed}: the quick brown fox?",
            [100 + i, 200 + i], [new FingerprintResponse($"secret answer {i}", [300 + i])], new StrategyInfo("test"),
            System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes($"salt {i} {seed}")))).ToList();
        return new Subset(fps, new MerkleTree(fps.Select(FingerprintLeaf.Encode)));
    }

    public RevealedFingerprint Reveal(int i) => RevealedFingerprint.From(Fingerprints[i], Tree.Proof(i));
}
