using System.Globalization;
using System.Text;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Attacks;

/// <summary>A spec that does not parse, or cannot be built in its context.</summary>
public sealed class ResponderSpecException(string message) : ArgumentException(message);

/// <summary>Decoding: greedy, or sampling with its filters and seed; optionally with first-token suppression.</summary>
public sealed record DecodingSpec(double? Temperature = null, int? TopK = null, double? TopP = null, double? MinP = null, ulong? Seed = null,
    int? SuppressPositions = null, int? SuppressTopM = null, double? SuppressThreshold = null)
{
    public bool Suppress => SuppressPositions is not null;

    public GenerationOptions ToOptions() => new() { Temperature = Temperature, TopK = TopK, TopP = TopP, MinP = MinP, Seed = Temperature is null ? null : Seed ?? 0 };
}

/// <summary>
/// Perplexity filtering: a fixed threshold, or a quantile of the context's calibration prompts. <see cref="Low"/>: refuse
/// prompts <em>below</em> the threshold (keys sampled from the model are less perplexing than what users type), else above.
/// <see cref="OnInstructions"/>: the quantile is of the host's own instruction traffic (the context's instruction
/// prompts) rather than of ordinary text windows. A flagged prompt gets <see cref="Reply"/>, the greedy answer of the model
/// folder <see cref="Fallback"/>, or (<see cref="ParaphraseFlagged"/>) the served model's paraphrase of it answered as
/// any prompt; else an empty answer.
/// </summary>
public sealed record FilterSpec(double? Perplexity, double? Quantile, string? ReferenceModel, string? Reply, bool Low = false, bool OnInstructions = false,
    string? Fallback = null, bool ParaphraseFlagged = false);

/// <summary>A coalition of model folders, voting by <see cref="Rule"/>; an optional fallback model folder.</summary>
public sealed record CoalitionSpec(CoalitionRule Rule, IReadOnlyList<string> Members, string? Fallback);

/// <summary>
/// Paraphrasing of every prompt by a language model (<see cref="QueryRewrite.Paraphrase"/>): the served model, or the
/// model folder <see cref="ReferenceModel"/>, answers <see cref="Request"/> with the prompt at {text}; greedy unless a
/// temperature is given.
/// </summary>
public sealed record ParaphraseSpec(string Request, int MaxNewTokens, string? ReferenceModel, double? Temperature, ulong? Seed);

/// <summary>
/// A host that blocks revealed keys and near-duplicates (<see cref="RevealedKeyBlocker"/>): the keys of
/// <see cref="Revealed"/> (a key list, one per line, or a plaintext fingerprint-set file, or a model folder holding
/// fingerprints.json); blocked prompts get the <see cref="Fallback"/> model's greedy answer or the reply.
/// </summary>
public sealed record BlockSpec(string Revealed, int N, double Containment, string? Fallback, string? Reply);

/// <summary>Where a spec is built: the served model and what the parts may need.</summary>
public sealed class ResponderContext
{
    /// <summary>The served (attacked) model; not owned.</summary>
    public required CausalLM Model { get; init; }
    /// <summary>Needed by the text and chat wrappers and by <c>reply=</c>.</summary>
    public Tokenizer? Tokenizer { get; init; }
    /// <summary>Needed by <c>chat</c>.</summary>
    public ChatTemplate? ChatTemplate { get; init; }
    /// <summary>Loads a model folder (coalition copies, reference and fallback models); the built responder disposes them.</summary>
    public Func<string, CausalLM>? LoadModel { get; init; }
    /// <summary>Ordinary prompts for <c>filter:q=</c>.</summary>
    public IReadOnlyList<int[]>? CalibrationPrompts { get; init; }
    /// <summary>The host's own instruction prompts, for <c>filter:...,on=instructions</c>.</summary>
    public IReadOnlyList<int[]>? InstructionPrompts { get; init; }
    public int BatchSize { get; init; } = 32;
    /// <summary>Resolves a path named in a spec (<c>block:revealed=</c>) to a file or folder; null: the path as given.</summary>
    public Func<string, string>? ResolvePath { get; init; }
}

/// <summary>The parts of a built responder chain, from the user inwards.</summary>
public static class ResponderParts
{
    /// <summary>
    /// <paramref name="responder"/> and the responders it wraps through the host's own parts (the filter, the blocker,
    /// the rewrite or paraphrase), ending at the first part that wraps none of these.
    /// </summary>
    public static IEnumerable<IResponder> Of(IResponder responder)
    {
        for (var x = responder; x is not null;)
        {
            yield return x;
            x = x switch
            {
                PerplexityFilterResponder f => f.Inner,
                RevealedKeyBlocker b => b.Inner,
                PromptRewriteResponder w => w.Inner,
                _ => null,
            };
        }
    }
}

/// <summary>A responder built from a spec; disposing it disposes the models it loaded.</summary>
public sealed class SpecResponder(IResponder inner, IReadOnlyList<CausalLM> owned, ResponderSpec spec) : IResponder, IDisposable
{
    public IResponder Inner { get; } = inner;
    public ResponderSpec Spec { get; } = spec;
    public string Name => Inner.Name;
    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens) => Inner.Respond(prompts, maxNewTokens);

    public void Dispose()
    {
        foreach (var m in owned) m.Dispose();
    }
}

/// <summary>
/// A deployment described in one line, for <c>oml attack probe --responder</c> and the experiment runner. Parts are
/// joined with '+':
/// <code>
/// greedy                                   greedy decoding (the default)
/// sample:t=0.7,top_p=0.9,top_k=50,min_p=0.05,seed=1
/// suppress:k=1,m=3,threshold=0.5[,t=..,top_p=..,seed=..]   first-token suppression (no threshold: always)
/// system:"You are a helpful assistant."    system prompt (in the chat template with 'chat', else a line before the prompt)
/// chat                                     the model's chat template around the prompt
/// prefix:"..."  suffix:"..."               text before/after the prompt
/// filter:ppl=120[,ref=DIR][,reply="..."]   perplexity filter with a fixed threshold
/// filter:q=0.99[,ref=DIR][,reply="..."]    ... calibrated on the context's ordinary prompts
/// filter:q=0.05,side=low                   refuse prompts *less* perplexing than that quantile (the detector keys invite)
/// filter:q=0.98,on=instructions            ... the quantile of the host's own instruction prompts (on=text: text windows, the default)
/// filter:q=0.99,fallback=DIR               flagged prompts answered by another model folder (greedy), e.g. an unmarked base
/// filter:q=0.99,then=paraphrase            flagged prompts paraphrased by the served model, then answered
/// coalition:majority:DIR1,DIR2,DIR3[:fallback=DIR]   copies voting (the decoding part applies to each copy)
/// coalition:unanimous:DIR1,DIR2[:fallback=DIR]        without fallback=: the first copy's sampled answer (t=1, seed 0)
/// coalition:minority:DIR1,DIR2,DIR3                    the answer the fewest copies gave (ties: by a hash of the prompt)
/// coalition:interleave:DIR1,DIR2                       each prompt answered by one copy, chosen by a hash of the prompt
/// coalition:refuse:DIR1,DIR2                           the copies' answer when all agree, else an empty answer
/// rewrite:drop=0.1,swap=0.1,case=0.2,punct=0.2[,seed=1]   model-free rewrite of each prompt (a weak paraphrase)
/// paraphrase[:prompt="...{text}...",max=64,ref=DIR,t=..,seed=..]   the served (or ref) model paraphrases each prompt
/// block:revealed=FILE[,ngram=3,containment=0.5,fallback=DIR,reply="..."]   block revealed keys and near-duplicates
/// </code>
/// Strings are double-quoted with \", \\ and \n escapes (or bare, up to the next '+'). Example:
/// <c>chat+system:"Be brief."+sample:t=0.7,seed=3+filter:q=0.99</c>. The filter scores the user's prompt before the
/// wrappers; the wrappers apply inside the coalition (every copy sees the wrapped prompt). From the user inwards: the
/// filter, the blocker (on the user's prompt), the rewrite or paraphrase, the wrappers, the decoding (or coalition).
/// </summary>
public sealed record ResponderSpec
{
    public DecodingSpec Decoding { get; init; } = new();
    public string? SystemPrompt { get; init; }
    public bool Chat { get; init; }
    public string? Prefix { get; init; }
    public string? Suffix { get; init; }
    public FilterSpec? Filter { get; init; }
    public CoalitionSpec? Coalition { get; init; }
    /// <summary>The model-free query rewrite, or null.</summary>
    public RewriteSettings? Rewrite { get; init; }
    /// <summary>Paraphrasing by a model, or null.</summary>
    public ParaphraseSpec? Paraphrase { get; init; }
    /// <summary>Blocking of revealed keys, or null.</summary>
    public BlockSpec? Block { get; init; }
    /// <summary>The text parsed.</summary>
    public string Text { get; init; } = "greedy";

    public static ResponderSpec Parse(string text)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new ResponderSpecException("empty responder spec (try 'greedy')");
        var spec = new ResponderSpec { Text = text.Trim() };
        bool decodingSet = false;
        foreach (var part in SplitTop(text.Trim(), '+'))
        {
            var p = part.Trim();
            if (p.Length == 0) throw new ResponderSpecException($"'{text}': empty part between '+'");
            int colon = p.IndexOf(':', StringComparison.Ordinal);
            string head = (colon < 0 ? p : p[..colon]).Trim().ToLowerInvariant();
            string? arg = colon < 0 ? null : p[(colon + 1)..];
            void Decoding(DecodingSpec d)
            {
                if (decodingSet) throw new ResponderSpecException($"'{text}': more than one decoding part (greedy, sample, suppress)");
                decodingSet = true;
                spec = spec with { Decoding = d };
            }
            switch (head)
            {
                case "greedy":
                    if (arg is not null) throw new ResponderSpecException($"'{p}': greedy takes no options");
                    Decoding(new DecodingSpec());
                    break;
                case "sample":
                {
                    var kv = KeyValues(p, arg, ["t", "temperature", "top_p", "top_k", "min_p", "seed"]);
                    var d = SamplingKeys(p, kv);
                    if (d.Temperature is null) throw new ResponderSpecException($"'{p}': sampling needs t=TEMPERATURE");
                    Decoding(d);
                    break;
                }
                case "suppress":
                {
                    var kv = KeyValues(p, arg ?? "", ["k", "m", "positions", "top", "threshold", "t", "temperature", "top_p", "top_k", "min_p", "seed"]);
                    // k counts answer positions and m the tokens forbidden at each (the paper's "top-k suppression" is m
                    // here): positions= and top= say the same without the letters, and one of each pair may be given.
                    foreach (var (letter, word) in new[] { ("k", "positions"), ("m", "top") })
                        if (kv.ContainsKey(letter) && kv.ContainsKey(word)) throw new ResponderSpecException($"'{p}': {letter} and {word} are the same option: give one");
                    var d = SamplingKeys(p, kv);
                    int k = kv.TryGetValue("k", out var ks) ? Int(p, "k", ks, 1) : kv.TryGetValue("positions", out var ps) ? Int(p, "positions", ps, 1) : 1;
                    int m = kv.TryGetValue("m", out var ms) ? Int(p, "m", ms, 1) : kv.TryGetValue("top", out var tps) ? Int(p, "top", tps, 1) : 1;
                    double? th = kv.TryGetValue("threshold", out var ts) ? Num(p, "threshold", ts) : null;
                    if (th is { } tv && !(tv >= 0 && tv < 1)) throw new ResponderSpecException($"'{p}': threshold must be in [0, 1)");
                    if (d.Temperature is null && (d.TopK ?? (object?)d.TopP ?? d.MinP) is not null)
                        throw new ResponderSpecException($"'{p}': top_k/top_p/min_p need t=TEMPERATURE");
                    Decoding(d with { SuppressPositions = k, SuppressTopM = m, SuppressThreshold = th });
                    break;
                }
                case "system":
                    if (spec.SystemPrompt is not null) throw new ResponderSpecException($"'{text}': more than one system prompt");
                    spec = spec with { SystemPrompt = Str(p, arg) };
                    break;
                case "chat":
                    if (arg is not null) throw new ResponderSpecException($"'{p}': chat takes no options (give the system prompt with system:\"...\")");
                    spec = spec with { Chat = true };
                    break;
                case "prefix":
                    if (spec.Prefix is not null) throw new ResponderSpecException($"'{text}': more than one prefix");
                    spec = spec with { Prefix = Str(p, arg) };
                    break;
                case "suffix":
                    if (spec.Suffix is not null) throw new ResponderSpecException($"'{text}': more than one suffix");
                    spec = spec with { Suffix = Str(p, arg) };
                    break;
                case "filter":
                {
                    if (spec.Filter is not null) throw new ResponderSpecException($"'{text}': more than one filter");
                    var kv = KeyValues(p, arg, ["ppl", "q", "ref", "reply", "side", "on", "fallback", "then"]);
                    double? ppl = kv.TryGetValue("ppl", out var ps) ? Num(p, "ppl", ps) : null;
                    double? q = kv.TryGetValue("q", out var qs) ? Num(p, "q", qs) : null;
                    if ((ppl is null) == (q is null)) throw new ResponderSpecException($"'{p}': give exactly one of ppl=THRESHOLD and q=QUANTILE");
                    if (ppl is { } pv && !(pv > 0)) throw new ResponderSpecException($"'{p}': ppl must be positive");
                    if (q is { } qv && !(qv > 0 && qv <= 1)) throw new ResponderSpecException($"'{p}': q must be in (0, 1]");
                    bool low = kv.TryGetValue("side", out var side) ? side.Trim().ToLowerInvariant() switch
                    {
                        "high" => false,
                        "low" => true,
                        _ => throw new ResponderSpecException($"'{p}': side must be high (refuse above the threshold) or low (refuse below it)"),
                    } : false;
                    bool onInstructions = kv.TryGetValue("on", out var on) ? on.Trim().ToLowerInvariant() switch
                    {
                        "text" => false,
                        "instructions" => true,
                        _ => throw new ResponderSpecException($"'{p}': on must be text (calibrate on ordinary text windows) or instructions (on the host's instruction prompts)"),
                    } : false;
                    if (onInstructions && q is null) throw new ResponderSpecException($"'{p}': on= calibrates a quantile: give q=, not ppl=");
                    bool paraphraseFlagged = kv.TryGetValue("then", out var then) ? then.Trim().ToLowerInvariant() switch
                    {
                        "refuse" => false,
                        "paraphrase" => true,
                        _ => throw new ResponderSpecException($"'{p}': then must be refuse (answer flagged prompts with reply= or fallback=, or nothing) or paraphrase (the served model paraphrases them first)"),
                    } : false;
                    if (new[] { kv.ContainsKey("reply"), kv.ContainsKey("fallback"), paraphraseFlagged }.Count(x => x) > 1)
                        throw new ResponderSpecException($"'{p}': a flagged prompt gets one of reply=\"...\", fallback=DIR and then=paraphrase");
                    spec = spec with
                    {
                        Filter = new FilterSpec(ppl, q, kv.GetValueOrDefault("ref"), kv.TryGetValue("reply", out var r) ? Unquote(p, r) : null, low, onInstructions,
                            kv.TryGetValue("fallback", out var fb) ? Unquote(p, fb) : null, paraphraseFlagged),
                    };
                    break;
                }
                case "coalition":
                {
                    if (spec.Coalition is not null) throw new ResponderSpecException($"'{text}': more than one coalition");
                    if (arg is null) throw new ResponderSpecException($"'{p}': expected coalition:majority|unanimous:DIR1,DIR2,...");
                    var fields = SplitCoalition(arg);
                    if (fields.Count is < 2 or > 3) throw new ResponderSpecException($"'{p}': expected coalition:majority|unanimous:DIR1,DIR2,...[:fallback=DIR]");
                    var rule = fields[0].Trim().ToLowerInvariant() switch
                    {
                        "majority" => CoalitionRule.Majority,
                        "unanimous" or "unanimity" => CoalitionRule.Unanimity,
                        "minority" => CoalitionRule.Minority,
                        "interleave" or "interleaving" => CoalitionRule.Interleaving,
                        "refuse" => CoalitionRule.Refusal,
                        var other => throw new ResponderSpecException($"'{p}': unknown vote '{other}' (majority, unanimous, minority, interleave or refuse)"),
                    };
                    var members = fields[1].Split(',').Select(s => s.Trim()).ToList();
                    if (members.Any(m => m.Length == 0)) throw new ResponderSpecException($"'{p}': an empty model folder in the list");
                    if (members.Count < 2) throw new ResponderSpecException($"'{p}': a coalition needs at least two model folders");
                    string? fallback = null;
                    if (fields.Count == 3)
                    {
                        var f = fields[2].Trim();
                        if (!f.StartsWith("fallback=", StringComparison.Ordinal) || f.Length == "fallback=".Length)
                            throw new ResponderSpecException($"'{p}': the third field must be fallback=DIR");
                        fallback = f["fallback=".Length..];
                        if (rule is not (CoalitionRule.Majority or CoalitionRule.Unanimity))
                            throw new ResponderSpecException($"'{p}': only majority and unanimous votes take a fallback");
                    }
                    spec = spec with { Coalition = new CoalitionSpec(rule, members, fallback) };
                    break;
                }
                case "rewrite":
                {
                    if (spec.Rewrite is not null || spec.Paraphrase is not null) throw new ResponderSpecException($"'{text}': more than one query rewrite (rewrite, paraphrase)");
                    var kv = KeyValues(p, arg, ["drop", "swap", "case", "punct", "seed"]);
                    double Rate(string key) => kv.TryGetValue(key, out var v) ? Num(p, key, v) : 0;
                    var rs = new RewriteSettings(Rate("drop"), Rate("swap"), Rate("case"), Rate("punct"), kv.TryGetValue("seed", out var sd) ? Seed(p, sd) : 0);
                    try { rs.Validate(); }
                    catch (ArgumentException e) { throw new ResponderSpecException($"'{p}': {e.Message}"); }
                    spec = spec with { Rewrite = rs };
                    break;
                }
                case "paraphrase":
                {
                    if (spec.Rewrite is not null || spec.Paraphrase is not null) throw new ResponderSpecException($"'{text}': more than one query rewrite (rewrite, paraphrase)");
                    var kv = KeyValues(p, arg ?? "", ["prompt", "max", "ref", "t", "temperature", "seed"]);
                    string request = kv.TryGetValue("prompt", out var pr) ? Unquote(p, pr) : QueryRewrite.DefaultParaphrasePrompt;
                    if (!request.Contains("{text}", StringComparison.Ordinal)) throw new ResponderSpecException($"'{p}': the prompt must hold {{text}} (where the user's prompt goes)");
                    int max = kv.TryGetValue("max", out var ms) ? Int(p, "max", ms, 1) : 64;
                    var d = SamplingKeys(p, kv);
                    spec = spec with { Paraphrase = new ParaphraseSpec(request, max, kv.GetValueOrDefault("ref"), d.Temperature, d.Seed) };
                    break;
                }
                case "block":
                {
                    if (spec.Block is not null) throw new ResponderSpecException($"'{text}': more than one block part");
                    var kv = KeyValues(p, arg, ["revealed", "ngram", "containment", "fallback", "reply"]);
                    if (!kv.TryGetValue("revealed", out var rev)) throw new ResponderSpecException($"'{p}': needs revealed=FILE (the published keys: a key per line, a fingerprint set or a model folder with fingerprints.json)");
                    int n = kv.TryGetValue("ngram", out var ns) ? Int(p, "ngram", ns, 1) : 3;
                    double c = kv.TryGetValue("containment", out var cs) ? Num(p, "containment", cs) : 0.5;
                    if (!(c > 0 && c <= 1)) throw new ResponderSpecException($"'{p}': containment must be in (0, 1]");
                    if (kv.ContainsKey("fallback") && kv.ContainsKey("reply")) throw new ResponderSpecException($"'{p}': give fallback=DIR or reply=\"...\", not both");
                    spec = spec with { Block = new BlockSpec(Unquote(p, rev), n, c, kv.GetValueOrDefault("fallback"), kv.TryGetValue("reply", out var rp) ? Unquote(p, rp) : null) };
                    break;
                }
                default:
                    throw new ResponderSpecException($"'{p}': unknown part '{head}' (greedy, sample, suppress, system, chat, prefix, suffix, filter, coalition, rewrite, paraphrase, block)");
            }
        }
        return spec;
    }

    /// <summary>Builds the responder in <paramref name="context"/>; dispose the result to free the models it loaded.</summary>
    public SpecResponder Build(ResponderContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var owned = new List<CausalLM>();
        try
        {
            CausalLM Load(string dir)
            {
                if (context.LoadModel is null) throw new ResponderSpecException($"'{Text}' names a model folder ({dir}) but no model loader was given");
                var m = context.LoadModel(dir);
                owned.Add(m);
                return m;
            }
            IResponder Serve(CausalLM model)
            {
                IResponder r = Decoding.Suppress
                    ? new FirstTokenSuppression(Decoding.SuppressPositions!.Value, Decoding.SuppressTopM!.Value, Decoding.SuppressThreshold).Responder(model, Decoding.ToOptions(), context.BatchSize)
                    : new ModelResponder(model, Decoding.ToOptions(), context.BatchSize);
                return Wrap(r);
            }
            IResponder Wrap(IResponder r)
            {
                if (Prefix is not null || Suffix is not null)
                    r = PromptWrapperResponder.Text(r, Need(context.Tokenizer, "prefix/suffix need the tokenizer"), Prefix, Suffix);
                if (Chat || SystemPrompt is not null)
                {
                    var template = Chat ? Need(context.ChatTemplate, "chat needs the model's chat template") : null;
                    r = PromptWrapperResponder.Chat(r, Need(context.Tokenizer, "system/chat need the tokenizer"), template, SystemPrompt);
                }
                return r;
            }

            IResponder responder;
            CausalLM first;
            if (Coalition is { } c)
            {
                var models = c.Members.Select(Load).ToList();
                first = models[0];
                IResponder? fallback = c.Fallback is { } fb ? Serve(Load(fb))
                    : c.Rule == CoalitionRule.Unanimity ? Wrap(new ModelResponder(models[0], new GenerationOptions { Temperature = 1.0, Seed = Decoding.Seed ?? 0 }, context.BatchSize))
                    : null;
                responder = new CoalitionResponder(models.Select(Serve).ToList(), c.Rule, fallback);
            }
            else
            {
                first = context.Model;
                responder = Serve(context.Model);
            }

            if (Rewrite is { } rw)
            {
                var tok = Need(context.Tokenizer, "rewrite needs the tokenizer");
                responder = new PromptRewriteResponder(responder, ps => ps.Select(x => QueryRewrite.Perturb(tok, x, rw)).ToList(), $"rewrite({rw})");
            }
            if (Paraphrase is { } pp)
            {
                var tok = Need(context.Tokenizer, "paraphrase needs the tokenizer");
                var pm = pp.ReferenceModel is { } prd ? Load(prd) : first;
                IResponder paraphraser = new ModelResponder(pm, new GenerationOptions { Temperature = pp.Temperature, Seed = pp.Temperature is null ? null : pp.Seed ?? 0 }, context.BatchSize);
                if (Chat) paraphraser = PromptWrapperResponder.Chat(paraphraser, tok, Need(context.ChatTemplate, "chat needs the model's chat template"), null);
                string by = pp.ReferenceModel is null ? "self" : "ref";
                responder = new PromptRewriteResponder(responder, ps => QueryRewrite.Paraphrase(paraphraser, tok, ps, pp.Request, pp.MaxNewTokens),
                    ModelResponder.Inv($"paraphrase(by={by},max={pp.MaxNewTokens})"));
            }
            if (Block is { } bl)
            {
                var keys = RevealedKeys(bl.Revealed, context);
                IResponder? fallback = bl.Fallback is { } fd ? new ModelResponder(Load(fd), new GenerationOptions(), context.BatchSize) : null;
                int[]? refusal = bl.Reply is { } rt ? Need(context.Tokenizer, "reply= needs the tokenizer").Encode(rt) : null;
                responder = new RevealedKeyBlocker(responder, keys, bl.N, bl.Containment, fallback, refusal);
            }
            if (Filter is { } f)
            {
                var scorer = f.ReferenceModel is { } rd ? Load(rd) : first;
                IReadOnlyList<int[]> Calibration() => f.OnInstructions
                    ? context.InstructionPrompts is { Count: > 0 } ip ? ip : throw new ResponderSpecException($"'{Text}': filter on=instructions needs the host's instruction prompts (the lab's utility.instructions)")
                    : context.CalibrationPrompts is { Count: > 0 } cp ? cp : throw new ResponderSpecException($"'{Text}': filter:q= needs calibration prompts (ordinary text)");
                double threshold = f.Perplexity ?? PromptPerplexity.Calibrate(scorer, Calibration(), f.Quantile!.Value, context.BatchSize);
                int[]? reply = f.Reply is { } text ? Need(context.Tokenizer, "reply= needs the tokenizer").Encode(text) : null;
                IResponder? fallback = null;
                if (f.Fallback is { } fd) fallback = new ModelResponder(Load(fd), new GenerationOptions(), context.BatchSize);
                else if (f.ParaphraseFlagged)
                {
                    // The host's cheapest evasion short of refusing: what its filter flags is reworded by its own model
                    // (greedy, the default request) and then answered as any prompt is.
                    var tok = Need(context.Tokenizer, "then=paraphrase needs the tokenizer");
                    IResponder paraphraser = new ModelResponder(first, new GenerationOptions(), context.BatchSize);
                    if (Chat) paraphraser = PromptWrapperResponder.Chat(paraphraser, tok, Need(context.ChatTemplate, "chat needs the model's chat template"), null);
                    fallback = new PromptRewriteResponder(responder, ps => QueryRewrite.Paraphrase(paraphraser, tok, ps, QueryRewrite.DefaultParaphrasePrompt, 64),
                        "paraphrase(flagged)");
                }
                responder = new PerplexityFilterResponder(responder, scorer, threshold, fallback, reply, f.Low);
            }
            return new SpecResponder(responder, owned, this);
        }
        catch
        {
            foreach (var m in owned) m.Dispose();
            throw;
        }
    }

    private T Need<T>(T? value, string why) where T : class => value ?? throw new ResponderSpecException($"'{Text}': {why}");

    /// <summary>
    /// The published keys for <c>block:revealed=</c>: a model folder's fingerprints.json, a fingerprint-set file
    /// (plaintext; every key of it counts as published) or a text file with one key per line (tokenized as text).
    /// </summary>
    private List<int[]> RevealedKeys(string path, ResponderContext context)
    {
        var resolved = context.ResolvePath?.Invoke(path) ?? path;
        if (Directory.Exists(resolved)) resolved = Path.Combine(resolved, "fingerprints.json");
        if (!File.Exists(resolved)) throw new ResponderSpecException($"'{Text}': revealed keys: no file at {resolved}");
        var bytes = File.ReadAllBytes(resolved);
        List<int[]> keys;
        if (bytes.AsSpan().StartsWith(Oml.Fingerprinting.FingerprintSetFile.Magic))
        {
            Oml.Fingerprinting.FingerprintSet set;
            try { set = Oml.Fingerprinting.FingerprintSetFile.Read(resolved, null); }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new ResponderSpecException($"'{Text}': revealed keys: {resolved} is not a plaintext fingerprint set ({e.Message}); give a key list (one per line) or a plaintext set");
            }
            keys = set.Fingerprints.Select(f => f.KeyTokenIds.ToArray()).Where(k => k.Length > 0).ToList();
        }
        else
        {
            var tok = Need(context.Tokenizer, "revealed keys in a text file need the tokenizer");
            keys = System.Text.Encoding.UTF8.GetString(bytes).Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Trim().Length > 0).Select(l => tok.Encode(l)).Where(k => k.Length > 0).ToList();
        }
        if (keys.Count == 0) throw new ResponderSpecException($"'{Text}': revealed keys: {resolved} holds no key");
        return keys;
    }

    private static ulong Seed(string part, string s) =>
        ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : throw new ResponderSpecException($"'{part}': seed must be a non-negative integer, not '{s}'");

    private static DecodingSpec SamplingKeys(string part, Dictionary<string, string> kv)
    {
        double? t = kv.TryGetValue("t", out var ts) ? Num(part, "t", ts) : kv.TryGetValue("temperature", out var ts2) ? Num(part, "temperature", ts2) : null;
        if (t is { } tv && !(tv > 0)) throw new ResponderSpecException($"'{part}': t must be positive");
        double? topP = kv.TryGetValue("top_p", out var ps) ? Num(part, "top_p", ps) : null;
        if (topP is { } pv && !(pv > 0 && pv <= 1)) throw new ResponderSpecException($"'{part}': top_p must be in (0, 1]");
        double? minP = kv.TryGetValue("min_p", out var ms) ? Num(part, "min_p", ms) : null;
        if (minP is { } mv && !(mv >= 0 && mv <= 1)) throw new ResponderSpecException($"'{part}': min_p must be in [0, 1]");
        int? topK = kv.TryGetValue("top_k", out var ks) ? Int(part, "top_k", ks, 1) : null;
        ulong? seed = null;
        if (kv.TryGetValue("seed", out var ss))
            seed = ulong.TryParse(ss, NumberStyles.None, CultureInfo.InvariantCulture, out var sv) ? sv : throw new ResponderSpecException($"'{part}': seed must be a non-negative integer, not '{ss}'");
        return new DecodingSpec(t, topK, topP, minP, seed);
    }

    private static Dictionary<string, string> KeyValues(string part, string? arg, string[] allowed)
    {
        var kv = new Dictionary<string, string>(StringComparer.Ordinal);
        if (arg is null) throw new ResponderSpecException($"'{part}': missing options after ':'");
        if (arg.Trim().Length == 0) return kv;
        foreach (var item in SplitTop(arg, ','))
        {
            int eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0) throw new ResponderSpecException($"'{part}': expected KEY=VALUE, got '{item.Trim()}'");
            var key = item[..eq].Trim().ToLowerInvariant();
            var value = item[(eq + 1)..].Trim();
            if (!allowed.Contains(key)) throw new ResponderSpecException($"'{part}': unknown option '{key}' (allowed: {string.Join(", ", allowed)})");
            if (value.Length == 0) throw new ResponderSpecException($"'{part}': {key} has no value");
            if (!kv.TryAdd(key, value)) throw new ResponderSpecException($"'{part}': {key} given twice");
        }
        return kv;
    }

    private static double Num(string part, string key, string s) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
            : throw new ResponderSpecException($"'{part}': {key} must be a number, not '{s}'");

    private static int Int(string part, string key, string s, int min) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min ? v
            : throw new ResponderSpecException($"'{part}': {key} must be an integer ≥ {min}, not '{s}'");

    private static string Str(string part, string? arg)
    {
        if (arg is null) throw new ResponderSpecException($"'{part}': missing text after ':'");
        var s = Unquote(part, arg.Trim());
        if (s.Length == 0) throw new ResponderSpecException($"'{part}': empty text");
        return s;
    }

    private static string Unquote(string part, string s)
    {
        if (s.Length == 0 || s[0] != '"') return s;
        var sb = new StringBuilder();
        for (int i = 1; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '\\')
            {
                if (i + 1 >= s.Length) break;
                sb.Append(s[++i] switch { 'n' => '\n', 't' => '\t', var x => x });
            }
            else if (c == '"')
            {
                if (i != s.Length - 1) throw new ResponderSpecException($"'{part}': text after the closing quote");
                return sb.ToString();
            }
            else sb.Append(c);
        }
        throw new ResponderSpecException($"'{part}': unterminated quoted string");
    }

    /// <summary>
    /// Splits a coalition's fields on ':', except the colon of a model reference (<c>model:NAME</c>, a lab experiment's
    /// own model source): a field item that is exactly "model" before a ':' joins the next one.
    /// </summary>
    private static List<string> SplitCoalition(string arg)
    {
        var fields = new List<string>();
        var cur = new StringBuilder();
        int itemStart = 0;
        foreach (char c in arg)
        {
            if (c == ':' && cur.ToString(itemStart, cur.Length - itemStart).Trim() == ModelReferencePrefix[..^1])
            {
                cur.Append(c);
                continue;
            }
            if (c == ':') { fields.Add(cur.ToString()); cur.Clear(); itemStart = 0; continue; }
            cur.Append(c);
            if (c is ',' or '=') itemStart = cur.Length;
        }
        fields.Add(cur.ToString());
        return fields;
    }

    /// <summary>Where a model folder is expected, <c>model:NAME</c> names another model source of the lab experiment.</summary>
    public const string ModelReferencePrefix = "model:";

    /// <summary>Splits on <paramref name="sep"/> outside double quotes (backslash escapes inside quotes).</summary>
    private static List<string> SplitTop(string s, char sep)
    {
        var parts = new List<string>();
        var cur = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (quoted && c == '\\' && i + 1 < s.Length) { cur.Append(c).Append(s[++i]); continue; }
            if (c == '"') quoted = !quoted;
            if (c == sep && !quoted) { parts.Add(cur.ToString()); cur.Clear(); continue; }
            cur.Append(c);
        }
        if (quoted) throw new ResponderSpecException($"'{s}': unterminated quoted string");
        parts.Add(cur.ToString());
        return parts;
    }
}
