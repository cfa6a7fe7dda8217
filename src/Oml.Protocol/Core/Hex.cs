using System.Globalization;
using System.Text;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Core;

/// <summary>The textual forms the protocol uses: lowercase "0x" hex for addresses and hashes, decimal for amounts.</summary>
public static class Hex
{
    public static readonly string ZeroAddress = "0x" + new string('0', 40);
    public static readonly string Zero32 = "0x" + new string('0', 64);

    /// <summary>"0x" + lowercase hex.</summary>
    public static string Of(ReadOnlySpan<byte> bytes) => "0x" + Convert.ToHexStringLower(bytes);

    /// <summary>The canonical (lowercase) text of an address: the key the state uses.</summary>
    public static string Of(Address address) => Of(address.Bytes);

    /// <summary>Decodes "0x"-prefixed hex (any case).</summary>
    public static byte[] Decode(string text)
    {
        if (!TryDecode(text, out var b)) throw new FormatException($"'{text}' is not 0x-prefixed hex");
        return b;
    }

    public static bool TryDecode(string? text, out byte[] bytes)
    {
        bytes = [];
        if (text is null || text.Length < 2 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X') || text.Length % 2 != 0) return false;
        foreach (char c in text.AsSpan(2)) if (!char.IsAsciiHexDigit(c)) return false;
        bytes = Convert.FromHexString(text.AsSpan(2));
        return true;
    }

    /// <summary>Whether <paramref name="text"/> is "0x" + 40 hex digits; returns its lowercase form.</summary>
    public static bool TryAddress(string? text, out string canonical)
    {
        canonical = "";
        if (!TryDecode(text, out var b) || b.Length != 20) return false;
        canonical = Of(b);
        return true;
    }

    /// <summary>The canonical address text of <paramref name="text"/>; throws <see cref="FormatException"/> when malformed.</summary>
    public static string Address(string text) =>
        TryAddress(text, out var a) ? a : throw new FormatException($"'{text}' is not an address (0x + 40 hex digits)");

    /// <summary>Keccak-256 of the UTF-8 text, as "0x" hex (queries and answers are hashed this way).</summary>
    public static string KeccakText(string text) => Of(Keccak256.Hash(Encoding.UTF8.GetBytes(text)));

    public static string Dec(long v) => v.ToString(CultureInfo.InvariantCulture);
}
