#!/usr/bin/env python3
"""The utility-persistence frontier of issue 12 on one Llama base from the issue12e driver's snapshots (the three
default seeds, ARCH-sSEED, and the VARIANTS models, llama-NAME): one point per model, its perplexity (and cloze) change
against the lab's base cell on the x axis, persistence after SFT (dots) and after an even merge with the base (squares).
Usage: frontier.py OUT SNAPSHOT_DIR... (writes OUT/frontier-perplexity.svg and OUT/frontier-cloze.svg)."""
import glob, json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import labsummary as ls  # noqa: E402

out, snaps = sys.argv[1], sys.argv[2:]
pts, seen = [], set()
for snap in snaps:
    for exp in sorted(glob.glob(os.path.join(snap, "results", "i12e-llama"))):
        cells = [json.load(open(p)) for p in glob.glob(os.path.join(exp, "cells", "*.json"))]
        base = next((c["metrics"] for c in cells if c.get("id") == "base"), None)
        if base is None:
            sys.exit(f"frontier.py: {exp} has no base cell")
        for m in sorted({c["labels"]["model"] for c in cells if "model" in c.get("labels", {})}):
            mine = {ls.attack_kind(c["labels"].get("attack", "")): c["metrics"] for c in cells if c.get("labels", {}).get("model") == m}
            if "before" not in mine or m in seen:
                continue
            seen.add(m)
            b = mine["before"]
            # The three default seeds keep their names (llama-sN); a variant drops the "llama-" prefix.
            name = m if m.startswith("llama-s") else m[len("llama-"):]
            pts.append((name, 100 * (b["perplexity"] / base["perplexity"] - 1), 100 * (b["cloze_accuracy"] - base["cloze_accuracy"]),
                        mine.get("sft3e-5", {}).get("fsr"), mine.get("merge-base", {}).get("fsr")))
palette = {"defaults": "#0072B2", "default": "#0072B2", "beta75": "#D55E00", "text": "#009E73", "lr4": "#CC79A7"}
colour = lambda n: "#0072B2" if n.startswith("llama-s") else palette.get(n, "#999999")
legend = [("#0072B2", "defaults (3 seeds + set 1)"), ("#D55E00", "--mix-fraction 0.75"), ("#009E73", "--benign-text"),
          ("#CC79A7", "--lr 4e-5"), ("#999999", "other variants")]
os.makedirs(out, exist_ok=True)
ls.frontier_svg(os.path.join(out, "frontier-perplexity.svg"), pts, 1, "perplexity change", " %", 2, colour, legend)
ls.frontier_svg(os.path.join(out, "frontier-cloze.svg"), pts, 2, "cloze change", "", -1, colour, legend)
for p in pts:
    print(f"{p[0]:14} {p[1]:+5.1f} % {p[2]:+5.1f}  SFT {p[3]}  merge {p[4]}")
