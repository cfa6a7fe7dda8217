using System.Numerics;

namespace Oml.Protocol.Chain;

/// <summary>A decoded contract event: its name, the emitting contract, its arguments by name (addresses as
/// lowercase hex, bytes as byte[], integers as <see cref="BigInteger"/>), and where it was logged.</summary>
public sealed record ChainEvent(string Name, string Contract, IReadOnlyDictionary<string, object?> Args, long BlockNumber,
    string TransactionHash, long LogIndex)
{
    public BigInteger Int(string name) => (BigInteger)Args[name]!;
    public string Addr(string name) => ((string)Args[name]!).ToLowerInvariant();
    public byte[] Bytes(string name) => (byte[])Args[name]!;
    public string Hex32(string name) => "0x" + Convert.ToHexStringLower(Bytes(name));
}

/// <summary>What one action did: the transaction's receipt data and its decoded events.</summary>
public sealed record ChainResult(string TransactionHash, long BlockNumber, BigInteger GasUsed, IReadOnlyList<ChainEvent> Events)
{
    public ChainEvent Single(string name) => Events.Single(e => e.Name == name);
    public IEnumerable<ChainEvent> All(string name) => Events.Where(e => e.Name == name);
}
