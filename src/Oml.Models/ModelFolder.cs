using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models;

/// <summary>
/// Reads and writes Hugging Face model folders: config.json, generation_config.json, weights in model.safetensors or
/// shards listed by model.safetensors.index.json, and the tokenizer files, which are carried along unchanged.
/// </summary>
public static class ModelFolder
{
    public const string IndexFile = "model.safetensors.index.json";
    public const string SingleFile = "model.safetensors";

    /// <summary>Files copied verbatim from a source folder when a model is saved.</summary>
    public static readonly string[] TokenizerFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
        "added_tokens.json", "chat_template.jinja", "chat_template.json",
    ];

    /// <summary>
    /// Loads a model folder onto <paramref name="device"/>, optionally converting the weights to <paramref name="dtype"/>.
    /// Tensors are copied straight from memory-mapped files (no second full copy of the weights is held), several at a
    /// time on as many threads (up to 8): one thread copying pages into libtorch memory runs at a fraction of the memory
    /// bandwidth.
    /// </summary>
    public static CausalLM Load(string dir, Device? device = null, DType? dtype = null)
    {
        var index = Scan(dir, dtype);
        var dev = device ?? Device.Cpu;
        var files = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var loaded = new System.Collections.Concurrent.ConcurrentDictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var shard in index.Files) files[shard] = SafetensorsFile.Open(shard);
            // The model gets the tensors in the files' order, as before; they load on up to 8 threads, largest first so
            // that the threads finish together.
            var order = index.Files.SelectMany(shard => index.Tensors.Where(t => t.Value.File == shard).Select(t => t.Key)).ToList();
            var work = order.OrderByDescending(name => index.Tensors[name].Entry.ByteLength).ToList();
            // A tensor converted to another dtype exists in both for a moment; with 8 at once, a model that barely fits
            // would not. While converting, the tensors in flight hold at most ConversionBudget bytes (or the one
            // largest tensor alone, which needs its two copies whatever the order).
            bool converts = dtype is { } to && work.Any(name => index.Tensors[name].Entry.DType != to);
            var budget = converts ? new ByteBudget(Math.Max(ConversionBudget, index.Tensors[work[0]].Entry.ByteLength)) : null;
            try
            {
                Parallel.ForEach(work, new ParallelOptions { MaxDegreeOfParallelism = Math.Clamp(Environment.ProcessorCount, 1, 8) },
                    name =>
                    {
                        long bytes = index.Tensors[name].Entry.ByteLength;
                        budget?.Take(bytes);
                        try { loaded[name] = files[index.Tensors[name].File].Load(name, dev, dtype).DetachFromScope(); }
                        finally { budget?.Give(bytes); }
                    });
            }
            catch (AggregateException e) when (e.InnerExceptions.Count > 0)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            }
            var ordered = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var name in order) ordered[name] = loaded[name];
            return new CausalLM(index.Config, ordered, dev, index.RotaryPrecision);
        }
        catch
        {
            foreach (var t in loaded.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var f in files.Values) f.Dispose();
        }
    }

    /// <summary>Stored bytes of the tensors <see cref="Load"/> converts at once (1 GiB), unless one tensor alone is larger.</summary>
    public const long ConversionBudget = 1L << 30;

    /// <summary>Where one weight of a model folder lies: its file and its entry in that file's header.</summary>
    public sealed record WeightLocation(string File, TensorEntry Entry);

    /// <summary>
    /// A model folder's weights as <see cref="Scan"/> found them: the configuration, every parameter the model needs with
    /// the file that holds it, and the rotary precision <see cref="Load"/> gives the model.
    /// </summary>
    public sealed record WeightIndex(ModelConfig Config, IReadOnlyList<string> Files, IReadOnlyDictionary<string, WeightLocation> Tensors, DType? RotaryPrecision);

    /// <summary>
    /// Reads a model folder's configuration and the headers of its weight files, with <see cref="Load"/>'s checks (an
    /// unexpected tensor, one in two shards, a missing one), without loading any tensor: for loaders that read only parts
    /// of each weight (weight sharding). <paramref name="dtype"/> is the dtype the weights will be converted to, if any.
    /// </summary>
    public static WeightIndex Scan(string dir, DType? dtype = null)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var shards = WeightFiles(dir);
        var expected = CausalLM.ExpectedParameters(config).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var found = new Dictionary<string, WeightLocation>(StringComparer.Ordinal);
        DType? stored = null;
        foreach (var shard in shards)
        {
            using var file = SafetensorsFile.Open(shard);
            foreach (var name in file.Entries.Keys)
            {
                if (!expected.Contains(name))
                {
                    // Tied checkpoints sometimes store the head anyway; rotary buffers are recomputed.
                    if ((name == "lm_head.weight" && config.TieWordEmbeddings) || name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) continue;
                    throw new InvalidDataException($"{shard}: unexpected tensor '{name}' for {config.ArchitectureName} with this config.json");
                }
                if (found.ContainsKey(name)) throw new InvalidDataException($"{shard}: tensor '{name}' appears in more than one shard");
                if (name == "model.embed_tokens.weight") stored = file.Entry(name).DType;
                found[name] = new WeightLocation(shard, file.Entry(name));
            }
        }
        foreach (var (name, shape) in CausalLM.ExpectedParameters(config))
            if (!found.ContainsKey(name))
                throw new InvalidDataException($"{dir}: tensor '{name}' (shape [{string.Join(", ", shape)}]) is missing from the weights ({string.Join(", ", shards.Select(Path.GetFileName))})");
        // A checkpoint stored in 16 bits has been a 16-bit model: its rotary frequencies are rounded as transformers' are.
        DType? rotary = stored is DType.BFloat16 or DType.Float16 ? stored : dtype;
        return new WeightIndex(config, shards, found, rotary);
    }

    /// <summary>The weight files of a folder: the shards named by the index, or the single model.safetensors.</summary>
    public static IReadOnlyList<string> WeightFiles(string dir)
    {
        var index = Path.Combine(dir, IndexFile);
        if (File.Exists(index))
        {
            JsonNode? node;
            try { node = JsonNode.Parse(File.ReadAllText(index)); }
            catch (JsonException e) { throw new InvalidDataException($"{index}: not valid JSON ({e.Message})"); }
            if (node?["weight_map"] is not JsonObject map) throw new InvalidDataException($"{index}: no weight_map object");
            var files = map.Select(kv => kv.Value?.GetValue<string>() ?? throw new InvalidDataException($"{index}: '{kv.Key}' maps to no file"))
                .Distinct().OrderBy(f => f, StringComparer.Ordinal).ToList();
            foreach (var f in files)
                if (!File.Exists(Path.Combine(dir, f)))
                    throw new FileNotFoundException($"{index} names shard '{f}', which is missing from {dir}", Path.Combine(dir, f));
            return files.Select(f => Path.Combine(dir, f)).ToList();
        }
        var single = Path.Combine(dir, SingleFile);
        if (File.Exists(single)) return [single];
        throw new FileNotFoundException($"no weights in {dir}: expected {SingleFile} or {IndexFile}");
    }

    /// <summary>
    /// Writes <paramref name="model"/> as a standard folder that transformers, vLLM and llama.cpp's converter load:
    /// config.json, generation_config.json, model.safetensors (sharded with an index above <paramref name="maxShardBytes"/>),
    /// and the tokenizer files of <paramref name="sourceDir"/> when given. Every file is written atomically.
    /// </summary>
    public static void Save(CausalLM model, string dir, string? sourceDir = null, long maxShardBytes = 4L << 30) =>
        Save(model, dir, sourceDir, maxShardBytes, hash: null);

    /// <summary>
    /// <see cref="Save(CausalLM, string, string?, long)"/>, returning the digest of the weight files written:
    /// "sha256:" and the SHA-256 of the weight files in name order, hashed from the bytes as they are written (overlapped
    /// with writing them) instead of read back, the same value that <see cref="WeightsDigest"/> reads from the folder.
    /// </summary>
    public static string SaveWithDigest(CausalLM model, string dir, string? sourceDir = null, long maxShardBytes = 4L << 30)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        Save(model, dir, sourceDir, maxShardBytes, hash);
        return DigestPrefix + Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The prefix of a weights digest.</summary>
    public const string DigestPrefix = "sha256:";

    /// <summary>
    /// A digest of a model folder's weights: "sha256:" and the SHA-256 of the weight files (<see cref="WeightFiles"/>)
    /// in name order, one stream. Reading and hashing overlap (one thread reads the next 16 MiB block while this one
    /// hashes the last), so it runs at the slower of the disk and SHA-256; <paramref name="progress"/>, when given,
    /// hears "hashing N GB: p %" about once a second for folders that take longer than that.
    /// </summary>
    public static string WeightsDigest(string modelDir, Action<string>? progress = null)
    {
        var files = WeightFiles(modelDir).Order(StringComparer.Ordinal).ToList();
        long total = files.Sum(f => new FileInfo(f).Length), done = 0;
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        const int block = 16 << 20;
        var buffers = new[] { new byte[block], new byte[block] };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double lastReport = 1.0;
        foreach (var f in files)
        {
            using var s = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            int cur = 0;
            var pending = s.ReadAtLeastAsync(buffers[cur], block, throwOnEndOfStream: false).AsTask();
            while (true)
            {
                int n = pending.GetAwaiter().GetResult();
                if (n == 0) break;
                var filled = buffers[cur];
                cur ^= 1;
                pending = n < block ? Task.FromResult(0) : s.ReadAtLeastAsync(buffers[cur], block, throwOnEndOfStream: false).AsTask();
                sha.AppendData(filled, 0, n);
                done += n;
                if (progress is not null && clock.Elapsed.TotalSeconds >= lastReport)
                {
                    lastReport = clock.Elapsed.TotalSeconds + 1;
                    progress(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"hashing {total / 1e9:F1} GB of weights: {100.0 * done / total:F0} %"));
                }
            }
        }
        if (progress is not null && clock.Elapsed.TotalSeconds >= 1)
            progress(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"hashed {total / 1e9:F1} GB of weights in {clock.Elapsed.TotalSeconds:F1} s"));
        return DigestPrefix + Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static void Save(CausalLM model, string dir, string? sourceDir, long maxShardBytes, System.Security.Cryptography.IncrementalHash? hash)
    {
        Directory.CreateDirectory(dir);
        // LoRA adapters, if any, are merged: the folder holds a standard model.
        var exported = model.ExportParameters();
        try
        {
            SaveTensors(model, dir, exported, sourceDir, maxShardBytes, hash);
        }
        finally
        {
            foreach (var t in exported.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Saves <paramref name="model"/> as <see cref="Save"/> does into a fresh folder that is then published as
    /// <paramref name="dir"/> in one step (<see cref="AtomicFolder"/>); <paramref name="extra"/> adds files (a manifest)
    /// before publishing. Without <paramref name="overwrite"/> an existing folder is left untouched
    /// (<see cref="OutputExistsException"/>); with it the old folder is replaced whole, so no file of it survives.
    /// </summary>
    public static void Publish(CausalLM model, string dir, string? sourceDir = null, long maxShardBytes = 4L << 30, bool overwrite = false,
        Action<string>? extra = null) =>
        AtomicFolder.Publish(dir, tmp =>
        {
            Save(model, tmp, sourceDir, maxShardBytes);
            extra?.Invoke(tmp);
        }, overwrite);

    private static void SaveTensors(CausalLM model, string dir, Dictionary<string, Tensor> parameters, string? sourceDir, long maxShardBytes,
        System.Security.Cryptography.IncrementalHash? hash) =>
        SaveStreamed(model.Config, model.DType, dir, parameters.Select(p => new TensorSpec(p.Key, p.Value.DType, p.Value.Shape)).ToList(),
            layout => layout.Select(s => parameters[s.Name]), sourceDir, maxShardBytes, hash);

    /// <summary>
    /// The weight files a save writes for tensors <paramref name="tensors"/>: the file names (relative to the folder) in
    /// the order they are written and hashed, and for each the tensors it holds in the order they are written
    /// (<see cref="Safetensors.Layout"/>). One model.safetensors up to <paramref name="maxShardBytes"/>, else shards
    /// filled in name order.
    /// </summary>
    public static IReadOnlyList<(string File, IReadOnlyList<TensorSpec> Layout)> WeightLayout(IReadOnlyList<TensorSpec> tensors, long maxShardBytes)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var ordered = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        if (ordered.Sum(t => t.Bytes) <= maxShardBytes) return [(SingleFile, Safetensors.Layout(ordered))];
        var shards = new List<List<TensorSpec>> { new() };
        long size = 0;
        foreach (var t in ordered)
        {
            if (size > 0 && size + t.Bytes > maxShardBytes)
            {
                shards.Add([]);
                size = 0;
            }
            shards[^1].Add(t);
            size += t.Bytes;
        }
        return shards.Select((s, i) => ($"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors", Safetensors.Layout(s))).ToList();
    }

    /// <summary>
    /// <see cref="SaveWithDigest(CausalLM, string, string?, long)"/> for a model whose tensors are produced on demand:
    /// <paramref name="tensors"/> names every weight of the saved folder with its dtype and shape, and
    /// <paramref name="produce"/> is called once per weight file (<see cref="WeightLayout"/>) with the tensors that file
    /// holds, in the order they are written; it yields them in that order, each valid until the next is asked for (a
    /// weight-sharded model gathers one unit at a time). The files are the bytes the whole-model save writes.
    /// </summary>
    public static string SaveWithDigest(ModelConfig config, DType dtype, IReadOnlyList<TensorSpec> tensors, Func<IReadOnlyList<TensorSpec>, IEnumerable<Tensor>> produce,
        string dir, string? sourceDir = null, long maxShardBytes = 4L << 30)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(produce);
        Directory.CreateDirectory(dir);
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        SaveStreamed(config, dtype, dir, tensors, produce, sourceDir, maxShardBytes, hash);
        return DigestPrefix + Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static void SaveStreamed(ModelConfig config, DType dtype, string dir, IReadOnlyList<TensorSpec> tensors, Func<IReadOnlyList<TensorSpec>, IEnumerable<Tensor>> produce,
        string? sourceDir, long maxShardBytes, System.Security.Cryptography.IncrementalHash? hash)
    {
        var dup = tensors.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup != null) throw new ArgumentException($"tensor name '{dup.Key}' appears twice", nameof(tensors));
        var files = WeightLayout(tensors, maxShardBytes);

        // Remove weight files of an earlier save that the new layout would not overwrite.
        foreach (var stale in Directory.GetFiles(dir, "model*.safetensors").Append(Path.Combine(dir, IndexFile)))
            if (File.Exists(stale)) File.Delete(stale);

        // Files are written in name order, the order the digest covers them in.
        foreach (var (file, layout) in files)
            Safetensors.Save(Path.Combine(dir, file), layout, produce(layout), null, hash);
        if (files.Count > 1)
        {
            var map = new JsonObject();
            foreach (var (file, layout) in files)
                foreach (var t in layout.OrderBy(t => t.Name, StringComparer.Ordinal)) map[t.Name] = file;
            var index = new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = tensors.Sum(t => t.Bytes) },
                ["weight_map"] = map,
            };
            AtomicFile.WriteText(Path.Combine(dir, IndexFile), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }

        AtomicFile.WriteText(Path.Combine(dir, "config.json"), config.ToJson(dtype.Name()));
        var gen = sourceDir is null ? null : Path.Combine(sourceDir, "generation_config.json");
        if (gen is not null && File.Exists(gen)) CopyAtomic(gen, Path.Combine(dir, "generation_config.json"));
        else
        {
            var g = new JsonObject { ["bos_token_id"] = config.BosTokenId };
            g["eos_token_id"] = config.EosTokenIds.Count == 1 ? config.EosTokenIds[0] : new JsonArray(config.EosTokenIds.Select(i => (JsonNode)i).ToArray());
            AtomicFile.WriteText(Path.Combine(dir, "generation_config.json"), g.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
        if (sourceDir is not null && Path.GetFullPath(sourceDir) != Path.GetFullPath(dir))
            foreach (var f in TokenizerFiles)
                if (File.Exists(Path.Combine(sourceDir, f))) CopyAtomic(Path.Combine(sourceDir, f), Path.Combine(dir, f));
    }

    private static void CopyAtomic(string from, string to) => AtomicFile.Copy(from, to);
}
