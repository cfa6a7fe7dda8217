namespace Oml.Cli.Tests;

/// <summary>Runs <c>oml</c> in-process with captured output (the tests using it share one non-parallel collection).</summary>
internal static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (Console.Out, Console.Error);
        var sout = new StringWriter();
        var serr = new StringWriter();
        Console.SetOut(sout);
        Console.SetError(serr);
        try
        {
            int code = Cli.Run(Cli.CreateRoot(), args);
            return (code, sout.ToString(), serr.ToString());
        }
        finally
        {
            Console.SetOut(o);
            Console.SetError(e);
        }
    }
}
