using System.Net;
using System.Text;
using System.Text.Json;
using Oml.Cli.Protocol;
using static Oml.Cli.Tests.CliRunner;

namespace Oml.Cli.Tests;

/// <summary><c>oml serve</c>: a model folder as an OpenAI-compatible API, started and stopped in-process.</summary>
[Collection(nameof(CliTests))]
public sealed class ServeCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-serve-cli-" + Guid.NewGuid().ToString("N"));

    public ServeCliTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
    }

    [Fact]
    public void Max_num_seqs_defaults_to_256_on_a_GPU_and_64_on_the_CPU_and_the_help_says_so()
    {
        Assert.Equal(256, ServeCommand.DefaultMaxNumSeqs(Oml.Engine.Device.Cuda()));
        Assert.Equal(256, ServeCommand.DefaultMaxNumSeqs(Oml.Engine.Device.Cuda(1)));
        Assert.Equal(64, ServeCommand.DefaultMaxNumSeqs(Oml.Engine.Device.Cpu));
        foreach (var command in new[] { new[] { "serve", "--help" }, ["host", "serve", "--help"] })
        {
            var (code, output, _) = Run(command);
            Assert.Equal(0, code);
            string help = string.Join(" ", output.Split((char[])['\n', ' '], StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains("Default: 256 on a CUDA device, 64 on the CPU", help);
            Assert.Contains("--gpu-memory-utilization", help);
            Assert.Contains("[default: 0.9]", help);
        }
    }

    [Fact]
    public async Task Serve_answers_models_completions_and_metrics_and_stops()
    {
        var ct = TestContext.Current.CancellationToken;
        string model = Path.Combine(_dir, "tiny");
        Directory.CreateDirectory(model);
        string fixture = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "Oml.Models.Tests", "fixtures", "models", "llama-tiny");
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(fixture, f), Path.Combine(model, f));
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), FingerprintCliTests.TinyTokenizerJson());

        // Bad flags are usage errors before anything loads.
        Assert.Equal(Cli.Usage, Run("serve", model, "--max-num-seqs", "0").Code);
        Assert.Equal(Cli.Usage, Run("serve", model, "--gpu-memory-utilization", "0").Code);
        Assert.Equal(Cli.Usage, Run("serve", model, "--gpu-memory-utilization", "1.5").Code);
        var noRequests = Run("serve", model, "--max-concurrent-requests", "0");
        Assert.Equal(Cli.Usage, noRequests.Code);
        Assert.Contains("--max-concurrent-requests must be at least 1", noRequests.Err);
        if (Oml.Engine.Torch.Cuda.IsAvailable)
        {
            // On a GPU, a share of its memory smaller than what is in use leaves nothing for the KV cache: a clear error.
            var tooLittle = Run("serve", model, "--gpu-memory-utilization", "0.001");
            Assert.Equal(Cli.Failure, tooLittle.Code);
            Assert.Contains("raise --gpu-memory-utilization", tooLittle.Err);
        }
        Assert.Equal(Cli.Failure, Run("serve", Path.Combine(_dir, "missing")).Code);

        string urlFile = Path.Combine(_dir, "url");
        using var stop = new CancellationTokenSource();
        HostCommands.ServeStopForTests = stop.Token;
        try
        {
            var (started, run) = await CliRunner.StartAsync(urlFile, "serve", model, "--port", "0", "--served-model-name", "tiny", "--max-model-len", "128");
            var baseUrl = new Uri(started);
            using var http = new HttpClient();
            using (var doc = JsonDocument.Parse(await http.GetStringAsync(new Uri(baseUrl, "models"), ct)))
            {
                var m = doc.RootElement.GetProperty("data")[0];
                Assert.Equal("tiny", m.GetProperty("id").GetString());
                Assert.Equal(128, m.GetProperty("max_model_len").GetInt32());
            }
            using (var r = await http.PostAsync(new Uri(baseUrl, "completions"),
                new StringContent("{\"model\": \"tiny\", \"prompt\": \"hello\", \"max_tokens\": 5, \"temperature\": 0}", Encoding.UTF8, "application/json"), ct))
            {
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(ct));
                Assert.Equal(5, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            }
            // --max-model-len caps the context below the model's 512.
            using (var r = await http.PostAsync(new Uri(baseUrl, "completions"),
                new StringContent("{\"prompt\": \"hello\", \"max_tokens\": 200}", Encoding.UTF8, "application/json"), ct))
            {
                Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
                Assert.Contains("context_length_exceeded", await r.Content.ReadAsStringAsync(ct));
            }
            // No chat template in this folder: chats are refused with a clear 400.
            using (var r = await http.PostAsync(new Uri(baseUrl, "chat/completions"),
                new StringContent("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", Encoding.UTF8, "application/json"), ct))
            {
                Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
                Assert.Contains("chat template", await r.Content.ReadAsStringAsync(ct));
            }
            string metrics = await http.GetStringAsync(new Uri(baseUrl, "/metrics"), ct);
            Assert.Contains("oml_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1", metrics);
            Assert.Contains("oml_generation_tokens_total 5", metrics);

            stop.Cancel();
            var (code, output, err) = await run.WaitAsync(TimeSpan.FromSeconds(30), ct);
            Assert.True(code == 0, err);
            Assert.Contains("stopped", output);
            // On the CPU: 64 sequences per batch by default, and no KV cache budget; on a GPU (the default device is the
            // first GPU when there is one): 256, and a budget from its free memory.
            if (Oml.Engine.Torch.Cuda.IsAvailable)
                Assert.Matches(@"up to 256 sequences per batch, [0-9.]+ GiB of KV cache \([0-9,]+ tokens\)\)", output);
            else
                Assert.Contains("up to 64 sequences per batch)", output);
        }
        finally
        {
            HostCommands.ServeStopForTests = CancellationToken.None;
        }
    }
}
