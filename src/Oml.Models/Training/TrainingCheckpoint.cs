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
/// The data order needs no generator state: it is a function of the seed and the step (see <see cref="TrainingData"/>),
/// and training draws no other random numbers, so the step is the complete random state. The folder is written under a
/// temporary name and renamed into place; older checkpoints are deleted afterwards.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Format = "oml-training-checkpoint";
    public const int Version = 1;
    public const string StateFile = "state.json";
    public const string ParamsFile = "params.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    private const string Prefix = "step-";

    /// <summary>What a checkpoint holds besides the tensors.</summary>
    public sealed record State(string Digest, long Step, IReadOnlyDictionary<string, long> OptimizerSteps, double IntervalLoss,
        double IntervalGradNorm, int IntervalSteps, long Tokens, double Seconds, IReadOnlyList<TrainingProgress> History, string Folder);

    private static string FolderName(long step) => Prefix + step.ToString("D9", CultureInfo.InvariantCulture);

    private static long? TryStep(string name) =>
        name.StartsWith(Prefix, StringComparison.Ordinal)
        && long.TryParse(name.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : null;

    public static string Save(string dir, State state, IReadOnlyList<KeyValuePair<string, Tensor>> parameters, AdamW opt)
    {
        Directory.CreateDirectory(dir);
        var final = Path.Combine(dir, FolderName(state.Step));
        var tmp = Path.Combine(dir, $".tmp-{FolderName(state.Step)}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            Safetensors.Save(Path.Combine(tmp, ParamsFile), parameters);
            var moments = new List<KeyValuePair<string, Tensor>>();
            var steps = new JsonObject();
            foreach (var (name, p) in parameters)
            {
                steps[name] = opt.StepOf(p);
                if (opt.MomentsOf(p) is { } m)
                {
                    moments.Add(new(name + ".exp_avg", m.ExpAvg));
                    moments.Add(new(name + ".exp_avg_sq", m.ExpAvgSq));
                }
            }
            Safetensors.Save(Path.Combine(tmp, OptimizerFile), moments);
            var history = new JsonArray();
            foreach (var h in state.History) history.Add((JsonNode)ToJson(h));
            var json = new JsonObject
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
            AtomicFile.WriteText(Path.Combine(tmp, StateFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
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
            if (old != final && ((TryStep(name) is { } s && s < state.Step) || name.StartsWith(".tmp-", StringComparison.Ordinal)))
                try { Directory.Delete(old, recursive: true); } catch (IOException) { }
        }
        return final;
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
        if (!Directory.Exists(dir)) return null;
        foreach (var (folder, _) in Directory.EnumerateDirectories(dir).Select(d => (d, TryStep(Path.GetFileName(d))))
                     .Where(x => x.Item2 is not null).OrderByDescending(x => x.Item2))
        {
            var statePath = Path.Combine(folder, StateFile);
            if (!File.Exists(statePath) || !File.Exists(Path.Combine(folder, ParamsFile)) || !File.Exists(Path.Combine(folder, OptimizerFile))) continue;
            JsonObject j;
            try { j = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject(); }
            catch (JsonException e) { throw new InvalidDataException($"{statePath}: not valid JSON ({e.Message})"); }
            if ((string?)j["format"] != Format) throw new InvalidDataException($"{statePath} is not a training checkpoint");
            if ((int?)j["version"] != Version) throw new InvalidDataException($"{statePath}: checkpoint version {j["version"]} is not supported (expected {Version})");
            return new State((string)j["digest"]!, (long)j["step"]!,
                j["optimizer_steps"]!.AsObject().ToDictionary(kv => kv.Key, kv => (long)kv.Value!),
                (double)j["interval_loss"]!, (double)j["interval_grad_norm"]!, (int)j["interval_steps"]!, (long)j["tokens"]!, (double)j["seconds"]!,
                j["history"]!.AsArray().Select(x => FromJson(x!)).ToList(), folder);
        }
        return null;
    }

    /// <summary>Copies the checkpoint's parameters and AdamW moments into place.</summary>
    public static void Restore(State state, IReadOnlyList<KeyValuePair<string, Tensor>> parameters, AdamW opt)
    {
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        using var pf = SafetensorsFile.Open(Path.Combine(state.Folder, ParamsFile));
        using var of = SafetensorsFile.Open(Path.Combine(state.Folder, OptimizerFile));
        foreach (var (name, p) in parameters)
        {
            if (!pf.Entries.ContainsKey(name)) throw new InvalidDataException($"{state.Folder}: the checkpoint lacks parameter '{name}'");
            p.CopyFrom(pf.Load(name, p.Device));
            if (of.Entries.ContainsKey(name + ".exp_avg"))
                opt.SetState(p, of.Load(name + ".exp_avg", p.Device), of.Load(name + ".exp_avg_sq", p.Device),
                    state.OptimizerSteps.TryGetValue(name, out var s) ? s : 0);
        }
    }
}
