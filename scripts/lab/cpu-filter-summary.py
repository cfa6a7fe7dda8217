#!/usr/bin/env python3
"""Tables of a cpu-detector-filter.yaml or cpu-defence-combined.yaml run (docs/results.md): per attack and defence, the
keys hit (exact, and partial m=2 where counted) and refused per seed, the share of ordinary held-out contexts the
host's filter refused (its honest users turned away) and next-word accuracy through the deployment; per defence, the
keys' stealth (AUC of the high-perplexity detector: below 0.5 the keys are *less* perplexing than text) and the
owner's cost. With PLOT.svg, also the frontier of the filter attack: each defence's fingerprint success (mean over seeds)
against the share of ordinary contexts the host refused, one point per filter. Usage: cpu-filter-summary.py RUN_DIR [PLOT.svg]"""
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


def frontier_svg(path):
    """FSR (mean over seeds) against the share of ordinary contexts refused, for every filter attack, one line per defence."""
    filters = [a for a in rows if a.startswith("filter:") and "+" not in a]
    pts = {}
    for m in models:
        line = [(0.0, mean("none", m, "fsr") or 0.0, "none")]
        for a in filters:
            x, y = mean(a, m, "refused_ordinary"), mean(a, m, "fsr")
            if x is not None and y is not None:
                q = a.split("q=")[1].split(",")[0]
                line.append((100 * x, y, ("low " if "side=low" in a else "high ") + q))
        # In order of the filter's strength: no filter, then the low filter by quantile; the high filters after.
        pts[m] = [line[0]] + sorted(line[1:], key=lambda p: (p[2].startswith("high"), float(p[2].split()[1])))
    W_, H_, L_, R_, T_, B_ = 720, 420, 70, 150, 40, 60
    x1 = max(x for l in pts.values() for x, _, _ in l) * 1.1 or 1
    X = lambda v: L_ + v / x1 * (W_ - L_ - R_)
    Y = lambda v: T_ + (1 - v) * (H_ - T_ - B_)
    colours = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W_}" height="{H_}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W_}" height="{H_}" fill="white"/>',
         f'<text x="{W_ / 2}" y="22" text-anchor="middle" font-size="14">Perplexity filters: fingerprints kept against honest prompts refused ({os.path.basename(os.path.normpath(run))})</text>']
    for v in [0, 0.2, 0.4, 0.6, 0.8, 1.0]:
        o.append(f'<line x1="{L_}" x2="{W_ - R_}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/><text x="{L_ - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    step = 1 if x1 <= 12 else 2 if x1 <= 25 else 5
    v = 0
    while v <= x1:
        o.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{T_}" y2="{H_ - B_}" stroke="#eee"/><text x="{X(v):.1f}" y="{H_ - B_ + 16}" text-anchor="middle">{v:g} %</text>')
        v += step
    o.append(f'<line x1="{X(2):.1f}" x2="{X(2):.1f}" y1="{T_}" y2="{H_ - B_}" stroke="#999" stroke-dasharray="4 3"/><text x="{X(2) + 3:.1f}" y="{T_ + 12}" fill="#666">2 %</text>')
    o.append(f'<rect x="{L_}" y="{T_}" width="{W_ - L_ - R_}" height="{H_ - T_ - B_}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{(L_ + W_ - R_) / 2}" y="{H_ - 18}" text-anchor="middle">ordinary held-out contexts refused by the host (its cost)</text>')
    o.append(f'<text transform="translate(18 {(T_ + H_ - B_) / 2}) rotate(-90)" text-anchor="middle">fingerprint success (mean over seeds)</text>')
    for i, (m, line) in enumerate(pts.items()):
        col = colours[i % len(colours)]
        low = [p for p in line if not p[2].startswith("high")]
        o.append('<polyline fill="none" stroke="' + col + '" stroke-width="2" points="' + " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y, _ in low) + '"/>')
        for x, y, lab in line:
            shape = f'<rect x="{X(x) - 4:.1f}" y="{Y(y) - 4:.1f}" width="8" height="8" fill="white" stroke="{col}" stroke-width="2"/>' if lab.startswith("high") \
                else f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="{col}"/>'
            o.append(shape + f'<text x="{X(x) + 6:.1f}" y="{Y(y) - 6:.1f}" font-size="10" fill="{col}">{lab}</text>')
        o.append(f'<circle cx="{W_ - R_ + 17}" cy="{T_ + 10 + 18 * i}" r="5" fill="{col}"/><text x="{W_ - R_ + 26}" y="{T_ + 14 + 18 * i}">{m}</text>')
    n = len(pts)
    o.append(f'<circle cx="{W_ - R_ + 17}" cy="{T_ + 22 + 18 * n}" r="4" fill="#555"/><text x="{W_ - R_ + 26}" y="{T_ + 26 + 18 * n}">low filter, q</text>')
    o.append(f'<rect x="{W_ - R_ + 13}" y="{T_ + 36 + 18 * n}" width="8" height="8" fill="white" stroke="#555" stroke-width="2"/><text x="{W_ - R_ + 26}" y="{T_ + 44 + 18 * n}">high filter, q</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


if len(sys.argv) > 2:
    frontier_svg(sys.argv[2])
