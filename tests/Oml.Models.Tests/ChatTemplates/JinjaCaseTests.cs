using System.Text.Json;
using Oml.Models.ChatTemplates;

namespace Oml.Models.Tests.ChatTemplates;

/// <summary>
/// Language-feature cases whose expected text was rendered by Python's jinja2 set up like transformers
/// (scripts/gen-chat-template-cases.py writes jinja-cases.json), including the real Qwen3 template with tools,
/// tool calls, tool responses and &lt;think&gt; handling.
/// </summary>
public class JinjaCaseTests
{
    private static readonly string CasesPath = Path.Combine(Fixtures.RepoRoot, "tests", "Oml.Models.Tests", "ChatTemplates", "jinja-cases.json");

    public static TheoryData<string> Names()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(CasesPath));
        var data = new TheoryData<string>();
        foreach (var c in doc.RootElement.EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void RendersLikeJinja2(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(CasesPath));
        var c = doc.RootElement.EnumerateArray().Single(x => x.GetProperty("name").GetString() == name);
        var template = ChatTemplate.Parse(c.GetProperty("template").GetString()!);
        template.Clock = () => new DateTime(2024, 7, 26, 13, 5, 9);
        var ctx = c.GetProperty("context").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
        Assert.Equal(c.GetProperty("text").GetString(), template.Render(ctx));
    }
}
