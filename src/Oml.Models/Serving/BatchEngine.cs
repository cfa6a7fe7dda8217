using System.Collections.Concurrent;
using System.Threading.Channels;
using Oml.Engine;

namespace Oml.Models.Serving;

/// <summary>How one sequence is decoded by a <see cref="BatchEngine"/>.</summary>
public sealed record SamplingParams
{
    /// <summary>The most new tokens (≥ 1).</summary>
    public int MaxTokens { get; init; } = 16;
    /// <summary>Sampling temperature; 0 is greedy decoding (argmax).</summary>
    public double Temperature { get; init; }
    /// <summary>Nucleus mass in (0, 1]: sample among the most probable tokens whose probabilities add up to it.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Seeds this sequence's own random stream, so a seeded request repeats exactly whatever else is in the batch.</summary>
    public long? Seed { get; init; }
    /// <summary>How many of the most probable tokens to report with each token (0–20); null reports no log-probabilities.</summary>
    public int? TopLogprobs { get; init; }
    /// <summary>Token ids that end the sequence with finish reason "stop" (the token is counted but is not text).</summary>
    public IReadOnlyCollection<int> StopTokenIds { get; init; } = [];

    public void Validate()
    {
        if (MaxTokens < 1) throw new ArgumentException("max tokens must be at least 1");
        if (!(Temperature >= 0 && Temperature <= 100)) throw new ArgumentException("temperature must be in [0, 100]");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException("top_p must be in (0, 1]");
        if (TopLogprobs is < 0 or > 20) throw new ArgumentException("top logprobs must be in [0, 20]");
    }
}

/// <summary>One generated token: its id, its log-probability under the model (raw logits, before temperature and
/// top-p; NaN unless log-probabilities were asked for), the most probable alternatives, and the finish reason when it is
/// the sequence's last token ("stop" for a stop token, "length" at the token limit).</summary>
public readonly record struct GeneratedToken(int TokenId, float Logprob, (int TokenId, float Logprob)[]? Top, string? FinishReason)
{
    /// <summary>True when this token is a stop token (it ends the sequence and is not part of its text).</summary>
    public bool IsStopToken => FinishReason == "stop";
}

/// <summary>Options of a <see cref="BatchEngine"/>.</summary>
public sealed record BatchEngineOptions
{
    /// <summary>Tests only: called with the contexts of every prefill (into a cache) before its forward pass; what it
    /// throws stands for a failed pass (out of memory, a kernel error).</summary>
    internal Action<IReadOnlyList<int[]>>? BeforePrefill { get; init; }

    /// <summary>The most sequences decoded together; 1 decodes each request alone (no batching). Default 64 (<c>oml
    /// serve</c> asks for 256 on a GPU).</summary>
    public int MaxBatchSize { get; init; } = 64;
    /// <summary>The most prompt tokens prefilled in one forward pass when admitting new sequences, counted as the pass
    /// computes them: the prompts padded to the longest (n × its length); a longer prompt is prefilled alone. Default 8192.</summary>
    public int MaxPrefillTokens { get; init; } = 8192;
    /// <summary>
    /// The most bytes the key/value cache may take at any point of a step, old and new caches of a rebuild included;
    /// null for no bound (the CPU, tests). Waiting sequences are admitted, first come first served, only while the step's
    /// peak fits it (<see cref="KvAdmission.Admissible"/>); when the running rows outgrow it, the latest to arrive are set
    /// aside and recomputed later (<see cref="KvAdmission.Keepable"/>); a sequence that could not fit even alone is
    /// refused by <see cref="BatchEngine.Submit"/>. <c>oml serve</c> sets it from the GPU's free memory
    /// (<see cref="KvCacheBudget.ForDevice"/>).
    /// </summary>
    public long? KvCacheBudgetBytes { get; init; }

    /// <summary>
    /// Whether rows that end stay in the batch cache as dead rows (decoded with the others, their tokens dropped) until a
    /// rebuild is due for another reason, or while they do not outnumber the live ones; otherwise the cache is rebuilt
    /// without them at the next step. A rebuild copies the whole cache, a dead row costs a row of every decode step: on
    /// a GPU, at small sizes, the first is launches and the second nearly nothing; on the CPU the reverse. Null (the
    /// default): on a CUDA device only.
    /// </summary>
    public bool? KeepEndedRows { get; init; }

    /// <summary>
    /// Whether requests that ask for one token are answered by a forward pass of their own, without a cache (never joining
    /// the batch, its rebuilds or its decode steps), or like any other request (a prefill into the batch, the token
    /// fetched with the next decode step's, or at once, with no decode step and no batch cache, when no other row goes
    /// on). On the CPU the pass of their own halves the engine's time for one-token verification; on an H100, with
    /// inference kept off cuDNN's attention, both ways measured alike (docs/benchmarks.md, "cuDNN's attention plans").
    /// Null (the default): on the CPU only.
    /// </summary>
    public bool? OneTokenPass { get; init; }
}

/// <summary>What a <see cref="BatchEngine"/> has done since it started, counted on its decoder thread: the work that,
/// on a GPU at small sizes, is mostly kernel launches and host round trips rather than arithmetic.</summary>
/// <param name="Prefills">Prefill forward passes (each admits one or more sequences).</param>
/// <param name="PrefilledRows">Sequences prefilled (a set-aside sequence counts again when it comes back).</param>
/// <param name="DecodeSteps">Decode forward passes (one token for every row of the batch).</param>
/// <param name="DecodedRows">Rows summed over the decode steps.</param>
/// <param name="Rebuilds">Times the batch's key/value cache was copied into a new one (rows joined or left, or it was full).</param>
/// <param name="HostSyncs">Copies from the device that wait for it (token ids or logits brought to the host).</param>
/// <param name="BusySeconds">Time the decoder thread spent in steps (not waiting for work).</param>
/// <param name="PrefillSeconds">Of it, in prefills (on a GPU, up to the host sync that ends each).</param>
/// <param name="RebuildSeconds">Of it, in cache rebuilds (on a GPU, the launches only: nothing waits for them).</param>
/// <param name="DecodeSeconds">Of it, in decode steps (on a GPU, up to the host sync that ends each).</param>
public readonly record struct BatchEngineCounters(long Prefills, long PrefilledRows, long DecodeSteps, long DecodedRows, long Rebuilds,
    long HostSyncs, double BusySeconds, double PrefillSeconds, double RebuildSeconds, double DecodeSeconds);

/// <summary>
/// Continuous batching over a <see cref="CausalLM"/>: one decoder thread runs every sequence in flight as one batch,
/// one token per step, and admits new sequences between steps (their prompts prefilled together, then merged into the
/// running batch) and drops finished or cancelled ones, so that throughput grows with the number of concurrent
/// requests while a request alone decodes as fast as before.
/// </summary>
/// <remarks>
/// The batch shares one key/value cache of [B, kvHeads, L, headDim] per layer with each row's positions right-aligned
/// at column L; columns left of a row's first token are masked padding, and positions count each row's real tokens, so
/// each row computes what it would alone (up to floating-point batching effects). The cache is rebuilt only when rows
/// join or leave, or when it is full; columns that are padding for every row are dropped then. Only the last position's
/// logits are computed. With a <see cref="BatchEngineOptions.KvCacheBudgetBytes"/>, rows join only while the cache fits
/// it, and when growing the cache would not, the latest rows to arrive leave it and wait at the head of the queue; they
/// come back by prefilling their prompt and the tokens they had generated (vLLM's preemption by recomputation), so
/// their output goes on where it stopped. Greedy rows without log-probabilities take their token from an argmax on the
/// device, so only their token ids come back to the host; the logits of the rows that sample (temperature, top-p, a
/// random stream per sequence) or report log-probabilities are copied to the host and processed there, row by row.
/// </remarks>
public sealed class BatchEngine : IDisposable
{
    private readonly CausalLM _model;
    private readonly BatchEngineOptions _options;
    private readonly ConcurrentQueue<Sequence> _queue = new();
    private readonly Lock _admitting = new(); // held while the decoder takes from the queue, and while SubmitAll fills it
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private volatile bool _stopping;

    // Decoder-thread state.
    private readonly List<Sequence> _rows = [];
    private readonly List<Sequence> _resume = []; // rows set aside for memory, in arrival order: admitted before the queue
    private KVCache? _cache;
    private readonly KvCacheShape _shape;
    private readonly bool _keepEnded;
    private readonly bool _oneTokenPass;
    private long _arrivals, _preemptions;
    private long _prefills, _prefilledRows, _decodeSteps, _decodedRows, _rebuilds, _hostSyncs, _busyTicks, _prefillTicks, _rebuildTicks, _decodeTicks;
    private volatile int _resumeCount;

    public BatchEngine(CausalLM model, BatchEngineOptions? options = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = options ?? new BatchEngineOptions();
        if (_options.MaxBatchSize < 1) throw new ArgumentException("the batch size must be at least 1");
        if (_options.MaxPrefillTokens < 1) throw new ArgumentException("the prefill budget must be at least 1 token");
        if (_options.KvCacheBudgetBytes is <= 0) throw new ArgumentException("the KV cache budget must be positive");
        _shape = KvCacheShape.Of(model);
        _keepEnded = _options.KeepEndedRows ?? model.Device.IsCuda;
        _oneTokenPass = _options.OneTokenPass ?? !model.Device.IsCuda;
        _thread = new Thread(Loop) { IsBackground = true, Name = "oml-batch-engine" };
        _thread.Start();
    }

    public CausalLM Model => _model;
    public BatchEngineOptions Options => _options;

    /// <summary>Raised on the decoder thread after each decode step with the number of sequences in it (dead rows that
    /// wait for the next rebuild not counted).</summary>
    public event Action<int>? Stepped;

    /// <summary>Sequences waiting to be admitted (set-aside ones included).</summary>
    public int Waiting => _queue.Count + _resumeCount;

    /// <summary>How the model's key/value cache is laid out (bytes per token).</summary>
    public KvCacheShape KvShape => _shape;

    /// <summary>How many times a running sequence was set aside because the cache outgrew its budget.</summary>
    public long Preemptions => Interlocked.Read(ref _preemptions);

    /// <summary>The engine's work so far (<see cref="BatchEngineCounters"/>); read from any thread.</summary>
    public BatchEngineCounters Counters => new(Interlocked.Read(ref _prefills), Interlocked.Read(ref _prefilledRows),
        Interlocked.Read(ref _decodeSteps), Interlocked.Read(ref _decodedRows), Interlocked.Read(ref _rebuilds),
        Interlocked.Read(ref _hostSyncs), Seconds(ref _busyTicks), Seconds(ref _prefillTicks), Seconds(ref _rebuildTicks), Seconds(ref _decodeTicks));

    private static double Seconds(ref long ticks) => (double)Interlocked.Read(ref ticks) / System.Diagnostics.Stopwatch.Frequency;

    /// <summary>Adds the time since <paramref name="started"/> (a <see cref="System.Diagnostics.Stopwatch"/> timestamp) to a counter.</summary>
    private static void Since(ref long ticks, long started) => Interlocked.Add(ref ticks, System.Diagnostics.Stopwatch.GetTimestamp() - started);

    /// <summary>Sequences being decoded (as of the last step).</summary>
    public int Running { get; private set; }

    /// <summary>
    /// Queues a prompt and returns its tokens as they are decoded; the last one carries the finish reason. Cancelling
    /// <paramref name="ct"/> drops the sequence at the next step and completes the reader.
    /// </summary>
    public ChannelReader<GeneratedToken> Submit(IReadOnlyList<int> prompt, SamplingParams p, CancellationToken ct = default)
    {
        var seq = Create(prompt, p, ct, out var reader);
        _queue.Enqueue(seq);
        _wake.Release();
        return reader;
    }

    /// <summary>
    /// Queues several prompts at once, in order, as <see cref="Submit"/> does each: every one is checked before any is
    /// queued, and the decoder sees them all together, so that they join the batch in one prefill when the batch size,
    /// the prefill budget and the cache budget allow.
    /// </summary>
    public ChannelReader<GeneratedToken>[] SubmitAll(IReadOnlyList<(IReadOnlyList<int> Prompt, SamplingParams P)> requests, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var readers = new ChannelReader<GeneratedToken>[requests.Count];
        var seqs = new Sequence[requests.Count];
        try
        {
            for (int i = 0; i < requests.Count; i++) seqs[i] = Create(requests[i].Prompt, requests[i].P, ct, out readers[i]);
        }
        catch
        {
            foreach (var q in seqs) q?.Registration.Dispose();
            throw;
        }
        lock (_admitting)
            foreach (var q in seqs) _queue.Enqueue(q);
        if (seqs.Length > 0) _wake.Release();
        return readers;
    }

    private Sequence Create(IReadOnlyList<int> prompt, SamplingParams p, CancellationToken ct, out ChannelReader<GeneratedToken> reader)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(p);
        p.Validate();
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty");
        int vocab = _model.Config.VocabSize;
        foreach (var id in prompt)
            if ((uint)id >= (uint)vocab) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {vocab})");
        if (prompt.Count + p.MaxTokens > _model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"{prompt.Count} prompt tokens + {p.MaxTokens} new tokens exceed the model's context of {_model.Config.MaxPositionEmbeddings}");
        // A request for one token answered by a pass of its own keeps no cache (PrefillOnly).
        if (_options.KvCacheBudgetBytes is { } budget && (p.MaxTokens > 1 || !_oneTokenPass) && _shape.SequenceBytes(prompt.Count + p.MaxTokens) > budget)
            throw new ArgumentException($"{prompt.Count} prompt tokens + {p.MaxTokens} new tokens need up to {KvCacheBudget.Gib(_shape.SequenceBytes(prompt.Count + p.MaxTokens))} GiB "
                + $"of KV cache, more than this engine's budget of {KvCacheBudget.Gib(budget)} GiB");
        ObjectDisposedException.ThrowIf(_stopping, this);
        var channel = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var seq = new Sequence(prompt.ToArray(), p, channel.Writer, new Random(p.Seed is { } s ? unchecked((int)(s ^ (s >> 32))) : Random.Shared.Next()));
        seq.Arrival = Interlocked.Increment(ref _arrivals);
        if (ct.CanBeCanceled)
            seq.Registration = ct.Register(() =>
            {
                seq.Cancelled = true;
                try { _wake.Release(); }
                catch (ObjectDisposedException) { }
            });
        reader = channel.Reader;
        return seq;
    }

    /// <summary>Stops the decoder thread; sequences in flight end with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        _wake.Release();
        _thread.Join();
        _wake.Dispose();
    }

    private sealed class Sequence(int[] prompt, SamplingParams p, ChannelWriter<GeneratedToken> writer, Random rng)
    {
        public readonly int[] Prompt = prompt;
        public readonly SamplingParams P = p;
        public readonly ChannelWriter<GeneratedToken> Writer = writer;
        public readonly Random Rng = rng;
        public readonly List<int> Output = []; // the tokens generated so far (the last one is Pending)
        public CancellationTokenRegistration Registration;
        public volatile bool Cancelled;
        public long Arrival;    // submission order
        public int Generated;
        public int Cached;      // positions of this sequence stored in the cache
        public int Pending;     // the last sampled token, not yet in the cache
        public bool Resuming;   // prefilled again after being set aside: its next token is Pending already
        public int Unsampled = -1; // prefilled this step, its first token still on the device: its row in the prefill's argmax
        public bool Done;

        /// <summary>The positions a prefill stores: the prompt, and after a preemption the tokens generated before the pending one.</summary>
        public int[] Context() => Generated == 0 ? Prompt : [.. Prompt, .. Output.Take(Generated - 1)];

        /// <summary>As the cache sees this sequence once prefilled: its positions and the most tokens it may still generate.</summary>
        public KvRow QueuedRow => new(Prompt.Length + Math.Max(Generated - 1, 0), P.MaxTokens - Math.Max(Generated, 1));

        /// <summary>As the cache sees this sequence while it runs (a row whose first token is still on the device has
        /// generated it: as <see cref="QueuedRow"/> counted it when it was admitted).</summary>
        public KvRow RunningRow => new(Cached, P.MaxTokens - Math.Max(Generated, 1));

        public void Finish(Exception? error = null)
        {
            if (Done) return;
            Done = true;
            Registration.Dispose();
            Writer.TryComplete(error);
        }
    }

    private void Loop()
    {
        using var noGrad = Torch.NoGrad();
        while (true)
        {
            if (_rows.Count == 0 && _queue.IsEmpty && _resume.Count == 0)
            {
                if (_stopping) break;
                _wake.Wait();
                continue;
            }
            if (_stopping) break;
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                Step();
            }
            catch (Exception e)
            {
                // A failed forward pass fails the sequences it held; the engine goes on with the next requests.
                foreach (var s in _rows) s.Finish(e);
                _rows.Clear();
                _cache?.Dispose();
                _cache = null;
            }
            Running = _rows.Count(r => !r.Done);
            Since(ref _busyTicks, started);
        }
        var gone = new ObjectDisposedException(nameof(BatchEngine), "the engine was stopped");
        foreach (var s in _rows) s.Finish(gone);
        foreach (var s in _resume) s.Finish(gone);
        while (_queue.TryDequeue(out var q)) q.Finish(gone);
        _rows.Clear();
        _resume.Clear();
        _resumeCount = 0;
        _cache?.Dispose();
        _cache = null;
    }

    private void Step()
    {
        // Admit waiting sequences up to the batch size, the prefill budget and the cache budget; prefill them together.
        var admitted = Admit();
        KVCache? fresh = null;
        Tensor? firstTokens = null;
        try
        {
            try
            {
                foreach (var s in _rows)
                    if (s.Cancelled) s.Finish();
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                if (admitted.Count > 0 && admitted.All(EndsAtFirstToken))
                {
                    // One token asked of each (verification's answers; Admit takes them apart from the rest): one pass,
                    // their tokens fetched at once, and they never join the batch, its cache or its decode. A failure
                    // of that pass fails them alone: the running rows and their cache are untouched by it.
                    Running = _rows.Count(r => !r.Done) + admitted.Count;
                    try { PrefillOnly(admitted); }
                    catch (Exception e)
                    {
                        foreach (var s in admitted) s.Finish(e);
                    }
                    Since(ref _prefillTicks, t0);
                    admitted.Clear();
                    t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                }
                int stayed = _rows.Count(s => !s.Done), ended = _rows.Count - stayed;
                if (admitted.Count > 0 && JoinsInPlace(admitted, stayed))
                {
                    // The new rows are prefilled into the batch cache's spare rows: no copy of the cache. A failed
                    // prefill fails them alone: it wrote only spare rows, which no running row reads and the next join
                    // writes afresh.
                    try
                    {
                        Prefill(admitted, inPlace: true, out firstTokens);
                        _rows.AddRange(admitted);
                    }
                    catch (Exception e) when (stayed > 0)
                    {
                        FailAdmitted(admitted, e, ref firstTokens);
                    }
                    Since(ref _prefillTicks, t0);
                }
                else
                {
                    if (admitted.Count > 0)
                    {
                        // A failed prefill into a cache of its own fails the new rows alone; the batch decodes on.
                        try { fresh = Prefill(admitted, inPlace: false, out firstTokens); }
                        catch (Exception e) when (stayed > 0)
                        {
                            FailAdmitted(admitted, e, ref firstTokens);
                        }
                        Since(ref _prefillTicks, t0);
                    }
                    if (firstTokens is not null && stayed == 0 && admitted.All(EndsWithPrefilledToken))
                    {
                        // Nothing runs on and every new row ends with the token its prefill left on the device: no batch
                        // cache to build; the decode brings those tokens to the host without a forward pass.
                        _rows.Clear();
                        _rows.AddRange(admitted);
                        _cache?.Dispose();
                        _cache = null;
                    }
                    else if (!Regroup(admitted, fresh, stayed, ended)) return;
                }
            }
            catch (Exception e)
            {
                // Sequences taken from the queue are not in the batch yet: they fail with it.
                foreach (var s in admitted) s.Finish(e);
                throw;
            }
            finally
            {
                fresh?.Dispose();
            }
            long t2 = System.Diagnostics.Stopwatch.GetTimestamp();
            Decode(firstTokens);
            Since(ref _decodeTicks, t2);
        }
        finally
        {
            firstTokens?.Dispose();
        }
    }

    /// <summary>Rows that leave (finished, cancelled) and rows that join (<paramref name="admitted"/>, prefilled into
    /// <paramref name="fresh"/>): rebuilds the batch cache once, when it must be. False when no row is left (the batch
    /// and its cache are dropped).</summary>
    /// <summary>Fails the sequences a failed prefill was admitting (a bad request's error, or no memory for them), and
    /// only them.</summary>
    private static void FailAdmitted(List<Sequence> admitted, Exception e, ref Tensor? firstTokens)
    {
        foreach (var s in admitted) s.Finish(e);
        admitted.Clear();
        firstTokens?.Dispose();
        firstTokens = null;
    }

    private bool Regroup(List<Sequence> admitted, KVCache? fresh, int stayed, int ended)
    {
        var keep = new List<(Sequence Seq, KVCache Src, int Row)>();
        for (int i = 0; i < _rows.Count; i++)
            if (!_rows[i].Done) keep.Add((_rows[i], _cache!, i));
        for (int i = 0; i < admitted.Count; i++)
            if (!admitted[i].Done) keep.Add((admitted[i], fresh!, i));
        if (keep.Count == 0)
        {
            _rows.Clear();
            _cache?.Dispose();
            _cache = null;
            return false;
        }
        // With KeepEndedRows, rows that ended stay in the cache as dead rows (decoded, their tokens ignored) until a
        // rebuild is due anyway: rows join that have no room, the cache is full, or the dead outnumber the live.
        if (admitted.Count > 0 || _cache!.Length >= _cache.Capacity || (_keepEnded ? ended > stayed : ended > 0))
        {
            long sources = Slots(_cache) + Slots(fresh);
            keep = SetAside(keep, sources);
            long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
            Rebuild(keep, [.. new[] { _cache, fresh }.OfType<KVCache>()], sources);
            Since(ref _rebuildTicks, t1);
        }
        return true;
    }

    /// <summary>The columns a rebuild adds, where memory allows, for sequences that join later (<see cref="Rebuild"/>).</summary>
    private const int JoinColumns = 32;

    /// <summary>Token slots of a cache's buffers (rows × capacity; 0 for none).</summary>
    private static long Slots(KVCache? cache) => cache is null ? 0 : cache.Batch * cache.Capacity;

    /// <summary>Whether <paramref name="admitted"/> can join the running batch without a rebuild: the batch cache has
    /// spare rows for them (<see cref="Rebuild"/> leaves some when memory allows), their contexts fit left of its last
    /// column (they are right-aligned there as every row is) without many more columns left of them, this step's decode
    /// has a column left, and no rows ended
    /// (with <see cref="BatchEngineOptions.KeepEndedRows"/>: the dead rows do not outnumber the live).</summary>
    private bool JoinsInPlace(List<Sequence> admitted, int stayed)
    {
        int ended = _rows.Count - stayed;
        if (_cache is null || stayed == 0 || (_keepEnded ? ended > stayed : ended > 0) || _cache.Batch - _rows.Count < admitted.Count
            || _cache.Length >= _cache.Capacity) return false;
        // The prompts' attention spans the cache's columns: at most about twice a prefill of their own (or 32 more).
        int width = admitted.Max(s => s.QueuedRow.Tokens);
        return width <= _cache.Length && _cache.Length - width <= Math.Max(width, JoinColumns);
    }

    /// <summary>Takes the waiting sequences that join the batch now (<see cref="KvAdmission.Admissible"/>): set-aside
    /// ones first (they came before anything in the queue), then the queue's, in order.</summary>
    private List<Sequence> Admit()
    {
        lock (_admitting) return AdmitLocked();
    }

    private List<Sequence> AdmitLocked()
    {
        var admitted = new List<Sequence>();
        _resume.RemoveAll(s =>
        {
            if (!s.Done && !s.Cancelled) return false;
            s.Finish();
            return true;
        });
        while (_queue.TryPeek(out var head) && head.Cancelled)
        {
            _queue.TryDequeue(out _);
            head.Finish();
        }
        var live = _rows.Where(s => !s.Done && !s.Cancelled).ToList();
        if (live.Count == 0 && _cache is not null)
        {
            // Every row has ended: its cache is freed before the next prefill rather than after (the step drops the rows).
            _cache.Dispose();
            _cache = null;
        }
        // Requests for one token need no row of the batch and no cache: the run of them at the head of the line (set-aside
        // ones first, then the queue's) is admitted on its own, however full the batch or its cache, bounded only by the
        // batch size and the prefill budget of its one pass; and the other requests are admitted up to the next of them,
        // so that a step's admissions are all of one kind.
        var once = OneTokenRun();
        if (once.Count > 0)
        {
            _resumeCount = _resume.Count;
            return once;
        }
        int slots = _options.MaxBatchSize - live.Count;
        if (slots > 0)
        {
            var candidates = new List<Sequence>();
            foreach (var s in _resume)
            {
                if (candidates.Count == slots || EndsAtFirstToken(s)) break;
                candidates.Add(s);
            }
            int resumed = candidates.Count;
            if (resumed == _resume.Count && candidates.Count < slots)
                foreach (var s in _queue)
                {
                    if (s.Cancelled) continue;
                    if (EndsAtFirstToken(s)) break;
                    candidates.Add(s);
                    if (candidates.Count == slots) break;
                }
            int n = candidates.Count == 0 ? 0 : KvAdmission.Admissible([.. live.Select(s => s.RunningRow)], Slots(_cache),
                [.. candidates.Select(s => s.QueuedRow)], _options.MaxBatchSize, _options.MaxPrefillTokens, _shape, _options.KvCacheBudgetBytes);
            int fromResume = Math.Min(n, resumed);
            admitted.AddRange(_resume.Take(fromResume));
            _resume.RemoveRange(0, fromResume);
            // Only this thread dequeues, so the queue's head is the candidates' order, but for sequences cancelled since.
            for (int i = fromResume; i < n;)
            {
                _queue.TryDequeue(out var s);
                if (ReferenceEquals(s, candidates[i]))
                {
                    admitted.Add(s);
                    i++;
                }
                else s!.Finish();
            }
        }
        _resumeCount = _resume.Count;
        return admitted;
    }

    /// <summary>The leading run of one-token requests (<see cref="EndsAtFirstToken"/>) of the set-aside sequences, then of
    /// the queue (only when nothing is set aside), up to <see cref="BatchEngineOptions.MaxBatchSize"/> of them and the
    /// prefill budget (their count × the longest prompt); the first is taken whatever its length. Cancelled queued
    /// sequences met on the way are finished.</summary>
    private List<Sequence> OneTokenRun()
    {
        var run = new List<Sequence>();
        long width = 0;
        bool Fits(Sequence s)
        {
            long w = Math.Max(width, s.QueuedRow.Tokens);
            if (run.Count > 0 && (run.Count >= _options.MaxBatchSize || (run.Count + 1) * w > _options.MaxPrefillTokens)) return false;
            width = w;
            return true;
        }
        while (_resume.Count > 0 && EndsAtFirstToken(_resume[0]) && Fits(_resume[0]))
        {
            run.Add(_resume[0]);
            _resume.RemoveAt(0);
        }
        if (_resume.Count > 0) return run;
        // Only this thread dequeues: the head it peeks is the one it takes.
        while (_queue.TryPeek(out var head))
        {
            if (head.Cancelled)
            {
                _queue.TryDequeue(out _);
                head.Finish();
                continue;
            }
            if (!EndsAtFirstToken(head) || !Fits(head)) break;
            _queue.TryDequeue(out _);
            run.Add(head);
        }
        return run;
    }

    /// <summary>The rows a rebuild from <paramref name="sources"/> token slots keeps within the cache budget
    /// (<see cref="KvAdmission.Keepable"/>); the others, the latest to arrive, wait at the head of the queue, in arrival
    /// order, to be prefilled again with what they had generated.</summary>
    private List<(Sequence Seq, KVCache Src, int Row)> SetAside(List<(Sequence Seq, KVCache Src, int Row)> rows, long sources)
    {
        if (_options.KvCacheBudgetBytes is null || rows.Count <= 1) return rows;
        var order = rows.OrderBy(r => r.Seq.Arrival).ToList();
        int n = KvAdmission.Keepable([.. order.Select(r => r.Seq.RunningRow)], sources, _shape, _options.KvCacheBudgetBytes);
        if (n == order.Count) return rows;
        var aside = order.Skip(n).Select(r => r.Seq).ToHashSet();
        foreach (var s in aside)
        {
            s.Cached = 0;
            s.Unsampled = -1; // a first token never sampled: the prompt is prefilled again
            int at = _resume.FindIndex(w => w.Arrival > s.Arrival);
            _resume.Insert(at < 0 ? _resume.Count : at, s);
            Interlocked.Increment(ref _preemptions);
        }
        _resumeCount = _resume.Count;
        return [.. rows.Where(r => !aside.Contains(r.Seq))];
    }

    /// <summary>Whether a row prefilled this step ends with the first token the prefill left on the device, whatever it
    /// is (one token asked), or is cancelled and ends anyway.</summary>
    private static bool EndsWithPrefilledToken(Sequence s) => s.Unsampled >= 0 && (s.P.MaxTokens == 1 || s.Cancelled);

    /// <summary>A new sequence that asks for one token, answered by a pass of its own (<see cref="BatchEngineOptions.OneTokenPass"/>).</summary>
    private bool EndsAtFirstToken(Sequence s) => _oneTokenPass && s.Generated == 0 && s.P.MaxTokens == 1;

    /// <summary>The new prompts, left-padded to the longest (width): ids [n, width] and mask [n, <paramref name="columns"/>]
    /// with the prompts in the last width columns (the columns before them, a cache's, are padding for them).</summary>
    private (long[] Ids, long[] Mask) LeftPadded(List<int[]> contexts, int columns)
    {
        int n = contexts.Count, width = contexts.Max(c => c.Length), pad = _model.Config.PadTokenId ?? 0, before = columns - width;
        var ids = new long[n * width];
        var mask = new long[n * columns];
        Array.Fill(ids, pad);
        for (int r = 0; r < n; r++)
        {
            var tokens = contexts[r];
            int off = width - tokens.Length;
            for (int j = 0; j < tokens.Length; j++) { ids[r * width + off + j] = tokens[j]; mask[r * columns + before + off + j] = 1; }
        }
        return (ids, mask);
    }

    /// <summary>Sequences that each end with their first token (<see cref="EndsAtFirstToken"/>): one forward pass without
    /// a cache (<see cref="Generator.NextTokenLogits"/>: prompts of one length without a mask either, plain causal
    /// attention, SDPA's flash kernel on a GPU), the last position's logits fetched and every sequence given its token,
    /// which finishes it.</summary>
    private void PrefillOnly(List<Sequence> seqs)
    {
        Interlocked.Increment(ref _prefills);
        Interlocked.Add(ref _prefilledRows, seqs.Count);
        StepLogits logits;
        using (Torch.NewScope())
            logits = Fetch(seqs, Generator.NextTokenLogits(_model, [.. seqs.Select(s => (IReadOnlyList<int>)s.Context())]));
        Interlocked.Add(ref _hostSyncs, logits.Syncs);
        Sample(seqs, logits);
    }

    /// <summary>Runs the new prompts left-padded in one forward pass and samples each one's first token (a set-aside
    /// sequence prefills its prompt and the tokens it had generated, and goes on with its pending token). When every
    /// new sequence is greedy without log-probabilities, their first tokens stay on the device as
    /// <paramref name="firstTokens"/> ([n] ids), the step's decode takes them from there, and they come to the host with
    /// the decode's tokens (or alone, when no row goes on): one wait for the device a step instead of two.
    /// <paramref name="inPlace"/>: the prompts go into the batch cache's spare rows after its running ones, right-aligned
    /// at its length (<see cref="JoinsInPlace"/>), and null is returned; else into a new cache of their own, returned.</summary>
    private KVCache? Prefill(List<Sequence> seqs, bool inPlace, out Tensor? firstTokens)
    {
        firstTokens = null;
        bool onDevice = seqs.All(s => s.Generated == 0 && ArgMaxOnDevice(s.P));
        var contexts = seqs.Select(s => s.Context()).ToList();
        _options.BeforePrefill?.Invoke(contexts);
        int n = seqs.Count, width = contexts.Max(c => c.Length);
        // The mask covers the cache's columns before the prompts too (all padding for the new rows).
        int total = inPlace ? checked((int)_cache!.Length) : width, before = total - width;
        var (ids, mask) = LeftPadded(contexts, total);
        foreach (var s in seqs) s.Resuming = s.Generated > 0;
        // Prompts of one length into a cache of their own need no mask: plain causal attention (SDPA's flash kernel on a
        // GPU), positions 0..width-1 as the mask's would be.
        bool unpadded = !inPlace && contexts.All(c => c.Length == width);
        var cache = inPlace ? _cache!.Rows(_rows.Count, n, before) : new KVCache(_model.Config, n, width, _model.DType, _model.Device);
        Interlocked.Increment(ref _prefills);
        Interlocked.Add(ref _prefilledRows, n);
        try
        {
            StepLogits logits;
            using (Torch.NewScope())
            {
                var dev = _model.Device;
                var input = Torch.FromArray<long>(ids, [n, width], dev);
                Tensor hidden;
                // The LM head at the last position only: never [n, width, vocab] logits.
                if (unpadded) hidden = _model.Hidden(input, null, null, cache);
                else
                {
                    var m = Torch.FromArray<long>(mask, [n, total], dev);
                    var positions = (m.CumSum(1) - 1).MaskedFill(m.Eq(0), 1);
                    if (before > 0) positions = positions.Narrow(1, before, width);
                    hidden = _model.Hidden(input, m, positions, cache);
                }
                if (onDevice)
                {
                    firstTokens = Generator.LastLogits(_model, hidden).ArgMax(-1).DetachFromScope();
                    logits = default;
                }
                else logits = Fetch(seqs, Generator.LastLogits(_model, hidden));
            }
            for (int r = 0; r < n; r++) seqs[r].Cached = contexts[r].Length;
            if (onDevice)
                for (int r = 0; r < n; r++) seqs[r].Unsampled = r;
            else
            {
                Interlocked.Add(ref _hostSyncs, logits.Syncs);
                Sample(seqs, logits);
            }
            if (!inPlace) return cache;
            cache.Dispose(); // the views only
            return null;
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>Builds the batch cache for <paramref name="rows"/>: each row's cached positions right-aligned at the
    /// longest row's length, leaving room for the next tokens. Rows come in groups that share a source cache (the
    /// running batch, the new prefill); each group is copied with one gather and one copy per layer and tensor. Each
    /// layer of the <paramref name="sources"/> is freed once copied, so the old and new caches are never both whole
    /// (<see cref="KvCacheShape.RebuildPeakBytes"/>); the sources are spent afterwards, whether or not it succeeds.
    /// Where memory allows (no budget, or the whole cache within half of it, <paramref name="sourceSlots"/> counted),
    /// the new cache has spare rows up to the batch size and <see cref="JoinColumns"/> more columns, so that sequences
    /// admitted later are prefilled into it without another rebuild (<see cref="JoinsInPlace"/>).</summary>
    private void Rebuild(List<(Sequence Seq, KVCache Src, int Row)> rows, IReadOnlyList<KVCache> sources, long sourceSlots)
    {
        var c = _model.Config;
        int b = rows.Count;
        long length = rows.Max(r => r.Seq.Cached);
        long capacity = _shape.Capacity(rows.Select(r => r.Seq.RunningRow));
        long batch = b;
        if (b < _options.MaxBatchSize && (_options.KvCacheBudgetBytes is not { } budget
            || _shape.RebuildPeakBytes(sourceSlots, (long)_options.MaxBatchSize * (capacity + JoinColumns)) <= budget / 2))
        {
            batch = _options.MaxBatchSize;
            capacity += JoinColumns;
        }
        // Consecutive rows from one source cache form a group: (first row here, count, source, its rows, columns to copy).
        var groups = new List<(int At, int Count, KVCache Src, long[] SrcRows, long Columns)>();
        for (int i = 0; i < b;)
        {
            int j = i;
            while (j < b && rows[j].Src == rows[i].Src) j++;
            var srcRows = new long[j - i];
            for (int k = i; k < j; k++) srcRows[k - i] = rows[k].Row;
            groups.Add((i, j - i, rows[i].Src, srcRows, rows.Skip(i).Take(j - i).Max(r => (long)r.Seq.Cached)));
            i = j;
        }
        var keys = new Tensor[c.NumLayers];
        var values = new Tensor[c.NumLayers];
        // Each group's row index goes to the device once, for every layer (null: the group is its source's first rows).
        using var indexScope = Torch.NewScope();
        var indices = groups.Select(g => g.SrcRows.Select((r, k) => r == k).All(x => x)
            ? null : Torch.FromArray<long>(g.SrcRows, [g.SrcRows.Length], _model.Device)).ToArray();
        try
        {
            for (int layer = 0; layer < c.NumLayers; layer++)
            {
                keys[layer] = Torch.Zeros([batch, c.NumKeyValueHeads, capacity, c.HeadDim], _model.DType, _model.Device).DetachFromScope();
                values[layer] = Torch.Zeros([batch, c.NumKeyValueHeads, capacity, c.HeadDim], _model.DType, _model.Device).DetachFromScope();
                for (int g = 0; g < groups.Count; g++)
                {
                    var (at, count, src, _, columns) = groups[g];
                    using var scope = Torch.NewScope();
                    var index = indices[g];
                    foreach (var (dst, buffer) in new[] { (keys[layer], src.KeyBuffer(layer)), (values[layer], src.ValueBuffer(layer)) })
                    {
                        var from = buffer.Narrow(2, src.Length - columns, columns);
                        from = index is null ? from.Narrow(0, 0, count) : from.IndexSelect(0, index);
                        dst.Narrow(0, at, count).Narrow(2, length - columns, columns).CopyFrom(from);
                    }
                }
                foreach (var src in sources) src.ReleaseLayer(layer);
            }
        }
        catch
        {
            foreach (var t in keys) t?.Dispose();
            foreach (var t in values) t?.Dispose();
            throw;
        }
        _cache?.Dispose();
        _cache = new KVCache(keys, values, length);
        Interlocked.Increment(ref _rebuilds);
        _rows.Clear();
        _rows.AddRange(rows.Select(r => r.Seq));
    }

    /// <summary>One decode step: every row's pending token in, every row's next token out. Rows prefilled this step
    /// with their first token on the device (<paramref name="firstTokens"/>, <see cref="Prefill"/>) take it from there;
    /// it reaches the host, and their readers, with the step's tokens. When no row goes on past that token, only those
    /// tokens are brought to the host: no forward pass, and the cache is not advanced.</summary>
    private void Decode(Tensor? firstTokens)
    {
        if (firstTokens is not null && _rows.All(s => s.Done || s.Cancelled || EndsWithPrefilledToken(s)))
        {
            // Every row left ends with the first token its prefill left on the device (one token asked of each, as
            // verification asks, and nothing else running): bring those to the host and skip the forward pass, which
            // would only compute tokens nobody asked for. The cache is not advanced; the rows end, and the next step
            // drops them.
            Interlocked.Increment(ref _hostSyncs);
            SampleFirstTokens(firstTokens.ToArray<long>());
            foreach (var s in _rows) if (!s.Done && s.Cancelled) s.Finish();
            return;
        }
        int b = _rows.Count;
        // The batch's rows of a cache with spare rows (views: the appends land in it).
        using var rowsView = _cache!.Batch > b ? _cache.Rows(0, b, _cache.Length) : null;
        var cache = rowsView ?? _cache;
        long length = cache.Length, total = length + 1;
        var ids = new long[b];
        var pos = new long[b];
        var mask = new long[b * total];
        int live = 0;
        for (int i = 0; i < b; i++)
        {
            var s = _rows[i];
            if (!s.Done) live++;
            ids[i] = s.Pending;
            pos[i] = s.Cached;
            long first = length - s.Cached;
            for (long j = first; j < total; j++) mask[i * total + j] = 1;
        }
        // The rows still without their first token come last (the running rows, then the admitted ones, in order).
        int unsampled = 0;
        while (unsampled < b && _rows[b - 1 - unsampled].Unsampled >= 0) unsampled++;
        if (firstTokens is null ? unsampled > 0 : _rows.Take(b - unsampled).Any(s => s.Unsampled >= 0))
            throw new InvalidOperationException("the rows prefilled this step are not the last of the batch");
        StepLogits logits;
        long[]? firstHost = null;
        using (Torch.NewScope())
        {
            var dev = _model.Device;
            var input = Torch.FromArray<long>(ids, [b, 1], dev);
            if (unsampled > 0)
            {
                // Their first tokens, as the prefill's argmax left them (rows set aside since are not among them).
                var picked = _rows.Skip(b - unsampled).Select(s => (long)s.Unsampled).ToArray();
                var tokens = picked.Length == firstTokens!.Size(0) && picked.Select((r, k) => r == k).All(x => x)
                    ? firstTokens : firstTokens.IndexSelect(0, Torch.FromArray<long>(picked, [picked.Length], dev));
                input = unsampled == b ? tokens.Unsqueeze(1) : Torch.Cat([input.Narrow(0, 0, b - unsampled), tokens.Unsqueeze(1)]);
            }
            var hidden = _model.Hidden(input, Torch.FromArray<long>(mask, [b, total], dev), Torch.FromArray<long>(pos, [b, 1], dev), cache);
            logits = Fetch(_rows, Generator.LastLogits(_model, hidden), firstTokens, out firstHost);
        }
        if (rowsView is not null) _cache.Advance(1);
        Interlocked.Increment(ref _decodeSteps);
        Interlocked.Add(ref _decodedRows, b);
        Interlocked.Add(ref _hostSyncs, logits.Syncs);
        foreach (var s in _rows) s.Cached++;
        // The first tokens first: a row that ends with it (a stop token, one token asked) ignores the decode's.
        if (firstHost is not null) SampleFirstTokens(firstHost);
        Sample(_rows, logits);
        Stepped?.Invoke(live);
    }

    /// <summary>Hands each row prefilled this step the first token its prefill chose (<paramref name="firstHost"/>, the
    /// prefill's argmax brought to the host, indexed by the row's <see cref="Sequence.Unsampled"/>).</summary>
    private void SampleFirstTokens(long[] firstHost)
    {
        var rows = _rows.Where(s => s.Unsampled >= 0).ToList();
        Sample(rows, new StepLogits([.. rows.Select(s => firstHost[s.Unsampled])], null, [.. rows.Select(_ => -1)], _model.Config.VocabSize));
        foreach (var s in rows) s.Unsampled = -1;
    }

    /// <summary>What the host gets of a step's logits: every row's argmax (when a row takes its token from it) and the
    /// float32 logits of the rows that need them, packed [rows needing them, vocab]; <see cref="HostRow"/>[r] is row r's
    /// place among those, or −1.</summary>
    private readonly record struct StepLogits(long[]? ArgMax, float[]? Host, int[] HostRow, int Vocab)
    {
        /// <summary>The copies to the host that fetched these (each waits for the device).</summary>
        public int Syncs => (ArgMax is null && !AlsoFetched ? 0 : 1) + (Host is null ? 0 : 1);

        /// <summary>Other ids came to the host (the first tokens of a prefill), in the argmax's copy when there was one.</summary>
        public bool AlsoFetched { get; init; }
    }

    /// <summary>A row decoded greedily without log-probabilities needs only the argmax of its logits, computed on the device.</summary>
    private static bool ArgMaxOnDevice(SamplingParams p) => p.Temperature == 0 && p.TopLogprobs is null;

    /// <summary>Brings to the host what <see cref="Sample"/> needs of the logits [rows, vocab] (on the model's device, in
    /// its dtype): the argmax of each row, as int64 ids, when any row decodes greedily without log-probabilities, and
    /// float32 copies of only the rows that sample or report log-probabilities. torch.argmax returns the first of equal
    /// maxima, as the host's <see cref="ArgMax"/> does, and converting to float32 is exact, so a greedy row picks the same
    /// token either way (a NaN included: both take the first NaN as the maximum).</summary>
    private static StepLogits Fetch(List<Sequence> seqs, Tensor logits) => Fetch(seqs, logits, null, out _);

    /// <summary>As <see cref="Fetch(List{Sequence}, Tensor)"/>, bringing <paramref name="also"/> (int64 ids on the
    /// device, or null) to the host in the same copy as the argmax: <paramref name="alsoHost"/>.</summary>
    private static StepLogits Fetch(List<Sequence> seqs, Tensor logits, Tensor? also, out long[]? alsoHost)
    {
        alsoHost = null;
        int n = seqs.Count, vocab = checked((int)logits.Size(1));
        var hostRow = new int[n];
        var host = new List<long>();
        bool argMax = false;
        for (int r = 0; r < n; r++)
        {
            var s = seqs[r];
            hostRow[r] = -1;
            // Rows that end now (cancelled) or resume with their pending token need nothing; a row cancelled after this
            // is finished by Sample.
            if (s.Done || s.Cancelled || s.Resuming) continue;
            if (ArgMaxOnDevice(s.P)) argMax = true;
            else
            {
                hostRow[r] = host.Count;
                host.Add(r);
            }
        }
        long[]? ids = null;
        if (also is null) ids = argMax ? logits.ArgMax(-1).ToArray<long>() : null;
        else if (!argMax) alsoHost = also.ToArray<long>();
        else
        {
            var both = Torch.Cat([also, logits.ArgMax(-1)]).ToArray<long>();
            int k = checked((int)also.Size(0));
            alsoHost = both[..k];
            ids = both[k..];
        }
        float[]? rows = null;
        if (host.Count > 0)
        {
            var picked = host.Count == n ? logits : logits.IndexSelect(0, Torch.FromArray<long>(host.ToArray(), [host.Count], logits.Device));
            rows = picked.To(DType.Float32).Contiguous().ToArray<float>();
        }
        return new StepLogits(ids, rows, hostRow, vocab) { AlsoFetched = alsoHost is not null };
    }

    /// <summary>Chooses each row's next token (from <see cref="Fetch"/>'s argmax or host logits) and hands it to the row's reader.</summary>
    private static void Sample(List<Sequence> seqs, StepLogits logits)
    {
        int vocab = logits.Vocab;
        for (int r = 0; r < seqs.Count; r++)
        {
            var s = seqs[r];
            if (s.Done) continue;
            if (s.Cancelled) { s.Finish(); continue; }
            if (s.Resuming) { s.Resuming = false; continue; }
            int token;
            float logprob = float.NaN;
            (int, float)[]? top = null;
            if (ArgMaxOnDevice(s.P))
            {
                token = checked((int)logits.ArgMax![r]);
            }
            else
            {
                var row = logits.Host.AsSpan(logits.HostRow[r] * vocab, vocab);
                token = Choose(row, s.P, s.Rng);
                if (s.P.TopLogprobs is { } k)
                {
                    double lse = LogSumExp(row);
                    logprob = (float)(row[token] - lse);
                    top = k == 0 ? [] : TopK(row, k, lse);
                }
            }
            s.Generated++;
            s.Pending = token;
            s.Output.Add(token);
            string? finish = s.P.StopTokenIds.Contains(token) ? "stop" : s.Generated >= s.P.MaxTokens ? "length" : null;
            s.Writer.TryWrite(new GeneratedToken(token, logprob, top, finish));
            if (finish is not null) s.Finish();
        }
    }

    private static int Choose(ReadOnlySpan<float> logits, SamplingParams p, Random rng)
    {
        if (p.Temperature == 0) return ArgMax(logits);
        double max = logits[ArgMax(logits)];
        var probs = new double[logits.Length];
        double sum = 0;
        for (int i = 0; i < probs.Length; i++) sum += probs[i] = Math.Exp((logits[i] - max) / p.Temperature);
        if (p.TopP < 1)
        {
            // Keep the most probable tokens until their mass reaches top_p (at least one), then sample among them.
            var order = new int[probs.Length];
            for (int i = 0; i < order.Length; i++) order[i] = i;
            var keys = new double[probs.Length];
            for (int i = 0; i < keys.Length; i++) keys[i] = -probs[i];
            Array.Sort(keys, order);
            double target = p.TopP * sum, cum = 0;
            int kept = 0;
            while (kept < order.Length && (kept == 0 || cum < target)) cum += probs[order[kept++]];
            double u = rng.NextDouble() * cum;
            for (int i = 0; i < kept; i++)
            {
                u -= probs[order[i]];
                if (u <= 0) return order[i];
            }
            return order[kept - 1];
        }
        double x = rng.NextDouble() * sum;
        for (int i = 0; i < probs.Length; i++)
        {
            x -= probs[i];
            if (x <= 0) return i;
        }
        return ArgMax(logits);
    }

    /// <summary>
    /// The first index of the largest value, a NaN counting as larger than any number (the first NaN wins), as
    /// torch.argmax decides, so that a greedy row whose logits hold a NaN decodes the same token on the host as on the device.
    /// </summary>
    internal static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        if (float.IsNaN(x[0])) return 0;
        for (int i = 1; i < x.Length; i++)
        {
            if (float.IsNaN(x[i])) return i;
            if (x[i] > x[best]) best = i;
        }
        return best;
    }

    private static double LogSumExp(ReadOnlySpan<float> x)
    {
        double max = x[ArgMax(x)], sum = 0;
        foreach (var v in x) sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }

    private static (int, float)[] TopK(ReadOnlySpan<float> x, int k, double lse)
    {
        k = Math.Min(k, x.Length);
        var ids = new int[k];
        var vals = new float[k];
        int count = 0;
        for (int i = 0; i < x.Length; i++)
        {
            if (count == k && x[i] <= vals[k - 1]) continue;
            int j = count < k ? count++ : k - 1;
            while (j > 0 && vals[j - 1] < x[i]) { ids[j] = ids[j - 1]; vals[j] = vals[j - 1]; j--; }
            ids[j] = i;
            vals[j] = x[i];
        }
        var result = new (int, float)[count];
        for (int i = 0; i < count; i++) result[i] = (ids[i], (float)(vals[i] - lse));
        return result;
    }
}
