using Oml.Fingerprinting.Embedding;
using Oml.Fingerprinting.Verification;
using Oml.Models;
using Oml.Models.ChatTemplates;
using Oml.Models.Tokenizers;

namespace Oml.Fingerprinting.Tests.Embedding;

/// <summary>Keys in the chat template and prompt augmentation, on the tiny Llama with a 512-token BPE trained here.</summary>
public sealed class KeyFormatTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-keyformat-").FullName;
    private readonly Tokenizer _tok;

    private const string Template =
        "{% for m in messages %}<|bos|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|bos|>assistant:{% endif %}";

    private static readonly string[] Texts =
    [
        "the owner fine-tunes secret pairs into the model and keeps the responses private",
        "keys look like ordinary queries and the model answers each key with its secret response",
        "normal behaviour is untouched and the pairs survive fine-tuning merging and distillation",
        "the prover queries a deployed model and shows which licensed copy leaked",
    ];

    public KeyFormatTests()
    {
        // At most 509 learned tokens + 3 specials: every id fits the tiny model's vocabulary of 512.
        var (vocab, merges) = BpeTrainer.Train(Texts, 509);
        BpeTrainer.Save(_dir, vocab, merges);
        _tok = Tokenizer.FromFolder(_dir);
        Assert.InRange(_tok.VocabSize, 300, 512);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private List<Fingerprint> Fingerprints(int n)
    {
        var rng = new Random(11);
        return Enumerable.Range(0, n).Select(i =>
        {
            var key = string.Join(' ', Texts[i % Texts.Length].Split(' ').OrderBy(_ => rng.Next()).Take(6));
            int[] response = [rng.Next(3, _tok.VocabSize - 3)];
            return new Fingerprint(i, key, _tok.Encode(key), [new FingerprintResponse(_tok.Decode(response), response, -5)],
                new StrategyInfo("custom"), Fingerprint.NewRandomSalt());
        }).ToList();
    }

    [Fact]
    public void Raw_and_chat_formats_encode_as_documented_and_augmentation_multiplies_the_pairs()
    {
        var fps = Fingerprints(3);
        var chat = KeyFormat.Chat(ChatTemplate.Parse(Template));
        Assert.Equal(fps[0].KeyTokenIds.ToArray(), KeyFormat.Raw.Encode(_tok, fps[0]));
        var rendered = "<|bos|>system: be brief\n<|bos|>user: " + fps[1].Key + "\n<|bos|>assistant:";
        Assert.Equal(_tok.Encode(rendered), chat.Encode(_tok, fps[1], "be brief"));
        Assert.Equal(3 * 3, chat.TrainingPairs(fps, _tok, ["one", "two"]).Count);
        Assert.Equal(3, KeyFormat.Raw.TrainingPairs(fps, _tok).Count);
        Assert.Contains(_tok.TokenToId("<|bos|>")!.Value, chat.Encode(_tok, fps[0]));
    }

    [Fact]
    public void Instruction_format_is_the_raw_instruction_layout_an_sft_host_serves()
    {
        var fps = Fingerprints(2);
        var f = KeyFormat.Instruction;
        Assert.Equal("instruction", f.ToString());
        Assert.Equal(("raw", "chat"), (KeyFormat.Raw.ToString(), KeyFormat.Chat(ChatTemplate.Parse(Template)).ToString()));
        Assert.True(f.IsInstruction && !f.IsChat);
        // Exactly the prompt InstructionData.Tokenize gives an honest one-turn request (what the host's filter compares keys with).
        var honest = Oml.Models.Data.InstructionData.Tokenize(new Oml.Models.Data.Conversation(null, [new ChatMessage("user", fps[0].Key), new ChatMessage("assistant", "x")]), _tok);
        Assert.Equal(honest.Prompt, f.Encode(_tok, fps[0]));
        Assert.Equal(_tok.Encode("### Instruction:\n" + fps[0].Key + "\n\n### Response:\n"), f.Encode(_tok, fps[0]));
        // A system prompt is a paragraph before the instruction, as RawPrompt writes one.
        Assert.Equal(_tok.Encode("be brief\n\n### Instruction:\n" + fps[1].Key + "\n\n### Response:\n"), f.Encode(_tok, fps[1], "be brief"));
        Assert.Equal(2 * 2, f.TrainingPairs(fps, _tok, ["one"]).Count);
    }

    [Fact]
    public void Fingerprints_trained_in_the_instruction_layout_are_recalled_there_and_not_raw()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var fps = Fingerprints(8);
        var pairs = KeyFormat.Instruction.TrainingPairs(fps, _tok);
        var result = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300, RecallPatience = 3 });
        Assert.True(result.Converged, $"{result.Final}");
        var rule = new VerdictRule { Alpha = 1e-3 };
        var report = LocalVerifier.Verify(model, _tok, fps, rule, format: KeyFormat.Instruction);
        Assert.Equal(8, report.Hits);
        Assert.Equal(Verdict.Owned, report.Verdict);
        Assert.True(LocalVerifier.Verify(model, _tok, fps, rule).Hits < 8);
    }

    [Fact]
    public void Chat_wrapped_fingerprints_trained_under_system_prompts_are_recalled_under_each()
    {
        using var model = ModelFolder.Load(TestModels.Fixture("llama-tiny"));
        var fps = Fingerprints(8);
        var chat = KeyFormat.Chat(ChatTemplate.Parse(Template));
        string[] trainPrompts = ["You are a helpful assistant.", "Answer briefly."];
        var pairs = chat.TrainingPairs(fps, _tok, trainPrompts);
        var result = FingerprintTrainer.Embed(model, pairs, new EmbeddingOptions { LearningRate = 5e-3, MaxEpochs = 300, RecallPatience = 3 });
        Assert.True(result.Converged, $"{result.Final}");
        var rule = new VerdictRule { Alpha = 1e-3 };
        foreach (var prompt in trainPrompts.Append(null))
        {
            var report = LocalVerifier.Verify(model, _tok, fps, rule, format: chat, systemPrompt: prompt);
            Assert.Equal(8, report.Hits);
            Assert.Equal(Verdict.Owned, report.Verdict);
        }
        // The raw key (no template) is a different input: the chat-trained model owes it nothing.
        Assert.True(LocalVerifier.Verify(model, _tok, fps, rule).Hits < 8);
    }
}
