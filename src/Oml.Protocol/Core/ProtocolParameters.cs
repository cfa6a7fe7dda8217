using System.Globalization;
using System.Text.Json.Nodes;

namespace Oml.Protocol.Core;

/// <summary>
/// The governance-controlled parameters. Fractions are in basis points (1/10,000); money in base units of the
/// ledger currency; windows in seconds of ledger time.
/// </summary>
/// <param name="HostFeeShareBps">The host's share of each query fee; the rest is the model owner's revenue (split along the family tree).</param>
/// <param name="SlashFractionBps">The part of a host's original collateral slashed per successful claim (capped at what is still locked).</param>
/// <param name="ProverRewardBps">The prover's part of a slash; the rest goes to the model owner.</param>
/// <param name="MinBond">The smallest claim bond.</param>
/// <param name="RevealWindowSeconds">How long after CommitClaim the prover may reveal (the reveal must also be at least 1 s later).</param>
/// <param name="RebutWindowSeconds">How long after RevealClaim the host may rebut.</param>
/// <param name="EpochSeconds">The usage epoch length (epoch 0 starts at genesis).</param>
/// <param name="MinCollateral">The protocol-wide floor under every model's own minimum collateral.</param>
/// <param name="VotingWindowSeconds">How long a proposal is open for votes.</param>
/// <param name="QuorumBps">The part of the total governance stake (at the proposal's snapshot) that must vote for a proposal to pass.</param>
/// <param name="RefundDelaySeconds">How long after RequestRefund a user's escrow with a host can be refunded (hosts stop accepting the user's permits at the request, and settle the ones they served meanwhile).</param>
/// <param name="ProposalThreshold">The governance stake needed to make a proposal.</param>
public sealed record ProtocolParameters(
    int HostFeeShareBps = 2_000,
    int SlashFractionBps = 5_000,
    int ProverRewardBps = 3_000,
    long MinBond = 100,
    long RevealWindowSeconds = 3_600,
    long RebutWindowSeconds = 86_400,
    long EpochSeconds = 86_400,
    long MinCollateral = 1_000,
    long VotingWindowSeconds = 259_200,
    int QuorumBps = 5_000,
    long RefundDelaySeconds = 172_800,
    long ProposalThreshold = 1_000)
{
    public static ProtocolParameters Default { get; } = new();

    /// <summary>
    /// The longest window, delay or epoch (OmlProtocol.MAX_WINDOW_SECONDS: one year). Unbounded, one proposal could
    /// freeze the protocol: a rebut deadline or voting end past 2^64 wraps on the chain, and a refund delay or voting
    /// window of centuries locks escrows and stakes.
    /// </summary>
    public const long MaxWindowSeconds = 365L * 86_400;

    /// <summary>
    /// Parameters fixed at genesis, which no proposal may change (OmlProtocol.validateChange): EpochSeconds, since
    /// usage is committed per epoch number and epochs are numbered from genesis, so a new length would renumber the past
    /// and could leave a host unable to commit until its permits expired unsettled.
    /// </summary>
    public static IReadOnlyList<string> Fixed { get; } = [nameof(EpochSeconds)];

    /// <summary>The parameter names, as used in proposals and in the genesis event.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        nameof(HostFeeShareBps), nameof(SlashFractionBps), nameof(ProverRewardBps), nameof(MinBond),
        nameof(RevealWindowSeconds), nameof(RebutWindowSeconds), nameof(EpochSeconds), nameof(MinCollateral),
        nameof(VotingWindowSeconds), nameof(QuorumBps), nameof(RefundDelaySeconds), nameof(ProposalThreshold),
    ];

    /// <summary>Throws <see cref="ProtocolException"/> (InvalidParameters) when a value is out of range.</summary>
    public void Validate()
    {
        static void Bps(string name, int v)
        {
            if (v < 0 || v > 10_000) throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"{name} must be in [0, 10000] basis points, got {v}");
        }
        static void Positive(string name, long v)
        {
            if (v <= 0) throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"{name} must be positive, got {v}");
        }
        static void Window(string name, long v)
        {
            if (v <= 0 || v > MaxWindowSeconds)
                throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"{name} must be from 1 to {MaxWindowSeconds} seconds (one year), got {v}");
        }
        Bps(nameof(HostFeeShareBps), HostFeeShareBps);
        Bps(nameof(SlashFractionBps), SlashFractionBps);
        Bps(nameof(ProverRewardBps), ProverRewardBps);
        Bps(nameof(QuorumBps), QuorumBps);
        Positive(nameof(MinBond), MinBond);
        Window(nameof(RevealWindowSeconds), RevealWindowSeconds);
        Window(nameof(RebutWindowSeconds), RebutWindowSeconds);
        Window(nameof(EpochSeconds), EpochSeconds);
        Window(nameof(VotingWindowSeconds), VotingWindowSeconds);
        Window(nameof(RefundDelaySeconds), RefundDelaySeconds);
        Positive(nameof(ProposalThreshold), ProposalThreshold);
        if (MinCollateral < 0) throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"MinCollateral must not be negative, got {MinCollateral}");
    }

    /// <summary>The value of parameter <paramref name="name"/> as a decimal string.</summary>
    public string Get(string name) => name switch
    {
        nameof(HostFeeShareBps) => Str(HostFeeShareBps),
        nameof(SlashFractionBps) => Str(SlashFractionBps),
        nameof(ProverRewardBps) => Str(ProverRewardBps),
        nameof(MinBond) => Str(MinBond),
        nameof(RevealWindowSeconds) => Str(RevealWindowSeconds),
        nameof(RebutWindowSeconds) => Str(RebutWindowSeconds),
        nameof(EpochSeconds) => Str(EpochSeconds),
        nameof(MinCollateral) => Str(MinCollateral),
        nameof(VotingWindowSeconds) => Str(VotingWindowSeconds),
        nameof(QuorumBps) => Str(QuorumBps),
        nameof(RefundDelaySeconds) => Str(RefundDelaySeconds),
        nameof(ProposalThreshold) => Str(ProposalThreshold),
        _ => throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"unknown parameter '{name}' (known: {string.Join(", ", Names)})"),
    };

    private static string Str(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>A copy with the named values replaced (decimal integers); validates the result.</summary>
    public ProtocolParameters With(IReadOnlyDictionary<string, string> changes)
    {
        ArgumentNullException.ThrowIfNull(changes);
        var p = this;
        foreach (var (name, text) in changes)
        {
            if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
                throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"parameter {name}: '{text}' is not an integer");
            int AsInt() => v is >= int.MinValue and <= int.MaxValue ? (int)v
                : throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"parameter {name}: {v} is out of range");
            p = name switch
            {
                nameof(HostFeeShareBps) => p with { HostFeeShareBps = AsInt() },
                nameof(SlashFractionBps) => p with { SlashFractionBps = AsInt() },
                nameof(ProverRewardBps) => p with { ProverRewardBps = AsInt() },
                nameof(MinBond) => p with { MinBond = v },
                nameof(RevealWindowSeconds) => p with { RevealWindowSeconds = v },
                nameof(RebutWindowSeconds) => p with { RebutWindowSeconds = v },
                nameof(EpochSeconds) => p with { EpochSeconds = v },
                nameof(MinCollateral) => p with { MinCollateral = v },
                nameof(VotingWindowSeconds) => p with { VotingWindowSeconds = v },
                nameof(QuorumBps) => p with { QuorumBps = AsInt() },
                nameof(RefundDelaySeconds) => p with { RefundDelaySeconds = v },
                nameof(ProposalThreshold) => p with { ProposalThreshold = v },
                _ => throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"unknown parameter '{name}' (known: {string.Join(", ", Names)})"),
            };
        }
        p.Validate();
        return p;
    }

    /// <summary>All parameters as a canonical JSON object of decimal strings (names in <see cref="Names"/> order).</summary>
    public string ToJson() => ChangesToJson(Names.ToDictionary(n => n, Get));

    /// <summary>Parses a full parameter object written by <see cref="ToJson"/>.</summary>
    public static ProtocolParameters FromJson(string json)
    {
        var changes = ChangesFromJson(json);
        foreach (var n in Names)
            if (!changes.ContainsKey(n)) throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"parameters JSON lacks {n}");
        return Default.With(changes);
    }

    /// <summary>A set of changes as canonical JSON: keys sorted ordinally, values decimal strings.</summary>
    public static string ChangesToJson(IReadOnlyDictionary<string, string> changes)
    {
        var o = new JsonObject();
        foreach (var k in changes.Keys.OrderBy(k => k, StringComparer.Ordinal)) o[k] = changes[k];
        return o.ToJsonString();
    }

    public static IReadOnlyDictionary<string, string> ChangesFromJson(string json)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new FormatException("not a JSON object"); }
        catch (Exception e) when (e is System.Text.Json.JsonException or FormatException)
        {
            throw new ProtocolException(ProtocolErrorCode.InvalidParameters, $"parameter changes are not a JSON object: {e.Message}", e);
        }
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in o)
        {
            if (v is not JsonValue jv || !jv.TryGetValue(out string? s))
                throw ProtocolException.Of(ProtocolErrorCode.InvalidParameters, $"parameter {k}: value must be a decimal string");
            d[k] = s;
        }
        return d;
    }
}
