#!/usr/bin/env python3
"""Tables of a small CPU lab run of issue 13 item 5 (cpu-embedding-method*.yaml, cpu-perinucleus-tk*.yaml; see
docs/results.md): for each model and attack, the fingerprints hit per seed and the FSR's mean and range over seeds,
the license-text perplexity's mean and range, and (where measured) the key detector's AUC; then each model's embedding
from its saved manifest. The cell files named in the last column hold each number. Usage: cpu-small-summary.py RUN_DIR"""
import glob, json, math, os, sys
from collections import defaultdict

run = sys.argv[1]
cells = {}
for f in sorted(glob.glob(os.path.join(run, "cells", "*.json"))):
    c = json.load(open(f))
    cells[os.path.basename(f)] = c
rows = defaultdict(dict)   # (model, attack) -> seed -> (metrics, file)
order_models, order_attacks = [], []
for name, c in sorted(cells.items(), key=lambda kv: kv[1].get("order", 0)):
    l = c.get("labels", {})
    if "model" not in l:
        continue
    if l["model"] not in order_models:
        order_models.append(l["model"])
    if l["attack"] not in order_attacks:
        order_attacks.append(l["attack"])
    rows[(l["model"], l["attack"])][l["seed"]] = (c["metrics"], name)
seeds = sorted({s for r in rows.values() for s in r}, key=int)
attacks = ["none"] + [a for a in order_attacks if a != "none"]

def num(x):
    return float(x) if isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x)) else None

def spread(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = sum(vals) / len(vals)
    return f"{fmt(m)} ({fmt(min(vals))}–{fmt(max(vals))})" if len(vals) > 1 else fmt(m)

base = next((c["metrics"] for c in cells.values() if c.get("id") == "base"), {})
print(f"Seeds {', '.join(seeds)}. Means over seeds, the range (min–max) in brackets. License-text perplexity of the base: "
      f"{base.get('perplexity', float('nan')):.1f}.")
print()
has_auc = any("stealth_auc" in m for r in rows.values() for m, _ in r.values())
print("| model | attack | hits per seed | FSR | perplexity |" + (" key detector AUC |" if has_auc else "") + " cells (cells/, one per seed) |")
print("| --- | --- | --- | --- | --- |" + (" --- |" if has_auc else "") + " --- |")
for mo in order_models:
    for a in attacks:
        r = rows.get((mo, a))
        if not r:
            continue
        ms = [r[s][0] if s in r else None for s in seeds]
        hits = " / ".join(f"{int(m['hits'])}" if m and "hits" in m else "–" for m in ms)
        n = next((int(m["count"]) for m in ms if m and "count" in m), 0)
        fsr = spread([num(m.get("fsr")) if m else None for m in ms], lambda v: f"{100 * v:.0f} %")
        ppl = spread([num(m.get("perplexity")) if m else None for m in ms], lambda v: f"{v:.1f}")
        auc = spread([num(m.get("stealth_auc")) if m else None for m in ms], lambda v: f"{v:.2f}") if has_auc else None
        first = next(s for s in seeds if s in r)
        files = "`" + r[first][1].replace(f"-s{first}-", "-s*-", 1) + "`"
        print(f"| {mo} | {'no attack' if a == 'none' else a} | {hits} of {n} | {fsr} | {ppl} |" + (f" {auc} |" if has_auc else "") + f" {files} |")
print()
print("Embedding, per model (means over seeds, range in brackets), from models/NAME-sSEED/oml-manifest.json:")
print()
print("| model | train | trained parameters | epochs | final merge λ | fp loss | held-out loss base → after | embed s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for mo in order_models:
    ms = []
    for s in seeds:
        mf = os.path.join(run, "models", f"{mo}-s{s}", "oml-manifest.json")
        if os.path.exists(mf):
            ms.append(json.load(open(mf)))
    if not ms:
        continue
    g = lambda k: [num(j["metrics"].get(k)) for j in ms]
    tp = sorted({int(j["metrics"]["trained_parameters"]) for j in ms})
    hb = spread(g("held_out_loss_base"), lambda v: f"{v:.3f}")
    ha = spread(g("held_out_loss"), lambda v: f"{v:.3f}")
    es = spread([num(rows[(mo, "none")][s][0].get("embed_seconds")) for s in seeds if s in rows.get((mo, "none"), {})], lambda v: f"{v:.0f}")
    print(f"| {mo} | {ms[0]['settings'].get('train', 'all')} | {', '.join(f'{t:,}' for t in tp)} | {spread(g('epochs'), lambda v: f'{v:.1f}')} | "
          f"{spread(g('merge_lambda'), lambda v: f'{v:.2f}')} | {spread(g('loss'), lambda v: f'{v:.3f}')} | {hb} → {ha} | {es} |")
