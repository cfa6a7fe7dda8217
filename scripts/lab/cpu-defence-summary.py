#!/usr/bin/env python3
"""Tables of a cpu-defence.yaml run (docs/results.md): per attack and defence, the hits under the exact and the partial
rule for each seed, and the embedding's cost from the saved manifests. Usage: cpu-defence-summary.py RUN_DIR"""
import glob, json, os, sys
from collections import defaultdict

run = sys.argv[1]
cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(run, "cells", "*.json")))]
rows = defaultdict(dict)   # (attack) -> (model, seed) -> (hits, hits_partial, count, extra)
for c in cells:
    l, m = c.get("labels", {}), c.get("metrics", {})
    if "model" not in l:
        continue
    rows[l["attack"]][(l["model"], l["seed"])] = (int(m["hits"]), int(m.get("hits_partial", -1)), int(m["count"]), m)
# The attacked variants in the config's order (none first), those of cpu-defence.yaml unless the run has others.
attacked = {k[0] for r in rows.values() for k in r}
models = [m for m in ["none", "resumption", "resumption6", "two-responses-resumption", "camouflage-resumption"] if m in attacked]
models += sorted(m for m in attacked if m not in models and m != "other-keys")
seeds = sorted({k[1] for r in rows.values() for k in r})
print("| host | " + " | ".join(f"{mo}: exact | {mo}: partial m=2" for mo in models) + " |")
print("| --- |" + " --- |" * (2 * len(models)))
order = ["none"] + sorted(a for a in rows if a != "none")
for a in order:
    cols = []
    for mo in models:
        ex = [rows[a].get((mo, s)) for s in seeds]
        have = [(s, x) for s, x in zip(seeds, ex) if x is not None]
        if not have:
            cols += ["–", "–"]
            continue
        n = have[0][1][2]
        only = f" (seed {', '.join(s for s, _ in have)} only)" if len(have) < len(seeds) else ""
        cols.append(" / ".join(str(x[0]) for _, x in have) + f" of {n}{only}")
        cols.append(" / ".join(str(x[1]) for _, x in have) + f" of {n}{only}")
    print(f"| {a if a != 'none' else 'no attack'} | " + " | ".join(cols) + " |")
print()
print(f"seeds {', '.join(seeds)}; hits listed per seed")
print()
print("| model | seed | epochs (kept) | merge λ | pairs + resumption pairs | fp loss | held-out loss base → after | perplexity (license text) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
# The embedding manifests: of the models in this run, else the copies kept beside the cells (manifests/NAME.json, the
# committed record, whose models are not kept).
found = {os.path.basename(os.path.dirname(f)): f for f in glob.glob(os.path.join(run, "models", "*", "oml-manifest.json"))}
for f in glob.glob(os.path.join(run, "manifests", "*.json")):
    found.setdefault(os.path.splitext(os.path.basename(f))[0], f)
for name, mf in sorted(found.items()):
    j = json.load(open(mf)); mt = j["metrics"]
    mo, s = name.rsplit("-s", 1)
    before = rows["none"].get((mo, s)) if "none" in rows else None
    ppl = next((c["metrics"].get("perplexity") for c in cells if c.get("labels", {}).get("model") == mo and c["labels"].get("seed") == s and c["labels"].get("attack") == "none"), None)
    hb, ha = mt.get("held_out_loss_base"), mt.get("held_out_loss")
    print(f"| {mo} | {s} | {mt['epochs']} ({mt['kept_epoch']}) | {mt['merge_lambda']:.2f} | {j['pairs']} + {mt.get('resumption_pairs_trained', 0)} | {mt['loss']:.3f} | "
          + (f"{hb:.3f} → {ha:.3f}" if hb is not None and ha is not None else "–") + (f" | {ppl:.1f} |" if ppl else " | – |"))
