using System.CommandLine;
using System.Text.RegularExpressions;
using Oml.Fingerprinting.Embedding;
using Oml.Models.Training;

namespace Oml.Cli.Tests;

/// <summary>
/// <c>oml embed</c> on a device whose training state leaves too little memory for one row: a one-line error before
/// training that names only options <c>oml embed</c> has.
/// </summary>
[Collection(nameof(CliTests))]
public partial class EmbedMemoryTests
{
    private const long GiB = 1L << 30;

    /// <summary>The 8B of the bug on an 80 GB card: nothing left after weights, base copy, gradients and moments.</summary>
    private static FingerprintTrainer.MemoryShortage Shortage(bool capped = false, bool checkpointOff = false, bool wouldFit = false, bool float32 = false,
        bool lora = false, bool dataParallel = false, bool shardedWeights = false, bool shardedOptimizer = false) =>
        new("cuda:0", (long)(79.2 * GiB), 80 * GiB, 0, capped, "fingerprint row", 17, 13_648_896, Checkpoint: !checkpointOff, wouldFit, checkpointOff,
            BaseCopy: true, float32, lora, dataParallel, shardedWeights, shardedOptimizer);

    [GeneratedRegex(@"--[a-z][a-z-]*")]
    private static partial Regex Flag();

    [Fact]
    public void The_shortage_message_names_only_options_that_oml_embed_has()
    {
        Command embed = Cli.CreateRoot().Subcommands.Single(c => c.Name == "embed");
        var options = embed.Options.Select(o => o.Name).ToHashSet();
        var messages = new[]
        {
            Shortage(),
            Shortage(capped: true, checkpointOff: true, wouldFit: true, float32: true),
            Shortage(dataParallel: true),
            Shortage(dataParallel: true, shardedOptimizer: true, lora: true),
            Shortage(dataParallel: true, shardedWeights: true),
        }.Select(FingerprintTrainer.ShortageMessage).ToList();
        var named = messages.SelectMany(m => Flag().Matches(m).Select(x => x.Value)).ToHashSet();
        Assert.NotEmpty(named);
        Assert.All(named, f => Assert.Contains(f, options));
        Assert.All(messages, m => Assert.DoesNotContain('\n', m));

        var bug = messages[0];
        Assert.StartsWith("the training state (weights, the base copy for averaging, gradients and AdamW moments: ~80.0 GiB) leaves 0.0 GiB of the 79.2 GiB of cuda:0", bug);
        Assert.Contains("less than one fingerprint row needs (~13.0 MiB for 17 tokens, with activation checkpointing)", bug);
        Assert.Contains("--gpus N with --shard-optimizer or --shard-weights", bug);
        Assert.Contains("--lora R", bug);
        // Remedies that do not apply to the run are left out.
        Assert.DoesNotContain("--activation-checkpointing", bug);
        Assert.DoesNotContain("--memory-budget-gb", bug);
        Assert.DoesNotContain("--dtype", bug);
        Assert.Contains("--activation-checkpointing auto", messages[1]);
        Assert.Contains("a larger --memory-budget-gb", messages[1]);
        Assert.Contains("of the 79.2 GiB of --memory-budget-gb", messages[1]);
        Assert.Contains("--dtype bfloat16", messages[1]);
        Assert.DoesNotContain("--gpus N", messages[2]);
        Assert.Contains("--shard-weights, or more --gpus", messages[3]);
        Assert.DoesNotContain("--lora", messages[3]);
        Assert.Contains("use a device with more memory (--device), more --gpus", messages[4]);
    }

    [Fact]
    public void A_shortage_is_a_one_line_failure()
    {
        var e = new InsufficientDeviceMemoryException(FingerprintTrainer.ShortageMessage(Shortage()), 17, 13_648_896, 0, checkpoint: true, checkpointWouldFit: false);
        var error = Console.Error;
        var captured = new StringWriter();
        Console.SetError(captured);
        int code;
        try { code = Cli.Report(e); }
        finally { Console.SetError(error); }
        Assert.Equal(Cli.Failure, code);
        var lines = captured.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("oml: error: the training state", lines[0]);
    }
}
