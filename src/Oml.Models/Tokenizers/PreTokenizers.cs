using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Models.Tokenizers;

/// <summary>A slice of a string that the pre-tokenizers and the model work on, without copying it.</summary>
internal readonly record struct Piece(string Text, int Start, int Length, bool AtStart)
{
    public ReadOnlySpan<char> Span => Text.AsSpan(Start, Length);
}

/// <summary>What <c>Split</c> does with the parts of the text that match its pattern.</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>A tokenizer.json pre-tokenizer: cuts a piece into smaller pieces (and may rewrite them).</summary>
internal abstract class PreTokenizer
{
    public abstract void Split(in Piece piece, List<Piece> output);

    /// <summary>Splits <paramref name="piece"/> at the matches of <paramref name="regex"/> as tokenizers' Split does.</summary>
    protected static void SplitByRegex(in Piece piece, Regex regex, SplitBehavior behavior, bool invert, List<Piece> output)
    {
        var span = piece.Span;
        var text = piece.Text;
        var baseStart = piece.Start;
        if (behavior == SplitBehavior.Isolated && !invert)
        {
            // Fast path: every match and every gap between matches is a piece.
            var prev = 0;
            foreach (var m in regex.EnumerateMatches(span))
            {
                if (m.Length == 0) continue;
                if (m.Index > prev) output.Add(new Piece(text, baseStart + prev, m.Index - prev, piece.AtStart && prev == 0));
                output.Add(new Piece(text, baseStart + m.Index, m.Length, piece.AtStart && m.Index == 0));
                prev = m.Index + m.Length;
            }
            if (prev < span.Length) output.Add(new Piece(text, baseStart + prev, span.Length - prev, piece.AtStart && prev == 0));
            return;
        }

        // General case: list (start, end, isMatch) covering the piece, then combine as the behavior says.
        var parts = new List<(int Start, int End, bool IsMatch)>();
        var p = 0;
        foreach (var m in regex.EnumerateMatches(span))
        {
            if (m.Length == 0) continue;
            if (m.Index > p) parts.Add((p, m.Index, invert));
            parts.Add((m.Index, m.Index + m.Length, !invert));
            p = m.Index + m.Length;
        }
        if (p < span.Length) parts.Add((p, span.Length, invert));

        var result = new List<(int Start, int End)>();
        switch (behavior)
        {
            case SplitBehavior.Removed:
                foreach (var part in parts) if (!part.IsMatch) result.Add((part.Start, part.End));
                break;
            case SplitBehavior.Isolated:
                foreach (var part in parts) result.Add((part.Start, part.End));
                break;
            case SplitBehavior.MergedWithPrevious:
            {
                var previousMatch = false;
                foreach (var part in parts)
                {
                    if (part.IsMatch && !previousMatch && result.Count > 0) result[^1] = (result[^1].Start, part.End);
                    else result.Add((part.Start, part.End));
                    previousMatch = part.IsMatch;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                var previousMatch = false;
                for (var i = parts.Count - 1; i >= 0; i--)
                {
                    var part = parts[i];
                    if (part.IsMatch && !previousMatch && result.Count > 0) result[^1] = (part.Start, result[^1].End);
                    else result.Add((part.Start, part.End));
                    previousMatch = part.IsMatch;
                }
                result.Reverse();
                break;
            }
            case SplitBehavior.Contiguous:
            {
                var previousMatch = false;
                var first = true;
                foreach (var part in parts)
                {
                    if (!first && part.IsMatch == previousMatch) result[^1] = (result[^1].Start, part.End);
                    else result.Add((part.Start, part.End));
                    previousMatch = part.IsMatch;
                    first = false;
                }
                break;
            }
        }
        foreach (var (s, e) in result)
            if (e > s) output.Add(new Piece(text, baseStart + s, e - s, piece.AtStart && s == 0));
    }
}

internal sealed class SequencePreTokenizer(PreTokenizer[] steps) : PreTokenizer
{
    public PreTokenizer[] Steps { get; } = steps;

    public override void Split(in Piece piece, List<Piece> output)
    {
        var current = new List<Piece> { piece };
        var next = new List<Piece>();
        foreach (var step in Steps)
        {
            next.Clear();
            foreach (var p in current) step.Split(p, next);
            (current, next) = (next, current);
        }
        output.AddRange(current);
    }
}

internal sealed class SplitPreTokenizer(Regex regex, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void Split(in Piece piece, List<Piece> output) => SplitByRegex(piece, regex, behavior, invert, output);
}

/// <summary>
/// ByteLevel: optionally prefixes a space, optionally splits with the GPT-2 regex, then maps every UTF-8 byte to its
/// character. When it is the last pre-tokenizer the mapping is left to the model (<see cref="MapBytes"/> false), which
/// does it into a stack buffer instead of allocating a string per piece.
/// </summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    private static readonly Regex Gpt2Regex = new(ByteLevel.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    public bool AddPrefixSpace { get; } = addPrefixSpace;
    public bool UseRegex { get; } = useRegex;
    public bool MapBytes { get; set; } = true;

    public override void Split(in Piece piece, List<Piece> output)
    {
        var p = piece;
        if (AddPrefixSpace && (p.Length == 0 || p.Text[p.Start] != ' '))
            p = new Piece(" " + p.Span.ToString(), 0, p.Length + 1, p.AtStart);
        if (!MapBytes)
        {
            if (UseRegex) SplitByRegex(p, Gpt2Regex, SplitBehavior.Isolated, false, output);
            else output.Add(p);
            return;
        }
        var parts = new List<Piece>();
        if (UseRegex) SplitByRegex(p, Gpt2Regex, SplitBehavior.Isolated, false, parts);
        else parts.Add(p);
        foreach (var part in parts)
        {
            var mapped = Map(part.Span);
            output.Add(new Piece(mapped, 0, mapped.Length, part.AtStart));
        }
    }

    public static string Map(ReadOnlySpan<char> text)
    {
        var bytes = Encoding.UTF8.GetBytes(text.ToString());
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) chars[i] = ByteLevel.ByteToChar[bytes[i]];
        return new string(chars);
    }
}

internal enum PrependScheme { Always, First, Never }

/// <summary>Metaspace: spaces become the replacement character (▁), which is also prepended as the scheme says.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, PrependScheme scheme, bool split) : PreTokenizer
{
    private readonly Regex _splitRegex = new(Regex.Escape(replacement.ToString()), RegexOptions.CultureInvariant);

    public override void Split(in Piece piece, List<Piece> output)
    {
        var s = piece.Span.ToString().Replace(' ', replacement);
        var prepend = scheme switch
        {
            PrependScheme.Always => !s.StartsWith(replacement),
            PrependScheme.First => !s.StartsWith(replacement) && piece.AtStart,
            _ => false,
        };
        if (prepend) s = replacement + s;
        var p = new Piece(s, 0, s.Length, piece.AtStart);
        if (split) SplitByRegex(p, _splitRegex, SplitBehavior.MergedWithNext, false, output);
        else output.Add(p);
    }
}

/// <summary>Digits, Whitespace, WhitespaceSplit and other pre-tokenizers that are one regex split.</summary>
internal sealed class RegexPreTokenizer(string pattern, SplitBehavior behavior, bool invert = false) : PreTokenizer
{
    private readonly Regex _regex = new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    public override void Split(in Piece piece, List<Piece> output) => SplitByRegex(piece, _regex, behavior, invert, output);
}
