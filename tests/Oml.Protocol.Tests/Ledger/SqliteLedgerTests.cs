using System.Text;
using Oml.Protocol.Ledger;
using SQLitePCL;

namespace Oml.Protocol.Tests.Ledger;

public sealed class SqliteLedgerTests : LedgerContractTests, IDisposable
{
    private readonly TempDir _tmp = new();
    private int _n;

    public void Dispose() => _tmp.Dispose();

    protected override ILedger CreateLedger() => SqliteLedger.Open(_tmp.File($"l{_n++}.oml-ledger"), create: true);

    protected override LedgerVerification Verify(ILedger ledger, byte[] expectedHead) => ((SqliteLedger)ledger).Verify(expectedHead);

    private string NewPath() => _tmp.File($"t{_n++}.oml-ledger");

    /// <summary>A ledger of <paramref name="n"/> events, one per second, closed again.</summary>
    private string MakeLedger(int n, out byte[] head)
    {
        var path = NewPath();
        using var l = SqliteLedger.Open(path, create: true);
        for (int i = 0; i < n; i++) l.Append(i, [Ev("t", $"{{\"i\":{i}}}")], T0.AddSeconds(i));
        head = l.HeadHash;
        return path;
    }

    /// <summary>Runs SQL on the file directly, as an attacker with file access would (triggers dropped first).</summary>
    private static void Tamper(string path, params string[] sql)
    {
        Batteries_V2.Init();
        Assert.Equal(raw.SQLITE_OK, raw.sqlite3_open_v2(path, out var db, raw.SQLITE_OPEN_READWRITE, null));
        using (db)
        {
            foreach (var s in new[] { "DROP TRIGGER IF EXISTS events_no_update", "DROP TRIGGER IF EXISTS events_no_delete", "DROP TRIGGER IF EXISTS meta_no_update", "DROP TRIGGER IF EXISTS meta_no_delete" }.Concat(sql))
                Assert.True(raw.sqlite3_exec(db, s) == raw.SQLITE_OK, $"{s}: {raw.sqlite3_errmsg(db).utf8_to_string()}");
        }
    }

    private static void SetBlob(string path, string sql, byte[] blob)
    {
        Tamper(path);
        Assert.Equal(raw.SQLITE_OK, raw.sqlite3_open_v2(path, out var db, raw.SQLITE_OPEN_READWRITE, null));
        using (db)
        {
            Assert.Equal(raw.SQLITE_OK, raw.sqlite3_prepare_v2(db, sql, out var st));
            using (st)
            {
                raw.sqlite3_bind_blob(st, 1, blob);
                Assert.Equal(raw.SQLITE_DONE, raw.sqlite3_step(st));
            }
        }
    }

    private static LedgerVerification VerifyFile(string path, byte[]? anchor = null)
    {
        using var l = SqliteLedger.Open(path);
        return anchor is null ? l.Verify() : l.Verify(anchor);
    }

    [Fact]
    public void PersistsAcrossReopen()
    {
        var path = NewPath();
        string id;
        DateTimeOffset created;
        IReadOnlyList<LedgerEvent> written;
        using (var l = SqliteLedger.Open(path, create: true))
        {
            written = l.Append(0, [Ev("a", "{\"k\":\"v\"}"), new NewEvent("b", [0, 255, 7])], T0);
            (id, created) = (l.LedgerId, l.CreatedAt);
            Assert.Matches("^[0-9a-f]{32}$", id);
        }
        using (var l = SqliteLedger.Open(path))
        {
            Assert.Equal((id, created), (l.LedgerId, l.CreatedAt));
            Assert.Equal(2, l.Height);
            Assert.Equal(written[1].Hash, l.HeadHash);
            var read = l.Read().ToList();
            Assert.Equal(written.Select(e => (e.Sequence, e.Type, Convert.ToHexString(e.Payload), e.Timestamp, Convert.ToHexString(e.Hash))),
                read.Select(e => (e.Sequence, e.Type, Convert.ToHexString(e.Payload), e.Timestamp, Convert.ToHexString(e.Hash))));
            l.Append(2, [Ev("c", "{}")], T0);
        }
        using (var l = SqliteLedger.Open(path, create: true)) // create on an existing ledger just opens it
        {
            Assert.Equal(id, l.LedgerId);
            Assert.Equal(3, l.Height);
            Assert.True(l.Verify().Intact);
        }
        Assert.Empty(Directory.GetFiles(_tmp.Path, "*.tmp"));
    }

    [Fact]
    public void TwoInstancesOnOneFile()
    {
        var path = NewPath();
        using var a = SqliteLedger.Open(path, create: true);
        using var b = SqliteLedger.Open(path);
        Assert.Equal(a.LedgerId, b.LedgerId);
        long seenByB = b.Height;
        a.Append(0, [Ev("a", "{}")], T0);
        Assert.Equal(1, b.Height);               // b re-reads the file: a's commit is visible
        Assert.Equal(a.HeadHash, b.HeadHash);
        Assert.Throws<LedgerConflictException>(() => b.Append(seenByB, [Ev("b", "{}")], T0));
        b.Append(1, [Ev("b", "{}")], T0);
        Assert.Equal(2, a.Height);
        Assert.Equal(b.HeadHash, a.HeadHash);
        Assert.Equal(["a", "b"], a.Read().Select(e => e.Type));
    }

    [Fact]
    public void RacingWritersSerialise()
    {
        var path = NewPath();
        using (SqliteLedger.Open(path, create: true)) { }
        const int perWriter = 15;
        int conflicts = 0;
        var writers = Enumerable.Range(0, 3).Select(w => new Thread(() =>
        {
            using var l = SqliteLedger.Open(path);
            for (int done = 0; done < perWriter;)
            {
                var head = l.GetHead();
                try
                {
                    l.Append(head.Height, [Ev($"w{w}", $"{{\"n\":{done}}}")], head.Timestamp ?? T0);
                    done++;
                }
                catch (LedgerConflictException)
                {
                    Interlocked.Increment(ref conflicts);
                }
            }
        })).ToArray();
        foreach (var t in writers) t.Start();
        foreach (var t in writers) t.Join();
        using var check = SqliteLedger.Open(path);
        Assert.Equal(3 * perWriter, check.Height);
        Assert.Equal(new LedgerVerification(true, 3 * perWriter, null, null), check.Verify());
        for (int w = 0; w < 3; w++) Assert.Equal(perWriter, check.Read().Count(e => e.Type == $"w{w}"));
    }

    [Fact]
    public void SameEventsGiveTheSameHashesAsInMemory()
    {
        using var mem = new InMemoryLedger();
        using var sql = SqliteLedger.Open(NewPath(), create: true);
        var rng = new Random(7);
        for (int i = 0; i < 20; i++)
        {
            var batch = Enumerable.Range(0, rng.Next(1, 4)).Select(j =>
            {
                var p = new byte[rng.Next(0, 400)];
                rng.NextBytes(p);
                return new NewEvent($"type/{rng.Next(5)}/é", p);
            }).ToList();
            var ts = T0.AddMilliseconds(i * 137.25);
            var a = mem.Append(mem.Height, batch, ts);
            var b = sql.Append(sql.Height, batch, ts);
            Assert.Equal(a.Select(e => Convert.ToHexString(e.Hash)), b.Select(e => Convert.ToHexString(e.Hash)));
        }
        Assert.Equal(mem.HeadHash, sql.HeadHash);
        Assert.Equal(mem.Read().Select(e => Convert.ToHexString(e.Payload)), sql.Read().Select(e => Convert.ToHexString(e.Payload)));
    }

    [Fact]
    public void ReadsAcrossPages()
    {
        using var l = SqliteLedger.Open(NewPath(), create: true);
        var batch = Enumerable.Range(0, 1200).Select(i => new NewEvent("p", BitConverter.GetBytes(i))).ToList();
        l.Append(0, batch, T0);
        Assert.Equal(Enumerable.Range(0, 1200).Select(i => (long)i), l.Read().Select(e => e.Sequence));
        Assert.Equal(Enumerable.Range(700, 500).Select(i => (long)i), l.Read(700).Select(e => e.Sequence));
        Assert.Equal(new LedgerVerification(true, 1200, null, null), l.Verify());
    }

    // ---- bad files ----

    [Fact]
    public void MissingFileWithoutCreate()
    {
        var path = NewPath();
        var e = Assert.Throws<FileNotFoundException>(() => SqliteLedger.Open(path));
        Assert.Contains("no ledger", e.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void RandomBytesEmptyFileAndForeignDatabasesAreRejectedUntouched()
    {
        var random = NewPath();
        var bytes = new byte[8192];
        new Random(3).NextBytes(bytes);
        File.WriteAllBytes(random, bytes);
        Assert.Contains("not a SQLite database", Assert.Throws<InvalidDataException>(() => SqliteLedger.Open(random, create: true)).Message);
        Assert.Equal(bytes, File.ReadAllBytes(random));

        var empty = NewPath();
        File.WriteAllBytes(empty, []);
        Assert.Contains("empty", Assert.Throws<InvalidDataException>(() => SqliteLedger.Open(empty, create: true)).Message);
        Assert.Empty(File.ReadAllBytes(empty));

        var foreign = NewPath();
        Batteries_V2.Init();
        Assert.Equal(raw.SQLITE_OK, raw.sqlite3_open_v2(foreign, out var db, raw.SQLITE_OPEN_READWRITE | raw.SQLITE_OPEN_CREATE, null));
        using (db) Assert.Equal(raw.SQLITE_OK, raw.sqlite3_exec(db, "CREATE TABLE people(name TEXT); INSERT INTO people VALUES ('x')"));
        var before = File.ReadAllBytes(foreign);
        Assert.Contains("not an oml ledger", Assert.Throws<InvalidDataException>(() => SqliteLedger.Open(foreign)).Message);
        Assert.Equal(before, File.ReadAllBytes(foreign));

        var foreignMeta = NewPath();
        Assert.Equal(raw.SQLITE_OK, raw.sqlite3_open_v2(foreignMeta, out var db2, raw.SQLITE_OPEN_READWRITE | raw.SQLITE_OPEN_CREATE, null));
        using (db2) Assert.Equal(raw.SQLITE_OK, raw.sqlite3_exec(db2, "CREATE TABLE meta(key TEXT, value TEXT); INSERT INTO meta VALUES ('format', 'other')"));
        Assert.Throws<InvalidDataException>(() => SqliteLedger.Open(foreignMeta));

        Assert.Throws<IOException>(() => SqliteLedger.Open(_tmp.Path));
    }

    [Fact]
    public void NewerFormatAndDamagedMetaAreRejected()
    {
        var newer = MakeLedger(1, out _);
        Tamper(newer, "UPDATE meta SET value = '2' WHERE key = 'version'");
        Assert.Contains("format version 2", Assert.Throws<InvalidDataException>(() => SqliteLedger.Open(newer)).Message);

        var noId = MakeLedger(1, out _);
        Tamper(noId, "DELETE FROM meta WHERE key = 'ledger_id'");
        Assert.Contains("ledger id", Assert.Throws<LedgerCorruptException>(() => SqliteLedger.Open(noId)).Message);

        var noEvents = MakeLedger(1, out _);
        Tamper(noEvents, "DROP TABLE events");
        Assert.Contains("events table", Assert.Throws<LedgerCorruptException>(() => SqliteLedger.Open(noEvents)).Message);

        var noMeta = MakeLedger(1, out _);
        Tamper(noMeta, "DROP TABLE meta");
        Assert.Throws<LedgerCorruptException>(() => SqliteLedger.Open(noMeta)); // the header's application id still says ledger
    }

    // ---- tampering ----

    [Fact]
    public void TriggersRefuseAccidentalEdits()
    {
        var path = MakeLedger(2, out _);
        Assert.Equal(raw.SQLITE_OK, raw.sqlite3_open_v2(path, out var db, raw.SQLITE_OPEN_READWRITE, null));
        using (db)
        {
            Assert.NotEqual(raw.SQLITE_OK, raw.sqlite3_exec(db, "UPDATE events SET payload = x'00' WHERE seq = 0"));
            Assert.Contains("append-only", raw.sqlite3_errmsg(db).utf8_to_string());
            Assert.NotEqual(raw.SQLITE_OK, raw.sqlite3_exec(db, "DELETE FROM events WHERE seq = 1"));
            Assert.NotEqual(raw.SQLITE_OK, raw.sqlite3_exec(db, "UPDATE meta SET value = 'x' WHERE key = 'ledger_id'"));
        }
        Assert.True(VerifyFile(path).Intact);
    }

    [Fact]
    public void EditedPayload()
    {
        var path = MakeLedger(6, out _);
        Tamper(path, "UPDATE events SET payload = CAST('{\"i\":99}' AS BLOB) WHERE seq = 3");
        var v = VerifyFile(path);
        Assert.Equal((false, 3L, 3L), (v.Intact, v.EventsChecked, v.FirstBadSequence));
        Assert.Contains("contents of event 3", v.Problem);
    }

    [Fact]
    public void EditedTypeOrTimestamp()
    {
        var path = MakeLedger(4, out _);
        Tamper(path, "UPDATE events SET type = 'forged' WHERE seq = 1");
        Assert.Equal(1, VerifyFile(path).FirstBadSequence);
        var path2 = MakeLedger(4, out _);
        Tamper(path2, "UPDATE events SET ts = ts + 1 WHERE seq = 2");
        Assert.Equal(2, VerifyFile(path2).FirstBadSequence);
    }

    [Fact]
    public void DeletedRow()
    {
        var path = MakeLedger(6, out _);
        Tamper(path, "DELETE FROM events WHERE seq = 2");
        var v = VerifyFile(path);
        Assert.Equal(2, v.FirstBadSequence);
        Assert.Contains("event 2 is missing", v.Problem);
        using var l = SqliteLedger.Open(path);
        Assert.Equal(6, l.Height); // the height still counts from the last stored event
    }

    [Fact]
    public void OverwrittenHash()
    {
        var path = MakeLedger(5, out _);
        SetBlob(path, "UPDATE events SET hash = ?1 WHERE seq = 1", Enumerable.Repeat((byte)0xAB, 32).ToArray());
        var v = VerifyFile(path);
        Assert.Equal(1, v.FirstBadSequence);
        Assert.Contains("stored hash of event 1 was overwritten", v.Problem);
    }

    [Fact]
    public void RewrittenLink()
    {
        var path = MakeLedger(5, out _);
        SetBlob(path, "UPDATE events SET prev = ?1 WHERE seq = 2", new byte[32]);
        var v = VerifyFile(path);
        Assert.Equal(2, v.FirstBadSequence);
        Assert.Contains("previous hash does not match the hash of event 1", v.Problem);
    }

    [Fact]
    public void MalformedRowIsReportedAndReadRefusesIt()
    {
        var path = MakeLedger(3, out _);
        Tamper(path, "PRAGMA ignore_check_constraints = ON", "UPDATE events SET hash = x'0102' WHERE seq = 1");
        var v = VerifyFile(path);
        Assert.Equal(1, v.FirstBadSequence);
        Assert.Contains("malformed", v.Problem);
        using var l = SqliteLedger.Open(path);
        Assert.Throws<LedgerCorruptException>(() => l.Read().ToList());
    }

    [Fact]
    public void ConsistentRewriteIsOnlyCaughtByTheAnchor()
    {
        var path = MakeLedger(5, out var anchor);
        // The attacker edits event 2 and recomputes every hash from there, links included.
        List<LedgerEvent> events;
        using (var l = SqliteLedger.Open(path)) events = l.Read().ToList();
        var prev = events[1].Hash;
        Tamper(path);
        for (int i = 2; i < events.Count; i++)
        {
            var e = events[i] with { PreviousHash = prev, Payload = i == 2 ? Encoding.UTF8.GetBytes("{\"i\":1000}") : events[i].Payload };
            var h = LedgerHashing.ComputeHash(e);
            SetBlob(path, $"UPDATE events SET prev = ?1 WHERE seq = {i}", prev);
            SetBlob(path, $"UPDATE events SET hash = ?1 WHERE seq = {i}", h);
            if (i == 2) SetBlob(path, "UPDATE events SET payload = ?1 WHERE seq = 2", e.Payload);
            prev = h;
        }
        Assert.True(VerifyFile(path).Intact); // self-consistent: the limit of a chain without an anchor
        var v = VerifyFile(path, anchor);
        Assert.False(v.Intact);
        Assert.Contains(LedgerHashing.ToHex(anchor), v.Problem);
        Assert.True(VerifyFile(path, events[1].Hash).Intact); // the part before the rewrite still matches an older anchor
    }

    [Fact]
    public void TruncationIsOnlyCaughtByTheAnchor()
    {
        var path = MakeLedger(5, out var anchor);
        Tamper(path, "DELETE FROM events WHERE seq >= 3");
        Assert.True(VerifyFile(path).Intact);
        Assert.False(VerifyFile(path, anchor).Intact);
    }
}
