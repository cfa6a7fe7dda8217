using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Explorer.Web;

/// <summary>One committed lab report: a folder under the reports directory with a report.md.</summary>
public sealed record LabReport(string Name, string Title, string Directory, int Plots, int Tables);

/// <summary>
/// The lab's committed reports (docs/results/NAME/report.md with their SVG plots), listed and rendered to HTML. The
/// Markdown the lab writes is a small subset (headings, paragraphs, pipe tables, images, lists, code blocks, inline
/// code, bold, italics, links), rendered here with every piece of text HTML-encoded. Plots are served as files by
/// name only (no paths), so nothing outside the reports directory can be read.
/// </summary>
public sealed partial class LabReports(string? root)
{
    public string? Root { get; } = root is null ? null : Path.GetFullPath(root);

    public IReadOnlyList<LabReport> List()
    {
        if (Root is null || !System.IO.Directory.Exists(Root)) return [];
        var list = new List<LabReport>();
        foreach (var dir in System.IO.Directory.GetDirectories(Root).Order(StringComparer.Ordinal))
        {
            var md = Path.Combine(dir, "report.md");
            if (!File.Exists(md) || !SafeName().IsMatch(Path.GetFileName(dir))) continue;
            var lines = File.ReadAllLines(md);
            string title = lines.FirstOrDefault(l => l.StartsWith("# ", StringComparison.Ordinal))?[2..].Trim() ?? Path.GetFileName(dir);
            int plots = lines.Count(l => l.TrimStart().StartsWith("![", StringComparison.Ordinal));
            int tables = lines.Select((l, i) => IsTableSeparator(l) ? 1 : 0).Sum();
            list.Add(new LabReport(Path.GetFileName(dir), title, dir, plots, tables));
        }
        return list;
    }

    public LabReport? Find(string name) => SafeName().IsMatch(name) ? List().FirstOrDefault(r => r.Name == name) : null;

    /// <summary>The path of an SVG plot of a report, or null when the name is not a plain file name there.</summary>
    public string? Plot(string report, string file)
    {
        var r = Find(report);
        if (r is null || !SafeFile().IsMatch(file)) return null;
        var path = Path.Combine(r.Directory, file);
        return File.Exists(path) ? path : null;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    private static partial Regex SafeName();

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.svg$")]
    private static partial Regex SafeFile();

    private static bool IsTableSeparator(string line) => TableSeparator().IsMatch(line.Trim());

    [GeneratedRegex(@"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")]
    private static partial Regex TableSeparator();

    /// <summary>Renders a report's Markdown to HTML; image links become /lab/NAME/FILE URLs.</summary>
    public static string Render(string markdown, string reportName)
    {
        var lines = markdown.Replace("\r\n", "\n").Split('\n');
        var sb = new StringBuilder(markdown.Length * 2);
        int i = 0;
        int tableNo = 0;
        while (i < lines.Length)
        {
            string line = lines[i];
            string t = line.Trim();
            if (t.Length == 0) { i++; continue; }
            if (t.StartsWith("```", StringComparison.Ordinal))
            {
                var code = new List<string>();
                for (i++; i < lines.Length && !lines[i].Trim().StartsWith("```", StringComparison.Ordinal); i++) code.Add(lines[i]);
                i++;
                sb.Append("<pre tabindex=\"0\"><code>").Append(HtmlBuilder.Encode(string.Join('\n', code))).Append("</code></pre>\n");
                continue;
            }
            var heading = Heading().Match(t);
            if (heading.Success)
            {
                // The page's own h1 is the report title; report headings move one level down.
                int level = Math.Min(6, heading.Groups[1].Length + 1);
                sb.Append($"<h{level}>").Append(Inline(heading.Groups[2].Value, reportName)).Append($"</h{level}>\n");
                i++;
                continue;
            }
            if (t.StartsWith('|') && i + 1 < lines.Length && IsTableSeparator(lines[i + 1]))
            {
                var header = Cells(t);
                var align = Cells(lines[i + 1].Trim()).Select(c => c.EndsWith(':')).ToList();
                i += 2;
                tableNo++;
                sb.Append($"<div class=\"table-wrap\" role=\"region\" aria-label=\"Table {tableNo}\" tabindex=\"0\"><table><thead><tr>");
                for (int c = 0; c < header.Count; c++) sb.Append(c < align.Count && align[c] ? "<th scope=\"col\" class=\"num\">" : "<th scope=\"col\">").Append(Inline(header[c], reportName)).Append("</th>");
                sb.Append("</tr></thead><tbody>\n");
                for (; i < lines.Length && lines[i].Trim().StartsWith('|'); i++)
                {
                    var cells = Cells(lines[i].Trim());
                    sb.Append("<tr>");
                    for (int c = 0; c < header.Count; c++)
                        sb.Append(c < align.Count && align[c] ? "<td class=\"num\">" : "<td>").Append(c < cells.Count ? Inline(cells[c], reportName) : "").Append("</td>");
                    sb.Append("</tr>\n");
                }
                sb.Append("</tbody></table></div>\n");
                continue;
            }
            var image = Image().Match(t);
            if (image.Success && image.Length == t.Length)
            {
                string alt = image.Groups[1].Value, src = image.Groups[2].Value;
                if (SafeFile().IsMatch(src))
                    sb.Append("<figure><img src=\"/lab/").Append(Uri.EscapeDataString(reportName)).Append('/').Append(Uri.EscapeDataString(src))
                      .Append("\" alt=\"").Append(HtmlBuilder.Encode(alt)).Append("\" loading=\"lazy\"><figcaption>").Append(HtmlBuilder.Encode(alt)).Append("</figcaption></figure>\n");
                else sb.Append("<p>").Append(HtmlBuilder.Encode(alt)).Append("</p>\n");
                i++;
                continue;
            }
            if (ListItem().IsMatch(t))
            {
                sb.Append("<ul>\n");
                for (; i < lines.Length && ListItem().IsMatch(lines[i].Trim()); i++)
                {
                    string item = ListItem().Replace(lines[i].Trim(), "", 1);
                    // continuation lines (indented, not a new item)
                    while (i + 1 < lines.Length && lines[i + 1].StartsWith("  ", StringComparison.Ordinal) && lines[i + 1].Trim().Length > 0 && !ListItem().IsMatch(lines[i + 1].Trim()))
                        item += " " + lines[++i].Trim();
                    sb.Append("<li>").Append(Inline(item, reportName)).Append("</li>\n");
                }
                sb.Append("</ul>\n");
                continue;
            }
            var para = new List<string>();
            for (; i < lines.Length; i++)
            {
                string p = lines[i].Trim();
                if (p.Length == 0 || p.StartsWith('#') || p.StartsWith("```", StringComparison.Ordinal) || (p.StartsWith('|') && para.Count > 0) || ListItem().IsMatch(p) && para.Count > 0) break;
                if (p.StartsWith('|') && i + 1 < lines.Length && IsTableSeparator(lines[i + 1])) break;
                para.Add(p);
            }
            if (para.Count == 0) { i++; continue; }
            sb.Append("<p>").Append(Inline(string.Join(' ', para), reportName)).Append("</p>\n");
        }
        return sb.ToString();
    }

    private static List<string> Cells(string row)
    {
        var r = row.Trim();
        if (r.StartsWith('|')) r = r[1..];
        if (r.EndsWith('|') && !r.EndsWith("\\|", StringComparison.Ordinal)) r = r[..^1];
        var cells = new List<string>();
        var cur = new StringBuilder();
        for (int k = 0; k < r.Length; k++)
        {
            if (r[k] == '\\' && k + 1 < r.Length && r[k + 1] == '|') { cur.Append('|'); k++; }
            else if (r[k] == '|') { cells.Add(cur.ToString().Trim()); cur.Clear(); }
            else cur.Append(r[k]);
        }
        cells.Add(cur.ToString().Trim());
        return cells;
    }

    /// <summary>Inline Markdown: `code`, **bold**, *italics*, [text](link); everything else encoded.</summary>
    private static string Inline(string text, string reportName)
    {
        var sb = new StringBuilder();
        int k = 0;
        while (k < text.Length)
        {
            char ch = text[k];
            if (ch == '`')
            {
                int end = text.IndexOf('`', k + 1);
                if (end > k) { sb.Append("<code>").Append(HtmlBuilder.Encode(text[(k + 1)..end])).Append("</code>"); k = end + 1; continue; }
            }
            if (ch == '*' && k + 1 < text.Length && text[k + 1] == '*')
            {
                int end = text.IndexOf("**", k + 2, StringComparison.Ordinal);
                if (end > k + 2) { sb.Append("<strong>").Append(Inline(text[(k + 2)..end], reportName)).Append("</strong>"); k = end + 2; continue; }
            }
            if (ch == '*' && k + 1 < text.Length && text[k + 1] != ' ')
            {
                int end = text.IndexOf('*', k + 1);
                if (end > k + 1 && text[end - 1] != ' ') { sb.Append("<em>").Append(Inline(text[(k + 1)..end], reportName)).Append("</em>"); k = end + 1; continue; }
            }
            if (ch == '[')
            {
                var m = Link().Match(text, k);
                if (m.Success && m.Index == k)
                {
                    string href = m.Groups[2].Value;
                    bool external = href.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || href.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
                    if (external || SafeFile().IsMatch(href))
                    {
                        string url = external ? href : $"/lab/{Uri.EscapeDataString(reportName)}/{Uri.EscapeDataString(href)}";
                        sb.Append("<a href=\"").Append(HtmlBuilder.Encode(url)).Append("\">").Append(HtmlBuilder.Encode(m.Groups[1].Value)).Append("</a>");
                    }
                    else sb.Append(HtmlBuilder.Encode(m.Groups[1].Value));
                    k = m.Index + m.Length;
                    continue;
                }
            }
            int next = text.IndexOfAny(['`', '*', '['], k + 1);
            if (next < 0) next = text.Length;
            sb.Append(HtmlBuilder.Encode(text[k..next]));
            k = next;
        }
        return sb.ToString();
    }

    [GeneratedRegex(@"^(#{1,6})\s+(.*)$")]
    private static partial Regex Heading();

    [GeneratedRegex(@"!\[([^\]]*)\]\(([^)\s]+)\)")]
    private static partial Regex Image();

    [GeneratedRegex(@"\[([^\]]+)\]\(([^)\s]+)\)")]
    private static partial Regex Link();

    [GeneratedRegex(@"^([-*]|\d+\.)\s+")]
    private static partial Regex ListItem();
}
