using System.CommandLine;
using System.Diagnostics;
using Oml.Engine;

namespace Oml.Cli;

/// <summary>
/// <c>oml demo</c>: the README's main job. For now it trains a tiny character-level language model
/// (embedding, two hidden layers) on a built-in text and prints its loss falling, then a greedy sample.
/// </summary>
public static class DemoCommand
{
    private const string Text =
        "Once weights are public, anyone can copy, rename and sell a model. Fingerprinting answers with secret " +
        "pairs of keys and responses that the owner fine-tunes into the model: keys look like ordinary queries, " +
        "the model answers each key with its secret response, and normal behaviour is untouched. The owner can " +
        "later show, by black-box queries alone, that a deployed model is theirs and which licensed copy leaked. ";

    public static Command Create()
    {
        var steps = new Option<int>("--steps") { Description = "Optimiser steps", DefaultValueFactory = _ => 400 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 1 };
        var device = Cli.DeviceOption();
        var cmd = new Command("demo", "Run the end-to-end demo (currently: train a tiny character model and show its loss falling).")
        {
            steps, seed, device,
        };
        cmd.SetAction(r => Run(r.GetValue(steps), r.GetValue(seed), Cli.ParseDevice(r.GetValue(device)!)));
        return cmd;
    }

    public static int Run(int steps, ulong seed, Device device)
    {
        if (steps < 1) throw new ArgumentException("--steps must be at least 1");
        Torch.ManualSeed(seed);
        var vocab = Text.Distinct().OrderBy(c => c).ToArray();
        var index = vocab.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => (long)p.i);
        var ids = Text.Select(c => index[c]).ToArray();
        const int context = 8, embed = 16, hidden = 128, batch = 64;
        int v = vocab.Length;

        Console.WriteLine($"oml demo: libtorch {Torch.LibTorchVersion}, device {device}, {Torch.Threads} CPU threads");
        Console.WriteLine($"training a character model ({v} symbols, context {context}) on {Text.Length} characters for {steps} steps");

        Tensor Param(long[] shape, double scale) => (Torch.Randn(shape, device: device) * scale).DetachFromScope().RequiresGrad_();
        var emb = Param([v, embed], 0.5);
        var w1 = Param([hidden, context * embed], 1.0 / Math.Sqrt(context * embed));
        var b1 = Param([hidden], 0);
        var w2 = Param([hidden, hidden], 1.0 / Math.Sqrt(hidden));
        var b2 = Param([hidden], 0);
        var w3 = Param([v, hidden], 1.0 / Math.Sqrt(hidden));
        Tensor[] parameters = [emb, w1, b1, w2, b2, w3];
        using var opt = new AdamW(parameters, lr: 3e-3, weightDecay: 0.01);
        using var data = Torch.FromArray<long>(ids, null, device);
        using var offsets = Torch.Arange(context + 1, device: device);

        Tensor Logits(Tensor x) // x: [B, context] ids
        {
            var h = F.Embedding(x, emb).Flatten(1);
            h = F.Linear(h, w1, b1).Gelu();
            h = F.Linear(h, w2, b2).Gelu();
            return F.Linear(h, w3);
        }

        var sw = Stopwatch.StartNew();
        double first = double.NaN, last = double.NaN;
        for (int step = 1; step <= steps; step++)
        {
            using var scope = Torch.NewScope();
            var starts = Torch.RandInt(0, ids.Length - context - 1, [batch, 1], device: device);
            var windows = data.Index((starts + offsets).Flatten()).View(batch, context + 1);
            var x = windows.Narrow(1, 0, context);
            var y = windows.Select(1, context);
            opt.ZeroGrad();
            var loss = F.CrossEntropy(Logits(x), y);
            loss.Backward();
            Torch.ClipGradNorm(parameters, 1.0);
            opt.Step();
            if (step == 1 || step % 50 == 0 || step == steps)
            {
                last = loss.ToDouble();
                if (step == 1) first = last;
                Console.WriteLine($"  step {step,5}  loss {last:F4}  ({sw.Elapsed.TotalSeconds:F1} s)");
            }
        }

        // Greedy continuation of the text's first characters.
        var generated = new List<long>(ids.Take(context));
        using (Torch.NoGrad())
            for (int i = 0; i < 80; i++)
            {
                using var scope = Torch.NewScope();
                var x = Torch.FromArray<long>(generated.Skip(generated.Count - context).ToArray(), [1, context], device);
                generated.Add(Logits(x).ArgMax(-1).ToInt64());
            }
        Console.WriteLine($"sample: \"{new string(generated.Select(i => vocab[i]).ToArray())}\"");
        Console.WriteLine($"loss fell from {first:F3} to {last:F3} (uniform guess: {Math.Log(v):F3})");
        foreach (var p in parameters) p.Dispose();
        return last < first ? Cli.Ok : Cli.Failure;
    }
}
