using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Oml.Cli;

/// <summary>
/// A command's result: ordered fields printed as aligned "label  value" lines, or (<c>--json</c>) as one JSON object on
/// stdout, so that every command's data is printed one way. Progress belongs on stderr, so that stdout parses.
/// Keys are snake_case, except in the protocol role commands (camelCase, as the protocol's own JSON).
/// </summary>
internal sealed class Report
{
    private readonly List<(string Label, string Text)> _lines = [];
    private readonly JsonObject _json = new();
    private readonly List<string> _tail = [];

    /// <summary>Adds a field: <paramref name="key"/> in JSON, <paramref name="label"/> in text.</summary>
    public Report Add(string key, string label, JsonNode? value, string? text = null)
    {
        _json[key] = value;
        _lines.Add((label, text ?? value?.ToString() ?? "-"));
        return this;
    }

    public Report Add(string key, string label, long value) => Add(key, label, JsonValue.Create(value), value.ToString(CultureInfo.InvariantCulture));

    /// <summary>An amount of money: thousands separated in text.</summary>
    public Report Money(string key, string label, long value) => Add(key, label, JsonValue.Create(value), Protocol.ProtocolCli.Money(value));

    public Report Add(string key, string label, string value) => Add(key, label, JsonValue.Create(value), value);

    /// <summary>Where a protocol action landed: the ledger event, or the transaction's hash, block and gas on a chain.</summary>
    public Report Landed(Oml.Protocol.Core.ActionReceipt a, string label = "event") => !OnChain ? Add("event", label, a.Position)
        : Add("tx", "transaction", a.Reference).Add("block", "block", a.Position).Add("gasUsed", "gas used", JsonValue.Create(a.GasUsed), a.GasUsed?.ToString(CultureInfo.InvariantCulture) ?? "-");

    /// <summary>Set by the protocol commands' session: where actions land (a chain's transactions, or ledger events).</summary>
    public bool OnChain { get; init; }

    /// <summary>A number with its text form in <paramref name="format"/> (invariant culture); NaN and infinities are null in JSON.</summary>
    public Report Add(string key, string label, double value, string format) =>
        Add(key, label, Number(value), value.ToString(format, CultureInfo.InvariantCulture));

    /// <summary>A JSON number, or null for NaN and infinities (which JSON cannot hold).</summary>
    public static JsonNode? Number(double? value) => value is { } v && double.IsFinite(v) ? JsonValue.Create(v) : null;

    /// <summary>A JSON array of strings.</summary>
    public static JsonArray Strings(IEnumerable<string> values) => new([.. values.Select(v => (JsonNode?)JsonValue.Create(v))]);

    /// <summary>A JSON-only field (e.g. a list printed as a table through <see cref="Line"/>).</summary>
    public Report Json(string key, JsonNode? value)
    {
        _json[key] = value;
        return this;
    }

    /// <summary>A free text line after the fields (text mode only).</summary>
    public Report Line(string text)
    {
        _tail.Add(text);
        return this;
    }

    public int Print(bool json)
    {
        if (json)
        {
            Console.WriteLine(_json.ToJsonString());
            return Cli.Ok;
        }
        int w = _lines.Count == 0 ? 0 : _lines.Max(l => l.Label.Length);
        var sb = new StringBuilder();
        foreach (var (label, text) in _lines) sb.Append(label.PadRight(w)).Append("  ").AppendLine(text);
        foreach (var t in _tail) sb.AppendLine(t);
        Console.Write(sb.ToString());
        return Cli.Ok;
    }

    /// <summary>Formats rows as columns (left-aligned text, right-aligned numbers given as such), two spaces apart.</summary>
    public static IEnumerable<string> Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows, ISet<int>? rightAligned = null)
    {
        var all = new List<IReadOnlyList<string>> { header };
        all.AddRange(rows);
        var widths = Enumerable.Range(0, header.Count).Select(c => all.Max(r => r[c].Length)).ToArray();
        foreach (var r in all)
            yield return string.Join("  ", r.Select((cell, c) => rightAligned?.Contains(c) == true ? cell.PadLeft(widths[c]) : cell.PadRight(widths[c]))).TrimEnd();
    }
}
