using System.CommandLine;

namespace Oml.Cli.Tests;

/// <summary>Every command that loads a model takes the shared <c>--device</c> and <c>--dtype</c> (Cli.DeviceOption, Cli.DTypeOption).</summary>
public class ModelOptionsTests
{
    /// <summary>
    /// The commands that load a model folder. Not listed: <c>convert</c> (a CPU conversion whose --dtype is the output's),
    /// <c>demo</c> (builds its own float32 model), <c>lab run</c> (devices and models from its config), and the protocol
    /// commands <c>owner deliver</c> and <c>host serve</c> (owned by the protocol work).
    /// </summary>
    public static TheoryData<string> LoadingCommands => new()
    {
        "generate", "score", "perplexity", "fingerprints generate", "embed", "train", "verify", "serve",
        "attack merge", "attack quantize", "attack prune", "attack sft", "attack distill", "attack probe",
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
