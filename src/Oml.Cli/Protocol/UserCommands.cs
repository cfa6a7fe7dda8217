using Oml.Models.IO;
using System.CommandLine;
using Oml.Fingerprinting.Endpoints;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Hosting;

namespace Oml.Cli.Protocol;

/// <summary><c>oml user ...</c>: an end user's escrow per host, permits, and queries to a host.</summary>
public static class UserCommands
{
    public static Command Create() => new("user", "End user: escrow funds with a host, sign permits, send queries with permits to a host, take escrow back.")
    {
        Deposit(), Permit(), Ask(), RequestRefund(), Refund(),
    };

    private static Option<string> HostOption(string description) => new("--host") { Description = description, Required = true };

    public static Command Deposit()
    {
        var (cmd, o) = ProtocolCli.Command("deposit",
            "Escrow funds from your balance with one host: only that host's settled permits are paid from it, so the host can check before serving that they will be.");
        var host = HostOption("The host's address");
        var amount = new Option<long>("--amount") { Description = "Base units to escrow", Required = true };
        cmd.Add(host); cmd.Add(amount);
        cmd.SetAction(async (r, ct) =>
        {
            string h = ProtocolCli.Address(r.GetValue(host)!, "--host");
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.DepositAsync(key, h, r.GetValue(amount), ct);
            string me = Hex.Of(key.Address);
            var acc = s.State.AccountOf(me);
            return s.Report().Add("account", "account", me).Add("host", "host", h).Money("deposited", "deposited", r.GetValue(amount))
                .Money("escrow", "escrow with host", s.State.EscrowOf(me, h).Amount).Money("balance", "balance", acc.Balance).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command RequestRefund()
    {
        var (cmd, o) = ProtocolCli.Command("request-refund",
            "Ask for your escrow with a host back: the host stops accepting your new permits, and `oml user refund` returns what is left after RefundDelaySeconds.");
        var host = HostOption("The host's address");
        cmd.Add(host);
        cmd.SetAction(async (r, ct) =>
        {
            string h = ProtocolCli.Address(r.GetValue(host)!, "--host");
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.RequestRefundAsync(key, h, ct);
            var e = s.State.EscrowOf(Hex.Of(key.Address), h);
            long due = e.RefundRequestedAt!.Value + s.State.Parameters.RefundDelaySeconds;
            return s.Report().Add("host", "host", h).Money("escrow", "escrow", e.Amount).Add("refundableFrom", "refundable from", JsonValueOf(due), ProtocolCli.Time(due))
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Refund()
    {
        var (cmd, o) = ProtocolCli.Command("refund", "Take back what is left of your escrow with a host, RefundDelaySeconds after `oml user request-refund`.");
        var host = HostOption("The host's address");
        cmd.Add(host);
        cmd.SetAction(async (r, ct) =>
        {
            string h = ProtocolCli.Address(r.GetValue(host)!, "--host");
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            string me = Hex.Of(key.Address);
            long amount = s.State.EscrowOf(me, h).Amount;
            var ev = await s.Backend.RefundAsync(key, h, ct);
            return s.Report().Add("host", "host", h).Money("refunded", "refunded", amount).Money("balance", "balance now", s.State.AccountOf(me).Balance)
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    /// <summary>The permit options shared by <c>permit</c> and <c>ask</c>.</summary>
    private sealed class PermitOptions
    {
        public Option<string?> ModelId { get; } = new("--model-id") { Description = "The model" };
        public Option<string?> Host { get; } = new("--host") { Description = "The host's address" };
        public Option<long?> Fee { get; } = new("--fee") { Description = "The fee you promise (default: the model's price)" };
        public Option<long> Expiry { get; } = new("--expiry-seconds") { Description = "How long the permit can be settled (ledger seconds from now)", DefaultValueFactory = _ => 2 * 86_400 };
        public Option<long?> Nonce { get; } = new("--nonce") { Description = "The permit nonce (default: random; each can be settled once)" };

        public void AddTo(Command c) { c.Add(ModelId); c.Add(Host); c.Add(Fee); c.Add(Expiry); c.Add(Nonce); }

        public SignedPermit Make(ParseResult r, Session s, Oml.Protocol.Crypto.PrivateKey key, string query)
        {
            string model = r.GetValue(ModelId) ?? throw new UsageException("--model-id is required to make a permit");
            string host = ProtocolCli.Address(r.GetValue(Host) ?? throw new UsageException("--host is required to make a permit"), "--host");
            if (!s.State.Models.TryGetValue(model, out var m)) throw new ProtocolException(ProtocolErrorCode.UnknownModel, $"no model '{model}'");
            long fee = r.GetValue(Fee) ?? m.PricePerQuery;
            long expirySeconds = r.GetValue(Expiry);
            if (fee < 0 || expirySeconds < 0) throw new UsageException("--fee and --expiry-seconds must not be negative");
            long nonce = r.GetValue(Nonce) ?? ProtocolCli.RandomNonce();
            if (nonce < 0) throw new UsageException("--nonce must not be negative");
            var permit = new Permit(Hex.Of(key.Address), model, host, Hex.KeccakText(query), nonce, s.Now + expirySeconds, fee);
            return permit.Sign(s.State.Domain, key);
        }
    }

    public static Command Permit()
    {
        var (cmd, o) = ProtocolCli.Command("permit", "Sign a permit for one query (and a promise to pay its fee from your deposit); prints it as JSON.");
        var po = new PermitOptions();
        po.ModelId.Required = true;
        po.Host.Required = true;
        var query = new Option<string>("--query") { Description = "The exact query text the permit is for", Required = true };
        var output = new Option<string?>("--out") { Description = "Also write the permit JSON to this file" };
        po.AddTo(cmd); cmd.Add(query); cmd.Add(output); cmd.Add(o.Force);
        cmd.SetAction(async (r, ct) =>
        {
            if (r.GetValue(output) is { } outPath) AtomicFile.CheckWritable(outPath, r.GetValue(o.Force));
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var permit = po.Make(r, s, key, r.GetValue(query)!);
            if (r.GetValue(output) is { } path) FingerprintIO.WriteTextAtomic(path, permit.ToJson() + "\n", r.GetValue(o.Force));
            if (r.GetValue(o.Json))
            {
                Console.WriteLine(permit.ToJson());
                return Cli.Ok;
            }
            var p = permit.Permit;
            return s.Report().Add("user", "user", p.User).Add("model", "model", p.ModelId).Add("host", "host", p.Host).Add("queryHash", "query hash", p.QueryHash)
                .Add("nonce", "nonce", p.Nonce.ToString()).Add("expiry", "expires", ProtocolCli.Time(p.Expiry)).Add("fee", "fee", p.Fee)
                .Add("hash", "permit hash", p.Hash(s.State.Domain)).Line(permit.ToJson()).Print(false);
        });
        return cmd;
    }

    public static Command Ask()
    {
        var (cmd, o) = ProtocolCli.Command("ask",
            $"Send a query to a host endpoint with a permit (made here, or --permit FILE) in the \"{HostHttp.PermitField}\" field; prints the answer and checks the host's receipt.");
        var endpoint = new Option<string>("--endpoint") { Description = "The host's API base URL, e.g. http://127.0.0.1:8000/v1/", Required = true };
        var query = new Option<string>("--query") { Description = "The query text", Required = true };
        var permitFile = new Option<string?>("--permit") { Description = "A permit file from `oml user permit` (default: sign a new one)" };
        var maxTokens = CliOptions.MaxNewTokens("Tokens to generate", 16);
        var po = new PermitOptions();
        cmd.Add(endpoint); cmd.Add(query); cmd.Add(permitFile); cmd.Add(maxTokens); po.AddTo(cmd);
        cmd.SetAction(async (r, ct) =>
        {
            if (!Uri.TryCreate(r.GetValue(endpoint), UriKind.Absolute, out var url)) throw new UsageException($"--endpoint: '{r.GetValue(endpoint)}' is not an absolute URL");
            if (r.GetValue(maxTokens) < 1) throw new UsageException("--max-new-tokens must be at least 1");
            string q = r.GetValue(query)!;
            using var s = await o.OpenAsync(r, ct);
            SignedPermit permit;
            if (r.GetValue(permitFile) is { } pf)
            {
                if (!File.Exists(pf)) throw new FileNotFoundException($"no permit file at {pf}", pf);
                permit = SignedPermit.FromJson(File.ReadAllText(pf));
            }
            else
            {
                using var key = o.Key(r);
                permit = po.Make(r, s, key, q);
            }
            using var host = new HttpHostEndpoint(url, new CompletionSettings(MaxTokens: r.GetValue(maxTokens)));
            var answer = await host.AskAsync(q, permit, ct);
            var rc = answer.Receipt.Receipt;
            bool valid = answer.Receipt.Verify(s.State.Domain) && rc.QueryHash == Hex.KeccakText(q) && rc.ResponseHash == Hex.KeccakText(answer.Text)
                && rc.PermitHash == permit.Permit.Hash(s.State.Domain);
            s.Report().Add("answer", "answer", answer.Text).Add("host", "receipt host", rc.Host).Add("permitHash", "receipt permit", rc.PermitHash)
                .Add("receiptValid", "receipt", JsonValueOf(valid), valid ? "valid (signed by the host, names this query, answer and permit)" : "INVALID")
                .Print(r.GetValue(o.Json));
            if (!valid) Console.Error.WriteLine("oml: error: the host's receipt does not match its answer, this query and permit, or is not signed by the host");
            return valid ? Cli.Ok : Cli.Failure;
        });
        return cmd;
    }

    private static System.Text.Json.Nodes.JsonNode JsonValueOf(bool b) => System.Text.Json.Nodes.JsonValue.Create(b);

    private static System.Text.Json.Nodes.JsonNode JsonValueOf(long v) => System.Text.Json.Nodes.JsonValue.Create(v);
}
