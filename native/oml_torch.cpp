// oml_torch: a small C ABI over libtorch for the oml .NET binding.
//
// Conventions
//  * A tensor crosses the boundary as an owning pointer to a heap-allocated at::Tensor (`TH`).
//    The caller frees it with oml_tensor_free.
//  * A random generator (at::Generator) crosses it the same way (`GH`, freed with oml_generator_free). The random
//    operations take one, or nullptr for libtorch's global default generator of the device.
//  * Functions that produce a tensor return it, or nullptr on failure.
//    Functions that produce anything else return an int status: 0 ok, -1 failure.
//  * On failure no C++ exception escapes: the message (libtorch's, prefixed with the operation and
//    the shapes of its tensor arguments) is kept per thread and read with oml_last_error.
//  * The file compiles unchanged against libtorch 1.13 (Debian) and 2.x (PyTorch wheels);
//    calls that only exist in newer versions are guarded with TORCH_VERSION checks and have a
//    correct fallback.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/graph_task.h>
#ifndef OML_NO_PROFILER
#include <torch/csrc/autograd/profiler_kineto.h>
#endif
#include <torch/csrc/autograd/generated/variable_factories.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <initializer_list>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#if defined(OML_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#define OML_HAVE_CUDA_ALLOCATOR_STATS 1
#endif

#if defined(OML_WITH_KERNELS)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>
// native/oml_kernels.cu (dtype codes as Oml.Engine.DType: 0 float32, 1 float16, 2 bfloat16; 0 = launched).
extern "C" {
int oml_k_rms_norm_fwd(int dtype, const void* x, const void* w, void* y, float* rstd, int64_t rows, int cols, float eps,
                       cudaStream_t stream);
int oml_k_available();
int64_t oml_k_rms_norm_bwd_scratch(int64_t rows, int cols);
int oml_k_rms_norm_bwd(int dtype, const void* g, const void* x, const void* w, const float* rstd, void* dx, void* dw,
                       float* scratch, int64_t rows, int cols, cudaStream_t stream);
int oml_k_rope(int dtype, const void* x, const int64_t* x_strides, const void* cos, const void* sin, int64_t cos_b,
               int64_t cos_t, void* y, const int64_t* y_strides, int64_t B, int64_t H, int64_t T, int D, int backward,
               cudaStream_t stream);
int oml_k_swiglu_fwd(int dtype, const void* gate, const void* up, void* y, int64_t n, cudaStream_t stream);
int oml_k_swiglu_bwd(int dtype, const void* dy, const void* gate, const void* up, void* dgate, void* dup, int64_t n,
                     cudaStream_t stream);
}
#endif

#define OML_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#define API extern "C" __attribute__((visibility("default")))

using TH = at::Tensor*;
using GH = at::Generator*;

namespace {

thread_local std::string g_error;
std::atomic<int64_t> g_live{0};

// Hands out an owning pointer; every handle given to the caller is counted until oml_tensor_free.
TH own(at::Tensor t) {
  g_live.fetch_add(1, std::memory_order_relaxed);
  return new at::Tensor(std::move(t));
}

// ---------------------------------------------------------------- dtype / device mapping
// Keep in sync with Oml.Engine.DType (C#).
at::ScalarType to_scalar_type(int code) {
  switch (code) {
    case 0: return at::kFloat;
    case 1: return at::kHalf;
    case 2: return at::kBFloat16;
    case 3: return at::kLong;
    case 4: return at::kInt;
    case 5: return at::kBool;
    case 6: return at::kByte;
    case 7: return at::kDouble;
    case 8: return at::kChar;
    case 9: return at::kShort;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(code));
}

int from_scalar_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return 0;
    case at::kHalf: return 1;
    case at::kBFloat16: return 2;
    case at::kLong: return 3;
    case at::kInt: return 4;
    case at::kBool: return 5;
    case at::kByte: return 6;
    case at::kDouble: return 7;
    case at::kChar: return 8;
    case at::kShort: return 9;
    default: return -1;
  }
}

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kBool: return "bool";
    case at::kByte: return "uint8";
    case at::kDouble: return "float64";
    case at::kChar: return "int8";
    case at::kShort: return "int16";
    default: return c10::toString(t);
  }
}

at::Device to_device(int type, int index) {
  switch (type) {
    case 0: return at::Device(at::kCPU);
    case 1: return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index < 0 ? 0 : index));
  }
  throw std::invalid_argument("unknown device type " + std::to_string(type));
}

at::TensorOptions options(int dtype, int dev_type, int dev_index) {
  return at::TensorOptions().dtype(to_scalar_type(dtype)).device(to_device(dev_type, dev_index));
}

at::IntArrayRef dims(const int64_t* p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

// A random operation's generator argument: the caller's, or none (libtorch's default generator of the device).
c10::optional<at::Generator> gen_arg(GH g) {
  if (g == nullptr) return c10::nullopt;
  return *g;
}

std::string describe(const at::Tensor* t) {
  if (t == nullptr) return "null";
  if (!t->defined()) return "undefined";
  std::ostringstream s;
  s << "[";
  for (int64_t i = 0; i < t->dim(); ++i) s << (i ? ", " : "") << t->size(i);
  s << "] " << dtype_name(t->scalar_type());
  if (!t->device().is_cpu()) s << " " << t->device();
  return s.str();
}

void set_error(const char* op, std::initializer_list<const at::Tensor*> args, const char* msg) {
  std::ostringstream s;
  s << op << "(";
  bool first = true;
  for (const at::Tensor* a : args) {
    s << (first ? "" : ", ") << describe(a);
    first = false;
  }
  s << "): " << msg;
  g_error = s.str();
}

// Runs f, which returns an at::Tensor, and hands out an owning pointer.
template <class F>
TH wrap(const char* op, std::initializer_list<const at::Tensor*> args, F&& f) {
  try {
    return own(f());
  } catch (const c10::Error& e) {
    set_error(op, args, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_error(op, args, e.what());
  } catch (...) {
    set_error(op, args, "unknown C++ exception");
  }
  return nullptr;
}

// Runs f, which returns nothing, and reports a status.
template <class F>
int run(const char* op, std::initializer_list<const at::Tensor*> args, F&& f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    set_error(op, args, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_error(op, args, e.what());
  } catch (...) {
    set_error(op, args, "unknown C++ exception");
  }
  return -1;
}

// A scalar operand for tensor t: integral when t is integral and v has no fraction, so that index arithmetic
// (ids + 1) stays integral as it does in Python; otherwise a double.
at::Scalar scalar_for(const at::Tensor& t, double v) {
  if (!at::isFloatingType(t.scalar_type()) && v == std::floor(v) && std::fabs(v) < 9.0e15)
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

std::vector<at::Tensor> tensor_list(const TH* ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    if (ts[i] == nullptr) throw std::invalid_argument("tensor list element " + std::to_string(i) + " is null");
    v.push_back(*ts[i]);
  }
  return v;
}

// Whether the fused kernels may run: built in (native/build.sh found nvcc) and not switched off (OML_FUSED_KERNELS=0).
[[maybe_unused]] bool fused_enabled() {
#if defined(OML_WITH_KERNELS)
  static const bool on = [] {
    const char* v = std::getenv("OML_FUSED_KERNELS");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
#else
  return false;
#endif
}

#if defined(OML_WITH_KERNELS)
// ---------------------------------------------------------------- fused kernels
// Autograd functions over native/oml_kernels.cu. Each *_fits says when the kernel applies (CUDA, a floating dtype the
// kernel has, the layouts it reads); otherwise the caller computes the composite ops, which define the semantics.
namespace fused {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool kernel_dtype(const at::Tensor& t) {
  auto d = t.scalar_type();
  return d == at::kFloat || d == at::kHalf || d == at::kBFloat16;
}

// Whether the kernels run on CUDA device d (asked once per device: 1 yes, -1 no, 0 not asked yet).
bool runs_on(c10::DeviceIndex d) {
  static std::atomic<int> known[64];
  if (d < 0 || d >= 64) return false;
  int k = known[d].load(std::memory_order_relaxed);
  if (k == 0) {
    c10::cuda::CUDAGuard guard(d);
    k = oml_k_available() ? 1 : -1;
    known[d].store(k, std::memory_order_relaxed);
  }
  return k == 1;
}

bool on_cuda(std::initializer_list<const at::Tensor*> ts) {
  if (!fused_enabled()) return false;
  const at::Tensor* first = *ts.begin();
  for (const at::Tensor* t : ts)
    if (!t->defined() || !t->is_cuda() || t->device() != first->device() || t->scalar_type() != first->scalar_type() ||
        !kernel_dtype(*t))
      return false;
  return runs_on(first->device().index());
}

cudaStream_t stream(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

void check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string("fused kernel ") + what + " failed (CUDA error " + std::to_string(rc) + ")");
}

bool rms_norm_fits(const at::Tensor& x, const at::Tensor& w) {
  return on_cuda({&x, &w}) && x.dim() >= 1 && w.dim() == 1 && x.size(-1) == w.size(0) && x.size(-1) > 0 &&
         x.size(-1) <= 12288 && x.numel() > 0;
}

struct RmsNorm : public torch::autograd::Function<RmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, double eps) {
    c10::cuda::CUDAGuard guard(x.device());
    auto xc = x.contiguous(), wc = w.contiguous();
    int cols = static_cast<int>(xc.size(-1));
    int64_t rows = xc.numel() / cols;
    auto y = at::empty_like(xc);
    auto rstd = at::empty({rows}, xc.options().dtype(at::kFloat));
    check(oml_k_rms_norm_fwd(from_scalar_type(xc.scalar_type()), xc.data_ptr(), wc.data_ptr(), y.data_ptr(),
                             rstd.data_ptr<float>(), rows, cols, static_cast<float>(eps), stream(xc)),
          "rms_norm forward");
    ctx->save_for_backward({xc, wc, rstd});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &rstd = saved[2];
    c10::cuda::CUDAGuard guard(x.device());
    auto g = grads[0].to(x.scalar_type()).contiguous();
    int cols = static_cast<int>(x.size(-1));
    int64_t rows = x.numel() / cols;
    auto dx = at::empty_like(x);
    bool want_w = ctx->needs_input_grad(1);
    at::Tensor dw = want_w ? at::empty_like(w) : at::Tensor();
    auto scratch = at::empty({oml_k_rms_norm_bwd_scratch(rows, cols)}, x.options().dtype(at::kFloat));
    check(oml_k_rms_norm_bwd(from_scalar_type(x.scalar_type()), g.data_ptr(), x.data_ptr(), w.data_ptr(),
                             rstd.data_ptr<float>(), dx.data_ptr(), want_w ? dw.data_ptr() : nullptr,
                             scratch.data_ptr<float>(), rows, cols, stream(x)),
          "rms_norm backward");
    return {dx, dw, at::Tensor()};
  }
};

// The kernel's backward pass gives x its gradient only: tables that need one take the composite ops.
bool rope_fits(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (cos.requires_grad() || sin.requires_grad()) return false;
  if (!on_cuda({&x, &cos, &sin}) || x.dim() != 4 || cos.dim() != 4 || sin.dim() != 4) return false;
  if (x.size(-1) % 2 != 0 || x.stride(3) != 1 || cos.stride(3) != 1 || sin.strides() != cos.strides()) return false;
  if (cos.sizes() != sin.sizes() || cos.size(1) != 1 || cos.size(2) != x.size(2) || cos.size(3) != x.size(3)) return false;
  return (cos.size(0) == 1 || cos.size(0) == x.size(0)) && x.numel() > 0;
}

// y (allocated like x) = rope(x), or its backward pass through x when `backward`.
at::Tensor rope_launch(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool backward) {
  c10::cuda::CUDAGuard guard(x.device());
  auto xin = x.stride(3) == 1 ? x : x.contiguous();
  auto y = at::empty_like(xin);
  if (y.stride(3) != 1) y = at::empty(xin.sizes(), xin.options());
  int64_t xs[3] = {xin.stride(0), xin.stride(1), xin.stride(2)}, ys[3] = {y.stride(0), y.stride(1), y.stride(2)};
  check(oml_k_rope(from_scalar_type(xin.scalar_type()), xin.data_ptr(), xs, cos.data_ptr(), sin.data_ptr(),
                   cos.size(0) == 1 ? 0 : cos.stride(0), cos.stride(2), y.data_ptr(), ys, xin.size(0), xin.size(1),
                   xin.size(2), static_cast<int>(xin.size(3)), backward ? 1 : 0, stream(xin)),
        backward ? "rope backward" : "rope forward");
  return y;
}

struct Rope : public torch::autograd::Function<Rope> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rope_launch(x, cos, sin, false);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {rope_launch(grads[0].to(saved[0].scalar_type()), saved[0], saved[1], true), at::Tensor(), at::Tensor()};
  }
};

bool swiglu_fits(const at::Tensor& gate, const at::Tensor& up) {
  return on_cuda({&gate, &up}) && gate.sizes() == up.sizes() && gate.numel() > 0;
}

struct SwiGlu : public torch::autograd::Function<SwiGlu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    c10::cuda::CUDAGuard guard(gate.device());
    auto g = gate.contiguous(), u = up.contiguous();
    auto y = at::empty_like(g);
    check(oml_k_swiglu_fwd(from_scalar_type(g.scalar_type()), g.data_ptr(), u.data_ptr(), y.data_ptr(), g.numel(), stream(g)),
          "swiglu forward");
    ctx->save_for_backward({g, u});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    c10::cuda::CUDAGuard guard(g.device());
    auto dy = grads[0].to(g.scalar_type()).contiguous();
    auto dg = at::empty_like(g), du = at::empty_like(u);
    check(oml_k_swiglu_bwd(from_scalar_type(g.scalar_type()), dy.data_ptr(), g.data_ptr(), u.data_ptr(), dg.data_ptr(),
                           du.data_ptr(), g.numel(), stream(g)),
          "swiglu backward");
    return {dg, du};
  }
};
}  // namespace fused
#endif

}  // namespace

// ================================================================ library state

API const char* oml_last_error() { return g_error.c_str(); }

API const char* oml_torch_version() {
  static std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                         std::to_string(TORCH_VERSION_PATCH);
  return v.c_str();
}

// Bit 0: fused scaled_dot_product_attention; bit 1: fused AdamW kernel; bit 2: CUDA allocator statistics.
API int oml_features() {
  int f = 0;
#if OML_TORCH_AT_LEAST(2, 1)
  f |= 1 | 2;
#endif
#ifdef OML_HAVE_CUDA_ALLOCATOR_STATS
  f |= 4;
#endif
  return f;
}

API int oml_set_num_threads(int n) {
  return run("set_num_threads", {}, [&] { at::set_num_threads(n); });
}
API int oml_get_num_threads() { return at::get_num_threads(); }

API int oml_manual_seed(uint64_t seed) {
  return run("manual_seed", {}, [&] { at::manual_seed(seed); });
}

// ================================================================ random generators

// A generator of its own for a device, seeded with seed: the stream a random operation draws from it is the one
// libtorch's default generator of that device gives after at::manual_seed(seed), and no other thread's draws touch it.
// CPU: a fresh CPUGeneratorImpl. Other devices (CUDA): a clone of the device's default generator, reseeded, through
// the device-generic Generator API, so this compiles unchanged with and without CUDA (without it, asking for a CUDA
// generator fails with libtorch's own message).
API GH oml_generator_new(int dt, int di, uint64_t seed) {
  GH result = nullptr;
  run("generator_new", {}, [&] {
    at::Device device = to_device(dt, di);
    at::Generator g;
    if (device.is_cpu()) {
      g = at::make_generator<at::CPUGeneratorImpl>(seed);
    } else {
      at::Generator& def = const_cast<at::Generator&>(at::globalContext().defaultGenerator(device));
      {
        std::lock_guard<std::mutex> lock(def.mutex());
        g = def.clone();
      }
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_current_seed(seed);
    }
    result = new at::Generator(std::move(g));
  });
  return result;
}

API void oml_generator_free(GH g) { delete g; }

// Reseeds g (its stream starts again as a fresh generator's with that seed).
API int oml_generator_manual_seed(GH g, uint64_t seed) {
  return run("generator_manual_seed", {}, [&] {
    if (g == nullptr) throw std::invalid_argument("generator is null");
    std::lock_guard<std::mutex> lock(g->mutex());
    g->set_current_seed(seed);
  });
}

// The seed g was created or last reseeded with.
API int oml_generator_initial_seed(GH g, uint64_t* out) {
  return run("generator_initial_seed", {}, [&] {
    if (g == nullptr) throw std::invalid_argument("generator is null");
    std::lock_guard<std::mutex> lock(g->mutex());
    *out = g->current_seed();
  });
}

// float32 matrix products: "highest" (true float32), "high" (TF32 tensor cores on Ampere and newer, as
// torch.set_float32_matmul_precision("high")) or "medium" (bf16 passes where the backend has them). The setter has
// existed since libtorch 1.12; it also sets cuBLAS' TF32 switch.
API int oml_set_float32_matmul_precision(const char* precision) {
  return run("set_float32_matmul_precision", {}, [&] {
    std::string p = precision == nullptr ? "" : precision;
    if (p != "highest" && p != "high" && p != "medium")
      throw std::invalid_argument("float32 matmul precision must be highest, high or medium, not '" + p + "'");
    at::globalContext().setFloat32MatmulPrecision(p);
  });
}

// 0 highest, 1 high, 2 medium; -1 on failure (libtorch 2.9+ refuses to answer after a mix of its legacy and new
// precision settings).
API int oml_get_float32_matmul_precision() {
  int result = -1;
  run("get_float32_matmul_precision", {}, [&] {
    switch (at::globalContext().float32MatmulPrecision()) {
      case at::Float32MatmulPrecision::HIGHEST: result = 0; break;
      case at::Float32MatmulPrecision::HIGH: result = 1; break;
      default: result = 2; break;
    }
  });
  return result;
}

API int oml_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }
API void oml_set_grad_enabled(int enabled) { at::GradMode::set_enabled(enabled != 0); }

API int oml_cuda_is_available() {
  try { return torch::cuda::is_available() ? 1 : 0; } catch (...) { return 0; }
}
API int oml_cuda_device_count() {
  try { return static_cast<int>(torch::cuda::device_count()); } catch (...) { return 0; }
}
API int oml_cuda_synchronize(int device) {
  return run("cuda_synchronize", {}, [&] { torch::cuda::synchronize(device); });
}

#ifndef OML_NO_PROFILER
// libtorch's own profiler (Kineto): the operators run on the host and, with cuda, the kernels and copies run on the
// devices, written by oml_profiler_stop as a Chrome trace (the format torch.profiler's export_chrome_trace writes).
// One profile at a time per process.
API int oml_profiler_start(int cuda, int record_shapes) {
  return run("profiler_start", {}, [&] {
    namespace P = torch::profiler::impl;
    std::set<P::ActivityType> activities{P::ActivityType::CPU};
    if (cuda) activities.insert(P::ActivityType::CUDA);
    P::ProfilerConfig config(P::ProfilerState::KINETO, record_shapes != 0);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  });
}
// A named range on the profile's host timeline (what torch.profiler.record_function makes): begin returns a handle
// (null when no profiler records, then end does nothing), end closes it. Kernels launched inside fall in the range.
API void* oml_record_begin(const char* name) {
  try {
    auto* rf = new at::RecordFunction(at::RecordScope::USER_SCOPE);
    if (!rf->isActive()) { delete rf; return nullptr; }
    rf->before(std::string(name));  // the std::string overload keeps its own copy (the caller frees name)
    return rf;
  } catch (...) {
    return nullptr;
  }
}
API void oml_record_end(void* handle) {
  if (handle == nullptr) return;
  auto* rf = static_cast<at::RecordFunction*>(handle);
  try { rf->end(); } catch (...) {}
  delete rf;
}
static void json_string(std::ostream& o, const std::string& s) {
  o << '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o << '\\' << c;
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o << b; }
    else o << c;
  }
  o << '"';
}
// KinetoEvent's times are in microseconds up to libtorch 2.0 (startUs, durationUs) and in nanoseconds after
// (startNs, durationNs): the first overload that compiles is taken.
template <typename E> static auto event_start_us(const E& e, int) -> decltype(e.startNs(), int64_t()) { return e.startNs() / 1000; }
template <typename E> static int64_t event_start_us(const E& e, long) { return e.startUs(); }
template <typename E> static auto event_duration_us(const E& e, int) -> decltype(e.durationNs(), int64_t()) { return e.durationNs() / 1000; }
template <typename E> static int64_t event_duration_us(const E& e, long) { return e.durationUs(); }
// A libtorch built without Kineto (Debian's) records the host's operators but cannot save a trace: the events are
// written here in the same Chrome trace format (host operators and ranges only).
static void save_events(const torch::autograd::profiler::ProfilerResult& result, const std::string& path) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << "{\"traceEvents\":[";
  bool first = true;
  for (const auto& e : result.events()) {
    bool device = e.deviceType() != c10::DeviceType::CPU;
    const char* cat = device ? "kernel" : e.scope() == static_cast<uint8_t>(at::RecordScope::USER_SCOPE) ? "user_annotation" : "cpu_op";
    f << (first ? "\n" : ",\n") << "{\"ph\":\"X\",\"cat\":\"" << cat << "\",\"name\":";
    json_string(f, e.name());
    f << ",\"ts\":" << event_start_us(e, 0) << ",\"dur\":" << event_duration_us(e, 0) << ",\"pid\":0,\"tid\":" << e.startThreadId()
      << ",\"args\":{\"correlation\":" << e.correlationId() << "}}";
    first = false;
  }
  f << "\n]}\n";
  if (!f) throw std::runtime_error("cannot write " + path);
}
API int oml_profiler_stop(const char* trace_path) {
  return run("profiler_stop", {}, [&] {
    auto result = torch::autograd::profiler::disableProfiler();
    if (trace_path == nullptr || *trace_path == 0) return;
    if (!result) throw std::runtime_error("the profiler returned no result (was it started?)");
    try {
      result->save(trace_path);
    } catch (const c10::Error&) {
      save_events(*result, trace_path);
    }
  });
}
#else
// Built without the profiler (native/build.sh falls back to that when its headers do not compile against a libtorch).
API int oml_profiler_start(int, int) {
  return run("profiler_start", {}, [] { throw std::runtime_error("this shim was built without libtorch's profiler (OML_NO_PROFILER)"); });
}
API int oml_profiler_stop(const char*) {
  return run("profiler_stop", {}, [] { throw std::runtime_error("this shim was built without libtorch's profiler (OML_NO_PROFILER)"); });
}
API void* oml_record_begin(const char*) { return nullptr; }
API void oml_record_end(void*) {}
#endif

// out: [allocated_current, allocated_peak, reserved_current, reserved_peak] in bytes.
API int oml_cuda_memory_stats(int device, int64_t* out) {
  return run("cuda_memory_stats", {}, [&] {
#ifdef OML_HAVE_CUDA_ALLOCATOR_STATS
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const size_t agg = 0;  // StatType::AGGREGATE
    out[0] = stats.allocated_bytes[agg].current;
    out[1] = stats.allocated_bytes[agg].peak;
    out[2] = stats.reserved_bytes[agg].current;
    out[3] = stats.reserved_bytes[agg].peak;
#else
    (void)device;
    (void)out;
    throw std::runtime_error("CUDA memory statistics are not available in this build of the shim (built without CUDA headers)");
#endif
  });
}

// out: [free, total] bytes of the device as the driver reports them (cudaMemGetInfo), plus the bytes that this
// process's caching allocator holds reserved but unallocated (out[2]), which it can hand out again without the driver.
API int oml_cuda_mem_get_info(int device, int64_t* out) {
  return run("cuda_mem_get_info", {}, [&] {
#ifdef OML_HAVE_CUDA_ALLOCATOR_STATS
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    size_t free_b = 0, total_b = 0;
    cudaError_t err = cudaMemGetInfo(&free_b, &total_b);
    if (err != cudaSuccess) throw std::runtime_error(std::string("cudaMemGetInfo failed: ") + cudaGetErrorString(err));
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const size_t agg = 0;
    out[0] = static_cast<int64_t>(free_b);
    out[1] = static_cast<int64_t>(total_b);
    out[2] = stats.reserved_bytes[agg].current - stats.allocated_bytes[agg].current;
#else
    (void)device;
    (void)out;
    throw std::runtime_error("CUDA memory information is not available in this build of the shim (built without CUDA headers)");
#endif
  });
}

API int oml_cuda_empty_cache() {
  return run("cuda_empty_cache", {}, [&] {
#ifdef OML_HAVE_CUDA_ALLOCATOR_STATS
    c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  });
}

API int oml_cuda_reset_peak(int device) {
  return run("cuda_reset_peak", {}, [&] {
#ifdef OML_HAVE_CUDA_ALLOCATOR_STATS
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#else
    (void)device;
#endif
  });
}

// ================================================================ tensor lifetime and metadata

API void oml_tensor_free(TH t) {
  if (t == nullptr) return;
  g_live.fetch_sub(1, std::memory_order_relaxed);
  delete t;
}

// Number of tensor handles handed out and not yet freed (for leak checks).
API int64_t oml_live_tensors() { return g_live.load(std::memory_order_relaxed); }

API int oml_tensor_dim(TH t) { return static_cast<int>(t->dim()); }

API int oml_tensor_shape(TH t, int64_t* out, int cap) {
  return run("shape", {t}, [&] {
    if (t->dim() > cap) throw std::invalid_argument("shape buffer too small");
    for (int64_t i = 0; i < t->dim(); ++i) out[i] = t->size(i);
  });
}

API int64_t oml_tensor_numel(TH t) { return t->numel(); }
API int oml_tensor_dtype(TH t) { return from_scalar_type(t->scalar_type()); }
API int oml_tensor_device_type(TH t) { return t->device().is_cuda() ? 1 : (t->device().is_cpu() ? 0 : -1); }
API int oml_tensor_device_index(TH t) { return t->device().has_index() ? t->device().index() : 0; }
API int oml_tensor_requires_grad(TH t) { return t->requires_grad() ? 1 : 0; }
API int oml_tensor_is_contiguous(TH t) { return t->is_contiguous() ? 1 : 0; }
API int oml_tensor_is_leaf(TH t) { return t->is_leaf() ? 1 : 0; }

API int oml_tensor_set_requires_grad(TH t, int on) {
  return run("requires_grad_", {t}, [&] { t->set_requires_grad(on != 0); });
}

API int oml_tensor_item(TH t, double* out) {
  return run("item", {t}, [&] { *out = t->item<double>(); });
}

API int oml_tensor_item_int64(TH t, int64_t* out) {
  return run("item", {t}, [&] { *out = t->item<int64_t>(); });
}

API char* oml_tensor_to_string(TH t) {
  try {
    std::ostringstream s;
    s << *t;
    std::string str = s.str();
    char* out = static_cast<char*>(std::malloc(str.size() + 1));
    std::memcpy(out, str.c_str(), str.size() + 1);
    return out;
  } catch (const std::exception& e) {
    set_error("to_string", {t}, e.what());
    return nullptr;
  }
}
API void oml_string_free(char* s) { std::free(s); }

// ================================================================ creation and data transfer

API TH oml_from_data(const void* data, const int64_t* shape, int ndim, int dtype, int dev_type, int dev_index) {
  return wrap("from_data", {}, [&] {
    auto st = to_scalar_type(dtype);
    auto dev = to_device(dev_type, dev_index);
    // For a GPU, stage in pinned memory and copy asynchronously: the caller's buffer is already copied, the caching
    // host allocator keeps the staging buffer until the copy has run, and the host does not wait for the device
    // (a copy from pageable memory would synchronise the stream, once per training batch).
    auto cpu = at::empty(dims(shape, ndim), at::TensorOptions().dtype(st).pinned_memory(dev.is_cuda()));
    std::memcpy(cpu.data_ptr(), data, static_cast<size_t>(cpu.numel()) * cpu.element_size());
    return dev.is_cpu() ? cpu : cpu.to(dev, /*non_blocking=*/dev.is_cuda());
  });
}

// Copies the tensor's elements (converted to `dtype`, row-major) into dst, which holds nbytes: one copy straight into
// dst (from the device, converting and gathering strides as it goes), no intermediate host tensor.
API int oml_copy_to(TH t, void* dst, int64_t nbytes, int dtype) {
  return run("copy_to", {t}, [&] {
    auto st = to_scalar_type(dtype);
    int64_t need = t->numel() * static_cast<int64_t>(c10::elementSize(st));
    if (need != nbytes)
      throw std::invalid_argument("destination holds " + std::to_string(nbytes) + " bytes, tensor needs " +
                                  std::to_string(need));
    if (need == 0) return;
    auto out = at::from_blob(dst, t->sizes(), at::TensorOptions().dtype(st).device(at::kCPU));
    at::NoGradGuard no_grad;
    out.copy_(t->detach());
  });
}

API TH oml_empty(const int64_t* shape, int ndim, int dtype, int dt, int di) {
  return wrap("empty", {}, [&] { return at::empty(dims(shape, ndim), options(dtype, dt, di)); });
}
API TH oml_zeros(const int64_t* shape, int ndim, int dtype, int dt, int di) {
  return wrap("zeros", {}, [&] { return at::zeros(dims(shape, ndim), options(dtype, dt, di)); });
}
API TH oml_ones(const int64_t* shape, int ndim, int dtype, int dt, int di) {
  return wrap("ones", {}, [&] { return at::ones(dims(shape, ndim), options(dtype, dt, di)); });
}
API TH oml_full(const int64_t* shape, int ndim, double value, int dtype, int dt, int di) {
  return wrap("full", {}, [&] { return at::full(dims(shape, ndim), value, options(dtype, dt, di)); });
}
API TH oml_arange(double start, double end, double step, int dtype, int dt, int di) {
  return wrap("arange", {}, [&] { return at::arange(start, end, step, options(dtype, dt, di)); });
}
API TH oml_eye(int64_t n, int dtype, int dt, int di) {
  return wrap("eye", {}, [&] { return at::eye(n, options(dtype, dt, di)); });
}
API TH oml_rand(const int64_t* shape, int ndim, int dtype, int dt, int di, GH gen) {
  return wrap("rand", {}, [&] { return at::rand(dims(shape, ndim), gen_arg(gen), options(dtype, dt, di)); });
}
API TH oml_randn(const int64_t* shape, int ndim, int dtype, int dt, int di, GH gen) {
  return wrap("randn", {}, [&] { return at::randn(dims(shape, ndim), gen_arg(gen), options(dtype, dt, di)); });
}
API TH oml_randint(int64_t low, int64_t high, const int64_t* shape, int ndim, int dtype, int dt, int di, GH gen) {
  return wrap("randint", {}, [&] { return at::randint(low, high, dims(shape, ndim), gen_arg(gen), options(dtype, dt, di)); });
}
API TH oml_zeros_like(TH t) {
  return wrap("zeros_like", {t}, [&] { return at::zeros_like(*t); });
}

// ================================================================ conversion, copies, autograd

API TH oml_to(TH t, int dtype, int dt, int di, int copy) {
  return wrap("to", {t}, [&] {
    return t->to(to_device(dt, di), to_scalar_type(dtype), /*non_blocking=*/false, /*copy=*/copy != 0);
  });
}
API TH oml_to_dtype(TH t, int dtype) {
  return wrap("to", {t}, [&] { return t->to(to_scalar_type(dtype)); });
}
API TH oml_clone(TH t) { return wrap("clone", {t}, [&] { return t->clone(); }); }
API TH oml_detach(TH t) { return wrap("detach", {t}, [&] { return t->detach(); }); }
API TH oml_contiguous(TH t) { return wrap("contiguous", {t}, [&] { return t->contiguous(); }); }
API TH oml_alias(TH t) { return wrap("alias", {t}, [&] { return *t; }); }

API int oml_copy_(TH dst, TH src) {
  return run("copy_", {dst, src}, [&] { dst->copy_(*src); });
}
API int oml_fill_(TH t, double v) {
  return run("fill_", {t}, [&] { t->fill_(v); });
}
API int oml_zero_(TH t) {
  return run("zero_", {t}, [&] { t->zero_(); });
}

API int oml_backward(TH t, TH grad, int retain_graph) {
  return run("backward", {t, grad}, [&] {
    at::Tensor g = grad ? *grad : at::Tensor();
    t->backward(g, retain_graph != 0 ? c10::optional<bool>(true) : c10::nullopt, false);
  });
}

// Returns 0 and *out = nullptr when the gradient is undefined.
API int oml_grad(TH t, TH* out) {
  return run("grad", {t}, [&] {
    const at::Tensor& g = t->grad();
    *out = g.defined() ? own(g) : nullptr;
  });
}

API int oml_set_grad(TH t, TH g) {
  return run("set_grad", {t, g}, [&] { t->mutable_grad() = g ? *g : at::Tensor(); });
}

// Points the tensor at another tensor's data (Python's `param.data = src`), keeping its autograd identity (a leaf
// stays the same leaf, with its requires_grad): weight sharding (ZeRO-3) empties a parameter at rest and points it
// at the gathered weights while a layer runs. The old storage is freed once nothing else holds it.
API int oml_tensor_set_data(TH t, TH src) {
  return run("set_data", {t, src}, [&] { t->set_data(*src); });
}

// Gradients of `outputs` with respect to `inputs` (torch.autograd.grad); out receives n_in handles.
API int oml_autograd_grad(const TH* outputs, const TH* grad_outputs, int n_out, const TH* inputs, int n_in,
                          int create_graph, TH* out) {
  return run("autograd_grad", {}, [&] {
    auto outs = tensor_list(outputs, n_out);
    std::vector<at::Tensor> gos;
    if (grad_outputs) gos = tensor_list(grad_outputs, n_out);
    auto ins = tensor_list(inputs, n_in);
    auto res = torch::autograd::grad(outs, ins, gos, /*retain_graph=*/c10::nullopt, create_graph != 0,
                                     /*allow_unused=*/true);
    for (int i = 0; i < n_in; ++i) out[i] = res[i].defined() ? own(res[i]) : nullptr;
  });
}

// ================================================================ elementwise

// Keep these codes in sync with Oml.Engine.Native.Unary (C#).
API TH oml_unary(int op, TH x) {
  static const char* names[] = {"neg",  "exp",     "log",  "sqrt", "rsqrt", "abs",  "tanh",       "sigmoid",
                                "relu", "silu",    "gelu", "gelu_tanh", "sin", "cos", "logical_not", "floor",
                                "ceil", "isfinite", "sign", "square", "log1p", "reciprocal", "isnan"};
  const char* name = (op >= 0 && op < static_cast<int>(sizeof(names) / sizeof(names[0]))) ? names[op] : "unary";
  return wrap(name, {x}, [&]() -> at::Tensor {
    const at::Tensor& a = *x;
    switch (op) {
      case 0: return at::neg(a);
      case 1: return at::exp(a);
      case 2: return at::log(a);
      case 3: return at::sqrt(a);
      case 4: return at::rsqrt(a);
      case 5: return at::abs(a);
      case 6: return at::tanh(a);
      case 7: return at::sigmoid(a);
      case 8: return at::relu(a);
      case 9: return at::silu(a);
      case 10: return at::gelu(a);
      case 11: return at::gelu(a, "tanh");
      case 12: return at::sin(a);
      case 13: return at::cos(a);
      case 14: return at::logical_not(a);
      case 15: return at::floor(a);
      case 16: return at::ceil(a);
      case 17: return at::isfinite(a);
      case 18: return at::sign(a);
      case 19: return at::square(a);
      case 20: return at::log1p(a);
      case 21: return at::reciprocal(a);
      case 22: return at::isnan(a);
    }
    throw std::invalid_argument("unknown unary op " + std::to_string(op));
  });
}

// Keep in sync with Oml.Engine.Native.Binary (C#). alpha applies to add/sub only.
static at::Tensor binary_impl(int op, const at::Tensor& a, const at::Tensor& b, double alpha_value) {
  at::Scalar alpha = scalar_for(a, alpha_value);
  switch (op) {
    case 0: return at::add(a, b, alpha);
    case 1: return at::sub(a, b, alpha);
    case 2: return at::mul(a, b);
    case 3: return at::div(a, b);
    case 4: return at::pow(a, b);
    case 5: return at::eq(a, b);
    case 6: return at::ne(a, b);
    case 7: return at::lt(a, b);
    case 8: return at::le(a, b);
    case 9: return at::gt(a, b);
    case 10: return at::ge(a, b);
    case 11: return at::maximum(a, b);
    case 12: return at::minimum(a, b);
    case 13: return at::logical_and(a, b);
    case 14: return at::logical_or(a, b);
    case 15: return at::remainder(a, b);
    case 16: return at::floor_divide(a, b);
    case 17: return at::bitwise_and(a, b);
    case 18: return at::bitwise_or(a, b);
  }
  throw std::invalid_argument("unknown binary op " + std::to_string(op));
}

static const char* binary_name(int op) {
  static const char* names[] = {"add",     "sub",        "mul",         "div",        "pow",
                                "eq",      "ne",         "lt",          "le",         "gt",
                                "ge",      "maximum",    "minimum",     "logical_and", "logical_or",
                                "remainder", "floor_divide", "bitwise_and", "bitwise_or"};
  return (op >= 0 && op < static_cast<int>(sizeof(names) / sizeof(names[0]))) ? names[op] : "binary";
}

API TH oml_binary(int op, TH a, TH b, double alpha) {
  return wrap(binary_name(op), {a, b}, [&] { return binary_impl(op, *a, *b, alpha); });
}

API TH oml_binary_scalar(int op, TH a, double s) {
  return wrap(binary_name(op), {a}, [&]() -> at::Tensor {
    at::Scalar sc = scalar_for(*a, s);
    switch (op) {
      case 0: return at::add(*a, sc);
      case 1: return at::sub(*a, sc);
      case 2: return at::mul(*a, sc);
      case 3: return at::div(*a, sc);
      case 4: return at::pow(*a, sc);
      case 5: return at::eq(*a, sc);
      case 6: return at::ne(*a, sc);
      case 7: return at::lt(*a, sc);
      case 8: return at::le(*a, sc);
      case 9: return at::gt(*a, sc);
      case 10: return at::ge(*a, sc);
      case 15: return at::remainder(*a, sc);
      case 16: return at::floor_divide(*a, sc);
    }
    throw std::invalid_argument(std::string("operation ") + binary_name(op) + " has no scalar form");
  });
}

// scalar - tensor, scalar / tensor, scalar ** tensor.
API TH oml_scalar_binary(int op, double s, TH b) {
  return wrap(binary_name(op), {b}, [&]() -> at::Tensor {
    at::Scalar sc = scalar_for(*b, s);
    switch (op) {
      case 1: return at::rsub(*b, sc);
      case 3: return at::mul(at::reciprocal(*b), sc);
      case 4: return at::pow(sc, *b);
    }
    throw std::invalid_argument(std::string("operation ") + binary_name(op) + " has no scalar-first form");
  });
}

// In place: a op= b.
API int oml_binary_(int op, TH a, TH b, double alpha) {
  return run(binary_name(op), {a, b}, [&] {
    switch (op) {
      case 0: a->add_(*b, scalar_for(*a, alpha)); return;
      case 1: a->sub_(*b, scalar_for(*a, alpha)); return;
      case 2: a->mul_(*b); return;
      case 3: a->div_(*b); return;
    }
    throw std::invalid_argument(std::string("operation ") + binary_name(op) + " has no in-place form");
  });
}

API int oml_binary_scalar_(int op, TH a, double s) {
  return run(binary_name(op), {a}, [&] {
    at::Scalar sc = scalar_for(*a, s);
    switch (op) {
      case 0: a->add_(sc); return;
      case 1: a->sub_(sc); return;
      case 2: a->mul_(sc); return;
      case 3: a->div_(sc); return;
    }
    throw std::invalid_argument(std::string("operation ") + binary_name(op) + " has no in-place scalar form");
  });
}

API int oml_lerp_(TH a, TH end, double weight) {
  return run("lerp_", {a, end}, [&] { a->lerp_(*end, weight); });
}

API TH oml_clamp(TH x, double lo, double hi, int has_lo, int has_hi) {
  return wrap("clamp", {x}, [&] {
    c10::optional<at::Scalar> l = has_lo ? c10::optional<at::Scalar>(scalar_for(*x, lo)) : c10::nullopt;
    c10::optional<at::Scalar> h = has_hi ? c10::optional<at::Scalar>(scalar_for(*x, hi)) : c10::nullopt;
    return at::clamp(*x, l, h);
  });
}

API TH oml_where(TH cond, TH a, TH b) {
  return wrap("where", {cond, a, b}, [&] { return at::where(*cond, *a, *b); });
}
API TH oml_masked_fill(TH x, TH mask, double v) {
  return wrap("masked_fill", {x, mask}, [&] { return x->masked_fill(*mask, v); });
}
API int oml_masked_fill_(TH x, TH mask, double v) {
  return run("masked_fill_", {x, mask}, [&] { x->masked_fill_(*mask, v); });
}
API TH oml_triu(TH x, int64_t diagonal) {
  return wrap("triu", {x}, [&] { return at::triu(*x, diagonal); });
}
API TH oml_tril(TH x, int64_t diagonal) {
  return wrap("tril", {x}, [&] { return at::tril(*x, diagonal); });
}

// ================================================================ linear algebra and nn functions

API TH oml_matmul(TH a, TH b) {
  return wrap("matmul", {a, b}, [&] { return at::matmul(*a, *b); });
}
// ---------------------------------------------------------------- weight gradients accumulated in place
// Gradient accumulation over micro-batches normally computes each weight's gradient as a new tensor (one matrix
// product) and then adds it to .grad (AccumulateGrad: one more pass over the whole gradient, per weight and
// micro-batch: at 4.5B bfloat16 parameters 27 GB of memory traffic a micro-batch). While oml_weight_grad_in_place(1)
// holds on the calling thread, a linear layer without bias whose 2-d weight is a leaf, built on that thread in that time,
// computes its weight gradient into .grad directly (addmm_ with beta 1, the one matrix product) once .grad exists and
// matches the weight. The first micro-batch (no .grad yet), a backward pass that builds a graph (create_graph),
// autograd::grad and anything else take the usual path. The setting is per thread (the forward pass decides, on its
// caller's thread), so trainings on other threads of the process are not affected. Only a single-process training
// step should switch it on.
thread_local bool t_weight_grad_in_place = false;
std::atomic<int64_t> g_weight_grad_in_place_hits{0};

namespace {
struct LinearWeightGradInPlace : public torch::autograd::Function<LinearWeightGradInPlace> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    return at::linear(x, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const at::Tensor& g = grads[0];
    at::Tensor dx, dw;
    auto g2 = g.reshape({-1, g.size(-1)});
    if (ctx->needs_input_grad(0)) dx = at::matmul(g, w).view(x.sizes());
    if (ctx->needs_input_grad(1)) {
      auto x2 = x.reshape({-1, x.size(-1)});
      at::Tensor current = w.grad();
      // A backward pass into .grad (tensor.backward()) has no exec info; autograd::grad (and backward with inputs) has,
      // and returns the gradient to its caller instead of accumulating it: that takes the usual path.
      auto exec_info = torch::autograd::get_current_graph_task_exec_info();
      bool into_grad = exec_info != nullptr && exec_info->empty();
      if (into_grad && !at::GradMode::is_enabled() && current.defined() && current.sizes() == w.sizes() &&
          current.scalar_type() == g2.scalar_type() && current.scalar_type() == x2.scalar_type() &&
          current.device() == w.device() && current.is_contiguous() && !current.requires_grad()) {
        const_cast<at::Tensor&>(w).mutable_grad().addmm_(g2.t(), x2);
        g_weight_grad_in_place_hits.fetch_add(1, std::memory_order_relaxed);
      } else {
        dw = at::mm(g2.t(), x2);
      }
    }
    return {dx, dw};
  }
};
}  // namespace

// Sets whether this thread's linear layers accumulate weight gradients in place (above); returns the previous setting.
API int oml_weight_grad_in_place(int on) {
  bool previous = t_weight_grad_in_place;
  t_weight_grad_in_place = on != 0;
  return previous ? 1 : 0;
}
// Weight gradients added in place so far, in the whole process (for tests and diagnostics).
API int64_t oml_weight_grad_in_place_hits() { return g_weight_grad_in_place_hits.load(std::memory_order_relaxed); }

API TH oml_linear(TH x, TH w, TH b) {
  return wrap("linear", {x, w, b}, [&] {
    if (!b && t_weight_grad_in_place && at::GradMode::is_enabled() && w->is_leaf() && w->requires_grad() && w->dim() == 2 &&
        x->dim() >= 2 && x->scalar_type() == w->scalar_type() && x->device() == w->device())
      return LinearWeightGradInPlace::apply(*x, *w);
    return at::linear(*x, *w, b ? c10::optional<at::Tensor>(*b) : c10::nullopt);
  });
}
API TH oml_softmax(TH x, int64_t dim) {
  return wrap("softmax", {x}, [&] { return at::softmax(*x, dim); });
}
API TH oml_log_softmax(TH x, int64_t dim) {
  return wrap("log_softmax", {x}, [&] { return at::log_softmax(*x, dim); });
}
API TH oml_embedding(TH weight, TH ids) {
  return wrap("embedding", {weight, ids}, [&] { return at::embedding(*weight, *ids); });
}
// The mask is drawn from the generator, or the device's default one without it: bernoulli with keep probability 1 - p,
// scaled by 1 / (1 - p), as libtorch's own dropout does on the CPU. On CUDA at::dropout would use its fused kernel,
// whose draws differ: one formula everywhere keeps a generator seeded s drawing what the default does after
// ManualSeed(s) on every device.
API TH oml_dropout(TH x, double p, int train, GH gen) {
  return wrap("dropout", {x}, [&] {
    if (train == 0 || p == 0) return at::dropout(*x, p, train != 0);
    if (p == 1) return *x * at::zeros({}, x->options());
    at::Tensor noise = at::empty_like(*x).bernoulli_(1 - p, gen_arg(gen));
    noise.div_(1 - p);
    return *x * noise;
  });
}
// reduction: 0 none, 1 mean, 2 sum (at::Reduction).
API TH oml_cross_entropy(TH logits, TH target, int64_t ignore_index, int reduction, double label_smoothing) {
  return wrap("cross_entropy", {logits, target}, [&] {
    return at::cross_entropy_loss(*logits, *target, c10::nullopt, reduction, ignore_index, label_smoothing);
  });
}
API TH oml_mse_loss(TH a, TH b, int reduction) {
  return wrap("mse_loss", {a, b}, [&] { return at::mse_loss(*a, *b, reduction); });
}
API TH oml_rms_norm(TH x, TH weight, double eps) {
  // Computed in float32 and cast back, as Hugging Face's LlamaRMSNorm does.
  return wrap("rms_norm", {x, weight}, [&] {
#if defined(OML_WITH_KERNELS)
    if (weight && fused::rms_norm_fits(*x, *weight)) return fused::RmsNorm::apply(*x, *weight, eps);
#endif
    auto dt = x->scalar_type();
    bool low = dt == at::kHalf || dt == at::kBFloat16;
    auto h = low ? x->to(at::kFloat) : *x;
    auto var = h.pow(2).mean(-1, /*keepdim=*/true);
    h = h * at::rsqrt(var + eps);
    return weight ? (*weight) * h.to(dt) : h.to(dt);
  });
}
// Rotary embeddings (transformers' apply_rotary_pos_emb) of x [B, H, T, D] with cos, sin [B or 1, 1, T, D]:
// x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]). One fused kernel each way on CUDA.
API TH oml_rope(TH x, TH cos, TH sin) {
  return wrap("rope", {x, cos, sin}, [&] {
#if defined(OML_WITH_KERNELS)
    if (fused::rope_fits(*x, *cos, *sin)) return fused::Rope::apply(*x, *cos, *sin);
#endif
    int64_t half = x->size(-1) / 2;
    return *x * *cos + at::cat({-x->narrow(-1, half, half), x->narrow(-1, 0, half)}, -1) * *sin;
  });
}
// The SwiGLU activation of Llama's MLP: silu(gate) * up. One fused kernel each way on CUDA.
API TH oml_swiglu(TH gate, TH up) {
  return wrap("swiglu", {gate, up}, [&] {
#if defined(OML_WITH_KERNELS)
    if (fused::swiglu_fits(*gate, *up)) return fused::SwiGlu::apply(*gate, *up);
#endif
    return at::silu(*gate) * *up;
  });
}
// 1 when the fused CUDA kernels (native/oml_kernels.cu) are built in, not switched off with OML_FUSED_KERNELS=0, and
// run on the first CUDA device.
API int oml_fused_kernels() {
#if defined(OML_WITH_KERNELS)
  try {
    return fused_enabled() && torch::cuda::is_available() && fused::runs_on(0) ? 1 : 0;
  } catch (...) {
    return 0;
  }
#else
  return 0;
#endif
}
API TH oml_layer_norm(TH x, const int64_t* shape, int ndim, TH w, TH b, double eps) {
  return wrap("layer_norm", {x, w, b}, [&] {
    return at::layer_norm(*x, dims(shape, ndim), w ? c10::optional<at::Tensor>(*w) : c10::nullopt,
                          b ? c10::optional<at::Tensor>(*b) : c10::nullopt, eps);
  });
}

// Attention over [B, H, T, D] tensors. mask: optional boolean (true = attend) or additive float mask,
// broadcastable to [B, H, Tq, Tk]. Uses the fused kernel where libtorch has it (2.1+).
// cuDNN's attention builds an execution plan for each new shape on its first call: on an H100 with PyTorch 2.11 (cuDNN
// 9.19), whose dispatch puts cuDNN first for causal and masked calls alike, 38 ms median for a new [rows, 32, 16, 64]
// bfloat16 shape against 0.04-0.09 ms for flash and memory-efficient attention (bench/gpu/sdpa_shapes.py). Training's
// shapes repeat, so there it may pay; an inference pass (a server's steps, verification batches) sees a new batch shape
// nearly every call (with cuDNN, `oml serve` answered 1,024 keys 2-4x slower: docs/benchmarks.md, "cuDNN's attention
// plans"), so without gradients the dispatch is kept to flash / memory-efficient attention. OML_SDPA_CUDNN=1 allows cuDNN
// everywhere (libtorch's own dispatch), 0 nowhere; unset (or any other value): only where gradients flow. The switch
// is libtorch's process-wide flag, set around the call: a thread that trains while another infers may see it off for a
// call (another backend, the same function); and activation checkpointing's first forward, run without gradients,
// takes flash where its recomputation may take cuDNN (the same function, rounded apart in bfloat16).
#if OML_TORCH_AT_LEAST(2, 4)
static int sdpa_cudnn_mode() {
  static const int mode = [] {
    const char* v = std::getenv("OML_SDPA_CUDNN");
    if (v != nullptr && std::strcmp(v, "1") == 0) return 1;
    if (v != nullptr && std::strcmp(v, "0") == 0) return 0;
    return -1;
  }();
  return mode;
}
#endif
API TH oml_sdpa(TH q, TH k, TH v, TH mask, double dropout_p, int is_causal, double scale, int has_scale) {
  return wrap("scaled_dot_product_attention", {q, k, v, mask}, [&]() -> at::Tensor {
    c10::optional<at::Tensor> m = mask ? c10::optional<at::Tensor>(*mask) : c10::nullopt;
#if OML_TORCH_AT_LEAST(2, 1)
    c10::optional<double> s = has_scale ? c10::optional<double>(scale) : c10::nullopt;
#if OML_TORCH_AT_LEAST(2, 4)
    const int mode = sdpa_cudnn_mode();
    const bool grads = at::GradMode::is_enabled() && (q->requires_grad() || k->requires_grad() || v->requires_grad());
    auto& ctx = at::globalContext();
    if (mode != 1 && !(mode == -1 && grads) && ctx.userEnabledCuDNNSDP()) {
      struct Restore { ~Restore() { at::globalContext().setSDPUseCuDNN(true); } } restore;
      ctx.setSDPUseCuDNN(false);
      return at::scaled_dot_product_attention(*q, *k, *v, m, dropout_p, is_causal != 0, s);
    }
#endif
    return at::scaled_dot_product_attention(*q, *k, *v, m, dropout_p, is_causal != 0, s);
#else
    double sc = has_scale ? scale : 1.0 / std::sqrt(static_cast<double>(q->size(-1)));
    auto scores = at::matmul(*q, k->transpose(-2, -1)) * sc;
    int64_t tq = q->size(-2), tk = k->size(-2);
    if (is_causal) {
      auto causal = at::ones({tq, tk}, q->options().dtype(at::kBool)).tril();
      scores = scores.masked_fill(causal.logical_not(), -std::numeric_limits<double>::infinity());
    }
    if (m) {
      if (m->scalar_type() == at::kBool)
        scores = scores.masked_fill(m->logical_not(), -std::numeric_limits<double>::infinity());
      else
        scores = scores + *m;
    }
    auto p = at::softmax(scores, -1);
    if (dropout_p > 0) p = at::dropout(p, dropout_p, true);
    return at::matmul(p, *v);
#endif
  });
}

// ================================================================ indexing and shape

API TH oml_index_select(TH x, int64_t dim, TH idx) {
  return wrap("index_select", {x, idx}, [&] { return at::index_select(*x, dim, *idx); });
}
API TH oml_gather(TH x, int64_t dim, TH idx) {
  return wrap("gather", {x, idx}, [&] { return at::gather(*x, dim, *idx); });
}
API TH oml_scatter(TH x, int64_t dim, TH idx, TH src) {
  return wrap("scatter", {x, idx, src}, [&] { return at::scatter(*x, dim, *idx, *src); });
}
API TH oml_scatter_add(TH x, int64_t dim, TH idx, TH src) {
  return wrap("scatter_add", {x, idx, src}, [&] { return at::scatter_add(*x, dim, *idx, *src); });
}
API TH oml_scatter_value(TH x, int64_t dim, TH idx, double v) {
  return wrap("scatter", {x, idx}, [&] { return at::scatter(*x, dim, *idx, v); });
}
API TH oml_index_tensor(TH x, TH idx) {
  return wrap("index", {x, idx}, [&] {
    c10::List<c10::optional<at::Tensor>> l;
    l.push_back(*idx);
    return x->index(l);
  });
}
API TH oml_masked_select(TH x, TH mask) {
  return wrap("masked_select", {x, mask}, [&] { return at::masked_select(*x, *mask); });
}
API TH oml_cat(const TH* ts, int n, int64_t dim) {
  return wrap("cat", {n > 0 ? ts[0] : nullptr}, [&] { return at::cat(tensor_list(ts, n), dim); });
}
API TH oml_stack(const TH* ts, int n, int64_t dim) {
  return wrap("stack", {n > 0 ? ts[0] : nullptr}, [&] { return at::stack(tensor_list(ts, n), dim); });
}
API TH oml_narrow(TH x, int64_t dim, int64_t start, int64_t length) {
  return wrap("narrow", {x}, [&] { return x->narrow(dim, start, length); });
}
API TH oml_slice(TH x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  return wrap("slice", {x}, [&] { return x->slice(dim, start, end, step); });
}
API TH oml_select(TH x, int64_t dim, int64_t index) {
  return wrap("select", {x}, [&] { return x->select(dim, index); });
}
API TH oml_view(TH x, const int64_t* shape, int n) {
  return wrap("view", {x}, [&] { return x->view(dims(shape, n)); });
}
API TH oml_reshape(TH x, const int64_t* shape, int n) {
  return wrap("reshape", {x}, [&] { return x->reshape(dims(shape, n)); });
}
API TH oml_expand(TH x, const int64_t* shape, int n) {
  return wrap("expand", {x}, [&] { return x->expand(dims(shape, n)); });
}
API TH oml_repeat(TH x, const int64_t* reps, int n) {
  return wrap("repeat", {x}, [&] { return x->repeat(dims(reps, n)); });
}
API TH oml_repeat_interleave(TH x, int64_t repeats, int64_t dim) {
  return wrap("repeat_interleave", {x}, [&] { return x->repeat_interleave(repeats, dim); });
}
API TH oml_permute(TH x, const int64_t* order, int n) {
  return wrap("permute", {x}, [&] { return x->permute(dims(order, n)); });
}
API TH oml_transpose(TH x, int64_t d0, int64_t d1) {
  return wrap("transpose", {x}, [&] { return x->transpose(d0, d1); });
}
API TH oml_squeeze(TH x, int64_t dim) {
  return wrap("squeeze", {x}, [&] { return x->squeeze(dim); });
}
API TH oml_unsqueeze(TH x, int64_t dim) {
  return wrap("unsqueeze", {x}, [&] { return x->unsqueeze(dim); });
}
API TH oml_flatten(TH x, int64_t start, int64_t end) {
  return wrap("flatten", {x}, [&] { return x->flatten(start, end); });
}
API TH oml_flip(TH x, const int64_t* d, int n) {
  return wrap("flip", {x}, [&] { return x->flip(dims(d, n)); });
}

// ================================================================ reductions

// Keep in sync with Oml.Engine.Native.Reduce (C#). ndims == 0 reduces over all elements.
API TH oml_reduce(int op, TH x, const int64_t* d, int ndims, int keepdim) {
  static const char* names[] = {"sum", "mean", "amax", "amin", "prod", "norm", "all", "any", "logsumexp", "var"};
  const char* name = (op >= 0 && op < 10) ? names[op] : "reduce";
  return wrap(name, {x}, [&]() -> at::Tensor {
    bool kd = keepdim != 0;
    at::IntArrayRef ds = dims(d, ndims);
    std::vector<int64_t> all_dims;
    if (ndims == 0)
      for (int64_t i = 0; i < x->dim(); ++i) all_dims.push_back(i);
    at::IntArrayRef dd = ndims == 0 ? at::IntArrayRef(all_dims) : ds;
    switch (op) {
      case 0: return ndims == 0 && !kd ? x->sum() : x->sum(dd, kd);
      case 1: return ndims == 0 && !kd ? x->mean() : x->mean(dd, kd);
      case 2: return x->amax(dd, kd);
      case 3: return x->amin(dd, kd);
      case 4:
        if (ndims == 0) return x->prod();
        if (ndims != 1) throw std::invalid_argument("prod reduces one dimension at a time");
        return x->prod(d[0], kd);
      case 5: return ndims == 0 && !kd ? x->norm() : at::norm(*x, 2, dd, kd);
      case 6:
        if (ndims == 0) return x->all();
        if (ndims != 1) throw std::invalid_argument("all reduces one dimension at a time");
        return x->all(d[0], kd);
      case 7:
        if (ndims == 0) return x->any();
        if (ndims != 1) throw std::invalid_argument("any reduces one dimension at a time");
        return x->any(d[0], kd);
      case 8: return at::logsumexp(*x, dd, kd);
      case 9: return at::var(*x, dd, /*unbiased=*/true, kd);
    }
    throw std::invalid_argument("unknown reduction " + std::to_string(op));
  });
}

// Returns (values, indices) along dim.
API int oml_max_dim(TH x, int64_t dim, int keepdim, TH* values, TH* indices) {
  return run("max", {x}, [&] {
    auto r = at::max(*x, dim, keepdim != 0);
    *values = own(std::get<0>(r));
    *indices = own(std::get<1>(r));
  });
}
API int oml_min_dim(TH x, int64_t dim, int keepdim, TH* values, TH* indices) {
  return run("min", {x}, [&] {
    auto r = at::min(*x, dim, keepdim != 0);
    *values = own(std::get<0>(r));
    *indices = own(std::get<1>(r));
  });
}
API TH oml_argmax(TH x, int64_t dim, int has_dim, int keepdim) {
  return wrap("argmax", {x}, [&] {
    return at::argmax(*x, has_dim ? c10::optional<int64_t>(dim) : c10::nullopt, keepdim != 0);
  });
}
API int oml_topk(TH x, int64_t k, int64_t dim, int largest, int sorted, TH* values, TH* indices) {
  return run("topk", {x}, [&] {
    auto r = at::topk(*x, k, dim, largest != 0, sorted != 0);
    *values = own(std::get<0>(r));
    *indices = own(std::get<1>(r));
  });
}
API int oml_sort(TH x, int64_t dim, int descending, TH* values, TH* indices) {
  return run("sort", {x}, [&] {
    auto r = at::sort(*x, dim, descending != 0);
    *values = own(std::get<0>(r));
    *indices = own(std::get<1>(r));
  });
}
API TH oml_cumsum(TH x, int64_t dim) {
  return wrap("cumsum", {x}, [&] { return at::cumsum(*x, dim); });
}
API TH oml_multinomial(TH probs, int64_t n, int replacement, GH gen) {
  return wrap("multinomial", {probs}, [&] { return at::multinomial(*probs, n, replacement != 0, gen_arg(gen)); });
}

// ================================================================ optimisation

// One AdamW step (decoupled weight decay, as torch.optim.AdamW) over n parameters of one group.
// steps[i] is the parameter's step count after this step (1 on the first step). Parameters whose
// gradient is undefined must be left out by the caller. On CUDA with libtorch 2.1+ the fused kernel
// runs; elsewhere, the same arithmetic tensor by tensor.
API int oml_adamw_step(const TH* params, const TH* exp_avg, const TH* exp_avg_sq, const int64_t* steps, int n,
                       double lr, double beta1, double beta2, double eps, double weight_decay) {
  return run("adamw_step", {n > 0 ? params[0] : nullptr}, [&] {
    at::NoGradGuard no_grad;
    if (n == 0) return;
#if OML_TORCH_AT_LEAST(2, 1)
    bool fusable = true;
    for (int i = 0; i < n && fusable; ++i) {
      const at::Tensor& p = *params[i];
      fusable = p.is_cuda() && p.device() == params[0]->device() && p.scalar_type() == params[0]->scalar_type() &&
                at::isFloatingType(p.scalar_type()) && steps[i] == steps[0];
    }
    if (fusable) {
      std::vector<at::Tensor> ps, gs, ms, vs, ss;
      for (int i = 0; i < n; ++i) {
        ps.push_back(*params[i]);
        gs.push_back(params[i]->grad());
        ms.push_back(*exp_avg[i]);
        vs.push_back(*exp_avg_sq[i]);
        ss.push_back(at::full({}, static_cast<double>(steps[i]), params[i]->options().dtype(at::kFloat)));
      }
      at::_fused_adamw_(ps, gs, ms, vs, /*max_exp_avg_sqs=*/{}, ss, lr, beta1, beta2, weight_decay, eps,
                        /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/c10::nullopt,
                        /*found_inf=*/c10::nullopt);
      return;
    }
#endif
    for (int i = 0; i < n; ++i) {
      at::Tensor& p = *params[i];
      const at::Tensor& g = p.grad();
      if (!g.defined()) continue;
      double step = static_cast<double>(steps[i]);
      p.mul_(1.0 - lr * weight_decay);
      exp_avg[i]->lerp_(g, 1.0 - beta1);
      exp_avg_sq[i]->mul_(beta2).addcmul_(g, g, 1.0 - beta2);
      double bc1 = 1.0 - std::pow(beta1, step);
      double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, step));
      auto denom = (exp_avg_sq[i]->sqrt() / bc2_sqrt).add_(eps);
      p.addcdiv_(*exp_avg[i], denom, -lr / bc1);
    }
  });
}

// Clips the gradients of params[0..n) to a global L2 norm of at most max_norm and returns the norm before clipping as a
// 0-d float32 tensor on the gradients' device (undefined when no parameter has a gradient). Each gradient's norm is
// reduced in float32 straight from its own dtype (no float32 copy of a bfloat16 gradient: at 4.5B parameters that copy
// was 15 of the clip's 35 ms at 4.5B parameters on an H100), and the scaling is one foreach multiply per (device, dtype)
// group where libtorch has the tensor-scalar overload, as torch.nn.utils.clip_grad_norm_ does; the scale is applied
// unconditionally (a factor of 1 when within the bound), so nothing waits for the device.
static at::Tensor clip_grads(const TH* params, int n, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (int i = 0; i < n; ++i) {
    const at::Tensor& g = params[i]->grad();
    if (g.defined()) grads.push_back(g);
  }
  if (grads.empty()) return at::Tensor();
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) {
    // float16 and bfloat16 reduce in float32; float32 and float64 in their own type (a norm may not narrow its input).
    at::ScalarType t = g.scalar_type();
    at::ScalarType reduce = t == at::kDouble || t == at::kFloat ? t : at::kFloat;
    norms.push_back(at::linalg_vector_norm(g, 2, c10::nullopt, false, reduce).to(grads[0].device(), at::kFloat));
  }
  at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
  at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
#if OML_TORCH_AT_LEAST(2, 4)
  std::vector<std::pair<std::pair<c10::Device, at::ScalarType>, std::vector<at::Tensor>>> groups;
  for (auto& g : grads) {
    auto key = std::make_pair(g.device(), g.scalar_type());
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == key; });
    if (it == groups.end()) groups.push_back({key, {g}});
    else it->second.push_back(g);
  }
  // The factor in each group's own dtype (as the per-gradient loop below): a float32 factor sends bfloat16 lists to
  // foreach's slow per-tensor path (seen on an H100: 0.135 ms a gradient against 0.089 for a same-dtype multiply).
  for (auto& [key, group] : groups) at::_foreach_mul_(group, coef.to(key.first, key.second));
#else
  for (auto& g : grads) g.mul_(coef.to(g.device(), g.scalar_type()));
#endif
  return total;
}

// As oml_clip_grad_norm, but returns the norm before clipping as a 0-d float32 tensor on the gradients' device
// instead of reading it, so that a training step on CUDA does not wait for the device.
API TH oml_clip_grad_norm_tensor(const TH* params, int n, double max_norm) {
  return wrap("clip_grad_norm_tensor", {}, [&] {
    at::Tensor total = clip_grads(params, n, max_norm);
    return total.defined() ? total : at::zeros({}, at::kFloat);
  });
}

// Scales the gradients of the given parameters so that their global L2 norm is at most max_norm.
// *total_norm receives the norm before clipping.
API int oml_clip_grad_norm(const TH* params, int n, double max_norm, double* total_norm) {
  return run("clip_grad_norm", {}, [&] {
    at::Tensor total = clip_grads(params, n, max_norm);
    *total_norm = total.defined() ? total.item<double>() : 0.0;
  });
}

#include "oml_dist.inc"
