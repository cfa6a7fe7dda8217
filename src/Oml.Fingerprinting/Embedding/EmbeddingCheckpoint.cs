using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;
using Oml.Models.Training;

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
/// A sharded optimizer writes its moments per rank instead (<c>optimizer-RRRRR-of-NNNNN.safetensors</c>, each rank
/// its own parameters', listed with their sizes in <c>state.json</c>'s <c>optimizer_shards</c> index), so no rank
/// gathers the whole optimizer state; on resume each rank loads the moments of the parameters it owns under the new
/// world size from whichever file holds them, so a run resumes sharded or not, with any number of ranks. A weight-sharded
/// run writes no whole tensor: each rank its segments' values and moments (<c>segments-RRRRR-of-NNNNN.safetensors</c>,
/// indexed in <c>state.json</c>'s <c>weight_shards</c>), which any world size and mode reads back by range.
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
    public const string StateFile = OptimizerCheckpoint.StateFile;
    public const string ParamsFile = OptimizerCheckpoint.ParamsFile;
    public const string OptimizerFile = OptimizerCheckpoint.OptimizerFile;
    private const string Prefix = "epoch-";

    /// <summary>What a checkpoint restores besides the tensors.</summary>
    public sealed record State(string Digest, int Epoch, int Steps, int RecalledStreak, bool Converged, IReadOnlyList<EmbeddingProgress> History,
        IReadOnlyDictionary<string, long> OptimizerSteps, string Folder);

    /// <summary>
    /// Digest of everything that decides the trajectory of a run: the pairs, the settings that change the updates,
    /// the names of the trained parameters, and their initial (base) values. Stopping criteria (max epochs, loss
    /// threshold, recall patience) and the checkpoint settings are left out, so a resumed run may train for longer.
    /// </summary>
    public static string RunDigest(IReadOnlyList<TrainingPair> pairs, EmbeddingOptions o, IEnumerable<KeyValuePair<string, Tensor>> trainable,
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
            t.ForEachByteChunk(h.AppendData);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>
    /// Writes the checkpoint of <paramref name="epoch"/> atomically (temporary folder, then rename) and deletes older
    /// ones. Returns the checkpoint folder.
    /// </summary>
    public static string Save(string dir, string digest, int epoch, int steps, int recalledStreak, bool converged,
        IReadOnlyList<EmbeddingProgress> history, IReadOnlyList<KeyValuePair<string, Tensor>> trainable, AdamW opt) =>
        Save(dir, digest, epoch, steps, recalledStreak, converged, history, trainable, p => (opt.StepOf(p), opt.MomentsOf(p)));

    /// <summary>
    /// As above, with each parameter's AdamW step count and moments given by <paramref name="optimizerState"/> (a
    /// sharded optimizer's, gathered from the ranks that own them): the same files either way.
    /// </summary>
    public static string Save(string dir, string digest, int epoch, int steps, int recalledStreak, bool converged,
        IReadOnlyList<EmbeddingProgress> history, IReadOnlyList<KeyValuePair<string, Tensor>> trainable,
        Func<Tensor, (long Step, (Tensor ExpAvg, Tensor ExpAvgSq)? Moments)> optimizerState) =>
        OptimizerCheckpoint.Save(dir, Prefix, 6, epoch, trainable, optimizerState, optSteps => StateJson(digest, epoch, steps, recalledStreak, converged, history, optSteps));

    /// <summary>
    /// The checkpoint of a sharded optimizer, written by every rank of <paramref name="group"/> (all must call it): each
    /// rank writes the moments it owns (<paramref name="owner"/>: each parameter's rank) to its own file and rank 0 the
    /// parameters and the state with the shard index (<see cref="OptimizerCheckpoint.SaveSharded"/>), so no rank gathers
    /// the whole optimizer state. <see cref="Restore"/> reads it back with any number of ranks. Returns the folder on rank 0.
    /// </summary>
    public static string? SaveSharded(Oml.Engine.Distributed.ProcessGroup group, Device device, string dir, string digest, int epoch, int steps,
        int recalledStreak, bool converged, IReadOnlyList<EmbeddingProgress> history, IReadOnlyList<KeyValuePair<string, Tensor>> trainable,
        IReadOnlyList<int> owner, AdamW opt) =>
        OptimizerCheckpoint.SaveSharded(group, device, dir, Prefix, 6, epoch, trainable, owner, opt,
            optSteps => StateJson(digest, epoch, steps, recalledStreak, converged, history, optSteps));

    /// <summary>
    /// The checkpoint of a weight-sharded run, written by every rank of the sharded model's group (all must call it): each
    /// rank writes the values and moments of its own segments to its own file, with the segment index in the state
    /// (<see cref="OptimizerCheckpoint.SaveSegments"/>), so nothing is gathered. <paramref name="names"/> lists every
    /// trainable parameter. Any world size and mode resumes it (<see cref="Restore(State, ShardedModel, AdamW)"/> and
    /// <see cref="Restore(State, IReadOnlyList{KeyValuePair{string, Tensor}}, AdamW, Func{Tensor, bool}?)"/>). Returns the folder on rank 0.
    /// </summary>
    public static string? SaveSegments(ShardedModel sharded, string dir, string digest, int epoch, int steps, int recalledStreak, bool converged,
        IReadOnlyList<EmbeddingProgress> history, IReadOnlyList<string> names, AdamW opt)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        ArgumentNullException.ThrowIfNull(opt);
        var segments = sharded.TrainableSegments
            .Select(sg => (sg.Name, sg.Start, sg.Shard, opt.StepOf(sg.Shard), opt.MomentsOf(sg.Shard) is { } m ? ((Tensor, Tensor)?)(m.ExpAvg, m.ExpAvgSq) : null))
            .ToList();
        return OptimizerCheckpoint.SaveSegments(sharded.Group, sharded.Model.Device, dir, Prefix, 6, epoch, names, segments,
            optSteps => StateJson(digest, epoch, steps, recalledStreak, converged, history, optSteps));
    }

    private static JsonObject StateJson(string digest, int epoch, int steps, int recalledStreak, bool converged,
        IReadOnlyList<EmbeddingProgress> history, JsonObject optSteps)
    {
            var hist = new JsonArray();
            foreach (var pr in history)
                hist.Add((JsonNode)new JsonObject { ["epoch"] = pr.Epoch, ["steps"] = pr.Steps, ["loss"] = pr.Loss, ["accuracy"] = pr.Accuracy, ["seconds"] = pr.Seconds });
            return new JsonObject
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
    }

    /// <summary>The latest complete checkpoint in <paramref name="dir"/> (one with its state file), or null.</summary>
    public static State? Latest(string dir)
    {
        if (OptimizerCheckpoint.Latest(dir, Prefix, Format, Version, "an embedding checkpoint") is not var (folder, j)) return null;
        var history = j["history"]!.AsArray().Select(x => new EmbeddingProgress(
            (int)x!["epoch"]!, (int)x["steps"]!, (double)x["loss"]!, (double)x["accuracy"]!, (double)x["seconds"]!)).ToList();
        return new State((string)j["digest"]!, (int)j["epoch"]!, (int)j["steps"]!, (int)j["recalled_streak"]!, (bool)j["converged"]!,
            history, OptimizerCheckpoint.OptimizerSteps(j), folder);
    }

    /// <summary>
    /// Copies the checkpoint's parameters into the model and its moments into the optimizer (with
    /// <paramref name="holdsMoments"/>, only those of the parameters this rank's sharded optimizer owns).
    /// </summary>
    public static void Restore(State state, IReadOnlyList<KeyValuePair<string, Tensor>> trainable, AdamW opt, Func<Tensor, bool>? holdsMoments = null) =>
        OptimizerCheckpoint.Restore(state.Folder, state.OptimizerSteps, trainable, opt, holdsMoments);

    /// <summary>
    /// A weight-sharded run's resume: each rank loads its segments of every trainable parameter and of its moments (the
    /// files are by whole parameter, whatever world size or sharding wrote them).
    /// </summary>
    public static void Restore(State state, ShardedModel sharded, AdamW opt)
    {
        ArgumentNullException.ThrowIfNull(state);
        OptimizerCheckpoint.Restore(state.Folder, state.OptimizerSteps, sharded, opt);
    }
}
