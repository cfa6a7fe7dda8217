#!/usr/bin/env python3
"""Tables of the issue-13 100M session (scripts/gpu/issue13b/drive.sh) from its unpacked snapshot: per model (key
temperature, seed), the owner's cost (held-out perplexity and cloze against the base), the keys' stealth (AUC of the
high-perplexity detector from `oml attack detect`), persistence after even merges and SFT, and the fingerprints left
under the low-perplexity filter and first-token suppression; then means over seeds per variant.
Usage: summarize.py SNAPSHOT_DIR [OUT_DIR] (writes OUT_DIR/summary.md when given, else prints)."""
import glob, json, os, re, statistics, sys

snap = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else None
cells = {}
for f in glob.glob(os.path.join(snap, "results", "i13b", "cells", "*.json")):
    c = json.load(open(f))
    cells[os.path.splitext(os.path.basename(f))[0]] = c
base = cells.get("base", {}).get("metrics", {})
models = sorted({c["labels"]["model"] for c in cells.values() if "model" in c.get("labels", {})})
COLS = [("merge base", lambda a: a.startswith("merge(") and "base-100m," in a),
        ("merge ft", lambda a: a.startswith("merge(") and "base-100m-sft" in a),
        ("SFT 3e-5", lambda a: a.startswith("sft(")),
        ("low q0.02", lambda a: a == "filter:q=0.02,side=low"),
        ("low q0.1", lambda a: a == "filter:q=0.1,side=low"),
        ("top-1", lambda a: a == "suppress:k=1,m=1"),
        ("top-3", lambda a: a == "suppress:k=1,m=3"),
        ("low q0.05 + top-3", lambda a: a == "filter:q=0.05,side=low+suppress:k=1,m=3")]
rows = []
for m in models:
    mine = [c for c in cells.values() if c.get("labels", {}).get("model") == m]
    before = next((c["metrics"] for c in mine if c["labels"].get("attack") == "none"), None)
    if before is None:
        continue
    r = {"model": m, "fsr": before.get("fsr"), "ppl": before.get("perplexity"), "cloze": before.get("cloze_accuracy")}
    det = os.path.join(snap, "results", f"detect-{m}.json")
    r["auc"] = json.load(open(det))["detector_auc"] if os.path.exists(det) else None
    for name, match in COLS:
        c = next((c["metrics"] for c in mine if match(c["labels"].get("attack", ""))), None)
        r[name] = c.get("fsr") if c else None
        if name.startswith("low") and c:
            r[name + " refused"] = c.get("refused_ordinary")
    rows.append(r)

def f(v, fmt="{:.3f}"):
    return "–" if v is None else fmt.format(v)
lines = []
bp, bc = base.get("perplexity"), base.get("cloze_accuracy")
lines.append(f"base: held-out perplexity {f(bp, '{:.2f}')}, cloze {f(bc and 100 * bc, '{:.1f}')} %")
lines.append("")
head = ["model", "FSR", "perplexity (change)", "cloze (change, points)", "key AUC"] + [n for n, _ in COLS]
lines.append("| " + " | ".join(head) + " |")
lines.append("|" + " --- |" * len(head))
for r in rows:
    ppl = f"{r['ppl']:.2f} ({100 * (r['ppl'] / bp - 1):+.1f} %)" if r["ppl"] and bp else "–"
    cl = f"{100 * r['cloze']:.1f} ({100 * (r['cloze'] - bc):+.1f})" if r["cloze"] is not None and bc is not None else "–"
    lines.append("| " + " | ".join([r["model"], f(r["fsr"]), ppl, cl, f(r["auc"], "{:.2f}")] + [f(r[n]) for n, _ in COLS]) + " |")
refused = [r.get("low q0.02 refused") for r in rows if r.get("low q0.02 refused") is not None]
refused10 = [r.get("low q0.1 refused") for r in rows if r.get("low q0.1 refused") is not None]
if refused:
    lines.append("")
    lines.append(f"ordinary held-out contexts the low filter refused (the host's cost), mean over models: q 0.02 {100 * statistics.mean(refused):.1f} %, q 0.1 {100 * statistics.mean(refused10):.1f} %")
lines.append("")
lines.append("Means over seeds per variant (± sample standard deviation where there are several):")
lines.append("")
lines.append("| variant | seeds | perplexity change | cloze change | key AUC | " + " | ".join(n for n, _ in COLS) + " |")
lines.append("|" + " --- |" * (5 + len(COLS)))
variants = sorted({r["model"].rsplit("-s", 1)[0] for r in rows})
def ms(vals, scale=1.0, fmt="{:.3f}"):
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return fmt.format(statistics.mean(vals)) + " ± " + fmt.replace("+", "").format(statistics.stdev(vals))
for v in variants:
    rs = [r for r in rows if r["model"].rsplit("-s", 1)[0] == v]
    dppl = [100 * (r["ppl"] / bp - 1) for r in rs if r["ppl"] and bp]
    dcl = [100 * (r["cloze"] - bc) for r in rs if r["cloze"] is not None and bc is not None]
    lines.append("| " + " | ".join([v, str(len(rs)), ms(dppl, fmt="{:+.1f} %"), ms(dcl, fmt="{:+.1f}"), ms([r["auc"] for r in rs], fmt="{:.2f}")]
                                   + [ms([r[n] for r in rs]) for n, _ in COLS]) + " |")
text = "\n".join(lines) + "\n"
if out:
    os.makedirs(out, exist_ok=True)
    # The frontier: the owner's cost against persistence after SFT (dots) and an even merge with the base (squares).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import labsummary as ls  # noqa: E402
    # (multi-response variants, tNrK, cost far more than the rest and would squash the axis: they stay in the tables only)
    pts = [(r["model"], 100 * (r["ppl"] / bp - 1), 100 * (r["cloze"] - bc), r["SFT 3e-5"], r["merge base"]) for r in rows
           if r["ppl"] and bp and r["cloze"] is not None and not re.search(r"r\d", r["model"].rsplit("-s", 1)[0])]
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
    colours = {v: palette[i % len(palette)] for i, v in enumerate(variants)}
    colour = lambda n: colours[n.rsplit("-s", 1)[0]]
    legend = [(colours[v], v) for v in variants if any(p[0].rsplit("-s", 1)[0] == v for p in pts)]
    ls.frontier_svg(os.path.join(out, "frontier-perplexity.svg"), pts, 1, "perplexity change", " %", 2, colour, legend)
    ls.frontier_svg(os.path.join(out, "frontier-cloze.svg"), pts, 2, "cloze change", "", -1, colour, legend)
    open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
