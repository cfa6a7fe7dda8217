// The CUDA runtime as native/oml_kernels.cu uses it, emulated on the CPU (KernelEmulationTests): a launch runs the
// grid's blocks one after another on one set of OS threads, one per thread of a block; __syncthreads is a barrier of the block; a
// warp shuffle exchanges through a block-wide buffer between two barriers; __shared__ variables are static storage,
// which is per block because one block runs at a time. Enough to check the kernels' indexing, their vector and scalar
// paths and their arithmetic where no GPU is; nothing about speed or resources (registers, occupancy).
#pragma once
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#define OML_KERNELS_EMULATED 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct emu_uint3 { unsigned x, y, z; };
inline thread_local emu_uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

typedef int cudaError_t;
typedef struct CUstream_st* cudaStream_t;
struct cudaFuncAttributes { int unused; };
enum { cudaSuccess = 0, cudaErrorLaunchOutOfResources = 701, cudaDevAttrMultiProcessorCount = 16,
       cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline int emu_error = 0;
inline int emu_multiprocessors = 1;  // small, so that grids loop over rows (and few threads are started)
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, int, int) { *v = emu_multiprocessors; return cudaSuccess; }
inline cudaError_t cudaGetLastError() { int e = emu_error; emu_error = 0; return e; }
template <typename F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes*, F) { return cudaSuccess; }
template <typename F> cudaError_t cudaFuncSetAttribute(F, int, int) { return cudaSuccess; }

inline std::barrier<>* emu_barrier = nullptr;
inline float emu_exchange[1024];
inline float emu_shared_bytes[1 << 16];
inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  unsigned t = threadIdx.y * blockDim.x + threadIdx.x;
  emu_exchange[t] = v;
  emu_barrier->arrive_and_wait();
  float r = emu_exchange[t ^ lane_mask];
  emu_barrier->arrive_and_wait();
  return r;
}
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
// Rounded products and sums that the compiler may not contract (the file's mul/add).
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  unsigned n = block.x * block.y * block.z;
  if (n == 0 || n > 1024) { emu_error = cudaErrorLaunchOutOfResources; return; }
  gridDim = grid;
  blockDim = block;
  // One OS thread per thread of a block, walking the grid's blocks in step: a block starts when every thread has
  // finished the previous one (its static "shared" storage is then free).
  std::barrier<> bar(n);
  emu_barrier = &bar;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned t = 0; t < n; t++)
    threads.emplace_back([&, t] {
      threadIdx = {t % block.x, t / block.x, 0};
      for (unsigned b = 0; b < grid.x; b++) {
        blockIdx = {b, 0, 0};
        body();
        bar.arrive_and_wait();
      }
    });
  for (auto& th : threads) th.join();
}
#define OML_LAUNCH(kernel, grid, block, smem, stream, ...) emu_launch(dim3(grid), dim3(block), [&]() { kernel(__VA_ARGS__); })
#define OML_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(emu_shared_bytes)
