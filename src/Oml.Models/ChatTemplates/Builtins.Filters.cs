using System.Globalization;
using System.Text;

namespace Oml.Models.ChatTemplates;

internal static partial class Builtins
{
    private static string StrArg(object? v, string what) => v as string ?? throw new TemplateError($"{what} must be a string, not {Py.TypeName(v)}");

    public static object? Filter(Interpreter interp, string name, object? v, Args a)
    {
        switch (name)
        {
            case "trim":
            {
                var chars = a.Get(0, "chars");
                a.Done();
                return Strip(Py.Str(v), chars, true, true);
            }
            case "tojson":
            {
                var ensureAscii = a.Get(0, "ensure_ascii", false);
                var indent = a.Get(1, "indent");
                var separators = a.Get(2, "separators");
                var sortKeys = a.Get(3, "sort_keys", false);
                a.Done();
                return JsonDumps.Dumps(v, indent, separators, Py.Truthy(sortKeys), Py.Truthy(ensureAscii));
            }
            case "length" or "count":
                a.Done();
                return (long)Len(v);
            case "lower": a.Done(); return Py.Str(v).ToLowerInvariant();
            case "upper": a.Done(); return Py.Str(v).ToUpperInvariant();
            case "capitalize": a.Done(); return Capitalize(Py.Str(v));
            case "title": a.Done(); return JinjaTitle(Py.Str(v));
            case "default" or "d":
            {
                var dflt = a.Get(0, "default_value", "");
                var boolean = Py.Truthy(a.Get(1, "boolean", false));
                a.Done();
                return v is Undefined || (boolean && !Py.Truthy(v)) ? dflt : v;
            }
            case "first":
            {
                a.Done();
                var items = Iterate(v);
                return items.Count > 0 ? items[0] : new Undefined("No first item, sequence was empty.");
            }
            case "last":
            {
                a.Done();
                var items = Iterate(v);
                return items.Count > 0 ? items[^1] : new Undefined("No last item, sequence was empty.");
            }
            case "join":
            {
                var sep = Py.Str(a.Get(0, "d", ""));
                var attr = a.Get(1, "attribute");
                a.Done();
                var items = Iterate(v);
                if (attr != null) items = items.Select(x => AttrPath(x, attr)).ToList();
                return string.Join(sep, items.Select(Py.Str));
            }
            case "replace":
            {
                var old = Py.Str(a.Required(0, "old"));
                var @new = Py.Str(a.Required(1, "new"));
                var count = a.Get(2, "count");
                a.Done();
                return PyReplace(Py.Str(v), old, @new, count == null ? -1 : Py.ToLong(count));
            }
            case "string": a.Done(); return Py.Str(v);
            case "safe": a.Done(); return Py.Str(v);
            case "e" or "escape": a.Done(); return HtmlEscape(Py.Str(v));
            case "int":
            {
                var dflt = a.Get(0, "default", 0L);
                var bas = Py.ToLong(a.Get(1, "base", 10L));
                a.Done();
                return ToInt(v, dflt, (int)bas);
            }
            case "float":
            {
                var dflt = a.Get(0, "default", 0.0);
                a.Done();
                return v switch
                {
                    double d => d,
                    long or bool => Py.ToDouble(v),
                    string s when double.TryParse(s.Trim().Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
                    _ => dflt,
                };
            }
            case "abs":
                a.Done();
                return v switch
                {
                    long l => (object)Math.Abs(l),
                    double d => Math.Abs(d),
                    bool b => b ? 1L : 0L,
                    _ => throw new TemplateError($"bad operand type for abs(): '{Py.TypeName(v)}'"),
                };
            case "round":
            {
                var precision = (int)Py.ToLong(a.Get(0, "precision", 0L));
                var method = Py.Str(a.Get(1, "method", "common"));
                a.Done();
                var x = Py.ToDouble(v);
                var f = Math.Pow(10, precision);
                return method switch
                {
                    "common" => Math.Round(x, precision, MidpointRounding.ToEven),
                    "ceil" => Math.Ceiling(x * f) / f,
                    "floor" => Math.Floor(x * f) / f,
                    _ => throw new TemplateError("method must be common, ceil or floor"),
                };
            }
            case "list": a.Done(); return Iterate(v);
            case "items":
            {
                a.Done();
                return v switch
                {
                    Undefined => new List<object?>(),
                    PyDict d => d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList(),
                    _ => throw new TemplateError("Can only get item pairs from a mapping."),
                };
            }
            case "dictsort":
            {
                var cs = Py.Truthy(a.Get(0, "case_sensitive", false));
                var by = Py.Str(a.Get(1, "by", "key"));
                var rev = Py.Truthy(a.Get(2, "reverse", false));
                a.Done();
                if (v is not PyDict d) throw new TemplateError("dictsort filter requires a mapping");
                var pos = by == "key" ? 0 : by == "value" ? 1 : throw new TemplateError("You can only sort by either \"key\" or \"value\"");
                var items = d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList();
                return SortBy(items, x => SortKey(((object?[])x!)[pos], cs), rev);
            }
            case "sort":
            {
                var rev = Py.Truthy(a.Get(0, "reverse", false));
                var cs = Py.Truthy(a.Get(1, "case_sensitive", false));
                var attr = a.Get(2, "attribute");
                a.Done();
                return SortBy(Iterate(v), x => SortKey(attr == null ? x : AttrPath(x, attr), cs), rev);
            }
            case "unique":
            {
                var cs = Py.Truthy(a.Get(0, "case_sensitive", false));
                var attr = a.Get(1, "attribute");
                a.Done();
                var seen = new List<object?>();
                var r = new List<object?>();
                foreach (var x in Iterate(v))
                {
                    var k = SortKey(attr == null ? x : AttrPath(x, attr), cs);
                    if (seen.Any(s => Py.Eq(s, k))) continue;
                    seen.Add(k);
                    r.Add(x);
                }
                return r;
            }
            case "min" or "max":
            {
                var cs = Py.Truthy(a.Get(0, "case_sensitive", false));
                var attr = a.Get(1, "attribute");
                a.Done();
                var items = Iterate(v);
                if (items.Count == 0) return new Undefined($"No aggregated item, sequence was empty.");
                var sorted = SortBy(items, x => SortKey(attr == null ? x : AttrPath(x, attr), cs), false);
                return name == "min" ? sorted[0] : sorted[^1];
            }
            case "sum":
            {
                var attr = a.Get(0, "attribute");
                object? acc = a.Get(1, "start", 0L);
                a.Done();
                foreach (var x in Iterate(v)) acc = BinOp("+", acc, attr == null ? x : AttrPath(x, attr));
                return acc;
            }
            case "reverse":
            {
                a.Done();
                if (v is string s) return Py.FromCodePoints(Py.CodePoints(s).Reverse());
                var items = Iterate(v);
                items.Reverse();
                return items;
            }
            case "attr":
            {
                var attr = StrArg(a.Required(0, "name"), "attribute name");
                a.Done();
                return GetAttr(v, attr);
            }
            case "indent":
            {
                var width = a.Get(0, "width", 4L);
                var first = Py.Truthy(a.Get(1, "first", false));
                var blank = Py.Truthy(a.Get(2, "blank", false));
                a.Done();
                return Indent(Py.Str(v), width is string ws ? ws : new string(' ', (int)Py.ToLong(width)), first, blank);
            }
            case "map":
            {
                var items = Iterate(v);
                if (a.Positional.Count == 0)
                {
                    var attr = a.Required(0, "attribute");
                    var hasDefault = a.Has(99, "default");
                    var dflt = a.Get(99, "default");
                    a.Done();
                    return items.Select(x =>
                    {
                        var r = AttrPath(x, attr);
                        return hasDefault && r is Undefined ? dflt : r;
                    }).ToList();
                }
                var filterName = StrArg(a.Positional[0], "map filter name");
                if (!FilterNames.Contains(filterName)) throw new TemplateError($"unsupported filter '{filterName}'");
                var rest = new Args(filterName, a.Positional.Skip(1).ToList(), a.Keywords);
                return items.Select(x => Filter(interp, filterName, x, new Args(filterName, rest.Positional, rest.Keywords))).ToList();
            }
            case "select" or "reject" or "selectattr" or "rejectattr":
            {
                var byAttr = name.EndsWith("attr");
                var select = name.StartsWith("select");
                var items = Iterate(v);
                if (a.Keywords.Count > 0) throw new TemplateError($"{name}() takes no keyword arguments");
                var idx = 0;
                object? attr = null;
                if (byAttr)
                {
                    if (a.Positional.Count == 0) throw new TemplateError($"{name}() missing required argument 'attribute'");
                    attr = a.Positional[idx++];
                }
                string? test = null;
                if (a.Positional.Count > idx)
                {
                    test = StrArg(a.Positional[idx++], "test name");
                    if (!TestNames.Contains(test)) throw new TemplateError($"unsupported test '{test}'");
                }
                var testArgs = a.Positional.Skip(idx).ToList();
                return items.Where(x =>
                {
                    var val = byAttr ? AttrPath(x, attr) : x;
                    var ok = test == null ? Py.Truthy(val) : Test(test, val, new Args(test, testArgs, []));
                    return ok == select;
                }).ToList();
            }
            default:
                throw new TemplateError($"unsupported filter '{name}'");
        }
    }

    private static object? AttrPath(object? x, object? attr)
    {
        if (attr is long) return GetItem(x, attr);
        foreach (var part in StrArg(attr, "attribute").Split('.'))
        {
            if (x is Undefined) return x;
            x = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? GetItem(x, i) : GetItem(x, part);
        }
        return x;
    }

    private static object? SortKey(object? x, bool caseSensitive) => !caseSensitive && x is string s ? s.ToLowerInvariant() : x;

    private static List<object?> SortBy(List<object?> items, Func<object?, object?> key, bool reverse)
    {
        var keyed = items.Select((x, i) => (Key: key(x), Item: x, Index: i)).ToList();
        keyed.Sort((p, q) =>
        {
            var c = Py.Compare(p.Key, q.Key, "<");
            if (reverse) c = -c;
            return c != 0 ? c : p.Index.CompareTo(q.Index); // stable
        });
        return keyed.Select(k => k.Item).ToList();
    }

    private static object? ToInt(object? v, object? dflt, int bas)
    {
        switch (v)
        {
            case long l: return l;
            case bool b: return b ? 1L : 0L;
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : dflt;
            case string s:
            {
                var t = s.Trim().Replace("_", "");
                try
                {
                    if (bas == 10 && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return l;
                    if (bas != 10 && t.Length > 0) return Convert.ToInt64(t, bas);
                }
                catch (Exception e) when (e is FormatException or ArgumentException or OverflowException) { }
                return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? (long)Math.Truncate(d) : dflt;
            }
            default: return dflt;
        }
    }

    private static string Indent(string s, string ind, bool first, bool blank)
    {
        s += "\n";
        var lines = s.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n').ToList();
        lines.RemoveAt(lines.Count - 1); // splitlines() drops the trailing empty piece
        string rv;
        if (blank) rv = string.Join("\n" + ind, lines);
        else
        {
            rv = lines[0];
            if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? ind + l : l));
        }
        return first ? ind + rv : rv;
    }

    private static string HtmlEscape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")
        .Replace("\"", "&#34;").Replace("'", "&#39;");

    private static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Jinja's title filter: capitalises each word, where words start after whitespace, '-', or an opening bracket.</summary>
    private static string JinjaTitle(string s)
    {
        var sb = new StringBuilder();
        var start = true;
        foreach (var c in s)
        {
            if (char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<') { sb.Append(c); start = true; continue; }
            sb.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = false;
        }
        return sb.ToString();
    }

    /// <summary>Python's str.title: uppercase after any non-letter, lowercase after a letter.</summary>
    private static string PyTitle(string s)
    {
        var sb = new StringBuilder();
        var prevCased = false;
        foreach (var c in s)
        {
            sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            prevCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    private static bool IsPyWhitespace(int c) => c is >= 0x1c and <= 0x1f || (c <= 0xFFFF && char.IsWhiteSpace((char)c));

    public static string Strip(string s, object? chars, bool left, bool right)
    {
        Func<int, bool> strip;
        if (chars == null) strip = IsPyWhitespace;
        else
        {
            var set = Py.CodePoints(StrArg(chars, "strip argument")).ToHashSet();
            strip = set.Contains;
        }
        var cps = Py.HasSurrogates(s) ? Py.CodePoints(s) : null;
        var n = cps?.Length ?? s.Length;
        int At(int i) => cps != null ? cps[i] : s[i];
        int b = 0, e = n;
        if (left) while (b < e && strip(At(b))) b++;
        if (right) while (e > b && strip(At(e - 1))) e--;
        return cps != null ? Py.FromCodePoints(cps[b..e]) : s[b..e];
    }

    private static string PyReplace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertBetween(s, @new, long.MaxValue) : s.Replace(old, @new, StringComparison.Ordinal);
        if (old.Length == 0) return InsertBetween(s, @new, count);
        var sb = new StringBuilder();
        var pos = 0;
        for (long k = 0; k < count; k++)
        {
            var i = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (i < 0) break;
            sb.Append(s, pos, i - pos).Append(@new);
            pos = i + old.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    private static string InsertBetween(string s, string ins, long count)
    {
        var sb = new StringBuilder();
        long k = 0;
        if (k++ < count) sb.Append(ins);
        foreach (var r in s.EnumerateRunes())
        {
            sb.Append(r.ToString());
            if (k++ < count) sb.Append(ins);
        }
        return sb.ToString();
    }

    // ---------------------------------------------------------------- methods

    public static object? CallMethod(object self, string name, Args a)
    {
        switch (self)
        {
            case string s: return StrMethod(s, name, a);
            case PyDict d:
                switch (name)
                {
                    case "items": a.Done(); return d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList();
                    case "keys": a.Done(); return d.Keys.Cast<object?>().ToList();
                    case "values": a.Done(); return d.Values.ToList();
                    case "get":
                    {
                        var k = a.Required(0, "key");
                        var dflt = a.Get(1, "default");
                        a.Done();
                        return k != null && k is not Undefined && d.TryGetValue(HashableKey(k), out var v) ? v : dflt;
                    }
                }
                break;
            case IList<object?> l:
                switch (name)
                {
                    case "count": { var x = a.Required(0, "value"); a.Done(); return (long)l.Count(y => Py.Eq(x, y)); }
                    case "index":
                    {
                        var x = a.Required(0, "value");
                        a.Done();
                        for (var i = 0; i < l.Count; i++) if (Py.Eq(l[i], x)) return (long)i;
                        throw new TemplateError($"{Py.Repr(x)} is not in list");
                    }
                }
                break;
        }
        throw new TemplateError($"unsupported method '{name}' of '{Py.TypeName(self)}' object");
    }

    private static object? StrMethod(string s, string name, Args a)
    {
        switch (name)
        {
            case "strip" or "lstrip" or "rstrip":
            {
                var chars = a.Get(0, "chars");
                a.Done();
                return Strip(s, chars, name != "rstrip", name != "lstrip");
            }
            case "upper": a.Done(); return s.ToUpperInvariant();
            case "lower": a.Done(); return s.ToLowerInvariant();
            case "title": a.Done(); return PyTitle(s);
            case "capitalize": a.Done(); return Capitalize(s);
            case "startswith" or "endswith":
            {
                var p = a.Required(0, "prefix");
                a.Done();
                var options = p is object?[] t ? t.Select(x => StrArg(x, name + " argument")) : [StrArg(p, name + " argument")];
                return options.Any(o => name == "startswith" ? s.StartsWith(o, StringComparison.Ordinal) : s.EndsWith(o, StringComparison.Ordinal));
            }
            case "split" or "rsplit":
            {
                var sep = a.Get(0, "sep");
                var max = Py.ToLong(a.Get(1, "maxsplit", -1L));
                a.Done();
                return Split(s, sep == null ? null : StrArg(sep, "separator"), max, name == "rsplit");
            }
            case "splitlines":
            {
                var keep = Py.Truthy(a.Get(0, "keepends", false));
                a.Done();
                var r = new List<object?>();
                var start = 0;
                for (var i = 0; i < s.Length; i++)
                {
                    if (s[i] is not ('\n' or '\r')) continue;
                    var end = i;
                    if (s[i] == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
                    r.Add(keep ? s[start..(i + 1)] : s[start..end]);
                    start = i + 1;
                }
                if (start < s.Length) r.Add(s[start..]);
                return r;
            }
            case "replace":
            {
                var old = StrArg(a.Required(0, "old"), "replace() argument 1");
                var @new = StrArg(a.Required(1, "new"), "replace() argument 2");
                var count = Py.ToLong(a.Get(2, "count", -1L));
                a.Done();
                return PyReplace(s, old, @new, count);
            }
            case "find" or "rfind":
            {
                var sub = StrArg(a.Required(0, "sub"), name + "() argument");
                a.Done();
                var i = name == "find" ? s.IndexOf(sub, StringComparison.Ordinal) : s.LastIndexOf(sub, StringComparison.Ordinal);
                return i < 0 ? -1L : (long)Py.Len(s[..i]);
            }
            case "count":
            {
                var sub = StrArg(a.Required(0, "sub"), "count() argument");
                a.Done();
                if (sub.Length == 0) return (long)Py.Len(s) + 1;
                long c = 0;
                for (var i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) c++;
                return c;
            }
            case "join":
            {
                var items = Iterate(a.Required(0, "iterable"));
                a.Done();
                return string.Join(s, items.Select(x => x as string ?? throw new TemplateError($"sequence item: expected str instance, {Py.TypeName(x)} found")));
            }
            case "format": return Format(s, a);
            case "isdigit": a.Done(); return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": a.Done(); return s.Length > 0 && s.All(char.IsLetter);
            case "isalnum": a.Done(); return s.Length > 0 && s.All(char.IsLetterOrDigit);
            case "isspace": a.Done(); return s.Length > 0 && s.All(c => IsPyWhitespace(c));
#pragma warning disable CA1862 // Python's isupper/islower: the string equals its upper/lower-cased form (not a case-insensitive comparison)
            case "isupper": a.Done(); return s.Any(char.IsLetter) && s.ToUpperInvariant() == s;
            case "islower": a.Done(); return s.Any(char.IsLetter) && s.ToLowerInvariant() == s;
#pragma warning restore CA1862
        }
        throw new TemplateError($"unsupported method '{name}' of 'str' object");
    }

    private static List<object?> Split(string s, string? sep, long max, bool fromRight)
    {
        if (sep == "") throw new TemplateError("empty separator");
        var parts = new List<object?>();
        if (sep == null)
        {
            var words = new List<(int Start, int End)>();
            var i = 0;
            while (i < s.Length)
            {
                while (i < s.Length && IsPyWhitespace(s[i])) i++;
                if (i >= s.Length) break;
                var st = i;
                while (i < s.Length && !IsPyWhitespace(s[i])) i++;
                words.Add((st, i));
            }
            if (max < 0 || words.Count <= max + 1) return words.Select(w => (object?)s[w.Start..w.End]).ToList();
            if (!fromRight)
            {
                for (var k = 0; k < max; k++) parts.Add(s[words[k].Start..words[k].End]);
                parts.Add(s[words[(int)max].Start..].TrimEnd());
            }
            else
            {
                var keep = words.Count - (int)max;
                parts.Add(s[..words[keep - 1].End].TrimStart());
                for (var k = keep; k < words.Count; k++) parts.Add(s[words[k].Start..words[k].End]);
            }
            return parts;
        }
        var all = s.Split(sep);
        if (max < 0 || all.Length <= max + 1) return all.Cast<object?>().ToList();
        if (!fromRight)
        {
            parts.AddRange(all.Take((int)max));
            parts.Add(string.Join(sep, all.Skip((int)max)));
        }
        else
        {
            parts.Add(string.Join(sep, all.Take(all.Length - (int)max)));
            parts.AddRange(all.Skip(all.Length - (int)max));
        }
        return parts;
    }

    /// <summary>str.format with positional '{}' / '{0}' and keyword '{name}' fields; format specs are rejected.</summary>
    private static string Format(string s, Args a)
    {
        var sb = new StringBuilder();
        var auto = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{') { sb.Append(c); continue; }
            var end = s.IndexOf('}', i);
            if (end < 0) throw new TemplateError("Single '{' encountered in format string");
            var field = s[(i + 1)..end];
            if (field.Contains(':') || field.Contains('!') || field.Contains('.') || field.Contains('['))
                throw new TemplateError($"str.format: field '{{{field}}}' with a conversion or format spec is not supported");
            object? v;
            if (field.Length == 0) v = auto < a.Positional.Count ? a.Positional[auto++] : throw new TemplateError("str.format: not enough positional arguments");
            else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out var idx))
                v = idx < a.Positional.Count ? a.Positional[idx] : throw new TemplateError($"str.format: no positional argument {idx}");
            else
            {
                var kw = a.Keywords.FindIndex(k => k.Name == field);
                v = kw >= 0 ? a.Keywords[kw].Value : throw new TemplateError($"str.format: no keyword argument '{field}'");
            }
            sb.Append(Py.Str(v));
            i = end;
        }
        return sb.ToString();
    }
}
