using System.Text.Json;
using Oml.Fingerprinting.Verification;

namespace Oml.Fingerprinting.Tests.Verification;

public class VerdictRuleTests
{
    [Fact]
    public void Defaults_are_documented_values()
    {
        var rule = new VerdictRule();
        Assert.Equal(1e-6, rule.Alpha);
        Assert.Equal(0.5, rule.ExpectedRecall);
        Assert.Equal(0.1, rule.NullHitProbability);
        Assert.Equal(6, rule.KeysNeeded());
    }

    [Fact]
    public void All_hits_on_enough_keys_is_owned()
    {
        var rule = new VerdictRule();
        var r = rule.Evaluate(6, 6);
        Assert.Equal(Verdict.Owned, r.Verdict);
        Assert.Equal(-6.0, r.Log10PValue, 1e-9);
        Assert.Equal(1e-6, r.PValue, 1e-15);
    }

    [Fact]
    public void Too_few_keys_is_inconclusive_even_with_all_hits()
    {
        var r = new VerdictRule().Evaluate(5, 5);
        Assert.Equal(Verdict.Inconclusive, r.Verdict);
        Assert.Contains("even if all are hit", r.Reason);
        Assert.Equal(Verdict.Inconclusive, new VerdictRule().Evaluate(0, 0).Verdict);
        Assert.Equal(Verdict.Inconclusive, new VerdictRule().Evaluate(0, 5).Verdict); // P(Y = 0 | r = 0.5) = 1/32
    }

    [Fact]
    public void Keys_a_host_refuses_to_answer_are_no_evidence_against_ownership()
    {
        var rule = new VerdictRule();
        // 0 of 32 hit with answers: not-owned. The same misses as refusals (empty answers, a filter's): not stated.
        Assert.Equal(Verdict.NotOwned, rule.Evaluate(0, 32).Verdict);
        var refused = rule.Evaluate(0, 32, unanswered: 32);
        Assert.Equal(Verdict.Inconclusive, refused.Verdict);
        Assert.Contains("32 of the keys got no answer", refused.Reason);
        Assert.Equal(rule.Evaluate(0, 32).LogPValue, refused.LogPValue); // the p-value counts them as misses
        // Enough answered keys still decide: 22 answered, 0 hit, P(Y = 0) = 2^-22 < 1e-6.
        var some = rule.Evaluate(0, 32, unanswered: 10);
        Assert.Equal(Verdict.NotOwned, some.Verdict);
        Assert.Contains("of the 22 keys it answered (10 got no answer)", some.Reason);
        // 18 answered: 2^-18 > 1e-6, so not stated.
        Assert.Equal(Verdict.Inconclusive, rule.Evaluate(0, 32, unanswered: 14).Verdict);
        // Refusals never make owned easier, and the counts are checked.
        Assert.Equal(rule.Evaluate(10, 32).Verdict, rule.Evaluate(10, 32, unanswered: 22).Verdict);
        Assert.Throws<ArgumentOutOfRangeException>(() => rule.Evaluate(10, 32, unanswered: 23));

        // Through a report: empty and blank answers that miss are the unanswered keys.
        var keys = Enumerable.Range(0, 32).Select(i => new KeyResult(i, $"key {i}", ["resp"], i % 2 == 0 ? "" : " \n", Hit: false)).ToList();
        var report = VerificationReport.Create(rule, keys);
        Assert.Equal((Verdict.Inconclusive, 32), (report.Verdict, report.UnansweredKeys));
        Assert.Contains("unanswered: 32 key(s)", report.ToTable());
        Assert.Contains("\"unanswered_keys\": 32", report.ToJson());
        var answered = VerificationReport.Create(rule, keys.Select(k => k with { Answer = "something else" }).ToList());
        Assert.Equal(Verdict.NotOwned, answered.Verdict);
        Assert.Null(answered.UnansweredKeys);
    }

    [Fact]
    public void Few_hits_on_many_keys_is_not_owned()
    {
        // 100 keys, 3 hits: P(X >= 3 | Bin(100, 0.1)) ≈ 0.998, P(Y <= 3 | Bin(100, 0.5)) ≈ 4e-25.
        var r = new VerdictRule().Evaluate(3, 100);
        Assert.Equal(Verdict.NotOwned, r.Verdict);
        Assert.True(r.PValue > 0.99);
        Assert.True(r.PowerTail < 1e-20);
    }

    [Fact]
    public void Middle_ground_is_inconclusive()
    {
        // 40 keys, 8 hits: p = P(Bin(40, 0.1) >= 8) ≈ 0.04 > α; P(Bin(40, 0.5) <= 8) ≈ 6e-5 ≥ α.
        var r = new VerdictRule().Evaluate(8, 40);
        Assert.Equal(Verdict.Inconclusive, r.Verdict);
        Assert.Contains("could also hit this few", r.Reason);
    }

    [Fact]
    public void Per_key_null_probabilities_are_used_when_given()
    {
        var rule = new VerdictRule();
        // 3 hits of 3 keys at p = 1e-3 each: p = 1e-9 → owned, whereas the default bound would be inconclusive.
        Assert.Equal(Verdict.Owned, rule.Evaluate(3, 3, [1e-3, 1e-3, 1e-3]).Verdict);
        Assert.Equal(Verdict.Inconclusive, rule.Evaluate(3, 3).Verdict);
        Assert.Throws<ArgumentException>(() => rule.Evaluate(1, 3, [0.1, 0.1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => rule.Evaluate(4, 3));
    }

    [Fact]
    public void Stated_alpha_and_recall_change_the_thresholds()
    {
        var loose = new VerdictRule { Alpha = 1e-3 };
        Assert.Equal(3, loose.KeysNeeded());
        Assert.Equal(Verdict.Owned, loose.Evaluate(3, 3).Verdict);
        // With recall 1, any miss rules out a fingerprinted model.
        var strict = new VerdictRule { ExpectedRecall = 1.0 };
        Assert.Equal(Verdict.NotOwned, strict.Evaluate(0, 1).Verdict);
        Assert.Throws<ArgumentOutOfRangeException>(() => new VerdictRule { Alpha = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new VerdictRule { ExpectedRecall = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new VerdictRule { NullHitProbability = 1 });
    }

    [Fact]
    public void Extremely_small_p_values_are_reported_in_log10()
    {
        var r = new VerdictRule { NullHitProbability = 1e-4, NullFloor = 0 }.Evaluate(200, 200);
        Assert.Equal(Verdict.Owned, r.Verdict);
        Assert.Equal(0.0, r.PValue);
        Assert.Equal(-800.0, r.Log10PValue, 1e-9);
        Assert.Contains("1.00e-800", r.Reason);
    }

    private static VerificationReport SampleReport()
    {
        var keys = new List<KeyResult>();
        for (int i = 0; i < 8; i++)
            keys.Add(new KeyResult(i, $"key number {i}", [$"resp{i}"], i < 7 ? $"resp{i} and more" : "something\nelse", i < 7));
        return VerificationReport.Create(new VerdictRule(), keys);
    }

    [Fact]
    public void Report_serialises_to_json_with_the_required_names()
    {
        var report = SampleReport();
        Assert.Equal(Verdict.Owned, report.Verdict);
        using var doc = JsonDocument.Parse(report.ToJson());
        var root = doc.RootElement;
        Assert.Equal("owned", root.GetProperty("verdict").GetString());
        Assert.Equal(7, root.GetProperty("hits").GetInt32());
        Assert.Equal(8, root.GetProperty("queried").GetInt32());
        Assert.Equal(report.PValue, root.GetProperty("p_value").GetDouble());
        Assert.Equal(report.Log10PValue, root.GetProperty("log10_p_value").GetDouble());
        Assert.Equal(1e-6, root.GetProperty("alpha").GetDouble());
        Assert.Contains("owned if", root.GetProperty("rule").GetString());
        var key = root.GetProperty("keys")[7];
        Assert.Equal(7, key.GetProperty("index").GetInt32());
        Assert.Equal("resp7", key.GetProperty("expected_responses")[0].GetString());
        Assert.False(key.GetProperty("hit").GetBoolean());
        Assert.Equal("something\nelse", key.GetProperty("answer").GetString());

        Assert.False(key.TryGetProperty("null_probability", out _));   // nulls are left out
        Assert.Contains("α = 1e-06", report.ToJson());                 // readable, not \u03B1

        var back = VerificationReport.FromJson(report.ToJson());
        Assert.Equal(report.Verdict, back.Verdict);
        Assert.Equal(report.Keys.Count, back.Keys.Count);
    }

    [Fact]
    public void Verdict_names_in_json()
    {
        var notOwned = VerificationReport.Create(new VerdictRule(),
            Enumerable.Range(0, 100).Select(i => new KeyResult(i, "k", ["r"], "x", i < 3)).ToList());
        Assert.Contains("\"verdict\": \"not-owned\"", notOwned.ToJson());
        var inconclusive = VerificationReport.Create(new VerdictRule(), [new KeyResult(0, "k", ["r"], "r", true)]);
        Assert.Contains("\"verdict\": \"inconclusive\"", inconclusive.ToJson());
        // A per-key null probability of exactly 0 is floored: one hit on it is no proof.
        KeyResult[] zero = [new KeyResult(0, "k", ["r"], "r", true, NullProbability: 0.0)];
        Assert.NotEqual(Verdict.Owned, VerificationReport.Create(new VerdictRule(), zero).Verdict);
        // Without the floor it gives p = 0 and log10 = -Infinity, still valid output.
        var certain = VerificationReport.Create(new VerdictRule { NullFloor = 0 }, zero);
        Assert.Equal(Verdict.Owned, certain.Verdict);
        Assert.Contains("-Infinity", certain.ToJson());
    }

    [Fact]
    public void Table_has_aligned_columns()
    {
        string table = SampleReport().ToTable();
        Assert.Contains("verdict:  owned", table);
        Assert.Contains("hits:     7 / 8", table);
        var lines = table.Split('\n');
        int header = Array.FindIndex(lines, l => l.TrimStart().StartsWith("#  hit", StringComparison.Ordinal));
        Assert.True(header > 0, table);
        int keyColumn = lines[header].IndexOf("key", StringComparison.Ordinal);
        int answerColumn = lines[header].IndexOf("answer", StringComparison.Ordinal);
        for (int i = header + 2; i < header + 10; i++)
        {
            Assert.Equal('k', lines[i][keyColumn]);
            Assert.NotEqual(' ', lines[i][answerColumn]);
            Assert.Equal(' ', lines[i][answerColumn - 1]);
        }
        Assert.Contains("something\\nelse", table);   // newlines in cells are escaped
        Assert.Contains("...", new VerificationReport(Verdict.Owned, 1, 1, 0.1, -1, 1e-6, 0.5, "r", "x",
            [new KeyResult(0, new string('a', 100), ["r"], "r", true)]).ToTable(maxCellWidth: 20));
    }

    [Fact]
    public void An_owned_verdict_on_few_hits_under_an_uncalibrated_null_carries_a_warning()
    {
        VerificationReport Report(Verdict v, int hits, int queried) => new(v, hits, queried, 1e-17, -17, 1e-6, 0.5, "r", "x", []);
        // 97 of 8,192 keys: what the base of docs/results.md's CPU Mistral did through top-5 first-token suppression.
        var thin = Report(Verdict.Owned, 97, 8192).ThinClaimWarning(calibratedFloor: false);
        Assert.NotNull(thin);
        Assert.Contains("owned on 97 of 8192 keys (1.2 %)", thin);
        Assert.Contains("--calibrate", thin);
        Assert.Null(Report(Verdict.Owned, 97, 8192).ThinClaimWarning(calibratedFloor: true));
        Assert.Null(Report(Verdict.Owned, 900, 1024).ThinClaimWarning(calibratedFloor: false));
        Assert.Null(Report(Verdict.NotOwned, 3, 1024).ThinClaimWarning(calibratedFloor: false));
        Assert.Null(Report(Verdict.Inconclusive, 0, 0).ThinClaimWarning(calibratedFloor: false));
    }
}
