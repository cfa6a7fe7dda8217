using Oml.Models.IO;
using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Oml.Engine;
using Oml.Fingerprinting.Endpoints;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Hosting;
using Oml.Protocol.Tracing;

namespace Oml.Cli.Protocol;

/// <summary><c>oml prover ...</c>: audits, claims (commit then reveal), settlement, and leak tracing.</summary>
public static class ProverCommands
{
    public static Command Create() => new("prover", "Prover: audit a host with unrevealed keys, claim (commit, reveal), settle, and trace a leaked copy.")
    {
        Audit(), Claim(), Settle(), Trace(), RoleCommands.Withdraw(),
    };

    /// <summary>
    /// New tokens an audit or a trace asks each key for: twice the set's longest response and 16 more, so that a host that
    /// opens every answer with a few newline tokens (the text match trims them) or serves the copy with a finer tokenizer is
    /// still read whole (was the longest + 4, which five leading newlines defeated). Audits ask few keys, so the margin
    /// costs little; `oml verify --endpoint`, which asks thousands, uses a tight limit and asks again when it cut an answer
    /// off undecided.
    /// </summary>
    private static int AnswerTokens(Oml.Fingerprinting.FingerprintSet set) => 2 * set.Fingerprints.Max(f => f.Responses.Max(x => x.TokenIds.Count)) + 16;

    public static Command Audit()
    {
        var (cmd, o) = ProtocolCli.Command("audit",
            "Ask a host's endpoint the unrevealed keys of its copy without a permit; answers that match, with a valid receipt, are claimable (written to --ticket).", signs: false);
        cmd.Add(o.PassphraseFile);
        var endpoint = new Option<string>("--endpoint") { Description = "The host's API base URL", Required = true };
        var model = new Option<string>("--model-id") { Description = "The model", Required = true };
        var host = new Option<string>("--host") { Description = "The audited host's address", Required = true };
        var subset = new Option<string>("--subset") { Description = "The host's fingerprint subset (from `oml owner deliver --subset-out`)", Required = true };
        var maxQueries = new Option<int>("--max-queries") { Description = "Most keys to ask", DefaultValueFactory = _ => 8 };
        var maxItems = new Option<int>("--max-items") { Description = "Most hits to put in the claim (each reveals, and spends, one fingerprint)", DefaultValueFactory = _ => 1 };
        var ticket = new Option<string?>("--ticket") { Description = "Write the claim ticket (evidence and secret salt) here when the host is caught" };
        foreach (var x in new Option[] { endpoint, model, host, subset, maxQueries, maxItems, ticket, o.Force }) cmd.Add(x);
        cmd.SetAction(async (r, ct) =>
        {
            if (!Uri.TryCreate(r.GetValue(endpoint), UriKind.Absolute, out var url)) throw new UsageException($"--endpoint: '{r.GetValue(endpoint)}' is not an absolute URL");
            if (r.GetValue(maxQueries) < 1 || r.GetValue(maxItems) < 1) throw new UsageException("--max-queries and --max-items must be at least 1");
            if (r.GetValue(ticket) is { } ticketPath) AtomicFile.CheckWritable(ticketPath, r.GetValue(o.Force)); // before any query: a ticket holds a claim's secret salt
            string hostAddr = ProtocolCli.Address(r.GetValue(host)!, "--host");
            var set = FingerprintIO.ReadSet(r.GetValue(subset)!, r.GetValue(o.PassphraseFile));
            using var s = await o.OpenAsync(r, ct);
            var lic = s.State.LicenceOf(r.GetValue(model)!, hostAddr) ?? throw new ProtocolException(ProtocolErrorCode.UnknownLicence, $"{hostAddr} holds no licence for '{r.GetValue(model)}'");
            if (lic.IndicesRoot != "0x" + set.Commit().Root)
                throw new ProtocolException(ProtocolErrorCode.InvalidProof, $"{r.GetValue(subset)} is not the fingerprint set delivered to {hostAddr} (its root differs from the ledger's)");
            using var ep = new HttpHostEndpoint(url, new CompletionSettings(MaxTokens: AnswerTokens(set), Model: r.GetValue(model)!));
            var report = await Prover.AuditAsync(s.State, r.GetValue(model)!, hostAddr, set, ep, r.GetValue(maxQueries), ct);
            var rep = s.Report().Add("model", "model", report.ModelId).Add("host", "host", report.Host).Add("queried", "keys asked", report.Queried)
                .Add("hits", "answered as embedded", report.Hits.Count).Add("misses", "refused or other", report.Misses.Count)
                .Add("caught", "verdict", JsonValue.Create(report.Caught), report.Caught ? "CAUGHT: answered fingerprint keys without a permit (signed receipts in hand)" : "nothing to claim");
            if (report.Caught && r.GetValue(ticket) is { } path)
            {
                var t = Prover.PrepareClaim(report, set, r.GetValue(maxItems));
                FingerprintIO.WriteTextAtomic(path, t.ToJson() + "\n", r.GetValue(o.Force));
                rep.Add("ticket", "claim ticket", Path.GetFullPath(path)).Add("evidenceHash", "evidence hash", t.EvidenceHash);
            }
            return rep.Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    private static ClaimTicket ReadTicket(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no claim ticket at {path}", path);
        return ClaimTicket.FromJson(File.ReadAllText(path));
    }

    public static Command Claim()
    {
        var (cmd, o) = ProtocolCli.Command("claim",
            "Claim with a ticket from `oml prover audit`: commit (hiding host and evidence, locking the bond), then reveal a second later. "
            + "Resumable: run it again after an interruption and it commits if the ticket's commitment is not on the ledger, reveals if it is committed and the "
            + "reveal window is open, and settles it otherwise (the bond of an unrevealed claim comes back to you).");
        var ticket = new Option<string>("--ticket") { Description = "The claim ticket file", Required = true };
        var bond = new Option<long?>("--bond") { Description = "The bond to lock (default: the protocol's minimum)" };
        cmd.Add(ticket); cmd.Add(bond);
        cmd.SetAction(async (r, ct) =>
        {
            var t = ReadTicket(r.GetValue(ticket)!);
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            long b = r.GetValue(bond) ?? s.State.Parameters.MinBond;
            var progress = await Prover.AdvanceClaimAsync(s.Backend, key, t, b, s.WaitForLaterTimeAsync, ct);
            var c = progress.Claim;
            var rep = s.Report().Add("claim", "claim", c.Id).Add("commitment", "commitment", c.Commitment).Money("bond", "bond", c.Bond)
                .Add("steps", "done now", JsonValue.Create(string.Join(", ", progress.Steps)), progress.Steps.Count == 0 ? "nothing (it was done before)" : string.Join(", ", progress.Steps)).Add("status", "status", c.Status.ToString());
            if (c.Status == ClaimStatus.Revealed)
                rep.Add("host", "host", c.Host!).Add("model", "model", c.ModelId!).Add("items", "fingerprints revealed", c.Items.Count)
                    .Add("rebutDeadline", "host may rebut until", JsonValue.Create(c.RebutDeadline), ProtocolCli.Time(c.RebutDeadline));
            if (c.Status == ClaimStatus.Expired) rep.Line("the reveal window had closed: the claim was settled and its bond is withdrawable again");
            if (c.Status == ClaimStatus.Voided) rep.Line("a claim committed earlier revealed the same receipt: this claim was voided and its bond is withdrawable again");
            if (!s.OnChain) rep.Add("event", "last event", s.State.Height - 1);
            return rep.Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Settle()
    {
        var (cmd, o) = ProtocolCli.Command("settle", "Close a claim after its windows: slash the host (unrebutted reveal), or return an unrevealed claim's bond to its prover.");
        var claim = new Option<long>("--claim") { Description = "The claim id", Required = true };
        cmd.Add(claim);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            long id = r.GetValue(claim);
            var ev = await s.Backend.SettleAsync(key, id, ct);
            var c = s.State.Claims[(int)id];
            var rep = s.Report().Add("claim", "claim", id).Add("status", "status", c.Status.ToString());
            if (c.Status == ClaimStatus.Slashed)
                rep.Add("host", "host slashed", c.Host!).Money("slashed", "slashed", c.Slashed).Money("proverReward", "prover reward", c.ProverReward)
                    .Money("toOwner", "to the model owner", c.Slashed - c.ProverReward).Add("capped", "capped", JsonValue.Create(c.SlashCapped), c.SlashCapped ? "yes (collateral ran out)" : "no");
            return rep.Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    /// <summary>
    /// The observation of an earlier trace: the <c>observed</c> array of <c>oml prover trace --json</c> (or of the
    /// evidence JSON an accusation attaches), or a bare array; true, false or null per pool key.
    /// </summary>
    internal static bool?[] ReadObserved(string path, string modelId, int poolCount)
    {
        if (!File.Exists(path)) throw new UsageException($"--observed: no file {path}");
        JsonNode? doc;
        try { doc = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new UsageException($"--observed: {path} is not JSON ({e.Message})"); }
        var array = doc switch
        {
            JsonArray a => a,
            JsonObject o when o["observed"] is JsonArray a => a,
            _ => throw new UsageException($"--observed: {path} has no \"observed\" array (give the JSON of `oml prover trace --json`)"),
        };
        if (doc is JsonObject obj && (obj["model"] ?? obj["modelId"]) is JsonValue v && v.TryGetValue(out string? recorded) && recorded != modelId)
            throw new UsageException($"--observed: {path} traced model '{recorded}', not '{modelId}'");
        if (array.Count != poolCount)
            throw new UsageException($"--observed: {path} has {array.Count} entries but the pool has {poolCount} keys");
        var observed = new bool?[poolCount];
        for (int i = 0; i < poolCount; i++)
            observed[i] = array[i] switch
            {
                null => null,
                JsonValue b when b.TryGetValue(out bool x) => x,
                var other => throw new UsageException($"--observed: entry {i} of {path} is {other.ToJsonString()}, not true, false or null"),
            };
        return observed;
    }

    public static Command Trace()
    {
        var (cmd, o) = ProtocolCli.Command("trace",
            "Trace a copy served at an endpoint of unknown origin: ask it the pool's keys and score every licensed host; with --keystore (the owner's), file an accusation for each accused host.",
            signs: false);
        o.Keystore.Required = false;
        cmd.Add(o.Keystore); cmd.Add(o.PassphraseFile);
        var endpoint = new Option<string?>("--endpoint") { Description = "The suspect's OpenAI-compatible API base URL" };
        var copy = new Option<string?>("--copy") { Description = "Instead of --endpoint: the suspect copy's model folder (weights found leaked), asked locally" };
        var observedFile = new Option<string?>("--observed")
        {
            Description = "Instead of --endpoint or --copy: accuse again from the keys a copy answered in an earlier trace "
                + "(its --json output; nothing is asked), e.g. with another --score or --bound",
        };
        var apiModel = new Option<string?>("--api-model") { Description = "With --endpoint: the model name sent; default: the one model the server lists at GET /v1/models" };
        var responder = new Option<string>("--responder")
        {
            Description = "With --copy: how the suspect serves it, as `oml attack probe` takes it (e.g. suppress:k=1,m=1, or coalition:majority:DIR1,DIR2,DIR3 for copies pooled by a coalition)",
            DefaultValueFactory = _ => "greedy",
        };
        var model = new Option<string>("--model-id") { Description = "The model", Required = true };
        var pool = new Option<string>("--pool") { Description = "The model's fingerprint pool (encrypted)", Required = true };
        var secretFile = new Option<string?>("--secret-file") { Description = "The owner's secret that seeded the allocation (default: the one the pool file keeps)" };
        var bound = new Option<double>("--bound") { Description = "Most probability of accusing any one innocent host", DefaultValueFactory = _ => 1e-3 };
        var score = CliOptions.TardosScore();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        foreach (var x in new Option[] { endpoint, copy, observedFile, apiModel, responder, model, pool, secretFile, bound, score, device, dtype }) cmd.Add(x);
        cmd.SetAction(async (r, ct) =>
        {
            if ((r.GetValue(endpoint) is null ? 0 : 1) + (r.GetValue(copy) is null ? 0 : 1) + (r.GetValue(observedFile) is null ? 0 : 1) != 1)
                throw new UsageException("give exactly one of --endpoint URL, --copy DIR and --observed FILE");
            Uri? url = null;
            if (r.GetValue(endpoint) is { } ep && !Uri.TryCreate(ep, UriKind.Absolute, out url)) throw new UsageException($"--endpoint: '{ep}' is not an absolute URL");
            var spec = Cli.OptionValue(() => ResponderSpec.Parse(r.GetValue(responder)!));
            if (r.GetValue(copy) is null && r.GetResult(responder) is { Implicit: false }) throw new UsageException("--responder is for --copy (an endpoint serves as it serves, and an observation was answered already)");
            if (url is null && r.GetValue(apiModel) is not null) throw new UsageException("--api-model is for --endpoint");
            if (r.GetValue(apiModel) is { } am && string.IsNullOrWhiteSpace(am)) throw new UsageException("--api-model must not be empty");
            double eps = r.GetValue(bound);
            if (!(eps > 0 && eps < 1)) throw new UsageException("--bound must be in (0, 1)");
            string modelId = r.GetValue(model)!;
            var passphrase = FingerprintIO.RequirePassphrase(r.GetValue(o.PassphraseFile), "trace reads the encrypted pool");
            var set = FingerprintIO.ReadSet(r.GetValue(pool)!, r.GetValue(o.PassphraseFile));
            using var s = await o.OpenAsync(r, ct);
            var specs = s.State.Licences.Values.Where(l => l.ModelId == modelId && l.Allocation is not null).Select(l => l.Allocation!).Distinct().ToList();
            if (specs.Count == 0) throw new ProtocolException(ProtocolErrorCode.CopyNotDelivered, $"no copy of '{modelId}' was delivered: nothing to trace against");
            if (specs.Count > 1) throw new InvalidOperationException($"the copies of '{modelId}' were delivered with different allocations ({string.Join(", ", specs)})");
            var alloc = AllocationSpec.Parse(specs[0], AllocationSpec.Secret(FingerprintIO.OwnerSecret(r.GetValue(secretFile), r.GetValue(pool)!, passphrase), modelId), set.Count);
            var scoreKind = TardosAccuser.ParseScore(r.GetValue(score)!);
            TraceReport report;
            if (r.GetValue(observedFile) is { } obsPath)
                report = LeakTracer.Accuse(s.State, modelId, ReadObserved(obsPath, modelId, set.Count), AllocationSpec.Accuser(alloc, scoreKind), eps);
            else if (url is not null)
            {
                using var suspect = new OpenAiCompatibleEndpoint(url, null, r.GetValue(apiModel)); // null: the model the suspect lists
                var settings = new CompletionSettings(MaxTokens: AnswerTokens(set));
                report = await LeakTracer.TraceAsync(s.State, modelId, set, AllocationSpec.Accuser(alloc, scoreKind),
                    (q, c) => suspect.CompleteAsync(q, settings, c), eps, ct: ct);
            }
            else
            {
                var answers = AnswerLocally(r.GetValue(copy)!, spec, set, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
                report = await LeakTracer.TraceAsync(s.State, modelId, set, AllocationSpec.Accuser(alloc, scoreKind), (q, _) => Task.FromResult(answers[q]), eps, ct: ct);
            }
            var rep = s.Report().Add("model", "model", modelId).Add("allocation", "allocation", specs[0])
                .Add("score", "score", alloc is TardosAllocation ? TardosAccuser.ScoreName(scoreKind) : "overlap")
                .Add("asked", "keys asked", report.Observed.Count(x => x is not null)).Add("answered", "answered as embedded", report.Observed.Count(x => x == true))
                .Add("bound", "innocent bound", JsonValue.Create(eps), eps.ToString("G3", CultureInfo.InvariantCulture) + " (chance of accusing any one innocent host)")
                .Add("accused", "accused", new JsonArray([.. report.Accused.Select(h => JsonValue.Create(h.Host))]), report.Accused.Count == 0 ? "nobody" : string.Join(", ", report.Accused.Select(h => h.Host)))
                .Json("hosts", JsonNode.Parse(report.ToJson())!["hosts"]!.DeepClone())
                .Json("observed", JsonNode.Parse(report.ToJson())!["observed"]!.DeepClone());
            if (r.GetValue(copy) is { } copyDir) rep.Add("copy", "suspect copy", Path.GetFullPath(copyDir)).Add("responder", "served as", spec.Text);
            if (r.GetValue(observedFile) is { } replayed) rep.Add("observedFrom", "observation from", Path.GetFullPath(replayed));
            rep.Line("");
            foreach (var l in Report.Table(["#", "host", "score", "accused"],
                report.Hosts.Select(h => (IReadOnlyList<string>)[h.HostOrdinal.ToString(CultureInfo.InvariantCulture), h.Host, h.Score.ToString("F2", CultureInfo.InvariantCulture), h.Accused ? "ACCUSED" : "-"]),
                new HashSet<int> { 0, 2 }))
                rep.Line("  " + l);
            if (r.GetValue(o.Keystore) is not null && report.Accused.Count > 0)
            {
                using var key = o.Key(r);
                foreach (var h in report.Accused)
                {
                    var ev = await s.Backend.FileAccusationAsync(key, modelId, h.Host, report.ToJson(), ct);
                    rep.Line($"accusation against {h.Host} filed ({(s.OnChain ? $"transaction {ev.Reference}, block {ev.Position}" : $"event {ev.Position}")})");
                }
                rep.Json("accusationsFiled", report.Accused.Count);
            }
            return rep.Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    /// <summary>
    /// The answers of the copy in <paramref name="dir"/>, served as <paramref name="spec"/> says, to every key of
    /// <paramref name="set"/> (a coalition spec loads its own member folders).
    /// </summary>
    private static IReadOnlyDictionary<string, string> AnswerLocally(string dir, ResponderSpec spec, Oml.Fingerprinting.FingerprintSet set, Device dev, DType? dt)
    {
        if (!File.Exists(Path.Combine(dir, "tokenizer.json"))) throw new InvalidDataException($"{dir} has no tokenizer.json: tracing a copy needs its tokenizer");
        if (spec.Filter is { Quantile: not null }) throw new UsageException("--responder: filter:q= needs calibration prompts; give filter:ppl=THRESHOLD");
        var tok = Cli.LoadTokenizer(dir);
        using var lm = ModelFolder.Load(dir, dev, dt);
        using var host = spec.Build(new ResponderContext { Model = lm, Tokenizer = tok, ChatTemplate = AttackCommands.ResponderTemplate(spec, dir), LoadModel = d => ModelFolder.Load(d, dev, dt) });
        Console.Error.WriteLine($"asking {dir} the {set.Count} keys of the pool through {host.Name} ...");
        return KeyAnswers.Ask(host, tok, set.Fingerprints, lm.Config.VocabSize);
    }
}
