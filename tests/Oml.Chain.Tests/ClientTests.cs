using System.Numerics;
using Nethereum.ABI.FunctionEncoding;
using Nethereum.Contracts;
using Oml.Protocol.Chain;
using Oml.Protocol.Crypto;

namespace Oml.Chain.Tests;

public sealed class ClientTests(AnvilFixture fx)
{
    [Fact]
    public void Every_contract_fits_the_EVM_code_size_limit()
    {
        foreach (var name in new[] { "OmlToken", "OmlProtocol", "OmlClaims", "OmlGovernance" })
        {
            var a = ContractArtifact.Load(name);
            Assert.InRange(a.RuntimeSize, 1000, ContractArtifact.RuntimeSizeLimit);
        }
    }

    [Fact]
    public void The_committed_artifacts_were_compiled_from_the_sources_in_the_repository()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Oml.sln"))) dir = dir.Parent;
        Assert.NotNull(dir);
        var contracts = Path.Combine(dir.FullName, "contracts");
        using var info = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(contracts, "out", "build-info.json")));
        var recorded = info.RootElement.GetProperty("sources").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        var present = new[] { "src", "test" }.SelectMany(d => Directory.GetFiles(Path.Combine(contracts, d), "*.sol"))
            .Select(f => Path.GetRelativePath(contracts, f).Replace('\\', '/')).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(present, recorded.Keys.Order(StringComparer.Ordinal).ToList());
        foreach (var f in present)
            Assert.True(recorded[f] == Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(contracts, f)))),
                $"contracts/{f} changed since contracts/out was built: run contracts/build.sh and commit contracts/out");
    }

    [Fact]
    public async Task A_resent_transaction_is_applied_once_even_across_a_node_restart()
    {
        var dir = Directory.CreateTempSubdirectory("oml-anvil-");
        try
        {
            await using var node = await AnvilNode.StartAsync(chainId: 4242);
            var w = await World.CreateAsync(node);
            Assert.Equal(4242, w.Domain.ChainId);
            var data = w.User.Protocol.GetFunction("deposit").GetData(w.Host.Address, new BigInteger(250));
            var tx = await w.User.Sender.PrepareAsync(w.Deployment.Protocol, data, "deposit");
            var first = await w.User.Sender.SubmitAsync(tx);
            var second = await w.User.Sender.SubmitAsync(tx);   // e.g. after a time-out: same hash, same receipt
            Assert.Equal(first.TransactionHash, second.TransactionHash);
            Assert.Equal(250, await w.User.EscrowAsync(w.User.Address, w.Host.Address));

            // a signed transaction whose first submission was lost in a restart
            var lost = await w.User.Sender.PrepareAsync(w.Deployment.Protocol, data, "deposit again");
            var state = Path.Combine(dir.FullName, "state.json");
            await node.DumpStateAsync(state);
            node.Stop();
            Assert.True(node.HasExited);

            await using var restarted = await AnvilNode.StartAsync(chainId: 4242, loadState: state);
            var client = new OmlChainClient(restarted.RpcUrl, w.Deployment, World.KeyOf("user"));
            Assert.Equal(250, await client.EscrowAsync(w.User.Address, w.Host.Address));
            var r1 = await client.Sender.SubmitAsync(lost);
            var r2 = await client.Sender.SubmitAsync(lost);
            Assert.Equal(r1.TransactionHash, r2.TransactionHash);
            Assert.Equal(500, await client.EscrowAsync(w.User.Address, w.Host.Address));
            // and the client goes on with fresh nonces
            await client.DepositAsync(w.Host.Address, 1);
            Assert.Equal(501, await client.EscrowAsync(w.User.Address, w.Host.Address));
            var path = Path.Combine(dir.FullName, "deployment.json");
            w.Deployment.Save(path);
            Assert.Equal(w.Deployment, OmlDeployment.Load(path));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_refused_action_is_a_named_error_and_uses_no_nonce()
    {
        var w = await World.CreateAsync(fx.Node);
        var before = await w.User.Sender.Web3.Eth.Transactions.GetTransactionCount.SendRequestAsync(w.User.Address);
        var e = await Assert.ThrowsAsync<ChainRevertException>(() => w.User.WithdrawAsync());
        Assert.Equal("NothingToWithdraw", e.ErrorName);
        Assert.Equal("ZeroAmount", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.DepositAsync(w.Host.Address, 0))).ErrorName);
        Assert.Equal(before.Value, (await w.User.Sender.Web3.Eth.Transactions.GetTransactionCount.SendRequestAsync(w.User.Address)).Value);
        await w.User.DepositAsync(w.Host.Address, 5);
    }

    [Fact]
    public async Task Reentering_withdraw_from_a_token_callback_is_refused_and_pays_once()
    {
        var hook = ContractArtifact.Load("HookToken");
        var reenterer = ContractArtifact.Load("Reenterer");
        var deployer = new ChainSender(fx.Node.RpcUrl, AnvilNode.DevKey, fx.Node.ChainId);
        var tokenAddress = (await deployer.SendAsync(null, hook.Bytecode, "deploy HookToken")).ContractAddress;
        var d = await OmlChainClient.DeployAsync(fx.Node.RpcUrl, fx.Node.ChainId, AnvilNode.DevKey, deployer.AddressHex, existingToken: tokenAddress,
            registrationDelaySeconds: 0);
        var attacker = (await deployer.SendAsync(null, reenterer.Bytecode, "deploy Reenterer")).ContractAddress;
        var token = deployer.Web3.Eth.GetContract(hook.Abi, tokenAddress);
        var evil = deployer.Web3.Eth.GetContract(reenterer.Abi, attacker);
        var protocol = deployer.Web3.Eth.GetContract(ContractArtifact.OmlProtocol.Abi, d.Protocol);
        var claims = deployer.Web3.Eth.GetContract(ContractArtifact.OmlClaims.Abi, d.Claims);
        async Task Forward(Contract target, string fn, params object[] args) =>
            await deployer.SendAsync(attacker, evil.GetFunction("forward").GetData(target.Address, Convert.FromHexString(target.GetFunction(fn).GetData(args)[2..])), fn);

        await deployer.SendAsync(tokenAddress, token.GetFunction("mint").GetData(attacker, new BigInteger(1000)), "mint");
        await Forward(token, "approve", d.Protocol, new BigInteger(1000));
        await Forward(claims, "commitClaim", new byte[32], new BigInteger(100));   // the attacker's bond
        await fx.Node.IncreaseTimeAsync(3601);
        await deployer.SendAsync(d.Claims, claims.GetFunction("settle").GetData(BigInteger.Zero), "settle");  // bond credited back
        Assert.Equal(100, await protocol.GetFunction("credits").CallAsync<BigInteger>(attacker));

        var withdraw = protocol.GetFunction("withdraw").GetData();
        await deployer.SendAsync(attacker, evil.GetFunction("arm").GetData(d.Protocol, Convert.FromHexString(withdraw[2..])), "arm");
        await Forward(protocol, "withdraw");

        Assert.Equal(1, await evil.GetFunction("reentryAttempts").CallAsync<BigInteger>());
        Assert.False(await evil.GetFunction("lastReentrySucceeded").CallAsync<bool>());
        var error = await evil.GetFunction("lastReentryError").CallAsync<byte[]>();
        Assert.Equal("ReentrancyGuardReentrantCall", ChainErrors.Decode("0x" + Convert.ToHexStringLower(error), "reentry").ErrorName);
        Assert.Equal(1000, await token.GetFunction("balanceOf").CallAsync<BigInteger>(attacker));   // 900 + the 100 bond, once
        Assert.Equal(0, await protocol.GetFunction("credits").CallAsync<BigInteger>(attacker));
        Assert.Equal(0, await token.GetFunction("balanceOf").CallAsync<BigInteger>(d.Protocol));
    }

    [Fact]
    public async Task Parents_need_the_parent_owners_fresh_consent_and_ownership_moves_in_two_steps()
    {
        var w = await World.CreateAsync(fx.Node);
        await w.ParentOwner.RegisterModelAsync("base", World.Digest("base"), null, 0, 1, 0);
        await w.ParentOwner.RegisterModelAsync("base2", World.Digest("base2"), null, 0, 1, 0);
        await w.Owner.RegisterModelAsync(World.ModelId, World.Digest("w"), World.Digest("root"), 16, 10, 0);
        long deadline = long.MaxValue / 4;
        Assert.Equal("BadConsentSignature", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.DeclareParentAsync(World.ModelId, "base", 1000, deadline, null))).ErrorName);
        using var mallory = PrivateKey.Generate();
        var forged = OmlChainClient.SignParentConsent(w.Domain, mallory, World.ModelId, "base", 1000, w.Owner.Address, 0, deadline);
        Assert.Equal("BadConsentSignature", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.DeclareParentAsync(World.ModelId, "base", 1000, deadline, forged))).ErrorName);
        var otherChain = OmlChainClient.SignParentConsent(w.Domain with { ChainId = 1 }, w.ParentOwnerKey, World.ModelId, "base", 1000, w.Owner.Address, 0, deadline);
        Assert.Equal("BadConsentSignature", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.DeclareParentAsync(World.ModelId, "base", 1000, deadline, otherChain))).ErrorName);
        var consent = OmlChainClient.SignParentConsent(w.Domain, w.ParentOwnerKey, World.ModelId, "base", 1000, w.Owner.Address, 0, deadline);
        await w.Owner.DeclareParentAsync(World.ModelId, "base", 1000, deadline, consent);
        Assert.Equal("ParentExists", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.DeclareParentAsync(World.ModelId, "base", 1000, deadline, consent))).ErrorName);
        // the consent's nonce was used: it cannot be replayed for another edge
        Assert.Equal("BadConsentSignature", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.DeclareParentAsync(World.ModelId, "base2", 1000, deadline, consent))).ErrorName);
        // a cycle is refused (base would become a descendant of its own child); ParentOwner owns both ends here
        await w.Owner.TransferModelAsync(World.ModelId, w.ParentOwner.Address);
        Assert.Equal(w.Owner.Address, await w.User.ModelOwnerAsync(World.ModelId));
        Assert.Equal("NotPendingOwner", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.AcceptModelAsync(World.ModelId))).ErrorName);
        await w.ParentOwner.AcceptModelAsync(World.ModelId);
        Assert.Equal(w.ParentOwner.Address, await w.User.ModelOwnerAsync(World.ModelId));
        Assert.Equal("FamilyCycle", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.ParentOwner.DeclareParentAsync("base", World.ModelId, 500, deadline, null))).ErrorName);
        Assert.Equal("NotModelOwner", (await Assert.ThrowsAsync<ChainRevertException>(
            () => w.Owner.AddVersionAsync(World.ModelId, World.Digest("v2"), null, 0))).ErrorName);
    }
}
