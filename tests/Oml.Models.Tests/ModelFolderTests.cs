using System.Text;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models.Tests;

/// <summary>Reading and writing model folders, and every kind of bad input the loader must refuse clearly.</summary>
public sealed class ModelFolderTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("oml-folder-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    /// <summary>A copy of a fixture folder that a test may damage.</summary>
    private string Copy(string name)
    {
        var dst = Path.Combine(_tmp, name);
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(Fixtures.Model(name)))
            if (Path.GetFileName(f) != "reference.safetensors") File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        return dst;
    }

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny-bf16")]
    [InlineData("llama-tiny-sharded")]
    public void Saved_folders_round_trip_tensor_content_byte_for_byte(string name)
    {
        using var model = ModelFolder.Load(Fixtures.Model(name));
        var outDir = Path.Combine(_tmp, "out");
        ModelFolder.Save(model, outDir, Fixtures.Model(name));
        Assert.True(File.Exists(Path.Combine(outDir, "config.json")));
        Assert.True(File.Exists(Path.Combine(outDir, "generation_config.json")));

        var original = ModelFolder.WeightFiles(Fixtures.Model(name)).Select(SafetensorsFile.Open).ToList();
        using var saved = SafetensorsFile.Open(Path.Combine(outDir, "model.safetensors"));
        try
        {
            Assert.Equal("pt", saved.Metadata["format"]);
            // Loaded in parallel, the parameters still come in the files' order (optimizer state and checkpoints follow it).
            Assert.Equal(original.SelectMany(f => f.Entries.Keys).Where(model.Parameters.ContainsKey), model.Parameters.Keys);
            var names = original.SelectMany(f => f.Entries.Keys).ToHashSet();
            Assert.Equal(names.OrderBy(n => n), saved.Entries.Keys.OrderBy(n => n));
            foreach (var f in original)
                foreach (var (n, e) in f.Entries)
                {
                    Assert.Equal(e.DType, saved.Entry(n).DType);
                    Assert.Equal(e.Shape, saved.Entry(n).Shape);
                    Assert.True(f.Bytes(n).SequenceEqual(saved.Bytes(n)), $"tensor {n} differs after a round trip");
                }
        }
        finally
        {
            foreach (var f in original) f.Dispose();
        }
        // And it loads back as the same model.
        using var again = ModelFolder.Load(outDir);
        Assert.Equal(model.DType, again.DType);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!;
        Assert.Equal(model.DType.Name(), cfg["dtype"]!.GetValue<string>());
    }

    [Fact]
    public void Large_models_are_written_in_shards_with_an_index()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var outDir = Path.Combine(_tmp, "sharded");
        ModelFolder.Save(model, outDir, maxShardBytes: 200_000);
        Assert.True(File.Exists(Path.Combine(outDir, ModelFolder.IndexFile)));
        Assert.False(File.Exists(Path.Combine(outDir, ModelFolder.SingleFile)));
        Assert.True(ModelFolder.WeightFiles(outDir).Count > 1);
        using var again = ModelFolder.Load(outDir);
        using var scope = Torch.NewScope();
        var ids = Torch.FromArray(new long[] { 1, 5, 9, 200 }, 1, 4);
        using (Torch.NoGrad())
            Assert.Equal(0, (model.Forward(ids) - again.Forward(ids)).Abs().Max().ToDouble());
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp"));
    }

    private static void Damage(string file, Action<FileStream> act)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        act(fs);
    }

    [Fact]
    public void A_truncated_safetensors_file_is_reported()
    {
        var dir = Copy("llama-tiny");
        var file = Path.Combine(dir, "model.safetensors");
        Damage(file, fs => fs.SetLength(fs.Length - 1000));
        var e = Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir));
        Assert.Contains("outside", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void A_header_length_larger_than_the_file_is_reported()
    {
        var dir = Copy("llama-tiny");
        var file = Path.Combine(dir, "model.safetensors");
        Damage(file, fs => fs.Write(BitConverter.GetBytes(10_000_000L)));
        var e = Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir));
        Assert.Contains("header length 10000000", e.Message);

        Damage(file, fs => fs.SetLength(5));
        Assert.Contains("too short", Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir)).Message);
    }

    [Fact]
    public void A_corrupt_header_is_reported()
    {
        var dir = Copy("llama-tiny");
        var file = Path.Combine(dir, "model.safetensors");
        Damage(file, fs => { fs.Position = 8; fs.Write("not json"u8); });
        Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir)).Message);
    }

    private static void RewriteHeader(string file, Func<string, string> edit)
    {
        var bytes = File.ReadAllBytes(file);
        long n = BitConverter.ToInt64(bytes, 0);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        var edited = Encoding.UTF8.GetBytes(edit(header).PadRight((int)n));
        Assert.Equal(n, edited.Length);
        Array.Copy(edited, 0, bytes, 8, n);
        File.WriteAllBytes(file, bytes);
    }

    [Fact]
    public void A_tensor_whose_shape_disagrees_with_config_is_reported()
    {
        var dir = Copy("llama-tiny");
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        cfg["intermediate_size"] = 200;
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir));
        Assert.Contains("mlp", e.Message);
        Assert.Contains("176", e.Message);
        Assert.Contains("200", e.Message);
    }

    [Fact]
    public void Shape_and_byte_count_disagreeing_inside_a_file_is_reported()
    {
        var dir = Copy("llama-tiny");
        RewriteHeader(Path.Combine(dir, "model.safetensors"), h => h.Replace("\"shape\":[512,64]", "\"shape\":[511,64]"));
        var e = Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir));
        Assert.Contains("needs", e.Message);
    }

    [Fact]
    public void An_unknown_dtype_is_reported()
    {
        var dir = Copy("llama-tiny");
        RewriteHeader(Path.Combine(dir, "model.safetensors"), h => h.Replace("\"dtype\":\"F32\"", "\"dtype\":\"F8X\""));
        Assert.Contains("unsupported dtype 'F8X'", Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir)).Message);
    }

    [Fact]
    public void A_missing_tensor_or_shard_is_reported()
    {
        var dir = Copy("llama-tiny");
        RewriteHeader(Path.Combine(dir, "model.safetensors"), h => h.Replace("\"model.norm.weight\"", "\"model.norm.weighs\""));
        var e = Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir));
        Assert.Contains("model.norm.weigh", e.Message);

        var sharded = Copy("llama-tiny-sharded");
        File.Delete(Path.Combine(sharded, "model-00003-of-00006.safetensors"));
        var f = Assert.Throws<FileNotFoundException>(() => ModelFolder.Load(sharded));
        Assert.Contains("model-00003-of-00006.safetensors", f.Message);

        var empty = Path.Combine(_tmp, "empty");
        Directory.CreateDirectory(empty);
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(empty, "config.json"));
        Assert.Contains("no weights", Assert.Throws<FileNotFoundException>(() => ModelFolder.Load(empty)).Message);
    }

    [Fact]
    public void An_unknown_architecture_or_a_sliding_window_is_refused()
    {
        var dir = Copy("mistral-tiny");
        var path = Path.Combine(dir, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!;
        cfg["sliding_window"] = 4096;
        File.WriteAllText(path, cfg.ToJsonString());
        Assert.Contains("sliding-window", Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir)).Message);

        cfg["sliding_window"] = null;
        cfg["architectures"] = new JsonArray("GPT2LMHeadModel");
        File.WriteAllText(path, cfg.ToJsonString());
        Assert.Contains("unsupported architecture 'GPT2LMHeadModel'", Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir)).Message);

        File.WriteAllText(path, "{ not json");
        Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => ModelFolder.Load(dir)).Message);
    }
}
