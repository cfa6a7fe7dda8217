using System.CommandLine;
using Oml.Engine;

namespace Oml.Cli;

/// <summary>Shared command-line plumbing: exit codes and error reporting.</summary>
public static class Cli
{
    public const int Ok = 0;
    /// <summary>The work failed (bad input file, libtorch error, ...).</summary>
    public const int Failure = 1;
    /// <summary>The command line itself was wrong (System.CommandLine's own code for parse errors).</summary>
    public const int Usage = 2;

    /// <summary>The <c>oml</c> command with all its subcommands.</summary>
    public static RootCommand CreateRoot() => new("oml: fingerprint open-weight language models and prove ownership of their copies.")
    {
        InfoCommand.Create(),
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
        Protocol.ProtocolCommands.Create(), Protocol.OwnerCommands.Create(), Protocol.HostCommands.Create(), Protocol.UserCommands.Create(), Protocol.ProverCommands.Create(), Protocol.GovCommands.Create(),
        LabCommand.Create(),
        AttackCommands.Create(),
        DataCommands.Create(),
        TokenizerCommands.Create(),
    };

    public static int Run(RootCommand root, string[] args)
    {
        try
        {
            var parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
            {
                foreach (var error in parsed.Errors) Console.Error.WriteLine($"oml: error: {error.Message}");
                Console.Error.WriteLine("Run 'oml --help' (or 'oml COMMAND --help') for usage.");
                return Usage;
            }
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is TorchException or IOException or ArgumentException or InvalidDataException
            or Oml.Fingerprinting.FingerprintFileException or Oml.Fingerprinting.Endpoints.CompletionEndpointException)
        {
            Console.Error.WriteLine($"oml: error: {e.Message}");
            return e is ArgumentException ? Usage : Failure;
        }
    }

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "Where to compute: auto (the first CUDA device when there is one, else the CPU), cpu, cuda or cuda:N",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>Parses a device name ("auto" picks cuda:0 when CUDA is available, else the CPU) and checks that it exists here.</summary>
    public static Device ParseDevice(string name)
    {
        if (name.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase))
            return Torch.Cuda.IsAvailable && Torch.Cuda.DeviceCount > 0 ? Device.Cuda(0) : Device.Cpu;
        var d = Device.Parse(name);
        if (d.IsCuda && (!Torch.Cuda.IsAvailable || d.Index >= Torch.Cuda.DeviceCount))
            throw new ArgumentException($"device {d} is not available here (CUDA devices: {(Torch.Cuda.IsAvailable ? Torch.Cuda.DeviceCount : 0)})");
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
        var d = DTypeExtensions.Parse(name);
        if (!d.IsFloatingPoint()) throw new ArgumentException($"--dtype must be a floating type, not {d.Name()}");
        return d;
    }
}
