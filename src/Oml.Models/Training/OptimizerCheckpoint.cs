using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models.Training;

/// <summary>
/// The folder layout that training and fingerprint-embedding checkpoints share: a folder <c>PREFIX + number</c> holding
/// <c>params.safetensors</c> (the optimised parameters by name), <c>optimizer.safetensors</c> (AdamW's moments,
/// <c>NAME.exp_avg</c> and <c>NAME.exp_avg_sq</c>) and, written last, <c>state.json</c> (the caller's fields plus every
/// parameter's AdamW step count under <c>optimizer_steps</c>). A folder is written under a temporary name and renamed
/// into place once complete, so a crash mid-write leaves the previous checkpoint valid; older ones are deleted after.
/// A sharded optimizer writes its moments per rank instead of <c>optimizer.safetensors</c> (<see cref="SaveSharded"/>),
/// and a weight-sharded run writes no whole tensor: each rank its segments' values and moments (<see cref="SaveSegments"/>).
/// </summary>
public static class OptimizerCheckpoint
{
    public const string StateFile = "state.json";
    public const string ParamsFile = "params.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";

    /// <summary>
    /// Writes checkpoint <paramref name="number"/> in <paramref name="dir"/> and deletes older numbered folders and
    /// leftover temporary ones. <paramref name="state"/> builds state.json from the optimizer-steps object. Returns the folder.
    /// </summary>
    public static string Save(string dir, string prefix, int digits, long number, IReadOnlyList<KeyValuePair<string, Tensor>> parameters,
        AdamW opt, Func<JsonObject, JsonObject> state) =>
        Save(dir, prefix, digits, number, parameters, p => (opt.StepOf(p), opt.MomentsOf(p)), state);

    /// <summary>
    /// As above, with each parameter's AdamW step count and moments (null before its first update) given by
    /// <paramref name="optimizerState"/>: a sharded optimizer gathers them from the ranks that own them, so the
    /// checkpoint holds the whole optimizer state by parameter name, whatever the number of ranks.
    /// </summary>
    public static string Save(string dir, string prefix, int digits, long number, IReadOnlyList<KeyValuePair<string, Tensor>> parameters,
        Func<Tensor, (long Step, (Tensor ExpAvg, Tensor ExpAvgSq)? Moments)> optimizerState, Func<JsonObject, JsonObject> state)
    {
        Directory.CreateDirectory(dir);
        string name = prefix + number.ToString("D" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        var final = Path.Combine(dir, name);
        var tmp = Path.Combine(dir, $".tmp-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            Safetensors.Save(Path.Combine(tmp, ParamsFile), parameters);
            var moments = new List<KeyValuePair<string, Tensor>>();
            var steps = new JsonObject();
            foreach (var (pname, p) in parameters)
            {
                var (step, pm) = optimizerState(p);
                steps[pname] = step;
                if (pm is { } m)
                {
                    moments.Add(new(pname + ".exp_avg", m.ExpAvg));
                    moments.Add(new(pname + ".exp_avg_sq", m.ExpAvgSq));
                }
            }
            Safetensors.Save(Path.Combine(tmp, OptimizerFile), moments);
            AtomicFile.WriteText(Path.Combine(tmp, StateFile), state(steps).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(tmp, final);
        }
        catch
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw;
        }
        DeleteOlder(dir, prefix, number, final);
        return final;
    }

    /// <summary>
    /// The newest complete checkpoint (all three files present) in <paramref name="dir"/> and its state, or null. A state
    /// file of another format or version is an error, named with <paramref name="kind"/>.
    /// </summary>
    public static (string Folder, JsonObject State)? Latest(string dir, string prefix, string format, int version, string kind)
    {
        if (!Directory.Exists(dir)) return null;
        foreach (var (folder, _) in Directory.EnumerateDirectories(dir).Select(d => (d, Number(Path.GetFileName(d), prefix)))
                     .Where(x => x.Item2 is not null).OrderByDescending(x => x.Item2))
        {
            var statePath = Path.Combine(folder, StateFile);
            if (!File.Exists(statePath)) continue;
            bool whole = File.Exists(Path.Combine(folder, ParamsFile));
            JsonObject j;
            try { j = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject(); }
            // A folder without the weights file was never a checkpoint of the whole-weights form: skipped as before.
            catch (JsonException) when (!whole) { continue; }
            catch (JsonException e) { throw new InvalidDataException($"{statePath}: not valid JSON ({e.Message})"); }
            // A weight-sharded run's checkpoint: every rank's segment file, at its recorded size, holds values and moments.
            bool segments = SegmentsComplete(folder, j);
            if (!segments && !whole) continue;
            // The optimizer state: one file, or one file per rank listed (with its size) in the state's shard index.
            if (!segments && !File.Exists(Path.Combine(folder, OptimizerFile)) && !ShardsComplete(folder, j)) continue;
            if ((string?)j["format"] != format) throw new InvalidDataException($"{statePath} is not {kind}");
            if ((int?)j["version"] != version) throw new InvalidDataException($"{statePath}: checkpoint version {j["version"]} is not supported (expected {version})");
            return (folder, j);
        }
        return null;
    }

    /// <summary>The AdamW step counts stored in a state file.</summary>
    public static IReadOnlyDictionary<string, long> OptimizerSteps(JsonObject state) =>
        state["optimizer_steps"]!.AsObject().ToDictionary(kv => kv.Key, kv => (long)kv.Value!);

    /// <summary>
    /// Copies a checkpoint's parameters into place and its moments into the optimizer; with <paramref name="holdsMoments"/>,
    /// only the moments of the parameters it accepts (a sharded optimizer: those this rank owns under the current
    /// number of ranks, which need not be the number that wrote the checkpoint).
    /// </summary>
    public static void Restore(string folder, IReadOnlyDictionary<string, long> optimizerSteps, IReadOnlyList<KeyValuePair<string, Tensor>> parameters, AdamW opt,
        Func<Tensor, bool>? holdsMoments = null)
    {
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        if (SegmentIndex(folder).Count > 0)
        {
            // A weight-sharded run's checkpoint: each whole parameter (and its moments) assembled from the ranks' segments.
            using var reader = new SegmentReader(folder);
            foreach (var (name, p) in parameters)
            {
                using var step = Torch.NewScope();
                p.CopyFrom(reader.Read(name, "", 0, p.NumEl).View(p.Shape));
                if (!(holdsMoments?.Invoke(p) ?? true) || !reader.HasMoments(name)) continue;
                opt.SetState(p, reader.Read(name, ".exp_avg", 0, p.NumEl).View(p.Shape).To(p.Device), reader.Read(name, ".exp_avg_sq", 0, p.NumEl).View(p.Shape).To(p.Device),
                    optimizerSteps.TryGetValue(name, out var st) ? st : 0);
            }
            return;
        }
        using var pf = SafetensorsFile.Open(Path.Combine(folder, ParamsFile));
        foreach (var (name, p) in parameters)
        {
            if (!pf.Entries.ContainsKey(name)) throw new InvalidDataException($"{folder}: the checkpoint lacks parameter '{name}'");
            p.CopyFrom(pf.Load(name, p.Device));
        }
        // The moments: from the single file, or from the per-rank files that hold them (whatever world size wrote them:
        // each parameter is looked up by name in the shard index, and only the files holding moments this rank keeps are opened).
        var single = Path.Combine(folder, OptimizerFile);
        var holder = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(single))
            foreach (var f in ShardIndex(folder))
                foreach (var n in f.Parameters) holder[n] = f.File;
        var open = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, p) in parameters)
            {
                if (!(holdsMoments?.Invoke(p) ?? true)) continue;
                string? file = File.Exists(single) ? OptimizerFile : holder.GetValueOrDefault(name);
                if (file is null) continue;
                if (!open.TryGetValue(file, out var of)) open[file] = of = SafetensorsFile.Open(Path.Combine(folder, file));
                if (!of.Entries.ContainsKey(name + ".exp_avg")) continue;
                using var step = Torch.NewScope();
                opt.SetState(p, of.Load(name + ".exp_avg", p.Device), of.Load(name + ".exp_avg_sq", p.Device),
                    optimizerSteps.TryGetValue(name, out var s) ? s : 0);
            }
        }
        finally
        {
            foreach (var f in open.Values) f.Dispose();
        }
    }

    /// <summary>
    /// A weight-sharded run's resume (<see cref="ShardedModel"/>): each rank loads its segments of every trainable
    /// parameter and of its moments from a checkpoint of any world size and mode: a weight-sharded one (only this rank's
    /// ranges are read, <see cref="SegmentReader"/>) or one with whole parameters (params.safetensors, the moments in one
    /// file or in per-rank optimizer files). <paramref name="optimized"/> gives the tensor the optimizer steps for a segment
    /// (null: the segment itself; a float32 master copy in mixed precision).
    /// </summary>
    public static void Restore(string folder, IReadOnlyDictionary<string, long> optimizerSteps, ShardedModel sharded, AdamW opt,
        Func<ShardedModel.Segment, Tensor>? optimized = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(sharded);
        if (SegmentIndex(folder).Count > 0)
        {
            // A weight-sharded checkpoint (of any world size): only this rank's ranges are read from the ranks' files.
            using var reader = new SegmentReader(folder);
            sharded.LoadTrainable((ShardedModel.Segment sg) => reader.Read(sg.Name, "", sg.Start, sg.Length),
                (ShardedModel.Segment sg) => reader.HasMoments(sg.Name)
                    ? (reader.Read(sg.Name, ".exp_avg", sg.Start, sg.Length), reader.Read(sg.Name, ".exp_avg_sq", sg.Start, sg.Length),
                        optimizerSteps.TryGetValue(sg.Name, out var st) ? st : 0)
                    : ((Tensor, Tensor, long)?)null,
                opt, optimized);
            return;
        }
        using var pf = SafetensorsFile.Open(Path.Combine(folder, ParamsFile));
        // The moments: the single file, or the per-rank files of a --shard-optimizer run (looked up by name in its index).
        bool single = File.Exists(Path.Combine(folder, OptimizerFile));
        var holder = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!single)
            foreach (var f in ShardIndex(folder))
                foreach (var n in f.Parameters) holder[n] = f.File;
        var open = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            sharded.LoadTrainable(
                name => pf.Entries.ContainsKey(name) ? pf.Load(name, Device.Cpu) : throw new InvalidDataException($"{folder}: the checkpoint lacks parameter '{name}'"),
                name =>
                {
                    string? file = single ? OptimizerFile : holder.GetValueOrDefault(name);
                    if (file is null) return null;
                    if (!open.TryGetValue(file, out var of)) open[file] = of = SafetensorsFile.Open(Path.Combine(folder, file));
                    return of.Entries.ContainsKey(name + ".exp_avg")
                        ? (of.Load(name + ".exp_avg", Device.Cpu), of.Load(name + ".exp_avg_sq", Device.Cpu), optimizerSteps.TryGetValue(name, out var s) ? s : 0)
                        : null;
                },
                opt, optimized);
        }
        finally
        {
            foreach (var f in open.Values) f.Dispose();
        }
    }

    // ------------------------------------------------------------------ per-rank optimizer files

    /// <summary>The state-file key of the shard index: the world size and, per rank, its file, its size and the parameters whose moments it holds.</summary>
    public const string ShardsKey = "optimizer_shards";

    /// <summary>The optimizer file of rank <paramref name="rank"/> of <paramref name="worldSize"/> in a sharded checkpoint.</summary>
    public static string ShardFile(int rank, int worldSize) =>
        string.Create(CultureInfo.InvariantCulture, $"optimizer-{rank:D5}-of-{worldSize:D5}.safetensors");

    /// <summary>One entry of a shard index.</summary>
    public sealed record Shard(string File, long Bytes, IReadOnlyList<string> Parameters);

    /// <summary>The files of a checkpoint folder that hold AdamW's moments: the single optimizer file, or every rank's.</summary>
    public static IReadOnlyList<string> MomentFiles(string folder) =>
        File.Exists(Path.Combine(folder, OptimizerFile)) ? [Path.Combine(folder, OptimizerFile)] : ShardIndex(folder).Select(f => Path.Combine(folder, f.File)).ToList();

    /// <summary>The shard index of a checkpoint folder's state file (empty for the single-file form).</summary>
    public static IReadOnlyList<Shard> ShardIndex(string folder)
    {
        var (state, statePath) = ReadState(folder);
        return ShardIndex(state, statePath);
    }

    /// <summary>A checkpoint folder's state file, parsed, and its path (bad JSON: <see cref="InvalidDataException"/> naming it).</summary>
    private static (JsonObject State, string Path) ReadState(string folder)
    {
        var statePath = Path.Combine(folder, StateFile);
        try { return (JsonNode.Parse(File.ReadAllText(statePath))!.AsObject(), statePath); }
        catch (JsonException e) { throw new InvalidDataException($"{statePath}: not valid JSON ({e.Message})"); }
    }

    private static List<Shard> ShardIndex(JsonObject state, string where)
    {
        if (state[ShardsKey] is not JsonObject idx) return [];
        try
        {
            var files = idx["files"]!.AsArray().Select(f => new Shard((string)f!["file"]!, (long)f["bytes"]!,
                f["parameters"]!.AsArray().Select(n => (string)n!).ToList())).ToList();
            if (files.Count != (int)idx["world_size"]!) throw new InvalidDataException($"{where}: the shard index lists {files.Count} files for world size {idx["world_size"]}");
            foreach (var f in files)
                if (f.File != Path.GetFileName(f.File) || !f.File.StartsWith("optimizer-", StringComparison.Ordinal))
                    throw new InvalidDataException($"{where}: '{f.File}' is not an optimizer shard file name");
            return files;
        }
        catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException)
        {
            throw new InvalidDataException($"{where}: malformed shard index ({e.Message})");
        }
    }

    /// <summary>Whether every file of the state's shard index is in the folder with the recorded size (false without an index).</summary>
    private static bool ShardsComplete(string folder, JsonObject state)
    {
        var shards = ShardIndex(state, Path.Combine(folder, StateFile));
        if (shards.Count == 0) return false;
        foreach (var f in shards)
        {
            var info = new FileInfo(Path.Combine(folder, f.File));
            if (!info.Exists || info.Length != f.Bytes) return false;
        }
        return true;
    }

    /// <summary>Test seam: called with the rank before it writes its optimizer file (a test makes one rank fail there).</summary>
    internal static Action<int>? BeforeShardWrite { get; set; }

    /// <summary>
    /// Writes checkpoint <paramref name="number"/> of a sharded optimizer with every rank of <paramref name="group"/>
    /// (all must call it): each rank writes the moments of the parameters it owns (<paramref name="owner"/>: each parameter's rank) to its own
    /// file, so no rank ever holds more than its share of the optimizer state; rank 0 writes the parameters (whole on
    /// every rank) and, once every rank has reported its file written, the state file with the shard index (file
    /// names, sizes, parameter names and every parameter's step count), then renames the folder into place. A rank that
    /// fails or dies before that leaves only a temporary folder, never a checkpoint that loads: the previous one stays
    /// the latest. The folder must be on a file system every rank shares. Any world size reads it back
    /// (<see cref="Restore"/> takes each parameter's moments from whichever file holds them).
    /// </summary>
    public static string? SaveSharded(Oml.Engine.Distributed.ProcessGroup group, Device device, string dir, string prefix, int digits, long number,
        IReadOnlyList<KeyValuePair<string, Tensor>> parameters, IReadOnlyList<int> owner, AdamW opt, Func<JsonObject, JsonObject> state)
    {
        ArgumentNullException.ThrowIfNull(group);
        int rank = group.Rank, world = group.WorldSize, n = parameters.Count;
        if (owner.Count != n) throw new ArgumentException($"one owner per parameter ({n}), not {owner.Count}", nameof(owner));
        string name = prefix + number.ToString("D" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        var final = Path.Combine(dir, name);
        // A name every rank derives alike; a leftover of a failed attempt is cleared by rank 0 before anyone writes.
        var tmp = Path.Combine(dir, string.Create(CultureInfo.InvariantCulture, $".tmp-{name}-sharded-{world}"));
        string? error = null;
        if (rank == 0)
            try
            {
                Directory.CreateDirectory(dir);
                if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
                Directory.CreateDirectory(tmp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { error = e.Message; }
        Agree(group, device, error, "create the checkpoint folder", rank);
        // Each rank's file, then one all-reduce: failures, each parameter's step count and whether it has moments
        // (from its owner), and each rank's file size.
        var meta = new long[1 + 2 * n + world];
        try
        {
            if (rank == 0) Safetensors.Save(Path.Combine(tmp, ParamsFile), parameters);
            var moments = new List<KeyValuePair<string, Tensor>>();
            for (int i = 0; i < n; i++)
            {
                if (owner[i] != rank) continue;
                var (pname, p) = parameters[i];
                meta[1 + i] = opt.StepOf(p);
                if (opt.MomentsOf(p) is { } m)
                {
                    meta[1 + n + i] = 1;
                    moments.Add(new(pname + ".exp_avg", m.ExpAvg));
                    moments.Add(new(pname + ".exp_avg_sq", m.ExpAvgSq));
                }
            }
            BeforeShardWrite?.Invoke(rank);
            var path = Path.Combine(tmp, ShardFile(rank, world));
            Safetensors.Save(path, moments);
            meta[1 + 2 * n + rank] = new FileInfo(path).Length;
        }
        // Any failure (I/O, libtorch, out of memory) must still reach the all-reduce below, or the other ranks wait in it.
        catch (Exception e) when (e is not OperationCanceledException)
        {
            error = e.Message;
            meta[0] = 1;
        }
        using (var scope = Torch.NewScope())
        {
            var t = Torch.FromArray(meta, meta.Length).To(device);
            group.AllReduce(t);
            meta = t.To(Device.Cpu).ToArray<long>();
        }
        if (meta[0] > 0)
        {
            if (rank == 0) try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw new IOException(error is not null
                ? $"rank {rank} of {world}: could not write its part of checkpoint {final}: {error}"
                : $"rank {rank} of {world}: checkpoint {final} was not written: {meta[0]} other rank(s) failed to write their part");
        }
        if (rank == 0)
            try
            {
                // Every rank's file must be where rank 0 sees it: the folder must be on a file system all ranks share.
                for (int r = 0; r < world; r++)
                {
                    var info = new FileInfo(Path.Combine(tmp, ShardFile(r, world)));
                    if (!info.Exists || info.Length != meta[1 + 2 * n + r])
                        throw new IOException($"rank {r}'s optimizer file is not in {tmp} as rank {r} wrote it: the checkpoint folder must be on a file system all ranks share");
                }
                var steps = new JsonObject();
                var files = new JsonArray();
                for (int r = 0; r < world; r++)
                    files.Add((JsonNode)new JsonObject { ["file"] = ShardFile(r, world), ["bytes"] = meta[1 + 2 * n + r], ["parameters"] = new JsonArray() });
                for (int i = 0; i < n; i++)
                {
                    steps[parameters[i].Key] = meta[1 + i];
                    if (meta[1 + n + i] == 1) files[owner[i]]!["parameters"]!.AsArray().Add((JsonNode)parameters[i].Key);
                }
                var j = state(steps);
                j[ShardsKey] = new JsonObject { ["world_size"] = world, ["files"] = files };
                AtomicFile.WriteText(Path.Combine(tmp, StateFile), j.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
                Directory.Move(tmp, final);
                DeleteOlder(dir, prefix, number, final);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { error = e.Message; }
        Agree(group, device, error, "commit the checkpoint", rank);
        return rank == 0 ? final : null;
    }

    // ------------------------------------------------------------------ per-rank weight segments (weight sharding)

    /// <summary>The state-file key of a weight-sharded checkpoint's index: the world size and, per rank, its file, its size and its segments.</summary>
    public const string SegmentsKey = "weight_shards";

    /// <summary>The values-and-moments file of rank <paramref name="rank"/> of <paramref name="worldSize"/> in a weight-sharded checkpoint.</summary>
    public static string SegmentFile(int rank, int worldSize) =>
        string.Create(CultureInfo.InvariantCulture, $"segments-{rank:D5}-of-{worldSize:D5}.safetensors");

    /// <summary>
    /// One rank's piece of a parameter: elements [<see cref="Start"/>, <see cref="Start"/> + <see cref="Length"/>) of its
    /// row-major flattening, and whether the file holds its moments.
    /// </summary>
    public sealed record Segment(string Name, long Start, long Length, bool Moments)
    {
        /// <summary>The tensor name of the piece in its file (the moments add ".exp_avg" and ".exp_avg_sq").</summary>
        public string Key => string.Create(CultureInfo.InvariantCulture, $"{Name}@{Start}");
    }

    /// <summary>One rank's file of a weight-sharded checkpoint.</summary>
    public sealed record SegmentShard(string File, long Bytes, IReadOnlyList<Segment> Segments);

    /// <summary>The segment index of a checkpoint folder's state file (empty when the weights are whole in params.safetensors).</summary>
    public static IReadOnlyList<SegmentShard> SegmentIndex(string folder)
    {
        var (state, statePath) = ReadState(folder);
        return SegmentIndex(state, statePath);
    }

    private static List<SegmentShard> SegmentIndex(JsonObject state, string where)
    {
        if (state[SegmentsKey] is not JsonObject idx) return [];
        try
        {
            var files = idx["files"]!.AsArray().Select(f => new SegmentShard((string)f!["file"]!, (long)f["bytes"]!,
                f["segments"]!.AsArray().Select(x => new Segment((string)x![0]!, (long)x[1]!, (long)x[2]!, (bool)x[3]!)).ToList())).ToList();
            if (files.Count != (int)idx["world_size"]!) throw new InvalidDataException($"{where}: the segment index lists {files.Count} files for world size {idx["world_size"]}");
            foreach (var f in files)
            {
                if (f.File != Path.GetFileName(f.File) || !f.File.StartsWith("segments-", StringComparison.Ordinal))
                    throw new InvalidDataException($"{where}: '{f.File}' is not a segment file name");
                if (f.Segments.Any(x => x.Start < 0 || x.Length < 0)) throw new InvalidDataException($"{where}: a segment of '{f.File}' has a negative range");
            }
            return files;
        }
        catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException or ArgumentOutOfRangeException)
        {
            throw new InvalidDataException($"{where}: malformed segment index ({e.Message})");
        }
    }

    private static bool SegmentsComplete(string folder, JsonObject state)
    {
        var shards = SegmentIndex(state, Path.Combine(folder, StateFile));
        if (shards.Count == 0) return false;
        foreach (var f in shards)
        {
            var info = new FileInfo(Path.Combine(folder, f.File));
            if (!info.Exists || info.Length != f.Bytes) return false;
        }
        return true;
    }

    /// <summary>
    /// Reads any range of a parameter (or of its moments) from a weight-sharded checkpoint, whatever world size wrote it:
    /// the pieces of the segments that overlap the range, from the files that hold them (opened once, memory-mapped, only
    /// those bytes read). Every element of a trainable parameter is in exactly one segment.
    /// </summary>
    public sealed class SegmentReader : IDisposable
    {
        private readonly string _folder;
        private readonly Dictionary<string, List<(Segment Segment, string File)>> _byName = new(StringComparer.Ordinal);
        private readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);

        public SegmentReader(string folder)
        {
            _folder = folder;
            foreach (var f in SegmentIndex(folder))
                foreach (var sg in f.Segments)
                {
                    if (!_byName.TryGetValue(sg.Name, out var list)) _byName[sg.Name] = list = [];
                    list.Add((sg, f.File));
                }
            foreach (var list in _byName.Values) list.Sort((a, b) => a.Segment.Start.CompareTo(b.Segment.Start));
        }

        /// <summary>Whether the checkpoint holds the moments of <paramref name="name"/> (it has taken a step).</summary>
        public bool HasMoments(string name) => _byName.TryGetValue(name, out var l) && l.All(x => x.Segment.Moments);

        /// <summary>
        /// Elements [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) of the flattened
        /// parameter <paramref name="name"/> (<paramref name="suffix"/> "" for its values, ".exp_avg" or ".exp_avg_sq" for
        /// its moments), as a new 1-d CPU tensor in the stored dtype.
        /// </summary>
        public Tensor Read(string name, string suffix, long start, long length)
        {
            if (!_byName.TryGetValue(name, out var list)) throw new InvalidDataException($"{_folder}: the checkpoint lacks parameter '{name}'");
            using var scope = Torch.NewScope();
            Tensor? result = null;
            long covered = 0;
            foreach (var (sg, file) in list)
            {
                long a = Math.Max(start, sg.Start), b = Math.Min(start + length, sg.Start + sg.Length);
                if (b <= a) continue;
                if (!_open.TryGetValue(file, out var f)) _open[file] = f = SafetensorsFile.Open(Path.Combine(_folder, file));
                var piece = f.LoadSlice(sg.Key + suffix, a - sg.Start, b - a, Device.Cpu);
                result ??= Torch.Zeros([length], piece.DType, Device.Cpu);
                result.Narrow(0, a - start, b - a).CopyFrom(piece);
                covered += b - a;
            }
            if (covered != length || result is null)
                throw new InvalidDataException($"{_folder}: the segments of '{name}' cover {covered} of elements [{start}, {start + length})");
            return result.MoveToOuterScope();
        }

        public void Dispose()
        {
            foreach (var f in _open.Values) f.Dispose();
            _open.Clear();
        }
    }

    /// <summary>
    /// Writes checkpoint <paramref name="number"/> of a weight-sharded run with every rank of <paramref name="group"/>
    /// (all must call it): each rank writes its own segments of the trainable parameters, their values and their AdamW
    /// moments, to its own file (no rank gathers anything), and rank 0, once every rank has reported its file written,
    /// the state file with the segment index (each rank's file, size and segments) and every parameter's step count (the
    /// largest over its segments), then renames the folder into place: all or nothing, as <see cref="SaveSharded"/>.
    /// <paramref name="names"/> lists every trainable parameter (the same on every rank); a segment is (name, start in
    /// the flattened parameter, 1-d value, step count, moments or null). <see cref="Restore"/> and
    /// <see cref="SegmentReader"/> read it back with any world size, sharded or not. Returns the folder on rank 0.
    /// </summary>
    public static string? SaveSegments(Oml.Engine.Distributed.ProcessGroup group, Device device, string dir, string prefix, int digits, long number,
        IReadOnlyList<string> names, IReadOnlyList<(string Name, long Start, Tensor Value, long Step, (Tensor ExpAvg, Tensor ExpAvgSq)? Moments)> segments,
        Func<JsonObject, JsonObject> state)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(segments);
        int rank = group.Rank, world = group.WorldSize, n = names.Count;
        var slot = names.Select((x, i) => (x, i)).ToDictionary(t => t.x, t => t.i, StringComparer.Ordinal);
        string name = prefix + number.ToString("D" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        var final = Path.Combine(dir, name);
        var tmp = Path.Combine(dir, string.Create(CultureInfo.InvariantCulture, $".tmp-{name}-segments-{world}"));
        string? error = null;
        if (rank == 0)
            try
            {
                Directory.CreateDirectory(dir);
                if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
                Directory.CreateDirectory(tmp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { error = e.Message; }
        Agree(group, device, error, "create the checkpoint folder", rank);
        // Each rank's file, then one all-reduce (max): failure, every parameter's step count, each rank's file size.
        var meta = new long[1 + n + world];
        try
        {
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (var (pname, start, value, step, moments) in segments)
            {
                if (!slot.TryGetValue(pname, out int i)) throw new InvalidOperationException($"segment of '{pname}', which is not among the trainable parameters");
                meta[1 + i] = Math.Max(meta[1 + i], step);
                var key = new Segment(pname, start, value.NumEl, moments is not null).Key;
                tensors.Add(new(key, value));
                if (moments is { } m)
                {
                    tensors.Add(new(key + ".exp_avg", m.ExpAvg));
                    tensors.Add(new(key + ".exp_avg_sq", m.ExpAvgSq));
                }
            }
            BeforeShardWrite?.Invoke(rank);
            var path = Path.Combine(tmp, SegmentFile(rank, world));
            Safetensors.Save(path, tensors);
            meta[1 + n + rank] = new FileInfo(path).Length;
        }
        // Any failure (I/O, libtorch, out of memory) must still reach the all-reduce below, or the other ranks wait in it.
        catch (Exception e) when (e is not OperationCanceledException)
        {
            error = e.Message;
            meta[0] = 1;
        }
        // The segment lists go to rank 0 through the file system: rank 0 reads each file's header once it is committed.
        using (var scope = Torch.NewScope())
        {
            var t = Torch.FromArray(meta, meta.Length).To(device);
            group.AllReduce(t, Oml.Engine.Distributed.ReduceOp.Max);
            meta = t.To(Device.Cpu).ToArray<long>();
        }
        if (meta[0] > 0)
        {
            if (rank == 0) try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw new IOException(error is not null
                ? $"rank {rank} of {world}: could not write its part of checkpoint {final}: {error}"
                : $"rank {rank} of {world}: checkpoint {final} was not written: other rank(s) failed to write their part");
        }
        if (rank == 0)
            try
            {
                var steps = new JsonObject();
                for (int i = 0; i < n; i++) steps[names[i]] = meta[1 + i];
                var files = new JsonArray();
                for (int r = 0; r < world; r++)
                {
                    var path = Path.Combine(tmp, SegmentFile(r, world));
                    var info = new FileInfo(path);
                    if (!info.Exists || info.Length != meta[1 + n + r])
                        throw new IOException($"rank {r}'s segment file is not in {tmp} as rank {r} wrote it: the checkpoint folder must be on a file system all ranks share");
                    var list = new JsonArray();
                    using (var f = SafetensorsFile.Open(path))
                        foreach (var e in f.Entries.Values.Where(e => !e.Name.EndsWith(".exp_avg", StringComparison.Ordinal) && !e.Name.EndsWith(".exp_avg_sq", StringComparison.Ordinal))
                                     .OrderBy(e => e.Name, StringComparer.Ordinal))
                        {
                            int at = e.Name.LastIndexOf('@');
                            list.Add((JsonNode)new JsonArray(e.Name[..at], long.Parse(e.Name[(at + 1)..], NumberStyles.None, CultureInfo.InvariantCulture), e.NumEl,
                                f.Entries.ContainsKey(e.Name + ".exp_avg")));
                        }
                    files.Add((JsonNode)new JsonObject { ["file"] = SegmentFile(r, world), ["bytes"] = info.Length, ["segments"] = list });
                }
                var j = state(steps);
                j[SegmentsKey] = new JsonObject { ["world_size"] = world, ["files"] = files };
                AtomicFile.WriteText(Path.Combine(tmp, StateFile), j.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
                Directory.Move(tmp, final);
                DeleteOlder(dir, prefix, number, final);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException) { error = e.Message; }
        Agree(group, device, error, "commit the checkpoint", rank);
        return rank == 0 ? final : null;
    }

    /// <summary>One all-reduce of a failure flag: every rank throws when any rank failed at <paramref name="what"/>.</summary>
    internal static void Agree(Oml.Engine.Distributed.ProcessGroup group, Device device, string? error, string what, int rank)
    {
        using var scope = Torch.NewScope();
        var t = Torch.FromArray(new long[] { error is null ? 0 : 1 }, 1).To(device);
        group.AllReduce(t);
        if (t.To(Device.Cpu).ToArray<long>()[0] > 0)
            throw new IOException(error is not null ? $"rank {rank} of {group.WorldSize}: could not {what}: {error}" : $"rank {rank} of {group.WorldSize}: another rank could not {what}");
    }

    private static void DeleteOlder(string dir, string prefix, long number, string final)
    {
        foreach (var old in Directory.EnumerateDirectories(dir))
        {
            var oldName = Path.GetFileName(old);
            bool stale = (Number(oldName, prefix) is { } k && k < number) || oldName.StartsWith(".tmp-", StringComparison.Ordinal);
            if (stale && old != final)
                try { Directory.Delete(old, recursive: true); } catch (IOException) { }
        }
    }

    private static long? Number(string folderName, string prefix) =>
        folderName.StartsWith(prefix, StringComparison.Ordinal)
        && long.TryParse(folderName.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
}
