using System.Text;

namespace Oml.Models.Tokenizers;

/// <summary>
/// Canonical Unicode normalization (NFC and NFD) from the tables in <see cref="UnicodeNormalizationData"/>: the
/// project runs with InvariantGlobalization, where <see cref="string.Normalize()"/> leaves text unchanged.
/// </summary>
internal static class UnicodeNormalization
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<int, byte> CombiningClass = BuildCcc();
    private static readonly Dictionary<int, (int First, int Second)> Decomposition = BuildDecompositions();
    private static readonly Dictionary<long, int> Composition = BuildCompositions();

    private static Dictionary<int, byte> BuildCcc()
    {
        var d = new Dictionary<int, byte>();
        var r = UnicodeNormalizationData.CombiningClassRanges;
        for (var i = 0; i < r.Length; i += 3)
            for (var cp = r[i]; cp <= r[i + 1]; cp++) d[cp] = (byte)r[i + 2];
        return d;
    }

    private static Dictionary<int, (int, int)> BuildDecompositions()
    {
        var d = new Dictionary<int, (int, int)>();
        var r = UnicodeNormalizationData.Decompositions;
        for (var i = 0; i < r.Length; i += 3) d[r[i]] = (r[i + 1], r[i + 2]);
        return d;
    }

    private static Dictionary<long, int> BuildCompositions()
    {
        var d = new Dictionary<long, int>();
        var r = UnicodeNormalizationData.Compositions;
        for (var i = 0; i < r.Length; i += 3) d[Key(r[i], r[i + 1])] = r[i + 2];
        return d;
    }

    private static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    private static int Ccc(int cp) => cp < 0x300 ? 0 : CombiningClass.TryGetValue(cp, out var c) ? c : 0;

    /// <summary>NFC (<paramref name="compose"/>) or NFD of <paramref name="s"/>; lone surrogates pass through.</summary>
    public static string Normalize(string s, bool compose)
    {
        // Below U+00C0 nothing decomposes, and below U+0300 nothing composes with what precedes it; such a character
        // (combining class 0) is a boundary that normalization never reaches across. So only the runs of characters at
        // or above the limit, each with the one character before it (it may compose with the run), are normalized;
        // the rest is copied. A mostly-ASCII document with a few curly quotes costs a few short slices, not a rebuild.
        var below = (char)((compose ? '\u0300' : '\u00C0') - 1);
        var first = s.AsSpan().IndexOfAnyExceptInRange('\0', below);
        if (first < 0) return s;
        StringBuilder? sb = null;
        var copied = 0;
        var i = first;
        while (true)
        {
            var start = Math.Max(i - 1, copied);
            var runLength = s.AsSpan(i).IndexOfAnyInRange('\0', below);
            var end = runLength < 0 ? s.Length : i + runLength;
            var segment = s.Substring(start, end - start);
            var normalized = NormalizeAll(segment, compose);
            if (!ReferenceEquals(normalized, segment))
            {
                sb ??= new StringBuilder(s.Length + 16);
                sb.Append(s, copied, start - copied).Append(normalized);
                copied = end;
            }
            if (end >= s.Length) break;
            var next = s.AsSpan(end).IndexOfAnyExceptInRange('\0', below);
            if (next < 0) break;
            i = end + next;
        }
        if (sb == null) return s;
        sb.Append(s, copied, s.Length - copied);
        return sb.ToString();
    }

    private static string NormalizeAll(string s, bool compose)
    {
        var cps = new List<int>(s.Length + 8);
        for (var k = 0; k < s.Length; k++)
        {
            var c = s[k];
            if (char.IsHighSurrogate(c) && k + 1 < s.Length && char.IsLowSurrogate(s[k + 1]))
            {
                Decompose(char.ConvertToUtf32(c, s[k + 1]), cps);
                k++;
            }
            else Decompose(c, cps);
        }
        Reorder(cps);
        if (compose) Compose(cps);

        var sb = new StringBuilder(cps.Count + 4);
        foreach (var cp in cps)
        {
            if (cp < 0x10000) sb.Append((char)cp);
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        var result = sb.ToString();
        return result == s ? s : result;
    }

    private static void Decompose(int cp, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            var sIndex = cp - SBase;
            output.Add(LBase + sIndex / NCount);
            output.Add(VBase + sIndex % NCount / TCount);
            var t = TBase + sIndex % TCount;
            if (t != TBase) output.Add(t);
            return;
        }
        if (cp >= 0xC0 && Decomposition.TryGetValue(cp, out var d))
        {
            Decompose(d.First, output);
            if (d.Second >= 0) Decompose(d.Second, output);
            return;
        }
        output.Add(cp);
    }

    /// <summary>Canonical ordering: a stable sort by combining class within each run of non-starters.</summary>
    private static void Reorder(List<int> cps)
    {
        for (var i = 1; i < cps.Count; i++)
        {
            var c = Ccc(cps[i]);
            if (c == 0) continue;
            var j = i;
            var cp = cps[i];
            while (j > 0 && Ccc(cps[j - 1]) > c)
            {
                cps[j] = cps[j - 1];
                j--;
            }
            cps[j] = cp;
        }
    }

    private static void Compose(List<int> cps)
    {
        var output = 0;
        var starter = -1;
        var lastCcc = 0;
        for (var i = 0; i < cps.Count; i++)
        {
            var cp = cps[i];
            var c = Ccc(cp);
            if (starter >= 0)
            {
                var adjacent = output - 1 == starter;
                if ((adjacent || (lastCcc != 0 && lastCcc < c)) && TryCompose(cps[starter], cp, out var composite))
                {
                    cps[starter] = composite;
                    continue;
                }
            }
            if (c == 0) starter = output;
            lastCcc = c;
            cps[output++] = cp;
        }
        cps.RemoveRange(output, cps.Count - output);
    }

    private static bool TryCompose(int a, int b, out int composite)
    {
        if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
        {
            composite = SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
            return true;
        }
        if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
        {
            composite = a + (b - TBase);
            return true;
        }
        return Composition.TryGetValue(Key(a, b), out composite);
    }
}
