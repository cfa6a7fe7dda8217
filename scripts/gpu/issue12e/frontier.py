#!/usr/bin/env python3
"""The utility-persistence frontier of issue 12 on one Llama base from the issue12e driver's snapshots (the three
default seeds, ARCH-sSEED, and the VARIANTS models, llama-NAME): one point per model, its perplexity (and cloze) change
against the lab's base cell on the x axis, persistence after SFT (dots) and after an even merge with the base (squares);
and perplexity against survival of the even merge with the unrelated fine-tune. Usage: frontier.py OUT SNAPSHOT_DIR...
(raw snapshots or committed results folders; writes OUT/frontier-{perplexity,cloze,merge-ft}.svg)."""
import glob, json, math, os, re, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import labsummary as ls  # noqa: E402

out, snaps = sys.argv[1], sys.argv[2:]
pts, seen = [], set()
for snap in snaps:
    # A raw snapshot holds results/i12e-llama; a committed results folder may hold the lab's report flat in results/.
    exps = sorted(glob.glob(os.path.join(snap, "results", "i12e-llama"))) or \
        ([os.path.join(snap, "results")] if os.path.isdir(os.path.join(snap, "results", "cells")) else [])
    for exp in exps:
        cells = [json.load(open(p)) for p in glob.glob(os.path.join(exp, "cells", "*.json"))]
        base = next((c["metrics"] for c in cells if c.get("id") == "base"), None)
        if base is None:
            sys.exit(f"frontier.py: {exp} has no base cell")
        for m in sorted({c["labels"]["model"] for c in cells if "model" in c.get("labels", {})}):
            mine = {ls.attack_kind(c["labels"].get("attack", "")): c["metrics"] for c in cells if c.get("labels", {}).get("model") == m}
            # Trees are another key set (256 keys, 8 answers each): not a point of the 1,024-key frontier.
            if "before" not in mine or m in seen or m == "llama-trees":
                continue
            seen.add(m)
            b = mine["before"]
            # The three default seeds keep their names (llama-sN); a variant drops the "llama-" prefix.
            name = m if m.startswith("llama-s") else m[len("llama-"):]
            pts.append((name, 100 * (b["perplexity"] / base["perplexity"] - 1), 100 * (b["cloze_accuracy"] - base["cloze_accuracy"]),
                        mine.get("sft3e-5", {}).get("fsr"), mine.get("merge-base", {}).get("fsr"), mine.get("merge-ft", {}).get("fsr")))
# Recipes: a variant NAME-sSEED belongs to NAME; the defaults are llama-sN, "default" or "def-sN".
RECIPES = [("def", "#0072B2", "defaults"), ("b75", "#D55E00", "--mix-fraction 0.75"), ("text", "#009E73", "--benign-text"),
           ("tb75", "#E69F00", "β 0.75 + --benign-text"), ("tb75l10", "#56B4E9", "β 0.75 + text + λ ≤ 0.1"),
           ("b75p", "#F0E442", "β 0.75, pool 24,576"), ("lr4", "#CC79A7", "--lr 4e-5"),
           ("l10", "#000000", "λ ≤ 0.1 alone"), ("b75l10", "#882255", "β 0.75 + λ ≤ 0.1")]
ALIAS = {"default": "def", "beta75": "b75"}
def recipe(n):
    if n.startswith("llama-s"): return "def"
    g = re.sub(r"-s\d+$", "", n)
    return ALIAS.get(g, g)
colour = lambda n: next((c for r, c, _ in RECIPES if r == recipe(n)), "#999999")
present = {recipe(p[0]) for p in pts}
legend = [(c, l) for r, c, l in RECIPES if r in present] + [("#999999", "other variants")]


def merge_ft_svg(path):
    """Perplexity change against persistence after an even merge with the unrelated fine-tune (the binding target on
    this base), one point per model; the corner that meets both targets shaded."""
    W_, H_, L_, R_, T_, B_ = 760, 460, 70, 190, 40, 60
    xs = [p[1] for p in pts] + [0, 2]; ys = [p[5] for p in pts if p[5] is not None] + [0.6]
    x0, x1 = min(xs), max(xs); y0, y1 = min(ys) - 0.03, max(ys) + 0.03
    px = 0.08 * (x1 - x0 or 1); x0 -= px; x1 += px
    X = lambda v: L_ + (v - x0) / (x1 - x0) * (W_ - L_ - R_)
    Y = lambda v: T_ + (y1 - v) / (y1 - y0) * (H_ - T_ - B_)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W_}" height="{H_}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W_}" height="{H_}" fill="white"/>',
         f'<text x="{W_ / 2}" y="22" text-anchor="middle" font-size="14">Perplexity change against survival of an even merge with an unrelated fine-tune</text>',
         f'<rect x="{X(x0):.1f}" y="{Y(y1):.1f}" width="{X(2) - X(x0):.1f}" height="{Y(0.6) - Y(y1):.1f}" fill="#009E73" opacity="0.15"/>',
         f'<text x="{X(x0) + 4:.1f}" y="{Y(0.6) - 6:.1f}" fill="#009E73">meets both: perplexity ≤ +2 %, merge ≥ 0.6</text>',
         f'<line x1="{X(2):.1f}" x2="{X(2):.1f}" y1="{T_}" y2="{H_ - B_}" stroke="#009E73" stroke-dasharray="4 3"/>',
         f'<line x1="{L_}" x2="{W_ - R_}" y1="{Y(0.6):.1f}" y2="{Y(0.6):.1f}" stroke="#D55E00" stroke-dasharray="4 3"/>']
    v = math.ceil(y0 * 20) / 20
    while v <= y1:
        s.append(f'<line x1="{L_}" x2="{W_ - R_}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/><text x="{L_ - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        v += 0.05
    v = math.ceil(x0 * 2) / 2
    while v <= x1:
        s.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{T_}" y2="{H_ - B_}" stroke="#eee"/><text x="{X(v):.1f}" y="{H_ - B_ + 16}" text-anchor="middle">{v:+g} %</text>')
        v += 0.5
    s.append(f'<rect x="{L_}" y="{T_}" width="{W_ - L_ - R_}" height="{H_ - T_ - B_}" fill="none" stroke="#333"/>')
    s.append(f'<text x="{(L_ + W_ - R_) / 2}" y="{H_ - 18}" text-anchor="middle">held-out perplexity change vs the base (1,024 fingerprints, 102.7M Llama, 500M tokens)</text>')
    s.append(f'<text transform="translate(18 {(T_ + H_ - B_) / 2}) rotate(-90)" text-anchor="middle">persistence after the merge (FSR after / before)</text>')
    for p in pts:
        if p[5] is None: continue
        s.append(f'<circle cx="{X(p[1]):.1f}" cy="{Y(p[5]):.1f}" r="5" fill="{colour(p[0])}" stroke="#333" stroke-width="0.5"/>'
                 f'<text x="{X(p[1]) + 7:.1f}" y="{Y(p[5]) - 5:.1f}" font-size="9">{p[0]}</text>')
    lx = W_ - R_ + 12
    for i, (c, l) in enumerate(legend):
        s.append(f'<circle cx="{lx + 5}" cy="{T_ + 10 + 18 * i}" r="5" fill="{c}"/><text x="{lx + 14}" y="{T_ + 14 + 18 * i}">{l}</text>')
    s.append("</svg>")
    open(path, "w").write("\n".join(s) + "\n")


os.makedirs(out, exist_ok=True)
ls.frontier_svg(os.path.join(out, "frontier-perplexity.svg"), pts, 1, "perplexity change", " %", 2, colour, legend)
ls.frontier_svg(os.path.join(out, "frontier-cloze.svg"), pts, 2, "cloze change", "", -1, colour, legend)
merge_ft_svg(os.path.join(out, "frontier-merge-ft.svg"))
for p in pts:
    print(f"{p[0]:14} {p[1]:+5.1f} % {p[2]:+5.1f}  SFT {p[3]}  merge base {p[4]}  merge ft {p[5]}")
