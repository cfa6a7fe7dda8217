using Oml.Lab.Attacks;
using Oml.Models;

namespace Oml.Lab.Experiments;

/// <summary>
/// The attack library's weight attacks by spec name:
/// <code>
/// prune(fraction=0.3[, global=1])
/// quantize(scheme=int8|int4|int4-sym[, group=64])
/// merge(with=DIR[, method=linear|slerp|task|ties][, weight=0.5][, base=DIR][, density=0.5][, lambda=1])
///   (task/ties take the task vectors from base=, default the experiment's base model; with= may list DIR;DIR)
/// noise(sigma=0.01[, seed=0])          relative Gaussian weight noise (the lab's own)
/// </code>
/// </summary>
internal static class LibraryAttacks
{
    public static void Register(AttackCatalog catalog)
    {
        catalog.AddWeight("prune", (s, _) =>
        {
            s.Expect("fraction", "global");
            return new PruneAttack(s.Number("fraction"), s.Integer("global", 0) != 0);
        });
        catalog.AddWeight("quantize", (s, _) =>
        {
            s.Expect("scheme", "group");
            var scheme = (s.Text("scheme") ?? "int8") switch
            {
                "int8" => QuantizationScheme.Int8Symmetric,
                "int4" => QuantizationScheme.Int4Asymmetric,
                "int4-sym" => QuantizationScheme.Int4Symmetric,
                var other => throw new FormatException($"quantize: unknown scheme '{other}' (int8, int4, int4-sym)"),
            };
            return new QuantizeAttack(scheme, s.Integer("group", 64));
        });
        catalog.AddWeight("merge", (s, ctx) =>
        {
            s.Expect("with", "method", "weight", "base", "density", "lambda");
            var method = (s.Text("method") ?? "linear") switch
            {
                "linear" => MergeMethod.Linear,
                "slerp" => MergeMethod.Slerp,
                "task" or "task-arithmetic" => MergeMethod.TaskArithmetic,
                "ties" => MergeMethod.Ties,
                var other => throw new FormatException($"merge: unknown method '{other}' (linear, slerp, task, ties)"),
            };
            var with = (s.Text("with") ?? throw new FormatException("merge: needs with=MODEL_DIR (the sibling to merge with)"))
                .Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            string? baseDir = method is MergeMethod.TaskArithmetic or MergeMethod.Ties ? s.Text("base") ?? ctx.BaseModelDir : null;
            return new LoadingMerge(method, with, baseDir, s.Number("weight", 0.5), s.Number("density", 0.5), s.Number("lambda", 1.0), ctx);
        });
    }

    /// <summary>A merge whose sibling and base models are loaded when it is applied, and disposed after.</summary>
    private sealed class LoadingMerge(MergeMethod method, string[] with, string? baseDir, double weight, double density, double lambda, AttackContext ctx) : IWeightAttack
    {
        public string Name => $"merge({method.ToString().ToLowerInvariant()}, {string.Join(";", with.Select(Path.GetFileName))}, w={weight.ToString(System.Globalization.CultureInfo.InvariantCulture)})";

        public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
        {
            var load = ctx.LoadModel ?? throw new InvalidOperationException("merge needs a model loader in its context");
            var loaded = new List<CausalLM>();
            try
            {
                foreach (var w in with) loaded.Add(load(w));
                CausalLM? b = baseDir is null ? null : load(baseDir);
                if (b is not null) loaded.Add(b);
                var siblings = loaded.Take(with.Length).ToList();
                return new MergeAttack(method, siblings, b, weight, density: density, lambda: lambda).Apply(model, progress);
            }
            finally
            {
                foreach (var m in loaded) m.Dispose();
            }
        }
    }
}
