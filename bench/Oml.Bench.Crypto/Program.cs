using System.Diagnostics;
using Oml.Protocol.Crypto;

// Usage: dotnet run -c Release --project bench/Oml.Bench.Crypto [-- seconds-per-case]
// Every case runs on the calling thread only (one core). Each reports operations (or bytes) per second of this process's
// CPU time, which holds up on a shared, oversubscribed machine, and per second of wall time beside it.
double seconds = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 2.0;

Console.WriteLine($"oml crypto benchmark: .NET {Environment.Version}, {Environment.ProcessorCount} logical CPUs, {RuntimeInfoOs()}; {seconds:0.#} s per case, one thread");

using var key = PrivateKey.FromBytes(Keccak256.Hash("cow"u8));
var digests = Enumerable.Range(0, 256).Select(i => Keccak256.Hash(BitConverter.GetBytes(i))).ToArray();
var signatures = digests.Select(d => key.SignDigest(d)).ToArray();
var expected = key.Address;

Run("secp256k1 sign (RFC 6979, low-s)", "signs/s", i => key.SignDigest(digests[i & 255]));
Run("secp256k1 recover (address)", "recovers/s", i =>
{
    if (Secp256k1.Recover(digests[i & 255], signatures[i & 255]) != expected) throw new InvalidOperationException("wrong signer");
});
Run("secp256k1 public key from private key", "keys/s", i =>
{
    var d = digests[i & 255];
    using var k = PrivateKey.FromBytes(d);
    _ = k.PublicKey;
});

foreach (var size in new[] { 32, 1024, 1 << 20 })
{
    var data = new byte[size];
    new Random(1).NextBytes(data);
    var dest = new byte[32];
    RunBytes($"keccak256 {size} B", size, () => Keccak256.Hash(data, dest));
}

var mail = Eip712TypedData.FromJson("""
    {"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
     "Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],
     "Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},
     "primaryType":"Mail",
     "domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
     "message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}
    """);
Run("EIP-712 digest (Mail example)", "digests/s", _ => Eip712.Digest(mail));
var mailSig = Eip712.Sign(mail, key);
Run("EIP-712 recover signer (Mail example)", "recovers/s", _ => Eip712.RecoverSigner(mail, mailSig));

var keystore = Keystore.Encrypt(key, "bench", Keystore.DefaultIterations);
Run($"keystore decrypt (PBKDF2, {Keystore.DefaultIterations} iterations)", "decrypts/s", _ => Keystore.Decrypt(keystore, "bench").Dispose(), minIterations: 3);
Run("scrypt N=262144 r=1 p=8 (the spec's scrypt vector cost)", "derivations/s", _ => Scrypt.DeriveKey("pw"u8, "salt"u8, 262144, 1, 8, 32), minIterations: 2);

void Run(string name, string unit, Action<int> op, int minIterations = 10)
{
    for (int i = 0; i < Math.Min(minIterations, 50); i++) op(i); // warm-up (JIT tiers, tables)
    var cpu0 = CpuSeconds();
    var sw = Stopwatch.StartNew();
    int n = 0;
    while (sw.Elapsed.TotalSeconds < seconds || n < minIterations) op(n++);
    sw.Stop();
    var cpu = CpuSeconds() - cpu0;
    Console.WriteLine($"{name,-58} {n / cpu,12:N0} {unit} per CPU-s  ({1e6 * cpu / n:N1} µs CPU each; {n / sw.Elapsed.TotalSeconds:N0}/s wall)");
}

void RunBytes(string name, int size, Action op)
{
    for (int i = 0; i < 20; i++) op();
    var cpu0 = CpuSeconds();
    var sw = Stopwatch.StartNew();
    long n = 0;
    while (sw.Elapsed.TotalSeconds < seconds) { op(); n++; }
    sw.Stop();
    var cpu = CpuSeconds() - cpu0;
    Console.WriteLine($"{name,-58} {n * (double)size / cpu / 1e6,12:N1} MB/s per CPU-s  ({n / cpu:N0} hashes per CPU-s; {n * (double)size / sw.Elapsed.TotalSeconds / 1e6:N1} MB/s wall)");
}

static double CpuSeconds() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

static string RuntimeInfoOs() => System.Runtime.InteropServices.RuntimeInformation.OSDescription;
