using System.Text;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Core;

/// <summary>How one action is checked: ledger time, position, whether signatures are re-verified, signing domain.</summary>
internal sealed record RuleContext(long Now, long Sequence, bool VerifySignatures, ProtocolDomain Domain);

/// <summary>
/// The state machine. <see cref="Check"/> validates an action against the state without changing it and returns the
/// mutation to run once the event is committed (check-then-mutate: every rejection happens before any change).
/// Replay runs the same checks (minus signature recovery) and mutations, so it is a pure fold over the log.
/// </summary>
internal static partial class Rules
{
    public static Action Check(ProtocolState s, SignedAction a, RuleContext c)
    {
        Schemas.ValidateMessage(a.Type, a.Message);
        if (a.Type is Schemas.Permit or Schemas.Receipt)
            throw Fail(ProtocolErrorCode.InvalidRequest, $"{a.Type} is an off-ledger message, not a ledger action");
        var m = new Message(a.Message);
        string actor = m.Address("actor");

        if (a.Type == Schemas.Genesis)
        {
            if (s.Initialized) throw Fail(ProtocolErrorCode.AlreadyInitialized, "the ledger already has a genesis event");
        }
        else
        {
            if (!s.Initialized) throw Fail(ProtocolErrorCode.NotInitialized, "the ledger has no genesis event yet");
            if (c.Domain != s.Domain)
                throw Fail(ProtocolErrorCode.WrongDomain, $"signed for chain {c.Domain.ChainId} / {c.Domain.VerifyingContract}, the ledger is chain {s.Domain.ChainId} / {s.Domain.VerifyingContract}");
        }

        long nonce = m.UInt("nonce");
        long expectedNonce = s.AccountOf(actor).Nonce;
        if (nonce != expectedNonce) throw Fail(ProtocolErrorCode.BadNonce, $"{actor}: request nonce {nonce}, expected {expectedNonce}");

        int maxSignatures = a.Type == Schemas.DeclareParent ? 2 : 1;
        if (a.Signatures.Count < 1 || a.Signatures.Count > maxSignatures)
            throw Fail(ProtocolErrorCode.BadSignature, $"{a.Type} needs {(maxSignatures == 1 ? "exactly one signature" : "one or two signatures")}, got {a.Signatures.Count}");
        byte[]? digest = null;
        if (c.VerifySignatures)
        {
            digest = Eip712.Digest(a.TypedData(c.Domain));
            if (!Secp256k1.TryRecover(digest, a.Signatures[0], out var signer) || Hex.Of(signer) != actor)
                throw Fail(ProtocolErrorCode.BadSignature, $"{a.Type}: the signature is not {actor}'s");
        }

        CheckAttachment(a, m);

        Action body;
        try
        {
            body = Dispatch(s, a, m, c, digest);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException or InvalidCastException
            or NullReferenceException or KeyNotFoundException or System.Text.Json.JsonException)
        {
            // Malformed attachments (bad hex, odd JSON shapes) end up here: still a rejection, never a crash.
            throw new ProtocolException(ProtocolErrorCode.InvalidRequest, $"{a.Type}: malformed request: {e.Message}", e);
        }
        return () =>
        {
            body();
            s.Acc(actor).Nonce++;
        };
    }

    private static Action Dispatch(ProtocolState s, SignedAction a, Message m, RuleContext c, byte[]? digest) =>
        a.Type switch
        {
            Schemas.Genesis => Genesis(s, m, c),
            Schemas.Mint => Mint(s, m),
            Schemas.Transfer => Transfer(s, m),
            Schemas.Deposit => Deposit(s, m),
            Schemas.RequestRefund => RequestRefund(s, m, c),
            Schemas.Refund => Refund(s, m, c),
            Schemas.Stake => Stake(s, m, c),
            Schemas.Unstake => Unstake(s, m, c),
            Schemas.Withdraw => Withdraw(s, m),
            Schemas.RegisterModel => RegisterModel(s, m, c),
            Schemas.AddVersion => AddVersion(s, m, c),
            Schemas.DeclareParent => DeclareParent(s, a, m, c, digest),
            Schemas.TransferModel => TransferModel(s, m),
            Schemas.AcceptModel => AcceptModel(s, m),
            Schemas.ApplyLicense => ApplyLicense(s, m),
            Schemas.DeliverCopy => DeliverCopy(s, m),
            Schemas.AcknowledgeCopy => AcknowledgeCopy(s, m),
            Schemas.AnnounceExit => AnnounceExit(s, m, c),
            Schemas.ReleaseCollateral => ReleaseCollateral(s, m, c),
            Schemas.CommitUsage => CommitUsage(s, a, m, c),
            Schemas.CommitClaim => CommitClaim(s, m, c),
            Schemas.RevealClaim => RevealClaim(s, a, m, c),
            Schemas.Rebut => Rebut(s, a, m, c),
            Schemas.Settle => Settle(s, m, c),
            Schemas.FileAccusation => FileAccusation(s, m, c),
            Schemas.Propose => Propose(s, m, c),
            Schemas.Vote => Vote(s, m, c),
            Schemas.Execute => Execute(s, m, c),
            _ => throw Fail(ProtocolErrorCode.InvalidRequest, $"unknown action '{a.Type}'"),
        };

    private static void CheckAttachment(SignedAction a, Message m)
    {
        string? name = Schemas.AttachmentOf(a.Type);
        if (name is null)
        {
            if (a.Attachments.Count != 0) throw Fail(ProtocolErrorCode.InvalidRequest, $"{a.Type} takes no attachments");
            return;
        }
        if (a.Attachments.Count != 1 || !a.Attachments.TryGetValue(name, out var text))
            throw Fail(ProtocolErrorCode.InvalidRequest, $"{a.Type} needs exactly one attachment, '{name}'");
        string field = a.Type == Schemas.CommitUsage ? "permitsHash" : "evidenceHash";
        if (Hex.Of(Keccak256.Hash(Encoding.UTF8.GetBytes(text))) != m.Bytes32(field))
            throw Fail(ProtocolErrorCode.InvalidRequest, $"{a.Type}: the '{name}' attachment does not hash to the signed {field}");
    }

    internal static ProtocolException Fail(ProtocolErrorCode code, string message) => new(code, message);

    internal static long AddChecked(long a, long b)
    {
        try { return checked(a + b); }
        catch (OverflowException) { throw Fail(ProtocolErrorCode.ArithmeticOverflow, $"{a} + {b} overflows"); }
    }

    /// <summary>floor(amount × bps / 10,000) without overflow.</summary>
    internal static long Fraction(long amount, int bps) => (long)((Int128)amount * bps / 10_000);

    private static long Positive(Message m, string field)
    {
        long v = m.UInt(field);
        if (v <= 0) throw Fail(ProtocolErrorCode.InvalidAmount, $"{field} must be positive");
        return v;
    }

    // ---- genesis and money -------------------------------------------------------------------------------

    private static Action Genesis(ProtocolState s, Message m, RuleContext c)
    {
        if (m.UInt("chainId") != c.Domain.ChainId)
            throw Fail(ProtocolErrorCode.WrongDomain, $"genesis chainId {m.UInt("chainId")} differs from the signing domain's {c.Domain.ChainId}");
        var p = ProtocolParameters.FromJson(m.Str("parameters"));
        string treasury = m.Address("actor");
        return () =>
        {
            s.Initialized = true;
            s.Treasury = treasury;
            s.Domain = c.Domain;
            s.GenesisTime = c.Now;
            s.Parameters = p;
        };
    }

    private static Action Mint(ProtocolState s, Message m)
    {
        string actor = m.Address("actor"), to = m.Address("to");
        if (actor != s.Treasury) throw Fail(ProtocolErrorCode.Unauthorized, $"only the treasury {s.Treasury} mints");
        long amount = m.UInt("amount");   // zero is a no-op, as OmlToken's (OpenZeppelin's) _mint treats it
        long supply = AddChecked(s.TotalSupply, amount);
        return () => { s.TotalSupply = supply; s.Acc(to).Balance += amount; };
    }

    private static Action Transfer(ProtocolState s, Message m)
    {
        string actor = m.Address("actor"), to = m.Address("to");
        // ERC-20 (EIP-20): "transfers of 0 values MUST be treated as normal transfers", and OmlToken follows it
        long amount = m.UInt("amount");
        long bal = s.AccountOf(actor).Balance;
        if (bal < amount) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has {bal}, cannot transfer {amount}");
        return () => { s.Acc(actor).Balance -= amount; s.Acc(to).Balance += amount; };
    }

    private static Action Deposit(ProtocolState s, Message m)
    {
        string actor = m.Address("actor"), host = m.Address("host");
        long amount = Positive(m, "amount");
        var escrow = s.EscrowOf(actor, host);
        if (escrow.RefundRequestedAt is not null)   // checked before the balance, in OmlProtocol.deposit's order
            throw Fail(ProtocolErrorCode.RefundPending, $"{actor} asked for its escrow with {host} back; take the refund before depositing again");
        long bal = s.AccountOf(actor).Balance;
        if (bal < amount) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has {bal}, cannot deposit {amount}");
        AddChecked(escrow.Amount, amount);
        return () => { var a = s.Acc(actor); a.Balance -= amount; a.Escrowed += amount; s.Esc(actor, host).Amount += amount; };
    }

    private static Action RequestRefund(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor"), host = m.Address("host");
        var escrow = s.EscrowOf(actor, host);
        if (escrow.Amount <= 0) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has nothing in escrow with {host}");
        if (escrow.RefundRequestedAt is not null) throw Fail(ProtocolErrorCode.RefundPending, $"{actor} already asked for its escrow with {host} back");
        return () => s.Esc(actor, host).RefundRequestedAt = c.Now;
    }

    private static Action Refund(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor"), host = m.Address("host");
        var escrow = s.EscrowOf(actor, host);
        if (escrow.RefundRequestedAt is not { } asked) throw Fail(ProtocolErrorCode.RefundPending, $"{actor} has not asked for its escrow with {host} back (RequestRefund first)");
        long due = AddChecked(asked, s.Parameters.RefundDelaySeconds);
        if (c.Now < due) throw Fail(ProtocolErrorCode.RefundPending, $"the escrow of {actor} with {host} can be refunded from {due} (now {c.Now})");
        long amount = escrow.Amount;
        return () =>
        {
            var a = s.Acc(actor);
            a.Escrowed -= amount;
            a.Balance += amount;
            s.EscrowMap.Remove(ProtocolState.EscrowKey(actor, host));
        };
    }

    private static Action Stake(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        long amount = Positive(m, "amount");
        long bal = s.AccountOf(actor).Balance;
        if (bal < amount) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has {bal}, cannot stake {amount}");
        AddChecked(s.AccountOf(actor).Staked, amount);
        return () => { var a = s.Acc(actor); a.Balance -= amount; a.Staked += amount; a.LastStakeTime = c.Now; };
    }

    private static Action Unstake(ProtocolState s, Message m, RuleContext c)
    {
        string actor = m.Address("actor");
        long amount = Positive(m, "amount");
        var acc = s.AccountOf(actor);
        if (acc.Staked < amount) throw Fail(ProtocolErrorCode.InsufficientFunds, $"{actor} has {acc.Staked} staked, cannot unstake {amount}");
        long unlock = AddChecked(acc.LastStakeTime, s.Parameters.VotingWindowSeconds);
        if (c.Now < unlock) throw Fail(ProtocolErrorCode.StakeLocked, $"{actor}'s stake is locked until {unlock} (VotingWindowSeconds after its last stake)");
        var open = s.ProposalList.FirstOrDefault(p => c.Now <= p.EndsAt && p.VoteMap.ContainsKey(actor));
        if (open is not null) throw Fail(ProtocolErrorCode.StakeLocked, $"{actor} voted on proposal {open.Id}, open until {open.EndsAt}: its stake is locked until then");
        return () => { var a = s.Acc(actor); a.Staked -= amount; a.Balance += amount; };
    }

    private static Action Withdraw(ProtocolState s, Message m)
    {
        string actor = m.Address("actor");
        long w = s.AccountOf(actor).Withdrawable;
        if (w <= 0) throw Fail(ProtocolErrorCode.NothingToWithdraw, $"{actor} has nothing to withdraw");
        return () => { var a = s.Acc(actor); a.Withdrawable -= w; a.Balance += w; };
    }

    /// <summary>Credits accumulated during a check, applied in the mutation.</summary>
    private sealed class Credits
    {
        public SortedDictionary<string, long> Map { get; } = new(StringComparer.Ordinal);
        public void Add(string address, long amount)
        {
            if (amount == 0) return;
            Map[address] = AddChecked(Map.GetValueOrDefault(address), amount);
        }
        public void ApplyTo(ProtocolState s)
        {
            foreach (var (a, v) in Map) s.Acc(a).Withdrawable = checked(s.Acc(a).Withdrawable + v);
        }
    }
}
