using Oml.Models.Data;

namespace Oml.Models.Tests.Data;

public class TextDataTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-text-" + Guid.NewGuid().ToString("N"));

    public TextDataTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public void Plain_text_splits_at_blank_lines()
    {
        var path = Write("c.txt", "first doc\nstill first  \n\n\nsecond\r\n \t \r\nthird\n");
        Assert.Equal(["first doc\nstill first", "second", "third"], TextData.Load(path));
    }

    [Fact]
    public void Jsonl_and_json_with_text_fields()
    {
        Assert.Equal(["a\n\nb", "c"], TextData.Load(Write("c.jsonl", "{\"text\": \"a\\n\\nb\"}\n\n{\"text\": \"c\", \"id\": 2}\n")));
        Assert.Equal(["x", "y"], TextData.Load(Write("c.json", "[\"x\", {\"text\": \"y\"}]")));
    }

    [Theory]
    [InlineData("bad.jsonl", "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", "bad.jsonl: line 2: the object has no \"text\" field")]
    [InlineData("bad.jsonl", "{\"text\": 3}\n", "line 1: \"text\" must be a string")]
    [InlineData("bad.jsonl", "{\"text\": \"a\"}\nnot json\n", "line 2: not valid JSON")]
    [InlineData("bad.json", "{\"text\": \"a\"}", "expected a JSON array")]
    [InlineData("bad.json", "[\"a\", 5]", "record 2: expected a JSON object")]
    public void Bad_records_are_reported_with_their_place(string name, string content, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => TextData.Load(Write(name, content)));
        Assert.Contains(expected, e.Message);
    }
}
