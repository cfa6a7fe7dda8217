using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Oml.Protocol.Ledger;

/// <summary>
/// The event hash of the ledger chain, shared by every engine (in-memory, SQLite, ...): the same events give the same
/// hashes everywhere.
/// </summary>
/// <remarks>
/// <para>Hash = SHA-256 over the concatenation of six fields, each written as a 4-byte big-endian unsigned length
/// followed by that many bytes:</para>
/// <list type="number">
/// <item>the domain tag, the ASCII bytes of <c>oml/ledger-event/v1</c> (19 bytes);</item>
/// <item>the sequence number, 8 bytes, big-endian two's complement;</item>
/// <item>the previous event's hash, 32 bytes (32 zero bytes for sequence 0);</item>
/// <item>the event type, its UTF-8 bytes;</item>
/// <item>the timestamp as Unix milliseconds (UTC), 8 bytes, big-endian two's complement;</item>
/// <item>the payload bytes.</item>
/// </list>
/// <para>Every field carries its length, so no two different events encode to the same bytes (no ambiguity between
/// where the type ends and the payload begins). Timestamps are hashed at millisecond precision: engines truncate an
/// appended timestamp to whole milliseconds (UTC) before hashing and storing it.</para>
/// </remarks>
public static class LedgerHashing
{
    /// <summary>The domain-separation tag hashed first.</summary>
    public const string DomainTag = "oml/ledger-event/v1";

    /// <summary>Size of an event hash (SHA-256).</summary>
    public const int HashSize = 32;

    /// <summary>The previous hash of event 0 and the head hash of an empty ledger.</summary>
    public static byte[] GenesisHash => new byte[HashSize];

    private static readonly byte[] TagBytes = Encoding.ASCII.GetBytes(DomainTag);

    /// <summary>Hash of one event (see the class remarks for the exact encoding).</summary>
    public static byte[] ComputeHash(long sequence, ReadOnlySpan<byte> previousHash, string type, DateTimeOffset timestamp, ReadOnlySpan<byte> payload)
        => ComputeHash(sequence, previousHash, type, timestamp.ToUnixTimeMilliseconds(), payload);

    /// <summary>Hash of one event with its timestamp given as Unix milliseconds.</summary>
    public static byte[] ComputeHash(long sequence, ReadOnlySpan<byte> previousHash, string type, long unixMilliseconds, ReadOnlySpan<byte> payload)
    {
        ArgumentNullException.ThrowIfNull(type);
        if (previousHash.Length != HashSize)
            throw new ArgumentException($"previous hash must be {HashSize} bytes, got {previousHash.Length}", nameof(previousHash));
        byte[] typeBytes = Encoding.UTF8.GetBytes(type);
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> word = stackalloc byte[8];
        void Field(IncrementalHash hash, ReadOnlySpan<byte> bytes)
        {
            Span<byte> len = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(len, checked((uint)bytes.Length));
            hash.AppendData(len);
            hash.AppendData(bytes);
        }
        Field(h, TagBytes);
        BinaryPrimitives.WriteInt64BigEndian(word, sequence);
        Field(h, word);
        Field(h, previousHash);
        Field(h, typeBytes);
        BinaryPrimitives.WriteInt64BigEndian(word, unixMilliseconds);
        Field(h, word);
        Field(h, payload);
        return h.GetHashAndReset();
    }

    /// <summary>Hash of an event from its own fields (to check a stored event).</summary>
    public static byte[] ComputeHash(LedgerEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return ComputeHash(e.Sequence, e.PreviousHash, e.Type, e.Timestamp, e.Payload);
    }

    /// <summary>The timestamp an engine stores and hashes: UTC, truncated to whole milliseconds.</summary>
    public static DateTimeOffset Normalize(DateTimeOffset timestamp)
        => DateTimeOffset.FromUnixTimeMilliseconds(timestamp.ToUnixTimeMilliseconds());

    /// <summary>Lower-case hex of a hash (how the CLI prints heads).</summary>
    public static string ToHex(ReadOnlySpan<byte> hash) => Convert.ToHexStringLower(hash);

    /// <summary>Parses a 64-digit hex hash (an optional "0x" prefix is accepted).</summary>
    public static byte[] ParseHex(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        var s = hex.Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        if (s.Length != 2 * HashSize || !s.All(Uri.IsHexDigit))
            throw new ArgumentException($"a ledger hash is {2 * HashSize} hex digits, got '{hex}'", nameof(hex));
        return Convert.FromHexString(s);
    }
}
