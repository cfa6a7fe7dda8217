using System.Text;
using System.Text.Json.Nodes;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;

namespace Oml.Protocol.Hosting;

/// <summary>The host's record of accepted permits cannot be read or written (its lock stayed held, the disk failed, a
/// line is damaged): no permit can be admitted until it is fixed; the query was not answered.</summary>
public sealed class PermitStoreUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>One permit a host has accepted (before serving it): enough to count what the user still owes it. The model
/// is null in lines written before stores named it (then it is the model of the gate that reads them). A released
/// permit (<see cref="SeenPermitStore.Release"/>: the host failed before answering it) keeps its nonce used and counts
/// nothing against the user's escrow: its <see cref="Fee"/> is 0.</summary>
public sealed record SeenPermit(string User, long Nonce, long Fee, long Expiry, string Hash, string? ModelId = null, bool Released = false);

/// <summary>
/// A host's durable record of every permit it accepted: one line per permit in a JSON-lines file (by default
/// <c>seen-permits.jsonl</c> in the host's receipt folder), fsynced before the query is answered. It makes replays
/// impossible across restarts (a permit is served at most once, ever) and tells the host how much of each user's escrow
/// its unsettled permits already spend. A user's escrow with a host pays for every model the host serves, so a host that
/// serves several models (one process each) gives them all one file: every admission runs under an exclusive lock on
/// <c>FILE.lock</c> and first reads what the other processes appended, so no two of them promise the same escrow twice.
/// A torn last line (a crash while writing it) is ignored: its query was never answered.
/// </summary>
public sealed class SeenPermitStore
{
    public const string FileName = "seen-permits.jsonl";
    private readonly Dictionary<(string User, string? Model, long Nonce), SeenPermit> _seen = [];
    private readonly Lock _gate = new();                  // the dictionary and the read offset
    private readonly SemaphoreSlim _turn = new(1, 1);     // one admission at a time in this process (awaited, not blocked on)
    private readonly AsyncLocal<bool> _myTurn = new();    // this flow holds the turn (and the file lock): re-entry runs at once
    private long _read;      // bytes of the file taken in so far (whole lines only)

    /// <summary>An in-memory store (tests, or a host that keeps no files: replays are then caught only until it restarts).</summary>
    public SeenPermitStore() { }

    /// <summary>Opens (or starts) the store in <paramref name="directory"/> (its <see cref="FileName"/>).</summary>
    public SeenPermitStore(string directory) : this(directory, null) { }

    private SeenPermitStore(string? directory, string? file)
    {
        if (file is null)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(directory);
            file = System.IO.Path.Combine(System.IO.Path.GetFullPath(directory), FileName);
        }
        Path = System.IO.Path.GetFullPath(file);
        Synchronized(() => 0);
    }

    /// <summary>Opens (or starts) the store in the file <paramref name="path"/> (shared by every model a host serves).</summary>
    public static SeenPermitStore OpenFile(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return new SeenPermitStore(null, path);
    }

    /// <summary>The file, or null for an in-memory store.</summary>
    public string? Path { get; }

    public int Count { get { lock (_gate) return _seen.Count; } }

    /// <summary>Whether <paramref name="user"/>'s <paramref name="nonce"/> was accepted for <paramref name="modelId"/>
    /// (or by a line that names no model: before stores named it, a host served one model a file).</summary>
    public bool Contains(string user, string modelId, long nonce)
    {
        lock (_gate) return _seen.ContainsKey((user, modelId, nonce)) || _seen.ContainsKey((user, null, nonce));
    }

    /// <summary>The permits of <paramref name="user"/> this host accepted, for every model.</summary>
    public IReadOnlyList<SeenPermit> Of(string user) { lock (_gate) return [.. _seen.Values.Where(p => p.User == user)]; }

    /// <summary>Records <paramref name="permit"/> (durably, when file-backed); false when its (user, model, nonce) was
    /// seen before. Call it inside <see cref="Synchronized"/> when other processes share the file.</summary>
    public bool TryAdd(SeenPermit permit)
    {
        ArgumentNullException.ThrowIfNull(permit);
        return Synchronized(() =>
        {
            if (_seen.ContainsKey((permit.User, permit.ModelId, permit.Nonce))
                || (permit.ModelId is not null && _seen.ContainsKey((permit.User, null, permit.Nonce)))) return false;
            Append(permit);
            _seen[(permit.User, permit.ModelId, permit.Nonce)] = permit;
            return true;
        });
    }

    /// <summary>
    /// Marks the accepted permit of <paramref name="user"/>'s <paramref name="nonce"/> for <paramref name="modelId"/> as
    /// never served (durably, when file-backed): the host failed before it answered, so the permit stops counting against
    /// the user's escrow at once instead of at its expiry; its nonce stays used (the user signs a new permit, and this one
    /// can never be served or settled by an honest host). False when no such permit was accepted or it was released
    /// already. The line it appends repeats the permit with fee 0 and <c>"released": true</c>: a reader that predates
    /// releases takes it as the same permit with nothing owed, which is what it means.
    /// </summary>
    public bool Release(string user, string modelId, long nonce)
    {
        ArgumentNullException.ThrowIfNull(user);
        ArgumentNullException.ThrowIfNull(modelId);
        return Synchronized(() =>
        {
            if (!_seen.TryGetValue((user, modelId, nonce), out var seen) || seen.Released) return false;
            var released = seen with { Fee = 0, Released = true };
            Append(released);
            _seen[(user, modelId, nonce)] = released;
            return true;
        });
    }

    /// <summary>Appends <paramref name="permit"/>'s line and flushes it to disk (file-backed stores; in the turn).</summary>
    private void Append(SeenPermit permit)
    {
        if (Path is null) return;
        var o = new JsonObject
        {
            ["user"] = permit.User, ["model"] = permit.ModelId, ["nonce"] = permit.Nonce, ["fee"] = permit.Fee, ["expiry"] = permit.Expiry, ["hash"] = permit.Hash,
        };
        if (permit.Released) o["released"] = true;
        string line = o.ToJsonString() + "\n";
        using var fs = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        long before = fs.Position;
        try
        {
            fs.Write(Encoding.UTF8.GetBytes(line));
            fs.Flush(flushToDisk: true);
        }
        catch (IOException)
        {
            // Not recorded, not answered: take the line back so that no reader counts it (best effort).
            try { fs.SetLength(before); } catch (IOException) { }
            throw;
        }
        _read = fs.Position;
    }

    /// <summary>
    /// Runs <paramref name="action"/> with the store up to date and no other process admitting: in this process's turn
    /// and, for a file, under an exclusive lock on <c>FILE.lock</c> (waited for up to 10 s), after reading the lines
    /// other processes appended since. Re-entrant within one call chain. Blocks its thread while it waits: a server
    /// uses <see cref="SynchronizedAsync"/>.
    /// </summary>
    public T Synchronized<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        if (_myTurn.Value) { lock (_gate) return action(); }
        _turn.Wait();
        try
        {
            using var fileLock = Path is null ? null : AcquireFileLockAsync(Path + ".lock", blocking: true, CancellationToken.None).GetAwaiter().GetResult();
            return InTurn(action);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// <see cref="Synchronized"/> for servers: the waits for this process's turn and for another process's file lock
    /// are awaited (no thread is held while a hung process keeps the lock) and end when <paramref name="ct"/> is
    /// cancelled (the client left); <paramref name="action"/> itself runs synchronously (it reads and appends a line).
    /// </summary>
    public async Task<T> SynchronizedAsync<T>(Func<T> action, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(action);
        if (_myTurn.Value) { lock (_gate) return action(); }
        await _turn.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            using var fileLock = Path is null ? null : await AcquireFileLockAsync(Path + ".lock", blocking: false, ct).ConfigureAwait(false);
            return InTurn(action);
        }
        finally
        {
            _turn.Release();
        }
    }

    private T InTurn<T>(Func<T> action)
    {
        _myTurn.Value = true;
        try
        {
            lock (_gate)
            {
                if (Path is not null) CatchUp();
                return action();
            }
        }
        finally
        {
            _myTurn.Value = false;
        }
    }

    private static async Task<FileStream> AcquireFileLockAsync(string path, bool blocking, CancellationToken ct)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                if (blocking) Thread.Sleep(2);
                else await Task.Delay(2, ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new IOException($"{path} stayed locked for 10 s: another host process holds it (or hung holding it)", e);
            }
        }
    }

    /// <summary>Takes in the whole lines appended to the file since the last read (under the file lock).</summary>
    private void CatchUp()
    {
        if (!File.Exists(Path)) return;
        using var fs = new FileStream(Path!, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        if (fs.Length <= _read) return;
        fs.Position = _read;
        var bytes = new byte[fs.Length - _read];
        fs.ReadExactly(bytes);
        int end = Array.LastIndexOf(bytes, (byte)'\n') + 1;
        // A torn last line: a writer died mid-line (every write runs under the lock we hold, so none is in progress).
        // Its query was never answered; it is cut off, so that the next line does not start inside it.
        if (end < bytes.Length) fs.SetLength(_read + end);
        var lines = Encoding.UTF8.GetString(bytes, 0, end).Split('\n');
        long lineStart = _read;
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            try
            {
                var o = JsonNode.Parse(lines[i])!.AsObject();
                var p = new SeenPermit(o["user"]!.GetValue<string>(), o["nonce"]!.GetValue<long>(), o["fee"]!.GetValue<long>(),
                    o["expiry"]!.GetValue<long>(), o["hash"]!.GetValue<string>(), o["model"]?.GetValue<string>(), o["released"]?.GetValue<bool>() ?? false);
                _seen[(p.User, p.ModelId, p.Nonce)] = p;
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or NullReferenceException or FormatException)
            {
                throw new InvalidDataException($"{Path} has a damaged line after byte {lineStart} ({e.Message}); the host cannot tell which permits it served: repair or remove the line", e);
            }
        }
        _read += end;
    }
}

/// <summary>
/// What an honest host checks before it answers a query under a permit, against the protocol state, so that every
/// permit it serves will certainly settle (and it can never be slashed for serving it): the user's signature under the
/// ledger's domain; host and model are this host's; the query hash; fee ≥ the model's price; the expiry far enough
/// past the end of the current epoch (<see cref="SettleMarginSeconds"/>) for the usage commit to settle it; the nonce
/// never settled with this host for this model on the ledger (the ledger spends nonces per user, host and model, so
/// nothing the user settles with another host can make a served permit unsettleable) and never accepted by this host
/// before (<see cref="SeenPermitStore"/>, persisted); the
/// user's escrow with this host covers this fee plus the host's outstanding unsettled permits of that user; and the
/// user has not asked for its escrow back. An accepted permit is recorded in the store before the query is answered.
/// </summary>
public sealed class PermitGate
{
    private readonly Func<CancellationToken, ValueTask<(ProtocolState State, long Now)>> _view;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <param name="view">The current protocol state and ledger time (e.g. <see cref="ForEngine"/>).</param>
    /// <param name="host">This host's address.</param>
    /// <param name="modelId">The model this host serves.</param>
    /// <param name="seen">The host's record of accepted permits.</param>
    /// <param name="settleMarginSeconds">How long after the end of the current epoch a permit must stay valid (the time the host gives itself to commit the epoch's usage).</param>
    public PermitGate(Func<CancellationToken, ValueTask<(ProtocolState State, long Now)>> view, string host, string modelId, SeenPermitStore seen, long settleMarginSeconds = 3_600)
    {
        _view = view ?? throw new ArgumentNullException(nameof(view));
        Host = Hex.Address(host);
        ModelId = modelId ?? throw new ArgumentNullException(nameof(modelId));
        Seen = seen ?? throw new ArgumentNullException(nameof(seen));
        ArgumentOutOfRangeException.ThrowIfNegative(settleMarginSeconds);
        SettleMarginSeconds = settleMarginSeconds;
    }

    /// <summary>A view of <paramref name="engine"/>: it catches up with the ledger before each check.</summary>
    public static Func<CancellationToken, ValueTask<(ProtocolState State, long Now)>> ForEngine(ProtocolEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return _ => { engine.Refresh(); return ValueTask.FromResult((engine.State, engine.Now)); };
    }

    /// <summary>A view of <paramref name="backend"/>: it catches up with the ledger or chain before each check.</summary>
    public static Func<CancellationToken, ValueTask<(ProtocolState State, long Now)>> ForBackend(IProtocolBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return async ct => { await backend.RefreshAsync(ct).ConfigureAwait(false); return (backend.State, backend.Now); };
    }

    public string Host { get; }
    public string ModelId { get; }
    public SeenPermitStore Seen { get; }
    public long SettleMarginSeconds { get; }

    /// <summary>
    /// Checks <paramref name="permit"/> for <paramref name="query"/> and, when it passes, records it as accepted.
    /// Throws <see cref="QueryRefusedException"/> with the reason otherwise (nothing recorded). Admissions take turns;
    /// every wait (the state's refresh, the turn, another process's file lock) is awaited and ends with
    /// <paramref name="ct"/>.
    /// </summary>
    public async Task AdmitAsync(SignedPermit permit, string query, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(permit);
        ArgumentNullException.ThrowIfNull(query);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var (s, now) = await _view(ct).ConfigureAwait(false);
            // Under the store's lock (across processes when a file is shared): what the host's other models accepted
            // counts against the same escrow.
            try
            {
                await Seen.SynchronizedAsync(() =>
                {
                    var p = permit.Permit;
                    if (!permit.Verify(s.Domain)) throw new QueryRefusedException("the permit is not signed by its user for this ledger");
                    if (p.Host != Host || p.ModelId != ModelId) throw new QueryRefusedException("the permit is for another host or model");
                    if (p.QueryHash != Hex.KeccakText(query)) throw new QueryRefusedException("the permit is for another query");
                    if (!s.Models.TryGetValue(ModelId, out var model)) throw new QueryRefusedException($"model '{ModelId}' is not registered on this ledger");
                    if (s.LicenceOf(ModelId, Host) is { Exiting: true }) throw new QueryRefusedException($"this host announced its exit from '{ModelId}': no new permits");
                    if (p.Fee < model.PricePerQuery) throw new QueryRefusedException($"the permit pays {p.Fee}, the price is {model.PricePerQuery}");
                    long mustLast = s.EpochEnd(now) + SettleMarginSeconds;
                    if (p.Expiry < mustLast) throw new QueryRefusedException($"the permit expires at {p.Expiry}, before this epoch's usage can be settled (it must last until {mustLast})");
                    string hash = p.Hash(s.Domain);
                    if (s.IsPermitNonceUsed(p.User, Host, ModelId, p.Nonce)) throw new QueryRefusedException($"permit nonce {p.Nonce} of {p.User} was already used: it is settled");
                    if (Seen.Contains(p.User, ModelId, p.Nonce)) throw new QueryRefusedException($"permit nonce {p.Nonce} of {p.User} was already used with this host");
                    var escrow = s.EscrowOf(p.User, Host);
                    if (escrow.RefundRequestedAt is not null) throw new QueryRefusedException($"{p.User} asked for its escrow with this host back: no new permits");
                    Int128 outstanding = 0;
                    foreach (var q in Seen.Of(p.User))
                        if (q.Expiry >= now && !s.SettledPermits.ContainsKey(q.Hash)) outstanding += q.Fee;
                    if (escrow.Amount < outstanding + p.Fee)
                        throw new QueryRefusedException($"{p.User}'s escrow with this host ({escrow.Amount}) does not cover this fee ({p.Fee}) and its unsettled permits ({outstanding})");
                    if (!Seen.TryAdd(new SeenPermit(p.User, p.Nonce, p.Fee, p.Expiry, hash, ModelId)))
                        throw new QueryRefusedException($"permit nonce {p.Nonce} of {p.User} was already used with this host");
                    return 0;
                }, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                throw new PermitStoreUnavailableException($"the accepted-permits file {Seen.Path} cannot be used: {e.Message}", e);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Releases <paramref name="permit"/>, admitted by <see cref="AdmitAsync"/>, when this host failed to answer it (its
    /// model or backend failed, or it is shutting down): the fee stops counting against the user's escrow now, not at
    /// the permit's expiry; the nonce stays used. Not for a client that left (<see cref="SeenPermitStore.Release"/>):
    /// there the permit stays counted until it expires, which bounds what a user who keeps leaving can make the host
    /// compute for nothing. False when the permit was not admitted here or was released already.
    /// </summary>
    public async Task<bool> ReleaseAsync(SignedPermit permit, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(permit);
        var p = permit.Permit;
        if (p.Host != Host || p.ModelId != ModelId) return false;
        try
        {
            return await Seen.SynchronizedAsync(() => Seen.Release(p.User, ModelId, p.Nonce), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new PermitStoreUnavailableException($"the accepted-permits file {Seen.Path} cannot be used: {e.Message}", e);
        }
    }
}
