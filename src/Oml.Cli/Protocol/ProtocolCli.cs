using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Cli.Protocol;

/// <summary>
/// What the role commands (<c>oml owner|host|user|prover|gov|protocol</c>) share: where the protocol runs (--ledger FILE,
/// the embedded ledger; or --chain URL with --deployment FILE, the contracts on an EVM node; exactly one), --keystore,
/// --passphrase-file and --json, opening the backend, loading the signing key, printing results (aligned "key  value"
/// lines, or one JSON object) (errors become messages in <see cref="Cli.Run"/>).
/// </summary>
internal sealed class ProtocolCli
{
    public Option<string?> Ledger { get; } = new("--ledger") { Description = "The protocol ledger (a SQLite file made by `oml protocol init`); or use --chain" };
    public Option<string?> Chain { get; } = new("--chain")
    {
        Description = "JSON-RPC URL of an EVM node where the protocol's contracts are deployed (by `oml chain deploy`); or use --ledger",
    };
    public Option<string?> Deployment { get; } = new("--deployment")
    {
        Description = $"With --chain: the deployment file written by `oml chain deploy` (default: ${ChainCli.DeploymentEnv}, else ./{ChainCli.DefaultDeploymentFile})",
    };
    public Option<string> Keystore { get; } = new("--keystore") { Description = "The acting account's keystore (made by `oml account new`); on a chain, the sender of the transactions", Required = true };
    public Option<string?> PassphraseFile { get; } = CliOptions.PassphraseFile(
        $"File whose first line is the passphrase of the keystore and of any fingerprint-set file the command reads (otherwise the {FingerprintIO.PassphraseEnv} environment variable)");
    public Option<bool> Json { get; } = CliOptions.Json("Print one JSON object instead of aligned text");
    /// <summary>Added by the commands that write a file: allows replacing an existing one.</summary>
    public Option<bool> Force { get; } = CliOptions.Force("Replace the output file if it exists");

    /// <summary>A command with --ledger/--chain/--deployment, --json and (when <paramref name="signs"/>) --keystore and --passphrase-file.</summary>
    public static (Command Command, ProtocolCli Options) Command(string name, string description, bool signs = true)
    {
        var o = new ProtocolCli();
        var cmd = new Command(name, description) { o.Ledger, o.Chain, o.Deployment, o.Json };
        o.ValidateBackendOn(cmd);
        if (signs)
        {
            cmd.Add(o.Keystore);
            cmd.Add(o.PassphraseFile);
        }
        return (cmd, o);
    }

    /// <summary>
    /// Makes exactly one of --ledger and --chain required on <paramref name="cmd"/> (a parse error, exit 2, otherwise);
    /// with <paramref name="optional"/>, neither is also allowed (a command that can run without the protocol).
    /// </summary>
    public void ValidateBackendOn(Command cmd, bool optional = false) => cmd.Validators.Add(result =>
    {
        if (BackendProblem(result.GetValue(Ledger), result.GetValue(Chain), result.GetValue(Deployment), optional) is { } problem) result.AddError(problem);
    });

    internal static string? BackendProblem(string? ledger, string? chain, string? deployment, bool optional = false)
    {
        if (ledger is not null && chain is not null) return "--ledger and --chain are mutually exclusive: the protocol runs either on the embedded ledger or on a chain";
        if (ledger is null && chain is null && !optional) return "give --ledger FILE (the embedded ledger) or --chain URL (the contracts on an EVM node)";
        if (deployment is not null && chain is null) return "--deployment goes with --chain";
        return null;
    }

    /// <summary>
    /// Opens the embedded ledger, verifies its hash chain and that it extends the head pinned for it (<see cref="LedgerPins"/>),
    /// and replays it; a missing file, a damaged or rewritten ledger, or an uninitialised one is a clear failure.
    /// </summary>
    public static Session Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no ledger at {path}: create one with `oml protocol init --ledger {path} --keystore TREASURY`", path);
        var ledger = SqliteLedger.Open(path);
        try
        {
            var engine = ProtocolEngine.Open(ledger);
            LedgerPins.Check(ledger, path);
            return new Session(new LedgerBackend(engine, Path.GetFullPath(path)), ledger);
        }
        catch
        {
            ledger.Dispose();
            throw;
        }
    }

    /// <summary>Opens the backend the command line names: the ledger (<see cref="Open(string)"/>) or the chain (<see cref="ChainCli.OpenAsync"/>).</summary>
    public async Task<Session> OpenAsync(ParseResult r, CancellationToken ct = default)
    {
        if (BackendProblem(r.GetValue(Ledger), r.GetValue(Chain), r.GetValue(Deployment)) is { } problem) throw new UsageException(problem);
        if (r.GetValue(Ledger) is { } path) return Open(path);
        return new Session(await ChainCli.OpenAsync(r.GetValue(Chain)!, r.GetValue(Deployment), ct).ConfigureAwait(false), null) { ChainUrl = r.GetValue(Chain) };
    }

    /// <summary>The keystore's key, decrypted with the passphrase from --passphrase-file or OML_PASSPHRASE.</summary>
    public PrivateKey Key(ParseResult r) => LoadKey(r.GetValue(Keystore)!, r.GetValue(PassphraseFile), "--keystore");

    public static PrivateKey LoadKey(string path, string? passphraseFile, string what)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{what}: no keystore at {path} (create one with `oml account new`)", path);
        var passphrase = FingerprintIO.RequirePassphrase(passphraseFile, $"{what} {path} needs its passphrase");
        try
        {
            return Oml.Protocol.Crypto.Keystore.Load(path, passphrase);
        }
        catch (KeystoreException e)
        {
            throw new InvalidDataException($"{what} {path}: {e.Message}", e);
        }
    }

    /// <summary>An address option's value in canonical form (a usage error when malformed).</summary>
    public static string Address(string text, string option) =>
        Hex.TryAddress(text, out var a) ? a : throw new UsageException($"{option}: '{text}' is not an address (0x + 40 hex digits)");

    /// <summary>A random 63-bit nonce (permits).</summary>
    public static long RandomNonce() => (long)(BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) >> 1);

    public static string Money(long v) => v.ToString("N0", CultureInfo.InvariantCulture);

    public static string Time(long unix) => DateTimeOffset.FromUnixTimeSeconds(unix).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}

/// <summary>
/// An open protocol backend: the embedded ledger (closing the session pins the head the engine verified) or a chain.
/// </summary>
internal sealed class Session(IProtocolBackend backend, SqliteLedger? ledger) : IDisposable
{
    public IProtocolBackend Backend { get; } = backend;
    public ProtocolState State => Backend.State;
    public long Now => Backend.Now;
    public bool OnChain => Backend.Kind != "ledger";

    /// <summary>The embedded ledger's engine; a clear failure on a chain (for the few ledger-only steps).</summary>
    public ProtocolEngine Engine(string what) => Backend is LedgerBackend l ? l.Engine
        : throw new NotSupportedException($"{what} works on the embedded ledger only (this is {Backend.Description})");

    /// <summary>
    /// Waits for protocol time to move on (a claim's reveal must come later than its commit): a moment on the ledger;
    /// on a chain, until a later block (see <see cref="ChainCli.WaitForLaterBlockAsync"/>).
    /// </summary>
    public Task WaitForLaterTimeAsync(CancellationToken ct) =>
        ChainUrl is { } url ? ChainCli.WaitForLaterBlockAsync(url, ct) : Task.Delay(200, ct);

    /// <summary>The node's RPC URL on a chain; null on the ledger.</summary>
    public string? ChainUrl { get; init; }

    /// <summary>A report that names the backend in its JSON.</summary>
    public Report Report() => new Report { OnChain = OnChain }.Json("backend", Backend.Kind);

    public void Dispose()
    {
        try
        {
            if (ledger is not null) LedgerPins.Record(ledger.LedgerId, State.Height, State.HeadHash);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"oml: warning: could not pin the ledger's head in {LedgerPins.Folder}: {e.Message}");
        }
        finally { Backend.Dispose(); }
    }
}

/// <summary>
/// Pinned ledger heads: after every command, the CLI records the head it verified (height and hash) per ledger id in
/// the user's own folder (<c>$OML_PIN_DIR</c>, else <c>$XDG_CONFIG_HOME/oml/ledger-pins</c>, else
/// <c>~/.config/oml/ledger-pins</c>; one file <c>LEDGER_ID.head</c>, "HEIGHT HASH", written atomically), and refuses
/// a ledger that no longer extends it: whoever holds the ledger file can rewrite it consistently (recomputing every
/// hash) or truncate it, and only a record kept outside the file shows that.
/// </summary>
internal static class LedgerPins
{
    public const string DirEnv = "OML_PIN_DIR";

    public static string Folder
    {
        get
        {
            if (Environment.GetEnvironmentVariable(DirEnv) is { Length: > 0 } d) return d;
            var config = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } x ? x
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            return Path.Combine(config, "oml", "ledger-pins");
        }
    }

    public static string PathFor(string ledgerId) => Path.Combine(Folder, ledgerId + ".head");

    /// <summary>The pinned head of ledger <paramref name="ledgerId"/>, or null when none was recorded.</summary>
    public static (long Height, byte[] Hash)? Read(string ledgerId)
    {
        string path = PathFor(ledgerId);
        if (!File.Exists(path)) return null;
        var parts = File.ReadAllText(path).Trim().Split(' ');
        if (parts.Length != 2 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long h) || h < 1
            || parts[1].Length != 64 || !parts[1].All(Uri.IsHexDigit))
            throw new InvalidDataException($"{path}: not a pinned head (\"HEIGHT HASH\"); remove it to pin the ledger's current head again");
        return (h, Convert.FromHexString(parts[1]));
    }

    /// <summary>Throws <see cref="LedgerCorruptException"/> when <paramref name="ledger"/> does not extend its pinned head.</summary>
    public static void Check(ILedger ledger, string what)
    {
        if (Read(ledger.LedgerId) is not { } pin) return;
        var problem = Problem(ledger, pin);
        if (problem is not null)
            throw new LedgerCorruptException($"{what} no longer extends the head pinned in {PathFor(ledger.LedgerId)} ({pin.Height} {Convert.ToHexStringLower(pin.Hash)}): {problem}");
    }

    /// <summary>Why <paramref name="ledger"/> does not extend <paramref name="pin"/>, or null when it does.</summary>
    public static string? Problem(ILedger ledger, (long Height, byte[] Hash) pin)
    {
        long height = ledger.Height;
        if (height < pin.Height) return $"it has only {height} events (truncated or rewritten)";
        var ev = ledger.Read(pin.Height - 1).First();
        return ev.Hash.AsSpan().SequenceEqual(pin.Hash) ? null
            : $"event {pin.Height - 1}'s hash is {Convert.ToHexStringLower(ev.Hash)} (the ledger was rewritten at or before that event)";
    }

    /// <summary>Pins (<paramref name="height"/>, <paramref name="hash"/>) unless a later head is pinned already.</summary>
    public static void Record(string ledgerId, long height, byte[] hash)
    {
        if (height < 1) return;
        if (Read(ledgerId) is { } pin && pin.Height >= height) return;
        FingerprintIO.WriteTextAtomic(PathFor(ledgerId), $"{height.ToString(CultureInfo.InvariantCulture)} {Convert.ToHexStringLower(hash)}\n", overwrite: true);
    }

    public static void Record(ILedger ledger)
    {
        var v = ledger.Verify();
        if (!v.Intact) throw new LedgerCorruptException($"the ledger does not verify: {v.Problem}");
        Record(ledger.LedgerId, ledger.Height, ledger.HeadHash);
    }
}
