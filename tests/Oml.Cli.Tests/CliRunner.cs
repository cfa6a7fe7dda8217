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

    /// <summary>
    /// Starts a long-running command (a server) in the background with <c>--url-file</c> <paramref name="urlFile"/>
    /// appended, and returns its URL once it listens (the test fails if the command ends first or takes a minute).
    /// </summary>
    public static async Task<(string Url, Task<(int Code, string Out, string Err)> Run)> StartAsync(string urlFile, params string[] args)
    {
        var task = Task.Run(() => Run([.. args, "--url-file", urlFile]));
        for (int i = 0; i < 1200 && !File.Exists(urlFile); i++)
        {
            if (task.IsCompleted) Assert.Fail($"{string.Join(' ', args.Take(2))} ended: {(await task).Err}");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
        Assert.True(File.Exists(urlFile), $"{string.Join(' ', args.Take(2))} did not start");
        return (File.ReadAllText(urlFile).Trim(), task);
    }
}
