using System.CommandLine;
using System.Globalization;
using System.Numerics;
using System.Text.Json.Nodes;
using Oml.Models.IO;
using Oml.Protocol.Chain;
using Oml.Protocol.Core;

namespace Oml.Cli.Protocol;

/// <summary>
/// The protocol on an EVM chain, as the role commands reach it (<c>--chain URL [--deployment FILE]</c>): where the
/// deployment file is looked for, and the checks made before any action (the file exists and parses, the node
/// answers, its chain id is the deployment's, the protocol contract has code there).
/// </summary>
internal static class ChainCli
{
    /// <summary>The environment variable naming the deployment file when --deployment is not given.</summary>
    public const string DeploymentEnv = "OML_DEPLOYMENT";

    /// <summary>The file `oml chain deploy` writes (and the role commands read) by default, in the current folder.</summary>
    public const string DefaultDeploymentFile = "oml-deployment.json";

    /// <summary>--deployment, else $OML_DEPLOYMENT, else ./oml-deployment.json.</summary>
    public static string DeploymentPath(string? given) =>
        given ?? (Environment.GetEnvironmentVariable(DeploymentEnv) is { Length: > 0 } env ? env : DefaultDeploymentFile);

    /// <summary>An absolute http(s) URL (a usage error otherwise).</summary>
    public static string RpcUrl(string text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var u) && (u.Scheme == Uri.UriSchemeHttp || u.Scheme == Uri.UriSchemeHttps) ? text
            : throw new UsageException($"--chain: '{text}' is not an http(s) URL of a JSON-RPC node (e.g. http://127.0.0.1:8545)");

    public static OmlDeployment LoadDeployment(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"no deployment file at {path}: deploy the contracts with `oml chain deploy --chain URL --keystore TREASURY --out {path}`, "
                + $"or name the file with --deployment or {DeploymentEnv}", path);
        try
        {
            var d = OmlDeployment.Load(path);
            foreach (var a in new[] { d.Token, d.Protocol, d.Claims, d.Governance })
                if (!Hex.TryAddress(a, out _)) throw new FormatException($"'{a}' is not an address");
            if (d.ChainId <= 0) throw new FormatException($"chain id {d.ChainId}");
            return d;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or FormatException or NotSupportedException)
        {
            throw new InvalidDataException($"{path} is not a deployment file written by `oml chain deploy`: {e.Message}", e);
        }
    }

    /// <summary>One JSON-RPC call; an unreachable node is a clear failure.</summary>
    public static async Task<string> RpcAsync(string url, string method, string paramsJson, CancellationToken ct)
    {
        var body = $"{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{method}\",\"params\":{paramsJson}}}";
        try
        {
            using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
            using var response = await Http.PostAsync(url, content, ct).ConfigureAwait(false);
            var text = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            using var doc = System.Text.Json.JsonDocument.Parse(text);
            if (doc.RootElement.TryGetProperty("error", out var err))
                throw new InvalidOperationException($"the node at {url} refused {method}: {err.GetRawText()}");
            return doc.RootElement.GetProperty("result").GetRawText();
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot reach a JSON-RPC node at {url}: {e.Message}", e);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new IOException($"{url} did not answer JSON-RPC ({method}): {e.Message}", e);
        }
    }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>The node's chain id (eth_chainId).</summary>
    public static async Task<long> ChainIdAsync(string url, CancellationToken ct)
    {
        var hex = System.Text.Json.JsonSerializer.Deserialize<string>(await RpcAsync(url, "eth_chainId", "[]", ct).ConfigureAwait(false)) ?? "";
        return long.Parse(hex.StartsWith("0x", StringComparison.Ordinal) ? hex[2..] : hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Checks that the node at <paramref name="url"/> serves <paramref name="d"/>: same chain id, and code at the
    /// protocol contract's address (a deployment file of another chain, or a node restarted without its state, fail here).
    /// </summary>
    public static async Task CheckAsync(string url, OmlDeployment d, string deploymentPath, CancellationToken ct)
    {
        long chainId = await ChainIdAsync(url, ct).ConfigureAwait(false);
        if (chainId != d.ChainId)
            throw new InvalidDataException($"the node at {url} is chain {chainId}, but {deploymentPath} is a deployment on chain {d.ChainId}: wrong node or wrong deployment file");
        var code = System.Text.Json.JsonSerializer.Deserialize<string>(await RpcAsync(url, "eth_getCode", $"[\"{d.Protocol}\",\"latest\"]", ct).ConfigureAwait(false));
        if (code is null or "0x" or "")
            throw new InvalidDataException($"chain {chainId} at {url} has no contract at {d.Protocol} (the protocol address in {deploymentPath}): "
                + "the node was restarted without its state, or the file is from another deployment");
    }

    /// <summary>Opens the protocol deployed on the chain at <paramref name="url"/> (after <see cref="CheckAsync"/>).</summary>
    public static async Task<IProtocolBackend> OpenAsync(string url, string? deploymentPath, CancellationToken ct)
    {
        url = RpcUrl(url);
        var path = DeploymentPath(deploymentPath);
        var d = LoadDeployment(path);
        await CheckAsync(url, d, path, ct).ConfigureAwait(false);
        return await CreateBackendAsync(url, d, ct).ConfigureAwait(false);
    }

    private static async Task<IProtocolBackend> CreateBackendAsync(string url, OmlDeployment d, CancellationToken ct)
    {
        var backend = await ChainBackend.OpenAsync(url, d, JournalFolder(d), ct).ConfigureAwait(false);
        backend.Progress = line => Console.Error.WriteLine(line);
        return backend;
    }

    /// <summary>The environment variable naming the folder of the transaction journal (see <see cref="JournalFolder"/>).</summary>
    public const string JournalEnv = "OML_CHAIN_JOURNAL";

    /// <summary>
    /// Where the commands record each signed transaction until its receipt comes (ChainSender's journal), so that the
    /// same command run again after a time-out, a lost node or a crash finds the first transaction instead of applying
    /// the action twice: <c>$OML_CHAIN_JOURNAL</c>, else <c>$XDG_CONFIG_HOME/oml/chain-journal</c>, else
    /// <c>~/.config/oml/chain-journal</c>; one folder per deployment (chain id and protocol address), then per account.
    /// </summary>
    public static string JournalFolder(OmlDeployment d)
    {
        string root = Environment.GetEnvironmentVariable(JournalEnv) is { Length: > 0 } j ? j
            : Path.Combine(Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } x ? x
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config"), "oml", "chain-journal");
        return Path.Combine(root, $"{d.ChainId.ToString(CultureInfo.InvariantCulture)}-{d.Protocol.ToLowerInvariant()}");
    }

    /// <summary>Whether the node is a local development node (anvil) that takes anvil_/evm_ calls.</summary>
    public static async Task<bool> IsDevNodeAsync(string url, CancellationToken ct)
    {
        try
        {
            var v = System.Text.Json.JsonSerializer.Deserialize<string>(await RpcAsync(url, "web3_clientVersion", "[]", ct).ConfigureAwait(false)) ?? "";
            return v.StartsWith("anvil", StringComparison.OrdinalIgnoreCase) || v.Contains("hardhat", StringComparison.OrdinalIgnoreCase);
        }
        catch (InvalidOperationException) { return false; }
    }

    public static async Task RequireDevNodeAsync(string url, string what, CancellationToken ct)
    {
        if (!await IsDevNodeAsync(url, ct).ConfigureAwait(false))
            throw new InvalidOperationException($"{what} works on a local development node (anvil) only; {url} is not one");
    }

    /// <summary>
    /// Waits about a second, for a block later than the last: a chain mines on its own; a local development node that
    /// mines only with transactions (anvil's automine) is asked to mine one.
    /// </summary>
    public static async Task WaitForLaterBlockAsync(string url, CancellationToken ct)
    {
        await Task.Delay(1_000, ct).ConfigureAwait(false);
        if (await IsDevNodeAsync(url, ct).ConfigureAwait(false)) await RpcAsync(url, "evm_mine", "[]", ct).ConfigureAwait(false);
    }

    /// <summary>The deployment's parameters in the contracts' order (<see cref="ProtocolParameters.Names"/> is that order).</summary>
    public static BigInteger[] Parameters(ProtocolParameters p) =>
        [.. ProtocolParameters.Names.Select(n => BigInteger.Parse(p.Get(n), CultureInfo.InvariantCulture))];
}

/// <summary><c>oml chain ...</c>: deploy the contracts, and the local node's helpers (run anvil, give ether for gas, move time).</summary>
public static class ChainCommands
{
    public static Command Create() => new("chain", "The protocol on an EVM chain: deploy its contracts; run and drive a local anvil node for trials.")
    {
        Deploy(), Node(), Fund(), Advance(),
    };

    private static Option<string> ChainOption() => new("--chain") { Description = "JSON-RPC URL of the EVM node (e.g. http://127.0.0.1:8545)", Required = true };

    public static Command Deploy()
    {
        var chain = ChainOption();
        var keystore = new Option<string>("--keystore") { Description = "The treasury's keystore: it deploys the contracts (and pays their gas) and is the token's only minter", Required = true };
        var pass = CliOptions.PassphraseFile($"File whose first line is the keystore's passphrase (otherwise {FingerprintIO.PassphraseEnv})");
        var outFile = new Option<string?>("--out") { Description = $"Where to write the deployment file (default: ${ChainCli.DeploymentEnv}, else ./{ChainCli.DefaultDeploymentFile}, where the role commands look for it)" };
        var set = new Option<string[]>("--set") { Description = "Parameter=Value (repeatable), as `oml protocol init` takes them, e.g. --set RebutWindowSeconds=60" };
        var delay = new Option<long>("--registration-delay")
        {
            Description = "Seconds a model registration's commitment must wait before its reveal (0 to 3600; fixed at deployment). "
                + "It keeps mempool watchers from taking a model id: 0 only for a private development chain",
            DefaultValueFactory = _ => OmlChainClient.DefaultRegistrationDelaySeconds,
        };
        var json = CliOptions.Json("Print one JSON object instead of aligned text");
        var force = CliOptions.Force("Replace the deployment file if it exists");
        var cmd = new Command("deploy",
            "Deploy the protocol's contracts (OmlToken, OmlProtocol, OmlClaims, OmlGovernance) with the treasury as the token's minter, and write the deployment file "
            + "(chain id, addresses, first block) the role commands read with --chain URL.")
        { chain, keystore, pass, outFile, set, delay, json, force };
        cmd.SetAction(async (r, ct) =>
        {
            string url = ChainCli.RpcUrl(r.GetValue(chain)!);
            long registrationDelay = r.GetValue(delay);
            if (registrationDelay < 0 || registrationDelay > 3600) throw new UsageException($"--registration-delay {registrationDelay}: must be in [0, 3600] seconds");
            var parameters = Cli.OptionValue(() => ProtocolParameters.Default.With(RoleCommands.Changes(r.GetValue(set), "--set")));
            try { parameters.Validate(); }
            catch (ProtocolException e) { throw new UsageException($"--set: {e.Message}"); }
            string path = ChainCli.DeploymentPath(r.GetValue(outFile));
            AtomicFile.CheckWritable(path, r.GetValue(force));
            using var key = ProtocolCli.LoadKey(r.GetValue(keystore)!, r.GetValue(pass), "--keystore");
            long chainId = await ChainCli.ChainIdAsync(url, ct);
            string treasury = Hex.Of(key.Address);
            var d = await OmlChainClient.DeployAsync(url, chainId, "0x" + Convert.ToHexStringLower(key.ExportBytes()), treasury, ChainCli.Parameters(parameters), ct: ct,
                registrationDelaySeconds: registrationDelay);
            FingerprintIO.WriteTextAtomic(path, d.ToJson() + "\n", r.GetValue(force));
            var rep = new Report().Json("backend", "chain").Add("chainId", "chain id", d.ChainId).Add("rpc", "node", url).Add("treasury", "treasury", treasury)
                .Add("token", "OmlToken", d.Token).Add("protocol", "OmlProtocol", d.Protocol).Add("claims", "OmlClaims", d.Claims).Add("governance", "OmlGovernance", d.Governance)
                .Add("deployedAtBlock", "first block", d.DeployedAtBlock).Add("registrationDelay", "registration delay (s)", registrationDelay)
                .Add("deployment", "deployment file", Path.GetFullPath(path));
            var p = new JsonObject();
            foreach (var n in ProtocolParameters.Names)
            {
                p[n] = parameters.Get(n);
                rep.Line($"  {n,-20} {parameters.Get(n)}");
            }
            return rep.Json("parameters", p).Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Node()
    {
        var port = new Option<int>("--port") { Description = "Port to listen on (127.0.0.1)", DefaultValueFactory = _ => 8545 };
        var chainId = new Option<long>("--chain-id") { Description = "The chain id to serve", DefaultValueFactory = _ => 31337 };
        var state = new Option<string?>("--state") { Description = "Keep the node's state in this file: loaded at start when it exists, written at exit (anvil --state)" };
        var cmd = new Command("node",
            "Run a local anvil node in the foreground (npm @foundry-rs/anvil: found in contracts/node_modules, on PATH, or at $OML_ANVIL) for trying the protocol on a chain. "
            + "Its prefunded development accounts are public: never use it for value. Ctrl-C stops it.")
        { port, chainId, state };
        cmd.SetAction(async (r, ct) =>
        {
            if (r.GetValue(port) is < 1 or > 65535) throw new UsageException("--port must be in 1..65535");
            if (r.GetValue(chainId) <= 0) throw new UsageException("--chain-id must be positive");
            var psi = new System.Diagnostics.ProcessStartInfo(AnvilNode.FindBinary()) { UseShellExecute = false };
            foreach (var a in new[] { "--host", "127.0.0.1", "--port", r.GetValue(port).ToString(CultureInfo.InvariantCulture), "--chain-id", r.GetValue(chainId).ToString(CultureInfo.InvariantCulture) })
                psi.ArgumentList.Add(a);
            if (r.GetValue(state) is { } s) { psi.ArgumentList.Add("--state"); psi.ArgumentList.Add(s); }
            using var p = System.Diagnostics.Process.Start(psi) ?? throw new InvalidOperationException($"could not start {psi.FileName}");
            try
            {
                await p.WaitForExitAsync(ct);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: false);
                await p.WaitForExitAsync(CancellationToken.None);
                return Cli.Ok;
            }
            return p.ExitCode == 0 ? Cli.Ok : Cli.Failure;
        });
        return cmd;
    }

    public static Command Fund()
    {
        var chain = ChainOption();
        var to = new Option<string[]>("--to") { Description = "Address to give ether to (repeatable)", Required = true, AllowMultipleArgumentsPerToken = true };
        var ether = new Option<long>("--ether") { Description = "Ether each address gets for gas (its balance is set to this)", DefaultValueFactory = _ => 100 };
        var json = CliOptions.Json("Print one JSON object instead of a line");
        var cmd = new Command("fund", "Local node only (anvil): set accounts' ether balance, so that they can pay gas. On a real chain, send them ether instead.")
        { chain, to, ether, json };
        cmd.SetAction(async (r, ct) =>
        {
            string url = ChainCli.RpcUrl(r.GetValue(chain)!);
            if (r.GetValue(ether) < 0) throw new UsageException("--ether must not be negative");
            var addresses = r.GetValue(to)!.Select(a => ProtocolCli.Address(a, "--to")).ToList();
            await ChainCli.RequireDevNodeAsync(url, "oml chain fund", ct);
            var wei = BigInteger.Pow(10, 18) * r.GetValue(ether);
            foreach (var a in addresses) await ChainCli.RpcAsync(url, "anvil_setBalance", $"[\"{a}\",\"0x{wei:x}\"]", ct);
            if (!r.GetValue(json))
            {
                Console.WriteLine($"{addresses.Count} account(s) now hold {r.GetValue(ether)} ether on {url}");
                return Cli.Ok;
            }
            return new Report().Add("node", "node", url).Add("ether", "ether each", r.GetValue(ether))
                .Json("accounts", new System.Text.Json.Nodes.JsonArray([.. addresses.Select(a => (System.Text.Json.Nodes.JsonNode?)a)])).Print(true);
        });
        return cmd;
    }

    public static Command Advance()
    {
        var chain = ChainOption();
        var seconds = new Option<long>("--seconds") { Description = "How far to move the node's clock", Required = true };
        var json = CliOptions.Json("Print one JSON object instead of a line");
        var cmd = new Command("advance", "Local node only (anvil): move the chain's clock forward and mine a block (what waiting out a window takes on a chain that mines on demand).")
        { chain, seconds, json };
        cmd.SetAction(async (r, ct) =>
        {
            string url = ChainCli.RpcUrl(r.GetValue(chain)!);
            if (r.GetValue(seconds) < 0) throw new UsageException("--seconds must not be negative");
            await ChainCli.RequireDevNodeAsync(url, "oml chain advance", ct);
            await ChainCli.RpcAsync(url, "evm_increaseTime", $"[{r.GetValue(seconds).ToString(CultureInfo.InvariantCulture)}]", ct);
            await ChainCli.RpcAsync(url, "evm_mine", "[]", ct);
            var block = System.Text.Json.JsonDocument.Parse(await ChainCli.RpcAsync(url, "eth_getBlockByNumber", "[\"latest\",false]", ct)).RootElement;
            long ts = Convert.ToInt64(block.GetProperty("timestamp").GetString(), 16), number = Convert.ToInt64(block.GetProperty("number").GetString(), 16);
            if (!r.GetValue(json))
            {
                Console.WriteLine($"block {number} at {ProtocolCli.Time(ts)}");
                return Cli.Ok;
            }
            return new Report().Add("block", "block", number).Add("timestamp", "timestamp", ts).Print(true);
        });
        return cmd;
    }
}
