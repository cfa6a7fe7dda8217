using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;
using Oml.Models.Training;

namespace Oml.Models.Tests;

public class TrainingRecipeTests
{
    [Fact]
    public void A_recipe_reads_every_kind_of_value_and_flags_override_it()
    {
        var r = TrainingRecipe.Parse("""
            # the lab's base model
            data: [a.txt, b.jsonl]
            data-slice: 2/10
            tokenizer: tok
            hidden: 512
            kv-heads: 4
            steps: 4000
            lr: 3e-4
            min-lr: 0
            tie-embeddings: false
            dtype: bfloat16
            seed: 7
            max-shard-mb: 15
            """, "base.yaml");
        Assert.Equal(["a.txt", "b.jsonl"], r.Data!);
        Assert.Equal("2/10", r.DataSlice);
        Assert.Equal(512, r.Hidden);
        Assert.Equal(4, r.KvHeads);
        Assert.Equal(4000, r.Steps);
        Assert.Equal(3e-4, r.Lr);
        Assert.Equal(0, r.MinLr);
        Assert.False(r.TieEmbeddings);
        Assert.Equal("bfloat16", r.Dtype);
        Assert.Equal(7UL, r.Seed);
        Assert.Equal(15, r.MaxShardMb);
        Assert.Null(r.Batch);

        var merged = r.Over(new TrainingRecipe { Lr = 1e-3, Batch = 8, Data = ["c.txt"] });
        Assert.Equal(1e-3, merged.Lr);
        Assert.Equal(8, merged.Batch);
        Assert.Equal(["c.txt"], merged.Data!);
        Assert.Equal(512, merged.Hidden);
        Assert.Equal(TrainingRecipe.Parse("data: one.txt").Data!, ["one.txt"]);
        Assert.Equal(new TrainingRecipe(), TrainingRecipe.Parse("# nothing\n"));
    }

    [Theory]
    [InlineData("batch: -1", "line 1: 'batch' must be at least 1, not -1")]
    [InlineData("lr: abc", "'lr' must be a number, not 'abc'")]
    [InlineData("lr: 0", "'lr' must be above 0")]
    [InlineData("beta2: 1.5", "'beta2' must be at least 0 and at most")]
    [InlineData("steps: 10\nlrr: 1", "line 2: 'lrr' is not a recipe setting")]
    [InlineData("dtype: fp8", "'dtype' must be one of float32, bfloat16, not 'fp8'")]
    [InlineData("data-slice: 3/2", "'data-slice' must be i/n with 0 ≤ i < n")]
    [InlineData("steps: 1\nsteps: 2", "line 2: not valid YAML (Duplicate key")]
    [InlineData("tie-embeddings: maybe", "must be true or false")]
    [InlineData("train: layers:x", "'x' is not a layer number")]
    [InlineData("- a\n- b", "a recipe is a mapping")]
    [InlineData("data: [a, [b]]", "'data' must be a path or a list of paths")]
    [InlineData("lr: [1", "not valid YAML")]
    public void Bad_values_are_refused_with_file_line_and_key(string yaml, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => TrainingRecipe.Parse(yaml, "r.yaml"));
        Assert.StartsWith("r.yaml: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void The_lab_recipes_in_the_repository_parse()
    {
        var dir = Path.Combine(Fixtures.RepoRoot, "lab", "recipes");
        var files = Directory.GetFiles(dir, "*.yaml");
        Assert.True(files.Length >= 11, $"{files.Length} recipes");
        foreach (var f in files)
        {
            var r = TrainingRecipe.Load(f);
            Assert.NotNull(r.Data);
            Assert.NotNull(r.Out);
            Assert.NotNull(r.Steps);
            if (r.Init is not null) continue;   // a fine-tune or an --init folder: the shape comes from its config.json
            Assert.True(r.Hidden % r.Heads == 0, f);
            Assert.True(r.Heads % (r.KvHeads ?? r.Heads) == 0, f);
        }
    }

    [Fact]
    public void Sharded_saves_write_a_transformers_index_and_load_back_bit_identical()
    {
        var dir = Path.Combine(Path.GetTempPath(), "oml-shards-" + Guid.NewGuid().ToString("N"));
        try
        {
            var config = new LlamaShape(64, Hidden: 32, Layers: 2, Heads: 2, KvHeads: 1, Intermediate: 64, MaxPositions: 64).ToConfig(0, 1, 2);
            using var model = Pretraining.CreateRandom(config, 4);
            long total = model.Parameters.Values.Sum(p => p.NumEl * 4);
            const long max = 12_000;
            ModelFolder.Save(model, dir, maxShardBytes: max);
            Assert.False(File.Exists(Path.Combine(dir, ModelFolder.SingleFile)));
            var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, ModelFolder.IndexFile)))!;
            Assert.Equal(total, index["metadata"]!["total_size"]!.GetValue<long>());
            var map = index["weight_map"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<string>());
            Assert.Equal(model.Parameters.Keys.Order(StringComparer.Ordinal), map.Keys.Order(StringComparer.Ordinal));
            var shards = map.Values.Distinct().Order(StringComparer.Ordinal).ToList();
            Assert.True(shards.Count >= 3, $"{shards.Count} shards");
            for (int i = 0; i < shards.Count; i++)
            {
                Assert.Equal($"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors", shards[i]);
                using var f = SafetensorsFile.Open(Path.Combine(dir, shards[i]));
                Assert.Equal(map.Where(kv => kv.Value == shards[i]).Select(kv => kv.Key).Order(StringComparer.Ordinal), f.Entries.Keys.Order(StringComparer.Ordinal));
                long bytes = f.Entries.Values.Sum(e => e.ByteLength);
                Assert.True(bytes <= max || f.Entries.Count == 1, $"{shards[i]}: {bytes} bytes");
            }
            using var back = ModelFolder.Load(dir);
            foreach (var (name, p) in model.Parameters) Assert.Equal(p.ToBytes(), back.Parameters[name].ToBytes());

            // Saving again unsharded removes the shards and the index (no stale weights left to confuse a loader).
            ModelFolder.Save(model, dir);
            Assert.Single(Directory.GetFiles(dir, "model*.safetensors"));
            Assert.False(File.Exists(Path.Combine(dir, ModelFolder.IndexFile)));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_folder_sharded_the_way_transformers_does_it_loads()
    {
        // transformers' save_pretrained(max_shard_size=...) layout: shards named model-0000i-of-0000n.safetensors holding
        // any partition of the tensors, and an index {"metadata": {"total_size": bytes}, "weight_map": {name: file}}.
        var dir = Path.Combine(Path.GetTempPath(), "oml-hfshards-" + Guid.NewGuid().ToString("N"));
        try
        {
            var config = new LlamaShape(64, Hidden: 32, Layers: 1, Heads: 2, KvHeads: 2, Intermediate: 64, MaxPositions: 64).ToConfig(0, 1, 2);
            using var model = Pretraining.CreateRandom(config, 6);
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJson("float32"));
            var names = model.Parameters.Keys.ToList();
            var parts = new[] { names.Where((_, i) => i % 2 == 0).ToList(), names.Where((_, i) => i % 2 == 1).ToList() };
            var map = new JsonObject();
            for (int s = 0; s < 2; s++)
            {
                var file = $"model-{s + 1:D5}-of-00002.safetensors";
                Safetensors.Save(Path.Combine(dir, file), parts[s].Select(n => KeyValuePair.Create(n, model.Parameters[n])));
                foreach (var n in parts[s]) map[n] = file;
            }
            File.WriteAllText(Path.Combine(dir, ModelFolder.IndexFile), new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = model.Parameters.Values.Sum(p => p.NumEl * 4) },
                ["weight_map"] = map,
            }.ToJsonString());
            using var back = ModelFolder.Load(dir);
            foreach (var (name, p) in model.Parameters) Assert.Equal(p.ToBytes(), back.Parameters[name].ToBytes());
            Assert.Equal(2, ModelFolder.WeightFiles(dir).Count);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Float32_matmul_precision_is_settable_and_checked()
    {
        var before = Torch.Float32MatmulPrecision;
        try
        {
            Torch.SetFloat32MatmulPrecision("high");
            Assert.Equal("high", Torch.Float32MatmulPrecision);
            Torch.Float32MatmulPrecision = "highest";
            Assert.Equal("highest", Torch.Float32MatmulPrecision);
            Assert.Throws<ArgumentException>(() => Torch.SetFloat32MatmulPrecision("tf32"));
        }
        finally
        {
            Torch.Float32MatmulPrecision = before;
        }
    }
}
