using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Models.ChatTemplates;

internal enum TokenKind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Op, Eof }

internal sealed record Token(TokenKind Kind, string Value, int Line, int Column, object? Literal = null)
{
    public bool IsName(string name) => Kind == TokenKind.Name && Value == name;
    public bool IsOp(string op) => Kind == TokenKind.Op && Value == op;
    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.VarEnd => "'}}'",
        TokenKind.String => "string literal",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits a Jinja2 template into text and tag tokens, applying Jinja2's whitespace rules as transformers configures
/// them: trim_blocks, lstrip_blocks, '-' / '+' modifiers, newline normalisation and keep_trailing_newline=False.
/// </summary>
internal sealed partial class Lexer
{
    private readonly string _src;
    private readonly bool _trimBlocks, _lstripBlocks;
    private readonly List<Token> _tokens = [];
    private readonly int[] _lineStarts;
    private bool _pendingLstrip; // the previous tag ended with '-': strip leading whitespace of the next text

    private Lexer(string src, bool trimBlocks, bool lstripBlocks)
    {
        src = src.Replace("\r\n", "\n").Replace('\r', '\n');
        if (src.EndsWith('\n')) src = src[..^1];
        _src = src;
        _trimBlocks = trimBlocks;
        _lstripBlocks = lstripBlocks;
        var starts = new List<int> { 0 };
        for (var i = 0; i < src.Length; i++) if (src[i] == '\n') starts.Add(i + 1);
        _lineStarts = [.. starts];
    }

    public static List<Token> Tokenize(string src, bool trimBlocks = true, bool lstripBlocks = true)
    {
        var lx = new Lexer(src, trimBlocks, lstripBlocks);
        lx.Run();
        return lx._tokens;
    }

    private (int Line, int Col) Pos(int offset)
    {
        var idx = Array.BinarySearch(_lineStarts, offset);
        if (idx < 0) idx = ~idx - 1;
        return (idx + 1, offset - _lineStarts[idx] + 1);
    }

    private ChatTemplateSyntaxException Error(string msg, int offset)
    {
        var (l, c) = Pos(offset);
        return new ChatTemplateSyntaxException(msg, l, c);
    }

    private void Add(TokenKind kind, string value, int offset, object? literal = null)
    {
        var (l, c) = Pos(offset);
        _tokens.Add(new Token(kind, value, l, c, literal));
    }

    [GeneratedRegex(@"\G\s*raw\s*(?<m>[-+]?)%\}")]
    private static partial Regex RawStart();

    [GeneratedRegex(@"\{%(?<a>[-+]?)\s*endraw\s*(?<b>[-+]?)%\}")]
    private static partial Regex RawEnd();

    private void EmitText(string text, int offset, char nextModifier, bool stripBeforeTag, bool lstripCandidate)
    {
        if (_pendingLstrip) { var t = text.TrimStart(); offset += text.Length - t.Length; text = t; _pendingLstrip = false; }
        if (stripBeforeTag && nextModifier == '-') text = text.TrimEnd();
        else if (lstripCandidate && nextModifier != '+' && _lstripBlocks)
        {
            var l = text.LastIndexOf('\n') + 1;
            var lineStarting = l > 0 || offset == 0 || _src[offset - 1] == '\n';
            if (lineStarting && IsAllWhitespace(text, l)) text = text[..l];
        }
        if (text.Length > 0) Add(TokenKind.Text, text, offset);
    }

    private static bool IsAllWhitespace(string s, int from)
    {
        for (var i = from; i < s.Length; i++) if (!char.IsWhiteSpace(s[i])) return false;
        return true;
    }

    private void Run()
    {
        var pos = 0;
        var n = _src.Length;
        while (pos < n)
        {
            var i = _src.IndexOf('{', pos);
            while (i >= 0 && i + 1 < n && _src[i + 1] is not ('{' or '%' or '#')) i = _src.IndexOf('{', i + 1);
            if (i < 0 || i + 1 >= n)
            {
                EmitText(_src[pos..], pos, '\0', false, false);
                break;
            }
            var kind = _src[i + 1];
            var modifier = i + 2 < n && _src[i + 2] is '-' or '+' ? _src[i + 2] : '\0';
            if (kind == '{' && modifier == '+') modifier = '\0'; // '{{+' has no meaning in Jinja
            EmitText(_src[pos..i], pos, modifier, true, kind is '%' or '#');
            var p = i + 2 + (modifier != '\0' ? 1 : 0);
            if (kind == '#')
            {
                var end = _src.IndexOf("#}", p, StringComparison.Ordinal);
                if (end < 0) throw Error("unterminated comment: missing '#}'", i);
                pos = AfterTagEnd(end + 2, end > p && _src[end - 1] == '-', end > p && _src[end - 1] == '+');
                continue;
            }
            if (kind == '%')
            {
                var m = RawStart().Match(_src, p);
                if (m.Success)
                {
                    var e = RawEnd().Match(_src, m.Index + m.Length);
                    if (!e.Success) throw Error("unterminated 'raw' block: missing '{% endraw %}'", i);
                    var body = _src[(m.Index + m.Length)..e.Index];
                    if (m.Groups["m"].Value == "-") body = body.TrimStart();
                    else if (m.Groups["m"].Value != "+" && _trimBlocks && body.StartsWith('\n')) body = body[1..];
                    if (e.Groups["a"].Value == "-") body = body.TrimEnd();
                    else if (e.Groups["a"].Value != "+" && _lstripBlocks)
                    {
                        var l = body.LastIndexOf('\n') + 1;
                        if (l > 0 && IsAllWhitespace(body, l)) body = body[..l];
                    }
                    if (body.Length > 0) Add(TokenKind.Text, body, m.Index + m.Length);
                    pos = AfterTagEnd(e.Index + e.Length, e.Groups["b"].Value == "-", e.Groups["b"].Value == "+");
                    continue;
                }
            }
            Add(kind == '{' ? TokenKind.VarBegin : TokenKind.BlockBegin, _src.Substring(i, p - i), i);
            pos = LexTag(p, kind == '{', i);
        }
        Add(TokenKind.Eof, "", n);
    }

    private int AfterTagEnd(int after, bool minus, bool plus)
    {
        if (minus) _pendingLstrip = true;
        else if (!plus && _trimBlocks && after < _src.Length && _src[after] == '\n') after++;
        return after;
    }

    private int LexTag(int p, bool isVar, int tagStart)
    {
        var n = _src.Length;
        var depth = 0;
        while (true)
        {
            while (p < n && char.IsWhiteSpace(_src[p])) p++;
            if (p >= n) throw Error(isVar ? "unterminated '{{': missing '}}'" : "unterminated '{%': missing '%}'", tagStart);
            if (depth == 0)
            {
                var close = isVar ? "}}" : "%}";
                if (string.CompareOrdinal(_src, p, close, 0, 2) == 0)
                {
                    Add(isVar ? TokenKind.VarEnd : TokenKind.BlockEnd, close, p);
                    return isVar ? p + 2 : AfterTagEnd(p + 2, false, false);
                }
                if (_src[p] is '-' or '+' && string.CompareOrdinal(_src, p + 1, close, 0, 2) == 0 && (_src[p] == '-' || !isVar))
                {
                    Add(isVar ? TokenKind.VarEnd : TokenKind.BlockEnd, _src.Substring(p, 3), p);
                    if (isVar) { if (_src[p] == '-') _pendingLstrip = true; return p + 3; }
                    return AfterTagEnd(p + 3, _src[p] == '-', _src[p] == '+');
                }
            }
            var c = _src[p];
            if (char.IsAsciiLetter(c) || c == '_')
            {
                var s = p;
                while (p < n && (char.IsAsciiLetterOrDigit(_src[p]) || _src[p] == '_')) p++;
                Add(TokenKind.Name, _src[s..p], s);
            }
            else if (char.IsAsciiDigit(c)) p = LexNumber(p);
            else if (c is '\'' or '"') p = LexString(p);
            else
            {
                string? op = null;
                if (p + 1 < n)
                {
                    var two = _src.Substring(p, 2);
                    if (two is "//" or "**" or "==" or "!=" or "<=" or ">=") op = two;
                }
                if (op == null && "+-*/%~<>=()[]{},.:|".Contains(c)) op = c.ToString();
                if (op == null) throw Error($"unexpected character '{c}' in template tag", p);
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
                Add(TokenKind.Op, op, p);
                p += op.Length;
            }
        }
    }

    private int LexNumber(int p)
    {
        var s = p;
        var n = _src.Length;
        void Digits() { while (p < n && (char.IsAsciiDigit(_src[p]) || (_src[p] == '_' && p + 1 < n && char.IsAsciiDigit(_src[p + 1])))) p++; }
        Digits();
        var isFloat = false;
        if (p + 1 < n && _src[p] == '.' && char.IsAsciiDigit(_src[p + 1])) { isFloat = true; p++; Digits(); }
        if (p < n && _src[p] is 'e' or 'E')
        {
            var q = p + 1;
            if (q < n && _src[q] is '+' or '-') q++;
            if (q < n && char.IsAsciiDigit(_src[q])) { isFloat = true; p = q; Digits(); }
        }
        var text = _src[s..p].Replace("_", "");
        if (isFloat) Add(TokenKind.Float, text, s, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
        else if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v)) Add(TokenKind.Integer, text, s, v);
        else throw Error($"integer literal {text} is too large", s);
        return p;
    }

    private int LexString(int p)
    {
        var start = p;
        var q = _src[p++];
        var sb = new StringBuilder();
        var n = _src.Length;
        while (true)
        {
            if (p >= n) throw Error("unterminated string literal", start);
            var c = _src[p++];
            if (c == q) break;
            if (c != '\\') { sb.Append(c); continue; }
            if (p >= n) throw Error("unterminated string literal", start);
            var e = _src[p++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case 'a': sb.Append('\a'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break; // line continuation
                case 'x': sb.Append((char)HexEscape(ref p, 2, start)); break;
                case 'u': sb.Append((char)HexEscape(ref p, 4, start)); break;
                case 'U': sb.Append(char.ConvertFromUtf32(HexEscape(ref p, 8, start))); break;
                default: sb.Append('\\').Append(e); break; // Python keeps unknown escapes verbatim
            }
        }
        Add(TokenKind.String, _src[start..p], start, sb.ToString());
        return p;
    }

    private int HexEscape(ref int p, int digits, int start)
    {
        if (p + digits > _src.Length || !int.TryParse(_src.AsSpan(p, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var v))
            throw Error("invalid \\x, \\u or \\U escape in string literal", start);
        p += digits;
        return v;
    }
}
