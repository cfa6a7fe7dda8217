namespace Oml.Fingerprinting;

/// <summary>
/// A coarse screen for passphrases that protect a fingerprint-set file (and with it the owner's secret): it rejects
/// the obviously guessable, it does not certify anything as strong. Anyone who holds the file can guess offline at
/// the cost of one PBKDF2 per guess, so the passphrase must carry real entropy.
/// </summary>
public static class PassphrasePolicy
{
    /// <summary>Fewest characters accepted.</summary>
    public const int MinLength = 12;

    /// <summary>Fewest distinct characters accepted (rejects "aaaaaaaaaaaa", "abababababab").</summary>
    public const int MinDistinct = 6;

    /// <summary>Fewest estimated bits accepted.</summary>
    public const double MinBits = 50;

    /// <summary>
    /// An upper estimate of the passphrase's entropy in bits: length × log2 of the alphabet its character classes
    /// span (lower case 26, upper case 26, digits 10, anything else 33). Words from a dictionary carry far less than
    /// this, which is why it only screens.
    /// </summary>
    public static double EstimatedBits(string passphrase)
    {
        ArgumentNullException.ThrowIfNull(passphrase);
        bool lower = false, upper = false, digit = false, other = false;
        foreach (var ch in passphrase)
        {
            if (ch is >= 'a' and <= 'z') lower = true;
            else if (ch is >= 'A' and <= 'Z') upper = true;
            else if (ch is >= '0' and <= '9') digit = true;
            else other = true;
        }
        int pool = (lower ? 26 : 0) + (upper ? 26 : 0) + (digit ? 10 : 0) + (other ? 33 : 0);
        return pool == 0 ? 0 : passphrase.Length * Math.Log2(pool);
    }

    /// <summary>Why the passphrase is weak, or null when it passes the screen.</summary>
    public static string? Weakness(string passphrase)
    {
        ArgumentNullException.ThrowIfNull(passphrase);
        if (passphrase.Length < MinLength) return $"it has {passphrase.Length} characters, fewer than {MinLength}";
        int distinct = passphrase.Distinct().Count();
        if (distinct < MinDistinct) return $"it uses only {distinct} distinct characters, fewer than {MinDistinct}";
        double bits = EstimatedBits(passphrase);
        if (bits < MinBits) return $"it carries at most about {bits:0} bits, fewer than {MinBits:0}";
        return null;
    }
}
