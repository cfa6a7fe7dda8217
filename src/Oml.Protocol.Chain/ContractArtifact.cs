using System.Reflection;
using System.Text.Json;

namespace Oml.Protocol.Chain;

/// <summary>A compiled contract (contracts/out/NAME.json, built by contracts/build.sh and embedded here).</summary>
/// <param name="Name">The contract's name.</param>
/// <param name="Abi">The ABI as JSON text.</param>
/// <param name="Bytecode">The creation bytecode, 0x-prefixed hex.</param>
/// <param name="RuntimeSize">The deployed (runtime) code size in bytes; the EVM limit is 24,576.</param>
public sealed record ContractArtifact(string Name, string Abi, string Bytecode, int RuntimeSize)
{
    public const int RuntimeSizeLimit = 24_576;

    public static ContractArtifact OmlToken => Load("OmlToken");
    public static ContractArtifact OmlProtocol => Load("OmlProtocol");
    public static ContractArtifact OmlClaims => Load("OmlClaims");
    public static ContractArtifact OmlGovernance => Load("OmlGovernance");

    /// <summary>Loads an embedded artifact by contract name (also the test-only HookToken and Reenterer).</summary>
    public static ContractArtifact Load(string name)
    {
        using var stream = typeof(ContractArtifact).Assembly.GetManifestResourceStream($"contracts/{name}.json")
            ?? throw new ArgumentException($"no compiled contract named '{name}' is embedded (run contracts/build.sh)", nameof(name));
        using var doc = JsonDocument.Parse(stream);
        var root = doc.RootElement;
        return new ContractArtifact(name, root.GetProperty("abi").GetRawText(), root.GetProperty("bytecode").GetString()!,
            root.GetProperty("runtimeSize").GetInt32());
    }

    /// <summary>The names of every embedded artifact.</summary>
    public static IReadOnlyList<string> Names =>
        [.. typeof(ContractArtifact).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("contracts/", StringComparison.Ordinal) && n.EndsWith(".json", StringComparison.Ordinal))
            .Select(n => n["contracts/".Length..^".json".Length]).Order(StringComparer.Ordinal)];
}
