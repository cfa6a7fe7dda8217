using Oml.Explorer.State;

namespace Oml.Explorer.Web;

/// <summary>
/// The explorer's pages, rendered on the server from one <see cref="ExplorerSnapshot"/> to an HTML string. Each
/// method is pure (snapshot and the current time in, HTML out), so a page can be rendered and measured without a
/// server. Rows carry <c>data-key</c> attributes (model id, address, claim id) for scripts and tests.
/// </summary>
public static partial class Pages
{
    private static readonly (string Path, string Label)[] Nav =
    [
        ("/", "Overview"), ("/models", "Models"), ("/hosts", "Hosts"), ("/claims", "Claims"), ("/accounts", "Accounts"),
        ("/governance", "Governance"), ("/lab", "Lab"),
    ];

    /// <summary>The page frame: skip link, header with the main navigation, the main landmark, a live region, the footer.</summary>
    public static string Layout(ExplorerSnapshot? s, long now, string title, string section, Action<HtmlBuilder> body, string? error = null)
    {
        var h = new HtmlBuilder();
        h.Add($"""
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{title} · oml explorer</title>
            <link rel="stylesheet" href="/assets/site.css">
            <link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
            <script src="/assets/explorer.js" defer></script>
            </head>
            <body data-height="{s?.Height ?? -1}" data-now="{now}">
            <a class="skip-link" href="#main">Skip to content</a>
            <header class="site-header">
            <p class="brand"><a href="/">oml explorer</a></p>
            <nav aria-label="Main"><ul>
            """);
        foreach (var (path, label) in Nav)
        {
            if (path == section) h.Add($"""<li><a href="{path}" aria-current="page">{label}</a></li>""");
            else h.Add($"""<li><a href="{path}">{label}</a></li>""");
        }
        h.Raw("</ul></nav>\n");
        if (s is not null)
            h.Add($"""<p class="source" id="source">{s.Source} · height <span id="height">{s.Height}</span> · last event <time datetime="{Fmt.Iso(s.LastTime)}">{Fmt.Time(s.LastTime)}</time> · epoch {s.EpochAt(now)}</p>""");
        if (error is not null) h.Add($"""<p class="error" role="alert">Refreshing failed, showing the last good state: {error}</p>""");
        h.Raw("</header>\n<main id=\"main\" tabindex=\"-1\">\n");
        body(h);
        h.Raw("\n</main>\n<div id=\"live\" class=\"visually-hidden\" role=\"status\" aria-live=\"polite\"></div>\n");
        h.Raw("<footer class=\"site-footer\"><p>Read-only view of the OML protocol and the lab's reports. Addresses in EIP-55 form; amounts in base units; times UTC.</p></footer>\n</body>\n</html>\n");
        return h.ToString();
    }

    // ---------------------------------------------------------------- small parts

    private static RawHtml Addr(string? address, string area = "accounts")
    {
        if (string.IsNullOrEmpty(address)) return new("<span class=\"muted\">hidden until reveal</span>");
        var h = new HtmlBuilder();
        h.Add($"""<a class="addr" href="/{area}/{address}"><code>{address}</code></a>""");
        return new(h.ToString());
    }

    private static RawHtml Code(string? text)
    {
        if (string.IsNullOrEmpty(text)) return new("<span class=\"muted\">-</span>");
        var h = new HtmlBuilder();
        h.Add($"<code class=\"hash\">{text}</code>");
        return new(h.ToString());
    }

    private static RawHtml ModelLink(string? id)
    {
        if (id is null) return new("<span class=\"muted\">hidden until reveal</span>");
        var h = new HtmlBuilder();
        h.Add($"""<a href="/models/{Uri.EscapeDataString(id)}">{id}</a>""");
        return new(h.ToString());
    }

    private static RawHtml When(long unix)
    {
        var h = new HtmlBuilder();
        h.Add($"""<time datetime="{Fmt.Iso(unix)}">{Fmt.Time(unix)}</time>""");
        return new(h.ToString());
    }

    /// <summary>A deadline with a live countdown (explorer.js updates the text every second).</summary>
    private static RawHtml Deadline(long deadline, long now)
    {
        var h = new HtmlBuilder();
        string left = deadline > now ? $"{Fmt.Duration(deadline - now)} left" : "passed";
        h.Add($"""<span class="countdown" data-deadline="{deadline}">{left}</span> <span class="muted">(<time datetime="{Fmt.Iso(deadline)}">{Fmt.Time(deadline)}</time>)</span>""");
        return new(h.ToString());
    }

    private static RawHtml Status(string status)
    {
        var h = new HtmlBuilder();
        h.Add($"""<span class="status status-{status.ToLowerInvariant()}">{status}</span>""");
        return new(h.ToString());
    }

    private static void TableStart(HtmlBuilder h, string caption, params string[] headers) => TableStart(h, caption, headers, []);

    /// <summary>A table in a keyboard-scrollable region (narrow screens scroll it sideways); numeric columns right-aligned.</summary>
    private static void TableStart(HtmlBuilder h, string caption, string[] headers, int[] numeric)
    {
        h.Add($"""<div class="table-wrap" role="region" aria-label="{caption}" tabindex="0"><table><caption>{caption}</caption><thead><tr>""");
        for (int i = 0; i < headers.Length; i++)
            h.Add($"""<th scope="col"{new RawHtml(numeric.Contains(i) ? " class=\"num\"" : "")}>{headers[i]}</th>""");
        h.Raw("</tr></thead><tbody>\n");
    }

    private static void TableEnd(HtmlBuilder h) => h.Raw("</tbody></table></div>\n");

    private static void Empty(HtmlBuilder h, string text) => h.Add($"""<p class="empty">{text}</p>""");

    // ---------------------------------------------------------------- overview

    public static string Overview(ExplorerSnapshot s, long now, string? error = null) => Layout(s, now, "Overview", "/", h =>
    {
        h.Add($"""
            <h1>Protocol overview</h1>
            <dl class="facts">
            <dt>Source</dt><dd>{s.Source}</dd>
            <dt>Height</dt><dd data-field="height">{s.Height}</dd>
            <dt>Head hash</dt><dd>{Code(s.HeadHash)}</dd>
            <dt>Chain id</dt><dd data-field="chainId">{s.ChainId}</dd>
            <dt>Verifying contract</dt><dd><code>{s.VerifyingContract}</code></dd>
            <dt>Treasury</dt><dd data-field="treasury">{Addr(s.Treasury)}</dd>
            <dt>Total supply</dt><dd class="num" data-field="totalSupply">{Fmt.Money(s.TotalSupply)}</dd>
            <dt>Genesis</dt><dd>{When(s.GenesisTime)}</dd>
            <dt>Current epoch</dt><dd data-field="epoch">{s.EpochAt(now)} <span class="muted">({Fmt.Duration(s.EpochSeconds)} each)</span></dd>
            </dl>
            <ul class="cards">
            <li><a href="/models"><span class="big">{s.Models.Count}</span> models</a></li>
            <li><a href="/hosts"><span class="big">{s.Hosts.Count}</span> hosts</a></li>
            <li><a href="/claims"><span class="big">{s.Claims.Count(c => c.OpenDeadline is not null)}</span> open claims of {s.Claims.Count}</a></li>
            <li><a href="/accounts"><span class="big">{s.Accounts.Count}</span> accounts</a></li>
            <li><a href="/governance"><span class="big">{s.Proposals.Count}</span> proposals</a></li>
            </ul>
            <h2>Recent events</h2>
            """);
        if (s.RecentEvents.Count == 0) { Empty(h, "No events."); return; }
        TableStart(h, $"The last {s.RecentEvents.Count} events, newest first", ["#", "type", "time", "actor"], [0]);
        foreach (var e in s.RecentEvents)
            h.Add($"""<tr data-key="{e.Sequence}"><td class="num">{e.Sequence}</td><td>{e.Type}</td><td>{When(e.Time)}</td><td>{Addr(e.Actor)}</td></tr>""").Raw("\n");
        TableEnd(h);
    }, error);

    // ---------------------------------------------------------------- models

    public static string Models(ExplorerSnapshot s, long now, string? error = null) => Layout(s, now, "Models", "/models", h =>
    {
        h.Raw("<h1>Models</h1>\n");
        if (s.Models.Count == 0) { Empty(h, "No model is registered yet."); return; }
        h.Raw("<section aria-labelledby=\"tree-h\"><h2 id=\"tree-h\">Family tree</h2>\n<p class=\"muted\">An arrow goes from a parent to the model derived from it, labelled with the parent's share of the child's owner revenue.</p>\n");
        h.Raw(FamilyTree.Svg(s.Models));
        var edges = s.Models.SelectMany(m => m.Parents.Select(p => (Child: m.Id, p.ModelId, p.ShareBps))).ToList();
        if (edges.Count > 0)
        {
            h.Raw("<details><summary>The tree as a list</summary><ul>\n");
            foreach (var e in edges) h.Add($"<li>{ModelLink(e.ModelId)} is a parent of {ModelLink(e.Child)} with {Fmt.Bps(e.ShareBps)} of its owner revenue</li>\n");
            h.Raw("</ul></details>\n");
        }
        h.Raw("</section>\n<section aria-labelledby=\"list-h\"><h2 id=\"list-h\">All models</h2>\n");
        TableStart(h, "Registered models", ["model", "owner", "price per query", "min collateral", "versions", "hosts", "parents", "registered"], [2, 3, 4, 5]);
        foreach (var m in s.Models)
        {
            string parents = m.Parents.Count == 0 ? "-" : string.Join(", ", m.Parents.Select(p => $"{p.ModelId} ({Fmt.Bps(p.ShareBps)})"));
            h.Add($"""<tr data-key="{m.Id}"><td>{ModelLink(m.Id)}</td><td>{Addr(m.Owner)}</td><td class="num" data-field="price">{Fmt.Money(m.PricePerQuery)}</td><td class="num" data-field="minCollateral">{Fmt.Money(m.MinCollateral)}</td><td class="num" data-field="versions">{m.Versions.Count}</td><td class="num" data-field="hosts">{m.Licences.Count}</td><td>{parents}</td><td>{When(m.RegisteredAt)}</td></tr>""").Raw("\n");
        }
        TableEnd(h);
        h.Raw("</section>\n");
    }, error);

    public static string Model(ExplorerSnapshot s, ModelView m, long now, string? error = null) => Layout(s, now, $"Model {m.Id}", "/models", h =>
    {
        h.Add($"""
            <h1>Model <span class="id">{m.Id}</span></h1>
            <dl class="facts">
            <dt>Owner</dt><dd data-field="owner">{Addr(m.Owner)}</dd>
            """);
        if (m.PendingOwner is not null) h.Add($"<dt>Transfer pending to</dt><dd>{Addr(m.PendingOwner)}</dd>");
        h.Add($"""
            <dt>Price per query</dt><dd data-field="price">{Fmt.Money(m.PricePerQuery)}</dd>
            <dt>Minimum collateral</dt><dd data-field="minCollateral">{Fmt.Money(m.MinCollateral)}</dd>
            <dt>Registered</dt><dd>{When(m.RegisteredAt)}</dd>
            <dt>Metadata</dt><dd data-field="metadata">{(m.Metadata.Length == 0 ? "-" : m.Metadata)}</dd>
            <dt>Licence terms</dt><dd>{(m.LicenceTerms.Length == 0 ? "-" : m.LicenceTerms)}</dd>
            <dt>Fingerprints spent by claims</dt><dd>{m.SpentFingerprints}</dd>
            </dl>
            <h2>Versions</h2>
            """);
        TableStart(h, $"Versions of {m.Id}", ["#", "weights digest", "notes", "added"], [0]);
        foreach (var v in m.Versions)
            h.Add($"""<tr data-key="{v.Number}"><td class="num">{v.Number}</td><td>{Code(v.WeightsDigest)}</td><td>{(v.Notes.Length == 0 ? "-" : v.Notes)}</td><td>{When(v.Time)}</td></tr>""").Raw("\n");
        TableEnd(h);

        h.Raw("<h2>Family</h2>\n");
        var children = s.Models.Where(c => c.Parents.Any(p => p.ModelId == m.Id)).ToList();
        if (m.Parents.Count == 0 && children.Count == 0) Empty(h, "No declared parents or children.");
        else
        {
            h.Raw("<ul>\n");
            foreach (var p in m.Parents) h.Add($"<li>parent {ModelLink(p.ModelId)}: {Fmt.Bps(p.ShareBps)} of this model's owner revenue</li>\n");
            foreach (var c in children) h.Add($"<li>child {ModelLink(c.Id)}: pays {Fmt.Bps(c.Parents.First(p => p.ModelId == m.Id).ShareBps)} of its owner revenue here</li>\n");
            h.Raw("</ul>\n");
        }

        h.Raw("<h2>Licensed copies</h2>\n<p class=\"muted\">Each copy's fingerprint subset is committed by a salted Merkle root; the keys stay with the owner.</p>\n");
        if (m.Licences.Count == 0) { Empty(h, "No host holds a licence yet."); return; }
        TableStart(h, $"Licences of {m.Id}", ["#", "host", "state", "collateral posted", "locked", "fingerprints", "commitment root", "copy digest", "allocation", "endpoint"], [0, 3, 4, 5]);
        foreach (var l in m.Licences)
            h.Add($"""<tr data-key="{l.Host}"><td class="num">{l.Ordinal}</td><td>{Addr(l.Host, "hosts")}</td><td>{l.StateText}</td><td class="num">{Fmt.Money(l.CollateralPosted)}</td><td class="num" data-field="collateralLocked">{Fmt.Money(l.CollateralLocked)}</td><td class="num">{(l.Delivered ? Fmt.Money(l.FingerprintCount) : "-")}</td><td data-field="indicesRoot">{Code(l.IndicesRoot)}</td><td>{Code(l.CopyDigest)}</td><td>{l.Allocation ?? "-"}</td><td>{l.Endpoint}</td></tr>""").Raw("\n");
        TableEnd(h);
    }, error);

    // ---------------------------------------------------------------- hosts

    public static string Hosts(ExplorerSnapshot s, long now, string? error = null) => Layout(s, now, "Hosts", "/hosts", h =>
    {
        h.Raw("<h1>Hosts</h1>\n");
        if (s.Hosts.Count == 0) { Empty(h, "No host holds a licence yet."); return; }
        TableStart(h, $"{s.Hosts.Count} hosts holding licences", ["host", "models", "collateral posted", "locked", "usage epochs", "fees settled", "host earnings", "claims against"], [2, 3, 4, 5, 6, 7]);
        foreach (var x in s.Hosts)
        {
            string models = string.Join(", ", x.Licences.Select(l => l.ModelId));
            h.Add($"""<tr data-key="{x.Address}"><td>{Addr(x.Address, "hosts")}</td><td>{models}</td><td class="num" data-field="collateralPosted">{Fmt.Money(x.CollateralPosted)}</td><td class="num" data-field="collateralLocked">{Fmt.Money(x.CollateralLocked)}</td><td class="num">{x.Usage.Count}</td><td class="num" data-field="feesSettled">{Fmt.Money(x.FeesSettled)}</td><td class="num" data-field="feesEarned">{Fmt.Money(x.FeesEarned)}</td><td class="num" data-field="claims">{x.ClaimsAgainst}</td></tr>""").Raw("\n");
        }
        TableEnd(h);
    }, error);

    public static string Host(ExplorerSnapshot s, HostView x, long now, string? error = null) => Layout(s, now, $"Host {x.Address}", "/hosts", h =>
    {
        h.Add($"""
            <h1>Host <code class="id">{x.Address}</code></h1>
            <p><a href="/accounts/{x.Address}">Balances and withdrawals of this account</a></p>
            <dl class="facts">
            <dt>Collateral posted</dt><dd data-field="collateralPosted">{Fmt.Money(x.CollateralPosted)}</dd>
            <dt>Collateral still locked</dt><dd data-field="collateralLocked">{Fmt.Money(x.CollateralLocked)}</dd>
            <dt>Fees settled (paid by users)</dt><dd data-field="feesSettled">{Fmt.Money(x.FeesSettled)}</dd>
            <dt>Host's own share</dt><dd data-field="feesEarned">{Fmt.Money(x.FeesEarned)}</dd>
            <dt>Escrowed by users for this host</dt><dd data-field="escrowed">{Fmt.Money(x.EscrowedWithHost)}</dd>
            <dt>Permits skipped at settlement</dt><dd data-field="permitsSkipped">{x.PermitsSkipped}</dd>
            </dl>
            <h2>Licences</h2>
            """);
        TableStart(h, "Licences held", ["model", "#", "state", "collateral posted", "locked", "fingerprints", "commitment root", "endpoint"], [1, 3, 4, 5]);
        foreach (var l in x.Licences)
            h.Add($"""<tr data-key="{l.ModelId}"><td>{ModelLink(l.ModelId)}</td><td class="num">{l.Ordinal}</td><td>{l.StateText}</td><td class="num">{Fmt.Money(l.CollateralPosted)}</td><td class="num" data-field="collateralLocked">{Fmt.Money(l.CollateralLocked)}</td><td class="num">{(l.Delivered ? Fmt.Money(l.FingerprintCount) : "-")}</td><td>{Code(l.IndicesRoot)}</td><td>{l.Endpoint}</td></tr>""").Raw("\n");
        TableEnd(h);

        h.Raw("<h2>Usage per epoch</h2>\n");
        if (x.Usage.Count == 0) Empty(h, "No usage committed yet.");
        else
        {
            TableStart(h, "Committed usage books", ["model", "epoch", "receipts", "permits settled", "permits skipped", "fees settled", "receipts root", "committed"], [1, 2, 3, 4, 5]);
            foreach (var u in x.Usage)
                h.Add($"""<tr data-key="{u.ModelId}/{u.Epoch}"><td>{ModelLink(u.ModelId)}</td><td class="num">{u.Epoch}</td><td class="num" data-field="receipts">{u.ReceiptCount}</td><td class="num" data-field="permits">{u.PermitCount}</td><td class="num" data-field="skipped">{u.Skipped.Count}</td><td class="num" data-field="fees">{Fmt.Money(u.FeesSettled)}</td><td>{Code(u.ReceiptsRoot)}</td><td>{When(u.Time)}</td></tr>""").Raw("\n");
            TableEnd(h);

            if (x.PermitsSkipped > 0)
            {
                h.Raw("<h2>Permits skipped at settlement</h2>\n<p class=\"muted\">Permits of a committed batch that were not paid (the rest of the batch settled); a receipt for an unpaid permit never shields the host from a claim.</p>\n");
                TableStart(h, "Skipped permits per usage commitment", ["model", "epoch", "permit hash", "reason", "detail"], [1]);
                foreach (var u in x.Usage)
                    foreach (var k in u.Skipped)
                        h.Add($"""<tr data-key="{u.ModelId}/{u.Epoch}/{k.PermitHash}"><td>{ModelLink(u.ModelId)}</td><td class="num">{u.Epoch}</td><td>{Code(k.PermitHash)}</td><td data-field="reason">{k.Reason}</td><td>{k.Detail}</td></tr>""").Raw("\n");
                TableEnd(h);
            }

            h.Raw("<h2>Fees paid along the family tree</h2>\n<p class=\"muted\">What each commitment credited: the host's share, then the model owner's revenue split among the declared parents' owners.</p>\n");
            TableStart(h, "Payouts per usage commitment", ["model", "epoch", "recipient", "as", "amount"], [1, 4]);
            foreach (var u in x.Usage)
                foreach (var p in u.Payouts)
                    h.Add($"""<tr data-key="{u.ModelId}/{u.Epoch}/{p.Recipient}"><td>{ModelLink(u.ModelId)}</td><td class="num">{u.Epoch}</td><td>{Addr(p.Recipient)}</td><td>{p.Role}</td><td class="num" data-field="amount">{Fmt.Money(p.Amount)}</td></tr>""").Raw("\n");
            TableEnd(h);
        }

        h.Raw("<h2>Users' escrows with this host</h2>\n");
        if (x.Escrows.Count == 0) Empty(h, "No user holds funds in escrow for this host.");
        else EscrowTable(h, "Escrows that pay this host's permits", x.Escrows, now, byHost: false);

        h.Raw("<h2>Claims against this host</h2>\n");
        var claims = s.Claims.Where(c => c.Host == x.Address).ToList();
        if (claims.Count == 0) Empty(h, "None.");
        else
        {
            h.Raw("<ul>\n");
            foreach (var c in claims)
            {
                h.Add($"""<li><a href="/claims#claim-{c.Id}">claim {c.Id}</a> on {ModelLink(c.ModelId)}: {Status(c.Status)}""");
                if (c.OpenDeadline is long d) h.Add($", rebuttal deadline {Deadline(d, now)}");
                if (c.Slashed > 0) h.Add($", slashed {Fmt.Money(c.Slashed)}");
                h.Raw("</li>\n");
            }
            h.Raw("</ul>\n");
        }
        var accusations = s.Accusations.Where(a => a.Host == x.Address).ToList();
        if (accusations.Count > 0)
        {
            h.Raw("<h2>Leak accusations</h2>\n<ul>\n");
            foreach (var a in accusations) h.Add($"<li>{ModelLink(a.ModelId)}, filed by {Addr(a.Accuser)} at {When(a.Time)}</li>\n");
            h.Raw("</ul>\n");
        }
    }, error);

    // ---------------------------------------------------------------- claims

    public static string Claims(ExplorerSnapshot s, long now, string? error = null) => Layout(s, now, "Claims", "/claims", h =>
    {
        h.Raw("<h1>Claims</h1>\n<p class=\"muted\">A prover commits to a claim (the host and fingerprints stay hidden), reveals it within the reveal window, the host may rebut until the rebuttal deadline, and then anyone settles it: the host's collateral is slashed and the prover rewarded.</p>\n");
        if (s.Claims.Count == 0) Empty(h, "No claims yet.");
        else
        {
            TableStart(h, "All claims", ["#", "status", "prover", "model", "host", "bond", "deadline", "slashed", "prover reward"], [0, 5, 7, 8]);
            foreach (var c in s.Claims)
            {
                var deadline = c.OpenDeadline is long d ? Deadline(d, now) : new RawHtml("<span class=\"muted\">closed</span>");
                h.Add($"""<tr data-key="{c.Id}"><td class="num"><a href="#claim-{c.Id}">{c.Id}</a></td><td data-field="status">{Status(c.Status)}</td><td>{Addr(c.Prover)}</td><td>{ModelLink(c.ModelId)}</td><td data-field="host">{Addr(c.Host, "hosts")}</td><td class="num" data-field="bond">{Fmt.Money(c.Bond)}</td><td>{deadline}</td><td class="num" data-field="slashed">{Fmt.Money(c.Slashed)}{(c.SlashCapped ? " (capped)" : "")}</td><td class="num" data-field="proverReward">{Fmt.Money(c.ProverReward)}</td></tr>""").Raw("\n");
            }
            TableEnd(h);
            foreach (var c in s.Claims)
            {
                h.Add($"""
                    <section class="claim" id="claim-{c.Id}" aria-labelledby="claim-{c.Id}-h">
                    <h2 id="claim-{c.Id}-h">Claim {c.Id} {Status(c.Status)}</h2>
                    <ol class="timeline">
                    <li><strong>Commit</strong> {When(c.CommittedAt)} by {Addr(c.Prover)}, bond {Fmt.Money(c.Bond)}; commitment {Code(c.Commitment)}</li>
                    """);
                if (c.Status == "Committed") h.Add($"<li><strong>Reveal</strong> due: {Deadline(c.RevealDeadline, now)}</li>\n");
                else if (c.Status == "Expired") h.Add($"<li><strong>Reveal</strong> never: the window closed at {When(c.RevealDeadline)}</li>\n");
                else if (c.RevealedAt > 0)
                {
                    h.Add($"<li><strong>Reveal</strong> {When(c.RevealedAt)}: host {Addr(c.Host, "hosts")}, model {ModelLink(c.ModelId)}, {c.Items.Count} fingerprint {(c.Items.Count == 1 ? "answer" : "answers")}; evidence hash {Code(c.EvidenceHash)}</li>\n");
                    h.Add($"<li><strong>Rebuttal window</strong> {(c.Status == "Revealed" ? new RawHtml("open: " + Deadline(c.RebutDeadline, now).Value) : new RawHtml(c.Status == "Rebutted" ? "the host rebutted" : "closed without a valid rebuttal"))}</li>\n");
                }
                h.Add($"<li><strong>Settlement</strong> {SettlementText(c)}</li>\n</ol>\n");
                if (c.Items.Count > 0)
                {
                    TableStart(h, $"Evidence items of claim {c.Id} (public hashes only)", ["leaf", "fingerprint id", "receipt hash", "permit hash"], [0]);
                    foreach (var i in c.Items)
                        h.Add($"""<tr><td class="num">{i.LeafIndex}</td><td>{Code(i.FingerprintId)}</td><td>{Code(i.ReceiptHash)}</td><td>{Code(i.PermitHash)}</td></tr>""").Raw("\n");
                    TableEnd(h);
                }
                h.Raw("</section>\n");
            }
        }
        h.Raw("<h2>Leak accusations</h2>\n");
        if (s.Accusations.Count == 0) { Empty(h, "None."); return; }
        TableStart(h, "Accusations filed by model owners after tracing a leaked copy", ["model", "host", "accuser", "evidence hash", "filed"]);
        foreach (var a in s.Accusations)
            h.Add($"""<tr data-key="{a.ModelId}/{a.Host}"><td>{ModelLink(a.ModelId)}</td><td data-field="host">{Addr(a.Host, "hosts")}</td><td>{Addr(a.Accuser)}</td><td>{Code(a.EvidenceHash)}</td><td>{When(a.Time)}</td></tr>""").Raw("\n");
        TableEnd(h);
    }, error);

    private static string SettlementText(ClaimView c) => c.Status switch
    {
        "Slashed" => $"host slashed by {Fmt.Money(c.Slashed)}{(c.SlashCapped ? " (capped at what was still locked)" : "")}; prover reward {Fmt.Money(c.ProverReward)} plus the bond back",
        "Rebutted" => "rebutted: the bond went to the host",
        "Expired" => $"never revealed: the bond of {Fmt.Money(c.Bond)} was refunded to the prover",
        _ => "pending",
    };

    // ---------------------------------------------------------------- accounts

    public static string Accounts(ExplorerSnapshot s, long now, string? error = null) => Layout(s, now, "Accounts", "/accounts", h =>
    {
        h.Raw("<h1>Accounts</h1>\n<p class=\"muted\">Balance: free funds. Escrowed: a user's deposits with hosts (each pays only that host's permits). Staked: governance stake (voting weight). Withdrawable: credits (fees, rewards, returned bonds) waiting to be withdrawn. Locked: collateral and bonds.</p>\n");
        TableStart(h, $"{s.Accounts.Count} accounts", ["address", "roles", "balance", "escrowed", "staked", "withdrawable", "locked", "requests", "withdrawals"], [2, 3, 4, 5, 6, 7, 8]);
        foreach (var a in s.Accounts)
            h.Add($"""<tr data-key="{a.Address}"><td>{Addr(a.Address)}</td><td>{a.Role}</td><td class="num" data-field="balance">{Fmt.Money(a.Balance)}</td><td class="num" data-field="escrowed">{Fmt.Money(a.Escrowed)}</td><td class="num" data-field="staked">{Fmt.Money(a.Staked)}</td><td class="num" data-field="withdrawable">{Fmt.Money(a.Withdrawable)}</td><td class="num" data-field="locked">{Fmt.Money(a.Locked)}</td><td class="num" data-field="nonce">{a.Nonce}</td><td class="num">{a.Withdrawals.Count}</td></tr>""").Raw("\n");
        TableEnd(h);
        h.Raw("<h2>Escrows</h2>\n");
        if (s.Escrows.Count == 0) Empty(h, "No escrows.");
        else EscrowTable(h, "Every user's escrow with each host", s.Escrows, now, byHost: true, withUser: true);
    }, error);

    public static string Account(ExplorerSnapshot s, AccountView a, long now, string? error = null) => Layout(s, now, $"Account {a.Address}", "/accounts", h =>
    {
        h.Add($"""
            <h1>Account <code class="id">{a.Address}</code></h1>
            <dl class="facts">
            <dt>Roles</dt><dd>{a.Role}</dd>
            <dt>Balance</dt><dd data-field="balance">{Fmt.Money(a.Balance)}</dd>
            <dt>Escrowed with hosts</dt><dd data-field="escrowed">{Fmt.Money(a.Escrowed)}</dd>
            <dt>Governance stake</dt><dd data-field="staked">{Fmt.Money(a.Staked)}</dd>
            <dt>Withdrawable</dt><dd data-field="withdrawable">{Fmt.Money(a.Withdrawable)}</dd>
            <dt>Locked</dt><dd data-field="locked">{Fmt.Money(a.Locked)}</dd>
            <dt>Requests made</dt><dd>{a.Nonce}</dd>
            </dl>
            """);
        if (s.Hosts.Any(x => x.Address == a.Address)) h.Add($"""<p><a href="/hosts/{a.Address}">Licences and usage of this host</a></p>""");
        if (a.Escrows.Count > 0)
        {
            h.Raw("<h2>Escrows with hosts</h2>\n");
            EscrowTable(h, "This account's escrows (each pays only that host's permits)", a.Escrows, now, byHost: true);
        }
        h.Raw("<h2>Withdrawals</h2>\n");
        if (a.Withdrawals.Count == 0) Empty(h, "None.");
        else
        {
            TableStart(h, "Withdrawals (credits moved into the balance)", ["event", "time", "amount"], [0, 2]);
            foreach (var w in a.Withdrawals)
                h.Add($"""<tr data-key="{w.Sequence}"><td class="num">{w.Sequence}</td><td>{When(w.Time)}</td><td class="num" data-field="amount">{Fmt.Money(w.Amount)}</td></tr>""").Raw("\n");
            TableEnd(h);
        }
        var mine = s.RecentEvents.Where(e => e.Actor == a.Address).ToList();
        h.Raw("<h2>Recent requests</h2>\n");
        if (mine.Count == 0) { Empty(h, "None among the latest events."); return; }
        TableStart(h, "This account's requests among the latest events", ["#", "type", "time"], [0]);
        foreach (var e in mine) h.Add($"""<tr><td class="num">{e.Sequence}</td><td>{e.Type}</td><td>{When(e.Time)}</td></tr>""").Raw("\n");
        TableEnd(h);
    }, error);

    // ---------------------------------------------------------------- governance

    public static string Governance(ExplorerSnapshot s, long now, string? error = null) => Layout(s, now, "Governance", "/governance", h =>
    {
        h.Raw("<h1>Governance</h1>\n<h2>Parameters in force</h2>\n");
        TableStart(h, "Protocol parameters", ["name", "value"], [1]);
        foreach (var p in s.Parameters) h.Add($"""<tr data-key="{p.Name}"><th scope="row">{p.Name}</th><td class="num" data-field="value">{p.Value}</td></tr>""").Raw("\n");
        TableEnd(h);
        var stakers = s.Accounts.Where(a => a.Staked > 0).OrderByDescending(a => a.Staked).ThenBy(a => a.Address, StringComparer.Ordinal).ToList();
        h.Add($"""
            <h2>Stakes</h2>
            <p class="muted">Voting weight is the governance stake, snapshot when a proposal is made; proposing needs a stake of at least the threshold, and a proposal needs votes from {Fmt.Bps(s.QuorumBps)} of the stake at its snapshot.</p>
            <dl class="facts">
            <dt>Total staked</dt><dd data-field="totalStaked">{Fmt.Money(s.TotalStaked)}</dd>
            <dt>Proposal threshold</dt><dd data-field="proposalThreshold">{Fmt.Money(s.ProposalThreshold)}</dd>
            <dt>Quorum</dt><dd data-field="quorumBps">{Fmt.Bps(s.QuorumBps)}</dd>
            </dl>
            """);
        if (stakers.Count == 0) Empty(h, "Nobody has staked yet.");
        else
        {
            TableStart(h, "Governance stakes", ["account", "stake", "share", "may propose"], [1, 2]);
            foreach (var a in stakers)
                h.Add($"""<tr data-key="{a.Address}"><td>{Addr(a.Address)}</td><td class="num" data-field="staked">{Fmt.Money(a.Staked)}</td><td class="num">{Fmt.Share(a.Staked, s.TotalStaked)}</td><td data-field="mayPropose">{(a.Staked >= s.ProposalThreshold ? "yes" : "no")}</td></tr>""").Raw("\n");
            TableEnd(h);
        }
        h.Raw("<h2>Proposals</h2>\n");
        if (s.Proposals.Count == 0) { Empty(h, "No proposals yet."); return; }
        foreach (var p in s.Proposals)
        {
            string state = p.Executed ? "Executed" : now <= p.EndsAt ? "Open" : "Closed";
            string changes = string.Join(", ", p.Changes.Select(c => $"{c.Name} = {c.Value}"));
            h.Add($"""
                <section class="proposal" id="proposal-{p.Id}" data-key="{p.Id}" aria-labelledby="proposal-{p.Id}-h">
                <h3 id="proposal-{p.Id}-h">Proposal {p.Id} {Status(state)}</h3>
                <dl class="facts">
                <dt>Changes</dt><dd data-field="changes">{changes}</dd>
                <dt>Why</dt><dd>{(p.Description.Length == 0 ? "-" : p.Description)}</dd>
                <dt>Proposer</dt><dd>{Addr(p.Proposer)}</dd>
                <dt>Created</dt><dd>{When(p.CreatedAt)}</dd>
                <dt>Voting ends</dt><dd>{(state == "Open" ? Deadline(p.EndsAt, now) : When(p.EndsAt))}</dd>
                <dt>Votes (stake-weighted)</dt><dd><span data-field="yes">{Fmt.Money(p.Yes)}</span> yes, <span data-field="no">{Fmt.Money(p.No)}</span> no, of <span data-field="totalWeight">{Fmt.Money(p.TotalWeight)}</span> staked by <span data-field="stakers">{p.Stakers}</span> at the snapshot; quorum <span data-field="quorum">{Fmt.Money(p.Quorum)}</span></dd>
                </dl>
                """);
            if (p.Votes.Count > 0)
            {
                TableStart(h, $"Votes on proposal {p.Id}", ["voter", "vote", "weight"], [2]);
                foreach (var v in p.Votes) h.Add($"""<tr data-key="{v.Voter}"><td>{Addr(v.Voter)}</td><td data-field="vote">{(v.Support ? "yes" : "no")}</td><td class="num" data-field="weight">{Fmt.Money(v.Weight)}</td></tr>""").Raw("\n");
                TableEnd(h);
            }
            h.Raw("</section>\n");
        }
    }, error);

    /// <summary>Escrows with amount, and for a pending refund when it was asked and from when it can be refunded.</summary>
    private static void EscrowTable(HtmlBuilder h, string caption, IReadOnlyList<EscrowView> escrows, long now, bool byHost, bool withUser = false)
    {
        var headers = new List<string>();
        if (withUser || !byHost) headers.Add("user");
        if (byHost) headers.Add("host");
        int amountColumn = headers.Count;
        headers.AddRange(["escrowed", "refund"]);
        TableStart(h, caption, [.. headers], [amountColumn]);
        foreach (var e in escrows)
        {
            h.Add($"""<tr data-key="{e.User}/{e.Host}">""");
            if (withUser || !byHost) h.Add($"<td>{Addr(e.User)}</td>");
            if (byHost) h.Add($"""<td>{Addr(e.Host, "hosts")}</td>""");
            h.Add($"""<td class="num" data-field="amount">{Fmt.Money(e.Amount)}</td>""");
            if (e.RefundableAt is long at)
                h.Add($"""<td data-field="refund">pending since {When(e.RefundRequestedAt!.Value)}; refundable {(at > now ? Deadline(at, now) : new RawHtml("now"))}</td>""");
            else h.Raw("""<td data-field="refund"><span class="muted">none</span></td>""");
            h.Raw("</tr>\n");
        }
        TableEnd(h);
    }

    public static string NotFound(ExplorerSnapshot? s, long now, string what) => Layout(s, now, "Not found", "", h =>
    {
        h.Add($"<h1>Not found</h1>\n<p>{what}</p>\n<p><a href=\"/\">Back to the overview</a></p>\n");
    });
}
