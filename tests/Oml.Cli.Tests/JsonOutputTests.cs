using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>--json</c> on every command whose output is data: the command tree is walked for it, and a set of cheap commands
/// across the groups is run both ways, checking that stdout is exactly one JSON object whose values are the text's.
/// </summary>
[Collection(nameof(CliTests))]
public sealed partial class JsonOutputTests : IDisposable
{
    private const string Kdf = "1000"; // PBKDF2 iterations: small, for test speed only.
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-cli-json-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>Runs a command that must succeed and returns its stdout parsed as one JSON object (trailing text fails the parse).</summary>
    private static JsonObject Json(params string[] args)
    {
        var (code, output, err) = Run(args);
        Assert.True(code == 0, $"oml {string.Join(' ', args)} -> {code}: {err}");
        var node = JsonNode.Parse(output);
        return Assert.IsType<JsonObject>(node);
    }

    private static string Text(params string[] args)
    {
        var (code, output, err) = Run(args);
        Assert.True(code == 0, $"oml {string.Join(' ', args)} -> {code}: {err}");
        return output;
    }

    /// <summary>
    /// Commands whose output is not a data record, with the reason. Every other command must take <c>--json</c>.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> NotData = new Dictionary<string, string>
    {
        ["serve"] = "a server: prints its URL and runs until stopped",
        ["host serve"] = "a server: prints its URL and runs until stopped",
        ["explorer"] = "a server: prints its URL and runs until stopped",
        ["chain node"] = "a server: runs anvil in the foreground until stopped",
        ["tokenize"] = "always prints JSON (an object, or an array for --input)",
        ["trace simulate"] = "--json is the old spelling of --json-out until the next release; the table's data goes to --json-out FILE",
    };

    private static IEnumerable<(string Path, Command Command)> Leaves(Command c, string path = "")
    {
        foreach (var sub in c.Subcommands)
        {
            var p = path.Length == 0 ? sub.Name : $"{path} {sub.Name}";
            if (sub.Subcommands.Count == 0) yield return (p, sub);
            foreach (var x in Leaves(sub, p)) yield return x;
        }
    }

    [Fact]
    public void Every_command_whose_output_is_data_takes_json()
    {
        var leaves = Leaves(Cli.CreateRoot()).ToList();
        Assert.True(leaves.Count > 60, $"only {leaves.Count} commands found: the walk is broken");
        var missing = leaves.Where(l => !NotData.ContainsKey(l.Path) && l.Command.Options.All(o => o.Name != "--json")).Select(l => l.Path).ToList();
        Assert.True(missing.Count == 0, $"commands without --json: {string.Join(", ", missing)}");
        foreach (var (path, cmd) in leaves)
            if (cmd.Options.SingleOrDefault(o => o.Name == "--json") is { } json)
            {
                Assert.IsType<Option<bool>>(json);
                Assert.False(string.IsNullOrWhiteSpace(json.Description), $"oml {path} --json has no description");
            }
        // The exemptions name real commands, which really lack --json (else they belong in the rule).
        var byPath = leaves.ToDictionary(l => l.Path, l => l.Command);
        foreach (var path in NotData.Keys)
        {
            Assert.True(byPath.TryGetValue(path, out var cmd), $"no command 'oml {path}'");
            Assert.DoesNotContain(cmd!.Options, o => o.Name == "--json");
        }
    }

    [Fact]
    public void Info_prints_the_engine_facts_as_json()
    {
        var j = Json("info", "--json");
        Assert.False(string.IsNullOrEmpty(j["libtorch"]!.GetValue<string>()));
        Assert.True(j["cpu_threads"]!.GetValue<int>() >= 1);
        Assert.NotNull(j["blas"]);
        _ = j["fused_attention"]!.GetValue<bool>();
        Assert.True(j["cuda_devices"]!.GetValue<int>() >= 0);
    }

    [Fact]
    public void Tokenizer_train_json_matches_the_text_and_the_files()
    {
        var txt = P("a.txt");
        File.WriteAllText(txt, "the cat sat on the mat\n\nthe dog sat on the log\n\nthe cat and the dog\n");
        var text = Text("tokenizer", "train", "--input", txt, "--vocab-size", "270", "--min-frequency", "1", "--out", P("tok-text"));
        var j = Json("tokenizer", "train", "--input", txt, "--vocab-size", "270", "--min-frequency", "1", "--out", P("tok-json"), "--json");
        var m = TokenizerLine().Match(text);
        Assert.True(m.Success, text);
        Assert.Equal(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), j["tokens"]!.GetValue<int>());
        Assert.Equal(int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), j["special_tokens"]!.GetValue<int>());
        Assert.Equal(int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture), j["merges"]!.GetValue<int>());
        Assert.Equal(3, j["documents"]!.GetValue<int>());
        Assert.Equal(P("tok-json"), j["out"]!.GetValue<string>());
        var tok = Oml.Models.Tokenizers.Tokenizer.FromFolder(P("tok-json"));
        Assert.Equal(tok.VocabSize, j["tokens"]!.GetValue<int>() + j["special_tokens"]!.GetValue<int>());
        Assert.True(j["seconds"]!.GetValue<double>() >= 0);
    }

    [GeneratedRegex(@"^(\d+) tokens \+ (\d+) special, (\d+) merges -> ")]
    private static partial Regex TokenizerLine();

    /// <summary>The llama-tiny fixture with the tests' small BPE tokenizer, in a folder of its own.</summary>
    private string TinyModel()
    {
        var dir = P("tiny");
        if (Directory.Exists(dir)) return dir;
        var fixture = Path.Combine(RepoRoot.Path, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" }) File.Copy(Path.Combine(fixture, f), Path.Combine(dir, f));
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), FingerprintCliTests.TinyTokenizerJson());
        return dir;
    }

    [Fact]
    public void Fingerprints_generate_json_names_the_set_and_its_commitment()
    {
        var model = TinyModel();
        string[] args = ["fingerprints", "generate", "--model", model, "--strategy", "random-word", "--random-word-keys", "--count", "4", "--plaintext"];
        var text = Text([.. args, "--out", P("t.omlfp")]);
        var j = Json([.. args, "--out", P("j.omlfp"), "--json"]);
        Assert.Equal(4, j["count"]!.GetValue<int>());
        Assert.Equal("random-word", j["strategy"]!.GetValue<string>());
        Assert.False(j["encrypted"]!.GetValue<bool>());
        Assert.Equal(P("j.omlfp"), j["file"]!.GetValue<string>());
        var commitmentFile = j["commitment_file"]!.GetValue<string>();
        Assert.Equal(P("j.omlfp") + ".commitment.json", commitmentFile);
        var root = j["commitment_root"]!.GetValue<string>();
        Assert.Contains(root, File.ReadAllText(commitmentFile), StringComparison.Ordinal);
        // The text names the same kind of record (its own set: the owner's secret is fresh each run).
        Assert.Matches(@"wrote 4 fingerprints \(random-word\) to .* \(UNENCRYPTED\)", text);
        var textRoot = Regex.Match(text, "commitment root (\\S+)").Groups[1].Value;
        Assert.Contains(textRoot, File.ReadAllText(P("t.omlfp") + ".commitment.json"), StringComparison.Ordinal);
    }

    [Fact]
    public void Convert_and_attacks_json_match_their_text()
    {
        var model = TinyModel();
        var text = Text("convert", "--model", model, "--out", P("c-text"));
        var j = Json("convert", "--model", model, "--out", P("c-json"), "--dtype", "bfloat16", "--json");
        long parameters = long.Parse(Regex.Match(text, @", ([\d,]+) parameters\)").Groups[1].Value.Replace(",", "", StringComparison.Ordinal), CultureInfo.InvariantCulture);
        Assert.Equal(parameters, j["parameters"]!.GetValue<long>());
        Assert.Equal("bfloat16", j["dtype"]!.GetValue<string>());
        Assert.Contains("model.safetensors", j["weight_files"]!.AsArray().Select(n => n!.GetValue<string>()));

        text = Text("attack", "quantize", "--model", model, "--out", P("q-text"), "--bits", "4", "--group-size", "32");
        j = Json("attack", "quantize", "--model", model, "--out", P("q-json"), "--bits", "4", "--group-size", "32", "--json");
        var m = Regex.Match(text, @"^(\S+): (\d+) tensors, mean MSE (\S+), worst (\S+) \((\S+)\)");
        Assert.True(m.Success, text);
        Assert.Equal(m.Groups[1].Value, j["attack"]!.GetValue<string>());
        Assert.Equal(P("q-json"), j["out"]!.GetValue<string>());
        Assert.Equal(int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), j["tensors"]!.GetValue<int>());
        Assert.Equal(m.Groups[3].Value, j["mean_mse"]!.GetValue<double>().ToString("E3", CultureInfo.InvariantCulture));
        Assert.Equal(m.Groups[4].Value, j["worst_tensor"]!.GetValue<string>());
        Assert.Equal(m.Groups[5].Value, j["worst_mse"]!.GetValue<double>().ToString("E3", CultureInfo.InvariantCulture));

        j = Json("attack", "prune", "--model", model, "--out", P("p-json"), "--fraction", "0.5", "--json");
        Assert.Equal(0.5, j["fraction"]!.GetValue<double>());
        Assert.True(File.Exists(Path.Combine(P("p-json"), "config.json")));
    }

    [Fact]
    public void Ledger_json_init_head_verify_and_bench_agree_with_the_text()
    {
        var path = P("l.oml-ledger");
        var init = Json("ledger", "init", "--ledger", path, "--json");
        Assert.Equal(0, init["height"]!.GetValue<long>());
        Assert.Matches("^[0-9a-f]{32}$", init["ledger_id"]!.GetValue<string>());

        var bench = Json("ledger", "bench", "--ledger", path, "--events", "12", "--batch", "4", "--json");
        Assert.Equal(12, bench["durable"]!["events"]!.GetValue<long>());
        Assert.Equal(4, bench["durable"]!["batch"]!.GetValue<int>());
        Assert.True(bench["durable"]!["events_per_second"]!.GetValue<double>() > 0);
        Assert.Null(bench["nosync"]);

        var headText = Text("ledger", "head", "--ledger", path).Trim().Split(' ');
        var head = Json("ledger", "head", "--ledger", path, "--json");
        Assert.Equal(long.Parse(headText[0], CultureInfo.InvariantCulture), head["height"]!.GetValue<long>());
        Assert.Equal(12, head["height"]!.GetValue<long>());
        Assert.Equal(headText[1], head["head"]!.GetValue<string>());
        Assert.Equal(init["ledger_id"]!.GetValue<string>(), head["ledger_id"]!.GetValue<string>());

        var verify = Json("ledger", "verify", "--ledger", path, "--head", headText[1], "--json");
        Assert.True(verify["intact"]!.GetValue<bool>());
        Assert.Equal(12, verify["events"]!.GetValue<long>());
        Assert.Equal(headText[1], verify["head"]!.GetValue<string>());
        Assert.Equal(headText[1], verify["expected_head"]!.GetValue<string>());
        Assert.Matches("intact: 12 events, head 12 " + headText[1], Text("ledger", "verify", "--ledger", path));

        // A head that was never part of the chain: still one JSON object on stdout, and exit code 1.
        var (code, output, _) = Run("ledger", "verify", "--ledger", path, "--head", new string('a', 64), "--json");
        Assert.Equal(Cli.Failure, code);
        var bad = Assert.IsType<JsonObject>(JsonNode.Parse(output));
        Assert.False(bad["intact"]!.GetValue<bool>());
        Assert.False(string.IsNullOrEmpty(bad["problem"]!.GetValue<string>()));
    }

    [Fact]
    public void Account_json_new_show_sign_and_recover_agree()
    {
        var pass = P("pass.txt");
        File.WriteAllText(pass, "correct horse battery staple\n");
        var data = P("mail.json");
        // The EIP-712 specification's Mail example.
        File.WriteAllText(data, """
            {"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
             "Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],
             "Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},
             "primaryType":"Mail",
             "domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
             "message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}
            """);
        var ks = P("me.json");
        var created = Json("account", "new", "--keystore", ks, "--passphrase-file", pass, "--kdf-iterations", Kdf, "--json");
        string address = created["address"]!.GetValue<string>();
        Assert.Matches("^0x[0-9a-fA-F]{40}$", address);
        Assert.Equal(ks, created["keystore"]!.GetValue<string>());

        var shown = Json("account", "show", "--keystore", ks, "--passphrase-file", pass, "--json");
        Assert.Equal(address, shown["address"]!.GetValue<string>());
        Assert.True(shown["verified"]!.GetValue<bool>());
        Assert.Equal(address, Text("account", "show", "--keystore", ks).Trim());

        var signed = Json("account", "sign-typed-data", "--keystore", ks, "--data", data, "--passphrase-file", pass, "--json");
        string sig = signed["signature"]!.GetValue<string>();
        Assert.Equal(Text("account", "sign-typed-data", "--keystore", ks, "--data", data, "--passphrase-file", pass).Trim(), sig);
        Assert.Equal(address, signed["signer"]!.GetValue<string>());

        var recovered = Json("account", "recover", "--data", data, "--signature", sig, "--json");
        Assert.Equal(address, recovered["address"]!.GetValue<string>());
        Assert.Equal(address, Text("account", "recover", "--data", data, "--signature", sig).Trim());
    }

    [Fact]
    public void Data_instructions_json_counts_match_the_text()
    {
        var corpus = P("corpus");
        Directory.CreateDirectory(corpus);
        var lexicon = new System.Text.StringBuilder();
        for (int i = 0; i < 30; i++)
            lexicon.Append(new JsonObject
            {
                ["source"] = "wordnet", ["word"] = $"word{i}", ["pos"] = "noun", ["definition"] = $"a thing of the kind number {i} in a long list",
                ["synonyms"] = new JsonArray($"term{i}"), ["antonyms"] = new JsonArray(), ["split"] = i % 5 == 0 ? "heldout" : "train",
            }.ToJsonString()).Append('\n');
        File.WriteAllText(Path.Combine(corpus, "lexicon.jsonl"), lexicon.ToString());
        File.WriteAllText(Path.Combine(corpus, "quotations.jsonl"),
            new JsonObject { ["text"] = "the quick brown fox jumps over the lazy dog and runs far away home", ["split"] = "train" }.ToJsonString() + "\n");

        var text = Text("data", "instructions", "--corpus", corpus, "--out", P("i-text"), "--count", "20", "--seed", "3");
        var j = Json("data", "instructions", "--corpus", corpus, "--out", P("i-json"), "--count", "20", "--seed", "3", "--json");
        int train = j["train"]!.GetValue<int>(), held = j["heldout"]!.GetValue<int>();
        Assert.Equal(20, train + held);
        Assert.Matches($@"train\s+{train} examples", text);
        Assert.Matches($@"heldout\s+{held} examples", text);
        var tasks = j["tasks"]!.AsObject();
        Assert.Equal(20, tasks.Sum(kv => kv.Value!.GetValue<int>()));
        foreach (var (task, count) in tasks) Assert.Matches($@"\n  {task}\s+{count!.GetValue<int>()}\n", text);
        Assert.Equal(train, JsonNode.Parse(File.ReadAllText(j["train_file"]!.GetValue<string>()))!.AsArray().Count);
    }

    [Fact]
    public void Trace_leak_budget_json_has_a_row_per_table_row()
    {
        string[] args = ["trace", "leak-budget", "--set-size", "256,1024", "--recall", "0.9", "--near-dup-rate", "0,0.001"];
        var table = Text(args).Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToList();
        var rows = Json([.. args, "--json"])["rows"]!.AsArray();
        Assert.Equal(4, rows.Count);
        Assert.Equal(table.Count, rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            var cells = table[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(int.Parse(cells[0], CultureInfo.InvariantCulture), rows[i]!["set_size"]!.GetValue<int>());
            Assert.Equal(int.Parse(cells[3], CultureInfo.InvariantCulture), rows[i]!["claims"]!.GetValue<int>());
        }
    }
}
