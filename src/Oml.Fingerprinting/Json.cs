using System.Text.Json.Serialization;

namespace Oml.Fingerprinting;

// JSON shapes of the payload, kept apart from the public records so the file format is explicit and stable.
// Every ToModel() checks for missing fields and throws FormatException.

internal sealed class SetDto
{
    public int FormatVersion { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public string? BaseModelDigest { get; set; }
    public TokenizerDto? Tokenizer { get; set; }
    public StrategyDto? Strategy { get; set; }
    public List<FingerprintDto>? Fingerprints { get; set; }
    public List<RevelationDto>? Revealed { get; set; }

    /// <summary>Container version 2: the owner's secret (base64), kept beside the set, not part of it.</summary>
    public string? OwnerSecret { get; set; }

    public static SetDto From(FingerprintSet s) => new()
    {
        FormatVersion = s.FormatVersion,
        CreatedAt = s.CreatedAt,
        BaseModelDigest = s.BaseModelDigest,
        Tokenizer = new TokenizerDto { Name = s.Tokenizer.Name, Digest = s.Tokenizer.Digest },
        Strategy = StrategyDto.From(s.Strategy),
        Fingerprints = [.. s.Fingerprints.Select(FingerprintDto.From)],
        Revealed = [.. s.Revealed.Select(r => new RevelationDto { Index = r.Index, RevealedAt = r.RevealedAt, RevealedTo = r.RevealedTo, Reason = r.Reason })],
    };

    public FingerprintSet ToModel() => new(
        FormatVersion,
        CreatedAt,
        BaseModelDigest ?? throw Missing("baseModelDigest"),
        new TokenizerIdentity(Tokenizer?.Name ?? throw Missing("tokenizer.name"), Tokenizer.Digest ?? throw Missing("tokenizer.digest")),
        (Strategy ?? throw Missing("strategy")).ToModel(),
        [.. (Fingerprints ?? throw Missing("fingerprints")).Select(f => (f ?? throw Missing("fingerprint")).ToModel())],
        [.. (Revealed ?? []).Select(r => (r ?? throw Missing("revelation")).ToModel())]);

    internal static FormatException Missing(string field) => new($"missing field '{field}'");
}

internal sealed class TokenizerDto
{
    public string? Name { get; set; }
    public string? Digest { get; set; }
}

internal sealed class StrategyDto
{
    public string? Name { get; set; }
    public SortedDictionary<string, string>? Parameters { get; set; }

    public static StrategyDto From(StrategyInfo s) => new()
    {
        Name = s.Name,
        Parameters = new SortedDictionary<string, string>(s.Parameters.ToDictionary(), StringComparer.Ordinal),
    };

    public StrategyInfo ToModel() => new(Name ?? throw SetDto.Missing("strategy.name"), new ParameterMap(Parameters ?? []));
}

internal sealed class FingerprintDto
{
    public int Index { get; set; }
    public string? Key { get; set; }
    public int[]? KeyTokenIds { get; set; }
    public List<ResponseDto>? Responses { get; set; }
    public StrategyDto? Strategy { get; set; }
    public byte[]? Salt { get; set; }

    public static FingerprintDto From(Fingerprint f) => new()
    {
        Index = f.Index,
        Key = f.Key,
        KeyTokenIds = [.. f.KeyTokenIds],
        Responses = [.. f.Responses.Select(r => new ResponseDto { Text = r.Text, TokenIds = [.. r.TokenIds], LogProb = r.LogProb })],
        Strategy = StrategyDto.From(f.Strategy),
        Salt = [.. f.Salt],
    };

    public Fingerprint ToModel() => new(
        Index,
        Key ?? throw SetDto.Missing("key"),
        KeyTokenIds ?? throw SetDto.Missing("keyTokenIds"),
        [.. (Responses ?? throw SetDto.Missing("responses")).Select(r => (r ?? throw SetDto.Missing("response")).ToModel())],
        (Strategy ?? throw SetDto.Missing("fingerprint.strategy")).ToModel(),
        Salt ?? throw SetDto.Missing("salt"));
}

internal sealed class ResponseDto
{
    public string? Text { get; set; }
    public int[]? TokenIds { get; set; }
    public double? LogProb { get; set; }

    public FingerprintResponse ToModel() => new(Text ?? throw SetDto.Missing("response.text"), TokenIds ?? throw SetDto.Missing("response.tokenIds"), LogProb);
}

internal sealed class RevelationDto
{
    public int Index { get; set; }
    public DateTimeOffset RevealedAt { get; set; }
    public string? RevealedTo { get; set; }
    public string? Reason { get; set; }

    public Revelation ToModel() => new(Index, RevealedAt, RevealedTo ?? throw SetDto.Missing("revealedTo"), Reason ?? throw SetDto.Missing("reason"));
}

internal sealed class RevealDto
{
    public int Index { get; set; }
    public string? Key { get; set; }
    public int[]? KeyTokenIds { get; set; }
    public List<RevealedResponseDto>? Responses { get; set; }
    public byte[]? Salt { get; set; }
    public int LeafCount { get; set; }
    public List<ProofStepDto>? Proof { get; set; }

    public static RevealDto From(RevealedFingerprint r) => new()
    {
        Index = r.Index,
        Key = r.Key,
        KeyTokenIds = [.. r.KeyTokenIds],
        Responses = [.. r.Responses.Select(x => new RevealedResponseDto { Text = x.Text, TokenIds = [.. x.TokenIds] })],
        Salt = [.. r.Salt],
        LeafCount = r.Proof.LeafCount,
        Proof = [.. r.Proof.Steps.Select(s => new ProofStepDto { Sibling = Convert.ToHexStringLower(s.Sibling.AsSpan()), Side = s.SiblingIsLeft ? "left" : "right" })],
    };

    public RevealedFingerprint ToModel() => new(
        Index,
        Key ?? throw SetDto.Missing("key"),
        KeyTokenIds ?? throw SetDto.Missing("keyTokenIds"),
        [.. (Responses ?? throw SetDto.Missing("responses")).Select(r => new RevealedResponse(
            r?.Text ?? throw SetDto.Missing("response.text"), r.TokenIds ?? throw SetDto.Missing("response.tokenIds")))],
        Salt ?? throw SetDto.Missing("salt"),
        new MerkleProof(Index, LeafCount, [.. (Proof ?? throw SetDto.Missing("proof")).Select(s => new MerkleStep(
            Convert.FromHexString(s?.Sibling ?? throw SetDto.Missing("proof.sibling")),
            (s.Side ?? throw SetDto.Missing("proof.side")) switch
            {
                "left" => true,
                "right" => false,
                var other => throw new FormatException($"proof side must be 'left' or 'right', not '{other}'"),
            }))]));
}

internal sealed class RevealedResponseDto
{
    public string? Text { get; set; }
    public int[]? TokenIds { get; set; }
}

internal sealed class ProofStepDto
{
    public string? Sibling { get; set; }
    public string? Side { get; set; }
}

/// <summary>The envelope header (JSON, integrity-checked with SHA-256 and bound as AES-GCM associated data).</summary>
internal sealed class HeaderDto
{
    public string? Format { get; set; }
    public int Version { get; set; }
    public string? Encryption { get; set; }
    public KdfDto? Kdf { get; set; }
    public string? Nonce { get; set; }
    public string? KeyCheck { get; set; }
    public int TagLength { get; set; }
    public long PayloadLength { get; set; }
    public string? PayloadSha256 { get; set; }
}

internal sealed class KdfDto
{
    public string? Name { get; set; }
    public int Iterations { get; set; }
    public string? Salt { get; set; }
    public int KeyLength { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(SetDto))]
[JsonSerializable(typeof(RevealDto))]
[JsonSerializable(typeof(HeaderDto))]
[JsonSerializable(typeof(Commitment))]
internal sealed partial class FingerprintJsonContext : JsonSerializerContext;
