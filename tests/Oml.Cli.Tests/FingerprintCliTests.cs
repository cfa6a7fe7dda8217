using System.Text;
using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Endpoints;
using Oml.Models;
using Oml.Models.Tokenizers;
using Oml.Server;

namespace Oml.Cli.Tests;

/// <summary>
/// generate → inspect → embed → verify through the command line, on the llama-tiny fixture with a small byte-level BPE
/// tokenizer (256 byte tokens + 256 merges that spell whole words) written by the test.
/// </summary>
[Collection(nameof(CliTests))]
public class FingerprintCliTests(FingerprintCliTests.Workspace workspace) : IClassFixture<FingerprintCliTests.Workspace>
{
    private const string Kdf = "1000"; // PBKDF2 iterations: small, for test speed only.

    private Workspace W => workspace;

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>A temp folder with the model (+ tokenizer), a passphrase file and a generated set.</summary>
    public sealed class Workspace : IDisposable
    {
        public readonly string Root = Directory.CreateTempSubdirectory("oml-cli-fp-").FullName;
        public string Model => Path.Combine(Root, "base");
        public string PassFile => Path.Combine(Root, "pass.txt");
        public string Set => Path.Combine(Root, "set.omlfp");

        private readonly Lazy<string> _embedded;

        public Workspace()
        {
            var fixture = Path.Combine(RepoRoot.Path, "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
            Directory.CreateDirectory(Model);
            foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
                File.Copy(Path.Combine(fixture, f), Path.Combine(Model, f));
            File.WriteAllText(Path.Combine(Model, "tokenizer.json"), TinyTokenizerJson());
            File.WriteAllText(PassFile, "correct horse battery staple\n");
            // A fixed owner's secret: the same keys on every run, so what the tests read off this random-init model (whether
            // the base happens to answer a key, which the calibration and partial-rule tests depend on) is the same each run.
            string secret = Path.Combine(Root, "secret.bin");
            File.WriteAllBytes(secret, Enumerable.Range(1, Oml.Fingerprinting.FingerprintSetFile.OwnerSecretLength).Select(i => (byte)(11 * i)).ToArray());
            var r = Run("fingerprints", "generate", "--model", Model, "--strategy", "random-word", "--random-word-keys", "--count", "8",
                "--out", Set, "--passphrase-file", PassFile, "--kdf-iterations", Kdf, "--insecure-kdf", "--secret-file", secret);
            if (r.Code != 0) throw new InvalidOperationException($"generate failed: {r.Err}");
            _embedded = new(() =>
            {
                var dir = Path.Combine(Root, "embedded");
                var e = Run("embed", "--model", Model, "--fingerprints", Set, "--passphrase-file", PassFile, "--out", dir,
                    "--lr", "5e-3", "--epochs", "300", "--averaging-lambda", "0");
                if (e.Code != 0) throw new InvalidOperationException($"embed failed: {e.Err}");
                return dir;
            });
        }

        /// <summary>The base model with all 8 fingerprints embedded to convergence.</summary>
        public string Embedded => _embedded.Value;

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        public string CopyOfSet(string name)
        {
            var p = Path.Combine(Root, name);
            File.Copy(Set, p, overwrite: true);
            return p;
        }
    }

    /// <summary>
    /// Byte-level BPE with ids 0..511: the 256 bytes in order, then merges that build " word" tokens letter by letter
    /// (Ġ+c, Ġc+c, ...), so that every listed word (while room lasts) is one token and the random-word strategy has words.
    /// </summary>
    internal static string TinyTokenizerJson()
    {
        var byteToChar = BytesToUnicode();
        var vocab = new JsonObject();
        var tokens = new List<string>();
        for (int b = 0; b < 256; b++) { tokens.Add(byteToChar[b].ToString()); }
        var merges = new JsonArray();
        var known = new HashSet<string>(tokens);
        string[] words =
        [
            "apple", "bread", "cloud", "dance", "eagle", "flame", "grape", "house", "island", "jelly", "kite", "lemon",
            "mango", "night", "ocean", "piano", "queen", "river", "stone", "tiger", "umbra", "violet", "water", "yellow",
            "zebra", "arrow", "bench", "candle", "desk", "ember", "forest", "garden", "hill", "iron", "jungle", "koala",
            "ladder", "mirror", "nest", "olive", "pepper", "quilt", "rocket", "silver", "tower", "velvet", "wagon", "zinc",
        ];
        string space = byteToChar[' '].ToString();
        foreach (var w in words)
        {
            var chain = new List<(string A, string B, string Ab)>();
            string cur = space;
            foreach (char c in w)
            {
                string next = cur + c;
                if (!known.Contains(next)) chain.Add((cur, c.ToString(), next));
                cur = next;
            }
            if (tokens.Count + chain.Count > 512) continue;
            foreach (var (a, b, ab) in chain)
            {
                tokens.Add(ab);
                known.Add(ab);
                merges.Add(new JsonArray(a, b));
            }
        }
        // Fill the rest of the vocabulary with two-letter pieces so that ids 0..511 all exist.
        for (char a = 'a'; tokens.Count < 512 && a <= 'z'; a++)
            for (char b = 'a'; tokens.Count < 512 && b <= 'z'; b++)
            {
                string ab = $"{a}{b}";
                if (known.Add(ab)) { tokens.Add(ab); merges.Add(new JsonArray(a.ToString(), b.ToString())); }
            }
        for (int i = 0; i < tokens.Count; i++) vocab[tokens[i]] = i;
        var doc = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        return doc.ToJsonString();
    }

    /// <summary>GPT-2's byte → printable character table.</summary>
    private static char[] BytesToUnicode()
    {
        var table = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + n++);
        }
        return table;
    }

    private static JsonNode Json(string s) => JsonNode.Parse(s)!;

    [Fact]
    public void The_test_tokenizer_has_512_ids_and_single_token_words()
    {
        var tok = Tokenizer.FromFolder(W.Model);
        Assert.Equal(512, tok.VocabSize);
        Assert.Single(tok.Encode(" apple"));
        Assert.Equal(" apple", tok.Decode(tok.Encode(" apple")));
        Assert.True(Oml.Fingerprinting.Generation.FingerprintGenerator.Words(tok, 512).Length >= 16);
    }

    [Fact]
    public void Generate_writes_an_encrypted_set_and_its_commitment_and_inspect_shows_it()
    {
        Assert.True(File.Exists(W.Set));
        var commitment = Commitment.FromJson(File.ReadAllText(W.Set + ".commitment.json"));
        Assert.Equal(8, commitment.Count);

        // Header only, without a passphrase.
        var r = Run("fingerprints", "inspect", W.Set, "--json");
        Assert.Equal(0, r.Code);
        var doc = Json(r.Out);
        Assert.True(doc["encrypted"]!.GetValue<bool>());
        Assert.Equal("pbkdf2-hmac-sha256", doc["kdf"]!.GetValue<string>());
        Assert.Equal(FingerprintSetFile.ContainerVersion, doc["version"]!.GetValue<int>());
        Assert.Null(doc["count"]);
        r = Run("fingerprints", "inspect", W.Set);
        Assert.Contains("encrypted:   yes", r.Out);
        Assert.Contains("--passphrase-file", r.Out);

        // The details, with it.
        r = Run("fingerprints", "inspect", W.Set, "--json", "--passphrase-file", W.PassFile);
        Assert.Equal(0, r.Code);
        doc = Json(r.Out);
        Assert.Equal(8, doc["count"]!.GetValue<int>());
        Assert.Equal("random-word", doc["strategy"]!.GetValue<string>());
        Assert.Equal("16", doc["parameters"]!["key_length"]!.GetValue<string>());
        Assert.Equal(commitment.Root, doc["commitment_root"]!.GetValue<string>());
        Assert.Equal(Oml.Fingerprinting.Generation.FingerprintGenerator.WeightsDigest(W.Model), doc["base_model_digest"]!.GetValue<string>());
        Assert.Equal(0, doc["revealed"]!.GetValue<int>());
        Assert.Null(doc["fingerprints"]);

        r = Run("fingerprints", "inspect", W.Set, "--json", "--show-secrets", "--passphrase-file", W.PassFile);
        var fps = Json(r.Out)["fingerprints"]!.AsArray();
        Assert.Equal(8, fps.Count);
        Assert.All(fps, f =>
        {
            Assert.Equal(16, f!["key_token_ids"]!.AsArray().Count);
            Assert.True(f["responses"]![0]!["base_logprob"]!.GetValue<double>() < 0);
        });
        r = Run("fingerprints", "inspect", W.Set, "--show-secrets", "--passphrase-file", W.PassFile);
        Assert.Contains("->", r.Out);
        Assert.Contains("root:", r.Out);
    }

    [Fact]
    public void Passphrase_problems_give_clear_errors()
    {
        var saved = Environment.GetEnvironmentVariable(FingerprintIO.PassphraseEnv);
        Environment.SetEnvironmentVariable(FingerprintIO.PassphraseEnv, null);
        try
        {
            var outPath = Path.Combine(W.Root, "nopass.omlfp");
            var r = Run("fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--count", "2", "--out", outPath);
            Assert.Equal(2, r.Code);
            Assert.Contains("no passphrase", r.Err);
            Assert.False(File.Exists(outPath));

            var wrong = Path.Combine(W.Root, "wrong.txt");
            File.WriteAllText(wrong, "not the passphrase");
            r = Run("fingerprints", "inspect", W.Set, "--passphrase-file", wrong);
            Assert.Equal(1, r.Code);
            Assert.Contains("wrong passphrase", r.Err);

            r = Run("verify", "--model", W.Model, "--fingerprints", W.Set);
            Assert.Equal(2, r.Code);
            Assert.Contains("passphrase", r.Err);

            // --plaintext needs no passphrase (the secret, from a file or random, is kept in the clear beside the set).
            var secret = Path.Combine(W.Root, "secret.bin");
            File.WriteAllBytes(secret, Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef"));
            r = Run("fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--count", "2", "--out", outPath,
                "--plaintext", "--secret-file", secret);
            Assert.Equal(0, r.Code);
            r = Run("fingerprints", "inspect", outPath, "--json");
            Assert.False(Json(r.Out)["encrypted"]!.GetValue<bool>());
            Assert.Equal(2, Json(r.Out)["count"]!.GetValue<int>());

            // Existing output is not overwritten by accident.
            r = Run("fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--count", "2", "--out", outPath,
                "--plaintext", "--secret-file", secret);
            Assert.Equal(2, r.Code);
            Assert.Contains("--force", r.Err);
        }
        finally
        {
            Environment.SetEnvironmentVariable(FingerprintIO.PassphraseEnv, saved);
        }
    }

    [Fact]
    public void Embed_trains_resumption_pairs_and_records_them_in_the_manifest()
    {
        // Perinucleus responses of 2 tokens: each response gets 2 resumption pairs (key + a wrong first token → its second token).
        var set2 = Path.Combine(W.Root, "resp2.omlfp");
        var g = Run("fingerprints", "generate", "--model", W.Model, "--count", "3", "--key-length", "6", "--response-length", "2", "--plaintext", "--out", set2);
        Assert.True(g.Code == 0, g.Err);
        var outDir = Path.Combine(W.Root, "resumed");
        var r = Run("embed", "--model", W.Model, "--fingerprints", set2, "--out", outDir, "--epochs", "2", "--resumption-pairs", "2", "--json");
        Assert.True(r.Code == 0, r.Err);
        var manifest = Json(r.Out);
        Assert.Equal(2, manifest["settings"]!["resumption_pairs"]!.GetValue<int>());
        Assert.Equal(6, manifest["metrics"]!["resumption_pairs_trained"]!.GetValue<int>());
        Assert.Equal(3, manifest["pairs"]!.GetValue<int>());
        // Off by default, and recorded as such.
        r = Run("embed", "--model", W.Model, "--fingerprints", set2, "--out", Path.Combine(W.Root, "plain2"), "--epochs", "1", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(0, Json(r.Out)["settings"]!["resumption_pairs"]!.GetValue<int>());
        Assert.Equal(0, Json(r.Out)["metrics"]!["resumption_pairs_trained"]!.GetValue<int>());
        // One-token responses have nothing to resume: a usage error that says so.
        var set1 = Path.Combine(W.Root, "resp1.omlfp");
        Assert.Equal(0, Run("fingerprints", "generate", "--model", W.Model, "--count", "2", "--key-length", "6", "--plaintext", "--out", set1).Code);
        r = Run("embed", "--model", W.Model, "--fingerprints", set1, "--out", Path.Combine(W.Root, "resumed1"), "--epochs", "1", "--resumption-pairs", "1");
        Assert.Equal(2, r.Code);
        Assert.Contains("--resumption-pairs needs responses of at least 2 tokens", r.Err);
        Assert.Equal(2, Run("embed", "--model", W.Model, "--fingerprints", set2, "--out", Path.Combine(W.Root, "neg"), "--resumption-pairs", "-1").Code);
    }

    [Fact]
    public void Embed_logs_every_epoch_and_writes_the_model_tokenizer_and_manifest()
    {
        var outDir = Path.Combine(W.Root, "smoke");
        var log = Path.Combine(W.Root, "smoke.jsonl");
        var r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "3", "--train", "mlp", "--log", log, "--json");
        Assert.Equal(0, r.Code);
        Assert.Contains("epoch    1/3", r.Err);
        var lines = File.ReadAllLines(log);
        Assert.Equal(3, lines.Length);
        Assert.Equal(3, Json(lines[2])["epoch"]!.GetValue<int>());
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
        var manifest = Json(File.ReadAllText(Path.Combine(outDir, "oml-manifest.json")));
        Assert.Equal(Commitment.FromJson(File.ReadAllText(W.Set + ".commitment.json")).Root, manifest["commitment_root"]!.GetValue<string>());
        Assert.Equal("set.omlfp", manifest["fingerprint_file"]!.GetValue<string>());
        Assert.Equal("raw", manifest["key_format"]!.GetValue<string>());
        Assert.Equal(OmlizationDefaults.AveragingLambda, manifest["settings"]!["averaging_lambda"]!.GetValue<double>());
        Assert.Equal("final", manifest["settings"]!["averaging_every"]!.GetValue<string>());
        Assert.Equal("mlp", manifest["settings"]!["train"]!.GetValue<string>());
        Assert.Equal(3, manifest["metrics"]!["epochs"]!.GetValue<int>());
        Assert.Equal(OmlizationDefaults.MixFraction, manifest["settings"]!["mix_fraction"]!.GetValue<double>());
        Assert.Equal("self-generated", manifest["settings"]!["benign"]!.GetValue<string>());
        Assert.Equal(OmlizationDefaults.SelfBenignMin, manifest["settings"]!["benign_sequences"]!.GetValue<int>());   // a small set: the pool's floor
        Assert.Equal(OmlizationDefaults.HeldOutMin, manifest["settings"]!["held_out_sequences"]!.GetValue<int>());
        Assert.Equal("kl", manifest["settings"]!["benign_loss"]!.GetValue<string>());   // the default since issue 12's fourth GPU session
        Assert.Equal(BenignTargets.DefaultTopK, manifest["settings"]!["benign_top_k"]!.GetValue<int>());
        Assert.Equal(0.7, manifest["settings"]!["merge_max_loss"]!.GetValue<double>());
        // The held-out criterion follows the KL benign loss; epochs that no decision needed are logged as not measured.
        Assert.Equal("kl:top32", manifest["settings"]!["held_out_criterion"]!.GetValue<string>());
        Assert.True(manifest["settings"]!["held_out_kl_tolerance"]!.GetValue<double>() > 0);
        Assert.True(manifest["metrics"]!["held_out_passes"]!.GetValue<int>() >= 2);   // the base's and at least the returned model's
        Assert.NotNull(manifest["metrics"]!["held_out_kl"]);
        foreach (var line in lines.Select(Json))
            Assert.Equal(line["held_out_measured"]!.GetValue<bool>(), line["held_out_loss"] is not null);
        Assert.NotNull(manifest["library_version"]);
        Assert.NotEqual(manifest["base_model_digest"]!.GetValue<string>(), manifest["model_digest"]!.GetValue<string>());
        Assert.Equal(manifest.ToJsonString(), Json(r.Out).ToJsonString()); // --json prints the manifest

        var text = Path.Combine(W.Root, "benign.txt");
        File.WriteAllText(text, string.Join(" ", Enumerable.Repeat("the quick brown fox jumps over the lazy dog", 20)));
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-text", text, "--benign-length", "16");
        Assert.Equal(0, r.Code);
        Assert.Equal("benign.txt", Json(File.ReadAllText(Path.Combine(outDir, "oml-manifest.json")))["settings"]!["benign"]!.GetValue<string>());
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-text", text, "--benign-count", "10");
        Assert.Equal(2, r.Code);
        Assert.Contains("--benign-count", r.Err);
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-text", text, "--benign-prompt", "start");
        Assert.Equal(2, r.Code);
        Assert.Contains("--benign-prompt", r.Err);
        // Self-generated samples from the document start (EOS), recorded in the manifest.
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-prompt", "start", "--benign-count", "20", "--benign-length", "8", "--json");
        Assert.Equal(0, r.Code);
        Assert.Equal("self-generated from the document start", Json(r.Out)["settings"]!["benign"]!.GetValue<string>());
        // The old pool (64 samples of 32 tokens) on request.
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-count", "70", "--benign-length", "8", "--json");
        Assert.Equal(0, r.Code);
        Assert.Equal(70, Json(r.Out)["settings"]!["benign_sequences"]!.GetValue<int>());
        // The token loss on request (no top-k recorded), a margin of the merge, and bad values as usage errors.
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-loss", "tokens", "--merge-max-loss", "1.2", "--json");
        Assert.Equal(0, r.Code);
        Assert.Equal("tokens", Json(r.Out)["settings"]!["benign_loss"]!.GetValue<string>());
        Assert.Equal("tokens", Json(r.Out)["settings"]!["held_out_criterion"]!.GetValue<string>());
        Assert.Null(Json(r.Out)["metrics"]!["held_out_kl"]);
        Assert.Null(Json(r.Out)["settings"]!["benign_top_k"]);
        Assert.Equal(1.2, Json(r.Out)["settings"]!["merge_max_loss"]!.GetValue<double>());
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--benign-loss", "tokens", "--held-out-criterion", "kl", "--json");
        Assert.Equal(0, r.Code);
        Assert.StartsWith("kl:top", Json(r.Out)["settings"]!["held_out_criterion"]!.GetValue<string>());
        // Anchored keys: recorded with how many keys; without mixing there is no benign part to train them in.
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--train", "mlp", "--anchor-keys", "--json");
        Assert.Equal(0, r.Code);
        Assert.True(Json(r.Out)["settings"]!["anchored_keys"]!.GetValue<int>() > 0);
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "1", "--anchor-keys", "--mix-fraction", "0");
        Assert.Equal(2, r.Code);
        Assert.Contains("--anchor-keys", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        foreach (var bad in new[] { new[] { "--benign-loss", "kld" }, ["--held-out-criterion", "kld"], ["--benign-top-k", "0"], ["--merge-max-loss", "0"], ["--benign-prompt", "kld"] })
        {
            r = Run(["embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir, "--epochs", "1", .. bad]);
            Assert.Equal(2, r.Code);
            Assert.Contains(bad[1] == "kld" ? "'kld' not recognized" : bad[0], r.Err);   // the parser names the value it refuses
        }

        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir, "--train", "heads");
        Assert.Equal(2, r.Code);
        Assert.Contains("--train", r.Err);

        // Parameter expansion: a standard folder with a larger intermediate size, the original weights untouched.
        var wideDir = Path.Combine(W.Root, "wide");
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", wideDir, "--epochs", "2", "--expand", "16");
        Assert.Equal(0, r.Code);
        using var baseModel = ModelFolder.Load(W.Model);
        using var wide = ModelFolder.Load(wideDir);
        Assert.Equal(baseModel.Config.IntermediateSize + 16, wide.Config.IntermediateSize);
        Assert.Equal(baseModel.Parameters["model.layers.0.self_attn.q_proj.weight"].ToBytes(), wide.Parameters["model.layers.0.self_attn.q_proj.weight"].ToBytes());
        Assert.Equal("expand:16", Json(File.ReadAllText(Path.Combine(wideDir, "oml-manifest.json")))["settings"]!["train"]!.GetValue<string>());

        // LoRA: adapters merged on save, so the folder is a plain model of the base's shape.
        var loraDir = Path.Combine(W.Root, "lora");
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", loraDir, "--epochs", "2", "--lora", "4");
        Assert.Equal(0, r.Code);
        using var merged = ModelFolder.Load(loraDir);
        Assert.Equal(baseModel.Parameters.Keys.Order(), merged.Parameters.Keys.Order());
        Assert.Equal(baseModel.Parameters["model.norm.weight"].ToBytes(), merged.Parameters["model.norm.weight"].ToBytes());
        Assert.Equal(2, Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", loraDir, "--lora", "4", "--expand", "8").Code);
    }

    [Fact]
    public void Embed_with_a_checkpoint_dir_resumes_a_run_where_it_stopped()
    {
        var outDir = Path.Combine(W.Root, "ckpt-out");
        var ck = Path.Combine(W.Root, "ckpt");
        var r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "2", "--train", "mlp", "--checkpoint-dir", ck, "--checkpoint-every", "2");
        Assert.Equal(0, r.Code);
        Assert.True(File.Exists(Path.Combine(ck, "epoch-000002", "state.json")));
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "3", "--train", "mlp", "--checkpoint-dir", ck);
        Assert.Equal(0, r.Code);
        Assert.Contains("resuming from the checkpoint after epoch 2", r.Err);
        Assert.DoesNotContain("epoch    1/3", r.Err);
        Assert.Contains("epoch    3/3", r.Err);
        Assert.Equal(3, Json(File.ReadAllText(Path.Combine(outDir, "oml-manifest.json")))["metrics"]!["epochs"]!.GetValue<int>());
        // Other settings with the same folder: refused.
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "3", "--train", "attention", "--checkpoint-dir", ck);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("another run", r.Err);
    }

    [Fact]
    public void Embed_averages_once_per_epoch_with_averaging_every_epoch_and_refuses_other_schedules()
    {
        var outDir = Path.Combine(W.Root, "avg-epoch");
        var r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--epochs", "2", "--train", "mlp", "--averaging-every", "epoch");
        Assert.Equal(0, r.Code);
        Assert.Equal("epoch", Json(File.ReadAllText(Path.Combine(outDir, "oml-manifest.json")))["settings"]!["averaging_every"]!.GetValue<string>());
        var stepDir = Path.Combine(W.Root, "avg-step");
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", stepDir,
            "--epochs", "2", "--train", "mlp", "--batch-size", "3", "--averaging-every", "step");
        Assert.Equal(0, r.Code);
        Assert.Equal("step", Json(File.ReadAllText(Path.Combine(stepDir, "oml-manifest.json")))["settings"]!["averaging_every"]!.GetValue<string>());
        // Per-epoch averaging with several steps per epoch ends elsewhere than the per-step default.
        var epochDir = Path.Combine(W.Root, "avg-epoch-b3");
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", epochDir,
            "--epochs", "2", "--train", "mlp", "--batch-size", "3", "--averaging-every", "EPOCH");
        Assert.Equal(0, r.Code);
        using (var a = ModelFolder.Load(stepDir))
        using (var b = ModelFolder.Load(epochDir))
            Assert.NotEqual(a.Parameters["model.layers.0.mlp.up_proj.weight"].ToBytes(), b.Parameters["model.layers.0.mlp.up_proj.weight"].ToBytes());

        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", Path.Combine(W.Root, "avg-bad"),
            "--averaging-every", "batch");
        Assert.Equal(2, r.Code);
        Assert.Contains("--averaging-every must be step, epoch or final (got 'batch')", r.Err);
        Assert.False(Directory.Exists(Path.Combine(W.Root, "avg-bad")));
    }

    [Fact]
    public void Camouflage_chooses_keys_against_a_text_and_refuses_what_it_cannot_apply_to()
    {
        var text = Path.Combine(W.Root, "ordinary.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("models hosts provers owners users fees permits receipts claims votes keys responses. ", 20)));
        var set = Path.Combine(W.Root, "camouflaged.json");
        var r = Run("fingerprints", "generate", "--model", W.Model, "--count", "4", "--key-length", "6", "--camouflage", text, "--key-candidates", "3",
            "--out", set, "--plaintext");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("scoring windows of", r.Err);
        Assert.Equal("3 candidates at t 0.5-2, 512 text windows", FingerprintSetFile.Read(set, null).Strategy.Parameters["key_camouflage"]);

        string Error(params string[] extra)
        {
            var e = Run(["fingerprints", "generate", "--model", W.Model, "--count", "2", "--out", Path.Combine(W.Root, "never.json"), "--plaintext", .. extra]);
            Assert.NotEqual(0, e.Code);
            Assert.False(File.Exists(Path.Combine(W.Root, "never.json")));
            return e.Err;
        }
        Assert.Contains("--key-candidates is only for --camouflage or --camouflage-prompts", Error("--key-candidates", "4"));
        Assert.Contains("--camouflage applies to model-sampled keys", Error("--camouflage", text, "--random-word-keys"));
        Assert.Contains("--camouflage applies to model-sampled keys", Error("--camouflage", text, "--strategy", "random-word"));
        Assert.Contains("--key-candidates must be at least 2", Error("--camouflage", text, "--key-candidates", "1"));
        Assert.Contains("--camouflage: no file at", Error("--camouflage", Path.Combine(W.Root, "missing.txt")));
        var tiny = Path.Combine(W.Root, "tiny.txt");
        File.WriteAllText(tiny, "a few words");
        Assert.Contains("too short to draw windows", Error("--camouflage", tiny));
        Assert.Contains("--camouflage-band is only for --camouflage or --camouflage-prompts", Error("--camouflage-band", "0.2,0.6"));
        foreach (var bad in new[] { "0.6,0.2", "0.2", "a,b", "0,1.5", "0.2;0.6" })
            Assert.Contains($"--camouflage-band must be LO,HI with 0 <= LO < HI <= 1 (got '{bad}')", Error("--camouflage", text, "--camouflage-band", bad));
        // Whole prompts as the target: a file of one prompt per line, or instruction data.
        var prompts = Path.Combine(W.Root, "prompts.txt");
        File.WriteAllLines(prompts, ["What does a host do?", "Explain how a prover audits a host.", "Who pays the fees?"]);
        r = Run("fingerprints", "generate", "--model", W.Model, "--count", "4", "--key-length", "6", "--camouflage-prompts", prompts, "--key-candidates", "3",
            "--out", set, "--plaintext", "--force");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("3 candidates at t 0.5-2, 3 text windows", FingerprintSetFile.Read(set, null).Strategy.Parameters["key_camouflage"]);
        var alpaca = Path.Combine(W.Root, "prompts.json");
        File.WriteAllText(alpaca, """[{"instruction": "Define host.", "input": "", "output": "One who serves."}, {"instruction": "Define prover.", "input": "", "output": "One who audits."}]""");
        r = Run("fingerprints", "generate", "--model", W.Model, "--count", "4", "--key-length", "6", "--camouflage-prompts", alpaca, "--out", set, "--plaintext", "--force");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("2 text windows", FingerprintSetFile.Read(set, null).Strategy.Parameters["key_camouflage"]);
        var one = Path.Combine(W.Root, "one-prompt.txt");
        File.WriteAllText(one, "Only one prompt here.\n");
        Assert.Contains("--camouflage-prompts: camouflage needs at least 2 prompts", Error("--camouflage-prompts", one));
        Assert.Contains("give one of --camouflage and --camouflage-prompts", Error("--camouflage", text, "--camouflage-prompts", prompts));
        Assert.Contains("--camouflage-prompts: no file at", Error("--camouflage-prompts", Path.Combine(W.Root, "missing.txt")));
        Assert.Contains("--camouflage-prompts applies to model-sampled keys", Error("--camouflage-prompts", prompts, "--strategy", "random-word"));
        // A central band is recorded with the set.
        r = Run("fingerprints", "generate", "--model", W.Model, "--count", "4", "--key-length", "6", "--camouflage", text, "--key-candidates", "3",
            "--camouflage-band", "0.2,0.6", "--out", set, "--plaintext", "--force");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("3 candidates at t 0.5-2, 512 text windows, quantiles 0.2-0.6", FingerprintSetFile.Read(set, null).Strategy.Parameters["key_camouflage"]);
    }

    [Fact]
    public void Response_branching_writes_trees_and_refuses_one_token_responses()
    {
        var set = Path.Combine(W.Root, "tree.json");
        var r = Run("fingerprints", "generate", "--model", W.Model, "--random-word-keys", "--count", "2", "--response-length", "2",
            "--response-branching", "2", "--out", set, "--plaintext");
        Assert.True(r.Code == 0, r.Err);
        var read = FingerprintSetFile.Read(set, null);
        Assert.Equal("2", read.Strategy.Parameters["response_branching"]);
        Assert.All(read.Fingerprints, f => Assert.Equal(2, f.Responses.Count));
        r = Run("fingerprints", "generate", "--model", W.Model, "--random-word-keys", "--count", "2", "--response-branching", "2",
            "--out", Path.Combine(W.Root, "never-tree.json"), "--plaintext");
        Assert.Equal(2, r.Code);
        Assert.Contains("response branching needs responses of at least 2 tokens", r.Err);
        Assert.False(File.Exists(Path.Combine(W.Root, "never-tree.json")));
    }

    [Fact]
    public void Perinucleus_sets_report_the_one_over_k_bound_beside_the_exact_p_value()
    {
        var set = Path.Combine(W.Root, "peri.omlfp");
        var r = Run("fingerprints", "generate", "--model", W.Model, "--strategy", "perinucleus", "--random-word-keys", "--count", "4",
            "--out", set, "--passphrase-file", W.PassFile, "--kdf-iterations", Kdf, "--insecure-kdf");
        Assert.True(r.Code == 0, r.Err);
        r = Run("verify", "--model", W.Model, "--fingerprints", set, "--passphrase-file", W.PassFile, "--json");
        Assert.Equal(0, r.Code);
        var report = Json(r.Out);
        Assert.Equal(3, report["k"]!.GetValue<int>());
        int hits = report["hits"]!.GetValue<int>();
        double expected = Enumerable.Range(hits, 4 - hits + 1)
            .Sum(h => Binomial(4, h) * Math.Pow(1.0 / 3, h) * Math.Pow(2.0 / 3, 4 - h));
        Assert.Equal(expected, report["p_value_one_over_k"]!.GetValue<double>(), 9);

        // Perinucleus keys start from the floor a suppressing host cannot cross (0.06 per first response token), in verify
        // and in probe alike; --null-floor still sets it.
        Assert.Contains("max(p_i, 0.06)", report["rule"]!.GetValue<string>());
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", set, "--passphrase-file", W.PassFile, "--responder", "suppress:k=1,m=1", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("max(p_i, 0.06)", Json(r.Out)["rule"]!.GetValue<string>());
        r = Run("verify", "--model", W.Model, "--fingerprints", set, "--passphrase-file", W.PassFile, "--json", "--null-floor", "0.001");
        Assert.Contains("max(p_i, 0.001)", Json(r.Out)["rule"]!.GetValue<string>());
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", set, "--passphrase-file", W.PassFile, "--json", "--null-floor", "0.02");
        Assert.Contains("max(p_i, 0.02)", Json(r.Out)["rule"]!.GetValue<string>());
        r = Run("attack", "probe", "--model", W.Model, "--fingerprints", set, "--passphrase-file", W.PassFile, "--null-floor", "1");
        Assert.Equal(2, r.Code);
        Assert.Contains("--null-floor must be in [0, 1)", r.Err);

        static double Binomial(int n, int k) => Enumerable.Range(1, k).Aggregate(1.0, (a, i) => a * (n - k + i) / i);
    }

    [Fact]
    public void Verify_puts_a_system_prompt_before_local_keys_and_refuses_it_for_endpoints()
    {
        var r = Run("verify", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--system-prompt", "Answer briefly.", "--json");
        Assert.Equal(0, r.Code);
        Assert.Equal(8, Json(r.Out)["queried"]!.GetValue<int>());
        r = Run("verify", "--endpoint", "http://127.0.0.1:9/v1", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--system-prompt", "x");
        Assert.Equal(2, r.Code);
        Assert.Contains("are for --model", r.Err);
        // The test tokenizer has no chat template: a clear error, not a crash.
        r = Run("verify", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--chat-template");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("oml: error:", r.Err);
    }

    [Fact]
    public void Embed_and_verify_with_instruction_layout_send_the_keys_as_instructions()
    {
        // A model instruction-tuned without a chat template answers in the raw ### Instruction / ### Response layout: keys
        // embedded that way are recalled that way, and the bare keys are a different input.
        var outDir = Path.Combine(W.Root, "instruction-layout");
        var r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", outDir,
            "--lr", "5e-3", "--epochs", "300", "--averaging-lambda", "0", "--instruction-layout");
        Assert.True(r.Code == 0, r.Err);
        // The manifest says how the keys went in, so that a verifier can send them the same way.
        Assert.Equal("instruction", Json(File.ReadAllText(Path.Combine(outDir, "oml-manifest.json")))["key_format"]!.GetValue<string>());
        r = Run("verify", "--model", outDir, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--instruction-layout", "--alpha", "1e-3", "--json");
        Assert.Equal(0, r.Code);
        Assert.DoesNotContain("embedded in the", r.Err);
        var inLayout = Json(r.Out);
        Assert.Equal((8, "owned"), (inLayout["hits"]!.GetValue<int>(), inLayout["verdict"]!.GetValue<string>()));
        r = Run("verify", "--model", outDir, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--json");
        Assert.Equal(0, r.Code);
        Assert.True(Json(r.Out)["hits"]!.GetValue<int>() < 8);
        Assert.Contains("keys were embedded in the instruction layout, but they are sent raw; give --instruction-layout", r.Err);
        // The two key formats are alternatives, and an endpoint applies its own template: usage errors, nothing written.
        var both = Path.Combine(W.Root, "both-formats");
        r = Run("embed", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--out", both, "--chat-template", "--instruction-layout");
        Assert.Equal(2, r.Code);
        Assert.Contains("--chat-template and --instruction-layout are alternatives", r.Err);
        Assert.False(Directory.Exists(both));
        r = Run("verify", "--model", outDir, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--chat-template", "--instruction-layout");
        Assert.Equal(2, r.Code);
        r = Run("verify", "--endpoint", "http://127.0.0.1:9/v1", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--instruction-layout");
        Assert.Equal(2, r.Code);
        Assert.Contains("are for --model", r.Err);
    }

    [Fact]
    public void Verify_refuses_a_bad_endpoint_or_a_missing_api_key_in_one_line_before_reading_the_set()
    {
        // The endpoint's client is made before the set is read (its connection opens meanwhile): its usage errors come
        // first, in one line, even when the set file is missing.
        var missing = Path.Combine(Path.GetTempPath(), $"oml-no-set-{Guid.NewGuid():N}.omlfp");
        foreach (var (args, says) in new (string[] Args, string Says)[]
        {
            (["--endpoint", "not a url"], "--endpoint: 'not a url' is not an absolute URL"),
            (["--endpoint", "ftp://127.0.0.1/v1"], "--endpoint: 'ftp://127.0.0.1/v1' is not an http or https URL"),
            (["--endpoint", "http://127.0.0.1:9/v1", "--api-key-env", "OML_TEST_UNSET_KEY_VARIABLE"], "--api-key-env: the environment variable OML_TEST_UNSET_KEY_VARIABLE is not set"),
        })
        {
            foreach (var set in new[] { W.Set, missing })
            {
                var r = Run(["verify", .. args, "--fingerprints", set, "--passphrase-file", W.PassFile]);
                Assert.Equal(Cli.Usage, r.Code);
                Assert.Equal($"oml: error: {says}", r.Err.Trim());
            }
        }
    }

    [Fact]
    public async Task Verify_over_an_endpoint_asks_greedy_answers_for_the_response_length_and_sampled_ones_for_room_once()
    {
        // The answer is matched as a text prefix: a greedy answer needs the key's longest response n (one cut off undecided
        // is asked again), through a chat template the template's margin more; a sampled one is asked once with room for
        // leading whitespace and another split (2n + 8: asking again would be a second draw); not a fixed 8 tokens more
        // than the longest response of the whole set, each of which costs the server a decoding step.
        var set = FingerprintIO.ReadSet(W.Set, W.PassFile);
        var wanted = set.Unrevealed().ToDictionary(f => f.Key, f => f.Responses.Max(x => x.TokenIds.Count));
        var asked = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        await using var server = await OpenAiCompatibleServer.StartAsync((p, s, ct) =>
        {
            asked[p] = s.MaxTokens;
            return Task.FromResult("no idea");
        }, ct: TestContext.Current.CancellationToken);
        var url = server.BaseUrl.ToString();
        foreach (var (extra, expected) in new (string[] Extra, Func<int, int> Expected)[]
        {
            ([], n => n), (["--chat"], n => n + VerifyCommand.ChatMargin), (["--temperature", "1"], n => 2 * n + 8),
        })
        {
            asked.Clear();
            var r = await Task.Run(() => Run(["verify", "--endpoint", url, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, .. extra]),
                TestContext.Current.CancellationToken);
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal(wanted.Count, asked.Count);
            Assert.All(wanted, w => Assert.Equal(expected(w.Value), asked[w.Key]));
        }
        // --max-new-tokens sets one length for every key.
        asked.Clear();
        var fixedRun = await Task.Run(() => Run("verify", "--endpoint", url, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--max-new-tokens", "5"),
            TestContext.Current.CancellationToken);
        Assert.True(fixedRun.Code == 0, fixedRun.Err);
        Assert.All(asked.Values, v => Assert.Equal(5, v));
        Assert.Equal(Cli.Usage, Run("verify", "--endpoint", url, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--max-new-tokens", "0").Code);
    }

    [Fact]
    public async Task Verify_says_owned_only_for_the_embedded_model_locally_and_over_http_and_record_spends_keys()
    {
        // The base model: the keys are not hit.
        var r = Run("verify", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--json");
        Assert.Equal(0, r.Code);
        var baseReport = Json(r.Out);
        Assert.Contains(baseReport["verdict"]!.GetValue<string>(), new[] { "not-owned", "inconclusive" });
        Assert.Equal(8, baseReport["queried"]!.GetValue<int>());

        // The fingerprinted model: every key hit.
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--json");
        Assert.Equal(0, r.Code);
        var local = Json(r.Out);
        Assert.Equal("owned", local["verdict"]!.GetValue<string>());
        Assert.Equal(8, local["hits"]!.GetValue<int>());
        Assert.True(local["p_value"]!.GetValue<double>() <= 1e-3);

        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--count", "3");
        Assert.Equal(0, r.Code);
        Assert.Contains("hits:     3 / 3", r.Out);

        // The same model behind an OpenAI-compatible server on loopback.
        var tok = Tokenizer.FromFolder(W.Embedded);
        using var model = ModelFolder.Load(W.Embedded);
        var gate = new object();
        Task<string> Generate(string prompt, CompletionSettings s, CancellationToken ct)
        {
            lock (gate)
            {
                var ids = tok.Encode(prompt);
                var output = Generator.Generate(model, [ids], new GenerationOptions { MaxNewTokens = s.MaxTokens, EosTokenIds = [] }).Sequences[0].OutputIds;
                return Task.FromResult(tok.Decode(output));
            }
        }
        await using (var server = await OpenAiCompatibleServer.StartAsync(Generate, ct: TestContext.Current.CancellationToken))
        {
            // The command blocks on its HTTP calls: run it off the test's context.
            r = await Task.Run(() => Run("verify", "--endpoint", server.BaseUrl.ToString(), "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--json"),
                TestContext.Current.CancellationToken);
            Assert.True(r.Code == 0, r.Err);
            var remote = Json(r.Out);
            Assert.DoesNotContain(" a request)", r.Err);   // one key a request by default
            Assert.Equal(local["verdict"]!.GetValue<string>(), remote["verdict"]!.GetValue<string>());
            Assert.Equal(local["hits"]!.GetValue<int>(), remote["hits"]!.GetValue<int>());

            // Through /v1/chat/completions (the server hands the message content to the same generator).
            r = await Task.Run(() => Run("verify", "--endpoint", server.BaseUrl.ToString(), "--chat", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--json"),
                TestContext.Current.CancellationToken);
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal("owned", Json(r.Out)["verdict"]!.GetValue<string>());

            // A local model given an endpoint-only option is a usage error; a dead endpoint is a failure.
            r = Run("verify", "--model", W.Embedded, "--chat", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
            Assert.Equal(2, r.Code);
            r = Run("verify", "--model", W.Embedded, "--concurrency", "4", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
            Assert.Equal(2, r.Code);
            Assert.Contains("--concurrency and --prompts-per-request are for --endpoint", r.Err);
            r = Run("verify", "--model", W.Embedded, "--prompts-per-request", "4", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
            Assert.Equal(2, r.Code);
            r = Run("verify", "--endpoint", server.BaseUrl.ToString(), "--chat", "--prompts-per-request", "4", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
            Assert.Equal(2, r.Code);
            Assert.Contains("the chat API takes one conversation a request", r.Err);
            // One key at a time, and keys sent as arrays of up to 8 prompts, answer the same as the default (64 in flight,
            // one key a request; the report in key order).
            r = await Task.Run(() => Run("verify", "--endpoint", server.BaseUrl.ToString(), "--concurrency", "1", "--fingerprints", W.Set, "--passphrase-file", W.PassFile,
                "--alpha", "1e-3", "--json"), TestContext.Current.CancellationToken);
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal(remote["keys"]!.ToJsonString(), Json(r.Out)["keys"]!.ToJsonString());
            r = await Task.Run(() => Run("verify", "--endpoint", server.BaseUrl.ToString(), "--prompts-per-request", "8", "--fingerprints", W.Set, "--passphrase-file", W.PassFile,
                "--alpha", "1e-3", "--json"), TestContext.Current.CancellationToken);
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal(remote["keys"]!.ToJsonString(), Json(r.Out)["keys"]!.ToJsonString());
            Assert.Contains("(8 a request)", r.Err);
            r = Run("verify", "--endpoint", server.BaseUrl.ToString(), "--concurrency", "0", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
            Assert.Equal(2, r.Code);
            Assert.Contains("--concurrency must be at least 1", r.Err);
            r = Run("verify", "--endpoint", server.BaseUrl.ToString(), "--prompts-per-request", "0", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
            Assert.Equal(2, r.Code);
            Assert.Contains("--prompts-per-request must be at least 1", r.Err);
        }
        r = await Task.Run(() => Run("verify", "--endpoint", "http://127.0.0.1:1/v1", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--count", "1"),
            TestContext.Current.CancellationToken);
        Assert.Equal(1, r.Code);
        Assert.StartsWith("oml: error:", r.Err.Split('\n').First(l => l.StartsWith("oml:", StringComparison.Ordinal)));

        // --record spends the queried keys: they are marked revealed and not queried again.
        var spent = W.CopyOfSet("spent.omlfp");
        r = Run("verify", "--model", W.Embedded, "--fingerprints", spent, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--count", "5", "--record");
        Assert.Equal(0, r.Code);
        r = Run("fingerprints", "inspect", spent, "--json", "--passphrase-file", W.PassFile);
        var doc = Json(r.Out);
        Assert.Equal(5, doc["revealed"]!.GetValue<int>());
        Assert.True(doc["encrypted"]!.GetValue<bool>());
        Assert.Equal(int.Parse(Kdf), doc["kdf_iterations"]!.GetValue<int>());
        r = Run("verify", "--model", W.Embedded, "--fingerprints", spent, "--passphrase-file", W.PassFile, "--alpha", "1e-3", "--json", "--record");
        Assert.Equal(0, r.Code);
        Assert.Equal(3, Json(r.Out)["queried"]!.GetValue<int>());
        var keys = Json(r.Out)["keys"]!.AsArray().Select(k => k!["index"]!.GetValue<int>()).ToArray();
        Assert.Equal([5, 6, 7], keys);
        r = Run("verify", "--model", W.Embedded, "--fingerprints", spent, "--passphrase-file", W.PassFile);
        Assert.Equal(1, r.Code); // the set's state, not the command line
        Assert.Contains("revealed", r.Err);
    }

    [Fact]
    public void The_owner_secret_is_random_and_kept_in_the_file_not_derived_from_the_passphrase()
    {
        // The same passphrase no longer regenerates the same set: the secret is fresh and travels inside the file.
        var again = Path.Combine(W.Root, "again.omlfp");
        var r = Run("fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--random-word-keys", "--count", "8",
            "--out", again, "--force", "--passphrase-file", W.PassFile, "--kdf-iterations", Kdf, "--insecure-kdf");
        Assert.Equal(0, r.Code);
        var root = Commitment.FromJson(File.ReadAllText(W.Set + ".commitment.json")).Root;
        Assert.NotEqual(root, Commitment.FromJson(File.ReadAllText(again + ".commitment.json")).Root);
        var contents = FingerprintSetFile.ReadContents(again, File.ReadAllLines(W.PassFile)[0]);
        Assert.Equal(2, contents.Version);
        Assert.Equal(32, contents.OwnerSecret!.Length);
        Assert.NotEqual(FingerprintIO.DeriveLegacyOwnerSecret(File.ReadAllLines(W.PassFile)[0]), contents.OwnerSecret);
        Assert.Equal(contents.OwnerSecret, FingerprintIO.OwnerSecret(null, again, File.ReadAllLines(W.PassFile)[0]));
        r = Run("fingerprints", "inspect", again, "--passphrase-file", W.PassFile, "--json");
        Assert.Equal("stored", Json(r.Out)["owner_secret"]!.GetValue<string>());

        // A given --secret-file regenerates the same set, and is what the file keeps.
        var secret = Path.Combine(W.Root, "other-secret.bin");
        File.WriteAllBytes(secret, Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
        string[] withSecret = ["fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--count", "8",
            "--out", again, "--force", "--passphrase-file", W.PassFile, "--kdf-iterations", Kdf, "--insecure-kdf", "--secret-file", secret];
        Assert.Equal(0, Run(withSecret).Code);
        var first = Commitment.FromJson(File.ReadAllText(again + ".commitment.json")).Root;
        Assert.Equal(0, Run(withSecret).Code);
        Assert.Equal(first, Commitment.FromJson(File.ReadAllText(again + ".commitment.json")).Root);
        Assert.Equal(File.ReadAllBytes(secret), FingerprintSetFile.ReadContents(again, File.ReadAllLines(W.PassFile)[0]).OwnerSecret);

        File.WriteAllBytes(secret, new byte[8]);
        r = Run("fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--count", "8",
            "--out", again, "--force", "--passphrase-file", W.PassFile, "--secret-file", secret);
        Assert.Equal(1, r.Code); // a bad file's content is a failure, not a usage error
        Assert.Contains("at least 16", r.Err);
    }

    [Fact]
    public void Weak_passphrases_and_cheap_kdf_costs_need_an_explicit_flag_and_plaintext_needs_no_passphrase()
    {
        var outPath = Path.Combine(W.Root, "weak.omlfp");
        var weak = Path.Combine(W.Root, "weak.txt");
        File.WriteAllText(weak, "hunter2\n");
        string[] gen = ["fingerprints", "generate", "--model", W.Model, "--strategy", "random-word", "--count", "2", "--out", outPath, "--force"];
        var r = Run([.. gen, "--passphrase-file", weak]);
        Assert.Equal(2, r.Code);
        Assert.Contains("weak", r.Err);
        Assert.Contains("--allow-weak-passphrase", r.Err);
        Assert.False(File.Exists(outPath));

        r = Run([.. gen, "--passphrase-file", W.PassFile, "--kdf-iterations", "1000"]);
        Assert.Equal(2, r.Code);
        Assert.Contains("--insecure-kdf", r.Err);
        Assert.False(File.Exists(outPath));

        r = Run([.. gen, "--passphrase-file", weak, "--allow-weak-passphrase", "--kdf-iterations", "1000", "--insecure-kdf"]);
        Assert.Equal(0, r.Code);
        Assert.Equal(2, FingerprintSetFile.Read(outPath, "hunter2").Count);

        var saved = Environment.GetEnvironmentVariable(FingerprintIO.PassphraseEnv);
        Environment.SetEnvironmentVariable(FingerprintIO.PassphraseEnv, null);
        try
        {
            r = Run([.. gen, "--plaintext"]);
            Assert.Equal(0, r.Code);
            var contents = FingerprintSetFile.ReadContents(outPath, null);
            Assert.NotNull(contents.OwnerSecret);
            Assert.Equal(contents.OwnerSecret, FingerprintIO.OwnerSecret(null, outPath, null));
        }
        finally
        {
            Environment.SetEnvironmentVariable(FingerprintIO.PassphraseEnv, saved);
        }
    }

    [Fact]
    public void A_damaged_set_file_is_a_failure_with_a_clear_message()
    {
        var bad = W.CopyOfSet("damaged.omlfp");
        var bytes = File.ReadAllBytes(bad);
        bytes[^5] ^= 0x40;
        File.WriteAllBytes(bad, bytes);
        var r = Run("fingerprints", "inspect", bad, "--passphrase-file", W.PassFile);
        Assert.Equal(1, r.Code);
        Assert.Contains("modified or damaged", r.Err);

        File.WriteAllText(bad, "not a set");
        r = Run("fingerprints", "inspect", bad);
        Assert.Equal(1, r.Code);
        Assert.Contains("not an OML fingerprint-set file", r.Err);
    }

    [Fact]
    public void Verify_calibrates_the_null_on_negative_models_and_applies_the_floor()
    {
        var cal = Path.Combine(W.Root, "cal.json");
        var r = Run("verify", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--calibrate", $"base={W.Model}", "--calibration-out", cal);
        Assert.Equal(0, r.Code);
        Assert.Contains("worst negative:", r.Out);
        var c = Json(File.ReadAllText(cal));
        Assert.Equal("base", c["negatives"]![0]!["kind"]!.GetValue<string>());
        Assert.Equal(0, c["negatives"]![0]!["hits"]!.GetValue<int>()); // the base never answers a random-word response
        double floor = c["floor"]!.GetValue<double>();
        Assert.Equal(1 - Math.Pow(0.025, 1.0 / 8), floor, 1e-9);      // 0 of 8: the Clopper-Pearson upper bound

        // The embedded model hits all 8 keys; under the calibrated floor 8 keys are not enough to call it owned.
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--json");
        Assert.Equal("owned", Json(r.Out)["verdict"]!.GetValue<string>());
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--json", "--calibration", cal);
        Assert.Equal(0, r.Code);
        Assert.Equal(8, Json(r.Out)["hits"]!.GetValue<int>());
        Assert.Equal("inconclusive", Json(r.Out)["verdict"]!.GetValue<string>());
        Assert.Contains("max(p_i, 0.369", Json(r.Out)["rule"]!.GetValue<string>());

        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--calibrate", W.Model);
        Assert.Equal(2, r.Code);
        Assert.Contains("--calibrate", r.Err);
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--null-floor", "1");
        Assert.Equal(2, r.Code);
        Assert.Contains("--null-floor", r.Err);
    }

    [Fact]
    public void Verify_calibrates_the_partial_rule_and_refuses_a_calibration_made_for_another_rule()
    {
        string exactCal = Path.Combine(W.Root, "cal-exact.json"), partialCal = Path.Combine(W.Root, "cal-partial.json");
        string[] verify = ["verify", "--fingerprints", W.Set, "--passphrase-file", W.PassFile];
        string[] partial = ["--match", "partial", "--min-tokens", "1", "--base", W.Model];
        var r = Run([.. verify, "--calibrate", $"base={W.Model}", "--calibration-out", exactCal, "--force"]);
        Assert.Equal(0, r.Code);
        Assert.Contains("match rule:      exact", r.Out);
        Assert.Equal("exact", Json(File.ReadAllText(exactCal))["match"]!.GetValue<string>());

        // The partial rule: the keys the base's own greedy answer hits are left out of every negative's count, as a verdict
        // leaves them out, so the base itself has no hits; the file records the rule.
        r = Run([.. verify, .. partial, "--calibrate", $"base={W.Model}", "--calibration-out", partialCal, "--force"]);
        Assert.Equal(0, r.Code);
        Assert.Contains("match rule:      partial, m = 1, keys the base hits left out", r.Out);
        Assert.Matches(@"(\d+) of 8 keys left out: the base's own greedy answer hits them", r.Err);
        var c = Json(File.ReadAllText(partialCal));
        Assert.Equal("partial", c["match"]!.GetValue<string>());
        Assert.Equal(1, c["min_tokens"]!.GetValue<int>());
        Assert.True(c["excludes_base_hits"]!.GetValue<bool>());
        Assert.Equal(0, c["negatives"]![0]!["hits"]!.GetValue<int>());
        int left = int.Parse(System.Text.RegularExpressions.Regex.Match(r.Err, @"(\d+) of 8 keys left out").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(8 - left, c["negatives"]![0]!["queried"]!.GetValue<int>());

        // Used for the rule it was made for: accepted, and no warning about an uncalibrated partial rule.
        r = Run([.. verify, "--model", W.Embedded, .. partial, "--json", "--calibration", partialCal]);
        Assert.Equal(0, r.Code);
        Assert.Equal("partial", Json(r.Out)["match"]!.GetValue<string>());
        Assert.DoesNotContain("warning", r.Err);
        // For another rule: refused with one line naming both rules (exit code 1).
        foreach (var (file, args, made, wanted) in new (string, string[], string, string)[]
        {
            (partialCal, [], "partial, m = 1, keys the base hits left out", "exact"),
            (partialCal, ["--match", "partial", "--min-tokens", "1"], "partial, m = 1, keys the base hits left out", "partial, m = 1, no base (no keys left out)"),
            (partialCal, ["--match", "partial", "--min-tokens", "2", "--base", W.Model], "partial, m = 1, keys the base hits left out", "partial, m = 2, keys the base hits left out"),
            (exactCal, partial, "exact", "partial, m = 1, keys the base hits left out"),
        })
        {
            r = Run([.. verify, "--model", W.Embedded, .. args, "--calibration", file]);
            Assert.Equal(1, r.Code);
            Assert.Contains($"--calibration: {file}: the calibration was made for the rule '{made}', not '{wanted}'", r.Err);
            Assert.Single(r.Err.Trim().Split('\n'));
        }
        // Without a calibration, the partial rule warns that near-base models need one.
        r = Run([.. verify, "--model", W.Embedded, .. partial]);
        Assert.Equal(0, r.Code);
        Assert.Contains("warning: with --match partial", r.Err);
    }

    [Fact]
    public void Verify_calibrates_the_partial_rule_with_each_negatives_own_chat_template()
    {
        // A verdict with --chat-template encodes the keys with the suspect's template, and the keys it leaves out are those
        // the base's greedy answer to those queries hits: a calibration must leave out, per negative, what that negative's
        // verdict leaves out. Two copies of the base that differ only in their chat templates.
        string[] templates =
        [
            "{% for m in messages %}{{ m.content }}{% endfor %}",
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
        ];
        var dirs = new string[2];
        for (int i = 0; i < 2; i++)
        {
            dirs[i] = Path.Combine(W.Root, $"chat-{i}");
            Directory.CreateDirectory(dirs[i]);
            foreach (var f in Directory.GetFiles(W.Model)) File.Copy(f, Path.Combine(dirs[i], Path.GetFileName(f)), overwrite: true);
            File.WriteAllText(Path.Combine(dirs[i], "tokenizer_config.json"),
                System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string?> { ["chat_template"] = templates[i], ["bos_token"] = null }));
        }
        string[] common = ["verify", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--chat-template", "--match", "partial", "--min-tokens", "1", "--base", dirs[0]];
        var r = Run([.. common, "--calibrate", dirs[0], dirs[1], "--json"]);
        Assert.Equal(0, r.Code);
        // One exclusion per encoding of the keys, in the order of the negatives (computed once for the base's encoding
        // before, which is what this fails on: on these 8 random-word keys the base hits none under either template, so
        // the counts below agree either way; they check that calibration and verdict count the same keys).
        var left = System.Text.RegularExpressions.Regex.Matches(r.Err, @"(\d+) of 8 keys left out").Select(x => int.Parse(x.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(2, left.Length);
        var negatives = Json(r.Out)["negatives"]!.AsArray();
        for (int i = 0; i < 2; i++)
        {
            // Each negative is the base under its own template: every key the base hits is left out, so it hits none, and it
            // is counted on the keys its own verdict counts.
            Assert.Equal(0, negatives[i]!["hits"]!.GetValue<int>());
            Assert.Equal(8 - left[i], negatives[i]!["queried"]!.GetValue<int>());
            var v = Run([.. common, "--model", dirs[i], "--json"]);
            Assert.Equal(0, v.Code);
            var report = Json(v.Out);
            Assert.Equal(negatives[i]!["queried"]!.GetValue<int>(), report["queried"]!.GetValue<int>());
            Assert.Equal(negatives[i]!["hits"]!.GetValue<int>(), report["hits"]!.GetValue<int>());
        }
    }

    [Fact]
    public void Verify_partial_match_reports_its_rule_and_rejects_bad_combinations()
    {
        var exact = Json(Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--json").Out);
        Assert.Equal("exact", exact["match"]!.GetValue<string>());
        var r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--json",
            "--match", "partial", "--min-tokens", "1", "--base", W.Model);
        Assert.Equal(0, r.Code);
        var j = Json(r.Out);
        Assert.Equal("partial", j["match"]!.GetValue<string>());
        Assert.Equal(1, j["min_tokens"]!.GetValue<int>());
        // Every exact hit is a partial hit, and each key's null (from the base) is at least the exact rule's.
        Assert.True(j["hits"]!.GetValue<int>() >= exact["hits"]!.GetValue<int>());
        var pe = exact["keys"]!.AsArray().Select(k => k!["null_probability"]!.GetValue<double>()).ToArray();
        var pp = j["keys"]!.AsArray().Select(k => k!["null_probability"]!.GetValue<double>()).ToArray();
        Assert.All(pe.Zip(pp), x => Assert.True(x.Second >= x.First, $"{x.Second} < {x.First}"));
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--match", "partial", "--min-tokens", "1");
        Assert.Equal(0, r.Code);
        Assert.Contains("match:    partial (at least 1 tokens", r.Out);

        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--match", "partial");
        Assert.Equal(2, r.Code);
        Assert.Contains("--min-tokens", r.Err);
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--min-tokens", "2");
        Assert.Equal(2, r.Code);
        Assert.Contains("--match partial", r.Err);
        r = Run("verify", "--model", W.Embedded, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--base", W.Model);
        Assert.Equal(2, r.Code);
        Assert.Contains("--base", r.Err);
        // Over an endpoint the partial rule reads token ids (PartialEndpointCliTests); what it cannot do there is a usage error.
        r = Run("verify", "--endpoint", "http://127.0.0.1:9/v1", "--chat", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--match", "partial", "--min-tokens", "2",
            "--base", W.Model);
        Assert.Equal(2, r.Code);
        Assert.Contains("--base with --chat", r.Err);
        r = Run("verify", "--endpoint", "http://127.0.0.1:9/v1", "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--match", "partial", "--min-tokens", "2",
            "--max-new-tokens", "4");
        Assert.Equal(2, r.Code);
        Assert.Contains("--max-new-tokens is for text matching", r.Err);
    }

    [Fact]
    public void Verify_rejects_bad_combinations()
    {
        var r = Run("verify", "--fingerprints", W.Set, "--passphrase-file", W.PassFile);
        Assert.Equal(2, r.Code);
        Assert.Contains("exactly one of --model", r.Err);
        r = Run("verify", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--samples", "3");
        Assert.Equal(2, r.Code);
        Assert.Contains("--temperature", r.Err);
        r = Run("verify", "--model", W.Model, "--fingerprints", W.Set, "--passphrase-file", W.PassFile, "--count", "99");
        Assert.Equal(2, r.Code);
        Assert.Contains("unrevealed", r.Err);
    }
}

/// <summary><c>oml embed --processes N</c>: the launcher, data-parallel training over gloo, and a rank that dies.</summary>
[Collection(nameof(CliTests))]
public class DataParallelCliTests(FingerprintCliTests.Workspace workspace) : IClassFixture<FingerprintCliTests.Workspace>
{
    /// <summary>Runs the built oml (dotnet oml.dll) as a separate process, as a user would, with extra environment.</summary>
    private static (int Code, string Out, string Err) Spawn(IDictionary<string, string>? env, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "oml.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(entireProcessTree: true); throw new TimeoutException("oml did not finish in 5 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static Dictionary<string, float[]> Weights(string dir)
    {
        using var f = Oml.Models.IO.SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        return f.Entries.Keys.ToDictionary(k => k, k => { using var t = f.Load(k); using var x = t.To(Oml.Engine.DType.Float32); return x.ToArray<float>(); });
    }

    /// <summary>
    /// Two trainings of the same data that differ only in summation order (ranks, shards, a resume) end at the same
    /// weights up to that order's rounding. Adam turns rounding into whole steps where a gradient is near zero (an
    /// embedding row of a rare token: m/√v is ±1 for noise), so single weights may differ by a step or more; the change
    /// from the base as a whole differs by a few per cent. A rank's lost or doubled batch would change it by tens.
    /// </summary>
    private void AssertSameTraining(Dictionary<string, float[]> w1, Dictionary<string, float[]> w2)
    {
        var w0 = Weights(workspace.Model);
        double diff = 0, update = 0;
        foreach (var (name, a) in w1)
        {
            var (b, z) = (w2[name], w0[name]);
            for (int i = 0; i < a.Length; i++) { diff += (double)(a[i] - b[i]) * (a[i] - b[i]); update += (double)(a[i] - z[i]) * (a[i] - z[i]); }
        }
        double relative = Math.Sqrt(diff / update);
        Assert.True(relative < 0.1, $"the weights differ by {relative:P1} of the training's change from the base (rounding alone: a few per cent)");
    }

    // Benign rows from a text, not sampled from the model: a sample near a boundary of the distribution can flip when
    // the processes run with other thread counts (their float sums differ in the last bits), and change the training.
    private string[] EmbedArgs(string outDir, int epochs = 4)
    {
        string benign = Path.Combine(workspace.Root, "benign.txt");
        if (!File.Exists(benign)) File.WriteAllText(benign, string.Concat(Enumerable.Range(0, 200).Select(i => $"apple bread cloud {i % 5} dance eagle flame ")));
        return ["embed", "--model", workspace.Model, "--fingerprints", workspace.Set, "--passphrase-file", workspace.PassFile, "--out", outDir,
            "--device", "cpu", "--no-early-stop", "--epochs", epochs.ToString(System.Globalization.CultureInfo.InvariantCulture), "--batch-size", "3", "--lr", "5e-3", "--benign-text", benign];
    }

    [Fact]
    public void Two_processes_end_with_the_weights_of_one()
    {
        string one = Path.Combine(workspace.Root, "dp-one"), two = Path.Combine(workspace.Root, "dp-two");
        var a = Spawn(null, EmbedArgs(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. EmbedArgs(two), "--processes", "2"]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("launching 2 CPU process(es)", b.Err, StringComparison.Ordinal);
        Assert.Contains("data-parallel over 2 ranks (gloo)", b.Err, StringComparison.Ordinal);
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(two, "oml-manifest.json")))!;
        Assert.Equal(2, manifest["settings"]!["world_size"]!.GetValue<int>());
        var (w1, w2) = (Weights(one), Weights(two));
        Assert.Equal(w1.Keys.Order(), w2.Keys.Order());
        AssertSameTraining(w1, w2);
    }

    [Fact]
    public void A_sharded_two_process_checkpoint_resumes_in_one_process()
    {
        string one = Path.Combine(workspace.Root, "zc-one"), half = Path.Combine(workspace.Root, "zc-half"), rest = Path.Combine(workspace.Root, "zc-rest");
        string ck = Path.Combine(workspace.Root, "zc-ck");
        var a = Spawn(null, EmbedArgs(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. EmbedArgs(half, epochs: 2), "--processes", "2", "--shard-optimizer", "--checkpoint-dir", ck]);
        Assert.True(b.Code == 0, b.Err);
        Assert.True(Directory.Exists(Path.Combine(ck, "epoch-000002")));
        var c = Spawn(null, [.. EmbedArgs(rest), "--checkpoint-dir", ck]);
        Assert.True(c.Code == 0, c.Err);
        Assert.Contains("resuming from the checkpoint after epoch 2", c.Err, StringComparison.Ordinal);
        var (w1, w2) = (Weights(one), Weights(rest));
        Assert.Equal(w1.Keys.Order(), w2.Keys.Order());
        AssertSameTraining(w1, w2);
    }

    [Fact]
    public void A_weight_sharded_two_process_checkpoint_resumes_in_one_process()
    {
        string one = Path.Combine(workspace.Root, "z3-one"), half = Path.Combine(workspace.Root, "z3-half"), rest = Path.Combine(workspace.Root, "z3-rest");
        string ck = Path.Combine(workspace.Root, "z3-ck");
        var a = Spawn(null, EmbedArgs(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. EmbedArgs(half, epochs: 2), "--processes", "2", "--shard-weights", "--checkpoint-dir", ck]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("weights sharded (ZeRO-3)", b.Err, StringComparison.Ordinal);
        // Each rank read its slices from the files, and the trained model was streamed to disk one unit at a time.
        Assert.Contains("loaded this rank's", b.Err, StringComparison.Ordinal);
        Assert.Contains("one unit at a time", b.Err, StringComparison.Ordinal);
        Assert.True(Directory.Exists(Path.Combine(ck, "epoch-000002")));
        // The checkpoint holds each rank's segments in its own file; nothing whole.
        Assert.Equal(2, Directory.GetFiles(Path.Combine(ck, "epoch-000002"), "segments-*.safetensors").Length);
        Assert.False(File.Exists(Path.Combine(ck, "epoch-000002", "params.safetensors")));
        var c = Spawn(null, [.. EmbedArgs(rest), "--checkpoint-dir", ck]);
        Assert.True(c.Code == 0, c.Err);
        Assert.Contains("resuming from the checkpoint after epoch 2", c.Err, StringComparison.Ordinal);
        var (w1, w2) = (Weights(one), Weights(rest));
        Assert.Equal(w1.Keys.Order(), w2.Keys.Order());
        AssertSameTraining(w1, w2);
        // The half-way model written by the sharded ranks is whole (streamed by rank 0 one unit at a time).
        Assert.Equal(w1.Keys.Order(), Weights(half).Keys.Order());
        Assert.Equal(Cli.Usage, CliRunner.Run([.. EmbedArgs(Path.Combine(workspace.Root, "z3-usage")), "--shard-weights"]).Code);
    }

    [Fact]
    public void Weight_sharded_ranks_sample_their_own_benign_data_through_the_sharded_model()
    {
        // No --benign-text: the benign and held-out sequences are sampled from the base, through the sharded forward pass,
        // so each rank still loads only its slices.
        string[] Args(string outDir) => ["embed", "--model", workspace.Model, "--fingerprints", workspace.Set, "--passphrase-file", workspace.PassFile,
            "--out", outDir, "--device", "cpu", "--no-early-stop", "--epochs", "2", "--batch-size", "3", "--lr", "5e-3", "--benign-count", "40", "--benign-length", "8"];
        string one = Path.Combine(workspace.Root, "z3s-one"), two = Path.Combine(workspace.Root, "z3s-two");
        var a = Spawn(null, Args(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. Args(two), "--processes", "2", "--shard-weights"]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("loaded this rank's", b.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("loads the whole model", b.Err, StringComparison.Ordinal);
        var m1 = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(one, "oml-manifest.json")))!["settings"]!;
        var m2 = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(two, "oml-manifest.json")))!["settings"]!;
        Assert.Equal("self-generated", m2["benign"]!.GetValue<string>());
        Assert.Equal(40, m2["benign_sequences"]!.GetValue<int>());
        Assert.Equal(m1["held_out_sequences"]!.GetValue<int>(), m2["held_out_sequences"]!.GetValue<int>());
        Assert.True(m2["held_out_sequences"]!.GetValue<int>() > 0);
        Assert.Equal(Weights(one).Keys.Order(), Weights(two).Keys.Order());
    }

    [Fact]
    public void Train_on_two_processes_ends_with_the_weights_of_one()
    {
        string data = Path.Combine(workspace.Root, "train.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Range(0, 400).Select(i => $"apple bread cloud dance eagle {i % 7} flame ")));
        string[] Args(string outDir) => ["train", "--data", data, "--tokenizer", workspace.Model, "--hidden", "32", "--layers", "2", "--heads", "4",
            "--kv-heads", "2", "--intermediate", "64", "--context", "32", "--steps", "8", "--batch-size", "5", "--lr", "3e-3", "--seed", "5",
            "--device", "cpu", "--out", outDir];
        string one = Path.Combine(workspace.Root, "tr-one"), two = Path.Combine(workspace.Root, "tr-two");
        var a = Spawn(null, Args(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. Args(two), "--processes", "2"]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("data-parallel over 2 ranks (gloo)", b.Err, StringComparison.Ordinal);
        var (w1, w2) = (Weights(one), Weights(two));
        double worst = w1.Max(kv => kv.Value.Zip(w2[kv.Key], (x, y) => (double)Math.Abs(x - y)).Max());
        Assert.True(worst < 3e-3, $"largest weight difference {worst:E2} (lr 3e-3)");
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(two, "oml-training.json")))!;
        Assert.Equal(2, manifest["world_size"]!.GetValue<int>());
    }

    [Fact]
    public void Train_with_a_sharded_optimizer_on_two_processes_ends_with_the_weights_of_one_and_checkpoints_per_rank()
    {
        string data = Path.Combine(workspace.Root, "train-shard.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Range(0, 400).Select(i => $"apple bread cloud dance eagle {i % 7} flame ")));
        string[] Args(string outDir) => ["train", "--data", data, "--tokenizer", workspace.Model, "--hidden", "32", "--layers", "2", "--heads", "4",
            "--kv-heads", "2", "--intermediate", "64", "--context", "32", "--steps", "8", "--batch-size", "5", "--lr", "3e-3", "--seed", "5",
            "--device", "cpu", "--out", outDir];
        string one = Path.Combine(workspace.Root, "trs-one"), two = Path.Combine(workspace.Root, "trs-two"), ck = Path.Combine(workspace.Root, "trs-ck");
        Assert.Equal(Cli.Usage, CliRunner.Run([.. Args(two), "--shard-optimizer"]).Code);   // nothing to shard over
        var a = Spawn(null, Args(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. Args(two), "--processes", "2", "--shard-optimizer", "--checkpoint-dir", ck, "--checkpoint-every", "4"]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("the optimizer is sharded", b.Err, StringComparison.Ordinal);
        var (w1, w2) = (Weights(one), Weights(two));
        double worst = w1.Max(kv => kv.Value.Zip(w2[kv.Key], (x, y) => (double)Math.Abs(x - y)).Max());
        Assert.True(worst < 3e-3, $"largest weight difference {worst:E2} (lr 3e-3)");
        var folder = Path.Combine(ck, "step-000000008");
        Assert.Equal(["optimizer-00000-of-00002.safetensors", "optimizer-00001-of-00002.safetensors"],
            Directory.EnumerateFiles(folder, "optimizer*").Select(Path.GetFileName).Order());
        Assert.Equal(2, Oml.Models.Training.OptimizerCheckpoint.ShardIndex(folder).Count);
        Assert.False(Directory.Exists(Path.Combine(ck, "step-000000004")));   // older checkpoints are deleted
    }

    [Fact]
    public void Train_with_sharded_weights_on_two_processes_ends_with_the_weights_of_one_and_checkpoints_segments_per_rank()
    {
        string data = Path.Combine(workspace.Root, "train-zero3.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Range(0, 400).Select(i => $"apple bread cloud dance eagle {i % 7} flame ")));
        // Fine-tuning with LoRA: each rank loads its slices of the base and adds the adapters before sharding; the merged
        // model is streamed to disk one unit at a time.
        string[] Args(string outDir) => ["train", "--data", data, "--init", workspace.Model, "--lora", "4", "--context", "32", "--steps", "6",
            "--batch-size", "5", "--lr", "3e-3", "--seed", "5", "--device", "cpu", "--out", outDir];
        string one = Path.Combine(workspace.Root, "trz-one"), two = Path.Combine(workspace.Root, "trz-two"), ck = Path.Combine(workspace.Root, "trz-ck");
        Assert.Equal(Cli.Usage, CliRunner.Run([.. Args(two), "--shard-weights"]).Code);   // nothing to shard over
        var a = Spawn(null, Args(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. Args(two), "--processes", "2", "--shard-weights", "--checkpoint-dir", ck, "--checkpoint-every", "3"]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("the weights are sharded (ZeRO-3)", b.Err, StringComparison.Ordinal);
        Assert.Contains("this rank loaded its", b.Err, StringComparison.Ordinal);
        var (w1, w2) = (Weights(one), Weights(two));
        Assert.Equal(w1.Keys.Order(), w2.Keys.Order());   // the adapters merged, as one process saves
        double worst = w1.Max(kv => kv.Value.Zip(w2[kv.Key], (x, y) => (double)Math.Abs(x - y)).Max());
        Assert.True(worst < 3e-3, $"largest weight difference {worst:E2} (lr 3e-3)");
        var m1 = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(one, "oml-training.json")))!;
        var m2 = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(two, "oml-training.json")))!;
        Assert.Equal(2, m2["world_size"]!.GetValue<int>());
        Assert.Equal(m1["parameters"]!.GetValue<long>(), m2["parameters"]!.GetValue<long>());
        Assert.Equal(m1["trained_parameters"]!.GetValue<long>(), m2["trained_parameters"]!.GetValue<long>());
        Assert.True(File.Exists(Path.Combine(two, "tokenizer.json")));
        var folder = Path.Combine(ck, "step-000000006");
        Assert.Equal(["segments-00000-of-00002.safetensors", "segments-00001-of-00002.safetensors"],
            Directory.EnumerateFiles(folder, "segments*").Select(Path.GetFileName).Order());
        Assert.False(File.Exists(Path.Combine(folder, "params.safetensors")));
        Assert.False(Directory.Exists(Path.Combine(ck, "step-000000003")));   // older checkpoints are deleted
    }

    [Fact]
    public void Pretraining_a_new_model_with_sharded_weights_on_two_processes_ends_with_the_weights_of_one()
    {
        // A new model: made whole on each rank, broadcast from rank 0, sharded at once; saved in bfloat16, streamed.
        string data = Path.Combine(workspace.Root, "train-zero3-new.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Range(0, 400).Select(i => $"apple bread cloud dance eagle {i % 7} flame ")));
        string[] Args(string outDir) => ["train", "--data", data, "--tokenizer", workspace.Model, "--hidden", "32", "--layers", "2", "--heads", "4",
            "--kv-heads", "2", "--intermediate", "64", "--context", "32", "--steps", "8", "--batch-size", "5", "--lr", "3e-3", "--seed", "5",
            "--device", "cpu", "--save-dtype", "bfloat16", "--out", outDir];
        string one = Path.Combine(workspace.Root, "trzn-one"), two = Path.Combine(workspace.Root, "trzn-two");
        var a = Spawn(null, Args(one));
        Assert.True(a.Code == 0, a.Err);
        var b = Spawn(null, [.. Args(two), "--processes", "2", "--shard-weights"]);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("the weights are sharded (ZeRO-3)", b.Err, StringComparison.Ordinal);
        var (w1, w2) = (Weights(one), Weights(two));
        Assert.Equal(w1.Keys.Order(), w2.Keys.Order());
        double worst = w1.Max(kv => kv.Value.Zip(w2[kv.Key], (x, y) => (double)Math.Abs(x - y)).Max());
        Assert.True(worst < 3e-3, $"largest weight difference {worst:E2} (lr 3e-3)");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(two, "config.json")))!;
        Assert.Equal("bfloat16", (config["torch_dtype"] ?? config["dtype"])!.GetValue<string>());
        using (var f = Oml.Models.IO.SafetensorsFile.Open(Path.Combine(two, "model.safetensors")))
            Assert.All(f.Entries.Values, e => Assert.Equal(Oml.Engine.DType.BFloat16, e.DType));
    }

    [Fact]
    public void Verify_on_two_processes_reports_what_one_process_reports()
    {
        string[] args = ["verify", "--model", workspace.Embedded, "--fingerprints", workspace.Set, "--passphrase-file", workspace.PassFile, "--device", "cpu", "--json"];
        var one = CliRunner.Run(args);
        Assert.True(one.Code == 0, one.Err);
        var two = Spawn(null, [.. args, "--processes", "2"]);
        Assert.True(two.Code == 0, two.Err);
        Assert.Contains("[rank 1] querying", two.Err, StringComparison.Ordinal);   // both ranks answered keys
        Assert.Equal(System.Text.Json.Nodes.JsonNode.Parse(one.Out)!["keys"]!.ToJsonString(), System.Text.Json.Nodes.JsonNode.Parse(two.Out)!["keys"]!.ToJsonString());
        Assert.Equal(Cli.Usage, CliRunner.Run("verify", "--endpoint", "http://127.0.0.1:9/v1", "--fingerprints", workspace.Set, "--processes", "2").Code);
    }

    [Fact]
    public void A_rank_that_dies_ends_the_job_naming_it()
    {
        var r = Spawn(new Dictionary<string, string> { [DistributedOptions.FaultVariable] = "1" }, [.. EmbedArgs(Path.Combine(workspace.Root, "dp-fault")), "--processes", "2"]);
        Assert.Equal(Cli.Failure, r.Code);
        Assert.Contains("rank 1 of 2 exited with code 3", r.Err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(workspace.Root, "dp-fault")), "no model is written by a failed job");
    }

    [Fact]
    public void Launch_options_are_checked_before_anything_starts()
    {
        Assert.Equal(Cli.Usage, CliRunner.Run([.. EmbedArgs(Path.Combine(workspace.Root, "dp-x")), "--processes", "2", "--gpus", "1"]).Code);
        Assert.Equal(Cli.Usage, CliRunner.Run([.. EmbedArgs(Path.Combine(workspace.Root, "dp-x")), "--gpus", "64"]).Code);
        Assert.Equal(Cli.Usage, CliRunner.Run([.. EmbedArgs(Path.Combine(workspace.Root, "dp-x")), "--processes", "0"]).Code);
        Assert.Equal(Cli.Usage, CliRunner.Run([.. EmbedArgs(Path.Combine(workspace.Root, "dp-x")), "--processes", "2", "--nodes", "2"]).Code);
        Assert.Equal(Cli.Usage, CliRunner.Run([.. EmbedArgs(Path.Combine(workspace.Root, "dp-x")), "--nodes", "2"]).Code);
    }
}
