using Oml.Engine;

namespace Oml.Models;

/// <summary>Utility measures of a language model.</summary>
public static class Evaluation
{
    /// <summary>
    /// Perplexity exp(mean next-token loss) over consecutive windows of <paramref name="window"/> + 1 tokens (each
    /// window predicts its last <paramref name="window"/> tokens), in batches. Tokens that fit no whole window are left out.
    /// </summary>
    public static double Perplexity(CausalLM model, IReadOnlyList<int> ids, int window = 64, int batchSize = 16)
    {
        if (window < 1) throw new ArgumentOutOfRangeException(nameof(window), window, "the window must be at least 1 token");
        int count = (ids.Count - 1) / window;
        if (count < 1) throw new ArgumentException($"{ids.Count} tokens are too few for one window of {window + 1}");
        foreach (var id in ids)
            if (id < 0 || id >= model.Config.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {model.Config.VocabSize})");
        using var noGrad = Torch.NoGrad();
        double sum = 0;
        for (int start = 0; start < count; start += batchSize)
        {
            using var scope = Torch.NewScope();
            int b = Math.Min(batchSize, count - start);
            var data = new long[b * (window + 1)];
            for (int r = 0; r < b; r++)
                for (int j = 0; j <= window; j++) data[r * (window + 1) + j] = ids[(start + r) * window + j];
            var x = Torch.FromArray<long>(data, [b, window + 1], model.Device);
            sum += CausalLM.Loss(model.Forward(x), x).ToDouble() * b;
        }
        return Math.Exp(sum / count);
    }
}
