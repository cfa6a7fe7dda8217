using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Oml.Explorer;
using Oml.Explorer.State;
using Oml.Protocol.Core;
using Oml.Protocol.Ledger;

namespace Oml.Cli;

/// <summary><c>oml explorer</c>: serve the read-only web explorer over a protocol ledger and the lab's reports.</summary>
public static class ExplorerCommand
{
    /// <summary>Stops a running <c>oml explorer</c> (tests run it in-process).</summary>
    public static CancellationToken StopForTests { get; set; } = CancellationToken.None;

    public static Command Create()
    {
        var ledger = new Option<string>("--ledger") { Description = "The protocol ledger (a SQLite file made by `oml protocol init`); read only", Required = true };
        var reports = new Option<string?>("--reports") { Description = "The lab's committed reports (default: docs/results when it exists here)" };
        var port = new Option<int>("--port") { Description = "TCP port on 127.0.0.1 (0 picks a free one)", DefaultValueFactory = _ => 5170 };
        var poll = new Option<int>("--poll-ms") { Description = "How often to look for new ledger events, in milliseconds", DefaultValueFactory = _ => 500 };
        var urlFile = new Option<string?>("--url-file") { Description = "Write the explorer's base URL to this file once it listens" };
        var cmd = new Command("explorer", "Serve a read-only web explorer of the protocol (models, hosts, claims, accounts, governance) and the lab's reports on 127.0.0.1.")
        {
            ledger, reports, port, poll, urlFile,
        };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(ledger)!;
            var dir = r.GetValue(reports) ?? (Directory.Exists("docs/results") ? "docs/results" : null);
            if (dir is not null && !Directory.Exists(dir)) throw new ArgumentException($"--reports: no directory {dir}");
            if (r.GetValue(poll) < 10) throw new ArgumentException("--poll-ms must be at least 10");
            if (!File.Exists(path)) throw new FileNotFoundException($"no ledger at {path}: create one with `oml protocol init --ledger {path} --keystore TREASURY`", path);
            try
            {
                return Run(path, dir, r.GetValue(port), TimeSpan.FromMilliseconds(r.GetValue(poll)), r.GetValue(urlFile));
            }
            catch (Exception e) when (e is ProtocolException or LedgerCorruptException)
            {
                Console.Error.WriteLine($"oml: error: {path}: {e.Message}");
                return Cli.Failure;
            }
        });
        return cmd;
    }

    private static int Run(string path, string? reports, int port, TimeSpan poll, string? urlFile)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(StopForTests);
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        try
        {
            var source = LedgerStateSource.OpenFile(path, poll);
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
                    Console.WriteLine($"explorer {server.Url} over {Path.GetFullPath(path)} (height {source.Current.Height}){(reports is null ? "" : $", reports {Path.GetFullPath(reports)}")}; Ctrl-C to stop");
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
