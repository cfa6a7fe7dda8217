using System.Numerics;
using Nethereum.ABI.FunctionEncoding.Attributes;

namespace Oml.Protocol.Chain;

/// <summary>OmlProtocol.SignedPermit: a user-signed permit as a host submits it (host and model are the batch's).</summary>
public sealed class PermitTuple
{
    [Parameter("address", "user", 1)] public string User { get; set; } = "";
    [Parameter("bytes32", "queryHash", 2)] public byte[] QueryHash { get; set; } = new byte[32];
    [Parameter("uint256", "nonce", 3)] public BigInteger Nonce { get; set; }
    [Parameter("uint256", "expiry", 4)] public BigInteger Expiry { get; set; }
    [Parameter("uint256", "fee", 5)] public BigInteger Fee { get; set; }
    [Parameter("bytes", "signature", 6)] public byte[] Signature { get; set; } = [];
}

/// <summary>OmlClaims.EvidenceItem: a fingerprint with its proof, the host's answer and its signed receipt.</summary>
public sealed class EvidenceTuple
{
    [Parameter("bytes", "leaf", 1)] public byte[] Leaf { get; set; } = [];
    [Parameter("uint256", "leafIndex", 2)] public BigInteger LeafIndex { get; set; }
    [Parameter("bytes32[]", "proof", 3)] public List<byte[]> Proof { get; set; } = [];
    [Parameter("bytes", "answer", 4)] public byte[] Answer { get; set; } = [];
    [Parameter("bytes32", "permitHash", 5)] public byte[] PermitHash { get; set; } = new byte[32];
    [Parameter("uint256", "receiptTime", 6)] public BigInteger ReceiptTime { get; set; }
    [Parameter("bytes", "receiptSignature", 7)] public byte[] ReceiptSignature { get; set; } = [];
}

/// <summary>OmlClaims.RebuttalItem: the permit a receipt names and the receipt's place in a usage root.</summary>
public sealed class RebuttalTuple
{
    [Parameter("address", "user", 1)] public string User { get; set; } = "";
    [Parameter("uint256", "nonce", 2)] public BigInteger Nonce { get; set; }
    [Parameter("uint256", "expiry", 3)] public BigInteger Expiry { get; set; }
    [Parameter("uint256", "fee", 4)] public BigInteger Fee { get; set; }
    [Parameter("uint256", "epoch", 5)] public BigInteger Epoch { get; set; }
    [Parameter("uint256", "receiptIndex", 6)] public BigInteger ReceiptIndex { get; set; }
    [Parameter("bytes32[]", "proof", 7)] public List<byte[]> Proof { get; set; } = [];
}
