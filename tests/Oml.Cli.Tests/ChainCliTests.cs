using System.Text.Json.Nodes;
using Oml.Protocol.Chain;

namespace Oml.Cli.Tests;

/// <summary>A local anvil node for <see cref="ChainCliTests"/>: started on a free loopback port, stopped by its pid.</summary>
public sealed class CliAnvilFixture : IAsyncLifetime
{
    public AnvilNode Node { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Node = await AnvilNode.StartAsync(31337);

    public ValueTask DisposeAsync()
    {
        Node?.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// The role commands with <c>--chain URL</c> against a real anvil node (the contracts deployed by <c>oml chain deploy</c>):
/// the same short flow on the chain and on the embedded ledger ends in the same balances; and the usage and data
/// errors of choosing a backend.
/// </summary>
[Collection(nameof(CliTests))]
public sealed class ChainCliTests : IDisposable, IClassFixture<CliAnvilFixture>
{
    private const string Kdf = "1000"; // PBKDF2 iterations: small, for test speed only.
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-cli-chain-").FullName;
    private readonly Dictionary<string, string> _address = [];
    private readonly AnvilNode _node;

    public ChainCliTests(CliAnvilFixture fixture)
    {
        _node = fixture.Node;
        File.WriteAllText(PassFile, "chain test passphrase\n");
        Environment.SetEnvironmentVariable("OML_PIN_DIR", Path.Combine(Path.GetTempPath(), "oml-cli-test-pins"));
        // The transaction journal goes to the test folder, not the user's config.
        Environment.SetEnvironmentVariable("OML_CHAIN_JOURNAL", P("journal"));
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private string P(string name) => Path.Combine(_dir, name);
    private string PassFile => P("pass.txt");
    private string Ks(string who) => P($"{who}.json");

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private void NewAccounts(params string[] names)
    {
        foreach (var n in names)
        {
            var r = Run("account", "new", "--keystore", Ks(n), "--passphrase-file", PassFile, "--kdf-iterations", Kdf);
            Assert.True(r.Code == 0, r.Err);
            _address[n] = r.Out.Trim().ToLowerInvariant();
        }
    }

    private static JsonNode Act(string[] backend, string keystore, string passFile, params string[] args)
    {
        var r = Run([.. args, .. backend, "--keystore", keystore, "--passphrase-file", passFile, "--json"]);
        Assert.True(r.Code == 0, $"{string.Join(' ', args)} on {string.Join(' ', backend)}: exit {r.Code}: {r.Err}");
        return JsonNode.Parse(r.Out)!;
    }

    /// <summary>A deployment of fresh contracts on the test node, by a funded treasury; returns its file.</summary>
    private string Deploy(string name = "deployment.json", params string[] extra)
    {
        var fund = Run(["chain", "fund", "--chain", _node.RpcUrl, "--to", .. _address.Values]);
        Assert.True(fund.Code == 0, fund.Err);
        var path = P(name);
        var d = Run(["chain", "deploy", "--chain", _node.RpcUrl, "--keystore", Ks("treasury"), "--passphrase-file", PassFile, "--out", path, "--json",
            // A registration's reveal waits this long after its commitment (the default is a minute): one second here, so the
            // role commands' registrations go through the wait.
            .. (extra.Contains("--registration-delay") ? Array.Empty<string>() : ["--registration-delay", "1"]), .. extra]);
        Assert.True(d.Code == 0, d.Err);
        var j = JsonNode.Parse(d.Out)!;
        Assert.Equal(31337, j["chainId"]!.GetValue<long>());
        Assert.StartsWith("0x", j["protocol"]!.GetValue<string>());
        return path;
    }

    /// <summary>
    /// Mint, register, license (collateral), escrow with the host, stake, ask for the escrow back: run on
    /// <paramref name="backend"/>; returns (balance, escrowed, locked, staked, withdrawable) per role from `protocol status`.
    /// </summary>
    private Dictionary<string, long[]> ShortFlow(string[] backend)
    {
        JsonNode A(string who, params string[] args) => Act(backend, Ks(who), PassFile, args);
        foreach (var who in new[] { "owner", "host", "user" })
            A("treasury", "owner", "mint", "--to", _address[who], "--amount", "10000");
        A("owner", "owner", "register", "--model-id", "tiny", "--weights-digest", "sha256:" + new string('a', 64), "--price", "10", "--min-collateral", "1000");
        var lic = A("host", "host", "apply", "--model-id", "tiny", "--collateral", "2000", "--endpoint", "http://127.0.0.1/host");
        Assert.Equal(2000, lic["collateral"]!.GetValue<long>());
        A("user", "user", "deposit", "--host", _address["host"], "--amount", "300");
        A("owner", "gov", "stake", "--amount", "1500");
        A("user", "user", "request-refund", "--host", _address["host"]);
        var status = Run(["protocol", "status", .. backend, "--json"]);
        Assert.True(status.Code == 0, status.Err);
        var accounts = JsonNode.Parse(status.Out)!["accounts"]!;
        return new[] { "treasury", "owner", "host", "user" }.ToDictionary(w => w, w =>
        {
            var a = accounts[_address[w]];
            return a is null ? [0, 0, 0, 0, 0]
                : new[] { "balance", "escrowed", "locked", "staked", "withdrawable" }.Select(f => a[f]!.GetValue<long>()).ToArray();
        });
    }

    [Fact]
    public void The_same_flow_on_the_chain_and_on_the_ledger_ends_in_the_same_balances()
    {
        NewAccounts("treasury", "owner", "host", "user");
        var deployment = Deploy();
        string[] chain = ["--chain", _node.RpcUrl, "--deployment", deployment];
        var ledger = new[] { "--ledger", P("ledger.db") };
        var init = Run("protocol", "init", "--ledger", P("ledger.db"), "--keystore", Ks("treasury"), "--passphrase-file", PassFile);
        Assert.True(init.Code == 0, init.Err);

        var onChain = ShortFlow(chain);
        var onLedger = ShortFlow(ledger);
        foreach (var who in onLedger.Keys)
            Assert.True(onLedger[who].SequenceEqual(onChain[who]),
                $"{who}: ledger {string.Join(",", onLedger[who])} vs chain {string.Join(",", onChain[who])} (balance, escrowed, locked, staked, withdrawable)");
        Assert.Equal([10_000 - 1500, 0, 0, 1500, 0], onChain["owner"]);
        Assert.Equal([10_000 - 2000, 0, 2000, 0, 0], onChain["host"]);
        Assert.Equal([10_000 - 300, 300, 0, 0, 0], onChain["user"]);

        // On a chain, --json names the backend and the transaction.
        var w = Run([.. "user deposit".Split(' '), "--host", _address["owner"], "--amount", "1", .. chain, "--keystore", Ks("user"), "--passphrase-file", PassFile, "--json"]);
        Assert.True(w.Code == 0, w.Err);
        var j = JsonNode.Parse(w.Out)!;
        Assert.Equal("chain", j["backend"]!.GetValue<string>());
        Assert.Matches("^0x[0-9a-f]{64}$", j["tx"]!.GetValue<string>());
        Assert.True(j["block"]!.GetValue<long>() > 0 && j["gasUsed"]!.GetValue<long>() > 0, w.Out);
        var l = Run([.. "user deposit".Split(' '), "--host", _address["owner"], "--amount", "1", .. ledger, "--keystore", Ks("user"), "--passphrase-file", PassFile, "--json"]);
        Assert.True(l.Code == 0, l.Err);
        Assert.Equal("ledger", JsonNode.Parse(l.Out)!["backend"]!.GetValue<string>());
        Assert.NotNull(JsonNode.Parse(l.Out)!["event"]);
    }

    [Fact]
    public async Task The_explorer_serves_the_chain_state_the_role_commands_wrote()
    {
        NewAccounts("treasury", "owner", "host", "user");
        var deployment = Deploy();
        string[] chain = ["--chain", _node.RpcUrl, "--deployment", deployment];
        ShortFlow(chain);

        var both = Run(["explorer", "--ledger", P("none.db"), .. chain, "--port", "0"]);
        Assert.Equal(2, both.Code);
        Assert.Contains("exactly one of --ledger FILE and --chain URL", both.Err);
        var wrongChain = Run("explorer", "--chain", _node.RpcUrl, "--deployment", P("missing.json"), "--port", "0");
        Assert.Equal(1, wrongChain.Code);
        Assert.Contains("no deployment file", wrongChain.Err);

        using var stop = new CancellationTokenSource();
        ExplorerCommand.StopForTests = stop.Token;
        try
        {
            var (url, server) = await CliRunner.StartAsync(P("explorer.url"), ["explorer", .. chain, "--port", "0", "--poll-ms", "100"]);
            using var http = new HttpClient();
            var hosts = await http.GetStringAsync(url + "/hosts", TestContext.Current.CancellationToken);
            var host = new Nethereum.Util.AddressUtil().ConvertToChecksumAddress(_address["host"]);
            Assert.Contains(host, hosts);          // EIP-55, as the explorer shows every address
            Assert.Contains("2,000", hosts);       // the collateral the host locked on chain
            var overview = await http.GetStringAsync(url + "/", TestContext.Current.CancellationToken);
            Assert.Contains("chain 31337", overview);
            stop.Cancel();
            var done = await server;
            Assert.True(done.Code == 0, done.Err);
        }
        finally
        {
            ExplorerCommand.StopForTests = CancellationToken.None;
        }
    }

    /// <summary>The llama-tiny fixture with the tiny word tokenizer, and a pool of 16 random-word fingerprints.</summary>
    private (string Model, string Pool) TinyModelAndPool()
    {
        var fixture = Path.Combine(RepoRoot.Path, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
        var model = P("base");
        Directory.CreateDirectory(model);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(fixture, f), Path.Combine(model, f));
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), FingerprintCliTests.TinyTokenizerJson());
        var pool = P("pool.omlfp");
        var r = Run("fingerprints", "generate", "--model", model, "--strategy", "random-word", "--random-word-keys", "--count", "16",
            "--out", pool, "--passphrase-file", PassFile, "--kdf-iterations", Kdf, "--insecure-kdf");
        Assert.True(r.Code == 0, r.Err);
        return (model, pool);
    }

    [Fact]
    public async Task A_host_on_a_chain_checks_permits_against_the_chain_and_commits_its_usage_there()
    {
        var ct = TestContext.Current.CancellationToken;
        var (model, pool) = TinyModelAndPool();
        NewAccounts("treasury", "owner", "host", "user", "prover");
        var deployment = Deploy();
        string[] chain = ["--chain", _node.RpcUrl, "--deployment", deployment];
        JsonNode A(string who, params string[] args) => Act(chain, Ks(who), PassFile, args);
        (int Code, string Out, string Err) Try(string who, params string[] args) => Run([.. args, .. chain, "--keystore", Ks(who), "--passphrase-file", PassFile]);
        foreach (var who in new[] { "owner", "host", "user", "prover" })
            A("treasury", "owner", "mint", "--to", _address[who], "--amount", "10000");
        A("owner", "owner", "register", "--model-id", "tiny", "--weights-digest", "sha256:" + new string('a', 64), "--price", "10", "--min-collateral", "1000");
        A("host", "host", "apply", "--model-id", "tiny", "--collateral", "2000", "--endpoint", "http://127.0.0.1/host");
        string copyDigest = "sha256:" + new string('b', 64);
        var delivered = A("owner", "owner", "deliver", "--model-id", "tiny", "--host", _address["host"], "--pool", pool, "--allocation", "random:4", "--copy-digest", copyDigest);
        Assert.Equal(4, delivered["fingerprints"]!.GetValue<int>());
        A("host", "host", "acknowledge", "--model-id", "tiny", "--copy-digest", copyDigest);

        using var stop = new CancellationTokenSource();
        Oml.Cli.Protocol.HostCommands.ServeStopForTests = stop.Token;
        var (consoleOut, consoleError) = (Console.Out, Console.Error);
        Task<(int Code, string Out, string Err)>? server = null;
        try
        {
            (string url, server) = await CliRunner.StartAsync(P("host.url"), ["host", "serve", .. chain, "--keystore", Ks("host"), "--passphrase-file", PassFile,
                "--model-id", "tiny", "--model", model, "--receipts", P("receipts")]);

            A("user", "user", "deposit", "--host", _address["host"], "--amount", "100");
            foreach (var q in new[] { " apple bread", " cloud dance" })
                Assert.True(A("user", "user", "ask", "--endpoint", url, "--query", q, "--model-id", "tiny", "--host", _address["host"], "--fee", "10")["receiptValid"]!.GetValue<bool>());
            // The chain's state decides: nothing escrowed with this host, or a replayed nonce, is refused before serving.
            var unfunded = await Task.Run(() => Try("prover", "user", "ask", "--endpoint", url, "--query", " apple bread", "--model-id", "tiny", "--host", _address["host"]), ct);
            Assert.Equal(1, unfunded.Code);
            Assert.Contains("does not cover this fee", unfunded.Err);
            var once = await Task.Run(() => Try("user", "user", "ask", "--endpoint", url, "--query", " eagle flame", "--model-id", "tiny", "--host", _address["host"], "--nonce", "77"), ct);
            Assert.True(once.Code == 0, once.Err);
            var replay = await Task.Run(() => Try("user", "user", "ask", "--endpoint", url, "--query", " eagle flame", "--model-id", "tiny", "--host", _address["host"], "--nonce", "77"), ct);
            Assert.Equal(1, replay.Code);
            Assert.Contains("already used", replay.Err);

            var usage = A("host", "host", "commit-usage", "--model-id", "tiny", "--receipts", P("receipts"));
            Assert.Equal(3, usage["receipts"]!.GetValue<long>());
            Assert.Equal(3, usage["permits"]!.GetValue<long>());
            Assert.Equal(30, usage["fees"]!.GetValue<long>());
            Assert.Equal(6, usage["hostShare"]!.GetValue<long>()); // 20% of 30
            Assert.Matches("^0x[0-9a-f]{64}$", usage["tx"]!.GetValue<string>());
            Assert.Equal(6, A("host", "host", "withdraw")["withdrawn"]!.GetValue<long>());
            Assert.Equal(24, A("owner", "owner", "withdraw")["withdrawn"]!.GetValue<long>());
            var status = JsonNode.Parse(Run(["protocol", "status", .. chain, "--json"]).Out)!;
            Assert.Equal(70, status["accounts"]![_address["user"]]!["escrowed"]!.GetValue<long>());
            Assert.Equal(10_000 - 2000 + 6, status["accounts"]![_address["host"]]!["balance"]!.GetValue<long>());
        }
        finally
        {
            stop.Cancel();
            if (server is not null)
                try { await server.WaitAsync(TimeSpan.FromSeconds(30), ct); }
                catch (Exception e) when (e is TimeoutException or OperationCanceledException) { }
            Oml.Cli.Protocol.HostCommands.ServeStopForTests = CancellationToken.None;
            Console.SetOut(consoleOut);
            Console.SetError(consoleError);
        }
    }

    [Fact]
    public void Choosing_the_backend_is_checked_before_anything_runs()
    {
        NewAccounts("treasury");
        var both = Run("protocol", "status", "--ledger", P("ledger.db"), "--chain", _node.RpcUrl);
        Assert.Equal(2, both.Code);
        Assert.Contains("mutually exclusive", both.Err);
        var neither = Run("protocol", "status");
        Assert.Equal(2, neither.Code);
        Assert.Contains("--ledger FILE", neither.Err);
        var stray = Run("protocol", "status", "--ledger", P("ledger.db"), "--deployment", P("d.json"));
        Assert.Equal(2, stray.Code);
        var notUrl = Run("protocol", "status", "--chain", "127.0.0.1:8545");
        Assert.Equal(2, notUrl.Code);

        var missing = Run("protocol", "status", "--chain", _node.RpcUrl, "--deployment", P("nowhere.json"));
        Assert.Equal(1, missing.Code);
        Assert.Contains("no deployment file", missing.Err);
        Assert.Contains("oml chain deploy", missing.Err);

        var deployment = Deploy();
        var other = P("other-chain.json");
        File.WriteAllText(other, File.ReadAllText(deployment).Replace("\"ChainId\": 31337", "\"ChainId\": 4242"));
        var wrongChain = Run("protocol", "status", "--chain", _node.RpcUrl, "--deployment", other);
        Assert.Equal(1, wrongChain.Code);
        Assert.Contains("is chain 31337", wrongChain.Err);
        Assert.Contains("chain 4242", wrongChain.Err);

        var elsewhere = P("no-contract.json");
        var d = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(deployment))!;
        d["Protocol"] = "0x" + new string('7', 40);
        File.WriteAllText(elsewhere, d.ToJsonString());
        var noContract = Run("protocol", "status", "--chain", _node.RpcUrl, "--deployment", elsewhere);
        Assert.Equal(1, noContract.Code);
        Assert.Contains("has no contract at", noContract.Err);

        // `init` makes a ledger; a chain is deployed instead.
        var init = Run("protocol", "init", "--chain", _node.RpcUrl, "--deployment", deployment, "--keystore", Ks("treasury"), "--passphrase-file", PassFile);
        Assert.Equal(2, init.Code);
        Assert.Contains("oml chain deploy", init.Err);

        // The deployment file is never overwritten without --force.
        var again = Run("chain", "deploy", "--chain", _node.RpcUrl, "--keystore", Ks("treasury"), "--passphrase-file", PassFile, "--out", deployment);
        Assert.Equal(2, again.Code);
        Assert.Contains("--force", again.Err);

        // A registration delay past an hour is refused before anything is sent.
        var slow = Run("chain", "deploy", "--chain", _node.RpcUrl, "--keystore", Ks("treasury"), "--passphrase-file", PassFile,
            "--out", P("slow-deployment.json"), "--registration-delay", "3601");
        Assert.Equal(2, slow.Code);
        Assert.Contains("--registration-delay 3601", slow.Err);
        Assert.False(File.Exists(P("slow-deployment.json")));

        // An account without ether cannot pay gas: a clear failure, with the way out on a local node.
        NewAccounts("poor");
        var poor = Run("chain", "deploy", "--chain", _node.RpcUrl, "--keystore", Ks("poor"), "--passphrase-file", PassFile, "--out", P("poor-deployment.json"));
        Assert.True(poor.Code == 1, poor.Err);
        Assert.Contains("oml chain fund", poor.Err);
        Assert.False(File.Exists(P("poor-deployment.json")));
    }
}
