using System.Globalization;
using Oml.Explorer.State;

namespace Oml.Explorer.Web;

/// <summary>
/// Draws the models' family tree as inline SVG, on the server: a model's layer is the length of its longest chain
/// of declared parents, models in a layer are spread left to right, and each edge goes from a parent down to its
/// child, labelled with the parent's share. Every node is a link to the model's page (keyboard-focusable).
/// </summary>
public static class FamilyTree
{
    private const int NodeW = 168, NodeH = 44, GapX = 28, GapY = 74, Pad = 16;

    public static string Svg(IReadOnlyList<ModelView> models)
    {
        var byId = models.ToDictionary(m => m.Id, StringComparer.Ordinal);
        var layer = new Dictionary<string, int>(StringComparer.Ordinal);
        int Layer(string id, int guard)
        {
            if (layer.TryGetValue(id, out var l)) return l;
            if (guard > models.Count || !byId.TryGetValue(id, out var m)) return 0; // the ledger forbids cycles; stay safe anyway
            l = m.Parents.Count == 0 ? 0 : m.Parents.Max(p => Layer(p.ModelId, guard + 1) + 1);
            return layer[id] = l;
        }
        foreach (var m in models) Layer(m.Id, 0);
        var rows = models.GroupBy(m => layer[m.Id]).OrderBy(g => g.Key).Select(g => g.ToList()).ToList();
        int maxRow = rows.Max(r => r.Count);
        int width = Pad * 2 + maxRow * NodeW + (maxRow - 1) * GapX;
        int height = Pad * 2 + rows.Count * NodeH + (rows.Count - 1) * GapY;
        var pos = new Dictionary<string, (double X, double Y)>(StringComparer.Ordinal);
        for (int r = 0; r < rows.Count; r++)
        {
            int n = rows[r].Count;
            double rowWidth = n * NodeW + (n - 1) * GapX;
            double x0 = (width - rowWidth) / 2;
            for (int i = 0; i < n; i++) pos[rows[r][i].Id] = (x0 + i * (NodeW + GapX), Pad + r * (NodeH + GapY));
        }

        static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
        var h = new HtmlBuilder();
        int edges = models.Sum(m => m.Parents.Count);
        h.Add($"""<div class="tree-wrap"><svg class="tree" role="group" aria-label="Family tree of {models.Count} models with {edges} parent links" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">""");
        h.Raw("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#4a4a4a\"/></marker></defs>\n");
        foreach (var m in models)
            foreach (var p in m.Parents)
            {
                if (!pos.TryGetValue(p.ModelId, out var a)) continue;
                var b = pos[m.Id];
                double x1 = a.X + NodeW / 2.0, y1 = a.Y + NodeH, x2 = b.X + NodeW / 2.0, y2 = b.Y;
                h.Add($"""<line class="edge" x1="{F(x1)}" y1="{F(y1)}" x2="{F(x2)}" y2="{F(y2)}" stroke="#4a4a4a" stroke-width="1.5" marker-end="url(#arrow)"/>""");
                h.Add($"""<text class="edge-label" x="{F((x1 + x2) / 2 + 6)}" y="{F((y1 + y2) / 2)}" font-size="12" fill="#1a1a1a">{Fmt.Bps(p.ShareBps)}</text>""").Raw("\n");
            }
        foreach (var m in models)
        {
            var (x, y) = pos[m.Id];
            string label = m.Id.Length > 20 ? m.Id[..19] + "…" : m.Id;
            h.Add($"""<a class="node" href="/models/{Uri.EscapeDataString(m.Id)}" aria-label="model {m.Id}, {m.Licences.Count} hosts"><title>{m.Id}</title><rect x="{F(x)}" y="{F(y)}" width="{NodeW}" height="{NodeH}" rx="6" fill="#eef3fb" stroke="#0b57d0" stroke-width="1.5"/><text x="{F(x + NodeW / 2.0)}" y="{F(y + 19)}" text-anchor="middle" font-size="14" font-weight="bold" fill="#1a1a1a">{label}</text><text x="{F(x + NodeW / 2.0)}" y="{F(y + 36)}" text-anchor="middle" font-size="11" fill="#3d3d3d">{m.Licences.Count} hosts · v{m.Versions.Count}</text></a>""").Raw("\n");
        }
        h.Raw("</svg></div>\n");
        return h.ToString();
    }
}
