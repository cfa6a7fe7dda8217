using System.CommandLine;
using System.Diagnostics;
using Oml.Models;
using Oml.Models.Data;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary><c>oml tokenizer train</c>: byte-level BPE tokenizers for the lab's small models.</summary>
public static class TokenizerCommands
{
    private static readonly string[] TokenizerFiles = ["tokenizer.json", "tokenizer_config.json"];

    public static Command Create() => new("tokenizer", "Train byte-level BPE tokenizers.") { Train() };

    private static Command Train()
    {
        var input = new Option<string[]>("--input")
        {
            Description = "Training text: .txt (documents separated by blank lines), .jsonl with a \"text\" field, or a .json array",
            Required = true, AllowMultipleArgumentsPerToken = true,
        };
        var vocabSize = new Option<int>("--vocab-size") { Description = "Vocabulary size: 256 bytes + merges (3 special tokens come on top)", Required = true };
        var outDir = CliOptions.Out("Directory to write tokenizer.json and tokenizer_config.json");
        var force = CliOptions.Force("Replace the tokenizer files in --out if they exist");
        var minFrequency = new Option<long>("--min-frequency") { Description = "Stop when no pair occurs this many times", DefaultValueFactory = _ => 2 };
        var json = CliOptions.Json("Print {\"out\", \"tokens\", \"special_tokens\", \"merges\", \"documents\", \"chars\", \"seconds\"} as JSON");
        var cmd = new Command("train", "Train a byte-level BPE tokenizer (Llama-3 pre-tokenization) and write it in Hugging Face format.")
        {
            input, vocabSize, outDir, minFrequency, force, json,
        };
        cmd.SetAction(r =>
        {
            var files = r.GetValue(input)!;
            int size = r.GetValue(vocabSize);
            if (size < 257) throw new UsageException($"--vocab-size must exceed the 256 byte tokens, not {size}");
            long minFreq = r.GetValue(minFrequency);
            if (minFreq < 1) throw new UsageException($"--min-frequency must be at least 1, not {minFreq}");
            foreach (var f in TokenizerFiles)
                Oml.Models.IO.AtomicFile.CheckWritable(Path.Combine(r.GetValue(outDir)!, f), r.GetValue(force));
            var sw = Stopwatch.StartNew();
            var texts = new List<string>();
            long chars = 0;
            foreach (var f in files)
            {
                var docs = TextData.Load(f);
                texts.AddRange(docs);
                chars += docs.Sum(d => (long)d.Length);
            }
            Console.Error.WriteLine($"read {texts.Count} documents ({chars / 1e6:F1} M chars) in {sw.Elapsed.TotalSeconds:F1} s");
            int lastShown = 0;
            var (vocab, merges) = BpeTrainer.Train(texts, size, minFreq, new InlineProgress<int>(n =>
            {
                if (n - lastShown < 500 && n != size) return;
                lastShown = n;
                Console.Error.Write($"\rvocabulary {n}/{size}  ({sw.Elapsed.TotalSeconds:F1} s)");
            }));
            Console.Error.WriteLine();
            var dir = r.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            BpeTrainer.Save(dir, vocab, merges);
            double seconds = sw.Elapsed.TotalSeconds;
            return new Report()
                .Json("out", dir).Json("tokens", vocab.Count).Json("special_tokens", BpeTrainer.SpecialTokens.Length).Json("merges", merges.Count)
                .Json("documents", texts.Count).Json("chars", chars).Json("seconds", Report.Number(seconds))
                .Line($"{vocab.Count} tokens + {BpeTrainer.SpecialTokens.Length} special, {merges.Count} merges -> {dir} ({seconds:F1} s)")
                .Print(r.GetValue(json));
        });
        return cmd;
    }
}
