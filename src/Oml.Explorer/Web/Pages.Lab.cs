using Oml.Explorer.State;

namespace Oml.Explorer.Web;

public static partial class Pages
{
    public static string Lab(ExplorerSnapshot? s, long now, LabReports lab, string? error = null) => Layout(s, now, "Lab", "/lab", h =>
    {
        h.Raw("<h1>The lab's reports</h1>\n<p class=\"muted\">Experiments on fingerprint capacity, persistence under attacks, false positives and tracing, as committed with the code (plots and tables as the lab rendered them).</p>\n");
        var reports = lab.List();
        if (reports.Count == 0)
        {
            h.Add($"<p class=\"empty\">No reports found{(lab.Root is null ? "" : $" under {lab.Root}")}.</p>");
            return;
        }
        h.Raw("<ul class=\"reports\">\n");
        foreach (var r in reports)
            h.Add($"""<li data-key="{r.Name}"><a href="/lab/{r.Name}">{r.Title}</a> <span class="muted">({r.Plots} plots, {r.Tables} tables)</span></li>""").Raw("\n");
        h.Raw("</ul>\n");
    }, error);

    public static string LabReport(ExplorerSnapshot? s, long now, LabReport report, string? error = null) => Layout(s, now, report.Title, "/lab", h =>
    {
        h.Add($"""<p class="crumbs"><a href="/lab">Lab</a> / {report.Name}</p>""").Raw("\n");
        var md = File.ReadAllText(Path.Combine(report.Directory, "report.md"));
        // The report's own first heading becomes the page's h1.
        var lines = md.Replace("\r\n", "\n").Split('\n').ToList();
        int first = lines.FindIndex(l => l.StartsWith("# ", StringComparison.Ordinal));
        if (first >= 0) lines.RemoveAt(first);
        h.Add($"<h1>{report.Title}</h1>\n");
        h.Raw("<article class=\"report\">\n").Raw(LabReports.Render(string.Join('\n', lines), report.Name)).Raw("</article>\n");
    }, error);
}
