using Oml.Fingerprinting.Embedding;

namespace Oml.Cli.Tests;

/// <summary><c>oml embed</c>'s closing line says how the result was merged back towards the base, or that it was not.</summary>
public class EmbedSummaryTests
{
    private static EmbeddingResult Result(double lambda, params double[] tried) =>
        new([new EmbeddingProgress(12, 96, 0.01, 1.0, 3.5)], true, 1000)
        {
            KeptEpoch = 12, MergeLambda = lambda, Loss = 0.2, Accuracy = 1.0,
            MergeTrials = [.. tried.Select(l => new MergeTrial(l, 0.9, 0.9, null))],
        };

    [Fact]
    public void A_merge_names_its_lambda()
    {
        var line = EmbedCommand.Summary("out", 64, Result(0.15, 0.9, 0.5, 0.15));
        Assert.Contains("merged back with λ = 0.15", line);
        Assert.DoesNotContain("not merged", line);
    }

    [Fact]
    public void A_merge_tried_where_no_lambda_qualified_says_so()
    {
        // The random-init Mistral of the λ-cap measurement: every λ tried lost a key, so the trained weights came back as they were.
        var line = EmbedCommand.Summary("out", 16, Result(0, 0.1, 0.05));
        Assert.Contains("not merged back (none of the 2 λs tried, 0.05 to 0.10, kept every key within --merge-max-loss)", line);
        Assert.DoesNotContain("merged back with", line);
    }

    [Fact]
    public void No_merge_tried_says_nothing_of_one()
    {
        var line = EmbedCommand.Summary("out", 16, Result(0));
        Assert.DoesNotContain("merged", line);
    }

    [Fact]
    public void The_even_merge_with_the_base_is_reported()
    {
        var line = EmbedCommand.Summary("out", 64, Result(0.15, 0.2, 0.15) with { MergeSurvival = 0.6875 });
        Assert.Contains("merged back with λ = 0.15, an even merge with the base keeps 68.8 %", line);
        Assert.DoesNotContain("below", line);
        // Met: nothing more said.
        Assert.DoesNotContain("below", EmbedCommand.Summary("out", 64, Result(0.15, 0.2, 0.15) with { MergeSurvival = 0.75 }, target: 0.7));
    }

    [Fact]
    public void A_share_asked_for_and_not_reached_is_said()
    {
        var tried = Result(0.05, 0.2, 0.15, 0.1, 0.05);
        var r = tried with { MergeSurvival = 0.5, MergeTrials = [.. tried.MergeTrials.Select(t => t with { MergeSurvival = 0.4 })] };
        var line = EmbedCommand.Summary("out", 64, r, target: 0.7);
        Assert.Contains("an even merge with the base keeps 50.0 % (below --merge-survival 0.7: no λ reached it, so the one whose merge keeps the most was kept)", line);
        // Kept unmerged for that reason: not the loss-margin wording.
        var unmerged = r with { MergeLambda = 0 };
        var line0 = EmbedCommand.Summary("out", 64, unmerged, target: 0.7);
        Assert.Contains(", not merged back, an even merge with the base keeps 50.0 % (below", line0);
        Assert.DoesNotContain("--merge-max-loss", line0);
    }
}
