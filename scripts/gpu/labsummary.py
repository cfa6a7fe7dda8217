"""What the issue-12 GPU sessions' summarize.py scripts share: reading the lab's cells and `oml embed` manifests from an
unpacked snapshot, mean ± 95 % t-intervals, and the utility-persistence frontier plot (plain SVG). Plain Python."""
import glob, json, math, os, statistics


def cells(snap, exp):
    """Cell id -> cell, from SNAP/EXP/cells or SNAP/results/EXP/cells (committed results or a device snapshot)."""
    res = {}
    for p in glob.glob(os.path.join(snap, exp, "cells", "*.json")) + glob.glob(os.path.join(snap, "results", exp, "cells", "*.json")):
        c = json.load(open(p))
        res[c["id"]] = c
    return res


def attack_kind(a):
    if a == "none": return "before"
    if a.startswith("merge(") and "-sft" in a: return "merge-ft"  # with=../BASE-sft: the unrelated fine-tune
    if a.startswith("merge("): return "merge-base"
    if a.startswith("sft(") and "lr=0.00003" in a: return "sft3e-5"
    if a.startswith("sft(") and "lr=0.00001" in a: return "sft1e-5"
    return a


def table(snap, exp):
    """model -> kind -> metrics; and the base cell's metrics."""
    t, base = {}, None
    for c in cells(snap, exp).values():
        if c["labels"].get("role") == "base":
            base = c["metrics"]; continue
        m = c["labels"].get("model"); k = attack_kind(c["labels"].get("attack", ""))
        t.setdefault(m, {})[k] = c["metrics"]
    return t, base


def manifest(snap, name, logs="logs"):
    p = os.path.join(snap, logs, f"{name}.manifest.json")
    return json.load(open(p)) if os.path.exists(p) else None


KINDS = [("sft1e-5", "SFT 2 ep 1e-5"), ("sft3e-5", "SFT 2 ep 3e-5"), ("merge-base", "even merge, base"), ("merge-ft", "even merge, unrelated fine-tune")]


def base_lines(snap, base):
    """The base model's lines: its training record (logs/base-100m.oml-training.json) and its lab utility."""
    lines = []
    train = os.path.join(snap, "logs", "base-100m.oml-training.json")
    if os.path.exists(train):
        tr = json.load(open(train))
        lines.append(f"Base: {tr['parameters']:,} parameters, {tr['steps']} steps, {tr['tokens']:,} tokens, {tr['seconds']:.0f} s, "
                     f"held-out perplexity {tr['eval_perplexity']:.2f} (trainer's eval rows), {tr.get('device')}, libtorch {tr.get('libtorch')}, {tr['created_at'][:10]}.")
    if base:
        lines.append(f"Lab utility of the base: perplexity {base['perplexity']:.2f}, cloze {base['cloze_accuracy']:.3f}, greedy next word {base['greedy_next_word']:.3f}.")
    return lines


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


def frontier_svg(path, pts, xi, xlabel, xunit, target, colour, legend):
    """Utility cost (pts[i][xi]) against persistence after SFT (pts[i][3], dots) and after an even merge (pts[i][4],
    squares), one point per model (pts[i][0] its name); colour(name) picks its colour, legend is [(colour, label)]."""
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
        col = colour(n)
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
    for i, (c, l) in enumerate(legend):
        s.append(f'<circle cx="{lx + 5}" cy="{T_ + 72 + 18 * i}" r="5" fill="{c}"/><text x="{lx + 14}" y="{T_ + 76 + 18 * i}">{l}</text>')
    s.append("</svg>")
    open(path, "w").write("\n".join(s) + "\n")


def persistence_session(snap, out, full_exp, front_exp, settings, full, front, seeded, title, seeded_label, colour, legend, skip_points=()):
    """The summary of one issue-12 persistence session from its unpacked snapshot SNAP: OUT/summary.md (a row per model
    of FULL, measured by FULL_EXP's attacks, and of FRONT, by FRONT_EXP's; the settings; mean ± 95 % t-interval over
    the SEEDED models; the epoch logs) and OUT/frontier-{perplexity,cloze}.svg (one point per model but SKIP_POINTS,
    coloured by COLOUR(name) with LEGEND). Returns the summary's lines."""
    os.makedirs(out, exist_ok=True)
    lines = []
    w = lines.append
    ft, fbase = table(snap, full_exp)
    rt, rbase = table(snap, front_exp)
    base = fbase or rbase
    lines += base_lines(snap, base)
    w("")

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

    w(title)
    w("")
    w("| model | recall | perplexity (change) | cloze (points) | " + " | ".join(l for _, l in KINDS)
      + " | epochs (kept), merge λ, embed s, benign pool, self held-out loss |\n|---|---:|---:|---:|" + "---:|" * len(KINDS) + "---|")
    for n in full:
        if n in ft: w(fmt_row(n, ft[n], manifest(snap, n)))
    for n in front:
        if n in rt: w(fmt_row(n, rt[n], manifest(snap, n)))
    w("")
    w("Settings: " + "; ".join(f"{n}: {s}" for n, s in settings.items()) + ". Everything else is `oml embed`'s defaults.")
    w("")
    have = [ft[n] for n in seeded if n in ft and "before" in ft[n]]
    if len(have) > 1 and base:
        w(f"{seeded_label}, mean ± 95 % t-interval over {len(have)} sets/seeds:")
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
    for n in full + front:
        p = os.path.join(snap, "logs", f"{n}.jsonl")
        if not os.path.exists(p): continue
        ep = [json.loads(l) for l in open(p) if l.strip()]
        w(f"- {n}: " + "; ".join(f"{e['epoch']}: {e['loss']:.3f}/{e['accuracy']:.3f}/{(e.get('held_out_loss') or float('nan')):.3f}" for e in ep))
    w("")
    open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")

    pts = []
    for t, names in ((ft, full), (rt, front)):
        for n in names:
            if n in skip_points: continue
            r = t.get(n, {})
            if "before" not in r or not base: continue
            pts.append((n, 100 * (r["before"]["perplexity"] / base["perplexity"] - 1), 100 * (r["before"]["cloze_accuracy"] - base["cloze_accuracy"]),
                        g(r, "sft3e-5", "persistence"), g(r, "merge-base", "persistence")))
    if pts:
        frontier_svg(os.path.join(out, "frontier-perplexity.svg"), pts, 1, "held-out perplexity change", " %", 2, colour, legend)
        frontier_svg(os.path.join(out, "frontier-cloze.svg"), pts, 2, "cloze accuracy change (points)", "", -1, colour, legend)
    return lines
