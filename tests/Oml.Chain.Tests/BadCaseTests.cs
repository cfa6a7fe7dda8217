using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tracing;

namespace Oml.Chain.Tests;

/// <summary>
/// The bad cases of issue 11, each written once against <see cref="IProtocolBackend"/> and run on both backends: the
/// embedded ledger (in memory, a hand-moved clock) and the contracts on the test run's anvil through
/// <see cref="ChainBackend"/>. Each names the contract line and the ledger rule it exercises; removing either makes
/// the test fail on that backend (the attack would then succeed or the refusal would carry another code).
/// </summary>
public sealed class BadCaseTests(AnvilFixture fx)
{
    private const string Model = ConformanceScenario.Child;

    /// <summary>One backend with a model, two licensed hosts with their copies, and a user's escrow of 500 with host A.</summary>
    private sealed class Net(IProtocolBackend b, Func<long, Task> advance, Parties p) : IDisposable
    {
        public IProtocolBackend B { get; } = b;
        public Parties P { get; } = p;
        public Dictionary<string, HostCopy> Copies { get; } = new(StringComparer.Ordinal);
        public HostCopy CopyA => Copies[A(P.HostA)];
        public HostCopy CopyB => Copies[A(P.HostB)];

        public async Task AdvanceAsync(long seconds)
        {
            await advance(seconds);
            await B.RefreshAsync();
        }

        public void Dispose() => B.Dispose();
    }

    private static string A(PrivateKey k) => Hex.Of(k.Address);

    private async Task<Net> OpenAsync(string backend, Parties p, ProtocolParameters? parameters = null)
    {
        parameters ??= ProtocolParameters.Default;
        IProtocolBackend b;
        Func<long, Task> advance;
        if (backend == "ledger")
        {
            var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
            b = new LedgerBackend(ProtocolEngine.Initialize(new InMemoryLedger(), p.Treasury, parameters, clock: clock), "memory");
            advance = s => { clock.Now = clock.Now.AddSeconds(s); return Task.CompletedTask; };
        }
        else
        {
            b = await ChainBackend.OpenAsync(fx.Node.RpcUrl, await DeployAsync(p, parameters));
            advance = s => fx.Node.IncreaseTimeAsync(s);
        }
        var n = new Net(b, advance, p);
        foreach (var k in p.All.Skip(1)) await b.MintAsync(p.Treasury, A(k), 100_000);
        await b.RegisterModelAsync(p.Owner, Model, "sha256:" + new string('c', 64), """{"arch":"llama"}""", "OML-1.0", 10, 1_500);
        var omlizer = new Omlizer(ConformanceScenario.Pool(), new RandomAllocation("bad cases allocation"u8, 24, 8));
        foreach (var host in new[] { p.HostA, p.HostB })
        {
            await b.ApplyLicenseAsync(host, Model, 2_000, "https://host.example/v1");
            var copy = await omlizer.BuildCopyAsync(b.State, Model, A(host), (subset, _) =>
                Task.FromResult("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"copy of {A(host)}")))));
            await b.DeliverCopyAsync(p.Owner, copy);
            await b.AcknowledgeCopyAsync(host, Model, copy.CopyDigest);
            n.Copies[A(host)] = copy;
        }
        await b.DepositAsync(p.User1, A(p.HostA), 500);
        return n;
    }

    private async Task<OmlDeployment> DeployAsync(Parties p, ProtocolParameters parameters)
    {
        BigInteger[] values = [.. ProtocolParameters.Names.Select(name => BigInteger.Parse(parameters.Get(name)))];
        var d = await OmlChainClient.DeployAsync(fx.Node.RpcUrl, fx.Node.ChainId, AnvilNode.DevKey, A(p.Treasury), values);
        foreach (var k in p.All) await fx.Node.FundAsync(A(k), BigInteger.Pow(10, 21));
        return d;
    }

    /// <summary>Another deployment's domain: a second contract deployment on the same node, or a second ledger.</summary>
    private async Task<ProtocolDomain> OtherDeploymentAsync(string backend, Parties p) => backend == "ledger"
        ? ProtocolEngine.Initialize(new InMemoryLedger(), p.Treasury, ProtocolParameters.Default).Domain
        : (await DeployAsync(p, ProtocolParameters.Default)).Domain;

    /// <summary>Host <paramref name="host"/> answers fingerprint <paramref name="index"/> of <paramref name="copy"/> with no permit; the ticket claims it against <paramref name="claimed"/>.</summary>
    private static ClaimTicket Unpermitted(IProtocolBackend b, PrivateKey host, HostCopy copy, int index, string? claimed = null)
    {
        var f = copy.Subset.Fingerprints[index];
        var receipt = Receipt.Create(host.Address, Model, null, f.Key, f.Response.Text, b.Now).Sign(b.Domain, host);
        return ClaimTicket.Create(new ClaimEvidence(Model, claimed ?? A(host), [new ClaimEvidenceItem(copy.Subset.Reveal(index), f.Response.Text, receipt)]));
    }

    private static async Task<ProtocolErrorCode> Refused(Func<Task> action) => (await Assert.ThrowsAsync<ProtocolException>(action)).Code;

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Replayed_forged_wrong_chain_and_other_deployment_permits_are_skipped_and_pay_nothing(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        var other = await OtherDeploymentAsync(backend, p);
        Assert.NotEqual(b.Domain.VerifyingContract, other.VerifyingContract);
        using var mallory = PrivateKey.Generate();
        var book = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        // Each permit is the same message for this deployment; only who signed it, or for which domain, differs.
        SignedPermit Add(UsageBook into, long nonce, PrivateKey signer, ProtocolDomain domain)
        {
            var message = Permit.Create(p.User1.Address, Model, p.HostA.Address, $"q{nonce}", nonce, ConformanceScenario.Expiry, 10);
            var permit = new SignedPermit(message, Eip712.Sign(message.TypedData(domain), signer));
            into.Add(Receipt.Create(p.HostA.Address, Model, permit.Permit.Hash(b.Domain), $"q{nonce}", "a", b.Now).Sign(b.Domain, p.HostA), permit);
            return permit;
        }
        var good = Add(book, 1, p.User1, b.Domain);
        Add(book, 2, mallory, b.Domain);                                    // forged: not the user's signature
        Add(book, 3, p.User1, b.Domain with { ChainId = b.Domain.ChainId + 1 });   // wrong chain id
        Add(book, 4, p.User1, other);                                       // signed for another deployment's domain
        // Chain: OmlProtocol.sol:575 (_check: ECDSA.tryRecover over this deployment's EIP-712 digest, signer == p.user);
        // ledger: Rules.Access.cs:46 (sp.Verify(c.Domain)). Without them the three would settle and pay 30 more.
        await b.CommitUsageAsync(p.HostA, book);
        var first = b.State.Usage.Values.Single(u => u.Host == A(p.HostA));
        Assert.Equal(1, first.PermitCount);
        Assert.Equal(10, first.FeesSettled);
        Assert.Equal([ProtocolErrorCode.BadSignature, ProtocolErrorCode.BadSignature, ProtocolErrorCode.BadSignature],
            first.Skipped.Select(s => s.Reason).ToArray());

        // the good permit again, in the next epoch's book. Chain: OmlProtocol.sol:577 (permitNonceUsed);
        // ledger: Rules.Access.cs:49 (IsPermitNonceUsed). Without them the user would pay twice for one question.
        await n.AdvanceAsync(b.State.Parameters.EpochSeconds);
        var next = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        next.Add(Receipt.Create(p.HostA.Address, Model, good.Permit.Hash(b.Domain), "q1", "a", b.Now).Sign(b.Domain, p.HostA), good);
        await b.CommitUsageAsync(p.HostA, next);
        var second = b.State.Usage.Values.Single(u => u.Host == A(p.HostA) && u.Epoch == next.Epoch);
        Assert.Equal(0, second.PermitCount);
        Assert.Equal(ProtocolErrorCode.PermitReplayed, second.Skipped.Single().Reason);
        Assert.Equal(490, b.State.EscrowOf(A(p.User1), A(p.HostA)).Amount);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_slash_is_capped_at_the_collateral_and_a_second_withdrawal_pays_nothing(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p, ProtocolParameters.Default with { SlashFractionBps = 7_000 });
        var b = n.B;
        var t0 = Unpermitted(b, p.HostB, n.CopyB, 0);
        var t1 = Unpermitted(b, p.HostB, n.CopyB, 1);
        long c0 = (await b.CommitClaimAsync(p.Prover, t0, 100)).Id!.Value;
        long c1 = (await b.CommitClaimAsync(p.Prover, t1, 100)).Id!.Value;
        await n.AdvanceAsync(2);
        await b.RevealClaimAsync(p.Prover, c0, t0);
        await b.RevealClaimAsync(p.Prover, c1, t1);
        await n.AdvanceAsync(b.State.Parameters.RebutWindowSeconds + 1);
        await b.SettleAsync(p.User1, c0);
        await b.SettleAsync(p.User1, c1);
        // 70 % of the 2,000 posted twice would be 2,800; the second slash takes only the 600 still locked.
        // Chain: OmlProtocol.sol:666-669 (slashed capped at collateralLocked); ledger: Rules.Claims.cs:154.
        var claims = b.State.Claims;
        Assert.Equal((1_400, false), (claims[(int)c0].Slashed, claims[(int)c0].SlashCapped));
        Assert.Equal((600, true), (claims[(int)c1].Slashed, claims[(int)c1].SlashCapped));
        Assert.Equal(0, b.State.LicenceOf(Model, A(p.HostB))!.CollateralLocked);

        // the prover's reward and bonds are credits; they are paid once. Chain: OmlProtocol.sol:639-640 (zero
        // credits, then transfer; NothingToWithdraw); ledger: Rules.cs:239.
        long credits = b.State.AccountOf(A(p.Prover)).Withdrawable;
        Assert.True(credits > 200, $"credits {credits}");
        long balance = b.State.AccountOf(A(p.Prover)).Balance;
        await b.WithdrawAsync(p.Prover);
        Assert.Equal(balance + credits, b.State.AccountOf(A(p.Prover)).Balance);
        Assert.Equal(ProtocolErrorCode.NothingToWithdraw, await Refused(() => b.WithdrawAsync(p.Prover)));
        Assert.Equal(balance + credits, b.State.AccountOf(A(p.Prover)).Balance);
        Assert.Equal(0, b.State.AccountOf(A(p.Prover)).Withdrawable);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_reveal_with_another_copys_proof_and_a_claim_on_an_unlicensed_host_are_refused(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // A fingerprint of A's copy that B's copy does not hold, with A's proof, claimed against B (B answered it).
        // Chain: OmlClaims.sol:186 (OmlMerkle.verify against B's committed root); ledger: Rules.Claims.cs:64.
        int onlyA = n.CopyA.Subset.Fingerprints.Select((f, i) => (f, i)).First(x => n.CopyB.Subset.Fingerprints.All(y => y.Key != x.f.Key)).i;
        var badProof = Unpermitted(b, p.HostB, n.CopyA, onlyA);
        // User2 holds no licence: it answers a fingerprint of A's copy and is claimed against.
        // Chain: OmlClaims.sol:176 (UnknownLicence); ledger: Rules.Claims.cs:48.
        var unlicensed = Unpermitted(b, p.User2, n.CopyA, 0);
        long c0 = (await b.CommitClaimAsync(p.Prover, badProof, 100)).Id!.Value;
        long c1 = (await b.CommitClaimAsync(p.Prover, unlicensed, 100)).Id!.Value;
        await n.AdvanceAsync(2);
        Assert.Equal(ProtocolErrorCode.InvalidProof, await Refused(() => b.RevealClaimAsync(p.Prover, c0, badProof)));
        Assert.Equal(ProtocolErrorCode.UnknownLicence, await Refused(() => b.RevealClaimAsync(p.Prover, c1, unlicensed)));
        Assert.All(b.State.Claims, c => Assert.Equal(ClaimStatus.Committed, c.Status));
        Assert.Equal(2_000, b.State.LicenceOf(Model, A(p.HostB))!.CollateralLocked);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task A_rebuttal_after_the_window_is_refused_and_the_claim_slashes(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        // Host A answers a fingerprint key under a funded permit and settles it, but rebuts only after the window.
        var f = n.CopyA.Subset.Fingerprints[2];
        var permit = Permit.Create(p.User1.Address, Model, p.HostA.Address, f.Key, 7, ConformanceScenario.Expiry, 10).Sign(b.Domain, p.User1);
        var receipt = Receipt.Create(p.HostA.Address, Model, permit.Permit.Hash(b.Domain), f.Key, f.Response.Text, b.Now).Sign(b.Domain, p.HostA);
        var book = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
        book.Add(receipt, permit);
        var ticket = ClaimTicket.Create(new ClaimEvidence(Model, A(p.HostA), [new ClaimEvidenceItem(n.CopyA.Subset.Reveal(2), f.Response.Text, receipt)]));
        long id = (await b.CommitClaimAsync(p.Prover, ticket, 100)).Id!.Value;
        await n.AdvanceAsync(2);
        await b.RevealClaimAsync(p.Prover, id, ticket);
        await b.CommitUsageAsync(p.HostA, book);
        await n.AdvanceAsync(b.State.Parameters.RebutWindowSeconds + 1);
        // Chain: OmlClaims.sol:218 (RebutWindowClosed); ledger: Rules.Claims.cs:102.
        var rebuttal = new Rebuttal([new RebuttalItem(permit, book.Epoch, book.ProofFor(receipt))]);
        Assert.Equal(ProtocolErrorCode.WindowClosed, await Refused(() => b.RebutAsync(p.HostA, id, rebuttal)));
        await b.SettleAsync(p.User1, id);
        Assert.Equal(ClaimStatus.Slashed, b.State.Claims[(int)id].Status);
        Assert.Equal(1_000, b.State.LicenceOf(Model, A(p.HostA))!.CollateralLocked);
    }

    [Theory]
    [InlineData("ledger")]
    [InlineData("chain")]
    public async Task Accounts_without_stake_can_neither_propose_nor_vote(string backend)
    {
        using var p = new Parties();
        using var n = await OpenAsync(backend, p);
        var b = n.B;
        var capture = new Dictionary<string, string> { ["SlashFractionBps"] = "0" };
        // User1 owns no stake (it has balance and escrow, and could register models). Chain: OmlGovernance.sol:119
        // (BelowProposalThreshold); ledger: Rules.Claims.cs:190.
        Assert.Equal(ProtocolErrorCode.Unauthorized, await Refused(() => b.ProposeAsync(p.User1, capture, "no more slashing")));
        await b.StakeAsync(p.Owner, 5_000);
        await n.AdvanceAsync(1);
        long id = (await b.ProposeAsync(p.Owner, new Dictionary<string, string> { ["MinBond"] = "150" }, "bond")).Id!.Value;
        // Stake bought after the proposal does not count. Chain: OmlGovernance.sol:144 (NoVotingPower: weight at the
        // proposal's snapshot); ledger: Rules.Claims.cs:212.
        await b.StakeAsync(p.User1, 50_000);
        Assert.Equal(ProtocolErrorCode.NotEligibleToVote, await Refused(() => b.VoteAsync(p.User1, id, false)));
        await b.VoteAsync(p.Owner, id, true);
        Assert.Equal(5_000, b.State.Proposals.Single().Yes);
        Assert.Equal(0, b.State.Proposals.Single().No);
    }
}
