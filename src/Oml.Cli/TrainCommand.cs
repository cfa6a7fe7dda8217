using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models;
using Oml.Models.IO;
using Oml.Models.Tokenizers;
using Oml.Models.Training;

namespace Oml.Cli;

/// <summary>
/// <c>oml train</c>: pretrain a Llama-architecture model from scratch, or fine-tune one (fully, a subset, or LoRA), from
/// a YAML recipe and/or flags (flags override the recipe), and save a standard model folder.
/// </summary>
public static class TrainCommand
{
    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public const string ManifestFile = "oml-training.json";

    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "A YAML recipe whose keys are these flags without dashes (lab/recipes/*.yaml); flags override it" };
        var mode = new Option<string?>("--mode") { Description = "pretrain (next-token loss on all text; default) or sft (loss on responses only: JSONL {prompt, response}, or Alpaca/ShareGPT/messages JSON or JSONL)" };
        var data = new Option<string[]?>("--data") { Description = "Training data: text files (documents separated by blank lines) or .jsonl with a \"text\" field per line; for sft, prompt/response JSONL or instruction data", AllowMultipleArgumentsPerToken = true };
        var dataSlice = new Option<string?>("--data-slice") { Description = "i/n: train on the i-th (0-based) of n equal contiguous slices of the tokenized data" };
        var sampling = new Option<string?>("--sampling") { Description = "Pretraining windows: random (default) or epochs (non-overlapping windows, reshuffled every epoch)" };
        var chatTemplate = new Option<bool>("--chat-template") { Description = "sft: render instruction data (Alpaca, ShareGPT, messages) with the tokenizer's chat template instead of the raw ### Instruction / ### Response layout" };
        var evalData = new Option<string?>("--eval-data") { Description = "Held-out data (same format) for loss and perplexity" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Folder with tokenizer.json (default: the --init folder)" };
        var init = new Option<string?>("--init") { Description = "Fine-tune this model folder (without it: a new model of the shape given)" };
        var hidden = new Option<int?>("--hidden") { Description = "New model: hidden size (default 256)" };
        var layers = new Option<int?>("--layers") { Description = "New model: decoder layers (default 4)" };
        var heads = new Option<int?>("--heads") { Description = "New model: attention heads (default 4)" };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "New model: key/value heads (default: --heads)" };
        var intermediate = new Option<int?>("--intermediate") { Description = "New model: MLP size (default 8/3 × hidden, rounded up to 64)" };
        var context = new Option<int?>("--context") { Description = "Tokens per training row (default 256; a new model's max_position_embeddings)" };
        var steps = new Option<long?>("--steps") { Description = "Optimizer steps" };
        var epochs = new Option<double?>("--epochs") { Description = "Passes over the data (when --steps is not given)" };
        var batch = new Option<int?>("--batch-size") { Description = "Rows per micro-batch (default 16)" };
        var gradAccum = new Option<int?>("--grad-accum") { Description = "Micro-batches per optimizer step (default 1)" };
        var lr = new Option<double?>("--lr") { Description = "Peak learning rate (default 3e-4)" };
        var minLr = new Option<double?>("--min-lr") { Description = "Learning rate at the end of the cosine decay (default lr/10)" };
        var warmup = new Option<long?>("--warmup") { Description = "Linear warm-up steps (default 5% of the steps)" };
        var weightDecay = new Option<double?>("--weight-decay") { Description = "AdamW weight decay, not on norms, biases or embeddings (default 0.1)" };
        var train = new Option<string?>("--train") { Description = "Which weights train: all (default), mlp, attention, embeddings, layers:0,1" };
        var lora = new Option<int?>("--lora") { Description = "Train LoRA adapters of this rank on attention and MLP weights instead (merged on save)" };
        var loraAlpha = new Option<double?>("--lora-alpha") { Description = "LoRA α (update α/r·B·A; default 2 × rank)" };
        var seed = new Option<ulong?>("--seed") { Description = "Seed of the initial weights, the data order and LoRA (default 0)" };
        var device = new Option<string?>("--device") { Description = "Where to compute: auto (the first CUDA device when there is one, else the CPU), cpu, cuda or cuda:N (default: the recipe's device, else auto)" };
        var dtype = new Option<string?>("--dtype") { Description = "float32 (default; TF32 products on CUDA) or bfloat16 (float32 master weights)" };
        var logEvery = new Option<int?>("--log-every") { Description = "Steps between progress lines (default 10)" };
        var evalEvery = new Option<int?>("--eval-every") { Description = "Steps between held-out evaluations (default: only at the end)" };
        var checkpointDir = new Option<string?>("--checkpoint-dir") { Description = "Checkpoint folder; a run started again with the same folder and settings resumes" };
        var checkpointEvery = new Option<int?>("--checkpoint-every") { Description = "Steps between checkpoints (default: only at the end)" };
        var output = CliOptions.OptionalOut("Folder to save the trained model to");
        var log = new Option<string?>("--log") { Description = "Append one JSON object per report to this file (JSON lines)" };
        var maxShardMb = new Option<double?>("--max-shard-mb") { Description = "Shard the weights into files of at most this many MB (10^6 bytes), with model.safetensors.index.json" };
        var saveDtype = new Option<string?>("--save-dtype") { Description = "dtype of the saved weights: float32 or bfloat16 (default: the training dtype)" };
        var timeLimit = new Option<double?>("--time-limit")
        {
            Description = "Stop after this many seconds (counted from the command's start) at the end of a step, with a checkpoint in --checkpoint-dir; "
                + "the same command resumes there (SIGTERM and Ctrl-C stop the same way; a second one aborts)",
        };
        var force = CliOptions.Force("Replace the --out folder if it exists (it is replaced whole when training is done)");
        var json = CliOptions.Json($"Print the training summary written to {ManifestFile} (recipe, steps, tokens, loss, eval_loss, eval_perplexity, seconds, ...), with \"out\" and \"weight_files\", as JSON");
        var cmd = new Command("train", "Pretrain a Llama-architecture model from scratch or fine-tune one (full, subset or LoRA), from a YAML recipe and/or flags.")
        {
            config, mode, data, dataSlice, sampling, evalData, chatTemplate, tokenizer, init, hidden, layers, heads, kvHeads, intermediate, context, steps, epochs,
            batch, gradAccum, lr, minLr, warmup, weightDecay, train, lora, loraAlpha, seed, device, dtype, logEvery, evalEvery, checkpointDir,
            checkpointEvery, output, log, maxShardMb, saveDtype, timeLimit, force, json,
        };
        var dist = new DistributedOptions();
        dist.AddTo(cmd);
        var shard = new Option<bool>("--shard-optimizer")
        {
            Description = "With --gpus/--processes: keep each parameter's AdamW state and reduced gradient on one rank only (ZeRO-2 by parameter; about 1/N of the optimizer memory per rank); checkpoints are written per rank",
        };
        var shardWeights = new Option<bool>("--shard-weights")
        {
            Description = "With --gpus/--processes: shard the weights too (ZeRO-3, FSDP-style): each rank keeps 1/N of every layer's weights, gradients and AdamW state, gathers a layer's weights while it runs and frees them after (activation checkpointing is on); with --init each rank loads only its slices, and the model is saved a layer at a time",
        };
        cmd.Add(shard);
        cmd.Add(shardWeights);
        cmd.SetAction(r =>
        {
            if (dist.Plan(r) is { } plan) return dist.Launch(r, plan);
            if (r.GetValue(shard) && !DistributedOptions.Launched) throw new UsageException("--shard-optimizer needs --gpus or --processes (several ranks to shard over)");
            if (r.GetValue(shardWeights) && !DistributedOptions.Launched) throw new UsageException("--shard-weights needs --gpus or --processes (several ranks to shard over)");
            var flags = new TrainingRecipe
            {
                Mode = Check(r.GetValue(mode), "--mode", "pretrain", "sft"), Data = r.GetValue(data) is { Length: > 0 } d ? d : null,
                DataSlice = r.GetValue(dataSlice), Sampling = Check(r.GetValue(sampling), "--sampling", "random", "epochs"), EvalData = r.GetValue(evalData),
                ChatTemplate = r.GetValue(chatTemplate) ? true : null,
                Tokenizer = r.GetValue(tokenizer), Init = r.GetValue(init), Hidden = r.GetValue(hidden), Layers = r.GetValue(layers), Heads = r.GetValue(heads),
                KvHeads = r.GetValue(kvHeads), Intermediate = r.GetValue(intermediate), Context = r.GetValue(context), Steps = r.GetValue(steps),
                Epochs = r.GetValue(epochs), Batch = r.GetValue(batch), GradAccum = r.GetValue(gradAccum), Lr = r.GetValue(lr), MinLr = r.GetValue(minLr),
                Warmup = r.GetValue(warmup), WeightDecay = r.GetValue(weightDecay), Train = r.GetValue(train), Lora = r.GetValue(lora),
                LoraAlpha = r.GetValue(loraAlpha), Seed = r.GetValue(seed), Device = r.GetValue(device), Dtype = Check(r.GetValue(dtype), "--dtype", "float32", "bfloat16"),
                LogEvery = r.GetValue(logEvery), EvalEvery = r.GetValue(evalEvery), CheckpointDir = r.GetValue(checkpointDir),
                CheckpointEvery = r.GetValue(checkpointEvery), Out = r.GetValue(output), Log = r.GetValue(log), MaxShardMb = r.GetValue(maxShardMb),
                SaveDtype = Check(r.GetValue(saveDtype), "--save-dtype", "float32", "bfloat16"),
            };
            var recipe = r.GetValue(config) is { } path ? TrainingRecipe.Load(path).Over(flags) : flags;
            return Run(recipe, r.GetValue(force), r.GetValue(json), r.GetValue(shard), r.GetValue(shardWeights), r.GetValue(timeLimit));
        });
        return cmd;
    }

    private static string? Check(string? value, string flag, params string[] allowed) =>
        value is null || allowed.Contains(value) ? value : throw new UsageException($"{flag} must be one of {string.Join(", ", allowed)}, not '{value}'");

    private static void Say(string s) => Console.Error.WriteLine(s);

    /// <summary>Runs a complete recipe (flags already merged).</summary>
    public static int Run(TrainingRecipe r, bool force = false, bool json = false, bool shardOptimizer = false, bool shardWeights = false,
        double? timeLimit = null)
    {
        // Counted from here: a lease or a job slot is wall time, tokenizing included.
        using var stop = new CancellationTokenSource();
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        if (timeLimit is { } limit)
        {
            // CancelAfter takes at most 2^32 − 2 ms (about 49 days).
            if (!(limit > 0) || !(limit <= 4e6)) throw new UsageException($"--time-limit must be a positive number of seconds up to 4,000,000, not {limit}");
            if (r.CheckpointDir is null) throw new UsageException("--time-limit needs --checkpoint-dir (or checkpoint-dir: in the recipe): the stopped run resumes from it");
            stop.CancelAfter(TimeSpan.FromSeconds(limit));
        }
        if (r.Data is not { Count: > 0 }) throw new UsageException("no training data: give --data (or data: in the recipe)");
        if (r.Out is null) throw new UsageException("no output folder: give --out (or out: in the recipe)");
        if (r.Init is null && r.Tokenizer is null) throw new UsageException("a new model needs --tokenizer (or --init MODEL_DIR to fine-tune)");
        if (r.Init is not null && (r.Hidden ?? r.Layers ?? r.Heads ?? r.KvHeads ?? r.Intermediate) is not null)
            throw new UsageException("--init fine-tunes an existing model: its shape comes from its config.json, so --hidden/--layers/--heads/--kv-heads/--intermediate do not apply");
        if (r.Lora is > 0 && r.Train is not null and not "all") throw new UsageException("--lora and --train are alternatives: give one");
        if (r.Lora is > 0 && r.Init is null) throw new UsageException("--lora adapts an existing model: give --init");
        foreach (var f in r.Data) if (!File.Exists(f)) throw new FileNotFoundException($"data file not found: {f}", f);
        if (r.EvalData is { } ev && !File.Exists(ev)) throw new FileNotFoundException($"evaluation data not found: {ev}", ev);
        AtomicFolder.CheckWritable(r.Out, force); // before hours of training, not after
        var tokDir = r.Tokenizer ?? r.Init!;
        if (!File.Exists(Path.Combine(tokDir, "tokenizer.json"))) throw new InvalidDataException($"{tokDir} has no tokenizer.json");
        var dev = Cli.ParseDevice(r.Device ?? "auto");
        var dtype = r.Dtype == "bfloat16" ? DType.BFloat16 : DType.Float32;
        var saveDtype = r.SaveDtype switch { "bfloat16" => DType.BFloat16, "float32" => DType.Float32, _ => dtype };
        bool sft = r.Mode == "sft";
        int contextLen = r.Context ?? 256;
        ulong seed = r.Seed ?? 0;
        long maxShard = r.MaxShardMb is { } mb ? (long)(mb * 1e6) : 4L << 30;
        if (maxShard < 1) throw new UsageException("--max-shard-mb must be positive");

        var tok = Cli.LoadTokenizer(tokDir);
        var sw = System.Diagnostics.Stopwatch.StartNew();

        var options = new TrainingOptions
        {
            Steps = r.Steps ?? 0,
            Epochs = r.Epochs ?? (r.Steps is null ? 1 : 0),
            Batch = r.Batch ?? 16,
            GradAccum = r.GradAccum ?? 1,
            LearningRate = r.Lr ?? 3e-4,
            MinLearningRate = r.MinLr,
            Warmup = r.Warmup,
            WeightDecay = r.WeightDecay ?? 0.1,
            DecayEmbeddings = r.DecayEmbeddings ?? false,
            Beta1 = r.Beta1 ?? 0.9,
            Beta2 = r.Beta2 ?? 0.95,
            MaxGradNorm = r.MaxGradNorm ?? 1.0,
            Trainable = r.Train is { } t ? Cli.OptionValue(() => TrainableSpec.Parse(t)) : null,
            Lora = r.Lora is { } rank and > 0 ? new LoraOptions(rank, r.LoraAlpha ?? 2.0 * rank) : null,
            MatmulPrecision = r.MatmulPrecision ?? "high",
            LogEvery = r.LogEvery ?? 10,
            EvalEvery = r.EvalEvery ?? 0,
            EvalRows = r.EvalRows ?? 256,
            CheckpointDir = r.CheckpointDir,
            CheckpointEvery = r.CheckpointEvery ?? 0,
            Seed = seed,
        };
        Cli.OptionValue(options.Validate);
        // SIGTERM (a scheduler's or a lease's end) and Ctrl-C stop at the end of the step with a checkpoint when there is a
        // checkpoint folder to resume from; a second signal, or either one without a checkpoint folder, aborts as before.
        // Why the run stopped, set once (0: it did not; 1: the time limit; 2: a signal): handlers run on their own threads.
        int reason = 0;
        using var onLimit = stop.Token.Register(() => Interlocked.CompareExchange(ref reason, 1, 0));
        // Disposed once training ends (below), and in any case when the command returns or throws.
        using var onTerm = options.CheckpointDir is null ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var onInt = options.CheckpointDir is null ? null : PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        void OnSignal(PosixSignalContext c)
        {
            if (Interlocked.CompareExchange(ref reason, 2, 0) != 0 && stop.IsCancellationRequested) return;   // a second signal aborts
            c.Cancel = true;
            Say($"oml: {c.Signal}: stopping at the end of this step with a checkpoint (send it again to abort)");
            stop.Cancel();
        }
        string StopReason() => Volatile.Read(ref reason) switch
        {
            1 => string.Create(CultureInfo.InvariantCulture, $"at the time limit ({timeLimit:G} s)"),
            2 => "on request",
            _ => "because another rank was told to stop",
        };
        options = options with { Stop = stop.Token };
        using var group = DistributedOptions.Join(dev);
        bool lead = group is null || group.Rank == 0;
        if (group is not null)
        {
            options = options with { Group = group, ShardOptimizer = shardOptimizer, ShardWeights = shardWeights };
            if (lead) Say($"data-parallel over {group.WorldSize} ranks ({group.Backend}): each micro-batch's rows are shared out" +
                (shardWeights ? "; the weights are sharded (ZeRO-3)" : shardOptimizer ? "; the optimizer is sharded" : ""));
        }
        // Model.
        // With weight sharding a model to fine-tune is loaded sharded (each rank reads only its slices of the files, LoRA
        // adapters added before sharding), and a new one is sharded as soon as it is made.
        CausalLM model;
        ShardedModel? sharded = null;
        if (r.Init is { } initDir && shardWeights)
        {
            sharded = ShardedModel.Load(initDir, group!, Trainer.Selector(options), dev, dtype, prepare: m => Trainer.AddLora(m, options));
            model = sharded.Model;
            if (lead) Say($"fine-tuning {initDir} ({sharded.ExportSpecs.Sum(t => t.NumEl):N0} parameters) on {dev} in {dtype.Name()}: " +
                $"this rank loaded its {sharded.ShardBytes / 1e9:F3} GB");
        }
        else if (r.Init is { } initDir2)
        {
            model = ModelFolder.Load(initDir2, dev, dtype);
            Say($"fine-tuning {initDir2} ({model.Parameters.Values.Sum(p => p.NumEl):N0} parameters) on {dev} in {dtype.Name()}");
        }
        else
        {
            int h = r.Hidden ?? 256, heads = r.Heads ?? 4;
            if (h % heads != 0) throw new UsageException($"--hidden ({h}) must be a multiple of --heads ({heads})");
            if ((h / heads) % 2 != 0) throw new UsageException($"the head size hidden/heads = {h / heads} must be even (rotary embeddings)");
            int kv = r.KvHeads ?? heads;
            if (heads % kv != 0) throw new UsageException($"--heads ({heads}) must be a multiple of --kv-heads ({kv})");
            int inter = r.Intermediate ?? (int)Math.Ceiling(8.0 / 3 * h / 64) * 64;
            var shape = new LlamaShape(tok.VocabSize, h, r.Layers ?? 4, heads, kv, inter, contextLen, r.RopeTheta ?? 10000, r.TieEmbeddings ?? true);
            model = Pretraining.CreateRandom(shape.ToConfig(tok.BosTokenId, tok.EosTokenId, tok.PadTokenId), seed, dev, dtype);
            Say($"new Llama: hidden {h}, {shape.Layers} layers, {heads} heads ({kv} kv), MLP {inter}, vocab {tok.VocabSize}, context {contextLen}: " +
                $"{model.Parameters.Values.Sum(p => p.NumEl):N0} parameters, on {dev} in {dtype.Name()}");
            if (shardWeights)
            {
                Trainer.AddLora(model, options);
                group!.Broadcast(model.Parameters.Values.ToList(), root: 0);
                try { sharded = new ShardedModel(model, group, Trainer.Selector(options)); }
                catch
                {
                    model.Dispose();
                    throw;
                }
            }
        }
        using var lm = model;
        using var shards = sharded;
        if (contextLen > lm.Config.MaxPositionEmbeddings)
            Say($"oml: warning: --context {contextLen} exceeds the model's max_position_embeddings ({lm.Config.MaxPositionEmbeddings})");

        // Data.
        TrainingData Load(IReadOnlyList<string> files, bool slice)
        {
            if (sft)
            {
                var template = r.ChatTemplate == true ? Oml.Models.ChatTemplates.ChatTemplate.FromTokenizerConfig(tokDir) : null;
                var examples = files.SelectMany(f => TrainingText.SupervisedExamples(f, tok, template)).ToList();
                if (slice && r.DataSlice is { } s)
                {
                    var (i, n) = TrainingRecipe.ParseSlice(s);
                    examples = examples.Where((_, k) => k % n == i).ToList();
                }
                var sd = new SupervisedData(examples, tok.PadTokenId ?? tok.EosTokenId ?? 0, contextLen, seed);
                Say($"  {Path.GetFileName(files[0])}{(files.Count > 1 ? $" and {files.Count - 1} more" : "")}: {sd.Count:N0} examples" +
                    (sd.Dropped > 0 ? $" ({sd.Dropped} left out: prompt longer than the context)" : ""));
                return sd;
            }
            var ids = TrainingText.TokenStream(files, tok, tok.EosTokenId);
            if (slice && r.DataSlice is { } sl)
            {
                var (i, n) = TrainingRecipe.ParseSlice(sl);
                ids = PackedTokens.Slice(ids, i, n);
            }
            Say($"  {Path.GetFileName(files[0])}{(files.Count > 1 ? $" and {files.Count - 1} more" : "")}: {ids.Length:N0} tokens{(slice && r.DataSlice is { } x ? $" (slice {x})" : "")}");
            return new PackedTokens(ids, contextLen, seed, r.Sampling == "epochs" ? PackedSampling.Epochs : PackedSampling.Random);
        }
        Say("reading and tokenizing the data ...");
        var trainData = Load(r.Data, slice: true);
        var evalSet = r.EvalData is { } e ? Load([e], slice: false) : null;
        // Stopped before the first step (a signal while loading or tokenizing): nothing to keep, so end now rather than
        // after a step. With several ranks the trainer agrees on the stop at its first report step. The clock is read here
        // too: the timer's callback runs on the thread pool and may come late on a busy machine.
        if (timeLimit is { } lim && System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds >= lim) stop.Cancel();
        if (stop.IsCancellationRequested && group is null)
        {
            Say($"oml: stopped {StopReason()} before training began (nothing to resume: the same command starts afresh)");
            return Cli.Stopped;
        }

        long total = Trainer.TotalSteps(trainData, options);
        Say($"training {total:N0} steps of {options.Batch} × {options.GradAccum} rows, lr {options.LearningRate:G3} → {options.MinLearningRate ?? options.LearningRate / 10:G3}" +
            (options.Lora is { } lo ? $", LoRA rank {lo.Rank} α {lo.Alpha:G3}" : r.Train is { } tr ? $", training {tr}" : "") +
            (dev.IsCuda ? Torch.FusedKernels ? " (fused CUDA kernels)" : " (composite kernels)" : ""));
        if (options.CheckpointDir is { } ckd && TrainingCheckpoint.Latest(ckd) is { } ck) Say($"resuming from the checkpoint at step {ck.Step} in {ck.Folder}");

        if (r.Log is { } logPath && Path.GetDirectoryName(Path.GetFullPath(logPath)) is { } logDir) Directory.CreateDirectory(logDir);
        StreamWriter? logWriter = r.Log is null ? null : new StreamWriter(r.Log, append: true);
        TrainingResult result;
        try
        {
            var onReport = !lead ? null : new InlineProgress<TrainingProgress>(p =>
            {
                var line = string.Create(CultureInfo.InvariantCulture,
                    $"step {p.Step,6}/{p.Steps}  loss {p.Loss:F4}  lr {p.LearningRate:E2}  |g| {p.GradNorm:F2}  {p.TokensPerSecond,8:N0} tok/s  ({p.Seconds:F1} s)")
                    + (p.EvalLoss is { } el ? string.Create(CultureInfo.InvariantCulture, $"  held-out loss {el:F4} (perplexity {Math.Exp(el):F2})") : "");
                if (Console.IsErrorRedirected) Console.Error.WriteLine(line);
                else
                {
                    int filled = (int)Math.Round(20.0 * p.Step / p.Steps);
                    Console.Error.Write($"\r[{new string('#', filled)}{new string('.', 20 - filled)}] {line}   ");
                    if (p.EvalLoss is not null) Console.Error.WriteLine();
                }
                if (logWriter is not null)
                {
                    logWriter.WriteLine(TrainingCheckpoint.ToJson(p).ToJsonString(Compact));
                    logWriter.Flush();
                }
            });
            result = sharded is not null ? Trainer.Train(sharded, trainData, options, evalSet, onReport) : Trainer.Train(lm, trainData, options, evalSet, onReport);
            if (!Console.IsErrorRedirected) Console.Error.WriteLine();
        }
        finally
        {
            logWriter?.Dispose();
            // From here a signal ends the process as it would without this command's handlers (a save is atomic).
            onTerm?.Dispose();
            onInt?.Dispose();
        }

        if (result.Stopped)
        {
            // Every rank returns the same code, so that a launcher waits for all of them (rank 0 may still be writing).
            if (lead)
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"oml: stopped {StopReason()} after step {result.StoppedAtStep:N0} of {result.Steps:N0}")
                    + (options.CheckpointDir is { } d ? $"; its checkpoint is in {d}: the same command resumes there" : "") + $" (no model saved to {r.Out})");
            return Cli.Stopped;
        }
        if (sharded is not null && !lead)
        {
            // The ranks gather one unit at a time while rank 0 writes (its failure fails every rank).
            sharded.SaveWithDigest(r.Out, tokDir, maxShard, saveDtype);
            return Cli.Ok;
        }
        if (!lead) return Cli.Ok;   // rank 0 saves
        var final = result.Final;
        var manifest = new JsonObject
        {
            ["format"] = "oml-training",
            ["created_at"] = DateTimeOffset.UtcNow.ToString("o", CultureInfo.InvariantCulture),
            ["library_version"] = EmbedCommand.LibraryVersion(),
            ["recipe"] = RecipeJson(r),
            ["parameters"] = sharded is not null ? sharded.ExportSpecs.Sum(t => t.NumEl)
                : lm.ExportParameters() is var ps ? ps.Values.Sum(p => { long n = p.NumEl; p.Dispose(); return n; }) : 0,
            ["trained_parameters"] = result.TrainedParameters,
            ["steps"] = result.Steps,
            ["resumed_from_step"] = result.ResumedFromStep,
            ["tokens"] = final.Tokens,
            ["loss"] = final.Loss,
            ["eval_loss"] = result.EvalLoss,
            ["eval_perplexity"] = result.EvalLoss is { } x ? Math.Exp(x) : null,
            ["seconds"] = final.Seconds,
            ["device"] = dev.ToString(),
            ["world_size"] = group?.WorldSize ?? 1,
            ["libtorch"] = Torch.LibTorchVersion,
        };
        void WriteManifest(string dir) => AtomicFile.WriteText(Path.Combine(dir, ManifestFile), manifest.ToJsonString(Indented) + "\n");

        // Save (LoRA adapters merged), in the save dtype, as one folder published whole. Weight-sharded: streamed one unit at
        // a time while the other ranks gather (rank 0 takes part in their gathers even when it cannot start writing).
        if (sharded is not null)
        {
            bool writing = false;
            try
            {
                AtomicFolder.Publish(r.Out, tmp =>
                {
                    writing = true;
                    sharded.SaveWithDigest(tmp, tokDir, maxShard, saveDtype);
                    WriteManifest(tmp);
                }, force);
            }
            catch (Exception ex) when (!writing && ex is not OperationCanceledException)
            {
                sharded.AbandonSave(ex.Message, maxShard, saveDtype);
                throw;
            }
        }
        else if (saveDtype == lm.DType && lm.LoraTargets.Count == 0) ModelFolder.Publish(lm, r.Out, tokDir, maxShard, overwrite: force, extra: WriteManifest);
        else
        {
            var exported = lm.ExportParameters();
            var converted = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            try
            {
                foreach (var (name, w) in exported) converted[name] = w.To(saveDtype).DetachFromScope();
            }
            finally
            {
                foreach (var w in exported.Values) w.Dispose();
            }
            using var saved = new CausalLM(lm.Config, converted, dev, lm.RotaryPrecision);
            ModelFolder.Publish(saved, r.Out, tokDir, maxShard, overwrite: force, extra: WriteManifest);
        }
        var weights = ModelFolder.WeightFiles(r.Out);
        var evalText = result.EvalLoss is { } l2 ? string.Create(CultureInfo.InvariantCulture, $", held-out loss {l2:F4} (perplexity {Math.Exp(l2):F2})") : "";
        var report = new Report().Json("out", r.Out).Json("weight_files", Report.Strings(weights.Select(f => Path.GetFileName(f)))).Json("save_dtype", saveDtype.Name());
        foreach (var (key, value) in manifest) report.Json(key, value?.DeepClone());
        return report.Line(string.Create(CultureInfo.InvariantCulture,
            $"saved {r.Out} ({weights.Count} weight file{(weights.Count == 1 ? "" : "s")}, {saveDtype.Name()}): loss {final.Loss:F4}{evalText}, {sw.Elapsed.TotalSeconds:F1} s"))
            .Print(json);
    }

    private static JsonObject RecipeJson(TrainingRecipe r)
    {
        var o = new JsonObject();
        foreach (var p in typeof(TrainingRecipe).GetProperties())
        {
            var v = p.GetValue(r);
            if (v is null) continue;
            var key = string.Concat(p.Name.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
            o[key] = v switch
            {
                IReadOnlyList<string> list => new JsonArray(list.Select(s => (JsonNode)s).ToArray()),
                int i => i,
                long l => l,
                ulong u => u,
                double d => d,
                bool b => b,
                _ => v.ToString(),
            };
        }
        return o;
    }
}
