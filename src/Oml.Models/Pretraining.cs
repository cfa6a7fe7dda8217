using System.Text.Json.Nodes;
using Oml.Engine;

namespace Oml.Models;

/// <summary>Shape of a new Llama-architecture model.</summary>
public sealed record LlamaShape(int VocabSize, int Hidden = 128, int Layers = 2, int Heads = 4, int KvHeads = 2, int Intermediate = 352,
    int MaxPositions = 512, double RopeTheta = 10000, bool TieEmbeddings = true)
{
    /// <summary>A transformers-style config.json for this shape.</summary>
    public ModelConfig ToConfig(int? bosId = null, int? eosId = null, int? padId = null) => ModelConfig.Parse(new JsonObject
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["model_type"] = "llama",
        ["attention_bias"] = false,
        ["attention_dropout"] = 0.0,
        ["bos_token_id"] = bosId,
        ["eos_token_id"] = eosId,
        ["pad_token_id"] = padId,
        ["head_dim"] = Hidden / Heads,
        ["hidden_act"] = "silu",
        ["hidden_size"] = Hidden,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = Intermediate,
        ["max_position_embeddings"] = MaxPositions,
        ["mlp_bias"] = false,
        ["num_attention_heads"] = Heads,
        ["num_hidden_layers"] = Layers,
        ["num_key_value_heads"] = KvHeads,
        ["rms_norm_eps"] = 1e-5,
        ["rope_parameters"] = new JsonObject { ["rope_theta"] = RopeTheta, ["rope_type"] = "default" },
        ["tie_word_embeddings"] = TieEmbeddings,
        ["use_cache"] = true,
        ["vocab_size"] = VocabSize,
    });
}

/// <summary>Creating models from scratch and pretraining them on a token stream.</summary>
public static class Pretraining
{
    /// <summary>A model with transformers' initialisation: weights ~ N(0, 0.02²), norm weights 1, biases 0.</summary>
    public static CausalLM CreateRandom(ModelConfig config, ulong seed, Device? device = null, DType dtype = DType.Float32)
    {
        var dev = device ?? Device.Cpu;
        using var rng = new RandomGenerator(seed, dev);
        var ps = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (Torch.NoGrad())
            foreach (var (name, shape) in CausalLM.ExpectedParameters(config))
            {
                using var scope = Torch.NewScope();
                Tensor t = name.EndsWith("norm.weight", StringComparison.Ordinal) ? Torch.Ones(shape, dtype, dev)
                    : name.EndsWith(".bias", StringComparison.Ordinal) ? Torch.Zeros(shape, dtype, dev)
                    : Torch.Randn(shape, DType.Float32, dev, rng).MulInPlace(0.02).To(dtype);
                ps[name] = t.DetachFromScope();
            }
        return new CausalLM(config, ps, dev);
    }

    /// <summary>One report of <see cref="Train"/>: the step and the mean loss since the previous report.</summary>
    public sealed record Progress(int Step, double Loss, double Seconds);

    /// <summary>
    /// Next-token pretraining on random windows of <paramref name="tokens"/>: AdamW (β₂ 0.95, weight decay 0.1 on every
    /// parameter) with linear warm-up over 5% of the steps and cosine decay to a tenth of <paramref name="lr"/>, gradient
    /// clipping at 1. Returns the reports (every <paramref name="reportEvery"/> steps and the last). A thin wrapper over
    /// <see cref="Training.Trainer"/>, which has every other option.
    /// </summary>
    public static List<Progress> Train(CausalLM model, int[] tokens, int steps, int batch, int context, double lr, ulong seed,
        IProgress<Progress>? progress = null, int reportEvery = 25)
    {
        var data = new Training.PackedTokens(tokens, context, seed, Training.PackedSampling.Random);
        var options = new Training.TrainingOptions
        {
            Steps = steps, Batch = batch, LearningRate = lr, MinLearningRate = 0.1 * lr, Warmup = Math.Max(1, steps / 20),
            WeightDecay = 0.1, DecayAll = true, Beta2 = 0.95, MaxGradNorm = 1.0, LogEvery = Math.Max(1, reportEvery), Seed = seed,
        };
        var result = Training.Trainer.Train(model, data, options, progress: progress is null ? null
            : new InlineProgress<Training.TrainingProgress>(p => progress.Report(new Progress((int)p.Step, p.Loss, p.Seconds))));
        return result.History.Select(p => new Progress((int)p.Step, p.Loss, p.Seconds)).ToList();
    }
}
