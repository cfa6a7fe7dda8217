using Oml.Engine;
using Oml.Models.Serving;

namespace Oml.Models.Tests;

/// <summary>The serving engine's host argmax decides as torch.argmax on the device, NaN included.</summary>
public class GreedyArgMaxTests
{
    [Theory]
    [InlineData(new float[] { 1, 3, 2, 3 })]                          // ties: the first
    [InlineData(new float[] { 1, float.NaN, 5, float.NaN })]          // a NaN is the maximum, the first one
    [InlineData(new float[] { float.NaN, 9, 1 })]
    [InlineData(new float[] { -2, float.NegativeInfinity, -1, float.PositiveInfinity, 4 })]
    [InlineData(new float[] { float.PositiveInfinity, float.NaN })]
    [InlineData(new float[] { 0.5f })]
    public void Host_and_device_pick_the_same_token(float[] logits)
    {
        using var t = Torch.FromArray<float>(logits, 1, logits.Length);
        long device = t.ArgMax(-1).ToArray<long>()[0];
        Assert.Equal(device, BatchEngine.ArgMax(logits));
    }
}
