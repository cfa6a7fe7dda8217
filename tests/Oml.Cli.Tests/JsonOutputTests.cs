using System.Text.Json.Nodes;

namespace Oml.Cli.Tests;

/// <summary><c>--json</c> on commands whose output is data.</summary>
[Collection(nameof(CliTests))]
public class JsonOutputTests
{
    [Fact]
    public void Info_prints_the_engine_facts_as_json()
    {
        var (code, output, err) = CliRunner.Run("info", "--json");
        Assert.True(code == 0, err);
        var j = JsonNode.Parse(output)!;
        Assert.False(string.IsNullOrEmpty(j["libtorch"]!.GetValue<string>()));
        Assert.True(j["cpu_threads"]!.GetValue<int>() >= 1);
        Assert.NotNull(j["blas"]);
        _ = j["fused_attention"]!.GetValue<bool>();
        Assert.True(j["cuda_devices"]!.GetValue<int>() >= 0);
    }
}
