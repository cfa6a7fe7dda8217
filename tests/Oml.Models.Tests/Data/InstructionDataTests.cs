using Oml.Models.ChatTemplates;
using Oml.Models.Data;
using Oml.Models.Tokenizers;

namespace Oml.Models.Tests.Data;

public class InstructionDataTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "oml-instr-" + Guid.NewGuid().ToString("N"));

    public InstructionDataTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static string Text(ChatMessage m) => (string)m.Content!;

    [Fact]
    public void Alpaca_json_array_with_input_and_system()
    {
        var path = Write("a.json", """
            [
              {"instruction": "Define the word.", "input": "apple", "output": "A fruit."},
              {"instruction": "Say hi.", "input": "", "output": "Hi!", "system": "Be brief."}
            ]
            """);
        var convs = InstructionData.Load(path, out var format);
        Assert.Equal(InstructionFormat.Alpaca, format);
        Assert.Equal(2, convs.Count);
        Assert.Null(convs[0].System);
        Assert.Equal(["user", "assistant"], convs[0].Turns.Select(t => t.Role));
        Assert.Equal("Define the word.\n\napple", Text(convs[0].Turns[0]));
        Assert.Equal("A fruit.", convs[0].Response);
        Assert.Equal("Be brief.", convs[1].System);
        Assert.Equal("Say hi.", Text(convs[1].Turns[0]));
        Assert.Equal(["system", "user", "assistant"], convs[1].Messages.Select(m => m.Role));
    }

    [Fact]
    public void Alpaca_jsonl_without_input_field()
    {
        var path = Write("a.jsonl", "{\"instruction\": \"Q1\", \"output\": \"A1\"}\n\n{\"instruction\": \"Q2\", \"output\": \"A2\"}\n");
        var convs = InstructionData.Load(path);
        Assert.Equal(["Q1", "Q2"], convs.Select(c => Text(c.Turns[0])));
        Assert.Equal(["A1", "A2"], convs.Select(c => c.Response));
    }

    [Fact]
    public void ShareGpt_json_and_jsonl_with_all_role_names()
    {
        var json = Write("s.json", """
            [{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "H1"}, {"from": "gpt", "value": "G1"},
                                {"from": "user", "value": "H2"}, {"from": "assistant", "value": "G2"}]}]
            """);
        var convs = InstructionData.Load(json, out var format);
        Assert.Equal(InstructionFormat.ShareGpt, format);
        var c = Assert.Single(convs);
        Assert.Equal("S", c.System);
        Assert.Equal(["user", "assistant", "user", "assistant"], c.Turns.Select(t => t.Role));
        Assert.Equal(["H1", "G1", "H2", "G2"], c.Turns.Select(Text));

        var jsonl = Write("s.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"x\"}, {\"from\": \"gpt\", \"value\": \"y\"}]}\n");
        Assert.Equal("y", Assert.Single(InstructionData.Load(jsonl)).Response);
    }

    [Fact]
    public void Messages_form_with_text_parts()
    {
        var path = Write("m.jsonl",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": \"c\"}]}\n");
        var c = Assert.Single(InstructionData.Load(path, out var format));
        Assert.Equal(InstructionFormat.Messages, format);
        Assert.Equal("sys", c.System);
        Assert.Equal("ab", Text(c.Turns[0]));
        Assert.Equal("c", c.Response);
    }

    [Theory]
    [InlineData("bad.jsonl", "{\"instruction\": \"q\", \"output\": \"a\"}\n{not json}\n", "bad.jsonl: line 2: not valid JSON")]
    [InlineData("bad.json", "[{\"instruction\": \"q\"}]", "bad.json: record 1: missing \"output\"")]
    [InlineData("bad.json", "[{\"instruction\": \"q\", \"output\": 5}]", "record 1: \"output\" must be a string")]
    [InlineData("bad.json", "[{\"instruction\": \"q\", \"output\": \"a\"}, {\"messages\": []}]", "record 2: a Messages record in a Alpaca file")]
    [InlineData("bad.json", "[{\"prompt\": \"q\", \"completion\": \"a\"}]", "record 1: not a recognised record")]
    [InlineData("bad.json", "[1, 2]", "record 1: expected a JSON object")]
    [InlineData("bad.json", "   \n", "the file is empty")]
    [InlineData("bad.json", "[{\"instruction\": \"q\", \"output\": \"a\"}", "bad.json: not valid JSON")]
    [InlineData("bad.jsonl", "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"a\"}]}", "line 1: turn 1: expected a user turn, found assistant")]
    [InlineData("bad.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}]}", "line 1: the last turn must be the assistant's reply")]
    [InlineData("bad.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"system\", \"value\": \"s\"}]}", "turn 2: a system message may only come first")]
    [InlineData("bad.jsonl", "{\"messages\": [{\"role\": \"tool\", \"content\": \"a\"}]}", "turn 1: unsupported role \"tool\"")]
    [InlineData("bad.jsonl", "{\"messages\": [{\"role\": \"user\"}]}", "turn 1: missing \"content\"")]
    [InlineData("bad.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "only text content parts are supported")]
    [InlineData("bad.jsonl", "{\"messages\": {\"role\": \"user\"}}", "expected an array of turns")]
    [InlineData("bad.json", "[]", "no records")]
    public void Malformed_files_give_errors_naming_file_record_and_problem(string name, string content, string expected)
    {
        var path = Write(name, content);
        var e = Assert.Throws<InstructionDataException>(() => InstructionData.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void Missing_file_is_reported()
    {
        var e = Assert.Throws<FileNotFoundException>(() => InstructionData.Load(Path.Combine(_dir, "nope.json")));
        Assert.Contains("nope.json", e.Message);
    }

    [Fact]
    public void Raw_prompt_layout_single_and_multi_turn()
    {
        var single = new Conversation(null, [new ChatMessage("user", "Q"), new ChatMessage("assistant", "A")]);
        Assert.Equal("### Instruction:\nQ\n\n### Response:\n", InstructionData.RawPrompt(single));
        var multi = new Conversation("S", [new ChatMessage("user", "Q1"), new ChatMessage("assistant", "A1"),
            new ChatMessage("user", "Q2"), new ChatMessage("assistant", "A2")]);
        Assert.Equal("S\n\n### Instruction:\nQ1\n\n### Response:\nA1\n\n### Instruction:\nQ2\n\n### Response:\n", InstructionData.RawPrompt(multi));
    }

    private Tokenizer SmallTokenizer()
    {
        var (vocab, merges) = BpeTrainer.Train(["### Instruction:\nWhat is an apple?\n\n### Response:\nA fruit.", "hello world"], 300);
        var dir = Path.Combine(_dir, "tok");
        Directory.CreateDirectory(dir);
        BpeTrainer.Save(dir, vocab, merges);
        return Tokenizer.FromFolder(dir);
    }

    [Fact]
    public void Tokenize_raw_appends_eos_to_the_response()
    {
        var tok = SmallTokenizer();
        var c = new Conversation(null, [new ChatMessage("user", "What is an apple?"), new ChatMessage("assistant", "A fruit.")]);
        var ex = InstructionData.Tokenize(c, tok);
        Assert.Equal(tok.Encode("### Instruction:\nWhat is an apple?\n\n### Response:\n"), ex.Prompt);
        int eos = tok.TokenToId("<|eos|>")!.Value;
        Assert.Equal([.. tok.Encode("A fruit."), eos], ex.Response);
        Assert.Equal("A fruit.<|eos|>", tok.Decode(ex.Response));
    }

    [Fact]
    public void Tokenize_with_template_splits_prompt_and_reply()
    {
        var tok = SmallTokenizer();
        var template = ChatTemplate.Parse(
            "{% for m in messages %}[{{ m.role }}]{{ m.content }}<|eos|>{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}");
        var c = new Conversation("sys", [new ChatMessage("user", "hello"), new ChatMessage("assistant", "world")]);
        var ex = InstructionData.Tokenize(c, tok, template);
        Assert.Equal("[system]sys<|eos|>[user]hello<|eos|>[assistant]", tok.Decode(ex.Prompt));
        Assert.Equal("world<|eos|>", tok.Decode(ex.Response));
        Assert.Equal(tok.TokenToId("<|eos|>"), ex.Response[^1]);

        // A template that renders the last turn differently from a prefix cannot be split.
        var rewriting = ChatTemplate.Parse("{% if add_generation_prompt %}P:{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}");
        Assert.Throws<InvalidOperationException>(() => InstructionData.Tokenize(c, tok, rewriting));
    }
}
