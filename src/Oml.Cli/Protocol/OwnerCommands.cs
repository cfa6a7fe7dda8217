using System.CommandLine;
using System.Text.Json.Nodes;
using Oml.Fingerprinting;
using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Generation;
using Oml.Models;
using Oml.Models.Tokenizers;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Distribution;
using Oml.Protocol.Tracing;

namespace Oml.Cli.Protocol;

/// <summary><c>oml owner ...</c>: a model owner's actions (and the treasury's mint).</summary>
public static class OwnerCommands
{
    public static Command Create() => new("owner", "Model owner: register models and versions, declare parents, transfer ownership, deliver fingerprinted copies to hosts.")
    {
        Register(), AddVersion(), DeclareParent(), Cosign(), Transfer(), Accept(), Deliver(), Mint(), RoleCommands.Withdraw(),
    };

    private static Option<string> ModelId() => new("--model-id") { Description = "The model's id on the ledger", Required = true };

    /// <summary>The weights digest from --model (sha256 of the safetensors) or --weights-digest.</summary>
    private static (Option<string?> Dir, Option<string?> Digest) WeightsOptions() =>
        (CliOptions.OptionalModel("Model folder whose weights digest is recorded"),
         new Option<string?>("--weights-digest") { Description = "The weights digest to record (instead of --model)" });

    private static string WeightsDigest(ParseResult r, (Option<string?> Dir, Option<string?> Digest) o)
    {
        string? dir = r.GetValue(o.Dir), digest = r.GetValue(o.Digest);
        if ((dir is null) == (digest is null)) throw new UsageException("give exactly one of --model DIR and --weights-digest DIGEST");
        if (dir is null) return digest!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
        return FingerprintGenerator.WeightsDigest(dir);
    }

    public static Command Register()
    {
        var (cmd, o) = ProtocolCli.Command("register", "Register a model: its id, weights digest, price per query and minimum host collateral.");
        var id = ModelId();
        var w = WeightsOptions();
        var price = new Option<long>("--price") { Description = "Price per query (base units), the least fee a permit may carry", Required = true };
        var minCollateral = new Option<long>("--min-collateral") { Description = "Least collateral a host must lock to license the model", DefaultValueFactory = _ => 0 };
        var metadata = new Option<string>("--metadata") { Description = "Metadata (JSON text)", DefaultValueFactory = _ => "{}" };
        var terms = new Option<string>("--terms") { Description = "Licence terms", DefaultValueFactory = _ => "OML-1.0" };
        cmd.Add(id); cmd.Add(w.Dir); cmd.Add(w.Digest); cmd.Add(price); cmd.Add(minCollateral); cmd.Add(metadata); cmd.Add(terms);
        cmd.SetAction(async (r, ct) =>
        {
            if (r.GetValue(price) < 0 || r.GetValue(minCollateral) < 0) throw new UsageException("--price and --min-collateral must not be negative");
            string digest = WeightsDigest(r, w);
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.RegisterModelAsync(key, r.GetValue(id)!, digest, r.GetValue(metadata)!, r.GetValue(terms)!, r.GetValue(price), r.GetValue(minCollateral), ct);
            return s.Report().Add("model", "registered", r.GetValue(id)!).Add("owner", "owner", Hex.Of(key.Address)).Add("weightsDigest", "weights", digest)
                .Money("price", "price/query", r.GetValue(price)).Money("minCollateral", "min collateral", r.GetValue(minCollateral))
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command AddVersion()
    {
        var (cmd, o) = ProtocolCli.Command("add-version", "Record a new version (weights digest) of a model you own.");
        var id = ModelId();
        var w = WeightsOptions();
        var notes = new Option<string>("--notes") { Description = "What changed", DefaultValueFactory = _ => "" };
        cmd.Add(id); cmd.Add(w.Dir); cmd.Add(w.Digest); cmd.Add(notes);
        cmd.SetAction(async (r, ct) =>
        {
            string digest = WeightsDigest(r, w);
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.AddVersionAsync(key, r.GetValue(id)!, digest, r.GetValue(notes)!, ct);
            var model = s.State.Models[r.GetValue(id)!];
            return s.Report().Add("model", "model", model.Id).Add("version", "version", model.Versions.Count).Add("weightsDigest", "weights", digest)
                .Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command DeclareParent()
    {
        var (cmd, o) = ProtocolCli.Command("declare-parent",
            "Declare another model the parent of yours with a revenue share; the parent's owner co-signs the same request (--parent-keystore).");
        var id = ModelId();
        var parent = new Option<string>("--parent") { Description = "The parent model's id", Required = true };
        var share = new Option<int>("--share-bps") { Description = "The parent's share of this model's owner revenue, in basis points (1..10000)", Required = true };
        var parentKeystore = new Option<string?>("--parent-keystore") { Description = "The parent owner's keystore (not needed when you own both models)" };
        var parentPass = new Option<string?>("--parent-passphrase-file") { Description = "File with the parent keystore's passphrase (default: the same passphrase as --keystore)" };
        var requestOut = new Option<string?>("--request-out")
        {
            Description = "Do not submit: write the request signed by you to this file, for the parent's owner to co-sign and submit with `oml owner cosign`",
        };
        cmd.Add(id); cmd.Add(parent); cmd.Add(share); cmd.Add(parentKeystore); cmd.Add(parentPass); cmd.Add(requestOut); cmd.Add(o.Force);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            if (r.GetValue(requestOut) is { } outPath)
            {
                if (r.GetValue(parentKeystore) is not null) throw new UsageException("--request-out is for a co-signature made elsewhere: not with --parent-keystore");
                if (s.OnChain) throw new UsageException("--request-out makes a request for the embedded ledger; on a chain the parent's owner consents with --parent-keystore");
                string me = Hex.Of(key.Address);
                var request = Actions.DeclareParent(me, r.GetValue(id)!, r.GetValue(parent)!, r.GetValue(share), s.State.AccountOf(me).Nonce).Sign(s.State.Domain, key);
                FingerprintIO.WriteTextAtomic(outPath, request.ToJson(s.State.Domain) + "\n", r.GetValue(o.Force));
                return s.Report().Add("model", "model", r.GetValue(id)!).Add("parent", "parent", r.GetValue(parent)!).Add("shareBps", "share (bps)", r.GetValue(share))
                    .Add("request", "request", Path.GetFullPath(outPath)).Add("next", "next", $"the owner of '{r.GetValue(parent)}' runs `oml owner cosign --request {outPath}`")
                    .Print(r.GetValue(o.Json));
            }
            var pk = r.GetValue(parentKeystore) is { } path
                ? ProtocolCli.LoadKey(path, r.GetValue(parentPass) ?? r.GetValue(o.PassphraseFile), "--parent-keystore")
                : null;
            using (pk)
            {
                var ev = await s.Backend.DeclareParentAsync(key, pk ?? key, r.GetValue(id)!, r.GetValue(parent)!, r.GetValue(share), ct);
                return s.Report().Add("model", "model", r.GetValue(id)!).Add("parent", "parent", r.GetValue(parent)!)
                    .Add("shareBps", "share (bps)", r.GetValue(share)).Add("cosigner", "co-signed by", pk is null ? "-" : Hex.Of(pk.Address))
                    .Landed(ev).Print(r.GetValue(o.Json));
            }
        });
        return cmd;
    }

    public static Command Cosign()
    {
        var (cmd, o) = ProtocolCli.Command("cosign",
            "Co-sign a request another account signed (a DeclareParent naming your model as the parent, from `declare-parent --request-out`) and submit it.");
        var request = new Option<string>("--request") { Description = "The signed request file", Required = true };
        cmd.Add(request);
        cmd.SetAction(async (r, ct) =>
        {
            var path = r.GetValue(request)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"no request file at {path}", path);
            var (action, domain) = SignedAction.FromJson(File.ReadAllText(path));
            if (action.Type != Schemas.DeclareParent) throw new ProtocolException(ProtocolErrorCode.InvalidRequest, $"{path} is a {action.Type} request; only DeclareParent takes a co-signature");
            if (action.Signatures.Count != 1) throw new ProtocolException(ProtocolErrorCode.BadSignature, $"{path} carries {action.Signatures.Count} signatures, expected the actor's only");
            using var s = await o.OpenAsync(r, ct);
            if (domain != s.State.Domain) throw new ProtocolException(ProtocolErrorCode.WrongDomain, $"{path} was signed for chain {domain.ChainId}, this ledger is chain {s.State.Domain.ChainId}");
            using var key = o.Key(r);
            var signed = action with { Signatures = [.. action.Signatures, Eip712.Sign(action.TypedData(domain), key)] };
            var ev = s.Engine("oml owner cosign").Submit(signed);
            var m = new Message(action.Message);
            return s.Report().Add("model", "model", m.Str("modelId")).Add("parent", "parent", m.Str("parentModelId")).Add("shareBps", "share (bps)", m.UInt("shareBps"))
                .Add("actor", "declared by", action.Actor).Add("cosigner", "co-signed by", Hex.Of(key.Address)).Add("event", "event", ev.Sequence).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Transfer()
    {
        var (cmd, o) = ProtocolCli.Command("transfer",
            "Offer a model you own to a new owner (who completes it with `oml owner accept`); a new offer replaces a pending one, --cancel withdraws it.");
        var id = ModelId();
        var to = new Option<string?>("--to") { Description = "The new owner's address" };
        var cancel = new Option<bool>("--cancel") { Description = "Withdraw the pending offer instead (the offered account can no longer accept)" };
        cmd.Add(id); cmd.Add(to); cmd.Add(cancel);
        cmd.SetAction(async (r, ct) =>
        {
            bool withdraw = r.GetValue(cancel);
            if (withdraw == (r.GetValue(to) is not null)) throw new UsageException("give either --to ADDRESS (offer the model) or --cancel (withdraw the pending offer)");
            string addr = withdraw ? Hex.ZeroAddress : ProtocolCli.Address(r.GetValue(to)!, "--to");
            if (!withdraw && addr == Hex.ZeroAddress) throw new UsageException("--to: the zero address owns nothing; --cancel withdraws a pending offer");
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.TransferModelAsync(key, r.GetValue(id)!, addr, ct);
            var report = s.Report().Add("model", "model", r.GetValue(id)!);
            report = withdraw ? report.Add("pendingOwner", "offer", (JsonNode?)null, "withdrawn") : report.Add("pendingOwner", "offered to", addr);
            return report.Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Accept()
    {
        var (cmd, o) = ProtocolCli.Command("accept", "Accept a model transferred to you.");
        var id = ModelId();
        cmd.Add(id);
        cmd.SetAction(async (r, ct) =>
        {
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.AcceptModelAsync(key, r.GetValue(id)!, ct);
            return s.Report().Add("model", "model", r.GetValue(id)!).Add("owner", "new owner", Hex.Of(key.Address)).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Deliver()
    {
        var (cmd, o) = ProtocolCli.Command("deliver",
            "OMLize a licensed host's copy: allocate its fingerprints from the pool, optionally embed them into the base model (--base, --out), and record the delivery.");
        var id = ModelId();
        var host = new Option<string>("--host") { Description = "The licensed host's address", Required = true };
        var pool = new Option<string>("--pool") { Description = "The model's fingerprint pool (an encrypted fingerprint-set file; same passphrase)", Required = true };
        var allocation = new Option<string>("--allocation") { Description = "How the pool is shared out: random:K (K fingerprints per copy) or tardos:CUTOFF", Required = true };
        var secretFile = new Option<string?>("--secret-file") { Description = "The owner's secret (seeds the allocation); default: the one the pool file keeps" };
        var subsetOut = new Option<string?>("--subset-out") { Description = "Write the host's fingerprint subset (encrypted, same passphrase) here, for audits" };
        var baseModel = CliOptions.Base("Base model folder to embed the host's fingerprints into");
        var outDir = CliOptions.OptionalOut("Folder for the host's fingerprinted copy (with --base)");
        var copyDigest = new Option<string?>("--copy-digest") { Description = "Without --base: the digest of a copy built elsewhere" };
        // The embedding defaults are those of `oml embed`: OmlizationDefaults is their one home.
        var lr = new Option<double?>("--lr") { Description = FormattableString.Invariant($"Embedding: AdamW learning rate (default: {OmlizationDefaults.LearningRateTimesWidth} / hidden_size, within [1e-5, 1e-2])") };
        var epochs = new Option<int>("--epochs") { Description = "Embedding: most passes over the fingerprints", DefaultValueFactory = _ => OmlizationDefaults.MaxEpochs };
        var lambda = new Option<double>("--averaging-lambda")
        {
            Description = "Embedding: the largest λ of the merge back towards the base after training (0 disables it)",
            DefaultValueFactory = _ => OmlizationDefaults.AveragingLambda,
        };
        var mix = new Option<double>("--mix-fraction") { Description = "Embedding: benign data mixing β", DefaultValueFactory = _ => OmlizationDefaults.MixFraction };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        foreach (var x in new Option[] { id, host, pool, allocation, secretFile, subsetOut, baseModel, outDir, copyDigest, lr, epochs, lambda, mix, device, dtype }) cmd.Add(x);
        cmd.SetAction(async (r, ct) =>
        {
            string hostAddr = ProtocolCli.Address(r.GetValue(host)!, "--host");
            string? baseDir = r.GetValue(baseModel), copyDir = r.GetValue(outDir), given = r.GetValue(copyDigest);
            if ((baseDir is null) != (copyDir is null)) throw new UsageException("--base and --out go together");
            if (baseDir is not null && given is not null) throw new UsageException("--copy-digest is for copies built elsewhere: not with --base");
            if (baseDir is not null && !File.Exists(Path.Combine(baseDir, "tokenizer.json"))) throw new InvalidDataException($"{baseDir} has no tokenizer.json");
            var passphrase = FingerprintIO.RequirePassphrase(r.GetValue(o.PassphraseFile), "deliver reads the encrypted pool");
            var set = FingerprintIO.ReadSet(r.GetValue(pool)!, r.GetValue(o.PassphraseFile));
            string modelId = r.GetValue(id)!;
            var alloc = Cli.OptionValue(() => AllocationSpec.Parse(r.GetValue(allocation)!, AllocationSpec.Secret(FingerprintIO.OwnerSecret(r.GetValue(secretFile), r.GetValue(pool)!, passphrase), modelId), set.Count));
            var options = baseDir is null ? new EmbeddingOptions()
                : OmlizationDefaults.For(ModelConfig.Load(Path.Combine(baseDir, "config.json"))) with { MaxEpochs = r.GetValue(epochs), AveragingLambda = r.GetValue(lambda), MixFraction = r.GetValue(mix) };
            if (r.GetValue(lr) is { } givenLr) options = options with { LearningRate = givenLr };
            Cli.OptionValue(options.Validate);
            var dev = Cli.ParseDevice(r.GetValue(device)!);
            var dt = Cli.ParseDType(r.GetValue(dtype));
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            if (!s.State.Models.TryGetValue(modelId, out var model)) throw new ProtocolException(ProtocolErrorCode.UnknownModel, $"no model '{modelId}'");
            if (model.Owner != Hex.Of(key.Address)) throw new ProtocolException(ProtocolErrorCode.Unauthorized, $"{Hex.Of(key.Address)} does not own '{modelId}' (owner {model.Owner})");
            if (s.State.LicenceOf(modelId, hostAddr) is { Delivered: true }) throw new ProtocolException(ProtocolErrorCode.CopyAlreadyDelivered, $"a copy of '{modelId}' was already delivered to {hostAddr}");
            EmbeddingResult? embedded = null;
            var copy = await new Omlizer(set, alloc).BuildCopyAsync(s.State, modelId, hostAddr, (subset, _) =>
            {
                if (baseDir is null) return Task.FromResult(given ?? "fingerprints:" + subset.Commit().SetDigest);
                var tok = Cli.LoadTokenizer(baseDir);
                using var lm = ModelFolder.Load(baseDir, dev, dt);
                var pairs = FingerprintGenerator.TrainingPairs(subset.Fingerprints, tok);
                embedded = EmbedCommand.Run(lm, baseDir, copyDir!, subset, pairs, options,
                    new OmlizationLabels { FingerprintSource = $"{modelId} copy for {hostAddr}", Benign = "self-generated", Device = dev.ToString() }, null);
                return Task.FromResult(FingerprintGenerator.WeightsDigest(copyDir!));
            }, ct);
            if (r.GetValue(subsetOut) is { } so)
            {
                var header = FingerprintSetFile.ReadHeader(r.GetValue(pool)!);
                FingerprintSetFile.Write(so, copy.Subset, passphrase, new FingerprintFileOptions { Pbkdf2Iterations = header.Pbkdf2Iterations });
            }
            var ev = await s.Backend.DeliverCopyAsync(key, copy with { AllocationScheme = r.GetValue(allocation)! }, ct);
            var rep = s.Report().Add("model", "model", modelId).Add("host", "host", hostAddr).Add("ordinal", "host ordinal", copy.HostOrdinal)
                .Add("fingerprints", "fingerprints", copy.Commitment.Count).Add("poolIndices", "pool indices", new JsonArray([.. copy.PoolIndices.Select(i => JsonValue.Create(i))]), string.Join(",", copy.PoolIndices))
                .Add("indicesRoot", "commitment root", "0x" + copy.Commitment.Root).Add("copyDigest", "copy digest", copy.CopyDigest);
            if (embedded is not null)
                rep.Add("copy", "copy", Path.GetFullPath(copyDir!)).Add("recall", "recall", JsonValue.Create(embedded.Accuracy), $"{embedded.Accuracy:P0} after {embedded.Final.Epoch} epochs");
            if (r.GetValue(subsetOut) is { } sub) rep.Add("subset", "subset file", Path.GetFullPath(sub));
            return rep.Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }

    public static Command Mint()
    {
        var (cmd, o) = ProtocolCli.Command("mint", "Treasury only: create units of the embedded ledger's currency in an account.");
        var to = new Option<string>("--to") { Description = "The receiving address", Required = true };
        var amount = new Option<long>("--amount") { Description = "Base units to create", Required = true };
        cmd.Add(to); cmd.Add(amount);
        cmd.SetAction(async (r, ct) =>
        {
            string addr = ProtocolCli.Address(r.GetValue(to)!, "--to");
            using var s = await o.OpenAsync(r, ct);
            using var key = o.Key(r);
            var ev = await s.Backend.MintAsync(key, addr, r.GetValue(amount), ct);
            return s.Report().Add("to", "minted to", addr).Money("amount", "amount", r.GetValue(amount))
                .Money("balance", "balance now", s.State.AccountOf(addr).Balance).Landed(ev).Print(r.GetValue(o.Json));
        });
        return cmd;
    }
}
