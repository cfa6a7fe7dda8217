using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Lab.Data;

namespace Oml.Lab.Tests.Data;

/// <summary>Builds a corpus from a small fake file-system tree shaped like the Debian packages.</summary>
public class CorpusTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "oml-corpus-" + Guid.NewGuid().ToString("N"));

    public CorpusTests() => MakeTree(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private const string Digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    private static string EncodeNumber(long n)
    {
        var s = "";
        do { s = Digits[(int)(n % 64)] + s; n /= 64; } while (n > 0);
        return s;
    }

    /// <summary>Writes BASE.index and BASE.dict.dz (gzip) for the given entries, plus a "00" meta entry.</summary>
    private static void WriteDictd(string basePath, params (string Word, string Body)[] entries)
    {
        var body = new MemoryStream();
        var index = new StringBuilder();
        foreach (var (word, text) in entries.Prepend(("00-database-short", "meta\n")))
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            index.Append($"{word}\t{EncodeNumber(body.Length)}\t{EncodeNumber(bytes.Length)}\n");
            body.Write(bytes);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(basePath)!);
        File.WriteAllText(basePath + ".index", index.ToString());
        using var fs = File.Create(basePath + ".dict.dz");
        using var gz = new GZipStream(fs, CompressionLevel.Fastest);
        gz.Write(body.ToArray());
    }

    private static void WriteFile(string root, string path, string content)
    {
        var full = Path.Combine(root, path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, content);
    }

    private const string Abase = """
        Abase \A*base"\ ([.a]*b[=a]s"), v. t. [imp. & p. p. {Abased}]
           [F. abaisser.]
           [1913 Webster]
           1. To lower or depress; to throw or cast down; as, to abase
              the eye. [Archaic] --Bacon.
              [1913 Webster]

                 Saying so, he abased his lance.       --Shelton.
              [1913 Webster]

        """;

    private const string Aeon = """
        Aeon \[AE]"on\, n. A very long period; an age; as, the [ae]ons of geology; a [=a]ge.
           [1913 Webster]

        """;

    private const string Happy = """
        happy
            adj 1: enjoying or showing or marked by joy or pleasure; "a
                   happy smile" [ant: {unhappy}]
            2: marked by good fortune; "a felicitous life" [syn:
               {felicitous}, {happy}]

        """;

    private static void MakeTree(string root)
    {
        WriteDictd(Path.Combine(root, "usr/share/dictd/gcide"), ("Abase", Abase), ("Aeon", Aeon), ("Aeons", Aeon));
        WriteDictd(Path.Combine(root, "usr/share/dictd/wn"), ("happy", Happy));
        WriteDictd(Path.Combine(root, "usr/share/dictd/devil"),
            ("abasement", "ABASEMENT, n.  A decent and customary mental attitude in the presence\nof wealth of power.\n\n"));
        WriteFile(root, "usr/share/games/fortunes/fortunes",
            "A day for firm decisions!!!!!  Or is it?\n%\nA day   for firm decisions!!!!!\tOr is it?\n%\nToo short\n%\n" +
            "He who laughs last\n    thinks slowest.\n\t\t-- Anon\n%\n");
        WriteFile(root, "usr/share/games/fortunes/art", "  /\\_/\\\n ( o.o )\n%\n");
        WriteFile(root, "usr/share/doc/python3.11/html/library/os.html", """
            <html><head><title>os</title><script>var x = "<p>not text</p>";</script></head>
            <body><div class="sidebar">Navigation junk that is long enough to count as a paragraph if it were read at all.</div>
            <div class="body" role="main">
            <h1>os — Miscellaneous operating system interfaces<a class="headerlink" href="#">¶</a></h1>
            <p>This module provides a portable way of using operating system dependent functionality &amp; more.</p>
            <pre>import os
            print(os.getcwd())</pre>
            <h2>Process Parameters</h2>
            <p>These functions and data items provide information and operate on the current process and user.</p>
            <ul><li>one item</li><li>two <em>items</em></li></ul>
            </div></body></html>
            """);
        WriteFile(root, "usr/share/doc/python3.11/html/genindex.html", "<html><body><p>" + new string('x', 200) + "</p></body></html>");
        WriteFile(root, "usr/share/debian-reference/ch01.en.html",
            "<html><body><h1>GNU/Linux tutorials</h1><p>I think learning a computer system is like learning a new foreign language.</p></body></html>");
        WriteFile(root, "usr/share/doc/gnu-standards/standards.html",
            "<html><body><h2>About the GNU Standards</h2><p>The GNU Coding Standards were written by Richard Stallman and other GNU Project volunteers.</p></body></html>");
        WriteFile(root, "var/lib/dpkg/status",
            "Package: dict-gcide\nStatus: install ok installed\nVersion: 0.48.5+nmu2\n\nPackage: dict-wn\nStatus: deinstall ok config-files\nVersion: 1:3.0-37\n\n");
    }

    /// <summary>The sources the fake tree holds: those before the dictionaries and manuals added for the larger bases (issue 12), which are tested on their own.</summary>
    private static readonly IReadOnlyList<CorpusSource> TreeSources = CorpusSource.All.TakeWhile(x => x.Name != "foldoc").ToList();

    [Fact]
    public void A_dictd_text_source_gives_one_document_per_entry()
    {
        var root = Path.Combine(_root, "foldoc-only");
        WriteDictd(Path.Combine(root, "usr/share/dictd/foldoc"),
            ("abend", "abend\n\n   <operating system> ABnormal END. A program crash that the operating system notices.\n\n"),
            ("ack", "ack\n\n   <communications> ACKnowledgement, the answer a receiver sends when data arrived.\n\n"));
        var src = Assert.Single(CorpusSource.All, x => x.Name == "foldoc");
        Assert.Equal(["dict-foldoc"], src.Packages);
        Assert.NotEmpty(src.Files(root));
        var docs = src.Read(root).Select(d => d.Text).ToList();
        Assert.Equal(2, docs.Count);
        Assert.All(docs, d => Assert.DoesNotContain("\n\n", d));
        Assert.Contains(docs, d => d.Contains("ABnormal END", StringComparison.Ordinal));
        Assert.DoesNotContain(docs, d => d.Contains("meta", StringComparison.Ordinal));   // the 00-database entries are not text
    }

    private string Build(string name, out CorpusSummary summary, int heldOut = 200, double? maxMb = null)
    {
        var dir = Path.Combine(_root, name);
        summary = new CorpusBuilder { Root = _root, HeldOutPer10000 = heldOut, MaxMegabytes = maxMb, Sources = TreeSources }.Build(dir);
        return dir;
    }

    private static List<string> Docs(string path) => File.ReadAllText(path).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).ToList();

    [Fact]
    public void Builds_clean_deduplicated_documents_from_every_source()
    {
        var dir = Build("c", out var summary, heldOut: 0);
        var docs = Docs(Path.Combine(dir, CorpusBuilder.TrainFile));
        Assert.Equal("", File.ReadAllText(Path.Combine(dir, CorpusBuilder.HeldOutFile)));
        // gcide 2 (Aeons repeats Aeon's body), wordnet 1, devil 1, fortunes 2 (a duplicate up to whitespace, one too short,
        // art skipped), python 2 sections, debian-reference 1, gnu-standards 1.
        Assert.Equal(10, docs.Count);
        Assert.Equal(2, summary.Duplicates);
        Assert.All(docs, d => Assert.DoesNotContain("\n\n", d));

        var abase = Assert.Single(docs, d => d.StartsWith("Abase", StringComparison.Ordinal));
        Assert.Equal("Abase, v. t. [imp. & p. p. Abased] [F. abaisser.]\n1. To lower or depress; to throw or cast down; as, to abase the eye. [Archaic] --Bacon.\n" +
                     "Saying so, he abased his lance. --Shelton.", abase);
        Assert.Contains(docs, d => d == "Aeon, n. A very long period; an age; as, the æons of geology; a āge.");
        Assert.Contains(docs, d => d == "happy\n1. (adjective) enjoying or showing or marked by joy or pleasure. For example: \"a happy smile\". Antonyms: unhappy.\n" +
                                        "2. (adjective) marked by good fortune. For example: \"a felicitous life\". Synonyms: felicitous.");
        Assert.Contains(docs, d => d == "He who laughs last\n    thinks slowest.\n  -- Anon");
        Assert.Contains(docs, d => d == "os — Miscellaneous operating system interfaces\nThis module provides a portable way of using operating system dependent functionality & more.\n" +
                                        "import os\nprint(os.getcwd())");
        Assert.Contains(docs, d => d == "Process Parameters\nThese functions and data items provide information and operate on the current process and user.\none item\ntwo items");
        Assert.DoesNotContain(docs, d => d.Contains("Navigation") || d.Contains("not text") || d.Contains("xxxx") || d.Contains("o.o"));
    }

    [Fact]
    public void Manifest_lists_sources_versions_counts_and_hashes()
    {
        var dir = Build("m", out _);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CorpusBuilder.ManifestFile)))!;
        var sources = manifest["sources"]!.AsArray();
        Assert.Equal(TreeSources.Select(s => s.Name), sources.Select(s => s!["name"]!.GetValue<string>()));
        var gcide = sources[0]!;
        Assert.Equal("GPL-2+", gcide["licence"]!.GetValue<string>());
        Assert.Equal("0.48.5+nmu2", gcide["packages"]![0]!["version"]!.GetValue<string>());
        Assert.Null(sources[1]!["packages"]![0]!["version"]); // dict-wn is not "installed" in the fake status file
        Assert.Equal(1, sources[3]!["duplicates"]!.GetValue<int>());
        Assert.Equal(1, sources[3]!["too_short"]!.GetValue<int>());
        var train = manifest["outputs"]![CorpusBuilder.TrainFile]!;
        var bytes = File.ReadAllBytes(Path.Combine(dir, CorpusBuilder.TrainFile));
        Assert.Equal(bytes.Length, train["bytes"]!.GetValue<long>());
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), train["sha256"]!.GetValue<string>());
    }

    [Fact]
    public void Builds_are_deterministic_and_splits_follow_the_share()
    {
        var a = Build("a", out _);
        var b = Build("b", out _);
        foreach (var f in new[] { CorpusBuilder.TrainFile, CorpusBuilder.HeldOutFile, CorpusBuilder.LexiconFile, CorpusBuilder.QuotationsFile, CorpusBuilder.ManifestFile })
            Assert.Equal(File.ReadAllBytes(Path.Combine(a, f)), File.ReadAllBytes(Path.Combine(b, f)));
        var all = Build("all", out var s, heldOut: 10000);
        Assert.Equal(0, s.TrainDocuments);
        Assert.Equal(10, s.HeldOutDocuments);
        Assert.Equal("", File.ReadAllText(Path.Combine(all, CorpusBuilder.TrainFile)));
        Assert.All(File.ReadLines(Path.Combine(all, CorpusBuilder.LexiconFile)), l => Assert.Contains("\"split\":\"heldout\"", l));
    }

    [Fact]
    public void Max_mb_keeps_a_prefix_of_the_hashed_order()
    {
        Build("full", out var full, heldOut: 0);
        Build("cut", out var cut, heldOut: 0, maxMb: 300.0 / 1048576);
        Assert.True(cut.TrainDocuments < full.TrainDocuments);
        Assert.True(cut.TrainBytes + 2 * cut.TrainDocuments <= 300);
        var fullDocs = Docs(Path.Combine(_root, "full", CorpusBuilder.TrainFile));
        Assert.Equal(fullDocs.Take(cut.TrainDocuments), Docs(Path.Combine(_root, "cut", CorpusBuilder.TrainFile)));
    }

    [Fact]
    public void Lexicon_holds_senses_with_synonyms_and_antonyms()
    {
        var dir = Build("l", out _, heldOut: 0);
        var lines = File.ReadLines(Path.Combine(dir, CorpusBuilder.LexiconFile)).Select(l => JsonNode.Parse(l)!).ToList();
        var happy = lines.Where(l => l["word"]!.GetValue<string>() == "happy").ToList();
        Assert.Equal(2, happy.Count);
        var first = happy.Single(h => h["antonyms"]!.AsArray().Count == 1);
        Assert.Equal("enjoying or showing or marked by joy or pleasure", first["definition"]!.GetValue<string>());
        Assert.Equal("adjective", first["pos"]!.GetValue<string>());
        Assert.Equal("unhappy", first["antonyms"]![0]!.GetValue<string>());
        Assert.Contains(happy, h => h["synonyms"]!.AsArray().Select(x => x!.GetValue<string>()).SequenceEqual(["felicitous"]));
        var abase = Assert.Single(lines, l => l["word"]!.GetValue<string>() == "Abase");
        Assert.Equal("verb", abase["pos"]!.GetValue<string>());
        Assert.Equal("To lower or depress; to throw or cast down; as, to abase the eye. [Archaic]", abase["definition"]!.GetValue<string>());
        var devil = Assert.Single(lines, l => l["source"]!.GetValue<string>() == "devil");
        Assert.Equal("Abasement", devil["word"]!.GetValue<string>());
        Assert.Equal("A decent and customary mental attitude in the presence of wealth of power.", devil["definition"]!.GetValue<string>());
    }

    [Fact]
    public void Missing_packages_are_named()
    {
        File.Delete(Path.Combine(_root, "usr/share/dictd/devil.index"));
        var e = Assert.Throws<InvalidDataException>(() => Build("x", out _));
        Assert.Contains("dict-devil", e.Message);
        Assert.Contains("build-corpus.sh", e.Message);
    }

    [Fact]
    public void Instructions_are_deterministic_by_seed_and_follow_the_split()
    {
        var dir = Build("i", out _, heldOut: 0);
        var a = InstructionGenerator.Generate(dir, 8, seed: 7);
        var b = InstructionGenerator.Generate(dir, 8, seed: 7);
        Assert.Equal(InstructionGenerator.ToJson(a.Train), InstructionGenerator.ToJson(b.Train));
        Assert.Empty(a.HeldOut);
        Assert.Equal(a.Train.Count, a.TaskCounts.Values.Sum());
        Assert.True(a.Train.Count is > 0 and <= 8);
        Assert.Contains(a.Train, e => e.Task == "antonyms" && e.Output == "The opposite of 'happy' is 'unhappy'.");
        Assert.Contains(a.Train, e => e.Task == "devil" && e.Output == "A decent and customary mental attitude in the presence of wealth of power.");
        var json = JsonNode.Parse(InstructionGenerator.ToJson(a.Train))!.AsArray();
        Assert.All(json, r => Assert.Equal(["instruction", "input", "output"], r!.AsObject().Select(kv => kv.Key)));

        var held = InstructionGenerator.Generate(Build("ih", out _, heldOut: 10000), 8, seed: 7);
        Assert.Empty(held.Train);
        Assert.NotEmpty(held.HeldOut);
        Assert.Throws<FileNotFoundException>(() => InstructionGenerator.Generate(Path.Combine(_root, "none"), 5, 1));
    }

    [Fact]
    public void Dictd_numbers_and_gcide_markup()
    {
        Assert.Equal(0, DictdFile.DecodeNumber("A"));
        Assert.Equal(383628, DictdFile.DecodeNumber("BdqM")); // 1*64^3 + 29*64^2 + 42*64 + 12
        Assert.Throws<FormatException>(() => DictdFile.DecodeNumber("a-b"));
        Assert.Equal("æon œ ā ü ç Base [Obs.] þ", DictText.CleanGcide("[ae]on [oe] [=a] [uum] [,c] {Base} [Obs.] [thorn] [1913 Webster]").Trim());
    }

    [Fact]
    public void Unwrapping_keeps_verse_and_joins_prose()
    {
        var paragraphs = TextCleaning.Paragraphs("   one\n      two\n\n  verse line\n      indented more\n      still more\n  back\n");
        Assert.Equal(["one two", "verse line\nindented more\nstill more\nback"], paragraphs);
    }
}
