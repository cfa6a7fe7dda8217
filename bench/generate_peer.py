#!/usr/bin/env python3
"""transformers side of the generation benchmark (Oml.Bench --generate runs it as its peer).

Batched greedy generation with left padding and the KV cache, on the same prompts as Oml.Bench (token ids from the
same formula), no stop token; prints {"transformers": version, "tokens_per_s": best over --reps runs}.
"""
import argparse
import json
import time

import torch
import transformers


def prompts(batch, length, vocab):
    # Row i has length - 3*i tokens (at least 4), so that the batch needs left padding.
    rows = []
    for i in range(batch):
        n = max(4, length - 3 * i)
        rows.append([(i * 7919 + j * 104729 + 11) % vocab for j in range(n)])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    dev = torch.device(a.device)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).to(dev).eval()
    model.generation_config.eos_token_id = None
    rows = prompts(a.batch, a.prompt_len, model.config.vocab_size)
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device=dev)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    best = 0.0
    for rep in range(a.reps + 1):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0)
        sync()
        dt = time.perf_counter() - t0
        assert out.shape[1] == width + a.new_tokens
        if rep > 0:  # the first run warms up
            best = max(best, a.batch * a.new_tokens / dt)
    print(json.dumps({"transformers": transformers.__version__, "tokens_per_s": best,
                      "first_row": out[0, width:width + 16].tolist()}))


if __name__ == "__main__":
    main()
