using Oml.Lab.Attacks;
using Oml.Models;
using Oml.Models.Training;

namespace Oml.Lab.Tests;

public class TrainingAttackTests
{
    private static readonly int[] Answer = [60, 61, 62];

    private static List<SupervisedExample> Examples() =>
        Enumerable.Range(0, 4).Select(o => new SupervisedExample(TinyModels.Ordinary(o * 3, 5), Answer)).ToList();

    [Fact]
    public void Full_fine_tuning_teaches_the_examples_and_leaves_the_input_unchanged()
    {
        using var m = TinyModels.Random(21);
        using var before = TinyModels.Random(21);
        var attack = new SftAttack(Examples(), new AttackTraining { Epochs = 40, LearningRate = 1e-2, Batch = 4 });
        var log = new List<string>();
        using var tuned = attack.Apply(m, new Oml.Models.InlineProgress<string>(log.Add));
        Assert.True(TinyModels.SameParameters(m, before));
        Assert.NotEmpty(log);
        Assert.True(attack.LastLoss < 0.5, $"loss {attack.LastLoss}");
        var answers = new ModelResponder(tuned, new GenerationOptions { EosTokenIds = [] }).Respond(Examples().Select(e => e.Prompt).ToList(), 3);
        Assert.All(answers, a => Assert.Equal(Answer, a));
        Assert.Equal("sft(full,epochs=40,lr=0.01)", attack.Name);
    }

    [Fact]
    public void Lora_fine_tuning_returns_a_plain_model_with_only_projections_changed()
    {
        using var m = TinyModels.Random(22);
        var attack = new SftAttack(Examples(), new AttackTraining { Epochs = 20, LearningRate = 3e-2, Batch = 4, LoraRank = 4, Samples = 2 });
        using var tuned = attack.Apply(m);
        Assert.Empty(tuned.LoraTargets);
        Assert.Equal(m.Parameters.Count, tuned.Parameters.Count);
        Assert.Equal(TinyModels.Values(m.Parameters["model.embed_tokens.weight"]), TinyModels.Values(tuned.Parameters["model.embed_tokens.weight"]));
        Assert.NotEqual(TinyModels.Values(m.Parameters["model.layers.0.self_attn.q_proj.weight"]), TinyModels.Values(tuned.Parameters["model.layers.0.self_attn.q_proj.weight"]));
        Assert.True(attack.LastLoss < Math.Log(TinyModels.Vocab) - 0.5, $"loss {attack.LastLoss}");
        Assert.Throws<ArgumentOutOfRangeException>(() => new SftAttack(Examples(), new AttackTraining { LoraRank = 0 }));
        Assert.Throws<ArgumentException>(() => new SftAttack([]));
        var outside = new SftAttack([new SupervisedExample([1, 2], [99])]);
        Assert.Throws<ArgumentException>(() => outside.Apply(m));
    }

    [Fact]
    public void A_fresh_student_distilled_from_the_teacher_answers_like_it()
    {
        using var teacher = TinyModels.Pattern();
        var prompts = Enumerable.Range(0, 16).Select(o => TinyModels.Ordinary(o, 6)).ToList();
        var attack = new DistillationAttack(prompts, freshStudent: TinyModels.Shape.ToConfig(eosId: 63), maxNewTokens: 4,
            decoding: new GenerationOptions { EosTokenIds = [] }, training: new AttackTraining { Epochs = 12, LearningRate = 2e-2, Batch = 4 });
        using var student = attack.Apply(teacher);
        Assert.Equal(16, attack.Transcript.Count);
        Assert.Equal(TinyModels.Ordinary(6, 4), attack.Transcript[0].Response);
        var greedy = new GenerationOptions { EosTokenIds = [] };
        var t = new ModelResponder(teacher, greedy).Respond(prompts, 2);
        var s = new ModelResponder(student, greedy).Respond(prompts, 2);
        int agree = Enumerable.Range(0, 16).Count(i => t[i][0] == s[i][0]);
        Assert.True(agree >= 14, $"the student agrees with the teacher on {agree} of 16 first tokens");
    }

    [Fact]
    public void A_copied_student_is_not_changed_and_mismatched_students_are_refused()
    {
        using var teacher = TinyModels.Pattern();
        using var baseM = TinyModels.Random(5);
        using var before = TinyModels.Random(5);
        var prompts = Enumerable.Range(0, 4).Select(o => TinyModels.Ordinary(o, 6)).ToList();
        var attack = new DistillationAttack(prompts, student: baseM, maxNewTokens: 3, training: new AttackTraining { Epochs = 1, Batch = 4 });
        using var student = attack.Apply(teacher);
        Assert.True(TinyModels.SameParameters(baseM, before));
        Assert.False(TinyModels.SameParameters(student, baseM));
        var wrong = new DistillationAttack(prompts, freshStudent: (TinyModels.Shape with { VocabSize = 80 }).ToConfig());
        Assert.Contains("vocabulary", Assert.Throws<ArgumentException>(() => wrong.Apply(teacher)).Message);
        Assert.Throws<ArgumentException>(() => new DistillationAttack(prompts));
    }
}
