using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Oml.Explorer;
using Oml.Explorer.State;
using Oml.Explorer.Web;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

// Usage: Oml.Bench.Explorer [--hosts 1000] [--events 10000] [--rounds 20]
// Builds a ledger of --hosts licensed hosts and about --events events with the protocol engine (every request
// signed and checked), then times: the replay into a snapshot, rendering the hosts page (and the others) to HTML,
// and a GET of the hosts page through Kestrel. Peer in the same run: System.Text.Json serialising the same host
// view models (what a JSON API would send for that page).
int hosts = Arg("--hosts", 1000), events = Arg("--events", 10_000), rounds = Arg("--rounds", 20);

var clock = new Clock(1_800_000_000);
using var ledger = new InMemoryLedger();
using var treasury = PrivateKey.Generate();
var engine = ProtocolEngine.Initialize(ledger, treasury, clock: clock);
var d = engine.Domain;
var build = Stopwatch.StartNew();
var owners = Enumerable.Range(0, 10).Select(_ => PrivateKey.Generate()).ToList();
var users = Enumerable.Range(0, 20).Select(_ => PrivateKey.Generate()).ToList();
var hostKeys = Enumerable.Range(0, hosts).Select(_ => PrivateKey.Generate()).ToList();
foreach (var k in owners.Concat(users).Concat(hostKeys)) engine.Mint(treasury, Hex.Of(k.Address), 1_000_000);
for (int m = 0; m < owners.Count; m++) engine.RegisterModel(owners[m], $"model-{m}", $"sha256:m{m}", "{}", "OML-1.0", 10, 1_000);
for (int m = 1; m < owners.Count; m++) engine.DeclareParent(owners[m], owners[(m - 1) / 2], $"model-{m}", $"model-{(m - 1) / 2}", 500 + 100 * m);
for (int h = 0; h < hosts; h++)
{
    int m = h % owners.Count;
    string a = Hex.Of(hostKeys[h].Address);
    engine.ApplyLicense(hostKeys[h], $"model-{m}", 2_000, $"https://host-{h}.example/v1");
    engine.DeliverCopy(owners[m], $"model-{m}", a, "0x" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(h))), 64, $"sha256:copy-{h}", "tardos:0.00083");
    engine.AcknowledgeCopy(hostKeys[h], $"model-{m}", $"sha256:copy-{h}");
}
// Escrow is per (user, host): host h serves user h mod 20, which escrows half its funds spread over its hosts.
for (int h = 0; h < hosts; h++)
    engine.Deposit(users[h % users.Count], Hex.Of(hostKeys[h].Address), 500_000 / Math.Max(1, (hosts + users.Count - 1 - h % users.Count) / users.Count));
clock.Now += 30 * 86_400;
long nonce = 1;
for (int epoch = 0; ledger.Height < events; epoch++)
    for (int h = 0; h < hosts && ledger.Height < events; h++)
    {
        int m = h % owners.Count;
        var book = new UsageBook(d, $"model-{m}", epoch);
        var user = users[h % users.Count];
        long n = nonce++;
        var permit = Permit.Create(user.Address, $"model-{m}", hostKeys[h].Address, $"q{n}", n, engine.Now + 86_400, 10).Sign(d, user);
        book.Add(Receipt.Create(hostKeys[h].Address, $"model-{m}", permit.Permit.Hash(d), $"q{n}", "a", engine.Now).Sign(d, hostKeys[h]), permit);
        engine.CommitUsage(hostKeys[h], book);
        if (epoch % 2 == 1 && ledger.Height < events) engine.Withdraw(hostKeys[h]);
    }
build.Stop();
Console.WriteLine($"ledger: {ledger.Height} events, {hosts} hosts, {owners.Count} models, built in {build.Elapsed.TotalSeconds:F1} s");

var replay = Stopwatch.StartNew();
await using var source = new LedgerStateSource(ledger, "bench", TimeSpan.Zero);
replay.Stop();
var s = source.Current;
Console.WriteLine($"replay + snapshot: {replay.Elapsed.TotalMilliseconds:F0} ms ({s.Hosts.Count} hosts, {s.Accounts.Count} accounts)");
long now = clock.Now;

var results = new List<(string What, double Median, double Min, double Max, long Bytes)>();
void Time(string what, Func<string> f)
{
    f(); // warm-up (JIT)
    var t = new List<double>();
    long bytes = 0;
    for (int i = 0; i < rounds; i++)
    {
        var sw = Stopwatch.StartNew();
        bytes = f().Length;
        t.Add(sw.Elapsed.TotalMilliseconds);
    }
    t.Sort();
    results.Add((what, t[t.Count / 2], t[0], t[^1], bytes));
}
var cold = Stopwatch.StartNew();
var first = Pages.Hosts(s, now);
cold.Stop();
Time("render /hosts", () => Pages.Hosts(s, now));
Time("peer: JSON of the same hosts", () => JsonSerializer.Serialize(s.Hosts));
Time("map state to snapshot", () => { var m = StateMapper.Map(engine.State, new EventHistory(), "bench"); return m.Hosts.Count.ToString(CultureInfo.InvariantCulture); });
Time("render /accounts", () => Pages.Accounts(s, now));
Time("render /models", () => Pages.Models(s, now));
Time("render / (overview)", () => Pages.Overview(s, now));
Time($"render /hosts/HOST ({s.Hosts[0].Usage.Count} epochs)", () => Pages.Host(s, s.Hosts[0], now));
await using (var server = await ExplorerServer.StartAsync(new ExplorerOptions(source, null, 0, Clock: clock)))
{
    using var http = new HttpClient { BaseAddress = new Uri(server.Url) };
    Time("GET /hosts through Kestrel", () => http.GetStringAsync("/hosts").GetAwaiter().GetResult());
}
Console.WriteLine($"first render of /hosts (cold, includes JIT): {cold.Elapsed.TotalMilliseconds:F1} ms, {first.Length / 1024.0:F0} KiB");
Console.WriteLine($"| what | median ms | min | max | size KiB |");
Console.WriteLine($"|---|---:|---:|---:|---:|");
foreach (var r in results) Console.WriteLine($"| {r.What} | {r.Median:F1} | {r.Min:F1} | {r.Max:F1} | {r.Bytes / 1024.0:F0} |");
var render = results[0].Median;
var json = results[1].Median;
Console.WriteLine($"ratio render /hosts : JSON peer = {render / json:F2}");
foreach (var k in owners.Concat(users).Concat(hostKeys)) k.Dispose();

int Arg(string name, int fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}

sealed class Clock(long start) : TimeProvider
{
    public long Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeSeconds(Now);
}
