#!/usr/bin/env python3
"""Table of scripts/lab/trace-scores.sh's cells: worst strategy's P(catch >= 1) per score, and the most innocent
accusations per score (trials in which an innocent host was accused, over every cell)."""
import glob, json, os, sys
from collections import defaultdict

out = sys.argv[1]
cells = defaultdict(dict)        # (hosts, length, cutoff, delta, eps, c) -> score -> worst p_catch
innocent = defaultdict(lambda: [0, 0])   # score -> [trials with an innocent accused, trials]
trials = None
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    d = json.load(open(path))
    score = d["tardos_score"]
    by = defaultdict(list)
    for r in d["results"]:
        by[(d["hosts"], r["length"], round(d["tardos_cutoff"], 6), r["noise_loss"], r["noise_false_hit"], r["coalition"])].append(r)
        innocent[score][0] += round(r["p_innocent"] * r["trials"])
        innocent[score][1] += r["trials"]
        trials = r["trials"]
    for k, rs in by.items():
        cells[k][score] = (min(r["p_catch"] for r in rs), min(rs, key=lambda r: r["p_catch"])["strategy"])

def noise(delta, eps):
    return {0: "none", 0.03: "SFT", 0.328: "merged"}.get(delta, f"δ {delta}") + ("" if delta == 0 else f" (δ {delta}, ε {eps})")

print(f"Worst of majority, minority, interleaving and unanimity: P(catch ≥ 1 colluder), {trials} trials a strategy, seed oml-13.")
print()
print("| hosts | positions | cutoff t | noise | c | symmetric | asymmetric | combined | worst strategy (combined) |")
print("|---:|---:|---:|---|---:|---:|---:|---:|---|")
for k in sorted(cells, key=lambda k: (-k[0], k[1], k[3], k[5])):
    hosts, length, cutoff, delta, eps, c = k
    s = cells[k]
    f = lambda name: f"{s[name][0]:.2f}" if name in s else "–"
    print(f"| {hosts:,} | {length:,} | 1/{round(1 / cutoff):,} | {noise(delta, eps)} | {c} | {f('symmetric')} | {f('asymmetric')} | {f('combined')} | {s.get('combined', (0, '–'))[1]} |")
print()
print("Trials in which an innocent host was accused (the bound: 0.001 a trial): " + "; ".join(
    f"{name} {n} of {t:,} ({n / t:.1e})" for name, (n, t) in sorted(innocent.items())) + ".")
