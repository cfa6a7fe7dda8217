using System.Text.Json.Nodes;
using Oml.Protocol.Ledger;
using SQLitePCL;

namespace Oml.Cli.Tests;

/// <summary><c>oml ledger</c>: init, bench, head, log, verify (intact, tampered, anchored), bad files.</summary>
[Collection(nameof(CliTests))]
public sealed class LedgerCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oml-cli-ledger-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public void InitBenchHeadLogVerify()
    {
        var path = P("a.oml-ledger");
        var (code, output, err) = Run("ledger", "init", "--ledger", path);
        Assert.True(code == 0, err);
        Assert.Matches("ledger id [0-9a-f]{32}", output);
        Assert.Contains("head      0 " + new string('0', 64), output);
        (code, _, err) = Run("ledger", "init", "--ledger", path);
        Assert.Equal(1, code);
        Assert.Contains("exists already", err);

        (code, output, err) = Run("ledger", "bench", "--ledger", path, "--events", "20", "--batch", "5", "--payload-bytes", "300", "--compare-nosync");
        Assert.True(code == 0, err);
        Assert.Contains("20 events, batch 5, payload 300 B", output);
        Assert.Contains("fsync off", output);
        Assert.Empty(Directory.GetFiles(_dir, "*nosync*"));

        (code, output, _) = Run("ledger", "head", "--ledger", path);
        Assert.Equal(0, code);
        var head = output.Trim().Split(' ');
        Assert.Equal("20", head[0]);
        Assert.Matches("^[0-9a-f]{64}$", head[1]);

        (code, output, _) = Run("ledger", "log", "--ledger", path, "--limit", "3");
        Assert.Equal(0, code);
        Assert.Equal(3, Lines(output).Length);
        Assert.StartsWith("0  ", Lines(output)[0]);
        Assert.Contains("bench/event", output);

        (code, output, _) = Run("ledger", "log", "--ledger", path, "--from", "18", "--json");
        Assert.Equal(0, code);
        var json = Lines(output).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal([18L, 19L], json.Select(j => j["seq"]!.GetValue<long>()));
        Assert.Equal(18, json[0]["payload"]!["seq"]!.GetValue<long>());
        Assert.Equal(head[1], json[1]["hash"]!.GetValue<string>());
        Assert.Equal(json[0]["hash"]!.GetValue<string>(), json[1]["prev"]!.GetValue<string>());
        using (var l = SqliteLedger.Open(path))
        {
            var e = l.Read(18).First();
            Assert.Equal(300, e.Payload.Length);
            Assert.Equal(LedgerHashing.ToHex(LedgerHashing.ComputeHash(e)), json[0]["hash"]!.GetValue<string>());
        }

        (code, output, _) = Run("ledger", "verify", "--ledger", path);
        Assert.Equal(0, code);
        Assert.Contains("intact: 20 events", output);
        (code, output, _) = Run("ledger", "verify", "--ledger", path, "--head", head[1]);
        Assert.Equal(0, code);
        Assert.Contains("is part of the chain", output);
        (code, output, _) = Run("ledger", "verify", "--ledger", path, "--head", new string('1', 64));
        Assert.Equal(1, code);
        Assert.Contains("TAMPERED", output);
        (code, _, err) = Run("ledger", "verify", "--ledger", path, "--head", "xyz");
        Assert.Equal(2, code);
        Assert.Contains("64 hex digits", err);
    }

    [Fact]
    public void VerifyReportsTampering()
    {
        var path = P("t.oml-ledger");
        Assert.Equal(0, Run("ledger", "bench", "--ledger", path, "--events", "10", "--batch", "10").Code);
        Batteries_V2.Init();
        Assert.Equal(raw.SQLITE_OK, raw.sqlite3_open_v2(path, out var db, raw.SQLITE_OPEN_READWRITE, null));
        using (db)
        {
            Assert.Equal(raw.SQLITE_OK, raw.sqlite3_exec(db, "DROP TRIGGER events_no_update"));
            Assert.Equal(raw.SQLITE_OK, raw.sqlite3_exec(db, "UPDATE events SET payload = CAST('{\"seq\":5,\"pad\":\"forged\"}' AS BLOB) WHERE seq = 5"));
        }
        var (code, output, _) = Run("ledger", "verify", "--ledger", path);
        Assert.Equal(1, code);
        Assert.Contains("TAMPERED", output);
        Assert.Contains("first bad event   5", output);
        Assert.Contains("events verified   5", output);
        Assert.Contains("contents of event 5", output);
    }

    [Fact]
    public void BadFilesAndArguments()
    {
        var (code, _, err) = Run("ledger", "verify", "--ledger", P("missing.oml-ledger"));
        Assert.Equal(1, code);
        Assert.Contains("no ledger", err);
        Assert.False(File.Exists(P("missing.oml-ledger")));

        File.WriteAllText(P("notes.txt"), "this is not a database, just some text that is long enough to have a header......");
        (code, _, err) = Run("ledger", "head", "--ledger", P("notes.txt"));
        Assert.Equal(1, code);
        Assert.Contains("not an oml ledger", err);

        (code, _, _) = Run("ledger", "bench", "--ledger", P("b.oml-ledger"), "--events", "0");
        Assert.Equal(2, code);
        (code, _, _) = Run("ledger", "log", "--ledger", P("b.oml-ledger"), "--from", "-1");
        Assert.Equal(2, code);
    }
}
