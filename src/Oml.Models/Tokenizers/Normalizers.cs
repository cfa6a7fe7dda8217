using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Models.Tokenizers;

/// <summary>A tokenizer.json normalizer: rewrites the text of one segment (the parts between added tokens).</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);
}

internal sealed class SequenceNormalizer(Normalizer[] normalizers) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var n in normalizers) text = n.Normalize(text);
        return text;
    }
}

/// <summary>NFC/NFD with the project's own tables (see <see cref="UnicodeNormalization"/>).</summary>
internal sealed class UnicodeNormalizer(bool compose) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, compose);
}

internal sealed class PrependNormalizer(string prepend) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prepend + text;
}

internal sealed class ReplaceNormalizer(string? literal, Regex? regex, string content) : Normalizer
{
    public override string Normalize(string text) =>
        literal != null ? (literal.Length == 0 ? text : text.Replace(literal, content, StringComparison.Ordinal)) : regex!.Replace(text, content.Replace("$", "$$"));
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => left && right ? text.Trim() : left ? text.TrimStart() : right ? text.TrimEnd() : text;
}
