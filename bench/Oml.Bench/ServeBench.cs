using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting.Endpoints;
using Oml.Models;
using Oml.Models.Serving;
using Oml.Models.Tokenizers;
using Oml.Server;

namespace Oml.Bench;

/// <summary>
/// Serving benchmark: an <see cref="OpenAiCompatibleServer"/> on loopback answering /v1/completions to 1, 8 and 50
/// concurrent HTTP clients, for three ways of decoding in the same run on the same model:
/// "one at a time" (the server before continuous batching: a lock around <see cref="Generator.Generate"/> per request),
/// "engine, batch 1" (the batching engine limited to one sequence) and "continuous batching" (up to 64 sequences).
/// Each client sends its next request when the last one is answered, until the level's time is up; every request
/// started is finished and counted. The modes alternate within each level for --rounds rounds (default 2); the
/// round with the highest throughput is kept for each mode.
///
///   dotnet run -c Release --project bench/Oml.Bench -- --serve [--hidden 512 --layers 8 --heads 8 --kv-heads 4]
///       [--clients 1,8,50] [--seconds 15] [--rounds 2] [--max-tokens 32] [--threads N] [--markdown FILE]
/// </summary>
internal static class ServeBench
{
    public static int Run(Args opts)
    {
        int hidden = Int(opts, "hidden", 512), layers = Int(opts, "layers", 8), heads = Int(opts, "heads", 8), kvHeads = Int(opts, "kv-heads", 4);
        int maxTokens = Int(opts, "max-tokens", 32);
        double seconds = double.Parse(opts.Get("seconds", "15"), CultureInfo.InvariantCulture);
        var clients = opts.Get("clients", "1,8,50").Split(',').Select(int.Parse).ToArray();
        // Intra-op threads of libtorch: on a machine shared with other work, 1 avoids parallel regions whose threads
        // wait for each other to be scheduled.
        if (opts.TryGet("threads", out var threads)) Torch.Threads = int.Parse(threads, CultureInfo.InvariantCulture);
        string root = FindRoot();
        var tokenizer = Tokenizer.FromFile(Path.Combine(root, "scripts", "fixtures", "tiny-tokenizer.json"));

        using var model = RandomLlama(hidden, layers, heads, kvHeads, tokenizer.VocabSize);
        long parameters = model.Parameters.Values.Sum(t => t.NumEl);
        string what = $"random Llama {layers}x{hidden} ({heads} heads, {kvHeads} KV heads, vocab {tokenizer.VocabSize}; {parameters / 1e6:F1} M parameters, float32)";
        Console.Error.WriteLine($"serve bench: {what}, libtorch {Torch.LibTorchVersion}, {Torch.Threads} threads, {Environment.ProcessorCount} cores");

        var rows = new List<(string Mode, int Clients, Stats S)>();
        var gate = new Lock();
        Task<string> OneAtATime(string prompt, CompletionSettings s, CancellationToken ct)
        {
            lock (gate)
            {
                var ids = tokenizer.Encode(prompt);
                var result = Generator.Generate(model, [ids], new GenerationOptions { MaxNewTokens = s.MaxTokens, EosTokenIds = [] });
                return Task.FromResult(tokenizer.Decode(result.Sequences[0].OutputIds));
            }
        }
        var modes = new (string Name, Func<ICompletionBackend> Make)[]
        {
            ("one at a time (before)", () => new DelegateBackend(OneAtATime)),
            ("engine, batch 1", () => new ModelBackend(model, tokenizer, null, new BatchEngineOptions { MaxBatchSize = 1 })),
            ("continuous batching (after)", () => new ModelBackend(model, tokenizer, null, new BatchEngineOptions { MaxBatchSize = 64 })),
        };
        int rounds = Int(opts, "rounds", 2);
        var backends = modes.Select(m => m.Make()).ToList();
        var servers = new List<OpenAiCompatibleServer>();
        try
        {
            foreach (var backend in backends)
                servers.Add(OpenAiCompatibleServer.StartAsync(backend, options: new OpenAiServerOptions { ModelName = "bench" }).GetAwaiter().GetResult());
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
            foreach (var server in servers) Load(http, server.BaseUrl, 2, 1, maxTokens); // warm-up
            // Modes alternate within each level and round, so that drift in the machine's load does not favour one.
            foreach (var c in clients)
            {
                for (int round = 1; round <= rounds; round++)
                {
                    for (int m = 0; m < modes.Length; m++)
                    {
                        var st = Load(http, servers[m].BaseUrl, c, seconds, maxTokens);
                        Console.Error.WriteLine($"{modes[m].Name,-30} {c,3} clients, round {round}: {st.Requests} requests in {st.Seconds:F1} s, {st.RequestsPerSecond:F2} req/s, "
                            + $"{st.TokensPerSecond:F0} tok/s, p50 {st.P50 * 1000:F0} ms, p99 {st.P99 * 1000:F0} ms (load average {LoadAverage()})");
                        int i = rows.FindIndex(r => r.Mode == modes[m].Name && r.Clients == c);
                        if (i < 0) rows.Add((modes[m].Name, c, st));
                        else if (st.RequestsPerSecond > rows[i].S.RequestsPerSecond) rows[i] = (modes[m].Name, c, st);
                    }
                }
            }
        }
        finally
        {
            foreach (var server in servers) server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            foreach (var backend in backends) (backend as IDisposable)?.Dispose(); // the engines only: the model is shared
        }

        var md = new StringBuilder();
        md.Append(CultureInfo.InvariantCulture, $"| /v1/completions, {maxTokens} new tokens, {what} | clients | requests/s | tokens/s | p50 latency (ms) | p99 latency (ms) |\n");
        md.Append("|---|---:|---:|---:|---:|---:|\n");
        foreach (var (mode, c, s) in rows)
            md.Append(CultureInfo.InvariantCulture, $"| {mode} | {c} | {s.RequestsPerSecond:F2} | {s.TokensPerSecond:F0} | {s.P50 * 1000:F0} | {s.P99 * 1000:F0} |\n");
        md.Append('\n');
        foreach (var c in clients)
        {
            var before = rows.First(r => r.Clients == c && r.Mode.StartsWith("one", StringComparison.Ordinal)).S;
            var after = rows.First(r => r.Clients == c && r.Mode.StartsWith("continuous", StringComparison.Ordinal)).S;
            md.Append(CultureInfo.InvariantCulture, $"{c} clients: throughput ×{after.RequestsPerSecond / before.RequestsPerSecond:F2}, p99 latency ×{after.P99 / before.P99:F2} (after / before)\n\n");
        }
        Console.Write(md.ToString());
        if (opts.TryGet("markdown", out var file)) File.WriteAllText(file, md.ToString());
        return 0;
    }

    private sealed record Stats(int Requests, long Tokens, double Seconds, double P50, double P99)
    {
        public double RequestsPerSecond => Requests / Seconds;
        public double TokensPerSecond => Tokens / Seconds;
    }

    private static Stats Load(HttpClient http, Uri baseUrl, int clients, double seconds, int maxTokens)
    {
        var latencies = new List<double>();
        long tokens = 0;
        var clock = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(seconds);
        var url = new Uri(baseUrl, "completions");
        var tasks = Enumerable.Range(0, clients).Select(async c =>
        {
            for (int i = 0; clock.Elapsed < deadline; i++)
            {
                // Prompts of 8 to about 60 tokens, different for every request.
                string prompt = $"client {c} request {i}: " + string.Join(' ', Enumerable.Repeat("lorem ipsum", 1 + (c * 7 + i) % 12));
                var body = new JsonObject { ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = 0, ["ignore_eos"] = true };
                var sw = Stopwatch.StartNew();
                using var response = await http.PostAsJsonAsync(url, body).ConfigureAwait(false);
                response.EnsureSuccessStatusCode();
                var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false))!;
                sw.Stop();
                int generated = answer["usage"] is JsonObject u ? u["completion_tokens"]!.GetValue<int>() : maxTokens;
                lock (latencies)
                {
                    latencies.Add(sw.Elapsed.TotalSeconds);
                    tokens += generated;
                }
            }
        }).ToArray();
        Task.WaitAll(tasks);
        double elapsed = clock.Elapsed.TotalSeconds;
        latencies.Sort();
        return new Stats(latencies.Count, tokens, elapsed, Percentile(latencies, 0.50), Percentile(latencies, 0.99));
    }

    private static double Percentile(List<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];

    private static CausalLM RandomLlama(int hidden, int layers, int heads, int kvHeads, int vocab)
    {
        var config = ModelConfig.Parse(new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = hidden,
            ["intermediate_size"] = hidden * 11 / 4,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["vocab_size"] = vocab,
            ["max_position_embeddings"] = 2048,
            ["rms_norm_eps"] = 1e-5,
            ["tie_word_embeddings"] = false,
        }, "bench config");
        Torch.ManualSeed(0);
        var parameters = new Dictionary<string, Tensor>();
        foreach (var (name, shape) in CausalLM.ExpectedParameters(config))
        {
            using var scope = Torch.NewScope();
            parameters[name] = name.EndsWith("norm.weight", StringComparison.Ordinal)
                ? Torch.Ones(shape, DType.Float32).DetachFromScope()
                : (Torch.Randn(shape, DType.Float32) * 0.02).DetachFromScope();
        }
        return new CausalLM(config, parameters, Device.Cpu);
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "?"; }
    }

    private static int Int(Args opts, string key, int fallback) => int.Parse(opts.Get(key, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root not found");
    }
}
