using System.Text;
using System.Text.Json.Nodes;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;

namespace Oml.Protocol.Hosting;

/// <summary>One permit a host has accepted (before serving it): enough to count what the user still owes it.</summary>
public sealed record SeenPermit(string User, long Nonce, long Fee, long Expiry, string Hash);

/// <summary>
/// A host's durable record of every permit it accepted: <c>seen-permits.jsonl</c> in the host's receipt folder, one
/// line per permit, fsynced before the query is answered. It makes replays impossible across restarts (a permit is
/// served at most once, ever) and tells the host how much of each user's escrow its unsettled permits already spend.
/// A torn last line (a crash while writing it) is ignored: its query was never answered.
/// </summary>
public sealed class SeenPermitStore
{
    public const string FileName = "seen-permits.jsonl";
    private readonly Dictionary<(string User, long Nonce), SeenPermit> _seen = [];
    private readonly Lock _gate = new();

    /// <summary>An in-memory store (tests, or a host that keeps no files: replays are then caught only until it restarts).</summary>
    public SeenPermitStore() { }

    /// <summary>Opens (or starts) the store in <paramref name="directory"/>.</summary>
    public SeenPermitStore(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Path = System.IO.Path.Combine(System.IO.Path.GetFullPath(directory), FileName);
        if (!File.Exists(Path)) return;
        var lines = File.ReadAllLines(Path);
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            try
            {
                var o = JsonNode.Parse(lines[i])!.AsObject();
                var p = new SeenPermit(o["user"]!.GetValue<string>(), o["nonce"]!.GetValue<long>(), o["fee"]!.GetValue<long>(),
                    o["expiry"]!.GetValue<long>(), o["hash"]!.GetValue<string>());
                _seen[(p.User, p.Nonce)] = p;
            }
            catch (Exception e) when (i == lines.Length - 1 && e is System.Text.Json.JsonException or InvalidOperationException or NullReferenceException or FormatException)
            {
                // A torn last line: the process died while accepting that permit, before answering.
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or NullReferenceException or FormatException)
            {
                throw new InvalidDataException($"{Path} line {i + 1} is damaged ({e.Message}); the host cannot tell which permits it served: repair or remove the line", e);
            }
        }
    }

    /// <summary>The file, or null for an in-memory store.</summary>
    public string? Path { get; }

    public int Count { get { lock (_gate) return _seen.Count; } }

    public bool Contains(string user, long nonce) { lock (_gate) return _seen.ContainsKey((user, nonce)); }

    /// <summary>The permits of <paramref name="user"/> this host accepted.</summary>
    public IReadOnlyList<SeenPermit> Of(string user) { lock (_gate) return [.. _seen.Values.Where(p => p.User == user)]; }

    /// <summary>Records <paramref name="permit"/> (durably, when file-backed); false when its (user, nonce) was seen before.</summary>
    public bool TryAdd(SeenPermit permit)
    {
        ArgumentNullException.ThrowIfNull(permit);
        lock (_gate)
        {
            if (_seen.ContainsKey((permit.User, permit.Nonce))) return false;
            if (Path is not null)
            {
                var line = new JsonObject
                {
                    ["user"] = permit.User, ["nonce"] = permit.Nonce, ["fee"] = permit.Fee, ["expiry"] = permit.Expiry, ["hash"] = permit.Hash,
                }.ToJsonString() + "\n";
                Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
                using var fs = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
                fs.Write(Encoding.UTF8.GetBytes(line));
                fs.Flush(flushToDisk: true);
            }
            _seen[(permit.User, permit.Nonce)] = permit;
            return true;
        }
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
    private readonly Func<(ProtocolState State, long Now)> _view;
    private readonly Lock _gate = new();

    /// <param name="view">The current protocol state and ledger time (e.g. <see cref="ForEngine"/>).</param>
    /// <param name="host">This host's address.</param>
    /// <param name="modelId">The model this host serves.</param>
    /// <param name="seen">The host's record of accepted permits.</param>
    /// <param name="settleMarginSeconds">How long after the end of the current epoch a permit must stay valid (the time the host gives itself to commit the epoch's usage).</param>
    public PermitGate(Func<(ProtocolState State, long Now)> view, string host, string modelId, SeenPermitStore seen, long settleMarginSeconds = 3_600)
    {
        _view = view ?? throw new ArgumentNullException(nameof(view));
        Host = Hex.Address(host);
        ModelId = modelId ?? throw new ArgumentNullException(nameof(modelId));
        Seen = seen ?? throw new ArgumentNullException(nameof(seen));
        ArgumentOutOfRangeException.ThrowIfNegative(settleMarginSeconds);
        SettleMarginSeconds = settleMarginSeconds;
    }

    /// <summary>A view of <paramref name="engine"/>: it catches up with the ledger before each check.</summary>
    public static Func<(ProtocolState State, long Now)> ForEngine(ProtocolEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return () => { engine.Refresh(); return (engine.State, engine.Now); };
    }

    /// <summary>A view of <paramref name="backend"/>: it catches up with the ledger or chain before each check.</summary>
    public static Func<(ProtocolState State, long Now)> ForBackend(IProtocolBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return () => { backend.RefreshAsync().GetAwaiter().GetResult(); return (backend.State, backend.Now); };
    }

    public string Host { get; }
    public string ModelId { get; }
    public SeenPermitStore Seen { get; }
    public long SettleMarginSeconds { get; }

    /// <summary>
    /// Checks <paramref name="permit"/> for <paramref name="query"/> and, when it passes, records it as accepted.
    /// Throws <see cref="QueryRefusedException"/> with the reason otherwise (nothing recorded).
    /// </summary>
    public void Admit(SignedPermit permit, string query)
    {
        ArgumentNullException.ThrowIfNull(permit);
        ArgumentNullException.ThrowIfNull(query);
        lock (_gate)
        {
            var (s, now) = _view();
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
            if (Seen.Contains(p.User, p.Nonce)) throw new QueryRefusedException($"permit nonce {p.Nonce} of {p.User} was already used with this host");
            var escrow = s.EscrowOf(p.User, Host);
            if (escrow.RefundRequestedAt is not null) throw new QueryRefusedException($"{p.User} asked for its escrow with this host back: no new permits");
            Int128 outstanding = 0;
            foreach (var q in Seen.Of(p.User))
                if (q.Expiry >= now && !s.SettledPermits.ContainsKey(q.Hash)) outstanding += q.Fee;
            if (escrow.Amount < outstanding + p.Fee)
                throw new QueryRefusedException($"{p.User}'s escrow with this host ({escrow.Amount}) does not cover this fee ({p.Fee}) and its unsettled permits ({outstanding})");
            if (!Seen.TryAdd(new SeenPermit(p.User, p.Nonce, p.Fee, p.Expiry, hash)))
                throw new QueryRefusedException($"permit nonce {p.Nonce} of {p.User} was already used with this host");
        }
    }
}
