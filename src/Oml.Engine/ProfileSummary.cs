using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Oml.Engine;

/// <summary>One line of a <see cref="ProfileSummary"/>: a name, how many events and their summed seconds.</summary>
public sealed record ProfileRow(string Name, int Count, double Seconds);

/// <summary>
/// What a Chrome trace of <see cref="Profiler"/> says about where a window's time went: how long the devices were busy
/// (the union of kernels, copies and fills) against the window's wall time; the kernels' time by class (matrix products,
/// attention, the shim's fused kernels, elementwise, reductions, ...), by the <see cref="Profiler.Range"/> that launched
/// them (matched through the launch's correlation id to the innermost range open on the host at the launch), and the
/// costliest kernels; the host's time in each range (inclusive of nested ones); without device activity, the host
/// operators' inclusive times.
/// </summary>
public sealed record ProfileSummary(
    double WallSeconds, double DeviceBusySeconds, double KernelSeconds, int KernelCount, double CopySeconds,
    IReadOnlyList<ProfileRow> Classes, IReadOnlyList<ProfileRow> Ranges, IReadOnlyList<ProfileRow> TopKernels, IReadOnlyList<ProfileRow> TopHostOps,
    IReadOnlyList<ProfileRow> HostRanges)
{
    /// <summary>The name given to device time launched outside every range.</summary>
    public const string OutsideRanges = "(outside the ranges)";

    /// <summary>Summarises the trace file at <paramref name="tracePath"/> for a window of <paramref name="wallSeconds"/>.</summary>
    public static ProfileSummary FromFile(string tracePath, double wallSeconds, int top = 25)
    {
        using var stream = File.OpenRead(tracePath);
        using var doc = JsonDocument.Parse(stream, new JsonDocumentOptions { AllowTrailingCommas = true });
        return From(doc.RootElement, wallSeconds, top);
    }

    /// <summary>
    /// Summarises a parsed trace: an object with <c>traceEvents</c>, or the bare array of events. A
    /// <paramref name="wallSeconds"/> of 0 or less takes the span of the trace's events (first start to last end).
    /// </summary>
    public static ProfileSummary From(JsonElement trace, double wallSeconds, int top = 25)
    {
        var events = trace.ValueKind == JsonValueKind.Array ? trace
            : trace.TryGetProperty("traceEvents", out var te) ? te
            : throw new InvalidDataException("not a Chrome trace: no traceEvents");
        var device = new List<(double Ts, double Dur, string Name, string Kind, long Corr)>();
        var launches = new Dictionary<long, double>();
        var ranges = new List<(double Ts, double End, string Name)>();
        var host = new Dictionary<string, (int Count, double Us)>();
        var hostRanges = new Dictionary<string, (int Count, double Us)>();
        double first = double.PositiveInfinity, last = double.NegativeInfinity;
        foreach (var e in events.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("ph", out var ph) || ph.GetString() != "X") continue;
            string cat = e.TryGetProperty("cat", out var c) ? (c.GetString() ?? "").ToLowerInvariant() : "";
            string name = e.TryGetProperty("name", out var n) ? n.GetString() ?? "" : "";
            double ts = Number(e, "ts"), dur = Number(e, "dur");
            first = Math.Min(first, ts);
            last = Math.Max(last, ts + dur);
            long corr = e.TryGetProperty("args", out var args) && args.ValueKind == JsonValueKind.Object && args.TryGetProperty("correlation", out var co)
                && co.TryGetInt64(out long cv) ? cv : -1;
            switch (cat)
            {
                case "kernel":
                    device.Add((ts, dur, name, "kernel", corr));
                    break;
                case "gpu_memcpy" or "memcpy":
                    device.Add((ts, dur, name, "copy", corr));
                    break;
                case "gpu_memset" or "memset":
                    device.Add((ts, dur, name, "fill", corr));
                    break;
                case "cuda_runtime" or "cuda_driver" or "runtime":
                    if (corr >= 0) launches.TryAdd(corr, ts);
                    break;
                case "user_annotation":
                    ranges.Add((ts, ts + dur, name));
                    hostRanges[name] = hostRanges.TryGetValue(name, out var hr) ? (hr.Count + 1, hr.Us + dur) : (1, dur);
                    break;
                case "cpu_op" or "operator":
                    host[name] = host.TryGetValue(name, out var h) ? (h.Count + 1, h.Us + dur) : (1, dur);
                    break;
            }
        }

        if (wallSeconds <= 0) wallSeconds = last > first ? (last - first) / 1e6 : 0;
        // Device busy time: the union of every kernel, copy and fill interval.
        double busy = 0, end = double.NegativeInfinity;
        foreach (var d in device.OrderBy(d => d.Ts))
        {
            double s = Math.Max(d.Ts, end), f = d.Ts + d.Dur;
            if (f > s) busy += f - s;
            end = Math.Max(end, f);
        }

        var kernels = device.Where(d => d.Kind == "kernel").ToList();
        var classes = new Dictionary<string, (int, double)>();
        var byName = new Dictionary<string, (int, double)>();
        var byRange = new Dictionary<string, (int, double)>();
        ranges.Sort((a, b) => a.Ts.CompareTo(b.Ts));
        var maxEnd = new double[ranges.Count];
        for (int i = 0; i < ranges.Count; i++) maxEnd[i] = Math.Max(i > 0 ? maxEnd[i - 1] : double.NegativeInfinity, ranges[i].End);
        foreach (var d in device)
        {
            if (d.Kind == "kernel")
            {
                Add(classes, Classify(d.Name), d.Dur);
                Add(byName, d.Name, d.Dur);
            }
            else Add(classes, d.Kind == "copy" ? "copies (memcpy)" : "fills (memset)", d.Dur);
            string range = d.Corr >= 0 && launches.TryGetValue(d.Corr, out double launched) ? RangeAt(ranges, maxEnd, launched) ?? OutsideRanges : OutsideRanges;
            Add(byRange, range, d.Dur);
        }
        static void Add(Dictionary<string, (int, double)> into, string key, double us) =>
            into[key] = into.TryGetValue(key, out var v) ? (v.Item1 + 1, v.Item2 + us) : (1, us);
        static List<ProfileRow> Rows(IEnumerable<KeyValuePair<string, (int Count, double Us)>> d, int take) =>
            [.. d.Select(kv => new ProfileRow(kv.Key, kv.Value.Count, kv.Value.Us / 1e6)).OrderByDescending(r => r.Seconds).ThenBy(r => r.Name, StringComparer.Ordinal).Take(take)];

        return new ProfileSummary(wallSeconds, busy / 1e6, kernels.Sum(k => k.Dur) / 1e6, kernels.Count,
            device.Where(d => d.Kind == "copy").Sum(d => d.Dur) / 1e6,
            Rows(classes, int.MaxValue), Rows(byRange, int.MaxValue), Rows(byName, top),
            device.Count == 0 ? Rows(host.Select(kv => new KeyValuePair<string, (int, double)>(kv.Key, kv.Value)), top) : [],
            Rows(hostRanges.Select(kv => new KeyValuePair<string, (int, double)>(kv.Key, kv.Value)), int.MaxValue));
    }

    private static double Number(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) ? v.ValueKind switch
        {
            JsonValueKind.Number => v.GetDouble(),
            JsonValueKind.String => double.Parse(v.GetString()!, CultureInfo.InvariantCulture),
            _ => 0,
        } : 0;

    // The innermost range open at t: of the ranges starting at or before t, the latest-starting one that still covers t
    // (ranges on one thread nest); stops once no earlier range reaches t.
    private static string? RangeAt(List<(double Ts, double End, string Name)> ranges, double[] maxEnd, double t)
    {
        int lo = 0, hi = ranges.Count - 1, last = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (ranges[mid].Ts <= t) { last = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        for (int i = last; i >= 0 && maxEnd[i] >= t; i--)
            if (ranges[i].End >= t) return ranges[i].Name;
        return null;
    }

    /// <summary>The class of a CUDA kernel, from its name.</summary>
    public static string Classify(string kernel)
    {
        string k = kernel.ToLowerInvariant();
        bool Has(params string[] parts) => parts.Any(k.Contains);
        if (Has("flash", "fmha", "attention", "sdpa", "_mha", "mha_")) return "attention";
        if (Has("rms_norm_fwd", "rms_norm_bwd", "column_sum", "::rope<", "swiglu_")) return "fused (oml kernels)";
        if (Has("gemm", "cutlass", "xmma", "nvjet", "cublas", "gemv", "sm90_", "sm80_", "ampere_", "hopper_", "splitk")) return "matrix products";
        if (Has("multi_tensor_apply", "adam")) return "optimizer";
        if (Has("softmax", "nll_loss", "cross_entropy", "logsumexp")) return "softmax and loss";
        if (Has("reduce_kernel", "reduction", "norm_kernel", "cub::", "sum_kernel", "layer_norm")) return "reductions";
        if (Has("copy", "cat_", "catarray", "index", "gather", "scatter", "embedding")) return "copies, indexing";
        if (Has("fill", "zero")) return "fills";
        if (Has("elementwise", "unrolled", "vectorized")) return "elementwise";
        return "other";
    }

    /// <summary>The summary as indented JSON (seconds; rows as name, count, seconds).</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("wall_seconds", WallSeconds);
            w.WriteNumber("device_busy_seconds", DeviceBusySeconds);
            w.WriteNumber("kernel_seconds", KernelSeconds);
            w.WriteNumber("kernels", KernelCount);
            w.WriteNumber("copy_seconds", CopySeconds);
            void Rows(string name, IReadOnlyList<ProfileRow> rows)
            {
                w.WriteStartArray(name);
                foreach (var r in rows)
                {
                    w.WriteStartObject();
                    w.WriteString("name", r.Name);
                    w.WriteNumber("count", r.Count);
                    w.WriteNumber("seconds", r.Seconds);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            Rows("classes", Classes);
            Rows("ranges", Ranges);
            Rows("top_kernels", TopKernels);
            Rows("top_host_operators", TopHostOps);
            Rows("host_ranges", HostRanges);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>The summary as Markdown: the headline, then the tables (shares of the wall time).</summary>
    public string ToMarkdown(string? title = null)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        if (title is not null) sb.Append("# ").AppendLine(title).AppendLine();
        string Share(double s) => WallSeconds > 0 ? (s / WallSeconds).ToString("P1", inv) : "";
        sb.AppendLine(inv, $"- window: {WallSeconds:F4} s of wall time");
        if (KernelCount > 0)
        {
            sb.AppendLine(inv, $"- device busy (kernels, copies, fills, overlaps counted once): {DeviceBusySeconds:F4} s ({Share(DeviceBusySeconds)}); idle {Math.Max(0, WallSeconds - DeviceBusySeconds):F4} s");
            sb.AppendLine(inv, $"- kernels: {KernelCount:N0}, {KernelSeconds:F4} s; copies {CopySeconds:F4} s");
            Table(sb, "Device time by class", "class", Classes, Share);
            Table(sb, "Device time by range (where it was launched)", "range", Ranges, Share);
            Table(sb, "Costliest kernels", "kernel", TopKernels, Share);
            if (HostRanges.Count > 0) Table(sb, "Host time by range (inclusive of nested ranges)", "range", HostRanges, Share);
        }
        else
        {
            sb.AppendLine("- no device activity recorded (a CPU run, or the profiler had no CUDA support)");
            if (HostRanges.Count > 0) Table(sb, "Host time by range (inclusive of nested ranges)", "range", HostRanges, Share);
            Table(sb, "Host operators (inclusive times: nested operators are counted in each)", "operator", TopHostOps, Share);
        }
        return sb.ToString();
    }

    private static void Table(StringBuilder sb, string heading, string what, IReadOnlyList<ProfileRow> rows, Func<double, string> share)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine().Append("## ").AppendLine(heading).AppendLine();
        sb.AppendLine(inv, $"| {what} | calls | seconds | share of wall | mean, ms |").AppendLine("|---|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            string name = r.Name.Length > 140 ? r.Name[..137] + "..." : r.Name;
            sb.AppendLine(inv, $"| {name.Replace("|", "\\|", StringComparison.Ordinal)} | {r.Count:N0} | {r.Seconds:F4} | {share(r.Seconds)} | {r.Seconds * 1e3 / Math.Max(1, r.Count):F3} |");
        }
    }
}
