using Oml.Models.IO;

namespace Oml.Models.Tests;

/// <summary>The byte budget that bounds how many converted tensors a model load holds twice at once.</summary>
public sealed class ByteBudgetTests
{
    [Fact]
    public void ConcurrentTakersNeverHoldMoreThanTheCapacityUnlessOneIsAlone()
    {
        var budget = new ByteBudget(100);
        var sizes = new long[400];
        var rng = new Random(7);
        for (int i = 0; i < sizes.Length; i++) sizes[i] = i % 50 == 0 ? 150 : rng.Next(1, 60); // some items exceed the capacity
        long held = 0, worst = 0, worstShared = 0;
        int inside = 0;
        var gate = new object();
        Parallel.ForEach(sizes, new ParallelOptions { MaxDegreeOfParallelism = 8 }, size =>
        {
            budget.Take(size);
            lock (gate)
            {
                held += size;
                inside++;
                worst = Math.Max(worst, held);
                if (inside > 1) worstShared = Math.Max(worstShared, held);
            }
            Thread.SpinWait(2000);
            lock (gate) { held -= size; inside--; }
            budget.Give(size);
        });
        Assert.True(worstShared <= 100, $"several takers held {worstShared} bytes together, over the capacity of 100");
        Assert.Equal(150, worst); // the oversize items ran, alone
        Assert.Equal(0, budget.Held);
    }

    [Fact]
    public async Task AWaitingTakerIsAdmittedWhenBytesAreGivenBack()
    {
        var ct = TestContext.Current.CancellationToken;
        var budget = new ByteBudget(10);
        budget.Take(8);
        var second = Task.Run(() => budget.Take(5), ct);
        var first = await Task.WhenAny(second, Task.Delay(100, ct));
        Assert.NotSame(second, first); // 5 more bytes do not fit a capacity of 10 beside 8 held
        budget.Give(8);
        await second.WaitAsync(TimeSpan.FromSeconds(5), ct);
        Assert.Equal(5, budget.Held);
        Assert.Throws<InvalidOperationException>(() => budget.Give(6));
    }
}
