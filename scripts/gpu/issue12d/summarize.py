#!/usr/bin/env python3
"""Summarises issue 12's fifth GPU session (scripts/gpu/issue12d/drive.sh) from the unpacked snapshot:

   summarize.py DIR OUT_DIR

DIR (docs/results/issue12-d) holds the lab's output folders i12d-full and i12d-frontier and logs/ (manifests of
`oml embed`, epoch logs, timeline, oml-training.json). Writes OUT_DIR/summary.md (the tables) and
OUT_DIR/frontier-*.svg (utility cost against persistence, one point per model). Plain Python, no packages."""
import glob, json, math, os, statistics, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import labsummary as ls  # noqa: E402

snap, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)


cells = lambda exp: ls.cells(snap, exp)
table = lambda exp: ls.table(snap, exp)
manifest = lambda name, logs="logs": ls.manifest(snap, name, logs)
tval, stat, g = ls.tval, ls.stat, ls.g


lines = []
w = lines.append
ft, fbase = table("i12d-full")
rt, rbase = table("i12d-frontier")
base = fbase or rbase
lines += ls.base_lines(snap, base)
w("")

KINDS = ls.KINDS


def fmt_row(name, r, man):
    b = r.get("before", {})
    ppl = b.get("perplexity"); cl = b.get("cloze_accuracy")
    dppl = f"{100 * (ppl / base['perplexity'] - 1):+.1f} %" if ppl and base else "–"
    dcl = f"{100 * (cl - base['cloze_accuracy']):+.1f}" if cl is not None and base else "–"
    per = [f"{r[k]['persistence']:.3f}" if k in r else "–" for k, _ in KINDS]
    mm = man["metrics"] if man else {}
    ss = man["settings"] if man else {}
    emb = (f"{mm.get('epochs')} ({mm.get('kept_epoch')}), λ {mm.get('merge_lambda', 0):.2f}, {mm.get('seconds', float('nan')):.0f} s, "
           f"pool {ss.get('benign_sequences', '?')}, self-held {mm.get('held_out_loss_base', float('nan')):.3f} → {mm.get('held_out_loss', float('nan')):.3f}"
           if man else "–")
    fsr = f"{b['fsr']:.3f}" if "fsr" in b else "–"
    pplt = f"{ppl:.2f} ({dppl})" if ppl else "–"
    clt = f"{cl:.3f} ({dcl})" if cl is not None else "–"
    return f"| {name} | {fsr} | {pplt} | {clt} | " + " | ".join(per) + f" | {emb} |"


HEAD = ("| model | recall | perplexity (change) | cloze (points) | " + " | ".join(l for _, l in KINDS)
        + " | epochs (kept), merge λ, embed s, benign pool, self held-out loss |\n|---|---:|---:|---:|" + "---:|" * len(KINDS) + "---|")
SETTINGS = {
    "kl-s1": "the defaults (KL benign loss, β 0.25, lr 0.125/d), set 1, seed 1",
    "klcheap-s1": "`--mix-fraction 0.5 --lr` half (0.0625/d), set 1, seed 1",
    "klcheap-s2": "the same, set 2, seed 2",
    "klcheap-s3": "the same, set 3, seed 3",
    "klquarter-s1": "`--mix-fraction 0.5 --lr` quarter (0.03125/d), set 1",
    "klb67-s1": "`--mix-fraction 0.667 --lr` half, set 1",
    "klcheapm-s1": "`--mix-fraction 0.5 --lr` half `--merge-max-loss 1.0`, set 1",
}
FULL = ["kl-s1", "klcheap-s1", "klcheap-s2", "klcheap-s3"]
FRONT = ["klquarter-s1", "klb67-s1", "klcheapm-s1"]
w("### Same base, same run: the defaults vs KL with β 0.5 and half the lr (3 seeds), and the frontier, 1,024 fingerprints")
w("")
w(HEAD)
for n in FULL:
    if n in ft: w(fmt_row(n, ft[n], manifest(n)))
for n in FRONT:
    if n in rt: w(fmt_row(n, rt[n], manifest(n)))
w("")
w("Settings: " + "; ".join(f"{n}: {s}" for n, s in SETTINGS.items()) + ". Everything else is `oml embed`'s defaults.")
w("")
have = [ft[n] for n in ("klcheap-s1", "klcheap-s2", "klcheap-s3") if n in ft and "before" in ft[n]]
if len(have) > 1 and base:
    w(f"KL, β 0.5, half lr: mean ± 95 % t-interval over {len(have)} sets/seeds:")
    w("")
    w("| recall | perplexity change | cloze change (points) | " + " | ".join(l for _, l in KINDS) + " |")
    w("|---:|---:|---:|" + "---:|" * len(KINDS))
    rec = stat([h["before"].get("fsr") for h in have])
    dp = stat([h["before"]["perplexity"] / base["perplexity"] - 1 for h in have], "{:+.1f} %", 100)
    dc = stat([h["before"]["cloze_accuracy"] - base["cloze_accuracy"] for h in have], "{:+.1f}", 100)
    per = [stat([h[k]["persistence"] if k in h else None for h in have]) for k, _ in KINDS]
    w(f"| {rec} | {dp} | {dc} | " + " | ".join(per) + " |")
    w("")
w("### Epoch logs (`oml embed --log`): loss, recall, held-out loss on the base's samples")
w("")
for n in FULL + FRONT:
    p = os.path.join(snap, "logs", f"{n}.jsonl")
    if not os.path.exists(p): continue
    ep = [json.loads(l) for l in open(p) if l.strip()]
    w(f"- {n}: " + "; ".join(f"{e['epoch']}: {e['loss']:.3f}/{e['accuracy']:.3f}/{(e.get('held_out_loss') or float('nan')):.3f}" for e in ep))
w("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

pts = []
for t, names in ((ft, FULL), (rt, FRONT)):
    for n in names:
        r = t.get(n, {})
        if "before" not in r or not base: continue
        pts.append((n, 100 * (r["before"]["perplexity"] / base["perplexity"] - 1), 100 * (r["before"]["cloze_accuracy"] - base["cloze_accuracy"]),
                    g(r, "sft3e-5", "persistence"), g(r, "merge-base", "persistence")))


def svg(fname, xi, xlabel, xunit, target):
    ls.frontier_svg(os.path.join(out, fname), pts, xi, xlabel, xunit, target,
                    lambda n: "#D55E00" if n.startswith("kl-") else "#0072B2" if n.startswith("klcheap-") else "#CC79A7",
                    (("#D55E00", "the defaults (1 seed)"), ("#0072B2", "β 0.5, half lr (3 seeds)"), ("#CC79A7", "other settings (1 seed)")))


if pts:
    svg("frontier-perplexity.svg", 1, "held-out perplexity change", " %", 2)
    svg("frontier-cloze.svg", 2, "cloze accuracy change (points)", "", -1)
