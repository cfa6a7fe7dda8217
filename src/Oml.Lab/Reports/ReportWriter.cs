using System.Globalization;
using System.Text;
using Oml.Lab.Experiments;
using Oml.Lab.Metrics;
using Oml.Models.IO;

namespace Oml.Lab.Reports;

/// <summary>
/// Renders OUT/report.md and its SVG charts from the saved run (run.json and cells/*.json) alone, so a report can be
/// rebuilt without rerunning anything.
/// </summary>
public static class ReportWriter
{
    /// <summary>Writes the report and charts; returns the report's path.</summary>
    public static string Write(string outDir)
    {
        // Every cell saved in the folder, whichever run or shard computed it; the config and machine of the latest run.
        var runs = CellStore.LoadRunInfos(outDir);
        var info = runs[^1];
        var cells = new CellStore(outDir).LoadAll();
        LabConfig? config = null;
        // The run's own config, read without validation: a report of an older run must still render.
        try { config = LabConfig.Parse(info.ConfigText, "run.json config", validate: false); }
        catch (LabConfigException) { }
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        var md = Render(info, cells, config, files, runs);
        foreach (var (name, svg) in files) AtomicFile.WriteText(Path.Combine(outDir, name), svg);
        var path = Path.Combine(outDir, "report.md");
        AtomicFile.WriteText(path, md);
        return path;
    }

    private static string N(double v, string fmt = "0.###") => double.IsNaN(v) ? "–" : v.ToString(fmt, CultureInfo.InvariantCulture);
    private static string P(double v) => double.IsNaN(v) ? "–" : (v * 100).ToString("0.0", CultureInfo.InvariantCulture) + " %";
    private static string Cell(string s) => s.Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings(" ");

    /// <summary>The report's Markdown; the charts it references are added to <paramref name="files"/> (name → SVG).</summary>
    public static string Render(RunInfo info, IReadOnlyList<CellResult> cells, LabConfig? config, Dictionary<string, string> files, IReadOnlyList<RunInfo>? runs = null)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Lab report: {info.Name}");
        sb.AppendLine();
        sb.AppendLine($"Experiment kind **{info.Kind}**, {cells.Count} of {info.CellsTotal} cells saved.");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("| --- | --- |");
        sb.AppendLine($"| started | {info.Started:yyyy-MM-dd HH:mm:ss} UTC |");
        sb.AppendLine($"| finished | {(info.Finished is { } f ? f.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + " UTC" : "(not finished)")} |");
        sb.AppendLine($"| duration of the last run | {ProgressBar.Format(info.Seconds)} ({info.CellsComputed} cells computed, {info.CellsReused} loaded from earlier runs{(info.Shard.Length > 0 ? $"; shard {info.Shard}" : "")}) |");
        foreach (var shard in (runs ?? []).Where(r => r.Shard.Length > 0).GroupBy(r => r.Shard).Select(g => g.Last()).OrderBy(r => ShardSpec.Parse(r.Shard).Count).ThenBy(r => ShardSpec.Parse(r.Shard).Index))
            sb.AppendLine($"| shard {shard.Shard} | started {shard.Started:yyyy-MM-dd HH:mm:ss}, {(shard.Finished is null ? $"stopped or running after {ProgressBar.Format(shard.Seconds)}" : $"ran {ProgressBar.Format(shard.Seconds)}")}: {shard.CellsComputed} of its {shard.CellsOwned} cells computed, {shard.CellsReused} loaded{(shard.Only.Length > 0 ? $" (--only {Cell(shard.Only)})" : "")}; {Cell(shard.Machine)}, {shard.Device} |");
        sb.AppendLine($"| compute time of all cells | {ProgressBar.Format(cells.Sum(c => c.Seconds))} |");
        sb.AppendLine($"| machine | {Cell(info.Machine)}, {Cell(info.Os)}, {info.CpuCount} CPUs{(info.Processor.Length > 0 ? $" of {Cell(info.Processor)}" : "")} |");
        sb.AppendLine($"| device | {info.Device} ({Cell(info.DeviceName)}), libtorch {info.LibTorch} |");
        sb.AppendLine($"| git commit | `{info.GitCommit}` (of the configs' checkout) |");
        if (info.Build.Length > 0) sb.AppendLine($"| build | `{info.Build}` (the lab program's version and commit) |");
        foreach (var input in info.Inputs)
            sb.AppendLine($"| input: {Cell(input.Role)} | `{Cell(input.Path)}`, {input.Bytes:N0} bytes, `{RunInputs.Short(input.Sha256)}` |");
        foreach (var change in info.InputChanges)
            sb.AppendLine($"| **inputs changed** | {Cell(change)} since the run whose cells this folder held: cells loaded from it were computed on the earlier inputs |");
        sb.AppendLine($"| report rendered | {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm:ss} UTC |");
        sb.AppendLine();

        var baseCell = cells.FirstOrDefault(c => c.Id == "base");
        if (baseCell is not null)
            sb.AppendLine($"Base model utility: held-out perplexity {N(baseCell.Metric("perplexity"), "0.00")}, cloze accuracy {P(baseCell.Metric("cloze_accuracy"))} (4 choices; chance 25 %), greedy exact next word {P(baseCell.Metric("greedy_next_word"))}.").AppendLine();

        switch (info.Kind)
        {
            case ExperimentKinds.Capacity: Capacity(sb, cells, baseCell, files); break;
            case ExperimentKinds.Persistence: Attacks(sb, cells, baseCell, files, adaptive: false); break;
            case ExperimentKinds.Adaptive: Attacks(sb, cells, baseCell, files, adaptive: true); break;
            case ExperimentKinds.FalsePositives:
                if (config?.FalsePositives is null) sb.AppendLine("*The run's config could not be read: the hit-count test below uses the default 16 keys and 200 draws.*").AppendLine();
                FalsePositiveSection(sb, cells, config, files);
                break;
        }

        sb.AppendLine("## Cells");
        sb.AppendLine();
        sb.AppendLine("| cell | seconds | finished (UTC) |");
        sb.AppendLine("| --- | ---: | --- |");
        foreach (var c in cells) sb.AppendLine($"| {Cell(c.Id)} | {N(c.Seconds, "0.0")} | {c.Finished:yyyy-MM-dd HH:mm:ss} |");
        sb.AppendLine();
        sb.AppendLine("## Config");
        sb.AppendLine();
        sb.AppendLine("```yaml");
        sb.AppendLine(info.ConfigText.TrimEnd());
        sb.AppendLine("```");
        return sb.ToString();
    }

    private static void Chart(StringBuilder sb, Dictionary<string, string> files, string name, string alt, string svg)
    {
        var file = ExperimentRunner.SafeId(name) + ".svg";
        files[file] = svg;
        sb.AppendLine($"![{alt}]({file})").AppendLine();
    }

    private static double Mean(IEnumerable<double> xs)
    {
        var v = xs.Where(x => !double.IsNaN(x)).ToList();
        return v.Count == 0 ? double.NaN : v.Average();
    }

    private static string Delta(double v, double b) => double.IsNaN(v) || double.IsNaN(b) || b == 0 ? "" : $" ({(v / b - 1) * 100:+0.0;-0.0} %)";

    // ---- capacity ----

    /// <summary>Most lines in one capacity chart before it is split into one chart per strategy.</summary>
    public const int MaxLinesPerChart = 8;

    private static void Capacity(StringBuilder sb, IReadOnlyList<CellResult> cells, CellResult? baseCell, Dictionary<string, string> files)
    {
        var rows = cells.Where(c => c.Labels.ContainsKey("strategy")).ToList();
        var groups = rows.GroupBy(c => (S: c.Label("strategy"), V: c.Label("variant"), N: (int)c.Metric("count")))
            .OrderBy(g => g.Key.S, StringComparer.Ordinal).ThenBy(g => g.Key.V, StringComparer.Ordinal).ThenBy(g => g.Key.N).ToList();
        double basePpl = baseCell?.Metric("perplexity") ?? double.NaN;
        sb.AppendLine("## Capacity: fingerprint success rate, utility and stealth");
        sb.AppendLine();
        sb.AppendLine("FSR: fraction of keys whose greedy answer starts with the response. Utility: held-out perplexity (change against the base), cloze multiple-choice accuracy and greedy exact next word. Stealth: geometric-mean perplexity of the keys and of held-out text windows of the same lengths under the fingerprinted model, their ratio, the AUC of a detector that flags high-perplexity inputs as keys (0.5 = keys look like ordinary text; below 0.5 = keys are *more* predictable than text), and the separability max(AUC, 1 − AUC) of a threshold in either direction. Means over seeds.");
        sb.AppendLine();
        sb.AppendLine("| strategy | variant | fingerprints | seeds | FSR | perplexity | cloze acc. | next word | key ppl | text ppl | ratio | detector AUC | separability | epochs | embed s |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var g in groups)
        {
            double M(string k) => Mean(g.Select(c => c.Metric(k)));
            sb.AppendLine($"| {g.Key.S} | {g.Key.V} | {g.Key.N} | {g.Count()} | {P(M("fsr"))} | {N(M("perplexity"), "0.00")}{Delta(M("perplexity"), basePpl)} | {P(M("cloze_accuracy"))} | {P(M("greedy_next_word"))} | {N(M("key_perplexity"), "0.0")} | {N(M("text_perplexity"), "0.0")} | {N(M("stealth_ratio"), "0.00")} | {N(M("stealth_auc"), "0.00")} | {N(M("stealth_separability"), "0.00")} | {N(M("epochs"), "0")} | {N(M("embed_seconds"), "0.0")} |");
        }
        sb.AppendLine();
        if (rows.Count == 0) return;
        var allStrategies = groups.Select(g => g.Key.S).Distinct().ToList();
        var allVariants = groups.Select(g => g.Key.V).Distinct().ToList();
        // One chart per strategy once a single chart would hold too many lines to tell apart; a variant keeps its
        // colour, dash and marker in every chart (the base model's line comes after all of them).
        bool perStrategy = allStrategies.Count > 1 && allStrategies.Count * allVariants.Count > MaxLinesPerChart;
        var panels = perStrategy ? allStrategies.Select(st => (Suffix: "-" + st, Title: $" ({st})", Groups: groups.Where(g => g.Key.S == st).ToList())).ToList()
            : [("", "", groups)];
        foreach (var (suffix, title, panel) in panels)
        {
            var series = panel.GroupBy(g => perStrategy ? g.Key.V : $"{g.Key.S} / {g.Key.V}").ToList();
            List<ChartSeries> Lines(string metric) => series.Select(s => new ChartSeries(s.Key,
                s.OrderBy(g => g.Key.N).Select(g => ((double)g.Key.N, Mean(g.Select(c => c.Metric(metric))))).ToList(),
                perStrategy ? allVariants.IndexOf(s.Key) : null)).ToList();
            Chart(sb, files, "capacity-fsr" + suffix, $"FSR against the number of fingerprints{title}",
                SvgChart.Line($"Fingerprint success rate{title}", "fingerprints embedded (log scale)", "FSR", Lines("fsr"), logX: true, yMin: 0, yMax: 1));
            var ppl = Lines("perplexity");
            if (!double.IsNaN(basePpl) && ppl.Count > 0)
                ppl.Add(new ChartSeries("base model", [(ppl.SelectMany(s => s.Points).Min(p => p.X), basePpl), (ppl.SelectMany(s => s.Points).Max(p => p.X), basePpl)],
                    perStrategy ? allVariants.Count : null));
            // A model wrecked by its fingerprints reaches perplexities 10^5 times the base: a log axis keeps the rest legible.
            var finite = ppl.SelectMany(s => s.Points).Select(p => p.Y).Where(y => double.IsFinite(y) && y > 0).ToList();
            bool logY = finite.Count > 0 && finite.Max() / finite.Min() > 20;
            Chart(sb, files, "capacity-perplexity" + suffix, $"held-out perplexity against the number of fingerprints{title}",
                SvgChart.Line($"Held-out perplexity{title}", "fingerprints embedded (log scale)", logY ? "perplexity (log scale)" : "perplexity", ppl, logX: true, logY: logY));
            if (panel.Any(g => g.Any(r => !double.IsNaN(r.Metric("cloze_accuracy")))))
                Chart(sb, files, "capacity-cloze" + suffix, $"cloze accuracy against the number of fingerprints{title}",
                    SvgChart.Line($"Cloze accuracy (4 choices){title}", "fingerprints embedded (log scale)", "accuracy", Lines("cloze_accuracy"), logX: true, yMin: 0, yMax: 1));
        }
        if (rows.Any(r => !double.IsNaN(r.Metric("stealth_auc"))))
        {
            var strategies = rows.Select(r => r.Label("strategy")).Distinct().Order(StringComparer.Ordinal).ToList();
            var variants = rows.Select(r => r.Label("variant")).Distinct().Order(StringComparer.Ordinal).ToList();
            Chart(sb, files, "capacity-stealth", "detector AUC by strategy",
                SvgChart.Bar("Key stealth: perplexity-detector AUC (0.5 = undetectable)", "AUC", strategies,
                    variants.Select(v => new BarSeries(v, strategies.Select(s => Mean(rows.Where(r => r.Label("strategy") == s && r.Label("variant") == v).Select(r => r.Metric("stealth_auc")))).ToList())).ToList(), 0, 1));
        }
    }

    // ---- persistence and adaptive ----

    private static void Attacks(StringBuilder sb, IReadOnlyList<CellResult> cells, CellResult? baseCell, Dictionary<string, string> files, bool adaptive)
    {
        var rows = cells.Where(c => c.Labels.ContainsKey("attack")).ToList();
        double basePpl = baseCell?.Metric("perplexity") ?? double.NaN;
        sb.AppendLine(adaptive ? "## Adaptive attacks and defences" : "## Persistence under attacks");
        sb.AppendLine();
        sb.AppendLine("FSR after each attack, persistence (FSR after / FSR before) and the utility the attacker keeps: for weight attacks held-out perplexity, cloze accuracy and greedy next word of the attacked model; for responders (decoding, wrappers, filters) the greedy next-word accuracy through the responder. Means over seeds.");
        sb.AppendLine();
        sb.AppendLine("Owned: the seeds whose hits make the exact-rule verdict owned at α = 1e-6 (per-key null: the base's probability of the key's responses, floored at 1e-3; through a suppressing responder that null understates a negative's hits, docs/verification.md); – for cells written before it was recorded.");
        sb.AppendLine();
        sb.AppendLine($"| {(adaptive ? "defence" : "model")} | attack | seeds | FSR | owned | persistence | perplexity | cloze acc. | next word | via responder | attack s |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        var groups = rows.GroupBy(c => (M: c.Label("model"), A: c.Label("attack"), S: c.Label("sweep"), X: c.Metric("x"))).OrderBy(g => g.Min(c => c.Order)).ToList();
        foreach (var g in groups)
        {
            double M(string k) => Mean(g.Select(c => c.Metric(k)));
            var owned = g.Where(c => c.Metrics.ContainsKey("owned")).ToList();
            string ownedText = owned.Count == 0 ? "–" : $"{owned.Count(c => c.Metric("owned") == 1)}/{owned.Count}";
            sb.AppendLine($"| {Cell(g.Key.M)} | {Cell(g.Key.A)} | {g.Count()} | {P(M("fsr"))} | {ownedText} | {N(M("persistence"), "0.00")} | {N(M("perplexity"), "0.00")}{Delta(M("perplexity"), basePpl)} | {P(M("cloze_accuracy"))} | {P(M("greedy_next_word"))} | {P(M("responder_next_word"))} | {N(M("attack_seconds"), "0.0")} |");
        }
        sb.AppendLine();
        var models = rows.Select(r => r.Label("model")).Distinct().ToList();
        foreach (var sweep in rows.Where(r => r.Label("sweep").Length > 0).Select(r => r.Label("sweep")).Distinct().ToList())
        {
            var lines = models.Select(m => new ChartSeries(m, rows.Where(r => r.Label("sweep") == sweep && r.Label("model") == m)
                .GroupBy(r => r.Metric("x")).OrderBy(g => g.Key).Select(g => (g.Key, Mean(g.Select(r => r.Metric("fsr"))))).ToList()))
                .Where(s => s.Points.Count > 0).ToList();
            Chart(sb, files, $"sweep-{sweep}", $"FSR over the {sweep} sweep", SvgChart.Line($"FSR under {sweep}", $"x of the {sweep} sweep", "FSR", lines, yMin: 0, yMax: 1));
            var util = models.Select(m => new ChartSeries(m, rows.Where(r => r.Label("sweep") == sweep && r.Label("model") == m)
                .GroupBy(r => r.Metric("x")).OrderBy(g => g.Key).Select(g => (g.Key, Mean(g.Select(r => double.IsNaN(r.Metric("perplexity")) ? double.NaN : r.Metric("perplexity"))))).ToList()))
                .Where(s => s.Points.Any(p => !double.IsNaN(p.Item2))).ToList();
            if (util.Count > 0) Chart(sb, files, $"sweep-{sweep}-perplexity", $"perplexity over the {sweep} sweep", SvgChart.Line($"Held-out perplexity under {sweep}", $"x of the {sweep} sweep", "perplexity", util));
        }
        var single = rows.Where(r => r.Label("sweep").Length == 0).ToList();
        var attacks = new List<string> { "none" };
        attacks.AddRange(single.Select(r => r.Label("attack")).Where(a => a != "none").Distinct());
        if (attacks.Count > 1)
        {
            var bars = models.Select(m => new BarSeries(m, attacks.Select(a => Mean(rows.Where(r => r.Label("model") == m && r.Label("attack") == a && r.Label("sweep").Length == 0).Select(r => r.Metric("fsr")))).ToList())).ToList();
            Chart(sb, files, adaptive ? "adaptive-fsr" : "attacks-fsr", "FSR per attack", SvgChart.Bar(adaptive ? "FSR per attack and defence" : "FSR per attack", "FSR", attacks, bars, 0, 1));
            var cost = models.Select(m => new BarSeries(m, attacks.Select(a => Mean(rows.Where(r => r.Label("model") == m && r.Label("attack") == a && r.Label("sweep").Length == 0)
                .Select(r => !double.IsNaN(r.Metric("responder_next_word")) ? r.Metric("responder_next_word") : r.Metric("greedy_next_word")))).ToList())).ToList();
            if (cost.Any(c => c.Values.Any(double.IsFinite)))
                Chart(sb, files, adaptive ? "adaptive-utility" : "attacks-utility", "utility per attack", SvgChart.Bar("Utility kept: greedy next-word accuracy", "accuracy", attacks, cost, 0, 1));
        }
    }

    // ---- false positives ----

    private static void FalsePositiveSection(StringBuilder sb, IReadOnlyList<CellResult> cells, LabConfig? config, Dictionary<string, string> files)
    {
        var fp = config?.FalsePositives ?? new FalsePositiveSpec();
        var rows = cells.Where(c => c.Labels.ContainsKey("set")).ToList();
        sb.AppendLine("## False positives");
        sb.AppendLine();
        sb.AppendLine("Hits of each fingerprint set on its fingerprinted model and on unrelated models (the base model it was generated from included), per decoder:");
        sb.AppendLine();
        sb.AppendLine("| set | model | role | decoder | seed | hits | hit rate |");
        sb.AppendLine("| --- | --- | --- | --- | ---: | ---: | ---: |");
        foreach (var r in rows) sb.AppendLine($"| {Cell(r.Label("set"))} | {Cell(r.Label("model"))} | {r.Label("role")} | {Cell(r.Label("decoder"))} | {r.Label("seed")} | {N(r.Metric("hits"), "0")}/{N(r.Metric("queried"), "0")} | {P(r.Metric("hit_rate"))} |");
        sb.AppendLine();
        sb.AppendLine($"The hit-count test queries {fp.QueryKeys} random keys ({fp.Draws} random subsets per model) and claims the model when the hits reach a threshold; its ROC sweeps the threshold over the fingerprinted model's subsets (positives) and the unrelated models' (negatives). Keys needed: the fewest keys, all hit, whose chance probability under the measured unrelated hit rate p is at most α (pⁿ ≤ α), for p itself and for its one-sided 95 % upper bound.");
        sb.AppendLine();
        var alphas = fp.Alphas;
        sb.AppendLine($"| set | decoder | unrelated hit rate | 95 % upper bound | AUC | {string.Join(" | ", fp.Fprs.Select(f => $"TPR at FPR ≤ {f.ToString(CultureInfo.InvariantCulture)}"))} | {string.Join(" | ", alphas.Select(a => $"keys for α = {a.ToString("0e0", CultureInfo.InvariantCulture)}"))} |");
        sb.AppendLine($"| --- | --- | ---: | ---: | ---: |{string.Concat(fp.Fprs.Select(_ => " ---: |"))}{string.Concat(alphas.Select(_ => " ---: |"))}");
        var bySet = rows.GroupBy(r => r.Label("set")).ToList();
        foreach (var set in bySet)
        {
            var curves = new List<ChartSeries>();
            foreach (var dec in set.GroupBy(r => r.Label("decoder")))
            {
                var pos = dec.Where(r => r.Label("role") == "fingerprinted").ToList();
                var neg = dec.Where(r => r.Label("role") == "unrelated").ToList();
                if (pos.Count == 0 || neg.Count == 0) continue;
                int seed = 17;
                List<double> Scores(IEnumerable<CellResult> rs) => rs.SelectMany((r, i) => HitCountTest.SubsetHitCounts(r.Series["per_key"].Select(v => v > 0.5).ToList(), fp.QueryKeys, fp.Draws, seed + i)).ToList();
                var ps = Scores(pos);
                var ns = Scores(neg);
                double auc = Roc.Auc(ps, ns);
                int h = (int)neg.Sum(r => r.Metric("hits")), q = (int)neg.Sum(r => r.Metric("queried"));
                double rate = (double)h / q, upper = FalsePositives.UpperBound(h, q);
                string Keys(double a, double p) => FalsePositives.KeysNeeded(a, p) is { } n ? n.ToString(CultureInfo.InvariantCulture) : "∞";
                sb.AppendLine($"| {Cell(set.Key)} | {Cell(dec.Key)} | {h}/{q} = {P(rate)} | {P(upper)} | {N(auc, "0.000")} | {string.Join(" | ", fp.Fprs.Select(f => P(Roc.TprAtFpr(ps, ns, f))))} | {string.Join(" | ", alphas.Select(a => $"{Keys(a, rate)} ({Keys(a, upper)})"))} |");
                curves.Add(new ChartSeries($"{dec.Key} (AUC {auc:0.00})", Roc.Curve(ps, ns).Select(p => (p.FalsePositiveRate, p.TruePositiveRate)).ToList()));
            }
            if (curves.Count > 0) files[$"roc-{ExperimentRunner.SafeId(set.Key)}.svg"] = SvgChart.Roc($"Hit-count test ROC: set {set.Key}, {fp.QueryKeys} keys", curves);
        }
        sb.AppendLine();
        foreach (var set in bySet)
            if (files.ContainsKey($"roc-{ExperimentRunner.SafeId(set.Key)}.svg")) sb.AppendLine($"![ROC of the hit-count test for set {set.Key}](roc-{ExperimentRunner.SafeId(set.Key)}.svg)").AppendLine();
        var models = rows.Select(r => r.Label("model")).Distinct().ToList();
        var decoders = rows.Select(r => r.Label("decoder")).Distinct().ToList();
        if (rows.Count > 0)
            Chart(sb, files, "hit-rates", "hit rate per model and decoder", SvgChart.Bar("Hit rate per model and decoder", "hit rate", models,
                decoders.Select(d => new BarSeries(d, models.Select(m => Mean(rows.Where(r => r.Label("model") == m && r.Label("decoder") == d).Select(r => r.Metric("hit_rate")))).ToList())).ToList(), 0, 1));
    }
}
