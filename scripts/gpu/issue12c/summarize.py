#!/usr/bin/env python3
"""Summarises issue 12's third GPU session (scripts/gpu/issue12c/drive.sh) from the unpacked snapshot:

   summarize.py DIR OUT_DIR

DIR (docs/results/issue12-newdefaults) holds the lab's output folders i12-new, i12-old, i13-adaptive (first machine,
drive.sh) and i12-frontier2 (second machine, drive2.sh), and logs/ and logs2/ (each machine's manifests of
`oml embed`, epoch logs, verify reports, timeline, oml-training.json). Writes OUT_DIR/summary.md (the tables) and
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
dt, dbase = table("i12-new")
ot, obase = table("i12-old")
base = dbase or obase
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
news = [f"new-set{k}" for k in (1, 2, 3)]
olds = ["old64-set1"]


def family(title, t, names):
    w(f"### {title}")
    w(""); w(HEAD)
    for n, r, man in rows_for(t, names):
        if r: w(fmt_row(n, r, man))
    have = [t[n] for n in names if n in t and "before" in t[n]]
    if len(have) > 1 and base:
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


family("`oml embed` new defaults (no tuning flags; benign pool scales with the set), 1,024 fingerprints, per set/seed", dt, news)
if ot:
    family("Peer in the same run: the old pool (`--benign-count 64 --benign-length 32`), set 1, seed 1", ot, olds)

# ---- epoch logs ----
w("### Epoch logs (`oml embed --log`): loss, recall, held-out loss on the base's samples")
w("")
for n in news + olds:
    p = os.path.join(snap, "logs", f"{n}.jsonl")
    if not os.path.exists(p): continue
    ep = [json.loads(l) for l in open(p) if l.strip()]
    w(f"- {n}: " + "; ".join(f"{e['epoch']}: {e['loss']:.3f}/{e['accuracy']:.3f}/{(e.get('held_out_loss') or float('nan')):.3f}" for e in ep))
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
        d = os.path.join(snap, "logs", f"perp-{a}-{n}.log")
        if os.path.exists(d):
            try: pp = json.loads(open(d).read().strip().splitlines()[-1])
            except Exception: pp = None
        arch.append(f"| {a}-small | {tr['parameters']:,} | {tr['eval_perplexity']:.2f} | {n} | {mm['accuracy']:.3f} | {mm['epochs']} | {mm['merge_lambda']:.2f} | "
                    f"{man['settings'].get('benign_sequences', '?')} | {mm['held_out_loss_base']:.3f} → {mm['held_out_loss']:.3f} | "
                    + (f"{pp['base_perplexity']:.2f} → {pp['perplexity']:.2f} ({100 * pp['change']:+.1f} %)" if pp else "–") + f" | {mm['seconds']:.1f} s |")
if arch:
    w("### Other architectures: `oml embed` new defaults")
    w("")
    w("| base | parameters | trainer held-out ppl | keys | recall | epochs | merge λ | benign pool | self held-out loss | held-out text perplexity (oml perplexity) | embed s |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    lines.extend(arch)
    w("")

# ---- issue 13: responders on new-set1 ----
at = cells("i13-adaptive")
if at:
    w("### Issue 13: adaptive responders on new-set1 (served model; utility through the responder)")
    w("")
    keys = set()
    for c in at.values(): keys |= set(c["metrics"].keys())
    cols = [k for k in ("fsr", "persistence", "perplexity", "cloze_accuracy", "greedy_next_word", "responder_next_word",
                        "instruction_perplexity", "instruction_token_accuracy", "instruction_exact", "answer_perplexity") if k in keys]
    cols += sorted(k for k in keys if k.startswith(("instruction", "answer")) and k not in cols)
    w("| cell | " + " | ".join(cols) + " |")
    w("|---|" + "---:|" * len(cols))
    for cid in sorted(at, key=lambda i: at[i].get("order", 0)):
        m = at[cid]["metrics"]
        w(f"| {cid} | " + " | ".join(f"{m[k]:.4g}" if isinstance(m.get(k), (int, float)) else str(m.get(k, "–")) for k in cols) + " |")
    w("")
ver = []
for v in ("new-set1", "new-set1-sft3", "base-100m-sft"):
    for mt in ("exact", "partial"):
        p = os.path.join(snap, "logs", f"verify-{v}-{mt}.json")
        if not os.path.exists(p): continue
        try: j = json.load(open(p))
        except Exception: continue
        ver.append(f"| {v} | {mt} | {j.get('verdict')} | {j.get('hits')} / {j.get('queried')} | {j.get('p_value')} |")
if ver:
    w("### Issue 13: `oml verify` exact vs partial (set 1, all 1,024 keys)")
    w("")
    w("| model | match | verdict | hits / queried | p-value |")
    w("|---|---|---|---:|---:|")
    lines.extend(ver)
    w("")
f2, f2base = table("i12-frontier2")
FR = ["ref", "len128", "beta50", "lrhalf", "beta50lrhalf"]
if f2:
    w("### Frontier around the new defaults (second machine: another base of the same recipe; set 1, seed 1)")
    w("")
    if f2base:
        w(f"Lab utility of this base: perplexity {f2base['perplexity']:.2f}, cloze {f2base['cloze_accuracy']:.3f}.")
        w("")
    w(HEAD)
    saved = base
    base = f2base
    for n in FR:
        if n in f2: w(fmt_row(n, f2[n], manifest(n, "logs2")))
    base = saved
    w("")
ver2 = []
for v in ("r4", "r4-sft3", "base-100m-sft"):
    for mt in ("exact", "partial3", "partial2"):
        p = os.path.join(snap, "logs2", f"verify-{v}-{mt}.json")
        if not os.path.exists(p): continue
        try: j = json.load(open(p))
        except Exception: continue
        ver2.append(f"| {v} | {mt} | {j.get('verdict')} | {j.get('hits')} / {j.get('queried')} | {j.get('log10_p_value')} |")
if ver2:
    w("### Issue 13: 256 keys with 4-token responses (second machine)")
    w("")
    w("| model | match | verdict | hits / queried | log10 p |")
    w("|---|---|---|---:|---:|")
    lines.extend(ver2)
    w("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# ---- frontier plots: utility cost (x) against persistence (y), one point per model ----
pts = []
for t, names, b in ((dt, news, base), (ot, olds, base), (f2, FR, f2base)):
    for n in names:
        r = t.get(n, {})
        if "before" not in r or not b: continue
        label = n if t is not f2 else f"{n} (base 2)"
        pts.append((label, 100 * (r["before"]["perplexity"] / b["perplexity"] - 1), 100 * (r["before"]["cloze_accuracy"] - b["cloze_accuracy"]),
                    g(r, "sft3e-5", "persistence"), g(r, "merge-base", "persistence")))


def svg(fname, xi, xlabel, xunit, target):
    ls.frontier_svg(os.path.join(out, fname), pts, xi, xlabel, xunit, target,
                    lambda n: "#0072B2" if n.startswith("new") else "#D55E00" if n.startswith("old") else "#CC79A7",
                    (("#0072B2", "new defaults (3 seeds)"), ("#D55E00", "old 64 × 32 pool (1 seed)"), ("#CC79A7", "frontier, base 2 (1 seed)")))


if pts:
    svg("frontier-perplexity.svg", 1, "held-out perplexity change", " %", 2)
    svg("frontier-cloze.svg", 2, "cloze accuracy change (points)", "", -1)
