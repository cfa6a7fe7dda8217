using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models.Tests;

/// <summary>Every reference checkpoint against the numbers Hugging Face transformers 5.17 computed for it.</summary>
public class ModelTests
{
    /// <summary>The float32 checkpoints, whose references hold logits, loss, greedy output and a left-padded batch.</summary>
    public static TheoryData<string> Folders => new()
    {
        "llama-tiny", "llama3-rope-tiny", "mistral-tiny", "qwen2-tiny", "qwen3-tiny", "llama-tiny-sharded",
    };

    /// <summary>The bfloat16 checkpoints, whose references hold logits computed in float32 from the bf16 weights.</summary>
    public static TheoryData<string> Bf16Folders => new()
    {
        "llama-tiny-bf16", "llama3-rope-tiny-bf16", "mistral-tiny-bf16", "qwen2-tiny-bf16", "qwen3-tiny-bf16",
    };

    private static CausalLM Load(string name) =>
        // bf16 references were computed in float32 from the bf16-rounded weights.
        ModelFolder.Load(Fixtures.Model(name), Device.Cpu, DType.Float32);

    private static SafetensorsFile Reference(string name) => SafetensorsFile.Open(Path.Combine(Fixtures.Model(name), "reference.safetensors"));

    private static void AssertClose(Tensor expected, Tensor actual, double tol, Tensor? rowMask = null)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        using var scope = Torch.NewScope();
        var diff = (expected - actual.To(DType.Float32)).Abs();
        if (rowMask is not null) diff = diff * rowMask.To(DType.Float32).Unsqueeze(-1);
        double max = diff.Max().ToDouble();
        Assert.True(max <= tol, $"max |difference| {max:E3} exceeds {tol:E1}");
    }

    [Theory, MemberData(nameof(Folders)), MemberData(nameof(Bf16Folders))]
    public void Logits_match_transformers(string name)
    {
        using var scope = Torch.NewScope();
        using var model = Load(name);
        using var reference = Reference(name);
        using (Torch.NoGrad())
        {
            var logits = model.Forward(reference.Load("input_ids"));
            AssertClose(reference.Load("logits"), logits, 1e-4);
        }
    }

    [Theory, MemberData(nameof(Folders))]
    public void Loss_matches_transformers(string name)
    {
        using var scope = Torch.NewScope();
        using var model = Load(name);
        using var reference = Reference(name);
        using (Torch.NoGrad())
        {
            var loss = CausalLM.Loss(model.Forward(reference.Load("input_ids")), reference.Load("labels"));
            Assert.Equal(reference.Load("loss").ToDouble(), loss.ToDouble(), 1e-5);
        }
    }

    [Theory, MemberData(nameof(Folders))]
    public void Greedy_output_matches_transformers(string name)
    {
        using var scope = Torch.NewScope();
        using var model = Load(name);
        using var reference = Reference(name);
        var prompt = reference.Load("greedy_prompt").ToArray<long>().Select(x => (int)x).ToArray();
        var expected = reference.Load("greedy_output").ToArray<long>().Select(x => (int)x).ToArray();
        var result = Generator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = expected.Length - prompt.Length, EosTokenIds = [] });
        Assert.Equal(expected.Skip(prompt.Length).ToArray(), result.Sequences[0].OutputIds);
    }

    [Theory, MemberData(nameof(Folders))]
    public void Left_padded_batch_matches_transformers(string name)
    {
        using var scope = Torch.NewScope();
        using var model = Load(name);
        using var reference = Reference(name);
        var mask = reference.Load("padded_attention_mask");
        using (Torch.NoGrad())
        {
            var logits = model.Forward(reference.Load("padded_input_ids"), mask);
            AssertClose(reference.Load("padded_logits"), logits, 1e-4, rowMask: mask);
        }
    }

    [Fact]
    public void Bfloat16_weights_load_in_their_own_dtype()
    {
        using var model = ModelFolder.Load(Fixtures.Model("qwen3-tiny-bf16"));
        Assert.Equal(DType.BFloat16, model.DType);
        using var scope = Torch.NewScope();
        using var reference = Reference("qwen3-tiny-bf16");
        using (Torch.NoGrad())
        {
            var logits = model.Forward(reference.Load("input_ids"));
            Assert.Equal(DType.BFloat16, logits.DType);
            // bfloat16 arithmetic: close to the float32 reference, not equal.
            AssertClose(reference.Load("logits"), logits, 0.25);
        }
    }

    [Fact]
    public void Cached_decoding_equals_a_full_forward()
    {
        using var scope = Torch.NewScope();
        using var model = Load("qwen3-tiny");
        using var reference = Reference("qwen3-tiny");
        var ids = reference.Load("input_ids").Narrow(0, 0, 1);
        using (Torch.NoGrad())
        {
            var full = model.Forward(ids);
            using var cache = new KVCache(model.Config, 1, 32, DType.Float32, Device.Cpu);
            var first = model.Forward(ids.Narrow(1, 0, 12), cache: cache);
            var rest = new List<Tensor> { first };
            for (int t = 12; t < ids.Size(1); t++) rest.Add(model.Forward(ids.Narrow(1, t, 1), cache: cache));
            AssertClose(full, Torch.Cat(rest, 1), 1e-4);
        }
    }

    /// <summary>
    /// Two sequences packed into one row after a shared prefix's cache, under a full [B, 1, T, total] mask (each attends to
    /// the prefix and causally to itself, with its own positions), and a second row holding one of them then padding: the
    /// logits of every real token equal those of prefix ++ sequence run alone. One mask entry that lets the second
    /// sequence see the first changes them (the comparison can fail), and a mask of another shape is refused.
    /// </summary>
    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny")]
    public void Packed_sequences_under_a_full_mask_equal_each_sequence_alone(string name)
    {
        using var scope = Torch.NewScope();
        using var model = Load(name);
        var rng = new Random(11);
        int vocab = model.Config.VocabSize;
        long[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => (long)rng.Next(vocab)).ToArray();
        long[] prefix = Tokens(5), s1 = Tokens(3), s2 = Tokens(4);
        int len = prefix.Length, t = s1.Length + s2.Length;
        using (Torch.NoGrad())
        {
            Tensor Alone(long[] s) => model.Forward(Torch.FromArray<long>([.. prefix, .. s], [1, len + s.Length])).Narrow(1, len, s.Length);
            var (alone1, alone2) = (Alone(s1), Alone(s2));

            // Row 0: s1 then s2; row 1: s2 then 3 padding tokens (which attend to the prefix and themselves).
            long[] ids = [.. s1, .. s2, .. s2, 0, 0, 0];
            long[] pos = [.. Enumerable.Range(len, 3), .. Enumerable.Range(len, 4), .. Enumerable.Range(len, 4), len, len, len];
            var seq = new[] { new[] { 0, 0, 0, 1, 1, 1, 1 }, new[] { 0, 0, 0, 0, 2, 3, 4 } };
            var mask = new long[2 * t * (len + t)];
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < t; i++)
                    for (int j = 0; j < len + t; j++)
                        mask[(b * t + i) * (len + t) + j] = j < len || (j - len <= i && seq[b][j - len] == seq[b][i]) ? 1 : 0;
            Tensor Packed(long[] m)
            {
                using var prefixCache = new KVCache(model.Config, 1, len, DType.Float32, Device.Cpu);
                model.Forward(Torch.FromArray<long>(prefix, [1, len]), cache: prefixCache);
                using var rows = prefixCache.Gather(Torch.FromArray<long>([0, 0], [2]), t);
                return model.Forward(Torch.FromArray<long>(ids, [2, t]), Torch.FromArray<long>(m, [2, 1, t, len + t]),
                    Torch.FromArray<long>(pos, [2, t]), rows);
            }
            var packed = Packed(mask);
            AssertClose(alone1, packed.Select(0, 0).Narrow(0, 0, 3).Unsqueeze(0), 1e-4);
            AssertClose(alone2, packed.Select(0, 0).Narrow(0, 3, 4).Unsqueeze(0), 1e-4);
            AssertClose(alone2, packed.Select(0, 1).Narrow(0, 0, 4).Unsqueeze(0), 1e-4);

            // s2's first token in row 0 allowed to see s1's last token: s2's logits move.
            var leak = (long[])mask.Clone();
            leak[3 * (len + t) + len + 2] = 1;
            var leaked = Packed(leak).Select(0, 0).Narrow(0, 3, 4).Unsqueeze(0);
            double moved = (alone2 - leaked).Abs().Max().ToDouble();
            Assert.True(moved > 1e-3, $"a leaking mask entry moved the logits by {moved:E2} only");

            var e = Assert.Throws<ArgumentException>(() => model.Forward(Torch.FromArray<long>(ids, [2, t]),
                Torch.FromArray<long>(mask, [2, 1, t, len + t]).Narrow(3, 0, len + t - 1), Torch.FromArray<long>(pos, [2, t])));
            Assert.Contains("full attention mask must be [2, 1, 7, 7]", e.Message);
        }
    }
}
