using System.CommandLine;
using Oml.Engine;
using Oml.Models.Serving;
using Oml.Server;

namespace Oml.Cli;

/// <summary>The serving options shared by <c>oml serve</c> and <c>oml host serve</c>, named as vLLM names them.</summary>
internal sealed class ServeOptions
{
    public readonly Option<int> Port = new("--port") { Description = "Port on 127.0.0.1 (0: any free port)", DefaultValueFactory = _ => 8000 };
    public readonly Option<string?> ServedModelName = new("--served-model-name") { Description = "The model name in the API (GET /v1/models); default: the model folder's name" };
    public readonly Option<string?> ApiKey = new("--api-key") { Description = "Require 'Authorization: Bearer KEY' on /v1 requests" };
    public readonly Option<int?> MaxNumSeqs = new("--max-num-seqs")
    {
        Description = $"The most sequences decoded together (continuous batching); 1 decodes each request alone. Default: {ServeCommand.DefaultMaxNumSeqsCuda} on a CUDA device, "
            + $"{ServeCommand.DefaultMaxNumSeqsCpu} on the CPU. On a GPU, sequences join the batch only while its KV cache fits --gpu-memory-utilization",
    };
    public readonly Option<double> GpuMemoryUtilization = new("--gpu-memory-utilization")
    {
        Description = "The share of the GPU's total memory (0 to 1] this server may use, as vLLM's: the weights and everything else already in use on the "
            + "device once the model is loaded (the CUDA context, other processes) count against it, and so does a reserve for one step's activations; "
            + "the rest is the KV cache's budget, which bounds how many sequences run together. Startup fails if one sequence of the full context "
            + "(--max-model-len) does not fit. Ignored on the CPU",
        DefaultValueFactory = _ => 0.9,
    };
    public readonly Option<int?> MaxModelLen = new("--max-model-len") { Description = "The most prompt + completion tokens per sequence; default: the model's max_position_embeddings" };
    public readonly Option<int> MaxTokensLimit = new("--max-tokens-limit") { Description = "The largest max_tokens a request may ask for", DefaultValueFactory = _ => 4096 };
    public readonly Option<int?> DefaultMaxTokens = new("--default-max-tokens")
    {
        Description = "max_tokens when a request gives none (capped by the room left in the context); default: 16 for completions (OpenAI's), "
            + "the room left in the context up to --max-tokens-limit for chats (vLLM's)",
    };
    public readonly Option<long> MaxBodyBytes = new("--max-request-bytes") { Description = "The largest request body in bytes (413 beyond)", DefaultValueFactory = _ => 4L << 20 };
    public readonly Option<int> MaxConcurrentRequests = new("--max-concurrent-requests")
    {
        Description = "The most completion requests in progress at once; one more is answered 429 with Retry-After (before its body is read)",
        DefaultValueFactory = _ => OpenAiServerOptions.DefaultMaxConcurrentRequests,
    };
    public readonly Option<string?> UrlFile = new("--url-file") { Description = "Write the server's base URL to this file once it listens" };

    public void AddTo(Command cmd, bool withPort = true)
    {
        if (withPort) cmd.Options.Add(Port);
        foreach (var o in new Option[] { ServedModelName, ApiKey, MaxNumSeqs, GpuMemoryUtilization, MaxModelLen, MaxTokensLimit, DefaultMaxTokens, MaxBodyBytes, MaxConcurrentRequests, UrlFile })
            cmd.Options.Add(o);
    }

    public OpenAiServerOptions Server(ParseResult r, string modelDir, string? defaultName = null)
    {
        if (r.GetValue(MaxTokensLimit) < 1) throw new UsageException("--max-tokens-limit must be at least 1");
        if (r.GetValue(DefaultMaxTokens) is < 1) throw new UsageException("--default-max-tokens must be at least 1");
        if (r.GetValue(MaxBodyBytes) < 1024) throw new UsageException("--max-request-bytes must be at least 1024");
        if (r.GetValue(MaxModelLen) is < 2) throw new UsageException("--max-model-len must be at least 2");
        if (r.GetValue(MaxConcurrentRequests) < 1) throw new UsageException("--max-concurrent-requests must be at least 1");
        return new OpenAiServerOptions
        {
            ModelName = r.GetValue(ServedModelName) ?? defaultName ?? Path.GetFileName(Path.GetFullPath(modelDir).TrimEnd(Path.DirectorySeparatorChar)),
            ApiKey = r.GetValue(ApiKey),
            MaxModelLength = r.GetValue(MaxModelLen),
            MaxTokensLimit = r.GetValue(MaxTokensLimit),
            DefaultMaxTokens = r.GetValue(DefaultMaxTokens),
            MaxRequestBodyBytes = r.GetValue(MaxBodyBytes),
            MaxConcurrentRequests = r.GetValue(MaxConcurrentRequests),
        };
    }

    /// <summary>The batching options on <paramref name="device"/>: --max-num-seqs, or its default for the device.</summary>
    public BatchEngineOptions Engine(ParseResult r, Device device)
    {
        int seqs = r.GetValue(MaxNumSeqs) ?? ServeCommand.DefaultMaxNumSeqs(device);
        if (seqs < 1) throw new UsageException("--max-num-seqs must be at least 1");
        // OML_ONE_TOKEN_PASS=1 / 0 overrides where one-token requests take a pass of their own (default: the CPU only).
        bool? oneTokenPass = Environment.GetEnvironmentVariable("OML_ONE_TOKEN_PASS") switch { "1" => true, "0" => false, _ => null };
        return new BatchEngineOptions { MaxBatchSize = seqs, OneTokenPass = oneTokenPass };
    }

    /// <summary>
    /// Loads the model folder to serve on <paramref name="device"/>: on a CUDA device, the KV cache's budget comes from the
    /// memory left once the weights are loaded (--gpu-memory-utilization), and, as vLLM does, startup fails when one
    /// sequence of the whole context (<paramref name="server"/>'s --max-model-len, else the model's) cannot fit it.
    /// </summary>
    public ModelBackend Load(ParseResult r, string modelDir, OpenAiServerOptions server, Device device, DType? dtype)
    {
        double utilization = r.GetValue(GpuMemoryUtilization);
        if (!(utilization > 0 && utilization <= 1)) throw new UsageException("--gpu-memory-utilization must be in (0, 1]");
        var backend = ModelBackend.Load(modelDir, Engine(r, device), device, dtype, Cli.TokenizerCache, device.IsCuda ? utilization : null);
        try
        {
            var engine = backend.Engine;
            int context = Math.Min(backend.ContextLength ?? int.MaxValue, server.MaxModelLength ?? int.MaxValue);
            if (engine.Options.KvCacheBudgetBytes is { } budget && engine.KvShape.SequenceBytes(context) > budget)
                throw new InvalidOperationException(
                    $"the model's context of {context} tokens needs up to {KvCacheBudget.Gib(engine.KvShape.SequenceBytes(context))} GiB of KV cache for one sequence, more than "
                    + $"the {KvCacheBudget.Gib(budget)} GiB left of --gpu-memory-utilization {utilization:0.###}; raise --gpu-memory-utilization or lower --max-model-len");
            return backend;
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>The startup line's account of the batch: its size, and its KV cache budget when there is one.</summary>
    public static string Describe(BatchEngine engine) =>
        $"up to {engine.Options.MaxBatchSize} sequences per batch"
        + (engine.Options.KvCacheBudgetBytes is { } b
            ? $", {KvCacheBudget.Gib(b)} GiB of KV cache ({(b / engine.KvShape.BytesPerToken).ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} tokens)"
            : "");

}

/// <summary><c>oml serve MODEL</c>: a model folder as an OpenAI-compatible API, as <c>vllm serve</c> does it.</summary>
public static class ServeCommand
{
    /// <summary>--max-num-seqs when none is given: as vLLM, more on a GPU (vLLM's default is 256 there, 1024 on large
    /// GPUs) than on the CPU (vLLM: 128).</summary>
    public const int DefaultMaxNumSeqsCuda = 256, DefaultMaxNumSeqsCpu = 64;

    /// <summary>The --max-num-seqs default on <paramref name="device"/>.</summary>
    public static int DefaultMaxNumSeqs(Device device) => device.IsCuda ? DefaultMaxNumSeqsCuda : DefaultMaxNumSeqsCpu;

    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "The model folder (config.json, safetensors weights, tokenizer.json; tokenizer_config.json's chat template for chats)" };
        var o = new ServeOptions();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("serve",
            "Serve a model folder as an OpenAI-compatible API on 127.0.0.1: POST /v1/completions and /v1/chat/completions (streaming, n, "
            + "logprobs, stop, usage), GET /v1/models, GET /health, GET /metrics (Prometheus). Concurrent requests are decoded together "
            + "(continuous batching). Runs until Ctrl-C or SIGTERM.")
        {
            model, device, dtype,
        };
        o.AddTo(cmd);
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(model)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
            var options = o.Server(r, dir);
            using var backend = o.Load(r, dir, options, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            return Protocol.HostCommands.RunUntilStopped(
                ct => OpenAiCompatibleServer.StartAsync(backend, r.GetValue(o.Port), options, null, ct), x => x.BaseUrl,
                $"model '{options.ModelName}', context {Math.Min(backend.ContextLength ?? int.MaxValue, options.MaxModelLength ?? int.MaxValue)}, {ServeOptions.Describe(backend.Engine)}",
                r.GetValue(o.UrlFile));
        });
        return cmd;
    }
}
