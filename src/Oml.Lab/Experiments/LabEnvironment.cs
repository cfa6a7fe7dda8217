using System.Diagnostics;
using System.Globalization;
using System.Text;
using Oml.Engine;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Experiments;

/// <summary>Utility of a model: held-out perplexity and the cloze suite.</summary>
public sealed record UtilityResult(double Perplexity, double ClozeAccuracy, double GreedyNextWord);

/// <summary>A fingerprinted model with its fingerprints, as built or loaded.</summary>
/// <param name="Format">How its keys reach it, in embedding and in every query.</param>
public sealed record FingerprintedModel(string Dir, IReadOnlyList<Fingerprint> Fingerprints, double EmbedSeconds, int Epochs, bool Converged, KeyFormat Format);

/// <summary>
/// Everything the cells of one run share: the resolved paths, tokenizer, corpus split into training and held-out
/// tokens, the cloze suite, the attack catalog. Builds the base (and unrelated) models first when the config asks
/// for small ones to be trained (smoke runs).
/// </summary>
public sealed class LabEnvironment
{
    public const string OutPrefix = "$out/";

    public LabConfig Config { get; }
    public string OutDir { get; }
    public Device Device { get; }
    public DType DType { get; }
    public AttackCatalog Catalog { get; }
    public TextWriter? Log { get; }
    public string BaseDir { get; }
    public Tokenizer Tokenizer { get; private set; } = null!;
    public string TrainText { get; private set; } = "";
    public string HeldOutText { get; private set; } = "";
    public int[] TrainTokens { get; private set; } = [];
    public int[] HeldOutTokens { get; private set; } = [];
    public List<ClozeItem> Cloze { get; private set; } = [];
    /// <summary>Instruction prompts and reference answers for the whole-answer task (empty unless utility.instructions is set).</summary>
    public List<Oml.Models.Data.TokenizedExample> Instructions { get; private set; } = [];
    /// <summary>
    /// The host's instruction traffic, which filters calibrated on=instructions take their quantile from: the prompts of
    /// the (up to 64) records after the scored ones in the same file, so that no scored instruction calibrates the filter.
    /// </summary>
    public List<int[]> InstructionTraffic { get; private set; } = [];

    public LabEnvironment(LabConfig config, string outDir, AttackCatalog? catalog = null, TextWriter? log = null)
    {
        Config = config;
        OutDir = Path.GetFullPath(outDir);
        Device = Device.Parse(config.Device);
        DType = DTypeExtensions.Parse(config.Dtype);
        Catalog = catalog ?? AttackCatalog.Default();
        Log = log;
        BaseDir = Resolve(config.BaseModel);
    }

    /// <summary>A config path: "$out/..." inside the output folder, else relative to the config file's folder.</summary>
    public string Resolve(string path) => path.StartsWith(OutPrefix, StringComparison.Ordinal)
        ? Path.GetFullPath(Path.Combine(OutDir, path[OutPrefix.Length..])) : Config.Resolve(path);

    public void Prepare()
    {
        var texts = new StringBuilder();
        foreach (var p in Config.Corpus)
        {
            var f = Resolve(p);
            if (!File.Exists(f)) throw new FileNotFoundException($"corpus file {f} not found");
            texts.Append(File.ReadAllText(f)).Append("\n\n");
        }
        var all = texts.ToString();
        if (Config.MaxCorpusChars > 0 && all.Length > Config.MaxCorpusChars) all = all[..Config.MaxCorpusChars];
        if (Config.Heldout.Count > 0)
        {
            TrainText = all;
            HeldOutText = string.Concat(Config.Heldout.Select(p => File.Exists(Resolve(p)) ? File.ReadAllText(Resolve(p)) + "\n\n" : throw new FileNotFoundException($"held-out file {Resolve(p)} not found")));
            if (Config.MaxCorpusChars > 0 && HeldOutText.Length > Config.MaxCorpusChars) HeldOutText = HeldOutText[..Config.MaxCorpusChars];
        }
        else
        {
            int cut = (int)(all.Length * (1 - Config.HeldoutFraction));
            // Cut at a paragraph or line break so that no sentence is split between the parts.
            int nl = all.LastIndexOf('\n', Math.Max(0, cut));
            if (nl > all.Length / 2) cut = nl;
            TrainText = all[..cut];
            HeldOutText = all[cut..];
        }

        if (!File.Exists(Path.Combine(BaseDir, "config.json")))
        {
            if (Config.BuildBase is null) throw new DirectoryNotFoundException($"base model {BaseDir} not found (train it first, e.g. `oml train --config lab/recipes/base.yaml`)");
            // Shards of one run share the output folder: one builds, the others wait for it.
            using var buildLock = BuildLock.Acquire(OutDir, BaseDir, Log);
            if (!File.Exists(Path.Combine(BaseDir, "config.json"))) BuildModel(BaseDir, Config.BuildBase, tokenizerDir: null);
        }
        var tokDir = Config.Tokenizer is null ? BaseDir : Resolve(Config.Tokenizer);
        if (!File.Exists(Path.Combine(tokDir, "tokenizer.json"))) throw new FileNotFoundException($"no tokenizer.json in {tokDir}");
        Tokenizer = Tokenizer.FromFolder(tokDir);
        TrainTokens = Tokenizer.Encode(TrainText);
        HeldOutTokens = Tokenizer.Encode(HeldOutText);
        if (Config.Utility.PerplexityTokens > 0 && HeldOutTokens.Length > Config.Utility.PerplexityTokens) HeldOutTokens = HeldOutTokens[..Config.Utility.PerplexityTokens];
        if (HeldOutTokens.Length < 8) throw new ArgumentException($"the held-out text is only {HeldOutTokens.Length} tokens");
        if (Config.Utility.ClozeItems > 0) Cloze = Metrics.Cloze.Build(HeldOutText, TrainText, Config.Utility.ClozeItems, (int)(Config.Seeds[0] & 0x7fffffff));
        if (Config.Utility.Instructions.Length > 0)
        {
            var f = Resolve(Config.Utility.Instructions);
            if (!File.Exists(f)) throw new FileNotFoundException($"instruction file {f} not found");
            var records = Oml.Models.Data.InstructionData.Load(f);
            Instructions = records.Take(Config.Utility.InstructionItems).Select(c => Oml.Models.Data.InstructionData.Tokenize(c, Tokenizer)).ToList();
            InstructionTraffic = records.Skip(Config.Utility.InstructionItems).Take(64).Select(c => Oml.Models.Data.InstructionData.Tokenize(c, Tokenizer).Prompt).ToList();
        }
    }

    /// <summary>Trains a small Llama (and a byte-level BPE tokenizer, when <paramref name="tokenizerDir"/> is null) into <paramref name="dir"/>, atomically.</summary>
    public void BuildModel(string dir, BuildSpec b, string? tokenizerDir)
    {
        var sw = Stopwatch.StartNew();
        Log?.WriteLine($"building a {b.Layers}-layer, {b.Hidden}-wide Llama in {dir} ({b.Steps} steps)");
        var tmp = dir.TrimEnd('/') + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);
        try
        {
            if (tokenizerDir is null)
            {
                var (vocab, merges) = BpeTrainer.Train(TrainText.Split("\n\n", StringSplitOptions.RemoveEmptyEntries), b.Vocab);
                BpeTrainer.Save(tmp, vocab, merges);
                tokenizerDir = tmp;
            }
            var tok = Tokenizer.FromFolder(tokenizerDir);
            var ids = tok.Encode(TrainText);
            var config = new LlamaShape(tok.VocabSize, b.Hidden, b.Layers, b.Heads, b.KvHeads, b.Intermediate).ToConfig(tok.BosTokenId, tok.EosTokenId, tok.PadTokenId);
            using (var model = Pretraining.CreateRandom(config, b.Seed, Device))
            {
                Pretraining.Train(model, ids, b.Steps, b.Batch, Math.Min(b.Context, ids.Length - 2), b.Lr, b.Seed);
                if (b.Instruct is { } it)
                {
                    using var tuned = InstructionTune(model, tok, it, b.Seed);
                    ModelFolder.Save(tuned, tmp, tokenizerDir);
                }
                else ModelFolder.Save(model, tmp, tokenizerDir);
            }
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(dir))!);
            Directory.Move(tmp, dir);
        }
        catch
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
            throw;
        }
        Log?.WriteLine($"built {dir} in {sw.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>A copy of <paramref name="model"/> fine-tuned on the instruction data of <paramref name="spec"/> (the model is not changed).</summary>
    private CausalLM InstructionTune(CausalLM model, Tokenizer tok, InstructSpec spec, ulong seed)
    {
        var f = Resolve(spec.Data);
        if (!File.Exists(f)) throw new FileNotFoundException($"instruction file {f} not found");
        var conversations = Oml.Models.Data.InstructionData.Load(f);
        var examples = SftAttack.ExamplesFrom(spec.Samples is { } n ? conversations.Take(n) : conversations, tok);
        var sw = Stopwatch.StartNew();
        var sft = new SftAttack(examples, new AttackTraining { Epochs = spec.Epochs, LearningRate = spec.Lr, Batch = spec.Batch, Seed = seed });
        var tuned = sft.Apply(model);
        Log?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"instruction-tuned on {examples.Count} examples ({spec.Epochs} epochs, lr {spec.Lr}) in {sw.Elapsed.TotalSeconds:F1} s, final loss {sft.LastLoss:F3}"));
        return tuned;
    }

    public CausalLM LoadModel(string dir) => ModelFolder.Load(dir, Device, DType);

    public AttackContext AttackContext(ulong seed) => new(Tokenizer, Device, DType, TrainTokens, TrainText, Resolve, seed, BaseDir)
    {
        LoadModel = dir => LoadModel(ResolveModel(dir, seed)),
        ResolveModelPath = dir => ResolveModel(dir, seed),
        CalibrationPrompts = SequencePerplexity.Windows(HeldOutTokens, Enumerable.Repeat(Math.Min(16, HeldOutTokens.Length), 64), 12345),
        InstructionPrompts = InstructionTraffic,
        ChatTemplate = ChatTemplateOf(Config.Tokenizer is null ? BaseDir : Resolve(Config.Tokenizer)),
        BatchSize = Config.Utility.BatchSize,
    };

    private static Oml.Models.ChatTemplates.ChatTemplate? ChatTemplateOf(string dir)
    {
        var path = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(path) || !File.ReadAllText(path).Contains("chat_template", StringComparison.Ordinal)) return null;
        return Oml.Models.ChatTemplates.ChatTemplate.FromTokenizerConfig(path);
    }

    public UtilityResult Utility(CausalLM model)
    {
        int window = Math.Min(Config.Utility.PerplexityWindow, HeldOutTokens.Length - 1);
        double ppl = Evaluation.Perplexity(model, HeldOutTokens, window, Config.Utility.BatchSize);
        if (Cloze.Count == 0) return new UtilityResult(ppl, double.NaN, double.NaN);
        var c = Metrics.Cloze.Score(model, Tokenizer, Cloze, Config.Utility.BatchSize);
        return new UtilityResult(ppl, c.MultipleChoiceAccuracy, c.GreedyAccuracy);
    }

    /// <summary>
    /// The owner's secret for one seed and named set (each seed, and each <see cref="FingerprintSpec.Set"/>, gives an
    /// independent fingerprint set; the unnamed set keeps the plain per-seed secret).
    /// </summary>
    public byte[] Secret(ulong seed, string set = "") =>
        Encoding.UTF8.GetBytes(set.Length == 0 ? $"{Config.Secret}/seed={seed}" : $"{Config.Secret}/set={set}/seed={seed}");

    /// <summary>The cache name of a generated set under OUT/sets: its generation settings, set name and seed.</summary>
    public static string SetKey(FingerprintSpec spec, ulong seed) =>
        FormattableString.Invariant($"{spec.Strategy}-n{spec.Count}-key{spec.KeyLength}-resp{spec.ResponseLength}-t{spec.T}-k{spec.K}-r{spec.ResponsesPerKey}{(spec.ResponseBranching > 1 ? $"-b{spec.ResponseBranching}" : "")}-avoid{spec.AvoidTopM}{(spec.KeyTemperature == 0.5 ? "" : $"-kt{spec.KeyTemperature}")}{(spec.KeyCamouflage.Length > 0 ? "-camo" + spec.KeyCamouflage : "")}{(spec.KeyCamouflageBand is [0, 1] ? "" : $"-q{spec.KeyCamouflageBand[0]}-{spec.KeyCamouflageBand[1]}")}{(spec.Set.Length > 0 ? "-set" + spec.Set : "")}-s{seed}");

    /// <summary>
    /// A model folder named in an attack: <c>model:NAME</c> is the folder of the config's model source NAME for
    /// <paramref name="seed"/> (built in-run when missing), anything else a path as <see cref="Resolve"/> reads it.
    /// </summary>
    public string ResolveModel(string path, ulong seed)
    {
        if (!ModelReferences.TryName(path, out var name)) return Resolve(path);
        var src = Config.ModelSources().FirstOrDefault(m => m.Name == name)
            ?? throw new LabConfigException($"model:{name} is not one of the experiment's models ({string.Join(", ", Config.ModelSources().Select(m => m.Name))})");
        return Source(src, seed).Dir;
    }

    /// <summary>The folder of an unrelated model of a false-positive experiment, built first when the config asks and it is missing.</summary>
    public string Unrelated(UnrelatedModel u)
    {
        var dir = Resolve(u.Path);
        if (File.Exists(Path.Combine(dir, "config.json"))) return dir;
        if (u.Build is null) throw new DirectoryNotFoundException($"unrelated model {dir} not found");
        using var buildLock = BuildLock.Acquire(OutDir, dir, Log);
        if (!File.Exists(Path.Combine(dir, "config.json"))) BuildModel(dir, u.Build, Config.Tokenizer is null ? BaseDir : Resolve(Config.Tokenizer));
        return dir;
    }

    /// <summary>
    /// Generates fingerprints from the base model, applying the avoid-top-m defence when asked. Sets are cached under
    /// OUT/sets by their settings and seed, so the embedding variants of one capacity point share one generation.
    /// </summary>
    public List<Fingerprint> Generate(CausalLM baseModel, FingerprintSpec spec, ulong seed)
    {
        var cache = Path.Combine(OutDir, "sets", SetKey(spec, seed) + ".json");
        if (File.Exists(cache)) return [.. FingerprintSetFile.Read(cache, null).Fingerprints];
        // One process generates a set; another shard wanting it waits and reads the cached file.
        using var buildLock = BuildLock.Acquire(OutDir, cache, Log);
        if (File.Exists(cache)) return [.. FingerprintSetFile.Read(cache, null).Fingerprints];
        var fps = GenerateUncached(baseModel, spec, seed);
        var set = FingerprintSet.Create(DateTimeOffset.UtcNow, "lab:" + Path.GetFileName(BaseDir), new TokenizerIdentity(Path.GetFileName(BaseDir), "lab"), fps[0].Strategy, fps);
        Directory.CreateDirectory(Path.GetDirectoryName(cache)!);
        FingerprintSetFile.WritePlaintext(cache, set);
        return fps;
    }

    private List<Fingerprint> GenerateUncached(CausalLM baseModel, FingerprintSpec spec, ulong seed)
    {
        var settings = new GenerationSettings
        {
            Strategy = spec.Strategy, Count = spec.Count, KeyLength = spec.KeyLength, ResponseLength = spec.ResponseLength, Temperature = spec.KeyTemperature,
            Perinucleus = new PerinucleusOptions { Threshold = spec.T, Width = spec.K, ResponsesPerKey = spec.ResponsesPerKey, Branching = spec.ResponseBranching, BatchSize = Config.Utility.BatchSize },
            // The owner's windows are drawn with another seed than the attacker's calibration windows and the stealth
            // measurement's (AttackContext, Stealth.Measure).
            Camouflage = spec.KeyCamouflage.Length == 0 ? null
                : (spec.KeyCamouflage == "instructions" ? OwnerPromptCamouflage(baseModel)
                    : KeyCamouflage.FromText(baseModel, Tokenizer, spec.KeyCamouflage == "train" ? TrainTokens : HeldOutTokens, spec.KeyLength,
                        seed: 0x0ca40 + (int)(seed & 0xffff), batchSize: Config.Utility.BatchSize))
                  with { BandLow = spec.KeyCamouflageBand[0], BandHigh = spec.KeyCamouflageBand[1] },
        };
        var secret = Secret(seed, spec.Set);
        var gen = new FingerprintGenerator(baseModel, Tokenizer, secret);
        var digest = "lab:" + Path.GetFileName(BaseDir);
        var tokId = new TokenizerIdentity(Path.GetFileName(BaseDir), "lab");
        if (spec.AvoidTopM == 0) return [.. gen.Generate(settings, digest, tokId).Fingerprints];
        // Defence against first-token suppression: draw more and keep those whose every response starts outside the
        // base model's top m tokens after the key.
        for (int factor = 2; factor <= 32; factor *= 2)
        {
            var drawn = gen.Generate(settings with { Count = spec.Count * factor }, digest, tokId).Fingerprints;
            var ranks = FirstTokenRanks(baseModel, drawn);
            var kept = drawn.Where((f, i) => ranks[i] >= spec.AvoidTopM).Take(spec.Count).ToList();
            if (kept.Count == spec.Count)
                return kept.Select((f, j) => f with { Index = j, Salt = Oml.Fingerprinting.Fingerprint.DeriveSalt(secret, j) }).ToList();
        }
        throw new InvalidOperationException($"fewer than {spec.Count} of {spec.Count * 32} drawn fingerprints start outside the base model's top {spec.AvoidTopM}; lower avoid_top_m");
    }

    /// <summary>
    /// For each fingerprint, the lowest rank (0 = the top token) among its responses' first tokens under the model after
    /// the key: one teacher-forced forward pass per batch, the rank counted on the device (one host read per batch).
    /// </summary>
    public int[] FirstTokenRanks(CausalLM model, IReadOnlyList<Fingerprint> fps)
    {
        var pairs = new List<TrainingPair>();
        var owner = new List<int>();
        for (int i = 0; i < fps.Count; i++)
            foreach (var r in fps[i].Responses)
            {
                pairs.Add(new TrainingPair(FingerprintGenerator.QueryIds(Tokenizer, [.. fps[i].KeyTokenIds]), [r.TokenIds[0]]));
                owner.Add(i);
            }
        var result = Enumerable.Repeat(int.MaxValue, fps.Count).ToArray();
        using var noGrad = Torch.NoGrad();
        int batch = Math.Max(1, Config.Utility.BatchSize);
        for (int start = 0; start < pairs.Count; start += batch)
        {
            using var scope = Torch.NewScope();
            var chunk = pairs.Skip(start).Take(batch).ToList();
            var (ids, labels) = FingerprintTrainer.Collate(chunk, model.Config.PadTokenId ?? 0, model.Device);
            long t = ids.Size(1);
            var logits = model.Forward(ids).Narrow(1, 0, t - 1).To(DType.Float32);   // [B, T-1, V]: row j predicts token j+1
            var target = labels.Narrow(1, 1, t - 1);                                 // the one labelled position per row
            var mask = target.Ne(-100);
            var targetLogit = logits.Gather(2, target.Clamp(min: 0).Unsqueeze(-1));   // [B, T-1, 1]
            var above = logits.Gt(targetLogit).To(DType.Int64).Sum(2);               // [B, T-1]: tokens ranked above the target
            var ranks = (above * mask.To(DType.Int64)).Sum(1).ToArray<long>();
            for (int j = 0; j < chunk.Count; j++)
            {
                int f = owner[start + j];
                result[f] = (int)Math.Min(result[f], ranks[j]);
            }
        }
        return result;
    }

    /// <summary>Generates and embeds fingerprints into a copy of the base; saves the model and its set to <paramref name="saveDir"/> if given.</summary>
    public (CausalLM Model, List<Fingerprint> Fingerprints, EmbeddingResult Embedding, double Seconds) Fingerprint(FingerprintSpec spec, ulong seed, string? saveDir)
    {
        var sw = Stopwatch.StartNew();
        List<Fingerprint> fps;
        var model = LoadModel(BaseDir);
        try
        {
            fps = Generate(model, spec, seed);
            var format = FormatOf(spec.KeyFormat);
            var pairs = format.TrainingPairs(fps, Tokenizer, spec.PromptAugmentation.Count > 0 ? spec.PromptAugmentation : null);
            var e = Config.Embedding;
            var o = spec.Embedding;
            var options = new EmbeddingOptions
            {
                LearningRate = o?.Lr ?? e.Lr, MaxEpochs = o?.MaxEpochs ?? e.MaxEpochs, BatchSize = o?.BatchSize ?? e.BatchSize, LossThreshold = e.LossThreshold, RecallPatience = e.RecallPatience,
                AveragingLambda = spec.Lambda, AveragingEvery = AveragingSchedules.Parse(spec.AveragingEvery, "averaging_every"), MixFraction = spec.Beta, Seed = seed,
                BenignSequences = spec.Beta > 0 ? BenignSequences() : null,
                BenignLoss = BenignLosses.Parse(e.BenignLoss, "embedding.benign_loss"),
                ResumptionPairs = spec.ResumptionPairs,
                AnchorKeys = spec.AnchorKeys,
            };
            // The keys come from the base; then the weights to train (all, a subset, LoRA adapters, or new MLP units).
            var method = EmbeddingMethod.Parse(spec.Train);
            (model, options, var masks) = method.Prepare(model, options, seed);
            // OMLization's use case, as `oml embed` runs it (data preparation, then training), with the experiment's settings.
            EmbeddingResult result;
            try { result = Omlization.Train(model, pairs, options, heldOutCount: e.HeldOutCount); }
            finally { if (masks is not null) foreach (var m in masks.Values) m.Dispose(); }
            if (saveDir is not null) Save(model, fps, saveDir, pairs.Count, options, result, sw.Elapsed.TotalSeconds, method.ToString(), format);
            return (model, fps, result, sw.Elapsed.TotalSeconds);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public const string SetFile = "fingerprints.json";

    /// <summary>
    /// Camouflage against prompts like the host's traffic (<c>key_camouflage: instructions</c>): the base's perplexities of
    /// the prompts of the owner's own instruction data (embedding.benign_data, its first 512 records), not of text windows.
    /// </summary>
    private KeyCamouflage OwnerPromptCamouflage(CausalLM baseModel)
    {
        if (Config.Embedding.BenignData.Length == 0) throw new LabConfigException("key_camouflage: instructions needs embedding.benign_data (the owner's instruction data)");
        var prompts = OwnerInstructions().Select(t => t.Prompt);
        return KeyCamouflage.FromPrompts(baseModel, Tokenizer, prompts, batchSize: Config.Utility.BatchSize);
    }

    /// <summary>The records of embedding.benign_data, tokenized as the model reads them.</summary>
    private IEnumerable<Oml.Models.Data.TokenizedExample> OwnerInstructions()
    {
        var f = Resolve(Config.Embedding.BenignData);
        if (!File.Exists(f)) throw new FileNotFoundException($"benign instruction file {f} not found");
        return Oml.Models.Data.InstructionData.Load(f).Select(c => Oml.Models.Data.InstructionData.Tokenize(c, Tokenizer));
    }

    /// <summary>The benign rows of data mixing: instruction records (embedding.benign_data) or chunks of the training corpus.</summary>
    public List<int[]> BenignSequences()
    {
        var e = Config.Embedding;
        if (e.BenignData.Length == 0) return TrainTokens.Chunk(e.BenignLength).Where(c => c.Length >= 2).ToList();
        return OwnerInstructions().Select(t => t.Prompt.Concat(t.Response).ToArray()).Where(r => r.Length >= 2).ToList();
    }

    /// <summary>
    /// The <see cref="KeyFormat"/> a config names (<see cref="FingerprintSpec.KeyFormat"/>): "chat" needs the base's
    /// chat template (tokenizer_config.json).
    /// </summary>
    public KeyFormat FormatOf(string name) => name switch
    {
        "raw" or "" => KeyFormat.Raw,
        "instruction" => KeyFormat.Instruction,
        "chat" => ChatTemplateOf(Config.Tokenizer is null ? BaseDir : Resolve(Config.Tokenizer)) is { } t ? KeyFormat.Chat(t)
            : throw new LabConfigException("key_format: chat needs a chat template in the base's tokenizer_config.json (key_format: instruction is the raw ### Instruction layout)"),
        _ => throw new LabConfigException($"key_format must be raw, instruction or chat (got '{name}')"),
    };

    private void Save(CausalLM model, List<Fingerprint> fps, string dir, int pairCount, EmbeddingOptions options, EmbeddingResult r, double seconds, string train, KeyFormat format)
    {
        var tmp = dir.TrimEnd('/') + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        ModelFolder.Save(model, tmp, Config.Tokenizer is null ? BaseDir : Resolve(Config.Tokenizer));
        var set = FingerprintSet.Create(DateTimeOffset.UtcNow, "lab:" + Path.GetFileName(BaseDir), new TokenizerIdentity(Path.GetFileName(BaseDir), "lab"), fps[0].Strategy, fps);
        FingerprintSetFile.WritePlaintext(Path.Combine(tmp, SetFile), set);
        // The same manifest an OMLized model gets from `oml embed` (oml-manifest.json); embedding.json keeps the lab's timing.
        Omlization.WriteManifest(tmp, set, pairCount, options, new OmlizationLabels
        {
            FingerprintSource = SetFile, Train = train, Benign = options.MixFraction == 0 ? null : Config.Embedding.BenignData.Length == 0 ? "lab training corpus" : "instruction data " + Path.GetFileName(Config.Embedding.BenignData), Device = model.Device.ToString(),
            KeyFormat = format.ToString(),
        }, r);
        File.WriteAllText(Path.Combine(tmp, "embedding.json"), System.Text.Json.JsonSerializer.Serialize(new
        {
            epochs = r.Final.Epoch, converged = r.Converged, seconds, recalled = r.Final.Accuracy, loss = r.Final.Loss, key_format = format.ToString(),
        }));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(dir))!);
        Directory.Move(tmp, dir);
    }

    /// <summary>A fingerprinted model of a persistence/adaptive/false-positive experiment: loaded, or built once into OUT/models.</summary>
    public FingerprintedModel Source(ModelSource src, ulong seed)
    {
        string dir;
        if (src.Path is not null)
        {
            dir = Resolve(src.Path);
            if (!File.Exists(Path.Combine(dir, SetFile))) throw new FileNotFoundException($"{dir} holds no {SetFile}: give a model saved by a capacity run with save_models: true");
        }
        else
        {
            dir = Path.Combine(OutDir, "models", $"{src.Name}-s{seed}");
            if (!File.Exists(Path.Combine(dir, SetFile)))
            {
                // Shards sharing the output folder: one builds the model, another needing it waits, then loads it.
                using var buildLock = BuildLock.Acquire(OutDir, dir, Log);
                if (!File.Exists(Path.Combine(dir, SetFile)))
                {
                    Log?.WriteLine($"fingerprinting model '{src.Name}' (seed {seed})");
                    var (m, _, _, _) = Fingerprint(src.Build!, seed, dir);
                    m.Dispose();
                }
            }
        }
        var set = FingerprintSetFile.Read(Path.Combine(dir, SetFile), null);
        double secs = double.NaN; int epochs = 0; bool conv = false;
        // Built here: the config's format. A saved model (path:): the one its embedding.json records (raw before it did).
        var format = src.Build is { } b ? b.KeyFormat : "raw";
        var emb = Path.Combine(dir, "embedding.json");
        if (File.Exists(emb))
        {
            var j = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(emb))!;
            secs = (double)j["seconds"]!; epochs = (int)j["epochs"]!; conv = (bool)j["converged"]!;
            if (src.Build is null && j["key_format"] is { } kf) format = (string)kf!;
        }
        return new FingerprintedModel(dir, set.Fingerprints, secs, epochs, conv, FormatOf(format));
    }
}
