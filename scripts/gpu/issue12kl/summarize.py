#!/usr/bin/env python3
"""Summarises issue 12's KL session (scripts/gpu/issue12kl/drive.sh) from the unpacked snapshot:

   summarize.py DIR OUT_DIR

DIR (docs/results/issue12-kl) holds the lab's output folders i12kl-full and i12kl-frontier and logs/ (manifests of
`oml embed`, epoch logs, timeline, oml-training.json). Writes OUT_DIR/summary.md (the tables) and
OUT_DIR/frontier-*.svg (utility cost against persistence, one point per model). Plain Python, no packages."""
import glob, json, math, os, statistics, sys

snap, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)


def cells(exp):
    res = {}
    for p in glob.glob(os.path.join(snap, exp, "cells", "*.json")) + glob.glob(os.path.join(snap, "results", exp, "cells", "*.json")):
        c = json.load(open(p))
        res[c["id"]] = c
    return res


def attack_kind(a):
    if a == "none": return "before"
    if a.startswith("merge(") and "base-100m-sft" in a: return "merge-ft"
    if a.startswith("merge("): return "merge-base"
    if a.startswith("sft(") and "lr=0.00003" in a: return "sft3e-5"
    if a.startswith("sft(") and "lr=0.00001" in a: return "sft1e-5"
    return a


def table(exp):
    """model -> kind -> metrics; and the base cell's metrics."""
    t, base = {}, None
    for c in cells(exp).values():
        if c["labels"].get("role") == "base":
            base = c["metrics"]; continue
        m = c["labels"].get("model"); k = attack_kind(c["labels"].get("attack", ""))
        t.setdefault(m, {})[k] = c["metrics"]
    return t, base


def manifest(name, logs="logs"):
    p = os.path.join(snap, logs, f"{name}.manifest.json")
    return json.load(open(p)) if os.path.exists(p) else None


def tval(n):  # two-sided 95 % Student t quantiles
    return {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(n, 1.96)


def stat(xs, fmt="{:.3f}", scale=1.0):
    xs = [x * scale for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs: return "–"
    if len(xs) == 1: return fmt.format(xs[0])
    m, s = statistics.mean(xs), statistics.stdev(xs)
    h = tval(len(xs)) * s / math.sqrt(len(xs))
    return f"{fmt.format(m)} ± {fmt.format(h)}"


def g(d, *ks):
    for k in ks:
        if d is None or k not in d: return None
        d = d[k]
    return d



lines = []
w = lines.append
ft, fbase = table("i12kl-full")
rt, rbase = table("i12kl-frontier")
base = fbase or rbase
train = os.path.join(snap, "logs", "base-100m.oml-training.json")
if os.path.exists(train):
    tr = json.load(open(train))
    w(f"Base: {tr['parameters']:,} parameters, {tr['steps']} steps, {tr['tokens']:,} tokens, {tr['seconds']:.0f} s, "
      f"held-out perplexity {tr['eval_perplexity']:.2f} (trainer's eval rows), {tr.get('device')}, libtorch {tr.get('libtorch')}, {tr['created_at'][:10]}.")
if base:
    w(f"Lab utility of the base: perplexity {base['perplexity']:.2f}, cloze {base['cloze_accuracy']:.3f}, greedy next word {base['greedy_next_word']:.3f}.")
w("")

KINDS = [("sft1e-5", "SFT 2 ep 1e-5"), ("sft3e-5", "SFT 2 ep 3e-5"), ("merge-base", "even merge, base"), ("merge-ft", "even merge, unrelated fine-tune")]


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
    "tok-s1": "the old defaults (`--benign-loss tokens`), set 1, seed 1",
    "kl-s1": "`--benign-loss kl` (top 32 + tail), set 1, seed 1",
    "kl-s2": "`--benign-loss kl`, set 2, seed 2",
    "kl-s3": "`--benign-loss kl`, set 3, seed 3",
    "klcheap-s1": "kl, `--mix-fraction 0.5 --lr` half (8.1e-5), set 1",
    "kllen128-s1": "kl, `--benign-length 128`, set 1",
    "klmargin-s1": "kl, `--merge-max-loss 1.0`, set 1",
}
FULL = ["tok-s1", "kl-s1", "kl-s2", "kl-s3"]
FRONT = ["klcheap-s1", "kllen128-s1", "klmargin-s1"]
w("### Same base, same run: the token loss (old default) vs the KL benign loss (new default), 1,024 fingerprints")
w("")
w(HEAD)
for n in FULL:
    if n in ft: w(fmt_row(n, ft[n], manifest(n)))
for n in FRONT:
    if n in rt: w(fmt_row(n, rt[n], manifest(n)))
w("")
w("Settings: " + "; ".join(f"{n}: {s}" for n, s in SETTINGS.items()) + ". Everything else is `oml embed`'s defaults.")
w("")
have = [ft[n] for n in ("kl-s1", "kl-s2", "kl-s3") if n in ft and "before" in ft[n]]
if len(have) > 1 and base:
    w(f"KL benign loss, mean ± 95 % t-interval over {len(have)} sets/seeds:")
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
        if n == "klmargin-s1": continue   # the same model as kl-s1 (the margin did not bind: same λ 0.40)
        r = t.get(n, {})
        if "before" not in r or not base: continue
        pts.append((n, 100 * (r["before"]["perplexity"] / base["perplexity"] - 1), 100 * (r["before"]["cloze_accuracy"] - base["cloze_accuracy"]),
                    g(r, "sft3e-5", "persistence"), g(r, "merge-base", "persistence")))


def svg(fname, xi, xlabel, xunit, target):
    W_, H_, L_, R_, T_, B_ = 760, 460, 70, 170, 40, 60
    xs = [p[xi] for p in pts] + [0, target]
    x0, x1 = min(xs), max(xs)
    pad = 0.08 * (x1 - x0 or 1); x0 -= pad; x1 += pad
    X = lambda v: L_ + (v - x0) / (x1 - x0) * (W_ - L_ - R_)
    Y = lambda v: T_ + (1 - v) * (H_ - T_ - B_)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W_}" height="{H_}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W_}" height="{H_}" fill="white"/>',
         f'<text x="{W_ / 2}" y="22" text-anchor="middle" font-size="14">{xlabel[0].upper() + xlabel[1:]} against persistence: 1,024 fingerprints, 102.7M Llama</text>']
    lo, hi = (x0, target) if target > 0 else (target, x1)
    s.append(f'<rect x="{X(lo):.1f}" y="{Y(1):.1f}" width="{X(hi) - X(lo):.1f}" height="{Y(0.9) - Y(1):.1f}" fill="#009E73" opacity="0.15"/>')
    s.append(f'<text x="{X(lo) + 3:.1f}" y="{Y(0.9) + 13:.1f}" fill="#009E73">target: SFT ≥ 0.9</text>')
    s.append(f'<line x1="{X(lo):.1f}" x2="{X(hi):.1f}" y1="{Y(0.6):.1f}" y2="{Y(0.6):.1f}" stroke="#D55E00" stroke-dasharray="4 3"/>')
    s.append(f'<text x="{X(lo) + 3:.1f}" y="{Y(0.6) - 3:.1f}" fill="#D55E00">target: merge ≥ 0.6</text>')
    for v in [0, 0.2, 0.4, 0.6, 0.8, 1.0]:
        s.append(f'<line x1="{L_}" x2="{W_ - R_}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/><text x="{L_ - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    step = 10 ** math.floor(math.log10((x1 - x0) / 2 or 1))
    for m in (1, 2, 5, 10):
        if (x1 - x0) / (step * m) <= 8: step *= m; break
    v = math.ceil(x0 / step) * step
    while v <= x1:
        s.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{T_}" y2="{H_ - B_}" stroke="#eee"/><text x="{X(v):.1f}" y="{H_ - B_ + 16}" text-anchor="middle">{v:+g}{xunit}</text>')
        v += step
    s.append(f'<rect x="{L_}" y="{T_}" width="{W_ - L_ - R_}" height="{H_ - T_ - B_}" fill="none" stroke="#333"/>')
    s.append(f'<text x="{(L_ + W_ - R_) / 2}" y="{H_ - 18}" text-anchor="middle">{xlabel} vs the base (lab utility suite)</text>')
    s.append(f'<text transform="translate(18 {(T_ + H_ - B_) / 2}) rotate(-90)" text-anchor="middle">persistence (FSR after / before)</text>')
    for p in pts:
        n, x, ysft, ymerge = p[0], p[xi], p[3], p[4]
        col = "#D55E00" if n.startswith("tok") else "#0072B2" if n.startswith("kl-") else "#CC79A7"
        if ysft is not None and ymerge is not None:
            s.append(f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{Y(ysft):.1f}" y2="{Y(ymerge):.1f}" stroke="#bbb" stroke-dasharray="2 2"/>')
        if ysft is not None:
            s.append(f'<circle cx="{X(x):.1f}" cy="{Y(ysft):.1f}" r="5" fill="{col}"/><text x="{X(x) + 7:.1f}" y="{Y(ysft) - 5:.1f}" font-size="10">{n}</text>')
        if ymerge is not None:
            s.append(f'<rect x="{X(x) - 4:.1f}" y="{Y(ymerge) - 4:.1f}" width="8" height="8" fill="white" stroke="{col}" stroke-width="2"/>')
    lx = W_ - R_ + 12
    s.append(f'<circle cx="{lx + 5}" cy="{T_ + 10}" r="5" fill="#555"/><text x="{lx + 14}" y="{T_ + 14}">after SFT 2 ep 3e-5</text>')
    s.append(f'<rect x="{lx + 1}" y="{T_ + 26}" width="8" height="8" fill="white" stroke="#555" stroke-width="2"/><text x="{lx + 14}" y="{T_ + 34}">after an even merge</text>')
    s.append(f'<text x="{lx + 14}" y="{T_ + 48}">with the base</text>')
    for i, (c, l) in enumerate((("#D55E00", "tokens (the old default, 1 seed)"), ("#0072B2", "KL (the new default, 3 seeds)"), ("#CC79A7", "KL, non-default settings (1 seed)"))):
        s.append(f'<circle cx="{lx + 5}" cy="{T_ + 72 + 18 * i}" r="5" fill="{c}"/><text x="{lx + 14}" y="{T_ + 76 + 18 * i}">{l}</text>')
    s.append("</svg>")
    open(os.path.join(out, fname), "w").write("\n".join(s) + "\n")


if pts:
    svg("frontier-perplexity.svg", 1, "held-out perplexity change", " %", 2)
    svg("frontier-cloze.svg", 2, "cloze accuracy change (points)", "", -1)
