using System.Xml.Linq;
using Oml.Lab.Reports;

namespace Oml.Lab.Tests;

public class SvgTests
{
    private static XElement Parse(string svg)
    {
        var doc = XDocument.Parse(svg);
        Assert.Equal(XName.Get("svg", "http://www.w3.org/2000/svg"), doc.Root!.Name);
        return doc.Root;
    }

    [Fact]
    public void Nice_ticks_are_round_steps_covering_the_range()
    {
        Assert.Equal([0, 0.2, 0.4, 0.6, 0.8, 1.0], SvgChart.NiceTicks(0, 1, 6).Select(t => Math.Round(t, 10)));
        Assert.Equal([100.0, 200, 300, 400], SvgChart.NiceTicks(130, 370, 4));
        var log = SvgChart.LogTicks(Math.Log10(10), Math.Log10(1000));
        Assert.Equal([1.0, 2, 3], log.Select(t => Math.Round(t, 10)));
        Assert.Equal(6, SvgChart.LogTicks(Math.Log10(1), Math.Log10(60)).Count); // 1 2 5 10 20 50
    }

    [Fact]
    public void Line_chart_is_wellformed_with_a_legend_entry_per_series_and_escaped_text()
    {
        var svg = SvgChart.Line("FSR <&> \"capacity\"", "fingerprints", "FSR",
            [new ChartSeries("a < b", [(16, 1.0), (64, 0.9), (256, double.NaN), (1024, 0.5)]), new ChartSeries("c & d", [(16, 0.8), (1024, 0.2)])], logX: true, yMin: 0, yMax: 1);
        var root = Parse(svg);
        var texts = root.Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value).ToList();
        Assert.Contains("a < b", texts);
        Assert.Contains("c & d", texts);
        Assert.Contains("FSR <&> \"capacity\"", texts);
        // The log axis is ticked at the data's x values.
        Assert.Contains("16", texts);
        Assert.Contains("1024", texts);
        Assert.Equal(2, root.Descendants().Count(e => e.Name.LocalName == "path" && e.Attribute("fill")?.Value == "none" && e.Attribute("stroke-width")?.Value == "2"));
        Assert.Throws<ArgumentException>(() => SvgChart.Line("x", "x", "y", [new ChartSeries("s", [(0, 1)])], logX: true));
    }

    [Fact]
    public void A_log_y_axis_spaces_decades_evenly_and_a_series_keeps_its_style_index()
    {
        var svg = SvgChart.Line("ppl", "n", "ppl", [new ChartSeries("wrecked", [(16, 10), (64, 1000), (256, 100000)], Style: 3)], logX: true, logY: true);
        var root = Parse(svg);
        // Tick labels at the decades, and the three points a decade of y apart are equally spaced vertically.
        var ticks = root.Descendants().Where(e => e.Name.LocalName == "text" && e.Attribute("text-anchor")?.Value == "end").ToDictionary(e => e.Value, e => double.Parse(e.Attribute("y")!.Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(ticks.ContainsKey("10") && ticks.ContainsKey("1000") && ticks.ContainsKey("1e5"), string.Join(", ", ticks.Keys));
        Assert.Equal(ticks["10"] - ticks["1000"], ticks["1000"] - ticks["1e5"], 6);
        // Style 3: the palette's fourth colour and the diamond marker, in the plot and in the legend.
        var line = root.Descendants().Single(e => e.Name.LocalName == "path" && e.Attribute("stroke-width")?.Value == "2");
        Assert.Equal(SvgChart.Palette[3], line.Attribute("stroke")!.Value);
        Assert.Equal(SvgChart.Palette[3], root.Descendants().Single(e => e.Name.LocalName == "line" && e.Attribute("x2") is not null && e.Attribute("stroke")?.Value == SvgChart.Palette[3]).Attribute("stroke")!.Value);
        Assert.Throws<ArgumentException>(() => SvgChart.Line("x", "x", "y", [new ChartSeries("s", [(1, 0)])], logY: true));
    }

    [Fact]
    public void Roc_and_bar_charts_are_wellformed()
    {
        Parse(SvgChart.Roc("roc", [new ChartSeries("greedy", [(0, 0), (0, 0.5), (0.5, 1), (1, 1)])]));
        var bar = Parse(SvgChart.Bar("bars", "FSR", ["none", "prune(0.3)"], [new BarSeries("a", [1, 0.5]), new BarSeries("b", [0.9, double.NaN])], 0, 1));
        Assert.Equal(3, bar.Descendants().Count(e => e.Name.LocalName == "rect" && e.Element(XName.Get("title", "http://www.w3.org/2000/svg")) is not null));
        Assert.Throws<ArgumentException>(() => SvgChart.Bar("b", "y", ["one"], [new BarSeries("a", [1, 2])]));
    }
}
