#!/usr/bin/env python3
"""Table of lab/experiments/cpu-filter-responses.yaml's cells: per defence and host, keys hit per seed (of 24) and the
host's answer F1 on the 200 held-out instructions (mean over the seeds that ran), with the instructions and ordinary
text windows its filter flagged.   cpu-filter-responses-summary.py RESULTS_DIR"""
import glob, json, os, re, statistics, sys
from collections import defaultdict

res = sys.argv[1]
cells = {}
for f in glob.glob(os.path.join(res, "cells", "*.json")):
    d = json.load(open(f))
    cells[d["id"]] = d["metrics"]
base = cells.get("base", {})
rows = defaultdict(dict)           # (defence, host) -> seed -> metrics
for cid, m in cells.items():
    mt = re.fullmatch(r"(.+)-s(\d+)-(before|filter.*)", cid)
    if not mt:
        continue
    rows[(mt.group(1), mt.group(3))][int(mt.group(2))] = m
host_name = {
    "before": "no attack",
    "filter_q=0.98_on=instructions": "filter q 0.98: refuse",
    "filter_q=0.98_on=instructions_fallback=_out_base": "filter q 0.98: the base answers",
    "filter_q=0.98_on=instructions_then=paraphrase": "filter q 0.98: paraphrase, then answer",
    "filter_q=0.9_on=instructions_fallback=_out_base": "filter q 0.9: the base answers",
    "filter_q=0.9_on=instructions_then=paraphrase": "filter q 0.9: paraphrase, then answer",
}
print(f"base: answer F1 {base.get('answer_f1', float('nan')):.3f}, held-out perplexity {base.get('perplexity', float('nan')):.1f}")
print()
print("| defence | host | keys hit per seed (of 24) | answer F1 (mean) | instructions flagged | text windows flagged |")
print("|---|---|---|---:|---:|---:|")
for (defence, host) in sorted(rows, key=lambda k: (k[0], list(host_name).index(k[1]) if k[1] in host_name else 99)):
    seeds = rows[(defence, host)]
    hits = " / ".join(f"s{s} {seeds[s]['hits']}" for s in sorted(seeds))
    f1 = statistics.mean(seeds[s]["answer_f1"] for s in seeds)
    flag = lambda k: (f"{statistics.mean(seeds[s][k] for s in seeds):.3f}" if all(k in seeds[s] for s in seeds) else "–")
    print(f"| {defence} | {host_name.get(host, host)} | {hits} | {f1:.3f} | {flag('refused_instructions')} | {flag('refused_ordinary')} |")
