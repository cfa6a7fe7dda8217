namespace Oml.Fingerprinting;

/// <summary>A fingerprint-set file could not be read. The subclasses say why.</summary>
public abstract class FingerprintFileException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The file is not a fingerprint-set file, or it was truncated, damaged or modified: a checksum or the AES-GCM
/// authentication failed although the passphrase was right, or the content is malformed.
/// </summary>
public sealed class CorruptFingerprintFileException(string message, Exception? inner = null)
    : FingerprintFileException(message, inner);

/// <summary>The passphrase does not match the one the file was written with (the header's key-check value differs).</summary>
public sealed class WrongPassphraseException(string message) : FingerprintFileException(message);

/// <summary>The file is encrypted and no passphrase was given.</summary>
public sealed class PassphraseRequiredException(string message) : FingerprintFileException(message);

/// <summary>The file is intact but written in a format version this build does not read.</summary>
public sealed class UnsupportedFingerprintFileVersionException(string message) : FingerprintFileException(message);
