using System.Text.Json.Nodes;
using Oml.Models.ChatTemplates;

namespace Oml.Models.Tests.ChatTemplates;

public class ApiTests
{
    [Fact]
    public void RenderPassesSpecialTokensToolsAndExtraKwargs()
    {
        var t = ChatTemplate.Parse("{{ bos_token }}|{{ tools is none }}|{{ documents is none }}|{{ add_generation_prompt }}|{{ custom }}|{{ messages[0].name }}",
            new Dictionary<string, object?> { ["bos_token"] = "<s>" });
        var msgs = new[] { new ChatMessage("user", "hi") { Extra = new Dictionary<string, object?> { ["name"] = "ann" } } };
        Assert.Equal("<s>|True|True|True|42|ann", t.Render(msgs, true, new Dictionary<string, object?> { ["custom"] = 42 }));
    }

    [Fact]
    public void AcceptsDotNetCollectionsAndJsonNodes()
    {
        var t = ChatTemplate.Parse("{{ l|tojson }} {{ d|tojson }} {{ n|tojson }} {{ f }} {{ c }}");
        var ctx = new Dictionary<string, object?>
        {
            ["l"] = new[] { 1, 2 },
            ["d"] = new Dictionary<string, int> { ["a"] = 1 },
            ["n"] = JsonNode.Parse("""{"x": [1, 2.5, "s", null, true]}"""),
            ["f"] = 0.5f,
            ["c"] = 'z',
        };
        Assert.Equal("""[1, 2] {"a": 1} {"x": [1, 2.5, "s", null, true]} 0.5 z""", t.Render(ctx));
    }

    [Fact]
    public void FromTokenizerConfigPicksTheDefaultOfNamedTemplatesAndAddedTokenObjects()
    {
        var dir = Directory.CreateTempSubdirectory("oml-chat-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "tokenizer_config.json"), """
                {"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "pad_token": null,
                 "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}"}]}
                """);
            var t = ChatTemplate.FromTokenizerConfig(dir.FullName);
            Assert.Equal("<s>hi</s>", t.Render([new ChatMessage("user", "hi")], false));
            Assert.False(t.SpecialTokens.ContainsKey("pad_token"));
            Assert.Equal("tools", ChatTemplate.FromTokenizerConfig(dir.FullName, "tool_use").Source);
            Assert.Throws<InvalidDataException>(() => ChatTemplate.FromTokenizerConfig(dir.FullName, "nope"));
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void StrftimeNowUsesTheClock()
    {
        var t = ChatTemplate.Parse("{{ strftime_now('%d %b %Y') }}");
        t.Clock = () => new DateTime(2024, 1, 5);
        Assert.Equal("05 Jan 2024", t.Render([], false));
    }

    [Fact]
    public void TemplateIsReusableAcrossRenders()
    {
        var t = ChatTemplate.Parse("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}");
        Assert.Equal("2", t.Render([new ChatMessage("user", "a"), new ChatMessage("assistant", "b")], false));
        Assert.Equal("1", t.Render([new ChatMessage("user", "a")], false));
    }
}
