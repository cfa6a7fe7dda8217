using System.CommandLine;

namespace Oml.Cli.Tests;

/// <summary>One spelling per concept across commands, and the old spellings still accepted for one release.</summary>
public class VocabularyTests
{
    private static IEnumerable<(string Path, Command Command)> All(Command c, string path = "")
    {
        foreach (var sub in c.Subcommands)
        {
            var p = path.Length == 0 ? sub.Name : $"{path} {sub.Name}";
            yield return (p, sub);
            foreach (var x in All(sub, p)) yield return x;
        }
    }

    private static bool Has(Command c, string option) => c.Options.Any(o => o.Name == option || o.Aliases.Contains(option));

    [Fact]
    public void Every_renamed_option_exists_under_its_new_name_only()
    {
        var commands = All(Cli.CreateRoot()).ToDictionary(x => x.Path, x => x.Command);
        foreach (var (path, old, now) in Vocabulary.Renamed)
        {
            Assert.True(commands.TryGetValue(path, out var cmd), $"no command 'oml {path}'");
            Assert.True(Has(cmd!, now), $"'oml {path}' has no {now}");
            Assert.False(Has(cmd!, old), $"'oml {path}' still declares {old}");
        }
    }

    [Fact]
    public void No_command_declares_an_old_spelling_of_a_shared_option()
    {
        string[] old = ["--model-dir", "--base-model", "--max-tokens", "--batch"];
        var offenders = All(Cli.CreateRoot())
            .SelectMany(x => x.Command.Options.Where(o => old.Contains(o.Name)).Select(o => $"oml {x.Path} {o.Name}"))
            .Where(s => s != "oml ledger bench --batch") // events per append, not a batch size of rows
            .ToList();
        Assert.Empty(offenders);
    }

    [Fact]
    public void Old_spellings_are_rewritten_for_their_command_only_with_a_warning()
    {
        var root = Cli.CreateRoot();
        var warnings = new StringWriter();
        Assert.Equal(["owner", "register", "--model", "m", "--x"], Vocabulary.Rewrite(root, ["owner", "register", "--model-dir", "m", "--x"], warnings));
        Assert.Contains("'--model-dir' is now '--model'", warnings.ToString(), StringComparison.Ordinal);
        Assert.Equal(["train", "--batch-size=4"], Vocabulary.Rewrite(root, ["train", "--batch=4"], null));
        Assert.Equal(["ledger", "bench", "--batch", "4"], Vocabulary.Rewrite(root, ["ledger", "bench", "--batch", "4"], null));
        Assert.Equal(["verify", "--", "--max-tokens"], Vocabulary.Rewrite(root, ["verify", "--", "--max-tokens"], null));
    }
}
