namespace Oml.Models.Tokenizers;

/// <summary>
/// The GPT-2 byte-to-unicode table used by byte-level BPE: every byte gets a printable character, bytes that are
/// printable Latin-1 map to themselves, the others to U+0100 onwards in byte order.
/// </summary>
internal static class ByteLevel
{
    /// <summary>Character that stands for each byte.</summary>
    public static readonly char[] ByteToChar = BuildTable();

    /// <summary>Byte that each character stands for, -1 where the character is not in the table (indexed up to U+0143).</summary>
    public static readonly short[] CharToByte = BuildReverse();

    /// <summary>The GPT-2 pre-tokenization regex that ByteLevel applies when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static char[] BuildTable()
    {
        var table = new char[256];
        var n = 0;
        for (var b = 0; b < 256; b++)
        {
            var printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + n++);
        }
        return table;
    }

    private static short[] BuildReverse()
    {
        var rev = new short[324];
        Array.Fill(rev, (short)-1);
        for (var b = 0; b < 256; b++) rev[ByteToChar[b]] = (short)b;
        return rev;
    }

    public static int TryGetByte(char c) => c < CharToByte.Length ? CharToByte[c] : -1;
}
