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

// ------------------------------------------------------------------ RMSNorm: y = w * T(x * rsqrt(mean(x^2) + eps))

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
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      float n = rnd<T>(mul(Io<T>::load(xr + c), r));
      Io<T>::store(yr + c, mul(Io<T>::load(w + c), n));
    }
  }
}

// dx = r * gw - x * r^3 * mean(gw * x) with gw = g * w; partial[block, c] = sum over the block's rows of g * n.
template <typename T>
__global__ void rms_norm_bwd(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                             const float* __restrict__ rstd, T* __restrict__ dx, float* __restrict__ partial,
                             int64_t rows, int cols) {
  extern __shared__ float acc[];  // [cols] weight-gradient sums of this block, then 32 floats for block_sum
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
      Io<T>::store(dr + c, r * gv * Io<T>::load(w + c) - xv * k);
      acc[c] += gv * rnd<T>(mul(xv, r));
    }
  }
  for (int c = threadIdx.x; c < cols; c += blockDim.x) partial[(int64_t)blockIdx.x * cols + c] = acc[c];
}

template <typename T>
__global__ void column_sum(const float* __restrict__ partial, T* __restrict__ out, int blocks, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0;
  for (int b = 0; b < blocks; b++) s += partial[(int64_t)b * cols + c];
  Io<T>::store(out + c, s);
}

// ------------------------------------------------------------------ Rotary embeddings
// y = x * cos + rotate_half(x) * sin over x [B, H, T, D] (any strides, unit stride in D) with cos, sin [B or 1, 1, T, D]
// (strides cb, ct; unit stride in D). One thread per pair (d, d + D/2). The backward pass is the same kernel with
// `backward` set: dx1 = g1 cos1 + g2 sin2, dx2 = g2 cos2 - g1 sin1.

struct Strides4 { int64_t b, h, t; };

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
    float x1 = Io<T>::load(xp + d), x2 = Io<T>::load(xp + d + half);
    float c1 = Io<T>::load(cs + co + d), c2 = Io<T>::load(cs + co + d + half);
    float s1 = Io<T>::load(sn + co + d), s2 = Io<T>::load(sn + co + d + half);
    float y1, y2;
    if (!backward) {
      // Composite: x * cos + cat(-x2, x1) * sin, each product and the sum rounded to T.
      y1 = add(rnd<T>(mul(x1, c1)), rnd<T>(mul(-x2, s1)));
      y2 = add(rnd<T>(mul(x2, c2)), rnd<T>(mul(x1, s2)));
    } else {
      // Composite backward: g * cos + un-rotate(g * sin).
      y1 = add(rnd<T>(mul(x1, c1)), rnd<T>(mul(x2, s2)));
      y2 = add(rnd<T>(mul(x2, c2)), -rnd<T>(mul(x1, s1)));
    }
    Io<T>::store(yp + d, y1);
    Io<T>::store(yp + d + half, y2);
  }
}

// ------------------------------------------------------------------ SwiGLU: y = T(silu(gate)) * up

__device__ __forceinline__ float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

template <typename T>
__global__ void swiglu_fwd(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float gv = Io<T>::load(gate + i);
    float s = rnd<T>(gv / (1.0f + expf(-gv)));
    Io<T>::store(y + i, mul(s, Io<T>::load(up + i)));
  }
}

// dgate = T(dy * up) * sig * (1 + gate * (1 - sig)), dup = dy * T(silu(gate)).
template <typename T>
__global__ void swiglu_bwd(const T* __restrict__ dy, const T* __restrict__ gate, const T* __restrict__ up,
                           T* __restrict__ dgate, T* __restrict__ dup, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float g = Io<T>::load(dy + i), gv = Io<T>::load(gate + i), uv = Io<T>::load(up + i);
    float sig = sigmoidf(gv);
    float s = rnd<T>(gv / (1.0f + expf(-gv)));
    float ds = rnd<T>(mul(g, uv));
    Io<T>::store(dgate + i, ds * sig * (1.0f + gv * (1.0f - sig)));
    Io<T>::store(dup + i, mul(g, s));
  }
}

int grid_for(int64_t work, int threads) {
  int64_t blocks = (work + threads - 1) / threads;
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  int64_t cap = (int64_t)sms * 16;
  return (int)(blocks < 1 ? 1 : blocks > cap ? cap : blocks);
}

int threads_for(int cols) {
  int t = 32;
  while (t < 256 && t * 4 < cols) t *= 2;
  return t;
}

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

// Each returns 0, -1 for an unsupported dtype, or a cudaError_t code from the launch.

int oml_k_rms_norm_fwd(int dtype, const void* x, const void* w, void* y, float* rstd, int64_t rows, int cols, float eps,
                       cudaStream_t stream) {
  int threads = threads_for(cols);
  int blocks = grid_for(rows * threads, threads);
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        rms_norm_fwd<T><<<blocks, threads, 0, stream>>>((const T*)x, (const T*)w, (T*)y, rstd, rows, cols, eps);
      }) != 0) return -1;
  return status();
}

// How many float32 values of scratch oml_k_rms_norm_bwd needs (the per-block weight-gradient sums).
int64_t oml_k_rms_norm_bwd_scratch(int64_t rows, int cols) {
  int threads = threads_for(cols);
  return (int64_t)grid_for(rows * threads, threads) * cols;
}

int oml_k_rms_norm_bwd(int dtype, const void* g, const void* x, const void* w, const float* rstd, void* dx, void* dw,
                       float* scratch, int64_t rows, int cols, cudaStream_t stream) {
  int threads = threads_for(cols);
  int blocks = grid_for(rows * threads, threads);
  size_t smem = (size_t)(cols + 32) * sizeof(float);
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        if (smem > 48 * 1024) cudaFuncSetAttribute(rms_norm_bwd<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        rms_norm_bwd<T><<<blocks, threads, smem, stream>>>((const T*)g, (const T*)x, (const T*)w, rstd, (T*)dx, scratch,
                                                           rows, cols);
        if (dw != nullptr) column_sum<T><<<(cols + 255) / 256, 256, 0, stream>>>(scratch, (T*)dw, blocks, cols);
      }) != 0) return -1;
  return status();
}

int oml_k_rope(int dtype, const void* x, const int64_t* x_strides, const void* cos, const void* sin, int64_t cos_b,
               int64_t cos_t, void* y, const int64_t* y_strides, int64_t B, int64_t H, int64_t T, int D, int backward,
               cudaStream_t stream) {
  if (D % 2 != 0) return -1;
  Strides4 xs{x_strides[0], x_strides[1], x_strides[2]}, ys{y_strides[0], y_strides[1], y_strides[2]};
  int64_t work = B * H * T * (D / 2);
  int blocks = grid_for(work, 256);
  if (dispatch(dtype, [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        rope<E><<<blocks, 256, 0, stream>>>((const E*)x, xs, (const E*)cos, (const E*)sin, cos_b, cos_t, (E*)y, ys, B, H, T, D,
                                            backward != 0);
      }) != 0) return -1;
  return status();
}

int oml_k_swiglu_fwd(int dtype, const void* gate, const void* up, void* y, int64_t n, cudaStream_t stream) {
  int blocks = grid_for(n, 256);
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        swiglu_fwd<T><<<blocks, 256, 0, stream>>>((const T*)gate, (const T*)up, (T*)y, n);
      }) != 0) return -1;
  return status();
}

int oml_k_swiglu_bwd(int dtype, const void* dy, const void* gate, const void* up, void* dgate, void* dup, int64_t n,
                     cudaStream_t stream) {
  int blocks = grid_for(n, 256);
  if (dispatch(dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        swiglu_bwd<T><<<blocks, 256, 0, stream>>>((const T*)dy, (const T*)gate, (const T*)up, (T*)dgate, (T*)dup, n);
      }) != 0) return -1;
  return status();
}

}  // extern "C"
