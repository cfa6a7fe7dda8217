namespace Oml.Fingerprinting.Tests;

/// <summary>The reference checkpoints committed under tests/Oml.Models.Tests/fixtures/models, and the tiny tokenizer.</summary>
internal static class TestModels
{
    public static string Fixture(string name) => Path.Combine(Root(), "tests", "Oml.Models.Tests", "fixtures", "models", name);

    /// <summary>scripts/fixtures/tiny-tokenizer.json: a 512-token byte-level BPE that fits the fixtures' vocabulary.</summary>
    public static Oml.Models.Tokenizers.Tokenizer TinyTokenizer() =>
        Oml.Models.Tokenizers.Tokenizer.FromFile(Path.Combine(Root(), "scripts", "fixtures", "tiny-tokenizer.json"));

    private static string Root()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root not found");
    }
}
