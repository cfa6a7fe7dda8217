// oml_kernels: fused CUDA kernels for the decoder's memory-bound pieces (RMSNorm, rotary embeddings, SwiGLU), forward
// and backward. Built by native/build.sh with nvcc where one is found and linked into liboml_torch.so; the shim wraps
// each pair in an autograd function (oml_torch.cpp, "fused kernels") and falls back to the composite libtorch ops
// everywhere else (CPU, no nvcc, OML_FUSED_KERNELS=0).
//
// Why: in eager libtorch each of these pieces is 3-10 elementwise kernels that read and write the activations in
// float32, and their backward passes as many again; for a 100M-parameter Llama at hidden 768 they move more bytes than
// the matrix products need time. One kernel each way reads its inputs once and writes its outputs once.
//
// Numerics: the forward passes reproduce the composite ops' roundings (each composite op computes in float32 and
// rounds to the tensor's dtype): RoPE and SwiGLU forward are bit-identical to them, RMSNorm up to the order of the
// float32 sum of squares. The backward passes round where the composite's would, except inside RMSNorm's.
//
// No libtorch headers here (nvcc then compiles this file in seconds); the C launchers take raw pointers, sizes and
// the stream, and the dtype code of Oml.Engine.DType: 0 float32, 1 float16, 2 bfloat16.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

// Kernel launches and dynamic shared memory go through these two macros so that the same file compiles for the CPU
// under OML_KERNELS_EMULATED (tests/Oml.Engine.Tests/KernelEmulation: each block's threads as OS threads, which is how
// the CPU test suite checks these kernels where no GPU is).
#ifndef OML_KERNELS_EMULATED
#define OML_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#define OML_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace {

template <typename T> struct Io;
template <> struct Io<float> {
  static __device__ __forceinline__ float load(const float* p) { return *p; }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <> struct Io<__half> {
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
  static __device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
};
template <> struct Io<__nv_bfloat16> {
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
};

// A float32 value rounded to T and back (what storing an intermediate result in a T tensor does).
template <typename T> __device__ __forceinline__ float rnd(float v);
template <> __device__ __forceinline__ float rnd<float>(float v) { return v; }
template <> __device__ __forceinline__ float rnd<__half>(float v) { return __half2float(__float2half_rn(v)); }
template <> __device__ __forceinline__ float rnd<__nv_bfloat16>(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// Products and sums without contraction into fused multiply-adds, as separate composite kernels compute them.
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < warps; w++) total += shared[w];
  return total;
}

// ------------------------------------------------------------------ 16-byte vectors
// Eight 2-byte or four 4-byte values moved with one 16-byte load or store: the vector paths below read and write whole
// 16-byte words, which is what lets these memory-bound kernels approach the card's bandwidth (scalar 2-byte accesses
// reached 20-75 % of it on an H100). The launchers take them only where every address, stride and size involved is a
// multiple of 16 bytes, and the scalar kernels everywhere else; both compute each element with the same function.

template <typename T> struct Vec {
  static constexpr int N = 16 / sizeof(T);
  float f[N];
  __device__ __forceinline__ void load(const T* p) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; i++) f[i] = Io<T>::load(e + i);
  }
  __device__ __forceinline__ void store(T* p) const {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; i++) Io<T>::store(e + i, f[i]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
};

// Chunks of N values a thread of the vector RMSNorm kernels holds in registers for one row (the launcher sizes the block
// so that a row has at most this many per thread).
constexpr int kMaxChunks = 4;
// Threads of a vector RMSNorm block at most (vector_threads_for).
constexpr int kMaxVectorThreads = 256;

// ------------------------------------------------------------------ RMSNorm: y = w * T(x * rsqrt(mean(x^2) + eps))

template <typename T> __device__ __forceinline__ float rms_norm_out(float x, float w, float r) { return mul(w, rnd<T>(mul(x, r))); }

template <typename T>
__global__ void rms_norm_fwd(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd,
                             int64_t rows, int cols, float eps) {
  __shared__ float shared[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    float ss = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      float v = Io<T>::load(xr + c);
      ss += v * v;
    }
    float r = rsqrtf(block_sum(ss, shared) / cols + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    T* yr = y + row * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
      Io<T>::store(yr + c, rms_norm_out<T>(Io<T>::load(xr + c), Io<T>::load(w + c), r));
  }
}

// The vector path: a row's chunks are read once into registers (at most kMaxChunks a thread), squared and summed, and
// written scaled.
template <typename T>
__global__ void __launch_bounds__(kMaxVectorThreads) rms_norm_fwd_v(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd,
                               int64_t rows, int cols, float eps) {
  constexpr int N = Vec<T>::N;
  __shared__ float shared[32];
  const int chunks = cols / N;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    Vec<T> v[kMaxChunks];
    float ss = 0;
#pragma unroll
    for (int j = 0; j < kMaxChunks; j++) {
      int c = threadIdx.x + j * blockDim.x;
      if (c < chunks) {
        v[j].load(xr + c * N);
#pragma unroll
        for (int i = 0; i < N; i++) ss += v[j].f[i] * v[j].f[i];
      }
    }
    float r = rsqrtf(block_sum(ss, shared) / cols + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    T* yr = y + row * cols;
#pragma unroll
    for (int j = 0; j < kMaxChunks; j++) {
      int c = threadIdx.x + j * blockDim.x;
      if (c < chunks) {
        Vec<T> wv;
        wv.load(w + c * N);
#pragma unroll
        for (int i = 0; i < N; i++) v[j].f[i] = rms_norm_out<T>(v[j].f[i], wv.f[i], r);
        v[j].store(yr + c * N);
      }
    }
  }
}

// dx = r * gw - x * r^3 * mean(gw * x) with gw = g * w; partial[block, c] = sum over the block's rows of g * n.
template <typename T> __device__ __forceinline__ float rms_norm_dx(float g, float x, float w, float r, float k) { return r * g * w - x * k; }
template <typename T> __device__ __forceinline__ float rms_norm_dw_term(float g, float x, float r) { return g * rnd<T>(mul(x, r)); }

template <typename T>
__global__ void rms_norm_bwd(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                             const float* __restrict__ rstd, T* __restrict__ dx, float* __restrict__ partial,
                             int64_t rows, int cols) {
  OML_DYNAMIC_SHARED(float, acc);  // [cols] weight-gradient sums of this block, then 32 floats for block_sum
  float* shared = acc + cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) acc[c] = 0;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* gr = g + row * cols;
    const T* xr = x + row * cols;
    float r = rstd[row];
    float dot = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
      dot += Io<T>::load(gr + c) * Io<T>::load(w + c) * Io<T>::load(xr + c);
    float k = block_sum(dot, shared) * r * r * r / cols;
    T* dr = dx + row * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      float gv = Io<T>::load(gr + c), xv = Io<T>::load(xr + c);
      Io<T>::store(dr + c, rms_norm_dx<T>(gv, xv, Io<T>::load(w + c), r, k));
      acc[c] += rms_norm_dw_term<T>(gv, xv, r);
    }
  }
  for (int c = threadIdx.x; c < cols; c += blockDim.x) partial[(int64_t)blockIdx.x * cols + c] = acc[c];
}

// The vector path: g and x of a row are read once into registers, the weight-gradient sums of the thread's columns stay
// in registers across the block's rows (no shared-memory traffic), and go out once as 16-byte words.
template <typename T>
__global__ void __launch_bounds__(kMaxVectorThreads) rms_norm_bwd_v(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                               const float* __restrict__ rstd, T* __restrict__ dx, float* __restrict__ partial,
                               int64_t rows, int cols) {
  constexpr int N = Vec<T>::N;
  __shared__ float shared[32];
  const int chunks = cols / N;
  float acc[kMaxChunks][N];
#pragma unroll
  for (int j = 0; j < kMaxChunks; j++)
#pragma unroll
    for (int i = 0; i < N; i++) acc[j][i] = 0;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* gr = g + row * cols;
    const T* xr = x + row * cols;
    float r = rstd[row];
    Vec<T> gv[kMaxChunks], xv[kMaxChunks];
    float dot = 0;
#pragma unroll
    for (int j = 0; j < kMaxChunks; j++) {
      int c = threadIdx.x + j * blockDim.x;
      if (c < chunks) {
        Vec<T> wv;
        gv[j].load(gr + c * N);
        xv[j].load(xr + c * N);
        wv.load(w + c * N);
#pragma unroll
        for (int i = 0; i < N; i++) dot += gv[j].f[i] * wv.f[i] * xv[j].f[i];
      }
    }
    float k = block_sum(dot, shared) * r * r * r / cols;
    T* dr = dx + row * cols;
#pragma unroll
    for (int j = 0; j < kMaxChunks; j++) {
      int c = threadIdx.x + j * blockDim.x;
      if (c < chunks) {
        Vec<T> wv, out;
        wv.load(w + c * N);
#pragma unroll
        for (int i = 0; i < N; i++) {
          out.f[i] = rms_norm_dx<T>(gv[j].f[i], xv[j].f[i], wv.f[i], r, k);
          acc[j][i] += rms_norm_dw_term<T>(gv[j].f[i], xv[j].f[i], r);
        }
        out.store(dr + c * N);
      }
    }
  }
  float* pr = partial + (int64_t)blockIdx.x * cols;
#pragma unroll
  for (int j = 0; j < kMaxChunks; j++) {
    int c = threadIdx.x + j * blockDim.x;
    if (c < chunks)
#pragma unroll
      for (int i = 0; i < N; i += 4)
        *reinterpret_cast<float4*>(pr + c * N + i) = make_float4(acc[j][i], acc[j][i + 1], acc[j][i + 2], acc[j][i + 3]);
  }
}

// dw[c] = sum over the blocks' partial sums, in a fixed order (the result does not depend on scheduling). A block
// takes 32 columns; its 8 rows of threads each sum every 8th partial row, then one row adds the 8.
template <typename T>
__global__ void column_sum(const float* __restrict__ partial, T* __restrict__ out, int blocks, int cols) {
  __shared__ float s[8][33];
  int c = blockIdx.x * 32 + threadIdx.x;
  float v = 0;
  if (c < cols)
    for (int b = threadIdx.y; b < blocks; b += 8) v += partial[(int64_t)b * cols + c];
  s[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0;
#pragma unroll
    for (int y = 0; y < 8; y++) total += s[y][threadIdx.x];
    Io<T>::store(out + c, total);
  }
}

// ------------------------------------------------------------------ Rotary embeddings
// y = x * cos + rotate_half(x) * sin over x [B, H, T, D] (any strides, unit stride in D) with cos, sin [B or 1, 1, T, D]
// (strides cb, ct; unit stride in D). One thread per pair (d, d + D/2), or per N pairs in the vector path. The backward
// pass is the same kernel with `backward` set: dx1 = g1 cos1 + g2 sin2, dx2 = g2 cos2 - g1 sin1.

struct Strides4 { int64_t b, h, t; };

template <typename T>
__device__ __forceinline__ void rope_pair(float x1, float x2, float c1, float c2, float s1, float s2, bool backward, float& y1,
                                          float& y2) {
  if (!backward) {
    // Composite: x * cos + cat(-x2, x1) * sin, each product and the sum rounded to T.
    y1 = add(rnd<T>(mul(x1, c1)), rnd<T>(mul(-x2, s1)));
    y2 = add(rnd<T>(mul(x2, c2)), rnd<T>(mul(x1, s2)));
  } else {
    // Composite backward: g * cos + un-rotate(g * sin).
    y1 = add(rnd<T>(mul(x1, c1)), rnd<T>(mul(x2, s2)));
    y2 = add(rnd<T>(mul(x2, c2)), -rnd<T>(mul(x1, s1)));
  }
}

template <typename T>
__global__ void rope(const T* __restrict__ x, Strides4 xs, const T* __restrict__ cs, const T* __restrict__ sn, int64_t cb,
                     int64_t ct, T* __restrict__ y, Strides4 ys, int64_t B, int64_t H, int64_t Tn, int D, bool backward) {
  int half = D / 2;
  int64_t total = B * H * Tn * half;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int d = (int)(i % half);
    int64_t rest = i / half;
    int64_t t = rest % Tn; rest /= Tn;
    int64_t h = rest % H;
    int64_t b = rest / H;
    const T* xp = x + b * xs.b + h * xs.h + t * xs.t;
    T* yp = y + b * ys.b + h * ys.h + t * ys.t;
    int64_t co = (cb == 0 ? 0 : b * cb) + t * ct;
    float y1, y2;
    rope_pair<T>(Io<T>::load(xp + d), Io<T>::load(xp + d + half), Io<T>::load(cs + co + d), Io<T>::load(cs + co + d + half),
                 Io<T>::load(sn + co + d), Io<T>::load(sn + co + d + half), backward, y1, y2);
    Io<T>::store(yp + d, y1);
    Io<T>::store(yp + d + half, y2);
  }
}

// The vector path: work items in the order (chunk, head, position, batch), so that with the attention layout ([B, T, H,
// D] viewed as [B, H, T, D]) a warp reads consecutive words.
template <typename T>
__global__ void rope_v(const T* __restrict__ x, Strides4 xs, const T* __restrict__ cs, const T* __restrict__ sn, int64_t cb,
                       int64_t ct, T* __restrict__ y, Strides4 ys, int64_t B, int64_t H, int64_t Tn, int D, bool backward) {
  constexpr int N = Vec<T>::N;
  const int half = D / 2, chunks = half / N;
  int64_t total = B * Tn * H * chunks;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int d = (int)(i % chunks) * N;
    int64_t rest = i / chunks;
    int64_t h = rest % H; rest /= H;
    int64_t t = rest % Tn;
    int64_t b = rest / Tn;
    const T* xp = x + b * xs.b + h * xs.h + t * xs.t + d;
    T* yp = y + b * ys.b + h * ys.h + t * ys.t + d;
    int64_t co = (cb == 0 ? 0 : b * cb) + t * ct + d;
    Vec<T> x1, x2, c1, c2, s1, s2;
    x1.load(xp); x2.load(xp + half);
    c1.load(cs + co); c2.load(cs + co + half);
    s1.load(sn + co); s2.load(sn + co + half);
#pragma unroll
    for (int k = 0; k < N; k++) {
      float y1, y2;
      rope_pair<T>(x1.f[k], x2.f[k], c1.f[k], c2.f[k], s1.f[k], s2.f[k], backward, y1, y2);
      x1.f[k] = y1;
      x2.f[k] = y2;
    }
    x1.store(yp);
    x2.store(yp + half);
  }
}

// ------------------------------------------------------------------ SwiGLU: y = T(silu(gate)) * up

__device__ __forceinline__ float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

template <typename T> __device__ __forceinline__ float swiglu_out(float gv, float uv) { return mul(rnd<T>(gv / (1.0f + expf(-gv))), uv); }

// dgate = T(dy * up) * sig * (1 + gate * (1 - sig)), dup = dy * T(silu(gate)).
template <typename T> __device__ __forceinline__ void swiglu_grads(float g, float gv, float uv, float& dgate, float& dup) {
  float sig = sigmoidf(gv);
  float s = rnd<T>(gv / (1.0f + expf(-gv)));
  float ds = rnd<T>(mul(g, uv));
  dgate = ds * sig * (1.0f + gv * (1.0f - sig));
  dup = mul(g, s);
}

template <typename T>
__global__ void swiglu_fwd(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Io<T>::store(y + i, swiglu_out<T>(Io<T>::load(gate + i), Io<T>::load(up + i)));
}

template <typename T>
__global__ void swiglu_fwd_v(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ y, int64_t vectors) {
  constexpr int N = Vec<T>::N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vectors; i += (int64_t)gridDim.x * blockDim.x) {
    Vec<T> g, u;
    g.load(gate + i * N);
    u.load(up + i * N);
#pragma unroll
    for (int k = 0; k < N; k++) g.f[k] = swiglu_out<T>(g.f[k], u.f[k]);
    g.store(y + i * N);
  }
}

template <typename T>
__global__ void swiglu_bwd(const T* __restrict__ dy, const T* __restrict__ gate, const T* __restrict__ up,
                           T* __restrict__ dgate, T* __restrict__ dup, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float dg, du;
    swiglu_grads<T>(Io<T>::load(dy + i), Io<T>::load(gate + i), Io<T>::load(up + i), dg, du);
    Io<T>::store(dgate + i, dg);
    Io<T>::store(dup + i, du);
  }
}

template <typename T>
__global__ void swiglu_bwd_v(const T* __restrict__ dy, const T* __restrict__ gate, const T* __restrict__ up,
                             T* __restrict__ dgate, T* __restrict__ dup, int64_t vectors) {
  constexpr int N = Vec<T>::N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vectors; i += (int64_t)gridDim.x * blockDim.x) {
    Vec<T> g, gv, uv;
    g.load(dy + i * N);
    gv.load(gate + i * N);
    uv.load(up + i * N);
#pragma unroll
    for (int k = 0; k < N; k++) swiglu_grads<T>(g.f[k], gv.f[k], uv.f[k], gv.f[k], uv.f[k]);
    gv.store(dgate + i * N);
    uv.store(dup + i * N);
  }
}

int multiprocessors() {
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return sms;
}

int grid_for(int64_t work, int threads) {
  int64_t blocks = (work + threads - 1) / threads;
  int64_t cap = (int64_t)multiprocessors() * 16;
  return (int)(blocks < 1 ? 1 : blocks > cap ? cap : blocks);
}

int threads_for(int cols) {
  int t = 32;
  while (t < 256 && t * 4 < cols) t *= 2;
  return t;
}

// The vector RMSNorm's block: at least two chunks a thread where the row has them, at most kMaxChunks, and at most
// kMaxVectorThreads threads (the backward kernel holds about 120 registers a thread in bfloat16, which 1,024 threads
// would not get: cudaErrorLaunchOutOfResources); 0 when a row is wider than that (8,192 values in 2 bytes, 4,096 in 4),
// which then takes the scalar kernel.
int vector_threads_for(int chunks) {
  int t = 32;
  while (t < kMaxVectorThreads && t * 2 < chunks) t *= 2;
  return t * kMaxChunks >= chunks ? t : 0;
}

// Blocks of the backward pass: a few per multiprocessor, each looping over rows, so that the per-block weight-gradient
// sums (blocks x cols floats of scratch) stay small.
int rms_norm_bwd_blocks(int64_t rows) {
  int64_t cap = (int64_t)multiprocessors() * 2;
  return (int)(rows < 1 ? 1 : rows > cap ? cap : rows);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename T> bool vectorizable(int64_t n) { return n % (16 / (int64_t)sizeof(T)) == 0; }

int status() {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : (int)e;
}

template <typename F> int dispatch(int dtype, F&& f) {
  switch (dtype) {
    case 0: f(static_cast<float*>(nullptr)); return 0;
    case 1: f(static_cast<__half*>(nullptr)); return 0;
    case 2: f(static_cast<__nv_bfloat16*>(nullptr)); return 0;
  }
  return -1;
}

}  // namespace

extern "C" {

// 1 when this build holds machine code or PTX the current device can run (a shim built for one GPU may be loaded on
// another: the caller then computes the composite ops).
int oml_k_available() {
  cudaFuncAttributes a;
  if (cudaFuncGetAttributes(&a, rms_norm_fwd<float>) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no kernel image" error
    return 0;
  }
  return 1;
}

// The vector paths are taken wherever they apply unless switched off here (0), which the kernel benchmark uses to time
// the scalar paths against them in one process.
static int g_vector = 1;
void oml_k_set_vector(int on) { g_vector = on != 0; }

// Each returns 0, -1 for an unsupported dtype, or a cudaError_t code from the launch.

int oml_k_rms_norm_fwd(int dtype, const void* x, const void* w, void* y, float* rstd, int64_t rows, int cols, float eps,
                       cudaStream_t stream) {
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        int vthreads = vectorizable<T>(cols) ? vector_threads_for(cols / Vec<T>::N) : 0;
        if (g_vector && vthreads > 0 && aligned16(x) && aligned16(w) && aligned16(y)) {
          OML_LAUNCH(rms_norm_fwd_v<T>, grid_for(rows * vthreads, vthreads), vthreads, 0, stream, (const T*)x, (const T*)w, (T*)y, rstd,
                                                                                        rows, cols, eps);
        } else {
          int threads = threads_for(cols);
          OML_LAUNCH(rms_norm_fwd<T>, grid_for(rows * threads, threads), threads, 0, stream, (const T*)x, (const T*)w, (T*)y, rstd,
                                                                                   rows, cols, eps);
        }
      }) != 0) return -1;
  return status();
}

// How many float32 values of scratch oml_k_rms_norm_bwd needs (the per-block weight-gradient sums).
int64_t oml_k_rms_norm_bwd_scratch(int64_t rows, int cols) { return (int64_t)rms_norm_bwd_blocks(rows) * cols; }

int oml_k_rms_norm_bwd(int dtype, const void* g, const void* x, const void* w, const float* rstd, void* dx, void* dw,
                       float* scratch, int64_t rows, int cols, cudaStream_t stream) {
  int blocks = rms_norm_bwd_blocks(rows);
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        int vthreads = vectorizable<T>(cols) ? vector_threads_for(cols / Vec<T>::N) : 0;
        if (g_vector && vthreads > 0 && aligned16(g) && aligned16(x) && aligned16(w) && aligned16(dx) && aligned16(scratch)) {
          OML_LAUNCH(rms_norm_bwd_v<T>, blocks, vthreads, 0, stream, (const T*)g, (const T*)x, (const T*)w, rstd, (T*)dx, scratch,
                                                             rows, cols);
        } else {
          int threads = threads_for(cols);
          size_t smem = (size_t)(cols + 32) * sizeof(float);
          if (smem > 48 * 1024) cudaFuncSetAttribute(rms_norm_bwd<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
          OML_LAUNCH(rms_norm_bwd<T>, blocks, threads, smem, stream, (const T*)g, (const T*)x, (const T*)w, rstd, (T*)dx, scratch,
                                                             rows, cols);
        }
        if (dw != nullptr) OML_LAUNCH(column_sum<T>, (cols + 31) / 32, dim3(32, 8), 0, stream, scratch, (T*)dw, blocks, cols);
      }) != 0) return -1;
  return status();
}

int oml_k_rope(int dtype, const void* x, const int64_t* x_strides, const void* cos, const void* sin, int64_t cos_b,
               int64_t cos_t, void* y, const int64_t* y_strides, int64_t B, int64_t H, int64_t T, int D, int backward,
               cudaStream_t stream) {
  if (D % 2 != 0) return -1;
  Strides4 xs{x_strides[0], x_strides[1], x_strides[2]}, ys{y_strides[0], y_strides[1], y_strides[2]};
  if (dispatch(dtype, [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        constexpr int N = Vec<E>::N;
        bool strides = xs.b % N == 0 && xs.h % N == 0 && xs.t % N == 0 && ys.b % N == 0 && ys.h % N == 0 && ys.t % N == 0 &&
                       cos_b % N == 0 && cos_t % N == 0;
        if (g_vector && (D / 2) % N == 0 && strides && aligned16(x) && aligned16(cos) && aligned16(sin) && aligned16(y)) {
          int64_t work = B * H * T * (D / 2 / N);
          OML_LAUNCH(rope_v<E>, grid_for(work, 256), 256, 0, stream, (const E*)x, xs, (const E*)cos, (const E*)sin, cos_b, cos_t, (E*)y,
                                                           ys, B, H, T, D, backward != 0);
        } else {
          int64_t work = B * H * T * (D / 2);
          OML_LAUNCH(rope<E>, grid_for(work, 256), 256, 0, stream, (const E*)x, xs, (const E*)cos, (const E*)sin, cos_b, cos_t, (E*)y,
                                                         ys, B, H, T, D, backward != 0);
        }
      }) != 0) return -1;
  return status();
}

int oml_k_swiglu_fwd(int dtype, const void* gate, const void* up, void* y, int64_t n, cudaStream_t stream) {
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        if (g_vector && vectorizable<T>(n) && aligned16(gate) && aligned16(up) && aligned16(y)) {
          int64_t vectors = n / Vec<T>::N;
          OML_LAUNCH(swiglu_fwd_v<T>, grid_for(vectors, 256), 256, 0, stream, (const T*)gate, (const T*)up, (T*)y, vectors);
        } else {
          OML_LAUNCH(swiglu_fwd<T>, grid_for(n, 256), 256, 0, stream, (const T*)gate, (const T*)up, (T*)y, n);
        }
      }) != 0) return -1;
  return status();
}

int oml_k_swiglu_bwd(int dtype, const void* dy, const void* gate, const void* up, void* dgate, void* dup, int64_t n,
                     cudaStream_t stream) {
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        if (g_vector && vectorizable<T>(n) && aligned16(dy) && aligned16(gate) && aligned16(up) && aligned16(dgate) &&
            aligned16(dup)) {
          int64_t vectors = n / Vec<T>::N;
          OML_LAUNCH(swiglu_bwd_v<T>, grid_for(vectors, 256), 256, 0, stream, (const T*)dy, (const T*)gate, (const T*)up, (T*)dgate,
                                                                    (T*)dup, vectors);
        } else {
          OML_LAUNCH(swiglu_bwd<T>, grid_for(n, 256), 256, 0, stream, (const T*)dy, (const T*)gate, (const T*)up, (T*)dgate, (T*)dup, n);
        }
      }) != 0) return -1;
  return status();
}

}  // extern "C"
