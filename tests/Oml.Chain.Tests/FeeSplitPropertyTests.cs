using System.Numerics;
using Oml.Protocol.Chain;
using Oml.Protocol.Crypto;

namespace Oml.Chain.Tests;

/// <summary>
/// Property: settling permits along a random family tree never creates or loses value — every fee ends up, to the
/// unit, in the host's and the owners' credits, exactly as the embedded ledger's rule computes it (host share floor per
/// permit; the batch's owner revenue split once, each parent its floor share recursively, the remainder to the owner).
/// </summary>
public sealed class FeeSplitPropertyTests(AnvilFixture fx)
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Random_trees_and_fees_split_exactly_and_conserve_value(int seed)
    {
        var rng = new Random(seed);
        var p = OmlChainClient.DefaultParameters();
        p[(int)ChainParam.HostFeeShareBps] = rng.Next(0, 10_001);
        var w = await World.CreateAsync(fx.Node, p);
        int n = rng.Next(3, 7);
        var owners = new List<(OmlChainClient Client, PrivateKey Key)>();
        var parents = new Dictionary<int, List<(int Parent, int Bps)>>();
        for (int i = 0; i < n; i++)
        {
            // some models share an owner (no consent needed then), most do not
            var role = i > 0 && rng.Next(4) == 0 ? $"prop-{seed}-owner-{i - 1}" : $"prop-{seed}-owner-{i}";
            var c = owners.FirstOrDefault(o => o.Client.Address == new OmlChainClient(fx.Node.RpcUrl, w.Deployment, World.KeyOf(role)).Address).Client
                ?? await w.NewAccountAsync(role);
            owners.Add((c, PrivateKey.FromHex(World.KeyOf(role))));
            await c.RegisterModelAsync($"m{i}", World.Digest($"m{i}"), null, 0, 1, 0);
            parents[i] = [];
            int budget = 10_000;
            foreach (int j in Enumerable.Range(0, i).OrderBy(_ => rng.Next()).Take(rng.Next(0, Math.Min(i, 3) + 1)))
            {
                int bps = rng.Next(1, Math.Max(2, budget / 2));
                if (bps > budget) break;
                budget -= bps;
                var parentOwner = owners[j];
                Signature? consent = null;
                if (parentOwner.Client.Address != c.Address)
                {
                    long nonce = (long)await c.ConsentNonceAsync(parentOwner.Client.Address);
                    consent = OmlChainClient.SignParentConsent(w.Domain, parentOwner.Key, $"m{i}", $"m{j}", bps, c.Address, nonce, long.MaxValue / 4);
                }
                await c.DeclareParentAsync($"m{i}", $"m{j}", bps, long.MaxValue / 4, consent);
                parents[i].Add((j, bps));
            }
        }
        // the host serves the last model (the deepest tree)
        string leaf = $"m{n - 1}";
        await w.Host.ApplyLicenseAsync(leaf, 1000, "x");
        await owners[n - 1].Client.DeliverCopyAsync(leaf, w.Host.Address, World.Digest("r"), 4, World.Digest("c"), "random:2");
        await w.Host.AcknowledgeCopyAsync(leaf, World.Digest("c"));
        await w.User.DepositAsync(w.Host.Address, 1_000_000);
        var fees = Enumerable.Range(0, rng.Next(5, 25)).Select(_ => (long)(rng.Next(4) == 0 ? rng.Next(1, 10) : rng.Next(1, 100_000))).ToList();
        var permits = fees.Select((f, k) => w.Permit(w.UserKey, w.Host.Address, k, f, modelId: leaf)).ToList();

        var accounts = owners.Select(o => o.Client.Address).Append(w.Host.Address).Distinct().ToList();
        var before = new Dictionary<string, BigInteger>();
        foreach (var a in accounts) before[a] = await w.User.CreditsAsync(a);
        var r = await w.Host.CommitUsageAsync(leaf, await w.EpochAsync(), World.Digest("usage"), fees.Count, permits);
        Assert.Equal(fees.Count, r.All("PermitSettled").Count());

        // the reference: the embedded ledger's rule (FeeSplit.cs): host share floor per permit, the batch's owner
        // revenue split once, each parent its floor share recursively, at most FeeSplit.MaxVisits models visited
        var expected = accounts.ToDictionary(a => a, _ => BigInteger.Zero);
        int Split(int model, long amount, int visited)
        {
            if (amount == 0) return visited;
            visited++;
            long rest = amount;
            foreach (var (parent, bps) in parents[model])
            {
                long part = amount * bps / 10_000;
                rest -= part;
                if (visited < Oml.Protocol.Core.FeeSplit.MaxVisits) visited = Split(parent, part, visited);
                else expected[owners[parent].Client.Address] += part;
            }
            expected[owners[model].Client.Address] += rest;
            return visited;
        }
        long ownerRevenue = 0;
        foreach (var f in fees)
        {
            long hostCut = f * (long)p[(int)ChainParam.HostFeeShareBps] / 10_000;
            expected[w.Host.Address] += hostCut;
            ownerRevenue += f - hostCut;
        }
        Split(n - 1, ownerRevenue, 0);
        BigInteger credited = 0;
        foreach (var a in accounts)
        {
            var delta = await w.User.CreditsAsync(a) - before[a];
            Assert.Equal(expected[a], delta);
            credited += delta;
        }
        Assert.Equal(fees.Sum(), credited);
        Assert.Equal(1_000_000 - fees.Sum(), await w.User.EscrowAsync(w.User.Address, w.Host.Address));
        // the vault holds exactly what it owes: escrow + credits + locked collateral (no bonds here)
        Assert.Equal(1_000_000 + 1000, await w.User.BalanceOfAsync(w.Deployment.Protocol));
    }
}
