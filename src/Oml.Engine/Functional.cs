using static Oml.Engine.Native;

namespace Oml.Engine;

/// <summary>Neural-network functions, as <c>torch.nn.functional</c>.</summary>
public static class F
{
    /// <summary>x·Wᵀ + b with W of shape [out, in].</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        using var b = new Lease(bias);
        return new(oml_linear(x.Handle, weight.Handle, b.Ptr));
    }

    public static Tensor Softmax(Tensor x, long dim) => x.Softmax(dim);
    public static Tensor LogSoftmax(Tensor x, long dim) => x.LogSoftmax(dim);
    public static Tensor Silu(Tensor x) => x.Silu();
    public static Tensor Gelu(Tensor x, bool tanhApproximation = false) => x.Gelu(tanhApproximation);
    public static Tensor Relu(Tensor x) => x.Relu();

    /// <summary>Rows of <paramref name="weight"/> selected by the integer <paramref name="ids"/>.</summary>
    public static Tensor Embedding(Tensor ids, Tensor weight) => new(oml_embedding(weight.Handle, ids.Handle));

    /// <summary>
    /// Zeroes each element with probability <paramref name="p"/> and scales the rest by 1 / (1 − p) when
    /// <paramref name="training"/>; the mask is drawn from <paramref name="generator"/> (null: the global generator).
    /// </summary>
    public static Tensor Dropout(Tensor x, double p, bool training, RandomGenerator? generator = null)
    {
        if (p is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1]");
        if (generator is not null) RandomGenerator.CheckDevice(generator, x.Device, "dropout");
        using var g = new GeneratorLease(generator);
        return new(oml_dropout(x.Handle, p, training ? 1 : 0, g.Ptr));
    }

    /// <summary>
    /// Cross-entropy between <paramref name="logits"/> [N, C] (or [N, C, ...]) and class indices <paramref name="target"/> [N];
    /// targets equal to <paramref name="ignoreIndex"/> contribute nothing, and the mean is over the others.
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor target, long ignoreIndex = -100, Reduction reduction = Reduction.Mean,
        double labelSmoothing = 0) =>
        new(oml_cross_entropy(logits.Handle, target.Handle, ignoreIndex, (int)reduction, labelSmoothing));

    public static Tensor MseLoss(Tensor input, Tensor target, Reduction reduction = Reduction.Mean) =>
        new(oml_mse_loss(input.Handle, target.Handle, (int)reduction));

    /// <summary>RMS normalisation over the last dimension, computed in float32 as Hugging Face's Llama does.</summary>
    public static Tensor RmsNorm(Tensor x, Tensor? weight, double eps)
    {
        using var w = new Lease(weight);
        return new(oml_rms_norm(x.Handle, w.Ptr, eps));
    }

    /// <summary>
    /// Rotary position embeddings (transformers' apply_rotary_pos_emb) of <paramref name="x"/> [B, heads, T, headDim] with
    /// <paramref name="cos"/> and <paramref name="sin"/> [B or 1, 1, T, headDim]: x · cos + rotate_half(x) · sin, where
    /// rotate_half(x) = cat(−x[…, d/2:], x[…, :d/2]). On CUDA one fused kernel each way (<see cref="Torch.FusedKernels"/>).
    /// </summary>
    public static Tensor Rope(Tensor x, Tensor cos, Tensor sin) => new(oml_rope(x.Handle, cos.Handle, sin.Handle));

    /// <summary>The SwiGLU activation of Llama's MLP: silu(gate) · up. On CUDA one fused kernel each way (<see cref="Torch.FusedKernels"/>).</summary>
    public static Tensor SwiGlu(Tensor gate, Tensor up) => new(oml_swiglu(gate.Handle, up.Handle));

    public static unsafe Tensor LayerNorm(Tensor x, long[] normalizedShape, Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
    {
        using var w = new Lease(weight);
        using var b = new Lease(bias);
        fixed (long* p = normalizedShape) return new(oml_layer_norm(x.Handle, p, normalizedShape.Length, w.Ptr, b.Ptr, eps));
    }

    /// <summary>
    /// softmax(q·kᵀ·scale + mask)·v over [B, H, T, D] tensors. <paramref name="mask"/> is boolean (true = attend) or additive,
    /// broadcastable to [B, H, Tq, Tk]. Runs libtorch's fused kernel where it has one (2.1+), else the same math step by step.
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor? mask = null, double dropoutP = 0,
        bool isCausal = false, double? scale = null)
    {
        using var m = new Lease(mask);
        return new(oml_sdpa(q.Handle, k.Handle, v.Handle, m.Ptr, dropoutP, isCausal ? 1 : 0, scale ?? 0, scale.HasValue ? 1 : 0));
    }
}

/// <summary>How a loss reduces over elements (values are at::Reduction's).</summary>
public enum Reduction { None = 0, Mean = 1, Sum = 2 }
