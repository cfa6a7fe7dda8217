using System.Text.Json.Nodes;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Core;

/// <summary>The EIP-712 domain every OML request is signed under: name "OML", version "1".</summary>
/// <param name="ChainId">Distinguishes deployments (default 31337 for a local ledger).</param>
/// <param name="VerifyingContract">The contract's address on a chain; for the embedded ledger, an address derived from the
/// ledger's id and its genesis event (<see cref="ForEmbeddedLedger"/>), so that a request signed for one ledger is
/// rejected by every other.</param>
public sealed record ProtocolDomain(long ChainId, string VerifyingContract)
{
    public const string Name = "OML";
    public const string Version = "1";
    public const long DefaultChainId = 31337;
    public const string EmbeddedLedgerTag = "oml/embedded-ledger/v1";

    /// <summary>Chain 31337 and the zero address: the domain the embedded ledger's genesis event is signed under.</summary>
    public static ProtocolDomain Default { get; } = new(DefaultChainId, Hex.ZeroAddress);

    /// <summary>
    /// The domain of an embedded ledger after its genesis: <paramref name="chainId"/> and, as verifying contract, the
    /// last 20 bytes of keccak256("oml/embedded-ledger/v1" ‖ ledger id bytes ‖ genesis event hash).
    /// </summary>
    public static ProtocolDomain ForEmbeddedLedger(long chainId, string ledgerIdHex, ReadOnlySpan<byte> genesisEventHash)
    {
        var id = Convert.FromHexString(ledgerIdHex);
        var tag = System.Text.Encoding.UTF8.GetBytes(EmbeddedLedgerTag);
        var h = Keccak256.Hash([.. tag, .. id, .. genesisEventHash]);
        return new ProtocolDomain(chainId, Hex.Of(h.AsSpan(12, 20)));
    }

    public JsonObject ToJson() => new()
    {
        ["name"] = Name,
        ["version"] = Version,
        ["chainId"] = Hex.Dec(ChainId),
        ["verifyingContract"] = VerifyingContract,
    };
}

/// <summary>
/// The EIP-712 struct types of every request. Every ledger action carries <c>actor</c> (the signer) and
/// <c>nonce</c> (the actor's request counter, 0, 1, 2, ...). Amounts, ids and times are <c>uint256</c> (decimal strings
/// in JSON, at most 2^63-1); hashes are <c>bytes32</c>. Bulky evidence travels as attachments whose Keccak-256 is
/// signed as a <c>bytes32</c> field.
/// </summary>
public static class Schemas
{
    public const string Genesis = "Genesis";
    public const string Mint = "Mint";
    public const string Transfer = "Transfer";
    public const string Deposit = "Deposit";
    public const string RequestRefund = "RequestRefund";
    public const string Refund = "Refund";
    public const string Stake = "Stake";
    public const string Unstake = "Unstake";
    public const string Withdraw = "Withdraw";
    public const string RegisterModel = "RegisterModel";
    public const string AddVersion = "AddVersion";
    public const string DeclareParent = "DeclareParent";
    public const string TransferModel = "TransferModel";
    public const string AcceptModel = "AcceptModel";
    public const string ApplyLicense = "ApplyLicense";
    public const string DeliverCopy = "DeliverCopy";
    public const string AcknowledgeCopy = "AcknowledgeCopy";
    public const string AnnounceExit = "AnnounceExit";
    public const string ReleaseCollateral = "ReleaseCollateral";
    public const string CommitUsage = "CommitUsage";
    public const string CommitClaim = "CommitClaim";
    public const string RevealClaim = "RevealClaim";
    public const string Rebut = "Rebut";
    public const string Settle = "Settle";
    public const string FileAccusation = "FileAccusation";
    public const string Propose = "Propose";
    public const string Vote = "Vote";
    public const string Execute = "Execute";
    /// <summary>Off-ledger: a user's permission (and promise to pay) for one query.</summary>
    public const string Permit = "Permit";
    /// <summary>Off-ledger: a host's signed record of one answered query.</summary>
    public const string Receipt = "Receipt";

    private static Eip712Field F(string name, string type) => new(name, type);
    private static readonly Eip712Field Actor = F("actor", "address");
    private static readonly Eip712Field Nonce = F("nonce", "uint256");

    public static IReadOnlyList<Eip712Field> DomainFields { get; } =
        [F("name", "string"), F("version", "string"), F("chainId", "uint256"), F("verifyingContract", "address")];

    /// <summary>Every struct type by name.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<Eip712Field>> All { get; } = new Dictionary<string, IReadOnlyList<Eip712Field>>
    {
        [Genesis] = [Actor, F("chainId", "uint256"), F("parameters", "string"), Nonce],
        [Mint] = [Actor, F("to", "address"), F("amount", "uint256"), Nonce],
        [Transfer] = [Actor, F("to", "address"), F("amount", "uint256"), Nonce],
        [Deposit] = [Actor, F("host", "address"), F("amount", "uint256"), Nonce],
        [RequestRefund] = [Actor, F("host", "address"), Nonce],
        [Refund] = [Actor, F("host", "address"), Nonce],
        [Stake] = [Actor, F("amount", "uint256"), Nonce],
        [Unstake] = [Actor, F("amount", "uint256"), Nonce],
        [Withdraw] = [Actor, Nonce],
        [RegisterModel] = [Actor, F("modelId", "string"), F("weightsDigest", "string"), F("metadata", "string"),
            F("licenceTerms", "string"), F("pricePerQuery", "uint256"), F("minCollateral", "uint256"), Nonce],
        [AddVersion] = [Actor, F("modelId", "string"), F("weightsDigest", "string"), F("notes", "string"), Nonce],
        [DeclareParent] = [Actor, F("modelId", "string"), F("parentModelId", "string"), F("shareBps", "uint256"), Nonce],
        [TransferModel] = [Actor, F("modelId", "string"), F("newOwner", "address"), Nonce],
        [AcceptModel] = [Actor, F("modelId", "string"), Nonce],
        [ApplyLicense] = [Actor, F("modelId", "string"), F("collateral", "uint256"), F("endpoint", "string"), Nonce],
        [DeliverCopy] = [Actor, F("modelId", "string"), F("host", "address"), F("indicesRoot", "bytes32"),
            F("fingerprintCount", "uint256"), F("copyDigest", "string"), F("allocation", "string"), Nonce],
        [AcknowledgeCopy] = [Actor, F("modelId", "string"), F("copyDigest", "string"), Nonce],
        [AnnounceExit] = [Actor, F("modelId", "string"), Nonce],
        [ReleaseCollateral] = [Actor, F("modelId", "string"), Nonce],
        [CommitUsage] = [Actor, F("modelId", "string"), F("epoch", "uint256"), F("receiptsRoot", "bytes32"),
            F("receiptCount", "uint256"), F("permitsHash", "bytes32"), Nonce],
        [CommitClaim] = [Actor, F("commitment", "bytes32"), F("bond", "uint256"), Nonce],
        [RevealClaim] = [Actor, F("claimId", "uint256"), F("modelId", "string"), F("host", "address"),
            F("evidenceHash", "bytes32"), F("salt", "bytes32"), Nonce],
        [Rebut] = [Actor, F("claimId", "uint256"), F("evidenceHash", "bytes32"), Nonce],
        [Settle] = [Actor, F("claimId", "uint256"), Nonce],
        [FileAccusation] = [Actor, F("modelId", "string"), F("host", "address"), F("evidenceHash", "bytes32"), Nonce],
        [Propose] = [Actor, F("changes", "string"), F("description", "string"), Nonce],
        [Vote] = [Actor, F("proposalId", "uint256"), F("support", "bool"), Nonce],
        [Execute] = [Actor, F("proposalId", "uint256"), Nonce],
        [Permit] = [F("user", "address"), F("modelId", "string"), F("host", "address"), F("queryHash", "bytes32"),
            F("nonce", "uint256"), F("expiry", "uint256"), F("fee", "uint256")],
        [Receipt] = [F("host", "address"), F("modelId", "string"), F("permitHash", "bytes32"), F("queryHash", "bytes32"),
            F("responseHash", "bytes32"), F("time", "uint256")],
    };

    /// <summary>The ledger actions (every type but the off-ledger Permit and Receipt).</summary>
    public static IEnumerable<string> Actions => All.Keys.Where(k => k is not Permit and not Receipt);

    /// <summary>The attachment each action carries, if any (its Keccak-256 is the signed hash field).</summary>
    public static string? AttachmentOf(string type) => type switch
    {
        CommitUsage => "permits",
        RevealClaim => "evidence",
        Rebut => "rebuttal",
        FileAccusation => "evidence",
        _ => null,
    };

    /// <summary>The EIP-712 typed data for <paramref name="message"/> of struct type <paramref name="type"/>.</summary>
    public static Eip712TypedData TypedData(string type, ProtocolDomain domain, JsonObject message)
    {
        var fields = All.TryGetValue(type, out var f) ? f
            : throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"unknown request type '{type}'");
        var types = new Dictionary<string, IReadOnlyList<Eip712Field>> { ["EIP712Domain"] = DomainFields, [type] = fields };
        return new Eip712TypedData(types, type, domain.ToJson(), (JsonObject)message.DeepClone());
    }

    /// <summary>Checks that <paramref name="message"/> has exactly the fields of <paramref name="type"/>, each well-typed.</summary>
    public static void ValidateMessage(string type, JsonObject message)
    {
        var fields = All.TryGetValue(type, out var f) ? f
            : throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"unknown request type '{type}'");
        if (message.Count != fields.Count)
            throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"{type}: expected fields {string.Join(", ", fields.Select(x => x.Name))}, got {string.Join(", ", message.Select(kv => kv.Key))}");
        foreach (var field in fields)
        {
            if (!message.TryGetPropertyValue(field.Name, out var node) || node is not JsonValue v)
                throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"{type}: field '{field.Name}' is missing or not a value");
            bool ok = field.Type switch
            {
                "address" => v.TryGetValue(out string? a) && Hex.TryAddress(a, out var canon) && canon == a,
                "bytes32" => v.TryGetValue(out string? b) && Hex.TryDecode(b, out var bytes) && bytes.Length == 32 && b == Hex.Of(bytes),
                "uint256" => v.TryGetValue(out string? n) && Message.TryParseUInt(n, out _),
                "bool" => v.TryGetValue(out bool _),
                "string" => v.TryGetValue(out string? _),
                _ => false,
            };
            if (!ok) throw ProtocolException.Of(ProtocolErrorCode.InvalidRequest, $"{type}: field '{field.Name}' is not a canonical {field.Type} (addresses and hashes are lowercase 0x-hex, integers decimal strings)");
        }
    }
}
