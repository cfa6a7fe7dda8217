namespace Oml.Engine.Tests;

public class PhasesTests
{
    [Fact]
    public void Phases_accumulate_by_name_in_first_use_order_and_print_as_json()
    {
        Phases.Reset();
        using (Phases.Measure("load")) Thread.Sleep(20);
        Phases.Add("hash \"base\"", 1.5);
        Phases.Add("load", 2.0);
        Assert.Equal(42, Phases.Time("answer", () => 42));
        var got = Phases.Snapshot();
        Assert.Equal(["load", "hash \"base\"", "answer"], got.Select(p => p.Name));
        Assert.InRange(got[0].Seconds, 2.015, 10);
        Assert.Equal(1.5, got[1].Seconds);
        var json = System.Text.Json.JsonDocument.Parse(Phases.ToJson()).RootElement;
        Assert.Equal(1.5, json.GetProperty("hash \"base\"").GetDouble());
        Assert.Equal(3, json.EnumerateObject().Count());
        Phases.Reset();
        Assert.Empty(Phases.Snapshot());
        Assert.Equal("{}", Phases.ToJson());
    }
}
