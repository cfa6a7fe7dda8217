using System.Text.Json;
using System.Text.Json.Serialization;
using Oml.Models;
using Oml.Models.IO;

namespace Oml.Lab.Experiments;

/// <summary>The saved result of one experiment cell.</summary>
public sealed class CellResult
{
    public string Id { get; set; } = "";
    public string Kind { get; set; } = "";
    /// <summary>Position in the experiment's cell order (reports list cells in it).</summary>
    public int Order { get; set; }
    public Dictionary<string, string> Labels { get; set; } = [];
    public Dictionary<string, double> Metrics { get; set; } = [];
    public Dictionary<string, List<double>> Series { get; set; } = [];
    public double Seconds { get; set; }
    public DateTimeOffset Finished { get; set; }

    public string Label(string key) => Labels.TryGetValue(key, out var v) ? v : "";
    public double Metric(string key) => Metrics.TryGetValue(key, out var v) ? v : double.NaN;
}

/// <summary>
/// What a run was: config, machine, times (run.json in the output folder; run-shard-I-of-N.json for shard I of N, so
/// that the shards of one run never write the same file).
/// </summary>
public sealed class RunInfo
{
    /// <summary>"I/N" for shard I of N (empty: the whole experiment).</summary>
    public string Shard { get; set; } = "";
    /// <summary>The --only pattern the run was restricted to (empty: none).</summary>
    public string Only { get; set; } = "";
    public string Name { get; set; } = "";
    public string Kind { get; set; } = "";
    public string ConfigPath { get; set; } = "";
    public string ConfigText { get; set; } = "";
    public string ConfigDirectory { get; set; } = "";
    public DateTimeOffset Started { get; set; }
    public DateTimeOffset? Finished { get; set; }
    public double Seconds { get; set; }
    public string Machine { get; set; } = "";
    public string Os { get; set; } = "";
    public int CpuCount { get; set; }
    /// <summary>The processor (<see cref="RunInputs.Processor"/>): the same program and inputs train different models on
    /// processors whose BLAS kernels round differently.</summary>
    public string Processor { get; set; } = "";
    public string Device { get; set; } = "";
    public string DeviceName { get; set; } = "";
    public string LibTorch { get; set; } = "";
    public string GitCommit { get; set; } = "";
    /// <summary>The lab's build: its version with the commit it was built from (e.g. "1.0.0+3f2c…"), which a copy of the
    /// program taken to another machine keeps even where the checkout there is not a git repository.</summary>
    public string Build { get; set; } = "";
    public int CellsComputed { get; set; }
    public int CellsReused { get; set; }
    /// <summary>The experiment's cells, of every shard.</summary>
    public int CellsTotal { get; set; }
    /// <summary>The cells this run was to compute (its shard's, matching --only); equals <see cref="CellsTotal"/> otherwise.</summary>
    public int CellsOwned { get; set; }
    /// <summary>What the run read, with SHA-256 digests (<see cref="RunInputs.Describe"/>); empty in run files written
    /// before inputs were recorded.</summary>
    public List<RunInput> Inputs { get; set; } = [];
    /// <summary>How <see cref="Inputs"/> differ from the last earlier run's in this folder, when that folder already held
    /// cells (which this run then loads although they were computed on the other inputs).</summary>
    public List<string> InputChanges { get; set; } = [];

    /// <summary>The file this run's info is saved in.</summary>
    [JsonIgnore] public string FileName => Shard.Length == 0 ? "run.json" : ShardSpec.Parse(Shard).RunInfoFile;
}

/// <summary>
/// Cell results as one JSON file each under OUT/cells, written atomically as each cell completes, so that a killed run
/// resumes by skipping the cells already there.
/// </summary>
public sealed class CellStore(string outDir)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public string Directory { get; } = Path.Combine(outDir, "cells");

    public string PathOf(string id) => Path.Combine(Directory, id + ".json");

    /// <summary>Whether any cell result is saved (an earlier run's or another shard's).</summary>
    public bool Any() => System.IO.Directory.Exists(Directory) && System.IO.Directory.EnumerateFiles(Directory, "*.json").Any();

    public bool TryLoad(string id, out CellResult result)
    {
        var p = PathOf(id);
        result = null!;
        if (!File.Exists(p)) return false;
        try
        {
            result = JsonSerializer.Deserialize<CellResult>(File.ReadAllText(p), Json) ?? throw new InvalidDataException("empty");
            return result.Id == id;
        }
        catch (JsonException e) { throw new InvalidDataException($"{p}: not a cell result ({e.Message}); delete it to recompute the cell", e); }
    }

    public void Save(CellResult r) => AtomicFile.WriteText(PathOf(r.Id), JsonSerializer.Serialize(r, Json));

    public List<CellResult> LoadAll()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        return System.IO.Directory.GetFiles(Directory, "*.json").Select(f =>
        {
            try { return JsonSerializer.Deserialize<CellResult>(File.ReadAllText(f), Json) ?? throw new InvalidDataException($"{f} is empty"); }
            catch (JsonException e) { throw new InvalidDataException($"{f}: not a cell result ({e.Message})", e); }
        }).OrderBy(c => c.Order).ThenBy(c => c.Id, StringComparer.Ordinal).ToList();
    }

    public static void SaveRunInfo(string outDir, RunInfo info) => AtomicFile.WriteText(Path.Combine(outDir, info.FileName), JsonSerializer.Serialize(info, Json));

    /// <summary>The most recently started run's info (run.json or a shard's run-shard-I-of-N.json).</summary>
    public static RunInfo LoadRunInfo(string outDir) => LoadRunInfos(outDir)[^1];

    /// <summary>Every run info in the output folder (run.json and the shards'), oldest start first; at least one.</summary>
    public static List<RunInfo> LoadRunInfos(string outDir)
    {
        var files = new List<string>();
        var plain = Path.Combine(outDir, "run.json");
        if (File.Exists(plain)) files.Add(plain);
        if (System.IO.Directory.Exists(outDir)) files.AddRange(System.IO.Directory.GetFiles(outDir, "run-shard-*-of-*.json").Order(StringComparer.Ordinal));
        if (files.Count == 0) throw new FileNotFoundException($"{plain} not found: {outDir} is not the output folder of a lab run");
        return files.Select(p =>
        {
            try { return JsonSerializer.Deserialize<RunInfo>(File.ReadAllText(p), Json) ?? throw new InvalidDataException($"{p} is empty"); }
            catch (JsonException e) { throw new InvalidDataException($"{p}: not a run info ({e.Message})", e); }
        }).OrderBy(i => i.Started).ToList();
    }
}
