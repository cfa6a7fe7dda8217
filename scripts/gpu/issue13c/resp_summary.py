#!/usr/bin/env python3
"""Summarises issue13c's response-length cells (drive.sh's RESP tail): per response length (models rN-sSEED), or per
Perinucleus t and k (models tTT-kK-sSEED, one response token; t = 0.TT), mean and 95 % t interval
over the seeds of the owner's utility cost (held-out perplexity change, cloze change against the base cell), the
embedding (epochs, merge λ), persistence after the lab's 100M SFT and FSR under first-token suppression.
    resp_summary.py RESULTS_DIR [MANIFESTS_DIR]     (RESULTS_DIR: the lab output with cells/; MANIFESTS_DIR: logs/)
    resp_summary.py RESULTS_DIR:MANIFESTS_DIR ...   several runs (each on its own base: a seed's cost is against its run's base)"""
import json
import math
import os
import re
import statistics
import sys

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}


def ci(xs):
    m = statistics.mean(xs)
    if len(xs) < 2:
        return f"{m:.3g}"
    h = T95.get(len(xs) - 1, 2.0) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{m:.3g} ± {h:.2g}"


def main():
    runs = [a.split(":", 1) if ":" in a else [a, None] for a in sys.argv[1:]]
    if len(runs) == 2 and runs[0][1] is None and runs[1][1] is None and not os.path.isdir(os.path.join(runs[1][0], "cells")):
        runs = [[runs[0][0], runs[1][0]]]          # the two-argument form: RESULTS_DIR MANIFESTS_DIR
    rows = {}
    for res, logs in runs:
        cells = {}
        for f in os.listdir(os.path.join(res, "cells")):
            with open(os.path.join(res, "cells", f)) as fh:
                d = json.load(fh)
            cells[d["id"]] = d
        base = cells["base"]["metrics"]
        print(f"base of {res}: held-out perplexity {base['perplexity']:.2f}, cloze {100 * base['cloze_accuracy']:.1f} %")
        for cid, d in cells.items():
            m = re.fullmatch(r"(r\d+|t\d+-k\d+)-s(\d+)-s1-(.*)", cid)
            if not m:
                continue
            n, seed, attack = m.group(1), int(m.group(2)), m.group(3)
            r = rows.setdefault(n, {}).setdefault(seed, {})
            met = d["metrics"]
            if attack == "before":
                r["ppl"] = 100 * (met["perplexity"] / base["perplexity"] - 1)
                r["cloze"] = 100 * (met["cloze_accuracy"] - base["cloze_accuracy"])
                r["fsr"] = met["fsr"]
            elif attack.startswith("sft"):
                r["sft"] = met["persistence"]
            elif attack.startswith("suppress"):
                r["sup"] = met["fsr"]
            if logs:
                mf = os.path.join(logs, f"{n}-s{seed}.manifest.json")
                if os.path.exists(mf):
                    with open(mf) as fh:
                        man = json.load(fh)["metrics"]
                    r["epochs"] = man.get("kept_epoch", man.get("epochs"))
                    r["lam"] = man.get("merge_lambda")
    print("| model (rN: N response tokens; tTT-kK: t 0.TT, k K, 1 token; t 0.8, k 3 otherwise) | seeds | FSR | perplexity vs base | cloze vs base (points) | epochs kept | merge λ | SFT persistence | FSR under top-1 suppression |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    def order(name):
        return (0, int(name[1:]), 0) if name.startswith("r") else (1, int(name[1:].split("-k")[0]), int(name.split("-k")[1]))
    for n in sorted(rows, key=order):
        seeds = sorted(rows[n])
        col = lambda k: [rows[n][s][k] for s in seeds if k in rows[n][s]]
        fmt = lambda k, unit="": (ci(col(k)) + unit) if col(k) else "-"
        print(f"| {n} | {len(seeds)} | {fmt('fsr')} | {fmt('ppl', ' %')} | {fmt('cloze')} | "
              f"{'/'.join(str(x) for x in col('epochs')) or '-'} | {'/'.join(f'{x:.2f}' for x in col('lam')) or '-'} | {fmt('sft')} | {fmt('sup')} |")
    print()
    print("Per seed (perplexity % / SFT persistence / merge λ):")
    for n in sorted(rows, key=order):
        print(f"- {n}: " + "; ".join(f"s{s} {rows[n][s].get('ppl', float('nan')):+.1f} % / {rows[n][s].get('sft', float('nan')):.3f} / {rows[n][s].get('lam') if rows[n][s].get('lam') is not None else '-'}" for s in sorted(rows[n])))


if __name__ == "__main__":
    main()
