using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Oml.Fingerprinting.Endpoints;
using Oml.Fingerprinting.Generation;
using Oml.Models;
using Oml.Models.Tokenizers;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Hosting;
using Oml.Server;

namespace Oml.Cli.Protocol;

/// <summary><c>oml host ...</c>: a licensed host's actions, and its permit-checking server.</summary>
public static class HostCommands
{
    /// <summary>
    /// Cancelling this token stops every <c>oml host serve</c> started in this process while it was set (for callers that
    /// run the CLI in-process, such as tests; a server started from a shell stops on Ctrl-C or SIGTERM).
    /// </summary>
    public static CancellationToken ServeStopForTests { get; set; } = CancellationToken.None;

    public static Command Create() => new("host", "Host: license a model, acknowledge the copy, serve it with permits and receipts, commit usage, rebut claims.")
    {
        Apply(), Acknowledge(), Serve(), CommitUsage(), Rebut(), RoleCommands.Withdraw(),
        Exit(), Release(),
    };

    private static Option<string> ModelId() => new("--model-id") { Description = "The model's id on the ledger", Required = true };

    private static Option<string> Receipts() => new("--receipts") { Description = "The host's receipt folder (served.jsonl and the committed usage books)", Required = true };

    public static Command Apply()
    {
        var (cmd, o) = ProtocolCli.Command("apply", "Apply for a licence: lock collateral from your balance and name the endpoint you will serve at.");
        var id = ModelId();
        var collateral = new Option<long>("--collateral") { Description = "Collateral to lock (at least the model's and the protocol's minimum)", Required = true };
        var endpoint = new Option<string>("--endpoint") { Description = "The URL you will serve the model at", Required = true };
        cmd.Add(id); cmd.Add(collateral); cmd.Add(endpoint);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.ApplyLicenseAsync(key, r.GetValue(id)!, r.GetValue(collateral), r.GetValue(endpoint)!, ct);
            var lic = s.State.LicenceOf(r.GetValue(id)!, Hex.Of(key.Address))!;
            return s.Report().Add("model", "model", lic.ModelId).Add("host", "host", lic.Host).Add("ordinal", "host ordinal", lic.Ordinal)
                .Money("collateral", "collateral", lic.CollateralPosted).Add("endpoint", "endpoint", lic.Endpoint).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Acknowledge()
    {
        var (cmd, o) = ProtocolCli.Command("acknowledge", "Acknowledge the copy you received: sign its weights digest (it must equal the one the owner recorded).");
        var id = ModelId();
        var dir = CliOptions.OptionalModel("The copy's folder (its weights digest is computed)");
        var digest = new Option<string?>("--copy-digest") { Description = "The copy's digest (instead of --model)" };
        cmd.Add(id); cmd.Add(dir); cmd.Add(digest);
        cmd.SetAction(async (r, ct) =>
        {
            string? d = r.GetValue(dir), g = r.GetValue(digest);
            if ((d is null) == (g is null)) throw new UsageException("give exactly one of --model DIR and --copy-digest DIGEST");
            if (d is not null && !Directory.Exists(d)) throw new DirectoryNotFoundException($"model folder not found: {d}");
            string value = g ?? FingerprintGenerator.WeightsDigest(d!);
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.AcknowledgeCopyAsync(key, r.GetValue(id)!, value, ct);
            return s.Report().Add("model", "model", r.GetValue(id)!).Add("host", "host", Hex.Of(key.Address)).Add("copyDigest", "copy digest", value)
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Serve()
    {
        var o = new ProtocolCli();
        o.Keystore.Required = false;
        var id = new Option<string?>("--model-id") { Description = "The licensed model's id" };
        var dir = CliOptions.Model("The model folder to answer with (your fingerprinted copy)");
        var receipts = new Option<string?>("--receipts") { Description = "Receipt folder: every accepted permit and answered query is stored here for `oml host commit-usage` (required unless --no-permits)" };
        var seenPermits = new Option<string?>("--seen-permits")
        {
            Description = "The file of accepted permits (replays, and what each user's escrow already covers); default: seen-permits.jsonl in --receipts. "
                + "A user's escrow with you pays for every model you serve: give all your servers one file",
        };
        var margin = new Option<long>("--settle-margin") { Description = "Seconds after the end of the current epoch a permit must stay valid (the time you give yourself to commit the epoch)", DefaultValueFactory = _ => 3_600 };
        var serve = new ServeOptions();
        var noPermits = new Option<bool>("--no-permits") { Description = "Answer without checking permits; receipts then name no permit (a dishonest host)" };
        var plain = new Option<bool>("--plain") { Description = "A plain OpenAI-compatible server: no permits, no receipts, no ledger or keystore (what a leaked copy looks like)" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("serve",
            "Serve your copy as an OpenAI-compatible API on 127.0.0.1 (as `oml serve`: /v1/completions, /v1/chat/completions, /v1/models, /metrics; "
            + "continuous batching). Each request needs a signed permit in the "
            + $"body field \"{HostHttp.PermitField}\" (else HTTP {HostHttp.RefusedStatus}); each answer carries a signed receipt in the {HostHttp.ReceiptHeader} header "
            + "(base64 JSON; in a stream, the last event's field oml_receipt). Runs until Ctrl-C or SIGTERM.")
        {
            o.Ledger, o.Chain, o.Deployment, o.Keystore, o.PassphraseFile, id, dir, receipts, seenPermits, margin, noPermits, plain, device, dtype,
        };
        o.ValidateBackendOn(cmd, optional: true);
        serve.Port.DefaultValueFactory = _ => 0;
        serve.AddTo(cmd);
        cmd.SetAction(async (r, ct) =>
        {
            string modelDir = r.GetValue(dir)!;
            if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
            bool isPlain = r.GetValue(plain);
            bool onProtocol = r.GetValue(o.Ledger) is not null || r.GetValue(o.Chain) is not null;
            if (!isPlain && (!onProtocol || r.GetValue(o.Keystore) is null || r.GetValue(id) is null))
                throw new UsageException("serve needs --ledger FILE or --chain URL, --keystore and --model-id (or --plain for a server without the protocol)");
            if (isPlain && onProtocol) throw new UsageException("--plain serves without the protocol: drop --ledger/--chain");
            if (isPlain && (r.GetValue(noPermits) || r.GetValue(receipts) is not null || r.GetValue(seenPermits) is not null))
                throw new UsageException("--plain serves without permits or receipts: drop --no-permits, --receipts and --seen-permits");
            if (!isPlain && !r.GetValue(noPermits) && r.GetValue(receipts) is null)
                throw new UsageException("serving with permits needs --receipts DIR: the accepted permits (so none is served twice) and the receipts to commit are kept there");
            if (r.GetValue(margin) < 0) throw new UsageException("--settle-margin must not be negative");
            // The copy answers a key as the fingerprint pipeline asks it: the prompt's tokens as they are (no bos) and no
            // stop at eos, unless a request says otherwise (add_special_tokens, ignore_eos).
            if (!isPlain && r.GetValue(serve.ServedModelName) is { } name && name != r.GetValue(id))
                throw new UsageException($"--served-model-name: a protocol host serves its model under the model id ('{r.GetValue(id)}'), which permits and clients name");
            var options = serve.Server(r, modelDir, isPlain ? null : r.GetValue(id)) with { AddSpecialTokens = false, IgnoreEos = true };
            using var backend = serve.Load(r, modelDir, options, Cli.ParseDevice(r.GetValue(device)!), Cli.ParseDType(r.GetValue(dtype)));
            if (isPlain)
                return RunUntilStopped(c => OpenAiCompatibleServer.StartAsync(backend, r.GetValue(serve.Port), options, null, c), x => x.BaseUrl, "plain (no permits, no receipts)", r.GetValue(serve.UrlFile));
            return await ServeProtocol(r, o, r.GetValue(id)!, backend, options, r.GetValue(receipts), r.GetValue(seenPermits), r.GetValue(serve.Port), r.GetValue(noPermits), r.GetValue(serve.UrlFile), r.GetValue(margin), ct);
        });
        return cmd;
    }

    private static async Task<int> ServeProtocol(ParseResult r, ProtocolCli o, string modelId, ICompletionBackend backend, OpenAiServerOptions options,
        string? receipts, string? seenPermits, int port, bool noPermits, string? urlFile, long settleMargin, CancellationToken ct)
    {
        using var key = o.Key(r);
        // The session stays open while serving: the permit gate checks every permit against the protocol's current state
        // (the ledger's, or the chain's, caught up before each check).
        using var s = await o.OpenAsync(r, ct);
        var domain = s.State.Domain;
        var lic = s.State.LicenceOf(modelId, Hex.Of(key.Address))
            ?? throw new ProtocolException(ProtocolErrorCode.UnknownLicence, $"{Hex.Of(key.Address)} holds no licence for '{modelId}'");
        if (!lic.Acknowledged) Console.Error.WriteLine($"oml: warning: the copy of '{modelId}' is not acknowledged yet: usage cannot be committed until it is");
        var store = receipts is null ? null : new UsageStore(receipts, domain, modelId);
        if (store is null) Console.Error.WriteLine("oml: warning: no --receipts folder: answered queries are not stored, so usage cannot be committed");
        var policy = noPermits ? PermitPolicy.Ignore : PermitPolicy.Require;
        if (!noPermits && seenPermits is null
            && s.State.Licences.Values.FirstOrDefault(l => l.Host == Hex.Of(key.Address) && l.ModelId != modelId) is { } other)
            Console.Error.WriteLine($"oml: warning: this host also licenses '{other.ModelId}': a user's escrow pays for all its models, so serve them all "
                + "with one --seen-permits FILE, or each server may accept permits the escrow cannot cover together");
        var seen = noPermits ? null : seenPermits is null ? new SeenPermitStore(receipts!) : SeenPermitStore.OpenFile(seenPermits);
        var gate = seen is null ? null : new PermitGate(PermitGate.ForBackend(s.Backend), Hex.Of(key.Address), modelId, seen, settleMargin);
        return RunUntilStopped(c => ProtocolHostServer.StartAsync(key, domain, modelId, backend, store, policy, port, options, gate: gate, ct: c), x => x.BaseUrl,
            $"host {Hex.Of(key.Address)}, model '{modelId}', {(noPermits ? "NOT checking permits" : "permits required")}, on {s.Backend.Description}", urlFile);
    }

    internal static int RunUntilStopped<T>(Func<CancellationToken, Task<T>> start, Func<T, Uri> url, string what, string? urlFile) where T : IAsyncDisposable
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ServeStopForTests);
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        try
        {
            var server = start(CancellationToken.None).GetAwaiter().GetResult();
            try
            {
                Console.WriteLine($"serving {url(server)} ({what}); Ctrl-C to stop");
                if (urlFile is not null) FingerprintIO.WriteTextAtomic(urlFile, url(server) + "\n", overwrite: true);
                try { Task.Delay(Timeout.Infinite, stop.Token).GetAwaiter().GetResult(); }
                catch (OperationCanceledException) { }
                Console.WriteLine("stopped");
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return Cli.Ok;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    public static Command CommitUsage()
    {
        var (cmd, o) = ProtocolCli.Command("commit-usage", "Commit the receipts served since the last commit as one epoch's usage: settles their permits and splits the fees.");
        var id = ModelId();
        var receipts = Receipts();
        var epoch = new Option<long?>("--epoch") { Description = "The epoch to commit (default: the current one)" };
        cmd.Add(id); cmd.Add(receipts); cmd.Add(epoch);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            string me = Hex.Of(key.Address);
            long e = r.GetValue(epoch) ?? s.State.EpochAt(s.Now);
            string modelId = r.GetValue(id)!;
            var store = new UsageStore(r.GetValue(receipts)!, s.State.Domain, modelId);
            long before = s.State.AccountOf(me).Withdrawable;
            ActionReceipt? landed = null;
            var result = store.CommitEpoch(e, x => { s.Backend.RefreshAsync(ct).GetAwaiter().GetResult(); return s.State.Usage.GetValueOrDefault(ProtocolState.UsageKey(modelId, me, x)); },
                b => landed = s.Backend.CommitUsageAsync(key, b, ct).GetAwaiter().GetResult());
            foreach (var d in result.DamagedLines) Console.Error.WriteLine($"oml: warning: skipped a damaged receipt line: {d}");
            var usage = s.State.Usage[ProtocolState.UsageKey(modelId, me, e)];
            var rep = s.Report().Add("model", "model", usage.ModelId).Add("epoch", "epoch", e).Add("receipts", "receipts", usage.ReceiptCount)
                .Add("permits", "permits settled", usage.PermitCount).Money("fees", "fees charged", usage.FeesSettled)
                .Money("hostShare", "host's share", s.State.AccountOf(me).Withdrawable - before).Add("receiptsRoot", "receipts root", usage.ReceiptsRoot)
                .Add("skipped", "permits skipped", usage.Skipped.Count)
                .Add("resumed", "finished an interrupted commit", JsonValue.Create(!result.Submitted), result.Submitted ? "no" : $"yes (it was already on the {s.Backend.Kind})")
                .Json("skippedPermits", new JsonArray([.. usage.Skipped.Select(k => (JsonNode)new JsonObject { ["permitHash"] = k.PermitHash, ["reason"] = k.Reason.ToString(), ["detail"] = k.Detail })]))
                .Json("damagedLines", new JsonArray([.. result.DamagedLines.Select(d => (JsonNode)JsonValue.Create(d))]));
            if (landed is not null) rep.Landed(landed);
            foreach (var k in usage.Skipped) rep.Line($"  skipped {k.PermitHash}: {k.Reason}: {k.Detail}");
            return rep.Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Rebut()
    {
        var (cmd, o) = ProtocolCli.Command("rebut", "Answer a claim against you: show each claimed receipt's settled permit and its proof in a committed usage book.");
        var claim = new Option<long>("--claim") { Description = "The claim id", Required = true };
        var receipts = Receipts();
        cmd.Add(claim); cmd.Add(receipts);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            long id = r.GetValue(claim);
            if (id < 0 || id >= s.State.Claims.Count) throw new ProtocolException(ProtocolErrorCode.UnknownClaim, $"no claim {id}");
            var c = s.State.Claims[(int)id];
            if (c.ModelId is null) throw new ProtocolException(ProtocolErrorCode.ClaimState, $"claim {id} is {c.Status}: nothing revealed to rebut");
            var rebuttal = new UsageStore(r.GetValue(receipts)!, s.State.Domain, c.ModelId).BuildRebuttal(c);
            var ev = await s.Backend.RebutAsync(key, id, rebuttal, ct);
            return s.Report().Add("claim", "claim", id).Add("status", "status", s.State.Claims[(int)id].Status.ToString())
                .Add("items", "items answered", rebuttal.Items.Count).Money("bondWon", "bond won", c.Bond).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    // ---- the end of a licence: announce the exit, then release the collateral after the notice -------------

    public static Command Exit()
    {
        var (cmd, o) = ProtocolCli.Command("exit",
            "Announce the end of your licence: you take no new permits, may commit usage up to the current epoch, and can release your collateral "
            + "(`oml host release`) after the notice: the end of this epoch plus the claim reveal and rebut windows.");
        var id = ModelId();
        cmd.Add(id);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.AnnounceExitAsync(key, r.GetValue(id)!, ct);
            var lic = s.State.LicenceOf(r.GetValue(id)!, Hex.Of(key.Address))!;
            return s.Report().Add("model", "model", lic.ModelId).Add("host", "host", lic.Host).Add("exitEpoch", "last usage epoch", lic.ExitEpoch)
                .Money("collateral", "collateral locked", lic.CollateralLocked)
                .Add("releasableAt", "releasable from", JsonValue.Create(lic.ReleasableAt), ProtocolCli.Time(lic.ReleasableAt))
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Release()
    {
        var (cmd, o) = ProtocolCli.Command("release",
            "After the exit notice, with no revealed claim open against you, move what is left of your collateral to your withdrawable credits "
            + "(`oml host withdraw` pays them out).");
        var id = ModelId();
        cmd.Add(id);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.ReleaseCollateralAsync(key, r.GetValue(id)!, ct);
            var lic = s.State.LicenceOf(r.GetValue(id)!, Hex.Of(key.Address))!;
            return s.Report().Add("model", "model", lic.ModelId).Add("host", "host", lic.Host)
                .Money("posted", "collateral posted", lic.CollateralPosted).Money("slashed", "slashed", lic.CollateralPosted - lic.ReleasedAmount)
                .Money("released", "released", lic.ReleasedAmount).Money("withdrawable", "withdrawable now", s.State.AccountOf(lic.Host).Withdrawable)
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }
}
