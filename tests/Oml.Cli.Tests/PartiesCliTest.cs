using System.Text.Json.Nodes;

namespace Oml.Cli.Tests;

/// <summary>
/// What the CLI tests that play several parties on one ledger share: a temporary folder (deleted at the end), a
/// passphrase file, a key store per party, each party's address once created, and runners that act as a party with
/// <c>--json</c>. Pinned ledger heads go to a test folder, not the user's config (ledger ids are random, so tests never
/// collide).
/// </summary>
public abstract class PartiesCliTest : IDisposable
{
    /// <summary>PBKDF2 iterations of the tests' key stores: small, for test speed only.</summary>
    protected const string Kdf = "1000";

    protected PartiesCliTest(string folderPrefix, string passphrase)
    {
        Dir = Directory.CreateTempSubdirectory(folderPrefix).FullName;
        Passphrase = passphrase;
        File.WriteAllText(PassFile, passphrase + "\n");
        Environment.SetEnvironmentVariable("OML_PIN_DIR", Path.Combine(Path.GetTempPath(), "oml-cli-test-pins"));
    }

    protected string Dir { get; }
    protected string Passphrase { get; }
    /// <summary>Each party's address, by name, as the tests create their accounts.</summary>
    protected Dictionary<string, string> Addresses { get; } = [];

    protected string P(string name) => Path.Combine(Dir, name);
    protected string PassFile => P("pass.txt");
    protected string Ledger => P("ledger.db");
    protected string Ks(string who) => P($"{who}.json");
    protected string Addr(string who) => Addresses[who];

    /// <summary>Creates a key store per name (weak KDF, for speed) and records each address.</summary>
    protected void NewAccounts(params string[] names)
    {
        foreach (var n in names)
        {
            var r = Run("account", "new", "--keystore", Ks(n), "--passphrase-file", PassFile, "--kdf-iterations", Kdf);
            Assert.True(r.Code == 0, r.Err);
            Addresses[n] = r.Out.Trim().ToLowerInvariant();
        }
    }

    /// <summary>The treasury mints <paramref name="amount"/> to every other party; returns each new balance.</summary>
    protected IReadOnlyList<long> FundAll(long amount = 10_000) =>
        [.. Addresses.Keys.Where(n => n != "treasury")
            .Select(n => Act("treasury", "owner", "mint", "--to", Addr(n), "--amount", amount.ToString(System.Globalization.CultureInfo.InvariantCulture))["balance"]!.GetValue<long>())];

    protected static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>Runs an action command as <paramref name="who"/> with --json and returns its JSON (asserting exit 0).</summary>
    protected JsonNode Act(string who, params string[] args)
    {
        var r = Run([.. args, "--ledger", Ledger, "--keystore", Ks(who), "--passphrase-file", PassFile, "--json"]);
        Assert.True(r.Code == 0, $"{string.Join(' ', args)} as {who}: exit {r.Code}: {r.Err}");
        return JsonNode.Parse(r.Out)!;
    }

    /// <summary>Runs a command as <paramref name="who"/> without --json and without asserting its exit code.</summary>
    protected (int Code, string Out, string Err) Try(string who, params string[] args) =>
        Run([.. args, "--ledger", Ledger, "--keystore", Ks(who), "--passphrase-file", PassFile]);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
