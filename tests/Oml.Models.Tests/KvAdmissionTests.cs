using Oml.Models.Serving;

namespace Oml.Models.Tests;

/// <summary>The batch engine's memory decisions, without a model: which waiting sequences join the batch and which
/// running ones a rebuild keeps under a key/value cache budget.</summary>
public class KvAdmissionTests
{
    // 2 layers of 100 bytes a token slot: 200 bytes a token; a context of 4096.
    private static readonly KvCacheShape Shape = new(2, 100, 4096);

    private static KvRow[] Same(int n, int tokens, int remaining) => Enumerable.Repeat(new KvRow(tokens, remaining), n).ToArray();

    [Fact]
    public void The_capacity_rule_is_the_longest_row_plus_headroom_up_to_256_within_the_context()
    {
        Assert.Equal(356, Shape.Capacity(100, 1000));
        Assert.Equal(105, Shape.Capacity(100, 5));
        Assert.Equal(101, Shape.Capacity(100, 0));
        Assert.Equal(4096, Shape.Capacity(4000, 256));
        Assert.Equal(4097, Shape.Capacity(4096, 10)); // rows already at the context still get one column
        Assert.Equal(120, Shape.Capacity([new KvRow(100, 3), new KvRow(20, 20)]));
        Assert.Equal(200, Shape.BytesPerToken);
    }

    [Fact]
    public void A_rebuild_peaks_at_its_first_or_last_layer()
    {
        // Layer by layer: sources S, target T slots, L = 2 layers: max(S + T/2, T + S/2) token slots of 200 bytes.
        Assert.Equal(40 * 200 + 10 * 100, Shape.RebuildPeakBytes(10, 40)); // the last layer: all new, one old layer left
        Assert.Equal(40 * 200 + 10 * 100, Shape.RebuildPeakBytes(40, 10)); // the first layer: all old, one new layer
        Assert.Equal(40 * 200 + 40 * 100, Shape.RebuildPeakBytes(40, 40));
        Assert.Equal(30 * 300, Shape.SequenceBytes(30));
    }

    [Fact]
    public void A_budget_admits_k_of_n_waiting_sequences()
    {
        // From an empty batch, n rows of 10 tokens with 5 to go: prefill sources 10n slots, a rebuilt cache of
        // n × Capacity(10, 5) = 15n slots; peak max(10n·200 + 15n·100, 15n·200 + 10n·100) = 4000n bytes.
        var waiting = Same(5, 10, 5);
        Assert.Equal(3, KvAdmission.Admissible([], 0, waiting, 64, 8192, Shape, 12_000));
        Assert.Equal(2, KvAdmission.Admissible([], 0, waiting, 64, 8192, Shape, 11_999));
        Assert.Equal(5, KvAdmission.Admissible([], 0, waiting, 64, 8192, Shape, 20_000));
        Assert.Equal(4, KvAdmission.Admissible([], 0, waiting, 4, 8192, Shape, 20_000)); // the batch size still bounds it
    }

    [Fact]
    public void The_running_rows_and_the_live_cache_count_against_the_budget()
    {
        // Two rows running at 50 positions with 100 to go in a cache of 2 × 150 slots; one joins with 10 tokens:
        // sources 300 + 10, target 3 × Capacity(50, 100) = 450: peak max(310·200 + 450·100, 450·200 + 310·100) = 121,000.
        KvRow[] running = [new(50, 100), new(50, 100)];
        KvRow[] waiting = [new(10, 5)];
        Assert.Equal(1, KvAdmission.Admissible(running, 300, waiting, 64, 8192, Shape, 121_000));
        Assert.Equal(0, KvAdmission.Admissible(running, 300, waiting, 64, 8192, Shape, 120_999));
        // The same budget admits it when the old cache is smaller: the cache alive during the rebuild counts.
        Assert.Equal(1, KvAdmission.Admissible(running, 200, waiting, 64, 8192, Shape, 120_999));
    }

    [Fact]
    public void An_empty_batch_always_admits_one_and_a_running_one_may_admit_none()
    {
        KvRow[] huge = [new(4000, 96), new(1, 1)];
        Assert.Equal(1, KvAdmission.Admissible([], 0, huge, 64, 8192, Shape, 1));
        Assert.Equal(1, KvAdmission.Admissible([], 5000, huge, 64, 8192, Shape, 1)); // an old cache of finished rows
        Assert.Equal(0, KvAdmission.Admissible([new KvRow(1, 1)], 2, huge, 64, 8192, Shape, 1));
        Assert.Equal(0, KvAdmission.Admissible([], 0, [], 64, 8192, Shape, 1));
        Assert.Equal(0, KvAdmission.Admissible(Same(4, 1, 1), 8, huge, 4, 8192, Shape, null)); // a full batch
    }

    [Fact]
    public void The_queue_stays_first_come_first_served()
    {
        // A small, a large and a small sequence; the budget fits both small ones but not the large one: the third
        // does not overtake the second.
        KvRow[] waiting = [new(10, 5), new(3000, 256), new(10, 5)];
        long twoSmall = Shape.RebuildPeakBytes(2 * 10, 2 * 15);
        Assert.Equal(1, KvAdmission.Admissible([], 0, waiting, 64, 8192, Shape, twoSmall));
        Assert.Equal(2, KvAdmission.Admissible([], 0, [waiting[0], waiting[2]], 64, 8192, Shape, twoSmall));
    }

    [Fact]
    public void Without_a_budget_the_batch_size_and_the_prefill_bound_admission()
    {
        var waiting = Same(100, 1, 16);
        Assert.Equal(54, KvAdmission.Admissible(Same(10, 30, 8), 10 * 38, waiting, 64, 8192, Shape, null));
        Assert.Equal(64, KvAdmission.Admissible([], 0, waiting, 64, 8192, Shape, null));
        Assert.Equal(64, KvAdmission.Admissible([], 0, Same(100, 4096, 1), 64, int.MaxValue, Shape, null));
        // The prefill counts prompts padded to the longest: 1 + 100 tokens would be 2 × 100 = 200 padded.
        Assert.Equal(1, KvAdmission.Admissible([], 0, [new KvRow(1, 4), new KvRow(100, 4)], 64, 150, Shape, null));
        Assert.Equal(2, KvAdmission.Admissible([], 0, [new KvRow(1, 4), new KvRow(100, 4)], 64, 200, Shape, null));
        // A single prompt longer than the prefill bound is prefilled alone.
        Assert.Equal(1, KvAdmission.Admissible([], 0, Same(3, 500, 4), 64, 150, Shape, null));
    }

    [Fact]
    public void A_rebuild_that_outgrows_the_budget_keeps_the_oldest_rows_and_at_least_one()
    {
        // Three rows at 264 positions with 43 to go outgrow their 3 × 264 cache: a rebuilt one of n × 307 slots.
        var rows = Same(3, 264, 43);
        long source = 3 * 264;
        long two = Shape.RebuildPeakBytes(source, 2 * 307), three = Shape.RebuildPeakBytes(source, 3 * 307);
        Assert.Equal(3, KvAdmission.Keepable(rows, source, Shape, three));
        Assert.Equal(2, KvAdmission.Keepable(rows, source, Shape, three - 1));
        Assert.Equal(2, KvAdmission.Keepable(rows, source, Shape, two));
        Assert.Equal(1, KvAdmission.Keepable(rows, source, Shape, two - 1));
        Assert.Equal(1, KvAdmission.Keepable(rows, source, Shape, 1));
        Assert.Equal(3, KvAdmission.Keepable(rows, source, Shape, null));
        Assert.Equal(0, KvAdmission.Keepable([], source, Shape, 1));
    }

    [Fact]
    public void The_budget_is_the_utilised_share_of_the_device_less_what_is_in_use_and_the_activation_reserve()
    {
        const long GiB = 1L << 30;
        // 80 GiB, 20 GiB in use after loading, 0.9 utilisation, 2 GiB for activations: 72 − 20 − 2 = 50 GiB.
        Assert.InRange(KvCacheBudget.FromMemory(60 * GiB, 80 * GiB, 0.9, 2 * GiB), 50 * GiB - 1, 50 * GiB);
        Assert.True(KvCacheBudget.FromMemory(5 * GiB, 80 * GiB, 0.9, 0) < 0); // another process holds the rest
        Assert.Throws<ArgumentOutOfRangeException>(() => KvCacheBudget.FromMemory(1, 2, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => KvCacheBudget.FromMemory(1, 2, 1.5, 0));
    }
}
