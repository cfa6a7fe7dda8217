using System.Text;
using System.Text.Json.Nodes;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;

namespace Oml.Protocol.Hosting;

/// <summary>One answered query as the host stored it: its signed receipt and the permit it served (null for none).</summary>
public sealed record ServedQuery(SignedReceipt Receipt, SignedPermit? Permit);

/// <summary>
/// A host's durable record of answered queries for one model, in a folder: <c>served.jsonl</c> (one line per answered
/// query, appended and flushed as it is served) and <c>usage-EPOCH.json</c> (the exact usage book committed for an
/// epoch, kept to rebut claims). A receipt is committed at most once: <see cref="PendingBook"/> holds every served
/// receipt that no committed book holds yet, in serving order.
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

    /// <summary>
    /// Every answered query, in serving order. A torn last line (a crash while appending) is skipped; any other
    /// damaged line is an <see cref="InvalidDataException"/> naming the file and line, since skipping it would
    /// silently drop a receipt the host is owed for (repair or remove the line, then run again).
    /// </summary>
    public IReadOnlyList<ServedQuery> ReadServed()
    {
        if (!File.Exists(Served)) return [];
        var lines = File.ReadAllLines(Served);
        var result = new List<ServedQuery>(lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            try { result.Add(Parse(JsonNode.Parse(lines[i]))); }
            catch (Exception e) when (IsParseFailure(e))
            {
                if (i == lines.Length - 1) continue;
                throw new InvalidDataException($"{Served}: line {i + 1} is damaged ({e.Message}); repair or remove it", e);
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
            UsageBook book;
            try { book = UsageBook.FromJson(File.ReadAllText(f)); }
            catch (Exception e) when (IsParseFailure(e)) { throw new InvalidDataException($"{f}: not a usage book ({e.Message})", e); }
            if (book.ModelId != ModelId || book.Domain != Domain || book.Epoch != epoch)
                throw new InvalidDataException($"{f} is a usage book of another model, ledger or epoch");
            books[epoch] = book;
        }
        return books;
    }

    /// <summary>The usage book for <paramref name="epoch"/>: every served receipt not in a committed book.</summary>
    public UsageBook PendingBook(long epoch)
    {
        if (File.Exists(BookPath(epoch))) throw new ProtocolException(ProtocolErrorCode.UsageAlreadyCommitted, $"a usage book for epoch {epoch} is already stored in {Directory}");
        var committed = CommittedBooks().Values.SelectMany(b => b.Receipts).Select(r => Hex.Of(r.Receipt.Digest(Domain))).ToHashSet(StringComparer.Ordinal);
        var book = new UsageBook(Domain, ModelId, epoch);
        foreach (var q in ReadServed())
            if (!committed.Contains(Hex.Of(q.Receipt.Receipt.Digest(Domain)))) book.Add(q.Receipt, q.Permit);
        return book;
    }

    /// <summary>
    /// Commits the pending book: stores it as <c>usage-EPOCH.json</c> (atomically) and then calls
    /// <paramref name="submit"/>; when the submission is rejected the stored book is removed again.
    /// </summary>
    public TResult Commit<TResult>(UsageBook book, Func<UsageBook, TResult> submit)
    {
        ArgumentNullException.ThrowIfNull(book);
        ArgumentNullException.ThrowIfNull(submit);
        if (book.ModelId != ModelId || book.Domain != Domain) throw new ArgumentException("the book is for another model or ledger", nameof(book));
        var json = book.ToJson();
        string path = BookPath(book.Epoch);
        if (File.Exists(path)) throw new ProtocolException(ProtocolErrorCode.UsageAlreadyCommitted, $"a usage book for epoch {book.Epoch} is already stored in {Directory}");
        Oml.Models.IO.AtomicFile.WriteText(path, json, overwrite: false);
        try { return submit(book); }
        catch
        {
            File.Delete(path);
            throw;
        }
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
