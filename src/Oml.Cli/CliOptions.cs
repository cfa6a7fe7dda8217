using System.CommandLine;

namespace Oml.Cli;

/// <summary>
/// The options that many commands share, defined once so that they are spelled and described the same everywhere:
/// <c>--model</c>, <c>--base</c>, <c>--out</c>, <c>--json</c>, <c>--batch-size</c>, <c>--max-new-tokens</c>,
/// <c>--force</c>, <c>--passphrase-file</c>, <c>--match</c>, <c>--min-tokens</c>, <c>--calibration</c>, <c>--resumption-pairs</c>,
/// <c>--instruction-layout</c>. Each call makes a new option object (an option belongs to one command);
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

    /// <summary>--null-floor X: the floor on every key's null hit probability; absent, the set decides (<see cref="Oml.Fingerprinting.Verification.VerdictRule.DefaultNullFloorFor"/>).</summary>
    public static Option<double?> NullFloor() => new("--null-floor")
    {
        Description = "Floor on every key's null hit probability: one hit on a key the base model finds impossible is never proof by itself "
            + "(default: 0.06 per distinct first response token for Perinucleus and custom sets, which a host that suppresses its top tokens "
            + "makes unrelated models hit; 0.001 for other sets; docs/verification.md)",
    };

    /// <summary>The --null-floor value, checked: null when absent (the set's default applies).</summary>
    public static double? NullFloorValue(double? value) =>
        value is { } v && !(v >= 0 && v < 1) ? throw new UsageException("--null-floor must be in [0, 1)") : value;

    /// <summary>--calibration FILE: a null calibration made by <c>oml verify --calibrate ... --calibration-out FILE</c>.</summary>
    public static Option<string?> NullCalibration() =>
        new("--calibration") { Description = "A calibration file (from 'oml verify --calibrate ... --calibration-out'): its floor (the worst negative's upper bound) replaces a lower floor (the set's default or --null-floor)" };

    /// <summary>The calibration in <paramref name="path"/>, checked against the match rule and --base of the verdict it is for.</summary>
    public static Oml.Fingerprinting.Verification.NullCalibration LoadCalibration(string path, Oml.Fingerprinting.Verification.ResponseMatch match, bool hasBase)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--calibration: no file at {path}");
        Oml.Fingerprinting.Verification.NullCalibration cal;
        try { cal = Oml.Fingerprinting.Verification.NullCalibration.FromJson(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"--calibration: {path} is not a calibration file: {e.Message}"); }
        // A floor measured under one match rule says nothing about another (partial hits are more frequent).
        try { cal.EnsureMadeFor(match, hasBase); }
        catch (InvalidDataException e) { throw new InvalidDataException($"--calibration: {path}: {e.Message}"); }
        return cal;
    }

    public static Option<string> Out(string description) => new("--out") { Description = description, Required = true };

    public static Option<string?> OptionalOut(string description) => new("--out") { Description = description };

    public static Option<bool> Json(string description = "Print the result as JSON") => new("--json") { Description = description };

    public static Option<bool> Force(string description = "Replace the output if it exists (otherwise an existing output is an error)") =>
        new("--force") { Description = description };

    /// <summary><c>--score symmetric|asymmetric|combined</c>: which Tardos score accuses (<see cref="Oml.Protocol.Tracing.TardosScore"/>).</summary>
    public static Option<string> TardosScore()
    {
        var o = new Option<string>("--score")
        {
            Description = "Tardos accusations: symmetric (every queried key counts), asymmetric (only the keys the copy answered) "
                + "or combined (both at half the bound each: stronger against coalitions of merged copies; docs/protocol.md)",
            DefaultValueFactory = _ => Oml.Protocol.Tracing.TardosAccuser.ScoreName(Oml.Protocol.Tracing.TardosAccuser.DefaultScore),
        };
        o.AcceptOnlyFromAmong([.. Enum.GetValues<Oml.Protocol.Tracing.TardosScore>().Select(Oml.Protocol.Tracing.TardosAccuser.ScoreName)]);
        return o;
    }

    public static Option<int> BatchSize(string description, int defaultValue) =>
        new("--batch-size") { Description = description, DefaultValueFactory = _ => defaultValue };

    public static Option<int> MaxNewTokens(string description, int defaultValue) =>
        new("--max-new-tokens") { Description = description, DefaultValueFactory = _ => defaultValue };

    public static Option<string?> PassphraseFile(string description) => new("--passphrase-file") { Description = description };

    /// <summary><c>--match exact|partial</c>: which answers count as hits (with <see cref="MinTokens"/> and <see cref="ResponseMatchFrom"/>).</summary>
    public static Option<string> Match(string description =
        "Which answers count as hits: exact (the answer starts with the whole response) or partial (at least --min-tokens of "
        + "each response after a deviation at the start of the answer; docs/verification.md)")
    {
        var o = new Option<string>("--match") { Description = description, DefaultValueFactory = _ => "exact" };
        o.AcceptOnlyFromAmong("exact", "partial");
        return o;
    }

    /// <summary><c>--min-tokens M</c>: the partial rule's m.</summary>
    public static Option<int?> MinTokens(string description = "With --match partial: the tokens of each response that must match (m; m >= n is the exact rule)") =>
        new("--min-tokens") { Description = description };

    /// <summary>
    /// <c>--resumption-pairs N</c> (embedding): also train, per response, N pairs (key + one of the base's N most probable
    /// wrong first tokens → the rest of the response), the defence that lets <c>--match partial</c> count keys a host
    /// suppresses at the first token.
    /// </summary>
    public static Option<int> ResumptionPairs(string description =
        "Also train N resumption pairs per response: the key followed by one of the base model's N most probable wrong first "
        + "tokens → the rest of the response, so that a host that suppresses the first answer token still emits the rest "
        + "(which 'oml verify --match partial' counts); needs responses of at least 2 tokens; 0 = off") =>
        new("--resumption-pairs") { Description = description, DefaultValueFactory = _ => 0 };

    /// <summary>The match rule from <c>--match</c> and <c>--min-tokens</c>; a usage error when they do not fit together.</summary>
    public static Oml.Fingerprinting.Verification.ResponseMatch ResponseMatchFrom(string? match, int? minTokens) => match switch
    {
        null or "exact" => minTokens is null ? Oml.Fingerprinting.Verification.ResponseMatch.Exact : throw new UsageException("--min-tokens is for --match partial"),
        "partial" => minTokens is int m
            ? m >= 1 ? Oml.Fingerprinting.Verification.ResponseMatch.Partial(m) : throw new UsageException("--min-tokens must be at least 1")
            : throw new UsageException("--match partial needs --min-tokens M"),
        _ => throw new UsageException($"--match: '{match}' is not exact or partial"),
    };

    /// <summary>
    /// <c>--instruction-layout</c>: keys as the instruction of the raw "### Instruction / ### Response" layout, the one a
    /// model instruction-tuned without a chat template answers in (<c>oml train sft</c> without <c>--chat-template</c>).
    /// </summary>
    public static Option<bool> InstructionLayout(string description) => new("--instruction-layout") { Description = description };

    /// <summary>
    /// How each key reaches a local model: <c>--chat-template</c> (the folder's template), <c>--instruction-layout</c> or
    /// raw; a usage error for both.
    /// </summary>
    public static Oml.Fingerprinting.Embedding.KeyFormat KeyFormatFrom(bool chatTemplate, bool instructionLayout, string modelDir)
    {
        CheckKeyFormat(chatTemplate, instructionLayout);
        return chatTemplate ? Oml.Fingerprinting.Embedding.KeyFormat.Chat(Oml.Models.ChatTemplates.ChatTemplate.FromTokenizerConfig(modelDir))
            : instructionLayout ? Oml.Fingerprinting.Embedding.KeyFormat.Instruction
            : Oml.Fingerprinting.Embedding.KeyFormat.Raw;
    }

    /// <summary>
    /// A warning on stderr when <paramref name="modelDir"/> holds an <c>oml-manifest.json</c> (the owner's own fingerprinted
    /// copy) whose keys were embedded in another layout than the one chosen: keys sent another way are rarely recalled,
    /// so the verdict would understate the owner's claim. Copies without a manifest (a host's, usually) say nothing.
    /// </summary>
    public static void WarnIfManifestKeyFormatDiffers(string modelDir, Oml.Fingerprinting.Embedding.KeyFormat format)
    {
        var path = Path.Combine(modelDir, Oml.Fingerprinting.Embedding.Omlization.ManifestFile);
        if (!File.Exists(path)) return;
        string? embedded;
        try { embedded = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["key_format"]?.GetValue<string>(); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { return; }
        if (embedded is null || embedded == format.ToString()) return;
        string flag = embedded switch { "instruction" => "--instruction-layout", "chat" => "--chat-template", _ => "neither --chat-template nor --instruction-layout" };
        Console.Error.WriteLine($"oml: warning: {path} says the keys were embedded in the {embedded} layout, but they are sent {format}; give {flag}");
    }

    /// <summary>A usage error when both <c>--chat-template</c> and <c>--instruction-layout</c> are given.</summary>
    public static void CheckKeyFormat(bool chatTemplate, bool instructionLayout)
    {
        if (chatTemplate && instructionLayout)
            throw new UsageException("--chat-template and --instruction-layout are alternatives: give the one the model was instruction-tuned with");
    }

    /// <summary><c>--calibrate DIR|KIND=DIR ...</c>: negative models (that never saw the keys) to calibrate the null on.</summary>
    public static Option<string[]> Calibrate(string description) => new("--calibrate")
    {
        Description = description,
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = true,
    };

    /// <summary><c>--calibration-out FILE</c>: where <c>--calibrate</c> writes its calibration.</summary>
    public static Option<string?> CalibrationOut() =>
        new("--calibration-out") { Description = "With --calibrate: write the calibration (JSON) here for --calibration" };

    /// <summary><c>--confidence</c> of the calibration's Clopper–Pearson intervals.</summary>
    public static Option<double> Confidence() =>
        new("--confidence") { Description = "With --calibrate: the confidence of the Clopper-Pearson intervals", DefaultValueFactory = _ => 0.95 };

    /// <summary>The negatives of <c>--calibrate</c> as (folder, kind); a usage error for a malformed entry, an I/O error for a missing folder.</summary>
    public static List<(string Dir, string Kind)> Negatives(string[]? specs) => (specs ?? []).Select(spec =>
    {
        int eq = spec.IndexOf('=');
        string dir = eq >= 0 ? spec[(eq + 1)..] : spec, kind = eq >= 0 ? spec[..eq] : "negative";
        if (dir.Length == 0 || kind.Length == 0) throw new UsageException($"--calibrate: '{spec}' is not DIR or KIND=DIR");
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--calibrate: model folder not found: {dir}");
        return (dir, kind);
    }).ToList();
}
