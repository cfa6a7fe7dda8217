using System.Text.Json;
using Oml.Fingerprinting.Endpoints;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;
using Oml.Protocol.Hosting;

namespace Oml.Server;

/// <summary>
/// A licensed host's OpenAI-compatible server (an <see cref="OpenAiCompatibleServer"/> on 127.0.0.1, streaming
/// included; a permit covers one query and one answer, so n and prompt batches must be 1). Each
/// request must carry a signed permit in the body field <c>oml_permit</c> (<see cref="HostHttp"/>); the permit is
/// checked by <see cref="HostService"/> (user signature, host, model, query hash, expiry, and with a <see cref="PermitGate"/>
/// price, funding, replay and refunds against the ledger), refused queries get HTTP 402, answered ones a signed
/// receipt in the <c>OML-Receipt</c> response header (in a stream: the last event's field <c>oml_receipt</c>), and
/// every answered query is
/// stored in the <see cref="UsageStore"/> for the host's usage commits and rebuttals. With
/// <see cref="PermitPolicy.Ignore"/> (a dishonest host) permits are not checked and receipts name none.
/// </summary>
public sealed class ProtocolHostServer : IAsyncDisposable
{
    private readonly OpenAiCompatibleServer _server;
    private readonly AsyncLocal<ServerRequest?> _request = new();

    private ProtocolHostServer(HostService host, UsageStore? store, ICompletionBackend backend, int port, OpenAiServerOptions? options)
    {
        Host = host;
        Store = store;
        _server = new OpenAiCompatibleServer(backend, port, options, HandleAsync);
    }

    public HostService Host { get; }
    public UsageStore? Store { get; }
    public Uri BaseUrl => _server.BaseUrl;
    public int Port => _server.Port;

    /// <summary>The server's request metrics (also at GET /metrics).</summary>
    public ServerMetrics Metrics => _server.Metrics;

    /// <summary>Starts serving <paramref name="generator"/>'s answers as host <paramref name="hostKey"/>'s copy of <paramref name="modelId"/>.</summary>
    public static Task<ProtocolHostServer> StartAsync(PrivateKey hostKey, ProtocolDomain domain, string modelId,
        Func<string, CompletionSettings, CancellationToken, Task<string>> generator, UsageStore? store, PermitPolicy policy = PermitPolicy.Require,
        int port = 0, OpenAiServerOptions? options = null, TimeProvider? clock = null, PermitGate? gate = null, CancellationToken ct = default) =>
        StartAsync(hostKey, domain, modelId, new DelegateBackend(generator), store, policy, port, options, clock, gate, ct);

    /// <summary>Starts serving <paramref name="backend"/>'s answers (e.g. a <see cref="ModelBackend"/> with continuous
    /// batching) as host <paramref name="hostKey"/>'s copy of <paramref name="modelId"/>.</summary>
    public static async Task<ProtocolHostServer> StartAsync(PrivateKey hostKey, ProtocolDomain domain, string modelId,
        ICompletionBackend backend, UsageStore? store, PermitPolicy policy = PermitPolicy.Require,
        int port = 0, OpenAiServerOptions? options = null, TimeProvider? clock = null, PermitGate? gate = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(backend);
        // A permit names the model, and clients name it in their requests: the host serves its model under the model id.
        options = (options ?? new OpenAiServerOptions()) with { ModelName = modelId };
        if (store is not null && (store.ModelId != modelId || store.Domain != domain))
            throw new ArgumentException("the usage store is for another model or domain", nameof(store));
        ProtocolHostServer? server = null;
        server = new ProtocolHostServer(
            new HostService(hostKey, domain, modelId, 0, (q, c) => server!.CompleteAsync(q, c), policy, clock, gate),
            store, backend, port, options);
        try
        {
            await server._server.StartAsync(ct).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    // The query HostService answers is the request's own (its prompt, or its chat): generate that request. A client that
    // leaves a streamed answer part way (its connection closed or reset) has what was written to it: that text is the
    // answer the host signs and records, so a user cannot take all but the last token of a paid answer and leave before
    // the receipt to keep the permit unsettled. A client that leaves before any text was written owes nothing (and a
    // non-streamed answer is written whole or not at all).
    private async Task<string> CompleteAsync(string query, CancellationToken ct)
    {
        var request = _request.Value ?? throw new InvalidOperationException("no request in flight");
        try
        {
            return await request.GenerateAsync(ct).ConfigureAwait(false);
        }
        // Only when the client left (a failed write, or the request aborted): a failure of the host's own (its backend,
        // its shutdown) is not the user's to pay for.
        catch (Exception e) when (e is OperationCanceledException or IOException && (request.ClientLeft || ct.IsCancellationRequested)
            && request.StreamedText is { Length: > 0 } sent)
        {
            return sent;
        }
        // The host's own failure after part of the answer was streamed: the error goes to the client as before, but the
        // user has text, so the permit is not released.
        catch (Exception e) when (e is not (OperationCanceledException or IOException) && request.StreamedText is { Length: > 0 })
        {
            throw new PartlyAnsweredException(e);
        }
    }

    private async Task<ServerReply> HandleAsync(ServerRequest request, CancellationToken ct)
    {
        SignedPermit? permit = null;
        if (request.Body.TryGetProperty(HostHttp.PermitField, out var p) && p.ValueKind != JsonValueKind.Null)
        {
            try { permit = SignedPermit.FromJson(p.GetRawText()); }
            catch (ProtocolException e)
            {
                if (Host.Policy == PermitPolicy.Require) throw new RequestRefusedException(HostHttp.RefusedStatus, e.Message, "permit_error");
            }
        }
        // A permit names the query's text (its hash): a prompt of token ids has none, and a permit for any text would
        // then cover whatever ids were sent.
        if (request.TokenIdPrompt)
            throw new RequestRefusedException(400, "A protocol host takes text prompts (a permit names the query's text): send the prompt as text, not token ids.");
        // The text sent is what a client that leaves mid-stream pays for: an echoed prompt is not an answer.
        if (request.Echo)
            throw new RequestRefusedException(400, "A protocol host does not echo the prompt (a receipt names the answer): leave out 'echo'.");
        // A permit covers one query and one answer.
        if (request.Choices != 1)
            throw new RequestRefusedException(400, "A permit covers one prompt and one completion: send a single prompt with n = 1.");
        HostAnswer answer;
        _request.Value = request;
        // The permit's own checks first (cheap, nothing recorded), then the prompt's tokenization and context check (a
        // 400 that spends no permit nonce), then the gate, which records the nonce, and the answer.
        try { Host.Precheck(request.Prompt, permit); }
        catch (QueryRefusedException e) { throw new RequestRefusedException(HostHttp.RefusedStatus, e.Message, "permit_error"); }
        request.Prepare();
        try { answer = await Host.AskAsync(request.Prompt, permit, ct).ConfigureAwait(false); }
        catch (PermitStoreUnavailableException e)
        {
            Console.Error.WriteLine($"oml: warning: {e.Message}");
            throw new RequestRefusedException(503, "The host cannot record permits right now; retry shortly.", "server_error");
        }
        catch (QueryRefusedException e) { throw new RequestRefusedException(HostHttp.RefusedStatus, e.Message, "permit_error"); }
        Store?.Record(answer.Receipt, answer.Receipt.Receipt.HasPermit ? permit : null);
        // HostService keeps its own book in memory too; the store is the durable one, so keep memory flat.
        Host.StartEpoch(0);
        return new ServerReply(answer.Text, new Dictionary<string, string> { [HostHttp.ReceiptHeader] = HostHttp.EncodeReceipt(answer.Receipt) });
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
