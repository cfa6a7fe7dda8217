using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models.Training;

/// <summary>
/// Checkpoints of a <see cref="Trainer"/> run. A checkpoint is a folder <c>step-NNNNNNNNN</c> in the checkpoint
/// directory holding <c>params.safetensors</c> (the optimizer's parameters: the trained weights, or their float32
/// master copies when the model computes in bfloat16), <c>optimizer.safetensors</c> (AdamW's moments,
/// NAME.exp_avg and NAME.exp_avg_sq) and, written last, <c>state.json</c>: the run digest, the step, every parameter's
/// AdamW step count, the partial loss sums of the current report interval, elapsed time and tokens, and the history.
/// A sharded optimizer's run writes the moments per rank instead, listed in state.json's <c>optimizer_shards</c>
/// index, and any number of ranks resumes from either form.
/// The data order needs no generator state: it is a function of the seed and the step (see <see cref="TrainingData"/>),
/// and training draws no other random numbers, so the step is the complete random state. The folder is written under a
/// temporary name and renamed into place; older checkpoints are deleted afterwards.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Format = "oml-training-checkpoint";
    public const int Version = 1;
    public const string StateFile = OptimizerCheckpoint.StateFile;
    public const string ParamsFile = OptimizerCheckpoint.ParamsFile;
    public const string OptimizerFile = OptimizerCheckpoint.OptimizerFile;
    private const string Prefix = "step-";

    /// <summary>What a checkpoint holds besides the tensors.</summary>
    public sealed record State(string Digest, long Step, IReadOnlyDictionary<string, long> OptimizerSteps, double IntervalLoss,
        double IntervalGradNorm, int IntervalSteps, long Tokens, double Seconds, IReadOnlyList<TrainingProgress> History, string Folder);

    public static string Save(string dir, State state, IReadOnlyList<KeyValuePair<string, Tensor>> parameters, AdamW opt) =>
        OptimizerCheckpoint.Save(dir, Prefix, 9, state.Step, parameters, opt, steps => StateJson(state, steps));

    /// <summary>
    /// The checkpoint of a sharded optimizer, written by every rank of <paramref name="group"/> (all must call it): each
    /// rank writes the moments it owns (<paramref name="owner"/>: each parameter's rank) to its own file, rank 0 the
    /// parameters and the state with the shard index (<see cref="OptimizerCheckpoint.SaveSharded"/>). Returns the folder on rank 0.
    /// </summary>
    public static string? SaveSharded(Oml.Engine.Distributed.ProcessGroup group, Device device, string dir, State state,
        IReadOnlyList<KeyValuePair<string, Tensor>> parameters, IReadOnlyList<int> owner, AdamW opt) =>
        OptimizerCheckpoint.SaveSharded(group, device, dir, Prefix, 9, state.Step, parameters, owner, opt, steps => StateJson(state, steps));

    /// <summary>
    /// The checkpoint of a weight-sharded run, written by every rank of <paramref name="group"/> (all must call it): each
    /// rank writes the values and moments of its own segments (<paramref name="segments"/>: parameter name, start in the
    /// flattened parameter, the optimized 1-d tensor, its step count and moments) to its own file, rank 0 the state with the
    /// segment index (<see cref="OptimizerCheckpoint.SaveSegments"/>); nothing is gathered. <paramref name="names"/> lists
    /// every trained parameter. Any world size and mode resumes it. Returns the folder on rank 0.
    /// </summary>
    public static string? SaveSegments(Oml.Engine.Distributed.ProcessGroup group, Device device, string dir, State state, IReadOnlyList<string> names,
        IReadOnlyList<(string Name, long Start, Tensor Value, long Step, (Tensor ExpAvg, Tensor ExpAvgSq)? Moments)> segments) =>
        OptimizerCheckpoint.SaveSegments(group, device, dir, Prefix, 9, state.Step, names, segments, steps => StateJson(state, steps));

    private static JsonObject StateJson(State state, JsonObject steps)
    {
            var history = new JsonArray();
            foreach (var h in state.History) history.Add((JsonNode)ToJson(h));
            return new JsonObject
            {
                ["format"] = Format,
                ["version"] = Version,
                ["digest"] = state.Digest,
                ["step"] = state.Step,
                ["optimizer_steps"] = steps,
                ["interval_loss"] = state.IntervalLoss,
                ["interval_grad_norm"] = state.IntervalGradNorm,
                ["interval_steps"] = state.IntervalSteps,
                ["tokens"] = state.Tokens,
                ["seconds"] = state.Seconds,
                ["history"] = history,
            };
    }

    /// <summary>One report as JSON (the checkpoint's history and the command line's log use it).</summary>
    public static JsonObject ToJson(TrainingProgress p) => new()
    {
        ["step"] = p.Step,
        ["steps"] = p.Steps,
        ["loss"] = p.Loss,
        ["lr"] = p.LearningRate,
        ["grad_norm"] = p.GradNorm,
        ["tokens"] = p.Tokens,
        ["tokens_per_second"] = p.TokensPerSecond,
        ["seconds"] = p.Seconds,
        ["eval_loss"] = p.EvalLoss,
        ["eval_perplexity"] = p.EvalPerplexity,
    };

    private static TrainingProgress FromJson(JsonNode j) => new((long)j["step"]!, (long)j["steps"]!, (double)j["loss"]!, (double)j["lr"]!,
        (double)j["grad_norm"]!, (long)j["tokens"]!, (double)j["tokens_per_second"]!, (double)j["seconds"]!, (double?)j["eval_loss"]);

    /// <summary>The latest complete checkpoint in <paramref name="dir"/>, or null.</summary>
    public static State? Latest(string dir)
    {
        if (OptimizerCheckpoint.Latest(dir, Prefix, Format, Version, "a training checkpoint") is not var (folder, j)) return null;
        return new State((string)j["digest"]!, (long)j["step"]!, OptimizerCheckpoint.OptimizerSteps(j),
            (double)j["interval_loss"]!, (double)j["interval_grad_norm"]!, (int)j["interval_steps"]!, (long)j["tokens"]!, (double)j["seconds"]!,
            j["history"]!.AsArray().Select(x => FromJson(x!)).ToList(), folder);
    }

    /// <summary>Copies the checkpoint's parameters and AdamW moments into place.</summary>
    public static void Restore(State state, IReadOnlyList<KeyValuePair<string, Tensor>> parameters, AdamW opt, Func<Tensor, bool>? holdsMoments = null) =>
        OptimizerCheckpoint.Restore(state.Folder, state.OptimizerSteps, parameters, opt, holdsMoments);
}
