using System.CommandLine;

namespace Oml.Cli.Tests;

/// <summary>One spelling per concept across commands, and the old spellings still accepted for one release.</summary>
[Collection(nameof(CliTests))]
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
    /// <summary>
    /// Each old spelling is hidden (the parser alone rejects it) and still accepted (rewritten, it parses and sets the new option).
    /// </summary>
    [Fact]
    public void Every_old_spelling_still_parses_as_its_new_option()
    {
        var root = Cli.CreateRoot();
        var commands = All(root).ToDictionary(x => x.Path, x => x.Command);
        foreach (var (path, old, now) in Vocabulary.Renamed)
        {
            string[] args = [.. path.Split(' '), old, "7"];
            Assert.Contains(root.Parse(args).Errors, e => e.Message.Contains($"'{old}'", StringComparison.Ordinal));
            var rewritten = root.Parse(Vocabulary.Rewrite(root, args, null));
            Assert.DoesNotContain(rewritten.Errors, e => e.Message.Contains($"'{old}'", StringComparison.Ordinal) || e.Message.Contains($"'{now}'", StringComparison.Ordinal));
            var option = commands[path].Options.Single(o => o.Name == now);
            var result = rewritten.GetResult(option);
            Assert.True(result is not null && !result.Implicit, $"oml {path} {old} 7 does not set {now}");
            Assert.Equal("7", string.Join("", result!.Tokens.Select(t => t.Value)));
        }
    }

    [Fact]
    public void An_old_spelling_runs_with_a_warning()
    {
        // train --batch 4 without data: the old spelling is accepted (a warning), and the run stops at the missing data.
        var (code, _, err) = CliRunner.Run("train", "--batch", "4");
        Assert.Equal(Cli.Usage, code);
        Assert.Contains("'--batch' is now '--batch-size' for 'oml train'", err, StringComparison.Ordinal);
        Assert.Contains("no training data", err, StringComparison.Ordinal);
    }
}
