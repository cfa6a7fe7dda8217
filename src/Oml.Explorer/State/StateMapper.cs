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
/// When the protocol's rules change, this is what to adapt (it follows per-(user, host) escrows with refund requests,
/// skipped permits per usage commitment, stake-weighted governance and claims expired with their bond refunded).
/// </summary>
public static class StateMapper
{
    public const int RecentEventCount = 50;

    /// <summary>EIP-55 form of a lowercase (or any-case) 0x address; other text is returned unchanged.</summary>
    public static string Checksummed(string? address) =>
        address is not null && Address.TryParse(address.ToLowerInvariant(), out var a) ? a.ToString() : address ?? "";

    /// <summary>The withdrawable credits of <paramref name="parties"/> in <paramref name="s"/> (before a usage commitment).</summary>
    public static Dictionary<string, long> Withdrawables(IEnumerable<(string Address, string Role)> parties, ProtocolState s) =>
        parties.Select(p => p.Address).Distinct(StringComparer.Ordinal).ToDictionary(a => a, a => s.AccountOf(a).Withdrawable, StringComparer.Ordinal);

    /// <summary>What a usage commitment paid each party: the growth of its withdrawable credits from <paramref name="before"/> to <paramref name="after"/>.</summary>
    public static List<FeeShare> Payouts(IEnumerable<(string Address, string Role)> parties, IReadOnlyDictionary<string, long> before, ProtocolState after)
    {
        var shares = new List<FeeShare>();
        foreach (var group in parties.GroupBy(p => p.Address, StringComparer.Ordinal))
        {
            long gained = after.AccountOf(group.Key).Withdrawable - before[group.Key];
            if (gained > 0) shares.Add(new FeeShare(Checksummed(group.Key), string.Join("; ", group.Select(g => g.Role)), gained));
        }
        return shares;
    }

    /// <summary>Who a usage commitment can credit: the host, and the owners of the model and of all its ancestors.</summary>
    public static List<(string Address, string Role)> UsageParties(ProtocolState s, string host, string modelId)
    {
        var list = new List<(string, string)> { (host, "host") };
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>([modelId]);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            if (!seen.Add(id) || !s.Models.TryGetValue(id, out var m)) continue;
            list.Add((m.Owner, id == modelId ? $"owner of {id}" : $"ancestor {id}"));
            foreach (var p in m.Parents) queue.Enqueue(p.ParentModelId);
        }
        return list;
    }

    /// <summary>The least voting weight that meets the quorum: (yes + no) x 10 000 &gt;= QuorumBps x total, as the ledger's Execute checks.</summary>
    public static long QuorumOf(long totalWeight, int quorumBps) => (long)(((Int128)quorumBps * totalWeight + 9_999) / 10_000);

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

        var escrows = s.Escrows
            .Select(kv =>
            {
                var parts = kv.Key.Split('\n');
                long? requested = kv.Value.RefundRequestedAt;
                return new EscrowView(C(parts[0]), C(parts[1]), kv.Value.Amount, requested, requested + s.Parameters.RefundDelaySeconds);
            })
            .ToList();
        var escrowsByUser = escrows.GroupBy(e => e.User, StringComparer.Ordinal).ToDictionary(g => g.Key, g => (IReadOnlyList<EscrowView>)[.. g], StringComparer.Ordinal);
        var escrowsByHost = escrows.GroupBy(e => e.Host, StringComparer.Ordinal).ToDictionary(g => g.Key, g => (IReadOnlyList<EscrowView>)[.. g.OrderBy(e => e.User, StringComparer.Ordinal)], StringComparer.Ordinal);

        var usage = s.Usage.Values
            .Select(u => new UsageView(u.ModelId, C(u.Host), u.Epoch, u.ReceiptsRoot, u.ReceiptCount, u.PermitCount, u.FeesSettled, u.Time,
                history.Payouts.GetValueOrDefault(ProtocolState.UsageKey(u.ModelId, u.Host, u.Epoch)) ?? [],
                [.. u.Skipped.Select(k => new SkippedPermitView(k.PermitHash, k.Reason.ToString(), k.Detail))]))
            .ToList();
        var usageByHost = usage.GroupBy(u => u.Host, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.OrderBy(u => u.Epoch).ThenBy(u => u.ModelId, StringComparer.Ordinal).ToList(), StringComparer.Ordinal);
        var claimsAgainst = s.Claims.Where(c => c.Host is not null).GroupBy(c => C(c.Host)).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var hosts = licences.GroupBy(l => l.Host, StringComparer.Ordinal)
            .Select(g =>
            {
                var u = usageByHost.GetValueOrDefault(g.Key) ?? [];
                long earned = u.Sum(x => x.Payouts.Where(p => p.Recipient == g.Key && p.Role == "host").Sum(p => p.Amount));
                return new HostView(g.Key, [.. g], u, g.Sum(l => l.CollateralPosted), g.Sum(l => l.CollateralLocked), u.Sum(x => x.FeesSettled), earned,
                    claimsAgainst.GetValueOrDefault(g.Key), escrowsByHost.GetValueOrDefault(g.Key) ?? []);
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
            var mine = escrowsByUser.GetValueOrDefault(C(kv.Key)) ?? [];
            if (mine.Count > 0) roles.Add("user");
            if (kv.Value.Staked > 0) roles.Add("staker");
            if (roles.Count == 0) roles.Add("account");
            var a = kv.Value;
            return new AccountView(C(kv.Key), string.Join(", ", roles), a.Balance, a.Escrowed, a.Staked, a.Withdrawable, a.Locked, a.Nonce,
                history.Withdrawals.TryGetValue(kv.Key, out var w) ? [.. w] : [], mine);
        }).ToList();

        var claims = s.Claims.Select(c => new ClaimView(
            c.Id, C(c.Prover), c.Status.ToString(), c.Commitment, c.Bond, c.CommittedAt, c.CommittedAt + s.Parameters.RevealWindowSeconds,
            c.ModelId, c.Host is null ? null : C(c.Host), c.EvidenceHash, c.RevealedAt, c.RebutDeadline,
            [.. c.Items.Select(i => new ClaimItemView(i.FingerprintId, i.LeafIndex, i.ReceiptHash, i.PermitHash))],
            c.Slashed, c.SlashCapped, c.ProverReward)).ToList();

        var proposals = s.Proposals.Select(p => new ProposalView(
            p.Id, C(p.Proposer), [.. p.Changes.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new ParameterView(kv.Key, kv.Value))],
            p.Description, p.CreatedAt, p.EndsAt, p.Weights.Count, p.TotalWeight, QuorumOf(p.TotalWeight, s.Parameters.QuorumBps), p.Yes, p.No, p.Executed,
            [.. p.Votes.Select(v => new VoteView(C(v.Key), v.Value, p.VoteWeights.GetValueOrDefault(v.Key)))])).ToList();

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
            RefundDelaySeconds = s.Parameters.RefundDelaySeconds,
            Escrows = escrows,
            ProposalThreshold = s.Parameters.ProposalThreshold,
            QuorumBps = s.Parameters.QuorumBps,
            TotalStaked = s.Accounts.Values.Sum(a => a.Staked),
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
