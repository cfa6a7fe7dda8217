using System.CommandLine;
using System.Text.Json.Nodes;
using Oml.Protocol.Core;

namespace Oml.Cli.Protocol;

/// <summary><c>oml gov ...</c>: parameter governance, weighted by governance stake.</summary>
public static class GovCommands
{
    public static Command Create() => new("gov", "Governance: stake, propose, vote on (weighted by stake at the proposal) and execute parameter changes.")
    {
        Stake(), Unstake(), Propose(), Vote(), Execute(), Params(),
    };

    public static Command Stake() => StakeCommand("stake", "Lock balance as governance stake: your voting weight in proposals made from now on.", unstake: false);

    public static Command Unstake() =>
        StakeCommand("unstake", "Return governance stake to your balance (not while a vote of yours is open, nor within VotingWindowSeconds of your last stake).", unstake: true);

    private static Command StakeCommand(string name, string description, bool unstake)
    {
        var (cmd, o) = ProtocolCli.Command(name, description);
        var amount = new Option<long>("--amount") { Description = "Base units", Required = true };
        cmd.Add(amount);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = unstake ? await s.Backend.UnstakeAsync(key, r.GetValue(amount), ct) : await s.Backend.StakeAsync(key, r.GetValue(amount), ct);
            var acc = s.State.AccountOf(Hex.Of(key.Address));
            return s.Report().Add("account", "account", Hex.Of(key.Address)).Money("staked", "staked now", acc.Staked).Money("balance", "balance", acc.Balance)
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Propose()
    {
        var (cmd, o) = ProtocolCli.Command("propose", "Propose parameter changes (you need a governance stake of at least ProposalThreshold); prints the proposal id.");
        var set = new Option<string[]>("--set") { Description = "Parameter=Value (repeatable)", Required = true };
        var description = new Option<string>("--description") { Description = "Why", DefaultValueFactory = _ => "" };
        cmd.Add(set); cmd.Add(description);
        cmd.SetAction(async (r, ct) =>
        {
            var changes = RoleCommands.Changes(r.GetValue(set), "--set");
            if (changes.Count == 0) throw new UsageException("--set: give at least one Parameter=Value");
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.ProposeAsync(key, changes, r.GetValue(description)!, ct);
            long id = ev.Id!.Value;
            var p = s.State.Proposals[(int)id];
            return s.Report().Add("proposal", "proposal", id).Add("changes", "changes", JsonNode.Parse(ProtocolParameters.ChangesToJson(p.Changes)), ProtocolParameters.ChangesToJson(p.Changes))
                .Add("voters", "voters (stakers at the snapshot)", p.Weights.Count).Money("totalStake", "total stake", p.TotalWeight).Add("endsAt", "voting ends", JsonValue.Create(p.EndsAt), ProtocolCli.Time(p.EndsAt)).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Vote()
    {
        var (cmd, o) = ProtocolCli.Command("vote", "Vote on a proposal with your governance stake at the proposal's creation.");
        var proposal = new Option<long>("--proposal") { Description = "The proposal id", Required = true };
        var support = new Option<string>("--support") { Description = "yes or no", Required = true };
        support.AcceptOnlyFromAmong("yes", "no");
        cmd.Add(proposal); cmd.Add(support);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            long id = r.GetValue(proposal);
            var ev = await s.Backend.VoteAsync(key, id, r.GetValue(support) == "yes", ct);
            var p = s.State.Proposals[(int)id];
            return s.Report().Add("proposal", "proposal", id).Money("yes", "staked yes", p.Yes).Money("no", "staked no", p.No).Money("totalStake", "total stake", p.TotalWeight)
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Execute()
    {
        var (cmd, o) = ProtocolCli.Command("execute", "Apply a proposal that passed once its voting window has closed.");
        var proposal = new Option<long>("--proposal") { Description = "The proposal id", Required = true };
        cmd.Add(proposal);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            long id = r.GetValue(proposal);
            var ev = await s.Backend.ExecuteAsync(key, id, ct);
            var p = s.State.Proposals[(int)id];
            var rep = s.Report().Add("proposal", "executed", id);
            foreach (var (k, _) in p.Changes) rep.Add(k, k, s.State.Parameters.Get(k));
            return rep.Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Params()
    {
        var (cmd, o) = ProtocolCli.Command("params", "Print the current protocol parameters.", signs: false);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            var rep = s.Report();
            foreach (var n in ProtocolParameters.Names) rep.Add(n, n, s.State.Parameters.Get(n));
            return rep.Print(r.GetValue(o.Json));
        });
        return cmd;
    }
}
