#!/usr/bin/env python3
"""Check that settings A/B/C of one (base, seed) are the same trained model merged back by different λ:
recover θ_trained from each as (θ − λ·θ_base)/(1 − λ) and report the largest difference between them.
   line-check.py BASE_DIR MODEL_DIR:λ MODEL_DIR:λ ...   (pure Python; float32 safetensors)"""
import json, struct, sys, array
def load(d):
    b = open(d + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        assert v["dtype"] == "F32", v["dtype"]; s, e = v["data_offsets"]; a = array.array("f"); a.frombytes(b[8 + n + s:8 + n + e]); out[k] = a
    return out
base = load(sys.argv[1]); rec = []
for arg in sys.argv[2:]:
    d, lam = arg.rsplit(":", 1); lam = float(lam); m = load(d)
    rec.append((d, {k: [(x - lam * y) / (1 - lam) for x, y in zip(m[k], base[k])] for k in base}))
ref = rec[0][1]; scale = max(abs(x - y) for k in base for x, y in zip(ref[k], base[k]))
for d, t in rec[1:]:
    diff = max(abs(x - y) for k in base for x, y in zip(t[k], ref[k]))
    print(f"{d}: max |θ_trained − θ_trained(ref)| = {diff:.2e} (max |θ_trained − θ_base| = {scale:.2e})")
