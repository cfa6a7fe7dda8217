using System.Text.Json.Nodes;
using Oml.Cli.Protocol;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>oml protocol|owner|host|user|prover|gov</c> through the command line, in-process: the README's protocol scenario
/// on the llama-tiny fixture (three fingerprinted copies, servers on loopback ports), and each command's main failure.
/// </summary>
[Collection(nameof(CliTests))]
public sealed class ProtocolCliTests : PartiesCliTest
{
    public ProtocolCliTests() : base("oml-cli-protocol-", "protocol test passphrase") { }

    /// <summary>Accounts, a ledger with short windows, and money for everyone.</summary>
    private void SetUpLedger(params string[] extra)
    {
        NewAccounts(["treasury", "owner", "owner2", "hostA", "hostB", "hostC", "user", "prover", .. extra]);
        var init = Act("treasury", "protocol", "init", "--set", "RebutWindowSeconds=1", "--set", "VotingWindowSeconds=1");
        Assert.Equal(Addr("treasury"), init["treasury"]!.GetValue<string>());
        Assert.All(FundAll(10_000), b => Assert.Equal(10_000, b));
    }

    private JsonObject Status()
    {
        var r = Run("protocol", "status", "--ledger", Ledger, "--json");
        Assert.True(r.Code == 0, r.Err);
        return JsonNode.Parse(r.Out)!.AsObject();
    }

    private long Get(JsonObject status, string who, string field) => status["accounts"]![Addr(who)]![field]!.GetValue<long>();

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

    /// <summary>Starts <c>oml host serve</c> in the background; returns its base URL once it listens.</summary>
    private Task<(string Url, Task<(int Code, string Out, string Err)> Run)> Serve(string name, params string[] args) =>
        CliRunner.StartAsync(P($"{name}.url"), ["host", "serve", .. args]);

    [Fact]
    public async Task Scenario_licensing_paid_serving_claim_and_slash_and_leak_trace()
    {
        var ct = TestContext.Current.CancellationToken;
        var (baseModel, pool) = TinyModelAndPool();
        SetUpLedger();

        // The owner registers the model; three hosts license it; each gets its own fingerprinted copy.
        Act("owner", "owner", "register", "--model-id", "tiny", "--model", baseModel, "--price", "10", "--min-collateral", "1000");
        foreach (var h in new[] { "hostA", "hostB", "hostC" })
        {
            Act(h, "host", "apply", "--model-id", "tiny", "--collateral", "2000", "--endpoint", $"http://127.0.0.1/{h}");
            var d = Act("owner", "owner", "deliver", "--model-id", "tiny", "--host", Addr(h), "--pool", pool, "--allocation", "random:6",
                "--base", baseModel, "--out", P($"copy-{h}"), "--subset-out", P($"subset-{h}.omlfp"), "--epochs", "300");
            Assert.Equal(6, d["fingerprints"]!.GetValue<int>());
            Assert.Equal(1.0, d["recall"]!.GetValue<double>());
            Act(h, "host", "acknowledge", "--model-id", "tiny", "--model-dir", P($"copy-{h}"));
        }
        var st = Status();
        Assert.All(st["licences"]!.AsArray(), l => Assert.True(l!["acknowledged"]!.GetValue<bool>()));

        using var stop = new CancellationTokenSource();
        HostCommands.ServeStopForTests = stop.Token;
        // The servers run CliRunner on other threads, which swap Console.Out/Error; the test waits for them to end and
        // puts the console back, so that no late restore lands in the middle of a later test's run.
        var (consoleOut, consoleError) = (Console.Out, Console.Error);
        var servers = new List<Task>();
        try
        {
            var a = await Serve("a", "--ledger", Ledger, "--keystore", Ks("hostA"), "--passphrase-file", PassFile, "--model-id", "tiny",
                "--model", P("copy-hostA"), "--receipts", P("receipts-a"));
            var b = await Serve("b", "--ledger", Ledger, "--keystore", Ks("hostB"), "--passphrase-file", PassFile, "--model-id", "tiny",
                "--model", P("copy-hostB"), "--receipts", P("receipts-b"), "--no-permits");
            var c = await Serve("c", "--plain", "--model", P("copy-hostC"));
            servers.AddRange([a.Run, b.Run, c.Run]);

            // Host A serves a paying user; a query without a valid permit is refused.
            Act("user", "user", "deposit", "--host", Addr("hostA"), "--amount", "100");
            foreach (var q in new[] { " apple bread", " cloud dance", " eagle flame" })
            {
                var ans = Act("user", "user", "ask", "--endpoint", a.Url, "--query", q, "--model-id", "tiny", "--host", Addr("hostA"), "--fee", "10");
                Assert.True(ans["receiptValid"]!.GetValue<bool>());
            }
            var permitFile = P("permit.json");
            Act("user", "user", "permit", "--model-id", "tiny", "--host", Addr("hostA"), "--query", " other words", "--out", permitFile);
            var refused = await Task.Run(() => Try("user", "user", "ask", "--endpoint", a.Url, "--query", " not the permitted query", "--permit", permitFile), ct);
            Assert.Equal(1, refused.Code);
            Assert.Contains("the permit is for another query", refused.Err);

            var usage = Act("hostA", "host", "commit-usage", "--model-id", "tiny", "--receipts", P("receipts-a"));
            Assert.Equal(3, usage["receipts"]!.GetValue<long>());
            Assert.Equal(3, usage["permits"]!.GetValue<long>());
            Assert.Equal(30, usage["fees"]!.GetValue<long>());
            Assert.Equal(6, usage["hostShare"]!.GetValue<long>()); // 20% of 30
            Assert.Equal(6, Act("hostA", "host", "withdraw")["withdrawn"]!.GetValue<long>());
            Assert.Equal(24, Act("owner", "owner", "withdraw")["withdrawn"]!.GetValue<long>());
            Assert.Equal(70, Get(Status(), "user", "escrowed"));
            // The host refuses a replayed permit (it never signs a receipt for one).
            var replay = await Task.Run(() => Try("user", "user", "ask", "--endpoint", a.Url, "--query", " apple bread", "--model-id", "tiny", "--host", Addr("hostA"),
                "--nonce", "77"), ct);
            Assert.Equal(0, replay.Code);
            replay = await Task.Run(() => Try("user", "user", "ask", "--endpoint", a.Url, "--query", " apple bread", "--model-id", "tiny", "--host", Addr("hostA"),
                "--nonce", "77"), ct);
            Assert.Equal(1, replay.Code);
            Assert.Contains("already used", replay.Err);

            // Host B answers without permits: the prover audits it, claims, and after the rebut window B is slashed.
            var audit = JsonNode.Parse(Run("prover", "audit", "--ledger", Ledger, "--passphrase-file", PassFile, "--endpoint", b.Url, "--model-id", "tiny",
                "--host", Addr("hostB"), "--subset", P("subset-hostB.omlfp"), "--max-queries", "3", "--ticket", P("ticket.json"), "--json").Out)!;
            Assert.True(audit["caught"]!.GetValue<bool>());
            Assert.Equal(3, audit["hits"]!.GetValue<long>());
            var claim = Act("prover", "prover", "claim", "--ticket", P("ticket.json"), "--bond", "100");
            Assert.Equal(Addr("hostB"), claim["host"]!.GetValue<string>());
            long claimId = claim["claim"]!.GetValue<long>();
            // Run again (as after an interruption): nothing left to do, nothing submitted twice.
            var again = Act("prover", "prover", "claim", "--ticket", P("ticket.json"), "--bond", "100");
            Assert.Equal(claimId, again["claim"]!.GetValue<long>());
            Assert.Equal("", again["steps"]!.GetValue<string>());
            var early = Try("prover", "prover", "settle", "--claim", claimId.ToString());
            Assert.Equal(1, early.Code);
            Assert.Contains("rejected (WindowClosed)", early.Err);
            // B cannot rebut: its receipts name no permit.
            var rebut = Try("hostB", "host", "rebut", "--claim", claimId.ToString(), "--receipts", P("receipts-b"));
            Assert.Equal(1, rebut.Code);
            await Task.Delay(2100, ct);
            var settled = Act("prover", "prover", "settle", "--claim", claimId.ToString());
            Assert.Equal("Slashed", settled["status"]!.GetValue<string>());
            Assert.Equal(1000, settled["slashed"]!.GetValue<long>()); // 50% of 2000
            Assert.Equal(300, settled["proverReward"]!.GetValue<long>()); // 30% of the slash
            Assert.Equal(400, Act("prover", "prover", "withdraw")["withdrawn"]!.GetValue<long>()); // bond back + reward
            st = Status();
            Assert.Equal(1000, Get(st, "hostB", "locked"));
            Assert.Equal(700, Get(st, "owner", "withdrawable"));

            // A third party serves host C's copy at an unknown endpoint: the trace names C, and the owner files the accusation.
            var trace = Act("owner", "prover", "trace", "--endpoint", c.Url, "--model-id", "tiny", "--pool", pool);
            Assert.Equal([Addr("hostC")], trace["accused"]!.AsArray().Select(x => x!.GetValue<string>()));
            Assert.Equal(16, trace["asked"]!.GetValue<int>());
            Assert.Equal(Addr("hostC"), Status()["accusations"]![0]!["host"]!.GetValue<string>());

            // The text status shows it all, aligned.
            var text = Run("protocol", "status", "--ledger", Ledger);
            Assert.Equal(0, text.Code);
            Assert.Contains("closed: claim 0 Slashed", text.Out);
            Assert.Contains("Accusations", text.Out);
        }
        finally
        {
            stop.Cancel();
            try { await Task.WhenAll(servers).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken); }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException) { }
            HostCommands.ServeStopForTests = CancellationToken.None;
            Console.SetOut(consoleOut);
            Console.SetError(consoleError);
        }
    }

    [Fact]
    public void Owner_commands_and_their_failures()
    {
        SetUpLedger();
        Act("owner", "owner", "register", "--model-id", "m", "--weights-digest", "sha256:m1", "--price", "5");
        Act("owner2", "owner", "register", "--model-id", "base", "--weights-digest", "sha256:b", "--price", "0");
        var dup = Try("owner", "owner", "register", "--model-id", "m", "--weights-digest", "x", "--price", "5");
        Assert.Equal(1, dup.Code);
        Assert.Contains("rejected (ModelExists)", dup.Err);
        Assert.Equal(2, Act("owner", "owner", "add-version", "--model-id", "m", "--weights-digest", "sha256:m2", "--notes", "v2")["version"]!.GetValue<int>());
        var notMine = Try("owner2", "owner", "add-version", "--model-id", "m", "--weights-digest", "sha256:x");
        Assert.Contains("rejected (Unauthorized)", notMine.Err);

        // The parent's owner must co-sign: without its keystore the request is refused, with it accepted.
        var unsigned = Try("owner", "owner", "declare-parent", "--model-id", "m", "--parent", "base", "--share-bps", "1000");
        Assert.Equal(1, unsigned.Code);
        Assert.Contains("rejected (BadSignature)", unsigned.Err);
        var dp = Act("owner", "owner", "declare-parent", "--model-id", "m", "--parent", "base", "--share-bps", "1000", "--parent-keystore", Ks("owner2"));
        Assert.Equal(Addr("owner2"), dp["cosigner"]!.GetValue<string>());

        // Or in two steps on two machines: the child's owner signs a request, the parent's owner co-signs and submits it.
        Act("owner", "owner", "register", "--model-id", "m2", "--weights-digest", "sha256:m2", "--price", "5");
        var req = P("declare.json");
        Act("owner", "owner", "declare-parent", "--model-id", "m2", "--parent", "base", "--share-bps", "500", "--request-out", req);
        Assert.Contains("rejected (BadSignature)", Try("user", "owner", "cosign", "--request", req).Err); // not the parent's owner
        var cs = Act("owner2", "owner", "cosign", "--request", req);
        Assert.Equal(Addr("owner"), cs["actor"]!.GetValue<string>());
        Assert.Equal(500, cs["shareBps"]!.GetValue<long>());
        Assert.Contains("rejected (BadNonce)", Try("owner2", "owner", "cosign", "--request", req).Err); // a request applies once
        var parents = Status()["models"]!.AsArray().Single(x => x!["id"]!.GetValue<string>() == "m2")!["parents"]!.AsArray();
        Assert.Equal("base", parents.Single()!["model"]!.GetValue<string>());

        // An offer withdrawn with --cancel cannot be accepted; --to and --cancel go one at a time.
        Act("owner", "owner", "transfer", "--model-id", "m", "--to", Addr("user"));
        var withdrawn = Act("owner", "owner", "transfer", "--model-id", "m", "--cancel");
        Assert.Null(withdrawn["pendingOwner"]);
        Assert.Contains("rejected (NoPendingTransfer)", Try("user", "owner", "accept", "--model-id", "m").Err);
        Assert.Equal(2, Try("owner", "owner", "transfer", "--model-id", "m").Code);
        Assert.Equal(2, Try("owner", "owner", "transfer", "--model-id", "m", "--to", Addr("user"), "--cancel").Code);
        Act("owner", "owner", "transfer", "--model-id", "m", "--to", Addr("owner2"));
        Assert.Contains("rejected (NoPendingTransfer)", Try("user", "owner", "accept", "--model-id", "m").Err);
        Act("owner2", "owner", "accept", "--model-id", "m");
        Assert.Equal(Addr("owner2"), Status()["models"]!.AsArray().Single(x => x!["id"]!.GetValue<string>() == "m")!["owner"]!.GetValue<string>());

        // Only the treasury mints; a malformed address is a usage error; nothing to withdraw is a failure.
        Assert.Contains("rejected (Unauthorized)", Try("owner", "owner", "mint", "--to", Addr("owner"), "--amount", "5").Err);
        Assert.Equal(2, Try("treasury", "owner", "mint", "--to", "0x1234", "--amount", "5").Code);
        var w = Try("owner", "owner", "withdraw");
        Assert.Equal(1, w.Code);
        Assert.Contains("rejected (NothingToWithdraw)", w.Err);

        // Deliver to a host without a licence is refused before anything is built; a missing pool file is a failure too.
        var nd = Try("owner2", "owner", "deliver", "--model-id", "m", "--host", Addr("hostA"), "--pool", PoolOnly(), "--allocation", "random:2");
        Assert.Equal(1, nd.Code);
        Assert.Contains("rejected (UnknownLicence)", nd.Err);
        nd = Try("owner2", "owner", "deliver", "--model-id", "m", "--host", Addr("hostA"), "--pool", P("none.omlfp"), "--allocation", "random:2");
        Assert.Equal(1, nd.Code);
        Assert.Contains("none.omlfp", nd.Err);
    }

    [Fact]
    public void Failures_are_clear_missing_ledger_bad_passphrase_and_rejected_actions()
    {
        NewAccounts("treasury", "user");
        var missing = Try("user", "user", "deposit", "--host", Addr("treasury"), "--amount", "5");
        Assert.Equal(1, missing.Code);
        Assert.Contains("no ledger at", missing.Err);
        Assert.Contains("oml protocol init", missing.Err);

        Act("treasury", "protocol", "init");
        var again = Try("treasury", "protocol", "init");
        Assert.Equal(1, again.Code);
        Assert.Contains("init never overwrites", again.Err);

        File.WriteAllText(P("wrong.txt"), "not the passphrase\n");
        var bad = Run("user", "deposit", "--host", Addr("treasury"), "--amount", "5", "--ledger", Ledger, "--keystore", Ks("user"), "--passphrase-file", P("wrong.txt"));
        Assert.Equal(1, bad.Code);
        Assert.StartsWith("oml: error:", bad.Err);
        Assert.Contains(Ks("user"), bad.Err);

        var poor = Try("user", "user", "deposit", "--host", Addr("treasury"), "--amount", "5");
        Assert.Equal(1, poor.Code);
        Assert.Contains("rejected (InsufficientFunds)", poor.Err);
        Assert.Equal(2, Try("user", "user", "deposit", "--amount", "5").Code); // --host missing: usage
        Assert.Equal(2, Try("user", "protocol", "status").Code); // status takes no keystore: a usage error
        var badKeystore = Run("user", "deposit", "--host", Addr("treasury"), "--amount", "5", "--ledger", Ledger, "--keystore", P("nobody.json"), "--passphrase-file", PassFile);
        Assert.Equal(1, badKeystore.Code);
        Assert.Contains("no keystore at", badKeystore.Err);
    }

    [Fact]
    public void User_host_prover_and_gov_commands_without_models_on_disk()
    {
        SetUpLedger();
        Act("owner", "owner", "register", "--model-id", "m", "--weights-digest", "sha256:m", "--price", "7", "--min-collateral", "1500");
        var low = Try("hostA", "host", "apply", "--model-id", "m", "--collateral", "1000", "--endpoint", "http://x");
        Assert.Contains("rejected (CollateralTooLow)", low.Err);
        Act("hostA", "host", "apply", "--model-id", "m", "--collateral", "1500", "--endpoint", "http://x");
        Assert.Contains("rejected (CopyNotDelivered)", Try("hostA", "host", "acknowledge", "--model-id", "m", "--copy-digest", "d").Err);
        Act("owner", "owner", "deliver", "--model-id", "m", "--host", Addr("hostA"), "--pool", PoolOnly(), "--allocation", "random:3", "--copy-digest", "sha256:copy");
        Assert.Contains("rejected (DigestMismatch)", Try("hostA", "host", "acknowledge", "--model-id", "m", "--copy-digest", "sha256:other").Err);
        Act("hostA", "host", "acknowledge", "--model-id", "m", "--copy-digest", "sha256:copy");

        // A permit prints its fields; the fee defaults to the model's price.
        var permit = Act("user", "user", "permit", "--model-id", "m", "--host", Addr("hostA"), "--query", "hi", "--nonce", "5");
        Assert.Equal("7", permit["fee"]!.GetValue<string>());
        Assert.Equal(Addr("user"), permit["user"]!.GetValue<string>());
        var text = Try("user", "user", "permit", "--model-id", "m", "--host", Addr("hostA"), "--query", "hi");
        Assert.Matches(@"permit hash\s+0x[0-9a-f]{64}", text.Out);

        // An empty usage book commits (zero receipts), once per epoch.
        var empty = Act("hostA", "host", "commit-usage", "--model-id", "m", "--receipts", P("r"));
        Assert.Equal(0, empty["receipts"]!.GetValue<long>());
        Assert.Contains("UsageAlreadyCommitted", Try("hostA", "host", "commit-usage", "--model-id", "m", "--receipts", P("r")).Err);

        // Settling an unknown claim, rebutting it, claiming with a missing ticket.
        Assert.Contains("rejected (UnknownClaim)", Try("prover", "prover", "settle", "--claim", "3").Err);
        Assert.Contains("rejected (UnknownClaim)", Try("hostA", "host", "rebut", "--claim", "3", "--receipts", P("r")).Err);
        Assert.Equal(1, Try("prover", "prover", "claim", "--ticket", P("no-ticket.json")).Code);

        // Governance: stake, propose (stake >= ProposalThreshold), vote (stakers at the proposal), execute after the window.
        Assert.Contains("rejected (Unauthorized)", Try("owner", "gov", "propose", "--set", "MinBond=250").Err);
        Assert.Equal(1_500, Act("owner", "gov", "stake", "--amount", "1500")["staked"]!.GetValue<long>());
        var prop = Act("owner", "gov", "propose", "--set", "MinBond=250", "--description", "raise the bond");
        long id = prop["proposal"]!.GetValue<long>();
        Assert.Equal(1_500, prop["totalStake"]!.GetValue<long>());
        Assert.Contains("rejected (NotEligibleToVote)", Try("user", "gov", "vote", "--proposal", id.ToString(), "--support", "yes").Err);
        Assert.Equal(1_500, Act("owner", "gov", "vote", "--proposal", id.ToString(), "--support", "yes")["yes"]!.GetValue<long>());
        Assert.Contains("rejected (WindowClosed)", Try("owner", "gov", "execute", "--proposal", id.ToString()).Err);
        Thread.Sleep(2100);
        Act("user", "gov", "execute", "--proposal", id.ToString());
        var p = Run("gov", "params", "--ledger", Ledger, "--json");
        Assert.Equal("250", JsonNode.Parse(p.Out)!["MinBond"]!.GetValue<string>());
        Assert.Equal(2, Try("owner", "gov", "propose", "--set", "MinBond").Code);
        Assert.Contains("rejected (InvalidParameters)", Try("owner", "gov", "propose", "--set", "NoSuchThing=1").Err);
    }

    /// <summary>
    /// Rewrites the ledger file as someone holding it could: the mint to <paramref name="who"/> gets another amount;
    /// with <paramref name="recompute"/> every hash from there on is recomputed, so the chain is consistent again.
    /// </summary>
    private void ForgeMint(string who, long amount, bool recompute)
    {
        List<Oml.Protocol.Ledger.LedgerEvent> events;
        using (var l = Oml.Protocol.Ledger.SqliteLedger.Open(Ledger)) events = [.. l.Read()];
        var target = events.First(e => e.Type == "Mint" && System.Text.Encoding.UTF8.GetString(e.Payload).Contains(Addr(who), StringComparison.Ordinal));
        Assert.Equal(SQLitePCL.raw.SQLITE_OK, SQLitePCL.raw.sqlite3_open_v2(Ledger, out var db, SQLitePCL.raw.SQLITE_OPEN_READWRITE, null));
        using (db)
        {
            foreach (var t in new[] { "events_no_update", "events_no_delete" }) SQLitePCL.raw.sqlite3_exec(db, $"DROP TRIGGER IF EXISTS {t}");
            byte[] prev = target.PreviousHash;
            foreach (var e in events.Where(e => e.Sequence >= target.Sequence))
            {
                var payload = e.Sequence == target.Sequence
                    ? System.Text.Encoding.UTF8.GetBytes(System.Text.Encoding.UTF8.GetString(e.Payload).Replace("\"amount\":\"10000\"", $"\"amount\":\"{amount}\"", StringComparison.Ordinal))
                    : e.Payload;
                if (!recompute && e.Sequence > target.Sequence) break;
                var hash = recompute ? Oml.Protocol.Ledger.LedgerHashing.ComputeHash(e.Sequence, prev, e.Type, e.Timestamp, payload) : e.Hash;
                Assert.Equal(SQLitePCL.raw.SQLITE_OK, SQLitePCL.raw.sqlite3_prepare_v2(db, "UPDATE events SET payload = ?1, prev = ?2, hash = ?3 WHERE seq = ?4", out var st));
                using (st)
                {
                    SQLitePCL.raw.sqlite3_bind_blob(st, 1, payload);
                    SQLitePCL.raw.sqlite3_bind_blob(st, 2, prev);
                    SQLitePCL.raw.sqlite3_bind_blob(st, 3, hash);
                    SQLitePCL.raw.sqlite3_bind_int64(st, 4, e.Sequence);
                    Assert.Equal(SQLitePCL.raw.SQLITE_DONE, SQLitePCL.raw.sqlite3_step(st));
                }
                prev = hash;
            }
        }
    }

    /// <summary>
    /// Issue 11, hole 2: after an event was edited in the SQLite file, `oml protocol status` showed the forged supply and
    /// `oml user deposit` spent forged funds; a rewrite that recomputed every later hash passed `oml ledger verify`.
    /// </summary>
    [Fact]
    public void Host_exit_then_release_returns_the_collateral_after_the_notice_only()
    {
        NewAccounts("treasury", "owner", "hostA", "hostB");
        // Short windows: the notice is the rest of the current 2 s epoch plus 1 s to reveal and 1 s to rebut.
        Act("treasury", "protocol", "init", "--set", "EpochSeconds=2", "--set", "RevealWindowSeconds=1", "--set", "RebutWindowSeconds=1");
        foreach (var n in new[] { "owner", "hostA" }) Act("treasury", "owner", "mint", "--to", Addr(n), "--amount", "10000");
        Act("owner", "owner", "register", "--model-id", "m", "--weights-digest", "sha256:m", "--price", "7", "--min-collateral", "1500");
        Act("hostA", "host", "apply", "--model-id", "m", "--collateral", "1500", "--endpoint", "http://x");
        Assert.Contains("rejected (ExitNotAnnounced)", Try("hostA", "host", "release", "--model-id", "m").Err);
        Assert.Contains("rejected (UnknownLicence)", Try("hostB", "host", "exit", "--model-id", "m").Err);
        var exit = Act("hostA", "host", "exit", "--model-id", "m");
        Assert.Equal(1500, exit["collateral"]!.GetValue<long>());
        long releasable = exit["releasableAt"]!.GetValue<long>();
        var licence = Status()["licences"]!.AsArray().Single(l => (string)l!["host"]! == Addr("hostA"))!;
        Assert.Equal(releasable, licence["releasableAt"]!.GetValue<long>());
        Assert.False(licence["collateralReleased"]!.GetValue<bool>());
        Assert.Contains("exiting, releasable", Run("protocol", "status", "--ledger", Ledger).Out);
        Assert.Contains("rejected (ExitAlreadyAnnounced)", Try("hostA", "host", "exit", "--model-id", "m").Err);
        var early = Try("hostA", "host", "release", "--model-id", "m");
        if (DateTimeOffset.UtcNow.ToUnixTimeSeconds() < releasable - 1)
        {
            Assert.Equal(1, early.Code);
            Assert.Contains("rejected (ReleaseNotDue)", early.Err);
        }
        while (DateTimeOffset.UtcNow.ToUnixTimeSeconds() <= releasable) Thread.Sleep(250);
        var released = Act("hostA", "host", "release", "--model-id", "m");
        Assert.Equal(1500, released["released"]!.GetValue<long>());
        Assert.Equal(0, released["slashed"]!.GetValue<long>());
        Assert.Equal(1500, released["withdrawable"]!.GetValue<long>());
        Assert.Contains("rejected (AlreadyReleased)", Try("hostA", "host", "release", "--model-id", "m").Err);
        licence = Status()["licences"]!.AsArray().Single(l => (string)l!["host"]! == Addr("hostA"))!;
        Assert.True(licence["collateralReleased"]!.GetValue<bool>());
        Assert.Equal(1500, licence["releasedAmount"]!.GetValue<long>());
        Act("hostA", "host", "withdraw");
        Assert.Equal(10_000, Get(Status(), "hostA", "balance"));

        // A claim ticket from before commitments were bound to the prover is refused with what to do instead.
        File.WriteAllText(P("old-ticket.json"), $$"""{"modelId":"m","host":"{{Addr("hostA")}}","salt":"0x{{new string('1', 64)}}","commitment":"0x{{new string('2', 64)}}","evidence":"{}"}""");
        var old = Try("hostB", "prover", "claim", "--ticket", P("old-ticket.json"));
        Assert.Equal(1, old.Code);
        Assert.Contains("run `oml prover audit` again", old.Err);
    }

    [Fact]
    public void An_edited_ledger_is_refused_when_opened()
    {
        SetUpLedger();
        ForgeMint("user", 90_000, recompute: false);
        var status = Run("protocol", "status", "--ledger", Ledger);
        Assert.Equal(1, status.Code);
        Assert.Contains("does not verify", status.Err);
        Assert.Contains("event ", status.Err);
        Assert.Single(status.Err.Trim().Split('\n'));
        var deposit = Try("user", "user", "deposit", "--host", Addr("hostA"), "--amount", "50000");
        Assert.Equal(1, deposit.Code);
        Assert.Contains("does not verify", deposit.Err);
        Assert.Equal(1, Run("ledger", "verify", "--ledger", Ledger).Code);
    }

    [Fact]
    public void A_consistent_rewrite_is_caught_by_the_pinned_head()
    {
        SetUpLedger();
        Assert.Equal(0, Run("protocol", "status", "--ledger", Ledger).Code); // pins the head it verified
        ForgeMint("user", 90_000, recompute: true);
        var status = Run("protocol", "status", "--ledger", Ledger);
        Assert.Equal(1, status.Code);
        Assert.Contains("no longer extends the head pinned", status.Err);
        var deposit = Try("user", "user", "deposit", "--host", Addr("hostA"), "--amount", "50000");
        Assert.Equal(1, deposit.Code);
        Assert.Contains("no longer extends the head pinned", deposit.Err);
        var verify = Run("ledger", "verify", "--ledger", Ledger);
        Assert.Equal(1, verify.Code);
        Assert.Contains("no longer extends the head pinned", verify.Out);
    }

    /// <summary>A small pool without a model folder on disk (only the set file matters for deliver --copy-digest).</summary>
    private string PoolOnly()
    {
        var (_, pool) = TinyModelAndPool();
        return pool;
    }
}
