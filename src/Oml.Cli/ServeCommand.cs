using System.CommandLine;
using Oml.Models.Serving;
using Oml.Server;

namespace Oml.Cli;

/// <summary>The serving options shared by <c>oml serve</c> and <c>oml host serve</c>, named as vLLM names them.</summary>
internal sealed class ServeOptions
{
    public readonly Option<int> Port = new("--port") { Description = "Port on 127.0.0.1 (0: any free port)", DefaultValueFactory = _ => 8000 };
    public readonly Option<string?> ServedModelName = new("--served-model-name") { Description = "The model name in the API (GET /v1/models); default: the model folder's name" };
    public readonly Option<string?> ApiKey = new("--api-key") { Description = "Require 'Authorization: Bearer KEY' on /v1 requests" };
    public readonly Option<int> MaxNumSeqs = new("--max-num-seqs") { Description = "The most sequences decoded together (continuous batching); 1 decodes each request alone", DefaultValueFactory = _ => 64 };
    public readonly Option<int?> MaxModelLen = new("--max-model-len") { Description = "The most prompt + completion tokens per sequence; default: the model's max_position_embeddings" };
    public readonly Option<int> MaxTokensLimit = new("--max-tokens-limit") { Description = "The largest max_tokens a request may ask for", DefaultValueFactory = _ => 4096 };
    public readonly Option<int> DefaultMaxTokens = new("--default-max-tokens") { Description = "max_tokens when a request gives none", DefaultValueFactory = _ => 16 };
    public readonly Option<long> MaxBodyBytes = new("--max-request-bytes") { Description = "The largest request body in bytes (413 beyond)", DefaultValueFactory = _ => 4L << 20 };
    public readonly Option<string?> UrlFile = new("--url-file") { Description = "Write the server's base URL to this file once it listens" };

    public void AddTo(Command cmd, bool withPort = true)
    {
        if (withPort) cmd.Options.Add(Port);
        foreach (var o in new Option[] { ServedModelName, ApiKey, MaxNumSeqs, MaxModelLen, MaxTokensLimit, DefaultMaxTokens, MaxBodyBytes, UrlFile })
            cmd.Options.Add(o);
    }

    public OpenAiServerOptions Server(ParseResult r, string modelDir, string? defaultName = null)
    {
        if (r.GetValue(MaxTokensLimit) < 1) throw new UsageException("--max-tokens-limit must be at least 1");
        if (r.GetValue(DefaultMaxTokens) < 1) throw new UsageException("--default-max-tokens must be at least 1");
        if (r.GetValue(MaxBodyBytes) < 1024) throw new UsageException("--max-request-bytes must be at least 1024");
        if (r.GetValue(MaxModelLen) is < 2) throw new UsageException("--max-model-len must be at least 2");
        return new OpenAiServerOptions
        {
            ModelName = r.GetValue(ServedModelName) ?? defaultName ?? Path.GetFileName(Path.GetFullPath(modelDir).TrimEnd(Path.DirectorySeparatorChar)),
            ApiKey = r.GetValue(ApiKey),
            MaxModelLength = r.GetValue(MaxModelLen),
            MaxTokensLimit = r.GetValue(MaxTokensLimit),
            DefaultMaxTokens = r.GetValue(DefaultMaxTokens),
            MaxRequestBodyBytes = r.GetValue(MaxBodyBytes),
        };
    }

    public BatchEngineOptions Engine(ParseResult r)
    {
        int seqs = r.GetValue(MaxNumSeqs);
        if (seqs < 1) throw new UsageException("--max-num-seqs must be at least 1");
        return new BatchEngineOptions { MaxBatchSize = seqs };
    }
}

/// <summary><c>oml serve MODEL</c>: a model folder as an OpenAI-compatible API, as <c>vllm serve</c> does it.</summary>
public static class ServeCommand
{
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
            using var backend = ModelBackend.Load(dir, o.Engine(r), Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)), Cli.TokenizerCache);
            return Protocol.HostCommands.RunUntilStopped(
                ct => OpenAiCompatibleServer.StartAsync(backend, r.GetValue(o.Port), options, null, ct), x => x.BaseUrl,
                $"model '{options.ModelName}', context {Math.Min(backend.ContextLength ?? int.MaxValue, options.MaxModelLength ?? int.MaxValue)}, up to {r.GetValue(o.MaxNumSeqs)} sequences per batch",
                r.GetValue(o.UrlFile));
        });
        return cmd;
    }
}
