using Oml.Engine;
using Oml.Models;

namespace Oml.Lab.Tests;

/// <summary>Tiny random Llama models, and one trained on a fixed cycle of tokens (so it is confident and has a notion of ordinary text).</summary>
internal static class TinyModels
{
    public const int Vocab = 64;

    public static readonly LlamaShape Shape = new(VocabSize: Vocab, Hidden: 32, Layers: 1, Heads: 2, KvHeads: 1, Intermediate: 64, MaxPositions: 128);

    public static CausalLM Random(ulong seed, DType dtype = DType.Float32) => Pretraining.CreateRandom(Shape.ToConfig(eosId: 63), seed, dtype: dtype);

    /// <summary>The cycle the pattern model learns: 16 distinct tokens in a fixed order.</summary>
    public static readonly int[] Cycle = [5, 17, 2, 40, 33, 9, 21, 58, 12, 44, 3, 27, 50, 8, 36, 19];

    /// <summary>A window of the cycle starting at <paramref name="offset"/>.</summary>
    public static int[] Ordinary(int offset, int length) => Enumerable.Range(0, length).Select(i => Cycle[(offset + i) % Cycle.Length]).ToArray();

    private static readonly Lazy<string> PatternDir = new(() =>
    {
        using var model = Random(11);
        var tokens = Enumerable.Range(0, 4000).Select(i => Cycle[i % Cycle.Length]).ToArray();
        Pretraining.Train(model, tokens, steps: 40, batch: 8, context: 16, lr: 2e-2, seed: 3);
        var dir = Path.Combine(Path.GetTempPath(), $"oml-lab-pattern-{Environment.ProcessId}");
        ModelFolder.Save(model, dir);
        return dir;
    });

    /// <summary>A fresh copy of the pattern model (trained once per test run).</summary>
    public static CausalLM Pattern() => ModelFolder.Load(PatternDir.Value);

    public static float[] Values(Tensor t)
    {
        using var f = t.To(DType.Float32);
        return f.ToArray<float>();
    }

    public static bool SameParameters(CausalLM a, CausalLM b) =>
        a.Parameters.Count == b.Parameters.Count && a.Parameters.All(p => Values(p.Value).SequenceEqual(Values(b.Parameters[p.Key])));
}
