using System.Globalization;
using System.Text.Json.Nodes;
using Oml.Cli.Protocol;
using Oml.Explorer.State;
using Oml.Fingerprinting;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>oml explorer</c> end to end in a real headless browser (Debian's chromium + chromedriver, driven by Selenium;
/// nothing downloaded): the protocol scenario runs in-process through the CLI (as in <see cref="ProtocolCliTests"/>,
/// plus a parent model, a proposal and a claim still waiting for its reveal), the explorer serves the ledger, and
/// every page is checked against <c>oml protocol status --json</c> and the commands' own --json output. Also: no
/// secret reaches any page, addresses are EIP-55, the page follows the ledger live, phone width, keyboard and
/// contrast. Screenshots go to $OML_EXPLORER_SCREENSHOTS (default: explorer-screenshots next to the test binary).
/// Without a browser the test fails, unless OML_SKIP_BROWSER_TESTS=1 says to skip it.
/// </summary>
[Collection(nameof(CliTests))]
public sealed class ExplorerBrowserTests : PartiesCliTest
{
    public ExplorerBrowserTests() : base("oml-explorer-", "explorer test passphrase") { }

    private JsonObject Status()
    {
        var r = Run("protocol", "status", "--ledger", Ledger, "--json");
        Assert.True(r.Code == 0, r.Err);
        return JsonNode.Parse(r.Out)!.AsObject();
    }

    /// <summary>What the browser tests do here: run with these binaries, fail with a message, or skip (only when asked).</summary>
    internal sealed record BrowserLookup(string? Browser, string? Driver, string? Problem, bool Skip);

    internal static BrowserLookup LookForBrowser()
    {
        static string? Which(string env, params string[] names)
        {
            var fromEnv = Environment.GetEnvironmentVariable(env);
            if (!string.IsNullOrEmpty(fromEnv)) return File.Exists(fromEnv) ? fromEnv : null;
            var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/bin").Append("/usr/lib/chromium");
            foreach (var n in names)
                foreach (var d in dirs)
                    if (File.Exists(Path.Combine(d, n))) return Path.Combine(d, n);
            return null;
        }
        var browser = Which("OML_CHROMIUM", "chromium", "chromium-browser");
        var driver = Which("OML_CHROMEDRIVER", "chromedriver");
        if (browser is not null && driver is not null) return new(browser, driver, null, false);
        string missing = $"{(browser is null ? "chromium " : "")}{(driver is null ? "chromedriver" : "")}".Trim();
        return Environment.GetEnvironmentVariable("OML_SKIP_BROWSER_TESTS") == "1"
            ? new(browser, driver, $"no {missing} here and OML_SKIP_BROWSER_TESTS=1", true)
            : new(browser, driver, $"the browser tests need {missing}: run scripts/setup.sh (apt-get install chromium chromium-driver), or set OML_SKIP_BROWSER_TESTS=1 to skip them explicitly", false);
    }

    /// <summary>Chromium and chromedriver from the system (apt), or a clear failure; a skip only when the env var asks for it.</summary>
    internal static (string Browser, string Driver) FindBrowser()
    {
        var found = LookForBrowser();
        if (found.Problem is null) return (found.Browser!, found.Driver!);
        if (found.Skip) Assert.Skip(found.Problem);
        Assert.Fail(found.Problem);
        throw new InvalidOperationException("unreachable");
    }

    internal static ChromeDriver StartBrowser(string profileDir)
    {
        var (browser, driverPath) = FindBrowser();
        Environment.SetEnvironmentVariable("SE_OFFLINE", "true"); // Selenium Manager must never download a browser or driver
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(driverPath)!, Path.GetFileName(driverPath));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        var options = new ChromeOptions { BinaryLocation = browser };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--window-size=1280,1000", $"--user-data-dir={profileDir}");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(120));
    }

    private static string ScreenshotDir()
    {
        var dir = Environment.GetEnvironmentVariable("OML_EXPLORER_SCREENSHOTS") ?? Path.Combine(AppContext.BaseDirectory, "explorer-screenshots");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static long Num(string text) => long.Parse(text.Replace(",", "").Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);

    /// <summary>The EIP-55 form, and a check that the page's text is that form (mixed case that verifies).</summary>
    private static string Eip55(string lower)
    {
        var c = StateMapper.Checksummed(lower);
        Assert.NotEqual(lower, c);
        Assert.True(Address.TryParse(c, out _));
        return c;
    }

    /// <summary>
    /// One cell's text, found and read in one script (the page re-renders as the ledger moves: an element found in one
    /// round trip may be gone by the next, Selenium's stale element).
    /// </summary>
    private static string Cell(IWebDriver d, string rowKey, string field)
    {
        var selector = $"tr[data-key='{rowKey}'] [data-field='{field}']";
        return (string?)((IJavaScriptExecutor)d).ExecuteScript(
                "var e = document.querySelector(arguments[0]); return e === null ? null : e.innerText.trim();", selector)
            ?? throw new NoSuchElementException($"no element matches {selector}");
    }

    /// <summary>Every table cell with a data-field, by (row key, field), read in one round trip (the page as it is now).</summary>
    private static Dictionary<(string Key, string Field), string> Cells(IWebDriver d)
    {
        var rows = (System.Collections.ObjectModel.ReadOnlyCollection<object>)((IJavaScriptExecutor)d).ExecuteScript(
            "return Array.prototype.map.call(document.querySelectorAll('tr[data-key] [data-field]'), function (e) { return [e.closest('tr').dataset.key, e.dataset.field, e.innerText.trim()]; });")!;
        var map = new Dictionary<(string, string), string>();
        foreach (System.Collections.ObjectModel.ReadOnlyCollection<object> r in rows) map[((string)r[0], (string)r[1])] = (string)r[2];
        return map;
    }

    private Task<(string Url, Task<(int Code, string Out, string Err)> Run)> Background(string name, params string[] args) =>
        CliRunner.StartAsync(P($"{name}.url"), args);

    [Fact]
    public void Without_a_browser_the_browser_test_fails_unless_told_to_skip()
    {
        var (driver, skipVar) = (Environment.GetEnvironmentVariable("OML_CHROMEDRIVER"), Environment.GetEnvironmentVariable("OML_SKIP_BROWSER_TESTS"));
        try
        {
            Environment.SetEnvironmentVariable("OML_CHROMEDRIVER", P("no-such-chromedriver"));
            Environment.SetEnvironmentVariable("OML_SKIP_BROWSER_TESTS", null);
            var fail = LookForBrowser();
            Assert.False(fail.Skip);
            Assert.Contains("apt-get install chromium chromium-driver", fail.Problem);
            Assert.Equal("FailException", Assert.ThrowsAny<Exception>(() => FindBrowser()).GetType().Name);
            Environment.SetEnvironmentVariable("OML_SKIP_BROWSER_TESTS", "1");
            var skip = LookForBrowser();
            Assert.True(skip.Skip);
            Assert.Contains("OML_SKIP_BROWSER_TESTS=1", skip.Problem);
        }
        finally
        {
            Environment.SetEnvironmentVariable("OML_CHROMEDRIVER", driver);
            Environment.SetEnvironmentVariable("OML_SKIP_BROWSER_TESTS", skipVar);
        }
    }

    [Fact]
    public async Task Explorer_shows_the_protocol_scenario_in_a_real_browser()
    {
        var (_, _) = FindBrowser(); // fail (or skip on request) before the slow part
        var ct = TestContext.Current.CancellationToken;
        var facts = await RunScenario(ct);

        using var stop = new CancellationTokenSource();
        HostCommands.ServeStopForTests = stop.Token;
        ExplorerCommand.StopForTests = stop.Token;
        var (consoleOut, consoleError) = (Console.Out, Console.Error);
        var background = new List<Task>();
        ChromeDriver? browser = null;
        try
        {
            var explorer = await Background("explorer", "explorer", "--ledger", Ledger, "--reports", Path.Combine(RepoRoot.Path, "docs", "results"), "--port", "0", "--poll-ms", "100");
            background.Add(explorer.Run);
            browser = StartBrowser(P("profile"));
            var shots = ScreenshotDir();
            var pages = new Dictionary<string, string>();
            void Open(string path)
            {
                browser.Navigate().GoToUrl(explorer.Url + path);
                Assert.Equal("en", browser.FindElement(By.TagName("html")).GetAttribute("lang"));
                pages[path] = browser.PageSource;
            }
            void Shot(string name) => browser.GetScreenshot().SaveAsFile(Path.Combine(shots, name + ".png"));

            var st = Status();
            // Overview: the same height, chain, treasury and supply as the CLI.
            Open("/");
            Assert.Equal(st["height"]!.GetValue<long>(), Num(browser.FindElement(By.CssSelector("[data-field='height']")).Text));
            Assert.Equal(st["chainId"]!.GetValue<long>(), Num(browser.FindElement(By.CssSelector("[data-field='chainId']")).Text));
            Assert.Equal(Eip55(st["treasury"]!.GetValue<string>()), browser.FindElement(By.CssSelector("[data-field='treasury'] code")).Text);
            Assert.Equal(st["totalSupply"]!.GetValue<long>(), Num(browser.FindElement(By.CssSelector("[data-field='totalSupply']")).Text));
            Assert.Single(browser.FindElements(By.TagName("main")));
            Assert.Single(browser.FindElements(By.CssSelector("nav[aria-label='Main']")));
            Shot("overview");

            // Models: every model with its price, versions and hosts; the family tree links parent to child.
            Open("/models");
            var cells = Cells(browser);
            foreach (var m in st["models"]!.AsArray())
            {
                string id = m!["id"]!.GetValue<string>();
                Assert.Equal(m["price"]!.GetValue<long>(), Num(cells[(id, "price")]));
                Assert.Equal(m["versions"]!.AsArray().Count, (int)Num(cells[(id, "versions")]));
                Assert.Equal(m["hosts"]!.AsArray().Count, (int)Num(cells[(id, "hosts")]));
                Assert.Single(browser.FindElements(By.CssSelector($"svg.tree a[href='/models/{id}']")));
            }
            Assert.Single(browser.FindElements(By.CssSelector("svg.tree line.edge")));
            Assert.Contains("10 %", browser.FindElement(By.CssSelector("svg.tree text.edge-label")).Text);
            Shot("models");

            // A model: its licences with the commitment roots and the metadata shown as text, never as markup.
            Open("/models/tiny");
            foreach (var l in st["licences"]!.AsArray().Where(l => l!["model"]!.GetValue<string>() == "tiny"))
            {
                string host = Eip55(l!["host"]!.GetValue<string>());
                Assert.Equal(l["collateralLocked"]!.GetValue<long>(), Num(Cell(browser, host, "collateralLocked")));
                Assert.Matches("^0x[0-9a-f]{64}$", Cell(browser, host, "indicesRoot"));
            }
            Assert.Equal(facts.Metadata, browser.FindElement(By.CssSelector("[data-field='metadata']")).Text);
            Assert.DoesNotContain("<script>alert", browser.PageSource);
            Assert.Empty(browser.FindElements(By.CssSelector("main script")));

            // Hosts: collateral as the CLI has it; host A's usage and the fees along the tree (host, owner, parent owner).
            Open("/hosts");
            cells = Cells(browser);
            foreach (var l in st["licences"]!.AsArray())
                Assert.Equal(l!["collateralLocked"]!.GetValue<long>(), Num(cells[(Eip55(l["host"]!.GetValue<string>()), "collateralLocked")]));
            Shot("hosts");
            Open($"/hosts/{Addr("hostA")}");
            Assert.Equal(facts.Usage["receipts"]!.GetValue<long>(), Num(Cell(browser, "tiny/0", "receipts")));
            Assert.Equal(facts.Usage["fees"]!.GetValue<long>(), Num(Cell(browser, "tiny/0", "fees")));
            long hostShare = Num(Cell(browser, $"tiny/0/{Eip55(Addr("hostA"))}", "amount"));
            long ownerShare = Num(Cell(browser, $"tiny/0/{Eip55(Addr("owner"))}", "amount"));
            long parentShare = Num(Cell(browser, $"tiny/0/{Eip55(Addr("owner2"))}", "amount"));
            Assert.Equal(facts.Usage["hostShare"]!.GetValue<long>(), hostShare);
            Assert.Equal(facts.Usage["fees"]!.GetValue<long>(), hostShare + ownerShare + parentShare);
            // Three permits of 100: per permit the host keeps 20, and the parent's owner gets 10 % of the remaining 80.
            Assert.Equal(3 * ((100 - 100 * 2_000 / 10_000) * 1_000 / 10_000), parentShare);
            // Settled and skipped permits as commit-usage reported them; the user's escrow with A as its deposit left it, less the fees.
            Assert.Equal(facts.Usage["permits"]!.GetValue<long>(), Num(Cell(browser, "tiny/0", "permits")));
            Assert.Equal(facts.Usage["skipped"]!.GetValue<long>(), Num(Cell(browser, "tiny/0", "skipped")));
            Assert.Equal(facts.Usage["skipped"]!.GetValue<long>(), Num(browser.FindElement(By.CssSelector("[data-field='permitsSkipped']")).Text));
            long escrowWithA = facts.Escrow - facts.Usage["fees"]!.GetValue<long>();
            Assert.Equal(st["accounts"]![Addr("user")]!["escrowed"]!.GetValue<long>(), escrowWithA);
            Assert.Equal(escrowWithA, Num(Cell(browser, $"{Eip55(Addr("user"))}/{Eip55(Addr("hostA"))}", "amount")));
            Assert.Equal(escrowWithA, Num(browser.FindElement(By.CssSelector("[data-field='escrowed']")).Text));
            Assert.Equal("none", Cell(browser, $"{Eip55(Addr("user"))}/{Eip55(Addr("hostA"))}", "refund"));
            Shot("host");

            // Claims: the slashed claim with the CLI's amounts; the committed one counts down to its reveal deadline, live.
            Open("/claims");
            cells = Cells(browser);
            foreach (var c in st["claims"]!.AsArray())
            {
                string id = c!["id"]!.GetValue<long>().ToString(CultureInfo.InvariantCulture);
                Assert.Equal(c["status"]!.GetValue<string>(), cells[(id, "status")]);
                Assert.Equal(c["bond"]!.GetValue<long>(), Num(cells[(id, "bond")]));
                Assert.Equal(c["slashed"]!.GetValue<long>(), Num(cells[(id, "slashed")].Replace(" (capped)", "")));
                Assert.Equal(c["proverReward"]!.GetValue<long>(), Num(cells[(id, "proverReward")]));
            }
            Assert.Equal("Slashed", Cell(browser, facts.SlashedClaim.ToString(CultureInfo.InvariantCulture), "status"));
            Assert.Equal(facts.Settled["slashed"]!.GetValue<long>(), Num(Cell(browser, facts.SlashedClaim.ToString(CultureInfo.InvariantCulture), "slashed")));
            var countdown = browser.FindElement(By.CssSelector($"tr[data-key='{facts.OpenClaim}'] .countdown"));
            string first = countdown.Text;
            Assert.Matches(@"^(\d+h )?\d+m \d\ds left$", first);
            await Task.Delay(2200, ct);
            Assert.NotEqual(first, countdown.Text);
            Assert.Equal(Eip55(Addr("hostC")), browser.FindElement(By.CssSelector($"tr[data-key='tiny/{Eip55(Addr("hostC"))}'] [data-field='host'] code")).Text);
            Shot("claims");

            // Accounts: all four balances of every account; the prover's withdrawal.
            Open("/accounts");
            cells = Cells(browser);
            foreach (var (addr, a) in st["accounts"]!.AsObject())
                foreach (var field in new[] { "balance", "escrowed", "staked", "withdrawable", "locked", "nonce" })
                    Assert.Equal(a![field]!.GetValue<long>(), Num(cells[(Eip55(addr), field)]));
            Assert.Equal(escrowWithA, Num(cells[($"{Eip55(Addr("user"))}/{Eip55(Addr("hostA"))}", "amount")]));
            Shot("accounts");
            Open($"/accounts/{Addr("prover")}");
            Assert.Equal(facts.ProverWithdrawn, Num(browser.FindElement(By.CssSelector("tbody [data-field='amount']")).Text));

            // Governance: parameters, stakes and the proposal's stake-weighted votes as the CLI reports them.
            Open("/governance");
            cells = Cells(browser);
            foreach (var (name, v) in st["parameters"]!.AsObject())
                Assert.Equal(v!.GetValue<long>(), Num(cells[(name, "value")]));
            Assert.Equal(st["parameters"]!["ProposalThreshold"]!.GetValue<long>(), Num(browser.FindElement(By.CssSelector("[data-field='proposalThreshold']")).Text));
            Assert.Equal(st["accounts"]!.AsObject().Sum(a => a.Value!["staked"]!.GetValue<long>()), Num(browser.FindElement(By.CssSelector("[data-field='totalStaked']")).Text));
            foreach (var (addr, a) in st["accounts"]!.AsObject().Where(a => a.Value!["staked"]!.GetValue<long>() > 0))
                Assert.Equal(a!["staked"]!.GetValue<long>(), Num(cells[(Eip55(addr), "staked")]));
            Assert.Equal(facts.Staked, Num(cells[(Eip55(Addr("owner")), "staked")]));
            Assert.Equal(facts.Staked, Num(cells[(Eip55(Addr("owner")), "weight")]));
            foreach (var p in st["proposals"]!.AsArray())
            {
                var sec = browser.FindElement(By.CssSelector($"section[data-key='{p!["id"]!.GetValue<long>()}']"));
                Assert.Equal(p["yes"]!.GetValue<long>(), Num(sec.FindElement(By.CssSelector("[data-field='yes']")).Text));
                Assert.Equal(p["no"]!.GetValue<long>(), Num(sec.FindElement(By.CssSelector("[data-field='no']")).Text));
                Assert.Equal(p["totalStake"]!.GetValue<long>(), Num(sec.FindElement(By.CssSelector("[data-field='totalWeight']")).Text));
            }
            Shot("governance");

            // The lab: every committed report is listed; one report shows all its plots (loaded, from this server) and tables.
            Open("/lab");
            var reportsDir = Path.Combine(RepoRoot.Path, "docs", "results");
            var names = Directory.GetDirectories(reportsDir).Where(d => File.Exists(Path.Combine(d, "report.md"))).Select(Path.GetFileName).ToList();
            Assert.NotEmpty(names);
            foreach (var n in names) Assert.Single(browser.FindElements(By.CssSelector($"li[data-key='{n}'] a")));
            Open("/lab/capacity");
            var md = File.ReadAllLines(Path.Combine(reportsDir, "capacity", "report.md"));
            var images = browser.FindElements(By.CssSelector("article.report img"));
            Assert.Equal(md.Count(l => l.TrimStart().StartsWith("![", StringComparison.Ordinal)), images.Count);
            Assert.Equal(md.Count(l => l.TrimStart().StartsWith("| ---", StringComparison.Ordinal) || l.TrimStart().StartsWith("|---", StringComparison.Ordinal)),
                browser.FindElements(By.CssSelector("article.report table")).Count);
            ((IJavaScriptExecutor)browser).ExecuteScript("document.querySelectorAll('img').forEach(function(i){i.loading='eager';});");
            await Task.Delay(500, ct);
            foreach (var img in images)
            {
                Assert.StartsWith(explorer.Url + "/lab/capacity/", img.GetAttribute("src"));
                Assert.True(Convert.ToInt64(((IJavaScriptExecutor)browser).ExecuteScript("arguments[0].scrollIntoView(); return arguments[0].complete ? arguments[0].naturalWidth : 0;", img), CultureInfo.InvariantCulture) > 0 || await Loaded(browser, img, ct),
                    $"plot {img.GetAttribute("src")} did not load");
            }
            ((IJavaScriptExecutor)browser).ExecuteScript("window.scrollTo(0, 0);");
            Shot("lab-report");
            // Everything the page loaded came from the explorer itself (no CDN, no web font, nothing downloaded elsewhere).
            var foreign = (string)((IJavaScriptExecutor)browser).ExecuteScript(
                "return performance.getEntriesByType('resource').map(function (e) { return e.name; }).filter(function (n) { return n.indexOf(location.origin + '/') !== 0; }).join(' ');")!;
            Assert.Equal("", foreign);
            Assert.True(Convert.ToInt64(((IJavaScriptExecutor)browser).ExecuteScript("return performance.getEntriesByType('resource').length;"), CultureInfo.InvariantCulture) >= images.Count + 2);

            // No secret reaches any page: passphrase, private keys, fingerprint keys, responses and salts, the claim salt.
            foreach (var (path, html) in pages)
                foreach (var (what, secret) in facts.Secrets)
                    Assert.False(html.Contains(secret, StringComparison.OrdinalIgnoreCase), $"{path} shows a secret ({what})");

            // Keyboard: the first Tab reaches the skip link, which moves focus to the main content; focus is visible.
            Open("/claims");
            new OpenQA.Selenium.Interactions.Actions(browser).SendKeys(Keys.Tab).Perform();
            var focused = browser.SwitchTo().ActiveElement();
            Assert.Equal("Skip to content", focused.Text);
            Assert.NotEqual("none", focused.GetCssValue("outline-style"));
            focused.SendKeys(Keys.Enter);
            Assert.Equal("main", browser.SwitchTo().ActiveElement().GetAttribute("id"));

            // Contrast: every visible text's colour against its effective background is at least 4.5:1, on every page kind.
            foreach (var path in new[] { "/", "/models", "/hosts", $"/hosts/{Addr("hostA")}", "/claims", "/accounts", "/governance", "/lab", "/lab/coalition" })
            {
                browser.Navigate().GoToUrl(explorer.Url + path);
                var worst = (string)((IJavaScriptExecutor)browser).ExecuteScript(ContrastScript)!;
                var parts = worst.Split('|');
                Assert.True(double.Parse(parts[0], CultureInfo.InvariantCulture) >= 4.5, $"{path}: contrast {parts[0]} for '{parts[1]}'");
            }

            // Phone width: no sideways scrolling of the page itself (wide tables scroll inside their own region).
            browser.Manage().Window.Size = new System.Drawing.Size(390, 844);
            foreach (var path in new[] { "/", "/models", "/hosts", "/claims", "/accounts", "/governance", "/lab/coalition" })
            {
                browser.Navigate().GoToUrl(explorer.Url + path);
                var widths = (System.Collections.ObjectModel.ReadOnlyCollection<object>)((IJavaScriptExecutor)browser).ExecuteScript(
                    "return [document.documentElement.scrollWidth, window.innerWidth];")!;
                Assert.True(Convert.ToInt64(widths[0], CultureInfo.InvariantCulture) <= Convert.ToInt64(widths[1], CultureInfo.InvariantCulture), $"{path} scrolls sideways at phone width: {widths[0]} > {widths[1]}");
            }
            browser.Navigate().GoToUrl(explorer.Url + "/claims");
            Shot("phone-claims");
            browser.Manage().Window.Size = new System.Drawing.Size(1280, 1000);

            // Live: a deposit made through the CLI shows up on the open page without a reload.
            browser.Navigate().GoToUrl(explorer.Url + "/accounts");
            ((IJavaScriptExecutor)browser).ExecuteScript("window.__sameDocument = 42;");
            long escrowed = Num(Cell(browser, Eip55(Addr("user")), "escrowed"));
            Act("user", "user", "deposit", "--host", Addr("hostA"), "--amount", "5");
            long expected = Status()["accounts"]![Addr("user")]!["escrowed"]!.GetValue<long>();
            Assert.Equal(escrowed + 5, expected);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (DateTime.UtcNow < deadline && Num(Cell(browser, Eip55(Addr("user")), "escrowed")) != expected) await Task.Delay(200, ct);
            Assert.Equal(expected, Num(Cell(browser, Eip55(Addr("user")), "escrowed")));
            Assert.Equal(42L, ((IJavaScriptExecutor)browser).ExecuteScript("return window.__sameDocument;"));
            Assert.Contains("Updated to ledger height", browser.FindElement(By.Id("live")).GetAttribute("textContent"));
        }
        finally
        {
            browser?.Quit();
            browser?.Dispose();
            stop.Cancel();
            try { await Task.WhenAll(background.Concat(_servers)).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken); }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException) { }
            HostCommands.ServeStopForTests = CancellationToken.None;
            ExplorerCommand.StopForTests = CancellationToken.None;
            Console.SetOut(consoleOut);
            Console.SetError(consoleError);
        }
    }

    private static async Task<bool> Loaded(IWebDriver browser, IWebElement img, CancellationToken ct)
    {
        for (int i = 0; i < 50; i++)
        {
            if (Convert.ToInt64(((IJavaScriptExecutor)browser).ExecuteScript("return arguments[0].complete ? arguments[0].naturalWidth : 0;", img), CultureInfo.InvariantCulture) > 0) return true;
            await Task.Delay(100, ct);
        }
        return false;
    }

    /// <summary>WCAG 2 contrast of every element with its own text against the first opaque background behind it; returns "worst|text".</summary>
    private const string ContrastScript = """
        function lum(c) { var v = c.match(/[\d.]+/g).map(Number); var a = v.length > 3 ? v[3] : 1;
          return { a: a, l: [0, 1, 2].map(function (i) { var x = v[i] / 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); }) }; }
        function L(c) { return 0.2126 * c.l[0] + 0.7152 * c.l[1] + 0.0722 * c.l[2]; }
        function bg(el) { for (; el; el = el.parentElement) { var b = lum(getComputedStyle(el).backgroundColor); if (b.a > 0.99) return b; } return lum('rgb(255,255,255)'); }
        var worst = 99, text = '';
        document.querySelectorAll('body *').forEach(function (el) {
          var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim().length > 0; });
          if (!own || el.closest('svg') || el.closest('.visually-hidden') || el.classList.contains('skip-link')) return;
          var r = el.getBoundingClientRect(); if (r.width === 0 || r.height === 0) return;
          var cs = getComputedStyle(el); if (cs.visibility === 'hidden') return;
          var a = L(lum(cs.color)), b = L(bg(el)); var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
          if (ratio < worst) { worst = ratio; text = el.textContent.trim().slice(0, 40); }
        });
        return worst.toFixed(2) + '|' + text;
        """;

    private readonly List<Task> _servers = [];

    private sealed record Facts(JsonNode Usage, JsonNode Settled, long SlashedClaim, long OpenClaim, long ProverWithdrawn, string Metadata, List<(string What, string Secret)> Secrets,
        long Escrow, long Staked);

    /// <summary>The README's protocol scenario through the CLI, plus a parent model, a proposal and a committed, unrevealed claim.</summary>
    private async Task<Facts> RunScenario(CancellationToken ct)
    {
        NewAccounts("treasury", "owner", "owner2", "hostA", "hostB", "hostC", "user", "prover");
        Act("treasury", "protocol", "init", "--set", "RebutWindowSeconds=1", "--set", "VotingWindowSeconds=1");
        FundAll();

        var fixture = Path.Combine(RepoRoot.Path, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
        var model = P("base");
        Directory.CreateDirectory(model);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(fixture, f), Path.Combine(model, f));
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), FingerprintCliTests.TinyTokenizerJson());
        var pool = P("pool.omlfp");
        var g = Run("fingerprints", "generate", "--model", model, "--strategy", "random-word", "--random-word-keys", "--count", "16",
            "--out", pool, "--passphrase-file", PassFile, "--kdf-iterations", Kdf, "--insecure-kdf");
        Assert.True(g.Code == 0, g.Err);

        const string metadata = """{"name":"<script>alert(1)</script> tiny & co"}""";
        Act("owner2", "owner", "register", "--model-id", "base-lm", "--weights-digest", "sha256:base", "--price", "0");
        Act("owner", "owner", "register", "--model-id", "tiny", "--model-dir", model, "--price", "10", "--min-collateral", "1000", "--metadata", metadata);
        Act("owner", "owner", "declare-parent", "--model-id", "tiny", "--parent", "base-lm", "--share-bps", "1000", "--parent-keystore", Ks("owner2"));
        foreach (var h in new[] { "hostA", "hostB", "hostC" })
        {
            Act(h, "host", "apply", "--model-id", "tiny", "--collateral", "2000", "--endpoint", $"http://127.0.0.1/{h}");
            Act("owner", "owner", "deliver", "--model-id", "tiny", "--host", Addr(h), "--pool", pool, "--allocation", "random:6",
                "--base-model", model, "--out", P($"copy-{h}"), "--subset-out", P($"subset-{h}.omlfp"), "--epochs", "300");
            Act(h, "host", "acknowledge", "--model-id", "tiny", "--model-dir", P($"copy-{h}"));
        }

        using var stop = new CancellationTokenSource();
        HostCommands.ServeStopForTests = stop.Token;
        var (consoleOut, consoleError) = (Console.Out, Console.Error);
        JsonNode usage, settled;
        long withdrawn, openClaim, slashedClaim, escrow, staked;
        var ticketSalts = new List<string>();
        try
        {
            var a = await Background("a", "host", "serve", "--ledger", Ledger, "--keystore", Ks("hostA"), "--passphrase-file", PassFile, "--model-id", "tiny",
                "--model-dir", P("copy-hostA"), "--receipts", P("receipts-a"));
            var b = await Background("b", "host", "serve", "--ledger", Ledger, "--keystore", Ks("hostB"), "--passphrase-file", PassFile, "--model-id", "tiny",
                "--model-dir", P("copy-hostB"), "--receipts", P("receipts-b"), "--no-permits");
            var c = await Background("c", "host", "serve", "--plain", "--model-dir", P("copy-hostC"));
            _servers.AddRange([a.Run, b.Run, c.Run]);

            escrow = Act("user", "user", "deposit", "--host", Addr("hostA"), "--amount", "1000")["escrow"]!.GetValue<long>();
            foreach (var q in new[] { " apple bread", " cloud dance", " eagle flame" })
                Assert.True(Act("user", "user", "ask", "--endpoint", a.Url, "--query", q, "--model-id", "tiny", "--host", Addr("hostA"), "--fee", "100")["receiptValid"]!.GetValue<bool>());
            usage = Act("hostA", "host", "commit-usage", "--model-id", "tiny", "--receipts", P("receipts-a"), "--epoch", "0");
            Act("hostA", "host", "withdraw");

            // Two audits of host B: one claim goes all the way to the slash, the other is only committed (its reveal is due in an hour).
            foreach (var t in new[] { "ticket", "ticket2" })
            {
                var audit = Run("prover", "audit", "--ledger", Ledger, "--passphrase-file", PassFile, "--endpoint", b.Url, "--model-id", "tiny",
                    "--host", Addr("hostB"), "--subset", P("subset-hostB.omlfp"), "--max-queries", "3", "--ticket", P($"{t}.json"), "--json");
                Assert.True(audit.Code == 0, audit.Err);
                ticketSalts.Add(JsonNode.Parse(File.ReadAllText(P($"{t}.json")))!["salt"]!.GetValue<string>());
            }
            slashedClaim = Act("prover", "prover", "claim", "--ticket", P("ticket.json"), "--bond", "100")["claim"]!.GetValue<long>();
            await Task.Delay(2100, ct);
            settled = Act("prover", "prover", "settle", "--claim", slashedClaim.ToString(CultureInfo.InvariantCulture));
            withdrawn = Act("prover", "prover", "withdraw")["withdrawn"]!.GetValue<long>();
            using (var ledger = SqliteLedger.Open(Ledger))
            using (var prover = Keystore.Load(Ks("prover"), Passphrase))
                openClaim = ProtocolEngine.Open(ledger).CommitClaim(prover, ClaimTicket.FromJson(File.ReadAllText(P("ticket2.json"))), 150);

            Act("owner", "prover", "trace", "--endpoint", c.Url, "--model-id", "tiny", "--pool", pool);
            // Proposing needs a governance stake of at least ProposalThreshold; the stake is the vote's weight.
            staked = Act("owner", "gov", "stake", "--amount", "1500")["staked"]!.GetValue<long>();
            var prop = Act("owner", "gov", "propose", "--set", "MinBond=150", "--description", "raise the bond");
            Act("owner", "gov", "vote", "--proposal", prop["proposal"]!.GetValue<long>().ToString(CultureInfo.InvariantCulture), "--support", "yes");
        }
        finally
        {
            stop.Cancel();
            try { await Task.WhenAll(_servers).WaitAsync(TimeSpan.FromSeconds(30), ct); }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException) { }
            _servers.Clear();
            HostCommands.ServeStopForTests = CancellationToken.None;
            Console.SetOut(consoleOut);
            Console.SetError(consoleError);
        }

        // Everything that must never reach a page.
        var secrets = new List<(string, string)> { ("passphrase", Passphrase) };
        foreach (var n in Addresses.Keys)
        {
            using var key = Keystore.Load(Ks(n), Passphrase);
            secrets.Add(($"{n}'s private key", Convert.ToHexStringLower(key.ExportBytes())));
        }
        foreach (var s in ticketSalts) secrets.Add(("claim salt", s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s));
        foreach (var f in FingerprintSetFile.Read(pool, Passphrase).Fingerprints)
        {
            secrets.Add(($"salt of fingerprint {f.Index}", Convert.ToHexStringLower(f.Salt.AsSpan())));
            if (f.Key.Trim().Length >= 8) secrets.Add(($"key of fingerprint {f.Index}", f.Key.Trim()));
            foreach (var r in f.Responses) if (r.Text.Trim().Length >= 8) secrets.Add(($"response of fingerprint {f.Index}", r.Text.Trim()));
        }
        return new Facts(usage, settled, slashedClaim, openClaim, withdrawn, metadata, secrets, escrow, staked);
    }
}
