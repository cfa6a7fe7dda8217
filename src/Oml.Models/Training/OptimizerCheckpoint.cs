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
        foreach (var old in Directory.EnumerateDirectories(dir))
        {
            var oldName = Path.GetFileName(old);
            bool stale = (Number(oldName, prefix) is { } n && n < number) || oldName.StartsWith(".tmp-", StringComparison.Ordinal);
            if (stale && old != final)
                try { Directory.Delete(old, recursive: true); } catch (IOException) { }
        }
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
            if (!File.Exists(statePath) || !File.Exists(Path.Combine(folder, ParamsFile)) || !File.Exists(Path.Combine(folder, OptimizerFile))) continue;
            JsonObject j;
            try { j = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject(); }
            catch (JsonException e) { throw new InvalidDataException($"{statePath}: not valid JSON ({e.Message})"); }
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
        using var pf = SafetensorsFile.Open(Path.Combine(folder, ParamsFile));
        using var of = SafetensorsFile.Open(Path.Combine(folder, OptimizerFile));
        foreach (var (name, p) in parameters)
        {
            if (!pf.Entries.ContainsKey(name)) throw new InvalidDataException($"{folder}: the checkpoint lacks parameter '{name}'");
            p.CopyFrom(pf.Load(name, p.Device));
            if (of.Entries.ContainsKey(name + ".exp_avg") && (holdsMoments?.Invoke(p) ?? true))
                opt.SetState(p, of.Load(name + ".exp_avg", p.Device), of.Load(name + ".exp_avg_sq", p.Device),
                    optimizerSteps.TryGetValue(name, out var s) ? s : 0);
        }
    }

    private static long? Number(string folderName, string prefix) =>
        folderName.StartsWith(prefix, StringComparison.Ordinal)
        && long.TryParse(folderName.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
}
