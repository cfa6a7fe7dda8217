using Oml.Lab.Attacks;

namespace Oml.Lab.Experiments;

/// <summary>
/// <c>model:NAME</c> where an attack takes a model folder: another model source of the same config (the folder of that
/// source for the cell's seed, built in-run when needed). Allowed in the merge attack's <c>with=</c> (each of a
/// ';'-list) and <c>base=</c>, distillation's <c>student=</c>, and a responder's coalition members, <c>fallback=</c>,
/// filter and paraphrase <c>ref=</c>, and the blocker's <c>revealed=</c> (that source's fingerprints.json) and <c>fallback=</c>.
/// </summary>
public static class ModelReferences
{
    public const string Prefix = ResponderSpec.ModelReferencePrefix;

    /// <summary>The weight-attack parameters that take model folders.</summary>
    public static readonly string[] WeightKeys = ["with", "base", "student"];

    /// <summary>True (with the source's name) when <paramref name="path"/> is <c>model:NAME</c>.</summary>
    public static bool TryName(string path, out string name)
    {
        var p = path.Trim();
        name = p.StartsWith(Prefix, StringComparison.Ordinal) ? p[Prefix.Length..].Trim() : "";
        return name.Length > 0;
    }

    /// <summary>The model sources an attack refers to, in order of appearance, without repeats.</summary>
    public static List<string> Of(AttackEntry a)
    {
        var names = new List<string>();
        void Add(string? path)
        {
            if (path is not null && TryName(path, out var n) && !names.Contains(n)) names.Add(n);
        }
        if (a.Weight is not null)
        {
            var s = AttackSpec.Parse(a.Weight);
            foreach (var key in WeightKeys)
                foreach (var item in (s.Text(key) ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)) Add(item);
        }
        if (a.Responder is not null)
            foreach (var n in Of(ResponderSpec.Parse(a.Responder)))
                if (!names.Contains(n)) names.Add(n);
        return names;
    }

    /// <summary>The model sources a responder spec refers to.</summary>
    public static List<string> Of(ResponderSpec r)
    {
        var names = new List<string>();
        void Add(string? path)
        {
            if (path is not null && TryName(path, out var n) && !names.Contains(n)) names.Add(n);
        }
        if (r.Coalition is { } c)
        {
            foreach (var m in c.Members) Add(m);
            Add(c.Fallback);
        }
        Add(r.Filter?.ReferenceModel);
        Add(r.Filter?.Fallback);
        Add(r.Paraphrase?.ReferenceModel);
        Add(r.Block?.Revealed);
        Add(r.Block?.Fallback);
        return names;
    }
}
