using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Models;
using Oml.Protocol.Tracing;

namespace Oml.Cli;

/// <summary><c>oml trace simulate</c>: how well fingerprint allocations trace coalitions of hosts that merge their copies.</summary>
public static class TraceCommands
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create() => new("trace", "Trace leaked copies back to hosts: simulate collusion-resistant allocations of the fingerprint pool.")
    {
        Simulate(),
        LeakBudget(),
    };

    public static Command LeakBudget()
    {
        var sizes = new Option<string>("--set-size") { Description = "Fingerprints in the set, comma-separated", DefaultValueFactory = _ => "1024,4096" };
        var recalls = new Option<string>("--recall") { Description = "The served model's per-key hit rate on unblocked keys, comma-separated", DefaultValueFactory = _ => "0.87" };
        var rates = new Option<string>("--near-dup-rate") { Description = "q: probability that one revealed key blocks a given other key as a near-duplicate, comma-separated", DefaultValueFactory = _ => "0" };
        var alpha = new Option<double>("--alpha") { Description = "The verdict's false-positive rate α", DefaultValueFactory = _ => Oml.Fingerprinting.Verification.VerdictRule.DefaultAlpha };
        var nullP = new Option<double>("--null-p") { Description = "The verdict's per-key null hit probability", DefaultValueFactory = _ => Oml.Fingerprinting.Verification.VerdictRule.DefaultNullHitProbability };
        var power = new Option<double>("--power") { Description = "Probability of an owned verdict each claim must keep", DefaultValueFactory = _ => 0.95 };
        var keys = new Option<string?>("--keys") { Description = "A plaintext fingerprint set: measure q on its keys (every ordered pair) with --ngram and --containment, and use it" };
        var ngram = new Option<int>("--ngram") { Description = "The host's near-duplicate rule: token n-gram length", DefaultValueFactory = _ => 3 };
        var containment = new Option<double>("--containment") { Description = "The host's near-duplicate rule: block when this fraction of a revealed key's n-grams occur in a prompt", DefaultValueFactory = _ => 0.5 };
        var json = CliOptions.Json("Print {\"near_dup_rate_measured\", \"rows\": [{\"set_size\", \"recall\", \"near_dup_rate\", \"claims\", \"keys_first\", \"keys_last\", \"survival_last\"}]} as JSON");
        var cmd = new Command("leak-budget",
            "How many ownership claims a fingerprint set supports against a host that blocks every key revealed by earlier claims and "
            + "its near-duplicates (each claim queries the fewest fresh keys that keep the power, then reveals them).")
        {
            sizes, recalls, rates, alpha, nullP, power, keys, ngram, containment, json,
        };
        cmd.SetAction(r =>
        {
            var sb = new StringBuilder();
            var rows = new JsonArray();
            double? measured = null;
            var qs = ParseDoubles(r.GetValue(rates)!, "--near-dup-rate");
            if (r.GetValue(keys) is { } keyFile)
            {
                var fps = Oml.Fingerprinting.FingerprintSetFile.Read(keyFile, null).Fingerprints;
                var tokens = fps.Select(f => f.KeyTokenIds.ToArray()).ToList();
                double q = Cli.OptionValue(() => Oml.Lab.Attacks.RevealedKeyBlocker.NearDuplicateRate(tokens, r.GetValue(ngram), r.GetValue(containment)));
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{tokens.Count} keys of {keyFile}: near-duplicate rate q = {q:G4} ({r.GetValue(ngram)}-grams, containment ≥ {r.GetValue(containment)})"));
                qs = [q];
                measured = q;
            }
            sb.Append(CultureInfo.InvariantCulture, $"{"set",6} {"recall",7} {"q",8} {"claims",7} {"keys/claim first..last",23} {"survival at last",17}\n");
            foreach (int n in ParseInts(r.GetValue(sizes)!, "--set-size"))
                foreach (double rec in ParseDoubles(r.GetValue(recalls)!, "--recall"))
                    foreach (double q in qs)
                    {
                        var s = Cli.OptionValue(() => Oml.Lab.Metrics.KeyLeakBudget.Schedule(n, rec, q, r.GetValue(alpha), r.GetValue(nullP), r.GetValue(power)));
                        string keys = s.Count == 0 ? "-" : $"{s[0].Queried}..{s[^1].Queried}";
                        string surv = s.Count == 0 ? "-" : s[^1].SurvivalPerKey.ToString("0.000", CultureInfo.InvariantCulture);
                        sb.Append(CultureInfo.InvariantCulture, $"{n,6} {rec,7:0.###} {q,8:G3} {s.Count,7} {keys,23} {surv,17}\n");
                        rows.Add(new JsonObject
                        {
                            ["set_size"] = n, ["recall"] = Report.Number(rec), ["near_dup_rate"] = Report.Number(q), ["claims"] = s.Count,
                            ["keys_first"] = s.Count == 0 ? null : s[0].Queried, ["keys_last"] = s.Count == 0 ? null : s[^1].Queried,
                            ["survival_last"] = s.Count == 0 ? null : Report.Number(s[^1].SurvivalPerKey),
                        });
                    }
            return new Report().Json("near_dup_rate_measured", Report.Number(measured)).Json("rows", rows).Line(sb.ToString().TrimEnd('\n')).Print(r.GetValue(json));
        });
        return cmd;
    }

    public static Command Simulate()
    {
        var hosts = new Option<int>("--hosts") { Description = "Licensed hosts (copies)", DefaultValueFactory = _ => 1000 };
        var coalition = new Option<string>("--coalition") { Description = "Coalition sizes c to simulate, comma-separated", DefaultValueFactory = _ => "2,3,4" };
        var strategies = new Option<string>("--strategies")
        {
            Description = "Pirate strategies, comma-separated: majority, minority, unanimity (AND), any (OR), interleaving, random (coin where they differ), or all",
            DefaultValueFactory = _ => "all",
        };
        var lengths = new Option<string>("--lengths") { Description = "Code lengths (pool sizes, all queried), comma-separated", DefaultValueFactory = _ => "64,128,256,512,1024,2048" };
        var loss = new Option<string>("--noise-loss")
        {
            Description = "δ: probability that a fingerprint the pirate copy holds does not answer; comma-separated values pair up with --noise-false-hit",
            DefaultValueFactory = _ => "0",
        };
        var falseHit = new Option<string>("--noise-false-hit")
        {
            Description = "ε: probability that a fingerprint the copy does not hold answers anyway; comma-separated, paired with --noise-loss (a single value applies to all)",
            DefaultValueFactory = _ => "0",
        };
        var trials = new Option<int>("--trials") { Description = "Coalitions drawn per cell", DefaultValueFactory = _ => 200 };
        var bound = new Option<double>("--innocent-bound") { Description = "ε: the bound on accusing innocents (see --bound-scope)", DefaultValueFactory = _ => 1e-3 };
        var scope = new Option<string>("--bound-scope")
        {
            Description = "union: ε bounds P(any innocent host is accused), each host tested at ε/hosts; per-host: ε bounds P(one given innocent host is accused)",
            DefaultValueFactory = _ => "union",
        };
        scope.AcceptOnlyFromAmong("union", "per-host");
        var scheme = new Option<string>("--scheme") { Description = "tardos, random (the baseline) or both", DefaultValueFactory = _ => "both" };
        scheme.AcceptOnlyFromAmong("tardos", "random", "both");
        var cutoff = new Option<double?>("--cutoff") { Description = "Tardos cutoff t (biases in [t, 1-t]); default 1/(300c) for the largest c simulated" };
        var tardosBound = new Option<string>("--tardos-bound")
        {
            Description = "The proven tail bound behind the Tardos threshold: chernoff (exact per-position MGF) or bernstein",
            DefaultValueFactory = _ => "chernoff",
        };
        tardosBound.AcceptOnlyFromAmong("chernoff", "bernstein");
        var score = CliOptions.TardosScore();
        var fraction = new Option<double>("--random-fraction") { Description = "Random baseline: each host holds this fraction of the pool", DefaultValueFactory = _ => 0.5 };
        var codes = new Option<int>("--codes") { Description = "Independent allocations per (scheme, length); trials cycle through them", DefaultValueFactory = _ => 1 };
        var seed = new Option<string>("--seed") { Description = "Seed of the allocations and of the simulated coalitions", DefaultValueFactory = _ => "oml" };
        var json = new Option<string?>("--json-out") { Description = "Also write the results as JSON to this file" };
        var force = CliOptions.Force("Replace the --json-out file if it exists");
        var cmd = new Command("simulate",
            "Monte-Carlo: for each scheme, code length, coalition size, strategy and noise, draw coalitions among the hosts, forge their "
            + "pirate copy, query every pool fingerprint and accuse. Prints P(catch ≥1 colluder), colluders caught, P(accuse ≥1 innocent) and the proven bound.")
        {
            hosts, coalition, strategies, lengths, loss, falseHit, trials, bound, scope, scheme, cutoff, tardosBound, score, fraction, codes, seed, json, force,
        };
        cmd.SetAction(r =>
        {
            var losses = ParseDoubles(r.GetValue(loss)!, "--noise-loss");
            var hits = ParseDoubles(r.GetValue(falseHit)!, "--noise-false-hit");
            if (losses.Count != hits.Count && losses.Count != 1 && hits.Count != 1)
                throw new UsageException($"--noise-loss has {losses.Count} values and --noise-false-hit {hits.Count}: give the same number, or one of them once");
            int nNoise = Math.Max(losses.Count, hits.Count);
            var noises = Enumerable.Range(0, nNoise).Select(i => new NoiseModel(losses[losses.Count == 1 ? 0 : i], hits[hits.Count == 1 ? 0 : i])).ToList();
            string strategyText = r.GetValue(strategies)!;
            var strategyList = strategyText.Trim() == "all" ? Pirates.All : Cli.OptionValue(() => Split(strategyText).Select(Pirates.Parse).Distinct().ToList());
            var settings = new SimulationSettings
            {
                Hosts = r.GetValue(hosts),
                Coalitions = ParseInts(r.GetValue(coalition)!, "--coalition"),
                Strategies = strategyList,
                Lengths = ParseInts(r.GetValue(lengths)!, "--lengths"),
                Noises = noises,
                Trials = r.GetValue(trials),
                InnocentBound = r.GetValue(bound),
                Scope = r.GetValue(scope) == "per-host" ? BoundScope.PerHost : BoundScope.Union,
                Schemes = r.GetValue(scheme) switch { "both" => [SimulationSettings.Tardos, SimulationSettings.Random], var s => [s!] },
                Cutoff = r.GetValue(cutoff),
                Bound = r.GetValue(tardosBound) == "bernstein" ? TardosBound.Bernstein : TardosBound.Chernoff,
                Score = TardosAccuser.ParseScore(r.GetValue(score)!),
                RandomFraction = r.GetValue(fraction),
                Codes = r.GetValue(codes),
                Seed = r.GetValue(seed)!,
            };
            Cli.OptionValue(settings.Validate);
            var jsonPath = r.GetValue(json);
            if (jsonPath is not null) Oml.Models.IO.AtomicFile.CheckWritable(jsonPath, r.GetValue(force));

            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{settings.Hosts} hosts, ε = {settings.InnocentBound} ({(settings.Scope == BoundScope.Union ? "P(any innocent accused), union bound" : "per host")}; "
                + $"ε1 = {settings.PerHostBound:G3} per host), Tardos t = {settings.EffectiveCutoff:G4}, threshold: {TardosThresholds.Name(settings.Bound)}, {TardosAccuser.ScoreName(settings.Score)} score / {OverlapAccuser.BoundName}, "
                + $"{Environment.ProcessorCount} threads"));
            var clock = Stopwatch.StartNew();
            var results = CoalitionSimulation.Run(settings, new InlineProgress<SimulationProgress>(p =>
            {
                int filled = (int)(30 * p.Done / p.Total);
                var line = string.Create(CultureInfo.InvariantCulture, $"[{new string('#', filled)}{new string('.', 30 - filled)}] {p.Done}/{p.Total} trials  {p.Cell}");
                if (Console.IsErrorRedirected) { if (p.Done == p.Total || p.Done % Math.Max(1, p.Total / 10) < Math.Max(1, p.Total / 400)) Console.Error.WriteLine(line); }
                else Console.Error.Write($"\r{line,-110}");
            }));
            if (!Console.IsErrorRedirected) Console.Error.WriteLine();
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"done in {clock.Elapsed.TotalSeconds:F1} s"));

            Console.Write(Table(results));
            if (jsonPath is not null)
            {
                var doc = new JsonObject
                {
                    ["hosts"] = settings.Hosts,
                    ["trials"] = settings.Trials,
                    ["innocent_bound"] = settings.InnocentBound,
                    ["bound_scope"] = settings.Scope == BoundScope.Union ? "union" : "per-host",
                    ["per_host_bound"] = settings.PerHostBound,
                    ["tardos_cutoff"] = settings.EffectiveCutoff,
                    ["tardos_bound"] = TardosThresholds.Name(settings.Bound),
                    ["tardos_score"] = TardosAccuser.ScoreName(settings.Score),
                    ["random_fraction"] = settings.RandomFraction,
                    ["codes"] = settings.Codes,
                    ["seed"] = settings.Seed,
                    ["seconds"] = clock.Elapsed.TotalSeconds,
                    ["results"] = new JsonArray(results.Select(x => (JsonNode)new JsonObject
                    {
                        ["scheme"] = x.Scheme,
                        ["length"] = x.Length,
                        ["coalition"] = x.Coalition,
                        ["strategy"] = x.Strategy,
                        ["noise_loss"] = x.Loss,
                        ["noise_false_hit"] = x.FalseHit,
                        ["trials"] = x.Trials,
                        ["p_catch"] = x.CatchRate,
                        ["mean_caught"] = x.MeanCaught,
                        ["p_innocent"] = x.InnocentRate,
                        ["p_catch_top"] = x.TopCatchRate,
                        ["p_innocent_top"] = x.TopInnocentRate,
                        ["per_host_bound"] = x.PerHostBound,
                        ["any_innocent_bound"] = x.AnyInnocentBound,
                        ["mean_threshold"] = Finite(x.MeanThreshold),
                        ["mean_colluder_score"] = Finite(x.MeanColluderScore),
                        ["mean_gaussian_threshold"] = Finite(x.MeanGaussianThreshold),
                        ["p_catch_gaussian"] = Finite(x.GaussianCatchRate),
                        ["p_innocent_gaussian"] = Finite(x.GaussianInnocentRate),
                    }).ToArray()),
                };
                FingerprintIO.WriteTextAtomic(jsonPath, doc.ToJsonString(Indented) + "\n", r.GetValue(force));
                Console.Error.WriteLine($"wrote {jsonPath}");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    private static JsonNode? Finite(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    /// <summary>The results as a fixed-width table, one row per cell.</summary>
    public static string Table(IReadOnlyList<SimulationResult> results)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{"scheme",-7} {"length",6} {"c",2} {"strategy",-12} {"δ",5} {"ε",5} {"P(catch)",9} {"caught",7} {"P(innoc)",9} {"bound",9} {"P(top)",7} {"thresh",8} {"colluder",9} {"gauss-Z",8} {"P(catch|g)",10}\n");
        foreach (var x in results)
            sb.Append(CultureInfo.InvariantCulture,
                $"{x.Scheme,-7} {x.Length,6} {x.Coalition,2} {x.Strategy,-12} {x.Loss,5:0.###} {x.FalseHit,5:0.###} {x.CatchRate,9:0.000} {x.MeanCaught,7:0.00} {x.InnocentRate,9:0.000} {x.AnyInnocentBound,9:G3} {x.TopCatchRate,7:0.000} {x.MeanThreshold,8:0.0} {x.MeanColluderScore,9:0.0} {(double.IsNaN(x.MeanGaussianThreshold) ? "-" : x.MeanGaussianThreshold.ToString("0.0", CultureInfo.InvariantCulture)),8} {(double.IsNaN(x.GaussianCatchRate) ? "-" : x.GaussianCatchRate.ToString("0.000", CultureInfo.InvariantCulture)),10}\n");
        return sb.ToString();
    }

    private static IEnumerable<string> Split(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static List<int> ParseInts(string text, string option)
    {
        var list = new List<int>();
        foreach (var part in Split(text))
            list.Add(int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException($"{option}: '{part}' is not an integer"));
        if (list.Count == 0) throw new UsageException($"{option} needs at least one value");
        return list;
    }

    private static List<double> ParseDoubles(string text, string option)
    {
        var list = new List<double>();
        foreach (var part in Split(text))
            list.Add(double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException($"{option}: '{part}' is not a number"));
        if (list.Count == 0) throw new UsageException($"{option} needs at least one value");
        return list;
    }
}
