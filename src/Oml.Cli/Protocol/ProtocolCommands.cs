using System.CommandLine;
using System.Text.Json.Nodes;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Ledger;

namespace Oml.Cli.Protocol;

/// <summary>Commands several roles share (withdraw) and <c>oml protocol init|status</c>.</summary>
public static class RoleCommands
{
    /// <summary><c>withdraw</c>: pull all credits (fees, rewards, returned bonds) into the balance.</summary>
    public static Command Withdraw()
    {
        var (cmd, o) = ProtocolCli.Command("withdraw", "Move all your credits (fees, rewards, returned bonds) into your balance.");
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            string me = Hex.Of(key.Address);
            long amount = s.State.AccountOf(me).Withdrawable;
            var ev = await s.Backend.WithdrawAsync(key, ct);
            return s.Report().Add("account", "account", me).Money("withdrawn", "withdrawn", amount)
                .Money("balance", "balance now", s.State.AccountOf(me).Balance).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    /// <summary>Parses repeated <c>Name=Value</c> options into a change set.</summary>
    internal static Dictionary<string, string> Changes(IEnumerable<string>? pairs, string option)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in pairs ?? [])
        {
            int eq = p.IndexOf('=');
            if (eq <= 0 || eq == p.Length - 1) throw new UsageException($"{option} '{p}': expected Name=Value (names: {string.Join(", ", ProtocolParameters.Names)})");
            d[p[..eq].Trim()] = p[(eq + 1)..].Trim();
        }
        return d;
    }
}

/// <summary><c>oml protocol init|status</c>.</summary>
public static class ProtocolCommands
{
    public static Command Create() => new("protocol", "The protocol ledger: create it (genesis) and show its state.")
    {
        Init(), Status(),
    };

    public static Command Init()
    {
        var (cmd, o) = ProtocolCli.Command("init", "Create a protocol ledger: the genesis event names --keystore the treasury (the only minter) and fixes the parameters.");
        var set = new Option<string[]>("--set") { Description = "Parameter=Value (repeatable), e.g. --set RebutWindowSeconds=60", AllowMultipleArgumentsPerToken = false };
        var chainId = new Option<long>("--chain-id") { Description = "EIP-712 chain id of this ledger", DefaultValueFactory = _ => ProtocolDomain.DefaultChainId };
        cmd.Add(set); cmd.Add(chainId);
        cmd.SetAction(r =>
        {
            if (r.GetValue(o.Chain) is not null) throw new UsageException("init creates an embedded ledger; on a chain, deploy the contracts with `oml chain deploy --chain URL --keystore TREASURY`");
            var path = r.GetValue(o.Ledger)!;
            var parameters = ProtocolParameters.Default.With(RoleCommands.Changes(r.GetValue(set), "--set"));
            if (r.GetValue(chainId) <= 0) throw new UsageException("--chain-id must be positive");
            using var key = o.Key(r);
            if (File.Exists(path))
            {
                using var existing = SqliteLedger.Open(path);
                if (existing.Height > 0) throw new IOException($"{path} already holds {existing.Height} events: init never overwrites a ledger");
            }
            using var ledger = SqliteLedger.Open(path, create: true);
            var engine = ProtocolEngine.Initialize(ledger, key, parameters, r.GetValue(chainId));
            LedgerPins.Record(ledger);
            var rep = new Report().Json("backend", "ledger").Add("ledger", "ledger", Path.GetFullPath(path)).Add("treasury", "treasury", engine.State.Treasury)
                .Add("chainId", "chain id", engine.Domain.ChainId).Add("verifyingContract", "verifying contract", engine.Domain.VerifyingContract).Add("genesis", "genesis", ProtocolCli.Time(engine.State.GenesisTime));
            var p = new JsonObject();
            foreach (var n in ProtocolParameters.Names)
            {
                p[n] = engine.Parameters.Get(n);
                rep.Line($"  {n,-20} {engine.Parameters.Get(n)}");
            }
            return rep.Json("parameters", p).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Status()
    {
        var (cmd, o) = ProtocolCli.Command("status", "Show the protocol state: models, licences, accounts, open claims, proposals and parameters.", signs: false);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            var st = s.State;
            long now = s.Now;
            if (r.GetValue(o.Json))
            {
                var json = StatusJson(st, now);
                json["backend"] = s.Backend.Kind;
                json["where"] = s.Backend.Description;
                Console.WriteLine(json.ToJsonString());
                return Cli.Ok;
            }
            var right = new HashSet<int> { 2, 3, 4, 5 };
            Console.WriteLine(s.OnChain ? $"chain     {s.Backend.Description}" : $"ledger    {Path.GetFullPath(r.GetValue(o.Ledger)!)}  height {st.Height}, chain {st.Domain.ChainId}");
            Console.WriteLine($"treasury  {st.Treasury}  supply {ProtocolCli.Money(st.TotalSupply)}");
            Console.WriteLine($"time      {ProtocolCli.Time(now)}  epoch {st.EpochAt(now)}");
            Console.WriteLine();
            Console.WriteLine("Models");
            foreach (var l in Report.Table(["id", "owner", "price", "min collateral", "versions", "hosts", "parents"],
                st.Models.Values.Select(m => (IReadOnlyList<string>)[m.Id, m.Owner + (m.PendingOwner is null ? "" : $" (→ {m.PendingOwner})"),
                    ProtocolCli.Money(m.PricePerQuery), ProtocolCli.Money(m.MinCollateral), m.Versions.Count.ToString(), m.Hosts.Count.ToString(),
                    m.Parents.Count == 0 ? "-" : string.Join(",", m.Parents.Select(p => $"{p.ParentModelId}:{p.ShareBps}bps"))]), right))
                Console.WriteLine("  " + l);
            Console.WriteLine();
            Console.WriteLine("Licences");
            foreach (var l in Report.Table(["model", "host", "#", "collateral", "locked", "fingerprints", "state", "endpoint"],
                st.Licences.Values.OrderBy(x => x.ModelId, StringComparer.Ordinal).ThenBy(x => x.Ordinal).Select(x => (IReadOnlyList<string>)[x.ModelId, x.Host, x.Ordinal.ToString(),
                    ProtocolCli.Money(x.CollateralPosted), ProtocolCli.Money(x.CollateralLocked), x.Delivered ? x.FingerprintCount.ToString() : "-",
                    LicenceState(x, now), x.Endpoint]), new HashSet<int> { 2, 3, 4, 5 }))
                Console.WriteLine("  " + l);
            Console.WriteLine();
            Console.WriteLine("Accounts");
            foreach (var l in Report.Table(["address", "balance", "escrowed", "withdrawable", "locked", "staked", "nonce"],
                st.Accounts.Select(kv => (IReadOnlyList<string>)[kv.Key + (kv.Key == st.Treasury ? " (treasury)" : ""), ProtocolCli.Money(kv.Value.Balance),
                    ProtocolCli.Money(kv.Value.Escrowed), ProtocolCli.Money(kv.Value.Withdrawable), ProtocolCli.Money(kv.Value.Locked), ProtocolCli.Money(kv.Value.Staked), kv.Value.Nonce.ToString()]),
                new HashSet<int> { 1, 2, 3, 4, 5, 6 }))
                Console.WriteLine("  " + l);
            Console.WriteLine();
            var open = st.Claims.Where(c => c.Status is ClaimStatus.Committed or ClaimStatus.Revealed).ToList();
            Console.WriteLine($"Open claims ({open.Count} of {st.Claims.Count})");
            foreach (var l in Report.Table(["id", "prover", "status", "bond", "host", "model", "deadline"],
                open.Select(c => (IReadOnlyList<string>)[c.Id.ToString(), c.Prover, c.Status.ToString(), ProtocolCli.Money(c.Bond), c.Host ?? "(hidden)", c.ModelId ?? "(hidden)",
                    ProtocolCli.Time(c.Status == ClaimStatus.Committed ? c.CommittedAt + st.Parameters.RevealWindowSeconds : c.RebutDeadline)]), new HashSet<int> { 0, 3 }))
                Console.WriteLine("  " + l);
            foreach (var c in st.Claims.Where(c => c.Status is ClaimStatus.Slashed or ClaimStatus.Rebutted or ClaimStatus.Expired or ClaimStatus.Voided))
                Console.WriteLine($"  closed: claim {c.Id} {c.Status}{(c.Status == ClaimStatus.Slashed ? $" {c.Host} by {ProtocolCli.Money(c.Slashed)} (prover reward {ProtocolCli.Money(c.ProverReward)})" : "")}");
            if (st.Proposals.Count > 0)
            {
                Console.WriteLine();
                Console.WriteLine("Proposals");
                foreach (var p in st.Proposals)
                    Console.WriteLine($"  {p.Id}  {ProtocolParameters.ChangesToJson(p.Changes)}  staked yes {ProtocolCli.Money(p.Yes)} no {ProtocolCli.Money(p.No)} of {ProtocolCli.Money(p.TotalWeight)}  {(p.Executed ? "executed" : now > p.EndsAt ? "closed" : $"open until {ProtocolCli.Time(p.EndsAt)}")}  {p.Description}");
            }
            if (st.Accusations.Count > 0)
            {
                Console.WriteLine();
                Console.WriteLine("Accusations");
                foreach (var a in st.Accusations) Console.WriteLine($"  {a.ModelId}  {a.Host}  by {a.Accuser}  at {ProtocolCli.Time(a.Time)}");
            }
            Console.WriteLine();
            Console.WriteLine("Parameters");
            foreach (var n in ProtocolParameters.Names) Console.WriteLine($"  {n,-20} {st.Parameters.Get(n)}");
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>Where a licence stands, its exit included: applied, delivered, acknowledged, exiting (and when its
    /// collateral can be released), released.</summary>
    internal static string LicenceState(Licence x, long now) =>
        x.CollateralReleased ? $"released {ProtocolCli.Money(x.ReleasedAmount)}"
        : x.Exiting ? (now >= x.ReleasableAt ? "exiting, releasable now" : $"exiting, releasable {ProtocolCli.Time(x.ReleasableAt)}")
        : x.Acknowledged ? "acknowledged" : x.Delivered ? "delivered" : "applied";

    internal static JsonObject StatusJson(ProtocolState st, long now)
    {
        var models = new JsonArray();
        foreach (var m in st.Models.Values)
            models.Add(new JsonObject
            {
                ["id"] = m.Id, ["owner"] = m.Owner, ["pendingOwner"] = m.PendingOwner, ["price"] = m.PricePerQuery, ["minCollateral"] = m.MinCollateral,
                ["versions"] = new JsonArray([.. m.Versions.Select(v => (JsonNode)new JsonObject { ["weightsDigest"] = v.WeightsDigest, ["notes"] = v.Notes, ["time"] = v.Time })]),
                ["parents"] = new JsonArray([.. m.Parents.Select(p => (JsonNode)new JsonObject { ["model"] = p.ParentModelId, ["shareBps"] = p.ShareBps })]),
                ["hosts"] = new JsonArray([.. m.Hosts.Select(h => JsonValue.Create(h))]),
            });
        var licences = new JsonArray();
        foreach (var x in st.Licences.Values)
            licences.Add(new JsonObject
            {
                ["model"] = x.ModelId, ["host"] = x.Host, ["ordinal"] = x.Ordinal, ["endpoint"] = x.Endpoint, ["collateralPosted"] = x.CollateralPosted,
                ["collateralLocked"] = x.CollateralLocked, ["delivered"] = x.Delivered, ["acknowledged"] = x.Acknowledged, ["fingerprints"] = x.FingerprintCount,
                ["copyDigest"] = x.CopyDigest, ["allocation"] = x.Allocation,
                ["exitAnnouncedAt"] = x.ExitAnnouncedAt, ["exitEpoch"] = x.Exiting ? x.ExitEpoch : null, ["releasableAt"] = x.Exiting ? x.ReleasableAt : null,
                ["collateralReleased"] = x.CollateralReleased, ["releasedAmount"] = x.ReleasedAmount,
            });
        var accounts = new JsonObject();
        foreach (var (k, a) in st.Accounts)
            accounts[k] = new JsonObject { ["balance"] = a.Balance, ["escrowed"] = a.Escrowed, ["withdrawable"] = a.Withdrawable, ["locked"] = a.Locked, ["staked"] = a.Staked, ["nonce"] = a.Nonce };
        var claims = new JsonArray();
        foreach (var c in st.Claims)
            claims.Add(new JsonObject
            {
                ["id"] = c.Id, ["prover"] = c.Prover, ["status"] = c.Status.ToString(), ["bond"] = c.Bond, ["model"] = c.ModelId, ["host"] = c.Host,
                ["rebutDeadline"] = c.RebutDeadline, ["slashed"] = c.Slashed, ["proverReward"] = c.ProverReward,
            });
        var proposals = new JsonArray();
        foreach (var p in st.Proposals)
            proposals.Add(new JsonObject
            {
                ["id"] = p.Id, ["changes"] = JsonNode.Parse(ProtocolParameters.ChangesToJson(p.Changes)), ["description"] = p.Description, ["yes"] = p.Yes, ["no"] = p.No,
                ["totalStake"] = p.TotalWeight, ["endsAt"] = p.EndsAt, ["executed"] = p.Executed,
            });
        var parameters = new JsonObject();
        foreach (var n in ProtocolParameters.Names) parameters[n] = long.Parse(st.Parameters.Get(n), System.Globalization.CultureInfo.InvariantCulture);
        return new JsonObject
        {
            ["height"] = st.Height, ["chainId"] = st.Domain.ChainId, ["verifyingContract"] = st.Domain.VerifyingContract, ["treasury"] = st.Treasury, ["totalSupply"] = st.TotalSupply, ["now"] = now, ["epoch"] = st.EpochAt(now),
            ["models"] = models, ["licences"] = licences, ["accounts"] = accounts, ["claims"] = claims, ["proposals"] = proposals,
            ["accusations"] = new JsonArray([.. st.Accusations.Select(a => (JsonNode)new JsonObject { ["model"] = a.ModelId, ["host"] = a.Host, ["accuser"] = a.Accuser, ["evidenceHash"] = a.EvidenceHash, ["time"] = a.Time })]),
            ["parameters"] = parameters,
        };
    }
}
