using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Explorer.State;

/// <summary>What a source learned from the events themselves, beyond <see cref="ProtocolState"/>.</summary>
public sealed class EventHistory
{
    /// <summary>Fee payouts of each usage commitment, keyed by <see cref="ProtocolState.UsageKey"/>.</summary>
    public Dictionary<string, IReadOnlyList<FeeShare>> Payouts { get; } = new(StringComparer.Ordinal);
    /// <summary>Withdrawals per lowercase address, oldest first.</summary>
    public Dictionary<string, List<WithdrawalView>> Withdrawals { get; } = new(StringComparer.Ordinal);
    /// <summary>The latest events, oldest first (a ring of at most <see cref="StateMapper.RecentEventCount"/>).</summary>
    public Queue<EventView> Recent { get; } = new();
    public string HeadHash { get; set; } = "";

    public void AddRecent(EventView e)
    {
        Recent.Enqueue(e);
        while (Recent.Count > StateMapper.RecentEventCount) Recent.Dequeue();
    }
}

/// <summary>
/// The one place where the protocol's <see cref="ProtocolState"/> (public API only) becomes the explorer's view models.
/// When the protocol's rules change (escrow per user and host, stake-weighted governance, ...), this is what to adapt.
/// </summary>
public static class StateMapper
{
    public const int RecentEventCount = 50;

    /// <summary>EIP-55 form of a lowercase (or any-case) 0x address; other text is returned unchanged.</summary>
    public static string Checksummed(string? address) =>
        address is not null && Address.TryParse(address.ToLowerInvariant(), out var a) ? a.ToString() : address ?? "";

    public static ExplorerSnapshot Map(ProtocolState s, EventHistory history, string source)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(history);
        var cs = new Dictionary<string, string>(StringComparer.Ordinal);
        string C(string? a)
        {
            if (a is null) return "";
            if (!cs.TryGetValue(a, out var v)) cs[a] = v = Checksummed(a);
            return v;
        }

        var licences = s.Licences.Values
            .OrderBy(l => l.ModelId, StringComparer.Ordinal).ThenBy(l => l.Ordinal)
            .Select(l => new LicenceView(l.ModelId, C(l.Host), l.Ordinal, l.Endpoint, l.CollateralPosted, l.CollateralLocked, l.IndicesRoot,
                l.FingerprintCount, l.CopyDigest, l.Allocation, l.Delivered, l.Acknowledged))
            .ToList();
        var licencesByModel = licences.GroupBy(l => l.ModelId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => (IReadOnlyList<LicenceView>)[.. g], StringComparer.Ordinal);

        var spent = s.Models.Keys.ToDictionary(id => id, _ => 0, StringComparer.Ordinal);
        foreach (var c in s.Claims)
            if (c.ModelId is not null && c.Status is ClaimStatus.Revealed or ClaimStatus.Slashed or ClaimStatus.Rebutted)
                spent[c.ModelId] = spent.GetValueOrDefault(c.ModelId) + c.Items.Count;

        var models = s.Models.Values.Select(m => new ModelView(
            m.Id, C(m.Owner), m.PendingOwner is null ? null : C(m.PendingOwner), m.Metadata, m.LicenceTerms, m.PricePerQuery, m.MinCollateral,
            m.RegisteredAt,
            [.. m.Versions.Select((v, i) => new ModelVersionView(i + 1, v.WeightsDigest, v.Notes, v.Time))],
            [.. m.Parents.Select(p => new ParentView(p.ParentModelId, p.ShareBps))],
            licencesByModel.GetValueOrDefault(m.Id) ?? [],
            spent.GetValueOrDefault(m.Id))).ToList();

        var usage = s.Usage.Values
            .Select(u => new UsageView(u.ModelId, C(u.Host), u.Epoch, u.ReceiptsRoot, u.ReceiptCount, u.PermitCount, u.FeesSettled, u.Time,
                history.Payouts.GetValueOrDefault(ProtocolState.UsageKey(u.ModelId, u.Host, u.Epoch)) ?? []))
            .ToList();
        var usageByHost = usage.GroupBy(u => u.Host, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.OrderBy(u => u.Epoch).ThenBy(u => u.ModelId, StringComparer.Ordinal).ToList(), StringComparer.Ordinal);
        var claimsAgainst = s.Claims.Where(c => c.Host is not null).GroupBy(c => C(c.Host)).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var hosts = licences.GroupBy(l => l.Host, StringComparer.Ordinal)
            .Select(g =>
            {
                var u = usageByHost.GetValueOrDefault(g.Key) ?? [];
                long earned = u.Sum(x => x.Payouts.Where(p => p.Recipient == g.Key && p.Role == "host").Sum(p => p.Amount));
                return new HostView(g.Key, [.. g], u, g.Sum(l => l.CollateralPosted), g.Sum(l => l.CollateralLocked), u.Sum(x => x.FeesSettled), earned,
                    claimsAgainst.GetValueOrDefault(g.Key));
            })
            .OrderBy(h => h.Address, StringComparer.OrdinalIgnoreCase)
            .ToList();

        var owners = s.Models.Values.Select(m => m.Owner).ToHashSet(StringComparer.Ordinal);
        var hostSet = s.Licences.Values.Select(l => l.Host).ToHashSet(StringComparer.Ordinal);
        var provers = s.Claims.Select(c => c.Prover).ToHashSet(StringComparer.Ordinal);
        var accounts = s.Accounts.Select(kv =>
        {
            var roles = new List<string>();
            if (kv.Key == s.Treasury) roles.Add("treasury");
            if (owners.Contains(kv.Key)) roles.Add("owner");
            if (hostSet.Contains(kv.Key)) roles.Add("host");
            if (provers.Contains(kv.Key)) roles.Add("prover");
            if (roles.Count == 0) roles.Add(kv.Value.Prepaid > 0 ? "user" : "account");
            var a = kv.Value;
            return new AccountView(C(kv.Key), string.Join(", ", roles), a.Balance, a.Prepaid, a.Withdrawable, a.Locked, a.Nonce,
                history.Withdrawals.TryGetValue(kv.Key, out var w) ? [.. w] : []);
        }).ToList();

        var claims = s.Claims.Select(c => new ClaimView(
            c.Id, C(c.Prover), c.Status.ToString(), c.Commitment, c.Bond, c.CommittedAt, c.CommittedAt + s.Parameters.RevealWindowSeconds,
            c.ModelId, c.Host is null ? null : C(c.Host), c.EvidenceHash, c.RevealedAt, c.RebutDeadline,
            [.. c.Items.Select(i => new ClaimItemView(i.FingerprintId, i.LeafIndex, i.ReceiptHash, i.PermitHash))],
            c.Slashed, c.SlashCapped, c.ProverReward)).ToList();

        var proposals = s.Proposals.Select(p => new ProposalView(
            p.Id, C(p.Proposer), [.. p.Changes.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new ParameterView(kv.Key, kv.Value))],
            p.Description, p.CreatedAt, p.EndsAt, p.Eligible.Count, p.Yes, p.No, p.Executed,
            [.. p.Votes.Select(v => new VoteView(C(v.Key), v.Value))])).ToList();

        return new ExplorerSnapshot
        {
            Source = source,
            Height = s.Height,
            HeadHash = history.HeadHash,
            ChainId = s.Domain.ChainId,
            VerifyingContract = C(s.Domain.VerifyingContract),
            Treasury = C(s.Treasury),
            TotalSupply = s.TotalSupply,
            GenesisTime = s.GenesisTime,
            LastTime = s.LastTime,
            EpochSeconds = s.Parameters.EpochSeconds,
            RevealWindowSeconds = s.Parameters.RevealWindowSeconds,
            Parameters = [.. ProtocolParameters.Names.Select(n => new ParameterView(n, s.Parameters.Get(n)))],
            Models = models,
            Hosts = hosts,
            Accounts = accounts,
            Claims = claims,
            Proposals = proposals,
            Accusations = [.. s.Accusations.Select(a => new AccusationView(a.ModelId, C(a.Host), C(a.Accuser), a.EvidenceHash, a.Time))],
            RecentEvents = [.. history.Recent.Reverse().Select(e => e with { Actor = e.Actor is null ? null : C(e.Actor) })],
        };
    }
}
