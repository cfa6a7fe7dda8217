#!/usr/bin/env python3
"""Tables of issue 12's other-architecture session (scripts/gpu/issue12e/drive.sh) from its unpacked snapshot: per
architecture, the base's held-out perplexity and cloze, then per model (ARCH-sSEED, `oml embed` with its defaults) the
owner's cost, the keys' stealth (AUC of `oml attack detect`), persistence after even merges and SFT, the low filter
and top-1 suppression, epochs, λ and embedding seconds from the manifest; then means ± 95 % t-intervals over seeds,
and whether each seed meets issue 12's four targets (perplexity ≤ +2 %, cloze ≥ −1 point, SFT ≥ 0.9, both merges ≥ 0.6).
The key stealth columns: the detector's AUC and the share of keys the best two-sided perplexity threshold removes at 2 %
of ordinary text refused. Usage: summarize.py SNAPSHOT_DIR [OUT_DIR] (writes OUT_DIR/summary.md when given, else prints)."""
import glob, json, math, os, re, statistics, sys

snap = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else None
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}
COLS = [("merge base", lambda a: a.startswith("merge(") and "-sft" not in a),
        ("merge ft", lambda a: a.startswith("merge(") and "-sft" in a),
        ("SFT 3e-5", lambda a: a.startswith("sft(")),
        ("low q0.1", lambda a: a == "filter:q=0.1,side=low"),
        ("top-1", lambda a: a == "suppress:k=1,m=1"),
        ("top-1 every position", lambda a: a == "suppress:k=3,m=1"),
        ("low q0.1 + top-1 every position", lambda a: a == "filter:q=0.1,side=low+suppress:k=3,m=1")]
lines = []
def f(v, fmt="{:.3f}"): return "–" if v is None else fmt.format(v)
def ci(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs: return "–"
    if len(xs) == 1: return fmt.format(xs[0])
    h = T95.get(len(xs), 2.0) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{fmt.format(statistics.mean(xs))} ± {fmt.replace('+', '').format(h)}"
for exp in sorted(glob.glob(os.path.join(snap, "results", "i12e-*"))):
    arch = os.path.basename(exp)[len("i12e-"):]
    cells = [json.load(open(p)) for p in glob.glob(os.path.join(exp, "cells", "*.json"))]
    base = next((c["metrics"] for c in cells if c.get("id") == "base"), None)
    if base is None: continue
    bp, bc = base["perplexity"], base["cloze_accuracy"]
    # The Llama base is base-100m, or the 500M-token base-500m brought in pieces (drive.sh LLAMA_BASE).
    tr = next((p for p in (os.path.join(snap, "logs", f"{n}.oml-training.json")
                           for n in (["base-500m", "base-100m"] if arch == "llama" else [f"{arch}-100m"])) if os.path.exists(p)), "")
    info = json.load(open(tr)) if os.path.exists(tr) else {}
    lines.append(f"## {arch}\n")
    lines.append(f"Base: {info.get('parameters', 0):,} parameters, {info.get('steps', '?')} steps, {info.get('tokens', 0) / 1e6:.1f}M tokens, "
                 f"{info.get('seconds', 0):.0f} s; trainer held-out perplexity {f(info.get('eval_perplexity'), '{:.2f}')}; "
                 f"lab perplexity {bp:.2f}, cloze {100 * bc:.1f} %\n")
    head = ["model", "FSR", "perplexity (change)", "cloze (change)", "key AUC", "keys removed at 2 % refused"] + [n for n, _ in COLS] + ["epochs / λ / s", "four targets"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + " --- |" * len(head))
    rows = []
    for m in sorted({c["labels"]["model"] for c in cells if "model" in c.get("labels", {})}):
        mine = [c for c in cells if c.get("labels", {}).get("model") == m]
        before = next((c["metrics"] for c in mine if c["labels"].get("attack") == "none"), None)
        if before is None: continue
        r = {"model": m, "fsr": before.get("fsr"), "dppl": 100 * (before["perplexity"] / bp - 1), "dcl": 100 * (before["cloze_accuracy"] - bc)}
        det = os.path.join(snap, "results", f"detect-{m}.json")
        dj = json.load(open(det)) if os.path.exists(det) else {}
        r["auc"] = dj.get("detector_auc")
        # The strongest threshold filter fitted with hindsight (`oml attack detect`'s filter budget): the share of keys
        # a two-sided perplexity threshold removes while refusing 2 % of ordinary held-out text.
        r["budget2"] = next((b["keys_removed_both"] for b in dj.get("filter_budget", []) if abs(b["refused"] - 0.02) < 1e-9), None)
        for name, match in COLS:
            c = next((c["metrics"] for c in mine if match(c["labels"].get("attack", ""))), None)
            r[name] = c.get("fsr") if c else None
        man = os.path.join(snap, "logs", f"{m}.manifest.json")
        mm = json.load(open(man))["metrics"] if os.path.exists(man) else {}
        r["run"] = f"{mm.get('epochs', '?')} / {mm.get('merge_lambda', float('nan')):.2f} / {mm.get('seconds', float('nan')):.0f}" if mm else "–"
        need = [r["dppl"] <= 2, r["dcl"] >= -1, (r["SFT 3e-5"] or 0) >= 0.9, (r["merge base"] or 0) >= 0.6, (r["merge ft"] or 0) >= 0.6]
        r["ok"] = "all four" if all(need) else "misses " + ", ".join(n for n, ok in zip(["perplexity", "cloze", "SFT", "merge base", "merge ft"], need) if not ok)
        rows.append(r)
        lines.append("| " + " | ".join([m, f(r["fsr"]), f"{before['perplexity']:.2f} ({r['dppl']:+.1f} %)", f"{100 * before['cloze_accuracy']:.1f} ({r['dcl']:+.1f})",
                                           f(r["auc"], "{:.2f}"), f(r["budget2"])] + [f(r[n]) for n, _ in COLS] + [r["run"], r["ok"]]) + " |")
    lines.append("")
    # VARIANTS models (llama-NAME-sSEED) are grouped by NAME: one line per recipe, its seeds' mean ± 95 % t-interval.
    groups = {}
    for r in rows:
        groups.setdefault(re.sub(r"-s\d+$", "", r["model"]), []).append(r)
    if len(groups) > 1:
        lines.append("Per recipe (models named NAME-sSEED), mean ± 95 % t-interval over its seeds:\n")
        lines.append("| recipe | seeds | perplexity change (%) | cloze change (points) | " + " | ".join(n for n, _ in COLS) + " | seeds meeting all four |")
        lines.append("|" + " --- |" * (len(COLS) + 5))
        for g, rs in groups.items():
            lines.append(f"| {g} | {len(rs)} | {ci([r['dppl'] for r in rs], '{:+.1f}')} | {ci([r['dcl'] for r in rs], '{:+.1f}')} | "
                         + " | ".join(ci([r[n] for r in rs], "{:.3f}") for n, _ in COLS) + f" | {sum(r['ok'] == 'all four' for r in rs)} of {len(rs)} |")
        lines.append("")
    if len(groups) == 1: lines.append(f"Mean ± 95 % t-interval over {len(rows)} seed(s): perplexity {ci([r['dppl'] for r in rows], '{:+.1f}')} %, cloze {ci([r['dcl'] for r in rows], '{:+.1f}')} points, "
                 + ", ".join(f"{n} {ci([r[n] for r in rows], '{:.3f}')}" for n, _ in COLS) + "\n")
text = "\n".join(lines) + "\n"
if out:
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
