using System.Diagnostics;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using Oml.Fingerprinting;
using Oml.Protocol.Access;
using Oml.Protocol.Chain;
using Oml.Protocol.Crypto;

// Usage: dotnet run -c Release --project bench/Oml.Bench.Chain [-- deposits-for-throughput permits-per-batch]
//        dotnet run -c Release --project bench/Oml.Bench.Chain -- backends [actions permits-per-batch rounds]
// The `backends` mode times the same actions through IProtocolBackend on the embedded ledger (SQLite file, fsync'd; and
// in memory) and on anvil (ChainBackend) one after the other in this process (BackendBench.cs).
// Starts its own anvil (automine, free loopback port), deploys the contracts, runs every protocol action once and
// prints its gas as a Markdown table, then measures sequential actions per second (each one simulated, signed, sent
// and waited for, as the client always does) and settled permits per second in usage batches. Stops the node.
if (args.Length > 0 && args[0] == "backends")
{
    await Oml.Bench.Chain.BackendBench.MainAsync(args[1..]);
    return;
}
int deposits = args.Length > 0 ? int.Parse(args[0]) : 200;
int batch = args.Length > 1 ? int.Parse(args[1]) : 100;

await using var node = await AnvilNode.StartAsync();
static string Key(string role) => "0x" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("oml-bench/" + role)));
static string Digest(string s) => "0x" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(s)));
string treasuryAddress;
using (var k = PrivateKey.FromHex(AnvilNode.DevKey)) treasuryAddress = k.Address.ToString();

var gas = new List<(string Action, string Note, BigInteger Gas)>();
var sw = Stopwatch.StartNew();
var d = await OmlChainClient.DeployAsync(node.RpcUrl, node.ChainId, AnvilNode.DevKey, treasuryAddress, registrationDelaySeconds: 0);
var treasury = new OmlChainClient(node.RpcUrl, d, AnvilNode.DevKey);
async Task<OmlChainClient> Party(string role)
{
    var c = new OmlChainClient(node.RpcUrl, d, Key(role));
    await node.FundAsync(c.Address, BigInteger.Pow(10, 22));
    await treasury.MintAsync(c.Address, 1_000_000_000);
    return c;
}
void Note(string action, ChainResult r, string note = "") => gas.Add((action, note, r.GasUsed));

var owner = await Party("owner");
var parentOwner = await Party("parent-owner");
var host = await Party("host");
var user = await Party("user");
var prover = await Party("prover");
using var userKey = PrivateKey.FromHex(Key("user"));
using var hostKey = PrivateKey.FromHex(Key("host"));
using var parentKey = PrivateKey.FromHex(Key("parent-owner"));

Note("approve (token)", await owner.ApproveAsync(1_000_000_000));
foreach (var c in new[] { parentOwner, host, user, prover }) await c.ApproveAsync(1_000_000_000);
// Registration's two steps, one at a time (RegisterModelAsync does both and returns the reveal).
var regSalt = owner.RegistrationSalt("acme/llama", Convert.FromHexString(Digest("w")[2..]), Convert.FromHexString(Digest("pool")[2..]), 1024);
var regCommitment = await owner.RegistrationCommitmentAsync(owner.Address, "acme/llama", Convert.FromHexString(Digest("w")[2..]),
    Convert.FromHexString(Digest("pool")[2..]), 1024, regSalt);
Note("commitRegistration", await owner.CommitRegistrationAsync(regCommitment), "first step of a registration");
Note("registerModel", await owner.RevealRegistrationAsync("acme/llama", Digest("w"), Digest("pool"), 1024, 10, 0, regSalt, "{\"arch\":\"llama\"}", "terms v1"),
    "reveals the commitment");
await parentOwner.RegisterModelAsync("base", Digest("b"), null, 0, 1, 0);
Note("addVersion", await owner.AddVersionAsync("acme/llama", Digest("w2"), Digest("pool2"), 1024, "v2"));
var consent = OmlChainClient.SignParentConsent(d.Domain, parentKey, "acme/llama", "base", 2000, owner.Address, 0, long.MaxValue / 4);
Note("declareParent", await owner.DeclareParentAsync("acme/llama", "base", 2000, long.MaxValue / 4, consent), "with the parent owner's EIP-712 consent");
Note("applyLicense", await host.ApplyLicenseAsync("acme/llama", 10_000, "https://host.example/v1"));
var fps = Enumerable.Range(0, 512).Select(i => new Fingerprint(i, $"key {i}", [i + 1], [new FingerprintResponse($"answer {i}", [i + 2])],
    new StrategyInfo("bench"), SHA256.HashData(BitConverter.GetBytes(i)))).ToList();
var tree = new MerkleTree(fps.Select(FingerprintLeaf.Encode));
Note("deliverCopy", await owner.DeliverCopyAsync("acme/llama", host.Address, "0x" + tree.RootHex, fps.Count, Digest("copy"), "tardos:0.000833"));
Note("acknowledgeCopy", await host.AcknowledgeCopyAsync("acme/llama", Digest("copy")));
Note("deposit", await user.DepositAsync(host.Address, 100_000_000), "first deposit for this host");
Note("deposit", await user.DepositAsync(host.Address, 1), "top-up");
long nonce = 0;
SignedPermit Permit() => Oml.Protocol.Access.Permit.Create(userKey.Address, "acme/llama", hostKey.Address, $"q{nonce}", nonce++, long.MaxValue / 2, 10).Sign(d.Domain, userKey);
long epoch = 0;
async Task<ChainResult> Commit(int permits)
{
    var r = await host.CommitUsageAsync("acme/llama", epoch, Digest($"root{epoch}"), Math.Max(permits, 1), Enumerable.Range(0, permits).Select(_ => Permit()).ToList());
    await node.IncreaseTimeAsync(86_400);
    epoch++;
    return r;
}
foreach (var n in new[] { 0, 1, 10, 100 }) Note("commitUsage", await Commit(n), $"{n} permits (a parent, two owners)");
Note("withdraw", await host.WithdrawAsync());

// claims: a revealed claim of 1 and of 5 items, settled by slashing; a rebutted one; an unrevealed one refunded
async Task<(long Id, byte[] Salt, List<EvidenceTuple> Items)> Claim(int[] indices, string? permitHash = null)
{
    var items = indices.Select(i =>
    {
        var f = fps[i];
        var receipt = Receipt.Create(hostKey.Address, "acme/llama", permitHash, f.Key, f.Response.Text, 1).Sign(d.Domain, hostKey);
        return OmlChainClient.Evidence(RevealedFingerprint.From(f, tree.Proof(i)), f.Response.Text, receipt);
    }).ToList();
    var salt = RandomNumberGenerator.GetBytes(32);
    var commitment = "0x" + Convert.ToHexStringLower(await prover.CommitmentAsync("acme/llama", host.Address, await prover.EvidenceHashAsync(items), salt));
    var r = await prover.CommitClaimAsync(commitment, 100);
    Note("commitClaim", r);
    return ((long)r.Single("ClaimCommitted").Int("claimId"), salt, items);
}
var one = await Claim([1]);
var five = await Claim([2, 3, 4, 5, 6]);
await node.IncreaseTimeAsync(2);
Note("revealClaim", await prover.RevealClaimAsync(one.Id, "acme/llama", host.Address, one.Salt, one.Items), "1 item, 512-leaf subset");
Note("revealClaim", await prover.RevealClaimAsync(five.Id, "acme/llama", host.Address, five.Salt, five.Items), "5 items");
await node.IncreaseTimeAsync(86_401);
Note("settle", await user.SettleAsync(one.Id), "slash");
await user.SettleAsync(five.Id);
var unrevealed = await Claim([7]);
await node.IncreaseTimeAsync(3601);
Note("settle", await user.SettleAsync(unrevealed.Id), "unrevealed: bond refunded");
// rebuttal of one item
var f8 = fps[8];
var p8 = Oml.Protocol.Access.Permit.Create(userKey.Address, "acme/llama", hostKey.Address, f8.Key, 999_999, long.MaxValue / 2, 10).Sign(d.Domain, userKey);
var rc8 = Receipt.Create(hostKey.Address, "acme/llama", p8.Permit.Hash(d.Domain), f8.Key, f8.Response.Text, 1).Sign(d.Domain, hostKey);
var book = new UsageBook(d.Domain, "acme/llama", epoch);
book.Add(rc8, p8);
for (int i = 0; i < 63; i++) book.Add(Receipt.Create(hostKey.Address, "acme/llama", null, $"other {i}", "x", 1).Sign(d.Domain, hostKey), null);
var salt8 = RandomNumberGenerator.GetBytes(32);
var items8 = new List<EvidenceTuple> { OmlChainClient.Evidence(RevealedFingerprint.From(f8, tree.Proof(8)), f8.Response.Text, rc8) };
var c8 = await prover.CommitClaimAsync("0x" + Convert.ToHexStringLower(await prover.CommitmentAsync("acme/llama", host.Address, await prover.EvidenceHashAsync(items8), salt8)), 100);
long id8 = (long)c8.Single("ClaimCommitted").Int("claimId");
await node.IncreaseTimeAsync(2);
await prover.RevealClaimAsync(id8, "acme/llama", host.Address, salt8, items8);
await host.CommitUsageAsync(book);
var proof8 = book.ProofFor(rc8);
Note("rebut", await host.RebutAsync(id8, [new RebuttalTuple { User = user.Address, Nonce = 999_999, Expiry = long.MaxValue / 2, Fee = 10, Epoch = epoch,
    ReceiptIndex = proof8.LeafIndex, Proof = [.. proof8.Steps.Select(s => s.Sibling.AsSpan().ToArray())] }]), "1 item, 64-receipt usage root");
Note("fileAccusation", await owner.FileAccusationAsync("acme/llama", host.Address, Digest("report")));
// governance
await owner.ApproveAsync(1_000_000_000, d.Governance);
Note("stake", await owner.StakeAsync(1000));
Note("propose", await owner.ProposeAsync([(ChainParam.MinBond, 200)], "raise the bond"), "one change");
Note("vote", await owner.VoteAsync(0, true));
await node.IncreaseTimeAsync(259_201);
Note("execute", await user.ExecuteAsync(0), "one change");
Note("unstake", await owner.UnstakeAsync(1000));
Note("requestRefund", await user.RequestRefundAsync(host.Address));
await node.IncreaseTimeAsync(2 * 86_400);
Note("refund", await user.RefundAsync(host.Address));
// the end of a licence (a second host, so that the first one keeps serving for the throughput runs below)
var leaving = await Party("host2");
await leaving.ApproveAsync(1_000_000_000);
await leaving.ApplyLicenseAsync("acme/llama", 10_000, "https://leaving.example/v1");
var exitAnnounced = await leaving.AnnounceExitAsync("acme/llama");
Note("announceExit", exitAnnounced);
await node.IncreaseTimeAsync(86_400 + 3_600 + 86_400 + 1);  // at most one epoch + the reveal and rebut windows
Note("releaseCollateral", await leaving.ReleaseCollateralAsync("acme/llama"), "no claim ever opened against it");
Note("transferModel", await owner.TransferModelAsync("acme/llama", parentOwner.Address));
Note("acceptModel", await parentOwner.AcceptModelAsync("acme/llama"));

Console.WriteLine($"oml chain benchmark: anvil 1.7.1 (automine, chain {node.ChainId}), solc 0.8.37 (optimizer 200 runs, via-IR), .NET {Environment.Version}, {Environment.ProcessorCount} logical CPUs");
Console.WriteLine();
Console.WriteLine("| action | gas | note |");
Console.WriteLine("|---|---:|---|");
foreach (var (a, note, g) in gas) Console.WriteLine($"| {a} | {g:N0} | {note} |");

await node.IncreaseTimeAsync(86_400);
epoch = (long)await host.CurrentEpochAsync();

// throughput: sequential deposits (each simulated, signed, sent and its receipt awaited)
await user.DepositAsync(host.Address, 1);  // warm-up
var t = Stopwatch.StartNew();
for (int i = 0; i < deposits; i++) await user.DepositAsync(host.Address, 1);
double depositRate = deposits / t.Elapsed.TotalSeconds;
// permits settled per second in batches of `batch`
await user.DepositAsync(host.Address, 100_000_000);
var permitsList = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, batch).Select(_ => Permit()).ToList()).ToList();
t.Restart();
BigInteger batchGas = 0;
foreach (var list in permitsList)
{
    var r = await host.CommitUsageAsync("acme/llama", epoch, Digest($"tp{epoch}"), batch, list);
    batchGas += r.GasUsed;
    if (r.All("PermitSettled").Count() != batch) throw new InvalidOperationException("a permit was skipped");
    await node.IncreaseTimeAsync(86_400);
    epoch++;
}
double permitRate = 5 * batch / t.Elapsed.TotalSeconds;
Console.WriteLine();
Console.WriteLine($"| throughput | value |");
Console.WriteLine("|---|---:|");
Console.WriteLine($"| sequential deposits (simulate + sign + send + receipt), {deposits} | {depositRate:0.0} actions/s |");
Console.WriteLine($"| permits settled in commitUsage batches of {batch} (5 batches, incl. the time jump) | {permitRate:0} permits/s |");
Console.WriteLine($"| gas per settled permit in those batches | {batchGas / (5 * batch):N0} |");
Console.WriteLine($"(total {sw.Elapsed.TotalSeconds:0.0} s)");
