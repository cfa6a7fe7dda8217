using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Oml.Protocol.Crypto;

namespace Oml.Cli.Tests;

/// <summary>
/// A work folder full of bad inputs (damaged safetensors, absurd configs, YAML and JSON garbage, hostile keystores,
/// damaged receipt files) and of outputs that exist already, built once for <see cref="BadInputCorpusTests"/>.
/// </summary>
public sealed class BadInputCorpus : IDisposable
{
    public const string Passphrase = "correct horse battery staple";

    public string Dir { get; } = Directory.CreateTempSubdirectory("oml-bad-inputs-").FullName;

    public string P(params string[] parts) => Path.Combine([Dir, .. parts]);

    public BadInputCorpus()
    {
        var fixture = Path.Combine(RepoRoot.Path, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
        var goodConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture, "config.json")))!.AsObject();
        var goodWeights = File.ReadAllBytes(Path.Combine(fixture, "model.safetensors"));

        void Model(string name, JsonObject config, byte[] weights)
        {
            Directory.CreateDirectory(P(name));
            File.WriteAllText(P(name, "config.json"), config.ToJsonString());
            File.WriteAllBytes(P(name, "model.safetensors"), weights);
        }
        JsonObject Config(Action<JsonObject> edit)
        {
            var c = (JsonObject)goodConfig.DeepClone();
            edit(c);
            return c;
        }

        Model("model", goodConfig, goodWeights);
        // Safetensors: cut off, a header length past the end, a shape that does not match its bytes, a shape whose size overflows, garbage offsets.
        Model("st-truncated", goodConfig, goodWeights[..(goodWeights.Length / 2)]);
        var huge = (byte[])goodWeights.Clone();
        BitConverter.GetBytes(long.MaxValue - 7).CopyTo(huge, 0);
        Model("st-header-length", goodConfig, huge);
        Model("st-shape-bytes", goodConfig, Safetensors("""{"model.embed_tokens.weight":{"dtype":"F32","shape":[512,64],"data_offsets":[0,16]}}""", 16));
        Model("st-overflow", goodConfig, Safetensors("""{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}""", 0));
        Model("st-offsets", goodConfig, Safetensors("""{"x":{"dtype":"F32","shape":[2],"data_offsets":["0",8]}}""", 8));
        Model("st-dtype", goodConfig, Safetensors("""{"x":{"dtype":"F8_E9M9","shape":[2],"data_offsets":[0,2]}}""", 2));
        Model("st-not-json", goodConfig, Safetensors("{\"x\": [1, 2", 0));
        // config.json: absurd sizes (each would have the loader allocate without end), garbage, wrong types.
        Model("cfg-layers", Config(c => c["num_hidden_layers"] = 100_000_000), goodWeights);
        Model("cfg-vocab", Config(c => c["vocab_size"] = 2_000_000_000), goodWeights);
        Model("cfg-implied", Config(c => { c["hidden_size"] = 131072; c["intermediate_size"] = 1 << 20; c["num_hidden_layers"] = 1024; c["head_dim"] = 128; c["num_attention_heads"] = 1024; c["num_key_value_heads"] = 1024; }), goodWeights);
        Model("cfg-type", Config(c => c["hidden_size"] = "sixty-four"), goodWeights);
        Model("cfg-negative", Config(c => c["num_attention_heads"] = -4), goodWeights);
        Model("cfg-arch-type", Config(c => c["architectures"] = new JsonArray(5)), goodWeights);
        Directory.CreateDirectory(P("cfg-garbage"));
        File.WriteAllText(P("cfg-garbage", "config.json"), "{\"hidden_size\": 64,\n  \"vocab_size\": [\n");
        File.WriteAllBytes(P("cfg-garbage", "model.safetensors"), goodWeights);

        // YAML and JSON garbage.
        File.WriteAllText(P("recipe.yaml"), "steps: [1\nlr: {\n");
        File.WriteAllText(P("recipe-tabs.yaml"), "steps: 3\n\tlr: 0.1\n");
        File.WriteAllText(P("lab.yaml"), "name: x\nkind: capacity\nbase_model: [\n");
        File.WriteAllText(P("lab-eof.yaml"), "name: x\ncapacity: {\n");
        File.WriteAllText(P("typed.json"), "{\"types\": {\"EIP712Domain\": [}");
        File.WriteAllText(P("set.omlfp"), "OMLFP garbage\n\0\0\0");

        // Keystores: a good one, then hostile variants of it.
        File.WriteAllText(P("pass.txt"), Passphrase + "\n");
        using (var key = PrivateKey.FromBytes(Keccak256.Hash("bad-input corpus"u8)))
            Keystore.Save(P("good.json"), key, Passphrase, 1000);
        var good = JsonNode.Parse(File.ReadAllText(P("good.json")))!.AsObject();
        void Keystore_(string name, Action<JsonObject> edit)
        {
            var k = (JsonObject)good.DeepClone();
            edit(k);
            File.WriteAllText(P(name), k.ToJsonString());
        }
        JsonObject Scrypt(int n, int r, int p) => new() { ["dklen"] = 32, ["n"] = n, ["r"] = r, ["p"] = p, ["salt"] = new string('a', 64) };
        Keystore_("ks-scrypt-p.json", k => { k["crypto"]!["kdf"] = "scrypt"; k["crypto"]!["kdfparams"] = Scrypt(262144, 8, 65536); });
        Keystore_("ks-scrypt-n.json", k => { k["crypto"]!["kdf"] = "scrypt"; k["crypto"]!["kdfparams"] = Scrypt(1 << 30, 1, 1); });
        Keystore_("ks-scrypt-work.json", k => { k["crypto"]!["kdf"] = "scrypt"; k["crypto"]!["kdfparams"] = Scrypt(1 << 20, 8, 16); });
        Keystore_("ks-pbkdf2-c.json", k => k["crypto"]!["kdfparams"]!["c"] = 2_000_000_000);
        Keystore_("ks-dklen.json", k => k["crypto"]!["kdfparams"]!["dklen"] = 1 << 20);
        Keystore_("ks-address.json", k => k["address"] = new string('1', 40));
        Keystore_("ks-cipher.json", k => k["crypto"]!["cipher"] = "aes-256-gcm");
        File.WriteAllText(P("ks-garbage.json"), "{\"address\": \"");
        File.WriteAllBytes(P("ks-huge.json"), Encoding.UTF8.GetBytes("{\"pad\": \"" + new string('x', 200_000) + "\"}"));

        // Damaged receipt files of a host: a bad line that is not the last one.
        Directory.CreateDirectory(P("receipts"));
        File.WriteAllText(P("receipts", "served.jsonl"), "{\"receipt\": {\"not\": \"a receipt\"}}\n{\"receipt\":\n{}\n");
        Directory.CreateDirectory(P("receipts-book"));
        File.WriteAllText(P("receipts-book", "usage-3.json"), "[1, 2, 3]");

        // Outputs that exist: no command may replace them without --force.
        Directory.CreateDirectory(P("existing-model"));
        File.WriteAllText(P("existing-model", "oml-manifest.json"), "{\"keep\": true}\n");
        File.WriteAllText(P("existing.json"), "keep\n");
        Directory.CreateDirectory(P("existing-tok"));
        File.WriteAllText(P("existing-tok", "tokenizer.json"), "{}\n");
        File.WriteAllText(P("text.txt"), string.Join("\n\n", Enumerable.Repeat("the quick brown fox jumps over the lazy dog", 50)));
    }

    /// <summary>A safetensors file: the 8-byte little-endian header length, the header, then <paramref name="dataBytes"/> zero bytes.</summary>
    private static byte[] Safetensors(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        return [.. BitConverter.GetBytes((long)h.Length), .. h, .. new byte[dataBytes]];
    }

    /// <summary>Every file under the work folder with its SHA-256 (SQLite's transient -wal/-shm files aside).</summary>
    public SortedDictionary<string, string> Snapshot()
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in Directory.EnumerateFiles(Dir, "*", SearchOption.AllDirectories))
        {
            if (f.EndsWith("-wal", StringComparison.Ordinal) || f.EndsWith("-shm", StringComparison.Ordinal)) continue;
            result[Path.GetRelativePath(Dir, f)] = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f)));
        }
        foreach (var d in Directory.EnumerateDirectories(Dir, "*", SearchOption.AllDirectories))
            result[Path.GetRelativePath(Dir, d) + "/"] = "folder";
        return result;
    }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}

/// <summary>
/// Runs each bad input through the CLI in-process and checks the answer: the exit code (2 for the command line, 1
/// for bad data), one line on stderr that says what is wrong, and not one file of the work folder changed, added or removed.
/// </summary>
[Collection(nameof(CliTests))]
public sealed class BadInputCorpusTests(BadInputCorpus corpus) : IClassFixture<BadInputCorpus>
{
    private const int Usage = 2, Failure = 1;

    /// <summary>Name → (arguments, with {D} for the work folder; exit code; a part of the message).</summary>
    private static readonly Dictionary<string, (string Args, int Code, string Message)> Cases = new()
    {
        ["safetensors cut off"] = ("generate --model {D}/st-truncated --ids 1", Failure, "(truncated file?)"),
        ["safetensors header length past the end"] = ("generate --model {D}/st-header-length --ids 1", Failure, "header length"),
        ["safetensors shape does not match its bytes"] = ("generate --model {D}/st-shape-bytes --ids 1", Failure, "needs 131072 bytes but data_offsets give 16"),
        ["safetensors shape overflows"] = ("generate --model {D}/st-overflow --ids 1", Failure, "more elements than any file can hold"),
        ["safetensors offsets not numbers"] = ("generate --model {D}/st-offsets --ids 1", Failure, "are not two integers"),
        ["safetensors unknown dtype"] = ("convert --model {D}/st-dtype --out {D}/converted", Failure, "unsupported dtype 'F8_E9M9'"),
        ["safetensors header not JSON"] = ("score --model {D}/st-not-json --ids 1,2", Failure, "the header is not valid JSON"),
        ["config num_hidden_layers 100000000"] = ("generate --model {D}/cfg-layers --ids 1", Failure, "'num_hidden_layers' is 100000000; it must be in [1, 1,024]"),
        ["config vocab_size 2e9"] = ("score --model {D}/cfg-vocab --ids 1,2", Failure, "'vocab_size' is 2000000000"),
        ["config implies too many parameters"] = ("generate --model {D}/cfg-implied --ids 1", Failure, "the sizes imply"),
        ["config wrong type"] = ("generate --model {D}/cfg-type --ids 1", Failure, "'hidden_size' is not an integer (\"sixty-four\")"),
        ["config negative"] = ("generate --model {D}/cfg-negative --ids 1", Failure, "'num_attention_heads' is -4"),
        ["config architectures of numbers"] = ("generate --model {D}/cfg-arch-type --ids 1", Failure, "config.json: a field has the wrong type"),
        ["config not JSON"] = ("convert --model {D}/cfg-garbage --out {D}/converted", Failure, "cfg-garbage/config.json: not valid JSON"),
        ["recipe YAML cut off"] = ("train --config {D}/recipe.yaml", Failure, "recipe.yaml: line 2: not valid YAML"),
        ["recipe YAML with a tab"] = ("train --config {D}/recipe-tabs.yaml", Failure, "recipe-tabs.yaml: line"),
        ["lab config YAML garbage"] = ("lab run {D}/lab.yaml --out {D}/lab-out", Failure, "lab.yaml: line"),
        ["lab config YAML cut off"] = ("lab run {D}/lab-eof.yaml --out {D}/lab-out", Failure, "lab-eof.yaml: line 3"),
        ["typed data JSON garbage"] = ("account recover --data {D}/typed.json --signature 0x" + new string('1', 128) + "1b", Failure, "typed.json: typed data is not valid JSON"),
        ["fingerprint set garbage"] = ("fingerprints inspect {D}/set.omlfp", Failure, "set.omlfp: corrupt fingerprint-set file"),
        ["keystore scrypt p = 65536"] = ("account show --keystore {D}/ks-scrypt-p.json --passphrase-file {D}/pass.txt", Failure, "scrypt p = 65536 is not in [1, 16]"),
        ["keystore scrypt N = 2^30"] = ("account show --keystore {D}/ks-scrypt-n.json --passphrase-file {D}/pass.txt", Failure, "scrypt N = 1073741824"),
        ["keystore scrypt work"] = ("account show --keystore {D}/ks-scrypt-work.json --passphrase-file {D}/pass.txt", Failure, "scrypt N·r·p"),
        ["keystore PBKDF2 c = 2e9"] = ("account show --keystore {D}/ks-pbkdf2-c.json --passphrase-file {D}/pass.txt", Failure, "PBKDF2 iteration count 2000000000"),
        ["keystore dklen 2^20"] = ("account show --keystore {D}/ks-dklen.json --passphrase-file {D}/pass.txt", Failure, "dklen 1048576 is not 32"),
        ["keystore address of another key"] = ("account show --keystore {D}/ks-address.json --passphrase-file {D}/pass.txt", Failure, "is not the address of its key"),
        ["keystore unknown cipher"] = ("account show --keystore {D}/ks-cipher.json --passphrase-file {D}/pass.txt", Failure, "unsupported cipher 'aes-256-gcm'"),
        ["keystore not JSON"] = ("account show --keystore {D}/ks-garbage.json", Failure, "keystore: not valid JSON"),
        ["keystore too large"] = ("account show --keystore {D}/ks-huge.json", Failure, "too large for a keystore"),
        ["keystore missing"] = ("account show --keystore {D}/nowhere.json", Failure, "no keystore file at"),
        ["existing model folder (convert)"] = ("convert --model {D}/model --out {D}/existing-model", Usage, "existing-model exists; choose another output or give --force"),
        ["existing tokenizer (tokenizer train)"] = ("tokenizer train --input {D}/text.txt --vocab-size 300 --out {D}/existing-tok", Usage, "tokenizer.json exists"),
        ["existing keystore (account new)"] = ("account new --keystore {D}/good.json --passphrase-file {D}/pass.txt", Usage, "good.json exists"),
        ["existing JSON output (trace simulate)"] = ("trace simulate --hosts 4 --coalition 2 --lengths 64 --trials 2 --json-out {D}/existing.json", Usage, "existing.json exists"),
        ["existing output (attack prune)"] = ("attack prune --model {D}/model --fraction 0.5 --out {D}/existing-model", Usage, "existing-model exists"),
        ["unknown option"] = ("generate --model {D}/model --bogus", Usage, "--bogus"),
        ["missing option"] = ("convert --model {D}/model", Usage, "--out"),
        ["bad option value"] = ("generate --model {D}/model --ids 1 --temperature -1", Usage, "temperature must be positive"),
        ["merge survival out of range"] = ("embed --model {D}/model --fingerprints {D}/set.omlfp --out {D}/embedded --merge-survival 1.5", Usage, "--merge-survival is a share of the fingerprints in [0, 1] (0 turns it off)"),
        ["merge survival without the final merge"] = ("embed --model {D}/model --fingerprints {D}/set.omlfp --out {D}/embedded --merge-survival 0.6 --averaging-every step", Usage, "--merge-survival selects the final merge's λ"),
    };

    public static TheoryData<string> CaseNames() => [.. Cases.Keys];

    private (int Code, string Out, string Err) Run(string args) =>
        CliRunner.Run(args.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(a => a.Replace("{D}", corpus.Dir, StringComparison.Ordinal)).ToArray());

    private static void AssertOneLine(string err, string message)
    {
        var text = err.TrimEnd('\n', '\r');
        Assert.False(text.Contains('\n', StringComparison.Ordinal), $"more than one line on stderr:\n{err}");
        Assert.StartsWith("oml: error: ", text);
        Assert.True(text.Contains(message, StringComparison.Ordinal), $"'{message}' is not in: {text}");
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void A_bad_input_gets_its_exit_code_one_line_and_changes_no_file(string name)
    {
        var (args, code, message) = Cases[name];
        var before = corpus.Snapshot();
        var r = Run(args);
        Assert.True(r.Code == code, $"{name}: exit code {r.Code}, expected {code}; stderr: {r.Err}");
        AssertOneLine(r.Err, message);
        Assert.Equal(before, corpus.Snapshot());
    }

    [Fact]
    public void Account_show_without_the_passphrase_marks_the_address_unverified_and_with_it_checks_it()
    {
        var before = corpus.Snapshot();
        var r = Run("account show --keystore {D}/ks-address.json --json");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out)!;
        Assert.False(json["verified"]!.GetValue<bool>());
        Assert.Equal("0x" + new string('1', 40), json["address"]!.GetValue<string>());

        r = Run("account show --keystore {D}/good.json --passphrase-file {D}/pass.txt --json");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(JsonNode.Parse(r.Out)!["verified"]!.GetValue<bool>());

        r = Run("account show --keystore {D}/good.json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("unverified", r.Err, StringComparison.Ordinal);
        Assert.Equal(before, corpus.Snapshot());
    }

    [Fact]
    public void A_damaged_receipt_line_is_named_and_loses_nothing()
    {
        var store = new Oml.Protocol.Hosting.UsageStore(corpus.P("receipts"), new Oml.Protocol.Core.ProtocolDomain(1, "0x" + new string('0', 40)), "m");
        var before = corpus.Snapshot();
        var e = Assert.Throws<InvalidDataException>(() => store.ReadServed());
        Assert.Contains("served.jsonl: line 1 is damaged", e.Message, StringComparison.Ordinal);
        var books = new Oml.Protocol.Hosting.UsageStore(corpus.P("receipts-book"), new Oml.Protocol.Core.ProtocolDomain(1, "0x" + new string('0', 40)), "m");
        e = Assert.Throws<InvalidDataException>(() => books.CommittedBooks());
        Assert.Contains("usage-3.json: not a usage book", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, corpus.Snapshot());
    }

    [Fact]
    public void Convert_replaces_an_existing_folder_only_with_force_and_then_whole()
    {
        var outDir = corpus.P("converted-twice");
        try
        {
            Assert.Equal(0, Run($"convert --model {{D}}/model --out {outDir}").Code);
            File.WriteAllText(Path.Combine(outDir, "oml-manifest.json"), "{\"stale\": true}\n");
            var r = Run($"convert --model {{D}}/model --out {outDir} --dtype bfloat16");
            Assert.Equal(Usage, r.Code);
            Assert.True(File.Exists(Path.Combine(outDir, "oml-manifest.json")));
            r = Run($"convert --model {{D}}/model --out {outDir} --dtype bfloat16 --force");
            Assert.True(r.Code == 0, r.Err);
            Assert.False(File.Exists(Path.Combine(outDir, "oml-manifest.json"))); // no stale manifest beside the new weights
            Assert.Contains("bfloat16", File.ReadAllText(Path.Combine(outDir, "config.json")), StringComparison.Ordinal);
            Assert.Empty(Directory.GetFileSystemEntries(corpus.Dir, ".converted-twice*")); // no temporary folder left
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }
}
