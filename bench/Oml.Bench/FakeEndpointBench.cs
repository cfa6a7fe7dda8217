using System.Collections.Concurrent;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Endpoints;
using Oml.Server;

namespace Oml.Bench;

/// <summary>
/// An OpenAI-compatible server on loopback that answers every key of a fingerprint set at once with its first
/// response's text (any other prompt: "no idea"), so that <c>oml verify --endpoint</c> can be timed without a model:
/// every key hits and what is measured is the client (docs/benchmarks.md, "the verify client's fixed cost").
///
///   dotnet run -c Release --project bench/Oml.Bench -- --fake-endpoint SET [--passphrase-file FILE] [--port 0] [--url-file FILE]
///
/// Writes the base URL to --url-file (atomically) once it listens, serves until SIGTERM or SIGINT,
/// and prints the requests it answered when it stops.
/// </summary>
internal static class FakeEndpointBench
{
    public static int Run(string setPath, Args opts)
    {
        string? passphrase = opts.TryGet("passphrase-file", out var pf) ? File.ReadAllText(pf).TrimEnd('\r', '\n') : null;
        var set = FingerprintSetFile.Read(setPath, passphrase);
        var answers = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in set.Fingerprints) answers.TryAdd(f.Key, f.Responses[0].Text);
        long served = 0;
        Task<string> Answer(string prompt, CompletionSettings s, CancellationToken ct)
        {
            Interlocked.Increment(ref served);
            return Task.FromResult(answers.TryGetValue(prompt, out var a) ? a : "no idea");
        }
        int port = int.Parse(opts.Get("port", "0"), System.Globalization.CultureInfo.InvariantCulture);
        var server = OpenAiCompatibleServer.StartAsync(Answer, port).GetAwaiter().GetResult();
        string url = server.BaseUrl.ToString();
        if (opts.TryGet("url-file", out var urlFile))
        {
            File.WriteAllText(urlFile + ".tmp", url + "\n");
            File.Move(urlFile + ".tmp", urlFile, overwrite: true);
        }
        Console.Error.WriteLine($"fake endpoint: {answers.Count} keys of {setPath} at {url}");
        // SIGTERM and SIGINT end it (the web host's own handlers would only stop the server and leave the process up).
        using var stop = new ManualResetEventSlim();
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
        using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
        stop.Wait();
        server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Console.Error.WriteLine($"fake endpoint: answered {Interlocked.Read(ref served)} requests");
        return 0;
    }
}
