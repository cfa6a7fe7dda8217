#!/usr/bin/env python3
"""Table and plot of the CPU capacity comparison (scripts/lab/cpu-capacity-arch.sh): per architecture and number of
fingerprints N, what `oml embed` with no tuning flags reached (recall, epochs, the merge's λ, seconds) and what it cost
(held-out perplexity of the result against its base, `oml perplexity`).
Usage: cpu-capacity-arch-summary.py RUN_DIR [DOCS_DIR]
Without DOCS_DIR prints the table; with it writes DOCS_DIR/summary.md, DOCS_DIR/capacity.svg and copies the small
results (manifests, perplexity JSON, the bases' training records, the timeline) into DOCS_DIR/results."""
import glob, json, math, os, re, shutil, sys

run = sys.argv[1]
docs = sys.argv[2] if len(sys.argv) > 2 else None
res = os.path.join(run, "results")
ARCH = ["llama", "qwen2", "qwen3", "mistral"]
COLOUR = {"llama": "#0072B2", "qwen2": "#D55E00", "qwen3": "#009E73", "mistral": "#CC79A7"}

cells = {}
for p in glob.glob(os.path.join(res, "*.perplexity.json")):
    name = os.path.basename(p)[: -len(".perplexity.json")]
    m = re.fullmatch(r"(\w+?)-n(\d+)-s(\d+)", name)
    if not m: continue
    a, n, s = m.group(1), int(m.group(2)), int(m.group(3))
    ppl = json.load(open(p))
    man_p = os.path.join(res, name + ".manifest.json")
    man = json.load(open(man_p)) if os.path.exists(man_p) else None
    cells[(a, n, s)] = (ppl, man)

def base_info(a):
    p = os.path.join(res, f"{a}-base.oml-training.json")
    return json.load(open(p)) if os.path.exists(p) else {}

lines = ["| architecture | parameters | base held-out perplexity | N | seed | recall | epochs | λ | embed s | perplexity after | change |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
series = {}
for a in ARCH:
    info = base_info(a)
    for (ca, n, s) in sorted(k for k in cells if k[0] == a):
        ppl, man = cells[(ca, n, s)]
        if "exit" in ppl:
            lines.append(f"| {a} | {info.get('parameters', 0):,} | | {n} | {s} | did not converge (exit {ppl['exit']}) | | | | | |")
            continue
        mt = (man or {}).get("metrics", {})
        change = 100 * ppl["change"]
        series.setdefault(a, []).append((n, change, mt.get("accuracy")))
        lines.append(f"| {a} | {info.get('parameters', 0):,} | {ppl['base_perplexity']:.2f} | {n:,} | {s} | "
                     f"{100 * mt.get('accuracy', float('nan')):.1f} % | {mt.get('epochs', '?')} | {mt.get('merge_lambda', float('nan')):.2f} | "
                     f"{mt.get('seconds', float('nan')):.0f} | {ppl['perplexity']:.2f} | {change:+.1f} % |")
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}
agg = ["| architecture | N | seeds | recall (min) | epochs | perplexity change (mean ± 95 % t) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
means = {}
for a in ARCH:
    for n in sorted({n for (n, _, _) in series.get(a, [])}):
        xs = [c for (m, c, _) in series[a] if m == n]
        accs = [r for (m, _, r) in series[a] if m == n and r is not None]
        eps = [cells[k][1]["metrics"]["epochs"] for k in cells if k[0] == a and k[1] == n and cells[k][1]]
        mean = sum(xs) / len(xs)
        half = T95.get(len(xs), 2.0) * (sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 / len(xs) ** 0.5 if len(xs) > 1 else None
        means.setdefault(a, []).append((n, mean, min(accs) if accs else None))
        recall = f"{100 * min(accs):.1f} %" if accs else "–"
        agg.append(f"| {a} | {n:,} | {len(xs)} | {recall} | {min(eps)}–{max(eps)} | {mean:+.1f} %" + (f" ± {half:.1f}" if half is not None else "") + " |")
text = "\n".join(agg) + "\n\nPer seed:\n\n" + "\n".join(lines) + "\n"
print(text)

def plot(path):
    W, H, L, R, T, B = 720, 420, 70, 150, 40, 56
    ns = sorted({n for v in series.values() for n, _, _ in v}) or [16, 1024]
    ys = [c for v in series.values() for _, c, _ in v] + [0]
    y0, y1 = min(0, min(ys)), max(ys) * 1.1 + 1
    lx0, lx1 = math.log2(ns[0]) - 0.3, math.log2(ns[-1]) + 0.3
    X = lambda n: L + (math.log2(n) - lx0) / (lx1 - lx0) * (W - L - R)
    Y = lambda v: T + (y1 - v) / (y1 - y0) * (H - T - B)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">Capacity per architecture: oml embed with its defaults, 158-220k-parameter CPU bases</text>']
    step = 10 ** math.floor(math.log10((y1 - y0) / 2 or 1))
    for m in (1, 2, 5, 10):
        if (y1 - y0) / (step * m) <= 8: step *= m; break
    v = math.ceil(y0 / step) * step
    while v <= y1:
        s.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/><text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:+g} %</text>')
        v += step
    for n in ns:
        s.append(f'<line x1="{X(n):.1f}" x2="{X(n):.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/><text x="{X(n):.1f}" y="{H - B + 16}" text-anchor="middle">{n:,}</text>')
    s.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(2):.1f}" y2="{Y(2):.1f}" stroke="#009E73" stroke-dasharray="4 3"/>')
    s.append(f'<text x="{L + 4}" y="{Y(2) - 4:.1f}" fill="#009E73">issue 12 target at 100M: +2 %</text>')
    s.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    s.append(f'<text x="{(L + W - R) / 2}" y="{H - 16}" text-anchor="middle">fingerprints embedded (N, log scale)</text>')
    s.append(f'<text transform="translate(18 {(T + H - B) / 2}) rotate(-90)" text-anchor="middle">held-out perplexity change vs the base</text>')
    for a in series:
        for n, v, _ in series[a]:
            s.append(f'<circle cx="{X(n):.1f}" cy="{Y(v):.1f}" r="2" fill="{COLOUR[a]}" opacity="0.5"/>')
    for i, a in enumerate(a for a in ARCH if a in means):
        pts = sorted(means[a])
        c = COLOUR[a]
        s.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (c, " ".join(f"{X(n):.1f},{Y(v):.1f}" for n, v, _ in pts)))
        for n, v, acc in pts:
            fill = c if acc is not None and acc >= 0.99 else "white"
            s.append(f'<circle cx="{X(n):.1f}" cy="{Y(v):.1f}" r="4.5" fill="{fill}" stroke="{c}" stroke-width="2"/>')
        s.append(f'<circle cx="{W - R + 17}" cy="{T + 10 + 18 * i}" r="5" fill="{c}"/><text x="{W - R + 26}" y="{T + 14 + 18 * i}">{a}</text>')
    s.append(f'<text x="{W - R + 12}" y="{T + 86}" font-size="11">lines: mean over seeds</text>')
    s.append(f'<text x="{W - R + 12}" y="{T + 100}" font-size="11">filled: recall ≥ 99 %</text>')
    s.append(f'<text x="{W - R + 12}" y="{T + 114}" font-size="11">open: below</text>')
    s.append("</svg>")
    open(path, "w").write("\n".join(s) + "\n")

if docs:
    os.makedirs(os.path.join(docs, "results"), exist_ok=True)
    for p in glob.glob(os.path.join(res, "*.json")):
        shutil.copy(p, os.path.join(docs, "results"))
    if os.path.exists(os.path.join(run, "logs", "timeline.txt")):
        shutil.copy(os.path.join(run, "logs", "timeline.txt"), docs)
    plot(os.path.join(docs, "capacity.svg"))
    infos = {a: base_info(a) for a in ARCH}
    bases = "\n".join(f"- {a}: {i.get('parameters', 0):,} parameters, trainer held-out perplexity "
                      f"{i.get('eval_perplexity', float('nan')):.2f}" for a, i in infos.items() if i)
    open(os.path.join(docs, "summary.md"), "w").write(
        "# Capacity per architecture on CPU (scripts/lab/cpu-capacity-arch.sh)\n\n" + bases + "\n\n" + text + "\n![capacity](capacity.svg)\n")
