using System.CommandLine;

namespace Oml.Cli;

/// <summary>
/// Old option spellings, still accepted for one release as hidden aliases: before parsing, an old spelling given to
/// the command it belonged to is rewritten to the shared one (<see cref="CliOptions"/>), with a warning on stderr.
/// Help shows only the new spellings.
/// </summary>
public static class Vocabulary
{
    /// <summary>(command path, old spelling, new spelling).</summary>
    public static readonly IReadOnlyList<(string Command, string Old, string New)> Renamed =
    [
        ("owner register", "--model-dir", "--model"),
        ("owner deliver", "--base-model", "--base"),
        ("owner add-version", "--model-dir", "--model"),
        ("host acknowledge", "--model-dir", "--model"),
        ("host serve", "--model-dir", "--model"),
        ("train", "--batch", "--batch-size"),
        ("attack sft", "--batch", "--batch-size"),
        ("attack distill", "--batch", "--batch-size"),
        ("verify", "--max-tokens", "--max-new-tokens"),
        ("user ask", "--max-tokens", "--max-new-tokens"),
        ("trace simulate", "--json", "--json-out"),
    ];

    /// <summary>
    /// <paramref name="args"/> with old spellings rewritten for the command they name (one warning each on
    /// <paramref name="warnings"/>); tokens after <c>--</c> are left alone.
    /// </summary>
    public static string[] Rewrite(RootCommand root, string[] args, TextWriter? warnings)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(args);
        var path = CommandPath(root, args);
        var renames = Renamed.Where(r => r.Command == path).ToList();
        if (renames.Count == 0) return args;
        var result = (string[])args.Clone();
        for (int i = 0; i < result.Length; i++)
        {
            if (result[i] == "--") break;
            int eq = result[i].IndexOf('=', StringComparison.Ordinal);
            var name = eq > 0 ? result[i][..eq] : result[i];
            foreach (var (_, old, now) in renames)
            {
                if (name != old) continue;
                result[i] = now + (eq > 0 ? result[i][eq..] : "");
                warnings?.WriteLine($"oml: warning: '{old}' is now '{now}' for 'oml {path}'; the old spelling goes in the next release");
                break;
            }
        }
        return result;
    }

    /// <summary>The subcommand names at the start of <paramref name="args"/>, e.g. "owner register".</summary>
    public static string CommandPath(Command root, IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(args);
        var names = new List<string>();
        Command current = root;
        foreach (var a in args)
        {
            var next = current.Subcommands.FirstOrDefault(c => c.Name == a || c.Aliases.Contains(a));
            if (next is null) break;
            names.Add(next.Name);
            current = next;
        }
        return string.Join(' ', names);
    }
}
