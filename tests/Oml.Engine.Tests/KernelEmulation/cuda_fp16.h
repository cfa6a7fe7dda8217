// float16 for the emulation (KernelEmulationTests): the compiler's _Float16, rounded to nearest even.
#pragma once
struct __half { _Float16 v; };
inline float __half2float(__half h) { return static_cast<float>(h.v); }
inline __half __float2half_rn(float f) { return {static_cast<_Float16>(f)}; }
