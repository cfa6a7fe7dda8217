using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Oml.Lab.Data;
using Oml.Models;

namespace Oml.Cli;

/// <summary><c>oml data corpus</c> and <c>oml data instructions</c>: the lab's training and evaluation data.</summary>
public static class DataCommands
{
    public static Command Create() => new("data", "Build the lab's English corpus and instruction data from Debian packages.")
    {
        Corpus(),
        Instructions(),
    };

    private static Command Corpus()
    {
        var outDir = CliOptions.Out("Directory to write train.txt, heldout.txt, lexicon.jsonl, quotations.jsonl and manifest.json");
        var force = CliOptions.Force("Write into --out even if it holds files (they are replaced)");
        var maxMb = new Option<double?>("--max-mb") { Description = "Keep at most this many MiB of text (a uniform sample of all sources)" };
        var heldOut = new Option<double>("--heldout-percent") { Description = "Share of documents in the held-out split", DefaultValueFactory = _ => 2.0 };
        var root = new Option<string>("--root") { Description = "File-system root the package files are read under", DefaultValueFactory = _ => "/" };
        var json = CliOptions.Json("Print {\"out\", \"train_documents\", \"train_bytes\", \"heldout_documents\", \"heldout_bytes\", \"duplicates\", \"seconds\"} as JSON");
        var cmd = new Command("corpus", "Extract, clean, deduplicate and split the English text of the installed Debian packages " +
                                        "(install them with scripts/lab/build-corpus.sh).") { outDir, maxMb, heldOut, root, force, json };
        cmd.SetAction(r =>
        {
            var percent = r.GetValue(heldOut);
            if (percent is < 0 or > 100) throw new UsageException($"--heldout-percent must be within 0..100, not {percent}");
            Oml.Models.IO.AtomicFolder.CheckWritable(r.GetValue(outDir)!, r.GetValue(force));
            var builder = new CorpusBuilder
            {
                Root = r.GetValue(root)!,
                MaxMegabytes = r.GetValue(maxMb),
                HeldOutPer10000 = (int)Math.Round(percent * 100),
            };
            var sw = Stopwatch.StartNew();
            var summary = builder.Build(r.GetValue(outDir)!, new InlineProgress<CorpusProgress>(p =>
            {
                if (p.Stage == "writing") Console.Error.WriteLine($"writing {p.Documents} documents");
                else if (p.Stage == "read") Console.Error.WriteLine($"\r{p.Source,-18} {p.Documents,8} documents  ({sw.Elapsed.TotalSeconds:F1} s)");
                else Console.Error.Write($"\r{p.Source,-18} {p.Documents,8} documents");
            }));
            double seconds = sw.Elapsed.TotalSeconds;
            return new Report()
                .Json("out", r.GetValue(outDir)).Json("train_documents", summary.TrainDocuments).Json("train_bytes", summary.TrainBytes)
                .Json("heldout_documents", summary.HeldOutDocuments).Json("heldout_bytes", summary.HeldOutBytes)
                .Json("duplicates", summary.Duplicates).Json("seconds", Report.Number(seconds))
                .Line($"train    {summary.TrainDocuments,8} documents {summary.TrainBytes / 1048576.0,8:F1} MiB")
                .Line($"heldout  {summary.HeldOutDocuments,8} documents {summary.HeldOutBytes / 1048576.0,8:F1} MiB")
                .Line($"dropped  {summary.Duplicates,8} exact duplicates; {seconds:F1} s")
                .Print(r.GetValue(json));
        });
        return cmd;
    }

    private static Command Instructions()
    {
        var corpus = new Option<string>("--corpus") { Description = "A corpus directory made by 'oml data corpus'", Required = true };
        var outDir = CliOptions.Out("Directory to write instructions-train.json and instructions-heldout.json");
        var force = CliOptions.Force("Replace the instruction files in --out if they exist");
        var count = new Option<int>("--count") { Description = "Examples to make in all (train + held-out)", DefaultValueFactory = _ => 20000 };
        var seed = new Option<ulong>("--seed") { Description = "Seed for choosing and phrasing the examples", DefaultValueFactory = _ => 0 };
        var json = CliOptions.Json("Print {\"train\", \"heldout\", \"train_file\", \"heldout_file\", \"tasks\": {TASK: count}} as JSON");
        var cmd = new Command("instructions", "Make Alpaca-format instruction data (definitions, synonyms, antonyms, quotations) from a corpus.")
        {
            corpus, outDir, count, seed, force, json,
        };
        cmd.SetAction(r =>
        {
            var n = r.GetValue(count);
            if (n <= 0) throw new UsageException($"--count must be positive, not {n}");
            foreach (var f in new[] { InstructionGenerator.TrainFile, InstructionGenerator.HeldOutFile })
                Oml.Models.IO.AtomicFile.CheckWritable(Path.Combine(r.GetValue(outDir)!, f), r.GetValue(force));
            var result = InstructionGenerator.Generate(r.GetValue(corpus)!, n, r.GetValue(seed));
            var dir = r.GetValue(outDir)!;
            InstructionGenerator.Write(dir, result);
            var tasks = result.TaskCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
            var report = new Report()
                .Json("train", result.Train.Count).Json("heldout", result.HeldOut.Count)
                .Json("train_file", Path.Combine(dir, InstructionGenerator.TrainFile)).Json("heldout_file", Path.Combine(dir, InstructionGenerator.HeldOutFile))
                .Json("tasks", new JsonObject(tasks.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))))
                .Line($"train    {result.Train.Count,8} examples  {Path.Combine(dir, InstructionGenerator.TrainFile)}")
                .Line($"heldout  {result.HeldOut.Count,8} examples  {Path.Combine(dir, InstructionGenerator.HeldOutFile)}");
            foreach (var (task, c) in tasks) report.Line($"  {task,-16} {c,8}");
            return report.Print(r.GetValue(json));
        });
        return cmd;
    }
}
