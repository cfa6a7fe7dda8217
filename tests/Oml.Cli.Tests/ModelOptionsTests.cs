using System.CommandLine;

namespace Oml.Cli.Tests;

/// <summary>Every command that loads a model takes the shared <c>--device</c> and <c>--dtype</c> (Cli.DeviceOption, Cli.DTypeOption).</summary>
public class ModelOptionsTests
{
    /// <summary>
    /// The commands that load a model folder. Not listed: <c>convert</c> (a CPU conversion whose --dtype is the output's),
    /// <c>demo</c> (builds its own float32 model) and <c>lab run</c> (devices and models from its config).
    /// </summary>
    public static TheoryData<string> LoadingCommands => new()
    {
        "generate", "score", "perplexity", "fingerprints generate", "embed", "train", "verify", "serve",
        "attack merge", "attack quantize", "attack prune", "attack sft", "attack distill", "attack probe", "attack detect",
        "host serve", "owner deliver",
    };

    [Theory, MemberData(nameof(LoadingCommands))]
    public void Loading_commands_take_device_and_dtype(string path)
    {
        Command cmd = Cli.CreateRoot();
        foreach (var name in path.Split(' ')) cmd = cmd.Subcommands.Single(c => c.Name == name);
        var options = cmd.Options.Select(o => o.Name).ToHashSet();
        Assert.Contains("--device", options);
        Assert.Contains("--dtype", options);
    }
}
