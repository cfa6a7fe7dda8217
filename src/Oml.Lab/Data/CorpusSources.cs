using System.Text;
using System.Text.RegularExpressions;

namespace Oml.Lab.Data;

/// <summary>A word sense taken from a dictionary source, for templated instruction data.</summary>
public sealed record LexiconEntry(string Source, string Word, string? PartOfSpeech, string Definition,
    IReadOnlyList<string> Synonyms, IReadOnlyList<string> Antonyms);

/// <summary>
/// One document a source yields: its cleaned text (no blank lines), and the structured records drawn from it
/// (dictionary senses; whether it is a short quotation), which follow the document into its split.
/// </summary>
public sealed record SourceDocument(string Text)
{
    public IReadOnlyList<LexiconEntry> Lexicon { get; init; } = [];
    public bool IsQuotation { get; init; }
}

/// <summary>A corpus source: the Debian packages it comes from, their licence, and how to read it.</summary>
public abstract partial class CorpusSource
{
    public abstract string Name { get; }
    public abstract IReadOnlyList<string> Packages { get; }
    public abstract string Licence { get; }
    public abstract string Description { get; }

    /// <summary>The files this source reads under <paramref name="root"/> ("/" on a real system); empty when missing.</summary>
    public abstract IReadOnlyList<string> Files(string root);

    public abstract IEnumerable<SourceDocument> Read(string root);

    protected static string Under(string root, string path) => Path.Combine(root, path.TrimStart('/'));

    /// <summary>
    /// The files matching <paramref name="pattern"/> anywhere under <paramref name="dir"/> whose path relative to it
    /// (with '/') <paramref name="include"/> accepts, in ordinal order; empty when the folder is missing.
    /// </summary>
    protected static IReadOnlyList<string> FilesUnder(string root, string dir, string pattern, Func<string, bool> include)
    {
        var top = Under(root, dir);
        if (!Directory.Exists(top)) return [];
        return Directory.EnumerateFiles(top, pattern, SearchOption.AllDirectories)
            .Where(f => include(Path.GetRelativePath(top, f).Replace('\\', '/')))
            .Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>The index and body of a dictd database under /usr/share/dictd, or nothing unless both exist.</summary>
    protected static IReadOnlyList<string> DictdFiles(string root, string name)
    {
        string[] files = [Under(root, $"/usr/share/dictd/{name}.index"), Under(root, $"/usr/share/dictd/{name}.dict.dz")];
        return files.All(File.Exists) ? files : [];
    }

    /// <summary>All the sources of the lab corpus, in the order they are read.</summary>
    public static IReadOnlyList<CorpusSource> All { get; } =
    [
        new GcideSource(), new WordNetSource(), new DevilSource(), new FortunesSource(),
        new HtmlDocsSource("python-docs", ["python3.11-doc"], "PSF-2.0",
            "The Python 3.11 documentation (library reference, tutorial, HOWTOs), HTML", "/usr/share/doc/python3.11/html",
            rel => !rel.StartsWith('_') && !rel.StartsWith("genindex", StringComparison.Ordinal)
                   && rel is not ("search.html" or "py-modindex.html" or "whatsnew/changelog.html")),
        new HtmlDocsSource("debian-reference", ["debian-reference-en"], "GPL-2+",
            "The Debian Reference (English), HTML", "/usr/share/debian-reference", rel => rel.EndsWith(".en.html", StringComparison.Ordinal)),
        new HtmlDocsSource("gnu-standards", ["gnu-standards"], "GFDL-1.3+",
            "GNU Coding Standards and Information for GNU Maintainers, HTML", "/usr/share/doc/gnu-standards", _ => true),
        // Added for the larger bases (issue 12): more dictionaries and manuals of the archive, English only.
        new DictdTextSource("foldoc", "dict-foldoc", "GFDL-1.1+", "Free On-line Dictionary of Computing (dictd database)"),
        new DictdTextSource("jargon", "dict-jargon", "public domain (Jargon File 4.4.7)", "The Jargon File 4.4.7 (dictd database)"),
        new DictdTextSource("vera", "dict-vera", "GFDL-1.1+", "V.E.R.A., Virtual Entity of Relevant Acronyms (dictd database)"),
        new HtmlDocsSource("postgresql-docs", ["postgresql-doc-15"], "PostgreSQL (BSD-like)",
            "The PostgreSQL 15 manual, HTML", "/usr/share/doc/postgresql-doc-15/html", _ => true),
        new HtmlDocsSource("git-docs", ["git-doc"], "GPL-2",
            "Git's manual pages, user manual and technical notes, HTML", "/usr/share/doc/git-doc", _ => true),
        new HtmlDocsSource("debian-policy", ["debian-policy"], "GPL-2+ (Debian Policy Manual licence)",
            "The Debian Policy Manual and its sub-policies, HTML", "/usr/share/doc/debian-policy",
            rel => !rel.Contains("_static/", StringComparison.Ordinal) && !rel.EndsWith("genindex.html", StringComparison.Ordinal)
                   && !rel.EndsWith("search.html", StringComparison.Ordinal)),
        new HtmlDocsSource("developers-reference", ["developers-reference"], "MIT-like (see the package's copyright file)",
            "The Debian Developer's Reference (English), HTML", "/usr/share/developers-reference",
            rel => !rel.StartsWith('_') && rel is not ("search.html" or "genindex.html")),
        new HtmlDocsSource("debian-handbook", ["debian-handbook"], "GPL-2+ or CC-BY-SA-3.0",
            "The Debian Administrator's Handbook (English), HTML", "/usr/share/doc/debian-handbook/html/en-US", _ => true),
        new HtmlDocsSource("sqlite-docs", ["sqlite3-doc"], "public domain",
            "The SQLite documentation (not the release logs), HTML", "/usr/share/doc/sqlite3",
            rel => !rel.StartsWith("releaselog/", StringComparison.Ordinal) && rel is not ("changes.html" or "chronology.html")),
        // Added for the 100M-parameter base (corpus2): the larger documentation trees of bookworm main, English only.
        new HtmlDocsSource("linux-docs", ["linux-doc-6.1"], "GPL-2",
            "The Linux 6.1 kernel documentation (Documentation/, built by Sphinx), HTML", "/usr/share/doc/linux-doc-6.1/html", SphinxPage),
        new HtmlDocsSource("rust-docs", ["rust-doc"], "MIT or Apache-2.0",
            "Rust 1.63 books (The Rust Programming Language, reference, nomicon, Rust by Example, edition guide, rustc and "
            + "rustdoc books) and the std, core and alloc API pages (not the architecture intrinsics or the source listings), HTML",
            "/usr/share/doc/rust-doc/html",
            rel => !rel.StartsWith("src/", StringComparison.Ordinal) && !rel.Contains("/arch/", StringComparison.Ordinal)
                   && !rel.Contains("/core_arch/", StringComparison.Ordinal) && !rel.StartsWith("implementors/", StringComparison.Ordinal)
                   && !rel.EndsWith("print.html", StringComparison.Ordinal) && !rel.EndsWith("/all.html", StringComparison.Ordinal)
                   && rel is not ("settings.html" or "not_found.html" or "error-index.html"))
        {
            // The lists of trait implementations repeat one boilerplate line per trait and type.
            SkipSection = h => h is "Trait Implementations" or "Auto Trait Implementations" or "Blanket Implementations" or "Implementors",
        },
        new HtmlDocsSource("openjdk-docs", ["openjdk-17-doc"], "GPL-2 with the Classpath exception",
            "The Java 17 API documentation (javadoc; not the class-use pages, indexes and trees), HTML",
            "/usr/share/doc/openjdk-17-jre-headless/api",
            rel => !rel.Contains("class-use/", StringComparison.Ordinal) && !rel.StartsWith("index-files/", StringComparison.Ordinal)
                   && !rel.EndsWith("-tree.html", StringComparison.Ordinal) && !rel.EndsWith("-index.html", StringComparison.Ordinal)
                   && rel is not ("serialized-form.html" or "constant-values.html" or "deprecated-list.html" or "help-doc.html"
                       or "search.html" or "new-list.html" or "preview-list.html" or "system-properties.html"))
        {
            // The summary tables repeat the first sentence of each member's description, which the details give in full.
            SkipSection = h => h.EndsWith(" Summary", StringComparison.Ordinal),
        },
        new HtmlDocsSource("qt5-docs", ["qtbase5-doc-html"], "GFDL-1.3 (no invariant sections)",
            "The Qt 5.15 base modules documentation (overviews and class references, not the member lists), HTML", "/usr/share/qt5/doc",
            rel => !rel.EndsWith("-members.html", StringComparison.Ordinal) && !rel.EndsWith("-obsolete.html", StringComparison.Ordinal))
        {
            // Lists of member signatures; the "... Documentation" sections describe the same members.
            SkipSection = h => h is "Public Types" or "Properties" or "Public Functions" or "Reimplemented Public Functions" or "Public Slots"
                or "Signals" or "Static Public Members" or "Protected Functions" or "Reimplemented Protected Functions" or "Protected Slots"
                or "Macros" or "Public Variables" or "Static Public Variables" or "Protected Variables" or "Related Non-Members",
        },
        new HtmlDocsSource("django-docs", ["python-django-doc"], "BSD-3-Clause",
            "The Django 3.2 documentation (not the release notes), HTML", "/usr/share/doc/python-django-doc/html",
            rel => SphinxPage(rel) && !rel.StartsWith("releases/", StringComparison.Ordinal)),
        new HtmlDocsSource("scipy-docs", ["python-scipy-doc"], "BSD-3-Clause",
            "The SciPy 1.10 documentation (tutorial, reference), HTML", "/usr/share/doc/python-scipy-doc/html", SphinxPage),
        new HtmlDocsSource("nodejs-docs", ["nodejs-doc"], "MIT",
            "The Node.js 18 API documentation (one page per module, not the all-in-one page), HTML", "/usr/share/doc/nodejs/api",
            rel => rel != "all.html"),
        new HtmlDocsSource("cmake-docs", ["cmake-doc"], "BSD-3-Clause",
            "The CMake 3.25 manual, HTML", "/usr/share/doc/cmake-data/html", SphinxPage),
        new HtmlDocsSource("erlang-docs", ["erlang-doc"], "Apache-2.0",
            "The Erlang/OTP 25 documentation (system guides, application manuals), HTML", "/usr/share/doc/erlang-doc",
            rel => !rel.Contains("/java/", StringComparison.Ordinal) && !rel.EndsWith("/notes.html", StringComparison.Ordinal)),
        new HtmlDocsSource("sphinx-docs", ["sphinx-doc"], "BSD-2-Clause",
            "The Sphinx 5.3 documentation, HTML", "/usr/share/doc/sphinx-doc/html", SphinxPage),
        new HtmlDocsSource("octave-docs", ["octave-doc"], "GPL-3+",
            "The GNU Octave 7.3 manual, HTML", "/usr/share/doc/octave", _ => true),
        new HtmlDocsSource("abs-guide", ["abs-guide"], "public domain",
            "Mendel Cooper, Advanced Bash-Scripting Guide, HTML", "/usr/share/doc/abs-guide/html", _ => true),
        new HtmlDocsSource("boost-docs", ["libboost1.81-doc"], "BSL-1.0",
            "The Boost 1.81 library documentation, HTML", "/usr/share/doc/libboost1.81-doc", _ => true),
        new HtmlDocsSource("sklearn-docs", ["python-sklearn-doc"], "BSD-3-Clause",
            "The scikit-learn 1.2 documentation (user guide, API reference; not the example galleries), HTML",
            "/usr/share/doc/python-sklearn-doc/html", rel => SphinxPage(rel) && !rel.StartsWith("auto_examples/", StringComparison.Ordinal)),
        new HtmlDocsSource("astropy-docs", ["python-astropy-doc"], "BSD-3-Clause",
            "The Astropy 5.2 documentation (not the change log), HTML", "/usr/share/doc/python-astropy-doc/html",
            rel => SphinxPage(rel) && rel != "changelog.html"),
        new HtmlDocsSource("lilypond-docs", ["lilypond-doc-html"], "GFDL-1.3+",
            "The LilyPond 2.24 manuals (learning, notation, usage, extending, essay, music glossary, contributor's guide, web "
            + "site; not the internals reference, the snippets or the one-page copies), English HTML", "/usr/share/doc/lilypond/html/Documentation",
            rel => rel.Contains('/') && !rel.EndsWith("-big-page.html", StringComparison.Ordinal)
                   && !rel.StartsWith("internals/", StringComparison.Ordinal) && !rel.StartsWith("snippets/", StringComparison.Ordinal)
                   && !rel.StartsWith("changes/", StringComparison.Ordinal))
        {
            Prepare = html => TextCleaning.RemoveElements(TextCleaning.RemoveElements(html, "div", LilyPondChrome()), "table", LilyPondNavTable()),
        },
        new HtmlDocsSource("gnucash-docs", ["gnucash-docs"], "GFDL-1.1+ (no invariant sections)",
            "The GnuCash 4.13 Tutorial and Concepts Guide and Help Manual, English HTML", "/usr/share/doc/gnucash-docs",
            rel => rel.StartsWith("gnucash-guide-en/", StringComparison.Ordinal) || rel.StartsWith("gnucash-help-en/", StringComparison.Ordinal)),
        new HtmlDocsSource("pacemaker-docs", ["pacemaker-doc"], "CC-BY-SA-4.0",
            "The Pacemaker 2.1 books (Clusters from Scratch, Pacemaker Explained, Administration, Development, Remote; "
            + "not the API reference), HTML", "/usr/share/doc/pacemaker",
            rel => rel.EndsWith("/singlehtml/index.html", StringComparison.Ordinal) || rel == "crm_fencing.html"),
        new HtmlDocsSource("sympy-docs", ["python-sympy-doc"], "BSD-3-Clause",
            "The SymPy 1.11 documentation, HTML", "/usr/share/doc/python-sympy-doc/html", SphinxPage),
        new HtmlDocsSource("twisted-docs", ["twisted-doc"], "Expat",
            "The Twisted 22.4 documentation (how-tos; not the API reference, mostly \"Undocumented\" stubs), HTML", "/usr/share/doc/twisted-doc/html",
            rel => SphinxPage(rel) && !rel.StartsWith("api/", StringComparison.Ordinal)),
        new HtmlDocsSource("sqlalchemy-docs", ["python-sqlalchemy-doc"], "Expat",
            "The SQLAlchemy 1.4 documentation (not the change logs), HTML", "/usr/share/doc/python-sqlalchemy-doc/html",
            rel => SphinxPage(rel) && !rel.StartsWith("changelog/", StringComparison.Ordinal)),
        new HtmlDocsSource("anarchist-faq", ["anarchism"], "GPL-2",
            "An Anarchist FAQ, version 15.3 (a book-length essay), HTML", "/usr/share/doc/anarchism/html", _ => true),
        new HtmlDocsSource("installation-guide", ["installation-guide-amd64"], "GPL-2",
            "The Debian 12 Installation Guide for amd64, English HTML", "/usr/share/doc/installation-guide-amd64/en", _ => true),
        new HtmlDocsSource("cppreference", ["cppreference-doc-en-html"], "CC-BY-SA-3.0 or GFDL (no invariant sections)",
            "cppreference.com's C and C++ reference (2017 snapshot), English HTML", "/usr/share/cppreference/doc/html/en", _ => true)
        {
            Prepare = html => TextCleaning.RemoveElements(html, "div", CppreferenceChrome()),
        },
        new HtmlDocsSource("maxima-docs", ["maxima-doc"], "GPL-2",
            "The Maxima 5.46 manual, HTML", "/usr/share/doc/maxima-doc/html", _ => true),
        new HtmlDocsSource("gnuplot-docs", ["gnuplot-doc"], "gnuplot licence (free, modifications as patches)",
            "The gnuplot 5.4 manual, HTML", "/usr/share/doc/gnuplot/htmldocs", _ => true),
        new HtmlDocsSource("gimp-help", ["gimp-help-en"], "GFDL-1.2+ (no invariant sections)",
            "The GIMP 2.10 user manual, English HTML", "/usr/share/gimp/2.0/help/en", _ => true)
        {
            Prepare = html => TextCleaning.RemoveElements(html, "div", DocBookChrome()),
        },
        new HtmlDocsSource("racket-docs", ["racket-doc"], "MIT or Apache-2.0 (Racket); LGPL for some libraries",
            "The Racket 8.7 documentation (guide, reference, libraries, teaching languages), HTML", "/usr/share/doc/racket",
            rel => !rel.StartsWith("search/", StringComparison.Ordinal) && !rel.StartsWith("local-redirect/", StringComparison.Ordinal)
                   && !rel.Contains("/doc-index", StringComparison.Ordinal) && !rel.StartsWith("release/", StringComparison.Ordinal))
        {
            Prepare = html => TextCleaning.RemoveElements(html, "div", RacketChrome()),
        },
        new HtmlDocsSource("pandas-docs", ["python-pandas-doc"], "BSD-3-Clause",
            "The pandas 1.5 documentation (user guide, API reference; not the release notes), HTML", "/usr/share/doc/python-pandas-doc/html",
            rel => SphinxPage(rel) && !rel.StartsWith("whatsnew", StringComparison.Ordinal) && rel != "release.html"),
        new HtmlDocsSource("kicad-docs", ["kicad-doc-en"], "GPL-3+",
            "The KiCad 6.0 manuals, English HTML", "/usr/share/doc/kicad/help/en", _ => true)
        {
            Prepare = html => TextCleaning.RemoveElements(html, "div", KicadToc()),
        },
        new PodSource("perl-docs", ["perl-doc"], "GPL-1+ or Artistic",
            "The Perl 5.36 manual (perlfunc, perlop, perlre, the tutorials and FAQs; not the perl*delta change logs or the "
            + "table of contents), POD", "/usr/share/perl/5.36.0/pod",
            rel => !rel.Contains("delta", StringComparison.Ordinal) && rel != "perltoc.pod"),
        new VimHelpSource(),
    ];

    // DocBook's navigation header and footer.
    [GeneratedRegex(@"\bclass=""(?:navheader|navfooter)""")]
    private static partial Regex DocBookChrome();

    // Scribble's table of contents and navigation bars.
    [GeneratedRegex(@"\bclass=""(?:tocset|navsettop|navsetbottom)""")]
    private static partial Regex RacketChrome();

    [GeneratedRegex(@"\bid=""toc""")]
    private static partial Regex KicadToc();

    // LilyPond's side table of contents, footer and highlighting switch; its navigation bars are tables.
    [GeneratedRegex(@"\bid=""(?:tocframe|footer|highlighting-settings)""")]
    private static partial Regex LilyPondChrome();

    [GeneratedRegex(@"\bclass=""nav_table""")]
    private static partial Regex LilyPondNavTable();

    // cppreference's navigation menu, "From cppreference.com" and breadcrumb lines, and "Retrieved from" footer.
    [GeneratedRegex(@"\b(?:class=""(?:t-navbar|printfooter)""|id=""(?:siteSub|contentSub|cpp-footer-base|catlinks)"")")]
    private static partial Regex CppreferenceChrome();

    /// <summary>A Sphinx page with text: not the sources, static files, indexes or search page.</summary>
    private static bool SphinxPage(string rel) =>
        !rel.StartsWith('_') && !rel.Contains("/_", StringComparison.Ordinal)
        && !rel.EndsWith("genindex.html", StringComparison.Ordinal) && !rel.EndsWith("search.html", StringComparison.Ordinal)
        && !rel.EndsWith("py-modindex.html", StringComparison.Ordinal) && !rel.EndsWith("objects.html", StringComparison.Ordinal);
}

/// <summary>Helpers for the dictd-based sources.</summary>
public static partial class DictText
{
    [GeneratedRegex(@"\[[^\]\n]*(?:Webster|PJC|WordNet)[^\]\n]*\]")]
    private static partial Regex SourceTag();

    [GeneratedRegex(@"\[([=~`'"",.^*-]?)([a-zA-Z]{1,2})(\^|um)?\]")]
    private static partial Regex AccentCode();

    [GeneratedRegex(@"\{([^{}]*)\}")]
    private static partial Regex Braces();

    private static readonly Dictionary<string, string> Named = new(StringComparer.Ordinal)
    {
        ["ae"] = "æ", ["AE"] = "Æ", ["oe"] = "œ", ["OE"] = "Œ", ["thorn"] = "þ", ["eth"] = "ð", ["deg"] = "°",
        ["sect"] = "§", ["root"] = "√", ["imac"] = "ī", ["ng"] = "ŋ",
    };

    /// <summary>
    /// Turns GCIDE's markup into plain Unicode: source tags ("[1913 Webster]") dropped, accent codes ("[=a]", "[aum]",
    /// "[ae]") composed, cross-reference braces removed.
    /// </summary>
    public static string CleanGcide(string s)
    {
        s = SourceTag().Replace(s, "");
        s = AccentCode().Replace(s, m =>
        {
            var mark = m.Groups[1].Value;
            var letters = m.Groups[2].Value;
            bool umlaut = m.Groups[3].Value == "um";
            if (mark.Length == 0 && !umlaut && m.Groups[3].Value.Length == 0)
                return Named.TryGetValue(letters, out var named) ? named : m.Value; // "[Obs]"-like words stay
            string combining = umlaut ? "\u0308" : mark switch
            {
                "=" => "\u0304", "~" => "\u0303", "`" => "\u0300", "'" => "\u0301", "\"" => "\u0308", "," => "\u0327",
                "." => "\u0307", "^" => "\u0302", _ => "",
            };
            return letters.Length == 1 ? Oml.Models.Data.TextNormalization.ToNfc(letters + combining) : letters;
        });
        foreach (var (code, text) in Named) s = s.Replace("[" + code + "]", text, StringComparison.Ordinal);
        return Braces().Replace(s, "$1");
    }

    public static List<string> SplitList(string s) =>
        s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(x => Braces().Replace(x, "$1").Trim()).Where(x => x.Length > 0).ToList();
}

/// <summary>GCIDE: the GNU Collaborative International Dictionary of English (Webster's 1913 plus additions).</summary>
public sealed partial class GcideSource : CorpusSource
{
    public override string Name => "gcide";
    public override IReadOnlyList<string> Packages => ["dict-gcide"];
    public override string Licence => "GPL-2+";
    public override string Description => "GNU Collaborative International Dictionary of English 0.48 (dictd database)";
    public override IReadOnlyList<string> Files(string root) =>
        DictdFiles(root, "gcide");

    // "Abase \A*base"\ ([.a]*b[=a]s"), v. t." -> the headword, then pronunciation between backslashes and in parentheses.
    [GeneratedRegex(@"^(?<word>[^\\\n]+?)\s*\\[^\\\n]*\\\s*(?:\([^()\n]*\))?")]
    private static partial Regex Header();

    [GeneratedRegex(@"\s*\\[^\\\n]*\\")]
    private static partial Regex Pronunciation();

    [GeneratedRegex(@"^,?\s*(?<pos>n|v\. t|v\. i|v|a|adv|prep|conj|interj|pron)\.(?:\s*pl\.)?(?=[\s,;\[]|$)")]
    private static partial Regex PartOfSpeech();

    public override IEnumerable<SourceDocument> Read(string root)
    {
        var db = DictdFile.Open(Under(root, "/usr/share/dictd/gcide"));
        foreach (var (headword, body) in db.Entries())
        {
            var header = Header().Match(body);
            string rest = header.Success ? header.Groups["word"].Value + body[header.Length..] : body;
            // Entries with several headwords ("Diacritic \...\, Diacritical \...\, a.") carry more pronunciations.
            int eol = rest.IndexOf('\n');
            if (eol < 0) eol = rest.Length;
            rest = Pronunciation().Replace(rest[..eol], "") + rest[eol..];
            var paragraphs = TextCleaning.Paragraphs(DictText.CleanGcide(rest));
            if (paragraphs.Count == 0) continue;
            var lexicon = new List<LexiconEntry>();
            var word = header.Success ? DictText.CleanGcide(header.Groups["word"].Value).Trim() : headword;
            var posMatch = PartOfSpeech().Match(paragraphs[0][Math.Min(word.Length, paragraphs[0].Length)..]);
            string? pos = posMatch.Success ? PosName(posMatch.Groups["pos"].Value) : null;
            var def = posMatch.Success ? FirstDefinition(paragraphs, word.Length + posMatch.Length) : null;
            if (def is not null && !word.Contains(' ')) lexicon.Add(new LexiconEntry(Name, word, pos, def, [], []));
            yield return new SourceDocument(string.Join("\n", paragraphs)) { Lexicon = lexicon };
        }
    }

    /// <summary>
    /// The first sense of an entry: "1. ..." in the header paragraph or a later one, else the header paragraph's text
    /// after the part of speech, etymology bracket and field label; cut before "2." and attributions ("--Shak.").
    /// </summary>
    private static string? FirstDefinition(List<string> paragraphs, int afterHeader)
    {
        string? text = null;
        var header = paragraphs[0].Replace('\n', ' ');
        int one = header.IndexOf(" 1. ", StringComparison.Ordinal);
        if (one >= 0) text = header[(one + 4)..];
        else
        {
            foreach (var p in paragraphs.Skip(1))
                if (p.StartsWith("1. ", StringComparison.Ordinal)) { text = p[3..].Replace('\n', ' '); break; }
            if (text is null && paragraphs.Count >= 1)
            {
                var rest = header[Math.Min(afterHeader, header.Length)..].TrimStart(' ', ';', ',');
                rest = SkipBracketed(rest, '[', ']');
                text = rest;
            }
        }
        if (text is null) return null;
        text = SkipBracketed(text.Trim(), '(', ')');
        int two = text.IndexOf(" 2. ", StringComparison.Ordinal);
        if (two >= 0) text = text[..two];
        int attribution = text.IndexOf(" --", StringComparison.Ordinal);
        if (attribution >= 0) text = text[..attribution];
        text = text.Trim();
        if (text.EndsWith(" as,", StringComparison.Ordinal) || text.EndsWith(';')) text = text.TrimEnd(';', ',').Trim();
        return text.Length >= 3 && char.IsLetter(text[0]) && !text.StartsWith("See ", StringComparison.Ordinal) ? text : null;
    }

    private static string SkipBracketed(string s, char open, char close)
    {
        s = s.TrimStart();
        if (s.Length == 0 || s[0] != open) return s;
        int depth = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == open) depth++;
            else if (s[i] == close && --depth == 0) return s[(i + 1)..].TrimStart(' ', '.', ',');
        }
        return s;
    }

    private static string PosName(string code) => code switch
    {
        "n" => "noun", "v. t" or "v. i" or "v" => "verb", "a" => "adjective", "adv" => "adverb", "prep" => "preposition",
        "conj" => "conjunction", "interj" => "interjection", "pron" => "pronoun", _ => code,
    };
}

/// <summary>WordNet 3.0 as packaged for dictd: senses with glosses, examples, synonyms and antonyms.</summary>
public sealed partial class WordNetSource : CorpusSource
{
    public override string Name => "wordnet";
    public override IReadOnlyList<string> Packages => ["dict-wn"];
    public override string Licence => "WordNet-3.0 (Princeton WordNet licence, BSD-like)";
    public override string Description => "WordNet 3.0 lexical database of English (dictd database)";
    public override IReadOnlyList<string> Files(string root) =>
        DictdFiles(root, "wn");

    // A sense starts "n 1: ", "adj 2: ", "1: " (more senses of the same part of speech) or "v: " (a single sense).
    [GeneratedRegex(@"^(?:(?<pos>n|v|adj|adv)\s+)?\d+:\s*|^(?<pos>n|v|adj|adv)\s*:\s*")]
    private static partial Regex SenseStart();

    [GeneratedRegex(@"\[(?<kind>syn|ant|also|see also):\s*(?<list>[^\]]*)\]")]
    private static partial Regex Relation();

    [GeneratedRegex(@"""[^""]*""")]
    private static partial Regex Quoted();

    public sealed record Sense(string? PartOfSpeech, string Gloss, List<string> Examples, List<string> Synonyms, List<string> Antonyms);

    /// <summary>Parses one dict-wn entry body: the headword line, then senses.</summary>
    public static (string Word, List<Sense> Senses) Parse(string body)
    {
        var lines = body.Replace("\r", "").Split('\n');
        var word = lines[0].Trim();
        var raw = new List<(string? Pos, StringBuilder Text)>();
        string? pos = null;
        foreach (var line in lines.Skip(1))
        {
            var t = line.Trim();
            if (t.Length == 0) continue;
            var m = SenseStart().Match(t);
            if (m.Success && m.Length > 0)
            {
                if (m.Groups["pos"].Success) pos = m.Groups["pos"].Value;
                raw.Add((pos, new StringBuilder(t[m.Length..])));
            }
            else if (raw.Count > 0) raw[^1].Text.Append(' ').Append(t);
        }
        var senses = new List<Sense>();
        foreach (var (p, sb) in raw)
        {
            var text = TextCleaning.CollapseSpaces(sb.ToString());
            var syn = new List<string>();
            var ant = new List<string>();
            foreach (Match r in Relation().Matches(text))
            {
                var list = DictText.SplitList(r.Groups["list"].Value);
                if (r.Groups["kind"].Value == "syn") syn.AddRange(list);
                else if (r.Groups["kind"].Value == "ant") ant.AddRange(list);
            }
            var noRelations = Relation().Replace(text, "").Trim();
            var examples = Quoted().Matches(noRelations).Select(q => q.Value.Trim('"').Trim()).Where(q => q.Length > 0).ToList();
            var gloss = noRelations;
            int firstQuote = gloss.IndexOf('"');
            if (firstQuote >= 0) gloss = gloss[..firstQuote];
            gloss = gloss.Replace("{", "").Replace("}", "").Trim().TrimEnd(';', ' ').Trim();
            if (gloss.Length == 0) continue;
            senses.Add(new Sense(PosName(p), gloss, examples,
                syn.Where(s => !s.Equals(word, StringComparison.OrdinalIgnoreCase)).Distinct().ToList(), ant.Distinct().ToList()));
        }
        return (word, senses);
    }

    public override IEnumerable<SourceDocument> Read(string root)
    {
        var db = DictdFile.Open(Under(root, "/usr/share/dictd/wn"));
        foreach (var (_, body) in db.Entries())
        {
            var (word, senses) = Parse(body);
            if (senses.Count == 0) continue;
            var sb = new StringBuilder(word);
            int n = 0;
            foreach (var s in senses)
            {
                sb.Append('\n').Append(++n).Append(". ");
                if (s.PartOfSpeech is not null) sb.Append('(').Append(s.PartOfSpeech).Append(") ");
                sb.Append(s.Gloss).Append('.');
                if (s.Examples.Count > 0) sb.Append(" For example: ").Append(string.Join("; ", s.Examples.Select(e => $"\"{e}\""))).Append('.');
                if (s.Synonyms.Count > 0) sb.Append(" Synonyms: ").Append(string.Join(", ", s.Synonyms)).Append('.');
                if (s.Antonyms.Count > 0) sb.Append(" Antonyms: ").Append(string.Join(", ", s.Antonyms)).Append('.');
            }
            var lexicon = senses.Select(s => new LexiconEntry(Name, word, s.PartOfSpeech, s.Gloss, s.Synonyms, s.Antonyms)).Take(3).ToList();
            yield return new SourceDocument(sb.ToString()) { Lexicon = lexicon };
        }
    }

    private static string? PosName(string? code) => code switch
    {
        "n" => "noun", "v" => "verb", "adj" => "adjective", "adv" => "adverb", _ => null,
    };
}

/// <summary>Ambrose Bierce's <i>The Devil's Dictionary</i> (1911).</summary>
public sealed partial class DevilSource : CorpusSource
{
    public override string Name => "devil";
    public override IReadOnlyList<string> Packages => ["dict-devil"];
    public override string Licence => "public domain";
    public override string Description => "Ambrose Bierce, The Devil's Dictionary (1911), dictd database";
    public override IReadOnlyList<string> Files(string root) =>
        DictdFiles(root, "devil");

    // "ABASEMENT, n.  A decent and customary mental attitude ..."
    [GeneratedRegex(@"^(?<word>[A-Z][A-Z' -]*[A-Z]),\s*(?<pos>[a-z. ]+?)\.\s+(?<def>.+)$", RegexOptions.Singleline)]
    private static partial Regex Entry();

    public override IEnumerable<SourceDocument> Read(string root)
    {
        var db = DictdFile.Open(Under(root, "/usr/share/dictd/devil"));
        foreach (var (_, body) in db.Entries())
        {
            var paragraphs = TextCleaning.Paragraphs(body);
            if (paragraphs.Count == 0) continue;
            var lexicon = new List<LexiconEntry>();
            var m = Entry().Match(paragraphs[0]);
            if (m.Success)
            {
                var word = m.Groups["word"].Value;
                word = word.Length > 1 ? char.ToUpperInvariant(word[0]) + word[1..].ToLowerInvariant() : word;
                lexicon.Add(new LexiconEntry(Name, word, null, m.Groups["def"].Value.Replace('\n', ' ').Trim(), [], []));
            }
            yield return new SourceDocument(string.Join("\n", paragraphs)) { Lexicon = lexicon };
        }
    }
}

/// <summary>The fortune cookie files: quotations, jokes and aphorisms separated by "%" lines.</summary>
public sealed class FortunesSource : CorpusSource
{
    private const string Dir = "/usr/share/games/fortunes";
    // ASCII-art pictures are not prose.
    private static readonly HashSet<string> Skipped = new(StringComparer.Ordinal) { "art", "ascii-art" };

    public override string Name => "fortunes";
    public override IReadOnlyList<string> Packages => ["fortunes", "fortunes-min"];
    public override string Licence => "BSD-4-Clause (fortune-mod distribution; the quotations themselves are of mixed origin)";
    public override string Description => "fortune-mod data files: quotations, aphorisms and jokes";

    public override IReadOnlyList<string> Files(string root)
    {
        var dir = Under(root, Dir);
        if (!Directory.Exists(dir)) return [];
        return Directory.EnumerateFiles(dir)
            .Where(f => Path.GetExtension(f).Length == 0 && !Skipped.Contains(Path.GetFileName(f)) && !new FileInfo(f).Attributes.HasFlag(FileAttributes.ReparsePoint))
            .Order(StringComparer.Ordinal).ToList();
    }

    public override IEnumerable<SourceDocument> Read(string root)
    {
        foreach (var file in Files(root))
        {
            var text = File.ReadAllText(file, Encoding.UTF8).Replace("\r", "");
            foreach (var cookie in text.Split("\n%\n"))
            {
                var lines = cookie.Trim('%', '\n').Split('\n').Select(l => l.Replace('\t', ' ').TrimEnd()).Where(l => l.Trim().Length > 0).ToList();
                if (lines.Count == 0) continue;
                var doc = string.Join("\n", lines);
                yield return new SourceDocument(doc) { IsQuotation = true };
            }
        }
    }
}

/// <summary>
/// A tree of HTML documentation pages, each cut into sections at its h1–h3 headings. Optional per-source clean-up:
/// <see cref="Prepare"/> rewrites each page first (e.g. to remove navigation menus that are not in a nav element),
/// <see cref="SkipSection"/> drops sections by heading together with their subsections (summary tables of API
/// pages), <see cref="DropParagraph"/> drops boilerplate paragraphs (page footers).
/// </summary>
public sealed class HtmlDocsSource(string name, IReadOnlyList<string> packages, string licence, string description, string dir,
    Func<string, bool> include) : CorpusSource
{
    /// <summary>Sections longer than this are cut at paragraph boundaries into several documents.</summary>
    public const int MaxDocumentChars = 8000;

    public Func<string, string>? Prepare { get; init; }
    public Func<string, bool>? SkipSection { get; init; }
    public Func<string, bool>? DropParagraph { get; init; }

    public override string Name => name;
    public override IReadOnlyList<string> Packages => packages;
    public override string Licence => licence;
    public override string Description => description;

    public override IReadOnlyList<string> Files(string root) => FilesUnder(root, dir, "*.html", include);

    public override IEnumerable<SourceDocument> Read(string root)
    {
        foreach (var file in Files(root))
            foreach (var doc in Documents(File.ReadAllText(file, Encoding.UTF8)))
                yield return new SourceDocument(doc);
    }

    /// <summary>The documents of one page, after this source's clean-up.</summary>
    public IEnumerable<string> Documents(string html)
    {
        if (Prepare is not null) html = Prepare(html);
        int skipBelow = -1; // while >= 0: the level of a skipped heading whose subsections are skipped too
        foreach (var section in TextCleaning.HtmlToSections(html))
        {
            if (skipBelow >= 0 && section.Level > skipBelow) continue;
            skipBelow = -1;
            if (SkipSection is not null && section.Level > 0 && SkipSection(section.Heading)) { skipBelow = section.Level; continue; }
            var paragraphs = DropParagraph is null ? section.Paragraphs : section.Paragraphs.Where(p => !DropParagraph(p)).ToList();
            // A lone heading or a navigation fragment is not a document.
            if (paragraphs.Sum(p => p.Length) < 80) continue;
            foreach (var doc in TextCleaning.Chunk(paragraphs, MaxDocumentChars))
                yield return doc;
        }
    }
}

/// <summary>A dictd database read as plain text: each entry (its headword line and body) is one document.</summary>
public sealed class DictdTextSource(string database, string package, string licence, string description) : CorpusSource
{
    public override string Name => database;
    public override IReadOnlyList<string> Packages => [package];
    public override string Licence => licence;
    public override string Description => description;
    public override IReadOnlyList<string> Files(string root) => DictdFiles(root, database);

    public override IEnumerable<SourceDocument> Read(string root)
    {
        var db = DictdFile.Open(Under(root, $"/usr/share/dictd/{database}"));
        foreach (var (_, body) in db.Entries())
        {
            var paragraphs = TextCleaning.Paragraphs(body);
            if (paragraphs.Count > 0) yield return new SourceDocument(string.Join("\n", paragraphs));
        }
    }
}

/// <summary>
/// Perl's POD documents (perlpod), each cut into sections at its =head1/=head2 headings: ordinary paragraphs are
/// unwrapped and their formatting codes resolved (B&lt;&gt;, C&lt;&lt; &gt;&gt;, L&lt;text|link&gt;, E&lt;gt&gt;,
/// X&lt;&gt; dropped), verbatim paragraphs keep their lines, =item becomes a "- " line, =begin/=for blocks for
/// other formatters are skipped.
/// </summary>
public sealed class PodSource(string name, IReadOnlyList<string> packages, string licence, string description, string dir,
    Func<string, bool> include) : CorpusSource
{
    public override string Name => name;
    public override IReadOnlyList<string> Packages => packages;
    public override string Licence => licence;
    public override string Description => description;

    public override IReadOnlyList<string> Files(string root) => FilesUnder(root, dir, "*.pod", include);

    public override IEnumerable<SourceDocument> Read(string root)
    {
        foreach (var file in Files(root))
            foreach (var section in PodText.ToSections(File.ReadAllText(file, Encoding.UTF8)))
            {
                if (section.Paragraphs.Sum(p => p.Length) < 80) continue;
                foreach (var doc in TextCleaning.Chunk(section.Paragraphs, HtmlDocsSource.MaxDocumentChars))
                    yield return new SourceDocument(doc);
            }
    }
}

/// <summary>A small POD-to-text converter (see <see cref="PodSource"/>).</summary>
public static class PodText
{
    /// <summary>The sections of a POD document, split at =head1 and =head2; the heading is the section's first paragraph.</summary>
    public static List<TextCleaning.HtmlSection> ToSections(string pod)
    {
        var sections = new List<TextCleaning.HtmlSection>();
        var paragraphs = new List<string>();
        string heading = "";
        bool inPod = false;
        string? skipUntilEnd = null;
        void Flush()
        {
            if (paragraphs.Count > 0) sections.Add(new TextCleaning.HtmlSection(heading, paragraphs));
            paragraphs = [];
        }
        var blocks = pod.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n')
            .Aggregate(new List<List<string>> { new() }, (acc, line) =>
            {
                if (line.Trim().Length == 0) { if (acc[^1].Count > 0) acc.Add([]); }
                else acc[^1].Add(line);
                return acc;
            })
            .Where(b => b.Count > 0);
        foreach (var block in blocks)
        {
            var first = block[0];
            if (first.StartsWith('=') && first.Length > 1 && char.IsLetter(first[1]))
            {
                int sp = first.IndexOfAny([' ', '\t']);
                var command = sp < 0 ? first[1..] : first[1..sp];
                var arg = string.Join(" ", new[] { sp < 0 ? "" : first[(sp + 1)..] }.Concat(block.Skip(1))).Trim();
                if (skipUntilEnd is not null)
                {
                    if (command == "end" && arg.Split(' ')[0] == skipUntilEnd) skipUntilEnd = null;
                    continue;
                }
                inPod = command != "cut";
                switch (command)
                {
                    case "head1" or "head2":
                        Flush();
                        heading = Inline(arg);
                        if (heading.Length > 0) paragraphs.Add(heading);
                        break;
                    case "head3" or "head4":
                        var h = Inline(arg);
                        if (h.Length > 0) paragraphs.Add(h);
                        break;
                    case "item":
                        var item = Inline(arg);
                        if (item is "*" or "" || item.All(char.IsDigit) || item.TrimEnd('.').All(char.IsDigit)) break;
                        paragraphs.Add("- " + (item.StartsWith("* ", StringComparison.Ordinal) ? item[2..] : item));
                        break;
                    case "begin":
                        var format = arg.Split(' ')[0];
                        if (format is not ("text" or "pod")) skipUntilEnd = format;
                        break;
                }
                continue;
            }
            if (!inPod || skipUntilEnd is not null) continue;
            if (char.IsWhiteSpace(first[0]))
            {
                // Verbatim: keep the lines, less their common indentation.
                int indent = block.Where(l => l.Trim().Length > 0).Min(l => l.Replace("\t", "        ").Length - l.Replace("\t", "        ").TrimStart().Length);
                paragraphs.Add(string.Join("\n", block.Select(l => l.Replace("\t", "        ")[Math.Min(indent, l.Replace("\t", "        ").Length)..].TrimEnd())));
            }
            else
            {
                var p = Inline(string.Join(" ", block.Select(l => l.Trim())));
                if (p.Length > 0) paragraphs.Add(p);
            }
        }
        Flush();
        return sections;
    }

    /// <summary>Resolves POD formatting codes in one paragraph and collapses its spaces.</summary>
    public static string Inline(string s)
    {
        var sb = new StringBuilder(s.Length);
        int i = 0;
        Inline(s, ref i, sb, null);
        return TextCleaning.CollapseSpaces(sb.ToString());
    }

    // Appends text from s[i..] until the closing delimiter (null at top level: the end); i ends after it.
    private static void Inline(string s, ref int i, StringBuilder sb, string? closer)
    {
        while (i < s.Length)
        {
            if (closer is not null && string.CompareOrdinal(s, i, closer, 0, closer.Length) == 0
                && (closer.Length == 1 || (i > 0 && char.IsWhiteSpace(s[i - 1]))))
            {
                i += closer.Length;
                return;
            }
            char c = s[i];
            if ((c is 'B' or 'I' or 'C' or 'L' or 'E' or 'F' or 'S' or 'X' or 'Z') && i + 1 < s.Length && s[i + 1] == '<')
            {
                int n = 0;
                while (i + 1 + n < s.Length && s[i + 1 + n] == '<') n++;
                string close;
                int start = i + 1 + n;
                if (n > 1 && start < s.Length && char.IsWhiteSpace(s[start]))
                {
                    close = new string('>', n);
                    while (start < s.Length && char.IsWhiteSpace(s[start])) start++;
                }
                else { n = 1; start = i + 2; close = ">"; }
                i = start;
                var inner = new StringBuilder();
                Inline(s, ref i, inner, close);
                var text = inner.ToString().Trim();
                switch (c)
                {
                    case 'X' or 'Z': break;
                    case 'E': sb.Append(Escape(text)); break;
                    case 'L': sb.Append(Link(text)); break;
                    default: sb.Append(text); break;
                }
                continue;
            }
            sb.Append(c);
            i++;
        }
    }

    private static string Escape(string name) => name switch
    {
        "lt" => "<", "gt" => ">", "verbar" => "|", "sol" => "/",
        _ when name.StartsWith("0x", StringComparison.OrdinalIgnoreCase) && int.TryParse(name[2..], System.Globalization.NumberStyles.HexNumber, null, out var x) => char.ConvertFromUtf32(x),
        _ when int.TryParse(name, out var d) => char.ConvertFromUtf32(d),
        _ => System.Net.WebUtility.HtmlDecode("&" + name + ";"),
    };

    // L<text|target> shows the text; L<name/"section"> and L</section> show the section (and the page).
    private static string Link(string s)
    {
        int bar = s.IndexOf('|');
        if (bar >= 0) return s[..bar];
        if (s.Contains("://", StringComparison.Ordinal)) return s;
        int slash = s.IndexOf('/');
        if (slash < 0) return s;
        var page = s[..slash];
        var section = s[(slash + 1)..].Trim('"');
        return page.Length == 0 ? $"\"{section}\"" : $"\"{section}\" in {page}";
    }
}

/// <summary>
/// Vim's help files (doc/*.txt): each file is cut into sections at its "====" and "----" rule lines. Tags
/// (<c>*name*</c>) are dropped, links (<c>|name|</c>) and option names keep their text, the example markers
/// (" &gt;" ending a line, "&lt;" starting one) and heading markers (" ~") are removed, and the modeline is dropped.
/// Wrapped prose lines are joined; short lines (tables, lists) and lines indented deeper than their paragraph
/// (examples) keep their breaks.
/// </summary>
public sealed partial class VimHelpSource : CorpusSource
{
    private const string Dir = "/usr/share/vim/vim90/doc";

    public override string Name => "vim-help";
    public override IReadOnlyList<string> Packages => ["vim-runtime"];
    public override string Licence => "Vim licence (GPL-compatible)";
    public override string Description => "Vim 9.0's help files: the user manual and the reference manual, plain text";

    public override IReadOnlyList<string> Files(string root)
    {
        var dir = Under(root, Dir);
        if (!Directory.Exists(dir)) return [];
        return Directory.EnumerateFiles(dir, "*.txt").Order(StringComparer.Ordinal).ToList();
    }

    public override IEnumerable<SourceDocument> Read(string root)
    {
        foreach (var file in Files(root))
            foreach (var section in Sections(File.ReadAllText(file, Encoding.UTF8)))
            {
                if (section.Sum(p => p.Length) < 80) continue;
                foreach (var doc in TextCleaning.Chunk(section, HtmlDocsSource.MaxDocumentChars))
                    yield return new SourceDocument(doc);
            }
    }

    [GeneratedRegex(@"^\s*(?:={20,}|-{20,})\s*$")]
    private static partial Regex Rule();

    [GeneratedRegex(@"(?<=^|\s)\*[^\s*|""]+\*(?=\s|$)")]
    private static partial Regex Tag();

    [GeneratedRegex(@"\|([^\s|]+)\|")]
    private static partial Regex Link();

    [GeneratedRegex(@"^\s*vim:.*:\s*$|^\s*vim:\s*(?:set\s+)?\w+=")]
    private static partial Regex Modeline();

    /// <summary>The sections of one help file, each a list of paragraphs (lines inside a paragraph joined as above).</summary>
    public static List<List<string>> Sections(string text)
    {
        var sections = new List<List<string>>();
        var paragraphs = new List<string>();
        var sb = new StringBuilder();
        int lastIndent = 0, lastLength = 0;
        bool lastCode = false;
        void EndParagraph()
        {
            if (sb.Length > 0) paragraphs.Add(sb.ToString());
            sb.Clear();
        }
        void EndSection()
        {
            EndParagraph();
            if (paragraphs.Count > 0) sections.Add(paragraphs);
            paragraphs = [];
        }
        var all = text.Replace("\r\n", "\n").Split('\n');
        bool example = false;
        int exampleIndent = 0;
        for (int n = 0; n < all.Length; n++)
        {
            var raw = all[n];
            if (n == 0 && raw.TrimStart().StartsWith('*')) continue; // "*usr_03.txt*	For Vim version 9.0.  Last change: ..."
            if (Rule().IsMatch(raw)) { example = false; EndSection(); continue; }
            if (Modeline().IsMatch(raw)) continue;
            var line = ExpandTabs(raw).TrimEnd();
            int indent = line.Length - line.TrimStart().Length;
            // An example runs from a line ending in " >" to a line starting with "<" or with text in the first column.
            if (example && line.Length > 0 && (line.StartsWith('<') || indent == 0 && line.Trim().Length > 0)) example = false;
            bool code = example && line.Trim().Length > 0;
            if (line.StartsWith('<')) line = " " + line[1..];
            bool opensExample = line.EndsWith(" >", StringComparison.Ordinal) || line == ">";
            if (opensExample) line = line[..^1].TrimEnd();
            if (line.EndsWith(" ~", StringComparison.Ordinal)) line = line[..^2].TrimEnd();
            if (!code) line = Link().Replace(Tag().Replace(line, ""), "$1").TrimEnd();
            if (line.Trim().Length == 0)
            {
                if (!example) EndParagraph();
            }
            else if (code)
            {
                if (sb.Length > 0) sb.Append('\n');
                sb.Append(' ', Math.Min(Math.Max(indent - exampleIndent, 0), 16)).Append(line.Trim());
                lastCode = true;
            }
            else
            {
                var content = TextCleaning.CollapseSpaces(line);
                // Join a continuation of wrapped prose: the line before is long and indented alike.
                bool join = sb.Length > 0 && !lastCode && lastLength >= 55 && Math.Abs(indent - lastIndent) <= 1;
                if (sb.Length > 0) sb.Append(join ? ' ' : '\n');
                sb.Append(content);
                lastIndent = indent;
                lastLength = indent + content.Length;
                lastCode = false;
            }
            if (opensExample)
            {
                example = true;
                exampleIndent = int.MaxValue;
                for (int k = n + 1; k < all.Length; k++)
                {
                    var next = ExpandTabs(all[k]);
                    if (next.Trim().Length == 0) continue;
                    if (next.StartsWith('<') || !char.IsWhiteSpace(next[0])) break;
                    exampleIndent = Math.Min(exampleIndent, next.Length - next.TrimStart().Length);
                }
                if (exampleIndent == int.MaxValue) exampleIndent = 0;
            }
        }
        EndSection();
        return sections;
    }

    private static string ExpandTabs(string s)
    {
        if (!s.Contains('\t')) return s;
        var sb = new StringBuilder(s.Length + 16);
        foreach (var c in s)
        {
            if (c == '\t') sb.Append(' ', 8 - sb.Length % 8);
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
