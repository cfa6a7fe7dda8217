using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Fingerprinting.Endpoints;
using Oml.Protocol.Access;
using Oml.Protocol.Claims;
using Oml.Protocol.Core;

namespace Oml.Protocol.Hosting;

/// <summary>
/// How permits and receipts travel over an OpenAI-compatible HTTP API: the signed permit is the request body field
/// <see cref="PermitField"/> (a JSON object: the permit's fields plus "signature"); the host's signed receipt comes
/// back in the response header <see cref="ReceiptHeader"/> as base64 of its UTF-8 JSON. A host that refuses a query
/// answers <see cref="RefusedStatus"/> (402 Payment Required) with an OpenAI-style error body.
/// </summary>
public static class HostHttp
{
    public const string PermitField = "oml_permit";
    public const string ReceiptHeader = "OML-Receipt";
    public const int RefusedStatus = 402;

    public static string EncodeReceipt(SignedReceipt receipt) => Convert.ToBase64String(Encoding.UTF8.GetBytes(receipt.ToJson()));

    /// <summary>Parses a receipt header; throws <see cref="ProtocolException"/> (InvalidReceipt) when malformed.</summary>
    public static SignedReceipt DecodeReceipt(string header)
    {
        byte[] bytes;
        try { bytes = Convert.FromBase64String(header.Trim()); }
        catch (FormatException e) { throw new ProtocolException(ProtocolErrorCode.InvalidReceipt, $"the {ReceiptHeader} header is not base64: {e.Message}", e); }
        return SignedReceipt.FromJson(Encoding.UTF8.GetString(bytes));
    }
}

/// <summary>
/// A licensed host's endpoint reached over HTTP (<see cref="HostHttp"/>): sends the query to
/// <c>{baseUrl}completions</c> with the permit, and returns the answer with the host's receipt.
/// </summary>
public sealed class HttpHostEndpoint : IHostEndpoint, IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsClient;

    /// <param name="baseUrl">The API base, e.g. <c>http://127.0.0.1:8000/v1/</c>.</param>
    /// <param name="settings">Decoding settings sent with each query (greedy, 32 tokens by default).</param>
    public HttpHostEndpoint(Uri baseUrl, CompletionSettings? settings = null, HttpClient? httpClient = null)
    {
        ArgumentNullException.ThrowIfNull(baseUrl);
        if (!baseUrl.IsAbsoluteUri || (baseUrl.Scheme != Uri.UriSchemeHttp && baseUrl.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"'{baseUrl}' is not an http(s) URL", nameof(baseUrl));
        BaseUrl = baseUrl.AbsoluteUri.EndsWith('/') ? baseUrl : new Uri(baseUrl.AbsoluteUri + "/");
        Settings = settings ?? CompletionSettings.Greedy;
        Settings.Validate();
        _ownsClient = httpClient is null;
        _http = httpClient ?? new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
    }

    public Uri BaseUrl { get; }
    public CompletionSettings Settings { get; }

    /// <summary>Attempts in all when the host answers 429 or 503 (busy; the permit not yet admitted).</summary>
    public const int BusyAttempts = 4;

    /// <summary>The longest wait between such attempts, a Retry-After header included.</summary>
    public static readonly TimeSpan MaxBusyWait = TimeSpan.FromSeconds(10);

    public async Task<HostAnswer> AskAsync(string query, SignedPermit? permit, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var body = new JsonObject
        {
            // The settings' model, else the permit's (a protocol host serves its model under the model's id), else "oml".
            ["model"] = Settings.Model ?? permit?.Permit.ModelId ?? "oml",
            ["prompt"] = query,
            ["max_tokens"] = Settings.MaxTokens,
            ["temperature"] = Settings.Temperature,
            ["top_p"] = Settings.TopP,
        };
        if (Settings.Seed is int seed) body["seed"] = seed;
        if (permit is not null) body[HostHttp.PermitField] = permit.ToJsonNode();
        var url = new Uri(BaseUrl, "completions");
        HttpResponseMessage response;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                response = await _http.PostAsync(url, JsonContent.Create(body), ct).ConfigureAwait(false);
            }
            catch (HttpRequestException e)
            {
                throw new CompletionEndpointException(CompletionErrorKind.Network, $"{url}: {e.Message}", inner: e);
            }
            catch (TaskCanceledException e) when (!ct.IsCancellationRequested)
            {
                throw new CompletionEndpointException(CompletionErrorKind.Timeout, $"{url}: no answer within {_http.Timeout.TotalSeconds:F0} s", inner: e);
            }
            // 429 (the host is at its --max-concurrent-requests) and 503 (it cannot record permits right now) come before
            // the host admits the permit, so the same permit is sent again after the wait the host asks for.
            if (response.StatusCode is not (System.Net.HttpStatusCode.TooManyRequests or System.Net.HttpStatusCode.ServiceUnavailable) || attempt >= BusyAttempts)
                break;
            var wait = response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(attempt);
            response.Dispose();
            await Task.Delay(wait < MaxBusyWait ? wait : MaxBusyWait, ct).ConfigureAwait(false);
        }
        using (response)
        {
            string text = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            if ((int)response.StatusCode == HostHttp.RefusedStatus)
                throw new QueryRefusedException(ErrorMessage(text) ?? "the host refused the query");
            if (!response.IsSuccessStatusCode)
                throw new CompletionEndpointException(CompletionErrorKind.HttpStatus,
                    $"{url}: HTTP {(int)response.StatusCode} {response.StatusCode}: {ErrorMessage(text) ?? text}", (int)response.StatusCode);
            string answer;
            try
            {
                answer = JsonNode.Parse(text)?["choices"]?[0]?["text"]?.GetValue<string>()
                    ?? throw new FormatException("no choices[0].text");
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse, $"{url}: not a completion: {e.Message}", (int)response.StatusCode, inner: e);
            }
            if (!response.Headers.TryGetValues(HostHttp.ReceiptHeader, out var values))
                throw new CompletionEndpointException(CompletionErrorKind.MalformedResponse, $"{url}: the answer carries no {HostHttp.ReceiptHeader} header (not an OML host?)", (int)response.StatusCode);
            return new HostAnswer(answer, HostHttp.DecodeReceipt(string.Join("", values)));
        }
    }

    private static string? ErrorMessage(string body)
    {
        try { return JsonNode.Parse(body)?["error"]?["message"]?.GetValue<string>(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { return null; }
    }

    public void Dispose()
    {
        if (_ownsClient) _http.Dispose();
    }
}
