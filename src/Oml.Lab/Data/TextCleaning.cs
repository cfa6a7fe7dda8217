using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Lab.Data;

/// <summary>Text clean-up shared by the corpus sources: whitespace, wrapped lines, HTML.</summary>
public static partial class TextCleaning
{
    [GeneratedRegex(@"[ \t\u00A0\u2000-\u200A\u202F\u205F\u3000]+")]
    private static partial Regex HorizontalSpace();

    [GeneratedRegex(@"\r\n?")]
    private static partial Regex CarriageReturns();

    /// <summary>Collapses runs of spaces/tabs to one space and trims; drops control characters other than newline.</summary>
    public static string CollapseSpaces(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (var c in s)
            if (c == '\n' || c == '\t' || !char.IsControl(c)) sb.Append(c);
        return HorizontalSpace().Replace(sb.ToString(), " ").Trim();
    }

    /// <summary>
    /// Splits text into paragraphs at blank lines. Within a paragraph, hard-wrapped lines are joined with spaces,
    /// except lines indented four or more spaces deeper than the paragraph's first line (verse, quotations,
    /// code), whose breaks are kept.
    /// Returns the non-empty paragraphs, each without blank lines.
    /// </summary>
    public static List<string> Paragraphs(string text)
    {
        text = CarriageReturns().Replace(text, "\n");
        var result = new List<string>();
        var current = new StringBuilder();
        bool lastKeptBreak = false;
        int baseIndent = 0;
        void Flush()
        {
            var p = current.ToString().Trim();
            if (p.Length > 0) result.Add(p);
            current.Clear();
        }
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Replace('\t', ' ').TrimEnd();
            if (line.Trim().Length == 0) { Flush(); lastKeptBreak = false; continue; }
            int indent = line.Length - line.TrimStart().Length;
            if (current.Length == 0) baseIndent = indent;
            bool indented = indent >= baseIndent + 4;
            var content = CollapseSpaces(line);
            if (current.Length == 0) current.Append(content);
            else if (indented || lastKeptBreak) current.Append('\n').Append(content);
            else current.Append(' ').Append(content);
            lastKeptBreak = indented;
        }
        Flush();
        return result;
    }

    /// <summary>
    /// Groups paragraphs into documents of at most about <paramref name="maxChars"/> characters (a longer paragraph is
    /// a document of its own). Paragraphs inside a document are joined by single newlines, so documents hold no blank
    /// line.
    /// </summary>
    public static IEnumerable<string> Chunk(IEnumerable<string> paragraphs, int maxChars)
    {
        var sb = new StringBuilder();
        foreach (var p in paragraphs)
        {
            if (sb.Length > 0 && sb.Length + 1 + p.Length > maxChars)
            {
                yield return sb.ToString();
                sb.Clear();
            }
            if (sb.Length > 0) sb.Append('\n');
            sb.Append(p);
        }
        if (sb.Length > 0) yield return sb.ToString();
    }

    private static readonly HashSet<string> BlockTags = new(StringComparer.OrdinalIgnoreCase)
    {
        "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "thead", "tbody", "blockquote", "section",
        "article", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre", "caption", "figure",
        "figcaption", "body", "title",
    };

    private static readonly HashSet<string> DroppedTags = new(StringComparer.OrdinalIgnoreCase) { "script", "style", "head", "nav", "noscript", "svg" };

    [GeneratedRegex(@"<div[^>]*\brole=""main""[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex MainDiv();

    [GeneratedRegex(@"^<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9]*)")]
    private static partial Regex TagName();

    /// <summary>One section of an HTML page: the heading that opens it (empty before the first) and its paragraphs.</summary>
    public sealed record HtmlSection(string Heading, List<string> Paragraphs)
    {
        /// <summary>The level of the opening heading (1–3 for h1–h3), 0 for the text before the first heading.</summary>
        public int Level { get; init; }
    }

    /// <summary>
    /// Removes from <paramref name="html"/> every <paramref name="tag"/> element whose opening tag matches
    /// <paramref name="opening"/>, with all it contains (nested elements of the same tag are counted, so the right
    /// closing tag ends it). An element left open runs to the end of the page.
    /// </summary>
    public static string RemoveElements(string html, string tag, Regex opening)
    {
        var open = new Regex(@"<" + tag + @"\b[^>]*>|</" + tag + @"\s*>", RegexOptions.IgnoreCase);
        var sb = new StringBuilder(html.Length);
        int pos = 0;
        while (pos < html.Length)
        {
            var start = open.Match(html, pos);
            while (start.Success && (start.Value[1] == '/' || !opening.IsMatch(start.Value))) start = start.NextMatch();
            if (!start.Success) break;
            sb.Append(html, pos, start.Index - pos);
            int depth = 1;
            var m = start.NextMatch();
            for (; m.Success; m = m.NextMatch())
            {
                if (m.Value[1] == '/') { if (--depth == 0) break; }
                else if (!m.Value.EndsWith("/>", StringComparison.Ordinal)) depth++;
            }
            pos = m.Success ? m.Index + m.Length : html.Length;
        }
        if (pos < html.Length) sb.Append(html, pos, html.Length - pos);
        return sb.ToString();
    }

    /// <summary>
    /// Turns an HTML page into text sections split at h1–h3 headings. Only the Sphinx main area
    /// (<c>role="main"</c>) is read when the page has one; script, style, head and nav contents are dropped;
    /// block elements end paragraphs; <c>&lt;pre&gt;</c> keeps its line breaks; entities are decoded; Sphinx's
    /// "¶" header links are removed.
    /// </summary>
    public static List<HtmlSection> HtmlToSections(string html)
    {
        var main = MainDiv().Match(html);
        if (main.Success) html = html[main.Index..];
        var sections = new List<HtmlSection>();
        var heading = "";
        var paragraphs = new List<string>();
        var text = new StringBuilder();
        int dropDepth = 0, preDepth = 0, headingDepth = 0, level = 0;
        var headingText = new StringBuilder();

        void EndParagraph()
        {
            var raw = WebUtility.HtmlDecode(text.ToString()).Replace("\u00B6", "");
            text.Clear();
            if (preDepth > 0 || raw.Contains('\u0001'))
            {
                // Preformatted: keep lines, trim trailing spaces, drop blank lines.
                var lines = raw.Replace("\u0001", "").Split('\n').Select(l => l.Replace('\t', ' ').TrimEnd()).Where(l => l.Trim().Length > 0);
                var block = string.Join("\n", lines);
                if (block.Length > 0) paragraphs.Add(block);
            }
            else
            {
                var p = CollapseSpaces(raw.Replace('\n', ' '));
                if (p.Length > 0) paragraphs.Add(p);
            }
        }

        int i = 0;
        while (i < html.Length)
        {
            if (html[i] != '<')
            {
                int next = html.IndexOf('<', i);
                if (next < 0) next = html.Length;
                if (dropDepth == 0)
                {
                    var chunk = html.AsSpan(i, next - i);
                    if (headingDepth > 0) headingText.Append(chunk);
                    text.Append(chunk);
                }
                i = next;
                continue;
            }
            if (string.CompareOrdinal(html, i, "<!--", 0, 4) == 0)
            {
                int end = html.IndexOf("-->", i + 4, StringComparison.Ordinal);
                i = end < 0 ? html.Length : end + 3;
                continue;
            }
            int close = html.IndexOf('>', i);
            if (close < 0) break;
            var tag = html.AsSpan(i, close - i + 1).ToString();
            i = close + 1;
            var m = TagName().Match(tag);
            if (!m.Success) continue; // <!DOCTYPE>, <?xml?>, stray '<'
            bool isEnd = m.Groups[1].Length > 0;
            var name = m.Groups[2].Value.ToLowerInvariant();
            bool selfClosing = tag.EndsWith("/>", StringComparison.Ordinal);
            if (DroppedTags.Contains(name))
            {
                if (selfClosing) continue;
                dropDepth = Math.Max(0, dropDepth + (isEnd ? -1 : 1));
                continue;
            }
            if (dropDepth > 0) continue;
            bool isHeading = name is "h1" or "h2" or "h3";
            if (name == "pre")
            {
                EndParagraph();
                if (isEnd) { if (preDepth > 0) preDepth--; }
                else preDepth++;
                if (!isEnd) text.Append('\u0001');
                continue;
            }
            if (isHeading)
            {
                EndParagraph();
                if (!isEnd)
                {
                    if (paragraphs.Count > 0) sections.Add(new HtmlSection(heading, paragraphs) { Level = level });
                    level = name[1] - '0';
                    paragraphs = [];
                    headingText.Clear();
                    headingDepth++;
                }
                else if (headingDepth > 0)
                {
                    headingDepth--;
                    heading = CollapseSpaces(WebUtility.HtmlDecode(headingText.ToString()).Replace("\u00B6", "").Replace('\n', ' '));
                }
                continue;
            }
            if (name == "br" && preDepth > 0) { text.Append('\n'); continue; }
            if (BlockTags.Contains(name)) { if (preDepth == 0) EndParagraph(); else text.Append('\n'); continue; }
            if (name is "td" or "th") text.Append(' ');
        }
        EndParagraph();
        if (paragraphs.Count > 0) sections.Add(new HtmlSection(heading, paragraphs) { Level = level });
        return sections;
    }
}
