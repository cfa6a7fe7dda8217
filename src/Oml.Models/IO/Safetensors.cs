using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using Oml.Engine;

namespace Oml.Models.IO;

/// <summary>Where one tensor lies in a safetensors file: its dtype, shape and byte range within the data section.</summary>
public sealed record TensorEntry(string Name, DType DType, long[] Shape, long Begin, long End)
{
    public long NumEl => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
}

/// <summary>
/// A safetensors file opened read-only through a memory map: the header is parsed and checked up front, and each
/// tensor is copied straight from the mapped pages into libtorch memory when loaded, so loading a model never holds
/// a second full copy of the weights in process memory.
/// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
/// "__metadata__": {string: string}}, then the data section that the offsets index.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L << 20;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, long dataStart,
        Dictionary<string, TensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        _dataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
    }

    /// <summary>Opens and validates a safetensors file. Throws <see cref="InvalidDataException"/> naming what is wrong.</summary>
    public static SafetensorsFile Open(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        long length = info.Length;
        if (length < 8) throw new InvalidDataException($"{path}: {length} bytes is too short for a safetensors file (no 8-byte header length)");

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            long headerLen = BitConverter.ToInt64(new ReadOnlySpan<byte>(p, 8));
            if (headerLen <= 0 || headerLen > length - 8)
                throw new InvalidDataException($"{path}: header length {headerLen} does not fit in a file of {length} bytes (truncated or not a safetensors file)");
            if (headerLen > MaxHeaderBytes)
                throw new InvalidDataException($"{path}: header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit");
            var (entries, metadata) = ParseHeader(path, new ReadOnlySpan<byte>(p + 8, checked((int)headerLen)), length - 8 - headerLen);
            return new SafetensorsFile(path, map, view, p, 8 + headerLen, entries, metadata);
        }
        catch
        {
            if (view != null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            map.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, TensorEntry>, Dictionary<string, string>) ParseHeader(string path, ReadOnlySpan<byte> json, long dataLength)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray());
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: the header is not valid JSON ({e.Message})");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: the header is not a JSON object");
            var entries = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: __metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                entries[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
            }
            // Byte ranges must not overlap.
            var sorted = entries.Values.Where(e => e.ByteLength > 0).OrderBy(e => e.Begin).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Begin < sorted[i - 1].End)
                    throw new InvalidDataException($"{path}: tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap in the data section");
            return (entries, metadata);
        }
    }

    private static TensorEntry ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string Where() => $"{path}: tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{Where()}: entry is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{Where()}: missing dtype");
        var dtype = ParseDType(dt.GetString()!) ?? throw new InvalidDataException($"{Where()}: unsupported dtype '{dt.GetString()}' (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{Where()}: missing shape");
        var shape = new long[sh.GetArrayLength()];
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw new InvalidDataException($"{Where()}: bad dimension {d.GetRawText()} in shape");
            shape[k++] = v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new InvalidDataException($"{Where()}: missing data_offsets [begin, end]");
        if (!off[0].TryGetInt64Checked(out long begin) || !off[1].TryGetInt64Checked(out long end))
            throw new InvalidDataException($"{Where()}: data_offsets {off.GetRawText()} are not two integers");
        if (begin < 0 || end < begin || end > dataLength)
            throw new InvalidDataException($"{Where()}: data_offsets [{begin}, {end}] lie outside the {dataLength}-byte data section (truncated file?)");
        var entry = new TensorEntry(name, dtype, shape, begin, end);
        long need;
        try { need = checked(shape.Aggregate(1L, (a, b) => checked(a * b)) * dtype.ElementSize()); }
        catch (OverflowException) { throw new InvalidDataException($"{Where()}: shape [{string.Join(", ", shape)}] has more elements than any file can hold"); }
        if (need != entry.ByteLength)
            throw new InvalidDataException($"{Where()}: shape [{string.Join(", ", shape)}] of {dtype.Name()} needs {need} bytes but data_offsets give {entry.ByteLength}");
        return entry;
    }

    public static DType? ParseDType(string s) => s switch
    {
        "F32" => DType.Float32,
        "F16" => DType.Float16,
        "BF16" => DType.BFloat16,
        "F64" => DType.Float64,
        "I64" => DType.Int64,
        "I32" => DType.Int32,
        "I16" => DType.Int16,
        "I8" => DType.Int8,
        "U8" => DType.UInt8,
        "BOOL" => DType.Bool,
        _ => null,
    };

    public static string DTypeCode(DType t) => t switch
    {
        DType.Float32 => "F32",
        DType.Float16 => "F16",
        DType.BFloat16 => "BF16",
        DType.Float64 => "F64",
        DType.Int64 => "I64",
        DType.Int32 => "I32",
        DType.Int16 => "I16",
        DType.Int8 => "I8",
        DType.UInt8 => "U8",
        DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "no safetensors code"),
    };

    /// <summary>The stored bytes of a tensor, valid while this file is open.</summary>
    /// <exception cref="InvalidOperationException">the tensor has 2 GiB or more, which no span holds (use <see cref="Load"/>).</exception>
    public ReadOnlySpan<byte> Bytes(string name)
    {
        ObjectDisposedException.ThrowIf(_view is null, this);
        var e = Entry(name);
        if (e.ByteLength > int.MaxValue)
            throw new InvalidOperationException($"{Path}: tensor '{name}' has {e.ByteLength} bytes, more than a span holds; load it with Load");
        return new ReadOnlySpan<byte>(_base + _dataStart + e.Begin, (int)e.ByteLength);
    }

    public TensorEntry Entry(string name) =>
        Entries.TryGetValue(name, out var e) ? e : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

    /// <summary>Copies one tensor into libtorch memory on <paramref name="device"/>, optionally converting its dtype.</summary>
    public Tensor Load(string name, Device? device = null, DType? dtype = null)
    {
        ObjectDisposedException.ThrowIf(_view is null, this);
        var e = Entry(name);
        var t = Torch.FromBytes(_base + _dataStart + e.Begin, e.ByteLength, e.Shape, e.DType, device);
        if (dtype is { } d && d != e.DType)
        {
            var c = t.To(d);
            t.Dispose();
            return c;
        }
        return t;
    }

    /// <summary>
    /// Copies elements [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of a tensor,
    /// flattened in row-major order, into a new 1-d tensor on <paramref name="device"/>, optionally converting its
    /// dtype: only those bytes are read from the file (a rank of a weight-sharded model reads its slices this way).
    /// </summary>
    public Tensor LoadSlice(string name, long start, long count, Device? device = null, DType? dtype = null)
    {
        ObjectDisposedException.ThrowIf(_view is null, this);
        var e = Entry(name);
        if (start < 0 || count < 0 || start + count > e.NumEl)
            throw new ArgumentOutOfRangeException(nameof(count), $"{Path}: elements [{start}, {start + count}) of '{name}', which has {e.NumEl}");
        long size = e.DType.ElementSize();
        var t = Torch.FromBytes(_base + _dataStart + e.Begin + start * size, count * size, [count], e.DType, device);
        if (dtype is { } d && d != e.DType)
        {
            var c = t.To(d);
            t.Dispose();
            return c;
        }
        return t;
    }

    public void Dispose()
    {
        if (_view is null) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Writes safetensors files.</summary>
public static class Safetensors
{
    /// <summary>
    /// Writes tensors to <paramref name="path"/> atomically (a temporary file in the same folder, then a rename), with
    /// <c>{"format": "pt"}</c> metadata unless other metadata is given. Tensors are laid out by element size (largest
    /// first, so every tensor is aligned to its element size) and then by name, with the header padded with spaces to
    /// a multiple of 8 bytes, as the reference implementation does.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(path, tensors, metadata, hash: null);

    /// <summary>
    /// <see cref="Save(string, IEnumerable{KeyValuePair{string, Tensor}}, IReadOnlyDictionary{string, string}?)"/>, with
    /// every byte of the file also appended to <paramref name="hash"/> (when given) as it is written, hashed on another
    /// thread while the tensor data are written (<see cref="HashingStream"/>).
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata,
        System.Security.Cryptography.IncrementalHash? hash)
    {
        var list = tensors.ToList();
        var dup = list.GroupBy(t => t.Key).FirstOrDefault(g => g.Count() > 1);
        if (dup != null) throw new ArgumentException($"tensor name '{dup.Key}' appears twice", nameof(tensors));
        var byName = list.ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        var layout = Layout(list.Select(t => new TensorSpec(t.Key, t.Value.DType, t.Value.Shape)));
        Save(path, layout, layout.Select(s => byName[s.Name]), metadata, hash);
    }

    /// <summary>
    /// The order <see cref="Save(string, IEnumerable{KeyValuePair{string, Tensor}}, IReadOnlyDictionary{string, string}?)"/>
    /// lays tensors out in: by element size, largest first, then by name.
    /// </summary>
    public static IReadOnlyList<TensorSpec> Layout(IEnumerable<TensorSpec> tensors) =>
        tensors.OrderByDescending(t => t.DType.ElementSize()).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();

    /// <summary>
    /// Streams a safetensors file: the header is written from <paramref name="layout"/> (names, dtypes and shapes, in
    /// the order of <see cref="Layout"/>), then each tensor of <paramref name="data"/>, which must produce them in that
    /// order with those dtypes and shapes; each is written as soon as it is produced, so a producer can free (or
    /// compute) one at a time. Atomic as the other overloads; every byte is appended to <paramref name="hash"/> when given.
    /// </summary>
    public static void Save(string path, IReadOnlyList<TensorSpec> layout, IEnumerable<Tensor> data, IReadOnlyDictionary<string, string>? metadata,
        System.Security.Cryptography.IncrementalHash? hash)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(data);
        using var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            foreach (var (k, v) in metadata ?? new Dictionary<string, string> { ["format"] = "pt" }) w.WriteString(k, v);
            w.WriteEndObject();
            long offset = 0;
            foreach (var t in layout)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", SafetensorsFile.DTypeCode(t.DType));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.Bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.Bytes;
            }
            w.WriteEndObject();
        }
        var headerBytes = header.ToArray().ToList();
        while ((8 + headerBytes.Count) % 8 != 0) headerBytes.Add((byte)' ');

        AtomicFile.Write(path, file =>
        {
            using var hashing = hash is null ? null : new HashingStream(file, hash);
            var stream = hashing ?? file;
            stream.Write(BitConverter.GetBytes((long)headerBytes.Count));
            stream.Write(headerBytes.ToArray());
            int k = 0;
            IEnumerable<Tensor> Checked()
            {
                foreach (var t in data)
                {
                    if (k >= layout.Count) throw new InvalidOperationException($"{path}: more tensors than the {layout.Count} of the header");
                    var spec = layout[k++];
                    if (t.DType != spec.DType || !t.Shape.SequenceEqual(spec.Shape))
                        throw new InvalidOperationException($"{path}: tensor '{spec.Name}' is {t.DType.Name()} [{string.Join(", ", t.Shape)}], the header says {spec.DType.Name()} [{string.Join(", ", spec.Shape)}]");
                    yield return t;
                }
            }
            WriteData(stream, Checked());
            if (k != layout.Count) throw new InvalidOperationException($"{path}: {k} tensors for the {layout.Count} of the header");
        });
    }

    /// <summary>The largest piece of a tensor copied to the host at a time (and so each of the two staging buffers).</summary>
    public const long PieceBytes = 256L << 20;

    /// <summary>
    /// Writes the tensors' bytes to <paramref name="stream"/> in order, pipelined: while one piece (at most
    /// <paramref name="pieceBytes"/>) is written (and, through a <see cref="HashingStream"/>, hashed), the next is copied
    /// from the device into the other of two native staging buffers. Each byte is copied once from the tensor into a
    /// buffer and written from there: no managed array, no intermediate host tensor. <paramref name="tensors"/> is
    /// enumerated lazily, one tensor ahead of the write and on a worker thread (so a producer that computes or gathers
    /// its tensors overlaps with the writing); a tensor is not used again once the enumeration has moved past it.
    /// </summary>
    public static unsafe void WriteData(Stream stream, IEnumerable<Tensor> tensors, long pieceBytes = PieceBytes)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfLessThan(pieceBytes, 1);
        using var pieces = Pieces(tensors, pieceBytes).GetEnumerator();
        var buffers = new nint[2];
        var sizes = new long[2];
        Task<long>? pending = null;
        try
        {
            if (!pieces.MoveNext()) return;
            long bytes = FillInto(0);
            for (int k = 0; ; k++)
            {
                int slot = k & 1;
                pending = Task.Run(() => pieces.MoveNext() ? FillInto(slot ^ 1) : -1);
                stream.Write(new ReadOnlySpan<byte>((void*)buffers[slot], checked((int)bytes)));
                var next = pending;
                pending = null;
                bytes = next.GetAwaiter().GetResult();
                if (bytes < 0) break;
            }
        }
        finally
        {
            // A failed write must not free a buffer that the copy of the next piece is still filling.
            try { pending?.Wait(); } catch (AggregateException) { }
            foreach (var b in buffers)
                if (b != 0) System.Runtime.InteropServices.NativeMemory.Free((void*)b);
        }

        // Copies the enumerator's current piece into staging buffer `slot` (grown when too small); returns its size.
        long FillInto(int slot)
        {
            var piece = pieces.Current;
            if (sizes[slot] < piece.Bytes)
            {
                if (buffers[slot] != 0) System.Runtime.InteropServices.NativeMemory.Free((void*)buffers[slot]);
                buffers[slot] = 0;
                buffers[slot] = (nint)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)piece.Bytes);
                sizes[slot] = piece.Bytes;
            }
            Fill(piece, buffers[slot]);
            return piece.Bytes;
        }

        static IEnumerable<(Tensor Tensor, long Start, long Count, long Bytes)> Pieces(IEnumerable<Tensor> tensors, long pieceBytes)
        {
            foreach (var t in tensors)
            {
                int size = t.DType.ElementSize();
                long n = t.NumEl, per = Math.Max(1, Math.Min(pieceBytes, int.MaxValue) / size);
                for (long start = 0; start < n; start += per)
                    yield return (t, start, Math.Min(per, n - start), Math.Min(per, n - start) * size);
            }
        }

        static void Fill((Tensor Tensor, long Start, long Count, long Bytes) piece, nint into)
        {
            var (t, start, count, bytes) = piece;
            if (start == 0 && count == t.NumEl)
            {
                t.CopyBytesTo((byte*)into, bytes);
                return;
            }
            using var flat = t.Reshape(-1);
            using var part = flat.Narrow(0, start, count);
            part.CopyBytesTo((byte*)into, bytes);
        }
    }
}

/// <summary>A tensor to be written: its name, dtype and shape, known before its data.</summary>
public sealed record TensorSpec(string Name, DType DType, long[] Shape)
{
    public long NumEl => Shape.Aggregate(1L, (a, b) => a * b);
    public long Bytes => NumEl * DType.ElementSize();
}

internal static class JsonElementExtensions
{
    /// <summary>An integer JSON number as a long; false for any other kind of value or a number that is not a 64-bit integer.</summary>
    public static bool TryGetInt64Checked(this JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value);
    }
}
