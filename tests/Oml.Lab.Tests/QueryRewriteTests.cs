using Oml.Fingerprinting;
using Oml.Lab.Attacks;
using Oml.Lab.Experiments;
using Oml.Models;
using Oml.Models.Tokenizers;

namespace Oml.Lab.Tests;

/// <summary>The host's query rewrites (rewrite:, paraphrase:) and the revealed-key blocker as responder spec parts.</summary>
public class QueryRewriteTests
{
    private static Tokenizer Tok() => Tokenizer.FromFile(Path.Combine(Fixtures.RepoRoot(), "scripts", "fixtures", "tiny-tokenizer.json"));

    [Fact]
    public void New_parts_parse_and_bad_ones_are_refused()
    {
        var r = ResponderSpec.Parse("rewrite:drop=0.2,case=0.5,seed=3+suppress:k=1,m=1");
        Assert.Equal(new RewriteSettings(0.2, 0, 0.5, 0, 3), r.Rewrite);
        Assert.True(r.Decoding.Suppress);
        var p = ResponderSpec.Parse("paraphrase");
        Assert.Equal(new ParaphraseSpec(QueryRewrite.DefaultParaphrasePrompt, 64, null, null, null), p.Paraphrase);
        var p2 = ResponderSpec.Parse("paraphrase:prompt=\"Say it again: {text}\\n\",max=20,ref=/m/base,t=0.7,seed=2");
        Assert.Equal(new ParaphraseSpec("Say it again: {text}\n", 20, "/m/base", 0.7, 2), p2.Paraphrase);
        var b = ResponderSpec.Parse("block:revealed=\"/claims/keys.txt\",ngram=4,containment=0.6,reply=\"No.\"");
        Assert.Equal(new BlockSpec("/claims/keys.txt", 4, 0.6, null, "No."), b.Block);
        Assert.Equal(new BlockSpec("model:other", 3, 0.5, "model:none", null), ResponderSpec.Parse("block:revealed=model:other,fallback=model:none").Block);
        Assert.Equal(["other", "none"], ModelReferences.Of(ResponderSpec.Parse("block:revealed=model:other,fallback=model:none")));
        Assert.Equal(["base"], ModelReferences.Of(ResponderSpec.Parse("paraphrase:ref=model:base")));
        Assert.Equal(new FilterSpec(null, 0.99, null, null, Fallback: "model:base"), ResponderSpec.Parse("filter:q=0.99,fallback=model:base").Filter);
        Assert.True(ResponderSpec.Parse("filter:q=0.99,then=paraphrase").Filter!.ParaphraseFlagged);
        Assert.False(ResponderSpec.Parse("filter:q=0.99,then=refuse").Filter!.ParaphraseFlagged);
        Assert.Equal(["ref", "base"], ModelReferences.Of(ResponderSpec.Parse("filter:q=0.99,ref=model:ref,fallback=model:base")));
        Assert.False(AttackCatalog.IsPlainGreedy("rewrite:drop=0.1"));
        Assert.False(AttackCatalog.IsPlainGreedy("paraphrase"));
        Assert.False(AttackCatalog.IsPlainGreedy("block:revealed=x"));

        foreach (var (text, message) in new[]
        {
            ("rewrite:drop=1.5", "drop rate must be in [0, 1]"),
            ("rewrite:seed=1", "at least one positive rate"),
            ("rewrite:drop=0.1+paraphrase", "more than one query rewrite"),
            ("paraphrase:prompt=\"no slot\"", "must hold {text}"),
            ("paraphrase:max=0", "max must be an integer ≥ 1"),
            ("block:ngram=3", "needs revealed=FILE"),
            ("block:revealed=x,containment=0", "containment must be in (0, 1]"),
            ("block:revealed=x,fallback=a,reply=b", "not both"),
            ("block:revealed=x+block:revealed=y", "more than one block part"),
            ("filter:q=0.9,then=answer", "then must be refuse"),
            ("filter:q=0.9,fallback=a,then=paraphrase", "one of reply="),
            ("filter:q=0.9,fallback=a,reply=b", "one of reply="),
        })
            Assert.Contains(message, Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse(text)).Message);
    }

    [Fact]
    public void Rewrite_perturbs_words_deterministically_and_keeps_bos()
    {
        var tok = Tok();
        var prompt = tok.Encode("The quick brown fox, it jumps over the lazy dog today.");
        var s = new RewriteSettings(Drop: 0.3, Swap: 0.2, Case: 0.5, Punctuation: 1, Seed: 1);
        var a = QueryRewrite.Perturb(tok, prompt, s);
        Assert.Equal(a, QueryRewrite.Perturb(tok, prompt, s));                       // the same prompt, the same rewrite
        Assert.NotEqual(prompt, a);
        var text = tok.Decode(a);
        Assert.DoesNotContain(",", text);                                              // punct = 1 strips every mark
        Assert.DoesNotContain(".", text);
        Assert.True(text.Split(' ').Length < 11, text);                                // some words dropped (11 before)
        Assert.NotEqual(a, QueryRewrite.Perturb(tok, prompt, s with { Seed = 2 }));
        // Only the case of first letters changes with case = 1: the words, lower-cased, are the same.
        var cased = tok.Decode(QueryRewrite.Perturb(tok, prompt, new RewriteSettings(Case: 1)));
        Assert.Equal(tok.Decode(prompt).ToLowerInvariant(), cased.ToLowerInvariant());
        Assert.StartsWith("the Quick Brown Fox,", cased);               // the first letter of every word flipped
        // Everything dropped still leaves one word.
        Assert.Single(tok.Decode(QueryRewrite.Perturb(tok, prompt, new RewriteSettings(Drop: 1))).Split(' '));

        // Through a spec: the inner model sees the rewritten prompt.
        using var m = ModelFolder.Load(Path.Combine(Fixtures.RepoRoot(), "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny"));
        using var host = ResponderSpec.Parse("rewrite:drop=0.3,swap=0.2,case=0.5,punct=1,seed=1").Build(new ResponderContext { Model = m, Tokenizer = tok });
        Assert.Equal(new ModelResponder(m).Respond([a], 3), host.Respond([prompt], 3));
        Assert.StartsWith("rewrite(drop=0.3,", host.Name);
        Assert.Equal(1, ((PromptRewriteResponder)host.Inner).Rewritten);
    }

    [Fact]
    public void Paraphrase_sends_the_models_restatement_to_the_served_model()
    {
        var tok = Tok();
        using var m = ModelFolder.Load(Path.Combine(Fixtures.RepoRoot(), "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny"));
        var prompt = tok.Encode("Name a colour of the sky.");
        // What the spec does, step by step: the request, the model's answer, its first line as the new prompt.
        var request = tok.Encode("Again: Name a colour of the sky.\n=");
        var said = new ModelResponder(m).Respond([request], 12)[0];
        var line = tok.Decode(said, skipSpecialTokens: true).Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0);
        var expected = line is null ? prompt : tok.Encode(line);

        var inner = new FakeResponder("inner", _ => [7]);
        var viaLibrary = QueryRewrite.Paraphrase(new ModelResponder(m), tok, [prompt], "Again: {text}\n=", 12);
        Assert.Equal(expected, viaLibrary[0]);
        using var host = ResponderSpec.Parse("paraphrase:prompt=\"Again: {text}\\n=\",max=12").Build(new ResponderContext { Model = m, Tokenizer = tok });
        Assert.StartsWith("paraphrase(by=self,max=12)>greedy", host.Name);
        Assert.Equal(new ModelResponder(m).Respond([expected], 3), host.Respond([prompt], 3));
        // An empty restatement keeps the prompt.
        Assert.Equal(prompt, QueryRewrite.Paraphrase(new FakeResponder("mute", _ => []), tok, [prompt], "{text}", 4)[0]);
        Assert.Throws<ArgumentException>(() => QueryRewrite.Paraphrase(inner, tok, [prompt], "no slot", 4));
    }

    [Fact]
    public void A_filter_answers_what_it_flags_from_a_fallback_model_or_through_a_paraphrase()
    {
        var tok = Tok();
        string models = Path.Combine(Fixtures.RepoRoot(), "tests", "Oml.Models.Tests", "fixtures", "models");
        using var m = ModelFolder.Load(Path.Combine(models, "llama-tiny"));
        using var other = ModelFolder.Load(Path.Combine(models, "qwen2-tiny"));
        var prompt = tok.Encode("The quick brown fox jumps over the lazy dog.");
        var context = new ResponderContext { Model = m, Tokenizer = tok, LoadModel = d => ModelFolder.Load(d) };
        // Every prompt is more perplexing than 1.0001 under the tiny model: all flagged; none is above 1e12.
        using (var host = ResponderSpec.Parse($"filter:ppl=1.0001,fallback={Path.Combine(models, "qwen2-tiny")}").Build(context))
        {
            Assert.Equal(new ModelResponder(other).Respond([prompt], 4), host.Respond([prompt], 4));
            Assert.Equal(1, Assert.IsType<PerplexityFilterResponder>(host.Inner).Refused);
        }
        using (var host = ResponderSpec.Parse("filter:ppl=1.0001,then=paraphrase").Build(context))
        {
            var reworded = QueryRewrite.Paraphrase(new ModelResponder(m), tok, [prompt], QueryRewrite.DefaultParaphrasePrompt, 64)[0];
            Assert.Equal(new ModelResponder(m).Respond([reworded], 4), host.Respond([prompt], 4));
            Assert.Contains("paraphrase(flagged)", Assert.IsType<PerplexityFilterResponder>(host.Inner).Fallback!.Name);
        }
        using (var host = ResponderSpec.Parse("filter:ppl=1e12,then=paraphrase").Build(context))
            Assert.Equal(new ModelResponder(m).Respond([prompt], 4), host.Respond([prompt], 4));
    }

    [Fact]
    public void Block_part_reads_key_lists_sets_and_model_folders()
    {
        var tok = Tok();
        using var m = ModelFolder.Load(Path.Combine(Fixtures.RepoRoot(), "tests", "Oml.Models.Tests", "fixtures", "models", "llama-tiny"));
        var dir = Directory.CreateTempSubdirectory("oml-block-").FullName;
        try
        {
            var revealed = "alpha beta gamma delta epsilon zeta eta theta";
            var other = "one two three four five six seven eight";
            File.WriteAllLines(Path.Combine(dir, "keys.txt"), [revealed, ""]);
            int[] k1 = tok.Encode(revealed), k2 = tok.Encode(other);
            using (var host = ResponderSpec.Parse($"block:revealed={Path.Combine(dir, "keys.txt")},reply=\"no\"").Build(new ResponderContext { Model = m, Tokenizer = tok }))
            {
                var answers = host.Respond([k1, [.. tok.Encode("Please: "), .. k1], k2], 4);
                Assert.Equal(tok.Encode("no"), answers[0]);                  // the revealed key
                Assert.Equal(tok.Encode("no"), answers[1]);                  // inside a wrapper
                Assert.Equal(new ModelResponder(m).Respond([k2], 4)[0], answers[2]);
                var blocker = Assert.IsType<RevealedKeyBlocker>(host.Inner);
                Assert.Equal((1, 2), (blocker.RevealedCount, blocker.Blocked));
            }
            // A plaintext set (every key counts as published), found through a model folder's fingerprints.json and ResolvePath.
            var fp = new Fingerprint(0, revealed, k1, [new FingerprintResponse("x", [5])], new StrategyInfo("custom"), Fingerprint.NewRandomSalt());
            var set = FingerprintSet.Create(DateTimeOffset.UtcNow, "test", new TokenizerIdentity("tiny", "test"), fp.Strategy, [fp]);
            Directory.CreateDirectory(Path.Combine(dir, "copy"));
            FingerprintSetFile.WritePlaintext(Path.Combine(dir, "copy", LabEnvironment.SetFile), set);
            using (var host = ResponderSpec.Parse("block:revealed=model:copy").Build(new ResponderContext
            {
                Model = m, Tokenizer = tok, ResolvePath = p => p == "model:copy" ? Path.Combine(dir, "copy") : p,
            }))
            {
                Assert.Equal(new int[][] { [], new ModelResponder(m).Respond([k2], 2)[0] }, host.Respond([k1, k2], 2));
                Assert.Equal(1, ((RevealedKeyBlocker)host.Inner).RevealedCount);   // the set's one key, read as a set (not as lines of text)
            }
            Assert.Contains("no file at", Assert.Throws<ResponderSpecException>(() =>
                ResponderSpec.Parse($"block:revealed={Path.Combine(dir, "missing.txt")}").Build(new ResponderContext { Model = m, Tokenizer = tok })).Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
