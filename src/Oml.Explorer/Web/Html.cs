using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Encodings.Web;

namespace Oml.Explorer.Web;

/// <summary>Markup that is already HTML (never encoded again). Only the page code makes these.</summary>
public readonly record struct RawHtml(string Value)
{
    public override string ToString() => Value;
}

/// <summary>
/// Builds an HTML page. Every hole of an interpolated string appended through <see cref="Add"/> is HTML-encoded
/// (text and attribute values alike) unless it is a <see cref="RawHtml"/>, so data from the ledger (model ids,
/// metadata, endpoints, descriptions) can never inject markup.
/// </summary>
public sealed class HtmlBuilder
{
    internal StringBuilder Sb { get; } = new(16 * 1024);

    public HtmlBuilder Add([InterpolatedStringHandlerArgument("")] ref HtmlHandler html) => this;

    public HtmlBuilder Raw(string html)
    {
        Sb.Append(html);
        return this;
    }

    public HtmlBuilder Raw(RawHtml html) => Raw(html.Value);

    public static string Encode(string? text) => text is null ? "" : HtmlEncoder.Default.Encode(text);

    public override string ToString() => Sb.ToString();
}

[InterpolatedStringHandler]
public ref struct HtmlHandler
{
    private readonly StringBuilder _sb;

    public HtmlHandler(int literalLength, int formattedCount, HtmlBuilder builder)
    {
        _sb = builder.Sb;
    }

    public readonly void AppendLiteral(string s) => _sb.Append(s);

    public readonly void AppendFormatted(RawHtml html) => _sb.Append(html.Value);

    public readonly void AppendFormatted(string? text)
    {
        if (!string.IsNullOrEmpty(text)) _sb.Append(HtmlEncoder.Default.Encode(text));
    }

    public readonly void AppendFormatted(long value) => _sb.Append(value.ToString(CultureInfo.InvariantCulture));

    public readonly void AppendFormatted(int value) => _sb.Append(value.ToString(CultureInfo.InvariantCulture));

    public readonly void AppendFormatted<T>(T value) => AppendFormatted(Convert.ToString(value, CultureInfo.InvariantCulture));
}

/// <summary>Formatting shared by the pages.</summary>
public static class Fmt
{
    public static string Money(long v) => v.ToString("N0", CultureInfo.InvariantCulture);

    public static string Time(long unix) => DateTimeOffset.FromUnixTimeSeconds(unix).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public static string Iso(long unix) => DateTimeOffset.FromUnixTimeSeconds(unix).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>part / whole as a percentage (Bps of the exact ratio, rounded down); "-" when whole is not positive.</summary>
    public static string Share(long part, long whole) => whole <= 0 ? "-" : Bps((long)((Int128)part * 10_000 / whole));
    public static string Bps(long bps) => (bps / 100.0).ToString("0.##", CultureInfo.InvariantCulture) + " %";

    /// <summary>A duration as "2d 03h 04m 05s" (leading zero units left out).</summary>
    public static string Duration(long seconds)
    {
        if (seconds < 0) seconds = 0;
        long d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60, s = seconds % 60;
        if (d > 0) return $"{d}d {h:00}h {m:00}m {s:00}s";
        if (h > 0) return $"{h}h {m:00}m {s:00}s";
        if (m > 0) return $"{m}m {s:00}s";
        return $"{s}s";
    }

    /// <summary>A long hex string shortened for a table cell (the full value goes in a title attribute).</summary>
    public static string Short(string? hex) =>
        hex is null ? "-" : hex.Length <= 18 ? hex : $"{hex[..10]}…{hex[^6..]}";
}
