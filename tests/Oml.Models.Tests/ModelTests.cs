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
}
