using Oml.Engine;

namespace Oml.Models.Tests;

public class EvaluationTests
{
    [Fact]
    public void Perplexity_is_the_exponential_of_the_mean_window_loss()
    {
        using var model = ModelFolder.Load(Fixtures.Model("llama-tiny"));
        var rng = new Random(4);
        var ids = Enumerable.Range(0, 2 * 8 + 1 + 5).Select(_ => rng.Next(512)).ToArray(); // two windows of 8, 5 left over
        double Loss(int start)
        {
            using var scope = Torch.NewScope();
            using var noGrad = Torch.NoGrad();
            var x = Torch.FromArray<long>(ids.Skip(start).Take(9).Select(i => (long)i).ToArray(), [1, 9]);
            return CausalLM.Loss(model.Forward(x), x).ToDouble();
        }
        double expected = Math.Exp((Loss(0) + Loss(8)) / 2);
        Assert.InRange(Evaluation.Perplexity(model, ids, window: 8, batchSize: 1) / expected, 1 - 1e-5, 1 + 1e-5);
        Assert.InRange(Evaluation.Perplexity(model, ids, window: 8, batchSize: 16) / expected, 1 - 1e-5, 1 + 1e-5);
        Assert.Throws<ArgumentException>(() => Evaluation.Perplexity(model, ids[..5], window: 8));
        Assert.Throws<ArgumentException>(() => Evaluation.Perplexity(model, [1, 2, 9999], window: 2));
    }
}
