using System.Globalization;
using System.Text;

namespace Oml.Models.ChatTemplates;

/// <summary>Python's json.dumps, as transformers' tojson filter calls it (ensure_ascii=False by default).</summary>
internal static class JsonDumps
{
    public static string Dumps(object? value, object? indent, object? separators, bool sortKeys, bool ensureAscii)
    {
        string? ind = indent switch
        {
            null => null,
            string s => s,
            long or bool => new string(' ', (int)Math.Max(0, Py.ToLong(indent))),
            _ => throw new TemplateError($"tojson: indent must be an int or a string, not {Py.TypeName(indent)}"),
        };
        string itemSep = ind == null ? ", " : ",", keySep = ": ";
        if (separators != null)
        {
            if (separators is not IList<object?> { Count: 2 } sp || sp[0] is not string a || sp[1] is not string b)
                throw new TemplateError("tojson: separators must be a (item_separator, key_separator) pair of strings");
            itemSep = a;
            keySep = b;
        }
        var sb = new StringBuilder();
        Write(sb, value, ind, itemSep, keySep, sortKeys, ensureAscii, 0);
        return sb.ToString();
    }

    private static void Newline(StringBuilder sb, string? ind, int depth)
    {
        if (ind == null) return;
        sb.Append('\n');
        for (var i = 0; i < depth; i++) sb.Append(ind);
    }

    private static void Write(StringBuilder sb, object? v, string? ind, string itemSep, string keySep, bool sortKeys, bool ascii, int depth)
    {
        if (depth > 200) throw new TemplateError("tojson: value nested too deeply (circular reference?)");
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); return;
            case double d: sb.Append(FloatJson(d)); return;
            case string s: WriteString(sb, s, ascii); return;
            case IList<object?> list:
                if (list.Count == 0) { sb.Append("[]"); return; }
                sb.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    Newline(sb, ind, depth + 1);
                    Write(sb, list[i], ind, itemSep, keySep, sortKeys, ascii, depth + 1);
                }
                Newline(sb, ind, depth);
                sb.Append(']');
                return;
            case PyDict dict:
            {
                if (dict.Count == 0) { sb.Append("{}"); return; }
                IEnumerable<KeyValuePair<object, object?>> items = dict;
                if (sortKeys)
                {
                    var arr = dict.ToList();
                    arr.Sort((p, q) => Py.Compare(p.Key, q.Key, "<"));
                    items = arr;
                }
                sb.Append('{');
                var first = true;
                foreach (var (k, val) in items)
                {
                    if (!first) sb.Append(itemSep);
                    first = false;
                    Newline(sb, ind, depth + 1);
                    var key = k switch
                    {
                        string s => s,
                        bool b => b ? "true" : "false",
                        long l => l.ToString(CultureInfo.InvariantCulture),
                        double d => FloatJson(d),
                        _ => throw new TemplateError($"keys must be str, int, float, bool or None, not {Py.TypeName(k)}"),
                    };
                    WriteString(sb, key, ascii);
                    sb.Append(keySep);
                    Write(sb, val, ind, itemSep, keySep, sortKeys, ascii, depth + 1);
                }
                Newline(sb, ind, depth);
                sb.Append('}');
                return;
            }
            default:
                throw new TemplateError($"Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    private static string FloatJson(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d);

    private static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
