namespace Oml.Models.ChatTemplates;

/// <summary>Base class of all chat-template errors; <see cref="Line"/> and <see cref="Column"/> are 1-based (0 when unknown).</summary>
public class ChatTemplateException : Exception
{
    public int Line { get; }
    public int Column { get; }

    public ChatTemplateException(string message, int line, int column, Exception? inner = null)
        : base(line > 0 ? $"{message} (line {line}, column {column})" : message, inner)
    {
        Line = line;
        Column = column;
    }
}

/// <summary>The template source could not be parsed, or uses a construct this renderer does not support.</summary>
public sealed class ChatTemplateSyntaxException(string message, int line, int column)
    : ChatTemplateException(message, line, column);

/// <summary>Rendering failed: a type error, an undefined value used where Jinja2 raises, an unsupported filter argument...</summary>
public class ChatTemplateRuntimeException(string message, int line, int column, Exception? inner = null)
    : ChatTemplateException(message, line, column, inner);

/// <summary>The template itself called <c>raise_exception(message)</c>; <see cref="TemplateMessage"/> is that message.</summary>
public sealed class ChatTemplateRaisedException(string templateMessage, int line, int column)
    : ChatTemplateRuntimeException("template raised an exception: " + templateMessage, line, column)
{
    public string TemplateMessage { get; } = templateMessage;
}
