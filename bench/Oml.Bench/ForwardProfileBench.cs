using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Models;
using Oml.Models.Modeling;

/// <summary>
/// Where the no-grad inference forward pass spends its time, per batch shape, against transformers on the same model:
///   Oml.Bench --forward-profile MODEL_DIR [--device cuda|cpu] [--dtype bfloat16|float32|float16]
///             [--shapes 64x16,128x16,256x16,1024x16] [--runs 10] [--warmup 3] [--breakdown] [--json-out FILE]
///             [--peer] [--python python3] [--peer-script bench/gpu/forward_peer.py] [--markdown FILE]
/// Shapes are ROWSxTOKENS. For each shape, with a device sync around each run (mean and min of --runs after --warmup):
///   prefill causal        the prompts' pass as <c>oml verify --model</c> runs it for 1-token responses
///                         (<see cref="Generator.NextTokenLogits"/>, Generator.Generate without a cache): Hidden(ids) with
///                         no mask and no cache (plain causal SDPA), the head at the last position, argmax;
///   prefill causal+cache  the same with a KV cache appended to (Generator.Generate with more than one new token);
///   prefill engine        as BatchEngine.Prefill does it (a sequence set admitted into a new cache): host ids, a [B, T]
///                         padding mask and positions from its cumsum, a fresh KVCache, Hidden, last-position head, argmax;
///   decode engine         one BatchEngine.Decode step: 1 token per row over a cache holding the TOKENS prompt positions
///                         (right-aligned, capacity + 32 spare columns as after a rebuild), a [B, T+1] mask, positions [B, 1].
/// With --breakdown, each path again, calling the model's pieces in the order DecoderModel/DecoderLayer/Attention do, with
/// a device sync after each piece, summed per piece over the layers (the syncs themselves cost time: compare the sum with
/// the plain pass). Defaults: cuda when available (then bfloat16), else cpu (then float32).
/// </summary>
internal static class ForwardProfileBench
{
    private const int EngineJoinColumns = 32; // BatchEngine.JoinColumns: the spare columns a rebuilt cache has

    // The breakdown's rows, in the order a pass runs them.
    private static readonly string[] PieceOrder =
    [
        "kv cache (new, or a view)", "inputs to device", "context (rotary, mask)", "embed", "input_norm", "q_proj", "k_proj", "v_proj", "qk_norm",
        "rotary", "kv_cache_append", "repeat_interleave", "sdpa", "sdpa out transpose+reshape", "o_proj", "residual add", "post_norm",
        "mlp gate_proj", "mlp up_proj", "mlp swiglu", "mlp down_proj", "final_norm", "last position select", "lm_head", "argmax",
    ];

    /// <summary>One path at one shape: the pass's milliseconds up to the device sync after it, and up to its return
    /// before that sync (the host's time to enqueue it: on a GPU, near the whole pass when the host is the bound).</summary>
    private sealed record Timed(string Path, int Rows, int Tokens, double MeanMs, double MinMs, double HostMeanMs, int Runs);

    private sealed record MaskInfo(string Path, bool HasMask, string? MaskDType, long[]? MaskShape, bool RepeatInterleave, bool QContiguous,
        bool KContiguous, bool VContiguous);

    public static int Run(string modelDir, Args opts)
    {
        var device = opts.TryGet("device", out var d) ? Device.Parse(d) : Device.Auto;
        var dtype = DTypeExtensions.Parse(opts.Get("dtype", device.IsCuda ? "bfloat16" : "float32"));
        var shapes = opts.Get("shapes", "64x16,128x16,256x16,1024x16").Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(s => s.Split('x')).Select(p => (Rows: int.Parse(p[0], CultureInfo.InvariantCulture), Tokens: int.Parse(p[1], CultureInfo.InvariantCulture))).ToArray();
        int runs = int.Parse(opts.Get("runs", "10"), CultureInfo.InvariantCulture);
        int warmup = int.Parse(opts.Get("warmup", "3"), CultureInfo.InvariantCulture);
        bool breakdown = opts.Has("breakdown");
        Action sync = device.IsCuda ? () => Torch.Cuda.Synchronize(device.Index) : () => { };

        var load = Stopwatch.StartNew();
        using var model = ModelFolder.Load(modelDir, device, dtype);
        sync();
        var c = model.Config;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"oml: libtorch {Torch.LibTorchVersion}, {device}, {dtype.Name()}, {Torch.Threads} threads; {c.ArchitectureName} {c.NumLayers} layers x {c.HiddenSize}, "
            + $"{c.NumHeads} heads / {c.NumKeyValueHeads} kv heads of {c.HeadDim}, vocab {c.VocabSize}; loaded in {load.Elapsed.TotalSeconds:F2} s"));

        using var noGrad = Torch.NoGrad(); // as BatchEngine's decoder thread and Generator.Generate run
        var timed = new List<Timed>();
        var masks = new Dictionary<string, MaskInfo>();
        var pieces = new List<(string Path, int Rows, int Tokens, List<(string Piece, double Ms)> Pieces, double SumMs)>();
        var rng = new Random(0);
        foreach (var (rows, tokens) in shapes)
        {
            var ids = new long[rows * tokens];
            for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(c.VocabSize);
            var next = new long[rows];
            for (int i = 0; i < rows; i++) next[i] = rng.Next(c.VocabSize);
            var (paths, owned) = Paths(model, rows, tokens, ids, next, sync);
            try
            {
                foreach (var (name, prepare) in paths)
                {
                    var (times, host) = Measure(prepare, a => Pass(model, a), sync, warmup, runs);
                    timed.Add(new Timed(name, rows, tokens, times.Average() * 1e3, times.Min() * 1e3, host.Average() * 1e3, runs));
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  {name} {rows}x{tokens}: mean {timed[^1].MeanMs:F2} ms, min {timed[^1].MinMs:F2} ms, host (before the sync) mean {timed[^1].HostMeanMs:F2} ms"));
                    if (!masks.ContainsKey(name))
                    {
                        using var s = Torch.NewScope();
                        var args = prepare();
                        var cache = args.Cache();
                        try { masks[name] = Inspect(model, name, args, cache); }
                        finally { cache?.Dispose(); }
                    }
                    if (!breakdown) continue;
                    var acc = new Dictionary<string, double>(StringComparer.Ordinal);
                    var order = new List<string>();
                    for (int r = 0; r < warmup + runs; r++)
                    {
                        using var s = Torch.NewScope();
                        var args = prepare();
                        sync();
                        var local = new List<(string, double)>();
                        Pieces(model, args, sync, local);
                        if (r < warmup) continue;
                        foreach (var (p, sec) in local)
                        {
                            if (!acc.ContainsKey(p)) { acc[p] = 0; order.Add(p); }
                            acc[p] += sec;
                        }
                    }
                    var list = order.Select(p => (p, acc[p] / runs * 1e3)).ToList();
                    pieces.Add((name, rows, tokens, list, list.Sum(x => x.Item2)));
                }
            }
            finally
            {
                foreach (var o in owned) o.Dispose();
            }
        }

        var peer = opts.Has("peer") ? RunPeer(modelDir, device, dtype, shapes, runs, warmup, opts) : null;
        Report(model, device, dtype, timed, masks, pieces, peer, opts);
        return 0;
    }

    /// <summary>The arguments of one forward pass, made on the device when the pass calls them (as the engine copies
    /// its host arrays in each step). <see cref="Cache"/> makes the pass's cache: a fresh one (allocated inside the timed
    /// pass, as BatchEngine.Prefill and Generator.Generate allocate theirs; <see cref="FreshCache"/>) or a view of rows
    /// of a cache filled before (the engine's decode over its batch cache); either is disposed after the pass (a view
    /// frees only itself).</summary>
    private sealed record PassArgs(Func<Tensor> Ids, Func<Tensor?> Mask, Func<Tensor?> Positions, Func<KVCache?> Cache, bool FreshCache);

    /// <summary>The timed pass: Hidden, the LM head at the last position (Generator.LastLogits), argmax on the device
    /// (greedy rows in the engine and verify).</summary>
    private static void Pass(CausalLM model, PassArgs a)
    {
        var cache = a.Cache();
        try
        {
            var hidden = model.Hidden(a.Ids(), a.Mask(), a.Positions(), cache);
            Generator.LastLogits(model, hidden).ArgMax(-1);
        }
        finally { cache?.Dispose(); }
    }

    /// <summary>The paths timed, by name, with what makes each run's arguments (untimed); and the tensors they share,
    /// to dispose after the shape.</summary>
    private static (List<(string Name, Func<PassArgs> Prepare)>, List<IDisposable>) Paths(CausalLM model, int rows, int tokens, long[] ids, long[] next, Action sync)
    {
        var c = model.Config;
        var dev = model.Device;
        var owned = new List<IDisposable>();
        Tensor Ids() => Torch.FromArray<long>(ids, [rows, tokens], dev);
        Tensor Ones(int width) => Torch.FromArray<long>(Enumerable.Repeat(1L, rows * width).ToArray(), [rows, width], dev);
        // BatchEngine.Prefill: a [B, T] mask of the rows' real tokens (all of them here: one prompt length), positions
        // from its cumsum (padding at 1), a new cache of exactly T columns.
        PassArgs Engine()
        {
            Tensor? m = null;
            return new PassArgs(Ids, () => m = Ones(tokens), () => (m!.CumSum(1) - 1).MaskedFill(m.Eq(0), 1),
                () => new KVCache(c, rows, tokens, model.DType, dev), true);
        }
        // BatchEngine.Decode: the batch cache after a rebuild holds the prompt's keys/values right-aligned at column T,
        // with 32 spare columns; each step works on a view of its rows (Rows), appends at column T, and is given a
        // [B, T + 1] mask of ones (every row's cached positions and its new token) and positions [B, 1] = T.
        KVCache? filled = null;
        PassArgs Decode()
        {
            if (filled is null)
            {
                filled = new KVCache(c, rows, tokens + 1 + EngineJoinColumns, model.DType, dev);
                owned.Add(filled);
                using (Torch.NewScope()) model.Hidden(Ids(), null, null, filled); // fills T positions
                sync();
            }
            var pos = Enumerable.Repeat((long)tokens, rows).ToArray();
            return new PassArgs(() => Torch.FromArray<long>(next, [rows, 1], dev), () => Ones(tokens + 1),
                () => Torch.FromArray<long>(pos, [rows, 1], dev), () => filled.Rows(0, rows, tokens), false);
        }
        return (
        [
            // Generator.NextTokenLogits, and Generator.Generate's first pass for one new token (verify's 1-token
            // responses): prompts of one length, no mask, default positions, no cache.
            ("prefill causal", () => new PassArgs(Ids, () => null, () => null, () => null, false)),
            // Generator.Generate's first pass for more new tokens: the same, appending to a new cache.
            ("prefill causal+cache", () => new PassArgs(Ids, () => null, () => null, () => new KVCache(c, rows, tokens + 1, model.DType, dev), true)),
            ("prefill engine", Engine),
            ("decode engine", Decode),
        ], owned);
    }

    private static (List<double> Times, List<double> Host) Measure(Func<PassArgs> prepare, Action<PassArgs> pass, Action sync, int warmup, int runs)
    {
        var times = new List<double>();
        var host = new List<double>();
        for (int i = 0; i < warmup + runs; i++)
        {
            using var scope = Torch.NewScope();
            var args = prepare();
            sync();
            long t0 = Stopwatch.GetTimestamp();
            pass(args);
            double enqueued = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            sync();
            if (i < warmup) continue;
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            host.Add(enqueued);
        }
        return (times, host);
    }

    /// <summary>What SDPA gets on this path, as Attention.Forward builds it for layer 0.</summary>
    private static MaskInfo Inspect(CausalLM model, string path, PassArgs a, KVCache? cache)
    {
        var c = model.Config;
        var ids = a.Ids();
        var ctx = model.Model.Context(ids, a.Mask(), a.Positions(), cache);
        var (q, k, v) = QkvAtSdpa(model.Model.Layers[0].SelfAttention, c, model.Model.EmbedTokens.Forward(ids), ctx, cache, null, null);
        return new MaskInfo(path, ctx.Mask is not null, ctx.Mask?.DType.Name(), ctx.Mask?.Shape, c.NumHeads / c.NumKeyValueHeads > 1,
            q.IsContiguous, k.IsContiguous, v.IsContiguous);
    }

    /// <summary>Attention.Forward up to SDPA's inputs, timing each piece into <paramref name="t"/> when given.</summary>
    private static (Tensor Q, Tensor K, Tensor V) QkvAtSdpa(Attention at, ModelConfig c, Tensor x, AttentionContext ctx, KVCache? cache,
        Func<string, Func<Tensor>, Tensor>? t, Action<string, Action>? tv)
    {
        t ??= (_, f) => f();
        tv ??= (_, f) => f();
        long b = x.Size(0), n = x.Size(1);
        int groups = c.NumHeads / c.NumKeyValueHeads;
        var q = t("q_proj", () => at.QProj.Forward(x)).View(b, n, c.NumHeads, c.HeadDim);
        var k = t("k_proj", () => at.KProj.Forward(x)).View(b, n, c.NumKeyValueHeads, c.HeadDim);
        var v = t("v_proj", () => at.VProj.Forward(x)).View(b, n, c.NumKeyValueHeads, c.HeadDim).Transpose(1, 2);
        if (at.QNorm is not null) q = t("qk_norm", () => at.QNorm.Forward(q));
        if (at.KNorm is not null) k = t("qk_norm", () => at.KNorm.Forward(k));
        q = q.Transpose(1, 2);
        k = k.Transpose(1, 2);
        q = t("rotary", () => RotaryEmbedding.Apply(q, ctx.Cos, ctx.Sin));
        k = t("rotary", () => RotaryEmbedding.Apply(k, ctx.Cos, ctx.Sin));
        if (cache is not null)
        {
            var kk = k;
            tv("kv_cache_append", () => (k, v) = cache.Append(at.LayerIndex, kk, v));
        }
        if (groups > 1)
        {
            k = t("repeat_interleave", () => k.RepeatInterleave(groups, 1));
            v = t("repeat_interleave", () => v.RepeatInterleave(groups, 1));
        }
        return (q, k, v);
    }

    /// <summary>DecoderModel.Forward, DecoderLayer.Forward and Attention.Forward spelled out, a sync after each piece.</summary>
    private static void Pieces(CausalLM model, PassArgs a, Action sync, List<(string, double)> log)
    {
        Tensor T(string name, Func<Tensor> f)
        {
            long t0 = Stopwatch.GetTimestamp();
            var r = f();
            sync();
            log.Add((name, Stopwatch.GetElapsedTime(t0).TotalSeconds));
            return r;
        }
        void TV(string name, Action f) => T(name, () => { f(); return null!; });
        var c = model.Config;
        var m = model.Model;
        KVCache? cache = null;
        TV("kv cache (new, or a view)", () => cache = a.Cache());
        try
        {
            var ids = T("inputs to device", a.Ids);
            Tensor? mask = T("inputs to device", () => a.Mask()!);
            Tensor? positions = T("inputs to device", () => a.Positions()!);
            AttentionContext ctx = null!;
            TV("context (rotary, mask)", () => ctx = m.Context(ids, mask, positions, cache));
            var h = T("embed", () => m.EmbedTokens.Forward(ids));
            foreach (var layer in m.Layers)
            {
                var at = layer.SelfAttention;
                var x = T("input_norm", () => layer.InputLayerNorm.Forward(h));
                var (q, k, v) = QkvAtSdpa(at, c, x, ctx, cache, T, TV);
                long b = x.Size(0), n = x.Size(1);
                var attn = T("sdpa", () => ctx.Mask is null
                    ? F.ScaledDotProductAttention(q, k, v, isCausal: true)
                    : F.ScaledDotProductAttention(q, k, v, mask: ctx.Mask));
                attn = T("sdpa out transpose+reshape", () => attn.Transpose(1, 2).Reshape(b, n, (long)c.NumHeads * c.HeadDim));
                var o = T("o_proj", () => at.OProj.Forward(attn));
                h = T("residual add", () => h + o);
                var y = T("post_norm", () => layer.PostAttentionLayerNorm.Forward(h));
                var gate = T("mlp gate_proj", () => layer.Mlp.GateProj.Forward(y));
                var up = T("mlp up_proj", () => layer.Mlp.UpProj.Forward(y));
                var act = T("mlp swiglu", () => F.SwiGlu(gate, up));
                var down = T("mlp down_proj", () => layer.Mlp.DownProj.Forward(act));
                h = T("residual add", () => h + down);
            }
            // DecoderModel.Forward advances the cache here; the bench's caches and views are thrown away after each run.
            var hn = T("final_norm", () => m.Norm.Forward(h));
            var last = T("last position select", () => hn.Select(1, hn.Size(1) - 1));
            var logits = T("lm_head", () => model.Head(last));
            T("argmax", () => logits.ArgMax(-1));
        }
        finally { cache?.Dispose(); }
    }

    private static JsonObject? RunPeer(string modelDir, Device device, DType dtype, (int Rows, int Tokens)[] shapes, int runs, int warmup, Args opts)
    {
        var python = opts.Get("python", "python3");
        var script = opts.Get("peer-script", Path.Combine(AppContext.BaseDirectory, "forward_peer.py"));
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var x in new[]
                 {
                     script, "--model", modelDir, "--device", device.IsCuda ? "cuda" : "cpu", "--dtype", dtype.Name(),
                     "--shapes", string.Join(",", shapes.Select(s => $"{s.Rows}x{s.Tokens}")),
                     "--runs", runs.ToString(CultureInfo.InvariantCulture), "--warmup", warmup.ToString(CultureInfo.InvariantCulture),
                     "--threads", Torch.Threads.ToString(CultureInfo.InvariantCulture),
                 })
            psi.ArgumentList.Add(x);
        Console.Error.WriteLine($"peer: {python} {script}");
        using var proc = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {python}");
        var output = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        if (proc.ExitCode != 0)
        {
            Console.Error.WriteLine($"the transformers peer failed (exit {proc.ExitCode}); the table has no peer column");
            return null;
        }
        return JsonNode.Parse(output)!.AsObject();
    }

    private static void Report(CausalLM model, Device device, DType dtype, List<Timed> timed, Dictionary<string, MaskInfo> masks,
        List<(string Path, int Rows, int Tokens, List<(string Piece, double Ms)> Pieces, double SumMs)> pieces, JsonObject? peer, Args opts)
    {
        static string F2(double v) => v.ToString("F2", CultureInfo.InvariantCulture);
        var c = model.Config;
        // The peer's results by (path, rows, tokens); its paths are named like ours.
        var peerRows = new Dictionary<(string, int, int), (double Mean, double Min)>();
        if (peer?["results"] is JsonArray pr)
            foreach (var r in pr)
                peerRows[(r!["path"]!.GetValue<string>(), r["rows"]!.GetValue<int>(), r["tokens"]!.GetValue<int>())] =
                    (r["mean_ms"]!.GetValue<double>(), r["min_ms"]!.GetValue<double>());
        string peerName = peer is null ? "transformers -" : $"transformers {peer["transformers"]} (torch {peer["torch"]})";

        var md = new StringBuilder();
        md.AppendLine($"| forward ({device}, {dtype.Name()}; {c.ArchitectureName} {c.NumLayers}x{c.HiddenSize}) | rows x tokens | oml mean ms | oml min ms | oml host ms | {peerName} mean ms | min ms | oml/peer (min) |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var t in timed)
        {
            string pm = "-", pn = "-", ratio = "-";
            if (peerRows.TryGetValue((t.Path, t.Rows, t.Tokens), out var p))
                (pm, pn, ratio) = (F2(p.Mean), F2(p.Min), F2(t.MinMs / p.Min));
            md.AppendLine($"| {t.Path} | {t.Rows}x{t.Tokens} | {F2(t.MeanMs)} | {F2(t.MinMs)} | {F2(t.HostMeanMs)} | {pm} | {pn} | {ratio} |");
        }
        foreach (var (k, p) in peerRows)
            if (!timed.Any(t => (t.Path, t.Rows, t.Tokens) == k))
                md.AppendLine($"| {k.Item1} (peer only) | {k.Item2}x{k.Item3} | - | - | - | {F2(p.Mean)} | {F2(p.Min)} | - |");
        md.AppendLine();
        md.AppendLine("(oml host ms: the mean time until the pass returned, before the device sync: the host's share.)");
        md.AppendLine();
        md.AppendLine("| path | SDPA mask | mask dtype | mask shape | GQA RepeatInterleave | q/k/v contiguous at SDPA |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var mi in masks.Values)
            md.AppendLine($"| {mi.Path} | {(mi.HasMask ? "yes" : "none (isCausal)")} | {mi.MaskDType ?? "-"} | {(mi.MaskShape is null ? "-" : "[" + string.Join(", ", mi.MaskShape) + "]")} "
                + $"| {(mi.RepeatInterleave ? $"yes (x{c.NumHeads / c.NumKeyValueHeads})" : "no")} | {mi.QContiguous}/{mi.KContiguous}/{mi.VContiguous} |");
        if (pieces.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("Breakdown (ms per pass, summed over layers, a device sync after each piece):");
            md.AppendLine();
            var cols = pieces.Select(p => $"{p.Path} {p.Rows}x{p.Tokens}").ToList();
            md.AppendLine($"| piece | {string.Join(" | ", cols)} |");
            md.AppendLine($"|---|{string.Concat(cols.Select(_ => "---:|"))}");
            var names = pieces.SelectMany(p => p.Pieces.Select(x => x.Piece)).Distinct()
                .OrderBy(n => Array.IndexOf(PieceOrder, n) is var i && i >= 0 ? i : int.MaxValue).ToList();
            foreach (var n in names)
                md.AppendLine($"| {n} | {string.Join(" | ", pieces.Select(p => p.Pieces.FirstOrDefault(x => x.Piece == n) is { Piece: not null } x ? F2(x.Ms) : "-"))} |");
            md.AppendLine($"| sum of pieces | {string.Join(" | ", pieces.Select(p => F2(p.SumMs)))} |");
            md.AppendLine($"| plain pass (min) | {string.Join(" | ", pieces.Select(p => F2(timed.First(t => (t.Path, t.Rows, t.Tokens) == (p.Path, p.Rows, p.Tokens)).MinMs)))} |");
        }
        Console.WriteLine(md.ToString());
        if (opts.TryGet("markdown", out var mdPath)) File.AppendAllText(mdPath, md + "\n");

        if (opts.TryGet("json-out", out var jsonPath))
        {
            var root = new JsonObject
            {
                ["device"] = device.ToString(),
                ["dtype"] = dtype.Name(),
                ["libtorch"] = Torch.LibTorchVersion,
                ["threads"] = Torch.Threads,
                ["model"] = new JsonObject
                {
                    ["architecture"] = c.ArchitectureName, ["layers"] = c.NumLayers, ["hidden"] = c.HiddenSize, ["heads"] = c.NumHeads,
                    ["kv_heads"] = c.NumKeyValueHeads, ["head_dim"] = c.HeadDim, ["intermediate"] = c.IntermediateSize, ["vocab"] = c.VocabSize,
                },
                ["results"] = new JsonArray([.. timed.Select(t => (JsonNode)new JsonObject
                {
                    ["path"] = t.Path, ["rows"] = t.Rows, ["tokens"] = t.Tokens, ["mean_ms"] = t.MeanMs, ["min_ms"] = t.MinMs, ["host_mean_ms"] = t.HostMeanMs, ["runs"] = t.Runs,
                })]),
                ["sdpa_inputs"] = new JsonArray([.. masks.Values.Select(mi => (JsonNode)new JsonObject
                {
                    ["path"] = mi.Path, ["mask"] = mi.HasMask, ["mask_dtype"] = mi.MaskDType,
                    ["mask_shape"] = mi.MaskShape is null ? null : new JsonArray([.. mi.MaskShape.Select(x => (JsonNode)x)]),
                    ["repeat_interleave"] = mi.RepeatInterleave, ["q_contiguous"] = mi.QContiguous, ["k_contiguous"] = mi.KContiguous, ["v_contiguous"] = mi.VContiguous,
                })]),
                ["breakdown"] = new JsonArray([.. pieces.Select(p => (JsonNode)new JsonObject
                {
                    ["path"] = p.Path, ["rows"] = p.Rows, ["tokens"] = p.Tokens, ["sum_ms"] = p.SumMs,
                    ["pieces_ms"] = new JsonObject(p.Pieces.Select(x => KeyValuePair.Create(x.Piece, (JsonNode?)x.Ms))),
                })]),
                ["peer"] = peer?.DeepClone(),
            };
            File.WriteAllText(jsonPath, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            Console.Error.WriteLine($"wrote {jsonPath}");
        }
    }
}
