using System.Numerics;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Chain.Tests;

public sealed class AccessTests(AnvilFixture fx)
{
    private const byte BadSignature = 1, Expired = 2, Replayed = 3, FeeTooLow = 4, Unfunded = 5;

    private static Dictionary<string, byte> Skips(ChainResult r) =>
        r.All("PermitSkipped").ToDictionary(e => e.Hex32("permitHash"), e => (byte)e.Int("reason"));

    [Fact]
    public async Task Permits_signed_by_Oml_Protocol_Crypto_hash_and_verify_identically_on_chain()
    {
        var w = await World.CreateAsync(fx.Node);
        var p = w.Permit(w.UserKey, w.Host.Address, 7, 12);
        Assert.Equal(p.Permit.Hash(w.Domain), await w.User.PermitHashOnChainAsync(p.Permit));
        Assert.Equal(fx.Node.ChainId, w.Domain.ChainId);
        Assert.Equal(w.Deployment.Protocol, w.Domain.VerifyingContract);

        await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 100);
        var r = await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("root"), 1, [p]);
        var settled = r.Single("PermitSettled");
        Assert.Equal(p.Permit.Hash(w.Domain), settled.Hex32("permitHash"));
        Assert.Equal(w.Host.Address, await w.User.SettledByAsync(p.Permit.Hash(w.Domain)));
        Assert.Equal(88, await w.User.EscrowAsync(w.User.Address, w.Host.Address));

        // the local view can be rebuilt from the deployment's events, in order
        var events = await w.User.EventsAsync(w.Deployment.DeployedAtBlock);
        var names = events.Where(e => e.Contract == "OmlProtocol").Select(e => e.Name).ToList();
        Assert.Equal(["Initialized", "RegistrationCommitted", "ModelRegistered", "LicenceApplied", "CopyDelivered", "CopyAcknowledged", "Deposited", "PermitSettled", "UsageCommitted"], names);
        Assert.Equal(World.ModelId, (string)events.Single(e => e.Name == "ModelRegistered").Args["modelId"]!);
        Assert.Equal(6, events.Count(e => e.Name == "Approval"));
    }

    [Fact]
    public async Task Fee_split_pays_host_parent_and_owner_and_withdrawal_is_pulled_once()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.ParentOwner.RegisterModelAsync("base", World.Digest("base"), null, 0, 1, 0);
        await w.LicensedCopyAsync(w.Host);
        long nonce = (long)await w.Owner.ConsentNonceAsync(w.ParentOwner.Address);
        long deadline = long.MaxValue / 4;
        var consent = OmlChainClient.SignParentConsent(w.Domain, w.ParentOwnerKey, World.ModelId, "base", 2500, w.Owner.Address, nonce, deadline);
        await w.Owner.DeclareParentAsync(World.ModelId, "base", 2500, deadline, consent);

        await w.User.DepositAsync(w.Host.Address, 1000);
        var permits = Enumerable.Range(0, 3).Select(i => w.Permit(w.UserKey, w.Host.Address, i, 101)).ToList();
        var r = await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("root"), 3, permits);
        var u = r.Single("UsageCommitted");
        Assert.Equal(3, u.Int("settled"));
        Assert.Equal(303, u.Int("total"));
        // per permit: host 101*0.2 = 20; owner revenue 81: parent 81*0.25 = 20, owner 61.
        Assert.Equal(60, await w.Host.CreditsAsync(w.Host.Address));
        Assert.Equal(60, await w.Host.CreditsAsync(w.ParentOwner.Address));
        Assert.Equal(183, await w.Host.CreditsAsync(w.Owner.Address));

        var before = await w.Host.BalanceOfAsync(w.Host.Address);
        var paid = await w.Host.WithdrawAsync();
        Assert.Equal(60, paid.Single("Withdrawn").Int("amount"));
        Assert.Equal(before + 60, await w.Host.BalanceOfAsync(w.Host.Address));
        var again = await Assert.ThrowsAsync<ChainRevertException>(() => w.Host.WithdrawAsync());
        Assert.Equal("NothingToWithdraw", again.ErrorName);
        Assert.Equal(before + 60, await w.Host.BalanceOfAsync(w.Host.Address));
    }

    [Fact]
    public async Task A_replayed_permit_is_skipped_in_the_same_batch_and_in_a_later_epoch()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 1000);
        var p = w.Permit(w.UserKey, w.Host.Address, 1, 10);
        var r = await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("r0"), 2, [p, p]);
        Assert.Single(r.All("PermitSettled"));
        Assert.Equal(Replayed, Skips(r)[p.Permit.Hash(w.Domain)]);

        await fx.Node.IncreaseTimeAsync(86_400);
        var r2 = await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("r1"), 1, [p]);
        Assert.Empty(r2.All("PermitSettled"));
        Assert.Equal(Replayed, Skips(r2)[p.Permit.Hash(w.Domain)]);
        Assert.Equal(990, await w.User.EscrowAsync(w.User.Address, w.Host.Address));
    }

    [Fact]
    public async Task Forged_wrong_chain_and_wrong_contract_signatures_are_skipped_and_the_rest_settles()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 1000);
        using var mallory = PrivateKey.Generate();
        var forged = new SignedPermit(Permit.Create(w.UserKey.Address, World.ModelId, Address.Parse(w.Host.Address), "q", 1, long.MaxValue / 2, 10),
            Eip712.Sign(Permit.Create(w.UserKey.Address, World.ModelId, Address.Parse(w.Host.Address), "q", 1, long.MaxValue / 2, 10).TypedData(w.Domain), mallory));
        var wrongChain = w.Permit(w.UserKey, w.Host.Address, 2, 10, domain: w.Domain with { ChainId = 1 });
        var wrongContract = w.Permit(w.UserKey, w.Host.Address, 3, 10, domain: w.Domain with { VerifyingContract = w.Deployment.Claims });
        var embedded = w.Permit(w.UserKey, w.Host.Address, 4, 10, domain: ProtocolDomain.Default);
        var good = w.Permit(w.UserKey, w.Host.Address, 5, 10);
        var r = await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("r"), 5, [forged, wrongChain, wrongContract, embedded, good]);
        var skips = r.All("PermitSkipped").Select(e => (byte)e.Int("reason")).ToList();
        Assert.Equal([BadSignature, BadSignature, BadSignature, BadSignature], skips);
        Assert.Equal(good.Permit.Hash(w.Domain), r.Single("PermitSettled").Hex32("permitHash"));
        Assert.Equal(990, await w.User.EscrowAsync(w.User.Address, w.Host.Address));
    }

    [Fact]
    public async Task Unfunded_over_escrow_cheap_and_expired_permits_are_skipped_not_the_whole_batch()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.LicensedCopyAsync(w.Host);
        await w.LicensedCopyAsync(w.Host2, register: false);
        await w.User.DepositAsync(w.Host.Address, 15);
        await w.User.DepositAsync(w.Host2.Address, 500);  // escrow with another host never pays this host's permits
        using var stranger = PrivateKey.Generate();
        var first = w.Permit(w.UserKey, w.Host.Address, 1, 10);
        var over = w.Permit(w.UserKey, w.Host.Address, 2, 10);           // 10 + 10 > 15
        var cheap = w.Permit(w.UserKey, w.Host.Address, 3, World.ModelPrice - 1);
        var unfunded = w.Permit(stranger, w.Host.Address, 1, 10);        // never deposited
        var now = (long)(await w.Owner.Sender.Web3.Eth.Blocks.GetBlockWithTransactionsHashesByNumber
            .SendRequestAsync(Nethereum.RPC.Eth.DTOs.BlockParameter.CreateLatest())).Timestamp.Value;
        var expired = w.Permit(w.UserKey, w.Host.Address, 4, 10, expiry: now - 1);
        var r = await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("r"), 5, [first, over, cheap, unfunded, expired]);
        var skips = Skips(r);
        Assert.Equal(Unfunded, skips[over.Permit.Hash(w.Domain)]);
        Assert.Equal(FeeTooLow, skips[cheap.Permit.Hash(w.Domain)]);
        Assert.Equal(Unfunded, skips[unfunded.Permit.Hash(w.Domain)]);
        Assert.Equal(Expired, skips[expired.Permit.Hash(w.Domain)]);
        Assert.Equal(first.Permit.Hash(w.Domain), r.Single("PermitSettled").Hex32("permitHash"));
        Assert.Equal(5, await w.User.EscrowAsync(w.User.Address, w.Host.Address));
        Assert.Equal(500, await w.User.EscrowAsync(w.User.Address, w.Host2.Address));
        // the receipts root is committed either way
        var u = r.Single("UsageCommitted");
        Assert.Equal(1, u.Int("settled"));
        Assert.Equal(4, u.Int("skipped"));
    }

    [Fact]
    public async Task Usage_is_committed_once_per_epoch_and_only_by_an_acknowledged_licensee()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.LicensedCopyAsync(w.Host);
        long epoch = await w.EpochAsync();
        await w.Host.CommitUsageAsync(World.ModelId, epoch, World.Digest("r"), 1, []);
        Assert.Equal("UsageAlreadyCommitted", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Host.CommitUsageAsync(World.ModelId, epoch, World.Digest("r2"), 1, []))).ErrorName);
        Assert.Equal("EpochNotStarted", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Host.CommitUsageAsync(World.ModelId, epoch + 1, World.Digest("r2"), 1, []))).ErrorName);
        Assert.Equal("UnknownLicence", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Host2.CommitUsageAsync(World.ModelId, epoch, World.Digest("r2"), 1, []))).ErrorName);
        await w.Host2.ApplyLicenseAsync(World.ModelId, 1000, "x");
        Assert.Equal("CopyNotAcknowledged", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Host2.CommitUsageAsync(World.ModelId, epoch, World.Digest("r2"), 1, []))).ErrorName);
        Assert.Equal("CollateralTooLow", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.User.ApplyLicenseAsync(World.ModelId, 999, "x"))).ErrorName);
    }

    [Fact]
    public async Task A_host_checks_a_permit_against_the_chain_before_serving_it()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 25);
        long settleBy = 2_000_000_000;
        var ok = w.Permit(w.UserKey, w.Host.Address, 1, 10);
        Assert.Equal(PermitRefusal.Ok, await w.Host.CheckPermitAsync(ok, 0, settleBy));
        Assert.Equal(PermitRefusal.Underfunded, await w.Host.CheckPermitAsync(ok, 20, settleBy));   // 10 + 20 outstanding > 25
        Assert.Equal(PermitRefusal.WrongHost, await w.Host2.CheckPermitAsync(ok, 0, settleBy));
        Assert.Equal(PermitRefusal.FeeTooLow, await w.Host.CheckPermitAsync(w.Permit(w.UserKey, w.Host.Address, 2, 0), 0, settleBy));
        Assert.Equal(PermitRefusal.ExpiresTooSoon, await w.Host.CheckPermitAsync(w.Permit(w.UserKey, w.Host.Address, 3, 10, expiry: settleBy - 1), 0, settleBy));
        Assert.Equal(PermitRefusal.BadSignature, await w.Host.CheckPermitAsync(
            w.Permit(w.UserKey, w.Host.Address, 4, 10, domain: w.Domain with { ChainId = 1 }), 0, settleBy));
        Assert.Equal(PermitRefusal.UnknownModel, await w.Host.CheckPermitAsync(w.Permit(w.UserKey, w.Host.Address, 5, 10, modelId: "nope"), 0, settleBy));
        await w.Host.CommitUsageAsync(World.ModelId, await w.EpochAsync(), World.Digest("r"), 1, [ok]);
        Assert.Equal(PermitRefusal.NonceUsed, await w.Host.CheckPermitAsync(ok, 0, settleBy));
        Assert.Equal(PermitRefusal.NonceUsed, await w.Host.CheckPermitAsync(w.Permit(w.UserKey, w.Host.Address, 1, 10, query: "another"), 0, settleBy));
        // the nonce is spent with this host for this model only: another host may still take it
        await w.User.DepositAsync(w.Host2.Address, 25);
        Assert.Equal(PermitRefusal.Ok, await w.Host2.CheckPermitAsync(w.Permit(w.UserKey, w.Host2.Address, 1, 10), 0, settleBy));
        await w.User.RequestRefundAsync(w.Host.Address);
        Assert.Equal(PermitRefusal.RefundPending, await w.Host.CheckPermitAsync(w.Permit(w.UserKey, w.Host.Address, 6, 10), 0, settleBy));
    }

    [Fact]
    public async Task Escrow_refund_waits_for_the_delay_after_the_request()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.User.DepositAsync(w.Host.Address, 300);
        Assert.Equal("NoRefundRequested", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.RefundAsync(w.Host.Address))).ErrorName);
        await w.User.RequestRefundAsync(w.Host.Address);
        Assert.Equal("RefundNotYetDue", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.RefundAsync(w.Host.Address))).ErrorName);
        await fx.Node.IncreaseTimeAsync(2 * 86_400);
        var before = await w.User.BalanceOfAsync(w.User.Address);
        var r = await w.User.RefundAsync(w.Host.Address);
        Assert.Equal(300, r.Single("Refunded").Int("amount"));
        Assert.Equal(before + 300, await w.User.BalanceOfAsync(w.User.Address));
        Assert.Equal(0, await w.User.EscrowAsync(w.User.Address, w.Host.Address));
    }
}
