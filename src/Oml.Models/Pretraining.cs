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
        Torch.ManualSeed(seed);
        var ps = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (Torch.NoGrad())
            foreach (var (name, shape) in CausalLM.ExpectedParameters(config))
            {
                using var scope = Torch.NewScope();
                Tensor t = name.EndsWith("norm.weight", StringComparison.Ordinal) ? Torch.Ones(shape, dtype, dev)
                    : name.EndsWith(".bias", StringComparison.Ordinal) ? Torch.Zeros(shape, dtype, dev)
                    : Torch.Randn(shape, DType.Float32, dev).MulInPlace(0.02).To(dtype);
                ps[name] = t.DetachFromScope();
            }
        return new CausalLM(config, ps, dev);
    }

    /// <summary>One report of <see cref="Train"/>: the step and the mean loss since the previous report.</summary>
    public sealed record Progress(int Step, double Loss, double Seconds);

    /// <summary>
    /// Next-token pretraining on random windows of <paramref name="tokens"/>: AdamW with linear warm-up and cosine decay,
    /// gradient clipping at 1. Returns the reports (every <paramref name="reportEvery"/> steps and the last).
    /// </summary>
    public static List<Progress> Train(CausalLM model, int[] tokens, int steps, int batch, int context, double lr, ulong seed,
        IProgress<Progress>? progress = null, int reportEvery = 25)
    {
        if (tokens.Length < context + 2) throw new ArgumentException($"{tokens.Length} tokens are too few for windows of {context}");
        var parameters = model.Parameters.Values.ToList();
        foreach (var p in parameters) p.RequiresGrad = true;
        var rng = new Random(unchecked((int)seed));
        var reports = new List<Progress>();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        double sum = 0;
        int n = 0;
        using var data = Torch.FromArray<long>(tokens.Select(t => (long)t).ToArray(), null, model.Device);
        using var offsets = Torch.Arange(context + 1, device: model.Device);
        using var opt = new AdamW(parameters, lr: lr, weightDecay: 0.1, beta2: 0.95);
        try
        {
            int warmup = Math.Max(1, steps / 20);
            for (int step = 1; step <= steps; step++)
            {
                opt.LearningRate = step <= warmup ? lr * step / warmup
                    : lr * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * (step - warmup) / Math.Max(1, steps - warmup))));
                using var scope = Torch.NewScope();
                var starts = Torch.FromArray<long>(Enumerable.Range(0, batch).Select(_ => (long)rng.Next(tokens.Length - context - 1)).ToArray(), [batch, 1], model.Device);
                var windows = data.Index((starts + offsets).Flatten()).View(batch, context + 1);
                var x = windows.Narrow(1, 0, context);
                var y = windows.Narrow(1, 1, context);
                opt.ZeroGrad();
                var logits = model.Forward(x);
                var loss = F.CrossEntropy(logits.To(DType.Float32).Reshape(-1, logits.Size(-1)), y.Reshape(-1));
                loss.Backward();
                Torch.ClipGradNorm(parameters, 1.0);
                opt.Step();
                sum += loss.ToDouble();
                n++;
                if (step % reportEvery == 0 || step == steps)
                {
                    var r = new Progress(step, sum / n, sw.Elapsed.TotalSeconds);
                    reports.Add(r);
                    progress?.Report(r);
                    sum = 0;
                    n = 0;
                }
            }
        }
        finally
        {
            opt.ZeroGrad();
            foreach (var p in parameters) p.RequiresGrad = false;
        }
        return reports;
    }
}
