using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Oml.Models.Training;

/// <summary>
/// A training recipe: the settings of <c>oml train</c> as a YAML mapping whose keys are the command's flags without
/// the dashes (<c>lr: 3e-4</c>, <c>kv-heads: 2</c>, <c>data: [a.txt, b.txt]</c>). Every field is optional here;
/// flags given on the command line override the recipe's values (<see cref="Over"/>). Unknown keys and values of the
/// wrong type or range are refused with the file, line and key named.
/// </summary>
public sealed record TrainingRecipe
{
    /// <summary>"pretrain" (next-token loss on every token of a packed stream) or "sft" (loss on responses only).</summary>
    public string? Mode { get; init; }
    public IReadOnlyList<string>? Data { get; init; }
    /// <summary>"i/n": train on the i-th (0-based) of n equal contiguous slices of the tokenized data.</summary>
    public string? DataSlice { get; init; }
    /// <summary>"random" windows or "epochs" of non-overlapping windows (pretraining).</summary>
    public string? Sampling { get; init; }
    public string? EvalData { get; init; }
    /// <summary>sft: render instruction data with the tokenizer folder's chat template (tokenizer_config.json).</summary>
    public bool? ChatTemplate { get; init; }
    public string? Tokenizer { get; init; }
    public string? Init { get; init; }
    public int? Hidden { get; init; }
    public int? Layers { get; init; }
    public int? Heads { get; init; }
    public int? KvHeads { get; init; }
    public int? Intermediate { get; init; }
    public int? Context { get; init; }
    public double? RopeTheta { get; init; }
    public bool? TieEmbeddings { get; init; }
    public long? Steps { get; init; }
    public double? Epochs { get; init; }
    public int? Batch { get; init; }
    public int? GradAccum { get; init; }
    public double? Lr { get; init; }
    public double? MinLr { get; init; }
    public long? Warmup { get; init; }
    public double? WeightDecay { get; init; }
    public bool? DecayEmbeddings { get; init; }
    public double? Beta1 { get; init; }
    public double? Beta2 { get; init; }
    public double? MaxGradNorm { get; init; }
    /// <summary>Which weights train: all, mlp, attention, embeddings, or layers:0,1.</summary>
    public string? Train { get; init; }
    public int? Lora { get; init; }
    public double? LoraAlpha { get; init; }
    public ulong? Seed { get; init; }
    public string? Device { get; init; }
    /// <summary>Weights during training: float32 (TF32 products on CUDA) or bfloat16 (with float32 master weights).</summary>
    public string? Dtype { get; init; }
    public string? MatmulPrecision { get; init; }
    public int? LogEvery { get; init; }
    public int? EvalEvery { get; init; }
    public int? EvalRows { get; init; }
    public string? CheckpointDir { get; init; }
    public int? CheckpointEvery { get; init; }
    public string? Out { get; init; }
    public string? Log { get; init; }
    public double? MaxShardMb { get; init; }
    /// <summary>dtype of the saved weights (default: the training dtype).</summary>
    public string? SaveDtype { get; init; }

    /// <summary>Fields set in <paramref name="overrides"/> replace this recipe's.</summary>
    public TrainingRecipe Over(TrainingRecipe overrides)
    {
        return new TrainingRecipe
        {
            Mode = overrides.Mode ?? Mode, Data = overrides.Data ?? Data, DataSlice = overrides.DataSlice ?? DataSlice,
            Sampling = overrides.Sampling ?? Sampling, EvalData = overrides.EvalData ?? EvalData, ChatTemplate = overrides.ChatTemplate ?? ChatTemplate, Tokenizer = overrides.Tokenizer ?? Tokenizer,
            Init = overrides.Init ?? Init, Hidden = overrides.Hidden ?? Hidden, Layers = overrides.Layers ?? Layers, Heads = overrides.Heads ?? Heads,
            KvHeads = overrides.KvHeads ?? KvHeads, Intermediate = overrides.Intermediate ?? Intermediate, Context = overrides.Context ?? Context,
            RopeTheta = overrides.RopeTheta ?? RopeTheta, TieEmbeddings = overrides.TieEmbeddings ?? TieEmbeddings, Steps = overrides.Steps ?? Steps,
            Epochs = overrides.Epochs ?? Epochs, Batch = overrides.Batch ?? Batch, GradAccum = overrides.GradAccum ?? GradAccum, Lr = overrides.Lr ?? Lr,
            MinLr = overrides.MinLr ?? MinLr, Warmup = overrides.Warmup ?? Warmup, WeightDecay = overrides.WeightDecay ?? WeightDecay,
            DecayEmbeddings = overrides.DecayEmbeddings ?? DecayEmbeddings, Beta1 = overrides.Beta1 ?? Beta1, Beta2 = overrides.Beta2 ?? Beta2,
            MaxGradNorm = overrides.MaxGradNorm ?? MaxGradNorm, Train = overrides.Train ?? Train, Lora = overrides.Lora ?? Lora,
            LoraAlpha = overrides.LoraAlpha ?? LoraAlpha, Seed = overrides.Seed ?? Seed, Device = overrides.Device ?? Device, Dtype = overrides.Dtype ?? Dtype,
            MatmulPrecision = overrides.MatmulPrecision ?? MatmulPrecision, LogEvery = overrides.LogEvery ?? LogEvery, EvalEvery = overrides.EvalEvery ?? EvalEvery,
            EvalRows = overrides.EvalRows ?? EvalRows, CheckpointDir = overrides.CheckpointDir ?? CheckpointDir,
            CheckpointEvery = overrides.CheckpointEvery ?? CheckpointEvery, Out = overrides.Out ?? Out, Log = overrides.Log ?? Log,
            MaxShardMb = overrides.MaxShardMb ?? MaxShardMb, SaveDtype = overrides.SaveDtype ?? SaveDtype,
        };
    }

    public static TrainingRecipe Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"recipe not found: {path}", path);
        return Parse(IO.InputFile.ReadText(path, 1 << 20, "recipe"), path);
    }

    private static int LastLine(string text) => text.TrimEnd().Count(c => c == '\n') + 1;

    /// <summary>Parses a recipe. Throws <see cref="InvalidDataException"/> naming the source, line and key of a bad entry.</summary>
    public static TrainingRecipe Parse(string yaml, string source = "recipe")
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException e) { throw new InvalidDataException($"{source}: line {e.Start.Line}: not valid YAML ({e.Message})"); }
        // YamlDotNet's scanner throws InvalidOperationException on some inputs cut off mid-construct (e.g. "lr: {" at the end).
        catch (InvalidOperationException e) { throw new InvalidDataException($"{source}: line {LastLine(yaml)}: not valid YAML (the text ends inside an unclosed construct: {e.Message})"); }
        if (stream.Documents.Count == 0) return new TrainingRecipe();
        if (stream.Documents.Count > 1) throw new InvalidDataException($"{source}: holds {stream.Documents.Count} YAML documents; a recipe is one");
        var root = stream.Documents[0].RootNode;
        if (root is YamlScalarNode { Value: null or "" }) return new TrainingRecipe();
        if (root is not YamlMappingNode map) throw new InvalidDataException($"{source}: line {root.Start.Line}: a recipe is a mapping of settings (key: value)");

        var r = new TrainingRecipe();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (k, v) in map.Children)
        {
            if (k is not YamlScalarNode { Value: { } key }) throw new InvalidDataException($"{source}: line {k.Start.Line}: keys must be plain names");
            string at = $"{source}: line {k.Start.Line}: '{key}'";
            if (!seen.Add(key)) throw new InvalidDataException($"{at} is given twice");
            string Str()
            {
                if (v is not YamlScalarNode { Value: { Length: > 0 } s }) throw new InvalidDataException($"{at} needs a value");
                return s;
            }
            long Long(long min)
            {
                var s = Str();
                if (!long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var x))
                    throw new InvalidDataException($"{at} must be an integer, not '{s}'");
                if (x < min) throw new InvalidDataException($"{at} must be at least {min}, not {x}");
                return x;
            }
            int Int(int min) => checked((int)Math.Min(Long(min), int.MaxValue));
            double Dbl(double min, double max = double.PositiveInfinity, bool exclusiveMin = false)
            {
                var s = Str();
                if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) || !double.IsFinite(x))
                    throw new InvalidDataException($"{at} must be a number, not '{s}'");
                if (x < min || (exclusiveMin && x == min) || x > max)
                    throw new InvalidDataException($"{at} must be {(exclusiveMin ? "above" : "at least")} {min.ToString(CultureInfo.InvariantCulture)}" +
                        $"{(double.IsPositiveInfinity(max) ? "" : $" and at most {max.ToString(CultureInfo.InvariantCulture)}")}, not {s}");
                return x;
            }
            bool Bool()
            {
                var s = Str();
                return s switch
                {
                    "true" or "True" or "yes" => true,
                    "false" or "False" or "no" => false,
                    _ => throw new InvalidDataException($"{at} must be true or false, not '{s}'"),
                };
            }
            string OneOf(params string[] allowed)
            {
                var s = Str();
                return allowed.Contains(s) ? s : throw new InvalidDataException($"{at} must be one of {string.Join(", ", allowed)}, not '{s}'");
            }
            IReadOnlyList<string> List()
            {
                if (v is YamlScalarNode) return [Str()];
                if (v is YamlSequenceNode seq && seq.Children.Count > 0 && seq.Children.All(c => c is YamlScalarNode { Value.Length: > 0 }))
                    return seq.Children.Select(c => ((YamlScalarNode)c).Value!).ToList();
                throw new InvalidDataException($"{at} must be a path or a list of paths");
            }

            r = key switch
            {
                "mode" => r with { Mode = OneOf("pretrain", "sft") },
                "data" => r with { Data = List() },
                "data-slice" => r with { DataSlice = CheckSlice(Str(), at) },
                "sampling" => r with { Sampling = OneOf("random", "epochs") },
                "eval-data" => r with { EvalData = Str() },
                "chat-template" => r with { ChatTemplate = Bool() },
                "tokenizer" => r with { Tokenizer = Str() },
                "init" => r with { Init = Str() },
                "hidden" => r with { Hidden = Int(1) },
                "layers" => r with { Layers = Int(1) },
                "heads" => r with { Heads = Int(1) },
                "kv-heads" => r with { KvHeads = Int(1) },
                "intermediate" => r with { Intermediate = Int(1) },
                "context" => r with { Context = Int(2) },
                "rope-theta" => r with { RopeTheta = Dbl(0, exclusiveMin: true) },
                "tie-embeddings" => r with { TieEmbeddings = Bool() },
                "steps" => r with { Steps = Long(1) },
                "epochs" => r with { Epochs = Dbl(0, exclusiveMin: true) },
                "batch" or "batch-size" => r with { Batch = Int(1) },
                "grad-accum" => r with { GradAccum = Int(1) },
                "lr" => r with { Lr = Dbl(0, exclusiveMin: true) },
                "min-lr" => r with { MinLr = Dbl(0) },
                "warmup" => r with { Warmup = Long(0) },
                "weight-decay" => r with { WeightDecay = Dbl(0) },
                "decay-embeddings" => r with { DecayEmbeddings = Bool() },
                "beta1" => r with { Beta1 = Dbl(0, 0.999999) },
                "beta2" => r with { Beta2 = Dbl(0, 0.999999) },
                "max-grad-norm" => r with { MaxGradNorm = Dbl(0) },
                "train" => r with { Train = TrainableSpec.Check(Str(), at) },
                "lora" => r with { Lora = Int(0) },
                "lora-alpha" => r with { LoraAlpha = Dbl(0, exclusiveMin: true) },
                "seed" => r with { Seed = (ulong)Long(0) },
                "device" => r with { Device = Str() },
                "dtype" => r with { Dtype = OneOf("float32", "bfloat16") },
                "matmul-precision" => r with { MatmulPrecision = OneOf("highest", "high", "medium") },
                "log-every" => r with { LogEvery = Int(1) },
                "eval-every" => r with { EvalEvery = Int(0) },
                "eval-rows" => r with { EvalRows = Int(1) },
                "checkpoint-dir" => r with { CheckpointDir = Str() },
                "checkpoint-every" => r with { CheckpointEvery = Int(0) },
                "out" => r with { Out = Str() },
                "log" => r with { Log = Str() },
                "max-shard-mb" => r with { MaxShardMb = Dbl(0, exclusiveMin: true) },
                "save-dtype" => r with { SaveDtype = OneOf("float32", "bfloat16") },
                _ => throw new InvalidDataException($"{at} is not a recipe setting (settings are the flags of 'oml train' without the dashes, e.g. lr, kv-heads, data)"),
            };
        }
        return r;
    }

    private static string CheckSlice(string s, string where)
    {
        ParseSlice(s, where);
        return s;
    }

    /// <summary>Parses "i/n" (0 ≤ i &lt; n).</summary>
    public static (int Index, int Count) ParseSlice(string s, string where = "data-slice")
    {
        var parts = s.Split('/');
        if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var i)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 && i < n)
            return (i, n);
        throw new InvalidDataException($"{where} must be i/n with 0 ≤ i < n (e.g. 2/10), not '{s}'");
    }
}

/// <summary>Which weights a run trains, by name: all, mlp, attention, embeddings, or layers:0,1.</summary>
public static class TrainableSpec
{
    /// <param name="spec">The specification.</param>
    /// <param name="option">How error messages name the setting (a recipe key or a command-line option).</param>
    public static Func<string, bool>? Parse(string spec, string option = "train")
    {
        switch (spec)
        {
            case "all": return null;
            case "mlp": return n => n.Contains(".mlp.", StringComparison.Ordinal);
            case "attention": return n => n.Contains(".self_attn.", StringComparison.Ordinal);
            case "embeddings": return n => n.Contains("embed_tokens", StringComparison.Ordinal) || n.StartsWith("lm_head.", StringComparison.Ordinal);
        }
        if (spec.StartsWith("layers:", StringComparison.Ordinal))
        {
            var layers = new HashSet<int>();
            foreach (var part in spec["layers:".Length..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var l)) throw new ArgumentException($"{option}: '{part}' is not a layer number");
                layers.Add(l);
            }
            if (layers.Count == 0) throw new ArgumentException($"{option}: layers: needs layer numbers, e.g. layers:0,1");
            return n => layers.Any(l => n.Contains($".layers.{l}.", StringComparison.Ordinal));
        }
        throw new ArgumentException($"{option} must be all, mlp, attention, embeddings or layers:N,M, not '{spec}'");
    }

    internal static string Check(string spec, string where)
    {
        try { Parse(spec); }
        catch (ArgumentException e) { throw new InvalidDataException($"{where}: {e.Message}"); }
        return spec;
    }
}
