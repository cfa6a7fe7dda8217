using System.Globalization;
using Oml.Fingerprinting.Generation;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Oml.Lab.Experiments;

/// <summary>A config file that cannot be used, with the reason (and the line where YAML knows it).</summary>
public sealed class LabConfigException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The experiment kinds.</summary>
public static class ExperimentKinds
{
    public const string Capacity = "capacity";
    public const string Persistence = "persistence";
    public const string FalsePositives = "false-positives";
    public const string Adaptive = "adaptive";
    public static readonly string[] All = [Capacity, Persistence, FalsePositives, Adaptive];
}

/// <summary>
/// An experiment config (YAML, snake_case keys). Relative paths are relative to the config file's folder.
/// See docs/lab.md ("Config reference") for every field.
/// </summary>
public sealed class LabConfig
{
    public int Version { get; set; } = LabInfo.ConfigFormatVersion;
    public string Name { get; set; } = "";
    public string Kind { get; set; } = "";
    /// <summary>The reference base model folder (built there first when <see cref="BuildBase"/> is given and it is missing).</summary>
    public string BaseModel { get; set; } = "";
    /// <summary>Train a small tokenizer and model from the corpus when <see cref="BaseModel"/> does not exist (smoke runs).</summary>
    public BuildSpec? BuildBase { get; set; }
    /// <summary>Tokenizer folder; defaults to the base model folder.</summary>
    public string? Tokenizer { get; set; }
    public List<string> Corpus { get; set; } = [];
    /// <summary>Held-out text files; when empty, the last <see cref="HeldoutFraction"/> of the corpus is held out.</summary>
    public List<string> Heldout { get; set; } = [];
    public double HeldoutFraction { get; set; } = 0.1;
    /// <summary>Read at most this many characters of corpus, and of held-out text (0: all).</summary>
    public int MaxCorpusChars { get; set; }
    public string Device { get; set; } = "cpu";
    public string Dtype { get; set; } = "float32";
    public List<ulong> Seeds { get; set; } = [1];
    /// <summary>The owner's secret the fingerprints are derived from (at least 16 bytes).</summary>
    public string Secret { get; set; } = "oml lab owner secret (not for production)";
    /// <summary>Default output folder (the command's --out overrides it).</summary>
    public string? Output { get; set; }
    public UtilitySpec Utility { get; set; } = new();
    public EmbeddingSpec Embedding { get; set; } = new();
    /// <summary>How hits are counted besides the exact rule (docs/verification.md).</summary>
    public VerificationSpec Verification { get; set; } = new();
    /// <summary>Key and response settings of the capacity experiment (strategy and count come from its lists).</summary>
    public FingerprintSpec Fingerprints { get; set; } = new();
    public CapacitySpec? Capacity { get; set; }
    public PersistenceSpec? Persistence { get; set; }
    public FalsePositiveSpec? FalsePositives { get; set; }
    public AdaptiveSpec? Adaptive { get; set; }

    /// <summary>The config file's folder: relative paths resolve against it.</summary>
    [YamlIgnore] public string Directory { get; set; } = ".";
    /// <summary>The config file's full path (null when the config was parsed from text).</summary>
    [YamlIgnore] public string? FilePath { get; set; }
    /// <summary>The config text as read (echoed in reports).</summary>
    [YamlIgnore] public string Text { get; set; } = "";

    public string Resolve(string path) => Path.GetFullPath(Path.IsPathRooted(path) ? path : Path.Combine(Directory, path));

    /// <summary>The experiment's fingerprinted model sources (persistence models, adaptive defence variants, false-positive sets).</summary>
    public List<ModelSource> ModelSources() => Kind switch
    {
        ExperimentKinds.Persistence => Persistence?.Models ?? [],
        ExperimentKinds.Adaptive => Adaptive?.ModelSources() ?? [],
        ExperimentKinds.FalsePositives => FalsePositives?.Sets ?? [],
        _ => [],
    };

    public static LabConfig Load(string path)
    {
        if (!File.Exists(path)) throw new LabConfigException($"{path}: no such config file");
        string text;
        try { text = Oml.Models.IO.InputFile.ReadText(path, 4 << 20, "lab config"); }
        catch (InvalidDataException e) { throw new LabConfigException(e.Message, e); }
        var config = Parse(text, path);
        config.FilePath = Path.GetFullPath(path);
        config.Directory = Path.GetDirectoryName(config.FilePath)!;
        return config;
    }

    /// <summary>Parses and validates config text; <paramref name="source"/> names it in errors.</summary>
    public static LabConfig Parse(string yaml, string source = "config") => Parse(yaml, source, validate: true);

    /// <summary>Parses config text; without <paramref name="validate"/> only the YAML's shape is checked (reports of older runs).</summary>
    public static LabConfig Parse(string yaml, string source, bool validate)
    {
        var d = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        LabConfig? c;
        try { c = d.Deserialize<LabConfig>(yaml); }
        catch (YamlException e)
        {
            var inner = e.InnerException?.Message;
            var msg = e.Message.Contains("not found on type", StringComparison.Ordinal) ? $"unknown field: {e.Message[(e.Message.IndexOf("Property", StringComparison.Ordinal) is var i and >= 0 ? i : 0)..]}" : e.Message;
            throw new LabConfigException($"{source}: line {e.Start.Line}, column {e.Start.Column}: {msg}{(inner is null || msg.Contains(inner, StringComparison.Ordinal) ? "" : $" ({inner})")}", e);
        }
        // YamlDotNet's scanner throws InvalidOperationException on some inputs cut off mid-construct (e.g. "a: {" at the end).
        catch (InvalidOperationException e)
        {
            throw new LabConfigException($"{source}: line {yaml.TrimEnd().Count(ch => ch == '\n') + 1}: not valid YAML (the text ends inside an unclosed construct: {e.Message})", e);
        }
        if (c is null) throw new LabConfigException($"{source}: the config is empty");
        c.Text = yaml;
        if (validate) c.Validate(source);
        return c;
    }

    private void Validate(string source)
    {
        void Fail(string msg) => throw new LabConfigException($"{source}: {msg}");
        if (Version != LabInfo.ConfigFormatVersion) Fail($"version {Version} is not supported (this lab reads version {LabInfo.ConfigFormatVersion})");
        if (string.IsNullOrWhiteSpace(Name)) Fail("'name' is required");
        if (Name.Any(ch => !(char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.'))) Fail($"name '{Name}' may hold only letters, digits, '-', '_' and '.'");
        if (!ExperimentKinds.All.Contains(Kind)) Fail($"'kind' must be one of {string.Join(", ", ExperimentKinds.All)} (got '{Kind}')");
        if (string.IsNullOrWhiteSpace(BaseModel)) Fail("'base_model' is required");
        if (Corpus.Count == 0) Fail("'corpus' needs at least one text file (held-out utility and benign data come from it)");
        if (!(HeldoutFraction > 0 && HeldoutFraction < 1)) Fail("'heldout_fraction' must be in (0, 1)");
        if (Seeds.Count == 0) Fail("'seeds' needs at least one seed");
        if (Seeds.Distinct().Count() != Seeds.Count) Fail("'seeds' repeats a seed");
        if (System.Text.Encoding.UTF8.GetByteCount(Secret) < 16) Fail("'secret' must be at least 16 bytes");
        try { Oml.Engine.Device.Parse(Device); } catch (ArgumentException e) { Fail($"'device': {e.Message}"); }
        try { Oml.Engine.DTypeExtensions.Parse(Dtype); } catch (ArgumentException e) { Fail($"'dtype': {e.Message}"); }
        BuildBase?.Validate("build_base", Fail);
        Utility.Validate(Fail);
        Embedding.Validate(Fail);
        Verification.Validate(Fail);
        Fingerprints.Validate("fingerprints", Fail);
        var section = Kind switch
        {
            ExperimentKinds.Capacity => (object?)Capacity,
            ExperimentKinds.Persistence => Persistence,
            ExperimentKinds.FalsePositives => FalsePositives,
            _ => Adaptive,
        };
        string key = Kind.Replace('-', '_');
        if (section is null) Fail($"kind '{Kind}' needs a '{key}' section");
        foreach (var (k, s) in new (string, object?)[] { ("capacity", Capacity), ("persistence", Persistence), ("false_positives", FalsePositives), ("adaptive", Adaptive) })
            if (k != key && s is not null) Fail($"a '{k}' section does not belong in a '{Kind}' experiment");
        Capacity?.Validate(Fail);
        Persistence?.Validate(Fail);
        FalsePositives?.Validate(Fail);
        Adaptive?.Validate(Fail);
    }
}

/// <summary>A small Llama trained from the corpus (the tokenizer too, when the folder has none).</summary>
public sealed class BuildSpec
{
    public int Vocab { get; set; } = 512;
    public int Hidden { get; set; } = 64;
    public int Layers { get; set; } = 2;
    public int Heads { get; set; } = 4;
    public int KvHeads { get; set; } = 2;
    public int Intermediate { get; set; } = 176;
    public int Steps { get; set; } = 100;
    public int Batch { get; set; } = 16;
    public int Context { get; set; } = 64;
    public double Lr { get; set; } = 3e-3;
    public ulong Seed { get; set; } = 1;
    /// <summary>Instruction tuning after pretraining (null: a plain language model).</summary>
    public InstructSpec? Instruct { get; set; }

    public void Validate(string where, Action<string> fail)
    {
        Instruct?.Validate($"{where}.instruct", fail);
        if (Vocab < 260) fail($"{where}.vocab must be at least 260 (the 256 bytes and special tokens)");
        if (Hidden < 8 || Layers < 1 || Heads < 1 || KvHeads < 1 || Intermediate < 1) fail($"{where}: the model shape must be positive (hidden ≥ 8)");
        if (Hidden % Heads != 0 || Heads % KvHeads != 0) fail($"{where}: hidden must divide by heads, and heads by kv_heads");
        if (Steps < 1 || Batch < 1 || Context < 2) fail($"{where}: steps, batch ≥ 1 and context ≥ 2");
        if (Lr <= 0) fail($"{where}.lr must be positive");
    }
}

/// <summary>
/// Supervised instruction tuning of a built model (the loss on response tokens only, as the <c>sft(...)</c> attack
/// trains): a base that answers instructions, so that whole-answer task accuracy measures what a host's honest users
/// lose, instead of sitting at the floor of a plain language model.
/// </summary>
public sealed class InstructSpec
{
    /// <summary>Instruction data (Alpaca, ShareGPT or messages), resolved like the other paths of the config.</summary>
    public string Data { get; set; } = "";
    public double Epochs { get; set; } = 2;
    public double Lr { get; set; } = 1e-3;
    public int Batch { get; set; } = 16;
    /// <summary>Use only the first N records (null: all).</summary>
    public int? Samples { get; set; }

    public void Validate(string where, Action<string> fail)
    {
        if (string.IsNullOrWhiteSpace(Data)) fail($"{where}.data must name instruction data");
        if (!(Epochs > 0) || double.IsInfinity(Epochs)) fail($"{where}.epochs must be positive");
        if (!(Lr > 0) || double.IsInfinity(Lr)) fail($"{where}.lr must be positive");
        if (Batch < 1) fail($"{where}.batch must be at least 1");
        if (Samples is < 1) fail($"{where}.samples must be at least 1");
    }
}

/// <summary>
/// Match rules counted in the cells of persistence and adaptive experiments. The exact rule (fsr) always; with
/// <see cref="PartialMinTokens"/> also the partial rule (fsr_partial: at least m tokens of a response after a deviation
/// at the start of the answer, <c>oml verify --match partial --min-tokens m</c>), on the same answers, which are then
/// generated as long as the partial rule needs.
/// </summary>
public sealed class VerificationSpec
{
    public int? PartialMinTokens { get; set; }

    public void Validate(Action<string> fail)
    {
        if (PartialMinTokens is < 1) fail("verification.partial_min_tokens must be at least 1");
    }

    /// <summary>The partial rule, or null when not configured.</summary>
    public Oml.Fingerprinting.Verification.ResponseMatch? Partial =>
        PartialMinTokens is { } m ? Oml.Fingerprinting.Verification.ResponseMatch.Partial(m) : null;
}

public sealed class UtilitySpec
{
    /// <summary>Cloze items built from the held-out text (0 disables the suite).</summary>
    public int ClozeItems { get; set; } = 200;
    public int PerplexityWindow { get; set; } = 64;
    /// <summary>Held-out tokens the perplexity is measured over (0: all).</summary>
    public int PerplexityTokens { get; set; } = 32768;
    public bool Stealth { get; set; } = true;
    public int BatchSize { get; set; } = 64;
    /// <summary>Instruction data (Alpaca, ShareGPT or messages) whose first <see cref="InstructionItems"/> records score whole answers (empty: off).</summary>
    public string Instructions { get; set; } = "";
    public int InstructionItems { get; set; } = 100;
    /// <summary>Answer length limit (tokens) for the instruction task.</summary>
    public int AnswerTokens { get; set; } = 32;

    public void Validate(Action<string> fail)
    {
        if (InstructionItems < 1) fail("utility.instruction_items must be at least 1");
        if (AnswerTokens < 1) fail("utility.answer_tokens must be at least 1");
        if (ClozeItems < 0) fail("utility.cloze_items must be at least 0");
        if (PerplexityWindow < 1) fail("utility.perplexity_window must be at least 1");
        if (PerplexityTokens < 0) fail("utility.perplexity_tokens must be at least 0");
        if (BatchSize < 1) fail("utility.batch_size must be at least 1");
    }
}

public sealed class EmbeddingSpec
{
    public double Lr { get; set; } = 1e-3;
    public int MaxEpochs { get; set; } = 100;
    public int BatchSize { get; set; }
    public double LossThreshold { get; set; } = 0.05;
    public int? RecallPatience { get; set; } = 10;
    /// <summary>Tokens per benign sequence cut from the training corpus for data mixing.</summary>
    public int BenignLength { get; set; } = 64;
    /// <summary>
    /// Held-out sequences that OMLization prepares for early stopping and the choice of the final λ (the last tenth, at
    /// most this many, of the benign chunks, or the base's own samples without mixing). 0, the default, keeps the lab's
    /// experiments as they were run: no held-out data. OMLization's own default is OmlizationDefaults.HeldOutCount.
    /// </summary>
    public int HeldOutCount { get; set; }
    /// <summary>
    /// How benign rows are trained: "tokens" (cross-entropy on their tokens; the lab's runs so far) or "kl" (the KL from
    /// the base's distribution, <c>oml embed</c>'s default).
    /// </summary>
    public string BenignLoss { get; set; } = "tokens";
    /// <summary>
    /// Instruction data (Alpaca, ShareGPT or messages) whose records, prompt and answer as the model reads them, are the
    /// benign rows (empty: chunks of <see cref="BenignLength"/> tokens of the training corpus) — what the owner of a model
    /// that answers instructions mixes in to keep it answering.
    /// </summary>
    public string BenignData { get; set; } = "";

    public void Validate(Action<string> fail)
    {
        if (HeldOutCount < 0) fail("embedding.held_out_count must be at least 0");
        try { Oml.Fingerprinting.Embedding.BenignLosses.Parse(BenignLoss, "embedding.benign_loss"); }
        catch (ArgumentException e) { fail(e.Message); }
        if (Lr <= 0) fail("embedding.lr must be positive");
        if (MaxEpochs < 1) fail("embedding.max_epochs must be at least 1");
        if (BatchSize < 0) fail("embedding.batch_size must be at least 0");
        if (BenignLength < 2) fail("embedding.benign_length must be at least 2");
        if (RecallPatience is < 1) fail("embedding.recall_patience must be at least 1");
    }
}

/// <summary>How fingerprints are generated and which defence they carry.</summary>
public sealed class FingerprintSpec
{
    public string Strategy { get; set; } = Strategies.Perinucleus;
    public int Count { get; set; } = 32;
    public int KeyLength { get; set; } = 16;
    public int ResponseLength { get; set; } = 1;
    /// <summary>Perinucleus threshold t and width k.</summary>
    public double T { get; set; } = 0.8;
    public int K { get; set; } = 3;
    /// <summary>Defence: several acceptable responses per key (Perinucleus), all embedded; any one is a hit.</summary>
    public int ResponsesPerKey { get; set; } = 1;
    /// <summary>Defence: response trees (<see cref="PerinucleusOptions.Branching"/>, <c>oml fingerprints generate --response-branching</c>); 1: off.</summary>
    public int ResponseBranching { get; set; } = 1;
    /// <summary>Defence: keep only fingerprints whose first response token is outside the base model's top m after the key (0: off).</summary>
    public int AvoidTopM { get; set; }
    /// <summary>Sampling temperature of model-sampled keys: 0.5, the generator's default until 2026-12-05, kept here so that the committed configs reproduce (`oml fingerprints generate` now defaults to 1, the model's own distribution: camouflage against a perplexity filter).</summary>
    public double KeyTemperature { get; set; } = 0.5;
    /// <summary>
    /// Defence: keys whose perplexity follows ordinary text's (<see cref="Oml.Fingerprinting.Generation.KeyCamouflage"/>,
    /// <c>oml fingerprints generate --camouflage</c>), with the text named: "heldout" (the lab's held-out text, the
    /// distribution the attacker's filter is calibrated on: text the model has not seen), "train" (the base's own
    /// training text) or "instructions" (whole prompts of the owner's instruction data, embedding.benign_data: for a
    /// model that answers instructions, whose host sees prompts, not text); "" (the default): keys sampled at
    /// <see cref="KeyTemperature"/>.
    /// </summary>
    public string KeyCamouflage { get; set; } = "";
    /// <summary>With <see cref="KeyCamouflage"/>: the quantile band [low, high] of the text's perplexities the keys aim at (<c>--camouflage-band</c>; default the whole distribution).</summary>
    public List<double> KeyCamouflageBand { get; set; } = [0, 1];
    /// <summary>Prompt augmentation: system prompts every key is also trained behind.</summary>
    public List<string> PromptAugmentation { get; set; } = [];
    /// <summary>Defence: resumption pairs per response (<c>oml embed --resumption-pairs</c>; needs response_length ≥ 2; 0: off).</summary>
    public int ResumptionPairs { get; set; }
    /// <summary>Defence: train the keys' own tokens as benign rows (<c>oml embed --anchor-keys</c>; needs beta &gt; 0).</summary>
    public bool AnchorKeys { get; set; }
    /// <summary>
    /// How each key reaches the model, in embedding and in every query (<see cref="Oml.Fingerprinting.Embedding.KeyFormat"/>):
    /// "raw" (the bare key, the default), "instruction" (the key as the instruction of the raw "### Instruction /
    /// ### Response" layout, as an instruction-tuned host without a chat template serves its users) or "chat" (the
    /// base's chat template, <c>oml embed --chat-template</c>).
    /// </summary>
    public string KeyFormat { get; set; } = "raw";
    /// <summary>Embedding variant: model averaging λ and data mixing β.</summary>
    public double Lambda { get; set; }
    public double Beta { get; set; }
    /// <summary>When the averaging of <see cref="Lambda"/> is applied: "step" (after every optimizer step) or "epoch".</summary>
    public string AveragingEvery { get; set; } = "step";
    /// <summary>Optional overrides of the config's <c>embedding</c> settings for this model.</summary>
    public EmbeddingOverrides? Embedding { get; set; }
    /// <summary>
    /// Which weights embedding trains, as <c>oml embed</c> records it (see <see cref="EmbeddingMethod"/>): "all" (full
    /// fine-tuning, the default), a subset (mlp, attention, embeddings, layers:0,1), "lora:R" (LoRA adapters of rank R
    /// on every attention and MLP weight, α = 2R, merged on save) or "expand:N" (parameter expansion: N new hidden units
    /// per MLP, trained alone, every original weight kept).
    /// </summary>
    public string Train { get; set; } = "all";
    /// <summary>
    /// Names an independent fingerprint set: mixed into the secret (with the seed), so models built with the same
    /// settings and different <c>set</c> carry different fingerprints. Empty (the default) keeps the plain secret.
    /// </summary>
    public string Set { get; set; } = "";

    public FingerprintSpec Clone() => (FingerprintSpec)MemberwiseClone();

    public void Validate(string where, Action<string> fail)
    {
        if (!Strategies.All.Contains(Strategy) || Strategy == Strategies.Custom) fail($"{where}.strategy must be perinucleus, english or random-word (got '{Strategy}')");
        if (Count < 1) fail($"{where}.count must be at least 1");
        if (KeyLength < 1 || ResponseLength < 1) fail($"{where}: key_length and response_length must be at least 1");
        if (!(T > 0 && T < 1) || K < 1) fail($"{where}: t must be in (0, 1) and k at least 1");
        if (ResponsesPerKey < 1) fail($"{where}.responses_per_key must be at least 1");
        if (ResponsesPerKey > 1 && Strategy != Strategies.Perinucleus) fail($"{where}: several responses per key need the perinucleus strategy");
        if (ResponseBranching != 1)
        {
            if (Strategy != Strategies.Perinucleus) fail($"{where}: response_branching needs the perinucleus strategy");
            try { PerinucleusSampler.ValidateBranching(new PerinucleusOptions { ResponsesPerKey = ResponsesPerKey, ResponseLength = ResponseLength, Branching = ResponseBranching }); }
            catch (ArgumentException e) { fail($"{where}.response_branching: {e.Message}"); }
        }
        if (ResponsesPerKey > K) fail($"{where}: responses_per_key ({ResponsesPerKey}) must be at most the Perinucleus width k ({K}): the responses are drawn from the k tokens after the nucleus");
        if (AvoidTopM < 0) fail($"{where}.avoid_top_m must be at least 0");
        if (ResumptionPairs < 0) fail($"{where}.resumption_pairs must be at least 0");
        if (KeyFormat is not ("raw" or "instruction" or "chat")) fail($"{where}.key_format must be raw, instruction or chat (got '{KeyFormat}')");
        if (AnchorKeys && Beta <= 0) fail($"{where}.anchor_keys trains the keys as benign rows: it needs beta > 0");
        if (ResumptionPairs > 0 && ResponseLength < 2) fail($"{where}: resumption_pairs needs response_length of at least 2 (a one-token response has nothing to resume)");
        if (!(KeyTemperature > 0 && KeyTemperature <= 10)) fail($"{where}.key_temperature must be in (0, 10]");
        if (KeyCamouflage is not ("" or "heldout" or "train" or "instructions")) fail($"{where}.key_camouflage must be heldout, train or instructions (got '{KeyCamouflage}')");
        if (KeyCamouflage.Length > 0 && Strategy == Strategies.RandomWord) fail($"{where}: key_camouflage needs model-sampled keys (perinucleus or english)");
        if (KeyCamouflageBand is not [var lo, var hi] || !(lo >= 0 && lo < hi && hi <= 1))
            fail($"{where}.key_camouflage_band must be [low, high] with 0 <= low < high <= 1");
        else if (KeyCamouflage.Length == 0 && (lo > 0 || hi < 1)) fail($"{where}.key_camouflage_band needs key_camouflage");
        if (Lambda is < 0 or >= 1) fail($"{where}.lambda must be in [0, 1)");
        if (Beta is < 0 or >= 1) fail($"{where}.beta must be in [0, 1)");
        ValidateAveragingEvery(AveragingEvery, $"{where}.averaging_every", fail);
        Embedding?.Validate($"{where}.embedding", fail);
        try { EmbeddingMethod.Parse(Train); }
        catch (ArgumentException e) { fail($"{where}.train: {e.Message}"); }
        if (Set.Any(ch => !(char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_'))) fail($"{where}.set '{Set}' may hold only letters, digits, '-' and '_'");
    }

    /// <summary>Fails unless <paramref name="value"/> names an averaging schedule (step, epoch or final).</summary>
    internal static void ValidateAveragingEvery(string? value, string what, Action<string> fail)
    {
        try { Oml.Fingerprinting.Embedding.AveragingSchedules.Parse(value, what); }
        catch (ArgumentException e) { fail(e.Message); }
    }
}

/// <summary>An embedding variant of the capacity experiment.</summary>
public sealed class VariantSpec
{
    public string Name { get; set; } = "";
    public double Lambda { get; set; }
    public double Beta { get; set; }
    /// <summary>When the averaging of <see cref="Lambda"/> is applied: "step" (the default) or "epoch".</summary>
    public string AveragingEvery { get; set; } = "step";
    /// <summary>Optional overrides of the config's <c>embedding</c> settings for this variant (batch_size 0: full batch).</summary>
    public EmbeddingOverrides? Embedding { get; set; }
}

/// <summary>Per-variant or per-model changes to the experiment's <see cref="EmbeddingSpec"/>; unset fields keep its values.</summary>
public sealed class EmbeddingOverrides
{
    public double? Lr { get; set; }
    public int? MaxEpochs { get; set; }
    /// <summary>Fingerprints per optimizer step; 0 puts every fingerprint in one batch (full-batch steps, as the reference code does).</summary>
    public int? BatchSize { get; set; }

    public void Validate(string where, Action<string> fail)
    {
        if (Lr is <= 0) fail($"{where}.lr must be positive");
        if (MaxEpochs is < 1) fail($"{where}.max_epochs must be at least 1");
        if (BatchSize is < 0) fail($"{where}.batch_size must be at least 0");
    }
}

public sealed class CapacitySpec
{
    public List<string> Strategies { get; set; } = [];
    public List<int> Counts { get; set; } = [];
    public List<VariantSpec> Variants { get; set; } = [];
    /// <summary>Save each fingerprinted model (with its set) under OUT/models for later experiments.</summary>
    public bool SaveModels { get; set; }

    public void Validate(Action<string> fail)
    {
        if (Strategies.Count == 0) fail("capacity.strategies needs at least one strategy");
        foreach (var s in Strategies)
            if (s is not (Oml.Fingerprinting.Generation.Strategies.Perinucleus or Oml.Fingerprinting.Generation.Strategies.English or Oml.Fingerprinting.Generation.Strategies.RandomWord))
                fail($"capacity.strategies: unknown strategy '{s}' (perinucleus, english, random-word)");
        if (Counts.Count == 0 || Counts.Any(n => n < 1)) fail("capacity.counts needs positive fingerprint counts");
        if (Variants.Count == 0) fail("capacity.variants needs at least one variant (e.g. {name: plain})");
        foreach (var v in Variants)
        {
            if (string.IsNullOrWhiteSpace(v.Name)) fail("capacity.variants: every variant needs a name");
            if (v.Lambda is < 0 or >= 1 || v.Beta is < 0 or >= 1) fail($"capacity.variants '{v.Name}': lambda and beta must be in [0, 1)");
            FingerprintSpec.ValidateAveragingEvery(v.AveragingEvery, $"capacity.variants '{v.Name}'.averaging_every", fail);
            v.Embedding?.Validate($"capacity.variants '{v.Name}'.embedding", fail);
        }
        if (Variants.Select(v => v.Name).Distinct().Count() != Variants.Count) fail("capacity.variants: names must differ");
    }
}

/// <summary>A fingerprinted model: an existing folder with its set, or built in-run from the base.</summary>
public sealed class ModelSource
{
    public string Name { get; set; } = "";
    /// <summary>Folder of an existing fingerprinted model holding fingerprints.json (as capacity's save_models writes).</summary>
    public string? Path { get; set; }
    /// <summary>Fingerprint settings to build it in-run into OUT/models (complete on their own: unset fields take the defaults).</summary>
    public FingerprintSpec? Build { get; set; }
    /// <summary>
    /// False: the model is built and measured (its before cell) but not attacked: it is there for other attacks to
    /// refer to (model:NAME), e.g. the keys a blocking host learnt from earlier claims.
    /// </summary>
    public bool Attacked { get; set; } = true;

    public void Validate(string where, Action<string> fail)
    {
        if (string.IsNullOrWhiteSpace(Name)) fail($"{where}: a model needs a name");
        if ((Path is null) == (Build is null)) fail($"{where} '{Name}': give exactly one of 'path' (an existing fingerprinted model) or 'build'");
        Build?.Validate($"{where} '{Name}'.build", fail);
    }
}

/// <summary>
/// One attack: a weight attack ("name(key=value, ...)", see <see cref="LibraryAttacks"/>), a responder (a
/// <see cref="Oml.Lab.Attacks.ResponderSpec"/> line such as "sample:t=0.7,seed=1"), or a weight attack served through a responder.
/// </summary>
public sealed class AttackEntry
{
    public string? Weight { get; set; }
    public string? Responder { get; set; }
    /// <summary>System prompt the keys are asked behind (plain text before the key, or the chat template's system turn).</summary>
    public string? SystemPrompt { get; set; }
    /// <summary>The model sources this attack applies to (empty: every source).</summary>
    public List<string> Targets { get; set; } = [];

    /// <summary>The attack's spec text, for messages.</summary>
    public string Describe() => string.Join(" + ", new[] { Weight, Responder, SystemPrompt is null ? null : $"system_prompt \"{SystemPrompt}\"" }.Where(x => x is not null));

    public bool AppliesTo(string source) => Targets.Count == 0 || Targets.Contains(source);

    public void Validate(string where, Action<string> fail)
    {
        if (Weight is null && Responder is null && SystemPrompt is null) fail($"{where}: an attack needs 'weight', 'responder' or 'system_prompt'");
        try
        {
            if (Weight is not null) AttackSpec.Parse(Weight);
            if (Responder is not null) Oml.Lab.Attacks.ResponderSpec.Parse(Responder);
        }
        catch (Exception e) when (e is FormatException or ArgumentException) { fail($"{where}: {e.Message}"); }
    }
}

/// <summary>An attack template whose "{x}" takes each value in turn.</summary>
public sealed class SweepSpec
{
    public string Name { get; set; } = "";
    public string? Weight { get; set; }
    public string? Responder { get; set; }
    public List<double> Values { get; set; } = [];
    /// <summary>The model sources this sweep applies to (empty: every source).</summary>
    public List<string> Targets { get; set; } = [];

    public void Validate(string where, Action<string> fail)
    {
        if (string.IsNullOrWhiteSpace(Name)) fail($"{where}: a sweep needs a name");
        if (Values.Count == 0) fail($"{where} '{Name}': no values");
        if (!((Weight ?? "") + (Responder ?? "")).Contains("{x}", StringComparison.Ordinal)) fail($"{where} '{Name}': the weight or responder spec must hold {{x}}");
        foreach (var (x, entry) in Expand()) entry.Validate($"{where} '{Name}' at {x.ToString(CultureInfo.InvariantCulture)}", fail);
    }

    public IEnumerable<(double X, AttackEntry Entry)> Expand() => Values.Select(x =>
    {
        var s = x.ToString("R", CultureInfo.InvariantCulture);
        return (x, new AttackEntry { Weight = Weight?.Replace("{x}", s, StringComparison.Ordinal), Responder = Responder?.Replace("{x}", s, StringComparison.Ordinal), Targets = Targets });
    });
}

public sealed class PersistenceSpec
{
    public List<ModelSource> Models { get; set; } = [];
    public List<AttackEntry> Attacks { get; set; } = [];
    public List<SweepSpec> Sweeps { get; set; } = [];

    public void Validate(Action<string> fail) => ValidateParts("persistence", Models, Attacks, Sweeps, fail);

    internal static void ValidateParts(string where, List<ModelSource> models, List<AttackEntry> attacks, List<SweepSpec> sweeps, Action<string> fail)
    {
        if (models.Count == 0) fail($"{where}.models needs at least one fingerprinted model");
        for (int i = 0; i < models.Count; i++) models[i].Validate($"{where}.models[{i}]", fail);
        if (models.Select(m => m.Name).Distinct().Count() != models.Count) fail($"{where}.models: names must differ");
        if (attacks.Count == 0 && sweeps.Count == 0) fail($"{where} needs 'attacks' or 'sweeps'");
        for (int i = 0; i < attacks.Count; i++) attacks[i].Validate($"{where}.attacks[{i}]", fail);
        for (int i = 0; i < sweeps.Count; i++) sweeps[i].Validate($"{where}.sweeps[{i}]", fail);
        var names = models.Select(m => m.Name).ToList();
        var entries = attacks.Select((a, i) => ($"{where}.attacks[{i}]", a))
            .Concat(sweeps.SelectMany((sw, i) => sw.Expand().Select(e => ($"{where}.sweeps[{i}] '{sw.Name}'", e.Entry))));
        foreach (var (at, a) in entries)
        {
            foreach (var t in a.Targets)
                if (!names.Contains(t)) fail($"{at} ('{a.Describe()}'): targets names '{t}', which is not one of the models ({string.Join(", ", names)})");
            CheckReferences(at, a.Describe(), ModelReferences.Of(a), names, fail);
        }
    }

    /// <summary>Fails when an attack refers (model:NAME) to a model source the config does not have.</summary>
    internal static void CheckReferences(string where, string attack, List<string> references, List<string> names, Action<string> fail)
    {
        foreach (var r in references)
            if (!names.Contains(r)) fail($"{where} ('{attack}') refers to model:{r}, which is not one of the models ({string.Join(", ", names)})");
    }
}

public sealed class UnrelatedModel
{
    public string Name { get; set; } = "";
    public string Path { get; set; } = "";
    /// <summary>Train it from the corpus when the folder does not exist (smoke runs), with the base tokenizer.</summary>
    public BuildSpec? Build { get; set; }
}

public sealed class FalsePositiveSpec
{
    /// <summary>Fingerprinted models whose sets are tested (positives).</summary>
    public List<ModelSource> Sets { get; set; } = [];
    public List<UnrelatedModel> Unrelated { get; set; } = [];
    /// <summary>Responder specs the models are queried through; "greedy" is the plain model.</summary>
    public List<string> Decoders { get; set; } = ["greedy"];
    /// <summary>Keys per simulated verification (the hit-count test's sample size), and how many random subsets per model.</summary>
    public int QueryKeys { get; set; } = 16;
    public int Draws { get; set; } = 200;
    public List<double> Alphas { get; set; } = [1e-3, 1e-6, 1e-9];
    public List<double> Fprs { get; set; } = [0.01, 0.05, 0.1];

    public void Validate(Action<string> fail)
    {
        if (Sets.Count == 0) fail("false_positives.sets needs at least one fingerprinted model");
        for (int i = 0; i < Sets.Count; i++) Sets[i].Validate($"false_positives.sets[{i}]", fail);
        if (Unrelated.Count == 0) fail("false_positives.unrelated needs at least one unrelated model");
        foreach (var u in Unrelated)
        {
            if (string.IsNullOrWhiteSpace(u.Name) || string.IsNullOrWhiteSpace(u.Path)) fail("false_positives.unrelated: every model needs a name and a path");
            u.Build?.Validate($"false_positives.unrelated '{u.Name}'.build", fail);
        }
        if (Sets.Select(s => s.Name).Concat(Unrelated.Select(u => u.Name)).Distinct().Count() != Sets.Count + Unrelated.Count) fail("false_positives: model names must differ");
        if (Decoders.Count == 0) fail("false_positives.decoders needs at least one decoder");
        foreach (var d in Decoders)
        {
            try { Oml.Lab.Attacks.ResponderSpec.Parse(d); } catch (ArgumentException e) { fail($"false_positives.decoders: {e.Message}"); }
            PersistenceSpec.CheckReferences("false_positives.decoders", d, ModelReferences.Of(Oml.Lab.Attacks.ResponderSpec.Parse(d)), Sets.Select(x => x.Name).ToList(), fail);
        }
        if (QueryKeys < 1 || Draws < 1) fail("false_positives: query_keys and draws must be at least 1");
        if (Alphas.Any(a => !(a > 0 && a < 1))) fail("false_positives.alphas must be in (0, 1)");
        if (Fprs.Any(a => !(a >= 0 && a <= 1))) fail("false_positives.fprs must be in [0, 1]");
    }
}

/// <summary>Adaptive attacks against one fingerprinted model built with each defence variant.</summary>
public sealed class AdaptiveSpec
{
    public FingerprintSpec Model { get; set; } = new();
    /// <summary>Defence variants: overrides of <see cref="Model"/> (name "none" is the undefended model).</summary>
    public List<DefenceSpec> Defences { get; set; } = [];
    public List<AttackEntry> Attacks { get; set; } = [];
    public List<SweepSpec> Sweeps { get; set; } = [];

    public void Validate(Action<string> fail)
    {
        Model.Validate("adaptive.model", fail);
        if (Defences.Count == 0) fail("adaptive.defences needs at least one variant (e.g. {name: none})");
        if (Defences.Select(d => d.Name).Distinct().Count() != Defences.Count) fail("adaptive.defences: names must differ");
        PersistenceSpec.ValidateParts("adaptive", ModelSources(), Attacks, Sweeps, fail);
    }

    public List<ModelSource> ModelSources() => Defences.Select(d =>
    {
        var f = Model.Clone();
        if (d.ResponsesPerKey is { } r) f.ResponsesPerKey = r;
        if (d.ResponseBranching is { } rb) f.ResponseBranching = rb;
        if (d.AvoidTopM is { } m) f.AvoidTopM = m;
        if (d.KeyTemperature is { } kt) f.KeyTemperature = kt;
        if (d.KeyCamouflage is { } kc) f.KeyCamouflage = kc;
        if (d.KeyCamouflageBand is { } kb) f.KeyCamouflageBand = kb;
        if (d.PromptAugmentation is { } p) f.PromptAugmentation = p;
        if (d.ResponseLength is { } rl) f.ResponseLength = rl;
        if (d.ResumptionPairs is { } rp) f.ResumptionPairs = rp;
        if (d.AnchorKeys is { } ak) f.AnchorKeys = ak;
        if (d.KeyFormat is { } kf) f.KeyFormat = kf;
        if (d.Set is { } set) f.Set = set;
        if (d.T is { } t) f.T = t;
        if (d.K is { } k) f.K = k;
        return new ModelSource { Name = d.Name, Build = f, Attacked = d.Attacked };
    }).ToList();
}

public sealed class DefenceSpec
{
    public string Name { get; set; } = "";
    public int? ResponsesPerKey { get; set; }
    /// <summary>Response trees (<see cref="FingerprintSpec.ResponseBranching"/>).</summary>
    public int? ResponseBranching { get; set; }
    public int? AvoidTopM { get; set; }
    public double? KeyTemperature { get; set; }
    /// <summary>Camouflaged keys (<see cref="FingerprintSpec.KeyCamouflage"/>): heldout or train.</summary>
    public string? KeyCamouflage { get; set; }
    /// <summary>The camouflage's quantile band (<see cref="FingerprintSpec.KeyCamouflageBand"/>).</summary>
    public List<double>? KeyCamouflageBand { get; set; }
    /// <summary>Perinucleus threshold t and width k (<see cref="FingerprintSpec.T"/>, <see cref="FingerprintSpec.K"/>): how far outside the base's nucleus the responses lie.</summary>
    public double? T { get; set; }
    public int? K { get; set; }
    public List<string>? PromptAugmentation { get; set; }
    public int? ResponseLength { get; set; }
    /// <summary>Resumption pairs per response (<see cref="FingerprintSpec.ResumptionPairs"/>).</summary>
    public int? ResumptionPairs { get; set; }
    /// <summary>Keys anchored during embedding (<see cref="FingerprintSpec.AnchorKeys"/>).</summary>
    public bool? AnchorKeys { get; set; }
    /// <summary>How keys reach the model (<see cref="FingerprintSpec.KeyFormat"/>): raw, instruction or chat.</summary>
    public string? KeyFormat { get; set; }
    /// <summary>An independent key set (<see cref="FingerprintSpec.Set"/>), e.g. the keys a blocking host learnt from earlier claims.</summary>
    public string? Set { get; set; }
    /// <summary>False: built for other attacks to refer to (model:NAME), not attacked itself (<see cref="ModelSource.Attacked"/>).</summary>
    public bool Attacked { get; set; } = true;
}
