using Oml.Models.Tokenizers;

namespace Oml.Models.Data;

/// <summary>
/// Unicode normalization that works in this build's invariant-globalization mode (where
/// <see cref="string.Normalize()"/> leaves non-ASCII text unchanged), backed by the tokenizers' own NFC/NFD tables.
/// </summary>
public static class TextNormalization
{
    /// <summary>Canonical composition (NFC): "e" + U+0301 → "é".</summary>
    public static string ToNfc(string s) => UnicodeNormalization.Normalize(s, compose: true);

    /// <summary>Canonical decomposition (NFD): "é" → "e" + U+0301.</summary>
    public static string ToNfd(string s) => UnicodeNormalization.Normalize(s, compose: false);
}
