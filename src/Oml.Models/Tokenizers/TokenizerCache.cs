using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Oml.Models.IO;

namespace Oml.Models.Tokenizers;

/// <summary>
/// A folder of built BPE models, one file per tokenizer.json, named by the SHA-256 of that file's bytes. Building the
/// model of a large tokenizer.json (Llama 3: 9 MB, 128,000 tokens, 280,147 merges) means parsing all of it and checking
/// every merge against the vocabulary; a cache file holds the result (every id's token, the merges as id triplets in
/// rank order) and the rest of tokenizer.json as a small JSON document, so a later load reads a few MB and parses
/// 40 KB instead.
/// </summary>
/// <remarks>
/// A cache file is used only when its header names the same tokenizer.json digest (computed from the bytes read for
/// this load, never from a file name or time stamp) and the SHA-256 of its payload matches the one it records; anything
/// else (a torn or corrupt file, another format version, another tokenizer) is ignored and the file is rebuilt from
/// tokenizer.json and replaced atomically. A cache that cannot be written (read-only folder, full disk) costs nothing
/// but the rebuild: loading never fails because of the cache.
/// </remarks>
public sealed class TokenizerCache
{
    /// <summary>
    /// The environment variable that places or disables the cache: unset or empty, the default folder
    /// (<c>$XDG_CACHE_HOME/oml/tokenizers</c>, else <c>~/.cache/oml/tokenizers</c>); <c>off</c> (or <c>0</c>,
    /// <c>false</c>, <c>no</c>), no cache; anything else, the folder to use.
    /// </summary>
    public const string EnvironmentVariable = "OML_TOKENIZER_CACHE";

    internal const int FormatVersion = 1;
    private static ReadOnlySpan<byte> Magic => "OMLTOKC\n"u8;
    private const int HeaderSize = 8 + 4 + 32 + 32 + 8; // magic, version, source digest, payload digest, payload length

    /// <summary>tokenizer.json files smaller than this (1 MiB) are built directly: they build in milliseconds, and a
    /// cache file for each small tokenizer trained here (tests, the demo) would only fill the folder.</summary>
    public const long DefaultMinimumFileBytes = 1 << 20;

    public TokenizerCache(string directory, long minimumFileBytes = DefaultMinimumFileBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentOutOfRangeException.ThrowIfNegative(minimumFileBytes);
        Directory = Path.GetFullPath(directory);
        MinimumFileBytes = minimumFileBytes;
    }

    /// <summary>The folder holding the cache files (it may be deleted at any time; nothing else is kept there).</summary>
    public string Directory { get; }

    /// <summary>The size a tokenizer.json must have to go through the cache.</summary>
    public long MinimumFileBytes { get; }

    /// <summary>The cache that <see cref="EnvironmentVariable"/> asks for, or null when it is off or there is no home folder to put it in.</summary>
    public static TokenizerCache? FromEnvironment() =>
        BitConverter.IsLittleEndian // the file stores ids and chars in little-endian order
            ? FromEnvironment(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile))
            : null;

    /// <summary><see cref="FromEnvironment()"/> with the variables read through <paramref name="variable"/> and the home folder given.</summary>
    internal static TokenizerCache? FromEnvironment(Func<string, string?> variable, string? home)
    {
        var setting = variable(EnvironmentVariable)?.Trim();
        if (!string.IsNullOrEmpty(setting))
            return setting.ToLowerInvariant() is "off" or "0" or "false" or "no" ? null : new TokenizerCache(setting);
        var xdg = variable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)) return new TokenizerCache(Path.Combine(xdg, "oml", "tokenizers"));
        return string.IsNullOrEmpty(home) ? null : new TokenizerCache(Path.Combine(home, ".cache", "oml", "tokenizers"));
    }

    /// <summary>The cache file of the tokenizer.json whose SHA-256 is <paramref name="sourceDigest"/>.</summary>
    public string PathFor(ReadOnlySpan<byte> sourceDigest) =>
        Path.Combine(Directory, $"{Convert.ToHexStringLower(sourceDigest)}.v{FormatVersion}.omltok");

    /// <summary>The parts read from a valid cache file.</summary>
    internal sealed record Entry(byte[] RestJson, string?[] IdToToken, int[] MergeTriplets);

    /// <summary>Reads the cache file of <paramref name="sourceDigest"/>; <see cref="CacheOutcome.Miss"/> when there is none, <see cref="CacheOutcome.Rejected"/> when it is not valid.</summary>
    internal CacheOutcome TryRead(ReadOnlySpan<byte> sourceDigest, out Entry? entry)
    {
        entry = null;
        byte[] bytes;
        try { bytes = File.ReadAllBytes(PathFor(sourceDigest)); }
        catch (FileNotFoundException) { return CacheOutcome.Miss; }
        catch (DirectoryNotFoundException) { return CacheOutcome.Miss; }
        catch (IOException) { return CacheOutcome.Rejected; }
        catch (UnauthorizedAccessException) { return CacheOutcome.Rejected; }
        try
        {
            entry = Decode(bytes, sourceDigest);
            return CacheOutcome.Hit;
        }
        catch (InvalidDataException) { return CacheOutcome.Rejected; }
    }

    /// <summary>Writes the cache file of <paramref name="sourceDigest"/> atomically; false when it could not be written.</summary>
    internal bool TryWrite(ReadOnlySpan<byte> sourceDigest, byte[] restJson, BpeModel model)
    {
        var bytes = Encode(sourceDigest, restJson, model);
        try
        {
            AtomicFile.Write(PathFor(sourceDigest), s => s.Write(bytes));
            return true;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>tokenizer.json without the model's vocabulary and merges (the part a cache file keeps as JSON).</summary>
    internal static byte[] RestJson(JsonElement root)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var p in root.EnumerateObject())
            {
                if (p.NameEquals("model") && p.Value.ValueKind == JsonValueKind.Object)
                {
                    w.WritePropertyName(p.Name);
                    w.WriteStartObject();
                    foreach (var q in p.Value.EnumerateObject())
                        if (!q.NameEquals("vocab") && !q.NameEquals("merges")) q.WriteTo(w);
                    w.WriteEndObject();
                }
                else p.WriteTo(w);
            }
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    // Layout, little-endian: magic, int32 version, SHA-256 of tokenizer.json, SHA-256 of the payload, int64 payload
    // length; then the payload: int32 n + n bytes of the rest JSON; int32 ids + int32 length per id (-1: no token) +
    // int32 chars + the tokens' UTF-16 code units, concatenated; int32 m + m int32 (the merge triplets).
    internal static byte[] Encode(ReadOnlySpan<byte> sourceDigest, byte[] restJson, BpeModel model)
    {
        var tokens = model.IdToToken;
        long chars = 0;
        foreach (var t in tokens) chars += t?.Length ?? 0;
        var triplets = model.MergeTripletSpan;
        long payloadLength = 4 + restJson.Length + 4 + 4L * tokens.Length + 4 + 2 * chars + 4 + 4L * triplets.Length;
        if (HeaderSize + payloadLength > Array.MaxLength) throw new InvalidOperationException("tokenizer too large for the cache");
        var bytes = new byte[HeaderSize + payloadLength];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], FormatVersion);
        sourceDigest.CopyTo(span[12..]);
        BinaryPrimitives.WriteInt64LittleEndian(span[76..], payloadLength);
        var pos = HeaderSize;
        void Int(int v) { BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(pos), v); pos += 4; }
        Int(restJson.Length);
        restJson.CopyTo(span[pos..]);
        pos += restJson.Length;
        Int(tokens.Length);
        foreach (var t in tokens) Int(t?.Length ?? -1);
        Int(checked((int)chars));
        foreach (var t in tokens)
        {
            if (t == null) continue;
            MemoryMarshal.AsBytes(t.AsSpan()).CopyTo(span[pos..]);
            pos += 2 * t.Length;
        }
        Int(triplets.Length);
        MemoryMarshal.AsBytes(triplets).CopyTo(span[pos..]);
        pos += 4 * triplets.Length;
        if (pos != bytes.Length) throw new InvalidOperationException("tokenizer cache: layout mismatch");
        SHA256.HashData(span[HeaderSize..], span[44..76]);
        return bytes;
    }

    internal static Entry Decode(byte[] file, ReadOnlySpan<byte> sourceDigest)
    {
        static InvalidDataException Bad(string why) => new($"tokenizer cache: {why}");
        ReadOnlySpan<byte> bytes = file;
        if (bytes.Length < HeaderSize || !bytes[..8].SequenceEqual(Magic)) throw Bad("not a cache file");
        if (BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]) != FormatVersion) throw Bad("another format version");
        if (!bytes.Slice(12, 32).SequenceEqual(sourceDigest)) throw Bad("made from another tokenizer.json");
        if (BinaryPrimitives.ReadInt64LittleEndian(bytes[76..]) != bytes.Length - HeaderSize) throw Bad("truncated or extended");
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(bytes[HeaderSize..], digest);
        if (!digest.SequenceEqual(bytes.Slice(44, 32))) throw Bad("payload digest mismatch");

        var pos = HeaderSize;
        var end = bytes.Length;
        int Count(int unit)
        {
            if (end - pos < 4) throw Bad("truncated");
            var n = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(pos));
            pos += 4;
            if (n < 0 || (long)n * unit > end - pos) throw Bad("a count out of range");
            return n;
        }
        var restLength = Count(1);
        var rest = bytes.Slice(pos, restLength).ToArray();
        pos += restLength;
        var ids = Count(4);
        var lengths = MemoryMarshal.Cast<byte, int>(bytes.Slice(pos, 4 * ids));
        pos += 4 * ids;
        var chars = Count(2);
        var text = MemoryMarshal.Cast<byte, char>(bytes.Slice(pos, 2 * chars));
        pos += 2 * chars;
        var idToToken = new string?[ids];
        var at = 0;
        for (var id = 0; id < ids; id++)
        {
            var length = lengths[id];
            if (length == -1) continue;
            if (length < 0 || length > chars - at) throw Bad("a token length out of range");
            idToToken[id] = new string(text.Slice(at, length));
            at += length;
        }
        if (at != chars) throw Bad("token text left over");
        var tripletCount = Count(4);
        var triplets = MemoryMarshal.Cast<byte, int>(bytes.Slice(pos, 4 * tripletCount)).ToArray();
        pos += 4 * tripletCount;
        if (pos != end) throw Bad("trailing bytes");
        return new Entry(rest, idToToken, triplets);
    }
}

/// <summary>What a load through a <see cref="TokenizerCache"/> found.</summary>
public enum CacheOutcome
{
    /// <summary>No cache was given, or the tokenizer.json is smaller than its <see cref="TokenizerCache.MinimumFileBytes"/>.</summary>
    Off,
    /// <summary>A valid cache file was used.</summary>
    Hit,
    /// <summary>There was no cache file; the tokenizer was built from tokenizer.json and its file written.</summary>
    Miss,
    /// <summary>The cache file was not valid (corrupt, torn, another version or tokenizer); rebuilt and replaced.</summary>
    Rejected,
}
