using Oml.Models.ChatTemplates;

namespace Oml.Models.Tests.ChatTemplates;

/// <summary>Unsupported constructs and failing templates must raise clear errors with positions, never render something else.</summary>
public class ErrorTests
{
    private static string Render(string template, Dictionary<string, object?>? ctx = null)
        => ChatTemplate.Parse(template).Render(ctx ?? []);

    [Fact]
    public void RaiseExceptionCarriesTheTemplateMessage()
    {
        var t = ChatTemplate.Parse("{% for m in messages %}\n{% if m.role not in ['user', 'assistant'] %}\n  {{ raise_exception('Only user and assistant roles are supported!') }}\n{% endif %}\n{% endfor %}");
        var e = Assert.Throws<ChatTemplateRaisedException>(() => t.Render([new ChatMessage("tool", "x")], false));
        Assert.Equal("Only user and assistant roles are supported!", e.TemplateMessage);
        Assert.Equal(3, e.Line);
        Assert.Contains("Only user and assistant roles are supported!", e.Message);
        Assert.Equal("", t.Render([new ChatMessage("user", "x")], false));
    }

    [Theory]
    [InlineData("{% include 'x' %}", "unsupported statement 'include'", 1, 4)]
    [InlineData("a\n  {% extends 'x' %}", "unsupported statement 'extends'", 2, 6)]
    [InlineData("{{ x | nosuchfilter }}", "unsupported filter 'nosuchfilter'", 1, 8)]
    [InlineData("{{ x is nosuchtest }}", "unsupported test 'nosuchtest'", 1, 9)]
    [InlineData("{% if x %}\nabc", "expected 'elif' or 'else' or 'endif'", 2, 4)]
    [InlineData("{% endfor %}", "unexpected 'endfor'", 1, 4)]
    [InlineData("{{ x ", "unterminated '{{'", 1, 1)]
    [InlineData("{{ 'abc }}", "unterminated string literal", 1, 4)]
    [InlineData("{{ x $ y }}", "unexpected character '$'", 1, 6)]
    [InlineData("{% for x in xs recursive %}{% endfor %}", "recursive for loops are not supported", 1, 16)]
    [InlineData("{{ f(*args) }}", "*args / **kwargs in calls are not supported", 1, 6)]
    [InlineData("{# never closed", "unterminated comment", 1, 1)]
    [InlineData("{{ 1 + }}", "unexpected '}}' in expression", 1, 8)]
    public void SyntaxErrorsNameTheConstructAndPosition(string template, string message, int line, int column)
    {
        var e = Assert.Throws<ChatTemplateSyntaxException>(() => ChatTemplate.Parse(template));
        Assert.Contains(message, e.Message);
        Assert.Equal(line, e.Line);
        Assert.Equal(column, e.Column);
    }

    [Theory]
    [InlineData("{{ missing.attr }}", "'missing' is undefined", 1, 11)]
    [InlineData("{{ missing + 1 }}", "'missing' is undefined", 1, 12)]
    [InlineData("\n{{ d.nope.x }}", "'dict object' has no attribute 'nope'", 2, 10)]
    [InlineData("{{ 'a' + 1 }}", "unsupported operand type(s) for +: 'str' and 'int'", 1, 8)]
    [InlineData("{{ 1 // 0 }}", "integer division or modulo by zero", 1, 6)]
    [InlineData("{{ missing() }}", "'missing' is undefined", 1, 11)]
    [InlineData("{{ 'x'.zfill(3) }}", "'zfill'", 1, 13)]
    [InlineData("{% set x = 1 %}{% set x.y = 2 %}", "cannot assign attribute on non-namespace object", 1, 23)]
    [InlineData("{{ 'a' < 1 }}", "'<' not supported between instances of 'str' and 'int'", 1, 4)]
    [InlineData("{{ missing|tojson }}", "Object of type Undefined is not JSON serializable", 1, 12)]
    [InlineData("{{ 'abc'.strip(1, 2) }}", "strip() takes at most 1 positional argument(s)", 1, 15)]
    [InlineData("{{ 'x'|trim(foo=1) }}", "unexpected keyword argument 'foo'", 1, 8)]
    [InlineData("{{ '%s' % 1 }}", "printf-style string formatting", 1, 9)]
    [InlineData("{% for a, b in [[1, 2, 3]] %}{% endfor %}", "too many values to unpack", 1, 8)]
    [InlineData("{% for x in 5 %}{% endfor %}", "'int' object is not iterable", 1, 13)]
    public void RuntimeErrorsNameTheProblemAndPosition(string template, string message, int line, int column)
    {
        var e = Assert.Throws<ChatTemplateRuntimeException>(() => Render(template, new() { ["d"] = new Dictionary<string, object?>() }));
        Assert.Contains(message, e.Message);
        Assert.Equal(line, e.Line);
        Assert.Equal(column, e.Column);
    }

    [Fact]
    public void UnsupportedContextValuesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => Render("{{ x }}", new() { ["x"] = new object() }));
    }
}
