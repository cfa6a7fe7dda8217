using System.Text;
using System.Text.Json.Nodes;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;

namespace Oml.Protocol.Hosting;

/// <summary>One answered query as the host stored it: its signed receipt and the permit it served (null for none).</summary>
public sealed record ServedQuery(SignedReceipt Receipt, SignedPermit? Permit);

/// <summary>The result of <see cref="UsageStore.CommitEpoch"/>.</summary>
public sealed record UsageCommit(UsageBook Book, bool Submitted, IReadOnlyList<string> DamagedLines);

/// <summary>Crash-safe file writes: a temporary sibling, fsync, rename, and an fsync of the folder.</summary>
internal static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        string tmp = path + $".{Environment.ProcessId}.tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            fs.Write(Encoding.UTF8.GetBytes(text));
            fs.Flush(flushToDisk: true);
        }
        Move(tmp, path, overwrite: true);
    }

    public static void Move(string from, string to, bool overwrite = false)
    {
        File.Move(from, to, overwrite);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(to))!);
    }

    private static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) return;
        try
        {
            using var h = File.OpenHandle(dir, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
            RandomAccess.FlushToDisk(h);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException) { /* best effort where directories cannot be opened */ }
    }
}

/// <summary>
/// A host's durable record of answered queries for one model, in a folder: <c>served.jsonl</c> (one line per answered
/// query, appended and flushed as it is served) and <c>usage-EPOCH.json</c> (the exact usage book committed for an
/// epoch, kept to rebut claims), plus <c>pending-usage-EPOCH.json</c> while a commit is under way and
/// <c>seen-permits.jsonl</c> (<see cref="SeenPermitStore"/>). A receipt is committed at most once:
/// <see cref="PendingBook(long)"/> holds every served receipt that no committed book holds yet, in serving order.
/// </summary>
public sealed class UsageStore
{
    private const string ServedFile = "served.jsonl";
    private readonly Lock _gate = new();

    public UsageStore(string directory, ProtocolDomain domain, string modelId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentNullException.ThrowIfNull(modelId);
        Directory = Path.GetFullPath(directory);
        Domain = domain;
        ModelId = modelId;
    }

    public string Directory { get; }
    public ProtocolDomain Domain { get; }
    public string ModelId { get; }

    private string Served => Path.Combine(Directory, ServedFile);
    private string BookPath(long epoch) => Path.Combine(Directory, $"usage-{epoch}.json");

    /// <summary>Appends one answered query (and flushes it to disk before returning).</summary>
    public void Record(SignedReceipt receipt, SignedPermit? permit)
    {
        ArgumentNullException.ThrowIfNull(receipt);
        if (receipt.Receipt.ModelId != ModelId) throw new ArgumentException($"receipt is for model {receipt.Receipt.ModelId}, not {ModelId}");
        var line = new JsonObject { ["receipt"] = receipt.ToJsonNode(), ["permit"] = permit?.ToJsonNode() }.ToJsonString() + "\n";
        lock (_gate)
        {
            System.IO.Directory.CreateDirectory(Directory);
            using var fs = new FileStream(Served, FileMode.Append, FileAccess.Write, FileShare.Read);
            fs.Write(Encoding.UTF8.GetBytes(line));
            fs.Flush(flushToDisk: true);
        }
    }

    /// <summary>Every answered query, in serving order (a torn last line from a crash is skipped; damaged lines throw).</summary>
    public IReadOnlyList<ServedQuery> ReadServed()
    {
        var result = ReadServed(out var damaged);
        if (damaged.Count > 0) throw new InvalidDataException(damaged[0]);
        return result;
    }

    /// <summary>
    /// Every answered query that can be read, in serving order; <paramref name="damaged"/> gets one line per damaged
    /// line of <c>served.jsonl</c> ("FILE line N: what is wrong"), which is skipped. A torn last line (a crash while
    /// it was written, before its answer was sent) is skipped silently.
    /// </summary>
    public IReadOnlyList<ServedQuery> ReadServed(out IReadOnlyList<string> damaged)
    {
        var bad = new List<string>();
        damaged = bad;
        if (!File.Exists(Served)) return [];
        var lines = File.ReadAllLines(Served);
        var result = new List<ServedQuery>(lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            try { result.Add(Parse(JsonNode.Parse(lines[i]))); }
            catch (Exception e) when (IsParseFailure(e))
            {
                if (i == lines.Length - 1 && e is System.Text.Json.JsonException) continue;
                bad.Add($"{Served}: line {i + 1} is damaged ({e.Message}); repair or remove it");
            }
        }
        return result;
    }

    private static bool IsParseFailure(Exception e) =>
        e is System.Text.Json.JsonException or ProtocolException or FormatException or InvalidOperationException or ArgumentException or KeyNotFoundException;

    private static ServedQuery Parse(JsonNode? node) =>
        new(SignedReceipt.FromJsonNode(node?["receipt"]), node?["permit"] is { } p ? SignedPermit.FromJsonNode(p) : null);

    /// <summary>The committed books (<see cref="UsageBook.ToJson"/> files), by epoch.</summary>
    public IReadOnlyDictionary<long, UsageBook> CommittedBooks()
    {
        var books = new SortedDictionary<long, UsageBook>();
        if (!System.IO.Directory.Exists(Directory)) return books;
        foreach (var f in System.IO.Directory.GetFiles(Directory, "usage-*.json"))
        {
            var name = Path.GetFileNameWithoutExtension(f)["usage-".Length..];
            if (!Message.TryParseUInt(name, out long epoch)) continue;
            books[epoch] = ReadBook(f, epoch);
        }
        return books;
    }

    private UsageBook ReadBook(string path, long epoch)
    {
        UsageBook book;
        try { book = UsageBook.FromJson(File.ReadAllText(path)); }
        catch (Exception e) when (IsParseFailure(e)) { throw new InvalidDataException($"{path}: not a usage book ({e.Message})", e); }
        if (book.ModelId != ModelId || book.Domain != Domain || book.Epoch != epoch)
            throw new InvalidDataException($"{path} is a usage book of another model, ledger or epoch");
        return book;
    }

    /// <summary>The usage book for <paramref name="epoch"/>: every served receipt not in a committed book (damaged lines skipped).</summary>
    public UsageBook PendingBook(long epoch) => PendingBook(epoch, out _);

    /// <summary>As <see cref="PendingBook(long)"/>, reporting the damaged lines of <c>served.jsonl</c> that were skipped.</summary>
    public UsageBook PendingBook(long epoch, out IReadOnlyList<string> damaged)
    {
        if (File.Exists(BookPath(epoch))) throw new ProtocolException(ProtocolErrorCode.UsageAlreadyCommitted, $"a usage book for epoch {epoch} is already stored in {Directory}");
        var committed = CommittedBooks().Values.SelectMany(b => b.Receipts).Select(r => Hex.Of(r.Receipt.Digest(Domain))).ToHashSet(StringComparer.Ordinal);
        var book = new UsageBook(Domain, ModelId, epoch);
        foreach (var q in ReadServed(out damaged))
            if (committed.Add(Hex.Of(q.Receipt.Receipt.Digest(Domain)))) book.Add(q.Receipt, q.Permit);
        return book;
    }

    private string PendingPath(long epoch) => Path.Combine(Directory, $"pending-usage-{epoch}.json");

    /// <summary>Test hook: called with the name of each step of <see cref="CommitEpoch"/> (to kill the process there).</summary>
    internal static Action<string>? StepHook { get; set; }

    /// <summary>
    /// Commits the usage served since the last commit as <paramref name="epoch"/>'s, crash-safely (write-ahead): the
    /// book is first stored as <c>pending-usage-EPOCH.json</c> (atomically), then submitted through
    /// <paramref name="submit"/>, then renamed to <c>usage-EPOCH.json</c>. Before anything else, a pending book left
    /// by an interrupted run is finished: when the ledger (<paramref name="committed"/>: the usage record of this
    /// host, model and an epoch, or null) already holds it with the same receipts root it is only renamed; when the
    /// ledger lacks it, it is submitted; when the ledger holds another root the run stops with an error. A rerun after
    /// a kill at any point therefore commits the epoch with every receipt, exactly once.
    /// </summary>
    /// <returns>The book committed for <paramref name="epoch"/>, whether it was <paramref name="submit"/>ted by this
    /// call, and the damaged lines of <c>served.jsonl</c> that were skipped.</returns>
    public UsageCommit CommitEpoch(long epoch, Func<long, UsageRecord?> committed, Func<UsageBook, object?> submit)
    {
        ArgumentNullException.ThrowIfNull(committed);
        ArgumentNullException.ThrowIfNull(submit);
        UsageCommit? result = null;
        foreach (var pending in PendingEpochs())
        {
            var r = FinishPending(pending, committed, submit);
            if (pending == epoch) result = r;
        }
        if (result is not null) return result;
        if (File.Exists(BookPath(epoch)) || committed(epoch) is not null)
            throw new ProtocolException(ProtocolErrorCode.UsageAlreadyCommitted, $"usage of '{ModelId}' for epoch {epoch} is already committed");
        var book = PendingBook(epoch, out var damaged);
        System.IO.Directory.CreateDirectory(Directory);
        AtomicFile.WriteAllText(PendingPath(epoch), book.ToJson());
        StepHook?.Invoke("pending-written");
        try { submit(book); }
        catch (ProtocolException)
        {
            File.Delete(PendingPath(epoch)); // rejected: nothing was committed
            throw;
        }
        StepHook?.Invoke("submitted");
        AtomicFile.Move(PendingPath(epoch), BookPath(epoch));
        StepHook?.Invoke("finished");
        return new UsageCommit(book, Submitted: true, damaged);
    }

    private IEnumerable<long> PendingEpochs()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        var epochs = new List<long>();
        foreach (var f in System.IO.Directory.GetFiles(Directory, "pending-usage-*.json"))
            if (Message.TryParseUInt(Path.GetFileNameWithoutExtension(f)["pending-usage-".Length..], out long e)) epochs.Add(e);
        epochs.Sort();
        return epochs;
    }

    private UsageCommit FinishPending(long epoch, Func<long, UsageRecord?> committed, Func<UsageBook, object?> submit)
    {
        string path = PendingPath(epoch);
        var book = ReadBook(path, epoch);
        string root = Hex.Of(book.Root());
        bool submitted = false;
        switch (committed(epoch))
        {
            case null:
                try { submit(book); }
                catch (ProtocolException)
                {
                    File.Delete(path);
                    throw;
                }
                submitted = true;
                break;
            case { } u when u.ReceiptsRoot == root && u.ReceiptCount == book.Receipts.Count:
                break;
            case { } u:
                throw new InvalidDataException($"{path}: the ledger holds another usage root for epoch {epoch} ({u.ReceiptsRoot}, {u.ReceiptCount} receipts) than this interrupted commit ({root}, {book.Receipts.Count}); keep both files and investigate");
        }
        StepHook?.Invoke("submitted");
        AtomicFile.Move(path, BookPath(epoch));
        return new UsageCommit(book, submitted, []);
    }

    /// <summary>
    /// The rebuttal of <paramref name="claim"/>: for each claimed receipt, the permit it names and its Merkle proof in
    /// the committed book that holds it. Throws <see cref="ProtocolException"/> (InvalidProof) when a receipt is in no
    /// committed book, or (InvalidPermit) when it names no permit.
    /// </summary>
    public Rebuttal BuildRebuttal(Claim claim)
    {
        ArgumentNullException.ThrowIfNull(claim);
        var books = CommittedBooks();
        var items = new List<RebuttalItem>();
        foreach (var item in claim.Items)
        {
            RebuttalItem? found = null;
            foreach (var (epoch, book) in books)
            {
                var receipt = book.Receipts.FirstOrDefault(r => Hex.Of(r.Receipt.Digest(Domain)) == item.ReceiptHash);
                if (receipt is null) continue;
                if (!receipt.Receipt.HasPermit)
                    throw new ProtocolException(ProtocolErrorCode.InvalidPermit, $"the receipt for fingerprint {item.LeafIndex} names no permit: the query was answered without one");
                var permit = book.Permits.First(p => p.Permit.Hash(Domain) == receipt.Receipt.PermitHash);
                found = new RebuttalItem(permit, epoch, book.ProofFor(receipt));
                break;
            }
            items.Add(found ?? throw new ProtocolException(ProtocolErrorCode.InvalidProof,
                $"the receipt {item.ReceiptHash} (fingerprint {item.LeafIndex}) is in no committed usage book in {Directory}"));
        }
        return new Rebuttal(items);
    }
}
