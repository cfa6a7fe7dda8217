#!/usr/bin/env python3
"""What a new batch shape costs torch's scaled_dot_product_attention on this GPU, per backend.

A server's passes see a new (rows, tokens) shape at nearly every step. A backend that builds a plan per shape (cuDNN's
attention graphs) pays that build on the first call of each shape; one that does not (flash, memory-efficient) pays
nothing. For each backend, and for the call as our engine makes it (no mask with is_causal, or a boolean mask), this
times the first call of each of SHAPES fresh row counts and a second call of the same shape, with a device sync around
each. Prints torch's backend order, and one line per (backend, mask) with, for the default dispatch, what it picks.
    python3 bench/gpu/sdpa_shapes.py [--heads 32] [--tokens 16] [--dim 64] [--shapes 24]
"""
import argparse, contextlib, statistics, time
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ap = argparse.ArgumentParser()
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--tokens", type=int, default=16)
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--shapes", type=int, default=24)
a = ap.parse_args()
dev = torch.device("cuda")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cudnn {torch.backends.cudnn.version()}, "
      f"cudnn sdp enabled {torch.backends.cuda.cudnn_sdp_enabled()}")

def inputs(rows, masked):
    q, k, v = (torch.randn(rows, a.heads, a.tokens, a.dim, device=dev, dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(rows, 1, a.tokens, a.tokens, device=dev, dtype=torch.bool).tril() if masked else None
    return q, k, v, mask

def call(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)

def choice(q, k, v, mask):
    """The backend the default dispatch picks for these inputs."""
    try:
        return SDPBackend(torch._fused_sdp_choice(q, k, v, mask, 0.0, mask is None)).name
    except Exception:   # a private function: absent or changed in another torch
        return "?"

def timed(fn):
    torch.cuda.synchronize(); t = time.perf_counter(); fn(); torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3

backends = [("default", None), ("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)]
# torch settles its backend order on the first CUDA call (on Hopper it may put cuDNN first): print it after one.
call(*inputs(1, False)); torch.cuda.synchronize()
order = getattr(torch._C, "_get_sdp_priority_order", None)
if order: print("priority order:", [SDPBackend(i).name if isinstance(i, int) else str(i) for i in order()])
fresh = iter(range(2, 100000))   # row counts never used before: every line times shapes no backend has seen
for masked in (False, True):
    for name, b in backends:
        first, second = [], []
        try:
            w = inputs(next(fresh), masked)   # the backend's first call (its kernels load) is not a shape's cost
            with sdpa_kernel([b]) if b is not None else contextlib.nullcontext():
                call(*w)
            for _ in range(a.shapes):
                x = inputs(next(fresh), masked)
                with sdpa_kernel([b]) if b is not None else contextlib.nullcontext():
                    first.append(timed(lambda: call(*x))); second.append(timed(lambda: call(*x)))
            picked = f" (default picks {choice(*x)})" if b is None else ""
            print(f"{'mask' if masked else 'causal, no mask':16s} {name:9s}{picked}: first call of a new shape median "
                  f"{statistics.median(first):7.2f} ms (max {max(first):7.2f}), same shape again median {statistics.median(second):6.3f} ms")
        except RuntimeError as e:
            print(f"{'mask' if masked else 'causal, no mask':16s} {name:9s}: not available ({str(e).splitlines()[0][:90]})")

# Grouped-query attention: k and v with fewer heads passed as they are (enable_gqa, torch >= 2.5) against repeating them
# to the query's heads first (what the engine does now), per backend, for a decode step over a cache (one query token,
# a boolean mask over tokens + 1 keys, as the engine's decode step) and a prefill (no mask, causal).
kv_heads = max(1, a.heads // 4)
def gqa_inputs(rows, tq, tk, masked):
    q = torch.randn(rows, a.heads, tq, a.dim, device=dev, dtype=torch.bfloat16)
    k, v = (torch.randn(rows, kv_heads, tk, a.dim, device=dev, dtype=torch.bfloat16) for _ in range(2))
    mask = torch.ones(rows, 1, tq, tk, device=dev, dtype=torch.bool) if masked else None
    return q, k, v, mask

def best(fn, n=10):
    fn(); torch.cuda.synchronize()
    return min(timed(fn) for _ in range(n))

for label, rows, tq, tk, masked in (("decode 1024 rows, mask", 1024, 1, a.tokens + 1, True), ("prefill 1024 rows, causal", 1024, a.tokens, a.tokens, False)):
    q, k, v, mask = gqa_inputs(rows, tq, tk, masked)
    g = a.heads // kv_heads
    for name, b in backends:
        ctx = (lambda: sdpa_kernel([b])) if b is not None else contextlib.nullcontext
        try:
            with ctx():
                rep = best(lambda: F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), attn_mask=mask, is_causal=mask is None))
        except RuntimeError as e:
            rep = None
        try:
            with ctx():
                gqa = best(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True))
        except (RuntimeError, TypeError) as e:
            gqa = f"not available ({str(e).splitlines()[0][:70]})"
        fmt = lambda t: f"{t:7.3f} ms" if isinstance(t, float) else str(t)
        print(f"GQA {label:26s} {name:9s}: repeat_interleave + SDPA {fmt(rep)}, enable_gqa {fmt(gqa)}")
