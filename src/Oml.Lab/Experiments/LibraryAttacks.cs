using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.Data;

namespace Oml.Lab.Experiments;

/// <summary>
/// The attack library's weight attacks by spec name:
/// <code>
/// prune(fraction=0.3[, global=1])
/// quantize(scheme=int8|int4|int4-sym[, group=64])
/// merge(with=DIR[, method=linear|slerp|task|ties][, weight=0.5][, base=DIR][, density=0.5][, lambda=1][, widen=0])
///   (task/ties take the task vectors from base=, default the experiment's base model; with= may list DIR;DIR;
///   widen=1 first gives a sibling or base with narrower MLPs than the model zero-valued extra units, the same function,
///   so that a parameter-expanded model can be merged with its base; without it, shapes must match)
/// noise(sigma=0.01[, seed=0])          relative Gaussian weight noise (the lab's own)
/// sft(data=FILE[, samples=N][, epochs=1][, lr=1e-4][, lora=R][, batch=8][, max_length=256][, chat=1])
///   fine-tuning on instruction data (Alpaca/ShareGPT/messages JSON or JSONL; chat=1 wraps it in the chat template)
/// distill(prompts=FILE, student=DIR | fresh_hidden=H[, fresh_layers=4][, fresh_heads=4][, samples=N][, epochs=1][, lr=1e-4]
///         [, max_new_tokens=64][, t=TEMPERATURE][, lora=R][, batch=8])
/// </code>
/// </summary>
internal static class LibraryAttacks
{
    public static void Register(AttackCatalog catalog)
    {
        RegisterTraining(catalog);
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
            s.Expect("with", "method", "weight", "base", "density", "lambda", "widen");
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
            return new LoadingMerge(method, with, baseDir, s.Number("weight", 0.5), s.Number("density", 0.5), s.Number("lambda", 1.0), s.Integer("widen", 0) != 0, ctx);
        });
    }

    private static readonly string[] TrainingKeys = ["samples", "epochs", "lr", "lora", "batch", "max_length", "seed"];

    private static AttackTraining Training(AttackSpec s, AttackContext ctx) => new()
    {
        Samples = s.Text("samples") is null ? null : s.Integer("samples"),
        Epochs = s.Number("epochs", 1),
        LearningRate = s.Number("lr", 1e-4),
        LoraRank = s.Text("lora") is null ? null : s.Integer("lora"),
        Batch = s.Integer("batch", 8),
        MaxLength = s.Integer("max_length", 256),
        Seed = (ulong)s.Integer("seed", (int)(ctx.Seed & 0x7fffffff)),
    };

    private static void RegisterTraining(AttackCatalog catalog)
    {
        catalog.AddWeight("sft", (s, ctx) =>
        {
            s.Expect([.. TrainingKeys, "data", "chat"]);
            var file = ctx.ResolvePath(s.Text("data") ?? throw new FormatException("sft: needs data=FILE (instruction data)"));
            var training = Training(s, ctx);
            var conversations = InstructionData.Load(file);
            var template = s.Integer("chat", 0) != 0 ? ctx.ChatTemplate ?? throw new FormatException("sft: chat=1 but the tokenizer has no chat template") : null;
            var chosen = training.Samples is { } n ? conversations.Take(n) : conversations;
            return new SftAttack(SftAttack.ExamplesFrom(chosen, ctx.Tokenizer, template), training);
        });
        catalog.AddWeight("distill", (s, ctx) =>
        {
            s.Expect([.. TrainingKeys, "prompts", "student", "fresh_hidden", "fresh_layers", "fresh_heads", "max_new_tokens", "t"]);
            var file = ctx.ResolvePath(s.Text("prompts") ?? throw new FormatException("distill: needs prompts=FILE (instruction data whose prompts the teacher answers)"));
            if ((s.Text("student") is null) == (s.Text("fresh_hidden") is null)) throw new FormatException("distill: give exactly one of student=DIR and fresh_hidden=H");
            var training = Training(s, ctx);
            var prompts = InstructionData.Load(file).Select(c => InstructionData.Tokenize(c, ctx.Tokenizer).Prompt).ToList();
            double? t = s.Text("t") is null ? null : s.Number("t");
            return new LoadingDistillation(prompts, s.Text("student"), s.Text("fresh_hidden") is null ? null : s.Integer("fresh_hidden"),
                s.Integer("fresh_layers", 4), s.Integer("fresh_heads", 4), s.Integer("max_new_tokens", 64),
                new GenerationOptions { Temperature = t, Seed = t is null ? null : training.Seed }, training, ctx);
        });
    }

    /// <summary>A distillation whose student (a model folder, or a fresh Llama of the teacher's vocabulary) is made when it is applied.</summary>
    private sealed class LoadingDistillation(List<int[]> prompts, string? studentDir, int? freshHidden, int freshLayers, int freshHeads, int maxNew,
        GenerationOptions decoding, AttackTraining training, AttackContext ctx) : IWeightAttack
    {
        public string Name => $"distill({(studentDir is null ? $"fresh{freshHidden}" : Path.GetFileName(studentDir))})";

        public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
        {
            CausalLM? student = null;
            try
            {
                ModelConfig? fresh = null;
                if (studentDir is not null) student = (ctx.LoadModel ?? throw new InvalidOperationException("distill needs a model loader"))(studentDir);
                else
                {
                    int h = freshHidden!.Value;
                    if (h < 8 || freshHeads < 1 || h % freshHeads != 0 || (h / freshHeads) % 2 != 0) throw new FormatException($"distill: fresh_hidden {h} must be a multiple of fresh_heads {freshHeads} with an even head size");
                    var c = model.Config;
                    fresh = new LlamaShape(c.VocabSize, h, freshLayers, freshHeads, freshHeads, (h * 8 / 3 + 63) / 64 * 64, Math.Min(c.MaxPositionEmbeddings, 4096))
                        .ToConfig(c.BosTokenId, c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null, c.PadTokenId);
                }
                return new DistillationAttack(prompts, student, fresh, maxNew, decoding, training).Apply(model, progress);
            }
            finally
            {
                student?.Dispose();
            }
        }
    }

    /// <summary>A merge whose sibling and base models are loaded when it is applied, and disposed after.</summary>
    private sealed class LoadingMerge(MergeMethod method, string[] with, string? baseDir, double weight, double density, double lambda, bool widen, AttackContext ctx) : IWeightAttack
    {
        public string Name => $"merge({method.ToString().ToLowerInvariant()}, {string.Join(";", with.Select(Path.GetFileName))}, w={weight.ToString(System.Globalization.CultureInfo.InvariantCulture)}{(widen ? ", widened" : "")})";

        public CausalLM Apply(CausalLM model, IProgress<string>? progress = null)
        {
            var load = ctx.LoadModel ?? throw new InvalidOperationException("merge needs a model loader in its context");
            var loaded = new List<CausalLM>();
            try
            {
                foreach (var w in with) loaded.Add(Widened(load(w), model));
                CausalLM? b = baseDir is null ? null : Widened(load(baseDir), model);
                if (b is not null) loaded.Add(b);
                var siblings = loaded.Take(with.Length).ToList();
                return new MergeAttack(method, siblings, b, weight, density: density, lambda: lambda).Apply(model, progress);
            }
            finally
            {
                foreach (var m in loaded) m.Dispose();
            }
        }

        /// <summary>
        /// With widen=1, <paramref name="other"/> given the model's MLP width by zero-valued new units (rows of gate and
        /// up, columns of down: the same function as <paramref name="other"/>); otherwise, or when the widths already
        /// match or <paramref name="other"/> is the wider, <paramref name="other"/> itself (the merge checks shapes).
        /// </summary>
        private CausalLM Widened(CausalLM other, CausalLM model)
        {
            int extra = model.Config.IntermediateSize - other.Config.IntermediateSize;
            if (!widen || extra <= 0) return other;
            using (other)
            {
                var (wide, masks) = Oml.Fingerprinting.Embedding.Expansion.WidenMlp(other, extra, std: 0);
                foreach (var m in masks.Values) m.Dispose();
                return wide;
            }
        }
    }
}
