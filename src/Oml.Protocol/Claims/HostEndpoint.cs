using Oml.Fingerprinting.Endpoints;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Claims;

/// <summary>A host's answer: the text and the receipt it signed for it.</summary>
public sealed record HostAnswer(string Text, SignedReceipt Receipt);

/// <summary>A licensed host's query interface, as users, provers and tracers see it.</summary>
public interface IHostEndpoint
{
    /// <summary>Answers <paramref name="query"/>; <paramref name="permit"/> is the user's permit, or null for none.</summary>
    Task<HostAnswer> AskAsync(string query, SignedPermit? permit, CancellationToken ct = default);
}

/// <summary>The host's side of <see cref="IHostEndpoint"/>: how it handles permits.</summary>
public enum PermitPolicy
{
    /// <summary>Refuses queries without a valid permit for this host and model (an honest host).</summary>
    Require,
    /// <summary>Answers anyway and signs a receipt naming no permit (what a claim catches).</summary>
    Ignore,
}

/// <summary>Thrown by a host's completion function when its backend failed after part of a streamed answer had been
/// sent: the user has that text, so the permit stays counted (<see cref="HostService.AskAsync"/> releases a permit only
/// for a failure that left the user with nothing). The message is the failure's.</summary>
public sealed class PartlyAnsweredException(Exception inner) : Exception(inner.Message, inner);

/// <summary>Thrown by <see cref="HostService"/> when it refuses a query.</summary>
public sealed class QueryRefusedException(string message) : Exception(message);

/// <summary>
/// A host serving its copy: checks the permit (user signature, host, model, query hash, expiry against the clock, and
/// with a <see cref="Hosting.PermitGate"/> everything that makes it certain to settle: price, funding, replay, refund),
/// answers through <see cref="ICompletionEndpoint"/>-like completion, signs a receipt and records the pair in the
/// current <see cref="UsageBook"/>. Start a new book per epoch with <see cref="StartEpoch"/>. It never signs a receipt
/// for a permit it refused.
/// </summary>
public sealed class HostService : IHostEndpoint
{
    private readonly PrivateKey _key;
    private readonly Func<string, CancellationToken, Task<string>> _complete;
    private readonly TimeProvider _clock;
    private readonly Lock _gate = new();

    public HostService(PrivateKey hostKey, ProtocolDomain domain, string modelId, long epoch,
        Func<string, CancellationToken, Task<string>> complete, PermitPolicy policy = PermitPolicy.Require, TimeProvider? clock = null,
        Hosting.PermitGate? gate = null)
    {
        Gate = gate;
        _key = hostKey ?? throw new ArgumentNullException(nameof(hostKey));
        _complete = complete ?? throw new ArgumentNullException(nameof(complete));
        Domain = domain ?? throw new ArgumentNullException(nameof(domain));
        ModelId = modelId ?? throw new ArgumentNullException(nameof(modelId));
        Policy = policy;
        _clock = clock ?? TimeProvider.System;
        Book = new UsageBook(domain, modelId, epoch);
    }

    /// <summary>Serves through an OpenAI-compatible (or any) completion endpoint.</summary>
    public HostService(PrivateKey hostKey, ProtocolDomain domain, string modelId, long epoch, ICompletionEndpoint model, CompletionSettings settings,
        PermitPolicy policy = PermitPolicy.Require, TimeProvider? clock = null, Hosting.PermitGate? gate = null)
        : this(hostKey, domain, modelId, epoch, (q, ct) => model.CompleteAsync(q, settings, ct), policy, clock, gate) { }

    /// <summary>The checks against the protocol state (null: only the permit's own fields are checked).</summary>
    public Hosting.PermitGate? Gate { get; }

    public ProtocolDomain Domain { get; }
    public string ModelId { get; }
    public PermitPolicy Policy { get; }
    public string Host => Hex.Of(_key.Address);
    /// <summary>The current epoch's receipts and permits.</summary>
    public UsageBook Book { get; private set; }

    /// <summary>Starts a new usage book; returns the finished one (commit it with <see cref="ProtocolEngine.CommitUsage"/>).</summary>
    public UsageBook StartEpoch(long epoch)
    {
        lock (_gate)
        {
            var old = Book;
            Book = new UsageBook(Domain, ModelId, epoch);
            return old;
        }
    }

    /// <summary>
    /// The permit's own checks, which read no state and record nothing (under <see cref="PermitPolicy.Require"/>: present,
    /// signed by its user, for this host, model and query, not expired); throws <see cref="QueryRefusedException"/>.
    /// <see cref="AskAsync"/> makes them too; a server makes them first to refuse a bad permit before costly work.
    /// </summary>
    public void Precheck(string query, SignedPermit? permit)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (Policy != PermitPolicy.Require) return;
        if (permit is null) throw new QueryRefusedException("a permit is required");
        var p = permit.Permit;
        if (!permit.Verify(Domain)) throw new QueryRefusedException("the permit is not signed by its user");
        if (p.Host != Host || p.ModelId != ModelId) throw new QueryRefusedException("the permit is for another host or model");
        if (p.QueryHash != Hex.KeccakText(query)) throw new QueryRefusedException("the permit is for another query");
        if (p.Expiry < _clock.GetUtcNow().ToUnixTimeSeconds()) throw new QueryRefusedException("the permit has expired");
    }

    public async Task<HostAnswer> AskAsync(string query, SignedPermit? permit, CancellationToken ct = default)
    {
        Precheck(query, permit);
        bool admitted = Policy == PermitPolicy.Require && Gate is not null;
        if (admitted) await Gate!.AdmitAsync(permit!, query, ct).ConfigureAwait(false);
        string answer;
        try
        {
            answer = await _complete(query, ct).ConfigureAwait(false);
        }
        // The host's own failure (not a cancellation or a broken connection, which a client that left causes, nor a failure
        // after part of a streamed answer was sent): the user gets an error and no answer, so the permit stops counting
        // against its escrow now rather than at its expiry.
        catch (Exception e) when (admitted && !ct.IsCancellationRequested && e is not (OperationCanceledException or IOException or PartlyAnsweredException))
        {
            try { await Gate!.ReleaseAsync(permit!, CancellationToken.None).ConfigureAwait(false); }
            catch (Hosting.PermitStoreUnavailableException) { /* it stays counted until it expires, as before a release existed */ }
            throw;
        }
        var usedPermit = Policy == PermitPolicy.Require ? permit : null;
        var receipt = Receipt.Create(_key.Address, ModelId, usedPermit?.Permit.Hash(Domain), query, answer, _clock.GetUtcNow().ToUnixTimeSeconds()).Sign(Domain, _key);
        lock (_gate) Book.Add(receipt, usedPermit);
        return new HostAnswer(answer, receipt);
    }
}
