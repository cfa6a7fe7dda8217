using System.Net;
using System.Text.Json.Nodes;
using Oml.Explorer.State;
using Oml.Explorer.Web;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Explorer.Tests;

public sealed class StateSourceTests
{
    [Fact]
    public async Task Snapshot_maps_the_state_with_exact_payouts_along_the_tree_and_withdrawals()
    {
        using var n = new Net();
        await using var source = new LedgerStateSource(n.Ledger, "test ledger", TimeSpan.Zero);
        var s = source.Current;
        Assert.Equal(n.Ledger.Height, s.Height);
        Assert.Equal(Convert.ToHexStringLower(n.Ledger.HeadHash), s.HeadHash);
        Assert.Equal(n.Treasury.Address.ToString(), s.Treasury);

        var host = Assert.Single(s.Hosts);
        Assert.Equal(n.HostA.Address.ToString(), host.Address);
        var usage = Assert.Single(host.Usage);
        Assert.Equal(300, usage.FeesSettled);
        // Per permit of 100: 20 % to the host (20); of the owner revenue (80), 10 % to the parent's owner (8), the rest
        // (72) to the owner; three permits.
        Assert.Equal([(n.HostA.Address.ToString(), 60L), (n.Owner.Address.ToString(), 216L), (n.Owner2.Address.ToString(), 24L)],
            usage.Payouts.Select(p => (p.Recipient, p.Amount)));
        Assert.Equal(60, host.FeesEarned);
        Assert.Equal(216, n.Engine.State.AccountOf(Net.A(n.Owner)).Withdrawable);

        var hostAccount = s.Accounts.Single(a => a.Address == host.Address);
        Assert.Equal(60, Assert.Single(hostAccount.Withdrawals).Amount);
        Assert.Equal("host", hostAccount.Role);
        var child = s.Models.Single(m => m.Id == "child");
        Assert.Equal([1, 2], child.Versions.Select(v => v.Number));
        Assert.Equal(Net.Root, Assert.Single(child.Licences).IndicesRoot);
        Assert.Equal("base", Assert.Single(child.Parents).ModelId);

        // Every address in the snapshot is EIP-55 (mixed case that verifies).
        foreach (var a in s.Accounts.Select(a => a.Address).Append(s.Treasury).Concat(s.Models.Select(m => m.Owner)))
        {
            Assert.True(Address.TryParse(a, out var parsed), a);
            Assert.Equal(parsed.ToString(), a);
        }
    }

    [Fact]
    public async Task Escrows_refunds_skipped_permits_expired_claims_and_stakes_are_mapped()
    {
        using var n = new Net();
        string user = n.User.Address.ToString(), hostA = n.HostA.Address.ToString(), owner = n.Owner.Address.ToString();
        await using (var source = new LedgerStateSource(n.Ledger, "test", TimeSpan.Zero))
        {
            var s = source.Current;
            // The user's escrow with host A paid the three settled permits (300); the one paying 5 was skipped.
            var escrow = Assert.Single(s.Escrows);
            Assert.Equal((user, hostA, 700L, (long?)null), (escrow.User, escrow.Host, escrow.Amount, escrow.RefundRequestedAt));
            Assert.Equal([escrow], s.Accounts.Single(a => a.Address == user).Escrows);
            Assert.Equal("user", s.Accounts.Single(a => a.Address == user).Role);
            var usage = Assert.Single(Assert.Single(s.Hosts).Usage);
            Assert.Equal((4L, 3L), (usage.ReceiptCount, usage.PermitCount));
            var skipped = Assert.Single(usage.Skipped);
            Assert.Equal(nameof(ProtocolErrorCode.FeeTooLow), skipped.Reason);
            Assert.Equal(n.Engine.State.Usage.Values.Single().Skipped.Single().PermitHash, skipped.PermitHash);

            // The unrevealed claim expired and its bond went back to the prover as a credit.
            var claim = s.Claims.Single(c => c.Id == n.ExpiredClaim);
            Assert.Equal("Expired", claim.Status);
            Assert.Null(claim.OpenDeadline);
            Assert.Equal(100, s.Accounts.Single(a => a.Address == n.Prover.Address.ToString()).Withdrawable);

            // Stake-weighted governance: the owner's 1 500 is the whole stake, over the threshold; its yes weighs 1 500.
            Assert.Equal((1_500L, 1_000L, 5_000), (s.TotalStaked, s.ProposalThreshold, s.QuorumBps));
            Assert.Equal(1_500, s.Accounts.Single(a => a.Address == owner).Staked);
            Assert.Contains("staker", s.Accounts.Single(a => a.Address == owner).Role);
            var p = Assert.Single(s.Proposals);
            Assert.Equal((1, 1_500L, 750L, 1_500L, 0L), (p.Stakers, p.TotalWeight, p.Quorum, p.Yes, p.No));
            Assert.Equal(new VoteView(owner, true, 1_500), Assert.Single(p.Votes));

            var host = Pages.Host(s, s.Hosts[0], n.Clock.Now);
            Assert.Contains(skipped.PermitHash, host);
            Assert.Contains("FeeTooLow", host);
            Assert.Contains("<dd data-field=\"escrowed\">700</dd>", host);
            var claims = Pages.Claims(s, n.Clock.Now);
            Assert.Contains("status-expired", claims);
            Assert.Contains("was refunded to the prover", claims);
            var gov = Pages.Governance(s, n.Clock.Now);
            Assert.Contains("<dd data-field=\"proposalThreshold\">1,000</dd>", gov);
            Assert.Contains("<span data-field=\"quorum\">750</span>", gov);
        }

        // A refund request shows as pending with the time it becomes refundable; the refund removes the escrow.
        n.Engine.RequestRefund(n.User, Net.A(n.HostA));
        long asked = n.Clock.Now;
        await using (var source = new LedgerStateSource(n.Ledger, "test", TimeSpan.Zero))
        {
            var s = source.Current;
            var escrow = Assert.Single(s.Escrows);
            Assert.True(escrow.RefundPending);
            Assert.Equal(asked + n.Engine.State.Parameters.RefundDelaySeconds, escrow.RefundableAt);
            Assert.Contains("pending since", Pages.Account(s, s.Accounts.Single(a => a.Address == user), n.Clock.Now));
        }
        n.Clock.Now += n.Engine.State.Parameters.RefundDelaySeconds;
        n.Engine.Refund(n.User, Net.A(n.HostA));
        await using (var source = new LedgerStateSource(n.Ledger, "test", TimeSpan.Zero))
        {
            var s = source.Current;
            Assert.Empty(s.Escrows);
            Assert.Equal(0, s.Accounts.Single(a => a.Address == user).Escrowed);
        }
    }

    [Fact]
    public async Task The_source_follows_new_events_and_wakes_waiters()
    {
        using var n = new Net();
        await using var source = new LedgerStateSource(n.Ledger, "test", TimeSpan.FromMilliseconds(20));
        long h = source.Current.Height;
        var wait = source.WaitForChangeAsync(h, TestContext.Current.CancellationToken);
        Assert.False(wait.IsCompleted);
        n.Engine.Deposit(n.User, Net.A(n.HostA), 7);
        var s = await wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(h + 1, s.Height);
        Assert.Equal(707, s.Accounts.Single(a => a.Address == n.User.Address.ToString()).Escrowed);
        Assert.Equal(707, Assert.Single(s.Hosts).EscrowedWithHost);
        // Asking with a stale height answers at once.
        Assert.True(source.WaitForChangeAsync(h, TestContext.Current.CancellationToken).IsCompleted);
    }

    [Fact]
    public void An_uninitialised_ledger_is_a_clear_error()
    {
        using var ledger = new InMemoryLedger();
        var e = Assert.Throws<ProtocolException>(() => new LedgerStateSource(ledger, "empty.db", TimeSpan.Zero));
        Assert.Equal(ProtocolErrorCode.NotInitialized, e.Code);
        Assert.Contains("oml protocol init", e.Message);
    }
}

public sealed class PageTests
{
    private static ExplorerSnapshot Snapshot(Net n)
    {
        var source = new LedgerStateSource(n.Ledger, "test", TimeSpan.Zero);
        var s = source.Current;
        source.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return s;
    }

    [Fact]
    public void Ledger_text_is_encoded_never_markup()
    {
        using var n = new Net();
        var s = Snapshot(n);
        var html = Pages.Model(s, s.Models.Single(m => m.Id == "child"), Net.Start);
        Assert.DoesNotContain("<script>alert", html);
        Assert.DoesNotContain("<b>bold", html);
        Assert.Contains("&lt;script&gt;", html);
        // The only scripts are the app's own file.
        Assert.Equal(1, html.Split("<script").Length - 1);
    }

    [Fact]
    public void Every_page_has_one_h1_the_landmarks_and_the_current_nav_item()
    {
        using var n = new Net();
        var s = Snapshot(n);
        var pages = new Dictionary<string, string>
        {
            ["/"] = Pages.Overview(s, Net.Start), ["/models"] = Pages.Models(s, Net.Start), ["/hosts"] = Pages.Hosts(s, Net.Start),
            ["/claims"] = Pages.Claims(s, Net.Start), ["/accounts"] = Pages.Accounts(s, Net.Start), ["/governance"] = Pages.Governance(s, Net.Start),
        };
        foreach (var (path, html) in pages)
        {
            Assert.Equal(1, html.Split("<h1").Length - 1);
            Assert.Contains("<main id=\"main\"", html);
            Assert.Contains("<nav aria-label=\"Main\">", html);
            Assert.Contains($"<a href=\"{path}\" aria-current=\"page\">", html);
            Assert.Contains("class=\"skip-link\" href=\"#main\"", html);
            // Assets come from the app itself: no absolute URL in any src or href.
            Assert.DoesNotMatch("(src|href)=\"(https?:)?//", html);
        }
    }

    [Fact]
    public void The_family_tree_draws_one_edge_per_parent_link()
    {
        using var n = new Net();
        var svg = FamilyTree.Svg(Snapshot(n).Models);
        Assert.Equal(1, svg.Split("<line class=\"edge\"").Length - 1);
        Assert.Contains("href=\"/models/base\"", svg);
        Assert.Contains("href=\"/models/child\"", svg);
        Assert.Contains("10 %", svg);
    }

    [Fact]
    public void Countdowns_show_the_time_left_and_passed_deadlines()
    {
        Assert.Equal("1h 01m 01s", Fmt.Duration(3661));
        Assert.Equal("2d 00h 00m 05s", Fmt.Duration(2 * 86400 + 5));
        Assert.Equal("0s", Fmt.Duration(-5));
    }
}

public sealed class LabTests
{
    private static string ReportsRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return Path.Combine(d.FullName, "docs", "results");
        throw new DirectoryNotFoundException("repository root not found");
    }

    [Fact]
    public void Markdown_tables_images_code_and_inline_markup_render_safely()
    {
        const string md = """
            Intro with **bold**, *it*, `co<de>` and a [plot](a.svg) and [evil](../../etc/passwd).

            | name | value |
            | --- | ---: |
            | a \| b | 1.5 |
            | <img src=x onerror=alert(1)> | 2 |

            ![the plot](capacity-fsr.svg)
            ![escape](../x.svg)

            ```
            <raw> & code
            ```

            - one
            - two
            """;
        var html = LabReports.Render(md, "capacity");
        Assert.Contains("<strong>bold</strong>", html);
        Assert.Contains("<em>it</em>", html);
        Assert.Contains("<code>co&lt;de&gt;</code>", html);
        Assert.Contains("<a href=\"/lab/capacity/a.svg\">plot</a>", html);
        Assert.DoesNotContain("passwd\"", html);
        Assert.Contains("<td>a | b</td><td class=\"num\">1.5</td>", html);
        Assert.DoesNotContain("<img src=x", html);
        Assert.Contains("<img src=\"/lab/capacity/capacity-fsr.svg\" alt=\"the plot\"", html);
        Assert.DoesNotContain("../x.svg", html);
        Assert.Contains("&lt;raw&gt; &amp; code", html);
        Assert.Contains("<li>one</li>", html);
    }

    [Fact]
    public void Reports_are_listed_and_plots_served_by_plain_name_only()
    {
        var lab = new LabReports(ReportsRoot());
        var reports = lab.List();
        Assert.Contains(reports, r => r.Name == "capacity" && r.Plots > 0 && r.Tables > 0);
        Assert.NotNull(lab.Plot("capacity", "capacity-fsr-english.svg"));
        Assert.Null(lab.Plot("capacity", "../capacity/report.md"));
        Assert.Null(lab.Plot("capacity", "report.md"));
        Assert.Null(lab.Plot("..", "x.svg"));
        Assert.Null(new LabReports(null).Find("capacity"));
    }
}

public sealed class ServerTests
{
    [Fact]
    public async Task Serves_pages_assets_and_plots_read_only_with_a_strict_policy()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new Net();
        await using var source = new LedgerStateSource(n.Ledger, "test", TimeSpan.FromMilliseconds(20));
        string reports = Path.Combine(Path.GetDirectoryName(typeof(ServerTests).Assembly.Location)!, "..", "..", "..", "..", "..", "docs", "results");
        await using var server = await ExplorerServer.StartAsync(new ExplorerOptions(source, reports, 0, Clock: n.Clock), ct);
        Assert.StartsWith("http://127.0.0.1:", server.Url);
        using var http = new HttpClient { BaseAddress = new Uri(server.Url) };

        foreach (var path in new[] { "/", "/models", "/models/child", "/hosts", $"/hosts/{Net.A(n.HostA)}", "/claims", "/accounts", $"/accounts/{Net.A(n.User)}", "/governance", "/lab", "/lab/capacity" })
        {
            using var r = await http.GetAsync(path, ct);
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"{path}: {r.StatusCode}");
            Assert.Equal("text/html", r.Content.Headers.ContentType!.MediaType);
            Assert.Contains("default-src 'none'", r.Headers.GetValues("Content-Security-Policy").Single());
        }
        // Lowercase addresses are accepted and shown EIP-55.
        var hostPage = await http.GetStringAsync($"/hosts/{Net.A(n.HostA)}", ct);
        Assert.Contains(n.HostA.Address.ToString(), hostPage);
        Assert.DoesNotContain(Net.A(n.HostA), hostPage);

        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/models/nope", ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/hosts/0x1234", ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/lab/capacity/..%2Freport.md", ct)).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await http.PostAsync("/", new StringContent(""), ct)).StatusCode);
        using (var css = await http.GetAsync("/assets/site.css", ct))
        {
            Assert.Equal(HttpStatusCode.OK, css.StatusCode);
            Assert.Equal("text/css", css.Content.Headers.ContentType!.MediaType);
        }
        using (var svg = await http.GetAsync("/lab/capacity/capacity-fsr-english.svg", ct))
        {
            Assert.Equal(HttpStatusCode.OK, svg.StatusCode);
            Assert.Equal("image/svg+xml", svg.Content.Headers.ContentType!.MediaType);
            Assert.Contains("sandbox", svg.Headers.GetValues("Content-Security-Policy").Single());
        }

        // Long poll: answers once the ledger moves.
        var head = JsonNode.Parse(await http.GetStringAsync("/api/head", ct))!;
        long h = head["height"]!.GetValue<long>();
        var wait = http.GetStringAsync($"/api/wait?height={h}", ct);
        await Task.Delay(100, ct);
        Assert.False(wait.IsCompleted);
        n.Engine.Deposit(n.User, Net.A(n.HostA), 1);
        var moved = JsonNode.Parse(await wait.WaitAsync(TimeSpan.FromSeconds(10), ct))!;
        Assert.Equal(h + 1, moved["height"]!.GetValue<long>());
    }
}
