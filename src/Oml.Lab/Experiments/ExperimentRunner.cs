using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Oml.Engine;
using Oml.Fingerprinting.Verification;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;

namespace Oml.Lab.Experiments;

/// <summary>
/// One unit of an experiment: computed once, saved, skipped on a rerun. Cells of one <paramref name="Group"/> share
/// cached state (a generated set, an in-run model) and always run in the same shard; the empty group is the setup cells,
/// which shard 0 runs. <paramref name="Cost"/> is the estimate that shards are balanced by.
/// </summary>
public sealed record Cell(string Id, Func<CellResult> Compute, string Group = "", double Cost = 1);

/// <summary>
/// The outcome of <see cref="ExperimentRunner.Run"/>: <paramref name="Total"/> is the cells this run owned (all of the
/// experiment's without sharding or --only), <paramref name="Results"/> those it computed or loaded.
/// </summary>
public sealed record RunSummary(int Total, int Computed, int Reused, double Seconds, IReadOnlyList<CellResult> Results)
{
    /// <summary>Ids of the cells this run computed (not loaded), in order.</summary>
    public IReadOnlyList<string> ComputedIds { get; init; } = [];
    /// <summary>The experiment's cell count, sharded or not.</summary>
    public int ExperimentTotal { get; init; }
    /// <summary>How this run's inputs differ from those of the earlier run whose cells the folder held (see
    /// <see cref="RunInfo.InputChanges"/>); empty when nothing changed or nothing was recorded before.</summary>
    public IReadOnlyList<string> InputChanges { get; init; } = [];
}

/// <summary>
/// Shard <see cref="Index"/> of <see cref="Count"/>: worker processes started with the same config and output folder,
/// each computing a disjoint part of the cells (see <see cref="ExperimentRunner.AssignShards"/>).
/// </summary>
public sealed record ShardSpec(int Index, int Count)
{
    /// <summary>Parses "I/N" with 0 ≤ I &lt; N; throws <see cref="FormatException"/> saying what is wrong.</summary>
    public static ShardSpec Parse(string text)
    {
        var parts = (text ?? "").Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int i)
            || !int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            throw new FormatException($"--shard '{text}': expected I/N (this process's shard I of N, 0 ≤ I < N), e.g. 0/2");
        if (n < 1) throw new FormatException($"--shard '{text}': the shard count N must be at least 1");
        if (i >= n) throw new FormatException($"--shard '{text}': the shard index must be below {n} (shards are numbered 0..{n - 1})");
        return new ShardSpec(i, n);
    }

    /// <summary>The shard's run info file in the output folder.</summary>
    public string RunInfoFile => FormattableString.Invariant($"run-shard-{Index}-of-{Count}.json");

    public override string ToString() => FormattableString.Invariant($"{Index}/{Count}");
}

/// <summary>
/// Runs an experiment config cell by cell. Each cell's result is saved (JSON, atomically) under OUT/cells as soon as it
/// completes; on a rerun with the same output folder, saved cells are loaded instead of recomputed.
/// </summary>
public sealed class ExperimentRunner
{
    private readonly LabEnvironment _env;
    private readonly CellStore _store;
    private readonly Dictionary<string, CellResult> _done = new(StringComparer.Ordinal);
    private readonly ShardSpec? _shard;
    private readonly Regex? _only;
    private readonly Dictionary<string, (Cell Cell, int Order)> _byId = new(StringComparer.Ordinal);
    private readonly List<string> _computedIds = [];

    /// <summary>
    /// A runner of every cell of the experiment, or only those of <paramref name="shard"/> (see <see cref="AssignShards"/>),
    /// and of those only the ones whose id matches <paramref name="only"/>.
    /// </summary>
    public ExperimentRunner(LabEnvironment env, ShardSpec? shard = null, Regex? only = null)
    {
        _env = env;
        _store = new CellStore(env.OutDir);
        _shard = shard;
        _only = only;
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
        var earlier = EarlierInputs();
        // Until this run has read its own inputs, its record keeps the earlier ones: a run that fails in Prepare (a
        // missing file) must not erase what the saved cells were computed on, or the next run could not compare.
        info.Inputs = earlier;
        CellStore.SaveRunInfo(_env.OutDir, info);
        _env.Prepare();
        info.Inputs = RunInputs.Describe(_env);
        if (_store.Any()) info.InputChanges = RunInputs.Changes(earlier, info.Inputs);
        foreach (var change in info.InputChanges)
            progress?.WriteLine($"warning: {change} since the run whose cells this folder holds; those cells are loaded as they are (delete them to recompute)");
        var all = Cells();
        var dup = all.GroupBy(c => c.Id).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new LabConfigException($"{C.Name}: two cells are both named '{dup.Key}' (give attacks or models different names)");
        for (int i = 0; i < all.Count; i++) _byId[all[i].Id] = (all[i], i);
        // --only first, then the shards split what it selected (every shard is given the same --only), and each shard
        // runs its costliest cells first: a run stopped at a deadline loses a small cell, and the cells of one group
        // keep their config order among equal costs.
        var selected = all.Where(c => _only is null || _only.IsMatch(c.Id)).ToList();
        var owner = _shard is null ? null : AssignShards(selected, _shard.Count);
        var owned = selected.Where(c => owner is null || owner[c.Group] == _shard!.Index).ToList();
        if (_shard is not null) owned = [.. owned.OrderByDescending(c => c.Cost)];
        if (progress is not null && (_shard is not null || _only is not null)) Describe(progress, all, owned);
        info.CellsOwned = owned.Count;
        info.CellsTotal = all.Count;
        CellStore.SaveRunInfo(_env.OutDir, info);
        var bar = new ProgressBar(owned.Count, progress);
        int computed = 0, reused = 0;
        foreach (var cell in owned)
        {
            if (_store.TryLoad(cell.Id, out var saved))
            {
                _done[cell.Id] = saved;
                reused++;
                bar.Finished(cell.Id, computed: false, 0);
                continue;
            }
            if (maxCells is { } m && computed >= m) break;
            bar.Starting(cell.Id);
            var r = Compute(cell);
            computed++;
            bar.Finished(cell.Id, computed: true, r.Seconds);
            // The run info counts progress as it goes, so a run stopped at a deadline still reports what it did.
            info.CellsComputed = _computedIds.Count;
            info.CellsReused = reused;
            info.Seconds = sw.Elapsed.TotalSeconds;
            CellStore.SaveRunInfo(_env.OutDir, info);
        }
        info.Finished = DateTimeOffset.UtcNow;
        info.Seconds = sw.Elapsed.TotalSeconds;
        info.CellsComputed = _computedIds.Count;
        info.CellsReused = reused;
        CellStore.SaveRunInfo(_env.OutDir, info);
        if (progress is not null && _shard is not null)
            progress.WriteLine($"shard {_shard}: computed {(_computedIds.Count == 0 ? "no cells" : string.Join(", ", _computedIds))}");
        // Computed: the owned cells computed, and any 'before' cell an attack needed that was neither saved nor owned (--only).
        return new RunSummary(owned.Count, _computedIds.Count, reused, sw.Elapsed.TotalSeconds, _done.Values.OrderBy(c => c.Order).ToList())
        {
            ComputedIds = [.. _computedIds],
            ExperimentTotal = all.Count,
            InputChanges = info.InputChanges,
        };
    }

    /// <summary>Computes one cell and saves it.</summary>
    private CellResult Compute(Cell cell)
    {
        var t = Stopwatch.StartNew();
        var r = cell.Compute();
        if (_env.Device.IsCuda)
        {
            Torch.Cuda.Synchronize(_env.Device.Index);
            // Hand cached blocks back to the driver: shards share one GPU, and one cell's peak (a long cloze context, a
            // full batch) should not stay reserved by this process for the rest of the run.
            Torch.Cuda.EmptyCache();
        }
        r.Id = cell.Id;
        r.Kind = C.Kind;
        r.Order = _byId[cell.Id].Order;
        r.Seconds = t.Elapsed.TotalSeconds;
        r.Finished = DateTimeOffset.UtcNow;
        _store.Save(r);
        _done[cell.Id] = r;
        _computedIds.Add(cell.Id);
        return r;
    }

    /// <summary>A cell's result: computed in this run, saved by an earlier run or another shard, or else computed now.</summary>
    private CellResult Require(string id)
    {
        if (_done.TryGetValue(id, out var r)) return r;
        if (_store.TryLoad(id, out r)) return _done[id] = r;
        return Compute(_byId.TryGetValue(id, out var c) ? c.Cell : throw new InvalidOperationException($"no cell '{id}' in the experiment"));
    }

    private void Describe(TextWriter w, List<Cell> all, List<Cell> owned)
    {
        var what = _shard is null ? "this run" : $"shard {_shard}";
        var groups = owned.GroupBy(c => c.Group).ToList();
        w.WriteLine($"{what} owns {owned.Count} of {all.Count} cells{(_only is null ? "" : $" (matching --only {_only})")} in {groups.Count} group(s):");
        foreach (var g in groups) w.WriteLine($"  {(g.Key.Length == 0 ? "setup" : g.Key)}: {string.Join(", ", g.Select(c => c.Id))}");
    }

    /// <summary>
    /// The shard of every cell group: the setup group ("") goes to shard 0; the others, largest estimated cost first (ties in
    /// config order), each to the shard with the least cost so far (ties to the lowest index). Deterministic: every shard
    /// computes the same assignment from the same config.
    /// </summary>
    public static Dictionary<string, int> AssignShards(IReadOnlyList<Cell> cells, int shards)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        var groups = cells.Select((c, i) => (c, i)).GroupBy(x => x.c.Group)
            .Select(g => (Key: g.Key, Cost: g.Sum(x => x.c.Cost), First: g.Min(x => x.i))).ToList();
        var load = new double[shards];
        var owner = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var g in groups.Where(g => g.Key.Length == 0)) { owner[g.Key] = 0; load[0] += g.Cost; }
        foreach (var g in groups.Where(g => g.Key.Length > 0).OrderByDescending(g => g.Cost).ThenBy(g => g.First))
        {
            int best = 0;
            for (int s = 1; s < shards; s++) if (load[s] < load[best]) best = s;
            owner[g.Key] = best;
            load[best] += g.Cost;
        }
        return owner;
    }

    /// <summary>The inputs recorded by the most recently started earlier run in the output folder that recorded any.</summary>
    private List<RunInput> EarlierInputs()
    {
        try
        {
            return CellStore.LoadRunInfos(_env.OutDir).LastOrDefault(i => i.Inputs.Count > 0)?.Inputs ?? [];
        }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException)
        {
            return [];
        }
    }

    private RunInfo NewRunInfo() => new()
    {
        Shard = _shard?.ToString() ?? "", Only = _only?.ToString() ?? "",
        Name = C.Name, Kind = C.Kind, ConfigText = C.Text, ConfigDirectory = CheckoutRelative(C.Directory),
        ConfigPath = C.FilePath is { } f ? CheckoutRelative(f) : "", Started = DateTimeOffset.UtcNow, Machine = Environment.MachineName,
        Os = RuntimeInformation.OSDescription, CpuCount = Environment.ProcessorCount, Processor = RunInputs.Processor(), Device = _env.Device.ToString(),
        DeviceName = _env.Device.IsCuda ? $"CUDA device {_env.Device.Index}" : $"CPU ({RuntimeInformation.ProcessArchitecture}, {Torch.Threads} threads)",
        LibTorch = Torch.LibTorchVersion, GitCommit = GitCommit(C.Directory), Build = BuildVersion,
    };

    /// <summary>This assembly's informational version: the version and, when it was built from a git checkout, "+commit".</summary>
    public static string BuildVersion { get; } =
        typeof(ExperimentRunner).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "unknown";

    /// <summary>
    /// <paramref name="path"/> relative to the git checkout that holds it (so that saved run info names
    /// "lab/experiments/x.yaml" on every machine), or the full path outside a checkout.
    /// </summary>
    public static string CheckoutRelative(string path)
    {
        var full = Path.GetFullPath(path);
        for (var d = new DirectoryInfo(File.Exists(full) ? Path.GetDirectoryName(full)! : full); d is not null; d = d.Parent)
            if (Directory.Exists(Path.Combine(d.FullName, ".git")) || File.Exists(Path.Combine(d.FullName, ".git")))
                return Path.GetRelativePath(d.FullName, full).Replace('\\', '/');
        return full;
    }

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
        // Whole answers of the base too, when the config scores them: the owner's cost is the fingerprinted model's loss against it.
        AddAnswers(r, new ModelResponder(model, batchSize: C.Utility.BatchSize));
        return r;
    });

    /// <summary>Key stealth: how well a perplexity detector separates the keys from held-out text under the model.</summary>
    private void AddStealth(CellResult r, CausalLM model, IReadOnlyList<Oml.Fingerprinting.Fingerprint> fps, ulong seed)
    {
        var s = Stealth.Measure(model, _env.Tokenizer, fps.Select(f => f.KeyTokenIds.ToArray()).ToList(), _env.HeldOutTokens, (int)(seed & 0x7fffffff));
        r.Metrics["key_perplexity"] = s.KeyPerplexity;
        r.Metrics["text_perplexity"] = s.TextPerplexity;
        r.Metrics["stealth_ratio"] = s.Ratio;
        r.Metrics["stealth_auc"] = s.DetectorAuc;
        r.Metrics["stealth_separability"] = s.Separability;
        // The strongest threshold filter that refuses at most 2 % of the text windows (issue 13's cost bound): below, above, both.
        r.Metrics["keys_removed_low_2pct"] = s.KeysRemovedAt(0.02, FilterSide.Low);
        r.Metrics["keys_removed_high_2pct"] = s.KeysRemovedAt(0.02, FilterSide.High);
        r.Metrics["keys_removed_both_2pct"] = s.KeysRemovedAt(0.02, FilterSide.Both);
    }

    /// <summary>Whole-answer task accuracy through a deployment, when the config names instruction data.</summary>
    private void AddAnswers(CellResult r, IResponder responder)
    {
        if (_env.Instructions.Count == 0) return;
        var s = AnswerUtility.Score(responder, _env.Instructions, C.Utility.AnswerTokens, _env.Tokenizer.EosTokenId);
        r.Metrics["answer_f1"] = s.TokenF1;
        r.Metrics["answer_exact"] = s.ExactMatch;
        r.Metrics["answer_length"] = s.MeanLength;
    }

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
                        // Every capacity cell is its own group: the variants of one (strategy, count, seed) share one
                        // generated set (OUT/sets), which the first shard to need it builds under a lock while the
                        // others wait. The cost estimate: fingerprints × the variant's relative time per fingerprint
                        // (benign mixing about triples it, full-batch steps run up to 200 epochs).
                        double cost = count * (1 + (v.Beta > 0 ? 2 : 0) + (v.Embedding?.BatchSize == 0 ? 4 : 0));
                        cells.Add(new Cell(id, () => Capacity(strategy, count, v, seed, id), id, cost));
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
            var fsr = FingerprintSuccess.MeasureGreedy(model, _env.Tokenizer, fps, _env.FormatOf(spec.KeyFormat), batchSize: C.Utility.BatchSize);
            r.Metrics["fsr"] = fsr.Rate;
            r.Metrics["hits"] = fsr.Hits;
            AddUtility(r, _env.Utility(model));
            if (C.Utility.Stealth) AddStealth(r, model, fps, seed);
            return r;
        }
    }

    // ---- persistence and adaptive ----

    private List<Cell> AttackCells(List<ModelSource> models, List<AttackEntry> attacks, List<SweepSpec> sweeps)
    {
        var cells = new List<Cell> { BaseCell() };
        var groups = SourceGroups(models, [.. attacks, .. sweeps.SelectMany(sw => sw.Expand().Select(e => e.Entry))]);
        foreach (var seed in C.Seeds)
            foreach (var src in models)
            {
                var group = groups[(src.Name, seed)];
                var before = SafeId($"{src.Name}-s{seed}-before");
                cells.Add(new Cell(before, () => Before(src, seed), group));
                foreach (var a in attacks.Where(a => src.Attacked && a.AppliesTo(src.Name)))
                {
                    var name = AttackName(a);
                    cells.Add(new Cell(SafeId($"{src.Name}-s{seed}-{name}"), () => Attack(src, seed, a, name, "", double.NaN, before), group));
                }
                foreach (var sw in sweeps.Where(sw => src.Attacked && (sw.Targets.Count == 0 || sw.Targets.Contains(src.Name))))
                    foreach (var (x, a) in sw.Expand())
                        cells.Add(new Cell(SafeId($"{src.Name}-s{seed}-{sw.Name}={Num(x)}"), () => Attack(src, seed, a, AttackName(a), sw.Name, x, before), group));
            }
        return cells;
    }

    /// <summary>
    /// The cell group of every (model source, seed): connected components of the sources of one seed, linked when an
    /// attack on one refers to the other (model:NAME; that cell loads, or builds, the other's folder) or when both are
    /// built from the same generated set (the same cached file under OUT/sets). A group is named after its first source
    /// in config order, so no two shards ever build the same model folder or set.
    /// </summary>
    private Dictionary<(string Name, ulong Seed), string> SourceGroups(List<ModelSource> models, List<AttackEntry> attacks)
    {
        var groups = new Dictionary<(string, ulong), string>();
        foreach (var seed in C.Seeds)
        {
            var parent = Enumerable.Range(0, models.Count).ToArray();
            int Find(int x) { while (parent[x] != x) x = parent[x] = parent[parent[x]]; return x; }
            void Union(int a, int b)
            {
                int ra = Find(a), rb = Find(b);
                if (ra != rb) parent[Math.Max(ra, rb)] = Math.Min(ra, rb);   // the earlier source stays the root
            }
            for (int i = 0; i < models.Count; i++)
                foreach (var a in attacks.Where(a => a.AppliesTo(models[i].Name)))
                    foreach (var r in ModelReferences.Of(a))
                        if (models.FindIndex(m => m.Name == r) is var j and >= 0) Union(i, j);
            var firstWithSet = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < models.Count; i++)
                if (models[i].Build is { } b)
                {
                    if (firstWithSet.TryGetValue(LabEnvironment.SetKey(b, seed), out int j)) Union(i, j);
                    else firstWithSet[LabEnvironment.SetKey(b, seed)] = i;
                }
            for (int i = 0; i < models.Count; i++) groups[(models[i].Name, seed)] = SafeId($"{models[Find(i)].Name}-s{seed}");
        }
        return groups;
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
        var fsr = FingerprintSuccess.MeasureGreedy(model, _env.Tokenizer, fp.Fingerprints, fp.Format, batchSize: C.Utility.BatchSize);
        var r = new CellResult
        {
            Labels = { ["model"] = src.Name, ["attack"] = "none", ["seed"] = seed.ToString(CultureInfo.InvariantCulture) },
            Metrics = { ["fsr"] = fsr.Rate, ["hits"] = fsr.Hits, ["count"] = fp.Fingerprints.Count, ["persistence"] = 1, ["embed_seconds"] = fp.EmbedSeconds, ["epochs"] = fp.Epochs },
        };
        if (src.Build is { } b) { r.Metrics["responses_per_key"] = b.ResponsesPerKey; if (b.ResponseBranching > 1) r.Metrics["response_branching"] = b.ResponseBranching; r.Metrics["avoid_top_m"] = b.AvoidTopM; r.Metrics["prompt_augmentation"] = b.PromptAugmentation.Count; if (b.AnchorKeys) r.Metrics["anchor_keys"] = 1; }
        r.Series["per_key"] = PerKey(fsr);
        AddVerdict(r, fsr, fp.Fingerprints);
        AddPartial(r, new ModelResponder(model, batchSize: C.Utility.BatchSize), fp, null);
        AddUtility(r, _env.Utility(model));
        AddAnswers(r, new ModelResponder(model, batchSize: C.Utility.BatchSize));
        if (C.Kind == ExperimentKinds.Adaptive && C.Utility.Stealth) AddStealth(r, model, fp.Fingerprints, seed);
        return r;
    }

    /// <summary>Each key's outcome (1 hit, 0 missed) in the set's order, so a cell says which fingerprints an attack removed.</summary>
    private static List<double> PerKey(FsrResult fsr) => fsr.PerKey.Select(h => h ? 1.0 : 0.0).ToList();

    /// <summary>
    /// The owner's claim from these hits (exact rule): log10 of the verdict's p-value and whether it is owned at the
    /// default α (10⁻⁶), with each key's null the base's recorded probability of any of its responses, floored at the
    /// set's default (<see cref="VerdictRule.DefaultNullFloorFor"/>: 0.06 per first response token for Perinucleus keys,
    /// which a host that suppresses its top tokens makes negatives hit), as <c>oml verify</c> computes it.
    /// </summary>
    private static void AddVerdict(CellResult r, FsrResult fsr, IReadOnlyList<Oml.Fingerprinting.Fingerprint> fps)
    {
        var rule = new VerdictRule { NullFloor = VerdictRule.DefaultNullFloorFor(fps) };
        var v = rule.Evaluate(fsr.Hits, fsr.Queried, fps.Select(f => LocalVerifier.NullProbability(f, rule)).ToList());
        r.Metrics["log10_p"] = v.Log10PValue;
        r.Metrics["owned"] = v.Verdict == Verdict.Owned ? 1 : 0;
    }

    /// <summary>With <c>verification.partial_min_tokens</c>: the keys hit under the partial rule through the deployment (fsr_partial, hits_partial).</summary>
    private FsrResult? AddPartial(CellResult r, IResponder responder, FingerprintedModel fp, string? systemPrompt)
    {
        if (C.Verification.Partial is not { } match) return null;
        var (exact, partial) = FingerprintSuccess.MeasureWith(responder, _env.Tokenizer, fp.Fingerprints, match, fp.Format, systemPrompt);
        r.Metrics["fsr_partial"] = partial.Rate;
        r.Series["per_key_partial"] = PerKey(partial);
        r.Metrics["hits_partial"] = partial.Hits;
        r.Metrics["partial_min_tokens"] = match.MinTokens!.Value;
        return exact;
    }

    private CellResult Attack(ModelSource src, ulong seed, AttackEntry a, string name, string sweep, double x, string beforeId)
    {
        var before = Require(beforeId);
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
                fsr = FingerprintSuccess.MeasureGreedy(attacked, _env.Tokenizer, fp.Fingerprints, fp.Format, a.SystemPrompt, C.Utility.BatchSize);
                AddPartial(r, new ModelResponder(attacked, batchSize: C.Utility.BatchSize), fp, a.SystemPrompt);
                if (a.Weight is null && _env.Cloze.Count > 0) r.Metrics["greedy_next_word"] = Cloze.Score(attacked, _env.Tokenizer, _env.Cloze, C.Utility.BatchSize).GreedyAccuracy;
                AddAnswers(r, new ModelResponder(attacked, batchSize: C.Utility.BatchSize));
            }
            else
            {
                using var responder = AttackCatalog.Responder(a.Responder!, ctx, attacked);
                // With the partial rule configured, both rules count the same answers (generated as long as it needs).
                fsr = AddPartial(r, responder, fp, a.SystemPrompt)
                    ?? FingerprintSuccess.Measure(responder, _env.Tokenizer, fp.Fingerprints, fp.Format, a.SystemPrompt);
                AddResponderCounts(r, responder.Inner);
                // Utility through the responder: what a user of this deployment gets (greedy exact next word). A filter's
                // refusals of these ordinary contexts are its false alarms, the share of honest users it turns away.
                var filter = ResponderParts.Of(responder.Inner).OfType<PerplexityFilterResponder>().FirstOrDefault();
                int refusedBefore = filter?.Refused ?? 0;
                if (_env.Cloze.Count > 0)
                {
                    r.Metrics["responder_next_word"] = Cloze.GreedyAccuracy(responder, _env.Tokenizer, _env.Cloze);
                    if (filter is not null) r.Metrics["refused_ordinary"] = (double)(filter.Refused - refusedBefore) / _env.Cloze.Count;
                }
                int refusedBeforeAnswers = filter?.Refused ?? 0;
                AddAnswers(r, responder);
                // The honest instructions it turned away (each an empty answer in answer_f1).
                if (filter is not null && _env.Instructions.Count > 0) r.Metrics["refused_instructions"] = (double)(filter.Refused - refusedBeforeAnswers) / _env.Instructions.Count;
            }
            r.Metrics["fsr"] = fsr.Rate;
            r.Metrics["hits"] = fsr.Hits;
            r.Series["per_key"] = PerKey(fsr);
            AddVerdict(r, fsr, fp.Fingerprints);
            r.Metrics["fsr_before"] = before.Metric("fsr");
            r.Metrics["persistence"] = FingerprintSuccess.Persistence(before.Metric("fsr"), fsr.Rate);
            return r;
        }
        finally
        {
            if (!ReferenceEquals(attacked, model)) attacked.Dispose();
        }
    }

    /// <summary>What the host's own parts did to the key queries so far: prompts blocked, rewritten or refused.</summary>
    private static void AddResponderCounts(CellResult r, IResponder responder)
    {
        foreach (var part in ResponderParts.Of(responder))
            switch (part)
            {
                case RevealedKeyBlocker b: r.Metrics["blocked"] = b.Blocked; r.Metrics["revealed_keys"] = b.RevealedCount; break;
                case PromptRewriteResponder w: r.Metrics["rewritten"] = w.Rewritten; break;
                case PerplexityFilterResponder f: r.Metrics["refused"] = f.Refused; break;
            }
    }

    // ---- false positives ----

    private List<Cell> FalsePositiveCells()
    {
        var fpSpec = C.FalsePositives!;
        var cells = new List<Cell>();
        // Builds the unrelated models the config asks to train (smoke runs), once, before they are queried. Setup runs in
        // shard 0; a cell of another shard that queries an unrelated model builds it too when it is missing, under a lock
        // in the output folder, so whichever shard comes first builds it and the others wait for it.
        cells.Add(new Cell("unrelated-models", () =>
        {
            foreach (var u in fpSpec.Unrelated) _env.Unrelated(u);
            return new CellResult { Labels = { ["role"] = "setup" }, Metrics = { ["models"] = fpSpec.Unrelated.Count } };
        }));
        var groups = SourceGroups(fpSpec.Sets, fpSpec.Decoders.Select(d => new AttackEntry { Responder = d }).ToList());
        foreach (var seed in C.Seeds)
            foreach (var set in fpSpec.Sets)
            {
                var group = groups[(set.Name, seed)];
                var targets = new List<(string Name, string Role, Func<string> Dir)>
                {
                    (set.Name, "fingerprinted", () => _env.Source(set, seed).Dir),
                    ("base", "unrelated", () => _env.BaseDir),
                };
                targets.AddRange(fpSpec.Unrelated.Select(u => (u.Name, "unrelated", (Func<string>)(() => _env.Unrelated(u)))));
                foreach (var (name, role, dir) in targets)
                    foreach (var dec in fpSpec.Decoders)
                    {
                        var decName = dec.Trim();
                        cells.Add(new Cell(SafeId($"{set.Name}-s{seed}-{name}-{decName}"), () =>
                        {
                            var fp = _env.Source(set, seed);
                            using var model = _env.LoadModel(dir());
                            FsrResult fsr;
                            if (AttackCatalog.IsPlainGreedy(dec)) fsr = FingerprintSuccess.MeasureGreedy(model, _env.Tokenizer, fp.Fingerprints, fp.Format, batchSize: C.Utility.BatchSize);
                            else
                                using (var responder = AttackCatalog.Responder(dec, _env.AttackContext(seed), model))
                                    fsr = FingerprintSuccess.Measure(responder, _env.Tokenizer, fp.Fingerprints, fp.Format);
                            return new CellResult
                            {
                                Labels = { ["set"] = set.Name, ["model"] = name, ["role"] = role, ["decoder"] = decName, ["seed"] = seed.ToString(CultureInfo.InvariantCulture) },
                                Metrics = { ["hits"] = fsr.Hits, ["queried"] = fsr.Queried, ["hit_rate"] = fsr.Rate },
                                Series = { ["per_key"] = fsr.PerKey.Select(h => h ? 1.0 : 0.0).ToList() },
                            };
                        }, group));
                    }
            }
        return cells;
    }
}
