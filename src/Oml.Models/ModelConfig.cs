using System.Text.Json;
using System.Text.Json.Nodes;

namespace Oml.Models;

/// <summary>The transformer families this project runs; they differ only in a few switches (see <see cref="ModelConfig"/>).</summary>
public enum Architecture { Llama, Mistral, Qwen2, Qwen3 }

/// <summary>Rotary position embedding parameters (rope_type "default" or "llama3").</summary>
public sealed record RopeConfig(string Type, double Theta, double Factor = 1, double LowFreqFactor = 1, double HighFreqFactor = 4,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// A Hugging Face <c>config.json</c> for the supported decoder-only families, read as transformers 5 does (including
/// the older <c>rope_theta</c>/<c>rope_scaling</c> fields of transformers 4 configs). The original JSON is kept so that
/// a saved model writes back every field, including those this project does not use.
/// </summary>
public sealed class ModelConfig
{
    public required Architecture Architecture { get; init; }
    public required string ArchitectureName { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; set; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required double RmsNormEps { get; init; }
    public required RopeConfig Rope { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Biases on q/k/v projections (Qwen2 always; Llama when attention_bias).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Bias on the attention output projection (Llama's attention_bias).</summary>
    public required bool OutputBias { get; init; }
    public required bool MlpBias { get; init; }
    /// <summary>Per-head RMSNorm on queries and keys (Qwen3).</summary>
    public required bool QkNorm { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }
    /// <summary>The dtype the checkpoint declares ("float32", "bfloat16", ...), if any.</summary>
    public string? TorchDType { get; init; }
    public required JsonObject Raw { get; init; }

    /// <summary>The largest config.json read (real ones are a few KiB).</summary>
    public const long MaxFileBytes = 16L << 20;

    /// <summary>
    /// Limits on the sizes a config may declare, checked before anything is allocated from them; each is above every
    /// released model of the supported families (Llama 3.1 405B: hidden 16,384, 126 layers, vocabulary 128,256).
    /// </summary>
    public const int MaxLayers = 1024, MaxHiddenSize = 1 << 17, MaxIntermediateSize = 1 << 20, MaxVocabSize = 1 << 24, MaxHeads = 1 << 12,
        MaxHeadDim = 4096, MaxPositions = 1 << 26;

    /// <summary>The most parameters a config may imply (10^13): far above any model this code could hold, far below overflow.</summary>
    public const long MaxParameters = 10_000_000_000_000;

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config.json not found: {path}", path);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(IO.InputFile.ReadText(path, MaxFileBytes, "config.json"));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})");
        }
        if (node is not JsonObject obj) throw new InvalidDataException($"{path}: not a JSON object");
        return Parse(obj, path);
    }

    /// <summary>Reads a config; every problem (a missing field, a wrong type, a size out of bounds) is an <see cref="InvalidDataException"/> naming <paramref name="source"/>.</summary>
    public static ModelConfig Parse(JsonObject c, string source = "config.json")
    {
        ArgumentNullException.ThrowIfNull(c);
        try { return ParseChecked(c, source); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{source}: a field has the wrong type ({e.Message})", e);
        }
    }

    private static ModelConfig ParseChecked(JsonObject c, string source)
    {
        string archName = c["architectures"] is JsonArray { Count: > 0 } a ? (a[0] ?? throw new InvalidDataException($"{source}: 'architectures' holds null")).GetValue<string>()
            : c["model_type"]?.GetValue<string>() ?? "";
        var arch = archName switch
        {
            "LlamaForCausalLM" or "llama" => Architecture.Llama,
            "MistralForCausalLM" or "mistral" => Architecture.Mistral,
            "Qwen2ForCausalLM" or "qwen2" => Architecture.Qwen2,
            "Qwen3ForCausalLM" or "qwen3" => Architecture.Qwen3,
            _ => throw new InvalidDataException($"{source}: unsupported architecture '{archName}' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)"),
        };

        int Int(string key, int max)
        {
            var v = c[key] ?? throw new InvalidDataException($"{source}: missing '{key}'");
            if (v is not JsonValue jv || jv.GetValueKind() != JsonValueKind.Number
                || !long.TryParse(jv.ToJsonString(), System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var x))
                throw new InvalidDataException($"{source}: '{key}' is not an integer ({Short(v)})");
            if (x < 1 || x > max) throw new InvalidDataException($"{source}: '{key}' is {x}; it must be in [1, {max:N0}]");
            return (int)x;
        }
        int? OptInt(string key) => c[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;
        int? OptBounded(string key, int max)
        {
            if (c[key] is null) return null;
            return Int(key, max);
        }
        double Dbl(JsonNode? n, double fallback) => n is JsonValue v && v.TryGetValue<double>(out var d) ? d : fallback;
        bool Bool(string key, bool fallback) => c[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : fallback;

        int hidden = Int("hidden_size", MaxHiddenSize), heads = Int("num_attention_heads", MaxHeads);
        int kvHeads = OptBounded("num_key_value_heads", MaxHeads) ?? heads;
        if (heads % kvHeads != 0)
            throw new InvalidDataException($"{source}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kvHeads})");
        int headDim = OptBounded("head_dim", MaxHeadDim) ?? hidden / heads;
        if (headDim < 1) throw new InvalidDataException($"{source}: hidden_size ({hidden}) is smaller than num_attention_heads ({heads})");
        int vocab = Int("vocab_size", MaxVocabSize), intermediate = Int("intermediate_size", MaxIntermediateSize), layers = Int("num_hidden_layers", MaxLayers);
        int maxPositions = OptBounded("max_position_embeddings", MaxPositions) ?? 2048;
        // The parameter count these sizes imply (embeddings, head, attention and MLP per layer), before anything is built from them.
        long perLayer = (long)hidden * headDim * (2L * heads + 2L * kvHeads) + 3L * hidden * intermediate + 2L * hidden;
        long implied = 2L * vocab * hidden + layers * perLayer;
        if (implied > MaxParameters)
            throw new InvalidDataException($"{source}: the sizes imply {implied:N0} parameters (vocab_size {vocab}, hidden_size {hidden}, intermediate_size {intermediate}, num_hidden_layers {layers}); the limit is {MaxParameters:N0}");

        // Sliding-window attention is not implemented: refuse rather than compute something else.
        bool slidingConfigured = arch switch
        {
            Architecture.Mistral => OptInt("sliding_window") is not null,
            Architecture.Qwen2 or Architecture.Qwen3 => Bool("use_sliding_window", false) && OptInt("sliding_window") is not null,
            _ => false,
        };
        if (slidingConfigured)
            throw new InvalidDataException($"{source}: sliding-window attention (sliding_window = {OptInt("sliding_window")}) is not supported; only full attention is");

        // Rotary embeddings: transformers 5 writes rope_parameters; transformers 4 wrote rope_theta and rope_scaling.
        var rp = c["rope_parameters"] as JsonObject ?? c["rope_scaling"] as JsonObject;
        double theta = Dbl(rp?["rope_theta"], Dbl(c["rope_theta"], 10000.0));
        string ropeType = rp?["rope_type"]?.GetValue<string>() ?? rp?["type"]?.GetValue<string>() ?? "default";
        var rope = ropeType switch
        {
            "default" => new RopeConfig("default", theta),
            "llama3" => new RopeConfig("llama3", theta, Dbl(rp!["factor"], 8), Dbl(rp["low_freq_factor"], 1), Dbl(rp["high_freq_factor"], 4),
                (int)Dbl(rp["original_max_position_embeddings"], 8192)),
            _ => throw new InvalidDataException($"{source}: unsupported rope_type '{ropeType}' (supported: default, llama3)"),
        };

        string act = c["hidden_act"]?.GetValue<string>() ?? "silu";
        if (act != "silu") throw new InvalidDataException($"{source}: unsupported hidden_act '{act}' (supported: silu)");

        bool attnBias = Bool("attention_bias", false);
        return new ModelConfig
        {
            Architecture = arch,
            ArchitectureName = archName,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = Dbl(c["rms_norm_eps"], 1e-6),
            Rope = rope,
            TieWordEmbeddings = Bool("tie_word_embeddings", false), // the default of all four configs
            QkvBias = arch == Architecture.Qwen2 || attnBias,
            OutputBias = arch == Architecture.Llama && attnBias,
            MlpBias = arch == Architecture.Llama && Bool("mlp_bias", false),
            QkNorm = arch == Architecture.Qwen3,
            MaxPositionEmbeddings = maxPositions,
            BosTokenId = OptInt("bos_token_id"),
            EosTokenIds = TokenIds(c["eos_token_id"]),
            PadTokenId = OptInt("pad_token_id"),
            TorchDType = c["dtype"]?.GetValue<string>() ?? c["torch_dtype"]?.GetValue<string>(),
            Raw = c,
        };
    }

    private static string Short(JsonNode n)
    {
        var t = n.ToJsonString();
        return t.Length <= 40 ? t : t[..40] + "...";
    }

    internal static IReadOnlyList<int> TokenIds(JsonNode? n) => n switch
    {
        JsonValue v when v.TryGetValue<int>(out var i) => [i],
        JsonArray a => a.Select(x => x is JsonValue v && v.TryGetValue<int>(out var i) ? i : throw new InvalidOperationException($"a token id list holds {x?.ToJsonString() ?? "null"}")).ToList(),
        _ => [],
    };

    /// <summary>The config as JSON, with fields this project changes (intermediate size, dtype) brought up to date.</summary>
    public string ToJson(string? dtype = null)
    {
        var c = (JsonObject)Raw.DeepClone();
        c["intermediate_size"] = IntermediateSize;
        if (dtype != null) c["dtype"] = dtype;
        return c.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}
