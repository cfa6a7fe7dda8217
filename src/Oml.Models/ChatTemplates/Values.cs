using System.Globalization;
using System.Text;

namespace Oml.Models.ChatTemplates;

/// <summary>Jinja2's default Undefined: falsy, renders as "", iterates as empty; most other uses raise.</summary>
internal sealed class Undefined(string hint)
{
    public string Hint { get; } = hint;
    public static Undefined Named(string name) => new($"'{name}' is undefined");
    public static Undefined Attr(object? obj, object? attr) => new($"'{Py.TypeName(obj)} object' has no attribute {Py.Repr(attr)}");
}

/// <summary>An insertion-ordered dict with Python key equality (1 == 1.0 == True).</summary>
internal sealed class PyDict : OrderedDictionary<object, object?>
{
    public PyDict() : base(KeyComparer.Instance) { }

    private sealed class KeyComparer : IEqualityComparer<object>
    {
        public static readonly KeyComparer Instance = new();
        public new bool Equals(object? x, object? y) => Py.Eq(x, y);
        public int GetHashCode(object o) => o switch
        {
            string s => StringComparer.Ordinal.GetHashCode(s),
            bool b => b ? 1 : 0,
            long l => l.GetHashCode(),
            double d => d == Math.Floor(d) && Math.Abs(d) < 9e18 ? ((long)d).GetHashCode() : d.GetHashCode(),
            object?[] t => t.Aggregate(17, (h, x) => h * 31 + (x == null ? 0 : GetHashCode(x))),
            _ => o.GetHashCode(),
        };
    }
}

/// <summary>The object <c>namespace(...)</c> returns: attributes that <c>{% set ns.x = ... %}</c> may change.</summary>
internal sealed class Namespace
{
    public Dictionary<string, object?> Attrs { get; } = new(StringComparer.Ordinal);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopContext(IReadOnlyList<object?> items)
{
    public IReadOnlyList<object?> Items { get; } = items;
    public int Index0 { get; set; }

    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("loop.cycle", (a, _) =>
        {
            if (a.Count == 0) throw new TemplateError("no items for cycling given");
            return a[Index0 % a.Count];
        }),
        _ => Undefined.Attr(this, name),
    };
}

/// <summary>Anything a template can call.</summary>
internal interface ICallable
{
    object? Call(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs);
}

internal sealed class BuiltinFunction(string name, Func<List<object?>, List<(string Name, object? Value)>, object?> fn) : ICallable
{
    public string Name { get; } = name;
    public object? Call(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs) => fn(args, kwargs);
}

/// <summary>A method looked up on a value (<c>s.strip</c>, <c>d.items</c>); calling it dispatches to <see cref="Builtins.CallMethod"/>.</summary>
internal sealed class BoundMethod(object self, string name) : ICallable
{
    public object Self { get; } = self;
    public string Name { get; } = name;
    public object? Call(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs)
        => Builtins.CallMethod(Self, Name, new Args(Name, args, kwargs));
}

/// <summary>A runtime error without a position yet; the interpreter attaches the position of the node being evaluated.</summary>
internal sealed class TemplateError(string message) : Exception(message);

/// <summary>Python semantics for the value model: null (None), bool, long, double, string, List (list), object?[] (tuple),
/// PyDict, Namespace, LoopContext, Undefined, ICallable.</summary>
internal static class Py
{
    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        PyDict => "dict",
        Namespace => "Namespace",
        LoopContext => "LoopContext",
        Undefined => "Undefined",
        BoundMethod => "builtin_function_or_method",
        ICallable => "function",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v) => v switch
    {
        null => false,
        Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        IList<object?> l => l.Count > 0,
        PyDict d => d.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new TemplateError($"expected a number, got {TypeName(v)}"),
    };

    public static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new TemplateError($"'{TypeName(v)}' object cannot be interpreted as an integer"),
    };

    public static bool Eq(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a == null || b == null) return a == null && b == null;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        if (a is string sa) return b is string sb && sa == sb;
        if (a is List<object?> la) return b is List<object?> lb && SeqEq(la, lb);
        if (a is object?[] ta) return b is object?[] tb && SeqEq(ta, tb);
        if (a is PyDict da)
        {
            if (b is not PyDict db || da.Count != db.Count) return false;
            foreach (var (k, v) in da)
                if (!db.TryGetValue(k, out var w) || !Eq(v, w)) return false;
            return true;
        }
        return ReferenceEquals(a, b);
    }

    private static bool SeqEq(IList<object?> a, IList<object?> b)
    {
        if (a.Count != b.Count) return false;
        for (var i = 0; i < a.Count; i++) if (!Eq(a[i], b[i])) return false;
        return true;
    }

    /// <summary>Python ordering (&lt;, &gt;...): numbers, strings (by code point), lists/tuples lexicographically.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (a is Undefined u1) throw new TemplateError(u1.Hint);
        if (b is Undefined u2) throw new TemplateError(u2.Hint);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb) return CompareCodePoints(sa, sb);
        if ((a is List<object?> && b is List<object?>) || (a is object?[] && b is object?[]))
        {
            var la = (IList<object?>)a;
            var lb = (IList<object?>)b;
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Eq(la[i], lb[i])) continue;
                return Compare(la[i], lb[i], op);
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new TemplateError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static int CompareCodePoints(string a, string b)
    {
        var ea = a.EnumerateRunes();
        var eb = b.EnumerateRunes();
        while (true)
        {
            var ha = ea.MoveNext();
            var hb = eb.MoveNext();
            if (!ha || !hb) return ha == hb ? 0 : ha ? 1 : -1;
            var c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0) return c;
        }
    }

    /// <summary>str(v) as Jinja2 renders it in {{ }} (Undefined renders as "").</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    public static string Repr(object? v)
    {
        switch (v)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            case double d: return FloatRepr(d);
            case string s: return StrRepr(s);
            case Undefined: return "";
            case List<object?> l: return "[" + string.Join(", ", l.Select(Repr)) + "]";
            case object?[] t: return t.Length == 1 ? "(" + Repr(t[0]) + ",)" : "(" + string.Join(", ", t.Select(Repr)) + ")";
            case PyDict d: return "{" + string.Join(", ", d.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}";
            case Namespace ns: return "<Namespace " + string.Join(", ", ns.Attrs.Select(kv => kv.Key + "=" + Repr(kv.Value))) + ">";
            case LoopContext lc: return $"<LoopContext {lc.Index0 + 1}/{lc.Items.Count}>";
            case BoundMethod m: return $"<built-in method {m.Name} of {TypeName(m.Self)} object>";
            case BuiltinFunction f: return $"<function {f.Name}>";
            case Macro m: return $"<Macro '{m.Name}'>";
            default: return v.ToString() ?? "";
        }
    }

    public static string StrRepr(string s)
    {
        var q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder();
        sb.Append(q);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == q) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(q).ToString();
    }

    /// <summary>Python's repr(float): shortest round-trip digits, scientific notation outside 1e-4 &lt;= |x| &lt; 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        var s = d.ToString("R", CultureInfo.InvariantCulture);
        var neg = s.StartsWith('-');
        if (neg) s = s[1..];
        // split into digits and decimal exponent
        var exp = 0;
        var ei = s.IndexOfAny(['E', 'e']);
        if (ei >= 0) { exp = int.Parse(s[(ei + 1)..], CultureInfo.InvariantCulture); s = s[..ei]; }
        var dot = s.IndexOf('.');
        string digits;
        int pointPos; // number of digits before the decimal point
        if (dot >= 0) { digits = s[..dot] + s[(dot + 1)..]; pointPos = dot; }
        else { digits = s; pointPos = s.Length; }
        var lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; pointPos--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        var e10 = pointPos + exp - 1; // exponent in d.ddd form
        string body;
        if (e10 < -4 || e10 >= 16)
        {
            var mant = digits.Length > 1 ? digits[0] + "." + digits[1..] : digits;
            body = mant + "e" + (e10 < 0 ? "-" : "+") + Math.Abs(e10).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (e10 < 0) body = "0." + new string('0', -e10 - 1) + digits;
        else if (digits.Length <= e10 + 1) body = digits + new string('0', e10 + 1 - digits.Length) + ".0";
        else body = digits[..(e10 + 1)] + "." + digits[(e10 + 1)..];
        return neg ? "-" + body : body;
    }

    // ---- code-point string helpers (Python indexes strings by code point) ----

    public static bool HasSurrogates(string s)
    {
        foreach (var c in s) if (char.IsSurrogate(c)) return true;
        return false;
    }

    public static int[] CodePoints(string s)
    {
        var list = new List<int>(s.Length);
        foreach (var r in s.EnumerateRunes()) list.Add(r.Value);
        return [.. list];
    }

    public static string FromCodePoints(IEnumerable<int> cps)
    {
        var sb = new StringBuilder();
        foreach (var c in cps) sb.Append(char.ConvertFromUtf32(c));
        return sb.ToString();
    }

    public static int Len(string s) => HasSurrogates(s) ? s.EnumerateRunes().Count() : s.Length;
}
