using Oml.Engine;
using Oml.Models.Modeling;

namespace Oml.Models;

/// <summary>
/// A decoder-only transformer language model of the Llama family (Llama, Mistral, Qwen2, Qwen3), with the exact
/// semantics of Hugging Face transformers' implementations, built like transformers' modeling_llama.py from named
/// pieces (namespace <see cref="Modeling"/>): a <see cref="DecoderModel"/> (token embeddings, <see cref="DecoderLayer"/>s
/// of RMSNorm → grouped-query <see cref="Attention"/> with a <see cref="RotaryEmbedding"/> → residual → RMSNorm →
/// SwiGLU <see cref="Mlp"/> → residual, a final RMSNorm) and an LM head. The families differ only in switches of
/// <see cref="ModelConfig"/>: q/k/v biases (Qwen2), per-head q/k RMSNorm and an independent head size (Qwen3), llama3
/// rotary scaling, tied embeddings.
/// The pieces hold their tensors as typed properties; the Hugging Face names are mapped to them once, when the model is
/// built, and <see cref="Parameters"/> is the name index over those same tensors (what loading, saving, training and
/// attacks address by name).
/// </summary>
public sealed class CausalLM : IDisposable
{
    private const string LmHeadWeight = "lm_head.weight";

    // The name index, in the order the tensors were given (loading order; expansion and LoRA draw random numbers in it).
    private readonly Dictionary<string, Tensor> _params;
    private readonly IReadOnlyDictionary<string, Linear> _linears; // every projection by its weight's name
    private readonly List<string> _loraTargets = [];

    /// <param name="config">The model's configuration.</param>
    /// <param name="parameters">Tensors by Hugging Face name; the model takes ownership.</param>
    /// <param name="device">Where the parameters live.</param>
    /// <param name="rotaryPrecision">
    /// A 16-bit dtype the weights have been stored or computed in. transformers keeps the rotary inverse frequencies as
    /// a buffer that a cast of the model to bfloat16/float16 rounds too, and that rounding stays when the model is cast
    /// back; so a model that has been 16-bit computes its rotary angles from rounded frequencies. Defaults to the
    /// parameters' dtype when that is 16-bit.
    /// </param>
    public CausalLM(ModelConfig config, IDictionary<string, Tensor> parameters, Device device, DType? rotaryPrecision = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(parameters);
        Config = config;
        Device = device;
        _params = new Dictionary<string, Tensor>(parameters, StringComparer.Ordinal);
        foreach (var t in _params.Values) t.DetachFromScope();
        Validate();
        var table = new ParameterTable(_params);
        var rounding = rotaryPrecision ?? _params[DecoderModel.Prefix + "embed_tokens.weight"].DType;
        Model = new DecoderModel(config, table, device, rounding);
        // Tied embeddings: the head is the embedding table (a checkpoint's own lm_head.weight, if any, is kept but unused).
        LmHead = config.TieWordEmbeddings ? null : new Linear(table[LmHeadWeight], null);
        _linears = table.Linears;
    }

    /// <summary>The transformer body: embeddings, decoder layers, final norm, rotary embedding.</summary>
    public DecoderModel Model { get; }

    /// <summary>The LM head, or null when it is tied to <see cref="DecoderModel.EmbedTokens"/>.</summary>
    public Linear? LmHead { get; }

    /// <summary>The 16-bit dtype the rotary frequencies are rounded to, if any (see the constructor).</summary>
    public DType? RotaryPrecision => Model.RotaryEmbedding.Precision;

    public ModelConfig Config { get; }
    public Device Device { get; }
    public DType DType => Model.DType;

    /// <summary>
    /// Parameters by Hugging Face name (the LM head is absent when tied to the embeddings; LoRA adapters appear as
    /// NAME.lora_A and NAME.lora_B): the same tensors the typed pieces hold, so an in-place update through either is
    /// seen by both.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Parameters => _params;

    /// <summary>Names of the weights that carry a LoRA adapter.</summary>
    public IReadOnlyCollection<string> LoraTargets => _loraTargets;

    /// <summary>
    /// Adds LoRA adapters (Hu et al.) to the projections (attention and MLP) whose weight names satisfy
    /// <paramref name="target"/>: for W [out, in], A [r, in] ~ N(0, 1/r) and B [out, r] = 0 (so the model is unchanged
    /// until B trains), used as W + (α/r)·B·A. The adapters are parameters named NAME.lora_A and NAME.lora_B; train
    /// only those (names ending in ".lora_A" or ".lora_B") and everything else stays bit-identical.
    /// <see cref="ExportParameters"/> merges them.
    /// </summary>
    public void AddLora(Func<string, bool> target, int rank = 8, double alpha = 16, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, "the LoRA rank must be at least 1");
        using var rng = new RandomGenerator(seed, Device);
        var names = _params.Keys.Where(n => _linears.TryGetValue(n, out var l) && l.Lora is null && target(n)).ToList();
        if (names.Count == 0) throw new ArgumentException("no weight matches the LoRA target");
        using var noGrad = Torch.NoGrad();
        foreach (var n in names)
        {
            using var scope = Torch.NewScope();
            var linear = _linears[n];
            var w = linear.Weight;
            long outF = w.Size(0), inF = w.Size(1);
            var a = (Torch.Randn([rank, inF], DType.Float32, Device, rng) * (1.0 / Math.Sqrt(rank))).To(w.DType).DetachFromScope();
            var b = Torch.Zeros([outF, rank], w.DType, Device).DetachFromScope();
            _params[n + ".lora_A"] = a;
            _params[n + ".lora_B"] = b;
            linear.Lora = new LoraAdapter(a, b, alpha / rank);
            _loraTargets.Add(n);
        }
    }

    /// <summary>
    /// The parameters of the plain model under their Hugging Face names: LoRA adapters merged into their weights
    /// (W + (α/r)·B·A) and left out, so that a saved folder is a standard model. New tensors: dispose them.
    /// </summary>
    public Dictionary<string, Tensor> ExportParameters()
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var name in _params.Keys)
            if (!IsAdapter(name)) result[name] = ExportParameter(name);
        return result;
    }

    /// <summary>Whether <paramref name="name"/> is a LoRA adapter's (NAME.lora_A or NAME.lora_B), which saving merges.</summary>
    public static bool IsAdapter(string name) =>
        name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_B", StringComparison.Ordinal);

    /// <summary>
    /// One parameter of the plain model (<see cref="ExportParameters"/>): its weight with its LoRA adapter merged, if it
    /// has one, else a second handle to it. A new tensor: dispose it.
    /// </summary>
    public Tensor ExportParameter(string name)
    {
        if (IsAdapter(name) || !_params.TryGetValue(name, out var t)) throw new ArgumentException($"no exported parameter named '{name}'", nameof(name));
        using var noGrad = Torch.NoGrad();
        using var scope = Torch.NewScope();
        return (_linears.TryGetValue(name, out var l) && l.Lora is not null ? l.EffectiveWeight() : t.Alias()).DetachFromScope();
    }

    /// <summary>The names and shapes this configuration needs, as transformers names them, in transformers' order.</summary>
    public static IEnumerable<(string Name, long[] Shape)> ExpectedParameters(ModelConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        foreach (var e in DecoderModel.Expected(c)) yield return e;
        if (!c.TieWordEmbeddings) yield return (LmHeadWeight, [c.VocabSize, c.HiddenSize]);
    }

    private void Validate()
    {
        foreach (var (name, shape) in ExpectedParameters(Config))
        {
            if (!_params.TryGetValue(name, out var t))
                throw new InvalidDataException($"missing tensor '{name}' (expected shape [{string.Join(", ", shape)}])");
            if (!t.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"tensor '{name}' has shape [{string.Join(", ", t.Shape)}] but config.json implies [{string.Join(", ", shape)}]");
        }
    }

    /// <summary>Inverse rotary frequencies, with llama3 scaling where configured (see <see cref="RotaryEmbedding.InverseFrequencies"/>).</summary>
    public static float[] RotaryInverseFrequencies(ModelConfig c) => RotaryEmbedding.InverseFrequencies(c);

    /// <summary>
    /// Logits [B, T, vocab] for <paramref name="inputIds"/> [B, T].
    /// <paramref name="attentionMask"/> [B, Tcache + T] (1 = token, 0 = padding) masks keys; queries attend causally. A
    /// four-dimensional mask [B, 1, T, Tcache + T] (true = may attend) is taken as it is, with no causal mask added.
    /// <paramref name="positionIds"/> [B, T] defaults to cache length + 0..T-1, as transformers' forward does.
    /// With a <paramref name="cache"/>, keys and values are appended to it and attention covers everything cached.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KVCache? cache = null)
    {
        using var scope = Torch.NewScope();
        return Head(Hidden(inputIds, attentionMask, positionIds, cache)).MoveToOuterScope();
    }

    /// <summary>
    /// The final hidden states [B, T, hidden] (after the last RMSNorm, before the LM head) for the same arguments as
    /// <see cref="Forward"/>. Training that needs logits at a few positions only (a fingerprint's response) selects
    /// those rows and applies <see cref="Head"/> to them, instead of computing [B, T, vocab] logits.
    /// </summary>
    public Tensor Hidden(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KVCache? cache = null) =>
        Model.Forward(inputIds, attentionMask, positionIds, cache);

    /// <summary>The LM head: logits [..., vocab] of final hidden states [..., hidden].</summary>
    public Tensor Head(Tensor hidden) => LmHead is null ? F.Linear(hidden, Model.EmbedTokens.Weight) : LmHead.Forward(hidden);

    /// <summary>
    /// One training forward and backward pass with activation checkpointing per decoder layer: the forward pass runs
    /// without autograd and keeps only each layer's input; the loss (<paramref name="lossOfHidden"/>, given the final
    /// hidden states [B, T, hidden] as <see cref="Hidden"/> returns them) is back-propagated to the last layer's output,
    /// and then each layer, last to first, is recomputed from its kept input with autograd and back-propagated on its
    /// own. The parameters' gradients accumulate exactly as one <c>lossOfHidden(Hidden(ids)).Backward()</c> would
    /// accumulate them (up to floating-point summation order), while the memory held for the backward pass is one
    /// [B, T, hidden] tensor per layer plus one layer's activations. Rows are unpadded or right-padded: attention is
    /// causal with no mask. Returns the loss (detached).
    /// </summary>
    public Tensor CheckpointedBackward(Tensor inputIds, Func<Tensor, Tensor> lossOfHidden) => Model.CheckpointedBackward(inputIds, lossOfHidden);

    /// <summary>
    /// The causal-LM loss as transformers computes it: logits at position i predict labels at i + 1, labels equal to
    /// -100 are ignored, and the mean is over the labelled positions. Computed in float32.
    /// </summary>
    public static Tensor Loss(Tensor logits, Tensor labels)
    {
        using var scope = Torch.NewScope();
        long t = logits.Size(1), v = logits.Size(2);
        var shiftLogits = logits.Narrow(1, 0, t - 1).To(DType.Float32).Reshape(-1, v);
        var shiftLabels = labels.Narrow(1, 1, t - 1).Reshape(-1);
        return F.CrossEntropy(shiftLogits, shiftLabels, ignoreIndex: -100).MoveToOuterScope();
    }

    public void Dispose()
    {
        foreach (var t in _params.Values) t.Dispose();
        _params.Clear();
        Model.Dispose();
    }
}
