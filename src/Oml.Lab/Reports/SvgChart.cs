using System.Globalization;
using System.Security;
using System.Text;

namespace Oml.Lab.Reports;

/// <summary>One line of a line chart: points in x order (NaN y values are gaps, left out).</summary>
/// <summary>
/// A line of a chart. <paramref name="Style"/> picks the colour, dash and marker (by default the series' position), so
/// that one quantity keeps its look across several charts even when some charts lack some series.
/// </summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points, int? Style = null);

/// <summary>One series of a grouped bar chart: a value per category (NaN: no bar).</summary>
public sealed record BarSeries(string Name, IReadOnlyList<double> Values);

/// <summary>
/// Small self-contained SVG charts for the reports: line charts (optionally log-scale x), ROC curves and grouped bar
/// charts, with axes, ticks, labels and a legend. Output is standalone SVG 1.1 (well-formed XML, no scripts, no external
/// resources), sized in pixels.
/// </summary>
public static class SvgChart
{
    public const int Width = 760, Height = 440;
    private const int Left = 72, Right = 200, Top = 44, Bottom = 64;

    /// <summary>Okabe–Ito colours (distinguishable with colour-vision deficiencies), then a few more.</summary>
    public static readonly string[] Palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#7F7F7F", "#8C564B"];

    private static readonly string[] Dashes = ["", "6,3", "2,3", "8,3,2,3"];

    private static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);
    private static string E(string s) => SecurityElement.Escape(s) ?? "";

    public static string Line(string title, string xLabel, string yLabel, IReadOnlyList<ChartSeries> series, bool logX = false,
        double? yMin = null, double? yMax = null, double? xMin = null, double? xMax = null, bool diagonal = false, bool steps = false,
        bool logY = false)
    {
        var pts = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!logX || p.X > 0) && (!logY || p.Y > 0)).ToList();
        if (logX && series.SelectMany(s => s.Points).Any(p => p.X <= 0)) throw new ArgumentException("a log-scale x axis needs positive x values");
        if (logY && series.SelectMany(s => s.Points).Any(p => p.Y <= 0)) throw new ArgumentException("a log-scale y axis needs positive y values");
        if (logY && (yMin is <= 0 || yMax is <= 0)) throw new ArgumentException("a log-scale y axis needs positive bounds");
        double x0 = xMin ?? (pts.Count > 0 ? pts.Min(p => p.X) : 0), x1 = xMax ?? (pts.Count > 0 ? pts.Max(p => p.X) : 1);
        double y0 = yMin ?? (pts.Count > 0 ? pts.Min(p => p.Y) : 1), y1 = yMax ?? (pts.Count > 0 ? pts.Max(p => p.Y) : 10);
        if (logX) { x0 = Math.Log10(x0); x1 = Math.Log10(x1); }
        if (x1 - x0 < 1e-12) (x0, x1) = Pad(x0, x1, 0);
        List<double> yTicks;
        if (logY)
        {
            // Work in log10 units from here on; ticks at decades (with 2 and 5 between over a narrow range).
            (y0, y1) = (Math.Log10(y0), Math.Log10(y1));
            if (y1 - y0 < 1e-12) (y0, y1) = (y0 - 0.5, y1 + 0.5);
            yTicks = LogTicks(y0, y1);
            if (yTicks.Count < 2) yTicks = [y0, y1];
        }
        else
        {
            yTicks = NiceTicks(y0, y1, 6);
            if (yMin is null) y0 = Math.Min(y0, yTicks[0]);
            if (yMax is null) y1 = Math.Max(y1, yTicks[^1]);
            yTicks = yTicks.Where(t => t >= y0 - 1e-12 && t <= y1 + 1e-12).ToList();
            if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; yTicks = NiceTicks(y0, y1, 6); }
        }
        List<double> xTicks;
        if (logX)
        {
            var distinct = pts.Select(p => p.X).Distinct().Order().ToList();
            xTicks = distinct.Count is > 0 and <= 10 ? distinct.Select(Math.Log10).ToList() : LogTicks(x0, x1);
        }
        else xTicks = NiceTicks(x0, x1, 6).Where(t => t >= x0 - 1e-12 && t <= x1 + 1e-12).ToList();

        // Ticks cover the data range; the drawing range is 3 % wider on each side, so that lines on a bound (FSR 0 or 1,
        // the first or last x) are not hidden under the frame.
        (x0, x1) = Pad(x0, x1, 0.03);
        (y0, y1) = Pad(y0, y1, 0.03);
        double pw = Width - Left - Right, ph = Height - Top - Bottom;
        double X(double v) => Left + ((logX ? Math.Log10(v) : v) - x0) / (x1 - x0) * pw;
        double XT(double t) => Left + (t - x0) / (x1 - x0) * pw;
        double YT(double t) => Top + ph - (t - y0) / (y1 - y0) * ph;
        double Y(double v) => YT(logY ? Math.Log10(v) : v);

        var sb = Begin(title);
        Grid(sb, yTicks.Select(t => (YT(t), Tick(logY ? Math.Pow(10, t) : t))).ToList(), xTicks.Select(t => (XT(t), Tick(logX ? Math.Pow(10, t) : t))).ToList(), xLabel, yLabel);
        if (diagonal) sb.Append($"<line x1=\"{F(X(Math.Max(x0, 0)))}\" y1=\"{F(Y(Math.Max(y0, 0)))}\" x2=\"{F(X(Math.Min(x1, 1)))}\" y2=\"{F(Y(Math.Min(y1, 1)))}\" stroke=\"#999\" stroke-dasharray=\"4,4\"/>\n");
        sb.Append($"<g clip-path=\"url(#plot)\">\n");
        for (int i = 0; i < series.Count; i++)
        {
            int style = series[i].Style ?? i;
            var (color, dash) = Style(style);
            var valid = series[i].Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
            if (valid.Count == 0) continue;
            var path = new StringBuilder();
            for (int j = 0; j < valid.Count; j++)
            {
                if (j == 0) path.Append($"M{F(X(valid[j].X))},{F(Y(valid[j].Y))}");
                else if (steps) path.Append($" H{F(X(valid[j].X))} V{F(Y(valid[j].Y))}");
                else path.Append($" L{F(X(valid[j].X))},{F(Y(valid[j].Y))}");
            }
            sb.Append($"<path d=\"{path}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{(dash.Length > 0 ? $" stroke-dasharray=\"{dash}\"" : "")}/>\n");
            if (!steps)
                foreach (var p in valid) sb.Append(Marker(style, X(p.X), Y(p.Y), color)).Append('\n');
        }
        sb.Append("</g>\n");
        Legend(sb, series.Select(s => s.Name).ToList(), lines: true, 0, series.Select((s, i) => s.Style ?? i).ToList());
        return End(sb);
    }

    /// <summary>ROC curves (false-positive rate against true-positive rate, both 0..1) with the chance diagonal.</summary>
    public static string Roc(string title, IReadOnlyList<ChartSeries> curves) =>
        Line(title, "false-positive rate", "true-positive rate", curves, yMin: 0, yMax: 1, xMin: 0, xMax: 1, diagonal: true);

    public static string Bar(string title, string yLabel, IReadOnlyList<string> categories, IReadOnlyList<BarSeries> series, double? yMin = null, double? yMax = null)
    {
        if (series.Any(s => s.Values.Count != categories.Count)) throw new ArgumentException("every bar series needs one value per category");
        var vals = series.SelectMany(s => s.Values).Where(double.IsFinite).ToList();
        double y0 = yMin ?? Math.Min(0, vals.Count > 0 ? vals.Min() : 0), y1 = yMax ?? (vals.Count > 0 ? Math.Max(vals.Max(), y0 + 1e-9) : 1);
        var yTicks = NiceTicks(y0, y1, 6);
        if (yMax is null) y1 = yTicks[^1];
        if (yMin is null) y0 = yTicks[0];
        double pw = Width - Left - Right, ph = Height - Top - Bottom;
        double Y(double v) => Top + ph - (Math.Clamp(v, y0, y1) - y0) / (y1 - y0) * ph;
        double groupW = pw / Math.Max(1, categories.Count), barW = groupW * 0.8 / Math.Max(1, series.Count);
        bool rotate = categories.Any(c => c.Length * 6.5 > groupW);

        var sb = Begin(title, extraBottom: rotate ? 50 : 0);
        Grid(sb, yTicks.Where(t => t >= y0 - 1e-12 && t <= y1 + 1e-12).Select(t => (Y(t), Tick(t))).ToList(), [], "", yLabel, rotate ? 50 : 0);
        for (int c = 0; c < categories.Count; c++)
        {
            double gx = Left + c * groupW;
            for (int s = 0; s < series.Count; s++)
            {
                double v = series[s].Values[c];
                if (!double.IsFinite(v)) continue;
                double bx = gx + groupW * 0.1 + s * barW, top = Y(Math.Max(v, 0)), bottom = Y(Math.Min(v, 0));
                if (y0 > 0) { top = Y(v); bottom = Y(y0); }
                sb.Append($"<rect x=\"{F(bx)}\" y=\"{F(top)}\" width=\"{F(Math.Max(1, barW - 2))}\" height=\"{F(Math.Max(0.5, bottom - top))}\" fill=\"{Palette[s % Palette.Length]}\"><title>{E(series[s].Name)}, {E(categories[c])}: {E(Tick(v))}</title></rect>\n");
                if (barW >= 22) sb.Append($"<text x=\"{F(bx + (barW - 2) / 2)}\" y=\"{F(top - 4)}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#333\">{E(Short(v))}</text>\n");
            }
            double cx = gx + groupW / 2, ty = Top + ph + 16;
            sb.Append(rotate
                ? $"<text x=\"{F(cx)}\" y=\"{F(ty)}\" font-size=\"11\" text-anchor=\"end\" transform=\"rotate(-35 {F(cx)} {F(ty)})\">{E(Clip(categories[c], 28))}</text>\n"
                : $"<text x=\"{F(cx)}\" y=\"{F(ty)}\" font-size=\"11\" text-anchor=\"middle\">{E(categories[c])}</text>\n");
        }
        Legend(sb, series.Select(s => s.Name).ToList(), lines: false, rotate ? 50 : 0);
        return End(sb);
    }

    private static (string Color, string Dash) Style(int i) => (Palette[i % Palette.Length], Dashes[i % Dashes.Length]);

    /// <summary>Marker i: circle, square, triangle or diamond, so that series drawn on top of each other stay visible.</summary>
    private static string Marker(int i, double x, double y, string color, double r = 3.5) => (i % 4) switch
    {
        0 => $"<circle cx=\"{F(x)}\" cy=\"{F(y)}\" r=\"{F(r)}\" fill=\"{color}\"/>",
        1 => $"<rect x=\"{F(x - r)}\" y=\"{F(y - r)}\" width=\"{F(2 * r)}\" height=\"{F(2 * r)}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
        2 => $"<path d=\"M{F(x)},{F(y - r - 1)} L{F(x + r + 1)},{F(y + r)} L{F(x - r - 1)},{F(y + r)} Z\" fill=\"{color}\"/>",
        _ => $"<path d=\"M{F(x)},{F(y - r - 1)} L{F(x + r + 1)},{F(y)} L{F(x)},{F(y + r + 1)} L{F(x - r - 1)},{F(y)} Z\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
    };

    private static StringBuilder Begin(string title, int extraBottom = 0)
    {
        int h = Height + extraBottom;
        var sb = new StringBuilder();
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{Width}\" height=\"{h}\" viewBox=\"0 0 {Width} {h}\" font-family=\"Helvetica, Arial, sans-serif\">\n");
        sb.Append($"<title>{E(title)}</title>\n");
        sb.Append($"<defs><clipPath id=\"plot\"><rect x=\"{Left - 5}\" y=\"{Top - 5}\" width=\"{Width - Left - Right + 10}\" height=\"{Height - Top - Bottom + 10}\"/></clipPath></defs>\n");
        sb.Append($"<rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{h}\" fill=\"#ffffff\"/>\n");
        sb.Append($"<text x=\"{F(Left + (Width - Left - Right) / 2.0)}\" y=\"24\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">{E(title)}</text>\n");
        return sb;
    }

    private static string End(StringBuilder sb) => sb.Append("</svg>\n").ToString();

    private static void Grid(StringBuilder sb, List<(double Y, string Label)> yTicks, List<(double X, string Label)> xTicks, string xLabel, string yLabel, int extraBottom = 0)
    {
        double pw = Width - Left - Right, ph = Height - Top - Bottom;
        foreach (var (y, label) in yTicks)
        {
            sb.Append($"<line x1=\"{Left}\" y1=\"{F(y)}\" x2=\"{F(Left + pw)}\" y2=\"{F(y)}\" stroke=\"#e5e5e5\"/>\n");
            sb.Append($"<line x1=\"{Left - 5}\" y1=\"{F(y)}\" x2=\"{Left}\" y2=\"{F(y)}\" stroke=\"#333\"/>\n");
            sb.Append($"<text x=\"{Left - 8}\" y=\"{F(y + 4)}\" font-size=\"11\" text-anchor=\"end\">{E(label)}</text>\n");
        }
        foreach (var (x, label) in xTicks)
        {
            sb.Append($"<line x1=\"{F(x)}\" y1=\"{Top}\" x2=\"{F(x)}\" y2=\"{F(Top + ph)}\" stroke=\"#e5e5e5\"/>\n");
            sb.Append($"<line x1=\"{F(x)}\" y1=\"{F(Top + ph)}\" x2=\"{F(x)}\" y2=\"{F(Top + ph + 5)}\" stroke=\"#333\"/>\n");
            sb.Append($"<text x=\"{F(x)}\" y=\"{F(Top + ph + 18)}\" font-size=\"11\" text-anchor=\"middle\">{E(label)}</text>\n");
        }
        sb.Append($"<rect x=\"{Left}\" y=\"{Top}\" width=\"{F(pw)}\" height=\"{F(ph)}\" fill=\"none\" stroke=\"#333\"/>\n");
        if (xLabel.Length > 0) sb.Append($"<text x=\"{F(Left + pw / 2)}\" y=\"{F(Top + ph + 44 + extraBottom)}\" font-size=\"12\" text-anchor=\"middle\">{E(xLabel)}</text>\n");
        double cy = Top + ph / 2;
        sb.Append($"<text x=\"18\" y=\"{F(cy)}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 18 {F(cy)})\">{E(yLabel)}</text>\n");
    }

    private static void Legend(StringBuilder sb, List<string> names, bool lines, int extraBottom, List<int>? styles = null)
    {
        double x = Width - Right + 16, y = Top + 6;
        for (int i = 0; i < names.Count; i++)
        {
            int st = styles?[i] ?? i;
            var (color, dash) = Style(st);
            double yy = y + i * 18;
            if (yy > Height + extraBottom - 20) { sb.Append($"<text x=\"{F(x)}\" y=\"{F(yy + 4)}\" font-size=\"11\">… {names.Count - i} more</text>\n"); break; }
            sb.Append(lines
                ? $"<line x1=\"{F(x)}\" y1=\"{F(yy)}\" x2=\"{F(x + 22)}\" y2=\"{F(yy)}\" stroke=\"{color}\" stroke-width=\"2\"{(dash.Length > 0 ? $" stroke-dasharray=\"{dash}\"" : "")}/>{Marker(st, x + 11, yy, color, 3)}\n"
                : $"<rect x=\"{F(x + 4)}\" y=\"{F(yy - 6)}\" width=\"14\" height=\"12\" fill=\"{Palette[i % Palette.Length]}\"/>\n");
            sb.Append($"<text x=\"{F(x + 28)}\" y=\"{F(yy + 4)}\" font-size=\"10\">{E(Clip(names[i], 28))}</text>\n");
        }
    }

    private static string Clip(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";

    /// <summary>Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about <paramref name="target"/> of them.</summary>
    public static List<double> NiceTicks(double lo, double hi, int target)
    {
        if (!double.IsFinite(lo) || !double.IsFinite(hi)) throw new ArgumentException("tick range must be finite");
        if (hi < lo) (lo, hi) = (hi, lo);
        if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
        double raw = (hi - lo) / Math.Max(1, target - 1), mag = Math.Pow(10, Math.Floor(Math.Log10(raw))), r = raw / mag;
        double step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
        double start = Math.Floor(lo / step + 1e-9) * step, end = Math.Ceiling(hi / step - 1e-9) * step;
        var ticks = new List<double>();
        for (double t = start; t <= end + step * 1e-6; t += step) ticks.Add(Math.Abs(t) < step * 1e-9 ? 0 : Math.Round(t / step) * step);
        return ticks;
    }

    /// <summary>Decade ticks (log10 values) in [lo, hi], with 2 and 5 between when the range is under two decades.</summary>
    public static List<double> LogTicks(double lo, double hi)
    {
        var ticks = new List<double>();
        bool fine = hi - lo < 2;
        for (int k = (int)Math.Floor(lo); k <= (int)Math.Ceiling(hi); k++)
            foreach (var m in fine ? new[] { 1.0, 2, 5 } : [1.0])
            {
                double t = k + Math.Log10(m);
                if (t >= lo - 1e-9 && t <= hi + 1e-9) ticks.Add(t);
            }
        return ticks;
    }

    private static (double, double) Pad(double lo, double hi, double frac)
    {
        if (hi - lo < 1e-12) return (lo - 0.5, hi + 0.5);
        double d = (hi - lo) * frac;
        return (lo - d, hi + d);
    }

    private static string Tick(double v) => Math.Abs(v) >= 1e5 || (Math.Abs(v) < 1e-3 && v != 0) ? v.ToString("0.#e0", CultureInfo.InvariantCulture) : v.ToString("0.####", CultureInfo.InvariantCulture);

    private static string Short(double v) => Math.Abs(v) >= 100 ? v.ToString("0", CultureInfo.InvariantCulture) : Math.Abs(v) >= 10 ? v.ToString("0.#", CultureInfo.InvariantCulture) : v.ToString("0.##", CultureInfo.InvariantCulture);
}
