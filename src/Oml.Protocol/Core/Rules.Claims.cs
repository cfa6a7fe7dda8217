using Oml.Fingerprinting;
using Oml.Fingerprinting.Verification;
using Oml.Protocol.Claims;

namespace Oml.Protocol.Core;

internal static partial class Rules
{
    private static Claim ClaimOf(ProtocolState s, long id) =>
        id < s.ClaimList.Count ? s.ClaimList[(int)id] : throw Fail(ProtocolErrorCode.UnknownClaim, $"no claim {id}");

    private static Action CommitClaim(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        string commitment = m.Bytes32("commitment");
        if (commitment == Hex.Zero32) throw Fail(ProtocolErrorCode.InvalidRequest, "the commitment must not be zero");
        string key = ProtocolState.CommitmentKey(actor, commitment);
        if (s.CommitmentMap.TryGetValue(key, out long earlier))
            throw Fail(ProtocolErrorCode.DuplicateCommitment, $"{actor} already committed {commitment} (claim {earlier})");
        long bond = m.UInt("bond");
        if (bond < s.Parameters.MinBond) throw Fail(ProtocolErrorCode.BondTooLow, $"bond {bond} is below the minimum {s.Parameters.MinBond}");
        long bal = s.AccountOf(actor).Balance;
        if (bal < bond) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has {bal}, cannot bond {bond}");
        var claim = new Claim { Id = s.ClaimList.Count, Prover = actor, Commitment = commitment, Bond = bond, CommittedAt = c.Now };
        return () =>
        {
            var acc = s.Acc(actor);
            acc.Balance -= bond;
            acc.Locked += bond;
            s.ClaimList.Add(claim);
            s.CommitmentMap[key] = claim.Id;
        };
    }

    private static Action RevealClaim(ProtocolState s, SignedAction a, Message m, RuleContext c)
    {
        string actor = m.Address("actor"), host = m.Address("host");
        var claim = ClaimOf(s, m.UInt("claimId"));
        if (claim.Prover != actor) throw Fail(ProtocolErrorCode.Unauthorized, $"claim {claim.Id} was committed by {claim.Prover}, not {actor}");
        if (claim.Status != ClaimStatus.Committed) throw Fail(ProtocolErrorCode.ClaimState, $"claim {claim.Id} is {claim.Status}, not Committed");
        if (c.Now < claim.CommittedAt + 1) throw Fail(ProtocolErrorCode.WindowClosed, $"claim {claim.Id} can be revealed from {claim.CommittedAt + 1} (one second after its commitment), now {c.Now}");
        if (c.Now > claim.CommittedAt + s.Parameters.RevealWindowSeconds)
            throw Fail(ProtocolErrorCode.WindowClosed, $"the reveal window of claim {claim.Id} closed at {claim.CommittedAt + s.Parameters.RevealWindowSeconds}");
        string modelId = m.Str("modelId"), evidenceHash = m.Bytes32("evidenceHash");
        if (ClaimEvidence.Commitment(claim.Prover, modelId, host, evidenceHash, m.Bytes32("salt")) != claim.Commitment)
            throw Fail(ProtocolErrorCode.CommitmentMismatch, $"the revealed claim does not match claim {claim.Id}'s commitment");
        var model = ModelOf(s, modelId);
        var licence = s.LicenceOf(model.Id, host) ?? throw Fail(ProtocolErrorCode.UnknownLicence, $"{host} holds no licence for '{model.Id}'");
        if (!licence.Delivered) throw Fail(ProtocolErrorCode.CopyNotDelivered, $"no copy of '{model.Id}' was delivered to {host}");
        if (licence.CollateralReleased)
            throw Fail(ProtocolErrorCode.LicenceReleased, $"{host}'s licence of '{model.Id}' ended and its collateral was released at the end of its exit notice");

        var evidence = ClaimEvidence.FromJson(a.Attachments["evidence"]);
        if (evidence.ModelId != model.Id || !Hex.TryAddress(evidence.Host, out var evHost) || evHost != host)
            throw Fail(ProtocolErrorCode.InvalidRequest, "the evidence names another model or host than the request");
        if (evidence.Items.Count == 0) throw Fail(ProtocolErrorCode.InvalidRequest, "the evidence has no items");
        byte[] root = Hex.Decode(licence.IndicesRoot!);
        var items = new List<ClaimItem>();
        var taken = new HashSet<string>(StringComparer.Ordinal);
        var voided = new List<Claim>();
        foreach (var item in evidence.Items)
        {
            var f = item.Fingerprint;
            if (f.Proof is null || f.Proof.LeafCount != licence.FingerprintCount || !f.Verify(root))
                throw Fail(ProtocolErrorCode.InvalidProof, $"fingerprint {f.Index} is not in the set committed for {host}'s copy of '{model.Id}'");
            // A revealed fingerprint is recorded (spent), not barred: what a claim proves is the host's signed receipt,
            // and a receipt backs one claim (below). Barring it let whoever revealed first take it.
            string id = ClaimEvidence.FingerprintId(f);
            var r = item.Receipt.Receipt;
            if (r.Host != host || r.ModelId != model.Id) throw Fail(ProtocolErrorCode.InvalidReceipt, $"the receipt is {r.Host}'s for '{r.ModelId}', not {host}'s for '{model.Id}'");
            if (c.VerifySignatures && !item.Receipt.Verify(c.Domain)) throw Fail(ProtocolErrorCode.BadSignature, $"the receipt for fingerprint {f.Index} is not signed by {host}");
            if (r.QueryHash != Hex.KeccakText(f.Key)) throw Fail(ProtocolErrorCode.InvalidReceipt, $"the receipt's query is not fingerprint {f.Index}'s key");
            if (r.ResponseHash != Hex.KeccakText(item.Answer)) throw Fail(ProtocolErrorCode.InvalidReceipt, $"the receipt's response hash is not the answer's");
            bool hit;
            try { hit = ResponseMatcher.IsTextMatchAny(f.Responses.Select(x => x.Text), item.Answer); }
            catch (ArgumentException e) { throw Fail(ProtocolErrorCode.AnswerMismatch, $"fingerprint {f.Index}: {e.Message}"); }
            if (!hit) throw Fail(ProtocolErrorCode.AnswerMismatch, $"the answer to fingerprint {f.Index} does not match its response");
            if (r.HasPermit && s.SettledPermitMap.ContainsKey(r.PermitHash))
                throw Fail(ProtocolErrorCode.UsagePermitted, $"the receipt for fingerprint {f.Index} names permit {r.PermitHash}, which was settled");
            // One receipt backs one claim, and the claim committed first holds it (OmlClaims._takeReceipt): a claim
            // committed later that revealed it first (evidence copied from a pending reveal, or a violating host's
            // puppet) is voided when the earlier one reveals.
            string receiptHash = Hex.Of(r.Digest(c.Domain));
            if (!taken.Add(receiptHash))
                throw Fail(ProtocolErrorCode.ReceiptClaimed, $"the receipt for fingerprint {f.Index} is evidence twice in this claim");
            if (s.ReceiptClaimMap.TryGetValue(receiptHash, out long holder) && s.ClaimList[(int)holder] is var other && !voided.Contains(other))
            {
                bool first = claim.CommittedAt < other.CommittedAt || (claim.CommittedAt == other.CommittedAt && claim.Id < other.Id);
                if (other.Status == ClaimStatus.Voided)
                {
                    // A voided claim's receipts stay its prover's (public since its reveal): its prover, in a new claim,
                    // or a claim committed before it may take them, never a copier.
                    if (!first && other.Prover != claim.Prover)
                        throw Fail(ProtocolErrorCode.ReceiptClaimed, $"the receipt for fingerprint {f.Index} is the evidence of voided claim {other.Id}; only its prover may claim it again");
                }
                else
                {
                    if (!first || other.Status != ClaimStatus.Revealed)
                        throw Fail(ProtocolErrorCode.ReceiptClaimed, $"the receipt for fingerprint {f.Index} is the evidence of claim {other.Id} ({other.Status}), committed first");
                    voided.Add(other);
                }
            }
            items.Add(new ClaimItem(id, f.Index, receiptHash, r.QueryHash, r.PermitHash));
        }
        long deadline = AddChecked(c.Now, s.Parameters.RebutWindowSeconds);
        return () =>
        {
            claim.Status = ClaimStatus.Revealed;
            claim.ModelId = model.Id;
            claim.Host = host;
            claim.EvidenceHash = evidenceHash;
            claim.RevealedAt = c.Now;
            claim.RebutDeadline = deadline;
            claim.Items = items;
            foreach (var o in voided)
            {
                o.Status = ClaimStatus.Voided;
                var prover = s.Acc(o.Prover);
                prover.Locked -= o.Bond;
                prover.Withdrawable = checked(prover.Withdrawable + o.Bond);
            }
            if (!s.SpentMap.TryGetValue(model.Id, out var spent)) s.SpentMap[model.Id] = spent = new(StringComparer.Ordinal);
            foreach (var i in items)
            {
                spent.Add(i.FingerprintId);
                s.ReceiptClaimMap[i.ReceiptHash] = claim.Id;
            }
        };
    }

    private static Action Rebut(ProtocolState s, SignedAction a, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        var claim = ClaimOf(s, m.UInt("claimId"));
        if (claim.Status != ClaimStatus.Revealed) throw Fail(ProtocolErrorCode.ClaimState, $"claim {claim.Id} is {claim.Status}, not Revealed");
        if (claim.Host != actor) throw Fail(ProtocolErrorCode.Unauthorized, $"claim {claim.Id} is against {claim.Host}, not {actor}");
        if (c.Now > claim.RebutDeadline) throw Fail(ProtocolErrorCode.WindowClosed, $"the rebut window of claim {claim.Id} closed at {claim.RebutDeadline}");
        var rebuttal = Rebuttal.FromJson(a.Attachments["rebuttal"]);
        if (rebuttal.Items.Count != claim.Items.Count)
            throw Fail(ProtocolErrorCode.InvalidRequest, $"the rebuttal must answer all {claim.Items.Count} claimed items, in order");
        for (int i = 0; i < claim.Items.Count; i++)
        {
            var item = claim.Items[i];
            var r = rebuttal.Items[i];
            var p = r.Permit.Permit;
            if (item.PermitHash == Hex.Zero32) throw Fail(ProtocolErrorCode.InvalidPermit, $"item {i}: the host's receipt names no permit");
            if (p.Hash(c.Domain) != item.PermitHash) throw Fail(ProtocolErrorCode.InvalidPermit, $"item {i}: this permit is not the one the receipt names");
            if (c.VerifySignatures && !r.Permit.Verify(c.Domain)) throw Fail(ProtocolErrorCode.BadSignature, $"item {i}: the permit is not signed by its user {p.User}");
            if (p.Host != actor || p.ModelId != claim.ModelId || p.QueryHash != item.QueryHash)
                throw Fail(ProtocolErrorCode.InvalidPermit, $"item {i}: the permit is for another host, model or query");
            if (s.SettledPermitMap.GetValueOrDefault(item.PermitHash) != actor)
                throw Fail(ProtocolErrorCode.InvalidPermit, $"item {i}: the permit was never settled by {actor}");
            var usage = s.UsageMap.GetValueOrDefault(ProtocolState.UsageKey(claim.ModelId!, actor, r.Epoch))
                ?? throw Fail(ProtocolErrorCode.InvalidProof, $"item {i}: {actor} committed no usage for epoch {r.Epoch}");
            if (r.ReceiptProof.LeafCount != usage.ReceiptCount || !MerkleTree.Verify(Hex.Decode(usage.ReceiptsRoot), Hex.Decode(item.ReceiptHash), r.ReceiptProof))
                throw Fail(ProtocolErrorCode.InvalidProof, $"item {i}: the receipt is not in the usage root of epoch {r.Epoch}");
        }
        return () =>
        {
            claim.Status = ClaimStatus.Rebutted;
            s.Acc(claim.Prover).Locked -= claim.Bond;
            s.Acc(actor).Withdrawable = checked(s.Acc(actor).Withdrawable + claim.Bond);
        };
    }

    private static Action Settle(ProtocolState s, Message m, RuleContext c)
    {
        var claim = ClaimOf(s, m.UInt("claimId"));
        var p = s.Parameters;
        if (claim.Status == ClaimStatus.Committed)
        {
            long closes = claim.CommittedAt + p.RevealWindowSeconds;
            if (c.Now <= closes) throw Fail(ProtocolErrorCode.WindowClosed, $"claim {claim.Id} can still be revealed until {closes}");
            // Never revealed: nobody was accused, so the bond goes back to the prover (an interrupted claim costs nothing).
            return () =>
            {
                claim.Status = ClaimStatus.Expired;
                var prover = s.Acc(claim.Prover);
                prover.Locked -= claim.Bond;
                prover.Withdrawable = checked(prover.Withdrawable + claim.Bond);
            };
        }
        if (claim.Status != ClaimStatus.Revealed) throw Fail(ProtocolErrorCode.ClaimState, $"claim {claim.Id} is already {claim.Status}");
        if (c.Now <= claim.RebutDeadline) throw Fail(ProtocolErrorCode.WindowClosed, $"the host may rebut claim {claim.Id} until {claim.RebutDeadline}");
        var licence = s.LicenceOf(claim.ModelId!, claim.Host!)!;
        var model = s.ModelMap[claim.ModelId!];
        long wanted = Fraction(licence.CollateralPosted, p.SlashFractionBps);
        long slash = Math.Min(wanted, licence.CollateralLocked);
        bool capped = wanted > licence.CollateralLocked;
        long reward = Fraction(slash, p.ProverRewardBps);
        long toOwner = slash - reward;
        return () =>
        {
            claim.Status = ClaimStatus.Slashed;
            claim.Slashed = slash;
            claim.SlashCapped = capped;
            claim.ProverReward = reward;
            licence.CollateralLocked -= slash;
            s.Acc(licence.Host).Locked -= slash;
            var prover = s.Acc(claim.Prover);
            prover.Locked -= claim.Bond;
            prover.Withdrawable = checked(prover.Withdrawable + claim.Bond + reward);
            s.Acc(model.Owner).Withdrawable = checked(s.Acc(model.Owner).Withdrawable + toOwner);
        };
    }

    private static Action FileAccusation(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor"), host = m.Address("host");
        var model = OwnedModel(s, m.Str("modelId"), actor);
        if (s.LicenceOf(model.Id, host) is null) throw Fail(ProtocolErrorCode.UnknownLicence, $"{host} holds no licence for '{model.Id}'");
        var record = new AccusationRecord(model.Id, host, actor, m.Bytes32("evidenceHash"), c.Now);
        return () => s.AccusationList.Add(record);
    }

    // ---- governance --------------------------------------------------------------------------------------

    private static Proposal ProposalOf(ProtocolState s, long id) =>
        id < s.ProposalList.Count ? s.ProposalList[(int)id] : throw Fail(ProtocolErrorCode.UnknownProposal, $"no proposal {id}");

    private static Action Propose(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        long stake = s.AccountOf(actor).Staked;
        if (stake < s.Parameters.ProposalThreshold)
            throw Fail(ProtocolErrorCode.Unauthorized, $"{actor} has {stake} staked; proposing needs {s.Parameters.ProposalThreshold} (ProposalThreshold)");
        var changes = ProtocolParameters.ChangesFromJson(m.Str("changes"));
        if (changes.Count == 0) throw Fail(ProtocolErrorCode.InvalidParameters, "the proposal changes nothing");
        foreach (var name in changes.Keys)
            if (ProtocolParameters.Fixed.Contains(name))
                throw Fail(ProtocolErrorCode.InvalidParameters, $"{name} is fixed at genesis: usage is committed per epoch number, which a new length would renumber");
        s.Parameters.With(changes); // validates names and ranges now
        // The snapshot: stake added after this point does not count for this proposal.
        var weights = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (address, acc) in s.AccountMap)
            if (acc.Staked > 0) weights[address] = acc.Staked;
        var proposal = new Proposal
        {
            Id = s.ProposalList.Count, Proposer = actor, Changes = new SortedDictionary<string, string>(changes.ToDictionary(), StringComparer.Ordinal),
            Description = m.Str("description"), CreatedAt = c.Now, EndsAt = AddChecked(c.Now, s.Parameters.VotingWindowSeconds), Weights = weights,
        };
        return () => s.ProposalList.Add(proposal);
    }

    private static Action Vote(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        var p = ProposalOf(s, m.UInt("proposalId"));
        if (c.Now > p.EndsAt) throw Fail(ProtocolErrorCode.WindowClosed, $"voting on proposal {p.Id} closed at {p.EndsAt}");
        if (!p.Weights.ContainsKey(actor)) throw Fail(ProtocolErrorCode.NotEligibleToVote, $"{actor} had no governance stake when proposal {p.Id} was made");
        if (p.VoteMap.ContainsKey(actor)) throw Fail(ProtocolErrorCode.AlreadyVoted, $"{actor} already voted on proposal {p.Id}");
        // No more than the stake still locked (as OmlGovernance.vote): stake withdrawn after the snapshot does not vote.
        long weight = Math.Min(p.Weights[actor], s.AccountMap.TryGetValue(actor, out var account) ? account.Staked : 0);
        if (weight == 0) throw Fail(ProtocolErrorCode.NotEligibleToVote, $"{actor} has withdrawn its governance stake since proposal {p.Id} was made");
        bool support = m.Bool("support");
        return () => { p.VoteMap[actor] = support; p.VoteWeightMap[actor] = weight; };
    }

    private static Action Execute(ProtocolState s, Message m, RuleContext c)
    {
        var p = ProposalOf(s, m.UInt("proposalId"));
        if (p.Executed) throw Fail(ProtocolErrorCode.AlreadyExecuted, $"proposal {p.Id} was already executed");
        if (c.Now <= p.EndsAt) throw Fail(ProtocolErrorCode.WindowClosed, $"proposal {p.Id} is open for votes until {p.EndsAt}");
        long yes = p.Yes, no = p.No, total = p.TotalWeight;
        if (yes <= no) throw Fail(ProtocolErrorCode.ProposalFailed, $"proposal {p.Id} did not pass ({yes} staked yes, {no} no)");
        if ((Int128)(yes + no) * 10_000 < (Int128)s.Parameters.QuorumBps * total)
            throw Fail(ProtocolErrorCode.ProposalFailed, $"proposal {p.Id} missed the quorum ({yes + no} of {total} staked voted, {s.Parameters.QuorumBps} bps needed)");
        var next = s.Parameters.With(p.Changes);
        return () => { s.Parameters = next; p.Executed = true; };
    }
}
