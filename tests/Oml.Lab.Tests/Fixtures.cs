using Oml.Lab.Experiments;

namespace Oml.Lab.Tests;

internal static class Fixtures
{
    public static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Oml.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root not found");
    }

    public static string Experiment(string name) => Path.Combine(RepoRoot(), "lab", "experiments", name);

    private static readonly Lazy<string> SmokeBaseDir = new(() =>
    {
        // The tiny base model of the smoke configs, trained once per test run and copied into each run's output folder.
        var config = LabConfig.Load(Experiment("smoke-capacity.yaml"));
        var dir = Path.Combine(Directory.CreateTempSubdirectory("oml-lab-smoke-base-").FullName, "base");
        var env = new LabEnvironment(config, Path.GetDirectoryName(dir)!);
        env.Prepare(); // builds $out/base
        return dir;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string SmokeBase => SmokeBaseDir.Value;

    /// <summary>A fresh output folder holding a copy of the smoke base model (so runs skip training it).</summary>
    public static string OutDirWithBase()
    {
        var dir = Directory.CreateTempSubdirectory("oml-lab-run-").FullName;
        var dst = Path.Combine(dir, "base");
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(SmokeBase)) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        return dir;
    }
}
