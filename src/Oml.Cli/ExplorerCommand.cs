using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Oml.Explorer;
using Oml.Explorer.State;
using Oml.Protocol.Core;
using Oml.Protocol.Ledger;

namespace Oml.Cli;

/// <summary><c>oml explorer</c>: serve the read-only web explorer over the protocol (a ledger, or the contracts on a chain) and the lab's reports.</summary>
public static class ExplorerCommand
{
    /// <summary>Stops a running <c>oml explorer</c> (tests run it in-process).</summary>
    public static CancellationToken StopForTests { get; set; } = CancellationToken.None;

    public static Command Create()
    {
        var ledger = new Option<string?>("--ledger") { Description = "The protocol ledger (a SQLite file made by `oml protocol init`); read only" };
        var chain = new Option<string?>("--chain") { Description = "Instead of --ledger: the JSON-RPC URL of an EVM node serving the protocol's contracts (read only)" };
        var deployment = new Option<string?>("--deployment")
        {
            Description = $"With --chain: the deployment file written by `oml chain deploy` (default: ${Protocol.ChainCli.DeploymentEnv}, else ./{Protocol.ChainCli.DefaultDeploymentFile})",
        };
        var reports = new Option<string?>("--reports") { Description = "The lab's committed reports (default: docs/results when it exists here)" };
        var port = new Option<int>("--port") { Description = "TCP port on 127.0.0.1 (0 picks a free one)", DefaultValueFactory = _ => 5170 };
        var poll = new Option<int>("--poll-ms") { Description = "How often to look for new ledger events, in milliseconds", DefaultValueFactory = _ => 500 };
        var urlFile = new Option<string?>("--url-file") { Description = "Write the explorer's base URL to this file once it listens" };
        var cmd = new Command("explorer", "Serve a read-only web explorer of the protocol (models, hosts, claims, accounts, governance) and the lab's reports on 127.0.0.1.")
        {
            ledger, chain, deployment, reports, port, poll, urlFile,
        };
        cmd.SetAction(r =>
        {
            string? path = r.GetValue(ledger), url = r.GetValue(chain);
            if ((path is null) == (url is null)) throw new UsageException("give exactly one of --ledger FILE and --chain URL");
            if (path is not null && r.GetValue(deployment) is not null) throw new UsageException("--deployment goes with --chain, not --ledger");
            var dir = r.GetValue(reports) ?? (Directory.Exists("docs/results") ? "docs/results" : null);
            if (dir is not null && !Directory.Exists(dir)) throw new ArgumentException($"--reports: no directory {dir}");
            if (r.GetValue(poll) < 10) throw new ArgumentException("--poll-ms must be at least 10");
            var interval = TimeSpan.FromMilliseconds(r.GetValue(poll));
            if (url is not null)
            {
                url = Protocol.ChainCli.RpcUrl(url);
                var file = Protocol.ChainCli.DeploymentPath(r.GetValue(deployment));
                var d = Protocol.ChainCli.LoadDeployment(file);
                Protocol.ChainCli.CheckAsync(url, d, file, CancellationToken.None).GetAwaiter().GetResult();
                return Run(() => ChainStateSource.OpenAsync(url, d, interval).GetAwaiter().GetResult(), $"chain {d.ChainId} at {url}", dir, r.GetValue(port), r.GetValue(urlFile));
            }
            if (!File.Exists(path)) throw new FileNotFoundException($"no ledger at {path}: create one with `oml protocol init --ledger {path} --keystore TREASURY`", path);
            try
            {
                return Run(() => LedgerStateSource.OpenFile(path!, interval), Path.GetFullPath(path!), dir, r.GetValue(port), r.GetValue(urlFile));
            }
            catch (Exception e) when (e is ProtocolException or LedgerCorruptException)
            {
                Console.Error.WriteLine($"oml: error: {path}: {e.Message}");
                return Cli.Failure;
            }
        });
        return cmd;
    }

    private static int Run(Func<IProtocolStateSource> open, string what, string? reports, int port, string? urlFile)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(StopForTests);
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        try
        {
            var source = open();
            try
            {
                ExplorerServer server;
                try
                {
                    server = ExplorerServer.StartAsync(new ExplorerOptions(source, reports, port)).GetAwaiter().GetResult();
                }
                catch (IOException e) when (e.InnerException is SocketException || e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
                {
                    throw new IOException($"cannot listen on 127.0.0.1:{port} ({e.Message}); choose another --port", e);
                }
                try
                {
                    Console.WriteLine($"explorer {server.Url} over {what} (height {source.Current.Height}){(reports is null ? "" : $", reports {Path.GetFullPath(reports)}")}; Ctrl-C to stop");
                    if (urlFile is not null) FingerprintIO.WriteTextAtomic(urlFile, server.Url + "\n", overwrite: true);
                    try { Task.Delay(Timeout.Infinite, stop.Token).GetAwaiter().GetResult(); }
                    catch (OperationCanceledException) { }
                    Console.WriteLine("stopped");
                }
                finally
                {
                    server.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }
            finally
            {
                source.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return Cli.Ok;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
