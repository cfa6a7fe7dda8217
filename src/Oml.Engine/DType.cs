namespace Oml.Engine;

/// <summary>Element types. The numeric values are the shim's codes (native/oml_torch.cpp).</summary>
public enum DType
{
    Float32 = 0,
    Float16 = 1,
    BFloat16 = 2,
    Int64 = 3,
    Int32 = 4,
    Bool = 5,
    UInt8 = 6,
    Float64 = 7,
    Int8 = 8,
    Int16 = 9,
}

public static class DTypeExtensions
{
    /// <summary>Size of one element in bytes.</summary>
    public static int ElementSize(this DType t) => t switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.Float16 or DType.BFloat16 or DType.Int16 => 2,
        DType.Int64 or DType.Float64 => 8,
        DType.Bool or DType.UInt8 or DType.Int8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    public static bool IsFloatingPoint(this DType t) =>
        t is DType.Float32 or DType.Float16 or DType.BFloat16 or DType.Float64;

    /// <summary>PyTorch's name for the type (float32, bfloat16, int64, ...).</summary>
    public static string Name(this DType t) => t switch
    {
        DType.Float32 => "float32",
        DType.Float16 => "float16",
        DType.BFloat16 => "bfloat16",
        DType.Int64 => "int64",
        DType.Int32 => "int32",
        DType.Bool => "bool",
        DType.UInt8 => "uint8",
        DType.Float64 => "float64",
        DType.Int8 => "int8",
        DType.Int16 => "int16",
        _ => t.ToString(),
    };

    /// <summary>Parses PyTorch-style names: float32/float/fp32, bfloat16/bf16, float16/half/fp16, int64/long, ...</summary>
    public static DType Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "float32" or "float" or "fp32" or "f32" => DType.Float32,
        "float16" or "half" or "fp16" or "f16" => DType.Float16,
        "bfloat16" or "bf16" => DType.BFloat16,
        "float64" or "double" or "fp64" or "f64" => DType.Float64,
        "int64" or "long" or "i64" => DType.Int64,
        "int32" or "int" or "i32" => DType.Int32,
        "int16" or "short" => DType.Int16,
        "int8" => DType.Int8,
        "uint8" or "byte" => DType.UInt8,
        "bool" => DType.Bool,
        _ => throw new ArgumentException($"unknown dtype '{name}' (expected float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8 or bool)", nameof(name)),
    };

    internal static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float32;
        if (typeof(T) == typeof(double)) return DType.Float64;
        if (typeof(T) == typeof(long)) return DType.Int64;
        if (typeof(T) == typeof(int)) return DType.Int32;
        if (typeof(T) == typeof(short)) return DType.Int16;
        if (typeof(T) == typeof(sbyte)) return DType.Int8;
        if (typeof(T) == typeof(byte)) return DType.UInt8;
        if (typeof(T) == typeof(bool)) return DType.Bool;
        if (typeof(T) == typeof(Half)) return DType.Float16;
        throw new NotSupportedException($"no tensor dtype for {typeof(T).Name}; bfloat16 data goes through float (Tensor.To(DType.BFloat16)) or raw bytes (Torch.FromBytes)");
    }
}
