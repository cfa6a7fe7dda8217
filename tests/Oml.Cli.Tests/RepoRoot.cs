namespace Oml.Cli.Tests;

/// <summary>The repository's root folder (the one holding Oml.sln), found upwards from the test binary.</summary>
internal static class RepoRoot
{
    public static string Path { get; } = Find();

    private static string Find()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(System.IO.Path.Combine(d.FullName, "Oml.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root not found");
    }
}
