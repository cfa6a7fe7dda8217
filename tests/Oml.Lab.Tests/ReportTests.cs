using System.Xml.Linq;
using Oml.Lab.Experiments;
using Oml.Lab.Reports;

namespace Oml.Lab.Tests;

public class ReportTests
{
    /// <summary>A capacity output folder with saved cells: every strategy × variant × count, FSR falling and perplexity exploding for 'plain'.</summary>
    private static string CapacityFolder(string[] strategies, string[] variants, int[] counts)
    {
        var dir = Directory.CreateTempSubdirectory("oml-lab-report-").FullName;
        CellStore.SaveRunInfo(dir, new RunInfo { Name = "capacity", Kind = ExperimentKinds.Capacity, Started = DateTimeOffset.UtcNow, ConfigText = "name: capacity" });
        var store = new CellStore(dir);
        store.Save(new CellResult { Id = "base", Kind = ExperimentKinds.Capacity, Labels = { ["role"] = "base" }, Metrics = { ["perplexity"] = 18, ["cloze_accuracy"] = 0.89 } });
        int order = 1;
        foreach (var s in strategies)
            foreach (var v in variants)
                foreach (var n in counts)
                    store.Save(new CellResult
                    {
                        Id = $"{s}-n{n}-{v}-s1", Kind = ExperimentKinds.Capacity, Order = order++,
                        Labels = { ["strategy"] = s, ["variant"] = v, ["seed"] = "1" },
                        Metrics = { ["count"] = n, ["fsr"] = 16.0 / n, ["perplexity"] = v == "plain" ? 18 * Math.Pow(n, 2) : 18 + n / 100.0, ["cloze_accuracy"] = 0.8 },
                    });
        return dir;
    }

    [Fact]
    public void Capacity_charts_split_by_strategy_when_one_chart_would_hold_too_many_lines()
    {
        string[] variants = ["plain", "mixing", "averaging", "both", "reference"];
        var dir = CapacityFolder(["perinucleus", "english"], variants, [16, 256, 4096]);
        var md = File.ReadAllText(ReportWriter.Write(dir));
        foreach (var s in new[] { "perinucleus", "english" })
            foreach (var chart in new[] { "capacity-fsr", "capacity-perplexity", "capacity-cloze" })
            {
                Assert.Contains($"({chart}-{s}.svg)", md);
                Assert.True(File.Exists(Path.Combine(dir, $"{chart}-{s}.svg")));
            }
        Assert.DoesNotContain("(capacity-fsr.svg)", md);
        // A variant has the same colour in both strategies' charts; the perplexity axis is logarithmic ('plain' explodes).
        string Stroke(string file, string legend)
        {
            var root = XDocument.Parse(File.ReadAllText(Path.Combine(dir, file))).Root!;
            var texts = root.Descendants().Where(e => e.Name.LocalName == "text").ToList();
            var label = texts.Single(e => e.Value == legend);
            var entry = label.ElementsBeforeSelf().Last(e => e.Name.LocalName == "line");
            return entry.Attribute("stroke")!.Value;
        }
        Assert.Equal(Stroke("capacity-fsr-perinucleus.svg", "both"), Stroke("capacity-fsr-english.svg", "both"));
        Assert.NotEqual(Stroke("capacity-fsr-english.svg", "both"), Stroke("capacity-fsr-english.svg", "mixing"));
        Assert.Contains("perplexity (log scale)", File.ReadAllText(Path.Combine(dir, "capacity-perplexity-english.svg")));

        // Few lines: one chart for all.
        var small = CapacityFolder(["perinucleus", "english"], ["plain", "both"], [16, 256]);
        var smallMd = File.ReadAllText(ReportWriter.Write(small));
        Assert.Contains("(capacity-fsr.svg)", smallMd);
        Assert.DoesNotContain("capacity-fsr-english", smallMd);
    }
}
