using System.Text.RegularExpressions;
using Oml.Lab.Data;

namespace Oml.Lab.Tests.Data;

/// <summary>The documentation sources added for the 100M-parameter base: POD, Vim help, HTML clean-up, and the split.</summary>
public class CorpusDocsSourceTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "oml-corpus-docs-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private void WriteFile(string path, string content)
    {
        var full = Path.Combine(_root, path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, content);
    }

    private const string Pod = """
        =head1 NAME

        perlintro - a brief introduction and overview of Perl

        =head1 DESCRIPTION

        This document is intended to give you a quick overview of the Perl
        programming language, along with pointers to B<further> documentation.
        Use C<< $x->{key} >> for hashes, see L<perlsyn/"For Loops"> and
        L<the manual|perlfunc>, compare with E<lt>=E<gt>.X<index entry>

            #!/usr/bin/perl
              print "Hello, world\n";

        =over 4

        =item * Scalars

        Scalars hold a single value.

        =back

        =begin html

        <p>Only for HTML.</p>

        =end html

        =cut

        sub not_documentation { 1 }

        =head2 Safety net

        Start your script with C<use strict;>.
        """;

    [Fact]
    public void Pod_is_converted_to_sections_of_plain_text()
    {
        var sections = PodText.ToSections(Pod);
        Assert.Equal(["NAME", "DESCRIPTION", "Safety net"], sections.Select(s => s.Heading));
        var description = sections[1].Paragraphs;
        Assert.Equal("DESCRIPTION", description[0]);
        Assert.Equal("This document is intended to give you a quick overview of the Perl programming language, along with pointers to "
                     + "further documentation. Use $x->{key} for hashes, see \"For Loops\" in perlsyn and the manual, compare with <=>.",
            description[1]);
        Assert.Equal("#!/usr/bin/perl\n  print \"Hello, world\\n\";", description[2]);   // verbatim: lines and relative indent kept
        Assert.Equal("- Scalars", description[3]);
        Assert.Equal("Scalars hold a single value.", description[4]);
        Assert.Equal(5, description.Count);                                              // =begin html and the code after =cut skipped
        Assert.Equal(["Safety net", "Start your script with use strict;."], sections[2].Paragraphs);
    }

    [Fact]
    public void Pod_source_reads_files_and_cuts_documents()
    {
        WriteFile("usr/share/perl/5.36.0/pod/perlintro.pod", Pod);
        WriteFile("usr/share/perl/5.36.0/pod/perl5360delta.pod", "=head1 NAME\n\nperl5360delta - what is new for perl v5.36.0, long enough to be a document\n");
        var src = Assert.Single(CorpusSource.All, s => s.Name == "perl-docs");
        Assert.Equal(["perl-doc"], src.Packages);
        Assert.Equal(["perlintro.pod"], src.Files(_root).Select(Path.GetFileName));
        var docs = src.Read(_root).Select(d => d.Text).ToList();
        var doc = Assert.Single(docs);   // NAME and "Safety net" are too short to be documents
        Assert.StartsWith("DESCRIPTION\nThis document", doc, StringComparison.Ordinal);
        Assert.DoesNotContain("\n\n", doc);
    }

    private const string VimHelp = "*usr_03.txt*\tFor Vim version 9.0.  Last change: 2022 Oct 30\n" +
        "\n" +
        "==============================================================================\n" +
        "*03.1*\tWord movement\t\t\t\t\t*word-movement*\n" +
        "\n" +
        "To move the cursor forward one word, use the \"w\" command.  Like most Vim\n" +
        "commands, you can use a numeric prefix to move past multiple words.  See |w|.\n" +
        "Example: >\n" +
        "\t:set nocompatible\n" +
        "\t:normal 3w\n" +
        "<\n" +
        "MOVING AROUND ~\n" +
        "\n" +
        "|03.2|\tMoving to the start of a line\n" +
        "|03.3|\tMoving to a character\n" +
        "\n" +
        " vim:tw=78:ts=8:noet:ft=help:norl:\n";

    [Fact]
    public void Vim_help_drops_tags_and_markers_and_joins_wrapped_prose()
    {
        var sections = VimHelpSource.Sections(VimHelp);
        var section = Assert.Single(sections);
        Assert.Equal([
            "Word movement",
            "To move the cursor forward one word, use the \"w\" command. Like most Vim commands, you can use a numeric prefix to move past multiple words. See w." +
            " Example:\n:set nocompatible\n:normal 3w",
            "MOVING AROUND",
            "03.2 Moving to the start of a line\n03.3 Moving to a character",
        ], section);
    }

    [Fact]
    public void Html_sources_can_drop_chrome_summary_sections_and_their_subsections()
    {
        var html = """
            <html><body><div class="t-navbar"><div>Menu</div><div>Another long menu entry that would otherwise be a paragraph of text on every single page</div></div>
            <h1>java.lang.String</h1><p>The String class represents character strings, which are constant once created.</p>
            <h2>Method Summary</h2><p>charAt(int index) Returns the char value at the specified index, in a table row.</p>
            <h3>Methods declared in class java.lang.Object</h3><p>clone, equals, finalize, getClass, hashCode, notify, notifyAll, wait</p>
            <h2>Method Details</h2><p>Returns the char value at the specified index. An index ranges from 0 to length() - 1.</p>
            <p class="footer">This page was generated from the sources, which nobody reads as prose at all.</p>
            </body></html>
            """;
        var src = new HtmlDocsSource("t", ["p"], "l", "d", "/x", _ => true)
        {
            Prepare = h => TextCleaning.RemoveElements(h, "div", new Regex(@"class=""t-navbar""")),
            SkipSection = h => h.EndsWith(" Summary", StringComparison.Ordinal),
            DropParagraph = p => p.StartsWith("This page was generated", StringComparison.Ordinal),
        };
        Assert.Equal([
            "java.lang.String\nThe String class represents character strings, which are constant once created.",
            "Method Details\nReturns the char value at the specified index. An index ranges from 0 to length() - 1.",
        ], src.Documents(html));
        // Without the options the same page keeps everything (the sources that set none read as before).
        var plain = new HtmlDocsSource("t", ["p"], "l", "d", "/x", _ => true).Documents(html).ToList();
        Assert.Equal(5, plain.Count);
        Assert.Contains("Menu", plain[0], StringComparison.Ordinal);
    }

    [Fact]
    public void RemoveElements_counts_nested_elements_of_the_same_tag()
    {
        var html = "<p>a</p><div id=\"toc\"><div>x</div><div><div>y</div></div></div><p>b</p><div>c</div><div id=\"toc\">open to the end";
        Assert.Equal("<p>a</p><p>b</p><div>c</div>", TextCleaning.RemoveElements(html, "div", new Regex(@"id=""toc""")));
    }

    [Fact]
    public void Added_sources_leave_the_split_of_existing_documents_alone()
    {
        // A corpus of the Vim help alone, then the same with a POD source read after it: every document of the first
        // build is in the same split in the second, since the split is a hash of the document's own text.
        var lines = string.Join("\n\n", Enumerable.Range(0, 300).Select(i => $"Paragraph {i} of the help text, long enough to be kept as a document of its own here.\n" +
            "==============================================================================="));
        WriteFile("usr/share/vim/vim90/doc/test.txt", lines);
        WriteFile("usr/share/perl/5.36.0/pod/perlintro.pod", string.Join("\n\n", Enumerable.Range(0, 300).Select(i =>
            $"=head1 Part {i}\n\nPart {i} of the manual says something that is long enough to be one document on its own.")));
        var vim = CorpusSource.All.OfType<VimHelpSource>().Single();
        var perl = CorpusSource.All.Single(s => s.Name == "perl-docs");
        var a = new CorpusBuilder { Root = _root, HeldOutPer10000 = 1000, Sources = [vim] }.Build(Path.Combine(_root, "a"));
        var b = new CorpusBuilder { Root = _root, HeldOutPer10000 = 1000, Sources = [vim, perl] }.Build(Path.Combine(_root, "b"));
        static HashSet<string> Docs(string path) => File.ReadAllText(path).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        var (trainA, heldA) = (Docs(Path.Combine(_root, "a", CorpusBuilder.TrainFile)), Docs(Path.Combine(_root, "a", CorpusBuilder.HeldOutFile)));
        var (trainB, heldB) = (Docs(Path.Combine(_root, "b", CorpusBuilder.TrainFile)), Docs(Path.Combine(_root, "b", CorpusBuilder.HeldOutFile)));
        Assert.Equal(300, trainA.Count + heldA.Count);
        Assert.NotEmpty(heldA);
        Assert.True(heldA.IsSubsetOf(heldB));
        Assert.True(trainA.IsSubsetOf(trainB));
        Assert.True(b.TrainDocuments + b.HeldOutDocuments > a.TrainDocuments + a.HeldOutDocuments);
    }

    [Fact]
    public void Every_source_has_a_unique_name_and_packages()
    {
        var all = CorpusSource.All;
        Assert.Equal(all.Count, all.Select(s => s.Name).Distinct().Count());
        Assert.All(all, s => Assert.NotEmpty(s.Packages));
        Assert.All(all, s => Assert.False(string.IsNullOrWhiteSpace(s.Licence)));
    }
}
