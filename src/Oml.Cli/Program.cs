// The runtime's start (process creation to here) is the first phase; OML_TIMINGS=1 prints every phase at exit.
var runtimeStart = (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime).TotalSeconds;
Oml.Engine.Phases.Add("runtime start", runtimeStart);
var clock = System.Diagnostics.Stopwatch.StartNew();
var root = Oml.Engine.Phases.Time("command tree", Oml.Cli.Cli.CreateRoot);
int code = Oml.Cli.Cli.Run(root, args);
if (Oml.Engine.Phases.Requested)
{
    Oml.Engine.Phases.Add("command (all)", clock.Elapsed.TotalSeconds);
    Console.Error.WriteLine($"oml: timings: {Oml.Engine.Phases.ToJson()}");
}
// The command is done and its files are written: end here, without the runtime's and libtorch's teardown.
Oml.Cli.FastExit.Exit(code);
return code;
