#!/usr/bin/env python3
"""Summarises issue 12's second GPU session (scripts/gpu/issue12b/drive.sh) from the unpacked snapshot:

   summarize.py SNAPSHOT_DIR OUT_DIR

SNAPSHOT_DIR holds results/i12-defaults, results/i12-frontier (the lab's cells) and logs/ (manifests of `oml embed`,
timeline, oml-training.json). Writes OUT_DIR/summary.md (the tables) and OUT_DIR/frontier.svg (utility cost against
persistence, one point per model). Plain Python, no packages."""
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
dt, dbase = table("i12-defaults")
ft, fbase = table("i12-frontier")
base = dbase or fbase
lines += ls.base_lines(snap, base)
w("")

KINDS = ls.KINDS


def rows_for(t, names):
    return [(n, t.get(n, {}), manifest(n)) for n in names]


def fmt_row(name, r, man):
    b = r.get("before", {})
    ppl = b.get("perplexity"); cl = b.get("cloze_accuracy")
    dppl = f"{100 * (ppl / base['perplexity'] - 1):+.1f} %" if ppl and base else "–"
    dcl = f"{100 * (cl - base['cloze_accuracy']):+.1f}" if cl is not None and base else "–"
    per = [f"{r[k]['persistence']:.3f}" if k in r else "–" for k, _ in KINDS]
    mm = man["metrics"] if man else {}
    emb = (f"{mm.get('epochs')} ({mm.get('kept_epoch')}), λ {mm.get('merge_lambda', 0):.2f}, {mm.get('seconds', float('nan')):.0f} s"
           if man else "–")
    fsr = f"{b['fsr']:.3f}" if "fsr" in b else "–"
    pplt = f"{ppl:.2f} ({dppl})" if ppl else "–"
    clt = f"{cl:.3f} ({dcl})" if cl is not None else "–"
    return f"| {name} | {fsr} | {pplt} | {clt} | " + " | ".join(per) + f" | {emb} |"


HEAD = ("| model | recall | perplexity (change) | cloze (points) | " + " | ".join(l for _, l in KINDS)
        + " | epochs (kept), merge λ, embed s |\n|---|---:|---:|---:|" + "---:|" * len(KINDS) + "---|")
defaults = [f"defaults-set{k}" for k in (1, 2, 3)]
benigns = [f"benign-set{k}" for k in (1, 2, 3)]
bt, bbase = table("i12-benign")


def family(title, t, names):
    w(f"### {title}")
    w(""); w(HEAD)
    for n, r, man in rows_for(t, names):
        if r: w(fmt_row(n, r, man))
    have = [t[n] for n in names if n in t and "before" in t[n]]
    if have and base:
        w("")
        w(f"Mean ± 95 % t-interval over {len(have)} seed(s):")
        w("")
        w("| recall | perplexity change | cloze change (points) | " + " | ".join(l for _, l in KINDS) + " |")
        w("|---:|---:|---:|" + "---:|" * len(KINDS))
        rec = stat([h["before"].get("fsr") for h in have])
        dp = stat([h["before"]["perplexity"] / base["perplexity"] - 1 for h in have], "{:+.1f} %", 100)
        dc = stat([h["before"]["cloze_accuracy"] - base["cloze_accuracy"] for h in have], "{:+.1f}", 100)
        per = [stat([h[k]["persistence"] if k in h else None for h in have]) for k, _ in KINDS]
        w(f"| {rec} | {dp} | {dc} | " + " | ".join(per) + " |")
    w("")


family("`oml embed` defaults (no tuning flags), 1,024 fingerprints, per set/seed", dt, defaults)
if bt:
    family("`oml embed --benign-text` (3 MB of the training corpus; otherwise defaults), 1,024 fingerprints, per set/seed", bt, benigns)
fnames = ["merge25", "merge50", "lrhalf", "beta50", "benign", "bf16"]
plot_fnames = [n for n in fnames if n != "benign"]   # benign = benign-set1 (same set, seed and settings; plotted with its family)
if ft:
    w("### Frontier points (set 1, seed 1)")
    w(""); w(HEAD)
    for n, r, man in rows_for(ft, fnames):
        if r: w(fmt_row(n, r, man))
    w("")
arch = []
for a in ("qwen2", "mistral"):
    tp = os.path.join(snap, "logs", f"{a}-small.oml-training.json")
    if not os.path.exists(tp): continue
    tr = json.load(open(tp))
    for n in (16, 256):
        man = manifest(f"{a}-{n}")
        if not man: continue
        mm = man["metrics"]
        pp = None
        for d in (os.path.join(snap, "snap", f"perp-{a}-{n}.log"),):
            if os.path.exists(d):
                try: pp = json.loads(open(d).read().strip().splitlines()[-1])
                except Exception: pp = None
        arch.append(f"| {a}-small | {tr['parameters']:,} | {tr['eval_perplexity']:.2f} | {n} | {mm['accuracy']:.3f} | {mm['epochs']} | {mm['merge_lambda']:.2f} | "
                    f"{mm['held_out_loss_base']:.3f} → {mm['held_out_loss']:.3f} | "
                    + (f"{pp['base_perplexity']:.2f} → {pp['perplexity']:.2f} ({100 * pp['change']:+.1f} %)" if pp else "–") + f" | {mm['seconds']:.1f} s |")
if arch:
    w("### Other architectures: `oml embed` defaults (16 and 256 keys)")
    w("")
    w("| base | parameters | trainer held-out ppl | keys | recall | epochs | merge λ | self held-out loss | held-out text perplexity (oml perplexity) | embed s |")
    w("|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
    lines.extend(arch)
    w("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# ---- frontier plots: utility cost (x) against persistence (y), one point per model ----
pts = []
for t, names in ((dt, defaults), (ft, plot_fnames), (bt, benigns)):
    for n in names:
        r = t.get(n, {})
        if "before" not in r or not base: continue
        pts.append((n, 100 * (r["before"]["perplexity"] / base["perplexity"] - 1), 100 * (r["before"]["cloze_accuracy"] - base["cloze_accuracy"]),
                    g(r, "sft3e-5", "persistence"), g(r, "merge-base", "persistence")))


def svg(fname, xi, xlabel, xunit, target):
    ls.frontier_svg(os.path.join(out, fname), pts, xi, xlabel, xunit, target,
                    lambda n: "#0072B2" if n.startswith("defaults") else "#009E73" if n.startswith("benign") else "#CC79A7",
                    (("#0072B2", "defaults (3 seeds)"), ("#009E73", "--benign-text (3 seeds)"), ("#CC79A7", "other points (1 seed)")))


if pts:
    svg("frontier-perplexity.svg", 1, "held-out perplexity change", " %", 2)
    svg("frontier-cloze.svg", 2, "cloze accuracy change (points)", "", -1)
