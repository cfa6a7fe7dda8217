using System.Numerics;
using Oml.Protocol.Chain;
using Oml.Protocol.Crypto;

namespace Oml.Chain.Tests;

public sealed class ClaimTests(AnvilFixture fx)
{
    private const long Day = 86_400;

    [Fact]
    public async Task A_host_answering_without_a_permit_is_slashed_and_the_prover_paid()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        long id = await w.ClaimAsync(w.Host.Address, [w.Evidence(subset, 1), w.Evidence(subset, 3)]);
        Assert.Equal("NotYetSettleable", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.SettleAsync(id))).ErrorName);
        await fx.Node.IncreaseTimeAsync(Day + 1);
        var r = await w.User.SettleAsync(id);
        // collateral 1000 x 50% = 500; prover 30% = 150 + its bond 100; owner 350.
        Assert.Equal(500, r.Single("Slashed").Int("slashed"));
        Assert.Equal(250, await w.User.CreditsAsync(w.Prover.Address));
        Assert.Equal(350, await w.User.CreditsAsync(w.Owner.Address));
        Assert.Equal(0, await w.User.BondsHeldAsync());
        Assert.Equal("WrongClaimStatus", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.SettleAsync(id))).ErrorName);
        // a receipt backs one claim: the same evidence cannot be claimed again
        var again = await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address, [w.Evidence(subset, 1)]));
        Assert.Equal("ReceiptAlreadyClaimed", again.ErrorName);
    }

    [Fact]
    public async Task Slashing_is_capped_at_the_collateral_still_locked()
    {
        var p = OmlChainClient.DefaultParameters();
        p[(int)ChainParam.SlashFractionBps] = 7000;
        var w = await World.CreateAsync(fx.Node, p);
        var subset = await w.LicensedCopyAsync(w.Host);
        long a = await w.ClaimAsync(w.Host.Address, [w.Evidence(subset, 0)]);
        long b = await w.ClaimAsync(w.Host.Address, [w.Evidence(subset, 1)]);
        await fx.Node.IncreaseTimeAsync(Day + 1);
        var first = (await w.User.SettleAsync(a)).Single("Slashed");
        var second = (await w.User.SettleAsync(b)).Single("Slashed");
        Assert.Equal(700, first.Int("slashed"));
        Assert.False((bool)first.Args["capped"]!);
        Assert.Equal(300, second.Int("slashed"));
        Assert.True((bool)second.Args["capped"]!);
        // 1000 slashed in all, never more: prover 30% of each plus both bonds, owner the rest
        Assert.Equal(210 + 90 + 200, await w.User.CreditsAsync(w.Prover.Address));
        Assert.Equal(490 + 210, await w.User.CreditsAsync(w.Owner.Address));
    }

    [Fact]
    public async Task A_reveal_with_a_bad_proof_or_another_hosts_subset_or_a_forged_receipt_is_refused()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        var other = Subset.Make(5, "someone else");

        var badProof = w.Evidence(subset, 2);
        badProof.Proof[0] = new byte[32];
        Assert.Equal("InvalidProof", (await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address, [badProof]))).ErrorName);

        var moved = w.Evidence(subset, 2);
        moved.LeafIndex = 3;
        Assert.Equal("InvalidProof", (await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address, [moved]))).ErrorName);

        Assert.Equal("InvalidProof", (await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address, [w.Evidence(other, 2)]))).ErrorName);

        using var mallory = PrivateKey.Generate();
        var forged = w.Evidence(subset, 2, signer: mallory);
        Assert.Equal("BadReceiptSignature", (await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address, [forged]))).ErrorName);

        var wrong = w.Evidence(subset, 2, answer: "something unrelated");
        Assert.Equal("AnswerMismatch", (await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address, [wrong]))).ErrorName);
    }

    [Fact]
    public async Task A_claim_on_an_unlicensed_host_is_refused()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        var e = await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host2.Address, [w.Evidence(subset, 0)]));
        Assert.Equal("UnknownLicence", e.ErrorName);
    }

    [Fact]
    public async Task A_commitment_is_accepted_once_and_an_unrevealed_claim_returns_the_bond()
    {
        var w = await World.CreateAsync(fx.Node);
        var commitment = World.Digest("some claim");
        var r = await w.Prover.CommitClaimAsync(commitment, 100);
        long id = (long)r.Single("ClaimCommitted").Int("claimId");
        Assert.Equal("DuplicateCommitment", (await Assert.ThrowsAsync<ChainRevertException>(() => w.Prover.CommitClaimAsync(commitment, 100))).ErrorName);
        // the same bytes from another sender are that sender's own claim (which it can never reveal)
        Assert.Equal(1, (await w.User.CommitClaimAsync(commitment, 100)).Single("ClaimCommitted").Int("claimId"));
        Assert.Equal(id, await w.Prover.ClaimIdOfAsync(commitment));
        Assert.Equal(1L, await w.User.ClaimIdOfAsync(commitment));
        Assert.Null(await w.Owner.ClaimIdOfAsync(commitment));
        Assert.Equal("BondTooLow", (await Assert.ThrowsAsync<ChainRevertException>(() => w.Prover.CommitClaimAsync(World.Digest("x"), 99))).ErrorName);
        Assert.Equal("NotYetSettleable", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.SettleAsync(id))).ErrorName);
        await fx.Node.IncreaseTimeAsync(3601);
        var s = await w.User.SettleAsync(id);
        Assert.Equal(100, s.Single("ClaimRefunded").Int("bond"));
        Assert.Equal(100, await w.User.CreditsAsync(w.Prover.Address));
    }

    [Fact]
    public async Task The_contracts_commitment_is_the_embedded_ledgers_formula_bound_to_the_prover()
    {
        var w = await World.CreateAsync(fx.Node);
        var evidenceHash = System.Security.Cryptography.SHA256.HashData("evidence"u8);
        var salt = System.Security.Cryptography.SHA256.HashData("salt"u8);
        string Hex32(byte[] b) => "0x" + Convert.ToHexStringLower(b);
        var onChain = Hex32(await w.Prover.CommitmentAsync(World.ModelId, w.Host.Address, evidenceHash, salt));
        Assert.Equal(Oml.Protocol.Claims.ClaimEvidence.Commitment(w.Prover.Address, World.ModelId, w.Host.Address, Hex32(evidenceHash), Hex32(salt)), onChain);
        Assert.NotEqual(onChain, Hex32(await w.User.CommitmentAsync(World.ModelId, w.Host.Address, evidenceHash, salt)));
    }

    [Fact]
    public async Task A_commitment_copied_from_the_mempool_neither_blocks_the_prover_nor_can_be_revealed()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        var attacker = w.User;  // funded, has approved the protocol
        List<EvidenceTuple> items = [w.Evidence(subset, 1)];
        var salt = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var commitment = "0x" + Convert.ToHexStringLower(await w.Prover.CommitmentAsync(World.ModelId, w.Host.Address,
            await w.Prover.EvidenceHashAsync(items), salt));
        // The attacker sees the prover's commitClaim in the mempool and gets the same bytes in first.
        long copy = (long)(await attacker.CommitClaimAsync(commitment, 100)).Single("ClaimCommitted").Int("claimId");
        long id = (long)(await w.Prover.CommitClaimAsync(commitment, 100)).Single("ClaimCommitted").Int("claimId");
        await fx.Node.IncreaseTimeAsync(2);
        // Even with the salt and the evidence in hand (say, from the prover's reveal), the copy cannot be revealed.
        var e = await Assert.ThrowsAsync<ChainRevertException>(() => attacker.RevealClaimAsync(copy, World.ModelId, w.Host.Address, salt, items));
        Assert.Equal("CommitmentMismatch", e.ErrorName);
        await w.Prover.RevealClaimAsync(id, World.ModelId, w.Host.Address, salt, items);
        await fx.Node.IncreaseTimeAsync(Day + 1);
        Assert.Equal(500, (await w.User.SettleAsync(id)).Single("Slashed").Int("slashed"));
        Assert.Equal(100 + 150, await w.User.CreditsAsync(w.Prover.Address));
        // the copy only ever gets its own bond back
        Assert.Equal(100, (await w.User.SettleAsync(copy)).Single("ClaimRefunded").Int("bond"));
        Assert.Equal(0, await w.User.BondsHeldAsync());
    }

    [Fact]
    public async Task A_host_that_served_a_settled_permit_rebuts_in_time_and_a_late_rebuttal_fails()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 1000);
        long epoch = await w.EpochAsync();

        // The host serves fingerprint 0 under a funded permit and a receipt naming it; the prover claims before the
        // host settles the epoch; the host then commits usage and rebuts with the permit and the receipt's proof.
        var f = subset.Fingerprints[0];
        var permit = Oml.Protocol.Access.Permit.Create(w.UserKey.Address, World.ModelId, Address.Parse(w.Host.Address), f.Key, 42,
            long.MaxValue / 2, 10).Sign(w.Domain, w.UserKey);
        string permitHash = permit.Permit.Hash(w.Domain);
        string answer = f.Response.Text;
        var receipt = Oml.Protocol.Access.Receipt.Create(w.HostKey.Address, World.ModelId, permitHash, f.Key, answer, 1_700_000_000)
            .Sign(w.Domain, w.HostKey);
        var book = new Oml.Protocol.Access.UsageBook(w.Domain, World.ModelId, epoch);
        book.Add(receipt, permit);
        var other = Oml.Protocol.Access.Receipt.Create(w.HostKey.Address, World.ModelId, null, "hello", "hi", 1_700_000_001).Sign(w.Domain, w.HostKey);
        book.Add(other, null);

        long late = await w.ClaimAsync(w.Host.Address, [OmlChainClient.Evidence(subset.Reveal(0), answer, receipt)]);
        await w.Host.CommitUsageAsync(book);
        var proof = book.ProofFor(receipt);
        var rebuttal = new RebuttalTuple
        {
            User = w.User.Address, Nonce = 42, Expiry = long.MaxValue / 2, Fee = 10, Epoch = epoch, ReceiptIndex = proof.LeafIndex,
            Proof = [.. proof.Steps.Select(s => s.Sibling.AsSpan().ToArray())],
        };
        // a stranger cannot rebut; the host can, within the window
        Assert.Equal("NotClaimedHost", (await Assert.ThrowsAsync<ChainRevertException>(() => w.User.RebutAsync(late, [rebuttal]))).ErrorName);
        await fx.Node.IncreaseTimeAsync(Day + 1);
        var e = await Assert.ThrowsAsync<ChainRevertException>(() => w.Host.RebutAsync(late, [rebuttal]));
        Assert.Equal("RebutWindowClosed", e.ErrorName);
        await w.User.SettleAsync(late);  // the late host is slashed
        Assert.Equal(500, (await w.Host.Sender.Web3.Eth.GetContract(ContractArtifact.OmlProtocol.Abi, w.Deployment.Protocol)
            .GetFunction("licenceOf").CallDeserializingToObjectAsync<LicenceView>(OmlChainClient.ModelKey(World.ModelId), w.Host.Address)).CollateralLocked);
    }

    [Fact]
    public async Task A_rebuttal_in_time_with_a_settled_permit_returns_the_bond_to_the_host()
    {
        var w = await World.CreateAsync(fx.Node);
        var subset = await w.LicensedCopyAsync(w.Host);
        await w.User.DepositAsync(w.Host.Address, 1000);
        long epoch = await w.EpochAsync();
        var f = subset.Fingerprints[4];
        var permit = Oml.Protocol.Access.Permit.Create(w.UserKey.Address, World.ModelId, Address.Parse(w.Host.Address), f.Key, 7,
            long.MaxValue / 2, 10).Sign(w.Domain, w.UserKey);
        var receipt = Oml.Protocol.Access.Receipt.Create(w.HostKey.Address, World.ModelId, permit.Permit.Hash(w.Domain), f.Key, f.Response.Text, 5)
            .Sign(w.Domain, w.HostKey);
        var book = new Oml.Protocol.Access.UsageBook(w.Domain, World.ModelId, epoch);
        book.Add(receipt, permit);
        long id = await w.ClaimAsync(w.Host.Address, [OmlChainClient.Evidence(subset.Reveal(4), f.Response.Text, receipt)]);

        var unpaid = new RebuttalTuple { User = w.User.Address, Nonce = 7, Expiry = long.MaxValue / 2, Fee = 10, Epoch = epoch, ReceiptIndex = 0 };
        // before settlement the permit shields nothing
        Assert.Equal("PermitNotSettled", (await Assert.ThrowsAsync<ChainRevertException>(() => w.Host.RebutAsync(id, [unpaid]))).ErrorName);
        await w.Host.CommitUsageAsync(book);
        var r = await w.Host.RebutAsync(id, [unpaid]);  // one receipt: the proof is empty
        Assert.Single(r.All("ClaimRebutted"));
        Assert.Equal(100 + 2, await w.User.CreditsAsync(w.Host.Address));  // the bond + its 20% of the fee
        // and a claim whose receipt names a permit already settled is refused at reveal
        var e = await Assert.ThrowsAsync<ChainRevertException>(() => w.ClaimAsync(w.Host.Address,
            [OmlChainClient.Evidence(subset.Reveal(3), subset.Fingerprints[3].Response.Text,
                Oml.Protocol.Access.Receipt.Create(w.HostKey.Address, World.ModelId, permit.Permit.Hash(w.Domain), subset.Fingerprints[3].Key,
                    subset.Fingerprints[3].Response.Text, 6).Sign(w.Domain, w.HostKey))]));
        Assert.Equal("UsagePermitted", e.ErrorName);
    }
}

[Nethereum.ABI.FunctionEncoding.Attributes.FunctionOutput]
public sealed class LicenceView
{
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bool", "exists", 1)] public bool Exists { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bool", "delivered", 2)] public bool Delivered { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bool", "acknowledged", 3)] public bool Acknowledged { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint32", "ordinal", 4)] public uint Ordinal { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint32", "fingerprintCount", 5)] public uint FingerprintCount { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint256", "collateralPosted", 6)] public BigInteger CollateralPosted { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("uint256", "collateralLocked", 7)] public BigInteger CollateralLocked { get; set; }
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bytes32", "indicesRoot", 8)] public byte[] IndicesRoot { get; set; } = [];
    [Nethereum.ABI.FunctionEncoding.Attributes.Parameter("bytes32", "copyDigest", 9)] public byte[] CopyDigest { get; set; } = [];
}
