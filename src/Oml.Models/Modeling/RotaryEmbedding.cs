using Oml.Engine;

namespace Oml.Models.Modeling;

/// <summary>
/// Rotary position embeddings (transformers' LlamaRotaryEmbedding and apply_rotary_pos_emb): inverse frequencies per
/// pair of channels, with llama3 scaling where configured, turned into cos/sin tables for given positions.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    /// <param name="config">Supplies the head size and the rope parameters.</param>
    /// <param name="device">Where the frequencies live.</param>
    /// <param name="precision">
    /// A 16-bit dtype to round the frequencies through (see <see cref="CausalLM"/>'s constructor), or null for none.
    /// </param>
    public RotaryEmbedding(ModelConfig config, Device device, DType? precision)
    {
        ArgumentNullException.ThrowIfNull(config);
        bool round = precision is DType.BFloat16 or DType.Float16;
        using var inv = Torch.FromArray(InverseFrequencies(config), null, device);
        InverseFrequency = (round ? inv.To(precision!.Value).To(DType.Float32) : inv.Alias()).DetachFromScope();
        Precision = round ? precision : null;
    }

    /// <summary>[headDim / 2], float32.</summary>
    public Tensor InverseFrequency { get; }

    /// <summary>The 16-bit dtype the frequencies were rounded to, if any.</summary>
    public DType? Precision { get; }

    /// <summary>cos and sin [B, 1, T, headDim] for positions [B, T]: computed in float32 and cast to <paramref name="dtype"/>, as transformers does.</summary>
    public (Tensor Cos, Tensor Sin) Forward(Tensor positionIds, DType dtype)
    {
        ArgumentNullException.ThrowIfNull(positionIds);
        var freqs = positionIds.To(DType.Float32).Unsqueeze(-1) * InverseFrequency;
        var emb = Torch.Cat([freqs, freqs], -1);
        return (emb.Cos().To(dtype).Unsqueeze(1), emb.Sin().To(dtype).Unsqueeze(1));
    }

    /// <summary>Rotates queries or keys [B, heads, T, headDim] by the tables of <see cref="Forward"/>.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(cos);
        ArgumentNullException.ThrowIfNull(sin);
        return F.Rope(x, cos, sin);
    }

    /// <summary>Inverse rotary frequencies, with llama3 scaling where configured (transformers' _compute_llama3_parameters).</summary>
    public static float[] InverseFrequencies(ModelConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        int d = c.HeadDim;
        var inv = new float[d / 2];
        for (int i = 0; i < d / 2; i++)
            inv[i] = (float)(1.0 / Math.Pow(c.Rope.Theta, (float)(2 * i) / d));
        if (c.Rope.Type != "llama3") return inv;
        var r = c.Rope;
        double lowWavelen = r.OriginalMaxPositionEmbeddings / r.LowFreqFactor;
        double highWavelen = r.OriginalMaxPositionEmbeddings / r.HighFreqFactor;
        for (int i = 0; i < inv.Length; i++)
        {
            double f = inv[i];
            double wavelen = 2 * Math.PI / f;
            double scaled = wavelen > lowWavelen ? f / r.Factor : f;
            if (!(wavelen < highWavelen) && !(wavelen > lowWavelen))
            {
                double smooth = (r.OriginalMaxPositionEmbeddings / wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor);
                scaled = (1 - smooth) * scaled / r.Factor + smooth * scaled;
            }
            inv[i] = (float)scaled;
        }
        return inv;
    }

    public void Dispose() => InverseFrequency.Dispose();
}
