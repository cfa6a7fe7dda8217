#!/usr/bin/env python3
"""Tables of a cpu-attacker-cost.yaml run (docs/results.md, "What the attacks cost a host whose model answers
instructions"): per attack and defence, the keys hit per seed (exact rule) and the attacker's cost to its honest users,
as the relative change of whole-answer token F1 on the 200 held-out instructions against the same model served
without the attack (a refused instruction scores 0), with the share of the host's instructions and of ordinary text
contexts its filter refused; per defence, the owner's cost (held-out text perplexity and answer F1 against the base) and
the keys' stealth AUC under the fingerprinted model. Usage: cpu-attacker-cost-summary.py RUN_DIR > summary.md"""
import glob, json, os, sys
from collections import defaultdict

run = sys.argv[1]
cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(run, "cells", "*.json")))]
base = next(c["metrics"] for c in cells if c.get("id") == "base")
rows = defaultdict(dict)   # attack -> (model, seed) -> metrics
order = []
for c in cells:
    l = c.get("labels", {})
    if "model" in l and "attack" in l:
        rows[l["attack"]][(l["model"], l["seed"])] = c["metrics"]
        if l["attack"] not in order: order.append(l["attack"])
models = sorted({m for a in rows.values() for (m, _) in a}, key=lambda m: (m != "none", m))
seeds = sorted({s for a in rows.values() for (_, s) in a})
# The unattacked cell of each model is the one whose attack label is empty ("before").
plain = {k: v for c in cells for k, v in [((c["labels"].get("model"), c["labels"].get("seed")), c["metrics"])] if c.get("id", "").endswith("-before")}

def fmt_seeds(vals, f):
    return " / ".join("–" if v is None else f(v) for v in vals)

print(f"# {os.path.basename(os.path.abspath(run))}: keys hit and the attacker's cost\n")
print(f"Base: held-out perplexity {base['perplexity']:.1f}, answer F1 {base.get('answer_f1', float('nan')):.3f}, "
      f"answer length {base.get('answer_length', float('nan')):.1f} tokens. Seeds {', '.join(seeds)}.\n")
print("## Owner's side (no attack)\n")
print("| defence | keys hit | text perplexity | answer F1 | stealth AUC |")
print("| --- | --- | --- | --- | --- |")
for m in models:
    ms = [plain.get((m, s)) for s in seeds]
    print(f"| {m} | {fmt_seeds([x and x['hits'] for x in ms], lambda v: f'{v:.0f}')} of {int(ms[0]['count']) if ms[0] else '?'} "
          f"| {fmt_seeds([x and x['perplexity'] for x in ms], lambda v: f'{v:.0f}')} "
          f"| {fmt_seeds([x and x.get('answer_f1') for x in ms], lambda v: f'{v:.3f}')} "
          f"| {fmt_seeds([x and x.get('stealth_auc') for x in ms], lambda v: f'{v:.2f}')} |")
print()
print("## Attacks: keys hit per seed · the attacker's answer-F1 change against its unattacked model (mean over seeds) · "
      "its filter's refusals of instructions / text contexts (mean)\n")
print("| attack | " + " | ".join(models) + " |")
print("| --- | " + " | ".join("---" for _ in models) + " |")
for a in order:
    cells_ = []
    for m in models:
        hits = [rows[a].get((m, s), {}).get("hits") for s in seeds]
        if all(h is None for h in hits): cells_.append("–"); continue
        d = []
        for s in seeds:
            r, p = rows[a].get((m, s)), plain.get((m, s))
            if r and p and p.get("answer_f1"): d.append(r["answer_f1"] / p["answer_f1"] - 1)
        ri = [rows[a][(m, s)]["refused_instructions"] for s in seeds if (m, s) in rows[a] and "refused_instructions" in rows[a][(m, s)]]
        ro = [rows[a][(m, s)]["refused_ordinary"] for s in seeds if (m, s) in rows[a] and "refused_ordinary" in rows[a][(m, s)]]
        txt = fmt_seeds(hits, lambda v: f"{v:.0f}")
        if d: txt += f" · F1 {100 * sum(d) / len(d):+.0f} %"
        if ri or ro:
            txt += " · refused " + (f"{100 * sum(ri) / len(ri):.0f} %" if ri else "–") + " / " + (f"{100 * sum(ro) / len(ro):.0f} %" if ro else "–")
        cells_.append(txt)
    print(f"| `{a}` | " + " | ".join(cells_) + " |")
