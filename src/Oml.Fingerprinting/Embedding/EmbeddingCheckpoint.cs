using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Fingerprinting.Embedding;

/// <summary>
/// Checkpoints of an embedding run, so that a killed run resumes where it stopped and ends at the same weights as an
/// uninterrupted one. A checkpoint is a folder <c>epoch-NNNNNN</c> inside the checkpoint directory holding
/// <list type="bullet">
/// <item><c>params.safetensors</c>: the trained parameters, by Hugging Face name;</item>
/// <item><c>optimizer.safetensors</c>: AdamW's moments, <c>NAME.exp_avg</c> and <c>NAME.exp_avg_sq</c>;</item>
/// <item><c>state.json</c> (written last): format and version, the run digest, the epoch and step counters, the
/// recall streak, whether the run had converged, every parameter's AdamW step count, and the training history.</item>
/// </list>
/// The folder is written under a temporary name and renamed into place once complete, so a crash mid-write leaves the
/// previous checkpoint valid; older checkpoints are deleted afterwards. The base copies used by model averaging and
/// the L2 penalty are not stored: they are the initial weights, which the digest (over the base weights as well as the
/// fingerprints and settings) proves to be those of the model passed in on resume. The batch order needs no saved
/// state: each epoch's permutation is derived from (seed, epoch).
/// </summary>
public static class EmbeddingCheckpoint
{
    public const string Format = "oml-embedding-checkpoint";
    public const int Version = 1;
    public const string StateFile = "state.json";
    public const string ParamsFile = "params.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    private const string Prefix = "epoch-";

    /// <summary>What a checkpoint restores besides the tensors.</summary>
    public sealed record State(string Digest, int Epoch, int Steps, int RecalledStreak, bool Converged, IReadOnlyList<EmbeddingProgress> History,
        IReadOnlyDictionary<string, long> OptimizerSteps, string Folder);

    /// <summary>
    /// Digest of everything that decides the trajectory of a run: the pairs, the settings that change the updates,
    /// the names of the trained parameters, and their initial (base) values. Stopping criteria (max epochs, loss
    /// threshold, recall patience) and the checkpoint settings are left out, so a resumed run may train for longer.
    /// </summary>
    public static string RunDigest(IReadOnlyList<TrainingPair> pairs, EmbeddingOptions o, IReadOnlyList<KeyValuePair<string, Tensor>> trainable,
        string? extra = null)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { var b = Encoding.UTF8.GetBytes(s); h.AppendData(BitConverter.GetBytes(b.Length)); h.AppendData(b); }
        void Ints(int[] a) { h.AppendData(BitConverter.GetBytes(a.Length)); foreach (var x in a) h.AppendData(BitConverter.GetBytes(x)); }
        Text(string.Create(CultureInfo.InvariantCulture,
            $"lr={o.LearningRate:R};wd={o.WeightDecay:R};batch={o.BatchSize};lambda={o.AveragingLambda:R};l2={o.L2ToBase:R};clip={o.MaxGradNorm:R};seed={o.Seed}"));
        // Added only when not the default, so that the digests (and checkpoints) of per-step runs stay as they were.
        if (o.AveragingEvery != AveragingSchedule.Step) Text("averaging_every=" + AveragingSchedules.Name(o.AveragingEvery));
        if (extra is not null) Text(extra);
        h.AppendData(BitConverter.GetBytes(pairs.Count));
        foreach (var p in pairs) { Ints(p.Key); Ints(p.Response); }
        foreach (var (name, t) in trainable)
        {
            Text(name);
            Text(string.Join(",", t.Shape) + ":" + t.DType);
            h.AppendData(t.ToBytes());
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    private static string FolderName(int epoch) => Prefix + epoch.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>
    /// Writes the checkpoint of <paramref name="epoch"/> atomically (temporary folder, then rename) and deletes older
    /// ones. Returns the checkpoint folder.
    /// </summary>
    public static string Save(string dir, string digest, int epoch, int steps, int recalledStreak, bool converged,
        IReadOnlyList<EmbeddingProgress> history, IReadOnlyList<KeyValuePair<string, Tensor>> trainable, AdamW opt)
    {
        Directory.CreateDirectory(dir);
        var final = Path.Combine(dir, FolderName(epoch));
        var tmp = Path.Combine(dir, $".tmp-{FolderName(epoch)}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            Safetensors.Save(Path.Combine(tmp, ParamsFile), trainable);
            var moments = new List<KeyValuePair<string, Tensor>>();
            var optSteps = new JsonObject();
            foreach (var (name, p) in trainable)
            {
                optSteps[name] = opt.StepOf(p);
                if (opt.MomentsOf(p) is { } m)
                {
                    moments.Add(new(name + ".exp_avg", m.ExpAvg));
                    moments.Add(new(name + ".exp_avg_sq", m.ExpAvgSq));
                }
            }
            Safetensors.Save(Path.Combine(tmp, OptimizerFile), moments);
            var hist = new JsonArray();
            foreach (var pr in history)
                hist.Add((JsonNode)new JsonObject { ["epoch"] = pr.Epoch, ["steps"] = pr.Steps, ["loss"] = pr.Loss, ["accuracy"] = pr.Accuracy, ["seconds"] = pr.Seconds });
            var state = new JsonObject
            {
                ["format"] = Format,
                ["version"] = Version,
                ["digest"] = digest,
                ["epoch"] = epoch,
                ["steps"] = steps,
                ["recalled_streak"] = recalledStreak,
                ["converged"] = converged,
                ["optimizer_steps"] = optSteps,
                ["history"] = hist,
            };
            AtomicFile.WriteText(Path.Combine(tmp, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(tmp, final);
        }
        catch
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw;
        }
        foreach (var old in Directory.EnumerateDirectories(dir))
        {
            var name = Path.GetFileName(old);
            bool stale = (TryEpoch(name) is { } e && e < epoch) || name.StartsWith(".tmp-", StringComparison.Ordinal);
            if (stale && old != final)
                try { Directory.Delete(old, recursive: true); } catch (IOException) { }
        }
        return final;
    }

    private static int? TryEpoch(string folderName) =>
        folderName.StartsWith(Prefix, StringComparison.Ordinal)
        && int.TryParse(folderName.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var e) ? e : null;

    /// <summary>The latest complete checkpoint in <paramref name="dir"/> (one with its state file), or null.</summary>
    public static State? Latest(string dir)
    {
        if (!Directory.Exists(dir)) return null;
        foreach (var folder in Directory.EnumerateDirectories(dir)
                     .Select(d => (Path: d, Epoch: TryEpoch(Path.GetFileName(d))))
                     .Where(x => x.Epoch is not null).OrderByDescending(x => x.Epoch))
        {
            var statePath = Path.Combine(folder.Path, StateFile);
            if (!File.Exists(statePath) || !File.Exists(Path.Combine(folder.Path, ParamsFile)) || !File.Exists(Path.Combine(folder.Path, OptimizerFile)))
                continue;
            var j = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject();
            if ((string?)j["format"] != Format) throw new InvalidDataException($"{statePath} is not an embedding checkpoint");
            if ((int)j["version"]! != Version) throw new InvalidDataException($"{statePath}: checkpoint version {(int)j["version"]!} is not supported (expected {Version})");
            var history = j["history"]!.AsArray().Select(x => new EmbeddingProgress(
                (int)x!["epoch"]!, (int)x["steps"]!, (double)x["loss"]!, (double)x["accuracy"]!, (double)x["seconds"]!)).ToList();
            var steps = j["optimizer_steps"]!.AsObject().ToDictionary(kv => kv.Key, kv => (long)kv.Value!);
            return new State((string)j["digest"]!, (int)j["epoch"]!, (int)j["steps"]!, (int)j["recalled_streak"]!, (bool)j["converged"]!,
                history, steps, folder.Path);
        }
        return null;
    }

    /// <summary>Copies the checkpoint's parameters into the model and its moments into the optimizer.</summary>
    public static void Restore(State state, IReadOnlyList<KeyValuePair<string, Tensor>> trainable, AdamW opt)
    {
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        using var pf = SafetensorsFile.Open(Path.Combine(state.Folder, ParamsFile));
        using var of = SafetensorsFile.Open(Path.Combine(state.Folder, OptimizerFile));
        foreach (var (name, p) in trainable)
        {
            if (!pf.Entries.ContainsKey(name)) throw new InvalidDataException($"{state.Folder}: the checkpoint lacks parameter '{name}'");
            p.CopyFrom(pf.Load(name, p.Device));
            long step = state.OptimizerSteps.TryGetValue(name, out var s) ? s : 0;
            if (of.Entries.ContainsKey(name + ".exp_avg"))
                opt.SetState(p, of.Load(name + ".exp_avg", p.Device), of.Load(name + ".exp_avg_sq", p.Device), step);
        }
    }
}
