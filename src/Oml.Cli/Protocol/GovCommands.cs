using System.CommandLine;
using System.Text.Json.Nodes;
using Oml.Protocol.Core;

namespace Oml.Cli.Protocol;

/// <summary><c>oml gov ...</c>: parameter governance by model owners.</summary>
public static class GovCommands
{
    public static Command Create() => new("gov", "Governance: model owners propose, vote on and execute parameter changes.")
    {
        Propose(), Vote(), Execute(), Params(),
    };

    public static Command Propose()
    {
        var (cmd, o) = ProtocolCli.Command("propose", "Propose parameter changes (you must own a model); prints the proposal id.");
        var set = new Option<string[]>("--set") { Description = "Parameter=Value (repeatable)", Required = true };
        var description = new Option<string>("--description") { Description = "Why", DefaultValueFactory = _ => "" };
        cmd.Add(set); cmd.Add(description);
        cmd.SetAction(r => ProtocolCli.Guard(() =>
        {
            var changes = RoleCommands.Changes(r.GetValue(set), "--set");
            if (changes.Count == 0) throw new UsageException("--set: give at least one Parameter=Value");
            using var s = o.Open(r);
            using var key = o.Key(r);
            long id = s.Engine.Propose(key, changes, r.GetValue(description)!);
            var p = s.State.Proposals[(int)id];
            return new Report().Add("proposal", "proposal", id).Add("changes", "changes", JsonNode.Parse(ProtocolParameters.ChangesToJson(p.Changes)), ProtocolParameters.ChangesToJson(p.Changes))
                .Add("eligible", "eligible voters", p.Eligible.Count).Add("endsAt", "voting ends", JsonValue.Create(p.EndsAt), ProtocolCli.Time(p.EndsAt)).Print(r.GetValue(o.Json));
        }));
        return cmd;
    }

    public static Command Vote()
    {
        var (cmd, o) = ProtocolCli.Command("vote", "Vote on a proposal (model owners at proposal time).");
        var proposal = new Option<long>("--proposal") { Description = "The proposal id", Required = true };
        var support = new Option<string>("--support") { Description = "yes or no", Required = true };
        support.AcceptOnlyFromAmong("yes", "no");
        cmd.Add(proposal); cmd.Add(support);
        cmd.SetAction(r => ProtocolCli.Guard(() =>
        {
            using var s = o.Open(r);
            using var key = o.Key(r);
            long id = r.GetValue(proposal);
            var ev = s.Engine.Vote(key, id, r.GetValue(support) == "yes");
            var p = s.State.Proposals[(int)id];
            return new Report().Add("proposal", "proposal", id).Add("yes", "yes", p.Yes).Add("no", "no", p.No).Add("eligible", "eligible", p.Eligible.Count)
                .Add("event", "event", ev.Sequence).Print(r.GetValue(o.Json));
        }));
        return cmd;
    }

    public static Command Execute()
    {
        var (cmd, o) = ProtocolCli.Command("execute", "Apply a proposal that passed once its voting window has closed.");
        var proposal = new Option<long>("--proposal") { Description = "The proposal id", Required = true };
        cmd.Add(proposal);
        cmd.SetAction(r => ProtocolCli.Guard(() =>
        {
            using var s = o.Open(r);
            using var key = o.Key(r);
            long id = r.GetValue(proposal);
            var ev = s.Engine.Execute(key, id);
            var p = s.State.Proposals[(int)id];
            var rep = new Report().Add("proposal", "executed", id);
            foreach (var (k, _) in p.Changes) rep.Add(k, k, s.State.Parameters.Get(k));
            return rep.Add("event", "event", ev.Sequence).Print(r.GetValue(o.Json));
        }));
        return cmd;
    }

    public static Command Params()
    {
        var (cmd, o) = ProtocolCli.Command("params", "Print the current protocol parameters.", signs: false);
        cmd.SetAction(r => ProtocolCli.Guard(() =>
        {
            using var s = o.Open(r);
            var rep = new Report();
            foreach (var n in ProtocolParameters.Names) rep.Add(n, n, s.State.Parameters.Get(n));
            return rep.Print(r.GetValue(o.Json));
        }));
        return cmd;
    }
}
