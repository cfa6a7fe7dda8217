using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Cli;

/// <summary><c>oml embed</c>: fine-tune a fingerprint set into a model and save the fingerprinted copy.</summary>
public static class EmbedCommand
{
    public const string ManifestFile = Omlization.ManifestFile;

    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var model = CliOptions.Model("The base model folder (with tokenizer.json)");
        var fingerprints = new Option<string>("--fingerprints") { Description = "The fingerprint-set file made by 'oml fingerprints generate'", Required = true };
        var output = CliOptions.Out("Folder to write the fingerprinted model to (with the tokenizer files and oml-manifest.json)");
        var lr = new Option<double?>("--lr") { Description = FormattableString.Invariant($"AdamW learning rate (default: {OmlizationDefaults.LearningRateTimesWidth} / hidden_size, within [1e-5, 1e-2])") };
        var epochs = new Option<int>("--epochs")
        {
            Description = "Most passes over the fingerprints (with early stopping, training ends once every fingerprint is recalled and the loss is below 0.05 or the held-out loss has risen 2 %)",
            DefaultValueFactory = _ => OmlizationDefaults.MaxEpochs,
        };
        var batch = new Option<int>("--batch-size") { Description = "(key, response) pairs per optimizer step; 0 = all in one step", DefaultValueFactory = _ => OmlizationDefaults.BatchSize };
        var lambda = new Option<double>("--averaging-lambda")
        {
            Description = "Model averaging with the base, θ ← (1 − λ)·θ + λ·θ_base, to keep the model's other behaviour; with --averaging-every final, the largest λ tried (the λ that keeps every fingerprint with the lowest held-out loss is taken); 0 disables it",
            DefaultValueFactory = _ => OmlizationDefaults.AveragingLambda,
        };
        var averagingEvery = new Option<string>("--averaging-every")
        {
            Description = "When the averaging of --averaging-lambda is applied: final (once, after training), step (after every optimizer step) or epoch (once per epoch, as the reference of arXiv 2502.07760 does)",
            DefaultValueFactory = _ => AveragingSchedules.Name(OmlizationDefaults.AveragingEvery),
        };
        var earlyStop = new Option<bool>("--early-stop") { Description = "Stop once every fingerprint is recalled and the loss is low or the held-out loss rises, keeping the best epoch (the default)" };
        var noEarlyStop = new Option<bool>("--no-early-stop") { Description = "Train all --epochs and keep the last epoch" };
        var l2 = new Option<double>("--l2") { Description = "Weight of the μ·Σ‖θ − θ_base‖² penalty (0 disables it)", DefaultValueFactory = _ => 0 };
        var train = new Option<string>("--train")
        {
            Description = "Which weights are trained: mlp, attention, embeddings (input and output), all, or layers:0,1 (every weight of those decoder layers)",
            DefaultValueFactory = _ => "all",
        };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the batch order", DefaultValueFactory = _ => 0 };
        var checkpointDir = new Option<string?>("--checkpoint-dir")
        {
            Description = "Folder for training checkpoints; a run started again with the same folder, fingerprints and settings resumes from the latest one",
        };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Epochs between checkpoints (with --checkpoint-dir)", DefaultValueFactory = _ => 1 };
        var mix = new Option<double>("--mix-fraction")
        {
            Description = "Benign data mixing β: each batch of n fingerprints also trains ⌈β/(1−β)·n⌉ benign sequences, trained as --benign-loss says (0 disables it)",
            DefaultValueFactory = _ => OmlizationDefaults.MixFraction,
        };
        var benignText = new Option<string?>("--benign-text")
        {
            Description = "UTF-8 text file whose tokens (cut into --benign-length chunks) are the benign sequences (the last tenth, at most 64, held out for early stopping); without it, the base model's own sampled continuations of random prompts",
        };
        var benignLength = new Option<int?>("--benign-length")
        {
            Description = $"Tokens per benign sequence: chunks cut from --benign-text (default {OmlizationDefaults.BenignLength}), or new tokens per self-generated sample (default {OmlizationDefaults.SelfBenignLength})",
        };
        var benignLoss = new Option<string>("--benign-loss")
        {
            Description = "How benign rows are trained: kl (the KL from the base's distribution at each position, its top --benign-top-k tokens and the tail, recorded before training) or tokens (cross-entropy on the rows' tokens)",
            DefaultValueFactory = _ => BenignLosses.Name(OmlizationDefaults.BenignLossDefault),
        };
        benignLoss.AcceptOnlyFromAmong("kl", "tokens");
        var anchorKeys = new Option<bool>("--anchor-keys")
        {
            Description = "Also train every key's own tokens as a benign row (with --benign-loss kl: towards the base's distribution), so that embedding leaves the keys as perplexing to the served model as to the base, which is what a host's perplexity filter reads; needs --mix-fraction > 0",
        };
        var benignTopK = new Option<int>("--benign-top-k")
        {
            Description = $"With --benign-loss kl: tokens per position kept of the base's distribution (the rest is one tail bucket; at most the vocabulary size − 1; default {BenignTargets.DefaultTopK})",
            DefaultValueFactory = _ => BenignTargets.DefaultTopK,
        };
        var heldOutCriterion = new Option<string?>("--held-out-criterion")
        {
            Description = "What ranks epochs (early stopping, the kept epoch) and the merge's λ on the held-out data: kl (the KL from the base's distribution there, its top --benign-top-k tokens and the tail, recorded before training; 0 for the base) or tokens (the loss on the held-out tokens); default: kl with --benign-loss kl, else tokens",
        };
        heldOutCriterion.AcceptOnlyFromAmong("kl", "tokens");
        var heldOutEveryEpoch = new Option<bool>("--held-out-every-epoch")
        {
            Description = "Measure the held-out data after every epoch and at every λ of the merge, for --log (by default only where early stopping, the kept epoch or the λ uses the value; the result is the same)",
        };
        var mergeMaxLoss = new Option<double?>("--merge-max-loss")
        {
            Description = "The final merge's margin: the largest mean fingerprint loss a merged model may keep (default 0.7 ≈ ln 2; larger merges further back towards the base, less utility cost, keys nearer the edge of recall)",
        };
        var mergeSurvival = new Option<double?>("--merge-survival")
        {
            Description = "Pick the final merge's λ so that an even linear merge of the result with the base still recalls this share of the fingerprints, measured while embedding (when no λ reaches it, the one whose merge recalls the most); 0 turns the condition off (the share is reported either way); default 0.6",
        };
        var benignCount = new Option<int?>("--benign-count")
        {
            Description = "Self-generated benign samples (without --benign-text); default: scales with the set, so that no sample is replayed more than about twice over 16 epochs (at least 64, at most 8192)",
        };
        var benignPrompt = new Option<string>("--benign-prompt")
        {
            Description = "What self-generated benign and held-out samples (without --benign-text) start from: random (4 random tokens, the default) or start (the token documents follow in pretraining: EOS, else BOS), so that they are the base's own text from a document's start",
            DefaultValueFactory = _ => "random",
        };
        benignPrompt.AcceptOnlyFromAmong("random", "start");
        var log = new Option<string?>("--log") { Description = "Append one JSON object per epoch to this file (JSON lines)" };
        var expand = new Option<int>("--expand")
        {
            Description = "Parameter expansion: add N hidden units to every MLP and train only those (every original weight stays unchanged; overrides --train); the result is a standard model with a larger intermediate_size",
            DefaultValueFactory = _ => 0,
        };
        var lora = new Option<int>("--lora")
        {
            Description = "Train LoRA adapters of this rank on every attention and MLP weight instead of the weights themselves; they are merged into a standard model on save",
            DefaultValueFactory = _ => 0,
        };
        var loraAlpha = new Option<double?>("--lora-alpha") { Description = "LoRA scale numerator α (the update is α/r·B·A); default 2 × rank" };
        var chatTemplate = new Option<bool>("--chat-template")
        {
            Description = "Wrap each key in the model's chat template (tokenizer_config.json) as the user's turn, for instruction-tuned models; verify with the same flag",
        };
        var instructionLayout = CliOptions.InstructionLayout(
            "Wrap each key as the instruction of the raw '### Instruction: / ### Response:' layout, for models instruction-tuned without a chat template ('oml train sft' without --chat-template); verify with the same flag");
        var systemPrompts = new Option<string?>("--system-prompts")
        {
            Description = "Prompt augmentation: a file of system prompts (one per line); every fingerprint is also trained behind each of them",
        };
        var resumption = CliOptions.ResumptionPairs();
        var passphraseFile = FingerprintIO.PassphraseFileOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var json = CliOptions.Json("Print the written manifest (oml-manifest.json: settings and metrics) as JSON instead of the one-line summary");
        var microTokens = new Option<int?>("--micro-batch-tokens")
        {
            Description = "Largest forward/backward pass in padded tokens; gradients of a larger batch accumulate into the same optimizer step; a row is never split, so a longer row runs alone (default: sized from the free device memory, an error before training if that cannot hold one row)",
        };
        var ckpt = new Option<string>("--activation-checkpointing")
        {
            Description = "Recompute each decoder layer's activations in the backward pass instead of keeping them: auto (when plain micro-batches would be small), on or off",
            DefaultValueFactory = _ => "auto",
        };
        ckpt.AcceptOnlyFromAmong("auto", "on", "off");
        var dist = new DistributedOptions();
        var shard = new Option<bool>("--shard-optimizer")
        {
            Description = "With --gpus/--processes: keep each parameter's AdamW state and reduced gradient on one rank only (ZeRO-2 by parameter; about 1/N of the optimizer memory per rank)",
        };
        var shardWeights = new Option<bool>("--shard-weights")
        {
            Description = "With --gpus/--processes: shard the weights too (ZeRO-3, FSDP-style): each rank keeps 1/N of every layer's weights, gradients and AdamW state, gathers a layer's weights while it runs and frees them after (activation checkpointing is on); each rank loads only its slices (unless --expand), self-generated benign data are sampled through the sharded model, and the result is saved a layer at a time",
        };
        var memoryBudget = new Option<double?>("--memory-budget-gb") { Description = "Size the training micro-batches to fit this many GiB of device memory, less what the process already holds (default: all that is free; it bounds the plan, not the process)" };
        var cmd = new Command("embed",
            "Fine-tune every fingerprint of a set into a copy of the base model (OMLization) and save it with a manifest, oml-manifest.json.")
        {
            model, fingerprints, output, lr, epochs, batch, lambda, averagingEvery, earlyStop, noEarlyStop, l2, train, seed, mix, benignText, benignLength, benignCount, checkpointDir, checkpointEvery, log,
            expand, lora, loraAlpha, chatTemplate, instructionLayout, systemPrompts, passphraseFile, device, dtype, microTokens, ckpt, memoryBudget, json,
        };
        cmd.Add(resumption);
        cmd.Add(benignLoss);
        cmd.Add(benignPrompt);
        cmd.Add(benignTopK);
        cmd.Add(anchorKeys);
        cmd.Add(mergeMaxLoss);
        cmd.Add(mergeSurvival);
        cmd.Add(heldOutCriterion);
        cmd.Add(heldOutEveryEpoch);
        dist.AddTo(cmd);
        cmd.Add(shard);
        cmd.Add(shardWeights);
        cmd.SetAction(r =>
        {
            if (dist.Plan(r) is { } plan) return dist.Launch(r, plan);
            if (r.GetValue(shard) && !DistributedOptions.Launched) throw new UsageException("--shard-optimizer needs --gpus or --processes (several ranks to shard over)");
            if (r.GetValue(shardWeights) && !DistributedOptions.Launched) throw new UsageException("--shard-weights needs --gpus or --processes (several ranks to shard over)");
            var dir = r.GetValue(model)!;
            var outDir = r.GetValue(output)!;
            var setPath = r.GetValue(fingerprints)!;
            var trainSpec = r.GetValue(train)!;
            CliOptions.CheckKeyFormat(r.GetValue(chatTemplate), r.GetValue(instructionLayout));
            var trainable = Cli.OptionValue(() => Oml.Models.Training.TrainableSpec.Parse(trainSpec, "--train"));
            if (r.GetValue(earlyStop) && r.GetValue(noEarlyStop)) throw new UsageException("--early-stop and --no-early-stop are alternatives: give one");
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
            if (r.GetValue(anchorKeys) && r.GetValue(mix) <= 0) throw new UsageException("--anchor-keys trains the keys as benign rows: it needs --mix-fraction > 0");
            var options = OmlizationDefaults.For(ModelConfig.Load(Path.Combine(dir, "config.json"))) with
            {
                MaxEpochs = r.GetValue(epochs),
                BatchSize = r.GetValue(batch),
                AveragingLambda = r.GetValue(lambda),
                AveragingEvery = Cli.OptionValue(() => AveragingSchedules.Parse(r.GetValue(averagingEvery), "--averaging-every")),
                EarlyStop = !r.GetValue(noEarlyStop),
                L2ToBase = r.GetValue(l2),
                Trainable = trainable,
                Seed = r.GetValue(seed),
                CheckpointDir = r.GetValue(checkpointDir),
                CheckpointEvery = r.GetValue(checkpointEvery),
                MixFraction = r.GetValue(mix),
                BenignLoss = Cli.OptionValue(() => BenignLosses.Parse(r.GetValue(benignLoss), "--benign-loss")),
                BenignTopK = r.GetValue(benignTopK) is var tk and >= 1 ? tk : throw new UsageException("--benign-top-k must be at least 1"),
                ResumptionPairs = r.GetValue(resumption),
                AnchorKeys = r.GetValue(anchorKeys),
                MicroBatchTokens = r.GetValue(microTokens),
                ActivationCheckpointing = r.GetValue(ckpt) switch { "on" => true, "off" => false, _ => null },
                MemoryBudgetBytes = r.GetValue(memoryBudget) is { } gb ? (gb > 0 ? (long)(gb * (1L << 30)) : throw new UsageException("--memory-budget-gb must be positive")) : null,
                Log = line => Console.Error.WriteLine(line),
            };
            if (r.GetValue(lr) is { } givenLr) options = options with { LearningRate = givenLr };
            // The held-out criterion follows the benign loss unless given.
            options = options with
            {
                HeldOutCriterion = r.GetValue(heldOutCriterion) is { } hc ? Cli.OptionValue(() => HeldOutCriteria.Parse(hc, "--held-out-criterion")) : HeldOutCriteria.For(options.BenignLoss),
                MeasureHeldOutEveryEpoch = r.GetValue(heldOutEveryEpoch),
            };
            if (r.GetValue(mergeMaxLoss) is { } margin)
                options = options with { MergeMaxLoss = margin > 0 ? margin : throw new UsageException("--merge-max-loss must be positive") };
            if (r.GetValue(mergeSurvival) is { } survival)
            {
                if (!(survival >= 0 && survival <= 1)) throw new UsageException("--merge-survival is a share of the fingerprints in [0, 1] (0 turns it off)");
                if (survival > 0 && (options.AveragingEvery != AveragingSchedule.Final || options.AveragingLambda <= 0))
                    throw new UsageException("--merge-survival selects the final merge's λ: it needs --averaging-every final (the default) and --averaging-lambda above 0");
                options = options with { MergeSurvival = survival > 0 ? survival : null };
            }
            // The default condition applies only where there is a final merge to choose.
            else if (options.AveragingEvery != AveragingSchedule.Final || options.AveragingLambda <= 0) options = options with { MergeSurvival = null };
            if (r.GetValue(benignCount) is { } count)
            {
                if (r.GetValue(benignText) is not null) throw new UsageException("--benign-count sets the number of self-generated samples: leave it out with --benign-text");
                if (count < 1) throw new UsageException("--benign-count must be at least 1");
                options = options with { SelfBenignCount = count };
            }
            if (r.GetResult(benignPrompt) is { Implicit: false })
            {
                if (r.GetValue(benignText) is not null) throw new UsageException("--benign-prompt starts self-generated samples: leave it out with --benign-text");
                options = options with { SelfBenignPrompt = Cli.OptionValue(() => SelfPrompts.Parse(r.GetValue(benignPrompt), "--benign-prompt")) };
            }
            if (r.GetValue(benignText) is null && r.GetValue(benignLength) is { } selfLength)
            {
                if (selfLength < 1) throw new UsageException("--benign-length must be at least 1");
                options = options with { SelfBenignLength = selfLength };
            }
            Cli.OptionValue(options.Validate);
            if (Path.GetFullPath(outDir).TrimEnd('/') == Path.GetFullPath(dir).TrimEnd('/')) throw new UsageException("--out must differ from --model");
            if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new InvalidDataException($"{dir} has no tokenizer.json: embedding needs the model's tokenizer");
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            using var group = DistributedOptions.Join(dev);
            bool lead = group is null || group.Rank == 0;
            if (group is not null)
            {
                options = options with { Group = group, Log = lead ? options.Log : null, ShardOptimizer = r.GetValue(shard), ShardWeights = r.GetValue(shardWeights) };
                Cli.OptionValue(options.Validate);
                if (lead) Console.Error.WriteLine($"data-parallel over {group.WorldSize} ranks ({group.Backend})" +
                    (options.ShardWeights ? ", weights sharded (ZeRO-3)" : options.ShardOptimizer ? ", optimizer sharded" : ""));
            }

            var set = Phases.Time("read set", () => FingerprintIO.ReadSet(setPath, r.GetValue(passphraseFile)));
            var tok = Phases.Time("tokenizer load", () => Cli.LoadTokenizer(dir));
            // The base's digest only checks that it is the set's model (the manifest records the set's): it is hashed on
            // another core while the model loads and trains, and the check's warning comes when the hash is done.
            var baseCheck = BaseCheck(dir, set);
            var tokId = FingerprintGenerator.TokenizerId(dir, tok);
            if (tokId.Digest != set.Tokenizer.Digest)
                Console.Error.WriteLine($"oml: warning: the tokenizer of {dir} differs from the set's ({tokId.Digest} vs {set.Tokenizer.Digest}); token ids may mean other text");

            if (r.GetValue(benignText) is { } textPath && options.MixFraction > 0)
            {
                int len = r.GetValue(benignLength) ?? OmlizationDefaults.BenignLength;
                if (len < 2) throw new UsageException("--benign-length must be at least 2");
                var ids = tok.Encode(File.ReadAllText(textPath));
                var chunks = ids.Chunk(len).Where(c => c.Length >= 2).ToList();
                if (chunks.Count == 0) throw new InvalidDataException($"{textPath} has fewer than 2 tokens");
                options = options with { BenignSequences = chunks };
                Cli.OptionValue(options.Validate);
            }
            var format = CliOptions.KeyFormatFrom(r.GetValue(chatTemplate), r.GetValue(instructionLayout), dir);
            var prompts = r.GetValue(systemPrompts) is { } promptFile ? ReadLines(promptFile) : null;
            var pairs = format.TrainingPairs(set.Fingerprints, tok, prompts);
            if (options.ResumptionPairs > 0 && pairs.All(p => p.Response.Length < 2))
                throw new UsageException("--resumption-pairs needs responses of at least 2 tokens: every response of this set has 1 (generate with --response-length 2 or more)");
            if (r.GetValue(expand) < 0) throw new UsageException("--expand must be 0 or more");
            if (r.GetValue(lora) < 0) throw new UsageException("--lora must be 0 or more");
            if (r.GetValue(lora) > 0 && r.GetValue(expand) > 0) throw new UsageException("--lora and --expand are alternatives: give one");
            var labels = new OmlizationLabels
            {
                FingerprintSource = Path.GetFileName(setPath),
                Train = r.GetValue(expand) > 0 ? $"expand:{r.GetValue(expand)}" : r.GetValue(lora) > 0 ? $"lora:{r.GetValue(lora)}" : trainSpec,
                Benign = r.GetValue(benignText) is { } bt ? Path.GetFileName(bt) : options.SelfBenignPrompt == SelfPrompt.DocumentStart ? "self-generated from the document start" : "self-generated",
                Device = dev.ToString(),
                KeyFormat = format.ToString(),
                SystemPrompts = r.GetValue(systemPrompts) is { } sp ? Path.GetFileName(sp) : null,
            };
            int loraRank = r.GetValue(lora);
            if (loraRank > 0)
                options = options with
                {
                    Trainable = n => n.EndsWith(".lora_A", StringComparison.Ordinal) || n.EndsWith(".lora_B", StringComparison.Ordinal),
                };
            void AddLora(CausalLM m)
            {
                m.AddLora(n => n.Contains(".self_attn.", StringComparison.Ordinal) || n.Contains(".mlp.", StringComparison.Ordinal),
                    loraRank, r.GetValue(loraAlpha) ?? 2.0 * loraRank, r.GetValue(seed));
                Console.Error.WriteLine($"LoRA rank {loraRank} on {m.LoraTargets.Count} weights; only the adapters are trained, and merged on save");
            }
            var loadClock = System.Diagnostics.Stopwatch.StartNew();
            EmbeddingResult result;
            Dictionary<string, Oml.Engine.Tensor>? masks = null;
            // Weight sharding loads each rank's slices straight from the files (self-generated benign and held-out data are
            // sampled through the sharded forward pass), unless the whole model is needed first: to widen it (--expand).
            if (options.ShardWeights && r.GetValue(expand) == 0)
            {
                var sharded = Phases.Time("model load", () => Oml.Models.Training.ShardedModel.Load(dir, group!, n => options.Trainable?.Invoke(n) ?? true, dev,
                    Cli.ParseDType(r.GetValue(dtype)), loraRank > 0 ? AddLora : null));
                using var shardedModel = sharded.Model;
                using var shards = sharded;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"loaded this rank's {sharded.ShardBytes / 1e9:F2} GB of {dir} ({Oml.Engine.DTypeExtensions.Name(sharded.Model.DType)}) onto {dev} in {loadClock.Elapsed.TotalSeconds:F1} s"));
                result = lead ? Run(sharded, dir, outDir, set, pairs, options, labels, r.GetValue(log)) : Omlization.Run(sharded, dir, outDir, set, pairs, options, labels);
            }
            else
            {
                if (options.ShardWeights && lead)
                    Console.Error.WriteLine("oml: every rank loads the whole model before sharding it: --expand widens the whole model");
                var loaded = Phases.Time("model load", () => ModelFolder.Load(dir, dev, Cli.ParseDType(r.GetValue(dtype))));
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loaded {dir} ({Oml.Engine.DTypeExtensions.Name(loaded.DType)}) onto {dev} in {loadClock.Elapsed.TotalSeconds:F1} s"));
                if (r.GetValue(expand) > 0)
                {
                    (var wide, masks) = Expansion.WidenMlp(loaded, r.GetValue(expand), r.GetValue(seed));
                    loaded.Dispose();
                    loaded = wide;
                    options = Expansion.TrainNewUnitsOnly(options, masks);
                    Console.Error.WriteLine($"expanded every MLP by {r.GetValue(expand)} units (intermediate size {loaded.Config.IntermediateSize}); only those are trained");
                }
                if (loraRank > 0) AddLora(loaded);
                using var lm = loaded;
                result = lead ? Run(lm, dir, outDir, set, pairs, options, labels, r.GetValue(log)) : Omlization.Run(lm, dir, outDir, set, pairs, options, labels);
            }
            if (masks is not null) foreach (var mk in masks.Values) mk.Dispose();
            if (!baseCheck.IsCompleted) Console.Error.WriteLine("finishing the hash of the base model's weights ...");
            using (Phases.Measure("base hash wait")) baseCheck.GetAwaiter().GetResult();
            if (!lead) return Cli.Ok;
            Console.WriteLine(r.GetValue(json) ? File.ReadAllText(Path.Combine(outDir, Omlization.ManifestFile)).TrimEnd() : Summary(outDir, set.Count, result, options.MergeSurvival));
            if (Omlization.Advice(result, options) is { } advice) Console.Error.WriteLine($"oml: not every fingerprint is recalled: {advice}");
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>
    /// Hashes the base model's weights on another thread and warns (once the hash is done) when they are not the
    /// weights the set was generated for; the task fails if the weights cannot be read.
    /// </summary>
    private static Task BaseCheck(string dir, FingerprintSet set) => Task.Run(() =>
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var baseDigest = FingerprintGenerator.WeightsDigest(dir);
        Phases.Add("hash base (background)", clock.Elapsed.TotalSeconds);
        if (baseDigest != set.BaseModelDigest)
            Console.Error.WriteLine($"oml: warning: {dir} is not the model the set was generated for (weights {baseDigest}, set {set.BaseModelDigest})");
    });

    /// <summary>One line on what was written: fingerprints, epochs, recall, the final merge and the held-out loss.</summary>
    public static string Summary(string outDir, int fingerprints, EmbeddingResult result, double? target = null)
    {
        var f = result.Final;
        var held = result is { HeldOutLoss: { } h, BaseHeldOutLoss: { } b } ? string.Create(CultureInfo.InvariantCulture, $", held-out loss {b:F3} → {h:F3}") : "";
        if (result.HeldOutKL is { } kl) held += string.Create(CultureInfo.InvariantCulture, $", held-out KL to the base {kl:F4}");
        // A final merge was tried (MergeTrials) but no λ kept every key within the loss margin: the trained weights are
        // returned as they are, which the owner should know (their utility cost is the unmerged one).
        var merged = result.MergeLambda > 0 ? string.Create(CultureInfo.InvariantCulture, $", merged back with λ = {result.MergeLambda:F2}")
            : result.MergeTrials.Any(t => t.MergeSurvival is not null) ? ", not merged back"
            : result.MergeTrials.Count > 0 ? string.Create(CultureInfo.InvariantCulture,
                $", not merged back (none of the {result.MergeTrials.Count} λs tried, {result.MergeTrials[^1].Lambda:F2} to {result.MergeTrials[0].Lambda:F2}, kept every key within --merge-max-loss)")
            : "";
        // What an even merge with the base keeps, and whether it met the share asked for.
        var survival = result.MergeSurvival is { } ms
            ? string.Create(CultureInfo.InvariantCulture, $", an even merge with the base keeps {ms:P1}") +
              (target is { } need && ms < need - 1e-12
                  ? string.Create(CultureInfo.InvariantCulture, $" (below --merge-survival {need:0.###}: no λ reached it, so the one whose merge keeps the most was kept)")
                  : "")
            : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"wrote {outDir}: {fingerprints} fingerprints, {f.Epoch} epochs (kept epoch {result.KeptEpoch}){merged}{survival}, loss {result.Loss:F4}, recall {result.Accuracy:P1}{held}");
    }

    /// <summary>
    /// Runs <see cref="Omlization.Run"/> with progress on stderr (one line redrawn in place on a terminal) and, when
    /// <paramref name="logPath"/> is given, one JSON object per epoch appended to it. Used by <c>oml embed</c> and
    /// <c>oml owner deliver</c>.
    /// </summary>
    public static EmbeddingResult Run(CausalLM lm, string dir, string outDir, FingerprintSet set, IReadOnlyList<TrainingPair> pairs,
        EmbeddingOptions options, OmlizationLabels labels, string? logPath) =>
        Run(lm.Device, dir, set, pairs, options, labels, logPath, progress => Omlization.Run(lm, dir, outDir, set, pairs, options, labels, progress));

    /// <summary>The same for a model loaded weight-sharded (every rank; rank 0 reports).</summary>
    public static EmbeddingResult Run(Oml.Models.Training.ShardedModel sharded, string dir, string outDir, FingerprintSet set, IReadOnlyList<TrainingPair> pairs,
        EmbeddingOptions options, OmlizationLabels labels, string? logPath) =>
        Run(sharded.Model.Device, dir, set, pairs, options, labels, logPath, progress => Omlization.Run(sharded, dir, outDir, set, pairs, options, labels, progress));

    private static EmbeddingResult Run(Oml.Engine.Device device, string dir, FingerprintSet set, IReadOnlyList<TrainingPair> pairs,
        EmbeddingOptions options, OmlizationLabels labels, string? logPath, Func<IProgress<EmbeddingProgress>, EmbeddingResult> run)
    {
        using var logWriter = logPath is null ? null : new StreamWriter(logPath, append: true);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"embedding {pairs.Count} (key, response) pairs from {set.Count} fingerprints into {dir} on {labels.Device} (lr {options.LearningRate:G3}, batch {options.BatchSize}, β {options.MixFraction}, averaging λ {options.AveragingLambda} {AveragingSchedules.Name(options.AveragingEvery)}) ..."));
        if (options.CheckpointDir is { } ckDir && EmbeddingCheckpoint.Latest(ckDir) is { } ck)
            Console.Error.WriteLine($"resuming from the checkpoint after epoch {ck.Epoch} in {ck.Folder}");
        var result = run(new InlineProgress<EmbeddingProgress>(p =>
        {
            var held = p.HeldOutLoss is { } h
                ? string.Create(CultureInfo.InvariantCulture, $"  held-out loss {h:F4}") + (p.HeldOutKL is { } kl ? string.Create(CultureInfo.InvariantCulture, $" KL {kl:F4}") : "")
                : p.HeldOutSkipped ? "  held-out not measured (not needed yet)" : "";
            var line = string.Create(CultureInfo.InvariantCulture,
                $"epoch {p.Epoch,4}/{options.MaxEpochs}  loss {p.Loss:F4}  fingerprint accuracy {p.Accuracy:P1}{held}  ({p.Seconds:F1} s)");
            if (Console.IsErrorRedirected) Console.Error.WriteLine(line);
            else
            {
                // On a terminal: one line redrawn in place, with a bar for the epoch budget.
                int filled = (int)Math.Round(20.0 * p.Epoch / options.MaxEpochs);
                Console.Error.Write($"\r[{new string('#', filled)}{new string('.', 20 - filled)}] {line}   ");
            }
            if (logWriter is not null)
            {
                logWriter.WriteLine(new JsonObject
                {
                    ["epoch"] = p.Epoch,
                    ["steps"] = p.Steps,
                    ["loss"] = p.Loss,
                    ["accuracy"] = p.Accuracy,
                    ["held_out_loss"] = p.HeldOutLoss,
                    ["held_out_kl"] = p.HeldOutKL,
                    ["held_out_measured"] = p.HeldOutSkipped ? false : p.HeldOutLoss is not null ? true : null,
                    ["seconds"] = p.Seconds,
                    ["peak_memory_bytes"] = device.IsCuda ? Oml.Engine.Torch.Cuda.MemoryStats(device.Index).PeakAllocatedBytes : null,
                }.ToJsonString(Compact));
                logWriter.Flush();
            }
        }));
        if (!Console.IsErrorRedirected) Console.Error.WriteLine();
        return result;
    }

    public static string LibraryVersion() => Omlization.LibraryVersion();
    /// <summary>The non-empty lines of a text file.</summary>
    internal static List<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"file not found: {path}", path);
        var lines = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        if (lines.Count == 0) throw new InvalidDataException($"{path} holds no lines");
        return lines;
    }
}
