using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Protocol.Ledger;

namespace Oml.Cli;

/// <summary><c>oml ledger init | verify | log | head | bench</c>: the protocol's append-only, hash-chained event log.</summary>
public static class LedgerCommands
{
    public static Command Create() => new("ledger", "Create, inspect, verify and benchmark an oml ledger (an append-only, hash-chained event log in one SQLite file).")
    {
        Init(),
        Verify(),
        Log(),
        Head(),
        Bench(),
    };

    private static Option<string> LedgerOption() => new("--ledger") { Description = "The ledger file", Required = true };

    public static Command Init()
    {
        var ledger = LedgerOption();
        var json = CliOptions.Json("Print {\"file\", \"ledger_id\", \"height\", \"head\"} as JSON");
        var cmd = new Command("init", "Create an empty ledger file (WAL mode, fsync on every commit).") { ledger, json };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(ledger)!;
            if (File.Exists(path)) throw new IOException($"{path} exists already: init never overwrites a ledger");
            using var l = SqliteLedger.Open(path, create: true);
            var h = l.GetHead();
            return new Report().Json("file", l.Path).Json("ledger_id", l.LedgerId).Json("height", h.Height).Json("head", LedgerHashing.ToHex(h.Hash))
                .Line($"created   {l.Path}").Line($"ledger id {l.LedgerId}").Line($"head      {h}")
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Verify()
    {
        var ledger = LedgerOption();
        var head = new Option<string?>("--head")
        {
            Description = "A head hash recorded earlier (64 hex digits, as printed by `oml ledger head`): also check it is still part of the chain, "
                + "which detects a consistent rewrite or a truncation by someone with write access to the file",
        };
        var json = CliOptions.Json("Print {\"intact\", \"events\", \"height\", \"head\", ...} as JSON (also when tampered, with \"first_bad_event\" and \"problem\"; the exit code is 1 then)");
        var cmd = new Command("verify",
            "Replay the chain and recompute every hash; check it still extends the head pinned for this ledger (by every earlier `oml` command on this account) "
            + "and pin the current head. Exit 0 when intact, 1 with a report when not.") { ledger, head, json };
        cmd.SetAction(r =>
        {
            byte[]? anchor = r.GetValue(head) is { } h ? Cli.OptionValue(() => LedgerHashing.ParseHex(h)) : null;
            using var l = SqliteLedger.Open(r.GetValue(ledger)!);
            var v = anchor is null ? l.Verify() : l.Verify(anchor);
            var pin = Protocol.LedgerPins.Read(l.LedgerId);
            if (v.Intact && pin is { } p && Protocol.LedgerPins.Problem(l, p) is { } rewritten)
                v = new LedgerVerification(false, v.EventsChecked, null, $"the ledger no longer extends the head pinned in {Protocol.LedgerPins.PathFor(l.LedgerId)} ({p.Height} {LedgerHashing.ToHex(p.Hash)}): {rewritten}");
            bool asJson = r.GetValue(json);
            if (v.Intact)
            {
                var now = l.GetHead();
                var report = new Report().Json("file", l.Path).Json("intact", true).Json("events", v.EventsChecked)
                    .Json("height", now.Height).Json("head", LedgerHashing.ToHex(now.Hash))
                    .Json("expected_head", anchor is null ? null : LedgerHashing.ToHex(anchor)).Json("pinned_height", pin?.Height)
                    .Line($"intact: {v.EventsChecked} events, head {now}")
                    .Line(anchor is not null ? $"the expected head {LedgerHashing.ToHex(anchor)} is part of the chain"
                        : pin is { } q ? $"it extends the head pinned at height {q.Height} ({Protocol.LedgerPins.PathFor(l.LedgerId)})"
                        : "(self-consistent; no head was pinned for this ledger before: give --head HASH recorded elsewhere to also rule out a rewrite of the whole chain)");
                Protocol.LedgerPins.Record(l.LedgerId, l.Height, l.HeadHash);
                return report.Print(asJson);
            }
            new Report().Json("file", l.Path).Json("intact", false).Json("events", v.EventsChecked)
                .Json("first_bad_event", v.FirstBadSequence).Json("problem", v.Problem)
                .Line($"TAMPERED: {l.Path}")
                .Line($"  events verified   {v.EventsChecked}")
                .Line($"  first bad event   {(v.FirstBadSequence is { } s ? s.ToString(CultureInfo.InvariantCulture) : "unknown (the chain itself is consistent)")}")
                .Line($"  problem           {v.Problem}")
                .Print(asJson);
            return Cli.Failure;
        });
        return cmd;
    }

    public static Command Log()
    {
        var ledger = LedgerOption();
        var from = new Option<long>("--from") { Description = "First sequence number to show", DefaultValueFactory = _ => 0 };
        var limit = new Option<long?>("--limit") { Description = "Show at most this many events (default: all)" };
        var json = CliOptions.Json("One JSON object per event and line (JSON Lines: {\"seq\", \"type\", \"timestamp\", \"payload\", \"prev\", \"hash\"}) instead of a table");
        var cmd = new Command("log", "Print events in order.") { ledger, from, limit, json };
        cmd.SetAction(r =>
        {
            long start = r.GetValue(from);
            if (start < 0) throw new UsageException("--from must be >= 0");
            long max = r.GetValue(limit) ?? long.MaxValue;
            if (max < 0) throw new UsageException("--limit must be >= 0");
            bool asJson = r.GetValue(json);
            using var l = SqliteLedger.Open(r.GetValue(ledger)!);
            foreach (var e in l.Read(start).Take(max > int.MaxValue ? int.MaxValue : (int)max))
                Console.WriteLine(asJson ? ToJson(e) : ToLine(e));
            return Cli.Ok;
        });
        return cmd;
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private static string? AsText(byte[] payload)
    {
        try { return StrictUtf8.GetString(payload); }
        catch (DecoderFallbackException) { return null; }
    }

    internal static string ToJson(LedgerEvent e)
    {
        var o = new JsonObject
        {
            ["seq"] = e.Sequence,
            ["type"] = e.Type,
            ["timestamp"] = e.Timestamp.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
        };
        JsonNode? parsed = null;
        if (AsText(e.Payload) is { } text)
        {
            try { parsed = JsonNode.Parse(text); }
            catch (JsonException) { }
        }
        if (parsed is not null) o["payload"] = parsed;
        else o["payload_base64"] = Convert.ToBase64String(e.Payload);
        o["prev"] = LedgerHashing.ToHex(e.PreviousHash);
        o["hash"] = LedgerHashing.ToHex(e.Hash);
        return o.ToJsonString();
    }

    private static string ToLine(LedgerEvent e)
    {
        var text = AsText(e.Payload);
        string payload = text is not null && !text.Any(char.IsControl) ? text : "0x" + Convert.ToHexStringLower(e.Payload);
        if (payload.Length > 120) payload = payload[..117] + "...";
        return string.Create(CultureInfo.InvariantCulture,
            $"{e.Sequence,8}  {e.Timestamp:yyyy-MM-dd HH:mm:ss.fff}  {LedgerHashing.ToHex(e.Hash)[..16]}  {e.Type}  {payload}");
    }

    public static Command Head()
    {
        var ledger = LedgerOption();
        var json = CliOptions.Json("Print {\"ledger_id\", \"height\", \"head\", \"timestamp\"} as JSON");
        var cmd = new Command("head", "Print the height and the head hash (\"HEIGHT HASH\"): publish it elsewhere, later `verify --head HASH` proves nothing before it was rewritten.") { ledger, json };
        cmd.SetAction(r =>
        {
            using var l = SqliteLedger.Open(r.GetValue(ledger)!);
            var h = l.GetHead();
            return new Report().Json("ledger_id", l.LedgerId).Json("height", h.Height).Json("head", LedgerHashing.ToHex(h.Hash))
                .Json("timestamp", h.Timestamp?.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture))
                .Line(h.ToString()).Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Bench()
    {
        var ledger = new Option<string>("--ledger") { Description = "The ledger file to append to (created when missing)", Required = true };
        var events = new Option<long>("--events") { Description = "Number of events to append", DefaultValueFactory = _ => 1000 };
        var batch = new Option<int>("--batch") { Description = "Events per Append (one commit, one fsync)", DefaultValueFactory = _ => 1 };
        var payloadBytes = new Option<int>("--payload-bytes") { Description = "Size of each event's JSON payload", DefaultValueFactory = _ => 300 };
        var compare = new Option<bool>("--compare-nosync") { Description = "Then append the same events to a fresh scratch ledger with synchronous=OFF (no fsync) and report both" };
        var printCommitted = new Option<bool>("--print-committed") { Description = "Print \"committed SEQ\" for every event once its Append has returned (for crash tests)" };
        var killAfter = new Option<int?>("--kill-after") { Description = "SIGKILL this process after this many milliseconds, wherever it is (for crash tests; then run `oml ledger verify`)" };
        var json = CliOptions.Json("Print {\"durable\": {\"events\", \"batch\", \"payload_bytes\", \"seconds\", \"events_per_second\", \"commit_mean_ms\", \"commit_p99_ms\"}, \"nosync\": {...}, \"fsync_cost\"} as JSON");
        var cmd = new Command("bench", "Append synthetic events as fast as possible with fsync on, and report sustained events/s.")
        {
            ledger, events, batch, payloadBytes, compare, printCommitted, killAfter, json,
        };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(ledger)!;
            long n = r.GetValue(events);
            int b = r.GetValue(batch);
            int size = r.GetValue(payloadBytes);
            if (n < 1) throw new UsageException("--events must be at least 1");
            if (b < 1) throw new UsageException("--batch must be at least 1");
            if (size < 32 || size > 1 << 20) throw new UsageException("--payload-bytes must be in [32, 1048576]");
            bool print = r.GetValue(printCommitted);
            if (print && r.GetValue(json)) throw new UsageException("--print-committed writes lines on stdout: not with --json");
            if (r.GetValue(killAfter) is { } ms)
            {
                if (ms < 0) throw new UsageException("--kill-after must be >= 0");
                var killer = new Thread(() => { Thread.Sleep(ms); Process.GetCurrentProcess().Kill(); }) { IsBackground = true };
                killer.Start();
            }
            var durable = RunBench(path, new SqliteLedgerOptions(), n, b, size, print);
            var report = new Report().Json("durable", durable.ToJson()).Line($"fsync on   (synchronous=FULL): {durable}");
            if (r.GetValue(compare))
            {
                var scratch = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.nosync-{Guid.NewGuid():N}");
                try
                {
                    var fast = RunBench(scratch, new SqliteLedgerOptions { Durable = false }, n, b, size, false);
                    report.Json("nosync", fast.ToJson()).Json("fsync_cost", Report.Number(fast.EventsPerSecond / durable.EventsPerSecond))
                        .Line($"fsync off  (synchronous=OFF):  {fast}")
                        .Line(string.Create(CultureInfo.InvariantCulture, $"fsync costs {fast.EventsPerSecond / durable.EventsPerSecond:F1}x in throughput at batch {b}"));
                }
                finally
                {
                    foreach (var f in new[] { scratch, scratch + "-wal", scratch + "-shm" })
                        try { File.Delete(f); } catch (IOException) { }
                }
            }
            return report.Print(r.GetValue(json));
        });
        return cmd;
    }

    /// <summary>One bench run's outcome.</summary>
    public sealed record BenchResult(long Events, int Batch, int PayloadBytes, TimeSpan Elapsed, double MeanCommitMs, double P99CommitMs)
    {
        public double EventsPerSecond => Events / Elapsed.TotalSeconds;
        public JsonObject ToJson() => new()
        {
            ["events"] = Events, ["batch"] = Batch, ["payload_bytes"] = PayloadBytes, ["seconds"] = Report.Number(Elapsed.TotalSeconds),
            ["events_per_second"] = Report.Number(EventsPerSecond), ["commit_mean_ms"] = Report.Number(MeanCommitMs), ["commit_p99_ms"] = Report.Number(P99CommitMs),
        };
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"{Events} events, batch {Batch}, payload {PayloadBytes} B: {EventsPerSecond:F0} events/s ({EventsPerSecond / Batch:F0} commits/s, commit mean {MeanCommitMs:F2} ms, p99 {P99CommitMs:F2} ms)");
    }

    /// <summary>Appends <paramref name="n"/> events of ~<paramref name="size"/>-byte JSON in batches, timing every commit.</summary>
    public static BenchResult RunBench(string path, SqliteLedgerOptions options, long n, int batch, int size, bool printCommitted)
    {
        using var l = SqliteLedger.Open(path, create: true, options);
        var head = l.GetHead();
        long height = head.Height;
        var ts = head.Timestamp is { } t && t > DateTimeOffset.UtcNow ? t : DateTimeOffset.UtcNow;
        var commits = new List<double>((int)Math.Min(int.MaxValue, n / batch + 1));
        var total = Stopwatch.StartNew();
        var lastReport = Stopwatch.StartNew();
        var events = new List<NewEvent>(batch);
        for (long done = 0; done < n;)
        {
            events.Clear();
            int k = (int)Math.Min(batch, n - done);
            for (int i = 0; i < k; i++) events.Add(new NewEvent("bench/event", Payload(height + i, size)));
            var now = DateTimeOffset.UtcNow;
            if (now > ts) ts = now;
            long c0 = Stopwatch.GetTimestamp();
            var added = l.Append(height, events, ts);
            commits.Add(Stopwatch.GetElapsedTime(c0).TotalMilliseconds);
            if (printCommitted)
                foreach (var e in added) Console.WriteLine($"committed {e.Sequence}");
            height += k;
            done += k;
            if (lastReport.Elapsed > TimeSpan.FromSeconds(2))
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {done}/{n} events, {done / total.Elapsed.TotalSeconds:F0} events/s"));
                lastReport.Restart();
            }
        }
        total.Stop();
        commits.Sort();
        return new BenchResult(n, batch, size, total.Elapsed, commits.Average(), commits[Math.Min(commits.Count - 1, (int)(commits.Count * 0.99))]);
    }

    /// <summary>A JSON payload of exactly <paramref name="size"/> bytes (for size >= 32).</summary>
    internal static byte[] Payload(long seq, int size)
    {
        var head = string.Create(CultureInfo.InvariantCulture, $"{{\"seq\":{seq},\"pad\":\"");
        var pad = Math.Max(0, size - head.Length - 2);
        return Encoding.UTF8.GetBytes(head + new string('x', pad) + "\"}");
    }
}
