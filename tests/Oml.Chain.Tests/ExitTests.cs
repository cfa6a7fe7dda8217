using System.Numerics;
using System.Text.Json;
using Oml.Protocol.Chain;

namespace Oml.Chain.Tests;

/// <summary>The end of a licence on chain: announceExit, the notice, releaseCollateral (pull payment), and claims
/// revealed during the notice.</summary>
public sealed class ExitTests(AnvilFixture fx)
{
    private const long Day = 86_400;

    private async Task<long> NowAsync()
    {
        var block = JsonDocument.Parse(await fx.Node.RpcAsync("eth_getBlockByNumber", "[\"latest\", false]")).RootElement;
        if (block.TryGetProperty("result", out var r)) block = r;
        return Convert.ToInt64(block.GetProperty("timestamp").GetString()![2..], 16);
    }

    /// <summary>Moves the node's clock so that the next block is at about <paramref name="t"/> (never backwards).</summary>
    private async Task AdvanceToAsync(long t)
    {
        long now = await NowAsync();
        if (t > now) await fx.Node.IncreaseTimeAsync(t - now);
    }

    private static async Task<string> Reverted(Func<Task> act) => (await Assert.ThrowsAsync<ChainRevertException>(act)).ErrorName;

    /// <summary>Every token OmlProtocol holds is accounted for: credits, escrow, bonds and locked collateral.</summary>
    private static async Task AssertVaultBalancesAsync(World w, params BigInteger[] lockedCollateral)
    {
        BigInteger credits = 0;
        foreach (var c in new[] { w.Owner, w.Host, w.Host2, w.User, w.Prover, w.ParentOwner }) credits += await w.User.CreditsAsync(c.Address);
        BigInteger escrow = await w.User.EscrowAsync(w.User.Address, w.Host.Address);
        var held = await w.User.BalanceOfAsync(w.Deployment.Protocol);
        Assert.Equal(held, credits + escrow + await w.User.BondsHeldAsync() + lockedCollateral.Aggregate(BigInteger.Zero, (a, b) => a + b));
    }

    [Fact]
    public async Task Collateral_is_released_after_the_notice_once_and_never_earlier()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.LicensedCopyAsync(w.Host);
        var tokensBefore = await w.Host.BalanceOfAsync(w.Host.Address);
        Assert.Equal("ExitNotAnnounced", await Reverted(() => w.Host.ReleaseCollateralAsync(World.ModelId)));
        Assert.Equal("UnknownLicence", await Reverted(() => w.Host2.AnnounceExitAsync(World.ModelId)));
        Assert.Equal("UnknownLicence", await Reverted(() => w.Host2.ReleaseCollateralAsync(World.ModelId)));
        var announced = (await w.Host.AnnounceExitAsync(World.ModelId)).Single("ExitAnnounced");
        Assert.Equal("ExitAlreadyAnnounced", await Reverted(() => w.Host.AnnounceExitAsync(World.ModelId)));
        long releasable = (long)announced.Int("releasableAt");
        var exit = await w.User.ExitOfAsync(World.ModelId, w.Host.Address);
        Assert.True(exit.Announced);
        Assert.Equal(releasable, (long)exit.ReleasableAt);
        // the notice: the end of the exit epoch, then a reveal window (1 h) and a rebut window (1 day)
        long epochEnds = releasable - 3600 - Day;
        Assert.True(epochEnds > await NowAsync() && epochEnds - await NowAsync() <= Day);

        await AdvanceToAsync(releasable - 30);
        Assert.Equal("ReleaseNotDue", await Reverted(() => w.Host.ReleaseCollateralAsync(World.ModelId)));
        await AdvanceToAsync(releasable + 1);
        var released = (await w.Host.ReleaseCollateralAsync(World.ModelId)).Single("CollateralReleased");
        Assert.Equal(1000, released.Int("amount"));
        Assert.Equal("AlreadyReleased", await Reverted(() => w.Host.ReleaseCollateralAsync(World.ModelId)));
        Assert.Equal(1000, await w.User.CreditsAsync(w.Host.Address));
        await AssertVaultBalancesAsync(w);
        await w.Host.WithdrawAsync();
        Assert.Equal(tokensBefore + 1000, await w.Host.BalanceOfAsync(w.Host.Address));
        Assert.Equal(0, await w.User.BalanceOfAsync(w.Deployment.Protocol));
    }

    [Fact]
    public async Task A_claim_revealed_during_the_notice_still_slashes_and_only_the_rest_is_released()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        long releasable = (long)(await w.Host.AnnounceExitAsync(World.ModelId)).Single("ExitAnnounced").Int("releasableAt");
        // the prover caught the host in its last epoch and reveals late in the notice
        await AdvanceToAsync(releasable - 60);
        long id = await w.ClaimAsync(w.Host.Address, [w.Evidence(subset, 0)]);
        Assert.Equal(1, await w.User.OpenClaimsAgainstAsync(World.ModelId, w.Host.Address));
        await AdvanceToAsync(releasable + 1);
        Assert.Equal("OpenClaims", await Reverted(() => w.Host.ReleaseCollateralAsync(World.ModelId)));
        await fx.Node.IncreaseTimeAsync(Day + 1);
        Assert.Equal("OpenClaims", await Reverted(() => w.Host.ReleaseCollateralAsync(World.ModelId)));
        Assert.Equal(500, (await w.User.SettleAsync(id)).Single("Slashed").Int("slashed"));
        Assert.Equal(0, await w.User.OpenClaimsAgainstAsync(World.ModelId, w.Host.Address));
        // released = posted − slashed (1000 − 500): no value created
        Assert.Equal(500, (await w.Host.ReleaseCollateralAsync(World.ModelId)).Single("CollateralReleased").Int("amount"));
        Assert.Equal(500, await w.User.CreditsAsync(w.Host.Address));
        Assert.Equal(100 + 150, await w.User.CreditsAsync(w.Prover.Address));
        Assert.Equal(350, await w.User.CreditsAsync(w.Owner.Address));
        await AssertVaultBalancesAsync(w);
        // nothing is left to claim against: a later reveal is refused
        Assert.Equal("LicenceReleased", await Reverted(() => w.ClaimAsync(w.Host.Address, [w.Evidence(subset, 1)])));
    }

    [Fact]
    public async Task A_rebutted_claim_closes_too_and_an_exiting_host_commits_usage_up_to_its_exit_epoch_only()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 1000);
        long epoch = await w.EpochAsync();
        var f = subset.Fingerprints[2];
        var permit = Oml.Protocol.Access.Permit.Create(w.UserKey.Address, World.ModelId, Oml.Protocol.Crypto.Address.Parse(w.Host.Address), f.Key, 9,
            long.MaxValue / 2, 10).Sign(w.Domain, w.UserKey);
        var receipt = Oml.Protocol.Access.Receipt.Create(w.HostKey.Address, World.ModelId, permit.Permit.Hash(w.Domain), f.Key, f.Response.Text, 5)
            .Sign(w.Domain, w.HostKey);
        var book = new Oml.Protocol.Access.UsageBook(w.Domain, World.ModelId, epoch);
        book.Add(receipt, permit);
        // the host checks a new permit before serving: after its exit it takes none
        Assert.Equal(PermitRefusal.Ok, await w.Host.CheckPermitAsync(permit, 0, 0));
        long releasable = (long)(await w.Host.AnnounceExitAsync(World.ModelId)).Single("ExitAnnounced").Int("releasableAt");
        Assert.Equal(PermitRefusal.HostExiting, await w.Host.CheckPermitAsync(permit, 0, 0));
        long epochEnds = releasable - 3600 - Day;
        // a claim revealed near the end of the exit epoch; the host commits that epoch's usage after it and rebuts
        await AdvanceToAsync(epochEnds - 100);
        long id = await w.ClaimAsync(w.Host.Address, [OmlChainClient.Evidence(subset.Reveal(2), f.Response.Text, receipt)]);
        await AdvanceToAsync(epochEnds + 5);
        Assert.Equal(epoch + 1, await w.EpochAsync());
        Assert.Equal("UsageAfterExit", await Reverted(() => w.Host.CommitUsageAsync(World.ModelId, epoch + 1, World.Digest("r"), 1, [])));
        await w.Host.CommitUsageAsync(book);   // the exit epoch's usage settles
        await w.Host.RebutAsync(id, [new RebuttalTuple { User = w.User.Address, Nonce = 9, Expiry = long.MaxValue / 2, Fee = 10, Epoch = epoch, ReceiptIndex = 0 }]);
        Assert.Equal(0, await w.User.OpenClaimsAgainstAsync(World.ModelId, w.Host.Address));
        var exit = await w.User.ExitOfAsync(World.ModelId, w.Host.Address);
        await AdvanceToAsync((long)exit.ReleasableAt + 1);
        Assert.Equal(1000, (await w.Host.ReleaseCollateralAsync(World.ModelId)).Single("CollateralReleased").Int("amount"));
        await AssertVaultBalancesAsync(w);
    }
}
