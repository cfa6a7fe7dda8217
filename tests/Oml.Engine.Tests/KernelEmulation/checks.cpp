// The fused kernels of native/oml_kernels.cu under the CPU emulation (cuda_runtime.h here), through their C launchers,
// against float64 references of the composite ops and each vector path against its scalar path. Built and run by
// KernelEmulationTests; prints one line per failed check and a summary, and exits 1 when any check failed.
#include "cuda_runtime.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

extern "C" {
void oml_k_set_vector(int on);
int oml_k_rms_norm_fwd(int dtype, const void* x, const void* w, void* y, float* rstd, int64_t rows, int cols, float eps,
                       cudaStream_t stream);
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

namespace {

template <typename T> struct Ty;
template <> struct Ty<float> {
  static constexpr int code = 0;
  static constexpr double unit = 1.0 / (1 << 23);
  static constexpr const char* name = "float32";
  static float to(float v) { return v; }
  static float from(float v) { return v; }
};
template <> struct Ty<__half> {
  static constexpr int code = 1;
  static constexpr double unit = 1.0 / (1 << 10);
  static constexpr const char* name = "float16";
  static __half to(float v) { return __float2half_rn(v); }
  static float from(__half v) { return __half2float(v); }
};
template <> struct Ty<__nv_bfloat16> {
  static constexpr int code = 2;
  static constexpr double unit = 1.0 / (1 << 7);
  static constexpr const char* name = "bfloat16";
  static __nv_bfloat16 to(float v) { return __float2bfloat16_rn(v); }
  static float from(__nv_bfloat16 v) { return __bfloat162float(v); }
};

int passed = 0, failed = 0;
std::mt19937 rng(20261208);

void check(bool ok, const std::string& what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    std::printf("FAIL %s\n", what.c_str());
  }
}

// n values of T in 64-byte aligned storage, starting `offset` elements in (1: off every 16-byte boundary).
template <typename T> struct Buf {
  void* raw;
  T* p;
  size_t n;
  Buf(size_t count, int offset, float scale) : n(count) {
    raw = std::aligned_alloc(64, ((count + 64) * sizeof(T) + 63) / 64 * 64);
    p = static_cast<T*>(raw) + offset;
    std::uniform_real_distribution<float> u(-scale, scale);
    for (size_t i = 0; i < count; i++) p[i] = Ty<T>::to(scale == 0 ? 0.0f : u(rng));
  }
  ~Buf() { std::free(raw); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  double operator[](size_t i) const { return Ty<T>::from(p[i]); }
  bool same(const Buf& o) const { return std::memcmp(p, o.p, n * sizeof(T)) == 0; }
};

// |got - want| <= tol * (1 + |want|) everywhere; the first offender in `why`.
template <typename T> bool near(const Buf<T>& got, const std::vector<double>& want, double tol, std::string& why) {
  for (size_t i = 0; i < want.size(); i++)
    if (!(std::fabs(got[i] - want[i]) <= tol * (1 + std::fabs(want[i])))) {
      why = " at " + std::to_string(i) + ": want " + std::to_string(want[i]) + ", got " + std::to_string(got[i]);
      return false;
    }
  return true;
}

template <typename T> double rnd(double v) { return Ty<T>::from(Ty<T>::to(static_cast<float>(v))); }

template <typename T> void rms_norm(int64_t rows, int cols, int offset) {
  std::string where = std::string("rms_norm ") + Ty<T>::name + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                      (offset ? " unaligned" : "");
  const float eps = 1e-5f;
  Buf<T> x(rows * cols, offset, 2), w(cols, 0, 1), g(rows * cols, offset, 1);
  std::vector<double> y_ref(rows * cols), dx_ref(rows * cols), dw_ref(cols, 0), dw_mag(cols, 0);
  for (int64_t r = 0; r < rows; r++) {
    double ss = 0, dot = 0;
    for (int c = 0; c < cols; c++) ss += x[r * cols + c] * x[r * cols + c];
    double inv = 1 / std::sqrt(ss / cols + eps);
    for (int c = 0; c < cols; c++) dot += g[r * cols + c] * w[c] * x[r * cols + c];
    for (int c = 0; c < cols; c++) {
      double xv = x[r * cols + c], gv = g[r * cols + c];
      y_ref[r * cols + c] = w[c] * rnd<T>(xv * inv);
      dx_ref[r * cols + c] = inv * gv * w[c] - xv * inv * inv * inv * dot / cols;
      double term = gv * xv * inv;
      dw_ref[c] += term;
      dw_mag[c] += term * term;
    }
  }
  double tol = 4 * Ty<T>::unit;
  Buf<T>* outs[2][3];
  for (int vector = 1; vector >= 0; vector--) {
    oml_k_set_vector(vector);
    auto* y = new Buf<T>(rows * cols, offset, 0);
    auto* dx = new Buf<T>(rows * cols, offset, 0);
    auto* dw = new Buf<T>(cols, 0, 0);
    std::vector<float> rstd(rows), scratch(oml_k_rms_norm_bwd_scratch(rows, cols) + 16);
    float* sp = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(scratch.data()) + 15) / 16 * 16);
    int rc1 = oml_k_rms_norm_fwd(Ty<T>::code, x.p, w.p, y->p, rstd.data(), rows, cols, eps, nullptr);
    int rc2 = oml_k_rms_norm_bwd(Ty<T>::code, g.p, x.p, w.p, rstd.data(), dx->p, dw->p, sp, rows, cols, nullptr);
    std::string path = vector ? " (vector path where it applies)" : " (scalar path)";
    check(rc1 == 0 && rc2 == 0, where + path + ": launchers returned " + std::to_string(rc1) + ", " + std::to_string(rc2));
    std::string why;
    check(near(*y, y_ref, tol, why), where + path + " y" + why);
    check(near(*dx, dx_ref, tol, why), where + path + " dx" + why);
    bool dw_ok = true;
    for (int c = 0; c < cols && dw_ok; c++)
      if (!(std::fabs((*dw)[c] - dw_ref[c]) <= Ty<T>::unit * (8 * std::sqrt(dw_mag[c]) + std::fabs(dw_ref[c])) + 1e-6)) {
        dw_ok = false;
        why = " at " + std::to_string(c) + ": want " + std::to_string(dw_ref[c]) + ", got " + std::to_string((*dw)[c]);
      }
    check(dw_ok, where + path + " dw" + why);
    outs[vector][0] = y;
    outs[vector][1] = dx;
    outs[vector][2] = dw;
  }
  oml_k_set_vector(1);
  for (auto& o : outs)
    for (auto* b : o) delete b;
}

// x as the attention layout makes it: storage [B, T, H, D] viewed as [B, H, T, D]; tables [1, 1, T, D].
template <typename T> void rope(int64_t B, int64_t H, int64_t Tn, int D, int offset) {
  std::string where = std::string("rope ") + Ty<T>::name + " D " + std::to_string(D) + (offset ? " unaligned" : "");
  size_t n = B * H * Tn * D;
  Buf<T> x(n, offset, 1), cs(Tn * D, 0, 1), sn(Tn * D, 0, 1);
  int64_t st[3] = {Tn * H * D, D, H * D};
  int half = D / 2;
  for (int backward = 0; backward <= 1; backward++) {
    std::vector<double> ref(n);
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t t = 0; t < Tn; t++)
          for (int d = 0; d < half; d++) {
            int64_t o = b * st[0] + h * st[1] + t * st[2];
            double x1 = x[o + d], x2 = x[o + d + half];
            double c1 = cs[t * D + d], c2 = cs[t * D + d + half], s1 = sn[t * D + d], s2 = sn[t * D + d + half];
            ref[o + d] = backward ? x1 * c1 + x2 * s2 : x1 * c1 - x2 * s1;
            ref[o + d + half] = backward ? x2 * c2 - x1 * s1 : x2 * c2 + x1 * s2;
          }
    Buf<T> yv(n, offset, 0), ys(n, offset, 0);
    oml_k_set_vector(1);
    int rc1 = oml_k_rope(Ty<T>::code, x.p, st, cs.p, sn.p, 0, D, yv.p, st, B, H, Tn, D, backward, nullptr);
    oml_k_set_vector(0);
    int rc2 = oml_k_rope(Ty<T>::code, x.p, st, cs.p, sn.p, 0, D, ys.p, st, B, H, Tn, D, backward, nullptr);
    oml_k_set_vector(1);
    std::string what = where + (backward ? " backward" : " forward");
    check(rc1 == 0 && rc2 == 0, what + ": launchers returned " + std::to_string(rc1) + ", " + std::to_string(rc2));
    std::string why;
    check(near(yv, ref, 4 * Ty<T>::unit, why), what + why);
    check(yv.same(ys), what + ": the vector path differs from the scalar path");
  }
}

template <typename T> void swiglu(int64_t n, int offset) {
  std::string where = std::string("swiglu ") + Ty<T>::name + " n " + std::to_string(n) + (offset ? " unaligned" : "");
  Buf<T> gate(n, offset, 4), up(n, 0, 1), dy(n, 0, 1);
  std::vector<double> y_ref(n), dg_ref(n), du_ref(n);
  for (int64_t i = 0; i < n; i++) {
    double gv = gate[i], sig = 1 / (1 + std::exp(-gv)), silu = gv * sig;
    y_ref[i] = silu * up[i];
    dg_ref[i] = dy[i] * up[i] * sig * (1 + gv * (1 - sig));
    du_ref[i] = dy[i] * silu;
  }
  Buf<T> y[2] = {Buf<T>(n, 0, 0), Buf<T>(n, 0, 0)}, dg[2] = {Buf<T>(n, 0, 0), Buf<T>(n, 0, 0)},
         du[2] = {Buf<T>(n, 0, 0), Buf<T>(n, 0, 0)};
  for (int vector = 0; vector <= 1; vector++) {
    oml_k_set_vector(vector);
    int rc1 = oml_k_swiglu_fwd(Ty<T>::code, gate.p, up.p, y[vector].p, n, nullptr);
    int rc2 = oml_k_swiglu_bwd(Ty<T>::code, dy.p, gate.p, up.p, dg[vector].p, du[vector].p, n, nullptr);
    check(rc1 == 0 && rc2 == 0, where + ": launchers returned " + std::to_string(rc1) + ", " + std::to_string(rc2));
  }
  oml_k_set_vector(1);
  std::string why;
  check(near(y[1], y_ref, 4 * Ty<T>::unit, why), where + " y" + why);
  check(near(dg[1], dg_ref, 8 * Ty<T>::unit, why), where + " dgate" + why);
  check(near(du[1], du_ref, 4 * Ty<T>::unit, why), where + " dup" + why);
  check(y[1].same(y[0]) && dg[1].same(dg[0]) && du[1].same(du[0]), where + ": the vector path differs from the scalar path");
}

template <typename T> void all() {
  for (int offset : {0, 1}) {
    // Widths: 512 and 64 (the vector path, several chunks a thread and fewer than a block), 300 (not a multiple of 16
    // bytes: scalar), 8,192 (the widest the vector path takes in 2 bytes: 4 chunks a thread), 12,288 (scalar).
    for (int cols : {512, 64, 300, 8192, 12288}) rms_norm<T>(cols > 4096 ? 3 : 24, cols, offset);
    for (int d : {64, 8, 128}) rope<T>(2, 4, 5, d, offset);
    for (int64_t n : {4096L, 1001L, 24L}) swiglu<T>(n, offset);
  }
}

}  // namespace

int main() {
  all<float>();
  all<__half>();
  all<__nv_bfloat16>();
  std::printf("kernel checks: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
