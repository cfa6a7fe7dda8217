using System.CommandLine;

namespace Oml.Cli;

/// <summary>
/// The options that many commands share, defined once so that they are spelled and described the same everywhere:
/// <c>--model</c>, <c>--base</c>, <c>--out</c>, <c>--json</c>, <c>--batch-size</c>, <c>--max-new-tokens</c>,
/// <c>--force</c>, <c>--passphrase-file</c>. Each call makes a new option object (an option belongs to one command);
/// the description may be specialised, the spelling not. Old spellings are accepted for one release through
/// <see cref="Vocabulary"/>.
/// </summary>
public static class CliOptions
{
    public static Option<string> Model(string description = "A Hugging Face model folder (config.json, safetensors)") =>
        new("--model") { Description = description, Required = true };

    public static Option<string?> OptionalModel(string description = "A Hugging Face model folder (config.json, safetensors)") =>
        new("--model") { Description = description };

    public static Option<string?> Base(string description = "The base model folder") => new("--base") { Description = description };

    public static Option<string> Out(string description) => new("--out") { Description = description, Required = true };

    public static Option<string?> OptionalOut(string description) => new("--out") { Description = description };

    public static Option<bool> Json(string description = "Print the result as JSON") => new("--json") { Description = description };

    public static Option<bool> Force(string description = "Replace the output if it exists (otherwise an existing output is an error)") =>
        new("--force") { Description = description };

    public static Option<int> BatchSize(string description, int defaultValue) =>
        new("--batch-size") { Description = description, DefaultValueFactory = _ => defaultValue };

    public static Option<int> MaxNewTokens(string description, int defaultValue) =>
        new("--max-new-tokens") { Description = description, DefaultValueFactory = _ => defaultValue };

    public static Option<string?> PassphraseFile(string description) => new("--passphrase-file") { Description = description };
}
