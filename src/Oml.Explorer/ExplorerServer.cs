using System.Net;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Oml.Explorer.State;
using Oml.Explorer.Web;
using Oml.Protocol.Crypto;

namespace Oml.Explorer;

/// <summary>How to serve the explorer.</summary>
/// <param name="Source">Where the protocol state comes from (owned by the caller).</param>
/// <param name="ReportsDirectory">The lab's reports (docs/results), or null for none.</param>
/// <param name="Port">TCP port on the loopback interface; 0 picks a free one.</param>
/// <param name="Address">The interface to bind (loopback by default: the explorer has no authentication).</param>
/// <param name="Clock">The time countdowns are computed against (the ledger's clock).</param>
public sealed record ExplorerOptions(IProtocolStateSource Source, string? ReportsDirectory = null, int Port = 0, IPAddress? Address = null, TimeProvider? Clock = null);

/// <summary>
/// The explorer web app: ASP.NET Core (Kestrel) serving server-rendered pages, its own CSS/JS/icon (no CDN, nothing
/// downloaded at run time), the lab's SVG plots, and two small JSON endpoints for live refresh. Read-only: GET only.
/// </summary>
public sealed class ExplorerServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ExplorerServer(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    /// <summary>The base URL it listens on, e.g. http://127.0.0.1:5123.</summary>
    public string Url { get; }

    /// <summary>How long /api/wait holds a request open before answering "unchanged".</summary>
    public static TimeSpan LongPoll { get; set; } = TimeSpan.FromSeconds(25);

    public static async Task<ExplorerServer> StartAsync(ExplorerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Port is < 0 or > 65535) throw new ArgumentException($"port {options.Port} is not in 0..65535");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "oml-explorer", ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(options.Address ?? IPAddress.Loopback, options.Port);
        });
        var app = builder.Build();
        Map(app, options);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("the explorer's server reports no address");
        return new ExplorerServer(app, address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
    }

    /// <summary>Completes when the server stops.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken) => _app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private static void Map(WebApplication app, ExplorerOptions o)
    {
        var source = o.Source;
        var clock = o.Clock ?? TimeProvider.System;
        var lab = new LabReports(o.ReportsDirectory);
        long Now() => Math.Max(clock.GetUtcNow().ToUnixTimeSeconds(), source.Current.LastTime);

        app.Use(async (ctx, next) =>
        {
            var h = ctx.Response.Headers;
            h.ContentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
            h.XContentTypeOptions = "nosniff";
            h["Referrer-Policy"] = "no-referrer";
            h.XFrameOptions = "DENY";
            if (!HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method))
            {
                ctx.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
                h.Allow = "GET, HEAD";
                return;
            }
            await next(ctx).ConfigureAwait(false);
        });

        static IResult Html(string html, int status = 200) => Results.Content(html, "text/html; charset=utf-8", statusCode: status);

        app.MapGet("/", () => Html(Pages.Overview(source.Current, Now(), source.LastError)));
        app.MapGet("/models", () => Html(Pages.Models(source.Current, Now(), source.LastError)));
        app.MapGet("/models/{*id}", (string id) =>
        {
            var s = source.Current;
            var m = s.Models.FirstOrDefault(x => x.Id == id);
            return m is null ? Html(Pages.NotFound(s, Now(), $"There is no model '{id}'."), 404) : Html(Pages.Model(s, m, Now(), source.LastError));
        });
        app.MapGet("/hosts", () => Html(Pages.Hosts(source.Current, Now(), source.LastError)));
        app.MapGet("/hosts/{address}", (string address) =>
        {
            var s = source.Current;
            var a = Canonical(address);
            var x = a is null ? null : s.Hosts.FirstOrDefault(h => h.Address == a);
            return x is null ? Html(Pages.NotFound(s, Now(), $"No host holds a licence at '{address}'."), 404) : Html(Pages.Host(s, x, Now(), source.LastError));
        });
        app.MapGet("/claims", () => Html(Pages.Claims(source.Current, Now(), source.LastError)));
        app.MapGet("/accounts", () => Html(Pages.Accounts(source.Current, Now(), source.LastError)));
        app.MapGet("/accounts/{address}", (string address) =>
        {
            var s = source.Current;
            var a = Canonical(address);
            var x = a is null ? null : s.Accounts.FirstOrDefault(h => h.Address == a);
            return x is null ? Html(Pages.NotFound(s, Now(), $"No account '{address}' has appeared on the ledger."), 404) : Html(Pages.Account(s, x, Now(), source.LastError));
        });
        app.MapGet("/governance", () => Html(Pages.Governance(source.Current, Now(), source.LastError)));
        app.MapGet("/lab", () => Html(Pages.Lab(source.Current, Now(), lab, source.LastError)));
        app.MapGet("/lab/{name}", (string name) =>
        {
            var r = lab.Find(name);
            return r is null ? Html(Pages.NotFound(source.Current, Now(), $"There is no lab report '{name}'."), 404) : Html(Pages.LabReport(source.Current, Now(), r, source.LastError));
        });
        app.MapGet("/lab/{name}/{file}", (string name, string file, HttpContext ctx) =>
        {
            var path = lab.Plot(name, file);
            if (path is null) return Results.NotFound();
            // An SVG opened on its own must not run anything.
            ctx.Response.Headers.ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; sandbox";
            return Results.File(path, "image/svg+xml");
        });
        app.MapGet("/assets/{name}", (string name, HttpContext ctx) =>
        {
            var asset = Asset(name);
            if (asset is null) return Results.NotFound();
            ctx.Response.Headers.CacheControl = "no-cache";
            return Results.Bytes(asset.Value.Bytes, asset.Value.Type);
        });
        app.MapGet("/api/head", () => Results.Json(Head(source.Current, source.LastError)));
        app.MapGet("/api/wait", async (long height, CancellationToken ct) =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(LongPoll);
            try
            {
                var s = await source.WaitForChangeAsync(height, timeout.Token).ConfigureAwait(false);
                return Results.Json(Head(s, source.LastError));
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return Results.Json(Head(source.Current, source.LastError));
            }
        });
        app.MapFallback((HttpContext ctx) => Html(Pages.NotFound(source.Current, Now(), $"Nothing lives at {ctx.Request.Path}."), 404));
    }

    private static object Head(ExplorerSnapshot s, string? error) => new { height = s.Height, headHash = s.HeadHash, lastTime = s.LastTime, error };

    /// <summary>An address in any case → EIP-55; null when it is not an address (or its mixed case is a bad checksum).</summary>
    private static string? Canonical(string text) =>
        Address.TryParse(text, out var a) ? a.ToString() : null;

    private static readonly Dictionary<string, string> Types = new(StringComparer.Ordinal)
    {
        [".css"] = "text/css; charset=utf-8", [".js"] = "text/javascript; charset=utf-8", [".svg"] = "image/svg+xml",
    };

    private static (byte[] Bytes, string Type)? Asset(string name)
    {
        if (!Types.TryGetValue(Path.GetExtension(name), out var type) || name.Contains('/') || name.Contains('\\')) return null;
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Oml.Explorer.Assets." + name);
        if (stream is null) return null;
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return (ms.ToArray(), type);
    }
}
