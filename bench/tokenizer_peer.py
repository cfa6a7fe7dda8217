#!/usr/bin/env python3
"""Hugging Face `tokenizers` side of the tokenizer benchmark (Oml.Bench.Tokenizer --peer runs it).

Encodes the same documents (a JSON array of strings) with Tokenizer.from_file(tokenizer.json), add_special_tokens
False: one thread document by document ("single", best of --rounds, the first round reported as "cold"), and
encode_batch over all documents on every core ("batch"). Prints one JSON object per tokenizer name.
"""
import argparse
import json
import time

import tokenizers

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", required=True)
ap.add_argument("--dir", required=True)
ap.add_argument("--names", default="llama2,llama3,qwen3")
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()
docs = json.load(open(a.corpus, encoding="utf-8"))
mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
out = {"tokenizers": tokenizers.__version__, "results": {}}
for name in a.names.split(","):
    tok = tokenizers.Tokenizer.from_file(f"{a.dir}/{name}/tokenizer.json")
    best, cold, n = 0.0, 0.0, 0
    for r in range(a.rounds):
        t0 = time.perf_counter()
        n = sum(len(tok.encode(d, add_special_tokens=False).ids) for d in docs)
        rate = mb / (time.perf_counter() - t0)
        cold = rate if r == 0 else cold
        best = max(best, rate)
    batch = 0.0
    for r in range(a.rounds):
        t0 = time.perf_counter()
        tok.encode_batch(docs, add_special_tokens=False)
        batch = max(batch, mb / (time.perf_counter() - t0))
    out["results"][name] = {"tokens": n, "single": best, "cold": cold, "batch": batch}
print(json.dumps(out))
