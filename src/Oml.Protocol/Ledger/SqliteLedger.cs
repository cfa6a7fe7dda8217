using System.Globalization;
using System.Security.Cryptography;
using SQLitePCL;

namespace Oml.Protocol.Ledger;

/// <summary>Options of <see cref="SqliteLedger.Open(string, bool, SqliteLedgerOptions)"/>.</summary>
public sealed record SqliteLedgerOptions
{
    /// <summary>
    /// fsync on every commit (SQLite <c>synchronous=FULL</c>), the default: when Append returns, its events survive a
    /// power loss. <c>false</c> (<c>synchronous=OFF</c>) exists only to measure what durability costs; such a ledger can
    /// lose or corrupt its last commits on a crash of the machine.
    /// </summary>
    public bool Durable { get; init; } = true;

    /// <summary>How long a writer waits for another process's commit before giving up.</summary>
    public TimeSpan BusyTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>A storage failure of the SQLite engine (I/O error, lock timeout, read-only file, ...), with SQLite's message.</summary>
public sealed class LedgerStorageException(string message, int sqliteCode) : IOException(message)
{
    /// <summary>SQLite's extended result code.</summary>
    public int SqliteCode { get; } = sqliteCode;
}

/// <summary>
/// The embedded ledger engine: one SQLite file in WAL mode, every Append one transaction, fsync on every commit.
/// Several instances and processes may share a file: writers serialise on SQLite's write lock (waiting up to
/// <see cref="SqliteLedgerOptions.BusyTimeout"/>) and the loser of a race gets <see cref="LedgerConflictException"/>.
/// See docs/protocol.md ("Ledger") for the schema and the guarantees.
/// </summary>
public sealed class SqliteLedger : ILedger
{
    /// <summary>The schema version this build writes and the newest it reads.</summary>
    public const int FormatVersion = 1;

    /// <summary>SQLite header application id: "omlL" (lets <c>file(1)</c>-like tools tell a ledger from other databases).</summary>
    public const int ApplicationId = 0x6F6D6C4C;

    /// <summary>The value of the <c>format</c> key in the meta table.</summary>
    public const string FormatName = "oml-ledger";

    private const int PageSize = 512;

    private const string EventColumns = "seq, type, payload, ts, prev, hash";

    private static readonly string[] Schema =
    [
        "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
        """
        CREATE TABLE events(
            seq     INTEGER PRIMARY KEY CHECK (seq >= 0),
            type    TEXT    NOT NULL CHECK (typeof(type) = 'text' AND length(type) > 0),
            payload BLOB    NOT NULL CHECK (typeof(payload) = 'blob'),
            ts      INTEGER NOT NULL CHECK (typeof(ts) = 'integer'),
            prev    BLOB    NOT NULL CHECK (typeof(prev) = 'blob' AND length(prev) = 32),
            hash    BLOB    NOT NULL CHECK (typeof(hash) = 'blob' AND length(hash) = 32))
        """,
        // Append-only at the engine level, against accidents (a tool or a person running UPDATE). Someone with write
        // access to the file can drop these; the hash chain and an external anchor are what catch that.
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'oml ledger: events are append-only'); END",
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'oml ledger: events are append-only'); END",
        "CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'oml ledger: meta is write-once'); END",
        "CREATE TRIGGER meta_no_delete BEFORE DELETE ON meta BEGIN SELECT RAISE(ABORT, 'oml ledger: meta is write-once'); END",
    ];

    static SqliteLedger() => Batteries_V2.Init();

    private readonly sqlite3 _db;
    private readonly Lock _lock = new();
    private readonly sqlite3_stmt _head, _insert, _page;
    private bool _disposed;

    /// <summary>Full path of the ledger file.</summary>
    public string Path { get; }

    /// <summary>Random id given to the ledger when it was created (32 hex digits); names it, authenticates nothing.</summary>
    public string LedgerId { get; }

    /// <summary>When the ledger file was created.</summary>
    public DateTimeOffset CreatedAt { get; }

    /// <summary>The SQLite library version in use.</summary>
    public static string SqliteVersion => raw.sqlite3_libversion().utf8_to_string();

    private SqliteLedger(string path, sqlite3 db, string ledgerId, DateTimeOffset createdAt)
    {
        Path = path;
        _db = db;
        LedgerId = ledgerId;
        CreatedAt = createdAt;
        _head = Prepare(db, $"SELECT {EventColumns} FROM events ORDER BY seq DESC LIMIT 1", path);
        _insert = Prepare(db, "INSERT INTO events(seq, type, payload, ts, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", path);
        _page = Prepare(db, $"SELECT {EventColumns} FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2", path);
    }

    /// <summary>
    /// Opens the ledger at <paramref name="path"/>; with <paramref name="create"/>, creates an empty one first when no
    /// file is there (atomically: the file appears complete or not at all).
    /// </summary>
    /// <exception cref="FileNotFoundException">No file and <paramref name="create"/> is false.</exception>
    /// <exception cref="InvalidDataException">The file is not an oml ledger, or was written by a newer format version.</exception>
    /// <exception cref="LedgerCorruptException">The file claims to be an oml ledger but its schema or meta data is damaged.</exception>
    public static SqliteLedger Open(string path, bool create = false) => Open(path, create, new SqliteLedgerOptions());

    /// <inheritdoc cref="Open(string, bool)"/>
    public static SqliteLedger Open(string path, bool create, SqliteLedgerOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(options);
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new IOException($"{full} is a directory, not a ledger file");
        if (!File.Exists(full))
        {
            if (!create) throw new FileNotFoundException($"no ledger at {full} (create one with `oml ledger init --ledger {path}`)", full);
            CreateFile(full);
        }
        if (new FileInfo(full).Length == 0) throw new InvalidDataException($"{full} is an empty file, not an oml ledger");

        int rc = raw.sqlite3_open_v2(full, out var db, raw.SQLITE_OPEN_READWRITE | raw.SQLITE_OPEN_FULLMUTEX, null);
        try
        {
            if (rc != raw.SQLITE_OK) throw Error(db, rc, $"cannot open {full}");
            raw.sqlite3_extended_result_codes(db, 1);
            Check(db, raw.sqlite3_busy_timeout(db, (int)Math.Clamp(options.BusyTimeout.TotalMilliseconds, 0, int.MaxValue)), "set the busy timeout", full);
            var (id, created) = ReadIdentity(db, full);
            // WAL: readers never block the writer, and a commit is one append to the log. The mode is stored in the file.
            var mode = QueryText(db, "PRAGMA journal_mode=WAL", full);
            if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
                throw new LedgerStorageException($"{full}: cannot switch to WAL journal mode (got '{mode}'); is the directory writable?", 0);
            // FULL: the WAL is fsynced at every commit, so a returned Append survives a power loss. Per connection.
            Exec(db, options.Durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF", full);
            var ledger = new SqliteLedger(full, db, id, created);
            return ledger;
        }
        catch
        {
            db?.Dispose();
            throw;
        }
    }

    /// <summary>Builds the schema in a temporary sibling file, then renames it into place (never over an existing file).</summary>
    private static void CreateFile(string full)
    {
        var dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            int rc = raw.sqlite3_open_v2(tmp, out var db, raw.SQLITE_OPEN_READWRITE | raw.SQLITE_OPEN_CREATE | raw.SQLITE_OPEN_FULLMUTEX, null);
            using (db)
            {
                if (rc != raw.SQLITE_OK) throw Error(db, rc, $"cannot create {tmp}");
                Exec(db, "PRAGMA journal_mode=DELETE", tmp);
                Exec(db, "PRAGMA synchronous=FULL", tmp);
                Exec(db, $"PRAGMA application_id={ApplicationId}", tmp);
                Exec(db, $"PRAGMA user_version={FormatVersion}", tmp);
                Exec(db, "BEGIN IMMEDIATE", tmp);
                foreach (var sql in Schema) Exec(db, sql, tmp);
                using (var ins = Prepare(db, "INSERT INTO meta(key, value) VALUES (?1, ?2)", tmp))
                {
                    foreach (var (k, v) in new[]
                    {
                        ("format", FormatName),
                        ("version", FormatVersion.ToString(CultureInfo.InvariantCulture)),
                        ("created_at", DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture)),
                        ("ledger_id", Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))),
                    })
                    {
                        Check(db, raw.sqlite3_bind_text(ins, 1, k), "bind", tmp);
                        Check(db, raw.sqlite3_bind_text(ins, 2, v), "bind", tmp);
                        StepDone(db, ins, "write the meta table", tmp);
                        raw.sqlite3_reset(ins);
                    }
                }
                Exec(db, "COMMIT", tmp);
                Check(db, raw.sqlite3_close_v2(db), "close", tmp);
            }
            try
            {
                File.Move(tmp, full, overwrite: false);
            }
            catch (IOException) when (File.Exists(full))
            {
                // Another process created it first: use theirs.
            }
        }
        finally
        {
            try { File.Delete(tmp); } catch (IOException) { }
            try { File.Delete(tmp + "-journal"); } catch (IOException) { }
        }
    }

    private static (string Id, DateTimeOffset Created) ReadIdentity(sqlite3 db, string path)
    {
        string NotLedger(string why) => $"{path} is not an oml ledger: {why}";
        long appId;
        bool hasMeta;
        try
        {
            appId = QueryLong(db, "PRAGMA application_id", path);
            hasMeta = QueryLong(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", path) == 1;
        }
        catch (LedgerStorageException e) when ((e.SqliteCode & 0xff) is raw.SQLITE_NOTADB or raw.SQLITE_CORRUPT)
        {
            throw new InvalidDataException(NotLedger($"not a SQLite database ({e.Message})"), e);
        }
        if (appId != ApplicationId && !hasMeta) throw new InvalidDataException(NotLedger("a SQLite database of something else (no oml application id, no meta table)"));
        if (!hasMeta) throw new LedgerCorruptException($"{path} has the oml ledger application id but no meta table: the file is damaged");
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var st = Prepare(db, "SELECT key, value FROM meta", path);
            while (StepRow(db, st, "read the meta table", path))
                meta[raw.sqlite3_column_text(st, 0).utf8_to_string() ?? ""] = raw.sqlite3_column_text(st, 1).utf8_to_string() ?? "";
        }
        catch (LedgerStorageException e)
        {
            throw new LedgerCorruptException($"{path}: cannot read the ledger's meta table: {e.Message}");
        }
        if (!meta.TryGetValue("format", out var format) || format != FormatName)
        {
            if (appId != ApplicationId) throw new InvalidDataException(NotLedger("it has a meta table, but not an oml ledger's"));
            throw new LedgerCorruptException($"{path}: the meta table's format is '{format}', not '{FormatName}'");
        }
        if (!meta.TryGetValue("version", out var vtext) || !int.TryParse(vtext, NumberStyles.None, CultureInfo.InvariantCulture, out int version) || version < 1)
            throw new LedgerCorruptException($"{path}: the meta table has no valid format version ('{vtext}')");
        if (version > FormatVersion)
            throw new InvalidDataException($"{path} is an oml ledger of format version {version}; this build reads versions up to {FormatVersion}: upgrade oml");
        if (!meta.TryGetValue("ledger_id", out var id) || id.Length != 32 || !id.All(Uri.IsHexDigit))
            throw new LedgerCorruptException($"{path}: the meta table has no valid ledger id");
        if (!meta.TryGetValue("created_at", out var ctext) || !DateTimeOffset.TryParse(ctext, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var created))
            throw new LedgerCorruptException($"{path}: the meta table has no valid creation time");
        if (QueryLong(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'", path) != 1)
            throw new LedgerCorruptException($"{path}: the events table is missing");
        return (id, created);
    }

    public long Height => GetHead().Height;

    public byte[] HeadHash => GetHead().Hash;

    /// <summary>Height, head hash and head time, read together from the file (so other processes' appends show).</summary>
    public LedgerHead GetHead()
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            try { return ReadHeadLocked(); }
            finally { raw.sqlite3_reset(_head); }
        }
    }

    private LedgerHead ReadHeadLocked()
    {
        raw.sqlite3_reset(_head);
        if (!StepRow(_db, _head, "read the head", Path)) return new LedgerHead(0, LedgerHashing.GenesisHash, null);
        var row = ReadRow(_head);
        if (row.Event is not { } e) throw new LedgerCorruptException($"{Path}: the head event {row.Sequence} is malformed: {row.Malformed}");
        return new LedgerHead(e.Sequence + 1, e.Hash, e.Timestamp);
    }

    public IReadOnlyList<LedgerEvent> Append(long expectedHeight, IReadOnlyList<NewEvent> events, DateTimeOffset timestamp)
    {
        LedgerRules.ValidateAppend(expectedHeight, events);
        var ts = LedgerHashing.Normalize(timestamp);
        long ms = ts.ToUnixTimeMilliseconds();
        lock (_lock)
        {
            ThrowIfDisposed();
            // IMMEDIATE takes the write lock now, so the height checked below cannot change before COMMIT.
            Exec(_db, "BEGIN IMMEDIATE", Path);
            try
            {
                var head = ReadHeadLocked();
                raw.sqlite3_reset(_head);
                if (head.Height != expectedHeight) throw LedgerRules.Conflict(expectedHeight, head.Height);
                if (head.Timestamp is { } headTs) LedgerRules.CheckTimestamp(ts, headTs);
                var added = new List<LedgerEvent>(events.Count);
                byte[] prev = head.Hash;
                long seq = head.Height;
                foreach (var ne in events)
                {
                    var payload = ne.Payload.ToArray();
                    var hash = LedgerHashing.ComputeHash(seq, prev, ne.Type, ms, payload);
                    raw.sqlite3_reset(_insert);
                    Check(_db, raw.sqlite3_bind_int64(_insert, 1, seq), "bind", Path);
                    Check(_db, raw.sqlite3_bind_text(_insert, 2, ne.Type), "bind", Path);
                    Check(_db, payload.Length == 0 ? raw.sqlite3_bind_zeroblob(_insert, 3, 0) : raw.sqlite3_bind_blob(_insert, 3, payload), "bind", Path);
                    Check(_db, raw.sqlite3_bind_int64(_insert, 4, ms), "bind", Path);
                    Check(_db, raw.sqlite3_bind_blob(_insert, 5, prev), "bind", Path);
                    Check(_db, raw.sqlite3_bind_blob(_insert, 6, hash), "bind", Path);
                    StepDone(_db, _insert, $"insert event {seq}", Path);
                    added.Add(new LedgerEvent(seq, ne.Type, payload, ts, prev, hash));
                    prev = hash;
                    seq++;
                }
                raw.sqlite3_reset(_insert);
                raw.sqlite3_clear_bindings(_insert);
                Exec(_db, "COMMIT", Path);
                return added;
            }
            catch
            {
                raw.sqlite3_reset(_insert);
                raw.sqlite3_reset(_head);
                if (raw.sqlite3_get_autocommit(_db) == 0) raw.sqlite3_exec(_db, "ROLLBACK");
                throw;
            }
        }
    }

    public IEnumerable<LedgerEvent> Read(long fromSequence = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fromSequence);
        return ReadImpl(fromSequence);
    }

    private IEnumerable<LedgerEvent> ReadImpl(long fromSequence)
    {
        foreach (var row in Rows(fromSequence))
        {
            if (row.Event is not { } e) throw new LedgerCorruptException($"{Path}: event {row.Sequence} is malformed: {row.Malformed}");
            yield return e;
        }
    }

    /// <summary>Stored rows in sequence order, a page at a time (no statement stays open between pages, so an abandoned
    /// enumeration holds no lock; appends committed meanwhile show up in later pages).</summary>
    private IEnumerable<LedgerVerifier.StoredRow> Rows(long fromSequence)
    {
        long next = fromSequence;
        while (true)
        {
            var page = new List<LedgerVerifier.StoredRow>(PageSize);
            lock (_lock)
            {
                ThrowIfDisposed();
                try
                {
                    raw.sqlite3_reset(_page);
                    Check(_db, raw.sqlite3_bind_int64(_page, 1, next), "bind", Path);
                    Check(_db, raw.sqlite3_bind_int64(_page, 2, PageSize), "bind", Path);
                    while (StepRow(_db, _page, "read events", Path)) page.Add(ReadRow(_page));
                }
                finally
                {
                    raw.sqlite3_reset(_page);
                }
            }
            foreach (var r in page) yield return r;
            if (page.Count < PageSize) yield break;
            next = page[^1].Sequence + 1;
        }
    }

    private static LedgerVerifier.StoredRow ReadRow(sqlite3_stmt st)
    {
        long seq = raw.sqlite3_column_int64(st, 0);
        string? Problem()
        {
            if (raw.sqlite3_column_type(st, 1) != raw.SQLITE_TEXT) return "its type is not text";
            if (raw.sqlite3_column_type(st, 2) != raw.SQLITE_BLOB) return "its payload is not a blob";
            if (raw.sqlite3_column_type(st, 3) != raw.SQLITE_INTEGER) return "its timestamp is not an integer";
            if (raw.sqlite3_column_type(st, 4) != raw.SQLITE_BLOB || raw.sqlite3_column_bytes(st, 4) != LedgerHashing.HashSize) return "its previous hash is not 32 bytes";
            if (raw.sqlite3_column_type(st, 5) != raw.SQLITE_BLOB || raw.sqlite3_column_bytes(st, 5) != LedgerHashing.HashSize) return "its hash is not 32 bytes";
            long ms = raw.sqlite3_column_int64(st, 3);
            if (ms < DateTimeOffset.MinValue.ToUnixTimeMilliseconds() || ms > DateTimeOffset.MaxValue.ToUnixTimeMilliseconds()) return "its timestamp is out of range";
            return null;
        }
        if (Problem() is { } p) return new(seq, null, p);
        var e = new LedgerEvent(
            seq,
            raw.sqlite3_column_text(st, 1).utf8_to_string() ?? "",
            raw.sqlite3_column_blob(st, 2).ToArray(),
            DateTimeOffset.FromUnixTimeMilliseconds(raw.sqlite3_column_int64(st, 3)),
            raw.sqlite3_column_blob(st, 4).ToArray(),
            raw.sqlite3_column_blob(st, 5).ToArray());
        return new(seq, e, null);
    }

    public LedgerVerification Verify() => VerifyImpl(null);

    /// <summary>
    /// Verifies the chain and that <paramref name="expectedHead"/>, a head hash recorded earlier outside this file
    /// (e.g. printed by <c>oml ledger head</c>), is still part of it: the only way to detect a consistent rewrite or
    /// a truncation by someone who can write the file.
    /// </summary>
    public LedgerVerification Verify(byte[] expectedHead)
    {
        ArgumentNullException.ThrowIfNull(expectedHead);
        return VerifyImpl(expectedHead);
    }

    private LedgerVerification VerifyImpl(byte[]? expectedHead)
    {
        long lastSeen = -1;
        try
        {
            return LedgerVerifier.Verify(Rows(0).Select(r => { lastSeen = r.Sequence; return r; }), expectedHead);
        }
        catch (LedgerStorageException e) when ((e.SqliteCode & 0xff) is raw.SQLITE_CORRUPT or raw.SQLITE_NOTADB)
        {
            return new LedgerVerification(false, Math.Max(0, lastSeen + 1), lastSeen + 1, $"the database file is damaged: {e.Message}");
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _head.Dispose();
            _insert.Dispose();
            _page.Dispose();
            _db.Dispose();
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    // ---- raw SQLite helpers: every return code checked, failures carry sqlite's message ----

    private static LedgerStorageException Error(sqlite3? db, int rc, string what)
    {
        string msg = db is null || db.IsInvalid ? raw.sqlite3_errstr(rc).utf8_to_string() : raw.sqlite3_errmsg(db).utf8_to_string();
        int code = db is null || db.IsInvalid ? rc : raw.sqlite3_extended_errcode(db);
        return new LedgerStorageException($"{what}: {msg} (sqlite error {code})", code);
    }

    private static void Check(sqlite3 db, int rc, string what, string path)
    {
        if (rc != raw.SQLITE_OK) throw Error(db, rc, $"{path}: {what}");
    }

    private static sqlite3_stmt Prepare(sqlite3 db, string sql, string path)
    {
        int rc = raw.sqlite3_prepare_v2(db, sql, out var st);
        if (rc != raw.SQLITE_OK)
        {
            st?.Dispose();
            throw Error(db, rc, $"{path}: prepare '{sql}'");
        }
        return st;
    }

    private static void Exec(sqlite3 db, string sql, string path)
    {
        int rc = raw.sqlite3_exec(db, sql);
        if (rc != raw.SQLITE_OK) throw Error(db, rc, $"{path}: {sql}");
    }

    private static bool StepRow(sqlite3 db, sqlite3_stmt st, string what, string path)
    {
        int rc = raw.sqlite3_step(st);
        if (rc == raw.SQLITE_ROW) return true;
        if (rc == raw.SQLITE_DONE) return false;
        throw Error(db, rc, $"{path}: {what}");
    }

    private static void StepDone(sqlite3 db, sqlite3_stmt st, string what, string path)
    {
        int rc = raw.sqlite3_step(st);
        if (rc != raw.SQLITE_DONE) throw Error(db, rc, $"{path}: {what}");
    }

    private static long QueryLong(sqlite3 db, string sql, string path)
    {
        using var st = Prepare(db, sql, path);
        if (!StepRow(db, st, sql, path)) throw new LedgerStorageException($"{path}: {sql} returned no row", 0);
        return raw.sqlite3_column_int64(st, 0);
    }

    private static string QueryText(sqlite3 db, string sql, string path)
    {
        using var st = Prepare(db, sql, path);
        if (!StepRow(db, st, sql, path)) throw new LedgerStorageException($"{path}: {sql} returned no row", 0);
        return raw.sqlite3_column_text(st, 0).utf8_to_string() ?? "";
    }
}
