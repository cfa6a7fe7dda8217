using System.Globalization;
using Oml.Engine;
using Oml.Models;

namespace Oml.Lab.Attacks;

/// <summary>
/// First-token suppression, a decoding-time attack of a host that does not know the fingerprints, after the
/// "output suppression" and "output detection" attacks of Nasery et al., "Are Robust LLM Fingerprints Adversarially
/// Robust?" (arXiv 2509.26598; we had its abstract and a summary, not the full text): memorisation-based fingerprints are verified verbatim and the fingerprinted model is
/// overconfident on the first tokens of a fingerprint response, so the host perturbs the first few tokens of every answer.
/// At each of the first <see cref="Positions"/> (k) generated positions, the <see cref="TopM"/> (m) most probable tokens
/// are forbidden (logit −∞) and the next token is chosen among the rest by the responder's decoding (greedy or sampled):
/// always when <see cref="Threshold"/> is null (output suppression), or only in rows where the most probable token's
/// probability (softmax of the raw logits, before any temperature) exceeds the threshold (output detection: suppress only
/// where the model looks like it is reciting). The paper's exact parameter values are not reproduced here; k, m and the
/// threshold are the lab's knobs.
/// </summary>
public sealed class FirstTokenSuppression
{
    private long _interventions;

    public FirstTokenSuppression(int positions = 1, int topM = 1, double? threshold = null)
    {
        if (positions < 1) throw new ArgumentOutOfRangeException(nameof(positions), positions, "suppress at least the first position (k ≥ 1)");
        if (topM < 1) throw new ArgumentOutOfRangeException(nameof(topM), topM, "forbid at least the top token (m ≥ 1)");
        if (threshold is { } t && !(t >= 0 && t < 1)) throw new ArgumentOutOfRangeException(nameof(threshold), t, "the confidence threshold must be in [0, 1)");
        Positions = positions;
        TopM = topM;
        Threshold = threshold;
    }

    public int Positions { get; }
    public int TopM { get; }
    public double? Threshold { get; }

    /// <summary>(row, position) pairs where tokens were forbidden so far.</summary>
    public long Interventions => Interlocked.Read(ref _interventions);

    public string Name => Threshold is { } t
        ? string.Create(CultureInfo.InvariantCulture, $"suppress(k={Positions},m={TopM},threshold={t})")
        : string.Create(CultureInfo.InvariantCulture, $"suppress(k={Positions},m={TopM},always)");

    /// <summary>The logits processor (see <see cref="GenerationOptions.LogitsProcessor"/>).</summary>
    public Tensor Process(Tensor logits, int step)
    {
        if (step >= Positions) return logits;
        long vocab = logits.Size(-1);
        if (TopM >= vocab) throw new InvalidOperationException($"cannot forbid the top {TopM} of {vocab} tokens");
        var probs = logits.Softmax(-1);
        var (values, indices) = probs.TopK(TopM, -1);
        var forbid = Torch.ZerosLike(logits).Scatter(-1, indices, 1.0).Gt(0.5);
        Tensor rows = Threshold is { } t ? values.Narrow(-1, 0, 1).Gt(t) : Torch.Ones([logits.Size(0), 1], DType.Bool, logits.Device);
        forbid = forbid.LogicalAnd(rows);
        Interlocked.Add(ref _interventions, rows.To(DType.Int64).Sum().ToInt64());
        return logits.MaskedFill(forbid, double.NegativeInfinity);
    }

    /// <summary>A responder that serves <paramref name="model"/> with this suppression and the given decoding.</summary>
    public ModelResponder Responder(CausalLM model, GenerationOptions? decoding = null, int batchSize = 32)
    {
        var o = (decoding ?? new GenerationOptions()) with { LogitsProcessor = Process };
        return new ModelResponder(model, o, batchSize, $"{Name}>{ModelResponder.DescribeDecoding(o)}");
    }
}

/// <summary>Perplexity of prompts under a language model, and its calibration on ordinary text.</summary>
public static class PromptPerplexity
{
    /// <summary>
    /// exp(mean negative log-likelihood of tokens 2..n given the tokens before them) for each prompt. A one-token prompt
    /// has nothing to predict and scores 1. Prompts of equal length are scored together in batches (no padding).
    /// </summary>
    public static double[] Score(CausalLM model, IReadOnlyList<int[]> prompts, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelResponder.Check(prompts, 0);
        int vocab = model.Config.VocabSize;
        foreach (var p in prompts)
            foreach (var id in p)
                if (id < 0 || id >= vocab) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {vocab})");
        var result = new double[prompts.Count];
        using var noGrad = Torch.NoGrad();
        foreach (var group in Enumerable.Range(0, prompts.Count).GroupBy(i => prompts[i].Length))
        {
            int len = group.Key;
            if (len == 1)
            {
                foreach (var i in group) result[i] = 1;
                continue;
            }
            foreach (var batch in group.Chunk(Math.Max(1, batchSize)))
            {
                using var scope = Torch.NewScope();
                var data = batch.SelectMany(i => prompts[i].Select(x => (long)x)).ToArray();
                var x = Torch.FromArray<long>(data, [batch.Length, len], model.Device);
                var logp = model.Forward(x).Narrow(1, 0, len - 1).To(DType.Float32).LogSoftmax(-1);
                var nll = -logp.Gather(-1, x.Narrow(1, 1, len - 1).Unsqueeze(-1)).Squeeze(-1).Mean(1);
                var values = nll.To(DType.Float64).ToArray<double>();
                for (int j = 0; j < batch.Length; j++) result[batch[j]] = Math.Exp(values[j]);
            }
        }
        return result;
    }

    /// <summary>The q-quantile of <paramref name="values"/> with linear interpolation between order statistics (numpy's default).</summary>
    public static double Quantile(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0) throw new ArgumentException("no values to take a quantile of");
        if (!(q >= 0 && q <= 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "the quantile must be in [0, 1]");
        var sorted = values.OrderBy(v => v).ToArray();
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>
    /// A threshold calibrated on ordinary text: the <paramref name="quantile"/> (e.g. 0.99) of the perplexities of
    /// <paramref name="ordinaryPrompts"/> (held-out sentences a host expects from its users).
    /// </summary>
    public static double Calibrate(CausalLM model, IReadOnlyList<int[]> ordinaryPrompts, double quantile = 0.99, int batchSize = 32)
    {
        if (ordinaryPrompts.Count == 0) throw new ArgumentException("calibration needs ordinary prompts");
        return Quantile(Score(model, ordinaryPrompts, batchSize), quantile);
    }
}

/// <summary>
/// Perplexity-based input filtering, the "input detection" attack of arXiv 2509.26598 (after the perplexity filter of
/// Jain et al. 2023, "Baseline defenses for adversarial attacks against aligned language models"): fingerprint keys made of
/// random tokens or optimised suffixes are far less likely than what users type, so the host scores each prompt's
/// perplexity under <see cref="Scorer"/> (the served model or a reference model) and does not let the served model answer
/// prompts above <see cref="Threshold"/> (see <see cref="PromptPerplexity.Calibrate"/>): those get the
/// <see cref="Fallback"/> responder's answer (e.g. a base model's) or else the canned <see cref="Refusal"/> tokens (empty
/// by default: the host answers nothing). With <see cref="RefuseBelow"/> the filter looks the other way: keys sampled
/// from the model itself (Perinucleus keys) are <em>less</em> perplexing than what users type, so a host that knows
/// the scheme refuses prompts below a low quantile of ordinary text instead.
/// </summary>
public sealed class PerplexityFilterResponder : IResponder
{
    private int _refused;

    public PerplexityFilterResponder(IResponder inner, CausalLM scorer, double threshold, IResponder? fallback = null, int[]? refusal = null,
        bool refuseBelow = false)
    {
        Inner = inner ?? throw new ArgumentNullException(nameof(inner));
        Scorer = scorer ?? throw new ArgumentNullException(nameof(scorer));
        if (!(threshold > 0) || double.IsNaN(threshold)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the perplexity threshold must be positive");
        Threshold = threshold;
        RefuseBelow = refuseBelow;
        Fallback = fallback;
        Refusal = refusal ?? [];
    }

    public IResponder Inner { get; }
    public CausalLM Scorer { get; }
    public double Threshold { get; }
    public IResponder? Fallback { get; }
    public int[] Refusal { get; }
    /// <summary>Refuse prompts whose perplexity is below <see cref="Threshold"/> (else above it).</summary>
    public bool RefuseBelow { get; }

    /// <summary>Prompts refused (answered by the fallback or the refusal) so far.</summary>
    public int Refused => Volatile.Read(ref _refused);

    public string Name => ModelResponder.Inv($"filter(ppl{(RefuseBelow ? "<" : ">")}{Threshold:G4}{(Fallback is null ? "" : $",fallback={Fallback.Name}")})>{Inner.Name}");

    /// <summary>Which prompts the filter refuses.</summary>
    public bool[] Flags(IReadOnlyList<int[]> prompts) => PromptPerplexity.Score(Scorer, prompts).Select(p => RefuseBelow ? p < Threshold : p > Threshold).ToArray();

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        ModelResponder.Check(prompts, maxNewTokens);
        var flags = Flags(prompts);
        var answers = new int[prompts.Count][];
        var pass = Enumerable.Range(0, prompts.Count).Where(i => !flags[i]).ToList();
        var refused = Enumerable.Range(0, prompts.Count).Where(i => flags[i]).ToList();
        Interlocked.Add(ref _refused, refused.Count);
        if (pass.Count > 0)
        {
            var a = Inner.Respond(pass.Select(i => prompts[i]).ToList(), maxNewTokens);
            for (int j = 0; j < pass.Count; j++) answers[pass[j]] = a[j];
        }
        if (refused.Count > 0)
        {
            if (Fallback is not null)
            {
                var a = Fallback.Respond(refused.Select(i => prompts[i]).ToList(), maxNewTokens);
                for (int j = 0; j < refused.Count; j++) answers[refused[j]] = a[j];
            }
            else foreach (var i in refused) answers[i] = Refusal.Take(maxNewTokens).ToArray();
        }
        return answers;
    }
}

public enum CoalitionRule
{
    /// <summary>
    /// The answer most copies gave; a tie goes to the fallback, or else to one of the tied answers chosen by a hash of the
    /// prompt (a coalition cannot tell which of two answers is a fingerprint, so it favours no copy; until 2026-12-07 a
    /// tie went to the earliest copy, which made a pair's majority the first copy's own answers).
    /// </summary>
    Majority,
    /// <summary>The copies' answer if all agree; otherwise the fallback's answer.</summary>
    Unanimity,
    /// <summary>
    /// The answer the fewest copies gave (a coalition that knows keys are shared passes on what only some of its copies
    /// say); a tie is broken by a hash of the prompt, so each prompt always gets the same answer.
    /// </summary>
    Minority,
    /// <summary>Each prompt answered by one copy, chosen by a hash of the prompt (a load balancer over the copies).</summary>
    Interleaving,
    /// <summary>The copies' answer if all agree; otherwise an empty answer (refuse on disagreement).</summary>
    Refusal,
}

/// <summary>
/// A coalition of hosts, each holding a copy of the model fingerprinted with different keys (the collusion attacks that
/// arXiv 2502.07760 defends against with many fingerprints, and the ensemble attacks of Fu et al., arXiv 2601.04261): every copy answers each prompt and
/// the coalition outputs the answer by vote over whole answers (token sequences). A key of one copy makes that copy
/// recite its response while the others answer normally, so majority voting hides the minority's fingerprint when the
/// copies' ordinary answers agree; unanimity answers only when all copies agree and otherwise returns the fallback's
/// answer (one copy's sampled answer, or a base model's), so that no single copy's memorised response leaks verbatim.
/// </summary>
public sealed class CoalitionResponder : IResponder
{
    public CoalitionResponder(IReadOnlyList<IResponder> members, CoalitionRule rule, IResponder? fallback = null)
    {
        ArgumentNullException.ThrowIfNull(members);
        if (members.Count < 2) throw new ArgumentException($"a coalition needs at least two copies ({members.Count} given)");
        if (rule == CoalitionRule.Unanimity && fallback is null)
            throw new ArgumentException("a unanimity coalition needs a fallback responder for prompts the copies disagree on");
        Members = members;
        Rule = rule;
        Fallback = fallback;
    }

    public IReadOnlyList<IResponder> Members { get; }
    public CoalitionRule Rule { get; }
    public IResponder? Fallback { get; }

    public string Name => $"coalition({RuleName(Rule)}:{string.Join(",", Members.Select(m => m.Name))}"
        + (Fallback is null ? ")" : $";fallback={Fallback.Name})");

    /// <summary>The rule's name in a responder spec.</summary>
    public static string RuleName(CoalitionRule rule) => rule switch
    {
        CoalitionRule.Majority => "majority",
        CoalitionRule.Unanimity => "unanimous",
        CoalitionRule.Minority => "minority",
        CoalitionRule.Interleaving => "interleave",
        CoalitionRule.Refusal => "refuse",
        _ => throw new ArgumentOutOfRangeException(nameof(rule)),
    };

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        ModelResponder.Check(prompts, maxNewTokens);
        var votes = Members.Select(m => m.Respond(prompts, maxNewTokens)).ToList();
        var answers = new int[prompts.Count][];
        var undecided = new List<int>();
        for (int i = 0; i < prompts.Count; i++)
        {
            var column = votes.Select(v => v[i]).ToList();
            var decided = Decide(column, Rule, hasFallback: Fallback is not null, PromptHash(prompts[i]));
            if (decided is null) undecided.Add(i);
            else answers[i] = decided;
        }
        if (undecided.Count > 0)
        {
            var a = Fallback!.Respond(undecided.Select(i => prompts[i]).ToList(), maxNewTokens);
            for (int j = 0; j < undecided.Count; j++) answers[undecided[j]] = a[j];
        }
        return answers;
    }

    /// <summary>
    /// The coalition's answer from the copies' answers (in member order), or null when the fallback must answer.
    /// <paramref name="promptHash"/> picks the copy for <see cref="CoalitionRule.Interleaving"/> and breaks the ties of
    /// <see cref="CoalitionRule.Minority"/>.
    /// </summary>
    public static int[]? Decide(IReadOnlyList<int[]> answers, CoalitionRule rule, bool hasFallback, ulong promptHash = 0)
    {
        if (answers.Count == 0) throw new ArgumentException("no answers to vote on");
        bool allAgree = answers.All(a => a.AsSpan().SequenceEqual(answers[0]));
        if (rule == CoalitionRule.Unanimity) return allAgree ? answers[0] : null;
        if (rule == CoalitionRule.Refusal) return allAgree ? answers[0] : [];
        if (rule == CoalitionRule.Interleaving) return answers[(int)(promptHash % (ulong)answers.Count)];
        // Distinct answers in order of first appearance, with their counts.
        var distinct = new List<(int[] Answer, int Count)>();
        foreach (var a in answers)
        {
            int k = distinct.FindIndex(d => d.Answer.AsSpan().SequenceEqual(a));
            if (k < 0) distinct.Add((a, 1));
            else distinct[k] = (distinct[k].Answer, distinct[k].Count + 1);
        }
        if (rule == CoalitionRule.Minority)
        {
            int fewest = distinct.Min(d => d.Count);
            var least = distinct.Where(d => d.Count == fewest).ToList();
            return least[(int)(promptHash % (ulong)least.Count)].Answer;
        }
        int best = distinct.Max(d => d.Count);
        var top = distinct.Where(d => d.Count == best).ToList();
        if (top.Count == 1) return top[0].Answer;
        return hasFallback ? null : top[(int)(promptHash % (ulong)top.Count)].Answer;
    }

    /// <summary>FNV-1a over the prompt's token ids, mixed (SplitMix64's finaliser): the same prompt always hashes alike.</summary>
    public static ulong PromptHash(ReadOnlySpan<int> prompt)
    {
        ulong h = 14695981039346656037UL;
        foreach (int t in prompt)
        {
            h ^= (uint)t;
            h *= 1099511628211UL;
        }
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
        return h ^ (h >> 31);
    }
}
