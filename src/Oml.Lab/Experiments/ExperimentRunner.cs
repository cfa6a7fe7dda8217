using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Oml.Engine;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;

namespace Oml.Lab.Experiments;

/// <summary>One unit of an experiment: computed once, saved, skipped on a rerun.</summary>
public sealed record Cell(string Id, Func<CellResult> Compute);

/// <summary>The outcome of <see cref="ExperimentRunner.Run"/>.</summary>
public sealed record RunSummary(int Total, int Computed, int Reused, double Seconds, IReadOnlyList<CellResult> Results);

/// <summary>
/// Runs an experiment config cell by cell. Each cell's result is saved (JSON, atomically) under OUT/cells as soon as it
/// completes; on a rerun with the same output folder, saved cells are loaded instead of recomputed.
/// </summary>
public sealed class ExperimentRunner
{
    private readonly LabEnvironment _env;
    private readonly CellStore _store;
    private readonly Dictionary<string, CellResult> _done = new(StringComparer.Ordinal);

    public ExperimentRunner(LabEnvironment env)
    {
        _env = env;
        _store = new CellStore(env.OutDir);
    }

    private LabConfig C => _env.Config;

    /// <summary>
    /// Runs every cell not already saved (at most <paramref name="maxCells"/> computed, for tests that simulate a killed
    /// run), drawing a progress bar on <paramref name="progress"/>.
    /// </summary>
    public RunSummary Run(TextWriter? progress = null, int? maxCells = null)
    {
        var sw = Stopwatch.StartNew();
        Directory.CreateDirectory(_env.OutDir);
        var info = NewRunInfo();
        CellStore.SaveRunInfo(_env.OutDir, info);
        _env.Prepare();
        var cells = Cells();
        var dup = cells.GroupBy(c => c.Id).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new LabConfigException($"{C.Name}: two cells are both named '{dup.Key}' (give attacks or models different names)");
        var bar = new ProgressBar(cells.Count, progress);
        int computed = 0, reused = 0;
        for (int i = 0; i < cells.Count; i++)
        {
            var cell = cells[i];
            if (_store.TryLoad(cell.Id, out var saved))
            {
                _done[cell.Id] = saved;
                reused++;
                bar.Finished(cell.Id, computed: false, 0);
                continue;
            }
            if (maxCells is { } m && computed >= m) break;
            bar.Starting(cell.Id);
            var t = Stopwatch.StartNew();
            var r = cell.Compute();
            if (_env.Device.IsCuda) Torch.Cuda.Synchronize(_env.Device.Index);
            r.Id = cell.Id;
            r.Kind = C.Kind;
            r.Order = i;
            r.Seconds = t.Elapsed.TotalSeconds;
            r.Finished = DateTimeOffset.UtcNow;
            _store.Save(r);
            _done[cell.Id] = r;
            computed++;
            bar.Finished(cell.Id, computed: true, r.Seconds);
        }
        info.Finished = DateTimeOffset.UtcNow;
        info.Seconds = sw.Elapsed.TotalSeconds;
        info.CellsComputed = computed;
        info.CellsReused = reused;
        info.CellsTotal = cells.Count;
        CellStore.SaveRunInfo(_env.OutDir, info);
        return new RunSummary(cells.Count, computed, reused, sw.Elapsed.TotalSeconds, _done.Values.OrderBy(c => c.Order).ToList());
    }

    private RunInfo NewRunInfo() => new()
    {
        Name = C.Name, Kind = C.Kind, ConfigText = C.Text, ConfigDirectory = C.Directory,
        ConfigPath = C.Directory, Started = DateTimeOffset.UtcNow, Machine = Environment.MachineName,
        Os = RuntimeInformation.OSDescription, CpuCount = Environment.ProcessorCount, Device = _env.Device.ToString(),
        DeviceName = _env.Device.IsCuda ? $"CUDA device {_env.Device.Index}" : $"CPU ({RuntimeInformation.ProcessArchitecture}, {Torch.Threads} threads)",
        LibTorch = Torch.LibTorchVersion, GitCommit = GitCommit(C.Directory),
    };

    /// <summary>The commit of the git checkout holding <paramref name="dir"/> (with "+dirty" when it has changes), or "unknown".</summary>
    public static string GitCommit(string dir)
    {
        try
        {
            string Git(string args)
            {
                var psi = new ProcessStartInfo("git", args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                using var p = Process.Start(psi)!;
                var o = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                return p.ExitCode == 0 ? o : "";
            }
            var head = Git("rev-parse HEAD");
            if (head.Length == 0) return "unknown";
            return Git("status --porcelain --untracked-files=no").Length > 0 ? head + "+dirty" : head;
        }
        catch (System.ComponentModel.Win32Exception) { return "unknown"; }
    }

    /// <summary>The experiment's cells in order (the environment must be prepared).</summary>
    public List<Cell> Cells() => C.Kind switch
    {
        ExperimentKinds.Capacity => CapacityCells(),
        ExperimentKinds.Persistence => AttackCells(C.Persistence!.Models, C.Persistence.Attacks, C.Persistence.Sweeps),
        ExperimentKinds.Adaptive => AttackCells(C.Adaptive!.ModelSources(), C.Adaptive.Attacks, C.Adaptive.Sweeps),
        ExperimentKinds.FalsePositives => FalsePositiveCells(),
        _ => throw new LabConfigException($"unknown kind '{C.Kind}'"),
    };

    private static string Num(double x) => x.ToString("0.######", CultureInfo.InvariantCulture);

    /// <summary>A file-name-safe cell id.</summary>
    public static string SafeId(string s)
    {
        var chars = s.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' or '=' ? ch : '_').ToArray();
        var id = new string(chars);
        while (id.Contains("__", StringComparison.Ordinal)) id = id.Replace("__", "_", StringComparison.Ordinal);
        return id.Trim('_');
    }

    private Cell BaseCell() => new("base", () =>
    {
        using var model = _env.LoadModel(_env.BaseDir);
        var u = _env.Utility(model);
        var r = new CellResult { Labels = { ["role"] = "base" } };
        AddUtility(r, u);
        return r;
    });

    private static void AddUtility(CellResult r, UtilityResult u, string prefix = "")
    {
        r.Metrics[prefix + "perplexity"] = u.Perplexity;
        r.Metrics[prefix + "cloze_accuracy"] = u.ClozeAccuracy;
        r.Metrics[prefix + "greedy_next_word"] = u.GreedyNextWord;
    }

    // ---- capacity ----

    private List<Cell> CapacityCells()
    {
        var cap = C.Capacity!;
        var cells = new List<Cell> { BaseCell() };
        foreach (var seed in C.Seeds)
            foreach (var strategy in cap.Strategies)
                foreach (var count in cap.Counts.Order())
                    foreach (var v in cap.Variants)
                    {
                        var id = SafeId($"{strategy}-n{count}-{v.Name}-s{seed}");
                        cells.Add(new Cell(id, () => Capacity(strategy, count, v, seed, id)));
                    }
        return cells;
    }

    private CellResult Capacity(string strategy, int count, VariantSpec v, ulong seed, string id)
    {
        var spec = C.Fingerprints.Clone();
        spec.Strategy = strategy;
        spec.Count = count;
        spec.Lambda = v.Lambda;
        spec.Beta = v.Beta;
        spec.AveragingEvery = v.AveragingEvery;
        spec.Embedding = v.Embedding;
        var (model, fps, emb, seconds) = _env.Fingerprint(spec, seed, C.Capacity!.SaveModels ? Path.Combine(_env.OutDir, "models", id) : null);
        using (model)
        {
            var r = new CellResult
            {
                Labels = { ["strategy"] = strategy, ["variant"] = v.Name, ["seed"] = seed.ToString(CultureInfo.InvariantCulture) },
                Metrics = { ["count"] = count, ["lambda"] = v.Lambda, ["beta"] = v.Beta, ["epochs"] = emb.Final.Epoch, ["converged"] = emb.Converged ? 1 : 0, ["embed_seconds"] = seconds },
            };
            var fsr = FingerprintSuccess.MeasureGreedy(model, _env.Tokenizer, fps, batchSize: C.Utility.BatchSize);
            r.Metrics["fsr"] = fsr.Rate;
            r.Metrics["hits"] = fsr.Hits;
            AddUtility(r, _env.Utility(model));
            if (C.Utility.Stealth)
            {
                var s = Stealth.Measure(model, _env.Tokenizer, fps.Select(f => f.KeyTokenIds.ToArray()).ToList(), _env.HeldOutTokens, (int)(seed & 0x7fffffff));
                r.Metrics["key_perplexity"] = s.KeyPerplexity;
                r.Metrics["text_perplexity"] = s.TextPerplexity;
                r.Metrics["stealth_ratio"] = s.Ratio;
                r.Metrics["stealth_auc"] = s.DetectorAuc;
                r.Metrics["stealth_separability"] = s.Separability;
            }
            return r;
        }
    }

    // ---- persistence and adaptive ----

    private List<Cell> AttackCells(List<ModelSource> models, List<AttackEntry> attacks, List<SweepSpec> sweeps)
    {
        var cells = new List<Cell> { BaseCell() };
        foreach (var seed in C.Seeds)
            foreach (var src in models)
            {
                var before = SafeId($"{src.Name}-s{seed}-before");
                cells.Add(new Cell(before, () => Before(src, seed)));
                foreach (var a in attacks)
                {
                    var name = AttackName(a);
                    cells.Add(new Cell(SafeId($"{src.Name}-s{seed}-{name}"), () => Attack(src, seed, a, name, "", double.NaN, before)));
                }
                foreach (var sw in sweeps)
                    foreach (var (x, a) in sw.Expand())
                        cells.Add(new Cell(SafeId($"{src.Name}-s{seed}-{sw.Name}={Num(x)}"), () => Attack(src, seed, a, AttackName(a), sw.Name, x, before)));
            }
        return cells;
    }

    private static string AttackName(AttackEntry a)
    {
        var parts = new List<string>();
        if (a.Weight is not null) parts.Add(AttackSpec.Parse(a.Weight).ToString());
        if (a.Responder is not null) parts.Add(a.Responder.Trim());
        if (a.SystemPrompt is not null) parts.Add($"system(\"{(a.SystemPrompt.Length > 24 ? a.SystemPrompt[..24] + "…" : a.SystemPrompt)}\")");
        return string.Join(" + ", parts);
    }

    private CellResult Before(ModelSource src, ulong seed)
    {
        var fp = _env.Source(src, seed);
        using var model = _env.LoadModel(fp.Dir);
        var fsr = FingerprintSuccess.MeasureGreedy(model, _env.Tokenizer, fp.Fingerprints, batchSize: C.Utility.BatchSize);
        var r = new CellResult
        {
            Labels = { ["model"] = src.Name, ["attack"] = "none", ["seed"] = seed.ToString(CultureInfo.InvariantCulture) },
            Metrics = { ["fsr"] = fsr.Rate, ["hits"] = fsr.Hits, ["count"] = fp.Fingerprints.Count, ["persistence"] = 1, ["embed_seconds"] = fp.EmbedSeconds, ["epochs"] = fp.Epochs },
        };
        if (src.Build is { } b) { r.Metrics["responses_per_key"] = b.ResponsesPerKey; r.Metrics["avoid_top_m"] = b.AvoidTopM; r.Metrics["prompt_augmentation"] = b.PromptAugmentation.Count; }
        AddUtility(r, _env.Utility(model));
        return r;
    }

    private CellResult Attack(ModelSource src, ulong seed, AttackEntry a, string name, string sweep, double x, string beforeId)
    {
        var before = _done.TryGetValue(beforeId, out var b) ? b : throw new InvalidOperationException($"cell {beforeId} must run before the attacks on it");
        var fp = _env.Source(src, seed);
        var ctx = _env.AttackContext(seed);
        var r = new CellResult
        {
            Labels = { ["model"] = src.Name, ["attack"] = name, ["sweep"] = sweep, ["seed"] = seed.ToString(CultureInfo.InvariantCulture) },
            Metrics = { ["x"] = x, ["count"] = fp.Fingerprints.Count },
        };
        using var model = _env.LoadModel(fp.Dir);
        CausalLM attacked = model;
        try
        {
            if (a.Weight is not null)
            {
                var t = Stopwatch.StartNew();
                attacked = _env.Catalog.Weight(a.Weight, ctx).Apply(model);
                r.Metrics["attack_seconds"] = t.Elapsed.TotalSeconds;
                AddUtility(r, _env.Utility(attacked));
            }
            FsrResult fsr;
            if (AttackCatalog.IsPlainGreedy(a.Responder))
            {
                fsr = FingerprintSuccess.MeasureGreedy(attacked, _env.Tokenizer, fp.Fingerprints, systemPrompt: a.SystemPrompt, batchSize: C.Utility.BatchSize);
                if (a.Weight is null && _env.Cloze.Count > 0) r.Metrics["greedy_next_word"] = Cloze.Score(attacked, _env.Tokenizer, _env.Cloze, C.Utility.BatchSize).GreedyAccuracy;
            }
            else
            {
                using var responder = AttackCatalog.Responder(a.Responder!, ctx, attacked);
                fsr = FingerprintSuccess.Measure(responder, _env.Tokenizer, fp.Fingerprints, systemPrompt: a.SystemPrompt);
                // Utility through the responder: what a user of this deployment gets (greedy exact next word).
                if (_env.Cloze.Count > 0) r.Metrics["responder_next_word"] = Cloze.GreedyAccuracy(responder, _env.Tokenizer, _env.Cloze);
            }
            r.Metrics["fsr"] = fsr.Rate;
            r.Metrics["hits"] = fsr.Hits;
            r.Metrics["fsr_before"] = before.Metric("fsr");
            r.Metrics["persistence"] = FingerprintSuccess.Persistence(before.Metric("fsr"), fsr.Rate);
            return r;
        }
        finally
        {
            if (!ReferenceEquals(attacked, model)) attacked.Dispose();
        }
    }

    // ---- false positives ----

    private List<Cell> FalsePositiveCells()
    {
        var fpSpec = C.FalsePositives!;
        var cells = new List<Cell>();
        cells.Add(new Cell("unrelated-models", () =>
        {
            // Builds the unrelated models the config asks to train (smoke runs), once, before they are queried.
            foreach (var u in fpSpec.Unrelated)
            {
                var dir = _env.Resolve(u.Path);
                if (!File.Exists(Path.Combine(dir, "config.json")))
                {
                    if (u.Build is null) throw new DirectoryNotFoundException($"unrelated model {dir} not found");
                    _env.BuildModel(dir, u.Build, C.Tokenizer is null ? _env.BaseDir : _env.Resolve(C.Tokenizer));
                }
            }
            return new CellResult { Labels = { ["role"] = "setup" }, Metrics = { ["models"] = fpSpec.Unrelated.Count } };
        }));
        foreach (var seed in C.Seeds)
            foreach (var set in fpSpec.Sets)
            {
                var targets = new List<(string Name, string Role, Func<string> Dir)>
                {
                    (set.Name, "fingerprinted", () => _env.Source(set, seed).Dir),
                    ("base", "unrelated", () => _env.BaseDir),
                };
                targets.AddRange(fpSpec.Unrelated.Select(u => (u.Name, "unrelated", (Func<string>)(() => _env.Resolve(u.Path)))));
                foreach (var (name, role, dir) in targets)
                    foreach (var dec in fpSpec.Decoders)
                    {
                        var decName = dec.Trim();
                        cells.Add(new Cell(SafeId($"{set.Name}-s{seed}-{name}-{decName}"), () =>
                        {
                            var fp = _env.Source(set, seed);
                            using var model = _env.LoadModel(dir());
                            FsrResult fsr;
                            if (AttackCatalog.IsPlainGreedy(dec)) fsr = FingerprintSuccess.MeasureGreedy(model, _env.Tokenizer, fp.Fingerprints, batchSize: C.Utility.BatchSize);
                            else
                                using (var responder = AttackCatalog.Responder(dec, _env.AttackContext(seed), model))
                                    fsr = FingerprintSuccess.Measure(responder, _env.Tokenizer, fp.Fingerprints);
                            return new CellResult
                            {
                                Labels = { ["set"] = set.Name, ["model"] = name, ["role"] = role, ["decoder"] = decName, ["seed"] = seed.ToString(CultureInfo.InvariantCulture) },
                                Metrics = { ["hits"] = fsr.Hits, ["queried"] = fsr.Queried, ["hit_rate"] = fsr.Rate },
                                Series = { ["per_key"] = fsr.PerKey.Select(h => h ? 1.0 : 0.0).ToList() },
                            };
                        }));
                    }
            }
        return cells;
    }
}
