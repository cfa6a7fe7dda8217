#!/usr/bin/env python3
"""Tables of a cpu-response-length.yaml run (docs/results.md): per response length and seed, the hits after embedding,
after each SFT attack and under first-token suppression, under the exact and the partial rule, and the embedding's
cost from the saved manifests. Usage: cpu-response-length-summary.py RUN_DIR"""
import glob, json, os, sys
from collections import defaultdict

run = sys.argv[1]
cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(run, "cells", "*.json")))]
rows = defaultdict(dict)   # attack -> (model, seed) -> metrics
for c in cells:
    l = c.get("labels", {})
    if "model" in l:
        rows[l["attack"]][(l["model"], l["seed"])] = c["metrics"]
models = sorted({k[0] for r in rows.values() for k in r}, key=lambda m: int(m.replace("resp", "")))
seeds = sorted({k[1] for r in rows.values() for k in r})
attacks = ["none"] + sorted(a for a in rows if a != "none")
m_partial = next((int(m["partial_min_tokens"]) for r in rows.values() for m in r.values() if "partial_min_tokens" in m), None)

def col(a, mo, key):
    xs = [rows[a].get((mo, s)) for s in seeds]
    if any(x is None or key not in x for x in xs):
        return "–"
    n = int(xs[0]["count"])
    vals = [int(x[key]) for x in xs]
    return " / ".join(map(str, vals)) + f" of {n} ({100 * sum(vals) / (n * len(vals)):.0f} %)"

print(f"Hits per seed ({' / '.join(seeds)}); in brackets the share over all seeds. Partial rule: m = {m_partial}.")
print()
print("| host | rule | " + " | ".join(f"{m[4:]}-token responses" for m in models) + " |")
print("| --- | --- |" + " --- |" * len(models))
for a in attacks:
    name = "no attack" if a == "none" else a
    print(f"| {name} | exact | " + " | ".join(col(a, mo, "hits") for mo in models) + " |")
    print(f"| {name} | partial | " + " | ".join(col(a, mo, "hits_partial") for mo in models) + " |")
print()
base = next((c["metrics"] for c in cells if c.get("id") == "base"), {})
print(f"License-text perplexity of the base: {base.get('perplexity', float('nan')):.1f}.")
print()
print("| model | seed | epochs (kept) | merge λ | pairs | fp loss | held-out loss base → after | embed s | perplexity after embedding | after each SFT |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
sfts = [a for a in attacks if a.startswith("sft")]
for mo in models:
    for s in seeds:
        mf = os.path.join(run, "models", f"{mo}-s{s}", "oml-manifest.json")
        if not os.path.exists(mf):
            continue
        j = json.load(open(mf)); mt = j["metrics"]
        b = rows["none"].get((mo, s), {})
        after = " / ".join(f"{rows[a][(mo, s)]['perplexity']:.1f}" if (mo, s) in rows[a] else "–" for a in sfts)
        print(f"| {mo} | {s} | {mt['epochs']} ({mt['kept_epoch']}) | {mt['merge_lambda']:.2f} | {j['pairs']} | {mt['loss']:.3f} | "
              f"{mt['held_out_loss_base']:.3f} → {mt['held_out_loss']:.3f} | {b.get('embed_seconds', float('nan')):.0f} | "
              f"{b.get('perplexity', float('nan')):.1f} | {after} |")
print()
print("SFT attacks, in the order of the last column: " + "; ".join(sfts))
