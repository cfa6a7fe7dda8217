using System.Text.Json;
using Oml.Models.ChatTemplates;

namespace Oml.Models.Tests.ChatTemplates;

/// <summary>The real Llama-3 and Qwen3 chat templates must render exactly what transformers 5.17 rendered.</summary>
public class ReferenceTemplateTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in new[] { "llama3", "qwen3" })
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.ChatCases(name)));
            for (var i = 0; i < doc.RootElement.GetArrayLength(); i++) data.Add(name, i);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersReferenceText(string name, int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.ChatCases(name)));
        var c = doc.RootElement[index];
        var template = ChatTemplate.FromTokenizerConfig(Fixtures.Tokenizer(name));
        var messages = c.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()))
            .ToList();
        var text = template.Render(messages, c.GetProperty("add_generation_prompt").GetBoolean());
        Assert.Equal(c.GetProperty("text").GetString(), text);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersReferenceTextFromJsonContext(string name, int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.ChatCases(name)));
        var c = doc.RootElement[index];
        var template = ChatTemplate.FromTokenizerConfig(Path.Combine(Fixtures.Tokenizer(name), "tokenizer_config.json"));
        var ctx = new Dictionary<string, object?>(template.SpecialTokens)
        {
            ["messages"] = c.GetProperty("messages"),
            ["add_generation_prompt"] = c.GetProperty("add_generation_prompt"),
            ["tools"] = null,
        };
        Assert.Equal(c.GetProperty("text").GetString(), template.Render(ctx));
    }

    [Fact]
    public void ReadsSpecialTokens()
    {
        var llama3 = ChatTemplate.FromTokenizerConfig(Fixtures.Tokenizer("llama3"));
        Assert.Equal("<|begin_of_text|>", llama3.SpecialTokens["bos_token"]);
        Assert.Equal("<|end_of_text|>", llama3.SpecialTokens["eos_token"]);
        var qwen3 = ChatTemplate.FromTokenizerConfig(Fixtures.Tokenizer("qwen3"));
        Assert.False(qwen3.SpecialTokens.ContainsKey("bos_token"));
        Assert.Equal("<|im_end|>", qwen3.SpecialTokens["eos_token"]);
    }
}
