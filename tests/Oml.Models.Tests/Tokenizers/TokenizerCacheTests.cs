using System.Security.Cryptography;
using System.Text.Json;
using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Tokenizers;

/// <summary>
/// The tokenizer cache: a tokenizer read from its cache file is the one built from tokenizer.json (same ids, text,
/// vocabulary), and a cache file is used only when it is intact and made from the same tokenizer.json; anything else is
/// rebuilt and replaced atomically.
/// </summary>
public class TokenizerCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-tokcache-" + Guid.NewGuid().ToString("N"));

    public TokenizerCacheTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TokenizerCache Cache(string name = "cache") => new(Path.Combine(_dir, name), minimumFileBytes: 0);

    private static (string Json, string? Config) Files(string folder)
    {
        var config = Path.Combine(folder, "tokenizer_config.json");
        return (Path.Combine(folder, "tokenizer.json"), File.Exists(config) ? config : null);
    }

    private static Tokenizer Load(string folder, TokenizerCache? cache, out CacheOutcome outcome)
    {
        var (json, config) = Files(folder);
        return Tokenizer.Load(json, config, cache, out outcome);
    }

    private static byte[] Digest(string folder) => SHA256.HashData(File.ReadAllBytes(Files(folder).Json));

    /// <summary>The texts of the Hugging Face parity tests and of the reference cases, with their reference ids (null for the parity texts).</summary>
    private static List<(string Text, int[]? Ids)> Texts(string? referenceName)
    {
        var texts = HfParityTests.Texts().Select(t => (t, (int[]?)null)).ToList();
        if (referenceName == null) return texts;
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.TokenizerCases(referenceName)));
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            texts.Add((c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray()));
        return texts;
    }

    /// <summary>Same ids (with and without special tokens), same decoded text, same vocabulary and special tokens.</summary>
    private static void AssertSame(Tokenizer expected, Tokenizer actual, IEnumerable<(string Text, int[]? Ids)> texts)
    {
        Assert.Equal(expected.VocabSize, actual.VocabSize);
        Assert.Equal(expected.BosTokenId, actual.BosTokenId);
        Assert.Equal(expected.EosTokenId, actual.EosTokenId);
        for (var id = -1; id < expected.VocabSize + 300; id++)
        {
            Assert.Equal(expected.IdToToken(id), actual.IdToToken(id));
            Assert.Equal(expected.IsSpecialToken(id), actual.IsSpecialToken(id));
        }
        var n = 0;
        foreach (var (text, reference) in texts)
        {
            var ids = actual.Encode(text);
            Assert.Equal(expected.Encode(text), ids);
            if (reference != null) Assert.Equal(reference, ids);
            Assert.Equal(expected.Encode(text, addSpecialTokens: true), actual.Encode(text, addSpecialTokens: true));
            Assert.Equal(expected.Decode(ids), actual.Decode(ids));
            Assert.Equal(expected.Decode(ids, skipSpecialTokens: true), actual.Decode(ids, skipSpecialTokens: true));
            n++;
        }
        Assert.True(n >= 300, $"only {n} texts");
    }

    /// <summary>A small byte-level BPE tokenizer trained here (fast to build, so the cache tests stay quick).</summary>
    private string Trained(string name, int vocabSize)
    {
        var dir = Path.Combine(_dir, name);
        var (vocab, merges) = BpeTrainer.Train(HfParityTests.Texts(), vocabSize);
        BpeTrainer.Save(dir, vocab, merges);
        return dir;
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void A_tokenizer_read_from_its_cache_file_is_the_one_built_from_json(string name)
    {
        var folder = Fixtures.Tokenizer(name);
        var plain = Load(folder, null, out var off);
        Assert.Equal(CacheOutcome.Off, off);
        var cache = Cache();
        var built = Load(folder, cache, out var first);
        Assert.Equal(CacheOutcome.Miss, first);
        Assert.True(File.Exists(cache.PathFor(Digest(folder))));
        var cached = Load(folder, cache, out var second);
        Assert.Equal(CacheOutcome.Hit, second);

        var texts = Texts(name);
        AssertSame(plain, built, texts);
        AssertSame(plain, cached, texts);
        var digest = "sha256:" + Convert.ToHexStringLower(Digest(folder));
        Assert.Equal(digest, plain.FileDigest);
        Assert.Equal(digest, cached.FileDigest);
    }

    [Fact]
    public void A_corrupt_cache_file_is_rejected_rebuilt_and_then_used()
    {
        var folder = Trained("small", 600);
        var cache = Cache();
        var plain = Load(folder, null, out _);
        Load(folder, cache, out var first);
        Assert.Equal(CacheOutcome.Miss, first);
        var file = cache.PathFor(Digest(folder));
        var bytes = File.ReadAllBytes(file);
        var flipped = (byte[])bytes.Clone();
        flipped[bytes.Length / 2] ^= 0x40;   // in the payload: its digest no longer matches
        File.WriteAllBytes(file, flipped);

        var rebuilt = Load(folder, cache, out var second);
        Assert.Equal(CacheOutcome.Rejected, second);
        AssertSame(plain, rebuilt, Texts(null));
        Assert.Equal(bytes, File.ReadAllBytes(file));   // replaced by a good file
        Load(folder, cache, out var third);
        Assert.Equal(CacheOutcome.Hit, third);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("empty")]
    [InlineData("garbage")]
    [InlineData("version")]
    [InlineData("extended")]
    public void A_damaged_cache_file_is_rejected(string damage)
    {
        var folder = Trained("small", 600);
        var cache = Cache();
        var plain = Load(folder, cache, out _);
        var file = cache.PathFor(Digest(folder));
        var bytes = File.ReadAllBytes(file);
        byte[] damaged = damage switch
        {
            "truncated" => bytes[..(bytes.Length - 7)],
            "empty" => [],
            "garbage" => [.. Enumerable.Range(0, bytes.Length).Select(i => (byte)(i * 31))],
            "version" => Patched(bytes, 8, TokenizerCache.FormatVersion + 1),
            "extended" => [.. bytes, 0, 0, 0, 0],
            _ => throw new ArgumentException(damage),
        };
        File.WriteAllBytes(file, damaged);
        var loaded = Load(folder, cache, out var outcome);
        Assert.Equal(CacheOutcome.Rejected, outcome);
        AssertSame(plain, loaded, Texts(null));
        Load(folder, cache, out var again);
        Assert.Equal(CacheOutcome.Hit, again);
    }

    private static byte[] Patched(byte[] bytes, int offset, int value)
    {
        var copy = (byte[])bytes.Clone();
        BitConverter.GetBytes(value).CopyTo(copy, offset);
        return copy;
    }

    [Fact]
    public void An_intact_file_with_ids_out_of_range_is_not_trusted()
    {
        // The payload digest is recomputed, so only the model's own checks can catch it.
        var folder = Trained("small", 600);
        var cache = Cache();
        var plain = Load(folder, cache, out _);
        var file = cache.PathFor(Digest(folder));
        var bytes = Patched(File.ReadAllBytes(file), File.ReadAllBytes(file).Length - 4, int.MaxValue); // the last merge's merged id
        SHA256.HashData(bytes.AsSpan(84), bytes.AsSpan(44, 32));
        File.WriteAllBytes(file, bytes);
        var loaded = Load(folder, cache, out var outcome);
        Assert.Equal(CacheOutcome.Rejected, outcome);
        AssertSame(plain, loaded, Texts(null));
    }

    [Fact]
    public void The_cache_file_of_another_tokenizer_is_not_used()
    {
        var a = Trained("a", 600);
        var b = Trained("b", 400);
        var cache = Cache();
        var plainA = Load(a, cache, out _);
        var plainB = Load(b, null, out _);
        Assert.Contains(Texts(null), t => !plainA.Encode(t.Text).SequenceEqual(plainB.Encode(t.Text)));   // the two differ
        // A's file put where B's belongs: its header names A's tokenizer.json, so B is built from its own file.
        File.Copy(cache.PathFor(Digest(a)), cache.PathFor(Digest(b)));
        var loaded = Load(b, cache, out var outcome);
        Assert.Equal(CacheOutcome.Rejected, outcome);
        AssertSame(plainB, loaded, Texts(null));

        // A tokenizer.json changed in place gets its own cache file: the old one is keyed by the old bytes.
        File.Copy(Path.Combine(a, "tokenizer.json"), Path.Combine(b, "tokenizer.json"), overwrite: true);
        var changed = Load(b, cache, out var afterChange);
        Assert.Equal(CacheOutcome.Hit, afterChange);   // A's file, under A's digest, which B's folder now holds
        AssertSame(plainA, changed, Texts(null));
    }

    [Fact]
    public void The_cache_file_is_replaced_atomically()
    {
        var folder = Trained("small", 600);
        var cache = Cache();
        Load(folder, cache, out _);
        var file = cache.PathFor(Digest(folder));
        var garbage = Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray();
        File.WriteAllBytes(file, garbage);
        // A reader that opened the old file keeps reading it whole: the new file is written beside it and renamed over
        // it, not written into it.
        using var reader = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        Load(folder, cache, out var outcome);
        Assert.Equal(CacheOutcome.Rejected, outcome);
        var seen = new byte[garbage.Length + 1];
        var n = reader.ReadAtLeast(seen, seen.Length, throwOnEndOfStream: false);
        Assert.Equal(garbage, seen[..n]);
        Load(folder, cache, out var again);
        Assert.Equal(CacheOutcome.Hit, again);
        Assert.Equal([file], Directory.GetFiles(cache.Directory));   // no temporary file left behind
    }

    [Fact]
    public void Small_tokenizers_and_unwritable_caches_cost_nothing()
    {
        var folder = Trained("small", 600);
        var defaults = new TokenizerCache(Path.Combine(_dir, "defaults"));
        Assert.True(new FileInfo(Files(folder).Json).Length < defaults.MinimumFileBytes);
        Load(folder, defaults, out var small);
        Assert.Equal(CacheOutcome.Off, small);
        Assert.False(Directory.Exists(defaults.Directory));

        var blocked = Path.Combine(_dir, "a-file");
        File.WriteAllText(blocked, "not a folder");
        var unwritable = new TokenizerCache(blocked, minimumFileBytes: 0);
        var plain = Load(folder, null, out _);
        for (var i = 0; i < 2; i++)
        {
            var loaded = Load(folder, unwritable, out var outcome);
            Assert.Equal(CacheOutcome.Miss, outcome);
            AssertSame(plain, loaded, Texts(null));
        }
    }

    [Fact]
    public void The_environment_places_or_disables_the_cache()
    {
        static TokenizerCache? From(string? setting, string? xdg, string? home) =>
            TokenizerCache.FromEnvironment(name => name switch
            {
                TokenizerCache.EnvironmentVariable => setting,
                "XDG_CACHE_HOME" => xdg,
                _ => null,
            }, home);

        Assert.Equal("/home/u/.cache/oml/tokenizers", From(null, null, "/home/u")?.Directory);
        Assert.Equal("/home/u/.cache/oml/tokenizers", From("", "relative/ignored", "/home/u")?.Directory);
        Assert.Equal("/x/oml/tokenizers", From(null, "/x", "/home/u")?.Directory);
        Assert.Equal("/elsewhere", From("/elsewhere", "/x", "/home/u")?.Directory);
        foreach (var off in new[] { "off", "0", "false", "no", " OFF " }) Assert.Null(From(off, "/x", "/home/u"));
        Assert.Null(From(null, null, null));
    }
}
