using System.Text.Json.Nodes;

namespace Oml.Cli.Tests;

/// <summary>
/// Leak tracing on real fingerprinted copies (issue 13): four hosts get copies of the llama-tiny fixture through
/// <c>oml owner deliver --allocation tardos:...</c>, and <c>oml prover trace --copy DIR --responder SPEC</c> asks a leaked
/// copy, or a coalition of copies voting over their answers, every pool key and accuses with the protocol's tracer.
/// </summary>
[Collection(nameof(CliTests))]
public sealed class TraceCopiesCliTests : PartiesCliTest
{
    public TraceCopiesCliTests() : base("oml-cli-trace-copies-", "trace copies test passphrase") { }

    private const int Hosts = 4;

    /// <summary>The ledger, the model, a pool of <paramref name="poolSize"/> keys and <see cref="Hosts"/> delivered copies.</summary>
    private string SetUp(int poolSize)
    {
        var fixture = Path.Combine(RepoRoot.Path, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
        var model = P("base");
        Directory.CreateDirectory(model);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(fixture, f), Path.Combine(model, f));
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), FingerprintCliTests.TinyTokenizerJson());
        File.WriteAllBytes(P("secret.bin"), [.. Enumerable.Range(0, 32).Select(i => (byte)(7 * i + 3))]);
        var pool = P("pool.omlfp");
        var g = Run("fingerprints", "generate", "--model", model, "--strategy", "random-word", "--random-word-keys", "--count", poolSize.ToString(),
            "--out", pool, "--secret-file", P("secret.bin"), "--passphrase-file", PassFile, "--kdf-iterations", Kdf, "--insecure-kdf");
        Assert.True(g.Code == 0, g.Err);

        NewAccounts([.. new[] { "treasury", "owner" }.Concat(Enumerable.Range(0, Hosts).Select(j => $"h{j}"))]);
        Act("treasury", "protocol", "init");
        FundAll();
        Act("owner", "owner", "register", "--model-id", "tiny", "--model", model, "--price", "10", "--min-collateral", "1000");
        for (int j = 0; j < Hosts; j++)
        {
            Act($"h{j}", "host", "apply", "--model-id", "tiny", "--collateral", "2000", "--endpoint", $"http://127.0.0.1/h{j}");
            var d = Act("owner", "owner", "deliver", "--model-id", "tiny", "--host", Addresses[$"h{j}"], "--pool", pool, "--allocation", "tardos:0.05",
                "--base", model, "--out", P($"copy-h{j}"), "--epochs", "300");
            Assert.Equal(j, d["ordinal"]!.GetValue<int>());
            Assert.Equal(1.0, d["recall"]!.GetValue<double>());
        }
        return pool;
    }

    private JsonNode Trace(string pool, string copy, string responder) =>
        Act("owner", "prover", "trace", "--model-id", "tiny", "--pool", pool, "--copy", copy, "--responder", responder, "--bound", "1e-3");

    /// <summary>Accuses again from a recorded trace, without a keystore (no accusation is filed).</summary>
    private JsonNode Replay(string pool, string observed, params string[] extra)
    {
        var r = Run(["prover", "trace", "--ledger", Ledger, "--passphrase-file", PassFile, "--model-id", "tiny", "--pool", pool,
            "--observed", observed, "--bound", "1e-3", "--json", .. extra]);
        Assert.True(r.Code == 0, r.Err);
        return JsonNode.Parse(r.Out)!;
    }

    private static HashSet<int> Accused(JsonNode trace) =>
        [.. trace["hosts"]!.AsArray().Where(h => h!["accused"]!.GetValue<bool>()).Select(h => h!["ordinal"]!.GetValue<int>())];

    private static int Top(JsonNode trace) =>
        trace["hosts"]!.AsArray().MaxBy(h => h!["score"]!.GetValue<double>())!["ordinal"]!.GetValue<int>();

    [Fact]
    public void A_leaked_copy_and_a_coalition_of_copies_are_traced_to_their_hosts_and_no_innocent_is_accused()
    {
        const int poolSize = 48;
        var pool = SetUp(poolSize);

        // One host's copy leaked and served plainly: its own host, and only it, is accused.
        var single = Trace(pool, P("copy-h2"), "greedy");
        Assert.Equal(poolSize, single["asked"]!.GetValue<int>());
        Assert.Equal(poolSize, single["observed"]!.AsArray().Count);
        Assert.Equal([2], Accused(single));
        Assert.Equal([Addresses["h2"]], single["accused"]!.AsArray().Select(x => x!.GetValue<string>()));

        // Hosts 1 and 3 pool their copies and refuse whenever the copies disagree: only keys both hold are answered.
        // No innocent host (0, 2) is accused, and the best score is a colluder's.
        var refuse = Trace(pool, P("copy-h1"), $"coalition:refuse:{P("copy-h1")},{P("copy-h3")}");
        Assert.Subset(new HashSet<int> { 1, 3 }, Accused(refuse));
        Assert.Contains(Top(refuse), new[] { 1, 3 });
        var interleave = Trace(pool, P("copy-h0"), $"coalition:interleave:{P("copy-h0")},{P("copy-h2")}");
        Assert.Subset(new HashSet<int> { 0, 2 }, Accused(interleave));
        Assert.Contains(Top(interleave), new[] { 0, 2 });

        // The base model holds no key: nobody is accused.
        Assert.Empty(Accused(Trace(pool, P("base"), "greedy")));

        // The recorded observation accused again without asking anything: the same scores, then other scores.
        File.WriteAllText(P("interleave.json"), interleave.ToJsonString());
        var again = Replay(pool, P("interleave.json"));
        Assert.Equal("symmetric", again["score"]!.GetValue<string>());
        Assert.Equal(interleave["observed"]!.ToJsonString(), again["observed"]!.ToJsonString());
        Assert.Equal(interleave["hosts"]!.ToJsonString(), again["hosts"]!.ToJsonString());
        var asym = Replay(pool, P("interleave.json"), "--score", "asymmetric");
        Assert.Equal("asymmetric", asym["score"]!.GetValue<string>());
        Assert.NotEqual(interleave["hosts"]!.ToJsonString(), asym["hosts"]!.ToJsonString());
        // Every key the pair answered is held by one of them, so their asymmetric scores are the top two.
        var ranked = asym["hosts"]!.AsArray().OrderByDescending(h => h!["score"]!.GetValue<double>()).Select(h => h!["ordinal"]!.GetValue<int>()).Take(2);
        Assert.Equal(new HashSet<int> { 0, 2 }, ranked.ToHashSet());
        var combined = Replay(pool, P("interleave.json"), "--score", "combined");
        // Scores divided by their thresholds: a host is accused exactly at 1 or more, and no innocent is.
        Assert.All(combined["hosts"]!.AsArray(), h => Assert.Equal(h!["score"]!.GetValue<double>() >= 1, h["accused"]!.GetValue<bool>()));
        Assert.Empty(Accused(combined).Except([0, 2]));

        // A recording of another model, or of another pool's size, is refused with one line.
        File.WriteAllText(P("other-model.json"), interleave.ToJsonString().Replace("\"model\":\"tiny\"", "\"model\":\"other\""));
        var wrongModel = Run("prover", "trace", "--ledger", Ledger, "--model-id", "tiny", "--pool", pool, "--passphrase-file", PassFile,
            "--observed", P("other-model.json"));
        Assert.Equal(2, wrongModel.Code);
        Assert.Contains("traced model 'other', not 'tiny'", wrongModel.Err);
        File.WriteAllText(P("short.json"), "[true, false, null]");
        var shortObs = Run("prover", "trace", "--ledger", Ledger, "--model-id", "tiny", "--pool", pool, "--passphrase-file", PassFile,
            "--observed", P("short.json"));
        Assert.Equal(2, shortObs.Code);
        Assert.Contains($"has 3 entries but the pool has {poolSize} keys", shortObs.Err);
    }

    [Fact]
    public void Trace_takes_exactly_one_of_endpoint_and_copy()
    {
        var none = Run("prover", "trace", "--ledger", P("nothing.db"), "--model-id", "tiny", "--pool", P("pool.omlfp"), "--passphrase-file", PassFile);
        Assert.Equal(2, none.Code);
        Assert.Contains("exactly one of --endpoint URL, --copy DIR and --observed FILE", none.Err);
        var both = Run("prover", "trace", "--ledger", P("nothing.db"), "--model-id", "tiny", "--pool", P("pool.omlfp"), "--passphrase-file", PassFile,
            "--endpoint", "http://127.0.0.1:1", "--copy", P("x"));
        Assert.Equal(2, both.Code);
        var responder = Run("prover", "trace", "--ledger", P("nothing.db"), "--model-id", "tiny", "--pool", P("pool.omlfp"), "--passphrase-file", PassFile,
            "--endpoint", "http://127.0.0.1:1", "--responder", "suppress:k=1");
        Assert.Equal(2, responder.Code);
        Assert.Contains("--responder is for --copy", responder.Err);
    }
}
