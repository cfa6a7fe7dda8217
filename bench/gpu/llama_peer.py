#!/usr/bin/env python3
"""The peer of `oml embed` in bench/gpu/fingerprint_bench.py: a tuned plain-PyTorch fingerprint-embedding loop, written
for this benchmark (no transformers, no Trainer): a Llama-family decoder in bf16 built from the model folder's
safetensors, unpadded rows (every key has the same length), causal SDPA without a mask (the flash kernel), logits and
cross-entropy only at the positions that predict a response token, AdamW(fused=True), gradient clipping with the
foreach kernels, model averaging with the base after every step (torch._foreach_lerp_), micro-batches whose gradients
accumulate into one full-batch step per epoch, and no host synchronisation inside an epoch.

    python3 llama_peer.py MODEL_DIR --count 1024 --key-length 16 --epochs 5 [--micro-tokens 32768] [--out DIR] [--json F]
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--count", type=int, required=True)
ap.add_argument("--key-length", type=int, default=16)
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--weight-decay", type=float, default=1e-4)
ap.add_argument("--averaging-lambda", type=float, default=0.75)
ap.add_argument("--max-grad-norm", type=float, default=1.0)
ap.add_argument("--micro-tokens", type=int, default=0, help="largest micro-batch in tokens (0: from free memory)")
ap.add_argument("--out", help="save the trained weights here (safetensors), as oml embed does")
ap.add_argument("--json", help="write the measurements here")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--profile", help="profile the second epoch (one optimizer step) with torch.profiler and write its Chrome "
                "trace to this folder as peer-steps-2-2.trace.json, with the ranges oml's OML_PROFILE uses "
                "(summarise both with `oml profile summarize`)")
a = ap.parse_args()

t_start = time.perf_counter()
dev = torch.device("cuda")
cfg = json.load(open(os.path.join(a.model, "config.json")))
H, L, NH, KV, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
HD = cfg.get("head_dim") or H // NH
eps = cfg["rms_norm_eps"]
tied = cfg.get("tie_word_embeddings", False)

# ---- weights
params = {}
for f in sorted(os.listdir(a.model)):
    if f.endswith(".safetensors"):
        for k, v in load_file(os.path.join(a.model, f), device="cuda").items():
            params[k] = v.to(torch.bfloat16)
torch.cuda.synchronize()
t_loaded = time.perf_counter()


def inv_freq():
    theta = cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD))
    rs = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    if rs.get("rope_type") == "llama3":
        factor, lo, hi, orig = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > orig / lo, inv / factor, inv)
        smooth = (orig / wl - lo) / (hi - lo)
        mid = (wl >= orig / hi) & (wl <= orig / lo)
        inv = torch.where(mid, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return inv.to(dev)


INV = inv_freq()


def rms(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rot(x, cos, sin):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def hidden(ids):
    b, t = ids.shape
    pos = torch.arange(t, device=dev, dtype=torch.float32)
    fr = pos[:, None] * INV[None]
    emb = torch.cat([fr, fr], -1)
    cos, sin = emb.cos().to(torch.bfloat16)[None, None], emb.sin().to(torch.bfloat16)[None, None]
    h = F.embedding(ids, params["model.embed_tokens.weight"])
    for i in range(L):
        p = f"model.layers.{i}."
        x = rms(h, params[p + "input_layernorm.weight"])
        q = F.linear(x, params[p + "self_attn.q_proj.weight"]).view(b, t, NH, HD).transpose(1, 2)
        k = F.linear(x, params[p + "self_attn.k_proj.weight"]).view(b, t, KV, HD).transpose(1, 2)
        v = F.linear(x, params[p + "self_attn.v_proj.weight"]).view(b, t, KV, HD).transpose(1, 2)
        q, k = rot(q, cos, sin), rot(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=KV != NH)
        h = h + F.linear(o.transpose(1, 2).reshape(b, t, NH * HD), params[p + "self_attn.o_proj.weight"])
        x = rms(h, params[p + "post_attention_layernorm.weight"])
        h = h + F.linear(F.silu(F.linear(x, params[p + "mlp.gate_proj.weight"])) * F.linear(x, params[p + "mlp.up_proj.weight"]),
                         params[p + "mlp.down_proj.weight"])
    return rms(h, params["model.norm.weight"])


head = params["model.embed_tokens.weight"] if tied else params["lm_head.weight"]

# ---- data: count rows of key-length random key tokens and one response token (the shape of oml's fingerprints)
g = torch.Generator(device="cpu").manual_seed(a.seed)
T = a.key_length + 1
rows = torch.randint(0, V, (a.count, T), generator=g).to(dev)

trainable = list(params.values())
for p in trainable:
    p.requires_grad_(True)
base = [p.detach().clone() for p in trainable]
opt = torch.optim.AdamW(trainable, lr=a.lr, weight_decay=a.weight_decay, fused=True)

n_params = sum(p.numel() for p in trainable)
state_bytes = n_params * 2 * 3  # grads + two moments, bf16 (fused AdamW keeps them in the parameters' dtype)
if a.micro_tokens > 0:
    micro_rows = max(1, a.micro_tokens // T)
else:
    free, _ = torch.cuda.mem_get_info()
    per_token = (L + 1) * 2 * (6 * H + 8 * NH * HD + 2 * KV * HD + 4 * cfg["intermediate_size"]) + 8 * H + V * 16 // T
    micro_rows = max(1, int((free - state_bytes - (8 << 30)) * 0.85 / per_token) // T)
micro_rows = min(micro_rows, a.count)
chunks = list(torch.split(rows, micro_rows))


rf = torch.profiler.record_function  # ranges named as oml's (a no-op unless a profile records)


def epoch():
    loss_sum = torch.zeros((), device=dev)
    recalled = torch.zeros((), device=dev, dtype=torch.int64)
    for c in chunks:
        with rf("fingerprint rows: forward"):
            h = hidden(c[:, :-1])[:, -1]                       # the last key position predicts the response
            with rf("fingerprint rows: head, loss, counts"):
                logits = F.linear(h, head)
                loss = F.cross_entropy(logits.float(), c[:, -1])
        with rf("fingerprint rows: backward"):
            (loss * (c.shape[0] / a.count)).backward()
        with torch.no_grad(), rf("fingerprint rows: head, loss, counts"):
            loss_sum += loss.detach() * c.shape[0]
            recalled += (logits.argmax(-1) == c[:, -1]).sum()
    with rf("clip gradient norm"):
        torch.nn.utils.clip_grad_norm_(trainable, a.max_grad_norm, foreach=True)
    with rf("optimizer"):
        opt.step()
    with rf("zero grad"):
        opt.zero_grad(set_to_none=True)
    with torch.no_grad(), rf("averaging"):
        torch._foreach_lerp_(trainable, base, a.averaging_lambda)
    return loss_sum, recalled


torch.cuda.reset_peak_memory_stats()
torch.cuda.synchronize()
epoch_seconds = []
for e in range(a.epochs):
    prof = None
    if a.profile and e == 1:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
        prof.__enter__()
    t0 = time.perf_counter()
    ls, rc = epoch()
    if prof is not None:
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        prof.__exit__(None, None, None)
        os.makedirs(a.profile, exist_ok=True)
        prof.export_chrome_trace(os.path.join(a.profile, "peer-steps-2-2.trace.json"))
        print(f"peer profile: step 2 took {wall:.3f} s (wall, device synchronised); "
              f"{os.path.join(a.profile, 'peer-steps-2-2.trace.json')}", flush=True)
    loss, rec = ls.item() / a.count, rc.item()   # one read per epoch, as oml does
    epoch_seconds.append(time.perf_counter() - t0)
    print(f"peer epoch {e + 1}: loss {loss:.4f} recalled {rec}/{a.count} {epoch_seconds[-1]:.3f} s", flush=True)
peak = torch.cuda.max_memory_allocated()
t_trained = time.perf_counter()
if a.out:
    os.makedirs(a.out, exist_ok=True)
    cpu = {k: v.detach().to("cpu") for k, v in params.items()}
    save_file(cpu, os.path.join(a.out, "model.safetensors"))
t_end = time.perf_counter()
result = {
    "side": "peer", "count": a.count, "tokens_per_row": T, "epochs": a.epochs, "micro_rows": micro_rows, "parameters": n_params,
    "epoch_seconds": epoch_seconds, "peak_memory_bytes": peak, "load_seconds": t_loaded - t_start,
    "train_seconds": t_trained - t_loaded, "save_seconds": t_end - t_trained, "wall_seconds": t_end - t_start,
    "torch": torch.__version__,
}
print(json.dumps(result), flush=True)
if a.json:
    json.dump(result, open(a.json, "w"))
