using System.Text.Json.Nodes;
using Oml.Protocol.Access;

namespace Oml.Protocol.Core;

internal static partial class Rules
{
    private static Action CommitUsage(ProtocolState s, SignedAction a, Message m, RuleContext c)
    {
        string host = m.Address("actor");
        var model = ModelOf(s, m.Str("modelId"));
        var licence = s.LicenceOf(model.Id, host) ?? throw Fail(ProtocolErrorCode.UnknownLicence, $"{host} holds no licence for '{model.Id}'");
        if (!licence.Acknowledged) throw Fail(ProtocolErrorCode.CopyNotAcknowledged, $"{host} has not acknowledged its copy of '{model.Id}'");
        long epoch = m.UInt("epoch");
        long current = s.EpochAt(c.Now);
        if (epoch > current) throw Fail(ProtocolErrorCode.EpochInvalid, $"epoch {epoch} has not started (current epoch {current})");
        if (licence.Exiting && epoch > licence.ExitEpoch)
            throw Fail(ProtocolErrorCode.UsageAfterExit, $"{host} announced its exit from '{model.Id}' in epoch {licence.ExitEpoch}; it commits no usage for epoch {epoch}");
        string key = ProtocolState.UsageKey(model.Id, host, epoch);
        if (s.UsageMap.ContainsKey(key)) throw Fail(ProtocolErrorCode.UsageAlreadyCommitted, $"{host} already committed usage of '{model.Id}' for epoch {epoch}");

        if (Json.Parse(a.Attachments["permits"], ProtocolErrorCode.InvalidPermit) is not JsonArray arr)
            throw Fail(ProtocolErrorCode.InvalidPermit, "the permits attachment must be a JSON array");
        var permits = arr.Select(SignedPermit.FromJsonNode).ToList();
        long receiptCount = m.UInt("receiptCount");
        if (receiptCount < permits.Count) throw Fail(ProtocolErrorCode.InvalidRequest, $"{permits.Count} permits settled but only {receiptCount} receipts");
        string root = m.Bytes32("receiptsRoot");
        if ((receiptCount == 0) != (root == Hex.Zero32)) throw Fail(ProtocolErrorCode.InvalidRequest, "the receipts root is zero exactly when there are no receipts");

        // Each permit is judged on its own: a bad or unfunded one is skipped (recorded with its reason), never the
        // whole batch, so one user's bad permit cannot stop the host from being paid for the others. Signatures are
        // always checked here, on replay too, because what settles depends on them.
        var charges = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var nonces = new HashSet<(string User, long Nonce)>();
        var hashes = new List<string>();
        var skipped = new List<SkippedPermit>();
        var credits = new Credits();
        long total = 0, ownerRevenue = 0;
        foreach (var sp in permits)
        {
            var p = sp.Permit;
            string hash = p.Hash(c.Domain);
            SkippedPermit Skip(ProtocolErrorCode code, string detail) => new(hash, code, detail);
            long charged = 0;
            var problem =
                !sp.Verify(c.Domain) ? Skip(ProtocolErrorCode.BadSignature, $"not signed by its user {p.User}")
                : p.Host != host || p.ModelId != model.Id ? Skip(ProtocolErrorCode.InvalidPermit, $"for {p.ModelId} on {p.Host}")
                : p.Expiry < c.Now ? Skip(ProtocolErrorCode.PermitExpired, $"expired at {p.Expiry} (now {c.Now})")
                // A user's nonce is spent per (host, model) (OmlProtocol's permitNonceUsed): a user-wide nonce would let
                // the user burn the nonce of a permit this host already served by settling another permit elsewhere first.
                : s.IsPermitNonceUsed(p.User, host, model.Id, p.Nonce) || nonces.Contains((p.User, p.Nonce))
                    ? Skip(ProtocolErrorCode.PermitReplayed, $"nonce {p.Nonce} of {p.User} was already used with {host} for '{model.Id}'")
                : p.Fee < model.PricePerQuery ? Skip(ProtocolErrorCode.FeeTooLow, $"pays {p.Fee}, the price is {model.PricePerQuery}")
                : (charged = AddChecked(charges.GetValueOrDefault(p.User), p.Fee)) > s.EscrowOf(p.User, host).Amount
                    ? Skip(ProtocolErrorCode.InsufficientFunds, $"{p.User}'s escrow with {host} ({s.EscrowOf(p.User, host).Amount}) does not cover {charged}")
                : null;
            if (problem is not null)
            {
                skipped.Add(problem);
                continue;
            }
            charges[p.User] = charged;
            nonces.Add((p.User, p.Nonce));
            hashes.Add(hash);
            total = AddChecked(total, p.Fee);
            long hostCut = Fraction(p.Fee, s.Parameters.HostFeeShareBps);
            credits.Add(host, hostCut);
            ownerRevenue += p.Fee - hostCut;
        }
        // The batch's owner revenue is split once (OmlProtocol.commitUsage): floors once per batch, not per permit.
        FeeSplit.Split(s, model.Id, ownerRevenue, credits.Add);
        var record = new UsageRecord(host, model.Id, epoch, root, receiptCount, hashes.Count, total, c.Now) { Skipped = skipped };
        return () =>
        {
            foreach (var (u, v) in charges) { s.Acc(u).Escrowed -= v; s.Esc(u, host).Amount -= v; }
            credits.ApplyTo(s);
            foreach (var (u, n) in nonces) s.MarkPermitNonceUsed(u, host, model.Id, n);
            foreach (var h in hashes) s.SettledPermitMap[h] = host;
            s.UsageMap[key] = record;
        };
    }
}
