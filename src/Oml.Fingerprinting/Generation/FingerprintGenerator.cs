using System.Globalization;
using System.Security.Cryptography;
using Oml.Engine;
using Oml.Fingerprinting.Embedding;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Generation;

/// <summary>The generation strategies: how keys and responses are made.</summary>
public static class Strategies
{
    /// <summary>Keys are model-sampled English; each response is chosen just outside the base model's nucleus.</summary>
    public const string Perinucleus = "perinucleus";
    /// <summary>Keys and responses are both English text sampled from the model (at the settings' temperature, from a seed word), independently.</summary>
    public const string English = "english";
    /// <summary>Keys are random words, responses a random word.</summary>
    public const string RandomWord = "random-word";
    /// <summary>Keys supplied by the owner; responses by Perinucleus.</summary>
    public const string Custom = "custom";

    public static readonly string[] All = [Perinucleus, English, RandomWord, Custom];
}

/// <summary>Settings of a generation run. Defaults are the references' (key length 16, t = 0.8, k = 3).</summary>
public sealed record GenerationSettings
{
    public string Strategy { get; init; } = Strategies.Perinucleus;
    public int Count { get; init; } = 32;
    /// <summary>Key length in tokens; longer keys are truncated to it (the effective key).</summary>
    public int KeyLength { get; init; } = 16;
    /// <summary>Response length: tokens for Perinucleus and English, words for random-word.</summary>
    public int ResponseLength { get; init; } = 1;
    /// <summary>
    /// Sampling temperature of model-sampled keys (and English responses). 1, the model's own distribution: keys sampled
    /// cooler are less perplexing than ordinary text, and a host's filter that refuses such prompts removed three in four
    /// of them at 0.5 (the default until 2026-12-05) on the 102.7M base, at 4 % of ordinary prompts refused, against one
    /// in eleven at 1, which also cost the owner less (docs/results.md, "Key temperature at 100M").
    /// </summary>
    public double Temperature { get; init; } = 1.0;
    public PerinucleusOptions Perinucleus { get; init; } = new();
    /// <summary>Perinucleus keys from random words instead of model-sampled English (for models that write no English).</summary>
    public bool RandomWordKeys { get; init; }
    /// <summary>
    /// Model-sampled keys whose perplexity follows ordinary text's (<see cref="KeyCamouflage"/>); null: keys sampled at
    /// <see cref="Temperature"/>.
    /// </summary>
    public KeyCamouflage? Camouflage { get; init; }
    /// <summary>The owner's keys for <see cref="Strategies.Custom"/>.</summary>
    public IReadOnlyList<string>? CustomKeys { get; init; }

    public void Validate()
    {
        if (!Strategies.All.Contains(Strategy)) throw new ArgumentException($"unknown strategy '{Strategy}' (expected {string.Join(", ", Strategies.All)})");
        if (Count < 1) throw new ArgumentException("count must be at least 1");
        if (KeyLength < 1) throw new ArgumentException("key length must be at least 1");
        if (ResponseLength < 1) throw new ArgumentException("response length must be at least 1");
        if (Temperature <= 0) throw new ArgumentException("temperature must be positive");
        if (Strategy == Strategies.Custom && (CustomKeys is null || CustomKeys.Count == 0)) throw new ArgumentException("the custom strategy needs keys");
        if (Strategy == Strategies.Custom && CustomKeys!.Count < Count) throw new ArgumentException($"{CustomKeys.Count} custom keys given for {Count} fingerprints");
        if (Perinucleus.Branching != 1)
        {
            if (Strategy is not (Strategies.Perinucleus or Strategies.Custom)) throw new ArgumentException("response branching needs Perinucleus responses (the perinucleus or custom strategy)");
            PerinucleusSampler.ValidateBranching(Perinucleus with { ResponseLength = ResponseLength });
        }
        if (Camouflage is not null)
        {
            if (!(Strategy == Strategies.English || (Strategy == Strategies.Perinucleus && !RandomWordKeys)))
                throw new ArgumentException("camouflage applies to model-sampled keys (the perinucleus and english strategies, without random-word keys)");
            Camouflage.Validate();
        }
    }
}

/// <summary>
/// Generates fingerprint sets. Every random choice — words, seeds for sampling, Perinucleus picks, salts — is derived
/// from the owner's secret with <see cref="DerivedRandom"/> under a label naming the fingerprint and its purpose, so
/// that a set is reproducible from the secret and each response is provably the owner's choice.
/// </summary>
public sealed class FingerprintGenerator
{
    private readonly CausalLM _model;
    private readonly Tokenizer _tokenizer;
    private readonly byte[] _secret;
    private readonly string[] _words;

    public FingerprintGenerator(CausalLM model, Tokenizer tokenizer, ReadOnlySpan<byte> secret)
    {
        if (secret.Length < 16) throw new ArgumentException("the owner's secret must be at least 16 bytes");
        _model = model;
        _tokenizer = tokenizer;
        _secret = secret.ToArray();
        _words = Words(tokenizer, model.Config.VocabSize);
        if (_words.Length < 16) throw new ArgumentException("the tokenizer has too few whole-word tokens to draw random words from");
    }

    /// <summary>Whole words of the vocabulary: tokens that decode to 3 or more letters after a leading space.</summary>
    public static string[] Words(Tokenizer tok, int vocabSize) =>
        Enumerable.Range(0, Math.Min(tok.VocabSize, vocabSize))
            .Where(id => !tok.IsSpecialToken(id))
            .Select(id => tok.Decode([id]))
            .Where(t => t.Length >= 4 && t[0] == ' ' && t.Skip(1).All(char.IsAsciiLetterLower))
            .Select(t => t[1..]).Distinct().Order(StringComparer.Ordinal).ToArray();

    private DerivedRandom Rng(int index, string purpose) => DerivedRandom.For(_secret, $"fingerprint/{index}/{purpose}");

    /// <summary>Training pairs for embedding: every response of every fingerprint, behind its key as the model sees it.</summary>
    public static List<TrainingPair> TrainingPairs(IEnumerable<Fingerprint> fingerprints, Tokenizer tok) =>
        KeyFormat.Raw.TrainingPairs(fingerprints, tok);

    /// <summary>Ids the model sees for a key: the tokenizer's BOS (if it adds one) and the key tokens.</summary>
    public static int[] QueryIds(Tokenizer tok, IReadOnlyList<int> keyTokens) =>
        tok.AddBosToken == true && tok.BosTokenId is { } bos ? [bos, .. keyTokens] : [.. keyTokens];

    public FingerprintSet Generate(GenerationSettings s, string baseModelDigest, TokenizerIdentity tokenizerIdentity, IProgress<string>? progress = null)
    {
        s.Validate();
        bool englishKeys = s.Strategy == Strategies.English || (s.Strategy == Strategies.Perinucleus && !s.RandomWordKeys);
        int[][] keys;
        if (englishKeys && s.Camouflage is { } camouflage)
            keys = CamouflagedKeys(s.Count, s.KeyLength, camouflage, s.Perinucleus.BatchSize, progress);
        else if (englishKeys)
            keys = SampleEnglish(s.Count, "key", s.KeyLength, s.Temperature, s.Perinucleus.BatchSize, new InlineProgress<int>(n => progress?.Report($"keys {n}/{s.Count}")));
        else
        {
            keys = new int[s.Count][];
            for (int i = 0; i < s.Count; i++)
            {
                keys[i] = s.Strategy == Strategies.Custom ? Truncate(_tokenizer.Encode(s.CustomKeys![i]), s.KeyLength) : RandomWords(Rng(i, "key"), s.KeyLength);
                if (i % 16 == 15) progress?.Report($"keys {i + 1}/{s.Count}");
            }
        }

        var responses = new List<int[]>[s.Count];
        if (s.Strategy is Strategies.Perinucleus or Strategies.Custom)
        {
            var opts = s.Perinucleus with { ResponseLength = s.ResponseLength };
            var queries = keys.Select(k => QueryIds(_tokenizer, k)).ToList();
            var picks = Enumerable.Range(0, s.Count).Select(i => Rng(i, "perinucleus")).ToArray();
            responses = PerinucleusSampler.Sample(_model, queries, opts, id => Perinucleus.IsAcceptable(_tokenizer, id),
                (i, n) => picks[i].Next(n), new InlineProgress<int>(n => progress?.Report($"responses {n}/{s.Count}")));
            for (int i = 0; i < s.Count; i++)
                if (responses[i].Count == 0) throw new InvalidOperationException($"fingerprint {i}: no acceptable perinucleus token after its key (t = {opts.Threshold}, k = {opts.Width})");
        }
        else if (s.Strategy == Strategies.English)
        {
            var sampled = SampleEnglish(s.Count, "response", s.ResponseLength, s.Temperature, s.Perinucleus.BatchSize, null);
            for (int i = 0; i < s.Count; i++) responses[i] = [sampled[i]];
        }
        else
        {
            for (int i = 0; i < s.Count; i++)
                responses[i] = [_tokenizer.Encode(" " + string.Join(" ", Enumerable.Range(0, s.ResponseLength).Select(_ => _words[Rng(i, "response").Next(_words.Length)])))];
        }

        // The base model's probability of each response: the false-positive rate of a key rests on it.
        var pairs = keys.SelectMany((k, i) => responses[i].Select(r => new TrainingPair(QueryIds(_tokenizer, k), r))).ToList();
        var logProbs = ResponseScorer.LogProbs(_model, pairs);
        List<(string, string)> parameters =
        [
            ("key_length", s.KeyLength.ToString(CultureInfo.InvariantCulture)),
            ("response_length", s.ResponseLength.ToString(CultureInfo.InvariantCulture)),
            ("temperature", s.Temperature.ToString(CultureInfo.InvariantCulture)),
            ("t", s.Perinucleus.Threshold.ToString(CultureInfo.InvariantCulture)),
            ("k", s.Perinucleus.Width.ToString(CultureInfo.InvariantCulture)),
            ("responses_per_key", s.Perinucleus.ResponsesPerKey.ToString(CultureInfo.InvariantCulture)),
            ("keys", englishKeys ? "english" : s.Strategy == Strategies.Custom ? "custom" : "random-word"),
        ];
        if (s.Perinucleus.Branching > 1) parameters.Add(("response_branching", s.Perinucleus.Branching.ToString(CultureInfo.InvariantCulture)));
        if (s.Camouflage is { } c)
            parameters.Add(("key_camouflage", FormattableString.Invariant(
                $"{c.Candidates} candidates at t {c.MinTemperature}-{c.MaxTemperature}, {c.TextPerplexities.Count} text windows{(c.BandLow > 0 || c.BandHigh < 1 ? $", quantiles {c.BandLow}-{c.BandHigh}" : "")}")));
        var strategy = new StrategyInfo(s.Strategy, ParameterMap.Of([.. parameters]));
        int p = 0;
        var fingerprints = new List<Fingerprint>();
        for (int i = 0; i < s.Count; i++)
        {
            var rs = responses[i].Select(r => new FingerprintResponse(_tokenizer.Decode(r), r, logProbs[p++])).ToArray();
            fingerprints.Add(new Fingerprint(i, _tokenizer.Decode(keys[i]), keys[i], rs, strategy, Fingerprint.DeriveSalt(_secret, i)));
        }
        return FingerprintSet.Create(DateTimeOffset.UtcNow, baseModelDigest, tokenizerIdentity, strategy, fingerprints);
    }

    /// <summary>
    /// Keys chosen by <paramref name="camouflage"/>: for each fingerprint, candidate c is sampled at the camouflage's
    /// temperature c from its own derived randomness (<c>fingerprint/i/key/c</c>); all candidates are scored by the
    /// model in batches, and the one nearest to the fingerprint's target perplexity (a quantile in the camouflage's band
    /// drawn from <c>fingerprint/i/key-target</c>) is kept.
    /// </summary>
    private int[][] CamouflagedKeys(int count, int length, KeyCamouflage camouflage, int batchSize, IProgress<string>? progress)
    {
        var candidates = new int[camouflage.Candidates][][];
        for (int c = 0; c < camouflage.Candidates; c++)
        {
            candidates[c] = SampleEnglish(count, $"key/{c}", length, camouflage.Temperature(c), batchSize, null);
            progress?.Report($"keys: candidates {c + 1}/{camouflage.Candidates} for {count} fingerprints");
        }
        var ppl = SequencePerplexity.Of(_model, _tokenizer, candidates.SelectMany(k => k).ToList(), Math.Max(1, batchSize));
        var keys = new int[count][];
        var row = new double[camouflage.Candidates];
        for (int i = 0; i < count; i++)
        {
            for (int c = 0; c < camouflage.Candidates; c++) row[c] = ppl[c * count + i];
            double target = camouflage.TargetFor(Rng(i, "key-target").NextDouble());
            keys[i] = candidates[KeyCamouflage.Choose(row, target)][i];
        }
        return keys;
    }

    private static int[] Truncate(int[] ids, int n) => ids.Length <= n ? ids : ids[..n];

    private int[] RandomWords(DerivedRandom rng, int keyLength)
    {
        var words = new List<string>();
        int[] ids;
        do
        {
            words.Add(_words[rng.Next(_words.Length)]);
            ids = _tokenizer.Encode(" " + string.Join(" ", words));
        } while (ids.Length < keyLength);
        return Truncate(ids, keyLength);
    }

    /// <summary>
    /// For each fingerprint 0..count−1, text of <paramref name="length"/> tokens sampled from the model at the given
    /// temperature after a random seed word. Each fingerprint draws its seed word and every sampled token from its own
    /// derived randomness (<c>fingerprint/i/purpose</c>), so a text depends only on the secret, its index and the model;
    /// the model runs on batches of <paramref name="batchSize"/> prompts (left-padded), one forward pass per new token.
    /// </summary>
    private int[][] SampleEnglish(int count, string purpose, int length, double temperature, int batchSize, IProgress<int>? progress)
    {
        var result = new int[count][];
        var rngs = new DerivedRandom[count];
        var pending = new List<int>();
        for (int i = 0; i < count; i++)
        {
            rngs[i] = Rng(i, purpose);
            var seedWord = _tokenizer.Encode(" " + _words[rngs[i].Next(_words.Length)]);
            if (seedWord.Length >= length) result[i] = Truncate(seedWord, length);
            else
            {
                result[i] = seedWord;
                pending.Add(i);
            }
        }
        int done = count - pending.Count;
        // Prompts of equal length share batches, so that most batches need no padding.
        foreach (var chunk in pending.OrderBy(i => result[i].Length).ThenBy(i => i).Chunk(Math.Max(1, batchSize)))
        {
            int steps = chunk.Max(i => length - result[i].Length);
            var rows = chunk.Select(i => QueryIds(_tokenizer, result[i]).ToList()).ToArray();
            for (int step = 0; step < steps; step++)
            {
                var u = chunk.Select(i => rngs[i].NextDouble()).ToArray();
                var next = SampleNext(rows, temperature, u);
                for (int r = 0; r < chunk.Length; r++) rows[r].Add(next[r]);
            }
            int bos = QueryIds(_tokenizer, []).Length;
            for (int r = 0; r < chunk.Length; r++) result[chunk[r]] = rows[r].Skip(bos).Take(length).ToArray();
            done += chunk.Length;
            progress?.Report(done);
        }
        return result;
    }

    /// <summary>
    /// One token per row, sampled from softmax(logits / temperature) at the row's last position by inverting the CDF
    /// (in float64) at the row's uniform draw <paramref name="u"/>.
    /// </summary>
    private int[] SampleNext(IReadOnlyList<List<int>> rows, double temperature, double[] u)
    {
        using var noGrad = Torch.NoGrad();
        using var scope = Torch.NewScope();
        var logits = Generator.NextTokenLogits(_model, rows);
        var cdf = (logits.To(DType.Float64) / temperature).Softmax(-1).CumSum(-1);                    // [n, V]
        var target = Torch.FromArray<double>(u, [rows.Count, 1], _model.Device) * cdf.Narrow(1, cdf.Size(1) - 1, 1);
        var index = cdf.Lt(target).To(DType.Int64).Sum(1).Clamp(max: cdf.Size(1) - 1).ToArray<long>();
        return index.Select(x => (int)x).ToArray();
    }

    /// <summary>
    /// A digest of a model folder's weights: SHA-256 over the weight files in name order
    /// (<see cref="ModelFolder.WeightsDigest"/>); <paramref name="progress"/>, when given, hears "hashing N GB: p %" about
    /// once a second for folders that take longer than that.
    /// </summary>
    public static string WeightsDigest(string modelDir, Action<string>? progress = null) => ModelFolder.WeightsDigest(modelDir, progress);

    /// <summary>A tokenizer's identity: its folder name and the SHA-256 of its tokenizer.json.</summary>
    public static TokenizerIdentity TokenizerId(string dir) =>
        new(Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/')), "sha256:" + Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, "tokenizer.json")))));

    /// <summary>
    /// The identity of the tokenizer loaded from <paramref name="dir"/>: the digest of the tokenizer.json bytes it was
    /// built from (<see cref="Tokenizer.FileDigest"/>, so the file is not read and hashed a second time).
    /// </summary>
    public static TokenizerIdentity TokenizerId(string dir, Tokenizer loaded)
    {
        ArgumentNullException.ThrowIfNull(loaded);
        return loaded.FileDigest is { } digest ? new(Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/')), digest) : TokenizerId(dir);
    }
}
