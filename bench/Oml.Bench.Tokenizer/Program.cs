using System.Diagnostics;
using System.Globalization;
using System.Text;
using Oml.Bench.Tokenizer;
using Oml.Models.Tokenizers;

// Tokenizer benchmark: encode throughput (MB/s of UTF-8 input) of tokenizer.json tokenizers on English text built
// from /usr/share/common-licenses/* and /usr/share/doc/*/copyright, repeated up to --mb megabytes.
//
//   dotnet run -c Release --project bench/Oml.Bench.Tokenizer -- [--dir artifacts/tokenizers] [--names llama2,llama3,qwen3]
//       [--mb 20] [--rounds 3] [--write-corpus FILE] [--corpus FILE] [--peer PYTHON] [--ml on|off] [--batch on|off]
//       [--split documents|lines]
//
// --write-corpus saves the documents as a JSON array (to carry to another machine); --corpus reads them instead of
// building them. --peer runs bench/tokenizer_peer.py (Hugging Face tokenizers) with that Python on the same documents.
// --ml on (the default) builds Microsoft.ML.Tokenizers' BpeTokenizer from the same tokenizer.json (MlPeer.cs) and
// times it in the same process, rounds interleaved with ours, and checks that both give identical ids for every
// document. --split lines encodes each non-empty line as its own text (short texts: per-call overhead counts more).
// Beside a peer our side reads the plain tokenizer.json (Tokenizer.FromFile), the exact pipeline the peer runs.
//
// Each document (one file) is encoded as one text, one thread ("single": the median of --rounds warm rounds), after
// one cold round ("cold": our word cache empty); then all documents through EncodeBatch on every core ("batch", best).

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
if (Get("split", "documents") == "lines")
    docs = docs.SelectMany(d => d.Split('\n')).Where(l => l.Length > 0).ToList();
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
var compareMl = Get("ml", "on") != "off";
Console.WriteLine($"corpus: {docs.Count} documents, {totalBytes / 1e6:F1} MB UTF-8; {Environment.ProcessorCount} cores; load average {LoadAverage()}");
Console.WriteLine($"{"tokenizer",-10} {"load s",7} {"tokens",12} {"single MB/s",12} {"cold MB/s",10} {"batch MB/s",11}");

foreach (var name in names)
{
    var sw = Stopwatch.StartNew();
    var json = Path.Combine(dir, name, "tokenizer.json");
    // Beside a peer, read the plain tokenizer.json: the exact pipeline the peer runs.
    var tok = peerPython != null || compareMl ? Tokenizer.FromFile(json) : Tokenizer.FromFolder(Path.Combine(dir, name));
    var load = sw.Elapsed.TotalSeconds;
    // The peers in this process: Microsoft.ML.Tokenizers' BpeTokenizer, and its TiktokenTokenizer where the vocabulary
    // allows it (byte-level, ranks = ids, no normalizer).
    var peers = new List<(string Label, Microsoft.ML.Tokenizers.Tokenizer Tok, double Load)>();
    if (compareMl)
    {
        sw.Restart();
        var bpe = MlPeer.Load(json, out var why);
        if (bpe != null) peers.Add(("ML BpeTokenizer", bpe, sw.Elapsed.TotalSeconds));
        else Console.WriteLine($"  ML.Tokenizers BpeTokenizer: cannot load {name} ({why})");
        sw.Restart();
        var tt = MlPeer.LoadTiktoken(json, out why);
        if (tt != null) peers.Add(("ML Tiktoken", tt, sw.Elapsed.TotalSeconds));
        else Console.WriteLine($"  ML.Tokenizers TiktokenTokenizer: not for {name} ({why})");
    }

    // Cold round of each (ours fills its word cache here), keeping our ids to compare with each peer's ids.
    var ourIds = new int[docs.Count][];
    sw.Restart();
    for (var i = 0; i < docs.Count; i++) ourIds[i] = tok.Encode(docs[i]);
    var cold = totalBytes / 1e6 / sw.Elapsed.TotalSeconds;
    var tokens = ourIds.Sum(x => (long)x.Length);
    var peerCold = new double[peers.Count];
    var peerTokens = new long[peers.Count];
    var peerCheck = new string[peers.Count];
    for (var j = 0; j < peers.Count; j++)
    {
        var ml = peers[j].Tok;
        var mlIds = new IReadOnlyList<int>[docs.Count];
        sw.Restart();
        for (var i = 0; i < docs.Count; i++) mlIds[i] = ml.EncodeToIds(docs[i]);
        peerCold[j] = totalBytes / 1e6 / sw.Elapsed.TotalSeconds;
        int mismatchedDocs = 0, firstMismatch = -1;
        for (var i = 0; i < docs.Count; i++)
        {
            peerTokens[j] += mlIds[i].Count;
            if (ourIds[i].AsSpan().SequenceEqual(mlIds[i] as int[] ?? mlIds[i].ToArray())) continue;
            mismatchedDocs++;
            if (firstMismatch >= 0) continue;
            firstMismatch = i;
            var a = ourIds[i];
            var b = mlIds[i].ToArray();
            var k = 0;
            while (k < a.Length && k < b.Length && a[k] == b[k]) k++;
            var from = Math.Max(0, k - 3);
            string Show(int[] ids) => string.Join(" ", ids.Skip(from).Take(8).Select(id => $"{id}:{JsonEncode(tok.IdToToken(id))}"));
            Console.WriteLine($"  {peers[j].Label}: first difference in document {i} at token {k}: oml {Show(a)} | peer {Show(b)}");
        }
        peerCheck[j] = mismatchedDocs == 0 ? $"ids identical in all {docs.Count} documents"
                                           : $"ids DIFFER in {mismatchedDocs} of {docs.Count} documents (first: document {firstMismatch})";
    }
    ourIds = null;

    // Warm rounds, interleaved (ours, peer 1, peer 2, ours, ...) so that changes in machine load hit every side alike.
    var ours = new List<double>();
    var theirs = peers.Select(_ => new List<double>()).ToArray();
    for (var r = 0; r < rounds; r++)
    {
        sw.Restart();
        foreach (var d in docs) tok.Encode(d);
        ours.Add(totalBytes / 1e6 / sw.Elapsed.TotalSeconds);
        for (var j = 0; j < peers.Count; j++)
        {
            sw.Restart();
            foreach (var d in docs) peers[j].Tok.EncodeToIds(d);
            theirs[j].Add(totalBytes / 1e6 / sw.Elapsed.TotalSeconds);
        }
    }
    var best = Median(ours);
    double bestBatch = 0;
    if (Get("batch", "on") != "off")
        for (var r = 0; r < rounds; r++)
        {
            sw.Restart();
            tok.EncodeBatch(docs);
            bestBatch = Math.Max(bestBatch, totalBytes / 1e6 / sw.Elapsed.TotalSeconds);
        }
    Console.WriteLine($"{name,-10} {load,7:F2} {tokens,12} {best,12:F1} {cold,10:F1} {bestBatch,11:F1}   single rounds: {Rounds(ours)}");
    for (var j = 0; j < peers.Count; j++)
    {
        Console.WriteLine($"  {peers[j].Label,-18} {peers[j].Load,7:F2} {peerTokens[j],12} {Median(theirs[j]),12:F1} {peerCold[j],10:F1} {"",11}   single rounds: {Rounds(theirs[j])}");
        var ratios = ours.Zip(theirs[j], (x, y) => x / y).ToList();
        Console.WriteLine($"    ratio oml/{peers[j].Label} single (median of interleaved pairs) {Median(ratios):F2} [{Rounds(ratios, "F2")}], cold {cold / peerCold[j]:F2}; {peerCheck[j]}");
    }
    if (peerResults.TryGetValue(name, out var p))
    {
        Console.WriteLine($"{"  HF " + peerVersion,-18} {p.Tokens,12} {p.Single,12:F1} {p.Cold,10:F1} {p.Batch,11:F1}" +
                          $"   ratio single {best / p.Single:F2}, cold {cold / p.Cold:F2}, batch {bestBatch / p.Batch:F2}" +
                          (p.Tokens == tokens ? "; same token count" : $"; token counts differ by {tokens - p.Tokens}"));
    }
}
Console.WriteLine($"load average at the end: {LoadAverage()}");

static string JsonEncode(string? s) => System.Text.Json.JsonSerializer.Serialize(s ?? "");

static double Median(List<double> xs)
{
    if (xs.Count == 0) return 0;
    var s = xs.Order().ToList();
    return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
}

static string Rounds(List<double> xs, string format = "F1") => string.Join(" ", xs.Select(x => x.ToString(format, CultureInfo.InvariantCulture)));

static string LoadAverage()
{
    try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
    catch (IOException) { return "n/a"; }
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
