using System.Diagnostics;
using System.Text;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Hosting;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tests.Core;
using Oml.Protocol.Tests.Ledger;

namespace Oml.Protocol.Tests.Hosting;

/// <summary>The process the commit-usage crash test kills: commits one epoch of a host's stored usage, as `oml host commit-usage` does.</summary>
internal static class CommitUsageChild
{
    public const string Flag = "--oml-commit-usage-crash-child";

    /// <summary>args: ledger path, store folder, host key hex, epoch, step to SIGKILL itself at (or "none").</summary>
    public static int Run(string[] args)
    {
        string killAt = args[4];
        UsageStore.StepHook = step =>
        {
            Console.Out.WriteLine($"step {step};");
            if (step == killAt) Process.GetCurrentProcess().Kill(); // SIGKILL: no finally blocks run
        };
        using var ledger = SqliteLedger.Open(args[0]);
        var engine = ProtocolEngine.Open(ledger);
        using var key = PrivateKey.FromHex(args[2]);
        string host = Hex.Of(key.Address);
        var store = new UsageStore(args[1], engine.Domain, TestNet.Model);
        store.CommitEpoch(long.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture),
            e => { engine.Refresh(); return engine.State.Usage.GetValueOrDefault(ProtocolState.UsageKey(TestNet.Model, host, e)); },
            b => engine.CommitUsage(key, b));
        Console.Out.WriteLine("done;");
        return 0;
    }
}

/// <summary>
/// Issue 11, hole 3: a crash of `oml host commit-usage` between writing the usage book and the ledger append lost the
/// whole epoch (the rerun said it was already committed). A real child process commits an epoch and is killed with
/// SIGKILL at each step of the write-ahead commit and at random moments; a rerun then commits the epoch with every
/// served receipt, exactly once, with the ledger's root equal to the stored book's.
/// </summary>
public class CommitUsageCrashTests
{
    private static ProcessStartInfo ChildStart(params string[] args)
    {
        var dir = AppContext.BaseDirectory;
        var apphost = Path.Combine(dir, OperatingSystem.IsWindows() ? "Oml.Protocol.Tests.exe" : "Oml.Protocol.Tests");
        var psi = File.Exists(apphost)
            ? new ProcessStartInfo(apphost)
            : new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { ArgumentList = { "exec", Path.Combine(dir, "Oml.Protocol.Tests.dll") } };
        psi.ArgumentList.Add(CommitUsageChild.Flag);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        return psi;
    }

    [Fact]
    public async Task A_rerun_after_a_kill_at_any_point_commits_the_epoch_with_no_receipt_lost()
    {
        var ct = TestContext.Current.CancellationToken;
        using var tmp = new TempDir();
        using var n = new TestNet(ledger: SqliteLedger.Open(tmp.File("ledger.oml"), create: true));
        var copy = n.License(n.HostA, TestNet.NewOmlizer(Pools.Make(16)));
        var host = new HostService(n.HostA, n.Engine.Domain, TestNet.Model, 0, ClaimTests.Answers(copy.Subset.Fingerprints), PermitPolicy.Require, n.Clock);
        string storeDir = tmp.File("receipts");
        var store = new UsageStore(storeDir, n.Engine.Domain, TestNet.Model);
        n.Engine.Deposit(n.User, TestNet.A(n.HostA), 90_000);
        var served = new HashSet<string>(StringComparer.Ordinal);
        long nonce = 0;
        var rng = new Random(4321);
        string[] plan = ["pending-written", "submitted", "finished", "random", "random", "random", "random"];
        for (int round = 0; round < plan.Length; round++)
        {
            long epoch = n.S.EpochAt(n.Engine.Now);
            for (int i = 0; i < 5 + round; i++)
            {
                string q = $"round {round} query {i}";
                var permit = Permit.Create(n.User.Address, TestNet.Model, n.HostA.Address, q, nonce++, n.Engine.Now + 3 * 86_400, TestNet.Price).Sign(n.Engine.Domain, n.User);
                var answer = await host.AskAsync(q, permit, ct);
                store.Record(answer.Receipt, permit);
                served.Add(Hex.Of(answer.Receipt.Receipt.Digest(n.Engine.Domain)));
            }
            var errors = new StringBuilder();
            using (var child = new Process { StartInfo = ChildStart(n.Ledger is SqliteLedger l ? l.Path : "", storeDir, Hex.Of(n.HostA.ExportBytes()), epoch.ToString(System.Globalization.CultureInfo.InvariantCulture), plan[round]) })
            {
                child.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (errors) errors.AppendLine(e.Data); };
                child.OutputDataReceived += (_, _) => { };
                Assert.True(child.Start());
                child.BeginOutputReadLine();
                child.BeginErrorReadLine();
                if (plan[round] == "random")
                {
                    // Somewhere between start-up and the end of the commit (the child needs a few hundred ms in all).
                    Thread.Sleep(rng.Next(50, 900));
                    if (!child.HasExited) child.Kill();
                }
                Assert.True(child.WaitForExit(60_000), "the child hung");
                if (plan[round] != "random") Assert.NotEqual(0, child.ExitCode);
                lock (errors) Assert.True(child.ExitCode != 0 || errors.Length == 0, errors.ToString());
            }

            // The rerun (here in-process, as a second `oml host commit-usage` would).
            n.Engine.Refresh();
            bool onLedger = n.S.Usage.ContainsKey(ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), epoch));
            bool pendingLeft = Directory.GetFiles(storeDir, "pending-usage-*").Length > 0;
            if (!onLedger || pendingLeft) UsageStoreTests.Commit(n, store, epoch);
            else Assert.Equal(ProtocolErrorCode.UsageAlreadyCommitted, Assert.Throws<ProtocolException>(() => UsageStoreTests.Commit(n, store, epoch)).Code);

            // Every served receipt is in exactly one committed book, and each book is what the ledger committed.
            var books = store.CommittedBooks();
            var inBooks = books.Values.SelectMany(b => b.Receipts).Select(r => Hex.Of(r.Receipt.Digest(n.Engine.Domain))).ToList();
            Assert.Equal(inBooks.Count, inBooks.Distinct().Count());
            Assert.True(served.SetEquals(inBooks), $"round {round} ({plan[round]}): {served.Count} served, {inBooks.Count} committed");
            foreach (var (e, b) in books)
            {
                var u = n.S.Usage[ProtocolState.UsageKey(TestNet.Model, TestNet.A(n.HostA), e)];
                Assert.Equal(Hex.Of(b.Root()), u.ReceiptsRoot);
                Assert.Equal(b.Receipts.Count, u.ReceiptCount);
                Assert.Empty(u.Skipped);
            }
            Assert.Empty(Directory.GetFiles(storeDir, "pending-usage-*"));
            Assert.Equal(90_000 - served.Count * TestNet.Price, n.Acc(n.User).Escrowed);

            // Move ledger time into the next epoch.
            n.Clock.Advance(n.S.Parameters.EpochSeconds);
            n.Engine.Transfer(n.Outsider, TestNet.A(n.User2), 1);
        }
    }
}
