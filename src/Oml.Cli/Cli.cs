using System.CommandLine;
using System.Reflection;
using Oml.Engine;
using Oml.Protocol.Core;

namespace Oml.Cli;

/// <summary>The command line itself is wrong: a missing or conflicting option, a value out of range (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Shared command-line plumbing: exit codes and the one place where errors become messages and exit codes.</summary>
public static class Cli
{
    public const int Ok = 0;
    /// <summary>The work failed: bad input data (a damaged file, an absurd config), a rejected action, a libtorch error, ...</summary>
    public const int Failure = 1;
    /// <summary>The command line itself was wrong: a parse error or a <see cref="UsageException"/>.</summary>
    public const int Usage = 2;
    /// <summary>
    /// The work stopped early on request or at its time limit, with what it had done saved, and the same command resumes
    /// it (sysexits.h's EX_TEMPFAIL: "try again later"): <c>oml train --time-limit</c>, SIGTERM, <c>oml lab run --time-limit</c>.
    /// </summary>
    public const int Stopped = 75;

    /// <summary>Set to print the stack trace of unexpected errors (bugs) as well.</summary>
    public const string DebugEnv = "OML_DEBUG";

    /// <summary>The <c>oml</c> command with all its subcommands.</summary>
    public static RootCommand CreateRoot() => new("oml: fingerprint open-weight language models and prove ownership of their copies.")
    {
        InfoCommand.Create(),
        ProfileCommand.Create(),
        DemoCommand.Create(),
        ModelCommands.Tokenize(),
        ModelCommands.Generate(),
        ModelCommands.Score(),
        ModelCommands.Convert(),
        ModelCommands.Perplexity(),
        FingerprintCommands.Create(),
        EmbedCommand.Create(),
        TrainCommand.Create(),
        VerifyCommand.Create(),
        LedgerCommands.Create(),
        TraceCommands.Create(),
        AccountCommands.Create(),
        ExplorerCommand.Create(),
        Protocol.ProtocolCommands.Create(), Protocol.OwnerCommands.Create(), Protocol.HostCommands.Create(), Protocol.UserCommands.Create(), Protocol.ProverCommands.Create(), Protocol.GovCommands.Create(), Protocol.ChainCommands.Create(),
        LabCommand.Create(),
        AttackCommands.Create(),
        DataCommands.Create(),
        TokenizerCommands.Create(),
        ServeCommand.Create(),
    };

    /// <summary>
    /// Parses and runs a command line. Every error ends here, as one line on stderr: parse errors and
    /// <see cref="UsageException"/> give exit code 2; everything else (bad data, a rejected action, I/O, libtorch) gives 1.
    /// </summary>
    public static int Run(RootCommand root, string[] args)
    {
        ArgumentNullException.ThrowIfNull(root);
        // This run's background work (an AsyncLocal, so that runs in one process, as in tests, wait only for their own
        // work, and its results are released with the run).
        var work = new List<Task>();
        var outer = BackgroundWork.Value;
        BackgroundWork.Value = work;
        try
        {
            return RunCommand(root, args);
        }
        finally
        {
            // Work a command started in the background (libtorch and a GPU context) is waited for, whatever the command
            // did, so the process never exits while another thread is inside libtorch or the CUDA driver.
            Task[] pending;
            lock (work) pending = [.. work];
            foreach (var t in pending)
            {
                try { t.Wait(); }
                catch (AggregateException) { }   // its error, if any, was reported where the command waited for it
            }
            BackgroundWork.Value = outer;
        }
    }

    private static readonly AsyncLocal<List<Task>?> BackgroundWork = new();

    /// <summary>
    /// The tokenizer cache every command uses (<see cref="Oml.Models.Tokenizers.TokenizerCache.EnvironmentVariable"/>:
    /// by default <c>~/.cache/oml/tokenizers</c>; <c>OML_TOKENIZER_CACHE=off</c> turns it off).
    /// </summary>
    public static Oml.Models.Tokenizers.TokenizerCache? TokenizerCache => s_tokenizerCache.Value;

    private static readonly Lazy<Oml.Models.Tokenizers.TokenizerCache?> s_tokenizerCache = new(Oml.Models.Tokenizers.TokenizerCache.FromEnvironment);

    /// <summary>The tokenizer of a model folder, through <see cref="TokenizerCache"/>.</summary>
    public static Oml.Models.Tokenizers.Tokenizer LoadTokenizer(string dir) => Oml.Models.Tokenizers.Tokenizer.FromFolder(dir, TokenizerCache);

    /// <summary>
    /// Starts <paramref name="work"/> on another thread, overlapped with what the command does next; the command waits
    /// for the result where it needs it (errors surface there), and <see cref="Run"/> waits for it before returning.
    /// </summary>
    public static Task<T> StartBackground<T>(Func<T> work)
    {
        var t = Task.Run(work);
        if (BackgroundWork.Value is { } list)
            lock (list) list.Add(t);
        return t;
    }

    private static int RunCommand(RootCommand root, string[] args)
    {
        try
        {
            var parsed = Phases.Time("parse arguments", () => root.Parse(Vocabulary.Rewrite(root, args, Console.Error)));
            if (parsed.Errors.Count > 0)
            {
                Console.Error.WriteLine($"oml: error: {OneLine(string.Join("; ", parsed.Errors.Select(e => e.Message)))} (see 'oml --help' or 'oml COMMAND --help')");
                return Usage;
            }
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return Report(e);
        }
    }

    /// <summary>Writes the one-line message for <paramref name="e"/> and returns its exit code.</summary>
    public static int Report(Exception e)
    {
        ArgumentNullException.ThrowIfNull(e);
        while (e is TargetInvocationException or AggregateException { InnerExceptions.Count: 1 } && e.InnerException is { } inner) e = inner;
        var (code, text) = e switch
        {
            UsageException => (Usage, e.Message),
            Oml.Models.IO.OutputExistsException => (Usage, e.Message),
            ProtocolException p => (Failure, $"rejected ({p.Code}): {p.Message}"),
            OperationCanceledException => (Failure, "cancelled"),
            OutOfMemoryException => (Failure, $"out of memory ({e.Message})"),
            // Our own and the libraries' error types carry messages meant for the user.
            IOException or UnauthorizedAccessException or InvalidDataException or FormatException or ArgumentException or InvalidOperationException
                or KeyNotFoundException or NotSupportedException or TorchException or System.Text.Json.JsonException or HttpRequestException
                or TimeoutException or System.Security.Cryptography.CryptographicException => (Failure, e.Message),
            _ when e.GetType().Namespace?.StartsWith("Oml.", StringComparison.Ordinal) == true => (Failure, e.Message),
            // The Ethereum client's errors are the node's answers (e.g. an account without ether for gas).
            _ when e.GetType().Namespace?.StartsWith("Nethereum.", StringComparison.Ordinal) == true => (Failure, $"the chain node: {e.Message}"
                + (e.Message.Contains("funds for gas", StringComparison.OrdinalIgnoreCase) ? " (the --keystore account needs ether for gas; on a local anvil: `oml chain fund --chain URL --to ADDRESS`)" : "")),
            _ => (Failure, $"unexpected {e.GetType().Name}: {e.Message} (a bug; set {DebugEnv}=1 for the stack trace)"),
        };
        Console.Error.WriteLine($"oml: error: {OneLine(text)}");
        if (Environment.GetEnvironmentVariable(DebugEnv) is "1" or "true") Console.Error.WriteLine(e);
        return code;
    }

    /// <summary>
    /// Runs a library's check or parse of values that came from the command line: its <see cref="ArgumentException"/>
    /// is then a usage error (exit 2). An <see cref="ArgumentException"/> anywhere else is about data (exit 1).
    /// </summary>
    public static T OptionValue<T>(Func<T> parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        try { return parse(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    /// <inheritdoc cref="OptionValue{T}(Func{T})"/>
    public static void OptionValue(Action validate)
    {
        ArgumentNullException.ThrowIfNull(validate);
        OptionValue(() => { validate(); return 0; });
    }

    /// <summary>A message on one line: line breaks and runs of white space become single spaces.</summary>
    public static string OneLine(string text) =>
        string.Join(' ', (text ?? "").Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).Trim();

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "Where to compute: auto (the first CUDA device when there is one, else the CPU), cpu, cuda or cuda:N",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>Parses a device name ("auto" picks cuda:0 when CUDA is available, else the CPU) and checks that it exists here.</summary>
    public static Device ParseDevice(string name)
    {
        Device d;
        try { d = Device.Parse(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        if (d.IsCuda && (!Torch.Cuda.IsAvailable || d.Index >= Torch.Cuda.DeviceCount))
            throw new UsageException($"device {d} is not available here (CUDA devices: {(Torch.Cuda.IsAvailable ? Torch.Cuda.DeviceCount : 0)})");
        return d;
    }

    /// <summary>A progress line for a long step, on stderr (redrawn in place on a terminal).</summary>
    public static void Status(string line)
    {
        if (Console.IsErrorRedirected) Console.Error.WriteLine(line);
        else Console.Error.Write($"\r{line}   ");
    }

    /// <summary>The <c>--dtype</c> option of commands that load a model: the weights' dtype in memory.</summary>
    public static Option<string?> DTypeOption() => new("--dtype")
    {
        Description = "Load the weights as float32, bfloat16 or float16 (default: as stored)",
    };

    /// <summary>Parses a <c>--dtype</c> value (null: keep the stored dtype); only floating types are accepted.</summary>
    public static DType? ParseDType(string? name)
    {
        if (name is null) return null;
        var d = OptionValue(() => DTypeExtensions.Parse(name));
        if (!d.IsFloatingPoint()) throw new UsageException($"--dtype must be a floating type, not {d.Name()}");
        return d;
    }
}
