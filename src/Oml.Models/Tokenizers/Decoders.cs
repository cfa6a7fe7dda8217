using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Models.Tokenizers;

/// <summary>A tokenizer.json decoder: turns the list of token strings into the list of decoded parts.</summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);
}

internal sealed class SequenceDecoder(Decoder[] decoders) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (var d in decoders) tokens = d.DecodeChain(tokens);
        return tokens;
    }
}

/// <summary>ByteLevel: characters back to bytes through the GPT-2 table; a token with a character outside the table
/// contributes its own UTF-8 bytes. The bytes are decoded leniently (invalid sequences become U+FFFD).</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var token in tokens)
        {
            var ok = true;
            foreach (var c in token)
                if (ByteLevel.TryGetByte(c) < 0) { ok = false; break; }
            if (ok) foreach (var c in token) bytes.Add((byte)ByteLevel.TryGetByte(c));
            else bytes.AddRange(Encoding.UTF8.GetBytes(token));
        }
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

internal sealed class ReplaceDecoder(string? literal, Regex? regex, string content) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) =>
        tokens.Select(t => literal != null ? (literal.Length == 0 ? t : t.Replace(literal, content, StringComparison.Ordinal)) : regex!.Replace(t, content.Replace("$", "$$"))).ToList();
}

/// <summary>ByteFallback: runs of &lt;0xNN&gt; tokens become the text of their bytes, or one U+FFFD per byte when the
/// run is not valid UTF-8.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    private static readonly UTF8Encoding Strict = new(false, true);

    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (var token in tokens)
        {
            if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>' && IsHex(token[3]) && IsHex(token[4]))
            {
                pending.Add(Convert.ToByte(token.Substring(3, 2), 16));
                continue;
            }
            Flush(pending, result);
            result.Add(token);
        }
        Flush(pending, result);
        return result;
    }

    private static bool IsHex(char c) => char.IsAsciiHexDigit(c);

    private static void Flush(List<byte> pending, List<string> result)
    {
        if (pending.Count == 0) return;
        try
        {
            result.Add(Strict.GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            for (var i = 0; i < pending.Count; i++) result.Add("\uFFFD");
        }
        pending.Clear();
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Strip: removes up to <c>start</c> leading and <c>stop</c> trailing occurrences of one character from each token.</summary>
internal sealed class StripDecoder(string content, int start, int stop) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        foreach (var token in tokens)
        {
            var runes = token.EnumerateRunes().ToList();
            var s = 0;
            while (s < start && s < runes.Count && runes[s].ToString() == content) s++;
            var e = runes.Count;
            var cut = 0;
            while (cut < stop && e > s && runes[e - 1].ToString() == content) { e--; cut++; }
            var sb = new StringBuilder();
            for (var i = s; i < e; i++) sb.Append(runes[i].ToString());
            result.Add(sb.ToString());
        }
        return result;
    }
}

/// <summary>Metaspace: the replacement character becomes a space, except in the first token when a prefix was prepended.</summary>
internal sealed class MetaspaceDecoder(char replacement, PrependScheme scheme) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (var i = 0; i < tokens.Count; i++)
        {
            var sb = new StringBuilder(tokens[i].Length);
            foreach (var c in tokens[i])
            {
                if (c == replacement)
                {
                    if (i == 0 && scheme != PrependScheme.Never) continue;
                    sb.Append(' ');
                }
                else sb.Append(c);
            }
            result.Add(sb.ToString());
        }
        return result;
    }
}

/// <summary>Post-processor: adds special tokens around the encoded sequence.</summary>
internal abstract class PostProcessor
{
    public abstract void Process(List<int> ids, bool addSpecialTokens);
}

/// <summary>ByteLevel post-processor: it only trims offsets, so ids pass through unchanged.</summary>
internal sealed class IdentityPostProcessor : PostProcessor
{
    public override void Process(List<int> ids, bool addSpecialTokens) { }
}

internal sealed class SequencePostProcessor(PostProcessor[] steps) : PostProcessor
{
    public override void Process(List<int> ids, bool addSpecialTokens)
    {
        foreach (var s in steps) s.Process(ids, addSpecialTokens);
    }
}

/// <summary>TemplateProcessing (single sequence), also used for BertProcessing and RobertaProcessing: the ids before
/// and after the sequence.</summary>
internal sealed class TemplatePostProcessor(int[] before, int[] after) : PostProcessor
{
    public override void Process(List<int> ids, bool addSpecialTokens)
    {
        if (!addSpecialTokens) return;
        ids.InsertRange(0, before);
        ids.AddRange(after);
    }
}
