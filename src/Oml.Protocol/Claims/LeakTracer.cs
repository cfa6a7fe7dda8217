using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Verification;
using Oml.Protocol.Core;
using Oml.Protocol.Tracing;

namespace Oml.Protocol.Claims;

/// <summary>One licensed host's score against the suspect copy; <see cref="Host"/> is its address (licence order).</summary>
public sealed record TracedHost(int HostOrdinal, string Host, double Score, bool Accused);

/// <summary>A trace of a suspect endpoint: which pool fingerprints it answered (null = not asked) and the scores.</summary>
public sealed record TraceReport(string ModelId, IReadOnlyList<bool?> Observed, IReadOnlyList<TracedHost> Hosts, double InnocentBound)
{
    public IReadOnlyList<TracedHost> Accused => [.. Hosts.Where(h => h.Accused)];

    /// <summary>The report as JSON (the FileAccusation evidence attachment). Keys are not included.</summary>
    public string ToJson()
    {
        var obs = new JsonArray();
        foreach (var o in Observed) obs.Add(o is bool b ? JsonValue.Create(b) : null);
        var hosts = new JsonArray();
        foreach (var h in Hosts) hosts.Add(new JsonObject { ["ordinal"] = h.HostOrdinal, ["host"] = h.Host, ["score"] = h.Score, ["accused"] = h.Accused });
        return new JsonObject { ["modelId"] = ModelId, ["innocentBound"] = InnocentBound, ["observed"] = obs, ["hosts"] = hosts }.ToJsonString();
    }
}

/// <summary>
/// The owner's leak tracer: asks a suspect endpoint of unknown origin the pool's keys, records which answered with
/// their responses, and lets an <see cref="IAccuser"/> score every licensed host (ordinals map to addresses through
/// the licence order on the ledger).
/// </summary>
public static class LeakTracer
{
    public static async Task<TraceReport> TraceAsync(ProtocolState state, string modelId, FingerprintSet pool, IAccuser accuser,
        Func<string, CancellationToken, Task<string>> ask, double innocentBound, IEnumerable<int>? poolIndices = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(accuser);
        ArgumentNullException.ThrowIfNull(ask);
        if (!(innocentBound > 0 && innocentBound < 1)) throw new ArgumentOutOfRangeException(nameof(innocentBound), innocentBound, "must be in (0, 1)");
        LicensedHosts(state, modelId);
        var observed = new bool?[pool.Count];
        foreach (int i in poolIndices ?? Enumerable.Range(0, pool.Count))
        {
            if ((uint)i >= (uint)pool.Count) throw new ArgumentOutOfRangeException(nameof(poolIndices), $"pool index {i} is outside the pool");
            ct.ThrowIfCancellationRequested();
            var f = pool[i];
            string answer = await ask(f.Key, ct).ConfigureAwait(false);
            observed[i] = ResponseMatcher.IsTextMatchAny(f.Responses.Select(r => r.Text), answer);
        }
        return Accuse(state, modelId, observed, accuser, innocentBound);
    }

    /// <summary>
    /// Scores every licensed host against an observation recorded earlier (a <see cref="TraceReport"/>'s
    /// <see cref="TraceReport.Observed"/>): the same accusation without asking the suspect again, e.g. with another
    /// score or bound, or after the suspect went offline.
    /// </summary>
    public static TraceReport Accuse(ProtocolState state, string modelId, IReadOnlyList<bool?> observed, IAccuser accuser, double innocentBound)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(observed);
        ArgumentNullException.ThrowIfNull(accuser);
        if (!(innocentBound > 0 && innocentBound < 1)) throw new ArgumentOutOfRangeException(nameof(innocentBound), innocentBound, "must be in (0, 1)");
        var hostList = LicensedHosts(state, modelId);
        var scores = accuser.Accuse(observed, hostList.Count, innocentBound);
        var hosts = scores.Select(a => new TracedHost(a.HostOrdinal, hostList[a.HostOrdinal], a.Score, a.Accused)).ToList();
        return new TraceReport(modelId, [.. observed], hosts, innocentBound);
    }

    private static IReadOnlyList<string> LicensedHosts(ProtocolState state, string modelId)
    {
        var model = state.Models.TryGetValue(modelId, out var m) ? m : throw new ProtocolException(ProtocolErrorCode.UnknownModel, $"no model '{modelId}'");
        if (model.Hosts.Count == 0) throw new InvalidOperationException($"model '{modelId}' has no licensed hosts to trace");
        return model.Hosts;
    }

    /// <summary>Traces through a host-style endpoint (no permit; receipts are ignored).</summary>
    public static Task<TraceReport> TraceAsync(ProtocolState state, string modelId, FingerprintSet pool, IAccuser accuser,
        IHostEndpoint suspect, double innocentBound, IEnumerable<int>? poolIndices = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(suspect);
        return TraceAsync(state, modelId, pool, accuser, async (q, c) => (await suspect.AskAsync(q, null, c).ConfigureAwait(false)).Text,
            innocentBound, poolIndices, ct);
    }
}
