using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Oml.Server;

/// <summary>
/// Request metrics of an <see cref="OpenAiCompatibleServer"/> in the Prometheus text format (served at
/// <c>GET /metrics</c>): requests by endpoint and status, prompt and generated tokens, request latency and time to
/// first token (histograms), decode batch sizes (histogram), requests in flight and sequences waiting.
/// </summary>
public sealed class ServerMetrics
{
    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
    private static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

    private readonly ConcurrentDictionary<(string Endpoint, int Status), long> _requests = new();
    private readonly Histogram _latency = new(LatencyBuckets);
    private readonly Histogram _firstToken = new(LatencyBuckets);
    private readonly Histogram _batch = new(BatchBuckets);
    private long _promptTokens, _generationTokens, _inFlight;

    /// <summary>Reads how many sequences wait for the decoder (null: none reported).</summary>
    public Func<int>? Waiting { get; set; }

    /// <summary>Reads how many sequences the decoder runs (null: none reported).</summary>
    public Func<int>? Running { get; set; }

    /// <summary>Reads the decoder's work counters (null: none reported).</summary>
    public Func<Oml.Models.Serving.BatchEngineCounters>? Engine { get; set; }

    public long RequestsInFlight => Interlocked.Read(ref _inFlight);
    public long PromptTokens => Interlocked.Read(ref _promptTokens);
    public long GenerationTokens => Interlocked.Read(ref _generationTokens);

    /// <summary>Requests answered on <paramref name="endpoint"/> with <paramref name="status"/>.</summary>
    public long Requests(string endpoint, int status) => _requests.TryGetValue((endpoint, status), out var n) ? n : 0;

    internal void Started() => Interlocked.Increment(ref _inFlight);

    internal void Finished(string endpoint, int status, double seconds)
    {
        Interlocked.Decrement(ref _inFlight);
        _requests.AddOrUpdate((endpoint, status), 1, (_, n) => n + 1);
        _latency.Observe(seconds);
    }

    internal void Tokens(long prompt, long generated)
    {
        Interlocked.Add(ref _promptTokens, prompt);
        Interlocked.Add(ref _generationTokens, generated);
    }

    internal void FirstToken(double seconds) => _firstToken.Observe(seconds);

    /// <summary>Records one decode step of <paramref name="size"/> sequences.</summary>
    public void ObserveBatch(int size) => _batch.Observe(size);

    /// <summary>The metrics in the Prometheus text exposition format (version 0.0.4).</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        sb.Append("# HELP oml_requests_total HTTP requests answered, by endpoint and status.\n# TYPE oml_requests_total counter\n");
        foreach (var ((endpoint, status), n) in _requests.OrderBy(x => x.Key.Endpoint, StringComparer.Ordinal).ThenBy(x => x.Key.Status))
            sb.Append(CultureInfo.InvariantCulture, $"oml_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}\n");
        Counter(sb, "oml_prompt_tokens_total", "Prompt tokens processed.", PromptTokens);
        Counter(sb, "oml_generation_tokens_total", "Tokens generated.", GenerationTokens);
        Gauge(sb, "oml_requests_in_flight", "Requests being answered.", RequestsInFlight);
        if (Running is { } running) Gauge(sb, "oml_sequences_running", "Sequences in the decoder's batch.", running());
        if (Waiting is { } waiting) Gauge(sb, "oml_sequences_waiting", "Sequences waiting to join the batch.", waiting());
        if (Engine is { } engine)
        {
            var e = engine();
            Counter(sb, "oml_engine_prefills_total", "Prefill forward passes of the decoder.", e.Prefills);
            Counter(sb, "oml_engine_prefilled_sequences_total", "Sequences prefilled (a preempted one again when it resumes).", e.PrefilledRows);
            Counter(sb, "oml_engine_decode_steps_total", "Decode forward passes of the decoder.", e.DecodeSteps);
            Counter(sb, "oml_engine_decoded_rows_total", "Rows summed over the decode steps.", e.DecodedRows);
            Counter(sb, "oml_engine_cache_rebuilds_total", "Times the batch's KV cache was copied into a new one.", e.Rebuilds);
            Counter(sb, "oml_engine_host_syncs_total", "Copies from the device that wait for it.", e.HostSyncs);
            Seconds(sb, "oml_engine_busy_seconds_total", "Time the decoder spent in steps.", e.BusySeconds);
            Seconds(sb, "oml_engine_prefill_seconds_total", "Of it, in prefills.", e.PrefillSeconds);
            Seconds(sb, "oml_engine_rebuild_seconds_total", "Of it, in KV cache rebuilds.", e.RebuildSeconds);
            Seconds(sb, "oml_engine_decode_seconds_total", "Of it, in decode steps.", e.DecodeSeconds);
        }
        _latency.Render(sb, "oml_request_duration_seconds", "Time from request to the end of the answer.");
        _firstToken.Render(sb, "oml_time_to_first_token_seconds", "Time from request to the first generated piece of text.");
        _batch.Render(sb, "oml_batch_size", "Sequences per decode step.");
        return sb.ToString();
    }

    private static void Counter(StringBuilder sb, string name, string help, long value) =>
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");

    private static void Seconds(StringBuilder sb, string name, string help, double value) =>
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");

    private static void Gauge(StringBuilder sb, string name, string help, long value) =>
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");

    private sealed class Histogram(double[] bounds)
    {
        private readonly long[] _counts = new long[bounds.Length + 1];
        private readonly Lock _gate = new();
        private double _sum;
        private long _count;

        public void Observe(double value)
        {
            int i = 0;
            while (i < bounds.Length && value > bounds[i]) i++;
            lock (_gate)
            {
                _counts[i]++;
                _sum += value;
                _count++;
            }
        }

        public void Render(StringBuilder sb, string name, string help)
        {
            long[] counts;
            double sum;
            long count;
            lock (_gate)
            {
                counts = (long[])_counts.Clone();
                sum = _sum;
                count = _count;
            }
            sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} histogram\n");
            long cumulative = 0;
            for (int i = 0; i < bounds.Length; i++)
            {
                cumulative += counts[i];
                sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"{bounds[i]}\"}} {cumulative}\n");
            }
            sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n");
        }
    }
}
