#!/usr/bin/env python3
"""The fused kernels of native/oml_kernels.cu (RMSNorm, rotary embeddings, SwiGLU; forward and backward) on one GPU,
each held to the composite PyTorch ops that define it and timed, optionally beside an earlier build of the same file.

    python3 kernel_bench.py --lib NEW.so [--baseline OLD.so] [--out DIR]

NEW.so and OLD.so are native/oml_kernels.cu compiled on their own into a shared library (bench/gpu/kernels.sh does it,
with the nvcc of the PyTorch wheels). The launchers are called through ctypes on PyTorch tensors and PyTorch's current
stream. For every case:

- correctness: forward outputs against the composite ops (rotary embeddings and SwiGLU bit for bit, RMSNorm within a
  rounding), gradients within a rounding; with a baseline, the two builds' outputs against each other as well;
- speed: the median over 20 launches after 3 of warm-up (CUDA events), as time, and as the bytes the operation must move
  (its inputs read once, its outputs written once; scratch not counted) per second, against the card's bandwidth.

Where NEW.so exports oml_k_set_vector, its scalar paths are timed too (the vector paths switched off), which is the
comparison within one build. Shapes: the 8B micro-batch of bench/gpu/fingerprint_bench.py (6,496 rows of 17 tokens ...
hidden 4,096, MLP 14,336, 32 and 8 heads of 128), the 1B one, and small odd shapes that must take the scalar paths
(widths that are not multiples of 16 bytes, tensors that start off a 16-byte boundary).
"""
import argparse
import ctypes
import json
import os
import statistics

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--lib", required=True)
ap.add_argument("--baseline")
ap.add_argument("--out", default=".")
ap.add_argument("--iters", type=int, default=20)
a = ap.parse_args()

DT = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
VP, I64, I32, F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float


def load(path):
    lib = ctypes.CDLL(os.path.abspath(path))
    lib.oml_k_available.restype = I32
    lib.oml_k_rms_norm_fwd.argtypes = [I32, VP, VP, VP, VP, I64, I32, F32, VP]
    lib.oml_k_rms_norm_bwd_scratch.argtypes = [I64, I32]
    lib.oml_k_rms_norm_bwd_scratch.restype = I64
    lib.oml_k_rms_norm_bwd.argtypes = [I32, VP, VP, VP, VP, VP, VP, VP, I64, I32, VP]
    lib.oml_k_rope.argtypes = [I32, VP, ctypes.POINTER(I64), VP, VP, I64, I64, VP, ctypes.POINTER(I64), I64, I64, I64, I32, I32, VP]
    lib.oml_k_swiglu_fwd.argtypes = [I32, VP, VP, VP, I64, VP]
    lib.oml_k_swiglu_bwd.argtypes = [I32, VP, VP, VP, VP, VP, I64, VP]
    if not lib.oml_k_available():
        raise SystemExit(f"{path}: no kernel image for this GPU")
    lib.has_vector_switch = hasattr(lib, "oml_k_set_vector")
    return lib


def stream():
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


def ok(rc, what):
    if rc != 0:
        raise RuntimeError(f"{what}: launcher returned {rc}")


# ---------------------------------------------------------------- the operations through one library

# Each takes optional output buffers, so that the timed launches allocate nothing.
def rms_fwd(lib, x, w, eps=1e-5, y=None, rstd=None):
    cols = x.shape[-1]
    rows = x.numel() // cols
    y = torch.empty_like(x) if y is None else y
    rstd = torch.empty(rows, device=x.device, dtype=torch.float32) if rstd is None else rstd
    ok(lib.oml_k_rms_norm_fwd(DT[x.dtype], x.data_ptr(), w.data_ptr(), y.data_ptr(), rstd.data_ptr(), rows, cols, eps, stream()), "rms fwd")
    return y, rstd


def rms_bwd(lib, g, x, w, rstd, dx=None, dw=None, scratch=None):
    cols = x.shape[-1]
    rows = x.numel() // cols
    dx = torch.empty_like(x) if dx is None else dx
    dw = torch.empty_like(w) if dw is None else dw
    need = lib.oml_k_rms_norm_bwd_scratch(rows, cols)
    if scratch is None or scratch.numel() < need:
        scratch = torch.empty(need, device=x.device, dtype=torch.float32)
    ok(lib.oml_k_rms_norm_bwd(DT[x.dtype], g.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr(), dx.data_ptr(), dw.data_ptr(),
                              scratch.data_ptr(), rows, cols, stream()), "rms bwd")
    return dx, dw


def rope(lib, x, cos, sin, backward=False, y=None):
    y = torch.empty_like(x) if y is None else y
    xs = (I64 * 3)(*x.stride()[:3])
    ys = (I64 * 3)(*y.stride()[:3])
    B, H, T, D = x.shape
    ok(lib.oml_k_rope(DT[x.dtype], x.data_ptr(), xs, cos.data_ptr(), sin.data_ptr(), 0 if cos.shape[0] == 1 else cos.stride(0),
                      cos.stride(2), y.data_ptr(), ys, B, H, T, D, 1 if backward else 0, stream()), "rope")
    return y


def swiglu_fwd(lib, gate, up, y=None):
    y = torch.empty_like(gate) if y is None else y
    ok(lib.oml_k_swiglu_fwd(DT[gate.dtype], gate.data_ptr(), up.data_ptr(), y.data_ptr(), gate.numel(), stream()), "swiglu fwd")
    return y


def swiglu_bwd(lib, dy, gate, up, dg=None, du=None):
    dg, du = (torch.empty_like(gate), torch.empty_like(up)) if dg is None else (dg, du)
    ok(lib.oml_k_swiglu_bwd(DT[gate.dtype], dy.data_ptr(), gate.data_ptr(), up.data_ptr(), dg.data_ptr(), du.data_ptr(), gate.numel(),
                            stream()), "swiglu bwd")
    return dg, du


# ---------------------------------------------------------------- the composite ops (what the shim computes without kernels)

def rms_ref(x, w, eps=1e-5):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def rope_ref(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def grads(f, inputs, r):
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    out = f(*leaves)
    out.backward(r)
    return out.detach(), [t.grad for t in leaves]


# ---------------------------------------------------------------- checks and timing

failures = []


def same(name, ref, got):
    if not torch.equal(ref, got):
        d = (ref.float() - got.float()).abs()
        failures.append(f"{name}: not bit-identical ({int((d > 0).sum())} of {ref.numel()} differ, max {float(d.max()):.3g})")


def near(name, ref, got, tol):
    r, g = ref.double(), got.double()
    bad = (r - g).abs() > tol * (1 + r.abs())
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        failures.append(f"{name}: {int(bad.sum())} of {ref.numel()} outside {tol:g} (first at {i}: {float(r.flatten()[i]):.6g} vs {float(g.flatten()[i]):.6g})")


def time_ms(fn, reps=10):
    """Median over a.iters samples of the mean of `reps` back-to-back launches (so that the launches queue ahead of the
    GPU and the host's call overhead is not timed)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / reps)
    return statistics.median(times)


dev = torch.device("cuda")
name = torch.cuda.get_device_name(0)
# Memory bandwidth by the datasheets (HBM3 on the H100 SXM 3.35 TB/s, HBM3e on the H200 4.8 TB/s).
BW = 4.8e12 if "H200" in name else 3.35e12 if "H100" in name else None
new = load(a.lib)
old = load(a.baseline) if a.baseline else None
gen = torch.Generator(device=dev).manual_seed(0)


def rnd(shape, dtype, scale=1.0):
    return (torch.rand(shape, generator=gen, device=dev, dtype=torch.float32) * 2 - 1).mul_(scale).to(dtype)


def off(t):
    """t's values in a tensor that starts one element after a 16-byte boundary (same shape, contiguous)."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    v = buf[1:].view(t.shape)
    v.copy_(t)
    return v


rows_out = []


def record(case, op, nbytes, ms_new, ms_old=None, ms_scalar=None):
    row = dict(case=case, op=op, bytes=nbytes, ms=ms_new, gbps=nbytes / ms_new / 1e6)
    if BW:
        row["of_peak"] = nbytes / (ms_new / 1e3) / BW
    if ms_old is not None:
        row["ms_baseline"] = ms_old
        row["speedup"] = ms_old / ms_new
    if ms_scalar is not None:
        row["ms_scalar_paths"] = ms_scalar
    rows_out.append(row)
    print(json.dumps(row), flush=True)


def timed(case, op, nbytes, call):
    """call(lib) runs the operation through lib; times NEW (and its scalar paths) and the baseline."""
    ms_new = time_ms(lambda: call(new))
    ms_scalar = None
    if new.has_vector_switch:
        new.oml_k_set_vector(0)
        ms_scalar = time_ms(lambda: call(new))
        new.oml_k_set_vector(1)
    ms_old = time_ms(lambda: call(old)) if old else None
    record(case, op, nbytes, ms_new, ms_old, ms_scalar)


def case_rms(label, rows, cols, dtype, misalign=False, speed=True):
    x, w, g = rnd((rows, cols), dtype, 2.0), rnd((cols,), dtype), rnd((rows, cols), dtype)
    if misalign:
        x, g = off(x), off(g)
    ref_y, (ref_dx, ref_dw) = grads(rms_ref, [x, w], g)
    libs = [("new", new)] + ([("baseline", old)] if old else [])
    if new.has_vector_switch:
        libs.append(("new, scalar paths", None))
    outs = {}
    for tag, lib in libs:
        if lib is None:
            new.oml_k_set_vector(0)
            lib = new
        y, rstd = rms_fwd(lib, x, w)
        dx, dw = rms_bwd(lib, g, x, w, rstd)
        if tag == "new, scalar paths":
            new.oml_k_set_vector(1)
        tol = 2e-2 if dtype == torch.bfloat16 else 2e-3 if dtype == torch.float16 else 1e-5
        near(f"{label} rms y ({tag})", ref_y, y, tol)
        near(f"{label} rms dx ({tag})", ref_dx, dx, tol)
        # dw sums `rows` products with much cancellation, so its rounding scales with the terms, not the result (as in
        # FusedOpTests): held to a float64 reference within 8 roundings of sqrt(sum of squared terms) plus one of |dw|.
        xd = x.double()
        term = g.double() * xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-5)
        dw64, norm = term.sum(0), term.pow(2).sum(0).sqrt()
        u = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11, torch.float32: 1e-6}[dtype]
        bad = (dw.double() - dw64).abs() > u * (8 * norm + dw64.abs())
        if bool(bad.any()):
            j = int(bad.nonzero()[0])
            failures.append(f"{label} rms dw ({tag}): {int(bad.sum())} of {cols} columns off (first {j}: {float(dw64[j]):.6g} vs {float(dw[j]):.6g})")
        outs[tag] = (y, dx, dw)
    if old:
        near(f"{label} rms y new vs baseline", outs["baseline"][0], outs["new"][0], 1e-2 if dtype != torch.float32 else 1e-6)
    if speed:
        e = x.element_size()
        y, rstd = rms_fwd(new, x, w)
        dx, dw = torch.empty_like(x), torch.empty_like(w)
        scratch = torch.empty(max(new.oml_k_rms_norm_bwd_scratch(x.shape[0], x.shape[1]),
                                  old.oml_k_rms_norm_bwd_scratch(x.shape[0], x.shape[1]) if old else 0), device=dev, dtype=torch.float32)
        timed(label, "rms_norm forward", 2 * x.numel() * e, lambda lib: rms_fwd(lib, x, w, y=y, rstd=rstd))
        timed(label, "rms_norm backward (dx, dw)", 3 * x.numel() * e, lambda lib: rms_bwd(lib, g, x, w, rstd, dx, dw, scratch))


def case_rope(label, B, T, H, D, dtype, misalign=False, speed=True):
    # As in Attention: [B, T, H, D] projections viewed as [B, H, T, D]; tables [1, 1, T, D].
    base = rnd((B, T, H, D), dtype)
    if misalign:
        base = off(base)
    x = base.transpose(1, 2)
    ang = rnd((1, 1, T, D // 2), torch.float32, 3.0)
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    r = rnd((B, H, T, D), dtype)
    ref_y, (ref_dx,) = grads(lambda t: rope_ref(t, cos, sin), [x], r)
    for tag, lib in [("new", new)] + ([("baseline", old)] if old else []):
        same(f"{label} rope y ({tag})", ref_y, rope(lib, x, cos, sin))
        near(f"{label} rope dx ({tag})", ref_dx, rope(lib, r.contiguous(), cos, sin, backward=True),
             1e-2 if dtype != torch.float32 else 1e-6)
    if new.has_vector_switch:
        new.oml_k_set_vector(0)
        same(f"{label} rope y (scalar paths)", ref_y, rope(new, x, cos, sin))
        new.oml_k_set_vector(1)
    if speed:
        y = torch.empty_like(x)
        timed(label, "rope forward", 2 * x.numel() * x.element_size(), lambda lib: rope(lib, x, cos, sin, y=y))


def case_swiglu(label, n, dtype, misalign=False, speed=True):
    gate, up, dy = rnd((n,), dtype, 4.0), rnd((n,), dtype), rnd((n,), dtype)
    if misalign:
        gate = off(gate)
    ref_y, (ref_dg, ref_du) = grads(lambda g, u: torch.nn.functional.silu(g) * u, [gate, up], dy)
    tol = 1e-2 if dtype != torch.float32 else 1e-6
    for tag, lib in [("new", new)] + ([("baseline", old)] if old else []):
        same(f"{label} swiglu y ({tag})", ref_y, swiglu_fwd(lib, gate, up))
        dg, du = swiglu_bwd(lib, dy, gate, up)
        near(f"{label} swiglu dgate ({tag})", ref_dg, dg, tol)
        near(f"{label} swiglu dup ({tag})", ref_du, du, tol)
    if old:
        a1, b1 = swiglu_bwd(new, dy, gate, up)
        a0, b0 = swiglu_bwd(old, dy, gate, up)
        same(f"{label} swiglu dgate new vs baseline", a0, a1)
        same(f"{label} swiglu dup new vs baseline", b0, b1)
    if speed:
        e = gate.element_size()
        y, dg, du = torch.empty_like(gate), torch.empty_like(gate), torch.empty_like(up)
        timed(label, "swiglu forward", 3 * n * e, lambda lib: swiglu_fwd(lib, gate, up, y=y))
        timed(label, "swiglu backward", 5 * n * e, lambda lib: swiglu_bwd(lib, dy, gate, up, dg, du))


def guarded(f):
    """A case that raises (a launcher's error code, a crash) is a failure of that case; the others still run."""
    def run(label, *args, **kw):
        before = len(failures)
        try:
            f(label, *args, **kw)
        except Exception as e:  # noqa: BLE001 - every error is reported as the case's failure
            failures.append(f"{label} ({f.__name__}): {type(e).__name__}: {e}")
        finally:
            if new.has_vector_switch:
                new.oml_k_set_vector(1)
        for x in failures[before:]:
            print("FAILED " + x, flush=True)
    return run


case_rms, case_rope, case_swiglu = guarded(case_rms), guarded(case_rope), guarded(case_swiglu)
bf = torch.bfloat16
print(f"device: {name}; new {a.lib}; baseline {a.baseline}", flush=True)
# Correctness on small and odd shapes, every dtype (no timing).
for dt in (torch.float32, torch.float16, bf):
    n = str(dt).split(".")[-1]
    case_rms(f"small {n}", 4400, 300, dt, speed=False)           # 300 columns: not a multiple of 16 bytes (scalar path)
    case_rms(f"small {n} 512", 4400, 512, dt, speed=False)       # vector path, grid loops over rows
    case_rms(f"small {n} 512 off", 300, 512, dt, misalign=True, speed=False)
    case_rms(f"wide {n}", 64, 8192, dt, speed=False)             # the widest row the vector path takes in 2 bytes
    case_rms(f"widest {n}", 64, 12288, dt, speed=False)          # the widest the shim sends (scalar kernels)
    case_rope(f"small {n}", 2, 5, 3, 8, dt, speed=False)
    case_rope(f"small {n} d64", 3, 7, 4, 64, dt, speed=False)
    case_rope(f"small {n} d64 off", 3, 7, 4, 64, dt, misalign=True, speed=False)
    case_swiglu(f"small {n}", 4 * 6 * 40, dt, speed=False)
    case_swiglu(f"small {n} odd", 1001, dt, speed=False)
    case_swiglu(f"small {n} off", 4096, dt, misalign=True, speed=False)
# The shapes that matter, timed: a micro-batch of bench/gpu/fingerprint_bench.py at 8B and 1B (bf16).
rows8, b8 = 6496, 6496 // 17 + 1
case_rms("8b", rows8, 4096, bf)
case_rope("8b q", b8, 17, 32, 128, bf)
case_rope("8b k", b8, 17, 8, 128, bf)
case_swiglu("8b", rows8 * 14336, bf)
rows1 = 16384
case_rms("1b", rows1, 2048, bf)
case_rope("1b q", rows1 // 17, 17, 32, 64, bf)
case_swiglu("1b", rows1 * 8192, bf)

os.makedirs(a.out, exist_ok=True)
result = dict(device=name, torch=torch.__version__, bandwidth=BW, rows=rows_out, failures=failures)
json.dump(result, open(os.path.join(a.out, "kernels.json"), "w"), indent=1)
with open(os.path.join(a.out, "kernels.md"), "w") as f:
    f.write(f"# Fused kernels on {name} (torch {torch.__version__})\n\n")
    f.write("| case | op | ms | GB/s | of peak | baseline ms | speed-up | scalar paths ms |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
    for r in rows_out:
        f.write(f"| {r['case']} | {r['op']} | {r['ms']:.4f} | {r['gbps']:.0f} | {r.get('of_peak', 0) * 100:.0f} % | "
                f"{r.get('ms_baseline', float('nan')):.4f} | {r.get('speedup', float('nan')):.2f} | {r.get('ms_scalar_paths', float('nan')):.4f} |\n")
    f.write("\n" + ("failures:\n" + "\n".join("- " + x for x in failures) if failures else "all checks passed") + "\n")
print("FAILURES:\n" + "\n".join(failures) if failures else "all checks passed", flush=True)
raise SystemExit(1 if failures else 0)
