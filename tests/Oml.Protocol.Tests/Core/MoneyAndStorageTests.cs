using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Tests.Core;

public class MoneyTests
{
    [Fact]
    public void TreasuryMintsAndBalancesMove()
    {
        using var n = new TestNet(registerModel: false);
        Assert.Equal(9 * 100_000, n.S.TotalSupply);
        n.Engine.Transfer(n.User, TestNet.A(n.User2), 2_500);
        Assert.Equal(97_500, n.Acc(n.User).Balance);
        Assert.Equal(102_500, n.Acc(n.User2).Balance);
        string host = TestNet.A(n.HostA);
        n.Engine.Deposit(n.User, host, 1_000);
        Assert.Equal(96_500, n.Acc(n.User).Balance);
        Assert.Equal(1_000, n.Acc(n.User).Escrowed);
        Assert.Equal(1_000, n.S.EscrowOf(TestNet.A(n.User), host).Amount);
        // A refund needs a request first, then RefundDelaySeconds.
        n.Rejected(ProtocolErrorCode.RefundPending, () => n.Engine.Refund(n.User, host));
        n.Engine.RequestRefund(n.User, host);
        n.Rejected(ProtocolErrorCode.RefundPending, () => n.Engine.Deposit(n.User, host, 1));
        n.Clock.Advance(n.S.Parameters.RefundDelaySeconds - 1);
        n.Rejected(ProtocolErrorCode.RefundPending, () => n.Engine.Refund(n.User, host));
        n.Clock.Advance(1);
        n.Engine.Refund(n.User, host);
        Assert.Equal(0, n.Acc(n.User).Escrowed);
        Assert.Equal(97_500, n.Acc(n.User).Balance);
        n.Engine.Deposit(n.User, host, 5);
    }

    [Fact]
    public void OnlyTheTreasuryMints()
    {
        using var n = new TestNet(registerModel: false);
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.Mint(n.User, TestNet.A(n.User), 5));
    }

    [Fact]
    public void OverspendingIsRejected()
    {
        using var n = new TestNet(registerModel: false);
        n.Rejected(ProtocolErrorCode.InsufficientFunds, () => n.Engine.Transfer(n.User, TestNet.A(n.User2), 100_001));
        n.Rejected(ProtocolErrorCode.InsufficientFunds, () => n.Engine.Deposit(n.User, TestNet.A(n.HostA), 100_001));
        n.Rejected(ProtocolErrorCode.InsufficientFunds, () => n.Engine.RequestRefund(n.User, TestNet.A(n.HostA)));
        n.Rejected(ProtocolErrorCode.InvalidAmount, () => n.Engine.Transfer(n.User, TestNet.A(n.User2), -1));
        // a zero transfer is an ordinary no-op, as ERC-20 requires of the token on a chain (CrossBackendPropertyTests)
        long before = n.S.AccountOf(TestNet.A(n.User)).Balance;
        n.Engine.Transfer(n.User, TestNet.A(n.User2), 0);
        Assert.Equal(before, n.S.AccountOf(TestNet.A(n.User)).Balance);
    }

    [Fact]
    public void ForgedSignatureIsRejected()
    {
        using var n = new TestNet(registerModel: false);
        // A transfer out of User's account, signed by the outsider's key.
        var forged = Actions.Transfer(TestNet.A(n.User), TestNet.A(n.Outsider), 50_000, n.Acc(n.User).Nonce).Sign(n.Engine.Domain, n.Outsider);
        n.Rejected(ProtocolErrorCode.BadSignature, () => n.Engine.Submit(forged));
        // Signed for another chain: recovers to some other address.
        var otherChain = Actions.Transfer(TestNet.A(n.User), TestNet.A(n.Outsider), 1, n.Acc(n.User).Nonce).Sign(new ProtocolDomain(1, Hex.ZeroAddress), n.User);
        n.Rejected(ProtocolErrorCode.BadSignature, () => n.Engine.Submit(otherChain));
    }

    /// <summary>
    /// Issue 11, hole 5: the domain was chain 31337 with the zero address for every embedded ledger, so a request
    /// signed for one ledger was accepted by another. The verifying contract is now derived from the ledger's id and
    /// genesis event.
    /// </summary>
    [Fact]
    public void A_request_signed_for_one_ledger_is_rejected_by_another()
    {
        using var a = new TestNet(registerModel: false);
        using var b = new TestNet(registerModel: false);
        Assert.Equal(a.Engine.Domain.ChainId, b.Engine.Domain.ChainId);
        Assert.NotEqual(a.Engine.Domain.VerifyingContract, b.Engine.Domain.VerifyingContract);
        Assert.NotEqual(Hex.ZeroAddress, a.Engine.Domain.VerifyingContract);
        Assert.Equal(ProtocolDomain.ForEmbeddedLedger(a.Engine.Domain.ChainId, a.Ledger.LedgerId, a.Ledger.Read(0).First().Hash), a.Engine.Domain);
        // The same key pays on both ledgers (same address, same nonce): a transfer signed for ledger a ...
        using var user = PrivateKey.Generate();
        a.Engine.Mint(a.Treasury, TestNet.A(user), 100);
        b.Engine.Mint(b.Treasury, TestNet.A(user), 100);
        var onA = Actions.Transfer(TestNet.A(user), TestNet.A(a.Outsider), 60, 0).Sign(a.Engine.Domain, user);
        // ... is not accepted by ledger b, nor as an event slipped into b's log.
        b.Rejected(ProtocolErrorCode.BadSignature, () => b.Engine.Submit(onA));
        b.Ledger.Append(b.Ledger.Height, [new Oml.Protocol.Ledger.NewEvent(onA.Type, onA.ToPayload(a.Engine.Domain))], b.Clock.GetUtcNow());
        Assert.Equal(ProtocolErrorCode.ReplayFailed, Assert.Throws<ProtocolException>(() => ProtocolEngine.Open(b.Ledger)).Code);
        a.Engine.Submit(onA);
        Assert.Equal(40, a.S.AccountOf(TestNet.A(user)).Balance);
    }

    [Fact]
    public void RequestNoncesPreventReplay()
    {
        using var n = new TestNet(registerModel: false);
        var t = Actions.Transfer(TestNet.A(n.User), TestNet.A(n.User2), 10, n.Acc(n.User).Nonce).Sign(n.Engine.Domain, n.User);
        n.Engine.Submit(t);
        n.Rejected(ProtocolErrorCode.BadNonce, () => n.Engine.Submit(t));
        Assert.Equal(99_990, n.Acc(n.User).Balance);
    }

    [Fact]
    public void WithdrawalPullsCreditsOnce()
    {
        using var n = new TestNet(registerModel: false);
        n.Rejected(ProtocolErrorCode.NothingToWithdraw, () => n.Engine.Withdraw(n.Prover));
        // An unrevealed claim's bond comes back to the prover as withdrawable credit.
        var ticket = new Oml.Protocol.Claims.ClaimTicket("x", TestNet.A(n.HostA), "{}", Hex.Of(new byte[32]));
        long id = n.Engine.CommitClaim(n.Prover, ticket, 150);
        n.Clock.Advance(n.S.Parameters.RevealWindowSeconds + 1);
        n.Engine.Settle(n.Outsider, id);
        Assert.Equal(150, n.Acc(n.Prover).Withdrawable);
        long before = n.Acc(n.Prover).Balance;
        n.Engine.Withdraw(n.Prover);
        Assert.Equal(before + 150, n.Acc(n.Prover).Balance);
        Assert.Equal(0, n.Acc(n.Prover).Withdrawable);
        n.Rejected(ProtocolErrorCode.NothingToWithdraw, () => n.Engine.Withdraw(n.Prover));
    }

    [Fact]
    public void GenesisOnlyOnce()
    {
        using var n = new TestNet(registerModel: false);
        Assert.Throws<ProtocolException>(() => ProtocolEngine.Initialize(n.Ledger, n.Treasury));
        var g = Actions.Genesis(TestNet.A(n.User), n.Engine.Domain.ChainId, ProtocolParameters.Default).Sign(n.Engine.Domain, n.User);
        n.Rejected(ProtocolErrorCode.AlreadyInitialized, () => n.Engine.Submit(g));
        using var empty = new Oml.Protocol.Ledger.InMemoryLedger();
        Assert.Equal(ProtocolErrorCode.NotInitialized, Assert.Throws<ProtocolException>(() => ProtocolEngine.Open(empty)).Code);
    }
}

public class StorageTests
{
    [Fact]
    public void RegisterAddVersionAndTransfer()
    {
        using var n = new TestNet();
        var m = n.S.Models[TestNet.Model];
        Assert.Equal(TestNet.A(n.Owner), m.Owner);
        Assert.Equal(10, m.PricePerQuery);
        n.Engine.AddVersion(n.Owner, TestNet.Model, "sha256:weights-v2", "fixed the tokenizer");
        Assert.Equal(["sha256:weights-v1", "sha256:weights-v2"], m.Versions.Select(v => v.WeightsDigest));
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.AddVersion(n.Outsider, TestNet.Model, "sha256:evil", ""));
        n.Rejected(ProtocolErrorCode.ModelExists, () => n.Engine.RegisterModel(n.Owner2, TestNet.Model, "sha256:x", "{}", "", 1, 0));
        n.Rejected(ProtocolErrorCode.NoPendingTransfer, () => n.Engine.AcceptModel(n.Owner2, TestNet.Model));
        n.Engine.TransferModel(n.Owner, TestNet.Model, TestNet.A(n.Owner2));
        Assert.Equal(TestNet.A(n.Owner), m.Owner);
        n.Rejected(ProtocolErrorCode.NoPendingTransfer, () => n.Engine.AcceptModel(n.Outsider, TestNet.Model));
        n.Engine.AcceptModel(n.Owner2, TestNet.Model);
        Assert.Equal(TestNet.A(n.Owner2), m.Owner);
        Assert.Null(m.PendingOwner);
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.AddVersion(n.Owner, TestNet.Model, "sha256:v3", ""));
    }

    [Fact]
    public void FamilyTreeNeedsConsentAndStaysAcyclic()
    {
        using var n = new TestNet();
        n.Engine.RegisterModel(n.Owner2, "child", "sha256:child", "{}", "", 5, 0);
        n.Engine.RegisterModel(n.Owner2, "grandchild", "sha256:gc", "{}", "", 5, 0);
        // Without the parent owner's co-signature.
        var alone = Actions.DeclareParent(TestNet.A(n.Owner2), "child", TestNet.Model, 3_000, n.Acc(n.Owner2).Nonce).Sign(n.Engine.Domain, n.Owner2);
        n.Rejected(ProtocolErrorCode.BadSignature, () => n.Engine.Submit(alone));
        // Co-signed by someone who is not the parent's owner.
        n.Rejected(ProtocolErrorCode.BadSignature, () => n.Engine.DeclareParent(n.Owner2, n.Outsider, "child", TestNet.Model, 3_000));
        n.Engine.DeclareParent(n.Owner2, n.Owner, "child", TestNet.Model, 3_000);
        n.Engine.DeclareParent(n.Owner2, n.Owner2, "grandchild", "child", 5_000);
        Assert.Equal([new ParentLink(TestNet.Model, 3_000)], n.S.Models["child"].Parents);
        // base -> grandchild would close the cycle base <- child <- grandchild.
        n.Rejected(ProtocolErrorCode.InvalidFamilyTree, () => n.Engine.DeclareParent(n.Owner, n.Owner2, TestNet.Model, "grandchild", 100));
        n.Rejected(ProtocolErrorCode.InvalidFamilyTree, () => n.Engine.DeclareParent(n.Owner, n.Owner, TestNet.Model, TestNet.Model, 100));
        n.Rejected(ProtocolErrorCode.InvalidFamilyTree, () => n.Engine.DeclareParent(n.Owner2, n.Owner, "child", TestNet.Model, 100));
        // Shares over 100%.
        n.Engine.RegisterModel(n.Outsider, "other", "sha256:o", "{}", "", 1, 0);
        n.Rejected(ProtocolErrorCode.InvalidFamilyTree, () => n.Engine.DeclareParent(n.Owner2, n.Outsider, "grandchild", "other", 5_001));
        n.Engine.DeclareParent(n.Owner2, n.Outsider, "grandchild", "other", 5_000);
        Assert.Equal(10_000, n.S.Models["grandchild"].Parents.Sum(p => p.ShareBps));
    }
}

public class RequestTests
{
    [Fact]
    public void RequestsSignedElsewhereTravelAsJson()
    {
        using var n = new TestNet();
        n.Engine.RegisterModel(n.Owner2, "child", "sha256:c", "{}", "", 1, 0);
        // The child's owner and the parent's owner sign separately, as two CLI invocations would.
        var unsigned = Actions.DeclareParent(TestNet.A(n.Owner2), "child", TestNet.Model, 1_500, n.Acc(n.Owner2).Nonce);
        var td = unsigned.TypedData(n.Engine.Domain);
        var sigChild = Oml.Protocol.Crypto.Eip712.Sign(td, n.Owner2);
        var sigParent = Oml.Protocol.Crypto.Eip712.Sign(td, n.Owner);
        var json = new SignedAction(unsigned.Type, unsigned.Message, [sigChild, sigParent], new Dictionary<string, string>()).ToJson(n.Engine.Domain);
        Assert.StartsWith("""{"type":"DeclareParent","domain":{"name":"OML","version":"1","chainId":"31337",""", json);
        var (parsed, domain) = SignedAction.FromJson(json);
        Assert.Equal(n.Engine.Domain, domain);
        n.Engine.Submit(parsed);
        Assert.Equal(1_500, n.S.Models["child"].Parents.Single().ShareBps);
        // The stored payload is exactly that JSON.
        Assert.Equal(json, System.Text.Encoding.UTF8.GetString(n.Ledger.Read(n.Ledger.Height - 1).Single().Payload));
        Assert.Equal(ProtocolErrorCode.InvalidRequest, Assert.Throws<ProtocolException>(() => SignedAction.FromJson("{\"type\":\"Nope\"}")).Code);
        // Malformed fields are rejected before anything else.
        var bad = new SignedAction(Schemas.Deposit, new System.Text.Json.Nodes.JsonObject { ["actor"] = TestNet.A(n.User), ["amount"] = "-5", ["nonce"] = "0" },
            [sigChild], new Dictionary<string, string>());
        n.Rejected(ProtocolErrorCode.InvalidRequest, () => n.Engine.Submit(bad));
    }
}

public class MalformedRequestTests
{
    [Fact]
    public void OverflowAndMalformedAttachmentsAreRejectedCleanly()
    {
        using var n = new TestNet();
        n.Engine.Mint(n.Treasury, TestNet.A(n.User), long.MaxValue - n.S.TotalSupply);
        n.Rejected(ProtocolErrorCode.ArithmeticOverflow, () => n.Engine.Mint(n.Treasury, TestNet.A(n.User), 1));

        var ticket = new Oml.Protocol.Claims.ClaimTicket(TestNet.Model, TestNet.A(n.HostA), """{"modelId":"base","host":"0xnothex","items":[]}""", Hex.Of(new byte[32]));
        long id = n.Engine.CommitClaim(n.Prover, ticket, 100);
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.UnknownLicence, () => n.Engine.RevealClaim(n.Prover, id, ticket));
        n.License(n.HostA, TestNet.NewOmlizer(Pools.Make(12)));
        n.Rejected(ProtocolErrorCode.InvalidRequest, () => n.Engine.RevealClaim(n.Prover, id, ticket));
        var garbage = ticket with { EvidenceJson = """{"modelId":"base","host":"0x","items":[{"fingerprint":"{]","answer":1}]}""" };
        long id2 = n.Engine.CommitClaim(n.Prover, garbage, 100);
        n.Clock.Advance(1);
        n.Rejected(ProtocolErrorCode.InvalidProof, () => n.Engine.RevealClaim(n.Prover, id2, garbage));
        // An attachment that does not hash to the signed field.
        var unsigned = Actions.RevealClaim(TestNet.A(n.Prover), id, TestNet.Model, TestNet.A(n.HostA), ticket.EvidenceJson, ticket.Salt, n.Acc(n.Prover).Nonce);
        var swapped = unsigned.Sign(n.Engine.Domain, [n.Prover], new Dictionary<string, string> { ["evidence"] = garbage.EvidenceJson });
        n.Rejected(ProtocolErrorCode.InvalidRequest, () => n.Engine.Submit(swapped));
    }
}
