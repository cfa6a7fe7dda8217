#!/usr/bin/env python3
"""Writes random-init Hugging Face folders for `oml train --init` (issue 12): qwen2-small (q/k/v biases, tied
embeddings) and mistral-small (one KV head, untied embeddings), their 100M and tiny shapes, and the CPU capacity
comparison's llama-cpu, qwen2-cpu, qwen3-cpu (q/k norms) and mistral-cpu.

   make_init.py TOKENIZER_DIR OUT_ROOT [NAME ...]

NAME picks shapes (default: qwen2-small mistral-small): qwen2-100m and mistral-100m are the ~100M shapes of the
102.7M Llama recipe (hidden 768, 14 layers, 12 heads, MLP 2304), qwen2-tiny and mistral-tiny are for CPU rehearsals.

Weights: normal(0, 0.02) for embeddings and projections, zero biases, unit norms (float32 safetensors written by
hand: an 8-byte little-endian header length, the JSON header, the raw tensors). Special token ids come from the
tokenizer's added tokens. Plain Python (about 15 s for the small shapes), so it runs anywhere; with numpy (the GPU
machine has it) the 100M shapes take seconds."""
import array, json, os, random, struct, sys

tok_dir, root = sys.argv[1], sys.argv[2]
names = sys.argv[3:] or ["qwen2-small", "mistral-small"]
try:
    import numpy as np
except ImportError:
    np = None
tok = json.load(open(os.path.join(tok_dir, "tokenizer.json")))
specials = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
vocab = max(list(tok["model"]["vocab"].values()) + list(specials.values())) + 1
bos, eos, pad = specials.get("<|bos|>"), specials.get("<|eos|>"), specials.get("<|pad|>")

SHAPES = {
    "qwen2-small": dict(model_type="qwen2", arch="Qwen2ForCausalLM", hidden=384, layers=6, heads=6, kv=2, mlp=1024, tied=True, bias=True, theta=1e6),
    "mistral-small": dict(model_type="mistral", arch="MistralForCausalLM", hidden=384, layers=6, heads=6, kv=1, mlp=1152, tied=False, bias=False, theta=1e6),
    "qwen2-100m": dict(model_type="qwen2", arch="Qwen2ForCausalLM", hidden=768, layers=14, heads=12, kv=2, mlp=2304, tied=True, bias=True, theta=1e6),
    "mistral-100m": dict(model_type="mistral", arch="MistralForCausalLM", hidden=768, layers=14, heads=12, kv=4, mlp=2304, tied=False, bias=False, theta=1e6),
    "qwen2-tiny": dict(model_type="qwen2", arch="Qwen2ForCausalLM", hidden=64, layers=2, heads=1, kv=1, mlp=176, tied=True, bias=True, theta=1e6),
    "mistral-tiny": dict(model_type="mistral", arch="MistralForCausalLM", hidden=64, layers=2, heads=1, kv=1, mlp=176, tied=False, bias=False, theta=1e6),
    # The CPU capacity comparison (scripts/lab/cpu-capacity-arch.sh): four architectures in the shape of the CPU lab's
    # small Llama base (hidden 64, 2 layers, 4 heads of 16, 2 KV heads, MLP 176), each with its own traits.
    "llama-cpu": dict(model_type="llama", arch="LlamaForCausalLM", hidden=64, layers=2, heads=4, kv=2, hd=16, mlp=176, tied=True, bias=False, theta=1e4),
    "qwen2-cpu": dict(model_type="qwen2", arch="Qwen2ForCausalLM", hidden=64, layers=2, heads=4, kv=2, hd=16, mlp=176, tied=True, bias=True, theta=1e6),
    "qwen3-cpu": dict(model_type="qwen3", arch="Qwen3ForCausalLM", hidden=64, layers=2, heads=4, kv=2, hd=16, mlp=176, tied=True, bias=False, qk_norm=True, theta=1e6),
    "mistral-cpu": dict(model_type="mistral", arch="MistralForCausalLM", hidden=64, layers=2, heads=4, kv=1, hd=16, mlp=176, tied=False, bias=False, theta=1e6),
}
unknown = [n for n in names if n not in SHAPES]
if unknown: sys.exit(f"make_init.py: unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")

class T:
    """A float32 tensor as (shape, bytes)."""
    def __init__(self, shape, data): self.shape, self.data = list(shape), data
    def numel(self):
        k = 1
        for x in self.shape: k *= x
        return k

def normal(rng, std, *shape):
    k = 1
    for x in shape: k *= x
    if np is not None:
        return T(shape, np.random.default_rng(rng.getrandbits(63)).normal(0.0, std, k).astype("<f4").tobytes())
    return T(shape, array.array("f", (rng.gauss(0.0, std) for _ in range(k))).tobytes())

def const(v, n): return T([n], array.array("f", [v]) .tobytes() * n)

def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.data
        header[name] = {"dtype": "F32", "shape": t.shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

for name in names:
    s = SHAPES[name]
    rng = random.Random({"qwen2": 7, "mistral": 8, "llama": 9, "qwen3": 10}[s["model_type"]])
    d, hd = s["hidden"], s.get("hd", 64)
    n = lambda *shape, std=0.02: normal(rng, std, *shape)
    res = 0.02 / (2 * s["layers"]) ** 0.5   # residual-branch outputs scaled down, as GPT-2
    t = {"model.embed_tokens.weight": n(vocab, d), "model.norm.weight": const(1.0, d)}
    if not s["tied"]: t["lm_head.weight"] = n(vocab, d)
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = const(1.0, d)
        t[p + "post_attention_layernorm.weight"] = const(1.0, d)
        t[p + "self_attn.q_proj.weight"] = n(s["heads"] * hd, d)
        t[p + "self_attn.k_proj.weight"] = n(s["kv"] * hd, d)
        t[p + "self_attn.v_proj.weight"] = n(s["kv"] * hd, d)
        t[p + "self_attn.o_proj.weight"] = n(d, s["heads"] * hd, std=res)
        if s["bias"]:
            t[p + "self_attn.q_proj.bias"] = const(0.0, s["heads"] * hd)
            t[p + "self_attn.k_proj.bias"] = const(0.0, s["kv"] * hd)
            t[p + "self_attn.v_proj.bias"] = const(0.0, s["kv"] * hd)
        if s.get("qk_norm"):
            t[p + "self_attn.q_norm.weight"] = const(1.0, hd)
            t[p + "self_attn.k_norm.weight"] = const(1.0, hd)
        t[p + "mlp.gate_proj.weight"] = n(s["mlp"], d)
        t[p + "mlp.up_proj.weight"] = n(s["mlp"], d)
        t[p + "mlp.down_proj.weight"] = n(d, s["mlp"], std=res)
    cfg = {
        "architectures": [s["arch"]], "model_type": s["model_type"], "hidden_size": d, "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv"], "head_dim": hd, "intermediate_size": s["mlp"],
        "vocab_size": vocab, "hidden_act": "silu", "rms_norm_eps": 1e-5, "max_position_embeddings": 2048,
        "rope_parameters": {"rope_theta": s["theta"], "rope_type": "default"}, "tie_word_embeddings": s["tied"],
        "attention_dropout": 0.0, "initializer_range": 0.02, "sliding_window": None, "use_cache": True,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "dtype": "float32",
    }
    if s["model_type"] == "qwen3":
        cfg.update({"attention_bias": False, "use_sliding_window": False, "max_window_layers": s["layers"], "layer_types": ["full_attention"] * s["layers"]})
    if s["model_type"] == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False})
        cfg.pop("sliding_window")   # Llama has none
    if s["model_type"] == "qwen2":
        cfg.update({"use_sliding_window": False, "max_window_layers": s["layers"], "layer_types": ["full_attention"] * s["layers"]})
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), t)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(tok_dir, f)):
            with open(os.path.join(tok_dir, f), "rb") as a, open(os.path.join(out, f), "wb") as b: b.write(a.read())
    print(f"{name}: {sum(v.numel() for v in t.values()):,} parameters -> {out}")
