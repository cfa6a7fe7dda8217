using System.Buffers;

namespace Oml.Models.Tokenizers;

/// <summary>One entry of tokenizer.json's added_tokens.</summary>
public sealed record AddedToken(int Id, string Content, bool SingleWord, bool LStrip, bool RStrip, bool Normalized, bool Special);

/// <summary>
/// Finds added tokens in text, leftmost-longest as tokenizers' Aho-Corasick matcher does, and applies single_word,
/// lstrip and rstrip. Yields segments: either an added token (Id >= 0) or plain text (Id = -1).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar = new();
    private readonly SearchValues<char> _firstChars;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        foreach (var group in tokens.Where(t => t.Content.Length > 0).GroupBy(t => t.Content[0]))
            _byFirstChar[group.Key] = group.OrderByDescending(t => t.Content.Length).ToArray();
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    public void Split(string text, int from, int length, List<(int Start, int Length, int Id)> output)
    {
        var end = from + length;
        var startOffset = from;
        var pos = from;
        while (pos < end)
        {
            var idx = text.AsSpan(pos, end - pos).IndexOfAny(_firstChars);
            if (idx < 0) break;
            pos += idx;
            AddedToken? match = null;
            foreach (var t in _byFirstChar[text[pos]])
                if (t.Content.Length <= end - pos && text.AsSpan(pos, t.Content.Length).SequenceEqual(t.Content)) { match = t; break; }
            if (match == null) { pos++; continue; }

            var start = pos;
            var stop = pos + match.Content.Length;
            pos = stop; // matches do not overlap
            if (match.SingleWord)
            {
                var startSpace = start == from || !IsWordChar(text[start - 1]);
                var stopSpace = stop == end || !IsWordChar(text[stop]);
                if (!startSpace || !stopSpace) continue;
            }
            if (match.LStrip)
            {
                var s = start;
                while (s > from && char.IsWhiteSpace(text[s - 1])) s--;
                start = Math.Max(s, startOffset);
            }
            if (match.RStrip)
            {
                while (stop < end && char.IsWhiteSpace(text[stop])) stop++;
                pos = stop;
            }
            if (startOffset < start) output.Add((startOffset, start - startOffset, -1));
            output.Add((start, stop - start, match.Id));
            startOffset = stop;
        }
        if (startOffset < end) output.Add((startOffset, end - startOffset, -1));
    }

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_' ||
        char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.NonSpacingMark or System.Globalization.UnicodeCategory.SpacingCombiningMark
            or System.Globalization.UnicodeCategory.ConnectorPunctuation;
}
