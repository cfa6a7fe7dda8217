using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models.Tests;

/// <summary>Tensors of 2 GiB and more (a 70B model's embedding in bf16, an 8B one's in fp32) through safetensors and hashing.</summary>
public sealed class LargeTensorIOTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("oml-large-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    [Fact]
    public void Chunks_concatenate_to_the_whole_tensor()
    {
        using var t = Torch.Arange(0, 1000, 1, DType.Float32).Reshape(10, 100);
        var whole = t.ToBytes();
        var pieces = new List<byte>();
        t.ForEachByteChunk(s => pieces.AddRange(s.ToArray()), chunkBytes: 44);   // 11 floats per piece, last one short
        Assert.Equal(whole, pieces.ToArray());
        var ms = new MemoryStream();
        t.WriteBytes(ms);
        Assert.Equal(whole, ms.ToArray());
    }

    [Fact]
    public void A_tensor_over_2_GiB_is_saved_and_loaded()
    {
        // 2^31 + 8 bytes of uint8: one more element than an int-sized span can hold.
        long n = (1L << 31) + 8;
        string path = Path.Combine(_tmp, "big.safetensors");
        var marks = new[] { 0L, 250, (1L << 31) - 1, 1L << 31, n - 1 };
        using (var big = Torch.Zeros([n], DType.UInt8))
        {
            foreach (long i in marks)
                using (var x = big.Narrow(0, i, 1)) x.Fill(1 + i % 251);
            Safetensors.Save(path, [new("w", big)]);
        }
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(n, f.Entry("w").ByteLength);
        Assert.Throws<InvalidOperationException>(() => f.Bytes("w").Length);
        using var loaded = f.Load("w");
        Assert.Equal(n, loaded.NumEl);
        foreach (long i in marks)
            using (var x = loaded.Narrow(0, i, 1)) Assert.Equal(1 + i % 251, x.ToInt64());
        using (var between = loaded.Narrow(0, (1L << 31) - 2, 1)) Assert.Equal(0, between.ToInt64());
    }
}
