namespace Oml.Fingerprinting.Tests;

/// <summary>The reference checkpoints committed under tests/Oml.Models.Tests/fixtures/models.</summary>
internal static class TestModels
{
    public static string Fixture(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln")))
                return Path.Combine(d.FullName, "tests", "Oml.Models.Tests", "fixtures", "models", name);
        throw new DirectoryNotFoundException("repository root not found");
    }
}
