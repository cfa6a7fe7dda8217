using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Oml.Protocol.Chain;

/// <summary>
/// A local anvil node (Foundry's EVM node, from npm <c>@foundry-rs/anvil</c>) started as a child process on a free
/// 127.0.0.1 port and stopped by its process id. Its state can be dumped to a file (atomically) and loaded by a new
/// node, which is how a restart is simulated and survived.
/// </summary>
public sealed class AnvilNode : IAsyncDisposable, IDisposable
{
    /// <summary>The key of anvil's first prefunded account (from its public default mnemonic; never use it for value).</summary>
    public const string DevKey = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private AnvilNode(Process process, int port, long chainId)
    {
        _process = process;
        Port = port;
        ChainId = chainId;
    }

    public int Port { get; }
    public long ChainId { get; }
    public int ProcessId => _process.Id;
    public string RpcUrl => $"http://127.0.0.1:{Port}";
    public bool HasExited => _process.HasExited;

    /// <summary>Finds the anvil binary: <c>OML_ANVIL</c>, then contracts/node_modules above <paramref name="from"/>
    /// (default: the current directory and the application's base directory), then PATH.</summary>
    public static string FindBinary(string? from = null)
    {
        var env = Environment.GetEnvironmentVariable("OML_ANVIL");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : throw new FileNotFoundException($"OML_ANVIL names {env}, which does not exist");
        foreach (var start in new[] { from, Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = start is null ? null : new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var pkg = Path.Combine(dir.FullName, "contracts", "node_modules", "@foundry-rs");
                if (!Directory.Exists(pkg)) continue;
                foreach (var d in Directory.EnumerateDirectories(pkg, "anvil-*"))
                {
                    var bin = Path.Combine(d, "bin", OperatingSystem.IsWindows() ? "anvil.exe" : "anvil");
                    if (File.Exists(bin)) return bin;
                }
            }
        }
        foreach (var p in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var bin = Path.Combine(p, "anvil");
            if (File.Exists(bin)) return bin;
        }
        throw new FileNotFoundException("anvil was not found: run contracts/build.sh (npm @foundry-rs/anvil) or set OML_ANVIL");
    }

    /// <summary>Starts a node on a free loopback port and waits until it answers JSON-RPC.</summary>
    /// <param name="chainId">The chain id to serve.</param>
    /// <param name="loadState">A state file written by <see cref="DumpStateAsync"/> to start from.</param>
    /// <param name="timestamp">The genesis timestamp (Unix seconds); null for the current time.</param>
    public static async Task<AnvilNode> StartAsync(long chainId = 31337, string? loadState = null, long? timestamp = null,
        string? binary = null, CancellationToken ct = default)
    {
        binary ??= FindBinary();
        for (int attempt = 0; ; attempt++)
        {
            int port = FreePort();
            var psi = new ProcessStartInfo(binary)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            // --prune-history N: keep the last N states in memory and none on disk. Without it anvil spills old states
            // to ~/.foundry/anvil/tmp (measured: 2 MB a block, 20 GB for one 10-minute test run) and leaves them
            // behind when it is killed. Events (what ChainProjector reads) are kept whole; only eth_call at a block
            // older than the last 512 is refused.
            foreach (var a in new[] { "--host", "127.0.0.1", "--port", port.ToString(), "--chain-id", chainId.ToString(), "--silent", "--prune-history", "512" })
                psi.ArgumentList.Add(a);
            if (loadState is not null) { psi.ArgumentList.Add("--load-state"); psi.ArgumentList.Add(loadState); }
            if (timestamp is long t) { psi.ArgumentList.Add("--timestamp"); psi.ArgumentList.Add(t.ToString()); }
            var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {binary}");
            var node = new AnvilNode(process, port, chainId);
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (node._log) node._log.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (node._log) node._log.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                await node.WaitReadyAsync(TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
                return node;
            }
            catch (Exception) when (attempt < 2 && process.HasExited)
            {
                node.Dispose();  // most likely the port was taken between probing and binding: try another
            }
            catch
            {
                node.Dispose();
                throw;
            }
        }
    }

    private async Task WaitReadyAsync(TimeSpan timeout, CancellationToken ct)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"anvil exited with code {_process.ExitCode}: {Log}");
            try
            {
                await RpcAsync("eth_chainId", "[]", ct).ConfigureAwait(false);
                return;
            }
            catch (HttpRequestException) when (DateTime.UtcNow < until)
            {
                await Task.Delay(50, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>What the node printed so far.</summary>
    public string Log { get { lock (_log) return _log.ToString(); } }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>A raw JSON-RPC call; returns the result element's JSON text.</summary>
    public async Task<string> RpcAsync(string method, string paramsJson, CancellationToken ct = default)
    {
        var body = $"{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{method}\",\"params\":{paramsJson}}}";
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await Http.PostAsync(RpcUrl, content, ct).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
        using var doc = JsonDocument.Parse(text);
        if (doc.RootElement.TryGetProperty("error", out var err)) throw new InvalidOperationException($"{method}: {err.GetRawText()}");
        return doc.RootElement.GetProperty("result").GetRawText();
    }

    /// <summary>Moves the node's clock forward by <paramref name="seconds"/> and mines a block.</summary>
    public async Task IncreaseTimeAsync(long seconds, CancellationToken ct = default)
    {
        await RpcAsync("evm_increaseTime", $"[{seconds}]", ct).ConfigureAwait(false);
        await RpcAsync("evm_mine", "[]", ct).ConfigureAwait(false);
    }

    /// <summary>Sets an account's ether balance (for gas), in wei.</summary>
    public Task FundAsync(string address, System.Numerics.BigInteger wei, CancellationToken ct = default) =>
        RpcAsync("anvil_setBalance", $"[\"{address}\",\"0x{wei:x}\"]", ct);

    /// <summary>Writes the node's whole state to <paramref name="path"/> atomically (temp file, fsync, rename), for
    /// <see cref="StartAsync"/>'s <c>loadState</c>.</summary>
    public async Task DumpStateAsync(string path, CancellationToken ct = default)
    {
        var result = await RpcAsync("anvil_dumpState", "[]", ct).ConfigureAwait(false);
        var hex = JsonSerializer.Deserialize<string>(result) ?? throw new InvalidOperationException("anvil_dumpState returned null");
        var full = Path.GetFullPath(path);
        var tmp = full + ".tmp-" + Environment.ProcessId;
        // --load-state reads the JSON form; the RPC hands it gzip-compressed and hex-encoded.
        var bytes = Convert.FromHexString(hex.StartsWith("0x", StringComparison.Ordinal) ? hex[2..] : hex);
        await using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.WriteThrough))
        {
            await using var gz = new System.IO.Compression.GZipStream(new MemoryStream(bytes), System.IO.Compression.CompressionMode.Decompress);
            await gz.CopyToAsync(fs, ct).ConfigureAwait(false);
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, full, overwrite: true);
    }

    /// <summary>Stops the node (kills its process by id) and waits for it to exit.</summary>
    public void Stop()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: false);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException) { }
    }

    public void Dispose()
    {
        Stop();
        _process.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
