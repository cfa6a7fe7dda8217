using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Oml.Models.IO;

namespace Oml.Lab.Data;

/// <summary>One Alpaca-format example.</summary>
public sealed record AlpacaExample(string Instruction, string Input, string Output, string Task);

/// <summary>What <see cref="InstructionGenerator.Generate"/> made: the two splits and how many examples each task gave.</summary>
public sealed record InstructionSet(IReadOnlyList<AlpacaExample> Train, IReadOnlyList<AlpacaExample> HeldOut, IReadOnlyDictionary<string, int> TaskCounts);

/// <summary>
/// Makes templated instruction data from a corpus directory's <c>lexicon.jsonl</c> and <c>quotations.jsonl</c>:
/// word definitions (WordNet, GCIDE), Devil's Dictionary definitions, synonyms and antonyms (WordNet), the word
/// for a definition, and quotation completion (fortunes). An example is held out exactly when the corpus document
/// it comes from is, so held-out questions are about text a model trained on <c>train.txt</c> has not seen.
/// The choice of examples and of their phrasing is a deterministic function of the corpus and the seed.
/// </summary>
public static class InstructionGenerator
{
    public const string TrainFile = "instructions-train.json";
    public const string HeldOutFile = "instructions-heldout.json";

    /// <summary>Each task's share of the examples (before pools run short).</summary>
    private static readonly (string Task, double Weight)[] Weights =
    [
        ("definition", 0.40), ("synonyms", 0.15), ("antonyms", 0.08), ("word_for", 0.12), ("devil", 0.05), ("quotation", 0.20),
    ];

    private sealed record Candidate(string Task, bool HeldOut, Func<SplitMix64, AlpacaExample> Make);

    public static InstructionSet Generate(string corpusDir, int count, ulong seed)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "must be positive");
        var lexPath = Path.Combine(corpusDir, CorpusBuilder.LexiconFile);
        var quotePath = Path.Combine(corpusDir, CorpusBuilder.QuotationsFile);
        foreach (var p in new[] { lexPath, quotePath })
            if (!File.Exists(p)) throw new FileNotFoundException($"{p} not found; build the corpus first with 'oml data corpus --out {corpusDir}'", p);

        var pools = Weights.ToDictionary(w => w.Task, _ => new List<Candidate>());
        foreach (var (obj, held) in ReadJsonLines(lexPath))
        {
            var e = new LexiconEntry(Str(obj, "source", lexPath), Str(obj, "word", lexPath), obj["pos"]?.GetValue<string>(), Str(obj, "definition", lexPath),
                StrList(obj, "synonyms"), StrList(obj, "antonyms"));
            switch (e.Source)
            {
                case "devil":
                    pools["devil"].Add(new Candidate("devil", held, r => Devil(e, r)));
                    break;
                case "wordnet" or "gcide":
                    pools["definition"].Add(new Candidate("definition", held, r => Definition(e, r)));
                    if (e.Source == "wordnet")
                    {
                        if (e.Synonyms.Count > 0) pools["synonyms"].Add(new Candidate("synonyms", held, r => Synonyms(e, r)));
                        if (e.Antonyms.Count > 0) pools["antonyms"].Add(new Candidate("antonyms", held, r => Antonyms(e, r)));
                        if (e.Definition.Length >= 15) pools["word_for"].Add(new Candidate("word_for", held, r => WordFor(e, r)));
                    }
                    break;
            }
        }
        foreach (var (obj, held) in ReadJsonLines(quotePath))
        {
            var text = Str(obj, "text", quotePath);
            var words = text.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            if (text.Length is >= 40 and <= 320 && words.Length >= 8)
                pools["quotation"].Add(new Candidate("quotation", held, r => Quotation(text, r)));
        }

        var rng = new SplitMix64(seed);
        foreach (var pool in pools.Values) Shuffle(pool, rng);
        // Share the count out by weight; what a short pool cannot supply goes to the others.
        var take = Weights.ToDictionary(w => w.Task, _ => 0);
        int left = count;
        while (left > 0)
        {
            var open = Weights.Where(w => take[w.Task] < pools[w.Task].Count).ToList();
            if (open.Count == 0) break;
            double total = open.Sum(w => w.Weight);
            int given = 0;
            foreach (var (task, weight) in open)
            {
                int want = Math.Max(1, (int)Math.Floor(left * weight / total));
                int can = Math.Min(Math.Min(want, pools[task].Count - take[task]), left - given);
                take[task] += can;
                given += can;
                if (given == left) break;
            }
            left -= given;
            if (given == 0) break;
        }
        var chosen = Weights.SelectMany(w => pools[w.Task].Take(take[w.Task])).ToList();
        Shuffle(chosen, rng);
        var train = new List<AlpacaExample>();
        var heldOut = new List<AlpacaExample>();
        foreach (var c in chosen) (c.HeldOut ? heldOut : train).Add(c.Make(rng));
        return new InstructionSet(train, heldOut, take.Where(kv => kv.Value > 0).ToDictionary());
    }

    /// <summary>Writes <c>instructions-train.json</c> and <c>instructions-heldout.json</c> (Alpaca JSON arrays) into <paramref name="dir"/>.</summary>
    public static void Write(string dir, InstructionSet set)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteText(Path.Combine(dir, TrainFile), ToJson(set.Train));
        AtomicFile.WriteText(Path.Combine(dir, HeldOutFile), ToJson(set.HeldOut));
    }

    public static string ToJson(IEnumerable<AlpacaExample> examples)
    {
        var arr = new JsonArray(examples.Select(e => (JsonNode)new JsonObject
        {
            ["instruction"] = e.Instruction, ["input"] = e.Input, ["output"] = e.Output,
        }).ToArray());
        return arr.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";
    }

    private static string Pick(SplitMix64 r, params string[] options) => options[r.Below(options.Length)];

    private static string Sentence(string s)
    {
        s = s.Trim();
        if (s.Length == 0) return s;
        s = char.ToUpper(s[0], CultureInfo.InvariantCulture) + s[1..];
        return s.EndsWith('.') || s.EndsWith('!') || s.EndsWith('?') ? s : s + ".";
    }

    private static string Article(string pos) => pos.Length > 0 && "aeiou".Contains(pos[0]) ? "an " + pos : "a " + pos;

    private static AlpacaExample Definition(LexiconEntry e, SplitMix64 r)
    {
        var asPos = e.PartOfSpeech is null ? "" : $" ({e.PartOfSpeech})";
        return r.Below(3) switch
        {
            0 => new(Pick(r, $"What does the word '{e.Word}' mean?", $"What is the meaning of '{e.Word}'?", $"Explain what '{e.Word}' means."), "",
                $"'{e.Word}'{asPos} means: {Sentence(e.Definition)}", "definition"),
            1 => new(Pick(r, "Define the following word.", "Give the meaning of this word.", "What does this word mean?"), e.Word,
                Sentence(e.Definition), "definition"),
            _ => new(e.PartOfSpeech is null ? $"Give a short definition of '{e.Word}'." : $"Give a short definition of '{e.Word}' used as {Article(e.PartOfSpeech)}.", "",
                Sentence(e.Definition), "definition"),
        };
    }

    private static AlpacaExample Devil(LexiconEntry e, SplitMix64 r) =>
        new(Pick(r, $"How does Ambrose Bierce's Devil's Dictionary define '{e.Word}'?", $"Give the Devil's Dictionary definition of '{e.Word}'."), "",
            Sentence(e.Definition), "devil");

    private static AlpacaExample Synonyms(LexiconEntry e, SplitMix64 r) =>
        r.Below(2) == 0
            ? new($"Give a synonym for '{e.Word}' in the sense \"{e.Definition}\".", "", $"A synonym is '{e.Synonyms[0]}'.", "synonyms")
            : new(Pick(r, "List words that mean the same as this word.", "Give synonyms for the following word."), $"{e.Word} ({e.Definition})",
                string.Join(", ", e.Synonyms), "synonyms");

    private static AlpacaExample Antonyms(LexiconEntry e, SplitMix64 r)
    {
        var output = $"The opposite of '{e.Word}' is '{e.Antonyms[0]}'.";
        return r.Below(3) switch
        {
            0 => new($"What is the opposite of '{e.Word}'?", "", output, "antonyms"),
            1 => new($"Give an antonym of '{e.Word}'.", "", output, "antonyms"),
            _ => new("Give an antonym of this word.", e.Word, output, "antonyms"),
        };
    }

    private static AlpacaExample WordFor(LexiconEntry e, SplitMix64 r)
    {
        var also = e.Synonyms.Count > 0 ? $" (also: {string.Join(", ", e.Synonyms.Take(3))})" : "";
        return new(Pick(r, "Which word matches this definition?", "Name the word defined here."), Sentence(e.Definition), $"{e.Word}{also}", "word_for");
    }

    private static AlpacaExample Quotation(string text, SplitMix64 r)
    {
        // Cut at a word boundary between 35% and 65% of the way through.
        var words = text.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        int cut = Math.Clamp((int)Math.Round(words.Length * (0.35 + 0.3 * r.NextDouble())), 1, words.Length - 1);
        var head = string.Join(' ', words.Take(cut));
        var tail = string.Join(' ', words.Skip(cut));
        return new(Pick(r, "Complete this quotation.", "Finish the following saying.", "Continue this text."), head + " ...", tail, "quotation");
    }

    private static void Shuffle<T>(List<T> list, SplitMix64 rng)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = rng.Below(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }

    private static IEnumerable<(JsonObject Obj, bool HeldOut)> ReadJsonLines(string path)
    {
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (line.Length == 0) continue;
            JsonObject obj;
            try { obj = JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException($"{path}:{n}: expected a JSON object"); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{n}: {e.Message}"); }
            var split = obj["split"]?.GetValue<string>();
            if (split is not ("train" or "heldout")) throw new InvalidDataException($"{path}:{n}: \"split\" must be \"train\" or \"heldout\"");
            yield return (obj, split == "heldout");
        }
    }

    private static string Str(JsonObject o, string key, string path) =>
        o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new InvalidDataException($"{path}: a record lacks the string \"{key}\"");

    private static List<string> StrList(JsonObject o, string key) =>
        o[key] is JsonArray a ? a.Select(x => x?.GetValue<string>() ?? "").Where(x => x.Length > 0).ToList() : [];
}

/// <summary>SplitMix64 (Steele, Lea and Flood 2014): a small, fast generator whose sequence never changes across runtimes.</summary>
public sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, n) (the modulo bias is below 2^-40 for the sizes used here).</summary>
    public int Below(int n) => n <= 0 ? throw new ArgumentOutOfRangeException(nameof(n)) : (int)(Next() % (ulong)n);

    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));
}
