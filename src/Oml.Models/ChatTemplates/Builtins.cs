using System.Globalization;
using System.Text;

namespace Oml.Models.ChatTemplates;

/// <summary>Operators, attribute access, filters, tests, string/dict methods and global functions.</summary>
internal static partial class Builtins
{
    public static readonly HashSet<string> FilterNames =
    [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "indent", "int",
        "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse",
        "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper",
    ];

    public static readonly HashSet<string> TestNames =
    [
        "defined", "undefined", "none", "string", "mapping", "sequence", "iterable", "number", "integer", "float", "boolean",
        "true", "false", "odd", "even", "divisibleby", "eq", "equalto", "ne", "lt", "lessthan", "le", "gt", "greaterthan", "ge",
        "in", "callable", "lower", "upper", "sameas", "escaped",
    ];

    private static readonly HashSet<string> StrMethods =
    [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "replace", "upper", "lower",
        "title", "capitalize", "find", "rfind", "count", "join", "format", "isdigit", "isalpha", "isalnum", "isspace",
        "isupper", "islower",
    ];

    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get"];
    private static readonly HashSet<string> ListMethods = ["count", "index"];

    // ---------------------------------------------------------------- access

    public static object? GetAttr(object? obj, string attr)
    {
        switch (obj)
        {
            case Undefined u: throw new TemplateError(u.Hint);
            case PyDict d:
                if (DictMethods.Contains(attr)) return new BoundMethod(d, attr);
                return d.TryGetValue(attr, out var v) ? v : Undefined.Attr(obj, attr);
            case Namespace ns:
                return ns.Attrs.TryGetValue(attr, out var nv) ? nv : Undefined.Attr(obj, attr);
            case LoopContext lc:
                return lc.Get(attr);
            case string s:
                return StrMethods.Contains(attr) ? new BoundMethod(s, attr) : Undefined.Attr(obj, attr);
            case List<object?> or object?[]:
                return ListMethods.Contains(attr) ? new BoundMethod(obj, attr) : Undefined.Attr(obj, attr);
            default:
                return Undefined.Attr(obj, attr);
        }
    }

    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined u: throw new TemplateError(u.Hint);
            case PyDict d:
                if (key != null && key is not Undefined && d.TryGetValue(HashableKey(key), out var v)) return v;
                return key is string ks ? GetAttr(obj, ks) : Undefined.Attr(obj, key);
            case IList<object?> l when Py.IsNumber(key) && key is not double:
            {
                var i = Py.ToLong(key);
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : Undefined.Attr(obj, key);
            }
            case string s when Py.IsNumber(key) && key is not double:
            {
                var i = Py.ToLong(key);
                if (!Py.HasSurrogates(s))
                {
                    if (i < 0) i += s.Length;
                    return i >= 0 && i < s.Length ? s[(int)i].ToString() : Undefined.Attr(obj, key);
                }
                var cps = Py.CodePoints(s);
                if (i < 0) i += cps.Length;
                return i >= 0 && i < cps.Length ? char.ConvertFromUtf32(cps[i]) : Undefined.Attr(obj, key);
            }
            default:
                return key is string attr ? GetAttr(obj, attr) : Undefined.Attr(obj, key);
        }
    }

    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        if (obj is Undefined u) throw new TemplateError(u.Hint);
        long? Opt(object? x) => x == null ? null : (x is long || x is bool) ? Py.ToLong(x) : throw new TemplateError("slice indices must be integers or None");
        var st = Opt(step) ?? 1;
        if (st == 0) throw new TemplateError("slice step cannot be zero");
        List<int> Indices(int len)
        {
            long s0, e0;
            var a = Opt(start);
            var b = Opt(stop);
            if (st > 0)
            {
                s0 = a == null ? 0 : a < 0 ? Math.Max(0, a.Value + len) : Math.Min(a.Value, len);
                e0 = b == null ? len : b < 0 ? Math.Max(0, b.Value + len) : Math.Min(b.Value, len);
            }
            else
            {
                s0 = a == null ? len - 1 : a < 0 ? Math.Max(-1, a.Value + len) : Math.Min(a.Value, len - 1);
                e0 = b == null ? -1 : b < 0 ? Math.Max(-1, b.Value + len) : Math.Min(b.Value, len - 1);
            }
            var r = new List<int>();
            for (var i = s0; st > 0 ? i < e0 : i > e0; i += st) r.Add((int)i);
            return r;
        }
        switch (obj)
        {
            case List<object?> l: return Indices(l.Count).Select(i => l[i]).ToList();
            case object?[] t: return Indices(t.Length).Select(i => t[i]).ToArray();
            case string s:
            {
                var cps = Py.CodePoints(s);
                return Py.FromCodePoints(Indices(cps.Length).Select(i => cps[i]));
            }
            default: throw new TemplateError($"'{Py.TypeName(obj)}' object is not subscriptable");
        }
    }

    public static List<object?> Iterate(object? v) => v switch
    {
        Undefined => [],
        List<object?> l => [.. l],
        object?[] t => [.. t],
        PyDict d => [.. d.Keys],
        string s => Py.HasSurrogates(s) ? s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList() : s.Select(c => (object?)c.ToString()).ToList(),
        _ => throw new TemplateError($"'{Py.TypeName(v)}' object is not iterable"),
    };

    public static object HashableKey(object? k) => k switch
    {
        null => throw new TemplateError("None as a dict key is not supported"),
        string or long or double or bool => k,
        object?[] t => t,
        _ => throw new TemplateError($"unhashable type: '{Py.TypeName(k)}'"),
    };

    private static int Len(object? v) => v switch
    {
        string s => Py.Len(s),
        IList<object?> l => l.Count,
        PyDict d => d.Count,
        Namespace ns => ns.Attrs.Count,
        Undefined => 0,
        _ => throw new TemplateError($"object of type '{Py.TypeName(v)}' has no len()"),
    };

    // ---------------------------------------------------------------- operators

    public static object? BinOp(string op, object? a, object? b)
    {
        if (op == "~") return Py.Str(a) + Py.Str(b);
        if (a is Undefined ua) throw new TemplateError(ua.Hint);
        if (b is Undefined ub) throw new TemplateError(ub.Hint);
        if (Py.IsNumber(a) && Py.IsNumber(b))
        {
            var isFloat = a is double || b is double;
            if (op == "/")
            {
                var den = Py.ToDouble(b);
                if (den == 0) throw new TemplateError("division by zero");
                return Py.ToDouble(a) / den;
            }
            if (isFloat)
            {
                double x = Py.ToDouble(a), y = Py.ToDouble(b);
                switch (op)
                {
                    case "+": return x + y;
                    case "-": return x - y;
                    case "*": return x * y;
                    case "**": return Math.Pow(x, y);
                    case "//": if (y == 0) throw new TemplateError("float floor division by zero"); return Math.Floor(x / y);
                    case "%":
                        if (y == 0) throw new TemplateError("float modulo");
                        var m = x % y;
                        return m != 0 && (m < 0) != (y < 0) ? m + y : m;
                }
            }
            else
            {
                long x = Py.ToLong(a), y = Py.ToLong(b);
                switch (op)
                {
                    case "+": return checked(x + y);
                    case "-": return checked(x - y);
                    case "*": return checked(x * y);
                    case "**":
                        if (y < 0) return Math.Pow(x, y);
                        long r = 1;
                        for (long i = 0; i < y; i++) r = checked(r * x);
                        return r;
                    case "//":
                    {
                        if (y == 0) throw new TemplateError("integer division or modulo by zero");
                        var q = x / y;
                        return (x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q;
                    }
                    case "%":
                    {
                        if (y == 0) throw new TemplateError("integer division or modulo by zero");
                        var m = x % y;
                        return m != 0 && (m < 0) != (y < 0) ? m + y : m;
                    }
                }
            }
        }
        switch (op)
        {
            case "+" when a is string sa && b is string sb: return sa + sb;
            case "+" when a is List<object?> la && b is List<object?> lb: return la.Concat(lb).ToList();
            case "+" when a is object?[] ta && b is object?[] tb: return ta.Concat(tb).ToArray();
            case "*" when a is string s && b is long or bool: return Repeat(s, Py.ToLong(b));
            case "*" when b is string s && a is long or bool: return Repeat(s, Py.ToLong(a));
            case "*" when a is List<object?> l && b is long or bool: return RepeatList(l, Py.ToLong(b));
            case "%" when a is string: throw new TemplateError("printf-style string formatting ('%' on a string) is not supported");
        }
        throw new TemplateError($"unsupported operand type(s) for {op}: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
    }

    private static string Repeat(string s, long n)
    {
        if (n <= 0) return "";
        if (s.Length * n > 10_000_000) throw new TemplateError("string repetition too large");
        return string.Concat(Enumerable.Repeat(s, (int)n));
    }

    private static List<object?> RepeatList(List<object?> l, long n)
    {
        var r = new List<object?>();
        for (var i = 0; i < n; i++) r.AddRange(l);
        return r;
    }

    public static bool CompareOp(string op, object? a, object? b) => op switch
    {
        "==" => Py.Eq(a, b),
        "!=" => !Py.Eq(a, b),
        "<" => Py.Compare(a, b, op) < 0,
        "<=" => Py.Compare(a, b, op) <= 0,
        ">" => Py.Compare(a, b, op) > 0,
        ">=" => Py.Compare(a, b, op) >= 0,
        "in" => Contains(b, a),
        "notin" => !Contains(b, a),
        _ => throw new TemplateError($"unknown comparison operator {op}"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : item is Undefined u ? throw new TemplateError(u.Hint)
            : throw new TemplateError($"'in <string>' requires string as left operand, not {Py.TypeName(item)}"),
        IList<object?> l => l.Any(x => Py.Eq(x, item)),
        PyDict d => item != null && item is not Undefined && item is string or long or double or bool or object?[] && d.ContainsKey(item),
        Undefined => false,
        _ => throw new TemplateError($"argument of type '{Py.TypeName(container)}' is not iterable"),
    };

    // ---------------------------------------------------------------- tests

    public static bool Test(string name, object? v, Args a)
    {
        bool Done(bool r) { a.Done(); return r; }
        switch (name)
        {
            case "defined": return Done(v is not Undefined);
            case "undefined": return Done(v is Undefined);
            case "none": return Done(v == null);
            case "string": return Done(v is string);
            case "mapping": return Done(v is PyDict);
            case "sequence": return Done(v is string or IList<object?> or PyDict or Undefined);
            case "iterable": return Done(v is string or IList<object?> or PyDict or Undefined);
            case "number": return Done(v is long or double or bool);
            case "integer": return Done(v is long);
            case "float": return Done(v is double);
            case "boolean": return Done(v is bool);
            case "true": return Done(v is true);
            case "false": return Done(v is false);
            case "callable": return Done(v is ICallable);
            case "escaped": return Done(false);
            case "odd": return Done(Py.ToLong(v) % 2 != 0);
            case "even": return Done(Py.ToLong(v) % 2 == 0);
#pragma warning disable CA1862 // Jinja's lower/upper tests: the string equals its lower/upper-cased form (not a case-insensitive comparison)
            case "lower": return Done(v is string ls && ls == ls.ToLowerInvariant());
            case "upper": return Done(v is string us && us == us.ToUpperInvariant());
#pragma warning restore CA1862
            case "divisibleby":
            {
                var n = a.Required(0, "num");
                a.Done();
                return Py.Eq(BinOp("%", v, n), 0L);
            }
        }
        var other = a.Required(0, name is "in" ? "seq" : "other");
        a.Done();
        return name switch
        {
            "eq" or "equalto" => Py.Eq(v, other),
            "ne" => !Py.Eq(v, other),
            "lt" or "lessthan" => Py.Compare(v, other, "<") < 0,
            "le" => Py.Compare(v, other, "<=") <= 0,
            "gt" or "greaterthan" => Py.Compare(v, other, ">") > 0,
            "ge" => Py.Compare(v, other, ">=") >= 0,
            "in" => Contains(other, v),
            // identity: values of immutable types compare by value (CPython interns small ints and short strings)
            "sameas" => ReferenceEquals(v, other) || (v == null && other == null) || (v is bool bv && other is bool bo && bv == bo)
                        || (v is string sv && other is string so && sv == so) || (v is long lv && other is long lo && lv == lo),
            _ => throw new TemplateError($"unsupported test '{name}'"),
        };
    }

    // ---------------------------------------------------------------- globals

    public static void AddGlobals(Scope g, Func<DateTime> clock)
    {
        g.Vars["range"] = new BuiltinFunction("range", (args, kw) =>
        {
            if (kw.Count > 0) throw new TemplateError("range() takes no keyword arguments");
            long start = 0, stop, step = 1;
            switch (args.Count)
            {
                case 1: stop = Py.ToLong(args[0]); break;
                case 2: start = Py.ToLong(args[0]); stop = Py.ToLong(args[1]); break;
                case 3: start = Py.ToLong(args[0]); stop = Py.ToLong(args[1]); step = Py.ToLong(args[2]); break;
                default: throw new TemplateError($"range expected 1 to 3 arguments, got {args.Count}");
            }
            if (step == 0) throw new TemplateError("range() arg 3 must not be zero");
            var r = new List<object?>();
            for (var i = start; step > 0 ? i < stop : i > stop; i += step)
            {
                r.Add(i);
                if (r.Count > 100_000) throw new TemplateError("range too big, maximum size for range is 100000");
            }
            return r;
        });
        g.Vars["namespace"] = new BuiltinFunction("namespace", (args, kw) =>
        {
            var ns = new Namespace();
            foreach (var a in args)
            {
                if (a is not PyDict d) throw new TemplateError("namespace() positional arguments must be mappings");
                foreach (var (k, v) in d) ns.Attrs[Py.Str(k)] = v;
            }
            foreach (var (k, v) in kw) ns.Attrs[k] = v;
            return ns;
        });
        g.Vars["dict"] = new BuiltinFunction("dict", (args, kw) =>
        {
            var d = new PyDict();
            foreach (var a in args)
            {
                if (a is not PyDict src) throw new TemplateError("dict() positional arguments must be mappings");
                foreach (var (k, v) in src) d[k] = v;
            }
            foreach (var (k, v) in kw) d[k] = v;
            return d;
        });
        g.Vars["raise_exception"] = new BuiltinFunction("raise_exception", (args, kw) =>
        {
            var a = new Args("raise_exception", args, kw);
            var msg = a.Required(0, "message");
            a.Done();
            throw new TemplateRaise(Py.Str(msg));
        });
        g.Vars["strftime_now"] = new BuiltinFunction("strftime_now", (args, kw) =>
        {
            var a = new Args("strftime_now", args, kw);
            var fmt = a.Required(0, "format") as string ?? throw new TemplateError("strftime_now() format must be a string");
            a.Done();
            return Strftime(clock(), fmt);
        });
    }

    private static readonly string[] Months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    private static readonly string[] Days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    /// <summary>Python's datetime.strftime for the C-locale directives (plus glibc's '-' no-padding flag).</summary>
    public static string Strftime(DateTime t, string fmt)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < fmt.Length; i++)
        {
            if (fmt[i] != '%' || i + 1 >= fmt.Length) { sb.Append(fmt[i]); continue; }
            var c = fmt[++i];
            var noPad = false;
            if (c == '-' && i + 1 < fmt.Length) { noPad = true; c = fmt[++i]; }
            string P(int v, int w) => noPad ? v.ToString(CultureInfo.InvariantCulture) : v.ToString(new string('0', w), CultureInfo.InvariantCulture);
            var h12 = t.Hour % 12 == 0 ? 12 : t.Hour % 12;
            sb.Append(c switch
            {
                'd' => P(t.Day, 2),
                'm' => P(t.Month, 2),
                'Y' => t.Year.ToString(CultureInfo.InvariantCulture),
                'y' => P(t.Year % 100, 2),
                'H' => P(t.Hour, 2),
                'I' => P(h12, 2),
                'M' => P(t.Minute, 2),
                'S' => P(t.Second, 2),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' or 'h' => Months[t.Month - 1][..3],
                'B' => Months[t.Month - 1],
                'a' => Days[(int)t.DayOfWeek][..3],
                'A' => Days[(int)t.DayOfWeek],
                'w' => ((int)t.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'j' => P(t.DayOfYear, 3),
                'e' => t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'F' => t.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                'T' => t.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => throw new TemplateError($"strftime_now: unsupported directive '%{c}'"),
            });
        }
        return sb.ToString();
    }
}
