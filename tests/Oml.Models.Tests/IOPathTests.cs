using System.Security.Cryptography;
using Oml.Engine;
using Oml.Models.IO;

namespace Oml.Models.Tests;

/// <summary>The faster I/O and decoding paths give what the plain ones give: digests of saved weights, greedy answers.</summary>
public sealed class IOPathTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("oml-io-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    /// <summary>The digest hashed while saving is the one read back from the files, single file and sharded.</summary>
    [Theory]
    [InlineData("llama-tiny", 4L << 30)]
    [InlineData("qwen3-tiny-bf16", 4L << 30)]
    [InlineData("llama-tiny", 40_000)]
    public void The_digest_hashed_while_saving_equals_the_digest_read_back(string name, long shardBytes)
    {
        using var model = ModelFolder.Load(Fixtures.Model(name));
        var outDir = Path.Combine(_tmp, name + shardBytes);
        var digest = ModelFolder.SaveWithDigest(model, outDir, Fixtures.Model(name), shardBytes);
        if (shardBytes < 1 << 20) Assert.True(ModelFolder.WeightFiles(outDir).Count > 2);
        Assert.StartsWith("sha256:", digest, StringComparison.Ordinal);
        Assert.Equal(ModelFolder.WeightsDigest(outDir), digest);
        // And that is SHA-256 over the files' bytes in name order.
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in ModelFolder.WeightFiles(outDir).Order(StringComparer.Ordinal)) h.AppendData(File.ReadAllBytes(f));
        Assert.Equal("sha256:" + Convert.ToHexStringLower(h.GetHashAndReset()), digest);
    }

    /// <summary>
    /// The pipelined writer (two native staging buffers, the next piece copied while this one is written) writes exactly
    /// the bytes of each tensor in order, for pieces smaller than one element row, tensors cut mid-row, dtypes converted
    /// nowhere, non-contiguous views, and empty tensors.
    /// </summary>
    [Theory]
    [InlineData(4L)]
    [InlineData(36L)]
    [InlineData(1000L)]
    [InlineData(256L << 20)]
    public void Pipelined_tensor_writes_equal_the_tensors_bytes(long pieceBytes)
    {
        using var a = Torch.Arange(0, 37, dtype: DType.Float32).Reshape(37);
        using var bBase = Torch.Arange(0, 60, dtype: DType.BFloat16).Reshape(6, 10);
        using var b = bBase.Transpose(0, 1);                          // non-contiguous
        using var c = Torch.Arange(0, 9, dtype: DType.Int64).Reshape(3, 3);
        using var e = Torch.Full([0, 4], 0.0, DType.Float16);
        using var f = Torch.Full([1], 2.5, DType.Float64);
        var tensors = new[] { a, b, e, c, f };
        using var written = new MemoryStream();
        Safetensors.WriteData(written, tensors, pieceBytes);
        var expected = tensors.SelectMany(t => t.ToBytes()).ToArray();
        Assert.Equal(expected, written.ToArray());
    }

    /// <summary>A copy into native memory refuses a destination of the wrong size instead of writing past it.</summary>
    [Fact]
    public unsafe void Copying_bytes_to_native_memory_checks_the_length()
    {
        using var t = Torch.Arange(0, 10, dtype: DType.Float32);
        var buffer = new byte[40];
        fixed (byte* p = buffer)
        {
            nint address = (nint)p;
            Assert.ThrowsAny<Exception>(() => t.CopyBytesTo((byte*)address, 39));
            t.CopyBytesTo(p, 40);
        }
        Assert.Equal(t.ToBytes(), buffer);
    }

    /// <summary>Large writes are hashed on another thread: bytes and hash equal a plain write's, whatever the write sizes.</summary>
    [Fact]
    public void A_hashing_stream_writes_and_hashes_every_byte_in_order()
    {
        var rng = new Random(3);
        var data = new byte[5 * HashingStream.ParallelBytes + 12345];
        rng.NextBytes(data);
        using var target = new MemoryStream();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var s = new HashingStream(target, hash))
        {
            int at = 0;
            foreach (int n in new[] { 1, 7, HashingStream.ParallelBytes, 100, 2 * HashingStream.ParallelBytes + 5 })
            {
                s.Write(data, at, n);
                at += n;
            }
            s.WriteByte(data[at++]);
            s.Write(data.AsSpan(at));
            Assert.Equal(data.Length, s.Length);
        }
        Assert.Equal(data, target.ToArray());
        Assert.Equal(SHA256.HashData(data), hash.GetHashAndReset());
    }

    /// <summary>
    /// Greedy answers with the head on the last position only (and no mask for unpadded prompts, no cache for one token)
    /// equal a plain loop that computes every position's logits through the masked forward pass.
    /// </summary>
    [Theory]
    [InlineData("qwen2-tiny", 1)]
    [InlineData("qwen2-tiny", 5)]
    [InlineData("llama-tiny", 1)]
    [InlineData("llama-tiny", 4)]
    public void Greedy_answers_equal_those_of_full_logits(string name, int newTokens)
    {
        using var model = ModelFolder.Load(Fixtures.Model(name));
        var rng = new Random(newTokens);
        foreach (bool sameLength in new[] { true, false })
        {
            var prompts = Enumerable.Range(0, 6).Select(i => Enumerable.Range(0, sameLength ? 9 : 3 + i).Select(_ => rng.Next(3, 500)).ToArray()).ToList();
            var fast = Generator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = newTokens, EosTokenIds = [] });
            for (int i = 0; i < prompts.Count; i++)
            {
                // Plain: the whole sequence again at every step, logits at every position, the last one's argmax.
                var seq = prompts[i].ToList();
                for (int step = 0; step < newTokens; step++)
                {
                    using var noGrad = Torch.NoGrad();
                    using var scope = Torch.NewScope();
                    var ids = Torch.FromArray<long>(seq.Select(x => (long)x).ToArray(), [1, seq.Count]);
                    var logits = model.Forward(ids, Torch.Ones([1, seq.Count], DType.Int64));
                    seq.Add((int)logits.Select(1, seq.Count - 1).ArgMax(-1).ToArray<long>()[0]);
                }
                Assert.Equal(seq.Skip(prompts[i].Length), fast.Sequences[i].OutputIds);
            }
            // Next-token logits: the last position's, as the full forward pass gives them.
            using (Torch.NoGrad())
            using (Torch.NewScope())
            {
                var next = Generator.NextTokenLogits(model, prompts.Select(p => (IReadOnlyList<int>)p).ToList()).To(DType.Float32);
                for (int i = 0; i < prompts.Count; i++)
                {
                    var ids = Torch.FromArray<long>(prompts[i].Select(x => (long)x).ToArray(), [1, prompts[i].Length]);
                    var full = model.Forward(ids, Torch.Ones([1, prompts[i].Length], DType.Int64)).Select(1, prompts[i].Length - 1).To(DType.Float32).Flatten().ToArray<float>();
                    var got = next.Select(0, i).ToArray<float>();
                    for (int v = 0; v < full.Length; v++) Assert.Equal(full[v], got[v], 1e-4);
                }
            }
        }
    }
}
