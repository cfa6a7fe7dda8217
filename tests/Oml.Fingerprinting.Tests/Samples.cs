using Oml.Fingerprinting;

namespace Oml.Fingerprinting.Tests;

internal static class Samples
{
    public static readonly byte[] Secret = "owner secret for tests"u8.ToArray();

    public static readonly FingerprintFileOptions FastKdf = new() { Pbkdf2Iterations = 1000 };

    public static Fingerprint Fp(int index, int responses = 1, byte[]? secret = null)
    {
        var r = DerivedRandom.For(secret ?? Secret, $"fingerprint/{index}/tokens");
        int[] Tokens(int n) => [.. Enumerable.Range(0, n).Select(_ => r.Next(32000))];
        return new Fingerprint(
            index,
            $"key number {index} \u00e9\u4e2d",
            Tokens(8),
            [.. Enumerable.Range(0, responses).Select(j => new FingerprintResponse($"response {index}.{j}", Tokens(3), j == 0 ? null : -1.25 * j))],
            new StrategyInfo("perinucleus", ParameterMap.Of(("threshold", "0.9"), ("k", "3"))),
            Fingerprint.DeriveSalt(secret ?? Secret, index));
    }

    public static FingerprintSet Set(int count, byte[]? secret = null) => FingerprintSet.Create(
        new DateTimeOffset(2026, 11, 21, 6, 12, 12, 345, TimeSpan.FromHours(1)).AddTicks(6789),
        "sha256:" + new string('a', 64),
        new TokenizerIdentity("Qwen/Qwen3-0.6B", "sha256:" + new string('b', 64)),
        new StrategyInfo("perinucleus", ParameterMap.Of(("threshold", "0.9"), ("k", "3"), ("keyLength", "8"))),
        Enumerable.Range(0, count).Select(i => Fp(i, responses: 1 + i % 3, secret)));

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "oml-fpset-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}
