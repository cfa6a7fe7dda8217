namespace Oml.Models.ChatTemplates;

/// <summary>Call arguments with Python-style binding: each parameter is read by position or keyword, and
/// <see cref="Done"/> rejects anything left over so that no argument is silently ignored.</summary>
internal sealed class Args(string callee, List<object?> positional, List<(string Name, object? Value)> keywords)
{
    private int _maxPos;
    private readonly HashSet<string> _usedNames = [];

    public string Callee { get; } = callee;
    public List<object?> Positional { get; } = positional;
    public List<(string Name, object? Value)> Keywords { get; } = keywords;

    public bool Has(int index, string name) => index < Positional.Count || Keywords.Any(k => k.Name == name);

    public object? Get(int index, string name, object? dflt = null)
    {
        _maxPos = Math.Max(_maxPos, index + 1);
        _usedNames.Add(name);
        if (index < Positional.Count)
        {
            if (Keywords.Any(k => k.Name == name)) throw new TemplateError($"{Callee}() got multiple values for argument '{name}'");
            return Positional[index];
        }
        foreach (var (k, v) in Keywords) if (k == name) return v;
        return dflt;
    }

    public object? Required(int index, string name)
    {
        if (!Has(index, name)) throw new TemplateError($"{Callee}() missing required argument '{name}'");
        return Get(index, name);
    }

    /// <summary>Positional arguments from <paramref name="from"/> on (for *args parameters).</summary>
    public List<object?> Rest(int from)
    {
        _maxPos = int.MaxValue;
        return from < Positional.Count ? Positional.GetRange(from, Positional.Count - from) : [];
    }

    public void Done()
    {
        if (Positional.Count > _maxPos)
            throw new TemplateError($"{Callee}() takes at most {_maxPos} positional argument(s) ({Positional.Count} given)");
        foreach (var (k, _) in Keywords)
            if (!_usedNames.Contains(k)) throw new TemplateError($"{Callee}() got an unexpected keyword argument '{k}'");
    }
}
