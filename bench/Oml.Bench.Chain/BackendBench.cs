using System.Diagnostics;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Ledger;
using Oml.Protocol.Tracing;

namespace Oml.Bench.Chain;

/// <summary>
/// The same protocol actions, timed through <see cref="IProtocolBackend"/> on each backend one after the other in one
/// process: the embedded ledger in a SQLite file (fsync on every commit, what <c>oml</c> users get), the embedded ledger
/// in memory (no disk, labelled as such), and the contracts on a local anvil through <see cref="ChainBackend"/> (each
/// action estimated, signed, sent, its receipt awaited, then the projection refreshed from the new events).
/// Every backend starts from the same story: the same keys, parameters, model, licence and copy.
/// </summary>
internal static class BackendBench
{
    private const string Model = "bench/model";
    private const long Expiry = 4_000_000_000;

    /// <summary>Counts of each timed action.</summary>
    internal sealed record Plan(int Mints, int Deposits, int Batch, int Batches, int Claims, int Rounds = 1);

    /// <summary>One timed action: how many, their summed wall time, their summed gas (chain only).</summary>
    internal sealed class Row(string action)
    {
        public string Action { get; } = action;
        public int Count { get; set; }
        public TimeSpan Time { get; set; }
        public long Gas { get; set; }
        public double PerSecond => Count / Time.TotalSeconds;
    }

    private sealed class ManualClock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static PrivateKey Key(string role) =>
        PrivateKey.FromHex("0x" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("oml-bench-backends/" + role))));

    /// <summary>Slashing at 1 % so that every timed claim slashes something (the default 50 % empties the collateral in two).</summary>
    private static ProtocolParameters Parameters => ProtocolParameters.Default with { SlashFractionBps = 100 };

    public static async Task<int> MainAsync(string[] args)
    {
        int n = args.Length > 0 ? int.Parse(args[0]) : 200;
        int batch = args.Length > 1 ? int.Parse(args[1]) : 100;
        int roundCount = args.Length > 2 ? int.Parse(args[2]) : 3;
        var plan = new Plan(Mints: n, Deposits: n, Batch: batch, Batches: 5, Claims: 20, Rounds: roundCount);
        string load0 = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "n/a";
        var total = Stopwatch.StartNew();

        // warm-up (JIT, crypto tables) on a throwaway in-memory ledger, not reported
        await OnLedgerAsync(null, new Plan(5, 5, 5, 1, 2));

        // rounds, each running the three backends one after the other; the table gives each cell's median (and range)
        var rounds = new List<List<List<Row>>>();
        for (int round = 0; round < plan.Rounds; round++)
        {
            var dir = Directory.CreateTempSubdirectory("oml-bench-backends-");
            var results = new List<List<Row>>();
            try
            {
                results.Add(await OnLedgerAsync(Path.Combine(dir.FullName, "ledger.db"), plan));
            }
            finally
            {
                dir.Delete(recursive: true);
            }
            results.Add(await OnLedgerAsync(null, plan));
            results.Add(await OnChainAsync(plan));
            rounds.Add(results);
        }
        string load1 = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "n/a";

        Console.WriteLine($"oml backend benchmark: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, .NET {Environment.Version}, {Environment.ProcessorCount} logical CPUs, " +
                          $"SQLite {SqliteLedger.SqliteVersion}, anvil (automine); load average before {load0}, after {load1}");
        Console.WriteLine($"plan: {plan.Mints} mints, {plan.Deposits} deposits, {plan.Batches} commitUsage batches of {plan.Batch} permits, {plan.Claims} claims " +
                          $"(commit, reveal, settle); {plan.Rounds} rounds of SQLite ledger, in-memory ledger, chain; median of the rounds (min–max)");
        Console.WriteLine();
        Console.WriteLine("| action | ledger, SQLite file (fsync) | ledger, in memory | chain (anvil) | SQLite ledger / chain | gas per action (chain) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        static double Median(IEnumerable<double> xs)
        {
            var a = xs.Order().ToArray();
            return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
        }
        string Cell(int backend, int i, string unit)
        {
            var v = rounds.Select(r => r[backend][i].PerSecond).ToList();
            return v.Count == 1 ? $"{v[0]:0.0} {unit}" : $"{Median(v):0.0} {unit} ({v.Min():0.0}–{v.Max():0.0})";
        }
        var first = rounds[0];
        for (int i = 0; i < first[0].Count; i++)
        {
            var (l, c) = (first[0][i], first[2][i]);
            string unit = l.Action.StartsWith("permits", StringComparison.Ordinal) ? "permits/s" : "/s";
            double ratio = Median(rounds.Select(r => r[0][i].PerSecond / r[2][i].PerSecond));
            Console.WriteLine($"| {l.Action} ({l.Count}) | {Cell(0, i, unit)} | {Cell(1, i, unit)} | {Cell(2, i, unit)} | {ratio:0.0}x | " +
                              $"{(c.Count == 0 ? "" : (c.Gas / c.Count).ToString("N0"))} |");
        }
        Console.WriteLine($"(total {total.Elapsed.TotalSeconds:0.0} s)");
        return 0;
    }

    private static async Task<List<Row>> OnLedgerAsync(string? path, Plan plan)
    {
        using var treasury = PrivateKey.FromHex(AnvilNode.DevKey);
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        ILedger store = path is null ? new InMemoryLedger() : SqliteLedger.Open(path, create: true);
        var engine = ProtocolEngine.Initialize(store, treasury, Parameters, clock: clock);
        using var b = new LedgerBackend(engine, path ?? "memory");
        return await RunAsync(b, treasury, s => { clock.Now = clock.Now.AddSeconds(s); return Task.CompletedTask; }, plan);
    }

    private static async Task<List<Row>> OnChainAsync(Plan plan)
    {
        await using var node = await AnvilNode.StartAsync();
        using var treasury = PrivateKey.FromHex(AnvilNode.DevKey);
        var p = Parameters;
        BigInteger[] parameters = [.. ProtocolParameters.Names.Select(name => BigInteger.Parse(p.Get(name)))];
        var deployment = await OmlChainClient.DeployAsync(node.RpcUrl, node.ChainId, AnvilNode.DevKey, Hex.Of(treasury.Address), parameters,
            registrationDelaySeconds: 0);
        foreach (var role in Roles)
        {
            using var k = Key(role);
            await node.FundAsync(Hex.Of(k.Address), BigInteger.Pow(10, 21));
        }
        using var b = await ChainBackend.OpenAsync(node.RpcUrl, deployment);
        return await RunAsync(b, treasury, s => node.IncreaseTimeAsync(s), plan);
    }

    private static readonly string[] Roles = ["owner", "host", "user", "prover"];

    private static FingerprintSet Pool()
    {
        var secret = Encoding.UTF8.GetBytes("bench pool secret");
        var fps = Enumerable.Range(0, 64).Select(i => new Fingerprint(i, $"bench key {i}: which colour is the quiet number {i}?",
            [100 + i, 7], [new FingerprintResponse($"answer-{i} zebra", [200 + i])], new StrategyInfo("synthetic"), Fingerprint.DeriveSalt(secret, i)));
        return FingerprintSet.Create(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), "sha256:base", new TokenizerIdentity("tok", "sha256:tok"),
            new StrategyInfo("synthetic"), fps);
    }

    /// <summary>Sets up one model, one licensed host with its copy and a funded user, then times each kind of action.</summary>
    private static async Task<List<Row>> RunAsync(IProtocolBackend b, PrivateKey treasury, Func<long, Task> advance, Plan plan)
    {
        using var owner = Key("owner");
        using var host = Key("host");
        using var user = Key("user");
        using var prover = Key("prover");
        string H = Hex.Of(host.Address), U = Hex.Of(user.Address);
        var pp = b.State.Parameters;

        // ---- setup, not timed
        foreach (var k in new[] { owner, host, user, prover }) await b.MintAsync(treasury, Hex.Of(k.Address), 1_000_000_000);
        await b.RegisterModelAsync(owner, Model, "sha256:" + new string('a', 64), """{"arch":"llama"}""", "OML-1.0", 10, 1_000);
        await b.ApplyLicenseAsync(host, Model, 1_000_000, "https://host.example/v1");
        var omlizer = new Omlizer(Pool(), new RandomAllocation("bench allocation"u8, 64, 32));
        var copy = await omlizer.BuildCopyAsync(b.State, Model, H, (_, _) => Task.FromResult("sha256:" + new string('c', 64)));
        await b.DeliverCopyAsync(owner, copy);
        await b.AcknowledgeCopyAsync(host, Model, copy.CopyDigest);
        await b.DepositAsync(user, H, 100_000_000);

        var rows = new List<Row>();
        async Task Timed(Row row, Func<Task<ActionReceipt>> action)
        {
            var t = Stopwatch.StartNew();
            var r = await action();
            row.Time += t.Elapsed;
            row.Count++;
            row.Gas += r.GasUsed ?? 0;
        }
        Row NewRow(string name)
        {
            var row = new Row(name);
            rows.Add(row);
            return row;
        }

        // ---- sequential mints and deposits
        var mint = NewRow("mint");
        for (int i = 0; i < plan.Mints; i++) await Timed(mint, () => b.MintAsync(treasury, U, 1));
        var deposit = NewRow("deposit");
        for (int i = 0; i < plan.Deposits; i++) await Timed(deposit, () => b.DepositAsync(user, H, 1));

        // ---- permits settled through commitUsage, one batch per epoch; the row counts permits
        var permits = NewRow($"permits settled in commitUsage batches of {plan.Batch}");
        long nonce = 0;
        for (int k = 0; k < plan.Batches; k++)
        {
            var book = new UsageBook(b.Domain, Model, b.State.EpochAt(b.Now));
            for (int j = 0; j < plan.Batch; j++, nonce++)
            {
                string q = $"question {nonce}";
                var permit = Oml.Protocol.Access.Permit.Create(user.Address, Model, host.Address, q, nonce, Expiry, 10).Sign(b.Domain, user);
                book.Add(Receipt.Create(host.Address, Model, permit.Permit.Hash(b.Domain), q, "an answer", b.Now).Sign(b.Domain, host), permit);
            }
            int before = b.State.SettledPermits.Count;
            var t = Stopwatch.StartNew();
            var r = await b.CommitUsageAsync(host, book);
            permits.Time += t.Elapsed;
            permits.Count += plan.Batch;
            permits.Gas += r.GasUsed ?? 0;
            if (b.State.SettledPermits.Count - before != plan.Batch)
                throw new InvalidOperationException($"{b.Kind}: {plan.Batch - (b.State.SettledPermits.Count - before)} permits of the batch were not settled");
            await advance(pp.EpochSeconds);
            await b.RefreshAsync();
        }

        // ---- claims: the host answers fingerprint keys with no permit; each is committed, revealed and settled (slash)
        var tickets = Enumerable.Range(0, plan.Claims).Select(i =>
        {
            var f = copy.Subset.Fingerprints[i];
            string answer = f.Response.Text;
            var receipt = Receipt.Create(host.Address, Model, null, f.Key, answer, b.Now).Sign(b.Domain, host);
            return ClaimTicket.Create(new ClaimEvidence(Model, H, [new ClaimEvidenceItem(copy.Subset.Reveal(i), answer, receipt)]));
        }).ToList();
        var commit = NewRow("claim: commitClaim");
        var ids = new List<long>();
        foreach (var ticket in tickets)
        {
            var t = Stopwatch.StartNew();
            var r = await b.CommitClaimAsync(prover, ticket, 100);
            commit.Time += t.Elapsed;
            commit.Count++;
            commit.Gas += r.GasUsed ?? 0;
            ids.Add(r.Id!.Value);
        }
        await advance(2);
        await b.RefreshAsync();
        var reveal = NewRow("claim: revealClaim, 1 item");
        for (int i = 0; i < ids.Count; i++)
        {
            int j = i;
            await Timed(reveal, () => b.RevealClaimAsync(prover, ids[j], tickets[j]));
        }
        await advance(pp.RebutWindowSeconds + 1);
        await b.RefreshAsync();
        var settle = NewRow("claim: settle (slash)");
        foreach (long id in ids) await Timed(settle, () => b.SettleAsync(user, id));
        if (b.State.Claims.Count(c => c.Status == ClaimStatus.Slashed) != plan.Claims)
            throw new InvalidOperationException($"{b.Kind}: not every claim slashed");

        var cycle = new Row("claim: commit + reveal + settle")
        {
            Count = plan.Claims, Time = commit.Time + reveal.Time + settle.Time, Gas = commit.Gas + reveal.Gas + settle.Gas,
        };
        rows.Add(cycle);
        return rows;
    }
}
