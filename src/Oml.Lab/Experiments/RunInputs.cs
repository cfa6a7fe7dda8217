using System.Security.Cryptography;
using Oml.Models;

namespace Oml.Lab.Experiments;

/// <summary>
/// One input a lab run read, with its SHA-256: a data file the config names (corpus, held-out text, instruction data,
/// benign data) or the base model (its weights digest and its tokenizer). Recorded in run.json, so that a result can
/// be traced to the exact data it was computed on, and compared when a run resumes in a folder that holds cells.
/// </summary>
public sealed class RunInput
{
    /// <summary>What the input is to the run: config (the config file's text), corpus, heldout, instructions,
    /// benign_data, build_base.instruct, base_model or tokenizer.</summary>
    public string Role { get; set; } = "";
    /// <summary>The path as the config names it (relative to the config's folder, or "$out/...").</summary>
    public string Path { get; set; } = "";
    public long Bytes { get; set; }
    /// <summary>"sha256:" and the hex digest; for base_model the weights digest (<see cref="ModelFolder.WeightsDigest"/>).</summary>
    public string Sha256 { get; set; } = "";
}

public static class RunInputs
{
    /// <summary>
    /// The inputs of <paramref name="env"/>'s config as they are now (call after <see cref="LabEnvironment.Prepare"/>,
    /// which builds the base model when the config says so). Files the config names that do not exist are left out:
    /// the run itself says so where it needs them.
    /// </summary>
    public static List<RunInput> Describe(LabEnvironment env)
    {
        var c = env.Config;
        var list = new List<RunInput>();
        // The config's own text: extending a config (more seeds, attacks or models) and resuming is how runs grow, so a
        // change is reported, not refused; cells whose settings changed are the user's to delete.
        var text = System.Text.Encoding.UTF8.GetBytes(c.Text);
        list.Add(new RunInput { Role = "config", Path = c.FilePath is { } fp ? System.IO.Path.GetFileName(fp) : "(text)", Bytes = text.Length, Sha256 = ModelFolder.DigestPrefix + Convert.ToHexStringLower(SHA256.HashData(text)) });
        void File(string role, string? path)
        {
            if (string.IsNullOrWhiteSpace(path)) return;
            var full = env.Resolve(path);
            if (!System.IO.File.Exists(full) || list.Any(i => i.Role == role && i.Path == path)) return;
            list.Add(new RunInput { Role = role, Path = path, Bytes = new FileInfo(full).Length, Sha256 = HashFile(full) });
        }
        foreach (var p in c.Corpus) File("corpus", p);
        foreach (var p in c.Heldout) File("heldout", p);
        File("instructions", c.Utility.Instructions);
        File("benign_data", c.Embedding.BenignData);
        File("build_base.instruct", c.BuildBase?.Instruct?.Data);
        var weights = Directory.Exists(env.BaseDir) ? ModelFolder.WeightFiles(env.BaseDir) : [];
        if (weights.Count > 0)
            list.Add(new RunInput
            {
                Role = "base_model", Path = c.BaseModel,
                Bytes = weights.Sum(f => new FileInfo(f).Length),
                Sha256 = ModelFolder.WeightsDigest(env.BaseDir),
            });
        var tokDir = c.Tokenizer is null ? env.BaseDir : env.Resolve(c.Tokenizer);
        var tok = System.IO.Path.Combine(tokDir, "tokenizer.json");
        if (System.IO.File.Exists(tok))
            list.Add(new RunInput { Role = "tokenizer", Path = System.IO.Path.Combine(c.Tokenizer ?? c.BaseModel, "tokenizer.json"), Bytes = new FileInfo(tok).Length, Sha256 = HashFile(tok) });
        return list;
    }

    /// <summary>
    /// How <paramref name="now"/> differs from an earlier run's <paramref name="before"/>, one line per input whose
    /// content changed, that is new, or that is gone (matched by role and path). Empty when <paramref name="before"/>
    /// recorded nothing (a run.json written before inputs were recorded).
    /// </summary>
    public static List<string> Changes(IReadOnlyList<RunInput> before, IReadOnlyList<RunInput> now)
    {
        var changes = new List<string>();
        if (before.Count == 0) return changes;
        foreach (var n in now)
        {
            var b = before.FirstOrDefault(i => i.Role == n.Role && i.Path == n.Path);
            if (b is null) changes.Add($"{n.Role} {n.Path} is new ({Short(n.Sha256)})");
            else if (b.Sha256 != n.Sha256) changes.Add($"{n.Role} {n.Path} changed ({Short(b.Sha256)} → {Short(n.Sha256)})");
        }
        foreach (var b in before)
            if (!now.Any(i => i.Role == b.Role && i.Path == b.Path)) changes.Add($"{b.Role} {b.Path} is no longer read ({Short(b.Sha256)})");
        return changes;
    }

    /// <summary>
    /// The processor as Linux names it: model name, family, model and stepping, and the widest x86 vector extension
    /// (OpenBLAS picks its kernels by these, so the same run can round differently on another processor); on other
    /// systems the architecture alone.
    /// </summary>
    public static string Processor()
    {
        var arch = System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
        try
        {
            if (!System.IO.File.Exists("/proc/cpuinfo")) return arch;
            var fields = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var line in System.IO.File.ReadLines("/proc/cpuinfo"))
            {
                if (line.Length == 0) break;   // the first processor's block is enough
                int colon = line.IndexOf(':');
                if (colon > 0) fields.TryAdd(line[..colon].Trim(), line[(colon + 1)..].Trim());
            }
            string F(string k) => fields.TryGetValue(k, out var v) ? v : "?";
            var flags = F("flags").Split(' ');
            var vector = flags.Contains("avx512f") ? "AVX-512" : flags.Contains("avx2") ? "AVX2" : flags.Contains("avx") ? "AVX" : "";
            return fields.ContainsKey("model name")
                ? $"{F("model name")} (family {F("cpu family")}, model {F("model")}, stepping {F("stepping")}{(vector.Length > 0 ? $", {vector}" : "")})"
                : arch;
        }
        catch (IOException) { return arch; }
        catch (UnauthorizedAccessException) { return arch; }
    }

    /// <summary>"sha256:" and the first 12 hex digits.</summary>
    public static string Short(string digest) =>
        digest.StartsWith(ModelFolder.DigestPrefix, StringComparison.Ordinal) && digest.Length > ModelFolder.DigestPrefix.Length + 12
            ? digest[..(ModelFolder.DigestPrefix.Length + 12)] : digest;

    private static string HashFile(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return ModelFolder.DigestPrefix + Convert.ToHexStringLower(SHA256.HashData(s));
    }
}
