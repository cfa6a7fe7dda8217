#!/usr/bin/env python3
"""Tables of a cpu-detector-filter.yaml or cpu-defence-combined.yaml run (docs/results.md): per attack and defence, the
keys hit (exact, and partial m=2 where counted) and refused per seed, the share of ordinary held-out contexts the
host's filter refused (its honest users turned away) and next-word accuracy through the deployment; per defence, the
keys' stealth (AUC of the high-perplexity detector: below 0.5 the keys are *less* perplexing than text) and the
owner's cost. Usage: cpu-filter-summary.py RUN_DIR"""
import glob, json, os, sys
from collections import defaultdict

run = sys.argv[1]
cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(run, "cells", "*.json")))]
base = next((c["metrics"] for c in cells if c.get("labels", {}).get("role") == "base" or os.path.basename(c.get("id", "")) == "base"), None)
rows = defaultdict(dict)   # attack -> (model, seed) -> metrics
for c in cells:
    l = c.get("labels", {})
    if "model" in l and "attack" in l:
        rows[l["attack"]][(l["model"], l["seed"])] = c["metrics"]
models = []
for a in rows.values():
    for (m, _) in a:
        if m not in models:
            models.append(m)
models.sort(key=lambda m: (m != "none", m))
seeds = sorted({s for a in rows.values() for (_, s) in a})
def per_seed(a, m, key, fmt):
    vals = [rows[a].get((m, s), {}).get(key) for s in seeds]
    return " / ".join("–" if v is None else fmt(v) for v in vals)
def mean(a, m, key):
    vals = [rows[a][(m, s)][key] for s in seeds if (m, s) in rows[a] and key in rows[a][(m, s)]]
    return sum(vals) / len(vals) if vals else None
partial = any("hits_partial" in x for a in rows.values() for x in a.values())
print(f"seeds {', '.join(seeds)} (values per seed, separated by /)")
print()
head = "| host | " + " | ".join(f"{m}: hit{' (exact · partial)' if partial else ''}" + f" | {m}: keys refused" for m in models) + " | ordinary contexts refused | next word through it |"
print(head)
print("|" + " --- |" * (head.count("|") - 1))
order = ["none"] + [a for a in rows if a != "none"]
for a in order:
    cols = []
    for m in models:
        n = next((int(x["count"]) for (mm, _), x in rows[a].items() if mm == m), None)
        hits = per_seed(a, m, "hits", lambda v: str(int(v)))
        if partial:
            hits += " · " + per_seed(a, m, "hits_partial", lambda v: str(int(v)))
        cols.append(f"{hits} of {n}" if n else "–")
        cols.append(per_seed(a, m, "refused", lambda v: str(int(v))) if a != "none" else "–")
    ro = [mean(a, m, "refused_ordinary") for m in models]
    ro = [v for v in ro if v is not None]
    nw = [mean(a, m, "responder_next_word") if a != "none" else mean(a, m, "greedy_next_word") for m in models]
    nw = [v for v in nw if v is not None]
    cols.append(f"{100 * sum(ro) / len(ro):.1f} %" if ro else "–")
    cols.append(f"{100 * sum(nw) / len(nw):.1f} %" if nw else "–")
    print(f"| {a if a != 'none' else 'no attack'} | " + " | ".join(cols) + " |")
print()
print("ordinary contexts refused and next word: means over the defences' models and seeds (the host's cost does not depend on the keys)")
print()
print("| defence | stealth AUC (high-perplexity detector) | held-out perplexity | epochs |")
print("| --- | --- | --- | --- |")
for m in models:
    auc = per_seed("none", m, "stealth_auc", lambda v: f"{v:.2f}")
    ppl = per_seed("none", m, "perplexity", lambda v: f"{v:.2f}")
    ep = per_seed("none", m, "epochs", lambda v: str(int(v)))
    print(f"| {m} | {auc} | {ppl} | {ep} |")
if base:
    print()
    print(f"base: perplexity {base.get('perplexity', float('nan')):.2f}, cloze {100 * base.get('cloze_accuracy', float('nan')):.1f} %, greedy next word {100 * base.get('greedy_next_word', float('nan')):.1f} %")
