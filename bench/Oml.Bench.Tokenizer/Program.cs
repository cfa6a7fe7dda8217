using System.Diagnostics;
using System.Globalization;
using System.Text;
using Oml.Models.Tokenizers;

// Tokenizer benchmark: encode throughput (MB/s of UTF-8 input) of tokenizer.json tokenizers on English text built
// from /usr/share/common-licenses/* and /usr/share/doc/*/copyright, repeated up to --mb megabytes.
//
//   dotnet run -c Release --project bench/Oml.Bench.Tokenizer -- [--dir artifacts/tokenizers] [--names llama2,llama3,qwen3]
//       [--mb 20] [--rounds 3] [--write-corpus FILE] [--corpus FILE] [--peer PYTHON]
//
// --write-corpus saves the documents as a JSON array (to carry to another machine); --corpus reads them instead of
// building them. --peer runs bench/tokenizer_peer.py (Hugging Face tokenizers) with that Python on the same documents;
// the tokenizers are then read with Tokenizer.FromFile(tokenizer.json), the exact pipeline the peer runs, and the token
// counts of both sides are printed too.
//
// Each document (one file) is encoded as one text, one thread ("single"), then all documents through EncodeBatch on
// every core ("batch"). The first round also fills the word cache; the best round is reported.

var opts = new Dictionary<string, string>();
for (var i = 0; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
string Get(string key, string dflt) => opts.TryGetValue(key, out var v) ? v : dflt;

var dir = Get("dir", FindTokenizers());
var names = Get("names", "llama2,llama3,qwen3").Split(',', StringSplitOptions.RemoveEmptyEntries);
var targetBytes = (long)(double.Parse(Get("mb", "20"), CultureInfo.InvariantCulture) * 1024 * 1024);
var rounds = int.Parse(Get("rounds", "3"), CultureInfo.InvariantCulture);

var docs = opts.TryGetValue("corpus", out var corpusPath)
    ? System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(corpusPath), CorpusJson.Default.ListString)!
    : BuildCorpus(targetBytes);
if (opts.TryGetValue("write-corpus", out var writePath))
    File.WriteAllText(writePath, System.Text.Json.JsonSerializer.Serialize(docs, CorpusJson.Default.ListString));
opts.TryGetValue("peer", out var peerPython);
var peerResults = new Dictionary<string, (long Tokens, double Single, double Cold, double Batch)>();
string? peerVersion = null;
if (peerPython != null)
{
    var corpusFile = corpusPath ?? writePath ?? Path.Combine(Path.GetTempPath(), $"oml-corpus-{Environment.ProcessId}.json");
    if (corpusPath == null && writePath == null)
        File.WriteAllText(corpusFile, System.Text.Json.JsonSerializer.Serialize(docs, CorpusJson.Default.ListString));
    var psi = new ProcessStartInfo(peerPython) { RedirectStandardOutput = true, UseShellExecute = false };
    foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "tokenizer_peer.py"), "--corpus", corpusFile, "--dir", dir, "--names", string.Join(",", names), "--rounds", rounds.ToString(CultureInfo.InvariantCulture) })
        psi.ArgumentList.Add(a);
    using var proc = Process.Start(psi)!;
    var json = proc.StandardOutput.ReadToEnd();
    proc.WaitForExit();
    if (proc.ExitCode != 0) throw new InvalidOperationException($"the tokenizers peer failed (exit {proc.ExitCode})");
    using var doc = System.Text.Json.JsonDocument.Parse(json);
    peerVersion = doc.RootElement.GetProperty("tokenizers").GetString();
    foreach (var r in doc.RootElement.GetProperty("results").EnumerateObject())
        peerResults[r.Name] = (r.Value.GetProperty("tokens").GetInt64(), r.Value.GetProperty("single").GetDouble(),
            r.Value.GetProperty("cold").GetDouble(), r.Value.GetProperty("batch").GetDouble());
}
var totalBytes = docs.Sum(d => (long)Encoding.UTF8.GetByteCount(d));
Console.WriteLine($"corpus: {docs.Count} documents, {totalBytes / 1e6:F1} MB UTF-8; {Environment.ProcessorCount} cores");
Console.WriteLine($"{"tokenizer",-10} {"load s",7} {"tokens",12} {"single MB/s",12} {"cold MB/s",10} {"batch MB/s",11}");

foreach (var name in names)
{
    var sw = Stopwatch.StartNew();
    var tok = peerPython != null ? Tokenizer.FromFile(Path.Combine(dir, name, "tokenizer.json")) : Tokenizer.FromFolder(Path.Combine(dir, name));
    var load = sw.Elapsed.TotalSeconds;
    double best = 0, cold = 0;
    long tokens = 0;
    for (var r = 0; r < rounds; r++)
    {
        sw.Restart();
        long n = 0;
        foreach (var d in docs) n += tok.Encode(d).Length;
        var mbs = totalBytes / 1e6 / sw.Elapsed.TotalSeconds;
        if (r == 0) cold = mbs;
        best = Math.Max(best, mbs);
        tokens = n;
    }
    double bestBatch = 0;
    for (var r = 0; r < rounds; r++)
    {
        sw.Restart();
        tok.EncodeBatch(docs);
        bestBatch = Math.Max(bestBatch, totalBytes / 1e6 / sw.Elapsed.TotalSeconds);
    }
    Console.WriteLine($"{name,-10} {load,7:F2} {tokens,12} {best,12:F1} {cold,10:F1} {bestBatch,11:F1}");
    if (peerResults.TryGetValue(name, out var p))
    {
        Console.WriteLine($"{"  HF " + peerVersion,-18} {p.Tokens,12} {p.Single,12:F1} {p.Cold,10:F1} {p.Batch,11:F1}" +
                          $"   ratio single {best / p.Single:F2}, cold {cold / p.Cold:F2}, batch {bestBatch / p.Batch:F2}" +
                          (p.Tokens == tokens ? "; same token count" : $"; token counts differ by {tokens - p.Tokens}"));
    }
}

static List<string> BuildCorpus(long targetBytes)
{
    var files = new List<string>();
    if (Directory.Exists("/usr/share/common-licenses")) files.AddRange(Directory.GetFiles("/usr/share/common-licenses").Order(StringComparer.Ordinal));
    if (Directory.Exists("/usr/share/doc"))
        foreach (var d in Directory.GetDirectories("/usr/share/doc").Order(StringComparer.Ordinal))
        {
            var f = Path.Combine(d, "copyright");
            if (File.Exists(f)) files.Add(f);
        }
    var texts = new List<string>();
    foreach (var f in files)
    {
        try
        {
            var t = File.ReadAllText(f);
            if (t.Length > 0) texts.Add(t);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
    if (texts.Count == 0) throw new InvalidOperationException("no text found under /usr/share/common-licenses or /usr/share/doc");
    var docs = new List<string>();
    long bytes = 0;
    while (bytes < targetBytes)
        foreach (var t in texts)
        {
            docs.Add(t);
            bytes += Encoding.UTF8.GetByteCount(t);
            if (bytes >= targetBytes) break;
        }
    return docs;
}

static string FindTokenizers()
{
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return Path.Combine(d.FullName, "artifacts", "tokenizers");
    return Path.Combine("artifacts", "tokenizers");
}

[System.Text.Json.Serialization.JsonSerializable(typeof(List<string>))]
internal sealed partial class CorpusJson : System.Text.Json.Serialization.JsonSerializerContext;
