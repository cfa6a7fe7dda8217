using Oml.Engine;
using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Tests;

/// <summary>Answers from a table (prompt's first token → answer), recording what it was asked.</summary>
internal sealed class FakeResponder(string name, Func<int[], int[]> answer) : IResponder
{
    public List<int[]> Asked { get; } = [];
    public string Name => name;

    public IReadOnlyList<int[]> Respond(IReadOnlyList<int[]> prompts, int maxNewTokens)
    {
        Asked.AddRange(prompts);
        return prompts.Select(p => answer(p).Take(maxNewTokens).ToArray()).ToList();
    }
}

public class ResponderTests
{
    private static readonly int[][] Prompts = [[1, 2, 3], [4, 5, 6], [7, 8], [9, 10, 11, 12], [13, 14, 15]];

    [Fact]
    public void Greedy_answers_equal_the_generator_and_sampling_repeats_under_its_seed()
    {
        using var m = TinyModels.Random(7);
        var greedy = new ModelResponder(m, batchSize: 2).Respond(Prompts, 6);
        for (int i = 0; i < Prompts.Length; i++)
            Assert.Equal(Generator.Generate(m, [Prompts[i]], new GenerationOptions { MaxNewTokens = 6 }).Sequences[0].OutputIds, greedy[i]);
        var sample = new GenerationOptions { Temperature = 1.0, TopP = 0.95, Seed = 42, EosTokenIds = [] };
        var x = new ModelResponder(m, sample).Respond(Prompts, 8);
        var y = new ModelResponder(m, sample).Respond(Prompts, 8);
        Assert.Equal(x, y);
        var z = new ModelResponder(m, sample with { Seed = 43 }).Respond(Prompts, 8);
        Assert.NotEqual(x, z);
        Assert.All(x, a => Assert.Equal(8, a.Length));
        Assert.Equal("sample(t=1,top_p=0.95,seed=42)", new ModelResponder(m, sample).Name);
    }

    [Fact]
    public void Suppression_never_emits_a_forbidden_token()
    {
        using var m = TinyModels.Random(8);
        var s = new FirstTokenSuppression(positions: 2, topM: 3);
        foreach (var decoding in new[] { new GenerationOptions { EosTokenIds = [] }, new GenerationOptions { Temperature = 1.0, Seed = 5, EosTokenIds = [] } })
        {
            var answers = s.Responder(m, decoding).Respond(Prompts, 4);
            for (int i = 0; i < Prompts.Length; i++)
                for (int pos = 0; pos < 2; pos++)
                {
                    int[] context = [.. Prompts[i], .. answers[i][..pos]];
                    Assert.DoesNotContain(answers[i][pos], TopTokens(m, context, 3));
                }
        }
        // Greedy: position 0 gets the fourth-ranked token, position 2 is unconstrained (the plain greedy choice).
        var g = s.Responder(m, new GenerationOptions { EosTokenIds = [] }).Respond([Prompts[0]], 3)[0];
        Assert.Equal(TopTokens(m, Prompts[0], 4)[3], g[0]);
        Assert.Equal(TopTokens(m, [.. Prompts[0], g[0], g[1]], 1)[0], g[2]);
        Assert.Equal(2 * (Prompts.Length * 2) + 2, s.Interventions);
    }

    [Fact]
    public void Suppression_with_a_threshold_acts_only_where_the_model_is_overconfident()
    {
        using var m = TinyModels.Pattern();
        var prompt = TinyModels.Ordinary(3, 8);
        var plain = new ModelResponder(m).Respond([prompt], 4)[0];
        Assert.Equal(TinyModels.Ordinary(11, 4), plain); // the pattern model continues the cycle
        var s = new FirstTokenSuppression(positions: 1, topM: 1, threshold: 0.5);
        var attacked = s.Responder(m).Respond([prompt], 4)[0];
        Assert.NotEqual(plain[0], attacked[0]);
        Assert.Equal(1, s.Interventions);
        // On the random model no token is that probable: nothing is suppressed.
        using var r = TinyModels.Random(8);
        var s2 = new FirstTokenSuppression(positions: 1, topM: 1, threshold: 0.5);
        Assert.Equal(new ModelResponder(r).Respond(Prompts, 3), s2.Responder(r).Respond(Prompts, 3));
        Assert.Equal(0, s2.Interventions);
    }

    [Fact]
    public void The_perplexity_filter_refuses_random_prompts_and_passes_ordinary_text()
    {
        using var m = TinyModels.Pattern();
        var calibration = Enumerable.Range(0, 16).Select(o => TinyModels.Ordinary(o, 10)).ToList();
        double threshold = PromptPerplexity.Calibrate(m, calibration, 0.99);
        var rng = new Random(1);
        var random = Enumerable.Range(0, 6).Select(_ => Enumerable.Range(0, 10).Select(_ => rng.Next(TinyModels.Vocab)).ToArray()).ToList();
        var ordinary = Enumerable.Range(0, 6).Select(o => TinyModels.Ordinary(o + 2, 9)).ToList(); // held-out lengths
        var scores = PromptPerplexity.Score(m, [.. ordinary, .. random]);
        Assert.All(scores.Take(6), s => Assert.True(s <= threshold * 1.5, $"ordinary {s} vs {threshold}"));
        Assert.All(scores.Skip(6), s => Assert.True(s > 10 * threshold, $"random {s} vs {threshold}"));

        var inner = new FakeResponder("inner", _ => [1, 1, 1]);
        var fallback = new FakeResponder("base", _ => [2, 2]);
        var filter = new PerplexityFilterResponder(inner, m, threshold * 1.5, fallback);
        var answers = filter.Respond([ordinary[0], random[0], ordinary[1], random[1]], 3);
        Assert.Equal([[1, 1, 1], [2, 2], [1, 1, 1], [2, 2]], answers);
        Assert.Equal(2, filter.Refused);
        Assert.Equal(2, inner.Asked.Count);
        var canned = new PerplexityFilterResponder(inner, m, threshold * 1.5, refusal: [60, 61, 62, 63]);
        Assert.Equal([[1, 1, 1], [60, 61, 62]], canned.Respond([ordinary[0], random[0]], 3));

        // Looking the other way (keys sampled from the model are the least perplexing prompts): the same threshold
        // refuses the ordinary prompts and passes the random ones.
        var low = new PerplexityFilterResponder(inner, m, threshold * 1.5, fallback, refuseBelow: true);
        Assert.Equal([[2, 2], [1, 1, 1], [2, 2], [1, 1, 1]], low.Respond([ordinary[0], random[0], ordinary[1], random[1]], 3));
        Assert.Equal(2, low.Refused);
        Assert.StartsWith("filter(ppl<", low.Name);
        Assert.StartsWith("filter(ppl>", filter.Name);
        Assert.Equal(1.0, PromptPerplexity.Score(m, [[5]])[0]);
        Assert.Equal(2.5, PromptPerplexity.Quantile([4, 1, 3, 2], 0.5), 12);
        Assert.Equal(3.97, PromptPerplexity.Quantile([4, 1, 3, 2], 0.99), 12);
    }

    [Fact]
    public void Coalitions_vote_by_majority_or_unanimity()
    {
        // Prompt [0]: all agree. [1]: copy 2 recites a fingerprint. [2]: three different answers.
        static int[] Answer(int copy, int p) => p switch { 0 => [9], 1 => copy == 2 ? [7, 7] : [9, 9], _ => [copy] };
        var copies = Enumerable.Range(1, 3).Select(c => (IResponder)new FakeResponder($"c{c}", p => Answer(c, p[0]))).ToList();
        int[][] prompts = [[0], [1], [2]];
        var majority = new CoalitionResponder(copies, CoalitionRule.Majority).Respond(prompts, 4);
        Assert.Equal([[9], [9, 9]], majority.Take(2));
        Assert.Contains(majority[2][0], new[] { 1, 2, 3 }); // a three-way tie: one of the tied answers
        // A two-copy tie is broken per prompt, not always towards the first copy (which made a pair's majority the
        // first copy's own answers).
        var pair = new CoalitionResponder(copies.Take(2).ToList(), CoalitionRule.Majority);
        var ties = pair.Respond(Enumerable.Range(0, 40).Select(i => new[] { 2, i }).ToArray(), 4);
        Assert.Equal(ties, pair.Respond(Enumerable.Range(0, 40).Select(i => new[] { 2, i }).ToArray(), 4));
        Assert.Contains(ties, a => a.SequenceEqual(new[] { 1 }));
        Assert.Contains(ties, a => a.SequenceEqual(new[] { 2 }));
        var fallback = new FakeResponder("base", _ => [5]);
        Assert.Equal([[9], [9, 9], [5]], new CoalitionResponder(copies, CoalitionRule.Majority, fallback).Respond(prompts, 4));
        Assert.Equal([[9], [5], [5]], new CoalitionResponder(copies, CoalitionRule.Unanimity, fallback).Respond(prompts, 4));
        Assert.Equal(3, fallback.Asked.Count); // one tie, then two disagreements
        Assert.Throws<ArgumentException>(() => new CoalitionResponder(copies, CoalitionRule.Unanimity));
        Assert.Throws<ArgumentException>(() => new CoalitionResponder([copies[0]], CoalitionRule.Majority));
    }

    [Fact]
    public void Coalitions_answer_by_minority_interleaving_or_refuse_on_disagreement()
    {
        // Prompt [0]: all agree. [1]: copies 1 and 2 recite a shared fingerprint, copy 3 answers normally.
        // [2]: only copy 3 recites. [3]: copy 1 alone, over two copies.
        static int[] Answer(int copy, int p) => p switch { 0 => [9], 1 => copy < 3 ? [7, 7] : [9, 9], 2 => copy == 3 ? [6] : [9, 9], _ => [copy] };
        var copies = Enumerable.Range(1, 3).Select(c => (IResponder)new FakeResponder($"c{c}", p => Answer(c, p[0]))).ToList();
        int[][] prompts = [[0], [1], [2]];
        // Minority passes on what fewer copies say: the shared key is hidden, the lone copy's key leaks.
        Assert.Equal([[9], [9, 9], [6]], new CoalitionResponder(copies, CoalitionRule.Minority).Respond(prompts, 4));
        // Refusal answers only where all agree.
        Assert.Equal([[9], [], []], new CoalitionResponder(copies, CoalitionRule.Refusal).Respond(prompts, 4));
        // Interleaving answers each prompt with one copy's answer, the same copy every time for the same prompt.
        var inter = new CoalitionResponder(copies, CoalitionRule.Interleaving);
        var many = Enumerable.Range(0, 60).Select(i => new[] { 1, i }).ToArray();
        var first = inter.Respond(many, 4);
        Assert.Equal(first, inter.Respond(many, 4));
        int fromCopy3 = first.Count(a => a.SequenceEqual(new[] { 9, 9 }));
        Assert.InRange(fromCopy3, 8, 32); // about a third of 60: the copy is picked per prompt, not always the first
        Assert.Equal(60 - fromCopy3, first.Count(a => a.SequenceEqual(new[] { 7, 7 })));
        // A two-copy tie under minority is broken per prompt, not always towards the first copy.
        var two = new CoalitionResponder(copies.Take(2).ToList(), CoalitionRule.Minority);
        var ties = two.Respond(Enumerable.Range(0, 40).Select(i => new[] { 3, i }).ToArray(), 4);
        Assert.Contains(ties, a => a.SequenceEqual(new[] { 1 }));
        Assert.Contains(ties, a => a.SequenceEqual(new[] { 2 }));
        Assert.Equal("coalition(refuse:c1,c2,c3)", new CoalitionResponder(copies, CoalitionRule.Refusal).Name);
    }

    [Fact]
    public void Wrappers_put_text_and_chat_templates_around_the_prompt()
    {
        var dir = Path.Combine(RepoRoot(), "artifacts", "tokenizers", "qwen3");
        var tok = Tokenizer.FromFolder(dir);
        var template = ChatTemplate.FromTokenizerConfig(Path.Combine(dir, "tokenizer_config.json"));
        var inner = new FakeResponder("inner", _ => [1]);
        var prompt = tok.Encode("What is the capital of France?");
        var text = PromptWrapperResponder.Text(inner, tok, "Answer briefly. ", " Thanks.");
        text.Respond([prompt], 1);
        Assert.Equal("Answer briefly. What is the capital of France? Thanks.", tok.Decode(inner.Asked[0]));
        Assert.Equal(prompt, inner.Asked[0][tok.Encode("Answer briefly. ").Length..][..prompt.Length]);
        var chat = PromptWrapperResponder.Chat(inner, tok, template, "Be brief.");
        chat.Respond([prompt], 1);
        var rendered = template.Render([new ChatMessage("system", "Be brief."), new ChatMessage("user", "What is the capital of France?")], addGenerationPrompt: true);
        Assert.Equal(tok.Encode(rendered), inner.Asked[1]);
        var plainSystem = PromptWrapperResponder.Chat(inner, tok, null, "Be brief.");
        plainSystem.Respond([prompt], 1);
        Assert.Equal("Be brief.\nWhat is the capital of France?", tok.Decode(inner.Asked[2]));
        Assert.Throws<ArgumentException>(() => PromptWrapperResponder.Text(inner, tok, null, ""));
    }

    private static int[] TopTokens(CausalLM m, int[] context, int k)
    {
        using var noGrad = Torch.NoGrad();
        using var scope = Torch.NewScope();
        var logits = m.Forward(Torch.FromArray<long>(context.Select(x => (long)x).ToArray(), [1, context.Length], m.Device));
        return logits.Select(1, context.Length - 1).Squeeze(0).To(DType.Float32).TopK(k, -1).Indices.ToArray<long>().Select(x => (int)x).ToArray();
    }

    internal static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root not found");
    }
}
