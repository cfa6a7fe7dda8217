using Oml.Protocol.Crypto;

namespace Oml.Protocol.Core;

internal static partial class Rules
{
    public const int MaxModelIdLength = 200;

    private static ModelRecord ModelOf(ProtocolState s, string modelId) =>
        s.ModelMap.TryGetValue(modelId, out var model) ? model : throw Fail(ProtocolErrorCode.UnknownModel, $"no model '{modelId}'");

    private static ModelRecord OwnedModel(ProtocolState s, string modelId, string actor)
    {
        var model = ModelOf(s, modelId);
        if (model.Owner != actor) throw Fail(ProtocolErrorCode.Unauthorized, $"{actor} does not own model '{modelId}' (owner {model.Owner})");
        return model;
    }

    private static string NonEmpty(Message m, string field)
    {
        string v = m.Str(field);
        if (string.IsNullOrWhiteSpace(v)) throw Fail(ProtocolErrorCode.InvalidRequest, $"{field} must not be empty");
        return v;
    }

    private static Action RegisterModel(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        string id = NonEmpty(m, "modelId");
        if (id.Length > MaxModelIdLength || id.Any(char.IsControl) || id != id.Trim())
            throw Fail(ProtocolErrorCode.InvalidRequest, $"model id must be at most {MaxModelIdLength} characters, without control characters or surrounding spaces");
        if (s.ModelMap.ContainsKey(id)) throw Fail(ProtocolErrorCode.ModelExists, $"model '{id}' is already registered");
        string digest = NonEmpty(m, "weightsDigest");
        long price = m.UInt("pricePerQuery"), minCollateral = m.UInt("minCollateral");
        var record = new ModelRecord
        {
            Id = id, Metadata = m.Str("metadata"), LicenceTerms = m.Str("licenceTerms"),
            PricePerQuery = price, MinCollateral = minCollateral, RegisteredAt = c.Now, Owner = actor,
        };
        record.VersionList.Add(new ModelVersion(digest, "initial", c.Now));
        return () => s.ModelMap[id] = record;
    }

    private static Action AddVersion(ProtocolState s, Message m, RuleContext c)
    {
        var model = OwnedModel(s, m.Str("modelId"), m.Address("actor"));
        var v = new ModelVersion(NonEmpty(m, "weightsDigest"), m.Str("notes"), c.Now);
        return () => model.VersionList.Add(v);
    }

    private static Action DeclareParent(ProtocolState s, SignedAction a, Message m, RuleContext c, byte[]? digest)
    {
        string actor = m.Address("actor");
        var model = OwnedModel(s, m.Str("modelId"), actor);
        var parent = ModelOf(s, m.Str("parentModelId"));
        long share = m.UInt("shareBps");
        if (share < 1 || share > 10_000) throw Fail(ProtocolErrorCode.InvalidFamilyTree, $"share {share} must be in [1, 10000] basis points");
        if (parent.Id == model.Id) throw Fail(ProtocolErrorCode.InvalidFamilyTree, "a model cannot be its own parent");
        if (model.ParentList.Any(p => p.ParentModelId == parent.Id))
            throw Fail(ProtocolErrorCode.InvalidFamilyTree, $"'{parent.Id}' is already a parent of '{model.Id}'");
        long total = model.ParentList.Sum(p => (long)p.ShareBps) + share;
        if (total > 10_000) throw Fail(ProtocolErrorCode.InvalidFamilyTree, $"parent shares of '{model.Id}' would sum to {total} basis points (> 100%)");
        if (IsAncestor(s, model.Id, parent.Id))
            throw Fail(ProtocolErrorCode.InvalidFamilyTree, $"'{model.Id}' is an ancestor of '{parent.Id}': the edge would make a cycle");
        // The parent's owner must consent: a second signature over the same request, unless the actor owns both.
        if (parent.Owner != actor)
        {
            if (a.Signatures.Count != 2)
                throw Fail(ProtocolErrorCode.BadSignature, $"DeclareParent needs the co-signature of '{parent.Id}''s owner {parent.Owner}");
            if (c.VerifySignatures && (!Secp256k1.TryRecover(digest!, a.Signatures[1], out var co) || Hex.Of(co) != parent.Owner))
                throw Fail(ProtocolErrorCode.BadSignature, $"the co-signature is not {parent.Owner}'s (owner of '{parent.Id}')");
        }
        else if (a.Signatures.Count != 1) throw Fail(ProtocolErrorCode.BadSignature, "the actor owns the parent: one signature only");
        var link = new ParentLink(parent.Id, (int)share);
        return () => model.ParentList.Add(link);
    }

    /// <summary>Whether <paramref name="ancestor"/> is reachable from <paramref name="start"/> by parent links (or is it).</summary>
    private static bool IsAncestor(ProtocolState s, string ancestor, string start)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>([start]);
        while (stack.Count > 0)
        {
            var id = stack.Pop();
            if (id == ancestor) return true;
            if (!seen.Add(id)) continue;
            foreach (var p in s.ModelMap[id].ParentList) stack.Push(p.ParentModelId);
        }
        return false;
    }

    private static Action TransferModel(ProtocolState s, Message m)
    {
        string actor = m.Address("actor"), to = m.Address("newOwner");
        var model = OwnedModel(s, m.Str("modelId"), actor);
        if (to == actor) throw Fail(ProtocolErrorCode.InvalidRequest, "the new owner is the current owner");
        // The zero address withdraws a pending offer (as OmlProtocol.transferModel).
        if (to == Hex.ZeroAddress)
        {
            if (model.PendingOwner is null) throw Fail(ProtocolErrorCode.NoPendingTransfer, $"model '{model.Id}' has no transfer pending to withdraw");
            return () => model.PendingOwner = null;
        }
        return () => model.PendingOwner = to;
    }

    private static Action AcceptModel(ProtocolState s, Message m)
    {
        string actor = m.Address("actor");
        var model = ModelOf(s, m.Str("modelId"));
        if (model.PendingOwner != actor) throw Fail(ProtocolErrorCode.NoPendingTransfer, $"model '{model.Id}' has no transfer pending to {actor}");
        return () => { model.Owner = actor; model.PendingOwner = null; };
    }

    // ---- distribution ------------------------------------------------------------------------------------

    private static Action ApplyLicense(ProtocolState s, Message m)
    {
        string actor = m.Address("actor");
        var model = ModelOf(s, m.Str("modelId"));
        if (s.LicenceOf(model.Id, actor) is not null) throw Fail(ProtocolErrorCode.LicenceExists, $"{actor} already holds a licence for '{model.Id}'");
        long collateral = m.UInt("collateral");
        long min = Math.Max(model.MinCollateral, s.Parameters.MinCollateral);
        if (collateral < min || collateral == 0) throw Fail(ProtocolErrorCode.CollateralTooLow, $"collateral {collateral} is below the minimum {Math.Max(min, 1)} for '{model.Id}'");
        long bal = s.AccountOf(actor).Balance;
        if (bal < collateral) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has {bal}, cannot lock {collateral}");
        var licence = new Licence
        {
            ModelId = model.Id, Host = actor, Ordinal = model.HostList.Count, Endpoint = m.Str("endpoint"),
            CollateralPosted = collateral, CollateralLocked = collateral,
        };
        return () =>
        {
            var acc = s.Acc(actor);
            acc.Balance -= collateral;
            acc.Locked += collateral;
            s.LicenceMap[ProtocolState.LicenceKey(model.Id, actor)] = licence;
            model.HostList.Add(actor);
        };
    }

    private static Action DeliverCopy(ProtocolState s, Message m)
    {
        string actor = m.Address("actor"), host = m.Address("host");
        var model = OwnedModel(s, m.Str("modelId"), actor);
        var licence = s.LicenceOf(model.Id, host) ?? throw Fail(ProtocolErrorCode.UnknownLicence, $"{host} holds no licence for '{model.Id}'");
        if (licence.Delivered) throw Fail(ProtocolErrorCode.CopyAlreadyDelivered, $"a copy of '{model.Id}' was already delivered to {host}");
        string root = m.Bytes32("indicesRoot");
        if (root == Hex.Zero32) throw Fail(ProtocolErrorCode.InvalidRequest, "indicesRoot must not be zero");
        long count = m.UInt("fingerprintCount");
        if (count < 1 || count > int.MaxValue) throw Fail(ProtocolErrorCode.InvalidRequest, $"fingerprintCount {count} is out of range");
        string digest = NonEmpty(m, "copyDigest");
        string allocation = m.Str("allocation");
        return () =>
        {
            licence.IndicesRoot = root;
            licence.FingerprintCount = count;
            licence.CopyDigest = digest;
            licence.Allocation = allocation;
        };
    }

    /// <summary>
    /// The host announces the end of its licence. From now on it takes no new permits and may commit usage for the current
    /// (exit) epoch and earlier ones only. Its collateral stays claimable until the end of the exit epoch plus the reveal
    /// and rebut windows (so a prover who caught it in its last epoch can still commit and reveal, and the host still
    /// rebut), and after that while a revealed claim against it is open. Derived from those windows rather than a
    /// parameter of its own, so that governance cannot set a notice shorter than what it must cover.
    /// </summary>
    private static Action AnnounceExit(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        // the licence, not the model, is looked up first (as OmlProtocol does): no licence of an unknown model either
        var licence = s.LicenceOf(m.Str("modelId"), actor) ?? throw Fail(ProtocolErrorCode.UnknownLicence, $"{actor} holds no licence for '{m.Str("modelId")}'");
        var model = ModelOf(s, licence.ModelId);
        if (licence.ExitAnnouncedAt is { } at) throw Fail(ProtocolErrorCode.ExitAlreadyAnnounced, $"{actor} already announced its exit from '{model.Id}' at {at}");
        var p = s.Parameters;
        long epoch = s.EpochAt(c.Now);
        long due = AddChecked(AddChecked(s.EpochEnd(c.Now), p.RevealWindowSeconds), p.RebutWindowSeconds);
        return () =>
        {
            licence.ExitAnnouncedAt = c.Now;
            licence.ExitEpoch = epoch;
            licence.ReleasableAt = due;
        };
    }

    private static Action ReleaseCollateral(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        // the licence, not the model, is looked up first (as OmlProtocol does): no licence of an unknown model either
        var licence = s.LicenceOf(m.Str("modelId"), actor) ?? throw Fail(ProtocolErrorCode.UnknownLicence, $"{actor} holds no licence for '{m.Str("modelId")}'");
        var model = ModelOf(s, licence.ModelId);
        if (!licence.Exiting) throw Fail(ProtocolErrorCode.ExitNotAnnounced, $"{actor} has not announced its exit from '{model.Id}' (announce it first)");
        if (licence.CollateralReleased) throw Fail(ProtocolErrorCode.AlreadyReleased, $"the collateral of {actor}'s licence of '{model.Id}' was already released");
        if (c.Now < licence.ReleasableAt)
            throw Fail(ProtocolErrorCode.ReleaseNotDue, $"the collateral of {actor}'s licence of '{model.Id}' can be released from {licence.ReleasableAt} (now {c.Now})");
        int open = s.ClaimList.Count(x => x.Status == ClaimStatus.Revealed && x.ModelId == model.Id && x.Host == actor);
        if (open > 0) throw Fail(ProtocolErrorCode.OpenClaims, $"{open} revealed claim(s) against {actor}'s licence of '{model.Id}' are open (rebut or settle them first)");
        long amount = licence.CollateralLocked;
        return () =>
        {
            licence.CollateralLocked = 0;
            licence.CollateralReleased = true;
            licence.ReleasedAmount = amount;
            var acc = s.Acc(actor);
            acc.Locked -= amount;
            acc.Withdrawable = checked(acc.Withdrawable + amount);
        };
    }

    private static Action AcknowledgeCopy(ProtocolState s, Message m)
    {
        string actor = m.Address("actor");
        var model = ModelOf(s, m.Str("modelId"));
        var licence = s.LicenceOf(model.Id, actor) ?? throw Fail(ProtocolErrorCode.UnknownLicence, $"{actor} holds no licence for '{model.Id}'");
        if (!licence.Delivered) throw Fail(ProtocolErrorCode.CopyNotDelivered, $"no copy of '{model.Id}' was delivered to {actor}");
        if (licence.Acknowledged) throw Fail(ProtocolErrorCode.InvalidRequest, "the copy was already acknowledged");
        if (m.Str("copyDigest") != licence.CopyDigest)
            throw Fail(ProtocolErrorCode.DigestMismatch, $"the host received {m.Str("copyDigest")}, the owner recorded {licence.CopyDigest}");
        return () => licence.Acknowledged = true;
    }
}
