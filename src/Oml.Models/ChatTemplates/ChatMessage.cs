namespace Oml.Models.ChatTemplates;

/// <summary>
/// One chat message as templates see it: <c>message.role</c>, <c>message.content</c> (a string, or any template value
/// such as a list of content parts), plus optional extra fields (<c>tool_calls</c>, <c>reasoning_content</c>,
/// <c>name</c>, ...) that templates read as <c>message.tool_calls</c> etc.
/// </summary>
public sealed record ChatMessage(string Role, object? Content)
{
    public IReadOnlyDictionary<string, object?>? Extra { get; init; }
}
