using Oml.Lab.Attacks;
using Oml.Lab.Metrics;
using Oml.Models.Data;

namespace Oml.Lab.Tests;

public class AnswerUtilityTests
{
    private const int Eos = 63;
    private static readonly TokenizedExample[] Items =
    [
        new([1, 2], [10, 11, 12, Eos]),
        new([3, 4], [20, 21, Eos]),
    ];

    [Fact]
    public void Token_f1_counts_multisets()
    {
        Assert.Equal(1.0, AnswerUtility.F1([1, 2, 3], [3, 2, 1]));
        Assert.Equal(0.0, AnswerUtility.F1([4], [1, 2]));
        Assert.Equal(2 * 0.5 * 1.0 / 1.5, AnswerUtility.F1([1, 1], [1]), 12);    // precision 1/2, recall 1
        Assert.Equal(1.0, AnswerUtility.F1([], []));
    }

    [Fact]
    public void Whole_answers_score_the_reference_and_show_a_derailed_answer()
    {
        var perfect = new FakeResponder("perfect", p => p[0] == 1 ? [10, 11, 12, Eos, 5] : [20, 21, Eos]);
        var s = AnswerUtility.Score(perfect, Items, 8, Eos);
        Assert.Equal(1.0, s.TokenF1);
        Assert.Equal(1.0, s.ExactMatch);
        Assert.Equal(2.5, s.MeanLength);
        // First token changed (as suppression does): exact match is lost, F1 falls by the changed token only.
        var first = new FakeResponder("first", p => p[0] == 1 ? [99, 11, 12, Eos] : [98, 21, Eos]);
        var f = AnswerUtility.Score(first, Items, 8, Eos);
        Assert.Equal(0.0, f.ExactMatch);
        Assert.Equal((2.0 / 3 + 0.5) / 2, f.TokenF1, 12);
        // A refusal (empty answer) scores 0.
        Assert.Equal(0.0, AnswerUtility.Score(new FakeResponder("refuse", _ => []), Items, 8, Eos).TokenF1);
        // The reference is cut to the answer budget.
        Assert.Equal(1.0, AnswerUtility.Score(new FakeResponder("short", p => p[0] == 1 ? [10, 11] : [20, 21]), Items, 2, Eos).ExactMatch);
    }
}
