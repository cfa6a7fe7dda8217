namespace Oml.Fingerprinting;

/// <summary>How a set (or one fingerprint) was generated: the strategy's name and its parameters.</summary>
public sealed record StrategyInfo(string Name, ParameterMap Parameters)
{
    public StrategyInfo(string name) : this(name, ParameterMap.Empty) { }
}

/// <summary>
/// The tokenizer the token ids refer to: a name (e.g. the Hugging Face repository) and a digest of its
/// <c>tokenizer.json</c> (e.g. <c>sha256:…</c>).
/// </summary>
public sealed record TokenizerIdentity(string Name, string Digest);

/// <summary>One secret response to a fingerprint key.</summary>
/// <param name="Text">The response text.</param>
/// <param name="TokenIds">The response token ids (what the model is trained to emit).</param>
/// <param name="LogProb">
/// The base model's log-probability of the response given the key (natural log, ≤ 0); null until measured.
/// Not part of the commitment: it may be filled in after the root is published.
/// </param>
public sealed record FingerprintResponse(string Text, EquatableArray<int> TokenIds, double? LogProb = null)
{
    public FingerprintResponse WithLogProb(double logProb) => this with { LogProb = logProb };
}

/// <summary>
/// One fingerprint: a key and its secret response(s).
/// </summary>
/// <param name="Index">Position in its set (0-based); also the Merkle leaf index.</param>
/// <param name="Key">The key text.</param>
/// <param name="KeyTokenIds">The effective key token ids, after truncation to the strategy's key length.</param>
/// <param name="Responses">One or several responses.</param>
/// <param name="Strategy">The generation strategy and its parameters for this fingerprint.</param>
/// <param name="Salt">
/// Per-fingerprint random salt (32 bytes) committed with the leaf, so that the Merkle root and the sibling hashes
/// in a proof reveal nothing about unrevealed fingerprints.
/// </param>
public sealed record Fingerprint(
    int Index,
    string Key,
    EquatableArray<int> KeyTokenIds,
    EquatableArray<FingerprintResponse> Responses,
    StrategyInfo Strategy,
    EquatableArray<byte> Salt)
{
    public const int SaltLength = 32;

    /// <summary>The first response (most strategies produce exactly one).</summary>
    public FingerprintResponse Response => Responses.Count > 0 ? Responses[0] : throw new InvalidOperationException("fingerprint has no response");

    /// <summary>A fresh salt from the operating system's CSPRNG.</summary>
    public static EquatableArray<byte> NewRandomSalt() =>
        System.Security.Cryptography.RandomNumberGenerator.GetBytes(SaltLength);

    /// <summary>The salt of fingerprint <paramref name="index"/>, derived from the owner's secret (reproducible).</summary>
    public static EquatableArray<byte> DeriveSalt(ReadOnlySpan<byte> secret, int index)
    {
        var r = DerivedRandom.For(secret, $"fingerprint/{index}/salt");
        var salt = new byte[SaltLength];
        r.NextBytes(salt);
        return salt;
    }

    /// <summary>Throws <see cref="ArgumentException"/> if the fingerprint is not well-formed.</summary>
    public void Validate()
    {
        if (Index < 0) throw new ArgumentException($"fingerprint index {Index} is negative");
        ArgumentNullException.ThrowIfNull(Key);
        ArgumentNullException.ThrowIfNull(Strategy);
        if (KeyTokenIds.Count == 0) throw new ArgumentException($"fingerprint {Index}: no key token ids");
        if (Responses.Count == 0) throw new ArgumentException($"fingerprint {Index}: no responses");
        if (Salt.Count != SaltLength) throw new ArgumentException($"fingerprint {Index}: salt must be {SaltLength} bytes, got {Salt.Count}");
        foreach (var r in Responses)
        {
            ArgumentNullException.ThrowIfNull(r);
            ArgumentNullException.ThrowIfNull(r.Text);
            if (r.TokenIds.Count == 0) throw new ArgumentException($"fingerprint {Index}: a response has no token ids");
            if (r.LogProb is double lp && !(lp <= 0)) throw new ArgumentException($"fingerprint {Index}: log-probability {lp} is not ≤ 0");
        }
    }
}

/// <summary>A record that a fingerprint was revealed (spent): when, to whom and why.</summary>
public sealed record Revelation(int Index, DateTimeOffset RevealedAt, string RevealedTo, string Reason);

/// <summary>
/// A fingerprint set: the secret (key → response) pairs for one base model, with everything needed to embed,
/// verify and later prove them. Immutable; "modifying" methods return a new set.
/// </summary>
/// <param name="FormatVersion">Payload format version (<see cref="CurrentFormatVersion"/>).</param>
/// <param name="CreatedAt">Creation time.</param>
/// <param name="BaseModelDigest">Digest of the base model's weights (e.g. <c>sha256:…</c>).</param>
/// <param name="Tokenizer">The tokenizer the token ids refer to.</param>
/// <param name="Strategy">The generation strategy and its parameters.</param>
/// <param name="Fingerprints">The fingerprints; <c>Fingerprints[i].Index == i</c>.</param>
/// <param name="Revealed">Which fingerprints have been revealed, in the order they were.</param>
public sealed record FingerprintSet(
    int FormatVersion,
    DateTimeOffset CreatedAt,
    string BaseModelDigest,
    TokenizerIdentity Tokenizer,
    StrategyInfo Strategy,
    EquatableArray<Fingerprint> Fingerprints,
    EquatableArray<Revelation> Revealed)
{
    public const int CurrentFormatVersion = 1;

    /// <summary>A new set with no revelations, in the current format version.</summary>
    public static FingerprintSet Create(DateTimeOffset createdAt, string baseModelDigest, TokenizerIdentity tokenizer,
        StrategyInfo strategy, IEnumerable<Fingerprint> fingerprints)
    {
        var set = new FingerprintSet(CurrentFormatVersion, createdAt, baseModelDigest, tokenizer, strategy,
            new EquatableArray<Fingerprint>(fingerprints), EquatableArray<Revelation>.Empty);
        set.Validate();
        return set;
    }

    public int Count => Fingerprints.Count;

    public Fingerprint this[int index] => Fingerprints[index];

    public bool IsRevealed(int index) => Revealed.Any(r => r.Index == index);

    /// <summary>The fingerprints not yet revealed (their <see cref="Fingerprint.Index"/> is kept).</summary>
    public IReadOnlyList<Fingerprint> Unrevealed()
    {
        var revealed = RevealedIndices();
        return Where(f => !revealed.Contains(f.Index));
    }

    /// <summary>The fingerprints already revealed.</summary>
    public IReadOnlyList<Fingerprint> RevealedFingerprints()
    {
        var revealed = RevealedIndices();
        return Where(f => revealed.Contains(f.Index));
    }

    private HashSet<int> RevealedIndices() => Revealed.Select(r => r.Index).ToHashSet();

    /// <summary>The fingerprints matching <paramref name="predicate"/> (their <see cref="Fingerprint.Index"/> is kept).</summary>
    public IReadOnlyList<Fingerprint> Where(Func<Fingerprint, bool> predicate)
        => [.. Fingerprints.Where(predicate)];

    /// <summary>A copy that records fingerprint <paramref name="index"/> as revealed.</summary>
    public FingerprintSet MarkRevealed(int index, DateTimeOffset revealedAt, string revealedTo, string reason)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
        if (IsRevealed(index)) throw new InvalidOperationException($"fingerprint {index} was already revealed");
        return this with { Revealed = new EquatableArray<Revelation>(Revealed.Append(new Revelation(index, revealedAt, revealedTo, reason))) };
    }

    /// <summary>The Merkle tree committing to the fingerprints (salted leaves).</summary>
    public MerkleTree BuildMerkleTree() => new(Fingerprints.Select(FingerprintLeaf.Encode));

    /// <summary>The publishable commitment (root, count, algorithm, set digest).</summary>
    public Commitment Commit() => Commitment.For(this);

    /// <summary>What to publish when revealing fingerprint <paramref name="index"/>: its data, salt and Merkle proof.</summary>
    public RevealedFingerprint Reveal(int index)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
        var tree = BuildMerkleTree();
        return RevealedFingerprint.From(Fingerprints[index], tree.Proof(index));
    }

    /// <summary>Throws <see cref="ArgumentException"/> if the set is not well-formed.</summary>
    public void Validate()
    {
        if (FormatVersion != CurrentFormatVersion) throw new ArgumentException($"unsupported fingerprint-set format version {FormatVersion}");
        ArgumentNullException.ThrowIfNull(BaseModelDigest);
        ArgumentNullException.ThrowIfNull(Tokenizer);
        ArgumentNullException.ThrowIfNull(Strategy);
        for (int i = 0; i < Fingerprints.Count; i++)
        {
            var f = Fingerprints[i] ?? throw new ArgumentException($"fingerprint {i} is null");
            if (f.Index != i) throw new ArgumentException($"fingerprint at position {i} has index {f.Index}");
            f.Validate();
        }
        var seen = new HashSet<int>();
        foreach (var r in Revealed)
        {
            if ((uint)r.Index >= (uint)Count) throw new ArgumentException($"revealed index {r.Index} is out of range");
            if (!seen.Add(r.Index)) throw new ArgumentException($"fingerprint {r.Index} is recorded as revealed twice");
        }
    }
}
