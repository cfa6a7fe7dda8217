namespace Oml.Protocol.Tests;

/// <summary>
/// The test executable's entry point: xunit's runners as usual, except when started as a helper process by a test
/// (the ledger crash test starts this executable with <see cref="Ledger.CrashChild.Flag"/> and kills it).
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == Ledger.CrashChild.Flag) return Ledger.CrashChild.Run(args[1..]);
        if (args.Length > 0 && args[0] == Hosting.CommitUsageChild.Flag) return Hosting.CommitUsageChild.Run(args[1..]);
        if (args.Any(a => a is "--server" or "--internal-msbuild-node"))
            return Xunit.MicrosoftTestingPlatform.TestPlatformTestFramework.RunAsync(args, SelfRegisteredExtensions.AddSelfRegisteredExtensions).GetAwaiter().GetResult();
        return Xunit.Runner.InProc.SystemConsole.ConsoleRunner.Run(args).GetAwaiter().GetResult();
    }
}
