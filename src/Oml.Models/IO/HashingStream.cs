using System.Security.Cryptography;

namespace Oml.Models.IO;

/// <summary>
/// A write-only stream that passes every byte to an inner stream and to a hash, so that a file's digest comes from the
/// bytes as they are written instead of reading the file back. Writes of <see cref="ParallelBytes"/> or more are hashed
/// on a worker thread while the inner stream writes them, so the pair runs at the slower of the two rather than their sum.
/// </summary>
public sealed class HashingStream : Stream
{
    /// <summary>Writes at least this long are hashed on another thread, overlapped with the write.</summary>
    public const int ParallelBytes = 1 << 20;

    private readonly Stream _inner;
    private readonly IncrementalHash _hash;
    private long _length;

    public HashingStream(Stream inner, IncrementalHash hash)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(hash);
        _inner = inner;
        _hash = hash;
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => _length;
    public override long Position { get => _length; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override unsafe void Write(ReadOnlySpan<byte> buffer)
    {
        if (buffer.Length < ParallelBytes)
        {
            _hash.AppendData(buffer);
            _inner.Write(buffer);
        }
        else
        {
            fixed (byte* p = buffer)
            {
                // The span stays pinned and unchanged until both readers are done with it.
                nint address = (nint)p;
                int length = buffer.Length;
                var hashing = Task.Run(() => _hash.AppendData(new ReadOnlySpan<byte>((void*)address, length)));
                try
                {
                    _inner.Write(buffer);
                }
                finally
                {
                    hashing.GetAwaiter().GetResult();
                }
            }
        }
        _length += buffer.Length;
    }

    public override void WriteByte(byte value) => Write([value]);
    public override void Flush() => _inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
