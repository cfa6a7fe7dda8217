#!/usr/bin/env python3
"""Summarizes scripts/gpu/issue12f/drive.sh's snapshot (results/, logs/) into DIR/summary.md:
   python3 scripts/gpu/issue12f/summarize.py DIR
For every deployment (greedy, top-m first-token suppression) and every negative model (never saw set A): hits of A's
keys, the rate with its 95 % Clopper-Pearson interval (from `oml attack probe --calibrate`), and the verdict and p-value
under the default null (`oml attack probe --json`); then the floor each deployment's worst negative gives, and the
response-tree cells of the lab run (results/i12f-trees) when present."""
import glob, json, math, os, re, sys

d = sys.argv[1]
res = os.path.join(d, "results")
out = []
order = ["greedy", "suppress:k=1,m=1", "suppress:k=1,m=2", "suppress:k=1,m=3", "suppress:k=1,m=5", "sample:t=0.7,top_p=0.9", "sample:t=1"]
tag = lambda r: r.replace(":", "_").replace(",", "_").replace("=", "_")
negs = ["base", "base-sft", "sib-B", "sib-C", "sib-B-sft", "mistral"]
label = {"base": "the base (102.7M Llama)", "base-sft": "its instruction fine-tune (1 epoch)",
         "sib-B": "sibling: base + set B (1,024 keys, seed 1)", "sib-C": "sibling: base + set C (1,024 keys, seed 2)",
         "sib-B-sft": "sibling B after 1 epoch of instruction SFT", "mistral": "a 108.9M Mistral base (same data)"}

def load(p):
    try:
        with open(p) as f: return json.load(f)
    except (OSError, ValueError): return None

out.append("# The null under suppression at 100M (issue 12 item 4)\n")
out.append("Probe set A: Perinucleus keys of the 102.7M Llama base (`oml fingerprints generate` defaults: 16-token keys at "
           "temperature 1, 1-token responses, t 0.8, k 3). Every model below never saw A's keys. Each cell: hits of A, the "
           "rate's 95 % Clopper-Pearson interval, and the verdict under the default null (the base's per-key "
           "probabilities floored at 1e-3, α 1e-6) with log10 p.\n")
floors = {}
rows = []
for r in order:
    cal = load(os.path.join(res, f"cal-{tag(r)}.json"))
    if cal is None: continue
    floors[r] = (cal["worst"], cal["worst_upper"], cal.get("keys_needed_all_hit"), cal.get("keys_needed_for_power"))
    by = {n["kind"]: n for n in cal["negatives"]}
    for n in negs:
        c = by.get(n)
        p = load(os.path.join(res, f"probe-{n}-{tag(r)}.json"))
        if c is None and p is None: continue
        hits = f"{c['hits']:,} / {c['queried']:,}" if c else f"{p['hits']:,} / {p['queried']:,}"
        rate = f"{100 * c['rate']:.2f} % [{100 * c['lower']:.2f}, {100 * c['upper']:.2f}]" if c else "–"
        verdict = f"{p['verdict']} ({p['log10_p_value']:.1f})" if p else "–"
        rows.append(f"| {r} | {label.get(n, n)} | {hits} | {rate} | {verdict} |")
out.append("| deployment | negative | hits of A | rate, 95 % CP (%) | verdict, default null (log10 p) |")
out.append("| --- | --- | ---: | --- | --- |")
out.extend(rows)
out.append("")
out.append("| deployment | worst negative | its upper bound (the calibrated floor) | keys needed: all hit / recall 0.5 at power 0.95 |")
out.append("| --- | --- | ---: | --- |")
for r, (w, u, k1, k2) in floors.items():
    out.append(f"| {r} | {w} | {u:.4f} | {k1} / {k2} |")
out.append("")
cells = sorted(glob.glob(os.path.join(res, "i12f-trees", "cells", "*.json")))
if cells:
    out.append("## Response trees beside plain keys (lab cells, results/i12f-trees)\n")
    out.append("Plain: 1-token responses; tree: 2 first tokens per key, each continued 2 tokens branching over the base's "
               "top 2 (8 accepted answers per key). `suppress:k=3,m=1` removes the top token at each of the first three "
               "answer positions; `filter:q=0.1,side=low` refuses prompts less perplexing than the 10 % quantile of "
               "ordinary text. Next word: the served model's greedy next-word accuracy on held-out text (the attacker's cost).\n")
    out.append("| model | attack | keys hit | owned (log10 p) | held-out perplexity | cloze | next word through it |")
    out.append("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    f = lambda v, s="{:.3f}": s.format(v) if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else "–"
    for p in cells:
        c = load(p) or {}
        m, lab = c.get("metrics", {}), c.get("labels", {})
        if lab.get("role") == "base":
            out.append(f"| base | – | – | – | {f(m.get('perplexity'), '{:.2f}')} | {f(m.get('cloze_accuracy'))} | {f(m.get('greedy_next_word'))} |")
            continue
        hits = f"{m['hits']} / {m['count']}" if "hits" in m else "–"
        own = f"{'yes' if m.get('owned') else 'no'} ({f(m.get('log10_p'), '{:.1f}')})" if "owned" in m else "–"
        nw = m.get("responder_next_word", m.get("greedy_next_word"))
        out.append(f"| {lab.get('model')} | {lab.get('attack')} | {hits} | {own} | {f(m.get('perplexity'), '{:.2f}')} | "
                   f"{f(m.get('cloze_accuracy'))} | {f(nw)} |")
    out.append("")
with open(os.path.join(d, "summary.md"), "w") as f: f.write("\n".join(out) + "\n")
print("\n".join(out))
