using Oml.Lab.Attacks;
using Oml.Models;

namespace Oml.Lab.Tests;

public class ResponderSpecTests
{
    [Fact]
    public void Good_specs_parse()
    {
        var g = ResponderSpec.Parse("greedy");
        Assert.Null(g.Decoding.Temperature);
        Assert.False(g.Decoding.Suppress);

        var s = ResponderSpec.Parse("sample:t=0.7,top_p=0.9,top_k=50,min_p=0.05,seed=3");
        Assert.Equal(new DecodingSpec(0.7, 50, 0.9, 0.05, 3), s.Decoding);
        Assert.Equal(3UL, s.Decoding.ToOptions().Seed);
        Assert.Equal(0UL, ResponderSpec.Parse("sample:t=1").Decoding.ToOptions().Seed); // sampling is always seeded

        var sup = ResponderSpec.Parse("suppress:k=2,m=3,threshold=0.5").Decoding;
        Assert.Equal((2, 3, 0.5), (sup.SuppressPositions!.Value, sup.SuppressTopM!.Value, sup.SuppressThreshold!.Value));
        Assert.Null(sup.Temperature);
        // positions= and top= are k= and m= by name: every answer position of a 3-token response, the top token at each.
        var named = ResponderSpec.Parse("suppress:positions=3,top=1").Decoding;
        Assert.Equal((3, 1), (named.SuppressPositions!.Value, named.SuppressTopM!.Value));
        var topThree = ResponderSpec.Parse("suppress:top=3").Decoding;
        Assert.Equal((1, 3), (topThree.SuppressPositions!.Value, topThree.SuppressTopM!.Value));
        var always = ResponderSpec.Parse("suppress").Decoding;
        Assert.Equal((1, 1, (double?)null), (always.SuppressPositions!.Value, always.SuppressTopM!.Value, always.SuppressThreshold));

        var w = ResponderSpec.Parse("chat + system:\"Be brief, \\\"kind\\\" + clear.\" + prefix:Hello + suffix:\"!\\n\"");
        Assert.True(w.Chat);
        Assert.Equal("Be brief, \"kind\" + clear.", w.SystemPrompt);
        Assert.Equal("Hello", w.Prefix); // bare text is trimmed
        Assert.Equal("!\n", w.Suffix);

        var f = ResponderSpec.Parse("filter:ppl=120.5,ref=/models/base,reply=\"Sorry, no.\"");
        Assert.Equal(new FilterSpec(120.5, null, "/models/base", "Sorry, no."), f.Filter);
        Assert.Equal(0.99, ResponderSpec.Parse("filter:q=0.99").Filter!.Quantile);
        Assert.False(ResponderSpec.Parse("filter:q=0.99,side=high").Filter!.Low);
        Assert.Equal(new FilterSpec(null, 0.05, null, null, Low: true), ResponderSpec.Parse("filter:q=0.05,side=LOW").Filter);
        Assert.Equal(new FilterSpec(null, 0.98, null, null, OnInstructions: true), ResponderSpec.Parse("filter:q=0.98,on=instructions").Filter);
        Assert.False(ResponderSpec.Parse("filter:q=0.98,on=text").Filter!.OnInstructions);

        var c = ResponderSpec.Parse("coalition:majority:a,b,c+sample:t=0.5");
        Assert.Equal(CoalitionRule.Majority, c.Coalition!.Rule);
        Assert.Equal(["a", "b", "c"], c.Coalition.Members);
        Assert.Equal(0.5, c.Decoding.Temperature);
        var u = ResponderSpec.Parse("coalition:unanimous:a,b:fallback=base");
        Assert.Equal((CoalitionRule.Unanimity, "base"), (u.Coalition!.Rule, u.Coalition.Fallback));
        Assert.Equal(CoalitionRule.Minority, ResponderSpec.Parse("coalition:minority:a,b,c").Coalition!.Rule);
        Assert.Equal(CoalitionRule.Interleaving, ResponderSpec.Parse("coalition:interleave:a,b").Coalition!.Rule);
        Assert.Equal(CoalitionRule.Refusal, ResponderSpec.Parse("coalition:refuse:a,b").Coalition!.Rule);
        Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse("coalition:refuse:a,b:fallback=base"));
    }

    [Theory]
    [InlineData("", "empty responder spec")]
    [InlineData("beam:4", "unknown part 'beam'")]
    [InlineData("sample:top_p=0.9", "sampling needs t=TEMPERATURE")]
    [InlineData("sample:t=0", "t must be positive")]
    [InlineData("sample:t=abc", "t must be a number")]
    [InlineData("sample:t=1,top_p=1.5", "top_p must be in (0, 1]")]
    [InlineData("sample:t=1,temp=2", "unknown option 'temp'")]
    [InlineData("sample:t=1,t=2", "t given twice")]
    [InlineData("sample:t=1,seed=-1", "seed must be a non-negative integer")]
    [InlineData("greedy+sample:t=1", "more than one decoding part")]
    [InlineData("greedy:fast", "greedy takes no options")]
    [InlineData("suppress:k=0", "k must be an integer ≥ 1")]
    [InlineData("suppress:k=2,positions=2", "k and positions are the same option: give one")]
    [InlineData("suppress:m=1,top=2", "m and top are the same option: give one")]
    [InlineData("suppress:top=0", "top must be an integer ≥ 1")]
    [InlineData("suppress:threshold=1", "threshold must be in [0, 1)")]
    [InlineData("suppress:top_p=0.9", "need t=TEMPERATURE")]
    [InlineData("system:\"unterminated", "unterminated quoted string")]
    [InlineData("system:", "empty text")]
    [InlineData("chat:\"x\"", "chat takes no options")]
    [InlineData("filter:ppl=10,q=0.9", "exactly one of ppl=THRESHOLD and q=QUANTILE")]
    [InlineData("filter:ppl=-1", "ppl must be positive")]
    [InlineData("filter:q=0.1,side=below", "side must be high (refuse above the threshold) or low")]
    [InlineData("filter:q=0.1,on=users", "on must be text (calibrate on ordinary text windows) or instructions")]
    [InlineData("filter:ppl=50,on=instructions", "on= calibrates a quantile: give q=, not ppl=")]
    [InlineData("filter", "missing options")]
    [InlineData("coalition:majority:a", "at least two model folders")]
    [InlineData("coalition:plurality:a,b", "unknown vote 'plurality'")]
    [InlineData("coalition:majority:a,b:base", "fallback=DIR")]
    [InlineData("greedy++chat", "empty part")]
    public void Bad_specs_are_refused_with_a_clear_message(string text, string message)
    {
        var e = Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse(text));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Built_responders_match_the_parts_and_missing_context_is_reported()
    {
        using var m = TinyModels.Random(9);
        int[][] prompts = [[1, 2, 3], [4, 5, 6]];
        using (var greedy = ResponderSpec.Parse("greedy").Build(new ResponderContext { Model = m }))
            Assert.Equal(new ModelResponder(m).Respond(prompts, 4), greedy.Respond(prompts, 4));
        using (var sampled = ResponderSpec.Parse("sample:t=0.8,seed=4").Build(new ResponderContext { Model = m }))
            Assert.Equal(new ModelResponder(m, new GenerationOptions { Temperature = 0.8, Seed = 4 }).Respond(prompts, 4), sampled.Respond(prompts, 4));
        using (var sup = ResponderSpec.Parse("suppress:k=1,m=2").Build(new ResponderContext { Model = m }))
        {
            Assert.StartsWith("suppress(k=1,m=2,always)", sup.Name);
            Assert.NotEqual(new ModelResponder(m).Respond(prompts, 1), sup.Respond(prompts, 1));
        }
        using (var filtered = ResponderSpec.Parse("filter:ppl=1.0001").Build(new ResponderContext { Model = m }))
            Assert.All(filtered.Respond(prompts, 4), a => Assert.Empty(a)); // every prompt is refused with no answer
        using (var low = ResponderSpec.Parse("filter:ppl=1.0001,side=low").Build(new ResponderContext { Model = m }))
            Assert.Equal(new ModelResponder(m).Respond(prompts, 4), low.Respond(prompts, 4)); // no prompt is that unsurprising
        Assert.Contains("need the tokenizer", Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse("system:x").Build(new ResponderContext { Model = m })).Message);
        Assert.Contains("calibration prompts", Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse("filter:q=0.9").Build(new ResponderContext { Model = m })).Message);
        // on=instructions takes the quantile of the host's instruction prompts, not of the text windows.
        int[][] text = [[7, 8, 9, 10], [11, 12, 13, 14]], instructions = [[1, 2, 3, 4], [5, 6, 1, 2]];
        using (var onText = ResponderSpec.Parse("filter:q=1").Build(new ResponderContext { Model = m, CalibrationPrompts = text, InstructionPrompts = instructions }))
        using (var onInstr = ResponderSpec.Parse("filter:q=1,on=instructions").Build(new ResponderContext { Model = m, CalibrationPrompts = text, InstructionPrompts = instructions }))
        {
            var t = ResponderParts.Of(onText.Inner).OfType<PerplexityFilterResponder>().Single().Threshold;
            var i = ResponderParts.Of(onInstr.Inner).OfType<PerplexityFilterResponder>().Single().Threshold;
            Assert.Equal(PromptPerplexity.Score(m, text).Max(), t, 9);
            Assert.Equal(PromptPerplexity.Score(m, instructions).Max(), i, 9);
        }
        Assert.Contains("needs the host's instruction prompts", Assert.Throws<ResponderSpecException>(() =>
            ResponderSpec.Parse("filter:q=0.9,on=instructions").Build(new ResponderContext { Model = m, CalibrationPrompts = text })).Message);
        Assert.Contains("no model loader", Assert.Throws<ResponderSpecException>(() => ResponderSpec.Parse("coalition:majority:a,b").Build(new ResponderContext { Model = m })).Message);

        // A coalition of three copies of the same model answers as the model does; the loaded copies are disposed.
        var loaded = new List<CausalLM>();
        using (var coalition = ResponderSpec.Parse("coalition:unanimous:x,y,z").Build(new ResponderContext
        {
            Model = m,
            LoadModel = _ => { var c = TinyModels.Random(9); loaded.Add(c); return c; },
        }))
            Assert.Equal(new ModelResponder(m).Respond(prompts, 4), coalition.Respond(prompts, 4));
        Assert.Equal(3, loaded.Count);
        Assert.All(loaded, c => Assert.Empty(c.Parameters));
    }
}
