using System.Globalization;
using System.Text;

namespace Oml.Lab.Experiments;

/// <summary>
/// An attack or decoder named with its parameters: <c>name</c> or <c>name(key=value, key=value)</c>. Values are numbers
/// or text; text may be quoted ("a, b") to hold commas or parentheses.
/// </summary>
public sealed record AttackSpec(string Name, IReadOnlyDictionary<string, string> Arguments)
{
    public static AttackSpec Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var s = spec.Trim();
        int open = s.IndexOf('(');
        var name = (open < 0 ? s : s[..open]).Trim();
        if (name.Length == 0 || name.Any(ch => !(char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_')))
            throw new FormatException($"'{spec}': an attack name is letters, digits, '-' and '_', optionally followed by (key=value, ...)");
        var args = new Dictionary<string, string>(StringComparer.Ordinal);
        if (open >= 0)
        {
            if (!s.EndsWith(')')) throw new FormatException($"'{spec}': missing ')' at the end");
            var body = s[(open + 1)..^1];
            foreach (var part in SplitTopLevel(body, spec))
            {
                if (part.Trim().Length == 0) continue;
                int eq = part.IndexOf('=');
                if (eq <= 0) throw new FormatException($"'{spec}': '{part.Trim()}' is not key=value");
                var key = part[..eq].Trim();
                var value = part[(eq + 1)..].Trim();
                if (value.Length >= 2 && value[0] == '"' && value[^1] == '"') value = value[1..^1];
                if (!args.TryAdd(key, value)) throw new FormatException($"'{spec}': '{key}' is given twice");
            }
        }
        return new AttackSpec(name, args);
    }

    private static List<string> SplitTopLevel(string body, string spec)
    {
        var parts = new List<string>();
        var cur = new StringBuilder();
        bool quoted = false;
        int depth = 0;
        foreach (var ch in body)
        {
            if (ch == '"') quoted = !quoted;
            else if (!quoted && ch == '(') depth++;
            else if (!quoted && ch == ')') depth--;
            if (ch == ',' && !quoted && depth == 0) { parts.Add(cur.ToString()); cur.Clear(); }
            else cur.Append(ch);
        }
        if (quoted) throw new FormatException($"'{spec}': unterminated quote");
        if (depth != 0) throw new FormatException($"'{spec}': unbalanced parentheses");
        parts.Add(cur.ToString());
        return parts;
    }

    public string? Text(string key) => Arguments.TryGetValue(key, out var v) ? v : null;

    public double Number(string key, double? fallback = null)
    {
        if (Arguments.TryGetValue(key, out var v))
            return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : throw new FormatException($"{Name}: '{key}' must be a number (got '{v}')");
        return fallback ?? throw new FormatException($"{Name}: needs '{key}'");
    }

    public int Integer(string key, int? fallback = null)
    {
        double d = Number(key, fallback);
        return d == Math.Floor(d) && Math.Abs(d) < int.MaxValue ? (int)d : throw new FormatException($"{Name}: '{key}' must be a whole number (got {d})");
    }

    /// <summary>Fails on arguments not in <paramref name="known"/> (catches misspelt parameters).</summary>
    public void Expect(params string[] known)
    {
        foreach (var k in Arguments.Keys)
            if (!known.Contains(k)) throw new FormatException($"{Name}: unknown parameter '{k}' (expected {(known.Length == 0 ? "none" : string.Join(", ", known))})");
    }

    public override string ToString() => Arguments.Count == 0 ? Name
        : $"{Name}({string.Join(", ", Arguments.Select(kv => $"{kv.Key}={(kv.Value.Any(c => c is ',' or '(' or ')' or ' ') ? $"\"{kv.Value}\"" : kv.Value)}"))})";
}
