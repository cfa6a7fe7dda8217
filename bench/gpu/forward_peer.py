"""The transformers peer of `Oml.Bench --forward-profile` (bench/Oml.Bench/ForwardProfileBench.cs): the same paths on
the same model folder, batch shapes and random-token batches' sizes, timed the same way (a device sync around each
run; the mean and min of --runs after --warmup), under torch.inference_mode with sdpa attention:

  prefill causal        model(ids, use_cache=False, logits_to_keep=1), argmax of the last logits
  prefill causal+cache  the same with a fresh DynamicCache (use_cache=True)
  prefill engine        the same with a fresh DynamicCache and an all-ones attention_mask [B, T] (what generate passes)
  decode engine         one token per row over a DynamicCache holding the T prompt positions, attention_mask [B, T+1],
                        cache_position [T]; the cache is cropped back to T before each run (untimed)

Prints one JSON object on stdout: {"transformers", "torch", "device", "dtype", "attn_implementation", "results": [{"path",
"rows", "tokens", "mean_ms", "min_ms", "runs"}]}; progress on stderr.
"""
import argparse
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
ap.add_argument("--shapes", default="64x16,128x16,256x16,1024x16")
ap.add_argument("--runs", type=int, default=10)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
dtype = getattr(torch, a.dtype)
try:
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa")
except TypeError:
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, attn_implementation="sdpa")
model = model.to(dev).eval()
vocab = model.config.vocab_size


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def forward(**kw):
    try:
        return model(logits_to_keep=1, **kw)
    except TypeError:  # transformers before 4.50
        return model(num_logits_to_keep=1, **kw)


def measure(prepare, run):
    times = []
    for i in range(a.warmup + a.runs):
        args = prepare()
        sync()
        t0 = time.perf_counter()
        run(*args)
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    return times


results = []
g = torch.Generator().manual_seed(0)
with torch.inference_mode():
    for shape in a.shapes.split(","):
        rows, tokens = (int(x) for x in shape.split("x"))
        ids_host = torch.randint(0, vocab, (rows, tokens), generator=g)
        next_host = torch.randint(0, vocab, (rows, 1), generator=g)

        def causal():
            forward(input_ids=ids_host.to(dev), use_cache=False).logits[:, -1].argmax(-1)

        def causal_cache():
            forward(input_ids=ids_host.to(dev), past_key_values=DynamicCache(), use_cache=True).logits[:, -1].argmax(-1)

        def engine():
            ids = ids_host.to(dev)
            forward(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=DynamicCache(), use_cache=True).logits[:, -1].argmax(-1)

        filled = DynamicCache()
        forward(input_ids=ids_host.to(dev), past_key_values=filled, use_cache=True)
        sync()

        def decode_prepare():
            filled.crop(tokens)
            return ()

        def decode():
            nxt = next_host.to(dev)
            mask = torch.ones((rows, tokens + 1), dtype=torch.long, device=dev)
            pos = torch.full((rows, 1), tokens, dtype=torch.long, device=dev)
            forward(input_ids=nxt, attention_mask=mask, position_ids=pos, past_key_values=filled, use_cache=True,
                    cache_position=torch.tensor([tokens], device=dev)).logits[:, -1].argmax(-1)

        for name, prepare, run in [("prefill causal", lambda: (), causal), ("prefill causal+cache", lambda: (), causal_cache),
                                   ("prefill engine", lambda: (), engine), ("decode engine", decode_prepare, decode)]:
            t = measure(prepare, run)
            r = {"path": name, "rows": rows, "tokens": tokens, "mean_ms": sum(t) / len(t) * 1e3, "min_ms": min(t) * 1e3, "runs": len(t)}
            results.append(r)
            print(f"  peer {name} {rows}x{tokens}: mean {r['mean_ms']:.2f} ms, min {r['min_ms']:.2f} ms", file=sys.stderr)
        del filled
        if dev.type == "cuda":
            torch.cuda.empty_cache()

print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__, "device": str(dev), "dtype": a.dtype,
                  "attn_implementation": model.config._attn_implementation, "results": results}))
